//! Census protocol v1, shared by the agent, the collector and the fleet simulator.
//!
//! Architecture Invariant: this crate has no HTTP, no storage and no async runtime. It
//! defines bytes and rules (what a snapshot is, how it is signed, hashed and bounded), so
//! both sides agree by construction.
//!
//! The data path through it: an agent builds a [`schema::Snapshot`], encodes it with
//! [`wire::encode_body`], signs the body with [`envelope::sign`]; the collector checks the
//! signature over the received bytes with [`envelope::verify`] and only then decodes with
//! [`wire::decode_body`], which enforces [`limits`].

#[cfg(feature = "proptest")]
pub mod arbitrary;
pub mod canonical;
pub mod delta;
pub mod envelope;
pub mod identity;
pub mod keys;
pub mod limits;
pub mod protocol;
pub mod schema;
pub mod version;
pub mod wire;

pub use canonical::ContentHash;
pub use keys::{AgentKeyPair, AgentPublicKey};
pub use schema::*;
