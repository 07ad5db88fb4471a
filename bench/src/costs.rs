//! The irreducible per-request costs of protocol v1 on this machine, one core: what a
//! collector cannot avoid for each heartbeat (Ed25519 verify) and each full snapshot
//! (SHA-256 of the body, zstd, JSON decode with limits, content hash). Sets the ceiling
//! the ingest goals are measured against.
//!
//! usage: costs [--base inventory.json] [--bin DIR]

use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::Result;
use census_shared::envelope;
use census_shared::wire::{self, BodyEncoding};
use census_shared::{AgentKeyPair, Snapshot};

fn time<F: FnMut()>(name: &str, iters: u32, mut f: F) {
    f();
    let started = Instant::now();
    for _ in 0..iters {
        f();
    }
    let per = started.elapsed().as_secs_f64() / iters as f64;
    println!("| {name} | {:.1} µs | {:.0} |", per * 1e6, 1.0 / per);
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut base = None;
    let mut bin = PathBuf::from("target/release");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--base" => base = args.next().map(PathBuf::from),
            "--bin" => bin = args.next().map(PathBuf::from).unwrap_or(bin),
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let snap: Snapshot = match base {
        Some(p) => serde_json::from_slice(&std::fs::read(p)?)?,
        None => serde_json::from_slice(
            &Command::new(bin.join("census-agent"))
                .args(["inventory", "--format", "json"])
                .output()?
                .stdout,
        )?,
    };
    let packages = snap.software.data().map(|s| s.len()).unwrap_or(0);
    let json = serde_json::to_vec(&snap)?;
    let body = wire::encode_body(&snap)?;
    let key = AgentKeyPair::generate();
    let fields = envelope::snapshot_fields("agt_bench", 7, &body);
    let sig = envelope::sign(key.signing_key(), &fields)?;
    let public = key.public();
    let hb = br#"{"content_hash":"0000000000000000000000000000000000000000000000000000000000000000","sent_at":"2026-11-23T00:00:00Z"}"#;
    let hb_fields = envelope::heartbeat_fields("agt_bench", 8, hb);
    let hb_sig = envelope::sign(key.signing_key(), &hb_fields)?;

    println!(
        "snapshot: {packages} packages, {} bytes JSON, {} bytes zstd; one core",
        json.len(),
        body.len()
    );
    println!("| operation | time each | per second per core |");
    println!("|---|---:|---:|");
    time("Ed25519 verify_strict (heartbeat)", 20_000, || {
        black_box(
            envelope::verify(
                &public,
                &envelope::heartbeat_fields("agt_bench", 8, hb),
                &hb_sig,
            )
            .is_ok(),
        );
    });
    time("SHA-256 of the zstd body", 5_000, || {
        black_box(envelope::body_digest(&body));
    });
    time(
        "verify a snapshot signature (SHA-256 + Ed25519)",
        5_000,
        || {
            black_box(
                envelope::verify(
                    &public,
                    &envelope::snapshot_fields("agt_bench", 7, &body),
                    &sig,
                )
                .is_ok(),
            );
        },
    );
    time("zstd decompress (bounded)", 1_000, || {
        black_box(
            wire::zstd_decompress_bounded(&body, 64 << 20)
                .map(|v| v.len())
                .unwrap_or(0),
        );
    });
    time("JSON decode + limits check", 300, || {
        black_box(wire::decode_snapshot_json(&json).is_ok());
    });
    time("full decode_body (zstd + JSON + limits)", 300, || {
        black_box(wire::decode_body(&body, BodyEncoding::Zstd).is_ok());
    });
    time("content hash (configuration view)", 300, || {
        black_box(snap.content_hash());
    });
    let _ = fields;
    Ok(())
}
