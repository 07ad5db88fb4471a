//! HTTP routes for agents and probes. Every refusal is `application/problem+json` naming
//! the problem, with the status the protocol assigns it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use census_shared::envelope::{HEADER_AGENT_ID, HEADER_SEQ, HEADER_SIGNATURE};
use census_shared::limits::{
    MAX_AGENT_ID_BYTES, MAX_BODY_BYTES, MAX_ENROLL_BODY_BYTES, MAX_HEARTBEAT_BYTES,
};
use census_shared::protocol::{
    Ack, EnrollRequest, EnrollResponse, Heartbeat, DELTAS_PATH, ENROLL_PATH, HEARTBEAT_PATH,
    SNAPSHOTS_PATH,
};
use census_shared::AgentPublicKey;
use chrono::Utc;
use http_body_util::BodyExt;

use crate::http::*;
use crate::ingest::{CpuSlot, Envelope, Ingest, IngestError};
use crate::model::Agent;
use crate::ops::credentials::token_hash;
use crate::people::{Access, RouteTable};
use crate::store::EnrollError;

/// How long a client may take to send a whole body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Every route with who may call it. The router and this table come from one builder.
pub fn route_table(mut t: RouteTable) -> RouteTable {
    t.open("GET", "/healthz", Access::Anonymous, get(healthz))
        .text("text/plain");
    t.open("GET", "/readyz", Access::Anonymous, get(readyz))
        .refuses(&[503])
        .text("text/plain");
    t.open("POST", ENROLL_PATH, Access::Anonymous, post(enroll))
        .body::<EnrollRequest>()
        .refuses(&[401, 403, 409, 413, 415, 422, 503])
        .created::<EnrollResponse>();
    t.open(
        "POST",
        "/api/v1/login",
        Access::Anonymous,
        post(crate::login::login),
    )
    .body::<crate::login::LoginRequest>()
    .refuses(&[401, 413, 415, 422, 429, 503])
    .json::<crate::login::LoginToken>();
    t.open("POST", SNAPSHOTS_PATH, Access::Agent, post(snapshots))
        .headers::<EnvelopeHeaders>()
        .headers::<EncodingHeader>()
        .raw_body("application/json")
        .json::<Ack>();
    t.open("POST", HEARTBEAT_PATH, Access::Agent, post(heartbeat))
        .headers::<EnvelopeHeaders>()
        .body::<Heartbeat>()
        .json::<Ack>();
    t.open("POST", DELTAS_PATH, Access::Agent, post(deltas))
        .headers::<EnvelopeHeaders>()
        .headers::<EncodingHeader>()
        .raw_body("application/json")
        .json::<Ack>();
    crate::changes_api::routes(&mut t);
    crate::query_api::routes(&mut t);
    crate::register_api::routes(&mut t);
    crate::health_api::routes(&mut t);
    crate::vulns_api::routes(&mut t);
    crate::services_api::routes(&mut t);
    crate::map_api::routes(&mut t);
    crate::baselines_api::routes(&mut t);
    crate::software_api::routes(&mut t);
    t.people(
        "GET",
        "/api/v1/openapi.json",
        crate::people::Allowed::AnyPerson,
        get(openapi),
    )
    .text("application/json");
    crate::ui::routes(&mut t);
    t
}

/// The signed envelope every agent request carries (protocol v1, `census_shared::envelope`).
#[derive(utoipa::IntoParams)]
#[allow(dead_code)] // Read from the header map by `envelope_from`; here for the document.
struct EnvelopeHeaders {
    /// The agent's id from enrollment (1 to 128 bytes).
    #[param(rename = "x-census-agent", max_length = 128, min_length = 1)]
    agent: String,
    /// The agent's sequence number: starts at 1, grows by one per accepted request.
    #[param(rename = "x-census-seq", minimum = 1)]
    seq: u64,
    /// Ed25519 over the domain-separated agent id, seq and SHA-256 of the body.
    #[param(rename = "x-census-signature")]
    signature: String,
}

/// How an inventory's body is compressed.
#[derive(utoipa::IntoParams)]
#[allow(dead_code)] // Read from the header map by `inventory`; here for the document.
struct EncodingHeader {
    /// `zstd` for a compressed body (the agent's default); absent or `identity` for plain
    /// JSON.
    #[param(rename = "Content-Encoding", inline)]
    content_encoding: Option<BodyEncoding>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Only described: `ingest` reads the header's text.
enum BodyEncoding {
    #[schema(rename = "zstd")]
    Zstd,
    #[schema(rename = "identity")]
    Identity,
}

pub fn router(state: Arc<AppState>) -> Router {
    route_table(RouteTable::new(
        state.store.clone(),
        crate::ui::session::layer,
    ))
    .into_router()
    .fallback(not_found)
    .layer(axum::middleware::from_fn(
        crate::ui::session::security_headers,
    ))
    .layer(axum::middleware::from_fn(crate::http::json_bodies_only))
    // Outermost: a body any route leaves unread is drained, so its refusal arrives.
    .layer(axum::middleware::from_fn(crate::drain::layer))
    .with_state(state)
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = match &self {
            IngestError::BadRequest(_) => StatusCode::BAD_REQUEST,
            IngestError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            IngestError::Forbidden(_) => StatusCode::FORBIDDEN,
            IngestError::Revoked(m) => {
                return crate::http::typed_problem(
                    census_shared::protocol::PROBLEM_AGENT_REVOKED,
                    StatusCode::FORBIDDEN,
                    m.clone(),
                    None,
                )
            }
            IngestError::Superseded(m) => {
                return crate::http::typed_problem(
                    census_shared::protocol::PROBLEM_AGENT_SUPERSEDED,
                    StatusCode::FORBIDDEN,
                    m.clone(),
                    None,
                )
            }
            IngestError::Conflict(_) => StatusCode::CONFLICT,
            IngestError::BaseMismatch(m) => {
                return crate::http::typed_problem(
                    census_shared::protocol::PROBLEM_DELTA_BASE_MISMATCH,
                    StatusCode::CONFLICT,
                    m.clone(),
                    Some("base_seq".into()),
                )
            }
            IngestError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngestError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            IngestError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let field = match &self {
            IngestError::Unprocessable { field, .. } => field.clone(),
            _ => None,
        };
        problem(status, self.to_string(), field)
    }
}

/// The OpenAPI document of the routes this collector serves (`census-collector openapi`,
/// and `GET /api/v1/openapi.json`).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    crate::openapi::document(&route_table(RouteTable::listing()).entries)
}

async fn openapi(
    axum::Extension(_person): axum::Extension<crate::people::Person>,
) -> Result<Response, ApiProblem> {
    let text = openapi_document()
        .to_json()
        .map_err(|e| ApiProblem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None))?;
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

async fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, "no such route", None)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    let store = st.store.clone();
    match tokio::task::spawn_blocking(move || store.check_writable()).await {
        Ok(Ok(())) => "ready".into_response(),
        Ok(Err(e)) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store not writable: {e}"),
            None,
        ),
        Err(e) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("readiness check failed: {e}"),
            None,
        ),
    }
}

/// Reads a body of at most `limit` bytes: refuses early on Content-Length, and stops
/// reading (never buffering more than the limit) when a chunked body runs over.
pub(crate) async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<bytes::Bytes, IngestError> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(IngestError::PayloadTooLarge(format!(
                "body of {len} bytes exceeds the limit of {limit} bytes"
            )));
        }
    }
    let limited = http_body_util::Limited::new(body, limit);
    match tokio::time::timeout(BODY_READ_TIMEOUT, limited.collect()).await {
        Err(_) => Err(IngestError::BadRequest(format!(
            "body not received within {}s",
            BODY_READ_TIMEOUT.as_secs()
        ))),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(
            IngestError::PayloadTooLarge(format!("body exceeds the limit of {limit} bytes")),
        ),
        Ok(Err(e)) => Err(IngestError::BadRequest(format!("could not read body: {e}"))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

fn envelope_from(headers: &HeaderMap) -> Result<Envelope, IngestError> {
    let get = |name: &str| -> Result<String, IngestError> {
        let v = headers
            .get(name)
            .ok_or_else(|| IngestError::Unauthorized(format!("missing {name} header")))?;
        v.to_str()
            .map(|s| s.trim().to_string())
            .map_err(|_| IngestError::BadRequest(format!("{name} header is not ASCII")))
    };
    let agent_id = get(HEADER_AGENT_ID)?;
    if agent_id.is_empty() || agent_id.len() > MAX_AGENT_ID_BYTES {
        return Err(IngestError::BadRequest(format!(
            "{HEADER_AGENT_ID} must be 1 to {MAX_AGENT_ID_BYTES} bytes"
        )));
    }
    let seq = get(HEADER_SEQ)?.parse::<u64>().map_err(|_| {
        IngestError::BadRequest(format!("{HEADER_SEQ} must be an unsigned integer"))
    })?;
    if seq == 0 {
        return Err(IngestError::BadRequest(format!("{HEADER_SEQ} starts at 1")));
    }
    Ok(Envelope {
        agent_id,
        seq,
        signature: get(HEADER_SIGNATURE)?,
    })
}

/// One admitted submission; dropping it frees the slot.
struct Admission<'a>(&'a AtomicUsize);

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        let before = self.0.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!("census_ingest_admitted").set(before.saturating_sub(1) as f64);
    }
}

impl AppState {
    fn admit(&self) -> Result<Admission<'_>, IngestError> {
        let before = self.admitted.fetch_add(1, Ordering::SeqCst);
        metrics::gauge!("census_ingest_admitted").set((before + 1) as f64);
        let slot = Admission(&self.admitted);
        if before >= self.max_admitted {
            drop(slot);
            return Err(IngestError::Unavailable(
                "collector is saturated; retry later".into(),
            ));
        }
        Ok(slot)
    }
}

fn saturated(e: IngestError) -> Response {
    match e {
        IngestError::Unavailable(m) if m.contains("saturated") => {
            problem(StatusCode::TOO_MANY_REQUESTS, m, None)
        }
        other => other.into_response(),
    }
}

/// A snapshot's ingest (milliseconds of decoding and planning) on the blocking pool,
/// bounded by the worker permits.
async fn run_ingest<F>(st: &Arc<AppState>, route: &'static str, work: F) -> Response
where
    F: FnOnce(&Ingest, CpuSlot) -> Result<crate::ingest::Accepted, IngestError> + Send + 'static,
{
    let started = std::time::Instant::now();
    let permit = match st.workers.clone().acquire_owned().await {
        Ok(p) => p,
        Err(_) => {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "collector is shutting down",
                None,
            )
        }
    };
    let ingest = st.ingest.clone();
    let result = tokio::task::spawn_blocking(move || work(&ingest, CpuSlot::held(permit))).await;
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("ingest task failed: {e}"),
                None,
            )
        }
    };
    // On PostgreSQL the commit was durable when it returned: a group flush round would only
    // add two thread hand-offs to every answer.
    let durable = if st.store.durable_commits() {
        Durable::Already
    } else {
        Durable::AfterFlush
    };
    finish_ingest(st, route, started, result, durable).await
}

/// Whether an accepted submission still waits for the group flush.
enum Durable {
    AfterFlush,
    Already,
}

/// The common tail of the signed routes: a refusal is counted and answered; an accepted
/// submission is answered once it is durable (after the group flush, unless its own
/// commit was).
async fn finish_ingest(
    st: &AppState,
    route: &'static str,
    started: std::time::Instant,
    result: Result<crate::ingest::Accepted, IngestError>,
    durable: Durable,
) -> Response {
    let accepted = match result {
        Ok(a) => a,
        Err(e) => {
            tracing::info!(reason = e.reason(), detail = %e, "submission refused");
            count_refusal(route, e.reason());
            return e.into_response();
        }
    };
    if let Durable::AfterFlush = durable {
        let ticket = st.group.ticket();
        if let Err(e) = st.group.wait_durable(ticket).await {
            count_refusal(route, e.reason());
            return e.into_response();
        }
    }
    st.pacer.accepted();
    let changed = if accepted.changed { "true" } else { "false" };
    metrics::counter!("census_ingest_accepted_total", "route" => route, "changed" => changed)
        .increment(1);
    metrics::histogram!("census_ingest_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    Json(accepted.ack).into_response()
}

/// The common front of both signed routes: envelope headers, an admission slot, and the
/// body read up to `limit` bytes. Refusals come back as ready responses.
async fn accept_signed<'a>(
    st: &'a AppState,
    route: &'static str,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<(Envelope, Admission<'a>, bytes::Bytes), Response> {
    let env = envelope_from(headers).map_err(|e| {
        count_refusal(route, e.reason());
        e.into_response()
    })?;
    let slot = st.admit().map_err(|e| {
        count_refusal(route, "saturated");
        saturated(e)
    })?;
    if let Err(paced) = st.pacer.admit() {
        count_refusal(route, "paced");
        let mut r = problem(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "the collector is pacing submissions after a burst; retry in {} s",
                paced.retry_after_seconds
            ),
            None,
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(paced.retry_after_seconds),
        );
        return Err(r);
    }
    let bytes = read_limited(headers, body, limit).await.map_err(|e| {
        count_refusal(route, e.reason());
        e.into_response()
    })?;
    Ok((env, slot, bytes))
}

fn count_refusal(route: &'static str, reason: &'static str) {
    metrics::counter!("census_ingest_refused_total", "route" => route, "reason" => reason)
        .increment(1);
}

/// What an inventory route runs: [`Ingest::snapshot`] or [`Ingest::delta`].
type IngestInventory = fn(
    &Ingest,
    &Envelope,
    Option<&str>,
    &[u8],
    chrono::DateTime<Utc>,
    CpuSlot,
) -> Result<crate::ingest::Accepted, IngestError>;

/// A signed inventory, whole or as a delta: admission, body, then the ingest off the
/// async workers.
async fn inventory(
    st: Arc<AppState>,
    route: &'static str,
    headers: HeaderMap,
    body: Body,
    ingest_inventory: IngestInventory,
) -> Response {
    let (env, _slot, bytes) = match accept_signed(&st, route, &headers, body, MAX_BODY_BYTES).await
    {
        Ok(accepted) => accepted,
        Err(refusal) => return refusal,
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    run_ingest(&st, route, move |ingest, slot| {
        ingest_inventory(ingest, &env, encoding.as_deref(), &bytes, Utc::now(), slot)
    })
    .await
}

async fn snapshots(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    inventory(st, "snapshot", headers, body, Ingest::snapshot).await
}

async fn deltas(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    inventory(st, "delta", headers, body, Ingest::delta).await
}

async fn heartbeat(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let (env, _slot, bytes) =
        match accept_signed(&st, "heartbeat", &headers, body, MAX_HEARTBEAT_BYTES).await {
            Ok(accepted) => accepted,
            Err(refusal) => return refusal,
        };
    // Its signature is checked here with the agent's cached key (tens of microseconds); the
    // first heartbeat of an agent this process has not seen reads the agent's key, on a
    // blocking thread when that is a round trip away (regression: on PostgreSQL the read
    // held an async worker, and two workers let two heartbeats in at a time). Its agent's
    // record is then read, and it is committed, with whatever other heartbeats are waiting.
    let started = std::time::Instant::now();
    let checked = if st.store.remote() && !st.ingest.knows_key(&env.agent_id) {
        let ingest = st.ingest.clone();
        tokio::task::spawn_blocking(move || ingest.sign_check_heartbeat(&env, &bytes, Utc::now()))
            .await
            .unwrap_or_else(|e| {
                Err(IngestError::Unavailable(format!(
                    "the heartbeat check stopped: {e}"
                )))
            })
    } else {
        st.ingest.sign_check_heartbeat(&env, &bytes, Utc::now())
    };
    let result = match checked {
        Ok(signed) => st.heartbeats.commit(signed).await,
        Err(e) => Err(e),
    };
    // The heartbeat committer's transaction is durable: no group flush to wait for.
    finish_ingest(&st, "heartbeat", started, result, Durable::Already).await
}

async fn enroll(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let bytes = match read_limited(&headers, body, MAX_ENROLL_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let req: EnrollRequest = match serde_path_to_error_free(&mut de) {
        Ok(r) => r,
        Err((path, msg)) => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{path}: {msg}"),
                Some(path),
            )
        }
    };
    let key = match AgentPublicKey::from_text(&req.public_key) {
        Ok(k) => k,
        Err(e) => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("public_key: {e}"),
                Some("public_key".into()),
            )
        }
    };
    for (field, value) in [
        ("agent_version", &req.agent_version),
        ("facts.hostname", &req.facts.hostname),
    ] {
        if value.len() > census_shared::limits::MAX_STRING_BYTES {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "{field}: longer than {} bytes",
                    census_shared::limits::MAX_STRING_BYTES
                ),
                Some(field.into()),
            );
        }
    }
    let now = Utc::now();
    let agent = Agent::enrolled(
        format!("agt_{}", hex::encode(rand::random::<[u8; 10]>())),
        key.to_text(),
        req.agent_version.clone(),
        req.facts.clone(),
        now,
    );
    let store = st.store.clone();
    let secret_hash = token_hash(&req.token);
    let agent_for_store = agent.clone();
    let result =
        tokio::task::spawn_blocking(move || store.enroll(&secret_hash, &agent_for_store, now))
            .await;
    match result {
        Ok(Ok(())) => {
            tracing::info!(agent_id = %agent.id, hostname = %req.facts.hostname, key = %key.fingerprint(), "agent enrolled");
            (
                StatusCode::CREATED,
                Json(EnrollResponse {
                    agent_id: agent.id,
                    server_time: now,
                }),
            )
                .into_response()
        }
        Ok(Err(e)) => {
            let status = match e {
                EnrollError::UnknownToken | EnrollError::Expired(_) => StatusCode::UNAUTHORIZED,
                EnrollError::Revoked | EnrollError::Exhausted(_) => StatusCode::FORBIDDEN,
                EnrollError::KeyInUse(_) => StatusCode::CONFLICT,
                EnrollError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            tracing::info!(reason = %e, "enrollment refused");
            problem(status, e.to_string(), None)
        }
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None),
    }
}

/// JSON decoding that names the failing path.
fn serde_path_to_error_free<'de, T: serde::Deserialize<'de>>(
    de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'de>>,
) -> Result<T, (String, String)> {
    let v: T = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        (
            if path == "." { "body".into() } else { path },
            e.into_inner().to_string(),
        )
    })?;
    de.end().map_err(|e| ("body".to_string(), e.to_string()))?;
    Ok(v)
}
