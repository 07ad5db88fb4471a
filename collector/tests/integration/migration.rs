//! A store written by the release before schema 3 (`tests/fixtures/schema2/`, made by the
//! `generate.rs` next to it) restores, migrates into redb when it opens, and answers the
//! same queries with the same results.
//!
//! Two differences are by design, and normalised away here: install dates are kept to the
//! second (schema 2 kept the agent's nanoseconds), and a past version holds configuration
//! only (schema 2 copied the volatile facts and last-seen time of the moment it was
//! written; they were never history).

use census_collector::model::*;
use census_collector::query::{self, filter, views, Query, Sort};
use census_collector::store::*;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema2");
/// The generator's `AS_OF_MINUTES`.
const AS_OF_MINUTES: [i64; 5] = [-1, 30, 90, 150, 400];

fn expected() -> Value {
    let z = std::fs::read(format!("{FIXTURE}/expected.json.zst")).unwrap();
    let json = zstd::stream::decode_all(z.as_slice()).unwrap();
    serde_json::from_slice(&json).unwrap()
}

/// Install dates to the second, versions without what is not history, and a computer's
/// components by id (the order `owned_state` lists them in is not an answer).
fn normalised(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                if let Some(Value::Array(components)) = m.get_mut("components") {
                    components.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
                }
                if let Some(Value::String(d)) = m.get_mut("install_date") {
                    if let Ok(t) = DateTime::parse_from_rfc3339(d) {
                        *d = census_collector::reconcile::install_date(t.with_timezone(&Utc));
                    }
                }
                // A version (`ci_id` + `ci` + `valid_from`): its CI's volatile facts and
                // last seen are not history.
                if m.contains_key("valid_from") && m.contains_key("ci_id") {
                    if let Some(Value::Object(ci)) = m.get_mut("ci") {
                        ci.remove("volatile");
                        ci.remove("last_seen");
                    }
                }
                m.values_mut().for_each(walk);
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    // A diff between versions is rated at read time by the current severity rules (the
    // same as change records, issue 26), which the release that wrote the fixture did not
    // do: the rating is not stored state, so it is not what a migration must keep.
    if let Some(Value::Object(computers)) = v.get_mut("computers") {
        for c in computers.values_mut() {
            if let Some(Value::Array(items)) = c.get_mut("diff") {
                for i in items {
                    if let Some(item) = i.as_object_mut() {
                        item.remove("severity");
                    }
                }
            }
        }
    }
    // A catalogue entry's title, publisher and category come from the title rules at read
    // time (issue 23), and its versions are listed newest first since; neither is stored
    // state. What a migration must keep is which versions, on how many computers.
    if let Some(Value::Array(products)) = v.get_mut("catalogue") {
        for p in products.iter_mut().filter_map(Value::as_object_mut) {
            for derived in ["title", "publisher", "category"] {
                p.remove(derived);
            }
            if let Some(Value::Array(versions)) = p.get_mut("versions") {
                versions.sort_by(|a, b| a["version"].as_str().cmp(&b["version"].as_str()));
            }
        }
    }
    v
}

fn answers(store: &Cmdb, t0: DateTime<Utc>, now: DateTime<Utc>) -> Value {
    let page = |f: &str| -> Value {
        let p = query::run(
            store,
            &Query {
                class: CiClass::Computer,
                filter: filter::parse(f).unwrap(),
                sort: Sort::parse("name").unwrap(),
                limit: 100,
                after: None,
            },
            now,
        )
        .unwrap();
        json!({"total": p.total, "ids": p.items.iter().map(|c| c.id.clone()).collect::<Vec<_>>()})
    };
    let mut per_computer = serde_json::Map::new();
    for c in store.list_cis(Some(CiClass::Computer)).unwrap() {
        let as_of: Vec<Value> = AS_OF_MINUTES
            .iter()
            .map(|m| json!(store.as_of(&c.id, t0 + Duration::minutes(*m)).unwrap()))
            .collect();
        // Schema 2 listed the components its current edges reach: the live ones.
        let components: Vec<Value> = store
            .owned_state(&c.id)
            .unwrap()
            .components
            .iter()
            .filter(|k| k.status != CiStatus::Retired)
            .map(|k| json!({"id": k.id, "history": store.history(&k.id).unwrap()}))
            .collect();
        per_computer.insert(
            c.id.clone(),
            json!({
                "ci": c,
                "detail": views::ci_detail(store, &c.id, None, 200).unwrap(),
                "history": views::history(store, &c.id).unwrap(),
                "versions": store.history(&c.id).unwrap(),
                "as_of": as_of,
                "diff": views::diff_between(store, &c.id, t0 + Duration::minutes(30), now).unwrap(),
                "components": components,
            }),
        );
    }
    json!({
        "t0": t0,
        "now": now,
        "all": page(""),
        "old_openssl": page("software.name = openssl and software.version < 3.0.13"),
        "kernel": page("os.kernel_version = 6.1.0-19-amd64"),
        "computers": per_computer,
        "catalogue": views::catalogue(store, None, 100, None).unwrap().0,
        "change_records": store.list_change_records().unwrap(),
        "feed": store.feed_since(0, 1000).unwrap(),
        "audit": store.list_audit(0, 1000).unwrap(),
        "agents": store.list_agents().unwrap(),
        "conflicts": store.list_conflicts().unwrap(),
    })
}

/// The first place two JSON values differ, as a path.
fn first_difference(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                if let Some(d) = first_difference(&format!("{path}.{k}"), va, vb) {
                    return Some(d);
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (va, vb))| first_difference(&format!("{path}[{i}]"), va, vb)),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} != {b}")),
    }
}

#[test]
fn a_schema_2_store_migrates_and_answers_the_same_queries() {
    let dir = std::env::temp_dir().join(format!("census-migration-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut backup = std::fs::File::open(format!("{FIXTURE}/backup.census")).unwrap();
    Cmdb::restore(&dir, &mut backup).unwrap();
    let store = Cmdb::open(&dir).unwrap();
    assert_eq!(store.schema_version().unwrap(), STORE_SCHEMA_VERSION);
    assert!(dir
        .join(census_collector::store::redb_backend::FILE)
        .exists());
    for gone in ["conf", "db", "blobs"] {
        assert!(!dir.join(gone).exists(), "sled's {gone} is left behind");
    }
    let report = store.check_consistency().unwrap();
    assert_eq!(report.problems_total, 0, "{report:?}");

    let mut want = normalised(expected());
    assert_eq!(want["schema_version"], 2, "the fixture is a schema-2 store");
    want.as_object_mut().unwrap().remove("schema_version");
    let t0: DateTime<Utc> = serde_json::from_value(want["t0"].clone()).unwrap();
    let now: DateTime<Utc> = serde_json::from_value(want["now"].clone()).unwrap();
    let got = normalised(answers(&store, t0, now));
    if let Some(d) = first_difference("", &want, &got) {
        panic!("the migrated store answers differently at {d}");
    }

    // Reopened, it is the same redb store (no second migration).
    drop(store);
    let store = Cmdb::open(&dir).unwrap();
    assert_eq!(normalised(answers(&store, t0, now)), want);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_interrupted_migration_leaves_the_old_store_and_runs_again() {
    let dir = std::env::temp_dir().join(format!("census-migration-again-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut backup = std::fs::File::open(format!("{FIXTURE}/backup.census")).unwrap();
    Cmdb::restore(&dir, &mut backup).unwrap();
    // What a kill -9 during the migration leaves: the old store and a partial new file.
    std::fs::write(dir.join("census.redb.migrating"), b"half a file").unwrap();
    let store = Cmdb::open(&dir).unwrap();
    assert_eq!(store.schema_version().unwrap(), STORE_SCHEMA_VERSION);
    assert!(!dir.join("census.redb.migrating").exists());
    assert_eq!(store.list_cis(Some(CiClass::Computer)).unwrap().len(), 6);
    drop(store);
    // What a kill -9 after the rename leaves: the new store and the old files.
    std::fs::create_dir_all(dir.join("blobs")).unwrap();
    std::fs::write(dir.join("conf"), b"segment_size: 524288").unwrap();
    let store = Cmdb::open(&dir).unwrap();
    assert!(!dir.join("conf").exists() && !dir.join("blobs").exists());
    assert_eq!(store.list_cis(Some(CiClass::Computer)).unwrap().len(), 6);
    let _ = std::fs::remove_dir_all(&dir);
}
