//! Advisories and their package index: written a batch per transaction by an import,
//! read by matching.

use super::ingest::{outbox_key, QueuedEvent};
use super::reads::bytes_digest;
use super::*;
use crate::model::vuln::{index_key, index_prefix, Advisory, AdvisoryWrite, ExposureLedger};
use crate::store::backend::prefix_end;
use crate::store::{ExposureWrites, LedgerUpdate};

/// Meta key of the advisories' generation (u64 BE; absent, 0, while none were imported).
const GENERATION_KEY: &[u8] = b"advisories_generation";

fn generation_of(bytes: &[u8]) -> Result<u64, StoreError> {
    Ok(u64::from_be_bytes(bytes.try_into().map_err(|_| {
        StoreError::Corrupt {
            key: "meta/advisories_generation".into(),
            message: "not a u64".into(),
        }
    })?))
}

impl Cmdb {
    pub(crate) fn do_write_advisories(
        &self,
        writes: &[AdvisoryWrite],
    ) -> Result<Vec<AdvisoryOutcome>, StoreError> {
        transact::<_, StoreError>(self.backend.as_ref(), |tx| {
            let mut outcomes = Vec::with_capacity(writes.len());
            for w in writes {
                let id = match w {
                    AdvisoryWrite::Put(a) => &a.id,
                    AdvisoryWrite::Withdraw { id, .. } => id,
                };
                let held: Option<Advisory> = tx_json(tx, Space::Advisories, id.as_bytes())?;
                let modified = match w {
                    AdvisoryWrite::Put(a) => a.modified,
                    AdvisoryWrite::Withdraw { modified, .. } => *modified,
                };
                if held.as_ref().is_some_and(|h| h.modified >= modified) {
                    outcomes.push(match w {
                        AdvisoryWrite::Put(_) => AdvisoryOutcome::Unchanged,
                        AdvisoryWrite::Withdraw { .. } => AdvisoryOutcome::NotHeld,
                    });
                    continue;
                }
                if let Some(h) = &held {
                    for e in &h.affected {
                        tx.delete(
                            Space::AdvisoryIndex,
                            &index_key(&e.ecosystem, &e.package, id),
                        )?;
                    }
                }
                match w {
                    AdvisoryWrite::Put(a) => {
                        tx_put_json(tx, Space::Advisories, id.as_bytes(), a)?;
                        for e in &a.affected {
                            tx.put(
                                Space::AdvisoryIndex,
                                &index_key(&e.ecosystem, &e.package, id),
                                &[],
                            )?;
                        }
                        outcomes.push(if held.is_some() {
                            AdvisoryOutcome::Updated
                        } else {
                            AdvisoryOutcome::Added
                        });
                    }
                    AdvisoryWrite::Withdraw { .. } => {
                        if held.is_some() {
                            tx.delete(Space::Advisories, id.as_bytes())?;
                            outcomes.push(AdvisoryOutcome::Removed);
                        } else {
                            outcomes.push(AdvisoryOutcome::NotHeld);
                        }
                    }
                }
            }
            let changed = outcomes.iter().any(|o| {
                matches!(
                    o,
                    AdvisoryOutcome::Added | AdvisoryOutcome::Updated | AdvisoryOutcome::Removed
                )
            });
            if changed {
                // Random rather than counted: no two stores (a test's, a copy's) share a
                // generation, so memory derived from one never answers for another.
                let next: u64 = rand::random::<u64>() | 1;
                tx.put(Space::Meta, GENERATION_KEY, &next.to_be_bytes())?;
            }
            Ok(outcomes)
        })
    }

    pub(crate) fn do_advisories_generation(&self) -> Result<u64, StoreError> {
        match self.backend.get(Space::Meta, GENERATION_KEY)? {
            Some(v) => generation_of(&v),
            None => Ok(0),
        }
    }

    pub(crate) fn do_advisories_for(
        &self,
        ecosystem: &str,
        package: &str,
    ) -> Result<Vec<Advisory>, StoreError> {
        let prefix = index_prefix(ecosystem, package);
        let end = prefix_end(&prefix);
        let mut ids: Vec<Vec<u8>> = Vec::new();
        self.backend.scan(
            Space::AdvisoryIndex,
            Range::prefix(&prefix, end.as_deref()),
            &mut |k, _| {
                ids.push(k[prefix.len()..].to_vec());
                Ok(Flow::Continue)
            },
        )?;
        let keys: Vec<&[u8]> = ids.iter().map(Vec::as_slice).collect();
        let mut out = Vec::with_capacity(keys.len());
        for (key, bytes) in keys
            .iter()
            .zip(self.backend.get_many(Space::Advisories, &keys)?)
        {
            if let Some(b) = bytes {
                out.push(codec::decode_json(&shown(Space::Advisories, key), &b)?);
            }
        }
        Ok(out)
    }

    pub(crate) fn do_scan_advisory_index(
        &self,
        visit: &mut dyn FnMut(&str, &str, &str) -> bool,
    ) -> Result<(), StoreError> {
        self.backend
            .scan(Space::AdvisoryIndex, Range::all(), &mut |k, _| {
                let text = String::from_utf8_lossy(k);
                let mut parts = text.splitn(3, '\0');
                let (Some(e), Some(p), Some(id)) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(StoreError::Corrupt {
                        key: shown(Space::AdvisoryIndex, k),
                        message: "not ecosystem, package and id".into(),
                    });
                };
                Ok(if visit(e, p, id) {
                    Flow::Continue
                } else {
                    Flow::Stop
                })
            })
    }

    pub(crate) fn do_scan_variants(
        &self,
        visit: &mut dyn FnMut(&str, &crate::model::Package) -> bool,
    ) -> Result<(), StoreError> {
        self.backend
            .scan(Space::Variants, Range::all(), &mut |k, v| {
                let rec: VariantRec = codec::decode(&shown(Space::Variants, k), v)?;
                let Some(product) = self.id_of(rec.product)? else {
                    return Ok(Flow::Continue);
                };
                Ok(if visit(&product, &rec.package) {
                    Flow::Continue
                } else {
                    Flow::Stop
                })
            })
    }
}

/// Meta key of the advisory generation the whole fleet was last matched against.
const EXPOSURES_GENERATION_KEY: &[u8] = b"exposures_generation";

fn key_of(key: u64) -> Result<[u8; 4], StoreError> {
    u32::try_from(key)
        .map(codec::num_key)
        .map_err(|_| StoreError::Io(format!("computer key {key} out of range")))
}

impl Cmdb {
    pub(crate) fn do_exposures_generation(&self) -> Result<u64, StoreError> {
        match self.backend.get(Space::Meta, EXPOSURES_GENERATION_KEY)? {
            Some(v) => generation_of(&v),
            None => Ok(0),
        }
    }

    pub(crate) fn do_computer_keys(&self) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        self.backend
            .scan(Space::Summaries, Range::all(), &mut |k, _| {
                if let Some(num) = codec::read_num(k) {
                    out.push(u64::from(num));
                }
                Ok(Flow::Continue)
            })?;
        Ok(out)
    }

    pub(crate) fn do_computer_key(&self, id: &str) -> Result<Option<u64>, StoreError> {
        Ok(match self.num_of(id)? {
            Some(num) if self.id_of(num)?.is_some_and(|h| *h == *id) => Some(u64::from(num)),
            _ => None,
        })
    }

    pub(crate) fn do_rematch_marks(&self, limit: usize) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.backend
            .scan(Space::Rematch, Range::all(), &mut |k, v| {
                let (Some(num), Ok(mark)) = (codec::read_num(k), <[u8; 8]>::try_from(v)) else {
                    return Err(StoreError::Corrupt {
                        key: shown(Space::Rematch, k),
                        message: "not a computer number and a revision".into(),
                    });
                };
                out.push((u64::from(num), u64::from_be_bytes(mark)));
                Ok(if out.len() >= limit {
                    Flow::Stop
                } else {
                    Flow::Continue
                })
            })?;
        Ok(out)
    }

    pub(crate) fn do_exposure_ledgers(
        &self,
        keys: &[u64],
    ) -> Result<Vec<Option<(ExposureLedger, u64)>>, StoreError> {
        let encoded = keys
            .iter()
            .map(|k| key_of(*k))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&[u8]> = encoded.iter().map(|k| k.as_slice()).collect();
        refs.iter()
            .zip(self.backend.get_many(Space::Exposures, &refs)?)
            .map(|(k, v)| {
                v.map(|bytes| {
                    let ledger = codec::decode_packed(&shown(Space::Exposures, k), &bytes)?;
                    Ok((ledger, bytes_digest(&bytes)))
                })
                .transpose()
            })
            .collect()
    }

    pub(crate) fn do_write_exposures(&self, w: &ExposureWrites) -> Result<bool, StoreError> {
        let mut puts: Vec<([u8; 4], Option<Vec<u8>>)> = Vec::new();
        for h in &w.hosts {
            let bytes = match &h.update {
                LedgerUpdate::Keep => continue,
                LedgerUpdate::Put(l) => Some(codec::encode_packed(l)?),
                LedgerUpdate::Delete => None,
            };
            puts.push((key_of(h.key)?, bytes));
        }
        let marks = w
            .hosts
            .iter()
            .filter_map(|h| Some((key_of(h.key), h.mark?)))
            .map(|(k, m)| Ok((k?, m)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let events = w
            .events
            .iter()
            .map(|(event_type, change)| {
                Ok((
                    outbox_key(w.at),
                    codec::encode_json(&QueuedEvent {
                        event_type: event_type.clone(),
                        record_id: change
                            .computer_id
                            .clone()
                            .or_else(|| change.advisory.clone())
                            .unwrap_or_default(),
                        at: w.at,
                        revision: 0,
                        register: None,
                        exposure: Some(change.clone()),
                    })?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let written = transact::<bool, StoreError>(self.backend.as_ref(), |tx| {
            for h in &w.hosts {
                if matches!(h.update, LedgerUpdate::Keep) {
                    continue;
                }
                let key = key_of(h.key)?;
                let held = tx.get(Space::Exposures, &key)?.map(|b| bytes_digest(&b));
                if held != h.expect {
                    return Ok(false);
                }
            }
            for (key, bytes) in &puts {
                match bytes {
                    Some(b) => tx.put(Space::Exposures, key, b)?,
                    None => tx.delete(Space::Exposures, key)?,
                }
            }
            for (key, mark) in &marks {
                if tx.get(Space::Rematch, key)?.as_deref() == Some(&mark.to_be_bytes()[..]) {
                    tx.delete(Space::Rematch, key)?;
                }
            }
            for (key, bytes) in &events {
                tx.put(Space::Outbox, key, bytes)?;
            }
            if let Some(g) = w.generation {
                tx.put(Space::Meta, EXPOSURES_GENERATION_KEY, &g.to_be_bytes())?;
            }
            Ok(true)
        })?;
        if written && !w.events.is_empty() {
            self.backend.flush()?;
        }
        Ok(written)
    }
}
