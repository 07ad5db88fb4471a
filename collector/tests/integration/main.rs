//! The collector's integration tests: the Store contract, drift over the real ingest path
//! (signed, encoded snapshots into `Ingest::snapshot`), protocol v2's deltas against full
//! snapshots, the migration of a schema-2 store, vulnerability matching and software titles.

mod baselines;
mod deltas;
pub(crate) mod drift;
mod foreign;
mod health;
pub(crate) mod map;
mod migration;
mod postgres;
mod register;
mod services;
mod store;
mod titles;
mod vulns;

/// Enrolls `agent_id` under `key` in `store` (through a one-off enrollment token), as the
/// enroll route does.
fn enroll_agent(
    store: &census_collector::store::Cmdb,
    agent_id: &str,
    key: &census_shared::AgentKeyPair,
) {
    use census_collector::model::{Agent, EnrollmentToken};
    use census_collector::store::Store;
    use chrono::{Duration, Utc};
    store
        .put_token(&EnrollmentToken {
            id: "tok_t".into(),
            secret_hash: "h".into(),
            created_at: Utc::now(),
            expires_at: Utc::now() + Duration::hours(1),
            max_uses: 10,
            uses: 0,
            revoked_at: None,
            note: None,
        })
        .unwrap();
    store
        .enroll(
            "h",
            &Agent::enrolled(
                agent_id.into(),
                key.public().to_text(),
                "t".into(),
                Default::default(),
                Utc::now(),
            ),
            Utc::now(),
        )
        .unwrap();
}
