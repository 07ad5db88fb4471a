//! CMDB health on a CMDB seeded with known defects, through the real ingest path: every
//! defect is counted exactly once, under its kind, on one CI, and the scores follow.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use census_collector::model::health::{HealthSettings, RequiredAttributes};
use census_collector::model::*;
use census_collector::ops::register::{self as reg, NewRecord};
use census_collector::ops::{Actor, Ops};
use census_collector::query::health::{self, DefectFilter, DefectKind, Dimension};
use census_collector::store::*;
use chrono::{Duration, Utc};

use crate::drift::{base_software, machine, rig};

fn host(name: &str, serial: Option<&str>, n: u32, macs: &[&str]) -> census_shared::Snapshot {
    let mut s = machine(base_software());
    if let Some(sys) = s.system.data_mut() {
        sys.serial = serial.map(str::to_string);
        sys.machine_id = Some(format!("{n:032x}"));
    }
    if let Some(os) = s.os.data_mut() {
        os.hostname = name.into();
    }
    if let Some(nics) = s.network_interfaces.data_mut() {
        let template = nics[0].clone();
        *nics = macs
            .iter()
            .enumerate()
            .map(|(i, mac)| census_shared::NetworkInterface {
                name: format!("eth{i}"),
                mac: Some(mac.to_string()),
                addresses: Vec::new(),
                ..template.clone()
            })
            .collect();
    }
    s
}

#[test]
fn each_seeded_defect_is_counted_once_and_the_scores_follow() {
    let mut r = rig("health");
    let now = Utc::now();
    let m = |i: u8| format!("52:54:00:00:00:{i:02x}");
    let (m1, m2, m4, m5, m6, m7) = (m(1), m(2), m(4), m(5), m(6), m(7));
    // web01 and web02 report one serial: an identity conflict and a duplicate.
    r.send(host("web01", Some("SER-A"), 1, &[&m1]), now);
    r.switch_to_new_agent("agt_health_2");
    r.send(host("web02", Some("SER-A"), 2, &[&m2]), now);
    // web03 reports no serial: incomplete.
    r.switch_to_new_agent("agt_health_3");
    r.send(host("web03", None, 3, &[&m7]), now);
    // web04 has a second interface with web01's MAC.
    r.switch_to_new_agent("agt_health_4");
    r.send(host("web04", Some("SER-D"), 4, &[&m4, &m1]), now);
    // web05 goes stale.
    r.switch_to_new_agent("agt_health_5");
    r.send(host("web05", Some("SER-E"), 5, &[&m5]), now);
    // web06's agent was last heard three days ago.
    r.switch_to_new_agent("agt_health_6");
    r.send(
        host("web06", Some("SER-F"), 6, &[&m6]),
        now - Duration::days(3),
    );
    let ops = Ops {
        store: r.store.clone() as Arc<dyn Store>,
        ingest: None,
    };
    // A spare recorded before discovery: no host name yet (incomplete, not stale).
    reg::create_record(
        &ops,
        &Actor::new("ann"),
        &NewRecord {
            name: "spare".into(),
            serial: Some("SER-G".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let id_of = |host: &str| {
        r.store
            .list_cis(Some(CiClass::Computer))
            .unwrap()
            .into_iter()
            .find(|c| c.attributes.get("os.hostname") == Some(&host.into()))
            .unwrap()
    };
    let web05 = id_of("web05");
    assert!(r
        .store
        .set_ci_status(&web05.id, web05.version, CiStatus::Stale, now)
        .unwrap());

    let settings = HealthSettings {
        required: vec![
            RequiredAttributes {
                class: CiClass::Computer,
                attributes: vec!["os.hostname".into(), "system.serial".into()],
            },
            RequiredAttributes {
                class: CiClass::NetworkInterface,
                attributes: vec!["mac".into()],
            },
        ],
        ..HealthSettings::default()
    };
    let report = health::report(r.store.as_ref(), &settings, DefectFilter::default(), now).unwrap();
    let computers = report
        .classes
        .iter()
        .find(|c| c.class == CiClass::Computer)
        .unwrap();
    assert_eq!(computers.total, 7);
    let expected: BTreeMap<DefectKind, usize> = [
        (DefectKind::MissingRequired, 2),
        (DefectKind::OpenConflict, 1),
        (DefectKind::DuplicateSerial, 1),
        (DefectKind::DuplicateMac, 1),
        (DefectKind::Stale, 1),
        (DefectKind::SilentAgent, 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(computers.defects, expected, "{:#?}", report.defects);
    // The list is the count, defect by defect, on the CIs seeded with them.
    assert_eq!(report.defects_total, 7);
    let on = |kind: DefectKind| -> BTreeSet<String> {
        report
            .defects
            .iter()
            .filter(|d| d.kind == kind)
            .map(|d| d.ci_name.clone())
            .collect()
    };
    assert_eq!(
        on(DefectKind::MissingRequired),
        ["spare", "web03"].map(String::from).into()
    );
    assert_eq!(on(DefectKind::Stale), ["web05"].map(String::from).into());
    assert_eq!(
        on(DefectKind::SilentAgent),
        ["web06"].map(String::from).into()
    );
    assert_eq!(
        on(DefectKind::OpenConflict),
        ["web01"].map(String::from).into()
    );
    assert!(on(DefectKind::DuplicateSerial).is_subset(&["web01", "web02"].map(String::from).into()));
    assert!(on(DefectKind::DuplicateMac).is_subset(&["web01", "web04"].map(String::from).into()));
    // Scores: the share of computers without a defect of each dimension.
    let failing = |d: Dimension| -> usize {
        report
            .defects
            .iter()
            .filter(|x| x.class == CiClass::Computer && x.kind.dimension() == d)
            .map(|x| x.ci_id.clone())
            .collect::<BTreeSet<_>>()
            .len()
    };
    for dim in &computers.dimensions {
        assert_eq!(dim.failing, failing(dim.dimension), "{dim:?}");
        let expected = ((7 - dim.failing) as f64 * 1000.0 / 7.0).round() / 10.0;
        assert_eq!(dim.score, expected, "{dim:?}");
    }
    let nics = report
        .classes
        .iter()
        .find(|c| c.class == CiClass::NetworkInterface)
        .unwrap();
    assert_eq!((nics.total, nics.score), (7, 100.0));
    assert!(
        report.overall < 100.0 && report.overall > 50.0,
        "{}",
        report.overall
    );

    // Drill-down by kind lists only that kind; by class only that class.
    let only = health::report(
        r.store.as_ref(),
        &settings,
        DefectFilter {
            class: None,
            kind: Some(DefectKind::Stale),
        },
        now,
    )
    .unwrap();
    assert_eq!(only.defects_total, 1);
    assert_eq!(only.defects[0].ci_id, web05.id);
    // Today's point of the trend, recorded and replaced the same day.
    census_collector::ops::health::record_today(&ops).unwrap();
    census_collector::ops::health::record_today(&ops).unwrap();
    let trend = r.store.health_trend().unwrap();
    assert_eq!(trend.len(), 1);
    assert_eq!(trend[0].day, Utc::now().date_naive());
    assert!(trend[0].classes.contains_key(&CiClass::Computer));
}
