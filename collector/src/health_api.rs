//! People's routes for CMDB health: the scores with their drill-down, the daily trend,
//! and the settings administrators change. HTTP only: the scoring is
//! [`crate::query::health`], the settings' write [`crate::ops::health`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::{query_params, read_json, ApiProblem, AppState};
use crate::model::health::{HealthPoint, HealthSettings, RequiredAttributes};
use crate::model::*;
use crate::ops::health as op;
use crate::people::{Allowed, Person, RouteTable};
use crate::query::health::{DefectFilter, DefectKind, HealthReport};

const READERS: Allowed = Allowed::AnyPerson;
const ADMINS: Allowed = Allowed::Roles(&[Role::Admin]);

pub fn routes(table: &mut RouteTable) {
    table
        .people("GET", "/api/v1/health", READERS, get(health))
        .query::<HealthParams>()
        .json::<HealthReport>();
    table
        .people("GET", "/api/v1/health/trend", READERS, get(trend))
        .json::<Trend>();
    table
        .people("GET", "/api/v1/health/settings", READERS, get(get_settings))
        .json::<HealthSettings>();
    table
        .people("PUT", "/api/v1/health/settings", ADMINS, put(put_settings))
        .body::<HealthSettingsRequest>()
        .json::<HealthSettings>();
}

type Reply = Result<Response, ApiProblem>;

/// Which defects to list (every one is counted in the scores whatever the filter).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct HealthParams {
    /// Only defects of CIs of this class.
    class: Option<CiClass>,
    /// Only defects of this kind.
    kind: Option<DefectKind>,
}

async fn health(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    RawQuery(q): RawQuery,
) -> Reply {
    let p: HealthParams = query_params(q)?;
    let filter = DefectFilter {
        class: p.class,
        kind: p.kind,
    };
    let report = st
        .run(&person, move |ops, _| op::report(ops, filter))
        .await?;
    Ok(Json(report).into_response())
}

/// The daily scores, oldest first (one point a day, recorded by the collector).
#[derive(Debug, Serialize, ToSchema)]
struct Trend {
    points: Vec<HealthPoint>,
}

async fn trend(State(st): State<Arc<AppState>>, Extension(person): Extension<Person>) -> Reply {
    let points = st
        .run(&person, |ops, _| Ok(ops.store.health_trend()?))
        .await?;
    Ok(Json(Trend { points }).into_response())
}

async fn get_settings(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
) -> Reply {
    let s = st.run(&person, |ops, _| op::settings(ops)).await?;
    Ok(Json(s).into_response())
}

/// The health settings to save (who saved them and when are recorded by the server).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct HealthSettingsRequest {
    #[schema(max_items = 8)]
    required: Vec<RequiredAttributes>,
    #[schema(minimum = 1, maximum = 8760)]
    silent_after_hours: u32,
}

async fn put_settings(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    body: Body,
) -> Reply {
    let req: HealthSettingsRequest = read_json(body).await?;
    let next = HealthSettings {
        required: req.required,
        silent_after_hours: req.silent_after_hours,
        ..HealthSettings::default()
    };
    let saved = st
        .run(&person, move |ops, actor| {
            op::put_settings(ops, actor, next)
        })
        .await?;
    Ok(Json(saved).into_response())
}
