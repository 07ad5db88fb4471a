//! The web UI's session: a cookie that carries the same kind of token an API client
//! sends as a bearer token, a CSRF token derived from it, and the layer every UI route
//! goes through.
//!
//! Architecture Invariant: the session cookie authorizes only `/ui` routes (API routes
//! read only `Authorization`), and no state-changing UI request runs without a matching
//! CSRF token: the check is in this layer, not in each handler.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

use crate::ops::credentials::same_digest;
use crate::people::{authenticate_token, forbidden, Allowed, Person, Route};
use crate::store::Store;

/// `__Host-` pins the cookie to this origin: Secure, Path=/ and no Domain are required.
pub const SESSION_COOKIE: &str = "__Host-census_session";
/// Double-submit cookie guarding the login form itself (there is no session yet).
pub const LOGIN_COOKIE: &str = "__Host-census_login";
/// Largest form a UI POST may send.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// UI routes that take a file (multipart/form-data). Their body goes to the handler
/// unread (it enforces its own limit) and their CSRF token comes in the query string
/// (`?csrf=`), checked here like a form's: the file may be megabytes, the form layer
/// reads 64 KiB.
pub const UPLOAD_PATHS: &[&str] = &["/ui/register/import"];

fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(crate::http::media_type_essence)
        .is_some_and(|e| e == "multipart/form-data")
}

/// The signed-in person's CSRF token, for templates.
#[derive(Debug, Clone)]
pub struct Session {
    pub csrf: String,
}

/// Derived, not stored: only a holder of the (HttpOnly) session secret can compute it.
pub fn csrf_for(session_text: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"census-ui-csrf\0");
    h.update(session_text.as_bytes());
    hex::encode(&h.finalize()[..20])
}

pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub fn set_cookie(name: &str, value: &str, max_age_seconds: i64) -> HeaderValue {
    let text = format!(
        "{name}={value}; Path=/; Max-Age={max_age_seconds}; HttpOnly; Secure; SameSite=Strict"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Where a request without a valid session goes: the login page, remembering a GET's
/// target (same-site path only).
fn to_login(req: &Request) -> Response {
    let next = if req.method() == Method::GET {
        req.uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let location = if next.starts_with("/ui") {
        format!("/ui/login?next={}", super::pages::url_encode(&next))
    } else {
        "/ui/login".into()
    };
    super::redirect(&location)
}

/// A browser marks cross-site requests; refuse those outright (SameSite=Strict already
/// keeps the cookie off them, this also stops a forged login).
pub fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
}

/// Reads a form body under [`MAX_FORM_BYTES`].
pub async fn read_form_bytes(body: Body) -> Result<Bytes, Response> {
    match http_body_util::Limited::new(body, MAX_FORM_BYTES)
        .collect()
        .await
    {
        Ok(b) => Ok(b.to_bytes()),
        Err(_) => Err(super::error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the form is larger than {MAX_FORM_BYTES} bytes"),
        )),
    }
}

pub fn form_field(bytes: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// The layer on every UI route: session -> person, role, and for POST the CSRF token.
pub async fn require(
    State((store, allowed)): State<(Arc<dyn Store>, Allowed)>,
    req: Request,
    next: Next,
) -> Response {
    let Some(text) = cookie(req.headers(), SESSION_COOKIE).map(str::to_string) else {
        return to_login(&req);
    };
    let lookup = text.clone();
    let person: Result<Person, _> = match tokio::task::spawn_blocking(move || {
        authenticate_token(store.as_ref(), &lookup, Utc::now())
    })
    .await
    {
        Ok(r) => r,
        Err(e) => return super::error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let person = match person {
        Ok(p) => p,
        Err(p) if p.status == StatusCode::UNAUTHORIZED => return to_login(&req),
        Err(p) => return super::error_page(p.status, &p.detail),
    };
    if !allowed.permits(person.role) {
        let p = forbidden(&person, allowed);
        return super::error_page(p.status, &p.detail);
    }
    let csrf = csrf_for(&text);
    let (mut parts, body) = req.into_parts();
    let body = if parts.method == Method::POST {
        if cross_site(&parts.headers) {
            return super::error_page(
                StatusCode::FORBIDDEN,
                "cross-site form submissions are refused",
            );
        }
        let upload = UPLOAD_PATHS.contains(&parts.uri.path()) && is_multipart(&parts.headers);
        let (sent, body) = if upload {
            let sent = parts
                .uri
                .query()
                .and_then(|q| form_field(q.as_bytes(), "csrf"))
                .unwrap_or_default();
            (sent, body)
        } else {
            let bytes = match read_form_bytes(body).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            (
                form_field(&bytes, "csrf").unwrap_or_default(),
                Body::from(bytes),
            )
        };
        if !same_digest(&sent, &csrf) {
            tracing::warn!(user = %person.name, path = %parts.uri.path(), "ui form refused: CSRF token missing or wrong");
            return super::error_page(
                StatusCode::FORBIDDEN,
                "this form's security token is missing or out of date; reload the page and submit again",
            );
        }
        body
    } else {
        body
    };
    parts.extensions.insert(person);
    parts.extensions.insert(Session { csrf });
    next.run(Request::from_parts(parts, body)).await
}

/// Headers every response carries; UI pages get a strict Content-Security-Policy (no
/// inline script or style, nothing from other origins, no framing).
pub async fn security_headers(req: Request, next: Next) -> Response {
    let ui = req.uri().path().starts_with("/ui");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let csp = if ui {
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    } else {
        "default-src 'none'; frame-ancestors 'none'"
    };
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    if ui && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp.into_response()
}

/// The session layer around one web UI route (what `RouteTable::new` is given).
pub fn layer(route: Route, store: Arc<dyn Store>, allowed: Allowed) -> Route {
    route.route_layer(axum::middleware::from_fn_with_state(
        (store, allowed),
        require,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_depends_on_the_session_and_compares_whole() {
        let a = csrf_for("census_pat.pat_1.aaaa");
        assert_eq!(a, csrf_for("census_pat.pat_1.aaaa"));
        assert_ne!(a, csrf_for("census_pat.pat_1.aaab"));
        assert!(same_digest(&a, &a.clone()));
        assert!(!same_digest(&a, &a[..a.len() - 1]));
    }

    #[test]
    fn cookie_is_found_among_others_and_not_by_prefix() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static(
                "a=1; __Host-census_session_x=evil; __Host-census_session=tok",
            ),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, "missing"), None);
    }

    #[test]
    fn session_cookie_is_httponly_secure_strict() {
        let v = set_cookie(SESSION_COOKIE, "t", 60);
        let s = v.to_str().unwrap();
        for part in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(s.contains(part), "{s}");
        }
    }

    #[test]
    fn form_field_decodes_and_picks_by_name() {
        assert_eq!(
            form_field(b"a=1&csrf=ab%2Bc&comment=x+y", "csrf").as_deref(),
            Some("ab+c")
        );
        assert_eq!(form_field(b"a=1", "csrf"), None);
    }
}
