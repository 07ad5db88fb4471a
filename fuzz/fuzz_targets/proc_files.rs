#![no_main]
//! Fuzz target: cpuinfo, meminfo, mountinfo, stat, passwd, systemctl
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = census_agent::probe::hardware::parse_cpuinfo(text);
    let _ = census_agent::probe::hardware::parse_meminfo(text);
    let _ = census_agent::probe::hardware::parse_mountinfo(text);
    let _ = census_agent::probe::os::parse_btime(text);
    let _ = census_agent::probe::users::parse_passwd(text);
    let _ = census_agent::probe::services::parse_systemctl(text, text);
});
