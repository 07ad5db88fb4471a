//! The inventory a protocol-v2 delta describes, in the form reconcile reads.
//!
//! The collector does not keep the agent's base snapshot: the computer's stored state is
//! the base (the ingest checked that the agent's last accepted inventory is the one the
//! delta names). Sections the delta replaced are taken as sent; sections it left unchanged
//! are marked not collected, so [`crate::reconcile::plan`] keeps their stored state exactly
//! as it keeps a failed section's; sections it edited are rebuilt from the stored state,
//! at the fidelity reconcile reads (what the CMDB does not keep, such as a package's
//! installed size, reconcile never reads), and edited, with every key checked against them.
//!
//! Edited software is the hot case (a few upgrades on a 2,000-package machine), so it is
//! rebuilt only for the products the delta names: the view carries those products'
//! packages after the edits and [`DeltaView::install_scope`] says that every other product
//! keeps its stored installs. Duplicate packages are numbered within one product, and every
//! key an edit names belongs to one of those products, so the key checks and the numbering
//! are the same as over the whole list.
//!
//! Architecture Invariant: `desired(view(stored, delta))` planned against `stored` gives the
//! same plan as the full target snapshot would (property test
//! `a_delta_and_its_full_snapshot_leave_the_same_cmdb`).

use std::collections::{BTreeMap, BTreeSet};

use census_shared::delta::{Delta, DeltaError, ListDelta, Op, SectionDelta};
use census_shared::{
    Filesystem, ListeningPort, Section, Service, Snapshot, Software, User, SCHEMA_VERSION,
};
use serde_json::Value;

use crate::model::*;
use crate::store::OwnedState;

/// What reconcile is given for a section the delta left unchanged.
const KEPT: &str = "unchanged since the base: the stored state stands";

fn kept<T>() -> Section<T> {
    Section::unsupported(KEPT)
}

/// Whether a delta left this section as its base had it.
pub fn is_kept<T>(section: &Section<T>) -> bool {
    section.data.is_none() && section.reason.as_deref() == Some(KEPT)
}

fn whole<T: Clone + PartialEq>(name: &str, d: &SectionDelta<T>) -> Result<Section<T>, DeltaError> {
    match (d.op, &d.section) {
        (Op::Unchanged, None) => Ok(kept()),
        // A replaced section is taken as sent; `apply` checks the shape.
        _ => d.apply(name, &kept()),
    }
}

fn list<T: census_shared::delta::Keyed>(
    name: &str,
    d: &ListDelta<T>,
    base: impl FnOnce() -> Vec<T>,
) -> Result<Section<Vec<T>>, DeltaError> {
    match d.op {
        Op::Unchanged if d.section.is_none() && d.ops() == 0 => Ok(kept()),
        Op::Edited if d.section.is_none() => Ok(Section::collected(d.apply_edits(name, base())?)),
        // Replaced, or a shape `apply` names.
        _ => d.apply(name, &kept()),
    }
}

/// What reconcile reads for a delta.
#[derive(Debug, Clone)]
pub struct DeltaView {
    pub snapshot: Snapshot,
    /// With edited software: the products whose packages `snapshot.software` lists (the
    /// others keep their stored installs); see [`crate::reconcile::Desired::install_scope`].
    pub install_scope: Option<BTreeSet<String>>,
}

/// The products a software edit touches.
fn touched_products(d: &ListDelta<Software>) -> BTreeSet<String> {
    d.removed
        .iter()
        .map(|(_, name, _)| name.as_str())
        .chain(d.added.iter().chain(&d.changed).map(|s| s.name.as_str()))
        .map(crate::reconcile::product_id)
        .collect()
}

/// The snapshot reconcile reads for `delta` against the stored state of its computer.
/// `base_uncollected` are the sections the base did not collect: editing one is refused.
pub fn view(
    stored: &OwnedState,
    delta: &Delta,
    base_uncollected: &[String],
) -> Result<DeltaView, DeltaError> {
    for (name, op) in [
        ("filesystems", delta.filesystems.op),
        ("software", delta.software.op),
        ("services", delta.services.op),
        ("users", delta.users.op),
        ("listening_ports", delta.listening_ports.op),
    ] {
        if op == Op::Edited && base_uncollected.iter().any(|b| b == name) {
            return Err(DeltaError {
                field: format!("{name}.op"),
                problem: format!("edits {name}, which the base did not collect: send it replaced"),
            });
        }
    }
    let attrs = stored.computer.as_ref().map(|c| &c.attributes);
    let volatile = stored.computer.as_ref().map(|c| &c.volatile);
    let install_scope = (delta.software.op == Op::Edited && delta.software.section.is_none())
        .then(|| touched_products(&delta.software));
    let snapshot = Snapshot {
        schema_version: SCHEMA_VERSION,
        agent_id: delta.agent_id.clone(),
        seq: delta.seq,
        collected_at: delta.collected_at,
        agent_version: delta.agent_version.clone(),
        system: whole("system", &delta.system)?,
        os: whole("os", &delta.os)?,
        cpus: whole("cpus", &delta.cpus)?,
        memory: whole("memory", &delta.memory)?,
        disks: whole("disks", &delta.disks)?,
        network_interfaces: whole("network_interfaces", &delta.network_interfaces)?,
        filesystems: list("filesystems", &delta.filesystems, || {
            stored_filesystems(attrs, volatile)
        })?,
        software: list("software", &delta.software, || {
            stored_software(stored, install_scope.as_ref())
        })?,
        services: list("services", &delta.services, || stored_services(stored))?,
        users: list("users", &delta.users, || stored_users(attrs))?,
        listening_ports: list("listening_ports", &delta.listening_ports, || {
            stored_ports(attrs)
        })?,
        connections: whole("connections", &delta.connections)?,
    };
    Ok(DeltaView {
        snapshot,
        install_scope,
    })
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn list_attribute<'a>(attrs: Option<&'a Attributes>, key: &str) -> &'a [Value] {
    attrs
        .and_then(|a| a.get(key))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn stored_software(stored: &OwnedState, products: Option<&BTreeSet<String>>) -> Vec<Software> {
    stored
        .installs
        .iter()
        .filter(|i| products.is_none_or(|p| p.contains(&i.product)))
        .map(|i| {
            let p = &i.package;
            Software {
                name: p.name.clone().unwrap_or_default(),
                version: p.version.clone().unwrap_or_default(),
                arch: p.arch.clone(),
                publisher: p.publisher.clone(),
                source: p.source.clone().unwrap_or_default(),
                source_package: p.source_package.clone(),
                installed_size_bytes: None,
                install_date: i.installed_at,
            }
        })
        .collect()
}

fn stored_services(stored: &OwnedState) -> Vec<Service> {
    stored
        .components
        .iter()
        .filter(|c| c.class == CiClass::Service && c.status != CiStatus::Retired)
        .map(|c| {
            let a = |k: &str| {
                c.attributes
                    .get(k)
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            Service {
                name: a("name").unwrap_or_default(),
                manager: a("manager").unwrap_or_default(),
                state: c
                    .volatile
                    .get("state")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                enabled: a("enabled"),
                description: a("description"),
            }
        })
        .collect()
}

fn stored_users(attrs: Option<&Attributes>) -> Vec<User> {
    list_attribute(attrs, "users.local")
        .iter()
        .map(|u| User {
            name: text(u, "name").unwrap_or_default(),
            uid: u.get("uid").and_then(Value::as_u64).map(|v| v as u32),
            gid: None,
            full_name: None,
            home: None,
            shell: text(u, "shell"),
            login_shell: u
                .get("login_shell")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
        .collect()
}

fn stored_ports(attrs: Option<&Attributes>) -> Vec<ListeningPort> {
    list_attribute(attrs, "ports.listening")
        .iter()
        .map(|p| ListeningPort {
            protocol: text(p, "protocol").unwrap_or_default(),
            address: text(p, "address").unwrap_or_default(),
            port: p.get("port").and_then(Value::as_u64).unwrap_or(0) as u16,
            process: text(p, "process").filter(|s| !s.is_empty()),
            pid: None,
            user: None,
        })
        .collect()
}

fn stored_filesystems(
    attrs: Option<&Attributes>,
    volatile: Option<&Attributes>,
) -> Vec<Filesystem> {
    let free: BTreeMap<&str, u64> = volatile
        .and_then(|v| v.get("filesystems.free_bytes"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    list_attribute(attrs, "filesystems.mounts")
        .iter()
        .map(|f| {
            let mount_point = text(f, "mount_point").unwrap_or_default();
            Filesystem {
                free_bytes: free.get(mount_point.as_str()).copied(),
                device: text(f, "device").unwrap_or_default(),
                fs_type: text(f, "fs_type").unwrap_or_default(),
                total_bytes: f.get("total_bytes").and_then(Value::as_u64).unwrap_or(0),
                read_only: f.get("read_only").and_then(Value::as_bool).unwrap_or(false),
                mount_point,
            }
        })
        .collect()
}
