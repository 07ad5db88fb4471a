//! Drift: the difference between a computer's stored configuration and a reconciled
//! snapshot becomes at most one change record, itemised, with severity, noise and flap
//! suppression, and classified against planned changes.
//!
//! Architecture Invariant: pure. The ingest path hands in the items (`diff`), the rules
//! and the recent removals it read from the store, and commits what comes out in the same
//! transaction as the snapshot.
//!
//! The path of one item: [`diff::diff`] gives it a kind -> severity rules -> noise rules
//! (suppressed `noise:<id>`) -> flap check against recent removals (suppressed `flap`) ->
//! planned changes (`planned_change`). A record is raised when at least one item is not
//! suppressed; it is `authorized` when every such item is planned.

pub mod diff;
pub mod rules;
pub mod view;

use chrono::{DateTime, Duration, Utc};

use crate::model::*;
pub use rules::ScopeSubject;

/// On a new store, stores the shipped severity and noise rules (audited as `census`), so
/// operators see and edit them like their own. Existing rules are never touched.
pub fn seed_defaults(
    store: &dyn crate::store::Store,
    now: DateTime<Utc>,
) -> Result<(), crate::store::PeopleWriteError> {
    use crate::store::{AuditDraft, PeopleWrite};
    if store.severity_rules()?.is_some() {
        return Ok(());
    }
    let seed = |action: &str, target: &str| AuditDraft {
        actor: "census".into(),
        action: action.into(),
        target: target.into(),
        before: None,
        after: None,
        comment: Some("shipped default".into()),
    };
    for rule in rules::default_noise_rules(now) {
        let id = rule.id.clone();
        store.commit_people(
            &PeopleWrite::PutNoiseRule(rule),
            seed("noise_rule.create", &id),
            now,
        )?;
    }
    store.commit_people(
        &PeopleWrite::PutSeverityRules(SeverityRules::defaults(now)),
        seed("severity_rules.update", "severity_rules"),
        now,
    )?;
    Ok(())
}

/// Everything drift classification reads, loaded from the store.
#[derive(Debug, Clone)]
pub struct DriftRules {
    pub noise: Vec<NoiseRule>,
    pub severity: SeverityRules,
    pub planned: Vec<PlannedChange>,
    /// A removal followed by the same thing's return within this window is a flap.
    pub flap_window: Duration,
}

/// The parts of a record that ingest knows before classification.
#[derive(Debug, Clone)]
pub struct RecordHeader {
    pub id: String,
    pub ci_id: String,
    pub ci_name: String,
    pub agent_id: String,
    pub seq: u64,
    pub from_version: u64,
    pub to_version: u64,
}

#[derive(Debug, Default)]
pub struct Evaluation {
    pub record: Option<ChangeRecord>,
    /// Removals to remember for flap suppression.
    pub removals_put: Vec<RecentRemoval>,
    /// Remembered removals to forget (returned, or past the window).
    pub removals_cleared: Vec<(Aspect, String)>,
    /// Items that changed configuration but were all suppressed.
    pub suppressed: usize,
}

pub fn evaluate(
    mut items: Vec<ChangeItem>,
    rules: &DriftRules,
    who: &ScopeSubject,
    recent: &[RecentRemoval],
    header: RecordHeader,
    now: DateTime<Utc>,
) -> Evaluation {
    let mut out = Evaluation::default();
    for r in recent {
        if now - r.removed_at > rules.flap_window {
            out.removals_cleared.push((r.aspect, r.key.clone()));
        }
    }
    for item in items.iter_mut() {
        item.severity = rules.severity.severity_of(item, who.service_criticality);
        if let Some(rule) = rules.noise.iter().find(|r| r.applies_to(item)) {
            item.suppressed = Some(format!("noise:{}", rule.id));
            continue;
        }
        let within = |r: &RecentRemoval| {
            r.aspect == item.aspect && r.key == item.key && now - r.removed_at <= rules.flap_window
        };
        match (&item.old, &item.new) {
            (None, Some(new)) => {
                let returned = recent.iter().find(|r| {
                    !r.appeared
                        && within(r)
                        && rules::flap_identity(&r.value) == rules::flap_identity(new)
                });
                if let Some(r) = returned {
                    item.suppressed = Some("flap".into());
                    out.removals_cleared.push((r.aspect, r.key.clone()));
                    continue;
                }
                if item.aspect == Aspect::Port {
                    out.removals_put.push(RecentRemoval {
                        aspect: item.aspect,
                        key: item.key.clone(),
                        removed_at: now,
                        value: new.clone(),
                        appeared: true,
                    });
                }
            }
            (Some(old), None) => {
                // A port that opened within the window and is gone again: a short-lived
                // process's, raised once when it opened, not again as it closes.
                if recent.iter().any(|r| r.appeared && within(r)) {
                    item.suppressed = Some("flap".into());
                    out.removals_cleared.push((item.aspect, item.key.clone()));
                    continue;
                }
                out.removals_put.push(RecentRemoval {
                    aspect: item.aspect,
                    key: item.key.clone(),
                    removed_at: now,
                    value: old.clone(),
                    appeared: false,
                });
            }
            _ => {}
        }
        item.planned_change = rules
            .planned
            .iter()
            .find(|p| p.authorizes(now, who, item))
            .map(|p| p.id.clone());
    }
    out.removals_cleared.sort();
    out.removals_cleared.dedup();
    let counted: Vec<&ChangeItem> = items.iter().filter(|i| i.suppressed.is_none()).collect();
    out.suppressed = items.len() - counted.len();
    if counted.is_empty() {
        return out;
    }
    let severity = counted
        .iter()
        .map(|i| i.severity)
        .max()
        .unwrap_or(Severity::Low);
    let authorization = if counted.iter().all(|i| i.planned_change.is_some()) {
        Authorization::Authorized
    } else {
        Authorization::Unauthorized
    };
    let mut planned_changes: Vec<String> = counted
        .iter()
        .filter_map(|i| i.planned_change.clone())
        .collect();
    planned_changes.sort();
    planned_changes.dedup();
    let mut tickets: Vec<TicketRef> = Vec::new();
    for p in rules
        .planned
        .iter()
        .filter(|p| planned_changes.contains(&p.id))
    {
        for t in &p.tickets {
            if !tickets.iter().any(|held| held.id == t.id) {
                tickets.push(t.clone());
            }
        }
    }
    out.record = Some(ChangeRecord {
        id: header.id,
        ci_id: header.ci_id,
        ci_name: header.ci_name,
        agent_id: header.agent_id,
        seq: header.seq,
        detected_at: now,
        from_version: header.from_version,
        to_version: header.to_version,
        items,
        severity,
        authorization,
        planned_changes,
        state: RecordState::Open,
        review: None,
        tickets,
        compliance: Vec::new(),
    });
    out
}
