//! Schema 1 and 2 (JSON CI records, every edge twice, a full copy of a CI per version) to
//! schema 3 (compact computer records, interned variants, history steps).
//!
//! Crash safety: the new spaces are filled while the old trees stay as they are and the
//! schema version still says 2; only when everything is written and flushed does the
//! version become 3, and only then are the old trees dropped. A migration interrupted
//! before the flip starts again from scratch at the next open (old store); one interrupted
//! after it finds version 3 and finishes dropping the old trees (new store). Never half.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::*;
use crate::model::*;

/// Trees of schema 2 that schema 3 replaces.
const LEGACY_TREES: [&str; 7] = [
    "cis",
    "ci_summaries",
    "rels",
    "rels_rev",
    "rel_counts",
    "history",
    "seen",
];

/// Meta keys of schema 3 that a restarted migration must forget.
const V3_META: [&[u8]; 2] = [b"next_num", b"next_variant"];

pub(crate) fn stored_schema(db: &sled::Db) -> Result<Option<u32>, StoreError> {
    let meta = db.open_tree("meta").map_err(io)?;
    match meta.get("schema_version").map_err(io)? {
        None => Ok(None),
        Some(v) => Ok(Some(u32::from_be_bytes(v.as_ref().try_into().map_err(
            |_| StoreError::Corrupt {
                key: "meta/schema_version".into(),
                message: "not a u32".into(),
            },
        )?))),
    }
}

pub(crate) fn drop_legacy_trees(db: &sled::Db) -> Result<(), StoreError> {
    let names: BTreeSet<Vec<u8>> = db.tree_names().into_iter().map(|n| n.to_vec()).collect();
    for t in LEGACY_TREES {
        if names.contains(t.as_bytes()) {
            db.drop_tree(t).map_err(io)?;
        }
    }
    Ok(())
}

fn json<T: serde::de::DeserializeOwned>(tree: &str, k: &[u8], v: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
        key: format!("{tree}/{}", String::from_utf8_lossy(k).replace('\0', "/")),
        message: e.to_string(),
    })
}

fn old_version(k: &[u8], v: &[u8]) -> Result<CiVersion, StoreError> {
    let raw = census_shared::wire::zstd_decompress_bounded(v, 256 * 1024 * 1024).map_err(|e| {
        StoreError::Corrupt {
            key: format!("history/{}", String::from_utf8_lossy(k).replace('\0', "/")),
            message: e.to_string(),
        }
    })?;
    json("history", k, &raw)
}

/// Migrates an older store to the current schema, logging progress.
pub(crate) fn to_current(store: &Cmdb, db: &sled::Db, found: u32) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    tracing::info!(
        from = found,
        to = STORE_SCHEMA_VERSION,
        "store migration starting"
    );
    // A migration interrupted before its end left partial new spaces: start them again.
    for space in Space::ALL {
        if space.name().starts_with("v3_") {
            store.backend.clear(space)?;
        }
    }
    for k in V3_META {
        store.backend.delete(Space::Meta, k)?;
    }
    let open = |name: &str| db.open_tree(name).map_err(io);
    let cis_tree = open("cis")?;
    let rels_tree = open("rels")?;
    let history_tree = open("history")?;
    let seen_tree = open("seen")?;

    // Every CI, grouped by the record that will hold it.
    let mut holders: BTreeMap<String, Vec<Ci>> = BTreeMap::new();
    let mut shared: Vec<Ci> = Vec::new();
    for r in cis_tree.iter() {
        let (k, v) = r.map_err(io)?;
        let ci: Ci = json("cis", &k, &v)?;
        if ci.owner.is_none() && ci.class.is_shared() {
            shared.push(ci);
        } else {
            let holder = ci.owner.clone().unwrap_or_else(|| ci.id.clone());
            holders.entry(holder).or_default().push(ci);
        }
    }
    let ids: Vec<&str> = shared.iter().map(|c| c.id.as_str()).collect();
    let nums = store.ensure_nums(&ids)?;
    for (ci, num) in shared.iter().zip(nums) {
        let rec = codec::CiRec::from_ci(ci, ci.first_seen);
        store.backend.put(
            Space::Shared,
            &codec::shared_key(ci.class, num),
            &codec::encode_packed(&rec)?,
        )?;
    }
    let total = holders.len();
    let mut steps_written = 0usize;
    for (done, (holder, cis)) in holders.iter().enumerate() {
        let members: BTreeSet<&str> = cis.iter().map(|c| c.id.as_str()).collect();
        // Each old version of the computer or a component, oldest first; versions written by
        // one ingest share their time and become one step.
        let mut versions: Vec<CiVersion> = Vec::new();
        for id in &members {
            let mut prefix = id.as_bytes().to_vec();
            prefix.push(0);
            for r in history_tree.scan_prefix(&prefix) {
                let (k, v) = r.map_err(io)?;
                versions.push(old_version(&k, &v)?);
            }
        }
        versions.sort_by(|a, b| {
            (a.valid_from, a.ci_id != *holder, &a.ci_id, a.version).cmp(&(
                b.valid_from,
                b.ci_id != *holder,
                &b.ci_id,
                b.version,
            ))
        });
        let mut edges_now: BTreeMap<String, Vec<Relationship>> = BTreeMap::new();
        let mut i = 0;
        while i < versions.len() {
            let at = versions[i].valid_from;
            let mut j = i;
            while j < versions.len() && versions[j].valid_from == at {
                j += 1;
            }
            let group = &versions[i..j];
            let record = group
                .iter()
                .find(|v| v.ci_id == *holder)
                .and_then(|v| v.change_record.clone());
            let mut puts = Vec::new();
            let mut edge_puts = Vec::new();
            let mut edge_deletes = Vec::new();
            for v in group {
                puts.push(v.ci.clone());
                let before = edges_now.remove(&v.ci_id).unwrap_or_default();
                let after: BTreeMap<&RelKey, &Relationship> =
                    v.relationships.iter().map(|r| (&r.key, r)).collect();
                for r in &before {
                    if !after.contains_key(&r.key) {
                        edge_deletes.push(r.key.clone());
                    }
                }
                edge_puts.extend(v.relationships.iter().cloned());
                edges_now.insert(v.ci_id.clone(), v.relationships.clone());
            }
            replay(
                store,
                &puts,
                &edge_puts,
                &edge_deletes,
                at,
                holder,
                record.as_deref(),
            )?;
            steps_written += 1;
            i = j;
        }
        // Then the current state: volatile facts and last seen, and whatever the history
        // did not hold (a store written before history kept every CI).
        let mut current_edges: Vec<Relationship> = Vec::new();
        let mut current_keys: BTreeSet<RelKey> = BTreeSet::new();
        for id in &members {
            let mut prefix = id.as_bytes().to_vec();
            prefix.push(0);
            for r in rels_tree.scan_prefix(&prefix) {
                let (k, v) = r.map_err(io)?;
                let rel: Relationship = json("rels", &k, &v)?;
                current_keys.insert(rel.key.clone());
                current_edges.push(rel);
            }
        }
        let stale: Vec<RelKey> = edges_now
            .values()
            .flatten()
            .map(|r| r.key.clone())
            .filter(|k| !current_keys.contains(k))
            .collect();
        let at = cis.iter().map(|c| c.last_seen).max().unwrap_or_default();
        replay(store, cis, &current_edges, &stale, at, holder, None)?;
        if let Some(v) = seen_tree.get(holder.as_bytes()).map_err(io)? {
            if let Some(num) = store.num_of(holder)? {
                store.backend.put(Space::Seen, &codec::num_key(num), &v)?;
            }
        }
        if (done + 1) % 1000 == 0 || done + 1 == total {
            tracing::info!(
                computers = done + 1,
                of = total,
                steps = steps_written,
                elapsed_s = started.elapsed().as_secs(),
                "store migration progress"
            );
        }
    }
    store.backend.flush()?;
    store.backend.put(
        Space::Meta,
        b"schema_version",
        &STORE_SCHEMA_VERSION.to_be_bytes(),
    )?;
    store.backend.flush()?;
    drop_legacy_trees(db)?;
    store.backend.flush()?;
    tracing::info!(
        from = found,
        to = STORE_SCHEMA_VERSION,
        computers = total,
        shared = shared.len(),
        steps = steps_written,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "store migrated"
    );
    Ok(())
}

/// An edge as ingest writes it now: install dates in whole seconds (schema 2 kept the
/// agent's nanoseconds; keeping them would make every package drift at the next snapshot).
fn normalized(r: &Relationship) -> Relationship {
    let mut r = r.clone();
    if r.key.kind == RelKind::Installs {
        if let Some(t) = r
            .attributes
            .get("install_date")
            .and_then(|v| v.as_str())
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        {
            let text = crate::reconcile::install_date(t.with_timezone(&Utc));
            r.attributes.insert("install_date".into(), text.into());
        }
    }
    r
}

/// Writes one step of a computer's past (or its present) through the same path ingest uses.
fn replay(
    store: &Cmdb,
    puts: &[Ci],
    edge_puts: &[Relationship],
    edge_deletes: &[RelKey],
    at: DateTime<Utc>,
    holder: &str,
    record: Option<&str>,
) -> Result<(), StoreError> {
    let link = record.map(|r| (holder, r));
    let edge_puts: Vec<Relationship> = edge_puts.iter().map(normalized).collect();
    let records = store.prepare_records(puts, &edge_puts, edge_deletes, at, link)?;
    transact::<(), StoreError>(store.backend.as_ref(), |tx| {
        for e in &records {
            Cmdb::write_encoded(tx, e, || io("a migration runs alone"))?;
        }
        Ok(())
    })
}
