//! Secrets people and agents hold, as the store keeps them: hashes of enrollment and API
//! tokens, Argon2id password hashes, and the constant-time comparison of digests. Pure
//! functions; the API, the UI and the admin operations share them.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use crate::model::ApiToken;

/// What starts a person's API token: `census_pat.<id>.<secret>`.
pub const TOKEN_PREFIX: &str = "census_pat";
pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_BYTES: usize = 1024;

pub fn hash_password(password: &str) -> Result<String, String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "a password needs at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!("a password is at most {MAX_PASSWORD_BYTES} bytes"));
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing failed: {e}"))
}

pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

pub fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.trim().as_bytes()))
}

pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new token for `user`: the record to store and the text to show once.
pub fn new_token(user: &str, ttl: Duration, now: DateTime<Utc>) -> (ApiToken, String) {
    let id = format!("pat_{}", hex::encode(rand::random::<[u8; 8]>()));
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let text = format!("{TOKEN_PREFIX}.{id}.{secret}");
    (
        ApiToken {
            id,
            user: user.to_string(),
            secret_hash: secret_hash(&secret),
            created_at: now,
            expires_at: now + ttl,
            last_used_at: None,
            revoked_at: None,
        },
        text,
    )
}

/// Constant-time equality of two secrets or digests (same length leaks nothing else).
pub fn same_digest(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
