//! Request and response bodies of protocol v1 other than the snapshot itself.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const ENROLL_PATH: &str = "/api/v1/enroll";
pub const SNAPSHOTS_PATH: &str = "/api/v1/snapshots";
pub const HEARTBEAT_PATH: &str = "/api/v1/heartbeat";
/// Protocol v2: a changed inventory as a delta from the agent's last accepted one.
pub const DELTAS_PATH: &str = "/api/v2/deltas";

/// What an agent tells the collector when it enrolls. The facts are recorded as evidence;
/// the collector links the agent to a CI by its own identification rules on the first
/// snapshot, never by these claims alone.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub token: String,
    /// `ed25519:<base64>` of the 32-byte public key.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^ed25519:[A-Za-z0-9+/]{43}=$"))]
    pub public_key: String,
    pub agent_version: String,
    pub facts: IdentityFacts,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityFacts {
    pub hostname: String,
    pub fqdn: Option<String>,
    pub machine_id: Option<String>,
    pub vendor: Option<String>,
    pub serial: Option<String>,
    pub system_uuid: Option<String>,
    #[serde(default)]
    pub macs: Vec<String>,
    pub os: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub agent_id: String,
    pub server_time: DateTime<Utc>,
}

/// A heartbeat: the inventory is unchanged since the last acknowledged snapshot.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub content_hash: String,
    pub sent_at: DateTime<Utc>,
}

/// The collector's answer once a snapshot or heartbeat is durably stored.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub agent_id: String,
    pub seq: u64,
    pub ci_id: Option<String>,
    pub content_hash: String,
    /// The change record this snapshot raised, if any.
    pub change_record: Option<String>,
    /// Set when the collector could not use the heartbeat (it no longer has that content):
    /// the agent must send a full snapshot next.
    #[serde(default)]
    pub resend_full: bool,
}

/// The problem type of a 409 to a delta whose base is not the agent's last accepted
/// inventory: the agent sends a full snapshot instead, without a person.
pub const PROBLEM_DELTA_BASE_MISMATCH: &str = "urn:census:problem:delta-base-mismatch";

/// The problem type of a 403 to an agent the collector revoked: nothing it sends is taken
/// until it enrolls again.
pub const PROBLEM_AGENT_REVOKED: &str = "urn:census:problem:agent-revoked";

/// The problem type of a 403 to an agent whose machine a newer enrollment took over (or
/// that a person judged a clone): it should stop reporting; the detail names the successor.
pub const PROBLEM_AGENT_SUPERSEDED: &str = "urn:census:problem:agent-superseded";

/// Error body (RFC 9457 problem details) used by every refusal.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
