//! Who is exposed to what: per host, per advisory, and for the whole fleet.
//!
//! Thousands of computers share each exact package (a variant), so a package version is
//! evaluated once per ecosystem release, never once per install: the fleet's cost grows
//! with distinct packages and advisories, and computers only add a lookup each.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::{LazyLock, Mutex};

use serde::Serialize;

use super::matching::{self, affects, source_of};
use crate::model::vuln::{Advisory, Level};
use crate::model::*;
use crate::store::{Store, StoreError};

/// Most hosts an advisory's report lists (all are counted).
pub const MAX_LISTED_HOSTS: usize = 1000;

/// An advisory that holds for an install on one computer.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Finding {
    pub advisory: String,
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    pub summary: String,
    /// The installed package.
    pub package: String,
    /// The name it was matched under (its source package where the agent reported one).
    pub matched_as: String,
    pub version: String,
    /// The first version above the installed one that fixes it; none when no fix exists
    /// in this release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    pub ecosystem: String,
    /// When the affected version was installed, as the package manager recorded it: the
    /// host has been exposed since then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// When Census first found it open on this host (none until the exposure tracker has
    /// matched the host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detected: Option<chrono::DateTime<chrono::Utc>>,
}

/// A computer's findings.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HostReport {
    pub computer_id: String,
    pub computer_name: String,
    /// The OSV ecosystem of its OS release; none when no distribution database applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ecosystem: Option<String>,
    /// Installed packages looked up.
    pub packages: usize,
    /// Most severe first.
    pub findings: Vec<Finding>,
    /// Exposures that closed on this host, newest first (kept 400 days).
    pub fixed: Vec<crate::model::vuln::ClosedExposure>,
}

/// The OSV ecosystem of an OS release CI, from its os-release fields.
fn os_ecosystem(os: &Ci) -> Option<String> {
    let text = |k: &str| {
        os.attributes
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
    };
    matching::ecosystem(text("id"), text("version_id"), text("version"))
}

/// The ecosystem of each OS release CI, by its id.
fn os_ecosystems(store: &dyn Store) -> Result<HashMap<String, String>, StoreError> {
    let mut out = HashMap::new();
    store.scan_cis(CiClass::OperatingSystem, &mut |os| {
        if let Some(e) = os_ecosystem(&os) {
            out.insert(os.id, e);
        }
        true
    })?;
    Ok(out)
}

/// What advisories decide, remembered across questions for one generation of the advisory
/// store (raised by every import batch that changed something, in the same transaction):
/// the advisories of each (ecosystem, package), decoded once, and the verdict for each
/// (ecosystem, package, version), evaluated once. Both are pure functions of the
/// generation, so a question only reads the generation to know the memory is right, and
/// the fleet's thousands of hosts sharing a package version cost one evaluation.
#[derive(Default)]
struct Memory {
    generation: Option<u64>,
    advisories: HashMap<(String, String), Arc<Vec<Advisory>>>,
    verdicts: HashMap<(String, String, String), Verdict>,
}

/// What holds for one package version: the advisories of its (ecosystem, package) and,
/// by index into them, those that hold with the first fixed version above it.
#[derive(Clone, Default)]
struct Verdict {
    held: Arc<Vec<Advisory>>,
    holds: Arc<Vec<(usize, Option<String>)>>,
}

/// Past this many (ecosystem, package) or verdict entries the memory starts over.
const MAX_REMEMBERED: usize = 500_000;

static MEMORY: LazyLock<Mutex<Memory>> = LazyLock::new(Mutex::default);

/// The memory for one question: the store's generation read once at its start.
pub(crate) struct Advisories {
    generation: u64,
}

impl Advisories {
    pub(crate) fn new(store: &dyn Store) -> Result<Advisories, StoreError> {
        Ok(Advisories {
            generation: store.advisories_generation()?,
        })
    }

    /// The memory, holding this question's generation (what another generation left is
    /// dropped first).
    fn memory(&self) -> std::sync::MutexGuard<'static, Memory> {
        let mut m = MEMORY.lock().unwrap_or_else(|e| e.into_inner());
        if m.generation != Some(self.generation) {
            *m = Memory {
                generation: Some(self.generation),
                ..Memory::default()
            };
        }
        m
    }

    /// The advisories naming `package` in `ecosystem`.
    fn held(
        &self,
        store: &dyn Store,
        ecosystem: &str,
        package: &str,
    ) -> Result<Arc<Vec<Advisory>>, StoreError> {
        let key = (ecosystem.to_string(), package.to_string());
        if let Some(h) = self.memory().advisories.get(&key) {
            return Ok(h.clone());
        }
        let held = Arc::new(store.advisories_for(ecosystem, package)?);
        let mut m = self.memory();
        if m.advisories.len() >= MAX_REMEMBERED {
            m.advisories.clear();
            m.verdicts.clear();
        }
        m.advisories.insert(key, held.clone());
        Ok(held)
    }

    fn verdict(
        &self,
        store: &dyn Store,
        ecosystem: &str,
        package: &str,
        version: &str,
    ) -> Result<Verdict, StoreError> {
        let key = (
            ecosystem.to_string(),
            package.to_string(),
            version.to_string(),
        );
        if let Some(v) = self.memory().verdicts.get(&key) {
            return Ok(v.clone());
        }
        let held = self.held(store, ecosystem, package)?;
        let verdict = Verdict {
            holds: Arc::new(evaluate(&held, ecosystem, package, version)),
            held,
        };
        let mut m = self.memory();
        if m.verdicts.len() >= MAX_REMEMBERED {
            m.verdicts.clear();
        }
        m.verdicts.insert(key, verdict.clone());
        Ok(verdict)
    }
}

/// What holds for one package version in one ecosystem: (index into `advisories`, the
/// first fixed version above it).
fn evaluate(
    advisories: &[Advisory],
    ecosystem: &str,
    package: &str,
    version: &str,
) -> Vec<(usize, Option<String>)> {
    let scheme = matching::scheme(ecosystem);
    let mut out = Vec::new();
    for (i, a) in advisories.iter().enumerate() {
        let entries = a
            .affected
            .iter()
            .filter(|e| e.ecosystem == ecosystem && e.package == package);
        let mut hit = false;
        let mut fixed: Option<&str> = None;
        for e in entries {
            if affects(e, scheme, version) {
                hit = true;
                for f in e.fixed() {
                    let above = census_shared::version::compare(scheme, f, version)
                        == std::cmp::Ordering::Greater;
                    let lower = fixed.is_none_or(|held| {
                        census_shared::version::compare(scheme, f, held) == std::cmp::Ordering::Less
                    });
                    if above && lower {
                        fixed = Some(f);
                    }
                }
            }
        }
        if hit {
            out.push((i, fixed.map(str::to_string)));
        }
    }
    out
}

fn finding(
    a: &Advisory,
    fixed: Option<String>,
    ecosystem: &str,
    install: &Install,
    matched_as: &str,
) -> Finding {
    let package = &install.package;
    Finding {
        advisory: a.id.clone(),
        aliases: a.aliases.clone(),
        level: a.rating.as_ref().map(|r| r.level),
        score: a.rating.as_ref().and_then(|r| r.score),
        summary: a.summary.clone(),
        package: package.name.clone().unwrap_or_default(),
        matched_as: matched_as.to_string(),
        version: package.version.clone().unwrap_or_default(),
        fixed,
        ecosystem: ecosystem.to_string(),
        since: install.installed_at,
        detected: None,
    }
}

/// Most severe first, then by advisory and package.
/// Most severe first: by level, then by score (unrated last).
fn more_severe(
    a: (Option<Level>, Option<f64>),
    b: (Option<Level>, Option<f64>),
) -> std::cmp::Ordering {
    b.0.cmp(&a.0)
        .then(b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal))
}

fn by_severity(a: &Finding, b: &Finding) -> std::cmp::Ordering {
    more_severe((a.level, a.score), (b.level, b.score))
        .then(a.advisory.cmp(&b.advisory))
        .then(a.package.cmp(&b.package))
}

/// A computer, the ecosystem of its OS release, and its installs.
pub(crate) type MatchedComputer = (Ci, Option<String>, Vec<Install>);

/// One advisory holding for one install, as [`match_computer_with`] hands it on.
pub(crate) struct MatchHit<'a> {
    pub advisory: &'a Advisory,
    /// The first version above the installed one that fixes it.
    pub fixed: &'a Option<String>,
    pub ecosystem: &'a str,
    pub install: &'a Install,
    /// The name it was matched under (its source package where known).
    pub matched_as: &'a str,
}

/// Matches one computer (None when it does not exist): one read of what it owns (its
/// record, its installs, the edge to the OS release it runs), then that release; each
/// advisory that holds for an install goes to `hit` (the report builds findings from it,
/// the exposure tracker keeps a few fields).
pub(crate) fn match_computer_with(
    store: &dyn Store,
    advisories: &Advisories,
    id: &str,
    hit: &mut dyn FnMut(MatchHit<'_>),
) -> Result<Option<MatchedComputer>, StoreError> {
    let state = store.owned_state(id)?;
    let Some(ci) = state.computer.filter(|c| c.class == CiClass::Computer) else {
        return Ok(None);
    };
    let os = state
        .relationships
        .iter()
        .find(|r| r.key.kind == RelKind::Runs && r.key.from == ci.id);
    let ecosystem = match os {
        Some(r) => store
            .get_ci(&r.key.to)?
            .filter(|os| os.class == CiClass::OperatingSystem)
            .and_then(|os| os_ecosystem(&os)),
        None => None,
    };
    let installs = state.installs;
    if let Some(eco) = &ecosystem {
        let scheme = matching::scheme(eco);
        for i in &installs {
            let p = &i.package;
            let (Some(name), Some(version)) = (p.name.as_deref(), p.version.as_deref()) else {
                continue;
            };
            let (package, version) = source_of(name, p.source_package.as_deref(), version, scheme);
            let v = advisories.verdict(store, eco, package, version)?;
            for (n, fixed) in v.holds.iter() {
                hit(MatchHit {
                    advisory: &v.held[*n],
                    fixed,
                    ecosystem: eco,
                    install: i,
                    matched_as: package,
                });
            }
        }
    }
    Ok(Some((ci, ecosystem, installs)))
}

/// The findings of one computer (None when it does not exist), with when the exposure
/// tracker first found each and what it has seen close.
pub fn for_computer(store: &dyn Store, id: &str) -> Result<Option<HostReport>, StoreError> {
    let advisories = Advisories::new(store)?;
    let mut findings = Vec::new();
    let Some((computer, ecosystem, installs)) =
        match_computer_with(store, &advisories, id, &mut |h| {
            findings.push(finding(
                h.advisory,
                h.fixed.clone(),
                h.ecosystem,
                h.install,
                h.matched_as,
            ));
        })?
    else {
        return Ok(None);
    };
    findings.sort_by(by_severity);
    let ledger = match store.computer_key(id)? {
        Some(key) => store
            .exposure_ledgers(&[key])?
            .pop()
            .flatten()
            .map(|(l, _)| l)
            .unwrap_or_default(),
        None => Default::default(),
    };
    for f in &mut findings {
        f.detected = ledger
            .open
            .binary_search_by(|o| {
                (o.advisory.as_str(), o.package.as_str())
                    .cmp(&(f.advisory.as_str(), f.package.as_str()))
            })
            .ok()
            .and_then(|n| chrono::DateTime::from_timestamp(ledger.open[n].detected, 0));
    }
    Ok(Some(HostReport {
        computer_id: computer.id,
        computer_name: computer.name,
        ecosystem,
        packages: installs.len(),
        findings,
        fixed: ledger.closed,
    }))
}

/// A host an advisory holds on.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ExposedHost {
    pub id: String,
    pub name: String,
    pub package: String,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    /// When Census first found it open on this host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detected: Option<chrono::DateTime<chrono::Utc>>,
}

/// One advisory with where it holds.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AdvisoryReport {
    pub advisory: Advisory,
    pub hosts_total: usize,
    /// A page of them by name (at most [`MAX_LISTED_HOSTS`]), after the page's cursor.
    pub hosts: Vec<ExposedHost>,
    /// The cursor of the next page (`after`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
    /// Business and application services running on those hosts or depending on one
    /// that does, most critical first.
    pub services: Vec<crate::query::services::AffectedService>,
}

/// Who the fleet is: computers' ecosystems, and which products each package name (binary
/// or source) reaches.
struct Fleet {
    ecosystem_by_id: HashMap<String, Arc<str>>,
    /// Package name advisories use (source or binary) -> products installing it.
    products: HashMap<String, BTreeSet<String>>,
}

fn fleet(store: &dyn Store) -> Result<Fleet, StoreError> {
    let mut ecosystem_by_id: HashMap<String, Arc<str>> = HashMap::new();
    for (os_id, eco) in os_ecosystems(store)? {
        let eco: Arc<str> = Arc::from(eco.as_str());
        for r in store.relationships_to(&os_id)? {
            if r.key.kind == RelKind::Runs {
                ecosystem_by_id.insert(r.key.from, eco.clone());
            }
        }
    }
    let mut products: HashMap<String, BTreeSet<String>> = HashMap::new();
    store.scan_variants(&mut |product, p| {
        if let Some(name) = &p.name {
            let matched_as = p
                .source_package
                .as_deref()
                .map(|s| census_shared::schema::source_parts(s).0)
                .filter(|s| !s.is_empty())
                .unwrap_or(name)
                .to_string();
            products
                .entry(matched_as)
                .or_default()
                .insert(product.to_string());
        }
        true
    })?;
    Ok(Fleet {
        ecosystem_by_id,
        products,
    })
}

/// The computers that install one variant of a product, in one ecosystem, with what
/// holds for it.
struct Group<'a> {
    package: &'a Package,
    verdict: &'a Verdict,
    computers: &'a [u64],
    /// The same computers' dense numbers (0 to the fleet's size), for bit sets.
    dense: &'a [u32],
}

/// Calls `each` once per (variant, ecosystem) of `product`'s installs that some advisory
/// holds for, with the computers concerned.
fn product_groups(
    store: &dyn Store,
    fleet: &mut FleetState<'_>,
    product: &str,
    each: &mut dyn FnMut(Group<'_>),
) -> Result<(), StoreError> {
    let installs = store.installs_of(product)?;
    if installs.installs.is_empty() {
        return Ok(());
    }
    fleet.learn(store, installs.installs.iter().map(|(k, _)| *k))?;
    let mut groups: HashMap<(usize, Arc<str>), Vec<u64>> = HashMap::new();
    for (key, variant) in &installs.installs {
        if let Some(eco) = fleet.ecosystem(*key) {
            groups.entry((*variant, eco)).or_default().push(*key);
        }
    }
    for ((variant, eco), computers) in groups {
        let Some(a) = installs.variants.get(variant) else {
            continue;
        };
        let p = Package::from_attributes(a);
        let (Some(name), Some(version)) = (p.name.as_deref(), p.version.as_deref()) else {
            continue;
        };
        let scheme = matching::scheme(&eco);
        let (package, version) = source_of(name, p.source_package.as_deref(), version, scheme);
        let verdict = fleet.advisories.verdict(store, &eco, package, version)?;
        if verdict.holds.is_empty() {
            continue;
        }
        let dense: Vec<u32> = computers
            .iter()
            .filter_map(|k| fleet.computer(*k).map(|c| c.dense))
            .collect();
        each(Group {
            package: &p,
            verdict: &verdict,
            computers: &computers,
            dense: &dense,
        });
    }
    Ok(())
}

/// A computer a question over the fleet has met: not retired, with an ecosystem.
struct Known {
    id: Arc<str>,
    name: Arc<str>,
    ecosystem: Arc<str>,
    /// Numbered in the order met, from 0.
    dense: u32,
}

/// What one question over the fleet has learnt so far.
struct FleetState<'a> {
    ecosystem_by_id: &'a HashMap<String, Arc<str>>,
    computers: HashMap<u64, Option<Known>>,
    advisories: Advisories,
    /// Computers numbered so far.
    met: u32,
}

impl<'a> FleetState<'a> {
    fn new(
        store: &dyn Store,
        ecosystem_by_id: &'a HashMap<String, Arc<str>>,
    ) -> Result<FleetState<'a>, StoreError> {
        Ok(FleetState {
            ecosystem_by_id,
            computers: HashMap::new(),
            advisories: Advisories::new(store)?,
            met: 0,
        })
    }

    fn learn(
        &mut self,
        store: &dyn Store,
        keys: impl Iterator<Item = u64>,
    ) -> Result<(), StoreError> {
        let unknown: BTreeSet<u64> = keys.filter(|k| !self.computers.contains_key(k)).collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let unknown: Vec<u64> = unknown.into_iter().collect();
        for (k, s) in unknown.iter().zip(store.computer_summaries(&unknown)?) {
            let known = s.filter(|s| s.status != CiStatus::Retired).and_then(|s| {
                let ecosystem = self.ecosystem_by_id.get(&*s.id)?.clone();
                Some(Known {
                    id: s.id,
                    name: s.name,
                    ecosystem,
                    dense: self.met,
                })
            });
            if known.is_some() {
                self.met += 1;
            }
            self.computers.insert(*k, known);
        }
        Ok(())
    }

    fn ecosystem(&self, key: u64) -> Option<Arc<str>> {
        self.computers
            .get(&key)?
            .as_ref()
            .map(|k| k.ecosystem.clone())
    }

    fn computer(&self, key: u64) -> Option<&Known> {
        self.computers.get(&key)?.as_ref()
    }
}

/// Which of an advisory's hosts a report lists: `limit` (at most [`MAX_LISTED_HOSTS`]) by
/// name, after the host `after` (a computer id, the previous page's `next_after`).
#[derive(Debug, Clone, Default)]
pub struct HostPage {
    pub limit: usize,
    pub after: Option<String>,
}

/// Where one advisory holds (None when the store has no such advisory). Every host is
/// counted and feeds the services it affects; only the page's hosts are dated from their
/// ledgers (each ledger holds all of a host's exposures, so dating thousands is the cost).
pub fn for_advisory(
    store: &dyn Store,
    id: &str,
    page: &HostPage,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<AdvisoryReport>, StoreError> {
    let Some(advisory) = store.get_advisory(id)? else {
        return Ok(None);
    };
    let fleet = fleet(store)?;
    let mut state = FleetState::new(store, &fleet.ecosystem_by_id)?;
    let products: BTreeSet<&String> = advisory
        .affected
        .iter()
        .filter_map(|e| fleet.products.get(&e.package))
        .flatten()
        .collect();
    let mut found: BTreeMap<u64, (Package, Option<String>)> = BTreeMap::new();
    for product in products {
        product_groups(store, &mut state, product, &mut |g| {
            let fixed = g
                .verdict
                .holds
                .iter()
                .find(|(i, _)| g.verdict.held[*i].id == id)
                .map(|(_, fixed)| fixed.clone());
            if let Some(fixed) = fixed {
                for key in g.computers {
                    found
                        .entry(*key)
                        .or_insert_with(|| (g.package.clone(), fixed.clone()));
                }
            }
        })?;
    }
    let mut hosts: Vec<(u64, ExposedHost)> = found
        .into_iter()
        .filter_map(|(key, (p, fixed))| {
            let known = state.computer(key)?;
            Some((
                key,
                ExposedHost {
                    id: known.id.to_string(),
                    name: known.name.to_string(),
                    package: p.name.unwrap_or_default(),
                    version: p.version.unwrap_or_default(),
                    fixed,
                    detected: None,
                },
            ))
        })
        .collect();
    hosts.sort_by(|(_, a), (_, b)| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    let on: BTreeMap<String, String> = hosts
        .iter()
        .map(|(_, h)| (h.id.clone(), h.name.clone()))
        .collect();
    let services = crate::query::services::impact_of(store, &on, now)?;
    let hosts_total = hosts.len();
    let start = match &page.after {
        Some(after) => hosts
            .iter()
            .position(|(_, h)| h.id == *after)
            .map_or(hosts.len(), |i| i + 1),
        None => 0,
    };
    let limit = page.limit.clamp(1, MAX_LISTED_HOSTS);
    let mut hosts: Vec<(u64, ExposedHost)> = hosts.into_iter().skip(start).collect();
    let next_after = (hosts.len() > limit).then(|| hosts[limit - 1].1.id.clone());
    hosts.truncate(limit);
    let keys: Vec<u64> = hosts.iter().map(|(k, _)| *k).collect();
    let ledgers = store.exposure_ledgers(&keys)?;
    let hosts: Vec<ExposedHost> = hosts
        .into_iter()
        .zip(ledgers)
        .map(|((_, mut h), ledger)| {
            h.detected = ledger.and_then(|(l, _)| {
                let o = l
                    .open
                    .iter()
                    .filter(|o| o.advisory == id)
                    .map(|o| o.detected)
                    .min()?;
                chrono::DateTime::from_timestamp(o, 0)
            });
            h
        })
        .collect();
    Ok(Some(AdvisoryReport {
        advisory,
        hosts_total,
        hosts,
        next_after,
        services,
    }))
}

/// Most advisories a service's report lists (all are counted).
pub const MAX_SERVICE_ADVISORIES: usize = 500;
/// Most hosts a service's report names per advisory (all are counted).
pub const MAX_NAMED_HOSTS: usize = 20;

/// An advisory that holds on computers a service runs on.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ServiceAdvisory {
    pub id: String,
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    pub summary: String,
    /// The service's computers it holds on.
    pub hosts: usize,
    /// The first [`MAX_NAMED_HOSTS`] of them by name: (id, name).
    pub named_hosts: Vec<ServiceHost>,
    /// The installed packages it holds for.
    pub packages: Vec<String>,
    /// The versions that fix it where a fix exists.
    pub fixed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
pub struct ServiceHost {
    pub id: String,
    pub name: String,
}

/// A business or application service's vulnerabilities: the advisories that hold on the
/// computers it runs on and on those of every service it depends on, transitively.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ServiceReport {
    pub service_id: String,
    pub service_name: String,
    /// Computers it and its dependencies run on.
    pub computers_total: usize,
    /// Computers matched: all of them up to the dependency listing's limit.
    pub computers_matched: usize,
    /// Matched computers with at least one advisory holding.
    pub computers_exposed: usize,
    pub advisories_total: usize,
    /// Most severe first, then the most hosts: the first [`MAX_SERVICE_ADVISORIES`].
    pub advisories: Vec<ServiceAdvisory>,
}

/// `deps`: the service's dependencies as `query::services::dependencies` gives them.
pub fn for_service(
    store: &dyn Store,
    service: &crate::model::service::Service,
    deps: &crate::query::services::Dependencies,
) -> Result<ServiceReport, StoreError> {
    let advisories = Advisories::new(store)?;
    struct Held {
        advisory: Advisory,
        hosts: BTreeSet<ServiceHost>,
        packages: BTreeSet<String>,
        fixed: BTreeSet<String>,
    }
    let mut held: BTreeMap<String, Held> = BTreeMap::new();
    let mut exposed = 0;
    for c in &deps.computers {
        let host = ServiceHost {
            id: c.id.clone(),
            name: c.name.clone(),
        };
        let mut any = false;
        match_computer_with(store, &advisories, &c.id, &mut |h| {
            any = true;
            let e = held.entry(h.advisory.id.clone()).or_insert_with(|| Held {
                advisory: h.advisory.clone(),
                hosts: BTreeSet::new(),
                packages: BTreeSet::new(),
                fixed: BTreeSet::new(),
            });
            e.hosts.insert(host.clone());
            if let Some(name) = &h.install.package.name {
                e.packages.insert(name.clone());
            }
            if let Some(f) = h.fixed {
                e.fixed.insert(f.clone());
            }
        })?;
        exposed += usize::from(any);
    }
    let mut list: Vec<ServiceAdvisory> = held
        .into_values()
        .map(|h| {
            let rating = h.advisory.rating.as_ref();
            ServiceAdvisory {
                id: h.advisory.id.clone(),
                aliases: h.advisory.aliases.clone(),
                level: rating.map(|r| r.level),
                score: rating.and_then(|r| r.score),
                summary: h.advisory.summary.clone(),
                hosts: h.hosts.len(),
                named_hosts: {
                    let mut named: Vec<ServiceHost> = h.hosts.into_iter().collect();
                    named.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
                    named.truncate(MAX_NAMED_HOSTS);
                    named
                },
                packages: h.packages.into_iter().collect(),
                fixed: h.fixed.into_iter().collect(),
            }
        })
        .collect();
    list.sort_by(|a, b| {
        more_severe((a.level, a.score), (b.level, b.score))
            .then(b.hosts.cmp(&a.hosts))
            .then(a.id.cmp(&b.id))
    });
    let advisories_total = list.len();
    list.truncate(MAX_SERVICE_ADVISORIES);
    Ok(ServiceReport {
        service_id: service.id.clone(),
        service_name: service.name.clone(),
        computers_total: deps.computers_total,
        computers_matched: deps.computers.len(),
        computers_exposed: exposed,
        advisories_total,
        advisories: list,
    })
}

/// An advisory that holds somewhere in the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FleetAdvisory {
    pub id: String,
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    pub summary: String,
    /// Computers it holds on.
    pub hosts: usize,
    /// The installed packages it holds for, by name.
    pub packages: Vec<String>,
}

/// The whole fleet against every advisory held.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FleetReport {
    pub advisories_held: usize,
    /// Computers with an ecosystem (a distribution database applies) that were checked.
    pub computers_checked: usize,
    pub computers_exposed: usize,
    /// (computer, advisory) pairs.
    pub exposures: usize,
    /// Most severe first, then by hosts.
    pub advisories: Vec<FleetAdvisory>,
}

impl FleetReport {
    /// Only the advisories at least `level` severe (unrated ones are left out then) and,
    /// with `product`, those that hold for an installed package of that name (any case).
    /// The totals stay the fleet's.
    pub fn narrowed(mut self, level: Option<Level>, product: Option<&str>) -> FleetReport {
        if let Some(min) = level {
            self.advisories
                .retain(|a| a.level.is_some_and(|l| l >= min));
        }
        if let Some(name) = product {
            self.advisories
                .retain(|a| a.packages.iter().any(|p| p.eq_ignore_ascii_case(name)));
        }
        self
    }
}

/// Matches every computer against every advisory: each distinct package version once per
/// ecosystem (and once per advisory-store generation across questions). Memory: one bit per
/// (advisory that holds somewhere, computer), 1.25 KB per such advisory at 10,000 computers.
pub fn fleet_report(store: &dyn Store) -> Result<FleetReport, StoreError> {
    let fleet = fleet(store)?;
    let mut state = FleetState::new(store, &fleet.ecosystem_by_id)?;
    let ecosystems: BTreeSet<&Arc<str>> = fleet.ecosystem_by_id.values().collect();
    // Only products some advisory names in an ecosystem the fleet runs.
    let mut wanted: BTreeSet<&String> = BTreeSet::new();
    for (package, products) in &fleet.products {
        for eco in &ecosystems {
            if !state.advisories.held(store, eco, package)?.is_empty() {
                wanted.extend(products);
                break;
            }
        }
    }
    let words = fleet.ecosystem_by_id.len().div_ceil(64).max(1);
    struct Seen {
        advisory: Advisory,
        hosts: Vec<u64>,
        packages: BTreeSet<String>,
    }
    let mut numbers: HashMap<String, usize> = HashMap::new();
    let mut seen: Vec<Seen> = Vec::new();
    for product in wanted {
        product_groups(store, &mut state, product, &mut |g| {
            for (i, _) in g.verdict.holds.iter() {
                let a = &g.verdict.held[*i];
                let n = match numbers.get(&a.id) {
                    Some(n) => *n,
                    None => {
                        numbers.insert(a.id.clone(), seen.len());
                        seen.push(Seen {
                            advisory: a.clone(),
                            hosts: vec![0; words],
                            packages: BTreeSet::new(),
                        });
                        seen.len() - 1
                    }
                };
                let s = &mut seen[n];
                if let Some(name) = &g.package.name {
                    if !s.packages.contains(name) {
                        s.packages.insert(name.clone());
                    }
                }
                for d in g.dense {
                    let d = *d as usize;
                    if let Some(word) = s.hosts.get_mut(d / 64) {
                        *word |= 1 << (d % 64);
                    }
                }
            }
        })?;
    }
    let mut exposed = vec![0u64; words];
    let mut exposures = 0;
    let mut advisories: Vec<FleetAdvisory> = seen
        .into_iter()
        .map(|s| {
            let hosts: usize = s.hosts.iter().map(|w| w.count_ones() as usize).sum();
            for (all, w) in exposed.iter_mut().zip(&s.hosts) {
                *all |= w;
            }
            exposures += hosts;
            FleetAdvisory {
                id: s.advisory.id,
                aliases: s.advisory.aliases,
                level: s.advisory.rating.as_ref().map(|r| r.level),
                score: s.advisory.rating.as_ref().and_then(|r| r.score),
                summary: s.advisory.summary,
                hosts,
                packages: s.packages.into_iter().collect(),
            }
        })
        .collect();
    advisories.sort_by(|a, b| {
        b.level
            .cmp(&a.level)
            .then(b.hosts.cmp(&a.hosts))
            .then(a.id.cmp(&b.id))
    });
    Ok(FleetReport {
        advisories_held: store.advisory_count()?,
        computers_checked: fleet.ecosystem_by_id.len(),
        computers_exposed: exposed.iter().map(|w| w.count_ones() as usize).sum(),
        exposures,
        advisories,
    })
}
