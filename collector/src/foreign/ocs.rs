//! The inventory XML of OCS Inventory agents and of FusionInventory agents (which kept the
//! OCS format and added sections), mapped onto the snapshot schema. Pure: bytes in, a
//! snapshot and what was left out, or a refusal naming why.
//!
//! What maps (the table in ARCHITECTURE.md): HARDWARE and OPERATINGSYSTEM to `os`, `memory`
//! and the system's UUID; BIOS to `system`; CPUS, STORAGES (disks), DRIVES (filesystems),
//! NETWORKS (one entry per address, grouped back into interfaces), SOFTWARES, LOCAL_USERS.
//! Services and listening ports are not in these formats: those sections are
//! "unsupported", so importing never retires what a Census agent found.

use std::collections::BTreeMap;

use census_shared::schema::*;
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

use super::xml::{self, Node, XmlError};

/// Which agent wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Ocs,
    FusionInventory,
    /// The GLPI agent's JSON.
    Glpi,
}

impl Format {
    /// The source an import is marked with.
    pub fn source(self) -> &'static str {
        match self {
            Format::Ocs => "import:ocs",
            Format::FusionInventory => "import:fusioninventory",
            Format::Glpi => "import:glpi",
        }
    }
}

/// An inventory read from another tool's XML.
#[derive(Debug, Clone, PartialEq)]
pub struct Foreign {
    pub format: Format,
    /// The agent's own id for the machine (`DEVICEID`: hostname and a date).
    pub device_id: String,
    /// The sections as Census keeps them (agent id and seq are the importer's to set).
    pub snapshot: Snapshot,
    /// Sections of the document that have no place in the snapshot, with their counts.
    pub dropped: BTreeMap<String, usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ForeignError {
    #[error(transparent)]
    Xml(#[from] XmlError),
    #[error(transparent)]
    Json(#[from] super::glpi::JsonError),
    #[error("not an inventory: {0}")]
    NotAnInventory(String),
    #[error("{0}")]
    Limits(String),
}

const MAPPED: [&str; 9] = [
    "HARDWARE",
    "OPERATINGSYSTEM",
    "BIOS",
    "CPUS",
    "STORAGES",
    "DRIVES",
    "NETWORKS",
    "SOFTWARES",
    "LOCAL_USERS",
];

/// Reads one inventory (`REQUEST` with `QUERY` INVENTORY) within the XML reader's limits.
pub fn parse(bytes: &[u8], format: Format) -> Result<Foreign, ForeignError> {
    let doc = match format {
        Format::Glpi => super::glpi::to_tree(bytes, xml::Limits::default())?,
        Format::Ocs | Format::FusionInventory => xml::parse(bytes, xml::Limits::default())?,
    };
    map(&doc, format)
}

/// Maps a document already read (by [`xml::parse`] or [`super::glpi::to_tree`]): what an
/// agent protocol does after it has looked at the QUERY, so nothing is read twice.
pub fn map(doc: &Node, format: Format) -> Result<Foreign, ForeignError> {
    if doc.name != "REQUEST" {
        return Err(ForeignError::NotAnInventory(format!(
            "the root element is <{}>, not <REQUEST>",
            bounded(&doc.name, 64)
        )));
    }
    match doc.text_of("QUERY") {
        Some("INVENTORY") => {}
        other => {
            return Err(ForeignError::NotAnInventory(format!(
                "QUERY is {:?}, not INVENTORY",
                other.map(|q| bounded(q, 64))
            )))
        }
    }
    let content = doc
        .child("CONTENT")
        .ok_or_else(|| ForeignError::NotAnInventory("no CONTENT".into()))?;
    let device_id = doc
        .text_of("DEVICEID")
        .ok_or_else(|| ForeignError::NotAnInventory("no DEVICEID".into()))?
        .to_string();
    let hardware = content.child("HARDWARE");
    let mut snap = Snapshot::empty("", 0, Utc::now());
    snap.agent_version = content
        .text_of("VERSIONCLIENT")
        .unwrap_or(match format {
            Format::Ocs => "ocsinventory-agent",
            Format::FusionInventory => "fusioninventory-agent",
            Format::Glpi => "glpi-agent",
        })
        .to_string();
    snap.system = Section::collected(system(content.child("BIOS"), hardware));
    snap.os = match os(hardware, content.child("OPERATINGSYSTEM")) {
        Some(os) => Section::collected(os),
        None => Section::failed("the inventory names no host (HARDWARE/NAME)"),
    };
    snap.memory = match hardware.and_then(|h| h.text_of("MEMORY")) {
        Some(m) => Section::collected(Memory {
            total_bytes: mib(m),
            available_bytes: None,
            swap_total_bytes: hardware.and_then(|h| h.text_of("SWAP")).map_or(0, mib),
            swap_free_bytes: None,
        }),
        None => Section::unsupported("no HARDWARE/MEMORY"),
    };
    snap.cpus = Section::collected(content.all("CPUS").enumerate().map(cpu).collect());
    snap.disks = Section::collected(content.all("STORAGES").filter_map(disk).collect());
    snap.filesystems = Section::collected(content.all("DRIVES").filter_map(filesystem).collect());
    snap.network_interfaces = Section::collected(interfaces(content));
    // Packages without FROM are the platform's own kind (macOS bundles carry none).
    let platform = match snap.os.data().map(|o| o.family.as_str()) {
        Some("windows") => "windows-registry",
        Some("macos") => "macos-app",
        _ => "unknown",
    };
    snap.software = Section::collected(
        content
            .all("SOFTWARES")
            .filter_map(|s| software(s, platform))
            .collect(),
    );
    snap.users = Section::collected(content.all("LOCAL_USERS").filter_map(user).collect());
    let absent = match format {
        Format::Ocs => "not in an OCS inventory",
        Format::FusionInventory => "not in a FusionInventory inventory",
        Format::Glpi => "not in a GLPI agent inventory",
    };
    snap.services = Section::unsupported(absent);
    snap.listening_ports = Section::unsupported(absent);
    snap.check_limits()
        .map_err(|e| ForeignError::Limits(e.to_string()))?;
    let mut dropped = BTreeMap::new();
    for c in &content.children {
        if !MAPPED.contains(&c.name.as_str()) {
            *dropped.entry(c.name.clone()).or_default() += 1;
        }
    }
    Ok(Foreign {
        format,
        device_id,
        snapshot: snap,
        dropped,
    })
}

fn bounded(s: &str, chars: usize) -> String {
    s.chars().take(chars).collect()
}

/// A value people can use: trimmed, not a placeholder.
fn value(text: Option<&str>) -> Option<String> {
    let t = text?.trim();
    let placeholder = t.is_empty()
        || matches!(
            t.to_ascii_lowercase().as_str(),
            "none"
                | "n/a"
                | "unknown"
                | "not specified"
                | "to be filled by o.e.m."
                | "default string"
                | "system serial number"
                | "0"
                | "00000000-0000-0000-0000-000000000000"
        );
    (!placeholder).then(|| t.to_string())
}

fn number(text: &str) -> Option<f64> {
    text.split_whitespace()
        .next()?
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
}

/// Memory, swap and filesystem sizes are in MiB.
fn mib(text: &str) -> u64 {
    number(text).map_or(0, |n| (n * 1024.0 * 1024.0) as u64)
}

fn system(bios: Option<&Node>, hardware: Option<&Node>) -> System {
    // Hardware identity goes through the placeholder rules agents' own probes use
    // ("To Be Filled By O.E.M.", all-zero and well-known UUIDs, "123456789", ...).
    let meaningful = census_shared::identity::meaningful;
    let b = |k: &str| meaningful(bios.and_then(|b| b.text_of(k)));
    let vm = hardware
        .and_then(|h| h.text_of("VMSYSTEM"))
        .map(str::to_ascii_lowercase)
        .filter(|v| v != "physical");
    let container = vm
        .as_deref()
        .filter(|v| {
            matches!(
                *v,
                "docker" | "lxc" | "openvz" | "podman" | "systemd-nspawn"
            )
        })
        .map(str::to_string);
    System {
        vendor: b("SMANUFACTURER"),
        model: b("SMODEL"),
        family: None,
        serial: b("SSN"),
        uuid: meaningful(hardware.and_then(|h| h.text_of("UUID"))).map(|u| u.to_ascii_lowercase()),
        sku: b("SKUNUMBER"),
        chassis_type: b("TYPE"),
        board_vendor: b("MMANUFACTURER"),
        board_model: b("MMODEL"),
        board_serial: b("MSN"),
        bios_vendor: b("BMANUFACTURER"),
        bios_version: b("BVERSION"),
        bios_date: b("BDATE"),
        machine_id: None,
        virtualization: if container.is_some() { None } else { vm },
        container,
        restricted: Vec::new(),
    }
}

/// The os-release id Census derives ecosystems from, from a product name.
fn os_id(name: &str) -> Option<&'static str> {
    let n = name.to_ascii_lowercase();
    [
        ("debian", "debian"),
        ("ubuntu", "ubuntu"),
        ("red hat", "rhel"),
        ("rocky", "rocky"),
        ("almalinux", "almalinux"),
        ("centos", "centos"),
        ("fedora", "fedora"),
        ("alpine", "alpine"),
        ("opensuse", "opensuse"),
        ("suse", "sles"),
        ("arch linux", "arch"),
        ("windows", "windows"),
        ("macos", "macos"),
        ("mac os", "macos"),
    ]
    .iter()
    .find(|(k, _)| n.contains(k))
    .map(|(_, id)| *id)
}

fn os(hardware: Option<&Node>, fusion: Option<&Node>) -> Option<Os> {
    let h = |k: &str| value(hardware.and_then(|h| h.text_of(k)));
    let f = |k: &str| value(fusion.and_then(|o| o.text_of(k)));
    let hostname = h("NAME")?;
    // FusionInventory's OPERATINGSYSTEM says it plainly; OCS says "Debian GNU/Linux 12"
    // in OSNAME and the release in OSVERSION (the kernel's on FusionInventory's HARDWARE).
    let name = f("NAME").or_else(|| h("OSNAME"));
    let version = if fusion.is_some() {
        f("VERSION")
    } else {
        h("OSVERSION")
    };
    let id = name.as_deref().and_then(os_id);
    let family = match id {
        Some("windows") => "windows",
        Some("macos") => "macos",
        _ => match f("KERNEL_NAME").as_deref() {
            Some("darwin") => "macos",
            Some("mswin32") => "windows",
            _ => "linux",
        },
    };
    // os-release's VERSION_ID: Debian's is the major release ("12"), not the point
    // release FusionInventory gives ("12.11").
    let version_id = match (id, version.as_deref()) {
        (Some("debian"), Some(v)) => v.split('.').next().map(str::to_string),
        (_, v) => v.map(str::to_string),
    };
    Some(Os {
        family: family.into(),
        name: name.map(|n| match (id, family) {
            // OCS appends the release to the name; keep the product's name only.
            (Some(_), "linux") => n
                .trim_end_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')
                .to_string(),
            _ => n,
        }),
        id: id.map(str::to_string),
        id_like: Vec::new(),
        version: f("FULL_NAME").or(version),
        version_id,
        codename: None,
        build: None,
        kernel: f("KERNEL_NAME"),
        kernel_version: f("KERNEL_VERSION"),
        arch: f("ARCH").unwrap_or_default(),
        hostname: hostname.clone(),
        fqdn: f("FQDN").filter(|q| *q != hostname),
        timezone: fusion
            .and_then(|o| o.child("TIMEZONE"))
            .and_then(|t| value(t.text_of("NAME"))),
        boot_time: None,
        uptime_seconds: None,
    })
}

fn cpu((socket, c): (usize, &Node)) -> Cpu {
    let n = |k: &str| c.text_of(k).and_then(number).map(|n| n as u32);
    Cpu {
        socket: socket as u32,
        vendor: value(c.text_of("MANUFACTURER")),
        model: value(c.text_of("NAME")).or_else(|| value(c.text_of("TYPE"))),
        cores: n("CORES").or_else(|| n("CORE")).unwrap_or(0),
        threads: n("LOGICAL_CPUS")
            .or_else(|| n("THREADS"))
            .or_else(|| n("THREAD"))
            .unwrap_or(0),
        max_mhz: c.text_of("SPEED").and_then(number).map(|n| n as u64),
        flags_virtualization: None,
    }
}

fn disk(s: &Node) -> Option<Disk> {
    let name = value(s.text_of("NAME"))?;
    let kind = s.text_of("TYPE").unwrap_or("").to_ascii_lowercase();
    if kind.contains("cd") || kind.contains("dvd") || kind == "rom" {
        return None;
    }
    Some(Disk {
        name,
        model: value(s.text_of("MODEL")),
        vendor: value(s.text_of("MANUFACTURER")),
        serial: value(s.text_of("SERIALNUMBER")),
        wwn: None,
        // Disk sizes are in decimal megabytes.
        size_bytes: s
            .text_of("DISKSIZE")
            .and_then(number)
            .map_or(0, |mb| (mb * 1_000_000.0) as u64),
        rotational: None,
        removable: kind.contains("removable"),
        transport: value(s.text_of("INTERFACE")).map(|t| t.to_ascii_lowercase()),
    })
}

fn filesystem(d: &Node) -> Option<Filesystem> {
    // Unix agents put the mount point in TYPE; Windows ones the drive letter in LETTER.
    let mount_point = value(d.text_of("LETTER")).or_else(|| value(d.text_of("TYPE")))?;
    Some(Filesystem {
        mount_point,
        device: value(d.text_of("VOLUMN")).unwrap_or_default(),
        fs_type: value(d.text_of("FILESYSTEM")).unwrap_or_default(),
        total_bytes: d.text_of("TOTAL").map_or(0, mib),
        free_bytes: d.text_of("FREE").map(mib),
        read_only: false,
    })
}

/// A dotted IPv4 or an IPv6 mask as a prefix length.
fn prefix(mask: &str) -> Option<u8> {
    if let Ok(v4) = mask.parse::<std::net::Ipv4Addr>() {
        let bits = u32::from(v4);
        return (bits.leading_ones() + bits.trailing_zeros() == 32)
            .then(|| bits.leading_ones() as u8);
    }
    if let Ok(v6) = mask.parse::<std::net::Ipv6Addr>() {
        let bits = u128::from(v6);
        return (bits.leading_ones() + bits.trailing_zeros() == 128)
            .then(|| bits.leading_ones() as u8);
    }
    mask.parse::<u8>().ok().filter(|p| *p <= 128)
}

fn address(ip: &str, mask: Option<&str>) -> Option<IpAddress> {
    let parsed: std::net::IpAddr = ip.trim().parse().ok()?;
    let (family, max) = match parsed {
        std::net::IpAddr::V4(_) => ("ipv4", 32),
        std::net::IpAddr::V6(_) => ("ipv6", 128),
    };
    let scope = match parsed {
        std::net::IpAddr::V4(a) if a.is_loopback() => "host",
        std::net::IpAddr::V4(a) if a.is_link_local() => "link",
        std::net::IpAddr::V6(a) if a.is_loopback() => "host",
        std::net::IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80 => "link",
        _ => "global",
    };
    Some(IpAddress {
        address: parsed.to_string(),
        prefix: mask.and_then(prefix).filter(|p| *p <= max).unwrap_or(max),
        family: family.into(),
        scope: Some(scope.into()),
    })
}

/// NETWORKS has one entry per (interface, address); Census one interface with its list.
fn interfaces(content: &Node) -> Vec<NetworkInterface> {
    let mut by_name: BTreeMap<String, NetworkInterface> = BTreeMap::new();
    for n in content.all("NETWORKS") {
        let Some(name) = value(n.text_of("DESCRIPTION")) else {
            continue;
        };
        let kind = match n.text_of("TYPE").map(str::to_ascii_lowercase).as_deref() {
            Some("loopback") => "loopback",
            Some("wifi" | "wireless") => "wireless",
            Some("bridge") => "bridge",
            Some("ethernet" | "ether") | None => "ether",
            Some(other) => match other {
                "vlan" | "bond" | "tun" | "veth" | "infiniband" => other,
                _ => "ether",
            },
        }
        .to_string();
        let gateway = value(n.text_of("IPGATEWAY")).filter(|g| g != "0.0.0.0" && g != "fe80::");
        let iface = by_name.entry(name.clone()).or_insert_with(|| {
            let physical = match n.text_of("VIRTUALDEV") {
                Some(v) => v == "0",
                None => kind != "loopback" && n.text_of("DRIVER").is_some(),
            };
            NetworkInterface {
                name,
                mac: value(n.text_of("MACADDR"))
                    .map(|m| m.to_ascii_lowercase())
                    .filter(|m| m != "00:00:00:00:00:00"),
                physical,
                kind: kind.clone(),
                driver: value(n.text_of("DRIVER")),
                mtu: n.text_of("MTU").and_then(number).map(|m| m as u32),
                up: n
                    .text_of("STATUS")
                    .is_some_and(|s| s.eq_ignore_ascii_case("up")),
                speed_mbps: n
                    .text_of("SPEED")
                    .and_then(number)
                    .map(|s| s as u64)
                    .filter(|s| *s > 0),
                addresses: Vec::new(),
                default_route: false,
                gateway: None,
            }
        });
        if let Some(a) = n
            .text_of("IPADDRESS")
            .and_then(|ip| address(ip, n.text_of("IPMASK")))
        {
            if !iface.addresses.contains(&a) {
                iface.addresses.push(a);
            }
            if iface.gateway.is_none() {
                iface.gateway = gateway.clone();
            }
        }
        if let Some(a) = n
            .text_of("IPADDRESS6")
            .and_then(|ip| address(ip, n.text_of("IPMASK6")))
        {
            if !iface.addresses.contains(&a) {
                iface.addresses.push(a);
            }
        }
    }
    // The interface whose gateway is the host's default gateway carries the default route.
    let default_gateway = content
        .child("HARDWARE")
        .and_then(|h| value(h.text_of("DEFAULTGATEWAY")));
    for iface in by_name.values_mut() {
        iface.default_route = default_gateway.is_some() && iface.gateway == default_gateway;
    }
    by_name.into_values().collect()
}

/// Package origins as the agents name them, as Census names them.
fn origin(from: Option<&str>, platform: &str) -> String {
    match from.map(str::to_ascii_lowercase).as_deref() {
        Some("deb") => "dpkg".into(),
        Some("rpm") => "rpm".into(),
        Some("apk") => "apk".into(),
        Some("pacman") => "pacman".into(),
        Some("snap") => "snap".into(),
        Some("flatpak") => "flatpak".into(),
        Some("registry" | "msi" | "wmi") => "windows-registry".into(),
        Some("application" | "pkgutil") => "macos-app".into(),
        Some(other) if !other.is_empty() => other.chars().take(32).collect(),
        _ => platform.into(),
    }
}

/// OCS writes `2025/04/20 00:00:00`, FusionInventory `20/04/2025`; unknown dates are
/// written as 1970 or year 0, which mean nothing.
fn install_date(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    let when = NaiveDateTime::parse_from_str(t, "%Y/%m/%d %H:%M:%S")
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").ok())
        .or_else(|| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M").ok())
        .or_else(|| {
            NaiveDate::parse_from_str(t, "%d/%m/%Y")
                .or_else(|_| NaiveDate::parse_from_str(t, "%Y-%m-%d"))
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })?;
    let at = Utc.from_utc_datetime(&when);
    (at.timestamp() > 86_400 * 366).then_some(at)
}

fn software(s: &Node, platform: &str) -> Option<Software> {
    let mut name = value(s.text_of("NAME"))?;
    let mut arch = value(s.text_of("ARCHITECTURE")).or_else(|| value(s.text_of("ARCH")));
    let source = origin(s.text_of("FROM"), platform);
    // OCS names multi-arch dpkg packages as `${binary:Package}` (`gcc-12-base:amd64`);
    // dpkg's package name is the part before the colon, and the rest its architecture.
    if source == "dpkg" {
        if let Some((package, qualifier)) = name.rsplit_once(':') {
            if !package.is_empty() && !qualifier.is_empty() {
                arch = arch.or_else(|| Some(qualifier.to_string()));
                name = package.to_string();
            }
        }
    }
    Some(Software {
        name,
        version: s.text_of("VERSION").unwrap_or_default().trim().to_string(),
        arch,
        publisher: value(s.text_of("PUBLISHER")),
        source,
        source_package: None,
        installed_size_bytes: s.text_of("FILESIZE").and_then(number).map(|n| n as u64),
        install_date: s.text_of("INSTALLDATE").and_then(install_date),
    })
}

fn user(u: &Node) -> Option<User> {
    let name = value(u.text_of("LOGIN"))?;
    let shell = value(u.text_of("SHELL"));
    Some(User {
        name,
        uid: u.text_of("ID").and_then(|i| i.trim().parse().ok()),
        gid: u.text_of("GID").and_then(|i| i.trim().parse().ok()),
        full_name: value(u.text_of("NAME")),
        home: value(u.text_of("HOME")),
        login_shell: shell
            .as_deref()
            .is_some_and(|s| !s.ends_with("nologin") && !s.ends_with("false")),
        shell,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OCS: &str = include_str!("../../tests/fixtures/foreign/ocs-debian12.xml");
    const FUSION: &str = include_str!("../../tests/fixtures/foreign/fusioninventory-debian12.xml");
    /// `ip -o link` on the machine both inventories were taken on, at the same boot.
    const IP_LINK: &str = include_str!("../../tests/fixtures/foreign/ip-o-link.txt");

    fn macs_of_ip_link() -> BTreeMap<String, String> {
        IP_LINK
            .lines()
            .filter_map(|l| {
                let name = l.split(':').nth(1)?.trim().split('@').next()?.to_string();
                let mac = l.split("link/ether ").nth(1)?.split_whitespace().next()?;
                Some((name, mac.to_string()))
            })
            .collect()
    }

    fn macs(snap: &Snapshot) -> BTreeMap<String, String> {
        snap.network_interfaces
            .data()
            .unwrap()
            .iter()
            .filter_map(|i| Some((i.name.clone(), i.mac.clone()?)))
            .collect()
    }

    #[test]
    fn an_ocs_agents_local_inventory_of_this_machine_maps_onto_the_snapshot() {
        let f = parse(OCS.as_bytes(), Format::Ocs).unwrap();
        assert_eq!(f.device_id, "vm-2026-12-02-16-17-05");
        let s = &f.snapshot;
        let os = s.os.data().unwrap();
        assert_eq!(
            (
                os.hostname.as_str(),
                os.family.as_str(),
                os.id.as_deref(),
                os.version_id.as_deref()
            ),
            ("vm", "linux", Some("debian"), Some("12"))
        );
        assert_eq!(os.name.as_deref(), Some("Debian GNU/Linux"));
        assert_eq!(s.memory.data().unwrap().total_bytes, 24105 * 1024 * 1024);
        // dpkg-query -W counted 861 packages on the machine when it was taken.
        let sw = s.software.data().unwrap();
        assert_eq!(sw.len(), 861);
        assert!(sw.iter().all(|p| p.source == "dpkg"));
        let adduser = sw.iter().find(|p| p.name == "adduser").unwrap();
        assert_eq!(
            (adduser.version.as_str(), adduser.arch.as_deref()),
            ("3.134", Some("all"))
        );
        assert_eq!(
            adduser.install_date.map(|d| d.date_naive().to_string()),
            Some("2025-04-20".into())
        );
        // Every MAC `ip -o link` shows, on the interface it names.
        assert_eq!(macs(s), macs_of_ip_link());
        let eth0 = s
            .network_interfaces
            .data()
            .unwrap()
            .iter()
            .find(|i| i.name == "eth0")
            .unwrap();
        let addrs: Vec<String> = eth0
            .addresses
            .iter()
            .map(|a| format!("{}/{}", a.address, a.prefix))
            .collect();
        assert_eq!(addrs, ["192.0.2.2/24", "fe80::fc:ff:fe00:1/64"]);
        assert!(eth0.default_route && eth0.up && eth0.physical);
        assert_eq!(eth0.gateway.as_deref(), Some("192.0.2.1"));
        let fs = s.filesystems.data().unwrap();
        assert_eq!(
            (
                fs[0].mount_point.as_str(),
                fs[0].device.as_str(),
                fs[0].fs_type.as_str()
            ),
            ("/", "/dev/vda", "ext4")
        );
        assert_eq!(s.disks.data().unwrap()[0].size_bytes, 274_877_906_944);
        assert_eq!(s.users.data().unwrap().len(), 25);
        assert_eq!(s.services.status, SectionStatus::Unsupported);
        assert_eq!(f.dropped.get("CONTROLLERS"), Some(&6));
        assert_eq!(f.dropped.get("LOCAL_GROUPS"), Some(&53));
    }

    #[test]
    fn a_fusioninventory_inventory_of_the_same_machine_agrees() {
        let f = parse(FUSION.as_bytes(), Format::FusionInventory).unwrap();
        let ocs = parse(OCS.as_bytes(), Format::Ocs).unwrap();
        let s = &f.snapshot;
        let os = s.os.data().unwrap();
        assert_eq!(
            os.version.as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            os.version_id.as_deref(),
            Some("12"),
            "the major release, as os-release"
        );
        assert_eq!(os.kernel_version.as_deref(), Some("6.18.44-fc-v1098"));
        assert_eq!(os.arch, "x86_64");
        assert_eq!(
            s.system.data().unwrap().container.as_deref(),
            Some("docker")
        );
        let names = |s: &Snapshot| -> Vec<(String, String)> {
            s.software
                .data()
                .unwrap()
                .iter()
                .map(|p| (p.name.clone(), p.version.clone()))
                .collect()
        };
        assert_eq!(names(s), names(&ocs.snapshot));
        assert_eq!(macs(s), macs_of_ip_link());
        let lo = s
            .network_interfaces
            .data()
            .unwrap()
            .iter()
            .find(|i| i.name == "lo")
            .unwrap();
        assert_eq!(
            (lo.kind.as_str(), lo.mac.as_deref(), lo.physical),
            ("loopback", None, false)
        );
        assert_eq!(lo.addresses.len(), 2, "127.0.0.1 and ::1, one interface");
    }

    #[test]
    fn a_windows_inventory_maps_its_registry_packages_drive_letters_and_bios() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8" ?>
<REQUEST><CONTENT>
 <BIOS><SMANUFACTURER>Dell Inc.</SMANUFACTURER><SMODEL>Latitude 7420</SMODEL><SSN>7XK2P93</SSN>
  <BMANUFACTURER>Dell Inc.</BMANUFACTURER><BVERSION>1.31.0</BVERSION><BDATE>11/22/2023</BDATE>
  <MMANUFACTURER>Dell Inc.</MMANUFACTURER><MSN>/7XK2P93/CNCMK0036F0123/</MSN><TYPE>Notebook</TYPE></BIOS>
 <HARDWARE><NAME>LAPTOP-ANN</NAME><UUID>4C4C4544-0058-4B10-8032-B7C04F503933</UUID>
  <OSNAME>Microsoft Windows 11 Pro</OSNAME><OSVERSION>10.0.22631</OSVERSION><MEMORY>16067</MEMORY>
  <VMSYSTEM>Physical</VMSYSTEM></HARDWARE>
 <DRIVES><LETTER>C:</LETTER><FILESYSTEM>NTFS</FILESYSTEM><TOTAL>486383</TOTAL><FREE>201822</FREE><TYPE>Hard Drive</TYPE></DRIVES>
 <SOFTWARES><NAME>Mozilla Firefox (x64 fr)</NAME><VERSION>128.0.3</VERSION><PUBLISHER>Mozilla</PUBLISHER>
  <FROM>registry</FROM><INSTALLDATE>15/07/2024</INSTALLDATE><ARCH>x86_64</ARCH></SOFTWARES>
 <NETWORKS><DESCRIPTION>Intel(R) Wi-Fi 6 AX201 160MHz</DESCRIPTION><MACADDR>A4:B1:C1:0D:2E:3F</MACADDR>
  <IPADDRESS>10.1.4.23</IPADDRESS><IPMASK>255.255.252.0</IPMASK><IPGATEWAY>10.1.4.1</IPGATEWAY>
  <STATUS>Up</STATUS><TYPE>wifi</TYPE><VIRTUALDEV>0</VIRTUALDEV><SPEED>866</SPEED></NETWORKS>
</CONTENT><DEVICEID>LAPTOP-ANN-2024-07-16-08-12-44</DEVICEID><QUERY>INVENTORY</QUERY></REQUEST>"#;
        let f = parse(xml.as_bytes(), Format::FusionInventory).unwrap();
        let s = &f.snapshot;
        let sys = s.system.data().unwrap();
        assert_eq!(
            (
                sys.vendor.as_deref(),
                sys.serial.as_deref(),
                sys.uuid.as_deref()
            ),
            (
                Some("Dell Inc."),
                Some("7XK2P93"),
                Some("4c4c4544-0058-4b10-8032-b7c04f503933")
            )
        );
        assert_eq!(sys.virtualization, None);
        let os = s.os.data().unwrap();
        assert_eq!(
            (os.family.as_str(), os.id.as_deref()),
            ("windows", Some("windows"))
        );
        assert_eq!(os.name.as_deref(), Some("Microsoft Windows 11 Pro"));
        let fs = &s.filesystems.data().unwrap()[0];
        assert_eq!(
            (fs.mount_point.as_str(), fs.fs_type.as_str()),
            ("C:", "NTFS")
        );
        let ff = &s.software.data().unwrap()[0];
        assert_eq!(ff.source, "windows-registry");
        assert_eq!(
            ff.install_date.map(|d| d.date_naive().to_string()),
            Some("2024-07-15".into())
        );
        let nic = &s.network_interfaces.data().unwrap()[0];
        assert_eq!(
            (nic.kind.as_str(), nic.mac.as_deref(), nic.speed_mbps),
            ("wireless", Some("a4:b1:c1:0d:2e:3f"), Some(866))
        );
        assert_eq!(nic.addresses[0].prefix, 22);
    }

    /// Public sample inventories of glpi-project/inventory_format (MIT): a Windows 8.1
    /// laptop and an iMac from FusionInventory agents, a Fedora laptop as the GLPI agent's
    /// JSON.
    #[test]
    fn public_sample_inventories_map_their_platforms() {
        let win = parse(
            include_bytes!("../../tests/fixtures/foreign/fusioninventory-windows81.xml"),
            Format::FusionInventory,
        )
        .unwrap();
        let s = &win.snapshot;
        let os = s.os.data().unwrap();
        assert_eq!(
            (os.family.as_str(), os.id.as_deref()),
            ("windows", Some("windows"))
        );
        assert_eq!(
            os.version.as_deref(),
            Some("Microsoft Windows 8.1 Professionnel")
        );
        let sys = s.system.data().unwrap();
        assert_eq!(
            (
                sys.vendor.as_deref(),
                sys.model.as_deref(),
                sys.serial.as_deref()
            ),
            (
                Some("Hewlett-Packard"),
                Some("HP EliteBook 2540p"),
                Some("CZC0479792")
            )
        );
        let sw = s.software.data().unwrap();
        assert_eq!(sw.len(), 8);
        assert!(sw.iter().all(|p| p.source == "windows-registry"));
        let cc = sw.iter().find(|p| p.name == "CCleaner").unwrap();
        assert_eq!(
            cc.install_date.map(|d| d.date_naive().to_string()),
            Some("2015-09-11".into()),
            "day first"
        );
        assert!(s
            .filesystems
            .data()
            .unwrap()
            .iter()
            .any(|f| f.mount_point == "C:" && f.fs_type == "NTFS"));

        let mac = parse(
            include_bytes!("../../tests/fixtures/foreign/fusioninventory-macosx.xml"),
            Format::FusionInventory,
        )
        .unwrap();
        let s = &mac.snapshot;
        assert_eq!(s.os.data().unwrap().family, "macos");
        let sw = s.software.data().unwrap();
        assert_eq!(sw.len(), 40);
        assert!(
            sw.iter().all(|p| p.source == "macos-app"),
            "no FROM: the platform's own"
        );
        assert!(sw.iter().any(|p| p.install_date.is_some()));
        assert_eq!(
            s.system.data().unwrap().serial.as_deref(),
            Some("W87051UGVUV")
        );

        let glpi = parse(
            include_bytes!("../../tests/fixtures/foreign/glpi-computer_1.json"),
            Format::Glpi,
        )
        .unwrap();
        assert_eq!(glpi.device_id, "glpixps-2018-07-09-09-07-13");
        let s = &glpi.snapshot;
        let os = s.os.data().unwrap();
        assert_eq!(
            (
                os.hostname.as_str(),
                os.id.as_deref(),
                os.kernel_version.as_deref()
            ),
            ("glpixps", Some("fedora"), Some("5.6.15-200.fc31.x86_64"))
        );
        assert_eq!(s.system.data().unwrap().serial.as_deref(), Some("640HP72"));
        let sw = s.software.data().unwrap();
        assert_eq!(sw.len(), 6);
        assert!(sw.iter().all(|p| p.source == "rpm"));
        assert_eq!(
            sw[0].install_date.map(|d| d.date_naive().to_string()),
            Some("2019-12-19".into())
        );
        let nics = s.network_interfaces.data().unwrap();
        let wifi = nics.iter().find(|n| n.name == "wlp58s0").unwrap();
        assert_eq!(
            (wifi.kind.as_str(), wifi.mac.as_deref(), wifi.physical),
            ("wireless", Some("44:85:00:2b:90:bc"), true)
        );
        assert_eq!(wifi.addresses.len(), 2);
        let bridge = nics.iter().find(|n| n.name == "virbr0").unwrap();
        assert!(!bridge.physical);
        assert_eq!(
            s.disks.data().unwrap()[0].serial.as_deref(),
            Some("S29NNXAH146409")
        );
    }

    #[test]
    fn a_glpi_document_that_is_not_an_inventory_is_refused_by_name() {
        let refuse = |json: &str| {
            parse(json.as_bytes(), Format::Glpi)
                .unwrap_err()
                .to_string()
        };
        assert!(refuse("[1, 2]").contains("not an object"));
        assert!(refuse("{").contains("not JSON"));
        assert!(refuse(r#"{"deviceid": "x", "action": "contact"}"#).contains("not INVENTORY"));
        let deep = format!(
            "{{\"content\": {}1{}}}",
            "{\"a\": ".repeat(40),
            "}".repeat(40)
        );
        assert!(refuse(&deep).contains("nest deeper"), "{}", refuse(&deep));
    }

    #[test]
    fn what_is_not_an_inventory_is_refused_by_name() {
        let refuse = |xml: &str| parse(xml.as_bytes(), Format::Ocs).unwrap_err().to_string();
        assert!(refuse("<html/>").contains("the root element is <html>"));
        let prolog = "<REQUEST><DEVICEID>x</DEVICEID><QUERY>PROLOG</QUERY></REQUEST>";
        assert!(refuse(prolog).contains("QUERY is Some(\"PROLOG\"), not INVENTORY"));
        assert!(
            refuse("<REQUEST><QUERY>INVENTORY</QUERY><DEVICEID>x</DEVICEID></REQUEST>")
                .contains("no CONTENT")
        );
        let laughs = "<!DOCTYPE r [<!ENTITY a \"aaaa\">]><REQUEST>&a;</REQUEST>";
        assert!(refuse(laughs).contains("document type declaration"));
        // A 100 MB body is refused before it is read.
        let huge = vec![b' '; 100 * 1024 * 1024];
        assert!(parse(&huge, Format::Ocs)
            .unwrap_err()
            .to_string()
            .contains("larger than"));
        let deep = format!(
            "<REQUEST>{}{}</REQUEST>",
            "<a>".repeat(10_000),
            "</a>".repeat(10_000)
        );
        assert!(refuse(&deep).contains("nest deeper"));
    }
}
