//! Other tools' agent protocols, served on a listener of its own so an existing fleet can
//! report to Census during a migration. The OCS protocol (OCS and FusionInventory agents):
//! POST `/ocsinventory` (or `/`) with zlib-compressed XML, PROLOG first (answered SEND),
//! then INVENTORY (imported as `census-collector import` does, answered
//! `no_account_update` once durable). The GLPI agent's protocol, on the same paths and
//! `/front/inventory.php`: JSON (plain, zlib or gzip), a CONTACT answered with the
//! inventory task, then `"action": "inventory"`. Off unless `serve --compat-listen` is
//! given.
//!
//! These inventories are unsigned, so a request is accepted only from an allow-listed
//! network or with the shared secret as an HTTP Basic password, and every limit of the
//! native ingest applies (8 MiB compressed, 64 MiB inflated, the XML reader's and the
//! snapshot's limits). What an agent sends through here is an import source's: it can
//! never take over a computer a Census agent reports.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use crate::drift::rules::Cidr;
use crate::foreign::ocs::Format;
use crate::http::AppState;

/// Who may report through the compatibility listener.
#[derive(Debug, Clone, Default)]
pub struct CompatConfig {
    /// The HTTP Basic password agents are configured with (any user name).
    pub secret: Option<String>,
    /// Networks whose agents need no secret.
    pub allow: Vec<Cidr>,
}

impl CompatConfig {
    /// Refuses a configuration that would accept anyone.
    pub fn check(&self) -> Result<(), String> {
        if self.secret.is_none() && self.allow.is_empty() {
            return Err(
                "the OCS-protocol listener accepts unsigned inventories: give \
                --compat-secret-file, --compat-allow CIDR, or both"
                    .into(),
            );
        }
        if self.secret.as_deref().is_some_and(|s| s.len() < 16) {
            return Err("the compatibility secret is shorter than 16 bytes".into());
        }
        Ok(())
    }

    fn admits(&self, peer: IpAddr, headers: &HeaderMap) -> bool {
        if self.allow.iter().any(|c| c.contains(peer)) {
            return true;
        }
        let Some(secret) = &self.secret else {
            return false;
        };
        basic_password(headers).is_some_and(|given| same_secret(&given, secret))
    }
}

/// The password of an `Authorization: Basic` header.
fn basic_password(headers: &HeaderMap) -> Option<String> {
    use base64::Engine;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split_once(':')?.1.to_string())
}

/// Compares digests, so the time taken says nothing about where the texts differ.
fn same_secret(given: &str, secret: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(secret.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

pub fn router(state: Arc<AppState>, config: Arc<CompatConfig>) -> Router {
    Router::new()
        .route("/ocsinventory", post(receive))
        .route("/front/inventory.php", post(receive))
        .route("/", post(receive))
        .with_state((state, config))
}

/// The XML reply agents read, zlib-compressed as they send.
fn reply(body: &str) -> Response {
    let xml = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<REPLY>{body}</REPLY>\n");
    packed(
        StatusCode::OK,
        &xml,
        Packing::Zlib,
        "application/x-compress",
    )
}

/// Counts and logs a refusal of either protocol.
fn count_refusal(status: StatusCode, message: &str, protocol: &str) {
    metrics::counter!("census_compat_refused_total", "status" => status.as_str().to_string())
        .increment(1);
    tracing::info!(status = status.as_u16(), detail = %message, protocol, "agent-protocol request refused");
}

fn refuse(status: StatusCode, message: String) -> Response {
    count_refusal(status, &message, "ocs");
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
        message,
    )
        .into_response()
}

/// How a body came (and its answer goes): OCS and FusionInventory agents send zlib; the
/// GLPI agent zlib, gzip or plain JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Packing {
    Plain,
    Zlib,
    Gzip,
}

/// Inflates a body to at most the native ingest's decompressed limit; an uncompressed XML
/// or JSON body (some agents' debug mode, the GLPI agent without Compress::Zlib) is taken
/// as it is.
fn inflate(body: &[u8]) -> Result<(Vec<u8>, Packing), String> {
    let limit = census_shared::limits::MAX_DECOMPRESSED_BYTES;
    let start = body.trim_ascii_start();
    if start.starts_with(b"<") || start.starts_with(b"{") {
        return Ok((body.to_vec(), Packing::Plain));
    }
    let mut out = Vec::new();
    let (read, packing) = if body.starts_with(&[0x1f, 0x8b]) {
        (
            flate2::read::GzDecoder::new(body)
                .take(limit as u64 + 1)
                .read_to_end(&mut out),
            Packing::Gzip,
        )
    } else {
        (
            flate2::read::ZlibDecoder::new(body)
                .take(limit as u64 + 1)
                .read_to_end(&mut out),
            Packing::Zlib,
        )
    };
    read.map_err(|e| format!("the body is neither XML, JSON nor zlib or gzip of them: {e}"))?;
    if out.len() > limit {
        return Err(format!("the body inflates past {limit} bytes"));
    }
    Ok((out, packing))
}

/// `text` packed as `packing` says; `zlib_type` is the media type the protocol gives zlib.
fn packed(status: StatusCode, text: &str, packing: Packing, zlib_type: &'static str) -> Response {
    use std::io::Write;
    let (bytes, kind) = match packing {
        Packing::Plain => (Ok(text.as_bytes().to_vec()), "application/json"),
        Packing::Zlib => {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            (
                z.write_all(text.as_bytes()).and_then(|_| z.finish()),
                zlib_type,
            )
        }
        Packing::Gzip => {
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            (
                z.write_all(text.as_bytes()).and_then(|_| z.finish()),
                "application/x-compress-gzip",
            )
        }
    };
    match bytes {
        Ok(b) => (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(kind))],
            b,
        )
            .into_response(),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("reply: {e}")),
    }
}

/// A GLPI-protocol answer (JSON), packed as the request was.
fn answer(status: StatusCode, json: serde_json::Value, packing: Packing) -> Response {
    packed(
        status,
        &json.to_string(),
        packing,
        "application/x-compress-zlib",
    )
}

/// A GLPI-protocol refusal: the status, and the reason as the agent logs it.
fn refuse_json(status: StatusCode, message: String, packing: Packing) -> Response {
    count_refusal(status, &message, "glpi");
    answer(
        status,
        serde_json::json!({"status": "error", "message": message}),
        packing,
    )
}

async fn receive(
    State((st, config)): State<(Arc<AppState>, Arc<CompatConfig>)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The body is read (within its limit) before the credentials are looked at: an agent
    // sends its inventory before it has seen the challenge, and a connection closed under
    // its write fails the retry that carries them.
    let bytes =
        match crate::api::read_limited(&headers, body, census_shared::limits::MAX_BODY_BYTES).await
        {
            Ok(b) => b,
            Err(e) => return e.into_response(),
        };
    if !config.admits(peer.ip(), &headers) {
        let mut r = refuse(
            StatusCode::UNAUTHORIZED,
            format!(
                "{} is not an allowed network and gave no valid secret",
                peer.ip()
            ),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"census\""),
        );
        return r;
    }
    let (xml, packing) = match inflate(&bytes) {
        Ok(x) => x,
        Err(m) => return refuse(StatusCode::BAD_REQUEST, m),
    };
    if xml.trim_ascii_start().starts_with(b"{") {
        return glpi(&st, peer, xml, packing).await;
    }
    // What the request asks, before the whole inventory is mapped.
    let doc = match crate::foreign::xml::parse(&xml, crate::foreign::xml::Limits::default()) {
        Ok(d) => d,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match doc.text_of("QUERY") {
        Some("PROLOG") => return reply("<RESPONSE>SEND</RESPONSE><PROLOG_FREQ>24</PROLOG_FREQ>"),
        Some("INVENTORY") => {}
        other => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "QUERY {:?} is not served here (PROLOG and INVENTORY are)",
                    other.map(|q| q.chars().take(32).collect::<String>())
                ),
            )
        }
    }
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = if agent.contains("FusionInventory")
        || doc
            .child("CONTENT")
            .and_then(|c| c.text_of("VERSIONCLIENT"))
            .is_some_and(|v| v.contains("FusionInventory"))
    {
        Format::FusionInventory
    } else {
        Format::Ocs
    };
    match import(&st, peer, format, doc).await {
        Ok(_) => reply("<RESPONSE>no_account_update</RESPONSE>"),
        Err((status, message)) => refuse(status, message),
    }
}

/// Imports one inventory received over either protocol, answering once what it changed
/// is durable. A machine a Census agent reports is skipped, and the agent is still told
/// the inventory was taken: there is nothing it could change.
async fn import(
    st: &Arc<AppState>,
    peer: SocketAddr,
    format: Format,
    doc: crate::foreign::xml::Node,
) -> Result<crate::ops::foreign::FileOutcome, (StatusCode, String)> {
    use crate::ops::foreign::Outcome;
    let permit = st
        .workers
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| (StatusCode::SERVICE_UNAVAILABLE, "shutting down".to_string()))?;
    let (store, ingest) = (st.store.clone(), st.ingest.clone());
    let name = format!("{} via an agent protocol", peer.ip());
    let outcome = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let parsed = crate::foreign::ocs::map(&doc, format);
        crate::ops::foreign::import_parsed(store.as_ref(), &ingest, format, &name, parsed, false)
    })
    .await
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    match outcome.outcome {
        Outcome::Failed => {
            return Err((
                StatusCode::BAD_REQUEST,
                outcome.reason.clone().unwrap_or_default(),
            ))
        }
        Outcome::Skipped => {
            tracing::info!(peer = %peer.ip(), device_id = ?outcome.device_id, reason = ?outcome.reason, "agent-protocol inventory skipped");
        }
        _ => {
            if !st.store.durable_commits() {
                let ticket = st.group.ticket();
                st.group
                    .wait_durable(ticket)
                    .await
                    .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
            }
            tracing::info!(peer = %peer.ip(), device_id = ?outcome.device_id, ci_id = ?outcome.ci_id, outcome = ?outcome.outcome, "agent-protocol inventory imported");
        }
    }
    metrics::counter!("census_compat_inventories_total").increment(1);
    Ok(outcome)
}

/// The GLPI agent's protocol: a CONTACT asks which tasks to run (inventory), then the
/// inventory comes as JSON (`"action": "inventory"`).
async fn glpi(st: &Arc<AppState>, peer: SocketAddr, body: Vec<u8>, packing: Packing) -> Response {
    // Read once, within the limits, into the tree the mapping takes.
    let doc = match crate::foreign::glpi::to_tree(&body, crate::foreign::xml::Limits::default()) {
        Ok(d) => d,
        Err(e) => return refuse_json(StatusCode::BAD_REQUEST, e.to_string(), packing),
    };
    drop(body);
    let action = doc.text_of("ACTION").map(str::to_ascii_lowercase);
    match action.as_deref() {
        Some("contact") => answer(
            StatusCode::OK,
            serde_json::json!({
                "status": "ok",
                "expiration": 24,
                "tasks": {"inventory": {"server": "census", "version": env!("CARGO_PKG_VERSION")}},
            }),
            packing,
        ),
        Some("inventory") => match import(st, peer, Format::Glpi, doc).await {
            Ok(_) => answer(
                StatusCode::OK,
                serde_json::json!({"status": "ok", "expiration": 24}),
                packing,
            ),
            Err((status, message)) => refuse_json(status, message, packing),
        },
        Some(other) => refuse_json(
            StatusCode::BAD_REQUEST,
            format!(
                "action {:?} is not served here (contact and inventory are)",
                other.chars().take(32).collect::<String>()
            ),
            packing,
        ),
        None => refuse_json(
            StatusCode::BAD_REQUEST,
            "not a GLPI agent message: JSON with an \"action\"".into(),
            packing,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> HeaderMap {
        use base64::Engine;
        let mut h = HeaderMap::new();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {token}")).unwrap(),
        );
        h
    }

    #[test]
    fn a_listener_that_would_accept_anyone_is_refused() {
        assert!(CompatConfig::default()
            .check()
            .unwrap_err()
            .contains("unsigned"));
        let short = CompatConfig {
            secret: Some("short".into()),
            allow: Vec::new(),
        };
        assert!(short.check().unwrap_err().contains("shorter than 16"));
    }

    #[test]
    fn an_allowed_network_or_the_secret_is_admitted_and_nothing_else() {
        let c = CompatConfig {
            secret: Some("a-long-shared-secret".into()),
            allow: vec![Cidr::parse("10.1.0.0/16").unwrap()],
        };
        c.check().unwrap();
        let inside: IpAddr = "10.1.2.3".parse().unwrap();
        let outside: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(c.admits(inside, &HeaderMap::new()));
        assert!(!c.admits(outside, &HeaderMap::new()));
        assert!(c.admits(outside, &basic("any", "a-long-shared-secret")));
        assert!(!c.admits(outside, &basic("any", "a-long-shared-secreT")));
        assert!(!c.admits(outside, &basic("a-long-shared-secret", "")));
        let mut garbage = HeaderMap::new();
        garbage.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic %%%"));
        assert!(!c.admits(outside, &garbage));
    }

    #[test]
    fn bodies_inflate_within_the_limit_or_are_refused() {
        use std::io::Write;
        assert_eq!(inflate(b"  <REQUEST/>").unwrap().0, b"  <REQUEST/>");
        assert_eq!(inflate(b"{}").unwrap(), (b"{}".to_vec(), Packing::Plain));
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(b"<REQUEST/>").unwrap();
        assert_eq!(
            inflate(&z.finish().unwrap()).unwrap(),
            (b"<REQUEST/>".to_vec(), Packing::Zlib)
        );
        let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        g.write_all(b"{\"action\": \"contact\"}").unwrap();
        assert_eq!(inflate(&g.finish().unwrap()).unwrap().1, Packing::Gzip);
        assert!(inflate(b"\x00garbage")
            .unwrap_err()
            .contains("neither XML, JSON"));
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&vec![
            0u8;
            census_shared::limits::MAX_DECOMPRESSED_BYTES + 1
        ])
        .unwrap();
        assert!(inflate(&z.finish().unwrap())
            .unwrap_err()
            .contains("inflates past"));
    }
}
