//! The exposure tracker: keeps each computer's [`ExposureLedger`] (when each exposure was
//! first detected, and when it closed) and raises `vulnerability.exposed` and
//! `vulnerability.fixed` feed events, so webhooks learn of newly exposed and newly fixed
//! hosts.
//!
//! Two things change what holds on a host, and each is re-matched incrementally:
//! - its record: the transaction that changes a computer's installs, OS release or status
//!   also marks it ([`Space::Rematch`](crate::store::backend::Space)); the tracker
//!   re-matches marked computers and clears each mark unless the record changed again;
//! - the advisories: every import batch that changes something renews the advisory
//!   generation; when it differs from the one the fleet was last matched against, the
//!   tracker passes over every computer (package versions shared by thousands of hosts
//!   are evaluated once), then records the generation.
//!
//! Architecture Invariant: a ledger, the marks it answers and the events it raises are one
//! transaction, guarded by the ledger's digest, so a crash or a second leader never loses
//! or repeats an event. The first match against a feed (the fleet's first import) is a
//! baseline: ledgers are written, no events (the fleet report says what holds).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::exposure::{match_computer_with, Advisories};
use crate::model::vuln::{
    ClosedExposure, Closure, ExposureChange, ExposureLedger, ExposurePair, Level, OpenExposure,
    CLOSED_KEPT_DAYS, MAX_CLOSED, MAX_EVENT_PAIRS, VULNERABILITY_EXPOSED, VULNERABILITY_FIXED,
};
use crate::model::CiStatus;
use crate::store::{ExposureWrites, LedgerUpdate, LedgerWrite, Store, StoreError};

/// Computers re-matched per transaction.
pub const BATCH: usize = 200;

/// What one step did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// Computers re-matched because their record changed.
    pub rematched: usize,
    /// Computers matched by a pass after the advisories changed.
    pub passed: usize,
    pub opened: usize,
    pub closed: usize,
    pub events: usize,
}

/// Why a host is being matched: decides how its events are grouped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// Its record changed: one event per host.
    Drift,
    /// The advisories changed: one event per advisory.
    Import,
}

impl Cause {
    fn as_str(self) -> &'static str {
        match self {
            Cause::Drift => "drift",
            Cause::Import => "import",
        }
    }
}

/// Brings every ledger up to date: a pass over the fleet if the advisories changed since
/// the last one, then every marked computer.
pub fn step(store: &dyn Store, now: DateTime<Utc>) -> Result<StepReport, StoreError> {
    let mut report = StepReport::default();
    let generation = store.advisories_generation()?;
    let matched = store.exposures_generation()?;
    if generation != matched {
        pass(store, generation, matched == 0, now, &mut report)?;
    }
    loop {
        let marks = store.rematch_marks(BATCH)?;
        if marks.is_empty() {
            break;
        }
        let keys: Vec<(u64, Option<u64>)> = marks.iter().map(|(k, m)| (*k, Some(*m))).collect();
        let advisories = Advisories::new(store)?;
        let writes = rematch(
            store,
            &advisories,
            &keys,
            Cause::Drift,
            false,
            now,
            &mut report,
        )?;
        report.rematched += keys.len();
        if !store.write_exposures(&writes)? {
            // Another collector wrote these ledgers meanwhile: its work stands.
            break;
        }
        if marks.len() < BATCH {
            break;
        }
    }
    Ok(report)
}

fn pass(
    store: &dyn Store,
    generation: u64,
    baseline: bool,
    now: DateTime<Utc>,
    report: &mut StepReport,
) -> Result<(), StoreError> {
    let advisories = Advisories::new(store)?;
    let keys = store.computer_keys()?;
    for chunk in keys.chunks(BATCH) {
        let keys: Vec<(u64, Option<u64>)> = chunk.iter().map(|k| (*k, None)).collect();
        let writes = rematch(
            store,
            &advisories,
            &keys,
            Cause::Import,
            baseline,
            now,
            report,
        )?;
        report.passed += keys.len();
        if !store.write_exposures(&writes)? {
            return Ok(());
        }
    }
    store.write_exposures(&ExposureWrites {
        at: now,
        generation: Some(generation),
        ..ExposureWrites::default()
    })?;
    tracing::info!(
        computers = report.passed,
        opened = report.opened,
        closed = report.closed,
        baseline,
        "fleet re-matched after an advisory import"
    );
    Ok(())
}

/// One host's opened and closed pairs, before they are grouped into events.
struct HostChanges {
    opened: Vec<ExposurePair>,
    closed: Vec<ExposurePair>,
}

/// Re-matches `keys` (each with the mark it answers) and builds their writes.
fn rematch(
    store: &dyn Store,
    advisories: &Advisories,
    keys: &[(u64, Option<u64>)],
    cause: Cause,
    baseline: bool,
    now: DateTime<Utc>,
    report: &mut StepReport,
) -> Result<ExposureWrites, StoreError> {
    let plain: Vec<u64> = keys.iter().map(|(k, _)| *k).collect();
    let summaries = store.computer_summaries(&plain)?;
    let ledgers = store.exposure_ledgers(&plain)?;
    let mut writes = ExposureWrites {
        at: now,
        ..ExposureWrites::default()
    };
    // Matching reads only, so a pass spreads it over the cores; one host stays inline.
    let matched: Vec<Option<HostMatch>> = {
        let subjects: Vec<Option<&str>> = summaries
            .iter()
            .map(|s| {
                s.as_ref()
                    .filter(|s| s.status != CiStatus::Retired)
                    .map(|s| &*s.id)
            })
            .collect();
        let mut out = Vec::with_capacity(subjects.len());
        for part in crate::parallel::in_parallel(&subjects, 50, |part| {
            part.iter()
                .map(|id| match id {
                    Some(id) => host_match(store, advisories, id),
                    None => Ok(None),
                })
                .collect::<Result<Vec<_>, StoreError>>()
        }) {
            out.extend(part?);
        }
        out
    };
    let mut changes: Vec<HostChanges> = Vec::new();
    for ((((key, mark), summary), held), matched) in
        keys.iter().zip(summaries).zip(ledgers).zip(matched)
    {
        let (old, expect) = match held {
            Some((l, d)) => (Some(l), Some(d)),
            None => (None, None),
        };
        let Some(summary) = summary else {
            // The computer is gone (merged into another): its ledger goes with it.
            writes.hosts.push(LedgerWrite {
                key: *key,
                expect,
                update: if old.is_some() {
                    LedgerUpdate::Delete
                } else {
                    LedgerUpdate::Keep
                },
                mark: *mark,
            });
            continue;
        };
        let old = old.unwrap_or_default();
        let (ledger, host) = advance(&old, matched.as_ref(), &summary.id, &summary.name, now);
        report.opened += host.opened.len();
        report.closed += host.closed.len();
        let update = if ledger == old {
            LedgerUpdate::Keep
        } else if ledger.open.is_empty() && ledger.closed.is_empty() {
            LedgerUpdate::Delete
        } else {
            LedgerUpdate::Put(ledger)
        };
        writes.hosts.push(LedgerWrite {
            key: *key,
            expect,
            update,
            mark: *mark,
        });
        if !baseline {
            changes.push(host);
        }
    }
    writes.events = events(cause, changes);
    report.events += writes.events.len();
    Ok(writes)
}

/// What the tracker keeps of one advisory holding for one install.
struct Hit {
    advisory: String,
    package: String,
    version: String,
    level: Option<Level>,
    fixed: Option<String>,
}

/// A host matched: its hits, and each installed package's version.
struct HostMatch {
    hits: Vec<Hit>,
    installed: HashMap<String, String>,
}

fn host_match(
    store: &dyn Store,
    advisories: &Advisories,
    id: &str,
) -> Result<Option<HostMatch>, StoreError> {
    let mut hits = Vec::new();
    let found = match_computer_with(store, advisories, id, &mut |h| {
        hits.push(Hit {
            advisory: h.advisory.id.clone(),
            package: h.install.package.name.clone().unwrap_or_default(),
            version: h.install.package.version.clone().unwrap_or_default(),
            level: h.advisory.rating.as_ref().map(|r| r.level),
            fixed: h.fixed.clone(),
        });
    })?;
    Ok(found.map(|(_, _, installs)| HostMatch {
        hits,
        installed: installs
            .into_iter()
            .filter_map(|i| Some((i.package.name.clone()?, i.package.version.clone()?)))
            .collect(),
    }))
}

/// The ledger after matching, and the pairs that opened and closed (a retired host's
/// closures raise no event: nothing was fixed).
fn advance(
    old: &ExposureLedger,
    matched: Option<&HostMatch>,
    id: &str,
    name: &str,
    now: DateTime<Utc>,
) -> (ExposureLedger, HostChanges) {
    let hits: &[Hit] = matched.map(|m| m.hits.as_slice()).unwrap_or_default();
    let mut current: BTreeMap<(&str, &str), &Hit> = BTreeMap::new();
    for f in hits {
        current
            .entry((f.advisory.as_str(), f.package.as_str()))
            .or_insert(f);
    }
    let held: HashMap<(&str, &str), &OpenExposure> = old
        .open
        .iter()
        .map(|o| ((o.advisory.as_str(), o.package.as_str()), o))
        .collect();
    let pair =
        |advisory: &str, package: &str, f: Option<&Hit>, version: Option<String>| ExposurePair {
            computer_id: id.to_string(),
            computer_name: name.to_string(),
            advisory: advisory.to_string(),
            level: f.and_then(|f| f.level),
            package: package.to_string(),
            version,
            fixed: f.and_then(|f| f.fixed.clone()),
        };
    let mut host = HostChanges {
        opened: Vec::new(),
        closed: Vec::new(),
    };
    let mut open = Vec::with_capacity(current.len());
    for ((advisory, package), f) in &current {
        let detected = match held.get(&(*advisory, *package)) {
            Some(o) => o.detected,
            None => {
                host.opened
                    .push(pair(advisory, package, Some(f), Some(f.version.clone())));
                now.timestamp()
            }
        };
        open.push(OpenExposure {
            advisory: advisory.to_string(),
            package: package.to_string(),
            version: f.version.clone(),
            detected,
        });
    }
    let installed: HashMap<&str, &str> = matched
        .map(|m| {
            m.installed
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let mut closed = Vec::new();
    for o in &old.open {
        if current.contains_key(&(o.advisory.as_str(), o.package.as_str())) {
            continue;
        }
        let version = installed.get(o.package.as_str()).map(|v| v.to_string());
        let how = match (matched, &version) {
            (None, _) => Closure::Retired,
            (Some(_), None) => Closure::Removed,
            (Some(_), Some(v)) if *v != o.version => Closure::Upgraded,
            (Some(_), Some(_)) => Closure::AdvisoryChanged,
        };
        if how != Closure::Retired {
            host.closed
                .push(pair(&o.advisory, &o.package, None, version.clone()));
        }
        closed.push(ClosedExposure {
            advisory: o.advisory.clone(),
            package: o.package.clone(),
            detected: DateTime::from_timestamp(o.detected, 0).unwrap_or(now),
            closed: now,
            how,
            version,
        });
    }
    let oldest = now - chrono::Duration::days(CLOSED_KEPT_DAYS);
    closed.extend(old.closed.iter().filter(|c| c.closed >= oldest).cloned());
    closed.truncate(MAX_CLOSED);
    (ExposureLedger { open, closed }, host)
}

/// Drift: one `exposed` and one `fixed` event per host. Import: one of each per advisory,
/// listing the hosts of this batch.
fn events(cause: Cause, hosts: Vec<HostChanges>) -> Vec<(String, ExposureChange)> {
    let mut out = Vec::new();
    let mut push = |kind: &str,
                    computer: Option<String>,
                    advisory: Option<String>,
                    mut pairs: Vec<ExposurePair>| {
        if pairs.is_empty() {
            return;
        }
        pairs.sort_by(|a, b| {
            (&a.computer_name, &a.computer_id, &a.advisory, &a.package).cmp(&(
                &b.computer_name,
                &b.computer_id,
                &b.advisory,
                &b.package,
            ))
        });
        let total = pairs.len();
        pairs.truncate(MAX_EVENT_PAIRS);
        out.push((
            kind.to_string(),
            ExposureChange {
                cause: cause.as_str().to_string(),
                computer_id: computer,
                advisory,
                pairs,
                total,
            },
        ));
    };
    match cause {
        Cause::Drift => {
            for h in hosts {
                let id = h
                    .opened
                    .first()
                    .or(h.closed.first())
                    .map(|p| p.computer_id.clone());
                push(VULNERABILITY_EXPOSED, id.clone(), None, h.opened);
                push(VULNERABILITY_FIXED, id, None, h.closed);
            }
        }
        Cause::Import => {
            let mut opened: BTreeMap<String, Vec<ExposurePair>> = BTreeMap::new();
            let mut closed: BTreeMap<String, Vec<ExposurePair>> = BTreeMap::new();
            for h in hosts {
                for p in h.opened {
                    opened.entry(p.advisory.clone()).or_default().push(p);
                }
                for p in h.closed {
                    closed.entry(p.advisory.clone()).or_default().push(p);
                }
            }
            for (advisory, pairs) in opened {
                push(VULNERABILITY_EXPOSED, None, Some(advisory), pairs);
            }
            for (advisory, pairs) in closed {
                push(VULNERABILITY_FIXED, None, Some(advisory), pairs);
            }
        }
    }
    out
}

/// How often the tracker looks for work: a look with nothing to do reads two meta keys
/// and an empty space.
pub const EVERY: Duration = Duration::from_secs(1);

/// Runs [`step`] on the leading collector every [`EVERY`].
pub async fn run(store: Arc<dyn Store>, leader: crate::leader::Leader) {
    loop {
        tokio::time::sleep(EVERY).await;
        if !leader.leads() {
            continue;
        }
        let s = store.clone();
        match tokio::task::spawn_blocking(move || step(s.as_ref(), Utc::now())).await {
            Ok(Ok(r)) if r.events > 0 || r.passed > 0 => tracing::info!(
                rematched = r.rematched,
                passed = r.passed,
                opened = r.opened,
                closed = r.closed,
                events = r.events,
                "exposures tracked"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "tracking exposures failed"),
            Err(e) => tracing::warn!(error = %e, "exposure tracker task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(advisory: &str, package: &str, version: &str, detected: i64) -> OpenExposure {
        OpenExposure {
            advisory: advisory.into(),
            package: package.into(),
            version: version.into(),
            detected,
        }
    }

    #[test]
    fn a_retired_host_closes_everything_without_a_fixed_event() {
        let old = ExposureLedger {
            open: vec![open("DSA-1", "openssl", "3.0.1", 10)],
            closed: vec![],
        };
        let now = Utc::now();
        let (l, h) = advance(&old, None, "computer:a", "a", now);
        assert!(l.open.is_empty());
        assert_eq!(l.closed.len(), 1);
        assert_eq!(l.closed[0].how, Closure::Retired);
        assert_eq!(l.closed[0].detected.timestamp(), 10);
        assert!(h.closed.is_empty() && h.opened.is_empty());
    }

    #[test]
    fn closed_exposures_older_than_the_kept_age_are_dropped() {
        let now = Utc::now();
        let stale = ClosedExposure {
            advisory: "DSA-0".into(),
            package: "p".into(),
            detected: now - chrono::Duration::days(500),
            closed: now - chrono::Duration::days(CLOSED_KEPT_DAYS + 1),
            how: Closure::Removed,
            version: None,
        };
        let fresh = ClosedExposure {
            closed: now - chrono::Duration::days(3),
            ..stale.clone()
        };
        let old = ExposureLedger {
            open: vec![],
            closed: vec![fresh.clone(), stale],
        };
        let (l, _) = advance(&old, None, "computer:a", "a", now);
        assert_eq!(l.closed, vec![fresh]);
    }

    #[test]
    fn events_list_at_most_the_limit_and_count_all() {
        let pairs: Vec<ExposurePair> = (0..MAX_EVENT_PAIRS + 7)
            .map(|n| ExposurePair {
                computer_id: format!("computer:{n:04}"),
                computer_name: format!("h{n:04}"),
                advisory: "DSA-9".into(),
                level: None,
                package: "openssl".into(),
                version: Some("1".into()),
                fixed: None,
            })
            .collect();
        let e = events(
            Cause::Import,
            vec![HostChanges {
                opened: pairs,
                closed: vec![],
            }],
        );
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].0, VULNERABILITY_EXPOSED);
        assert_eq!(e[0].1.pairs.len(), MAX_EVENT_PAIRS);
        assert_eq!(e[0].1.total, MAX_EVENT_PAIRS + 7);
        assert_eq!(e[0].1.advisory.as_deref(), Some("DSA-9"));
        assert_eq!(e[0].1.pairs[0].computer_name, "h0000");
    }
}
