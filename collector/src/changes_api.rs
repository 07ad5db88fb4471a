//! People's routes for drift: change records and their review, the changed-since feed,
//! planned changes, noise and severity rules, webhooks, and the audit log. Every write
//! goes through [`Store::commit_people`] with its audit entry; who may call each route is
//! declared where it is registered ([`RouteTable::people`]).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api::{blocking, query_params as query, ApiProblem, AppState};
use crate::model::*;
use crate::people::{Allowed, Person, RouteTable};
use crate::store::{AuditDraft, PeopleWrite, PeopleWriteError};

/// The largest JSON body a people route reads.
pub const MAX_PEOPLE_BODY_BYTES: usize = 256 * 1024;
/// Longest review or rule comment.
pub const MAX_COMMENT_CHARS: usize = 4000;
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

fn store_failed(e: impl std::fmt::Display) -> ApiProblem {
    ApiProblem::new(StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}"), None)
}

fn unprocessable(message: impl Into<String>) -> ApiProblem {
    let message = message.into();
    let field = message.split(':').next().map(str::to_string);
    ApiProblem::new(StatusCode::UNPROCESSABLE_ENTITY, message, field)
}

/// Reads a JSON body of at most [`MAX_PEOPLE_BODY_BYTES`]; a decoding error names the field.
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

/// Applies a person's write with its audit entry.
/// What `person` did to `target`, for the audit log.
pub(crate) fn draft(
    person: &Person,
    action: &str,
    target: &str,
    before: Option<Value>,
    after: Option<Value>,
    comment: Option<String>,
) -> AuditDraft {
    AuditDraft {
        actor: person.name.clone(),
        action: action.into(),
        target: target.into(),
        before,
        after,
        comment,
    }
}

pub(crate) async fn audited(
    st: &AppState,
    write: PeopleWrite,
    draft: AuditDraft,
) -> Result<AuditEntry, ApiProblem> {
    let store = st.store.clone();
    let (actor, action, target) = (
        draft.actor.clone(),
        draft.action.clone(),
        draft.target.clone(),
    );
    let r = tokio::task::spawn_blocking(move || store.commit_people(&write, draft, Utc::now()))
        .await
        .map_err(|e| ApiProblem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None))?;
    match r {
        Ok(entry) => {
            st.ingest.invalidate_rules();
            st.ingest.events.notify_one();
            tracing::info!(
                actor,
                action,
                target,
                audit_seq = entry.seq,
                "audited change"
            );
            Ok(entry)
        }
        Err(PeopleWriteError::Stale(m)) => Err(ApiProblem::new(
            StatusCode::CONFLICT,
            format!("{m} changed since it was read; reload and try again"),
            None,
        )),
        Err(PeopleWriteError::NotFound(m)) => Err(ApiProblem::new(
            StatusCode::NOT_FOUND,
            format!("{m} does not exist"),
            None,
        )),
        Err(PeopleWriteError::Store(e)) => Err(store_failed(e)),
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(rand::random::<[u8; 8]>()))
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

/// Applies a review to a record: the whole record, or some items (the record is decided
/// once every item that counts is).
pub fn apply_review(
    record: &ChangeRecord,
    decision: Decision,
    items: Option<&[usize]>,
    review: Review,
) -> Result<ChangeRecord, String> {
    if record.state != RecordState::Open {
        let by = record
            .review
            .as_ref()
            .map(|r| format!(" by {} at {}", r.by, r.at))
            .unwrap_or_default();
        // The reviewer's name and the record id keep their case.
        return Err(format!(
            "state: change record {} is already {}{by}; reviews are final",
            record.id,
            record.state.as_str()
        ));
    }
    let mut next = record.clone();
    match items {
        None => {
            for item in next.items.iter_mut().filter(|i| i.review.is_none()) {
                item.review = Some(review.clone());
            }
            next.state = match decision {
                Decision::Accepted => RecordState::Accepted,
                Decision::Rejected => RecordState::Rejected,
            };
            next.review = Some(review);
        }
        Some(indexes) => {
            if indexes.is_empty() {
                return Err("items: list at least one item index, or omit items".into());
            }
            for &i in indexes {
                let Some(item) = next.items.get_mut(i) else {
                    return Err(format!(
                        "items: index {i} is out of range (the record has {} items)",
                        record.items.len()
                    ));
                };
                if item.review.is_some() {
                    return Err(format!("items: item {i} is already reviewed"));
                }
                item.review = Some(review.clone());
            }
            let counted: Vec<&ChangeItem> = next
                .items
                .iter()
                .filter(|i| i.suppressed.is_none())
                .collect();
            if counted.iter().all(|i| i.review.is_some()) {
                let all_accepted = counted.iter().all(|i| {
                    i.review
                        .as_ref()
                        .is_some_and(|r| r.decision == Decision::Accepted)
                });
                next.state = if all_accepted {
                    RecordState::Accepted
                } else {
                    RecordState::Rejected
                };
                next.review = Some(Review {
                    decision: if all_accepted {
                        Decision::Accepted
                    } else {
                        Decision::Rejected
                    },
                    ..review
                });
            }
        }
    }
    Ok(next)
}

fn review_summary(r: &ChangeRecord) -> Value {
    json!({
        "state": r.state,
        "items": r.items.iter().map(|i| i.review.as_ref().map(|r| r.decision)).collect::<Vec<_>>(),
    })
}

async fn review_record(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
    body: Body,
) -> Reply {
    let req: ReviewRequest = read_json(body).await?;
    let next = review(&st, &person, &id, req.decision, req.items, &req.comment).await?;
    Ok(Json(next).into_response())
}

/// Decides a change record or some of its items, audited; 409 when it is already decided
/// or another reviewer won the race. Shared by the API and the web UI.
pub async fn review(
    st: &AppState,
    person: &Person,
    id: &str,
    decision: Decision,
    items: Option<Vec<usize>>,
    comment: &str,
) -> Result<ChangeRecord, ApiProblem> {
    let comment = comment.trim().to_string();
    if comment.is_empty() || comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(unprocessable(format!(
            "comment: a review needs a comment of 1 to {MAX_COMMENT_CHARS} characters"
        )));
    }
    let store = st.store.clone();
    let lookup = id.to_string();
    let Some(record) = blocking(move || store.get_change_record(&lookup)).await? else {
        return Err(ApiProblem::new(
            StatusCode::NOT_FOUND,
            format!("change record {id} does not exist"),
            None,
        ));
    };
    let review = Review {
        decision,
        by: person.name.clone(),
        at: Utc::now(),
        comment: comment.clone(),
    };
    let next = apply_review(&record, decision, items.as_deref(), review).map_err(|e| {
        if e.starts_with("state:") || e.contains("already reviewed") {
            ApiProblem::new(StatusCode::CONFLICT, e, None)
        } else {
            unprocessable(e)
        }
    })?;
    audited(
        st,
        PeopleWrite::ReviewRecord {
            expected: Box::new(record.clone()),
            record: Box::new(next.clone()),
        },
        draft(
            person,
            "change_record.review",
            id,
            Some(review_summary(&record)),
            Some(review_summary(&next)),
            Some(comment),
        ),
    )
    .await?;
    Ok(next)
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedRequest {
    pub title: String,
    pub scope: PlanScope,
    pub allowed: Vec<ItemPattern>,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
}

async fn list_planned(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
) -> Reply {
    let store = st.store.clone();
    let list = blocking(move || store.list_planned_changes()).await?;
    Ok(Json(json!({"planned_changes": list})).into_response())
}

async fn find_planned(st: &AppState, id: &str) -> Result<PlannedChange, ApiProblem> {
    let store = st.store.clone();
    let list = blocking(move || store.list_planned_changes()).await?;
    list.into_iter().find(|p| p.id == id).ok_or_else(|| {
        ApiProblem::new(
            StatusCode::NOT_FOUND,
            format!("planned change {id} does not exist"),
            None,
        )
    })
}

async fn get_planned(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
    Path(id): Path<String>,
) -> Reply {
    Ok(Json(find_planned(&st, &id).await?).into_response())
}

async fn create_planned(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    body: Body,
) -> Reply {
    let req: PlannedRequest = read_json(body).await?;
    let p = create_planned_change(&st, &person, req).await?;
    Ok((StatusCode::CREATED, Json(p)).into_response())
}

/// Stores a new, validated planned change, audited.
pub async fn create_planned_change(
    st: &AppState,
    person: &Person,
    req: PlannedRequest,
) -> Result<PlannedChange, ApiProblem> {
    let now = Utc::now();
    let p = PlannedChange {
        id: new_id("pln"),
        title: req.title,
        scope: req.scope,
        allowed: req.allowed,
        window_start: req.window_start,
        window_end: req.window_end,
        state: PlannedState::Active,
        created_by: person.name.clone(),
        created_at: now,
        updated_at: now,
    };
    p.validate().map_err(unprocessable)?;
    let after = serde_json::to_value(&p).ok();
    audited(
        st,
        PeopleWrite::PutPlannedChange(p.clone()),
        draft(person, "planned_change.create", &p.id, None, after, None),
    )
    .await?;
    Ok(p)
}

async fn update_planned(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
    body: Body,
) -> Reply {
    let req: PlannedRequest = read_json(body).await?;
    let before = find_planned(&st, &id).await?;
    if before.state == PlannedState::Cancelled {
        return Err(ApiProblem::new(
            StatusCode::CONFLICT,
            format!("planned change {id} is cancelled; create a new one"),
            None,
        ));
    }
    let p = PlannedChange {
        title: req.title,
        scope: req.scope,
        allowed: req.allowed,
        window_start: req.window_start,
        window_end: req.window_end,
        updated_at: Utc::now(),
        ..before.clone()
    };
    p.validate().map_err(unprocessable)?;
    audited(
        &st,
        PeopleWrite::PutPlannedChange(p.clone()),
        draft(
            &person,
            "planned_change.update",
            &id,
            serde_json::to_value(&before).ok(),
            serde_json::to_value(&p).ok(),
            None,
        ),
    )
    .await?;
    Ok(Json(p).into_response())
}

async fn cancel_planned(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> Reply {
    Ok(Json(cancel_planned_change(&st, &person, &id).await?).into_response())
}

/// Cancels a planned change (idempotent), audited.
pub async fn cancel_planned_change(
    st: &AppState,
    person: &Person,
    id: &str,
) -> Result<PlannedChange, ApiProblem> {
    let before = find_planned(st, id).await?;
    let p = PlannedChange {
        state: PlannedState::Cancelled,
        updated_at: Utc::now(),
        ..before.clone()
    };
    audited(
        st,
        PeopleWrite::PutPlannedChange(p.clone()),
        draft(
            person,
            "planned_change.cancel",
            id,
            serde_json::to_value(&before).ok(),
            serde_json::to_value(&p).ok(),
            None,
        ),
    )
    .await?;
    Ok(p)
}

// --- noise and severity rules ---

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseRequest {
    pub class: CiClass,
    pub pattern: ItemPattern,
    #[serde(default)]
    pub note: String,
}

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
    let rule = create_noise_rule(&st, &person, req).await?;
    Ok((StatusCode::CREATED, Json(rule)).into_response())
}

/// Stores a validated noise rule, audited.
pub async fn create_noise_rule(
    st: &AppState,
    person: &Person,
    req: NoiseRequest,
) -> Result<NoiseRule, ApiProblem> {
    req.pattern.validate("pattern").map_err(unprocessable)?;
    if req.note.chars().count() > MAX_COMMENT_CHARS {
        return Err(unprocessable(format!(
            "note: at most {MAX_COMMENT_CHARS} characters"
        )));
    }
    let rule = NoiseRule {
        id: new_id("noise"),
        class: req.class,
        pattern: req.pattern,
        note: req.note,
        created_by: person.name.clone(),
        created_at: Utc::now(),
    };
    audited(
        st,
        PeopleWrite::PutNoiseRule(rule.clone()),
        draft(
            person,
            "noise_rule.create",
            &rule.id,
            None,
            serde_json::to_value(&rule).ok(),
            None,
        ),
    )
    .await?;
    Ok(rule)
}

async fn delete_noise(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> Reply {
    delete_noise_rule(&st, &person, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Deletes a noise rule, audited with what it was.
pub async fn delete_noise_rule(st: &AppState, person: &Person, id: &str) -> Result<(), ApiProblem> {
    let store = st.store.clone();
    let before = blocking(move || store.list_noise_rules())
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| {
            ApiProblem::new(
                StatusCode::NOT_FOUND,
                format!("noise rule {id} does not exist"),
                None,
            )
        })?;
    audited(
        st,
        PeopleWrite::DeleteNoiseRule(id.to_string()),
        draft(
            person,
            "noise_rule.delete",
            id,
            serde_json::to_value(&before).ok(),
            None,
            None,
        ),
    )
    .await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeverityRequest {
    rules: Vec<SeverityRule>,
    default: Severity,
}

async fn current_severity(st: &AppState) -> Result<SeverityRules, ApiProblem> {
    let store = st.store.clone();
    Ok(blocking(move || store.severity_rules())
        .await?
        .unwrap_or_else(|| SeverityRules::defaults(Utc::now())))
}

async fn get_severity(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
) -> Reply {
    Ok(Json(current_severity(&st).await?).into_response())
}

async fn put_severity(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    body: Body,
) -> Reply {
    let req: SeverityRequest = read_json(body).await?;
    if req.rules.len() > 1000 {
        return Err(unprocessable("rules: at most 1000 rules"));
    }
    for (i, r) in req.rules.iter().enumerate() {
        r.pattern
            .validate(&format!("rules[{i}].pattern"))
            .map_err(unprocessable)?;
    }
    let before = current_severity(&st).await?;
    let next = SeverityRules {
        rules: req.rules,
        default: req.default,
        updated_by: person.name.clone(),
        updated_at: Utc::now(),
    };
    audited(
        &st,
        PeopleWrite::PutSeverityRules(next.clone()),
        draft(
            &person,
            "severity_rules.update",
            "severity_rules",
            serde_json::to_value(&before).ok(),
            serde_json::to_value(&next).ok(),
            None,
        ),
    )
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

/// A webhook as listed: the secret is shown once, at creation.
#[derive(Serialize)]
struct WebhookView<'a> {
    id: &'a str,
    url: &'a str,
    created_by: &'a str,
    created_at: DateTime<Utc>,
    active: bool,
}

fn view(w: &Webhook) -> WebhookView<'_> {
    WebhookView {
        id: &w.id,
        url: &w.url,
        created_by: &w.created_by,
        created_at: w.created_at,
        active: w.active,
    }
}

/// A webhook target: http or https, a host, at most 2048 bytes.
pub fn validate_webhook_url(url: &str) -> Result<(), String> {
    if url.len() > 2048 {
        return Err("url: at most 2048 bytes".into());
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("url: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "url: scheme {} is not http or https",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("url: needs a host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("url: must not carry credentials; the HMAC signature authenticates".into());
    }
    Ok(())
}

async fn list_webhooks(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
) -> Reply {
    let store = st.store.clone();
    let list = blocking(move || store.list_webhooks()).await?;
    let views: Vec<WebhookView> = list.iter().map(view).collect();
    Ok(Json(json!({"webhooks": views})).into_response())
}

async fn create_webhook(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    body: Body,
) -> Reply {
    let req: WebhookRequest = read_json(body).await?;
    let w = add_webhook(&st, &person, req.url).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"webhook": view(&w), "secret": w.secret, "note": "the secret is shown once; receivers check X-Census-Signature with it"})),
    )
        .into_response())
}

/// Registers a webhook with a fresh HMAC secret (returned: shown once), audited without it.
pub async fn add_webhook(
    st: &AppState,
    person: &Person,
    url: String,
) -> Result<Webhook, ApiProblem> {
    validate_webhook_url(&url).map_err(unprocessable)?;
    let w = Webhook {
        id: new_id("whk"),
        url,
        secret: hex::encode(rand::random::<[u8; 32]>()),
        created_by: person.name.clone(),
        created_at: Utc::now(),
        active: true,
    };
    audited(
        st,
        PeopleWrite::PutWebhook(w.clone()),
        draft(
            person,
            "webhook.create",
            &w.id,
            None,
            serde_json::to_value(view(&w)).ok(),
            None,
        ),
    )
    .await?;
    Ok(w)
}

async fn delete_webhook(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> Reply {
    remove_webhook(&st, &person, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn remove_webhook(st: &AppState, person: &Person, id: &str) -> Result<(), ApiProblem> {
    audited(
        st,
        PeopleWrite::DeleteWebhook(id.to_string()),
        draft(person, "webhook.delete", id, None, None, None),
    )
    .await?;
    Ok(())
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
    let store = st.store.clone();
    let lookup = id.clone();
    let Some(before) = blocking(move || store.list_deliveries())
        .await?
        .into_iter()
        .find(|d| d.id == lookup)
    else {
        return Err(ApiProblem::new(
            StatusCode::NOT_FOUND,
            format!("delivery {id} does not exist"),
            None,
        ));
    };
    let next = Delivery {
        attempts: 0,
        dead_at: None,
        next_attempt_at: Utc::now(),
        ..before.clone()
    };
    audited(
        &st,
        PeopleWrite::Redeliver(next.clone()),
        draft(
            &person,
            "webhook.redeliver",
            &id,
            serde_json::to_value(&before).ok(),
            serde_json::to_value(&next).ok(),
            None,
        ),
    )
    .await?;
    Ok(Json(next).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> ChangeRecord {
        let item = |s: &str| ChangeItem {
            kind: ItemKind::SoftwareUpgraded,
            aspect: Aspect::Software,
            key: s.into(),
            subject: s.into(),
            old: None,
            new: None,
            severity: Severity::Low,
            suppressed: None,
            planned_change: None,
            review: None,
        };
        ChangeRecord {
            id: "chg_1".into(),
            ci_id: "cmp_1".into(),
            ci_name: "h".into(),
            agent_id: "a".into(),
            seq: 1,
            detected_at: Utc::now(),
            from_version: 1,
            to_version: 2,
            items: (0..n).map(|i| item(&format!("p{i}"))).collect(),
            severity: Severity::Low,
            authorization: Authorization::Unauthorized,
            planned_changes: vec![],
            state: RecordState::Open,
            review: None,
        }
    }

    fn by(d: Decision) -> Review {
        Review {
            decision: d,
            by: "cm".into(),
            at: Utc::now(),
            comment: "c".into(),
        }
    }

    #[test]
    fn whole_record_review_is_final() {
        let r = apply_review(&record(2), Decision::Accepted, None, by(Decision::Accepted)).unwrap();
        assert_eq!(r.state, RecordState::Accepted);
        assert!(r.items.iter().all(|i| i.review.is_some()));
        let again = apply_review(&r, Decision::Rejected, None, by(Decision::Rejected)).unwrap_err();
        assert!(again.starts_with("state:"), "{again}");
    }

    #[test]
    fn item_reviews_decide_the_record_when_all_are_decided() {
        let r = apply_review(
            &record(2),
            Decision::Accepted,
            Some(&[0]),
            by(Decision::Accepted),
        )
        .unwrap();
        assert_eq!(r.state, RecordState::Open);
        assert!(
            apply_review(&r, Decision::Accepted, Some(&[0]), by(Decision::Accepted))
                .unwrap_err()
                .contains("already reviewed")
        );
        assert!(
            apply_review(&r, Decision::Accepted, Some(&[5]), by(Decision::Accepted))
                .unwrap_err()
                .contains("out of range")
        );
        let r = apply_review(&r, Decision::Rejected, Some(&[1]), by(Decision::Rejected)).unwrap();
        assert_eq!(
            r.state,
            RecordState::Rejected,
            "one rejected item rejects the record"
        );
    }

    #[test]
    fn webhook_urls() {
        validate_webhook_url("https://hooks.example.com/census").unwrap();
        validate_webhook_url("http://127.0.0.1:9000/x").unwrap();
        assert!(validate_webhook_url("ftp://x/").is_err());
        assert!(validate_webhook_url("https://user:pw@x/").is_err());
        assert!(validate_webhook_url("not a url").is_err());
    }
}
