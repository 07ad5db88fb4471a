//! The background worker behind the changed-since feed and webhooks: it numbers queued
//! events (the one sequencer, so cursors only grow), then POSTs each due delivery as JSON
//! signed with HMAC-SHA256, retrying with exponential back-off and moving a delivery to the
//! dead letters after the last attempt.
//!
//! Architecture Invariant: nothing here runs on the ingest path. Ingest only queues an
//! event in its own transaction and wakes this worker; a slow or failing receiver delays
//! nothing but its own deliveries.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ingest::Ingest;
use crate::model::{Delivery, Webhook};
use crate::store::{Store, StoreError};

pub const HEADER_SIGNATURE: &str = "x-census-signature";
pub const HEADER_TIMESTAMP: &str = "x-census-timestamp";
pub const HEADER_EVENT: &str = "x-census-event";
pub const HEADER_DELIVERY: &str = "x-census-delivery";

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Delay before the first retry; doubles per attempt, capped at one hour.
    pub retry_base: Duration,
    /// Attempts before a delivery becomes a dead letter.
    pub max_attempts: u32,
    pub timeout: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            retry_base: Duration::from_secs(30),
            max_attempts: 10,
            timeout: Duration::from_secs(10),
        }
    }
}

/// `sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>.<body>"). The timestamp is signed
/// so a receiver can refuse replays of old deliveries.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length; new_from_slice cannot fail for Hmac<Sha256>.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The delay before attempt `attempts + 1`.
pub fn backoff(cfg: &WebhookConfig, attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(16));
    cfg.retry_base
        .saturating_mul(factor)
        .min(Duration::from_secs(3600))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io(e.to_string()))?
}

pub async fn run(
    store: Arc<dyn Store>,
    ingest: Arc<Ingest>,
    cfg: WebhookConfig,
    leader: crate::leader::Leader,
) {
    let client = match reqwest::Client::builder()
        .timeout(cfg.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("census-collector/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook client could not start; webhooks disabled");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = ingest.events.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if !leader.leads() {
            continue;
        }
        let s = store.clone();
        match blocking(move || s.sequence_events(1000)).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(events = n, "feed events sequenced"),
            Err(e) => tracing::error!(error = %e, "sequencing feed events failed"),
        }
        let s = store.clone();
        let due = match blocking(move || s.due_deliveries(Utc::now(), 100)).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "reading due webhook deliveries failed");
                continue;
            }
        };
        if due.is_empty() {
            continue;
        }
        let s = store.clone();
        let hooks = blocking(move || s.list_webhooks())
            .await
            .unwrap_or_default();
        for d in due {
            deliver(&store, &client, &cfg, &hooks, d).await;
        }
    }
}

async fn deliver(
    store: &Arc<dyn Store>,
    client: &reqwest::Client,
    cfg: &WebhookConfig,
    hooks: &[Webhook],
    d: Delivery,
) {
    let s = store.clone();
    let id = d.id.clone();
    let Some(hook) = hooks.iter().find(|h| h.id == d.webhook_id && h.active) else {
        // The webhook was deleted: its queue goes with it.
        let _ = blocking(move || s.update_delivery(&id, None)).await;
        return;
    };
    let cursor = d.cursor;
    let event = match blocking(move || s.feed_event(cursor)).await {
        Ok(Some(e)) => e,
        Ok(None) => {
            let s = store.clone();
            let _ = blocking(move || s.update_delivery(&id, None)).await;
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "reading feed event failed");
            return;
        }
    };
    // A change record's event names the business services its computer's change reaches
    // (as they stand when delivered), so the ITSM tool can route it.
    let services = match &event.record {
        Some(r) => {
            let s = store.clone();
            let (id, name) = (r.ci_id.clone(), r.ci_name.clone());
            match blocking(move || {
                crate::query::services::impact_of_computer(s.as_ref(), &id, &name, Utc::now())
            })
            .await
            {
                Ok(found) => Some(found),
                Err(e) => {
                    tracing::warn!(error = %e, "services of a change record not read");
                    None
                }
            }
        }
        None => None,
    };
    let body = match serde_json::to_value(&event).and_then(|mut v| {
        if let (Some(found), Some(o)) = (services, v.as_object_mut()) {
            o.insert("services".into(), serde_json::to_value(found)?);
        }
        serde_json::to_vec(&v)
    }) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "encoding feed event failed");
            return;
        }
    };
    let ts = Utc::now().timestamp();
    let result = client
        .post(&hook.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(HEADER_EVENT, &event.event_type)
        .header(HEADER_DELIVERY, &d.id)
        .header(HEADER_TIMESTAMP, ts.to_string())
        .header(HEADER_SIGNATURE, signature(&hook.secret, ts, &body))
        .body(body)
        .send()
        .await;
    let failure = match result {
        Ok(resp) if resp.status().is_success() => None,
        Ok(resp) => Some(format!("receiver answered {}", resp.status())),
        Err(e) => Some(format!("request failed: {e}")),
    };
    let s = store.clone();
    let id = d.id.clone();
    let outcome = match failure {
        None => {
            tracing::info!(delivery = %d.id, webhook = %hook.id, cursor = d.cursor, "webhook delivered");
            metrics::counter!("census_webhook_deliveries_total", "outcome" => "delivered")
                .increment(1);
            blocking(move || s.update_delivery(&id, None)).await
        }
        Some(error) => {
            let attempts = d.attempts + 1;
            let now = Utc::now();
            let dead = attempts >= cfg.max_attempts;
            let next = Delivery {
                attempts,
                last_error: Some(error.clone()),
                next_attempt_at: now
                    + chrono::Duration::from_std(backoff(cfg, attempts))
                        .unwrap_or(chrono::Duration::hours(1)),
                dead_at: dead.then_some(now),
                ..d.clone()
            };
            let outcome = if dead { "dead" } else { "failed" };
            metrics::counter!("census_webhook_deliveries_total", "outcome" => outcome).increment(1);
            if dead {
                tracing::warn!(delivery = %d.id, webhook = %hook.id, attempts, error, "webhook delivery moved to dead letters");
            } else {
                tracing::info!(delivery = %d.id, webhook = %hook.id, attempts, error, "webhook delivery failed; will retry");
            }
            blocking(move || s.update_delivery(&id, Some(&next))).await
        }
    };
    if let Err(e) = outcome {
        tracing::error!(error = %e, "recording webhook delivery outcome failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_rfc_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let s = signature("k", 1700000000, b"{}");
        assert!(s.starts_with("sha256=") && s.len() == 7 + 64);
        assert_ne!(s, signature("k", 1700000001, b"{}"), "timestamp is signed");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let cfg = WebhookConfig {
            retry_base: Duration::from_secs(30),
            ..Default::default()
        };
        assert_eq!(backoff(&cfg, 1), Duration::from_secs(30));
        assert_eq!(backoff(&cfg, 2), Duration::from_secs(60));
        assert_eq!(backoff(&cfg, 3), Duration::from_secs(120));
        assert_eq!(backoff(&cfg, 30), Duration::from_secs(3600));
    }
}
