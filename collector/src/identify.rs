//! Identification: which computer CI a snapshot describes.
//!
//! Rules, in order: hardware serial (+ vendor), system UUID, machine-id, the set of physical
//! MACs, then FQDN/hostname. Placeholders never identify (checked again here: the collector
//! does not trust an agent to have filtered them). An agent already linked to a CI stays
//! linked; a new agent is linked to an existing CI only when the match is not contradicted
//! by other hardware evidence (a reimaged machine); contradicted hardware matches (a cloned
//! VM template) get their own CI and raise one identity conflict for a person.

use census_shared::identity::{is_placeholder, is_placeholder_mac};
use census_shared::Snapshot;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::*;
use crate::store::{IdentityKey, Store, StoreError};

const HARDWARE_RULES: &[&str] = &["serial", "system_uuid", "machine_id", "mac_set"];

/// The id prefix of an import source: the agent record a device another tool inventoried
/// (an OCS or FusionInventory agent's DEVICEID) reports through. It has no private key, so
/// nothing reaches ingest under it but an administrator's import.
pub const IMPORT_AGENT_PREFIX: &str = "imp_";

/// Whether `agent_id` is an import source rather than a Census agent.
pub fn is_import_source(agent_id: &str) -> bool {
    agent_id.starts_with(IMPORT_AGENT_PREFIX)
}
const PLACEHOLDER_HOSTNAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "localhost6",
    "ubuntu",
    "debian",
    "raspberrypi",
];

/// The identification keys a snapshot offers, in rule order.
pub fn identity_keys(snap: &Snapshot) -> Vec<IdentityKey> {
    let mut keys = Vec::new();
    if let Some(s) = snap.system.data() {
        if let Some(serial) = s.serial.as_deref().filter(|v| !is_placeholder(v)) {
            let vendor = s
                .vendor
                .as_deref()
                .filter(|v| !is_placeholder(v))
                .unwrap_or("")
                .trim()
                .to_lowercase();
            keys.push(IdentityKey {
                rule: "serial",
                value: format!("{vendor}|{}", serial.trim()),
            });
        }
        if let Some(uuid) = s.uuid.as_deref().filter(|v| !is_placeholder(v)) {
            keys.push(IdentityKey {
                rule: "system_uuid",
                value: uuid.trim().to_lowercase(),
            });
        }
        if let Some(mid) = s.machine_id.as_deref().filter(|v| !is_placeholder(v)) {
            keys.push(IdentityKey {
                rule: "machine_id",
                value: mid.trim().to_lowercase(),
            });
        }
    }
    if let Some(nics) = snap.network_interfaces.data() {
        let mut macs: Vec<String> = nics
            .iter()
            .filter(|n| n.physical)
            .filter_map(|n| n.mac.as_deref())
            .filter(|m| !is_placeholder_mac(m))
            .map(|m| m.to_lowercase())
            .collect();
        macs.sort();
        macs.dedup();
        if !macs.is_empty() {
            keys.push(IdentityKey {
                rule: "mac_set",
                value: macs.join(","),
            });
        }
    }
    if let Some(os) = snap.os.data() {
        let name = os
            .fqdn
            .clone()
            .filter(|f| f.contains('.'))
            .unwrap_or_else(|| os.hostname.clone())
            .trim()
            .to_lowercase();
        if !name.is_empty()
            && !PLACEHOLDER_HOSTNAMES.contains(&name.as_str())
            && !is_placeholder(&name)
        {
            keys.push(IdentityKey {
                rule: "hostname",
                value: name,
            });
        }
    }
    keys
}

/// How a snapshot was identified.
#[derive(Debug, Clone)]
pub struct Identification {
    pub ci_id: String,
    pub evidence: IdentificationEvidence,
    pub claims: Vec<(IdentityKey, String)>,
    pub conflict: Option<IdentityConflict>,
    pub supersedes: Option<String>,
}

fn conflict_id(existing_ci: &str, claiming_agent: &str) -> String {
    let h = Sha256::digest(format!("{existing_ci}\0{claiming_agent}").as_bytes());
    format!("idc_{}", &hex::encode(h)[..20])
}

pub fn new_computer_id() -> String {
    let bytes: [u8; 10] = rand::random();
    format!("cmp_{}", hex::encode(bytes))
}

/// True when the snapshot's hardware says it is not the machine `ci` describes: a serial or
/// UUID that differs, or MAC sets with nothing in common.
fn contradicts(ci: &Ci, snap: &Snapshot) -> bool {
    let stored = |k: &str| {
        ci.attributes
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_lowercase)
    };
    if let Some(s) = snap.system.data() {
        let differs = |k: &str, v: &Option<String>| match (
            stored(k),
            v.as_deref().filter(|x| !is_placeholder(x)),
        ) {
            (Some(a), Some(b)) => a != b.to_lowercase(),
            _ => false,
        };
        if differs("system.serial", &s.serial) || differs("system.uuid", &s.uuid) {
            return true;
        }
    }
    let stored_macs: Vec<String> = ci
        .attributes
        .get("network.physical_macs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_lowercase)
                .collect()
        })
        .unwrap_or_default();
    if let Some(nics) = snap.network_interfaces.data() {
        let macs: Vec<String> = nics
            .iter()
            .filter(|n| n.physical)
            .filter_map(|n| n.mac.clone())
            .map(|m| m.to_lowercase())
            .collect();
        if !stored_macs.is_empty()
            && !macs.is_empty()
            && !macs.iter().any(|m| stored_macs.contains(m))
        {
            return true;
        }
    }
    false
}

/// The agent that currently reports for a computer CI.
pub fn owning_agent(ci: &Ci) -> Option<String> {
    ci.volatile
        .get("agent.id")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Keys this CI may claim, and the first hardware key another CI already holds.
type Claims = (Vec<(IdentityKey, String)>, Option<(IdentityKey, String)>);

fn claims_for(store: &dyn Store, keys: &[IdentityKey], ci_id: &str) -> Result<Claims, StoreError> {
    let mut claims = Vec::new();
    let mut taken = None;
    // One read for all of them (a round trip each on a shared database).
    for (k, held) in keys.iter().zip(store.lookup_identities(keys)?) {
        match held {
            None => claims.push((k.clone(), ci_id.to_string())),
            Some(existing) if existing == ci_id => {}
            Some(other) => {
                if taken.is_none() && HARDWARE_RULES.contains(&k.rule) {
                    taken = Some((k.clone(), other));
                }
            }
        }
    }
    Ok((claims, taken))
}

fn conflict(
    key: &IdentityKey,
    existing_ci: &str,
    existing_agent: Option<String>,
    agent: &Agent,
    claiming_ci: Option<String>,
    now: DateTime<Utc>,
) -> IdentityConflict {
    IdentityConflict {
        id: conflict_id(existing_ci, &agent.id),
        raised_at: now,
        rule: key.rule.to_string(),
        value: key.value.clone(),
        existing_ci: existing_ci.to_string(),
        existing_agent,
        claiming_agent: agent.id.clone(),
        claiming_ci,
        resolved_at: None,
        resolution: None,
    }
}

/// Decides the CI for `agent`'s snapshot.
pub fn identify(
    store: &dyn Store,
    agent: &Agent,
    snap: &Snapshot,
    now: DateTime<Utc>,
) -> Result<Identification, StoreError> {
    let keys = identity_keys(snap);

    // Already linked: stay put; a hardware key held by another CI is a conflict to review.
    if let Some(ci_id) = &agent.ci_id {
        let (claims, taken) = claims_for(store, &keys, ci_id)?;
        let conflict = match taken {
            Some((k, other)) => {
                let other_agent = store.get_ci(&other)?.and_then(|c| owning_agent(&c));
                Some(conflict(
                    &k,
                    &other,
                    other_agent,
                    agent,
                    Some(ci_id.clone()),
                    now,
                ))
            }
            None => None,
        };
        let evidence = agent
            .identification
            .clone()
            .unwrap_or(IdentificationEvidence {
                rule: "agent".into(),
                value: agent.id.clone(),
                at: now,
            });
        return Ok(Identification {
            ci_id: ci_id.clone(),
            evidence,
            claims,
            conflict,
            supersedes: None,
        });
    }

    let held = store.lookup_identities(&keys)?;
    for (key, existing_id) in keys.iter().zip(held) {
        let Some(existing_id) = existing_id else {
            continue;
        };
        let Some(existing) = store.get_ci(&existing_id)? else {
            continue;
        };
        let owner = owning_agent(&existing).filter(|o| o != &agent.id);
        let owner_live = match &owner {
            Some(o) => store
                .get_agent(o)?
                .is_some_and(|a| !a.is_revoked() && a.superseded_by.is_none()),
            None => false,
        };
        let hardware = HARDWARE_RULES.contains(&key.rule);
        let evidence = IdentificationEvidence {
            rule: key.rule.to_string(),
            value: key.value.clone(),
            at: now,
        };
        // Imported data stands below a Census agent's: an agent takes over a computer an
        // import source reports for on any key (the import's MACs or name may be all that
        // matches: other agents call other interfaces physical).
        let over_import =
            owner.as_deref().is_some_and(is_import_source) && !is_import_source(&agent.id);
        if !owner_live || over_import || (hardware && !contradicts(&existing, snap)) {
            // A machine that lost its agent state (reimage) or whose old agent was revoked.
            let (claims, _) = claims_for(store, &keys, &existing_id)?;
            return Ok(Identification {
                ci_id: existing_id,
                evidence,
                claims,
                conflict: None,
                supersedes: owner.filter(|_| owner_live),
            });
        }
        // Another live agent reports this identity and the hardware disagrees: a clone.
        let ci_id = new_computer_id();
        let (claims, _) = claims_for(store, &keys, &ci_id)?;
        let conflict = hardware.then(|| {
            conflict(
                key,
                &existing_id,
                owner.clone(),
                agent,
                Some(ci_id.clone()),
                now,
            )
        });
        let evidence = IdentificationEvidence {
            rule: "new".into(),
            value: format!("{} matched {existing_id}, owned by a live agent", key.rule),
            at: now,
        };
        return Ok(Identification {
            ci_id,
            evidence,
            claims,
            conflict,
            supersedes: None,
        });
    }

    // A machine people recorded before it was discovered (ordered, in stock), by the
    // serial they gave; only a record no agent has reported yet is taken this way.
    if let Some(serial) = snap
        .system
        .data()
        .and_then(|s| s.serial.as_deref())
        .filter(|v| !is_placeholder(v))
    {
        let key = crate::store::register_serial_key(serial);
        if let Some(recorded) = store.lookup_identity(&key)? {
            if store
                .get_ci(&recorded)?
                .is_some_and(|c| c.sources.is_empty() && c.class == CiClass::Computer)
            {
                let (claims, _) = claims_for(store, &keys, &recorded)?;
                return Ok(Identification {
                    ci_id: recorded,
                    evidence: IdentificationEvidence {
                        rule: key.rule.to_string(),
                        value: key.value,
                        at: now,
                    },
                    claims,
                    conflict: None,
                    supersedes: None,
                });
            }
        }
    }

    let ci_id = new_computer_id();
    let (claims, _) = claims_for(store, &keys, &ci_id)?;
    Ok(Identification {
        ci_id,
        evidence: IdentificationEvidence {
            rule: "new".into(),
            value: "no identification rule matched".into(),
            at: now,
        },
        claims,
        conflict: None,
        supersedes: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use census_shared::*;

    #[test]
    fn keys_skip_placeholders_in_rule_order() {
        let mut s = Snapshot::empty("a", 1, Utc::now());
        s.system = Section::collected(System {
            vendor: Some("Dell Inc.".into()),
            serial: Some("To Be Filled By O.E.M.".into()),
            uuid: Some("03000200-0400-0500-0006-000700080009".into()),
            machine_id: Some("3d1219c7c4c5404aaa1f6d2a48adfda4".into()),
            ..Default::default()
        });
        s.network_interfaces = Section::collected(vec![
            NetworkInterface {
                name: "eth1".into(),
                mac: Some("52:54:00:00:00:02".into()),
                physical: true,
                ..Default::default()
            },
            NetworkInterface {
                name: "eth0".into(),
                mac: Some("52:54:00:00:00:01".into()),
                physical: true,
                ..Default::default()
            },
            NetworkInterface {
                name: "docker0".into(),
                mac: Some("02:42:ac:11:00:01".into()),
                physical: false,
                ..Default::default()
            },
            NetworkInterface {
                name: "ms".into(),
                mac: Some("02:00:4c:4f:4f:50".into()),
                physical: true,
                ..Default::default()
            },
        ]);
        s.os = Section::collected(Os {
            hostname: "localhost".into(),
            ..Default::default()
        });
        let keys = identity_keys(&s);
        let rules: Vec<&str> = keys.iter().map(|k| k.rule).collect();
        assert_eq!(rules, vec!["machine_id", "mac_set"]);
        assert_eq!(keys[1].value, "52:54:00:00:00:01,52:54:00:00:00:02");
    }

    #[test]
    fn serial_is_scoped_by_vendor() {
        let mut s = Snapshot::empty("a", 1, Utc::now());
        s.system = Section::collected(System {
            vendor: Some("LENOVO".into()),
            serial: Some("PF2ABCDE".into()),
            ..Default::default()
        });
        assert_eq!(identity_keys(&s)[0].value, "lenovo|PF2ABCDE");
    }
}
