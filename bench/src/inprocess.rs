//! What the in-process benchmarks share: agents enrolled straight into the store, bodies
//! made and signed before the clock runs (the agent's work, not the collector's), and
//! batches of them through `Ingest::snapshot` on several threads.
// Each load tool is its own binary and uses a different part of this module.
#![allow(dead_code)]

use std::time::Instant;

use anyhow::Result;
use census_collector::ingest::{CpuSlot, Envelope, Ingest};
use census_collector::model::EnrollmentToken;
use census_collector::store::{Cmdb, Store};
use census_shared::{envelope, wire, AgentKeyPair, Snapshot};
use chrono::Utc;

/// A field of /proc/self/status in KiB (VmRSS:, VmHWM:).
pub fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub struct Agent {
    pub key: AgentKeyPair,
    pub id: String,
    pub seq: u64,
}

const TOKEN: &str = "bench-token";

/// An enrollment token every bench agent enrolls with.
pub fn bench_token(store: &Cmdb) -> Result<()> {
    store.put_token(&EnrollmentToken {
        id: "tok_bench".into(),
        secret_hash: TOKEN.into(),
        created_at: Utc::now(),
        expires_at: Utc::now() + chrono::Duration::days(1),
        max_uses: u32::MAX,
        uses: 0,
        revoked_at: None,
        note: None,
    })?;
    Ok(())
}

/// Agent `i`, enrolled with its own key.
pub fn enroll(store: &Cmdb, i: usize) -> Result<Agent> {
    let key = AgentKeyPair::generate();
    let id = format!("agt_bench{i:07}");
    store
        .enroll(
            TOKEN,
            &census_collector::model::Agent::enrolled(
                id.clone(),
                key.public().to_text(),
                "bench".into(),
                Default::default(),
                Utc::now(),
            ),
            Utc::now(),
        )
        .map_err(|e| anyhow::anyhow!("enroll: {e}"))?;
    Ok(Agent { key, id, seq: 0 })
}

/// A signed body ready for `Ingest::snapshot`.
pub struct Prepared {
    pub env: Envelope,
    pub body: Vec<u8>,
}

/// The agent's next snapshot, encoded and signed as it would send it.
pub fn prepare(a: &mut Agent, mut snap: Snapshot) -> Result<Prepared> {
    a.seq += 1;
    snap.agent_id = a.id.clone();
    snap.seq = a.seq;
    snap.collected_at = Utc::now();
    let body = wire::encode_body(&snap)?;
    let signature = envelope::sign(
        a.key.signing_key(),
        &envelope::snapshot_fields(&a.id, a.seq, &body),
    )?;
    Ok(Prepared {
        env: Envelope {
            agent_id: a.id.clone(),
            seq: a.seq,
            signature,
        },
        body,
    })
}

/// Computers per batch of prepared bodies.
pub const BATCH: usize = 2000;

/// Ingests a batch on `threads` threads; the seconds it took.
pub fn ingest_batch(ingest: &Ingest, work: &[Prepared], threads: usize) -> Result<f64> {
    let started = Instant::now();
    let chunk = work.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = work
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || -> Result<()> {
                    for p in part {
                        ingest
                            .snapshot(&p.env, Some("zstd"), &p.body, Utc::now(), CpuSlot::none())
                            .map_err(|e| anyhow::anyhow!("ingest: {e}"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("an ingest thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(started.elapsed().as_secs_f64())
}

/// The group flush a collector runs: flush again as soon as the last flush returned, so
/// every commit is durable within one flush, as before an ack. Stops when `running` does.
pub fn group_flusher(
    store: std::sync::Arc<Cmdb>,
    running: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Result<usize>> {
    std::thread::spawn(move || -> Result<usize> {
        let mut flushes = 0;
        while running.load(std::sync::atomic::Ordering::Relaxed) {
            store.flush()?;
            flushes += 1;
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Ok(flushes)
    })
}
