//! Network interfaces: MAC, physical or virtual, addresses with prefix, speed, default route.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use census_shared::{IpAddress, NetworkInterface, Section};

use super::ProbeError;

/// What /sys/class/net/IFACE says about a link.
#[derive(Debug, Default, Clone)]
pub struct LinkFacts {
    pub name: String,
    pub address: Option<String>,
    /// ARPHRD type: 1 ether, 772 loopback, 65534 none (tun), 32 infiniband.
    pub link_type: u32,
    pub ifindex: u32,
    pub iflink: u32,
    pub up: bool,
    pub mtu: Option<u32>,
    pub speed: Option<i64>,
    /// The `device` link exists and is not under /sys/devices/virtual.
    pub has_device: bool,
    pub driver: Option<String>,
    /// DEVTYPE from uevent ("vlan", "wlan", "bridge", "bond", "wireguard").
    pub devtype: Option<String>,
    pub is_bridge: bool,
    pub is_bond: bool,
    pub is_wireless: bool,
    pub is_tun: bool,
}

/// The interface's kind and whether it is backed by hardware.
pub fn classify(f: &LinkFacts) -> (&'static str, bool) {
    let kind = if f.link_type == 772 {
        "loopback"
    } else if f.is_wireless || f.devtype.as_deref() == Some("wlan") {
        "wireless"
    } else if f.is_bridge || f.devtype.as_deref() == Some("bridge") {
        "bridge"
    } else if f.is_bond || f.devtype.as_deref() == Some("bond") {
        "bond"
    } else if f.devtype.as_deref() == Some("vlan") {
        "vlan"
    } else if f.devtype.as_deref() == Some("wireguard") {
        "wireguard"
    } else if f.is_tun {
        "tun"
    } else if f.link_type == 32 {
        "infiniband"
    } else if f.has_device {
        "ether"
    } else if f.iflink != 0 && f.iflink != f.ifindex {
        "veth"
    } else {
        "virtual"
    };
    let physical = f.has_device && matches!(kind, "ether" | "wireless" | "infiniband");
    (kind, physical)
}

/// MAC normalised to lower-case colon form; None for all-zero or absent.
pub fn normalise_mac(raw: Option<&str>) -> Option<String> {
    let mac = raw?.trim().to_ascii_lowercase();
    if mac.is_empty() || mac.chars().all(|c| c == '0' || c == ':') {
        return None;
    }
    Some(mac)
}

/// Scope as `ip addr` prints it.
pub fn ip_scope(ip: &IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => "host",
        IpAddr::V4(v4) if v4.is_link_local() => "link",
        IpAddr::V4(_) => "global",
        IpAddr::V6(v6) if v6.is_loopback() => "host",
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => "link",
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfec0 => "site",
        IpAddr::V6(_) => "global",
    }
}

pub fn ip_address(ip: IpAddr, prefix: u8) -> IpAddress {
    IpAddress {
        address: ip.to_string(),
        prefix,
        family: if ip.is_ipv4() { "ipv4" } else { "ipv6" }.into(),
        scope: Some(ip_scope(&ip).into()),
    }
}

/// Default IPv4 routes from /proc/net/route: (interface, gateway).
pub fn parse_proc_route(text: &str) -> Vec<(String, Option<String>)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
                return None;
            }
            let gw = u32::from_str_radix(f[2], 16).ok()?;
            // The kernel prints the address in host byte order of a little-endian u32.
            let gw = Ipv4Addr::from(gw.to_le_bytes());
            Some((
                f[0].to_string(),
                (!gw.is_unspecified()).then(|| gw.to_string()),
            ))
        })
        .collect()
}

/// Default IPv6 routes from /proc/net/ipv6_route: (interface, gateway).
pub fn parse_ipv6_route(text: &str) -> Vec<(String, Option<String>)> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[0] != "00000000000000000000000000000000" || f[1] != "00" {
                return None;
            }
            let iface = f[9];
            if iface == "lo" {
                return None; // unreachable/blackhole defaults sit on lo
            }
            let gw = u128::from_str_radix(f[4], 16).ok().map(Ipv6Addr::from)?;
            Some((
                iface.to_string(),
                (!gw.is_unspecified()).then(|| gw.to_string()),
            ))
        })
        .collect()
}

/// Builds the interfaces from link facts, addresses by interface, and default routes.
pub fn build_interfaces(
    links: &[LinkFacts],
    addresses: &BTreeMap<String, Vec<IpAddress>>,
    defaults: &[(String, Option<String>)],
) -> Vec<NetworkInterface> {
    links
        .iter()
        .map(|f| {
            let (kind, physical) = classify(f);
            let default = defaults.iter().find(|(i, _)| *i == f.name);
            let mut addrs = addresses.get(&f.name).cloned().unwrap_or_default();
            addrs.sort();
            addrs.dedup();
            NetworkInterface {
                name: f.name.clone(),
                mac: if kind == "loopback" {
                    None
                } else {
                    normalise_mac(f.address.as_deref())
                },
                physical,
                kind: kind.into(),
                driver: f.driver.clone(),
                mtu: f.mtu,
                up: f.up,
                speed_mbps: f.speed.filter(|s| *s > 0).map(|s| s as u64),
                addresses: addrs,
                default_route: default.is_some(),
                gateway: default.and_then(|(_, gw)| gw.clone()),
            }
        })
        .collect()
}

#[cfg(any(unix, test))]
fn prefix_len(mask: &[u8]) -> u8 {
    mask.iter().map(|b| b.count_ones() as u8).sum()
}

/// Addresses per interface from getifaddrs(3).
#[cfg(unix)]
pub fn interface_addresses() -> BTreeMap<String, Vec<IpAddress>> {
    let mut out: BTreeMap<String, Vec<IpAddress>> = BTreeMap::new();
    // SAFETY: getifaddrs allocates a list we only read and free once; sockaddr pointers are
    // cast according to their sa_family.
    unsafe {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                .to_string_lossy()
                .into_owned();
            let family = (*ifa.ifa_addr).sa_family as i32;
            let entry = if family == libc::AF_INET {
                let a = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                let ip = IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)));
                let prefix = if ifa.ifa_netmask.is_null() {
                    32
                } else {
                    let m = &*(ifa.ifa_netmask as *const libc::sockaddr_in);
                    prefix_len(&m.sin_addr.s_addr.to_ne_bytes())
                };
                ip_address(ip, prefix)
            } else if family == libc::AF_INET6 {
                let a = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                let ip = IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr));
                let prefix = if ifa.ifa_netmask.is_null() {
                    128
                } else {
                    let m = &*(ifa.ifa_netmask as *const libc::sockaddr_in6);
                    prefix_len(&m.sin6_addr.s6_addr)
                };
                ip_address(ip, prefix)
            } else {
                continue;
            };
            out.entry(name).or_default().push(entry);
        }
        libc::freeifaddrs(head);
    }
    out
}

#[cfg(target_os = "linux")]
pub fn collect() -> Result<Section<Vec<NetworkInterface>>, ProbeError> {
    use super::read_attr;
    let dir = std::path::Path::new("/sys/class/net");
    let entries = std::fs::read_dir(dir).map_err(|source| ProbeError::Read {
        path: "/sys/class/net".into(),
        source,
    })?;
    let mut links = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let base = dir.join(&name);
        let num = |f: &str| read_attr(base.join(f)).and_then(|v| v.parse::<u32>().ok());
        let device = std::fs::canonicalize(base.join("device")).ok();
        let uevent = read_attr(base.join("uevent")).unwrap_or_default();
        let flags = read_attr(base.join("flags"))
            .and_then(|v| u32::from_str_radix(v.trim_start_matches("0x"), 16).ok())
            .unwrap_or(0);
        links.push(LinkFacts {
            address: read_attr(base.join("address")),
            link_type: num("type").unwrap_or(0),
            ifindex: num("ifindex").unwrap_or(0),
            iflink: num("iflink").unwrap_or(0),
            up: flags & 1 == 1,
            mtu: num("mtu"),
            speed: read_attr(base.join("speed")).and_then(|v| v.parse().ok()),
            has_device: device
                .as_ref()
                .is_some_and(|p| !p.starts_with("/sys/devices/virtual")),
            driver: std::fs::read_link(base.join("device/driver"))
                .ok()
                .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned())),
            devtype: uevent
                .lines()
                .find_map(|l| l.strip_prefix("DEVTYPE="))
                .map(str::to_string),
            is_bridge: base.join("bridge").exists(),
            is_bond: base.join("bonding").exists(),
            is_wireless: base.join("wireless").exists() || base.join("phy80211").exists(),
            is_tun: base.join("tun_flags").exists(),
            name,
        });
    }
    links.sort_by_key(|l| l.ifindex);
    let mut defaults = read_attr("/proc/net/route")
        .map(|t| parse_proc_route(&t))
        .unwrap_or_default();
    defaults.extend(
        std::fs::read_to_string("/proc/net/ipv6_route")
            .map(|t| parse_ipv6_route(&t))
            .unwrap_or_default(),
    );
    Ok(Section::collected(build_interfaces(
        &links,
        &interface_addresses(),
        &defaults,
    )))
}

#[cfg(all(unix, not(target_os = "linux")))]
pub fn collect() -> Result<Section<Vec<NetworkInterface>>, ProbeError> {
    // BSD-style systems: names and MACs from mac_address, addresses from getifaddrs.
    let addresses = interface_addresses();
    let mut links = Vec::new();
    for name in addresses.keys() {
        let mac = mac_address::mac_address_by_name(name)
            .ok()
            .flatten()
            .map(|m| m.to_string());
        links.push(LinkFacts {
            name: name.clone(),
            address: mac,
            up: true,
            link_type: if name.starts_with("lo") { 772 } else { 1 },
            has_device: !name.starts_with("lo"),
            ..Default::default()
        });
    }
    Ok(Section::collected(build_interfaces(
        &links,
        &addresses,
        &[],
    )))
}

#[cfg(windows)]
pub fn collect() -> Result<Section<Vec<NetworkInterface>>, ProbeError> {
    super::windows::collect_network()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_routes_v4_and_v6() {
        let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\neth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\neth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(
            parse_proc_route(v4),
            vec![("eth0".to_string(), Some("192.0.2.1".to_string()))]
        );
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 wlp2s0\n00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n";
        assert_eq!(
            parse_ipv6_route(v6),
            vec![("wlp2s0".to_string(), Some("fe80::1".to_string()))]
        );
    }

    #[test]
    fn classification() {
        let eth = LinkFacts {
            name: "eth0".into(),
            link_type: 1,
            has_device: true,
            ifindex: 2,
            iflink: 2,
            ..Default::default()
        };
        assert_eq!(classify(&eth), ("ether", true));
        let lo = LinkFacts {
            name: "lo".into(),
            link_type: 772,
            ..Default::default()
        };
        assert_eq!(classify(&lo), ("loopback", false));
        let veth = LinkFacts {
            name: "veth1".into(),
            link_type: 1,
            ifindex: 7,
            iflink: 6,
            ..Default::default()
        };
        assert_eq!(classify(&veth), ("veth", false));
        let br = LinkFacts {
            name: "docker0".into(),
            link_type: 1,
            is_bridge: true,
            ifindex: 3,
            iflink: 3,
            ..Default::default()
        };
        assert_eq!(classify(&br), ("bridge", false));
        let wifi = LinkFacts {
            name: "wlp2s0".into(),
            link_type: 1,
            has_device: true,
            is_wireless: true,
            ..Default::default()
        };
        assert_eq!(classify(&wifi), ("wireless", true));
        let vlan = LinkFacts {
            name: "eth0.10".into(),
            link_type: 1,
            devtype: Some("vlan".into()),
            ifindex: 9,
            iflink: 2,
            ..Default::default()
        };
        assert_eq!(classify(&vlan), ("vlan", false));
        let ifb = LinkFacts {
            name: "ifb0".into(),
            link_type: 1,
            ifindex: 2,
            iflink: 2,
            ..Default::default()
        };
        assert_eq!(classify(&ifb), ("virtual", false));
    }

    #[test]
    fn interfaces_assembled() {
        let links = vec![
            LinkFacts {
                name: "lo".into(),
                link_type: 772,
                address: Some("00:00:00:00:00:00".into()),
                up: true,
                ..Default::default()
            },
            LinkFacts {
                name: "eth0".into(),
                link_type: 1,
                address: Some("02:FC:00:00:00:01".into()),
                has_device: true,
                up: true,
                speed: Some(-1),
                mtu: Some(1400),
                ..Default::default()
            },
        ];
        let mut addrs = BTreeMap::new();
        addrs.insert(
            "eth0".to_string(),
            vec![
                ip_address("fd00::2".parse().unwrap(), 64),
                ip_address("192.0.2.2".parse().unwrap(), 24),
                ip_address("fe80::fc:ff:fe00:1".parse().unwrap(), 64),
            ],
        );
        let nics = build_interfaces(&links, &addrs, &[("eth0".into(), Some("192.0.2.1".into()))]);
        assert_eq!(nics[0].mac, None);
        assert_eq!(nics[1].mac.as_deref(), Some("02:fc:00:00:00:01"));
        assert_eq!(nics[1].speed_mbps, None);
        assert!(nics[1].default_route);
        assert_eq!(nics[1].gateway.as_deref(), Some("192.0.2.1"));
        let scopes: Vec<_> = nics[1]
            .addresses
            .iter()
            .map(|a| (a.address.as_str(), a.scope.as_deref().unwrap()))
            .collect();
        assert!(scopes.contains(&("fe80::fc:ff:fe00:1", "link")));
        assert!(scopes.contains(&("192.0.2.2", "global")));
    }

    #[test]
    fn prefixes() {
        assert_eq!(prefix_len(&[255, 255, 255, 0]), 24);
        assert_eq!(prefix_len(&[255; 16]), 128);
    }
}
