//! The web UI for asset and change managers: server-rendered askama templates, htmx
//! (vendored into the binary) for in-place search, no CDN, usable without JavaScript.
//!
//! Architecture Invariant: the UI is another client of the same read models and people's
//! writes as the API (`query::views`, `ops::changes::review`, `admin::execute`, ...); it
//! has no store access of its own beyond reads, and every write it makes is audited
//! under the signed-in person's name. Every value shown is escaped by askama.

pub mod actions;
pub mod baselines;
pub mod chart;
pub mod map;
pub mod pages;
pub mod session;
pub mod titles;
pub mod vulns;

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

use crate::http::{ApiProblem, AppState};
use crate::login::{password_login, LoginOutcome, LOGIN_FAILED_MESSAGE, SESSION_HOURS};
use crate::model::Role;
use crate::people::{Access, Allowed, Person, RouteTable};
use session::{Session, LOGIN_COOKIE, SESSION_COOKIE};

const HTMX_JS: &[u8] = include_bytes!("../../assets/htmx.min.js");
const CENSUS_CSS: &[u8] = include_bytes!("../../assets/census.css");
const CENSUS_JS: &[u8] = include_bytes!("../../assets/census.js");

const CHANGE_MANAGER: Allowed = Allowed::Roles(&[Role::ChangeManager]);
pub(crate) const ADMIN: Allowed = Allowed::Roles(&[Role::Admin]);
const RULE_EDITORS: Allowed = Allowed::Roles(&[Role::Admin, Role::ChangeManager]);
const AUDIT_READERS: Allowed = Allowed::Roles(&[Role::Admin, Role::Auditor]);

pub fn routes(t: &mut RouteTable) {
    t.open("GET", "/ui/login", Access::Anonymous, get(login_page))
        .text("text/html");
    t.open("POST", "/ui/login", Access::Anonymous, post(login_submit))
        .text("text/html");
    t.open("GET", "/ui/assets/{file}", Access::Anonymous, get(asset))
        .text("application/javascript");
    t.ui("POST", "/ui/logout", Allowed::AnyPerson, post(logout));
    t.ui("GET", "/ui", Allowed::AnyPerson, get(pages::dashboard));
    t.ui(
        "GET",
        "/ui/computers",
        Allowed::AnyPerson,
        get(pages::computers),
    );
    t.ui(
        "GET",
        "/ui/software",
        Allowed::AnyPerson,
        get(pages::software),
    );
    t.ui(
        "GET",
        "/ui/software/titles",
        Allowed::AnyPerson,
        get(titles::titles),
    );
    t.ui("GET", "/ui/cis/{id}", Allowed::AnyPerson, get(pages::ci));
    t.ui(
        "POST",
        "/ui/register/records",
        crate::register_api::REGISTER_EDITORS,
        post(actions::create_record),
    );
    t.ui(
        "GET",
        "/ui/licences",
        Allowed::AnyPerson,
        get(pages::licences),
    );
    t.ui(
        "POST",
        "/ui/licences",
        crate::register_api::REGISTER_EDITORS,
        post(actions::create_licence),
    );
    t.ui(
        "GET",
        "/ui/licences/{id}",
        Allowed::AnyPerson,
        get(pages::licence),
    );
    t.ui(
        "POST",
        "/ui/licences/{id}/delete",
        crate::register_api::REGISTER_EDITORS,
        post(actions::delete_licence),
    );
    t.ui(
        "POST",
        "/ui/cis/{id}/register",
        crate::register_api::REGISTER_EDITORS,
        post(actions::edit_register),
    );
    t.ui("GET", "/ui/health", Allowed::AnyPerson, get(pages::health));
    t.ui("GET", "/ui/map", Allowed::AnyPerson, get(map::map));
    t.ui(
        "GET",
        "/ui/map/endpoints",
        Allowed::AnyPerson,
        get(map::endpoints),
    );
    t.ui(
        "GET",
        "/ui/baselines",
        Allowed::AnyPerson,
        get(baselines::list),
    );
    t.ui(
        "GET",
        "/ui/baselines/{id}",
        Allowed::AnyPerson,
        get(baselines::show),
    );
    t.ui("GET", "/ui/vulns", Allowed::AnyPerson, get(vulns::fleet));
    t.ui(
        "GET",
        "/ui/vulns/{id}",
        Allowed::AnyPerson,
        get(vulns::advisory),
    );
    t.ui(
        "GET",
        "/ui/cis/{id}/vulns",
        Allowed::AnyPerson,
        get(vulns::host),
    );
    t.ui(
        "GET",
        "/ui/services",
        Allowed::AnyPerson,
        get(pages::services),
    );
    t.ui(
        "POST",
        "/ui/services",
        crate::services_api::SERVICE_EDITORS,
        post(actions::create_service),
    );
    t.ui(
        "GET",
        "/ui/services/{id}",
        Allowed::AnyPerson,
        get(pages::service),
    );
    t.ui(
        "POST",
        "/ui/services/{id}",
        crate::services_api::SERVICE_EDITORS,
        post(actions::update_service),
    );
    t.ui(
        "POST",
        "/ui/services/{id}/delete",
        crate::services_api::SERVICE_EDITORS,
        post(actions::delete_service),
    );
    t.ui(
        "POST",
        "/ui/health/settings",
        ADMIN,
        post(actions::health_settings),
    );
    t.ui(
        "GET",
        "/ui/register/settings",
        Allowed::AnyPerson,
        get(pages::register_settings),
    );
    t.ui(
        "POST",
        "/ui/register/settings",
        ADMIN,
        post(actions::register_settings),
    );
    t.ui(
        "GET",
        "/ui/register/import",
        crate::register_api::REGISTER_EDITORS,
        get(pages::register_import),
    );
    t.ui(
        "POST",
        "/ui/register/import",
        crate::register_api::REGISTER_EDITORS,
        post(actions::import_register),
    );
    t.ui(
        "GET",
        "/ui/register/export",
        crate::register_api::REGISTER_EDITORS,
        get(pages::register_export),
    );
    t.ui(
        "POST",
        "/ui/cis/{id}/register/reconciliation/{field}",
        crate::register_api::REGISTER_EDITORS,
        post(actions::resolve_reconciliation),
    );
    t.ui(
        "GET",
        "/ui/register/reconciliation",
        Allowed::AnyPerson,
        get(pages::reconciliation),
    );
    t.ui(
        "GET",
        "/ui/cis/{id}/compare",
        Allowed::AnyPerson,
        get(pages::compare),
    );
    t.ui(
        "GET",
        "/ui/changes",
        Allowed::AnyPerson,
        get(pages::changes),
    );
    t.ui(
        "GET",
        "/ui/changes/{id}",
        Allowed::AnyPerson,
        get(pages::change),
    );
    t.ui(
        "POST",
        "/ui/changes/{id}/review",
        CHANGE_MANAGER,
        post(actions::review),
    );
    t.ui(
        "POST",
        "/ui/changes/{id}/tickets",
        CHANGE_MANAGER,
        post(actions::record_tickets),
    );
    t.ui(
        "GET",
        "/ui/planned",
        Allowed::AnyPerson,
        get(pages::planned),
    );
    t.ui("POST", "/ui/planned", CHANGE_MANAGER, post(actions::plan));
    t.ui(
        "POST",
        "/ui/planned/{id}/cancel",
        CHANGE_MANAGER,
        post(actions::cancel_plan),
    );
    t.ui(
        "GET",
        "/ui/conflicts",
        Allowed::AnyPerson,
        get(pages::conflicts),
    );
    t.ui(
        "POST",
        "/ui/conflicts/{id}/resolve",
        ADMIN,
        post(actions::resolve_conflict),
    );
    t.ui("GET", "/ui/noise", RULE_EDITORS, get(pages::noise));
    t.ui("POST", "/ui/noise", RULE_EDITORS, post(actions::add_noise));
    t.ui(
        "POST",
        "/ui/noise/{id}/delete",
        RULE_EDITORS,
        post(actions::delete_noise),
    );
    t.ui("GET", "/ui/admin/tokens", ADMIN, get(pages::tokens));
    t.ui(
        "POST",
        "/ui/admin/tokens",
        ADMIN,
        post(actions::create_token),
    );
    t.ui(
        "POST",
        "/ui/admin/tokens/{id}/revoke",
        ADMIN,
        post(actions::revoke_token),
    );
    t.ui("GET", "/ui/admin/agents", ADMIN, get(pages::agents));
    t.ui(
        "POST",
        "/ui/admin/agents/{id}/revoke",
        ADMIN,
        post(actions::revoke_agent),
    );
    t.ui("GET", "/ui/admin/users", ADMIN, get(pages::users));
    t.ui("POST", "/ui/admin/users", ADMIN, post(actions::save_user));
    t.ui("GET", "/ui/admin/webhooks", ADMIN, get(pages::webhooks));
    t.ui(
        "POST",
        "/ui/admin/webhooks",
        ADMIN,
        post(actions::add_webhook),
    );
    t.ui(
        "POST",
        "/ui/admin/webhooks/{id}/delete",
        ADMIN,
        post(actions::delete_webhook),
    );
    t.ui("GET", "/ui/audit", AUDIT_READERS, get(pages::audit));
}

/// One entry of the main navigation.
pub struct NavLink {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// What every signed-in page shows around its content.
pub struct Chrome {
    pub user: String,
    pub role: &'static str,
    pub csrf: String,
    pub nav: Vec<NavLink>,
    /// Set after a successful form: shown once at the top.
    pub notice: Option<String>,
}

impl Chrome {
    pub fn new(person: &Person, session: &Session, current: &str) -> Chrome {
        let mut nav: Vec<(&'static str, &'static str)> = vec![
            ("/ui", "Dashboard"),
            ("/ui/computers", "Computers"),
            ("/ui/software", "Software"),
            ("/ui/changes", "Changes"),
            ("/ui/planned", "Planned changes"),
            ("/ui/conflicts", "Identity conflicts"),
            ("/ui/licences", "Licences"),
            ("/ui/services", "Services"),
            ("/ui/map", "Map"),
            ("/ui/baselines", "Baselines"),
            ("/ui/health", "Health"),
            ("/ui/vulns", "Vulnerabilities"),
        ];
        if RULE_EDITORS.permits(person.role) {
            nav.push(("/ui/noise", "Noise rules"));
        }
        if ADMIN.permits(person.role) {
            nav.extend([
                ("/ui/admin/tokens", "Enrollment"),
                ("/ui/admin/agents", "Agents"),
                ("/ui/admin/users", "Users"),
                ("/ui/admin/webhooks", "Webhooks"),
            ]);
        }
        if AUDIT_READERS.permits(person.role) {
            nav.push(("/ui/audit", "Audit log"));
        }
        Chrome {
            user: person.name.clone(),
            role: person.role.as_str(),
            csrf: session.csrf.clone(),
            nav: nav
                .into_iter()
                .map(|(href, label)| NavLink {
                    href,
                    label,
                    current: href == current,
                })
                .collect(),
            notice: None,
        }
    }
}

/// A UI failure rendered as a page with its status.
#[derive(Debug)]
pub struct UiError {
    pub status: StatusCode,
    pub message: String,
}

impl From<ApiProblem> for UiError {
    fn from(p: ApiProblem) -> Self {
        UiError {
            status: p.status,
            message: p.detail,
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        error_page(self.status, &self.message)
    }
}

pub type UiResult = Result<Response, UiError>;

pub fn bad_request(message: impl Into<String>) -> UiError {
    UiError {
        status: StatusCode::BAD_REQUEST,
        message: message.into(),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
}

pub fn error_page(status: StatusCode, message: &str) -> Response {
    let page = ErrorPage {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("Error"),
        message,
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, message.to_string()).into_response(),
    }
}

pub fn render<T: Template>(page: &T) -> UiResult {
    page.render()
        .map(|html| Html(html).into_response())
        .map_err(|e| UiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("rendering the page failed: {e}"),
        })
}

/// 303 See Other: after a form, the browser GETs the result (no resubmission on reload).
pub fn redirect(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind): (&'static [u8], &str) = match file.as_str() {
        "htmx.min.js" => (HTMX_JS, "text/javascript; charset=utf-8"),
        "census.js" => (CENSUS_JS, "text/javascript; charset=utf-8"),
        "census.css" => (CENSUS_CSS, "text/css; charset=utf-8"),
        _ => return error_page(StatusCode::NOT_FOUND, "no such asset"),
    };
    let mut r = Body::from(body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    next: &'a str,
    error: Option<&'a str>,
    name: &'a str,
}

/// Only same-site UI paths may be returned to after login.
fn safe_next(next: &str) -> &str {
    let ok = next.starts_with("/ui")
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.contains("://");
    if ok {
        next
    } else {
        "/ui"
    }
}

fn login_form(next: &str, error: Option<&str>, name: &str, status: StatusCode) -> Response {
    let csrf = hex::encode(rand::random::<[u8; 16]>());
    let page = LoginPage {
        csrf: &csrf,
        next: safe_next(next),
        error,
        name,
    };
    let mut r = match render(&page) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    *r.status_mut() = status;
    r.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(LOGIN_COOKIE, &csrf, 3600),
    );
    r
}

#[derive(serde::Deserialize, Default)]
struct NextParam {
    next: Option<String>,
}

async fn login_page(axum::extract::RawQuery(q): axum::extract::RawQuery) -> Response {
    let p: NextParam = q
        .as_deref()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    login_form(p.next.as_deref().unwrap_or("/ui"), None, "", StatusCode::OK)
}

#[derive(serde::Deserialize)]
struct LoginForm {
    name: String,
    password: String,
    csrf: String,
    #[serde(default)]
    next: String,
}

async fn login_submit(State(st): State<Arc<AppState>>, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if session::cross_site(request.headers()) {
        return error_page(StatusCode::FORBIDDEN, "cross-site logins are refused");
    }
    let expected = session::cookie(request.headers(), LOGIN_COOKIE).map(str::to_string);
    let bytes = match session::read_form_bytes(request.into_body()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&bytes) else {
        return login_form(
            "/ui",
            Some("the form needs a user name and a password"),
            "",
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    };
    if !expected.is_some_and(|e| crate::ops::credentials::same_digest(&e, &form.csrf)) {
        return login_form(
            &form.next,
            Some("the login form expired; please sign in again"),
            &form.name,
            StatusCode::FORBIDDEN,
        );
    }
    if form.password.len() > crate::login::MAX_PASSWORD_BYTES || form.name.len() > 256 {
        return login_form(
            &form.next,
            Some(LOGIN_FAILED_MESSAGE),
            "",
            StatusCode::UNAUTHORIZED,
        );
    }
    match password_login(&st, peer, form.name.clone(), form.password).await {
        LoginOutcome::Session { token_text, .. } => {
            let mut r = redirect(safe_next(&form.next));
            let h = r.headers_mut();
            h.append(
                header::SET_COOKIE,
                session::set_cookie(SESSION_COOKIE, &token_text, SESSION_HOURS * 3600),
            );
            h.append(header::SET_COOKIE, session::set_cookie(LOGIN_COOKIE, "", 0));
            r
        }
        LoginOutcome::Failed => login_form(
            &form.next,
            Some(LOGIN_FAILED_MESSAGE),
            &form.name,
            StatusCode::UNAUTHORIZED,
        ),
        LoginOutcome::Throttled { retry_after } => {
            let mut r = login_form(
                &form.next,
                Some(&format!(
                    "too many failed logins; wait {retry_after} seconds before trying again"
                )),
                &form.name,
                StatusCode::TOO_MANY_REQUESTS,
            );
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        LoginOutcome::Unavailable(e) => error_page(StatusCode::SERVICE_UNAVAILABLE, &e),
    }
}

/// Ends the session: the token behind the cookie is revoked, not just forgotten.
async fn logout(
    State(st): State<Arc<AppState>>,
    axum::Extension(person): axum::Extension<Person>,
) -> Response {
    let store = st.store.clone();
    let token_id = person.token_id.clone();
    let actor = person.name.clone();
    let revoked = tokio::task::spawn_blocking(move || {
        let Some(mut token) = store.find_api_token(&token_id).map_err(|e| e.to_string())? else {
            return Ok(());
        };
        let now = chrono::Utc::now();
        token.revoked_at = Some(now);
        store
            .commit_people(
                &crate::store::PeopleWrite::PutApiToken(token),
                crate::store::AuditDraft {
                    actor,
                    action: "session.logout".into(),
                    target: token_id,
                    before: None,
                    after: None,
                    comment: None,
                },
                now,
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    if let Ok(Err(e)) | Err(e) = revoked.map_err(|e| e.to_string()) {
        return error_page(StatusCode::SERVICE_UNAVAILABLE, &e);
    }
    let mut r = redirect("/ui/login");
    r.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(SESSION_COOKIE, "", 0),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_returns_only_to_same_site_ui_paths() {
        assert_eq!(safe_next("/ui/cis/x?as_of=1"), "/ui/cis/x?as_of=1");
        for hostile in [
            "https://evil.example/",
            "//evil.example",
            "/api/v1/x",
            "/ui\\@evil",
            "javascript:alert(1)",
        ] {
            assert_eq!(safe_next(hostile), "/ui", "{hostile}");
        }
    }
}
