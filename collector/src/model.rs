//! The CMDB's records: configuration items, relationships, versions, agents, tokens, users,
//! identity conflicts and change records. Plain data; no I/O.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub type Attributes = BTreeMap<String, Value>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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
    pub const ALL: [CiClass; 8] = [
        CiClass::Computer,
        CiClass::OperatingSystem,
        CiClass::SoftwareProduct,
        CiClass::Disk,
        CiClass::NetworkInterface,
        CiClass::IpAddress,
        CiClass::Subnet,
        CiClass::Service,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            CiClass::Computer => "computer",
            CiClass::OperatingSystem => "operating_system",
            CiClass::SoftwareProduct => "software_product",
            CiClass::Disk => "disk",
            CiClass::NetworkInterface => "network_interface",
            CiClass::IpAddress => "ip_address",
            CiClass::Subnet => "subnet",
            CiClass::Service => "service",
        }
    }
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

impl std::str::FromStr for CiClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CiClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = CiClass::ALL.iter().map(|c| c.as_str()).collect();
                format!("unknown CI class '{s}'; known: {}", names.join(", "))
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CiStatus {
    Active,
    Stale,
    Retired,
}

/// A configuration item in its current state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ci {
    pub id: String,
    pub class: CiClass,
    pub name: String,
    /// Configuration: a change here is drift and writes a history version.
    pub attributes: Attributes,
    /// Volatile facts (uptime, free space, ...): updated in place, never versioned.
    #[serde(default)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelKind {
    Runs,
    Installs,
    Has,
    HasAddress,
    In,
}

impl RelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RelKind::Runs => "runs",
            RelKind::Installs => "installs",
            RelKind::Has => "has",
            RelKind::HasAddress => "has_address",
            RelKind::In => "in",
        }
    }
}

/// Identifies one edge. `discriminator` separates parallel edges between the same pair
/// (libc6 installed for amd64 and for i386).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RelKey {
    pub from: String,
    pub kind: RelKind,
    pub to: String,
    #[serde(default)]
    pub discriminator: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Relationship {
    pub key: RelKey,
    pub attributes: Attributes,
}

/// One version of a CI: its configuration and its outgoing edges from `valid_from` until
/// the next version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Content hash of the last accepted full snapshot.
    pub last_content_hash: Option<String>,
    pub ci_id: Option<String>,
    pub identification: Option<IdentificationEvidence>,
    /// collected_at minus the collector's clock, seconds, at the last snapshot.
    pub clock_skew_seconds: Option<i64>,
    /// Set when a later agent took over this agent's CI (reimaged machine).
    #[serde(default)]
    pub superseded_by: Option<String>,
}

impl Agent {
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    ChangeManager,
    AssetManager,
    Auditor,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "change_manager" => Ok(Role::ChangeManager),
            "asset_manager" => Ok(Role::AssetManager),
            "auditor" => Ok(Role::Auditor),
            _ => Err(format!(
                "unknown role '{s}'; roles are admin, change_manager, asset_manager, auditor"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub disabled: bool,
}

/// Two agents whose machines match one identity: a person decides, the collector never
/// merges them silently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// One configuration change between two versions of a computer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeItem {
    /// "attribute_changed", "relationship_added", "relationship_removed",
    /// "relationship_changed".
    pub kind: String,
    /// Attribute path or relationship description ("installs openssl (amd64)").
    pub path: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub id: String,
    pub ci_id: String,
    pub agent_id: String,
    pub seq: u64,
    pub detected_at: DateTime<Utc>,
    pub from_version: u64,
    pub to_version: u64,
    pub items: Vec<ChangeItem>,
    /// "open" until reviewed.
    pub state: String,
}
