//! Evaluating a parsed filter against one CI and the facts it needs (its installs edges,
//! its addresses). Pure.

use std::cmp::Ordering;

use census_shared::version::{self, VersionScheme};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::Value;

use super::filter::{Cond, Expr, Field, Op, SoftwareField};
use crate::model::*;

/// One CI as a filter sees it.
pub struct Subject<'a> {
    pub ci: &'a Ci,
    /// Attribute maps of its `installs` edges (empty unless the filter mentions software).
    pub software: &'a [&'a Attributes],
    pub now: DateTime<Utc>,
}

/// A time literal: RFC 3339, a date, `now`, or an age such as `-7d`, `-12h`, `-30m`.
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if text == "now" {
        return Some(now);
    }
    if let Some(age) = text.strip_prefix('-') {
        let (n, unit) = age.split_at(age.len().checked_sub(1)?);
        let n: i64 = n.parse().ok()?;
        let d = match unit {
            "d" => Duration::try_days(n)?,
            "h" => Duration::try_hours(n)?,
            "m" => Duration::try_minutes(n)?,
            _ => return None,
        };
        return now.checked_sub_signed(d);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    // A date is YYYY-M-D with a four-digit year: chrono's %Y alone would also take a sign
    // and more digits, which the API document does not promise.
    let four_digit_year = text.len() <= 10 && text.find('-') == Some(4);
    if !four_digit_year || !text.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()?
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
}

fn ordered(op: Op, ord: Ordering) -> bool {
    match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Ne => ord != Ordering::Equal,
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
        Op::Prefix | Op::Regex => false,
    }
}

/// Compares one text value; numbers numerically, other strings with the generic version
/// order (so "9" < "12" and "1.10" > "1.9").
fn compare_text(
    actual: &str,
    op: Op,
    value: &str,
    regex: Option<&regex::Regex>,
    scheme: VersionScheme,
) -> bool {
    match op {
        Op::Prefix => actual.starts_with(value),
        Op::Regex => regex.is_some_and(|r| r.is_match(actual)),
        Op::Eq => actual == value,
        Op::Ne => actual != value,
        _ => {
            if let (Ok(a), Ok(b)) = (actual.parse::<f64>(), value.parse::<f64>()) {
                return a.partial_cmp(&b).is_some_and(|o| ordered(op, o));
            }
            ordered(op, version::compare(scheme, actual, value))
        }
    }
}

fn compare_json(actual: &Value, op: Op, value: &str, regex: Option<&regex::Regex>) -> bool {
    match actual {
        Value::String(s) => compare_text(s, op, value, regex, VersionScheme::Generic),
        Value::Number(n) => match (n.as_f64(), value.parse::<f64>()) {
            (Some(a), Ok(b)) if !matches!(op, Op::Prefix | Op::Regex) => {
                a.partial_cmp(&b).is_some_and(|o| ordered(op, o))
            }
            _ => compare_text(&n.to_string(), op, value, regex, VersionScheme::Generic),
        },
        Value::Bool(b) => compare_text(&b.to_string(), op, value, regex, VersionScheme::Generic),
        // A list matches when any element does (`!=` when none equals).
        Value::Array(items) if op == Op::Ne => {
            !items.iter().any(|i| compare_json(i, Op::Eq, value, regex))
        }
        Value::Array(items) => items.iter().any(|i| compare_json(i, op, value, regex)),
        Value::Null | Value::Object(_) => op == Op::Ne,
    }
}

fn attribute<'a>(ci: &'a Ci, path: &str) -> Option<&'a Value> {
    ci.attributes.get(path).or_else(|| ci.volatile.get(path))
}

fn software_cond(edge: &Attributes, cond: &Cond) -> bool {
    let Field::Software(f) = cond.field() else {
        return false;
    };
    let actual = edge.get(f.edge_key()).and_then(Value::as_str);
    match cond {
        Cond::Exists(_) => actual.is_some(),
        Cond::In { .. } => false,
        Cond::Compare {
            op, value, regex, ..
        } => {
            let Some(actual) = actual else {
                return *op == Op::Ne;
            };
            match f {
                SoftwareField::Name => {
                    // Package names are matched case-insensitively: products are keyed so.
                    // Equality is the common case (one product's edges, thousands of
                    // them): compare without allocating two lowercased copies.
                    let same = || {
                        actual
                            .chars()
                            .flat_map(char::to_lowercase)
                            .eq(value.chars().flat_map(char::to_lowercase))
                    };
                    match op {
                        Op::Regex => regex.as_ref().is_some_and(|r| r.is_match(actual)),
                        Op::Eq => same(),
                        Op::Ne => !same(),
                        _ => compare_text(
                            &actual.to_lowercase(),
                            *op,
                            &value.to_lowercase(),
                            None,
                            VersionScheme::Generic,
                        ),
                    }
                }
                SoftwareField::Version => {
                    let scheme = VersionScheme::for_source(
                        edge.get("source").and_then(Value::as_str).unwrap_or(""),
                    );
                    compare_text(actual, *op, value, regex.as_ref(), scheme)
                }
                _ => compare_text(actual, *op, value, regex.as_ref(), VersionScheme::Generic),
            }
        }
    }
}

fn cond(c: &Cond, s: &Subject<'_>) -> bool {
    if c.is_software() {
        return s.software.iter().any(|e| software_cond(e, c));
    }
    let ci = s.ci;
    match c {
        Cond::Exists(field) => match field {
            Field::Attribute(p) => attribute(ci, p).is_some_and(|v| !v.is_null()),
            Field::Ip => addresses(ci).next().is_some(),
            _ => true,
        },
        Cond::In { cidr, .. } => addresses(ci)
            .filter_map(|a| a.parse().ok())
            .any(|ip| cidr.contains(ip)),
        Cond::Compare {
            field,
            op,
            value,
            regex,
        } => {
            let text =
                |t: &str| compare_text(t, *op, value, regex.as_ref(), VersionScheme::Generic);
            match field {
                Field::Id => text(&ci.id),
                Field::Name => text(&ci.name),
                Field::Class => text(ci.class.as_str()),
                Field::Status => text(match ci.status {
                    CiStatus::Active => "active",
                    CiStatus::Stale => "stale",
                    CiStatus::Retired => "retired",
                }),
                Field::FirstSeen | Field::LastSeen => {
                    let at = if *field == Field::FirstSeen {
                        ci.first_seen
                    } else {
                        ci.last_seen
                    };
                    match parse_time(value, s.now) {
                        Some(t) => ordered(*op, at.cmp(&t)),
                        None => false,
                    }
                }
                Field::Ip => match op {
                    Op::Ne => !addresses(ci).any(|a| a == value),
                    _ => addresses(ci).any(|a| {
                        compare_text(a, *op, value, regex.as_ref(), VersionScheme::Generic)
                    }),
                },
                Field::Attribute(path) => match attribute(ci, path) {
                    Some(v) => compare_json(v, *op, value, regex.as_ref()),
                    None => *op == Op::Ne,
                },
                Field::Software(_) => false,
            }
        }
    }
}

/// A computer's routable addresses (the derived `network.addresses` attribute); an IP
/// CI's own address.
fn addresses(ci: &Ci) -> impl Iterator<Item = &str> {
    let list = ci
        .attributes
        .get("network.addresses")
        .and_then(Value::as_array)
        .map(|v| v.as_slice())
        .unwrap_or(&[]);
    let own = (ci.class == CiClass::IpAddress)
        .then(|| ci.attributes.get("address").and_then(Value::as_str))
        .flatten();
    list.iter().filter_map(Value::as_str).chain(own)
}

/// Whether one `installs` edge satisfies an expression made of software conditions; any
/// other condition is false (it is about the CI, not the edge).
pub fn matches_edge(e: &Expr, edge: &Attributes) -> bool {
    match e {
        Expr::Cond(c) => software_cond(edge, c),
        Expr::Not(inner) => !matches_edge(inner, edge),
        Expr::Or(parts) => parts.iter().any(|p| matches_edge(p, edge)),
        Expr::And(parts) => parts.iter().all(|p| matches_edge(p, edge)),
    }
}

/// Whether `s` matches `e`. In an `and` chain, the `software.*` conditions bind to one
/// package.
pub fn matches(e: &Expr, s: &Subject<'_>) -> bool {
    match e {
        Expr::Cond(c) => cond(c, s),
        Expr::Not(inner) => !matches(inner, s),
        Expr::Or(parts) => parts.iter().any(|p| matches(p, s)),
        Expr::And(parts) => {
            let bound: Vec<&Cond> = parts
                .iter()
                .filter_map(|p| match p {
                    Expr::Cond(c) if c.is_software() => Some(c),
                    _ => None,
                })
                .collect();
            let rest_ok = parts
                .iter()
                .filter(|p| !matches!(p, Expr::Cond(c) if c.is_software()))
                .all(|p| matches(p, s));
            rest_ok
                && (bound.is_empty()
                    || s.software
                        .iter()
                        .any(|edge| bound.iter().all(|c| software_cond(edge, c))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::filter::parse;
    use super::*;
    use serde_json::json;

    fn computer() -> Ci {
        let mut attributes = Attributes::new();
        attributes.insert("os.hostname".into(), json!("web01"));
        attributes.insert("os.version_id".into(), json!("12"));
        attributes.insert("memory.total_bytes".into(), json!(8589934592u64));
        attributes.insert("network.addresses".into(), json!(["10.1.2.3", "fd00::5"]));
        attributes.insert("network.physical_macs".into(), json!(["52:54:00:12:34:56"]));
        Ci {
            id: "cmp_1".into(),
            class: CiClass::Computer,
            name: "web01.example.com".into(),
            attributes,
            volatile: Attributes::new(),
            status: CiStatus::Active,
            first_seen: Utc::now() - Duration::days(30),
            last_seen: Utc::now() - Duration::days(2),
            sources: vec![],
            version: 3,
            owner: None,
        }
    }

    fn edge(name: &str, version: &str, source: &str) -> Attributes {
        let mut a = Attributes::new();
        a.insert("name".into(), json!(name));
        a.insert("version".into(), json!(version));
        a.insert("source".into(), json!(source));
        a
    }

    fn check(filter: &str, software: &[Attributes]) -> bool {
        let ci = computer();
        let refs: Vec<&Attributes> = software.iter().collect();
        let e = parse(filter).unwrap().unwrap();
        matches(
            &e,
            &Subject {
                ci: &ci,
                software: &refs,
                now: Utc::now(),
            },
        )
    }

    #[test]
    fn software_conditions_bind_to_one_package_with_its_own_version_order() {
        let sw = [
            edge("openssl", "3.0.11-1~deb12u2", "dpkg"),
            edge("curl", "7.88.1-10", "dpkg"),
        ];
        assert!(check(
            r#"software.name = "openssl" and software.version < "3.0.11-1""#,
            &sw
        ));
        assert!(!check(
            r#"software.name = "openssl" and software.version < "3.0.11-1~deb12u1""#,
            &sw
        ));
        // curl is below 3.0.7 but is not openssl: no match.
        assert!(!check(
            r#"software.name = "openssl" and software.version < "3.0.7""#,
            &sw
        ));
        assert!(
            check(r#"software.name = "OpenSSL""#, &sw),
            "names are case-insensitive"
        );
        let rpm = [edge("openssl", "1:3.0.7-24.el9", "rpm")];
        assert!(
            !check(
                r#"software.name = openssl and software.version < "3.0.8-1.el9""#,
                &rpm
            ),
            "epoch wins"
        );
    }

    #[test]
    fn attributes_numbers_dates_and_subnets() {
        assert!(check("os.hostname = web01", &[]));
        assert!(check("os.hostname ^= web", &[]));
        assert!(check(r#"os.hostname ~ "^web[0-9]+$""#, &[]));
        assert!(check("os.version_id > 9", &[]), "numeric, not lexical");
        assert!(check("memory.total_bytes >= 8000000000", &[]));
        assert!(check("ip in 10.1.0.0/16", &[]));
        assert!(check("ip in fd00::/8", &[]));
        assert!(!check("ip in 10.2.0.0/16", &[]));
        assert!(check("ip = 10.1.2.3 and not ip = 10.9.9.9", &[]));
        assert!(check("network.physical_macs = 52:54:00:12:34:56", &[]));
        assert!(check("last_seen < -1d and last_seen > -7d", &[]));
        assert!(check("first_seen < 2099-01-01", &[]));
        assert!(check("status = active", &[]));
        assert!(
            check("system.serial != x", &[]),
            "a missing attribute is not equal"
        );
        assert!(!check("system.serial exists", &[]));
        assert!(check(
            "(os.hostname = nope or os.hostname = web01) and class = computer",
            &[]
        ));
    }

    #[test]
    fn time_literals() {
        let now = Utc::now();
        assert_eq!(parse_time("-7d", now), Some(now - Duration::days(7)));
        assert!(parse_time("2026-11-01", now).is_some());
        assert!(parse_time("2026-11-01T10:00:00Z", now).is_some());
        assert!(parse_time("-99999999999d", now).is_none());
        assert!(parse_time("yesterday", now).is_none());
    }
}
