//! Vulnerability pages: the fleet's advisories (most severe first), one advisory with its
//! hosts and the services they run, and one computer's findings. Reads only, through
//! [`crate::vulns::exposure`] as the API does.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::Extension;
use serde::Deserialize;

use super::pages::{affected_rows, not_found, params, segment, AffectedRow};

/// An advisory's page.
fn advisory_href(id: &str) -> String {
    format!("/ui/vulns/{}", segment(id))
}

/// A date as a table cell shows it (empty when unknown).
fn day(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}
use super::{render, Chrome, UiResult};
use crate::http::{blocking, AppState};
use crate::model::vuln::Level;
use crate::people::Person;
use crate::ui::session::Session;
use crate::vulns::exposure;

/// Most advisories the fleet page lists.
const LISTED: usize = 500;
/// Hosts an advisory's page lists at a time.
const HOSTS_LISTED: usize = 100;

pub struct AdvisoryRow {
    pub href: String,
    pub id: String,
    pub aliases: String,
    pub level: String,
    pub score: String,
    pub hosts: usize,
    pub packages: String,
    pub summary: String,
}

#[derive(Template)]
#[template(path = "vulns.html")]
struct FleetPage {
    chrome: Chrome,
    held: usize,
    checked: usize,
    exposed: usize,
    exposures: usize,
    shown: usize,
    total: usize,
    level: String,
    /// The product the list is narrowed to (empty: all).
    product: String,
    rows: Vec<AdvisoryRow>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetQuery {
    level: Option<Level>,
    product: Option<String>,
}

fn level_text(level: Option<Level>) -> String {
    level.map(|l| l.as_str().to_string()).unwrap_or_default()
}

fn score_text(score: Option<f64>) -> String {
    score.map(|s| format!("{s:.1}")).unwrap_or_default()
}

pub async fn fleet(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
    RawQuery(q): RawQuery,
) -> UiResult {
    let q: FleetQuery = params(q)?;
    let store = st.store.clone();
    let report = blocking(move || exposure::fleet_report(store.as_ref()))
        .await?
        .narrowed(q.level, q.product.as_deref().filter(|p| !p.is_empty()));
    let total = report.advisories.len();
    let rows: Vec<AdvisoryRow> = report
        .advisories
        .into_iter()
        .take(LISTED)
        .map(|a| AdvisoryRow {
            href: advisory_href(&a.id),
            id: a.id,
            aliases: a.aliases.join(", "),
            level: level_text(a.level),
            score: score_text(a.score),
            hosts: a.hosts,
            packages: a.packages.join(", "),
            summary: a.summary,
        })
        .collect();
    render(&FleetPage {
        chrome: Chrome::new(&person, &session, "/ui/vulns"),
        held: report.advisories_held,
        checked: report.computers_checked,
        exposed: report.computers_exposed,
        exposures: report.exposures,
        shown: rows.len(),
        total,
        level: level_text(q.level),
        product: q.product.unwrap_or_default(),
        rows,
    })
}

pub struct AffectedEntry {
    pub ecosystem: String,
    pub package: String,
    pub fixed: String,
}

pub struct HostRow {
    pub href: String,
    pub name: String,
    pub package: String,
    pub version: String,
    pub fixed: String,
    pub detected: String,
}

#[derive(Template)]
#[template(path = "vuln.html")]
struct AdvisoryPage {
    chrome: Chrome,
    id: String,
    aliases: String,
    level: String,
    score: String,
    rated_from: String,
    summary: String,
    modified: String,
    entries: Vec<AffectedEntry>,
    hosts_total: usize,
    hosts: Vec<HostRow>,
    next_href: Option<String>,
    services: Vec<AffectedRow>,
}

#[derive(Debug, Default, Deserialize)]
pub struct AdvisoryQuery {
    after: Option<String>,
}

pub async fn advisory(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> UiResult {
    let p: AdvisoryQuery = params(q)?;
    let store = st.store.clone();
    let lookup = id.clone();
    let page = exposure::HostPage {
        limit: HOSTS_LISTED,
        after: p.after,
    };
    let found = blocking(move || {
        exposure::for_advisory(store.as_ref(), &lookup, &page, chrono::Utc::now())
    })
    .await?;
    let Some(r) = found else {
        return Err(not_found(format!("advisory {id} is not held")));
    };
    let a = &r.advisory;
    render(&AdvisoryPage {
        chrome: Chrome::new(&person, &session, "/ui/vulns"),
        id: a.id.clone(),
        aliases: a.aliases.join(", "),
        level: level_text(a.rating.as_ref().map(|r| r.level)),
        score: score_text(a.rating.as_ref().and_then(|r| r.score)),
        rated_from: a
            .rating
            .as_ref()
            .map(|r| r.from.clone())
            .unwrap_or_default(),
        summary: a.summary.clone(),
        modified: super::pages::when(&a.modified),
        entries: a
            .affected
            .iter()
            .map(|e| AffectedEntry {
                ecosystem: e.ecosystem.clone(),
                package: e.package.clone(),
                fixed: e.fixed().join(", "),
            })
            .collect(),
        hosts_total: r.hosts_total,
        next_href: r.next_after.as_ref().map(|after| {
            format!(
                "{}?after={}",
                advisory_href(&a.id),
                super::pages::url_encode(after)
            )
        }),
        hosts: r
            .hosts
            .iter()
            .map(|h| HostRow {
                href: format!("/ui/cis/{}/vulns", segment(&h.id)),
                name: h.name.clone(),
                package: h.package.clone(),
                version: h.version.clone(),
                fixed: h.fixed.clone().unwrap_or_default(),
                detected: day(h.detected),
            })
            .collect(),
        services: affected_rows(&r.services),
    })
}

pub struct FindingRow {
    pub href: String,
    pub advisory: String,
    pub aliases: String,
    pub level: String,
    pub score: String,
    pub package: String,
    pub matched_as: String,
    pub version: String,
    pub fixed: String,
    pub since: String,
    pub detected: String,
}

/// An exposure that closed on the host.
pub struct ClosedRow {
    pub href: String,
    pub advisory: String,
    pub package: String,
    pub how: String,
    pub version: String,
    pub detected: String,
    pub closed: String,
}

#[derive(Template)]
#[template(path = "host_vulns.html")]
struct HostPage {
    chrome: Chrome,
    ci_href: String,
    name: String,
    ecosystem: String,
    packages: usize,
    rows: Vec<FindingRow>,
    closed: Vec<ClosedRow>,
}

pub async fn host(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> UiResult {
    let store = st.store.clone();
    let lookup = id.clone();
    let found = blocking(move || exposure::for_computer(store.as_ref(), &lookup)).await?;
    let Some(r) = found else {
        return Err(not_found(format!("computer {id} does not exist")));
    };
    render(&HostPage {
        chrome: Chrome::new(&person, &session, "/ui/vulns"),
        ci_href: format!("/ui/cis/{}", segment(&r.computer_id)),
        name: r.computer_name,
        ecosystem: r.ecosystem.unwrap_or_default(),
        packages: r.packages,
        rows: r
            .findings
            .into_iter()
            .map(|f| FindingRow {
                href: advisory_href(&f.advisory),
                advisory: f.advisory,
                aliases: f.aliases.join(", "),
                level: level_text(f.level),
                score: score_text(f.score),
                package: f.package,
                matched_as: f.matched_as,
                version: f.version,
                fixed: f.fixed.unwrap_or_default(),
                since: day(f.since),
                detected: day(f.detected),
            })
            .collect(),
        closed: r
            .fixed
            .into_iter()
            .map(|c| ClosedRow {
                href: advisory_href(&c.advisory),
                advisory: c.advisory,
                package: c.package,
                how: c.how.as_str().to_string(),
                version: c.version.unwrap_or_default(),
                detected: day(Some(c.detected)),
                closed: day(Some(c.closed)),
            })
            .collect(),
    })
}
