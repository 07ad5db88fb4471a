//! Protocol v2 over the real ingest path: a signed delta into `Ingest::delta` leaves the
//! CMDB exactly as the full snapshot it describes would, and every refusal stores nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use census_collector::ingest::{CpuSlot, Envelope, Ingest, IngestError};
use census_collector::model::*;
use census_collector::store::*;
use census_shared::delta::Delta;
use census_shared::{arbitrary, envelope, wire, AgentKeyPair, Section, Snapshot, Software};
use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;

const AGENT: &str = "agt_delta";

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("census-delta-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Opens a store another handle just closed (its lock may linger a moment).
fn reopen(dir: &Path) -> Arc<Cmdb> {
    for _ in 0..100 {
        match Cmdb::open(dir) {
            Err(StoreError::Locked(_)) => std::thread::sleep(std::time::Duration::from_millis(20)),
            other => return Arc::new(other.unwrap()),
        }
    }
    panic!("{} stayed locked", dir.display())
}

/// A store with agent `AGENT` enrolled under `key`.
fn enrolled(dir: &Path, key: &AgentKeyPair) -> Arc<Cmdb> {
    let store = Arc::new(Cmdb::open(dir).unwrap());
    crate::enroll_agent(&store, AGENT, key);
    store
}

fn envelope_for(key: &AgentKeyPair, seq: u64, fields: envelope::SignedFields<'_>) -> Envelope {
    Envelope {
        agent_id: AGENT.into(),
        seq,
        signature: envelope::sign(key.signing_key(), &fields).unwrap(),
    }
}

fn send_full(
    ingest: &Ingest,
    key: &AgentKeyPair,
    snap: &Snapshot,
    at: DateTime<Utc>,
) -> Result<census_collector::ingest::Accepted, IngestError> {
    let body = wire::encode_body(snap).unwrap();
    let env = envelope_for(
        key,
        snap.seq,
        envelope::snapshot_fields(AGENT, snap.seq, &body),
    );
    ingest.snapshot(&env, Some("zstd"), &body, at, CpuSlot::none())
}

fn send_delta(
    ingest: &Ingest,
    key: &AgentKeyPair,
    delta: &Delta,
    at: DateTime<Utc>,
) -> Result<census_collector::ingest::Accepted, IngestError> {
    let body = wire::encode_delta(delta).unwrap();
    let env = envelope_for(
        key,
        delta.seq,
        envelope::delta_fields(AGENT, delta.seq, &body),
    );
    ingest.delta(&env, Some("zstd"), &body, at, CpuSlot::none())
}

type Item = (ItemKind, String, Option<String>, Option<String>, Severity);

/// Everything the CMDB holds about the agent's computer that either path writes.
#[derive(Debug, PartialEq)]
struct Recorded {
    state: OwnedState,
    versions: Vec<u64>,
    record: Option<(Severity, Vec<Item>)>,
    agent: (Option<String>, Option<u64>, Vec<String>, u64),
}

fn cmdb_after(store: &Cmdb, record: Option<String>) -> Recorded {
    let agent = store.get_agent(AGENT).unwrap().unwrap();
    let cid = agent.ci_id.clone().unwrap();
    let mut state = store.owned_state(&cid).unwrap();
    state.relationships.sort_by(|a, b| a.key.cmp(&b.key));
    state.components.sort_by(|a, b| a.id.cmp(&b.id));
    let record = record.map(|id| {
        let r = store.get_change_record(&id).unwrap().unwrap();
        let items = r
            .items
            .iter()
            .map(|i| {
                (
                    i.kind,
                    i.subject.clone(),
                    i.old.as_ref().map(|v| v.to_string()),
                    i.new.as_ref().map(|v| v.to_string()),
                    i.severity,
                )
            })
            .collect();
        (r.severity, items)
    });
    Recorded {
        state,
        versions: store
            .history(&cid)
            .unwrap()
            .iter()
            .map(|v| v.version)
            .collect(),
        record,
        agent: (
            agent.last_content_hash,
            agent.base_seq,
            agent.base_uncollected,
            agent.last_seq,
        ),
    }
}

fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap() + Duration::minutes(minutes)
}

fn canonical(mut s: Snapshot, seq: u64) -> Snapshot {
    s.agent_id = AGENT.into();
    s.seq = seq;
    s.canonicalize_order();
    s
}

/// Ingests `base` (full) into a fresh store, then copies that store: one copy takes
/// `target` as a full snapshot, the other as the delta from `base`. Both CMDBs must agree.
fn full_and_delta_agree(name: &str, base: Snapshot, target: Snapshot) -> Result<(), TestCaseError> {
    let key = AgentKeyPair::generate();
    let (full_dir, delta_dir) = (
        temp(&format!("{name}-full")),
        temp(&format!("{name}-delta")),
    );
    {
        let store = enrolled(&full_dir, &key);
        let ingest = Ingest::new(store.clone());
        send_full(&ingest, &key, &base, at(0)).unwrap();
    }
    std::fs::create_dir_all(&delta_dir).unwrap();
    for entry in std::fs::read_dir(&full_dir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), delta_dir.join(entry.file_name())).unwrap();
    }
    let full = {
        let store = reopen(&full_dir);
        let ingest = Ingest::new(store.clone());
        let ack = send_full(&ingest, &key, &target, at(5)).unwrap();
        cmdb_after(&store, ack.ack.change_record)
    };
    let by_delta = {
        let store = reopen(&delta_dir);
        let ingest = Ingest::new(store.clone());
        let delta = Delta::between(&base, base.seq, &target);
        let ack = send_delta(&ingest, &key, &delta, at(5)).unwrap();
        prop_assert_eq!(&ack.ack.content_hash, &target.content_hash());
        cmdb_after(&store, ack.ack.change_record)
    };
    let _ = std::fs::remove_dir_all(&full_dir);
    let _ = std::fs::remove_dir_all(&delta_dir);
    prop_assert_eq!(full, by_delta);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_delta_and_its_full_snapshot_leave_the_same_cmdb(
        base in arbitrary::snapshot(1),
        target in arbitrary::snapshot(2),
    ) {
        full_and_delta_agree("prop", canonical(base, 1), canonical(target, 2))?;
    }
}

fn pkg(name: &str, version: &str) -> Software {
    Software {
        name: name.into(),
        version: version.into(),
        arch: Some("amd64".into()),
        source: "dpkg".into(),
        installed_size_bytes: Some(1024),
        install_date: Some(Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap()),
        ..Default::default()
    }
}

fn machine(software: Vec<Software>) -> Snapshot {
    let mut s = Snapshot::empty(AGENT, 1, at(0));
    s.system = Section::collected(census_shared::System {
        serial: Some("SER-D1".into()),
        ..Default::default()
    });
    s.software = Section::collected(software);
    s
}

#[test]
fn five_upgrades_are_five_install_changes() {
    let base_sw: Vec<Software> = (0..900)
        .map(|i| pkg(&format!("pkg-{i:03}"), "1.0"))
        .collect();
    let mut target_sw = base_sw.clone();
    for p in target_sw.iter_mut().take(5) {
        p.version = "1.1".into();
    }
    let base = canonical(machine(base_sw), 1);
    let target = canonical(machine(target_sw), 2);
    let delta = Delta::between(&base, 1, &target);
    assert_eq!(delta.software.changed.len(), 5);
    assert_eq!(delta.ops(), 5);
    let body = wire::encode_delta(&delta).unwrap();
    assert!(
        body.len() < 2048,
        "a 5-package delta is {} bytes",
        body.len()
    );
    full_and_delta_agree("five", base, target).unwrap();
}

/// A fresh store that accepted `base` (full) as seq 1.
fn after_base(name: &str, base: &Snapshot) -> (Arc<Cmdb>, Ingest, AgentKeyPair, PathBuf) {
    let key = AgentKeyPair::generate();
    let dir = temp(name);
    let store = enrolled(&dir, &key);
    let ingest = Ingest::new(store.clone());
    send_full(&ingest, &key, base, at(0)).unwrap();
    (store, ingest, key, dir)
}

#[test]
fn a_delta_on_another_base_is_refused_as_a_base_mismatch_and_stores_nothing() {
    let base = canonical(machine(vec![pkg("a", "1"), pkg("b", "1")]), 1);
    let target = canonical(machine(vec![pkg("a", "2"), pkg("b", "1")]), 2);
    let (store, ingest, key, dir) = after_base("mismatch", &base);
    let before = cmdb_after(&store, None);

    // Wrong base seq (a collector restored from an older backup, or a spooled delta after
    // a full snapshot was accepted).
    let mut wrong_seq = Delta::between(&base, 1, &target);
    wrong_seq.base_seq = 0;
    wrong_seq.seq = 2;
    // Wrong base hash (an agent that lost its state).
    let mut wrong_hash = Delta::between(&base, 1, &target);
    wrong_hash.base_hash = "0".repeat(64);
    for d in [wrong_seq, wrong_hash] {
        match send_delta(&ingest, &key, &d, at(1)) {
            Err(IngestError::BaseMismatch(m)) => assert!(m.contains("send a full snapshot"), "{m}"),
            other => panic!("expected a base mismatch, got {other:?}"),
        }
        assert_eq!(cmdb_after(&store, None), before, "nothing stored");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_edit_of_what_the_base_does_not_hold_is_refused_naming_the_op() {
    let base = canonical(machine(vec![pkg("a", "1"), pkg("b", "1")]), 1);
    let (store, ingest, key, dir) = after_base("bad-op", &base);
    let before = cmdb_after(&store, None);
    let target = canonical(machine(vec![pkg("a", "2"), pkg("b", "1")]), 2);
    let good = Delta::between(&base, 1, &target);
    let mut removes_unknown = good.clone();
    removes_unknown.software.removed = vec![("dpkg".into(), "zzz".into(), Some("amd64".into()))];
    let mut adds_held = good.clone();
    adds_held.software.added = vec![pkg("b", "9")];
    let mut changes_unknown = good.clone();
    changes_unknown.software.changed = vec![pkg("zzz", "1")];
    for (d, field) in [
        (removes_unknown, "software.removed[0]"),
        (adds_held, "software.added[0]"),
        (changes_unknown, "software.changed[0]"),
    ] {
        match send_delta(&ingest, &key, &d, at(1)) {
            Err(IngestError::Unprocessable { field: f, message }) => {
                assert_eq!(f.as_deref(), Some(field), "{message}")
            }
            other => panic!("expected 422 at {field}, got {other:?}"),
        }
        assert_eq!(cmdb_after(&store, None), before, "nothing stored");
    }
    // The good one still applies after the refusals.
    send_delta(&ingest, &key, &good, at(2)).unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_edit_of_a_section_the_base_did_not_collect_is_refused() {
    let mut base = machine(vec![pkg("a", "1")]);
    base.software = Section::failed("dpkg locked");
    let base = canonical(base, 1);
    let (store, ingest, key, dir) = after_base("failed-base", &base);
    let before = cmdb_after(&store, None);
    let mut d = Delta::between(&base, 1, &canonical(machine(vec![pkg("a", "1")]), 2));
    d.software = census_shared::delta::ListDelta {
        op: census_shared::delta::Op::Edited,
        added: vec![pkg("a", "1")],
        ..census_shared::delta::ListDelta::unchanged()
    };
    match send_delta(&ingest, &key, &d, at(1)) {
        Err(IngestError::Unprocessable { field, message }) => {
            assert_eq!(field.as_deref(), Some("software.op"), "{message}");
            assert!(message.contains("did not collect"), "{message}");
        }
        other => panic!("expected 422, got {other:?}"),
    }
    assert_eq!(cmdb_after(&store, None), before);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_delta_signed_as_a_snapshot_or_by_another_key_is_refused() {
    let base = canonical(machine(vec![pkg("a", "1")]), 1);
    let target = canonical(machine(vec![pkg("a", "2")]), 2);
    let (store, ingest, key, dir) = after_base("signature", &base);
    let before = cmdb_after(&store, None);
    let d = Delta::between(&base, 1, &target);
    let body = wire::encode_delta(&d).unwrap();
    // The snapshot domain over the same bytes: a signature for another kind of message.
    let cross = envelope_for(&key, 2, envelope::snapshot_fields(AGENT, 2, &body));
    assert!(matches!(
        ingest.delta(&cross, Some("zstd"), &body, at(1), CpuSlot::none()),
        Err(IngestError::Unauthorized(_))
    ));
    let other = AgentKeyPair::generate();
    let forged = envelope_for(&other, 2, envelope::delta_fields(AGENT, 2, &body));
    assert!(matches!(
        ingest.delta(&forged, Some("zstd"), &body, at(1), CpuSlot::none()),
        Err(IngestError::Unauthorized(_))
    ));
    // A delta body sent to the snapshot route does not decode as a snapshot.
    let as_snapshot = envelope_for(&key, 2, envelope::snapshot_fields(AGENT, 2, &body));
    assert!(matches!(
        ingest.snapshot(&as_snapshot, Some("zstd"), &body, at(1), CpuSlot::none()),
        Err(IngestError::Unprocessable { .. })
    ));
    assert_eq!(cmdb_after(&store, None), before);
    // Replaying the accepted delta is a seq conflict.
    send_delta(&ingest, &key, &d, at(2)).unwrap();
    assert!(matches!(
        send_delta(&ingest, &key, &d, at(3)),
        Err(IngestError::Conflict(_))
    ));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn deltas_chain_and_heartbeats_do_not_move_the_base() {
    let v1 = canonical(machine(vec![pkg("a", "1"), pkg("b", "1")]), 1);
    let (store, ingest, key, dir) = after_base("chain", &v1);
    // A heartbeat at seq 2 leaves the base at seq 1.
    let hb = serde_json::to_vec(&census_shared::protocol::Heartbeat {
        content_hash: v1.content_hash(),
        sent_at: at(1),
    })
    .unwrap();
    let env = envelope_for(&key, 2, envelope::heartbeat_fields(AGENT, 2, &hb));
    ingest.heartbeat(&env, &hb, at(1)).unwrap();
    let v3 = canonical(machine(vec![pkg("a", "2"), pkg("b", "1")]), 3);
    send_delta(&ingest, &key, &Delta::between(&v1, 1, &v3), at(2)).unwrap();
    let v4 = canonical(machine(vec![pkg("a", "2")]), 4);
    send_delta(&ingest, &key, &Delta::between(&v3, 3, &v4), at(3)).unwrap();
    let agent = store.get_agent(AGENT).unwrap().unwrap();
    assert_eq!(agent.base_seq, Some(4));
    assert_eq!(agent.last_content_hash, Some(v4.content_hash()));
    let cid = agent.ci_id.unwrap();
    let installs: Vec<String> = store
        .owned_state(&cid)
        .unwrap()
        .installs
        .iter()
        .map(|i| i.package.version.clone().unwrap_or_default())
        .collect();
    assert_eq!(installs, ["2"]);
    let _ = std::fs::remove_dir_all(dir);
}

/// Heartbeats checked before their batch and admitted together on their agents' records,
/// read once for the batch: each is answered on its own record, a refusal touches none of
/// the others, and a revocation is seen though the agent's key is cached.
#[test]
fn heartbeats_of_one_batch_are_each_admitted_on_their_own_agent_record() {
    let v1 = canonical(machine(vec![pkg("a", "1")]), 1);
    let (store, ingest, key, dir) = after_base("hb-batch", &v1);
    let other = AgentKeyPair::generate();
    crate::enroll_agent(&store, "agt_other", &other);
    let batcher = census_collector::ingest::HeartbeatBatcher::start(store.clone()).unwrap();
    let body = |hash: String| {
        serde_json::to_vec(&census_shared::protocol::Heartbeat {
            content_hash: hash,
            sent_at: at(1),
        })
        .unwrap()
    };
    let signed = |key: &AgentKeyPair, id: &str, seq: u64, body: &[u8]| {
        let env = Envelope {
            agent_id: id.into(),
            seq,
            signature: envelope::sign(
                key.signing_key(),
                &envelope::heartbeat_fields(id, seq, body),
            )
            .unwrap(),
        };
        ingest.sign_check_heartbeat(&env, body, at(1))
    };
    let known = body(v1.content_hash());
    let fresh = signed(&key, AGENT, 2, &known).unwrap();
    let replay = signed(&key, AGENT, 1, &known).unwrap();
    let unknown_hash = signed(&other, "agt_other", 1, &body("sha256:none".into())).unwrap();
    // Signed by a key that is not the agent's: refused before any batch.
    assert!(matches!(
        signed(&other, AGENT, 3, &known),
        Err(IngestError::Unauthorized(_))
    ));
    assert!(matches!(
        signed(&key, "agt_nobody", 1, &known),
        Err(IngestError::Unauthorized(_))
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (a, b, c) = rt.block_on(async {
        tokio::join!(
            batcher.commit(fresh),
            batcher.commit(replay),
            batcher.commit(unknown_hash)
        )
    });
    let a = a.unwrap();
    assert!(
        !a.ack.resend_full,
        "the collector holds the reported inventory"
    );
    assert!(matches!(b, Err(IngestError::Conflict(_))), "{b:?}");
    let c = c.unwrap();
    assert!(
        c.ack.resend_full,
        "an agent the collector holds no inventory of is asked for one"
    );
    assert_eq!(store.get_agent(AGENT).unwrap().unwrap().last_seq, 2);
    assert_eq!(store.get_agent("agt_other").unwrap().unwrap().last_seq, 1);
    // Revoked after its key was cached: the batch reads the record and refuses.
    store.revoke_agent(AGENT, at(2)).unwrap();
    let after = signed(&key, AGENT, 3, &known).unwrap();
    let refused = rt.block_on(batcher.commit(after));
    assert!(
        matches!(refused, Err(IngestError::Revoked(_))),
        "{refused:?}"
    );
    assert_eq!(store.get_agent(AGENT).unwrap().unwrap().last_seq, 2);
    let _ = std::fs::remove_dir_all(dir);
}

/// Two installs of one package that differ only in what the CMDB does not keep (size) and
/// in their install time: a delta rebuilds them from the store without the size, and must
/// number them as the agent's full list does.
#[test]
fn duplicate_packages_are_numbered_alike_through_a_delta() {
    let twin = |size: u64, day: i64| Software {
        installed_size_bytes: Some(size),
        install_date: Some(Utc.timestamp_opt(1_700_000_000 + day * 86_400, 5).unwrap()),
        ..pkg("gpg-pubkey", "1.0")
    };
    let base_sw = vec![twin(1, 2), twin(2, 1), pkg("a", "1"), pkg("b", "1")];
    let mut target_sw = base_sw.clone();
    target_sw[2].version = "2".into();
    let base = canonical(machine(base_sw), 1);
    let target = canonical(machine(target_sw), 2);
    assert_eq!(
        census_shared::delta::Delta::between(&base, 1, &target)
            .software
            .op,
        census_shared::delta::Op::Edited
    );
    full_and_delta_agree("twins", base, target).unwrap();
}
