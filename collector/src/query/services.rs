//! Impact through business services, both ways: from computers (one, those installing a
//! product version, those in a subnet) up to the services that run on them and every
//! service that depends on those, with the path that links them; and from a service down
//! to everything it depends on.
//!
//! A service's computers are resolved when asked, from what it runs on: a filter picks up
//! a host the moment it is discovered. Walks over `depends_on` end because it has no cycle
//! (refused when written).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::licence::{self, VersionRange};
use crate::model::service::{RunsOn, Service, ServiceKind};
use crate::model::*;
use crate::query::{self, filter, Query, Sort};
use crate::store::{Store, StoreError};

/// Most computers one `runs_on` entry resolves to.
pub const MAX_RESOLVED: usize = 100_000;
/// Most computers a dependency listing shows.
pub const MAX_LISTED: usize = 1000;

/// A service an impact reaches.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AffectedService {
    pub id: String,
    pub name: String,
    pub kind: ServiceKind,
    pub criticality: u8,
    /// Service names from this one down to the one that runs on what was asked about
    /// (just this one when it runs on it itself).
    pub path: Vec<String>,
    /// How the last service of the path reaches it: "runs on web01 (computer)".
    pub via: String,
}

/// The computers (not retired) one `runs_on` entry names, by id -> name.
pub fn computers_of(
    store: &dyn Store,
    runs_on: &RunsOn,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, String>, StoreError> {
    let by_filter = |text: String| -> Result<BTreeMap<String, String>, StoreError> {
        let Ok(expr) = filter::parse_for(CiClass::Computer, &text) else {
            return Ok(BTreeMap::new());
        };
        let page = query::run(
            store,
            &Query {
                class: CiClass::Computer,
                filter: expr,
                sort: Sort::parse("id").map_err(StoreError::Io)?,
                limit: MAX_RESOLVED,
                after: None,
            },
            now,
        )?;
        Ok(page.items.into_iter().map(|c| (c.id, c.name)).collect())
    };
    match runs_on {
        RunsOn::Computer { id } => Ok(store
            .get_ci(id)?
            .filter(|c| c.status != CiStatus::Retired)
            .map(|c| (c.id, c.name))
            .into_iter()
            .collect()),
        RunsOn::Subnet { .. } | RunsOn::Filter { .. } => {
            by_filter(filter_text(runs_on).unwrap_or_default())
        }
        RunsOn::Product { product, versions } => {
            let range = VersionRange::parse(versions).unwrap_or_default();
            let mut products = Vec::new();
            store.scan_cis(CiClass::SoftwareProduct, &mut |p| {
                if licence::product_matches(product, &p.name) {
                    products.push(p.id);
                }
                true
            })?;
            let ids: Vec<&str> = products.iter().map(String::as_str).collect();
            let keys = crate::query::licences::installing(store, &ids, &range)?;
            let keys: Vec<u64> = keys.into_iter().collect();
            Ok(store
                .computer_summaries(&keys)?
                .into_iter()
                .flatten()
                .filter(|s| s.status != CiStatus::Retired)
                .map(|s| (s.id.to_string(), s.name.to_string()))
                .collect())
        }
    }
}

fn describe(r: &RunsOn) -> String {
    match r {
        RunsOn::Computer { .. } => "a computer it runs on".into(),
        RunsOn::Product { product, versions } if versions.is_empty() => {
            format!("computers installing {product}")
        }
        RunsOn::Product { product, versions } => {
            format!("computers installing {product} {versions}")
        }
        RunsOn::Subnet { cidr } => format!("computers in {cidr}"),
        RunsOn::Filter { filter } => format!("computers matching {filter}"),
    }
}

/// The services affected by something on `computers` (id -> name), most critical first:
/// those running on one of them, then every service depending on those, each once with
/// its shortest path.
pub fn impact_of(
    store: &dyn Store,
    computers: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<Vec<AffectedService>, StoreError> {
    let services = store.list_services()?;
    let direct = directly_on(store, &services, computers, now)?;
    Ok(walk_up(&services, direct))
}

/// [`impact_of`] one computer, named: what a computer's page, a change record's API answer,
/// page and webhook payload list.
pub fn impact_of_computer(
    store: &dyn Store,
    id: &str,
    name: &str,
    now: DateTime<Utc>,
) -> Result<Vec<AffectedService>, StoreError> {
    let on = [(id.to_string(), name.to_string())].into_iter().collect();
    impact_of(store, &on, now)
}

/// [`impact_of`] one computer in the state given rather than the one stored: what ingest
/// asks of the state it is about to commit. Entries about software resolve on the stored
/// installs.
pub fn impact_on_computer(
    store: &dyn Store,
    computer: &Ci,
    now: DateTime<Utc>,
) -> Result<Vec<AffectedService>, StoreError> {
    let services = store.list_services()?;
    let mut direct = Vec::new();
    if computer.status != CiStatus::Retired {
        let subject = crate::query::eval::Subject {
            ci: computer,
            software: &[],
            now,
        };
        for s in &services {
            for r in &s.runs_on {
                let on = match (r, on_attributes_only(r)) {
                    (RunsOn::Computer { id }, _) => *id == computer.id,
                    (_, Some(expr)) => crate::query::eval::matches(&expr, &subject),
                    (_, None) => computers_of(store, r, now)?.contains_key(&computer.id),
                };
                if on {
                    direct.push((s, computer.name.clone(), r));
                    break;
                }
            }
        }
    }
    Ok(walk_up(&services, direct))
}

/// A subnet or filter entry as the query language writes it (`ip in 10.1.0.0/16`).
fn filter_text(r: &RunsOn) -> Option<String> {
    match r {
        RunsOn::Subnet { cidr } => Some(format!("ip in {cidr}")),
        RunsOn::Filter { filter } => Some(filter.clone()),
        RunsOn::Computer { .. } | RunsOn::Product { .. } => None,
    }
}

/// The filter of a subnet or filter entry that reads only a computer's own record (not its
/// installs): those are evaluated on the computers at hand rather than resolved whole.
fn on_attributes_only(r: &RunsOn) -> Option<filter::Expr> {
    filter::parse_for(CiClass::Computer, &filter_text(r)?)
        .ok()
        .flatten()
        .filter(|e| !e.mentions_software())
}

/// From the services that run on what was asked about, up through every service that
/// depends on them, each once with its shortest path; most critical first.
fn walk_up(services: &[Service], direct: Vec<(&Service, String, &RunsOn)>) -> Vec<AffectedService> {
    let by_id: BTreeMap<&str, &Service> = services.iter().map(|s| (s.id.as_str(), s)).collect();
    // Who depends on whom, upwards.
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in services {
        for d in &s.depends_on {
            dependents
                .entry(d.as_str())
                .or_default()
                .push(s.id.as_str());
        }
    }
    let mut found: BTreeMap<String, AffectedService> = BTreeMap::new();
    let mut queue: VecDeque<(&str, Vec<String>, String)> = VecDeque::new();
    for (s, host, r) in direct {
        queue.push_back((
            s.id.as_str(),
            vec![s.name.clone()],
            format!("{host}, one of {}", describe(r)),
        ));
    }
    // Breadth first: the first path to reach a service is a shortest one.
    while let Some((id, path, via)) = queue.pop_front() {
        if found.contains_key(id) {
            continue;
        }
        let Some(s) = by_id.get(id) else { continue };
        found.insert(
            id.to_string(),
            AffectedService {
                id: id.to_string(),
                name: s.name.clone(),
                kind: s.kind,
                criticality: s.criticality,
                path: path.clone(),
                via: via.clone(),
            },
        );
        for up in dependents.get(id).into_iter().flatten() {
            if let Some(parent) = by_id.get(up) {
                let mut p = vec![parent.name.clone()];
                p.extend(path.iter().cloned());
                queue.push_back((up, p, via.clone()));
            }
        }
    }
    let mut out: Vec<AffectedService> = found.into_values().collect();
    out.sort_by(|a, b| {
        (a.criticality, a.path.len(), &a.name).cmp(&(b.criticality, b.path.len(), &b.name))
    });
    out
}

/// The services that run on one of `computers` themselves, each with the first such
/// computer's name and the `runs_on` entry that names it. Filters and subnets are evaluated
/// on the given computers only (one read of them, not one query per service); products
/// and filters about software resolve as a query would.
fn directly_on<'s>(
    store: &dyn Store,
    services: &'s [Service],
    computers: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<Vec<(&'s Service, String, &'s RunsOn)>, StoreError> {
    let mut out: Vec<(&Service, String, &RunsOn)> = Vec::new();
    if computers.is_empty() {
        return Ok(out);
    }
    // Filters on the computers' own attributes, parsed once: (service, entry, expression).
    let mut on_attributes: Vec<(usize, &RunsOn, filter::Expr)> = Vec::new();
    let mut hit: BTreeMap<usize, (String, &RunsOn)> = BTreeMap::new();
    for (i, s) in services.iter().enumerate() {
        for r in &s.runs_on {
            if let RunsOn::Computer { id } = r {
                if let Some(host) = computers.get(id) {
                    hit.entry(i).or_insert((host.clone(), r));
                }
                continue;
            }
            match on_attributes_only(r) {
                Some(expr) => on_attributes.push((i, r, expr)),
                // Products, and filters about software, need installs: resolve them whole.
                None => {
                    if let std::collections::btree_map::Entry::Vacant(slot) = hit.entry(i) {
                        let on = computers_of(store, r, now)?;
                        if let Some(host) = computers.keys().find_map(|id| on.get(id)) {
                            slot.insert((host.clone(), r));
                        }
                    }
                }
            }
        }
    }
    on_attributes.retain(|(i, _, _)| !hit.contains_key(i));
    // What an entry that reads only the record matched is remembered per record digest;
    // the others (ages of first/last seen) are evaluated every time.
    let (remembered, each_time): (Vec<_>, Vec<_>) = on_attributes
        .into_iter()
        .partition(|(_, _, expr)| !expr.mentions_seen_times());
    let set = filter_set_digest(services, &remembered);
    let all_hit = |hit: &BTreeMap<usize, (String, &RunsOn)>| {
        remembered
            .iter()
            .chain(&each_time)
            .all(|(i, _, _)| hit.contains_key(i))
    };
    // The given computers only, a page at a time in id order (so the host named is the
    // first by id either way), until every such service is hit.
    let ids: Vec<&str> = computers.keys().map(String::as_str).collect();
    for page in ids.chunks(256) {
        if all_hit(&hit) {
            break;
        }
        let digests = if remembered.is_empty() {
            vec![None; page.len()]
        } else {
            store.computer_digests(page)?
        };
        let mut known: Vec<Option<Arc<[u32]>>> = digests
            .iter()
            .map(|d| d.and_then(|d| FILTER_MEMO.get(d, set)))
            .collect();
        let unread: Vec<&str> = page
            .iter()
            .zip(&known)
            .filter(|(_, k)| k.is_none() || !each_time.is_empty())
            .map(|(id, _)| *id)
            .collect();
        let mut read: BTreeMap<String, Ci> = store
            .get_cis(&unread)?
            .into_iter()
            .flatten()
            .filter(|ci| ci.status != CiStatus::Retired)
            .map(|ci| (ci.id.clone(), ci))
            .collect();
        for (at, id) in page.iter().enumerate() {
            let ci = read.remove(*id);
            let subject = ci.as_ref().map(|ci| crate::query::eval::Subject {
                ci,
                software: &[],
                now,
            });
            let matched = match known[at].take() {
                Some(matched) => matched,
                None => {
                    let matched: Arc<[u32]> = match &subject {
                        Some(subject) => (0u32..)
                            .zip(&remembered)
                            .filter(|(_, (_, _, expr))| crate::query::eval::matches(expr, subject))
                            .map(|(k, _)| k)
                            .collect(),
                        None => Arc::from([]),
                    };
                    if let Some(digest) = digests[at] {
                        FILTER_MEMO.put(digest, set, matched.clone());
                    }
                    matched
                }
            };
            let host = computers.get(*id).cloned().unwrap_or_default();
            for &k in matched.iter() {
                if let Some((i, r, _)) = remembered.get(k as usize) {
                    hit.entry(*i).or_insert((host.clone(), r));
                }
            }
            if let Some(subject) = &subject {
                for (i, r, expr) in &each_time {
                    if !hit.contains_key(i) && crate::query::eval::matches(expr, subject) {
                        hit.insert(*i, (host.clone(), r));
                    }
                }
            }
        }
    }
    for (i, (host, r)) in hit {
        out.push((&services[i], host, r));
    }
    Ok(out)
}

/// Which of a set of `runs_on` filters each computer record matched, by (record digest,
/// digest of the filter set): a pure function of the two, so it is right for any store and
/// goes stale only by never being asked again. Impact from thousands of computers then reads
/// only the records that changed since (decoding a computer costs ~20 µs; its digest, well
/// under one).
struct FilterMemo {
    matched: Mutex<HashMap<RecordAndSet, Arc<[u32]>>>,
}

/// (record digest, filter set digest).
type RecordAndSet = (u64, u64);

/// Past this many records the memo starts over: ~50 bytes each.
const MAX_REMEMBERED: usize = 200_000;

static FILTER_MEMO: LazyLock<FilterMemo> = LazyLock::new(|| FilterMemo {
    matched: Mutex::new(HashMap::new()),
});

impl FilterMemo {
    fn get(&self, record: u64, set: u64) -> Option<Arc<[u32]>> {
        let matched = self.matched.lock().unwrap_or_else(|e| e.into_inner());
        matched.get(&(record, set)).cloned()
    }

    fn put(&self, record: u64, set: u64, hits: Arc<[u32]>) {
        let mut matched = self.matched.lock().unwrap_or_else(|e| e.into_inner());
        if matched.len() >= MAX_REMEMBERED {
            matched.clear();
        }
        matched.insert((record, set), hits);
    }
}

/// Names a list of (service, entry) filters: the same services' same entries in the same
/// order give the same digest, so positions in the list mean the same entry.
fn filter_set_digest(services: &[Service], entries: &[(usize, &RunsOn, filter::Expr)]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (i, r, _) in entries {
        (&services[*i].id, filter_text(r)).hash(&mut h);
    }
    h.finish()
}

/// The computers installing `product` (name or `*` pattern) at a version in `versions`.
pub fn computers_installing(
    store: &dyn Store,
    product: &str,
    versions: &str,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, String>, StoreError> {
    computers_of(
        store,
        &RunsOn::Product {
            product: product.to_string(),
            versions: versions.to_string(),
        },
        now,
    )
}

/// A service a dependency listing reaches, with its distance.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DependedOn {
    pub id: String,
    pub name: String,
    pub kind: ServiceKind,
    pub criticality: u8,
    /// 1: a direct dependency.
    pub depth: usize,
}

/// A computer a service (or one it depends on) runs on.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RunsOnComputer {
    pub id: String,
    pub name: String,
    /// The service that runs on it.
    pub service: String,
}

/// Everything `service` depends on: services (transitively) and the computers each runs
/// on.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Dependencies {
    pub services: Vec<DependedOn>,
    pub computers_total: usize,
    /// The first [`MAX_LISTED`], by name.
    pub computers: Vec<RunsOnComputer>,
}

pub fn dependencies(
    store: &dyn Store,
    service: &Service,
    now: DateTime<Utc>,
) -> Result<Dependencies, StoreError> {
    let all = store.list_services()?;
    let by_id: BTreeMap<&str, &Service> = all.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut depth: BTreeMap<String, usize> = BTreeMap::new();
    let mut queue: VecDeque<(String, usize)> =
        service.depends_on.iter().map(|d| (d.clone(), 1)).collect();
    while let Some((id, d)) = queue.pop_front() {
        if depth.contains_key(&id) {
            continue;
        }
        depth.insert(id.clone(), d);
        if let Some(s) = by_id.get(id.as_str()) {
            queue.extend(s.depends_on.iter().map(|n| (n.clone(), d + 1)));
        }
    }
    let mut services: Vec<DependedOn> = depth
        .iter()
        .filter_map(|(id, d)| {
            let s = by_id.get(id.as_str())?;
            Some(DependedOn {
                id: id.clone(),
                name: s.name.clone(),
                kind: s.kind,
                criticality: s.criticality,
                depth: *d,
            })
        })
        .collect();
    services.sort_by(|a, b| (a.depth, &a.name).cmp(&(b.depth, &b.name)));
    let mut computers: BTreeMap<String, RunsOnComputer> = BTreeMap::new();
    let chain = std::iter::once(service).chain(
        services
            .iter()
            .filter_map(|d| by_id.get(d.id.as_str()).copied()),
    );
    for s in chain {
        for r in &s.runs_on {
            for (id, name) in computers_of(store, r, now)? {
                computers.entry(id.clone()).or_insert(RunsOnComputer {
                    id,
                    name,
                    service: s.name.clone(),
                });
            }
        }
    }
    let computers_total = computers.len();
    let mut listed: Vec<RunsOnComputer> = computers.into_values().collect();
    listed.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    listed.truncate(MAX_LISTED);
    Ok(Dependencies {
        services,
        computers_total,
        computers: listed,
    })
}
