//! The asset register over the real store and ingest path: an edit is a history version,
//! an audit entry and a `register.changed` feed event; inventories keep it and never
//! raise it as drift; precedence and concurrency refuse what must not be overwritten.

use std::collections::BTreeMap;
use std::sync::Arc;

use census_collector::model::register;
use census_collector::model::register::{FieldPrecedence, RegisterSettings, Source, SourceRank};
use census_collector::model::*;
use census_collector::ops::licences::{self as licences_op, LicenceRequest};
use census_collector::ops::register::{self as reg, NewRecord, RegisterEdit};
use census_collector::ops::register_csv::{self, ImportMode, ProblemKind};
use census_collector::ops::{Actor, OpError, Ops};
use census_collector::query::licences;
use census_collector::query::views;
use census_collector::store::*;
use chrono::{Duration, Utc};
use serde_json::{json, Value};

use crate::drift::{base_software, machine, rig, with};

fn ops(r: &crate::drift::Rig) -> Ops {
    Ops {
        store: r.store.clone() as Arc<dyn Store>,
        ingest: None,
    }
}

fn edit(pairs: &[(&str, Value)]) -> RegisterEdit {
    RegisterEdit {
        set: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), (!v.is_null()).then(|| v.clone())))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    }
}

/// A person ("ann") sets register fields of `id`; the edit must be accepted.
fn ann_sets(ops: &Ops, id: &str, pairs: &[(&str, Value)]) -> reg::RegisterView {
    reg::edit(ops, &Actor::new("ann"), id, &edit(pairs), Source::Person).unwrap()
}

/// Whether a CI's register holds anything beyond what discovery writes into it (serial,
/// manufacturer, model and their provenance).
fn people_set_nothing(ci: &Ci) -> bool {
    let discovered: Vec<String> = register::DISCOVERED
        .iter()
        .map(|(f, _)| register::attribute(f))
        .collect();
    ci.attributes.keys().all(|k| {
        !k.starts_with("register.") || discovered.contains(k) || k == register::PROVENANCE_ATTRIBUTE
    }) && register::provenance(&ci.attributes)
        .values()
        .all(|p| p.source == Source::Agent)
}

fn value<'a>(view: &'a reg::RegisterView, field: &str) -> Option<&'a Value> {
    view.fields
        .iter()
        .find(|f| f.field == field)
        .and_then(|f| f.value.as_ref())
}

#[test]
fn a_register_edit_is_a_history_version_an_audit_entry_and_a_feed_event_never_drift() {
    let mut r = rig("register-edit");
    let t0 = Utc::now() - Duration::minutes(10);
    r.send(machine(base_software()), t0);
    let id = r.store.list_cis(Some(CiClass::Computer)).unwrap()[0]
        .id
        .clone();
    let before_edit = r.store.get_ci(&id).unwrap().unwrap();
    let ops = ops(&r);
    let ann = Actor::new("ann");
    let view = reg::edit(
        &ops,
        &ann,
        &id,
        &edit(&[
            ("owner", json!("ann")),
            ("asset_tag", json!("A-1001")),
            ("purchase_cost", json!("1299.50")),
            ("location_site", json!("Paris")),
        ]),
        Source::Person,
    )
    .unwrap();
    let edited_at = Utc::now();
    assert_eq!(view.version, before_edit.version + 1);
    assert_eq!(value(&view, "purchase_cost"), Some(&json!(1299.5)));
    let holder = view
        .fields
        .iter()
        .find(|f| f.field == "owner")
        .and_then(|f| f.set_by.clone())
        .unwrap();
    assert_eq!((holder.source, holder.by.as_str()), (Source::Person, "ann"));

    // History and as-of: the version before the edit has no register; the one after has.
    let history = r.store.history(&id).unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.version, view.version);
    assert_eq!(last.ci.attributes["register.owner"], "ann");
    assert_eq!(last.change_record, None);
    let then = r
        .store
        .as_of(&id, edited_at - Duration::seconds(5))
        .unwrap();
    assert!(people_set_nothing(&then.unwrap().ci));

    // The audit log and the feed say who changed what.
    let audit = r.store.list_audit(0, 1000).unwrap();
    let entry = audit.iter().rfind(|e| e.action == "register.edit").unwrap();
    assert_eq!(
        (entry.actor.as_str(), entry.target.as_str()),
        ("ann", id.as_str())
    );
    assert_eq!(entry.after.as_ref().unwrap()["owner"], "ann");
    r.store.sequence_events(100).unwrap();
    let feed = r.store.feed_since(0, 100).unwrap();
    let event = feed
        .iter()
        .find(|e| e.event_type == REGISTER_CHANGED)
        .unwrap();
    assert!(event.record.is_none());
    let change = event.register.as_ref().unwrap();
    assert_eq!(
        (change.ci_id.as_str(), change.version),
        (id.as_str(), view.version)
    );
    assert_eq!(change.changes.len(), 4);

    // An inventory with an upgrade keeps the register and raises only the upgrade.
    let record = r
        .send(machine(with(base_software(), "vim", "2:9.1-1")), Utc::now())
        .expect("the upgrade is drift");
    assert!(
        record.items.iter().all(|i| !i.subject.contains("register")),
        "{record:?}"
    );
    let now = r.store.get_ci(&id).unwrap().unwrap();
    assert_eq!(now.attributes["register.asset_tag"], "A-1001");
    assert_eq!(now.version, view.version + 1);
    // Drift between before the edit and now is the upgrade alone.
    let items = views::diff_between(
        r.store.as_ref(),
        &id,
        before_edit.last_seen + Duration::seconds(1),
        Utc::now(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(items.len(), 1, "{items:?}");

    // Setting what is there already writes nothing; clearing is a version of its own.
    let same = ann_sets(&ops, &id, &[("owner", json!("ann"))]);
    assert_eq!(same.version, now.version);
    let cleared = ann_sets(&ops, &id, &[("owner", Value::Null)]);
    assert_eq!(value(&cleared, "owner"), None);
    assert_eq!(cleared.version, now.version + 1);
    assert!(cleared
        .fields
        .iter()
        .find(|f| f.field == "owner")
        .unwrap()
        .set_by
        .is_some());
}

#[test]
fn an_inventory_landing_during_an_edit_is_kept_and_a_register_edit_meanwhile_refuses_it() {
    let mut r = rig("register-race");
    r.send(machine(base_software()), Utc::now() - Duration::minutes(5));
    let id = r.store.list_cis(Some(CiClass::Computer)).unwrap()[0]
        .id
        .clone();
    let read = r.store.get_ci(&id).unwrap().unwrap();
    let write = |owner: &str, expected: &Ci| {
        let mut register = register_of(&expected.attributes);
        register.insert("register.owner".into(), json!(owner));
        PeopleWrite::Register {
            records: Vec::new(),
            edits: vec![RegisterWrite {
                ci_id: id.clone(),
                expected: register_digest(&expected.attributes),
                register,
                change: census_collector::model::register::RegisterChange {
                    ci_id: id.clone(),
                    ci_name: expected.name.clone(),
                    version: 0,
                    source: Source::Person,
                    by: owner.into(),
                    changes: vec![register::FieldChange {
                        field: "owner".into(),
                        before: None,
                        after: Some(json!(owner)),
                    }],
                },
                release_tag: None,
                claim_tag: None,
            }],
        }
    };
    let audit = || AuditDraft {
        actor: "ann".into(),
        action: "register.edit".into(),
        target: id.clone(),
        before: None,
        after: None,
        comment: None,
    };
    // An inventory lands between the person's read and their write: the edit applies on
    // top of it, and the inventory's change stays.
    r.send(machine(with(base_software(), "curl", "8.0-1")), Utc::now());
    let upgraded = r.store.get_ci(&id).unwrap().unwrap();
    r.store
        .commit_people(&write("ann", &read), audit(), Utc::now())
        .unwrap();
    let now = r.store.get_ci(&id).unwrap().unwrap();
    assert_eq!(now.attributes["register.owner"], "ann");
    assert_eq!(now.version, upgraded.version + 1);
    let relationships = r.store.relationships_from(&id).unwrap();
    assert!(relationships
        .iter()
        .any(|rel| rel.attributes.get("version") == Some(&json!("8.0-1"))));
    // A second edit computed on the register as it was before the first is refused.
    let e = r
        .store
        .commit_people(&write("bob", &read), audit(), Utc::now())
        .unwrap_err();
    assert!(matches!(e, PeopleWriteError::Stale(_)), "{e:?}");
    assert_eq!(
        r.store.get_ci(&id).unwrap().unwrap().attributes["register.owner"],
        "ann"
    );
    let edits = r
        .store
        .list_audit(0, 1000)
        .unwrap()
        .iter()
        .filter(|e| e.action == "register.edit")
        .count();
    assert_eq!(edits, 1);
    r.store.sequence_events(100).unwrap();
    let feed = r.store.feed_since(0, 100).unwrap();
    let event = feed
        .iter()
        .find(|e| e.event_type == REGISTER_CHANGED)
        .unwrap();
    assert_eq!(event.register.as_ref().unwrap().version, now.version);
}

#[test]
fn precedence_settings_decide_between_sources_and_refusals_name_the_holder() {
    let mut r = rig("register-precedence");
    r.send(machine(base_software()), Utc::now());
    let id = r.store.list_cis(Some(CiClass::Computer)).unwrap()[0]
        .id
        .clone();
    let ops = ops(&r);
    let admin = Actor::new("root");
    let rank = |source, stale_after_days| SourceRank {
        source,
        stale_after_days,
    };
    // The supplier comes from purchasing's file and outranks people; everything else
    // keeps the default order (people first).
    let settings = RegisterSettings {
        precedence: vec![FieldPrecedence {
            class: CiClass::Computer,
            field: "supplier".into(),
            order: vec![rank(Source::FileImport, None), rank(Source::Person, None)],
        }],
        ..RegisterSettings::default()
    };
    reg::put_settings(&ops, &admin, settings).unwrap();
    let saved = reg::settings(&ops).unwrap();
    assert_eq!(saved.updated_by, "root");
    reg::edit(
        &ops,
        &Actor::new("import"),
        &id,
        &edit(&[("supplier", json!("ACME")), ("owner", json!("it-ops"))]),
        Source::FileImport,
    )
    .unwrap();
    // A person may overwrite the owner (people rank first by default)...
    reg::edit(
        &ops,
        &Actor::new("ann"),
        &id,
        &edit(&[("owner", json!("ann"))]),
        Source::Person,
    )
    .unwrap();
    // ...but not the supplier, and the refusal writes nothing of the edit.
    let e = reg::edit(
        &ops,
        &Actor::new("ann"),
        &id,
        &edit(&[("supplier", json!("Other")), ("department", json!("R&D"))]),
        Source::Person,
    )
    .unwrap_err();
    let OpError::Conflict(m) = e else {
        panic!("{e:?}")
    };
    assert!(
        m.starts_with("supplier: set by file_import 'import'"),
        "{m}"
    );
    let view = reg::get(&ops, &id).unwrap();
    assert_eq!(value(&view, "supplier"), Some(&json!("ACME")));
    assert_eq!(value(&view, "department"), None);
    // The file may not overwrite the person's owner.
    let e = reg::edit(
        &ops,
        &Actor::new("import"),
        &id,
        &edit(&[("owner", json!("it-ops"))]),
        Source::FileImport,
    )
    .unwrap_err();
    assert!(
        e.to_string().starts_with("owner: set by person 'ann'"),
        "{e}"
    );
    // Settings that name an unknown field are refused with the field named.
    let bad = RegisterSettings {
        precedence: vec![FieldPrecedence {
            class: CiClass::Computer,
            field: "colour".into(),
            order: vec![rank(Source::Person, None)],
        }],
        ..RegisterSettings::default()
    };
    let e = reg::put_settings(&ops, &admin, bad).unwrap_err();
    assert!(
        matches!(&e, OpError::Invalid { field: Some(f), .. } if f == "precedence[0].field"),
        "{e:?}"
    );
}

#[test]
fn invalid_values_unknown_fields_and_classes_without_a_register_are_refused() {
    let mut r = rig("register-invalid");
    r.send(machine(base_software()), Utc::now());
    let ops = ops(&r);
    let ann = Actor::new("ann");
    let computer = r.store.list_cis(Some(CiClass::Computer)).unwrap()[0]
        .id
        .clone();
    let refused = |e: RegisterEdit| reg::edit(&ops, &ann, &computer, &e, Source::Person);
    let field_of = |e: OpError| match e {
        OpError::Invalid { field, .. } => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        field_of(refused(edit(&[("colour", json!("red"))])).unwrap_err()),
        Some("set.colour".into())
    );
    assert_eq!(
        field_of(refused(edit(&[("warranty_end", json!("31/12/2027"))])).unwrap_err()),
        Some("set.warranty_end".into())
    );
    assert_eq!(
        field_of(refused(edit(&[("lifecycle_status", json!("lost"))])).unwrap_err()),
        Some("set.lifecycle_status".into())
    );
    assert!(refused(RegisterEdit::default()).is_err());
    let mut stale = edit(&[("owner", json!("ann"))]);
    stale.expected_version = Some(0);
    assert!(matches!(refused(stale).unwrap_err(), OpError::Conflict(_)));
    let product = r.store.list_cis(Some(CiClass::SoftwareProduct)).unwrap()[0]
        .id
        .clone();
    assert!(matches!(
        reg::edit(
            &ops,
            &ann,
            &product,
            &edit(&[("owner", json!("x"))]),
            Source::Person
        ),
        Err(OpError::NotFound(_))
    ));
    assert!(matches!(
        reg::get(&ops, "cmp_does_not_exist"),
        Err(OpError::NotFound(_))
    ));
    let unchanged = r.store.get_ci(&computer).unwrap().unwrap();
    assert!(people_set_nothing(&unchanged));
}

#[test]
fn an_asset_tag_names_one_computer_and_moves_with_its_edits() {
    let (r, a, b) = two_computers("register-tags");
    let ops = ops(&r);
    let ann = Actor::new("ann");
    ann_sets(&ops, &a, &[("asset_tag", json!("A-1"))]);
    // Case and blanks do not make another tag.
    let e = reg::edit(
        &ops,
        &ann,
        &b,
        &edit(&[("asset_tag", json!(" a-1 "))]),
        Source::Person,
    )
    .unwrap_err();
    assert!(
        matches!(&e, OpError::Conflict(m) if m.contains(&format!("already the asset tag of {a}"))),
        "{e:?}"
    );
    // Retagging the first frees its old tag for the second.
    ann_sets(&ops, &a, &[("asset_tag", json!("A-2"))]);
    ann_sets(&ops, &b, &[("asset_tag", json!("A-1"))]);
    assert_eq!(
        r.store
            .lookup_identity(&asset_tag_key("a-1"))
            .unwrap()
            .as_deref(),
        Some(b.as_str())
    );
    assert_eq!(
        r.store
            .lookup_identity(&asset_tag_key("A-2"))
            .unwrap()
            .as_deref(),
        Some(a.as_str())
    );
    // Clearing a tag releases it.
    ann_sets(&ops, &a, &[("asset_tag", Value::Null)]);
    assert_eq!(
        r.store.lookup_identity(&asset_tag_key("A-2")).unwrap(),
        None
    );
    let report = r.store.check_consistency().unwrap();
    assert_eq!(report.problems_total, 0, "{report:?}");
}

/// The second machine of [`two_computers`], with `software`.
fn web02(software: Vec<census_shared::Software>) -> census_shared::Snapshot {
    let mut other = machine(software);
    if let Some(s) = other.system.data_mut() {
        s.serial = Some("SER999".into());
        s.machine_id = Some("fedcba9876543210fedcba9876543210".into());
    }
    if let Some(os) = other.os.data_mut() {
        os.hostname = "web02".into();
    }
    if let Some(nics) = other.network_interfaces.data_mut() {
        nics[0].mac = Some("52:54:00:aa:bb:cc".into());
    }
    other
}

/// Two computers: web01 (serial SER123) and web02 (serial SER999).
fn two_computers(name: &str) -> (crate::drift::Rig, String, String) {
    let mut r = rig(name);
    r.send(machine(base_software()), Utc::now());
    r.switch_to_new_agent(&format!("agt_{name}_2"));
    r.send(web02(base_software()), Utc::now());
    let id_of = |host: &str| {
        r.store
            .list_cis(Some(CiClass::Computer))
            .unwrap()
            .into_iter()
            .find(|c| c.attributes["os.hostname"] == host)
            .unwrap()
            .id
    };
    let (a, b) = (id_of("web01"), id_of("web02"));
    (r, a, b)
}

const DRY_RUN: ImportMode = ImportMode {
    dry_run: true,
    skip_problem_rows: false,
};
const APPLY: ImportMode = ImportMode {
    dry_run: false,
    skip_problem_rows: false,
};

#[test]
fn a_register_file_is_checked_by_a_dry_run_then_applied_all_at_once() {
    let (r, a, b) = two_computers("register-import");
    let ops = ops(&r);
    let importer = Actor::new("ann");
    let file = "serial,hostname,asset_tag,owner,purchase_cost,warranty_end,lifecycle_status\r\n\
                ser123,,A-1,ann,1299.50,2027-06-30,deployed\r\n\
                ,WEB02,A-2,bob,,,in_stock\r\n";
    let report =
        register_csv::import(&ops, &importer, "assets.csv", file.as_bytes(), DRY_RUN).unwrap();
    assert_eq!(
        (
            report.rows,
            report.updates,
            report.problems_total,
            report.applied
        ),
        (2, 2, 0, false),
        "{report:?}"
    );
    assert!(people_set_nothing(&r.store.get_ci(&a).unwrap().unwrap()));
    let applied =
        register_csv::import(&ops, &importer, "assets.csv", file.as_bytes(), APPLY).unwrap();
    assert!(applied.applied && applied.updates == 2, "{applied:?}");
    let va = reg::get(&ops, &a).unwrap();
    assert_eq!(value(&va, "purchase_cost"), Some(&json!(1299.5)));
    let holder = va.fields.iter().find(|f| f.field == "owner").unwrap();
    let holder = holder.set_by.as_ref().unwrap();
    assert_eq!(
        (holder.source, holder.by.as_str()),
        (Source::FileImport, "assets.csv")
    );
    assert_eq!(
        value(&reg::get(&ops, &b).unwrap(), "asset_tag"),
        Some(&json!("A-2"))
    );
    let audit = r.store.list_audit(0, 1000).unwrap();
    let entry = audit
        .iter()
        .rfind(|e| e.action == "register.import")
        .unwrap();
    assert_eq!(entry.after.as_ref().unwrap()["updates"], 2);
    assert_eq!(
        entry.after.as_ref().unwrap()["sha256"],
        json!(applied.sha256)
    );
    r.store.sequence_events(100).unwrap();
    let events = r
        .store
        .feed_since(0, 100)
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == REGISTER_CHANGED)
        .count();
    assert_eq!(events, 2);
    // The same file again changes nothing.
    let again =
        register_csv::import(&ops, &importer, "assets.csv", file.as_bytes(), APPLY).unwrap();
    assert_eq!(
        (again.updates, again.unchanged, again.applied),
        (0, 2, false)
    );
}

#[test]
fn bad_rows_are_listed_with_their_lines_and_refuse_the_apply_unless_skipped() {
    let (r, a, b) = two_computers("register-import-bad");
    let ops = ops(&r);
    let ann = Actor::new("ann");
    // A person holds web02's owner; files rank below people.
    ann_sets(&ops, &b, &[("owner", json!("carol"))]);
    let file = "hostname,serial,asset_tag,owner,lifecycle_status\n\
                web01,,T-1,ann,deployed\n\
                web02,,T-1,,\n\
                web01,,,x,\n\
                ghost,,,x,\n\
                web01,SER999,,x,\n\
                web02,,,bob,\n\
                web02,,,,lost\n";
    let report = register_csv::import(&ops, &ann, "bad.csv", file.as_bytes(), DRY_RUN).unwrap();
    let found: Vec<(u64, ProblemKind)> = report.problems.iter().map(|p| (p.line, p.kind)).collect();
    assert_eq!(
        found,
        vec![
            (2, ProblemKind::Invalid),   // T-1 would be on both computers
            (3, ProblemKind::Invalid),   // ...on this line too
            (4, ProblemKind::Invalid),   // web01 again
            (5, ProblemKind::Unmatched), // no such computer, nothing to record it by
            (6, ProblemKind::Ambiguous), // hostname and serial name different computers
            (7, ProblemKind::Invalid),   // web02 again (line 3 named it)
            (8, ProblemKind::Invalid),   // unknown status label
        ],
        "{report:#?}"
    );
    assert!(
        report.problems[4].message.contains("names"),
        "{:?}",
        report.problems[4]
    );
    let refused = register_csv::import(&ops, &ann, "bad.csv", file.as_bytes(), APPLY).unwrap();
    assert!(!refused.applied);
    assert_eq!(value(&reg::get(&ops, &a).unwrap(), "owner"), None);
    // A held field is a problem of its row; skipping problem rows applies the others.
    let file = "hostname,owner,supplier\nweb01,ann,ACME\nweb02,bob,ACME\n";
    let mode = ImportMode {
        dry_run: false,
        skip_problem_rows: true,
    };
    let partial = register_csv::import(&ops, &ann, "held.csv", file.as_bytes(), mode).unwrap();
    assert_eq!(
        (partial.updates, partial.held, partial.applied),
        (1, 1, true),
        "{partial:?}"
    );
    assert!(partial.problems[0]
        .message
        .starts_with("owner: set by person 'ann'"));
    assert_eq!(
        value(&reg::get(&ops, &a).unwrap(), "supplier"),
        Some(&json!("ACME"))
    );
    assert_eq!(
        value(&reg::get(&ops, &b).unwrap(), "owner"),
        Some(&json!("carol"))
    );
    assert_eq!(value(&reg::get(&ops, &b).unwrap(), "supplier"), None);
}

#[test]
fn tags_may_swap_between_computers_within_one_file() {
    let (r, a, b) = two_computers("register-import-swap");
    let ops = ops(&r);
    let ann = Actor::new("ann");
    let first = "ci_id,asset_tag\n".to_string() + &format!("{a},X-1\n{b},X-2\n");
    register_csv::import(&ops, &ann, "f.csv", first.as_bytes(), APPLY).unwrap();
    let swap = format!("ci_id,asset_tag\n{a},X-2\n{b},X-1\n");
    let report = register_csv::import(&ops, &ann, "f.csv", swap.as_bytes(), APPLY).unwrap();
    assert!(report.applied, "{report:?}");
    assert_eq!(
        r.store
            .lookup_identity(&asset_tag_key("x-1"))
            .unwrap()
            .as_deref(),
        Some(b.as_str())
    );
    assert_eq!(r.store.check_consistency().unwrap().problems_total, 0);
}

fn licence(
    name: &str,
    product: &str,
    versions: &str,
    seats: u32,
    expires: Option<&str>,
) -> LicenceRequest {
    LicenceRequest {
        name: name.into(),
        product: product.into(),
        versions: versions.into(),
        seats,
        expires: expires.map(str::to_string),
        cost: Some(100.0),
        notes: None,
    }
}

#[test]
fn licences_count_computers_installing_covered_versions_in_the_packages_order() {
    let (mut r, a, b) = two_computers("register-licences");
    // web01 has openssl 3.0.11-1~deb12u2 (from the rig); web02 upgrades to 3.0.13-1~deb12u1.
    r.send(
        web02(with(base_software(), "openssl", "3.0.13-1~deb12u1")),
        Utc::now(),
    );
    let ops = ops(&r);
    let ann = Actor::new("ann");
    let old = licences_op::create(
        &ops,
        &ann,
        licence(
            "OpenSSL support, 3.0.11",
            "OPENSSL",
            ">= 3.0.11-1~deb12u1, < 3.0.12",
            1,
            None,
        ),
    )
    .unwrap();
    let any = licences_op::create(
        &ops,
        &ann,
        licence("Every openssl", "open*", "", 1, Some("2020-01-01")),
    )
    .unwrap();
    let none =
        licences_op::create(&ops, &ann, licence("Nothing", "no-such-*", "", 5, None)).unwrap();
    let all = r.store.list_licences().unwrap();
    let (uses, _) = licences::usage(r.store.as_ref(), &all, Utc::now(), None).unwrap();
    let of = |id: &str| uses.iter().find(|u| u.licence.id == id).unwrap().clone();
    assert_eq!(
        (
            of(&old.id).installed_on,
            of(&old.id).over,
            of(&old.id).unused
        ),
        (1, 0, 0)
    );
    assert_eq!((of(&any.id).installed_on, of(&any.id).over), (2, 1));
    assert_eq!(of(&any.id).products, vec!["openssl".to_string()]);
    assert!(of(&any.id).expires_in_days.unwrap() < 0);
    assert_eq!((of(&none.id).installed_on, of(&none.id).unused), (0, 5));
    let (_, computers) =
        licences::usage(r.store.as_ref(), &all, Utc::now(), Some(&old.id)).unwrap();
    assert_eq!(
        computers.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        vec![a.as_str()]
    );
    let _ = b;
    // Refusals name the field; a deletion is audited.
    let e = licences_op::create(&ops, &ann, licence("x", "openssl", ">=", 1, None)).unwrap_err();
    assert!(
        matches!(&e, OpError::Invalid { field: Some(f), .. } if f == "versions"),
        "{e:?}"
    );
    let e =
        licences_op::create(&ops, &ann, licence("x", "openssl", "", 1, Some("soon"))).unwrap_err();
    assert!(
        matches!(&e, OpError::Invalid { field: Some(f), .. } if f == "expires"),
        "{e:?}"
    );
    licences_op::delete(&ops, &ann, &none.id).unwrap();
    assert!(matches!(
        licences_op::delete(&ops, &ann, &none.id),
        Err(OpError::NotFound(_))
    ));
    let audit = r.store.list_audit(0, 1000).unwrap();
    let actions: Vec<&str> = audit
        .iter()
        .map(|e| e.action.as_str())
        .filter(|a| a.starts_with("licence."))
        .collect();
    assert_eq!(
        actions,
        vec![
            "licence.create",
            "licence.create",
            "licence.create",
            "licence.delete"
        ]
    );
}

#[test]
fn the_expiry_report_lists_licences_and_warranties_within_the_window() {
    let (r, a, b) = two_computers("register-expiring");
    let ops = ops(&r);
    let ann = Actor::new("ann");
    let today = Utc::now().date_naive();
    let date = |days: i64| {
        (today + chrono::Duration::days(days))
            .format("%Y-%m-%d")
            .to_string()
    };
    ann_sets(
        &ops,
        &a,
        &[("warranty_end", json!(date(10))), ("owner", json!("ann"))],
    );
    ann_sets(&ops, &b, &[("warranty_end", json!(date(-3)))]);
    licences_op::create(
        &ops,
        &ann,
        licence("soon", "openssl", "", 2, Some(&date(20))),
    )
    .unwrap();
    licences_op::create(
        &ops,
        &ann,
        licence("later", "openssl", "", 2, Some(&date(400))),
    )
    .unwrap();
    let report = licences::expiring(r.store.as_ref(), 30, Utc::now()).unwrap();
    let warranties: Vec<(&str, i64)> = report
        .warranties
        .iter()
        .map(|w| (w.id.as_str(), w.days))
        .collect();
    assert_eq!(warranties, vec![(b.as_str(), -3), (a.as_str(), 10)]);
    assert_eq!(report.warranties[1].owner.as_deref(), Some("ann"));
    let names: Vec<&str> = report
        .licences
        .iter()
        .map(|l| l.licence.name.as_str())
        .collect();
    assert_eq!(names, vec!["soon"]);
    assert_eq!(report.licences[0].installed_on, 2);
    let short = licences::expiring(r.store.as_ref(), 5, Utc::now()).unwrap();
    assert_eq!(short.warranties.len(), 1);
    assert!(short.licences.is_empty());
}

#[test]
fn a_computer_recorded_before_discovery_becomes_the_machine_that_reports_its_serial() {
    let mut r = rig("register-before-discovery");
    let ops = ops(&r);
    let ann = Actor::new("ann");
    let record = reg::create_record(
        &ops,
        &ann,
        &NewRecord {
            name: "laptop for bob".into(),
            serial: Some(" ser123 ".into()),
            set: [
                ("asset_tag".to_string(), Some(json!("AT-9"))),
                ("lifecycle_status".to_string(), Some(json!("in_stock"))),
            ]
            .into_iter()
            .collect(),
            comment: Some("PO-77".into()),
        },
    )
    .unwrap();
    let id = record.ci_id.clone();
    // A second record of the same serial or tag is refused; a record needs one of them.
    let again = |serial: Option<&str>, tag: Option<&str>| {
        reg::create_record(
            &ops,
            &ann,
            &NewRecord {
                name: "x".into(),
                serial: serial.map(str::to_string),
                set: tag
                    .map(|t| ("asset_tag".to_string(), Some(json!(t))))
                    .into_iter()
                    .collect(),
                comment: None,
            },
        )
    };
    assert!(matches!(
        again(Some("SER123"), None),
        Err(OpError::Conflict(_))
    ));
    assert!(matches!(
        again(None, Some("at-9")),
        Err(OpError::Conflict(_))
    ));
    assert!(matches!(again(None, None), Err(OpError::Invalid { .. })));
    assert!(matches!(
        again(Some("To Be Filled By O.E.M."), None),
        Err(OpError::Invalid { .. })
    ));
    // The lifecycle sweep leaves a record no agent reports alone.
    let policy = census_collector::lifecycle::Lifecycle {
        stale_after: Duration::seconds(1),
        retire_after: Duration::seconds(2),
    };
    assert_eq!(
        census_collector::lifecycle::sweep(
            r.store.as_ref(),
            policy,
            Utc::now() + Duration::days(30)
        )
        .unwrap(),
        0
    );
    // The machine arrives: its first inventory (serial SER123) lands on the record, as a
    // first inventory (no change record), and the register stays.
    let raised = r.send(machine(base_software()), Utc::now());
    assert!(raised.is_none(), "{raised:?}");
    let computers = r.store.list_cis(Some(CiClass::Computer)).unwrap();
    assert_eq!(computers.len(), 1);
    let ci = &computers[0];
    assert_eq!(ci.id, id);
    assert_eq!(ci.attributes["register.asset_tag"], "AT-9");
    assert_eq!(ci.attributes["os.hostname"], "web01");
    assert_eq!(ci.sources.len(), 1);
    let agent = r
        .store
        .list_agents()
        .unwrap()
        .into_iter()
        .find(|a| a.ci_id.as_deref() == Some(id.as_str()))
        .unwrap();
    let evidence = agent.identification.unwrap();
    assert_eq!(
        (evidence.rule.as_str(), evidence.value.as_str()),
        ("register_serial", "ser123")
    );
    let history = r.store.history(&id).unwrap();
    assert_eq!(history.len(), 2, "recorded, then discovered");
    assert_eq!(r.store.check_consistency().unwrap().problems_total, 0);
    // Another record with a serial a discovered computer reports is refused.
    assert!(matches!(
        again(Some("SER123"), Some("AT-10")),
        Err(OpError::Conflict(_))
    ));
}

#[test]
fn rows_naming_no_computer_record_new_hardware_by_serial_or_asset_tag() {
    let (mut r, a, _) = two_computers("register-import-new");
    let ops = ops(&r);
    let ann = Actor::new("ann");
    let file = "hostname,serial,asset_tag,lifecycle_status,supplier\n\
                new01,SER-N1,AT-N1,on_order,ACME\n\
                ,SER-N2,,in_stock,\n\
                ghost,,,,x\n\
                dup,ser-n1,,,\n\
                web01,,AT-N1,,\n\
                oem,To Be Filled By O.E.M.,,,\n";
    let dry = register_csv::import(&ops, &ann, "po.csv", file.as_bytes(), DRY_RUN).unwrap();
    let found: Vec<(u64, ProblemKind)> = dry.problems.iter().map(|p| (p.line, p.kind)).collect();
    assert_eq!(
        found,
        vec![
            (2, ProblemKind::Invalid),   // AT-N1 would also be web01's (line 6)
            (4, ProblemKind::Unmatched), // nothing to record it by
            (5, ProblemKind::Invalid),   // SER-N1 twice
            (6, ProblemKind::Invalid),   // AT-N1 would also be line 2's
            (7, ProblemKind::Invalid),   // a placeholder serial
        ],
        "{dry:#?}"
    );
    assert_eq!((dry.new, dry.unmatched), (1, 1), "{dry:#?}");
    let before = r.store.list_cis(Some(CiClass::Computer)).unwrap().len();
    let mode = ImportMode {
        dry_run: false,
        skip_problem_rows: true,
    };
    let applied = register_csv::import(&ops, &ann, "po.csv", file.as_bytes(), mode).unwrap();
    assert!(applied.applied && applied.new == 1, "{applied:#?}");
    let after = r.store.list_cis(Some(CiClass::Computer)).unwrap();
    assert_eq!(after.len(), before + 1);
    let recorded = after
        .iter()
        .find(|c| c.attributes.get("system.serial") == Some(&json!("SER-N2")))
        .unwrap();
    assert_eq!(recorded.name, "SER-N2");
    let holder = register::provenance(&recorded.attributes)["lifecycle_status"].clone();
    assert_eq!(
        (holder.source, holder.by.as_str()),
        (Source::FileImport, "po.csv")
    );
    // The machine with that serial arrives and becomes the record.
    r.switch_to_new_agent("agt_n2");
    let mut n2 = web02(base_software());
    if let Some(s) = n2.system.data_mut() {
        s.serial = Some("SER-N2".into());
        s.machine_id = Some("11111111111111111111111111111111".into());
    }
    if let Some(os) = n2.os.data_mut() {
        os.hostname = "n2".into();
    }
    if let Some(nics) = n2.network_interfaces.data_mut() {
        nics[0].mac = Some("52:54:00:11:22:33".into());
    }
    assert!(r.send(n2, Utc::now()).is_none());
    let now = r.store.get_ci(&recorded.id).unwrap().unwrap();
    assert_eq!(now.attributes["os.hostname"], "n2");
    assert_eq!(now.attributes["register.lifecycle_status"], "in_stock");
    let _ = a;
}

fn item<'a>(view: &'a reg::RegisterView, field: &str) -> Option<&'a register::Discrepancy> {
    view.reconciliation.get(field)
}

/// Agents are a register source for serial, manufacturer and model; where discovery
/// disagrees with what a person recorded, an item waits (nothing is overwritten, nothing
/// is drift) until a person takes the discovered value or keeps theirs.
#[test]
fn discovery_disagreeing_with_a_person_waits_as_a_reconciliation_item() {
    let mut r = rig("register-reconcile");
    r.send(machine(base_software()), Utc::now() - Duration::minutes(10));
    let id = r.store.list_cis(Some(CiClass::Computer)).unwrap()[0]
        .id
        .clone();
    let ops = ops(&r);
    let view = reg::get(&ops, &id).unwrap();
    assert_eq!(value(&view, "serial_number"), Some(&json!("SER123")));
    assert_eq!(value(&view, "manufacturer"), Some(&json!("Dell Inc.")));
    let set_by = |view: &reg::RegisterView, field: &str| {
        view.fields
            .iter()
            .find(|f| f.field == field)
            .and_then(|f| f.set_by.clone())
            .unwrap()
    };
    assert_eq!(set_by(&view, "serial_number").source, Source::Agent);
    assert!(view.reconciliation.is_empty());

    // A person records another serial: the disagreement is an item at once.
    let view = ann_sets(&ops, &id, &[("serial_number", json!("SER999"))]);
    let serial_item = item(&view, "serial_number").unwrap();
    assert!(serial_item.is_open());
    assert_eq!(serial_item.discovered, json!("SER123"));
    assert_eq!(serial_item.held, Some(json!("SER999")));
    assert_eq!(serial_item.holder.by, "ann");
    let since = serial_item.since;

    // Inventories keep reporting SER123: the person's value stands, the item stays the
    // same item, and none of it is drift.
    let raised = r.send(
        machine(with(base_software(), "vim", "2:9.0.1378-3")),
        Utc::now(),
    );
    assert!(raised.is_some(), "the package change is drift");
    let record = raised.unwrap();
    assert!(
        record.items.iter().all(|i| !i.key.starts_with("register")),
        "{:?}",
        record.items
    );
    let view = reg::get(&ops, &id).unwrap();
    assert_eq!(value(&view, "serial_number"), Some(&json!("SER999")));
    assert_eq!(item(&view, "serial_number").unwrap().since, since);
    let listed = reg::reconciliation(&ops, false).unwrap();
    assert_eq!(listed.total, 1);
    assert_eq!(
        (
            listed.items[0].ci_id.as_str(),
            listed.items[0].field.as_str()
        ),
        (id.as_str(), "serial_number")
    );

    // Keep the recorded manufacturer; a new discovered value opens the item again.
    ann_sets(&ops, &id, &[("manufacturer", json!("Dell"))]);
    let bob = Actor::new("bob");
    let keep = reg::ResolveRequest {
        resolution: register::Resolution::Keep,
        comment: Some("the sticker says Dell".into()),
    };
    let view = reg::resolve(&ops, &bob, &id, "manufacturer", &keep).unwrap();
    let kept = item(&view, "manufacturer").unwrap();
    assert_eq!(kept.kept.as_ref().unwrap().by, "bob");
    assert_eq!(value(&view, "manufacturer"), Some(&json!("Dell")));
    assert_eq!(reg::reconciliation(&ops, false).unwrap().total, 1);
    assert_eq!(reg::reconciliation(&ops, true).unwrap().total, 2);
    assert!(matches!(
        reg::resolve(&ops, &bob, &id, "manufacturer", &keep),
        Err(OpError::Conflict(_))
    ));
    let mut rebranded = machine(base_software());
    if let Some(s) = rebranded.system.data_mut() {
        s.vendor = Some("Dell Technologies".into());
    }
    r.send(rebranded.clone(), Utc::now());
    let view = reg::get(&ops, &id).unwrap();
    let reopened = item(&view, "manufacturer").unwrap();
    assert!(reopened.is_open());
    assert_eq!(reopened.discovered, json!("Dell Technologies"));
    assert_eq!(value(&view, "manufacturer"), Some(&json!("Dell")));

    // Take the discovered serial: the field is discovery's again, as a register change
    // in history, the audit log and the feed.
    let accept = reg::ResolveRequest {
        resolution: register::Resolution::Accept,
        comment: None,
    };
    let before = r.store.get_ci(&id).unwrap().unwrap().version;
    let view = reg::resolve(&ops, &bob, &id, "serial_number", &accept).unwrap();
    assert_eq!(view.version, before + 1);
    assert_eq!(value(&view, "serial_number"), Some(&json!("SER123")));
    assert_eq!(set_by(&view, "serial_number").source, Source::Agent);
    assert!(item(&view, "serial_number").is_none());
    assert!(matches!(
        reg::resolve(&ops, &bob, &id, "serial_number", &accept),
        Err(OpError::NotFound(_))
    ));
    let audit = r.store.list_audit(0, 1000).unwrap();
    let decisions: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "register.reconcile")
        .collect();
    assert_eq!(decisions.len(), 2);
    assert_eq!(decisions[1].after.as_ref().unwrap()["resolution"], "accept");
    r.store.sequence_events(100).unwrap();
    let feed = r.store.feed_since(0, 100).unwrap();
    let accepted = feed
        .iter()
        .filter_map(|e| e.register.as_ref())
        .find(|c| c.by == "bob")
        .unwrap();
    assert_eq!(accepted.changes[0].field, "serial_number");
    assert_eq!(accepted.changes[0].after, Some(json!("SER123")));
    // Discovery now writes the serial as it changes; only the kept-then-reopened
    // manufacturer still waits.
    assert_eq!(reg::reconciliation(&ops, false).unwrap().total, 1);
    assert_eq!(r.store.check_consistency().unwrap().problems_total, 0);
}

/// Custom fields an administrator defines: validated by their type, edited, imported and
/// exported like built-in fields, filtered on, under precedence; a removed definition
/// hides the field while history keeps its values.
#[test]
fn custom_fields_are_defined_by_an_admin_validated_imported_and_filtered() {
    use census_collector::query::{self, filter, Query, Sort};
    use register::{CustomField, FieldKind};
    let (r, a, b) = two_computers("register-custom");
    let ops = ops(&r);
    let admin = Actor::new("root");
    let mut settings = reg::settings(&ops).unwrap();
    settings.custom_fields = vec![
        CustomField {
            class: CiClass::Computer,
            name: "u_rack".into(),
            description: "Rack and unit".into(),
            kind: FieldKind::Text { max_chars: 16 },
        },
        CustomField {
            class: CiClass::Computer,
            name: "u_ram_slots".into(),
            description: String::new(),
            kind: FieldKind::Number {
                min: Some(0.0),
                max: Some(16.0),
                decimals: 0,
            },
        },
        CustomField {
            class: CiClass::Computer,
            name: "u_support".into(),
            description: String::new(),
            kind: FieldKind::Enum {
                values: vec!["gold".into(), "silver".into()],
            },
        },
    ];
    reg::put_settings(&ops, &admin, settings.clone()).unwrap();

    let view = ann_sets(
        &ops,
        &a,
        &[
            ("u_rack", json!("R12-U07")),
            ("u_ram_slots", json!("4")),
            ("u_support", json!("gold")),
        ],
    );
    assert_eq!(value(&view, "u_ram_slots"), Some(&json!(4)));
    let ann = Actor::new("ann");
    let refused = |pairs: &[(&str, Value)]| {
        reg::edit(&ops, &ann, &a, &edit(pairs), Source::Person).unwrap_err()
    };
    for (pairs, needle) in [
        (vec![("u_ram_slots", json!(32))], "u_ram_slots: 32 is above"),
        (
            vec![("u_support", json!("bronze"))],
            "not one of gold, silver",
        ),
        (vec![("u_rack", json!("x".repeat(17)))], "at most 16"),
        (vec![("u_colour", json!("red"))], "unknown register field"),
    ] {
        let e = refused(&pairs);
        assert!(
            matches!(&e, OpError::Invalid { message, .. } if message.contains(needle)),
            "{e:?}"
        );
    }

    // A filter on a custom field, like any attribute.
    let found = query::run(
        r.store.as_ref(),
        &Query {
            class: CiClass::Computer,
            filter: filter::parse_for(CiClass::Computer, "register.u_support = gold").unwrap(),
            sort: Sort::parse("name").unwrap(),
            limit: 10,
            after: None,
        },
        Utc::now(),
    )
    .unwrap();
    assert_eq!(
        found
            .items
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        [a.as_str()]
    );

    // A file sets custom columns; a bad cell names its line and column.
    let file = "hostname,u_rack,u_support\nweb02,R01-U01,silver\n";
    let report = register_csv::import(&ops, &ann, "racks.csv", file.as_bytes(), APPLY).unwrap();
    assert!(report.applied && report.updates == 1, "{report:?}");
    let vb = reg::get(&ops, &b).unwrap();
    assert_eq!(value(&vb, "u_support"), Some(&json!("silver")));
    let bad = "hostname,u_ram_slots\nweb02,seventeen\n";
    let report = register_csv::import(&ops, &ann, "bad.csv", bad.as_bytes(), DRY_RUN).unwrap();
    assert_eq!(report.invalid, 1, "{report:?}");
    assert_eq!(
        (
            report.problems[0].line,
            report.problems[0].column.as_deref()
        ),
        (2, Some("u_ram_slots"))
    );

    // Precedence applies to a custom field as to any other.
    settings.precedence = vec![FieldPrecedence {
        class: CiClass::Computer,
        field: "u_rack".into(),
        order: vec![
            SourceRank {
                source: Source::FileImport,
                stale_after_days: None,
            },
            SourceRank {
                source: Source::Person,
                stale_after_days: None,
            },
        ],
    }];
    reg::put_settings(&ops, &admin, settings.clone()).unwrap();
    let e = reg::edit(
        &ops,
        &ann,
        &b,
        &edit(&[("u_rack", json!("R99"))]),
        Source::Person,
    )
    .unwrap_err();
    assert!(
        matches!(&e, OpError::Conflict(m) if m.contains("file_import 'racks.csv'")),
        "{e:?}"
    );

    // Removing the definition (and its precedence) hides the field; history keeps it.
    settings.custom_fields.retain(|c| c.name != "u_support");
    reg::put_settings(&ops, &admin, settings).unwrap();
    let view = reg::get(&ops, &a).unwrap();
    assert!(view.fields.iter().all(|f| f.field != "u_support"));
    let history = r.store.history(&a).unwrap();
    assert_eq!(
        history.last().unwrap().ci.attributes["register.u_support"],
        "gold"
    );
    assert!(matches!(
        refused(&[("u_support", json!("gold"))]),
        OpError::Invalid { .. }
    ));
}
