//! Probes: each is acquisition (read a file, run a command, behind `cfg(target_os)`) plus a
//! pure parser from text to typed records (platform-neutral, tested on fixtures).
//!
//! Architecture Invariant: a probe never panics and never takes the inventory down with it.
//! It returns its section as collected, failed (with the reason) or unsupported; every
//! external command runs under a timeout.

pub mod connections;
pub mod hardware;
pub mod macos;
pub mod network;
pub mod os;
pub mod ports;
pub mod services;
pub mod software;
pub mod system;
pub mod users;
pub mod windows;

mod exec;

use std::str::FromStr;

use census_shared::{Section, Snapshot};
use chrono::Utc;

pub use exec::{run_command, CommandError};

/// The inventory sections an operator can select with `--sections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SectionName {
    System,
    Os,
    Cpus,
    Memory,
    Disks,
    Filesystems,
    Network,
    Software,
    Services,
    Users,
    Ports,
    Connections,
}

impl SectionName {
    pub const ALL: [SectionName; 12] = [
        SectionName::System,
        SectionName::Os,
        SectionName::Cpus,
        SectionName::Memory,
        SectionName::Disks,
        SectionName::Filesystems,
        SectionName::Network,
        SectionName::Software,
        SectionName::Services,
        SectionName::Users,
        SectionName::Ports,
        SectionName::Connections,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            SectionName::System => "system",
            SectionName::Os => "os",
            SectionName::Cpus => "cpus",
            SectionName::Memory => "memory",
            SectionName::Disks => "disks",
            SectionName::Filesystems => "filesystems",
            SectionName::Network => "network",
            SectionName::Software => "software",
            SectionName::Services => "services",
            SectionName::Users => "users",
            SectionName::Ports => "ports",
            SectionName::Connections => "connections",
        }
    }
}

impl FromStr for SectionName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        let alias = match wanted.as_str() {
            "network_interfaces" | "nics" => "network",
            "listening_ports" => "ports",
            "flows" => "connections",
            "packages" => "software",
            other => other,
        };
        SectionName::ALL
            .into_iter()
            .find(|n| n.as_str() == alias)
            .ok_or_else(|| {
                let names: Vec<_> = SectionName::ALL.iter().map(|n| n.as_str()).collect();
                format!("unknown section '{s}'; known: {}", names.join(", "))
            })
    }
}

type Probe<T> = fn() -> Result<Section<T>, ProbeError>;

/// Runs one probe if it was requested; a panic inside it becomes a failed section.
fn run<T>(wanted: bool, probe: Probe<T>) -> Section<T> {
    if !wanted {
        return Section::unsupported("not requested");
    }
    std::panic::catch_unwind(probe)
        .unwrap_or_else(|_| Ok(Section::failed("probe panicked")))
        .unwrap_or_else(|e| Section::failed(e.to_string()))
}

/// Collects the chosen sections of this machine. The slow probes (software, sockets,
/// services, network) run on their own threads while the file-reading ones run here.
/// Sections not chosen stay `unsupported` with the reason "not requested". Connections are
/// one sample taken now; the daemon's [`collect_with`] drains what it sampled since the
/// last inventory.
pub fn collect(sections: &[SectionName]) -> Snapshot {
    collect_with(sections, &connections::Sampler::default())
}

/// [`collect`], with the connections sampled into `sampler` since the last inventory.
pub fn collect_with(sections: &[SectionName], sampler: &connections::Sampler) -> Snapshot {
    let wants = |n: SectionName| sections.contains(&n);
    let mut snap = Snapshot::empty("", 0, Utc::now());
    snap.agent_version = env!("CARGO_PKG_VERSION").to_string();

    std::thread::scope(|scope| {
        let software = scope.spawn(|| run(wants(SectionName::Software), software::collect));
        let ports = scope.spawn(|| run(wants(SectionName::Ports), ports::collect));
        let services = scope.spawn(|| run(wants(SectionName::Services), services::collect));
        let network = scope.spawn(|| run(wants(SectionName::Network), network::collect));

        snap.system = run(wants(SectionName::System), system::collect);
        snap.os = run(wants(SectionName::Os), os::collect);
        snap.cpus = run(wants(SectionName::Cpus), hardware::collect_cpus);
        snap.memory = run(wants(SectionName::Memory), hardware::collect_memory);
        snap.disks = run(wants(SectionName::Disks), hardware::collect_disks);
        snap.filesystems = run(
            wants(SectionName::Filesystems),
            hardware::collect_filesystems,
        );
        snap.users = run(wants(SectionName::Users), users::collect);
        // Not a requested section leaves it out of the bytes entirely (see the schema).
        if wants(SectionName::Connections) {
            snap.connections = std::panic::catch_unwind(|| sampler.take())
                .unwrap_or_else(|_| Section::failed("probe panicked"));
        }

        snap.software = software
            .join()
            .unwrap_or_else(|_| Section::failed("probe thread panicked"));
        snap.listening_ports = ports
            .join()
            .unwrap_or_else(|_| Section::failed("probe thread panicked"));
        snap.services = services
            .join()
            .unwrap_or_else(|_| Section::failed("probe thread panicked"));
        snap.network_interfaces = network
            .join()
            .unwrap_or_else(|_| Section::failed("probe thread panicked"));
    });
    snap
}

/// Errors a probe's acquisition can hit.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("{0}")]
    Parse(String),
}

/// Reads a text file, naming it in the error.
pub fn read_text(path: impl AsRef<std::path::Path>) -> Result<String, ProbeError> {
    let path = path.as_ref();
    std::fs::read_to_string(path).map_err(|source| ProbeError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Reads a one-line sysfs-style attribute: trimmed, None when missing, unreadable or empty.
pub fn read_attr(path: impl AsRef<std::path::Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
