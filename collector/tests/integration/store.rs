//! The Store contract: one conformance suite that every backend passes. Each test is a
//! function of the engine; `conformance!` at the end runs it on redb (the embedded
//! default), on sled, and on PostgreSQL (a throwaway cluster, a database per test).

use census_collector::model::*;
use census_collector::store::backend::Space;
use census_collector::store::codec;
use census_collector::store::*;
use chrono::{Duration, Utc};

#[derive(Debug, Clone, Copy)]
pub(crate) enum Engine {
    Redb,
    Sled,
    Postgres,
}

impl Engine {
    /// A fresh place for a store: a directory, or (PostgreSQL) an empty database named
    /// after it.
    fn dir(self, name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!(
            "census-store-{name}-{self:?}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        if let Engine::Postgres = self {
            census_e2e::pg::Cluster::shared().database(&pg_name(&p));
        }
        p
    }

    fn try_open(self, d: &std::path::Path) -> Result<Cmdb, StoreError> {
        match self {
            Engine::Redb => Cmdb::open(d),
            Engine::Sled => Cmdb::open_sled(d, DEFAULT_CACHE_BYTES),
            Engine::Postgres => Cmdb::open_postgres(pg_backend::PgOptions::new(
                census_e2e::pg::Cluster::shared().url(&pg_name(d)),
            )),
        }
    }

    fn open(self, d: &std::path::Path) -> Cmdb {
        self.try_open(d).unwrap()
    }
}

/// The database a PostgreSQL "directory" stands for.
pub(crate) fn pg_name(d: &std::path::Path) -> String {
    census_e2e::pg::database_name(d.file_name().and_then(|n| n.to_str()).unwrap_or("census"))
}

/// Opens a store that was just dropped: sled releases its file lock when its background
/// flusher has stopped, a moment after the drop (regression: `newer_schema_is_refused...`
/// saw `Locked` instead of the refusal now and then).
fn reopen(engine: Engine, d: &std::path::Path) -> Result<Cmdb, StoreError> {
    for _ in 0..100 {
        match engine.try_open(d) {
            Err(StoreError::Locked(_)) => std::thread::sleep(std::time::Duration::from_millis(50)),
            other => return other,
        }
    }
    panic!("{} stayed locked", d.display())
}

/// A fresh store with one enrolled agent, `a1`, at seq 0.
fn store_with_agent_a1(engine: Engine, name: &str) -> (Cmdb, std::path::PathBuf) {
    let d = engine.dir(name);
    let s = engine.open(&d);
    s.put_token(&token("h", 1, 3600)).unwrap();
    s.enroll("h", &agent("a1", "k1"), Utc::now()).unwrap();
    (s, d)
}

fn heartbeat(
    agent_id: &str,
    expected_last_seq: u64,
    seq: u64,
    at: chrono::DateTime<Utc>,
) -> HeartbeatCommit {
    HeartbeatCommit {
        agent_id: agent_id.into(),
        expected_last_seq,
        seq,
        at,
    }
}

fn token(secret_hash: &str, uses: u32, ttl: i64) -> EnrollmentToken {
    EnrollmentToken {
        id: format!("tok_{secret_hash}"),
        secret_hash: secret_hash.into(),
        created_at: Utc::now(),
        expires_at: Utc::now() + Duration::seconds(ttl),
        max_uses: uses,
        uses: 0,
        revoked_at: None,
        note: None,
    }
}

fn agent(id: &str, key: &str) -> Agent {
    Agent::enrolled(
        id.into(),
        key.into(),
        "t".into(),
        Default::default(),
        Utc::now(),
    )
}

fn newer_schema_is_refused_with_a_clear_message(engine: Engine) {
    let d = engine.dir("schema");
    let s = engine.open(&d);
    s.backend()
        .put(Space::Meta, b"schema_version", &99u32.to_be_bytes())
        .unwrap();
    s.flush().unwrap();
    drop(s);
    let err = reopen(engine, &d).err().expect("refused");
    assert!(matches!(
        err,
        StoreError::NewerSchema {
            found: 99,
            supported: STORE_SCHEMA_VERSION
        }
    ));
    assert!(err.to_string().contains("upgrade the collector"), "{err}");
    let _ = std::fs::remove_dir_all(d);
}

fn enroll_is_atomic_and_counts_uses(engine: Engine) {
    let d = engine.dir("enroll");
    let s = engine.open(&d);
    s.put_token(&token("h1", 1, 3600)).unwrap();
    assert_eq!(
        s.enroll("nope", &agent("a0", "k0"), Utc::now()),
        Err(EnrollError::UnknownToken)
    );
    s.enroll("h1", &agent("a1", "k1"), Utc::now()).unwrap();
    assert_eq!(
        s.enroll("h1", &agent("a2", "k2"), Utc::now()),
        Err(EnrollError::Exhausted(1))
    );
    assert!(
        s.get_agent("a2").unwrap().is_none(),
        "a refused enrollment stores nothing"
    );
    s.put_token(&token("h2", 5, 3600)).unwrap();
    assert_eq!(
        s.enroll("h2", &agent("a3", "k1"), Utc::now()),
        Err(EnrollError::KeyInUse("a1".into()))
    );
    s.put_token(&token("h3", 5, -1)).unwrap();
    assert!(matches!(
        s.enroll("h3", &agent("a4", "k4"), Utc::now()),
        Err(EnrollError::Expired(_))
    ));
    assert_eq!(
        s.list_tokens()
            .unwrap()
            .iter()
            .find(|t| t.secret_hash == "h2")
            .unwrap()
            .uses,
        0
    );
    let _ = std::fs::remove_dir_all(d);
}

fn ingest_commit_is_compare_and_set_on_seq(engine: Engine) {
    let (s, d) = store_with_agent_a1(engine, "cas");
    let ci = Ci {
        id: "cmp_1".into(),
        class: CiClass::Computer,
        name: "h".into(),
        attributes: Default::default(),
        volatile: Default::default(),
        status: CiStatus::Active,
        first_seen: Utc::now(),
        last_seen: Utc::now(),
        sources: vec![],
        version: 1,
        owner: None,
    };
    let commit = IngestCommit {
        agent_id: "a1".into(),
        expected_last_seq: 0,
        new_seq: 1,
        seen_at: Utc::now(),
        ci_puts: vec![ci.clone()],
        ci_id: Some("cmp_1".into()),
        ..Default::default()
    };
    s.commit_ingest(&commit).unwrap();
    let again = s.commit_ingest(&commit).unwrap_err();
    assert!(
        matches!(
            again,
            CommitError::SeqMoved {
                expected: 0,
                current: 1
            }
        ),
        "{again}"
    );
    assert_eq!(s.get_agent("a1").unwrap().unwrap().last_seq, 1);
    // An identity key held by another CI aborts the whole transaction.
    let key = IdentityKey {
        rule: "serial",
        value: "x|1".into(),
    };
    let claim = IngestCommit {
        agent_id: "a1".into(),
        expected_last_seq: 1,
        new_seq: 2,
        seen_at: Utc::now(),
        identity_claims: vec![(key.clone(), "cmp_1".into())],
        ..Default::default()
    };
    s.commit_ingest(&claim).unwrap();
    let steal = IngestCommit {
        agent_id: "a1".into(),
        expected_last_seq: 2,
        new_seq: 3,
        seen_at: Utc::now(),
        identity_claims: vec![(key.clone(), "cmp_2".into())],
        ci_puts: vec![Ci {
            id: "cmp_2".into(),
            ..ci
        }],
        ..Default::default()
    };
    assert!(matches!(
        s.commit_ingest(&steal),
        Err(CommitError::IdentityRace(_))
    ));
    assert!(
        s.get_ci("cmp_2").unwrap().is_none(),
        "aborted commit wrote nothing"
    );
    assert_eq!(s.get_agent("a1").unwrap().unwrap().last_seq, 2);
    assert_eq!(s.lookup_identity(&key).unwrap().as_deref(), Some("cmp_1"));
    let _ = std::fs::remove_dir_all(d);
}

fn revoked_agent_cannot_commit(engine: Engine) {
    let (s, d) = store_with_agent_a1(engine, "revoked");
    assert!(s.revoke_agent("a1", Utc::now()).unwrap());
    let c = IngestCommit {
        agent_id: "a1".into(),
        expected_last_seq: 0,
        new_seq: 1,
        seen_at: Utc::now(),
        ..Default::default()
    };
    assert!(matches!(
        s.commit_ingest(&c),
        Err(CommitError::AgentGone(_))
    ));
    assert!(matches!(
        s.commit_heartbeat(heartbeat("a1", 0, 1, Utc::now())),
        Err(CommitError::AgentGone(_))
    ));
    let _ = std::fs::remove_dir_all(d);
}

fn heartbeat_is_compare_and_set_and_visible_on_the_agent(engine: Engine) {
    let (s, d) = store_with_agent_a1(engine, "heartbeat");
    s.commit_heartbeat(heartbeat("a1", 0, 1, Utc::now()))
        .unwrap();
    let at = Utc::now();
    s.commit_heartbeat(heartbeat("a1", 1, 2, at)).unwrap();
    let a = s.get_agent("a1").unwrap().unwrap();
    assert_eq!(a.last_seq, 2);
    assert_eq!(
        a.last_seen.map(|t| t.timestamp_micros()),
        Some(at.timestamp_micros())
    );
    assert!(matches!(
        s.commit_heartbeat(heartbeat("a1", 1, 3, Utc::now())),
        Err(CommitError::SeqMoved {
            expected: 1,
            current: 2
        })
    ));
    // A snapshot commit continues from the heartbeat's seq.
    let stale = IngestCommit {
        agent_id: "a1".into(),
        expected_last_seq: 0,
        new_seq: 3,
        seen_at: Utc::now(),
        ..Default::default()
    };
    assert!(matches!(
        s.commit_ingest(&stale),
        Err(CommitError::SeqMoved {
            expected: 0,
            current: 2
        })
    ));
    let next = IngestCommit {
        expected_last_seq: 2,
        ..stale
    };
    s.commit_ingest(&next).unwrap();
    assert_eq!(s.list_agents().unwrap()[0].last_seq, 3);
    drop(s);
    assert_eq!(
        engine
            .try_open(&d)
            .unwrap()
            .get_agent("a1")
            .unwrap()
            .unwrap()
            .last_seq,
        3,
        "survives reopen"
    );
    let _ = std::fs::remove_dir_all(d);
}

fn heartbeats_in_one_batch_are_each_their_own_compare_and_set(engine: Engine) {
    let (s, d) = store_with_agent_a1(engine, "heartbeat-batch");
    s.put_token(&token("h2", 1, 3600)).unwrap();
    s.enroll("h2", &agent("a2", "k2"), Utc::now()).unwrap();
    let at = Utc::now();
    let results = s
        .commit_heartbeats(&[
            heartbeat("a1", 0, 1, at),
            // The same heartbeat twice in one batch (a replay racing the original): the
            // second sees the first's seq and is refused.
            heartbeat("a1", 0, 1, at),
            heartbeat("a2", 5, 6, at),
            heartbeat("a2", 0, 1, at),
            heartbeat("nobody", 0, 1, at),
        ])
        .unwrap();
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert!(
        matches!(
            results[1],
            Err(CommitError::SeqMoved {
                expected: 0,
                current: 1
            })
        ),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(results[2], Err(CommitError::SeqMoved { expected: 5, .. })),
        "{:?}",
        results[2]
    );
    assert!(results[3].is_ok(), "{:?}", results[3]);
    assert!(matches!(results[4], Err(CommitError::AgentGone(_))));
    assert_eq!(s.get_agent("a1").unwrap().unwrap().last_seq, 1);
    assert_eq!(s.get_agent("a2").unwrap().unwrap().last_seq, 1);
    let _ = std::fs::remove_dir_all(d);
}

pub(crate) fn computer(id: &str, name: &str, status: CiStatus) -> Ci {
    Ci {
        id: id.into(),
        class: CiClass::Computer,
        name: name.into(),
        attributes: Default::default(),
        volatile: Default::default(),
        status,
        first_seen: Utc::now(),
        last_seen: Utc::now(),
        sources: vec![],
        version: 1,
        owner: None,
    }
}

pub(crate) fn installs(from: &str, product: &str, version: &str, arch: &str) -> Relationship {
    let mut attributes = Attributes::new();
    attributes.insert("name".into(), "openssl".into());
    attributes.insert("version".into(), version.into());
    attributes.insert("source".into(), "dpkg".into());
    attributes.insert("arch".into(), arch.into());
    // Differs on every computer, as real install dates do.
    let n: u32 = from.trim_start_matches("cmp_").parse().unwrap_or(0);
    attributes.insert(
        "install_date".into(),
        format!("2026-01-01T10:{n:02}:00+00:00").into(),
    );
    Relationship {
        key: RelKey {
            from: from.into(),
            kind: RelKind::Installs,
            to: product.into(),
            discriminator: format!("dpkg/{arch}"),
        },
        attributes,
    }
}

/// Edges and CIs for a product query: 40 computers with openssl in three versions, every
/// fifth with the i386 package too, every seventh retired, committed through
/// `commit_ingest` like ingest does.
pub(crate) fn package_fleet(engine: Engine, name: &str) -> (Cmdb, std::path::PathBuf) {
    let (s, d) = store_with_agent_a1(engine, name);
    let product = census_collector::reconcile::det_id(CiClass::SoftwareProduct, &["openssl"]);
    let versions = ["1.1.1n-0+deb11u5", "3.0.11-1~deb12u2", "3.0.15-1~deb12u1"];
    for i in 0..40u64 {
        let id = format!("cmp_{i:03}");
        let status = if i % 7 == 3 {
            CiStatus::Retired
        } else {
            CiStatus::Active
        };
        // Names in a different order than ids, so "sort by name" is really tested.
        let name = format!("host-{:03}", (i * 17) % 40);
        s.commit_ingest(&IngestCommit {
            agent_id: "a1".into(),
            expected_last_seq: i,
            new_seq: i + 1,
            seen_at: Utc::now(),
            ci_puts: vec![computer(&id, &name, status)],
            relationship_puts: std::iter::once("amd64")
                .chain((i % 5 == 0).then_some("i386"))
                .map(|arch| installs(&id, &product, versions[i as usize % 3], arch))
                .collect(),
            ..Default::default()
        })
        .unwrap();
    }
    (s, d)
}

fn reverse_edges_carry_the_same_attributes_as_the_forward_ones(engine: Engine) {
    let (s, d) = package_fleet(engine, "rev-attrs");
    let product = census_collector::reconcile::det_id(CiClass::SoftwareProduct, &["openssl"]);
    let to = s.relationships_to(&product).unwrap();
    assert_eq!(to.len(), 48);
    for r in &to {
        let forward = s.relationships_from(&r.key.from).unwrap();
        assert!(forward.contains(r), "{r:?} not in {forward:?}");
    }
    let _ = std::fs::remove_dir_all(d);
}

fn installs_of_lists_every_install_and_each_variant_once(engine: Engine) {
    let (s, d) = package_fleet(engine, "installs-of");
    let product = census_collector::reconcile::det_id(CiClass::SoftwareProduct, &["openssl"]);
    let got = s.installs_of(&product).unwrap();
    let edges = s.relationships_to(&product).unwrap();
    assert_eq!(got.installs.len(), edges.len());
    let keys: Vec<u64> = got.installs.iter().map(|(k, _)| *k).collect();
    assert!(keys.windows(2).all(|w| w[0] <= w[1]), "ordered by computer");
    let summaries = s.computer_summaries(&keys).unwrap();
    let mut by_installs: Vec<(String, Attributes)> = got
        .installs
        .iter()
        .zip(&summaries)
        .map(|((_, v), c)| (c.as_ref().unwrap().id.to_string(), got.variants[*v].clone()))
        .collect();
    let mut by_edges: Vec<(String, Attributes)> = edges
        .iter()
        .map(|edge| {
            let projected: Attributes = PACKAGE_VARIANT_KEYS
                .iter()
                .filter_map(|k| Some((k.to_string(), edge.attributes.get(*k)?.clone())))
                .collect();
            (edge.key.from.clone(), projected)
        })
        .collect();
    let arch = |a: &Attributes| a.get("arch").and_then(|v| v.as_str()).map(str::to_string);
    by_installs.sort_by_key(|(id, a)| (id.clone(), arch(a)));
    by_edges.sort_by_key(|(id, a)| (id.clone(), arch(a)));
    assert_eq!(by_installs, by_edges);
    // 3 versions of amd64 and of i386; install dates differ but are not part of a variant.
    assert_eq!(got.variants.len(), 6, "{:?}", got.variants);
    for (i, v) in got.variants.iter().enumerate() {
        assert!(!got.variants[..i].contains(v), "variant {v:?} twice");
        assert!(!v.contains_key("install_date"));
    }
    assert_eq!(
        s.installs_of("sw_none").unwrap(),
        ProductInstalls::default()
    );
    drop(s);
    let _ = std::fs::remove_dir_all(d);
}

/// `n` computers that install openssl (version and arch chosen per computer), committed
/// in one ingest of agent a1.
fn openssl_fleet(s: &Cmdb, n: usize, variant: impl Fn(usize) -> (&'static str, &'static str)) {
    let product = census_collector::reconcile::det_id(CiClass::SoftwareProduct, &["openssl"]);
    let puts: Vec<Relationship> = (0..n)
        .map(|i| {
            let id = census_collector::reconcile::det_id(CiClass::Computer, &[&i.to_string()]);
            let (version, arch) = variant(i);
            installs(&id, &product, version, arch)
        })
        .collect();
    let computers: Vec<Ci> = puts
        .iter()
        .map(|r| computer(&r.key.from, &r.key.from, CiStatus::Active))
        .collect();
    s.commit_ingest(&IngestCommit {
        agent_id: "a1".into(),
        expected_last_seq: 0,
        new_seq: 1,
        seen_at: Utc::now(),
        ci_puts: computers,
        relationship_puts: puts,
        ..Default::default()
    })
    .unwrap();
}

/// 600 computers that install openssl; the number of posting chunks that holds them.
fn openssl_on_600_computers(s: &Cmdb) -> usize {
    use census_collector::store::backend::{Flow, Range};
    openssl_fleet(s, 600, |_| ("3.0.15-1~deb12u1", "amd64"));
    let mut chunks = 0;
    s.backend()
        .scan(Space::Reverse, Range::all(), &mut |k, _| {
            if matches!(
                codec::read_rev_key(k),
                Some(codec::RevEntry::Postings { .. })
            ) {
                chunks += 1;
            }
            Ok(Flow::Continue)
        })
        .unwrap();
    chunks
}

/// A copy holds its source's bytes, so its posting layout, reopened or not, whatever the
/// target engine would give a new store.
fn copies_answer_alike(source: &Cmdb, product: &str, name: &str) {
    let target_dir = Engine::Redb.dir(name);
    let target = Engine::Redb.open(&target_dir);
    source.copy_into(&target, &mut |_, _| {}).unwrap();
    assert_eq!(target.installs_of(product).unwrap().installs.len(), 600);
    drop(target);
    let target = Engine::Redb.open(&target_dir);
    assert_eq!(target.installs_of(product).unwrap().installs.len(), 600);
    assert_eq!(target.check_consistency().unwrap().problems_total, 0);
    drop(target);
    let _ = std::fs::remove_dir_all(target_dir);
}

/// A store made with the given meta record for its posting layout (`None`: no record, as
/// every store made before the layout was recorded), with agent a1 enrolled.
fn store_with_layout(
    engine: Engine,
    name: &str,
    layout: Option<codec::Postings>,
) -> (Cmdb, std::path::PathBuf) {
    let d = engine.dir(name);
    let s = engine.open(&d);
    match layout {
        Some(l) => s
            .backend()
            .put(Space::Meta, codec::POSTINGS_META_KEY, &l.to_meta()),
        None => s.backend().delete(Space::Meta, codec::POSTINGS_META_KEY),
    }
    .unwrap();
    s.backend().flush().unwrap();
    drop(s);
    let s = reopen(engine, &d).unwrap();
    s.put_token(&token("h", 1, 3600)).unwrap();
    s.enroll("h", &agent("a1", "k1"), Utc::now()).unwrap();
    (s, d)
}

/// A store reads and writes its postings in the layout its meta record names, and so do
/// its copies: a new store cuts 4,096 computers a chunk (256 on PostgreSQL), a store
/// recorded as 256 keeps 256, and a store without the record (regression: every store made
/// before it existed) 4,096.
fn a_store_without_a_recorded_posting_layout_keeps_its_chunks(engine: Engine) {
    let product = census_collector::reconcile::det_id(CiClass::SoftwareProduct, &["openssl"]);
    let (s, d) = store_with_agent_a1(engine, "layout-new");
    let chunks = if matches!(engine, Engine::Postgres) {
        3
    } else {
        1
    };
    assert_eq!(
        openssl_on_600_computers(&s),
        chunks,
        "600 computers, new store"
    );
    drop(s);
    let _ = std::fs::remove_dir_all(d);
    for (name, layout, chunks) in [
        ("layout-narrow", Some(codec::Postings::NARROW), 3),
        ("layout-legacy", None, 1),
    ] {
        let (s, d) = store_with_layout(engine, name, layout);
        assert_eq!(
            openssl_on_600_computers(&s),
            chunks,
            "{name}: 600 computers"
        );
        assert_eq!(s.installs_of(&product).unwrap().installs.len(), 600);
        assert_eq!(s.check_consistency().unwrap().problems_total, 0);
        drop(s);
        let s = reopen(engine, &d).unwrap();
        assert_eq!(s.installs_of(&product).unwrap().installs.len(), 600);
        copies_answer_alike(&s, &product, &format!("{name}-copy"));
        drop(s);
        let _ = std::fs::remove_dir_all(d);
    }
}

fn installs_of_a_product_on_thousands_of_computers_reads_like_one_scan(engine: Engine) {
    let (s, d) = store_with_agent_a1(engine, "installs-big");
    let product = census_collector::reconcile::det_id(CiClass::SoftwareProduct, &["openssl"]);
    // Enough computers that the slices are read on several threads, with real ids.
    openssl_fleet(&s, 3000, |i| {
        (
            ["1.1.1n-0+deb11u5", "3.0.11-1~deb12u2", "3.0.15-1~deb12u1"][i % 3],
            if i % 10 == 0 { "i386" } else { "amd64" },
        )
    });
    let got = s.installs_of(&product).unwrap();
    let edges = s.relationships_to(&product).unwrap();
    assert_eq!(got.installs.len(), 3000);
    assert_eq!(got.variants.len(), 6);
    // Each computer of this test installs the product once.
    let keys: Vec<u64> = got.installs.iter().map(|(k, _)| *k).collect();
    let summaries = s.computer_summaries(&keys).unwrap();
    let by_id: std::collections::BTreeMap<&str, &Relationship> =
        edges.iter().map(|e| (e.key.from.as_str(), e)).collect();
    assert_eq!(by_id.len(), 3000);
    for ((_, variant), summary) in got.installs.iter().zip(&summaries) {
        let edge = by_id[&*summary.as_ref().expect("a computer").id];
        assert_eq!(
            got.variants[*variant]["version"],
            edge.attributes["version"]
        );
        assert_eq!(got.variants[*variant]["arch"], edge.attributes["arch"]);
    }
    let _ = std::fs::remove_dir_all(d);
}

fn edge_counts_follow_new_replaced_and_deleted_edges(engine: Engine) {
    let (s, d) = package_fleet(engine, "edge-counts");
    let product = census_collector::reconcile::det_id(CiClass::SoftwareProduct, &["openssl"]);
    let other = census_collector::reconcile::det_id(CiClass::SoftwareProduct, &["curl"]);
    let counted = |s: &Cmdb, id: &str| s.relationships_from_page(id, 1).unwrap().1;
    assert_eq!(counted(&s, "cmp_000"), 2, "amd64 and i386");
    assert_eq!(counted(&s, "cmp_001"), 1);
    let mut seq = 40;
    let mut commit = |puts: Vec<Relationship>, deletes: Vec<RelKey>| {
        s.commit_ingest(&IngestCommit {
            agent_id: "a1".into(),
            expected_last_seq: seq,
            new_seq: seq + 1,
            seen_at: Utc::now(),
            relationship_puts: puts,
            relationship_deletes: deletes,
            ..Default::default()
        })
        .unwrap();
        seq += 1;
    };
    // A replaced edge is not a new one; a new one is; deleting an absent key changes
    // nothing; the same edge put twice in one commit counts once.
    let upgraded = installs("cmp_001", &product, "3.0.15-1~deb12u1", "amd64");
    let curl = installs("cmp_001", &other, "8.5.0-2", "amd64");
    commit(
        vec![upgraded, curl.clone(), curl.clone()],
        vec![installs("cmp_001", &other, "1", "s390x").key],
    );
    assert_eq!(counted(&s, "cmp_001"), 2);
    commit(vec![], vec![curl.key.clone(), curl.key]);
    assert_eq!(counted(&s, "cmp_001"), 1);
    commit(vec![], vec![installs("cmp_001", &product, "", "amd64").key]);
    assert_eq!(counted(&s, "cmp_001"), 0);
    for i in 0..40 {
        let id = format!("cmp_{i:03}");
        assert_eq!(
            counted(&s, &id),
            s.relationships_from(&id).unwrap().len(),
            "{id}"
        );
    }
    drop(s);
    let _ = std::fs::remove_dir_all(d);
}

fn consistency_check_names_every_derived_record_that_disagrees(engine: Engine) {
    use census_collector::store::backend::Space;
    let (s, d) = package_fleet(engine, "check");
    let clean = s.check_consistency().unwrap();
    assert_eq!(
        (clean.cis, clean.edges, clean.problems_total),
        (40, 48, 0),
        "{clean:?}"
    );
    let b = s.backend();
    let first_key = |space: Space| {
        let mut first = None;
        b.scan(space, backend::Range::all(), &mut |k, _| {
            first = Some(k.to_vec());
            Ok(backend::Flow::Stop)
        })
        .unwrap();
        first.unwrap()
    };
    // A summary with another name: raw tag 0, then postcard of (id, name, status).
    b.put(
        Space::Summaries,
        &first_key(Space::Summaries),
        b"\x00\x07cmp_000\x07renamed\x00",
    )
    .unwrap();
    // A computer taken out of the postings it belongs to, and postings nobody owns.
    let postings = first_key(Space::Reverse);
    let layout = codec::Postings::for_new_store(matches!(engine, Engine::Postgres));
    let offsets = layout
        .decode("t", &b.get(Space::Reverse, &postings).unwrap().unwrap())
        .unwrap();
    b.put(Space::Reverse, &postings, &layout.encode(&offsets[1..]))
        .unwrap();
    b.put(
        Space::Reverse,
        &codec::postings_key(99, 1, 0),
        &layout.encode(&[7]),
    )
    .unwrap();
    let mut newest = None;
    b.scan(Space::Steps, backend::Range::all().rev(), &mut |k, _| {
        newest = Some(k.to_vec());
        Ok(backend::Flow::Stop)
    })
    .unwrap();
    b.delete(Space::Steps, &newest.unwrap()).unwrap();
    let report = s.check_consistency().unwrap();
    assert_eq!(report.problems_total, 4, "{report:?}");
    let all = report.problems.join("\n");
    for expected in [
        "not the name and status of cmp_",
        "v3_reverse: computer 7 is in the postings of variant 1 of product 99",
        "but is not in its postings",
        "the newest step of cmp_",
    ] {
        assert!(all.contains(expected), "{expected} not in {all}");
    }
    drop(s);
    let _ = std::fs::remove_dir_all(d);
}

fn consistency_check_during_ingest_sees_no_half_applied_commit(engine: Engine) {
    let (s, d) = package_fleet(engine, "check-live");
    let s = std::sync::Arc::new(s);
    let product = census_collector::reconcile::det_id(CiClass::SoftwareProduct, &["openssl"]);
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || {
            for seq in 40..240u64 {
                // Renames a computer and adds or removes one of its edges each time.
                let id = format!("cmp_{:03}", seq % 40);
                let edge = installs(&id, &product, "3.0.15-1~deb12u1", "arm64");
                let (puts, deletes) = if seq % 2 == 0 {
                    (vec![edge], vec![])
                } else {
                    (vec![], vec![edge.key])
                };
                s.commit_ingest(&IngestCommit {
                    agent_id: "a1".into(),
                    expected_last_seq: seq,
                    new_seq: seq + 1,
                    seen_at: Utc::now(),
                    ci_puts: vec![computer(&id, &format!("renamed-{seq}"), CiStatus::Active)],
                    relationship_puts: puts,
                    relationship_deletes: deletes,
                    ..Default::default()
                })
                .unwrap();
            }
        })
    };
    let mut checks = 0;
    while !writer.is_finished() {
        let report = s.check_consistency().unwrap();
        assert_eq!(report.problems_total, 0, "{report:?}");
        checks += 1;
        // A check holds the write gate; back to back, it would starve the writer.
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(checks > 1, "the checks ran while commits landed");
    writer.join().unwrap();
    assert_eq!(s.check_consistency().unwrap().problems_total, 0);
    let _ = std::fs::remove_dir_all(d);
}

fn ci_summaries_follow_every_ci_write(engine: Engine) {
    let (s, d) = package_fleet(engine, "summaries");
    let retire = s.get_ci("cmp_001").unwrap().unwrap();
    assert!(s
        .set_ci_status("cmp_001", retire.version, CiStatus::Retired, Utc::now())
        .unwrap());
    let check = |s: &Cmdb| {
        for ci in s.list_cis(Some(CiClass::Computer)).unwrap() {
            let summary = s.ci_summary(&ci.id).unwrap().unwrap();
            assert_eq!((summary.name, summary.status), (ci.name, ci.status));
        }
    };
    check(&s);
    assert_eq!(
        s.ci_summary("cmp_001").unwrap().unwrap().status,
        CiStatus::Retired
    );
    assert_eq!(s.ci_summary("cmp_nope").unwrap(), None);
    drop(s);
    check(&reopen(engine, &d).unwrap());
    let _ = std::fs::remove_dir_all(d);
}

fn computer_summaries_follow_writes_after_they_are_loaded(engine: Engine) {
    let (s, d) = package_fleet(engine, "computer-summaries");
    let product = census_collector::reconcile::det_id(CiClass::SoftwareProduct, &["openssl"]);
    let keys: Vec<u64> = s
        .installs_of(&product)
        .unwrap()
        .installs
        .iter()
        .map(|(k, _)| *k)
        .collect();
    // Loads the table.
    let before = s.computer_summaries(&keys).unwrap();
    let first = before[0].clone().unwrap();
    let mut renamed = s.get_ci(&first.id).unwrap().unwrap();
    renamed.name = "renamed-after-load".into();
    renamed.version += 1;
    s.commit_ingest(&IngestCommit {
        agent_id: "a1".into(),
        expected_last_seq: 40,
        new_seq: 41,
        seen_at: Utc::now(),
        ci_puts: vec![renamed],
        ..Default::default()
    })
    .unwrap();
    let after = s.computer_summaries(&keys[..1]).unwrap();
    assert_eq!(&*after[0].as_ref().unwrap().name, "renamed-after-load");
    // A key that names no computer.
    assert_eq!(s.computer_summaries(&[u64::MAX]).unwrap(), vec![None]);
    drop(s);
    // Reopened, the table loads what was written.
    let s = reopen(engine, &d).unwrap();
    let again = s.computer_summaries(&keys[..1]).unwrap();
    assert_eq!(&*again[0].as_ref().unwrap().name, "renamed-after-load");
    let _ = std::fs::remove_dir_all(d);
}

fn package_query_fast_path_answers_like_the_general_path(engine: Engine) {
    use census_collector::query::{self, filter, Query, Sort};
    let (s, d) = package_fleet(engine, "pkg-fast");
    let run = |text: &str, sort: &str, after: Option<(serde_json::Value, String)>| {
        query::run(
            &s,
            &Query {
                class: CiClass::Computer,
                filter: filter::parse(text).unwrap(),
                sort: Sort::parse(sort).unwrap(),
                limit: 5,
                after,
            },
            Utc::now(),
        )
        .unwrap()
    };
    let fast = r#"software.name = "openssl" and software.version < "3.0.15""#;
    // `last_seen > 2000-01-01` holds for every CI but is not a software condition, so this
    // takes the general path (read every candidate CI, then evaluate).
    let general = r#"software.name = "openssl" and software.version < "3.0.15" and last_seen > "2000-01-01T00:00:00Z""#;
    for sort in ["name", "-name", "id"] {
        let (mut a_after, mut b_after) = (None, None);
        let mut seen = 0;
        loop {
            let a = run(fast, sort, a_after.take());
            let b = run(general, sort, b_after.take());
            let ids = |p: &query::Page| p.items.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
            assert_eq!(ids(&a), ids(&b), "sort {sort}");
            assert_eq!(a.total, b.total);
            // 2 of 3 versions match, retired ones never: 40 * 2/3 minus the retired.
            assert_eq!(a.total, 23, "sort {sort}");
            assert!(a.items.iter().all(|c| c.status == CiStatus::Active));
            seen += a.items.len();
            match (a.next_cursor, b.next_cursor) {
                (Some(x), Some(y)) => {
                    assert_eq!(x, y);
                    a_after = Some(query::decode_cursor(&x).unwrap());
                    b_after = Some(query::decode_cursor(&y).unwrap());
                }
                (None, None) => break,
                other => panic!("cursors differ: {other:?}"),
            }
        }
        assert_eq!(seen, 23, "paging visits every match once (sort {sort})");
    }
    let _ = std::fs::remove_dir_all(d);
}

/// Regression (PostgreSQL): a read of many keys answered `None` for a key's second mention,
/// and an already numbered software variant wanted twice in one commit was numbered again.
fn a_key_asked_twice_in_one_read_is_answered_twice(engine: Engine) {
    use census_collector::store::backend::TxError;
    let d = engine.dir("twice");
    let s = engine.open(&d);
    let b = s.backend();
    b.put(Space::Meta, b"twice", b"v").unwrap();
    let keys: [&[u8]; 3] = [b"twice", b"absent", b"twice"];
    let want = vec![Some(b"v".to_vec()), None, Some(b"v".to_vec())];
    assert_eq!(b.get_many(Space::Meta, &keys).unwrap(), want);
    let mut inside = Vec::new();
    b.transact(&mut |tx| {
        inside = tx.get_many(Space::Meta, &keys)?;
        Ok::<(), TxError>(())
    })
    .unwrap();
    assert_eq!(inside, want);
    // Several spaces in one read, with what the transaction wrote answering first.
    b.put(Space::AgentState, b"a1", b"agent").unwrap();
    let mut each = Vec::new();
    b.transact(&mut |tx| {
        tx.put(Space::AgentState, b"a2", b"written here")?;
        tx.delete(Space::Meta, b"twice")?;
        let agents: [&[u8]; 3] = [b"a2", b"a1", b"a3"];
        each = tx.get_many_each(&[(Space::Meta, &keys), (Space::AgentState, &agents)])?;
        Err::<(), TxError>(TxError::Abort)
    })
    .unwrap_err();
    assert_eq!(
        each,
        vec![
            vec![None, None, None],
            vec![
                Some(b"written here".to_vec()),
                Some(b"agent".to_vec()),
                None
            ]
        ]
    );
    assert_eq!(b.get_many(Space::Meta, &keys).unwrap(), want, "aborted");
    drop(s);
    let _ = std::fs::remove_dir_all(d);
}

/// A page of CIs read together is the same as each read alone: computers (with a later
/// heartbeat's last-seen), a product that is no CI, an unknown id, an id twice.
fn a_page_read_together_is_each_ci_read_alone(engine: Engine) {
    let (s, d) = package_fleet(engine, "get-cis");
    s.commit_heartbeats(&[HeartbeatCommit {
        agent_id: "a1".into(),
        expected_last_seq: 40,
        seq: 41,
        at: Utc::now() + chrono::Duration::hours(1),
    }])
    .unwrap();
    let product = census_collector::reconcile::det_id(CiClass::SoftwareProduct, &["openssl"]);
    let mut ids: Vec<String> = (0..40).map(|i| format!("cmp_{i:03}")).collect();
    ids.extend([product, "cmp_missing".into(), "cmp_007".into()]);
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let alone: Vec<Option<Ci>> = refs.iter().map(|id| s.get_ci(id).unwrap()).collect();
    assert_eq!(s.get_cis(&refs).unwrap(), alone);
    assert!(alone[0].is_some() && alone[41].is_none());
    drop(s);
    let _ = std::fs::remove_dir_all(d);
}

/// Every contract test, on every engine.
/// The sequencer numbers what ingest queued in one transaction per pass (it ran one per
/// event): cursors still follow the queue, a pass stops at its limit and the next one takes
/// the rest, and each event gets one delivery per active webhook.
fn the_feed_sequencer_numbers_a_batch_in_order_with_a_delivery_per_active_webhook(engine: Engine) {
    let (s, d) = store_with_agent_a1(engine, "sequencer");
    for (id, active) in [("wh_on", true), ("wh_off", false)] {
        s.commit_people(
            &PeopleWrite::PutWebhook(Webhook {
                id: id.into(),
                url: "https://127.0.0.1:9/hook".into(),
                secret: "s".into(),
                created_by: "admin".into(),
                created_at: Utc::now(),
                active,
            }),
            AuditDraft {
                actor: "admin".into(),
                action: "webhook.create".into(),
                target: id.into(),
                before: None,
                after: None,
                comment: None,
            },
            Utc::now(),
        )
        .unwrap();
    }
    let t0 = Utc::now();
    let mut ids = Vec::new();
    for seq in 1..=3u64 {
        let record = ChangeRecord {
            id: format!("chg_{seq}"),
            ci_id: "cmp_1".into(),
            ci_name: "h".into(),
            agent_id: "a1".into(),
            seq,
            detected_at: t0 + Duration::seconds(seq as i64),
            from_version: seq,
            to_version: seq + 1,
            items: vec![],
            severity: Severity::Low,
            authorization: Authorization::Unauthorized,
            planned_changes: vec![],
            state: RecordState::Open,
            review: None,
            tickets: vec![],
            compliance: vec![],
        };
        ids.push(record.id.clone());
        s.commit_ingest(&IngestCommit {
            agent_id: "a1".into(),
            expected_last_seq: seq - 1,
            new_seq: seq,
            seen_at: record.detected_at,
            change_record: Some(record),
            ..Default::default()
        })
        .unwrap();
    }
    assert_eq!(s.sequence_events(2).unwrap(), 2);
    assert_eq!(s.sequence_events(100).unwrap(), 1);
    assert_eq!(s.sequence_events(100).unwrap(), 0, "the queue is empty");
    let feed: Vec<(u64, String)> = s
        .feed_since(0, 100)
        .unwrap()
        .into_iter()
        .map(|e| (e.cursor, e.record.unwrap().id))
        .collect();
    assert_eq!(
        feed,
        vec![
            (1, ids[0].clone()),
            (2, ids[1].clone()),
            (3, ids[2].clone())
        ]
    );
    let mut deliveries: Vec<(u64, String)> = s
        .list_deliveries()
        .unwrap()
        .into_iter()
        .map(|d| (d.cursor, d.webhook_id))
        .collect();
    deliveries.sort();
    assert_eq!(
        deliveries,
        vec![
            (1, "wh_on".into()),
            (2, "wh_on".into()),
            (3, "wh_on".into())
        ]
    );
    let _ = std::fs::remove_dir_all(d);
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod redb {
            $(#[test]
            fn $name() {
                super::$name(super::Engine::Redb)
            })*
        }
        mod sled {
            $(#[test]
            fn $name() {
                super::$name(super::Engine::Sled)
            })*
        }
        mod postgres {
            $(#[test]
            fn $name() {
                super::$name(super::Engine::Postgres)
            })*
        }
    };
}

conformance!(
    newer_schema_is_refused_with_a_clear_message,
    enroll_is_atomic_and_counts_uses,
    ingest_commit_is_compare_and_set_on_seq,
    revoked_agent_cannot_commit,
    heartbeat_is_compare_and_set_and_visible_on_the_agent,
    heartbeats_in_one_batch_are_each_their_own_compare_and_set,
    reverse_edges_carry_the_same_attributes_as_the_forward_ones,
    installs_of_lists_every_install_and_each_variant_once,
    installs_of_a_product_on_thousands_of_computers_reads_like_one_scan,
    edge_counts_follow_new_replaced_and_deleted_edges,
    consistency_check_names_every_derived_record_that_disagrees,
    consistency_check_during_ingest_sees_no_half_applied_commit,
    ci_summaries_follow_every_ci_write,
    package_query_fast_path_answers_like_the_general_path,
    computer_summaries_follow_writes_after_they_are_loaded,
    a_key_asked_twice_in_one_read_is_answered_twice,
    a_store_without_a_recorded_posting_layout_keeps_its_chunks,
    a_page_read_together_is_each_ci_read_alone,
    the_feed_sequencer_numbers_a_batch_in_order_with_a_delivery_per_active_webhook,
);
