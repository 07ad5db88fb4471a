#![no_main]
//! Fuzz target: an OSV archive (`all.zip`) as an import reads it (untrusted bytes): member
//! by member with every bound, each record parsed as the import parses it.
use census_collector::vulns::{import, osv};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = import::read_archive(std::io::Cursor::new(data), &mut |member| {
        if let import::Member::Record { bytes, .. } = member {
            let _ = osv::parse(&bytes);
        }
        Ok(())
    });
});
