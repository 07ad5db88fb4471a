//! The store's records as bytes: compact binary (postcard, zstd for the large ones) for
//! what grows with the fleet — computers, their components, installs, software variants,
//! history steps — and JSON for the few records people write (rules, users, webhooks).
//!
//! Architecture Invariant: every byte layout lives here, nowhere else. postcard encodes an
//! enum by its variant's position, so the model enums stored here (`CiClass`, `CiStatus`,
//! `RelKind`) only ever gain variants at the end; `golden_bytes_of_a_ci_record` pins it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StoreError;
use crate::model::*;

/// An attribute value: `serde_json::Value` in a form a non-self-describing format can hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AttrValue {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(String),
    List(Vec<AttrValue>),
    Map(Vec<(String, AttrValue)>),
}

impl From<&Value> for AttrValue {
    fn from(v: &Value) -> Self {
        match v {
            Value::Null => AttrValue::Null,
            Value::Bool(b) => AttrValue::Bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => AttrValue::U64(u),
                (None, Some(i), _) => AttrValue::I64(i),
                (None, None, Some(f)) => AttrValue::F64(f),
                (None, None, None) => AttrValue::Null,
            },
            Value::String(s) => AttrValue::Str(s.clone()),
            Value::Array(a) => AttrValue::List(a.iter().map(AttrValue::from).collect()),
            Value::Object(m) => AttrValue::Map(
                m.iter()
                    .map(|(k, v)| (k.clone(), AttrValue::from(v)))
                    .collect(),
            ),
        }
    }
}

impl AttrValue {
    /// [`AttrValue::to_value`] without copying the strings: reads of whole records take
    /// this path, where copying dominated the cost.
    pub fn into_value(self) -> Value {
        match self {
            AttrValue::Str(s) => Value::String(s),
            AttrValue::List(l) => Value::Array(l.into_iter().map(AttrValue::into_value).collect()),
            AttrValue::Map(m) => {
                Value::Object(m.into_iter().map(|(k, v)| (k, v.into_value())).collect())
            }
            scalar => scalar.to_value(),
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            AttrValue::Null => Value::Null,
            AttrValue::Bool(b) => Value::Bool(*b),
            AttrValue::U64(u) => Value::from(*u),
            AttrValue::I64(i) => Value::from(*i),
            AttrValue::F64(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            AttrValue::Str(s) => Value::String(s.clone()),
            AttrValue::List(l) => Value::Array(l.iter().map(AttrValue::to_value).collect()),
            AttrValue::Map(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_value())).collect())
            }
        }
    }
}

pub type AttrList = Vec<(String, AttrValue)>;

pub fn attr_list(a: &Attributes) -> AttrList {
    a.iter()
        .map(|(k, v)| (k.clone(), AttrValue::from(v)))
        .collect()
}

pub fn attributes(l: &AttrList) -> Attributes {
    l.iter().map(|(k, v)| (k.clone(), v.to_value())).collect()
}

pub fn into_attributes(l: AttrList) -> Attributes {
    l.into_iter().map(|(k, v)| (k, v.into_value())).collect()
}

pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub fn time(us: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(us).unwrap_or_default()
}

/// One CI as stored: a computer, a component inside its computer's record, or a shared CI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CiRec {
    pub id: String,
    pub class: CiClass,
    pub name: String,
    pub status: CiStatus,
    pub version: u64,
    /// When the current version began (µs): what `as_of` reports as `valid_from`.
    pub versioned_at: i64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub sources: Vec<String>,
    pub attributes: AttrList,
    pub volatile: AttrList,
}

impl CiRec {
    pub fn from_ci(ci: &Ci, versioned_at: DateTime<Utc>) -> CiRec {
        CiRec {
            id: ci.id.clone(),
            class: ci.class,
            name: ci.name.clone(),
            status: ci.status,
            version: ci.version,
            versioned_at: micros(versioned_at),
            first_seen: micros(ci.first_seen),
            last_seen: micros(ci.last_seen),
            sources: ci.sources.clone(),
            attributes: attr_list(&ci.attributes),
            volatile: attr_list(&ci.volatile),
        }
    }

    pub fn into_ci(self, owner: Option<&str>) -> Ci {
        Ci {
            id: self.id,
            class: self.class,
            name: self.name,
            attributes: into_attributes(self.attributes),
            volatile: into_attributes(self.volatile),
            status: self.status,
            first_seen: time(self.first_seen),
            last_seen: time(self.last_seen),
            sources: self.sources,
            version: self.version,
            owner: owner.map(str::to_string),
        }
    }

    pub fn to_ci(&self, owner: Option<&str>) -> Ci {
        Ci {
            id: self.id.clone(),
            class: self.class,
            name: self.name.clone(),
            attributes: attributes(&self.attributes),
            volatile: attributes(&self.volatile),
            status: self.status,
            first_seen: time(self.first_seen),
            last_seen: time(self.last_seen),
            sources: self.sources.clone(),
            version: self.version,
            owner: owner.map(str::to_string),
        }
    }

    /// The configuration alone, as history keeps it: volatile facts are not versioned.
    pub fn configuration(&self) -> CiRec {
        CiRec {
            volatile: Vec::new(),
            last_seen: self.versioned_at,
            ..self.clone()
        }
    }

    /// Same configuration (what a version is about), whatever the volatile facts.
    pub fn same_configuration(&self, other: &CiRec) -> bool {
        self.id == other.id
            && self.class == other.class
            && self.name == other.name
            && self.status == other.status
            && self.version == other.version
            && self.attributes == other.attributes
    }
}

/// Identifies an edge inside a computer's record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EdgeKey {
    pub from: String,
    pub kind: RelKind,
    pub to: String,
    pub disc: String,
}

impl EdgeKey {
    pub fn of(k: &RelKey) -> EdgeKey {
        EdgeKey {
            from: k.from.clone(),
            kind: k.kind,
            to: k.to.clone(),
            disc: k.discriminator.clone(),
        }
    }
    pub fn rel_key(&self) -> RelKey {
        RelKey {
            from: self.from.clone(),
            kind: self.kind,
            to: self.to.clone(),
            discriminator: self.disc.clone(),
        }
    }
}

/// A computer's own record: the computer CI and the bookkeeping of its history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComputerRec {
    /// None while only edges or components were written for this number.
    pub ci: Option<CiRec>,
    /// Raised by every write of this machine: the compare-and-set token of a commit.
    pub revision: u64,
    /// History steps written so far (the newest step's number).
    pub steps: u32,
}

/// What a computer owns besides installs: its components (retired ones too, so a component
/// that comes back continues its version line) and every edge from it or them that is not
/// an install.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentsRec {
    pub components: Vec<CiRec>,
    pub edges: Vec<(EdgeKey, AttrList)>,
}

/// One install: a fleet-wide variant (name, version, arch, ...) on this computer. The edge
/// attributes a variant cannot hold (an odd value, another key) stay in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstallRec {
    pub product: u32,
    pub disc: String,
    pub variant: u32,
    /// Seconds since the epoch, and the nanoseconds within that second (ingest keeps
    /// whole seconds; an edge written otherwise keeps its fraction).
    pub install_date: Option<(i64, u32)>,
    pub extra: AttrList,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstallsRec {
    pub installs: Vec<InstallRec>,
}

/// A software variant, interned once per fleet: the product and the [`Package`] that
/// thousands of computers' installs share.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VariantRec {
    pub product: u32,
    pub package: Package,
}

/// A variant's key in the index: 16 bytes of SHA-256 over its encoding (the encoding
/// itself is as long as the record it indexes).
pub fn variant_key(encoded: &[u8]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(encoded);
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

impl VariantRec {
    /// Splits an edge's attributes into its variant, install date and the rest.
    pub fn split(product: u32, edge: &Attributes) -> (VariantRec, Option<(i64, u32)>, AttrList) {
        let variant = VariantRec {
            product,
            package: Package::from_attributes(edge),
        };
        // A date is kept as numbers only when it renders back to the same text.
        let install_date = edge
            .get("install_date")
            .and_then(Value::as_str)
            .and_then(|s| {
                let t = DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc);
                let parts = (t.timestamp(), t.timestamp_subsec_nanos());
                (render_date(parts)? == s).then_some(parts)
            });
        let extra = edge
            .iter()
            .filter(|(k, v)| {
                let held = Package::FIELDS.contains(&k.as_str()) && v.is_string();
                let dated = k.as_str() == "install_date" && install_date.is_some();
                !held && !dated
            })
            .map(|(k, v)| (k.clone(), AttrValue::from(v)))
            .collect();
        (variant, install_date, extra)
    }

    /// The edge attributes back, as they were given.
    pub fn edge_attributes(
        &self,
        install_date: Option<(i64, u32)>,
        extra: &AttrList,
    ) -> Attributes {
        edge_attributes(&self.package, install_date, extra)
    }
}

/// An install's edge attributes: its package's fields, its date, and anything else it had.
pub fn edge_attributes(
    package: &Package,
    install_date: Option<(i64, u32)>,
    extra: &AttrList,
) -> Attributes {
    let mut a: Attributes = Package::FIELDS
        .iter()
        .zip(package.fields())
        .filter_map(|(k, v)| Some((k.to_string(), Value::String(v.clone()?))))
        .collect();
    if let Some(text) = install_date.and_then(render_date) {
        a.insert("install_date".into(), Value::String(text));
    }
    for (k, v) in extra {
        a.insert(k.clone(), v.to_value());
    }
    a
}

pub fn render_date((secs, nanos): (i64, u32)) -> Option<String> {
    Some(DateTime::<Utc>::from_timestamp(secs, nanos)?.to_rfc3339())
}

/// How to go one step back in a computer's history: the state before the step of
/// everything it changed (`None`: it did not exist).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Undo {
    /// Before this step the record held nothing (a computer's first inventory): its undo
    /// is "remove everything", not a list of every install.
    pub created: bool,
    pub cis: Vec<(String, CiBefore)>,
    pub edges: Vec<(EdgeKey, Option<AttrList>)>,
    pub installs: Vec<((u32, String), Option<InstallRec>)>,
}

impl Undo {
    pub fn is_empty(&self) -> bool {
        !self.created && self.cis.is_empty() && self.edges.is_empty() && self.installs.is_empty()
    }
}

/// A CI before a step: absent, or what the step changed in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CiBefore {
    Absent,
    Changed(CiDelta),
}

/// The old values of what changed in a CI: its version line always, other fields only when
/// they changed (a package upgrade changes the computer's version, nothing else).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CiDelta {
    pub version: u64,
    pub versioned_at: i64,
    pub name: Option<String>,
    pub status: Option<CiStatus>,
    pub first_seen: Option<i64>,
    pub sources: Option<Vec<String>>,
    /// Each changed attribute's old value (`None`: it was absent).
    pub attributes: Vec<(String, Option<AttrValue>)>,
}

impl CiDelta {
    /// What to keep to turn `after` back into `before`.
    pub fn between(before: &CiRec, after: &CiRec) -> CiDelta {
        let mut attributes = Vec::new();
        let old: BTreeMap<&str, &AttrValue> = before
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        let new: BTreeMap<&str, &AttrValue> = after
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        for (k, v) in &old {
            if new.get(k) != Some(v) {
                attributes.push((k.to_string(), Some((*v).clone())));
            }
        }
        for k in new.keys() {
            if !old.contains_key(k) {
                attributes.push((k.to_string(), None));
            }
        }
        CiDelta {
            version: before.version,
            versioned_at: before.versioned_at,
            name: (before.name != after.name).then(|| before.name.clone()),
            status: (before.status != after.status).then_some(before.status),
            first_seen: (before.first_seen != after.first_seen).then_some(before.first_seen),
            sources: (before.sources != after.sources).then(|| before.sources.clone()),
            attributes,
        }
    }

    /// Turns the CI as it is after the step back into what it was before.
    pub fn apply(&self, rec: &mut CiRec) {
        rec.version = self.version;
        rec.versioned_at = self.versioned_at;
        if let Some(n) = &self.name {
            rec.name = n.clone();
        }
        if let Some(s) = self.status {
            rec.status = s;
        }
        if let Some(f) = self.first_seen {
            rec.first_seen = f;
        }
        if let Some(s) = &self.sources {
            rec.sources = s.clone();
        }
        if !self.attributes.is_empty() {
            let mut map: BTreeMap<String, AttrValue> =
                std::mem::take(&mut rec.attributes).into_iter().collect();
            for (k, old) in &self.attributes {
                match old {
                    Some(v) => {
                        map.insert(k.clone(), v.clone());
                    }
                    None => {
                        map.remove(k);
                    }
                }
            }
            rec.attributes = map.into_iter().collect();
        }
        rec.volatile.clear();
        rec.last_seen = rec.versioned_at;
    }
}

/// One step of a computer's history: when, which change record, and its undo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRec {
    pub valid_from: i64,
    pub change_record: Option<String>,
    pub undo: Undo,
}

/// A computer's whole configuration after a step, kept every [`CHECKPOINT_EVERY`] steps so
/// reading a past state never walks back more than that many steps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRec {
    pub computer: Option<CiRec>,
    pub components: Vec<CiRec>,
    pub edges: Vec<(EdgeKey, AttrList)>,
    pub installs: Vec<InstallRec>,
}

pub const CHECKPOINT_EVERY: u32 = 64;

/// What a package query needs of a computer without reading its record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRec {
    pub id: String,
    pub name: String,
    pub status: CiStatus,
}

// ---- encodings ----

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: what.to_string(),
        message: e.to_string(),
    }
}

pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_allocvec(v).map_err(|e| StoreError::Io(format!("encode: {e}")))
}

pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| corrupt(what, e))
}

const RAW: u8 = 0;
const ZSTD: u8 = 1;
/// Below this a record is stored as it is: zstd's frame costs more than it saves.
const COMPRESS_FROM: usize = 200;
/// Most a stored record may expand to (a computer with every component and 100,000 edges
/// is far below it; a corrupt length field is not).
const MAX_RECORD_BYTES: usize = 256 * 1024 * 1024;

thread_local! {
    /// One compression context per thread: a fresh context allocates its tables again.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    /// The same for decompression: every read of a computer decompresses three records.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// A stored zstd frame, decompressed. Frames this store wrote declare their size, which
/// sizes the output once; a frame without one, or declaring more than a record may hold,
/// goes through the bounded streaming decoder, which refuses what exceeds the limit.
fn decompress(what: &str, frame: &[u8]) -> Result<Vec<u8>, StoreError> {
    let declared = zstd::zstd_safe::get_frame_content_size(frame)
        .ok()
        .flatten();
    let Some(size) = declared.filter(|s| *s <= MAX_RECORD_BYTES as u64) else {
        return census_shared::wire::zstd_decompress_bounded(frame, MAX_RECORD_BYTES)
            .map_err(|e| corrupt(what, e));
    };
    DECOMPRESSOR.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| corrupt(what, e))?);
        }
        match slot.as_mut() {
            Some(d) => d
                .decompress(frame, size as usize)
                .map_err(|e| corrupt(what, e)),
            None => Err(corrupt(what, "zstd decompressor unavailable")),
        }
    })
}

/// Level 1: a changed computer rewrites its installs record, and level 3 spent 16 % of a
/// delta's collector CPU there for records 0.4 % smaller (store-bench, 2,000 computers).
fn compress(bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    COMPRESSOR.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            *slot =
                Some(zstd::bulk::Compressor::new(1).map_err(|e| StoreError::Io(e.to_string()))?);
        }
        match slot.as_mut() {
            Some(c) => c.compress(bytes).map_err(|e| StoreError::Io(e.to_string())),
            None => Err(StoreError::Io("zstd compressor unavailable".into())),
        }
    })
}

/// postcard, behind a one-byte tag saying whether zstd follows.
pub fn encode_packed<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    let raw = encode(v)?;
    if raw.len() < COMPRESS_FROM {
        let mut out = Vec::with_capacity(raw.len() + 1);
        out.push(RAW);
        out.extend_from_slice(&raw);
        return Ok(out);
    }
    let z = compress(&raw)?;
    let mut out = Vec::with_capacity(z.len() + 1);
    out.push(ZSTD);
    out.extend_from_slice(&z);
    Ok(out)
}

pub fn decode_packed<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&RAW, rest)) => decode(what, rest),
        Some((&ZSTD, rest)) => decode(what, &decompress(what, rest)?),
        Some((tag, _)) => Err(corrupt(what, format!("unknown record tag {tag}"))),
        None => Err(corrupt(what, "empty record")),
    }
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// JSON records larger than this are stored zstd-compressed (change records, feed events).
const COMPRESS_JSON_FROM: usize = 512;

/// JSON for the records people write and read rarely; compressed when large. Readers tell
/// the two apart by zstd's magic (JSON never starts with it), so records written before
/// compression existed read unchanged.
pub fn encode_json<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    let json = serde_json::to_vec(v).map_err(|e| StoreError::Io(e.to_string()))?;
    if json.len() < COMPRESS_JSON_FROM {
        return Ok(json);
    }
    compress(&json)
}

pub fn decode_json<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    if bytes.starts_with(&ZSTD_MAGIC) {
        let json = decompress(what, bytes)?;
        serde_json::from_slice(&json).map_err(|e| corrupt(what, e))
    } else {
        serde_json::from_slice(bytes).map_err(|e| corrupt(what, e))
    }
}

// ---- keys ----

/// A CI number: computers, shared CIs and anything an edge points at get one; components
/// are found through their computer's number.
pub fn num_key(num: u32) -> [u8; 4] {
    num.to_be_bytes()
}

/// An address index key (also a flow target key): the address, 0, the computer number.
pub fn address_key(address: &str, num: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(address.len() + 5);
    k.extend_from_slice(address.as_bytes());
    k.push(0);
    k.extend_from_slice(&num.to_be_bytes());
    k
}

/// The computer number an address key ends with.
pub fn address_key_num(key: &[u8]) -> Option<u32> {
    read_num(key.get(key.len().checked_sub(4)?..)?)
}

pub fn read_num(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?))
}

pub fn step_key(num: u32, step: u32) -> [u8; 8] {
    let mut k = [0u8; 8];
    k[..4].copy_from_slice(&num.to_be_bytes());
    k[4..].copy_from_slice(&step.to_be_bytes());
    k
}

pub fn read_step_key(k: &[u8]) -> Option<(u32, u32)> {
    Some((read_num(k)?, read_num(k.get(4..)?)?))
}

/// Shared CIs keyed by class first, so listing one class reads only that class.
pub fn shared_key(class: CiClass, num: u32) -> [u8; 5] {
    let mut k = [0u8; 5];
    k[0] = class_tag(class);
    k[1..].copy_from_slice(&num.to_be_bytes());
    k
}

pub fn class_tag(class: CiClass) -> u8 {
    CiClass::ALL.iter().position(|c| *c == class).unwrap_or(0) as u8
}

pub fn kind_tag(kind: RelKind) -> u8 {
    RelKind::ALL.iter().position(|k| *k == kind).unwrap_or(0) as u8
}

pub fn kind_of_tag(tag: u8) -> Option<RelKind> {
    RelKind::ALL.get(tag as usize).copied()
}

/// How a store cuts computer numbers into posting chunks: a chunk holds the computers
/// `chunk << bits ..` that install one variant, as a sorted list or a bitmap, whichever is
/// smaller. A store keeps its layout in its meta record (`POSTINGS_META_KEY`): every
/// posting it holds was written with it, so a store never mixes two.
///
/// The layout is chosen when a store is made (`for_new_store`) and never changes after. A
/// first inventory rewrites one chunk per variant it installs: on PostgreSQL every rewrite
/// leaves a dead row version until vacuum, so chunks of 4,096 computers (513-byte bitmaps)
/// left the postings table 12 times its live size after a burst of discovery, chunks of
/// 256 (33-byte bitmaps) about 2 times; but a package query reads 16 times the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Postings {
    bits: u32,
}

/// Where a store's meta record keeps its posting layout (chunk bits, u32 big-endian).
pub const POSTINGS_META_KEY: &[u8] = b"postings_chunk_bits";

impl Postings {
    /// 256 computers a chunk: fewer bytes rewritten per first inventory.
    pub const NARROW: Postings = Postings { bits: 8 };
    /// 4,096 computers a chunk: every new store, and every store made before the layout
    /// was recorded.
    pub const WIDE: Postings = Postings { bits: 12 };

    /// The layout a new store gets: narrow on a database many collectors share (its
    /// rewrites leave row versions behind: 64.7 → 51.6 KB per computer), wide on an
    /// embedded engine (its package query at 100,000 computers is measured with them).
    /// On one host at 10,000 computers the package query took as long either way on both
    /// engines (bench/RESULTS.md).
    pub fn for_new_store(shared_database: bool) -> Postings {
        if shared_database {
            Postings::NARROW
        } else {
            Postings::WIDE
        }
    }

    /// The layout a store's meta record names; a store without one is `WIDE`.
    pub fn from_meta(stored: Option<&[u8]>) -> Result<Postings, StoreError> {
        let Some(bytes) = stored else {
            return Ok(Postings::WIDE);
        };
        let bits = <[u8; 4]>::try_from(bytes)
            .map(u32::from_be_bytes)
            .map_err(|_| corrupt("meta/postings_chunk_bits", "not a u32"))?;
        Postings::from_bits(bits)
    }

    pub fn from_bits(bits: u32) -> Result<Postings, StoreError> {
        if !(3..=15).contains(&bits) {
            return Err(corrupt(
                "meta/postings_chunk_bits",
                "chunk bits outside 3..=15",
            ));
        }
        Ok(Postings { bits })
    }

    pub fn bits(self) -> u32 {
        self.bits
    }

    pub fn to_meta(self) -> [u8; 4] {
        self.bits.to_be_bytes()
    }

    /// Computers a chunk holds.
    pub fn slots(self) -> usize {
        1 << self.bits
    }

    fn bitmap_bytes(self) -> usize {
        self.slots() / 8
    }

    pub fn chunk_of(self, machine: u32) -> (u32, u16) {
        (
            machine >> self.bits,
            (machine & (self.slots() as u32 - 1)) as u16,
        )
    }

    pub fn machine(self, chunk: u32, offset: u16) -> u32 {
        (chunk << self.bits) | offset as u32
    }

    /// A chunk's computers (offsets within the chunk, ascending) as stored: varint gaps, or
    /// a bitmap once that is smaller (a variant most of the fleet has costs one bit per
    /// computer).
    pub fn encode(self, offsets: &[u16]) -> Vec<u8> {
        let mut list = Vec::with_capacity(offsets.len() + 4);
        list.push(LIST);
        let mut prev: i32 = -1;
        for &o in offsets {
            let mut gap = (o as i32 - prev) as u32;
            prev = o as i32;
            while gap >= 0x80 {
                list.push((gap as u8) | 0x80);
                gap >>= 7;
            }
            list.push(gap as u8);
        }
        if list.len() <= self.bitmap_bytes() + 1 {
            return list;
        }
        let mut bitmap = vec![0u8; self.bitmap_bytes() + 1];
        bitmap[0] = BITMAP;
        for &o in offsets {
            bitmap[1 + (o as usize >> 3)] |= 1 << (o & 7);
        }
        bitmap
    }

    /// Adds or removes one computer in a stored chunk without rebuilding a bitmap: `None`
    /// when nothing changes, `Some(None)` when the chunk is now empty.
    pub fn update(
        self,
        what: &str,
        stored: Option<&[u8]>,
        offset: u16,
        add: bool,
    ) -> Result<Option<Option<Vec<u8>>>, StoreError> {
        if offset as usize >= self.slots() {
            return Err(corrupt(what, "posting offset outside its chunk"));
        }
        if let Some([BITMAP, rest @ ..]) = stored {
            if rest.len() != self.bitmap_bytes() {
                return Err(corrupt(what, "not a posting chunk"));
            }
            let (byte, bit) = (1 + (offset as usize >> 3), 1u8 << (offset & 7));
            let present = stored.is_some_and(|b| b[byte] & bit != 0);
            if present == add {
                return Ok(None);
            }
            if add {
                let mut b = stored.map(<[u8]>::to_vec).unwrap_or_default();
                b[byte] |= bit;
                return Ok(Some(Some(b)));
            }
            // A removal may make the list form smaller again.
            let mut offsets = self.decode(what, stored.unwrap_or_default())?;
            offsets.retain(|&o| o != offset);
            return Ok(Some((!offsets.is_empty()).then(|| self.encode(&offsets))));
        }
        let mut offsets = match stored {
            Some(b) => self.decode(what, b)?,
            None => Vec::new(),
        };
        match (offsets.binary_search(&offset), add) {
            (Err(at), true) => offsets.insert(at, offset),
            (Ok(at), false) => {
                offsets.remove(at);
            }
            _ => return Ok(None),
        }
        Ok(Some((!offsets.is_empty()).then(|| self.encode(&offsets))))
    }

    pub fn decode(self, what: &str, bytes: &[u8]) -> Result<Vec<u16>, StoreError> {
        match bytes.split_first() {
            Some((&LIST, rest)) => {
                let mut out = Vec::with_capacity(rest.len());
                let (mut at, mut gap, mut shift) = (-1i32, 0u32, 0u32);
                for &b in rest {
                    gap |= ((b & 0x7f) as u32) << shift;
                    if b & 0x80 != 0 {
                        shift += 7;
                        if shift > 14 {
                            return Err(corrupt(what, "posting gap too long"));
                        }
                        continue;
                    }
                    at += gap as i32;
                    if gap == 0 || at >= self.slots() as i32 {
                        return Err(corrupt(what, "posting out of order or out of range"));
                    }
                    out.push(at as u16);
                    gap = 0;
                    shift = 0;
                }
                if shift != 0 {
                    return Err(corrupt(what, "posting list cut short"));
                }
                Ok(out)
            }
            Some((&BITMAP, rest)) if rest.len() == self.bitmap_bytes() => {
                let mut out = Vec::new();
                for (i, &byte) in rest.iter().enumerate() {
                    for bit in 0..8 {
                        if byte & (1 << bit) != 0 {
                            out.push((i * 8 + bit) as u16);
                        }
                    }
                }
                Ok(out)
            }
            _ => Err(corrupt(what, "not a posting chunk")),
        }
    }
}

/// Who installs a variant, one chunk of computer numbers: product, kind, variant, chunk. A
/// product's postings are grouped by variant, so a version filter skips what it rejects.
pub fn postings_key(product: u32, variant: u32, chunk: u32) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[..4].copy_from_slice(&product.to_be_bytes());
    k[4] = kind_tag(RelKind::Installs);
    k[5..9].copy_from_slice(&variant.to_be_bytes());
    k[9..].copy_from_slice(&chunk.to_be_bytes());
    k
}

const LIST: u8 = 0;
const BITMAP: u8 = 1;

/// Reverse entry of any other edge that leaves its computer's record (an OS release, a
/// subnet): target, kind, computer, then the edge's own key.
pub fn rev_edge_key(to: u32, machine: u32, edge: &EdgeKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + edge.from.len() + edge.to.len() + edge.disc.len());
    k.extend_from_slice(&to.to_be_bytes());
    k.push(kind_tag(edge.kind));
    k.extend_from_slice(&machine.to_be_bytes());
    k.extend_from_slice(edge.from.as_bytes());
    k.push(0);
    k.extend_from_slice(edge.to.as_bytes());
    k.push(0);
    k.extend_from_slice(edge.disc.as_bytes());
    k
}

/// What a reverse key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevEntry {
    Postings {
        product: u32,
        variant: u32,
        chunk: u32,
    },
    Edge {
        to: u32,
        machine: u32,
        edge: EdgeKey,
    },
}

pub fn read_rev_key(k: &[u8]) -> Option<RevEntry> {
    let to = read_num(k)?;
    let kind = kind_of_tag(*k.get(4)?)?;
    if kind == RelKind::Installs {
        if k.len() != 13 {
            return None;
        }
        return Some(RevEntry::Postings {
            product: to,
            variant: read_num(&k[5..])?,
            chunk: read_num(&k[9..])?,
        });
    }
    let machine = read_num(k.get(5..)?)?;
    let rest = k.get(9..)?;
    let mut parts = rest.splitn(3, |&b| b == 0);
    let from = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let to_id = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let disc = String::from_utf8(parts.next()?.to_vec()).ok()?;
    Some(RevEntry::Edge {
        to,
        machine,
        edge: EdgeKey {
            from,
            kind,
            to: to_id,
            disc,
        },
    })
}

/// Edges keyed for a computer's record, in key order.
pub type EdgeMap = BTreeMap<EdgeKey, AttrList>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_values_survive_the_round_trip() {
        let v = serde_json::json!({
            "a": null, "b": true, "c": 18446744073709551615u64, "d": -5, "e": 1.5,
            "f": "text", "g": [1, "x", {"h": false}], "i": {}, "j": 1.0
        });
        let Value::Object(m) = &v else { unreachable!() };
        let attrs: Attributes = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let bytes = encode(&attr_list(&attrs)).unwrap();
        let back = attributes(&decode::<AttrList>("t", &bytes).unwrap());
        assert_eq!(back, attrs);
        assert!(back["j"].is_f64(), "1.0 stays a float");
    }

    #[test]
    fn golden_bytes_of_a_ci_record() {
        // The on-disk layout: changing it (reordering a model enum, a field) breaks every
        // stored computer, so it must come with a schema version and a migration.
        let rec = CiRec {
            id: "cmp_1".into(),
            class: CiClass::Service,
            name: "n".into(),
            status: CiStatus::Retired,
            version: 2,
            versioned_at: 3,
            first_seen: -1,
            last_seen: 4,
            sources: vec!["a".into()],
            attributes: vec![("k".into(), AttrValue::U64(5))],
            volatile: vec![],
        };
        assert_eq!(
            hex::encode(encode(&rec).unwrap()),
            "05636d705f3107016e020206010801016101016b020500"
        );
    }

    #[test]
    fn variants_split_and_rebuild_edge_attributes_exactly() {
        let mut edge = Attributes::new();
        edge.insert("name".into(), "openssl".into());
        edge.insert("version".into(), "3.0.11-1~deb12u2".into());
        edge.insert("arch".into(), "amd64".into());
        edge.insert("source".into(), "dpkg".into());
        edge.insert("install_date".into(), "2026-01-01T10:00:00+00:00".into());
        edge.insert("odd".into(), 7.into());
        let (v, date, extra) = VariantRec::split(9, &edge);
        assert_eq!(v.product, 9);
        assert!(date.is_some());
        assert_eq!(extra.len(), 1);
        assert_eq!(v.edge_attributes(date, &extra), edge);
        // Agents report file times to the nanosecond (regression: kept as microseconds, every
        // package with such a date drifted on every snapshot).
        edge.insert(
            "install_date".into(),
            "2026-11-30T15:40:02.057146685+00:00".into(),
        );
        let (v, date, extra) = VariantRec::split(9, &edge);
        assert!(date.is_some() && extra.len() == 1);
        assert_eq!(v.edge_attributes(date, &extra), edge);
        // A date in another rendering stays text.
        edge.insert("install_date".into(), "2026-01-01T10:00:00Z".into());
        let (v, date, extra) = VariantRec::split(9, &edge);
        assert_eq!(date, None);
        assert_eq!(v.edge_attributes(date, &extra), edge);
        // A field of another type stays as it was.
        edge.insert("version".into(), 3.into());
        let (v, date, extra) = VariantRec::split(9, &edge);
        assert_eq!(v.package.version, None);
        assert_eq!(v.edge_attributes(date, &extra), edge);
    }

    #[test]
    fn packed_records_compress_only_when_it_pays() {
        let small = encode_packed(&SummaryRec {
            id: "cmp_1".into(),
            name: "h".into(),
            status: CiStatus::Active,
        })
        .unwrap();
        assert_eq!(small[0], RAW);
        let big = InstallsRec {
            installs: (0..500)
                .map(|i| InstallRec {
                    product: i,
                    disc: "dpkg/amd64".into(),
                    variant: i * 3,
                    install_date: Some((1_700_000_000, 0)),
                    extra: vec![],
                })
                .collect(),
        };
        let packed = encode_packed(&big).unwrap();
        assert_eq!(packed[0], ZSTD);
        assert!(packed.len() < encode(&big).unwrap().len() / 2);
        assert_eq!(decode_packed::<InstallsRec>("t", &packed).unwrap(), big);
        assert!(decode_packed::<InstallsRec>("t", &[9, 1]).is_err());
        assert!(decode_packed::<InstallsRec>("t", &[]).is_err());
    }

    #[test]
    fn reverse_keys_read_back() {
        let k = postings_key(1, 2, 3);
        assert_eq!(
            read_rev_key(&k),
            Some(RevEntry::Postings {
                product: 1,
                variant: 2,
                chunk: 3
            })
        );
        let e = EdgeKey {
            from: "ip_1".into(),
            kind: RelKind::In,
            to: "net_1".into(),
            disc: String::new(),
        };
        assert_eq!(
            read_rev_key(&rev_edge_key(7, 8, &e)),
            Some(RevEntry::Edge {
                to: 7,
                machine: 8,
                edge: e
            })
        );
        assert_eq!(read_rev_key(b"\0\0\0\x01\x09"), None);
    }

    #[test]
    fn postings_round_trip_as_lists_or_bitmaps() {
        for layout in [Postings::WIDE, Postings::NARROW] {
            let last = layout.slots() as u16 - 1;
            for offsets in [
                vec![],
                vec![0],
                vec![last],
                vec![0, 1, 2, 200.min(last - 1), last],
                (0..=last).step_by(3).collect::<Vec<u16>>(),
                (0..=last).collect::<Vec<u16>>(),
            ] {
                let bytes = layout.encode(&offsets);
                assert_eq!(layout.decode("t", &bytes).unwrap(), offsets);
                assert!(bytes.len() <= layout.bitmap_bytes() + 1);
            }
            // A variant on every computer of a chunk costs a bit each.
            assert_eq!(
                layout.encode(&(0..=last).collect::<Vec<u16>>()).len(),
                layout.slots() / 8 + 1
            );
            for bad in [
                &[2u8][..],
                &[0, 0],
                &[0, 0x80],
                &[1, 1],
                &[0, 0xff, 0xff, 0xff],
            ] {
                assert!(layout.decode("t", bad).is_err(), "{bad:?}");
            }
        }
        // An offset past a small chunk is refused, not wrapped.
        assert!(Postings::NARROW
            .decode("t", &Postings::WIDE.encode(&[4000]))
            .is_err());
        assert!(Postings::NARROW.update("t", None, 256, true).is_err());
    }

    #[test]
    fn a_store_without_a_recorded_layout_has_the_legacy_one() {
        assert_eq!(Postings::from_meta(None).unwrap(), Postings::WIDE);
        let current = Postings::NARROW.to_meta();
        assert_eq!(
            Postings::from_meta(Some(&current)).unwrap(),
            Postings::NARROW
        );
        assert!(Postings::from_meta(Some(&[0, 0, 0, 40])).is_err());
        assert!(Postings::from_meta(Some(&[8])).is_err());
        assert_eq!(Postings::NARROW.chunk_of(1000), (3, 232));
        assert_eq!(Postings::NARROW.machine(3, 232), 1000);
        assert_eq!(Postings::WIDE.chunk_of(1000), (0, 1000));
    }

    #[test]
    fn posting_updates_agree_with_rebuilding_the_chunk() {
        for layout in [Postings::WIDE, Postings::NARROW] {
            let slots = layout.slots() as u64;
            let mut stored: Option<Vec<u8>> = None;
            let mut model = std::collections::BTreeSet::new();
            let mut rng = 7u64;
            for _ in 0..20_000 {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
                let offset = ((rng >> 33) % slots) as u16;
                // Mostly adds until three quarters full, so the chunk turns into a bitmap
                // and back as it fills and empties.
                let full = model.len() as u64 >= slots * 3 / 4;
                let add = (rng >> 20) % 10 < if full { 2 } else { 8 };
                let changed = layout.update("t", stored.as_deref(), offset, add).unwrap();
                let expected_change = if add {
                    model.insert(offset)
                } else {
                    model.remove(&offset)
                };
                assert_eq!(changed.is_some(), expected_change);
                if let Some(next) = changed {
                    stored = next;
                }
                let want: Vec<u16> = model.iter().copied().collect();
                match &stored {
                    Some(b) => assert_eq!(layout.decode("t", b).unwrap(), want),
                    None => assert!(want.is_empty()),
                }
            }
        }
    }

    proptest::proptest! {
        /// A damaged store or a tampered backup reaches these decoders: they refuse, they
        /// never panic (the fuzz target `store_records` runs the same on libFuzzer).
        #[test]
        fn record_decoders_refuse_garbage_without_panicking(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            for layout in [Postings::WIDE, Postings::NARROW] {
                if let Ok(offsets) = layout.decode("t", &data) {
                    proptest::prop_assert_eq!(layout.decode("t", &layout.encode(&offsets)).ok(), Some(offsets));
                }
                for offset in [0u16, 7, 255, 4095] {
                    let _ = layout.update("t", Some(&data), offset, true);
                    let _ = layout.update("t", Some(&data), offset, false);
                }
            }
            let _ = decode_packed::<ComputerRec>("t", &data);
            let _ = decode_packed::<ComponentsRec>("t", &data);
            let _ = decode_packed::<InstallsRec>("t", &data);
            let _ = decode_packed::<StepRec>("t", &data);
            let _ = decode_packed::<CheckpointRec>("t", &data);
            let _ = decode::<VariantRec>("t", &data);
            let _ = decode_json::<serde_json::Value>("t", &data);
            let _ = read_rev_key(&data);
        }
    }

    #[test]
    fn json_records_read_whether_compressed_or_not() {
        let long = "x".repeat(2000);
        let packed = encode_json(&long).unwrap();
        assert!(packed.starts_with(&ZSTD_MAGIC));
        assert_eq!(decode_json::<String>("t", &packed).unwrap(), long);
        assert_eq!(decode_json::<String>("t", b"\"plain\"").unwrap(), "plain");
    }
}
