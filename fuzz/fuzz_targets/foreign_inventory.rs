#![no_main]
//! Fuzz target: an OCS, FusionInventory or GLPI agent inventory (untrusted XML or JSON from
//! a file or, later, an agent on the network) through the bounded readers and the mapping
//! onto the snapshot; every result that parses must pass the snapshot's own limits.
use census_collector::foreign::ocs::{self, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for format in [Format::Ocs, Format::FusionInventory, Format::Glpi] {
        if let Ok(f) = ocs::parse(data, format) {
            assert!(f.snapshot.check_limits().is_ok());
        }
    }
});
