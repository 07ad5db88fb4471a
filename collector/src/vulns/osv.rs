//! OSV records (https://ossf.github.io/osv-schema/) read from untrusted bytes into the
//! typed [`Advisory`] Census keeps: only what matching and the reports need, every list and
//! string bounded, every refusal naming the field it is about.
//!
//! Fields Census does not use (details, references, credits, purls, git ranges) are
//! skipped while parsing, never held.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::model::vuln::*;

/// Largest record read (Debian's kernel records, with their version lists, are ~1 MB).
pub const MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;
/// Most `affected` entries in a record.
pub const MAX_AFFECTED: usize = 5_000;
/// Most events in a range, and ranges in an entry.
pub const MAX_EVENTS: usize = 1_000;
pub const MAX_RANGES: usize = 100;
/// Most explicit versions in an entry.
pub const MAX_VERSIONS: usize = 50_000;
/// Most aliases kept.
pub const MAX_ALIASES: usize = 200;
/// Longest id, ecosystem, package name and version.
pub const MAX_ID_CHARS: usize = 128;
pub const MAX_NAME_CHARS: usize = 256;
/// A summary longer than this is cut (not refused: it is only shown).
pub const MAX_SUMMARY_CHARS: usize = 1_000;

/// Why a record was not read: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OsvError(pub String);

fn bad(what: impl Into<String>) -> OsvError {
    OsvError(what.into())
}

/// What reading one record gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Advisory(Advisory),
    /// Withdrawn by its database: any stored version older than `modified` goes.
    Withdrawn {
        id: String,
        modified: DateTime<Utc>,
    },
}

// --- the record as published (serde skips every field not named) ---

#[derive(Deserialize)]
struct RawRecord {
    id: String,
    modified: String,
    #[serde(default)]
    published: Option<String>,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    upstream: Vec<String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    severity: Vec<RawSeverity>,
    #[serde(default)]
    affected: Vec<RawAffected>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Deserialize)]
struct RawSeverity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Deserialize)]
struct RawAffected {
    #[serde(default)]
    package: Option<RawPackage>,
    #[serde(default)]
    ranges: Vec<RawRange>,
    #[serde(default)]
    versions: Vec<String>,
    #[serde(default)]
    severity: Vec<RawSeverity>,
    #[serde(default)]
    ecosystem_specific: Option<Value>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Deserialize)]
struct RawPackage {
    ecosystem: String,
    name: String,
}

#[derive(Deserialize)]
struct RawRange {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    events: Vec<RawEvent>,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(default)]
    introduced: Option<String>,
    #[serde(default)]
    fixed: Option<String>,
    #[serde(default)]
    last_affected: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

fn time(field: &str, text: &str) -> Result<DateTime<Utc>, OsvError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            bad(format!(
                "{field}: '{}' is not an RFC 3339 time ({e})",
                shown(text)
            ))
        })
}

/// At most 40 characters of untrusted text, for messages.
fn shown(text: &str) -> String {
    let mut s: String = text.chars().take(40).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn checked(field: &str, text: &str, max: usize) -> Result<String, OsvError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(bad(format!("{field}: empty")));
    }
    if t.chars().count() > max {
        return Err(bad(format!("{field}: longer than {max} characters")));
    }
    if t.chars().any(char::is_control) {
        return Err(bad(format!("{field}: control characters")));
    }
    Ok(t.to_string())
}

/// Reads one OSV record. Bytes past [`MAX_RECORD_BYTES`], JSON nested deeper than
/// serde_json's limit (128), and every list past its limit are refused.
pub fn parse(bytes: &[u8]) -> Result<Parsed, OsvError> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(bad(format!(
            "record: {} bytes, more than {MAX_RECORD_BYTES}",
            bytes.len()
        )));
    }
    let raw: RawRecord = serde_json::from_slice(bytes)
        .map_err(|e| bad(format!("record: not an OSV record: {e}")))?;
    let id = checked("id", &raw.id, MAX_ID_CHARS)?;
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err(bad(format!(
            "id: '{}' has characters outside A-Z, a-z, 0-9, - _ . :",
            shown(&id)
        )));
    }
    let modified = time("modified", &raw.modified)?;
    if raw.withdrawn.is_some() {
        return Ok(Parsed::Withdrawn { id, modified });
    }
    let published = raw
        .published
        .as_deref()
        .map(|p| time("published", p))
        .transpose()?;
    let mut aliases: Vec<String> = Vec::new();
    for (i, a) in raw.aliases.iter().chain(&raw.upstream).enumerate() {
        let a = checked(&format!("aliases[{i}]"), a, MAX_ID_CHARS)?;
        if a != id && !aliases.contains(&a) {
            aliases.push(a);
        }
    }
    if aliases.len() > MAX_ALIASES {
        return Err(bad(format!("aliases: more than {MAX_ALIASES}")));
    }
    aliases.sort();
    if raw.affected.len() > MAX_AFFECTED {
        return Err(bad(format!("affected: more than {MAX_AFFECTED} entries")));
    }
    let mut affected = Vec::with_capacity(raw.affected.len());
    let mut words: Vec<(String, Option<Level>)> = Vec::new();
    let mut vectors: Vec<&str> = raw
        .severity
        .iter()
        .filter(|s| is_cvss3(s))
        .map(|s| s.score.as_str())
        .collect();
    for (i, a) in raw.affected.iter().enumerate() {
        let at = format!("affected[{i}]");
        vectors.extend(
            a.severity
                .iter()
                .filter(|s| is_cvss3(s))
                .map(|s| s.score.as_str()),
        );
        for specific in [&a.ecosystem_specific, &a.database_specific]
            .into_iter()
            .flatten()
        {
            for key in ["severity", "urgency", "priority"] {
                if let Some(w) = specific.get(key).and_then(Value::as_str) {
                    words.push((w.to_string(), Level::parse(w)));
                }
            }
        }
        let Some(p) = &a.package else {
            // An entry without a package (a git-only record) says nothing about packages.
            continue;
        };
        let ecosystem = checked(&format!("{at}.package.ecosystem"), &p.ecosystem, 64)?;
        let package = checked(&format!("{at}.package.name"), &p.name, MAX_NAME_CHARS)?;
        if a.ranges.len() > MAX_RANGES {
            return Err(bad(format!("{at}.ranges: more than {MAX_RANGES}")));
        }
        if a.versions.len() > MAX_VERSIONS {
            return Err(bad(format!("{at}.versions: more than {MAX_VERSIONS}")));
        }
        let mut ranges = Vec::new();
        for (j, r) in a.ranges.iter().enumerate() {
            let rat = format!("{at}.ranges[{j}]");
            if r.events.len() > MAX_EVENTS {
                return Err(bad(format!("{rat}.events: more than {MAX_EVENTS}")));
            }
            // GIT ranges name commits, which no installed package carries.
            if !matches!(r.kind.as_str(), "ECOSYSTEM" | "SEMVER") {
                continue;
            }
            let mut events = Vec::with_capacity(r.events.len());
            for (k, e) in r.events.iter().enumerate() {
                let eat = format!("{rat}.events[{k}]");
                let one = |v: &str| checked(&eat, v, MAX_NAME_CHARS);
                events.push(match (&e.introduced, &e.fixed, &e.last_affected, &e.limit) {
                    (Some(v), None, None, None) => Event::Introduced(one(v)?),
                    (None, Some(v), None, None) => Event::Fixed(one(v)?),
                    (None, None, Some(v), None) => Event::LastAffected(one(v)?),
                    (None, None, None, Some(v)) => Event::Limit(one(v)?),
                    _ => {
                        return Err(bad(format!(
                            "{eat}: an event has exactly one of introduced, fixed, last_affected, limit"
                        )))
                    }
                });
            }
            if !events.is_empty() {
                ranges.push(events);
            }
        }
        let versions = a
            .versions
            .iter()
            .enumerate()
            .map(|(k, v)| checked(&format!("{at}.versions[{k}]"), v, MAX_NAME_CHARS))
            .collect::<Result<Vec<_>, _>>()?;
        if ranges.is_empty() && versions.is_empty() {
            continue;
        }
        affected.push(Affected {
            ecosystem,
            package,
            ranges,
            versions,
        });
    }
    if let Some(w) = raw
        .database_specific
        .as_ref()
        .and_then(|d| d.get("severity"))
        .and_then(Value::as_str)
    {
        words.insert(0, (w.to_string(), Level::parse(w)));
    }
    let rating = vectors
        .iter()
        .find_map(|v| {
            cvss3_base_score(v).map(|score| Rating {
                level: Level::of_score(score),
                score: Some(score),
                from: shown(v),
            })
        })
        .or_else(|| {
            // The most severe word any entry gives.
            words
                .iter()
                .filter_map(|(w, l)| l.map(|l| (l, w)))
                .max_by_key(|(l, _)| *l)
                .map(|(level, w)| Rating {
                    level,
                    score: None,
                    from: shown(w),
                })
        });
    let summary: String = raw
        .summary
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_SUMMARY_CHARS)
        .collect();
    Ok(Parsed::Advisory(Advisory {
        id,
        modified,
        published,
        aliases,
        summary,
        rating,
        affected,
    }))
}

fn is_cvss3(s: &RawSeverity) -> bool {
    s.kind == "CVSS_V3"
}

/// The CVSS v3.0/v3.1 base score of a vector (`CVSS:3.1/AV:N/AC:L/...`), by the
/// specification's formulas (v3.1 rounding); None for anything else.
pub fn cvss3_base_score(vector: &str) -> Option<f64> {
    let mut parts = vector.split('/');
    if !matches!(parts.next()?, "CVSS:3.0" | "CVSS:3.1") {
        return None;
    }
    let mut m = std::collections::BTreeMap::new();
    for p in parts {
        let (k, v) = p.split_once(':')?;
        m.insert(k, v);
    }
    let changed = match *m.get("S")? {
        "U" => false,
        "C" => true,
        _ => return None,
    };
    let av = match *m.get("AV")? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        "P" => 0.2,
        _ => return None,
    };
    let ac = match *m.get("AC")? {
        "L" => 0.77,
        "H" => 0.44,
        _ => return None,
    };
    let pr = match (*m.get("PR")?, changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        ("H", false) => 0.27,
        ("H", true) => 0.5,
        _ => return None,
    };
    let ui = match *m.get("UI")? {
        "N" => 0.85,
        "R" => 0.62,
        _ => return None,
    };
    let cia = |k: &str| -> Option<f64> {
        match *m.get(k)? {
            "H" => Some(0.56),
            "L" => Some(0.22),
            "N" => Some(0.0),
            _ => None,
        }
    };
    let (c, i, a) = (cia("C")?, cia("I")?, cia("A")?);
    let iss = 1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a);
    let impact = if changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02f64).powi(15)
    } else {
        6.42 * iss
    };
    if impact <= 0.0 {
        return Some(0.0);
    }
    let exploitability = 8.22 * av * ac * pr * ui;
    let base = if changed {
        (1.08 * (impact + exploitability)).min(10.0)
    } else {
        (impact + exploitability).min(10.0)
    };
    Some(round_up(base))
}

/// CVSS v3.1's Roundup: the smallest number of one decimal at or above `x`, computed on
/// integers so 4.000000001 does not become 4.1.
fn round_up(x: f64) -> f64 {
    let scaled = (x * 100_000.0).round() as i64;
    if scaled % 10_000 == 0 {
        scaled as f64 / 100_000.0
    } else {
        ((scaled / 10_000) + 1) as f64 / 10.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvss3_scores_match_the_specification_examples() {
        for (vector, want) in [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
            ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 5.5),
            ("CVSS:3.0/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N", 3.1),
            ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 6.4),
            ("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:N/I:N/A:N", 0.0),
        ] {
            assert_eq!(cvss3_base_score(vector), Some(want), "{vector}");
        }
        assert_eq!(cvss3_base_score("CVSS:4.0/AV:N/AC:L"), None);
        assert_eq!(
            cvss3_base_score("CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            None
        );
    }
}
