//! People's routes for business and application services: list, read (as of a past
//! time too), make, change and delete them, and impact both ways. HTTP only: writes are
//! [`crate::ops::services`], impact [`crate::query::services`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::{query_params, read_json, ApiProblem, AppState};
use crate::model::service::Service;
use crate::model::*;
use crate::ops::services::{self as op, ServiceRequest};
use crate::ops::OpError;
use crate::people::{Allowed, Person, RouteTable};
use crate::query::services::{self, AffectedService, Dependencies};

const READERS: Allowed = Allowed::AnyPerson;
/// Who defines services: the people who own the CMDB's content and its changes.
pub const SERVICE_EDITORS: Allowed =
    Allowed::Roles(&[Role::AssetManager, Role::ChangeManager, Role::Admin]);

pub fn routes(table: &mut RouteTable) {
    use axum::routing::{delete, put};
    table
        .people("GET", "/api/v1/services", READERS, get(list))
        .json::<ServiceList>();
    table
        .people("POST", "/api/v1/services", SERVICE_EDITORS, post(create))
        .body::<ServiceRequest>()
        .refuses(&[409])
        .created::<Service>();
    table
        .people("GET", "/api/v1/services/impact", READERS, get(impact))
        .query::<ImpactParams>()
        .refuses(&[404, 422])
        .json::<ServiceImpact>();
    table
        .people("GET", "/api/v1/services/{id}", READERS, get(show))
        .query::<AsOfParams>()
        .json::<Service>();
    table
        .people("PUT", "/api/v1/services/{id}", SERVICE_EDITORS, put(update))
        .body::<ServiceRequest>()
        .refuses(&[409])
        .json::<Service>();
    table
        .people(
            "DELETE",
            "/api/v1/services/{id}",
            SERVICE_EDITORS,
            delete(remove),
        )
        .refuses(&[409])
        .no_content();
    table
        .people(
            "GET",
            "/api/v1/services/{id}/history",
            READERS,
            get(history),
        )
        .json::<ServiceList>();
    table
        .people(
            "GET",
            "/api/v1/services/{id}/dependencies",
            READERS,
            get(dependencies),
        )
        .json::<Dependencies>();
    table
        .people("GET", "/api/v1/services/{id}/vulns", READERS, get(vulns))
        .json::<crate::vulns::exposure::ServiceReport>();
}

type Reply = Result<Response, ApiProblem>;

#[derive(Debug, Serialize, ToSchema)]
struct ServiceList {
    services: Vec<Service>,
}

async fn list(State(st): State<Arc<AppState>>, Extension(person): Extension<Person>) -> Reply {
    let services = st
        .run(&person, |ops, _| Ok(ops.store.list_services()?))
        .await?;
    Ok(Json(ServiceList { services }).into_response())
}

async fn create(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    body: Body,
) -> Reply {
    let req: ServiceRequest = read_json(body).await?;
    let s = st
        .run(&person, move |ops, actor| op::create(ops, actor, req))
        .await?;
    Ok((StatusCode::CREATED, Json(s)).into_response())
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct AsOfParams {
    /// The version in force at this time (RFC 3339).
    as_of: Option<chrono::DateTime<Utc>>,
}

async fn show(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    let p: AsOfParams = query_params(q)?;
    let s = st
        .run(&person, move |ops, _| match p.as_of {
            None => op::find(ops, &id),
            Some(at) => ops
                .store
                .service_history(&id)?
                .into_iter()
                .rev()
                .find(|v| v.updated_at <= at)
                .filter(|v| !v.deleted)
                .ok_or_else(|| OpError::NotFound(format!("service {id} at {at}"))),
        })
        .await?;
    Ok(Json(s).into_response())
}

async fn update(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
    body: Body,
) -> Reply {
    let req: ServiceRequest = read_json(body).await?;
    let s = st
        .run(&person, move |ops, actor| op::update(ops, actor, &id, req))
        .await?;
    Ok(Json(s).into_response())
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

async fn history(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> Reply {
    let services = st
        .run(&person, move |ops, _| {
            let h = ops.store.service_history(&id)?;
            if h.is_empty() {
                return Err(OpError::NotFound(format!("service {id}")));
            }
            Ok(h)
        })
        .await?;
    Ok(Json(ServiceList { services }).into_response())
}

async fn dependencies(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> Reply {
    let d = st
        .run(&person, move |ops, _| {
            let s = op::find(ops, &id)?;
            Ok(services::dependencies(ops.store.as_ref(), &s, Utc::now())?)
        })
        .await?;
    Ok(Json(d).into_response())
}

async fn vulns(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> Reply {
    let report = st
        .run(&person, move |ops, _| {
            let s = op::find(ops, &id)?;
            let deps = services::dependencies(ops.store.as_ref(), &s, Utc::now())?;
            Ok(crate::vulns::exposure::for_service(
                ops.store.as_ref(),
                &s,
                &deps,
            )?)
        })
        .await?;
    Ok(Json(report).into_response())
}

/// What to compute the impact of: exactly one of a CI, a product (with a version range),
/// a subnet, or a change record.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ImpactParams {
    /// A computer's CI id.
    ci: Option<String>,
    /// A product name or `*` pattern; with `versions`, a range in the package's order.
    product: Option<String>,
    versions: Option<String>,
    /// A subnet in CIDR notation.
    subnet: Option<String>,
    /// A change record: the computer it is about.
    change_record: Option<String>,
}

/// The services an impact reaches, most critical first, and the computers it started from.
#[derive(Debug, Serialize, ToSchema)]
struct ServiceImpact {
    computers_total: usize,
    services: Vec<AffectedService>,
    /// For a computer (or a change record's): the computers that reach it over the network
    /// (its clients, and theirs), whose services are counted too.
    network_dependents: Vec<crate::query::map::NamedComputer>,
}

async fn impact(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    RawQuery(q): RawQuery,
) -> Reply {
    let p: ImpactParams = query_params(q)?;
    let given = [
        p.ci.is_some(),
        p.product.is_some(),
        p.subnet.is_some(),
        p.change_record.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given != 1 {
        return Err(ApiProblem::new(
            StatusCode::BAD_REQUEST,
            "give exactly one of ci, product (with versions), subnet, change_record",
            None,
        ));
    }
    if p.versions.is_some() && p.product.is_none() {
        return Err(ApiProblem::new(
            StatusCode::BAD_REQUEST,
            "versions: only with product",
            Some("versions".into()),
        ));
    }
    let out = st
        .run(&person, move |ops, _| {
            let store = ops.store.as_ref();
            let now = Utc::now();
            let computers: BTreeMap<String, String> = if let Some(id) = &p.ci {
                let ci = store
                    .get_ci(id)?
                    .ok_or_else(|| OpError::NotFound(format!("CI {id}")))?;
                if ci.class != CiClass::Computer {
                    return Err(OpError::invalid(format!(
                        "ci: {id} is a {}; impact starts from a computer",
                        ci.class.as_str()
                    )));
                }
                [(ci.id, ci.name)].into_iter().collect()
            } else if let Some(product) = &p.product {
                let versions = p.versions.clone().unwrap_or_default();
                crate::model::licence::VersionRange::parse(&versions).map_err(OpError::invalid)?;
                services::computers_installing(store, product, &versions, now)?
            } else if let Some(cidr) = &p.subnet {
                crate::drift::rules::Cidr::parse(cidr)
                    .map_err(|e| OpError::invalid(format!("subnet: {e}")))?;
                services::computers_of(
                    store,
                    &crate::model::service::RunsOn::Subnet { cidr: cidr.clone() },
                    now,
                )?
            } else {
                let id = p.change_record.clone().unwrap_or_default();
                let record = store
                    .get_change_record(&id)?
                    .ok_or_else(|| OpError::NotFound(format!("change record {id}")))?;
                [(record.ci_id, record.ci_name)].into_iter().collect()
            };
            // What reaches a computer over the network goes down with it.
            let mut network_dependents = Vec::new();
            let mut computers = computers;
            if p.ci.is_some() || p.change_record.is_some() {
                let started: Vec<String> = computers.keys().cloned().collect();
                for id in started {
                    for (dep, name) in crate::ops::map::dependents(ops, &id, now)? {
                        if let std::collections::btree_map::Entry::Vacant(e) =
                            computers.entry(dep.clone())
                        {
                            network_dependents.push(crate::query::map::NamedComputer {
                                id: dep,
                                name: name.clone(),
                            });
                            e.insert(name);
                        }
                    }
                }
            }
            let affected = services::impact_of(store, &computers, now)?;
            Ok(ServiceImpact {
                computers_total: computers.len(),
                services: affected,
                network_dependents,
            })
        })
        .await?;
    Ok(Json(out).into_response())
}
