#![no_main]
//! Fuzz target: signed envelope parsing and verification
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Arbitrary agent id, seq, body and signature: verify must answer, never panic.
    if data.len() < 9 { return; }
    let seq = u64::from_le_bytes(data[..8].try_into().unwrap_or([0; 8]));
    let (sig, body) = data[8..].split_at(data.len().saturating_sub(8) / 2);
    let key = census_shared::AgentKeyPair::secret_from_text("ed25519-secret:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=").map(|k| k.public());
    if let Ok(key) = key {
        let sig_text = String::from_utf8_lossy(sig);
        let _ = census_shared::envelope::verify(&key, &census_shared::envelope::snapshot_fields("agt_fuzz", seq, body), &sig_text);
    }
    let _ = census_shared::AgentPublicKey::from_text(&String::from_utf8_lossy(data));
});
