//! Every bound the protocol enforces, in one place, and the check that names the field
//! that broke one.
//!
//! The collector refuses a body over [`MAX_BODY_BYTES`] before reading it all, a body that
//! decompresses past [`MAX_DECOMPRESSED_BYTES`] (zip bomb), and a decoded snapshot whose lists
//! or strings exceed the bounds below. Agents apply the same check before sending so that a
//! machine with something absurd on it gets a local error, not a refusal loop.

use chrono::{DateTime, Utc};

use crate::schema::*;

/// Largest request body on the wire (compressed), in bytes.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Largest decompressed snapshot JSON, in bytes.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;
/// zstd window the decoder accepts (2^23 = 8 MiB), bounding decoder memory.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 23;
/// Longest string anywhere in a snapshot, in bytes.
pub const MAX_STRING_BYTES: usize = 4096;
/// Longest agent id.
pub const MAX_AGENT_ID_BYTES: usize = 128;
/// Largest heartbeat body (content hash and send time).
pub const MAX_HEARTBEAT_BYTES: usize = 4096;
/// Largest enrollment request body.
pub const MAX_ENROLL_BODY_BYTES: usize = 64 * 1024;

pub const MAX_CPUS: usize = 1024;
pub const MAX_DISKS: usize = 4096;
pub const MAX_FILESYSTEMS: usize = 4096;
pub const MAX_INTERFACES: usize = 4096;
pub const MAX_ADDRESSES_PER_INTERFACE: usize = 1024;
pub const MAX_SOFTWARE: usize = 100_000;
pub const MAX_SERVICES: usize = 20_000;
pub const MAX_USERS: usize = 100_000;
pub const MAX_LISTENING_PORTS: usize = 65_536;
/// Flows one inventory reports: what the agent's aggregation holds between two inventories.
pub const MAX_CONNECTIONS: usize = 4_096;
/// Short lists inside items (id_like, restricted).
pub const MAX_SMALL_LIST: usize = 64;

/// A bound broken at a named field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct LimitError {
    /// JSON path such as `software.data[12].name`.
    pub field: String,
    pub problem: String,
}

/// A lazily rendered JSON path: built on the stack while walking, rendered only on error.
#[derive(Clone, Copy)]
pub enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'static str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    pub fn render(&self) -> String {
        match self {
            Path::Root => String::new(),
            Path::Field(parent, name) => {
                let p = parent.render();
                if p.is_empty() {
                    (*name).to_string()
                } else {
                    format!("{p}.{name}")
                }
            }
            Path::Index(parent, i) => format!("{}[{i}]", parent.render()),
        }
    }
    fn error(&self, problem: String) -> LimitError {
        LimitError {
            field: self.render(),
            problem,
        }
    }
}

/// Types whose strings and lists are bounded.
pub trait Bounded {
    /// Most items allowed when this type is the element of a list.
    const MAX_ITEMS: usize = MAX_SMALL_LIST;
    fn check(&self, path: Path<'_>) -> Result<(), LimitError>;
}

impl Bounded for String {
    fn check(&self, path: Path<'_>) -> Result<(), LimitError> {
        if self.len() > MAX_STRING_BYTES {
            return Err(path.error(format!(
                "string of {} bytes exceeds the limit of {MAX_STRING_BYTES}",
                self.len()
            )));
        }
        if self.contains('\0') {
            return Err(path.error("string contains a NUL character".into()));
        }
        Ok(())
    }
}

impl<T: Bounded> Bounded for Option<T> {
    fn check(&self, path: Path<'_>) -> Result<(), LimitError> {
        match self {
            Some(v) => v.check(path),
            None => Ok(()),
        }
    }
}

impl<T: Bounded> Bounded for Vec<T> {
    fn check(&self, path: Path<'_>) -> Result<(), LimitError> {
        if self.len() > T::MAX_ITEMS {
            return Err(path.error(format!(
                "list of {} items exceeds the limit of {}",
                self.len(),
                T::MAX_ITEMS
            )));
        }
        for (i, item) in self.iter().enumerate() {
            item.check(Path::Index(&path, i))?;
        }
        Ok(())
    }
}

impl<T: Bounded> Bounded for Section<T> {
    fn check(&self, path: Path<'_>) -> Result<(), LimitError> {
        if let Some(problem) = self.shape_error() {
            return Err(path.error(problem.into()));
        }
        self.reason.check(Path::Field(&path, "reason"))?;
        self.data.check(Path::Field(&path, "data"))
    }
}

macro_rules! unbounded {
    ($($ty:ty),*) => {$(
        impl Bounded for $ty {
            fn check(&self, _: Path<'_>) -> Result<(), LimitError> { Ok(()) }
        }
    )*};
}
unbounded!(
    u8,
    u16,
    u32,
    u64,
    bool,
    DateTime<Utc>,
    SectionStatus,
    FlowDirection
);

macro_rules! bounded_struct {
    ($ty:ty, max_items = $max:expr, { $($field:ident),* $(,)? }) => {
        impl Bounded for $ty {
            const MAX_ITEMS: usize = $max;
            fn check(&self, path: Path<'_>) -> Result<(), LimitError> {
                $( self.$field.check(Path::Field(&path, stringify!($field)))?; )*
                Ok(())
            }
        }
    };
}

pub(crate) use bounded_struct;

macro_rules! bounded_tuple {
    ($(($($ty:ident $index:tt),+)),+) => {$(
        impl<$($ty: Bounded),+> Bounded for ($($ty,)+) {
            fn check(&self, path: Path<'_>) -> Result<(), LimitError> {
                $( self.$index.check(Path::Field(&path, stringify!($index)))?; )+
                Ok(())
            }
        }
    )+};
}
bounded_tuple!((A 0, B 1), (A 0, B 1, C 2));

bounded_struct!(System, max_items = 1, {
    vendor, model, family, serial, uuid, sku, chassis_type, board_vendor, board_model,
    board_serial, bios_vendor, bios_version, bios_date, machine_id, virtualization, container,
    restricted,
});
bounded_struct!(Os, max_items = 1, {
    family, name, id, id_like, version, version_id, codename, build, kernel, kernel_version,
    arch, hostname, fqdn, timezone, boot_time, uptime_seconds,
});
bounded_struct!(Cpu, max_items = MAX_CPUS, {
    socket, vendor, model, cores, threads, max_mhz, flags_virtualization,
});
bounded_struct!(Memory, max_items = 1, {
    total_bytes, available_bytes, swap_total_bytes, swap_free_bytes,
});
bounded_struct!(Disk, max_items = MAX_DISKS, {
    name, model, vendor, serial, wwn, size_bytes, rotational, removable, transport,
});
bounded_struct!(Filesystem, max_items = MAX_FILESYSTEMS, {
    mount_point, device, fs_type, total_bytes, free_bytes, read_only,
});
bounded_struct!(NetworkInterface, max_items = MAX_INTERFACES, {
    name, mac, physical, kind, driver, mtu, up, speed_mbps, addresses, default_route, gateway,
});
bounded_struct!(IpAddress, max_items = MAX_ADDRESSES_PER_INTERFACE, {
    address, prefix, family, scope,
});
bounded_struct!(Software, max_items = MAX_SOFTWARE, {
    name, version, arch, publisher, source, source_package, installed_size_bytes, install_date,
});
bounded_struct!(Service, max_items = MAX_SERVICES, {
    name, manager, state, enabled, description,
});
bounded_struct!(User, max_items = MAX_USERS, {
    name, uid, gid, full_name, home, shell, login_shell,
});
bounded_struct!(ListeningPort, max_items = MAX_LISTENING_PORTS, {
    protocol, address, port, process, pid, user,
});
bounded_struct!(Connection, max_items = MAX_CONNECTIONS, {
    direction, protocol, port, remote_address, process, samples, peak_connections, first_seen,
    last_seen,
});
bounded_struct!(Snapshot, max_items = 1, {
    schema_version, agent_id, seq, collected_at, agent_version, system, os, cpus, memory,
    disks, filesystems, network_interfaces, software, services, users, listening_ports,
    connections,
});

impl Snapshot {
    /// Checks every list length, string length and section shape; names the first
    /// offending field.
    pub fn check_limits(&self) -> Result<(), LimitError> {
        if self.agent_id.len() > MAX_AGENT_ID_BYTES {
            return Err(Path::Field(&Path::Root, "agent_id")
                .error(format!("agent id longer than {MAX_AGENT_ID_BYTES} bytes")));
        }
        self.check(Path::Root)
    }
}
