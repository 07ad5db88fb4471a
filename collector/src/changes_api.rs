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
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::{blocking, query_params as query, read_json, ApiProblem, AppState};
use crate::model::*;
use crate::ops::changes::{self as op, NoiseRequest, PlannedRequest};
use crate::people::{Allowed, Person, RouteTable};

pub use crate::http::MAX_PEOPLE_BODY_BYTES;
/// Most items a list route returns at once: the query routes' page.
pub const MAX_PAGE: usize = crate::query::MAX_PAGE;

const READERS: Allowed = Allowed::AnyPerson;
const REVIEWERS: Allowed = Allowed::Roles(&[Role::ChangeManager]);
const RULE_EDITORS: Allowed = Allowed::Roles(&[Role::ChangeManager, Role::Admin]);
const AUDITORS: Allowed = Allowed::Roles(&[Role::Auditor, Role::Admin]);
const ADMINS: Allowed = Allowed::Roles(&[Role::Admin]);

/// Registers the people's drift routes, each with who may call it and what it takes and
/// answers.
pub fn routes(table: &mut RouteTable) {
    use axum::routing::{delete, put};
    table
        .people("GET", "/api/v1/me", READERS, get(me))
        .json::<Me>();
    table
        .people("GET", "/api/v1/change-records", READERS, get(list_records))
        .query::<RecordFilter>()
        .json::<RecordPage>();
    table
        .people(
            "GET",
            "/api/v1/change-records/{id}",
            READERS,
            get(get_record),
        )
        .json::<RecordDetail>();
    table
        .people(
            "POST",
            "/api/v1/change-records/{id}/review",
            REVIEWERS,
            post(review_record),
        )
        .body::<ReviewRequest>()
        .refuses(&[409])
        .json::<ChangeRecord>();
    table
        .people(
            "PUT",
            "/api/v1/change-records/{id}/tickets",
            REVIEWERS,
            put(put_record_tickets),
        )
        .body::<TicketsRequest>()
        .refuses(&[409])
        .json::<ChangeRecord>();
    table
        .people("GET", "/api/v1/changes", READERS, get(feed))
        .query::<LogPage>()
        .json::<FeedPage>();
    table
        .people("GET", "/api/v1/planned-changes", READERS, get(list_planned))
        .json::<PlannedChanges>();
    table
        .people(
            "POST",
            "/api/v1/planned-changes",
            REVIEWERS,
            post(create_planned),
        )
        .body::<PlannedRequest>()
        .created::<PlannedChange>();
    table
        .people(
            "GET",
            "/api/v1/planned-changes/{id}",
            READERS,
            get(get_planned),
        )
        .json::<PlannedChange>();
    table
        .people(
            "PUT",
            "/api/v1/planned-changes/{id}",
            REVIEWERS,
            put(update_planned),
        )
        .body::<PlannedRequest>()
        .refuses(&[409])
        .json::<PlannedChange>();
    table
        .people(
            "POST",
            "/api/v1/planned-changes/{id}/cancel",
            REVIEWERS,
            post(cancel_planned),
        )
        .json::<PlannedChange>();
    table
        .people("GET", "/api/v1/noise-rules", READERS, get(list_noise))
        .json::<NoiseRules>();
    table
        .people(
            "POST",
            "/api/v1/noise-rules",
            RULE_EDITORS,
            post(create_noise),
        )
        .body::<NoiseRequest>()
        .created::<NoiseRule>();
    table
        .people(
            "DELETE",
            "/api/v1/noise-rules/{id}",
            RULE_EDITORS,
            delete(delete_noise),
        )
        .no_content();
    table
        .people("GET", "/api/v1/severity-rules", READERS, get(get_severity))
        .json::<SeverityRules>();
    table
        .people(
            "PUT",
            "/api/v1/severity-rules",
            RULE_EDITORS,
            put(put_severity),
        )
        .body::<SeverityRequest>()
        .json::<SeverityRules>();
    table
        .people("GET", "/api/v1/audit", AUDITORS, get(audit_log))
        .query::<LogPage>()
        .json::<AuditPage>();
    table
        .people("GET", "/api/v1/webhooks", ADMINS, get(list_webhooks))
        .json::<Webhooks>();
    table
        .people("POST", "/api/v1/webhooks", ADMINS, post(create_webhook))
        .body::<WebhookRequest>()
        .created::<CreatedWebhook>();
    table
        .people(
            "DELETE",
            "/api/v1/webhooks/{id}",
            ADMINS,
            delete(delete_webhook),
        )
        .no_content();
    table
        .people(
            "GET",
            "/api/v1/webhooks/deliveries",
            ADMINS,
            get(list_deliveries),
        )
        .json::<Deliveries>();
    table
        .people(
            "POST",
            "/api/v1/webhooks/deliveries/{id}/retry",
            ADMINS,
            post(retry_delivery),
        )
        .json::<Delivery>();
}

type Reply = Result<Response, ApiProblem>;

/// The calling person.
#[derive(Debug, Serialize, ToSchema)]
struct Me {
    name: String,
    role: Role,
    token_id: String,
}

async fn me(Extension(p): Extension<Person>) -> Reply {
    Ok(Json(Me {
        name: p.name,
        role: p.role,
        token_id: p.token_id,
    })
    .into_response())
}

// --- change records ---

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct RecordFilter {
    #[param(inline)]
    state: Option<RecordState>,
    #[param(inline)]
    severity: Option<Severity>,
    #[param(inline)]
    authorization: Option<Authorization>,
    /// Only records of this computer.
    ci: Option<String>,
    /// At most this many (1 to 1000; default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Continue after this record id (records are listed newest first).
    after: Option<String>,
}

/// A page of change records, newest first.
#[derive(Debug, Serialize, ToSchema)]
struct RecordPage {
    /// Records matching the filter, over all pages.
    total: usize,
    records: Vec<ChangeRecord>,
    /// Pass as `after` for the next page; absent on the last.
    next_after: Option<String>,
}

async fn list_records(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
    RawQuery(q): RawQuery,
) -> Reply {
    let f: RecordFilter = query(q)?;
    let limit = crate::http::bounded("limit", f.limit, 100, 1, MAX_PAGE)?;
    let store = st.store.clone();
    let mut records = blocking(move || store.list_change_records()).await?;
    records.reverse();
    let mut records: Vec<ChangeRecord> = records
        .into_iter()
        .filter(|r| f.state.is_none_or(|s| r.state == s))
        .filter(|r| f.severity.is_none_or(|s| r.severity == s))
        .filter(|r| f.authorization.is_none_or(|a| r.authorization == a))
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
    Ok(Json(RecordPage {
        total,
        records,
        next_after: next,
    })
    .into_response())
}

/// A change record with the business services its computer's change reaches.
#[derive(Debug, Serialize, ToSchema)]
struct RecordDetail {
    #[serde(flatten)]
    record: ChangeRecord,
    /// Services running on the computer or depending on one that does, most critical
    /// first, as they stand now.
    services: Vec<crate::query::services::AffectedService>,
}

async fn get_record(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
    Path(id): Path<String>,
) -> Reply {
    let store = st.store.clone();
    let lookup = id.clone();
    let found = blocking(move || {
        let Some(record) = store.get_change_record(&lookup)? else {
            return Ok(None);
        };
        let services = crate::query::services::impact_of_computer(
            store.as_ref(),
            &record.ci_id,
            &record.ci_name,
            chrono::Utc::now(),
        )?;
        Ok::<_, crate::store::StoreError>(Some(RecordDetail { record, services }))
    })
    .await?;
    match found {
        Some(r) => Ok(Json(r).into_response()),
        None => Err(ApiProblem::new(
            StatusCode::NOT_FOUND,
            format!("change record {id} does not exist"),
            None,
        )),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ReviewRequest {
    decision: Decision,
    /// Why (1 to 4000 characters; surrounding white space is dropped).
    #[schema(min_length = 1, max_length = 4000, pattern = r"\S")]
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

/// The ITSM tickets a change record is tracked by: replaces the list it has.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TicketsRequest {
    /// At most 20; an empty list unlinks them all.
    #[schema(max_items = 20)]
    tickets: Vec<TicketRef>,
}

async fn put_record_tickets(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
    body: Body,
) -> Reply {
    let req: TicketsRequest = read_json(body).await?;
    let next = st
        .run(&person, move |ops, actor| {
            op::set_record_tickets(ops, actor, &id, req.tickets)
        })
        .await?;
    Ok(Json(next).into_response())
}

// --- the changed-since feed ---

/// Paging over a numbered log (the feed's cursors, the audit log's sequence numbers):
/// entries after `since`, at most `limit`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct LogPage {
    /// Entries after this cursor (0 or absent: from the start).
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    since: Option<u64>,
    /// At most this many (1 to 1000; default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// Feed events after a cursor, oldest first.
#[derive(Debug, Serialize, ToSchema)]
struct FeedPage {
    events: Vec<FeedEvent>,
    /// Pass as `since` for what follows.
    next_cursor: u64,
}

/// Audit entries after a sequence number, oldest first.
#[derive(Debug, Serialize, ToSchema)]
struct AuditPage {
    entries: Vec<AuditEntry>,
    /// Pass as `since` for what follows.
    next_cursor: u64,
}

#[derive(Debug, Serialize, ToSchema)]
struct PlannedChanges {
    planned_changes: Vec<PlannedChange>,
}

#[derive(Debug, Serialize, ToSchema)]
struct NoiseRules {
    noise_rules: Vec<NoiseRule>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Webhooks {
    webhooks: Vec<op::WebhookView>,
}

/// A new webhook with its HMAC secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
struct CreatedWebhook {
    webhook: op::WebhookView,
    secret: String,
    note: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct Deliveries {
    pending: Vec<Delivery>,
    dead_letters: Vec<Delivery>,
}

impl LogPage {
    fn parse(raw: Option<String>) -> Result<(u64, usize), ApiProblem> {
        let p: LogPage = query(raw)?;
        let since = crate::http::bounded("since", p.since, 0, 0, MAX_CURSOR)?;
        Ok((
            since,
            crate::http::bounded("limit", p.limit, 100, 1, MAX_PAGE)?,
        ))
    }
}

/// Cursors and sequence numbers stay within a signed 64-bit integer, which every JSON
/// client (and PostgreSQL's bigint) holds exactly.
const MAX_CURSOR: u64 = i64::MAX as u64;

async fn feed(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
    RawQuery(q): RawQuery,
) -> Reply {
    let (since, limit) = LogPage::parse(q)?;
    let store = st.store.clone();
    let events = blocking(move || store.feed_since(since, limit)).await?;
    let next = events.last().map(|e| e.cursor).unwrap_or(since);
    Ok(Json(FeedPage {
        events,
        next_cursor: next,
    })
    .into_response())
}

// --- planned changes ---

async fn list_planned(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
) -> Reply {
    let store = st.store.clone();
    let list = blocking(move || store.list_planned_changes()).await?;
    Ok(Json(PlannedChanges {
        planned_changes: list,
    })
    .into_response())
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
    Ok(Json(NoiseRules { noise_rules: list }).into_response())
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

#[derive(Debug, Deserialize, ToSchema)]
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
    Ok(Json(AuditPage {
        entries,
        next_cursor: next,
    })
    .into_response())
}

// --- webhooks ---

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct WebhookRequest {
    /// An http or https URL with a host and no credentials, at most 2048 bytes.
    #[schema(max_length = 2048, format = "uri")]
    url: String,
}

async fn list_webhooks(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
) -> Reply {
    let store = st.store.clone();
    let list = blocking(move || store.list_webhooks()).await?;
    let webhooks: Vec<op::WebhookView> = list.iter().map(op::view).collect();
    Ok(Json(Webhooks { webhooks }).into_response())
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
        Json(CreatedWebhook {
            webhook: op::view(&w),
            secret: w.secret,
            note: "the secret is shown once; receivers check X-Census-Signature with it".into(),
        }),
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
    Ok(Json(Deliveries {
        pending,
        dead_letters: dead,
    })
    .into_response())
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
