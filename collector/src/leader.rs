//! Which collector runs the fleet-wide background work (the feed sequencer, webhook
//! deliveries, the stale/retired sweep). On an embedded store that is this process; on a
//! shared database, the one holding the database's leader lock ([`Store::lead`]). Every
//! collector keeps asking, so when the leader dies its lock goes with its session and the
//! next ask elsewhere takes over.
//!
//! Architecture Invariant: leadership only saves duplicate work. Everything the background
//! work writes is a transaction with its own compare-and-set, so two collectors that both
//! believe they lead for a moment (a partitioned leader notices on its next ask) write
//! nothing twice.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::store::Store;

/// How often a collector asks: the longest a dead leader's work waits for a successor.
pub const ASK_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Leader(watch::Receiver<bool>);

impl Leader {
    /// A leader that always leads (tests, single-process tools).
    pub fn always() -> Leader {
        let (_tx, rx) = watch::channel(true);
        Leader(rx)
    }

    pub fn leads(&self) -> bool {
        *self.0.borrow()
    }

    /// Asks `store` now and then every `every`, on a task of the current runtime.
    pub async fn elect(store: Arc<dyn Store>, every: Duration) -> Leader {
        let first = ask(&store).await;
        let (tx, rx) = watch::channel(first);
        announce(false, first);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let now = ask(&store).await;
                let before = tx.send_replace(now);
                announce(before, now);
                if tx.is_closed() {
                    return;
                }
            }
        });
        Leader(rx)
    }
}

async fn ask(store: &Arc<dyn Store>) -> bool {
    let s = store.clone();
    match tokio::task::spawn_blocking(move || s.lead()).await {
        Ok(Ok(leads)) => leads,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not ask for the background-work lead; not leading");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "leader task failed; not leading");
            false
        }
    }
}

fn announce(before: bool, now: bool) {
    match (before, now) {
        (false, true) => tracing::info!(leads = true, "this collector runs the background work"),
        (true, false) => {
            tracing::info!(leads = false, "another collector runs the background work")
        }
        _ => {}
    }
}
