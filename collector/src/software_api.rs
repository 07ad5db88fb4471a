//! People's routes for software titles: the titles the catalogue rolls into, the title
//! rules (the draft people edit, the applied set reads use) and their replay over the CMDB.
//! HTTP only: the titling is [`crate::query::titles`], the writes [`crate::ops::software`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::{blocking, bounded, query_params, read_json, ApiProblem, AppState};
use crate::model::titles::{SoftwareRule, SoftwareRuleBook};
use crate::model::*;
use crate::ops::software as op;
use crate::people::{Allowed, Person, RouteTable};
use crate::query::titles::{self, ReplayReport, TitleEntry, TitleFilter};

const READERS: Allowed = Allowed::AnyPerson;
const RULE_EDITORS: Allowed = Allowed::Roles(&[Role::AssetManager, Role::Admin]);
/// Longest prefix or category a title filter takes.
pub const MAX_FILTER_CHARS: usize = 200;

pub fn routes(table: &mut RouteTable) {
    table
        .people("GET", "/api/v1/software/titles", READERS, get(list_titles))
        .query::<TitlesQuery>()
        .json::<TitlesPage>();
    table
        .people("GET", "/api/v1/software/rules", READERS, get(get_rules))
        .json::<SoftwareRuleBook>();
    table
        .people(
            "PUT",
            "/api/v1/software/rules",
            RULE_EDITORS,
            put(put_rules),
        )
        .body::<RulesRequest>()
        .json::<SoftwareRuleBook>();
    table
        .people(
            "POST",
            "/api/v1/software/rules/replay",
            RULE_EDITORS,
            post(replay),
        )
        .query::<ReplayQuery>()
        .json::<ReplayReport>();
}

type Reply = Result<Response, ApiProblem>;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct TitlesQuery {
    /// Titles whose product starts with this (case-insensitive).
    #[param(max_length = 200)]
    prefix: Option<String>,
    /// Titles of this category; `-` for titles without one.
    #[param(max_length = 200)]
    category: Option<String>,
    /// 1 to 1000; default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// `next_after` of the previous page.
    #[param(max_length = 200)]
    after: Option<String>,
}

/// Software titles: packages rolled into products, with computers and versions.
#[derive(Debug, Serialize, ToSchema)]
struct TitlesPage {
    total: usize,
    titles: Vec<TitleEntry>,
    next_after: Option<String>,
}

fn short(field: &str, v: &Option<String>) -> Result<(), ApiProblem> {
    match v {
        Some(s) if s.chars().count() > MAX_FILTER_CHARS => Err(ApiProblem::new(
            axum::http::StatusCode::BAD_REQUEST,
            format!("{field}: longer than {MAX_FILTER_CHARS} characters"),
            Some(field.into()),
        )),
        _ => Ok(()),
    }
}

async fn list_titles(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
    RawQuery(q): RawQuery,
) -> Reply {
    let p: TitlesQuery = query_params(q)?;
    short("prefix", &p.prefix)?;
    short("category", &p.category)?;
    short("after", &p.after)?;
    let limit = bounded("limit", p.limit, 100, 1, crate::query::MAX_PAGE)?;
    let filter = TitleFilter {
        prefix: p.prefix,
        category: p.category,
    };
    let store = st.store.clone();
    let after = p.after;
    let (titles, total) =
        blocking(move || titles::titles(store.as_ref(), &filter, limit, after.as_deref())).await?;
    let next_after = (titles.len() == limit)
        .then(|| titles.last().map(|t| t.product.clone()))
        .flatten();
    Ok(Json(TitlesPage {
        total,
        titles,
        next_after,
    })
    .into_response())
}

async fn get_rules(State(st): State<Arc<AppState>>, Extension(person): Extension<Person>) -> Reply {
    let book = st.run(&person, |ops, _| op::rules(ops)).await?;
    Ok(Json(book).into_response())
}

/// The draft rule set: ordered, the first rule that matches a product decides its title.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RulesRequest {
    rules: Vec<SoftwareRule>,
}

async fn put_rules(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    body: Body,
) -> Reply {
    let req: RulesRequest = read_json(body).await?;
    let book = st
        .run(&person, move |ops, actor| {
            op::put_draft(ops, actor, req.rules)
        })
        .await?;
    Ok(Json(book).into_response())
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ReplayQuery {
    /// `false` applies the draft; by default only what it would change is reported.
    dry_run: Option<bool>,
}

async fn replay(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    RawQuery(q): RawQuery,
) -> Reply {
    let p: ReplayQuery = query_params(q)?;
    let dry_run = p.dry_run.unwrap_or(true);
    let report = st
        .run(&person, move |ops, actor| {
            op::replay(ops, actor, dry_run, &mut |done, total| {
                tracing::debug!(done, total, "software title replay progress");
            })
        })
        .await?;
    Ok(Json(report).into_response())
}
