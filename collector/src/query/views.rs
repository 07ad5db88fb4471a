//! Read models for people: one CI with its relationships both ways and identification
//! evidence, its history, its state as of a time, the drift between two times, the
//! software catalogue, impact traversal and a CycloneDX SBOM. Reads go through `Store`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::filter::Expr;
use crate::drift::diff::diff;
use crate::drift::view::ConfigView;
use crate::model::*;
use crate::reconcile::class_of_id;
use crate::store::{ComputerSummary, Store, StoreError};

/// Most relationships a detail view lists in each direction (the count is always given);
/// `GET /api/v1/cis/{id}?relationships=N` asks for up to this many.
pub const MAX_LISTED_RELATIONSHIPS: usize = 5000;
pub const DEFAULT_LISTED_RELATIONSHIPS: usize = 200;
/// Most nodes an impact traversal visits.
pub const MAX_IMPACT_NODES: usize = 10_000;
pub const MAX_IMPACT_DEPTH: usize = 4;

fn name_of(store: &dyn Store, id: &str) -> Result<(String, Option<CiClass>), StoreError> {
    // Ids name their class, so a name lookup need not decode the whole CI.
    Ok(match store.ci_summary(id)? {
        Some(summary) => (summary.name, class_of_id(id)),
        None => (String::new(), class_of_id(id)),
    })
}

fn edge_out(store: &dyn Store, r: &Relationship) -> Result<Value, StoreError> {
    // Installs edges carry the package name; other targets are few, so look them up.
    let (name, class) = match r.attributes.get("name").and_then(Value::as_str) {
        Some(n) if r.key.kind == RelKind::Installs => {
            (n.to_string(), Some(CiClass::SoftwareProduct))
        }
        _ => name_of(store, &r.key.to)?,
    };
    Ok(
        json!({"kind": r.key.kind, "to": r.key.to, "to_name": name, "to_class": class,
        "discriminator": r.key.discriminator, "attributes": r.attributes}),
    )
}

/// One CI now (or as of `at`), with relationships both ways and identification evidence.
pub fn ci_detail(
    store: &dyn Store,
    id: &str,
    at: Option<DateTime<Utc>>,
    limit: usize,
) -> Result<Option<Value>, StoreError> {
    let Some(current) = store.get_ci(id)? else {
        return Ok(None);
    };
    let limit = limit.min(MAX_LISTED_RELATIONSHIPS);
    let (ci, outgoing, outgoing_total) = match at {
        Some(t) => match store.as_of(id, t)? {
            Some(v) => {
                let total = v.relationships.len();
                (v.ci, v.relationships, total)
            }
            None => return Ok(None),
        },
        None => {
            let (page, total) = store.relationships_from_page(id, limit)?;
            (current, page, total)
        }
    };
    let incoming = store.relationships_to(id)?;
    let mut out = Vec::new();
    for r in outgoing.iter().take(limit) {
        out.push(edge_out(store, r)?);
    }
    let mut inc = Vec::new();
    for r in incoming.iter().take(limit) {
        let (name, class) = name_of(store, &r.key.from)?;
        inc.push(
            json!({"kind": r.key.kind, "from": r.key.from, "from_name": name, "from_class": class,
            "discriminator": r.key.discriminator, "attributes": r.attributes}),
        );
    }
    // The reporting agent is recorded on the computer; no scan of every agent.
    let agent = match ci.volatile.get("agent.id").and_then(Value::as_str) {
        Some(agent_id) if ci.class == CiClass::Computer => store
            .get_agent(agent_id)?
            .filter(|a| a.ci_id.as_deref() == Some(id) && a.superseded_by.is_none()),
        _ => None,
    };
    Ok(Some(json!({
        "ci": ci,
        "as_of": at,
        "relationships_out": out,
        "relationships_out_total": outgoing_total,
        "relationships_in": inc,
        "relationships_in_total": incoming.len(),
        "identification": agent.as_ref().and_then(|a| a.identification.clone()),
        "agent_id": agent.map(|a| a.id),
    })))
}

/// The versions of a CI, oldest first, without their edge lists.
pub fn history(store: &dyn Store, id: &str) -> Result<Vec<Value>, StoreError> {
    Ok(store
        .history(id)?
        .iter()
        .map(|v| {
            json!({"version": v.version, "valid_from": v.valid_from, "status": v.ci.status,
                "name": v.ci.name, "relationships": v.relationships.len(), "change_record": v.change_record})
        })
        .collect())
}

/// A computer's configuration as of `at`: its version, and its components' versions.
struct StateAt {
    computer: CiVersion,
    components: Vec<Ci>,
}

fn state_at(store: &dyn Store, id: &str, at: DateTime<Utc>) -> Result<Option<StateAt>, StoreError> {
    Ok(store
        .machine_as_of(id, at)?
        .map(|(computer, components)| StateAt {
            computer,
            components,
        }))
}

/// The drift items between a computer's state at `from` and at `to`.
pub fn diff_between(
    store: &dyn Store,
    id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Option<Vec<ChangeItem>>, StoreError> {
    let (Some(a), Some(b)) = (state_at(store, id, from)?, state_at(store, id, to)?) else {
        return Ok(None);
    };
    let installs = |v: &CiVersion| -> Vec<Install> {
        v.relationships
            .iter()
            .filter_map(Install::from_relationship)
            .collect()
    };
    let (ia, ib) = (installs(&a.computer), installs(&b.computer));
    let va = ConfigView::build(&a.computer.ci.attributes, a.components.iter(), ia.iter());
    let vb = ConfigView::build(&b.computer.ci.attributes, b.components.iter(), ib.iter());
    // Rated by the same severity rules a change record's items are, so the diff and the
    // record of one change never disagree.
    let rules = store
        .severity_rules()?
        .unwrap_or_else(|| SeverityRules::defaults(chrono::Utc::now()));
    let supports = if rules.uses_service_criticality() {
        crate::query::services::impact_on_computer(store, &b.computer.ci, chrono::Utc::now())?
            .first()
            .map(|s| s.criticality)
    } else {
        None
    };
    let mut items = diff(&va, &vb);
    for item in &mut items {
        item.severity = rules.severity_of(item, supports);
    }
    Ok(Some(items))
}

/// Distinct products with their title, install counts and versions (newest first in the
/// package's own order), by name.
pub fn catalogue(
    store: &dyn Store,
    prefix: Option<&str>,
    limit: usize,
    after: Option<&str>,
) -> Result<(Vec<Value>, usize), StoreError> {
    let prefix = prefix.map(str::to_lowercase);
    let mut products: Vec<Ci> = store
        .list_cis(Some(CiClass::SoftwareProduct))?
        .into_iter()
        .filter(|p| {
            prefix
                .as_ref()
                .is_none_or(|pre| p.name.to_lowercase().starts_with(pre.as_str()))
        })
        .collect();
    products.sort_by(|a, b| {
        a.name
            .to_lowercase()
            .cmp(&b.name.to_lowercase())
            .then(a.id.cmp(&b.id))
    });
    let total = products.len();
    let start = match after {
        Some(id) => products
            .iter()
            .position(|p| p.id == id)
            .map(|i| i + 1)
            .unwrap_or(0),
        None => 0,
    };
    let page: Vec<Ci> = products.into_iter().skip(start).take(limit).collect();
    let mut titled = if page.is_empty() {
        Default::default()
    } else {
        super::titles::titles_of(store, &page)?
    };
    let mut out = Vec::new();
    for p in page {
        let mut versions: BTreeMap<&str, usize> = BTreeMap::new();
        let mut computers = BTreeSet::new();
        let installs = store.installs_of(&p.id)?;
        let version_of: Vec<&str> = installs
            .variants
            .iter()
            .map(|v| v.get("version").and_then(Value::as_str).unwrap_or(""))
            .collect();
        // Versions order under the package's own scheme (dpkg, rpm, ...), as queries do.
        let scheme = installs
            .variants
            .iter()
            .find_map(|v| v.get("source").and_then(Value::as_str))
            .map(census_shared::version::VersionScheme::for_source)
            .unwrap_or(census_shared::version::VersionScheme::Generic);
        for (computer, variant) in &installs.installs {
            computers.insert(*computer);
            *versions.entry(version_of[*variant]).or_default() += 1;
        }
        let mut spread: Vec<(&str, usize)> = versions.into_iter().collect();
        spread.sort_by(|a, b| census_shared::version::compare(scheme, b.0, a.0));
        let distinct = spread.len();
        spread.truncate(super::titles::MAX_LISTED_VERSIONS);
        let title = titled.remove(&p.id);
        out.push(json!({"id": p.id, "name": p.name, "installs": computers.len(),
            "title": title.as_ref().map(|t| &t.product),
            "publisher": title.as_ref().and_then(|t| t.publisher.as_ref()),
            "category": title.as_ref().and_then(|t| t.category.as_ref()),
            "distinct_versions": distinct,
            "versions": spread.into_iter().map(|(v, n)| json!({"version": v, "computers": n})).collect::<Vec<_>>()}));
    }
    Ok((out, total))
}

/// What depends on or hangs off a CI: a product's (or OS release's) computers, optionally
/// within a version condition; a subnet's hosts; a computer's components, to `depth`.
pub fn impact(
    store: &dyn Store,
    from: &str,
    depth: usize,
    version: Option<&Expr>,
    limit: usize,
) -> Result<Option<Value>, StoreError> {
    let Some(origin) = store.get_ci(from)? else {
        return Ok(None);
    };
    let limit = limit.min(MAX_IMPACT_NODES);
    match origin.class {
        CiClass::SoftwareProduct => {
            // Decided by the product's variants: the version condition runs once per
            // variant, and only the computers listed have their edges read.
            let installs = store.installs_of(from)?;
            let passes: Vec<bool> = installs
                .variants
                .iter()
                .map(|v| version.is_none_or(|c| super::eval::matches_edge(c, v)))
                .collect();
            let mut keys: Vec<u64> = installs
                .installs
                .iter()
                .filter(|(_, v)| passes[*v])
                .map(|(k, _)| *k)
                .collect();
            keys.dedup();
            let total = installs.installs.iter().filter(|(_, v)| passes[*v]).count();
            let mut computers: Vec<ComputerSummary> = store
                .computer_summaries(&keys)?
                .into_iter()
                .flatten()
                .collect();
            computers.sort_by(|a, b| a.id.cmp(&b.id));
            let mut hosts = Vec::new();
            'listing: for c in &computers {
                for r in store.relationships_between(&c.id, from)? {
                    let wanted = r.key.kind == RelKind::Installs
                        && version
                            .is_none_or(|cond| super::eval::matches_edge(cond, &r.attributes));
                    if !wanted {
                        continue;
                    }
                    if hosts.len() >= limit {
                        break 'listing;
                    }
                    hosts.push(json!({"id": &*c.id, "name": &*c.name, "edge": r.attributes}));
                }
            }
            Ok(Some(
                json!({"from": origin, "computers_total": total, "computers": hosts}),
            ))
        }
        CiClass::OperatingSystem => {
            let mut hosts = Vec::new();
            let mut total = 0;
            for r in store.relationships_to(from)? {
                if r.key.kind != RelKind::Runs {
                    continue;
                }
                if let Some(cond) = version {
                    if !super::eval::matches_edge(cond, &r.attributes) {
                        continue;
                    }
                }
                total += 1;
                if hosts.len() < limit {
                    let (name, _) = name_of(store, &r.key.from)?;
                    hosts.push(json!({"id": r.key.from, "name": name, "edge": r.attributes}));
                }
            }
            Ok(Some(
                json!({"from": origin, "computers_total": total, "computers": hosts}),
            ))
        }
        CiClass::Subnet => {
            let mut hosts = BTreeMap::new();
            let mut total = 0;
            for r in store.relationships_to(from)? {
                if r.key.kind != RelKind::In {
                    continue;
                }
                let Some(ip) = store.get_ci(&r.key.from)? else {
                    continue;
                };
                if ip.status == CiStatus::Retired {
                    continue;
                }
                let Some(owner) = ip.owner.clone() else {
                    continue;
                };
                total += 1;
                if hosts.len() < limit {
                    let (name, _) = name_of(store, &owner)?;
                    hosts
                        .entry(owner.clone())
                        .or_insert_with(|| json!({"id": owner, "name": name, "addresses": []}));
                    if let Some(list) = hosts
                        .get_mut(&owner)
                        .and_then(|h| h["addresses"].as_array_mut())
                    {
                        list.push(json!(ip.name));
                    }
                }
            }
            Ok(Some(
                json!({"from": origin, "addresses_total": total, "computers": hosts.into_values().collect::<Vec<_>>()}),
            ))
        }
        // Everything else is walked outwards along its edges.
        CiClass::Computer
        | CiClass::Disk
        | CiClass::NetworkInterface
        | CiClass::IpAddress
        | CiClass::Service => {
            let depth = depth.clamp(1, MAX_IMPACT_DEPTH);
            let mut nodes = Vec::new();
            let mut edges = Vec::new();
            let mut seen = BTreeSet::from([from.to_string()]);
            let mut frontier = VecDeque::from([(from.to_string(), 0usize)]);
            let mut truncated = false;
            while let Some((id, d)) = frontier.pop_front() {
                if d >= depth {
                    continue;
                }
                for r in store.relationships_from(&id)? {
                    edges.push(json!({"from": r.key.from, "kind": r.key.kind, "to": r.key.to}));
                    if seen.insert(r.key.to.clone()) {
                        if nodes.len() >= limit {
                            truncated = true;
                            continue;
                        }
                        let (name, class) = match r.attributes.get("name").and_then(Value::as_str) {
                            Some(n) if r.key.kind == RelKind::Installs => {
                                (n.to_string(), Some(CiClass::SoftwareProduct))
                            }
                            _ => name_of(store, &r.key.to)?,
                        };
                        nodes.push(
                            json!({"id": r.key.to, "name": name, "class": class, "depth": d + 1}),
                        );
                        frontier.push_back((r.key.to, d + 1));
                    }
                }
            }
            Ok(Some(
                json!({"from": origin, "depth": depth, "nodes": nodes, "edges": edges, "truncated": truncated}),
            ))
        }
    }
}

/// Percent-encodes a purl component (RFC 3986 unreserved characters stay).
fn purl_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A package URL for an installed package, when its source has a purl type.
pub fn purl(edge: &Attributes, os_id: Option<&str>) -> Option<String> {
    let get = |k: &str| edge.get(k).and_then(Value::as_str);
    let (name, version) = (get("name")?, get("version")?);
    let kind = match get("source")? {
        "dpkg" => "deb",
        "rpm" => "rpm",
        "apk" => "apk",
        "pacman" => "alpm",
        "snap" => "snap",
        "flatpak" => "flatpak",
        _ => return None,
    };
    let namespace = os_id
        .map(|o| format!("{}/", purl_encode(o)))
        .unwrap_or_default();
    let mut p = format!(
        "pkg:{kind}/{namespace}{}@{}",
        purl_encode(name),
        purl_encode(version)
    );
    if let Some(arch) = get("arch") {
        p.push_str(&format!("?arch={}", purl_encode(arch)));
    }
    Some(p)
}

/// A CycloneDX 1.5 SBOM of one computer's installed software.
pub fn sbom(store: &dyn Store, id: &str, now: DateTime<Utc>) -> Result<Option<Value>, StoreError> {
    let Some(ci) = store.get_ci(id)? else {
        return Ok(None);
    };
    if ci.class != CiClass::Computer {
        return Ok(None);
    }
    let edges = store.relationships_from(id)?;
    let os_id = match edges.iter().find(|r| r.key.kind == RelKind::Runs) {
        Some(r) => store.get_ci(&r.key.to)?.and_then(|os| {
            os.attributes
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
        }),
        None => None,
    };
    let mut components = Vec::new();
    for r in edges.iter().filter(|r| r.key.kind == RelKind::Installs) {
        let a = &r.attributes;
        let get = |k: &str| a.get(k).and_then(Value::as_str);
        let mut c = serde_json::Map::new();
        c.insert("type".into(), json!("library"));
        c.insert(
            "bom-ref".into(),
            json!(format!("{}|{}", r.key.to, r.key.discriminator)),
        );
        c.insert("name".into(), json!(get("name").unwrap_or(&r.key.to)));
        if let Some(v) = get("version") {
            c.insert("version".into(), json!(v));
        }
        if let Some(p) = get("publisher") {
            c.insert("publisher".into(), json!(p));
        }
        if let Some(p) = purl(a, os_id.as_deref()) {
            c.insert("purl".into(), json!(p));
        }
        let mut props = Vec::new();
        for k in ["source", "arch", "source_package", "install_date"] {
            if let Some(v) = get(k) {
                props.push(json!({"name": format!("census:{k}"), "value": v}));
            }
        }
        c.insert("properties".into(), Value::Array(props));
        components.push(Value::Object(c));
    }
    let serial = {
        let b: [u8; 16] = rand::random();
        let h = hex::encode(b);
        format!(
            "urn:uuid:{}-{}-4{}-a{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..32]
        )
    };
    Ok(Some(json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": serial,
        "version": 1,
        "metadata": {
            "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "tools": {"components": [{"type": "application", "name": "census-collector", "version": env!("CARGO_PKG_VERSION")}]},
            "component": {"type": "device", "bom-ref": ci.id, "name": ci.name},
        },
        "components": components,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_encode_epochs_and_pluses() {
        let mut a = Attributes::new();
        a.insert("name".into(), json!("vim"));
        a.insert("version".into(), json!("2:9.0.1378-2+deb12u1"));
        a.insert("source".into(), json!("dpkg"));
        a.insert("arch".into(), json!("amd64"));
        assert_eq!(
            purl(&a, Some("debian")).unwrap(),
            "pkg:deb/debian/vim@2%3A9.0.1378-2%2Bdeb12u1?arch=amd64"
        );
        a.insert("source".into(), json!("windows-registry"));
        assert_eq!(purl(&a, None), None);
    }
}
