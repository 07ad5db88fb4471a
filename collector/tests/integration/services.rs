//! Business services over the real store and ingest path: impact through several levels
//! of dependencies with its path, a cycle refused, a filter picking up a host discovered
//! after the service was made, product versions and subnets, history.

use std::sync::Arc;

use census_collector::model::service::{RunsOn, ServiceKind};
use census_collector::model::*;
use census_collector::ops::services::{self as op, ServiceRequest};
use census_collector::ops::{Actor, OpError, Ops};
use census_collector::query::services;
use census_collector::store::*;
use chrono::Utc;

use crate::drift::{base_software, machine, rig, with};

pub(crate) fn request(
    name: &str,
    criticality: u8,
    depends_on: &[&str],
    runs_on: Vec<RunsOn>,
) -> ServiceRequest {
    ServiceRequest {
        kind: if depends_on.is_empty() {
            ServiceKind::Application
        } else {
            ServiceKind::Business
        },
        name: name.into(),
        owner: "ann".into(),
        criticality,
        support_group: "ops".into(),
        description: String::new(),
        depends_on: depends_on.iter().map(|s| s.to_string()).collect(),
        runs_on,
        expected_version: None,
    }
}

/// People's operations on the rig's store.
fn ops_on(r: &crate::drift::Rig) -> Ops {
    Ops {
        store: r.store.clone() as Arc<dyn Store>,
        ingest: None,
    }
}

#[test]
fn impact_reaches_services_several_levels_up_with_the_path_and_cycles_are_refused() {
    let mut r = rig("services");
    r.send(machine(base_software()), Utc::now());
    let web01 = r.store.list_cis(Some(CiClass::Computer)).unwrap()[0].clone();
    let ops = ops_on(&r);
    let ann = Actor::new("ann");
    // database (runs on web01) <- orders (runs on nothing itself) <- shop (critical).
    let db = op::create(
        &ops,
        &ann,
        request(
            "Orders database",
            2,
            &[],
            vec![RunsOn::Computer {
                id: web01.id.clone(),
            }],
        ),
    )
    .unwrap();
    let orders = op::create(&ops, &ann, request("Orders", 2, &[&db.id], vec![])).unwrap();
    let shop = op::create(&ops, &ann, request("Web shop", 1, &[&orders.id], vec![])).unwrap();
    // A dependency that closes the loop is refused with its path.
    let mut back = request("Orders database", 2, &[&shop.id], vec![]);
    back.expected_version = Some(1);
    let e = op::update(&ops, &ann, &db.id, back).unwrap_err();
    assert!(
        matches!(&e, OpError::Conflict(m) if m.contains("Orders database -> Web shop -> Orders -> Orders database")),
        "{e:?}"
    );
    let e = op::create(&ops, &ann, request("web shop", 3, &[], vec![])).unwrap_err();
    assert!(matches!(e, OpError::Conflict(_)), "names are unique: {e:?}");
    let e = op::create(&ops, &ann, request("X", 3, &["bsv_nope"], vec![])).unwrap_err();
    assert!(matches!(e, OpError::Invalid { .. }), "{e:?}");
    let e = op::create(
        &ops,
        &ann,
        request(
            "Y",
            3,
            &[],
            vec![RunsOn::Filter {
                filter: "colour = red".into(),
            }],
        ),
    )
    .unwrap_err();
    assert!(
        matches!(&e, OpError::Invalid { field: Some(f), .. } if f == "runs_on[0].filter"),
        "{e:?}"
    );

    // From the computer up: three services, the shop through two levels.
    let computers = [(web01.id.clone(), web01.name.clone())]
        .into_iter()
        .collect();
    let hit = services::impact_of(r.store.as_ref(), &computers, Utc::now()).unwrap();
    let names: Vec<&str> = hit.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["Web shop", "Orders database", "Orders"],
        "most critical first, then nearest"
    );
    assert_eq!(hit[0].path, ["Web shop", "Orders", "Orders database"]);
    assert!(hit[0].via.contains("web01"), "{}", hit[0].via);

    // From a product version: curl 7.88 is on web01, curl >= 8 is nowhere.
    let on = services::computers_installing(r.store.as_ref(), "curl", "< 8", Utc::now()).unwrap();
    assert_eq!(on.len(), 1);
    assert_eq!(
        services::impact_of(r.store.as_ref(), &on, Utc::now())
            .unwrap()
            .len(),
        3
    );
    let none =
        services::computers_installing(r.store.as_ref(), "curl", ">= 8", Utc::now()).unwrap();
    assert!(services::impact_of(r.store.as_ref(), &none, Utc::now())
        .unwrap()
        .is_empty());

    // A service defined by a filter picks up a host discovered after it was made.
    let web = op::create(
        &ops,
        &ann,
        request(
            "Web farm",
            3,
            &[],
            vec![RunsOn::Filter {
                filter: "os.hostname = web02".into(),
            }],
        ),
    )
    .unwrap();
    let deps = services::dependencies(r.store.as_ref(), &web, Utc::now()).unwrap();
    assert_eq!(deps.computers_total, 0);
    r.switch_to_new_agent("agt_services_2");
    let mut web02 = machine(with(base_software(), "curl", "8.1-1"));
    if let Some(os) = web02.os.data_mut() {
        os.hostname = "web02".into();
    }
    if let Some(sys) = web02.system.data_mut() {
        sys.serial = Some("SER-W2".into());
        sys.machine_id = Some("2".repeat(32));
    }
    if let Some(nics) = web02.network_interfaces.data_mut() {
        nics[0].mac = Some("52:54:00:aa:bb:02".into());
        nics[0].addresses[0].address = "10.2.0.5".into();
    }
    r.send(web02, Utc::now());
    let deps = services::dependencies(r.store.as_ref(), &web, Utc::now()).unwrap();
    assert_eq!(deps.computers_total, 1);
    assert_eq!(deps.computers[0].name, "web02");
    // And from the subnet it is in.
    let in_subnet = services::computers_of(
        r.store.as_ref(),
        &RunsOn::Subnet {
            cidr: "10.2.0.0/16".into(),
        },
        Utc::now(),
    )
    .unwrap();
    let hit = services::impact_of(r.store.as_ref(), &in_subnet, Utc::now()).unwrap();
    assert_eq!(
        hit.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["Web farm"]
    );

    // Down from the shop: every service below it, and the computer under them.
    let deps = services::dependencies(r.store.as_ref(), &shop, Utc::now()).unwrap();
    assert_eq!(
        deps.services
            .iter()
            .map(|d| (d.name.as_str(), d.depth))
            .collect::<Vec<_>>(),
        [("Orders", 1), ("Orders database", 2)]
    );
    assert_eq!(deps.computers[0].id, web01.id);

    // Deleting a service others depend on is refused; its history stays after a delete.
    let e = op::delete(&ops, &ann, &db.id).unwrap_err();
    assert!(
        matches!(&e, OpError::Conflict(m) if m.contains("Orders")),
        "{e:?}"
    );
    op::delete(&ops, &ann, &web.id).unwrap();
    assert!(matches!(op::find(&ops, &web.id), Err(OpError::NotFound(_))));
    let history = r.store.service_history(&web.id).unwrap();
    assert_eq!(history.len(), 2);
    assert!(history[1].deleted && !history[0].deleted);
    let audit = r.store.list_audit(0, 1000).unwrap();
    assert!(audit
        .iter()
        .any(|e| e.action == "service.delete" && e.target == web.id));
    assert_eq!(r.store.list_services().unwrap().len(), 3);
}

/// Impact remembers what a computer's record matched; a record that changes after it was
/// asked about must be evaluated again, and ages of last-seen are never remembered.
#[test]
fn impact_follows_a_computer_that_moved_subnet_after_it_was_asked_about() {
    let mut r = rig("services_moved");
    let at = |address: &str| {
        let mut m = machine(base_software());
        if let Some(nics) = m.network_interfaces.data_mut() {
            nics[0].addresses[0].address = address.into();
        }
        m
    };
    r.send(at("10.7.0.5"), Utc::now());
    let host = r.store.list_cis(Some(CiClass::Computer)).unwrap()[0].clone();
    let ops = ops_on(&r);
    let ann = Actor::new("ann");
    let on_subnet =
        |name: &str, cidr: &str| request(name, 2, &[], vec![RunsOn::Subnet { cidr: cidr.into() }]);
    op::create(&ops, &ann, on_subnet("Old site", "10.7.0.0/16")).unwrap();
    op::create(&ops, &ann, on_subnet("New site", "10.8.0.0/16")).unwrap();
    let quiet = request(
        "Quiet hosts",
        2,
        &[],
        vec![RunsOn::Filter {
            filter: "last_seen < -1d".into(),
        }],
    );
    op::create(&ops, &ann, quiet).unwrap();
    let on = [(host.id.clone(), host.name.clone())].into_iter().collect();
    let store = r.store.clone();
    let names = |now| -> Vec<String> {
        services::impact_of(store.as_ref(), &on, now)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect()
    };
    assert_eq!(names(Utc::now()), ["Old site"]);
    assert_eq!(names(Utc::now()), ["Old site"], "asked again, remembered");

    r.send(at("10.8.0.5"), Utc::now());
    assert_eq!(
        names(Utc::now()),
        ["New site"],
        "the changed record is read again"
    );
    // Two days on, with nothing written, the host is quiet: that is never remembered.
    assert_eq!(
        names(Utc::now() + chrono::Duration::days(2)),
        ["New site", "Quiet hosts"]
    );
}

/// A severity rule can ask for the criticality of the services a computer supports: the
/// same drift is high on a computer under a critical business service and stays as the
/// other rules rate it elsewhere; the diff between two versions rates it the same way.
#[test]
fn severity_rules_use_the_criticality_of_the_services_a_computer_supports() {
    let mut r = rig("services_severity");
    let t0 = Utc::now() - chrono::Duration::minutes(10);
    let t1 = t0 + chrono::Duration::minutes(5);
    r.send(machine(base_software()), t0);
    let web01 = r.store.list_cis(Some(CiClass::Computer)).unwrap()[0].clone();
    let ops = ops_on(&r);
    let ann = Actor::new("ann");
    let db = op::create(
        &ops,
        &ann,
        request(
            "Payments database",
            3,
            &[],
            vec![RunsOn::Computer {
                id: web01.id.clone(),
            }],
        ),
    )
    .unwrap();
    op::create(&ops, &ann, request("Payments", 1, &[&db.id], vec![])).unwrap();
    let mut rules = census_collector::ops::changes::severity_rules(&ops).unwrap();
    rules.rules.insert(
        0,
        SeverityRule {
            pattern: ItemPattern {
                kind: "software_*".into(),
                subject: "*".into(),
                new: Default::default(),
                ports: None,
            },
            service_criticality: Some(1),
            severity: Severity::High,
        },
    );
    let bad = SeverityRule {
        service_criticality: Some(5),
        ..rules.rules[0].clone()
    };
    let e =
        census_collector::ops::changes::put_severity_rules(&ops, &ann, vec![bad], rules.default)
            .unwrap_err();
    assert!(
        matches!(&e, OpError::Invalid { message, .. } if message.contains("rules[0].service_criticality")),
        "{e:?}"
    );
    census_collector::ops::changes::put_severity_rules(&ops, &ann, rules.rules, rules.default)
        .unwrap();
    r.ingest.invalidate_rules();

    // Upgrading vim is low by the shipped rules; under "Payments" it is high.
    r.send(machine(with(base_software(), "vim", "2:9.0.1378-3")), t1);
    let records = r.store.list_change_records().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].severity, Severity::High);
    let second = chrono::Duration::seconds(1);
    let diff = census_collector::query::views::diff_between(
        r.store.as_ref(),
        &web01.id,
        t0 + second,
        t1 + second,
    )
    .unwrap()
    .unwrap();
    assert!(!diff.is_empty());
    assert!(
        diff.iter().all(|i| i.severity == Severity::High),
        "{diff:?}"
    );

    // Once the payments database no longer runs there, the downgrade back is what the
    // shipped rules say: medium.
    let mut moved = request("Payments database", 3, &[], vec![]);
    moved.expected_version = Some(1);
    op::update(&ops, &ann, &db.id, moved).unwrap();
    r.send(machine(base_software()), t1 + chrono::Duration::minutes(1));
    let records = r.store.list_change_records().unwrap();
    let newest = records.iter().max_by_key(|c| c.to_version).unwrap();
    assert_eq!(newest.severity, Severity::Medium);
}
