//! kill -9 during ingest: every acknowledged snapshot, delta and heartbeat is present afterwards,
//! the store opens every time, no duplicate CIs, every derived record agrees with its source. CI runs a short version; `bench/crash.sh` runs 100 cycles
//! (CENSUS_CRASH_CYCLES=100).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use census_shared::delta::Delta;
use census_shared::{envelope, wire, Section, Snapshot};

use crate::support::*;

const AGENTS: usize = 4;

/// An agent's last acknowledged inventory and its seq: the base of its next delta.
type Base = Arc<Mutex<Option<(u64, Snapshot)>>>;

#[test]
fn kill9_during_ingest_loses_no_acknowledged_snapshot() {
    let cycles: usize = std::env::var("CENSUS_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let mut c = [Collector::start("crash")];
    kill9_cycles(&mut c, cycles);
}

/// Two collectors on one PostgreSQL database, the agents spread across both; the first is
/// killed with SIGKILL mid-ingest again and again while the second keeps serving.
/// `bench/crash.sh` runs 50 cycles (CENSUS_PG_CRASH_CYCLES=50).
#[test]
fn kill9_of_one_of_two_collectors_on_postgres_loses_no_acknowledged_snapshot() {
    let cycles: usize = std::env::var("CENSUS_PG_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let url = census_e2e::pg::Cluster::shared().database("e2e_crash");
    let mut c = [
        Collector::start_with("crash-pg-a", &["--store", &url]),
        Collector::start_with("crash-pg-b", &["--store", &url]),
    ];
    kill9_cycles(&mut c, cycles);
}

/// Runs `cycles` rounds of: agents submit (agent `i` to collector `i % n`), collector 0 is
/// killed with SIGKILL at a random moment and started again; then every acknowledged
/// submission must be in the store and the store must check clean.
fn kill9_cycles(collectors: &mut [Collector], cycles: usize) {
    let token = collectors[0].token(AGENTS as u32, "1h");
    let agents: Vec<Arc<Mutex<FakeAgent>>> = (0..AGENTS)
        .map(|i| {
            Arc::new(Mutex::new(FakeAgent::enroll(
                &collectors[i % collectors.len()],
                &token,
            )))
        })
        .collect();
    let acked: Vec<Arc<Mutex<BTreeSet<u64>>>> = (0..AGENTS)
        .map(|_| Arc::new(Mutex::new(BTreeSet::new())))
        .collect();
    // Heartbeats commit on their own path (batched): their acknowledged seqs must hold too.
    let acked_heartbeats: Vec<Arc<Mutex<BTreeSet<u64>>>> = (0..AGENTS)
        .map(|_| Arc::new(Mutex::new(BTreeSet::new())))
        .collect();
    // Agent 0 speaks protocol v2: a delta against its last acknowledged inventory, the
    // inventory whole after a 409 base mismatch (a kill lost an ack the store kept).
    let bases: Vec<Base> = (0..AGENTS).map(|_| Arc::new(Mutex::new(None))).collect();
    let acked_deltas = Arc::new(Mutex::new(0usize));
    let mut total_heartbeats = 0;
    let mut total_acked = 0;
    for cycle in 0..cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (i, agent) in agents.iter().enumerate() {
            let serving = &collectors[i % collectors.len()];
            let (agent, acked, acked_heartbeats, stop, url, ca) = (
                agent.clone(),
                acked[i].clone(),
                acked_heartbeats[i].clone(),
                stop.clone(),
                serving.url.clone(),
                serving.ca_pem(),
            );
            let (base, acked_deltas) = (bases[i].clone(), acked_deltas.clone());
            threads.push(std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder()
                    .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let mut a = agent.lock().unwrap();
                while !stop.load(Ordering::SeqCst) {
                    a.seq += 1;
                    let seq = a.seq;
                    // Half the agents send a heartbeat every third submission.
                    if i >= AGENTS / 2 && seq % 3 == 0 {
                        let hb = serde_json::to_vec(&census_shared::protocol::Heartbeat {
                            content_hash: format!("hash-{}", seq - 1),
                            sent_at: chrono::Utc::now(),
                        })
                        .unwrap();
                        let sig = envelope::sign(
                            a.key.signing_key(),
                            &envelope::heartbeat_fields(&a.id, seq, &hb),
                        )
                        .unwrap();
                        let r = http
                            .post(format!("{url}/api/v1/heartbeat"))
                            .header(envelope::HEADER_AGENT_ID, &a.id)
                            .header(envelope::HEADER_SEQ, seq.to_string())
                            .header(envelope::HEADER_SIGNATURE, sig)
                            .body(hb)
                            .send();
                        match r {
                            Ok(r) if r.status().as_u16() == 200 => {
                                acked_heartbeats.lock().unwrap().insert(seq);
                            }
                            Ok(r) => panic!(
                                "unexpected status {} for heartbeat seq {seq}: {:?}",
                                r.status(),
                                r.text()
                            ),
                            Err(_) => break,
                        }
                        continue;
                    }
                    let mut snap = machine_at("crash", "cc", i, seq);
                    if i % 2 == 1 {
                        snap.services = Section::failed("not probed in this test");
                    }
                    snap.agent_id = a.id.clone();
                    snap.seq = seq;
                    snap.canonicalize_order();
                    let mut base = base.lock().unwrap();
                    let as_delta = i == 0 && base.is_some();
                    let (path, body, sig) = match (&*base, as_delta) {
                        (Some((base_seq, b)), true) => {
                            let body =
                                wire::encode_delta(&Delta::between(b, *base_seq, &snap)).unwrap();
                            let sig = envelope::sign(
                                a.key.signing_key(),
                                &envelope::delta_fields(&a.id, seq, &body),
                            )
                            .unwrap();
                            (census_shared::protocol::DELTAS_PATH, body, sig)
                        }
                        _ => {
                            let body = wire::encode_body(&snap).unwrap();
                            let sig = envelope::sign(
                                a.key.signing_key(),
                                &envelope::snapshot_fields(&a.id, seq, &body),
                            )
                            .unwrap();
                            ("/api/v1/snapshots", body, sig)
                        }
                    };
                    let r = http
                        .post(format!("{url}{path}"))
                        .header(envelope::HEADER_AGENT_ID, &a.id)
                        .header(envelope::HEADER_SEQ, seq.to_string())
                        .header(envelope::HEADER_SIGNATURE, sig)
                        .header("content-encoding", "zstd")
                        .body(body)
                        .send();
                    match r {
                        Ok(r) if r.status().as_u16() == 200 => {
                            acked.lock().unwrap().insert(seq);
                            if as_delta {
                                *acked_deltas.lock().unwrap() += 1;
                            }
                            *base = Some((seq, snap));
                        }
                        Ok(r) if as_delta && r.status().as_u16() == 409 => {
                            // Not this agent's base any more: the next one goes whole.
                            *base = None;
                        }
                        Ok(r) => panic!(
                            "unexpected status {} for seq {seq}: {:?}",
                            r.status(),
                            r.text()
                        ),
                        Err(_) => break, // the collector died under us
                    }
                }
            }));
        }
        let delay = 150 + rand::random::<u64>() % 350;
        std::thread::sleep(Duration::from_millis(delay));
        collectors[0].kill9();
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().expect("sender thread");
        }
        collectors[0].start_again();
        let c = &collectors[0];

        // Every acknowledged snapshot is there: its seq is at or below the agent's last
        // accepted seq, and (after the first, which is discovery) it raised a change record.
        let rows = c.json(&["agent", "list"]);
        let recorded = change_seqs(c);
        total_acked = 0;
        total_heartbeats = 0;
        for (i, agent) in agents.iter().enumerate() {
            let a = agent.lock().unwrap();
            let row = rows
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["id"] == a.id.as_str())
                .expect("agent survives");
            let acked = acked[i].lock().unwrap();
            let heartbeats = acked_heartbeats[i].lock().unwrap();
            total_acked += acked.len();
            total_heartbeats += heartbeats.len();
            if let Some(max) = acked.iter().chain(heartbeats.iter()).max() {
                assert!(
                    row["last_seq"].as_u64().unwrap() >= *max,
                    "cycle {cycle}: agent {i} acked {max} but store has {}",
                    row["last_seq"]
                );
            }
            let missing = acked_without_change(&acked, recorded.get(&a.id));
            assert!(
                missing.is_empty(),
                "cycle {cycle}: agent {i} acked seqs without a stored change: {missing:?}"
            );
        }
        // Derived records (reverse edges, CI summaries, edge counts) are written in the
        // same transaction as their sources: after a kill they still agree.
        let check = c.json(&["check"]);
        assert_eq!(
            check["problems_total"], 0,
            "cycle {cycle}: store inconsistent after kill -9: {check}"
        );
        let stats = c.json(&["stats"]);
        assert_eq!(
            stats["cis"]["computer"].as_u64().unwrap() as usize,
            AGENTS.min(
                rows.as_array()
                    .unwrap()
                    .iter()
                    .filter(|r| !r["ci_id"].is_null())
                    .count()
            ),
            "cycle {cycle}: no duplicate computers: {stats}"
        );
    }
    eprintln!(
        "crash test: {cycles} kill -9 cycles, {total_acked} acknowledged snapshots ({} of them deltas) and {total_heartbeats} heartbeats, all present",
        acked_deltas.lock().unwrap()
    );
    assert!(
        total_acked > 0 && total_heartbeats > 0 && *acked_deltas.lock().unwrap() > 0,
        "the test acknowledged nothing: it proved nothing"
    );
}
