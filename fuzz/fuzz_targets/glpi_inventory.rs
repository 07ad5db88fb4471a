#![no_main]
//! Fuzz target: a GLPI agent's JSON inventory (untrusted bytes from a file an administrator imports, or from an
//! agent through the compatibility listener), through the bounded reader and the mapping
//! onto the snapshot; whatever parses must pass the snapshot's own limits.
use census_collector::foreign::ocs::{self, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = ocs::parse(data, Format::Glpi) {
        assert!(f.snapshot.check_limits().is_ok());
    }
});
