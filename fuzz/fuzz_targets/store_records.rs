#![no_main]
//! Fuzz target: the store's record decoders (a damaged store file or a tampered backup
//! reaches them): posting chunks, packed postcard records of every kind, JSON records.
use census_collector::store::codec::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for layout in [Postings::WIDE, Postings::NARROW] {
        if let Ok(offsets) = layout.decode("fuzz", data) {
            // What decodes re-encodes to the same set.
            assert_eq!(layout.decode("fuzz", &layout.encode(&offsets)).ok(), Some(offsets));
        }
        for offset in [0u16, 7, 255, 4095] {
            let _ = layout.update("fuzz", Some(data), offset, true);
            let _ = layout.update("fuzz", Some(data), offset, false);
        }
    }
    let _ = decode_packed::<ComputerRec>("fuzz", data);
    let _ = decode_packed::<ComponentsRec>("fuzz", data);
    let _ = decode_packed::<InstallsRec>("fuzz", data);
    let _ = decode_packed::<StepRec>("fuzz", data);
    let _ = decode_packed::<CheckpointRec>("fuzz", data);
    let _ = decode::<VariantRec>("fuzz", data);
    let _ = decode_json::<serde_json::Value>("fuzz", data);
    let _ = read_rev_key(data);
});
