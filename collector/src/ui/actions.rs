//! The UI's forms. Each POST arrives here only after the session layer checked the role
//! and the CSRF token; each calls the same audited operation as the API or the admin
//! CLI, then redirects (303) so a reload does not resubmit.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use chrono::Utc;

use super::pages::{self, segment, NewToken, Tokens};
use super::{redirect, render, Chrome, UiError, UiResult};
use crate::admin::{self, AdminError, AdminRequest, ConflictResolution};
use crate::api::AppState;
use crate::changes_api::{self, NoiseRequest, PlannedRequest};
use crate::model::*;
use crate::people::Person;
use crate::ui::session::Session;

/// Every field of a form, repeated names kept (checkboxes).
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &Bytes) -> Result<Form, UiError> {
        serde_urlencoded::from_bytes(body)
            .map(Form)
            .map_err(|e| unprocessable(format!("the form could not be read: {e}")))
    }
    fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn unprocessable(message: impl Into<String>) -> UiError {
    UiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        message: message.into(),
    }
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Runs an admin command as this person, off the async workers.
async fn admin_as(
    st: &AppState,
    person: &Person,
    req: AdminRequest,
) -> Result<serde_json::Value, UiError> {
    let store = st.store.clone();
    let actor = person.name.clone();
    let r = tokio::task::spawn_blocking(move || {
        admin::execute(store.as_ref(), req, &actor, Utc::now())
    })
    .await
    .map_err(|e| UiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: e.to_string(),
    })?;
    r.map_err(|e| match e {
        AdminError::Invalid(m) => unprocessable(m),
        AdminError::NotFound(m) => UiError {
            status: StatusCode::NOT_FOUND,
            message: m,
        },
        AdminError::Conflict(m) => UiError {
            status: StatusCode::CONFLICT,
            message: m,
        },
        AdminError::Store(e) => UiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("store: {e}"),
        },
    })
}

pub async fn review(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
    body: Bytes,
) -> UiResult {
    let form = Form::parse(&body)?;
    let decision = match form.get("decision") {
        "accepted" => Decision::Accepted,
        "rejected" => Decision::Rejected,
        other => {
            return Err(unprocessable(format!(
                "decision: '{other}' is not accepted or rejected"
            )))
        }
    };
    let items: Vec<usize> = form
        .all("item")
        .map(|i| {
            i.parse()
                .map_err(|_| unprocessable(format!("item: '{i}' is not an item number")))
        })
        .collect::<Result<_, _>>()?;
    let items = (!items.is_empty()).then_some(items);
    changes_api::review(&st, &person, &id, decision, items, form.get("comment")).await?;
    Ok(redirect(&format!("/ui/changes/{}", segment(&id))))
}

fn patterns(text: &str) -> Result<Vec<ItemPattern>, UiError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut parts = l.split_whitespace();
            let kind = parts.next().unwrap_or("*").to_string();
            let subject = parts.next().unwrap_or("*").to_string();
            if parts.next().is_some() {
                return Err(unprocessable(format!(
                    "allowed: '{l}' should be a kind glob and a subject glob, e.g. 'software_* openssl*'"
                )));
            }
            Ok(ItemPattern {
                kind,
                subject,
                new: Default::default(),
            })
        })
        .collect()
}

pub async fn plan(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    body: Bytes,
) -> UiResult {
    let form = Form::parse(&body)?;
    let time = |field: &str| {
        pages::parse_when(form.get(field)).ok_or_else(|| {
            unprocessable(format!(
                "{field}: '{}' is not a time (2026-11-23T10:00, UTC)",
                form.get(field)
            ))
        })
    };
    let req = PlannedRequest {
        title: form.get("title").trim().to_string(),
        scope: PlanScope {
            ci_ids: lines(form.get("ci_ids")),
            subnets: lines(form.get("subnets")),
            hostnames: lines(form.get("hostnames")),
            all: form.get("all") == "on",
        },
        allowed: patterns(form.get("allowed"))?,
        window_start: time("window_start")?,
        window_end: time("window_end")?,
    };
    changes_api::create_planned_change(&st, &person, req).await?;
    Ok(redirect("/ui/planned"))
}

pub async fn cancel_plan(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> UiResult {
    changes_api::cancel_planned_change(&st, &person, &id).await?;
    Ok(redirect("/ui/planned"))
}

pub async fn resolve_conflict(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
    body: Bytes,
) -> UiResult {
    let form = Form::parse(&body)?;
    let resolution = match form.get("decision") {
        "kept_separate" => ConflictResolution::KeptSeparate,
        "claiming_agent_revoked" => ConflictResolution::ClaimingAgentRevoked,
        other => {
            return Err(unprocessable(format!(
                "decision: '{other}' is not kept_separate or claiming_agent_revoked"
            )))
        }
    };
    admin_as(
        &st,
        &person,
        AdminRequest::ConflictResolve { id, resolution },
    )
    .await?;
    Ok(redirect("/ui/conflicts"))
}

pub async fn add_noise(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    body: Bytes,
) -> UiResult {
    let form = Form::parse(&body)?;
    let class: CiClass = form
        .get("class")
        .parse()
        .map_err(|e: String| unprocessable(format!("class: {e}")))?;
    let glob = |f: &str| {
        let v = form.get(f).trim();
        if v.is_empty() {
            "*".to_string()
        } else {
            v.to_string()
        }
    };
    let req = NoiseRequest {
        class,
        pattern: ItemPattern {
            kind: glob("kind"),
            subject: glob("subject"),
            new: Default::default(),
        },
        note: form.get("note").trim().to_string(),
    };
    changes_api::create_noise_rule(&st, &person, req).await?;
    Ok(redirect("/ui/noise"))
}

pub async fn delete_noise(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> UiResult {
    changes_api::delete_noise_rule(&st, &person, &id).await?;
    Ok(redirect("/ui/noise"))
}

/// Creates an enrollment token and shows it once, with the command to paste on a machine.
pub async fn create_token(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
    body: Bytes,
) -> UiResult {
    let form = Form::parse(&body)?;
    let hours: i64 = form
        .get("ttl_hours")
        .trim()
        .parse()
        .ok()
        .filter(|h| (1..=24 * 365).contains(h))
        .ok_or_else(|| unprocessable("ttl_hours: a whole number of hours from 1 to 8760"))?;
    let uses: u32 = form
        .get("uses")
        .trim()
        .parse()
        .ok()
        .filter(|u| (1..=100_000).contains(u))
        .ok_or_else(|| unprocessable("uses: a whole number from 1 to 100000"))?;
    let note = Some(form.get("note").trim().to_string()).filter(|n| !n.is_empty());
    if note.as_ref().is_some_and(|n| n.chars().count() > 200) {
        return Err(unprocessable("note: at most 200 characters"));
    }
    let result = admin_as(
        &st,
        &person,
        AdminRequest::TokenCreate {
            ttl_seconds: hours * 3600,
            uses,
            note,
        },
    )
    .await?;
    let secret = result["token"].as_str().unwrap_or_default().to_string();
    // The address this browser reached the collector on is the one agents most likely use.
    // HTTP/2 carries it as :authority (in the URI), HTTP/1.1 as Host.
    let host = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            headers
                .get(axum::http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("COLLECTOR:8443");
    let mut command = format!("sudo census-agent enroll --server https://{host} --token {secret}");
    if let Some(fp) = &st.ca_fingerprint {
        command.push_str(&format!(" --ca-fingerprint {fp}"));
    }
    let mut chrome = Chrome::new(&person, &session, "/ui/admin/tokens");
    chrome.notice = Some(format!(
        "Token {} created. Copy it now: it is not shown again.",
        result["id"].as_str().unwrap_or_default()
    ));
    render(&Tokens {
        chrome,
        rows: pages::token_rows(&st).await?,
        created: Some(NewToken { secret, command }),
    })
}

pub async fn revoke_token(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> UiResult {
    admin_as(&st, &person, AdminRequest::TokenRevoke { id }).await?;
    Ok(redirect("/ui/admin/tokens"))
}

pub async fn revoke_agent(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> UiResult {
    admin_as(&st, &person, AdminRequest::AgentRevoke { id }).await?;
    Ok(redirect("/ui/admin/agents"))
}

/// Adds a user or changes a user's role; sets the password when one is given.
pub async fn save_user(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    body: Bytes,
) -> UiResult {
    let form = Form::parse(&body)?;
    let name = form.get("name").trim().to_string();
    let role: Role = serde_json::from_value(serde_json::Value::String(form.get("role").into()))
        .map_err(|_| {
            unprocessable(format!(
                "role: '{}' is not admin, change_manager, asset_manager or auditor",
                form.get("role")
            ))
        })?;
    let password = form.get("password").to_string();
    if !password.is_empty() {
        crate::login::hash_password(&password)
            .map_err(|e| unprocessable(format!("password: {e}")))?;
    }
    admin_as(
        &st,
        &person,
        AdminRequest::UserAdd {
            name: name.clone(),
            role,
        },
    )
    .await?;
    if !password.is_empty() {
        admin_as(&st, &person, AdminRequest::UserPassword { name, password }).await?;
    }
    Ok(redirect("/ui/admin/users"))
}

pub async fn add_webhook(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
    body: Bytes,
) -> UiResult {
    let form = Form::parse(&body)?;
    let w = changes_api::add_webhook(&st, &person, form.get("url").trim().to_string()).await?;
    let mut chrome = Chrome::new(&person, &session, "/ui/admin/webhooks");
    chrome.notice = Some(format!(
        "Webhook {} added. Its signing secret is shown once below.",
        w.id
    ));
    pages::webhook_page(&st, chrome, Some((w.url, w.secret))).await
}

pub async fn delete_webhook(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> UiResult {
    changes_api::remove_webhook(&st, &person, &id).await?;
    Ok(redirect("/ui/admin/webhooks"))
}
