//! People's operations on vulnerabilities: importing an OSV feed (audited with what it
//! did) and the reports, which read only. Blocking.

use std::path::Path;

use super::*;
use crate::vulns::exposure::{self, AdvisoryReport, FleetReport, HostReport};
use crate::vulns::import::{self, ImportError, ImportReport};

/// Imports OSV records from `path` (absolute: a directory, a record or an `all.zip`),
/// then records the import in the audit log with its counts. Batches already written stay
/// if a later one fails: each record is whole or absent, and importing again resumes.
pub fn import_feed(
    ops: &Ops,
    actor: &Actor,
    path: &Path,
    progress: &mut dyn FnMut(&ImportReport),
) -> Result<ImportReport, OpError> {
    if !path.is_absolute() {
        return Err(OpError::invalid(format!(
            "path: {} is not absolute (the collector reads it, from its own directory)",
            path.display()
        )));
    }
    let report = import::import(ops.store.as_ref(), path, progress).map_err(|e| match e {
        ImportError::Source { .. } => OpError::invalid(e.to_string()),
        ImportError::Store(e) => OpError::from(e),
    })?;
    let mut summary = serde_json::to_value(&report).unwrap_or_default();
    if let Some(o) = summary.as_object_mut() {
        o.remove("skipped");
    }
    ops.audited(
        PeopleWrite::Recorded,
        draft(
            actor,
            "vulns.import",
            &report.source,
            None,
            Some(summary),
            None,
        ),
    )?;
    Ok(report)
}

pub fn fleet(ops: &Ops) -> Result<FleetReport, OpError> {
    Ok(exposure::fleet_report(ops.store.as_ref())?)
}

pub fn host(ops: &Ops, id: &str) -> Result<HostReport, OpError> {
    exposure::for_computer(ops.store.as_ref(), id)?
        .ok_or_else(|| OpError::NotFound(format!("computer {id}")))
}

pub fn advisory(ops: &Ops, id: &str, page: &exposure::HostPage) -> Result<AdvisoryReport, OpError> {
    exposure::for_advisory(ops.store.as_ref(), id, page, chrono::Utc::now())?
        .ok_or_else(|| OpError::NotFound(format!("advisory {id}")))
}
