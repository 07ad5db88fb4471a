//! Advisories and their package index: written a batch per transaction by an import,
//! read by matching.

use super::*;
use crate::model::vuln::{index_key, index_prefix, Advisory, AdvisoryWrite};
use crate::store::backend::prefix_end;

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
