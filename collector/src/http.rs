//! What every HTTP route shares: the collector's state, the problem type every refusal is
//! rendered as (`application/problem+json`), and the helpers that run store work off the
//! async workers. Route modules (`api`, `changes_api`, `query_api`, `login`, `ui`) import
//! this; nothing here imports a route module.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use census_shared::protocol::Problem;

use tokio::sync::Semaphore;

use crate::ingest::{GroupCommit, Ingest};
use crate::store::Store;

/// Seconds a saturated collector asks agents to wait.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// What every handler reaches through axum's `State`.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub ingest: Arc<Ingest>,
    pub group: Arc<GroupCommit>,
    /// Commits heartbeats that arrive together in one transaction.
    pub heartbeats: Arc<crate::ingest::HeartbeatBatcher>,
    /// Ingest work running at once (CPU-bound decode/reconcile).
    pub workers: Arc<Semaphore>,
    /// Submissions admitted (running or waiting for a worker).
    pub admitted: AtomicUsize,
    /// Most submissions admitted at once; past this the collector answers 429.
    pub max_admitted: usize,
    pub login_limiter: LoginLimiter,
    /// Renders `/metrics`; None when another server in this process owns the recorder.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The private CA's fingerprint agents pin, when the collector made its own CA: the
    /// web UI prints it in the enrollment command.
    pub ca_fingerprint: Option<String>,
    /// Sheds submissions past a multiple of the steady rate (after an outage).
    pub pacer: Arc<crate::pace::Pacer>,
}

pub fn problem(status: StatusCode, detail: impl Into<String>, field: Option<String>) -> Response {
    typed_problem("about:blank", status, detail, field)
}

/// A problem with its own type URI, for refusals a client acts on without a person.
pub fn typed_problem(
    kind: &str,
    status: StatusCode,
    detail: impl Into<String>,
    field: Option<String>,
) -> Response {
    let p = Problem {
        kind: kind.into(),
        title: status.canonical_reason().unwrap_or("error").to_string(),
        status: status.as_u16(),
        detail: detail.into(),
        field,
    };
    let mut resp = (status, Json(p)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    }
    resp
}

/// A refusal from a people route: rendered as problem+json. Small, so `Result`s carrying
/// it stay cheap (an axum `Response` is not).
#[derive(Debug, Clone)]
pub struct ApiProblem {
    pub status: StatusCode,
    pub detail: String,
    pub field: Option<String>,
    /// 401s name the scheme people authenticate with.
    pub bearer_challenge: bool,
}

impl ApiProblem {
    pub fn new(status: StatusCode, detail: impl Into<String>, field: Option<String>) -> Self {
        ApiProblem {
            status,
            detail: detail.into(),
            field,
            bearer_challenge: status == StatusCode::UNAUTHORIZED,
        }
    }
}

impl IntoResponse for ApiProblem {
    fn into_response(self) -> Response {
        let mut r = problem(self.status, self.detail, self.field);
        if self.bearer_challenge {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"census\""),
            );
        }
        r
    }
}

impl From<crate::ops::OpError> for ApiProblem {
    fn from(e: crate::ops::OpError) -> Self {
        use crate::ops::OpError;
        match e {
            OpError::NotFound(what) => ApiProblem::new(
                StatusCode::NOT_FOUND,
                format!("{what} does not exist"),
                None,
            ),
            OpError::Invalid { field, message } => {
                ApiProblem::new(StatusCode::UNPROCESSABLE_ENTITY, message, field)
            }
            OpError::Conflict(m) => ApiProblem::new(StatusCode::CONFLICT, m, None),
            OpError::Store(e) => {
                ApiProblem::new(StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}"), None)
            }
        }
    }
}

impl AppState {
    /// The operations layer over this collector's store and ingest path.
    pub fn ops(&self) -> crate::ops::Ops {
        crate::ops::Ops {
            store: self.store.clone(),
            ingest: Some(self.ingest.clone()),
        }
    }

    /// Runs an operation off the async workers, as `person` (the API and the web UI).
    pub async fn run<T: Send + 'static>(
        &self,
        actor: impl Into<crate::ops::Actor>,
        f: impl FnOnce(&crate::ops::Ops, &crate::ops::Actor) -> Result<T, crate::ops::OpError>
            + Send
            + 'static,
    ) -> Result<T, ApiProblem> {
        let ops = self.ops();
        let actor = actor.into();
        tokio::task::spawn_blocking(move || f(&ops, &actor))
            .await
            .map_err(|e| ApiProblem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None))?
            .map_err(ApiProblem::from)
    }
}

/// Runs a store read or write off the async workers; a store error is a 503.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiProblem> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiProblem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None))?
        .map_err(|e| ApiProblem::new(StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}"), None))
}

/// Decodes a query string into `T` (absent: `T::default()`); errors are 400 naming the
/// parameter.
pub fn query_params<T: serde::de::DeserializeOwned + Default>(
    raw: Option<String>,
) -> Result<T, ApiProblem> {
    let Some(q) = raw else {
        return Ok(T::default());
    };
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let (field, detail) = if field == "." {
            (
                "query".to_string(),
                format!("query string: {}", e.into_inner()),
            )
        } else {
            let detail = format!("{field}: {}", e.into_inner());
            (field, detail)
        };
        ApiProblem::new(StatusCode::BAD_REQUEST, detail, Some(field))
    })
}

/// A bounded count parameter: absent gives `default`; outside `min..=max` is refused
/// rather than quietly clamped, so a client learns the limit.
pub fn bounded<T>(
    field: &str,
    value: Option<T>,
    default: T,
    min: T,
    max: T,
) -> Result<T, ApiProblem>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    match value {
        None => Ok(default),
        Some(v) if min <= v && v <= max => Ok(v),
        Some(v) => Err(ApiProblem::new(
            StatusCode::BAD_REQUEST,
            format!("{field}: {v} is not within {min} to {max}"),
            Some(field.to_string()),
        )),
    }
}

/// How long a failed login counts against a user and an address.
pub const FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

/// Recent failures per key ("user:NAME", "ip:ADDR"). Bounded: the oldest keys are dropped
/// past [`LoginLimiter::MAX_KEYS`].
#[derive(Default)]
pub struct LoginLimiter {
    failures: std::sync::Mutex<
        std::collections::HashMap<String, std::collections::VecDeque<std::time::Instant>>,
    >,
}

impl LoginLimiter {
    const MAX_KEYS: usize = 100_000;

    fn recent(
        q: &mut std::collections::VecDeque<std::time::Instant>,
        now: std::time::Instant,
    ) -> usize {
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) > FAILURE_WINDOW)
        {
            q.pop_front();
        }
        q.len()
    }

    /// Seconds to wait when `key` has used its failures, else None.
    pub fn blocked(&self, key: &str, max: usize) -> Option<u64> {
        let now = std::time::Instant::now();
        let mut map = self.failures.lock().ok()?;
        let q = map.get_mut(key)?;
        if Self::recent(q, now) >= max {
            let oldest = q.front().copied().unwrap_or(now);
            let wait = FAILURE_WINDOW.saturating_sub(now.duration_since(oldest));
            return Some(wait.as_secs().max(1));
        }
        None
    }

    pub fn fail(&self, key: &str) {
        if let Ok(mut map) = self.failures.lock() {
            if map.len() >= Self::MAX_KEYS {
                let now = std::time::Instant::now();
                map.retain(|_, q| Self::recent(q, now) > 0);
            }
            map.entry(key.to_string())
                .or_default()
                .push_back(std::time::Instant::now());
        }
    }

    pub fn clear(&self, key: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(key);
        }
    }
}

/// The routes whose bodies are CSV files (they check their own media type).
pub const CSV_BODY_PATHS: [&str; 1] = ["/api/v1/register/import"];

/// The API's bodies are JSON: a write to `/api/` that labels its body as anything else
/// is refused with 415 before the body is read (a body without a Content-Type is read as
/// JSON). Compression is `Content-Encoding`, not the media type.
pub async fn json_bodies_only(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let writes = matches!(
        *request.method(),
        axum::http::Method::POST | axum::http::Method::PUT | axum::http::Method::PATCH
    );
    if writes
        && request.uri().path().starts_with("/api/")
        && !CSV_BODY_PATHS.contains(&request.uri().path())
    {
        if let Some(value) = request.headers().get(header::CONTENT_TYPE) {
            if !is_json_media_type(value) {
                return problem(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "Content-Type {} is not JSON; send application/json",
                        String::from_utf8_lossy(value.as_bytes())
                    ),
                    Some("content-type".into()),
                );
            }
        }
    }
    next.run(request).await
}

/// `application/json`, or a `+json` type, with any parameters (`; charset=utf-8`).
fn is_json_media_type(value: &HeaderValue) -> bool {
    let Some(essence) = media_type_essence(value) else {
        return false;
    };
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// A Content-Type's type/subtype, lowercased, its parameters (`; charset=...`) dropped;
/// `None` when the header is not text.
pub fn media_type_essence(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    Some(
        text.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// The largest JSON body a people route reads.
pub const MAX_PEOPLE_BODY_BYTES: usize = 256 * 1024;

/// Reads a people route's JSON body: 413 past [`MAX_PEOPLE_BODY_BYTES`], 422 naming the
/// path of what does not decode.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    body: axum::body::Body,
) -> Result<T, ApiProblem> {
    use http_body_util::BodyExt;

    let limited = http_body_util::Limited::new(body, MAX_PEOPLE_BODY_BYTES);
    let bytes = limited
        .collect()
        .await
        .map_err(|_| {
            ApiProblem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body exceeds {MAX_PEOPLE_BODY_BYTES} bytes"),
                None,
            )
        })?
        .to_bytes();
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    let value: T = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            "body".to_string()
        } else {
            path
        };
        ApiProblem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{path}: {}", e.into_inner()),
            Some(path),
        )
    })?;
    Ok(value)
}

#[cfg(test)]
mod media_type_tests {
    use super::*;

    #[test]
    fn json_media_types_are_recognised_with_parameters_and_case() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(is_json_media_type(&HeaderValue::from_static(ok)), "{ok}");
        }
        for refused in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "",
        ] {
            assert!(
                !is_json_media_type(&HeaderValue::from_static(refused)),
                "{refused}"
            );
        }
    }
}
