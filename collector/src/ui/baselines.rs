//! The baselines pages: every baseline with its last recorded day, and one baseline's
//! compliance now (counts per rule, the hosts failing first with each rule's verdict and
//! evidence, the trend, CSV). Baselines are written through the API and CLI.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::Extension;
use chrono::Utc;
use serde::Deserialize;

use super::chart;
use super::pages::{params, segment};
use super::{render, Chrome, UiResult};
use crate::baselines_api::verdict_text;
use crate::http::AppState;
use crate::model::baseline::{Baseline, Verdict};
use crate::ops::baselines as op;
use crate::people::Person;
use crate::ui::session::Session;

/// Hosts one page lists.
const LISTED: usize = 200;

pub struct BaselineRow {
    pub href: String,
    pub name: String,
    pub applies_to: String,
    pub rules: usize,
    pub last: String,
}

#[derive(Template)]
#[template(path = "baselines.html")]
struct BaselinesPage {
    chrome: Chrome,
    rows: Vec<BaselineRow>,
}

pub struct RuleRow {
    pub rule: String,
    pub pass: usize,
    pub fail: usize,
    pub unknown: usize,
}

pub struct HostRow {
    pub href: String,
    pub name: String,
    pub verdict: &'static str,
    /// (verdict, evidence) per rule.
    pub cells: Vec<(&'static str, String)>,
}

#[derive(Template)]
#[template(path = "baseline.html")]
struct BaselinePage {
    chrome: Chrome,
    id: String,
    name: String,
    description: String,
    applies_to: String,
    version: u64,
    hosts_total: usize,
    pass: usize,
    fail: usize,
    unknown: usize,
    rules: Vec<RuleRow>,
    hosts: Vec<HostRow>,
    listed_all: bool,
    verdict: String,
    trend_svg: String,
}

pub async fn list(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
) -> UiResult {
    let (baselines, trend) = st
        .run(&person, |ops, _| {
            Ok((ops.store.list_baselines()?, ops.store.compliance_trend()?))
        })
        .await?;
    let rows = baselines
        .iter()
        .map(|b: &Baseline| BaselineRow {
            href: format!("/ui/baselines/{}", segment(&b.id)),
            name: b.name.clone(),
            applies_to: if b.applies_to.is_empty() {
                "every computer".into()
            } else {
                b.applies_to.clone()
            },
            rules: b.rules.len(),
            last: trend
                .iter()
                .rev()
                .find(|p| p.baseline == b.id)
                .map(|p| {
                    format!(
                        "{}: {} pass, {} fail, {} unknown of {}",
                        p.day, p.pass, p.fail, p.unknown, p.hosts
                    )
                })
                .unwrap_or_else(|| "not recorded yet".into()),
        })
        .collect();
    render(&BaselinesPage {
        chrome: Chrome::new(&person, &session, "/ui/baselines"),
        rows,
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct BaselineQuery {
    verdict: Option<Verdict>,
}

pub async fn show(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> UiResult {
    let p: BaselineQuery = params(q)?;
    let verdict = p.verdict;
    let (b, report, trend) = st
        .run(&person, move |ops, _| {
            let b = op::find(ops, &id)?;
            let report = op::report(ops, &id, verdict, Some(LISTED), Utc::now())?;
            Ok((b, report, op::trend(ops, &id)?))
        })
        .await?;
    let shown = match verdict {
        Some(Verdict::Pass) => report.pass,
        Some(Verdict::Fail) => report.fail,
        Some(Verdict::Unknown) => report.unknown,
        None => report.hosts_total,
    };
    render(&BaselinePage {
        chrome: Chrome::new(&person, &session, "/ui/baselines"),
        id: b.id.clone(),
        name: b.name.clone(),
        description: b.description.clone(),
        applies_to: if b.applies_to.is_empty() {
            "every computer".into()
        } else {
            b.applies_to.clone()
        },
        version: b.version,
        hosts_total: report.hosts_total,
        pass: report.pass,
        fail: report.fail,
        unknown: report.unknown,
        listed_all: report.hosts.len() >= shown,
        rules: report
            .rules
            .iter()
            .map(|r| RuleRow {
                rule: r.rule.clone(),
                pass: r.pass,
                fail: r.fail,
                unknown: r.unknown,
            })
            .collect(),
        hosts: report
            .hosts
            .iter()
            .map(|h| HostRow {
                href: format!("/ui/cis/{}", segment(&h.id)),
                name: h.name.clone(),
                verdict: verdict_text(h.verdict),
                cells: h
                    .findings
                    .iter()
                    .map(|f| (verdict_text(f.verdict), f.evidence.clone()))
                    .collect(),
            })
            .collect(),
        verdict: verdict.map(verdict_text).unwrap_or_default().to_string(),
        trend_svg: chart::percent_line_svg(
            "compliance-trend",
            "Hosts passing, per cent",
            &trend
                .iter()
                .rev()
                .take(90)
                .rev()
                .map(|p| {
                    let pct = if p.hosts == 0 {
                        100.0
                    } else {
                        p.pass as f64 * 100.0 / p.hosts as f64
                    };
                    (p.day, pct)
                })
                .collect::<Vec<_>>(),
        ),
    })
}
