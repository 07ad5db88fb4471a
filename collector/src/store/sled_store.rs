//! The embedded default backend: sled, one tree per record kind, JSON values (history
//! versions zstd-compressed), multi-tree serializable transactions for ingest.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::{Transactional, Tree};

use super::*;
use crate::parallel::in_parallel;

pub struct SledStore {
    db: sled::Db,
    /// Writers hold it shared; a backup holds it exclusively, so a backup is one
    /// consistent point in time while the collector keeps running.
    gate: std::sync::RwLock<()>,
    meta: Tree,
    tokens: Tree,
    agents: Tree,
    agent_keys: Tree,
    cis: Tree,
    /// ci_id -> [`CiSummary`] (name, status), written with every CI record: a package query
    /// orders thousands of computers by name without decoding their whole records.
    ci_summaries: Tree,
    rels: Tree,
    rels_rev: Tree,
    /// ci_id -> number of its outgoing edges (u64 BE), kept with every edge write: a CI's
    /// detail shows "200 of 1,002" without reading all 1,002.
    rel_counts: Tree,
    history: Tree,
    identity: Tree,
    conflicts: Tree,
    changes: Tree,
    users: Tree,
    bodies: Tree,
    /// ci_id -> last seen (i64 microseconds, big-endian): heartbeats touch only this.
    seen: Tree,
    /// agent_id -> hot state (last seq u64 BE, last seen i64 µs BE): a heartbeat rewrites 16
    /// bytes here instead of the agent's JSON record (sled copies a whole leaf on write).
    agent_state: Tree,
    noise: Tree,
    planned: Tree,
    /// seq (u64 BE) -> audit entry. Written only by `commit_people`, never rewritten.
    audit: Tree,
    /// generated id (u64 BE) -> queued event, until the sequencer numbers it.
    outbox: Tree,
    /// cursor (u64 BE) -> feed event.
    feed: Tree,
    deliveries: Tree,
    webhooks: Tree,
    /// ci_id \0 aspect \0 key -> recent removal (flap suppression).
    removals: Tree,
    api_tokens: Tree,
}

/// The [`PACKAGE_VARIANT_KEYS`] of an `installs` edge, borrowed from its stored JSON (no
/// allocation unless a value has escapes); the edge's other attributes are skipped.
#[derive(Debug, serde::Deserialize, PartialEq, Eq, Hash)]
struct PackageVariantView<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    source: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arch: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    publisher: Option<Cow<'a, str>>,
}

impl PackageVariantView<'_> {
    fn key(&self) -> VariantKey {
        [
            &self.name,
            &self.version,
            &self.source,
            &self.arch,
            &self.publisher,
        ]
        .map(|v| v.as_deref().map(str::to_string))
    }
}

/// A variant's values in the order of [`PACKAGE_VARIANT_KEYS`].
type VariantKey = [Option<String>; 5];

fn variant_attributes(key: &VariantKey) -> Attributes {
    PACKAGE_VARIANT_KEYS
        .iter()
        .zip(key)
        .filter_map(|(k, v)| Some((k.to_string(), Value::String(v.clone()?))))
        .collect()
}

/// An edge's attributes narrowed to [`PACKAGE_VARIANT_KEYS`] (text values only, as a
/// `software.*` condition reads them).
fn variant_of(edge: &Attributes) -> VariantKey {
    PACKAGE_VARIANT_KEYS.map(|k| edge.get(k).and_then(Value::as_str).map(str::to_string))
}

/// One slice's installs, numbering its own variants.
#[derive(Default)]
struct SliceInstalls {
    variants: Vec<VariantKey>,
    installs: Vec<(String, usize)>,
}

/// Below this many installs in a product's first slice, the other slices are read on the
/// calling thread too (the catalogue asks for many small products).
const MIN_INSTALLS_PER_SLICE_FOR_THREADS: usize = 250;

/// Eight key ranges that together cover exactly the keys starting with `lo` (which ends in
/// a 0 byte), split on the computer id's first digest digit: ids are `cmp_` + hex, so the
/// slices hold about the same number of installs. Any other id still falls in exactly one
/// slice; only the balance depends on the id format.
fn computer_slices(lo: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut end = lo.to_vec();
    if let Some(last) = end.last_mut() {
        *last = 1;
    }
    let cut = |digit: &str| [lo, b"cmp_", digit.as_bytes()].concat();
    let mut bounds = vec![lo.to_vec()];
    bounds.extend(["2", "4", "6", "8", "a", "c", "e"].map(cut));
    bounds.push(end);
    bounds
        .windows(2)
        .map(|w| (w[0].clone(), w[1].clone()))
        .collect()
}

/// An edge count as stored in `rel_counts` (0 for a malformed value: the detail then shows
/// what it lists).
fn decode_count(v: &[u8]) -> u64 {
    v.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// Writes a CI record and its summary (the only way CI records are written).
fn put_ci(cis: &TransactionalTree, summaries: &TransactionalTree, ci: &Ci) -> TxResult<()> {
    cis.insert(ci.id.as_bytes(), tx_encode(ci)?)?;
    let summary = CiSummary {
        name: ci.name.clone(),
        status: ci.status,
    };
    summaries.insert(ci.id.as_bytes(), tx_encode(&summary)?)?;
    Ok(())
}

/// An event waiting for its cursor.
#[derive(Debug, Serialize, serde::Deserialize)]
struct QueuedEvent {
    event_type: String,
    record_id: String,
    at: DateTime<Utc>,
}

#[derive(Debug, Default, Serialize, serde::Deserialize)]
struct AuditHead {
    seq: u64,
    hash: String,
}

fn removal_key(ci_id: &str, aspect: Aspect, key: &str) -> Vec<u8> {
    format!("{ci_id}\0{}\0{key}", aspect.as_str()).into_bytes()
}

/// Below this many reverse entries per worker, decoding stays on one thread.
const MIN_PARALLEL_DECODE: usize = 2000;

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(io)
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: e.to_string(),
    })
}

thread_local! {
    /// One compression context per thread: a fresh context per version allocates and
    /// initialises its tables again, which showed up in the ingest profile.
    static VERSION_COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn encode_version(v: &CiVersion) -> Result<Vec<u8>, StoreError> {
    let json = encode(v)?;
    VERSION_COMPRESSOR.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Compressor::new(3).map_err(io)?);
        }
        match slot.as_mut() {
            Some(c) => c.compress(&json).map_err(io),
            None => Err(io("zstd compressor unavailable")),
        }
    })
}

fn decode_version(key: &[u8], bytes: &[u8]) -> Result<CiVersion, StoreError> {
    let json =
        census_shared::wire::zstd_decompress_bounded(bytes, 256 * 1024 * 1024).map_err(|e| {
            StoreError::Corrupt {
                key: String::from_utf8_lossy(key).into_owned(),
                message: e.to_string(),
            }
        })?;
    decode(key, &json)
}

fn rel_key(k: &RelKey) -> Vec<u8> {
    format!(
        "{}\0{}\0{}\0{}",
        k.from,
        k.kind.as_str(),
        k.to,
        k.discriminator
    )
    .into_bytes()
}

fn rel_rev_key(k: &RelKey) -> Vec<u8> {
    format!(
        "{}\0{}\0{}\0{}",
        k.to,
        k.kind.as_str(),
        k.from,
        k.discriminator
    )
    .into_bytes()
}

/// The edge key inside a `rels_rev` key (to, kind, from, discriminator); `None` for a key
/// of another shape.
fn parse_reverse_key(k: &[u8]) -> Result<Option<RelKey>, StoreError> {
    let text = String::from_utf8_lossy(k);
    let parts: Vec<&str> = text.splitn(4, '\0').collect();
    let [to, kind, from, discriminator] = parts.as_slice() else {
        return Ok(None);
    };
    let kind = RelKind::from_name(kind).ok_or_else(|| StoreError::Corrupt {
        key: text.replace('\0', "/"),
        message: format!("unknown relationship kind '{kind}'"),
    })?;
    Ok(Some(RelKey {
        from: from.to_string(),
        kind,
        to: to.to_string(),
        discriminator: discriminator.to_string(),
    }))
}

fn history_key(ci_id: &str, version: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(ci_id.len() + 9);
    k.extend_from_slice(ci_id.as_bytes());
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn prefix(id: &str) -> Vec<u8> {
    let mut p = id.as_bytes().to_vec();
    p.push(0);
    p
}

fn encode_hot(seq: u64, seen: Option<DateTime<Utc>>) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&seq.to_be_bytes());
    b[8..].copy_from_slice(
        &seen
            .map(|t| t.timestamp_micros())
            .unwrap_or(0)
            .to_be_bytes(),
    );
    b
}

fn decode_hot(bytes: &[u8]) -> Option<(u64, Option<DateTime<Utc>>)> {
    let seq = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let micros = i64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some((
        seq,
        (micros != 0)
            .then(|| DateTime::<Utc>::from_timestamp_micros(micros))
            .flatten(),
    ))
}

/// The agent's last seq: the hot record when there is one, else the agent record's.
fn current_seq(agent: &Agent, hot: Option<&[u8]>) -> u64 {
    hot.and_then(decode_hot)
        .map(|(seq, _)| seq)
        .unwrap_or(agent.last_seq)
}

/// The trees one ingest transaction writes, as the transaction sees them.
struct IngestTrees<'a> {
    agents: &'a TransactionalTree,
    agent_state: &'a TransactionalTree,
    cis: &'a TransactionalTree,
    ci_summaries: &'a TransactionalTree,
    rels: &'a TransactionalTree,
    rels_rev: &'a TransactionalTree,
    rel_counts: &'a TransactionalTree,
    history: &'a TransactionalTree,
    identity: &'a TransactionalTree,
    conflicts: &'a TransactionalTree,
    changes: &'a TransactionalTree,
    bodies: &'a TransactionalTree,
    removals: &'a TransactionalTree,
    outbox: &'a TransactionalTree,
}

fn queue_event(
    outbox: &TransactionalTree,
    event_type: &str,
    record_id: &str,
    at: DateTime<Utc>,
) -> TxResult<()> {
    let id = outbox.generate_id()?;
    let event = QueuedEvent {
        event_type: event_type.into(),
        record_id: record_id.into(),
        at,
    };
    outbox.insert(&id.to_be_bytes(), tx_encode(&event)?)?;
    Ok(())
}

type TxResult<T> = Result<T, ConflictableTransactionError<CommitError>>;

fn abort<T>(e: CommitError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn tx_decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> TxResult<T> {
    decode(key, bytes).or_else(|e| abort(CommitError::Store(e)))
}

fn tx_encode<T: Serialize>(v: &T) -> TxResult<Vec<u8>> {
    encode(v).or_else(|e| abort(CommitError::Store(e)))
}

fn map_tx<T>(r: Result<T, TransactionError<CommitError>>) -> Result<T, CommitError> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => CommitError::Store(io(e)),
    })
}

const BACKUP_MAGIC: &[u8] = b"CENSUS-BACKUP-1\n";

/// The page cache a store opens with unless told otherwise.
pub const DEFAULT_CACHE_BYTES: u64 = 256 * 1024 * 1024;

impl SledStore {
    /// A shared hold on the write gate. A poisoned gate (a writer panicked) still orders
    /// writes against backups, so the poison is ignored.
    fn writing(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Restores a backup into `dir`, which must not hold a store. The backup's checksum is
    /// verified before the store is kept; on any error the partial store is removed.
    pub fn restore(dir: &Path, input: &mut dyn std::io::Read) -> Result<BackupSummary, StoreError> {
        if dir.join("conf").exists() || dir.join("db").exists() {
            return Err(StoreError::Io(format!(
                "{} already holds a store; restore into an empty data directory",
                dir.display()
            )));
        }
        let result = Self::restore_into(dir, input);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(dir);
        }
        result
    }

    fn restore_into(
        dir: &Path,
        input: &mut dyn std::io::Read,
    ) -> Result<BackupSummary, StoreError> {
        use sha2::{Digest, Sha256};
        use std::io::Read;
        let bad = |m: &str| StoreError::Corrupt {
            key: "backup".into(),
            message: m.into(),
        };
        let mut z = zstd::stream::read::Decoder::new(input).map_err(io)?;
        let mut hasher = Sha256::new();
        let mut read = |n: usize, hash: bool, z: &mut dyn Read| -> Result<Vec<u8>, StoreError> {
            let mut buf = vec![0u8; n];
            z.read_exact(&mut buf)
                .map_err(|e| bad(&format!("truncated: {e}")))?;
            if hash {
                hasher.update(&buf);
            }
            Ok(buf)
        };
        let magic = read(BACKUP_MAGIC.len(), true, &mut z)?;
        if magic != BACKUP_MAGIC {
            return Err(bad("not a Census backup"));
        }
        let db = sled::Config::new().path(dir).open().map_err(io)?;
        let mut summary = BackupSummary::default();
        let mut tree: Option<sled::Tree> = None;
        const MAX_FIELD: usize = 1 << 30;
        loop {
            let tag = read(1, true, &mut z)?[0];
            match tag {
                1 => {
                    let len =
                        u32::from_be_bytes(read(4, true, &mut z)?.try_into().unwrap_or([0; 4]))
                            as usize;
                    let name = read(len.min(MAX_FIELD), true, &mut z)?;
                    tree = Some(db.open_tree(name).map_err(io)?);
                    summary.trees += 1;
                }
                2 => {
                    let t = tree.as_ref().ok_or_else(|| bad("record before any tree"))?;
                    let klen =
                        u32::from_be_bytes(read(4, true, &mut z)?.try_into().unwrap_or([0; 4]))
                            as usize;
                    let k = read(klen.min(MAX_FIELD), true, &mut z)?;
                    let vlen =
                        u32::from_be_bytes(read(4, true, &mut z)?.try_into().unwrap_or([0; 4]))
                            as usize;
                    let v = read(vlen.min(MAX_FIELD), true, &mut z)?;
                    t.insert(k, v).map_err(io)?;
                    summary.records += 1;
                }
                3 => break,
                _ => return Err(bad("unknown record tag")),
            }
        }
        let expected = read(32, false, &mut z)?;
        if hasher.finalize().as_slice() != expected.as_slice() {
            return Err(bad("checksum mismatch: the backup is damaged"));
        }
        // The same check as any start: a backup from a newer collector is refused.
        let found = db
            .open_tree("meta")
            .and_then(|m| m.get("schema_version"))
            .map_err(io)?
            .and_then(|v| v.as_ref().try_into().ok().map(u32::from_be_bytes))
            .ok_or_else(|| bad("the backup has no schema version"))?;
        if found > STORE_SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                found,
                supported: STORE_SCHEMA_VERSION,
            });
        }
        db.flush().map_err(io)?;
        Ok(summary)
    }

    /// Opens (or creates) the store in `dir`, refusing a newer schema.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Opens with a page cache of at most `cache_bytes` (sled's own default is 1 GiB, which
    /// a collector's RSS grows into during a discovery wave).
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            // Durability comes from explicit flushes before each ack (group commit); the
            // background flusher only bounds how much an unacknowledged write can lose.
            .flush_every_ms(Some(1000))
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref ioe) if ioe.kind() == std::io::ErrorKind::WouldBlock => {
                    StoreError::Locked(dir.display().to_string())
                }
                sled::Error::Io(ref ioe) if ioe.to_string().contains("lock") => {
                    StoreError::Locked(dir.display().to_string())
                }
                other => io(other),
            })?;
        let open = |name: &str| db.open_tree(name).map_err(io);
        let store = SledStore {
            meta: open("meta")?,
            tokens: open("tokens")?,
            agents: open("agents")?,
            agent_keys: open("agent_keys")?,
            cis: open("cis")?,
            ci_summaries: open("ci_summaries")?,
            rels: open("rels")?,
            rels_rev: open("rels_rev")?,
            rel_counts: open("rel_counts")?,
            history: open("history")?,
            identity: open("identity")?,
            conflicts: open("conflicts")?,
            changes: open("changes")?,
            users: open("users")?,
            bodies: open("bodies")?,
            seen: open("seen")?,
            agent_state: open("agent_state")?,
            noise: open("noise")?,
            planned: open("planned")?,
            audit: open("audit")?,
            outbox: open("outbox")?,
            feed: open("feed")?,
            deliveries: open("deliveries")?,
            webhooks: open("webhooks")?,
            removals: open("removals")?,
            api_tokens: open("api_tokens")?,
            gate: std::sync::RwLock::new(()),
            db,
        };
        match store.meta.get("schema_version").map_err(io)? {
            None => {
                store
                    .meta
                    .insert("schema_version", &STORE_SCHEMA_VERSION.to_be_bytes())
                    .map_err(io)?;
                store.db.flush().map_err(io)?;
            }
            Some(v) => {
                let found =
                    u32::from_be_bytes(v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                        key: "meta/schema_version".into(),
                        message: "not a u32".into(),
                    })?);
                if found > STORE_SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema {
                        found,
                        supported: STORE_SCHEMA_VERSION,
                    });
                }
                if found < 2 {
                    store.migrate_to_schema_2()?;
                }
            }
        }
        Ok(store)
    }

    /// Schema 1 -> 2: a summary per CI record and an outgoing edge count per CI. Nothing
    /// else writes while the store opens; the version is raised only after both are
    /// durable, so an interrupted migration runs again at the next start.
    fn migrate_to_schema_2(&self) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let mut cis = 0usize;
        for r in self.cis.iter() {
            let (k, v) = r.map_err(io)?;
            let summary: CiSummary = decode(&k, &v)?;
            self.ci_summaries
                .insert(&k, encode(&summary)?)
                .map_err(io)?;
            cis += 1;
        }
        self.rel_counts.clear().map_err(io)?;
        let (counts, edges) = self.count_edges_by_source(&mut |_| Ok(()))?;
        for (id, n) in counts {
            self.rel_counts.insert(id, &n.to_be_bytes()).map_err(io)?;
        }
        self.db.flush().map_err(io)?;
        self.meta
            .insert("schema_version", &2u32.to_be_bytes())
            .map_err(io)?;
        self.db.flush().map_err(io)?;
        tracing::info!(
            cis,
            edges,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "store schema 1 -> 2: CI summaries and edge counts written"
        );
        Ok(())
    }

    /// Outgoing edges per source CI, counted from `rels`, and the number of edges; `visit`
    /// sees every edge key on the way (the consistency check's one pass over the edges).
    fn count_edges_by_source(
        &self,
        visit: &mut dyn FnMut(&[u8]) -> Result<(), StoreError>,
    ) -> Result<(BTreeMap<Vec<u8>, u64>, usize), StoreError> {
        let mut counts: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        let mut edges = 0usize;
        for k in self.rels.iter().keys() {
            let k = k.map_err(io)?;
            visit(&k)?;
            let from = k.split(|&b| b == 0).next().unwrap_or_default();
            edges += 1;
            // Keys are ordered by source CI: one map entry per run.
            match counts.last_entry() {
                Some(mut last) if last.key().as_slice() == from => *last.get_mut() += 1,
                _ => {
                    counts.insert(from.to_vec(), 1);
                }
            }
        }
        Ok((counts, edges))
    }

    /// The hot state (last seq, last seen) over the agent record.
    fn overlay_hot(&self, agent: &mut Agent) -> Result<(), StoreError> {
        if let Some(v) = self.agent_state.get(agent.id.as_bytes()).map_err(io)? {
            let (seq, seen) = decode_hot(&v).ok_or_else(|| StoreError::Corrupt {
                key: format!("agent_state/{}", agent.id),
                message: "not 16 bytes".into(),
            })?;
            agent.last_seq = seq;
            if seen.is_some() {
                agent.last_seen = seen;
            }
        }
        Ok(())
    }

    /// A heartbeat's last-seen time, when later than the CI record's.
    fn overlay_seen(&self, ci: &mut Ci) -> Result<(), StoreError> {
        if ci.class != CiClass::Computer {
            return Ok(());
        }
        if let Some(v) = self.seen.get(ci.id.as_bytes()).map_err(io)? {
            let micros =
                i64::from_be_bytes(v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    key: format!("seen/{}", ci.id),
                    message: "not an i64".into(),
                })?);
            if let Some(at) = DateTime::<Utc>::from_timestamp_micros(micros) {
                if at > ci.last_seen {
                    ci.last_seen = at;
                }
            }
        }
        Ok(())
    }

    fn scan_values<T: DeserializeOwned>(tree: &Tree) -> Result<Vec<T>, StoreError> {
        tree.iter()
            .map(|r| {
                let (k, v) = r.map_err(io)?;
                decode(&k, &v)
            })
            .collect()
    }

    /// Records of a tree keyed by a big-endian number, after `after`, at most `limit`.
    fn numbered_after<T: DeserializeOwned>(
        tree: &Tree,
        after: u64,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        tree.range(after.saturating_add(1).to_be_bytes()..)
            .take(limit)
            .map(|r| {
                let (k, v) = r.map_err(io)?;
                decode(&k, &v)
            })
            .collect()
    }

    fn get_json<T: DeserializeOwned>(tree: &Tree, key: &[u8]) -> Result<Option<T>, StoreError> {
        match tree.get(key).map_err(io)? {
            Some(v) => Ok(Some(decode(key, &v)?)),
            None => Ok(None),
        }
    }

    /// Reverse entries (to, kind, from, discriminator -> attributes) back into edges.
    fn decode_reverse(
        &self,
        entries: &[(sled::IVec, sled::IVec)],
    ) -> Result<Vec<Relationship>, StoreError> {
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let Some(key) = parse_reverse_key(k)? else {
                continue;
            };
            if v.is_empty() {
                // Written before reverse entries carried attributes: look the edge up.
                out.extend(Self::get_json::<Relationship>(&self.rels, &rel_key(&key))?);
            } else {
                out.push(Relationship {
                    key,
                    attributes: decode(k, v)?,
                });
            }
        }
        Ok(out)
    }

    /// The installs in one slice of a product's reverse entries (`lo` is the product's
    /// `installs` prefix).
    fn installs_in(
        &self,
        lo: &[u8],
        slice: &(Vec<u8>, Vec<u8>),
    ) -> Result<SliceInstalls, StoreError> {
        let raw: Vec<(sled::IVec, sled::IVec)> = self
            .rels_rev
            .range(slice.0.as_slice()..slice.1.as_slice())
            .collect::<Result<_, _>>()
            .map_err(io)?;
        let mut out = SliceInstalls::default();
        // Thousands of installs share a handful of variants: intern them borrowed from the
        // stored bytes, and own each variant once.
        let mut borrowed: HashMap<PackageVariantView<'_>, usize> = HashMap::new();
        let mut owned: HashMap<VariantKey, usize> = HashMap::new();
        for (k, v) in &raw {
            let rest = &k[lo.len()..];
            let Some(end) = rest.iter().position(|&b| b == 0) else {
                continue;
            };
            let computer = String::from_utf8_lossy(&rest[..end]).into_owned();
            let at = match serde_json::from_slice::<PackageVariantView<'_>>(v) {
                Ok(view) => match borrowed.get(&view) {
                    Some(&at) => at,
                    None => {
                        out.variants.push(view.key());
                        borrowed.insert(view, out.variants.len() - 1);
                        out.variants.len() - 1
                    }
                },
                // Empty (written before reverse entries carried attributes) or a value of
                // an unexpected type: the whole edge, projected.
                Err(_) => {
                    let Some(key) = parse_reverse_key(k)? else {
                        continue;
                    };
                    let Some(edge) = Self::get_json::<Relationship>(&self.rels, &rel_key(&key))?
                    else {
                        continue;
                    };
                    *owned
                        .entry(variant_of(&edge.attributes))
                        .or_insert_with_key(|key| {
                            out.variants.push(key.clone());
                            out.variants.len() - 1
                        })
                }
            };
            out.installs.push((computer, at));
        }
        Ok(out)
    }

    fn relationships_with_prefix(&self, id: &str) -> Result<Vec<Relationship>, StoreError> {
        self.rels
            .scan_prefix(prefix(id))
            .map(|r| {
                let (k, v) = r.map_err(io)?;
                decode(&k, &v)
            })
            .collect()
    }

    fn apply_ingest(c: &IngestCommit, t: &IngestTrees<'_>) -> TxResult<()> {
        let key = c.agent_id.as_bytes();
        let Some(raw) = t.agents.get(key)? else {
            return abort(CommitError::AgentGone(c.agent_id.clone()));
        };
        let mut agent: Agent = tx_decode(key, &raw)?;
        if agent.is_revoked() {
            return abort(CommitError::AgentGone(c.agent_id.clone()));
        }
        let current = current_seq(&agent, t.agent_state.get(key)?.as_deref());
        if current != c.expected_last_seq {
            return abort(CommitError::SeqMoved {
                expected: c.expected_last_seq,
                current,
            });
        }
        for (ik, ci_id) in &c.identity_claims {
            let k = ik.encoded();
            match t.identity.get(k.as_bytes())? {
                Some(existing) if existing.as_ref() != ci_id.as_bytes() => {
                    return abort(CommitError::IdentityRace(k.replace('\0', ":")));
                }
                Some(_) => {}
                None => {
                    t.identity.insert(k.as_bytes(), ci_id.as_bytes())?;
                }
            }
        }
        agent.last_seq = c.new_seq;
        agent.last_seen = Some(c.seen_at);
        if c.content_hash.is_some() {
            agent.last_content_hash = c.content_hash.clone();
        }
        if c.clock_skew_seconds.is_some() {
            agent.clock_skew_seconds = c.clock_skew_seconds;
        }
        if c.ci_id.is_some() {
            agent.ci_id = c.ci_id.clone();
        }
        if c.identification.is_some() {
            agent.identification = c.identification.clone();
        }
        t.agents.insert(key, tx_encode(&agent)?)?;
        t.agent_state
            .insert(key, &encode_hot(c.new_seq, Some(c.seen_at)))?;
        if let Some(old) = &c.supersedes {
            if let Some(raw) = t.agents.get(old.as_bytes())? {
                let mut old_agent: Agent = tx_decode(old.as_bytes(), &raw)?;
                old_agent.superseded_by = Some(c.agent_id.clone());
                t.agents.insert(old.as_bytes(), tx_encode(&old_agent)?)?;
            }
        }
        for ci in &c.shared_ci_inserts {
            if t.cis.get(ci.id.as_bytes())?.is_none() {
                put_ci(t.cis, t.ci_summaries, ci)?;
            }
        }
        for ci in &c.ci_puts {
            put_ci(t.cis, t.ci_summaries, ci)?;
        }
        // Edges added or removed per source CI (inserts and removes return the previous
        // value, so this costs no extra read).
        let mut count_changes: BTreeMap<&str, i64> = BTreeMap::new();
        for k in &c.relationship_deletes {
            if t.rels.remove(rel_key(k))?.is_some() {
                *count_changes.entry(&k.from).or_default() -= 1;
            }
            t.rels_rev.remove(rel_rev_key(k))?;
        }
        for r in &c.relationship_puts {
            if t.rels.insert(rel_key(&r.key), tx_encode(r)?)?.is_none() {
                *count_changes.entry(&r.key.from).or_default() += 1;
            }
            // The reverse entry carries the edge's attributes so "who installs X" is one
            // prefix scan, not a scan plus a lookup per edge (entries written before this
            // are empty and fall back to the lookup).
            t.rels_rev
                .insert(rel_rev_key(&r.key), tx_encode(&r.attributes)?)?;
        }
        for (from, change) in count_changes {
            if change == 0 {
                continue;
            }
            let before = t
                .rel_counts
                .get(from.as_bytes())?
                .map_or(0, |v| decode_count(&v));
            let after = before.saturating_add_signed(change);
            if after == 0 {
                t.rel_counts.remove(from.as_bytes())?;
            } else {
                t.rel_counts.insert(from.as_bytes(), &after.to_be_bytes())?;
            }
        }
        for v in &c.history {
            let bytes = encode_version(v).or_else(|e| abort(CommitError::Store(e)))?;
            t.history.insert(history_key(&v.ci_id, v.version), bytes)?;
        }
        if let Some(conflict) = &c.conflict {
            if t.conflicts.get(conflict.id.as_bytes())?.is_none() {
                t.conflicts
                    .insert(conflict.id.as_bytes(), tx_encode(conflict)?)?;
            }
        }
        if let Some(record) = &c.change_record {
            t.changes.insert(record.id.as_bytes(), tx_encode(record)?)?;
            queue_event(t.outbox, "change_record.created", &record.id, c.seen_at)?;
        }
        if let Some(ci_id) = &c.ci_id {
            for (aspect, key) in &c.removals_cleared {
                t.removals.remove(removal_key(ci_id, *aspect, key))?;
            }
            for r in &c.removals_put {
                t.removals
                    .insert(removal_key(ci_id, r.aspect, &r.key), tx_encode(r)?)?;
            }
        }
        if let Some(body) = &c.body {
            t.bodies.insert(key, body.as_slice())?;
        }
        Ok(())
    }
}

impl Store for SledStore {
    fn check_consistency(&self) -> Result<ConsistencyReport, StoreError> {
        // Exclusive, like a backup: a commit between reading a CI and its summary would
        // otherwise show as a disagreement that is not there.
        let _exclusive = self.gate.write().unwrap_or_else(|p| p.into_inner());
        let mut report = ConsistencyReport::default();
        let shown = |k: &[u8]| String::from_utf8_lossy(k).replace('\0', "/");
        for r in self.cis.iter() {
            let (k, v) = r.map_err(io)?;
            report.cis += 1;
            let wanted: CiSummary = decode(&k, &v)?;
            match self.ci_summaries.get(&k).map_err(io)? {
                None => report.problem(format!("ci_summaries/{}: missing", shown(&k))),
                Some(s) if decode::<CiSummary>(&k, &s)? != wanted => report.problem(format!(
                    "ci_summaries/{}: not the CI's name and status",
                    shown(&k)
                )),
                Some(_) => {}
            }
        }
        for k in self.ci_summaries.iter().keys() {
            let k = k.map_err(io)?;
            if !self.cis.contains_key(&k).map_err(io)? {
                report.problem(format!("ci_summaries/{}: no such CI", shown(&k)));
            }
        }
        let (counts, edges) = self.count_edges_by_source(&mut |k| {
            let parts: Vec<&[u8]> = k.splitn(4, |&b| b == 0).collect();
            if let [from, kind, to, discriminator] = parts.as_slice() {
                let reverse = [*to, kind, from, discriminator].join(&0u8);
                if !self.rels_rev.contains_key(&reverse).map_err(io)? {
                    report.problem(format!("rels_rev/{}: missing", shown(&reverse)));
                }
            }
            Ok(())
        })?;
        let reverse_entries = self.rels_rev.len();
        report.edges = edges;
        if reverse_entries != edges {
            report.problem(format!(
                "rels_rev: {reverse_entries} entries for {edges} edges"
            ));
        }
        let mut stored: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        for r in self.rel_counts.iter() {
            let (k, v) = r.map_err(io)?;
            stored.insert(k.to_vec(), decode_count(&v));
        }
        for (id, n) in &counts {
            let found = stored.remove(id).unwrap_or(0);
            if found != *n {
                report.problem(format!(
                    "rel_counts/{}: says {found}, counted {n}",
                    shown(id)
                ));
            }
        }
        for (id, found) in stored {
            report.problem(format!(
                "rel_counts/{}: says {found}, counted 0",
                shown(&id)
            ));
        }
        Ok(report)
    }

    fn schema_version(&self) -> Result<u32, StoreError> {
        let v = self
            .meta
            .get("schema_version")
            .map_err(io)?
            .ok_or_else(|| StoreError::Corrupt {
                key: "meta/schema_version".into(),
                message: "missing".into(),
            })?;
        Ok(u32::from_be_bytes(v.as_ref().try_into().map_err(|_| {
            StoreError::Corrupt {
                key: "meta/schema_version".into(),
                message: "not a u32".into(),
            }
        })?))
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.meta
            .insert("readyz", &Utc::now().timestamp().to_be_bytes())
            .map_err(io)?;
        self.meta.remove("readyz").map_err(io)?;
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(io)
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(io)
    }

    fn put_token(&self, token: &EnrollmentToken) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.tokens
            .insert(token.secret_hash.as_bytes(), encode(token)?)
            .map_err(io)?;
        self.flush()
    }

    fn list_tokens(&self) -> Result<Vec<EnrollmentToken>, StoreError> {
        let mut t: Vec<EnrollmentToken> = Self::scan_values(&self.tokens)?;
        t.sort_by_key(|t| t.created_at);
        Ok(t)
    }

    fn revoke_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let _writing = self.writing();
        for token in self.list_tokens()? {
            if token.id == id {
                let mut t = token;
                if t.revoked_at.is_none() {
                    t.revoked_at = Some(at);
                }
                self.tokens
                    .insert(t.secret_hash.as_bytes(), encode(&t)?)
                    .map_err(io)?;
                self.flush()?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn enroll(
        &self,
        secret_hash: &str,
        agent: &Agent,
        now: DateTime<Utc>,
    ) -> Result<(), EnrollError> {
        let _writing = self.writing();
        let store_err = |e: StoreError| EnrollError::Store(e.to_string());
        let result =
            (&self.tokens, &self.agents, &self.agent_keys).transaction(|(tokens, agents, keys)| {
                let Some(raw) = tokens.get(secret_hash.as_bytes())? else {
                    return Err(ConflictableTransactionError::Abort(
                        EnrollError::UnknownToken,
                    ));
                };
                let mut token: EnrollmentToken = decode(secret_hash.as_bytes(), &raw)
                    .map_err(|e| ConflictableTransactionError::Abort(store_err(e)))?;
                if token.revoked_at.is_some() {
                    return Err(ConflictableTransactionError::Abort(EnrollError::Revoked));
                }
                if token.expires_at <= now {
                    return Err(ConflictableTransactionError::Abort(EnrollError::Expired(
                        token.expires_at,
                    )));
                }
                if token.uses >= token.max_uses {
                    return Err(ConflictableTransactionError::Abort(EnrollError::Exhausted(
                        token.max_uses,
                    )));
                }
                if let Some(existing) = keys.get(agent.public_key.as_bytes())? {
                    return Err(ConflictableTransactionError::Abort(EnrollError::KeyInUse(
                        String::from_utf8_lossy(&existing).into_owned(),
                    )));
                }
                token.uses += 1;
                let tok = encode(&token)
                    .map_err(|e| ConflictableTransactionError::Abort(store_err(e)))?;
                let ag =
                    encode(agent).map_err(|e| ConflictableTransactionError::Abort(store_err(e)))?;
                tokens.insert(secret_hash.as_bytes(), tok)?;
                agents.insert(agent.id.as_bytes(), ag)?;
                keys.insert(agent.public_key.as_bytes(), agent.id.as_bytes())?;
                Ok(())
            });
        match result {
            Ok(()) => self.flush().map_err(store_err),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(EnrollError::Store(e.to_string())),
        }
    }

    fn get_agent(&self, id: &str) -> Result<Option<Agent>, StoreError> {
        let mut agent: Option<Agent> = Self::get_json(&self.agents, id.as_bytes())?;
        if let Some(a) = agent.as_mut() {
            self.overlay_hot(a)?;
        }
        Ok(agent)
    }

    fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        let mut a: Vec<Agent> = Self::scan_values(&self.agents)?;
        for agent in a.iter_mut() {
            self.overlay_hot(agent)?;
        }
        a.sort_by_key(|a| a.enrolled_at);
        Ok(a)
    }

    fn revoke_agent(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let _writing = self.writing();
        let r = self.agents.transaction(|agents| {
            let Some(raw) = agents.get(id.as_bytes())? else {
                return Ok(false);
            };
            let mut agent: Agent = tx_decode(id.as_bytes(), &raw)?;
            if agent.revoked_at.is_none() {
                agent.revoked_at = Some(at);
            }
            agents.insert(id.as_bytes(), tx_encode(&agent)?)?;
            Ok(true)
        });
        let found = map_tx(r).map_err(|e| io(e.to_string()))?;
        self.flush()?;
        Ok(found)
    }

    fn commit_heartbeat(
        &self,
        agent_id: &str,
        expected_last_seq: u64,
        seq: u64,
        at: DateTime<Utc>,
    ) -> Result<(), CommitError> {
        let _writing = self.writing();
        let r = (&self.agents, &self.agent_state, &self.seen).transaction(
            |(agents, agent_state, seen)| {
                let key = agent_id.as_bytes();
                let Some(raw) = agents.get(key)? else {
                    return abort(CommitError::AgentGone(agent_id.to_string()));
                };
                let agent: Agent = tx_decode(key, &raw)?;
                if agent.is_revoked() {
                    return abort(CommitError::AgentGone(agent_id.to_string()));
                }
                let current = current_seq(&agent, agent_state.get(key)?.as_deref());
                if current != expected_last_seq {
                    return abort(CommitError::SeqMoved {
                        expected: expected_last_seq,
                        current,
                    });
                }
                agent_state.insert(key, &encode_hot(seq, Some(at)))?;
                // A superseded agent's CI belongs to its successor: its heartbeats are
                // recorded on the agent, never on the CI.
                if let (Some(ci_id), None) = (&agent.ci_id, &agent.superseded_by) {
                    seen.insert(ci_id.as_bytes(), &at.timestamp_micros().to_be_bytes())?;
                }
                Ok(())
            },
        );
        map_tx(r)
    }

    fn commit_ingest(&self, c: &IngestCommit) -> Result<(), CommitError> {
        let _writing = self.writing();
        let trees = (
            &self.agents,
            &self.agent_state,
            &self.cis,
            &self.ci_summaries,
            &self.rels,
            &self.rels_rev,
            &self.rel_counts,
            &self.history,
            &self.identity,
            &self.conflicts,
            &self.changes,
            &self.bodies,
            &self.removals,
            &self.outbox,
        );
        let r = trees.transaction(
            |(
                agents,
                agent_state,
                cis,
                ci_summaries,
                rels,
                rels_rev,
                rel_counts,
                history,
                identity,
                conflicts,
                changes,
                bodies,
                removals,
                outbox,
            )| {
                let trees = IngestTrees {
                    agents,
                    agent_state,
                    cis,
                    ci_summaries,
                    rels,
                    rels_rev,
                    rel_counts,
                    history,
                    identity,
                    conflicts,
                    changes,
                    bodies,
                    removals,
                    outbox,
                };
                Self::apply_ingest(c, &trees)
            },
        );
        map_tx(r)
    }

    fn set_ci_status(
        &self,
        id: &str,
        expected_version: u64,
        status: CiStatus,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let _writing = self.writing();
        let relationships = self.relationships_with_prefix(id)?;
        let r = (&self.cis, &self.ci_summaries, &self.history).transaction(
            |(cis, ci_summaries, history)| {
                let Some(raw) = cis.get(id.as_bytes())? else {
                    return Ok(false);
                };
                let mut ci: Ci = tx_decode(id.as_bytes(), &raw)?;
                if ci.version != expected_version || ci.status == status {
                    return Ok(false);
                }
                ci.status = status;
                ci.version += 1;
                let version = CiVersion {
                    ci_id: id.to_string(),
                    version: ci.version,
                    valid_from: at,
                    ci: ci.clone(),
                    relationships: relationships.clone(),
                    change_record: None,
                };
                let bytes = encode_version(&version).or_else(|e| abort(CommitError::Store(e)))?;
                history.insert(history_key(id, ci.version), bytes)?;
                put_ci(cis, ci_summaries, &ci)?;
                Ok(true)
            },
        );
        let changed = map_tx(r).map_err(|e| io(e.to_string()))?;
        if changed {
            self.flush()?;
        }
        Ok(changed)
    }

    fn get_ci(&self, id: &str) -> Result<Option<Ci>, StoreError> {
        let mut ci: Option<Ci> = Self::get_json(&self.cis, id.as_bytes())?;
        if let Some(ci) = ci.as_mut() {
            self.overlay_seen(ci)?;
        }
        Ok(ci)
    }

    fn ci_summary(&self, id: &str) -> Result<Option<CiSummary>, StoreError> {
        match Self::get_json(&self.ci_summaries, id.as_bytes())? {
            Some(summary) => Ok(Some(summary)),
            // Every CI write writes its summary (schema 2, backfilled on open): a miss is
            // an unknown id, answered by the record itself to stay correct regardless.
            None => Self::get_json(&self.cis, id.as_bytes()),
        }
    }

    fn list_cis(&self, class: Option<CiClass>) -> Result<Vec<Ci>, StoreError> {
        let scan = match class {
            Some(c) => self.cis.scan_prefix(format!("{}_", c.id_prefix())),
            None => self.cis.iter(),
        };
        scan.map(|r| {
            let (k, v) = r.map_err(io)?;
            let mut ci: Ci = decode(&k, &v)?;
            self.overlay_seen(&mut ci)?;
            Ok(ci)
        })
        .collect()
    }

    fn scan_cis(
        &self,
        class: CiClass,
        visit: &mut dyn FnMut(Ci) -> bool,
    ) -> Result<(), StoreError> {
        for r in self.cis.scan_prefix(format!("{}_", class.id_prefix())) {
            let (k, v) = r.map_err(io)?;
            let mut ci: Ci = decode(&k, &v)?;
            self.overlay_seen(&mut ci)?;
            if !visit(ci) {
                break;
            }
        }
        Ok(())
    }

    fn owned_state(&self, computer_id: &str) -> Result<OwnedState, StoreError> {
        let Some(computer) = self.get_ci(computer_id)? else {
            return Ok(OwnedState::default());
        };
        let mut relationships = self.relationships_with_prefix(computer_id)?;
        let mut components = Vec::new();
        let mut frontier: Vec<String> = relationships
            .iter()
            .filter(|r| r.key.kind == RelKind::Has)
            .map(|r| r.key.to.clone())
            .collect();
        while let Some(id) = frontier.pop() {
            let Some(ci) = self.get_ci(&id)? else {
                continue;
            };
            if ci.owner.as_deref() != Some(computer_id) {
                continue;
            }
            let out = self.relationships_with_prefix(&id)?;
            frontier.extend(
                out.iter()
                    .filter(|r| r.key.kind == RelKind::HasAddress)
                    .map(|r| r.key.to.clone()),
            );
            relationships.extend(out);
            components.push(ci);
        }
        Ok(OwnedState {
            computer: Some(computer),
            components,
            relationships,
        })
    }

    fn relationships_from(&self, id: &str) -> Result<Vec<Relationship>, StoreError> {
        self.relationships_with_prefix(id)
    }

    fn relationships_from_page(
        &self,
        id: &str,
        limit: usize,
    ) -> Result<(Vec<Relationship>, usize), StoreError> {
        let page = self
            .rels
            .scan_prefix(prefix(id))
            .take(limit)
            .map(|r| {
                let (k, v) = r.map_err(io)?;
                decode(&k, &v)
            })
            .collect::<Result<Vec<Relationship>, StoreError>>()?;
        let counted = self
            .rel_counts
            .get(id.as_bytes())
            .map_err(io)?
            .map_or(0, |v| decode_count(&v)) as usize;
        let total = counted.max(page.len());
        Ok((page, total))
    }

    fn relationships_to(&self, id: &str) -> Result<Vec<Relationship>, StoreError> {
        let raw: Vec<(sled::IVec, sled::IVec)> = self
            .rels_rev
            .scan_prefix(prefix(id))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        // A popular product has an edge from every computer: decoding 10,000 attribute
        // maps is most of "who installs X", and the pieces are independent.
        let parts = in_parallel(&raw, MIN_PARALLEL_DECODE, |part| self.decode_reverse(part));
        let mut out = Vec::with_capacity(raw.len());
        for part in parts {
            out.extend(part?);
        }
        Ok(out)
    }

    fn installs_of(&self, product_id: &str) -> Result<ProductInstalls, StoreError> {
        let mut lo = prefix(product_id);
        lo.extend_from_slice(RelKind::Installs.as_str().as_bytes());
        lo.push(0);
        let slices = computer_slices(&lo);
        // A popular product is installed on every computer: read its slices on all cores
        // once the first slice shows it is big enough to pay for the threads.
        let first = self.installs_in(&lo, &slices[0])?;
        let read = |part: &[(Vec<u8>, Vec<u8>)]| -> Result<Vec<SliceInstalls>, StoreError> {
            part.iter().map(|r| self.installs_in(&lo, r)).collect()
        };
        let rest = if first.installs.len() >= MIN_INSTALLS_PER_SLICE_FOR_THREADS {
            in_parallel(&slices[1..], 1, read)
        } else {
            vec![read(&slices[1..])]
        };
        // Slices are in key order, so installs stay ordered by computer; each slice's
        // variants are renumbered into one list.
        let mut out = ProductInstalls::default();
        let mut index: HashMap<VariantKey, usize> = HashMap::new();
        let mut take = |part: SliceInstalls| {
            let renumbered: Vec<usize> = part
                .variants
                .into_iter()
                .map(|key| {
                    *index.entry(key).or_insert_with_key(|key| {
                        out.variants.push(variant_attributes(key));
                        out.variants.len() - 1
                    })
                })
                .collect();
            out.installs.extend(
                part.installs
                    .into_iter()
                    .map(|(computer, v)| (computer, renumbered[v])),
            );
        };
        take(first);
        for chunk in rest {
            for part in chunk? {
                take(part);
            }
        }
        Ok(out)
    }

    fn lookup_identity(&self, key: &IdentityKey) -> Result<Option<String>, StoreError> {
        Ok(self
            .identity
            .get(key.encoded().as_bytes())
            .map_err(io)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn history(&self, ci_id: &str) -> Result<Vec<CiVersion>, StoreError> {
        self.history
            .scan_prefix(prefix(ci_id))
            .map(|r| {
                let (k, v) = r.map_err(io)?;
                decode_version(&k, &v)
            })
            .collect()
    }

    fn as_of(&self, ci_id: &str, at: DateTime<Utc>) -> Result<Option<CiVersion>, StoreError> {
        // Versions are keyed by number, which grows with time: walk back from the newest.
        for r in self.history.scan_prefix(prefix(ci_id)).rev() {
            let (k, v) = r.map_err(io)?;
            let version = decode_version(&k, &v)?;
            if version.valid_from <= at {
                return Ok(Some(version));
            }
        }
        Ok(None)
    }

    fn list_conflicts(&self) -> Result<Vec<IdentityConflict>, StoreError> {
        Self::scan_values(&self.conflicts)
    }

    fn list_change_records(&self) -> Result<Vec<ChangeRecord>, StoreError> {
        let mut r: Vec<ChangeRecord> = Self::scan_values(&self.changes)?;
        r.sort_by_key(|c| c.detected_at);
        Ok(r)
    }

    fn get_user(&self, name: &str) -> Result<Option<User>, StoreError> {
        Self::get_json(&self.users, name.as_bytes())
    }

    fn list_users(&self) -> Result<Vec<User>, StoreError> {
        Self::scan_values(&self.users)
    }

    fn get_change_record(&self, id: &str) -> Result<Option<ChangeRecord>, StoreError> {
        Self::get_json(&self.changes, id.as_bytes())
    }

    fn list_noise_rules(&self) -> Result<Vec<NoiseRule>, StoreError> {
        let mut r: Vec<NoiseRule> = Self::scan_values(&self.noise)?;
        r.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(r)
    }

    fn severity_rules(&self) -> Result<Option<SeverityRules>, StoreError> {
        Self::get_json(&self.meta, b"severity_rules")
    }

    fn list_planned_changes(&self) -> Result<Vec<PlannedChange>, StoreError> {
        let mut r: Vec<PlannedChange> = Self::scan_values(&self.planned)?;
        r.sort_by(|a, b| (a.window_start, &a.id).cmp(&(b.window_start, &b.id)));
        Ok(r)
    }

    fn recent_removals(&self, ci_id: &str) -> Result<Vec<RecentRemoval>, StoreError> {
        self.removals
            .scan_prefix(prefix(ci_id))
            .map(|r| {
                let (k, v) = r.map_err(io)?;
                decode(&k, &v)
            })
            .collect()
    }

    fn commit_people(
        &self,
        write: &PeopleWrite,
        draft: AuditDraft,
        at: DateTime<Utc>,
    ) -> Result<AuditEntry, PeopleWriteError> {
        let _writing = self.writing();
        let trees = (
            &self.meta,
            &self.audit,
            &self.noise,
            &self.planned,
            &self.changes,
            &self.outbox,
            &self.webhooks,
            &self.deliveries,
            &self.api_tokens,
            &self.users,
            &self.tokens,
            &self.agents,
            &self.conflicts,
        );
        type PeopleTx<T> = Result<T, ConflictableTransactionError<PeopleWriteError>>;
        fn fail<T>(e: PeopleWriteError) -> PeopleTx<T> {
            Err(ConflictableTransactionError::Abort(e))
        }
        fn enc<T: Serialize>(v: &T) -> PeopleTx<Vec<u8>> {
            encode(v).or_else(|e| fail(e.into()))
        }
        fn revoke_agent_in(
            agents: &sled::transaction::TransactionalTree,
            id: &str,
            at: DateTime<Utc>,
        ) -> PeopleTx<()> {
            let Some(raw) = agents.get(id.as_bytes())? else {
                return fail(PeopleWriteError::NotFound(format!("agent {id}")));
            };
            let mut agent: Agent = decode(id.as_bytes(), &raw).or_else(|e| fail(e.into()))?;
            if agent.revoked_at.is_none() {
                agent.revoked_at = Some(at);
                agents.insert(id.as_bytes(), enc(&agent)?)?;
            }
            Ok(())
        }
        let r = trees.transaction(
            |(
                meta,
                audit,
                noise,
                planned,
                changes,
                outbox,
                webhooks,
                deliveries,
                api_tokens,
                users,
                enrollment_tokens,
                agents,
                conflicts,
            )| {
                match write {
                    PeopleWrite::PutNoiseRule(rule) => {
                        noise.insert(rule.id.as_bytes(), enc(rule)?)?;
                    }
                    PeopleWrite::DeleteNoiseRule(id) => {
                        if noise.remove(id.as_bytes())?.is_none() {
                            return fail(PeopleWriteError::NotFound(format!("noise rule {id}")));
                        }
                    }
                    PeopleWrite::PutSeverityRules(rules) => {
                        meta.insert("severity_rules", enc(rules)?)?;
                    }
                    PeopleWrite::PutPlannedChange(p) => {
                        planned.insert(p.id.as_bytes(), enc(p)?)?;
                    }
                    PeopleWrite::ReviewRecord { expected, record } => {
                        let Some(raw) = changes.get(record.id.as_bytes())? else {
                            return fail(PeopleWriteError::NotFound(format!(
                                "change record {}",
                                record.id
                            )));
                        };
                        let stored: ChangeRecord =
                            decode(record.id.as_bytes(), &raw).or_else(|e| fail(e.into()))?;
                        if stored != **expected {
                            return fail(PeopleWriteError::Stale(format!(
                                "change record {}",
                                record.id
                            )));
                        }
                        changes.insert(record.id.as_bytes(), enc(record.as_ref())?)?;
                        let id = outbox.generate_id()?;
                        let event = QueuedEvent {
                            event_type: "change_record.reviewed".into(),
                            record_id: record.id.clone(),
                            at,
                        };
                        outbox.insert(&id.to_be_bytes(), enc(&event)?)?;
                    }
                    PeopleWrite::PutWebhook(w) => {
                        webhooks.insert(w.id.as_bytes(), enc(w)?)?;
                    }
                    PeopleWrite::DeleteWebhook(id) => {
                        if webhooks.remove(id.as_bytes())?.is_none() {
                            return fail(PeopleWriteError::NotFound(format!("webhook {id}")));
                        }
                    }
                    PeopleWrite::Redeliver(d) => {
                        if deliveries.get(d.id.as_bytes())?.is_none() {
                            return fail(PeopleWriteError::NotFound(format!("delivery {}", d.id)));
                        }
                        deliveries.insert(d.id.as_bytes(), enc(d)?)?;
                    }
                    PeopleWrite::PutApiToken(t) => {
                        api_tokens.insert(t.id.as_bytes(), enc(t)?)?;
                    }
                    PeopleWrite::PutUser(u) => {
                        users.insert(u.name.as_bytes(), enc(u)?)?;
                    }
                    PeopleWrite::PutEnrollmentToken(t) => {
                        enrollment_tokens.insert(t.secret_hash.as_bytes(), enc(t)?)?;
                    }
                    PeopleWrite::ReviseEnrollmentToken { expected, token } => {
                        let key = token.secret_hash.as_bytes();
                        let Some(raw) = enrollment_tokens.get(key)? else {
                            return fail(PeopleWriteError::NotFound(format!(
                                "enrollment token {}",
                                token.id
                            )));
                        };
                        let stored: EnrollmentToken =
                            decode(key, &raw).or_else(|e| fail(e.into()))?;
                        if stored != **expected {
                            return fail(PeopleWriteError::Stale(format!(
                                "enrollment token {}",
                                token.id
                            )));
                        }
                        enrollment_tokens.insert(key, enc(token.as_ref())?)?;
                    }
                    PeopleWrite::RevokeAgent(id) => {
                        revoke_agent_in(agents, id, at)?;
                    }
                    PeopleWrite::ResolveConflict {
                        id,
                        resolution,
                        revoke_agent,
                    } => {
                        if let Some(agent) = revoke_agent {
                            revoke_agent_in(agents, agent, at)?;
                        }
                        let Some(raw) = conflicts.get(id.as_bytes())? else {
                            return fail(PeopleWriteError::NotFound(format!(
                                "identity conflict {id}"
                            )));
                        };
                        let mut conflict: IdentityConflict =
                            decode(id.as_bytes(), &raw).or_else(|e| fail(e.into()))?;
                        if conflict.resolved_at.is_some() {
                            return fail(PeopleWriteError::Stale(format!(
                                "identity conflict {id} (already resolved)"
                            )));
                        }
                        conflict.resolved_at = Some(at);
                        conflict.resolution = Some(resolution.clone());
                        conflicts.insert(id.as_bytes(), enc(&conflict)?)?;
                    }
                }
                let head: AuditHead = match meta.get("audit_head")? {
                    Some(raw) => decode(b"meta/audit_head", &raw).or_else(|e| fail(e.into()))?,
                    None => AuditHead::default(),
                };
                let mut entry = AuditEntry {
                    seq: head.seq + 1,
                    at,
                    actor: draft.actor.clone(),
                    action: draft.action.clone(),
                    target: draft.target.clone(),
                    before: draft.before.clone(),
                    after: draft.after.clone(),
                    comment: draft.comment.clone(),
                    prev_hash: head.hash.clone(),
                    hash: String::new(),
                };
                entry.hash = audit_hash(&entry).or_else(|e| fail(e.into()))?;
                audit.insert(&entry.seq.to_be_bytes(), enc(&entry)?)?;
                meta.insert(
                    "audit_head",
                    enc(&AuditHead {
                        seq: entry.seq,
                        hash: entry.hash.clone(),
                    })?,
                )?;
                Ok(entry)
            },
        );
        let entry = r.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => PeopleWriteError::Store(io(e)),
        })?;
        self.flush()?;
        Ok(entry)
    }

    fn list_audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        Self::numbered_after(&self.audit, after, limit)
    }

    fn audit_head(&self) -> Result<u64, StoreError> {
        match self.meta.get("audit_head").map_err(io)? {
            Some(raw) => Ok(decode::<AuditHead>(b"meta/audit_head", &raw)?.seq),
            None => Ok(0),
        }
    }

    fn sequence_events(&self, max: usize) -> Result<usize, StoreError> {
        let _writing = self.writing();
        // Runs every second: with nothing queued, read nothing else.
        if self.outbox.is_empty() {
            return Ok(0);
        }
        let webhooks: Vec<Webhook> = self
            .list_webhooks()?
            .into_iter()
            .filter(|w| w.active)
            .collect();
        let mut done = 0;
        for item in self.outbox.iter().take(max) {
            let (key, raw) = item.map_err(io)?;
            let queued: QueuedEvent = decode(&key, &raw)?;
            let trees = (
                &self.outbox,
                &self.feed,
                &self.meta,
                &self.deliveries,
                &self.changes,
            );
            let r = trees.transaction(|(outbox, feed, meta, deliveries, changes)| {
                if outbox.remove(&key)?.is_none() {
                    return Ok(()); // another sequencer took it
                }
                let Some(raw) = changes.get(queued.record_id.as_bytes())? else {
                    return Ok(());
                };
                let record: ChangeRecord = tx_decode(queued.record_id.as_bytes(), &raw)?;
                let cursor = match meta.get("feed_head")? {
                    Some(v) => u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])),
                    None => 0,
                } + 1;
                meta.insert("feed_head", &cursor.to_be_bytes())?;
                let event = FeedEvent {
                    cursor,
                    event_type: queued.event_type.clone(),
                    at: queued.at,
                    record,
                };
                feed.insert(&cursor.to_be_bytes(), tx_encode(&event)?)?;
                for w in &webhooks {
                    let d = Delivery {
                        id: format!("dlv_{:016x}_{}", cursor, w.id),
                        webhook_id: w.id.clone(),
                        cursor,
                        attempts: 0,
                        next_attempt_at: queued.at,
                        last_error: None,
                        dead_at: None,
                    };
                    deliveries.insert(d.id.as_bytes(), tx_encode(&d)?)?;
                }
                Ok(())
            });
            map_tx(r).map_err(|e| io(e.to_string()))?;
            done += 1;
        }
        if done > 0 {
            self.flush()?;
        }
        Ok(done)
    }

    fn feed_since(&self, cursor: u64, limit: usize) -> Result<Vec<FeedEvent>, StoreError> {
        Self::numbered_after(&self.feed, cursor, limit)
    }

    fn feed_event(&self, cursor: u64) -> Result<Option<FeedEvent>, StoreError> {
        Self::get_json(&self.feed, &cursor.to_be_bytes())
    }

    fn list_webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        let mut w: Vec<Webhook> = Self::scan_values(&self.webhooks)?;
        w.sort_by_key(|w| w.created_at);
        Ok(w)
    }

    fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut due: Vec<Delivery> = Self::scan_values::<Delivery>(&self.deliveries)?
            .into_iter()
            .filter(|d| d.dead_at.is_none() && d.next_attempt_at <= now)
            .collect();
        due.sort_by_key(|d| (d.cursor, d.next_attempt_at));
        due.truncate(limit);
        Ok(due)
    }

    fn list_deliveries(&self) -> Result<Vec<Delivery>, StoreError> {
        let mut d: Vec<Delivery> = Self::scan_values(&self.deliveries)?;
        d.sort_by_key(|d| d.cursor);
        Ok(d)
    }

    fn update_delivery(&self, id: &str, next: Option<&Delivery>) -> Result<(), StoreError> {
        let _writing = self.writing();
        match next {
            Some(d) => self.deliveries.insert(id.as_bytes(), encode(d)?),
            None => self.deliveries.remove(id.as_bytes()),
        }
        .map_err(io)?;
        self.flush()
    }

    fn find_api_token(&self, id: &str) -> Result<Option<ApiToken>, StoreError> {
        Self::get_json(&self.api_tokens, id.as_bytes())
    }

    fn list_api_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let mut t: Vec<ApiToken> = Self::scan_values(&self.api_tokens)?;
        t.sort_by_key(|t| t.created_at);
        Ok(t)
    }

    fn touch_api_token(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let _writing = self.writing();
        if let Some(mut t) = self.find_api_token(id)? {
            t.last_used_at = Some(at);
            self.api_tokens
                .insert(id.as_bytes(), encode(&t)?)
                .map_err(io)?;
        }
        Ok(())
    }

    fn backup(&self, out: &mut dyn std::io::Write) -> Result<BackupSummary, StoreError> {
        use sha2::{Digest, Sha256};
        // Exclusive: no write is half-applied across trees while the backup reads them.
        let _exclusive = self.gate.write().unwrap_or_else(|p| p.into_inner());
        let mut z = zstd::stream::write::Encoder::new(out, 3).map_err(io)?;
        let mut hasher = Sha256::new();
        let mut summary = BackupSummary::default();
        let mut put = |z: &mut dyn std::io::Write, bytes: &[u8]| -> Result<(), StoreError> {
            hasher.update(bytes);
            z.write_all(bytes).map_err(io)
        };
        put(&mut z, BACKUP_MAGIC)?;
        for name in self.db.tree_names() {
            let tree = self.db.open_tree(&name).map_err(io)?;
            put(&mut z, &[1])?;
            put(&mut z, &(name.len() as u32).to_be_bytes())?;
            put(&mut z, &name)?;
            summary.trees += 1;
            for r in tree.iter() {
                let (k, v) = r.map_err(io)?;
                put(&mut z, &[2])?;
                put(&mut z, &(k.len() as u32).to_be_bytes())?;
                put(&mut z, &k)?;
                put(&mut z, &(v.len() as u32).to_be_bytes())?;
                put(&mut z, &v)?;
                summary.records += 1;
            }
        }
        put(&mut z, &[3])?;
        let digest = hasher.finalize();
        std::io::Write::write_all(&mut z, &digest).map_err(io)?;
        z.finish().map_err(io)?;
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computer_slices_cover_every_key_of_the_prefix_exactly_once() {
        let lo = b"sw_1\0installs\0".to_vec();
        let slices = computer_slices(&lo);
        assert_eq!(slices.len(), 8);
        for id in [
            "",
            "cmp_",
            "cmp_0",
            "cmp_1ffff",
            "cmp_2",
            "cmp_2000",
            "cmp_9",
            "cmp_a0",
            "cmp_e",
            "cmp_f",
            "cmp_fffff",
            "cmp_g",
            "agt_x",
            "zzz",
            "\u{7f}",
            "é",
        ] {
            let key = [lo.as_slice(), id.as_bytes(), b"\0dpkg/amd64"].concat();
            let holders = slices
                .iter()
                .filter(|(a, b)| a.as_slice() <= key.as_slice() && key.as_slice() < b.as_slice())
                .count();
            assert_eq!(holders, 1, "{id:?}");
        }
        // Nothing outside the prefix.
        for key in [
            b"sw_1\0installs".to_vec(),
            b"sw_1\0installs\x01".to_vec(),
            b"sw_2".to_vec(),
        ] {
            assert!(slices
                .iter()
                .all(|(a, b)| !(a.as_slice() <= key.as_slice() && key.as_slice() < b.as_slice())));
        }
    }
}
