//! Prometheus metrics: ingest outcomes by route and refusal reason, ingest latency, the
//! admission queue depth, change records raised, webhook deliveries, failed logins, and
//! periodic gauges of the store (size, agents, computers by status, open records).
//! Rendered at `GET /metrics` in the Prometheus text format.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::model::{CiClass, CiStatus, RecordState};
use crate::store::Store;

/// Installs the process-wide recorder. `None` when one is already installed (tests that
/// start several servers in one process).
pub fn install() -> Option<PrometheusHandle> {
    PrometheusBuilder::new()
        .set_buckets(&[
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ])
        .ok()?
        .install_recorder()
        .ok()
}

/// Refreshes the store gauges every `every` (they read whole trees, so not per request).
pub async fn store_gauges(store: Arc<dyn Store>, every: Duration) {
    loop {
        let s = store.clone();
        let r = tokio::task::spawn_blocking(move || -> Result<(), crate::store::StoreError> {
            metrics::gauge!("census_store_bytes").set(s.size_on_disk()? as f64);
            let agents = s.list_agents()?;
            let revoked = agents.iter().filter(|a| a.is_revoked()).count();
            metrics::gauge!("census_agents", "state" => "enrolled")
                .set((agents.len() - revoked) as f64);
            metrics::gauge!("census_agents", "state" => "revoked").set(revoked as f64);
            let (mut active, mut stale, mut retired) = (0u64, 0u64, 0u64);
            s.scan_cis(CiClass::Computer, &mut |ci| {
                match ci.status {
                    CiStatus::Active => active += 1,
                    CiStatus::Stale => stale += 1,
                    CiStatus::Retired => retired += 1,
                }
                true
            })?;
            metrics::gauge!("census_computers", "status" => "active").set(active as f64);
            metrics::gauge!("census_computers", "status" => "stale").set(stale as f64);
            metrics::gauge!("census_computers", "status" => "retired").set(retired as f64);
            let open = s
                .list_change_records()?
                .iter()
                .filter(|r| r.state == RecordState::Open)
                .count();
            metrics::gauge!("census_change_records_open").set(open as f64);
            Ok(())
        })
        .await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "refreshing store gauges failed"),
            Err(e) => tracing::warn!(error = %e, "store gauge task failed"),
        }
        tokio::time::sleep(every).await;
    }
}
