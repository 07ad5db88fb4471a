//! Queries for asset managers: CIs by class with the filter language, sorted, paged with
//! stable cursors, narrowed to selected fields. Reads go through `Store` only.
//!
//! The path of one query: parse (`filter::parse`) -> candidates (from the product's
//! `installs` edges when the filter requires a package name, else a scan of the class) ->
//! `eval::matches` -> sort by (key, id) -> the page after the cursor.

pub mod compliance;
pub mod eval;
pub mod filter;
pub mod health;
pub mod licences;
pub mod map;
pub mod services;
pub mod titles;
pub mod views;

use std::cmp::Ordering;
use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::model::*;
use crate::reconcile::det_id;
use crate::store::{Store, StoreError};
use filter::{Expr, Field};

pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;

#[derive(Debug, Clone)]
pub struct Sort {
    pub key: String,
    pub descending: bool,
}

impl Sort {
    pub fn parse(text: &str) -> Result<Sort, String> {
        let (descending, key) = match text.strip_prefix('-') {
            Some(k) => (true, k),
            None => (false, text),
        };
        let ok = matches!(key, "id" | "name" | "first_seen" | "last_seen")
            || (key.contains('.')
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_'));
        if !ok {
            return Err(format!(
                "sort: '{key}' is not id, name, first_seen, last_seen or an attribute path"
            ));
        }
        Ok(Sort {
            key: key.to_string(),
            descending,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Query {
    pub class: CiClass,
    pub filter: Option<Expr>,
    pub sort: Sort,
    pub limit: usize,
    /// Continue after this (sort value, id), from a previous page's `next_cursor`.
    pub after: Option<(Value, String)>,
}

#[derive(Debug)]
pub struct Page {
    pub items: Vec<Ci>,
    pub total: usize,
    pub next_cursor: Option<String>,
}

pub fn encode_cursor(value: &Value, id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!([value, id]).to_string())
}

pub fn decode_cursor(text: &str) -> Result<(Value, String), String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| "cursor: not a cursor from a previous page".to_string())?;
    let v: (Value, String) = serde_json::from_slice(&bytes)
        .map_err(|_| "cursor: not a cursor from a previous page".to_string())?;
    Ok(v)
}

fn sort_value(ci: &Ci, key: &str) -> Value {
    match key {
        "id" => json!(ci.id),
        "name" => json!(ci.name),
        "first_seen" => json!(ci.first_seen.timestamp_micros()),
        "last_seen" => json!(ci.last_seen.timestamp_micros()),
        path => ci
            .attributes
            .get(path)
            .or_else(|| ci.volatile.get(path))
            .cloned()
            .unwrap_or(Value::Null),
    }
}

/// Missing values sort last; numbers numerically; strings in the generic version order.
fn compare_values(a: &Value, b: &Value) -> Ordering {
    use census_shared::version::{compare, VersionScheme};
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Greater,
        (_, Value::Null) => Ordering::Less,
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => {
            compare(VersionScheme::Generic, x, y).then_with(|| x.cmp(y))
        }
        _ => a.to_string().cmp(&b.to_string()),
    }
}

fn mentions_status(e: &Expr) -> bool {
    match e {
        Expr::And(v) | Expr::Or(v) => v.iter().any(mentions_status),
        Expr::Not(e) => mentions_status(e),
        Expr::Cond(c) => *c.field() == Field::Status,
    }
}

/// Whether all `software.*` conditions are direct children of the top-level `and` (so a
/// product's own edges are all evaluation needs).
fn software_only_at_top(e: &Expr) -> bool {
    fn none_below(e: &Expr) -> bool {
        !e.mentions_software()
    }
    match e {
        Expr::Cond(_) => true,
        Expr::And(parts) => parts.iter().all(|p| match p {
            Expr::Cond(_) => true,
            other => none_below(other),
        }),
        other => none_below(other),
    }
}

/// A filter made only of `software.*` conditions joined by `and` (no status, no other
/// attribute): the product's edges decide it alone.
fn only_software(e: &Expr) -> bool {
    match e {
        Expr::Cond(c) => c.is_software(),
        Expr::And(parts) => parts
            .iter()
            .all(|p| matches!(p, Expr::Cond(c) if c.is_software())),
        _ => false,
    }
}

/// "Which computers have package X below version V", ordered by name or id: decided by
/// the product's installs alone, so only each match's summary (id, name, status) is read,
/// and the whole CI only for the page shown. Same answer as the general path (pinned by a
/// test).
fn run_on_installs(store: &dyn Store, q: &Query, computers: &[u64]) -> Result<Page, StoreError> {
    let by_name = q.sort.key == "name";
    let summaries = store.computer_summaries(computers)?;
    let matched: Vec<(Text, Arc<str>, Arc<str>)> = summaries
        .into_iter()
        .flatten()
        .filter(|s| s.status != CiStatus::Retired)
        .map(|s| {
            let key = Text(if by_name { s.name } else { s.id.clone() });
            (key, s.id.clone(), s.id)
        })
        .collect();
    let (page, total, next_cursor) = paginate(matched, q);
    let ids: Vec<&str> = page.iter().map(|id| &**id).collect();
    let items = store.get_cis(&ids)?.into_iter().flatten().collect();
    Ok(Page {
        items,
        total,
        next_cursor,
    })
}

/// What a page is ordered by: compared as [`compare_values`] compares the value it stands
/// for, so a page is the same whichever key type a path sorts with.
trait SortKey {
    fn order(&self, other: &Self) -> Ordering;
    /// Against a cursor's value.
    fn order_value(&self, value: &Value) -> Ordering;
    fn value(&self) -> Value;
}

impl SortKey for Value {
    fn order(&self, other: &Self) -> Ordering {
        compare_values(self, other)
    }
    fn order_value(&self, value: &Value) -> Ordering {
        compare_values(self, value)
    }
    fn value(&self) -> Value {
        self.clone()
    }
}

/// A text sort value (a name, an id) without a `Value` allocated per match.
struct Text(Arc<str>);

impl SortKey for Text {
    fn order(&self, other: &Self) -> Ordering {
        compare_text_values(&self.0, &other.0)
    }
    fn order_value(&self, value: &Value) -> Ordering {
        match value {
            Value::String(s) => compare_text_values(&self.0, s),
            other => compare_values(&self.value(), other),
        }
    }
    fn value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

/// [`compare_values`] of two strings.
fn compare_text_values(x: &str, y: &str) -> Ordering {
    census_shared::version::compare(census_shared::version::VersionScheme::Generic, x, y)
        .then_with(|| x.cmp(y))
}

/// One match in the bounded heap of [`paginate`]: the greatest (the last on the page) on
/// top.
struct Ranked<K, I, T> {
    key: K,
    id: I,
    item: T,
    descending: bool,
}

impl<K: SortKey, I: AsRef<str>, T> Ranked<K, I, T> {
    fn rank(&self, other: &Self) -> Ordering {
        let o = self
            .key
            .order(&other.key)
            .then_with(|| self.id.as_ref().cmp(other.id.as_ref()));
        if self.descending {
            o.reverse()
        } else {
            o
        }
    }
}

impl<K: SortKey, I: AsRef<str>, T> PartialEq for Ranked<K, I, T> {
    fn eq(&self, other: &Self) -> bool {
        self.rank(other) == Ordering::Equal
    }
}
impl<K: SortKey, I: AsRef<str>, T> Eq for Ranked<K, I, T> {}
impl<K: SortKey, I: AsRef<str>, T> PartialOrd for Ranked<K, I, T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K: SortKey, I: AsRef<str>, T> Ord for Ranked<K, I, T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank(other)
    }
}

/// Orders `(sort key, id, item)` by (key, id), and returns the page after the cursor, the
/// total and the next cursor. Only the page is kept in order: a heap of `limit` matches,
/// each other match compared once with its greatest (tens of thousands of matches, a page
/// of a hundred: about half the comparisons of a selection, and the version-aware
/// comparison of names is what costs).
fn paginate<K: SortKey, I: AsRef<str>, T>(
    matched: Vec<(K, I, T)>,
    q: &Query,
) -> (Vec<T>, usize, Option<String>) {
    let total = matched.len();
    let descending = q.sort.descending;
    let after = |key: &K, id: &I| match &q.after {
        None => true,
        Some((value, after_id)) => {
            let o = key
                .order_value(value)
                .then_with(|| id.as_ref().cmp(after_id.as_str()));
            let o = if descending { o.reverse() } else { o };
            o == Ordering::Greater
        }
    };
    let mut heap: std::collections::BinaryHeap<Ranked<K, I, T>> =
        std::collections::BinaryHeap::with_capacity(q.limit + 1);
    let mut remaining = 0usize;
    for (key, id, item) in matched {
        if !after(&key, &id) {
            continue;
        }
        remaining += 1;
        if q.limit == 0 {
            continue;
        }
        let ranked = Ranked {
            key,
            id,
            item,
            descending,
        };
        if heap.len() < q.limit {
            heap.push(ranked);
        } else if heap.peek().is_some_and(|top| ranked < *top) {
            heap.pop();
            heap.push(ranked);
        }
    }
    let page = heap.into_sorted_vec();
    let next_cursor = (page.len() == q.limit && remaining > q.limit)
        .then(|| {
            page.last()
                .map(|r| encode_cursor(&r.key.value(), r.id.as_ref()))
        })
        .flatten();
    (
        page.into_iter().map(|r| r.item).collect(),
        total,
        next_cursor,
    )
}

/// (computer, variant) pairs, ordered by computer, as one entry per computer (a computer
/// can install a product more than once: amd64 and i386).
fn group_by_computer(installs: Vec<(u64, usize)>) -> Vec<(u64, Vec<usize>)> {
    let mut grouped: Vec<(u64, Vec<usize>)> = Vec::new();
    for (computer, variant) in installs {
        match grouped.last_mut() {
            Some((key, variants)) if *key == computer => variants.push(variant),
            _ => grouped.push((computer, vec![variant])),
        }
    }
    grouped
}

pub(crate) fn installs(edges: Vec<Relationship>) -> Vec<Attributes> {
    edges
        .into_iter()
        .filter(|r| r.key.kind == RelKind::Installs)
        .map(|r| r.attributes)
        .collect()
}

/// Runs a query. Retired CIs are left out unless the filter mentions `status`.
pub fn run(store: &dyn Store, q: &Query, now: DateTime<Utc>) -> Result<Page, StoreError> {
    let mut candidates: Vec<(Ci, Vec<Attributes>)> = Vec::new();
    let needs_software = q.filter.as_ref().is_some_and(Expr::mentions_software);
    let indexed = q
        .filter
        .as_ref()
        .filter(|_| q.class == CiClass::Computer)
        .and_then(|f| f.required_software_name().map(|n| (f, n)));
    match indexed {
        Some((f, name)) => {
            let product = det_id(CiClass::SoftwareProduct, &[&name.trim().to_lowercase()]);
            let product_installs = store.installs_of(&product)?;
            let own_edges_suffice = software_only_at_top(f);
            // With every software condition at the top, a computer whose packages fail them
            // cannot match: drop it before reading its CI.
            let software_part = match f {
                Expr::And(parts) if own_edges_suffice => Some(Expr::And(
                    parts
                        .iter()
                        .filter(|p| matches!(p, Expr::Cond(c) if c.is_software()))
                        .cloned()
                        .collect(),
                )),
                Expr::Cond(c) if c.is_software() => Some(f.clone()),
                _ => None,
            };
            // Once per distinct variant, not once per install.
            let variant_passes: Vec<bool> = product_installs
                .variants
                .iter()
                .map(|v| {
                    software_part
                        .as_ref()
                        .is_none_or(|p| eval::matches_edge(p, v))
                })
                .collect();
            let by_computer: Vec<(u64, Vec<usize>)> = group_by_computer(product_installs.installs)
                .into_iter()
                .filter(|(_, variants)| variants.iter().any(|&i| variant_passes[i]))
                .collect();
            let keys: Vec<u64> = by_computer.iter().map(|(k, _)| *k).collect();
            if only_software(f) && matches!(q.sort.key.as_str(), "id" | "name") {
                return run_on_installs(store, q, &keys);
            }
            let summaries = store.computer_summaries(&keys)?;
            for ((_, variants), summary) in by_computer.into_iter().zip(summaries) {
                let Some(summary) = summary else {
                    continue;
                };
                let Some(ci) = store.get_ci(&summary.id)? else {
                    continue;
                };
                let edges = if own_edges_suffice {
                    variants
                        .iter()
                        .map(|&i| product_installs.variants[i].clone())
                        .collect()
                } else {
                    installs(store.relationships_from(&ci.id)?)
                };
                candidates.push((ci, edges));
            }
        }
        None => {
            for ci in store.list_cis(Some(q.class))? {
                let edges = if needs_software {
                    installs(store.relationships_from(&ci.id)?)
                } else {
                    Vec::new()
                };
                candidates.push((ci, edges));
            }
        }
    }
    let keep_retired = q.filter.as_ref().is_some_and(mentions_status);
    let matched: Vec<(Value, String, Ci)> = candidates
        .into_iter()
        .filter(|(ci, _)| keep_retired || ci.status != CiStatus::Retired)
        .filter(|(ci, edges)| match &q.filter {
            None => true,
            Some(f) => {
                let refs: Vec<&Attributes> = edges.iter().collect();
                eval::matches(
                    f,
                    &eval::Subject {
                        ci,
                        software: &refs,
                        now,
                    },
                )
            }
        })
        .map(|(ci, _)| (sort_value(&ci, &q.sort.key), ci.id.clone(), ci))
        .collect();
    let (items, total, next_cursor) = paginate(matched, q);
    Ok(Page {
        items,
        total,
        next_cursor,
    })
}

/// One CI narrowed to `fields` (top-level names or attribute paths); all of it if empty.
pub fn select(ci: &Ci, fields: &[String]) -> Value {
    if fields.is_empty() {
        return json!(ci);
    }
    let full = json!(ci);
    let mut out = serde_json::Map::new();
    for f in fields {
        let v = match full.get(f) {
            Some(v) => v.clone(),
            None => ci
                .attributes
                .get(f)
                .or_else(|| ci.volatile.get(f))
                .cloned()
                .unwrap_or(Value::Null),
        };
        out.insert(f.clone(), v);
    }
    Value::Object(out)
}

/// A `software.version` condition without its name, for impact queries ("<3.0.7").
pub fn version_condition(text: &str) -> Result<Expr, filter::FilterError> {
    let trimmed = text.trim();
    let (op, rest) = ["<=", ">=", "!=", "<", ">", "="]
        .iter()
        .find_map(|op| trimmed.strip_prefix(op).map(|r| (*op, r)))
        .unwrap_or(("=", trimmed));
    let expr = format!(
        "software.version {op} \"{}\"",
        rest.trim().replace(['"', '\\'], "")
    );
    filter::parse(&expr)?.ok_or(filter::FilterError {
        position: 0,
        message: "empty version condition".into(),
    })
}

#[cfg(test)]
mod paginate_tests {
    use super::*;
    use proptest::prelude::*;

    fn query(limit: usize, descending: bool, after: Option<(Value, String)>) -> Query {
        Query {
            class: CiClass::Computer,
            filter: None,
            sort: Sort {
                key: "name".into(),
                descending,
            },
            limit,
            after,
        }
    }

    proptest! {
        /// Paging through with the heap gives what sorting everything and cutting pages
        /// gives, with text keys and with values, both directions.
        #[test]
        fn pages_are_the_full_order_cut_into_pieces(
            names in proptest::collection::vec("[a-c]{0,2}[0-9]{0,2}", 0..60),
            limit in 1usize..8,
            descending in any::<bool>(),
        ) {
            let mut expected: Vec<(String, String)> = names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), format!("cmp_{i:03}")))
                .collect();
            expected.sort_by(|a, b| {
                let o = compare_text_values(&a.0, &b.0).then_with(|| a.1.cmp(&b.1));
                if descending { o.reverse() } else { o }
            });
            let mut after = None;
            let mut seen_text = Vec::new();
            let mut seen_value = Vec::new();
            loop {
                let q = query(limit, descending, after.clone());
                let texts: Vec<(Text, Arc<str>, String)> = expected
                    .iter()
                    .rev()
                    .map(|(n, id)| (Text(n.as_str().into()), id.as_str().into(), id.clone()))
                    .collect();
                let values: Vec<(Value, String, String)> = expected
                    .iter()
                    .map(|(n, id)| (Value::String(n.clone()), id.clone(), id.clone()))
                    .collect();
                let (page, total, next) = paginate(texts, &q);
                let (page_v, total_v, next_v) = paginate(values, &q);
                prop_assert_eq!(total, names.len());
                prop_assert_eq!(total_v, names.len());
                prop_assert_eq!(&page, &page_v);
                prop_assert_eq!(&next, &next_v);
                seen_text.extend(page);
                seen_value.extend(page_v);
                match next {
                    Some(c) => after = Some(decode_cursor(&c).unwrap()),
                    None => break,
                }
            }
            let want: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
            prop_assert_eq!(seen_text, want.clone());
            prop_assert_eq!(seen_value, want);
        }
    }
}
