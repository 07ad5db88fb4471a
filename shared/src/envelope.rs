//! The signed envelope of protocol v1.
//!
//! A snapshot travels as the HTTP body (zstd or identity); agent id, seq and signature
//! travel in headers. The signature is Ed25519 over a domain-separated message:
//!
//! ```text
//! "census-snapshot-v1" 0x00 | u16be len(agent_id) | agent_id | u64be seq | SHA-256(body bytes)
//! ```
//!
//! The collector verifies the bytes it received, before decompressing or decoding them,
//! with `verify_strict` (no malleable or small-order signatures).
//! Heartbeats use the same layout with the domain `census-heartbeat-v1` over their own body
//! (the unchanged inventory's content hash and the send time), and protocol v2's deltas
//! with the domain `census-delta-v2` over the delta's body bytes.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::keys::AgentPublicKey;

pub const SNAPSHOT_DOMAIN: &[u8] = b"census-snapshot-v1";
pub const HEARTBEAT_DOMAIN: &[u8] = b"census-heartbeat-v1";
pub const DELTA_DOMAIN: &[u8] = b"census-delta-v2";

/// HTTP header names carrying the envelope.
pub const HEADER_AGENT_ID: &str = "x-census-agent";
pub const HEADER_SEQ: &str = "x-census-seq";
pub const HEADER_SIGNATURE: &str = "x-census-signature";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("signature is not valid base64 of 64 bytes")]
    MalformedSignature,
    #[error("signature does not verify for this agent's key")]
    BadSignature,
    #[error("agent id is longer than {0} bytes")]
    AgentIdTooLong(usize),
}

/// What the signature covers, for either kind of message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedFields<'a> {
    pub domain: &'static [u8],
    pub agent_id: &'a str,
    pub seq: u64,
    pub digest: [u8; 32],
}

impl SignedFields<'_> {
    /// The exact bytes that are signed.
    pub fn message(&self) -> Result<Vec<u8>, EnvelopeError> {
        let id = self.agent_id.as_bytes();
        let len = u16::try_from(id.len())
            .map_err(|_| EnvelopeError::AgentIdTooLong(u16::MAX as usize))?;
        let mut msg = Vec::with_capacity(self.domain.len() + 1 + 2 + id.len() + 8 + 32);
        msg.extend_from_slice(self.domain);
        msg.push(0);
        msg.extend_from_slice(&len.to_be_bytes());
        msg.extend_from_slice(id);
        msg.extend_from_slice(&self.seq.to_be_bytes());
        msg.extend_from_slice(&self.digest);
        Ok(msg)
    }
}

pub fn body_digest(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// Fields for a snapshot body.
pub fn snapshot_fields<'a>(agent_id: &'a str, seq: u64, body: &[u8]) -> SignedFields<'a> {
    SignedFields {
        domain: SNAPSHOT_DOMAIN,
        agent_id,
        seq,
        digest: body_digest(body),
    }
}

/// Fields for a heartbeat body (the JSON [`crate::protocol::Heartbeat`] bytes as sent).
pub fn heartbeat_fields<'a>(agent_id: &'a str, seq: u64, body: &[u8]) -> SignedFields<'a> {
    SignedFields {
        domain: HEARTBEAT_DOMAIN,
        agent_id,
        seq,
        digest: body_digest(body),
    }
}

/// Fields for a delta body (protocol v2).
pub fn delta_fields<'a>(agent_id: &'a str, seq: u64, body: &[u8]) -> SignedFields<'a> {
    SignedFields {
        domain: DELTA_DOMAIN,
        agent_id,
        seq,
        digest: body_digest(body),
    }
}

/// Signs and returns the base64 signature for the header.
pub fn sign(key: &SigningKey, fields: &SignedFields<'_>) -> Result<String, EnvelopeError> {
    let sig = key.sign(&fields.message()?);
    Ok(B64.encode(sig.to_bytes()))
}

/// Verifies a base64 header signature with `verify_strict`.
pub fn verify(
    key: &AgentPublicKey,
    fields: &SignedFields<'_>,
    signature_b64: &str,
) -> Result<(), EnvelopeError> {
    let raw = B64
        .decode(signature_b64.trim())
        .map_err(|_| EnvelopeError::MalformedSignature)?;
    let raw: [u8; 64] = raw
        .try_into()
        .map_err(|_| EnvelopeError::MalformedSignature)?;
    let sig = Signature::from_bytes(&raw);
    let vk: &VerifyingKey = key.as_verifying_key();
    vk.verify_strict(&fields.message()?, &sig)
        .map_err(|_| EnvelopeError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::AgentKeyPair;

    #[test]
    fn message_layout_is_domain_separated() {
        let a = snapshot_fields("a", 1, b"x").message().unwrap();
        let h = SignedFields {
            domain: HEARTBEAT_DOMAIN,
            ..snapshot_fields("a", 1, b"x")
        }
        .message()
        .unwrap();
        assert_ne!(a, h);
        assert!(a.starts_with(b"census-snapshot-v1\0\0\x01a"));
        assert_eq!(a.len(), 18 + 1 + 2 + 1 + 8 + 32);
    }

    #[test]
    fn agent_id_boundary_is_length_prefixed() {
        // "ab" + seq could otherwise collide with "a" + a seq starting with 'b'.
        let x = snapshot_fields("ab", 1, b"").message().unwrap();
        let y = snapshot_fields("a", 1, b"").message().unwrap();
        assert_ne!(x[..22], y[..22]);
    }

    #[test]
    fn other_agents_key_fails() {
        let mine = AgentKeyPair::generate();
        let theirs = AgentKeyPair::generate();
        let f = snapshot_fields("agent-1", 7, b"body");
        let sig = sign(mine.signing_key(), &f).unwrap();
        assert_eq!(verify(&mine.public(), &f, &sig), Ok(()));
        assert_eq!(
            verify(&theirs.public(), &f, &sig),
            Err(EnvelopeError::BadSignature)
        );
    }

    #[test]
    fn garbage_signature_is_malformed() {
        let k = AgentKeyPair::generate();
        let f = snapshot_fields("a", 1, b"");
        assert_eq!(
            verify(&k.public(), &f, "not base64!"),
            Err(EnvelopeError::MalformedSignature)
        );
        assert_eq!(
            verify(&k.public(), &f, &B64.encode([0u8; 10])),
            Err(EnvelopeError::MalformedSignature)
        );
    }
}
