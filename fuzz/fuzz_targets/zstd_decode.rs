#![no_main]
//! Fuzz target: bounded zstd decoding (zip bombs)
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = census_shared::wire::decode_body(data, census_shared::wire::BodyEncoding::Zstd);
    let _ = census_shared::wire::zstd_decompress_bounded(data, 1 << 20);
});
