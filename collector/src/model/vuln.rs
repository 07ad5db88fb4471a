//! Vulnerabilities as Census keeps them: advisories read from OSV records
//! (`crate::vulns::osv`), keyed by the ecosystem release and package they affect.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A vulnerability as Census keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Advisory {
    /// The record's id in its database: DSA-5532-1, DEBIAN-CVE-2023-5678, USN-6450-1.
    pub id: String,
    pub modified: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<DateTime<Utc>>,
    /// CVE ids and other names of the same vulnerability (aliases and upstream).
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<Rating>,
    pub affected: Vec<Affected>,
}

/// How severe, and where that came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rating {
    pub level: Level,
    /// The CVSS v3 base score, when the record gives a vector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// The vector or the database's own word it was read from.
    pub from: String,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<Level> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "none" | "negligible" | "unimportant" => Level::None,
            "low" => Level::Low,
            "medium" | "moderate" => Level::Medium,
            "high" | "important" => Level::High,
            "critical" => Level::Critical,
            _ => return None,
        })
    }

    pub fn of_score(score: f64) -> Level {
        match score {
            s if s >= 9.0 => Level::Critical,
            s if s >= 7.0 => Level::High,
            s if s >= 4.0 => Level::Medium,
            s if s > 0.0 => Level::Low,
            _ => Level::None,
        }
    }
}

/// One package of one ecosystem release the advisory is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Affected {
    /// `Debian:12`, `Ubuntu:22.04:LTS`, `Alpine:v3.18`.
    pub ecosystem: String,
    /// The package as the ecosystem names it: the source package for Debian and Alpine.
    pub package: String,
    /// ECOSYSTEM (and SEMVER) ranges, each a list of events.
    #[serde(default)]
    pub ranges: Vec<Vec<Event>>,
    /// Versions listed one by one.
    #[serde(default)]
    pub versions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Introduced(String),
    Fixed(String),
    LastAffected(String),
    Limit(String),
}

impl Affected {
    /// The versions that fix it, in the order the ranges give them.
    pub fn fixed(&self) -> Vec<&str> {
        self.ranges
            .iter()
            .flatten()
            .filter_map(|e| match e {
                Event::Fixed(v) => Some(v.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// One record of an import, as the store applies it.
#[derive(Debug, Clone, PartialEq)]
pub enum AdvisoryWrite {
    /// Stored unless the store holds this id with a `modified` as new or newer.
    Put(Advisory),
    /// Removes the stored advisory if it is older than the withdrawal.
    Withdraw { id: String, modified: DateTime<Utc> },
}

/// The key of an advisory in the package index: ecosystem, package, id, NUL-separated.
pub fn index_key(ecosystem: &str, package: &str, id: &str) -> Vec<u8> {
    let mut k = index_prefix(ecosystem, package);
    k.extend_from_slice(id.as_bytes());
    k
}

/// The prefix of every index key of one (ecosystem, package).
pub fn index_prefix(ecosystem: &str, package: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(ecosystem.len() + package.len() + 2);
    k.extend_from_slice(ecosystem.as_bytes());
    k.push(0);
    k.extend_from_slice(package.as_bytes());
    k.push(0);
    k
}

/// Feed event: advisories started to hold on hosts (a host's installs changed, or an
/// import added or widened an advisory).
pub const VULNERABILITY_EXPOSED: &str = "vulnerability.exposed";
/// Feed event: advisories stopped holding on hosts (an upgrade or removal, or an import
/// narrowed or withdrew an advisory).
pub const VULNERABILITY_FIXED: &str = "vulnerability.fixed";

/// What Census has seen of one computer's exposures: the open ones with when each was
/// first detected, and the recently closed ones. The exposure tracker
/// (`crate::vulns::tracker`) keeps it; which advisories hold is always matched live, the
/// ledger only remembers when.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExposureLedger {
    /// Sorted by (advisory, package).
    pub open: Vec<OpenExposure>,
    /// Newest first, at most [`MAX_CLOSED`], none older than [`CLOSED_KEPT_DAYS`].
    pub closed: Vec<ClosedExposure>,
}

/// Closed exposures a ledger keeps.
pub const MAX_CLOSED: usize = 2000;
/// Days a closed exposure stays in its host's ledger.
pub const CLOSED_KEPT_DAYS: i64 = 400;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenExposure {
    pub advisory: String,
    /// The installed (binary) package.
    pub package: String,
    /// Its version when last matched.
    pub version: String,
    /// Seconds since the epoch.
    pub detected: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClosedExposure {
    pub advisory: String,
    pub package: String,
    /// When Census first found it open.
    pub detected: DateTime<Utc>,
    /// When Census found it closed.
    pub closed: DateTime<Utc>,
    pub how: Closure,
    /// The package's version when it closed (none once removed).
    pub version: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Closure {
    /// The package moved to a version the advisory does not hold for.
    Upgraded,
    /// The package is no longer installed.
    Removed,
    /// An import changed or withdrew the advisory.
    AdvisoryChanged,
    /// The computer was retired (or its OS release left every ecosystem matched).
    Retired,
}

impl Closure {
    pub fn as_str(self) -> &'static str {
        match self {
            Closure::Upgraded => "upgraded",
            Closure::Removed => "removed",
            Closure::AdvisoryChanged => "advisory changed",
            Closure::Retired => "retired",
        }
    }
}

/// The payload of a `vulnerability.exposed` or `vulnerability.fixed` event: one host's
/// changes (cause `drift`) or one advisory's (cause `import`), at most [`MAX_EVENT_PAIRS`]
/// listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExposureChange {
    /// "drift" (a computer's installs, OS release or status changed) or "import".
    pub cause: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advisory: Option<String>,
    pub pairs: Vec<ExposurePair>,
    /// Pairs in all (more than listed when over the limit).
    pub total: usize,
}

/// Pairs one event lists.
pub const MAX_EVENT_PAIRS: usize = 500;

/// One (host, advisory) that opened or closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExposurePair {
    pub computer_id: String,
    pub computer_name: String,
    pub advisory: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    pub package: String,
    /// The installed version (for a fixed pair: the one that closed it, if still installed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The first version that fixes it (exposed pairs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
}
