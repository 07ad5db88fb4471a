//! Admin commands. One implementation, two transports: the CLI opens the store directly
//! when no collector runs, or talks to the running collector over `DATA_DIR/admin.sock`
//! (a Unix socket only the data directory's owner can open: file permissions are the
//! authentication, as with PostgreSQL's peer auth or docker.sock).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::model::*;
use crate::ops::admin as op;
use crate::ops::{Actor, Ops};

pub use crate::ops::admin::ConflictResolution;
/// Why an admin command failed: an operation's error.
pub use crate::ops::OpError as AdminError;

pub const SOCKET_FILE: &str = "admin.sock";
/// Longest admin request line.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum AdminRequest {
    TokenCreate {
        ttl_seconds: i64,
        uses: u32,
        note: Option<String>,
    },
    TokenList,
    TokenRevoke {
        id: String,
    },
    AgentList,
    AgentRevoke {
        id: String,
    },
    UserAdd {
        name: String,
        role: Role,
    },
    UserList,
    /// Removes a person and revokes their API tokens.
    UserDelete {
        name: String,
    },
    /// Sets a person's password for login (Argon2id).
    UserPassword {
        name: String,
        password: String,
    },
    /// A person's API token; the secret is shown once.
    UserToken {
        name: String,
        ttl_seconds: i64,
    },
    UserTokenList,
    UserTokenRevoke {
        id: String,
    },
    CiList {
        class: Option<CiClass>,
    },
    CiShow {
        id: String,
        as_of: Option<DateTime<Utc>>,
    },
    CiHistory {
        id: String,
    },
    ConflictList,
    /// Closes an identity conflict: `kept_separate` (two real machines) or
    /// `claiming_agent_revoked` (a clone: its agent is revoked in the same write).
    ConflictResolve {
        id: String,
        resolution: ConflictResolution,
    },
    ChangeList,
    /// A consistent backup of the store to this absolute path (written 0600).
    Backup {
        to: String,
    },
    Stats,
    /// Compare every derived record with what it derives from.
    Check,
    /// Import OSV advisories from this absolute path (a directory, a record, an all.zip).
    VulnsImport {
        path: String,
    },
    /// Import other tools' inventories (absolute paths: files or directories).
    Import {
        format: crate::foreign::ocs::Format,
        paths: Vec<String>,
        dry_run: bool,
    },
    /// Replay the draft software title rules over every product (applied unless dry).
    SoftwareReplay {
        dry_run: bool,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AdminResponse {
    pub ok: bool,
    pub result: Value,
    pub error: Option<String>,
}

/// The audit actor of an admin command run by this process: the operating-system user
/// running it (its effective uid, named from /etc/passwd; `$USER` is unset under sudo
/// and service managers, which left every such action `admin-cli:unknown`).
pub fn cli_actor() -> String {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        actor_for_uid(unsafe { libc::geteuid() })
    }
    #[cfg(not(unix))]
    {
        format!(
            "admin-cli:{}",
            std::env::var("USERNAME").unwrap_or_else(|_| "unknown".into())
        )
    }
}

/// The audit actor for a local user id: `admin-cli:NAME`, or `admin-cli:uid-N` for a uid
/// without a passwd entry.
pub fn actor_for_uid(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    match user_name(&passwd, uid) {
        Some(name) => format!("admin-cli:{name}"),
        None => format!("admin-cli:uid-{uid}"),
    }
}

/// The name of `uid` in passwd(5) text.
fn user_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_string())
    })
}

/// Runs one admin command; every write is an operation of [`crate::ops::admin`], audited
/// as `actor`. The answer is JSON for the CLI and the socket.
pub fn execute(
    ops: &Ops,
    req: AdminRequest,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Value, AdminError> {
    let store = ops.store.as_ref();
    let who = Actor::new(actor);
    match req {
        AdminRequest::TokenCreate {
            ttl_seconds,
            uses,
            note,
        } => {
            let (token, secret) =
                op::create_enrollment_token(ops, &who, ttl_seconds, uses, note, now)?;
            Ok(
                json!({"id": token.id, "token": secret, "expires_at": token.expires_at, "max_uses": token.max_uses}),
            )
        }
        AdminRequest::TokenList => {
            let tokens = store.list_tokens()?;
            Ok(json!(tokens.iter().map(|t| json!({"id": t.id, "created_at": t.created_at, "expires_at": t.expires_at, "uses": t.uses, "max_uses": t.max_uses, "revoked_at": t.revoked_at, "note": t.note, "state": token_state(t, now)})).collect::<Vec<_>>()))
        }
        AdminRequest::TokenRevoke { id } => {
            op::revoke_enrollment_token(ops, &who, &id, now)?;
            Ok(json!({"revoked": id}))
        }
        AdminRequest::AgentList => {
            let agents = store.list_agents()?;
            Ok(json!(agents.iter().map(|a| json!({"id": a.id, "hostname": a.facts.hostname, "enrolled_at": a.enrolled_at, "last_seen": a.last_seen, "last_seq": a.last_seq, "ci_id": a.ci_id, "revoked_at": a.revoked_at, "superseded_by": a.superseded_by, "clock_skew_seconds": a.clock_skew_seconds, "agent_version": a.agent_version})).collect::<Vec<_>>()))
        }
        AdminRequest::AgentRevoke { id } => {
            op::revoke_agent(ops, &who, &id, now)?;
            Ok(json!({"revoked": id}))
        }
        AdminRequest::UserAdd { name, role } => {
            let user = op::put_user(ops, &who, &name, role, now)?;
            Ok(op::user_view(&user))
        }
        AdminRequest::UserList => Ok(json!(store
            .list_users()?
            .iter()
            .map(op::user_view)
            .collect::<Vec<_>>())),
        AdminRequest::UserPassword { name, password } => {
            op::set_password(ops, &who, &name, &password)?;
            Ok(json!({"user": name, "password": "set"}))
        }
        AdminRequest::UserToken { name, ttl_seconds } => {
            let (token, text, user) = op::create_api_token(ops, &who, &name, ttl_seconds, now)?;
            Ok(
                json!({"id": token.id, "user": user.name, "role": user.role, "token": text, "expires_at": token.expires_at}),
            )
        }
        AdminRequest::UserTokenList => {
            let tokens = store.list_api_tokens()?;
            Ok(json!(tokens.iter().map(|t| json!({"id": t.id, "user": t.user, "created_at": t.created_at, "expires_at": t.expires_at, "last_used_at": t.last_used_at, "revoked_at": t.revoked_at})).collect::<Vec<_>>()))
        }
        AdminRequest::UserTokenRevoke { id } => {
            op::revoke_api_token(ops, &who, &id, now)?;
            Ok(json!({"revoked": id}))
        }
        AdminRequest::UserDelete { name } => {
            op::delete_user(ops, &who, &name, now)?;
            Ok(json!({"deleted": name}))
        }
        AdminRequest::CiList { class } => {
            let cis = store.list_cis(class)?;
            Ok(json!(cis.iter().map(ci_summary).collect::<Vec<_>>()))
        }
        AdminRequest::CiShow { id, as_of } => {
            let ci = store
                .get_ci(&id)?
                .ok_or_else(|| AdminError::NotFound(format!("CI {id}")))?;
            let (state, outgoing) = match as_of {
                Some(at) => {
                    let v = store
                        .as_of(&id, at)?
                        .ok_or_else(|| AdminError::NotFound(format!("CI {id} at {at}")))?;
                    (json!(v.ci), v.relationships)
                }
                None => (json!(ci), store.relationships_from(&id)?),
            };
            let incoming = store.relationships_to(&id)?;
            let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
            for r in &outgoing {
                *by_kind.entry(r.key.kind.as_str()).or_default() += 1;
            }
            let agent = store
                .list_agents()?
                .into_iter()
                .find(|a| a.ci_id.as_deref() == Some(id.as_str()) && a.superseded_by.is_none());
            let mut names: BTreeMap<String, String> = BTreeMap::new();
            for r in &outgoing {
                if !names.contains_key(&r.key.to) {
                    let name = store.get_ci(&r.key.to)?.map(|c| c.name).unwrap_or_default();
                    names.insert(r.key.to.clone(), name);
                }
            }
            let outgoing: Vec<Value> = outgoing
                .iter()
                .map(|r| json!({"key": r.key, "to_name": names.get(&r.key.to), "attributes": r.attributes}))
                .collect();
            Ok(json!({
                "ci": state,
                "as_of": as_of,
                "counts": by_kind,
                "relationships_out": outgoing,
                "relationships_in": incoming.len(),
                "identification": agent.and_then(|a| a.identification),
            }))
        }
        AdminRequest::CiHistory { id } => {
            let versions = store.history(&id)?;
            Ok(json!(versions.iter().map(|v| json!({"version": v.version, "valid_from": v.valid_from, "status": v.ci.status, "relationships": v.relationships.len(), "change_record": v.change_record})).collect::<Vec<_>>()))
        }
        AdminRequest::Backup { to } => {
            let started = std::time::Instant::now();
            let (summary, bytes) = op::backup_to(ops, Path::new(&to))?;
            Ok(
                json!({"to": to, "trees": summary.trees, "records": summary.records, "bytes": bytes, "seconds": started.elapsed().as_secs_f64()}),
            )
        }
        AdminRequest::ConflictList => Ok(json!(store.list_conflicts()?)),
        AdminRequest::ConflictResolve { id, resolution } => {
            op::resolve_conflict(ops, &who, &id, resolution)?;
            Ok(json!({"resolved": id, "resolution": resolution.as_str()}))
        }
        AdminRequest::ChangeList => {
            let records = store.list_change_records()?;
            Ok(json!(records.iter().map(|r| json!({"id": r.id, "ci_id": r.ci_id, "ci_name": r.ci_name, "agent_id": r.agent_id, "seq": r.seq, "state": r.state, "severity": r.severity, "authorization": r.authorization, "detected_at": r.detected_at, "items": r.items.len(), "record": r})).collect::<Vec<_>>()))
        }
        AdminRequest::Check => Ok(json!(store.check_consistency()?)),
        AdminRequest::VulnsImport { path } => {
            let started = std::time::Instant::now();
            let report = crate::ops::vulns::import_feed(ops, &who, Path::new(&path), &mut |r| {
                tracing::info!(
                    records = r.records,
                    added = r.added,
                    updated = r.updated,
                    skipped = r.skipped_total,
                    "osv import progress"
                );
            })?;
            let mut v = json!(report);
            v["seconds"] = json!(started.elapsed().as_secs_f64());
            Ok(v)
        }
        AdminRequest::Import {
            format,
            paths,
            dry_run,
        } => {
            let started = std::time::Instant::now();
            let paths: Vec<std::path::PathBuf> = paths.into_iter().map(Into::into).collect();
            let report =
                crate::ops::foreign::import_files(ops, &who, format, &paths, dry_run, &mut |r| {
                    let done = r.outcomes.len();
                    if done.is_multiple_of(100) || done == r.files {
                        tracing::info!(
                            done,
                            files = r.files,
                            new = r.new,
                            updated = r.updated,
                            skipped = r.skipped,
                            failed = r.failed,
                            "inventory import progress"
                        );
                    }
                })?;
            let mut v = json!(report);
            v["seconds"] = json!(started.elapsed().as_secs_f64());
            Ok(v)
        }
        AdminRequest::SoftwareReplay { dry_run } => {
            let started = std::time::Instant::now();
            let report = crate::ops::software::replay(ops, &who, dry_run, &mut |done, total| {
                tracing::info!(done, total, "software title replay progress");
            })?;
            let mut v = json!(report);
            v["seconds"] = json!(started.elapsed().as_secs_f64());
            Ok(v)
        }
        AdminRequest::Stats => {
            let mut counts = BTreeMap::new();
            for class in CiClass::ALL {
                counts.insert(class.as_str(), store.list_cis(Some(class))?.len());
            }
            Ok(json!({
                "cis": counts,
                "agents": store.list_agents()?.len(),
                "change_records": store.list_change_records()?.len(),
                "identity_conflicts": store.list_conflicts()?.len(),
                "store_bytes": store.size_on_disk()?,
            }))
        }
    }
}

fn token_state(t: &EnrollmentToken, now: DateTime<Utc>) -> &'static str {
    if t.revoked_at.is_some() {
        "revoked"
    } else if t.expires_at <= now {
        "expired"
    } else if t.uses >= t.max_uses {
        "exhausted"
    } else {
        "active"
    }
}

pub fn ci_summary(ci: &Ci) -> Value {
    json!({"id": ci.id, "class": ci.class, "name": ci.name, "status": ci.status, "version": ci.version, "first_seen": ci.first_seen, "last_seen": ci.last_seen})
}

/// Binds the admin socket (mode 0600), replacing a stale one left by a crash. Done before
/// the collector announces itself, so an admin command right after start finds it.
#[cfg(unix)]
pub fn bind_socket(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves admin requests on the bound socket until the task is dropped.
#[cfg(unix)]
pub async fn serve_socket(listener: tokio::net::UnixListener, ops: Ops) -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    loop {
        let (stream, _) = listener.accept().await?;
        let ops = ops.clone();
        // The actor is the peer's user (SO_PEERCRED), not the collector's.
        let actor = match stream.peer_cred() {
            Ok(cred) => actor_for_uid(cred.uid()),
            Err(_) => "admin-cli:unknown-peer".to_string(),
        };
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES as u64));
            if reader.read_line(&mut line).await.is_err() {
                return;
            }
            let response = match serde_json::from_str::<AdminRequest>(&line) {
                Ok(req) => {
                    let r =
                        tokio::task::spawn_blocking(move || execute(&ops, req, &actor, Utc::now()))
                            .await;
                    match r {
                        Ok(Ok(result)) => AdminResponse {
                            ok: true,
                            result,
                            error: None,
                        },
                        Ok(Err(e)) => AdminResponse {
                            ok: false,
                            result: Value::Null,
                            error: Some(e.to_string()),
                        },
                        Err(e) => AdminResponse {
                            ok: false,
                            result: Value::Null,
                            error: Some(e.to_string()),
                        },
                    }
                }
                Err(e) => AdminResponse {
                    ok: false,
                    result: Value::Null,
                    error: Some(format!("bad admin request: {e}")),
                },
            };
            if let Ok(mut bytes) = serde_json::to_vec(&response) {
                bytes.push(b'\n');
                let _ = write.write_all(&bytes).await;
            }
        });
    }
}

/// Sends one request to a running collector; `Ok(None)` when none listens on the socket.
#[cfg(unix)]
pub fn call_socket(data_dir: &Path, req: &AdminRequest) -> Result<Option<AdminResponse>, String> {
    use std::io::{BufRead, BufReader, Write};
    let path = data_dir.join(SOCKET_FILE);
    let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => {
            return Err(format!(
                "cannot reach the running collector at {}: {e}",
                path.display()
            ))
        }
    };
    let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    line.push(b'\n');
    stream.write_all(&line).map_err(|e| e.to_string())?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&reply)
        .map(Some)
        .map_err(|e| format!("bad reply from the collector: {e}"))
}

#[cfg(not(unix))]
pub fn call_socket(_data_dir: &Path, _req: &AdminRequest) -> Result<Option<AdminResponse>, String> {
    Ok(None)
}

/// Parses "90s", "30m", "24h", "7d", "2w".
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 90s, 30m, 24h, 7d"))?;
    let mult = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => {
            return Err(format!(
                "unknown duration unit '{unit}' in '{text}'; use s, m, h, d or w"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("duration '{text}' is too large"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn admin_cli_actions_are_audited_as_the_os_user_running_them() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nann:x:1000:1000:Ann:/home/ann:/bin/sh\n";
        assert_eq!(user_name(passwd, 1000).as_deref(), Some("ann"));
        assert_eq!(user_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_name(passwd, 4242), None);
        assert_eq!(user_name("garbage\n::\n", 0), None);
        // This process's own user is named, never "unknown".
        assert!(!cli_actor().ends_with(":unknown"), "{}", cli_actor());
    }

    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Ok(86_400));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert_eq!(parse_duration("90"), Ok(90));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
    }
}
