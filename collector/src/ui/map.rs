//! The dependency map page: a server-rendered SVG (no script, no CDN) of the map around a
//! computer or a service, laid out in rings by hops from the centre, each ring ordered by
//! where its neighbours sit so that edges cross little; every node links to its own map;
//! below it, the edges as a table (what a screen reader reads) and a CSV link.
//!
//! Architecture Invariant: every text on the page (names, process names agents reported)
//! reaches it through askama's escaping; this module computes coordinates only.

use std::collections::{BTreeMap, HashMap};
use std::f64::consts::PI;
use std::sync::Arc;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::Extension;
use chrono::Utc;
use serde::Deserialize;

use super::pages::{params, segment, url_encode};
use super::{render, Chrome, UiResult};
use crate::http::AppState;
use crate::model::CiClass;
use crate::ops::map as op;
use crate::people::Person;
use crate::query::map::{DependencyMap, EdgeKind, NodeKind, MAX_DEPTH};
use crate::ui::session::Session;

/// Endpoint groups the endpoints page lists (the CSV export takes up to the API's bound).
const ENDPOINTS_LISTED: usize = 200;

/// Distance between two rings, and the least arc between two nodes of one ring (pixels).
const RING: f64 = 170.0;
const SPACING: f64 = 26.0;
const MARGIN: f64 = 190.0;
/// Longest label drawn; the full name is the node's tooltip.
const LABEL_CHARS: usize = 28;

pub struct SvgNode {
    pub x: String,
    pub y: String,
    pub label: String,
    pub title: String,
    pub href: Option<String>,
    /// computer, endpoint, service, centre: the CSS class.
    pub kind: &'static str,
    /// Label placement: rotated along its ray, outwards.
    pub label_x: String,
    pub label_y: String,
    pub rotate: String,
    pub anchor: &'static str,
}

pub struct SvgEdge {
    pub x1: String,
    pub y1: String,
    pub x2: String,
    pub y2: String,
    pub title: String,
    pub kind: &'static str,
}

pub struct EdgeRow {
    pub from: String,
    pub from_href: Option<String>,
    pub to: String,
    pub to_href: Option<String>,
    pub service: String,
    pub processes: String,
    pub samples: u64,
    pub last_seen: String,
    pub reported_by: String,
}

#[derive(Template)]
#[template(path = "map.html")]
struct MapPage {
    chrome: Chrome,
    heading: String,
    /// Computer name typed in the form (no centre chosen yet).
    host: String,
    chosen: bool,
    depth: u32,
    depths: Vec<u32>,
    /// The query string that names the centre (`ci=...` or `service=...`).
    centre_query: String,
    csv_href: String,
    width: String,
    height: String,
    view_box: String,
    nodes: Vec<SvgNode>,
    edges: Vec<SvgEdge>,
    rows: Vec<EdgeRow>,
    truncated: bool,
    node_count: usize,
}

#[derive(Debug, Default, Deserialize)]
pub struct MapQuery {
    ci: Option<String>,
    service: Option<String>,
    /// A computer's name, from the form.
    host: Option<String>,
    depth: Option<u32>,
}

fn href_of(id: &str, kind: NodeKind, depth: u32) -> Option<String> {
    match kind {
        NodeKind::Computer => Some(format!("/ui/map?ci={}&depth={depth}", url_encode(id))),
        NodeKind::Service => Some(format!("/ui/services/{}", segment(id))),
        NodeKind::Endpoint => Some(format!("/ui/map/endpoints#{}", endpoint_anchor(id))),
    }
}

/// The fragment naming an endpoint group's row on the endpoints page.
fn endpoint_anchor(id: &str) -> String {
    let group = id.strip_prefix("endpoint:").unwrap_or(id);
    let slug: String = group
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("ep-{slug}")
}

fn short(label: &str) -> String {
    if label.chars().count() <= LABEL_CHARS {
        label.to_string()
    } else {
        let cut: String = label.chars().take(LABEL_CHARS - 1).collect();
        format!("{cut}…")
    }
}

fn px(v: f64) -> String {
    format!("{v:.1}")
}

/// Node positions: the centre ring at the origin, ring `d` at radius `d * RING` or wider
/// when its nodes need the arc; within a ring, nodes in the order of the mean angle of
/// their neighbours already placed.
pub fn layout(map: &DependencyMap) -> HashMap<String, (f64, f64, f64)> {
    let mut neighbours: HashMap<&str, Vec<&str>> = HashMap::new();
    for e in &map.edges {
        neighbours.entry(&e.from).or_default().push(&e.to);
        neighbours.entry(&e.to).or_default().push(&e.from);
    }
    let mut rings: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for n in &map.nodes {
        rings.entry(n.depth).or_default().push(&n.id);
    }
    let mut placed: HashMap<String, (f64, f64, f64)> = HashMap::new();
    for (&depth, ids) in &rings {
        let mut ids = ids.clone();
        let mean_angle = |id: &str, placed: &HashMap<String, (f64, f64, f64)>| -> f64 {
            let angles: Vec<f64> = neighbours
                .get(id)
                .map(|ns| {
                    ns.iter()
                        .filter_map(|n| placed.get(*n).map(|p| p.2))
                        .collect()
                })
                .unwrap_or_default();
            if angles.is_empty() {
                f64::MAX
            } else {
                // Mean of unit vectors: angles either side of 0 do not average to PI.
                let (s, c) = angles
                    .iter()
                    .fold((0.0, 0.0), |(s, c), a| (s + a.sin(), c + a.cos()));
                s.atan2(c).rem_euclid(2.0 * PI)
            }
        };
        ids.sort_by(|a, b| {
            mean_angle(a, &placed)
                .total_cmp(&mean_angle(b, &placed))
                .then(a.cmp(b))
        });
        let n = ids.len() as f64;
        let radius = if depth == 0 && ids.len() == 1 {
            0.0
        } else {
            (f64::from(depth.max(1)) * RING).max(n * SPACING / (2.0 * PI))
        };
        for (i, id) in ids.iter().enumerate() {
            let angle = 2.0 * PI * (i as f64) / n - PI / 2.0;
            placed.insert(
                id.to_string(),
                (radius * angle.cos(), radius * angle.sin(), angle),
            );
        }
    }
    placed
}

fn svg_of(map: &DependencyMap, depth: u32) -> (Vec<SvgNode>, Vec<SvgEdge>, f64) {
    let at = layout(map);
    let extent = at
        .values()
        .map(|(x, y, _)| x.abs().max(y.abs()))
        .fold(0.0, f64::max)
        + MARGIN;
    let names: HashMap<&str, &str> = map
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), n.name.as_str()))
        .collect();
    let name = |id: &str| names.get(id).copied().unwrap_or(id).to_string();
    let edges = map
        .edges
        .iter()
        .filter_map(|e| {
            let (x1, y1, _) = at.get(&e.from)?;
            let (x2, y2, _) = at.get(&e.to)?;
            // Stop short of the target's circle so the arrowhead shows.
            let (dx, dy) = (x2 - x1, y2 - y1);
            let len = (dx * dx + dy * dy).sqrt().max(1.0);
            let (x2, y2) = (x2 - dx / len * 9.0, y2 - dy / len * 9.0);
            let title = match e.kind {
                EdgeKind::RunsOn => format!("{} runs on {}", name(&e.from), name(&e.to)),
                EdgeKind::ConnectsTo => format!(
                    "{} → {} {}/{}{}",
                    name(&e.from),
                    name(&e.to),
                    e.protocol,
                    e.port,
                    match (&e.client_process, &e.server_process) {
                        (None, None) => String::new(),
                        (c, s) => format!(
                            " ({} → {})",
                            c.as_deref().unwrap_or("?"),
                            s.as_deref().unwrap_or("?")
                        ),
                    }
                ),
            };
            Some(SvgEdge {
                x1: px(*x1),
                y1: px(*y1),
                x2: px(x2),
                y2: px(y2),
                title,
                kind: match e.kind {
                    EdgeKind::RunsOn => "runs-on",
                    EdgeKind::ConnectsTo => "connects-to",
                },
            })
        })
        .collect();
    let nodes = map
        .nodes
        .iter()
        .filter_map(|n| {
            let (x, y, angle) = *at.get(&n.id)?;
            let outward_left = angle.cos() < 0.0;
            let degrees = angle.to_degrees() + if outward_left { 180.0 } else { 0.0 };
            let (lx, ly) = if x == 0.0 && y == 0.0 {
                (x + 10.0, y - 10.0)
            } else {
                (x + angle.cos() * 10.0, y + angle.sin() * 10.0)
            };
            let mut title = format!(
                "{} ({})",
                n.name,
                match n.kind {
                    NodeKind::Computer => "computer",
                    NodeKind::Endpoint => "external endpoint group",
                    NodeKind::Service => "service",
                }
            );
            if !n.addresses.is_empty() {
                title.push_str(": ");
                title.push_str(&n.addresses.join(", "));
            }
            Some(SvgNode {
                x: px(x),
                y: px(y),
                label: short(&n.name),
                title,
                href: href_of(&n.id, n.kind, depth),
                kind: match (n.depth, n.kind) {
                    (0, _) => "centre",
                    (_, NodeKind::Computer) => "computer",
                    (_, NodeKind::Endpoint) => "endpoint",
                    (_, NodeKind::Service) => "service",
                },
                label_x: px(lx),
                label_y: px(ly),
                rotate: if x == 0.0 && y == 0.0 {
                    "0".into()
                } else {
                    format!("{degrees:.1} {} {}", px(lx), px(ly))
                },
                anchor: if outward_left && !(x == 0.0 && y == 0.0) {
                    "end"
                } else {
                    "start"
                },
            })
        })
        .collect();
    (nodes, edges, extent)
}

pub async fn map(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
    RawQuery(q): RawQuery,
) -> UiResult {
    let p: MapQuery = params(q)?;
    let depth = p.depth.unwrap_or(op::DEFAULT_DEPTH).clamp(1, MAX_DEPTH);
    let host = p.host.clone().unwrap_or_default();
    let chrome = Chrome::new(&person, &session, "/ui/map");
    let found = st
        .run(&person, move |ops, _| {
            let now = Utc::now();
            let ci = match (&p.ci, &p.host) {
                (Some(ci), _) => Some(ci.clone()),
                (None, Some(host)) if !host.trim().is_empty() => {
                    let wanted = host.trim().to_lowercase();
                    let mut hit = None;
                    ops.store.scan_cis(CiClass::Computer, &mut |c| {
                        if c.name.to_lowercase() == wanted {
                            hit = Some(c.id);
                            return false;
                        }
                        true
                    })?;
                    Some(hit.ok_or_else(|| {
                        crate::ops::OpError::NotFound(format!("a computer named {}", host.trim()))
                    })?)
                }
                _ => None,
            };
            match (ci, &p.service) {
                (Some(ci), _) => {
                    let map = op::around(ops, &ci, Some(depth), now)?;
                    let name = map
                        .nodes
                        .iter()
                        .find(|n| n.id == ci)
                        .map(|n| n.name.clone())
                        .unwrap_or_else(|| ci.clone());
                    Ok(Some((map, format!("ci={}", url_encode(&ci)), name)))
                }
                (None, Some(service)) => {
                    let map = op::of_service(ops, service, Some(depth), now)?;
                    let name = map
                        .nodes
                        .first()
                        .map(|n| n.name.clone())
                        .unwrap_or_else(|| service.clone());
                    Ok(Some((
                        map,
                        format!("service={}", url_encode(service)),
                        name,
                    )))
                }
                (None, None) => Ok(None),
            }
        })
        .await?;
    let Some((map, centre_query, name)) = found else {
        return render(&MapPage {
            chrome,
            heading: "Dependency map".into(),
            host,
            chosen: false,
            depth,
            depths: (1..=MAX_DEPTH).collect(),
            centre_query: String::new(),
            csv_href: String::new(),
            width: "0".into(),
            height: "0".into(),
            view_box: "0 0 0 0".into(),
            nodes: Vec::new(),
            edges: Vec::new(),
            rows: Vec::new(),
            truncated: false,
            node_count: 0,
        });
    };
    let (nodes, edges, extent) = svg_of(&map, depth);
    let names: HashMap<&str, (&str, NodeKind)> = map
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), (n.name.as_str(), n.kind)))
        .collect();
    let label = |id: &str| {
        names
            .get(id)
            .map(|(n, k)| (n.to_string(), href_of(id, *k, depth)))
            .unwrap_or_else(|| (id.to_string(), None))
    };
    let rows = map
        .edges
        .iter()
        .filter(|e| e.kind == EdgeKind::ConnectsTo)
        .map(|e| {
            let (from, from_href) = label(&e.from);
            let (to, to_href) = label(&e.to);
            EdgeRow {
                from,
                from_href,
                to,
                to_href,
                service: format!("{}/{}", e.protocol, e.port),
                processes: format!(
                    "{} → {}",
                    e.client_process.as_deref().unwrap_or("?"),
                    e.server_process.as_deref().unwrap_or("?")
                ),
                samples: e.samples,
                last_seen: e
                    .last_seen
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default(),
                reported_by: e.reported_by.join(", "),
            }
        })
        .collect();
    let csv_href = match centre_query.strip_prefix("service=") {
        Some(service) => format!("/api/v1/services/{service}/map/edges?depth={depth}"),
        None => format!("/api/v1/map/edges?{centre_query}&depth={depth}"),
    };
    let side = extent * 2.0;
    render(&MapPage {
        chrome,
        heading: format!("Dependency map of {name}"),
        host,
        chosen: true,
        depth,
        depths: (1..=MAX_DEPTH).collect(),
        centre_query,
        csv_href,
        width: px(side),
        height: px(side),
        view_box: format!("{} {} {} {}", px(-extent), px(-extent), px(side), px(side)),
        node_count: map.nodes.len(),
        nodes,
        edges,
        rows,
        truncated: map.truncated,
    })
}

pub struct EndpointRow {
    pub anchor: String,
    pub subnet: String,
    /// Each address, with who holds it when someone does ("2 computers").
    pub addresses: Vec<String>,
    pub serves: String,
    pub uses: String,
    pub computers: usize,
    /// Some of the computers: (name, their map).
    pub named: Vec<(String, String)>,
    pub more: usize,
    pub last_seen: String,
}

#[derive(Template)]
#[template(path = "map_endpoints.html")]
struct EndpointsPage {
    chrome: Chrome,
    total: usize,
    rows: Vec<EndpointRow>,
}

/// The external endpoints the fleet talks to.
pub async fn endpoints(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
) -> UiResult {
    let list = st
        .run(&person, move |ops, _| {
            op::endpoints(ops, Some(ENDPOINTS_LISTED), Utc::now())
        })
        .await?;
    let rows = list
        .groups
        .iter()
        .map(|g| EndpointRow {
            anchor: endpoint_anchor(&g.id),
            subnet: g.subnet.clone(),
            addresses: g
                .addresses
                .iter()
                .map(|a| match a.held_by {
                    0 => a.address.clone(),
                    n => format!("{} (held by {n} computers)", a.address),
                })
                .collect(),
            serves: g.ports_it_serves.join(", "),
            uses: g.ports_it_uses.join(", "),
            computers: g.computers,
            named: g
                .named
                .iter()
                .map(|c| (c.name.clone(), format!("/ui/map?ci={}", url_encode(&c.id))))
                .collect(),
            more: g.computers.saturating_sub(g.named.len()),
            last_seen: g.last_seen.format("%Y-%m-%d %H:%M").to_string(),
        })
        .collect();
    render(&EndpointsPage {
        chrome: Chrome::new(&person, &session, "/ui/map"),
        total: list.total,
        rows,
    })
}
