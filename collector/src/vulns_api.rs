//! People's routes for vulnerabilities: the fleet against every advisory held, one
//! advisory with its hosts and the services they run, one computer's findings, and the
//! fleet's list as CSV. HTTP only: the matching is [`crate::vulns::exposure`]; imports are
//! an administrator's command (`census-collector vulns import`), offline by design.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use crate::http::{bounded, query_params, ApiProblem, AppState};
use crate::model::vuln::Level;
use crate::model::*;
use crate::ops::vulns as op;
use crate::people::{Allowed, Person, RouteTable};
use crate::query_api::csv_cell;
use crate::vulns::exposure::{AdvisoryReport, FleetReport, HostReport};

const READERS: Allowed = Allowed::AnyPerson;
const EXPORTERS: Allowed = Allowed::Roles(&[Role::AssetManager, Role::Admin]);
/// Most advisories one answer lists (all are counted).
pub const MAX_LIMIT: usize = 1000;

pub fn routes(table: &mut RouteTable) {
    table
        .people("GET", "/api/v1/vulns", READERS, get(fleet))
        .query::<FleetParams>()
        .json::<FleetReport>();
    table
        .people("GET", "/api/v1/vulns/{id}", READERS, get(advisory))
        .query::<HostsParams>()
        .json::<AdvisoryReport>();
    table
        .people("GET", "/api/v1/cis/{id}/vulns", READERS, get(host))
        .json::<HostReport>();
    table
        .people("GET", "/api/v1/export/vulns", EXPORTERS, get(export))
        .query::<FleetParams>()
        .text("text/csv");
}

type Reply = Result<Response, ApiProblem>;

/// Which advisories to list (the totals count every one).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct FleetParams {
    /// Only advisories rated at least this severe (unrated ones are left out then).
    level: Option<Level>,
    /// At most this many (1 to 1000; default 100; the CSV export lists all).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Only advisories that hold for an installed package of this name.
    #[param(max_length = 200)]
    product: Option<String>,
}

/// Longest product name a filter takes.
pub const MAX_PRODUCT_CHARS: usize = 200;

fn checked(p: &FleetParams) -> Result<(), ApiProblem> {
    match &p.product {
        Some(name) if name.chars().count() > MAX_PRODUCT_CHARS => Err(ApiProblem::new(
            axum::http::StatusCode::BAD_REQUEST,
            format!("product: longer than {MAX_PRODUCT_CHARS} characters"),
            Some("product".into()),
        )),
        _ => Ok(()),
    }
}

/// The fleet report a request asks for: parameters checked, then narrowed to its level and
/// product and cut at its limit (`default_limit` when it gives none; `None`: all).
async fn narrowed_fleet(
    st: &AppState,
    person: &Person,
    q: Option<String>,
    default_limit: Option<usize>,
) -> Result<FleetReport, ApiProblem> {
    let p: FleetParams = query_params(q)?;
    checked(&p)?;
    let limit = match (p.limit, default_limit) {
        (None, None) => None,
        (given, default) => Some(bounded(
            "limit",
            given,
            default.unwrap_or(MAX_LIMIT),
            1,
            MAX_LIMIT,
        )?),
    };
    let mut report = st
        .run(person, |ops, _| op::fleet(ops))
        .await?
        .narrowed(p.level, p.product.as_deref());
    if let Some(limit) = limit {
        report.advisories.truncate(limit);
    }
    Ok(report)
}

async fn fleet(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    RawQuery(q): RawQuery,
) -> Reply {
    let report = narrowed_fleet(&st, &person, q, Some(100)).await?;
    Ok(Json(report).into_response())
}

/// Which of an advisory's hosts to list (all are counted).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct HostsParams {
    /// At most this many hosts, by name (1 to 1000; default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// `next_after` of the previous page (a computer id).
    #[param(max_length = 200)]
    after: Option<String>,
}

async fn advisory(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    let p: HostsParams = query_params(q)?;
    let page = crate::vulns::exposure::HostPage {
        limit: bounded(
            "limit",
            p.limit,
            100,
            1,
            crate::vulns::exposure::MAX_LISTED_HOSTS,
        )?,
        after: p.after,
    };
    let report = st
        .run(&person, move |ops, _| op::advisory(ops, &id, &page))
        .await?;
    Ok(Json(report).into_response())
}

async fn host(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> Reply {
    let report = st.run(&person, move |ops, _| op::host(ops, &id)).await?;
    Ok(Json(report).into_response())
}

async fn export(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    RawQuery(q): RawQuery,
) -> Reply {
    let report = narrowed_fleet(&st, &person, q, None).await?;
    let mut out = String::from("id,aliases,level,score,hosts,packages,summary\n");
    for a in &report.advisories {
        let cells = [
            json!(a.id),
            json!(a.aliases),
            json!(a.level.map(Level::as_str)),
            json!(a.score),
            json!(a.hosts),
            json!(a.packages),
            json!(a.summary),
        ];
        let row: Vec<String> = cells.iter().map(csv_cell).collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    Ok(crate::query_api::csv_download(out, "census-vulns.csv"))
}
