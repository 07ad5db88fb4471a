//! The narrow interface a storage engine implements: named key spaces of ordered byte keys,
//! point reads, ordered scans, and serializable read-write transactions. Nothing here knows
//! what a computer or an audit entry is; the domain services above (`cmdb`) hold every
//! rule, once, for every backend.
//!
//! Architecture Invariant: a backend holds no domain logic. It is proven by the
//! conformance suite (`collector/tests/integration/backend.rs`), which every backend passes.

use super::StoreError;

/// Every key space, with the name a backend stores it under. Adding one is a new variant
/// here; `ALL` and `name` are exhaustive, so the compiler finds every place to extend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Space {
    /// schema version, counters, chain heads, severity rules.
    Meta,
    /// enrollment token secret hash -> token (JSON).
    EnrollmentTokens,
    /// agent id -> agent (JSON).
    Agents,
    /// public key text -> agent id.
    AgentKeys,
    /// agent id -> last seq and last seen (16 bytes): heartbeats write only this.
    AgentState,
    /// agent id -> the last accepted body, when evidence bodies are kept.
    Evidence,
    /// CI id -> the number of the record that holds it (a component's computer).
    Ids,
    /// number -> CI id of a numbered CI (computers, shared CIs, edge targets).
    NumIds,
    /// computer number -> [`codec::ComputerRec`](super::codec::ComputerRec).
    Computers,
    /// computer number -> its components and non-install edges.
    Components,
    /// computer number -> its installs.
    Installs,
    /// computer number -> name, status, id: what a package query reads per match.
    Summaries,
    /// computer number -> last seen (i64 µs): heartbeats touch only this.
    Seen,
    /// (class, number) -> shared CI: operating system release, software product, subnet.
    Shared,
    /// variant number -> software variant.
    Variants,
    /// encoded variant -> its number.
    VariantIds,
    /// reverse edges into numbered CIs (installs grouped by variant).
    Reverse,
    /// (computer number, step) -> a history step (when, change record, undo).
    Steps,
    /// (computer number, step) -> the full configuration after that step.
    Checkpoints,
    /// identity rule and value -> computer id.
    Identity,
    Conflicts,
    /// record id -> the record at its current revision.
    ChangeRecords,
    /// record id, revision (u32 BE) -> the record as it was before a review replaced it.
    RecordRevisions,
    /// computer id, aspect, key -> a recent removal (flap suppression).
    Removals,
    Users,
    ApiTokens,
    NoiseRules,
    PlannedChanges,
    /// seq (u64 BE) -> audit entry, never rewritten.
    Audit,
    /// generated id -> queued feed event, until the sequencer numbers it.
    Outbox,
    /// cursor (u64 BE) -> feed event: which record, at which revision.
    Feed,
    Webhooks,
    Deliveries,
    /// licence id -> licence (JSON).
    Licences,
    /// service id -> the service's current version (JSON).
    Services,
    /// service id, 0, version (u64 BE) -> that version (JSON): the service's history.
    ServiceVersions,
    /// advisory id -> the advisory (JSON, compressed when large).
    Advisories,
    /// ecosystem, 0, package, 0, advisory id -> nothing: which advisories name a package.
    AdvisoryIndex,
    /// computer number -> its [`ExposureLedger`](crate::model::vuln::ExposureLedger).
    Exposures,
    /// computer number -> the record revision whose installs, OS release or status the
    /// exposure tracker has yet to match (written by the record's own transaction).
    Rematch,
    /// address text, 0, computer number -> nothing: which computers hold an IP address now
    /// (maintained with each record's components).
    Addresses,
    /// computer number -> the flows its agent reported ([`FlowsRec`](crate::model::flows::FlowsRec)).
    Flows,
    /// peer address text, 0, reporter number -> nothing: who reported a flow to an address.
    FlowTargets,
    /// baseline id -> the baseline's current version (JSON).
    Baselines,
}

impl Space {
    pub const ALL: [Space; 44] = [
        Space::Meta,
        Space::EnrollmentTokens,
        Space::Agents,
        Space::AgentKeys,
        Space::AgentState,
        Space::Evidence,
        Space::Ids,
        Space::NumIds,
        Space::Computers,
        Space::Components,
        Space::Installs,
        Space::Summaries,
        Space::Seen,
        Space::Shared,
        Space::Variants,
        Space::VariantIds,
        Space::Reverse,
        Space::Steps,
        Space::Checkpoints,
        Space::Identity,
        Space::Conflicts,
        Space::ChangeRecords,
        Space::RecordRevisions,
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
        Space::Licences,
        Space::Services,
        Space::ServiceVersions,
        Space::Advisories,
        Space::AdvisoryIndex,
        Space::Exposures,
        Space::Rematch,
        Space::Addresses,
        Space::Flows,
        Space::FlowTargets,
        Space::Baselines,
    ];

    /// The stored name. Spaces whose layout is unchanged since schema 2 keep their names,
    /// so a migration leaves them in place.
    pub fn name(self) -> &'static str {
        match self {
            Space::Meta => "meta",
            Space::EnrollmentTokens => "tokens",
            Space::Agents => "agents",
            Space::AgentKeys => "agent_keys",
            Space::AgentState => "agent_state",
            Space::Evidence => "bodies",
            Space::Ids => "v3_ids",
            Space::NumIds => "v3_num_ids",
            Space::Computers => "v3_computers",
            Space::Components => "v3_components",
            Space::Installs => "v3_installs",
            Space::Summaries => "v3_summaries",
            Space::Seen => "v3_seen",
            Space::Shared => "v3_shared",
            Space::Variants => "v3_variants",
            Space::VariantIds => "v3_variant_ids",
            Space::Reverse => "v3_reverse",
            Space::Steps => "v3_steps",
            Space::Checkpoints => "v3_checkpoints",
            Space::Identity => "identity",
            Space::Conflicts => "conflicts",
            Space::ChangeRecords => "changes",
            Space::RecordRevisions => "v3_record_revisions",
            Space::Removals => "removals",
            Space::Users => "users",
            Space::ApiTokens => "api_tokens",
            Space::NoiseRules => "noise",
            Space::PlannedChanges => "planned",
            Space::Audit => "audit",
            Space::Outbox => "outbox",
            Space::Feed => "feed",
            Space::Webhooks => "webhooks",
            Space::Deliveries => "deliveries",
            Space::Licences => "licences",
            Space::Services => "services",
            Space::ServiceVersions => "service_versions",
            Space::Advisories => "advisories",
            Space::AdvisoryIndex => "advisory_index",
            Space::Exposures => "exposures",
            Space::Rematch => "rematch",
            Space::Addresses => "v3_addresses",
            Space::Flows => "flows",
            Space::FlowTargets => "flow_targets",
            Space::Baselines => "baselines",
        }
    }
}

/// Why a transaction body stopped. `Abort` carries nothing: the body keeps its own reason.
#[derive(Debug)]
pub enum TxError {
    /// The body decided not to commit; nothing is written.
    Abort,
    /// The engine failed; nothing is written.
    Store(StoreError),
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Store(e)
    }
}

/// Reads and writes inside one transaction. Reads see the transaction's own writes.
///
/// Writes are blind (they answer nothing), so an engine that talks to a server can hold
/// them until the commit and send them in one batch; a read is a round trip there, so
/// reads of many keys go through [`Tx::get_many`].
pub trait Tx {
    fn get(&mut self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, TxError>;
    /// The values of `keys`, in their order.
    fn get_many(&mut self, space: Space, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, TxError> {
        keys.iter().map(|k| self.get(space, k)).collect()
    }
    /// The values of keys in several spaces, in their order.
    fn get_each(&mut self, keys: &[(Space, &[u8])]) -> Result<Vec<Option<Vec<u8>>>, TxError> {
        keys.iter().map(|(s, k)| self.get(*s, k)).collect()
    }
    /// [`Tx::get_many`] for several spaces at once, one answer list per space: one round
    /// trip on an engine behind a network.
    fn get_many_each(
        &mut self,
        wanted: &[(Space, &[&[u8]])],
    ) -> Result<Vec<Vec<Option<Vec<u8>>>>, TxError> {
        wanted
            .iter()
            .map(|(space, keys)| self.get_many(*space, keys))
            .collect()
    }
    /// Says which keys the transaction is about to read, so an engine behind a network
    /// reads (and locks) them in one round trip and answers the reads that follow from
    /// what it got. An embedded engine reads them as they come.
    fn prefetch(&mut self, _wanted: &[(Space, &[&[u8]])]) -> Result<(), TxError> {
        Ok(())
    }
    fn put(&mut self, space: Space, key: &[u8], value: &[u8]) -> Result<(), TxError>;
    fn delete(&mut self, space: Space, key: &[u8]) -> Result<(), TxError>;
    /// Deletes `key` and answers what it held (`None`: nothing was there).
    fn take(&mut self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        let old = self.get(space, key)?;
        if old.is_some() {
            self.delete(space, key)?;
        }
        Ok(old)
    }
}

/// What a scan visitor answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// An engine's range iterator walked in the scan's direction until `step` stops it.
pub(crate) fn walk<I, E>(
    iter: I,
    reverse: bool,
    mut step: impl FnMut(I::Item) -> Result<Flow, E>,
) -> Result<(), E>
where
    I: DoubleEndedIterator,
{
    if reverse {
        for r in iter.rev() {
            if step(r)? == Flow::Stop {
                break;
            }
        }
    } else {
        for r in iter {
            if step(r)? == Flow::Stop {
                break;
            }
        }
    }
    Ok(())
}

/// A scan's bounds: keys `>= from` and `< to` (`None`: unbounded), optionally newest first.
#[derive(Debug, Clone, Default)]
pub struct Range<'a> {
    pub from: Option<&'a [u8]>,
    pub to: Option<&'a [u8]>,
    pub reverse: bool,
}

impl<'a> Range<'a> {
    pub fn all() -> Range<'static> {
        Range::default()
    }
    /// Every key that starts with `prefix` (`end` is its exclusive upper bound, which the
    /// caller computes with [`prefix_end`] and keeps alive).
    pub fn prefix(prefix: &'a [u8], end: Option<&'a [u8]>) -> Range<'a> {
        Range {
            from: Some(prefix),
            to: end,
            reverse: false,
        }
    }
    pub fn rev(self) -> Range<'a> {
        Range {
            reverse: true,
            ..self
        }
    }
}

/// The smallest key greater than every key starting with `prefix` (`None`: no such key,
/// the prefix is all 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

pub type Visit<'v> = dyn FnMut(&[u8], &[u8]) -> Result<Flow, StoreError> + 'v;

/// Rows a shared store wrote since a horizon, and the horizon that follows them.
#[derive(Debug, Default)]
pub struct WrittenSince {
    pub rows: Vec<(Vec<u8>, Vec<u8>)>,
    pub horizon: u64,
}

pub trait Backend: Send + Sync + 'static {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// The values of `keys` of one space, in their order (one statement on a server).
    fn get_many(&self, space: Space, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|k| self.get(space, k)).collect()
    }
    /// Whether other processes write this store too (a database server): what this process
    /// remembers of records others may rewrite (the computer summaries) is then brought up
    /// to date with [`Backend::summaries_since`] before each use.
    fn shared(&self) -> bool {
        false
    }
    /// Whether every transaction is durable when it returns ([`Backend::flush`] has
    /// nothing left to do), so nothing need wait for a group flush.
    fn durable_commits(&self) -> bool {
        false
    }
    /// On a shared store: the computer summaries written since `horizon` (every one when
    /// `None`) and the horizon to pass next time, so a process keeps its summary table in
    /// step with other processes' writes by reading only what changed (`None` from an
    /// engine only this process writes: it sees every write itself).
    fn summaries_since(&self, horizon: Option<u64>) -> Result<Option<WrittenSince>, StoreError> {
        let _ = horizon;
        Ok(None)
    }
    /// The values of keys in several spaces, in their order: one round trip on an engine
    /// behind a network (each read is its own point in time, as separate `get`s are).
    fn get_each(&self, keys: &[(Space, &[u8])]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|(s, k)| self.get(*s, k)).collect()
    }
    fn scan(&self, space: Space, range: Range<'_>, visit: &mut Visit<'_>)
        -> Result<(), StoreError>;
    fn count(&self, space: Space) -> Result<usize, StoreError>;
    /// Runs `body` as one serializable transaction: all its writes or none. The body may run
    /// more than once (an engine retries on conflict), so it must not have other effects.
    fn transact(
        &self,
        body: &mut dyn FnMut(&mut dyn Tx) -> Result<(), TxError>,
    ) -> Result<(), TxError>;
    /// [`Backend::transact`], durable when it returns: one transaction where a commit and
    /// a [`Backend::flush`] would be two (the heartbeat committer, whose batches are small
    /// and frequent).
    fn transact_durable(
        &self,
        body: &mut dyn FnMut(&mut dyn Tx) -> Result<(), TxError>,
    ) -> Result<(), TxError> {
        self.transact(body)?;
        self.flush().map_err(TxError::Store)
    }
    /// Writes outside a transaction (one key is atomic on its own): bulk loads, counters
    /// nobody else reads in a transaction.
    fn put(&self, space: Space, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    fn delete(&self, space: Space, key: &[u8]) -> Result<(), StoreError>;
    /// Writes a batch into a store nobody else uses yet (a copy, a restore): one
    /// transaction here; an engine may skip what only concurrent writers need.
    fn load(&self, space: Space, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), StoreError> {
        self.transact(&mut |tx| {
            for (k, v) in pairs {
                tx.put(space, k, v)?;
            }
            Ok(())
        })
        .map_err(|e| match e {
            TxError::Store(e) => e,
            TxError::Abort => StoreError::Io("a bulk load aborted".into()),
        })
    }
    /// Removes every key of a space.
    fn clear(&self, space: Space) -> Result<(), StoreError>;
    /// Makes every committed write durable.
    fn flush(&self) -> Result<(), StoreError>;
    fn size_on_disk(&self) -> Result<u64, StoreError>;
    /// Whether this process leads the fleet-wide background work. An engine only this
    /// process can open always does; a shared server answers for one process at a time.
    fn lead(&self) -> Result<bool, StoreError> {
        Ok(true)
    }
}

/// Every key starting with `prefix`.
pub fn scan_prefix(
    backend: &dyn Backend,
    space: Space,
    prefix: &[u8],
    visit: &mut Visit<'_>,
) -> Result<(), StoreError> {
    let end = prefix_end(prefix);
    backend.scan(space, Range::prefix(prefix, end.as_deref()), visit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn space_names_are_unique() {
        let mut names: Vec<_> = Space::ALL.iter().map(|s| s.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Space::ALL.len());
    }
}
