//! Business and application services: made, changed and deleted by people, each change a
//! new version (history), audited, checked against what exists (computers, services) and
//! refused when it would close a cycle of dependencies.

use std::collections::BTreeMap;

use chrono::Utc;
use serde::Deserialize;

use super::{draft, Actor, OpError, Ops};
use crate::model::service::{self, RunsOn, Service, ServiceKind};
use crate::model::*;
use crate::store::PeopleWrite;

/// A service as people send it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceRequest {
    pub kind: ServiceKind,
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 128)]
    pub owner: String,
    #[schema(minimum = 1, maximum = 4)]
    pub criticality: u8,
    #[serde(default)]
    #[schema(max_length = 128)]
    pub support_group: String,
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub description: String,
    #[serde(default)]
    #[schema(max_items = 256)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    #[schema(max_items = 256)]
    pub runs_on: Vec<RunsOn>,
    /// On a change: refuse it (409) unless the service is still at this version.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub expected_version: Option<u64>,
}

pub fn find(ops: &Ops, id: &str) -> Result<Service, OpError> {
    ops.store
        .get_service(id)?
        .filter(|s| !s.deleted)
        .ok_or_else(|| OpError::NotFound(format!("service {id}")))
}

pub fn create(ops: &Ops, actor: &Actor, req: ServiceRequest) -> Result<Service, OpError> {
    super::version_bound(req.expected_version)?;
    if ops.store.list_services()?.len() >= service::MAX_SERVICES {
        return Err(OpError::Conflict(format!(
            "at most {} services",
            service::MAX_SERVICES
        )));
    }
    let now = Utc::now();
    let blank = Service {
        id: format!("bsv_{}", hex::encode(rand::random::<[u8; 10]>())),
        kind: req.kind,
        name: String::new(),
        owner: String::new(),
        criticality: 0,
        support_group: String::new(),
        description: String::new(),
        depends_on: Vec::new(),
        runs_on: Vec::new(),
        version: 0,
        created_at: now,
        updated_at: now,
        updated_by: String::new(),
        deleted: false,
    };
    write(
        ops,
        actor,
        requested(&blank, req, actor),
        None,
        "service.create",
    )
}

pub fn update(ops: &Ops, actor: &Actor, id: &str, req: ServiceRequest) -> Result<Service, OpError> {
    let before = find(ops, id)?;
    super::expect_version(id, req.expected_version, before.version)?;
    let next = requested(&before, req, actor);
    write(ops, actor, next, Some(before), "service.update")
}

/// `base`'s next version as `req` asks it to be.
fn requested(base: &Service, req: ServiceRequest, actor: &Actor) -> Service {
    Service {
        kind: req.kind,
        name: req.name.trim().to_string(),
        owner: req.owner,
        criticality: req.criticality,
        support_group: req.support_group,
        description: req.description,
        depends_on: req.depends_on,
        runs_on: req.runs_on,
        version: base.version + 1,
        updated_at: Utc::now(),
        updated_by: actor.name.clone(),
        ..base.clone()
    }
}

/// Deletes a service (its history stays); refused while another service depends on it.
pub fn delete(ops: &Ops, actor: &Actor, id: &str) -> Result<(), OpError> {
    let before = find(ops, id)?;
    let dependents: Vec<String> = ops
        .store
        .list_services()?
        .into_iter()
        .filter(|s| s.depends_on.iter().any(|d| d == id))
        .map(|s| format!("{} ({})", s.name, s.id))
        .collect();
    if !dependents.is_empty() {
        return Err(OpError::Conflict(format!(
            "{} depends on it: {}",
            if dependents.len() == 1 {
                "a service"
            } else {
                "services"
            },
            dependents.join(", ")
        )));
    }
    let next = Service {
        version: before.version + 1,
        updated_at: Utc::now(),
        updated_by: actor.name.clone(),
        deleted: true,
        ..before.clone()
    };
    let expected = before.version;
    ops.commit(
        PeopleWrite::PutService {
            service: next,
            expected,
        },
        draft(
            actor,
            "service.delete",
            id,
            serde_json::to_value(&before).ok(),
            None,
            None,
        ),
    )?;
    Ok(())
}

/// Every check, then the write of `next` over `before`.
fn write(
    ops: &Ops,
    actor: &Actor,
    mut next: Service,
    before: Option<Service>,
    action: &str,
) -> Result<Service, OpError> {
    next.validate().map_err(OpError::invalid)?;
    next.depends_on.sort();
    let others = ops.store.list_services()?;
    if let Some(other) = others
        .iter()
        .find(|s| s.id != next.id && s.name.to_lowercase() == next.name.to_lowercase())
    {
        return Err(OpError::Conflict(format!(
            "name: '{}' is already the name of {}",
            next.name, other.id
        )));
    }
    for (i, d) in next.depends_on.iter().enumerate() {
        if !others.iter().any(|s| s.id == *d) {
            return Err(OpError::Invalid {
                field: Some(format!("depends_on[{i}]")),
                message: format!("depends_on[{i}]: no service {d}"),
            });
        }
    }
    let graph: BTreeMap<String, Vec<String>> = others
        .iter()
        .filter(|s| s.id != next.id)
        .map(|s| (s.id.clone(), s.depends_on.clone()))
        .collect();
    if let Some(path) = service::cycle(&next.id, &next.depends_on, &graph) {
        let names: BTreeMap<&str, &str> = others
            .iter()
            .map(|s| (s.id.as_str(), s.name.as_str()))
            .chain(std::iter::once((next.id.as_str(), next.name.as_str())))
            .collect();
        let shown: Vec<&str> = path
            .iter()
            .map(|id| names.get(id.as_str()).copied().unwrap_or(id))
            .collect();
        return Err(OpError::Conflict(format!(
            "depends_on: that would make a cycle: {}",
            shown.join(" -> ")
        )));
    }
    for (i, r) in next.runs_on.iter().enumerate() {
        match r {
            RunsOn::Computer { id } => {
                let ok = ops
                    .store
                    .get_ci(id)?
                    .is_some_and(|c| c.class == CiClass::Computer);
                if !ok {
                    return Err(OpError::Invalid {
                        field: Some(format!("runs_on[{i}].id")),
                        message: format!("runs_on[{i}].id: no computer {id}"),
                    });
                }
            }
            RunsOn::Filter { filter } => {
                crate::query::filter::parse_for(CiClass::Computer, filter).map_err(|e| {
                    OpError::Invalid {
                        field: Some(format!("runs_on[{i}].filter")),
                        message: format!("runs_on[{i}].filter: {e}"),
                    }
                })?;
            }
            RunsOn::Product { .. } | RunsOn::Subnet { .. } => {}
        }
    }
    let expected = before.as_ref().map_or(0, |b| b.version);
    ops.commit(
        PeopleWrite::PutService {
            service: next.clone(),
            expected,
        },
        draft(
            actor,
            action,
            &next.id,
            before.and_then(|b| serde_json::to_value(b).ok()),
            serde_json::to_value(&next).ok(),
            None,
        ),
    )?;
    Ok(next)
}
