//! The dependency map over the real ingest path: flows two agents report, resolved by the
//! address the peer holds, joined from both sides, external endpoints, shared (NAT) addresses,
//! expiry, and flows never being drift.

use census_collector::query::map::{self, EdgeKind, NodeKind};
use census_collector::store::Store;
use census_shared::{Connection, FlowDirection, IpAddress, Section, Snapshot, System};
use chrono::{DateTime, Duration, Utc};

use crate::drift::{base_software, machine, rig, Rig};

/// A machine of its own: serial, machine id, host name, MAC and address.
pub(crate) fn host(n: u8, name: &str, address: &str) -> Snapshot {
    let mut s = machine(base_software());
    s.system = Section::collected(System {
        vendor: Some("Dell Inc.".into()),
        serial: Some(format!("SER-{n}")),
        machine_id: Some(format!("{n:032x}")),
        ..Default::default()
    });
    if let Some(os) = s.os.data_mut() {
        os.hostname = name.into();
    }
    if let Some(nics) = s.network_interfaces.data_mut() {
        nics[0].mac = Some(format!("52:54:00:00:00:{n:02x}"));
        nics[0].addresses = vec![IpAddress {
            address: address.into(),
            prefix: 16,
            family: "ipv4".into(),
            scope: Some("global".into()),
        }];
    }
    s
}

pub(crate) fn flow(
    direction: FlowDirection,
    port: u16,
    remote: &str,
    process: &str,
    at: DateTime<Utc>,
) -> Connection {
    Connection {
        direction,
        protocol: "tcp".into(),
        port,
        remote_address: remote.into(),
        process: Some(process.into()),
        samples: 10,
        peak_connections: 2,
        first_seen: at - Duration::minutes(10),
        last_seen: at,
    }
}

fn with_flows(mut s: Snapshot, flows: Vec<Connection>) -> Snapshot {
    s.connections = Section::collected(flows);
    s
}

/// The map around `id` as it stands at `now`, with the default 7-day flow expiry.
fn around(r: &Rig, id: &str, depth: u32, now: DateTime<Utc>) -> map::DependencyMap {
    map::neighbourhood(
        r.store.as_ref(),
        &[id.to_string()],
        depth,
        now,
        Duration::days(7),
    )
    .unwrap()
}

fn computer(r: &Rig, name: &str) -> String {
    r.store
        .scan_cis_named(name)
        .unwrap_or_else(|| panic!("{name} stored"))
}

trait Named {
    fn scan_cis_named(&self, name: &str) -> Option<String>;
}

impl Named for census_collector::store::Cmdb {
    fn scan_cis_named(&self, name: &str) -> Option<String> {
        let mut found = None;
        self.scan_cis(census_collector::model::CiClass::Computer, &mut |c| {
            if c.name == name {
                found = Some(c.id);
            }
            true
        })
        .unwrap();
        found
    }
}

#[test]
fn flows_from_two_agents_join_into_one_edge_resolved_by_address() {
    let mut r = rig("map-two");
    let t0 = Utc::now() - Duration::hours(2);
    // The web server reports first: its database is not known yet.
    let web = with_flows(
        host(1, "web01", "10.1.2.3"),
        vec![
            flow(
                FlowDirection::Outbound,
                5432,
                "10.1.9.9",
                "/usr/bin/order-service",
                t0,
            ),
            flow(
                FlowDirection::Outbound,
                443,
                "203.0.113.7",
                "/usr/bin/order-service",
                t0,
            ),
            flow(FlowDirection::Outbound, 443, "203.0.113.8", "curl", t0),
            flow(
                FlowDirection::Inbound,
                443,
                "198.51.100.20",
                "/usr/sbin/nginx",
                t0,
            ),
        ],
    );
    r.send(web, t0);
    r.switch_to_new_agent("agt_db");
    let db = with_flows(
        host(2, "db01", "10.1.9.9"),
        vec![flow(
            FlowDirection::Inbound,
            5432,
            "10.1.2.3",
            "postgres",
            t0,
        )],
    );
    r.send(db, t0 + Duration::minutes(1));
    let web_id = computer(&r, "web01");
    let db_id = computer(&r, "db01");
    let now = Utc::now();
    let expiry = Duration::days(7);

    let around_db = around(&r, &db_id, 1, now);
    let ids: Vec<(&str, NodeKind, u32)> = around_db
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.kind, n.depth))
        .collect();
    assert!(ids.contains(&("db01", NodeKind::Computer, 0)), "{ids:?}");
    assert!(ids.contains(&("web01", NodeKind::Computer, 1)), "{ids:?}");
    assert_eq!(around_db.edges.len(), 1, "{:?}", around_db.edges);
    let e = &around_db.edges[0];
    assert_eq!(
        (
            e.kind,
            e.from.as_str(),
            e.to.as_str(),
            e.port,
            e.protocol.as_str()
        ),
        (
            EdgeKind::ConnectsTo,
            web_id.as_str(),
            db_id.as_str(),
            5432,
            "tcp"
        )
    );
    assert_eq!(e.client_process.as_deref(), Some("/usr/bin/order-service"));
    assert_eq!(e.server_process.as_deref(), Some("postgres"));
    assert_eq!(e.reported_by, ["client", "server"]);
    assert_eq!(e.samples, 20, "both sides' samples");

    // Around the web server at depth 2: the database, one external group for the two
    // 203.0.113.x peers, and the client of its nginx.
    let around_web = around(&r, &web_id, 2, now);
    let endpoints: Vec<(&str, Vec<String>)> = around_web
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Endpoint)
        .map(|n| (n.name.as_str(), n.addresses.clone()))
        .collect();
    assert_eq!(
        endpoints,
        [
            ("198.51.100.0/24", vec!["198.51.100.20".to_string()]),
            (
                "203.0.113.0/24",
                vec!["203.0.113.7".to_string(), "203.0.113.8".to_string()]
            ),
        ]
    );
    let inbound = around_web
        .edges
        .iter()
        .find(|e| e.to == web_id && e.port == 443)
        .expect("the nginx client");
    assert_eq!(inbound.from, "endpoint:198.51.100.0/24");
    assert_eq!(inbound.server_process.as_deref(), Some("/usr/sbin/nginx"));
    // 443 to the group from two processes is one edge per (client, server, port).
    assert_eq!(
        around_web
            .edges
            .iter()
            .filter(|e| e.to == "endpoint:203.0.113.0/24")
            .count(),
        1
    );
    let rows = map::edge_rows(&around_web);
    assert_eq!(rows.len(), around_web.edges.len());
    assert!(rows
        .iter()
        .any(|r| r[1] == "web01" && r[3] == "db01" && r[5] == "5432"));

    // What depends on db01: web01.
    let dependents = map::dependents(r.store.as_ref(), &db_id, 2, now, expiry).unwrap();
    assert_eq!(dependents.values().collect::<Vec<_>>(), ["web01"]);

    // The fleet's endpoints: the same two groups, without the database (resolved).
    let list = map::endpoints(r.store.as_ref(), now, expiry, 100).unwrap();
    assert_eq!(list.total, 2);
    // subnet, addresses, ports it serves, ports it uses, computers
    type Row<'a> = (&'a str, Vec<&'a str>, Vec<&'a str>, Vec<&'a str>, usize);
    let groups: Vec<Row> = list
        .groups
        .iter()
        .map(|g| {
            (
                g.subnet.as_str(),
                g.addresses.iter().map(|a| a.address.as_str()).collect(),
                g.ports_it_serves.iter().map(String::as_str).collect(),
                g.ports_it_uses.iter().map(String::as_str).collect(),
                g.computers,
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            (
                "198.51.100.0/24",
                vec!["198.51.100.20"],
                vec![],
                vec!["tcp/443"],
                1
            ),
            (
                "203.0.113.0/24",
                vec!["203.0.113.7", "203.0.113.8"],
                vec!["tcp/443"],
                vec![],
                1
            ),
        ]
    );
    assert!(list
        .groups
        .iter()
        .all(|g| g.addresses.iter().all(|a| a.held_by == 0)
            && g.named.iter().map(|c| c.name.as_str()).eq(["web01"])
            && g.id == format!("endpoint:{}", g.subnet)));
    let limited = map::endpoints(r.store.as_ref(), now, expiry, 1).unwrap();
    assert_eq!((limited.total, limited.groups.len()), (2, 1));
    let rows = map::endpoint_rows(&list);
    assert_eq!(rows[1][1], "203.0.113.7 203.0.113.8");

    let report = r.store.check_consistency().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn an_address_two_computers_hold_stays_an_endpoint_and_flows_never_drift() {
    let mut r = rig("map-nat");
    let t0 = Utc::now() - Duration::hours(3);
    // Two hosts behind one NAT address (both report it).
    r.switch_to_new_agent("agt_a");
    r.send(host(3, "nat-a", "10.9.0.1"), t0);
    r.switch_to_new_agent("agt_b");
    r.send(host(4, "nat-b", "10.9.0.1"), t0);
    r.switch_to_new_agent("agt_c");
    let client = with_flows(
        host(5, "client", "10.2.0.5"),
        vec![flow(FlowDirection::Outbound, 8080, "10.9.0.1", "java", t0)],
    );
    r.send(client, t0);
    let client_id = computer(&r, "client");
    let now = Utc::now();
    let m = around(&r, &client_id, 1, now);
    let targets: Vec<&str> = m.edges.iter().map(|e| e.to.as_str()).collect();
    assert_eq!(
        targets,
        ["endpoint:10.9.0.0/24"],
        "never a guess between two holders"
    );
    let list = map::endpoints(r.store.as_ref(), now, Duration::days(7), 100).unwrap();
    let nat = &list.groups[0];
    assert_eq!(
        (list.total, nat.subnet.as_str(), nat.computers),
        (1, "10.9.0.0/24", 1)
    );
    assert_eq!(
        (nat.addresses[0].address.as_str(), nat.addresses[0].held_by),
        ("10.9.0.1", 2),
        "an address two computers hold is listed with its holders' count"
    );

    // Other flows only: no change record, no new version.
    let before = r.store.get_ci(&client_id).unwrap().unwrap().version;
    let moved = with_flows(
        host(5, "client", "10.2.0.5"),
        vec![flow(
            FlowDirection::Outbound,
            9090,
            "10.9.0.1",
            "java",
            t0 + Duration::minutes(30),
        )],
    );
    assert!(
        r.send(moved, t0 + Duration::minutes(30)).is_none(),
        "flows are volatile"
    );
    assert_eq!(r.store.get_ci(&client_id).unwrap().unwrap().version, before);
    let m = around(&r, &client_id, 1, now);
    let ports: Vec<u16> = m.edges.iter().map(|e| e.port).collect();
    assert_eq!(
        ports,
        [8080, 9090],
        "the earlier flow stays until it expires"
    );
}

#[test]
fn flows_expire_when_nobody_reports_them_and_stop_with_the_section() {
    let mut r = rig("map-expiry");
    let t0 = Utc::now() - Duration::days(10);
    let first = with_flows(
        host(6, "app", "10.3.0.6"),
        vec![flow(
            FlowDirection::Outbound,
            25,
            "192.0.2.25",
            "postfix",
            t0,
        )],
    );
    r.send(first, t0);
    let id = computer(&r, "app");
    // Nine days later a report without the mail flow: it was last seen nine days ago.
    let later = t0 + Duration::days(9);
    r.send(
        with_flows(
            host(6, "app", "10.3.0.6"),
            vec![flow(
                FlowDirection::Outbound,
                53,
                "192.0.2.53",
                "unbound",
                later,
            )],
        ),
        later,
    );
    let m = around(&r, &id, 1, later);
    let ports: Vec<u16> = m.edges.iter().map(|e| e.port).collect();
    assert_eq!(ports, [53], "the 9-day-old flow expired (7 days)");
    assert!(
        r.store.flows_of(&id).unwrap().iter().all(|f| f.port == 53),
        "and is gone from the record"
    );

    // The agent stops sampling: its flows are no longer current, so they age out too.
    let stopped_at = later + Duration::days(8);
    r.send(host(6, "app", "10.3.0.6"), stopped_at);
    assert!(r.store.flows_of(&id).unwrap().iter().all(|f| !f.current));
    let m = around(&r, &id, 1, stopped_at);
    assert!(m.edges.is_empty(), "{:?}", m.edges);
}

#[test]
fn a_connection_to_its_own_address_is_no_edge_and_no_endpoint() {
    let mut r = rig("map-self");
    let t0 = Utc::now() - Duration::hours(1);
    r.send(
        with_flows(
            host(7, "solo", "10.4.0.7"),
            vec![
                flow(FlowDirection::Outbound, 8080, "10.4.0.7", "curl", t0),
                flow(FlowDirection::Inbound, 8080, "10.4.0.7", "java", t0),
                flow(FlowDirection::Outbound, 443, "192.0.2.44", "curl", t0),
            ],
        ),
        t0,
    );
    let id = computer(&r, "solo");
    let now = Utc::now();
    let m = around(&r, &id, 2, now);
    let edges: Vec<(&str, u16)> = m.edges.iter().map(|e| (e.to.as_str(), e.port)).collect();
    assert_eq!(edges, [("endpoint:192.0.2.0/24", 443)]);
    let list = map::endpoints(r.store.as_ref(), now, Duration::days(7), 100).unwrap();
    let subnets: Vec<&str> = list.groups.iter().map(|g| g.subnet.as_str()).collect();
    assert_eq!(subnets, ["192.0.2.0/24"], "its own address is not external");
}

#[test]
fn an_address_a_retired_computer_held_belongs_to_the_computer_holding_it_now() {
    address_handover(rig("map-dhcp"));
}

/// Two laptops' records hold one address; the one still reporting is the one holding it
/// (run on each backend).
pub(crate) fn address_handover(mut r: Rig) {
    use census_collector::model::CiStatus;
    let t0 = Utc::now() - Duration::hours(2);
    // A laptop that left had 10.5.0.9; the DHCP server gave it to another one since.
    r.switch_to_new_agent("agt_old");
    r.send(host(8, "old-laptop", "10.5.0.9"), t0);
    r.switch_to_new_agent("agt_new");
    r.send(host(9, "new-laptop", "10.5.0.9"), t0);
    r.switch_to_new_agent("agt_admin");
    r.send(
        with_flows(
            host(10, "admin", "10.5.0.1"),
            vec![flow(FlowDirection::Outbound, 22, "10.5.0.9", "ssh", t0)],
        ),
        t0,
    );
    let admin = computer(&r, "admin");
    let old = computer(&r, "old-laptop");
    let new = computer(&r, "new-laptop");
    let now = Utc::now();
    let targets = |r: &Rig| -> Vec<String> {
        around(r, &admin, 1, now)
            .edges
            .iter()
            .map(|e| e.to.clone())
            .collect()
    };
    assert_eq!(targets(&r), ["endpoint:10.5.0.0/24"], "two active holders");

    // The old laptop goes silent: the active holder is the one holding it now.
    let v = r.store.get_ci(&old).unwrap().unwrap().version;
    assert!(r
        .store
        .set_ci_status(&old, v, CiStatus::Stale, now)
        .unwrap());
    assert_eq!(targets(&r), std::slice::from_ref(&new));
    assert!(
        map::endpoints(r.store.as_ref(), now, Duration::days(7), 100)
            .unwrap()
            .groups
            .is_empty()
    );

    // Retired, it holds nothing, even once the other one is silent too.
    let v = r.store.get_ci(&old).unwrap().unwrap().version;
    assert!(r
        .store
        .set_ci_status(&old, v, CiStatus::Retired, now)
        .unwrap());
    let v = r.store.get_ci(&new).unwrap().unwrap().version;
    assert!(r
        .store
        .set_ci_status(&new, v, CiStatus::Stale, now)
        .unwrap());
    assert_eq!(targets(&r), [new]);
    let report = r.store.check_consistency().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}
