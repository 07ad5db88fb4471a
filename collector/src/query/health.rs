//! CMDB health, scored per class the way ServiceNow's CMDB Health dashboard does:
//! completeness (required attributes present), correctness (no open identity conflicts,
//! duplicates by serial or MAC, orphans, relationships to retired CIs) and compliance (not
//! stale, agents reporting on schedule). A score per dimension is the share of a class's
//! CIs (retired ones left out) without a defect of that dimension; a class's score is the
//! mean of its three, the overall score the CI-weighted mean of the classes'.
//!
//! Architecture Invariant: every defect is counted exactly once, on one CI, under one
//! kind; the drill-down lists are those same defects, so a count and its list never
//! disagree. Computed by reading (one scan per class, with memory bounded by the number
//! of computers for the serial and MAC maps and by [`MAX_LISTED_DEFECTS`] for the lists).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::model::health::{with_point, HealthPoint, HealthSettings, TREND_DAYS};
use crate::model::named;
use crate::model::*;
use crate::store::{Store, StoreError};

/// The three things a CMDB's health is measured by.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Completeness,
    Correctness,
    Compliance,
}

/// What is wrong with a CI.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DefectKind {
    /// A required attribute is missing (one defect per CI, naming every missing one).
    MissingRequired,
    /// An identity conflict waits for a decision (on the CI it is about).
    OpenConflict,
    /// The computer reports a serial a computer recorded before it reports too.
    DuplicateSerial,
    /// A physical interface has a MAC a physical interface of a computer recorded before
    /// it has too.
    DuplicateMac,
    /// A component whose computer does not exist.
    Orphan,
    /// A relationship from this CI leads to a retired CI.
    RelationshipToRetired,
    /// Not reported for longer than the lifecycle's stale age (the sweep marked it).
    Stale,
    /// Its agent has been silent longer than `silent_after_hours`.
    SilentAgent,
}

named!(DefectKind, "defect kind", {
    MissingRequired => "missing_required",
    OpenConflict => "open_conflict",
    DuplicateSerial => "duplicate_serial",
    DuplicateMac => "duplicate_mac",
    Orphan => "orphan",
    RelationshipToRetired => "relationship_to_retired",
    Stale => "stale",
    SilentAgent => "silent_agent",
});

impl DefectKind {
    pub fn dimension(self) -> Dimension {
        match self {
            DefectKind::MissingRequired => Dimension::Completeness,
            DefectKind::OpenConflict
            | DefectKind::DuplicateSerial
            | DefectKind::DuplicateMac
            | DefectKind::Orphan
            | DefectKind::RelationshipToRetired => Dimension::Correctness,
            DefectKind::Stale | DefectKind::SilentAgent => Dimension::Compliance,
        }
    }
}

/// One defect, on one CI.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Defect {
    pub kind: DefectKind,
    pub class: CiClass,
    pub ci_id: String,
    pub ci_name: String,
    /// What exactly (the missing attributes, the CI it duplicates, the conflict id).
    pub detail: String,
}

/// One dimension of one class.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DimensionScore {
    pub dimension: Dimension,
    /// CIs with at least one defect of this dimension.
    pub failing: usize,
    /// Percent of the class's CIs without one (100 for a class with no CIs).
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ClassHealth {
    pub class: CiClass,
    /// CIs scored (retired ones are not).
    pub total: usize,
    pub retired: usize,
    pub dimensions: Vec<DimensionScore>,
    /// Defects by kind.
    #[schema(value_type = BTreeMap<String, usize>)]
    pub defects: BTreeMap<DefectKind, usize>,
    pub score: f64,
}

/// Which defects a report lists (all are counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefectFilter {
    pub class: Option<CiClass>,
    pub kind: Option<DefectKind>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HealthReport {
    pub at: DateTime<Utc>,
    pub overall: f64,
    pub classes: Vec<ClassHealth>,
    /// Defects the filter selects, counted.
    pub defects_total: usize,
    /// The first [`MAX_LISTED_DEFECTS`] of them.
    pub defects: Vec<Defect>,
}

/// Most defects one report lists.
pub const MAX_LISTED_DEFECTS: usize = 1000;

/// Classes scored: those with CIs of their own (shared products, OS releases and subnets
/// are facts about many computers and have nothing to be complete or stale about).
const SCORED: [CiClass; 5] = [
    CiClass::Computer,
    CiClass::Disk,
    CiClass::NetworkInterface,
    CiClass::IpAddress,
    CiClass::Service,
];

#[derive(Default)]
struct Tally {
    total: usize,
    retired: usize,
    /// CI ids failing each dimension (a CI once per dimension).
    failing: BTreeMap<Dimension, std::collections::HashSet<String>>,
    defects: BTreeMap<DefectKind, usize>,
}

struct Collector {
    filter: DefectFilter,
    tallies: BTreeMap<CiClass, Tally>,
    listed: Vec<Defect>,
    total: usize,
}

impl Collector {
    fn defect(&mut self, kind: DefectKind, ci: &Ci, detail: String) {
        let tally = self.tallies.entry(ci.class).or_default();
        *tally.defects.entry(kind).or_default() += 1;
        tally
            .failing
            .entry(kind.dimension())
            .or_default()
            .insert(ci.id.clone());
        let wanted = self.filter.class.is_none_or(|c| c == ci.class)
            && self.filter.kind.is_none_or(|k| k == kind);
        if wanted {
            self.total += 1;
            if self.listed.len() < MAX_LISTED_DEFECTS {
                self.listed.push(Defect {
                    kind,
                    class: ci.class,
                    ci_id: ci.id.clone(),
                    ci_name: ci.name.clone(),
                    detail,
                });
            }
        }
    }
}

fn text<'a>(ci: &'a Ci, path: &str) -> Option<&'a str> {
    ci.attributes
        .get(path)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn present(ci: &Ci, path: &str) -> bool {
    match ci.attributes.get(path) {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    }
}

/// Scores the CMDB as it stands at `now` (staleness is the status the lifecycle sweep
/// gave each CI).
pub fn report(
    store: &dyn Store,
    settings: &HealthSettings,
    filter: DefectFilter,
    now: DateTime<Utc>,
) -> Result<HealthReport, StoreError> {
    let mut c = Collector {
        filter,
        tallies: BTreeMap::new(),
        listed: Vec::new(),
        total: 0,
    };
    // Computers first: ids (for orphans), serials, silent agents, conflicts by CI.
    // Each computer's place in the store's order.
    let mut computers: HashMap<String, usize> = HashMap::new();
    let mut serial_of: HashMap<String, String> = HashMap::new();
    let silent_after = Duration::hours(i64::from(settings.silent_after_hours));
    let mut last_heard: HashMap<String, DateTime<Utc>> = HashMap::new();
    for a in store.list_agents()? {
        if a.revoked_at.is_some() || a.superseded_by.is_some() {
            continue;
        }
        if let (Some(ci), Some(seen)) = (a.ci_id, a.last_seen) {
            let at = last_heard.entry(ci).or_insert(seen);
            *at = (*at).max(seen);
        }
    }
    let mut conflicts: HashMap<String, Vec<String>> = HashMap::new();
    for k in store.list_conflicts()? {
        if k.resolved_at.is_none() {
            conflicts.entry(k.existing_ci).or_default().push(k.id);
        }
    }
    // Computers in the store's order (the order they were recorded), checked as they
    // arrive: a duplicate is the computer recorded after the one it duplicates.
    let mut retired: Vec<String> = Vec::new();
    store.scan_cis(CiClass::Computer, &mut |ci| {
        let place = computers.len();
        computers.insert(ci.id.clone(), place);
        if ci.status == CiStatus::Retired {
            c.tallies.entry(CiClass::Computer).or_default().retired += 1;
            retired.push(ci.id);
            return true;
        }
        score_common(&mut c, settings, &ci, now);
        for id in conflicts.get(&ci.id).into_iter().flatten() {
            c.defect(
                DefectKind::OpenConflict,
                &ci,
                format!("identity conflict {id}"),
            );
        }
        if let Some(serial) =
            text(&ci, "system.serial").filter(|s| !census_shared::identity::is_placeholder(s))
        {
            match serial_of.get(&serial.to_lowercase()) {
                Some(first) => {
                    let detail = format!("serial '{serial}' is also {first}'s");
                    c.defect(DefectKind::DuplicateSerial, &ci, detail);
                }
                None => {
                    serial_of.insert(serial.to_lowercase(), ci.id.clone());
                }
            }
        }
        if !ci.sources.is_empty() {
            match last_heard.get(&ci.id) {
                Some(seen) if now - *seen > silent_after => {
                    let hours = (now - *seen).num_hours();
                    c.defect(
                        DefectKind::SilentAgent,
                        &ci,
                        format!("its agent was last heard {hours} h ago"),
                    );
                }
                _ => {}
            }
        }
        true
    })?;
    drop(serial_of);
    // A computer's duplicate MAC is counted once, however many of its interfaces share.
    let mut mac_of: HashMap<String, String> = HashMap::new();
    let mut mac_dup: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut nics: Vec<(String, String)> = Vec::new();
    for class in SCORED.into_iter().filter(|c| *c != CiClass::Computer) {
        store.scan_cis(class, &mut |ci| {
            if ci.status == CiStatus::Retired {
                c.tallies.entry(class).or_default().retired += 1;
                retired.push(ci.id);
                return true;
            }
            score_common(&mut c, settings, &ci, now);
            match ci.owner.as_deref() {
                Some(owner) if computers.contains_key(owner) => {
                    if class == CiClass::NetworkInterface
                        && ci.attributes.get("physical") == Some(&Value::Bool(true))
                    {
                        if let Some(mac) = text(&ci, "mac")
                            .filter(|m| !census_shared::identity::is_placeholder_mac(m))
                        {
                            nics.push((owner.to_string(), mac.to_lowercase()));
                        }
                    }
                }
                Some(owner) => c.defect(
                    DefectKind::Orphan,
                    &ci,
                    format!("its computer {owner} does not exist"),
                ),
                None => c.defect(DefectKind::Orphan, &ci, "no computer owns it".into()),
            }
            true
        })?;
    }
    // In the order computers were recorded: the later one holds the duplicate.
    let place = |owner: &str| computers.get(owner).copied().unwrap_or(usize::MAX);
    nics.sort_by(|a, b| (place(&a.0), &a.1).cmp(&(place(&b.0), &b.1)));
    nics.dedup();
    for (owner, mac) in nics {
        match mac_of.get(&mac) {
            Some(first) if *first != owner => {
                mac_dup.entry(owner).or_insert((mac, first.clone()));
            }
            Some(_) => {}
            None => {
                mac_of.insert(mac, owner);
            }
        }
    }
    for (owner, (mac, first)) in mac_dup {
        if let Some(ci) = store.get_ci(&owner)? {
            let detail = format!("MAC {mac} is also on {first}");
            c.defect(DefectKind::DuplicateMac, &ci, detail);
        }
    }
    // Relationships into retired CIs: few CIs are retired, so ask from their side.
    retired.sort();
    let mut flagged: std::collections::HashSet<String> = std::collections::HashSet::new();
    for id in &retired {
        for r in store.relationships_to(id)? {
            if !flagged.insert(r.key.from.clone()) {
                continue;
            }
            if let Some(from) = store.get_ci(&r.key.from)? {
                if from.status != CiStatus::Retired {
                    let detail = format!("{} {id}, which is retired", r.key.kind.as_str());
                    c.defect(DefectKind::RelationshipToRetired, &from, detail);
                }
            }
        }
    }
    let classes: Vec<ClassHealth> = SCORED
        .into_iter()
        .map(|class| {
            let t = c.tallies.remove(&class).unwrap_or_default();
            let dimensions: Vec<DimensionScore> = [
                Dimension::Completeness,
                Dimension::Correctness,
                Dimension::Compliance,
            ]
            .into_iter()
            .map(|d| {
                let failing = t.failing.get(&d).map_or(0, |s| s.len());
                DimensionScore {
                    dimension: d,
                    failing,
                    score: percent(t.total - failing.min(t.total), t.total),
                }
            })
            .collect();
            let score = round1(dimensions.iter().map(|d| d.score).sum::<f64>() / 3.0);
            ClassHealth {
                class,
                total: t.total,
                retired: t.retired,
                dimensions,
                defects: t.defects,
                score,
            }
        })
        .collect();
    let weighted: usize = classes.iter().map(|c| c.total).sum();
    let overall = if weighted == 0 {
        100.0
    } else {
        round1(
            classes
                .iter()
                .map(|c| c.score * c.total as f64)
                .sum::<f64>()
                / weighted as f64,
        )
    };
    Ok(HealthReport {
        at: now,
        overall,
        classes,
        defects_total: c.total,
        defects: c.listed,
    })
}

/// The checks every class has: counted, required attributes, staleness.
fn score_common(c: &mut Collector, settings: &HealthSettings, ci: &Ci, now: DateTime<Utc>) {
    c.tallies.entry(ci.class).or_default().total += 1;
    let missing: Vec<&str> = settings
        .required_of(ci.class)
        .iter()
        .filter(|p| !present(ci, p))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        c.defect(
            DefectKind::MissingRequired,
            ci,
            format!("missing {}", missing.join(", ")),
        );
    }
    // A record made before discovery has not been reported yet; it is not stale.
    let reported = ci.class != CiClass::Computer || !ci.sources.is_empty();
    if reported && ci.status == CiStatus::Stale {
        let days = (now - ci.last_seen).num_days();
        c.defect(
            DefectKind::Stale,
            ci,
            format!("last reported {days} days ago"),
        );
    }
}

fn percent(ok: usize, total: usize) -> f64 {
    if total == 0 {
        100.0
    } else {
        round1(ok as f64 * 100.0 / total as f64)
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// A report's day of the trend.
pub fn point_of(report: &HealthReport) -> HealthPoint {
    HealthPoint {
        day: report.at.date_naive(),
        overall: report.overall,
        classes: report
            .classes
            .iter()
            .filter(|c| c.total > 0)
            .map(|c| (c.class, c.score))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    #[test]
    fn settings_refuse_unknown_attributes_with_a_hint_and_bad_ages() {
        assert_eq!(HealthSettings::default().validate(), Ok(()));
        let mut s = HealthSettings::default();
        s.required[0].attributes.push("os.hostnme".into());
        let e = s.validate().unwrap_err();
        assert!(e.contains("did you mean 'os.hostname'"), "{e}");
        let s = HealthSettings {
            silent_after_hours: 0,
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().starts_with("silent_after_hours"));
        let mut s = HealthSettings::default();
        s.required.push(s.required[0].clone());
        assert!(s.validate().unwrap_err().contains("listed twice"));
        let mut s = HealthSettings::default();
        s.required[0].attributes.push("register.owner".into());
        s.required[0].attributes.push("register.u_rack".into());
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn every_defect_kind_has_one_dimension_and_a_name() {
        for k in DefectKind::ALL {
            assert_eq!(k.as_str().parse::<DefectKind>(), Ok(k));
            let _ = k.dimension();
        }
    }

    #[test]
    fn the_trend_keeps_one_point_a_day_oldest_first_and_bounded() {
        let point = |d: i64, score: f64| HealthPoint {
            day: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + Duration::days(d),
            overall: score,
            classes: BTreeMap::new(),
        };
        let mut trend = Vec::new();
        for d in (0..450).rev() {
            trend = with_point(trend, point(d, 50.0));
        }
        trend = with_point(trend, point(449, 90.0));
        assert_eq!(trend.len(), TREND_DAYS);
        assert_eq!(trend.last().unwrap().overall, 90.0);
        assert!(trend.windows(2).all(|w| w[0].day < w[1].day));
        assert_eq!(trend[0].day, point(50, 0.0).day);
    }
}
