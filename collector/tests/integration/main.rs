//! The collector's integration tests: the Store contract, drift over the real ingest path
//! (signed, encoded snapshots into `Ingest::snapshot`), protocol v2's deltas against full
//! snapshots, and the migration of a schema-2 store.

mod deltas;
mod drift;
mod migration;
mod store;
