//! The Census agent as a library: probes (inventory), and the daemon's parts.
//!
//! Architecture Invariant: probes only read; nothing in `probe` writes to the machine or
//! talks to the network.

pub mod probe;
