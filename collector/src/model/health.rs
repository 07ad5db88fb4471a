//! What an administrator configures for CMDB health (required attributes per class, how
//! long an agent may be silent) and the daily trend of scores; the scoring itself is
//! `query::health`.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::CiClass;

/// What an administrator configures for CMDB health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HealthSettings {
    /// The attributes each class must have, by class.
    pub required: Vec<RequiredAttributes>,
    /// An agent not heard from for longer than this is silent beyond its schedule.
    #[schema(minimum = 1, maximum = 8760)]
    pub silent_after_hours: u32,
    #[serde(default)]
    pub updated_by: String,
    #[serde(default = "epoch")]
    pub updated_at: DateTime<Utc>,
}

fn epoch() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequiredAttributes {
    pub class: CiClass,
    /// Attribute paths of the class (`os.hostname`, `register.owner`, `mac`).
    #[schema(max_items = 64)]
    pub attributes: Vec<String>,
}

pub const MAX_REQUIRED_PER_CLASS: usize = 64;
pub const MAX_SILENT_AFTER_HOURS: u32 = 24 * 365;

impl Default for HealthSettings {
    fn default() -> Self {
        let required = |class, paths: &[&str]| RequiredAttributes {
            class,
            attributes: paths.iter().map(|p| p.to_string()).collect(),
        };
        HealthSettings {
            required: vec![
                required(
                    CiClass::Computer,
                    &[
                        "os.hostname",
                        "os.name",
                        "os.version",
                        "system.vendor",
                        "system.model",
                        "system.serial",
                    ],
                ),
                required(CiClass::Disk, &["model", "size_bytes"]),
                required(CiClass::NetworkInterface, &["mac"]),
            ],
            silent_after_hours: 24,
            updated_by: String::new(),
            updated_at: epoch(),
        }
    }
}

impl HealthSettings {
    /// Every refusal names the setting it is about.
    pub fn validate(&self) -> Result<(), String> {
        if self.silent_after_hours == 0 || self.silent_after_hours > MAX_SILENT_AFTER_HOURS {
            return Err(format!(
                "silent_after_hours: between 1 and {MAX_SILENT_AFTER_HOURS}"
            ));
        }
        let mut classes = std::collections::BTreeSet::new();
        for (i, r) in self.required.iter().enumerate() {
            if !classes.insert(r.class) {
                return Err(format!(
                    "required[{i}].class: {} is listed twice",
                    r.class.as_str()
                ));
            }
            if r.attributes.len() > MAX_REQUIRED_PER_CLASS {
                return Err(format!(
                    "required[{i}].attributes: at most {MAX_REQUIRED_PER_CLASS}"
                ));
            }
            for (j, path) in r.attributes.iter().enumerate() {
                if crate::model::attributes::find(r.class, path).is_none() {
                    let hint = crate::model::attributes::closest(r.class, path)
                        .map(|c| format!("; did you mean '{c}'?"))
                        .unwrap_or_default();
                    return Err(format!(
                        "required[{i}].attributes[{j}]: {} has no attribute '{path}'{hint}",
                        r.class.as_str()
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn required_of(&self, class: CiClass) -> &[String] {
        self.required
            .iter()
            .find(|r| r.class == class)
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[])
    }
}

/// One day of the trend: the overall score and each class's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HealthPoint {
    pub day: NaiveDate,
    pub overall: f64,
    #[schema(value_type = BTreeMap<String, f64>)]
    pub classes: BTreeMap<CiClass, f64>,
}

/// Days of trend kept.
pub const TREND_DAYS: usize = 400;

/// Adds `point` to a trend (replacing that day's), oldest first, at most [`TREND_DAYS`].
pub fn with_point(mut trend: Vec<HealthPoint>, point: HealthPoint) -> Vec<HealthPoint> {
    trend.retain(|p| p.day != point.day);
    trend.push(point);
    trend.sort_by_key(|p| p.day);
    let excess = trend.len().saturating_sub(TREND_DAYS);
    trend.drain(..excess);
    trend
}
