#![no_main]
//! Fuzz target: rpm -qa --queryformat output
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = census_agent::probe::software::parse_rpm_query(text);
});
