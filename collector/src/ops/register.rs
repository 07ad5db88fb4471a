//! The asset register's operations: its settings (status labels, source precedence) and
//! edits of a computer's register fields by a source, each checked against the field's
//! precedence, written as one history version with its audit entry and a
//! `register.changed` feed event, never as drift.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{draft, Actor, OpError, Ops, MAX_COMMENT_CHARS};
use crate::model::register::{self, FieldChange, Provenance, RegisterChange, RegisterSettings};
use crate::model::*;
use crate::store::{
    asset_tag_key, register_digest, register_of, register_serial_key, IdentityKey, PeopleWrite,
    PeopleWriteError, RecordWrite, RegisterWrite,
};

/// A register edit: fields to set (`null` clears one).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterEdit {
    /// Field name -> new value, or null to clear it. Names and value types are those of
    /// `GET /api/v1/register/fields`.
    #[schema(value_type = BTreeMap<String, serde_json::Value>)]
    pub set: BTreeMap<String, Option<Value>>,
    /// Refuse the edit (409) unless the CI is still at this history version.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub expected_version: Option<u64>,
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub comment: Option<String>,
}

/// One field of a CI's register: its value and who set it when.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RegisterFieldView {
    pub field: String,
    pub value: Option<Value>,
    /// Who last set (or cleared) it; none when no source ever did.
    pub set_by: Option<Provenance>,
}

/// A CI's register.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RegisterView {
    pub ci_id: String,
    pub ci_name: String,
    /// The CI's history version, for `expected_version`.
    pub version: u64,
    pub fields: Vec<RegisterFieldView>,
    /// Reconciliation items by field: where discovery disagrees with a held value.
    pub reconciliation: BTreeMap<String, register::Discrepancy>,
}

/// The register of a CI as it stands (or stood, for a past version).
pub fn view(ci: &Ci, settings: &RegisterSettings) -> RegisterView {
    let provenance = register::provenance(&ci.attributes);
    RegisterView {
        ci_id: ci.id.clone(),
        ci_name: ci.name.clone(),
        version: ci.version,
        fields: settings
            .fields(ci.class)
            .iter()
            .map(|f| RegisterFieldView {
                field: f.name.to_string(),
                value: ci.attributes.get(&register::attribute(&f.name)).cloned(),
                set_by: provenance.get(f.name.as_ref()).cloned(),
            })
            .collect(),
        reconciliation: register::discrepancies(&ci.attributes),
    }
}

pub fn settings(ops: &Ops) -> Result<RegisterSettings, OpError> {
    Ok(ops.store.register_settings()?.unwrap_or_default())
}

/// Replaces the register settings, audited with before and after.
pub fn put_settings(
    ops: &Ops,
    actor: &Actor,
    mut next: RegisterSettings,
) -> Result<RegisterSettings, OpError> {
    next.validate().map_err(OpError::invalid)?;
    let before = settings(ops)?;
    next.updated_by = actor.name.clone();
    next.updated_at = Utc::now();
    ops.audited(
        PeopleWrite::PutRegisterSettings(next.clone()),
        draft(
            actor,
            "register_settings.update",
            "register_settings",
            serde_json::to_value(&before).ok(),
            serde_json::to_value(&next).ok(),
            None,
        ),
    )?;
    Ok(next)
}

pub fn get(ops: &Ops, ci_id: &str) -> Result<RegisterView, OpError> {
    let ci = ops
        .store
        .get_ci(ci_id)?
        .ok_or_else(|| OpError::NotFound(format!("CI {ci_id}")))?;
    has_register(&ci)?;
    Ok(view(&ci, &settings(ops)?))
}

fn has_register(ci: &Ci) -> Result<(), OpError> {
    if register::CLASSES.contains(&ci.class) {
        Ok(())
    } else {
        Err(OpError::NotFound(format!(
            "register of {} (a {} has none)",
            ci.id,
            ci.class.as_str()
        )))
    }
}

/// A computer recorded before any agent reports it (ordered, in stock).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRecord {
    /// What to call it until discovery names it (its planned host name, a label).
    #[schema(min_length = 1, max_length = 253)]
    pub name: String,
    /// The serial number on the hardware: when an agent first reports a machine with this
    /// serial (and none of its other keys is known), that machine becomes this record.
    #[serde(default)]
    #[schema(max_length = 128)]
    pub serial: Option<String>,
    /// Register fields to set, as in an edit.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, serde_json::Value>)]
    pub set: BTreeMap<String, Option<Value>>,
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub comment: Option<String>,
}

/// Longest name and serial of a record made before discovery.
pub const MAX_RECORD_NAME_CHARS: usize = 253;
pub const MAX_SERIAL_CHARS: usize = 128;

/// Records a computer before discovery. It needs a serial or an asset tag (something that
/// names the hardware); the serial must not be one a discovered computer already reports,
/// and serial and asset tag are claimed for it (409 when another CI holds either).
pub fn create_record(
    ops: &Ops,
    actor: &Actor,
    record: &NewRecord,
) -> Result<RegisterView, OpError> {
    let name = record.name.trim();
    if name.is_empty() || name.chars().count() > MAX_RECORD_NAME_CHARS {
        return Err(OpError::invalid(format!(
            "name: 1 to {MAX_RECORD_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(OpError::invalid("name: control characters are not allowed"));
    }
    let serial = record
        .serial
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    if let Some(s) = serial {
        if s.chars().count() > MAX_SERIAL_CHARS || s.chars().any(char::is_control) {
            return Err(OpError::invalid(format!(
                "serial: at most {MAX_SERIAL_CHARS} characters, no control characters"
            )));
        }
        if census_shared::identity::is_placeholder(s) {
            return Err(OpError::invalid(format!(
                "serial: '{s}' is a placeholder vendors ship, not a serial"
            )));
        }
    }
    let has_tag = record
        .set
        .get("asset_tag")
        .is_some_and(|v| v.as_ref().is_some_and(|v| !v.is_null()));
    if serial.is_none() && !has_tag {
        return Err(OpError::invalid(
            "serial: give a serial or an asset tag, so the hardware can be told apart",
        ));
    }
    if let Some(c) = &record.comment {
        if c.chars().count() > MAX_COMMENT_CHARS {
            return Err(OpError::invalid(format!(
                "comment: at most {MAX_COMMENT_CHARS} characters"
            )));
        }
    }
    let settings = settings(ops)?;
    let values = checked_values(CiClass::Computer, &record.set, &settings)?;
    if let Some(s) = serial {
        let wanted = s.to_lowercase();
        let mut found = None;
        ops.store.scan_cis(CiClass::Computer, &mut |ci| {
            let reported = ci.attributes.get("system.serial").and_then(Value::as_str);
            if reported.is_some_and(|r| r.trim().to_lowercase() == wanted) {
                found = Some(ci.id);
                return false;
            }
            true
        })?;
        if let Some(id) = found {
            return Err(OpError::Conflict(format!(
                "serial: '{s}' is already reported by {id}; edit its register instead"
            )));
        }
    }
    let write = record_write(
        name,
        serial,
        &values,
        &settings,
        register::Source::Person,
        &actor.name,
        Utc::now(),
    )?;
    let ci = write.ci.clone();
    ops.audited(
        PeopleWrite::Register {
            edits: Vec::new(),
            records: vec![write],
        },
        draft(
            actor,
            "register.create",
            &ci.id,
            None,
            Some(serde_json::json!({"name": ci.name, "serial": serial, "register": register_of(&ci.attributes)})),
            record.comment.clone(),
        ),
    )?;
    get(ops, &ci.id)
}

/// A new computer record (not yet discovered) with `values` set by `source`, its serial
/// in `system.serial`, and the keys it claims (serial, asset tag).
pub(crate) fn record_write(
    name: &str,
    serial: Option<&str>,
    values: &[(String, Option<Value>)],
    settings: &RegisterSettings,
    source: register::Source,
    by: &str,
    now: DateTime<Utc>,
) -> Result<RecordWrite, OpError> {
    let blank = Ci {
        id: crate::identify::new_computer_id(),
        class: CiClass::Computer,
        name: name.to_string(),
        attributes: Attributes::new(),
        volatile: Attributes::new(),
        status: CiStatus::Active,
        first_seen: now,
        last_seen: now,
        sources: Vec::new(),
        version: 0,
        owner: None,
    };
    // The serial that names the hardware is its register serial too, unless the record
    // gives one of its own.
    let mut values = values.to_vec();
    if let Some(s) = serial {
        if !values.iter().any(|(f, _)| f == "serial_number") {
            values.push(("serial_number".into(), Some(Value::String(s.to_string()))));
        }
    }
    let mut ci = match apply(&blank, &values, settings, source, by, now)? {
        Some((ci, _)) => ci,
        None => blank,
    };
    if let Some(s) = serial {
        ci.attributes
            .insert("system.serial".into(), Value::String(s.to_string()));
    }
    ci.version = 1;
    let changes: Vec<FieldChange> = settings
        .fields(CiClass::Computer)
        .iter()
        .filter_map(|f| {
            let after = ci.attributes.get(&register::attribute(&f.name))?.clone();
            Some(FieldChange {
                field: f.name.to_string(),
                before: None,
                after: Some(after),
            })
        })
        .collect();
    let mut claims: Vec<IdentityKey> = serial.map(register_serial_key).into_iter().collect();
    if let Some(tag) = ci
        .attributes
        .get(&register::attribute("asset_tag"))
        .and_then(Value::as_str)
    {
        claims.push(asset_tag_key(tag));
    }
    let change = RegisterChange {
        ci_id: ci.id.clone(),
        ci_name: ci.name.clone(),
        version: ci.version,
        source,
        by: by.to_string(),
        changes,
    };
    Ok(RecordWrite { ci, claims, change })
}

/// How often an edit is recomputed when another register edit lands between its read and
/// its write.
const EDIT_ATTEMPTS: usize = 3;

/// Applies `edit` to a CI's register as written by `source` (`by` names the person, file
/// or agent). Refused as a whole when a value is invalid (400, naming the field), when a
/// higher source holds a field (409, naming the holder and when its hold lapses) or when
/// `expected_version` is not the CI's version (409). Setting what is already there, by
/// the source that set it, writes nothing.
pub fn edit(
    ops: &Ops,
    actor: &Actor,
    ci_id: &str,
    edit: &RegisterEdit,
    source: register::Source,
) -> Result<RegisterView, OpError> {
    if edit.set.is_empty() {
        return Err(OpError::invalid("set: names no field"));
    }
    if let Some(c) = &edit.comment {
        if c.chars().count() > MAX_COMMENT_CHARS {
            return Err(OpError::invalid(format!(
                "comment: at most {MAX_COMMENT_CHARS} characters"
            )));
        }
    }
    let settings = settings(ops)?;
    let values = checked_values(CiClass::Computer, &edit.set, &settings)?;
    write_ci_register(ops, ci_id, &settings, |ci| {
        super::expect_version(&ci.id, edit.expected_version, ci.version)?;
        let Some((next, change)) = apply(ci, &values, &settings, source, &actor.name, Utc::now())?
        else {
            return Ok(None);
        };
        let before: BTreeMap<&str, &Option<Value>> = change
            .changes
            .iter()
            .map(|c| (c.field.as_str(), &c.before))
            .collect();
        let after: BTreeMap<&str, &Option<Value>> = change
            .changes
            .iter()
            .map(|c| (c.field.as_str(), &c.after))
            .collect();
        let audit = draft(
            actor,
            "register.edit",
            &ci.id,
            serde_json::to_value(before).ok(),
            serde_json::to_value(after).ok(),
            edit.comment.clone(),
        );
        Ok(Some((register_write(ci, &next, change), audit)))
    })
}

/// Reads a CI with a register, lets `compute` make its write and audit entry from it (none:
/// nothing to write), and commits; when another register edit lands between the read and
/// the write, computes again on it (its precedence may now refuse the edit). Answers the
/// register as it then stands.
fn write_ci_register(
    ops: &Ops,
    ci_id: &str,
    settings: &RegisterSettings,
    mut compute: impl FnMut(&Ci) -> Result<Option<(RegisterWrite, crate::store::AuditDraft)>, OpError>,
) -> Result<RegisterView, OpError> {
    for attempt in 1..=EDIT_ATTEMPTS {
        let ci = ops
            .store
            .get_ci(ci_id)?
            .ok_or_else(|| OpError::NotFound(format!("CI {ci_id}")))?;
        has_register(&ci)?;
        let Some((write, audit)) = compute(&ci)? else {
            return Ok(view(&ci, settings));
        };
        let write = PeopleWrite::Register {
            edits: vec![write],
            records: Vec::new(),
        };
        match ops.commit(write, audit) {
            Ok(_) => return get(ops, ci_id),
            Err(PeopleWriteError::Stale(_)) if attempt < EDIT_ATTEMPTS => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(OpError::Conflict(format!(
        "{ci_id} kept changing while the change was written; try again"
    )))
}

/// A reconciliation item with the CI it is about.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ReconciliationItem {
    pub ci_id: String,
    pub ci_name: String,
    pub field: String,
    /// Waiting for a person (not kept).
    pub open: bool,
    pub discrepancy: register::Discrepancy,
}

/// The reconciliation items across the CMDB.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ReconciliationList {
    /// Items counted (open ones, or all with kept ones).
    pub total: usize,
    /// The first [`MAX_LISTED_ITEMS`] of them, oldest first.
    pub items: Vec<ReconciliationItem>,
}

/// Most items one listing returns (all are counted).
pub const MAX_LISTED_ITEMS: usize = 10_000;

/// Every open reconciliation item (with `include_kept`, kept ones too), oldest first.
pub fn reconciliation(ops: &Ops, include_kept: bool) -> Result<ReconciliationList, OpError> {
    let mut items = Vec::new();
    ops.store.scan_cis(CiClass::Computer, &mut |ci| {
        if ci
            .attributes
            .contains_key(register::RECONCILIATION_ATTRIBUTE)
        {
            for (field, d) in register::discrepancies(&ci.attributes) {
                if d.is_open() || include_kept {
                    items.push(ReconciliationItem {
                        ci_id: ci.id.clone(),
                        ci_name: ci.name.clone(),
                        field,
                        open: d.is_open(),
                        discrepancy: d,
                    });
                }
            }
        }
        true
    })?;
    items.sort_by(|a, b| {
        (a.discrepancy.since, &a.ci_id, &a.field).cmp(&(b.discrepancy.since, &b.ci_id, &b.field))
    });
    let total = items.len();
    items.truncate(MAX_LISTED_ITEMS);
    Ok(ReconciliationList { total, items })
}

/// A person's decision on a reconciliation item.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    pub resolution: register::Resolution,
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub comment: Option<String>,
}

/// Accepts the discovered value of a CI's field (the field is discovery's again) or keeps
/// the held one, audited as `register.reconcile`; an accept is a register change in
/// history and on the feed.
pub fn resolve(
    ops: &Ops,
    actor: &Actor,
    ci_id: &str,
    field: &str,
    request: &ResolveRequest,
) -> Result<RegisterView, OpError> {
    if let Some(c) = &request.comment {
        if c.chars().count() > MAX_COMMENT_CHARS {
            return Err(OpError::invalid(format!(
                "comment: at most {MAX_COMMENT_CHARS} characters"
            )));
        }
    }
    let settings = settings(ops)?;
    write_ci_register(ops, ci_id, &settings, |ci| {
        let item = register::discrepancies(&ci.attributes)
            .remove(field)
            .ok_or_else(|| OpError::NotFound(format!("reconciliation item {field} of {ci_id}")))?;
        let mut next = ci.clone();
        let change = register::resolve(
            &mut next.attributes,
            field,
            request.resolution,
            &actor.name,
            Utc::now(),
        )
        .map_err(OpError::Conflict)?;
        next.version += 1;
        let change = RegisterChange {
            ci_id: ci.id.clone(),
            ci_name: ci.name.clone(),
            version: next.version,
            source: register::Source::Person,
            by: actor.name.clone(),
            changes: change.into_iter().collect(),
        };
        let audit = draft(
            actor,
            "register.reconcile",
            &ci.id,
            serde_json::to_value(&item).ok(),
            Some(serde_json::json!({
                "field": field,
                "resolution": request.resolution.as_str(),
            })),
            request.comment.clone(),
        );
        Ok(Some((register_write(ci, &next, change), audit)))
    })
}

/// Every named field known and every value valid for its field, normalised.
pub(crate) fn checked_values(
    class: CiClass,
    set: &BTreeMap<String, Option<Value>>,
    settings: &RegisterSettings,
) -> Result<Vec<(String, Option<Value>)>, OpError> {
    let mut values = Vec::with_capacity(set.len());
    for (name, value) in set {
        let Some(def) = settings.field(class, name) else {
            let fields = settings.fields(class);
            let known: Vec<&str> = fields.iter().map(|f| f.name.as_ref()).collect();
            return Err(OpError::invalid(format!(
                "set.{name}: unknown register field; known: {}",
                known.join(", ")
            )));
        };
        let value = match value {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                register::normalise(&def, v, settings)
                    .map_err(|m| OpError::invalid(format!("set.{m}")))?,
            ),
        };
        values.push((def.name.into_owned(), value));
    }
    Ok(values)
}

/// The store's write for an edit, with the asset tag's unique key moved along.
pub(crate) fn register_write(expected: &Ci, next: &Ci, change: RegisterChange) -> RegisterWrite {
    let tag = |c: &Ci| {
        c.attributes
            .get(&register::attribute("asset_tag"))
            .and_then(Value::as_str)
            .map(asset_tag_key)
    };
    let (before, after) = (tag(expected), tag(next));
    let moved = before != after;
    RegisterWrite {
        ci_id: expected.id.clone(),
        expected: register_digest(&expected.attributes),
        register: register_of(&next.attributes),
        change,
        release_tag: before.filter(|_| moved),
        claim_tag: after.filter(|_| moved),
    }
}

/// The agent that last reported a discovered computer (none for a record made before
/// discovery).
fn reporting_agent(ci: &Ci) -> Option<String> {
    ci.volatile
        .get("agent.id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| ci.sources.last().cloned())
}

/// The CI after the edit and what changed, or `None` when nothing would.
pub(crate) fn apply(
    ci: &Ci,
    values: &[(String, Option<Value>)],
    settings: &RegisterSettings,
    source: register::Source,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Option<(Ci, RegisterChange)>, OpError> {
    let mut provenance = register::provenance(&ci.attributes);
    let mut attributes = ci.attributes.clone();
    let mut changes = Vec::new();
    let mut held = Vec::new();
    for (name, value) in values {
        let key = register::attribute(name);
        let before = attributes.get(&key).cloned();
        let holder = provenance.get(name);
        let same = before == *value;
        if same
            && (holder.is_some_and(|h| h.source == source) || (holder.is_none() && value.is_none()))
        {
            continue;
        }
        match register::decide(settings.order(ci.class, name), holder, source, now) {
            register::Verdict::Write => {}
            // The value already agrees: nothing to refuse, and nothing to take over.
            _ if same => continue,
            register::Verdict::Held { holder, until } => {
                let lapses = match until {
                    Some(t) => format!("until {}", t.format("%Y-%m-%d %H:%M UTC")),
                    None => "with no expiry".to_string(),
                };
                held.push(format!(
                    "{name}: set by {} '{}' at {}, which ranks above {} for this field and holds {lapses}",
                    holder.source.as_str(),
                    holder.by,
                    holder.at.format("%Y-%m-%d %H:%M UTC"),
                    source.as_str()
                ));
                continue;
            }
            register::Verdict::NotListed => {
                held.push(format!(
                    "{name}: the precedence of this field does not list {}",
                    source.as_str()
                ));
                continue;
            }
        }
        match value {
            Some(v) => attributes.insert(key, v.clone()),
            None => attributes.remove(&key),
        };
        provenance.insert(
            name.to_string(),
            Provenance {
                source,
                by: by.to_string(),
                at: now,
            },
        );
        changes.push(FieldChange {
            field: name.to_string(),
            before,
            after: value.clone(),
        });
    }
    if !held.is_empty() {
        return Err(OpError::Conflict(held.join("; ")));
    }
    register::check_location(&attributes).map_err(|m| OpError::invalid(format!("set.{m}")))?;
    if changes.is_empty() {
        return Ok(None);
    }
    let provenance =
        serde_json::to_value(&provenance).map_err(|e| OpError::invalid(format!("set: {e}")))?;
    attributes.insert(register::PROVENANCE_ATTRIBUTE.to_string(), provenance);
    // A value that now disagrees with what discovery reports waits for a person at once;
    // one that now agrees settles its item.
    if let Some(agent) = reporting_agent(ci) {
        register::reconcile_discovered(
            &mut attributes,
            ci.class,
            settings,
            &agent,
            register::DiscoveryMode::Edit,
            now,
        );
    }
    let mut next = ci.clone();
    next.attributes = attributes;
    next.version += 1;
    let change = RegisterChange {
        ci_id: ci.id.clone(),
        ci_name: ci.name.clone(),
        version: next.version,
        source,
        by: by.to_string(),
        changes,
    };
    Ok(Some((next, change)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use register::Source;

    fn computer() -> Ci {
        let t = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 1, 1, 0, 0, 0).unwrap();
        Ci {
            id: "cmp_1".into(),
            class: CiClass::Computer,
            name: "web-1".into(),
            attributes: Attributes::new(),
            volatile: Attributes::new(),
            status: CiStatus::Active,
            first_seen: t,
            last_seen: t,
            sources: Vec::new(),
            version: 3,
            owner: None,
        }
    }

    fn set(pairs: &[(&str, Option<Value>)]) -> Vec<(String, Option<Value>)> {
        pairs
            .iter()
            .map(|(f, v)| (f.to_string(), v.clone()))
            .collect()
    }

    /// A computer whose owner "ann" was set by `source` (as "ann").
    fn owned_by_ann(source: Source) -> Ci {
        let (ci, _) = apply(
            &computer(),
            &set(&[("owner", Some("ann".into()))]),
            &RegisterSettings::default(),
            source,
            "ann",
            Utc::now(),
        )
        .unwrap()
        .unwrap();
        ci
    }

    #[test]
    fn an_edit_records_values_provenance_and_a_new_version() {
        let now = Utc::now();
        let (next, change) = apply(
            &computer(),
            &set(&[
                ("owner", Some("ann".into())),
                ("asset_tag", Some("A-1".into())),
            ]),
            &RegisterSettings::default(),
            Source::Person,
            "ann",
            now,
        )
        .unwrap()
        .unwrap();
        assert_eq!(next.version, 4);
        assert_eq!(next.attributes["register.owner"], "ann");
        let p = register::provenance(&next.attributes);
        assert_eq!(p["asset_tag"].source, Source::Person);
        assert_eq!(p["owner"].at, now);
        assert_eq!(change.changes.len(), 2);
        assert_eq!(change.version, 4);
    }

    #[test]
    fn the_same_value_from_the_same_source_writes_nothing() {
        let s = RegisterSettings::default();
        let (next, _) = apply(
            &computer(),
            &set(&[("owner", Some("ann".into()))]),
            &s,
            Source::FileImport,
            "a.csv",
            Utc::now(),
        )
        .unwrap()
        .unwrap();
        let again = set(&[("owner", Some("ann".into()))]);
        assert!(
            apply(&next, &again, &s, Source::FileImport, "b.csv", Utc::now())
                .unwrap()
                .is_none()
        );
        // A person confirming it makes it theirs: a higher source now holds it.
        let (confirmed, change) = apply(&next, &again, &s, Source::Person, "ann", Utc::now())
            .unwrap()
            .unwrap();
        assert_eq!(change.changes[0].before, change.changes[0].after);
        assert_eq!(
            register::provenance(&confirmed.attributes)["owner"].source,
            Source::Person
        );
    }

    #[test]
    fn a_lower_source_agreeing_with_a_held_value_changes_nothing() {
        let s = RegisterSettings::default();
        let held = owned_by_ann(Source::Person);
        let again = set(&[("owner", Some("ann".into()))]);
        assert!(apply(
            &held,
            &again,
            &s,
            Source::FileImport,
            "export.csv",
            Utc::now()
        )
        .unwrap()
        .is_none());
    }

    #[test]
    fn a_held_field_refuses_the_whole_edit_naming_the_holder() {
        let s = RegisterSettings::default();
        let held = owned_by_ann(Source::Person);
        let e = apply(
            &held,
            &set(&[
                ("owner", Some("bob".into())),
                ("supplier", Some("ACME".into())),
            ]),
            &s,
            Source::FileImport,
            "assets.csv",
            Utc::now(),
        )
        .unwrap_err();
        let OpError::Conflict(m) = e else {
            panic!("{e:?}")
        };
        assert!(
            m.starts_with("owner: set by person 'ann'") && m.contains("with no expiry"),
            "{m}"
        );
    }

    #[test]
    fn clearing_is_held_like_a_value_and_the_location_stays_a_hierarchy() {
        let s = RegisterSettings::default();
        // Clearing what was never set changes nothing.
        let empty = set(&[("owner", None)]);
        assert!(
            apply(&computer(), &empty, &s, Source::Person, "ann", Utc::now())
                .unwrap()
                .is_none()
        );
        let (imported, _) = apply(
            &computer(),
            &set(&[("owner", Some("it".into()))]),
            &s,
            Source::FileImport,
            "f.csv",
            Utc::now(),
        )
        .unwrap()
        .unwrap();
        let (cleared, change) = apply(&imported, &empty, &s, Source::Person, "ann", Utc::now())
            .unwrap()
            .unwrap();
        assert_eq!(change.changes[0].after, None);
        assert!(apply(
            &cleared,
            &set(&[("owner", Some("bob".into()))]),
            &s,
            Source::ToolImport,
            "ocs",
            Utc::now()
        )
        .is_err());
        let e = apply(
            &computer(),
            &set(&[("location_room", Some("3.12".into()))]),
            &s,
            Source::Person,
            "ann",
            Utc::now(),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("set.location_room"), "{e}");
    }
}
