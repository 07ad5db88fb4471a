//! Enrollment, agents, and the writes people make: each applied with its audit entry,
//! chained by SHA-256 to the previous one, in one transaction.

use chrono::{DateTime, Utc};

use super::ingest::{decode_hot, outbox_key, revision_key, QueuedEvent, StoredRecord};
use super::*;
use crate::model::*;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct AuditHead {
    seq: u64,
    hash: String,
}

fn numbered(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

impl Cmdb {
    /// The hot state (last seq, last seen) over the agent record.
    fn overlay_hot(&self, agent: &mut Agent) -> Result<(), StoreError> {
        let hot = self.backend.get(Space::AgentState, agent.id.as_bytes())?;
        Self::overlay_hot_bytes(agent, hot)
    }

    fn overlay_hot_bytes(agent: &mut Agent, hot: Option<Vec<u8>>) -> Result<(), StoreError> {
        if let Some(v) = hot {
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

    pub(crate) fn do_put_token(&self, token: &EnrollmentToken) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.backend.put(
            Space::EnrollmentTokens,
            token.secret_hash.as_bytes(),
            &codec::encode_json(token)?,
        )?;
        self.backend.flush()
    }

    pub(crate) fn do_list_tokens(&self) -> Result<Vec<EnrollmentToken>, StoreError> {
        let mut t: Vec<EnrollmentToken> = self.scan_json(Space::EnrollmentTokens, Range::all())?;
        t.sort_by_key(|t| t.created_at);
        Ok(t)
    }

    pub(crate) fn do_revoke_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let _writing = self.writing();
        for mut t in self.do_list_tokens()? {
            if t.id == id {
                if t.revoked_at.is_none() {
                    t.revoked_at = Some(at);
                }
                self.backend.put(
                    Space::EnrollmentTokens,
                    t.secret_hash.as_bytes(),
                    &codec::encode_json(&t)?,
                )?;
                self.backend.flush()?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(crate) fn do_enroll(
        &self,
        secret_hash: &str,
        agent: &Agent,
        now: DateTime<Utc>,
    ) -> Result<(), EnrollError> {
        let _writing = self.writing();
        let store_err = |e: StoreError| EnrollError::Store(e.to_string());
        let agent_bytes = codec::encode_json(agent).map_err(store_err)?;
        let r = transact::<(), EnrollError>(self.backend.as_ref(), |tx| {
            let Some(mut token) =
                tx_json::<EnrollmentToken, _>(tx, Space::EnrollmentTokens, secret_hash.as_bytes())?
            else {
                return Err(Fail::Abort(EnrollError::UnknownToken));
            };
            if token.revoked_at.is_some() {
                return Err(Fail::Abort(EnrollError::Revoked));
            }
            if token.expires_at <= now {
                return Err(Fail::Abort(EnrollError::Expired(token.expires_at)));
            }
            if token.uses >= token.max_uses {
                return Err(Fail::Abort(EnrollError::Exhausted(token.max_uses)));
            }
            if let Some(existing) = tx.get(Space::AgentKeys, agent.public_key.as_bytes())? {
                return Err(Fail::Abort(EnrollError::KeyInUse(
                    String::from_utf8_lossy(&existing).into_owned(),
                )));
            }
            token.uses += 1;
            tx_put_json(tx, Space::EnrollmentTokens, secret_hash.as_bytes(), &token)?;
            tx_put_agent(tx, agent, &agent_bytes)?;
            Ok(())
        });
        r?;
        self.backend.flush().map_err(store_err)
    }

    pub(crate) fn do_register_import_source(&self, agent: &Agent) -> Result<bool, StoreError> {
        let _writing = self.writing();
        let agent_bytes = codec::encode_json(agent)?;
        let stored = transact::<bool, StoreError>(self.backend.as_ref(), |tx| {
            if tx.get(Space::Agents, agent.id.as_bytes())?.is_some() {
                return Ok(false);
            }
            tx_put_agent(tx, agent, &agent_bytes)?;
            Ok(true)
        })?;
        self.backend.flush()?;
        Ok(stored)
    }

    pub(crate) fn do_get_agent(&self, id: &str) -> Result<Option<Agent>, StoreError> {
        let key = id.as_bytes();
        let mut both = self
            .backend
            .get_each(&[(Space::Agents, key), (Space::AgentState, key)])?
            .into_iter();
        let Some(bytes) = both.next().flatten() else {
            return Ok(None);
        };
        let mut agent: Agent = codec::decode_json(&shown(Space::Agents, key), &bytes)?;
        Self::overlay_hot_bytes(&mut agent, both.next().flatten())?;
        Ok(Some(agent))
    }

    pub(crate) fn do_list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        let mut a: Vec<Agent> = self.scan_json(Space::Agents, Range::all())?;
        for agent in a.iter_mut() {
            self.overlay_hot(agent)?;
        }
        a.sort_by_key(|a| a.enrolled_at);
        Ok(a)
    }

    pub(crate) fn do_revoke_agent(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let _writing = self.writing();
        let found = transact::<bool, StoreError>(self.backend.as_ref(), |tx| {
            let Some(mut agent) = tx_json::<Agent, _>(tx, Space::Agents, id.as_bytes())? else {
                return Ok(false);
            };
            if agent.revoked_at.is_none() {
                agent.revoked_at = Some(at);
            }
            tx_put_json(tx, Space::Agents, id.as_bytes(), &agent)?;
            Ok(true)
        })?;
        self.backend.flush()?;
        Ok(found)
    }

    pub(crate) fn do_commit_people(
        &self,
        write: &PeopleWrite,
        draft: AuditDraft,
        at: DateTime<Utc>,
    ) -> Result<AuditEntry, PeopleWriteError> {
        const ATTEMPTS: usize = 5;
        for _ in 1..ATTEMPTS {
            match self.commit_people_once(write, draft.clone(), at) {
                Err(PeopleWriteError::Raced(_)) => continue,
                done => return done,
            }
        }
        self.commit_people_once(write, draft, at)
    }

    fn commit_people_once(
        &self,
        write: &PeopleWrite,
        draft: AuditDraft,
        at: DateTime<Utc>,
    ) -> Result<AuditEntry, PeopleWriteError> {
        let _writing = self.writing();
        fn revoke_agent_in(
            tx: &mut dyn Tx,
            id: &str,
            at: DateTime<Utc>,
        ) -> TxResult<(), PeopleWriteError> {
            let Some(mut agent) = tx_json::<Agent, _>(tx, Space::Agents, id.as_bytes())? else {
                return Err(Fail::Abort(PeopleWriteError::NotFound(format!(
                    "agent {id}"
                ))));
            };
            if agent.revoked_at.is_none() {
                agent.revoked_at = Some(at);
                tx_put_json(tx, Space::Agents, id.as_bytes(), &agent)?;
            }
            Ok(())
        }
        let outbox = outbox_key(at);
        let (edits, records): (&[RegisterWrite], &[RecordWrite]) = match write {
            PeopleWrite::Register { edits, records } => (edits, records),
            _ => (&[], &[]),
        };
        let mut created = Vec::with_capacity(records.len());
        for r in records {
            if self.read_ci(&r.ci.id)?.is_some() {
                return Err(PeopleWriteError::Taken(format!(
                    "{} exists already",
                    r.ci.id
                )));
            }
            let writes = super::machine::Writes {
                puts: std::slice::from_ref(&r.ci),
                ..Default::default()
            };
            created.push(self.prepare_records(writes, at, None)?);
        }
        let edited = edits
            .iter()
            .map(|w| self.prepare_register(w, at))
            .collect::<Result<Vec<_>, _>>()?;
        let entry = transact::<AuditEntry, PeopleWriteError>(self.backend.as_ref(), |tx| {
            match write {
                PeopleWrite::Recorded => {}
                PeopleWrite::PutRegisterSettings(settings) => {
                    tx_put_json(tx, Space::Meta, b"register_settings", settings)?;
                }
                PeopleWrite::PutHealthSettings(settings) => {
                    tx_put_json(tx, Space::Meta, super::HEALTH_SETTINGS_KEY, settings)?;
                }
                PeopleWrite::PutService { service, expected } => {
                    let stored: Option<crate::model::service::Service> =
                        tx_json(tx, Space::Services, service.id.as_bytes())?;
                    if stored.as_ref().map_or(0, |s| s.version) != *expected {
                        return Err(Fail::Abort(PeopleWriteError::Stale(format!(
                            "service {}",
                            service.id
                        ))));
                    }
                    tx_put_json(tx, Space::Services, service.id.as_bytes(), service)?;
                    let mut key = service.id.as_bytes().to_vec();
                    key.push(0);
                    key.extend_from_slice(&service.version.to_be_bytes());
                    tx_put_json(tx, Space::ServiceVersions, &key, service)?;
                }
                PeopleWrite::PutBaseline { baseline, expected } => {
                    let stored: Option<crate::model::baseline::Baseline> =
                        tx_json(tx, Space::Baselines, baseline.id.as_bytes())?;
                    if stored.as_ref().map_or(0, |b| b.version) != *expected {
                        return Err(Fail::Abort(PeopleWriteError::Stale(format!(
                            "baseline {}",
                            baseline.id
                        ))));
                    }
                    tx_put_json(tx, Space::Baselines, baseline.id.as_bytes(), baseline)?;
                }
                PeopleWrite::PutSoftwareRules { expected, book } => {
                    let stored: Option<crate::model::titles::SoftwareRuleBook> =
                        tx_json(tx, Space::Meta, super::SOFTWARE_RULES_KEY)?;
                    if stored.as_ref() != expected.as_deref() {
                        return Err(Fail::Abort(PeopleWriteError::Stale(
                            "the software title rules".into(),
                        )));
                    }
                    tx_put_json(tx, Space::Meta, super::SOFTWARE_RULES_KEY, book)?;
                }
                PeopleWrite::PutLicence(l) => {
                    tx_put_json(tx, Space::Licences, l.id.as_bytes(), l)?;
                }
                PeopleWrite::DeleteLicence(id) => {
                    if tx.take(Space::Licences, id.as_bytes())?.is_none() {
                        return Err(Fail::Abort(PeopleWriteError::NotFound(format!(
                            "licence {id}"
                        ))));
                    }
                }
                PeopleWrite::Register { .. } => {
                    self.write_register(tx, edits, &edited, records, &created, at)?;
                }
                PeopleWrite::PutNoiseRule(rule) => {
                    tx_put_json(tx, Space::NoiseRules, rule.id.as_bytes(), rule)?;
                }
                PeopleWrite::DeleteNoiseRule(id) => {
                    if tx.take(Space::NoiseRules, id.as_bytes())?.is_none() {
                        return Err(Fail::Abort(PeopleWriteError::NotFound(format!(
                            "noise rule {id}"
                        ))));
                    }
                }
                PeopleWrite::PutSeverityRules(rules) => {
                    tx_put_json(tx, Space::Meta, b"severity_rules", rules)?;
                }
                PeopleWrite::PutPlannedChange(p) => {
                    tx_put_json(tx, Space::PlannedChanges, p.id.as_bytes(), p)?;
                }
                PeopleWrite::ReviseRecord {
                    expected,
                    record,
                    event_type,
                } => {
                    let Some(stored) =
                        tx_json::<StoredRecord, _>(tx, Space::ChangeRecords, record.id.as_bytes())?
                    else {
                        return Err(Fail::Abort(PeopleWriteError::NotFound(format!(
                            "change record {}",
                            record.id
                        ))));
                    };
                    if stored.record != **expected {
                        return Err(Fail::Abort(PeopleWriteError::Stale(format!(
                            "change record {}",
                            record.id
                        ))));
                    }
                    let revision = stored.revision + 1;
                    tx_put_json(
                        tx,
                        Space::RecordRevisions,
                        &revision_key(&record.id, stored.revision),
                        &stored.record,
                    )?;
                    tx_put_json(
                        tx,
                        Space::ChangeRecords,
                        record.id.as_bytes(),
                        &StoredRecord {
                            revision,
                            record: record.as_ref().clone(),
                        },
                    )?;
                    let event = QueuedEvent {
                        event_type: event_type.to_string(),
                        record_id: record.id.clone(),
                        at,
                        revision,
                        register: None,
                        exposure: None,
                    };
                    tx_put_json(tx, Space::Outbox, &outbox, &event)?;
                }
                PeopleWrite::PutWebhook(w) => {
                    tx_put_json(tx, Space::Webhooks, w.id.as_bytes(), w)?;
                }
                PeopleWrite::DeleteWebhook(id) => {
                    if tx.take(Space::Webhooks, id.as_bytes())?.is_none() {
                        return Err(Fail::Abort(PeopleWriteError::NotFound(format!(
                            "webhook {id}"
                        ))));
                    }
                }
                PeopleWrite::Redeliver(d) => {
                    if tx.get(Space::Deliveries, d.id.as_bytes())?.is_none() {
                        return Err(Fail::Abort(PeopleWriteError::NotFound(format!(
                            "delivery {}",
                            d.id
                        ))));
                    }
                    tx_put_json(tx, Space::Deliveries, d.id.as_bytes(), d)?;
                }
                PeopleWrite::PutApiToken(t) => {
                    tx_put_json(tx, Space::ApiTokens, t.id.as_bytes(), t)?;
                }
                PeopleWrite::PutUser(u) => {
                    tx_put_json(tx, Space::Users, u.name.as_bytes(), u)?;
                }
                PeopleWrite::DeleteUser {
                    name,
                    revoked_tokens,
                } => {
                    if tx.take(Space::Users, name.as_bytes())?.is_none() {
                        return Err(Fail::Abort(PeopleWriteError::NotFound(format!(
                            "user {name}"
                        ))));
                    }
                    for t in revoked_tokens {
                        tx_put_json(tx, Space::ApiTokens, t.id.as_bytes(), t)?;
                    }
                }
                PeopleWrite::PutEnrollmentToken(t) => {
                    tx_put_json(tx, Space::EnrollmentTokens, t.secret_hash.as_bytes(), t)?;
                }
                PeopleWrite::ReviseEnrollmentToken { expected, token } => {
                    let key = token.secret_hash.as_bytes();
                    let Some(stored) =
                        tx_json::<EnrollmentToken, _>(tx, Space::EnrollmentTokens, key)?
                    else {
                        return Err(Fail::Abort(PeopleWriteError::NotFound(format!(
                            "enrollment token {}",
                            token.id
                        ))));
                    };
                    if stored != **expected {
                        return Err(Fail::Abort(PeopleWriteError::Stale(format!(
                            "enrollment token {}",
                            token.id
                        ))));
                    }
                    tx_put_json(tx, Space::EnrollmentTokens, key, token.as_ref())?;
                }
                PeopleWrite::RevokeAgent(id) => revoke_agent_in(tx, id, at)?,
                PeopleWrite::ResolveConflict {
                    id,
                    resolution,
                    revoke_agent,
                } => {
                    if let Some(agent) = revoke_agent {
                        revoke_agent_in(tx, agent, at)?;
                    }
                    let Some(mut conflict) =
                        tx_json::<IdentityConflict, _>(tx, Space::Conflicts, id.as_bytes())?
                    else {
                        return Err(Fail::Abort(PeopleWriteError::NotFound(format!(
                            "identity conflict {id}"
                        ))));
                    };
                    if conflict.resolved_at.is_some() {
                        return Err(Fail::Abort(PeopleWriteError::Stale(format!(
                            "identity conflict {id} (already resolved)"
                        ))));
                    }
                    conflict.resolved_at = Some(at);
                    conflict.resolution = Some(resolution.clone());
                    tx_put_json(tx, Space::Conflicts, id.as_bytes(), &conflict)?;
                }
            }
            let head: AuditHead = tx_json(tx, Space::Meta, b"audit_head")?.unwrap_or_default();
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
            entry.hash = audit_hash(&entry)?;
            tx_put_json(tx, Space::Audit, &numbered(entry.seq), &entry)?;
            tx_put_json(
                tx,
                Space::Meta,
                b"audit_head",
                &AuditHead {
                    seq: entry.seq,
                    hash: entry.hash.clone(),
                },
            )?;
            Ok(entry)
        })?;
        for (records, _) in &edited {
            self.remember_summaries(records);
        }
        for records in &created {
            self.remember_summaries(records);
        }
        self.backend.flush()?;
        Ok(entry)
    }

    /// The register writes in a transaction: tags released first (so tags that move
    /// between computers of one file are free when claimed), then each edit's tag claimed
    /// and its records written, then each new record's keys claimed and its records
    /// written; a `register.changed` event for each.
    fn write_register(
        &self,
        tx: &mut dyn Tx,
        edits: &[RegisterWrite],
        edited: &[(Vec<super::machine::Encoded>, u64)],
        records: &[RecordWrite],
        created: &[Vec<super::machine::Encoded>],
        at: DateTime<Utc>,
    ) -> TxResult<(), PeopleWriteError> {
        let taken = |key: &IdentityKey, other: &[u8]| {
            let (field, what) = if key.rule == "asset_tag" {
                ("asset_tag", "asset tag")
            } else {
                ("serial", "serial")
            };
            Fail::Abort(PeopleWriteError::Taken(format!(
                "{field}: '{}' is already the {what} of {}",
                key.value,
                String::from_utf8_lossy(other)
            )))
        };
        let event = |tx: &mut dyn Tx, id: &str, change: register::RegisterChange| {
            let queued = QueuedEvent {
                event_type: REGISTER_CHANGED.into(),
                record_id: id.to_string(),
                at,
                revision: 0,
                register: Some(change),
                exposure: None,
            };
            tx_put_json(tx, Space::Outbox, &outbox_key(at), &queued)
        };
        for w in edits {
            if let Some(key) = &w.release_tag {
                let k = key.encoded();
                if tx.get(Space::Identity, k.as_bytes())?.as_deref() == Some(w.ci_id.as_bytes()) {
                    tx.delete(Space::Identity, k.as_bytes())?;
                }
            }
        }
        for (w, (encoded, version)) in edits.iter().zip(edited) {
            if let Some(key) = &w.claim_tag {
                let k = key.encoded();
                match tx.get(Space::Identity, k.as_bytes())? {
                    Some(other) if other != w.ci_id.as_bytes() => return Err(taken(key, &other)),
                    Some(_) => {}
                    None => tx.put(Space::Identity, k.as_bytes(), w.ci_id.as_bytes())?,
                }
            }
            for e in encoded {
                Self::write_encoded(tx, self.postings(), e, || {
                    PeopleWriteError::Raced(format!("computer {}", w.ci_id))
                })?;
            }
            // A kept reconciliation item changes no value: audited, not on the feed.
            if !w.change.changes.is_empty() {
                let mut change = w.change.clone();
                change.version = *version;
                event(tx, &w.ci_id, change)?;
            }
        }
        for (r, encoded) in records.iter().zip(created) {
            for key in &r.claims {
                let k = key.encoded();
                if let Some(other) = tx.get(Space::Identity, k.as_bytes())? {
                    return Err(taken(key, &other));
                }
                tx.put(Space::Identity, k.as_bytes(), r.ci.id.as_bytes())?;
            }
            for e in encoded {
                Self::write_encoded(tx, self.postings(), e, || {
                    PeopleWriteError::Raced(format!("computer {}", r.ci.id))
                })?;
            }
            event(tx, &r.ci.id, r.change.clone())?;
        }
        Ok(())
    }

    /// A register edit's records and the version it makes, encoded against the CI as
    /// stored now (read again after encoding, so the encoding matches what was read; the
    /// write then checks the record is still that one).
    fn prepare_register(
        &self,
        w: &RegisterWrite,
        at: DateTime<Utc>,
    ) -> Result<(Vec<super::machine::Encoded>, u64), PeopleWriteError> {
        let read = || -> Result<Ci, PeopleWriteError> {
            self.read_ci(&w.ci_id)?
                .ok_or_else(|| PeopleWriteError::NotFound(format!("CI {}", w.ci_id)))
        };
        let ci = read()?;
        if register_digest(&ci.attributes) != w.expected {
            return Err(PeopleWriteError::Stale(format!(
                "the register of {}",
                w.ci_id
            )));
        }
        let mut next = ci.clone();
        next.attributes
            .retain(|k, _| !register::is_register_attribute(k));
        next.attributes
            .extend(w.register.iter().map(|(k, v)| (k.clone(), v.clone())));
        next.version += 1;
        let writes = super::machine::Writes {
            puts: std::slice::from_ref(&next),
            ..Default::default()
        };
        let records = self.prepare_records(writes, at, None)?;
        if read()? != ci {
            return Err(PeopleWriteError::Raced(format!("computer {}", w.ci_id)));
        }
        Ok((records, next.version))
    }

    pub(crate) fn do_register_settings(
        &self,
    ) -> Result<Option<register::RegisterSettings>, StoreError> {
        self.get_json(Space::Meta, b"register_settings")
    }

    pub(crate) fn do_list_audit(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.numbered_after(Space::Audit, after, limit, |k, v| {
            Ok(Some(codec::decode_json(&shown(Space::Audit, k), v)?))
        })
    }

    /// Records of a space keyed by a big-endian number, after `after`, at most `limit`,
    /// each read by `read` (`None`: skipped).
    pub(crate) fn numbered_after<T>(
        &self,
        space: Space,
        after: u64,
        limit: usize,
        mut read: impl FnMut(&[u8], &[u8]) -> Result<Option<T>, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let from = numbered(after.saturating_add(1));
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.backend.scan(
            space,
            Range {
                from: Some(&from),
                to: None,
                reverse: false,
            },
            &mut |k, v| {
                out.extend(read(k, v)?);
                Ok(if out.len() >= limit {
                    Flow::Stop
                } else {
                    Flow::Continue
                })
            },
        )?;
        Ok(out)
    }

    pub(crate) fn do_audit_head(&self) -> Result<u64, StoreError> {
        Ok(self
            .get_json::<AuditHead>(Space::Meta, b"audit_head")?
            .map_or(0, |h| h.seq))
    }

    pub(crate) fn do_touch_api_token(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let _writing = self.writing();
        if let Some(mut t) = self.get_json::<ApiToken>(Space::ApiTokens, id.as_bytes())? {
            t.last_used_at = Some(at);
            self.backend
                .put(Space::ApiTokens, id.as_bytes(), &codec::encode_json(&t)?)?;
        }
        Ok(())
    }
}

/// Stores a new agent's record (`bytes`, its encoding) and the index from its key to it.
fn tx_put_agent<E>(tx: &mut dyn Tx, agent: &Agent, bytes: &[u8]) -> TxResult<(), E> {
    tx.put(Space::Agents, agent.id.as_bytes(), bytes)?;
    tx.put(
        Space::AgentKeys,
        agent.public_key.as_bytes(),
        agent.id.as_bytes(),
    )?;
    Ok(())
}
