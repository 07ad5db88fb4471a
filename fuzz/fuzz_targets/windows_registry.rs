#![no_main]
//! Fuzz target: Windows registry and CIM JSON from PowerShell
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = census_agent::probe::windows::parse_uninstall_json(text);
    let _ = census_agent::probe::windows::parse_computer_system_product(text);
    let _ = census_agent::probe::windows::parse_operating_system(text);
    let _ = census_agent::probe::windows::parse_services(text);
});
