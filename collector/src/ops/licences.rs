//! Licences: created, edited and deleted by asset managers and administrators, each write
//! audited with before and after.

use chrono::Utc;
use serde::Deserialize;

use super::{draft, new_id, Actor, OpError, Ops};
use crate::model::licence::{self, Licence, MAX_LICENCES};
use crate::store::PeopleWrite;

/// What a person writes about a licence (the server records who and when).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LicenceRequest {
    #[schema(max_length = 200)]
    pub name: String,
    /// A product name, or a pattern with `*` (case-insensitive).
    #[schema(max_length = 200)]
    pub product: String,
    /// Conditions in the package's own version order, joined by commas (">= 16.0, < 17").
    #[serde(default)]
    #[schema(max_length = 400)]
    pub versions: String,
    #[schema(minimum = 0, maximum = 10_000_000)]
    pub seats: u32,
    /// Last valid day, YYYY-MM-DD.
    #[serde(default)]
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub expires: Option<String>,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub cost: Option<f64>,
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub notes: Option<String>,
}

fn build(req: LicenceRequest, id: String, actor: &Actor, created: Option<&Licence>) -> Licence {
    let now = Utc::now();
    Licence {
        id,
        name: req.name,
        product: req.product,
        versions: req.versions,
        seats: req.seats,
        expires: req.expires.filter(|e| !e.is_empty()),
        cost: req.cost,
        notes: req.notes.filter(|n| !n.is_empty()),
        created_by: created.map_or_else(|| actor.name.clone(), |c| c.created_by.clone()),
        created_at: created.map_or(now, |c| c.created_at),
        updated_at: now,
    }
}

pub fn find(ops: &Ops, id: &str) -> Result<Licence, OpError> {
    ops.store
        .list_licences()?
        .into_iter()
        .find(|l| l.id == id)
        .ok_or_else(|| OpError::NotFound(format!("licence {id}")))
}

pub fn create(ops: &Ops, actor: &Actor, req: LicenceRequest) -> Result<Licence, OpError> {
    if ops.store.list_licences()?.len() >= MAX_LICENCES {
        return Err(OpError::Conflict(format!(
            "there are {MAX_LICENCES} licences already; delete some first"
        )));
    }
    let l = build(req, new_id("lic"), actor, None);
    licence::validate(&l).map_err(OpError::invalid)?;
    ops.audited(
        PeopleWrite::PutLicence(l.clone()),
        draft(
            actor,
            "licence.create",
            &l.id,
            None,
            serde_json::to_value(&l).ok(),
            None,
        ),
    )?;
    Ok(l)
}

pub fn update(ops: &Ops, actor: &Actor, id: &str, req: LicenceRequest) -> Result<Licence, OpError> {
    let before = find(ops, id)?;
    let l = build(req, id.to_string(), actor, Some(&before));
    licence::validate(&l).map_err(OpError::invalid)?;
    ops.audited(
        PeopleWrite::PutLicence(l.clone()),
        draft(
            actor,
            "licence.update",
            id,
            serde_json::to_value(&before).ok(),
            serde_json::to_value(&l).ok(),
            None,
        ),
    )?;
    Ok(l)
}

pub fn delete(ops: &Ops, actor: &Actor, id: &str) -> Result<(), OpError> {
    let before = find(ops, id)?;
    ops.audited(
        PeopleWrite::DeleteLicence(id.to_string()),
        draft(
            actor,
            "licence.delete",
            id,
            serde_json::to_value(&before).ok(),
            None,
            None,
        ),
    )?;
    Ok(())
}
