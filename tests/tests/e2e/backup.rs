//! Online backup and restore: a backup taken while agents submit is one consistent point
//! in time (no half-applied ingest), a quiescent backup restores to an identical CMDB, and
//! a damaged backup is refused without leaving a store behind.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

fn collector_cli(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin("census-collector"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(dir: &std::path::Path, args: &[&str]) -> Value {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let (ok, out, err) = collector_cli(dir, &all);
    assert!(ok, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap()
}

/// (id, version) of every CI and (id, state) of every change record.
type Cmdb = (Vec<(String, u64)>, Vec<(String, String)>);

fn cmdb(dir: &std::path::Path) -> Cmdb {
    let mut cis: Vec<(String, u64)> = json_of(dir, &["ci", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["version"].as_u64().unwrap(),
            )
        })
        .collect();
    cis.sort();
    let mut records: Vec<(String, String)> = json_of(dir, &["changes"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    records.sort();
    (cis, records)
}

#[test]
fn backup_under_load_is_consistent_and_restores_identically() {
    let c = Collector::start("backup");
    let token = c.token(3, "1h");
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for i in 0..3 {
        let mut agent = FakeAgent::enroll(&c, &token);
        let stop = stop.clone();
        let url_dir = (c.url.clone(), c.dir.clone(), c.port);
        senders.push(std::thread::spawn(move || {
            // A collector handle that only talks HTTP (never started or dropped here).
            let view = Collector::attach(&url_dir.0, &url_dir.1, url_dir.2);
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let mut snap = machine(
                    &format!("bk-{i}"),
                    Some(&format!("BK-{i}")),
                    None,
                    &format!("{i:032x}"),
                    &[&format!("52:54:00:bb:00:0{i}")],
                );
                if let Some(os) = snap.os.data_mut() {
                    os.timezone = Some(format!("tz-{n}"));
                }
                assert_eq!(agent.send(&view, &mut snap).status, 200);
                n += 1;
            }
            n
        }));
    }
    std::thread::sleep(Duration::from_millis(800));
    let live_backup = c.dir.join("live.bak");
    let (ok, out, err) = collector_cli(&c.dir, &["backup", "--to", live_backup.to_str().unwrap()]);
    assert!(ok, "backup under load: {err}");
    assert!(out.contains("live.bak") && out.contains("RECORDS"), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let sent: usize = senders.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(sent > 6, "the load ran ({sent} snapshots)");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&live_backup)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // Restored from the live backup: each agent's records match its last seq exactly.
    let restored = temp_dir("backup-restored-live");
    let (ok, _, err) = collector_cli(
        &restored,
        &["restore", "--from", live_backup.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    let agents = json_of(&restored, &["agent", "list"]);
    let mut per_agent: BTreeMap<String, u64> = BTreeMap::new();
    for r in json_of(&restored, &["changes"]).as_array().unwrap() {
        *per_agent
            .entry(r["agent_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    for a in agents.as_array().unwrap() {
        let last = a["last_seq"].as_u64().unwrap();
        let records = per_agent
            .get(a["id"].as_str().unwrap())
            .copied()
            .unwrap_or(0);
        assert_eq!(
            records,
            last.saturating_sub(1),
            "agent {} at seq {last}: one record per snapshot after the first",
            a["id"]
        );
    }

    // A quiescent backup restores to exactly the live CMDB.
    let quiet_backup = c.dir.join("quiet.bak");
    assert!(collector_cli(&c.dir, &["backup", "--to", quiet_backup.to_str().unwrap()]).0);
    let restored_quiet = temp_dir("backup-restored-quiet");
    assert!(
        collector_cli(
            &restored_quiet,
            &["restore", "--from", quiet_backup.to_str().unwrap()]
        )
        .0
    );
    assert_eq!(
        cmdb(&restored_quiet),
        cmdb(&c.dir),
        "every CI and change record identical"
    );

    // Restoring over an existing store is refused; a damaged backup leaves nothing behind.
    let (ok, _, err) = collector_cli(
        &restored_quiet,
        &["restore", "--from", quiet_backup.to_str().unwrap()],
    );
    assert!(!ok && err.contains("already holds a store"), "{err}");
    let mut bytes = std::fs::read(&quiet_backup).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    let damaged = c.dir.join("damaged.bak");
    std::fs::write(&damaged, bytes).unwrap();
    let target = temp_dir("backup-restored-damaged");
    let (ok, _, err) = collector_cli(&target, &["restore", "--from", damaged.to_str().unwrap()]);
    assert!(!ok, "a damaged backup is refused");
    assert!(
        !target.join("store").exists(),
        "no partial store left: {err}"
    );
    for d in [restored, restored_quiet, target] {
        let _ = std::fs::remove_dir_all(d);
    }
}
