//! Configuration baselines: made, changed and deleted by change managers (and admins),
//! each change a new version with a compare-and-set, audited; compliance reports and the
//! daily trend. The evaluation is [`crate::query::compliance`].

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{draft, Actor, OpError, Ops};
use crate::model::baseline::{Baseline, BaselineRule, CompliancePoint, Verdict, MAX_BASELINES};
use crate::model::CiClass;
use crate::query::compliance::{self, ComplianceReport};
use crate::store::PeopleWrite;

/// Most hosts a report lists when not told (the counts are over every host).
pub const DEFAULT_LISTED: usize = 1_000;

/// A baseline as people send it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BaselineRequest {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: String,
    /// The computers it applies to, in the query language; empty: every computer.
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub applies_to: String,
    /// `{"rule":"package_installed","package":"openssl","versions":">= 3.0.13"}`,
    /// `{"rule":"package_absent","package":"telnetd"}`,
    /// `{"rule":"listening_only_on","ports":[22,443]}`,
    /// `{"rule":"service_enabled","service":"ssh.service"}`.
    #[schema(value_type = Vec<Object>, min_items = 1, max_items = 200)]
    pub rules: Vec<BaselineRule>,
    /// On a change: refuse it (409) unless the baseline is still at this version.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub expected_version: Option<u64>,
}

pub fn find(ops: &Ops, id: &str) -> Result<Baseline, OpError> {
    ops.store
        .get_baseline(id)?
        .filter(|b| !b.deleted)
        .ok_or_else(|| OpError::NotFound(format!("baseline {id}")))
}

pub fn create(ops: &Ops, actor: &Actor, req: BaselineRequest) -> Result<Baseline, OpError> {
    super::version_bound(req.expected_version)?;
    if ops.store.list_baselines()?.len() >= MAX_BASELINES {
        return Err(OpError::Conflict(format!(
            "at most {MAX_BASELINES} baselines"
        )));
    }
    let now = Utc::now();
    let blank = Baseline {
        id: format!("bln_{}", hex::encode(rand::random::<[u8; 10]>())),
        name: String::new(),
        description: String::new(),
        applies_to: String::new(),
        rules: Vec::new(),
        version: 0,
        created_at: now,
        updated_at: now,
        updated_by: String::new(),
        deleted: false,
    };
    let next = requested(&blank, req, actor);
    write(ops, actor, next, None, "baseline.create")
}

pub fn update(
    ops: &Ops,
    actor: &Actor,
    id: &str,
    req: BaselineRequest,
) -> Result<Baseline, OpError> {
    let before = find(ops, id)?;
    super::expect_version(id, req.expected_version, before.version)?;
    let next = requested(&before, req, actor);
    write(ops, actor, next, Some(before), "baseline.update")
}

pub fn delete(ops: &Ops, actor: &Actor, id: &str) -> Result<(), OpError> {
    let before = find(ops, id)?;
    let next = Baseline {
        version: before.version + 1,
        updated_at: Utc::now(),
        updated_by: actor.name.clone(),
        deleted: true,
        ..before.clone()
    };
    commit(ops, actor, next, Some(before), "baseline.delete")?;
    Ok(())
}

/// `base`'s next version as `req` asks it to be.
fn requested(base: &Baseline, req: BaselineRequest, actor: &Actor) -> Baseline {
    Baseline {
        name: req.name.trim().to_string(),
        description: req.description,
        applies_to: req.applies_to.trim().to_string(),
        rules: req.rules,
        version: base.version + 1,
        updated_at: Utc::now(),
        updated_by: actor.name.clone(),
        ..base.clone()
    }
}

fn write(
    ops: &Ops,
    actor: &Actor,
    next: Baseline,
    before: Option<Baseline>,
    action: &str,
) -> Result<Baseline, OpError> {
    next.validate().map_err(OpError::invalid)?;
    crate::query::filter::parse_for(CiClass::Computer, &next.applies_to)
        .map_err(|e| OpError::invalid(format!("applies_to: {e}")))?;
    if let Some(other) = ops
        .store
        .list_baselines()?
        .into_iter()
        .find(|b| b.id != next.id && b.name.to_lowercase() == next.name.to_lowercase())
    {
        return Err(OpError::Conflict(format!(
            "name: '{}' is already the name of {}",
            next.name, other.id
        )));
    }
    commit(ops, actor, next, before, action)
}

fn commit(
    ops: &Ops,
    actor: &Actor,
    next: Baseline,
    before: Option<Baseline>,
    action: &str,
) -> Result<Baseline, OpError> {
    let expected = before.as_ref().map_or(0, |b| b.version);
    ops.commit(
        PeopleWrite::PutBaseline {
            baseline: next.clone(),
            expected,
        },
        draft(
            actor,
            action,
            &next.id,
            before.and_then(|b| serde_json::to_value(b).ok()),
            (!next.deleted)
                .then(|| serde_json::to_value(&next).ok())
                .flatten(),
            None,
        ),
    )?;
    Ok(next)
}

/// Baseline `id`'s compliance now.
pub fn report(
    ops: &Ops,
    id: &str,
    only: Option<Verdict>,
    limit: Option<usize>,
    now: DateTime<Utc>,
) -> Result<ComplianceReport, OpError> {
    let b = find(ops, id)?;
    Ok(compliance::report(
        ops.store.as_ref(),
        &b,
        now,
        only,
        limit.unwrap_or(DEFAULT_LISTED),
    )?)
}

/// The daily points of baseline `id`, oldest first.
pub fn trend(ops: &Ops, id: &str) -> Result<Vec<CompliancePoint>, OpError> {
    find(ops, id)?;
    Ok(ops
        .store
        .compliance_trend()?
        .into_iter()
        .filter(|p| p.baseline == id)
        .collect())
}

/// Evaluates every baseline and records today's points (the leader, once a day).
pub fn record_today(ops: &Ops, now: DateTime<Utc>) -> Result<Vec<CompliancePoint>, OpError> {
    let mut points = Vec::new();
    for b in ops.store.list_baselines()? {
        let r = compliance::report(ops.store.as_ref(), &b, now, Some(Verdict::Fail), 0)?;
        points.push(r.point());
    }
    if !points.is_empty() {
        ops.store.put_compliance_points(points.clone())?;
    }
    Ok(points)
}
