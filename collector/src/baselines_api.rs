//! People's routes for configuration baselines: list, read, make, change, delete; the
//! compliance report (JSON and CSV) and its daily trend. HTTP only: [`crate::ops::baselines`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::{query_params, read_json, ApiProblem, AppState};
use crate::model::baseline::{Baseline, CompliancePoint, Verdict};
use crate::model::Role;
use crate::ops::baselines::{self as op, BaselineRequest};
use crate::people::{Allowed, Person, RouteTable};
use crate::query::compliance::ComplianceReport;

const READERS: Allowed = Allowed::AnyPerson;
/// Who states baselines: change managers and admins.
pub const BASELINE_EDITORS: Allowed = Allowed::Roles(&[Role::ChangeManager, Role::Admin]);
/// Most hosts one report lists.
const MAX_LISTED: usize = 100_000;

pub fn routes(table: &mut RouteTable) {
    table
        .people("GET", "/api/v1/baselines", READERS, get(list))
        .json::<BaselineList>();
    table
        .people("POST", "/api/v1/baselines", BASELINE_EDITORS, post(create))
        .body::<BaselineRequest>()
        .refuses(&[409])
        .created::<Baseline>();
    table
        .people("GET", "/api/v1/baselines/{id}", READERS, get(show))
        .json::<Baseline>();
    table
        .people(
            "PUT",
            "/api/v1/baselines/{id}",
            BASELINE_EDITORS,
            put(update),
        )
        .body::<BaselineRequest>()
        .refuses(&[409])
        .json::<Baseline>();
    table
        .people(
            "DELETE",
            "/api/v1/baselines/{id}",
            BASELINE_EDITORS,
            delete(remove),
        )
        .no_content();
    table
        .people(
            "GET",
            "/api/v1/baselines/{id}/compliance",
            READERS,
            get(compliance),
        )
        .query::<ComplianceParams>()
        .refuses(&[422])
        .json::<ComplianceReport>();
    table
        .people(
            "GET",
            "/api/v1/baselines/{id}/compliance/export",
            READERS,
            get(export),
        )
        .query::<ComplianceParams>()
        .refuses(&[422])
        .text("text/csv");
    table
        .people("GET", "/api/v1/baselines/{id}/trend", READERS, get(trend))
        .json::<ComplianceTrend>();
}

type Reply = Result<Response, ApiProblem>;

#[derive(Debug, Serialize, ToSchema)]
struct BaselineList {
    baselines: Vec<Baseline>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ComplianceTrend {
    points: Vec<CompliancePoint>,
}

/// Which hosts a report lists (the counts are over every host).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ComplianceParams {
    /// Only hosts of this verdict: pass, fail or unknown.
    verdict: Option<Verdict>,
    /// Most hosts listed (default 1000, at most 100000).
    #[param(minimum = 1, maximum = 100000)]
    limit: Option<usize>,
}

async fn list(State(st): State<Arc<AppState>>, Extension(person): Extension<Person>) -> Reply {
    let baselines = st
        .run(&person, |ops, _| Ok(ops.store.list_baselines()?))
        .await?;
    Ok(Json(BaselineList { baselines }).into_response())
}

async fn create(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    body: Body,
) -> Reply {
    let req: BaselineRequest = read_json(body).await?;
    let b = st
        .run(&person, move |ops, actor| op::create(ops, actor, req))
        .await?;
    Ok((StatusCode::CREATED, Json(b)).into_response())
}

async fn show(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> Reply {
    let b = st.run(&person, move |ops, _| op::find(ops, &id)).await?;
    Ok(Json(b).into_response())
}

async fn update(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
    body: Body,
) -> Reply {
    let req: BaselineRequest = read_json(body).await?;
    let b = st
        .run(&person, move |ops, actor| op::update(ops, actor, &id, req))
        .await?;
    Ok(Json(b).into_response())
}

async fn remove(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> Reply {
    st.run(&person, move |ops, actor| op::delete(ops, actor, &id))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn report_of(
    st: &Arc<AppState>,
    person: &Person,
    id: String,
    q: Option<String>,
) -> Result<ComplianceReport, ApiProblem> {
    let p: ComplianceParams = query_params(q)?;
    let limit = match p.limit {
        Some(0) => {
            return Err(ApiProblem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "limit: at least 1",
                Some("limit".into()),
            ))
        }
        Some(n) if n > MAX_LISTED => {
            return Err(ApiProblem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("limit: at most {MAX_LISTED}"),
                Some("limit".into()),
            ))
        }
        other => other,
    };
    st.run(person, move |ops, _| {
        op::report(ops, &id, p.verdict, limit, Utc::now())
    })
    .await
}

async fn compliance(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    Ok(Json(report_of(&st, &person, id, q).await?).into_response())
}

/// One row per (host, rule): what a spreadsheet or an auditor filters.
async fn export(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    let r = report_of(&st, &person, id, q).await?;
    let rows = r.hosts.iter().flat_map(|h| {
        r.rules.iter().zip(&h.findings).map(|(rule, f)| {
            [
                h.id.as_str(),
                h.name.as_str(),
                verdict_text(h.verdict),
                rule.rule.as_str(),
                verdict_text(f.verdict),
                f.evidence.as_str(),
            ]
        })
    });
    let out = crate::query_api::csv_table(
        &[
            "host_id",
            "host_name",
            "host_verdict",
            "rule",
            "verdict",
            "evidence",
        ],
        rows,
    );
    Ok(crate::query_api::csv_download(out, "census-compliance.csv"))
}

pub fn verdict_text(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Unknown => "unknown",
    }
}

async fn trend(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> Reply {
    let points = st.run(&person, move |ops, _| op::trend(ops, &id)).await?;
    Ok(Json(ComplianceTrend { points }).into_response())
}
