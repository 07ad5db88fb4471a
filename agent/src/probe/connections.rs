//! Network connections sampled between inventories, for the dependency map: the
//! established sockets of /proc/net/{tcp,tcp6,udp,udp6} (a pure parser), folded into flows
//! keyed by protocol, direction, the service port (the local listener's for inbound, the
//! remote's for outbound), the remote address and the owning process, with the ephemeral
//! port of the client side collapsed, and counts and first/last seen per flow.
//!
//! The daemon samples every `connections_interval_seconds` (default 60) into one
//! [`Sampler`]; each inventory takes one more sample and drains it into the snapshot's
//! `connections` section, so a connection that lived between two inventories is reported
//! even though no inventory saw it.
//!
//! Architecture Invariant: memory is bounded by [`MAX_FLOWS`], whatever the host holds:
//! a sample that would add a flow past it is counted in `dropped`, never stored.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use census_shared::limits::MAX_CONNECTIONS;
use census_shared::{Connection, FlowDirection, Section};
use chrono::{DateTime, Utc};

use super::ports::{decode_v4, decode_v6};

/// Most flows one aggregation keeps between two inventories (what a snapshot may carry).
pub const MAX_FLOWS: usize = MAX_CONNECTIONS;

/// One established socket of a /proc/net table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Established {
    pub protocol: &'static str,
    pub local_address: String,
    pub local_port: u16,
    pub remote_address: String,
    pub remote_port: u16,
    pub inode: u64,
}

/// Socket states of /proc/net/{tcp,udp}: 01 established (a connected UDP socket too),
/// 0A a TCP listener, 07 an unconnected (bound) UDP socket, which is how UDP listens.
const ESTABLISHED: &str = "01";
const TCP_LISTEN: &str = "0A";
const UDP_BOUND: &str = "07";

fn endpoint(text: &str, v6: bool) -> Option<(String, u16)> {
    let (addr, port) = text.split_once(':')?;
    let address = if v6 {
        decode_v6(addr)?
    } else {
        decode_v4(addr)?
    };
    // An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d: it is that IPv4 address.
    let address = match address.strip_prefix("::ffff:") {
        Some(v4) if v4.contains('.') => v4.to_string(),
        _ => address,
    };
    Some((address, u16::from_str_radix(port, 16).ok()?))
}

/// The established sockets and the listening ports of one TCP table.
pub fn parse_tcp(text: &str, v6: bool) -> (Vec<Established>, BTreeSet<u16>) {
    parse_table(text, "tcp", v6)
}

/// The established (connected) sockets and the bound ports of one table of `protocol`
/// ("tcp" or "udp").
pub fn parse_table(
    text: &str,
    protocol: &'static str,
    v6: bool,
) -> (Vec<Established>, BTreeSet<u16>) {
    let listen_state = if protocol == "udp" {
        UDP_BOUND
    } else {
        TCP_LISTEN
    };
    let mut established = Vec::new();
    let mut listening = BTreeSet::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        if f[3] == listen_state {
            if let Some((_, port)) = endpoint(f[1], v6) {
                listening.insert(port);
            }
        } else if f[3] == ESTABLISHED {
            let (Some((la, lp)), Some((ra, rp)), Ok(inode)) =
                (endpoint(f[1], v6), endpoint(f[2], v6), f[9].parse::<u64>())
            else {
                continue;
            };
            established.push(Established {
                protocol,
                local_address: la,
                local_port: lp,
                remote_address: ra,
                remote_port: rp,
                inode,
            });
        }
    }
    (established, listening)
}

/// What a flow is: one service between this host and one peer, through one process.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey {
    pub protocol: &'static str,
    pub direction: FlowDirection,
    /// The listener's port for inbound flows, the peer's for outbound ones.
    pub service_port: u16,
    pub remote_address: String,
    pub process: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowStats {
    /// Samples that saw it.
    pub samples: u32,
    /// The most connections of it one sample saw.
    pub peak_connections: u32,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// Flows seen across samples, bounded.
#[derive(Debug, Clone, Default)]
pub struct Aggregate {
    pub flows: BTreeMap<FlowKey, FlowStats>,
    /// Flow observations refused because [`MAX_FLOWS`] were held.
    pub dropped: u64,
    /// Samples folded in.
    pub samples: u32,
}

fn is_loopback(address: &str) -> bool {
    address.starts_with("127.") || address == "::1"
}

impl Aggregate {
    /// Folds one sample taken at `at` (Unix seconds): `established` sockets, the ports this
    /// host listens on (per protocol), and the process owning each socket inode.
    pub fn add_sample(
        &mut self,
        established: &[Established],
        listening: &BTreeSet<(&'static str, u16)>,
        owners: &BTreeMap<u64, String>,
        at: i64,
    ) {
        self.samples = self.samples.saturating_add(1);
        let mut this_sample: BTreeMap<FlowKey, u32> = BTreeMap::new();
        for s in established {
            // Loopback talks to itself: not a dependency between machines.
            if s.remote_address == s.local_address || is_loopback(&s.remote_address) {
                continue;
            }
            let (direction, service_port) = if listening.contains(&(s.protocol, s.local_port)) {
                (FlowDirection::Inbound, s.local_port)
            } else {
                (FlowDirection::Outbound, s.remote_port)
            };
            let key = FlowKey {
                protocol: s.protocol,
                direction,
                service_port,
                remote_address: s.remote_address.clone(),
                process: owners.get(&s.inode).cloned(),
            };
            *this_sample.entry(key).or_default() += 1;
        }
        for (key, connections) in this_sample {
            if let Some(stats) = self.flows.get_mut(&key) {
                stats.samples = stats.samples.saturating_add(1);
                stats.peak_connections = stats.peak_connections.max(connections);
                stats.last_seen = at;
            } else if self.flows.len() < MAX_FLOWS {
                self.flows.insert(
                    key,
                    FlowStats {
                        samples: 1,
                        peak_connections: connections,
                        first_seen: at,
                        last_seen: at,
                    },
                );
            } else {
                self.dropped += 1;
            }
        }
    }

    /// The flows as the snapshot carries them.
    pub fn connections(&self) -> Vec<Connection> {
        let time = |t: i64| DateTime::<Utc>::from_timestamp(t, 0).unwrap_or_default();
        self.flows
            .iter()
            .map(|(k, v)| Connection {
                direction: k.direction,
                protocol: k.protocol.to_string(),
                port: k.service_port,
                remote_address: k.remote_address.clone(),
                process: k.process.clone(),
                samples: v.samples,
                peak_connections: v.peak_connections,
                first_seen: time(v.first_seen),
                last_seen: time(v.last_seen),
            })
            .collect()
    }
}

/// The flows of one machine, sampled on the daemon's interval and drained by each
/// inventory. Shared between the sampling task and the inventory (a mutex held only to
/// fold a parsed sample in or to take the aggregate out).
#[derive(Debug, Default)]
pub struct Sampler {
    aggregate: Mutex<Aggregate>,
}

impl Sampler {
    /// Reads the socket tables once and folds them in.
    pub fn sample(&self) -> Result<(), super::ProbeError> {
        let (established, listening, owners) = acquire()?;
        let mut agg = self
            .aggregate
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        agg.add_sample(&established, &listening, &owners, Utc::now().timestamp());
        Ok(())
    }

    /// Takes one more sample and drains everything sampled since the last inventory into
    /// the snapshot's section.
    pub fn take(&self) -> Section<Vec<Connection>> {
        if !cfg!(target_os = "linux") {
            return Section::unsupported("connection sampling exists for Linux only");
        }
        if let Err(e) = self.sample() {
            return Section::failed(e.to_string());
        }
        let agg = std::mem::take(
            &mut *self
                .aggregate
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        if agg.dropped > 0 {
            tracing::warn!(
                flows = agg.flows.len(),
                dropped = agg.dropped,
                limit = MAX_FLOWS,
                "more flows than one inventory carries; the rest were counted, not kept"
            );
        }
        Section::collected(agg.connections())
    }
}

type Acquired = (
    Vec<Established>,
    BTreeSet<(&'static str, u16)>,
    BTreeMap<u64, String>,
);

#[cfg(target_os = "linux")]
fn acquire() -> Result<Acquired, super::ProbeError> {
    let mut established = Vec::new();
    let mut listening = BTreeSet::new();
    for (file, protocol, v6) in [
        ("tcp", "tcp", false),
        ("tcp6", "tcp", true),
        ("udp", "udp", false),
        ("udp6", "udp", true),
    ] {
        let path = format!("/proc/net/{file}");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let (e, l) = parse_table(&text, protocol, v6);
                established.extend(e);
                listening.extend(l.into_iter().map(|p| (protocol, p)));
            }
            // IPv6 disabled in the kernel: no table.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && v6 => {}
            Err(source) => return Err(super::ProbeError::Read { path, source }),
        }
    }
    // Owners only when there is something to own: a quiet host skips the /proc walk.
    let owners = if established.is_empty() {
        BTreeMap::new()
    } else {
        super::ports::socket_owners()
            .into_iter()
            .map(|(inode, (_, name))| (inode, name))
            .collect()
    };
    Ok((established, listening, owners))
}

#[cfg(not(target_os = "linux"))]
fn acquire() -> Result<Acquired, super::ProbeError> {
    Ok(Default::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/net/tcp of a web server: sshd and nginx listening, a client on 443, a peer
    /// on 22, and its own connection out to PostgreSQL; TIME_WAIT lines are not flows.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 00000000:01BB 00000000:0000 0A 00000000:00000000 00:00000000 00000000    33        0 1002 1 0000000000000000 100 0 0 10 0
   2: 0201000A:01BB 0505000A:C350 01 00000000:00000000 02:000A7B4C 00000000    33        0 2001 2 0000000000000000 20 4 30 10 -1
   3: 0201000A:01BB 0505000A:C351 01 00000000:00000000 02:000A7B4C 00000000    33        0 2002 2 0000000000000000 20 4 30 10 -1
   4: 0201000A:0016 0707000A:E001 01 00000000:00000000 02:000A7B4C 00000000     0        0 2003 2 0000000000000000 20 4 30 10 -1
   5: 0201000A:D431 0303000A:1538 01 00000000:00000000 02:000A7B4C 00000000    33        0 2004 2 0000000000000000 20 4 30 10 -1
   6: 0201000A:D432 0303000A:1538 06 00000000:00000000 03:00001234 00000000     0        0 0 3 0000000000000000
   7: 0100007F:9C40 0100007F:1538 01 00000000:00000000 00:00000000 00000000     0        0 2005 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn established_sockets_fold_into_flows_with_the_client_port_collapsed() {
        let (established, listening) = parse_tcp(TCP, false);
        assert_eq!(listening, BTreeSet::from([22, 443]));
        assert_eq!(established.len(), 5);
        assert_eq!(established[0].local_address, "10.0.1.2");
        assert_eq!(established[0].remote_address, "10.0.5.5");
        assert_eq!(established[0].remote_port, 50000);
        let owners = BTreeMap::from([
            (2001, "nginx".to_string()),
            (2002, "nginx".to_string()),
            (2003, "sshd".to_string()),
            (2004, "/usr/local/bin/order-service".to_string()),
        ]);
        let mut agg = Aggregate::default();
        let listening: BTreeSet<(&str, u16)> = listening.into_iter().map(|p| ("tcp", p)).collect();
        agg.add_sample(&established, &listening, &owners, 100);
        let flows: Vec<(FlowDirection, u16, &str, Option<&str>, u32)> = agg
            .flows
            .iter()
            .map(|(k, v)| {
                (
                    k.direction,
                    k.service_port,
                    k.remote_address.as_str(),
                    k.process.as_deref(),
                    v.peak_connections,
                )
            })
            .collect();
        assert_eq!(
            flows,
            [
                (FlowDirection::Inbound, 22, "10.0.7.7", Some("sshd"), 1),
                (FlowDirection::Inbound, 443, "10.0.5.5", Some("nginx"), 2),
                (
                    FlowDirection::Outbound,
                    5432,
                    "10.0.3.3",
                    Some("/usr/local/bin/order-service"),
                    1
                ),
            ],
            "two client ports of 10.0.5.5 are one flow; loopback and TIME_WAIT are none"
        );
        // A later sample: the flow's counts and last seen move, the first seen stays.
        agg.add_sample(&established[..1], &listening, &owners, 160);
        let https = agg
            .flows
            .iter()
            .find(|(k, _)| k.service_port == 443)
            .map(|(_, v)| *v)
            .unwrap();
        assert_eq!(
            (
                https.samples,
                https.peak_connections,
                https.first_seen,
                https.last_seen
            ),
            (2, 2, 100, 160)
        );
    }

    #[test]
    fn ipv6_sockets_decode_and_a_busy_host_stays_within_the_bound() {
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3001 1
   1: B80D0120000000000000000001000000:0016 B80D0120000000000000000002000000:D000 01 00000000:00000000 00:00000000 00000000     0        0 3002 1
";
        let (established, listening) = parse_tcp(tcp6, true);
        assert_eq!(listening, BTreeSet::from([22]));
        assert_eq!(established[0].local_address, "2001:db8::1");
        assert_eq!(established[0].remote_address, "2001:db8::2");

        // 10,000 established connections to 10,000 peers: at most MAX_FLOWS kept.
        let mut busy = String::from("header\n");
        for i in 0..10_000u32 {
            let peer = u32::from_le_bytes([10, 9, (i >> 8) as u8, i as u8]);
            busy.push_str(&format!(
                "{i}: 0201000A:01BB {peer:08X}:C350 01 00000000:00000000 00:00000000 00000000 0 0 {} 1\n",
                50_000 + i
            ));
        }
        busy.push_str(
            "x: 00000000:01BB 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1 1\n",
        );
        let (established, listening) = parse_tcp(&busy, false);
        assert_eq!(established.len(), 10_000);
        let mut agg = Aggregate::default();
        let listening: BTreeSet<(&str, u16)> = listening.into_iter().map(|p| ("tcp", p)).collect();
        agg.add_sample(&established, &listening, &BTreeMap::new(), 1);
        assert_eq!(agg.flows.len(), MAX_FLOWS);
        assert_eq!(agg.dropped, 10_000 - MAX_FLOWS as u64);
    }
}
