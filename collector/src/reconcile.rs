//! Reconciliation: a snapshot becomes the desired state of one computer (its attributes,
//! owned component CIs, references to shared CIs and edges), and the difference with what
//! is stored becomes writes (with the version of every CI whose configuration changed
//! raised) and change items. The store turns the writes into a history step.
//!
//! Architecture Invariant: pure functions, no store access. A section that was not
//! collected keeps exactly what the stored state held for it: its attributes (by key
//! prefix), its components and its edges.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use census_shared::{Section, Snapshot};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::drift;
use crate::drift::view::ConfigView;
use crate::model::*;
use crate::store::OwnedState;

/// A deterministic CI id from a class and natural key parts.
pub fn det_id(class: CiClass, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    format!("{}_{}", class.id_prefix(), &hex::encode(h.finalize())[..20])
}

/// The snapshot section that owns an attribute key, component or edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
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
}

impl Owner {
    /// Every section; `prefix` and `of_ci` are exhaustive matches, this list is checked
    /// against them by `every_owner_is_listed`.
    const ALL: [Owner; 11] = [
        Owner::System,
        Owner::Os,
        Owner::Cpus,
        Owner::Memory,
        Owner::Disks,
        Owner::Filesystems,
        Owner::Network,
        Owner::Software,
        Owner::Services,
        Owner::Users,
        Owner::Ports,
    ];

    fn prefix(self) -> &'static str {
        match self {
            Owner::System => "system.",
            Owner::Os => "os.",
            Owner::Cpus => "cpu.",
            Owner::Memory => "memory.",
            Owner::Disks => "disks.",
            Owner::Filesystems => "filesystems.",
            Owner::Network => "network.",
            Owner::Software => "software.",
            Owner::Services => "services.",
            Owner::Users => "users.",
            Owner::Ports => "ports.",
        }
    }

    fn of_ci(class: CiClass) -> Option<Owner> {
        match class {
            CiClass::Disk => Some(Owner::Disks),
            CiClass::NetworkInterface | CiClass::IpAddress | CiClass::Subnet => {
                Some(Owner::Network)
            }
            CiClass::Service => Some(Owner::Services),
            CiClass::SoftwareProduct => Some(Owner::Software),
            CiClass::OperatingSystem => Some(Owner::Os),
            CiClass::Computer => None,
        }
    }

    fn of_edge(key: &RelKey) -> Option<Owner> {
        match key.kind {
            RelKind::Runs => Some(Owner::Os),
            RelKind::Installs => Some(Owner::Software),
            RelKind::HasAddress | RelKind::In => Some(Owner::Network),
            RelKind::Has => class_of_id(&key.to).and_then(Owner::of_ci),
        }
    }
}

/// The class an id names, from its prefix.
pub fn class_of_id(id: &str) -> Option<CiClass> {
    let prefix = id.split('_').next()?;
    CiClass::ALL.into_iter().find(|c| c.id_prefix() == prefix)
}

/// What a snapshot says a computer should look like.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub attributes: Attributes,
    pub volatile: Attributes,
    pub name: String,
    pub components: BTreeMap<String, Ci>,
    pub shared: BTreeMap<String, Ci>,
    pub relationships: BTreeMap<RelKey, Attributes>,
    /// Installed software by (product id, discriminator): every install, or with
    /// `install_scope` set, those of the products it names.
    pub installs: BTreeMap<(String, String), Install>,
    /// The products whose installs `installs` gives when it is not every install (a delta
    /// that edits a few packages): the others keep their stored installs.
    pub install_scope: Option<BTreeSet<String>>,
    /// Sections whose data was collected; the others keep the stored state.
    pub collected: BTreeSet<Owner>,
}

fn put(attrs: &mut Attributes, key: &str, value: impl Into<Value>) {
    let v = value.into();
    if !v.is_null() {
        attrs.insert(key.to_string(), v);
    }
}

fn new_ci(
    id: String,
    class: CiClass,
    name: String,
    attributes: Attributes,
    now: DateTime<Utc>,
    owner: Option<&str>,
) -> Ci {
    Ci {
        id,
        class,
        name,
        attributes,
        volatile: Attributes::new(),
        status: CiStatus::Active,
        first_seen: now,
        last_seen: now,
        sources: Vec::new(),
        version: 0,
        owner: owner.map(str::to_string),
    }
}

/// An install date as the CMDB keeps it: whole seconds. Agents report file times to the
/// nanosecond; the fraction is noise to people and to drift, and costs the store a few
/// incompressible bytes per package.
pub fn install_time(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Timelike;
    t.with_nanosecond(0).unwrap_or(t)
}

/// [`install_time`] as an edge attribute.
pub fn install_date(t: DateTime<Utc>) -> String {
    install_time(t).to_rfc3339()
}

/// The software product CI of a package name.
pub fn product_id(name: &str) -> String {
    det_id(CiClass::SoftwareProduct, &[&name.trim().to_lowercase()])
}

/// The network address of `ip/prefix` ("192.0.2.0/24").
pub fn subnet_of(address: &str, prefix: u8) -> Option<String> {
    let ip: IpAddr = address.parse().ok()?;
    Some(match ip {
        IpAddr::V4(v4) => {
            let p = prefix.min(32) as u32;
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            format!("{}/{}", std::net::Ipv4Addr::from(u32::from(v4) & mask), p)
        }
        IpAddr::V6(v6) => {
            let p = prefix.min(128) as u32;
            let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            format!("{}/{}", std::net::Ipv6Addr::from(u128::from(v6) & mask), p)
        }
    })
}

fn collected<T>(s: &Section<T>) -> Option<&T> {
    s.data()
}

/// What of a package an install keeps, in the order duplicates are numbered by.
type InstallOrder<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    &'a str,
    Option<&'a str>,
    Option<DateTime<Utc>>,
);

fn install_order(s: &census_shared::Software) -> InstallOrder<'_> {
    (
        s.name.as_str(),
        s.version.as_str(),
        s.arch.as_deref(),
        s.publisher.as_deref(),
        s.source.as_str(),
        s.source_package.as_deref(),
        s.install_date.map(install_time),
    )
}

/// Builds the desired state of computer `cid` from `snap`.
pub fn desired(cid: &str, snap: &Snapshot, now: DateTime<Utc>) -> Desired {
    let mut d = Desired::default();
    let a = &mut d.attributes;

    if let Some(s) = collected(&snap.system) {
        d.collected.insert(Owner::System);
        for (k, val) in [
            ("vendor", &s.vendor),
            ("model", &s.model),
            ("family", &s.family),
            ("serial", &s.serial),
            ("uuid", &s.uuid),
            ("sku", &s.sku),
            ("chassis_type", &s.chassis_type),
            ("board_vendor", &s.board_vendor),
            ("board_model", &s.board_model),
            ("board_serial", &s.board_serial),
            ("bios_vendor", &s.bios_vendor),
            ("bios_version", &s.bios_version),
            ("bios_date", &s.bios_date),
            ("machine_id", &s.machine_id),
            ("virtualization", &s.virtualization),
            ("container", &s.container),
        ] {
            put(a, &format!("system.{k}"), val.clone());
        }
    }
    if let Some(os) = collected(&snap.os) {
        d.collected.insert(Owner::Os);
        put(a, "os.hostname", os.hostname.clone());
        put(a, "os.fqdn", os.fqdn.clone());
        put(a, "os.family", os.family.clone());
        put(a, "os.kernel", os.kernel.clone());
        put(a, "os.kernel_version", os.kernel_version.clone());
        put(a, "os.arch", os.arch.clone());
        put(a, "os.timezone", os.timezone.clone());
        put(a, "os.name", os.name.clone());
        put(a, "os.version", os.version.clone());
        put(a, "os.version_id", os.version_id.clone());
        put(a, "os.build", os.build.clone());
        let release = os.name.clone().unwrap_or_else(|| os.family.clone());
        let version = os
            .version
            .clone()
            .or(os.version_id.clone())
            .unwrap_or_default();
        let os_name = if version.is_empty() {
            release.clone()
        } else {
            format!("{release} {version}")
        };
        let os_id = det_id(
            CiClass::OperatingSystem,
            &[
                &os.family,
                os.id.as_deref().unwrap_or(""),
                &release,
                &version,
                os.build.as_deref().unwrap_or(""),
            ],
        );
        let mut attrs = Attributes::new();
        put(&mut attrs, "family", os.family.clone());
        put(&mut attrs, "name", os.name.clone());
        put(&mut attrs, "id", os.id.clone());
        put(&mut attrs, "version", os.version.clone());
        put(&mut attrs, "version_id", os.version_id.clone());
        put(&mut attrs, "codename", os.codename.clone());
        put(&mut attrs, "build", os.build.clone());
        d.shared.insert(
            os_id.clone(),
            new_ci(
                os_id.clone(),
                CiClass::OperatingSystem,
                os_name,
                attrs,
                now,
                None,
            ),
        );
        let mut edge = Attributes::new();
        put(&mut edge, "kernel_version", os.kernel_version.clone());
        put(&mut edge, "arch", os.arch.clone());
        d.relationships.insert(
            RelKey {
                from: cid.into(),
                kind: RelKind::Runs,
                to: os_id,
                discriminator: String::new(),
            },
            edge,
        );
        d.name = os
            .fqdn
            .clone()
            .filter(|f| f.contains('.'))
            .unwrap_or_else(|| os.hostname.clone());
    }
    if let Some(cpus) = collected(&snap.cpus) {
        d.collected.insert(Owner::Cpus);
        put(a, "cpu.model", cpus.first().and_then(|c| c.model.clone()));
        put(a, "cpu.vendor", cpus.first().and_then(|c| c.vendor.clone()));
        put(a, "cpu.sockets", cpus.len() as u64);
        put(
            a,
            "cpu.cores",
            cpus.iter().map(|c| c.cores as u64).sum::<u64>(),
        );
        put(
            a,
            "cpu.threads",
            cpus.iter().map(|c| c.threads as u64).sum::<u64>(),
        );
    }
    if let Some(m) = collected(&snap.memory) {
        d.collected.insert(Owner::Memory);
        put(a, "memory.total_bytes", m.total_bytes);
        put(a, "memory.swap_total_bytes", m.swap_total_bytes);
    }
    if let Some(fss) = collected(&snap.filesystems) {
        d.collected.insert(Owner::Filesystems);
        let mut list: Vec<Value> = fss
            .iter()
            .map(|f| json!({"mount_point": f.mount_point, "device": f.device, "fs_type": f.fs_type, "total_bytes": f.total_bytes, "read_only": f.read_only}))
            .collect();
        list.sort_by_cached_key(|x| {
            (
                x["mount_point"].as_str().unwrap_or("").to_string(),
                x.to_string(),
            )
        });
        put(a, "filesystems.mounts", Value::Array(list));
    }
    if let Some(users) = collected(&snap.users) {
        d.collected.insert(Owner::Users);
        let mut list: Vec<Value> = users
            .iter()
            .map(|u| json!({"name": u.name, "uid": u.uid, "shell": u.shell, "login_shell": u.login_shell}))
            .collect();
        list.sort_by_cached_key(|x| (x["name"].as_str().unwrap_or("").to_string(), x.to_string()));
        list.dedup();
        put(a, "users.local", Value::Array(list));
    }
    if let Some(ports) = collected(&snap.listening_ports) {
        d.collected.insert(Owner::Ports);
        let mut set: BTreeSet<(String, String, u16, String)> = BTreeSet::new();
        for p in ports {
            set.insert((
                p.protocol.clone(),
                p.address.clone(),
                p.port,
                p.process.clone().unwrap_or_default(),
            ));
        }
        let list: Vec<Value> = set.into_iter().map(|(proto, addr, port, process)| json!({"protocol": proto, "address": addr, "port": port, "process": process})).collect();
        put(a, "ports.listening", Value::Array(list));
    }
    if let Some(disks) = collected(&snap.disks) {
        d.collected.insert(Owner::Disks);
        for disk in disks {
            // Loop and zram devices are software constructs that come and go with snaps and
            // swap settings; they are not hardware the CMDB tracks.
            if matches!(disk.transport.as_deref(), Some("loop" | "zram")) {
                continue;
            }
            let natural = disk
                .serial
                .clone()
                .or(disk.wwn.clone())
                .unwrap_or_else(|| disk.name.clone());
            let id = det_id(CiClass::Disk, &[cid, &natural]);
            let mut attrs = Attributes::new();
            put(&mut attrs, "device_name", disk.name.clone());
            put(&mut attrs, "model", disk.model.clone());
            put(&mut attrs, "vendor", disk.vendor.clone());
            put(&mut attrs, "serial", disk.serial.clone());
            put(&mut attrs, "wwn", disk.wwn.clone());
            put(&mut attrs, "size_bytes", disk.size_bytes);
            put(&mut attrs, "rotational", disk.rotational);
            put(&mut attrs, "removable", disk.removable);
            put(&mut attrs, "transport", disk.transport.clone());
            let name = disk
                .model
                .clone()
                .map(|m| format!("{} ({m})", disk.name))
                .unwrap_or_else(|| disk.name.clone());
            d.components.insert(
                id.clone(),
                new_ci(id.clone(), CiClass::Disk, name, attrs, now, Some(cid)),
            );
            d.relationships.insert(
                RelKey {
                    from: cid.into(),
                    kind: RelKind::Has,
                    to: id,
                    discriminator: String::new(),
                },
                Attributes::new(),
            );
        }
    }
    if let Some(nics) = collected(&snap.network_interfaces) {
        d.collected.insert(Owner::Network);
        let mut macs: Vec<String> = Vec::new();
        for nic in nics {
            if matches!(nic.kind.as_str(), "loopback" | "veth") {
                continue; // container plumbing churns; loopback is on every host
            }
            if nic.physical {
                if let Some(mac) = &nic.mac {
                    if !census_shared::identity::is_placeholder_mac(mac) {
                        macs.push(mac.clone());
                    }
                }
            }
            let natural = nic
                .mac
                .clone()
                .filter(|_| nic.physical)
                .unwrap_or_else(|| nic.name.clone());
            let nic_id = det_id(CiClass::NetworkInterface, &[cid, &natural]);
            let mut attrs = Attributes::new();
            put(&mut attrs, "name", nic.name.clone());
            put(&mut attrs, "mac", nic.mac.clone());
            put(&mut attrs, "kind", nic.kind.clone());
            put(&mut attrs, "physical", nic.physical);
            put(&mut attrs, "driver", nic.driver.clone());
            put(&mut attrs, "mtu", nic.mtu);
            put(&mut attrs, "speed_mbps", nic.speed_mbps);
            put(&mut attrs, "default_route", nic.default_route);
            put(&mut attrs, "gateway", nic.gateway.clone());
            let mut ci = new_ci(
                nic_id.clone(),
                CiClass::NetworkInterface,
                nic.name.clone(),
                attrs,
                now,
                Some(cid),
            );
            put(&mut ci.volatile, "up", nic.up);
            let link_local: Vec<Value> = nic
                .addresses
                .iter()
                .filter(|x| x.scope.as_deref() == Some("link"))
                .map(|x| json!(format!("{}/{}", x.address, x.prefix)))
                .collect();
            if !link_local.is_empty() {
                put(&mut ci.volatile, "link_local", Value::Array(link_local));
            }
            d.components.insert(nic_id.clone(), ci);
            d.relationships.insert(
                RelKey {
                    from: cid.into(),
                    kind: RelKind::Has,
                    to: nic_id.clone(),
                    discriminator: String::new(),
                },
                Attributes::new(),
            );
            for addr in &nic.addresses {
                if matches!(addr.scope.as_deref(), Some("host" | "link")) {
                    continue;
                }
                let ip_id = det_id(CiClass::IpAddress, &[cid, &addr.address]);
                let mut attrs = Attributes::new();
                put(&mut attrs, "address", addr.address.clone());
                put(&mut attrs, "prefix", addr.prefix);
                put(&mut attrs, "family", addr.family.clone());
                put(&mut attrs, "interface", nic.name.clone());
                d.components.insert(
                    ip_id.clone(),
                    new_ci(
                        ip_id.clone(),
                        CiClass::IpAddress,
                        addr.address.clone(),
                        attrs,
                        now,
                        Some(cid),
                    ),
                );
                d.relationships.insert(
                    RelKey {
                        from: nic_id.clone(),
                        kind: RelKind::HasAddress,
                        to: ip_id.clone(),
                        discriminator: String::new(),
                    },
                    Attributes::new(),
                );
                if let Some(cidr) = subnet_of(&addr.address, addr.prefix) {
                    let net_id = det_id(CiClass::Subnet, &[&cidr]);
                    let mut attrs = Attributes::new();
                    put(&mut attrs, "cidr", cidr.clone());
                    put(&mut attrs, "family", addr.family.clone());
                    d.shared.insert(
                        net_id.clone(),
                        new_ci(net_id.clone(), CiClass::Subnet, cidr, attrs, now, None),
                    );
                    d.relationships.insert(
                        RelKey {
                            from: ip_id,
                            kind: RelKind::In,
                            to: net_id,
                            discriminator: String::new(),
                        },
                        Attributes::new(),
                    );
                }
            }
        }
        let mut addresses: Vec<&str> = nics
            .iter()
            .filter(|n| !matches!(n.kind.as_str(), "loopback" | "veth"))
            .flat_map(|n| n.addresses.iter())
            .filter(|a| !matches!(a.scope.as_deref(), Some("host" | "link")))
            .map(|a| a.address.as_str())
            .collect();
        addresses.sort();
        addresses.dedup();
        put(
            &mut d.attributes,
            "network.addresses",
            Value::Array(addresses.into_iter().map(|a| json!(a)).collect()),
        );
        macs.sort();
        macs.dedup();
        put(
            &mut d.attributes,
            "network.physical_macs",
            Value::Array(macs.into_iter().map(Value::String).collect()),
        );
    }
    if let Some(software) = collected(&snap.software) {
        d.collected.insert(Owner::Software);
        // Duplicate name/source/arch entries get numbered discriminators; sorting first
        // makes the numbering independent of the order the OS listed them in. The order is
        // over what an install keeps, so a list rebuilt from the CMDB (a delta's base)
        // numbers exactly as the agent's own list does.
        let mut software: Vec<&census_shared::Software> = software.iter().collect();
        software.sort_by(|a, b| install_order(a).cmp(&install_order(b)));
        for sw in software {
            let id = product_id(&sw.name);
            d.shared.entry(id.clone()).or_insert_with(|| {
                let mut attrs = Attributes::new();
                put(&mut attrs, "name", sw.name.clone());
                new_ci(
                    id.clone(),
                    CiClass::SoftwareProduct,
                    sw.name.clone(),
                    attrs,
                    now,
                    None,
                )
            });
            let base = format!("{}/{}", sw.source, sw.arch.as_deref().unwrap_or(""));
            let mut key = (id, base.clone());
            let mut n = 2;
            while d.installs.contains_key(&key) {
                key.1 = format!("{base}#{n}");
                n += 1;
            }
            let install = Install {
                product: key.0.clone(),
                discriminator: key.1.clone(),
                package: std::sync::Arc::new(Package {
                    name: Some(sw.name.clone()),
                    version: Some(sw.version.clone()),
                    arch: sw.arch.clone(),
                    source: Some(sw.source.clone()),
                    publisher: sw.publisher.clone(),
                    source_package: sw.source_package.clone(),
                }),
                installed_at: sw.install_date.map(install_time),
            };
            d.installs.insert(key, install);
        }
    }
    if let Some(services) = collected(&snap.services) {
        d.collected.insert(Owner::Services);
        let mut services: Vec<&census_shared::Service> = services.iter().collect();
        services.sort();
        for s in services {
            let id = det_id(CiClass::Service, &[cid, &s.manager, &s.name]);
            let mut attrs = Attributes::new();
            put(&mut attrs, "name", s.name.clone());
            put(&mut attrs, "manager", s.manager.clone());
            put(&mut attrs, "enabled", s.enabled.clone());
            put(&mut attrs, "description", s.description.clone());
            let mut ci = new_ci(
                id.clone(),
                CiClass::Service,
                s.name.clone(),
                attrs,
                now,
                Some(cid),
            );
            put(&mut ci.volatile, "state", s.state.clone());
            d.components.insert(id.clone(), ci);
            d.relationships.insert(
                RelKey {
                    from: cid.into(),
                    kind: RelKind::Has,
                    to: id,
                    discriminator: String::new(),
                },
                Attributes::new(),
            );
        }
    }
    put(
        &mut d.attributes,
        "agent.version",
        snap.agent_version.clone(),
    );
    d.volatile = computer_volatile(snap);
    d
}

/// The computer's volatile facts from the sections that were collected: they update the CI
/// in place and never make a version.
pub fn computer_volatile(snap: &Snapshot) -> Attributes {
    let mut v = Attributes::new();
    if let Some(os) = collected(&snap.os) {
        put(&mut v, "os.boot_time", os.boot_time.map(|t| t.to_rfc3339()));
        put(&mut v, "os.uptime_seconds", os.uptime_seconds);
    }
    if let Some(m) = collected(&snap.memory) {
        put(&mut v, "memory.available_bytes", m.available_bytes);
    }
    if let Some(fss) = collected(&snap.filesystems) {
        let free: serde_json::Map<String, Value> = fss
            .iter()
            .filter_map(|f| Some((f.mount_point.clone(), json!(f.free_bytes?))))
            .collect();
        put(&mut v, "filesystems.free_bytes", Value::Object(free));
    }
    put(&mut v, "collected_at", snap.collected_at.to_rfc3339());
    v
}

/// The outcome of comparing stored and desired state.
#[derive(Debug, Default)]
pub struct Plan {
    pub computer: Option<Ci>,
    pub ci_puts: Vec<Ci>,
    pub shared_inserts: Vec<Ci>,
    pub relationship_puts: Vec<Relationship>,
    pub relationship_deletes: Vec<RelKey>,
    pub install_puts: Vec<Install>,
    pub install_deletes: Vec<(String, String)>,
    /// Ids of the CIs whose version this plan raises.
    pub versioned: Vec<String>,
    /// Drift items (empty for a computer seen for the first time).
    pub items: Vec<ChangeItem>,
    /// The computer's routable addresses after this snapshot, for planned-change scopes.
    pub addresses: Vec<std::net::IpAddr>,
    /// The computer existed before and its configuration changed.
    pub drifted: bool,
}

impl Plan {
    /// The computer's state once this plan is committed, from the state it was planned
    /// against: what a baseline is evaluated on before the commit.
    pub fn state_after(&self, stored: &OwnedState) -> OwnedState {
        let mut components = stored.components.clone();
        for put in &self.ci_puts {
            match components.iter_mut().find(|c| c.id == put.id) {
                Some(c) => *c = put.clone(),
                None => components.push(put.clone()),
            }
        }
        let gone: std::collections::HashSet<(&str, &str)> = self
            .install_deletes
            .iter()
            .map(|(p, d)| (p.as_str(), d.as_str()))
            .collect();
        let mut installs: Vec<Install> = stored
            .installs
            .iter()
            .filter(|i| !gone.contains(&(i.product.as_str(), i.discriminator.as_str())))
            .filter(|i| {
                !self
                    .install_puts
                    .iter()
                    .any(|p| p.product == i.product && p.discriminator == i.discriminator)
            })
            .cloned()
            .collect();
        installs.extend(self.install_puts.iter().cloned());
        OwnedState {
            computer: self.computer.clone().or_else(|| stored.computer.clone()),
            components,
            relationships: stored.relationships.clone(),
            installs,
        }
    }
}

/// Compares the stored state with the desired one and plans every write.
pub fn plan(
    cid: &str,
    agent_id: &str,
    stored: &OwnedState,
    mut want: Desired,
    register_settings: &register::RegisterSettings,
    now: DateTime<Utc>,
) -> Plan {
    let mut p = Plan::default();
    // Sections not collected keep what they had: attributes by prefix, components, edges.
    let kept = |o: Option<Owner>| o.is_some_and(|o| !want.collected.contains(&o));
    if let Some(old) = &stored.computer {
        for (k, val) in &old.attributes {
            let owner = Owner::ALL.into_iter().find(|o| k.starts_with(o.prefix()));
            // The register is people's: a snapshot never writes or removes it.
            if kept(owner) || register::is_register_attribute(k) {
                want.attributes.insert(k.clone(), val.clone());
            }
        }
        for (k, val) in &old.volatile {
            let owner = [Owner::Os, Owner::Memory, Owner::Filesystems]
                .into_iter()
                .find(|o| k.starts_with(o.prefix()));
            if kept(owner) {
                want.volatile.insert(k.clone(), val.clone());
            }
        }
        if want.name.is_empty() {
            want.name = old.name.clone();
        }
    }
    // Agents are a register source for what they discover (serial, manufacturer, model),
    // under the register's precedence; a disagreement with a higher source waits for a
    // person as a reconciliation item.
    register::reconcile_discovered(
        &mut want.attributes,
        CiClass::Computer,
        register_settings,
        agent_id,
        register::DiscoveryMode::Inventory,
        now,
    );
    for c in &stored.components {
        if kept(Owner::of_ci(c.class)) && c.status != CiStatus::Retired {
            want.components.insert(c.id.clone(), c.clone());
        }
    }
    for r in &stored.relationships {
        if kept(Owner::of_edge(&r.key)) {
            want.relationships
                .insert(r.key.clone(), r.attributes.clone());
        }
    }
    // Installs are compared only within their scope: every product when the software
    // section came whole, the products a delta touched, none when it was not collected.
    // Out of scope, the stored installs stand untouched; comparing (and copying) 2,000 of
    // them for a five-package delta is what a delta exists to avoid.
    let scope: Option<BTreeSet<String>> = if kept(Some(Owner::Software)) {
        want.installs.clear();
        Some(BTreeSet::new())
    } else {
        want.install_scope.take()
    };
    let in_scope = |product: &str| scope.as_ref().is_none_or(|s| s.contains(product));
    let old_installs: BTreeMap<(&str, &str), &Install> = stored
        .installs
        .iter()
        .filter(|i| in_scope(&i.product))
        .map(|i| ((i.product.as_str(), i.discriminator.as_str()), i))
        .collect();
    if want.name.is_empty() {
        want.name = cid.to_string();
    }

    // Drift compares configuration views built the same way from both sides; installs
    // are diffed apart, within their scope, and their items take the place the software
    // aspect has in key order.
    let after = ConfigView::build(
        &want.attributes,
        want.components.values(),
        std::iter::empty(),
    );
    // A computer people recorded before discovery has no configuration to drift from:
    // its first inventory is a first inventory.
    if let Some(old) = stored.computer.as_ref().filter(|c| !c.sources.is_empty()) {
        let before = ConfigView::build(
            &old.attributes,
            stored.components.iter(),
            std::iter::empty(),
        );
        p.items = drift::diff::diff(&before, &after);
        let installs =
            drift::diff::diff_installs(old_installs.values().copied(), want.installs.values());
        let at = p.items.partition_point(|i| i.aspect <= Aspect::Software);
        p.items.splice(at..at, installs);
    }
    p.addresses = after.addresses();

    // Installs: the computer's configuration changes when any does.
    for ((product, disc), i) in &want.installs {
        let same = old_installs
            .get(&(product.as_str(), disc.as_str()))
            .is_some_and(|old| {
                old.installed_at == i.installed_at
                    && (std::sync::Arc::ptr_eq(&old.package, &i.package)
                        || old.package == i.package)
            });
        if !same {
            p.install_puts.push(i.clone());
        }
    }
    for (product, disc) in old_installs.keys() {
        if !want
            .installs
            .contains_key(&(product.to_string(), disc.to_string()))
        {
            p.install_deletes
                .push((product.to_string(), disc.to_string()));
        }
    }

    // Edges.
    let old_edges: BTreeMap<&RelKey, &Attributes> = stored
        .relationships
        .iter()
        .map(|r| (&r.key, &r.attributes))
        .collect();
    let mut changed_from: BTreeSet<String> = BTreeSet::new();
    if !p.install_puts.is_empty() || !p.install_deletes.is_empty() {
        changed_from.insert(cid.to_string());
    }
    for (key, attrs) in &want.relationships {
        match old_edges.get(key) {
            Some(old) if *old == attrs => {}
            Some(_) => {
                p.relationship_puts.push(Relationship {
                    key: key.clone(),
                    attributes: attrs.clone(),
                });
                changed_from.insert(key.from.clone());
            }
            None => {
                p.relationship_puts.push(Relationship {
                    key: key.clone(),
                    attributes: attrs.clone(),
                });
                changed_from.insert(key.from.clone());
            }
        }
    }
    for key in old_edges.keys() {
        if !want.relationships.contains_key(*key) {
            p.relationship_deletes.push((*key).clone());
            changed_from.insert(key.from.clone());
        }
    }

    // Components: new, changed, retired.
    let old_components: BTreeMap<&str, &Ci> = stored
        .components
        .iter()
        .map(|c| (c.id.as_str(), c))
        .collect();
    for (id, c) in &want.components {
        let mut next = c.clone();
        let versioned = match old_components.get(id.as_str()) {
            Some(old) => {
                next.first_seen = old.first_seen;
                next.version = old.version;
                next.sources = old.sources.clone();
                let config_changed = old.attributes != next.attributes
                    || old.status != CiStatus::Active
                    || changed_from.contains(id);
                if !config_changed && old.volatile == next.volatile {
                    continue;
                }
                config_changed
            }
            None => true,
        };
        if !next.sources.iter().any(|s| s == agent_id) {
            next.sources.push(agent_id.to_string());
        }
        next.last_seen = now;
        if versioned {
            next.version += 1;
            p.versioned.push(id.clone());
        }
        p.ci_puts.push(next);
    }
    for old in &stored.components {
        if !want.components.contains_key(&old.id) && old.status != CiStatus::Retired {
            let mut gone = old.clone();
            gone.status = CiStatus::Retired;
            gone.version += 1;
            p.versioned.push(gone.id.clone());
            p.ci_puts.push(gone);
        }
    }
    p.shared_inserts = want.shared.into_values().collect();

    // The computer itself.
    let mut computer = match &stored.computer {
        Some(old) => {
            let mut c = old.clone();
            c.attributes = want.attributes;
            c.name = want.name;
            c
        }
        None => new_ci(
            cid.to_string(),
            CiClass::Computer,
            want.name,
            want.attributes,
            now,
            None,
        ),
    };
    let config_changed = match &stored.computer {
        Some(old) => {
            old.attributes != computer.attributes
                || old.name != computer.name
                || changed_from.contains(cid)
                || old.status != CiStatus::Active
        }
        None => true,
    };
    computer.volatile = want.volatile;
    computer.volatile.insert("agent.id".into(), json!(agent_id));
    computer.last_seen = now;
    computer.status = CiStatus::Active;
    if !computer.sources.iter().any(|s| s == agent_id) {
        computer.sources.push(agent_id.to_string());
    }
    if config_changed {
        computer.version += 1;
        p.versioned.push(cid.to_string());
    }
    p.drifted = stored.computer.is_some() && !p.items.is_empty();
    p.computer = Some(computer);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use census_shared::*;

    fn base() -> Snapshot {
        let mut s = Snapshot::empty("agt_1", 1, Utc::now());
        s.os = Section::collected(Os {
            family: "linux".into(),
            name: Some("Debian GNU/Linux".into()),
            version: Some("12 (bookworm)".into()),
            hostname: "web1".into(),
            fqdn: Some("web1.example.com".into()),
            arch: "x86_64".into(),
            kernel_version: Some("6.1.0-18-amd64".into()),
            ..Default::default()
        });
        s.software = Section::collected(vec![
            Software {
                name: "openssl".into(),
                version: "3.0.11-1~deb12u2".into(),
                arch: Some("amd64".into()),
                source: "dpkg".into(),
                ..Default::default()
            },
            Software {
                name: "libc6".into(),
                version: "2.36-9".into(),
                arch: Some("amd64".into()),
                source: "dpkg".into(),
                ..Default::default()
            },
            Software {
                name: "libc6".into(),
                version: "2.36-9".into(),
                arch: Some("i386".into()),
                source: "dpkg".into(),
                ..Default::default()
            },
        ]);
        s.network_interfaces = Section::collected(vec![NetworkInterface {
            name: "eth0".into(),
            mac: Some("52:54:00:12:34:56".into()),
            physical: true,
            kind: "ether".into(),
            up: true,
            addresses: vec![IpAddress {
                address: "10.1.2.3".into(),
                prefix: 16,
                family: "ipv4".into(),
                scope: Some("global".into()),
            }],
            ..Default::default()
        }]);
        s.disks = Section::collected(vec![Disk {
            name: "sda".into(),
            serial: Some("S1".into()),
            size_bytes: 100,
            ..Default::default()
        }]);
        s
    }

    fn stored_after(cid: &str, p: &Plan) -> OwnedState {
        OwnedState {
            computer: p.computer.clone(),
            components: p
                .ci_puts
                .iter()
                .filter(|c| c.owner.as_deref() == Some(cid))
                .cloned()
                .collect(),
            relationships: p.relationship_puts.clone(),
            installs: p.install_puts.clone(),
        }
    }

    #[test]
    fn first_snapshot_builds_the_graph() {
        let p = plan(
            "cmp_1",
            "agt_1",
            &OwnedState::default(),
            desired("cmp_1", &base(), Utc::now()),
            &register::RegisterSettings::default(),
            Utc::now(),
        );
        let c = p.computer.as_ref().unwrap();
        assert_eq!(c.name, "web1.example.com");
        assert_eq!(c.version, 1);
        assert!(!p.drifted, "discovery is not drift");
        assert_eq!(
            p.install_puts.len(),
            3,
            "libc6 amd64 and i386 are two installs"
        );
        assert!(p
            .shared_inserts
            .iter()
            .any(|c| c.class == CiClass::Subnet && c.name == "10.1.0.0/16"));
        assert!(p
            .shared_inserts
            .iter()
            .any(|c| c.class == CiClass::OperatingSystem
                && c.name == "Debian GNU/Linux 12 (bookworm)"));
        assert!(p
            .relationship_puts
            .iter()
            .any(|r| r.key.kind == RelKind::In));
    }

    #[test]
    fn unchanged_snapshot_plans_no_versions() {
        let p1 = plan(
            "cmp_1",
            "agt_1",
            &OwnedState::default(),
            desired("cmp_1", &base(), Utc::now()),
            &register::RegisterSettings::default(),
            Utc::now(),
        );
        let stored = stored_after("cmp_1", &p1);
        let mut again = base();
        again.os.data_mut().unwrap().uptime_seconds = Some(999);
        if let Some(sw) = again.software.data_mut() {
            sw.reverse();
        }
        let p2 = plan(
            "cmp_1",
            "agt_1",
            &stored,
            desired("cmp_1", &again, Utc::now()),
            &register::RegisterSettings::default(),
            Utc::now(),
        );
        assert!(p2.items.is_empty(), "{:?}", p2.items);
        assert!(p2.versioned.is_empty());
        assert!(p2.relationship_puts.is_empty() && p2.relationship_deletes.is_empty());
        assert!(p2.install_puts.is_empty() && p2.install_deletes.is_empty());
    }

    #[test]
    fn failed_section_keeps_what_it_held() {
        let p1 = plan(
            "cmp_1",
            "agt_1",
            &OwnedState::default(),
            desired("cmp_1", &base(), Utc::now()),
            &register::RegisterSettings::default(),
            Utc::now(),
        );
        let stored = stored_after("cmp_1", &p1);
        let mut s = base();
        s.software = Section::failed("dpkg status unreadable");
        s.network_interfaces = Section::unsupported("no probe");
        s.disks = Section::failed("permission denied");
        let p2 = plan(
            "cmp_1",
            "agt_1",
            &stored,
            desired("cmp_1", &s, Utc::now()),
            &register::RegisterSettings::default(),
            Utc::now(),
        );
        assert!(
            p2.relationship_deletes.is_empty(),
            "{:?}",
            p2.relationship_deletes
        );
        assert!(p2.items.is_empty(), "{:?}", p2.items);
        assert!(p2.ci_puts.iter().all(|c| c.status != CiStatus::Retired));
    }

    #[test]
    fn upgrade_removal_and_disk_swap_are_items() {
        let p1 = plan(
            "cmp_1",
            "agt_1",
            &OwnedState::default(),
            desired("cmp_1", &base(), Utc::now()),
            &register::RegisterSettings::default(),
            Utc::now(),
        );
        let stored = stored_after("cmp_1", &p1);
        let mut s = base();
        let sw = s.software.data_mut().unwrap();
        sw[0].version = "3.0.13-1~deb12u1".into();
        sw.pop();
        s.disks = Section::collected(vec![Disk {
            name: "sda".into(),
            serial: Some("S2".into()),
            size_bytes: 200,
            ..Default::default()
        }]);
        let p2 = plan(
            "cmp_1",
            "agt_1",
            &stored,
            desired("cmp_1", &s, Utc::now()),
            &register::RegisterSettings::default(),
            Utc::now(),
        );
        assert!(p2.drifted);
        let kinds: Vec<(&str, &str)> = p2
            .items
            .iter()
            .map(|i| (i.kind.as_str(), i.subject.as_str()))
            .collect();
        assert!(
            kinds.contains(&("software_upgraded", "openssl")),
            "{kinds:?}"
        );
        assert!(kinds.contains(&("software_removed", "libc6")), "{kinds:?}");
        assert!(kinds.contains(&("disk_added", "sda")), "{kinds:?}");
        assert!(kinds.contains(&("disk_removed", "sda")), "{kinds:?}");
        assert!(p2
            .ci_puts
            .iter()
            .any(|c| c.class == CiClass::Disk && c.status == CiStatus::Retired));
        assert_eq!(p2.computer.unwrap().version, 2);
    }

    /// Every section collected, every optional field set.
    fn full() -> Snapshot {
        let s = |v: &str| Some(v.to_string());
        let mut snap = base();
        snap.agent_version = "1.0".into();
        snap.system = Section::collected(System {
            vendor: s("v"),
            model: s("m"),
            family: s("f"),
            serial: s("s"),
            uuid: s("u"),
            sku: s("k"),
            chassis_type: s("c"),
            board_vendor: s("bv"),
            board_model: s("bm"),
            board_serial: s("bs"),
            bios_vendor: s("x"),
            bios_version: s("y"),
            bios_date: s("z"),
            machine_id: s("mid"),
            virtualization: s("kvm"),
            container: s("docker"),
            ..Default::default()
        });
        if let Some(os) = snap.os.data_mut() {
            os.id = s("debian");
            os.version_id = s("12");
            os.codename = s("bookworm");
            os.build = s("b");
            os.kernel = s("Linux");
            os.timezone = s("UTC");
            os.boot_time = Some(Utc::now());
            os.uptime_seconds = Some(1);
        }
        snap.cpus = Section::collected(vec![Cpu {
            vendor: s("v"),
            model: s("m"),
            cores: 2,
            threads: 4,
            ..Default::default()
        }]);
        snap.memory = Section::collected(Memory {
            total_bytes: 1,
            available_bytes: Some(1),
            swap_total_bytes: 1,
            swap_free_bytes: Some(1),
        });
        snap.disks = Section::collected(vec![Disk {
            name: "sda".into(),
            model: s("m"),
            vendor: s("v"),
            serial: s("s"),
            wwn: s("w"),
            transport: s("sata"),
            size_bytes: 1,
            rotational: Some(false),
            ..Default::default()
        }]);
        snap.filesystems = Section::collected(vec![Filesystem {
            mount_point: "/".into(),
            device: "/dev/sda1".into(),
            fs_type: "ext4".into(),
            free_bytes: Some(1),
            ..Default::default()
        }]);
        if let Some(nics) = snap.network_interfaces.data_mut() {
            nics[0].driver = s("e1000");
            nics[0].gateway = s("10.0.0.1");
            nics[0].mtu = Some(1500);
            nics[0].speed_mbps = Some(1000);
            nics[0].addresses.push(IpAddress {
                address: "fe80::1".into(),
                prefix: 64,
                family: "ipv6".into(),
                scope: s("link"),
            });
        }
        snap.services = Section::collected(vec![Service {
            name: "ssh".into(),
            manager: "systemd".into(),
            state: "active".into(),
            enabled: s("enabled"),
            description: s("d"),
        }]);
        snap.users = Section::collected(vec![census_shared::User {
            name: "root".into(),
            shell: s("/bin/bash"),
            ..Default::default()
        }]);
        snap.listening_ports = Section::collected(vec![ListeningPort {
            protocol: "tcp".into(),
            address: "0.0.0.0".into(),
            port: 22,
            process: s("sshd"),
            ..Default::default()
        }]);
        snap
    }

    /// The registry (`model::attributes`) is what filters and rules resolve paths against:
    /// reconciliation must write exactly what it lists, per class, configuration and
    /// volatile apart.
    #[test]
    fn every_attribute_reconcile_writes_is_registered() {
        use crate::model::attributes;
        use std::collections::BTreeSet;
        let d = desired("cmp_1", &full(), Utc::now());
        let mut written: BTreeSet<(CiClass, &str, bool)> = BTreeSet::new();
        written.extend(
            d.attributes
                .keys()
                .map(|k| (CiClass::Computer, k.as_str(), false)),
        );
        written.extend(
            d.volatile
                .keys()
                .map(|k| (CiClass::Computer, k.as_str(), true)),
        );
        // What plan adds for every computer.
        written.insert((CiClass::Computer, "agent.id", true));
        for ci in d.components.values().chain(d.shared.values()) {
            written.extend(ci.attributes.keys().map(|k| (ci.class, k.as_str(), false)));
            written.extend(ci.volatile.keys().map(|k| (ci.class, k.as_str(), true)));
        }
        let registered: BTreeSet<(CiClass, &str, bool)> = CiClass::ALL
            .into_iter()
            .flat_map(|c| {
                attributes::of(c)
                    .iter()
                    // The register is written by people, and by plan's reconcile_discovered.
                    .filter(|a| !crate::model::register::is_register_attribute(a.path))
                    .map(move |a| (c, a.path, a.volatile))
            })
            .collect();
        let unregistered: Vec<_> = written.difference(&registered).collect();
        assert!(
            unregistered.is_empty(),
            "written but not registered: {unregistered:?}"
        );
        let unwritten: Vec<_> = registered.difference(&written).collect();
        assert!(
            unwritten.is_empty(),
            "registered but never written: {unwritten:?}"
        );
    }

    #[test]
    fn every_owner_is_listed() {
        // A new section must be in `ALL` too, or its kept attributes would be dropped.
        let listed: std::collections::BTreeSet<&str> =
            Owner::ALL.iter().map(|o| o.prefix()).collect();
        assert_eq!(listed.len(), Owner::ALL.len());
        // No wildcard: a new section fails to compile here until it is listed above.
        let position = |o: Owner| -> usize {
            match o {
                Owner::System
                | Owner::Os
                | Owner::Cpus
                | Owner::Memory
                | Owner::Disks
                | Owner::Filesystems
                | Owner::Network
                | Owner::Software
                | Owner::Services
                | Owner::Users
                | Owner::Ports => Owner::ALL
                    .iter()
                    .position(|x| *x == o)
                    .unwrap_or(usize::MAX),
            }
        };
        assert!(Owner::ALL
            .into_iter()
            .all(|o| position(o) < Owner::ALL.len()));
        let d = desired("cmp_1", &full(), Utc::now());
        for k in d.attributes.keys() {
            assert!(
                Owner::ALL.iter().any(|o| k.starts_with(o.prefix())) || k == "agent.version",
                "{k} belongs to no section"
            );
        }
    }

    #[test]
    fn subnets() {
        assert_eq!(subnet_of("10.1.2.3", 16).as_deref(), Some("10.1.0.0/16"));
        assert_eq!(subnet_of("fd00::2", 64).as_deref(), Some("fd00::/64"));
        assert_eq!(subnet_of("1.2.3.4", 0).as_deref(), Some("0.0.0.0/0"));
        assert_eq!(subnet_of("nope", 8), None);
    }
}
