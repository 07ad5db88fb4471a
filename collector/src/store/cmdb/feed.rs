//! The changed-since feed: ingest and reviews queue events in their own transactions; one
//! sequencer numbers them (so cursors only grow) and queues a delivery per webhook.

use chrono::{DateTime, Utc};

use super::ingest::{revision_key, QueuedEvent, StoredRecord};
use super::*;
use crate::model::register::RegisterChange;
use crate::model::*;

/// A feed event as stored: which record, at which revision (the record itself is not
/// copied: it is the change record, or one of its earlier revisions).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct FeedEntry {
    cursor: u64,
    #[serde(rename = "type")]
    event_type: String,
    at: DateTime<Utc>,
    record_id: String,
    revision: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    register: Option<RegisterChange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exposure: Option<crate::model::vuln::ExposureChange>,
}

/// What the feed space holds: an entry, or an event with its record copied in (written
/// before records had revisions).
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum StoredFeed {
    Entry(Box<FeedEntry>),
    Copied(Box<FeedEvent>),
}

impl Cmdb {
    fn feed_event_of(&self, key: &[u8], bytes: &[u8]) -> Result<Option<FeedEvent>, StoreError> {
        let entry = match codec::decode_json::<StoredFeed>(&shown(Space::Feed, key), bytes)? {
            StoredFeed::Copied(e) => return Ok(Some(*e)),
            StoredFeed::Entry(e) => *e,
        };
        if entry.register.is_some() || entry.exposure.is_some() {
            return Ok(Some(FeedEvent {
                cursor: entry.cursor,
                event_type: entry.event_type,
                at: entry.at,
                record: None,
                register: entry.register,
                exposure: entry.exposure,
            }));
        }
        let current: Option<StoredRecord> =
            self.get_json(Space::ChangeRecords, entry.record_id.as_bytes())?;
        let record = match current {
            Some(r) if r.revision == entry.revision => Some(r.record),
            _ => self.get_json::<ChangeRecord>(
                Space::RecordRevisions,
                &revision_key(&entry.record_id, entry.revision),
            )?,
        };
        Ok(record.map(|record| FeedEvent {
            cursor: entry.cursor,
            event_type: entry.event_type,
            at: entry.at,
            record: Some(record),
            register: None,
            exposure: None,
        }))
    }

    pub(crate) fn do_feed_since(
        &self,
        cursor: u64,
        limit: usize,
    ) -> Result<Vec<FeedEvent>, StoreError> {
        self.numbered_after(Space::Feed, cursor, limit, |k, v| self.feed_event_of(k, v))
    }

    pub(crate) fn do_feed_event(&self, cursor: u64) -> Result<Option<FeedEvent>, StoreError> {
        let key = cursor.to_be_bytes();
        match self.backend.get(Space::Feed, &key)? {
            Some(v) => self.feed_event_of(&key, &v),
            None => Ok(None),
        }
    }

    pub(crate) fn do_sequence_events(&self, max: usize) -> Result<usize, StoreError> {
        let _writing = self.writing();
        let queued = {
            let mut out: Vec<(Vec<u8>, QueuedEvent)> = Vec::new();
            self.backend
                .scan(Space::Outbox, Range::all(), &mut |k, v| {
                    out.push((k.to_vec(), codec::decode_json(&shown(Space::Outbox, k), v)?));
                    Ok(if out.len() >= max {
                        Flow::Stop
                    } else {
                        Flow::Continue
                    })
                })?;
            out
        };
        // Runs every second: with nothing queued, read nothing else.
        if queued.is_empty() {
            return Ok(0);
        }
        let webhooks: Vec<Webhook> = self
            .do_list_webhooks()?
            .into_iter()
            .filter(|w| w.active)
            .collect();
        // One transaction for the whole batch: per event it was ten statements on a shared
        // database (lock, read, write, commit), a fifth of what a delta cost there.
        let done = transact::<usize, StoreError>(self.backend.as_ref(), |tx| {
            let outbox: Vec<&[u8]> = queued.iter().map(|(k, _)| k.as_slice()).collect();
            let records: Vec<&[u8]> = queued
                .iter()
                .filter(|(_, e)| e.revision == 0 && e.refers_to_record())
                .map(|(_, e)| e.record_id.as_bytes())
                .collect();
            tx.prefetch(&[
                (Space::Outbox, &outbox),
                (Space::ChangeRecords, &records),
                (Space::Meta, &[b"feed_head".as_slice()]),
            ])?;
            let mut head = match tx.get(Space::Meta, b"feed_head")? {
                Some(v) => u64::from_be_bytes(v.as_slice().try_into().unwrap_or([0; 8])),
                None => 0,
            };
            let mut done = 0;
            for (key, event) in &queued {
                if tx.take(Space::Outbox, key)?.is_none() {
                    continue; // another sequencer took it
                }
                let revision = match event.revision {
                    0 if !event.refers_to_record() => 0,
                    0 => match tx_json::<StoredRecord, _>(
                        tx,
                        Space::ChangeRecords,
                        event.record_id.as_bytes(),
                    )? {
                        Some(r) => r.revision,
                        None => continue,
                    },
                    n => n,
                };
                head += 1;
                let cursor = head;
                let entry = FeedEntry {
                    cursor,
                    event_type: event.event_type.clone(),
                    at: event.at,
                    record_id: event.record_id.clone(),
                    revision,
                    register: event.register.clone(),
                    exposure: event.exposure.clone(),
                };
                tx_put_json(tx, Space::Feed, &cursor.to_be_bytes(), &entry)?;
                for w in &webhooks {
                    let d = Delivery {
                        id: format!("dlv_{:016x}_{}", cursor, w.id),
                        webhook_id: w.id.clone(),
                        cursor,
                        attempts: 0,
                        next_attempt_at: event.at,
                        last_error: None,
                        dead_at: None,
                    };
                    tx_put_json(tx, Space::Deliveries, d.id.as_bytes(), &d)?;
                }
                done += 1;
            }
            if done > 0 {
                tx.put(Space::Meta, b"feed_head", &head.to_be_bytes())?;
            }
            Ok(done)
        })?;
        self.backend.flush()?;
        Ok(done)
    }

    pub(crate) fn do_list_webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        let mut w: Vec<Webhook> = self.scan_json(Space::Webhooks, Range::all())?;
        w.sort_by_key(|w| w.created_at);
        Ok(w)
    }

    pub(crate) fn do_due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut due: Vec<Delivery> = self
            .scan_json::<Delivery>(Space::Deliveries, Range::all())?
            .into_iter()
            .filter(|d| d.dead_at.is_none() && d.next_attempt_at <= now)
            .collect();
        due.sort_by_key(|d| (d.cursor, d.next_attempt_at));
        due.truncate(limit);
        Ok(due)
    }

    pub(crate) fn do_update_delivery(
        &self,
        id: &str,
        next: Option<&Delivery>,
    ) -> Result<(), StoreError> {
        let _writing = self.writing();
        match next {
            Some(d) => {
                self.backend
                    .put(Space::Deliveries, id.as_bytes(), &codec::encode_json(d)?)?
            }
            None => self.backend.delete(Space::Deliveries, id.as_bytes())?,
        }
        self.backend.flush()
    }
}
