//! The asset register: what people record about a computer that discovery cannot know
//! (asset tag, owner, location, purchase, warranty, lifecycle status), which source set
//! each field and when, and the precedence that decides whether a source may overwrite
//! another's value. Plain data and pure decisions; the write is `ops::register`.
//!
//! Register fields are configuration attributes of the computer under `register.` (so
//! history, as-of and filters see them like any attribute) with their provenance in
//! [`PROVENANCE_ATTRIBUTE`]. Architecture Invariant: ingest writes a `register.`
//! attribute only through [`reconcile_discovered`] (the fields discovery reports, under
//! precedence; everything else is carried over from the stored computer) and the drift
//! view never reads one, so a register edit is never drift.

use std::borrow::Cow;
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "type", deny_unknown_fields)]
pub enum FieldKind {
    /// Text of at most `max_chars` characters, no control characters.
    Text {
        #[schema(minimum = 1, maximum = 4000)]
        max_chars: usize,
    },
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// An amount of money, at least 0 and below [`MAX_MONEY`], at most two decimals.
    Money,
    /// One of the lifecycle status labels in [`RegisterSettings::statuses`].
    Status,
    /// A number within `min` and `max` (when given) with at most `decimals` decimals.
    Number {
        #[serde(default)]
        min: Option<f64>,
        #[serde(default)]
        max: Option<f64>,
        #[serde(default)]
        #[schema(minimum = 0, maximum = 6)]
        decimals: u8,
    },
    /// One of `values`.
    Enum {
        #[schema(min_items = 1, max_items = 100)]
        values: Vec<String>,
    },
}

/// Largest amount a money field holds.
pub const MAX_MONEY: f64 = 1e12;
/// Largest magnitude a number field holds (exact in a double).
pub const MAX_NUMBER: f64 = 1e15;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FieldDef {
    #[schema(value_type = String)]
    pub name: Cow<'static, str>,
    pub kind: FieldKind,
    #[schema(value_type = String)]
    pub description: Cow<'static, str>,
    /// Defined by an administrator (`u_` names), not built in.
    pub custom: bool,
}

const fn text(name: &'static str, max_chars: usize, description: &'static str) -> FieldDef {
    FieldDef {
        name: Cow::Borrowed(name),
        kind: FieldKind::Text { max_chars },
        description: Cow::Borrowed(description),
        custom: false,
    }
}

const fn builtin(name: &'static str, kind: FieldKind, description: &'static str) -> FieldDef {
    FieldDef {
        name: Cow::Borrowed(name),
        kind,
        description: Cow::Borrowed(description),
        custom: false,
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
    builtin(
        "purchase_date",
        FieldKind::Date,
        "When it was bought (YYYY-MM-DD).",
    ),
    builtin(
        "purchase_cost",
        FieldKind::Money,
        "What it cost, in the organisation's currency.",
    ),
    builtin(
        "warranty_end",
        FieldKind::Date,
        "Last day of the warranty (YYYY-MM-DD).",
    ),
    builtin(
        "lifecycle_status",
        FieldKind::Status,
        "A lifecycle status label (in stock, deployed, in repair, retired, ...).",
    ),
    text("notes", 4000, "Free notes."),
    text(
        "serial_number",
        128,
        "The hardware's serial as the register knows it; discovery reports it too (system.serial).",
    ),
    text(
        "manufacturer",
        128,
        "Who made the hardware; discovery reports it too (system.vendor).",
    ),
    text(
        "model",
        128,
        "The hardware model; discovery reports it too (system.model).",
    ),
];

/// Register fields that discovery also reports, with the attribute that reports each:
/// Census agents are a source of these fields, under the same precedence as people, and
/// where a higher source's value disagrees with discovery a [`Discrepancy`] waits for a
/// person instead of either side silently winning.
pub const DISCOVERED: &[(&str, &str)] = &[
    ("serial_number", "system.serial"),
    ("manufacturer", "system.vendor"),
    ("model", "system.model"),
];

/// The attribute that maps a field to the open (or kept) [`Discrepancy`] about it.
pub const RECONCILIATION_ATTRIBUTE: &str = "register.reconciliation";

/// The classes that have a register.
pub const CLASSES: &[CiClass] = &[CiClass::Computer];

/// A built-in field (custom ones: [`RegisterSettings::field`]).
pub fn field(name: &str) -> Option<&'static FieldDef> {
    FIELDS.iter().find(|f| f.name == name)
}

/// What every custom field's name starts with, so no built-in field added later can
/// collide with one (ServiceNow's `u_` convention).
pub const CUSTOM_PREFIX: &str = "u_";
pub const MAX_CUSTOM_FIELDS: usize = 64;
pub const MAX_CUSTOM_NAME_CHARS: usize = 40;
pub const MAX_CUSTOM_TEXT_CHARS: usize = 4000;
pub const MAX_ENUM_VALUES: usize = 100;
pub const MAX_ENUM_VALUE_CHARS: usize = 64;
pub const MAX_DESCRIPTION_CHARS: usize = 200;

/// A register field an administrator defines for a class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomField {
    pub class: CiClass,
    /// `u_` then 1 to 40 of a-z, 0-9, _.
    #[schema(pattern = "^u_[a-z0-9_]{1,40}$")]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub description: String,
    /// text, number, date, money or enum (not status).
    pub kind: FieldKind,
}

impl CustomField {
    fn def(&self) -> FieldDef {
        FieldDef {
            name: Cow::Owned(self.name.clone()),
            kind: self.kind.clone(),
            description: Cow::Owned(self.description.clone()),
            custom: true,
        }
    }

    fn validate(&self, at: &str) -> Result<(), String> {
        let rest = self.name.strip_prefix(CUSTOM_PREFIX).unwrap_or("");
        let ok = !rest.is_empty()
            && rest.len() <= MAX_CUSTOM_NAME_CHARS
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(format!(
                "{at}.name: '{}' is not {CUSTOM_PREFIX} then 1 to {MAX_CUSTOM_NAME_CHARS} of a-z, 0-9, _",
                self.name
            ));
        }
        if !CLASSES.contains(&self.class) {
            return Err(format!(
                "{at}.class: {} has no register",
                self.class.as_str()
            ));
        }
        if self.description.chars().count() > MAX_DESCRIPTION_CHARS
            || self.description.chars().any(char::is_control)
        {
            return Err(format!(
                "{at}.description: at most {MAX_DESCRIPTION_CHARS} characters, no control characters"
            ));
        }
        match &self.kind {
            FieldKind::Text { max_chars } => {
                if !(1..=MAX_CUSTOM_TEXT_CHARS).contains(max_chars) {
                    return Err(format!(
                        "{at}.kind.max_chars: between 1 and {MAX_CUSTOM_TEXT_CHARS}"
                    ));
                }
            }
            FieldKind::Date | FieldKind::Money => {}
            FieldKind::Status => {
                return Err(format!(
                    "{at}.kind: status is the lifecycle's; use enum for a list of values"
                ))
            }
            FieldKind::Number { min, max, decimals } => {
                let bounded =
                    |v: &Option<f64>| v.is_none_or(|v| v.is_finite() && v.abs() <= MAX_NUMBER);
                if !bounded(min) || !bounded(max) {
                    return Err(format!(
                        "{at}.kind: min and max within -{MAX_NUMBER} to {MAX_NUMBER}"
                    ));
                }
                if let (Some(lo), Some(hi)) = (min, max) {
                    if lo > hi {
                        return Err(format!("{at}.kind: min {lo} is above max {hi}"));
                    }
                }
                if *decimals > 6 {
                    return Err(format!("{at}.kind.decimals: between 0 and 6"));
                }
            }
            FieldKind::Enum { values } => {
                if values.is_empty() || values.len() > MAX_ENUM_VALUES {
                    return Err(format!(
                        "{at}.kind.values: between 1 and {MAX_ENUM_VALUES} values"
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.trim().is_empty()
                        || v.chars().count() > MAX_ENUM_VALUE_CHARS
                        || v.chars().any(char::is_control)
                    {
                        return Err(format!(
                            "{at}.kind.values[{i}]: 1 to {MAX_ENUM_VALUE_CHARS} characters, no control characters"
                        ));
                    }
                    if values[..i].contains(v) {
                        return Err(format!("{at}.kind.values[{i}]: '{v}' is listed twice"));
                    }
                }
            }
        }
        Ok(())
    }
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
    /// Fields an administrator added to a class's register.
    #[serde(default)]
    pub custom_fields: Vec<CustomField>,
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
            custom_fields: Vec::new(),
            updated_by: String::new(),
            updated_at: epoch(),
        }
    }
}

impl RegisterSettings {
    /// Every register field of `class`: the built-in ones, then its custom ones.
    pub fn fields(&self, class: CiClass) -> Vec<FieldDef> {
        if !CLASSES.contains(&class) {
            return Vec::new();
        }
        FIELDS
            .iter()
            .cloned()
            .chain(
                self.custom_fields
                    .iter()
                    .filter(|c| c.class == class)
                    .map(CustomField::def),
            )
            .collect()
    }

    /// A register field of `class`, built in or custom.
    pub fn field(&self, class: CiClass, name: &str) -> Option<FieldDef> {
        if !CLASSES.contains(&class) {
            return None;
        }
        if let Some(f) = field(name) {
            return Some(f.clone());
        }
        self.custom_fields
            .iter()
            .find(|c| c.class == class && c.name == name)
            .map(CustomField::def)
    }

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
        let mut custom = std::collections::BTreeSet::new();
        for (i, c) in self.custom_fields.iter().enumerate() {
            c.validate(&format!("custom_fields[{i}]"))?;
            if !custom.insert((c.class, c.name.as_str())) {
                return Err(format!(
                    "custom_fields[{i}].name: {} {} is defined twice",
                    c.class.as_str(),
                    c.name
                ));
            }
        }
        for class in CLASSES {
            let n = self
                .custom_fields
                .iter()
                .filter(|c| c.class == *class)
                .count();
            if n > MAX_CUSTOM_FIELDS {
                return Err(format!(
                    "custom_fields: {n} fields for {}, at most {MAX_CUSTOM_FIELDS} per class",
                    class.as_str()
                ));
            }
        }
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
            if self.field(p.class, &p.field).is_none() {
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
    let name = def.name.as_ref();
    match &def.kind {
        FieldKind::Text { max_chars } => {
            let Some(s) = value.as_str() else {
                return Err(format!("{name}: expected text"));
            };
            if s.trim().is_empty() {
                return Err(format!("{name}: empty text; send null to clear the field"));
            }
            let n = s.chars().count();
            if n > *max_chars {
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
        FieldKind::Number { min, max, decimals } => {
            let n = match value {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            }
            .filter(|n| n.is_finite() && n.abs() <= MAX_NUMBER)
            .ok_or(format!("{name}: expected a number"))?;
            if let Some(lo) = min.filter(|lo| n < *lo) {
                return Err(format!("{name}: {n} is below the minimum {lo}"));
            }
            if let Some(hi) = max.filter(|hi| n > *hi) {
                return Err(format!("{name}: {n} is above the maximum {hi}"));
            }
            let scale = 10f64.powi(i32::from(*decimals));
            let scaled = (n * scale).round();
            if (scaled / scale - n).abs() > 1e-9 * n.abs().max(1.0) {
                return Err(format!("{name}: {n} has more than {decimals} decimals"));
            }
            let rounded = scaled / scale;
            if *decimals == 0 {
                // Whole numbers are stored as integers, so they print as written.
                return Ok(Value::from(rounded as i64));
            }
            serde_json::Number::from_f64(rounded)
                .map(Value::Number)
                .ok_or(format!("{name}: expected a number"))
        }
        FieldKind::Enum { values } => {
            let s = value
                .as_str()
                .ok_or(format!("{name}: expected one of its values"))?;
            if values.iter().any(|v| v == s) {
                Ok(Value::String(s.to_string()))
            } else {
                Err(format!("{name}: '{s}' is not one of {}", values.join(", ")))
            }
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

/// Discovery disagrees with the value a higher source holds in a register field (a person
/// recorded serial X, the agent reports Y): a reconciliation item that waits for a person.
/// Nothing is overwritten meanwhile. A person accepts the discovered value (the field is
/// discovery's again) or keeps theirs; a kept item stays recorded and is not listed as
/// open until discovery reports yet another value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Discrepancy {
    /// The value the register holds (none when the holder cleared the field).
    pub held: Option<Value>,
    pub holder: Provenance,
    /// What discovery reports.
    pub discovered: Value,
    /// The agent that reported it.
    pub agent: String,
    /// When discovery first reported this value against the held one.
    pub since: DateTime<Utc>,
    /// Set when a person chose to keep the held value against this discovered one.
    #[serde(default)]
    pub kept: Option<Provenance>,
}

impl Discrepancy {
    pub fn is_open(&self) -> bool {
        self.kept.is_none()
    }
}

/// The reconciliation items of a CI's attributes, by field.
pub fn discrepancies(attributes: &Attributes) -> BTreeMap<String, Discrepancy> {
    attributes
        .get(RECONCILIATION_ATTRIBUTE)
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), Discrepancy::deserialize(v).ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn put_map<T: Serialize>(attributes: &mut Attributes, path: &str, map: &BTreeMap<String, T>) {
    let value = serde_json::to_value(map).unwrap_or(Value::Null);
    if map.is_empty() || value.is_null() {
        attributes.remove(path);
    } else {
        attributes.insert(path.to_string(), value);
    }
}

/// Discovered values are compared as identifiers are: surrounding blanks and case do not
/// make a disagreement (a serial typed in lower case is the same serial).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_str(), b.as_str()) {
        (Some(x), Some(y)) => x.trim().eq_ignore_ascii_case(y.trim()),
        _ => a == b,
    }
}

/// What a discovered value means to the register: absent when missing, a placeholder
/// (`To Be Filled By O.E.M.`) or not a valid value of the field.
fn discovered_value(def: &FieldDef, attributes: &Attributes, from: &str) -> Option<Value> {
    let raw = attributes.get(from)?;
    if raw
        .as_str()
        .is_some_and(census_shared::identity::is_placeholder)
    {
        return None;
    }
    normalise(def, raw, &RegisterSettings::default()).ok()
}

/// How [`reconcile_discovered`] treats a field discovery may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryMode {
    /// An inventory: the agent writes where precedence lets it.
    Inventory,
    /// A person's or an import's write: discovery writes nothing, but a value that now
    /// disagrees with what discovery last reported opens an item at once.
    Edit,
}

/// Reconciles the register fields discovery reports ([`DISCOVERED`]) with what the
/// computer's attributes say discovery found: the agent writes a field where precedence
/// lets it (returned as changes), a held field that disagrees gets a [`Discrepancy`], and
/// an item whose disagreement is gone (values agree again, the agent now may write, or
/// discovery no longer reports a value) is dropped.
pub fn reconcile_discovered(
    attributes: &mut Attributes,
    class: CiClass,
    settings: &RegisterSettings,
    agent_id: &str,
    mode: DiscoveryMode,
    now: DateTime<Utc>,
) -> Vec<FieldChange> {
    if !CLASSES.contains(&class) {
        return Vec::new();
    }
    let mut provenance = provenance(attributes);
    let mut items = discrepancies(attributes);
    // Whether either map changed, so an inventory that changes nothing here rewrites
    // neither attribute.
    let mut changed = false;
    let mut changes = Vec::new();
    for (name, from) in DISCOVERED {
        let Some(def) = field(name) else { continue };
        let path = attribute(name);
        let Some(discovered) = discovered_value(def, attributes, from) else {
            changed |= items.remove(*name).is_some();
            continue;
        };
        let held = attributes.get(&path).cloned();
        if held.as_ref().is_some_and(|h| same_value(h, &discovered)) {
            changed |= items.remove(*name).is_some();
            continue;
        }
        let verdict = decide(
            settings.order(class, name),
            provenance.get(*name),
            Source::Agent,
            now,
        );
        match (verdict, mode) {
            (Verdict::Write, DiscoveryMode::Inventory) => {
                attributes.insert(path, discovered.clone());
                provenance.insert(
                    name.to_string(),
                    Provenance {
                        source: Source::Agent,
                        by: agent_id.to_string(),
                        at: now,
                    },
                );
                items.remove(*name);
                changed = true;
                changes.push(FieldChange {
                    field: name.to_string(),
                    before: held,
                    after: Some(discovered),
                });
            }
            (Verdict::Held { holder, .. }, _) => {
                let same_item = items
                    .get(*name)
                    .is_some_and(|d| same_value(&d.discovered, &discovered) && d.held == held);
                if !same_item {
                    changed = true;
                    items.insert(
                        name.to_string(),
                        Discrepancy {
                            held,
                            holder,
                            discovered,
                            agent: agent_id.to_string(),
                            since: now,
                            kept: None,
                        },
                    );
                }
            }
            // An edit leaves a field the agent may write to the next inventory.
            (Verdict::Write, DiscoveryMode::Edit) | (Verdict::NotListed, _) => {
                changed |= items.remove(*name).is_some();
            }
        }
    }
    if changed {
        put_map(attributes, PROVENANCE_ATTRIBUTE, &provenance);
        put_map(attributes, RECONCILIATION_ATTRIBUTE, &items);
    }
    changes
}

/// What a person decides about a reconciliation item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Take the discovered value; the field is discovery's from now on.
    Accept,
    /// Keep the held value against this discovered one.
    Keep,
}

named!(Resolution, "resolution", {
    Accept => "accept",
    Keep => "keep",
});

/// Applies a person's decision on the item about `field`: the value change it makes (none
/// for keep). Errors name the problem: no such item, or one already kept.
pub fn resolve(
    attributes: &mut Attributes,
    field: &str,
    resolution: Resolution,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Option<FieldChange>, String> {
    let mut items = discrepancies(attributes);
    let Some(item) = items.get_mut(field) else {
        return Err(format!("{field}: no reconciliation item is waiting"));
    };
    let change = match resolution {
        Resolution::Keep => {
            if item.kept.is_some() {
                return Err(format!("{field}: the held value was kept already"));
            }
            item.kept = Some(Provenance {
                source: Source::Person,
                by: by.to_string(),
                at: now,
            });
            None
        }
        Resolution::Accept => {
            let item = items.remove(field).ok_or(format!("{field}: gone"))?;
            let path = attribute(field);
            let before = attributes.insert(path, item.discovered.clone());
            let mut provenance = provenance(attributes);
            provenance.insert(
                field.to_string(),
                Provenance {
                    source: Source::Agent,
                    by: item.agent,
                    at: now,
                },
            );
            put_map(attributes, PROVENANCE_ATTRIBUTE, &provenance);
            Some(FieldChange {
                field: field.to_string(),
                before,
                after: Some(item.discovered),
            })
        }
    };
    put_map(attributes, RECONCILIATION_ATTRIBUTE, &items);
    Ok(change)
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
    fn discovered(serial: &str) -> Attributes {
        let mut a = Attributes::new();
        a.insert("system.serial".into(), serial.into());
        a.insert("system.vendor".into(), "Dell Inc.".into());
        a
    }

    fn set_by_person(a: &mut Attributes, field: &str, value: &str) {
        a.insert(attribute(field), value.into());
        let mut p = provenance(a);
        p.insert(
            field.into(),
            Provenance {
                source: Source::Person,
                by: "ann".into(),
                at: at(1),
            },
        );
        put_map(a, PROVENANCE_ATTRIBUTE, &p);
    }

    fn inventory(a: &mut Attributes, settings: &RegisterSettings, day: u32) -> Vec<FieldChange> {
        reconcile_discovered(
            a,
            CiClass::Computer,
            settings,
            "agt_1",
            DiscoveryMode::Inventory,
            at(day),
        )
    }

    #[test]
    fn the_agent_writes_fields_nobody_holds_and_follows_its_own_values() {
        let s = RegisterSettings::default();
        let mut a = discovered("SN-1");
        let changes = inventory(&mut a, &s, 1);
        assert_eq!(
            changes.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(),
            ["serial_number", "manufacturer"]
        );
        assert_eq!(a[&attribute("serial_number")], "SN-1");
        assert_eq!(provenance(&a)["serial_number"].source, Source::Agent);
        assert!(
            inventory(&mut a, &s, 2).is_empty(),
            "nothing new, nothing written"
        );
        a.insert("system.serial".into(), "SN-2".into());
        assert_eq!(inventory(&mut a, &s, 3).len(), 1);
        assert_eq!(a[&attribute("serial_number")], "SN-2");
        assert!(discrepancies(&a).is_empty());
    }

    #[test]
    fn discovery_disagreeing_with_a_person_opens_an_item_and_overwrites_nothing() {
        let s = RegisterSettings::default();
        let mut a = discovered("SN-REAL");
        set_by_person(&mut a, "serial_number", "SN-TYPED");
        assert_eq!(inventory(&mut a, &s, 2).len(), 1, "manufacturer only");
        assert_eq!(a[&attribute("serial_number")], "SN-TYPED");
        let items = discrepancies(&a);
        let item = &items["serial_number"];
        assert!(item.is_open());
        assert_eq!(item.discovered, "SN-REAL");
        assert_eq!(item.held, Some("SN-TYPED".into()));
        assert_eq!(item.holder.by, "ann");
        assert_eq!(item.since, at(2));
        // The same disagreement again is the same item (since stays).
        inventory(&mut a, &s, 3);
        assert_eq!(discrepancies(&a)["serial_number"].since, at(2));
        // Case and blanks are no disagreement: the item goes.
        a.insert("system.serial".into(), " sn-typed ".into());
        inventory(&mut a, &s, 4);
        assert!(discrepancies(&a).is_empty());
    }

    #[test]
    fn a_stale_holder_lets_the_agent_write_instead_of_opening_an_item() {
        let mut s = RegisterSettings::default();
        s.default_precedence[0].stale_after_days = Some(5);
        let mut a = discovered("SN-REAL");
        set_by_person(&mut a, "serial_number", "SN-TYPED");
        inventory(&mut a, &s, 3);
        assert!(discrepancies(&a).contains_key("serial_number"));
        inventory(&mut a, &s, 7);
        assert_eq!(a[&attribute("serial_number")], "SN-REAL");
        assert!(discrepancies(&a).is_empty());
    }

    #[test]
    fn accepting_hands_the_field_to_discovery_and_keeping_holds_until_another_value() {
        let s = RegisterSettings::default();
        let mut a = discovered("SN-REAL");
        set_by_person(&mut a, "serial_number", "SN-TYPED");
        inventory(&mut a, &s, 2);
        let mut kept = a.clone();
        let change = resolve(&mut a, "serial_number", Resolution::Accept, "bob", at(3))
            .unwrap()
            .unwrap();
        assert_eq!(change.after, Some("SN-REAL".into()));
        assert_eq!(provenance(&a)["serial_number"].source, Source::Agent);
        assert!(discrepancies(&a).is_empty());
        assert!(resolve(&mut a, "serial_number", Resolution::Keep, "bob", at(3)).is_err());

        assert_eq!(
            resolve(&mut kept, "serial_number", Resolution::Keep, "bob", at(3)),
            Ok(None)
        );
        assert_eq!(kept[&attribute("serial_number")], "SN-TYPED");
        assert!(!discrepancies(&kept)["serial_number"].is_open());
        inventory(&mut kept, &s, 4);
        assert!(
            !discrepancies(&kept)["serial_number"].is_open(),
            "still kept"
        );
        kept.insert("system.serial".into(), "SN-THIRD".into());
        inventory(&mut kept, &s, 5);
        let item = &discrepancies(&kept)["serial_number"];
        assert!(item.is_open(), "a new discovered value reopens it");
        assert_eq!(item.discovered, "SN-THIRD");
    }

    #[test]
    fn placeholders_and_unlisted_agents_open_nothing() {
        let mut s = RegisterSettings::default();
        let mut a = discovered("To Be Filled By O.E.M.");
        set_by_person(&mut a, "serial_number", "SN-TYPED");
        inventory(&mut a, &s, 2);
        assert!(discrepancies(&a).is_empty());
        s.precedence.push(FieldPrecedence {
            class: CiClass::Computer,
            field: "manufacturer".into(),
            order: vec![SourceRank {
                source: Source::Person,
                stale_after_days: None,
            }],
        });
        let mut a = discovered("SN-1");
        set_by_person(&mut a, "manufacturer", "Lenovo");
        inventory(&mut a, &s, 2);
        assert!(!discrepancies(&a).contains_key("manufacturer"));
        assert_eq!(a[&attribute("manufacturer")], "Lenovo");
    }

    #[test]
    fn an_edit_that_disagrees_with_discovery_opens_an_item_at_once() {
        let s = RegisterSettings::default();
        let mut a = discovered("SN-REAL");
        inventory(&mut a, &s, 1);
        set_by_person(&mut a, "serial_number", "SN-TYPED");
        let changes = reconcile_discovered(
            &mut a,
            CiClass::Computer,
            &s,
            "agt_1",
            DiscoveryMode::Edit,
            at(2),
        );
        assert!(changes.is_empty());
        assert_eq!(discrepancies(&a)["serial_number"].discovered, "SN-REAL");
    }
    fn custom(name: &str, kind: FieldKind) -> CustomField {
        CustomField {
            class: CiClass::Computer,
            name: name.into(),
            description: String::new(),
            kind,
        }
    }

    #[test]
    fn custom_fields_are_validated_with_limits_and_join_the_class_fields() {
        let s = RegisterSettings {
            custom_fields: vec![
                custom("u_rack", FieldKind::Text { max_chars: 16 }),
                custom(
                    "u_contract",
                    FieldKind::Enum {
                        values: vec!["gold".into(), "silver".into()],
                    },
                ),
            ],
            ..Default::default()
        };
        assert_eq!(s.validate(), Ok(()));
        let fields = s.fields(CiClass::Computer);
        assert_eq!(fields.len(), FIELDS.len() + 2);
        assert!(fields.last().unwrap().custom);
        assert!(s.field(CiClass::Computer, "u_rack").is_some());
        assert!(s.field(CiClass::Disk, "u_rack").is_none());
        let refused = |c: CustomField| {
            RegisterSettings {
                custom_fields: vec![c],
                ..Default::default()
            }
            .validate()
            .unwrap_err()
        };
        assert!(refused(custom("rack", FieldKind::Date)).contains("u_ then"));
        assert!(refused(custom("u_Rack", FieldKind::Date)).contains("u_ then"));
        assert!(
            refused(custom(&format!("u_{}", "x".repeat(41)), FieldKind::Date)).contains("u_ then")
        );
        assert!(refused(custom("u_s", FieldKind::Status)).contains("use enum"));
        assert!(refused(custom("u_t", FieldKind::Text { max_chars: 4001 })).contains("max_chars"));
        assert!(refused(custom("u_e", FieldKind::Enum { values: vec![] })).contains("values"));
        assert!(refused(custom(
            "u_e",
            FieldKind::Enum {
                values: vec!["a".into(), "a".into()]
            }
        ))
        .contains("twice"));
        assert!(refused(custom(
            "u_n",
            FieldKind::Number {
                min: Some(5.0),
                max: Some(1.0),
                decimals: 0
            }
        ))
        .contains("above max"));
        assert!(refused(custom(
            "u_n",
            FieldKind::Number {
                min: None,
                max: None,
                decimals: 7
            }
        ))
        .contains("decimals"));
        let mut c = custom("u_d", FieldKind::Date);
        c.class = CiClass::Disk;
        assert!(refused(c).contains("has no register"));
        let s = RegisterSettings {
            custom_fields: vec![
                custom("u_d", FieldKind::Date),
                custom("u_d", FieldKind::Money),
            ],
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().contains("defined twice"));
        let s = RegisterSettings {
            custom_fields: (0..=MAX_CUSTOM_FIELDS)
                .map(|i| custom(&format!("u_f{i}"), FieldKind::Date))
                .collect(),
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().contains("at most 64 per class"));
        // Precedence may name a custom field once it is defined.
        let mut s = RegisterSettings::default();
        s.precedence.push(FieldPrecedence {
            class: CiClass::Computer,
            field: "u_rack".into(),
            order: order(None),
        });
        assert!(s.validate().is_err());
        s.custom_fields = vec![custom("u_rack", FieldKind::Text { max_chars: 8 })];
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn numbers_and_enums_are_checked_against_their_definition() {
        let s = RegisterSettings::default();
        let slots = custom(
            "u_slots",
            FieldKind::Number {
                min: Some(0.0),
                max: Some(16.0),
                decimals: 0,
            },
        )
        .def();
        assert_eq!(
            normalise(&slots, &serde_json::json!("4"), &s),
            Ok(serde_json::json!(4))
        );
        assert!(normalise(&slots, &serde_json::json!(17), &s)
            .unwrap_err()
            .contains("above the maximum 16"));
        assert!(normalise(&slots, &serde_json::json!(-1), &s)
            .unwrap_err()
            .contains("below the minimum 0"));
        assert!(normalise(&slots, &serde_json::json!(2.5), &s)
            .unwrap_err()
            .contains("more than 0 decimals"));
        assert!(normalise(&slots, &serde_json::json!("many"), &s)
            .unwrap_err()
            .starts_with("u_slots: expected a number"));
        let ratio = custom(
            "u_ratio",
            FieldKind::Number {
                min: None,
                max: None,
                decimals: 3,
            },
        )
        .def();
        assert_eq!(
            normalise(&ratio, &serde_json::json!("-0.125"), &s),
            Ok(serde_json::json!(-0.125))
        );
        let contract = custom(
            "u_contract",
            FieldKind::Enum {
                values: vec!["gold".into(), "silver".into()],
            },
        )
        .def();
        assert!(normalise(&contract, &serde_json::json!("gold"), &s).is_ok());
        assert!(normalise(&contract, &serde_json::json!("Gold"), &s)
            .unwrap_err()
            .contains("not one of gold, silver"));
    }
}
