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
use crate::http::AppState;
use crate::model::*;
use crate::ops::admin::{self as admin_op, ConflictResolution};
use crate::ops::changes::{self as op, NoiseRequest, PlannedRequest};
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
    let comment = form.get("comment").to_string();
    let record = id.clone();
    st.run(&person, move |ops, actor| {
        op::review(ops, actor, &record, decision, items, &comment)
    })
    .await?;
    Ok(redirect(&format!("/ui/changes/{}", segment(&id))))
}

/// Tickets as a form writes them: one per line, its number and optionally its address.
fn ticket_lines(text: &str) -> Result<Vec<TicketRef>, UiError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut parts = l.split_whitespace();
            let id = parts.next().unwrap_or_default().to_string();
            let url = parts.next().map(str::to_string);
            if parts.next().is_some() {
                return Err(unprocessable(format!(
                    "tickets: '{l}' should be a ticket number and optionally its address, e.g. 'CHG0012345 https://itsm.example/chg/12345'"
                )));
            }
            Ok(TicketRef { id, url })
        })
        .collect()
}

/// Replaces a change record's ticket links.
pub async fn record_tickets(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
    body: Bytes,
) -> UiResult {
    let form = Form::parse(&body)?;
    let tickets = ticket_lines(form.get("tickets"))?;
    let record = id.clone();
    st.run(&person, move |ops, actor| {
        op::set_record_tickets(ops, actor, &record, tickets)
    })
    .await?;
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
                ports: None,
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
        tickets: ticket_lines(form.get("tickets"))?,
    };
    st.run(&person, move |ops, actor| {
        op::create_planned(ops, actor, req)
    })
    .await?;
    Ok(redirect("/ui/planned"))
}

pub async fn cancel_plan(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> UiResult {
    st.run(&person, move |ops, actor| {
        op::cancel_planned(ops, actor, &id)
    })
    .await?;
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
    st.run(&person, move |ops, actor| {
        admin_op::resolve_conflict(ops, actor, &id, resolution)
    })
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
            ports: None,
        },
        note: form.get("note").trim().to_string(),
    };
    st.run(&person, move |ops, actor| {
        op::create_noise_rule(ops, actor, req)
    })
    .await?;
    Ok(redirect("/ui/noise"))
}

pub async fn delete_noise(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> UiResult {
    st.run(&person, move |ops, actor| {
        op::delete_noise_rule(ops, actor, &id)
    })
    .await?;
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
    let (token, secret) = st
        .run(&person, move |ops, actor| {
            admin_op::create_enrollment_token(ops, actor, hours * 3600, uses, note, Utc::now())
        })
        .await?;
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
        token.id
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
    st.run(&person, move |ops, actor| {
        admin_op::revoke_enrollment_token(ops, actor, &id, Utc::now())
    })
    .await?;
    Ok(redirect("/ui/admin/tokens"))
}

pub async fn revoke_agent(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> UiResult {
    st.run(&person, move |ops, actor| {
        admin_op::revoke_agent(ops, actor, &id, Utc::now())
    })
    .await?;
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
        crate::ops::credentials::hash_password(&password)
            .map_err(|e| unprocessable(format!("password: {e}")))?;
    }
    st.run(&person, move |ops, actor| {
        admin_op::put_user(ops, actor, &name, role, Utc::now())?;
        if !password.is_empty() {
            admin_op::set_password(ops, actor, &name, &password)?;
        }
        Ok(())
    })
    .await?;
    Ok(redirect("/ui/admin/users"))
}

pub async fn add_webhook(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
    body: Bytes,
) -> UiResult {
    let form = Form::parse(&body)?;
    let url = form.get("url").trim().to_string();
    let w = st
        .run(&person, move |ops, actor| op::add_webhook(ops, actor, url))
        .await?;
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
    st.run(&person, move |ops, actor| {
        op::remove_webhook(ops, actor, &id)
    })
    .await?;
    Ok(redirect("/ui/admin/webhooks"))
}

/// The CI page's register form: only the fields the person changed are sent (a field left
/// as shown is not re-asserted over another source), an emptied field is cleared.
pub async fn edit_register(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
    body: Bytes,
) -> UiResult {
    use crate::model::register;
    let form = Form::parse(&body)?;
    let mut set = std::collections::BTreeMap::new();
    // Every field the form shows (built in or custom); an unknown one is refused by the
    // edit with the list of known fields.
    for (key, now) in &form.0 {
        let Some(field) = key.strip_prefix("f_") else {
            continue;
        };
        if *now == form.get(&format!("was_{field}")) {
            continue;
        }
        let value = (!now.trim().is_empty()).then(|| serde_json::Value::String(now.to_string()));
        set.insert(field.to_string(), value);
    }
    let page = format!("/ui/cis/{}", segment(&id));
    if set.is_empty() {
        return Ok(redirect(&page));
    }
    let expected_version = match form.get("expected_version") {
        "" => None,
        v => Some(v.parse::<u64>().map_err(|_| {
            unprocessable(format!("expected_version: '{v}' is not a version number"))
        })?),
    };
    let comment = Some(form.get("comment").trim().to_string()).filter(|c| !c.is_empty());
    let edit = crate::ops::register::RegisterEdit {
        set,
        expected_version,
        comment,
    };
    st.run(&person, move |ops, actor| {
        crate::ops::register::edit(ops, actor, &id, &edit, register::Source::Person)
    })
    .await?;
    Ok(redirect(&page))
}

/// A decision on a reconciliation item, from the CI page or the reconciliation list
/// (`back` says which to return to).
pub async fn resolve_reconciliation(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path((id, field)): Path<(String, String)>,
    body: Bytes,
) -> UiResult {
    let form = Form::parse(&body)?;
    let resolution: crate::model::register::Resolution =
        form.get("resolution").parse().map_err(unprocessable)?;
    let back = match form.get("back") {
        "list" => "/ui/register/reconciliation".to_string(),
        _ => format!("/ui/cis/{}", segment(&id)),
    };
    let request = crate::ops::register::ResolveRequest {
        resolution,
        comment: None,
    };
    st.run(&person, move |ops, actor| {
        crate::ops::register::resolve(ops, actor, &id, &field, &request)
    })
    .await?;
    Ok(redirect(&back))
}

/// The licences page's form.
pub async fn create_licence(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    body: Bytes,
) -> UiResult {
    let form = Form::parse(&body)?;
    let seats = form.get("seats").trim().parse::<u32>().map_err(|_| {
        unprocessable(format!(
            "seats: '{}' is not a number of seats",
            form.get("seats")
        ))
    })?;
    let cost = match form.get("cost").trim() {
        "" => None,
        c => Some(
            c.parse::<f64>()
                .map_err(|_| unprocessable(format!("cost: '{c}' is not an amount")))?,
        ),
    };
    let text = |k: &str| Some(form.get(k).trim().to_string()).filter(|v| !v.is_empty());
    let req = crate::ops::licences::LicenceRequest {
        name: form.get("name").trim().to_string(),
        product: form.get("product").trim().to_string(),
        versions: form.get("versions").trim().to_string(),
        seats,
        expires: text("expires"),
        cost,
        notes: None,
    };
    st.run(&person, move |ops, actor| {
        crate::ops::licences::create(ops, actor, req)
    })
    .await?;
    Ok(redirect("/ui/licences"))
}

pub async fn delete_licence(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> UiResult {
    st.run(&person, move |ops, actor| {
        crate::ops::licences::delete(ops, actor, &id)
    })
    .await?;
    Ok(redirect("/ui/licences"))
}

/// The inventory page's form for hardware not discovered yet; opens the new record.
pub async fn create_record(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    body: Bytes,
) -> UiResult {
    let form = Form::parse(&body)?;
    let text = |k: &str| Some(form.get(k).trim().to_string()).filter(|v| !v.is_empty());
    let mut set = std::collections::BTreeMap::new();
    for field in ["asset_tag", "lifecycle_status"] {
        if let Some(v) = text(field) {
            set.insert(field.to_string(), Some(serde_json::Value::String(v)));
        }
    }
    let record = crate::ops::register::NewRecord {
        name: form.get("name").to_string(),
        serial: text("serial"),
        set,
        comment: None,
    };
    let view = st
        .run(&person, move |ops, actor| {
            crate::ops::register::create_record(ops, actor, &record)
        })
        .await?;
    Ok(redirect(&format!("/ui/cis/{}", segment(&view.ci_id))))
}

/// The register import form's file (multipart/form-data; the CSRF token was checked from
/// the query string by the session layer): checked, or applied with `mode=apply`, and the
/// report shown on the import page. Every limit of the API's import applies.
pub async fn import_register(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<super::session::Session>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> UiResult {
    use crate::ops::register_csv::{self, ImportMode, MAX_IMPORT_BYTES};
    let too_large = || UiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!(
            "the register file is larger than {} MiB; split it into several files",
            MAX_IMPORT_BYTES / (1024 * 1024)
        ),
    };
    let boundary = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| multer::parse_boundary(ct).ok())
        .ok_or_else(|| unprocessable("send the file from the import form (multipart/form-data)"))?;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // The form's other fields are a few bytes; the file may take the whole allowance.
    let whole = (MAX_IMPORT_BYTES + 16 * 1024) as u64;
    if declared.is_some_and(|n| n > whole) {
        return Err(too_large());
    }
    let constraints = multer::Constraints::new()
        .allowed_fields(vec!["file", "mode", "skip_problem_rows"])
        .size_limit(
            multer::SizeLimit::new()
                .whole_stream(whole)
                .per_field(MAX_IMPORT_BYTES as u64),
        );
    let mut form =
        multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let read_error = |e: multer::Error| match e {
        multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => {
            too_large()
        }
        other => unprocessable(format!("the upload could not be read: {other}")),
    };
    let (mut file, mut file_name, mut apply, mut skip) = (None, String::new(), false, false);
    while let Some(field) = form.next_field().await.map_err(read_error)? {
        match field.name() {
            Some("file") => {
                file_name = field
                    .file_name()
                    .map(|n| n.chars().filter(|c| !c.is_control()).take(255).collect())
                    .unwrap_or_default();
                file = Some(field.bytes().await.map_err(read_error)?);
            }
            Some("mode") => apply = field.text().await.map_err(read_error)? == "apply",
            Some("skip_problem_rows") => skip = true,
            _ => {}
        }
    }
    let Some(file) = file.filter(|f| !f.is_empty()) else {
        return Err(unprocessable("choose a register file (CSV) to import"));
    };
    if file_name.trim().is_empty() {
        file_name = "register.csv".into();
    }
    let mode = ImportMode {
        dry_run: !apply,
        skip_problem_rows: apply && skip,
    };
    let (ops, actor, name) = (
        st.ops(),
        crate::ops::Actor::from(&person),
        file_name.clone(),
    );
    let (outcome, settings) = tokio::task::spawn_blocking(move || {
        let outcome = register_csv::import(&ops, &actor, &name, &file, mode);
        (outcome, crate::ops::register::settings(&ops))
    })
    .await
    .map_err(|e| UiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: e.to_string(),
    })?;
    let columns = settings
        .map(|s| super::pages::register_columns(&s))
        .unwrap_or_default();
    let mut page = super::pages::RegisterImportPage::new(&person, &session, columns);
    page.file_name = file_name;
    match outcome {
        Ok(report) => page.report = Some(report),
        Err(Ok(e)) => {
            page.file_error = if e.message.starts_with("line ") {
                e.message
            } else {
                format!("line {}: {}", e.line, e.message)
            }
        }
        Err(Err(e)) => return Err(crate::http::ApiProblem::from(e).into()),
    }
    let mut response = super::render(&page)?;
    if !page.file_error.is_empty() {
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(response)
}

/// Reads the four precedence slots of a settings form (`src_N`, `stale_N`), highest
/// first; an empty slot is skipped.
fn precedence_slots(form: &Form) -> Result<Vec<crate::model::register::SourceRank>, UiError> {
    use crate::model::register::{Source, SourceRank};
    let mut order = Vec::new();
    for i in 0..Source::ALL.len() {
        let source = form.get(&format!("src_{i}"));
        if source.is_empty() {
            continue;
        }
        let source: Source = source.parse().map_err(unprocessable)?;
        let stale = match form.get(&format!("stale_{i}")).trim() {
            "" => None,
            d => Some(d.parse::<u32>().map_err(|_| {
                unprocessable(format!("rank {}: '{d}' is not a number of days", i + 1))
            })?),
        };
        order.push(SourceRank {
            source,
            stale_after_days: stale,
        });
    }
    Ok(order)
}

/// The settings page's forms: one change to the register settings per submission, checked
/// and audited as the API's `PUT /api/v1/register/settings` is.
pub async fn register_settings(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    body: Bytes,
) -> UiResult {
    use crate::model::register::{
        CustomField, FieldKind, FieldPrecedence, StatusKind, StatusLabel,
    };
    let form = Form::parse(&body)?;
    let mut settings = st
        .run(&person, |ops, _| crate::ops::register::settings(ops))
        .await?;
    let number = |name: &str| -> Result<Option<f64>, UiError> {
        match form.get(name).trim() {
            "" => Ok(None),
            v => v
                .parse::<f64>()
                .map(Some)
                .map_err(|_| unprocessable(format!("{name}: '{v}' is not a number"))),
        }
    };
    match form.get("action") {
        "add_status" => {
            let kind = match form.get("kind") {
                "in_stock" => StatusKind::InStock,
                "deployed" => StatusKind::Deployed,
                "pending" => StatusKind::Pending,
                "retired" => StatusKind::Retired,
                other => {
                    return Err(unprocessable(format!(
                        "kind: unknown status kind '{other}'"
                    )))
                }
            };
            settings.statuses.push(StatusLabel {
                name: form.get("name").trim().to_string(),
                kind,
            });
        }
        "remove_status" => {
            let name = form.get("name");
            settings.statuses.retain(|s| s.name != name);
        }
        "default_precedence" => settings.default_precedence = precedence_slots(&form)?,
        "field_precedence" => {
            let field = form.get("field").to_string();
            settings.precedence.retain(|p| p.field != field);
            settings.precedence.push(FieldPrecedence {
                class: CiClass::Computer,
                field,
                order: precedence_slots(&form)?,
            });
        }
        "remove_precedence" => {
            let field = form.get("field");
            settings.precedence.retain(|p| p.field != field);
        }
        "add_custom" => {
            let kind = match form.get("type") {
                "text" => FieldKind::Text {
                    max_chars: form.get("max_chars").trim().parse().map_err(|_| {
                        unprocessable("max_chars: a number of characters, 1 to 4000")
                    })?,
                },
                "number" => FieldKind::Number {
                    min: number("min")?,
                    max: number("max")?,
                    decimals: match form.get("decimals").trim() {
                        "" => 0,
                        d => d.parse().map_err(|_| unprocessable("decimals: 0 to 6"))?,
                    },
                },
                "date" => FieldKind::Date,
                "money" => FieldKind::Money,
                "enum" => FieldKind::Enum {
                    values: form
                        .get("values")
                        .split(',')
                        .map(|v| v.trim().to_string())
                        .filter(|v| !v.is_empty())
                        .collect(),
                },
                other => return Err(unprocessable(format!("type: unknown field type '{other}'"))),
            };
            settings.custom_fields.push(CustomField {
                class: CiClass::Computer,
                name: form.get("name").trim().to_string(),
                description: form.get("description").trim().to_string(),
                kind,
            });
        }
        "remove_custom" => {
            let name = form.get("name").to_string();
            settings.custom_fields.retain(|c| c.name != name);
            // An order for a field that no longer exists would refuse the settings.
            settings.precedence.retain(|p| p.field != name);
        }
        other => {
            return Err(unprocessable(format!(
                "action: unknown settings change '{other}'"
            )))
        }
    }
    st.run(&person, move |ops, actor| {
        crate::ops::register::put_settings(ops, actor, settings)
    })
    .await?;
    Ok(redirect("/ui/register/settings"))
}

/// The health page's settings form: one class's required attributes (replaced) and the
/// silent-agent age, checked and audited as `PUT /api/v1/health/settings` is.
pub async fn health_settings(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    body: Bytes,
) -> UiResult {
    use crate::model::health::RequiredAttributes;
    let form = Form::parse(&body)?;
    let class: CiClass = form.get("class").parse().map_err(unprocessable)?;
    let attributes: Vec<String> = form
        .get("attributes")
        .split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    let hours = form.get("silent_after_hours").trim();
    let silent_after_hours: u32 = hours.parse().map_err(|_| {
        unprocessable(format!(
            "silent_after_hours: '{hours}' is not a number of hours"
        ))
    })?;
    st.run(&person, move |ops, actor| {
        let mut settings = crate::ops::health::settings(ops)?;
        settings.required.retain(|r| r.class != class);
        if !attributes.is_empty() {
            settings
                .required
                .push(RequiredAttributes { class, attributes });
        }
        settings.silent_after_hours = silent_after_hours;
        crate::ops::health::put_settings(ops, actor, settings)
    })
    .await?;
    Ok(redirect("/ui/health"))
}

/// The service forms (make, change): the fields of `ServiceRequest`, `depends_on` as a
/// multiple select, `runs_on` one entry per line.
fn service_request(form: &Form) -> Result<crate::ops::services::ServiceRequest, UiError> {
    use crate::model::service::ServiceKind;
    let kind = match form.get("kind") {
        "business" => ServiceKind::Business,
        "application" => ServiceKind::Application,
        other => {
            return Err(unprocessable(format!(
                "kind: '{other}' is not business or application"
            )))
        }
    };
    let criticality = form.get("criticality").trim();
    let expected_version = match form.get("expected_version") {
        "" => None,
        v => Some(v.parse::<u64>().map_err(|_| {
            unprocessable(format!("expected_version: '{v}' is not a version number"))
        })?),
    };
    Ok(crate::ops::services::ServiceRequest {
        kind,
        name: form.get("name").to_string(),
        owner: form.get("owner").trim().to_string(),
        criticality: criticality
            .parse()
            .map_err(|_| unprocessable(format!("criticality: '{criticality}' is not 1 to 4")))?,
        support_group: form.get("support_group").trim().to_string(),
        description: form.get("description").trim().to_string(),
        depends_on: form.all("depends_on").map(str::to_string).collect(),
        runs_on: pages::parse_runs_on(form.get("runs_on")).map_err(unprocessable)?,
        expected_version,
    })
}

pub async fn create_service(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    body: Bytes,
) -> UiResult {
    let req = service_request(&Form::parse(&body)?)?;
    let s = st
        .run(&person, move |ops, actor| {
            crate::ops::services::create(ops, actor, req)
        })
        .await?;
    Ok(redirect(&format!("/ui/services/{}", segment(&s.id))))
}

pub async fn update_service(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
    body: Bytes,
) -> UiResult {
    let req = service_request(&Form::parse(&body)?)?;
    let page = format!("/ui/services/{}", segment(&id));
    st.run(&person, move |ops, actor| {
        crate::ops::services::update(ops, actor, &id, req)
    })
    .await?;
    Ok(redirect(&page))
}

pub async fn delete_service(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> UiResult {
    st.run(&person, move |ops, actor| {
        crate::ops::services::delete(ops, actor, &id)
    })
    .await?;
    Ok(redirect("/ui/services"))
}
