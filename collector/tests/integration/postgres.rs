//! What only a shared database has to prove: several collectors (here, several stores
//! opened on one database) accept a seq once, one of them leads the background work and
//! another takes over when it goes, the table layout refuses a newer one, and a server
//! that goes away makes the store unavailable — not broken — until it is back.

use std::sync::{Arc, Barrier};

use census_collector::model::*;
use census_collector::store::pg_backend::{self, PgBackend, PgOptions};
use census_collector::store::*;
use census_e2e::pg::Cluster;
use chrono::{Duration, Utc};

fn open(url: &str) -> Cmdb {
    Cmdb::open_postgres(PgOptions::new(url)).unwrap()
}

fn enroll(s: &Cmdb, ids: &[&str]) {
    s.put_token(&EnrollmentToken {
        id: "tok".into(),
        secret_hash: "h".into(),
        created_at: Utc::now(),
        expires_at: Utc::now() + Duration::hours(1),
        max_uses: 1000,
        uses: 0,
        revoked_at: None,
        note: None,
    })
    .unwrap();
    for id in ids {
        s.enroll(
            "h",
            &Agent::enrolled(
                (*id).into(),
                format!("key-{id}"),
                "t".into(),
                Default::default(),
                Utc::now(),
            ),
            Utc::now(),
        )
        .unwrap();
    }
}

fn first(agent: &str, computer: &str) -> IngestCommit {
    IngestCommit {
        agent_id: agent.into(),
        expected_last_seq: 0,
        new_seq: 1,
        seen_at: Utc::now(),
        ci_puts: vec![super::store::computer(computer, computer, CiStatus::Active)],
        ci_id: Some(computer.into()),
        ..Default::default()
    }
}

#[test]
fn two_collectors_on_one_database_accept_a_replayed_seq_once() {
    let url = Cluster::shared().database("pg_replay");
    let stores: Vec<Arc<Cmdb>> = (0..2).map(|_| Arc::new(open(&url))).collect();
    enroll(&stores[0], &["a1"]);
    // The same signed submission arrives at both collectors at once, eight times over.
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let s = stores[i % 2].clone();
            let b = barrier.clone();
            std::thread::spawn(move || {
                b.wait();
                s.commit_ingest(&first("a1", "cmp_1"))
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(accepted, 1, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(
                r,
                CommitError::SeqMoved {
                    expected: 0,
                    current: 1
                }
            ),
            "{r}"
        );
    }
    for s in &stores {
        assert_eq!(s.get_agent("a1").unwrap().unwrap().last_seq, 1);
    }
}

/// Heartbeats admitted on the agent's record inside the transaction (how collectors batch
/// them): the same heartbeat at both collectors at once, eight times over, is admitted once.
#[test]
fn two_collectors_admit_a_replayed_heartbeat_once() {
    let url = Cluster::shared().database("pg_hb_replay");
    let stores: Vec<Arc<Cmdb>> = (0..2).map(|_| Arc::new(open(&url))).collect();
    enroll(&stores[0], &["a1"]);
    stores[0].commit_ingest(&first("a1", "cmp_1")).unwrap();
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let s = stores[i % 2].clone();
            let b = barrier.clone();
            std::thread::spawn(move || {
                let hb = HeartbeatCommit {
                    agent_id: "a1".into(),
                    expected_last_seq: 0,
                    seq: 2,
                    at: Utc::now(),
                };
                b.wait();
                s.admit_heartbeats(&[hb], &mut |_, agent| {
                    agent.is_some_and(|a| a.last_seq < 2 && a.revoked_at.is_none())
                })
                .unwrap()
                .pop()
                .unwrap()
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, CommitError::NotAdmitted)),
        "{results:?}"
    );
    for s in &stores {
        assert_eq!(s.get_agent("a1").unwrap().unwrap().last_seq, 2);
    }
}

#[test]
fn agents_spread_over_two_collectors_all_land_and_the_store_checks_clean() {
    let url = Cluster::shared().database("pg_spread");
    let stores: Vec<Arc<Cmdb>> = (0..2).map(|_| Arc::new(open(&url))).collect();
    let ids: Vec<String> = (0..40).map(|i| format!("a{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    enroll(&stores[0], &refs);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let stores = stores.clone();
            let ids = ids.clone();
            std::thread::spawn(move || {
                for (i, id) in ids.iter().enumerate().filter(|(i, _)| i % 4 == t) {
                    let s = &stores[i % 2];
                    s.commit_ingest(&first(id, &format!("cmp_{id}"))).unwrap();
                    s.commit_heartbeats(&[HeartbeatCommit {
                        agent_id: id.clone(),
                        expected_last_seq: 1,
                        seq: 2,
                        at: Utc::now(),
                    }])
                    .unwrap()
                    .into_iter()
                    .for_each(|r| r.unwrap());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    stores[1].flush().unwrap();
    for id in &ids {
        assert_eq!(
            stores[1].get_agent(id).unwrap().unwrap().last_seq,
            2,
            "{id}"
        );
    }
    let report = stores[0].check_consistency().unwrap();
    assert_eq!(report.problems_total, 0, "{:?}", report.problems);
    // The reporting tables were written by the same commits.
    let q = |sql: &str| Cluster::shared().psql("pg_spread", sql).unwrap();
    assert_eq!(q("SELECT count(*) FROM census_report.computers"), "40");
    assert_eq!(
        q("SELECT count(*) FROM census_report.agents WHERE last_seq = 2 AND computer_id IS NOT NULL"),
        "40"
    );
}

#[test]
fn one_collector_leads_and_another_takes_over_when_it_goes() {
    let url = Cluster::shared().database("pg_leader");
    let a = PgBackend::open(PgOptions::new(&url)).unwrap();
    let b = PgBackend::open(PgOptions::new(&url)).unwrap();
    use census_collector::store::backend::Backend;
    assert!(a.lead().unwrap());
    assert!(!b.lead().unwrap());
    assert!(a.lead().unwrap(), "a leader keeps leading");
    drop(a);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !b.lead().unwrap() {
        assert!(std::time::Instant::now() < deadline, "no fail-over in 10 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_newer_table_layout_is_refused_by_name() {
    let cluster = Cluster::shared();
    let url = cluster.database("pg_newer");
    drop(open(&url));
    cluster
        .psql(
            "pg_newer",
            "INSERT INTO census.schema_migrations (version, description) VALUES (99, 'from the future')",
        )
        .unwrap();
    let err = Cmdb::open_postgres(PgOptions::new(&url))
        .err()
        .expect("refused");
    assert!(
        matches!(err, StoreError::NewerSchema { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade the collector"), "{err}");
}

#[test]
fn a_wrong_password_or_address_is_named_without_the_password() {
    let cluster = Cluster::shared();
    let mut o = PgOptions::new("postgres://census:hunter2@127.0.0.1:1/none?sslmode=disable");
    o.connect_timeout = std::time::Duration::from_secs(2);
    let err = Cmdb::open_postgres(o).err().expect("refused").to_string();
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    let _ = cluster;
    let bad = Cmdb::open_postgres(PgOptions::new("postgres://[::1"))
        .err()
        .expect("refused");
    assert!(bad.to_string().contains("not valid"), "{bad}");
}

#[test]
fn postgres_down_makes_the_store_unavailable_and_it_recovers_without_reopening() {
    let cluster = Cluster::start().unwrap();
    let url = cluster.database("pg_down");
    let mut options = PgOptions::new(&url);
    options.connect_timeout = std::time::Duration::from_secs(2);
    options.acquire_timeout = std::time::Duration::from_secs(2);
    let s = Cmdb::open_postgres(options).unwrap();
    enroll(&s, &["a1", "a2"]);
    s.commit_ingest(&first("a1", "cmp_1")).unwrap();
    s.flush().unwrap();
    cluster.stop().unwrap();
    let refused = s.commit_ingest(&first("a2", "cmp_2")).unwrap_err();
    assert!(
        matches!(refused, CommitError::Store(StoreError::Unavailable(_))),
        "{refused}"
    );
    cluster.restart().unwrap();
    // Broken connections are dropped and new ones made: the same store works again.
    let mut tries = 0;
    loop {
        match s.commit_ingest(&first("a2", "cmp_2")) {
            Ok(()) => break,
            Err(CommitError::Store(StoreError::Unavailable(_))) if tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Err(e) => panic!("{e}"),
        }
    }
    s.flush().unwrap();
    assert_eq!(s.get_agent("a1").unwrap().unwrap().last_seq, 1);
    assert_eq!(s.get_agent("a2").unwrap().unwrap().last_seq, 1);
    let _ = pg_backend::SCHEMA;
}

/// Connections in the pool are read only by the thread that leases them: one the server
/// closed while it sat idle (a restart, an administrator's `pg_terminate_backend`) must be
/// noticed at the lease and replaced, not handed to a request that then fails with 503.
#[test]
fn a_pooled_connection_the_server_closed_while_idle_is_replaced_at_its_lease() {
    let cluster = Cluster::shared();
    let url = cluster.database("pg_idle_closed");
    let s = open(&url);
    enroll(&s, &["a1"]);
    assert!(s.get_agent("a1").unwrap().is_some());
    let db = url
        .rsplit('/')
        .next()
        .and_then(|t| t.split('?').next())
        .unwrap()
        .to_string();
    let ended = cluster
        .psql(
            &db,
            // OFFSET 0 keeps the server from calling the function before the filter.
            "SELECT count(pg_terminate_backend(pid)) FROM (SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() OFFSET 0) other",
        )
        .unwrap();
    assert_ne!(ended, "0", "the store held no connection to close");
    std::thread::sleep(std::time::Duration::from_millis(200));
    for _ in 0..3 {
        assert!(s.get_agent("a1").unwrap().is_some());
    }
}

/// Regression: commits were asynchronous and "flushed" by a later `SELECT txid_current()`,
/// which writes no WAL and so never waited for a flush; a PostgreSQL crash right after an
/// acknowledged commit lost it (seen in the e2e outage test).
#[test]
fn a_commit_survives_a_postgres_crash_right_after_it_returns() {
    let cluster = Cluster::start().unwrap();
    let url = cluster.database("pg_crash_after_commit");
    let s = open(&url);
    let ids: Vec<String> = (0..30).map(|i| format!("a{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    enroll(&s, &refs);
    for id in &ids {
        s.commit_ingest(&first(id, &format!("cmp_{id}"))).unwrap();
    }
    // No flush: the commit returning is the promise.
    cluster.crash().unwrap();
    cluster.restart().unwrap();
    drop(s);
    let s = open(&url);
    for id in &ids {
        assert_eq!(s.get_agent(id).unwrap().unwrap().last_seq, 1, "{id} lost");
    }
}

#[test]
fn the_embedded_store_copies_into_postgres_and_answers_the_same() {
    use super::store::{package_fleet, Engine};
    let (source, d) = package_fleet(Engine::Redb, "copy-source");
    let product = census_collector::reconcile::det_id(CiClass::SoftwareProduct, &["openssl"]);
    let url = Cluster::shared().database("pg_copy_target");
    let target = open(&url);
    let mut seen = Vec::new();
    let summary = source
        .copy_into(&target, &mut |space, n| seen.push((space, n)))
        .unwrap();
    assert_eq!(summary.problems_total, 0);
    assert_eq!(summary.cis.get("computer"), Some(&40));
    assert!(summary.records > 100, "{summary:?}");
    assert!(!seen.is_empty(), "progress was reported");
    drop(target);
    let target = open(&url);
    assert_eq!(
        target.relationships_to(&product).unwrap(),
        source.relationships_to(&product).unwrap()
    );
    assert_eq!(
        target.installs_of(&product).unwrap().installs.len(),
        source.installs_of(&product).unwrap().installs.len()
    );
    assert_eq!(
        target.get_agent("a1").unwrap().unwrap().last_seq,
        source.get_agent("a1").unwrap().unwrap().last_seq
    );
    // Ingest goes on in the copy: the agent's next seq is accepted there.
    target
        .commit_ingest(&IngestCommit {
            agent_id: "a1".into(),
            expected_last_seq: 40,
            new_seq: 41,
            seen_at: Utc::now(),
            ..Default::default()
        })
        .unwrap();
    // A second copy into a store that holds data is refused before anything is written.
    let again = source.copy_into(&target, &mut |_, _| {}).unwrap_err();
    assert!(again.to_string().contains("already holds data"), "{again}");
    let _ = std::fs::remove_dir_all(d);
}

/// The reporting views answer what the CMDB holds, in the same transaction as the bytes.
#[test]
fn reporting_views_show_installed_software_open_records_and_silent_agents() {
    use super::store::{package_fleet, Engine};
    let (source, d) = package_fleet(Engine::Redb, "report-source");
    let cluster = Cluster::shared();
    let url = cluster.database("pg_report");
    let target = open(&url);
    source.copy_into(&target, &mut |_, _| {}).unwrap();
    let q = |sql: &str| cluster.psql("pg_report", sql).unwrap();
    // 40 computers, every fifth with the i386 package too: 48 installs of openssl.
    assert_eq!(q("SELECT count(*) FROM census_report.computers"), "40");
    assert_eq!(
        q("SELECT count(*) FROM census_report.installed_software WHERE package = 'openssl'"),
        "48"
    );
    assert_eq!(
        q("SELECT count(DISTINCT version) FROM census_report.installed_software WHERE package = 'openssl'"),
        "3"
    );
    assert_eq!(
        q("SELECT sum(computers) FROM census_report.software_versions WHERE package = 'openssl'"),
        "48"
    );
    assert_eq!(q("SELECT count(*) FROM census_report.agents"), "1");
    // a1's last contact is now: not silent. A new agent that never reported is.
    assert_eq!(q("SELECT count(*) FROM census_report.silent_agents"), "0");
    enroll(&target, &["quiet"]);
    assert_eq!(q("SELECT id FROM census_report.silent_agents"), "quiet");
    assert_eq!(
        q("SELECT last_seq FROM census_report.agents WHERE id = 'a1'"),
        "40"
    );
    // A retired computer's status follows a later write.
    assert_eq!(
        q("SELECT count(*) FROM census_report.computers WHERE status = 'retired'"),
        "6"
    );
    // People without their credentials.
    let columns = q("SELECT string_agg(column_name, ',') FROM information_schema.columns WHERE table_schema = 'census_report' AND table_name = 'people'");
    assert!(!columns.contains("password"), "{columns}");
    // Emptying a key space empties what it projects into.
    use census_collector::store::backend::Space;
    target.backend().clear(Space::Summaries).unwrap();
    assert_eq!(q("SELECT count(*) FROM census_report.computers"), "0");
    let _ = std::fs::remove_dir_all(d);
}

/// Regression: each collector kept every computer's summary in memory, loaded once and kept
/// by its own writes, so a computer another collector renamed kept its old name in this
/// one's package queries.
#[test]
fn a_computer_renamed_by_another_collector_shows_its_new_name_here() {
    let url = Cluster::shared().database("pg_rename");
    let (a, b) = (open(&url), open(&url));
    enroll(&a, &["a1"]);
    let product = census_collector::reconcile::det_id(CiClass::SoftwareProduct, &["openssl"]);
    let mut discovered = first("a1", "cmp_1");
    discovered.relationship_puts =
        vec![super::store::installs("cmp_1", &product, "3.0.15", "amd64")];
    a.commit_ingest(&discovered).unwrap();
    let num = a.installs_of(&product).unwrap().installs[0].0;
    assert_eq!(
        &*a.computer_summaries(&[num]).unwrap()[0]
            .as_ref()
            .unwrap()
            .name,
        "cmp_1"
    );
    let mut renamed = first("a1", "cmp_1");
    renamed.expected_last_seq = 1;
    renamed.new_seq = 2;
    renamed.ci_puts[0].name = "renamed".into();
    renamed.ci_puts[0].version = 2;
    b.commit_ingest(&renamed).unwrap();
    assert_eq!(
        &*a.computer_summaries(&[num]).unwrap()[0]
            .as_ref()
            .unwrap()
            .name,
        "renamed"
    );
    // A computer the other collector discovers after this one read its summaries.
    enroll(&b, &["a2"]);
    let mut second = first("a2", "cmp_2");
    second.relationship_puts = vec![super::store::installs("cmp_2", &product, "3.0.16", "amd64")];
    b.commit_ingest(&second).unwrap();
    let nums: Vec<u64> = a
        .installs_of(&product)
        .unwrap()
        .installs
        .iter()
        .map(|i| i.0)
        .collect();
    let names: Vec<String> = a
        .computer_summaries(&nums)
        .unwrap()
        .into_iter()
        .map(|s| {
            s.expect("every computer has a summary here")
                .name
                .to_string()
        })
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"cmp_2".to_string()), "{names:?}");
    // Nothing written since: the next read finds no rows and the same answer.
    assert_eq!(a.computer_summaries(&nums).unwrap().len(), 2);
}

/// A database made by a collector of migration 1 (no CI, relationship or version reports,
/// no summary stamps, no licences, no services, no advisories, no exposure ledgers, no
/// address index or flows) gets migrations 2 to 8 on the next start, with its new tables filled
/// from the stored bytes and every summary stamped.
#[test]
fn migration_2_fills_its_report_tables_from_what_the_database_holds() {
    use super::store::{package_fleet, Engine};
    let (source, d) = package_fleet(Engine::Redb, "migration-2-source");
    let cluster = Cluster::shared();
    let url = cluster.database("pg_migration_2");
    let target = open(&url);
    source.copy_into(&target, &mut |_, _| {}).unwrap();
    drop(target);
    let q = |sql: &str| cluster.psql("pg_migration_2", sql).unwrap();
    let views = [
        "SELECT count(*) FROM census_report.cis",
        "SELECT count(*) FROM census_report.relationships",
        "SELECT count(*) FROM census_report.computer_history",
        "SELECT count(*) FROM census_report.computer_details WHERE status = 'retired'",
    ];
    let before: Vec<String> = views.iter().map(|v| q(v)).collect();
    assert_eq!(
        before[0], "40",
        "the fleet's 40 computers (its product is never a CI)"
    );
    assert_ne!(before[2], "0");
    assert_eq!(before[3], "6");
    // Back to what migration 1 left.
    q("DROP VIEW census_report.cis, census_report.computer_details, census_report.relationships, census_report.computer_history;
       DROP TABLE census.report_cis, census.report_components, census.report_shared_cis, census.report_steps;
       DROP TRIGGER kv_v3_summaries_written ON census.kv_v3_summaries;
       DROP FUNCTION census.stamp_written();
       ALTER TABLE census.kv_v3_summaries DROP COLUMN written;
       DROP TABLE census.kv_licences, census.kv_services, census.kv_service_versions;
       DROP TABLE census.kv_advisories, census.kv_advisory_index;
       DROP TABLE census.kv_exposures, census.kv_rematch;
       DROP TABLE census.kv_v3_addresses, census.kv_flows, census.kv_flow_targets, census.kv_baselines;
       DELETE FROM census.schema_migrations WHERE version IN (2, 3, 4, 5, 6, 7, 8)");
    let s = open(&url);
    let after: Vec<String> = views.iter().map(|v| q(v)).collect();
    assert_eq!(after, before);
    assert_eq!(q("SELECT max(version) FROM census.schema_migrations"), "8");
    // Migrations 4 to 8 made the tables of licences, services, advisories, exposures and
    // flows a migration-1 database lacks, and the address index is whole after the open.
    assert_eq!(
        s.check_consistency().unwrap().problems,
        Vec::<String>::new()
    );
    assert_eq!(q("SELECT count(*) FROM census.kv_licences"), "0");
    assert_eq!(q("SELECT count(*) FROM census.kv_service_versions"), "0");
    assert_eq!(q("SELECT count(*) FROM census.kv_advisory_index"), "0");
    assert_eq!(q("SELECT count(*) FROM census.kv_exposures"), "0");
    assert_eq!(
        q("SELECT count(*) FROM census.kv_v3_summaries WHERE written IS NULL"),
        "0"
    );
    // The summaries read through the stamps are the stored ones.
    let nums: Vec<u64> = (0..4096).collect();
    let read = s.computer_summaries(&nums).unwrap();
    assert_eq!(read.iter().flatten().count(), 40);
    drop(s);
    let _ = std::fs::remove_dir_all(d);
}

/// Each collector on a shared database gives numbers (CIs, software variants) from a block
/// it reserved, so commits that number something do not queue on one counter; a variant
/// new to the fleet is numbered by the commit that installs it. Two collectors numbering
/// the same new versions and their own computers at once: every key gets one number, each
/// number one key, and each collector reads the other's installs back as written.
#[test]
fn two_collectors_numbering_at_once_give_each_key_one_number() {
    let url = Cluster::shared().database("pg_numbers");
    let stores: Vec<Arc<Cmdb>> = (0..2).map(|_| Arc::new(open(&url))).collect();
    let ids: Vec<String> = (0..48).map(|i| format!("a{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    enroll(&stores[0], &refs);
    let product = census_collector::reconcile::det_id(CiClass::SoftwareProduct, &["openssl"]);
    let version = |i: usize| format!("3.0.{}", i % 5);
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let (stores, ids, product, barrier) = (
                stores.clone(),
                ids.clone(),
                product.clone(),
                barrier.clone(),
            );
            std::thread::spawn(move || {
                barrier.wait();
                for (i, id) in ids.iter().enumerate().filter(|(i, _)| i % 4 == t) {
                    let computer = format!("cmp_{i}");
                    let mut commit = first(id, &computer);
                    commit.relationship_puts = vec![super::store::installs(
                        &computer,
                        &product,
                        &version(i),
                        "amd64",
                    )];
                    // A variant another collector numbered first refuses the commit as
                    // an identity race, which the ingest answers by trying again.
                    let mut tries = 0;
                    loop {
                        match stores[i % 2].commit_ingest(&commit) {
                            Ok(()) => break,
                            Err(CommitError::IdentityRace(_)) if tries < 5 => tries += 1,
                            Err(e) => panic!("{computer}: {e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let q = |sql: &str| Cluster::shared().psql("pg_numbers", sql).unwrap();
    // 48 computers and one product numbered, 5 variants interned: each once.
    assert_eq!(q("SELECT count(*) FROM census.kv_v3_num_ids"), "49");
    assert_eq!(
        q("SELECT count(DISTINCT v) FROM census.kv_v3_num_ids"),
        "49"
    );
    assert_eq!(q("SELECT count(*) FROM census.kv_v3_variants"), "5");
    assert_eq!(
        q("SELECT count(DISTINCT v) FROM census.kv_v3_variant_ids"),
        "5"
    );
    for (n, store) in stores.iter().enumerate() {
        for i in 0..48 {
            let computer = format!("cmp_{i}");
            let state = store.owned_state(&computer).unwrap();
            let got: Vec<(String, Option<String>)> = state
                .installs
                .iter()
                .map(|inst| (inst.product.clone(), inst.package.version.clone()))
                .collect();
            assert_eq!(
                got,
                [(product.clone(), Some(version(i)))],
                "{computer} read on collector {n}"
            );
        }
    }
    let report = stores[1].check_consistency().unwrap();
    assert_eq!(report.problems_total, 0, "{:?}", report.problems);
}

/// Advisories on PostgreSQL: an import's batches, the package index, the generation two
/// collectors of one database agree on, and a withdrawal.
#[test]
fn advisories_import_and_index_on_a_shared_database() {
    use census_collector::vulns::import;
    let url = Cluster::shared().database("pg_advisories");
    let a = open(&url);
    let b = open(&url);
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/osv/debian");
    assert_eq!(a.advisories_generation().unwrap(), 0);
    let report = import::import(&a, &fixtures, &mut |_| {}).unwrap();
    assert_eq!((report.added, report.skipped_total), (6, 2), "{report:?}");
    let generation = b.advisories_generation().unwrap();
    assert_ne!(generation, 0);
    assert_eq!(a.advisories_generation().unwrap(), generation);
    let openssl: Vec<String> = b
        .advisories_for("Debian:12", "openssl")
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(
        openssl,
        [
            "DEBIAN-CVE-2025-15467",
            "DEBIAN-CVE-2026-28387",
            "DSA-9901-1"
        ]
    );
    assert_eq!(b.advisory_count().unwrap(), 6);
    // The same feed again changes nothing, not even the generation.
    let again = import::import(&b, &fixtures, &mut |_| {}).unwrap();
    assert_eq!(again.unchanged, 6);
    assert_eq!(a.advisories_generation().unwrap(), generation);
    // A withdrawal removes the advisory and its index entries.
    let withdrawn = census_collector::model::vuln::AdvisoryWrite::Withdraw {
        id: "DSA-9901-1".into(),
        modified: Utc::now(),
    };
    a.write_advisories(&[withdrawn]).unwrap();
    assert!(b.get_advisory("DSA-9901-1").unwrap().is_none());
    assert_eq!(b.advisories_for("Debian:12", "openssl").unwrap().len(), 2);
    assert_ne!(b.advisories_generation().unwrap(), generation);
}

/// The exposure tracker's whole cycle (baseline, drift, import, new host, withdrawal) on
/// PostgreSQL, as on the embedded store.
#[test]
fn exposures_are_tracked_on_a_shared_database() {
    let url = Cluster::shared().database("pg_exposures");
    let store = std::sync::Arc::new(open(&url));
    let dir = std::env::temp_dir().join(format!("census-pg-exposures-{}", std::process::id()));
    super::vulns::exposure_cycle(super::drift::rig_on("pg-exposures", store, dir));
}

#[test]
fn an_address_handed_over_resolves_on_a_shared_database() {
    let url = Cluster::shared().database("pg_address_handover");
    let store = std::sync::Arc::new(open(&url));
    let dir = std::env::temp_dir().join(format!("census-pg-handover-{}", std::process::id()));
    super::map::address_handover(super::drift::rig_on("pg-handover", store, dir));
}
