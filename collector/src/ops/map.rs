//! The dependency map as every transport asks for it: around a computer or a service, with
//! the request's bounds checked and the collector's flow expiry applied.

use chrono::{DateTime, Utc};

use super::{OpError, Ops};
use crate::model::CiClass;
use crate::query::map::{self, DependencyMap, EndpointList, MAX_DEPTH, MAX_ENDPOINT_GROUPS};

/// Hops shown when a request does not say.
pub const DEFAULT_DEPTH: u32 = 1;

fn expiry(ops: &Ops) -> chrono::Duration {
    ops.ingest
        .as_ref()
        .map(|i| i.flow_expiry())
        .unwrap_or_else(|| chrono::Duration::days(crate::model::flows::DEFAULT_EXPIRY_DAYS))
}

fn checked_depth(depth: Option<u32>) -> Result<u32, OpError> {
    match depth.unwrap_or(DEFAULT_DEPTH) {
        d if (1..=MAX_DEPTH).contains(&d) => Ok(d),
        d => Err(OpError::invalid(format!(
            "depth: {d} is outside 1..={MAX_DEPTH}"
        ))),
    }
}

/// The map around computer `id`.
pub fn around(
    ops: &Ops,
    id: &str,
    depth: Option<u32>,
    now: DateTime<Utc>,
) -> Result<DependencyMap, OpError> {
    let depth = checked_depth(depth)?;
    let ci = ops
        .store
        .get_ci(id)?
        .ok_or_else(|| OpError::NotFound(format!("CI {id}")))?;
    if ci.class != CiClass::Computer {
        return Err(OpError::invalid(format!(
            "ci: {id} is a {}; a map starts from a computer",
            ci.class.as_str()
        )));
    }
    Ok(map::neighbourhood(
        ops.store.as_ref(),
        &[ci.id],
        depth,
        now,
        expiry(ops),
    )?)
}

/// The map of service `id`: what it runs on and their neighbourhood.
pub fn of_service(
    ops: &Ops,
    id: &str,
    depth: Option<u32>,
    now: DateTime<Utc>,
) -> Result<DependencyMap, OpError> {
    let depth = checked_depth(depth)?;
    let service = super::services::find(ops, id)?;
    Ok(map::of_service(
        ops.store.as_ref(),
        &service,
        depth,
        now,
        expiry(ops),
    )?)
}

/// The computers that reach `id` over the network (its clients and theirs): what an
/// outage of `id` takes with it.
pub fn dependents(
    ops: &Ops,
    id: &str,
    now: DateTime<Utc>,
) -> Result<std::collections::BTreeMap<String, String>, OpError> {
    Ok(map::dependents(
        ops.store.as_ref(),
        id,
        IMPACT_HOPS,
        now,
        expiry(ops),
    )?)
}

/// Endpoint groups listed when a request does not say.
pub const DEFAULT_ENDPOINTS: usize = 100;

/// The external endpoint groups the fleet talks to, those most computers reach first.
pub fn endpoints(
    ops: &Ops,
    limit: Option<usize>,
    now: DateTime<Utc>,
) -> Result<EndpointList, OpError> {
    let limit = match limit.unwrap_or(DEFAULT_ENDPOINTS) {
        n if (1..=MAX_ENDPOINT_GROUPS).contains(&n) => n,
        n => {
            return Err(OpError::invalid(format!(
                "limit: {n} is outside 1..={MAX_ENDPOINT_GROUPS}"
            )))
        }
    };
    Ok(map::endpoints(ops.store.as_ref(), now, expiry(ops), limit)?)
}

/// How far up the network an impact from a computer looks (clients, and their clients).
pub const IMPACT_HOPS: u32 = 2;
