//! Offline import of OSV's published layout: a directory of `ID.json` records, one record,
//! or an ecosystem's `all.zip`. Records stream through in batches (memory stays bounded by
//! one batch, whatever the archive holds); each is parsed and validated on its own, and one
//! that cannot be read is listed with its reason and skipped, never half-applied.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::Serialize;

use super::osv::{self, Parsed, MAX_RECORD_BYTES};
use crate::model::vuln::AdvisoryWrite;
use crate::store::{AdvisoryOutcome, Store, StoreError};

/// Records written per transaction.
pub const BATCH: usize = 500;
/// Most members an archive may list.
pub const MAX_MEMBERS: usize = 2_000_000;
/// Most bytes an import decompresses in all (Debian's all.zip inflates to ~1 GB).
pub const MAX_TOTAL_BYTES: u64 = 8 * 1024 * 1024 * 1024;
/// Skipped records listed by name (all are counted).
pub const MAX_LISTED: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {message}")]
    Source { path: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A record left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub source: String,
    /// Records read (withdrawn and skipped ones included).
    pub records: usize,
    /// New advisories.
    pub added: usize,
    /// Advisories replaced by a newer `modified`.
    pub updated: usize,
    /// Records no newer than what the store holds (a second import of the same feed).
    pub unchanged: usize,
    /// Withdrawn records read.
    pub withdrawn: usize,
    /// Stored advisories those withdrawals removed.
    pub removed: usize,
    pub skipped_total: usize,
    /// The first [`MAX_LISTED`] skipped records.
    pub skipped: Vec<Skipped>,
    /// Affected entries read, per ecosystem release.
    pub ecosystems: BTreeMap<String, usize>,
}

impl ImportReport {
    /// A record counted and skipped before it could be parsed (unreadable, too large, an
    /// unsafe name).
    fn unread(&mut self, name: &str, reason: String) {
        self.records += 1;
        self.skip(name, reason);
    }

    fn skip(&mut self, name: &str, reason: String) {
        self.skipped_total += 1;
        if self.skipped.len() < MAX_LISTED {
            self.skipped.push(Skipped {
                name: name.to_string(),
                reason,
            });
        }
    }
}

struct Importer<'a> {
    store: &'a dyn Store,
    report: ImportReport,
    pending: Vec<AdvisoryWrite>,
    progress: &'a mut dyn FnMut(&ImportReport),
}

impl Importer<'_> {
    fn record(&mut self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.report.records += 1;
        match osv::parse(bytes) {
            Ok(Parsed::Advisory(a)) => {
                for e in &a.affected {
                    *self
                        .report
                        .ecosystems
                        .entry(e.ecosystem.clone())
                        .or_default() += 1;
                }
                self.pending.push(AdvisoryWrite::Put(a));
            }
            Ok(Parsed::Withdrawn { id, modified }) => {
                self.report.withdrawn += 1;
                self.pending.push(AdvisoryWrite::Withdraw { id, modified });
            }
            Err(e) => self.report.skip(name, e.to_string()),
        }
        if self.pending.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        for outcome in self.store.write_advisories(&self.pending)? {
            match outcome {
                AdvisoryOutcome::Added => self.report.added += 1,
                AdvisoryOutcome::Updated => self.report.updated += 1,
                AdvisoryOutcome::Unchanged => self.report.unchanged += 1,
                AdvisoryOutcome::NotHeld => {}
                AdvisoryOutcome::Removed => self.report.removed += 1,
            }
        }
        self.pending.clear();
        (self.progress)(&self.report);
        Ok(())
    }
}

/// Whether an archive member's name is one a well-formed OSV archive has: a relative path
/// without `..`, a drive, a backslash or a control character. Census never writes members
/// to disk, but an archive naming `../../etc/x.json` is hostile and says so.
fn safe_member_name(name: &str) -> bool {
    let drive = name.len() > 1 && name.as_bytes()[1] == b':';
    let unsafe_name = name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.chars().any(char::is_control)
        || name.split('/').any(|part| part == "..")
        || drive;
    !unsafe_name
}

fn source_error(path: &Path, message: impl std::fmt::Display) -> ImportError {
    ImportError::Source {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Imports a directory of `*.json` records, one `.json` record, or a `.zip` of them.
/// `progress` is called after each batch.
pub fn import(
    store: &dyn Store,
    path: &Path,
    progress: &mut dyn FnMut(&ImportReport),
) -> Result<ImportReport, ImportError> {
    let meta = std::fs::metadata(path).map_err(|e| source_error(path, e))?;
    let mut importer = Importer {
        store,
        report: ImportReport {
            source: path.display().to_string(),
            ..Default::default()
        },
        pending: Vec::new(),
        progress,
    };
    if meta.is_dir() {
        import_dir(&mut importer, path)?;
    } else if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"))
    {
        import_zip(&mut importer, path)?;
    } else {
        let name = path.display().to_string();
        match read_file(path) {
            Ok(bytes) => importer.record(&name, &bytes)?,
            Err(reason) => return Err(source_error(path, reason)),
        }
    }
    importer.flush()?;
    Ok(importer.report)
}

/// A regular file's bytes, refused past [`MAX_RECORD_BYTES`] before reading it.
fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if len > MAX_RECORD_BYTES as u64 {
        return Err(format!("{len} bytes, more than {MAX_RECORD_BYTES}"));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_RECORD_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(format!("more than {MAX_RECORD_BYTES} bytes"));
    }
    Ok(bytes)
}

fn import_dir(importer: &mut Importer<'_>, dir: &Path) -> Result<(), ImportError> {
    let mut names: Vec<std::path::PathBuf> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| source_error(dir, e))? {
        let entry = entry.map_err(|e| source_error(dir, e))?;
        let path = entry.path();
        // Symbolic links are not followed: the directory is what is imported.
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file
            && path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            names.push(path);
        }
    }
    // In name order, so two imports of one directory report the same way.
    names.sort();
    for path in names {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match read_file(&path) {
            Ok(bytes) => importer.record(&name, &bytes)?,
            Err(reason) => {
                importer.report.unread(&name, reason);
            }
        }
    }
    Ok(())
}

fn import_zip(importer: &mut Importer<'_>, path: &Path) -> Result<(), ImportError> {
    let file = std::fs::File::open(path).map_err(|e| source_error(path, e))?;
    read_archive(std::io::BufReader::new(file), &mut |member| match member {
        Member::Record { name, bytes } => importer.record(&name, &bytes),
        Member::Unread { name, reason } => {
            importer.report.unread(&name, reason);
            Ok(())
        }
    })
    .map_err(|e| match e {
        ArchiveError::Refused(message) => source_error(path, message),
        ArchiveError::Store(e) => ImportError::Store(e),
    })
}

/// One member of an archive, as [`read_archive`] hands it on.
pub enum Member {
    /// A `.json` member's bytes, at most [`MAX_RECORD_BYTES`].
    Record { name: String, bytes: Vec<u8> },
    /// A member left out before parsing, and why.
    Unread { name: String, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive as a whole is refused (unreadable, too many members, too large).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads an OSV archive (untrusted bytes) member by member: at most [`MAX_MEMBERS`]
/// members and [`MAX_TOTAL_BYTES`] inflated in all, each `.json` member read through a
/// bounded reader whatever its header declares, unsafe names refused by name. Memory stays
/// within one member.
pub fn read_archive<R: Read + std::io::Seek>(
    reader: R,
    each: &mut dyn FnMut(Member) -> Result<(), StoreError>,
) -> Result<(), ArchiveError> {
    let mut archive = zip::ZipArchive::new(reader)
        .map_err(|e| ArchiveError::Refused(format!("not a readable zip archive: {e}")))?;
    if archive.len() > MAX_MEMBERS {
        return Err(ArchiveError::Refused(format!(
            "{} members, more than {MAX_MEMBERS}",
            archive.len()
        )));
    }
    let unread = |name: String, reason: String| Member::Unread { name, reason };
    let mut inflated: u64 = 0;
    for i in 0..archive.len() {
        let mut member = match archive.by_index(i) {
            Ok(m) => m,
            Err(e) => {
                each(unread(format!("member {i}"), e.to_string()))?;
                continue;
            }
        };
        let name = match member.name() {
            Ok(n) => n.to_string(),
            Err(e) => {
                each(unread(
                    format!("member {i}"),
                    format!("unreadable name: {e}"),
                ))?;
                continue;
            }
        };
        if member.is_dir() {
            continue;
        }
        if !safe_member_name(&name) {
            each(unread(
                osv_name(&name),
                "unsafe member name (absolute, .. or control characters)".into(),
            ))?;
            continue;
        }
        if !name.to_ascii_lowercase().ends_with(".json") {
            continue;
        }
        // The declared size can lie; the read below is bounded either way.
        if member.size() > MAX_RECORD_BYTES as u64 {
            let reason = format!(
                "{} bytes inflated, more than {MAX_RECORD_BYTES}",
                member.size()
            );
            each(unread(name, reason))?;
            continue;
        }
        let mut bytes = Vec::with_capacity(member.size() as usize);
        let read = (&mut member)
            .take(MAX_RECORD_BYTES as u64 + 1)
            .read_to_end(&mut bytes);
        inflated += bytes.len() as u64;
        if inflated > MAX_TOTAL_BYTES {
            return Err(ArchiveError::Refused(format!(
                "inflates to more than {MAX_TOTAL_BYTES} bytes; stopped"
            )));
        }
        match read {
            Err(e) => each(unread(name, format!("unreadable: {e}")))?,
            Ok(_) if bytes.len() > MAX_RECORD_BYTES => each(unread(
                name,
                format!("more than {MAX_RECORD_BYTES} bytes inflated"),
            ))?,
            Ok(_) => each(Member::Record { name, bytes })?,
        }
    }
    Ok(())
}

/// A hostile member name as a report shows it: control characters replaced, bounded.
fn osv_name(name: &str) -> String {
    name.chars()
        .take(200)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_that_climb_out_or_are_absolute_are_unsafe() {
        for ok in ["DSA-1-1.json", "Debian/DSA-1-1.json", "a..b.json"] {
            assert!(safe_member_name(ok), "{ok}");
        }
        for bad in [
            "../x.json",
            "a/../../x.json",
            "/etc/x.json",
            "C:x.json",
            "a\\b.json",
            "a\u{0}.json",
            "",
        ] {
            assert!(!safe_member_name(bad), "{bad:?}");
        }
    }

    /// A zip written by hand, so a member's header can lie: (name, declared inflated size,
    /// declared CRC-32, raw deflate data).
    fn zip_of(members: &[(&str, u32, u32, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, declared, crc, data) in members {
            let offset = out.len() as u32;
            let fields = |v: &mut Vec<u8>| {
                v.extend_from_slice(&20u16.to_le_bytes()); // version needed
                v.extend_from_slice(&0u16.to_le_bytes()); // flags
                v.extend_from_slice(&8u16.to_le_bytes()); // deflate
                v.extend_from_slice(&0u16.to_le_bytes()); // time
                v.extend_from_slice(&0x21u16.to_le_bytes()); // date
                v.extend_from_slice(&crc.to_le_bytes());
                v.extend_from_slice(&(data.len() as u32).to_le_bytes());
                v.extend_from_slice(&declared.to_le_bytes());
                v.extend_from_slice(&(name.len() as u16).to_le_bytes());
                v.extend_from_slice(&0u16.to_le_bytes()); // extra
            };
            out.extend_from_slice(&0x04034b50u32.to_le_bytes());
            fields(&mut out);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(data);
            central.extend_from_slice(&0x02014b50u32.to_le_bytes());
            central.extend_from_slice(&20u16.to_le_bytes()); // made by
            fields(&mut central);
            central.extend_from_slice(&[0; 6]); // comment, disk, internal attributes
            central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let (cd_offset, cd_len) = (out.len() as u32, central.len() as u32);
        out.extend_from_slice(&central);
        out.extend_from_slice(&0x06054b50u32.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(members.len() as u16).to_le_bytes());
        out.extend_from_slice(&(members.len() as u16).to_le_bytes());
        out.extend_from_slice(&cd_len.to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    fn deflated(mut fill: impl FnMut(&mut dyn std::io::Write)) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        fill(&mut e);
        e.finish().unwrap()
    }

    /// A 1 GiB member whose header claims 10 bytes (a zip bomb) is read no further than its
    /// claim (the zip reader stops there) or the record limit, and listed with its reason;
    /// the next member still imports.
    #[test]
    fn a_gigabyte_member_that_claims_ten_bytes_is_refused_after_the_record_limit() {
        let zeros = vec![0u8; 1 << 20];
        let bomb = deflated(|w| {
            for _ in 0..1024 {
                w.write_all(&zeros).unwrap();
            }
        });
        assert!(bomb.len() < 8 << 20, "{} bytes deflated", bomb.len());
        let record = br#"{"id":"DSA-1-1","modified":"2026-01-01T00:00:00Z","affected":[]}"#;
        let small = deflated(|w| w.write_all(record).unwrap());
        let mut crc = flate2::Crc::new();
        crc.update(record);
        let zip = zip_of(&[
            ("BOMB-1.json", 10, 0, bomb),
            ("DSA-1-1.json", record.len() as u32, crc.sum(), small),
        ]);
        let mut seen = Vec::new();
        read_archive(std::io::Cursor::new(zip), &mut |m| {
            seen.push(match m {
                Member::Record { name, bytes } => (name, format!("{} bytes", bytes.len())),
                Member::Unread { name, reason } => (name, reason),
            });
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0].0, "BOMB-1.json");
        assert!(
            seen[0].1.contains("more than 8388608 bytes inflated")
                || seen[0].1.contains("unreadable"),
            "{seen:?}"
        );
        assert_eq!(
            seen[1],
            ("DSA-1-1.json".into(), format!("{} bytes", record.len()))
        );
    }

    #[test]
    fn an_archive_of_garbage_is_refused_as_a_whole() {
        let err = read_archive(
            std::io::Cursor::new(b"PK\x03\x04 not really".to_vec()),
            &mut |_| Ok(()),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("not a readable zip archive"),
            "{err}"
        );
    }
}
