//! Network flows between machines, as the collector keeps them: what a computer's agent
//! reported in its `connections` section, resolved to the computer that held the peer
//! address when it was reported, merged across reports and expired by age. No I/O.
//!
//! A flow is one edge of the dependency map, client -> server (`connects_to`): an outbound
//! flow's reporter is the client, an inbound flow's reporter is the server. Both sides of
//! one connection may report it; the map joins them into one edge.
//!
//! Architecture Invariant: flows are volatile. They never enter a computer's configuration,
//! history or a change record; a report replaces what its reporter said before (older
//! flows are kept, not current, until they are older than the expiry age).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use census_shared::{Connection, FlowDirection};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Most flows one computer's record keeps (current ones first, then the most recent).
pub const MAX_STORED_FLOWS: usize = 8_192;

/// How long a flow nobody reports any more stays on the map, unless told otherwise.
pub const DEFAULT_EXPIRY_DAYS: i64 = 7;

/// One flow as stored under its reporting computer (postcard: no tagged enums).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRec {
    /// The reporter is the server (a peer connected to its listener).
    pub inbound: bool,
    pub udp: bool,
    /// The service port (the server's).
    pub port: u16,
    pub remote: String,
    /// The reporter's process on this flow.
    pub process: Option<String>,
    /// The number of the computer that held `remote` when the flow was last reported; none
    /// for an address no computer (or more than one) held: an external endpoint.
    pub peer: Option<u32>,
    /// Samples that saw it, over every report.
    pub samples: u64,
    pub peak: u32,
    /// µs since the epoch.
    pub first_seen: i64,
    pub last_seen: i64,
    /// In the reporter's latest inventory: it is seen for as long as the reporter is.
    pub current: bool,
}

impl FlowRec {
    fn key(&self) -> (bool, bool, u16, &str, Option<&str>) {
        (
            self.inbound,
            self.udp,
            self.port,
            &self.remote,
            self.process.as_deref(),
        )
    }

    pub fn protocol(&self) -> &'static str {
        if self.udp {
            "udp"
        } else {
            "tcp"
        }
    }
}

/// A stored flow as reads see it: its peer named by CI id, times as times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flow {
    pub direction: FlowDirection,
    pub protocol: &'static str,
    pub port: u16,
    pub remote: String,
    pub process: Option<String>,
    /// The computer that held `remote` when the flow was last reported.
    pub peer: Option<String>,
    pub samples: u64,
    pub peak_connections: u32,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// In the reporter's latest inventory (seen as long as the reporter is).
    pub current: bool,
}

impl Flow {
    pub fn of(f: &FlowRec, peer: Option<String>) -> Flow {
        let time = |us: i64| DateTime::<Utc>::from_timestamp_micros(us).unwrap_or_default();
        Flow {
            direction: if f.inbound {
                FlowDirection::Inbound
            } else {
                FlowDirection::Outbound
            },
            protocol: f.protocol(),
            port: f.port,
            remote: f.remote.clone(),
            process: f.process.clone(),
            peer,
            samples: f.samples,
            peak_connections: f.peak,
            first_seen: time(f.first_seen),
            last_seen: time(f.last_seen),
            current: f.current,
        }
    }
}

/// Every flow one computer reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowsRec {
    pub flows: Vec<FlowRec>,
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

impl FlowsRec {
    /// The record after `reporter` reported `report` at `at`: reported flows current (counts
    /// added, first seen kept), the others kept as not current while seen after
    /// `expire_before`. `owners` gives the computers holding an address now.
    pub fn merged(
        old: Option<&FlowsRec>,
        report: &[Connection],
        reporter: u32,
        at: DateTime<Utc>,
        expire_before: DateTime<Utc>,
        owners: &dyn Fn(&str) -> Vec<u32>,
    ) -> FlowsRec {
        let mut by_key: BTreeMap<(bool, bool, u16, String, Option<String>), FlowRec> =
            BTreeMap::new();
        for f in old.map(|o| o.flows.as_slice()).unwrap_or_default() {
            if f.last_seen < micros(expire_before) {
                continue;
            }
            let mut f = f.clone();
            f.current = false;
            by_key.insert(
                (
                    f.inbound,
                    f.udp,
                    f.port,
                    f.remote.clone(),
                    f.process.clone(),
                ),
                f,
            );
        }
        let mut resolved: BTreeMap<&str, Option<u32>> = BTreeMap::new();
        for c in report {
            let peer = *resolved
                .entry(c.remote_address.as_str())
                .or_insert_with(|| resolve(&owners(&c.remote_address), reporter));
            let key = (
                c.direction == FlowDirection::Inbound,
                c.protocol == "udp",
                c.port,
                c.remote_address.clone(),
                c.process.clone(),
            );
            let first = micros(c.first_seen).min(micros(at));
            let last = micros(c.last_seen).max(first);
            let entry = by_key.entry(key.clone()).or_insert_with(|| FlowRec {
                inbound: key.0,
                udp: key.1,
                port: key.2,
                remote: key.3.clone(),
                process: key.4.clone(),
                peer,
                samples: 0,
                peak: 0,
                first_seen: first,
                last_seen: last,
                current: true,
            });
            entry.peer = peer;
            entry.samples = entry.samples.saturating_add(u64::from(c.samples));
            entry.peak = entry.peak.max(c.peak_connections);
            entry.first_seen = entry.first_seen.min(first);
            entry.last_seen = entry.last_seen.max(last).max(micros(at));
            entry.current = true;
        }
        let mut flows: Vec<FlowRec> = by_key.into_values().collect();
        if flows.len() > MAX_STORED_FLOWS {
            flows.sort_by(|a, b| {
                b.current
                    .cmp(&a.current)
                    .then(b.last_seen.cmp(&a.last_seen))
            });
            flows.truncate(MAX_STORED_FLOWS);
            flows.sort_by(|a, b| a.key().cmp(&b.key()));
        }
        FlowsRec { flows }
    }

    /// The record after its reporter stopped reporting flows (the section was not
    /// requested, or the agent cannot sample): nothing is current any more.
    pub fn stopped(old: &FlowsRec, expire_before: DateTime<Utc>) -> FlowsRec {
        FlowsRec {
            flows: old
                .flows
                .iter()
                .filter(|f| f.last_seen >= micros(expire_before))
                .map(|f| FlowRec {
                    current: false,
                    ..f.clone()
                })
                .collect(),
        }
    }

    /// The peer addresses of its flows (what the reverse index names).
    pub fn addresses(&self) -> BTreeSet<&str> {
        self.flows.iter().map(|f| f.remote.as_str()).collect()
    }
}

/// The computer an address belongs to: the one holder other than the reporter. An address
/// held by several computers (a NAT range, a container bridge every Docker host has) or by
/// none is an external endpoint, never a guess.
pub fn resolve(owners: &[u32], reporter: u32) -> Option<u32> {
    match owners {
        [one] if *one != reporter => Some(*one),
        _ => None,
    }
}

/// Of the computers whose records hold an address (with their status), those that hold it
/// now: retired ones never; stale ones only when no active computer holds it.
pub fn current_holders(holders: &[(u32, crate::model::CiStatus)]) -> Vec<u32> {
    use crate::model::CiStatus;
    let of = |wanted: CiStatus| -> Vec<u32> {
        holders
            .iter()
            .filter(|(_, s)| *s == wanted)
            .map(|(n, _)| *n)
            .collect()
    };
    let active = of(CiStatus::Active);
    if active.is_empty() {
        of(CiStatus::Stale)
    } else {
        active
    }
}

/// The group an external endpoint is shown in: its /24 (IPv4) or /64 (IPv6).
pub fn endpoint_group(address: &str) -> String {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        Ok(IpAddr::V6(v6)) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{net}/64")
        }
        Err(_) => address.to_string(),
    }
}

/// The node id of an external endpoint group on the map.
pub fn endpoint_id(group: &str) -> String {
    format!("endpoint:{group}")
}

/// Whether an address resolves to computers at all (loopback and link-local never do).
pub fn resolvable(address: &str) -> bool {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => !(v4.is_loopback() || v4.is_link_local() || v4.is_unspecified()),
        Ok(IpAddr::V6(v6)) => {
            !(v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80)
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_750_000_000 + s, 0).single().unwrap()
    }

    fn conn(direction: FlowDirection, port: u16, remote: &str, samples: u32) -> Connection {
        Connection {
            direction,
            protocol: "tcp".into(),
            port,
            remote_address: remote.into(),
            process: Some("app".into()),
            samples,
            peak_connections: samples,
            first_seen: t(0),
            last_seen: t(60),
        }
    }

    #[test]
    fn reports_merge_resolve_and_expire() {
        let owners = |a: &str| match a {
            "10.0.0.2" => vec![2],
            "172.17.0.1" => vec![2, 3],
            _ => vec![],
        };
        let first = FlowsRec::merged(
            None,
            &[
                conn(FlowDirection::Outbound, 5432, "10.0.0.2", 3),
                conn(FlowDirection::Outbound, 443, "203.0.113.9", 1),
                conn(FlowDirection::Outbound, 53, "172.17.0.1", 1),
            ],
            1,
            t(60),
            t(-86_400),
            &owners,
        );
        let peers: Vec<(u16, Option<u32>)> = first.flows.iter().map(|f| (f.port, f.peer)).collect();
        assert_eq!(peers, [(53, None), (443, None), (5432, Some(2))]);
        // The next report has only the database: the others stay, not current, until old.
        let second = FlowsRec::merged(
            Some(&first),
            &[conn(FlowDirection::Outbound, 5432, "10.0.0.2", 5)],
            1,
            t(3_600),
            t(-86_400),
            &owners,
        );
        let db = second.flows.iter().find(|f| f.port == 5432).unwrap();
        assert_eq!(
            (db.samples, db.current, db.first_seen),
            (8, true, t(0).timestamp_micros())
        );
        assert!(second
            .flows
            .iter()
            .filter(|f| f.port != 5432)
            .all(|f| !f.current));
        let later = FlowsRec::merged(Some(&second), &[], 1, t(200_000), t(100_000), &owners);
        assert!(later.flows.is_empty(), "{later:?}");
    }

    #[test]
    fn an_address_held_by_the_reporter_or_by_several_computers_is_an_endpoint() {
        assert_eq!(resolve(&[7], 7), None);
        assert_eq!(resolve(&[7, 8], 1), None);
        assert_eq!(resolve(&[], 1), None);
        assert_eq!(resolve(&[8], 1), Some(8));
        assert_eq!(endpoint_group("203.0.113.9"), "203.0.113.0/24");
        assert_eq!(endpoint_group("2001:db8:1:2:3::9"), "2001:db8:1:2::/64");
        assert!(!resolvable("127.0.0.1") && !resolvable("fe80::1") && !resolvable("x"));
        assert!(resolvable("10.1.2.3") && resolvable("2001:db8::1"));
    }

    #[test]
    fn a_record_keeps_at_most_its_bound_current_flows_first() {
        let report: Vec<Connection> = (0..(MAX_STORED_FLOWS as u32 + 100))
            .map(|i| {
                conn(
                    FlowDirection::Outbound,
                    443,
                    &format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
                    1,
                )
            })
            .collect();
        let rec = FlowsRec::merged(None, &report, 1, t(60), t(0), &|_| vec![]);
        assert_eq!(rec.flows.len(), MAX_STORED_FLOWS);
    }

    #[test]
    fn a_retired_computer_holds_nothing_and_a_stale_one_only_alone() {
        use crate::model::CiStatus::*;
        assert_eq!(current_holders(&[(1, Retired), (2, Active)]), [2]);
        assert_eq!(current_holders(&[(1, Stale), (2, Active)]), [2]);
        assert_eq!(current_holders(&[(1, Stale), (2, Retired)]), [1]);
        assert_eq!(current_holders(&[(1, Active), (2, Active)]), [1, 2]);
        assert_eq!(current_holders(&[(1, Retired)]), Vec::<u32>::new());
    }
}
