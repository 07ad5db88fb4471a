#![no_main]
//! Fuzz target: apk, pacman, snap and flatpak listings
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = census_agent::probe::software::parse_apk_installed(text);
    let _ = census_agent::probe::software::parse_pacman_desc(text);
    let _ = census_agent::probe::software::parse_snap_list(text);
    let _ = census_agent::probe::software::parse_flatpak_list(text);
});
