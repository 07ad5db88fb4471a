//! The relational projection of the store that reporting tools read (Grafana, Metabase, a
//! BI tool, `psql`): from a key and the bytes a commit writes under it, the report rows
//! that stand for them. A database backend writes these rows in the same transaction as
//! the bytes, so a report never disagrees with the CMDB; the embedded engines have no SQL
//! reader and skip it.
//!
//! Architecture Invariant: `project` is pure: the same (space, key, value) always gives the
//! same rows, and only the records it names have a projection (people's password hashes,
//! API tokens and enrollment secrets never do).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::backend::Space;
use super::codec::{
    self, CiRec, ComponentsRec, ComputerRec, InstallsRec, StepRec, SummaryRec, VariantRec,
};
use super::StoreError;
use crate::model::{Agent, ChangeRecord, User};

/// A row of a report table, typed as the table's columns.
#[derive(Debug, Clone, PartialEq)]
pub enum ReportRow {
    Computer {
        num: i32,
        id: String,
        name: String,
        status: String,
    },
    /// The software variants a computer installs, ascending.
    Installs { computer: i32, variants: Vec<i32> },
    Variant {
        num: i32,
        product: i32,
        name: Option<String>,
        version: Option<String>,
        arch: Option<String>,
        source: Option<String>,
        publisher: Option<String>,
    },
    ChangeRecord {
        id: String,
        computer_id: String,
        computer_name: String,
        agent_id: String,
        seq: i64,
        detected_at: DateTime<Utc>,
        severity: String,
        state: String,
        items: i32,
    },
    Agent {
        id: String,
        hostname: String,
        agent_version: String,
        enrolled_at: DateTime<Utc>,
        revoked_at: Option<DateTime<Utc>>,
        computer_id: Option<String>,
        superseded_by: Option<String>,
    },
    User {
        name: String,
        role: String,
        created_at: DateTime<Utc>,
        disabled: bool,
    },
    /// A CI that is its own record: a computer, or a CI no computer owns.
    Ci {
        num: i32,
        id: String,
        class: String,
        name: String,
        status: String,
        first_seen: Option<DateTime<Utc>>,
        last_seen: Option<DateTime<Utc>>,
        attributes: serde_json::Value,
    },
    /// What a computer owns besides installs: its components (network interfaces, disks,
    /// addresses, ...) and the relationships from it or them, as JSON arrays.
    Components {
        computer: i32,
        cis: serde_json::Value,
        relationships: serde_json::Value,
    },
    /// A CI many computers point at (a software product, an OS release, a subnet).
    SharedCi {
        num: i32,
        id: String,
        class: String,
        name: String,
        status: String,
        attributes: serde_json::Value,
    },
    /// One version of a computer: when it began and the change record that explains it.
    /// `key` is the computer's number and the step's, as one integer.
    Step {
        key: i64,
        computer: i32,
        step: i32,
        valid_from: Option<DateTime<Utc>>,
        change_record: Option<String>,
    },
}

/// The key of a report row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReportKey {
    Computer(i32),
    Installs(i32),
    Variant(i32),
    ChangeRecord(String),
    Agent(String),
    User(String),
    Ci(i32),
    Components(i32),
    SharedCi(i32),
    Step(i64),
}

/// The report tables: name, key column, other columns (in `ReportRow` field order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportTable {
    Computers,
    Installs,
    Variants,
    ChangeRecords,
    Agents,
    Users,
    Cis,
    Components,
    SharedCis,
    Steps,
}

impl ReportTable {
    /// Table, key column, other columns.
    pub fn shape(self) -> (&'static str, &'static str, &'static [&'static str]) {
        match self {
            ReportTable::Computers => ("report_computers", "num", &["id", "name", "status"]),
            ReportTable::Installs => ("report_installs", "computer", &["variants"]),
            ReportTable::Variants => (
                "report_variants",
                "num",
                &["product", "name", "version", "arch", "source", "publisher"],
            ),
            ReportTable::ChangeRecords => (
                "report_change_records",
                "id",
                &[
                    "computer_id",
                    "computer_name",
                    "agent_id",
                    "seq",
                    "detected_at",
                    "severity",
                    "state",
                    "items",
                ],
            ),
            ReportTable::Agents => (
                "report_agents",
                "id",
                &[
                    "hostname",
                    "agent_version",
                    "enrolled_at",
                    "revoked_at",
                    "computer_id",
                    "superseded_by",
                ],
            ),
            ReportTable::Users => ("report_users", "name", &["role", "created_at", "disabled"]),
            ReportTable::Cis => (
                "report_cis",
                "num",
                &[
                    "id",
                    "class",
                    "name",
                    "status",
                    "first_seen",
                    "last_seen",
                    "attributes",
                ],
            ),
            ReportTable::Components => ("report_components", "computer", &["cis", "relationships"]),
            ReportTable::SharedCis => (
                "report_shared_cis",
                "num",
                &["id", "class", "name", "status", "attributes"],
            ),
            ReportTable::Steps => (
                "report_steps",
                "key",
                &["computer", "step", "valid_from", "change_record"],
            ),
        }
    }
}

impl ReportKey {
    pub fn table(&self) -> ReportTable {
        match self {
            ReportKey::Computer(_) => ReportTable::Computers,
            ReportKey::Installs(_) => ReportTable::Installs,
            ReportKey::Variant(_) => ReportTable::Variants,
            ReportKey::ChangeRecord(_) => ReportTable::ChangeRecords,
            ReportKey::Agent(_) => ReportTable::Agents,
            ReportKey::User(_) => ReportTable::Users,
            ReportKey::Ci(_) => ReportTable::Cis,
            ReportKey::Components(_) => ReportTable::Components,
            ReportKey::SharedCi(_) => ReportTable::SharedCis,
            ReportKey::Step(_) => ReportTable::Steps,
        }
    }
}

impl ReportRow {
    pub fn key(&self) -> ReportKey {
        match self {
            ReportRow::Computer { num, .. } => ReportKey::Computer(*num),
            ReportRow::Installs { computer, .. } => ReportKey::Installs(*computer),
            ReportRow::Variant { num, .. } => ReportKey::Variant(*num),
            ReportRow::ChangeRecord { id, .. } => ReportKey::ChangeRecord(id.clone()),
            ReportRow::Agent { id, .. } => ReportKey::Agent(id.clone()),
            ReportRow::User { name, .. } => ReportKey::User(name.clone()),
            ReportRow::Ci { num, .. } => ReportKey::Ci(*num),
            ReportRow::Components { computer, .. } => ReportKey::Components(*computer),
            ReportRow::SharedCi { num, .. } => ReportKey::SharedCi(*num),
            ReportRow::Step { key, .. } => ReportKey::Step(*key),
        }
    }
}

/// What a write of `value` (`None`: a delete) under `key` in `space` does to the reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ReportWrite {
    Put(ReportRow),
    Delete(ReportKey),
}

/// The name a value serializes to (`"active"`, `"change_manager"`).
fn named<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn num(space: Space, key: &[u8]) -> Result<i32, StoreError> {
    codec::read_num(key)
        .map(|n| n as i32)
        .ok_or_else(|| StoreError::Corrupt {
            key: format!("{}/{key:?}", space.name()),
            message: "not a record number".into(),
        })
}

fn text(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

fn time(micros: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
}

fn attributes_json(a: &codec::AttrList) -> serde_json::Value {
    serde_json::Value::Object(codec::attributes(a).into_iter().collect())
}

/// A CI as a report's JSON: what people query on (id, class, name, status, attributes).
fn ci_json(ci: &CiRec) -> serde_json::Value {
    serde_json::json!({
        "id": ci.id,
        "class": named(&ci.class),
        "name": ci.name,
        "status": named(&ci.status),
        "attributes": attributes_json(&ci.attributes),
    })
}

/// The number in a shared CI's key (class tag, number).
fn shared_num(key: &[u8]) -> Result<i32, StoreError> {
    key.get(1..)
        .and_then(codec::read_num)
        .map(|n| n as i32)
        .ok_or_else(|| StoreError::Corrupt {
            key: format!("{}/{key:?}", Space::Shared.name()),
            message: "not a shared CI key".into(),
        })
}

fn step_of(key: &[u8]) -> Result<(i64, i32, i32), StoreError> {
    match (<[u8; 8]>::try_from(key), codec::read_step_key(key)) {
        (Ok(whole), Some((computer, step))) => {
            Ok((i64::from_be_bytes(whole), computer as i32, step as i32))
        }
        _ => Err(StoreError::Corrupt {
            key: format!("{}/{key:?}", Space::Steps.name()),
            message: "not a history step key".into(),
        }),
    }
}

/// The report writes for one store write; empty for spaces that have no projection.
pub fn project(
    space: Space,
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<Option<ReportWrite>, StoreError> {
    let what = |s: Space| format!("{}/{}", s.name(), String::from_utf8_lossy(key));
    Ok(Some(match (space, value) {
        (Space::Summaries, Some(v)) => {
            let s: SummaryRec = codec::decode_packed(&what(space), v)?;
            ReportWrite::Put(ReportRow::Computer {
                num: num(space, key)?,
                id: s.id,
                name: s.name,
                status: named(&s.status),
            })
        }
        (Space::Summaries, None) => ReportWrite::Delete(ReportKey::Computer(num(space, key)?)),
        (Space::Installs, Some(v)) => {
            let rec: InstallsRec = codec::decode_packed(&what(space), v)?;
            let mut variants: Vec<i32> = rec.installs.iter().map(|i| i.variant as i32).collect();
            variants.sort_unstable();
            variants.dedup();
            ReportWrite::Put(ReportRow::Installs {
                computer: num(space, key)?,
                variants,
            })
        }
        (Space::Installs, None) => ReportWrite::Delete(ReportKey::Installs(num(space, key)?)),
        (Space::Variants, Some(v)) => {
            let rec: VariantRec = codec::decode(&what(space), v)?;
            ReportWrite::Put(ReportRow::Variant {
                num: num(space, key)?,
                product: rec.product as i32,
                name: rec.package.name,
                version: rec.package.version,
                arch: rec.package.arch,
                source: rec.package.source,
                publisher: rec.package.publisher,
            })
        }
        (Space::Variants, None) => ReportWrite::Delete(ReportKey::Variant(num(space, key)?)),
        (Space::ChangeRecords, Some(v)) => {
            let r: ChangeRecord = codec::decode_json(&what(space), v)?;
            ReportWrite::Put(ReportRow::ChangeRecord {
                id: r.id,
                computer_id: r.ci_id,
                computer_name: r.ci_name,
                agent_id: r.agent_id,
                seq: r.seq as i64,
                detected_at: r.detected_at,
                severity: named(&r.severity),
                state: named(&r.state),
                items: r.items.len() as i32,
            })
        }
        (Space::ChangeRecords, None) => ReportWrite::Delete(ReportKey::ChangeRecord(text(key))),
        (Space::Agents, Some(v)) => {
            let a: Agent = codec::decode_json(&what(space), v)?;
            ReportWrite::Put(ReportRow::Agent {
                id: a.id,
                hostname: a.facts.hostname,
                agent_version: a.agent_version,
                enrolled_at: a.enrolled_at,
                revoked_at: a.revoked_at,
                computer_id: a.ci_id,
                superseded_by: a.superseded_by,
            })
        }
        (Space::Agents, None) => ReportWrite::Delete(ReportKey::Agent(text(key))),
        (Space::Users, Some(v)) => {
            let u: User = codec::decode_json(&what(space), v)?;
            ReportWrite::Put(ReportRow::User {
                name: u.name,
                role: named(&u.role),
                created_at: u.created_at,
                disabled: u.disabled,
            })
        }
        (Space::Users, None) => ReportWrite::Delete(ReportKey::User(text(key))),
        (Space::Computers, Some(v)) => {
            let rec: ComputerRec = codec::decode_packed(&what(space), v)?;
            let num = num(space, key)?;
            match rec.ci {
                Some(ci) => ReportWrite::Put(ReportRow::Ci {
                    num,
                    attributes: attributes_json(&ci.attributes),
                    id: ci.id,
                    class: named(&ci.class),
                    name: ci.name,
                    status: named(&ci.status),
                    first_seen: time(ci.first_seen),
                    last_seen: time(ci.last_seen),
                }),
                // Only edges or components written so far under this number.
                None => ReportWrite::Delete(ReportKey::Ci(num)),
            }
        }
        (Space::Computers, None) => ReportWrite::Delete(ReportKey::Ci(num(space, key)?)),
        (Space::Components, Some(v)) => {
            let rec: ComponentsRec = codec::decode_packed(&what(space), v)?;
            ReportWrite::Put(ReportRow::Components {
                computer: num(space, key)?,
                cis: rec.components.iter().map(ci_json).collect(),
                relationships: rec
                    .edges
                    .iter()
                    .map(|(e, a)| {
                        serde_json::json!({
                            "from_id": e.from,
                            "kind": named(&e.kind),
                            "to_id": e.to,
                            "attributes": attributes_json(a),
                        })
                    })
                    .collect(),
            })
        }
        (Space::Components, None) => ReportWrite::Delete(ReportKey::Components(num(space, key)?)),
        (Space::Shared, Some(v)) => {
            let ci: CiRec = codec::decode_packed(&what(space), v)?;
            ReportWrite::Put(ReportRow::SharedCi {
                num: shared_num(key)?,
                attributes: attributes_json(&ci.attributes),
                id: ci.id,
                class: named(&ci.class),
                name: ci.name,
                status: named(&ci.status),
            })
        }
        (Space::Shared, None) => ReportWrite::Delete(ReportKey::SharedCi(shared_num(key)?)),
        (Space::Steps, Some(v)) => {
            let rec: StepRec = codec::decode_packed(&what(space), v)?;
            let (key, computer, step) = step_of(key)?;
            ReportWrite::Put(ReportRow::Step {
                key,
                computer,
                step,
                valid_from: time(rec.valid_from),
                change_record: rec.change_record,
            })
        }
        (Space::Steps, None) => ReportWrite::Delete(ReportKey::Step(step_of(key)?.0)),
        _ => return Ok(None),
    }))
}

/// The report table a space projects into, if any (emptied with the space).
pub fn table_of(space: Space) -> Option<ReportTable> {
    Some(match space {
        Space::Summaries => ReportTable::Computers,
        Space::Installs => ReportTable::Installs,
        Space::Variants => ReportTable::Variants,
        Space::ChangeRecords => ReportTable::ChangeRecords,
        Space::Agents => ReportTable::Agents,
        Space::Users => ReportTable::Users,
        Space::Computers => ReportTable::Cis,
        Space::Components => ReportTable::Components,
        Space::Shared => ReportTable::SharedCis,
        Space::Steps => ReportTable::Steps,
        _ => return None,
    })
}

/// The report tables and views: PostgreSQL's reporting schema (`census_report`), read-only
/// for reporting tools. Kept here, next to the projection that fills the tables.
pub const REPORT_SQL: &str = r#"
CREATE TABLE census.report_computers (
    num integer PRIMARY KEY,
    id text NOT NULL,
    name text NOT NULL,
    status text NOT NULL);
CREATE TABLE census.report_installs (
    computer integer PRIMARY KEY,
    variants integer[] NOT NULL);
CREATE TABLE census.report_variants (
    num integer PRIMARY KEY,
    product integer NOT NULL,
    name text, version text, arch text, source text, publisher text);
CREATE INDEX report_variants_name ON census.report_variants (name);
CREATE TABLE census.report_change_records (
    id text PRIMARY KEY,
    computer_id text NOT NULL,
    computer_name text NOT NULL,
    agent_id text NOT NULL,
    seq bigint NOT NULL,
    detected_at timestamptz NOT NULL,
    severity text NOT NULL,
    state text NOT NULL,
    items integer NOT NULL);
CREATE INDEX report_change_records_open ON census.report_change_records (detected_at)
    WHERE state = 'open';
CREATE TABLE census.report_agents (
    id text PRIMARY KEY,
    hostname text NOT NULL,
    agent_version text NOT NULL,
    enrolled_at timestamptz NOT NULL,
    revoked_at timestamptz,
    computer_id text,
    superseded_by text);
CREATE TABLE census.report_users (
    name text PRIMARY KEY,
    role text NOT NULL,
    created_at timestamptz NOT NULL,
    disabled boolean NOT NULL);

CREATE SCHEMA census_report;
COMMENT ON SCHEMA census_report IS 'Census CMDB: read-only views for reporting tools';

-- A big-endian 8-byte integer (last seq, microseconds since the epoch) from its bytes.
CREATE FUNCTION census_report.be_int8(b bytea) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT ('x' || encode(b, 'hex'))::bit(64)::bigint $$;

CREATE VIEW census_report.computers AS
SELECT c.id, c.name, c.status,
       to_timestamp(census_report.be_int8(s.v) / 1e6) AS last_seen,
       coalesce(cardinality(i.variants), 0) AS packages
FROM census.report_computers c
LEFT JOIN census.kv_v3_seen s ON s.k = int4send(c.num)
LEFT JOIN census.report_installs i ON i.computer = c.num;
COMMENT ON VIEW census_report.computers IS 'Every computer: id, name, status (active, stale, retired), last contact, number of packages';

CREATE VIEW census_report.installed_software AS
SELECT c.id AS computer_id, c.name AS computer, c.status AS computer_status,
       v.name AS package, v.version, v.arch, v.source, v.publisher
FROM census.report_computers c
JOIN census.report_installs i ON i.computer = c.num
CROSS JOIN LATERAL unnest(i.variants) AS iv(variant)
JOIN census.report_variants v ON v.num = iv.variant;
COMMENT ON VIEW census_report.installed_software IS 'One row per package installed on a computer, with its version';

CREATE VIEW census_report.software_versions AS
SELECT v.name AS package, v.version, v.arch, v.source,
       (SELECT count(*) FROM census.report_installs i WHERE i.variants @> ARRAY[v.num]) AS computers
FROM census.report_variants v;
COMMENT ON VIEW census_report.software_versions IS 'Every package version seen, and on how many computers it is installed now';

CREATE VIEW census_report.change_records AS
SELECT id, computer_id, computer_name, agent_id, seq, detected_at, severity, state, items
FROM census.report_change_records;
COMMENT ON VIEW census_report.change_records IS 'Drift: one change record per accepted inventory that changed a computer';

CREATE VIEW census_report.open_change_records AS
SELECT * FROM census_report.change_records WHERE state = 'open';
COMMENT ON VIEW census_report.open_change_records IS 'Change records nobody has reviewed yet';

CREATE VIEW census_report.agents AS
SELECT a.id, a.hostname, a.agent_version, a.enrolled_at, a.revoked_at, a.computer_id,
       a.superseded_by,
       census_report.be_int8(substring(h.v from 1 for 8)) AS last_seq,
       CASE WHEN census_report.be_int8(substring(h.v from 9 for 8)) = 0 THEN NULL
            ELSE to_timestamp(census_report.be_int8(substring(h.v from 9 for 8)) / 1e6) END
         AS last_seen
FROM census.report_agents a
LEFT JOIN census.kv_agent_state h ON h.k = convert_to(a.id, 'UTF8');
COMMENT ON VIEW census_report.agents IS 'Enrolled agents with their last accepted seq and last contact';

CREATE VIEW census_report.silent_agents AS
SELECT * FROM census_report.agents
WHERE revoked_at IS NULL AND superseded_by IS NULL
  AND (last_seen IS NULL OR last_seen < now() - interval '1 day');
COMMENT ON VIEW census_report.silent_agents IS 'Agents in service that have not reported for a day (or ever)';

CREATE VIEW census_report.people AS
SELECT name, role, created_at, disabled FROM census.report_users;
COMMENT ON VIEW census_report.people IS 'People who sign in to Census and their roles (no credentials)';
"#;

/// Migration 2: every CI with its attributes, relationships, and a computer's versions.
/// The spaces it projects are filled from the stored bytes when it is applied.
pub const REPORT_SQL_2: &str = r#"
CREATE TABLE census.report_cis (
    num integer PRIMARY KEY,
    id text NOT NULL,
    class text NOT NULL,
    name text NOT NULL,
    status text NOT NULL,
    first_seen timestamptz,
    last_seen timestamptz,
    attributes jsonb NOT NULL);
CREATE INDEX report_cis_id ON census.report_cis (id);
CREATE TABLE census.report_components (
    computer integer PRIMARY KEY,
    cis jsonb NOT NULL,
    relationships jsonb NOT NULL);
CREATE TABLE census.report_shared_cis (
    num integer PRIMARY KEY,
    id text NOT NULL,
    class text NOT NULL,
    name text NOT NULL,
    status text NOT NULL,
    attributes jsonb NOT NULL);
CREATE INDEX report_shared_cis_id ON census.report_shared_cis (id);
CREATE TABLE census.report_steps (
    key bigint PRIMARY KEY,
    computer integer NOT NULL,
    step integer NOT NULL,
    valid_from timestamptz,
    change_record text);

CREATE VIEW census_report.cis AS
SELECT id, class, name, status, NULL::text AS owner_id, attributes
FROM census.report_cis
UNION ALL
SELECT c.id, c.class, c.name, c.status, o.id, c.attributes
FROM census.report_components rc
JOIN census.report_cis o ON o.num = rc.computer
CROSS JOIN LATERAL jsonb_to_recordset(rc.cis)
    AS c(id text, class text, name text, status text, attributes jsonb)
UNION ALL
SELECT id, class, name, status, NULL, attributes FROM census.report_shared_cis;
COMMENT ON VIEW census_report.cis IS 'Every configuration item: computers, their components (owner_id: the computer), and the CIs computers share (software products, OS releases, subnets), with their attributes as JSON';

CREATE VIEW census_report.computer_details AS
SELECT c.id, c.name, c.status, c.first_seen, c.attributes
FROM census.report_cis c WHERE c.class = 'computer';
COMMENT ON VIEW census_report.computer_details IS 'Every computer with its attributes (serial, vendor, model, OS, ...) as JSON';

CREATE VIEW census_report.relationships AS
SELECT r.from_id, r.kind, r.to_id, r.attributes
FROM census.report_components rc
CROSS JOIN LATERAL jsonb_to_recordset(rc.relationships)
    AS r(from_id text, kind text, to_id text, attributes jsonb)
UNION ALL
SELECT c.id, 'installs', p.id,
       jsonb_strip_nulls(jsonb_build_object('version', v.version, 'arch', v.arch))
FROM census.report_computers c
JOIN census.report_installs i ON i.computer = c.num
CROSS JOIN LATERAL unnest(i.variants) AS iv(variant)
JOIN census.report_variants v ON v.num = iv.variant
JOIN census.report_shared_cis p ON p.num = v.product;
COMMENT ON VIEW census_report.relationships IS 'Typed relationships between CIs (from_id, kind, to_id): a computer installs a software product, has an interface, runs an OS release, an address is in a subnet, ...';

CREATE VIEW census_report.computer_history AS
SELECT c.id AS computer_id, c.name AS computer, s.step AS version, s.valid_from,
       s.change_record AS change_record_id
FROM census.report_steps s
JOIN census.report_cis c ON c.num = s.computer;
COMMENT ON VIEW census_report.computer_history IS 'Every version of every computer: when it began and the change record that describes the drift (the API and the UI show a computer as of any of them)';
"#;

/// The spaces whose report tables a migration creates: filled from the stored bytes when
/// it is applied to a database that already holds a CMDB.
pub fn backfilled_by(migration: i32) -> &'static [Space] {
    match migration {
        2 => &[
            Space::Computers,
            Space::Components,
            Space::Shared,
            Space::Steps,
        ],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Package;

    #[test]
    fn installs_project_to_their_sorted_variant_numbers() {
        let rec = InstallsRec {
            installs: [7u32, 3, 7, 11]
                .iter()
                .map(|&v| codec::InstallRec {
                    product: 1,
                    disc: "dpkg/amd64".into(),
                    variant: v,
                    install_date: None,
                    extra: Default::default(),
                })
                .collect(),
        };
        let bytes = codec::encode_packed(&rec).unwrap();
        let w = project(Space::Installs, &codec::num_key(5), Some(&bytes)).unwrap();
        assert_eq!(
            w,
            Some(ReportWrite::Put(ReportRow::Installs {
                computer: 5,
                variants: vec![3, 7, 11]
            }))
        );
        assert_eq!(
            project(Space::Installs, &codec::num_key(5), None).unwrap(),
            Some(ReportWrite::Delete(ReportKey::Installs(5)))
        );
    }

    #[test]
    fn a_variant_projects_its_package_fields() {
        let rec = VariantRec {
            product: 9,
            package: Package {
                name: Some("openssl".into()),
                version: Some("3.0.15-1~deb12u1".into()),
                arch: Some("amd64".into()),
                source: Some("dpkg".into()),
                publisher: None,
                source_package: None,
            },
        };
        let bytes = codec::encode(&rec).unwrap();
        match project(Space::Variants, &codec::num_key(2), Some(&bytes)).unwrap() {
            Some(ReportWrite::Put(ReportRow::Variant {
                num,
                product,
                name,
                version,
                ..
            })) => {
                assert_eq!((num, product), (2, 9));
                assert_eq!(name.as_deref(), Some("openssl"));
                assert_eq!(version.as_deref(), Some("3.0.15-1~deb12u1"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_history_step_projects_its_computer_version_and_record() {
        let rec = StepRec {
            valid_from: 1_700_000_000_000_000,
            change_record: Some("chg_1".into()),
            undo: Default::default(),
        };
        let bytes = codec::encode_packed(&rec).unwrap();
        let key = codec::step_key(7, 3);
        match project(Space::Steps, &key, Some(&bytes)).unwrap() {
            Some(ReportWrite::Put(ReportRow::Step {
                key,
                computer,
                step,
                valid_from,
                change_record,
            })) => {
                assert_eq!((key, computer, step), ((7 << 32) | 3, 7, 3));
                assert_eq!(valid_from.map(|t| t.timestamp()), Some(1_700_000_000));
                assert_eq!(change_record.as_deref(), Some("chg_1"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            project(Space::Steps, &key, None).unwrap(),
            Some(ReportWrite::Delete(ReportKey::Step((7 << 32) | 3)))
        );
        assert!(project(Space::Steps, b"short", None).is_err());
    }

    #[test]
    fn a_record_with_only_edges_has_no_ci_row() {
        let rec = ComputerRec {
            ci: None,
            revision: 1,
            steps: 0,
        };
        let bytes = codec::encode_packed(&rec).unwrap();
        assert_eq!(
            project(Space::Computers, &codec::num_key(4), Some(&bytes)).unwrap(),
            Some(ReportWrite::Delete(ReportKey::Ci(4)))
        );
    }

    #[test]
    fn secrets_have_no_projection() {
        for space in [
            Space::ApiTokens,
            Space::EnrollmentTokens,
            Space::AgentKeys,
            Space::Evidence,
        ] {
            assert_eq!(project(space, b"k", Some(b"secret")).unwrap(), None);
        }
    }

    #[test]
    fn a_user_projects_without_the_password_hash() {
        let u = User {
            name: "ann".into(),
            role: crate::model::Role::ChangeManager,
            created_at: Utc::now(),
            disabled: false,
            password_hash: Some("$argon2id$secret".into()),
        };
        let bytes = codec::encode_json(&u).unwrap();
        let w = project(Space::Users, b"ann", Some(&bytes)).unwrap();
        let shown = format!("{w:?}");
        assert!(shown.contains("change_manager"), "{shown}");
        assert!(!shown.contains("argon2"), "{shown}");
    }
}
