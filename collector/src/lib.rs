//! The Census collector as a library: ingest, identification, reconciliation, the store
//! boundary, the agent API and the admin commands. `main.rs` wires them into a server.
//!
//! The runtime path of one snapshot: `server` accepts TLS -> `api::snapshots` checks the
//! envelope headers, admission and body size -> `ingest::Ingest::snapshot` verifies the
//! signature over the received bytes, checks seq, decodes with limits, `identify`s the
//! machine, `reconcile`s it into a plan -> `store::Store::commit_ingest` applies it in one
//! transaction -> `ingest::GroupCommit` flushes -> the ack leaves. A protocol-v2 delta
//! (`api::deltas` -> `ingest::Ingest::delta`) takes the same path once its base is checked
//! and `delta::view` has turned it into the snapshot reconcile reads.

pub mod admin;
pub mod api;
pub mod baselines_api;
pub mod changes_api;
pub mod compat_api;
pub mod delta;
pub mod drain;
pub mod drift;
pub mod foreign;
pub mod health_api;
pub mod http;
pub mod identify;
pub mod ingest;
pub mod leader;
pub mod lifecycle;
pub mod login;
pub mod map_api;
pub mod model;
pub mod openapi;
pub mod ops;
pub mod pace;
pub mod parallel;
pub mod people;
pub mod query;
pub mod query_api;
pub mod reconcile;
pub mod register_api;
pub mod server;
pub mod services_api;
pub mod software_api;
pub mod store;
pub mod table;
pub mod telemetry;
pub mod tls;
pub mod ui;
pub mod vulns;
pub mod vulns_api;
pub mod webhooks;
