//! CMDB health's settings (required attributes per class, how long an agent may be
//! silent), changed by administrators and audited; the scoring is `query::health`.

use chrono::Utc;

use super::{draft, Actor, OpError, Ops};
use crate::model::health::HealthSettings;
use crate::query::health::{self, DefectFilter, HealthReport};
use crate::store::PeopleWrite;

pub fn settings(ops: &Ops) -> Result<HealthSettings, OpError> {
    Ok(ops.store.health_settings()?.unwrap_or_default())
}

/// Replaces the health settings, audited with before and after.
pub fn put_settings(
    ops: &Ops,
    actor: &Actor,
    mut next: HealthSettings,
) -> Result<HealthSettings, OpError> {
    next.validate().map_err(OpError::invalid)?;
    let before = settings(ops)?;
    next.updated_by = actor.name.clone();
    next.updated_at = Utc::now();
    ops.audited(
        PeopleWrite::PutHealthSettings(next.clone()),
        draft(
            actor,
            "health_settings.update",
            "health_settings",
            serde_json::to_value(&before).ok(),
            serde_json::to_value(&next).ok(),
            None,
        ),
    )?;
    Ok(next)
}

/// The CMDB's health now, listing the defects `filter` selects.
pub fn report(ops: &Ops, filter: DefectFilter) -> Result<HealthReport, OpError> {
    let settings = settings(ops)?;
    Ok(health::report(
        ops.store.as_ref(),
        &settings,
        filter,
        Utc::now(),
    )?)
}

/// Scores the CMDB and records today's point of the trend.
pub fn record_today(ops: &Ops) -> Result<HealthReport, OpError> {
    let report = report(ops, DefectFilter::default())?;
    ops.store.put_health_point(health::point_of(&report))?;
    Ok(report)
}
