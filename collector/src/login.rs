//! Password login for people (the web UI and `census login`): Argon2id hashes, a generic
//! failure message, and failure limits per user and per client address. A successful
//! login issues a short-lived API token, so every later request is authenticated the same
//! way as any other person's.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::json;

use crate::http::{ApiProblem, AppState};
use crate::ops::credentials::verify_password;
pub use crate::ops::credentials::{hash_password, MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS};
use crate::people;
use crate::store::{AuditDraft, PeopleWrite};

/// Failed logins allowed within [`FAILURE_WINDOW`]: per user from one client address (so
/// a stranger guessing an administrator's password locks only their own address out), per
/// address over all users, and per user over all addresses (a distributed guess; high
/// enough that one address cannot reach it alone).
pub const MAX_FAILURES_PER_USER: usize = 5;
pub const MAX_FAILURES_PER_ADDRESS: usize = 20;
pub const MAX_FAILURES_PER_USER_ANYWHERE: usize = 100;
pub use crate::http::{LoginLimiter, FAILURE_WINDOW};
/// How long a login's token lasts.
pub const SESSION_HOURS: i64 = 12;
const GENERIC_FAILURE: &str = "invalid user name or password";

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    name: String,
    password: String,
}

/// A short-lived API token for the person who logged in.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct LoginToken {
    /// Send as `Authorization: Bearer <token>`.
    token: String,
    user: String,
    role: crate::model::Role,
    expires_at: chrono::DateTime<chrono::Utc>,
}

fn too_many(wait: u64) -> Response {
    let mut r = ApiProblem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too many failed logins; wait before trying again",
        None,
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn address_key(peer: Option<SocketAddr>) -> String {
    let ip = peer.map(|p| p.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    format!("ip:{ip}")
}

/// The limiter keys one login attempt counts against: (address), (user from that address),
/// (user from anywhere), each with its limit.
fn failure_keys(ip_key: &str, name: &str) -> [(String, usize); 3] {
    [
        (ip_key.to_string(), MAX_FAILURES_PER_ADDRESS),
        (user_at_address(ip_key, name), MAX_FAILURES_PER_USER),
        (format!("user:{name}"), MAX_FAILURES_PER_USER_ANYWHERE),
    ]
}

/// The key of one user's failures from one address, which a success there clears.
fn user_at_address(ip_key: &str, name: &str) -> String {
    format!("user:{name}@{ip_key}")
}

/// Seconds to wait before `name` may try a password from `ip_key` again, if it must.
fn throttled(limiter: &LoginLimiter, ip_key: &str, name: &str) -> Option<u64> {
    failure_keys(ip_key, name)
        .iter()
        .find_map(|(key, max)| limiter.blocked(key, *max))
}

pub async fn login(State(st): State<Arc<AppState>>, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let body: Body = request.into_body();
    let bytes = match http_body_util::Limited::new(body, 4096).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return ApiProblem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "login body over 4096 bytes",
                None,
            )
            .into_response()
        }
    };
    let req: LoginRequest = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            return ApiProblem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("body: {e}; send {{\"name\": ..., \"password\": ...}}"),
                Some("body".into()),
            )
            .into_response()
        }
    };
    match password_login(&st, peer, req.name, req.password).await {
        LoginOutcome::Session {
            user,
            role,
            token_text,
            expires_at,
        } => Json(LoginToken {
            token: token_text,
            user,
            role,
            expires_at,
        })
        .into_response(),
        LoginOutcome::Failed => {
            ApiProblem::new(StatusCode::UNAUTHORIZED, GENERIC_FAILURE, None).into_response()
        }
        LoginOutcome::Throttled { retry_after } => too_many(retry_after),
        LoginOutcome::Unavailable(e) => {
            ApiProblem::new(StatusCode::SERVICE_UNAVAILABLE, e, None).into_response()
        }
    }
}

/// How a password login ended; the API answers JSON, the web UI a cookie.
#[derive(Debug)]
pub enum LoginOutcome {
    Session {
        user: String,
        role: crate::model::Role,
        /// The API token the session carries (`census_pat.…`), shown once.
        token_text: String,
        expires_at: chrono::DateTime<Utc>,
    },
    /// Wrong name or password, or a disabled user: one generic answer.
    Failed,
    Throttled {
        retry_after: u64,
    },
    Unavailable(String),
}

pub const LOGIN_FAILED_MESSAGE: &str = GENERIC_FAILURE;

/// Checks a password under the failure limits and, on success, stores an audited session
/// token.
pub async fn password_login(
    st: &AppState,
    peer: Option<SocketAddr>,
    name: String,
    password: String,
) -> LoginOutcome {
    let ip_key = address_key(peer);
    if let Some(wait) = throttled(&st.login_limiter, &ip_key, &name) {
        metrics::counter!("census_login_throttled_total").increment(1);
        tracing::warn!(user = %name, address = %ip_key, retry_after = wait, "password login throttled after repeated failures; API tokens are unaffected");
        return LoginOutcome::Throttled { retry_after: wait };
    }
    let store = st.store.clone();
    let lookup = name.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let user = store
            .get_user(&lookup)
            .map_err(|e| e.to_string())?
            .filter(|u| !u.disabled);
        // Unknown users cost the same Argon2 work, so timing does not reveal names.
        static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let dummy = DUMMY
            .get_or_init(|| hash_password("census dummy password for timing").unwrap_or_default());
        let hash = user
            .as_ref()
            .and_then(|u| u.password_hash.clone())
            .unwrap_or_else(|| dummy.clone());
        let ok = verify_password(&hash, &password)
            && user.as_ref().is_some_and(|u| u.password_hash.is_some());
        let Some(user) = user.filter(|_| ok) else {
            return Ok(None);
        };
        let now = Utc::now();
        let (token, text) =
            people::new_token(&user.name, chrono::Duration::hours(SESSION_HOURS), now);
        store
            .commit_people(
                &PeopleWrite::PutApiToken(token.clone()),
                AuditDraft {
                    actor: user.name.clone(),
                    action: "session.login".into(),
                    target: token.id.clone(),
                    before: None,
                    after: Some(json!({"expires_at": token.expires_at})),
                    comment: None,
                },
                now,
            )
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(Some((user, token, text)))
    })
    .await;
    match outcome {
        Ok(Ok(Some((user, token, text)))) => {
            st.login_limiter
                .clear(&user_at_address(&ip_key, &user.name));
            tracing::info!(user = %user.name, token_id = %token.id, "login");
            LoginOutcome::Session {
                user: user.name,
                role: user.role,
                token_text: text,
                expires_at: token.expires_at,
            }
        }
        Ok(Ok(None)) => {
            for (key, _) in failure_keys(&ip_key, &name) {
                st.login_limiter.fail(&key);
            }
            tracing::info!(user = %name, "login failed");
            metrics::counter!("census_login_failures_total").increment(1);
            LoginOutcome::Failed
        }
        Ok(Err(e)) => LoginOutcome::Unavailable(format!("store: {e}")),
        Err(e) => LoginOutcome::Unavailable(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip_and_policy() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "correct horse batterY"));
        assert!(!verify_password("not a hash", "x"));
        assert!(hash_password("short").unwrap_err().contains("12"));
    }

    #[test]
    fn unknown_users_cost_a_real_verification() {
        let h = hash_password("census dummy password for timing").unwrap();
        assert!(argon2::password_hash::PasswordHash::new(&h).is_ok());
    }

    #[test]
    fn bad_passwords_from_one_address_do_not_lock_the_user_out_elsewhere() {
        let l = LoginLimiter::default();
        let fail = |ip: &str, name: &str| {
            for (key, _) in failure_keys(ip, name) {
                l.fail(&key);
            }
        };
        for _ in 0..MAX_FAILURES_PER_USER {
            assert!(throttled(&l, "ip:203.0.113.9", "admin").is_none());
            fail("ip:203.0.113.9", "admin");
        }
        assert!(
            throttled(&l, "ip:203.0.113.9", "admin").is_some(),
            "the guesser waits"
        );
        assert!(
            throttled(&l, "ip:192.0.2.10", "admin").is_none(),
            "the administrator, elsewhere, does not"
        );
        // One address guessing many users is held by its own limit.
        for i in 0..MAX_FAILURES_PER_ADDRESS {
            fail("ip:198.51.100.7", &format!("u{i}"));
        }
        assert!(throttled(&l, "ip:198.51.100.7", "someone-else").is_some());
        // Many addresses guessing one user reach the user's overall limit.
        for i in 0..MAX_FAILURES_PER_USER_ANYWHERE {
            fail(&format!("ip:10.0.{}.{}", i / 250, i % 250), "root");
        }
        assert!(throttled(&l, "ip:192.0.2.10", "root").is_some());
    }

    #[test]
    fn limiter_blocks_after_max_failures_and_clears() {
        let l = LoginLimiter::default();
        for _ in 0..MAX_FAILURES_PER_USER {
            assert!(l.blocked("user:a", MAX_FAILURES_PER_USER).is_none());
            l.fail("user:a");
        }
        let wait = l.blocked("user:a", MAX_FAILURES_PER_USER).unwrap();
        assert!(wait > 0 && wait <= FAILURE_WINDOW.as_secs());
        assert!(l.blocked("user:b", MAX_FAILURES_PER_USER).is_none());
        l.clear("user:a");
        assert!(l.blocked("user:a", MAX_FAILURES_PER_USER).is_none());
    }
}
