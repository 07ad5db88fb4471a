//! The software titles page: packages rolled into products by the applied title rules,
//! filtered by name and category, and the rules themselves in order. Reads only, through
//! [`crate::query::titles`] as the API does; rules are edited through the API and CLI.

use std::sync::Arc;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::Extension;
use serde::Deserialize;

use super::pages::{params, segment, url_encode, PAGE_SIZE};
use super::{render, Chrome, UiResult};
use crate::http::{blocking, AppState};
use crate::people::Person;
use crate::query::titles::{self, TitleFilter};
use crate::ui::session::Session;

pub struct TitleRow {
    pub product: String,
    pub publisher: String,
    pub category: String,
    pub computers: usize,
    pub distinct_versions: usize,
    /// Newest first, in the package's own order.
    pub versions: String,
    pub packages: Vec<(String, String)>,
    pub more_packages: usize,
}

pub struct RuleRow {
    pub number: usize,
    pub matches: String,
    pub sets: String,
}

#[derive(Template)]
#[template(path = "titles.html")]
struct TitlesPage {
    chrome: Chrome,
    prefix: String,
    category: String,
    total: usize,
    rows: Vec<TitleRow>,
    next_href: Option<String>,
    rules: Vec<RuleRow>,
    version: u64,
    draft_pending: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct TitlesQuery {
    prefix: Option<String>,
    category: Option<String>,
    after: Option<String>,
}

pub async fn titles(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Extension(session): Extension<Session>,
    RawQuery(q): RawQuery,
) -> UiResult {
    let p: TitlesQuery = params(q)?;
    let prefix = p.prefix.unwrap_or_default();
    let category = p.category.unwrap_or_default();
    let filter = TitleFilter {
        prefix: Some(prefix.clone()).filter(|s| !s.is_empty()),
        category: Some(category.clone()).filter(|s| !s.is_empty()),
    };
    let store = st.store.clone();
    let after = p.after;
    let ((entries, total), book) = blocking(move || {
        let page = titles::titles(store.as_ref(), &filter, PAGE_SIZE, after.as_deref())?;
        Ok((page, titles::rule_book(store.as_ref())?))
    })
    .await?;
    let next_href = (entries.len() == PAGE_SIZE)
        .then(|| entries.last().map(|t| t.product.clone()))
        .flatten()
        .map(|last| {
            format!(
                "/ui/software/titles?prefix={}&category={}&after={}",
                url_encode(&prefix),
                url_encode(&category),
                url_encode(&last)
            )
        });
    let rows = entries
        .into_iter()
        .map(|t| TitleRow {
            more_packages: t.packages_total.saturating_sub(t.packages.len()),
            packages: t
                .packages
                .into_iter()
                .map(|p| (format!("/ui/cis/{}", segment(&p.id)), p.name))
                .collect(),
            product: t.product,
            publisher: t.publisher.unwrap_or_default(),
            category: t.category.unwrap_or_default(),
            computers: t.computers,
            distinct_versions: t.distinct_versions,
            versions: t
                .versions
                .iter()
                .take(5)
                .map(|v| format!("{} ({})", v.version, v.computers))
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    let rules = book
        .applied
        .iter()
        .enumerate()
        .map(|(i, r)| RuleRow {
            number: i + 1,
            matches: described(
                &[
                    ("name", &r.name),
                    ("publisher", &r.publisher),
                    ("source", &r.source),
                    ("source package", &r.source_package),
                ],
                "~",
            ),
            sets: described(
                &[
                    ("publisher", &r.set_publisher),
                    ("product", &r.set_product),
                    ("category", &r.set_category),
                ],
                "=",
            ),
        })
        .collect();
    render(&TitlesPage {
        chrome: Chrome::new(&person, &session, "/ui/software"),
        prefix,
        category,
        total,
        rows,
        next_href,
        rules,
        version: book.version,
        draft_pending: book.draft != book.applied,
    })
}

/// A rule's given fields as `name ~ pattern, ...` (or `=` for what it sets).
fn described(fields: &[(&str, &Option<String>)], op: &str) -> String {
    fields
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {op} {v}")))
        .collect::<Vec<_>>()
        .join(", ")
}
