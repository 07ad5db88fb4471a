//! The Census agent as a library: probes (inventory) and the daemon's parts.
//!
//! Architecture Invariant: probes only read; nothing in `probe` writes to the machine or
//! talks to the network. Transport trusts only the pinned CA.

pub mod config;
pub mod daemon;
pub mod probe;
pub mod schedule;
pub mod spool;
pub mod state;
pub mod transport;
