//! The store's domain services over any [`Backend`]: ingest commits, computer records and
//! their history steps, reverse indexes, enrollment, people's writes with the audit chain,
//! the feed and webhook outbox. Every rule lives here once; a backend only keeps bytes.
//!
//! Architecture Invariant: everything a transaction writes is encoded before the
//! transaction starts; the body only checks (sequence, identity claims, record revisions)
//! and writes. An engine that serializes transactions (sled) is then held for microseconds.

mod backup;
mod check;
mod copy;
mod feed;
mod flows;
mod history;
mod ingest;
mod machine;
mod migrate;
mod people;
mod reads;
mod vulns;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::backend::*;
use super::codec::{self, Postings, VariantRec};
use super::sled_backend::{SledBackend, DEFAULT_CACHE_BYTES};
use super::*;
use crate::model::Package;

pub use copy::CopySummary;
pub use machine::Machine;

/// The collector's store: domain services over a backend.
pub struct Cmdb {
    backend: Box<dyn Backend>,
    /// Writers hold it shared; a backup or a consistency check holds it exclusively, so
    /// either sees one point in time while the collector keeps running.
    gate: RwLock<()>,
    cache: Cache,
    /// The store's posting layout (chunk bits), from its meta record: a copy adopts its
    /// source's, hence atomic.
    postings: std::sync::atomic::AtomicU32,
    /// Numbers this process reserved from a fleet-wide counter and has not given yet, by
    /// counter. Only on a shared database: there a collector takes a block of numbers in a
    /// transaction of its own, so the commits that number something (a delta installing a
    /// version the fleet has not seen) do not all queue on the counter's row. On an
    /// embedded engine, whose writers take turns anyway, the counter moves in the commit.
    reserved: std::sync::Mutex<HashMap<&'static [u8], Vec<u32>>>,
}

/// A fast hasher seeded per process: cache keys come from agents (package names), so the
/// seed keeps them from choosing collisions.
pub(crate) type Fast = foldhash::fast::RandomState;

/// A package shared by every install of one variant.
pub(crate) type SharedPackage = Arc<Package>;

/// Mappings that never change once written (a CI id's number, a variant's number), kept in
/// memory so ingest does not read them again. Bounded by clearing.
#[derive(Default)]
struct Cache {
    nums: RwLock<HashMap<String, u32, Fast>>,
    ids: RwLock<HashMap<u32, Arc<str>, Fast>>,
    /// product number -> package -> variant number.
    variant_nums: RwLock<HashMap<u32, HashMap<SharedPackage, u32, Fast>, Fast>>,
    /// variant number -> (product number, package).
    variants: RwLock<HashMap<u32, (u32, SharedPackage), Fast>>,
    /// Shared CIs known to be stored (they are never deleted).
    shared: RwLock<std::collections::HashSet<String, Fast>>,
    /// Every computer's summary by number, loaded on first use and kept by every write
    /// (with the record revision it came from, so a late update never replaces a newer).
    summaries: RwLock<Summaries>,
    /// Held by the one thread loading the summary table.
    summaries_loading: std::sync::Mutex<()>,
    /// On a shared store: every computer's summary as of the last read, and the horizon
    /// from which the next read asks for what other processes wrote since.
    shared_summaries: std::sync::Mutex<SharedSummaries>,
    /// Computers an ingest just decoded to plan against, lent to its commit (which needs
    /// them decoded again to write their new records).
    lent: std::sync::Mutex<std::collections::VecDeque<machine::Lent>>,
}

/// computer number -> (record revision, summary).
pub(crate) type SummaryTable = HashMap<u32, (u64, ComputerSummary), Fast>;

/// The summary table, or what commits wrote while it was being loaded.
#[derive(Default)]
pub(crate) struct Summaries {
    pub table: Option<SummaryTable>,
    pub loading: bool,
    /// Written during the load: newer than what the load may have read.
    pub pending: Vec<(u32, u64, ComputerSummary)>,
}

/// A shared store's computer summaries as this process last read them.
#[derive(Default)]
pub(crate) struct SharedSummaries {
    pub table: HashMap<u32, ComputerSummary, Fast>,
    /// `None` until the first read, which reads them all.
    pub horizon: Option<u64>,
}

/// Past this many entries a cache starts again (each entry is under ~200 bytes).
const MAX_CACHED: usize = 1_000_000;

fn remember<K: std::hash::Hash + Eq, V>(map: &RwLock<HashMap<K, V, Fast>>, k: K, v: V) {
    if let Ok(mut m) = map.write() {
        if m.len() >= MAX_CACHED {
            m.clear();
        }
        m.insert(k, v);
    }
}

fn recall<K: std::hash::Hash + Eq + ?Sized, V: Clone, Q>(
    map: &RwLock<HashMap<Q, V, Fast>>,
    k: &K,
) -> Option<V>
where
    Q: std::borrow::Borrow<K> + std::hash::Hash + Eq,
{
    map.read().ok().and_then(|m| m.get(k).cloned())
}

pub(crate) fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

/// Why a transaction body gave up: a domain reason, or the engine's.
pub(crate) enum Fail<E> {
    Abort(E),
    Tx(TxError),
}

impl<E> From<TxError> for Fail<E> {
    fn from(e: TxError) -> Self {
        Fail::Tx(e)
    }
}

impl<E> From<StoreError> for Fail<E> {
    fn from(e: StoreError) -> Self {
        Fail::Tx(TxError::Store(e))
    }
}

pub(crate) type TxResult<T, E> = Result<T, Fail<E>>;

/// Meta keys of CMDB health: its settings and its daily trend.
pub(crate) const HEALTH_SETTINGS_KEY: &[u8] = b"health_settings";
pub(crate) const HEALTH_TREND_KEY: &[u8] = b"health_trend";
pub(crate) const COMPLIANCE_TREND_KEY: &[u8] = b"compliance_trend";
pub(crate) const SOFTWARE_RULES_KEY: &[u8] = b"software_rules";

/// Runs `body` in one transaction and hands back its value or its reason.
pub(crate) fn transact<T, E: From<StoreError>>(
    backend: &dyn Backend,
    body: impl FnMut(&mut dyn Tx) -> TxResult<T, E>,
) -> Result<T, E> {
    transact_as(backend, false, body)
}

/// [`transact`], durable when `durable` (see [`Backend::transact_durable`]).
pub(crate) fn transact_as<T, E: From<StoreError>>(
    backend: &dyn Backend,
    durable: bool,
    mut body: impl FnMut(&mut dyn Tx) -> TxResult<T, E>,
) -> Result<T, E> {
    let mut out: Option<T> = None;
    let mut why: Option<E> = None;
    let mut run = |tx: &mut dyn Tx| {
        out = None;
        why = None;
        match body(tx) {
            Ok(v) => {
                out = Some(v);
                Ok(())
            }
            Err(Fail::Abort(e)) => {
                why = Some(e);
                Err(TxError::Abort)
            }
            Err(Fail::Tx(e)) => Err(e),
        }
    };
    let r = if durable {
        backend.transact_durable(&mut run)
    } else {
        backend.transact(&mut run)
    };
    match r {
        Ok(()) => out.ok_or_else(|| io("transaction finished without a result").into()),
        Err(TxError::Abort) => Err(why.unwrap_or_else(|| io("transaction aborted").into())),
        Err(TxError::Store(e)) => Err(e.into()),
    }
}

pub(crate) fn tx_json<T: DeserializeOwned, E>(
    tx: &mut dyn Tx,
    space: Space,
    key: &[u8],
) -> TxResult<Option<T>, E> {
    match tx.get(space, key)? {
        Some(v) => Ok(Some(codec::decode_json(&shown(space, key), &v)?)),
        None => Ok(None),
    }
}

pub(crate) fn tx_put_json<T: Serialize, E>(
    tx: &mut dyn Tx,
    space: Space,
    key: &[u8],
    value: &T,
) -> TxResult<(), E> {
    tx.put(space, key, &codec::encode_json(value)?)?;
    Ok(())
}

/// The schema version a store's meta record holds.
pub(crate) fn schema_of(bytes: &[u8]) -> Result<u32, StoreError> {
    Ok(u32::from_be_bytes(bytes.try_into().map_err(|_| {
        StoreError::Corrupt {
            key: "meta/schema_version".into(),
            message: "not a u32".into(),
        }
    })?))
}

/// What a new store's meta record holds, and nothing else: its schema version and its
/// posting layout.
pub(crate) fn new_store_meta(shared_database: bool) -> [(&'static [u8], [u8; 4]); 2] {
    [
        (b"schema_version", STORE_SCHEMA_VERSION.to_be_bytes()),
        (
            codec::POSTINGS_META_KEY,
            Postings::for_new_store(shared_database).to_meta(),
        ),
    ]
}

/// A key as people read it in an error.
pub(crate) fn shown(space: Space, key: &[u8]) -> String {
    format!(
        "{}/{}",
        space.name(),
        String::from_utf8_lossy(key).replace('\0', "/")
    )
}

impl Cmdb {
    /// Opens (or creates) the embedded store in `dir`, refusing a newer schema and migrating
    /// an older one.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Opens the store in `dir` with a page cache of at most `cache_bytes`: redb, the
    /// embedded default. A sled store (any schema) is migrated into redb first.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let redb = dir.join(super::redb_backend::FILE);
        if redb.exists() {
            if migrate::holds_sled(dir) {
                // A migration renamed its new store into place and stopped before it
                // removed the old one.
                migrate::remove_sled_files(dir)?;
            }
        } else if migrate::holds_sled(dir) {
            migrate::sled_to_redb(dir, cache_bytes)?;
        }
        Self::open_redb(dir, cache_bytes)
    }

    /// Opens (or creates) a sled store of the current schema in `dir` (the conformance
    /// suite and the benchmarks compare engines with it).
    pub fn open_sled(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let sled = SledBackend::open(dir, cache_bytes)?;
        match migrate::stored_schema(sled.db())? {
            Some(v) if v != STORE_SCHEMA_VERSION => Err(StoreError::NewerSchema {
                found: v,
                supported: STORE_SCHEMA_VERSION,
            }),
            Some(_) => Self::over(Box::new(sled))?.indexed(),
            None => {
                for (k, v) in new_store_meta(false) {
                    sled.put(Space::Meta, k, &v)?;
                }
                sled.flush()?;
                Self::over(Box::new(sled))?.indexed()
            }
        }
    }

    /// Opens (or creates) a store on redb in `dir`.
    pub fn open_redb(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        Self::open_current(Box::new(super::redb_backend::RedbBackend::open(
            dir,
            cache_bytes,
        )?))
    }

    /// Opens (or creates) the store in a PostgreSQL database that many collectors share.
    pub fn open_postgres(options: super::pg_backend::PgOptions) -> Result<Self, StoreError> {
        Self::open_current(Box::new(super::pg_backend::PgBackend::open(options)?))
    }

    /// Marks an empty backend as the current schema, or checks that it is.
    fn open_current(backend: Box<dyn Backend>) -> Result<Self, StoreError> {
        let mut found = None;
        transact::<(), StoreError>(backend.as_ref(), |tx| {
            found = None;
            match tx.get(Space::Meta, b"schema_version")? {
                None => {
                    for (k, v) in new_store_meta(backend.shared()) {
                        tx.put(Space::Meta, k, &v)?;
                    }
                }
                Some(v) => found = Some(schema_of(&v)?),
            }
            Ok(())
        })?;
        backend.flush()?;
        if let Some(found) = found {
            if found != STORE_SCHEMA_VERSION {
                return Err(StoreError::NewerSchema {
                    found,
                    supported: STORE_SCHEMA_VERSION,
                });
            }
        }
        Self::over(backend)?.indexed()
    }

    /// This store with the indexes added after its schema was made filled in.
    fn indexed(self) -> Result<Self, StoreError> {
        self.ensure_address_index()?;
        Ok(self)
    }

    /// The domain services over a backend that already holds the current schema.
    pub fn over(backend: Box<dyn Backend>) -> Result<Self, StoreError> {
        let postings = Postings::from_meta(
            backend
                .get(Space::Meta, codec::POSTINGS_META_KEY)?
                .as_deref(),
        )?;
        Ok(Cmdb {
            backend,
            gate: RwLock::new(()),
            cache: Cache::default(),
            postings: std::sync::atomic::AtomicU32::new(postings.bits()),
            reserved: Default::default(),
        })
    }

    /// The layout of the postings this store holds.
    pub(crate) fn postings(&self) -> Postings {
        Postings::from_bits(self.postings.load(std::sync::atomic::Ordering::Relaxed))
            .unwrap_or(Postings::WIDE)
    }

    /// Takes on another store's posting layout: a byte-for-byte copy holds its postings.
    fn adopt_postings(&self, layout: Postings) {
        self.postings
            .store(layout.bits(), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// A shared hold on the write gate. A poisoned gate (a writer panicked) still orders
    /// writes against backups, so the poison is ignored.
    fn writing(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    fn exclusive(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(|p| p.into_inner())
    }

    fn get_json<T: DeserializeOwned>(
        &self,
        space: Space,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match self.backend.get(space, key)? {
            Some(v) => Ok(Some(codec::decode_json(&shown(space, key), &v)?)),
            None => Ok(None),
        }
    }

    fn scan_json<T: DeserializeOwned>(
        &self,
        space: Space,
        range: Range<'_>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        self.backend.scan(space, range, &mut |k, v| {
            out.push(codec::decode_json(&shown(space, k), v)?);
            Ok(Flow::Continue)
        })?;
        Ok(out)
    }

    /// The number of a CI id, if it has one (a component's is its computer's).
    pub(crate) fn num_of(&self, id: &str) -> Result<Option<u32>, StoreError> {
        if let Some(n) = recall(&self.cache.nums, id) {
            return Ok(Some(n));
        }
        let Some(v) = self.backend.get(Space::Ids, id.as_bytes())? else {
            return Ok(None);
        };
        let n = codec::read_num(&v).ok_or_else(|| StoreError::Corrupt {
            key: shown(Space::Ids, id.as_bytes()),
            message: "not a number".into(),
        })?;
        remember(&self.cache.nums, id.to_string(), n);
        Ok(Some(n))
    }

    /// The CI id a number was given to.
    pub(crate) fn id_of(&self, num: u32) -> Result<Option<Arc<str>>, StoreError> {
        if let Some(id) = recall(&self.cache.ids, &num) {
            return Ok(Some(id));
        }
        let Some(v) = self.backend.get(Space::NumIds, &codec::num_key(num))? else {
            return Ok(None);
        };
        let id: Arc<str> = String::from_utf8_lossy(&v).into();
        remember(&self.cache.ids, num, id.clone());
        Ok(Some(id))
    }

    /// Numbers for `ids`, giving one to each id that has none (ids are never renumbered, so
    /// a number given for a commit that then fails is merely unused).
    pub(crate) fn ensure_nums(&self, ids: &[&str]) -> Result<Vec<u32>, StoreError> {
        let mut out = vec![0u32; ids.len()];
        let mut missing = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            match recall(&self.cache.nums, *id) {
                Some(n) => out[i] = n,
                None => missing.push(i),
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        // Those this process has not seen yet may have numbers already: one read for all
        // (regression: one read each, 12,355 statements in the first second of the ingest
        // bench's first snapshots).
        let unseen: Vec<&[u8]> = missing.iter().map(|&i| ids[i].as_bytes()).collect();
        let stored = self.backend.get_many(Space::Ids, &unseen)?;
        let mut still = Vec::new();
        for (&i, v) in missing.iter().zip(stored) {
            match v {
                Some(v) => {
                    let n = codec::read_num(&v).ok_or_else(|| StoreError::Corrupt {
                        key: shown(Space::Ids, ids[i].as_bytes()),
                        message: "not a number".into(),
                    })?;
                    out[i] = n;
                    remember(&self.cache.nums, ids[i].to_string(), n);
                }
                None => still.push(i),
            }
        }
        let missing = still;
        if missing.is_empty() {
            return Ok(out);
        }
        let wanted: Vec<&[u8]> = missing.iter().map(|&i| ids[i].as_bytes()).collect();
        // A CI's number record holds its id.
        let given = self.number(Numbering::CIS, &wanted, &wanted)?;
        for (&i, n) in missing.iter().zip(given) {
            out[i] = n;
            remember(&self.cache.nums, ids[i].to_string(), n);
            // A number given here holds this id (a component's number, its computer's, is
            // never given through here).
            remember(&self.cache.ids, n, Arc::from(ids[i]));
        }
        Ok(out)
    }

    /// The number each of `keys` holds, giving fresh ones to those that hold none (with
    /// `records[i]` as the number's record), in one transaction.
    fn number(
        &self,
        n: Numbering,
        keys: &[&[u8]],
        records: &[&[u8]],
    ) -> Result<Vec<u32>, StoreError> {
        if !self.backend.shared() {
            return transact::<_, StoreError>(self.backend.as_ref(), |tx| {
                number_keys(tx, n, keys, records, Fresh::Counter).map(|(given, _)| given)
            });
        }
        // At most one fresh number per key; those the commit does not give go back.
        let fresh = self.reserve(n, keys.len())?;
        let result = transact::<_, StoreError>(self.backend.as_ref(), |tx| {
            number_keys(tx, n, keys, records, Fresh::Reserved(&fresh))
        });
        let used = result.as_ref().map(|(_, used)| *used).unwrap_or(0);
        if let Ok(mut pools) = self.reserved.lock() {
            pools
                .entry(n.counter)
                .or_default()
                .extend_from_slice(&fresh[used..]);
        }
        result.map(|(given, _)| given)
    }

    /// `count` numbers of counter `n` for this process: from its block, topped up by a
    /// transaction that moves the counter past a new block.
    fn reserve(&self, n: Numbering, count: usize) -> Result<Vec<u32>, StoreError> {
        let taken = |pools: &mut HashMap<&'static [u8], Vec<u32>>| {
            let pool = pools.entry(n.counter).or_default();
            (pool.len() >= count).then(|| pool.drain(..count).collect::<Vec<u32>>())
        };
        if let Some(fresh) = self.reserved.lock().ok().and_then(|mut p| taken(&mut p)) {
            return Ok(fresh);
        }
        let block = count.max(RESERVED_BLOCK) as u32;
        let first = transact::<u32, StoreError>(self.backend.as_ref(), |tx| {
            let next = match tx.get(Space::Meta, n.counter)? {
                Some(v) => codec::read_num(&v).unwrap_or(1),
                None => 1,
            };
            let after = next
                .checked_add(block)
                .ok_or_else(|| Fail::Abort(io(format!("{} exhausted", n.what))))?;
            tx.put(Space::Meta, n.counter, &codec::num_key(after))?;
            Ok(next)
        })?;
        let mut pools = self
            .reserved
            .lock()
            .map_err(|_| io("the number reservations' lock is poisoned"))?;
        let pool = pools.entry(n.counter).or_default();
        pool.extend(first..first + block);
        pool.sort_unstable();
        Ok(pool.drain(..count).collect())
    }

    /// Reads the product ids and variants of `installs` the caches lack, one read per key
    /// space, so resolving the installs one by one afterwards ([`Cmdb::install_of`],
    /// [`Cmdb::install_edge`]) is all cache hits. Regression: on a shared database each
    /// miss was a round trip, and the first delta of a computer a collector had not read
    /// yet asked for its ~900 products one at a time (3,663 statements in one second of
    /// the ingest bench's delta phase).
    pub(crate) fn warm_installs<'a>(
        &self,
        installs: impl IntoIterator<Item = &'a codec::InstallRec>,
    ) -> Result<(), StoreError> {
        let (mut products, mut variants) = (Vec::new(), Vec::new());
        {
            let (Ok(ids), Ok(known)) = (self.cache.ids.read(), self.cache.variants.read()) else {
                return Ok(());
            };
            for i in installs {
                if !ids.contains_key(&i.product) {
                    products.push(i.product);
                }
                if !known.contains_key(&i.variant) {
                    variants.push(i.variant);
                }
            }
        }
        for list in [&mut products, &mut variants] {
            list.sort_unstable();
            list.dedup();
        }
        for (num, v) in self.read_numbered(Space::NumIds, &products)? {
            remember(&self.cache.ids, num, Arc::from(String::from_utf8_lossy(&v)));
        }
        for (num, v) in self.read_numbered(Space::Variants, &variants)? {
            let rec: VariantRec = codec::decode(Space::Variants.name(), &v)?;
            remember(
                &self.cache.variants,
                num,
                (rec.product, Arc::new(rec.package)),
            );
        }
        Ok(())
    }

    /// The records of `nums` in a space keyed by number, those found, in one read.
    fn read_numbered(&self, space: Space, nums: &[u32]) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
        if nums.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<[u8; 4]> = nums.iter().map(|&n| codec::num_key(n)).collect();
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        Ok(nums
            .iter()
            .zip(self.backend.get_many(space, &refs)?)
            .filter_map(|(&num, v)| Some((num, v?)))
            .collect())
    }

    /// A variant's product number and package.
    pub(crate) fn variant(&self, num: u32) -> Result<(u32, SharedPackage), StoreError> {
        if let Some(v) = recall(&self.cache.variants, &num) {
            return Ok(v);
        }
        let key = codec::num_key(num);
        let v = self
            .backend
            .get(Space::Variants, &key)?
            .ok_or_else(|| StoreError::Corrupt {
                key: format!("{}/{num}", Space::Variants.name()),
                message: "missing variant".into(),
            })?;
        let rec: VariantRec = codec::decode(Space::Variants.name(), &v)?;
        let out = (rec.product, Arc::new(rec.package));
        remember(&self.cache.variants, num, out.clone());
        Ok(out)
    }

    /// The numbers of `wanted` this process knows, and the indexes of those it does not.
    fn known_variants(&self, wanted: &[(u32, SharedPackage)]) -> (Vec<u32>, Vec<usize>) {
        let mut out = vec![0u32; wanted.len()];
        let mut missing = Vec::new();
        for (i, (product, package)) in wanted.iter().enumerate() {
            match self.known_variant(*product, package) {
                Some(n) => out[i] = n,
                None => missing.push(i),
            }
        }
        (out, missing)
    }

    fn known_variant(&self, product: u32, package: &Package) -> Option<u32> {
        let map = self.cache.variant_nums.read().ok()?;
        map.get(&product)?.get(package).copied()
    }

    /// Numbers for software variants, as [`Cmdb::intern_variants`], except that a variant
    /// no collector has numbered yet gets a provisional number from this collector's
    /// reserved block and goes into `pending`, for the commit that uses it to write (one
    /// flushed transaction instead of two on a shared database). Nothing is cached until
    /// that commit succeeds ([`Cmdb::variants_committed`]).
    pub(crate) fn number_variants_deferred(
        &self,
        wanted: &[(u32, SharedPackage)],
        pending: &mut Vec<PendingVariant>,
    ) -> Result<Vec<u32>, StoreError> {
        let (mut out, missing) = self.known_variants(wanted);
        if missing.is_empty() {
            return Ok(out);
        }
        let mut fresh: Vec<(usize, [u8; 16], Vec<u8>)> = Vec::with_capacity(missing.len());
        for &i in &missing {
            let value = codec::encode(&VariantRec {
                product: wanted[i].0,
                package: (*wanted[i].1).clone(),
            })?;
            fresh.push((i, codec::variant_key(&value), value));
        }
        let keys: Vec<&[u8]> = fresh.iter().map(|(_, k, _)| k.as_slice()).collect();
        let stored = self.backend.get_many(Space::VariantIds, &keys)?;
        let mut unnumbered = Vec::new();
        for (entry, stored) in fresh.into_iter().zip(stored) {
            match stored.as_deref().and_then(codec::read_num) {
                Some(n) => {
                    let i = entry.0;
                    out[i] = n;
                    self.cache_variant(wanted[i].0, &wanted[i].1, n);
                }
                None => unnumbered.push(entry),
            }
        }
        // A package named twice gets one number.
        let distinct: std::collections::BTreeSet<[u8; 16]> =
            unnumbered.iter().map(|(_, k, _)| *k).collect();
        if distinct.is_empty() {
            return Ok(out);
        }
        let mut numbers = self
            .reserve(Numbering::VARIANTS, distinct.len())?
            .into_iter();
        let mut given: HashMap<[u8; 16], u32> = HashMap::new();
        for (i, key, value) in unnumbered {
            if let Some(&n) = given.get(&key) {
                out[i] = n;
                continue;
            }
            let n = numbers
                .next()
                .ok_or_else(|| io("fewer variant numbers reserved than variants"))?;
            given.insert(key, n);
            out[i] = n;
            pending.push(PendingVariant {
                key,
                num: n,
                value,
                product: wanted[i].0,
                package: wanted[i].1.clone(),
            });
        }
        Ok(out)
    }

    /// Caches the variants a commit numbered, once it has committed.
    pub(crate) fn variants_committed(&self, pending: &[PendingVariant]) {
        for v in pending {
            self.cache_variant(v.product, &v.package, v.num);
        }
    }

    fn cache_variant(&self, product: u32, package: &SharedPackage, n: u32) {
        if let Ok(mut map) = self.cache.variant_nums.write() {
            if map.values().map(HashMap::len).sum::<usize>() >= MAX_CACHED {
                map.clear();
            }
            map.entry(product).or_default().insert(package.clone(), n);
        }
        remember(&self.cache.variants, n, (product, package.clone()));
    }

    /// Numbers for software variants (product number, package), interning the new ones
    /// fleet-wide.
    pub(crate) fn intern_variants(
        &self,
        wanted: &[(u32, SharedPackage)],
    ) -> Result<Vec<u32>, StoreError> {
        let (mut out, missing) = self.known_variants(wanted);
        if missing.is_empty() {
            return Ok(out);
        }
        let values: Vec<Vec<u8>> = missing
            .iter()
            .map(|&i| {
                codec::encode(&VariantRec {
                    product: wanted[i].0,
                    package: (*wanted[i].1).clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        let keys: Vec<[u8; 16]> = values.iter().map(|v| codec::variant_key(v)).collect();
        let key_refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        let value_refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let given = self.number(Numbering::VARIANTS, &key_refs, &value_refs)?;
        for (&i, n) in missing.iter().zip(given) {
            out[i] = n;
            self.cache_variant(wanted[i].0, &wanted[i].1, n);
        }
        Ok(out)
    }
}

/// A fleet-wide numbering: its counter in [`Space::Meta`], the index from key to number,
/// and the record each number holds.
#[derive(Clone, Copy)]
struct Numbering {
    counter: &'static [u8],
    index: Space,
    records: Space,
    what: &'static str,
}

impl Numbering {
    const CIS: Numbering = Numbering {
        counter: b"next_num",
        index: Space::Ids,
        records: Space::NumIds,
        what: "CI numbers",
    };
    const VARIANTS: Numbering = Numbering {
        counter: b"next_variant",
        index: Space::VariantIds,
        records: Space::Variants,
        what: "variant numbers",
    };
}

/// A software variant numbered provisionally for the commit that installs it: the commit
/// writes its index entry and record if no collector numbered it meanwhile, and is refused
/// as an identity race (the ingest tries again, and finds that number) if one did.
#[derive(Debug, Clone)]
pub(crate) struct PendingVariant {
    pub key: [u8; 16],
    pub num: u32,
    pub value: Vec<u8>,
    pub product: u32,
    pub package: SharedPackage,
}

/// Where a transaction's fresh numbers come from.
#[derive(Clone, Copy)]
enum Fresh<'a> {
    /// The counter in [`Space::Meta`], moved in the same transaction.
    Counter,
    /// Numbers reserved beforehand, given in order. A retried transaction gives the same
    /// ones again: the attempt before it committed nothing.
    Reserved(&'a [u32]),
}

/// How many numbers a collector on a shared database reserves at a time. Numbers it never
/// gives (it stopped) are merely unused; computers' numbers stay dense enough for their
/// posting chunks.
const RESERVED_BLOCK: usize = 64;

/// Inside a transaction: the number each of `keys` holds, giving fresh numbers to those
/// that hold none (with `records[i]` as the number's record), and how many fresh ones it
/// gave. A key named twice gets one number: the second takes the number the first was given.
/// The counter is read (and so locked) only when some key needs a number.
fn number_keys(
    tx: &mut dyn Tx,
    n: Numbering,
    keys: &[&[u8]],
    records: &[&[u8]],
    fresh: Fresh<'_>,
) -> TxResult<(Vec<u32>, usize), StoreError> {
    let stored = tx.get_many(n.index, keys)?;
    if stored.iter().all(Option::is_some) {
        let given = stored
            .iter()
            .flatten()
            .map(|v| codec::read_num(v).unwrap_or(0))
            .collect();
        return Ok((given, 0));
    }
    let mut next = match fresh {
        Fresh::Counter => match tx.get(Space::Meta, n.counter)? {
            Some(v) => codec::read_num(&v).unwrap_or(1),
            None => 1,
        },
        Fresh::Reserved(_) => 0,
    };
    let mut used = 0usize;
    let mut given = Vec::with_capacity(keys.len());
    let mut numbered: HashMap<&[u8], u32> = HashMap::new();
    for ((key, record), stored) in keys.iter().zip(records).zip(stored) {
        if let Some(v) = stored {
            given.push(codec::read_num(&v).unwrap_or(0));
            continue;
        }
        if let Some(&num) = numbered.get(key) {
            given.push(num);
            continue;
        }
        let num = match fresh {
            Fresh::Counter => {
                let num = next;
                next = next
                    .checked_add(1)
                    .ok_or_else(|| Fail::Abort(io(format!("{} exhausted", n.what))))?;
                num
            }
            Fresh::Reserved(numbers) => *numbers
                .get(used)
                .ok_or_else(|| Fail::Abort(io(format!("fewer {} reserved than keys", n.what))))?,
        };
        used += 1;
        numbered.insert(key, num);
        tx.put(n.index, key, &codec::num_key(num))?;
        tx.put(n.records, &codec::num_key(num), record)?;
        given.push(num);
    }
    if let Fresh::Counter = fresh {
        tx.put(Space::Meta, n.counter, &codec::num_key(next))?;
    }
    Ok((given, used))
}

impl Store for Cmdb {
    fn backup(&self, out: &mut dyn std::io::Write) -> Result<BackupSummary, StoreError> {
        self.do_backup(out)
    }

    fn schema_version(&self) -> Result<u32, StoreError> {
        let v = self
            .backend
            .get(Space::Meta, b"schema_version")?
            .ok_or_else(|| StoreError::Corrupt {
                key: "meta/schema_version".into(),
                message: "missing".into(),
            })?;
        schema_of(&v)
    }

    fn check_consistency(&self) -> Result<ConsistencyReport, StoreError> {
        self.do_check_consistency()
    }

    fn remote(&self) -> bool {
        self.backend.shared()
    }

    fn durable_commits(&self) -> bool {
        self.backend.durable_commits()
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.backend.put(
            Space::Meta,
            b"readyz",
            &chrono::Utc::now().timestamp().to_be_bytes(),
        )?;
        self.backend.delete(Space::Meta, b"readyz")
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.backend.flush()
    }

    fn lead(&self) -> Result<bool, StoreError> {
        self.backend.lead()
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.backend.size_on_disk()
    }

    fn put_token(&self, token: &EnrollmentToken) -> Result<(), StoreError> {
        self.do_put_token(token)
    }

    fn list_tokens(&self) -> Result<Vec<EnrollmentToken>, StoreError> {
        self.do_list_tokens()
    }

    fn revoke_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.do_revoke_token(id, at)
    }

    fn enroll(
        &self,
        secret_hash: &str,
        agent: &Agent,
        now: DateTime<Utc>,
    ) -> Result<(), EnrollError> {
        self.do_enroll(secret_hash, agent, now)
    }

    fn get_agent(&self, id: &str) -> Result<Option<Agent>, StoreError> {
        self.do_get_agent(id)
    }

    fn register_import_source(&self, agent: &Agent) -> Result<bool, StoreError> {
        self.do_register_import_source(agent)
    }

    fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        self.do_list_agents()
    }

    fn revoke_agent(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.do_revoke_agent(id, at)
    }

    fn commit_heartbeats(
        &self,
        batch: &[HeartbeatCommit],
    ) -> Result<Vec<Result<(), CommitError>>, StoreError> {
        self.do_commit_heartbeats(batch, None)
    }

    fn admit_heartbeats(
        &self,
        batch: &[HeartbeatCommit],
        admit: &mut Admit<'_>,
    ) -> Result<Vec<Result<(), CommitError>>, StoreError> {
        self.do_commit_heartbeats(batch, Some(admit))
    }

    fn commit_ingest(&self, commit: &IngestCommit) -> Result<(), CommitError> {
        self.do_commit_ingest(commit)
    }

    fn set_ci_status(
        &self,
        id: &str,
        expected_version: u64,
        status: CiStatus,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.do_set_ci_status(id, expected_version, status, at)
    }

    fn get_ci(&self, id: &str) -> Result<Option<Ci>, StoreError> {
        self.read_ci(id)
    }

    fn get_cis(&self, ids: &[&str]) -> Result<Vec<Option<Ci>>, StoreError> {
        self.read_cis(ids)
    }

    fn computer_digests(&self, ids: &[&str]) -> Result<Vec<Option<u64>>, StoreError> {
        self.read_computer_digests(ids)
    }

    fn ci_summary(&self, id: &str) -> Result<Option<CiSummary>, StoreError> {
        self.read_summary(id)
    }

    fn list_cis(&self, class: Option<CiClass>) -> Result<Vec<Ci>, StoreError> {
        let mut out = Vec::new();
        let classes: Vec<CiClass> = match class {
            Some(c) => vec![c],
            None => CiClass::ALL.to_vec(),
        };
        for c in classes {
            self.scan_class(c, &mut |ci| {
                out.push(ci);
                true
            })?;
        }
        Ok(out)
    }

    fn scan_cis(
        &self,
        class: CiClass,
        visit: &mut dyn FnMut(Ci) -> bool,
    ) -> Result<(), StoreError> {
        self.scan_class(class, visit)
    }

    fn owned_state(&self, computer_id: &str) -> Result<OwnedState, StoreError> {
        self.read_owned_state(computer_id)
    }

    fn relationships_from(&self, id: &str) -> Result<Vec<Relationship>, StoreError> {
        self.read_relationships_from(id)
    }

    fn relationships_from_page(
        &self,
        id: &str,
        limit: usize,
    ) -> Result<(Vec<Relationship>, usize), StoreError> {
        let mut all = self.read_relationships_from(id)?;
        let total = all.len();
        all.truncate(limit);
        Ok((all, total))
    }

    fn relationships_to(&self, id: &str) -> Result<Vec<Relationship>, StoreError> {
        self.read_relationships_to(id)
    }

    fn relationships_between(&self, from: &str, to: &str) -> Result<Vec<Relationship>, StoreError> {
        self.read_relationships_between(from, to)
    }

    fn installs_of(&self, product_id: &str) -> Result<ProductInstalls, StoreError> {
        self.read_installs_of(product_id)
    }

    fn flows_of(&self, id: &str) -> Result<Vec<crate::model::flows::Flow>, StoreError> {
        self.read_flows_of(id)
    }

    fn addresses_of(&self, id: &str) -> Result<Vec<String>, StoreError> {
        self.read_addresses_of(id)
    }

    fn flow_reporters(&self, address: &str) -> Result<Vec<String>, StoreError> {
        let nums = self.flow_reporter_nums(address)?;
        self.ids_of(&nums)
    }

    fn flow_targets(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.read_flow_targets()
    }

    fn address_holders(&self, address: &str) -> Result<Vec<String>, StoreError> {
        let nums = self.current_holder_nums(address)?;
        self.ids_of(&nums)
    }

    fn computer_summaries(&self, keys: &[u64]) -> Result<Vec<Option<ComputerSummary>>, StoreError> {
        self.read_computer_summaries(keys)
    }

    fn lookup_identity(&self, key: &IdentityKey) -> Result<Option<String>, StoreError> {
        Ok(self
            .backend
            .get(Space::Identity, key.encoded().as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn lookup_identities(&self, keys: &[IdentityKey]) -> Result<Vec<Option<String>>, StoreError> {
        let encoded: Vec<String> = keys.iter().map(IdentityKey::encoded).collect();
        let refs: Vec<&[u8]> = encoded.iter().map(|k| k.as_bytes()).collect();
        Ok(self
            .backend
            .get_many(Space::Identity, &refs)?
            .into_iter()
            .map(|v| v.map(|v| String::from_utf8_lossy(&v).into_owned()))
            .collect())
    }

    fn history(&self, ci_id: &str) -> Result<Vec<CiVersion>, StoreError> {
        self.read_history(ci_id)
    }

    fn as_of(&self, ci_id: &str, at: DateTime<Utc>) -> Result<Option<CiVersion>, StoreError> {
        self.read_as_of(ci_id, at)
    }

    fn machine_as_of(
        &self,
        computer_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<(CiVersion, Vec<Ci>)>, StoreError> {
        self.read_machine_as_of(computer_id, at)
    }

    fn list_conflicts(&self) -> Result<Vec<IdentityConflict>, StoreError> {
        self.scan_json(Space::Conflicts, Range::all())
    }

    fn list_change_records(&self) -> Result<Vec<ChangeRecord>, StoreError> {
        let mut r: Vec<ChangeRecord> = self
            .scan_json::<ingest::StoredRecord>(Space::ChangeRecords, Range::all())?
            .into_iter()
            .map(|s| s.record)
            .collect();
        r.sort_by_key(|c| c.detected_at);
        Ok(r)
    }

    fn get_change_record(&self, id: &str) -> Result<Option<ChangeRecord>, StoreError> {
        Ok(self
            .get_json::<ingest::StoredRecord>(Space::ChangeRecords, id.as_bytes())?
            .map(|s| s.record))
    }

    fn get_user(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.get_json(Space::Users, name.as_bytes())
    }

    fn list_users(&self) -> Result<Vec<User>, StoreError> {
        self.scan_json(Space::Users, Range::all())
    }

    fn list_noise_rules(&self) -> Result<Vec<NoiseRule>, StoreError> {
        let mut r: Vec<NoiseRule> = self.scan_json(Space::NoiseRules, Range::all())?;
        r.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(r)
    }

    fn severity_rules(&self) -> Result<Option<SeverityRules>, StoreError> {
        self.get_json(Space::Meta, b"severity_rules")
    }

    fn software_rules(&self) -> Result<Option<crate::model::titles::SoftwareRuleBook>, StoreError> {
        self.get_json(Space::Meta, SOFTWARE_RULES_KEY)
    }

    fn list_planned_changes(&self) -> Result<Vec<PlannedChange>, StoreError> {
        let mut r: Vec<PlannedChange> = self.scan_json(Space::PlannedChanges, Range::all())?;
        r.sort_by(|a, b| (a.window_start, &a.id).cmp(&(b.window_start, &b.id)));
        Ok(r)
    }

    fn recent_removals(&self, ci_id: &str) -> Result<Vec<RecentRemoval>, StoreError> {
        let mut prefix = ci_id.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        scan_prefix(
            self.backend.as_ref(),
            Space::Removals,
            &prefix,
            &mut |k, v| {
                out.push(codec::decode_json(&shown(Space::Removals, k), v)?);
                Ok(Flow::Continue)
            },
        )?;
        Ok(out)
    }

    fn list_licences(&self) -> Result<Vec<licence::Licence>, StoreError> {
        let mut l: Vec<licence::Licence> = self.scan_json(Space::Licences, Range::all())?;
        l.sort_by(|a, b| {
            a.name
                .to_lowercase()
                .cmp(&b.name.to_lowercase())
                .then(a.id.cmp(&b.id))
        });
        Ok(l)
    }

    fn register_settings(&self) -> Result<Option<register::RegisterSettings>, StoreError> {
        self.do_register_settings()
    }

    fn list_services(&self) -> Result<Vec<crate::model::service::Service>, StoreError> {
        let all: Vec<crate::model::service::Service> =
            self.scan_json(Space::Services, Range::all())?;
        Ok(live_by_name(all, |s| (s.deleted, &s.name, &s.id)))
    }

    fn list_baselines(&self) -> Result<Vec<crate::model::baseline::Baseline>, StoreError> {
        let all: Vec<crate::model::baseline::Baseline> =
            self.scan_json(Space::Baselines, Range::all())?;
        Ok(live_by_name(all, |b| (b.deleted, &b.name, &b.id)))
    }

    fn get_baseline(
        &self,
        id: &str,
    ) -> Result<Option<crate::model::baseline::Baseline>, StoreError> {
        self.get_json(Space::Baselines, id.as_bytes())
    }

    fn compliance_trend(&self) -> Result<Vec<crate::model::baseline::CompliancePoint>, StoreError> {
        Ok(self
            .get_json(Space::Meta, COMPLIANCE_TREND_KEY)?
            .unwrap_or_default())
    }

    fn put_compliance_points(
        &self,
        points: Vec<crate::model::baseline::CompliancePoint>,
    ) -> Result<(), StoreError> {
        transact::<(), StoreError>(self.backend.as_ref(), |tx| {
            let mut trend: Vec<crate::model::baseline::CompliancePoint> =
                tx_json(tx, Space::Meta, COMPLIANCE_TREND_KEY)?.unwrap_or_default();
            for p in &points {
                trend = crate::model::baseline::with_point(trend, p.clone());
            }
            tx_put_json(tx, Space::Meta, COMPLIANCE_TREND_KEY, &trend)
        })?;
        self.backend.flush()
    }

    fn get_service(&self, id: &str) -> Result<Option<crate::model::service::Service>, StoreError> {
        self.get_json(Space::Services, id.as_bytes())
    }

    fn service_history(&self, id: &str) -> Result<Vec<crate::model::service::Service>, StoreError> {
        let mut prefix = id.as_bytes().to_vec();
        prefix.push(0);
        let end = super::backend::prefix_end(&prefix);
        self.scan_json(
            Space::ServiceVersions,
            Range::prefix(&prefix, end.as_deref()),
        )
    }

    fn health_settings(&self) -> Result<Option<crate::model::health::HealthSettings>, StoreError> {
        self.get_json(Space::Meta, HEALTH_SETTINGS_KEY)
    }

    fn health_trend(&self) -> Result<Vec<crate::model::health::HealthPoint>, StoreError> {
        Ok(self
            .get_json(Space::Meta, HEALTH_TREND_KEY)?
            .unwrap_or_default())
    }

    fn put_health_point(&self, point: crate::model::health::HealthPoint) -> Result<(), StoreError> {
        transact::<(), StoreError>(self.backend.as_ref(), |tx| {
            let trend: Vec<crate::model::health::HealthPoint> =
                tx_json(tx, Space::Meta, HEALTH_TREND_KEY)?.unwrap_or_default();
            let trend = crate::model::health::with_point(trend, point.clone());
            tx_put_json(tx, Space::Meta, HEALTH_TREND_KEY, &trend)
        })?;
        self.backend.flush()
    }

    fn write_advisories(
        &self,
        writes: &[crate::model::vuln::AdvisoryWrite],
    ) -> Result<Vec<AdvisoryOutcome>, StoreError> {
        self.do_write_advisories(writes)
    }

    fn get_advisory(&self, id: &str) -> Result<Option<crate::model::vuln::Advisory>, StoreError> {
        self.get_json(Space::Advisories, id.as_bytes())
    }

    fn advisories_for(
        &self,
        ecosystem: &str,
        package: &str,
    ) -> Result<Vec<crate::model::vuln::Advisory>, StoreError> {
        self.do_advisories_for(ecosystem, package)
    }

    fn exposures_generation(&self) -> Result<u64, StoreError> {
        self.do_exposures_generation()
    }

    fn computer_keys(&self) -> Result<Vec<u64>, StoreError> {
        self.do_computer_keys()
    }

    fn computer_key(&self, id: &str) -> Result<Option<u64>, StoreError> {
        self.do_computer_key(id)
    }

    fn rematch_marks(&self, limit: usize) -> Result<Vec<(u64, u64)>, StoreError> {
        self.do_rematch_marks(limit)
    }

    fn exposure_ledgers(
        &self,
        keys: &[u64],
    ) -> Result<Vec<Option<(crate::model::vuln::ExposureLedger, u64)>>, StoreError> {
        self.do_exposure_ledgers(keys)
    }

    fn write_exposures(&self, writes: &crate::store::ExposureWrites) -> Result<bool, StoreError> {
        self.do_write_exposures(writes)
    }

    fn scan_advisory_index(
        &self,
        visit: &mut dyn FnMut(&str, &str, &str) -> bool,
    ) -> Result<(), StoreError> {
        self.do_scan_advisory_index(visit)
    }

    fn advisory_count(&self) -> Result<usize, StoreError> {
        self.backend.count(Space::Advisories)
    }

    fn advisories_generation(&self) -> Result<u64, StoreError> {
        self.do_advisories_generation()
    }

    fn scan_variants(
        &self,
        visit: &mut dyn FnMut(&str, &crate::model::Package) -> bool,
    ) -> Result<(), StoreError> {
        self.do_scan_variants(visit)
    }

    fn commit_people(
        &self,
        write: &PeopleWrite,
        audit: AuditDraft,
        at: DateTime<Utc>,
    ) -> Result<AuditEntry, PeopleWriteError> {
        self.do_commit_people(write, audit, at)
    }

    fn list_audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.do_list_audit(after, limit)
    }

    fn audit_head(&self) -> Result<u64, StoreError> {
        self.do_audit_head()
    }

    fn sequence_events(&self, max: usize) -> Result<usize, StoreError> {
        self.do_sequence_events(max)
    }

    fn feed_since(&self, cursor: u64, limit: usize) -> Result<Vec<FeedEvent>, StoreError> {
        self.do_feed_since(cursor, limit)
    }

    fn feed_event(&self, cursor: u64) -> Result<Option<FeedEvent>, StoreError> {
        self.do_feed_event(cursor)
    }

    fn list_webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        self.do_list_webhooks()
    }

    fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.do_due_deliveries(now, limit)
    }

    fn list_deliveries(&self) -> Result<Vec<Delivery>, StoreError> {
        let mut d: Vec<Delivery> = self.scan_json(Space::Deliveries, Range::all())?;
        d.sort_by_key(|d| d.cursor);
        Ok(d)
    }

    fn update_delivery(&self, id: &str, next: Option<&Delivery>) -> Result<(), StoreError> {
        self.do_update_delivery(id, next)
    }

    fn find_api_token(&self, id: &str) -> Result<Option<ApiToken>, StoreError> {
        self.get_json(Space::ApiTokens, id.as_bytes())
    }

    fn list_api_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let mut t: Vec<ApiToken> = self.scan_json(Space::ApiTokens, Range::all())?;
        t.sort_by_key(|t| t.created_at);
        Ok(t)
    }

    fn touch_api_token(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.do_touch_api_token(id, at)
    }
}

/// Live records and bytes of one key space (what `census-collector stats` prints).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SpaceStats {
    pub space: &'static str,
    pub records: u64,
    pub key_bytes: u64,
    pub value_bytes: u64,
}

impl Cmdb {
    /// Records and live bytes per key space (a full scan: an admin's question, not ingest's).
    pub fn space_stats(&self) -> Result<Vec<SpaceStats>, StoreError> {
        Space::ALL.iter().map(|s| self.stats_of(*s)).collect()
    }

    /// [`Cmdb::space_stats`] of the space stored under `name`.
    pub fn space_stats_of(&self, name: &str) -> Result<SpaceStats, StoreError> {
        match Space::ALL.iter().find(|s| s.name() == name) {
            Some(space) => self.stats_of(*space),
            None => Err(StoreError::Io(format!("no key space is named {name}"))),
        }
    }

    fn stats_of(&self, space: Space) -> Result<SpaceStats, StoreError> {
        let mut s = SpaceStats {
            space: space.name(),
            ..Default::default()
        };
        self.backend.scan(space, Range::all(), &mut |k, v| {
            s.records += 1;
            s.key_bytes += k.len() as u64;
            s.value_bytes += v.len() as u64;
            Ok(Flow::Continue)
        })?;
        Ok(s)
    }
}

/// Documents people name (services, baselines) as lists show them: deleted ones dropped,
/// by name without regard to case, the id breaking ties.
fn live_by_name<T>(mut all: Vec<T>, key: impl Fn(&T) -> (bool, &String, &String)) -> Vec<T> {
    all.retain(|d| !key(d).0);
    all.sort_by_cached_key(|d| {
        let (_, name, id) = key(d);
        (name.to_lowercase(), id.clone())
    });
    all
}
