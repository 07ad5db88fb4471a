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
