//! The spool: signed snapshots and deltas waiting for the collector, one file each,
//! delivered in seq order (a delta's base is delivered before it). Bounded by count and bytes (oldest dropped first, with a log line). A file cut
//! short by a crash is detected by its recorded length and discarded, never fatal.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::state::{write_atomic, StateError};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SpoolHeader {
    pub agent_id: String,
    pub seq: u64,
    pub signature: String,
    pub content_hash: String,
    /// "zstd".
    pub encoding: String,
    pub body_len: u64,
    pub created_at: DateTime<Utc>,
    /// Files spooled before protocol v2 are snapshots.
    #[serde(default)]
    pub kind: SpoolKind,
    /// A delta's base seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_seq: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SpoolKind {
    #[default]
    Snapshot,
    Delta,
}

impl SpoolKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SpoolKind::Snapshot => "snapshot",
            SpoolKind::Delta => "delta",
        }
    }
}

#[derive(Debug)]
pub struct SpoolEntry {
    pub path: PathBuf,
    pub header: SpoolHeader,
    pub body: Vec<u8>,
}

pub struct Spool {
    dir: PathBuf,
    pub max_files: usize,
    pub max_bytes: u64,
}

fn file_name(seq: u64) -> String {
    format!("{seq:020}.snap")
}

/// Parses a spool file; `None` when it is torn or not a spool file.
pub fn parse_entry(bytes: &[u8]) -> Option<(SpoolHeader, Vec<u8>)> {
    let nl = bytes.iter().position(|b| *b == b'\n')?;
    let header: SpoolHeader = serde_json::from_slice(&bytes[..nl]).ok()?;
    let body = &bytes[nl + 1..];
    (body.len() as u64 == header.body_len).then(|| (header, body.to_vec()))
}

impl Spool {
    pub fn new(dir: &Path, max_files: usize, max_bytes: u64) -> Self {
        Spool {
            dir: dir.to_path_buf(),
            max_files,
            max_bytes,
        }
    }

    /// Spool files in seq order; leftovers of interrupted writes are removed.
    pub fn paths(&self) -> Result<Vec<PathBuf>, StateError> {
        let rd = std::fs::read_dir(&self.dir).map_err(|source| StateError::Io {
            path: self.dir.display().to_string(),
            source,
        })?;
        let mut out = Vec::new();
        for e in rd.flatten() {
            let p = e.path();
            match p.extension().and_then(|x| x.to_str()) {
                Some("snap") => out.push(p),
                Some("tmp") => {
                    tracing::warn!(file = %p.display(), "removing an interrupted spool write");
                    let _ = std::fs::remove_file(&p);
                }
                _ => {}
            }
        }
        out.sort();
        Ok(out)
    }

    /// (files, bytes) waiting.
    pub fn depth(&self) -> Result<(usize, u64), StateError> {
        let paths = self.paths()?;
        let bytes = paths
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        Ok((paths.len(), bytes))
    }

    /// Loads one entry; a torn or foreign file is removed and reported as `None`.
    pub fn load(&self, path: &Path) -> Option<SpoolEntry> {
        let bytes = std::fs::read(path).ok()?;
        match parse_entry(&bytes) {
            Some((header, body)) => Some(SpoolEntry {
                path: path.to_path_buf(),
                header,
                body,
            }),
            None => {
                tracing::warn!(file = %path.display(), bytes = bytes.len(), "discarding a torn or unreadable spool file");
                let _ = std::fs::remove_file(path);
                None
            }
        }
    }

    /// Writes a signed snapshot durably, then enforces the bounds. Returns the seqs dropped.
    pub fn push(&self, header: &SpoolHeader, body: &[u8]) -> Result<Vec<u64>, StateError> {
        let mut bytes = serde_json::to_vec(header).map_err(|e| StateError::Corrupt {
            path: "spool header".into(),
            message: e.to_string(),
        })?;
        bytes.push(b'\n');
        bytes.extend_from_slice(body);
        write_atomic(&self.dir.join(file_name(header.seq)), &bytes, true)?;
        self.enforce_bounds()
    }

    fn enforce_bounds(&self) -> Result<Vec<u64>, StateError> {
        let mut paths = self.paths()?;
        let mut sizes: Vec<u64> = paths
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .collect();
        let mut dropped = Vec::new();
        // Always keep the newest: it is the current state of the machine.
        while paths.len() > 1
            && (paths.len() > self.max_files || sizes.iter().sum::<u64>() > self.max_bytes)
        {
            let oldest = paths.remove(0);
            sizes.remove(0);
            let seq = oldest
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            tracing::warn!(seq, file = %oldest.display(), max_files = self.max_files, max_bytes = self.max_bytes, "spool full: dropping the oldest undelivered snapshot");
            let _ = std::fs::remove_file(&oldest);
            dropped.push(seq);
        }
        Ok(dropped)
    }

    pub fn remove(&self, entry: &SpoolEntry) {
        if let Err(e) = std::fs::remove_file(&entry.path) {
            tracing::warn!(file = %entry.path.display(), error = %e, "could not remove a delivered spool file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u64, len: usize) -> SpoolHeader {
        SpoolHeader {
            agent_id: "agt_1".into(),
            seq,
            signature: "sig".into(),
            content_hash: "h".into(),
            encoding: "zstd".into(),
            body_len: len as u64,
            created_at: Utc::now(),
            kind: SpoolKind::Snapshot,
            base_seq: None,
        }
    }

    fn dir(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("census-spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn order_bounds_and_torn_files() {
        let d = dir("bounds");
        let spool = Spool::new(&d, 3, 1_000_000);
        for seq in [3u64, 1, 2, 10] {
            spool.push(&header(seq, 4), b"body").unwrap();
        }
        let seqs: Vec<u64> = spool
            .paths()
            .unwrap()
            .iter()
            .filter_map(|p| spool.load(p))
            .map(|e| e.header.seq)
            .collect();
        assert_eq!(seqs, vec![2, 3, 10], "oldest dropped, seq order kept");
        // A crash mid-write of the last file: truncated body.
        let torn = d.join(file_name(11));
        let mut bytes = serde_json::to_vec(&header(11, 100)).unwrap();
        bytes.extend_from_slice(b"\nshort");
        std::fs::write(&torn, bytes).unwrap();
        std::fs::write(d.join("00000000000000000012.snap.tmp"), b"partial").unwrap();
        let entries: Vec<_> = spool
            .paths()
            .unwrap()
            .iter()
            .filter_map(|p| spool.load(p))
            .collect();
        assert_eq!(entries.len(), 3);
        assert!(!torn.exists(), "torn file discarded");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn byte_bound_keeps_newest() {
        let d = dir("bytes");
        let spool = Spool::new(&d, 100, 10);
        spool.push(&header(1, 50), &[0u8; 50]).unwrap();
        let dropped = spool.push(&header(2, 50), &[0u8; 50]).unwrap();
        assert_eq!(dropped, vec![1]);
        assert_eq!(spool.depth().unwrap().0, 1);
        let _ = std::fs::remove_dir_all(d);
    }
}
