//! Compliance: every computer a baseline applies to, against its rules, with the evidence;
//! counts per rule and per verdict. Reads through `Store` only.
//!
//! The hosts are selected when asked (the baseline's filter over the computers not
//! retired), so a host discovered a minute ago is in the next report.

use std::collections::{BTreeMap, BTreeSet};

use census_shared::version::VersionScheme;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::baseline::{
    self, Baseline, BaselineRule, CompliancePoint, Finding, HostFacts, Verdict,
};
use crate::model::*;
use crate::query::{self, filter, Query, Sort};
use crate::store::{OwnedState, Store, StoreError};

/// Most computers one report evaluates.
pub const MAX_HOSTS: usize = 1_000_000;

/// One host's verdicts.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HostCompliance {
    pub id: String,
    pub name: String,
    pub verdict: Verdict,
    /// One per rule, in the baseline's order.
    pub findings: Vec<Finding>,
}

/// One rule's counts over the hosts.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RuleCompliance {
    pub index: usize,
    pub rule: String,
    pub pass: usize,
    pub fail: usize,
    pub unknown: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ComplianceReport {
    pub baseline_id: String,
    pub baseline_name: String,
    pub baseline_version: u64,
    pub evaluated_at: DateTime<Utc>,
    pub hosts_total: usize,
    pub pass: usize,
    pub fail: usize,
    pub unknown: usize,
    pub rules: Vec<RuleCompliance>,
    /// Hosts (those of the verdict asked for, if one was), failing first, then by name.
    pub hosts: Vec<HostCompliance>,
}

impl ComplianceReport {
    pub fn point(&self) -> CompliancePoint {
        CompliancePoint {
            day: self.evaluated_at.date_naive(),
            baseline: self.baseline_id.clone(),
            hosts: self.hosts_total,
            pass: self.pass,
            fail: self.fail,
            unknown: self.unknown,
        }
    }
}

/// The facts a baseline reads from a computer's stored state. A section counts as
/// collected when the state holds what it leaves: installs, the listening-port attribute,
/// service components.
pub fn facts_of(state: &OwnedState) -> HostFacts {
    facts_for(state, None)
}

/// [`facts_of`], keeping only the packages `wanted` names (what a baseline's rules read):
/// a host's thousand other packages are not copied.
pub fn facts_for(state: &OwnedState, wanted: Option<&BTreeSet<&str>>) -> HostFacts {
    let packages = (!state.installs.is_empty()).then(|| {
        let mut by_name: BTreeMap<String, Vec<(String, VersionScheme)>> = BTreeMap::new();
        for i in &state.installs {
            let p = &i.package;
            let (Some(name), Some(version)) = (&p.name, &p.version) else {
                continue;
            };
            if wanted.is_some_and(|w| !w.contains(name.as_str())) {
                continue;
            }
            let scheme = VersionScheme::for_source(p.source.as_deref().unwrap_or_default());
            by_name
                .entry(name.clone())
                .or_default()
                .push((version.clone(), scheme));
        }
        by_name
    });
    let listening_tcp = state
        .computer
        .as_ref()
        .and_then(|c| c.attributes.get("ports.listening"))
        .and_then(|v| v.as_array())
        .map(|ports| {
            ports
                .iter()
                .filter(|p| p["protocol"] == "tcp")
                .filter(|p| {
                    // A listener on loopback only is not reachable from the network.
                    let a = p["address"].as_str().unwrap_or_default();
                    !(a.starts_with("127.") || a == "::1")
                })
                .filter_map(|p| p["port"].as_u64())
                .filter_map(|p| u16::try_from(p).ok())
                .collect::<BTreeSet<u16>>()
        });
    let services: BTreeMap<String, bool> = state
        .components
        .iter()
        .filter(|c| c.class == CiClass::Service && c.status != CiStatus::Retired)
        .map(|c| {
            let name = c
                .attributes
                .get("name")
                .and_then(|v| v.as_str())
                .unwrap_or(&c.name)
                .to_string();
            let enabled = matches!(
                c.attributes.get("enabled").and_then(|v| v.as_str()),
                Some("enabled" | "auto" | "static" | "enabled-runtime")
            );
            (name, enabled)
        })
        .collect();
    HostFacts {
        packages,
        listening_tcp,
        services: (!services.is_empty()).then_some(services),
    }
}

/// A host's overall verdict and each rule's finding.
type HostVerdict = (Verdict, Vec<Finding>);

/// One host against a baseline.
pub fn evaluate(b: &Baseline, facts: &HostFacts) -> (Verdict, Vec<Finding>) {
    let findings: Vec<Finding> = b
        .rules
        .iter()
        .map(|r| baseline::evaluate(r, facts))
        .collect();
    (baseline::overall(&findings), findings)
}

/// The computers (not retired) a baseline applies to, by id -> name.
pub fn hosts_of(
    store: &dyn Store,
    b: &Baseline,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, String>, StoreError> {
    let expr = filter::parse_for(CiClass::Computer, &b.applies_to)
        .map_err(|e| StoreError::Io(format!("applies_to: {e}")))?;
    let page = query::run(
        store,
        &Query {
            class: CiClass::Computer,
            filter: expr,
            sort: Sort::parse("id").map_err(StoreError::Io)?,
            limit: MAX_HOSTS,
            after: None,
        },
        now,
    )?;
    Ok(page
        .items
        .into_iter()
        .filter(|c| c.status != CiStatus::Retired)
        .map(|c| (c.id, c.name))
        .collect())
}

/// Whether a baseline applies to one computer as given (ingest asks of the state it is
/// about to commit; conditions on software are read from the stored installs).
pub fn applies_to(
    store: &dyn Store,
    b: &Baseline,
    computer: &Ci,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let Ok(expr) = filter::parse_for(CiClass::Computer, &b.applies_to) else {
        return Ok(false);
    };
    let Some(expr) = expr else {
        return Ok(true);
    };
    let software: Vec<Attributes> = if expr.mentions_software() {
        crate::query::installs(store.relationships_from(&computer.id)?)
    } else {
        Vec::new()
    };
    let refs: Vec<&Attributes> = software.iter().collect();
    Ok(crate::query::eval::matches(
        &expr,
        &crate::query::eval::Subject {
            ci: computer,
            software: &refs,
            now,
        },
    ))
}

/// The compliance of every host `b` applies to; `only` keeps the hosts of one verdict in
/// the listing (the counts are over all), at most `limit` of them.
pub fn report(
    store: &dyn Store,
    b: &Baseline,
    now: DateTime<Utc>,
    only: Option<Verdict>,
    limit: usize,
) -> Result<ComplianceReport, StoreError> {
    let hosts = hosts_of(store, b, now)?;
    let mut rules: Vec<RuleCompliance> = b
        .rules
        .iter()
        .enumerate()
        .map(|(index, r)| RuleCompliance {
            index,
            rule: Baseline::rule_text(r),
            pass: 0,
            fail: 0,
            unknown: 0,
        })
        .collect();
    let wanted: BTreeSet<&str> = b
        .rules
        .iter()
        .filter_map(|r| match r {
            BaselineRule::PackageInstalled { package, .. }
            | BaselineRule::PackageAbsent { package } => Some(package.as_str()),
            _ => None,
        })
        .collect();
    // Hosts are read and evaluated on every core, then counted in order.
    let hosts_list: Vec<(&String, &String)> = hosts.iter().collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let chunk = hosts_list.len().div_ceil(threads).max(1);
    let evaluated: Vec<Result<Vec<HostVerdict>, StoreError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = hosts_list
            .chunks(chunk)
            .map(|part| {
                let wanted = &wanted;
                scope.spawn(move || {
                    part.iter()
                        .map(|(id, _)| {
                            let state = store.owned_state(id)?;
                            Ok(evaluate(b, &facts_for(&state, Some(wanted))))
                        })
                        .collect::<Result<Vec<_>, StoreError>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(StoreError::Io("a compliance worker panicked".into())))
            })
            .collect()
    });
    let mut results = Vec::with_capacity(hosts_list.len());
    for part in evaluated {
        results.extend(part?);
    }
    let (mut pass, mut fail, mut unknown) = (0, 0, 0);
    let mut listed = Vec::new();
    for ((id, name), (verdict, findings)) in hosts_list.into_iter().zip(results) {
        for (r, f) in rules.iter_mut().zip(&findings) {
            match f.verdict {
                Verdict::Pass => r.pass += 1,
                Verdict::Fail => r.fail += 1,
                Verdict::Unknown => r.unknown += 1,
            }
        }
        match verdict {
            Verdict::Pass => pass += 1,
            Verdict::Fail => fail += 1,
            Verdict::Unknown => unknown += 1,
        }
        if only.is_none_or(|v| v == verdict) {
            listed.push(HostCompliance {
                id: id.clone(),
                name: name.clone(),
                verdict,
                findings,
            });
        }
    }
    // Failing first (Fail < Unknown < Pass in the order that matters to a reader).
    let rank = |v: Verdict| match v {
        Verdict::Fail => 0,
        Verdict::Unknown => 1,
        Verdict::Pass => 2,
    };
    listed.sort_by(|a, b| {
        rank(a.verdict)
            .cmp(&rank(b.verdict))
            .then(a.name.to_lowercase().cmp(&b.name.to_lowercase()))
            .then(a.id.cmp(&b.id))
    });
    listed.truncate(limit);
    Ok(ComplianceReport {
        baseline_id: b.id.clone(),
        baseline_name: b.name.clone(),
        baseline_version: b.version,
        evaluated_at: now,
        hosts_total: hosts.len(),
        pass,
        fail,
        unknown,
        rules,
        hosts: listed,
    })
}
