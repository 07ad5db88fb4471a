//! The asset register: what people record about a computer that discovery cannot know
//! (asset tag, owner, location, purchase, warranty, lifecycle status), which source set
//! each field and when, and the precedence that decides whether a source may overwrite
//! another's value. Plain data and pure decisions; the write is `ops::register`.
//!
//! Register fields are configuration attributes of the computer under `register.` (so
//! history, as-of and filters see them like any attribute) with their provenance in
//! [`PROVENANCE_ATTRIBUTE`]. Architecture Invariant: ingest never writes a `register.`
//! attribute (reconcile carries them over from the stored computer) and the drift view
//! never reads one, so a register edit is never drift.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Attributes, CiClass};

/// The attribute prefix of register fields.
pub const PREFIX: &str = "register.";
/// The attribute that maps each register field to its [`Provenance`].
pub const PROVENANCE_ATTRIBUTE: &str = "register.provenance";

/// Who may write a register field. The default precedence is this order, highest first.
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
pub enum Source {
    /// A person, through the API, the CLI or the web UI.
    Person,
    /// A register file (CSV) imported by a person.
    FileImport,
    /// Census agents' discovery.
    Agent,
    /// Inventories imported from another tool (OCS, GLPI, FusionInventory).
    ToolImport,
}

named!(Source, "register source", {
    Person => "person",
    FileImport => "file_import",
    Agent => "agent",
    ToolImport => "tool_import",
});

/// What a field's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum FieldKind {
    /// Text of at most `max_chars` characters, no control characters.
    Text { max_chars: usize },
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// An amount of money, at least 0 and below [`MAX_MONEY`], at most two decimals.
    Money,
    /// One of the lifecycle status labels in [`RegisterSettings::statuses`].
    Status,
}

/// Largest amount a money field holds.
pub const MAX_MONEY: f64 = 1e12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldDef {
    pub name: &'static str,
    pub kind: FieldKind,
    pub description: &'static str,
}

const fn text(name: &'static str, max_chars: usize, description: &'static str) -> FieldDef {
    FieldDef {
        name,
        kind: FieldKind::Text { max_chars },
        description,
    }
}

/// Every register field of a computer.
pub const FIELDS: &[FieldDef] = &[
    text(
        "asset_tag",
        64,
        "The organisation's asset tag (unique per asset).",
    ),
    text(
        "owner",
        128,
        "Who is accountable for the asset (person or team).",
    ),
    text("assigned_user", 128, "Who uses it."),
    text("location_site", 128, "Site of the location hierarchy."),
    text("location_building", 128, "Building within the site."),
    text("location_room", 128, "Room within the building."),
    text("department", 128, "Department."),
    text("cost_centre", 64, "Cost centre charged for it."),
    text("supplier", 128, "Who sold it."),
    text("order_number", 64, "Purchase order number."),
    text("invoice_number", 64, "Invoice number."),
    FieldDef {
        name: "purchase_date",
        kind: FieldKind::Date,
        description: "When it was bought (YYYY-MM-DD).",
    },
    FieldDef {
        name: "purchase_cost",
        kind: FieldKind::Money,
        description: "What it cost, in the organisation's currency.",
    },
    FieldDef {
        name: "warranty_end",
        kind: FieldKind::Date,
        description: "Last day of the warranty (YYYY-MM-DD).",
    },
    FieldDef {
        name: "lifecycle_status",
        kind: FieldKind::Status,
        description: "A lifecycle status label (in stock, deployed, in repair, retired, ...).",
    },
    text("notes", 4000, "Free notes."),
];

/// The classes that have a register.
pub const CLASSES: &[CiClass] = &[CiClass::Computer];

pub fn field(name: &str) -> Option<&'static FieldDef> {
    FIELDS.iter().find(|f| f.name == name)
}

pub fn attribute(field: &str) -> String {
    format!("{PREFIX}{field}")
}

/// Whether an attribute path belongs to the register (people's data, not discovery's).
pub fn is_register_attribute(path: &str) -> bool {
    path.starts_with(PREFIX)
}

/// Who set a field and when. A cleared field keeps its provenance: a person who cleared
/// it holds the empty value against lower sources as they would hold a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Provenance {
    pub source: Source,
    /// The person, import file or agent that wrote it.
    pub by: String,
    pub at: DateTime<Utc>,
}

/// The four kinds every lifecycle status label belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusKind {
    InStock,
    Deployed,
    /// In repair, on order, pending.
    Pending,
    /// Retired, disposed, lost.
    Retired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusLabel {
    /// `[a-z0-9_]{1,32}`: what the field holds.
    #[schema(pattern = "^[a-z0-9_]{1,32}$")]
    pub name: String,
    pub kind: StatusKind,
}

/// A source in a precedence order, and how long a value it set holds against lower sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SourceRank {
    pub source: Source,
    /// After this many days a lower source may overwrite what this one set; none: never.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3650)]
    pub stale_after_days: Option<u32>,
}

/// The precedence of one field of one class, overriding the default order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldPrecedence {
    pub class: CiClass,
    pub field: String,
    /// Highest first. A source not listed may not write the field.
    pub order: Vec<SourceRank>,
}

/// What an administrator configures for the register.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegisterSettings {
    pub statuses: Vec<StatusLabel>,
    /// Highest first; for every field without its own entry in `precedence`.
    pub default_precedence: Vec<SourceRank>,
    #[serde(default)]
    pub precedence: Vec<FieldPrecedence>,
    #[serde(default)]
    pub updated_by: String,
    #[serde(default = "epoch")]
    pub updated_at: DateTime<Utc>,
}

fn epoch() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
}

pub const MAX_STATUS_LABELS: usize = 64;
pub const MAX_FIELD_PRECEDENCES: usize = 256;
pub const MAX_STALE_AFTER_DAYS: u32 = 3650;

impl Default for RegisterSettings {
    fn default() -> Self {
        let label = |name: &str, kind| StatusLabel {
            name: name.into(),
            kind,
        };
        let rank = |source| SourceRank {
            source,
            stale_after_days: None,
        };
        RegisterSettings {
            statuses: vec![
                label("on_order", StatusKind::Pending),
                label("in_stock", StatusKind::InStock),
                label("deployed", StatusKind::Deployed),
                label("in_repair", StatusKind::Pending),
                label("retired", StatusKind::Retired),
                label("disposed", StatusKind::Retired),
            ],
            default_precedence: Source::ALL.into_iter().map(rank).collect(),
            precedence: Vec::new(),
            updated_by: String::new(),
            updated_at: epoch(),
        }
    }
}

impl RegisterSettings {
    /// The order that governs `field` of `class`.
    pub fn order(&self, class: CiClass, field: &str) -> &[SourceRank] {
        self.precedence
            .iter()
            .find(|p| p.class == class && p.field == field)
            .map(|p| p.order.as_slice())
            .unwrap_or(&self.default_precedence)
    }

    /// Every refusal names the setting it is about.
    pub fn validate(&self) -> Result<(), String> {
        if self.statuses.is_empty() || self.statuses.len() > MAX_STATUS_LABELS {
            return Err(format!(
                "statuses: between 1 and {MAX_STATUS_LABELS} labels"
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, s) in self.statuses.iter().enumerate() {
            let ok = !s.name.is_empty()
                && s.name.len() <= 32
                && s.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                return Err(format!(
                    "statuses[{i}].name: '{}' is not 1 to 32 of a-z, 0-9, _",
                    s.name
                ));
            }
            if !seen.insert(s.name.as_str()) {
                return Err(format!("statuses[{i}].name: '{}' is listed twice", s.name));
            }
        }
        validate_order(&self.default_precedence, "default_precedence")?;
        if self.precedence.len() > MAX_FIELD_PRECEDENCES {
            return Err(format!(
                "precedence: at most {MAX_FIELD_PRECEDENCES} entries"
            ));
        }
        let mut fields = std::collections::BTreeSet::new();
        for (i, p) in self.precedence.iter().enumerate() {
            if !CLASSES.contains(&p.class) {
                return Err(format!(
                    "precedence[{i}].class: {} has no register",
                    p.class.as_str()
                ));
            }
            if field(&p.field).is_none() {
                return Err(format!(
                    "precedence[{i}].field: unknown register field '{}'",
                    p.field
                ));
            }
            if !fields.insert((p.class, p.field.as_str())) {
                return Err(format!(
                    "precedence[{i}].field: {} {} is listed twice",
                    p.class.as_str(),
                    p.field
                ));
            }
            validate_order(&p.order, &format!("precedence[{i}].order"))?;
        }
        Ok(())
    }
}

fn validate_order(order: &[SourceRank], name: &str) -> Result<(), String> {
    if order.is_empty() {
        return Err(format!("{name}: lists no source"));
    }
    for (i, r) in order.iter().enumerate() {
        if order[..i].iter().any(|o| o.source == r.source) {
            return Err(format!(
                "{name}[{i}].source: {} is listed twice",
                r.source.as_str()
            ));
        }
        if let Some(d) = r.stale_after_days {
            if d == 0 || d > MAX_STALE_AFTER_DAYS {
                return Err(format!(
                    "{name}[{i}].stale_after_days: between 1 and {MAX_STALE_AFTER_DAYS}"
                ));
            }
        }
    }
    Ok(())
}

/// Whether a source may write a field, given who set it last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Write,
    /// A higher source's value holds (until `until`, when it lapses; never when `None`).
    Held {
        holder: Provenance,
        until: Option<DateTime<Utc>>,
    },
    /// The field's order does not list this source.
    NotListed,
}

/// The precedence rule: a source writes when nothing set the field, when it ranks at or
/// above the source that did (a source no longer listed holds nothing), or when that
/// source's value has been stale longer than its `stale_after_days`.
pub fn decide(
    order: &[SourceRank],
    holder: Option<&Provenance>,
    incoming: Source,
    now: DateTime<Utc>,
) -> Verdict {
    let rank_of = |s: Source| order.iter().position(|r| r.source == s);
    let Some(incoming_rank) = rank_of(incoming) else {
        return Verdict::NotListed;
    };
    let Some(holder) = holder else {
        return Verdict::Write;
    };
    let Some(holder_rank) = rank_of(holder.source) else {
        return Verdict::Write;
    };
    if incoming_rank <= holder_rank {
        return Verdict::Write;
    }
    let until = order[holder_rank]
        .stale_after_days
        .map(|d| holder.at + chrono::Duration::days(i64::from(d)));
    match until {
        Some(u) if now >= u => Verdict::Write,
        _ => Verdict::Held {
            holder: holder.clone(),
            until,
        },
    }
}

/// Checks a value for a field and returns it as stored: text as given, a date as
/// `YYYY-MM-DD`, money as a number (a string of digits is accepted too). Messages start
/// with the field's name.
pub fn normalise(
    def: &FieldDef,
    value: &Value,
    settings: &RegisterSettings,
) -> Result<Value, String> {
    let name = def.name;
    match def.kind {
        FieldKind::Text { max_chars } => {
            let Some(s) = value.as_str() else {
                return Err(format!("{name}: expected text"));
            };
            if s.trim().is_empty() {
                return Err(format!("{name}: empty text; send null to clear the field"));
            }
            let n = s.chars().count();
            if n > max_chars {
                return Err(format!("{name}: {n} characters, at most {max_chars}"));
            }
            // Line breaks belong in notes only; nothing else invisible anywhere.
            let multiline = name == "notes";
            if let Some(c) = s
                .chars()
                .find(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\t')))
            {
                return Err(format!(
                    "{name}: control character U+{:04X} is not allowed",
                    c as u32
                ));
            }
            Ok(Value::String(s.to_string()))
        }
        FieldKind::Date => {
            let s = value
                .as_str()
                .ok_or(format!("{name}: expected a date YYYY-MM-DD"))?;
            let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| format!("{name}: '{s}' is not a date YYYY-MM-DD"))?;
            Ok(Value::String(d.format("%Y-%m-%d").to_string()))
        }
        FieldKind::Money => {
            let n = match value {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            }
            .filter(|n| n.is_finite())
            .ok_or(format!("{name}: expected an amount"))?;
            if !(0.0..MAX_MONEY).contains(&n) {
                return Err(format!("{name}: {n} is outside 0 to {MAX_MONEY}"));
            }
            let cents = (n * 100.0).round();
            if (cents / 100.0 - n).abs() > 1e-9 {
                return Err(format!("{name}: {n} has more than two decimals"));
            }
            serde_json::Number::from_f64(cents / 100.0)
                .map(Value::Number)
                .ok_or(format!("{name}: expected an amount"))
        }
        FieldKind::Status => {
            let s = value
                .as_str()
                .ok_or(format!("{name}: expected a status label"))?;
            if settings.statuses.iter().any(|l| l.name == s) {
                Ok(Value::String(s.to_string()))
            } else {
                let known: Vec<&str> = settings.statuses.iter().map(|l| l.name.as_str()).collect();
                Err(format!(
                    "{name}: unknown status '{s}'; known: {}",
                    known.join(", ")
                ))
            }
        }
    }
}

/// A location is a hierarchy: a room needs its building, a building its site.
pub fn check_location(attributes: &Attributes) -> Result<(), String> {
    let has = |f: &str| attributes.contains_key(&attribute(f));
    if has("location_room") && !has("location_building") {
        return Err("location_room: a room needs a location_building".into());
    }
    if has("location_building") && !has("location_site") {
        return Err("location_building: a building needs a location_site".into());
    }
    Ok(())
}

/// The provenance map of a CI's attributes (an unreadable entry counts as absent).
pub fn provenance(attributes: &Attributes) -> BTreeMap<String, Provenance> {
    provenance_of(attributes.get(PROVENANCE_ATTRIBUTE))
}

/// [`provenance`] from the attribute's value itself (the CI page reads a CI as JSON).
pub fn provenance_of(value: Option<&Value>) -> BTreeMap<String, Provenance> {
    value
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), Provenance::deserialize(v).ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// One field's change, as the feed, webhooks and the audit log show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldChange {
    pub field: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// A register edit of one CI: the payload of a `register.changed` feed event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegisterChange {
    pub ci_id: String,
    pub ci_name: String,
    /// The CI's history version this edit made.
    pub version: u64,
    pub source: Source,
    pub by: String,
    pub changes: Vec<FieldChange>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u32) -> DateTime<Utc> {
        chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 1, day, 0, 0, 0).unwrap()
    }

    fn order(stale: Option<u32>) -> Vec<SourceRank> {
        Source::ALL
            .into_iter()
            .map(|source| SourceRank {
                source,
                stale_after_days: stale,
            })
            .collect()
    }

    /// Every source against every other, fresh and stale: a source writes over its own
    /// rank and below; above it only once the holder's value is older than its age.
    #[test]
    fn the_precedence_matrix_each_source_over_each_other_with_and_without_staleness() {
        for stale in [None, Some(10)] {
            let order = order(stale);
            for (hi, holder_source) in Source::ALL.into_iter().enumerate() {
                let holder = Provenance {
                    source: holder_source,
                    by: "x".into(),
                    at: at(1),
                };
                for (ii, incoming) in Source::ALL.into_iter().enumerate() {
                    for now in [at(5), at(11), at(20)] {
                        let verdict = decide(&order, Some(&holder), incoming, now);
                        let lapsed = stale.is_some() && now >= at(11);
                        let expected_write = ii <= hi || lapsed;
                        assert_eq!(
                            verdict == Verdict::Write,
                            expected_write,
                            "holder {holder_source:?} incoming {incoming:?} stale {stale:?} now {now}"
                        );
                        if !expected_write {
                            assert_eq!(
                                verdict,
                                Verdict::Held {
                                    holder: holder.clone(),
                                    until: stale.map(|_| at(11)),
                                }
                            );
                        }
                    }
                }
                assert_eq!(decide(&order, None, holder_source, at(1)), Verdict::Write);
            }
        }
    }

    #[test]
    fn staleness_is_the_holders_own_age_not_the_incoming_sources() {
        let order = vec![
            SourceRank {
                source: Source::Person,
                stale_after_days: None,
            },
            SourceRank {
                source: Source::FileImport,
                stale_after_days: Some(1),
            },
        ];
        let person = Provenance {
            source: Source::Person,
            by: "ann".into(),
            at: at(1),
        };
        assert!(matches!(
            decide(&order, Some(&person), Source::FileImport, at(30)),
            Verdict::Held { until: None, .. }
        ));
    }

    #[test]
    fn a_source_not_listed_neither_writes_nor_holds() {
        let order = vec![SourceRank {
            source: Source::Person,
            stale_after_days: None,
        }];
        assert_eq!(
            decide(&order, None, Source::Agent, at(1)),
            Verdict::NotListed
        );
        let agent = Provenance {
            source: Source::Agent,
            by: "agt".into(),
            at: at(1),
        };
        assert_eq!(
            decide(&order, Some(&agent), Source::Person, at(1)),
            Verdict::Write
        );
    }

    #[test]
    fn values_are_checked_and_normalised_per_kind() {
        let s = RegisterSettings::default();
        let f = |n| field(n).unwrap();
        assert_eq!(
            normalise(f("purchase_cost"), &serde_json::json!("1299.5"), &s),
            Ok(serde_json::json!(1299.5))
        );
        assert!(normalise(f("purchase_cost"), &serde_json::json!(-1), &s).is_err());
        assert!(normalise(f("purchase_cost"), &serde_json::json!(1.234), &s)
            .unwrap_err()
            .contains("two decimals"));
        assert!(
            normalise(f("warranty_end"), &serde_json::json!("2027-02-30"), &s)
                .unwrap_err()
                .starts_with("warranty_end:")
        );
        assert!(normalise(f("owner"), &serde_json::json!("a\u{7}b"), &s)
            .unwrap_err()
            .contains("U+0007"));
        assert!(normalise(f("notes"), &serde_json::json!("line\nline"), &s).is_ok());
        assert!(
            normalise(f("asset_tag"), &serde_json::json!("x".repeat(65)), &s)
                .unwrap_err()
                .contains("at most 64")
        );
        assert!(
            normalise(f("lifecycle_status"), &serde_json::json!("lost"), &s)
                .unwrap_err()
                .contains("known: on_order")
        );
        assert!(normalise(f("owner"), &serde_json::json!(" "), &s).is_err());
    }

    #[test]
    fn settings_refuse_duplicates_unknown_fields_and_bad_ages() {
        let mut s = RegisterSettings::default();
        assert_eq!(s.validate(), Ok(()));
        s.statuses.push(s.statuses[0].clone());
        assert!(s.validate().unwrap_err().contains("listed twice"));
        let mut s = RegisterSettings::default();
        s.precedence.push(FieldPrecedence {
            class: CiClass::Computer,
            field: "colour".into(),
            order: order(None),
        });
        assert!(s.validate().unwrap_err().starts_with("precedence[0].field"));
        let mut s = RegisterSettings::default();
        s.default_precedence[1].stale_after_days = Some(0);
        assert!(s
            .validate()
            .unwrap_err()
            .starts_with("default_precedence[1].stale_after_days"));
        let mut s = RegisterSettings::default();
        s.precedence.push(FieldPrecedence {
            class: CiClass::Disk,
            field: "owner".into(),
            order: order(None),
        });
        assert!(s.validate().unwrap_err().contains("has no register"));
    }

    #[test]
    fn a_location_is_a_hierarchy() {
        let mut a = Attributes::new();
        a.insert(attribute("location_room"), "3.12".into());
        assert!(check_location(&a).is_err());
        a.insert(attribute("location_building"), "HQ".into());
        assert!(check_location(&a)
            .unwrap_err()
            .starts_with("location_building"));
        a.insert(attribute("location_site"), "Paris".into());
        assert_eq!(check_location(&a), Ok(()));
    }
}
