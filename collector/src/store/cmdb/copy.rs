//! One store into another, space by space: `census-collector migrate-store` (the embedded
//! store into a PostgreSQL database). The target must hold no data; every space is copied
//! in batches, then verified by its record count, by the CIs per class, and by the target's
//! own consistency check.

use super::*;

/// Records per batch when copying a space.
const COPY_BATCH: usize = 5_000;

/// What a copy wrote and what its verification found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CopySummary {
    /// (space, records) in copy order.
    pub spaces: Vec<(String, usize)>,
    pub records: usize,
    /// CIs per class in the target, equal to the source's.
    pub cis: std::collections::BTreeMap<String, usize>,
    /// The target's consistency check (0 when every derived record agrees).
    pub problems_total: usize,
}

impl Cmdb {
    /// Copies every space of `self` into `target`, which must hold no data, calling
    /// `progress(space, records so far)` as it goes; then verifies the copy.
    pub fn copy_into(
        &self,
        target: &Cmdb,
        progress: &mut dyn FnMut(Space, usize),
    ) -> Result<CopySummary, StoreError> {
        for space in Space::ALL {
            let n = target.backend.count(space)?;
            let held = if space == Space::Meta {
                // A new store holds its schema version and its posting layout, no more.
                let mut other = 0;
                target
                    .backend
                    .scan(Space::Meta, Range::all(), &mut |k, _| {
                        if !new_store_meta(false).iter().any(|(key, _)| *key == k) {
                            other += 1;
                        }
                        Ok(Flow::Continue)
                    })?;
                other > 0
            } else {
                n > 0
            };
            if held {
                return Err(StoreError::Io(format!(
                    "the target already holds data ({n} records in {}); copy into an empty store",
                    space.name()
                )));
            }
        }
        // Writers wait while the source is read: the copy is one point in time.
        let _gate = self.exclusive();
        // The postings are copied as they are, so the target takes the source's layout
        // (a store without a recorded layout has the legacy one: so will its copy).
        if self
            .backend
            .get(Space::Meta, codec::POSTINGS_META_KEY)?
            .is_none()
        {
            target
                .backend
                .delete(Space::Meta, codec::POSTINGS_META_KEY)?;
        }
        target.adopt_postings(self.postings());
        let mut summary = CopySummary::default();
        for space in Space::ALL {
            let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(COPY_BATCH);
            let mut copied = 0usize;
            self.backend.scan(space, Range::all(), &mut |k, v| {
                batch.push((k.to_vec(), v.to_vec()));
                if batch.len() >= COPY_BATCH {
                    target.backend.load(space, &batch)?;
                    copied += batch.len();
                    batch.clear();
                    progress(space, copied);
                }
                Ok(Flow::Continue)
            })?;
            if !batch.is_empty() {
                target.backend.load(space, &batch)?;
                copied += batch.len();
            }
            progress(space, copied);
            let counted = target.backend.count(space)?;
            let expected = self.backend.count(space)?;
            if counted != expected {
                return Err(StoreError::Io(format!(
                    "verification: {} holds {counted} records in the target, {expected} in the source",
                    space.name()
                )));
            }
            summary.records += copied;
            summary.spaces.push((space.name().to_string(), copied));
        }
        target.backend.flush()?;
        let (from, to) = (self.ci_counts()?, target.ci_counts()?);
        if from != to {
            return Err(StoreError::Io(format!(
                "verification: CIs per class differ (source {from:?}, target {to:?})"
            )));
        }
        summary.cis = to
            .into_iter()
            .map(|(class, n)| (class.as_str().to_string(), n))
            .collect();
        summary.problems_total = target.check_consistency()?.problems_total;
        Ok(summary)
    }
}

impl Cmdb {
    fn ci_counts(
        &self,
    ) -> Result<std::collections::BTreeMap<crate::model::CiClass, usize>, StoreError> {
        // One pass over every CI (a pass per class read each computer once per class).
        let mut counts = std::collections::BTreeMap::new();
        for ci in Store::list_cis(self, None)? {
            *counts.entry(ci.class).or_insert(0) += 1;
        }
        Ok(counts)
    }
}
