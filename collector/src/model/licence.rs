//! Software licences: what was bought (a product matcher, seats, expiry, cost), compared
//! with what discovery finds installed. Plain data and pure matching; consumption is
//! counted by `query::licences` from the installs the store keeps per product.

use census_shared::version::{self, VersionScheme};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Licence {
    pub id: String,
    pub name: String,
    /// The software products it covers: a product name, or a pattern with `*`
    /// (case-insensitive, as product names are keyed).
    pub product: String,
    /// Versions it covers, in the package's own order: conditions joined by commas
    /// (">= 16.0, < 17"); empty covers every version.
    #[serde(default)]
    pub versions: String,
    /// Computers it may be installed on.
    pub seats: u32,
    /// Last day it is valid (YYYY-MM-DD).
    #[serde(default)]
    pub expires: Option<String>,
    #[serde(default)]
    pub cost: Option<f64>,
    #[serde(default)]
    pub notes: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub const MAX_LICENCES: usize = 10_000;
pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_PATTERN_CHARS: usize = 200;
pub const MAX_VERSION_CONDITIONS: usize = 8;
pub const MAX_SEATS: u32 = 10_000_000;

/// A comparison of a version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

/// Parsed `Licence::versions`: every condition must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VersionRange(pub Vec<(VersionOp, String)>);

impl VersionRange {
    /// ">= 16.0, < 17" -> two conditions; a bare version means "=". Messages start with
    /// `versions:`.
    pub fn parse(text: &str) -> Result<VersionRange, String> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (op, rest) = [
                ("<=", VersionOp::Le),
                (">=", VersionOp::Ge),
                ("!=", VersionOp::Ne),
                ("<", VersionOp::Lt),
                (">", VersionOp::Gt),
                ("=", VersionOp::Eq),
            ]
            .iter()
            .find_map(|(s, op)| part.strip_prefix(s).map(|r| (*op, r.trim())))
            .unwrap_or((VersionOp::Eq, part));
            if rest.is_empty() || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "versions: '{part}' is not an operator and a version"
                ));
            }
            out.push((op, rest.to_string()));
        }
        if out.len() > MAX_VERSION_CONDITIONS {
            return Err(format!(
                "versions: at most {MAX_VERSION_CONDITIONS} conditions"
            ));
        }
        Ok(VersionRange(out))
    }

    pub fn contains(&self, scheme: VersionScheme, v: &str) -> bool {
        use std::cmp::Ordering::*;
        self.0.iter().all(|(op, bound)| {
            let o = version::compare(scheme, v, bound);
            match op {
                VersionOp::Lt => o == Less,
                VersionOp::Le => o != Greater,
                VersionOp::Gt => o == Greater,
                VersionOp::Ge => o != Less,
                VersionOp::Eq => o == Equal,
                VersionOp::Ne => o != Equal,
            }
        })
    }
}

/// Whether a product name matches a licence's pattern (`*` any run of characters).
pub fn product_matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (
        pattern.to_lowercase().chars().collect(),
        name.to_lowercase().chars().collect(),
    );
    // Iterative glob with backtracking to the last star: linear in practice.
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Checks what a person wrote; messages start with the field.
pub fn validate(l: &Licence) -> Result<(), String> {
    let text = |name: &str, v: &str, max: usize| -> Result<(), String> {
        if v.trim().is_empty() {
            return Err(format!("{name}: empty"));
        }
        if v.chars().count() > max {
            return Err(format!("{name}: at most {max} characters"));
        }
        if v.chars().any(char::is_control) {
            return Err(format!("{name}: control characters are not allowed"));
        }
        Ok(())
    };
    text("name", &l.name, MAX_NAME_CHARS)?;
    text("product", &l.product, MAX_PATTERN_CHARS)?;
    VersionRange::parse(&l.versions)?;
    if l.seats > MAX_SEATS {
        return Err(format!("seats: at most {MAX_SEATS}"));
    }
    if let Some(e) = &l.expires {
        NaiveDate::parse_from_str(e, "%Y-%m-%d")
            .map_err(|_| format!("expires: '{e}' is not a date YYYY-MM-DD"))?;
    }
    if let Some(c) = l.cost {
        if !c.is_finite() || !(0.0..super::register::MAX_MONEY).contains(&c) {
            return Err(format!(
                "cost: {c} is outside 0 to {}",
                super::register::MAX_MONEY
            ));
        }
    }
    if let Some(n) = &l.notes {
        if n.chars().count() > 4000 {
            return Err("notes: at most 4000 characters".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_in_the_packages_own_order() {
        let r = VersionRange::parse(">= 3.0.11-1~deb12u2, < 3.0.13").unwrap();
        assert!(r.contains(VersionScheme::Dpkg, "3.0.11-1~deb12u2"));
        assert!(r.contains(VersionScheme::Dpkg, "3.0.12-1"));
        // A tilde sorts before the release it precedes.
        assert!(!r.contains(VersionScheme::Dpkg, "3.0.11-1~deb11u1"));
        assert!(!r.contains(VersionScheme::Dpkg, "3.0.13"));
        assert!(
            !r.contains(VersionScheme::Dpkg, "1:3.0.12"),
            "an epoch is newer"
        );
        assert!(VersionRange::parse("")
            .unwrap()
            .contains(VersionScheme::Generic, "x"));
        assert_eq!(
            VersionRange::parse("16.0").unwrap(),
            VersionRange(vec![(VersionOp::Eq, "16.0".into())])
        );
        assert!(VersionRange::parse(">=")
            .unwrap_err()
            .starts_with("versions:"));
        assert!(VersionRange::parse("< 1 2").is_err());
    }

    #[test]
    fn product_patterns_are_case_insensitive_globs() {
        assert!(product_matches("openssl", "OpenSSL"));
        assert!(product_matches("libreoffice-*", "libreoffice-writer"));
        assert!(!product_matches("libreoffice-*", "libreoffice"));
        assert!(product_matches("*office*", "libreoffice-calc"));
        assert!(product_matches("a*b*c", "axxbyyc"));
        assert!(!product_matches("a*b*c", "axxbyy"));
        assert!(product_matches("*", ""));
    }
}
