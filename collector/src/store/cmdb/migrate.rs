//! A sled store of schema 1 or 2 (JSON CI records, every edge twice, a full copy of a CI
//! per version) into a redb store of schema 3 (compact computer records, interned variants,
//! history steps); a sled store of schema 3 is copied space by space.
//!
//! Crash safety: the new store is written to `census.redb.migrating` while the sled store
//! stays as it is. Only when everything is written and flushed is the file renamed to
//! `census.redb` (one atomic rename), and only then are sled's files removed. Interrupted
//! before the rename, the next open finds the old store and starts again (the partial
//! file is discarded); after it, the next open finds the new store and finishes removing
//! the old files. Old or new, never half.

use std::collections::{BTreeMap, BTreeSet};

use std::path::Path;

use chrono::{DateTime, Utc};

use super::*;
use crate::model::*;
use crate::store::redb_backend::RedbBackend;

/// Trees of schema 2 that schema 3 keeps byte for byte (their names are the spaces').
const KEPT_TREES: [Space; 21] = [
    Space::Meta,
    Space::EnrollmentTokens,
    Space::Agents,
    Space::AgentKeys,
    Space::AgentState,
    Space::Evidence,
    Space::Identity,
    Space::Conflicts,
    Space::ChangeRecords,
    Space::Removals,
    Space::Users,
    Space::ApiTokens,
    Space::NoiseRules,
    Space::PlannedChanges,
    Space::Audit,
    Space::Outbox,
    Space::Feed,
    Space::Webhooks,
    Space::Deliveries,
    Space::RecordRevisions,
    Space::Seen,
];

/// Records per transaction when copying a space.
const COPY_BATCH: usize = 10_000;

/// The files sled keeps in a store directory.
const SLED_FILES: [&str; 3] = ["conf", "db", "blobs"];

pub(crate) fn holds_sled(dir: &Path) -> bool {
    SLED_FILES[..2].iter().any(|f| dir.join(f).exists())
}

/// Removes sled's files from a store directory that a migration has finished with.
pub(crate) fn remove_sled_files(dir: &Path) -> Result<(), StoreError> {
    for f in SLED_FILES {
        let p = dir.join(f);
        if p.is_dir() {
            std::fs::remove_dir_all(&p).map_err(io)?;
        } else if p.exists() {
            std::fs::remove_file(&p).map_err(io)?;
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("snap.") {
                std::fs::remove_file(e.path()).map_err(io)?;
            }
        }
    }
    Ok(())
}

/// Copies a sled tree into a space of the new store, in batches of transactions.
fn copy_tree(tree: &sled::Tree, target: &Cmdb, space: Space) -> Result<usize, StoreError> {
    let mut batch: Vec<(sled::IVec, sled::IVec)> = Vec::with_capacity(COPY_BATCH);
    let mut copied = 0;
    let mut write = |batch: &mut Vec<(sled::IVec, sled::IVec)>| -> Result<(), StoreError> {
        transact::<(), StoreError>(target.backend.as_ref(), |tx| {
            for (k, v) in batch.iter() {
                tx.put(space, k, v)?;
            }
            Ok(())
        })?;
        copied += batch.len();
        batch.clear();
        Ok(())
    };
    for r in tree.iter() {
        batch.push(r.map_err(io)?);
        if batch.len() >= COPY_BATCH {
            write(&mut batch)?;
        }
    }
    write(&mut batch)?;
    Ok(copied)
}

/// Moves the sled store in `dir` into a new redb store there (see the module's note on
/// crash safety).
pub(crate) fn sled_to_redb(dir: &Path, cache_bytes: u64) -> Result<(), StoreError> {
    let sled = SledBackend::open(dir, cache_bytes)?;
    let db = sled.db().clone();
    let found = stored_schema(&db)?;
    let Some(found) = found else {
        // An empty sled directory (a store that never got its first write): nothing to keep.
        drop(sled);
        drop(db);
        return remove_sled_files(dir);
    };
    if found > STORE_SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            supported: STORE_SCHEMA_VERSION,
        });
    }
    let partial = dir.join(MIGRATING_FILE);
    if partial.exists() {
        std::fs::remove_file(&partial).map_err(io)?;
    }
    let backend = RedbBackend::open_file(&partial, cache_bytes)?;
    if found < STORE_SCHEMA_VERSION {
        // Postings are built anew from the old edges, in an embedded store's layout. A
        // store of the current schema is copied with the layout it has.
        backend.put(
            Space::Meta,
            codec::POSTINGS_META_KEY,
            &Postings::for_new_store(false).to_meta(),
        )?;
    }
    let target = Cmdb::over(Box::new(backend))?;
    let started = std::time::Instant::now();
    tracing::info!(from = found, to = STORE_SCHEMA_VERSION, dir = %dir.display(), "store migration to redb starting");
    if found < STORE_SCHEMA_VERSION {
        for space in KEPT_TREES {
            let n = copy_tree(&db.open_tree(space.name()).map_err(io)?, &target, space)?;
            tracing::info!(space = space.name(), records = n, "store migration: copied");
        }
        for k in [&b"next_num"[..], b"next_variant"] {
            target.backend.delete(Space::Meta, k)?;
        }
        to_current(&target, &db, found)?;
    } else {
        for space in Space::ALL {
            copy_tree(&db.open_tree(space.name()).map_err(io)?, &target, space)?;
        }
    }
    target.backend.put(
        Space::Meta,
        b"schema_version",
        &STORE_SCHEMA_VERSION.to_be_bytes(),
    )?;
    target.backend.flush()?;
    drop(target);
    drop(sled);
    drop(db);
    std::fs::rename(&partial, dir.join(crate::store::redb_backend::FILE)).map_err(io)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    remove_sled_files(dir)?;
    tracing::info!(
        from = found,
        to = STORE_SCHEMA_VERSION,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "store migrated to redb"
    );
    Ok(())
}

/// The new store's file while a migration writes it.
pub(crate) const MIGRATING_FILE: &str = "census.redb.migrating";

pub(crate) fn stored_schema(db: &sled::Db) -> Result<Option<u32>, StoreError> {
    let meta = db.open_tree("meta").map_err(io)?;
    match meta.get("schema_version").map_err(io)? {
        None => Ok(None),
        Some(v) => Ok(Some(schema_of(&v)?)),
    }
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

/// Writes the computers, components, edges and history of an older sled store into
/// `store` (schema 3), logging progress.
fn to_current(store: &Cmdb, db: &sled::Db, found: u32) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
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
    tracing::info!(
        from = found,
        to = STORE_SCHEMA_VERSION,
        computers = total,
        shared = shared.len(),
        steps = steps_written,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "store migration: computers and history written"
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
    let writes = super::machine::Writes {
        puts,
        edge_puts: &edge_puts,
        edge_deletes,
        installs: None,
    };
    let records = store.prepare_records(writes, at, link)?;
    let layout = store.postings();
    transact::<(), StoreError>(store.backend.as_ref(), |tx| {
        for e in &records {
            Cmdb::write_encoded(tx, layout, e, || io("a migration runs alone"))?;
        }
        Ok(())
    })
}
