//! The dependency map: `connects_to` edges (client -> server, on a protocol and port) built
//! from the flows computers reported, around a computer to a depth or around a service.
//!
//! An edge is what either side said: the client's outbound flow, the server's inbound one,
//! or both (then the client's process comes from the client and the server's from the
//! server). A peer address one computer held when the flow was reported is that computer;
//! any other address is an external endpoint, shown as its /24 (or /64) group so that a
//! NAT pool, a load balancer or a SaaS range is one node rather than a cloud of them.
//!
//! Architecture Invariant: a map is bounded by [`MAX_NODES`] and [`MAX_DEPTH`] and reads
//! only the flows of the computers it shows (their own and those reported to their
//! addresses), never the fleet.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::model::flows::{endpoint_group, endpoint_id, Flow};
use crate::model::*;
use crate::store::{Store, StoreError};
use census_shared::FlowDirection;

/// The deepest neighbourhood a request may ask for.
pub const MAX_DEPTH: u32 = 4;
/// The most nodes a map shows; past it, `truncated` says so.
pub const MAX_NODES: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    Computer,
    /// Addresses no computer (or more than one) held: a group by subnet.
    Endpoint,
    Service,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MapNode {
    pub id: String,
    pub name: String,
    pub kind: NodeKind,
    /// Hops from the nearest centre.
    pub depth: u32,
    /// For an endpoint group: the addresses seen in it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    ConnectsTo,
    /// A service runs on a computer (service maps only).
    RunsOn,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MapEdge {
    pub kind: EdgeKind,
    /// The client (or the service, for `runs_on`).
    pub from: String,
    /// The server (or the computer).
    pub to: String,
    pub protocol: String,
    pub port: u16,
    pub client_process: Option<String>,
    pub server_process: Option<String>,
    /// Samples that saw it, over every report from either side.
    pub samples: u64,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    /// "client", "server" or both: whose agent reported it.
    pub reported_by: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DependencyMap {
    pub centre: Vec<String>,
    pub depth: u32,
    pub nodes: Vec<MapNode>,
    pub edges: Vec<MapEdge>,
    /// More nodes were reachable than [`MAX_NODES`].
    pub truncated: bool,
}

/// One side's say about one edge, before the two sides are joined.
struct Said {
    client: String,
    server: String,
    protocol: &'static str,
    port: u16,
    process: Option<String>,
    by_client: bool,
    samples: u64,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    /// The peer address, for an endpoint group.
    endpoint_address: Option<String>,
}

type EdgeKey = (String, String, &'static str, u16);

/// The other end of a flow.
enum Peer {
    /// The one computer holding the address.
    Computer(String),
    /// A connection to the reporter's own address: no edge between machines.
    Itself,
    /// No computer, or several, hold the address: an external endpoint.
    Endpoint,
}

/// Reads flows around computers, remembering what it read.
struct Reader<'a> {
    store: &'a dyn Store,
    expire_before: DateTime<Utc>,
    last_seen: HashMap<String, Option<DateTime<Utc>>>,
    holders: HashMap<String, Vec<String>>,
    /// Each reporter's live flows, read once per map (a depth-2 walk asks for a
    /// computer's flows from itself and from each neighbour it reported).
    flows: HashMap<String, Vec<Flow>>,
}

impl<'a> Reader<'a> {
    fn new(store: &'a dyn Store, now: DateTime<Utc>, expiry: Duration) -> Reader<'a> {
        Reader {
            store,
            expire_before: now - expiry,
            last_seen: HashMap::new(),
            holders: HashMap::new(),
            flows: HashMap::new(),
        }
    }

    fn computer_last_seen(&mut self, id: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        if let Some(t) = self.last_seen.get(id) {
            return Ok(*t);
        }
        let t = self
            .store
            .get_ci(id)?
            .filter(|c| c.class == CiClass::Computer && c.status != CiStatus::Retired)
            .map(|c| c.last_seen);
        self.last_seen.insert(id.to_string(), t);
        Ok(t)
    }

    fn holders(&mut self, address: &str) -> Result<Vec<String>, StoreError> {
        if let Some(h) = self.holders.get(address) {
            return Ok(h.clone());
        }
        let h = self.store.address_holders(address)?;
        self.holders.insert(address.to_string(), h.clone());
        Ok(h)
    }

    /// A reporter's flows still on the map, with a current flow seen as late as its
    /// reporter.
    fn live_flows(&mut self, reporter: &str) -> Result<Vec<Flow>, StoreError> {
        if let Some(f) = self.flows.get(reporter) {
            return Ok(f.clone());
        }
        let Some(reporter_seen) = self.computer_last_seen(reporter)? else {
            return Ok(Vec::new());
        };
        let mut flows = self.store.flows_of(reporter)?;
        for f in &mut flows {
            if f.current {
                f.last_seen = f.last_seen.max(reporter_seen);
            }
        }
        flows.retain(|f| f.last_seen >= self.expire_before);
        self.flows.insert(reporter.to_string(), flows.clone());
        Ok(flows)
    }

    fn said(reporter: &str, other: String, f: &Flow, endpoint: bool) -> Said {
        let outbound = f.direction == FlowDirection::Outbound;
        let (client, server) = if outbound {
            (reporter.to_string(), other)
        } else {
            (other, reporter.to_string())
        };
        Said {
            client,
            server,
            protocol: f.protocol,
            port: f.port,
            process: f.process.clone(),
            by_client: outbound,
            samples: f.samples,
            first_seen: f.first_seen,
            last_seen: f.last_seen,
            endpoint_address: endpoint.then(|| f.remote.clone()),
        }
    }

    /// Who is at the other end of `reporter`'s flow `f`.
    fn peer_of(&mut self, reporter: &str, f: &Flow) -> Result<Peer, StoreError> {
        if let Some(p) = &f.peer {
            return Ok(Peer::Computer(p.clone()));
        }
        // Resolved when read if it was not when reported (the peer enrolled since).
        Ok(match self.holders(&f.remote)?.as_slice() {
            [one] if one != reporter => Peer::Computer(one.clone()),
            [_] => Peer::Itself,
            _ => Peer::Endpoint,
        })
    }

    /// Every edge with `id` at one end.
    fn edges_around(&mut self, id: &str) -> Result<Vec<Said>, StoreError> {
        let mut out = Vec::new();
        for f in self.live_flows(id)? {
            match self.peer_of(id, &f)? {
                Peer::Computer(p) => out.push(Self::said(id, p, &f, false)),
                Peer::Endpoint => out.push(Self::said(
                    id,
                    endpoint_id(&endpoint_group(&f.remote)),
                    &f,
                    true,
                )),
                Peer::Itself => {}
            }
        }
        // What others reported about this computer's addresses.
        for address in self.store.addresses_of(id)? {
            let unique_holder = matches!(self.holders(&address)?.as_slice(), [one] if one == id);
            for reporter in self.store.flow_reporters(&address)? {
                if reporter == id {
                    continue;
                }
                for f in self.live_flows(&reporter)? {
                    let about_this = f.remote == address
                        && match &f.peer {
                            Some(p) => p == id,
                            None => unique_holder,
                        };
                    if about_this {
                        out.push(Self::said(&reporter, id.to_string(), &f, false));
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Joins what both sides said into edges, one per (client, server, protocol, port).
fn join(
    said: Vec<Said>,
) -> (
    BTreeMap<EdgeKey, MapEdge>,
    BTreeMap<String, BTreeSet<String>>,
) {
    let mut edges: BTreeMap<EdgeKey, MapEdge> = BTreeMap::new();
    let mut endpoint_addresses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut seen_sides: BTreeSet<(EdgeKey, bool, Option<String>)> = BTreeSet::new();
    for s in said {
        let key = (s.client.clone(), s.server.clone(), s.protocol, s.port);
        if let Some(a) = &s.endpoint_address {
            let node = if s.by_client { &s.server } else { &s.client };
            endpoint_addresses
                .entry(node.clone())
                .or_default()
                .insert(a.clone());
        }
        // One report read twice (from both ends of a depth-2 walk) counts once.
        let side = (
            key.clone(),
            s.by_client,
            s.process.clone().or(s.endpoint_address.clone()),
        );
        if !seen_sides.insert(side) {
            continue;
        }
        let e = edges.entry(key).or_insert_with(|| MapEdge {
            kind: EdgeKind::ConnectsTo,
            from: s.client.clone(),
            to: s.server.clone(),
            protocol: s.protocol.to_string(),
            port: s.port,
            client_process: None,
            server_process: None,
            samples: 0,
            first_seen: None,
            last_seen: None,
            reported_by: Vec::new(),
        });
        let side_name = if s.by_client { "client" } else { "server" };
        if !e.reported_by.iter().any(|r| r == side_name) {
            e.reported_by.push(side_name.to_string());
            e.reported_by.sort();
        }
        let process = if s.by_client {
            &mut e.client_process
        } else {
            &mut e.server_process
        };
        if process.is_none() {
            *process = s.process.clone();
        }
        e.samples = e.samples.saturating_add(s.samples);
        e.first_seen = Some(e.first_seen.map_or(s.first_seen, |t| t.min(s.first_seen)));
        e.last_seen = Some(e.last_seen.map_or(s.last_seen, |t| t.max(s.last_seen)));
    }
    (edges, endpoint_addresses)
}

/// The map around `centres` (computer ids) to `depth` hops.
pub fn neighbourhood(
    store: &dyn Store,
    centres: &[String],
    depth: u32,
    now: DateTime<Utc>,
    expiry: Duration,
) -> Result<DependencyMap, StoreError> {
    let depth = depth.min(MAX_DEPTH);
    let mut reader = Reader::new(store, now, expiry);
    let mut depth_of: BTreeMap<String, u32> = BTreeMap::new();
    let mut queue: VecDeque<String> = VecDeque::new();
    for c in centres {
        if reader.computer_last_seen(c)?.is_some() && !depth_of.contains_key(c) {
            depth_of.insert(c.clone(), 0);
            queue.push_back(c.clone());
        }
    }
    let mut said = Vec::new();
    let mut truncated = false;
    while let Some(id) = queue.pop_front() {
        let d = depth_of.get(&id).copied().unwrap_or(0);
        if d >= depth {
            continue;
        }
        for s in reader.edges_around(&id)? {
            for end in [&s.client, &s.server] {
                if depth_of.contains_key(end.as_str()) {
                    continue;
                }
                if depth_of.len() >= MAX_NODES {
                    truncated = true;
                    continue;
                }
                depth_of.insert(end.clone(), d + 1);
                if !end.starts_with("endpoint:") {
                    queue.push_back(end.clone());
                }
            }
            said.push(s);
        }
    }
    let (edges, endpoint_addresses) = join(said);
    let edges: Vec<MapEdge> = edges
        .into_values()
        .filter(|e| depth_of.contains_key(&e.from) && depth_of.contains_key(&e.to))
        .collect();
    let computer_ids: Vec<&str> = depth_of
        .keys()
        .filter(|id| !id.starts_with("endpoint:"))
        .map(String::as_str)
        .collect();
    let names: HashMap<String, String> = store
        .get_cis(&computer_ids)?
        .into_iter()
        .flatten()
        .map(|c| (c.id, c.name))
        .collect();
    let nodes = depth_of
        .iter()
        .map(|(id, &d)| match id.strip_prefix("endpoint:") {
            Some(group) => MapNode {
                id: id.clone(),
                name: group.to_string(),
                kind: NodeKind::Endpoint,
                depth: d,
                addresses: endpoint_addresses
                    .get(id)
                    .map(|a| a.iter().cloned().collect())
                    .unwrap_or_default(),
            },
            None => MapNode {
                id: id.clone(),
                name: names.get(id).cloned().unwrap_or_else(|| id.clone()),
                kind: NodeKind::Computer,
                depth: d,
                addresses: Vec::new(),
            },
        })
        .collect();
    Ok(DependencyMap {
        centre: centres.to_vec(),
        depth,
        nodes,
        edges,
        truncated,
    })
}

/// The computers that depend on `id` through the network: its clients, and theirs, to
/// `depth` hops (what breaks when `id` does), by id -> name.
pub fn dependents(
    store: &dyn Store,
    id: &str,
    depth: u32,
    now: DateTime<Utc>,
    expiry: Duration,
) -> Result<BTreeMap<String, String>, StoreError> {
    let mut reader = Reader::new(store, now, expiry);
    let mut found: BTreeSet<String> = BTreeSet::new();
    let mut frontier = vec![id.to_string()];
    for _ in 0..depth.min(MAX_DEPTH) {
        let mut next = Vec::new();
        for server in frontier {
            for s in reader.edges_around(&server)? {
                if s.server == server
                    && s.client != id
                    && !s.client.starts_with("endpoint:")
                    && found.len() < MAX_NODES
                    && found.insert(s.client.clone())
                {
                    next.push(s.client);
                }
            }
        }
        frontier = next;
    }
    let ids: Vec<&str> = found.iter().map(String::as_str).collect();
    Ok(store
        .get_cis(&ids)?
        .into_iter()
        .flatten()
        .map(|c| (c.id, c.name))
        .collect())
}

/// A service's map: the service, what it runs on, and their neighbourhood to `depth`.
pub fn of_service(
    store: &dyn Store,
    service: &crate::model::service::Service,
    depth: u32,
    now: DateTime<Utc>,
    expiry: Duration,
) -> Result<DependencyMap, StoreError> {
    let mut computers = BTreeMap::new();
    for r in &service.runs_on {
        computers.extend(crate::query::services::computers_of(store, r, now)?);
    }
    let centres: Vec<String> = computers
        .keys()
        .take(MAX_NODES.saturating_sub(1))
        .cloned()
        .collect();
    let mut map = neighbourhood(store, &centres, depth, now, expiry)?;
    map.truncated |= computers.len() > centres.len();
    for n in &mut map.nodes {
        n.depth += 1;
    }
    let service_id = service.id.clone();
    for c in &centres {
        map.edges.push(MapEdge {
            kind: EdgeKind::RunsOn,
            from: service_id.clone(),
            to: c.clone(),
            protocol: String::new(),
            port: 0,
            client_process: None,
            server_process: None,
            samples: 0,
            first_seen: None,
            last_seen: None,
            reported_by: Vec::new(),
        });
    }
    map.nodes.insert(
        0,
        MapNode {
            id: service_id.clone(),
            name: service.name.clone(),
            kind: NodeKind::Service,
            depth: 0,
            addresses: Vec::new(),
        },
    );
    map.centre = vec![service_id];
    Ok(map)
}

/// The most endpoint groups one listing gives.
pub const MAX_ENDPOINT_GROUPS: usize = 1_000;
/// The computers an endpoint group names (`computers` counts them all).
pub const COMPUTERS_NAMED: usize = 20;

/// An address in an endpoint group.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EndpointAddress {
    pub address: String,
    /// How many computers hold it now: 0 (nothing Census inventories), or 2 and more (a NAT
    /// pool, a bridge address every Docker host has): never resolved to one of them. (An
    /// address one computer holds is that computer, or, to itself, no edge at all.)
    pub held_by: usize,
}

/// A computer by id and name.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NamedComputer {
    pub id: String,
    pub name: String,
}

/// One external endpoint group: peers of the fleet that resolve to no single computer,
/// by /24 (IPv4) or /64 (IPv6), as the map shows them.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EndpointGroup {
    /// Its node id on every map (`endpoint:SUBNET`).
    pub id: String,
    pub subnet: String,
    pub addresses: Vec<EndpointAddress>,
    /// Where the fleet connects to it ("tcp/443"): it serves these.
    pub ports_it_serves: Vec<String>,
    /// Where it connects to the fleet's listeners ("tcp/22").
    pub ports_it_uses: Vec<String>,
    /// The computers talking to it.
    pub computers: usize,
    /// Up to [`COMPUTERS_NAMED`] of them (in the order of their ids), sorted by name.
    pub named: Vec<NamedComputer>,
    pub samples: u64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EndpointList {
    /// Groups in all; `groups` holds the first `limit`, those most computers talk to first.
    pub total: usize,
    pub groups: Vec<EndpointGroup>,
}

#[derive(Default)]
struct EndpointAcc {
    addresses: BTreeMap<String, usize>,
    serves: BTreeSet<String>,
    uses: BTreeSet<String>,
    computers: BTreeSet<String>,
    samples: u64,
    first_seen: Option<DateTime<Utc>>,
    last_seen: Option<DateTime<Utc>>,
}

/// Every external endpoint group the fleet's live flows reach (shadow IT, SaaS ranges,
/// hosts without an agent, NAT pools), those most computers talk to first. Reads the
/// flows of the computers that reported an address no single other computer holds.
pub fn endpoints(
    store: &dyn Store,
    now: DateTime<Utc>,
    expiry: Duration,
    limit: usize,
) -> Result<EndpointList, StoreError> {
    let mut reader = Reader::new(store, now, expiry);
    let mut reporters: BTreeSet<String> = BTreeSet::new();
    for (address, reporter) in store.flow_targets()? {
        if reader.holders(&address)?.len() != 1 {
            reporters.insert(reporter);
        }
    }
    let mut groups: BTreeMap<String, EndpointAcc> = BTreeMap::new();
    for reporter in &reporters {
        for f in reader.live_flows(reporter)? {
            if !matches!(reader.peer_of(reporter, &f)?, Peer::Endpoint) {
                continue;
            }
            let held_by = reader.holders(&f.remote)?.len();
            let acc = groups.entry(endpoint_group(&f.remote)).or_default();
            acc.addresses.insert(f.remote.clone(), held_by);
            let port = format!("{}/{}", f.protocol, f.port);
            if f.direction == FlowDirection::Outbound {
                acc.serves.insert(port);
            } else {
                acc.uses.insert(port);
            }
            acc.computers.insert(reporter.clone());
            acc.samples = acc.samples.saturating_add(f.samples);
            acc.first_seen = Some(acc.first_seen.map_or(f.first_seen, |t| t.min(f.first_seen)));
            acc.last_seen = Some(acc.last_seen.map_or(f.last_seen, |t| t.max(f.last_seen)));
        }
    }
    let total = groups.len();
    let mut ranked: Vec<(String, EndpointAcc)> = groups.into_iter().collect();
    ranked.sort_by(|(a, x), (b, y)| y.computers.len().cmp(&x.computers.len()).then(a.cmp(b)));
    ranked.truncate(limit.min(MAX_ENDPOINT_GROUPS));
    let mut out = Vec::with_capacity(ranked.len());
    for (subnet, acc) in ranked {
        let ids: Vec<&str> = acc
            .computers
            .iter()
            .take(COMPUTERS_NAMED)
            .map(String::as_str)
            .collect();
        let mut named: Vec<NamedComputer> = store
            .get_cis(&ids)?
            .into_iter()
            .flatten()
            .map(|c| NamedComputer {
                id: c.id,
                name: c.name,
            })
            .collect();
        named.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        out.push(EndpointGroup {
            id: endpoint_id(&subnet),
            addresses: acc
                .addresses
                .into_iter()
                .map(|(address, held_by)| EndpointAddress { address, held_by })
                .collect(),
            subnet,
            ports_it_serves: acc.serves.into_iter().collect(),
            ports_it_uses: acc.uses.into_iter().collect(),
            computers: acc.computers.len(),
            named,
            samples: acc.samples,
            first_seen: acc.first_seen.unwrap_or(now),
            last_seen: acc.last_seen.unwrap_or(now),
        });
    }
    Ok(EndpointList { total, groups: out })
}

/// The columns of [`edge_rows`].
pub const EDGE_COLUMNS: [&str; 12] = [
    "client_id",
    "client_name",
    "server_id",
    "server_name",
    "protocol",
    "port",
    "client_process",
    "server_process",
    "samples",
    "first_seen",
    "last_seen",
    "reported_by",
];

/// One row per `connects_to` edge, names beside ids (the CSV export).
pub fn edge_rows(map: &DependencyMap) -> Vec<[String; 12]> {
    let names: HashMap<&str, &str> = map
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), n.name.as_str()))
        .collect();
    let name = |id: &str| names.get(id).copied().unwrap_or("").to_string();
    let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    map.edges
        .iter()
        .filter(|e| e.kind == EdgeKind::ConnectsTo)
        .map(|e| {
            [
                e.from.clone(),
                name(&e.from),
                e.to.clone(),
                name(&e.to),
                e.protocol.clone(),
                e.port.to_string(),
                e.client_process.clone().unwrap_or_default(),
                e.server_process.clone().unwrap_or_default(),
                e.samples.to_string(),
                time(e.first_seen),
                time(e.last_seen),
                e.reported_by.join(" "),
            ]
        })
        .collect()
}

/// The columns of [`endpoint_rows`].
pub const ENDPOINT_COLUMNS: [&str; 9] = [
    "subnet",
    "addresses",
    "ports_it_serves",
    "ports_it_uses",
    "computers",
    "named_computers",
    "samples",
    "first_seen",
    "last_seen",
];

/// One row per endpoint group (the CSV export); lists are space-separated.
pub fn endpoint_rows(list: &EndpointList) -> Vec<[String; 9]> {
    list.groups
        .iter()
        .map(|g| {
            [
                g.subnet.clone(),
                g.addresses
                    .iter()
                    .map(|a| a.address.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                g.ports_it_serves.join(" "),
                g.ports_it_uses.join(" "),
                g.computers.to_string(),
                g.named
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                g.samples.to_string(),
                g.first_seen.to_rfc3339(),
                g.last_seen.to_rfc3339(),
            ]
        })
        .collect()
}
