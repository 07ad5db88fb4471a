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

pub async fn run(
    store: Arc<dyn Store>,
    policy: Lifecycle,
    every: Duration,
    leader: crate::leader::Leader,
) {
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
