//! Protocol v2: a changed inventory sent as its difference from the agent's last
//! acknowledged one.
//!
//! A [`Delta`] names its base (`base_seq` and `base_hash`: the seq and content hash of the
//! snapshot the collector last accepted from this agent) and the content hash of the
//! inventory it describes, then says of every section: `unchanged`, `replaced` (the whole
//! section, collected, failed or unsupported), or, for the keyed lists, `edited`: groups
//! added, keys removed, groups changed. Entries that share a natural key (two versions of one
//! rpm) form one group and travel together, so a key always names one thing.
//!
//! Which sections may be edited is part of the type: software, services, users, listening
//! ports and filesystems ([`ListDelta`]). The scalar sections (system, os, cpus, memory) and
//! the two lists the CMDB builds from the whole list (disks and network interfaces: loop
//! devices and loopback are filtered, addresses and MACs are aggregated over every
//! interface) are only ever unchanged or replaced ([`SectionDelta`]); all of them together
//! are under 1 KB compressed.
//!
//! Entries carry their volatile facts as a snapshot does, so base + delta is the target
//! exactly: [`Delta::apply`] rebuilds it and checks its content hash against the delta's.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::canonical::ContentHash;
use crate::limits::{Bounded, LimitError, Path, MAX_AGENT_ID_BYTES};
use crate::schema::*;

/// The protocol version a delta declares.
pub const PROTOCOL_VERSION: u32 = 2;
/// Most operations (groups added or changed, keys removed) in one delta. An agent whose
/// change is larger sends a full snapshot.
pub const MAX_DELTA_OPS: usize = 20_000;
/// Longest content hash (hex SHA-256 is 64).
pub const MAX_HASH_BYTES: usize = 128;

/// What happened to a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Unchanged,
    Replaced,
    Edited,
}

/// A section that is unchanged or replaced whole: `{"op":"unchanged"}` or
/// `{"op":"replaced","section":{"status":...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SectionDelta<T> {
    pub op: Op,
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    pub section: Option<Section<T>>,
}

/// A keyed list section: unchanged, replaced whole, or edited group by group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(
    serialize = "T: Serialize, T::Key: Serialize",
    deserialize = "T: Deserialize<'de>, T::Key: Deserialize<'de>"
))]
pub struct ListDelta<T: Keyed> {
    pub op: Op,
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    pub section: Option<Section<Vec<T>>>,
    /// Entries whose key the base does not hold.
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<T>,
    /// Keys whose entries are gone.
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<T::Key>,
    /// Every entry of each key whose group differs from the base's.
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<T>,
}

/// A list entry with a natural key.
pub trait Keyed: Clone + Ord + Bounded {
    type Key: Clone + Ord + Debug + Serialize + DeserializeOwned + Bounded;
    fn key(&self) -> Self::Key;
}

impl Keyed for Software {
    /// (source, name, arch)
    type Key = (String, String, Option<String>);
    fn key(&self) -> Self::Key {
        (self.source.clone(), self.name.clone(), self.arch.clone())
    }
}

impl Keyed for Service {
    /// (manager, name)
    type Key = (String, String);
    fn key(&self) -> Self::Key {
        (self.manager.clone(), self.name.clone())
    }
}

impl Keyed for User {
    type Key = String;
    fn key(&self) -> Self::Key {
        self.name.clone()
    }
}

impl Keyed for ListeningPort {
    /// (protocol, address, port)
    type Key = (String, String, u16);
    fn key(&self) -> Self::Key {
        (self.protocol.clone(), self.address.clone(), self.port)
    }
}

impl Keyed for Filesystem {
    type Key = String;
    fn key(&self) -> Self::Key {
        self.mount_point.clone()
    }
}

/// A changed inventory as the difference from its base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delta {
    pub protocol: u32,
    pub schema_version: u32,
    pub agent_id: String,
    pub seq: u64,
    /// The seq of the snapshot (or delta) this one is relative to.
    pub base_seq: u64,
    /// The base's content hash.
    pub base_hash: ContentHash,
    /// The content hash of the inventory this delta describes.
    pub content_hash: ContentHash,
    pub collected_at: DateTime<Utc>,
    pub agent_version: String,
    pub system: SectionDelta<System>,
    pub os: SectionDelta<Os>,
    pub cpus: SectionDelta<Vec<Cpu>>,
    pub memory: SectionDelta<Memory>,
    pub disks: SectionDelta<Vec<Disk>>,
    pub filesystems: ListDelta<Filesystem>,
    pub network_interfaces: SectionDelta<Vec<NetworkInterface>>,
    pub software: ListDelta<Software>,
    pub services: ListDelta<Service>,
    pub users: ListDelta<User>,
    pub listening_ports: ListDelta<ListeningPort>,
    /// Always sent whole when it changed (flows are volatile and few); left out of the
    /// bytes when unchanged, as a collector from before the section expects.
    #[serde(
        default = "SectionDelta::unchanged",
        skip_serializing_if = "SectionDelta::is_unchanged"
    )]
    pub connections: SectionDelta<Vec<Connection>>,
}

/// Why a delta cannot be applied: the operation or field it names, and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct DeltaError {
    /// The operation, such as `software.removed[3]`, or the field.
    pub field: String,
    pub problem: String,
}

fn delta_error(field: impl Into<String>, problem: impl Into<String>) -> DeltaError {
    DeltaError {
        field: field.into(),
        problem: problem.into(),
    }
}

impl<T: PartialEq + Clone> SectionDelta<T> {
    pub fn unchanged() -> Self {
        SectionDelta {
            op: Op::Unchanged,
            section: None,
        }
    }

    pub fn is_unchanged(&self) -> bool {
        self.op == Op::Unchanged && self.section.is_none()
    }

    pub fn replaced(section: Section<T>) -> Self {
        SectionDelta {
            op: Op::Replaced,
            section: Some(section),
        }
    }

    fn between(base: &Section<T>, target: &Section<T>) -> Self {
        if base == target {
            Self::unchanged()
        } else {
            Self::replaced(target.clone())
        }
    }

    /// Whether the section is collected after this delta, given whether the base's was.
    pub fn collected_after(&self, base_collected: bool) -> bool {
        match (self.op, &self.section) {
            (Op::Replaced, Some(s)) => s.is_collected(),
            _ => base_collected,
        }
    }

    /// The section after this delta.
    pub fn apply(&self, name: &str, base: &Section<T>) -> Result<Section<T>, DeltaError> {
        match (self.op, &self.section) {
            (Op::Unchanged, None) => Ok(base.clone()),
            (Op::Replaced, Some(s)) => Ok(s.clone()),
            (Op::Edited, _) => Err(delta_error(
                format!("{name}.op"),
                format!("{name} is sent unchanged or replaced, never edited"),
            )),
            (Op::Unchanged, Some(_)) => Err(delta_error(
                format!("{name}.section"),
                "an unchanged section carries no section",
            )),
            (Op::Replaced, None) => Err(delta_error(
                format!("{name}.section"),
                "a replaced section carries the section",
            )),
        }
    }
}

impl<T: Keyed> ListDelta<T> {
    pub fn unchanged() -> Self {
        ListDelta {
            op: Op::Unchanged,
            section: None,
            added: Vec::new(),
            removed: Vec::new(),
            changed: Vec::new(),
        }
    }

    pub fn replaced(section: Section<Vec<T>>) -> Self {
        ListDelta {
            section: Some(section),
            op: Op::Replaced,
            ..Self::unchanged()
        }
    }

    /// Whether the section is collected after this delta, given whether the base's was.
    pub fn collected_after(&self, base_collected: bool) -> bool {
        match (self.op, &self.section) {
            (Op::Replaced, Some(s)) => s.is_collected(),
            _ => base_collected,
        }
    }

    /// Operations this delta carries (groups' entries added or changed, keys removed).
    pub fn ops(&self) -> usize {
        self.added.len() + self.removed.len() + self.changed.len()
    }

    /// Unchanged when equal; edited when both are collected and the edits are smaller than
    /// the list; replaced otherwise. Both lists in canonical order.
    fn between(base: &Section<Vec<T>>, target: &Section<Vec<T>>) -> Self {
        if base == target {
            return Self::unchanged();
        }
        let (Some(old), Some(new)) = (base.data(), target.data()) else {
            return Self::replaced(target.clone());
        };
        let old = groups(old);
        let new_groups = groups(new);
        let mut d = Self {
            op: Op::Edited,
            ..Self::unchanged()
        };
        for (key, group) in &new_groups {
            match old.get(key) {
                None => d.added.extend(group.iter().map(|e| (*e).clone())),
                Some(before) if before != group => {
                    d.changed.extend(group.iter().map(|e| (*e).clone()))
                }
                Some(_) => {}
            }
        }
        d.removed = old
            .keys()
            .filter(|k| !new_groups.contains_key(*k))
            .cloned()
            .collect();
        if d.ops() >= new.len() {
            return Self::replaced(target.clone());
        }
        d
    }

    /// The section after this delta. An edit needs a collected base.
    pub fn apply(&self, name: &str, base: &Section<Vec<T>>) -> Result<Section<Vec<T>>, DeltaError> {
        if self.op != Op::Edited && self.ops() > 0 {
            return Err(delta_error(
                format!("{name}.op"),
                "only an edited section carries added, removed or changed entries",
            ));
        }
        match (self.op, &self.section) {
            (Op::Unchanged, None) => Ok(base.clone()),
            (Op::Replaced, Some(s)) => Ok(s.clone()),
            (Op::Edited, None) => {
                let Some(entries) = base.data() else {
                    return Err(delta_error(
                        format!("{name}.op"),
                        format!(
                            "edits {name}, which the base reported {:?}: send it replaced",
                            base.status
                        )
                        .to_lowercase(),
                    ));
                };
                Ok(Section::collected(self.apply_edits(name, entries.clone())?))
            }
            (Op::Unchanged | Op::Edited, Some(_)) => Err(delta_error(
                format!("{name}.section"),
                "only a replaced section carries the section",
            )),
            (Op::Replaced, None) => Err(delta_error(
                format!("{name}.section"),
                "a replaced section carries the section",
            )),
        }
    }

    /// Applies the edits to the entries of a collected base, in canonical order. Every
    /// key is checked against the base: a removal or change of a key the base does not
    /// hold, an addition of one it holds, or a key named by two operations is refused,
    /// naming the operation.
    pub fn apply_edits(&self, name: &str, base: Vec<T>) -> Result<Vec<T>, DeltaError> {
        let mut held: BTreeMap<T::Key, Vec<T>> = BTreeMap::new();
        for e in base {
            held.entry(e.key()).or_default().push(e);
        }
        let mut named: BTreeSet<T::Key> = BTreeSet::new();
        for (i, key) in self.removed.iter().enumerate() {
            let at = || format!("{name}.removed[{i}]");
            if !named.insert(key.clone()) {
                return Err(delta_error(at(), format!("{key:?} is named twice")));
            }
            if held.remove(key).is_none() {
                return Err(delta_error(
                    at(),
                    format!("removes {key:?}, which the base does not hold"),
                ));
            }
        }
        let mut replacing: BTreeMap<T::Key, Vec<T>> = BTreeMap::new();
        for (list, entries, must_hold) in [
            ("changed", &self.changed, true),
            ("added", &self.added, false),
        ] {
            let mut here: BTreeSet<T::Key> = BTreeSet::new();
            let mut previous: Option<T::Key> = None;
            for (i, e) in entries.iter().enumerate() {
                let key = e.key();
                let at = || format!("{name}.{list}[{i}]");
                // Entries of one group sit together in one list; the same key in another
                // list, or after the group ended, is a second operation on it.
                let continues = previous.as_ref() == Some(&key);
                previous = Some(key.clone());
                if !continues && (here.contains(&key) || named.contains(&key)) {
                    return Err(delta_error(at(), format!("{key:?} is named twice")));
                }
                if !continues {
                    match (must_hold, held.contains_key(&key)) {
                        (true, false) => {
                            return Err(delta_error(
                                at(),
                                format!("changes {key:?}, which the base does not hold"),
                            ))
                        }
                        (false, true) => {
                            return Err(delta_error(
                                at(),
                                format!("adds {key:?}, which the base already holds"),
                            ))
                        }
                        _ => {}
                    }
                    here.insert(key.clone());
                }
                replacing.entry(key).or_default().push(e.clone());
            }
            named.extend(here);
        }
        held.extend(replacing);
        let mut out: Vec<T> = held.into_values().flatten().collect();
        out.sort();
        Ok(out)
    }
}

/// Entries by key; each group in canonical order.
fn groups<T: Keyed>(entries: &[T]) -> BTreeMap<T::Key, Vec<&T>> {
    let mut g: BTreeMap<T::Key, Vec<&T>> = BTreeMap::new();
    for e in entries {
        g.entry(e.key()).or_default().push(e);
    }
    for group in g.values_mut() {
        group.sort();
    }
    g
}

impl Snapshot {
    /// The sections this snapshot did not collect (failed or unsupported), by field name:
    /// a delta against it may not edit them.
    pub fn uncollected_sections(&self) -> Vec<&'static str> {
        [
            ("system", self.system.is_collected()),
            ("os", self.os.is_collected()),
            ("cpus", self.cpus.is_collected()),
            ("memory", self.memory.is_collected()),
            ("disks", self.disks.is_collected()),
            ("filesystems", self.filesystems.is_collected()),
            ("network_interfaces", self.network_interfaces.is_collected()),
            ("software", self.software.is_collected()),
            ("services", self.services.is_collected()),
            ("users", self.users.is_collected()),
            ("listening_ports", self.listening_ports.is_collected()),
            ("connections", self.connections.is_collected()),
        ]
        .into_iter()
        .filter(|(_, collected)| !collected)
        .map(|(name, _)| name)
        .collect()
    }
}

impl Delta {
    /// The sections the target did not collect, from the base's and this delta's
    /// operations: unchanged sections keep the base's status.
    pub fn uncollected_after(&self, base_uncollected: &[String]) -> Vec<&'static str> {
        let was = |name: &str| !base_uncollected.iter().any(|b| b == name);
        [
            ("system", self.system.collected_after(was("system"))),
            ("os", self.os.collected_after(was("os"))),
            ("cpus", self.cpus.collected_after(was("cpus"))),
            ("memory", self.memory.collected_after(was("memory"))),
            ("disks", self.disks.collected_after(was("disks"))),
            (
                "filesystems",
                self.filesystems.collected_after(was("filesystems")),
            ),
            (
                "network_interfaces",
                self.network_interfaces
                    .collected_after(was("network_interfaces")),
            ),
            ("software", self.software.collected_after(was("software"))),
            ("services", self.services.collected_after(was("services"))),
            ("users", self.users.collected_after(was("users"))),
            (
                "listening_ports",
                self.listening_ports.collected_after(was("listening_ports")),
            ),
            (
                "connections",
                self.connections.collected_after(was("connections")),
            ),
        ]
        .into_iter()
        .filter(|(_, collected)| !collected)
        .map(|(name, _)| name)
        .collect()
    }

    /// The delta from `base` (acknowledged as `base_seq`) to `target`. Both snapshots must
    /// be in canonical order ([`Snapshot::canonicalize_order`]); `target.seq` becomes the
    /// delta's seq.
    pub fn between(base: &Snapshot, base_seq: u64, target: &Snapshot) -> Delta {
        Delta {
            protocol: PROTOCOL_VERSION,
            schema_version: target.schema_version,
            agent_id: target.agent_id.clone(),
            seq: target.seq,
            base_seq,
            base_hash: base.content_hash(),
            content_hash: target.content_hash(),
            collected_at: target.collected_at,
            agent_version: target.agent_version.clone(),
            system: SectionDelta::between(&base.system, &target.system),
            os: SectionDelta::between(&base.os, &target.os),
            cpus: SectionDelta::between(&base.cpus, &target.cpus),
            memory: SectionDelta::between(&base.memory, &target.memory),
            disks: SectionDelta::between(&base.disks, &target.disks),
            filesystems: ListDelta::between(&base.filesystems, &target.filesystems),
            network_interfaces: SectionDelta::between(
                &base.network_interfaces,
                &target.network_interfaces,
            ),
            software: ListDelta::between(&base.software, &target.software),
            services: ListDelta::between(&base.services, &target.services),
            users: ListDelta::between(&base.users, &target.users),
            listening_ports: ListDelta::between(&base.listening_ports, &target.listening_ports),
            connections: SectionDelta::between(&base.connections, &target.connections),
        }
    }

    /// Every operation in the delta.
    pub fn ops(&self) -> usize {
        self.filesystems.ops()
            + self.software.ops()
            + self.services.ops()
            + self.users.ops()
            + self.listening_ports.ops()
    }

    /// The snapshot this delta describes, rebuilt from its base, in canonical order; its
    /// content hash must be the delta's.
    pub fn apply(&self, base: &Snapshot) -> Result<Snapshot, DeltaError> {
        let target = Snapshot {
            schema_version: self.schema_version,
            agent_id: self.agent_id.clone(),
            seq: self.seq,
            collected_at: self.collected_at,
            agent_version: self.agent_version.clone(),
            system: self.system.apply("system", &base.system)?,
            os: self.os.apply("os", &base.os)?,
            cpus: self.cpus.apply("cpus", &base.cpus)?,
            memory: self.memory.apply("memory", &base.memory)?,
            disks: self.disks.apply("disks", &base.disks)?,
            filesystems: self.filesystems.apply("filesystems", &base.filesystems)?,
            network_interfaces: self
                .network_interfaces
                .apply("network_interfaces", &base.network_interfaces)?,
            software: self.software.apply("software", &base.software)?,
            services: self.services.apply("services", &base.services)?,
            users: self.users.apply("users", &base.users)?,
            listening_ports: self
                .listening_ports
                .apply("listening_ports", &base.listening_ports)?,
            connections: self.connections.apply("connections", &base.connections)?,
        };
        let mut target = target;
        target.canonicalize_order();
        let found = target.content_hash();
        if found != self.content_hash {
            return Err(delta_error(
                "content_hash",
                format!(
                    "the base with this delta hashes to {found}, not {}",
                    self.content_hash
                ),
            ));
        }
        Ok(target)
    }

    /// Checks the version, every bound, and that each section's operation and payload
    /// agree; names the first offending field.
    pub fn check_limits(&self) -> Result<(), LimitError> {
        let root = Path::Root;
        let err = |field: &'static str, problem: String| LimitError {
            field: field.into(),
            problem,
        };
        if self.agent_id.len() > MAX_AGENT_ID_BYTES {
            return Err(err(
                "agent_id",
                format!("agent id longer than {MAX_AGENT_ID_BYTES} bytes"),
            ));
        }
        for (field, hash) in [
            ("base_hash", &self.base_hash),
            ("content_hash", &self.content_hash),
        ] {
            if hash.len() > MAX_HASH_BYTES {
                return Err(err(
                    field,
                    format!("content hash longer than {MAX_HASH_BYTES} bytes"),
                ));
            }
        }
        if self.base_seq >= self.seq {
            return Err(err(
                "base_seq",
                format!(
                    "base seq {} is not below the delta's seq {}",
                    self.base_seq, self.seq
                ),
            ));
        }
        if self.ops() > MAX_DELTA_OPS {
            return Err(err(
                "body",
                format!(
                    "{} operations exceed the limit of {MAX_DELTA_OPS}; send a full snapshot",
                    self.ops()
                ),
            ));
        }
        self.check(root)
    }
}

impl<T: Bounded> Bounded for SectionDelta<T> {
    fn check(&self, path: Path<'_>) -> Result<(), LimitError> {
        self.section.check(Path::Field(&path, "section"))
    }
}

impl<T: Keyed> Bounded for ListDelta<T> {
    fn check(&self, path: Path<'_>) -> Result<(), LimitError> {
        self.section.check(Path::Field(&path, "section"))?;
        self.added.check(Path::Field(&path, "added"))?;
        self.changed.check(Path::Field(&path, "changed"))?;
        // Keys are bounded by the list they name, not as a list of their own type.
        let removed = Path::Field(&path, "removed");
        if self.removed.len() > T::MAX_ITEMS {
            return Err(LimitError {
                field: removed.render(),
                problem: format!(
                    "list of {} keys exceeds the limit of {}",
                    self.removed.len(),
                    T::MAX_ITEMS
                ),
            });
        }
        for (i, key) in self.removed.iter().enumerate() {
            key.check(Path::Index(&removed, i))?;
        }
        Ok(())
    }
}

impl Bounded for Op {
    fn check(&self, _: Path<'_>) -> Result<(), LimitError> {
        Ok(())
    }
}

crate::limits::bounded_struct!(Delta, max_items = 1, {
    protocol, schema_version, agent_id, seq, base_seq, base_hash, content_hash, collected_at,
    agent_version, system, os, cpus, memory, disks, filesystems, network_interfaces, software,
    services, users, listening_ports, connections,
});

#[cfg(test)]
mod tests {
    use super::*;

    fn sw(name: &str, version: &str) -> Software {
        Software {
            name: name.into(),
            version: version.into(),
            arch: Some("amd64".into()),
            source: "dpkg".into(),
            ..Default::default()
        }
    }

    fn edited(d: ListDelta<Software>) -> ListDelta<Software> {
        ListDelta {
            op: Op::Edited,
            ..d
        }
    }

    #[test]
    fn a_group_of_one_key_travels_together() {
        let base = vec![
            sw("gpg-pubkey", "1"),
            sw("gpg-pubkey", "2"),
            sw("zlib", "1"),
        ];
        let target = vec![
            sw("gpg-pubkey", "1"),
            sw("gpg-pubkey", "3"),
            sw("zlib", "1"),
        ];
        let d = ListDelta::between(
            &Section::collected(base.clone()),
            &Section::collected(target.clone()),
        );
        assert_eq!(d.op, Op::Edited);
        assert_eq!(d.changed, target[..2].to_vec());
        assert_eq!(d.apply_edits("software", base).unwrap(), target);
    }

    #[test]
    fn edits_naming_what_the_base_does_not_hold_are_refused_with_the_op() {
        let base = vec![sw("a", "1"), sw("b", "1")];
        let cases: Vec<(ListDelta<Software>, &str, &str)> = vec![
            (
                edited(ListDelta {
                    removed: vec![sw("c", "1").key()],
                    ..ListDelta::unchanged()
                }),
                "software.removed[0]",
                "does not hold",
            ),
            (
                edited(ListDelta {
                    changed: vec![sw("c", "2")],
                    ..ListDelta::unchanged()
                }),
                "software.changed[0]",
                "does not hold",
            ),
            (
                edited(ListDelta {
                    added: vec![sw("a", "2")],
                    ..ListDelta::unchanged()
                }),
                "software.added[0]",
                "already holds",
            ),
            (
                edited(ListDelta {
                    removed: vec![sw("a", "1").key(), sw("a", "1").key()],
                    ..ListDelta::unchanged()
                }),
                "software.removed[1]",
                "named twice",
            ),
            (
                edited(ListDelta {
                    removed: vec![sw("a", "1").key()],
                    changed: vec![sw("a", "2")],
                    ..ListDelta::unchanged()
                }),
                "software.changed[0]",
                "named twice",
            ),
            (
                edited(ListDelta {
                    changed: vec![sw("a", "2"), sw("b", "2"), sw("a", "3")],
                    ..ListDelta::unchanged()
                }),
                "software.changed[2]",
                "named twice",
            ),
        ];
        for (d, field, problem) in cases {
            let e = d.apply_edits("software", base.clone()).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.problem.contains(problem), "{e}");
        }
    }

    #[test]
    fn an_edit_of_a_failed_section_is_refused() {
        let d = edited(ListDelta {
            added: vec![sw("a", "1")],
            ..ListDelta::unchanged()
        });
        let e = d
            .apply("software", &Section::failed("dpkg locked"))
            .unwrap_err();
        assert_eq!(e.field, "software.op");
        assert!(e.problem.contains("failed"), "{e}");
    }

    #[test]
    fn operation_and_payload_must_agree() {
        let base = Section::collected(vec![sw("a", "1")]);
        let unchanged_with_ops = ListDelta {
            added: vec![sw("b", "1")],
            ..ListDelta::unchanged()
        };
        assert_eq!(
            unchanged_with_ops
                .apply("software", &base)
                .unwrap_err()
                .field,
            "software.op"
        );
        let replaced_without: ListDelta<Software> = ListDelta {
            op: Op::Replaced,
            ..ListDelta::unchanged()
        };
        assert_eq!(
            replaced_without.apply("software", &base).unwrap_err().field,
            "software.section"
        );
        let edited_disks: SectionDelta<Vec<Disk>> = SectionDelta {
            op: Op::Edited,
            section: None,
        };
        assert!(edited_disks
            .apply("disks", &Section::collected(vec![]))
            .unwrap_err()
            .problem
            .contains("never edited"));
    }

    #[test]
    fn a_large_change_is_sent_replaced() {
        let base = Section::collected(vec![sw("a", "1"), sw("b", "1")]);
        let target = Section::collected(vec![sw("a", "2"), sw("b", "2")]);
        assert_eq!(ListDelta::between(&base, &target).op, Op::Replaced);
    }
}
