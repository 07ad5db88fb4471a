//! Operations every transport calls — the people's API, the web UI, the admin CLI and its
//! socket: validation, the audited write, and what follows it (drift rules reloaded, the
//! feed sequencer woken). No HTTP and no terminal here: errors are [`OpError`], which each
//! transport renders its own way.
//!
//! Architecture Invariant: imports point down. `ops` uses `store`, `model` and `drift`;
//! the transports (`changes_api`, `ui`, `admin`) use `ops`; nothing here names a transport.

pub mod admin;
pub mod baselines;
pub mod changes;
pub mod credentials;
pub mod foreign;
pub mod health;
pub mod licences;
pub mod map;
pub mod register;
pub mod register_csv;
pub mod services;
pub mod software;
pub mod vulns;

use std::sync::Arc;

use chrono::Utc;
use serde_json::Value;

use crate::ingest::Ingest;
use crate::model::*;
use crate::store::{AuditDraft, PeopleWrite, PeopleWriteError, Store, StoreError};

/// Longest review comment or rule note a person may write.
pub const MAX_COMMENT_CHARS: usize = 4000;

/// Why an operation was refused or failed. Nothing was written in any case.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// What it names does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// The request is not valid; `field` names what is wrong when one thing is.
    #[error("{message}")]
    Invalid {
        field: Option<String>,
        message: String,
    },
    /// The state forbids it now (decided already, changed meanwhile, cancelled).
    #[error("{0}")]
    Conflict(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl OpError {
    pub fn invalid(message: impl Into<String>) -> OpError {
        let message = message.into();
        // Messages start with the field they are about ("comment: ...").
        let field = message
            .split_once(':')
            .map(|(f, _)| f.to_string())
            .filter(|f| !f.contains(' ') && !f.is_empty());
        OpError::Invalid { field, message }
    }
}

/// A write's `expected_version` is one a client can send: JSON integers beyond i64 are not
/// portable, so the schemas bound it there.
pub fn version_bound(expected: Option<u64>) -> Result<(), OpError> {
    match expected {
        Some(v) if v > i64::MAX as u64 => Err(OpError::invalid(format!(
            "expected_version: at most {}",
            i64::MAX
        ))),
        _ => Ok(()),
    }
}

/// The compare-and-set a person's edit asks for: refused unless `id` is still at
/// `expected` (when given).
pub fn expect_version(id: &str, expected: Option<u64>, current: u64) -> Result<(), OpError> {
    version_bound(expected)?;
    match expected {
        Some(v) if v != current => Err(OpError::Conflict(format!(
            "{id} is at version {current}, not {v}; reload and try again"
        ))),
        _ => Ok(()),
    }
}

impl From<PeopleWriteError> for OpError {
    fn from(e: PeopleWriteError) -> Self {
        match e {
            PeopleWriteError::Stale(m) => OpError::Conflict(format!(
                "{m} changed since it was read; reload and try again"
            )),
            PeopleWriteError::NotFound(m) => OpError::NotFound(m),
            PeopleWriteError::Taken(m) => OpError::Conflict(m),
            e @ PeopleWriteError::Raced(_) => OpError::Conflict(e.to_string()),
            PeopleWriteError::Store(e) => OpError::Store(e),
        }
    }
}

/// Who does it: the name that goes into the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
}

impl Actor {
    pub fn new(name: impl Into<String>) -> Actor {
        Actor { name: name.into() }
    }
}

/// What every operation needs: the store, and (in a running collector) the ingest path
/// whose cached drift rules a person's write may change and whose feed sequencer it wakes.
#[derive(Clone)]
pub struct Ops {
    pub store: Arc<dyn Store>,
    pub ingest: Option<Arc<Ingest>>,
}

/// What `actor` did to `target`, for the audit log.
pub fn draft(
    actor: &Actor,
    action: &str,
    target: &str,
    before: Option<Value>,
    after: Option<Value>,
    comment: Option<String>,
) -> AuditDraft {
    AuditDraft {
        actor: actor.name.clone(),
        action: action.into(),
        target: target.into(),
        before,
        after,
        comment,
    }
}

impl Ops {
    /// Applies a person's write with its audit entry, then lets ingest and the feed see
    /// it. Blocking.
    pub fn audited(&self, write: PeopleWrite, draft: AuditDraft) -> Result<AuditEntry, OpError> {
        Ok(self.commit(write, draft)?)
    }

    /// [`Ops::audited`] with the store's own refusal, for an operation that computes its
    /// write again when what it read went stale.
    pub fn commit(
        &self,
        write: PeopleWrite,
        draft: AuditDraft,
    ) -> Result<AuditEntry, PeopleWriteError> {
        let (actor, action, target) = (
            draft.actor.clone(),
            draft.action.clone(),
            draft.target.clone(),
        );
        let entry = self.store.commit_people(&write, draft, Utc::now())?;
        if let Some(ingest) = &self.ingest {
            ingest.invalidate_rules();
            ingest.events.notify_one();
        }
        tracing::info!(
            actor,
            action,
            target,
            audit_seq = entry.seq,
            "audited change"
        );
        Ok(entry)
    }
}

pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(rand::random::<[u8; 8]>()))
}
