//! Collectors on a shared PostgreSQL database, end to end: the database crashes and comes
//! back while agents keep submitting to two collectors; every acknowledged snapshot is
//! there afterwards, the refusals meanwhile were 503s, and the collectors recovered on
//! their own.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use census_e2e::pg::Cluster;

use crate::support::*;

const AGENTS: usize = 4;

#[test]
fn postgres_crashed_and_restarted_during_ingest_loses_no_acknowledged_snapshot() {
    let cluster = Cluster::start().expect("throwaway cluster");
    let url = cluster.database("e2e_outage");
    let collectors = [
        Collector::start_with("pg-outage-a", &["--store", &url]),
        Collector::start_with("pg-outage-b", &["--store", &url]),
    ];
    let token = collectors[0].token(AGENTS as u32, "1h");
    let stop = Arc::new(AtomicBool::new(false));
    let outage = Arc::new(AtomicBool::new(false));
    let unavailable = Arc::new(AtomicUsize::new(0));
    let acked_after_outage = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    let mut ids = Vec::new();
    for i in 0..AGENTS {
        let c = Collector::attach(
            &collectors[i % 2].url,
            &collectors[i % 2].dir,
            collectors[i % 2].port,
        );
        let mut agent = FakeAgent::enroll(&c, &token);
        ids.push(agent.id.clone());
        let (stop, outage, unavailable, acked_after_outage) = (
            stop.clone(),
            outage.clone(),
            unavailable.clone(),
            acked_after_outage.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let acked = Arc::new(Mutex::new(BTreeSet::new()));
            while !stop.load(Ordering::SeqCst) {
                let mut snap = machine_at("outage", "dd", i, agent.seq + 1);
                let reply = agent.try_send(&c, &mut snap).expect("collector answers");
                match reply.status {
                    200 => {
                        acked.lock().unwrap().insert(agent.seq);
                        if outage.load(Ordering::SeqCst) {
                            acked_after_outage.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    503 => {
                        unavailable.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    other => panic!("seq {}: {other} {:?}", agent.seq, reply.body),
                }
            }
            let set = acked.lock().unwrap().clone();
            set
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    cluster.crash().expect("crash PostgreSQL");
    std::thread::sleep(Duration::from_millis(1500));
    cluster.restart().expect("start PostgreSQL again");
    outage.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(3000));
    stop.store(true, Ordering::SeqCst);
    let acked: Vec<BTreeSet<u64>> = threads.into_iter().map(|t| t.join().unwrap()).collect();

    assert!(
        unavailable.load(Ordering::SeqCst) > 0,
        "the outage was never seen: it proved nothing"
    );
    assert!(
        acked_after_outage.load(Ordering::SeqCst) > 0,
        "nothing was acknowledged after PostgreSQL came back"
    );
    let rows = collectors[1].json(&["agent", "list"]);
    let recorded = change_seqs(&collectors[1]);
    for (id, acked) in ids.iter().zip(&acked) {
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id.as_str())
            .expect("agent listed");
        let max = acked.iter().max().copied().unwrap_or(0);
        assert!(
            row["last_seq"].as_u64().unwrap() >= max,
            "{id} acked {max}, store has {}",
            row["last_seq"]
        );
        let missing = acked_without_change(acked, recorded.get(id));
        assert!(
            missing.is_empty(),
            "{id}: acknowledged but lost: {missing:?}"
        );
    }
    let check = collectors[0].json(&["check"]);
    assert_eq!(check["problems_total"], 0, "{check}");
    eprintln!(
        "postgres outage: {} acknowledged, {} answered 503 during the outage, {} acknowledged after it",
        acked.iter().map(|a| a.len()).sum::<usize>(),
        unavailable.load(Ordering::SeqCst),
        acked_after_outage.load(Ordering::SeqCst)
    );
}
