#![no_main]
//! Fuzz target: an OSV record as an import reads it from a feed (untrusted bytes): parsing
//! with every limit, then matching what it yields against a few package versions in each
//! version order, as the exposure reports do.
use census_collector::vulns::{matching, osv};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(osv::Parsed::Advisory(a)) = osv::parse(data) else {
        return;
    };
    for entry in &a.affected {
        let scheme = matching::scheme(&entry.ecosystem);
        for version in ["0", "1.0-1", "2:3.0.11-1~deb12u2", "1.36.1-r15", &entry.package] {
            let _ = matching::affects(entry, scheme, version);
        }
        let _ = entry.fixed();
    }
});
