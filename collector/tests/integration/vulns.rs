//! Vulnerability matching over the real store and ingest path, on OSV records built from
//! this project's CI machine (tests/fixtures/osv/README.md): a record fixed at or below
//! the installed version never matches, one fixed above does; binary packages match under
//! their source package, binNMUs under their source version; epochs and tildes order as
//! dpkg orders them; withdrawn records and records keyed by a binary name find nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

use census_collector::store::Store;
use census_collector::vulns::{exposure, import};
use census_shared::Software;
use chrono::Utc;

use crate::drift::{machine, rig};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/osv/debian")
}

pub(crate) fn dpkg(name: &str, version: &str, source_package: Option<&str>) -> Software {
    Software {
        name: name.into(),
        version: version.into(),
        arch: Some("amd64".into()),
        source: "dpkg".into(),
        source_package: source_package.map(str::to_string),
        ..Default::default()
    }
}

fn this_machine() -> Vec<Software> {
    vec![
        dpkg("openssl", "3.0.19-1~deb12u2", None),
        dpkg("libssl3", "3.0.19-1~deb12u2", Some("openssl")),
        dpkg("bash", "5.2.15-2+b8", None),
        dpkg("vim", "2:9.0.1378-2", None),
    ]
}

fn page(limit: usize) -> exposure::HostPage {
    exposure::HostPage { limit, after: None }
}

fn findings(report: &exposure::HostReport) -> Vec<(String, String, Option<String>)> {
    report
        .findings
        .iter()
        .map(|f| (f.advisory.clone(), f.package.clone(), f.fixed.clone()))
        .collect()
}

#[test]
fn osv_records_match_by_source_package_in_dpkg_order_and_nothing_else() {
    let mut r = rig("vulns");
    r.send(machine(this_machine()), Utc::now());
    let host = r
        .store
        .list_cis(Some(census_collector::model::CiClass::Computer))
        .unwrap()[0]
        .clone();

    let report = import::import(r.store.as_ref(), &fixtures(), &mut |_| {}).unwrap();
    assert_eq!(report.records, 9, "{report:?}");
    assert_eq!(
        (report.added, report.updated, report.unchanged),
        (6, 0, 0),
        "{report:?}"
    );
    assert_eq!((report.withdrawn, report.removed), (1, 0));
    assert_eq!(report.skipped_total, 2, "{report:?}");
    let reasons: Vec<&str> = report.skipped.iter().map(|s| s.reason.as_str()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("affected[0].ranges[0].events[0]: an event has exactly one")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("not an OSV record")),
        "{reasons:?}"
    );
    assert_eq!(report.ecosystems.get("Debian:12"), Some(&7));

    let host_report = exposure::for_computer(r.store.as_ref(), &host.id)
        .unwrap()
        .unwrap();
    assert_eq!(host_report.ecosystem.as_deref(), Some("Debian:12"));
    assert_eq!(host_report.packages, 4);
    let fixed = Some("3.0.20-1~deb12u1".to_string());
    assert_eq!(
        findings(&host_report),
        [
            ("DSA-9901-1".into(), "libssl3".into(), fixed.clone()),
            ("DSA-9901-1".into(), "openssl".into(), fixed),
            ("DSA-9902-1".into(), "bash".into(), Some("5.2.15-2+deb12u1".into())),
        ],
        "critical first; nothing fixed at or below the installed version, nothing withdrawn, nothing keyed by a binary name"
    );
    assert_eq!(host_report.findings[0].matched_as, "openssl");
    assert_eq!(host_report.findings[0].score, Some(9.8));
    assert_eq!(host_report.findings[0].aliases, ["CVE-2026-99001"]);

    // The fleet and the advisory's own report agree with the host's.
    let fleet = exposure::fleet_report(r.store.as_ref()).unwrap();
    assert_eq!(
        (
            fleet.advisories_held,
            fleet.computers_exposed,
            fleet.exposures
        ),
        (6, 1, 2)
    );
    assert_eq!(fleet.advisories[0].id, "DSA-9901-1");
    assert_eq!(fleet.advisories[0].packages, ["libssl3", "openssl"]);
    assert_eq!(
        fleet.advisories[0].hosts, 1,
        "one host, however many of its packages"
    );
    let one = exposure::for_advisory(r.store.as_ref(), "DSA-9901-1", &page(100), Utc::now())
        .unwrap()
        .unwrap();
    assert_eq!(one.hosts_total, 1);
    assert_eq!(one.hosts[0].id, host.id);
    let none = exposure::for_advisory(
        r.store.as_ref(),
        "DEBIAN-CVE-2026-28387",
        &page(100),
        Utc::now(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(none.hosts_total, 0);

    // The same feed again changes nothing; a newer record that moves the fix below the
    // installed version removes the finding (its package index is rewritten).
    let again = import::import(r.store.as_ref(), &fixtures(), &mut |_| {}).unwrap();
    assert_eq!((again.added, again.updated, again.unchanged), (0, 0, 6));
    let dir = std::env::temp_dir().join(format!("census-osv-newer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let newer = std::fs::read_to_string(fixtures().join("DSA-9901-1.json"))
        .unwrap()
        .replace("2026-11-20T08:00:00Z", "2026-11-25T08:00:00Z")
        .replace("3.0.20-1~deb12u1", "3.0.19-1~deb12u1");
    std::fs::write(dir.join("DSA-9901-1.json"), newer).unwrap();
    let older = std::fs::read_to_string(fixtures().join("DSA-9902-1.json"))
        .unwrap()
        .replace("2026-11-20T08:00:00Z", "2026-01-01T08:00:00Z")
        .replace("5.2.15-2+deb12u1", "1.0");
    std::fs::write(dir.join("DSA-9902-1.json"), older).unwrap();
    let moved = import::import(r.store.as_ref(), &dir, &mut |_| {}).unwrap();
    assert_eq!(
        (moved.updated, moved.unchanged),
        (1, 1),
        "the older copy of 9902 loses"
    );
    let host_report = exposure::for_computer(r.store.as_ref(), &host.id)
        .unwrap()
        .unwrap();
    assert_eq!(
        findings(&host_report),
        [(
            "DSA-9902-1".into(),
            "bash".into(),
            Some("5.2.15-2+deb12u1".into())
        )]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// OSV's `all.zip`: the same records read from an archive, and hostile members refused
/// one by one with their reason while the rest import.
#[test]
fn an_osv_archive_imports_and_its_hostile_members_are_refused_by_name() {
    let r = rig("vulns_zip");
    let dir = std::env::temp_dir().join(format!("census-osv-zip-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("all.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for name in ["DSA-9901-1.json", "DSA-9902-1.json"] {
        zip.start_file(name, deflated).unwrap();
        zip.write_all(&std::fs::read(fixtures().join(name)).unwrap())
            .unwrap();
    }
    zip.start_file("../../etc/DSA-9999-1.json", deflated)
        .unwrap();
    zip.write_all(b"{}").unwrap();
    // 9 MiB of white space: a few kilobytes deflated, past the record limit inflated.
    zip.start_file("DSA-9998-1.json", deflated.large_file(false))
        .unwrap();
    let chunk = vec![b' '; 1024 * 1024];
    for _ in 0..9 {
        zip.write_all(&chunk).unwrap();
    }
    zip.start_file("README.txt", deflated).unwrap();
    zip.write_all(b"not a record").unwrap();
    zip.finish().unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() < 100_000);

    let report = import::import(r.store.as_ref(), &path, &mut |_| {}).unwrap();
    assert_eq!(report.added, 2, "{report:?}");
    assert_eq!(report.skipped_total, 2, "{report:?}");
    assert!(report
        .skipped
        .iter()
        .any(|s| s.name.contains("../../etc") && s.reason.contains("unsafe member name")));
    assert!(report
        .skipped
        .iter()
        .any(|s| s.name == "DSA-9998-1.json" && s.reason.contains("more than 8388608")));

    let junk = dir.join("junk.zip");
    std::fs::write(&junk, b"PK\x03\x04 not really").unwrap();
    let e = import::import(r.store.as_ref(), &junk, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("not a readable zip archive"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A second machine of the same store (its own serial, machine id, MAC and name).
pub(crate) fn other_machine(software: Vec<Software>) -> census_shared::Snapshot {
    let mut s = machine(software);
    s.system = census_shared::Section::collected(census_shared::System {
        vendor: Some("Dell Inc.".into()),
        serial: Some("SER999".into()),
        machine_id: Some("fedcba9876543210fedcba9876543210".into()),
        ..Default::default()
    });
    s.network_interfaces = census_shared::Section::collected(vec![]);
    if let Some(os) = s.os.data.as_mut() {
        os.hostname = "db02".into();
    }
    s
}

/// The feed's vulnerability events (drift raises change records beside them).
fn feed_of(store: &dyn Store) -> Vec<census_collector::model::FeedEvent> {
    store.sequence_events(1000).unwrap();
    let mut feed = store.feed_since(0, 1000).unwrap();
    feed.retain(|e| e.event_type.starts_with("vulnerability."));
    feed
}

fn pairs(e: &census_collector::model::FeedEvent) -> Vec<(String, String, String)> {
    e.exposure
        .as_ref()
        .unwrap()
        .pairs
        .iter()
        .map(|p| {
            (
                p.computer_name.clone(),
                p.advisory.clone(),
                p.package.clone(),
            )
        })
        .collect()
}

/// The tracker's whole cycle: nothing before a feed, a silent baseline at the first
/// import, then an event for each host whose drift fixed or opened something, for each
/// import that reached hosts, for a new host arriving exposed; and first-detected and
/// fixed-on dates on the host's report.
#[test]
fn exposures_are_tracked_with_events_for_newly_exposed_and_newly_fixed_hosts() {
    exposure_cycle(rig("exposures"));
}

pub(crate) fn exposure_cycle(mut r: crate::drift::Rig) {
    use census_collector::model::vuln::{Closure, VULNERABILITY_EXPOSED, VULNERABILITY_FIXED};
    use census_collector::vulns::tracker;

    let installed = chrono::DateTime::parse_from_rfc3339("2026-06-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut software = this_machine();
    software[1].install_date = Some(installed);
    r.send(machine(software.clone()), Utc::now());
    let web = r
        .store
        .list_cis(Some(census_collector::model::CiClass::Computer))
        .unwrap()[0]
        .clone();

    let before = tracker::step(r.store.as_ref(), Utc::now()).unwrap();
    assert_eq!((before.rematched, before.events), (1, 0), "{before:?}");
    assert!(feed_of(r.store.as_ref()).is_empty());

    // The first import is a baseline: every host matched, dates kept, no event.
    import::import(r.store.as_ref(), &fixtures(), &mut |_| {}).unwrap();
    let baseline_at = Utc::now();
    let baseline = tracker::step(r.store.as_ref(), baseline_at).unwrap();
    assert_eq!(
        (baseline.passed, baseline.opened, baseline.events),
        (1, 3, 0),
        "{baseline:?}"
    );
    assert!(feed_of(r.store.as_ref()).is_empty());
    let report = exposure::for_computer(r.store.as_ref(), &web.id)
        .unwrap()
        .unwrap();
    let libssl = report
        .findings
        .iter()
        .find(|f| f.package == "libssl3")
        .unwrap();
    assert_eq!(
        libssl.since,
        Some(installed),
        "exposed since it was installed"
    );
    assert_eq!(
        libssl.detected.map(|d| d.timestamp()),
        Some(baseline_at.timestamp())
    );
    assert!(report.fixed.is_empty());
    let again = tracker::step(r.store.as_ref(), Utc::now()).unwrap();
    assert_eq!((again.passed, again.rematched, again.events), (0, 0, 0));

    // Drift: bash upgraded to its fixed version closes DSA-9902-1 on this host.
    software[2].version = "5.2.15-2+deb12u1".into();
    let fixed_at = Utc::now();
    r.send(machine(software.clone()), fixed_at);
    let drift = tracker::step(r.store.as_ref(), fixed_at).unwrap();
    assert_eq!(
        (drift.rematched, drift.closed, drift.events),
        (1, 1, 1),
        "{drift:?}"
    );
    let feed = feed_of(r.store.as_ref());
    assert_eq!(feed.len(), 1);
    assert_eq!(feed[0].event_type, VULNERABILITY_FIXED);
    let change = feed[0].exposure.as_ref().unwrap();
    assert_eq!(change.cause, "drift");
    assert_eq!(change.computer_id.as_deref(), Some(web.id.as_str()));
    assert_eq!(
        pairs(&feed[0]),
        [("web01".into(), "DSA-9902-1".into(), "bash".into())]
    );
    assert_eq!(change.pairs[0].version.as_deref(), Some("5.2.15-2+deb12u1"));
    let report = exposure::for_computer(r.store.as_ref(), &web.id)
        .unwrap()
        .unwrap();
    assert_eq!(report.findings.len(), 2);
    assert_eq!(report.fixed.len(), 1);
    assert_eq!(report.fixed[0].advisory, "DSA-9902-1");
    assert_eq!(report.fixed[0].how, Closure::Upgraded);
    assert_eq!(report.fixed[0].version.as_deref(), Some("5.2.15-2+deb12u1"));
    assert_eq!(report.fixed[0].closed.timestamp(), fixed_at.timestamp());

    // An import that opens an advisory on the host: one event for the advisory.
    let dir = std::env::temp_dir().join(format!("census-osv-vim-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let vim = std::fs::read_to_string(fixtures().join("DSA-9902-1.json"))
        .unwrap()
        .replace("DSA-9902-1", "DSA-9910-1")
        .replace("\"bash\"", "\"vim\"")
        .replace("5.2.15-2+deb12u1", "2:9.0.1378-2+deb12u9");
    std::fs::write(dir.join("DSA-9910-1.json"), vim).unwrap();
    import::import(r.store.as_ref(), &dir, &mut |_| {}).unwrap();
    let imported = tracker::step(r.store.as_ref(), Utc::now()).unwrap();
    assert_eq!(
        (imported.passed, imported.opened, imported.events),
        (1, 1, 1),
        "{imported:?}"
    );
    let feed = feed_of(r.store.as_ref());
    assert_eq!(feed.len(), 2);
    assert_eq!(feed[1].event_type, VULNERABILITY_EXPOSED);
    let change = feed[1].exposure.as_ref().unwrap();
    assert_eq!(
        (change.cause.as_str(), change.advisory.as_deref()),
        ("import", Some("DSA-9910-1"))
    );
    assert_eq!(
        pairs(&feed[1]),
        [("web01".into(), "DSA-9910-1".into(), "vim".into())]
    );
    assert_eq!(
        change.pairs[0].fixed.as_deref(),
        Some("2:9.0.1378-2+deb12u9")
    );
    let one = exposure::for_advisory(r.store.as_ref(), "DSA-9910-1", &page(100), Utc::now())
        .unwrap()
        .unwrap();
    assert!(one.hosts[0].detected.is_some());

    // A new host arriving exposed is newly exposed.
    r.switch_to_new_agent("agt_db02");
    r.send(other_machine(this_machine()), Utc::now());
    let arrived = tracker::step(r.store.as_ref(), Utc::now()).unwrap();
    assert_eq!(
        (arrived.rematched, arrived.opened, arrived.events),
        (1, 4, 1),
        "{arrived:?}"
    );
    let feed = feed_of(r.store.as_ref());
    assert_eq!(feed.len(), 3);
    assert_eq!(feed[2].event_type, VULNERABILITY_EXPOSED);
    assert_eq!(feed[2].exposure.as_ref().unwrap().cause, "drift");
    // An advisory's hosts page by name, each once, all counted on every page.
    let first = exposure::for_advisory(r.store.as_ref(), "DSA-9910-1", &page(1), Utc::now())
        .unwrap()
        .unwrap();
    assert_eq!((first.hosts_total, first.hosts.len()), (2, 1));
    let after = first.next_after.clone().expect("a second page");
    assert_eq!(after, first.hosts[0].id);
    let second = exposure::for_advisory(
        r.store.as_ref(),
        "DSA-9910-1",
        &exposure::HostPage {
            limit: 1,
            after: Some(after),
        },
        Utc::now(),
    )
    .unwrap()
    .unwrap();
    assert_eq!((second.hosts_total, second.hosts.len()), (2, 1));
    assert_ne!(second.hosts[0].id, first.hosts[0].id);
    assert_eq!(second.next_after, None);
    assert!(first.hosts[0].name <= second.hosts[0].name);
    assert_eq!(feed[2].exposure.as_ref().unwrap().total, 4);
    assert!(pairs(&feed[2]).iter().all(|(host, _, _)| host == "db02"));

    // Withdrawing an advisory closes it everywhere, in one event for the advisory.
    let withdrawn = std::fs::read_to_string(dir.join("DSA-9910-1.json"))
        .unwrap()
        .replace(
            "\"modified\": \"2026-11-20T08:00:00Z\"",
            "\"modified\": \"2026-11-29T08:00:00Z\", \"withdrawn\": \"2026-11-29T08:00:00Z\"",
        );
    std::fs::write(dir.join("DSA-9910-1.json"), withdrawn).unwrap();
    let w = import::import(r.store.as_ref(), &dir, &mut |_| {}).unwrap();
    assert_eq!(w.removed, 1, "{w:?}");
    let closed = tracker::step(r.store.as_ref(), Utc::now()).unwrap();
    assert_eq!((closed.passed, closed.closed, closed.events), (2, 2, 1));
    let feed = feed_of(r.store.as_ref());
    assert_eq!(feed[3].event_type, VULNERABILITY_FIXED);
    assert_eq!(
        pairs(&feed[3]),
        [
            ("db02".into(), "DSA-9910-1".into(), "vim".into()),
            ("web01".into(), "DSA-9910-1".into(), "vim".into())
        ]
    );
    let report = exposure::for_computer(r.store.as_ref(), &web.id)
        .unwrap()
        .unwrap();
    assert_eq!(report.fixed[0].how, Closure::AdvisoryChanged);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Regression: packages with their own epoch or numbering (`dmsetup 2:1.02.185-2` from
/// `lvm2 2.03.16-2`, `bsdutils 1:2.38.1-5+deb12u3` from util-linux) were matched at the
/// binary's version, which is above every fixed version of the source: never exposed.
#[test]
fn binaries_with_their_own_epoch_match_at_the_source_version_dpkg_gives() {
    let mut r = rig("vulns-source-version");
    r.send(
        machine(vec![
            dpkg("dmsetup", "2:1.02.185-2", Some("lvm2 (2.03.16-2)")),
            dpkg(
                "bsdutils",
                "1:2.38.1-5+deb12u3",
                Some("util-linux (2.38.1-5+deb12u3)"),
            ),
        ]),
        Utc::now(),
    );
    let dir = std::env::temp_dir().join(format!("census-osv-srcver-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let record = |id: &str, package: &str, fixed: &str| {
        serde_json::json!({
            "id": id,
            "modified": "2026-11-01T00:00:00Z",
            "affected": [{
                "package": {"name": package, "ecosystem": "Debian:12"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]
            }]
        })
    };
    for (id, package, fixed) in [
        ("DEBIAN-CVE-2099-0001", "lvm2", "2.03.16-3"),
        ("DEBIAN-CVE-2099-0002", "util-linux", "2.38.1-5+deb12u3"),
        ("DEBIAN-CVE-2099-0003", "util-linux", "2.38.1-5+deb12u4"),
    ] {
        std::fs::write(
            dir.join(format!("{id}.json")),
            record(id, package, fixed).to_string(),
        )
        .unwrap();
    }
    import::import(r.store.as_ref(), &dir, &mut |_| {}).unwrap();
    let host = r
        .store
        .list_cis(Some(census_collector::model::CiClass::Computer))
        .unwrap()[0]
        .clone();
    let report = exposure::for_computer(r.store.as_ref(), &host.id)
        .unwrap()
        .unwrap();
    assert_eq!(
        findings(&report),
        [
            (
                "DEBIAN-CVE-2099-0001".into(),
                "dmsetup".into(),
                Some("2.03.16-3".into())
            ),
            (
                "DEBIAN-CVE-2099-0003".into(),
                "bsdutils".into(),
                Some("2.38.1-5+deb12u4".into())
            ),
        ]
    );
    assert_eq!(report.findings[0].matched_as, "lvm2");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A business service's vulnerabilities are those of the computers it and every service it
/// depends on run on: the shop runs nowhere itself, its database runs on db02 and the web
/// tier on web01; both hold bash 5.2.15-2+b8 (DSA-9902-1), only web01 openssl 3.0.19.
#[test]
fn a_service_reports_the_advisories_on_the_computers_below_it() {
    use census_collector::model::service::RunsOn;
    use census_collector::ops::services as service_ops;
    use census_collector::ops::{Actor, Ops};
    use std::sync::Arc;
    let mut r = rig("vulns-service");
    r.send(machine(this_machine()), Utc::now());
    r.switch_to_new_agent("agt_db02");
    r.send(
        other_machine(vec![dpkg("bash", "5.2.15-2+b8", None)]),
        Utc::now(),
    );
    import::import(r.store.as_ref(), &fixtures(), &mut |_| {}).unwrap();
    let computers = r
        .store
        .list_cis(Some(census_collector::model::CiClass::Computer))
        .unwrap();
    let id_of = |name: &str| {
        computers
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.id.clone())
            .unwrap()
    };
    let ops = Ops {
        store: r.store.clone() as Arc<dyn Store>,
        ingest: None,
    };
    let ann = Actor::new("ann");
    let on = |name: &str| vec![RunsOn::Computer { id: id_of(name) }];
    let web = service_ops::create(
        &ops,
        &ann,
        crate::services::request("Web tier", 2, &[], on("web01")),
    )
    .unwrap();
    let db = service_ops::create(
        &ops,
        &ann,
        crate::services::request("Shop database", 2, &[], on("db02")),
    )
    .unwrap();
    let shop = service_ops::create(
        &ops,
        &ann,
        crate::services::request("Shop", 1, &[&web.id, &db.id], vec![]),
    )
    .unwrap();
    let deps = census_collector::query::services::dependencies(r.store.as_ref(), &shop, Utc::now())
        .unwrap();
    let report = exposure::for_service(r.store.as_ref(), &shop, &deps).unwrap();
    assert_eq!(
        (
            report.computers_total,
            report.computers_matched,
            report.computers_exposed
        ),
        (2, 2, 2)
    );
    let host = exposure::for_computer(r.store.as_ref(), &id_of("web01"))
        .unwrap()
        .unwrap();
    let on_web: std::collections::BTreeSet<&str> =
        host.findings.iter().map(|f| f.advisory.as_str()).collect();
    assert_eq!(report.advisories_total, on_web.len(), "{report:#?}");
    let both: Vec<&exposure::ServiceAdvisory> =
        report.advisories.iter().filter(|a| a.hosts == 2).collect();
    assert_eq!(both.len(), 1, "bash's advisory holds on both: {report:#?}");
    for a in &both {
        assert_eq!(
            (a.id.as_str(), a.packages.clone()),
            ("DSA-9902-1", vec!["bash".to_string()])
        );
        let names: Vec<&str> = a.named_hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["db02", "web01"]);
    }
    // The database alone: only what holds on db02.
    let deps =
        census_collector::query::services::dependencies(r.store.as_ref(), &db, Utc::now()).unwrap();
    let report = exposure::for_service(r.store.as_ref(), &db, &deps).unwrap();
    assert_eq!(report.computers_exposed, 1);
    assert!(report.advisories.iter().all(|a| a.packages == ["bash"]));
    assert_eq!(report.advisories.len(), both.len());
}
