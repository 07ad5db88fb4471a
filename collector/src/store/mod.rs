//! The storage boundary, in two layers.
//!
//! [`Store`] is what ingest, identification, drift, queries and people's operations call.
//! It is implemented once, by the domain services in [`cmdb`], over the narrow
//! [`backend::Backend`] interface (ordered key spaces and transactions) that an engine
//! implements: [`sled_backend`] is the embedded default.
//!
//! Architecture Invariant: ingest, identification, drift and query code talk to storage
//! only through [`Store`]. Everything an accepted snapshot changes arrives as one
//! [`IngestCommit`] and is applied atomically with a compare-and-set on the agent's last
//! seq and on the revision of every computer record it rewrites. Durability is a separate
//! [`Store::flush`] that the ingest path awaits (group commit) before it acks.

pub mod backend;
pub mod cmdb;
pub mod codec;
pub mod pg_backend;
pub mod redb_backend;
pub mod report;
pub mod sled_backend;

use chrono::{DateTime, Utc};

use crate::model::*;

pub use cmdb::Cmdb;
pub use sled_backend::DEFAULT_CACHE_BYTES;

/// The on-disk schema version this build writes and reads. 3: compact computer records,
/// fleet-wide software variants, history as steps (undo records) with checkpoints. Stores
/// of versions 1 and 2 are migrated when they open; a collector that knows less refuses a
/// newer store.
pub const STORE_SCHEMA_VERSION: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O: {0}")]
    Io(String),
    #[error("store data is corrupt at {key}: {message}")]
    Corrupt { key: String, message: String },
    #[error("store schema version {found} is newer than this collector's {supported}; upgrade the collector")]
    NewerSchema { found: u32, supported: u32 },
    #[error("the data directory is in use by another collector process: {0}")]
    Locked(String),
    /// A database server is unreachable or refused the work; nothing was applied that was
    /// not confirmed, and the same request may succeed later (HTTP 503, Retry-After).
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Why an ingest commit was not applied. Nothing was written in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("agent's last seq is now {current}, not {expected}: a concurrent or replayed submission won")]
    SeqMoved { expected: u64, current: u64 },
    #[error("agent {0} is unknown or revoked")]
    AgentGone(String),
    /// The caller's admission refused it (see [`Store::admit_heartbeats`]).
    #[error("refused on the agent's record")]
    NotAdmitted,
    /// An identity key or a record this commit was computed against changed meanwhile.
    #[error("{0} changed concurrently; identify again")]
    IdentityRace(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnrollError {
    #[error("enrollment token is not valid")]
    UnknownToken,
    #[error("enrollment token expired at {0}")]
    Expired(DateTime<Utc>),
    #[error("enrollment token was revoked")]
    Revoked,
    #[error("enrollment token has been used {0} of {0} times")]
    Exhausted(u32),
    #[error("this public key is already enrolled as agent {0}")]
    KeyInUse(String),
    #[error("store: {0}")]
    Store(String),
}

/// An identification key: rule name + normalised value ("serial", "dell|ab12cd").
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdentityKey {
    pub rule: &'static str,
    pub value: String,
}

impl IdentityKey {
    pub fn encoded(&self) -> String {
        format!("{}\u{0}{}", self.rule, self.value)
    }
}

/// Everything one accepted snapshot changes, applied in one transaction.
#[derive(Debug, Clone, Default)]
pub struct IngestCommit {
    pub agent_id: String,
    /// The agent's last seq as read before identification; the commit fails if it moved.
    pub expected_last_seq: u64,
    pub new_seq: u64,
    pub seen_at: DateTime<Utc>,
    /// Set for an accepted inventory (snapshot or delta), which becomes the agent's base.
    pub content_hash: Option<String>,
    /// The sections that inventory did not collect.
    pub uncollected: Vec<String>,
    pub clock_skew_seconds: Option<i64>,
    pub ci_id: Option<String>,
    pub identification: Option<IdentificationEvidence>,
    /// CIs to write (new or changed, including volatile-only updates). A CI whose
    /// configuration (version, name, status, attributes) differs from the stored one gets
    /// a history step with the undo of everything the commit changed in its record.
    pub ci_puts: Vec<Ci>,
    /// Shared CIs to create only if absent (products, OS releases, subnets).
    pub shared_ci_inserts: Vec<Ci>,
    pub relationship_puts: Vec<Relationship>,
    pub relationship_deletes: Vec<RelKey>,
    /// Installs of `ci_id` written (new or changed), typed: the hot path of ingest.
    pub install_puts: Vec<Install>,
    /// Installs `ci_id` no longer has: (product id, discriminator).
    pub install_deletes: Vec<(String, String)>,
    /// Keys to point at a CI, each expected to be absent or already pointing there.
    pub identity_claims: Vec<(IdentityKey, String)>,
    pub conflict: Option<IdentityConflict>,
    /// Another agent whose CI this agent took over.
    pub supersedes: Option<String>,
    /// Also queued for the changed-since feed and webhooks in the same transaction, and
    /// linked from the history step of `ci_id`.
    pub change_record: Option<ChangeRecord>,
    /// Removals to remember (flap suppression) and to forget.
    pub removals_put: Vec<RecentRemoval>,
    pub removals_cleared: Vec<(Aspect, String)>,
    /// The received wire body, kept as evidence (latest per agent).
    pub body: Option<Vec<u8>>,
    /// What the inventory's `connections` section does to `ci_id`'s flows.
    pub flows: FlowUpdate,
}

/// What one inventory does to its computer's network flows.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum FlowUpdate {
    /// Not reported this time (unchanged in a delta, a failed sample, a heartbeat-like
    /// unchanged inventory): the stored flows stand, current ones seen with the computer.
    #[default]
    Keep,
    /// The flows sampled since the previous inventory.
    Report {
        flows: Vec<census_shared::Connection>,
        /// Flows last seen before this are forgotten.
        expire_before: DateTime<Utc>,
    },
    /// The agent no longer samples flows: none is current any more.
    Stopped { expire_before: DateTime<Utc> },
}

impl From<StoreError> for EnrollError {
    fn from(e: StoreError) -> Self {
        EnrollError::Store(e.to_string())
    }
}

/// Admission of heartbeat `i` of a batch on its agent's record as the transaction holds it
/// (see [`Store::admit_heartbeats`]).
pub type Admit<'a> = dyn FnMut(usize, Option<&Agent>) -> bool + 'a;

/// One heartbeat's write: the agent's seq compare-and-set and its last-seen time.
#[derive(Debug, Clone)]
pub struct HeartbeatCommit {
    pub agent_id: String,
    pub expected_last_seq: u64,
    pub seq: u64,
    pub at: DateTime<Utc>,
}

/// A write made by a person, applied together with its audit entry or not at all.
#[derive(Debug, Clone)]
pub enum PeopleWrite {
    /// Nothing beside the audit entry: an action whose effect its own transactions wrote
    /// (an advisory import, a batch at a time) is recorded once it ends.
    Recorded,
    PutNoiseRule(NoiseRule),
    DeleteNoiseRule(String),
    PutSeverityRules(SeverityRules),
    PutPlannedChange(PlannedChange),
    /// A change record's next revision (a review, linked tickets): applied only if the
    /// stored record still equals `expected` (two reviewers racing cannot both win), and
    /// queued on the feed as `event_type`.
    ReviseRecord {
        expected: Box<ChangeRecord>,
        record: Box<ChangeRecord>,
        event_type: &'static str,
    },
    PutWebhook(Webhook),
    DeleteWebhook(String),
    /// Makes a dead delivery due again.
    Redeliver(Delivery),
    PutApiToken(ApiToken),
    PutUser(User),
    /// Removes a person, with the given API tokens of theirs put back revoked in the same
    /// transaction.
    DeleteUser {
        name: String,
        revoked_tokens: Vec<ApiToken>,
    },
    PutEnrollmentToken(EnrollmentToken),
    /// Applied only if the stored token still equals `expected` (an enrollment meanwhile
    /// counted a use).
    ReviseEnrollmentToken {
        expected: Box<EnrollmentToken>,
        token: Box<EnrollmentToken>,
    },
    /// Revokes an agent (idempotent: an already revoked agent keeps its first time).
    RevokeAgent(String),
    PutRegisterSettings(register::RegisterSettings),
    PutHealthSettings(crate::model::health::HealthSettings),
    PutLicence(licence::Licence),
    /// The software title rules, applied only if the stored book is still `expected` (None:
    /// never stored); refused as `Stale` otherwise.
    PutSoftwareRules {
        expected: Option<Box<crate::model::titles::SoftwareRuleBook>>,
        book: Box<crate::model::titles::SoftwareRuleBook>,
    },
    /// A service's next version (a new one at version 1), applied only if the stored
    /// version is still `expected` (0: none stored); refused as `Stale` otherwise.
    PutService {
        service: crate::model::service::Service,
        expected: u64,
    },
    /// A baseline's next version (a new one at version 1), applied only if the stored
    /// version is still `expected` (0: none stored); refused as `Stale` otherwise.
    PutBaseline {
        baseline: crate::model::baseline::Baseline,
        expected: u64,
    },
    DeleteLicence(String),
    /// Register edits of computers and computers recorded before discovery, all or none
    /// (one person's edit or record, or a whole file).
    Register {
        edits: Vec<RegisterWrite>,
        records: Vec<RecordWrite>,
    },
    /// Closes an identity conflict with a person's decision, revoking the named agent in
    /// the same transaction when the decision is that it is a clone.
    ResolveConflict {
        id: String,
        resolution: String,
        revoke_agent: Option<String>,
    },
}

/// What a person did, before the store numbers and chains it.
#[derive(Debug, Clone)]
pub struct AuditDraft {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub comment: Option<String>,
}

/// One computer's register edit. It replaces the CI's register attributes (`register.*`)
/// with `register` and raises its version (a history step, the feed event
/// `register.changed`), applied only if they are still `expected` when it commits; the
/// rest of the CI is taken as stored then, so an inventory landing meanwhile is kept, not
/// overwritten, and does not refuse the edit.
#[derive(Debug, Clone)]
pub struct RegisterWrite {
    pub ci_id: String,
    /// [`register_digest`] of the CI's attributes as the edit read them.
    pub expected: [u8; 32],
    pub register: Attributes,
    /// What changed; its `version` is set by the store to the version the edit makes.
    pub change: register::RegisterChange,
    /// The asset tag this CI gives up (its key is removed if it still names this CI).
    pub release_tag: Option<IdentityKey>,
    /// The asset tag it takes: refused ([`PeopleWriteError::Taken`]) when another CI has it.
    pub claim_tag: Option<IdentityKey>,
}

/// A computer recorded by people before any agent reported it (ordered, in stock): `ci`
/// is new, and each key in `claims` (its serial for identification, its asset tag) is
/// taken for it, refused ([`PeopleWriteError::Taken`]) when another CI holds one. Queued
/// on the feed as `register.changed`.
#[derive(Debug, Clone)]
pub struct RecordWrite {
    pub ci: Ci,
    pub claims: Vec<IdentityKey>,
    pub change: register::RegisterChange,
}

/// A CI's register attributes.
pub fn register_of(attributes: &Attributes) -> Attributes {
    attributes
        .iter()
        .filter(|(k, _)| register::is_register_attribute(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// SHA-256 of a CI's register attributes (in key order): what an edit expects to find, in
/// 32 bytes instead of a copy (a file of 10,000 rows holds 10,000 of them).
pub fn register_digest(attributes: &Attributes) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (k, v) in attributes
        .iter()
        .filter(|(k, _)| register::is_register_attribute(k))
    {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.to_string().as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

/// The identity key of a serial people recorded before discovery: identification looks
/// it up when none of a first inventory's own keys is known (case and blanks ignored).
pub fn register_serial_key(serial: &str) -> IdentityKey {
    IdentityKey {
        rule: "register_serial",
        value: serial.trim().to_lowercase(),
    }
}

/// The identity key that keeps asset tags unique (case and surrounding blanks ignored).
pub fn asset_tag_key(tag: &str) -> IdentityKey {
    IdentityKey {
        rule: "asset_tag",
        value: tag.trim().to_lowercase(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PeopleWriteError {
    #[error("{0} changed since it was read; reload and try again")]
    Stale(String),
    /// A unique value another record holds.
    #[error("{0}")]
    Taken(String),
    /// A record the write was encoded against changed before it committed (an inventory
    /// landed): the store encodes and tries again, and answers this only when that keeps
    /// happening.
    #[error("{0} kept changing while the write was committed; try again")]
    Raced(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A computer with everything it owns, as stored now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OwnedState {
    pub computer: Option<Ci>,
    /// Every component, retired ones too (so one that comes back continues its versions).
    pub components: Vec<Ci>,
    /// Edges whose `from` is the computer or one of its components, but installs.
    pub relationships: Vec<Relationship>,
    /// The computer's installs.
    pub installs: Vec<Install>,
}

/// See [`Store::ci_summary`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CiSummary {
    pub name: String,
    pub status: CiStatus,
}

/// The attributes of an `installs` edge a package query can test (`software.*` in the filter
/// language); the rest (install date, source package) stays on the edge.
pub const PACKAGE_VARIANT_KEYS: [&str; 5] = ["name", "version", "source", "arch", "publisher"];

/// Who installs one product, in the form a package query evaluates: each distinct variant
/// (the edge attributes in [`PACKAGE_VARIANT_KEYS`]) once, and every install as (computer
/// key, index into `variants`), ordered by computer key. A fleet has few distinct versions
/// of a product and many computers, so a filter is evaluated per variant, not per install;
/// a computer key is the store's own handle, turned into an id, name and status only for
/// the computers that pass ([`Store::computer_summaries`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProductInstalls {
    pub variants: Vec<Attributes>,
    pub installs: Vec<(u64, usize)>,
}

/// What the exposure tracker writes in one transaction: ledgers, the re-match marks they
/// answer, the events they raise, and (at the end of a pass over the fleet) the advisory
/// generation the fleet is now matched against.
#[derive(Debug, Default)]
pub struct ExposureWrites {
    pub hosts: Vec<LedgerWrite>,
    pub events: Vec<(String, crate::model::vuln::ExposureChange)>,
    pub at: DateTime<Utc>,
    pub generation: Option<u64>,
}

/// One computer's part of [`ExposureWrites`].
#[derive(Debug)]
pub struct LedgerWrite {
    /// The computer's key, as in [`ProductInstalls::installs`].
    pub key: u64,
    /// The digest [`Store::exposure_ledgers`] gave for what was read (None: none held).
    pub expect: Option<u64>,
    pub update: LedgerUpdate,
    /// The re-match mark this answers: cleared unless the record changed again since.
    pub mark: Option<u64>,
}

#[derive(Debug)]
pub enum LedgerUpdate {
    Keep,
    Put(crate::model::vuln::ExposureLedger),
    Delete,
}

/// What one record of an advisory import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdvisoryOutcome {
    Added,
    Updated,
    /// The store holds it as new or newer.
    Unchanged,
    /// A withdrawal removed it.
    Removed,
    /// A withdrawal of something not held (or held newer).
    NotHeld,
}

/// A computer's id, name and status: what ordering a page of query results needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputerSummary {
    pub id: std::sync::Arc<str>,
    pub name: std::sync::Arc<str>,
    pub status: CiStatus,
}

/// What [`Store::check_consistency`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConsistencyReport {
    pub cis: usize,
    pub edges: usize,
    /// How many records disagree with what they are derived from (0 when consistent).
    pub problems_total: usize,
    /// The first [`MAX_LISTED_PROBLEMS`] of them, each naming the record.
    pub problems: Vec<String>,
}

pub const MAX_LISTED_PROBLEMS: usize = 20;

impl ConsistencyReport {
    pub fn problem(&mut self, what: String) {
        self.problems_total += 1;
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(what);
        }
    }
}

/// What a backup or restore moved.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BackupSummary {
    pub trees: usize,
    pub records: usize,
}

pub trait Store: Send + Sync + 'static {
    /// Writes a consistent, checksummed copy of the whole store (writes wait meanwhile).
    fn backup(&self, out: &mut dyn std::io::Write) -> Result<BackupSummary, StoreError>;
    fn schema_version(&self) -> Result<u32, StoreError>;
    /// Compares every derived record (reverse edges, CI summaries, edge counts) with what
    /// it derives from: `census-collector check`, and the crash test after every kill.
    /// Writes wait while it reads, as for a backup.
    fn check_consistency(&self) -> Result<ConsistencyReport, StoreError>;
    /// Writes and removes a probe key: what /readyz asks.
    fn check_writable(&self) -> Result<(), StoreError>;
    /// Whether a read waits on a network round trip (a database server), so a caller on an
    /// async worker must move it to a blocking thread; an embedded read is memory-speed.
    fn remote(&self) -> bool {
        false
    }
    /// Whether a commit is durable when it returns (see [`backend::Backend::durable_commits`]):
    /// an accepted inventory is then answered without waiting for the group flush.
    fn durable_commits(&self) -> bool {
        false
    }
    /// Makes every committed write durable (fsync).
    fn flush(&self) -> Result<(), StoreError>;
    /// Whether this process is (still) the one that runs the fleet-wide background work:
    /// always on an embedded store; on a shared database, the holder of its leader lock.
    fn lead(&self) -> Result<bool, StoreError>;
    /// Approximate bytes on disk.
    fn size_on_disk(&self) -> Result<u64, StoreError>;

    fn put_token(&self, token: &EnrollmentToken) -> Result<(), StoreError>;
    fn list_tokens(&self) -> Result<Vec<EnrollmentToken>, StoreError>;
    fn revoke_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Atomically checks the token (exists, unexpired, unrevoked, uses left), counts one use
    /// and stores the agent. Stores nothing on any refusal.
    fn enroll(
        &self,
        secret_hash: &str,
        agent: &Agent,
        now: DateTime<Utc>,
    ) -> Result<(), EnrollError>;

    fn get_agent(&self, id: &str) -> Result<Option<Agent>, StoreError>;
    /// Stores the agent record of an import source (a device another tool inventoried)
    /// unless a record with its id exists; true when it stored it. No token is used: only
    /// an administrator's import reaches this.
    fn register_import_source(&self, agent: &Agent) -> Result<bool, StoreError>;
    fn list_agents(&self) -> Result<Vec<Agent>, StoreError>;
    fn revoke_agent(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Records heartbeats in one durable transaction (on disk when this returns), each its
    /// own seq compare-and-set (one refused leaves the others applied), with the agent's
    /// and the computer's last seen. The outer error is the engine's: nothing applied.
    fn commit_heartbeats(
        &self,
        batch: &[HeartbeatCommit],
    ) -> Result<Vec<Result<(), CommitError>>, StoreError>;
    /// Heartbeats admitted on their agents' records as this transaction reads them:
    /// `admit` sees heartbeat `i`'s agent (its last seq and last seen as they stand) and
    /// says whether it goes ahead; one that does is recorded on the record it was admitted
    /// on, one that does not answers [`CommitError::NotAdmitted`]. `expected_last_seq` is
    /// not read. Otherwise as [`Store::commit_heartbeats`]. `admit` may be called again for
    /// the same heartbeat when the transaction is retried.
    fn admit_heartbeats(
        &self,
        batch: &[HeartbeatCommit],
        admit: &mut Admit<'_>,
    ) -> Result<Vec<Result<(), CommitError>>, StoreError>;
    /// One heartbeat on its own.
    fn commit_heartbeat(&self, heartbeat: HeartbeatCommit) -> Result<(), CommitError> {
        self.commit_heartbeats(std::slice::from_ref(&heartbeat))?
            .pop()
            .unwrap_or_else(|| {
                Err(CommitError::Store(StoreError::Io(
                    "the store answered no heartbeat result".into(),
                )))
            })
    }
    fn commit_ingest(&self, commit: &IngestCommit) -> Result<(), CommitError>;
    /// Lifecycle: sets a CI's status with a history version, only if the CI still has
    /// `expected_version` (a snapshot that landed meanwhile wins). Raises no drift.
    fn set_ci_status(
        &self,
        id: &str,
        expected_version: u64,
        status: CiStatus,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    fn get_ci(&self, id: &str) -> Result<Option<Ci>, StoreError>;
    /// [`Store::get_ci`] for a page of ids, in their order: a few round trips for the page
    /// on a database server rather than a few per CI.
    fn get_cis(&self, ids: &[&str]) -> Result<Vec<Option<Ci>>, StoreError> {
        ids.iter().map(|id| self.get_ci(id)).collect()
    }
    /// A digest of each computer's stored record (None for an id that is no computer),
    /// without decoding it: equal digests mean an unchanged record (its configuration,
    /// volatile facts and status; not the last-seen time kept beside it), so what was
    /// derived from the record can be reused.
    fn computer_digests(&self, ids: &[&str]) -> Result<Vec<Option<u64>>, StoreError>;
    /// A CI's name and status without decoding its attributes: what a package query needs
    /// to order thousands of matching computers before it reads the page it shows.
    fn ci_summary(&self, id: &str) -> Result<Option<CiSummary>, StoreError>;
    fn list_cis(&self, class: Option<CiClass>) -> Result<Vec<Ci>, StoreError>;
    /// Visits the CIs of a class one at a time (constant memory) until `visit` says stop.
    fn scan_cis(&self, class: CiClass, visit: &mut dyn FnMut(Ci) -> bool)
        -> Result<(), StoreError>;
    fn owned_state(&self, computer_id: &str) -> Result<OwnedState, StoreError>;
    fn relationships_from(&self, id: &str) -> Result<Vec<Relationship>, StoreError>;
    /// The first `limit` outgoing edges (in key order) and how many there are in all.
    fn relationships_from_page(
        &self,
        id: &str,
        limit: usize,
    ) -> Result<(Vec<Relationship>, usize), StoreError>;
    fn relationships_to(&self, id: &str) -> Result<Vec<Relationship>, StoreError>;
    /// The edges from `from` to `to` (a computer's installs of one product: amd64, i386).
    fn relationships_between(&self, from: &str, to: &str) -> Result<Vec<Relationship>, StoreError>;
    /// The `installs` edges into a product, see [`ProductInstalls`].
    fn installs_of(&self, product_id: &str) -> Result<ProductInstalls, StoreError>;
    /// The computers behind keys of [`ProductInstalls::installs`] (`None` for a key that
    /// names no computer any more).
    fn computer_summaries(&self, keys: &[u64]) -> Result<Vec<Option<ComputerSummary>>, StoreError>;
    /// The flows computer `id` reported (empty when none).
    fn flows_of(&self, id: &str) -> Result<Vec<crate::model::flows::Flow>, StoreError>;
    /// The IP addresses computer `id` holds now.
    fn addresses_of(&self, id: &str) -> Result<Vec<String>, StoreError>;
    /// The computers (ids) that reported a flow to `address`.
    fn flow_reporters(&self, address: &str) -> Result<Vec<String>, StoreError>;
    /// Every (address, reporter id) pair: who reported a flow to which address.
    fn flow_targets(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// The computers (ids) holding `address` now: never a retired one, and a stale one
    /// only when no active computer holds it.
    fn address_holders(&self, address: &str) -> Result<Vec<String>, StoreError>;
    fn lookup_identity(&self, key: &IdentityKey) -> Result<Option<String>, StoreError>;
    /// [`Store::lookup_identity`] for several keys, in their order: one read, not one each.
    fn lookup_identities(&self, keys: &[IdentityKey]) -> Result<Vec<Option<String>>, StoreError> {
        keys.iter().map(|k| self.lookup_identity(k)).collect()
    }
    fn history(&self, ci_id: &str) -> Result<Vec<CiVersion>, StoreError>;
    /// The version in force at `at`: the last one with `valid_from <= at`.
    fn as_of(&self, ci_id: &str, at: DateTime<Utc>) -> Result<Option<CiVersion>, StoreError>;
    /// A computer's version in force at `at` and its live components then, in one read.
    fn machine_as_of(
        &self,
        computer_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<(CiVersion, Vec<Ci>)>, StoreError>;

    fn list_conflicts(&self) -> Result<Vec<IdentityConflict>, StoreError>;
    fn list_change_records(&self) -> Result<Vec<ChangeRecord>, StoreError>;

    fn get_change_record(&self, id: &str) -> Result<Option<ChangeRecord>, StoreError>;

    fn get_user(&self, name: &str) -> Result<Option<User>, StoreError>;
    fn list_users(&self) -> Result<Vec<User>, StoreError>;

    // Drift rules and the people's writes. Every write goes through `commit_people`,
    // which appends its audit entry in the same transaction. There is no method that
    // changes or removes an audit entry.
    fn list_noise_rules(&self) -> Result<Vec<NoiseRule>, StoreError>;
    fn severity_rules(&self) -> Result<Option<SeverityRules>, StoreError>;
    fn list_planned_changes(&self) -> Result<Vec<PlannedChange>, StoreError>;
    fn list_licences(&self) -> Result<Vec<licence::Licence>, StoreError>;
    /// The software title rules as last saved (`None`: never; the built-in ones hold).
    fn software_rules(&self) -> Result<Option<crate::model::titles::SoftwareRuleBook>, StoreError>;
    /// The register's settings as an administrator last saved them (`None`: never).
    fn register_settings(&self) -> Result<Option<register::RegisterSettings>, StoreError>;
    /// Services not deleted, by name.
    fn list_services(&self) -> Result<Vec<crate::model::service::Service>, StoreError>;
    /// Every baseline not deleted, by name.
    fn list_baselines(&self) -> Result<Vec<crate::model::baseline::Baseline>, StoreError>;
    fn get_baseline(
        &self,
        id: &str,
    ) -> Result<Option<crate::model::baseline::Baseline>, StoreError>;
    /// The daily compliance points, oldest first.
    fn compliance_trend(&self) -> Result<Vec<crate::model::baseline::CompliancePoint>, StoreError>;
    /// Adds points to the trend (replacing a baseline's point of the same day).
    fn put_compliance_points(
        &self,
        points: Vec<crate::model::baseline::CompliancePoint>,
    ) -> Result<(), StoreError>;
    fn get_service(&self, id: &str) -> Result<Option<crate::model::service::Service>, StoreError>;
    /// Every version of a service, oldest first.
    fn service_history(&self, id: &str) -> Result<Vec<crate::model::service::Service>, StoreError>;
    fn health_settings(&self) -> Result<Option<crate::model::health::HealthSettings>, StoreError>;
    /// The daily health scores, oldest first.
    fn health_trend(&self) -> Result<Vec<crate::model::health::HealthPoint>, StoreError>;
    /// Records a day's health scores (replacing that day's); the collector's own write, not
    /// a person's, so not audited.
    fn put_health_point(&self, point: crate::model::health::HealthPoint) -> Result<(), StoreError>;
    /// Applies a batch of an advisory import in one transaction, each record only where it
    /// is newer than what is held (its `modified`), re-indexing the packages it names.
    fn write_advisories(
        &self,
        writes: &[crate::model::vuln::AdvisoryWrite],
    ) -> Result<Vec<AdvisoryOutcome>, StoreError>;
    fn get_advisory(&self, id: &str) -> Result<Option<crate::model::vuln::Advisory>, StoreError>;
    /// The advisories that name `package` in `ecosystem`.
    fn advisories_for(
        &self,
        ecosystem: &str,
        package: &str,
    ) -> Result<Vec<crate::model::vuln::Advisory>, StoreError>;
    /// Every (ecosystem, package, advisory id) of the index, in key order, until `visit`
    /// says stop.
    fn scan_advisory_index(
        &self,
        visit: &mut dyn FnMut(&str, &str, &str) -> bool,
    ) -> Result<(), StoreError>;
    fn advisory_count(&self) -> Result<usize, StoreError>;
    /// Renewed (a random number) by every batch of an import that changed an advisory, in
    /// its transaction: what was derived from the advisories of an equal generation still
    /// holds, in any store.
    fn advisories_generation(&self) -> Result<u64, StoreError>;
    /// The advisory generation the exposure tracker last matched the whole fleet against
    /// (0 before it ever did).
    fn exposures_generation(&self) -> Result<u64, StoreError>;
    /// Every computer's key, as in [`ProductInstalls::installs`].
    fn computer_keys(&self) -> Result<Vec<u64>, StoreError>;
    /// The key of the computer `id` (None for an id that holds no record of its own).
    fn computer_key(&self, id: &str) -> Result<Option<u64>, StoreError>;
    /// Up to `limit` computers whose installs, OS release or status changed since the
    /// exposure tracker last matched them: (key, mark).
    fn rematch_marks(&self, limit: usize) -> Result<Vec<(u64, u64)>, StoreError>;
    /// Computers' exposure ledgers, each with a digest of its stored bytes for
    /// [`LedgerWrite::expect`].
    fn exposure_ledgers(
        &self,
        keys: &[u64],
    ) -> Result<Vec<Option<(crate::model::vuln::ExposureLedger, u64)>>, StoreError>;
    /// Applies the tracker's writes in one transaction; false (nothing written) when a
    /// ledger is no longer what its write expected (another collector wrote it).
    fn write_exposures(&self, writes: &ExposureWrites) -> Result<bool, StoreError>;
    /// Every distinct package the fleet has installed (each once, with its product id),
    /// until `visit` says stop: which products a source package name reaches. Variants
    /// stay after their last install goes; `installs_of` says who has them now.
    fn scan_variants(
        &self,
        visit: &mut dyn FnMut(&str, &crate::model::Package) -> bool,
    ) -> Result<(), StoreError>;
    fn recent_removals(&self, ci_id: &str) -> Result<Vec<RecentRemoval>, StoreError>;
    fn commit_people(
        &self,
        write: &PeopleWrite,
        audit: AuditDraft,
        at: DateTime<Utc>,
    ) -> Result<AuditEntry, PeopleWriteError>;
    /// Audit entries with `seq > after`, oldest first.
    fn list_audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// The newest audit entry's seq (0 when the log is empty).
    fn audit_head(&self) -> Result<u64, StoreError>;

    // The changed-since feed. Ingest and reviews queue events; `sequence_events` numbers
    // them (one sequencer, so cursors only grow) and queues a delivery per webhook.
    fn sequence_events(&self, max: usize) -> Result<usize, StoreError>;
    fn feed_since(&self, cursor: u64, limit: usize) -> Result<Vec<FeedEvent>, StoreError>;
    fn feed_event(&self, cursor: u64) -> Result<Option<FeedEvent>, StoreError>;

    fn list_webhooks(&self) -> Result<Vec<Webhook>, StoreError>;
    /// Deliveries that are not dead and due at `now`, oldest first.
    fn due_deliveries(&self, now: DateTime<Utc>, limit: usize)
        -> Result<Vec<Delivery>, StoreError>;
    fn list_deliveries(&self) -> Result<Vec<Delivery>, StoreError>;
    /// Records an attempt's outcome: `None` removes a delivered one.
    fn update_delivery(&self, id: &str, next: Option<&Delivery>) -> Result<(), StoreError>;

    fn find_api_token(&self, id: &str) -> Result<Option<ApiToken>, StoreError>;
    fn list_api_tokens(&self) -> Result<Vec<ApiToken>, StoreError>;
    fn touch_api_token(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
}

/// SHA-256 over the previous entry's hash and this entry (with an empty `hash`).
pub fn audit_hash(entry: &AuditEntry) -> Result<String, StoreError> {
    use sha2::{Digest, Sha256};
    let mut unhashed = entry.clone();
    unhashed.hash = String::new();
    let mut h = Sha256::new();
    h.update(entry.prev_hash.as_bytes());
    h.update(serde_json::to_vec(&unhashed).map_err(|e| StoreError::Io(e.to_string()))?);
    Ok(hex::encode(h.finalize()))
}
