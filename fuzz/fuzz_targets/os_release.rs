#![no_main]
//! Fuzz target: /etc/os-release
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = census_agent::probe::os::os_from_release(&census_agent::probe::os::parse_os_release(text), "linux");
});
