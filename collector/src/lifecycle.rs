//! Stale and retired computers: a computer not seen for `stale_after` turns stale, after
//! `retire_after` retired; one that reports again is active (at once on a full snapshot,
//! on the next sweep after a heartbeat). Each transition is a history version, never drift.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::{CiClass, CiStatus};
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, Copy)]
pub struct Lifecycle {
    pub stale_after: chrono::Duration,
    pub retire_after: chrono::Duration,
}

impl Lifecycle {
    /// The status a computer last seen at `last_seen` has at `now`.
    pub fn status_at(&self, last_seen: DateTime<Utc>, now: DateTime<Utc>) -> CiStatus {
        let age = now - last_seen;
        if age >= self.retire_after {
            CiStatus::Retired
        } else if age >= self.stale_after {
            CiStatus::Stale
        } else {
            CiStatus::Active
        }
    }
}

/// One sweep over every computer; returns how many changed status.
pub fn sweep(
    store: &dyn Store,
    policy: Lifecycle,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut due = Vec::new();
    store.scan_cis(CiClass::Computer, &mut |ci| {
        // A record people made before discovery is not silent: nothing reports it yet.
        if ci.sources.is_empty() {
            return true;
        }
        let want = policy.status_at(ci.last_seen, now);
        if want != ci.status {
            due.push((ci.id, ci.version, want));
        }
        true
    })?;
    let mut changed = 0;
    for (id, version, status) in due {
        if store.set_ci_status(&id, version, status, now)? {
            tracing::info!(ci_id = %id, status = ?status, "computer lifecycle");
            changed += 1;
        }
    }
    Ok(changed)
}

/// Records `today`'s CMDB health point unless the trend has it (another collector of a
/// shared database may have recorded it).
fn record_health(store: Arc<dyn Store>, today: chrono::NaiveDate) -> Result<(), String> {
    if store
        .health_trend()
        .map_err(|e| e.to_string())?
        .last()
        .is_some_and(|p| p.day == today)
    {
        return Ok(());
    }
    let ops = crate::ops::Ops {
        store,
        ingest: None,
    };
    let report = crate::ops::health::record_today(&ops).map_err(|e| e.to_string())?;
    tracing::info!(overall = report.overall, "cmdb health recorded");
    Ok(())
}

/// Records `today`'s compliance point of every baseline unless the trend has them.
fn record_compliance(store: Arc<dyn Store>, today: chrono::NaiveDate) -> Result<(), String> {
    let baselines = store.list_baselines().map_err(|e| e.to_string())?;
    let trend = store.compliance_trend().map_err(|e| e.to_string())?;
    if baselines
        .iter()
        .all(|b| trend.iter().any(|p| p.baseline == b.id && p.day == today))
    {
        return Ok(());
    }
    let ops = crate::ops::Ops {
        store,
        ingest: None,
    };
    let points =
        crate::ops::baselines::record_today(&ops, Utc::now()).map_err(|e| e.to_string())?;
    tracing::info!(baselines = points.len(), "compliance recorded");
    Ok(())
}

pub async fn run(
    store: Arc<dyn Store>,
    policy: Lifecycle,
    every: Duration,
    leader: crate::leader::Leader,
) {
    let mut health_recorded: Option<chrono::NaiveDate> = None;
    let mut compliance_recorded: Option<chrono::NaiveDate> = None;
    loop {
        if !leader.leads() {
            tokio::time::sleep(every.min(crate::leader::ASK_EVERY)).await;
            continue;
        }
        let s = store.clone();
        match tokio::task::spawn_blocking(move || sweep(s.as_ref(), policy, Utc::now())).await {
            Ok(Ok(n)) if n > 0 => tracing::info!(changed = n, "lifecycle sweep"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "lifecycle sweep failed"),
            Err(e) => tracing::warn!(error = %e, "lifecycle task failed"),
        }
        // After the first sweep of a day (statuses are current), that day's health point.
        let today = Utc::now().date_naive();
        if health_recorded != Some(today) {
            let s = store.clone();
            let recorded = tokio::task::spawn_blocking(move || record_health(s, today)).await;
            match recorded {
                Ok(Ok(())) => health_recorded = Some(today),
                Ok(Err(e)) => tracing::warn!(error = %e, "health point not recorded"),
                Err(e) => tracing::warn!(error = %e, "health task failed"),
            }
        }
        if compliance_recorded != Some(today) {
            let s = store.clone();
            match tokio::task::spawn_blocking(move || record_compliance(s, today)).await {
                Ok(Ok(())) => compliance_recorded = Some(today),
                Ok(Err(e)) => tracing::warn!(error = %e, "compliance not recorded"),
                Err(e) => tracing::warn!(error = %e, "compliance task failed"),
            }
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        let p = Lifecycle {
            stale_after: chrono::Duration::days(7),
            retire_after: chrono::Duration::days(30),
        };
        let now = Utc::now();
        assert_eq!(
            p.status_at(now - chrono::Duration::days(1), now),
            CiStatus::Active
        );
        assert_eq!(
            p.status_at(now - chrono::Duration::days(8), now),
            CiStatus::Stale
        );
        assert_eq!(
            p.status_at(now - chrono::Duration::days(31), now),
            CiStatus::Retired
        );
    }
}
