//! Baselines over a seeded CMDB: known pass/fail/unknown counts per host and per rule, the
//! filter selecting the hosts, a change that leaves compliance marked on its record, and
//! the daily trend.

use std::sync::Arc;

use census_collector::model::baseline::{BaselineRule, Verdict};
use census_collector::ops::baselines::{self, BaselineRequest};
use census_collector::ops::{Actor, Ops};
use census_collector::store::Store;
use census_shared::{ListeningPort, Section, Snapshot, Software};
use chrono::{Duration, Utc};

use crate::drift::{base_software, rig};
use crate::map::host;

fn package(name: &str, version: &str) -> Software {
    Software {
        name: name.into(),
        version: version.into(),
        arch: Some("amd64".into()),
        source: "dpkg".into(),
        ..Default::default()
    }
}

fn patched() -> Vec<Software> {
    base_software()
        .into_iter()
        .map(|mut p| {
            if p.name == "openssl" {
                p.version = "3.0.13-1~deb12u1".into();
            }
            p
        })
        .collect()
}

fn web(n: u8, software: Vec<Software>) -> Snapshot {
    let mut s = host(n, &format!("web0{n}"), &format!("10.1.0.{n}"));
    s.software = Section::collected(software);
    s
}

fn request() -> BaselineRequest {
    BaselineRequest {
        name: "web servers".into(),
        description: "CIS-ish minimum for the web tier".into(),
        applies_to: "ip in 10.1.0.0/16".into(),
        rules: vec![
            BaselineRule::PackageInstalled {
                package: "openssl".into(),
                versions: ">= 3.0.13".into(),
            },
            BaselineRule::PackageAbsent {
                package: "telnetd".into(),
            },
            BaselineRule::ListeningOnlyOn {
                ports: [22, 443].into_iter().collect(),
            },
            BaselineRule::ServiceEnabled {
                service: "ssh.service".into(),
            },
        ],
        expected_version: None,
    }
}

#[test]
fn a_seeded_fleet_has_the_known_compliance_and_a_change_out_of_it_is_marked() {
    let mut r = rig("baselines");
    let t0 = Utc::now() - Duration::hours(1);
    // web01: old openssl (fails rule 0); web02: compliant; web03: telnetd (rule 1);
    // web04: also listens on 23 (rule 2); web05: services not collected (rule 3 unknown);
    // db01 is outside 10.1.0.0/16.
    r.switch_to_new_agent("agt_w1");
    r.send(web(1, base_software()), t0);
    r.switch_to_new_agent("agt_w2");
    r.send(web(2, patched()), t0);
    r.switch_to_new_agent("agt_w3");
    let mut with_telnetd = patched();
    with_telnetd.push(package("telnetd", "0.17+2.4-2"));
    r.send(web(3, with_telnetd), t0);
    r.switch_to_new_agent("agt_w4");
    let mut telnet_port = web(4, patched());
    if let Some(ports) = telnet_port.listening_ports.data_mut() {
        ports.push(ListeningPort {
            protocol: "tcp".into(),
            address: "0.0.0.0".into(),
            port: 23,
            process: Some("inetd".into()),
            ..Default::default()
        });
    }
    r.send(telnet_port, t0);
    r.switch_to_new_agent("agt_w5");
    let mut no_services = web(5, patched());
    no_services.services = Section::failed("systemctl timed out");
    r.send(no_services, t0);
    r.switch_to_new_agent("agt_db");
    r.send(host(9, "db01", "10.2.0.9"), t0);

    let ops = Ops {
        store: r.store.clone() as Arc<dyn Store>,
        ingest: None,
    };
    let cm = Actor::new("carol");
    let b = baselines::create(&ops, &cm, request()).unwrap();
    let report = baselines::report(&ops, &b.id, None, None, Utc::now()).unwrap();
    assert_eq!(
        (report.hosts_total, report.pass, report.fail, report.unknown),
        (5, 1, 3, 1)
    );
    let per_rule: Vec<(usize, usize, usize)> = report
        .rules
        .iter()
        .map(|r| (r.pass, r.fail, r.unknown))
        .collect();
    assert_eq!(per_rule, [(4, 1, 0), (4, 1, 0), (4, 1, 0), (4, 0, 1)]);
    let verdicts: Vec<(&str, Verdict)> = report
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), h.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("web01", Verdict::Fail),
            ("web03", Verdict::Fail),
            ("web04", Verdict::Fail),
            ("web05", Verdict::Unknown),
            ("web02", Verdict::Pass),
        ],
        "failing first, then unknown, then passing"
    );
    let web01 = &report.hosts[0];
    assert_eq!(web01.findings[0].verdict, Verdict::Fail);
    assert_eq!(
        web01.findings[0].evidence,
        "openssl 3.0.11-1~deb12u2 (wanted >= 3.0.13)"
    );
    assert_eq!(report.hosts[2].findings[2].evidence, "also listens on 23");
    assert_eq!(
        report.hosts[3].findings[3].evidence,
        "services not collected"
    );
    let failing = baselines::report(&ops, &b.id, Some(Verdict::Fail), Some(2), Utc::now()).unwrap();
    assert_eq!(
        (failing.hosts.len(), failing.fail),
        (2, 3),
        "listing bounded, counts whole"
    );

    // web02 installs telnetd: its change record says it left the baseline.
    r.switch_to_new_agent("agt_w2b");
    let mut drifted = patched();
    drifted.push(package("telnetd", "0.17+2.4-2"));
    // The same machine re-enrolled: identified by its serial, a new agent takes it over.
    let record = r
        .send(web(2, drifted), t0 + Duration::minutes(10))
        .expect("installing telnetd is drift");
    assert_eq!(record.compliance.len(), 1, "{:?}", record.compliance);
    let broke = &record.compliance[0];
    assert_eq!(
        (broke.baseline_name.as_str(), broke.rule.as_str()),
        ("web servers", "no telnetd")
    );
    assert_eq!(broke.evidence, "telnetd 0.17+2.4-2 is installed");
    // A change that breaks nothing is not marked: web01 upgrades vim.
    r.switch_to_new_agent("agt_w1b");
    let mut vim = base_software();
    for p in vim.iter_mut().filter(|p| p.name == "vim") {
        p.version = "2:9.0.1378-2+deb12u1".into();
    }
    let record = r
        .send(web(1, vim), t0 + Duration::minutes(11))
        .expect("an upgrade is drift");
    assert!(record.compliance.is_empty(), "{:?}", record.compliance);

    // The trend: today's point, replaced (not added) when recorded again.
    baselines::record_today(&ops, Utc::now()).unwrap();
    baselines::record_today(&ops, Utc::now()).unwrap();
    let trend = baselines::trend(&ops, &b.id).unwrap();
    assert_eq!(trend.len(), 1);
    assert_eq!(
        (
            trend[0].hosts,
            trend[0].pass,
            trend[0].fail,
            trend[0].unknown
        ),
        (5, 0, 4, 1)
    );
}

#[test]
fn baselines_are_checked_as_written() {
    let r = rig("baselines-invalid");
    let ops = Ops {
        store: r.store.clone() as Arc<dyn Store>,
        ingest: None,
    };
    let cm = Actor::new("carol");
    let mut bad = request();
    bad.applies_to = "ip in not-a-net".into();
    let e = baselines::create(&ops, &cm, bad).unwrap_err().to_string();
    assert!(e.contains("applies_to"), "{e}");
    let mut bad = request();
    bad.rules = vec![BaselineRule::PackageInstalled {
        package: "openssl".into(),
        versions: ">= ".into(),
    }];
    let e = baselines::create(&ops, &cm, bad).unwrap_err().to_string();
    assert!(e.contains("rules[0]"), "{e}");
    let mut bad = request();
    bad.rules.clear();
    assert!(baselines::create(&ops, &cm, bad).is_err());
    let b = baselines::create(&ops, &cm, request()).unwrap();
    let e = baselines::create(&ops, &cm, request())
        .unwrap_err()
        .to_string();
    assert!(e.contains("already the name"), "{e}");
    // A stale edit is refused.
    let mut stale = request();
    stale.expected_version = Some(b.version + 5);
    assert!(baselines::update(&ops, &cm, &b.id, stale).is_err());
    baselines::delete(&ops, &cm, &b.id).unwrap();
    assert!(ops.store.list_baselines().unwrap().is_empty());
}
