//! Software title rules: the draft people edit (validated, audited) and its replay over the
//! CMDB, which previews what changes and, unless dry, makes the draft the applied set. The
//! titling is `query::titles`.

use chrono::Utc;

use super::{draft, Actor, OpError, Ops};
use crate::model::titles::{SoftwareRule, SoftwareRuleBook, Titler};
use crate::query::titles::{self, ReplayReport};
use crate::store::PeopleWrite;

pub fn rules(ops: &Ops) -> Result<SoftwareRuleBook, OpError> {
    Ok(titles::rule_book(ops.store.as_ref())?)
}

/// Replaces the draft, audited with before and after; the applied rules stay until a
/// replay.
pub fn put_draft(
    ops: &Ops,
    actor: &Actor,
    rules: Vec<SoftwareRule>,
) -> Result<SoftwareRuleBook, OpError> {
    Titler::compile(&rules).map_err(OpError::invalid)?;
    let stored = ops.store.software_rules()?;
    let before = stored.clone().unwrap_or_default();
    let mut next = before.clone();
    next.draft = rules;
    next.draft_updated_by = Some(actor.name.clone());
    next.draft_updated_at = Some(Utc::now());
    commit(
        ops,
        actor,
        "software_rules.update",
        stored,
        &next,
        (&before.draft, &next.draft),
        None,
    )?;
    Ok(next)
}

/// Writes `next` over the book as it was read (`stored`), audited with the rule lists
/// that changed.
fn commit(
    ops: &Ops,
    actor: &Actor,
    action: &str,
    stored: Option<SoftwareRuleBook>,
    next: &SoftwareRuleBook,
    (before, after): (&Vec<SoftwareRule>, &Vec<SoftwareRule>),
    comment: Option<String>,
) -> Result<(), OpError> {
    ops.audited(
        PeopleWrite::PutSoftwareRules {
            expected: stored.map(Box::new),
            book: Box::new(next.clone()),
        },
        draft(
            actor,
            action,
            "software_rules",
            serde_json::to_value(before).ok(),
            serde_json::to_value(after).ok(),
            comment,
        ),
    )?;
    Ok(())
}

/// Evaluates the draft over every product (progress: products done, total); unless
/// `dry_run`, then makes it the applied set, audited with the counts. Refused as a conflict
/// when the rules changed while it ran.
pub fn replay(
    ops: &Ops,
    actor: &Actor,
    dry_run: bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ReplayReport, OpError> {
    let stored = ops.store.software_rules()?;
    let book = stored.clone().unwrap_or_default();
    let titler = Titler::compile(&book.draft).map_err(OpError::invalid)?;
    let mut report = titles::replay(ops.store.as_ref(), &titler, book.draft.len(), progress)?;
    report.version = book.version;
    if dry_run {
        return Ok(report);
    }
    report.dry_run = false;
    let mut next = book.clone();
    next.applied = book.draft.clone();
    next.version = book.version + 1;
    next.applied_by = Some(actor.name.clone());
    next.applied_at = Some(Utc::now());
    commit(
        ops,
        actor,
        "software_rules.replay",
        stored,
        &next,
        (&book.applied, &next.applied),
        Some(format!(
            "{} products, {} titles changed, {} titles before and {} after",
            report.products, report.changed, report.titles_before, report.titles_after
        )),
    )?;
    report.version = next.version;
    Ok(report)
}
