//! The collector's integration tests: the Store contract and drift over the real ingest
//! path (signed, encoded snapshots into `Ingest::snapshot` on a sled store).

mod drift;
mod migration;
mod store;
