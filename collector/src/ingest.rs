//! The ingest path, one straight line: verify the signature over the received bytes ->
//! check seq -> decode with limits -> identify -> reconcile -> one store transaction ->
//! wait for the group flush -> ack.
//!
//! Architecture Invariant: nothing is written before the signature, seq and every limit
//! have passed, and nothing is acknowledged before [`GroupCommit::wait_durable`] returns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use census_shared::envelope::{self, EnvelopeError};
use census_shared::protocol::{Ack, Heartbeat};
use census_shared::wire::{self, BodyEncoding, DecodeError};
use census_shared::AgentPublicKey;
use chrono::{DateTime, Utc};
use tokio::sync::{watch, Notify};

use crate::drift::{self, DriftRules, Evaluation, RecordHeader, ScopeSubject};
use crate::identify;
use crate::model::*;
use crate::reconcile;
use crate::store::{CommitError, FlowUpdate, HeartbeatCommit, IngestCommit, Store};

/// Why a submission was refused. Each maps to one HTTP status; none stored anything.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// The agent was revoked.
    #[error("{0}")]
    Revoked(String),
    /// A newer enrollment took the agent's machine over.
    #[error("{0}")]
    Superseded(String),
    #[error("{0}")]
    Conflict(String),
    /// A delta whose base is not the agent's last accepted inventory.
    #[error("{0}")]
    BaseMismatch(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedEncoding(String),
    #[error("{message}")]
    Unprocessable {
        field: Option<String>,
        message: String,
    },
    #[error("{0}")]
    Unavailable(String),
}

impl IngestError {
    /// A short machine-readable reason, used for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::BadRequest(_) => "bad_request",
            IngestError::Unauthorized(_) => "unauthorized",
            IngestError::Forbidden(_) => "forbidden",
            IngestError::Revoked(_) => "revoked",
            IngestError::Superseded(_) => "superseded",
            IngestError::Conflict(_) => "seq_conflict",
            IngestError::BaseMismatch(_) => "base_mismatch",
            IngestError::PayloadTooLarge(_) => "too_large",
            IngestError::UnsupportedEncoding(_) => "encoding",
            IngestError::Unprocessable { .. } => "schema",
            IngestError::Unavailable(_) => "unavailable",
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> IngestError {
    tracing::error!(error = %e, "store failure during ingest");
    IngestError::Unavailable(format!(
        "the collector could not store this submission: {e}"
    ))
}

/// The envelope fields from the request headers.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub agent_id: String,
    pub seq: u64,
    pub signature: String,
}

/// The exit status after a failed store flush (EX_TEMPFAIL): restart me.
pub const EXIT_STORE_FAILED: i32 = 75;

/// Group commit: many transactions, one fsync. Each committed ingest takes a ticket and
/// waits until a flush that started after its commit has finished.
pub struct GroupCommit {
    store: Arc<dyn Store>,
    committed: AtomicU64,
    state: watch::Sender<FlushState>,
    kick: Notify,
}

#[derive(Debug, Clone, Default)]
struct FlushState {
    durable: u64,
    failed: u64,
    error: String,
}

impl GroupCommit {
    pub fn start(store: Arc<dyn Store>) -> Arc<Self> {
        let gc = Arc::new(GroupCommit {
            store,
            committed: AtomicU64::new(0),
            state: watch::Sender::new(FlushState::default()),
            kick: Notify::new(),
        });
        let runner = gc.clone();
        tokio::spawn(async move { runner.run().await });
        gc
    }

    /// Call after a successful commit.
    pub fn ticket(&self) -> u64 {
        self.committed.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub async fn wait_durable(&self, ticket: u64) -> Result<(), IngestError> {
        let mut rx = self.state.subscribe();
        self.kick.notify_one();
        loop {
            {
                let s = rx.borrow_and_update();
                // A failed flush covered this commit: a later flush that succeeds does not
                // prove it survived (a database server may have restarted between).
                if s.failed >= ticket {
                    return Err(unavailable(&s.error));
                }
                if s.durable >= ticket {
                    return Ok(());
                }
            }
            if rx.changed().await.is_err() {
                return Err(IngestError::Unavailable(
                    "collector is shutting down".into(),
                ));
            }
        }
    }

    async fn run(self: Arc<Self>) {
        loop {
            self.kick.notified().await;
            let target = self.committed.load(Ordering::SeqCst);
            if target <= self.state.borrow().durable {
                continue;
            }
            let store = self.store.clone();
            let result = tokio::task::spawn_blocking(move || store.flush()).await;
            let failure = match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            self.state.send_modify(|s| match &failure {
                None => s.durable = target,
                Some(e) => {
                    s.failed = target;
                    s.error = e.clone();
                }
            });
            if let Some(error) = failure {
                // After a failed fsync the store's in-memory state may be ahead of the disk
                // and cannot be trusted again (the lesson of PostgreSQL's "fsyncgate").
                // Fail-stop: the waiting submissions get 503, then the process exits so its
                // supervisor restarts it from the last durable state.
                tracing::error!(error, "store flush failed; stopping so a restart recovers from the last durable state");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                std::process::exit(EXIT_STORE_FAILED);
            }
        }
    }
}

/// The CPU slot an ingest holds while it verifies, decodes and plans (one of `--workers`).
/// It is given back before the commit waits for the store's single writer, which a group
/// flush holds through its fsync: a slot must not sit idle behind another submission's
/// flush while CPU work queues (measured: twice the changed-inventory throughput on two
/// cores).
pub struct CpuSlot(Option<tokio::sync::OwnedSemaphorePermit>);

impl CpuSlot {
    /// A slot from the collector's worker semaphore.
    pub fn held(permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        Self(Some(permit))
    }

    /// No slot (tools and tests that run one ingest at a time).
    pub fn none() -> Self {
        Self(None)
    }

    fn release(&mut self) {
        self.0 = None;
    }
}

/// The result of a processed submission, before it is durable.
#[derive(Debug)]
pub struct Accepted {
    pub ack: Ack,
    pub changed: bool,
}

/// Drift rules a person edited through another collector on the same database are used
/// here at most this long after the edit (three reads per period on a busy collector).
pub const RULES_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(10);

/// What people configured that a commit is decided by.
struct Rules {
    drift: DriftRules,
    register: crate::model::register::RegisterSettings,
}

pub struct Ingest {
    pub store: Arc<dyn Store>,
    /// Shared CIs (products, OS releases, subnets) known to exist. They are never deleted,
    /// so a commit need not re-check the hundreds a snapshot references.
    known_shared: std::sync::RwLock<std::collections::HashSet<String>>,
    /// Noise, severity, planned changes and the register's precedence with when they were read: dropped by
    /// [`Ingest::invalidate_rules`] whenever a person edits them through this process, and
    /// read again once older than `rules_max_age`, because on a shared database another
    /// collector may have taken the edit.
    rules: std::sync::RwLock<Option<(std::time::Instant, Arc<Rules>)>>,
    rules_max_age: std::time::Duration,
    flap_window: chrono::Duration,
    /// Flows nobody reported for this long leave the map.
    flow_expiry: chrono::Duration,
    keep_bodies: bool,
    /// Woken when a commit queued a feed event.
    pub events: Notify,
    /// Parsed public keys by agent id, with the text they were parsed from: decompressing
    /// the curve point cost as much as a fifth of the signature check on every heartbeat,
    /// and a heartbeat checks its signature before its batch reads the agent. Sound because
    /// an agent's key never changes: the collector names the agent at enrollment and fixes
    /// its key then (re-enrolling makes a new agent). Revocation is not cached: whoever
    /// uses a key still reads the agent's record. Bounded by clearing.
    keys: std::sync::RwLock<std::collections::HashMap<String, (String, AgentPublicKey)>>,
}

/// Enough for every enrolled agent of a large fleet; past it the cache starts again.
const MAX_CACHED_KEYS: usize = 100_000;

const IDENTITY_RETRIES: usize = 3;

impl Ingest {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Ingest {
            store,
            known_shared: Default::default(),
            rules: Default::default(),
            rules_max_age: RULES_MAX_AGE,
            flap_window: chrono::Duration::hours(24),
            flow_expiry: chrono::Duration::days(crate::model::flows::DEFAULT_EXPIRY_DAYS),
            keep_bodies: false,
            events: Notify::new(),
            keys: Default::default(),
        }
    }

    /// How long drift rules read from the store are used before they are read again.
    pub fn with_rules_max_age(mut self, age: std::time::Duration) -> Self {
        self.rules_max_age = age;
        self
    }

    pub fn with_flap_window(mut self, window: chrono::Duration) -> Self {
        self.flap_window = window;
        self
    }

    pub fn with_flow_expiry(mut self, age: chrono::Duration) -> Self {
        self.flow_expiry = age;
        self
    }

    pub fn flow_expiry(&self) -> chrono::Duration {
        self.flow_expiry
    }

    /// What an inventory's `connections` section does to its computer's flows.
    fn flow_update(&self, snap: &census_shared::Snapshot, now: DateTime<Utc>) -> FlowUpdate {
        let expire_before = now - self.flow_expiry;
        let section = &snap.connections;
        match (section.data(), section.status) {
            (Some(flows), _) => FlowUpdate::Report {
                flows: flows.clone(),
                expire_before,
            },
            // A sample that failed this time says nothing about the flows.
            (None, census_shared::SectionStatus::Failed) => FlowUpdate::Keep,
            (None, _) if crate::delta::is_kept(section) => FlowUpdate::Keep,
            (None, _) => FlowUpdate::Stopped { expire_before },
        }
    }

    /// The baseline rules a change makes its computer fail: each baseline that applies to
    /// the computer after the change, evaluated on the state before and after it. Read
    /// only when a change record is raised, so an unchanged fleet costs nothing.
    fn compliance_breaks(
        &self,
        stored: &crate::store::OwnedState,
        plan: &reconcile::Plan,
        now: DateTime<Utc>,
    ) -> Result<Vec<crate::model::ComplianceBreak>, crate::store::StoreError> {
        use crate::model::baseline::{Baseline, Verdict};
        use crate::query::compliance;
        let baselines = self.store.list_baselines()?;
        if baselines.is_empty() {
            return Ok(Vec::new());
        }
        let after = plan.state_after(stored);
        let Some(computer) = after.computer.as_ref() else {
            return Ok(Vec::new());
        };
        let (before_facts, after_facts) =
            (compliance::facts_of(stored), compliance::facts_of(&after));
        let mut breaks = Vec::new();
        for b in &baselines {
            if !compliance::applies_to(self.store.as_ref(), b, computer, now)? {
                continue;
            }
            let (_, was) = compliance::evaluate(b, &before_facts);
            let (_, is) = compliance::evaluate(b, &after_facts);
            for ((rule, was), is) in b.rules.iter().zip(&was).zip(is) {
                if is.verdict == Verdict::Fail && was.verdict != Verdict::Fail {
                    breaks.push(crate::model::ComplianceBreak {
                        baseline_id: b.id.clone(),
                        baseline_name: b.name.clone(),
                        rule: Baseline::rule_text(rule),
                        evidence: is.evidence,
                    });
                }
            }
        }
        Ok(breaks)
    }

    /// Keep each agent's last accepted body as evidence (forensics: the exact bytes it
    /// signed). Off by default: it is the largest record a computer has (~24 KB for 900
    /// packages), nothing reads it but a backup, and the content hash and seq on the agent
    /// already say what was accepted.
    pub fn with_keep_bodies(mut self, keep: bool) -> Self {
        self.keep_bodies = keep;
        self
    }

    fn evidence(&self, body: &[u8]) -> Option<Vec<u8>> {
        self.keep_bodies.then(|| body.to_vec())
    }

    /// Drops the cached drift rules; the next snapshot reloads them.
    pub fn invalidate_rules(&self) {
        if let Ok(mut r) = self.rules.write() {
            *r = None;
        }
    }

    fn rules(&self, now: DateTime<Utc>) -> Result<Arc<Rules>, IngestError> {
        if let Some((read_at, r)) = self.rules.read().ok().and_then(|r| r.clone()) {
            if read_at.elapsed() < self.rules_max_age {
                return Ok(r);
            }
        }
        let read_at = std::time::Instant::now();
        let rules = Arc::new(Rules {
            drift: DriftRules {
                noise: self.store.list_noise_rules().map_err(unavailable)?,
                severity: self
                    .store
                    .severity_rules()
                    .map_err(unavailable)?
                    .unwrap_or_else(|| SeverityRules::defaults(now)),
                planned: self.store.list_planned_changes().map_err(unavailable)?,
                flap_window: self.flap_window,
            },
            register: self
                .store
                .register_settings()
                .map_err(unavailable)?
                .unwrap_or_default(),
        });
        if let Ok(mut slot) = self.rules.write() {
            *slot = Some((read_at, rules.clone()));
        }
        Ok(rules)
    }

    fn authenticate(
        &self,
        env: &Envelope,
        fields: &envelope::SignedFields<'_>,
    ) -> Result<Agent, IngestError> {
        let agent = in_good_standing(
            &env.agent_id,
            self.store.get_agent(&env.agent_id).map_err(unavailable)?,
        )?;
        let key = self.public_key(&agent)?;
        verify_signature(&agent.id, &key, fields, &env.signature)?;
        seq_above_last(&agent, env.seq)?;
        Ok(agent)
    }

    fn public_key(&self, agent: &Agent) -> Result<AgentPublicKey, IngestError> {
        if let Some(key) = self.cached_key(&agent.id, Some(&agent.public_key)) {
            return Ok(key);
        }
        let key = AgentPublicKey::from_text(&agent.public_key)
            .map_err(|e| unavailable(format!("stored key of {}: {e}", agent.id)))?;
        if let Ok(mut keys) = self.keys.write() {
            if keys.len() >= MAX_CACHED_KEYS {
                keys.clear();
            }
            keys.insert(agent.id.clone(), (agent.public_key.clone(), key.clone()));
        }
        Ok(key)
    }

    /// The agent's parsed key, when cached (and, given its stored text, only if that is the
    /// text it was parsed from).
    fn cached_key(&self, agent_id: &str, text: Option<&str>) -> Option<AgentPublicKey> {
        let keys = self.keys.read().ok()?;
        let (cached_text, key) = keys.get(agent_id)?;
        (text.is_none() || text == Some(cached_text.as_str())).then(|| key.clone())
    }

    /// Verifies, decodes, identifies, reconciles and commits a snapshot. Blocking.
    pub fn snapshot(
        &self,
        env: &Envelope,
        content_encoding: Option<&str>,
        body: &[u8],
        now: DateTime<Utc>,
        slot: CpuSlot,
    ) -> Result<Accepted, IngestError> {
        let t0 = std::time::Instant::now();
        let agent = self.authenticate(
            env,
            &envelope::snapshot_fields(&env.agent_id, env.seq, body),
        )?;
        let t_verify = t0.elapsed();
        let snap =
            wire::decode_body(body, body_encoding(content_encoding)?).map_err(decode_error)?;
        same_sender(&agent, env, &snap.agent_id, snap.seq)?;
        let received = Received::of(&snap, (snap.collected_at - now).num_seconds(), body);
        let timing = Timing {
            t0,
            verified: t_verify,
            decoded: t0.elapsed(),
        };

        if let Some(successor) = &agent.superseded_by {
            return self.superseded(&agent, successor, env, received, now);
        }
        self.commit_inventory(&agent, env, &snap, received, timing, now, slot)
    }

    /// A whole inventory after its checks: the same content as the agent's last is only
    /// its volatile facts refreshed; anything else is identified, reconciled and committed.
    #[allow(clippy::too_many_arguments)]
    fn commit_inventory(
        &self,
        agent: &Agent,
        env: &Envelope,
        snap: &census_shared::Snapshot,
        received: Received<'_>,
        timing: Timing,
        now: DateTime<Utc>,
        slot: CpuSlot,
    ) -> Result<Accepted, IngestError> {
        if let (Some(ci_id), true) = (
            &agent.ci_id,
            agent.last_content_hash.as_deref() == Some(received.content_hash.as_str()),
        ) {
            if let Some(accepted) = self.unchanged(agent, ci_id, env, snap, &received, now)? {
                return Ok(accepted);
            }
        }
        self.reconcile_and_commit(agent, env, snap, None, received, None, timing, now, slot)
    }

    /// Identifies, reconciles and commits an inventory another tool's agent took, as the
    /// import source `agent` (see [`crate::identify::IMPORT_AGENT_PREFIX`]): the same path
    /// as a snapshot after its signature, at the source's next seq. Nothing is verified
    /// because nothing was signed: only an administrator's import calls this. Blocking.
    pub fn import(
        &self,
        agent: &Agent,
        mut snap: census_shared::Snapshot,
        now: DateTime<Utc>,
    ) -> Result<Accepted, IngestError> {
        let t0 = std::time::Instant::now();
        if !crate::identify::is_import_source(&agent.id) {
            return Err(IngestError::Forbidden(format!(
                "{} is a Census agent: only its own signed inventories reach its record",
                agent.id
            )));
        }
        if agent.is_revoked() {
            return Err(IngestError::Revoked(format!(
                "import source {} was revoked",
                agent.id
            )));
        }
        if let Some(successor) = &agent.superseded_by {
            return Err(IngestError::Superseded(format!(
                "{} reports this machine now (import source {} was taken over)",
                successor, agent.id
            )));
        }
        let env = Envelope {
            agent_id: agent.id.clone(),
            seq: agent.last_seq + 1,
            signature: String::new(),
        };
        snap.agent_id = agent.id.clone();
        snap.seq = env.seq;
        snap.check_limits()
            .map_err(|e| IngestError::Unprocessable {
                field: None,
                message: e.to_string(),
            })?;
        let body = wire::encode_body(&snap).map_err(unavailable)?;
        let received = Received::of(&snap, 0, &body);
        let timing = Timing {
            t0,
            verified: t0.elapsed(),
            decoded: t0.elapsed(),
        };
        self.commit_inventory(agent, &env, &snap, received, timing, now, CpuSlot::none())
    }

    /// Verifies a protocol-v2 delta, checks that its base is the agent's last accepted
    /// inventory, turns it into the snapshot reconcile reads (`delta::view`) and commits it
    /// as a snapshot is. Blocking.
    pub fn delta(
        &self,
        env: &Envelope,
        content_encoding: Option<&str>,
        body: &[u8],
        now: DateTime<Utc>,
        slot: CpuSlot,
    ) -> Result<Accepted, IngestError> {
        let t0 = std::time::Instant::now();
        let agent =
            self.authenticate(env, &envelope::delta_fields(&env.agent_id, env.seq, body))?;
        let t_verify = t0.elapsed();
        let delta = wire::decode_delta_body(body, body_encoding(content_encoding)?)
            .map_err(decode_error)?;
        same_sender(&agent, env, &delta.agent_id, delta.seq)?;
        check_base(&agent, &delta)?;
        let received = Received {
            content_hash: delta.content_hash.clone(),
            uncollected: delta
                .uncollected_after(&agent.base_uncollected)
                .into_iter()
                .map(String::from)
                .collect(),
            skew: (delta.collected_at - now).num_seconds(),
            body,
        };
        if let Some(successor) = &agent.superseded_by {
            return self.superseded(&agent, successor, env, received, now);
        }
        let Some(ci_id) = agent.ci_id.clone() else {
            return Err(base_mismatch("the agent has no computer yet"));
        };
        let stored = self.store.owned_state(&ci_id).map_err(unavailable)?;
        let view = crate::delta::view(&stored, &delta, &agent.base_uncollected).map_err(|e| {
            IngestError::Unprocessable {
                field: Some(e.field.clone()),
                message: e.to_string(),
            }
        })?;
        let timing = Timing {
            t0,
            verified: t_verify,
            decoded: t0.elapsed(),
        };
        self.reconcile_and_commit(
            &agent,
            env,
            &view.snapshot,
            view.install_scope,
            received,
            Some(stored),
            timing,
            now,
            slot,
        )
    }

    /// Identifies, reconciles and commits an inventory that changed (or whose computer is
    /// new). `preloaded` is the computer's stored state when the caller read it already;
    /// `install_scope` is a delta's (see [`crate::delta::DeltaView`]).
    #[allow(clippy::too_many_arguments)]
    fn reconcile_and_commit(
        &self,
        agent: &Agent,
        env: &Envelope,
        snap: &census_shared::Snapshot,
        install_scope: Option<std::collections::BTreeSet<String>>,
        received: Received<'_>,
        mut preloaded: Option<crate::store::OwnedState>,
        timing: Timing,
        now: DateTime<Utc>,
        mut slot: CpuSlot,
    ) -> Result<Accepted, IngestError> {
        let Timing {
            t0,
            verified: t_verify,
            decoded: t_decode,
        } = timing;
        let agent = agent.clone();
        let content_hash = received.content_hash.clone();
        for _ in 0..IDENTITY_RETRIES {
            let id =
                identify::identify(self.store.as_ref(), &agent, snap, now).map_err(unavailable)?;
            let stored = match preloaded.take() {
                Some(s) if s.computer.as_ref().map(|c| &c.id) == Some(&id.ci_id) => s,
                _ => self.store.owned_state(&id.ci_id).map_err(unavailable)?,
            };
            let t_read = t0.elapsed();
            if install_scope.is_some() && agent.ci_id.as_deref() != Some(id.ci_id.as_str()) {
                // A linked agent stays on its computer; a delta only describes that one.
                return Err(base_mismatch("the inventory identifies another computer"));
            }
            let mut desired = reconcile::desired(&id.ci_id, snap, now);
            desired.install_scope = install_scope.clone();
            let rules = self.rules(now)?;
            let mut plan =
                reconcile::plan(&id.ci_id, &agent.id, &stored, desired, &rules.register, now);
            let drift = if plan.drifted {
                let recent = self.store.recent_removals(&id.ci_id).map_err(unavailable)?;
                let computer = plan.computer.as_ref();
                let attr = |k: &str| {
                    computer
                        .and_then(|c| c.attributes.get(k))
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                };
                let who = ScopeSubject {
                    ci_id: id.ci_id.clone(),
                    hostnames: [attr("os.hostname"), attr("os.fqdn")]
                        .into_iter()
                        .flatten()
                        .collect(),
                    addresses: plan.addresses.clone(),
                    service_criticality: match computer {
                        Some(c) if rules.drift.severity.uses_service_criticality() => {
                            crate::query::services::impact_on_computer(self.store.as_ref(), c, now)
                                .map_err(unavailable)?
                                .first()
                                .map(|s| s.criticality)
                        }
                        _ => None,
                    },
                };
                let header = RecordHeader {
                    id: format!("chg_{}", hex::encode(rand::random::<[u8; 10]>())),
                    ci_id: id.ci_id.clone(),
                    ci_name: computer.map(|c| c.name.clone()).unwrap_or_default(),
                    agent_id: agent.id.clone(),
                    seq: env.seq,
                    from_version: stored.computer.as_ref().map(|c| c.version).unwrap_or(0),
                    to_version: computer.map(|c| c.version).unwrap_or(0),
                };
                drift::evaluate(
                    std::mem::take(&mut plan.items),
                    &rules.drift,
                    &who,
                    &recent,
                    header,
                    now,
                )
            } else {
                Evaluation::default()
            };
            let t_plan = t0.elapsed();
            let mut change_record = drift.record;
            if let Some(record) = change_record.as_mut() {
                record.compliance = self
                    .compliance_breaks(&stored, &plan, now)
                    .map_err(unavailable)?;
            }
            let mut ci_puts = plan.ci_puts;
            ci_puts.extend(plan.computer);
            let changed = !plan.versioned.is_empty();
            let commit = IngestCommit {
                ci_id: Some(id.ci_id.clone()),
                identification: Some(id.evidence.clone()),
                ci_puts,
                shared_ci_inserts: match self.known_shared.read() {
                    Ok(known) => plan
                        .shared_inserts
                        .into_iter()
                        .filter(|c| !known.contains(&c.id))
                        .collect(),
                    Err(_) => plan.shared_inserts,
                },
                relationship_puts: plan.relationship_puts,
                relationship_deletes: plan.relationship_deletes,
                install_puts: plan.install_puts,
                install_deletes: plan.install_deletes,
                identity_claims: id.claims,
                conflict: id.conflict,
                supersedes: id.supersedes,
                change_record: change_record.clone(),
                removals_put: drift.removals_put,
                removals_cleared: drift.removals_cleared,
                flows: self.flow_update(snap, now),
                ..accepted_commit(&agent, env, now, &received, self.evidence(received.body))
            };
            slot.release();
            match self.store.commit_ingest(&commit) {
                Ok(()) => {
                    if let Some(r) = &change_record {
                        self.events.notify_one();
                        metrics::counter!(
                            "census_change_records_total",
                            "severity" => r.severity.as_str(),
                            "authorization" => r.authorization.as_str()
                        )
                        .increment(1);
                    }
                    if !commit.shared_ci_inserts.is_empty() {
                        if let Ok(mut known) = self.known_shared.write() {
                            known.extend(commit.shared_ci_inserts.iter().map(|c| c.id.clone()));
                        }
                    }
                    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
                    tracing::info!(
                        agent_id = %agent.id, seq = env.seq, ci_id = %id.ci_id, rule = %id.evidence.rule, changed,
                        change_record = ?change_record.as_ref().map(|c| &c.id), suppressed_items = drift.suppressed,
                        verify_ms = ms(t_verify), decode_ms = ms(t_decode - t_verify), read_ms = ms(t_read - t_decode),
                        plan_ms = ms(t_plan - t_read), commit_ms = ms(t0.elapsed() - t_plan),
                        "snapshot accepted"
                    );
                    return Ok(Accepted {
                        ack: Ack {
                            agent_id: agent.id.clone(),
                            seq: env.seq,
                            ci_id: Some(id.ci_id),
                            content_hash,
                            change_record: change_record.map(|c| c.id),
                            resend_full: false,
                        },
                        changed,
                    });
                }
                Err(CommitError::IdentityRace(key)) => {
                    tracing::debug!(agent_id = %agent.id, key, "identity claimed concurrently; identifying again");
                    continue;
                }
                Err(e) => return Err(commit_error(e)),
            }
        }
        Err(IngestError::Unavailable(
            "identity keys kept changing under concurrent ingest; retry".into(),
        ))
    }

    /// The same configuration as the last accepted snapshot: refresh the computer's
    /// volatile facts and last seen; no identification, no plan, no version. Cost does not
    /// grow with the machine's size. `None` when the CI is gone (then the full path runs).
    fn unchanged(
        &self,
        agent: &Agent,
        ci_id: &str,
        env: &Envelope,
        snap: &census_shared::Snapshot,
        received: &Received<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<Accepted>, IngestError> {
        let Some(mut computer) = self.store.get_ci(ci_id).map_err(unavailable)? else {
            return Ok(None);
        };
        // A stale or retired computer that reports again becomes active: a status change
        // is a version, so the full path writes it.
        if computer.status != CiStatus::Active {
            return Ok(None);
        }
        let mut volatile = reconcile::computer_volatile(snap);
        // Sections not collected this time keep their last volatile values.
        for (k, v) in &computer.volatile {
            volatile.entry(k.clone()).or_insert_with(|| v.clone());
        }
        volatile.insert("agent.id".into(), serde_json::json!(agent.id));
        computer.volatile = volatile;
        computer.last_seen = now;
        let commit = IngestCommit {
            ci_puts: vec![computer],
            ..accepted_commit(agent, env, now, received, self.evidence(received.body))
        };
        self.store.commit_ingest(&commit).map_err(commit_error)?;
        tracing::info!(agent_id = %agent.id, seq = env.seq, ci_id, "snapshot accepted: configuration unchanged");
        Ok(Some(Accepted {
            ack: Ack {
                agent_id: agent.id.clone(),
                seq: env.seq,
                ci_id: Some(ci_id.to_string()),
                content_hash: received.content_hash.clone(),
                change_record: None,
                resend_full: false,
            },
            changed: false,
        }))
    }

    /// An agent whose CI was taken over by a re-enrolled agent still reports: two live agents
    /// claim one machine. Apply nothing, put the conflict in front of a person, and answer
    /// 403 agent-superseded so the agent records it, stops retrying, and shows in its status.
    fn superseded(
        &self,
        agent: &Agent,
        successor: &str,
        env: &Envelope,
        received: Received<'_>,
        now: DateTime<Utc>,
    ) -> Result<Accepted, IngestError> {
        let ci = agent.ci_id.clone().unwrap_or_default();
        let conflict = IdentityConflict {
            id: format!(
                "idc_{}",
                &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                    format!("{ci}\0{}", agent.id).as_bytes()
                ))[..20]
            ),
            raised_at: now,
            rule: "agent".into(),
            value: format!(
                "{} was superseded by {successor} but still reports",
                agent.id
            ),
            existing_ci: ci,
            existing_agent: Some(successor.to_string()),
            claiming_agent: agent.id.clone(),
            claiming_ci: None,
            resolved_at: None,
            resolution: None,
        };
        let commit = IngestCommit {
            conflict: Some(conflict),
            ..accepted_commit(agent, env, now, &received, self.evidence(received.body))
        };
        self.store.commit_ingest(&commit).map_err(commit_error)?;
        tracing::warn!(agent_id = %agent.id, successor, "superseded agent still reports; identity conflict held for review");
        // The report is kept as evidence for the review (its seq is spent), and the agent
        // is told, so it stops and an operator finds it instead of it running on unseen.
        Err(IngestError::Superseded(format!(
            "agent {} was superseded by {successor}: its machine reports through that agent \
             now; the report is held for review and this agent should be removed",
            agent.id
        )))
    }

    /// A heartbeat's own checks, before its batch: size, signature, body. Blocking only
    /// when the agent's key is not cached yet ([`Ingest::knows_key`]): then it reads the
    /// agent. What depends on the agent's record (revoked, superseded, seq) is
    /// [`admit_heartbeat`]'s, once the batch has read it.
    pub fn sign_check_heartbeat(
        &self,
        env: &Envelope,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<SignedHeartbeat, IngestError> {
        if body.len() > census_shared::limits::MAX_HEARTBEAT_BYTES {
            return Err(IngestError::PayloadTooLarge(format!(
                "heartbeat body exceeds {} bytes",
                census_shared::limits::MAX_HEARTBEAT_BYTES
            )));
        }
        let key = match self.cached_key(&env.agent_id, None) {
            Some(key) => key,
            None => {
                let agent = in_good_standing(
                    &env.agent_id,
                    self.store.get_agent(&env.agent_id).map_err(unavailable)?,
                )?;
                self.public_key(&agent)?
            }
        };
        verify_signature(
            &env.agent_id,
            &key,
            &envelope::heartbeat_fields(&env.agent_id, env.seq, body),
            &env.signature,
        )?;
        let hb: Heartbeat =
            serde_json::from_slice(body).map_err(|e| IngestError::Unprocessable {
                field: None,
                message: format!("heartbeat: {e}"),
            })?;
        Ok(SignedHeartbeat {
            agent_id: env.agent_id.clone(),
            seq: env.seq,
            content_hash: hb.content_hash,
            at: now,
        })
    }

    /// Whether a heartbeat of this agent can be checked without a read.
    pub fn knows_key(&self, agent_id: &str) -> bool {
        self.cached_key(agent_id, None).is_some()
    }

    /// A heartbeat: the inventory is unchanged. Blocking; commits on its own (the server
    /// batches heartbeats through [`HeartbeatBatcher`] instead).
    pub fn heartbeat(
        &self,
        env: &Envelope,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Accepted, IngestError> {
        let signed = self.sign_check_heartbeat(env, body, now)?;
        let agent = self
            .store
            .get_agent(&signed.agent_id)
            .map_err(unavailable)?;
        let (commit, accepted) = admit_heartbeat(agent, &signed)?;
        let (agent_id, seq) = (commit.agent_id.clone(), commit.seq);
        self.store.commit_heartbeat(commit).map_err(commit_error)?;
        tracing::debug!(agent_id = %agent_id, seq, "heartbeat accepted");
        Ok(accepted)
    }
}

/// A heartbeat whose signature and body were checked, waiting for its agent's record.
#[derive(Debug)]
pub struct SignedHeartbeat {
    agent_id: String,
    seq: u64,
    content_hash: String,
    at: DateTime<Utc>,
}

/// What a heartbeat's agent record decides: known and not revoked, not superseded, its seq
/// above the last; and the ack, which asks for a full inventory when the collector does not
/// hold the one the agent reports unchanged.
pub fn admit_heartbeat(
    agent: Option<Agent>,
    hb: &SignedHeartbeat,
) -> Result<(HeartbeatCommit, Accepted), IngestError> {
    let agent = in_good_standing(&hb.agent_id, agent)?;
    if let Some(successor) = &agent.superseded_by {
        return Err(IngestError::Superseded(format!(
            "agent {} was superseded by {successor}: its machine reports through that \
             agent now and this agent should be removed",
            agent.id
        )));
    }
    seq_above_last(&agent, hb.seq)?;
    let known = agent.last_content_hash.as_deref() == Some(hb.content_hash.as_str())
        && agent.ci_id.is_some();
    let commit = HeartbeatCommit {
        agent_id: agent.id.clone(),
        expected_last_seq: agent.last_seq,
        seq: hb.seq,
        at: hb.at,
    };
    let accepted = Accepted {
        ack: Ack {
            agent_id: agent.id,
            seq: hb.seq,
            ci_id: agent.ci_id,
            content_hash: hb.content_hash.clone(),
            change_record: None,
            resend_full: !known,
        },
        changed: false,
    };
    Ok((commit, accepted))
}

/// Known to this collector and not revoked.
fn in_good_standing(agent_id: &str, agent: Option<Agent>) -> Result<Agent, IngestError> {
    let agent = agent.ok_or_else(|| {
        IngestError::Unauthorized(format!("unknown agent '{agent_id}': enroll first"))
    })?;
    if let Some(at) = agent.revoked_at {
        return Err(IngestError::Revoked(format!(
            "agent {} was revoked at {at}: enroll it again to report",
            agent.id
        )));
    }
    Ok(agent)
}

fn verify_signature(
    agent_id: &str,
    key: &AgentPublicKey,
    fields: &envelope::SignedFields<'_>,
    signature: &str,
) -> Result<(), IngestError> {
    envelope::verify(key, fields, signature).map_err(|e| match e {
        EnvelopeError::MalformedSignature => {
            IngestError::Unauthorized("signature header is not base64 of 64 bytes".into())
        }
        _ => IngestError::Unauthorized(format!(
            "signature does not verify for agent {agent_id} over the received body"
        )),
    })
}

/// Replay protection outside the commit (the commit's seq compare-and-set is the one that
/// holds under concurrency).
fn seq_above_last(agent: &Agent, seq: u64) -> Result<(), IngestError> {
    if seq <= agent.last_seq {
        return Err(IngestError::Conflict(format!(
            "seq {seq} is not above the last accepted seq {} for agent {}",
            agent.last_seq, agent.id
        )));
    }
    Ok(())
}

type Waiting = (
    SignedHeartbeat,
    tokio::sync::oneshot::Sender<Result<Accepted, IngestError>>,
);

/// Heartbeats that arrive together are admitted and committed together, in one durable
/// transaction that reads their agents (each admitted on its agent's record as the
/// transaction holds it: revoked, superseded, seq) and records them. A heartbeat is tens of
/// microseconds of work; a write transaction, or a round trip to a database, on its own
/// costs more.
pub struct HeartbeatBatcher {
    queue: std::sync::mpsc::Sender<Waiting>,
}

/// Most heartbeats one transaction takes.
const MAX_HEARTBEAT_BATCH: usize = 4096;

/// Waits for a heartbeat, then takes those waiting behind it; `None` once the batcher is
/// gone.
fn next_batch(rx: &std::sync::mpsc::Receiver<Waiting>) -> Option<Vec<Waiting>> {
    let mut batch = vec![rx.recv().ok()?];
    while batch.len() < MAX_HEARTBEAT_BATCH {
        match rx.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    Some(batch)
}

impl HeartbeatBatcher {
    /// Starts the committing thread; it ends when the batcher is dropped. One thread, on
    /// every engine: on PostgreSQL, 4 or 8 batches in flight made batches smaller and the
    /// statements per heartbeat more (2,879 and 2,355 heartbeats/s against 4,655 with one,
    /// bench/RESULTS.md).
    pub fn start(store: Arc<dyn Store>) -> std::io::Result<Arc<Self>> {
        let (tx, rx) = std::sync::mpsc::channel::<Waiting>();
        std::thread::Builder::new()
            .name("census-heartbeats".into())
            .spawn(move || {
                while let Some(batch) = next_batch(&rx) {
                    commit_batch(store.as_ref(), batch);
                }
            })?;
        Ok(Arc::new(HeartbeatBatcher { queue: tx }))
    }

    /// Admits and commits one checked heartbeat with whatever others are waiting.
    pub async fn commit(&self, hb: SignedHeartbeat) -> Result<Accepted, IngestError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if self.queue.send((hb, reply)).is_err() {
            return Err(IngestError::Unavailable(
                "the heartbeat committer stopped".into(),
            ));
        }
        answer.await.unwrap_or_else(|_| {
            Err(IngestError::Unavailable(
                "the heartbeat committer stopped".into(),
            ))
        })
    }
}

/// One batch in one transaction: its agents read together, each heartbeat admitted on its
/// agent's record as the transaction holds it, the admitted ones recorded; every heartbeat
/// answered.
fn commit_batch(store: &dyn Store, batch: Vec<Waiting>) {
    let commits: Vec<HeartbeatCommit> = batch
        .iter()
        .map(|(hb, _)| HeartbeatCommit {
            agent_id: hb.agent_id.clone(),
            expected_last_seq: 0,
            seq: hb.seq,
            at: hb.at,
        })
        .collect();
    let mut admissions: Vec<Option<Result<Accepted, IngestError>>> =
        batch.iter().map(|_| None).collect();
    let result = store.admit_heartbeats(&commits, &mut |i, agent| {
        let Some((hb, _)) = batch.get(i) else {
            return false;
        };
        let admission = admit_heartbeat(agent.cloned(), hb).map(|(_, accepted)| accepted);
        let admitted = admission.is_ok();
        admissions[i] = Some(admission);
        admitted
    });
    match result {
        Ok(results) => {
            for (((_, reply), r), admission) in batch.into_iter().zip(results).zip(admissions) {
                let answer = match (r, admission) {
                    (Ok(()), Some(Ok(accepted))) => Ok(accepted),
                    (Err(CommitError::NotAdmitted), Some(Err(refused))) => Err(refused),
                    (Err(e), _) => Err(commit_error(e)),
                    (Ok(()), _) => Err(IngestError::Unavailable(
                        "a heartbeat was recorded without its admission".into(),
                    )),
                };
                let _ = reply.send(answer);
            }
        }
        Err(e) => {
            let message = e.to_string();
            for (_, reply) in batch {
                let _ = reply.send(Err(commit_error(CommitError::Store(
                    crate::store::StoreError::Io(message.clone()),
                ))));
            }
            // The batch commits durably: a failed write or fsync leaves the engine's state
            // untrustworthy, as a failed group flush does (see GroupCommit::run). Fail-stop.
            if matches!(e, crate::store::StoreError::Io(_)) {
                tracing::error!(error = message, "heartbeat commit failed; stopping so a restart recovers from the last durable state");
                std::thread::sleep(std::time::Duration::from_millis(200));
                std::process::exit(EXIT_STORE_FAILED);
            }
        }
    }
}

/// What an accepted inventory records on its agent, whichever form it came in.
struct Received<'a> {
    content_hash: String,
    /// Sections the inventory did not collect.
    uncollected: Vec<String>,
    skew: i64,
    body: &'a [u8],
}

impl<'a> Received<'a> {
    fn of(snap: &census_shared::Snapshot, skew: i64, body: &'a [u8]) -> Received<'a> {
        Received {
            content_hash: snap.content_hash(),
            uncollected: snap
                .uncollected_sections()
                .into_iter()
                .map(String::from)
                .collect(),
            skew,
            body,
        }
    }
}

/// Where the time of one ingest went, for the accepted log line.
struct Timing {
    t0: std::time::Instant,
    verified: std::time::Duration,
    decoded: std::time::Duration,
}

fn body_encoding(content_encoding: Option<&str>) -> Result<BodyEncoding, IngestError> {
    BodyEncoding::from_header(content_encoding).ok_or_else(|| {
        IngestError::UnsupportedEncoding(format!(
            "Content-Encoding '{}' is not supported; use zstd or identity",
            content_encoding.unwrap_or("")
        ))
    })
}

fn decode_error(e: DecodeError) -> IngestError {
    match e {
        DecodeError::DecompressedTooLarge { .. } => IngestError::PayloadTooLarge(e.to_string()),
        DecodeError::Zstd(_) => IngestError::BadRequest(e.to_string()),
        other => IngestError::Unprocessable {
            field: other.field().map(str::to_string),
            message: other.to_string(),
        },
    }
}

/// The body names the agent and seq the signed envelope does.
fn same_sender(
    agent: &Agent,
    env: &Envelope,
    body_agent: &str,
    body_seq: u64,
) -> Result<(), IngestError> {
    if body_agent != agent.id {
        return Err(IngestError::Forbidden(format!(
            "body claims agent '{body_agent}' but was signed by agent {}",
            agent.id
        )));
    }
    if body_seq != env.seq {
        return Err(IngestError::Unprocessable {
            field: Some("seq".into()),
            message: format!(
                "seq: body says {body_seq} but the signed envelope says {}",
                env.seq
            ),
        });
    }
    Ok(())
}

fn base_mismatch(why: impl Into<String>) -> IngestError {
    IngestError::BaseMismatch(format!("{}: send a full snapshot", why.into()))
}

/// A delta applies only to the inventory the collector last accepted from this agent.
fn check_base(agent: &Agent, delta: &census_shared::delta::Delta) -> Result<(), IngestError> {
    if agent.base_seq != Some(delta.base_seq) {
        return Err(base_mismatch(match agent.base_seq {
            Some(seq) => format!(
                "the delta's base is seq {}, but the last inventory accepted from this agent is seq {seq}",
                delta.base_seq
            ),
            None => format!(
                "the delta's base is seq {}, but no inventory from this agent is on record",
                delta.base_seq
            ),
        }));
    }
    if agent.last_content_hash.as_deref() != Some(delta.base_hash.as_str()) {
        return Err(base_mismatch(format!(
            "the delta's base hash {} is not the hash of the inventory accepted at seq {}",
            delta.base_hash, delta.base_seq
        )));
    }
    Ok(())
}

/// The part of a commit every accepted inventory shares: the seq step, the new base,
/// times and evidence.
fn accepted_commit(
    agent: &Agent,
    env: &Envelope,
    now: DateTime<Utc>,
    received: &Received<'_>,
    body: Option<Vec<u8>>,
) -> IngestCommit {
    IngestCommit {
        agent_id: agent.id.clone(),
        expected_last_seq: agent.last_seq,
        new_seq: env.seq,
        seen_at: now,
        content_hash: Some(received.content_hash.clone()),
        uncollected: received.uncollected.clone(),
        clock_skew_seconds: Some(received.skew),
        body,
        ..Default::default()
    }
}

fn commit_error(e: CommitError) -> IngestError {
    match e {
        CommitError::SeqMoved { expected, current } => IngestError::Conflict(format!("seq conflict: another submission for this agent was accepted first (last seq {current}, expected {expected})")),
        CommitError::AgentGone(id) => IngestError::Forbidden(format!("agent {id} was revoked")),
        CommitError::NotAdmitted => IngestError::Forbidden("refused on the agent's record".into()),
        CommitError::IdentityRace(k) => IngestError::Unavailable(format!("identity {k} contended; retry")),
        CommitError::Store(e) => unavailable(e),
    }
}
