//! Every attribute a CI class has, with its type and whether it is volatile: the one list
//! that filters, noise rules, the UI and the API resolve attribute paths against.
//!
//! Architecture Invariant: reconciliation writes exactly these paths (the test
//! `every_attribute_reconcile_writes_is_registered` builds a fully populated snapshot and
//! compares), so a renamed attribute fails a test instead of silently emptying a filter.

use super::CiClass;

/// What kind of value an attribute holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrKind {
    Text,
    Number,
    Bool,
    /// Text or date-time (RFC 3339).
    Time,
    /// A list of texts (addresses, MACs) or of records (mounts, users, ports).
    List,
    /// A map (free bytes per mount).
    Map,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttrDef {
    pub path: &'static str,
    pub kind: AttrKind,
    /// Updated in place, never versioned, never drift.
    pub volatile: bool,
}

const fn conf(path: &'static str, kind: AttrKind) -> AttrDef {
    AttrDef {
        path,
        kind,
        volatile: false,
    }
}

const fn vol(path: &'static str, kind: AttrKind) -> AttrDef {
    AttrDef {
        path,
        kind,
        volatile: true,
    }
}

use AttrKind::*;

const COMPUTER: &[AttrDef] = &[
    conf("system.vendor", Text),
    conf("system.model", Text),
    conf("system.family", Text),
    conf("system.serial", Text),
    conf("system.uuid", Text),
    conf("system.sku", Text),
    conf("system.chassis_type", Text),
    conf("system.board_vendor", Text),
    conf("system.board_model", Text),
    conf("system.board_serial", Text),
    conf("system.bios_vendor", Text),
    conf("system.bios_version", Text),
    conf("system.bios_date", Text),
    conf("system.machine_id", Text),
    conf("system.virtualization", Text),
    conf("system.container", Text),
    conf("os.hostname", Text),
    conf("os.fqdn", Text),
    conf("os.family", Text),
    conf("os.kernel", Text),
    conf("os.kernel_version", Text),
    conf("os.arch", Text),
    conf("os.timezone", Text),
    conf("os.name", Text),
    conf("os.version", Text),
    conf("os.version_id", Text),
    conf("os.build", Text),
    conf("cpu.model", Text),
    conf("cpu.vendor", Text),
    conf("cpu.sockets", Number),
    conf("cpu.cores", Number),
    conf("cpu.threads", Number),
    conf("memory.total_bytes", Number),
    conf("memory.swap_total_bytes", Number),
    conf("filesystems.mounts", List),
    conf("users.local", List),
    conf("ports.listening", List),
    conf("network.addresses", List),
    conf("network.physical_macs", List),
    conf("agent.version", Text),
    // The asset register (people's data: `model::register`), never written by ingest.
    conf("register.asset_tag", Text),
    conf("register.owner", Text),
    conf("register.assigned_user", Text),
    conf("register.location_site", Text),
    conf("register.location_building", Text),
    conf("register.location_room", Text),
    conf("register.department", Text),
    conf("register.cost_centre", Text),
    conf("register.supplier", Text),
    conf("register.order_number", Text),
    conf("register.invoice_number", Text),
    // Dates as YYYY-MM-DD text: the filter's ordering compares them correctly.
    conf("register.purchase_date", Text),
    conf("register.purchase_cost", Number),
    conf("register.warranty_end", Text),
    conf("register.lifecycle_status", Text),
    conf("register.notes", Text),
    conf("register.serial_number", Text),
    conf("register.manufacturer", Text),
    conf("register.model", Text),
    conf("register.provenance", Map),
    conf("register.reconciliation", Map),
    vol("os.boot_time", Time),
    vol("os.uptime_seconds", Number),
    vol("memory.available_bytes", Number),
    vol("filesystems.free_bytes", Map),
    vol("collected_at", Time),
    vol("agent.id", Text),
];

const OPERATING_SYSTEM: &[AttrDef] = &[
    conf("family", Text),
    conf("name", Text),
    conf("id", Text),
    conf("version", Text),
    conf("version_id", Text),
    conf("codename", Text),
    conf("build", Text),
];

const SOFTWARE_PRODUCT: &[AttrDef] = &[conf("name", Text)];

const DISK: &[AttrDef] = &[
    conf("device_name", Text),
    conf("model", Text),
    conf("vendor", Text),
    conf("serial", Text),
    conf("wwn", Text),
    conf("size_bytes", Number),
    conf("rotational", Bool),
    conf("removable", Bool),
    conf("transport", Text),
];

const NETWORK_INTERFACE: &[AttrDef] = &[
    conf("name", Text),
    conf("mac", Text),
    conf("kind", Text),
    conf("physical", Bool),
    conf("driver", Text),
    conf("mtu", Number),
    conf("speed_mbps", Number),
    conf("default_route", Bool),
    conf("gateway", Text),
    vol("up", Bool),
    vol("link_local", List),
];

const IP_ADDRESS: &[AttrDef] = &[
    conf("address", Text),
    conf("prefix", Number),
    conf("family", Text),
    conf("interface", Text),
];

const SUBNET: &[AttrDef] = &[conf("cidr", Text), conf("family", Text)];

const SERVICE: &[AttrDef] = &[
    conf("name", Text),
    conf("manager", Text),
    conf("enabled", Text),
    conf("description", Text),
    vol("state", Text),
];

/// The attributes of a class.
pub fn of(class: CiClass) -> &'static [AttrDef] {
    match class {
        CiClass::Computer => COMPUTER,
        CiClass::OperatingSystem => OPERATING_SYSTEM,
        CiClass::SoftwareProduct => SOFTWARE_PRODUCT,
        CiClass::Disk => DISK,
        CiClass::NetworkInterface => NETWORK_INTERFACE,
        CiClass::IpAddress => IP_ADDRESS,
        CiClass::Subnet => SUBNET,
        CiClass::Service => SERVICE,
    }
}

/// What any custom register field (`register.u_...`) of a computer resolves to: its type
/// lives in the register settings, which filters compare as stored values anyway.
const CUSTOM_REGISTER_FIELD: AttrDef = conf("register.u_*", Text);

pub fn find(class: CiClass, path: &str) -> Option<&'static AttrDef> {
    of(class).iter().find(|a| a.path == path).or_else(|| {
        let name = path.strip_prefix(super::register::PREFIX)?;
        let custom = class == CiClass::Computer
            && name.len() > super::register::CUSTOM_PREFIX.len()
            && name.starts_with(super::register::CUSTOM_PREFIX)
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        custom.then_some(&CUSTOM_REGISTER_FIELD)
    })
}

/// The registered path closest to a misspelt one (edit distance at most 3), for "did you
/// mean".
pub fn closest(class: CiClass, path: &str) -> Option<&'static str> {
    of(class)
        .iter()
        .map(|a| (distance(a.path, path), a.path))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, p)| p)
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_unique_per_class() {
        for class in CiClass::ALL {
            let mut paths: Vec<&str> = of(class).iter().map(|a| a.path).collect();
            paths.sort();
            let n = paths.len();
            paths.dedup();
            assert_eq!(paths.len(), n, "{class:?}");
        }
    }

    #[test]
    fn every_register_field_is_a_registered_attribute() {
        use crate::model::register;
        for f in register::FIELDS {
            for class in register::CLASSES {
                assert!(
                    find(*class, &register::attribute(&f.name)).is_some(),
                    "{class:?} {}",
                    f.name
                );
            }
        }
        let registered = of(CiClass::Computer)
            .iter()
            .filter(|a| register::is_register_attribute(a.path))
            .count();
        assert_eq!(
            registered,
            register::FIELDS.len() + 2,
            "fields and provenance"
        );
    }

    #[test]
    fn a_misspelt_path_finds_its_neighbour() {
        assert_eq!(
            closest(CiClass::Computer, "os.hostnme"),
            Some("os.hostname")
        );
        assert_eq!(
            closest(CiClass::Computer, "os.kernelversion"),
            Some("os.kernel_version")
        );
        assert_eq!(closest(CiClass::Computer, "nothing.like.it"), None);
    }
}
