//! Configuration baselines (issue 25): what a class of machines must look like, as rules a
//! computer's state passes or fails, each verdict with its evidence. Pure: facts in,
//! verdicts out; selecting the machines and reading their facts is the caller's.
//!
//! Architecture Invariant: a rule whose facts were not collected is `unknown`, never
//! `pass`: a missing software section does not prove that telnetd is absent.
//!
//! A [`Baseline`] is what people store: a name, the computers it applies to (a filter of
//! the query language, evaluated when asked, so a new host is covered the moment it is
//! discovered) and its rules; each change a new version, audited.

use std::collections::{BTreeMap, BTreeSet};

use census_shared::version::VersionScheme;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::licence::VersionRange;

/// Most rules one baseline holds.
pub const MAX_RULES: usize = 200;

/// Most baselines a CMDB holds (each is evaluated over its hosts on every report).
pub const MAX_BASELINES: usize = 100;
/// Longest filter text.
pub const MAX_FILTER_CHARS: usize = 2_000;
/// Days of compliance trend kept per baseline.
pub const TREND_DAYS: usize = 400;

/// An approved state for the computers a filter selects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// `bln_` then 20 hex digits.
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The computers it applies to, in the query language (empty: every computer), e.g.
    /// `ip in 10.1.0.0/16 and register.labels = web`.
    #[serde(default)]
    pub applies_to: String,
    #[schema(value_type = Vec<Object>)]
    pub rules: Vec<BaselineRule>,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
    /// Set when deleted: the last version stays.
    #[serde(default)]
    pub deleted: bool,
}

impl Baseline {
    /// Checks what people wrote; messages start with the field they are about.
    pub fn validate(&self) -> Result<(), String> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err("name: 1 to 200 characters, no control characters".into());
        }
        if self.description.chars().count() > 2_000 {
            return Err("description: at most 2000 characters".into());
        }
        if self.applies_to.chars().count() > MAX_FILTER_CHARS {
            return Err(format!("applies_to: at most {MAX_FILTER_CHARS} characters"));
        }
        validate(&self.rules)
    }

    /// A rule as one line: what a report's columns and a CSV show.
    pub fn rule_text(rule: &BaselineRule) -> String {
        match rule {
            BaselineRule::PackageInstalled { package, versions } if versions.trim().is_empty() => {
                format!("{package} installed")
            }
            BaselineRule::PackageInstalled { package, versions } => {
                format!("{package} {versions}")
            }
            BaselineRule::PackageAbsent { package } => format!("no {package}"),
            BaselineRule::ListeningOnlyOn { ports } => {
                format!("listening only on {}", join(ports))
            }
            BaselineRule::ServiceEnabled { service } => format!("{service} enabled"),
        }
    }
}

/// One day's compliance of one baseline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CompliancePoint {
    pub day: NaiveDate,
    pub baseline: String,
    pub hosts: usize,
    pub pass: usize,
    pub fail: usize,
    pub unknown: usize,
}

/// The trend with `point` in it: one point per baseline and day (a later one replaces the
/// day's), at most [`TREND_DAYS`] per baseline, oldest first.
pub fn with_point(mut trend: Vec<CompliancePoint>, point: CompliancePoint) -> Vec<CompliancePoint> {
    trend.retain(|p| !(p.baseline == point.baseline && p.day == point.day));
    trend.push(point);
    trend.sort_by(|a, b| a.day.cmp(&b.day).then(a.baseline.cmp(&b.baseline)));
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for p in &trend {
        *per.entry(p.baseline.clone()).or_default() += 1;
    }
    let mut drop: BTreeMap<String, usize> = per
        .into_iter()
        .map(|(b, n)| (b, n.saturating_sub(TREND_DAYS)))
        .collect();
    trend.retain(|p| match drop.get_mut(&p.baseline) {
        Some(n) if *n > 0 => {
            *n -= 1;
            false
        }
        _ => true,
    });
    trend
}

/// One requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum BaselineRule {
    /// The package is installed, within `versions` (">= 3.0.13", in its own order) if given.
    PackageInstalled {
        package: String,
        #[serde(default)]
        versions: String,
    },
    /// The package is not installed.
    PackageAbsent { package: String },
    /// The host listens on no TCP port outside these.
    ListeningOnlyOn { ports: BTreeSet<u16> },
    /// The service is enabled to start at boot.
    ServiceEnabled { service: String },
}

/// A computer's facts a baseline reads; `None`: that section was not collected.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// Package name -> (version, its scheme), every install of it.
    pub packages: Option<BTreeMap<String, Vec<(String, VersionScheme)>>>,
    pub listening_tcp: Option<BTreeSet<u16>>,
    /// Service name -> enabled at boot.
    pub services: Option<BTreeMap<String, bool>>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    Unknown,
}

/// A rule's verdict on one host, and what it was decided on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = RuleFinding)]
pub struct Finding {
    pub verdict: Verdict,
    pub evidence: String,
}

/// Checks a baseline as written; messages name the rule (`rules[0]`) and what is wrong.
pub fn validate(rules: &[BaselineRule]) -> Result<(), String> {
    if rules.is_empty() || rules.len() > MAX_RULES {
        return Err(format!("rules: between 1 and {MAX_RULES} rules"));
    }
    for (i, r) in rules.iter().enumerate() {
        let name_ok =
            |n: &str| !n.trim().is_empty() && n.len() <= 200 && !n.chars().any(char::is_control);
        match r {
            BaselineRule::PackageInstalled { package, versions } => {
                if !name_ok(package) {
                    return Err(format!("rules[{i}].package: a package name"));
                }
                VersionRange::parse(versions).map_err(|e| format!("rules[{i}].{e}"))?;
            }
            BaselineRule::PackageAbsent { package } if !name_ok(package) => {
                return Err(format!("rules[{i}].package: a package name"));
            }
            BaselineRule::ServiceEnabled { service } if !name_ok(service) => {
                return Err(format!("rules[{i}].service: a service name"));
            }
            _ => {}
        }
    }
    Ok(())
}

fn unknown(what: &str) -> Finding {
    Finding {
        verdict: Verdict::Unknown,
        evidence: format!("{what} not collected"),
    }
}

/// One rule on one host.
pub fn evaluate(rule: &BaselineRule, host: &HostFacts) -> Finding {
    let done = |pass: bool, evidence: String| Finding {
        verdict: if pass { Verdict::Pass } else { Verdict::Fail },
        evidence,
    };
    match rule {
        BaselineRule::PackageInstalled { package, versions } => {
            let Some(packages) = &host.packages else {
                return unknown("software");
            };
            let Some(installs) = packages.get(package) else {
                return done(false, format!("{package} is not installed"));
            };
            let range = VersionRange::parse(versions).unwrap_or_default();
            let listed = installs
                .iter()
                .map(|(v, _)| v.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            // Every install must be within range: one old copy is still exposed.
            let pass = installs.iter().all(|(v, s)| range.contains(*s, v));
            let wanted = if versions.trim().is_empty() {
                String::new()
            } else {
                format!(" (wanted {versions})")
            };
            done(pass, format!("{package} {listed}{wanted}"))
        }
        BaselineRule::PackageAbsent { package } => match &host.packages {
            None => unknown("software"),
            Some(p) => match p.get(package) {
                None => done(true, format!("{package} is not installed")),
                Some(installs) => done(
                    false,
                    format!(
                        "{package} {} is installed",
                        installs
                            .iter()
                            .map(|(v, _)| v.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            },
        },
        BaselineRule::ListeningOnlyOn { ports } => match &host.listening_tcp {
            None => unknown("listening ports"),
            Some(open) => {
                let extra: Vec<String> = open.difference(ports).map(u16::to_string).collect();
                if extra.is_empty() {
                    done(true, format!("listens on {}", join(open)))
                } else {
                    done(false, format!("also listens on {}", extra.join(", ")))
                }
            }
        },
        BaselineRule::ServiceEnabled { service } => match &host.services {
            None => unknown("services"),
            Some(s) => match s.get(service) {
                None => done(false, format!("{service} is not installed")),
                Some(true) => done(true, format!("{service} is enabled")),
                Some(false) => done(false, format!("{service} is not enabled")),
            },
        },
    }
}

fn join(ports: &BTreeSet<u16>) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A host's verdict on a whole baseline: fail if any rule fails, else unknown if any is
/// unknown, else pass.
pub fn overall(findings: &[Finding]) -> Verdict {
    if findings.iter().any(|f| f.verdict == Verdict::Fail) {
        Verdict::Fail
    } else if findings.iter().any(|f| f.verdict == Verdict::Unknown) {
        Verdict::Unknown
    } else {
        Verdict::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web_server() -> HostFacts {
        let d = VersionScheme::Dpkg;
        HostFacts {
            packages: Some(BTreeMap::from([
                (
                    "openssl".to_string(),
                    vec![("3.0.11-1~deb12u2".to_string(), d)],
                ),
                (
                    "openssh-server".to_string(),
                    vec![("1:9.2p1-2+deb12u3".to_string(), d)],
                ),
            ])),
            listening_tcp: Some(BTreeSet::from([22, 443, 8080])),
            services: Some(BTreeMap::from([("ssh".to_string(), true)])),
        }
    }

    fn rules() -> Vec<BaselineRule> {
        serde_json::from_str(
            r#"[
              {"rule": "package_installed", "package": "openssl", "versions": ">= 3.0.13"},
              {"rule": "package_absent", "package": "telnetd"},
              {"rule": "listening_only_on", "ports": [22, 443]},
              {"rule": "service_enabled", "service": "ssh"}
            ]"#,
        )
        .unwrap()
    }

    #[test]
    fn each_rule_passes_or_fails_with_its_evidence_in_the_packages_own_order() {
        let rules = rules();
        validate(&rules).unwrap();
        let host = web_server();
        let got: Vec<(Verdict, String)> = rules
            .iter()
            .map(|r| {
                let f = evaluate(r, &host);
                (f.verdict, f.evidence)
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    Verdict::Fail,
                    "openssl 3.0.11-1~deb12u2 (wanted >= 3.0.13)".into()
                ),
                (Verdict::Pass, "telnetd is not installed".into()),
                (Verdict::Fail, "also listens on 8080".into()),
                (Verdict::Pass, "ssh is enabled".into()),
            ]
        );
        let findings: Vec<Finding> = rules.iter().map(|r| evaluate(r, &host)).collect();
        assert_eq!(overall(&findings), Verdict::Fail);
        // 3.0.13~rc1 sorts below 3.0.13 in dpkg's order; 3.0.13-1 above it.
        let mut upgraded = web_server();
        upgraded.packages.as_mut().unwrap().insert(
            "openssl".into(),
            vec![("3.0.13-1~deb12u1".into(), VersionScheme::Dpkg)],
        );
        assert_eq!(evaluate(&rules[0], &upgraded).verdict, Verdict::Pass);
        upgraded.packages.as_mut().unwrap().insert(
            "openssl".into(),
            vec![("3.0.13~rc1".into(), VersionScheme::Dpkg)],
        );
        assert_eq!(evaluate(&rules[0], &upgraded).verdict, Verdict::Fail);
    }

    #[test]
    fn facts_not_collected_are_unknown_never_a_pass() {
        let rules = rules();
        let host = HostFacts::default();
        for r in &rules {
            assert_eq!(evaluate(r, &host).verdict, Verdict::Unknown, "{r:?}");
        }
        let findings: Vec<Finding> = rules.iter().map(|r| evaluate(r, &host)).collect();
        assert_eq!(overall(&findings), Verdict::Unknown);
    }

    #[test]
    fn a_baseline_that_cannot_be_evaluated_is_refused_by_rule() {
        assert!(validate(&[]).is_err());
        let bad: Vec<BaselineRule> = serde_json::from_str(
            r#"[{"rule": "package_installed", "package": "openssl", "versions": ">= 3 .0"}]"#,
        )
        .unwrap();
        assert!(validate(&bad).unwrap_err().starts_with("rules[0].versions"));
        let bad = vec![BaselineRule::ServiceEnabled {
            service: " ".into(),
        }];
        assert_eq!(
            validate(&bad).unwrap_err(),
            "rules[0].service: a service name"
        );
        assert!(serde_json::from_str::<BaselineRule>(r#"{"rule": "firewall_on"}"#).is_err());
    }
}
