#![no_main]
//! Fuzz target: snapshot JSON decoding with every limit
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = census_shared::wire::decode_body(data, census_shared::wire::BodyEncoding::Identity);
});
