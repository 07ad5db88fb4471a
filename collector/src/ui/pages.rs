//! The UI's read pages. Each handler reads through the same views as the API and turns
//! them into plain display rows; templates only print (askama escapes every value).

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::Extension;
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::{bad_request, chart, render, Chrome, UiError, UiResult};
use crate::http::{blocking, AppState};
use crate::model::*;
use crate::people::Person;
use crate::query::{self, filter, views, Query, Sort};
use crate::ui::session::Session;

pub const PAGE_SIZE: usize = 50;

/// Percent-encodes everything but unreserved characters (for query values and path
/// segments in links).
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A path segment: `/` is encoded too.
pub fn segment(text: &str) -> String {
    url_encode(text).replace('/', "%2F")
}

pub fn when(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub fn when_opt(t: &Option<DateTime<Utc>>) -> String {
    t.as_ref().map(when).unwrap_or_else(|| "never".into())
}

pub fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Times from a form: RFC 3339, a date, an age (-7d) or a `datetime-local` value (UTC).
pub fn parse_when(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    query::eval::parse_time(text, Utc::now()).or_else(|| {
        ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
            .map(|t| t.and_utc())
    })
}

pub(crate) fn params<T: serde::de::DeserializeOwned + Default>(
    q: Option<String>,
) -> Result<T, UiError> {
    crate::http::query_params(q.filter(|q| !q.is_empty())).map_err(UiError::from)
}

pub(crate) fn not_found(what: String) -> UiError {
    UiError {
        status: axum::http::StatusCode::NOT_FOUND,
        message: what,
    }
}

// --- dashboard ---

pub struct Count {
    pub label: String,
    pub value: usize,
    pub href: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    chrome: Chrome,
    classes: Vec<Count>,
    os: Vec<Count>,
    status: Vec<Count>,
    agents_total: usize,
    agents_never_seen: usize,
    agents_silent: usize,
    unauthorized: Vec<Count>,
    conflicts_open: usize,
    /// The latest recorded CMDB health: (day, overall score).
    health: Option<(String, f64)>,
    chart_svg: String,
    expiring: Vec<Count>,
}

/// How far ahead the dashboard looks for expiring warranties and licences.
const EXPIRING_DAYS: i64 = 30;

pub async fn dashboard(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
) -> UiResult {
    let store = st.store.clone();
    let now = Utc::now();
    let data = blocking(move || {
        let mut classes = Vec::new();
        // (os.name, os.version) -> computers.
        let mut os: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut status: BTreeMap<&'static str, usize> = BTreeMap::new();
        // Warranties and licences: (ended already, ending within EXPIRING_DAYS).
        let today = now.date_naive();
        let days_left = |date: &str| crate::query::licences::days_until(date, today);
        let mut warranties = (0usize, 0usize);
        let mut reconciliation = 0usize;
        for class in CiClass::ALL {
            let mut n = 0;
            store.scan_cis(class, &mut |ci| {
                n += 1;
                if class == CiClass::Computer {
                    let attr = |k: &str| ci.attributes.get(k).map(show).unwrap_or_default();
                    *os.entry((attr("os.name"), attr("os.version"))).or_default() += 1;
                    *status.entry(ci.status.as_str()).or_default() += 1;
                    if ci
                        .attributes
                        .contains_key(crate::model::register::RECONCILIATION_ATTRIBUTE)
                    {
                        reconciliation += crate::model::register::discrepancies(&ci.attributes)
                            .values()
                            .filter(|d| d.is_open())
                            .count();
                    }
                    if ci.status != CiStatus::Retired {
                        match days_left(&attr("register.warranty_end")) {
                            Some(d) if d < 0 => warranties.0 += 1,
                            Some(d) if d <= EXPIRING_DAYS => warranties.1 += 1,
                            _ => {}
                        }
                    }
                }
                true
            })?;
            classes.push((class, n));
        }
        let mut licences = (0usize, 0usize);
        for l in store.list_licences()? {
            match l.expires.as_deref().and_then(days_left) {
                Some(d) if d < 0 => licences.0 += 1,
                Some(d) if d <= EXPIRING_DAYS => licences.1 += 1,
                _ => {}
            }
        }
        let agents = store.list_agents()?;
        let records = store.list_change_records()?;
        let conflicts = store.list_conflicts()?;
        let health = store
            .health_trend()?
            .last()
            .map(|p| (p.day.to_string(), p.overall));
        Ok::<_, crate::store::StoreError>((
            classes,
            os,
            status,
            agents,
            records,
            conflicts,
            (warranties, licences, reconciliation),
            health,
        ))
    })
    .await?;
    let (
        classes,
        os,
        status,
        agents,
        records,
        conflicts,
        (warranties, licences, reconciliation),
        health,
    ) = data;
    let expiring = vec![
        Count {
            label: "Warranties ended".into(),
            value: warranties.0,
            href: "/ui/licences".into(),
        },
        Count {
            label: format!("Warranties ending within {EXPIRING_DAYS} days"),
            value: warranties.1,
            href: "/ui/licences".into(),
        },
        Count {
            label: "Licences expired".into(),
            value: licences.0,
            href: "/ui/licences".into(),
        },
        Count {
            label: format!("Licences expiring within {EXPIRING_DAYS} days"),
            value: licences.1,
            href: "/ui/licences".into(),
        },
        Count {
            label: "Register values discovery disagrees with".into(),
            value: reconciliation,
            href: "/ui/register/reconciliation".into(),
        },
    ];
    let live: Vec<&Agent> = agents.iter().filter(|a| a.revoked_at.is_none()).collect();
    let mut os: Vec<((String, String), usize)> = os.into_iter().collect();
    os.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut unauthorized = Vec::new();
    for sev in [Severity::High, Severity::Medium, Severity::Low] {
        let n = records
            .iter()
            .filter(|r| {
                r.state == RecordState::Open
                    && r.authorization == Authorization::Unauthorized
                    && r.severity == sev
            })
            .count();
        unauthorized.push(Count {
            label: sev.as_str().into(),
            value: n,
            href: format!(
                "/ui/changes?state=open&authorization=unauthorized&severity={}",
                sev.as_str()
            ),
        });
    }
    let days = chart::per_day(records.iter().map(|r| r.detected_at), now, 30);
    let page = Dashboard {
        chrome: Chrome::new(&person, &session, "/ui"),
        expiring,
        classes: classes
            .into_iter()
            .map(|(c, n)| Count {
                label: c.as_str().replace('_', " "),
                value: n,
                href: format!("/ui/computers?class={}", c.as_str()),
            })
            .collect(),
        os: os
            .into_iter()
            .take(10)
            .map(|((name, version), value)| Count {
                href: format!(
                    "/ui/computers?filter={}",
                    url_encode(&format!(
                        "os.name = {} and os.version = {}",
                        filter_string(&name),
                        filter_string(&version)
                    ))
                ),
                label: match (name.is_empty(), version.is_empty()) {
                    (true, _) => "unknown".into(),
                    (false, true) => name,
                    (false, false) => format!("{name} {version}"),
                },
                value,
            })
            .collect(),
        status: status
            .into_iter()
            .map(|(s, n)| Count {
                label: s.into(),
                value: n,
                href: format!(
                    "/ui/computers?filter={}",
                    url_encode(&format!("status = {s}"))
                ),
            })
            .collect(),
        agents_total: live.len(),
        agents_never_seen: live.iter().filter(|a| a.last_seen.is_none()).count(),
        agents_silent: live
            .iter()
            .filter(|a| a.last_seen.is_some_and(|t| now - t > Duration::hours(24)))
            .count(),
        unauthorized,
        conflicts_open: conflicts.iter().filter(|c| c.resolved_at.is_none()).count(),
        health,
        chart_svg: chart::bars_svg(&days),
    };
    render(&page)
}

/// A string literal in the filter language.
pub fn filter_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

// --- inventory ---

pub struct CiRow {
    pub href: String,
    pub name: String,
    pub class: String,
    pub os: String,
    pub addresses: String,
    pub status: String,
    pub last_seen: String,
}

#[derive(Template)]
#[template(path = "computers.html")]
struct Computers {
    chrome: Chrome,
    class: String,
    classes: Vec<&'static str>,
    filter: String,
    sort: String,
    error: Option<String>,
    rows: Vec<CiRow>,
    total: usize,
    next_href: Option<String>,
    /// Asset managers and administrators may record hardware not discovered yet.
    can_record: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct ComputersQuery {
    class: Option<String>,
    filter: Option<String>,
    sort: Option<String>,
    cursor: Option<String>,
}

pub async fn computers(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
    RawQuery(q): RawQuery,
) -> UiResult {
    let p: ComputersQuery = params(q)?;
    let class_text = p.class.clone().unwrap_or_else(|| "computer".into());
    let filter_text = p.filter.clone().unwrap_or_default();
    let sort_text = p.sort.clone().unwrap_or_else(|| "name".into());
    let mut page = Computers {
        chrome: Chrome::new(&person, &session, "/ui/computers"),
        class: class_text.clone(),
        classes: CiClass::ALL.iter().map(|c| c.as_str()).collect(),
        filter: filter_text.clone(),
        sort: sort_text.clone(),
        error: None,
        rows: Vec::new(),
        total: 0,
        next_href: None,
        can_record: crate::register_api::REGISTER_EDITORS.permits(person.role),
    };
    let parsed = (|| {
        let class: CiClass = class_text
            .parse()
            .map_err(|e: String| format!("class: {e}"))?;
        let filter = filter::parse_for(class, &filter_text).map_err(|e| format!("filter: {e}"))?;
        let sort = Sort::parse(&sort_text)?;
        let after = p
            .cursor
            .as_deref()
            .map(query::decode_cursor)
            .transpose()
            .map_err(|e| format!("cursor: {e}"))?;
        Ok::<_, String>(Query {
            class,
            filter,
            sort,
            limit: PAGE_SIZE,
            after,
        })
    })();
    let q = match parsed {
        Ok(q) => q,
        Err(e) => {
            page.error = Some(e);
            let mut r = render(&page)?;
            *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            return Ok(r);
        }
    };
    let store = st.store.clone();
    let result = blocking(move || query::run(store.as_ref(), &q, Utc::now())).await?;
    page.total = result.total;
    page.rows = result.items.iter().map(ci_row).collect();
    page.next_href = result.next_cursor.map(|c| {
        format!(
            "/ui/computers?class={}&filter={}&sort={}&cursor={}",
            url_encode(&class_text),
            url_encode(&filter_text),
            url_encode(&sort_text),
            url_encode(&c)
        )
    });
    render(&page)
}

fn ci_row(ci: &Ci) -> CiRow {
    let addresses = match ci.attributes.get("network.addresses") {
        Some(Value::Array(a)) => a.iter().take(4).map(show).collect::<Vec<_>>().join(", "),
        _ => String::new(),
    };
    CiRow {
        href: format!("/ui/cis/{}", segment(&ci.id)),
        name: ci.name.clone(),
        class: ci.class.as_str().into(),
        os: [
            ci.attributes.get("os.name"),
            ci.attributes.get("os.version"),
        ]
        .into_iter()
        .flatten()
        .map(show)
        .collect::<Vec<_>>()
        .join(" "),
        addresses,
        status: ci.status.as_str().into(),
        last_seen: when(&ci.last_seen),
    }
}

pub struct ProductRow {
    pub href: String,
    pub name: String,
    pub title: String,
    pub publisher: String,
    pub category: String,
    pub installs: u64,
    pub distinct_versions: u64,
    pub versions: String,
    pub where_href: String,
    /// The advisories that hold for it.
    pub vulns_href: String,
}

#[derive(Template)]
#[template(path = "software.html")]
struct Software {
    chrome: Chrome,
    prefix: String,
    rows: Vec<ProductRow>,
    total: usize,
    next_href: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct SoftwareQuery {
    prefix: Option<String>,
    after: Option<String>,
}

pub async fn software(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
    RawQuery(q): RawQuery,
) -> UiResult {
    let p: SoftwareQuery = params(q)?;
    let prefix = p.prefix.clone().unwrap_or_default();
    let store = st.store.clone();
    let lookup = prefix.clone();
    let after = p.after.clone();
    let (items, total) = blocking(move || {
        views::catalogue(
            store.as_ref(),
            Some(lookup.as_str()).filter(|s| !s.is_empty()),
            PAGE_SIZE,
            after.as_deref(),
        )
    })
    .await?;
    let rows: Vec<ProductRow> = items
        .iter()
        .map(|v| {
            let name = show(&v["name"]);
            ProductRow {
                href: format!("/ui/cis/{}", segment(&show(&v["id"]))),
                title: show(&v["title"]),
                publisher: show(&v["publisher"]),
                category: show(&v["category"]),
                installs: v["installs"].as_u64().unwrap_or(0),
                distinct_versions: v["distinct_versions"].as_u64().unwrap_or(0),
                versions: v["versions"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .take(5)
                            .map(|x| format!("{} ({})", show(&x["version"]), show(&x["computers"])))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default(),
                where_href: format!(
                    "/ui/computers?filter={}",
                    url_encode(&format!("software.name = {}", filter_string(&name)))
                ),
                vulns_href: format!("/ui/vulns?product={}", url_encode(&name)),
                name,
            }
        })
        .collect();
    let next_href = (rows.len() == PAGE_SIZE)
        .then(|| items.last().map(|v| show(&v["id"])))
        .flatten()
        .map(|id| {
            format!(
                "/ui/software?prefix={}&after={}",
                url_encode(&prefix),
                url_encode(&id)
            )
        });
    render(&Software {
        chrome: Chrome::new(&person, &session, "/ui/software"),
        prefix,
        rows,
        total,
        next_href,
    })
}

// --- one CI ---

pub struct KeyValue {
    pub key: String,
    pub value: String,
}

pub struct Edge {
    pub kind: String,
    pub href: String,
    pub name: String,
    pub class: String,
    pub detail: String,
}

pub struct VersionRow {
    pub version: u64,
    pub valid_from: String,
    pub as_of_href: String,
    pub status: String,
    pub relationships: usize,
    pub change_href: Option<String>,
    pub checked_from: bool,
    pub checked_to: bool,
}

#[derive(Template)]
#[template(path = "ci.html")]
struct CiPage {
    chrome: Chrome,
    id: String,
    self_href: String,
    name: String,
    class: String,
    status: String,
    first_seen: String,
    last_seen: String,
    as_of: Option<String>,
    as_of_value: String,
    attributes: Vec<KeyValue>,
    volatile: Vec<KeyValue>,
    identification: Option<(String, String, String)>,
    agent_id: Option<String>,
    out: Vec<Edge>,
    out_total: u64,
    incoming: Vec<Edge>,
    in_total: u64,
    history: Vec<VersionRow>,
    /// Computers only: the asset register, field by field.
    register: Option<Vec<RegisterRow>>,
    /// The edit form is shown to asset managers and administrators, on the current state.
    can_edit_register: bool,
    version: u64,
    /// Where discovery disagrees with a held register value.
    reconciliation: Vec<ReconciliationRow>,
    /// Services running on this computer or depending on one that does.
    services: Vec<AffectedRow>,
}

/// A service an impact reaches, as the CI and change pages list it.
pub struct AffectedRow {
    pub href: String,
    pub name: String,
    pub criticality: u8,
    pub path: String,
    pub via: String,
}

pub fn affected_rows(affected: &[crate::query::services::AffectedService]) -> Vec<AffectedRow> {
    affected
        .iter()
        .map(|a| AffectedRow {
            href: format!("/ui/services/{}", segment(&a.id)),
            name: a.name.clone(),
            criticality: a.criticality,
            path: a.path.join(" → "),
            via: a.via.clone(),
        })
        .collect()
}

/// A reconciliation item on the CI page and the reconciliation list.
pub struct ReconciliationRow {
    pub ci_href: String,
    pub ci_name: String,
    /// Where its decision is posted.
    pub action: String,
    pub field: String,
    pub held: String,
    pub holder: String,
    pub discovered: String,
    pub agent: String,
    pub since: String,
    pub open: bool,
    pub kept_by: String,
}

pub fn reconciliation_row(
    ci_id: &str,
    ci_name: &str,
    field: &str,
    d: &crate::model::register::Discrepancy,
) -> ReconciliationRow {
    let ci_href = format!("/ui/cis/{}", segment(ci_id));
    ReconciliationRow {
        action: format!("{ci_href}/register/reconciliation/{}", segment(field)),
        ci_href,
        ci_name: ci_name.to_string(),
        field: field.to_string(),
        held: d.held.as_ref().map(show).unwrap_or_default(),
        holder: format!(
            "{} {} · {}",
            d.holder.source.as_str().replace('_', " "),
            d.holder.by,
            when(&d.holder.at)
        ),
        discovered: show(&d.discovered),
        agent: d.agent.clone(),
        since: when(&d.since),
        open: d.is_open(),
        kept_by: d
            .kept
            .as_ref()
            .map(|k| format!("kept by {} · {}", k.by, when(&k.at)))
            .unwrap_or_default(),
    }
}

/// One register field on the CI page: its value, where it came from, and its form input.
pub struct RegisterRow {
    pub field: String,
    pub description: String,
    /// "text", "notes", "date", "number" or "choice": which input the form uses.
    pub input: &'static str,
    pub max_chars: usize,
    /// A choice's options (status labels, an enum's values).
    pub choices: Vec<String>,
    /// A number's bounds and step, as the input's attributes take them.
    pub min: String,
    pub max: String,
    pub step: String,
    pub value: String,
    pub set_by: String,
    pub custom: bool,
}

fn register_rows(
    attributes: &Value,
    settings: &crate::model::register::RegisterSettings,
) -> Vec<RegisterRow> {
    use crate::model::register::{self, FieldKind};
    let provenance = register::provenance_of(attributes.get(register::PROVENANCE_ATTRIBUTE));
    let statuses: Vec<String> = settings.statuses.iter().map(|s| s.name.clone()).collect();
    settings
        .fields(CiClass::Computer)
        .into_iter()
        .map(|f| {
            let bound = |b: Option<f64>| b.map(|b| b.to_string()).unwrap_or_default();
            let (input, max_chars, choices, min, max, step) = match &f.kind {
                FieldKind::Text { max_chars } if f.name == "notes" => {
                    ("notes", *max_chars, vec![], None, None, String::new())
                }
                FieldKind::Text { max_chars } => {
                    ("text", *max_chars, vec![], None, None, String::new())
                }
                FieldKind::Date => ("date", 10, vec![], None, None, String::new()),
                FieldKind::Money => ("number", 16, vec![], Some(0.0), None, "0.01".into()),
                FieldKind::Number { min, max, decimals } => (
                    "number",
                    24,
                    vec![],
                    *min,
                    *max,
                    if *decimals == 0 {
                        "1".to_string()
                    } else {
                        format!("0.{}1", "0".repeat(usize::from(*decimals) - 1))
                    },
                ),
                FieldKind::Status => ("choice", 32, statuses.clone(), None, None, String::new()),
                FieldKind::Enum { values } => {
                    ("choice", 64, values.clone(), None, None, String::new())
                }
            };
            RegisterRow {
                value: show(&attributes[register::attribute(&f.name).as_str()]),
                set_by: provenance
                    .get(f.name.as_ref())
                    .map(|p| {
                        format!(
                            "{} {} · {}",
                            p.source.as_str().replace('_', " "),
                            p.by,
                            when(&p.at)
                        )
                    })
                    .unwrap_or_default(),
                field: f.name.into_owned(),
                description: f.description.into_owned(),
                input,
                max_chars,
                choices,
                min: bound(min),
                max: bound(max),
                step,
                custom: f.custom,
            }
        })
        .collect()
}

#[derive(Debug, Default, Deserialize)]
pub struct CiQuery {
    as_of: Option<String>,
}

fn key_values(attrs: &Value) -> Vec<KeyValue> {
    attrs
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: show(v),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn edge_detail(attrs: &Value) -> String {
    attrs
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| *k != "name")
                .map(|(k, v)| format!("{k}={}", show(v)))
                .collect::<Vec<_>>()
                .join(" · ")
        })
        .unwrap_or_default()
}

/// Relationship rows from a detail view's list; `end` is "to" (outgoing) or "from".
fn edges(list: &Value, end: &str) -> Vec<Edge> {
    let Some(list) = list.as_array() else {
        return Vec::new();
    };
    list.iter()
        .map(|e| {
            let id = show(&e[end]);
            let name = show(&e[format!("{end}_name").as_str()]);
            Edge {
                kind: show(&e["kind"]),
                href: format!("/ui/cis/{}", segment(&id)),
                name: if name.is_empty() { id } else { name },
                class: show(&e[format!("{end}_class").as_str()]).replace('_', " "),
                detail: edge_detail(&e["attributes"]),
            }
        })
        .collect()
}

pub async fn ci(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> UiResult {
    let p: CiQuery = params(q)?;
    let at = match p.as_of.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(t) => Some(parse_when(t).ok_or_else(|| {
            bad_request(format!(
                "as of: '{t}' is not a time (2026-11-01, 2026-11-01T10:00 or an age like -7d)"
            ))
        })?),
        None => None,
    };
    let store = st.store.clone();
    let lookup = id.clone();
    let (detail, history, settings, affected) = blocking(move || {
        let detail = views::ci_detail(
            store.as_ref(),
            &lookup,
            at,
            views::DEFAULT_LISTED_RELATIONSHIPS,
        )?;
        // The services this computer's changes reach (now, not as of a past time).
        let affected = match detail.as_ref().map(|d| &d["ci"]) {
            Some(ci) if ci["class"] == "computer" && at.is_none() => {
                crate::query::services::impact_of_computer(
                    store.as_ref(),
                    &lookup,
                    &show(&ci["name"]),
                    Utc::now(),
                )?
            }
            _ => Vec::new(),
        };
        Ok::<_, crate::store::StoreError>((
            detail,
            store.history(&lookup)?,
            store.register_settings()?.unwrap_or_default(),
            affected,
        ))
    })
    .await?;
    let Some(d) = detail else {
        return Err(not_found(match at {
            Some(t) => format!("CI {id} did not exist at {}", when(&t)),
            None => format!("CI {id} does not exist"),
        }));
    };
    let ci = &d["ci"];
    let n = history.len();
    let rows = history
        .iter()
        .rev()
        .enumerate()
        .map(|(i, v)| VersionRow {
            version: v.version,
            valid_from: when(&v.valid_from),
            as_of_href: format!(
                "/ui/cis/{}?as_of={}",
                segment(&id),
                url_encode(&v.valid_from.to_rfc3339())
            ),
            status: v.ci.status.as_str().into(),
            relationships: v.relationships.len(),
            change_href: v
                .change_record
                .as_ref()
                .map(|r| format!("/ui/changes/{}", segment(r))),
            checked_to: i == 0,
            checked_from: i == 1 || (n == 1 && i == 0),
        })
        .collect();
    let out = edges(&d["relationships_out"], "to");
    let incoming = edges(&d["relationships_in"], "from");
    let identification = d["identification"].as_object().map(|o| {
        (
            o.get("rule").map(show).unwrap_or_default(),
            o.get("value").map(show).unwrap_or_default(),
            o.get("at").map(show).unwrap_or_default(),
        )
    });
    let parse_t = |v: &Value| {
        v.as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| when(&t.with_timezone(&Utc)))
            .unwrap_or_default()
    };
    render(&CiPage {
        chrome: Chrome::new(&person, &session, "/ui/computers"),
        self_href: format!("/ui/cis/{}", segment(&id)),
        id: id.clone(),
        name: show(&ci["name"]),
        class: show(&ci["class"]).replace('_', " "),
        status: show(&ci["status"]),
        first_seen: parse_t(&ci["first_seen"]),
        last_seen: parse_t(&ci["last_seen"]),
        as_of: at.as_ref().map(when),
        as_of_value: at
            .map(|t| t.format("%Y-%m-%dT%H:%M").to_string())
            .unwrap_or_default(),
        attributes: key_values(&ci["attributes"])
            .into_iter()
            .filter(|a| !crate::model::register::is_register_attribute(&a.key))
            .collect(),
        volatile: key_values(&ci["volatile"]),
        identification,
        agent_id: d["agent_id"].as_str().map(str::to_string),
        out,
        out_total: d["relationships_out_total"].as_u64().unwrap_or(0),
        incoming,
        in_total: d["relationships_in_total"].as_u64().unwrap_or(0),
        history: rows,
        register: (ci["class"] == "computer").then(|| register_rows(&ci["attributes"], &settings)),
        can_edit_register: at.is_none()
            && crate::register_api::REGISTER_EDITORS.permits(person.role),
        version: ci["version"].as_u64().unwrap_or(0),
        services: affected_rows(&affected),
        reconciliation: if ci["class"] == "computer" {
            let attributes: Attributes =
                serde_json::from_value(ci["attributes"].clone()).unwrap_or_default();
            crate::model::register::discrepancies(&attributes)
                .iter()
                .map(|(field, d)| reconciliation_row(&id, &show(&ci["name"]), field, d))
                .collect()
        } else {
            Vec::new()
        },
    })
}

pub struct CompareRow {
    pub key: String,
    pub left: String,
    pub right: String,
    pub changed: bool,
}

pub struct ItemRow {
    pub kind: String,
    pub subject: String,
    pub old: String,
    pub new: String,
    pub severity: String,
    pub suppressed: String,
    pub planned: String,
    pub review: String,
}

/// A change item's side: a package's or service's version when it has one, else the value.
fn item_value(v: &Value) -> String {
    match v.get("version").map(show) {
        Some(version) => match v.get("arch").map(show).filter(|a| !a.is_empty()) {
            Some(arch) => format!("{version} ({arch})"),
            None => version,
        },
        None => show(v),
    }
}

fn item_row(i: &ChangeItem) -> ItemRow {
    ItemRow {
        kind: serde_json::to_value(i.kind)
            .map(|v| show(&v))
            .unwrap_or_default()
            .replace('_', " "),
        subject: i.subject.clone(),
        old: i.old.as_ref().map(item_value).unwrap_or_default(),
        new: i.new.as_ref().map(item_value).unwrap_or_default(),
        severity: i.severity.as_str().into(),
        suppressed: i.suppressed.clone().unwrap_or_default(),
        planned: i.planned_change.clone().unwrap_or_default(),
        review: i
            .review
            .as_ref()
            .map(|r| {
                format!(
                    "{} by {}",
                    serde_json::to_value(r.decision)
                        .map(|v| show(&v))
                        .unwrap_or_default(),
                    r.by
                )
            })
            .unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "compare.html")]
struct Compare {
    chrome: Chrome,
    id: String,
    ci_href: String,
    name: String,
    left: (u64, String),
    right: (u64, String),
    rows: Vec<CompareRow>,
    changed: usize,
    items: Vec<ItemRow>,
    is_computer: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct CompareQuery {
    from: Option<u64>,
    to: Option<u64>,
}

pub async fn compare(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> UiResult {
    let p: CompareQuery = params(q)?;
    let (Some(from), Some(to)) = (p.from, p.to) else {
        return Err(bad_request(
            "compare: choose two versions (from and to) in the history",
        ));
    };
    let store = st.store.clone();
    let lookup = id.clone();
    let history = blocking(move || store.history(&lookup)).await?;
    let find = |v: u64| {
        history
            .iter()
            .find(|h| h.version == v)
            .cloned()
            .ok_or_else(|| not_found(format!("CI {id} has no version {v}")))
    };
    let (a, b) = (find(from)?, find(to)?);
    let (a, b) = if a.version <= b.version {
        (a, b)
    } else {
        (b, a)
    };
    let mut keys: Vec<&String> =
        a.ci.attributes
            .keys()
            .chain(b.ci.attributes.keys())
            .collect();
    keys.sort();
    keys.dedup();
    let rows: Vec<CompareRow> = keys
        .into_iter()
        .map(|k| {
            let l = a.ci.attributes.get(k).map(show).unwrap_or_default();
            let r = b.ci.attributes.get(k).map(show).unwrap_or_default();
            CompareRow {
                key: k.clone(),
                changed: l != r,
                left: l,
                right: r,
            }
        })
        .collect();
    let is_computer = a.ci.class == CiClass::Computer;
    let items = if is_computer {
        let store = st.store.clone();
        let lookup = id.clone();
        let (fa, fb) = (a.valid_from, b.valid_from);
        blocking(move || views::diff_between(store.as_ref(), &lookup, fa, fb))
            .await?
            .unwrap_or_default()
            .iter()
            .map(item_row)
            .collect()
    } else {
        Vec::new()
    };
    render(&Compare {
        chrome: Chrome::new(&person, &session, "/ui/computers"),
        ci_href: format!("/ui/cis/{}", segment(&id)),
        id,
        name: b.ci.name.clone(),
        left: (a.version, when(&a.valid_from)),
        right: (b.version, when(&b.valid_from)),
        changed: rows.iter().filter(|r| r.changed).count(),
        rows,
        items,
        is_computer,
    })
}

// --- changes ---

pub struct RecordRow {
    pub href: String,
    pub id: String,
    pub ci_href: String,
    pub ci_name: String,
    pub detected_at: String,
    pub severity: String,
    pub authorization: String,
    pub state: String,
    pub items: usize,
}

fn record_row(r: &ChangeRecord) -> RecordRow {
    RecordRow {
        href: format!("/ui/changes/{}", segment(&r.id)),
        id: r.id.clone(),
        ci_href: format!("/ui/cis/{}", segment(&r.ci_id)),
        ci_name: r.ci_name.clone(),
        detected_at: when(&r.detected_at),
        severity: r.severity.as_str().into(),
        authorization: r.authorization.as_str().into(),
        state: r.state.as_str().into(),
        items: r.items.iter().filter(|i| i.suppressed.is_none()).count(),
    }
}

#[derive(Template)]
#[template(path = "changes.html")]
struct Changes {
    chrome: Chrome,
    state: String,
    severity: String,
    authorization: String,
    ci: String,
    rows: Vec<RecordRow>,
    total: usize,
    shown: usize,
}

#[derive(Debug, Default, Deserialize)]
pub struct ChangesQuery {
    state: Option<String>,
    severity: Option<String>,
    authorization: Option<String>,
    ci: Option<String>,
}

pub async fn changes(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
    RawQuery(q): RawQuery,
) -> UiResult {
    let p: ChangesQuery = params(q)?;
    // The queue defaults to what needs a person: open records.
    let state = p.state.clone().unwrap_or_else(|| "open".into());
    let severity = p.severity.clone().unwrap_or_default();
    let authorization = p.authorization.clone().unwrap_or_default();
    let ci = p.ci.clone().unwrap_or_default();
    for (field, value, allowed) in [
        ("state", &state, &["", "open", "accepted", "rejected"][..]),
        ("severity", &severity, &["", "low", "medium", "high"][..]),
        (
            "authorization",
            &authorization,
            &["", "authorized", "unauthorized"][..],
        ),
    ] {
        if !allowed.contains(&value.as_str()) {
            return Err(bad_request(format!(
                "{field}: '{value}' is not one of {}",
                allowed[1..].join(", ")
            )));
        }
    }
    let store = st.store.clone();
    let mut records = blocking(move || store.list_change_records()).await?;
    records.reverse();
    let matching: Vec<&ChangeRecord> = records
        .iter()
        .filter(|r| state.is_empty() || r.state.as_str() == state)
        .filter(|r| severity.is_empty() || r.severity.as_str() == severity)
        .filter(|r| authorization.is_empty() || r.authorization.as_str() == authorization)
        .filter(|r| ci.is_empty() || r.ci_id == ci || r.ci_name == ci)
        .collect();
    let total = matching.len();
    let rows: Vec<RecordRow> = matching.into_iter().take(200).map(record_row).collect();
    render(&Changes {
        chrome: Chrome::new(&person, &session, "/ui/changes"),
        shown: rows.len(),
        state,
        severity,
        authorization,
        ci,
        rows,
        total,
    })
}

#[derive(Template)]
#[template(path = "change.html")]
struct ChangePage {
    chrome: Chrome,
    record: RecordRow,
    action: String,
    items: Vec<(usize, bool, ItemRow)>,
    open: bool,
    may_review: bool,
    review: Option<(String, String, String, String)>,
    planned: Vec<String>,
    from_version: u64,
    to_version: u64,
    compare_href: String,
    /// The services the change reaches.
    services: Vec<AffectedRow>,
    tickets: Vec<TicketRef>,
    /// Baseline rules the change made the computer fail.
    compliance: Vec<ComplianceBreak>,
    /// The tickets as the form edits them: one per line.
    tickets_text: String,
    tickets_action: String,
}

/// Tickets as a form edits them: one per line, the number then the address.
pub fn tickets_text(tickets: &[TicketRef]) -> String {
    tickets
        .iter()
        .map(|t| match &t.url {
            Some(u) => format!("{} {u}", t.id),
            None => t.id.clone(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn change(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> UiResult {
    let store = st.store.clone();
    let lookup = id.clone();
    let found = blocking(move || {
        let Some(r) = store.get_change_record(&lookup)? else {
            return Ok(None);
        };
        let affected = crate::query::services::impact_of_computer(
            store.as_ref(),
            &r.ci_id,
            &r.ci_name,
            Utc::now(),
        )?;
        Ok::<_, crate::store::StoreError>(Some((r, affected)))
    })
    .await?;
    let Some((r, affected)) = found else {
        return Err(not_found(format!("change record {id} does not exist")));
    };
    let open = r.state == RecordState::Open;
    let mut chrome = Chrome::new(&person, &session, "/ui/changes");
    let may_review = person.role == Role::ChangeManager;
    chrome.notice = None;
    render(&ChangePage {
        services: affected_rows(&affected),
        action: format!("/ui/changes/{}/review", segment(&r.id)),
        compare_href: format!(
            "/ui/cis/{}/compare?from={}&to={}",
            segment(&r.ci_id),
            r.from_version,
            r.to_version
        ),
        items: r
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                (
                    i,
                    open && item.review.is_none() && item.suppressed.is_none(),
                    item_row(item),
                )
            })
            .collect(),
        review: r.review.as_ref().map(|rv| {
            (
                serde_json::to_value(rv.decision)
                    .map(|v| show(&v))
                    .unwrap_or_default(),
                rv.by.clone(),
                when(&rv.at),
                rv.comment.clone(),
            )
        }),
        planned: r.planned_changes.clone(),
        tickets_text: tickets_text(&r.tickets),
        tickets_action: format!("/ui/changes/{}/tickets", segment(&r.id)),
        tickets: r.tickets.clone(),
        compliance: r.compliance.clone(),
        from_version: r.from_version,
        to_version: r.to_version,
        record: record_row(&r),
        open,
        may_review,
        chrome,
    })
}

pub struct PlanRow {
    pub tickets: Vec<TicketRef>,
    pub id: String,
    pub title: String,
    pub scope: String,
    pub allowed: String,
    pub window: String,
    pub state: String,
    pub active: bool,
    pub created_by: String,
    pub cancel_action: String,
}

#[derive(Template)]
#[template(path = "planned.html")]
struct Planned {
    chrome: Chrome,
    rows: Vec<PlanRow>,
    may_edit: bool,
    default_start: String,
    default_end: String,
}

pub fn scope_text(s: &PlanScope) -> String {
    if s.all {
        return "every computer".into();
    }
    let mut parts = Vec::new();
    if !s.ci_ids.is_empty() {
        parts.push(format!("CIs {}", s.ci_ids.join(", ")));
    }
    if !s.subnets.is_empty() {
        parts.push(format!("subnets {}", s.subnets.join(", ")));
    }
    if !s.hostnames.is_empty() {
        parts.push(format!("hosts {}", s.hostnames.join(", ")));
    }
    parts.join("; ")
}

pub fn pattern_text(p: &ItemPattern) -> String {
    let mut t = format!("{} {}", p.kind, p.subject);
    if !p.new.is_empty() {
        t.push_str(&format!(
            " {}",
            serde_json::to_string(&p.new).unwrap_or_default()
        ));
    }
    t
}

pub async fn planned(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
) -> UiResult {
    let store = st.store.clone();
    let mut list = blocking(move || store.list_planned_changes()).await?;
    list.sort_by_key(|p| std::cmp::Reverse(p.created_at));
    let now = Utc::now();
    render(&Planned {
        chrome: Chrome::new(&person, &session, "/ui/planned"),
        rows: list
            .iter()
            .map(|p| PlanRow {
                tickets: p.tickets.clone(),
                id: p.id.clone(),
                title: p.title.clone(),
                scope: scope_text(&p.scope),
                allowed: p
                    .allowed
                    .iter()
                    .map(pattern_text)
                    .collect::<Vec<_>>()
                    .join("; "),
                window: format!("{} – {}", when(&p.window_start), when(&p.window_end)),
                state: match p.state {
                    PlannedState::Cancelled => "cancelled".into(),
                    PlannedState::Active if p.window_end < now => "ended".into(),
                    PlannedState::Active => "active".into(),
                },
                active: p.state == PlannedState::Active,
                created_by: p.created_by.clone(),
                cancel_action: format!("/ui/planned/{}/cancel", segment(&p.id)),
            })
            .collect(),
        may_edit: person.role == Role::ChangeManager,
        default_start: now.format("%Y-%m-%dT%H:%M").to_string(),
        default_end: (now + Duration::hours(4))
            .format("%Y-%m-%dT%H:%M")
            .to_string(),
    })
}

// --- conflicts ---

pub struct ConflictRow {
    pub id: String,
    pub raised_at: String,
    pub rule: String,
    pub value: String,
    pub existing_href: String,
    pub existing_ci: String,
    pub existing_agent: String,
    pub claiming_agent: String,
    pub claiming_ci: Option<(String, String)>,
    pub resolved: Option<String>,
    pub action: String,
}

#[derive(Template)]
#[template(path = "conflicts.html")]
struct Conflicts {
    chrome: Chrome,
    rows: Vec<ConflictRow>,
    may_resolve: bool,
}

pub async fn conflicts(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
) -> UiResult {
    let store = st.store.clone();
    let mut list = blocking(move || store.list_conflicts()).await?;
    list.sort_by(|a, b| {
        a.resolved_at
            .is_some()
            .cmp(&b.resolved_at.is_some())
            .then(b.raised_at.cmp(&a.raised_at))
    });
    render(&Conflicts {
        chrome: Chrome::new(&person, &session, "/ui/conflicts"),
        rows: list
            .iter()
            .map(|c| ConflictRow {
                id: c.id.clone(),
                raised_at: when(&c.raised_at),
                rule: c.rule.clone(),
                value: c.value.clone(),
                existing_href: format!("/ui/cis/{}", segment(&c.existing_ci)),
                existing_ci: c.existing_ci.clone(),
                existing_agent: c.existing_agent.clone().unwrap_or_default(),
                claiming_agent: c.claiming_agent.clone(),
                claiming_ci: c
                    .claiming_ci
                    .as_ref()
                    .map(|id| (format!("/ui/cis/{}", segment(id)), id.clone())),
                resolved: c.resolved_at.map(|t| {
                    format!(
                        "{} at {}",
                        c.resolution.clone().unwrap_or_default().replace('_', " "),
                        when(&t)
                    )
                }),
                action: format!("/ui/conflicts/{}/resolve", segment(&c.id)),
            })
            .collect(),
        may_resolve: person.role == Role::Admin,
    })
}

// --- rules and admin ---

pub struct NoiseRow {
    pub id: String,
    pub class: String,
    pub pattern: String,
    pub note: String,
    pub created_by: String,
    pub delete_action: String,
}

#[derive(Template)]
#[template(path = "noise.html")]
struct Noise {
    chrome: Chrome,
    rows: Vec<NoiseRow>,
    classes: Vec<&'static str>,
}

pub async fn noise(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
) -> UiResult {
    let store = st.store.clone();
    let list = blocking(move || store.list_noise_rules()).await?;
    render(&Noise {
        chrome: Chrome::new(&person, &session, "/ui/noise"),
        rows: list
            .iter()
            .map(|r| NoiseRow {
                id: r.id.clone(),
                class: r.class.as_str().into(),
                pattern: pattern_text(&r.pattern),
                note: r.note.clone(),
                created_by: r.created_by.clone(),
                delete_action: format!("/ui/noise/{}/delete", segment(&r.id)),
            })
            .collect(),
        classes: CiClass::ALL.iter().map(|c| c.as_str()).collect(),
    })
}

pub struct TokenRow {
    pub id: String,
    pub note: String,
    pub created_at: String,
    pub expires_at: String,
    pub uses: String,
    pub state: String,
    pub usable: bool,
    pub revoke_action: String,
}

/// A just-created enrollment token: shown once.
pub struct NewToken {
    pub secret: String,
    pub command: String,
}

#[derive(Template)]
#[template(path = "tokens.html")]
pub struct Tokens {
    pub chrome: Chrome,
    pub rows: Vec<TokenRow>,
    pub created: Option<NewToken>,
}

pub async fn token_rows(st: &AppState) -> Result<Vec<TokenRow>, UiError> {
    let store = st.store.clone();
    let mut list = blocking(move || store.list_tokens()).await?;
    list.reverse();
    let now = Utc::now();
    Ok(list
        .iter()
        .map(|t| {
            let state = if t.revoked_at.is_some() {
                "revoked"
            } else if t.expires_at <= now {
                "expired"
            } else if t.uses >= t.max_uses {
                "used up"
            } else {
                "usable"
            };
            TokenRow {
                id: t.id.clone(),
                note: t.note.clone().unwrap_or_default(),
                created_at: when(&t.created_at),
                expires_at: when(&t.expires_at),
                uses: format!("{} of {}", t.uses, t.max_uses),
                state: state.into(),
                usable: state == "usable",
                revoke_action: format!("/ui/admin/tokens/{}/revoke", segment(&t.id)),
            }
        })
        .collect())
}

pub async fn tokens(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
) -> UiResult {
    render(&Tokens {
        chrome: Chrome::new(&person, &session, "/ui/admin/tokens"),
        rows: token_rows(&st).await?,
        created: None,
    })
}

pub struct AgentRow {
    pub id: String,
    pub hostname: String,
    pub ci_href: Option<String>,
    pub enrolled_at: String,
    pub last_seen: String,
    pub last_seq: u64,
    pub version: String,
    pub skew: String,
    pub state: String,
    pub live: bool,
    pub revoke_action: String,
}

#[derive(Template)]
#[template(path = "agents.html")]
struct Agents {
    chrome: Chrome,
    rows: Vec<AgentRow>,
}

pub async fn agents(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
) -> UiResult {
    let store = st.store.clone();
    let mut list = blocking(move || store.list_agents()).await?;
    list.sort_by(|a, b| a.facts.hostname.cmp(&b.facts.hostname));
    render(&Agents {
        chrome: Chrome::new(&person, &session, "/ui/admin/agents"),
        rows: list
            .iter()
            .map(|a| AgentRow {
                id: a.id.clone(),
                hostname: a.facts.hostname.clone(),
                ci_href: a.ci_id.as_ref().map(|c| format!("/ui/cis/{}", segment(c))),
                enrolled_at: when(&a.enrolled_at),
                last_seen: when_opt(&a.last_seen),
                last_seq: a.last_seq,
                version: a.agent_version.clone(),
                skew: a
                    .clock_skew_seconds
                    .map(|s| format!("{s} s"))
                    .unwrap_or_default(),
                state: if a.revoked_at.is_some() {
                    "revoked".into()
                } else if a.superseded_by.is_some() {
                    "superseded".into()
                } else {
                    "enrolled".into()
                },
                live: a.revoked_at.is_none(),
                revoke_action: format!("/ui/admin/agents/{}/revoke", segment(&a.id)),
            })
            .collect(),
    })
}

pub struct UserRow {
    pub name: String,
    pub role: String,
    pub created_at: String,
    pub password: bool,
    pub disabled: bool,
}

#[derive(Template)]
#[template(path = "users.html")]
struct Users {
    chrome: Chrome,
    rows: Vec<UserRow>,
    roles: Vec<&'static str>,
}

pub async fn users(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
) -> UiResult {
    let store = st.store.clone();
    let list = blocking(move || store.list_users()).await?;
    render(&Users {
        chrome: Chrome::new(&person, &session, "/ui/admin/users"),
        rows: list
            .iter()
            .map(|u| UserRow {
                name: u.name.clone(),
                role: u.role.as_str().into(),
                created_at: when(&u.created_at),
                password: u.password_hash.is_some(),
                disabled: u.disabled,
            })
            .collect(),
        roles: Role::ALL.iter().map(|r| r.as_str()).collect(),
    })
}

pub struct WebhookRow {
    pub id: String,
    pub url: String,
    pub created_by: String,
    pub created_at: String,
    pub delete_action: String,
}

#[derive(Template)]
#[template(path = "webhooks.html")]
pub struct Webhooks {
    pub chrome: Chrome,
    pub rows: Vec<WebhookRow>,
    pub pending: usize,
    pub dead: usize,
    pub created: Option<(String, String)>,
}

pub async fn webhook_page(
    st: &AppState,
    chrome: Chrome,
    created: Option<(String, String)>,
) -> UiResult {
    let store = st.store.clone();
    let (hooks, deliveries) = blocking(move || {
        Ok::<_, crate::store::StoreError>((store.list_webhooks()?, store.list_deliveries()?))
    })
    .await?;
    render(&Webhooks {
        chrome,
        rows: hooks
            .iter()
            .map(|w| WebhookRow {
                id: w.id.clone(),
                url: w.url.clone(),
                created_by: w.created_by.clone(),
                created_at: when(&w.created_at),
                delete_action: format!("/ui/admin/webhooks/{}/delete", segment(&w.id)),
            })
            .collect(),
        pending: deliveries.iter().filter(|d| d.dead_at.is_none()).count(),
        dead: deliveries.iter().filter(|d| d.dead_at.is_some()).count(),
        created,
    })
}

pub async fn webhooks(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
) -> UiResult {
    webhook_page(
        &st,
        Chrome::new(&person, &session, "/ui/admin/webhooks"),
        None,
    )
    .await
}

pub struct AuditRow {
    pub seq: u64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub before: String,
    pub after: String,
    pub comment: String,
    pub hash: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct Audit {
    chrome: Chrome,
    rows: Vec<AuditRow>,
    head: u64,
    older_href: Option<String>,
    newer_href: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    /// Show entries up to this seq (newest first); default the newest.
    until: Option<u64>,
}

pub async fn audit(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
    RawQuery(q): RawQuery,
) -> UiResult {
    let p: AuditQuery = params(q)?;
    let store = st.store.clone();
    let (head, entries, until) = blocking(move || {
        let head = store.audit_head()?;
        let until = p.until.unwrap_or(head).min(head);
        let after = until.saturating_sub(PAGE_SIZE as u64);
        Ok::<_, crate::store::StoreError>((head, store.list_audit(after, PAGE_SIZE)?, until))
    })
    .await?;
    let rows: Vec<AuditRow> = entries
        .iter()
        .rev()
        .filter(|e| e.seq <= until)
        .map(|e| AuditRow {
            seq: e.seq,
            at: when(&e.at),
            actor: e.actor.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            before: e.before.as_ref().map(Value::to_string).unwrap_or_default(),
            after: e.after.as_ref().map(Value::to_string).unwrap_or_default(),
            comment: e.comment.clone().unwrap_or_default(),
            hash: e.hash.chars().take(12).collect(),
        })
        .collect();
    let lowest = rows.last().map(|r| r.seq).unwrap_or(0);
    render(&Audit {
        chrome: Chrome::new(&person, &session, "/ui/audit"),
        older_href: (lowest > 1).then(|| format!("/ui/audit?until={}", lowest - 1)),
        newer_href: (until < head)
            .then(|| format!("/ui/audit?until={}", (until + PAGE_SIZE as u64).min(head))),
        rows,
        head,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_encode_hostile_ids() {
        assert_eq!(segment("a/b c\"<"), "a%2Fb%20c%22%3C");
        assert_eq!(
            url_encode("software.name = \"x\""),
            "software.name%20%3D%20%22x%22"
        );
    }

    #[test]
    fn filter_strings_escape_quotes_and_backslashes() {
        let f = format!("software.name = {}", filter_string(r#"a"b\c"#));
        assert!(filter::parse(&f).unwrap().is_some(), "{f}");
    }

    #[test]
    fn form_times_accept_datetime_local() {
        assert_eq!(
            parse_when("2026-11-23T10:30").unwrap().to_rfc3339(),
            "2026-11-23T10:30:00+00:00"
        );
        assert!(parse_when("2026-11-23").is_some());
        assert!(parse_when("yesterday").is_none());
    }
}

pub struct LicenceRow {
    pub id: String,
    pub href: String,
    pub name: String,
    pub product: String,
    pub versions: String,
    pub seats: u32,
    pub installed_on: usize,
    pub over: usize,
    pub unused: usize,
    pub expires: String,
    /// "expired", "soon" or "".
    pub expiry_class: &'static str,
    pub delete_action: String,
}

pub struct WarrantyRow {
    pub href: String,
    pub name: String,
    pub asset_tag: String,
    pub owner: String,
    pub warranty_end: String,
    pub days: i64,
}

#[derive(Template)]
#[template(path = "licences.html")]
struct LicencesPage {
    chrome: Chrome,
    rows: Vec<LicenceRow>,
    warranties: Vec<WarrantyRow>,
    warranties_total: usize,
    days: u32,
    can_edit: bool,
}

/// Licences with their consumption, and warranties ending within the window.
pub async fn licences(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
) -> UiResult {
    let store = st.store.clone();
    let now = Utc::now();
    let days = EXPIRING_DAYS as u32;
    let (uses, expiring) = blocking(move || {
        let all = store.list_licences()?;
        let (uses, _) = crate::query::licences::usage(store.as_ref(), &all, now, None)?;
        let expiring = crate::query::licences::expiring(store.as_ref(), days, now)?;
        Ok::<_, crate::store::StoreError>((uses, expiring))
    })
    .await?;
    let rows = uses.into_iter().map(licence_row).collect();
    let warranties = expiring
        .warranties
        .into_iter()
        .map(|w| WarrantyRow {
            href: format!("/ui/cis/{}", segment(&w.id)),
            name: w.name,
            asset_tag: w.asset_tag.unwrap_or_default(),
            owner: w.owner.unwrap_or_default(),
            warranty_end: w.warranty_end,
            days: w.days,
        })
        .collect();
    render(&LicencesPage {
        chrome: Chrome::new(&person, &session, "/ui/licences"),
        rows,
        warranties,
        warranties_total: expiring.warranties_total,
        days,
        can_edit: crate::register_api::REGISTER_EDITORS.permits(person.role),
    })
}

#[derive(Template)]
#[template(path = "licence.html")]
struct LicencePage {
    chrome: Chrome,
    row: LicenceRow,
    products: Vec<String>,
    computers: Vec<(String, String)>,
}

/// One licence: what it covers and the computers using it.
pub async fn licence(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> UiResult {
    let store = st.store.clone();
    let lookup = id.clone();
    let found = blocking(move || {
        let Some(l) = store.list_licences()?.into_iter().find(|l| l.id == lookup) else {
            return Ok(None);
        };
        let (mut uses, computers) = crate::query::licences::usage(
            store.as_ref(),
            std::slice::from_ref(&l),
            Utc::now(),
            Some(&l.id),
        )?;
        Ok::<_, crate::store::StoreError>(uses.pop().map(|u| (u, computers)))
    })
    .await?;
    let Some((u, computers)) = found else {
        return Err(not_found(format!("licence {id} does not exist")));
    };
    let products = u.products.clone();
    let row = licence_row(u);
    render(&LicencePage {
        chrome: Chrome::new(&person, &session, "/ui/licences"),
        row,
        products,
        computers: computers
            .into_iter()
            .map(|c| (format!("/ui/cis/{}", segment(&c.id)), c.name))
            .collect(),
    })
}

fn licence_row(u: crate::query::licences::LicenceUse) -> LicenceRow {
    LicenceRow {
        delete_action: format!("/ui/licences/{}/delete", segment(&u.licence.id)),
        href: format!("/ui/licences/{}", segment(&u.licence.id)),
        id: u.licence.id,
        name: u.licence.name,
        product: u.licence.product,
        versions: u.licence.versions,
        seats: u.licence.seats,
        installed_on: u.installed_on,
        over: u.over,
        unused: u.unused,
        expires: match (&u.licence.expires, u.expires_in_days) {
            (Some(e), Some(d)) if d < 0 => format!("{e} (expired {} days ago)", -d),
            (Some(e), Some(d)) => format!("{e} (in {d} days)"),
            _ => String::new(),
        },
        expiry_class: match u.expires_in_days {
            Some(d) if d < 0 => "expired",
            Some(d) if d <= EXPIRING_DAYS => "soon",
            _ => "",
        },
    }
}

#[derive(Template)]
#[template(path = "reconciliation.html")]
struct ReconciliationPage {
    chrome: Chrome,
    rows: Vec<ReconciliationRow>,
    total: usize,
    include_kept: bool,
    can_edit: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct ReconciliationQuery {
    all: Option<String>,
}

/// Every reconciliation item waiting for a person (with `?all=1`, kept ones too).
pub async fn reconciliation(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
    RawQuery(q): RawQuery,
) -> UiResult {
    let q: ReconciliationQuery = params(q)?;
    let include_kept = q.all.is_some_and(|a| !a.is_empty() && a != "0");
    let list = st
        .run(&person, move |ops, _| {
            crate::ops::register::reconciliation(ops, include_kept)
        })
        .await?;
    render(&ReconciliationPage {
        chrome: Chrome::new(&person, &session, "/ui/computers"),
        rows: list
            .items
            .iter()
            .map(|i| reconciliation_row(&i.ci_id, &i.ci_name, &i.field, &i.discrepancy))
            .collect(),
        total: list.total,
        include_kept,
        can_edit: crate::register_api::REGISTER_EDITORS.permits(person.role),
    })
}

#[derive(Template)]
#[template(path = "register_import.html")]
pub struct RegisterImportPage {
    pub chrome: Chrome,
    /// Where the form posts, with its CSRF token (a file upload's body is not a form).
    pub action: String,
    pub max_mib: usize,
    /// The file's name and what the import found, once one was sent.
    pub file_name: String,
    pub report: Option<crate::ops::register_csv::ImportReport>,
    /// A file that could not be read at all.
    pub file_error: String,
    pub columns: String,
}

impl RegisterImportPage {
    pub fn new(person: &Person, session: &Session, columns: String) -> Self {
        RegisterImportPage {
            chrome: Chrome::new(person, session, "/ui/computers"),
            action: format!("/ui/register/import?csrf={}", url_encode(&session.csrf)),
            max_mib: crate::ops::register_csv::MAX_IMPORT_BYTES / (1024 * 1024),
            file_name: String::new(),
            report: None,
            file_error: String::new(),
            columns,
        }
    }
}

/// The columns a register file may have, for the import page.
pub fn register_columns(settings: &crate::model::register::RegisterSettings) -> String {
    let mut columns: Vec<String> = crate::ops::register_csv::KEY_COLUMNS
        .iter()
        .map(|k| k.to_string())
        .collect();
    for f in settings.fields(CiClass::Computer) {
        if !columns.iter().any(|c| *c == f.name) {
            columns.push(f.name.into_owned());
        }
    }
    columns.join(", ")
}

/// The register import page: a file checked (a dry run) or applied.
pub async fn register_import(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
) -> UiResult {
    let settings = st
        .run(&person, |ops, _| crate::ops::register::settings(ops))
        .await?;
    render(&RegisterImportPage::new(
        &person,
        &session,
        register_columns(&settings),
    ))
}

#[derive(Debug, Default, Deserialize)]
pub struct RegisterExportQuery {
    filter: Option<String>,
}

/// The register as CSV, for a signed-in person (the API's export).
pub async fn register_export(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    RawQuery(q): RawQuery,
) -> UiResult {
    let q: RegisterExportQuery = params(q)?;
    Ok(crate::register_api::export_csv(&st, &person, q.filter.as_deref()).await?)
}

#[derive(Template)]
#[template(path = "register_settings.html")]
struct RegisterSettingsPage {
    chrome: Chrome,
    can_edit: bool,
    statuses: Vec<(String, String)>,
    default_order: Vec<(String, String)>,
    /// (field, its order as text)
    overrides: Vec<(String, String)>,
    /// (name, type, limits, description)
    custom: Vec<(String, String, String, String)>,
    fields: Vec<String>,
    sources: Vec<&'static str>,
    /// The default order's four slots for the edit form: (source, stale days).
    slots: Vec<(String, String)>,
    updated: String,
}

fn order_text(order: &[crate::model::register::SourceRank]) -> String {
    order
        .iter()
        .map(|r| match r.stale_after_days {
            Some(d) => format!("{} (holds {d} days)", r.source.as_str()),
            None => r.source.as_str().to_string(),
        })
        .collect::<Vec<_>>()
        .join(" > ")
}

fn kind_text(kind: &crate::model::register::FieldKind) -> (String, String) {
    use crate::model::register::FieldKind;
    match kind {
        FieldKind::Text { max_chars } => ("text".into(), format!("at most {max_chars} characters")),
        FieldKind::Date => ("date".into(), String::new()),
        FieldKind::Money => ("money".into(), "two decimals".into()),
        FieldKind::Status => ("status".into(), String::new()),
        FieldKind::Number { min, max, decimals } => (
            "number".into(),
            format!(
                "{} to {}, {decimals} decimals",
                min.map(|v| v.to_string()).unwrap_or_else(|| "any".into()),
                max.map(|v| v.to_string()).unwrap_or_else(|| "any".into())
            ),
        ),
        FieldKind::Enum { values } => ("enum".into(), values.join(", ")),
    }
}

/// The register's settings: status labels, source precedence, custom fields (edited by
/// administrators).
pub async fn register_settings(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
) -> UiResult {
    use crate::model::register::{Source, StatusKind};
    let settings = st
        .run(&person, |ops, _| crate::ops::register::settings(ops))
        .await?;
    let kind_name = |k: StatusKind| match k {
        StatusKind::InStock => "in stock",
        StatusKind::Deployed => "deployed",
        StatusKind::Pending => "in repair or pending",
        StatusKind::Retired => "retired or disposed",
    };
    let mut slots: Vec<(String, String)> = settings
        .default_precedence
        .iter()
        .map(|r| {
            (
                r.source.as_str().to_string(),
                r.stale_after_days
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    slots.resize(Source::ALL.len(), (String::new(), String::new()));
    render(&RegisterSettingsPage {
        chrome: Chrome::new(&person, &session, "/ui/computers"),
        can_edit: super::ADMIN.permits(person.role),
        statuses: settings
            .statuses
            .iter()
            .map(|s| (s.name.clone(), kind_name(s.kind).to_string()))
            .collect(),
        default_order: settings
            .default_precedence
            .iter()
            .map(|r| {
                (
                    r.source.as_str().replace('_', " "),
                    r.stale_after_days
                        .map(|d| format!("{d} days"))
                        .unwrap_or_else(|| "never lapses".into()),
                )
            })
            .collect(),
        overrides: settings
            .precedence
            .iter()
            .map(|p| (p.field.clone(), order_text(&p.order)))
            .collect(),
        custom: settings
            .custom_fields
            .iter()
            .map(|c| {
                let (kind, limits) = kind_text(&c.kind);
                (c.name.clone(), kind, limits, c.description.clone())
            })
            .collect(),
        fields: settings
            .fields(CiClass::Computer)
            .into_iter()
            .map(|f| f.name.into_owned())
            .collect(),
        sources: Source::ALL.iter().map(|s| s.as_str()).collect(),
        slots,
        updated: if settings.updated_by.is_empty() {
            "never changed: the defaults".into()
        } else {
            format!(
                "changed by {} · {}",
                settings.updated_by,
                when(&settings.updated_at)
            )
        },
    })
}

#[derive(Template)]
#[template(path = "health.html")]
struct HealthPage {
    chrome: Chrome,
    overall: f64,
    /// (class, CIs, completeness, correctness, compliance, score, retired)
    classes: Vec<(String, usize, f64, f64, f64, f64, usize)>,
    /// (kind, count, link to its list)
    kinds: Vec<(String, usize, String)>,
    defects: Vec<crate::query::health::Defect>,
    defects_total: usize,
    filter: String,
    /// (day, overall, computers' score)
    trend: Vec<(String, f64, String)>,
    /// The overall score over the last 90 days recorded, as an SVG line.
    trend_svg: String,
    required: Vec<(String, String)>,
    silent_after_hours: u32,
    can_edit: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct HealthQuery {
    kind: Option<String>,
    class: Option<String>,
}

/// CMDB health: scores per class, defects by kind with their lists, the trend.
pub async fn health(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
    RawQuery(q): RawQuery,
) -> UiResult {
    use crate::query::health::{DefectFilter, DefectKind, Dimension};
    let q: HealthQuery = params(q)?;
    let kind = match q.kind.as_deref().filter(|k| !k.is_empty()) {
        Some(k) => Some(k.parse::<DefectKind>().map_err(bad_request)?),
        None => None,
    };
    let class = match q.class.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(c.parse::<CiClass>().map_err(bad_request)?),
        None => None,
    };
    let filter = DefectFilter { class, kind };
    let (report, trend, settings) = st
        .run(&person, move |ops, _| {
            Ok((
                crate::ops::health::report(ops, filter)?,
                ops.store.health_trend()?,
                crate::ops::health::settings(ops)?,
            ))
        })
        .await?;
    let dim = |c: &crate::query::health::ClassHealth, d: Dimension| {
        c.dimensions
            .iter()
            .find(|x| x.dimension == d)
            .map_or(100.0, |x| x.score)
    };
    let mut kinds: BTreeMap<DefectKind, usize> = BTreeMap::new();
    for c in &report.classes {
        for (k, n) in &c.defects {
            *kinds.entry(*k).or_default() += n;
        }
    }
    render(&HealthPage {
        chrome: Chrome::new(&person, &session, "/ui/health"),
        overall: report.overall,
        classes: report
            .classes
            .iter()
            .filter(|c| c.total > 0 || c.retired > 0)
            .map(|c| {
                (
                    c.class.as_str().replace('_', " "),
                    c.total,
                    dim(c, Dimension::Completeness),
                    dim(c, Dimension::Correctness),
                    dim(c, Dimension::Compliance),
                    c.score,
                    c.retired,
                )
            })
            .collect(),
        kinds: kinds
            .into_iter()
            .map(|(k, n)| {
                (
                    k.as_str().replace('_', " "),
                    n,
                    format!("/ui/health?kind={}", k.as_str()),
                )
            })
            .collect(),
        defects_total: report.defects_total,
        defects: report.defects,
        filter: match (class, kind) {
            (None, None) => String::new(),
            (c, k) => [c.map(|c| c.as_str()), k.map(|k| k.as_str())]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", "),
        },
        trend_svg: chart::percent_line_svg(
            "health-trend",
            "Overall CMDB health score",
            &trend
                .iter()
                .rev()
                .take(90)
                .rev()
                .map(|p| (p.day, p.overall))
                .collect::<Vec<_>>(),
        ),
        trend: trend
            .iter()
            .rev()
            .take(30)
            .map(|p| {
                (
                    p.day.to_string(),
                    p.overall,
                    p.classes
                        .get(&CiClass::Computer)
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                )
            })
            .collect(),
        required: settings
            .required
            .iter()
            .map(|r| (r.class.as_str().to_string(), r.attributes.join(", ")))
            .collect(),
        silent_after_hours: settings.silent_after_hours,
        can_edit: super::ADMIN.permits(person.role),
    })
}

/// A `runs_on` entry as one line of the service form (`computer cmp_…`, `product openssl
/// < 3.0.7`, `subnet 10.1.0.0/16`, `filter label = web`), and back.
pub fn runs_on_line(r: &crate::model::service::RunsOn) -> String {
    use crate::model::service::RunsOn;
    match r {
        RunsOn::Computer { id } => format!("computer {id}"),
        RunsOn::Product { product, versions } if versions.is_empty() => {
            format!("product {product}")
        }
        RunsOn::Product { product, versions } => format!("product {product} {versions}"),
        RunsOn::Subnet { cidr } => format!("subnet {cidr}"),
        RunsOn::Filter { filter } => format!("filter {filter}"),
    }
}

pub fn parse_runs_on(text: &str) -> Result<Vec<crate::model::service::RunsOn>, String> {
    use crate::model::service::RunsOn;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, line)| {
            let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
            let rest = rest.trim().to_string();
            match kind {
                "computer" => Ok(RunsOn::Computer { id: rest }),
                "product" => {
                    let (product, versions) = rest.split_once(' ').unwrap_or((&rest, ""));
                    Ok(RunsOn::Product {
                        product: product.to_string(),
                        versions: versions.trim().to_string(),
                    })
                }
                "subnet" => Ok(RunsOn::Subnet { cidr: rest }),
                "filter" => Ok(RunsOn::Filter { filter: rest }),
                other => Err(format!(
                    "runs_on line {}: '{other}' is not computer, product, subnet or filter",
                    i + 1
                )),
            }
        })
        .collect()
}

pub struct ServiceRow {
    pub href: String,
    pub name: String,
    pub kind: String,
    pub criticality: u8,
    pub owner: String,
    pub support_group: String,
    pub depends_on: String,
}

#[derive(Template)]
#[template(path = "services.html")]
struct ServicesPage {
    chrome: Chrome,
    rows: Vec<ServiceRow>,
    /// (id, name) of every service, for the form's dependencies.
    all: Vec<(String, String)>,
    can_edit: bool,
}

fn service_rows(all: &[crate::model::service::Service]) -> Vec<ServiceRow> {
    let names: BTreeMap<&str, &str> = all
        .iter()
        .map(|s| (s.id.as_str(), s.name.as_str()))
        .collect();
    all.iter()
        .map(|s| ServiceRow {
            href: format!("/ui/services/{}", segment(&s.id)),
            name: s.name.clone(),
            kind: format!("{:?}", s.kind).to_lowercase(),
            criticality: s.criticality,
            owner: s.owner.clone(),
            support_group: s.support_group.clone(),
            depends_on: s
                .depends_on
                .iter()
                .map(|d| names.get(d.as_str()).copied().unwrap_or(d).to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect()
}

pub async fn services(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
) -> UiResult {
    let all = st
        .run(&person, |ops, _| Ok(ops.store.list_services()?))
        .await?;
    render(&ServicesPage {
        chrome: Chrome::new(&person, &session, "/ui/services"),
        rows: service_rows(&all),
        all: all.iter().map(|s| (s.id.clone(), s.name.clone())).collect(),
        can_edit: crate::services_api::SERVICE_EDITORS.permits(person.role),
    })
}

/// Advisories a service's page lists (the API lists more).
const SERVICE_ADVISORIES_SHOWN: usize = 50;

pub struct ServiceVulnRow {
    pub href: String,
    pub id: String,
    pub level: &'static str,
    pub hosts: usize,
    pub packages: String,
    pub fixed: String,
    pub summary: String,
}

#[derive(Template)]
#[template(path = "service.html")]
struct ServicePage {
    chrome: Chrome,
    service: crate::model::service::Service,
    kind: String,
    self_href: String,
    runs_on: Vec<String>,
    runs_on_text: String,
    depends_on: Vec<ServiceRow>,
    dependents: Vec<ServiceRow>,
    deps: crate::query::services::Dependencies,
    vulns: crate::vulns::exposure::ServiceReport,
    vuln_rows: Vec<ServiceVulnRow>,
    /// (version, when, by)
    history: Vec<(u64, String, String)>,
    /// (id, name, chosen) of every other service, for the edit form.
    others: Vec<(String, String, bool)>,
    can_edit: bool,
}

pub async fn service(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> UiResult {
    let lookup = id.clone();
    let (service, all, deps, history, mut vulns) = st
        .run(&person, move |ops, _| {
            let s = crate::ops::services::find(ops, &lookup)?;
            let all = ops.store.list_services()?;
            let deps = crate::query::services::dependencies(ops.store.as_ref(), &s, Utc::now())?;
            let history = ops.store.service_history(&lookup)?;
            let vulns = crate::vulns::exposure::for_service(ops.store.as_ref(), &s, &deps)?;
            Ok((s, all, deps, history, vulns))
        })
        .await?;
    let vuln_rows = std::mem::take(&mut vulns.advisories)
        .into_iter()
        .take(SERVICE_ADVISORIES_SHOWN)
        .map(|a| ServiceVulnRow {
            href: format!("/ui/vulns/{}", segment(&a.id)),
            level: a.level.map_or("", |l| l.as_str()),
            hosts: a.hosts,
            packages: a.packages.join(" "),
            fixed: a.fixed.join(" "),
            summary: a.summary,
            id: a.id,
        })
        .collect();
    let on: Vec<_> = all
        .iter()
        .filter(|s| service.depends_on.contains(&s.id))
        .cloned()
        .collect();
    let dependents: Vec<_> = all
        .iter()
        .filter(|s| s.depends_on.contains(&service.id))
        .cloned()
        .collect();
    render(&ServicePage {
        chrome: Chrome::new(&person, &session, "/ui/services"),
        kind: format!("{:?}", service.kind).to_lowercase(),
        self_href: format!("/ui/services/{}", segment(&id)),
        runs_on: service.runs_on.iter().map(runs_on_line).collect(),
        runs_on_text: service
            .runs_on
            .iter()
            .map(runs_on_line)
            .collect::<Vec<_>>()
            .join("\n"),
        depends_on: service_rows(&on),
        dependents: service_rows(&dependents),
        deps,
        vulns,
        vuln_rows,
        history: history
            .iter()
            .rev()
            .map(|v| (v.version, when(&v.updated_at), v.updated_by.clone()))
            .collect(),
        others: all
            .iter()
            .filter(|s| s.id != service.id)
            .map(|s| {
                (
                    s.id.clone(),
                    s.name.clone(),
                    service.depends_on.contains(&s.id),
                )
            })
            .collect(),
        can_edit: crate::services_api::SERVICE_EDITORS.permits(person.role),
        service,
    })
}
