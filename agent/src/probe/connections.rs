//! Network connections sampled between inventories, for the dependency map (issue 25): the
//! established TCP sockets of /proc/net/tcp{,6} (a pure parser), folded into flows keyed by
//! direction, the service port (the local listener's for inbound, the remote's for
//! outbound), the remote address and the owning process, with the ephemeral port of the
//! client side collapsed, and counts and first/last seen per flow.
//!
//! Architecture Invariant: memory is bounded by [`MAX_FLOWS`], whatever the host holds:
//! a sample that would add a flow past it is counted in `dropped`, never stored.
//! Not yet wired into the agent's schedule or the snapshot.

use std::collections::{BTreeMap, BTreeSet};

use super::ports::{decode_v4, decode_v6};

/// Most flows one aggregation keeps between two inventories.
pub const MAX_FLOWS: usize = 4096;

/// One established TCP socket of a /proc/net table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Established {
    pub local_address: String,
    pub local_port: u16,
    pub remote_address: String,
    pub remote_port: u16,
    pub inode: u64,
}

/// TCP states of /proc/net/tcp: 01 established, 0A listening.
const ESTABLISHED: &str = "01";
const LISTEN: &str = "0A";

fn endpoint(text: &str, v6: bool) -> Option<(String, u16)> {
    let (addr, port) = text.split_once(':')?;
    let address = if v6 {
        decode_v6(addr)?
    } else {
        decode_v4(addr)?
    };
    Some((address, u16::from_str_radix(port, 16).ok()?))
}

/// The established sockets and the listening ports of one table.
pub fn parse_tcp(text: &str, v6: bool) -> (Vec<Established>, BTreeSet<u16>) {
    let mut established = Vec::new();
    let mut listening = BTreeSet::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        match f[3] {
            LISTEN => {
                if let Some((_, port)) = endpoint(f[1], v6) {
                    listening.insert(port);
                }
            }
            ESTABLISHED => {
                let (Some((la, lp)), Some((ra, rp)), Ok(inode)) =
                    (endpoint(f[1], v6), endpoint(f[2], v6), f[9].parse::<u64>())
                else {
                    continue;
                };
                established.push(Established {
                    local_address: la,
                    local_port: lp,
                    remote_address: ra,
                    remote_port: rp,
                    inode,
                });
            }
            _ => {}
        }
    }
    (established, listening)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    /// A peer connected to one of this host's listeners.
    Inbound,
    /// This host connected to a peer's service.
    Outbound,
}

/// What a flow is: one service between this host and one peer, through one process.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey {
    pub direction: Direction,
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
}

impl Aggregate {
    /// Folds one sample taken at `at` (Unix seconds): `established` sockets, the ports this
    /// host listens on, and the process owning each socket inode.
    pub fn add_sample(
        &mut self,
        established: &[Established],
        listening: &BTreeSet<u16>,
        owners: &BTreeMap<u64, String>,
        at: i64,
    ) {
        let mut this_sample: BTreeMap<FlowKey, u32> = BTreeMap::new();
        for s in established {
            // Loopback talks to itself: not a dependency between machines.
            if s.remote_address == s.local_address
                || s.remote_address.starts_with("127.")
                || s.remote_address == "::1"
            {
                continue;
            }
            let (direction, service_port) = if listening.contains(&s.local_port) {
                (Direction::Inbound, s.local_port)
            } else {
                (Direction::Outbound, s.remote_port)
            };
            let key = FlowKey {
                direction,
                service_port,
                remote_address: s.remote_address.clone(),
                process: owners.get(&s.inode).cloned(),
            };
            *this_sample.entry(key).or_default() += 1;
        }
        for (key, connections) in this_sample {
            if let Some(stats) = self.flows.get_mut(&key) {
                stats.samples += 1;
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
        agg.add_sample(&established, &listening, &owners, 100);
        let flows: Vec<(Direction, u16, &str, Option<&str>, u32)> = agg
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
                (Direction::Inbound, 22, "10.0.7.7", Some("sshd"), 1),
                (Direction::Inbound, 443, "10.0.5.5", Some("nginx"), 2),
                (
                    Direction::Outbound,
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
        agg.add_sample(&established, &listening, &BTreeMap::new(), 1);
        assert_eq!(agg.flows.len(), MAX_FLOWS);
        assert_eq!(agg.dropped, 10_000 - MAX_FLOWS as u64);
    }
}
