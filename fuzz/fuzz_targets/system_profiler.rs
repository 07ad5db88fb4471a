#![no_main]
//! Fuzz target: macOS system_profiler JSON and pkgutil output
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = census_agent::probe::macos::parse_hardware(text);
    let _ = census_agent::probe::macos::parse_software_overview(text);
    let _ = census_agent::probe::macos::parse_applications(text);
    let _ = census_agent::probe::macos::parse_pkgutil_info(text);
});
