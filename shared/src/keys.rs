//! Agent key pairs and their text encoding.
//!
//! Public keys travel as `ed25519:<base64 of 32 bytes>`; private keys are stored by the
//! agent as `ed25519-secret:<base64 of the 32-byte seed>` in a 0600 file.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand_core::OsRng;

const PUBLIC_PREFIX: &str = "ed25519:";
const SECRET_PREFIX: &str = "ed25519-secret:";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key must start with '{0}'")]
    MissingPrefix(&'static str),
    #[error("key is not valid base64")]
    Base64,
    #[error("key must be 32 bytes")]
    Length,
    #[error("public key is not a valid Ed25519 point (or is a weak, small-order key)")]
    InvalidPoint,
}

/// A verified-well-formed agent public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPublicKey(VerifyingKey);

impl AgentPublicKey {
    pub fn as_verifying_key(&self) -> &VerifyingKey {
        &self.0
    }
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_PREFIX}{}", B64.encode(self.0.as_bytes()))
    }
    /// Parses `ed25519:<base64>`; refuses weak (small-order) keys, which would make any
    /// signature check meaningless.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let b64 = text
            .trim()
            .strip_prefix(PUBLIC_PREFIX)
            .ok_or(KeyError::MissingPrefix(PUBLIC_PREFIX))?;
        let raw = B64.decode(b64).map_err(|_| KeyError::Base64)?;
        let raw: [u8; 32] = raw.try_into().map_err(|_| KeyError::Length)?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| KeyError::InvalidPoint)?;
        if key.is_weak() {
            return Err(KeyError::InvalidPoint);
        }
        Ok(AgentPublicKey(key))
    }
    /// SHA-256 fingerprint of the raw key, hex; what operators compare by eye.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(self.0.as_bytes()))
    }
}

/// The agent's signing key.
pub struct AgentKeyPair(SigningKey);

impl std::fmt::Debug for AgentKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AgentKeyPair")
            .field(&self.public().to_text())
            .finish()
    }
}

impl AgentKeyPair {
    pub fn generate() -> Self {
        AgentKeyPair(SigningKey::generate(&mut OsRng))
    }
    pub fn public(&self) -> AgentPublicKey {
        AgentPublicKey(self.0.verifying_key())
    }
    pub fn signing_key(&self) -> &SigningKey {
        &self.0
    }
    pub fn secret_to_text(&self) -> String {
        format!("{SECRET_PREFIX}{}", B64.encode(self.0.to_bytes()))
    }
    pub fn secret_from_text(text: &str) -> Result<Self, KeyError> {
        let b64 = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(KeyError::MissingPrefix(SECRET_PREFIX))?;
        let raw = B64.decode(b64).map_err(|_| KeyError::Base64)?;
        let raw: [u8; 32] = raw.try_into().map_err(|_| KeyError::Length)?;
        Ok(AgentKeyPair(SigningKey::from_bytes(&raw)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let k = AgentKeyPair::generate();
        let back = AgentKeyPair::secret_from_text(&k.secret_to_text()).unwrap();
        assert_eq!(back.public(), k.public());
        assert_eq!(
            AgentPublicKey::from_text(&k.public().to_text()).unwrap(),
            k.public()
        );
    }

    #[test]
    fn weak_and_malformed_keys_are_refused() {
        // The identity point is small-order: every "signature" would verify with a lax check.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let text = format!("ed25519:{}", B64.encode(identity));
        assert_eq!(
            AgentPublicKey::from_text(&text),
            Err(KeyError::InvalidPoint)
        );
        assert_eq!(
            AgentPublicKey::from_text("rsa:AAAA"),
            Err(KeyError::MissingPrefix("ed25519:"))
        );
        assert_eq!(
            AgentPublicKey::from_text("ed25519:AAAA"),
            Err(KeyError::Length)
        );
        assert_eq!(
            AgentPublicKey::from_text("ed25519:***"),
            Err(KeyError::Base64)
        );
    }
}
