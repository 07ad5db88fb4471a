//! People's routes for the dependency map: around a computer, around a service, and the
//! edges of either as CSV. HTTP only: [`crate::ops::map`] does the work.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json};
use chrono::Utc;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::http::{query_params, ApiProblem, AppState};
use crate::ops::map as op;
use crate::people::{Allowed, Person, RouteTable};
use crate::query::map::{edge_rows, DependencyMap, EndpointList, EDGE_COLUMNS};
use crate::query_api::csv_table;

const READERS: Allowed = Allowed::AnyPerson;

pub fn routes(table: &mut RouteTable) {
    table
        .people("GET", "/api/v1/map", READERS, get(around))
        .query::<AroundParams>()
        .refuses(&[404, 422])
        .json::<DependencyMap>();
    table
        .people("GET", "/api/v1/map/edges", READERS, get(around_csv))
        .query::<AroundParams>()
        .refuses(&[404, 422])
        .text("text/csv");
    table
        .people("GET", "/api/v1/map/endpoints", READERS, get(endpoints))
        .query::<EndpointParams>()
        .refuses(&[422])
        .json::<EndpointList>();
    table
        .people(
            "GET",
            "/api/v1/map/endpoints/export",
            READERS,
            get(endpoints_csv),
        )
        .query::<EndpointParams>()
        .refuses(&[422])
        .text("text/csv");
    table
        .people("GET", "/api/v1/services/{id}/map", READERS, get(service))
        .query::<DepthParams>()
        .refuses(&[422])
        .json::<DependencyMap>();
    table
        .people(
            "GET",
            "/api/v1/services/{id}/map/edges",
            READERS,
            get(service_csv),
        )
        .query::<DepthParams>()
        .refuses(&[422])
        .text("text/csv");
}

type Reply = Result<Response, ApiProblem>;

/// A computer and how many hops around it.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct AroundParams {
    /// The computer's CI id.
    ci: String,
    /// Hops from it, 1 to 4 (default 1).
    #[param(minimum = 1, maximum = 4)]
    depth: Option<u32>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct DepthParams {
    /// Hops from what the service runs on, 1 to 4 (default 1).
    #[param(minimum = 1, maximum = 4)]
    depth: Option<u32>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct EndpointParams {
    /// Groups listed, 1 to 1000 (default 100), those most computers talk to first.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

async fn endpoint_list(
    st: &Arc<AppState>,
    person: &Person,
    q: Option<String>,
) -> Result<EndpointList, ApiProblem> {
    let p: EndpointParams = query_params(q)?;
    st.run(person, move |ops, _| {
        op::endpoints(ops, p.limit, Utc::now())
    })
    .await
}

async fn endpoints(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    RawQuery(q): RawQuery,
) -> Reply {
    Ok(Json(endpoint_list(&st, &person, q).await?).into_response())
}

async fn endpoints_csv(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    RawQuery(q): RawQuery,
) -> Reply {
    let list = endpoint_list(&st, &person, q).await?;
    let rows = crate::query::map::endpoint_rows(&list);
    Ok(crate::query_api::csv_download(
        csv_table(&crate::query::map::ENDPOINT_COLUMNS, rows),
        "census-map-endpoints.csv",
    ))
}

async fn around_map(
    st: &Arc<AppState>,
    person: &Person,
    q: Option<String>,
) -> Result<DependencyMap, ApiProblem> {
    let p: AroundParams = query_params(q)?;
    st.run(person, move |ops, _| {
        op::around(ops, &p.ci, p.depth, Utc::now())
    })
    .await
}

async fn service_map(
    st: &Arc<AppState>,
    person: &Person,
    id: String,
    q: Option<String>,
) -> Result<DependencyMap, ApiProblem> {
    let p: DepthParams = query_params(q)?;
    st.run(person, move |ops, _| {
        op::of_service(ops, &id, p.depth, Utc::now())
    })
    .await
}

async fn around(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    RawQuery(q): RawQuery,
) -> Reply {
    Ok(Json(around_map(&st, &person, q).await?).into_response())
}

async fn around_csv(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    RawQuery(q): RawQuery,
) -> Reply {
    Ok(csv(&around_map(&st, &person, q).await?))
}

async fn service(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    Ok(Json(service_map(&st, &person, id, q).await?).into_response())
}

async fn service_csv(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    Ok(csv(&service_map(&st, &person, id, q).await?))
}

/// The map's `connects_to` edges as a CSV download.
fn csv(map: &DependencyMap) -> Response {
    crate::query_api::csv_download(
        csv_table(&EDGE_COLUMNS, edge_rows(map)),
        "census-map-edges.csv",
    )
}
