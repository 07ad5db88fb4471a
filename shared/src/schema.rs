//! Snapshot schema v1: what an agent reports about one machine.
//!
//! Every section carries its own status so that a probe that failed or does not exist on a
//! platform is never read as "everything in it was removed". Types are strict
//! (`deny_unknown_fields`) and avoid `#[serde(flatten)]` so that duplicate JSON keys are
//! refused by serde's derived visitors.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The schema version this crate reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Whether a section's data was collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum SectionStatus {
    Collected,
    Failed,
    Unsupported,
}

/// One inventory section: `{"status":"collected","data":...}`,
/// `{"status":"failed","reason":"..."}` or `{"status":"unsupported","reason":"..."}`.
///
/// Kept as a flat struct (not an internally tagged enum) so decoding streams without
/// buffering and error paths name the exact field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section<T> {
    pub status: SectionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
}

impl<T> Section<T> {
    pub fn collected(data: T) -> Self {
        Section {
            status: SectionStatus::Collected,
            reason: None,
            data: Some(data),
        }
    }
    pub fn failed(reason: impl Into<String>) -> Self {
        Section {
            status: SectionStatus::Failed,
            reason: Some(reason.into()),
            data: None,
        }
    }
    pub fn unsupported(reason: impl Into<String>) -> Self {
        Section {
            status: SectionStatus::Unsupported,
            reason: Some(reason.into()),
            data: None,
        }
    }
    /// The data, only when the section was collected.
    pub fn data(&self) -> Option<&T> {
        match self.status {
            SectionStatus::Collected => self.data.as_ref(),
            _ => None,
        }
    }
    pub fn data_mut(&mut self) -> Option<&mut T> {
        match self.status {
            SectionStatus::Collected => self.data.as_mut(),
            _ => None,
        }
    }
    pub fn is_collected(&self) -> bool {
        self.status == SectionStatus::Collected
    }
    /// A section is well formed when collected sections carry data and the others a reason.
    pub fn shape_error(&self) -> Option<&'static str> {
        match (self.status, &self.data, &self.reason) {
            (SectionStatus::Collected, None, _) => Some("collected section without data"),
            (SectionStatus::Collected, Some(_), Some(_)) => Some("collected section with a reason"),
            (SectionStatus::Failed | SectionStatus::Unsupported, Some(_), _) => {
                Some("failed or unsupported section carrying data")
            }
            (SectionStatus::Failed | SectionStatus::Unsupported, None, None) => {
                Some("failed or unsupported section without a reason")
            }
            _ => None,
        }
    }
}

const NOT_COLLECTED_BY_THIS_AGENT: &str = "not collected by this agent";

impl<T> Default for Section<T> {
    fn default() -> Self {
        Section::unsupported(NOT_COLLECTED_BY_THIS_AGENT)
    }
}

impl<T> Section<T> {
    /// Whether this is the section an agent that does not know it would send.
    pub fn is_default(&self) -> bool {
        self.status == SectionStatus::Unsupported
            && self.data.is_none()
            && self.reason.as_deref() == Some(NOT_COLLECTED_BY_THIS_AGENT)
    }
}

/// A full inventory of one machine at one time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub schema_version: u32,
    pub agent_id: String,
    pub seq: u64,
    pub collected_at: DateTime<Utc>,
    pub agent_version: String,
    pub system: Section<System>,
    pub os: Section<Os>,
    pub cpus: Section<Vec<Cpu>>,
    pub memory: Section<Memory>,
    pub disks: Section<Vec<Disk>>,
    pub filesystems: Section<Vec<Filesystem>>,
    pub network_interfaces: Section<Vec<NetworkInterface>>,
    pub software: Section<Vec<Software>>,
    pub services: Section<Vec<Service>>,
    pub users: Section<Vec<User>>,
    pub listening_ports: Section<Vec<ListeningPort>>,
    /// Network flows seen between two inventories, for the dependency map. Volatile: they
    /// update the map and never raise drift. Left out of the bytes while an agent does not
    /// collect them, so such an agent's snapshots (and their content hash) are what they
    /// were before the section existed.
    #[serde(default, skip_serializing_if = "Section::is_default")]
    pub connections: Section<Vec<Connection>>,
}

/// Hardware identity of the machine (DMI / SMBIOS or the platform's equivalent).
/// Placeholder values ("To Be Filled By O.E.M.", all-zero UUIDs, ...) are already `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct System {
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub family: Option<String>,
    pub serial: Option<String>,
    pub uuid: Option<String>,
    pub sku: Option<String>,
    pub chassis_type: Option<String>,
    pub board_vendor: Option<String>,
    pub board_model: Option<String>,
    pub board_serial: Option<String>,
    pub bios_vendor: Option<String>,
    pub bios_version: Option<String>,
    pub bios_date: Option<String>,
    /// /etc/machine-id, the IOPlatformUUID on macOS, MachineGuid on Windows.
    pub machine_id: Option<String>,
    /// Hypervisor, as `systemd-detect-virt --vm` names it ("kvm", "vmware", ...); None on metal.
    pub virtualization: Option<String>,
    /// Container runtime, as `systemd-detect-virt --container` names it ("docker", ...).
    pub container: Option<String>,
    /// Fields that exist but could not be read with the agent's privileges (e.g. "serial").
    #[serde(default)]
    pub restricted: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Os {
    /// "linux", "macos", "windows", ...
    pub family: String,
    /// Distribution or product name: "Debian GNU/Linux", "macOS", "Windows 11 Pro".
    pub name: Option<String>,
    /// os-release ID ("debian", "ubuntu", "rhel").
    pub id: Option<String>,
    pub id_like: Vec<String>,
    pub version: Option<String>,
    pub version_id: Option<String>,
    pub codename: Option<String>,
    pub build: Option<String>,
    pub kernel: Option<String>,
    pub kernel_version: Option<String>,
    pub arch: String,
    pub hostname: String,
    pub fqdn: Option<String>,
    pub timezone: Option<String>,
    /// Volatile: changes on every reboot.
    pub boot_time: Option<DateTime<Utc>>,
    /// Volatile.
    pub uptime_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cpu {
    /// Socket / physical package index.
    pub socket: u32,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub cores: u32,
    pub threads: u32,
    pub max_mhz: Option<u64>,
    pub flags_virtualization: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    pub total_bytes: u64,
    /// Volatile.
    pub available_bytes: Option<u64>,
    pub swap_total_bytes: u64,
    /// Volatile.
    pub swap_free_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    pub name: String,
    pub model: Option<String>,
    pub vendor: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    pub size_bytes: u64,
    pub rotational: Option<bool>,
    pub removable: bool,
    /// "sata", "nvme", "virtio", "usb", "scsi", ...
    pub transport: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filesystem {
    pub mount_point: String,
    pub device: String,
    pub fs_type: String,
    pub total_bytes: u64,
    /// Volatile.
    pub free_bytes: Option<u64>,
    pub read_only: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkInterface {
    pub name: String,
    /// Lower-case colon-separated MAC; None for interfaces without one (loopback, tun).
    pub mac: Option<String>,
    /// Backed by a device on a bus (PCI, USB, virtio); false for bridges, veth, bonds, tun, lo.
    pub physical: bool,
    /// "ether", "loopback", "bridge", "veth", "bond", "vlan", "tun", "wireless", ...
    pub kind: String,
    pub driver: Option<String>,
    pub mtu: Option<u32>,
    pub up: bool,
    pub speed_mbps: Option<u64>,
    pub addresses: Vec<IpAddress>,
    /// True when a default route leaves through this interface.
    pub default_route: bool,
    pub gateway: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub struct IpAddress {
    pub address: String,
    pub prefix: u8,
    /// "ipv4" or "ipv6".
    pub family: String,
    /// "global", "link", "host", "site".
    pub scope: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Software {
    pub name: String,
    pub version: String,
    pub arch: Option<String>,
    pub publisher: Option<String>,
    /// The package manager or registry that reported it: "dpkg", "rpm", "apk", "pacman",
    /// "snap", "flatpak", "windows-registry", "macos-app", "pkgutil".
    pub source: String,
    /// The source package, when it differs from `name`: dpkg's `Source:` as dpkg writes
    /// it (`name`, or `name (version)` when the source version differs from `version`, as
    /// for binNMUs and packages with their own epoch), the rpm's SRPM name, apk's origin.
    /// [`source_parts`] splits it.
    pub source_package: Option<String>,
    pub installed_size_bytes: Option<u64>,
    /// From the package manager's own data; None when it does not record one.
    pub install_date: Option<DateTime<Utc>>,
}

/// A [`Software::source_package`] as (source name, source version if it gives one):
/// `util-linux (2.38.1-5+deb12u3)` -> (`util-linux`, `2.38.1-5+deb12u3`).
pub fn source_parts(source_package: &str) -> (&str, Option<&str>) {
    let text = source_package.trim();
    if let Some(open) = text.find(" (") {
        if let Some(version) = text[open + 2..].strip_suffix(')') {
            let version = version.trim();
            if !version.is_empty() && !version.contains(['(', ')', ' ']) {
                return (text[..open].trim_end(), Some(version));
            }
        }
    }
    (text, None)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    /// "systemd", "launchd", "windows".
    pub manager: String,
    /// Runtime state: "active", "inactive", "failed", "running", "stopped".
    pub state: String,
    /// Start-up policy: "enabled", "disabled", "static", "masked", "auto", "manual".
    pub enabled: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub full_name: Option<String>,
    pub home: Option<String>,
    pub shell: Option<String>,
    /// The shell accepts interactive logins (not nologin/false).
    pub login_shell: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListeningPort {
    /// "tcp" or "udp".
    pub protocol: String,
    pub address: String,
    pub port: u16,
    pub process: Option<String>,
    /// Volatile: changes when the process restarts.
    pub pid: Option<u32>,
    pub user: Option<String>,
}

/// Which side of a flow this host is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowDirection {
    /// A peer connected to one of this host's listeners.
    Inbound,
    /// This host connected to a peer's service.
    Outbound,
}

/// One flow: a service between this host and one peer, through one process, aggregated
/// over the samples taken since the previous inventory. The client's ephemeral port is not
/// part of it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    pub direction: FlowDirection,
    /// "tcp" or "udp".
    pub protocol: String,
    /// The service port: this host's listener for inbound flows, the peer's for outbound.
    pub port: u16,
    pub remote_address: String,
    /// The owning process's full name, when the agent could see it.
    pub process: Option<String>,
    /// Volatile: samples that saw the flow.
    pub samples: u32,
    /// Volatile: the most connections of the flow one sample saw.
    pub peak_connections: u32,
    /// Volatile: the first and last sample that saw it.
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

impl Snapshot {
    /// An empty snapshot with every section unsupported; probes fill it in.
    pub fn empty(agent_id: impl Into<String>, seq: u64, collected_at: DateTime<Utc>) -> Self {
        Snapshot {
            schema_version: SCHEMA_VERSION,
            agent_id: agent_id.into(),
            seq,
            collected_at,
            agent_version: String::new(),
            system: Section::default(),
            os: Section::default(),
            cpus: Section::default(),
            memory: Section::default(),
            disks: Section::default(),
            filesystems: Section::default(),
            network_interfaces: Section::default(),
            software: Section::default(),
            services: Section::default(),
            users: Section::default(),
            listening_ports: Section::default(),
            connections: Section::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::source_parts;

    #[test]
    fn source_packages_split_into_name_and_version_as_dpkg_writes_them() {
        assert_eq!(
            source_parts("util-linux (2.38.1-5+deb12u3)"),
            ("util-linux", Some("2.38.1-5+deb12u3"))
        );
        assert_eq!(
            source_parts("lvm2 (2.03.16-2)"),
            ("lvm2", Some("2.03.16-2"))
        );
        assert_eq!(source_parts("glibc"), ("glibc", None));
        assert_eq!(
            source_parts("openssl-3.0.7-25.el9.src.rpm"),
            ("openssl-3.0.7-25.el9.src.rpm", None)
        );
        // Not dpkg's form: kept whole.
        assert_eq!(source_parts("odd ()"), ("odd ()", None));
        assert_eq!(source_parts("odd (a b)"), ("odd (a b)", None));
        assert_eq!(source_parts("odd (1"), ("odd (1", None));
    }
}
