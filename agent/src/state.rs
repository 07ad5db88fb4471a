//! The agent's state directory: key, enrollment, seq, last acknowledgement, status, and
//! the latest inventory spooled (the base of the next protocol-v2 delta).
//!
//! Architecture Invariant: the seq is persisted (written, fsynced, renamed) before any
//! message carrying it leaves the machine, so a crash can never make the agent reuse one.

use std::io::Write;
use std::path::{Path, PathBuf};

use census_shared::AgentKeyPair;
use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Corrupt { path: String, message: String },
    #[error("this agent is not enrolled (no {0}); run `census-agent enroll` first")]
    NotEnrolled(String),
    #[error("another census-agent is using {0} (a running `census-agent run`?); stop it or wait")]
    Busy(String),
}

/// Held while a process reserves seqs or writes the spool; released on drop.
pub struct StateLock {
    _file: std::fs::File,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `bytes` to `path` atomically and durably: temp file, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<(), StateError> {
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    // The rename is durable only once the directory entry is (POSIX).
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(path.parent().unwrap_or(Path::new("."))) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Enrollment {
    pub agent_id: String,
    pub server: String,
    /// The pinned CA certificate (PEM): the only root the agent trusts for this server.
    pub ca_pem: String,
    pub ca_fingerprint: String,
    pub enrolled_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LastAck {
    pub seq: u64,
    pub content_hash: String,
    pub at: Option<DateTime<Utc>>,
    pub ci_id: Option<String>,
}

/// The latest inventory spooled (or acknowledged): the base the next delta is computed
/// from. Deltas chain through the spool in seq order, so the base is the tip of the chain,
/// not the last acknowledgement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tip {
    pub seq: u64,
    /// In canonical order.
    pub snapshot: census_shared::Snapshot,
}

/// What the agent learnt of its collector's protocol.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Protocol {
    /// When the collector last answered a delta with 404 (a protocol-v1 collector): full
    /// snapshots until a day later, then deltas are tried again.
    pub deltas_unsupported_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub last_attempt: Option<DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub next_run: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    /// The collector refuses this agent itself (revoked, superseded, unknown): nothing it
    /// sends is taken until a person acts. Cleared by the next accepted submission.
    #[serde(default)]
    pub refused: Option<Refusal>,
}

/// A refusal of the agent, not of one submission.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Refusal {
    pub at: DateTime<Utc>,
    pub status: u16,
    /// The problem type (`urn:census:problem:agent-revoked`, `...:agent-superseded`, or
    /// `about:blank` for an agent the collector does not know).
    pub problem: String,
    pub detail: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the collector refuses this agent ({}): {}",
            self.status, self.detail
        )
    }
}

pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    /// Opens (creating, mode 0700) the state directory.
    pub fn open(root: &Path) -> Result<Self, StateError> {
        std::fs::create_dir_all(root.join("spool")).map_err(io_err(root))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err(root))?;
        }
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    /// Takes the state directory for this process: two agents sharing one seq line would
    /// reserve the same seq.
    pub fn lock(&self) -> Result<StateLock, StateError> {
        let path = self.root.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(StateLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(StateError::Busy(self.root.display().to_string()))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(io_err(&path)(e)),
        }
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.root.join("spool")
    }

    fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StateError> {
        let path = self.root.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StateError::Corrupt {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn write_json<T: Serialize>(
        &self,
        name: &str,
        value: &T,
        private: bool,
    ) -> Result<(), StateError> {
        let path = self.root.join(name);
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| StateError::Corrupt {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        write_atomic(&path, &bytes, private)
    }

    /// The key pair, generated and stored (0600) on first use.
    pub fn key_pair(&self) -> Result<AgentKeyPair, StateError> {
        let path = self.root.join("agent.key");
        match std::fs::read_to_string(&path) {
            Ok(text) => AgentKeyPair::secret_from_text(&text).map_err(|e| StateError::Corrupt {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = AgentKeyPair::generate();
                write_atomic(&path, key.secret_to_text().as_bytes(), true)?;
                Ok(key)
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Forgets the key so the next enrollment makes a new one.
    pub fn reset_key(&self) -> Result<(), StateError> {
        let path = self.root.join("agent.key");
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    pub fn enrollment(&self) -> Result<Option<Enrollment>, StateError> {
        self.read_json("enrollment.json")
    }

    pub fn require_enrollment(&self) -> Result<Enrollment, StateError> {
        self.enrollment()?.ok_or_else(|| {
            StateError::NotEnrolled(self.root.join("enrollment.json").display().to_string())
        })
    }

    pub fn save_enrollment(&self, e: &Enrollment) -> Result<(), StateError> {
        self.write_json("enrollment.json", e, true)
    }

    pub fn current_seq(&self) -> Result<u64, StateError> {
        let path = self.root.join("seq");
        match std::fs::read_to_string(&path) {
            Ok(t) => t.trim().parse().map_err(|_| StateError::Corrupt {
                path: path.display().to_string(),
                message: "not a number".into(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Reserves the next seq durably and returns it.
    pub fn next_seq(&self) -> Result<u64, StateError> {
        let next = self.current_seq()? + 1;
        write_atomic(&self.root.join("seq"), next.to_string().as_bytes(), false)?;
        Ok(next)
    }

    pub fn reset_seq(&self) -> Result<(), StateError> {
        write_atomic(&self.root.join("seq"), b"0", false)
    }

    pub fn last_ack(&self) -> Result<LastAck, StateError> {
        Ok(self.read_json("last_ack.json")?.unwrap_or_default())
    }

    pub fn save_last_ack(&self, a: &LastAck) -> Result<(), StateError> {
        self.write_json("last_ack.json", a, false)
    }

    pub fn clear_last_ack(&self) -> Result<(), StateError> {
        let path = self.root.join("last_ack.json");
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    /// The tip, or `None` when there is none or it cannot be read (then the next inventory
    /// goes as a full snapshot, which is always correct).
    pub fn tip(&self) -> Option<Tip> {
        let path = self.root.join("tip.json.zst");
        let bytes = std::fs::read(&path).ok()?;
        let json = census_shared::wire::zstd_decompress_bounded(
            &bytes,
            census_shared::limits::MAX_DECOMPRESSED_BYTES,
        );
        match json
            .ok()
            .and_then(|j| serde_json::from_slice::<Tip>(&j).ok())
        {
            Some(tip) => Some(tip),
            None => {
                tracing::warn!(file = %path.display(), "unreadable delta base; the next inventory goes whole");
                None
            }
        }
    }

    /// Keeps `tip` (0600: it is this machine's whole inventory).
    pub fn save_tip(&self, tip: &Tip) -> Result<(), StateError> {
        let path = self.root.join("tip.json.zst");
        let corrupt = |e: String| StateError::Corrupt {
            path: path.display().to_string(),
            message: e,
        };
        let json = serde_json::to_vec(tip).map_err(|e| corrupt(e.to_string()))?;
        let bytes = zstd::bulk::compress(&json, 3).map_err(|e| corrupt(e.to_string()))?;
        write_atomic(&path, &bytes, true)
    }

    pub fn clear_tip(&self) -> Result<(), StateError> {
        let path = self.root.join("tip.json.zst");
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    pub fn protocol(&self) -> Result<Protocol, StateError> {
        Ok(self.read_json("protocol.json")?.unwrap_or_default())
    }

    pub fn save_protocol(&self, p: &Protocol) -> Result<(), StateError> {
        self.write_json("protocol.json", p, false)
    }

    pub fn status(&self) -> Result<Status, StateError> {
        Ok(self.read_json("status.json")?.unwrap_or_default())
    }

    pub fn save_status(&self, s: &Status) -> Result<(), StateError> {
        self.write_json("status.json", s, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let p =
            std::env::temp_dir().join(format!("census-agent-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn state_directory_is_exclusive() {
        let dir = tmp("lock");
        let s = StateDir::open(&dir).unwrap();
        let held = s.lock().unwrap();
        assert!(matches!(
            StateDir::open(&dir).unwrap().lock(),
            Err(StateError::Busy(_))
        ));
        drop(held);
        assert!(s.lock().is_ok(), "released on drop");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn seq_is_monotonic_across_reopen() {
        let dir = tmp("seq");
        let s = StateDir::open(&dir).unwrap();
        assert_eq!(s.next_seq().unwrap(), 1);
        assert_eq!(s.next_seq().unwrap(), 2);
        let again = StateDir::open(&dir).unwrap();
        assert_eq!(again.next_seq().unwrap(), 3);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tmp("key");
        let s = StateDir::open(&dir).unwrap();
        let k1 = s.key_pair().unwrap().public();
        let k2 = s.key_pair().unwrap().public();
        assert_eq!(k1, k2);
        let mode = std::fs::metadata(dir.join("agent.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(dmode & 0o777, 0o700);
        let _ = std::fs::remove_dir_all(dir);
    }
}
