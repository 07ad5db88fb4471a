//! Listening TCP sockets and bound UDP sockets, with the owning process where readable.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use census_shared::{ListeningPort, Section};

use super::ProbeError;

/// A socket line of /proc/net/{tcp,tcp6,udp,udp6} that is listening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSocket {
    pub protocol: &'static str,
    pub address: String,
    pub port: u16,
    pub uid: u32,
    pub inode: u64,
}

pub(crate) fn decode_v4(hex: &str) -> Option<String> {
    let v = u32::from_str_radix(hex, 16).ok()?;
    Some(Ipv4Addr::from(v.to_le_bytes()).to_string())
}

pub(crate) fn decode_v6(hex: &str) -> Option<String> {
    if hex.len() != 32 {
        return None;
    }
    // Four 32-bit words, each in host (little-endian) order.
    let mut bytes = [0u8; 16];
    for word in 0..4 {
        let w = u32::from_str_radix(&hex[word * 8..word * 8 + 8], 16).ok()?;
        bytes[word * 4..word * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    let ip = Ipv6Addr::from(bytes);
    Some(match ip.to_ipv4_mapped() {
        Some(v4) => v4.to_string(),
        None => ip.to_string(),
    })
}

/// Parses one /proc/net table. `tcp` keeps LISTEN (0A); `udp` keeps unconnected (07) sockets
/// with no remote peer.
pub fn parse_proc_net(text: &str, protocol: &'static str, v6: bool) -> Vec<RawSocket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                return None;
            }
            let (local, remote, state) = (f[1], f[2], f[3]);
            let listening = match protocol {
                "tcp" => state == "0A",
                _ => state == "07" && remote.split(':').nth(1) == Some("0000"),
            };
            if !listening {
                return None;
            }
            let (addr, port) = local.split_once(':')?;
            let address = if v6 {
                decode_v6(addr)?
            } else {
                decode_v4(addr)?
            };
            Some(RawSocket {
                protocol,
                address,
                port: u16::from_str_radix(port, 16).ok()?,
                uid: f[7].parse().ok()?,
                inode: f[9].parse().ok()?,
            })
        })
        .collect()
}

/// Joins sockets with their owners (inode -> (pid, process name)) and user names.
pub fn build_ports(
    sockets: Vec<RawSocket>,
    owners: &BTreeMap<u64, (u32, String)>,
    user_names: &BTreeMap<u32, String>,
) -> Vec<ListeningPort> {
    let mut out: Vec<ListeningPort> = sockets
        .into_iter()
        .map(|s| {
            let owner = owners.get(&s.inode);
            ListeningPort {
                protocol: s.protocol.to_string(),
                address: s.address,
                port: s.port,
                process: owner.map(|(_, name)| name.clone()),
                pid: owner.map(|(pid, _)| *pid),
                user: user_names
                    .get(&s.uid)
                    .cloned()
                    .or_else(|| Some(s.uid.to_string())),
            }
        })
        .collect();
    out.sort();
    // SO_REUSEPORT workers and dual v4-mapped listings repeat a line; one fact is enough.
    out.dedup_by(|a, b| {
        a.protocol == b.protocol
            && a.address == b.address
            && a.port == b.port
            && a.process == b.process
    });
    out
}

/// The kernel keeps a process name in 15 bytes (`/proc/PID/comm`): "systemd-resolve",
/// "/usr/sbin/apach". When the name may have been cut there, the command line's first
/// word (or its file name) that it is the start of gives the whole name.
pub fn full_process_name(comm: &str, cmdline: &[u8]) -> String {
    const TASK_COMM_LEN: usize = 16;
    if comm.len() < TASK_COMM_LEN - 1 {
        return comm.to_string();
    }
    let arg0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let arg0 = String::from_utf8_lossy(arg0);
    let arg0 = arg0.trim();
    let file = arg0.rsplit('/').next().unwrap_or(arg0);
    if arg0.starts_with(comm) {
        arg0.to_string()
    } else if file.starts_with(comm) {
        file.to_string()
    } else {
        comm.to_string()
    }
}

#[cfg(target_os = "linux")]
pub(crate) fn socket_owners() -> BTreeMap<u64, (u32, String)> {
    let mut owners = BTreeMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return owners;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let mut comm = None;
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            if let Some(inode) = t
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|i| i.parse().ok())
            {
                let name = comm
                    .get_or_insert_with(|| {
                        let short = super::read_attr(p.path().join("comm")).unwrap_or_default();
                        let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
                        full_process_name(&short, &cmdline)
                    })
                    .clone();
                owners.entry(inode).or_insert((pid, name));
            }
        }
    }
    owners
}

#[cfg(target_os = "linux")]
pub fn collect() -> Result<Section<Vec<ListeningPort>>, ProbeError> {
    let mut sockets = Vec::new();
    for (file, proto, v6) in [
        ("tcp", "tcp", false),
        ("tcp6", "tcp", true),
        ("udp", "udp", false),
        ("udp6", "udp", true),
    ] {
        match std::fs::read_to_string(format!("/proc/net/{file}")) {
            Ok(text) => sockets.extend(parse_proc_net(&text, proto, v6)),
            // IPv6 disabled in the kernel: no table, nothing listening there.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && v6 => {}
            Err(source) => {
                return Err(ProbeError::Read {
                    path: format!("/proc/net/{file}"),
                    source,
                })
            }
        }
    }
    let users = std::fs::read_to_string("/etc/passwd")
        .map(|t| {
            super::users::parse_passwd(&t)
                .into_iter()
                .filter_map(|u| Some((u.uid?, u.name)))
                .collect()
        })
        .unwrap_or_default();
    Ok(Section::collected(build_ports(
        sockets,
        &socket_owners(),
        &users,
    )))
}

#[cfg(not(target_os = "linux"))]
pub fn collect() -> Result<Section<Vec<ListeningPort>>, ProbeError> {
    Ok(Section::unsupported(
        "listening port probe exists for Linux only",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_names_cut_at_15_bytes_are_read_whole() {
        assert_eq!(
            full_process_name("/usr/sbin/apach", b"/usr/sbin/apache2\0-k\0start\0"),
            "/usr/sbin/apache2"
        );
        assert_eq!(
            full_process_name("systemd-resolve", b"/lib/systemd/systemd-resolved\0"),
            "systemd-resolved"
        );
        // Short names are whole; a renamed process keeps the name it chose.
        assert_eq!(full_process_name("sshd", b"sshd: /usr/sbin/sshd\0"), "sshd");
        assert_eq!(
            full_process_name("abcdefghijklmno", b"python3\0x.py\0"),
            "abcdefghijklmno"
        );
        assert_eq!(full_process_name("kworker/0:1-eve", b""), "kworker/0:1-eve");
    }

    #[test]
    fn proc_net_tcp_and_udp() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1626 1 0 100 0 0 10 0\n   1: 0100007F:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000   108        0 2000 1 0 100 0 0 10 0\n   2: 0202000A:0016 0302000A:C350 01 00000000:00000000 00:00000000 00000000     0        0 3000 1 0 100 0 0 10 0\n";
        let s = parse_proc_net(tcp, "tcp", false);
        assert_eq!(s.len(), 2, "established connections are not listeners");
        assert_eq!((s[0].address.as_str(), s[0].port), ("0.0.0.0", 22));
        assert_eq!((s[1].address.as_str(), s[1].port), ("127.0.0.1", 25));
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1700 1 0\n   1: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1701 1 0\n";
        let s6 = parse_proc_net(tcp6, "tcp", true);
        assert_eq!(s6[0].address, "::1");
        assert_eq!((s6[1].address.as_str(), s6[1].port), ("::", 8080));
        let udp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n  1: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4000 2 0 0\n  2: 0100007F:0035 0100007F:1234 01 00000000:00000000 00:00000000 00000000     0        0 4001 2 0 0\n";
        let u = parse_proc_net(udp, "udp", false);
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].port, 68);
    }

    #[test]
    fn owners_and_users_joined() {
        let sockets = vec![RawSocket {
            protocol: "tcp",
            address: "0.0.0.0".into(),
            port: 22,
            uid: 0,
            inode: 9,
        }];
        let owners = BTreeMap::from([(9u64, (812u32, "sshd".to_string()))]);
        let users = BTreeMap::from([(0u32, "root".to_string())]);
        let p = build_ports(sockets, &owners, &users);
        assert_eq!(p[0].process.as_deref(), Some("sshd"));
        assert_eq!(p[0].pid, Some(812));
        assert_eq!(p[0].user.as_deref(), Some("root"));
    }
}
