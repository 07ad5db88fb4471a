//! People's read routes: CI queries with the filter language, one CI (as of a time, its
//! history, the drift between two times), the software catalogue, impact traversal,
//! identity conflicts, and exports (streamed CSV, CycloneDX SBOM).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use crate::http::{blocking, bounded, query_params as params, ApiProblem, AppState};
use crate::model::*;
use crate::people::{Allowed, Person, RouteTable};
use crate::query::{self, filter, views, Query, Sort};

const READERS: Allowed = Allowed::AnyPerson;
const EXPORTERS: Allowed = Allowed::Roles(&[Role::AssetManager, Role::Admin]);

pub fn routes(table: &mut RouteTable) {
    table
        .people("GET", "/api/v1/cis", READERS, get(list_cis))
        .query::<CiQuery>()
        .json::<CiPage>();
    table
        .people("GET", "/api/v1/cis/{id}", READERS, get(ci_detail))
        .query::<AsOf>()
        .json::<CiDetail>();
    table
        .people("GET", "/api/v1/cis/{id}/history", READERS, get(ci_history))
        .json::<CiHistory>();
    table
        .people("GET", "/api/v1/cis/{id}/diff", READERS, get(ci_diff))
        .query::<DiffQuery>()
        .json::<CiDiff>();
    table
        .people("GET", "/api/v1/cis/{id}/sbom", EXPORTERS, get(ci_sbom))
        .text("application/vnd.cyclonedx+json");
    table
        .people("GET", "/api/v1/export/cis", EXPORTERS, get(export_csv))
        .query::<ExportQuery>()
        .text("text/csv");
    table
        .people("GET", "/api/v1/software", READERS, get(software_catalogue))
        .query::<CatalogueQuery>()
        .json::<Catalogue>();
    table
        .people("GET", "/api/v1/impact", READERS, get(impact))
        .query::<ImpactQuery>()
        .refuses(&[404])
        .json::<Impact>();
    table
        .people("GET", "/api/v1/conflicts", READERS, get(conflicts))
        .json::<Conflicts>();
    table
        .people("GET", "/metrics", READERS, get(prometheus))
        .text("text/plain");
}

type Reply = Result<Response, ApiProblem>;

fn bad(field: &str, detail: impl Into<String>) -> ApiProblem {
    ApiProblem::new(StatusCode::BAD_REQUEST, detail, Some(field.to_string()))
}

fn not_found(what: String) -> ApiProblem {
    ApiProblem::new(StatusCode::NOT_FOUND, what, None)
}

fn time_param(field: &str, text: &str) -> Result<DateTime<Utc>, ApiProblem> {
    query::eval::parse_time(text, Utc::now()).ok_or_else(|| {
        bad(
            field,
            format!(
                "{field}: '{text}' is not an RFC 3339 time, a date (2026-11-01) or an age (-7d)"
            ),
        )
    })
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct CiQuery {
    /// The class listed (default computer).
    #[param(inline)]
    class: Option<CiClass>,
    /// A filter in the query language, e.g. `os.name = "Debian GNU/Linux" and package.openssl < 3.0.7`.
    filter: Option<String>,
    /// A field to sort by, `-field` for descending (default name).
    sort: Option<String>,
    /// Comma-separated fields to return (at most 100; default all).
    fields: Option<String>,
    /// At most this many (1 to 1000; default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Export: every match, streamed in id order (so no sort, cursor or limit).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    #[param(inline)]
    class: Option<CiClass>,
    filter: Option<String>,
    /// Comma-separated columns (at most 100; default id, class, name, status, ...).
    fields: Option<String>,
}

/// A page of CIs with the fields asked for.
#[derive(Debug, Serialize, ToSchema)]
struct CiPage {
    /// CIs matching the filter, over all pages.
    total: usize,
    /// One object per CI with the fields asked for (all when none were).
    items: Vec<Value>,
    /// Pass as `cursor` for the next page; absent on the last.
    next_cursor: Option<String>,
}

struct Parsed {
    query: Query,
    fields: Vec<String>,
}

fn parse_query(p: CiQuery, default_limit: usize) -> Result<Parsed, ApiProblem> {
    let class = p.class.unwrap_or(CiClass::Computer);
    let filter = filter::parse_for(class, p.filter.as_deref().unwrap_or(""))
        .map_err(|e| bad("filter", e.to_string()))?;
    let sort = Sort::parse(p.sort.as_deref().unwrap_or("name")).map_err(|e| bad("sort", e))?;
    let after = p
        .cursor
        .as_deref()
        .map(query::decode_cursor)
        .transpose()
        .map_err(|e| bad("cursor", e))?;
    let fields: Vec<String> = p
        .fields
        .as_deref()
        .map(|f| {
            f.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if fields.len() > 100 {
        return Err(bad("fields", "fields: at most 100"));
    }
    Ok(Parsed {
        query: Query {
            class,
            filter,
            sort,
            limit: bounded("limit", p.limit, default_limit, 1, query::MAX_PAGE)?,
            after,
        },
        fields,
    })
}

async fn list_cis(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
    RawQuery(q): RawQuery,
) -> Reply {
    let parsed = parse_query(params(q)?, query::DEFAULT_PAGE)?;
    let store = st.store.clone();
    let query = parsed.query;
    let page = blocking(move || query::run(store.as_ref(), &query, Utc::now())).await?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|ci| query::select(ci, &parsed.fields))
        .collect();
    Ok(Json(CiPage {
        total: page.total,
        items,
        next_cursor: page.next_cursor,
    })
    .into_response())
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct AsOf {
    /// The CI as it was then: RFC 3339, a date (2026-11-01), an age (-7d, -12h, -30m) or now.
    #[param(
        pattern = r"^(now|-[0-9]{1,9}[dhm]|[0-9]{4}-([0-9]{1,2}-[0-9]{1,2}|[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})))$"
    )]
    as_of: Option<String>,
    /// Relationships listed per direction (0 to 5000; default 200).
    #[param(minimum = 0, maximum = 5000)]
    relationships: Option<usize>,
}

/// One CI: its attributes, relationships both ways (with counts), identification evidence.
#[derive(Debug, Serialize, ToSchema)]
#[schema(value_type = Object)]
struct CiDetail(Value);

#[derive(Debug, Serialize, ToSchema)]
struct CiHistory {
    ci_id: String,
    /// Oldest first: version number, when, and what changed.
    versions: Vec<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
struct CiDiff {
    ci_id: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    items: Vec<ChangeItem>,
}

async fn ci_detail(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    let p: AsOf = params(q)?;
    let at = p
        .as_of
        .as_deref()
        .map(|t| time_param("as_of", t))
        .transpose()?;
    let store = st.store.clone();
    let lookup = id.clone();
    let limit = bounded(
        "relationships",
        p.relationships,
        views::DEFAULT_LISTED_RELATIONSHIPS,
        0,
        views::MAX_LISTED_RELATIONSHIPS,
    )?;
    match blocking(move || views::ci_detail(store.as_ref(), &lookup, at, limit)).await? {
        Some(v) => Ok(Json(CiDetail(v)).into_response()),
        None => Err(not_found(match at {
            Some(t) => format!("CI {id} did not exist at {t}"),
            None => format!("CI {id} does not exist"),
        })),
    }
}

async fn ci_history(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
    Path(id): Path<String>,
) -> Reply {
    let store = st.store.clone();
    let lookup = id.clone();
    let versions = blocking(move || views::history(store.as_ref(), &lookup)).await?;
    if versions.is_empty() {
        return Err(not_found(format!("CI {id} has no history")));
    }
    Ok(Json(CiHistory {
        ci_id: id,
        versions,
    })
    .into_response())
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct DiffQuery {
    /// Start: RFC 3339, a date or an age (-7d).
    #[param(
        required = true,
        pattern = r"^(now|-[0-9]{1,9}[dhm]|[0-9]{4}-([0-9]{1,2}-[0-9]{1,2}|[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})))$"
    )]
    from: Option<String>,
    /// End (default now).
    #[param(
        pattern = r"^(now|-[0-9]{1,9}[dhm]|[0-9]{4}-([0-9]{1,2}-[0-9]{1,2}|[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})))$"
    )]
    to: Option<String>,
}

async fn ci_diff(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    let p: DiffQuery = params(q)?;
    let from = time_param(
        "from",
        p.from
            .as_deref()
            .ok_or_else(|| bad("from", "from: required"))?,
    )?;
    let to = match p.to.as_deref() {
        Some(t) => time_param("to", t)?,
        None => Utc::now(),
    };
    let store = st.store.clone();
    let lookup = id.clone();
    match blocking(move || views::diff_between(store.as_ref(), &lookup, from, to)).await? {
        Some(items) => Ok(Json(CiDiff {
            ci_id: id,
            from,
            to,
            items,
        })
        .into_response()),
        None => Err(not_found(format!(
            "CI {id} has no version at {from} or at {to}"
        ))),
    }
}

async fn ci_sbom(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
    Path(id): Path<String>,
) -> Reply {
    let store = st.store.clone();
    let lookup = id.clone();
    match blocking(move || views::sbom(store.as_ref(), &lookup, Utc::now())).await? {
        Some(bom) => {
            let mut r = Json(bom).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.cyclonedx+json; version=1.5"),
            );
            Ok(r)
        }
        None => Err(not_found(format!("computer {id} does not exist"))),
    }
}

/// A CSV body as a download named `file`.
pub fn csv_download(body: String, file: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// A CSV document: the header line, then a line per row of text cells (each through
/// [`csv_cell`]).
pub fn csv_table<R, C>(columns: &[&str], rows: impl IntoIterator<Item = R>) -> String
where
    R: IntoIterator<Item = C>,
    C: AsRef<str>,
{
    let mut out = columns.join(",");
    out.push('\n');
    for row in rows {
        let cells: Vec<String> = row
            .into_iter()
            .map(|c| csv_cell(&Value::String(c.as_ref().to_string())))
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// One CSV cell: quoted when needed, and a leading `=`, `+`, `-`, `@`, tab or CR escaped
/// with `'` so spreadsheets never evaluate agent-supplied text as a formula.
pub fn csv_cell(value: &Value) -> String {
    let text = match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

const DEFAULT_CSV_FIELDS: [&str; 12] = [
    "id",
    "class",
    "name",
    "status",
    "first_seen",
    "last_seen",
    "os.hostname",
    "os.name",
    "os.version_id",
    "system.vendor",
    "system.model",
    "system.serial",
];

async fn export_csv(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
    RawQuery(q): RawQuery,
) -> Reply {
    let p: ExportQuery = params(q)?;
    let parsed = parse_query(
        CiQuery {
            class: p.class,
            filter: p.filter,
            fields: p.fields,
            ..CiQuery::default()
        },
        1,
    )?;
    let fields: Vec<String> = if parsed.fields.is_empty() {
        DEFAULT_CSV_FIELDS.iter().map(|s| s.to_string()).collect()
    } else {
        parsed.fields
    };
    let columns = fields.iter().map(|f| (f.clone(), f.clone())).collect();
    Ok(csv_export(
        st.store.clone(),
        parsed.query,
        columns,
        "census-cis.csv",
    ))
}

/// Streams the CIs a query matches (retired ones left out) as CSV: a header of the
/// columns' names, then per CI the value at each column's path (see [`query::select`]).
pub(crate) fn csv_export(
    store: Arc<dyn crate::store::Store>,
    query: query::Query,
    columns: Vec<(String, String)>,
    file_name: &'static str,
) -> Response {
    let (names, fields): (Vec<String>, Vec<String>) = columns.into_iter().unzip();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(16);
    tokio::task::spawn_blocking(move || {
        let header = names
            .iter()
            .map(|f| csv_cell(&json!(f)))
            .collect::<Vec<_>>()
            .join(",")
            + "\r\n";
        if tx.blocking_send(Ok(bytes::Bytes::from(header))).is_err() {
            return;
        }
        let now = Utc::now();
        let mut chunk = String::new();
        let needs_software = query
            .filter
            .as_ref()
            .is_some_and(filter::Expr::mentions_software);
        let mut failed = None;
        let result = store.scan_cis(query.class, &mut |ci| {
            if ci.status == CiStatus::Retired {
                return true;
            }
            if let Some(f) = &query.filter {
                let edges: Vec<Attributes> = if needs_software {
                    match store.relationships_from(&ci.id) {
                        Ok(r) => r
                            .into_iter()
                            .filter(|r| r.key.kind == RelKind::Installs)
                            .map(|r| r.attributes)
                            .collect(),
                        Err(e) => {
                            failed = Some(e);
                            return false;
                        }
                    }
                } else {
                    Vec::new()
                };
                let refs: Vec<&Attributes> = edges.iter().collect();
                let subject = query::eval::Subject {
                    ci: &ci,
                    software: &refs,
                    now,
                };
                if !query::eval::matches(f, &subject) {
                    return true;
                }
            }
            let row = query::select(&ci, &fields);
            let line = fields
                .iter()
                .map(|f| csv_cell(&row[f.as_str()]))
                .collect::<Vec<_>>()
                .join(",");
            chunk.push_str(&line);
            chunk.push_str("\r\n");
            if chunk.len() >= 64 * 1024 {
                let out = std::mem::take(&mut chunk);
                return tx.blocking_send(Ok(bytes::Bytes::from(out))).is_ok();
            }
            true
        });
        if let Some(e) = failed.or(result.err()) {
            // The status line is gone; end the body with an error so the client sees a
            // truncated transfer instead of a silently short file.
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            return;
        }
        if !chunk.is_empty() {
            let _ = tx.blocking_send(Ok(bytes::Bytes::from(chunk)));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut r = Body::from_stream(stream).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct CatalogueQuery {
    /// Products whose name starts with this.
    prefix: Option<String>,
    /// At most this many (1 to 1000; default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// `next_after` of the previous page.
    after: Option<String>,
}

/// Software products with install counts and version spread.
#[derive(Debug, Serialize, ToSchema)]
struct Catalogue {
    total: usize,
    products: Vec<Value>,
    next_after: Option<String>,
}

async fn software_catalogue(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
    RawQuery(q): RawQuery,
) -> Reply {
    let p: CatalogueQuery = params(q)?;
    let limit = bounded("limit", p.limit, 100, 1, query::MAX_PAGE)?;
    let store = st.store.clone();
    let (items, total) = blocking(move || {
        views::catalogue(
            store.as_ref(),
            p.prefix.as_deref(),
            limit,
            p.after.as_deref(),
        )
    })
    .await?;
    let next = (items.len() == limit)
        .then(|| {
            items
                .last()
                .and_then(|i| i["id"].as_str().map(str::to_string))
        })
        .flatten();
    Ok(Json(Catalogue {
        total,
        products: items,
        next_after: next,
    })
    .into_response())
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ImpactQuery {
    /// A CI id to start from: a software product, OS release, subnet or computer.
    #[param(required = true)]
    from: Option<String>,
    /// Relationship hops (1 to 4; default 2).
    #[param(minimum = 1, maximum = 4)]
    depth: Option<usize>,
    /// For a product: only installs whose version matches, e.g. `< 3.0.7`.
    version: Option<String>,
    /// At most this many CIs reached (1 to 10000; default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
}

/// What a CI reaches: the CIs found per hop and the relationships that lead to them.
#[derive(Debug, Serialize, ToSchema)]
#[schema(value_type = Object)]
struct Impact(Value);

#[derive(Debug, Serialize, ToSchema)]
struct Conflicts {
    conflicts: Vec<IdentityConflict>,
}

async fn impact(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
    RawQuery(q): RawQuery,
) -> Reply {
    let p: ImpactQuery = params(q)?;
    let from = p.from.ok_or_else(|| {
        bad(
            "from",
            "from: give a CI id (a product, OS release, subnet or computer)",
        )
    })?;
    let version = p
        .version
        .as_deref()
        .map(query::version_condition)
        .transpose()
        .map_err(|e| bad("version", format!("version: {}", e.message)))?;
    let depth = bounded("depth", p.depth, 2, 1, views::MAX_IMPACT_DEPTH)?;
    let limit = bounded("limit", p.limit, 1000, 1, views::MAX_IMPACT_NODES)?;
    let store = st.store.clone();
    let lookup = from.clone();
    match blocking(move || views::impact(store.as_ref(), &lookup, depth, version.as_ref(), limit))
        .await?
    {
        Some(v) => Ok(Json(Impact(v)).into_response()),
        None => Err(not_found(format!("CI {from} does not exist"))),
    }
}

async fn prometheus(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
) -> Reply {
    let Some(handle) = &st.metrics else {
        return Err(ApiProblem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are not recorded in this process",
            None,
        ));
    };
    let mut r = handle.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(r)
}

async fn conflicts(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
) -> Reply {
    let store = st.store.clone();
    let list = blocking(move || store.list_conflicts()).await?;
    Ok(Json(Conflicts { conflicts: list }).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_formula_safe_and_quoted() {
        assert_eq!(
            csv_cell(&json!("=HYPERLINK(\"x\")")),
            "\"'=HYPERLINK(\"\"x\"\")\""
        );
        assert_eq!(csv_cell(&json!("+1")), "'+1");
        assert_eq!(csv_cell(&json!("-cmd")), "'-cmd");
        assert_eq!(csv_cell(&json!("@SUM(A1)")), "'@SUM(A1)");
        assert_eq!(csv_cell(&json!("a,b")), "\"a,b\"");
        assert_eq!(csv_cell(&json!("line\nbreak")), "\"line\nbreak\"");
        assert_eq!(
            csv_cell(&json!(["10.0.0.1", "10.0.0.2"])),
            "10.0.0.1 10.0.0.2"
        );
        assert_eq!(csv_cell(&Value::Null), "");
        assert_eq!(csv_cell(&json!(42)), "42");
    }
}
