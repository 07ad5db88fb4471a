//! Importing other tools' inventories (OCS, FusionInventory): each file parsed
//! ([`crate::foreign`]), its device given an import source (an agent record without a
//! private key, `imp_...`), then identified, reconciled and committed through the same
//! ingest path as an agent's snapshot. Imported data stands below Census agents': a file
//! whose machine a Census agent reports is skipped, and an agent that later reports an
//! imported machine takes it over. A dry run identifies and writes nothing. Blocking.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::*;
use crate::foreign::ocs::{self, Foreign, Format};
use crate::identify;

/// Most files one import reads (a directory's are counted in).
pub const MAX_FILES: usize = 100_000;
/// Largest file read; a bigger one is listed with its reason.
pub const MAX_FILE_BYTES: u64 = census_shared::limits::MAX_DECOMPRESSED_BYTES as u64;

/// What became of one file.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A computer no one had: it is in the CMDB now.
    New,
    /// An existing computer, changed by it (a change record when it drifted).
    Updated,
    /// An existing computer, as it already was.
    Unchanged,
    /// Read and identified only (dry run): what it would do.
    WouldCreate,
    WouldUpdate,
    /// Nothing imported, for `reason`.
    Skipped,
    /// Could not be read: `reason`.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FileOutcome {
    pub file: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci_id: Option<String>,
    /// The identification rule that matched an existing computer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_record: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub packages: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub format: String,
    pub dry_run: bool,
    pub files: usize,
    pub new: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub skipped: usize,
    pub failed: usize,
    pub change_records: usize,
    pub outcomes: Vec<FileOutcome>,
}

impl ImportReport {
    fn count(&mut self, o: &FileOutcome) {
        match o.outcome {
            Outcome::New | Outcome::WouldCreate => self.new += 1,
            Outcome::Updated | Outcome::WouldUpdate => self.updated += 1,
            Outcome::Unchanged => self.unchanged += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Failed => self.failed += 1,
        }
        self.change_records += usize::from(o.change_record.is_some());
    }
}

/// The files `paths` name: files as given, a directory's regular files by name.
fn files_of(paths: &[PathBuf]) -> Result<Vec<PathBuf>, OpError> {
    let mut out = Vec::new();
    for p in paths {
        if !p.is_absolute() {
            return Err(OpError::invalid(format!(
                "path: {} is not absolute (the collector reads it, from its own directory)",
                p.display()
            )));
        }
        let meta = std::fs::metadata(p)
            .map_err(|e| OpError::invalid(format!("path: {}: {e}", p.display())))?;
        if meta.is_dir() {
            let mut inner: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| OpError::invalid(format!("path: {}: {e}", p.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file())
                .collect();
            inner.sort();
            out.extend(inner);
        } else {
            out.push(p.clone());
        }
        if out.len() > MAX_FILES {
            return Err(OpError::invalid(format!(
                "path: more than {MAX_FILES} files in one import"
            )));
        }
    }
    Ok(out)
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    Ok(bytes)
}

/// The import source a device reports through: one per (format, DEVICEID).
fn source_id(format: Format, device_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{}\0{device_id}", format.source()).as_bytes());
    let tag = match format {
        Format::Ocs => "ocs",
        Format::FusionInventory => "fi",
        Format::Glpi => "glpi",
    };
    format!(
        "{}{tag}_{}",
        identify::IMPORT_AGENT_PREFIX,
        &hex::encode(digest)[..20]
    )
}

/// The Census agent (not an import source) that reports a computer the inventory's
/// identity keys point at, if any.
fn census_owner(store: &dyn Store, f: &Foreign) -> Result<Option<(String, String)>, StoreError> {
    let keys = identify::identity_keys(&f.snapshot);
    for held in store.lookup_identities(&keys)?.into_iter().flatten() {
        let Some(ci) = store.get_ci(&held)? else {
            continue;
        };
        let Some(owner) = identify::owning_agent(&ci).filter(|o| !identify::is_import_source(o))
        else {
            continue;
        };
        let live = store
            .get_agent(&owner)?
            .is_some_and(|a| !a.is_revoked() && a.superseded_by.is_none());
        if live {
            return Ok(Some((ci.id, owner)));
        }
    }
    Ok(None)
}

/// Imports every file `paths` name (absolute: files or directories) as `format`, reporting
/// progress after each file; audited once with the counts.
pub fn import_files(
    ops: &Ops,
    actor: &Actor,
    format: Format,
    paths: &[PathBuf],
    dry_run: bool,
    progress: &mut dyn FnMut(&ImportReport),
) -> Result<ImportReport, OpError> {
    let files = files_of(paths)?;
    let ingest = match &ops.ingest {
        Some(i) => i.clone(),
        None => Arc::new(Ingest::new(ops.store.clone())),
    };
    let store = ops.store.as_ref();
    let mut report = ImportReport {
        format: format.source().to_string(),
        dry_run,
        files: files.len(),
        ..ImportReport::default()
    };
    for path in &files {
        let outcome = import_one(store, &ingest, format, path, dry_run)?;
        report.count(&outcome);
        report.outcomes.push(outcome);
        progress(&report);
    }
    if !dry_run {
        // What the report counts as imported is on disk before it is reported.
        ops.store.flush()?;
        let mut summary = serde_json::to_value(&report).unwrap_or_default();
        if let Some(o) = summary.as_object_mut() {
            o.remove("outcomes");
        }
        ops.audited(
            PeopleWrite::Recorded,
            draft(
                actor,
                "import.inventories",
                format.source(),
                None,
                Some(summary),
                None,
            ),
        )?;
    }
    Ok(report)
}

fn import_one(
    store: &dyn Store,
    ingest: &Ingest,
    format: Format,
    path: &Path,
    dry_run: bool,
) -> Result<FileOutcome, OpError> {
    let name = path.display().to_string();
    match read_bounded(path) {
        Ok(bytes) => import_bytes(store, ingest, format, &name, &bytes, dry_run),
        Err(reason) => Ok(FileOutcome {
            reason: Some(reason),
            ..FileOutcome::failed(name)
        }),
    }
}

impl FileOutcome {
    fn failed(file: String) -> FileOutcome {
        FileOutcome {
            file,
            outcome: Outcome::Failed,
            device_id: None,
            hostname: None,
            ci_id: None,
            matched_by: None,
            change_record: None,
            reason: None,
            packages: 0,
        }
    }
}

/// Imports one inventory's bytes (`name` says where they came from), as a file is. Not
/// audited: [`import_files`] records a whole import once.
pub fn import_bytes(
    store: &dyn Store,
    ingest: &Ingest,
    format: Format,
    name: &str,
    bytes: &[u8],
    dry_run: bool,
) -> Result<FileOutcome, OpError> {
    import_parsed(
        store,
        ingest,
        format,
        name,
        ocs::parse(bytes, format),
        dry_run,
    )
}

/// Imports an inventory already read (`parsed`: the inventory, or why it is not one), as
/// [`import_bytes`] does.
pub fn import_parsed(
    store: &dyn Store,
    ingest: &Ingest,
    format: Format,
    name: &str,
    parsed: Result<Foreign, ocs::ForeignError>,
    dry_run: bool,
) -> Result<FileOutcome, OpError> {
    let mut out = FileOutcome::failed(name.to_string());
    let f = match parsed {
        Ok(f) => f,
        Err(e) => {
            out.reason = Some(e.to_string());
            return Ok(out);
        }
    };
    out.device_id = Some(f.device_id.clone());
    out.hostname = f.snapshot.os.data().map(|o| o.hostname.clone());
    out.packages = f.snapshot.software.data().map_or(0, Vec::len);
    let skip = |mut out: FileOutcome, reason: String| {
        out.outcome = Outcome::Skipped;
        out.reason = Some(reason);
        Ok(out)
    };
    if let Some((ci, owner)) = census_owner(store, &f)? {
        out.ci_id = Some(ci.clone());
        return skip(
            out,
            format!("{ci} is reported by Census agent {owner}; an import never overrides an agent"),
        );
    }
    let id = source_id(format, &f.device_id);
    let now = chrono::Utc::now();
    let existing = store.get_agent(&id)?;
    if dry_run {
        let source = existing.unwrap_or_else(|| {
            Agent::enrolled(
                id.clone(),
                String::new(),
                String::new(),
                Default::default(),
                now,
            )
        });
        if let Some(successor) = &source.superseded_by {
            return skip(
                out,
                format!("Census agent {successor} reports this machine now"),
            );
        }
        let found = identify::identify(store, &source, &f.snapshot, now)?;
        let known = store.get_ci(&found.ci_id)?.is_some();
        out.outcome = if known {
            Outcome::WouldUpdate
        } else {
            Outcome::WouldCreate
        };
        out.matched_by = known.then(|| found.evidence.rule.clone());
        out.ci_id = known.then_some(found.ci_id);
        return Ok(out);
    }
    let source = match existing {
        Some(a) => a,
        None => {
            let key = census_shared::AgentKeyPair::generate().public().to_text();
            let mut a = Agent::enrolled(
                id.clone(),
                key,
                f.snapshot.agent_version.clone(),
                Default::default(),
                now,
            );
            a.token_id = format.source().to_string();
            store.register_import_source(&a)?;
            store
                .get_agent(&id)?
                .ok_or_else(|| OpError::Conflict(format!("import source {id} vanished")))?
        }
    };
    let had_ci = source.ci_id.clone();
    match ingest.import(&source, f.snapshot, now) {
        Ok(accepted) => {
            out.ci_id = accepted.ack.ci_id.clone();
            out.change_record = accepted.ack.change_record.clone();
            out.outcome = match (had_ci, accepted.changed) {
                (None, _) => {
                    let agent = store.get_agent(&id)?;
                    let rule = agent
                        .and_then(|a| a.identification)
                        .map(|e| e.rule)
                        .unwrap_or_default();
                    if rule == "new" || rule.is_empty() {
                        Outcome::New
                    } else {
                        out.matched_by = Some(rule);
                        Outcome::Updated
                    }
                }
                (Some(_), true) => Outcome::Updated,
                (Some(_), false) => Outcome::Unchanged,
            };
            Ok(out)
        }
        Err(crate::ingest::IngestError::Unavailable(m)) => Err(OpError::Store(StoreError::Io(m))),
        Err(e) => skip(out, e.to_string()),
    }
}
