//! People's routes for drift: change records and their review, the changed-since feed,
//! planned changes, noise and severity rules, webhooks, and the audit log. HTTP only:
//! each write is an operation of [`crate::ops::changes`] (shared with the web UI); who may
//! call each route is declared where it is registered ([`RouteTable::people`]).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use crate::http::{blocking, query_params as query, ApiProblem, AppState};
use crate::model::*;
use crate::ops::changes::{self as op, NoiseRequest, PlannedRequest};
use crate::people::{Allowed, Person, RouteTable};

/// The largest JSON body a people route reads.
pub const MAX_PEOPLE_BODY_BYTES: usize = 256 * 1024;
/// Most items a list route returns at once.
pub const MAX_PAGE: usize = 1000;

const READERS: Allowed = Allowed::AnyPerson;
const REVIEWERS: Allowed = Allowed::Roles(&[Role::ChangeManager]);
const RULE_EDITORS: Allowed = Allowed::Roles(&[Role::ChangeManager, Role::Admin]);
const AUDITORS: Allowed = Allowed::Roles(&[Role::Auditor, Role::Admin]);
const ADMINS: Allowed = Allowed::Roles(&[Role::Admin]);

/// Registers the people's drift routes, each with who may call it.
pub fn routes(table: &mut RouteTable) {
    use axum::routing::{delete, put};
    table.people("GET", "/api/v1/me", READERS, get(me));
    table.people("GET", "/api/v1/change-records", READERS, get(list_records));
    table.people(
        "GET",
        "/api/v1/change-records/{id}",
        READERS,
        get(get_record),
    );
    table.people(
        "POST",
        "/api/v1/change-records/{id}/review",
        REVIEWERS,
        post(review_record),
    );
    table.people("GET", "/api/v1/changes", READERS, get(feed));
    table.people("GET", "/api/v1/planned-changes", READERS, get(list_planned));
    table.people(
        "POST",
        "/api/v1/planned-changes",
        REVIEWERS,
        post(create_planned),
    );
    table.people(
        "GET",
        "/api/v1/planned-changes/{id}",
        READERS,
        get(get_planned),
    );
    table.people(
        "PUT",
        "/api/v1/planned-changes/{id}",
        REVIEWERS,
        put(update_planned),
    );
    table.people(
        "POST",
        "/api/v1/planned-changes/{id}/cancel",
        REVIEWERS,
        post(cancel_planned),
    );
    table.people("GET", "/api/v1/noise-rules", READERS, get(list_noise));
    table.people(
        "POST",
        "/api/v1/noise-rules",
        RULE_EDITORS,
        post(create_noise),
    );
    table.people(
        "DELETE",
        "/api/v1/noise-rules/{id}",
        RULE_EDITORS,
        delete(delete_noise),
    );
    table.people("GET", "/api/v1/severity-rules", READERS, get(get_severity));
    table.people(
        "PUT",
        "/api/v1/severity-rules",
        RULE_EDITORS,
        put(put_severity),
    );
    table.people("GET", "/api/v1/audit", AUDITORS, get(audit_log));
    table.people("GET", "/api/v1/webhooks", ADMINS, get(list_webhooks));
    table.people("POST", "/api/v1/webhooks", ADMINS, post(create_webhook));
    table.people(
        "DELETE",
        "/api/v1/webhooks/{id}",
        ADMINS,
        delete(delete_webhook),
    );
    table.people(
        "GET",
        "/api/v1/webhooks/deliveries",
        ADMINS,
        get(list_deliveries),
    );
    table.people(
        "POST",
        "/api/v1/webhooks/deliveries/{id}/retry",
        ADMINS,
        post(retry_delivery),
    );
}

type Reply = Result<Response, ApiProblem>;

async fn read_json<T: DeserializeOwned>(body: Body) -> Result<T, ApiProblem> {
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

async fn me(Extension(p): Extension<Person>) -> Reply {
    Ok(Json(json!({"name": p.name, "role": p.role, "token_id": p.token_id})).into_response())
}

// --- change records ---

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordFilter {
    state: Option<String>,
    severity: Option<String>,
    authorization: Option<String>,
    ci: Option<String>,
    limit: Option<usize>,
    /// Continue after this record id (records are listed newest first).
    after: Option<String>,
}

async fn list_records(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
    RawQuery(q): RawQuery,
) -> Reply {
    let f: RecordFilter = query(q)?;
    let state: Option<RecordState> =
        f.state
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: String| {
                ApiProblem::new(
                    StatusCode::BAD_REQUEST,
                    format!("state: {e}"),
                    Some("state".into()),
                )
            })?;
    let severity: Option<Severity> =
        f.severity
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: String| {
                ApiProblem::new(
                    StatusCode::BAD_REQUEST,
                    format!("severity: {e}"),
                    Some("severity".into()),
                )
            })?;
    let authorization = match f.authorization.as_deref() {
        None => None,
        Some("authorized") => Some(Authorization::Authorized),
        Some("unauthorized") => Some(Authorization::Unauthorized),
        Some(other) => {
            return Err(ApiProblem::new(
                StatusCode::BAD_REQUEST,
                format!("authorization: '{other}' is not authorized or unauthorized"),
                Some("authorization".into()),
            ))
        }
    };
    let limit = f.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let store = st.store.clone();
    let mut records = blocking(move || store.list_change_records()).await?;
    records.reverse();
    let mut records: Vec<ChangeRecord> = records
        .into_iter()
        .filter(|r| state.is_none_or(|s| r.state == s))
        .filter(|r| severity.is_none_or(|s| r.severity == s))
        .filter(|r| authorization.is_none_or(|a| r.authorization == a))
        .filter(|r| f.ci.as_ref().is_none_or(|c| &r.ci_id == c))
        .collect();
    let total = records.len();
    if let Some(after) = &f.after {
        match records.iter().position(|r| &r.id == after) {
            Some(i) => {
                records.drain(..=i);
            }
            None => {
                return Err(ApiProblem::new(
                    StatusCode::BAD_REQUEST,
                    format!("after: no record {after} in this listing"),
                    Some("after".into()),
                ))
            }
        }
    }
    records.truncate(limit);
    let next = (records.len() == limit)
        .then(|| records.last().map(|r| r.id.clone()))
        .flatten();
    Ok(Json(json!({"total": total, "records": records, "next_after": next})).into_response())
}

async fn get_record(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
    Path(id): Path<String>,
) -> Reply {
    let store = st.store.clone();
    let lookup = id.clone();
    match blocking(move || store.get_change_record(&lookup)).await? {
        Some(r) => Ok(Json(r).into_response()),
        None => Err(ApiProblem::new(
            StatusCode::NOT_FOUND,
            format!("change record {id} does not exist"),
            None,
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewRequest {
    decision: Decision,
    comment: String,
    /// Item indexes to decide; absent means the whole record.
    #[serde(default)]
    items: Option<Vec<usize>>,
}

async fn review_record(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
    body: Body,
) -> Reply {
    let req: ReviewRequest = read_json(body).await?;
    let next = st
        .run(&person, move |ops, actor| {
            op::review(ops, actor, &id, req.decision, req.items, &req.comment)
        })
        .await?;
    Ok(Json(next).into_response())
}

// --- the changed-since feed ---

/// Paging over a numbered log (the feed's cursors, the audit log's sequence numbers):
/// entries after `since`, at most `limit`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogPage {
    since: Option<u64>,
    limit: Option<usize>,
}

impl LogPage {
    fn parse(raw: Option<String>) -> Result<(u64, usize), ApiProblem> {
        let p: LogPage = query(raw)?;
        Ok((
            p.since.unwrap_or(0),
            p.limit.unwrap_or(100).clamp(1, MAX_PAGE),
        ))
    }
}

async fn feed(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
    RawQuery(q): RawQuery,
) -> Reply {
    let (since, limit) = LogPage::parse(q)?;
    let store = st.store.clone();
    let events = blocking(move || store.feed_since(since, limit)).await?;
    let next = events.last().map(|e| e.cursor).unwrap_or(since);
    Ok(Json(json!({"events": events, "next_cursor": next})).into_response())
}

// --- planned changes ---

async fn list_planned(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
) -> Reply {
    let store = st.store.clone();
    let list = blocking(move || store.list_planned_changes()).await?;
    Ok(Json(json!({"planned_changes": list})).into_response())
}

async fn get_planned(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> Reply {
    let p = st
        .run(&person, move |ops, _| op::find_planned(ops, &id))
        .await?;
    Ok(Json(p).into_response())
}

async fn create_planned(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    body: Body,
) -> Reply {
    let req: PlannedRequest = read_json(body).await?;
    let p = st
        .run(&person, move |ops, actor| {
            op::create_planned(ops, actor, req)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(p)).into_response())
}

async fn update_planned(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
    body: Body,
) -> Reply {
    let req: PlannedRequest = read_json(body).await?;
    let p = st
        .run(&person, move |ops, actor| {
            op::update_planned(ops, actor, &id, req)
        })
        .await?;
    Ok(Json(p).into_response())
}

async fn cancel_planned(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> Reply {
    let p = st
        .run(&person, move |ops, actor| {
            op::cancel_planned(ops, actor, &id)
        })
        .await?;
    Ok(Json(p).into_response())
}

// --- noise and severity rules ---

async fn list_noise(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
) -> Reply {
    let store = st.store.clone();
    let list = blocking(move || store.list_noise_rules()).await?;
    Ok(Json(json!({"noise_rules": list})).into_response())
}

async fn create_noise(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    body: Body,
) -> Reply {
    let req: NoiseRequest = read_json(body).await?;
    let rule = st
        .run(&person, move |ops, actor| {
            op::create_noise_rule(ops, actor, req)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(rule)).into_response())
}

async fn delete_noise(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> Reply {
    st.run(&person, move |ops, actor| {
        op::delete_noise_rule(ops, actor, &id)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeverityRequest {
    rules: Vec<SeverityRule>,
    default: Severity,
}

async fn get_severity(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
) -> Reply {
    let rules = st.run(&person, |ops, _| op::severity_rules(ops)).await?;
    Ok(Json(rules).into_response())
}

async fn put_severity(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    body: Body,
) -> Reply {
    let req: SeverityRequest = read_json(body).await?;
    let next = st
        .run(&person, move |ops, actor| {
            op::put_severity_rules(ops, actor, req.rules, req.default)
        })
        .await?;
    Ok(Json(next).into_response())
}

// --- audit ---

async fn audit_log(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
    RawQuery(q): RawQuery,
) -> Reply {
    let (since, limit) = LogPage::parse(q)?;
    let store = st.store.clone();
    let entries = blocking(move || store.list_audit(since, limit)).await?;
    let next = entries.last().map(|e| e.seq).unwrap_or(since);
    Ok(Json(json!({"entries": entries, "next_cursor": next})).into_response())
}

// --- webhooks ---

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookRequest {
    url: String,
}

async fn list_webhooks(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
) -> Reply {
    let store = st.store.clone();
    let list = blocking(move || store.list_webhooks()).await?;
    let views: Vec<op::WebhookView> = list.iter().map(op::view).collect();
    Ok(Json(json!({"webhooks": views})).into_response())
}

async fn create_webhook(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    body: Body,
) -> Reply {
    let req: WebhookRequest = read_json(body).await?;
    let w = st
        .run(&person, move |ops, actor| {
            op::add_webhook(ops, actor, req.url)
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"webhook": op::view(&w), "secret": w.secret, "note": "the secret is shown once; receivers check X-Census-Signature with it"})),
    )
        .into_response())
}

async fn delete_webhook(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> Reply {
    st.run(&person, move |ops, actor| {
        op::remove_webhook(ops, actor, &id)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_deliveries(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
) -> Reply {
    let store = st.store.clone();
    let all = blocking(move || store.list_deliveries()).await?;
    let (dead, pending): (Vec<Delivery>, Vec<Delivery>) =
        all.into_iter().partition(|d| d.dead_at.is_some());
    Ok(Json(json!({"pending": pending, "dead_letters": dead})).into_response())
}

async fn retry_delivery(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> Reply {
    let next = st
        .run(&person, move |ops, actor| {
            op::retry_delivery(ops, actor, &id)
        })
        .await?;
    Ok(Json(next).into_response())
}
