//! People's operations on drift: reviewing change records, planned changes, noise and
//! severity rules, webhooks and their deliveries. Each validates, writes with its audit
//! entry through [`Ops::audited`], and returns what it wrote. Blocking.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::*;

/// Applies a review to a record: the whole record, or some items (the record is decided
/// once every item that counts is).
pub fn apply_review(
    record: &ChangeRecord,
    decision: Decision,
    items: Option<&[usize]>,
    review: Review,
) -> Result<ChangeRecord, String> {
    if record.state != RecordState::Open {
        let by = record
            .review
            .as_ref()
            .map(|r| format!(" by {} at {}", r.by, r.at))
            .unwrap_or_default();
        // The reviewer's name and the record id keep their case.
        return Err(format!(
            "state: change record {} is already {}{by}; reviews are final",
            record.id,
            record.state.as_str()
        ));
    }
    let mut next = record.clone();
    match items {
        None => {
            for item in next.items.iter_mut().filter(|i| i.review.is_none()) {
                item.review = Some(review.clone());
            }
            next.state = match decision {
                Decision::Accepted => RecordState::Accepted,
                Decision::Rejected => RecordState::Rejected,
            };
            next.review = Some(review);
        }
        Some(indexes) => {
            if indexes.is_empty() {
                return Err("items: list at least one item index, or omit items".into());
            }
            for &i in indexes {
                let Some(item) = next.items.get_mut(i) else {
                    return Err(format!(
                        "items: index {i} is out of range (the record has {} items)",
                        record.items.len()
                    ));
                };
                if item.review.is_some() {
                    return Err(format!("items: item {i} is already reviewed"));
                }
                item.review = Some(review.clone());
            }
            let counted: Vec<&ChangeItem> = next
                .items
                .iter()
                .filter(|i| i.suppressed.is_none())
                .collect();
            if counted.iter().all(|i| i.review.is_some()) {
                let all_accepted = counted.iter().all(|i| {
                    i.review
                        .as_ref()
                        .is_some_and(|r| r.decision == Decision::Accepted)
                });
                next.state = if all_accepted {
                    RecordState::Accepted
                } else {
                    RecordState::Rejected
                };
                next.review = Some(Review {
                    decision: if all_accepted {
                        Decision::Accepted
                    } else {
                        Decision::Rejected
                    },
                    ..review
                });
            }
        }
    }
    Ok(next)
}

fn review_summary(r: &ChangeRecord) -> Value {
    json!({
        "state": r.state,
        "items": r.items.iter().map(|i| i.review.as_ref().map(|r| r.decision)).collect::<Vec<_>>(),
    })
}

/// Decides a change record or some of its items, audited. A record already decided, or
/// decided by another reviewer meanwhile, is a conflict.
pub fn review(
    ops: &Ops,
    actor: &Actor,
    id: &str,
    decision: Decision,
    items: Option<Vec<usize>>,
    comment: &str,
) -> Result<ChangeRecord, OpError> {
    let comment = comment.trim().to_string();
    if comment.is_empty() || comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(OpError::invalid(format!(
            "comment: a review needs a comment of 1 to {MAX_COMMENT_CHARS} characters"
        )));
    }
    let Some(record) = ops.store.get_change_record(id)? else {
        return Err(OpError::NotFound(format!("change record {id}")));
    };
    let review = Review {
        decision,
        by: actor.name.clone(),
        at: Utc::now(),
        comment: comment.clone(),
    };
    let next = apply_review(&record, decision, items.as_deref(), review).map_err(|e| {
        if e.starts_with("state:") || e.contains("already reviewed") {
            OpError::Conflict(e)
        } else {
            OpError::invalid(e)
        }
    })?;
    ops.audited(
        PeopleWrite::ReviseRecord {
            expected: Box::new(record.clone()),
            record: Box::new(next.clone()),
            event_type: "change_record.reviewed",
        },
        draft(
            actor,
            "change_record.review",
            id,
            Some(review_summary(&record)),
            Some(review_summary(&next)),
            Some(comment),
        ),
    )?;
    Ok(next)
}

/// Most tickets one planned change or change record holds.
pub const MAX_TICKETS: usize = 20;
/// Longest ticket number.
pub const MAX_TICKET_ID_CHARS: usize = 100;

/// Checks a list of ticket references (each number trimmed): at most [`MAX_TICKETS`],
/// numbers of 1 to [`MAX_TICKET_ID_CHARS`] characters without control characters, each
/// once, addresses http or https. Errors name the entry (`tickets[1].url: ...`).
pub fn checked_tickets(tickets: Vec<TicketRef>) -> Result<Vec<TicketRef>, OpError> {
    if tickets.len() > MAX_TICKETS {
        return Err(OpError::invalid(format!(
            "tickets: at most {MAX_TICKETS} tickets"
        )));
    }
    let mut out: Vec<TicketRef> = Vec::with_capacity(tickets.len());
    for (i, t) in tickets.into_iter().enumerate() {
        let id = t.id.trim().to_string();
        if id.is_empty() || id.chars().count() > MAX_TICKET_ID_CHARS {
            return Err(OpError::invalid(format!(
                "tickets[{i}].id: a ticket number has 1 to {MAX_TICKET_ID_CHARS} characters"
            )));
        }
        if id.chars().any(char::is_control) {
            return Err(OpError::invalid(format!(
                "tickets[{i}].id: control characters are not allowed"
            )));
        }
        if out.iter().any(|held| held.id == id) {
            return Err(OpError::invalid(format!(
                "tickets[{i}].id: {id} is listed twice"
            )));
        }
        let url = match t.url {
            Some(u) => {
                let refused = |why: &str| OpError::invalid(format!("tickets[{i}].url: {why}"));
                // Read as written: the URL parser would forgive white space, missing or
                // extra slashes, and a link would then not be what was stored.
                if u.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(refused("white space or control characters"));
                }
                let head = u.get(..8).unwrap_or(&u).to_ascii_lowercase();
                if !head.starts_with("http://") && !head.starts_with("https://") {
                    return Err(refused("starts with http:// or https://"));
                }
                http_url(&u).map_err(|e| refused(&e))?;
                let authority = u
                    .split_once("://")
                    .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or_default())
                    .unwrap_or_default();
                if authority.is_empty() {
                    return Err(refused("needs a host"));
                }
                // A link people click and webhooks carry must not hold a password: no
                // user part at all, even an empty one (`https://@host`).
                if authority.contains('@') {
                    return Err(refused("must not carry credentials"));
                }
                Some(u)
            }
            None => None,
        };
        out.push(TicketRef { id, url });
    }
    Ok(out)
}

/// Links a change record to ITSM tickets (the list replaces the one it had), audited and
/// queued on the feed as `change_record.tickets_changed`. Any state: tickets are often
/// linked after a record is decided.
pub fn set_record_tickets(
    ops: &Ops,
    actor: &Actor,
    id: &str,
    tickets: Vec<TicketRef>,
) -> Result<ChangeRecord, OpError> {
    let tickets = checked_tickets(tickets)?;
    let Some(record) = ops.store.get_change_record(id)? else {
        return Err(OpError::NotFound(format!("change record {id}")));
    };
    if record.tickets == tickets {
        return Ok(record);
    }
    let next = ChangeRecord {
        tickets,
        ..record.clone()
    };
    ops.audited(
        PeopleWrite::ReviseRecord {
            expected: Box::new(record.clone()),
            record: Box::new(next.clone()),
            event_type: "change_record.tickets_changed",
        },
        draft(
            actor,
            "change_record.tickets",
            id,
            serde_json::to_value(&record.tickets).ok(),
            serde_json::to_value(&next.tickets).ok(),
            None,
        ),
    )?;
    Ok(next)
}

/// What a planned change says: what may change, where, when.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlannedRequest {
    /// 1 to 500 characters, not only white space.
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub title: String,
    pub scope: PlanScope,
    pub allowed: Vec<ItemPattern>,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// The ITSM tickets that requested the change (at most 20).
    #[serde(default)]
    pub tickets: Vec<TicketRef>,
}

pub fn find_planned(ops: &Ops, id: &str) -> Result<PlannedChange, OpError> {
    ops.store
        .list_planned_changes()?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| OpError::NotFound(format!("planned change {id}")))
}

/// Stores a new, validated planned change, audited.
pub fn create_planned(
    ops: &Ops,
    actor: &Actor,
    req: PlannedRequest,
) -> Result<PlannedChange, OpError> {
    let now = Utc::now();
    let p = PlannedChange {
        id: new_id("pln"),
        title: req.title,
        scope: req.scope,
        allowed: req.allowed,
        window_start: req.window_start,
        window_end: req.window_end,
        tickets: checked_tickets(req.tickets)?,
        state: PlannedState::Active,
        created_by: actor.name.clone(),
        created_at: now,
        updated_at: now,
    };
    p.validate().map_err(OpError::invalid)?;
    save_planned(ops, actor, "planned_change.create", None, p)
}

/// Writes a planned change with its audit entry (before and after).
fn save_planned(
    ops: &Ops,
    actor: &Actor,
    action: &str,
    before: Option<&PlannedChange>,
    p: PlannedChange,
) -> Result<PlannedChange, OpError> {
    let before = before.and_then(|b| serde_json::to_value(b).ok());
    let after = serde_json::to_value(&p).ok();
    let id = p.id.clone();
    ops.audited(
        PeopleWrite::PutPlannedChange(p.clone()),
        draft(actor, action, &id, before, after, None),
    )?;
    Ok(p)
}

/// Replaces what an active planned change says, audited with before and after.
pub fn update_planned(
    ops: &Ops,
    actor: &Actor,
    id: &str,
    req: PlannedRequest,
) -> Result<PlannedChange, OpError> {
    let before = find_planned(ops, id)?;
    if before.state == PlannedState::Cancelled {
        return Err(OpError::Conflict(format!(
            "planned change {id} is cancelled; create a new one"
        )));
    }
    let p = PlannedChange {
        title: req.title,
        scope: req.scope,
        allowed: req.allowed,
        window_start: req.window_start,
        window_end: req.window_end,
        tickets: checked_tickets(req.tickets)?,
        updated_at: Utc::now(),
        ..before.clone()
    };
    p.validate().map_err(OpError::invalid)?;
    save_planned(ops, actor, "planned_change.update", Some(&before), p)
}

/// Cancels a planned change (idempotent), audited.
pub fn cancel_planned(ops: &Ops, actor: &Actor, id: &str) -> Result<PlannedChange, OpError> {
    let before = find_planned(ops, id)?;
    let p = PlannedChange {
        state: PlannedState::Cancelled,
        updated_at: Utc::now(),
        ..before.clone()
    };
    save_planned(ops, actor, "planned_change.cancel", Some(&before), p)
}

/// A noise rule as people write it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoiseRequest {
    pub class: CiClass,
    pub pattern: ItemPattern,
    /// Why (at most 4000 characters).
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub note: String,
}

/// A rule about one attribute's changes (`attribute_changed`, a subject without globs)
/// must name an attribute of its class that can drift: resolved against the registry when
/// the rule is made, so a typo is refused instead of silently never matching.
fn check_attribute_subject(class: CiClass, pattern: &ItemPattern) -> Result<(), OpError> {
    let glob = |s: &str| s.contains(['*', '?']);
    if pattern.kind != ItemKind::AttributeChanged.as_str() || glob(&pattern.subject) {
        return Ok(());
    }
    match crate::model::attributes::find(class, &pattern.subject) {
        Some(a) if a.volatile => Err(OpError::Invalid {
            field: Some("pattern.subject".into()),
            message: format!(
                "pattern.subject: {} is volatile: it is updated in place and never raises drift",
                a.path
            ),
        }),
        Some(_) => Ok(()),
        None => {
            let hint = crate::model::attributes::closest(class, &pattern.subject)
                .map(|p| format!(" (did you mean {p}?)"))
                .unwrap_or_default();
            Err(OpError::Invalid {
                field: Some("pattern.subject".into()),
                message: format!(
                    "pattern.subject: '{}' is not an attribute of {}{hint}",
                    pattern.subject,
                    class.as_str()
                ),
            })
        }
    }
}

/// Stores a validated noise rule, audited.
pub fn create_noise_rule(
    ops: &Ops,
    actor: &Actor,
    req: NoiseRequest,
) -> Result<NoiseRule, OpError> {
    req.pattern.validate("pattern").map_err(OpError::invalid)?;
    check_attribute_subject(req.class, &req.pattern)?;
    if req.note.chars().count() > MAX_COMMENT_CHARS {
        return Err(OpError::invalid(format!(
            "note: at most {MAX_COMMENT_CHARS} characters"
        )));
    }
    let rule = NoiseRule {
        id: new_id("noise"),
        class: req.class,
        pattern: req.pattern,
        note: req.note,
        created_by: actor.name.clone(),
        created_at: Utc::now(),
    };
    ops.audited(
        PeopleWrite::PutNoiseRule(rule.clone()),
        draft(
            actor,
            "noise_rule.create",
            &rule.id,
            None,
            serde_json::to_value(&rule).ok(),
            None,
        ),
    )?;
    Ok(rule)
}

/// Deletes a noise rule, audited with what it was.
pub fn delete_noise_rule(ops: &Ops, actor: &Actor, id: &str) -> Result<(), OpError> {
    let before = ops
        .store
        .list_noise_rules()?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| OpError::NotFound(format!("noise rule {id}")))?;
    ops.audited(
        PeopleWrite::DeleteNoiseRule(id.to_string()),
        draft(
            actor,
            "noise_rule.delete",
            id,
            serde_json::to_value(&before).ok(),
            None,
            None,
        ),
    )?;
    Ok(())
}

/// The severity rules in force (the defaults until someone sets them).
pub fn severity_rules(ops: &Ops) -> Result<SeverityRules, OpError> {
    Ok(ops
        .store
        .severity_rules()?
        .unwrap_or_else(|| SeverityRules::defaults(Utc::now())))
}

/// Most severity rules one list may hold.
pub const MAX_SEVERITY_RULES: usize = 1000;

/// Replaces the severity rules, audited with before and after.
pub fn put_severity_rules(
    ops: &Ops,
    actor: &Actor,
    rules: Vec<SeverityRule>,
    default: Severity,
) -> Result<SeverityRules, OpError> {
    if rules.len() > MAX_SEVERITY_RULES {
        return Err(OpError::invalid(format!(
            "rules: at most {MAX_SEVERITY_RULES} rules"
        )));
    }
    for (i, r) in rules.iter().enumerate() {
        r.pattern
            .validate(&format!("rules[{i}].pattern"))
            .map_err(OpError::invalid)?;
        if let Some(c) = r.service_criticality.filter(|c| !(1..=4).contains(c)) {
            return Err(OpError::invalid(format!(
                "rules[{i}].service_criticality: {c} is not a criticality (1, the most critical, to 4)"
            )));
        }
    }
    let before = severity_rules(ops)?;
    let next = SeverityRules {
        rules,
        default,
        updated_by: actor.name.clone(),
        updated_at: Utc::now(),
    };
    ops.audited(
        PeopleWrite::PutSeverityRules(next.clone()),
        draft(
            actor,
            "severity_rules.update",
            "severity_rules",
            serde_json::to_value(&before).ok(),
            serde_json::to_value(&next).ok(),
            None,
        ),
    )?;
    Ok(next)
}

/// A webhook as listed: the secret is shown once, at creation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub active: bool,
}

pub fn view(w: &Webhook) -> WebhookView {
    WebhookView {
        id: w.id.clone(),
        url: w.url.clone(),
        created_by: w.created_by.clone(),
        created_at: w.created_at,
        active: w.active,
    }
}

/// An absolute http or https address with a host, at most 2048 bytes (anything else,
/// `javascript:` included, is refused before it can reach a page as a link).
fn http_url(url: &str) -> Result<reqwest::Url, String> {
    if url.len() > 2048 {
        return Err("at most 2048 bytes".into());
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("scheme {} is not http or https", parsed.scheme()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("needs a host".into());
    }
    Ok(parsed)
}

/// A webhook target: http or https, a host, at most 2048 bytes, no credentials.
pub fn validate_webhook_url(url: &str) -> Result<(), String> {
    let parsed = http_url(url).map_err(|e| format!("url: {e}"))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("url: must not carry credentials; the HMAC signature authenticates".into());
    }
    Ok(())
}

/// Registers a webhook with a fresh HMAC secret (returned: shown once), audited without it.
pub fn add_webhook(ops: &Ops, actor: &Actor, url: String) -> Result<Webhook, OpError> {
    validate_webhook_url(&url).map_err(OpError::invalid)?;
    let w = Webhook {
        id: new_id("whk"),
        url,
        secret: hex::encode(rand::random::<[u8; 32]>()),
        created_by: actor.name.clone(),
        created_at: Utc::now(),
        active: true,
    };
    ops.audited(
        PeopleWrite::PutWebhook(w.clone()),
        draft(
            actor,
            "webhook.create",
            &w.id,
            None,
            serde_json::to_value(view(&w)).ok(),
            None,
        ),
    )?;
    Ok(w)
}

pub fn remove_webhook(ops: &Ops, actor: &Actor, id: &str) -> Result<(), OpError> {
    ops.audited(
        PeopleWrite::DeleteWebhook(id.to_string()),
        draft(actor, "webhook.delete", id, None, None, None),
    )?;
    Ok(())
}

/// Makes a delivery due again at once (a dead letter too), audited.
pub fn retry_delivery(ops: &Ops, actor: &Actor, id: &str) -> Result<Delivery, OpError> {
    let Some(before) = ops
        .store
        .list_deliveries()?
        .into_iter()
        .find(|d| d.id == id)
    else {
        return Err(OpError::NotFound(format!("delivery {id}")));
    };
    let next = Delivery {
        attempts: 0,
        dead_at: None,
        next_attempt_at: Utc::now(),
        ..before.clone()
    };
    ops.audited(
        PeopleWrite::Redeliver(next.clone()),
        draft(
            actor,
            "webhook.redeliver",
            id,
            serde_json::to_value(&before).ok(),
            serde_json::to_value(&next).ok(),
            None,
        ),
    )?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> ChangeRecord {
        let item = |s: &str| ChangeItem {
            kind: ItemKind::SoftwareUpgraded,
            aspect: Aspect::Software,
            key: s.into(),
            subject: s.into(),
            old: None,
            new: None,
            severity: Severity::Low,
            suppressed: None,
            planned_change: None,
            review: None,
        };
        ChangeRecord {
            id: "chg_1".into(),
            ci_id: "cmp_1".into(),
            ci_name: "h".into(),
            agent_id: "a".into(),
            seq: 1,
            detected_at: Utc::now(),
            from_version: 1,
            to_version: 2,
            items: (0..n).map(|i| item(&format!("p{i}"))).collect(),
            severity: Severity::Low,
            authorization: Authorization::Unauthorized,
            planned_changes: vec![],
            state: RecordState::Open,
            review: None,
            tickets: vec![],
            compliance: vec![],
        }
    }

    fn ticket(id: &str, url: Option<&str>) -> TicketRef {
        TicketRef {
            id: id.into(),
            url: url.map(str::to_string),
        }
    }

    #[test]
    fn ticket_references_are_trimmed_and_hostile_ones_refused_naming_the_entry() {
        let ok = checked_tickets(vec![
            ticket(" CHG0012345 ", Some("https://itsm.example/chg/12345")),
            ticket("OPS-7", None),
        ])
        .unwrap();
        assert_eq!(
            ok,
            [
                ticket("CHG0012345", Some("https://itsm.example/chg/12345")),
                ticket("OPS-7", None)
            ]
        );
        let refused = |tickets: Vec<TicketRef>| match checked_tickets(tickets) {
            Err(OpError::Invalid { message, .. }) => message,
            other => panic!("{other:?}"),
        };
        for (tickets, says) in [
            (vec![ticket("", None)], "tickets[0].id"),
            (vec![ticket(&"x".repeat(101), None)], "tickets[0].id"),
            (vec![ticket("A\u{7}B", None)], "control characters"),
            (
                vec![ticket("A", None), ticket("A", None)],
                "tickets[1].id: A is listed twice",
            ),
            (
                vec![ticket("A", Some("javascript:alert(1)"))],
                "tickets[0].url: starts with http:// or https://",
            ),
            (vec![ticket("A", Some("/relative"))], "tickets[0].url"),
            (vec![ticket("A", Some(""))], "tickets[0].url"),
            (
                vec![ticket("A", Some(" https://x.example/1"))],
                "white space",
            ),
            (
                vec![ticket("A", Some("https://\tx.example/1"))],
                "white space",
            ),
            (
                vec![ticket("A", Some("http:x.example"))],
                "starts with http://",
            ),
            (vec![ticket("A", Some("http:///x.example"))], "needs a host"),
            (
                vec![ticket("A", Some("https://me:secret@x.example/1"))],
                "must not carry credentials",
            ),
            (
                vec![ticket("A", Some("https://@x.example/1"))],
                "credentials",
            ),
            (
                vec![ticket(
                    "A",
                    Some(&format!("https://x.example/{}", "a".repeat(2100))),
                )],
                "2048 bytes",
            ),
            (
                (0..21).map(|i| ticket(&i.to_string(), None)).collect(),
                "at most 20",
            ),
        ] {
            let m = refused(tickets);
            assert!(m.contains(says), "{m} should say {says}");
        }
    }

    fn by(d: Decision) -> Review {
        Review {
            decision: d,
            by: "cm".into(),
            at: Utc::now(),
            comment: "c".into(),
        }
    }

    #[test]
    fn whole_record_review_is_final() {
        let r = apply_review(&record(2), Decision::Accepted, None, by(Decision::Accepted)).unwrap();
        assert_eq!(r.state, RecordState::Accepted);
        assert!(r.items.iter().all(|i| i.review.is_some()));
        let again = apply_review(&r, Decision::Rejected, None, by(Decision::Rejected)).unwrap_err();
        assert!(again.starts_with("state:"), "{again}");
    }

    #[test]
    fn item_reviews_decide_the_record_when_all_are_decided() {
        let r = apply_review(
            &record(2),
            Decision::Accepted,
            Some(&[0]),
            by(Decision::Accepted),
        )
        .unwrap();
        assert_eq!(r.state, RecordState::Open);
        assert!(
            apply_review(&r, Decision::Accepted, Some(&[0]), by(Decision::Accepted))
                .unwrap_err()
                .contains("already reviewed")
        );
        assert!(
            apply_review(&r, Decision::Accepted, Some(&[5]), by(Decision::Accepted))
                .unwrap_err()
                .contains("out of range")
        );
        let r = apply_review(&r, Decision::Rejected, Some(&[1]), by(Decision::Rejected)).unwrap();
        assert_eq!(
            r.state,
            RecordState::Rejected,
            "one rejected item rejects the record"
        );
    }

    #[test]
    fn attribute_noise_rules_name_attributes_that_drift() {
        let p = |kind: &str, subject: &str| ItemPattern {
            kind: kind.into(),
            subject: subject.into(),
            new: Default::default(),
            ports: None,
        };
        let ok = |c, k, s| check_attribute_subject(c, &p(k, s)).is_ok();
        assert!(ok(
            CiClass::Computer,
            "attribute_changed",
            "os.kernel_version"
        ));
        assert!(
            ok(CiClass::Computer, "attribute_changed", "os.*"),
            "globs are patterns"
        );
        assert!(
            ok(CiClass::Computer, "software_upgraded", "anything"),
            "not an attribute rule"
        );
        let e = check_attribute_subject(
            CiClass::Computer,
            &p("attribute_changed", "os.kernel_versoin"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("did you mean os.kernel_version?"), "{e}");
        let e = check_attribute_subject(
            CiClass::Computer,
            &p("attribute_changed", "os.uptime_seconds"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("volatile"), "{e}");
    }

    #[test]
    fn webhook_urls() {
        validate_webhook_url("https://hooks.example.com/census").unwrap();
        validate_webhook_url("http://127.0.0.1:9000/x").unwrap();
        assert!(validate_webhook_url("ftp://x/").is_err());
        assert!(validate_webhook_url("https://user:pw@x/").is_err());
        assert!(validate_webhook_url("not a url").is_err());
    }
}
