//! Ingest commits, heartbeats and lifecycle status changes.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::*;
use crate::model::*;
use crate::store::codec;

pub(crate) fn encode_hot(seq: u64, seen: Option<DateTime<Utc>>) -> [u8; 16] {
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

pub(crate) fn decode_hot(bytes: &[u8]) -> Option<(u64, Option<DateTime<Utc>>)> {
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

/// A heartbeat batch's reads, made once for the whole batch (one round trip each on an
/// engine behind a network).
struct HeartbeatReads {
    agents: HashMap<String, Option<Agent>>,
    /// agent id -> its hot record as the batch left it so far.
    hot: HashMap<String, Option<Vec<u8>>>,
    /// CI id -> its record number.
    nums: HashMap<String, Vec<u8>>,
}

impl HeartbeatReads {
    /// `known_num` answers CI numbers this process already knows (they never change), so
    /// a batch usually reads in one round trip: its agents and their hot records together.
    fn read(
        tx: &mut dyn Tx,
        batch: &[HeartbeatCommit],
        known_num: &dyn Fn(&str) -> Option<u32>,
    ) -> Result<Self, Fail<StoreError>> {
        let mut ids: Vec<&str> = batch.iter().map(|h| h.agent_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let keys: Vec<&[u8]> = ids.iter().map(|i| i.as_bytes()).collect();
        let mut both = tx
            .get_many_each(&[(Space::Agents, &keys), (Space::AgentState, &keys)])?
            .into_iter();
        let (Some(agent_bytes), Some(hot_bytes)) = (both.next(), both.next()) else {
            return Err(io("a read of two key spaces answered fewer").into());
        };
        let mut agents = HashMap::new();
        let mut hot = HashMap::new();
        for ((id, a), h) in ids.iter().zip(agent_bytes).zip(hot_bytes) {
            let agent: Option<Agent> = match a {
                Some(v) => Some(codec::decode_json(
                    &shown(Space::Agents, id.as_bytes()),
                    &v,
                )?),
                None => None,
            };
            agents.insert(id.to_string(), agent);
            hot.insert(id.to_string(), h);
        }
        let mut cis: Vec<&str> = agents
            .values()
            .flatten()
            .filter(|a| a.superseded_by.is_none())
            .filter_map(|a| a.ci_id.as_deref())
            .collect();
        cis.sort_unstable();
        cis.dedup();
        let mut nums: HashMap<String, Vec<u8>> = HashMap::new();
        let mut unknown = Vec::new();
        for c in cis {
            match known_num(c) {
                Some(n) => {
                    nums.insert(c.to_string(), codec::num_key(n).to_vec());
                }
                None => unknown.push(c),
            }
        }
        if !unknown.is_empty() {
            let ci_keys: Vec<&[u8]> = unknown.iter().map(|c| c.as_bytes()).collect();
            nums.extend(
                unknown
                    .iter()
                    .zip(tx.get_many(Space::Ids, &ci_keys)?)
                    .filter_map(|(c, n)| Some((c.to_string(), n?))),
            );
        }
        Ok(HeartbeatReads { agents, hot, nums })
    }
}

/// One heartbeat inside a transaction: `Ok(Err(..))` refuses it without touching the
/// others of its batch. With `admit`, the heartbeat goes ahead if `admit` accepts its
/// agent as it stands; without, if its agent's seq is still `expected_last_seq`.
fn heartbeat_in(
    tx: &mut dyn Tx,
    reads: &mut HeartbeatReads,
    hb: &HeartbeatCommit,
    i: usize,
    admit: &mut Option<&mut Admit<'_>>,
) -> Result<Result<(), CommitError>, Fail<StoreError>> {
    let key = hb.agent_id.as_bytes();
    let hot = reads.hot.get(&hb.agent_id).cloned().flatten();
    let stored = reads.agents.get(&hb.agent_id).and_then(Option::as_ref);
    let admitted = admit.is_some();
    if let Some(admit) = admit.as_mut() {
        let standing = match (stored, hot.as_deref().and_then(decode_hot)) {
            (Some(agent), Some((seq, seen))) => {
                let mut agent = agent.clone();
                agent.last_seq = seq;
                if seen.is_some() {
                    agent.last_seen = seen;
                }
                Some(agent)
            }
            (agent, _) => agent.cloned(),
        };
        if !admit(i, standing.as_ref()) {
            return Ok(Err(CommitError::NotAdmitted));
        }
    }
    let Some(agent) = stored else {
        return Ok(Err(CommitError::AgentGone(hb.agent_id.clone())));
    };
    if agent.is_revoked() {
        return Ok(Err(CommitError::AgentGone(hb.agent_id.clone())));
    }
    let current = current_seq(agent, hot.as_deref());
    // An admitted heartbeat was checked against this very record, under its lock.
    if !admitted && current != hb.expected_last_seq {
        return Ok(Err(CommitError::SeqMoved {
            expected: hb.expected_last_seq,
            current,
        }));
    }
    let next = encode_hot(hb.seq, Some(hb.at));
    tx.put(Space::AgentState, key, &next)?;
    reads.hot.insert(hb.agent_id.clone(), Some(next.to_vec()));
    // A superseded agent's CI belongs to its successor: its heartbeats are recorded on the
    // agent, never on the CI.
    if let (Some(ci_id), None) = (&agent.ci_id, &agent.superseded_by) {
        if let Some(num) = reads.nums.get(ci_id) {
            tx.put(Space::Seen, num, &hb.at.timestamp_micros().to_be_bytes())?;
        }
    }
    Ok(Ok(()))
}

/// An event waiting for its cursor.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct QueuedEvent {
    pub event_type: String,
    pub record_id: String,
    pub at: DateTime<Utc>,
    /// The record's revision the event is about (0 in events queued before revisions).
    #[serde(default)]
    pub revision: u32,
    /// A register edit, carried whole (a few fields a person changed; there is no record
    /// to refer to). `record_id` is then the CI's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register: Option<crate::model::register::RegisterChange>,
    /// Exposures opened or closed, carried whole (bounded by
    /// [`MAX_EVENT_PAIRS`](crate::model::vuln::MAX_EVENT_PAIRS)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure: Option<crate::model::vuln::ExposureChange>,
}

impl QueuedEvent {
    /// Whether the event is about a change record (others carry what they are about).
    pub(crate) fn refers_to_record(&self) -> bool {
        self.register.is_none() && self.exposure.is_none()
    }
}

/// A change record as stored: the record and how many times people's reviews replaced it
/// (1 as raised). Earlier revisions are in [`Space::RecordRevisions`], so the feed refers
/// to a revision instead of copying the record into every event.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredRecord {
    #[serde(default = "first_revision")]
    pub revision: u32,
    #[serde(flatten)]
    pub record: ChangeRecord,
}

fn first_revision() -> u32 {
    1
}

pub(crate) fn revision_key(record_id: &str, revision: u32) -> Vec<u8> {
    let mut k = record_id.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&revision.to_be_bytes());
    k
}

pub(crate) fn removal_key(ci_id: &str, aspect: Aspect, key: &str) -> Vec<u8> {
    format!("{ci_id}\0{}\0{key}", aspect.as_str()).into_bytes()
}

/// The next outbox key: time-ordered and unique without a counter every writer contends on.
pub(crate) fn outbox_key(at: DateTime<Utc>) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&(at.timestamp_micros() as u64).to_be_bytes());
    k[8..].copy_from_slice(&rand::random::<u64>().to_be_bytes());
    k
}

/// A commit's records, encoded before its transaction.
struct PreparedIngest {
    shared: Vec<(Vec<u8>, Vec<u8>, u32, String)>,
    records: Vec<machine::Encoded>,
    /// Variants new to the fleet, numbered for this commit to write (shared database).
    variants: Vec<PendingVariant>,
    change_record: Option<Vec<u8>>,
    conflict: Option<Vec<u8>>,
    removals: Vec<(Vec<u8>, Vec<u8>)>,
    queued: Option<Vec<u8>>,
    flows: Option<super::flows::PreparedFlows>,
}

impl Cmdb {
    fn prepare_ingest(&self, c: &IngestCommit) -> Result<PreparedIngest, StoreError> {
        // Shared CIs first: they get numbers and are created if absent, once per fleet.
        let known = |id: &str| self.cache.shared.read().is_ok_and(|s| s.contains(id));
        let fresh: Vec<&Ci> = c
            .shared_ci_inserts
            .iter()
            .filter(|ci| !known(&ci.id))
            .collect();
        let ids: Vec<&str> = fresh.iter().map(|ci| ci.id.as_str()).collect();
        let nums = self.ensure_nums(&ids)?;
        let mut shared = Vec::with_capacity(fresh.len());
        for (ci, num) in fresh.iter().zip(nums) {
            let rec = codec::CiRec::from_ci(ci, ci.first_seen);
            shared.push((
                codec::shared_key(ci.class, num).to_vec(),
                codec::encode_packed(&rec)?,
                num,
                ci.id.clone(),
            ));
        }
        let record_link = match (&c.ci_id, &c.change_record) {
            (Some(ci), Some(r)) => Some((ci.as_str(), r.id.as_str())),
            _ => None,
        };
        let writes = machine::Writes {
            puts: &c.ci_puts,
            edge_puts: &c.relationship_puts,
            edge_deletes: &c.relationship_deletes,
            installs: c
                .ci_id
                .as_deref()
                .map(|id| (id, c.install_puts.as_slice(), c.install_deletes.as_slice())),
        };
        // On a shared database the variants this commit is the first to install are
        // numbered by the commit itself.
        let mut variants = Vec::new();
        let records = self.prepare_records_numbering(
            writes,
            c.seen_at,
            record_link,
            self.backend.shared().then_some(&mut variants),
        )?;
        let queued = match &c.change_record {
            Some(r) => Some(codec::encode_json(&QueuedEvent {
                event_type: "change_record.created".into(),
                record_id: r.id.clone(),
                at: c.seen_at,
                revision: 1,
                register: None,
                exposure: None,
            })?),
            None => None,
        };
        let mut removals = Vec::new();
        if let Some(ci_id) = &c.ci_id {
            for r in &c.removals_put {
                removals.push((removal_key(ci_id, r.aspect, &r.key), codec::encode_json(r)?));
            }
        }
        let flows = match (&c.ci_id, &c.flows) {
            (Some(ci_id), update) if *update != FlowUpdate::Keep => match self.num_of(ci_id)? {
                Some(num) => self.prepare_flows(num, update, c.seen_at)?,
                None => None,
            },
            _ => None,
        };
        Ok(PreparedIngest {
            flows,
            shared,
            records,
            variants,
            change_record: c
                .change_record
                .as_ref()
                .map(codec::encode_json)
                .transpose()?,
            conflict: c.conflict.as_ref().map(codec::encode_json).transpose()?,
            removals,
            queued,
        })
    }

    pub(crate) fn do_commit_ingest(&self, c: &IngestCommit) -> Result<(), CommitError> {
        let _writing = self.writing();
        let p = self.prepare_ingest(c)?;
        let outbox = outbox_key(c.seen_at);
        let claims: Vec<String> = c
            .identity_claims
            .iter()
            .map(|(ik, _)| ik.encoded())
            .collect();
        let claim_keys: Vec<&[u8]> = claims.iter().map(|k| k.as_bytes()).collect();
        let shared_keys: Vec<&[u8]> = p.shared.iter().map(|(k, _, _, _)| k.as_slice()).collect();
        let record_keys: Vec<[u8; 4]> = p.records.iter().map(|e| codec::num_key(e.num)).collect();
        let posting_keys: Vec<[u8; 13]> = p
            .records
            .iter()
            .flat_map(|e| e.posting_keys(self.postings()))
            .collect();
        let agent_keys: Vec<&[u8]> = std::iter::once(c.agent_id.as_bytes())
            .chain(c.supersedes.as_deref().map(str::as_bytes))
            .collect();
        let conflict_keys: Vec<&[u8]> = c.conflict.iter().map(|k| k.id.as_bytes()).collect();
        let variant_keys: Vec<&[u8]> = p.variants.iter().map(|v| v.key.as_slice()).collect();
        transact(self.backend.as_ref(), |tx| {
            let key = c.agent_id.as_bytes();
            // Everything the commit reads, read (and locked) together: one round trip on a
            // database instead of one per step below.
            let records: Vec<&[u8]> = record_keys.iter().map(|k| k.as_slice()).collect();
            let postings: Vec<&[u8]> = posting_keys.iter().map(|k| k.as_slice()).collect();
            tx.prefetch(&[
                (Space::Agents, &agent_keys),
                (Space::AgentState, &agent_keys[..1]),
                (Space::Identity, &claim_keys),
                (Space::Shared, &shared_keys),
                (Space::Conflicts, &conflict_keys),
                (Space::Computers, &records),
                (Space::Reverse, &postings),
                (Space::VariantIds, &variant_keys),
            ])?;
            let mut both = tx
                .get_each(&[(Space::Agents, key), (Space::AgentState, key)])?
                .into_iter();
            let Some(agent_bytes) = both.next().flatten() else {
                return Err(Fail::Abort(CommitError::AgentGone(c.agent_id.clone())));
            };
            let mut agent: Agent = codec::decode_json(&shown(Space::Agents, key), &agent_bytes)?;
            if agent.is_revoked() {
                return Err(Fail::Abort(CommitError::AgentGone(c.agent_id.clone())));
            }
            let current = current_seq(&agent, both.next().flatten().as_deref());
            if current != c.expected_last_seq {
                return Err(Fail::Abort(CommitError::SeqMoved {
                    expected: c.expected_last_seq,
                    current,
                }));
            }
            let held = tx.get_many(Space::Identity, &claim_keys)?;
            // A key claimed twice in this commit sees its first claim, as a read after the
            // write would.
            let mut claimed: HashMap<&str, &str> = HashMap::new();
            for ((k, (_, ci_id)), held) in claims.iter().zip(&c.identity_claims).zip(held) {
                let held = match claimed.get(k.as_str()) {
                    Some(first) => Some(first.as_bytes().to_vec()),
                    None => held,
                };
                claimed.entry(k).or_insert(ci_id);
                match held {
                    Some(existing) if existing != ci_id.as_bytes() => {
                        return Err(Fail::Abort(CommitError::IdentityRace(k.replace('\0', ":"))));
                    }
                    Some(_) => {}
                    None => {
                        tx.put(Space::Identity, k.as_bytes(), ci_id.as_bytes())?;
                    }
                }
            }
            // Shared CIs and a conflict before the records: the postings a record locks are
            // held from their read to the commit, so nothing else is read after them.
            let stored = tx.get_many(Space::Shared, &shared_keys)?;
            for ((k, v, _, _), stored) in p.shared.iter().zip(stored) {
                if stored.is_none() {
                    tx.put(Space::Shared, k, v)?;
                }
            }
            if let (Some(conflict), Some(bytes)) = (&c.conflict, &p.conflict) {
                if tx.get(Space::Conflicts, conflict.id.as_bytes())?.is_none() {
                    tx.put(Space::Conflicts, conflict.id.as_bytes(), bytes)?;
                }
            }
            for (v, stored) in p
                .variants
                .iter()
                .zip(tx.get_many(Space::VariantIds, &variant_keys)?)
            {
                match stored {
                    Some(n) if codec::read_num(&n) != Some(v.num) => {
                        return Err(Fail::Abort(CommitError::IdentityRace(format!(
                            "software variant {} numbered by another collector",
                            v.num
                        ))));
                    }
                    Some(_) => {}
                    None => {
                        tx.put(Space::VariantIds, &v.key, &codec::num_key(v.num))?;
                        tx.put(Space::Variants, &codec::num_key(v.num), &v.value)?;
                    }
                }
            }
            for e in &p.records {
                Self::write_encoded(tx, self.postings(), e, || {
                    CommitError::IdentityRace(format!("computer record {} changed", e.num))
                })?;
            }
            agent.last_seq = c.new_seq;
            agent.last_seen = Some(c.seen_at);
            if c.content_hash.is_some() {
                agent.last_content_hash = c.content_hash.clone();
                agent.base_seq = Some(c.new_seq);
                agent.base_uncollected = c.uncollected.clone();
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
            tx_put_json(tx, Space::Agents, key, &agent)?;
            tx.put(
                Space::AgentState,
                key,
                &encode_hot(c.new_seq, Some(c.seen_at)),
            )?;
            if let Some(old) = &c.supersedes {
                if let Some(mut old_agent) = tx_json::<Agent, _>(tx, Space::Agents, old.as_bytes())?
                {
                    old_agent.superseded_by = Some(c.agent_id.clone());
                    tx_put_json(tx, Space::Agents, old.as_bytes(), &old_agent)?;
                }
            }
            if let (Some(record), Some(bytes), Some(queued)) =
                (&c.change_record, &p.change_record, &p.queued)
            {
                tx.put(Space::ChangeRecords, record.id.as_bytes(), bytes)?;
                tx.put(Space::Outbox, &outbox, queued)?;
            }
            if let Some(ci_id) = &c.ci_id {
                for (aspect, k) in &c.removals_cleared {
                    tx.delete(Space::Removals, &removal_key(ci_id, *aspect, k))?;
                }
                for (k, v) in &p.removals {
                    tx.put(Space::Removals, k, v)?;
                }
            }
            if let Some(body) = &c.body {
                tx.put(Space::Evidence, key, body)?;
            }
            if let Some(flows) = &p.flows {
                Self::write_flows(tx, flows)?;
            }
            Ok(())
        })?;
        if let Ok(mut known) = self.cache.shared.write() {
            known.extend(p.shared.iter().map(|(_, _, _, id)| id.clone()));
        }
        self.variants_committed(&p.variants);
        self.remember_summaries(&p.records);
        let history: usize = p.records.iter().map(|e| e.history_bytes).sum();
        if history > 0 {
            tracing::trace!(agent_id = %c.agent_id, history_bytes = history, "history step written");
        }
        Ok(())
    }

    /// Heartbeats, each checked against its `expected_last_seq`, or admitted by `admit`.
    pub(crate) fn do_commit_heartbeats(
        &self,
        batch: &[HeartbeatCommit],
        mut admit: Option<&mut Admit<'_>>,
    ) -> Result<Vec<Result<(), CommitError>>, StoreError> {
        let _writing = self.writing();
        // Durable as it commits: a heartbeat batch is one transaction, not one and a flush.
        transact_as::<Vec<Result<(), CommitError>>, StoreError>(self.backend.as_ref(), true, |tx| {
            let mut reads = HeartbeatReads::read(tx, batch, &|id| recall(&self.cache.nums, id))?;
            let mut out = Vec::with_capacity(batch.len());
            for (i, hb) in batch.iter().enumerate() {
                out.push(heartbeat_in(tx, &mut reads, hb, i, &mut admit)?);
            }
            Ok(out)
        })
    }

    pub(crate) fn do_set_ci_status(
        &self,
        id: &str,
        expected_version: u64,
        status: CiStatus,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let _writing = self.writing();
        let Some(mut ci) = self.read_ci(id)? else {
            return Ok(false);
        };
        if ci.version != expected_version || ci.status == status {
            return Ok(false);
        }
        ci.status = status;
        ci.version += 1;
        let writes = machine::Writes {
            puts: std::slice::from_ref(&ci),
            ..Default::default()
        };
        let records = self.prepare_records(writes, at, None)?;
        let written = transact::<bool, StoreError>(self.backend.as_ref(), |tx| {
            for e in &records {
                match Self::write_encoded(tx, self.postings(), e, || ()) {
                    Ok(()) => {}
                    // A snapshot landed meanwhile: it wins, the sweep looks again later.
                    Err(Fail::Abort(())) => return Ok(false),
                    Err(Fail::Tx(e)) => return Err(Fail::Tx(e)),
                }
            }
            Ok(true)
        })?;
        if written {
            self.remember_summaries(&records);
            self.backend.flush()?;
        }
        Ok(written)
    }
}
