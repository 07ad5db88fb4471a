//! The CMDB's records: configuration items, relationships, versions, agents, tokens, users,
//! identity conflicts and change records. Plain data; no I/O.

pub mod attributes;
pub mod baseline;
pub mod flows;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub type Attributes = BTreeMap<String, Value>;

/// An enum known by its snake_case names (the same as its serde names): `ALL`, `as_str`,
/// and `FromStr`, whose error names the refused value and every known one.
macro_rules! named {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: [$ty; [$($name),+].len()] = [$($ty::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(format!(
                        "unknown {} '{s}'; known: {}",
                        $what,
                        [$($name),+].join(", ")
                    )),
                }
            }
        }
    };
}

pub(crate) use named;

pub mod health;
pub mod licence;
pub mod register;
pub mod service;
pub mod titles;
pub mod vuln;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CiClass {
    Computer,
    OperatingSystem,
    SoftwareProduct,
    Disk,
    NetworkInterface,
    IpAddress,
    Subnet,
    Service,
}

impl CiClass {
    /// Shared CIs (one per product, OS release or subnet) are referenced by many computers
    /// and never owned by one.
    pub fn is_shared(self) -> bool {
        matches!(
            self,
            CiClass::OperatingSystem | CiClass::SoftwareProduct | CiClass::Subnet
        )
    }
    /// The id prefix, so an id says what it names.
    pub fn id_prefix(self) -> &'static str {
        match self {
            CiClass::Computer => "cmp",
            CiClass::OperatingSystem => "os",
            CiClass::SoftwareProduct => "sw",
            CiClass::Disk => "dsk",
            CiClass::NetworkInterface => "nic",
            CiClass::IpAddress => "ip",
            CiClass::Subnet => "net",
            CiClass::Service => "svc",
        }
    }
}

named!(CiClass, "CI class", {
    Computer => "computer",
    OperatingSystem => "operating_system",
    SoftwareProduct => "software_product",
    Disk => "disk",
    NetworkInterface => "network_interface",
    IpAddress => "ip_address",
    Subnet => "subnet",
    Service => "service",
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CiStatus {
    Active,
    Stale,
    Retired,
}

named!(CiStatus, "CI status", {
    Active => "active",
    Stale => "stale",
    Retired => "retired",
});

/// A configuration item in its current state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ci {
    pub id: String,
    pub class: CiClass,
    pub name: String,
    /// Configuration: a change here is drift and writes a history version.
    #[schema(value_type = BTreeMap<String, serde_json::Value>)]
    pub attributes: Attributes,
    /// Volatile facts (uptime, free space, ...): updated in place, never versioned.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, serde_json::Value>)]
    pub volatile: Attributes,
    pub status: CiStatus,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// Agent ids that reported this CI.
    #[serde(default)]
    pub sources: Vec<String>,
    /// The history version that holds this state (0 before the first write).
    pub version: u64,
    /// For owned components: the computer that owns them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RelKind {
    Runs,
    Installs,
    Has,
    HasAddress,
    In,
}

impl RelKind {
    pub fn from_name(name: &str) -> Option<RelKind> {
        name.parse().ok()
    }
}

named!(RelKind, "relationship kind", {
    Runs => "runs",
    Installs => "installs",
    Has => "has",
    HasAddress => "has_address",
    In => "in",
});

/// Identifies one edge. `discriminator` separates parallel edges between the same pair
/// (libc6 installed for amd64 and for i386).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct RelKey {
    pub from: String,
    pub kind: RelKind,
    pub to: String,
    #[serde(default)]
    pub discriminator: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Relationship {
    pub key: RelKey,
    #[schema(value_type = BTreeMap<String, serde_json::Value>)]
    pub attributes: Attributes,
}

/// What an `installs` edge says about its package. Thousands of computers share each exact
/// package (a variant), so the store keeps it once per fleet and hands out shared copies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    pub name: Option<String>,
    pub version: Option<String>,
    pub arch: Option<String>,
    pub source: Option<String>,
    pub publisher: Option<String>,
    pub source_package: Option<String>,
}

impl Package {
    /// The edge attributes a package holds, in this order.
    pub const FIELDS: [&'static str; 6] = [
        "name",
        "version",
        "arch",
        "source",
        "publisher",
        "source_package",
    ];

    pub fn fields(&self) -> [&Option<String>; 6] {
        [
            &self.name,
            &self.version,
            &self.arch,
            &self.source,
            &self.publisher,
            &self.source_package,
        ]
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        Self::FIELDS
            .iter()
            .position(|f| *f == name)
            .and_then(|i| self.fields()[i].as_deref())
    }

    /// The package an `installs` edge's attributes name (text fields only; others are
    /// not a package's).
    pub fn from_attributes(edge: &Attributes) -> Package {
        let text = |k: &str| edge.get(k).and_then(Value::as_str).map(str::to_string);
        Package {
            name: text("name"),
            version: text("version"),
            arch: text("arch"),
            source: text("source"),
            publisher: text("publisher"),
            source_package: text("source_package"),
        }
    }
}

/// One package installed on a computer: its `installs` edge, typed. Ingest, the plan, drift
/// and the store work on this; [`Install::relationship`] is the edge people see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    /// The software product CI.
    pub product: String,
    /// Separates parallel installs of one product (libc6 for amd64 and for i386).
    pub discriminator: String,
    pub package: std::sync::Arc<Package>,
    /// Whole seconds (agents report file times to the nanosecond; the fraction is noise).
    pub installed_at: Option<DateTime<Utc>>,
}

impl Install {
    pub fn field(&self, name: &str) -> Option<String> {
        match name {
            "install_date" => self.installed_at.map(|t| t.to_rfc3339()),
            _ => self.package.field(name).map(str::to_string),
        }
    }

    /// The edge's attributes as the API shows them.
    pub fn attributes(&self) -> Attributes {
        let mut a: Attributes = Package::FIELDS
            .iter()
            .zip(self.package.fields())
            .filter_map(|(k, v)| Some((k.to_string(), Value::String(v.clone()?))))
            .collect();
        if let Some(t) = self.installed_at {
            a.insert("install_date".into(), Value::String(t.to_rfc3339()));
        }
        a
    }

    pub fn relationship(&self, from: &str) -> Relationship {
        Relationship {
            key: RelKey {
                from: from.to_string(),
                kind: RelKind::Installs,
                to: self.product.clone(),
                discriminator: self.discriminator.clone(),
            },
            attributes: self.attributes(),
        }
    }

    /// An `installs` edge as an install; `None` for another kind of edge or an attribute
    /// a package cannot hold (such an edge stays an edge).
    pub fn from_relationship(r: &Relationship) -> Option<Install> {
        if r.key.kind != RelKind::Installs {
            return None;
        }
        let text = |k: &str| -> Option<Option<String>> {
            match r.attributes.get(k) {
                None => Some(None),
                Some(Value::String(s)) => Some(Some(s.clone())),
                Some(_) => None,
            }
        };
        let installed_at = match r.attributes.get("install_date") {
            None => None,
            Some(Value::String(s)) => {
                Some(DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc))
            }
            Some(_) => return None,
        };
        let known = Package::FIELDS.len() + 1;
        let listed = Package::FIELDS
            .iter()
            .chain(["install_date"].iter())
            .filter(|k| r.attributes.contains_key(**k))
            .count();
        if r.attributes.len() != listed || listed > known {
            return None;
        }
        let install = Install {
            product: r.key.to.clone(),
            discriminator: r.key.discriminator.clone(),
            package: std::sync::Arc::new(Package {
                name: text("name")?,
                version: text("version")?,
                arch: text("arch")?,
                source: text("source")?,
                publisher: text("publisher")?,
                source_package: text("source_package")?,
            }),
            installed_at,
        };
        // Only an edge that renders back to itself is an install (an odd date format stays
        // an edge, with its text as it was).
        (install.attributes() == r.attributes).then_some(install)
    }
}

/// One version of a CI: its configuration and its outgoing edges from `valid_from` until
/// the next version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CiVersion {
    pub ci_id: String,
    pub version: u64,
    pub valid_from: DateTime<Utc>,
    pub ci: Ci,
    pub relationships: Vec<Relationship>,
    /// The change record that this version belongs to, if drift raised one.
    #[serde(default)]
    pub change_record: Option<String>,
}

/// How a snapshot's machine was matched to its CI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IdentificationEvidence {
    /// "serial", "system_uuid", "machine_id", "mac_set", "hostname", "agent" (already
    /// linked) or "new".
    pub rule: String,
    pub value: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub id: String,
    /// `ed25519:<base64>`.
    pub public_key: String,
    pub enrolled_at: DateTime<Utc>,
    pub token_id: String,
    pub agent_version: String,
    pub facts: census_shared::protocol::IdentityFacts,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The last accepted seq (snapshot or heartbeat); 0 before the first.
    pub last_seq: u64,
    pub last_seen: Option<DateTime<Utc>>,
    /// Content hash of the last accepted snapshot or delta.
    pub last_content_hash: Option<String>,
    /// The seq of the last accepted snapshot or delta: the base the agent's next delta
    /// must name (heartbeats do not move it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_seq: Option<u64>,
    /// Sections that inventory did not collect: a delta may not edit them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub base_uncollected: Vec<String>,
    pub ci_id: Option<String>,
    pub identification: Option<IdentificationEvidence>,
    /// collected_at minus the collector's clock, seconds, at the last snapshot.
    pub clock_skew_seconds: Option<i64>,
    /// Set when a later agent took over this agent's CI (reimaged machine).
    #[serde(default)]
    pub superseded_by: Option<String>,
}

impl Agent {
    /// A newly enrolled agent: nothing accepted yet, no CI.
    pub fn enrolled(
        id: String,
        public_key: String,
        agent_version: String,
        facts: census_shared::protocol::IdentityFacts,
        now: DateTime<Utc>,
    ) -> Agent {
        Agent {
            id,
            public_key,
            enrolled_at: now,
            token_id: String::new(),
            agent_version,
            facts,
            revoked_at: None,
            last_seq: 0,
            last_seen: None,
            last_content_hash: None,
            base_seq: None,
            base_uncollected: Vec::new(),
            ci_id: None,
            identification: None,
            clock_skew_seconds: None,
            superseded_by: None,
        }
    }

    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnrollmentToken {
    /// Short public id ("tok_…") for listing and revoking; the secret is never stored.
    pub id: String,
    /// SHA-256 of the secret, hex.
    pub secret_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub max_uses: u32,
    pub uses: u32,
    pub revoked_at: Option<DateTime<Utc>>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    ChangeManager,
    AssetManager,
    Auditor,
}

named!(Role, "role", {
    Admin => "admin",
    ChangeManager => "change_manager",
    AssetManager => "asset_manager",
    Auditor => "auditor",
});

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub disabled: bool,
    /// Argon2id PHC string, for password login; None means API tokens only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
}

/// Two agents whose machines match one identity: a person decides, the collector never
/// merges them silently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IdentityConflict {
    pub id: String,
    pub raised_at: DateTime<Utc>,
    pub rule: String,
    pub value: String,
    pub existing_ci: String,
    pub existing_agent: Option<String>,
    pub claiming_agent: String,
    /// The CI the claiming agent got instead (None while its snapshots wait on the decision).
    pub claiming_ci: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolution: Option<String>,
}

/// Which part of a computer's configuration a change item is about.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Aspect {
    Attribute,
    Os,
    Software,
    Disk,
    Nic,
    Ip,
    Service,
    User,
    Port,
    Mount,
}

impl Aspect {
    /// The CI class a noise rule names to reach this aspect's items.
    pub fn ci_class(self) -> CiClass {
        match self {
            Aspect::Software => CiClass::SoftwareProduct,
            Aspect::Disk => CiClass::Disk,
            Aspect::Nic => CiClass::NetworkInterface,
            Aspect::Ip => CiClass::IpAddress,
            Aspect::Service => CiClass::Service,
            Aspect::Os => CiClass::OperatingSystem,
            Aspect::Attribute | Aspect::User | Aspect::Port | Aspect::Mount => CiClass::Computer,
        }
    }
}

named!(Aspect, "aspect", {
    Attribute => "attribute",
    Os => "os",
    Software => "software",
    Disk => "disk",
    Nic => "nic",
    Ip => "ip",
    Service => "service",
    User => "user",
    Port => "port",
    Mount => "mount",
});

/// What happened to one aspect of a computer.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    AttributeChanged,
    KernelChanged,
    OsUpgraded,
    OsDowngraded,
    OsChanged,
    SoftwareInstalled,
    SoftwareRemoved,
    SoftwareUpgraded,
    SoftwareDowngraded,
    SoftwareChanged,
    DiskAdded,
    DiskRemoved,
    DiskChanged,
    NicAdded,
    NicRemoved,
    NicChanged,
    IpAdded,
    IpRemoved,
    IpMoved,
    IpChanged,
    ServiceAdded,
    ServiceRemoved,
    ServiceEnabled,
    ServiceDisabled,
    ServiceChanged,
    UserAdded,
    UserRemoved,
    UserChanged,
    PortOpened,
    PortClosed,
    PortChanged,
    MountAdded,
    MountRemoved,
    MountChanged,
}

named!(ItemKind, "change kind", {
    AttributeChanged => "attribute_changed",
    KernelChanged => "kernel_changed",
    OsUpgraded => "os_upgraded",
    OsDowngraded => "os_downgraded",
    OsChanged => "os_changed",
    SoftwareInstalled => "software_installed",
    SoftwareRemoved => "software_removed",
    SoftwareUpgraded => "software_upgraded",
    SoftwareDowngraded => "software_downgraded",
    SoftwareChanged => "software_changed",
    DiskAdded => "disk_added",
    DiskRemoved => "disk_removed",
    DiskChanged => "disk_changed",
    NicAdded => "nic_added",
    NicRemoved => "nic_removed",
    NicChanged => "nic_changed",
    IpAdded => "ip_added",
    IpRemoved => "ip_removed",
    IpMoved => "ip_moved",
    IpChanged => "ip_changed",
    ServiceAdded => "service_added",
    ServiceRemoved => "service_removed",
    ServiceEnabled => "service_enabled",
    ServiceDisabled => "service_disabled",
    ServiceChanged => "service_changed",
    UserAdded => "user_added",
    UserRemoved => "user_removed",
    UserChanged => "user_changed",
    PortOpened => "port_opened",
    PortClosed => "port_closed",
    PortChanged => "port_changed",
    MountAdded => "mount_added",
    MountRemoved => "mount_removed",
    MountChanged => "mount_changed",
});

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
}

named!(Severity, "severity", {
    Low => "low",
    Medium => "medium",
    High => "high",
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Accepted,
    Rejected,
}

/// A person's decision on a record or one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Review {
    pub decision: Decision,
    pub by: String,
    pub at: DateTime<Utc>,
    pub comment: String,
}

/// One configuration change between two versions of a computer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChangeItem {
    pub kind: ItemKind,
    pub aspect: Aspect,
    /// Unique within the aspect (a package's product and arch/source, a service's
    /// manager/name, an attribute's path).
    pub key: String,
    /// What people call it: package, service or user name, attribute path, "tcp/22".
    pub subject: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
    pub severity: Severity,
    /// Why this item does not count: "noise:<rule id>" or "flap".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<String>,
    /// The planned change that authorizes this item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_change: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    Open,
    Accepted,
    Rejected,
}

named!(RecordState, "state", {
    Open => "open",
    Accepted => "accepted",
    Rejected => "rejected",
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Authorization {
    Authorized,
    Unauthorized,
}

named!(Authorization, "authorization", {
    Authorized => "authorized",
    Unauthorized => "unauthorized",
});

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChangeRecord {
    pub id: String,
    pub ci_id: String,
    pub ci_name: String,
    pub agent_id: String,
    pub seq: u64,
    pub detected_at: DateTime<Utc>,
    pub from_version: u64,
    pub to_version: u64,
    pub items: Vec<ChangeItem>,
    /// The highest severity among items that count.
    pub severity: Severity,
    /// Authorized when every item that counts falls inside an open planned change.
    pub authorization: Authorization,
    pub planned_changes: Vec<String>,
    pub state: RecordState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
    /// The ITSM tickets this change is tracked by: those of the planned changes that
    /// authorize it (copied when it is detected), and any people link later.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tickets: Vec<TicketRef>,
    /// Baseline rules this change made the computer fail (it passed them, or they were
    /// unknown, before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compliance: Vec<ComplianceBreak>,
}

/// A baseline rule a change record's change broke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ComplianceBreak {
    pub baseline_id: String,
    pub baseline_name: String,
    pub rule: String,
    /// The failing verdict's evidence after the change ("also listens on 23").
    pub evidence: String,
}

/// A ticket in the ITSM tool that holds a change or an incident (ServiceNow CHG0012345,
/// a Jira key, a GLPI ticket number), with where people open it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketRef {
    /// The ticket's number in its tool: 1 to 100 characters, no control characters.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub id: String,
    /// An http or https address of the ticket (no credentials), at most 2048 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 2048, pattern = "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\\s]+")]
    pub url: Option<String>,
}

/// Matches change items: kind and subject are globs (`*`, `?`); `new` lists fields the
/// item's new value must hold (`{"login_shell": true}`); `ports`, when set, matches only
/// listening-port items whose port is in the range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemPattern {
    /// A glob over item kinds (`package_*`); it must match at least one kind.
    #[serde(default = "any")]
    #[schema(min_length = 1, max_length = 200, default = "*")]
    pub kind: String,
    /// A glob over subjects (package, service or user names, attribute paths, `tcp/22`).
    #[serde(default = "any")]
    #[schema(min_length = 1, max_length = 1000, default = "*")]
    pub subject: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub new: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<PortRange>,
}

/// Port numbers `from` to `to`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortRange {
    #[schema(maximum = 65535)]
    pub from: u16,
    #[schema(maximum = 65535)]
    pub to: u16,
}

fn any() -> String {
    "*".into()
}

/// Items an operator does not want raised, per CI class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NoiseRule {
    pub id: String,
    /// `computer` reaches every item of a computer's records; another class reaches the
    /// items about that kind of component (software_product, service, ...).
    pub class: CiClass,
    pub pattern: ItemPattern,
    pub note: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeverityRule {
    pub pattern: ItemPattern,
    /// When set, the rule matches only on computers that a business or application
    /// service of this criticality or a more critical one (1 is the most critical) runs
    /// on, directly or through a service depending on one that does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 4)]
    pub service_criticality: Option<u8>,
    pub severity: Severity,
}

/// Ordered: the first rule that matches an item gives its severity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SeverityRules {
    pub rules: Vec<SeverityRule>,
    /// Severity of an item no rule matches.
    pub default: Severity,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

/// Which computers a planned change covers: any listed id, any address inside a listed
/// subnet, any hostname matching a listed glob, or all.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanScope {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ci_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlannedState {
    Active,
    Cancelled,
}

/// A change request: what may change, where, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlannedChange {
    pub id: String,
    pub title: String,
    pub scope: PlanScope,
    pub allowed: Vec<ItemPattern>,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub state: PlannedState,
    /// The ITSM tickets that requested this change; records it authorizes carry them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tickets: Vec<TicketRef>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One append-only audit entry. `prev_hash` chains entries so a removed or altered entry
/// is detectable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    #[serde(default)]
    pub comment: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// An event of the changed-since feed, also what webhooks receive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FeedEvent {
    pub cursor: u64,
    /// "change_record.created", "change_record.reviewed", "change_record.tickets_changed"
    /// (with `record`) or
    /// "register.changed" (with `register`: people's data, never drift) or
    /// "vulnerability.exposed" / "vulnerability.fixed" (with `exposure`).
    #[serde(rename = "type")]
    pub event_type: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<ChangeRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register: Option<register::RegisterChange>,
    /// With "vulnerability.exposed" and "vulnerability.fixed": which (host, advisory)
    /// pairs opened or closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure: Option<vuln::ExposureChange>,
}

/// The feed event type of a register edit.
pub const REGISTER_CHANGED: &str = "register.changed";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    /// The HMAC-SHA256 key, shown once at creation.
    pub secret: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub active: bool,
}

/// One event on its way to one webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: String,
    pub webhook_id: String,
    pub cursor: u64,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    #[serde(default)]
    pub dead_at: Option<DateTime<Utc>>,
}

/// A removal remembered for flap suppression: if the same thing comes back within the
/// window, its return is marked, not raised again. Listening ports are remembered when
/// they appear too: one that closes again within the window is marked the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecentRemoval {
    pub aspect: Aspect,
    pub key: String,
    /// When it was removed (or, with `appeared`, when it appeared).
    pub removed_at: DateTime<Utc>,
    pub value: Value,
    /// A listening port that just opened, remembered so that its closing within the
    /// window is a flap (a short-lived process's port), not a change of its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub appeared: bool,
}

/// A person's API token (the secret is never stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiToken {
    pub id: String,
    pub user: String,
    pub secret_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names `named!` gives each enum are the ones serde writes, and every name parses
    /// back to its variant.
    macro_rules! assert_serde_names {
        ($($ty:ident),+) => {$(
            for v in $ty::ALL {
                assert_eq!(
                    serde_json::to_value(v).unwrap(),
                    Value::String(v.as_str().into()),
                    "{v:?}"
                );
                assert_eq!(v.as_str().parse::<$ty>().unwrap(), v);
            }
        )+};
    }

    #[test]
    fn every_named_enum_uses_its_serde_names() {
        assert_serde_names!(
            CiClass,
            CiStatus,
            RelKind,
            Role,
            Aspect,
            ItemKind,
            Severity,
            RecordState,
            Authorization
        );
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_known_ones() {
        let e = "critical".parse::<Severity>().unwrap_err();
        assert_eq!(e, "unknown severity 'critical'; known: low, medium, high");
    }
}
