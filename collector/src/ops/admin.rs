//! Administration: enrollment tokens, agents, people and their API tokens, identity
//! conflicts, backups. The admin CLI, its socket and the web UI's admin pages call these.
//! Blocking.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::*;
use crate::store::BackupSummary;

/// What a person decided about an identity conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ConflictResolution {
    /// Two real machines: both CIs stay.
    KeptSeparate,
    /// A clone: its agent is revoked in the same write.
    ClaimingAgentRevoked,
}

impl ConflictResolution {
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictResolution::KeptSeparate => "kept_separate",
            ConflictResolution::ClaimingAgentRevoked => "claiming_agent_revoked",
        }
    }
}

/// A new enrollment token: the record, and the secret shown once.
pub fn create_enrollment_token(
    ops: &Ops,
    actor: &Actor,
    ttl_seconds: i64,
    uses: u32,
    note: Option<String>,
    now: DateTime<Utc>,
) -> Result<(EnrollmentToken, String), OpError> {
    if ttl_seconds <= 0 || uses == 0 {
        return Err(OpError::invalid(
            "a token needs a positive TTL and at least one use",
        ));
    }
    let secret = format!("cet_{}", hex::encode(rand::random::<[u8; 24]>()));
    let token = EnrollmentToken {
        id: format!("tok_{}", hex::encode(rand::random::<[u8; 6]>())),
        secret_hash: super::credentials::token_hash(&secret),
        created_at: now,
        expires_at: now + Duration::seconds(ttl_seconds),
        max_uses: uses,
        uses: 0,
        revoked_at: None,
        note,
    };
    ops.audited(
        PeopleWrite::PutEnrollmentToken(token.clone()),
        draft(
            actor,
            "enrollment_token.create",
            &token.id,
            None,
            Some(
                json!({"id": token.id, "expires_at": token.expires_at, "max_uses": uses, "note": token.note}),
            ),
            None,
        ),
    )?;
    Ok((token, secret))
}

/// Revokes an enrollment token (idempotent).
pub fn revoke_enrollment_token(
    ops: &Ops,
    actor: &Actor,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), OpError> {
    let expected = ops
        .store
        .list_tokens()?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| OpError::NotFound(format!("token {id}")))?;
    if expected.revoked_at.is_some() {
        return Ok(());
    }
    let mut token = expected.clone();
    token.revoked_at = Some(now);
    ops.audited(
        PeopleWrite::ReviseEnrollmentToken {
            expected: Box::new(expected),
            token: Box::new(token),
        },
        draft(
            actor,
            "enrollment_token.revoke",
            id,
            None,
            Some(json!({"revoked_at": now})),
            None,
        ),
    )?;
    Ok(())
}

/// Revokes an agent (idempotent): its submissions are refused from now on.
pub fn revoke_agent(ops: &Ops, actor: &Actor, id: &str, now: DateTime<Utc>) -> Result<(), OpError> {
    let agent = ops
        .store
        .get_agent(id)?
        .ok_or_else(|| OpError::NotFound(format!("agent {id}")))?;
    if agent.revoked_at.is_some() {
        return Ok(());
    }
    ops.audited(
        PeopleWrite::RevokeAgent(id.to_string()),
        draft(
            actor,
            "agent.revoke",
            id,
            Some(json!({"hostname": agent.facts.hostname, "ci_id": agent.ci_id})),
            Some(json!({"revoked_at": now})),
            None,
        ),
    )?;
    Ok(())
}

/// A user as listed: never the password hash.
pub fn user_view(u: &User) -> Value {
    json!({"name": u.name, "role": u.role, "created_at": u.created_at, "disabled": u.disabled, "password": u.password_hash.is_some()})
}

/// Adds a person, or changes their role.
pub fn put_user(
    ops: &Ops,
    actor: &Actor,
    name: &str,
    role: Role,
    now: DateTime<Utc>,
) -> Result<User, OpError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if !valid {
        return Err(OpError::invalid(
            "user names are 1-64 characters of letters, digits and . _ - @",
        ));
    }
    let before = ops.store.get_user(name)?;
    let user = User {
        name: name.to_string(),
        role,
        created_at: before.as_ref().map(|u| u.created_at).unwrap_or(now),
        disabled: false,
        password_hash: before.as_ref().and_then(|u| u.password_hash.clone()),
    };
    let action = if before.is_some() {
        "user.update"
    } else {
        "user.create"
    };
    ops.audited(
        PeopleWrite::PutUser(user.clone()),
        draft(
            actor,
            action,
            name,
            before.map(|u| user_view(&u)),
            Some(user_view(&user)),
            None,
        ),
    )?;
    Ok(user)
}

/// Removes a person and revokes their API tokens (sessions included) in one audited
/// write. Their past actions stay in the audit chain under their name.
pub fn delete_user(
    ops: &Ops,
    actor: &Actor,
    name: &str,
    now: DateTime<Utc>,
) -> Result<(), OpError> {
    let user = ops
        .store
        .get_user(name)?
        .ok_or_else(|| OpError::NotFound(format!("user {name}")))?;
    let revoked_tokens: Vec<ApiToken> = ops
        .store
        .list_api_tokens()?
        .into_iter()
        .filter(|t| t.user == name && t.revoked_at.is_none())
        .map(|mut t| {
            t.revoked_at = Some(now);
            t
        })
        .collect();
    let revoked: Vec<&str> = revoked_tokens.iter().map(|t| t.id.as_str()).collect();
    let after = json!({"deleted": true, "revoked_tokens": revoked});
    ops.audited(
        PeopleWrite::DeleteUser {
            name: name.to_string(),
            revoked_tokens: revoked_tokens.clone(),
        },
        draft(
            actor,
            "user.delete",
            name,
            Some(user_view(&user)),
            Some(after),
            None,
        ),
    )?;
    Ok(())
}

/// Sets a person's password for login (Argon2id).
pub fn set_password(ops: &Ops, actor: &Actor, name: &str, password: &str) -> Result<(), OpError> {
    let mut user = ops
        .store
        .get_user(name)?
        .ok_or_else(|| OpError::NotFound(format!("user {name}")))?;
    user.password_hash =
        Some(super::credentials::hash_password(password).map_err(OpError::invalid)?);
    ops.audited(
        PeopleWrite::PutUser(user),
        draft(actor, "user.password", name, None, None, None),
    )?;
    Ok(())
}

/// A new API token for a person: the record, its text (shown once), and the person.
pub fn create_api_token(
    ops: &Ops,
    actor: &Actor,
    name: &str,
    ttl_seconds: i64,
    now: DateTime<Utc>,
) -> Result<(ApiToken, String, User), OpError> {
    if ttl_seconds <= 0 {
        return Err(OpError::invalid("a token needs a positive TTL"));
    }
    let user = ops.store.get_user(name)?.ok_or_else(|| {
        OpError::NotFound(format!(
            "user {name} (add one with `user add {name} --role ROLE`)"
        ))
    })?;
    let (token, text) =
        super::credentials::new_token(&user.name, Duration::seconds(ttl_seconds), now);
    ops.audited(
        PeopleWrite::PutApiToken(token.clone()),
        draft(
            actor,
            "api_token.create",
            &token.id,
            None,
            Some(json!({"id": token.id, "user": token.user, "expires_at": token.expires_at})),
            None,
        ),
    )?;
    Ok((token, text, user))
}

/// Revokes a person's API token (idempotent).
pub fn revoke_api_token(
    ops: &Ops,
    actor: &Actor,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), OpError> {
    let mut token = ops
        .store
        .find_api_token(id)?
        .ok_or_else(|| OpError::NotFound(format!("API token {id}")))?;
    if token.revoked_at.is_some() {
        return Ok(());
    }
    token.revoked_at = Some(now);
    ops.audited(
        PeopleWrite::PutApiToken(token),
        draft(
            actor,
            "api_token.revoke",
            id,
            None,
            Some(json!({"revoked_at": now})),
            None,
        ),
    )?;
    Ok(())
}

/// Closes an identity conflict with a person's decision.
pub fn resolve_conflict(
    ops: &Ops,
    actor: &Actor,
    id: &str,
    resolution: ConflictResolution,
) -> Result<(), OpError> {
    let conflict = ops
        .store
        .list_conflicts()?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| OpError::NotFound(format!("identity conflict {id}")))?;
    let revoke_agent = (resolution == ConflictResolution::ClaimingAgentRevoked)
        .then(|| conflict.claiming_agent.clone());
    ops.audited(
        PeopleWrite::ResolveConflict {
            id: id.to_string(),
            resolution: resolution.as_str().into(),
            revoke_agent: revoke_agent.clone(),
        },
        draft(
            actor,
            "identity_conflict.resolve",
            id,
            Some(
                json!({"rule": conflict.rule, "existing_ci": conflict.existing_ci, "claiming_agent": conflict.claiming_agent}),
            ),
            Some(json!({"resolution": resolution.as_str(), "revoked_agent": revoke_agent})),
            None,
        ),
    )?;
    Ok(())
}

/// A consistent backup of the store into `to` (absolute; written 0600 beside it, then
/// renamed into place).
pub fn backup_to(ops: &Ops, to: &Path) -> Result<(BackupSummary, u64), OpError> {
    if !to.is_absolute() {
        return Err(OpError::invalid("backup --to needs an absolute path"));
    }
    let tmp = to.with_extension("partial");
    let mut file = {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        o.open(&tmp).map_err(|e| OpError::Invalid {
            field: None,
            message: format!("{}: {e}", tmp.display()),
        })?
    };
    let summary = ops.store.backup(&mut file)?;
    file.sync_all()
        .and_then(|_| std::fs::rename(&tmp, to))
        .map_err(|e| OpError::Invalid {
            field: None,
            message: format!("{}: {e}", to.display()),
        })?;
    let bytes = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
    Ok((summary, bytes))
}
