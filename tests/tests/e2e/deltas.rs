//! Protocol v2 with the real binaries: the agent reads a copy of this machine's dpkg
//! database (`DPKG_ADMINDIR`), the test edits it, and the agent sends what changed as a
//! signed delta. Upgrades, removals and installs arrive as a change record; a failed
//! section keeps what the CMDB held; a collector restored from an older backup answers
//! the next delta with 409 and the agent sends its inventory whole, without a person;
//! deltas spooled through an outage arrive in order.

use std::path::Path;

use serde_json::Value;

use crate::agent::{enrollment, text, RealAgent};
use crate::support::*;

/// The dpkg status file as stanzas.
fn stanzas(status: &Path) -> Vec<String> {
    std::fs::read_to_string(status)
        .unwrap()
        .split("\n\n")
        .map(|s| s.trim_matches('\n').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn write_stanzas(status: &Path, stanzas: &[String]) {
    std::fs::write(status, stanzas.join("\n\n") + "\n").unwrap();
}

fn field<'a>(stanza: &'a str, name: &str) -> Option<&'a str> {
    stanza
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

fn installed(stanza: &str) -> bool {
    field(stanza, "Status").is_some_and(|s| s.ends_with(" installed"))
}

/// Upgrades the first `n` installed packages (a higher version by dpkg's order); returns
/// their names.
fn upgrade(status: &Path, n: usize, suffix: &str) -> Vec<String> {
    let mut all = stanzas(status);
    let mut names = Vec::new();
    for s in all.iter_mut().filter(|s| installed(s)).take(n) {
        let version = field(s, "Version").unwrap().to_string();
        names.push(field(s, "Package").unwrap().to_string());
        *s = s.replace(
            &format!("Version: {version}"),
            &format!("Version: {version}{suffix}"),
        );
    }
    write_stanzas(status, &all);
    names
}

fn remove_last_installed(status: &Path) -> String {
    let mut all = stanzas(status);
    let i = all.iter().rposition(|s| installed(s)).unwrap();
    let name = field(&all[i], "Package").unwrap().to_string();
    all.remove(i);
    write_stanzas(status, &all);
    name
}

fn install(status: &Path, name: &str) {
    let mut all = stanzas(status);
    all.push(format!(
        "Package: {name}\nStatus: install ok installed\nArchitecture: all\nVersion: 1.0-1\nDescription: added by the e2e test"
    ));
    write_stanzas(status, &all);
}

/// (kind, bytes) of every inventory the agent's log says it spooled.
fn spooled(out: &std::process::Output) -> Vec<(String, u64)> {
    let log = String::from_utf8_lossy(&out.stderr);
    log.lines()
        .map(strip_ansi)
        .filter(|l| l.contains("inventory spooled"))
        .map(|l| {
            let value = |key: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(key))
                    .unwrap_or("")
                    .trim_matches('"')
                    .to_string()
            };
            (value("kind="), value("bytes=").parse().unwrap_or(0))
        })
        .collect()
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            for d in chars.by_ref() {
                if ('@'..='~').contains(&d) && d != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn last_record(c: &Collector) -> Value {
    let records = c.json(&["changes"]);
    records
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|r| r["seq"].as_u64().unwrap_or(0))
        .map(|r| r["record"].clone())
        .expect("a change record")
}

fn kinds(record: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = record["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().to_string(),
                i["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn installs_of(c: &Collector, agent: &RealAgent) -> u64 {
    let id = enrollment(&agent.state)["agent_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ci = agent_row(c, &id)["ci_id"].as_str().unwrap().to_string();
    c.json(&["ci", "show", &ci])["counts"]["installs"]
        .as_u64()
        .unwrap()
}

#[test]
fn upgrades_removals_installs_and_a_failed_section_travel_as_deltas() {
    let c = Collector::start("delta-kinds");
    let agent = RealAgent::with_dpkg_copy("delta-kinds");
    assert!(agent.enroll(&c).status.success());
    let out = agent.run(&["once"]);
    assert!(
        text(&out).contains("snapshot seq 1 delivered"),
        "{}",
        text(&out)
    );
    let before = installs_of(&c, &agent);

    let status = agent.dpkg_status();
    let upgraded = upgrade(&status, 5, "+census1");
    let removed = remove_last_installed(&status);
    install(&status, "census-e2e-extra");
    let out = agent.run(&["once"]);
    let t = text(&out);
    assert!(t.contains("delta seq 2 delivered"), "{t}");
    let sent = spooled(&out);
    assert_eq!(sent.len(), 1, "{t}");
    assert_eq!(sent[0].0, "delta");
    assert!(
        sent[0].1 <= 2048,
        "5 upgrades, a removal and an install took {} bytes on the wire",
        sent[0].1
    );
    let record = last_record(&c);
    let got = kinds(&record);
    for name in &upgraded {
        assert!(
            got.contains(&("software_upgraded".into(), name.clone())),
            "{name} upgraded: {got:?}"
        );
    }
    assert!(
        got.contains(&("software_removed".into(), removed.clone())),
        "{got:?}"
    );
    assert!(
        got.contains(&("software_installed".into(), "census-e2e-extra".into())),
        "{got:?}"
    );
    assert_eq!(
        installs_of(&c, &agent),
        before,
        "one removed, one installed"
    );

    // The package database unreadable: the section failed, the CMDB keeps the packages.
    std::fs::remove_file(&status).unwrap();
    std::fs::create_dir(&status).unwrap();
    let out = agent.run(&["once"]);
    assert!(
        text(&out).contains("delta seq 3 delivered"),
        "{}",
        text(&out)
    );
    assert_eq!(
        installs_of(&c, &agent),
        before,
        "a failed section removes nothing"
    );
    // Readable again (this machine's own list): the base had the section failed, so it
    // goes replaced, not edited, and lands.
    std::fs::remove_dir(&status).unwrap();
    std::fs::copy("/var/lib/dpkg/status", &status).unwrap();
    let out = agent.run(&["once"]);
    assert!(
        text(&out).contains("delta seq 4 delivered"),
        "{}",
        text(&out)
    );
    assert_eq!(installs_of(&c, &agent), before);
}

#[test]
fn a_collector_restored_from_an_older_backup_gets_the_inventory_whole() {
    let mut c = Collector::start("delta-restore");
    let agent = RealAgent::with_dpkg_copy("delta-restore");
    assert!(agent.enroll(&c).status.success());
    assert!(agent.run(&["once"]).status.success());
    let backup = c.dir.join("older.bak");
    assert!(c
        .cli(&["backup", "--to", backup.to_str().unwrap()])
        .contains("older.bak"));
    upgrade(&agent.dpkg_status(), 2, "+r1");
    let out = agent.run(&["once"]);
    assert!(
        text(&out).contains("delta seq 2 delivered"),
        "{}",
        text(&out)
    );

    // The collector loses seq 2: restored from the backup taken after seq 1.
    c.stop();
    std::fs::remove_dir_all(c.dir.join("store")).unwrap();
    let restore = std::process::Command::new(bin("census-collector"))
        .arg("--data-dir")
        .arg(&c.dir)
        .args(["restore", "--from", backup.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(restore.status.success(), "{}", text(&restore));
    c.start_again();

    let upgraded = upgrade(&agent.dpkg_status(), 3, "+r2");
    let out = agent.run(&["once"]);
    let t = text(&out);
    assert!(t.contains("seq 3 refused (409)"), "{t}");
    assert!(t.contains("went whole as seq 4"), "{t}");
    assert!(t.contains("snapshot seq 4 delivered"), "{t}");
    let got = kinds(&last_record(&c));
    assert!(
        got.contains(&("software_upgraded".into(), upgraded[2].clone())),
        "the whole inventory carries every change since the backup: {got:?}"
    );
    // And deltas resume on the new base.
    upgrade(&agent.dpkg_status(), 1, "+r3");
    let out = agent.run(&["once"]);
    assert!(
        text(&out).contains("delta seq 5 delivered"),
        "{}",
        text(&out)
    );
}

#[test]
fn five_deltas_spooled_through_an_outage_arrive_in_order() {
    let mut c = Collector::start("delta-outage");
    let agent = RealAgent::with_dpkg_copy("delta-outage");
    assert!(agent.enroll(&c).status.success());
    assert!(agent.run(&["once"]).status.success());
    c.stop();
    for round in 0..5 {
        upgrade(&agent.dpkg_status(), 1, &format!("+o{round}"));
        let out = agent.run(&["once"]);
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        assert_eq!(
            spooled(&out),
            vec![("delta".to_string(), spooled(&out)[0].1)]
        );
    }
    assert_eq!(agent.spool_files().len(), 5);
    c.start_again();
    let out = agent.run(&["once"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    let order: Vec<usize> = (2..=7)
        .map(|seq| {
            let line = format!("delta seq {seq} delivered");
            t.find(&line)
                .unwrap_or_else(|| panic!("{line} missing in {t}"))
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in seq order: {t}");
    let id = enrollment(&agent.state)["agent_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(agent_row(&c, &id)["last_seq"], 7);
    let records = c.json(&["changes"]);
    assert_eq!(
        records.as_array().unwrap().len(),
        5,
        "one change record per upgrade round: {records}"
    );
}
