//! Business and application services: CIs people make over the discovered infrastructure,
//! with an owner, a criticality and a support group, the services they depend on, and
//! what they run on (computers, software products at a version range, subnets, or a filter
//! such as "computers with label web" that picks up hosts as they are discovered). Plain
//! data and pure checks; the write is `ops::services`, the impact `query::services`.
//!
//! Architecture Invariant: `depends_on` never forms a cycle (refused when written), so
//! every walk over it ends.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a service is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// What the business consumes (payroll, the web shop).
    Business,
    /// A technical service that business services depend on (the orders database).
    Application,
}

/// Something a service runs on.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case", tag = "type", deny_unknown_fields)]
pub enum RunsOn {
    /// One computer, by CI id.
    Computer { id: String },
    /// Every computer installing a product (name, or a pattern with `*`) at a version in
    /// `versions` (the package's own order; empty: any).
    Product {
        product: String,
        #[serde(default)]
        versions: String,
    },
    /// Every computer with an address in a subnet.
    Subnet { cidr: String },
    /// Every computer matching a filter of the query language (`label = web`).
    Filter { filter: String },
}

/// A service as stored: its current version (earlier ones are in its history).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Service {
    /// `bsv_` then 20 hex digits.
    pub id: String,
    pub kind: ServiceKind,
    pub name: String,
    #[serde(default)]
    pub owner: String,
    /// 1 (most critical) to 4.
    #[schema(minimum = 1, maximum = 4)]
    pub criticality: u8,
    #[serde(default)]
    pub support_group: String,
    #[serde(default)]
    pub description: String,
    /// Ids of the services this one depends on.
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub runs_on: Vec<RunsOn>,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
    /// Set when deleted: the last version stays in its history.
    #[serde(default)]
    pub deleted: bool,
}

pub const MAX_SERVICES: usize = 10_000;
pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_TEXT_CHARS: usize = 128;
pub const MAX_DESCRIPTION_CHARS: usize = 4000;
pub const MAX_DEPENDS_ON: usize = 256;
pub const MAX_RUNS_ON: usize = 256;

fn text(name: &str, value: &str, max: usize, required: bool) -> Result<(), String> {
    if required && value.trim().is_empty() {
        return Err(format!("{name}: must not be empty"));
    }
    let n = value.chars().count();
    if n > max {
        return Err(format!("{name}: {n} characters, at most {max}"));
    }
    let multiline = name == "description";
    if let Some(c) = value
        .chars()
        .find(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\t')))
    {
        return Err(format!(
            "{name}: control character U+{:04X} is not allowed",
            c as u32
        ));
    }
    Ok(())
}

impl Service {
    /// The checks that need nothing but the service; each message starts with the field.
    pub fn validate(&self) -> Result<(), String> {
        text("name", &self.name, MAX_NAME_CHARS, true)?;
        text("owner", &self.owner, MAX_TEXT_CHARS, false)?;
        text("support_group", &self.support_group, MAX_TEXT_CHARS, false)?;
        text(
            "description",
            &self.description,
            MAX_DESCRIPTION_CHARS,
            false,
        )?;
        if !(1..=4).contains(&self.criticality) {
            return Err(format!(
                "criticality: {} is not 1 (most critical) to 4",
                self.criticality
            ));
        }
        if self.depends_on.len() > MAX_DEPENDS_ON {
            return Err(format!("depends_on: at most {MAX_DEPENDS_ON} services"));
        }
        if self.depends_on.contains(&self.id) {
            return Err("depends_on: a service cannot depend on itself".into());
        }
        let unique: BTreeSet<&String> = self.depends_on.iter().collect();
        if unique.len() != self.depends_on.len() {
            return Err("depends_on: a service is listed twice".into());
        }
        if self.runs_on.len() > MAX_RUNS_ON {
            return Err(format!("runs_on: at most {MAX_RUNS_ON} entries"));
        }
        for (i, r) in self.runs_on.iter().enumerate() {
            let at = format!("runs_on[{i}]");
            match r {
                RunsOn::Computer { id } => text(&format!("{at}.id"), id, 64, true)?,
                RunsOn::Product { product, versions } => {
                    text(&format!("{at}.product"), product, 200, true)?;
                    super::licence::VersionRange::parse(versions)
                        .map_err(|e| format!("{at}.{e}"))?;
                }
                RunsOn::Subnet { cidr } => {
                    crate::drift::rules::Cidr::parse(cidr)
                        .map_err(|e| format!("{at}.cidr: {e}"))?;
                }
                // Whether it parses is the query language's to say (`ops::services`).
                RunsOn::Filter { filter } => text(&format!("{at}.filter"), filter, 2000, true)?,
            }
        }
        Ok(())
    }
}

/// The cycle `depends_on` would make if `service` depended on `wanted`, given every
/// other service's dependencies: the path from `service` back to itself.
pub fn cycle(
    service: &str,
    wanted: &[String],
    others: &BTreeMap<String, Vec<String>>,
) -> Option<Vec<String>> {
    // Depth-first from each wanted dependency, looking for `service`.
    let mut stack: Vec<(String, Vec<String>)> = wanted
        .iter()
        .map(|w| (w.clone(), vec![service.to_string(), w.clone()]))
        .collect();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        if at == service {
            return Some(path);
        }
        if !seen.insert(at.clone()) {
            continue;
        }
        for next in others.get(&at).into_iter().flatten() {
            let mut p = path.clone();
            p.push(next.clone());
            stack.push((next.clone(), p));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> Service {
        let t = Utc::now();
        Service {
            id: "bsv_1".into(),
            kind: ServiceKind::Business,
            name: "Web shop".into(),
            owner: "ann".into(),
            criticality: 1,
            support_group: "web-ops".into(),
            description: String::new(),
            depends_on: vec![],
            runs_on: vec![],
            version: 1,
            created_at: t,
            updated_at: t,
            updated_by: "ann".into(),
            deleted: false,
        }
    }

    #[test]
    fn a_service_is_checked_field_by_field() {
        assert_eq!(service().validate(), Ok(()));
        let refused = |f: &dyn Fn(&mut Service)| {
            let mut s = service();
            f(&mut s);
            s.validate().unwrap_err()
        };
        assert!(refused(&|s| s.criticality = 5).starts_with("criticality"));
        assert!(refused(&|s| s.name = " ".into()).starts_with("name"));
        assert!(refused(&|s| s.depends_on = vec!["bsv_1".into()]).contains("itself"));
        assert!(
            refused(&|s| s.depends_on = vec!["bsv_2".into(), "bsv_2".into()]).contains("twice")
        );
        assert!(refused(&|s| s.runs_on = vec![RunsOn::Subnet {
            cidr: "10.0.0.0/33".into()
        }])
        .starts_with("runs_on[0].cidr"));
        assert!(refused(&|s| s.runs_on = vec![RunsOn::Product {
            product: "openssl".into(),
            versions: "<< 3".into()
        }])
        .starts_with("runs_on[0].versions"));
    }

    #[test]
    fn a_dependency_that_closes_a_cycle_is_found_with_its_path() {
        let others: BTreeMap<String, Vec<String>> = [
            ("b".to_string(), vec!["c".to_string()]),
            ("c".to_string(), vec!["a".to_string()]),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            cycle("a", &["b".into()], &others),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        assert_eq!(cycle("a", &["c".into()], &BTreeMap::new()), None);
        assert_eq!(cycle("x", &["b".into()], &others), None);
    }
}
