#![no_main]
//! Fuzz target: /proc/net tables and routes
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for (proto, v6) in [("tcp", false), ("tcp", true), ("udp", false), ("udp", true)] {
        let _ = census_agent::probe::ports::parse_proc_net(text, proto, v6);
    }
    let _ = census_agent::probe::network::parse_proc_route(text);
    let _ = census_agent::probe::network::parse_ipv6_route(text);
});
