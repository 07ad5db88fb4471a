//! The register as a CSV file: import (a dry run that writes nothing, then an apply that
//! writes every row or none) and export in the same layout, so a file exported, edited in
//! a spreadsheet and imported again round-trips.
//!
//! A row names its computer by `ci_id`, `serial`, `asset_tag` or `hostname` (every key it
//! gives must name the same computer); every other column is a register field. A row that
//! names no computer but has a serial or an asset tag records new hardware that no agent
//! has reported yet (as `census register create` does). An empty
//! cell leaves the field as it is, [`CLEAR`] clears it. Rows are written as the source
//! `file_import`, under the fields' precedence.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::register::{apply, register_write};
use super::{draft, Actor, OpError, Ops};
use crate::model::register::{self, Source};
use crate::model::*;
use crate::store::{asset_tag_key, PeopleWrite, PeopleWriteError};

/// Largest register file read (the route refuses a longer body with 413).
pub const MAX_IMPORT_BYTES: usize = 32 * 1024 * 1024;
/// Most data rows one file may hold.
pub const MAX_IMPORT_ROWS: usize = 100_000;
/// Most problems a report lists (all are counted).
pub const MAX_LISTED_PROBLEMS: usize = 1000;
/// Computers read at once while a file is checked.
const READ_PAGE: usize = 256;
/// A cell that clears its field.
pub const CLEAR: &str = "#clear";

/// The columns that name the computer a row is about, strongest first.
pub const KEY_COLUMNS: [&str; 4] = ["ci_id", "serial", "asset_tag", "hostname"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A value or the row's shape is wrong.
    Invalid,
    /// Its keys name several computers, or disagree.
    Ambiguous,
    /// No computer matches it, and it has neither a serial nor an asset tag to record the
    /// hardware by.
    Unmatched,
    /// A higher source holds a field it sets.
    Held,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RowProblem {
    /// 1-based line of the file (the header is line 1).
    pub line: u64,
    pub kind: ProblemKind,
    pub column: Option<String>,
    pub message: String,
}

/// What an import found, and for an apply what it wrote.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub dry_run: bool,
    /// Whether anything was written (never in a dry run; in an apply, every update or
    /// none).
    pub applied: bool,
    /// SHA-256 of the file, as the audit entry records it.
    pub sha256: String,
    pub rows: usize,
    /// Rows that change a computer's register.
    pub updates: usize,
    /// Rows that match a computer and change nothing.
    pub unchanged: usize,
    /// Rows that match no computer and record new hardware (by their serial or asset tag)
    /// that no agent has reported yet.
    pub new: usize,
    pub unmatched: usize,
    pub ambiguous: usize,
    pub invalid: usize,
    pub held: usize,
    /// Every problem counted; the first [`MAX_LISTED_PROBLEMS`] listed in `problems`.
    pub problems_total: usize,
    pub problems: Vec<RowProblem>,
}

impl ImportReport {
    fn problem(&mut self, line: u64, kind: ProblemKind, column: Option<&str>, message: String) {
        match kind {
            ProblemKind::Invalid => self.invalid += 1,
            ProblemKind::Ambiguous => self.ambiguous += 1,
            ProblemKind::Unmatched => self.unmatched += 1,
            ProblemKind::Held => self.held += 1,
        }
        self.problems_total += 1;
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(RowProblem {
                line,
                kind,
                column: column.map(str::to_string),
                message,
            });
        }
    }
}

/// How an import is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportMode {
    pub dry_run: bool,
    /// Apply the rows without problems even when others have some (otherwise any problem
    /// refuses the whole file).
    pub skip_problem_rows: bool,
}

/// The file could not be read as a register file at all (nothing in it was considered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub line: u64,
    pub message: String,
}

/// One data row: its line, its keys and the fields it sets.
struct Row {
    line: u64,
    keys: Vec<(&'static str, String)>,
    set: Vec<(String, Option<Value>)>,
}

/// A parsed file: rows whose cells passed their field's checks, and the problems of those
/// that did not.
struct Parsed {
    rows: Vec<Row>,
    count: usize,
    problems: Vec<(u64, ProblemKind, Option<String>, String)>,
}

fn file_error(line: u64, message: impl Into<String>) -> FileError {
    FileError {
        line,
        message: message.into(),
    }
}

/// A cell as the person meant it: our export's formula guard (`'` before `= + - @`, tab,
/// CR) taken off again.
fn unguarded(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => cell,
    }
}

fn parse(bytes: &[u8], settings: &register::RegisterSettings) -> Result<Parsed, FileError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Err(e) = std::str::from_utf8(bytes) {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count() as u64
            + 1;
        return Err(file_error(
            line,
            "the file is not UTF-8 text; save it as \"CSV UTF-8\"",
        ));
    }
    let first_line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    // Spreadsheets in many locales write `;`; take the separator the header uses most.
    let delimiter = [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|d| first_line.iter().filter(|b| *b == d).count())
        .unwrap_or(b',');
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(false)
        .from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|e| file_error(1, format!("header: {e}")))?
        .clone();
    if header.is_empty() || header.iter().all(|h| h.trim().is_empty()) {
        return Err(file_error(
            1,
            "the file is empty; the first line names the columns",
        ));
    }
    enum Column {
        Key(&'static str),
        Field(register::FieldDef),
        /// asset_tag: a key, and a field when another key names the computer.
        Tag(register::FieldDef),
    }
    let mut columns = Vec::with_capacity(header.len());
    let mut names = std::collections::HashSet::new();
    for (i, name) in header.iter().enumerate() {
        let name = name.trim().to_lowercase();
        if !names.insert(name.clone()) {
            return Err(file_error(
                1,
                format!("header: column '{name}' appears twice (column {})", i + 1),
            ));
        }
        let column = match (
            KEY_COLUMNS.iter().find(|k| **k == name),
            settings.field(CiClass::Computer, &name),
        ) {
            (Some(_), Some(def)) => Column::Tag(def),
            (Some(k), None) => Column::Key(k),
            (None, Some(def)) => Column::Field(def),
            (None, None) => {
                let fields = settings.fields(CiClass::Computer);
                let mut known: Vec<&str> = KEY_COLUMNS.to_vec();
                known.extend(
                    fields
                        .iter()
                        .map(|f| f.name.as_ref())
                        .filter(|n| !KEY_COLUMNS.contains(n)),
                );
                return Err(file_error(
                    1,
                    format!(
                        "header: unknown column '{name}' (column {}); known: {}",
                        i + 1,
                        known.join(", ")
                    ),
                ));
            }
        };
        columns.push(column);
    }
    if !columns
        .iter()
        .any(|c| matches!(c, Column::Key(_) | Column::Tag(_)))
    {
        return Err(file_error(
            1,
            format!(
                "header: no column names the computer; give one of {}",
                KEY_COLUMNS.join(", ")
            ),
        ));
    }
    let mut parsed = Parsed {
        rows: Vec::new(),
        count: 0,
        problems: Vec::new(),
    };
    let mut record = csv::StringRecord::new();
    // Lines are counted from byte offsets: the csv crate's own line count does not
    // advance over CRLF line ends, which is what spreadsheets write.
    let mut counted = (0usize, 1u64);
    let mut line_at = |byte: u64| {
        // A record's position can be the line end before it (CRLF): start past it.
        let mut byte = (byte as usize).min(bytes.len());
        while bytes.get(byte).is_some_and(|b| matches!(b, b'\r' | b'\n')) {
            byte += 1;
        }
        if byte >= counted.0 {
            counted.1 += bytes[counted.0..byte]
                .iter()
                .filter(|b| **b == b'\n')
                .count() as u64;
            counted.0 = byte;
        }
        counted.1
    };
    loop {
        let start = reader.position().byte();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = line_at(e.position().map_or(start, |p| p.byte()));
                return Err(file_error(line, format!("line {line}: {e}")));
            }
        }
        let line = line_at(record.position().map_or(start, |p| p.byte()));
        if record.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        parsed.count += 1;
        if parsed.count > MAX_IMPORT_ROWS {
            return Err(file_error(
                line,
                format!("the file has more than {MAX_IMPORT_ROWS} rows; split it"),
            ));
        }
        let mut row = Row {
            line,
            keys: Vec::new(),
            set: Vec::new(),
        };
        let mut bad = false;
        for (column, cell) in columns.iter().zip(record.iter()) {
            let cell = unguarded(cell.trim());
            if cell.is_empty() {
                continue;
            }
            let def = match column {
                Column::Key(k) => {
                    row.keys.push((k, cell.to_string()));
                    continue;
                }
                Column::Tag(def) => {
                    row.keys.push(("asset_tag", cell.to_string()));
                    def
                }
                Column::Field(def) => def,
            };
            if cell == CLEAR {
                row.set.push((def.name.to_string(), None));
                continue;
            }
            match register::normalise(def, &Value::String(cell.to_string()), settings) {
                Ok(v) => row.set.push((def.name.to_string(), Some(v))),
                Err(m) => {
                    bad = true;
                    parsed.problems.push((
                        line,
                        ProblemKind::Invalid,
                        Some(def.name.to_string()),
                        m,
                    ));
                }
            }
        }
        if !bad {
            parsed.rows.push(row);
        }
    }
    Ok(parsed)
}

/// A file read without the CMDB: every data row's line (rows with a bad cell too) and the
/// count of bad cells, or why the file cannot be read. What the fuzz target drives.
pub fn read_lines(
    bytes: &[u8],
    settings: &register::RegisterSettings,
) -> Result<(Vec<u64>, usize), FileError> {
    let parsed = parse(bytes, settings)?;
    let mut lines: Vec<u64> = parsed.rows.iter().map(|r| r.line).collect();
    lines.extend(parsed.problems.iter().map(|(line, ..)| *line));
    lines.sort_unstable();
    lines.dedup();
    Ok((lines, parsed.problems.len()))
}

/// What the CMDB knows that rows are matched against, read in one scan.
#[derive(Default)]
struct Index {
    ids: HashSet<String>,
    by: HashMap<(&'static str, String), Vec<String>>,
    tag_of: HashMap<String, String>,
}

fn normalised_key(key: &str, value: &str) -> String {
    match key {
        "ci_id" => value.trim().to_string(),
        _ => value.trim().to_lowercase(),
    }
}

fn index(ops: &Ops) -> Result<Index, OpError> {
    let mut index = Index::default();
    let text = |ci: &Ci, path: &str| {
        ci.attributes
            .get(path)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    ops.store.scan_cis(CiClass::Computer, &mut |ci| {
        let mut push = |key: &'static str, value: Option<String>| {
            if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
                index
                    .by
                    .entry((key, normalised_key(key, &v)))
                    .or_default()
                    .push(ci.id.clone());
            }
        };
        push("serial", text(&ci, "system.serial"));
        push("hostname", text(&ci, "os.hostname"));
        let fqdn = text(&ci, "os.fqdn");
        if fqdn.as_deref().map(str::to_lowercase)
            != text(&ci, "os.hostname").map(|h| h.to_lowercase())
        {
            push("hostname", fqdn);
        }
        if let Some(tag) = text(&ci, "register.asset_tag") {
            push("asset_tag", Some(tag.clone()));
            index
                .tag_of
                .insert(ci.id.clone(), asset_tag_key(&tag).value);
        }
        index.ids.insert(ci.id.clone());
        true
    })?;
    for ids in index.by.values_mut() {
        ids.sort();
        ids.dedup();
    }
    Ok(index)
}

/// The computer a row names, or why it names none or several. An asset tag is a key
/// only when the row's other keys name no computer; otherwise it is the value to set (so
/// a file can retag computers, and swap tags between them).
fn resolve(
    index: &Index,
    row: &Row,
) -> Result<String, (ProblemKind, Option<&'static str>, String)> {
    let (tags, others): (Vec<_>, Vec<_>) = row.keys.iter().partition(|(k, _)| *k == "asset_tag");
    match resolve_by(index, &others)? {
        Some(id) => Ok(id),
        None => resolve_by(index, &tags)?.ok_or_else(|| {
            let given: Vec<String> = row.keys.iter().map(|(k, v)| format!("{k} '{v}'")).collect();
            (
                ProblemKind::Unmatched,
                None,
                format!(
                    "no computer matches {}, and a row without a serial or an asset tag cannot record new hardware",
                    given.join(", ")
                ),
            )
        }),
    }
}

/// The computer every key that names one names, `None` when none does.
fn resolve_by(
    index: &Index,
    keys: &[&(&'static str, String)],
) -> Result<Option<String>, (ProblemKind, Option<&'static str>, String)> {
    let mut found: Option<(&'static str, &String)> = None;
    for (key, value) in keys.iter().copied() {
        let ids: Vec<&String> = if *key == "ci_id" {
            index.ids.get(value.trim()).into_iter().collect()
        } else {
            index
                .by
                .get(&(*key, normalised_key(key, value)))
                .map(|v| v.iter().collect())
                .unwrap_or_default()
        };
        match ids.as_slice() {
            [] => {}
            [one] => match found {
                Some((_, other)) if other != *one => {
                    return Err((
                        ProblemKind::Ambiguous,
                        Some(key),
                        format!(
                            "{} '{value}' names {one}, but {} names {other}",
                            key,
                            found.map_or("", |f| f.0)
                        ),
                    ))
                }
                Some(_) => {}
                None => found = Some((key, one)),
            },
            many => {
                let listed: Vec<&str> = many.iter().take(3).map(|s| s.as_str()).collect();
                return Err((
                    ProblemKind::Ambiguous,
                    Some(key),
                    format!(
                        "{key} '{value}' names {} computers ({}{})",
                        many.len(),
                        listed.join(", "),
                        if many.len() > 3 { ", ..." } else { "" }
                    ),
                ));
            }
        }
    }
    Ok(found.map(|(_, id)| id.clone()))
}

/// Imports a register file as `actor` (`file_name` goes into the audit entry). A dry run
/// writes nothing; an apply writes every update in one transaction, or nothing when a row
/// has a problem (unless `skip_problem_rows`). `Err(Ok(..))` is a file that cannot be read
/// at all, `Err(Err(..))` a refusal of the operation.
pub fn import(
    ops: &Ops,
    actor: &Actor,
    file_name: &str,
    bytes: &[u8],
    mode: ImportMode,
) -> Result<ImportReport, Result<FileError, OpError>> {
    let settings = super::register::settings(ops).map_err(Err)?;
    let parsed = parse(bytes, &settings).map_err(Ok)?;
    let mut report = ImportReport {
        dry_run: mode.dry_run,
        applied: false,
        sha256: hex::encode(Sha256::digest(bytes)),
        rows: parsed.count,
        updates: 0,
        unchanged: 0,
        new: 0,
        unmatched: 0,
        ambiguous: 0,
        invalid: 0,
        held: 0,
        problems_total: 0,
        problems: Vec::new(),
    };
    for (line, kind, column, message) in &parsed.problems {
        report.problem(*line, *kind, column.as_deref(), message.clone());
    }
    let index = index(ops).map_err(Err)?;
    // Each computer once, each asset tag on one computer: decided over the whole file.
    let mut first_line_of: HashMap<String, u64> = HashMap::new();
    let mut matched: Vec<(String, &Row)> = Vec::new();
    let mut unmatched: Vec<&Row> = Vec::new();
    for row in &parsed.rows {
        match resolve(&index, row) {
            Ok(id) => {
                if let Some(first) = first_line_of.get(&id) {
                    report.problem(
                        row.line,
                        ProblemKind::Invalid,
                        None,
                        format!("names {id}, as line {first} does; one row per computer"),
                    );
                    continue;
                }
                first_line_of.insert(id.clone(), row.line);
                matched.push((id, row));
            }
            // Hardware no agent has reported yet, named by a serial or an asset tag.
            Err((ProblemKind::Unmatched, ..))
                if row
                    .keys
                    .iter()
                    .any(|(k, _)| matches!(*k, "serial" | "asset_tag")) =>
            {
                unmatched.push(row);
            }
            Err((kind, column, message)) => report.problem(row.line, kind, column, message),
        }
    }
    let mut final_tags: HashMap<String, String> = index.tag_of.clone();
    for row in &unmatched {
        if let Some((_, tag)) = row.keys.iter().find(|(k, _)| *k == "asset_tag") {
            final_tags.insert(format!("line {}", row.line), asset_tag_key(tag).value);
        }
    }
    for (id, row) in &matched {
        for (field, value) in &row.set {
            if *field == "asset_tag" {
                match value.as_ref().and_then(Value::as_str) {
                    Some(tag) => final_tags.insert(id.clone(), asset_tag_key(tag).value),
                    None => final_tags.remove(id),
                };
            }
        }
    }
    let mut holders: HashMap<&str, Vec<&str>> = HashMap::new();
    for (id, tag) in &final_tags {
        holders.entry(tag.as_str()).or_default().push(id.as_str());
    }
    let mut writes = Vec::new();
    let now = Utc::now();
    // CIs are read a page at a time and each row decided as its page arrives: a file of
    // 10,000 rows must not hold 10,000 computers; a dry run keeps no writes at all.
    for page in matched.chunks(READ_PAGE) {
        let ids: Vec<&str> = page.iter().map(|(id, _)| id.as_str()).collect();
        let cis = ops.store.get_cis(&ids).map_err(|e| Err(e.into()))?;
        for ((id, row), ci) in page.iter().zip(cis) {
            let Some(ci) = ci else {
                report.problem(
                    row.line,
                    ProblemKind::Unmatched,
                    None,
                    format!("{id} no longer exists"),
                );
                continue;
            };
            if let Some(tag) = final_tags.get(id) {
                let others: Vec<&&str> =
                    holders[tag.as_str()].iter().filter(|o| **o != id).collect();
                if let Some(other) = others.first() {
                    report.problem(
                        row.line,
                        ProblemKind::Invalid,
                        Some("asset_tag"),
                        format!("asset_tag '{tag}' would also be the tag of {other}"),
                    );
                    continue;
                }
            }
            // A cell that repeats what the register holds changes nothing: a file
            // exported and imported back must not take fields over from their source
            // (the serial an agent reports would then be held against discovery).
            let set: Vec<(String, Option<Value>)> = row
                .set
                .iter()
                .filter(|(f, v)| ci.attributes.get(&register::attribute(f)) != v.as_ref())
                .cloned()
                .collect();
            match apply(&ci, &set, &settings, Source::FileImport, file_name, now) {
                Ok(Some((next, change))) => {
                    report.updates += 1;
                    if !mode.dry_run {
                        writes.push(register_write(&ci, &next, change));
                    }
                }
                Ok(None) => report.unchanged += 1,
                Err(OpError::Conflict(m)) => {
                    report.problem(row.line, ProblemKind::Held, None, m);
                }
                Err(OpError::Invalid { field, message }) => {
                    report.problem(row.line, ProblemKind::Invalid, field.as_deref(), message);
                }
                Err(e) => return Err(Err(e)),
            }
        }
    }
    let mut records = Vec::new();
    let mut serial_line: HashMap<String, u64> = HashMap::new();
    for row in unmatched {
        let key = |name: &str| {
            row.keys
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.trim().to_string())
        };
        let serial = key("serial");
        if let Some(s) = &serial {
            if census_shared::identity::is_placeholder(s) {
                report.problem(
                    row.line,
                    ProblemKind::Invalid,
                    Some("serial"),
                    format!("serial: '{s}' is a placeholder vendors ship, not a serial"),
                );
                continue;
            }
            if let Some(first) = serial_line.insert(s.to_lowercase(), row.line) {
                report.problem(
                    row.line,
                    ProblemKind::Invalid,
                    Some("serial"),
                    format!("serial '{s}' is on line {first} too; one row per machine"),
                );
                continue;
            }
        }
        if let Some(tag) = key("asset_tag") {
            let tag = asset_tag_key(&tag).value;
            let me = format!("line {}", row.line);
            if let Some(other) = holders[tag.as_str()].iter().find(|o| **o != me) {
                report.problem(
                    row.line,
                    ProblemKind::Invalid,
                    Some("asset_tag"),
                    format!("asset_tag '{tag}' would also be the tag of {other}"),
                );
                continue;
            }
        }
        let Some(name) = key("hostname")
            .or_else(|| key("asset_tag"))
            .or(serial.clone())
        else {
            continue;
        };
        match super::register::record_write(
            &name,
            serial.as_deref(),
            &row.set,
            &settings,
            Source::FileImport,
            file_name,
            now,
        ) {
            Ok(record) => {
                report.new += 1;
                if !mode.dry_run {
                    records.push(record);
                }
            }
            Err(OpError::Invalid { field, message }) => {
                report.problem(row.line, ProblemKind::Invalid, field.as_deref(), message);
            }
            Err(e) => return Err(Err(e)),
        }
    }
    report.problems.sort_by_key(|p| p.line);
    if mode.dry_run
        || (writes.is_empty() && records.is_empty())
        || (report.problems_total > 0 && !mode.skip_problem_rows)
    {
        return Ok(report);
    }
    let summary = serde_json::json!({
        "file": file_name,
        "sha256": report.sha256,
        "rows": report.rows,
        "updates": report.updates,
        "new_records": report.new,
        "skipped_problem_rows": report.problems_total,
    });
    let audit = draft(
        actor,
        "register.import",
        "register",
        None,
        Some(summary),
        None,
    );
    match ops.commit(
        PeopleWrite::Register {
            edits: writes,
            records,
        },
        audit,
    ) {
        Ok(_) => {
            report.applied = true;
            Ok(report)
        }
        Err(PeopleWriteError::Stale(m)) => Err(Err(OpError::Conflict(format!(
            "{m} was edited while the file was checked; nothing was written, import it again"
        )))),
        Err(e) => Err(Err(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &[u8]) -> Result<Parsed, FileError> {
        parse(text, &register::RegisterSettings::default())
    }

    #[test]
    fn keys_fields_clears_and_the_export_guard_are_read_as_meant() {
        let p = parsed(
            b"\xEF\xBB\xBFSerial;Owner;Notes;warranty_end\r\nSER1;'=cmd|x;#clear;2027-01-31\r\n\r\n",
        )
        .unwrap();
        assert_eq!(p.count, 1);
        let row = &p.rows[0];
        assert_eq!(row.line, 2);
        assert_eq!(row.keys, vec![("serial", "SER1".to_string())]);
        assert_eq!(
            row.set,
            vec![
                ("owner".to_string(), Some(Value::String("=cmd|x".into()))),
                ("notes".to_string(), None),
                (
                    "warranty_end".to_string(),
                    Some(Value::String("2027-01-31".into()))
                ),
            ]
        );
    }

    #[test]
    fn a_bad_cell_is_a_problem_of_its_row_with_line_and_column() {
        let p = parsed(b"hostname,purchase_cost,warranty_end\nweb1,12.345,2027-01-01\nweb2,10,31/01/2027\nweb3,5,\n").unwrap();
        let lines: Vec<(u64, Option<&str>)> = p
            .problems
            .iter()
            .map(|(l, _, c, _)| (*l, c.as_deref()))
            .collect();
        assert_eq!(
            lines,
            vec![(2, Some("purchase_cost")), (3, Some("warranty_end"))]
        );
        assert_eq!(p.rows.len(), 1);
        assert_eq!(p.rows[0].line, 4);
    }

    proptest::proptest! {
        /// What the fuzz target checks, on CSV-shaped text: reading never panics, and every
        /// row it reports is on a line the file has, in order.
        #[test]
        fn any_file_is_read_or_refused_and_rows_keep_their_lines(
            body in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::string::string_regex("[a-z0-9 =@'#.\\-]{0,12}").unwrap(),
                    proptest::strategy::Just(",".to_string()),
                    proptest::strategy::Just(";".to_string()),
                    proptest::strategy::Just("\"".to_string()),
                    proptest::strategy::Just("\r\n".to_string()),
                    proptest::strategy::Just("\n".to_string()),
                    proptest::strategy::Just("2027-01-31".to_string()),
                ],
                0..80,
            ),
            header in proptest::sample::select(vec![
                "hostname,owner,notes\n",
                "serial;purchase_cost;warranty_end\r\n",
                "ci_id,asset_tag,lifecycle_status\n",
                "",
            ]),
        ) {
            let text = format!("{header}{}", body.concat());
            let bytes = text.as_bytes();
            if let Ok((lines, bad)) = read_lines(bytes, &register::RegisterSettings::default()) {
                let last = bytes.iter().filter(|b| **b == b'\n').count() as u64 + 1;
                proptest::prop_assert!(lines.iter().all(|l| *l >= 2 && *l <= last), "{:?} of {}", lines, last);
                proptest::prop_assert!(lines.windows(2).all(|w| w[0] < w[1]));
                proptest::prop_assert!(bad <= lines.len() * 16);
            }
        }
    }

    #[test]
    fn unreadable_files_are_refused_whole_with_the_line() {
        let e = parsed(b"hostname,owner\nweb1,ann\nweb2,\xff\xfe\n")
            .err()
            .unwrap();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("UTF-8"), "{e:?}");
        let e = parsed(b"hostname,colour\nweb1,red\n").err().unwrap();
        assert!(
            e.message.contains("unknown column 'colour' (column 2)"),
            "{e:?}"
        );
        let e = parsed(b"owner,notes\nann,x\n").err().unwrap();
        assert!(e.message.contains("no column names the computer"), "{e:?}");
        let e = parsed(b"hostname,owner,Owner\nweb1,a,b\n").err().unwrap();
        assert!(e.message.contains("appears twice"), "{e:?}");
        let e = parsed(b"hostname,owner\nweb1,a,extra\n").err().unwrap();
        assert_eq!(e.line, 2, "{e:?}");
        assert!(parsed(b"").is_err());
        let mut many = b"hostname\n".to_vec();
        for i in 0..=MAX_IMPORT_ROWS {
            many.extend_from_slice(format!("h{i}\n").as_bytes());
        }
        let e = parsed(&many).err().unwrap();
        assert!(e.message.contains("more than 100000 rows"), "{e:?}");
    }
}
