//! Software titles over the CMDB: every software product titled with the applied rules
//! ([`crate::model::titles`]), the titles with their packages, computers and versions (in
//! the package's own order, newest first), and a replay of a rule set over every product
//! that says what it changes. Reads go through `Store`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use census_shared::version::{self, VersionScheme};
use serde::Serialize;
use serde_json::Value;

use crate::model::titles::{ProductFacts, SoftwareRule, SoftwareRuleBook, Title, Titler};
use crate::model::{Ci, CiClass};
use crate::store::{Store, StoreError};

/// Products a replay evaluates between two progress reports.
pub const REPLAY_BATCH: usize = 1000;
/// Most changed products a replay lists (all are counted).
pub const MAX_LISTED_CHANGES: usize = 200;
/// Most packages a title lists (all are counted).
pub const MAX_LISTED_PACKAGES: usize = 50;
/// Most versions a title lists (all are counted).
pub const MAX_LISTED_VERSIONS: usize = 20;

/// The rule book in force: the stored one, or the built-in rules.
pub fn rule_book(store: &dyn Store) -> Result<SoftwareRuleBook, StoreError> {
    Ok(store.software_rules()?.unwrap_or_default())
}

/// The applied rules compiled, reused while they stay the same (compiling a thousand
/// patterns costs more than titling a fleet's products).
fn applied_titler(store: &dyn Store) -> Result<Arc<Titler>, StoreError> {
    type Compiled = Option<(Vec<SoftwareRule>, Arc<Titler>)>;
    static LAST: Mutex<Compiled> = Mutex::new(None);
    let book = rule_book(store)?;
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((rules, titler)) = last.as_ref() {
        if *rules == book.applied {
            return Ok(titler.clone());
        }
    }
    // Stored rules were validated when saved; a set that no longer compiles (a newer
    // collector's syntax) titles nothing rather than failing every read.
    let titler = Arc::new(Titler::compile(&book.applied).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "stored software title rules do not compile; titling without them");
        Titler::compile(&[]).unwrap_or_else(|_| unreachable!("an empty rule set compiles"))
    }));
    *last = Some((book.applied, titler.clone()));
    Ok(titler)
}

/// Every software product's facts: its name, and the publisher, source and source package
/// its packages report (the first a package gives, in the store's order).
pub fn product_facts(store: &dyn Store) -> Result<BTreeMap<String, ProductFacts>, StoreError> {
    let products = store.list_cis(Some(CiClass::SoftwareProduct))?;
    facts_of(store, products.into_iter().map(|p| (p.id, p.name)))
}

/// The facts of the products given as (id, name), which the caller listed already.
fn facts_of(
    store: &dyn Store,
    products: impl IntoIterator<Item = (String, String)>,
) -> Result<BTreeMap<String, ProductFacts>, StoreError> {
    let mut facts: BTreeMap<String, ProductFacts> = products
        .into_iter()
        .map(|(id, name)| {
            (
                id,
                ProductFacts {
                    name,
                    ..ProductFacts::default()
                },
            )
        })
        .collect();
    store.scan_variants(&mut |product, package| {
        if let Some(f) = facts.get_mut(product) {
            for (have, give) in [
                (&mut f.publisher, &package.publisher),
                (&mut f.source, &package.source),
            ] {
                if have.is_none() {
                    have.clone_from(give);
                }
            }
            if f.source_package.is_none() {
                // The name only: `lvm2 (2.03.16-2)` titles as lvm2, whatever the version.
                f.source_package = package
                    .source_package
                    .as_deref()
                    .map(|s| census_shared::schema::source_parts(s).0.to_string());
            }
        }
        true
    })?;
    Ok(facts)
}

/// The titles of `products` under the applied rules, by product id.
pub fn titles_of(store: &dyn Store, products: &[Ci]) -> Result<HashMap<String, Title>, StoreError> {
    let titler = applied_titler(store)?;
    let named = products.iter().map(|p| (p.id.clone(), p.name.clone()));
    Ok(facts_of(store, named)?
        .into_iter()
        .map(|(id, f)| {
            let t = titler.title(&f);
            (id, t)
        })
        .collect())
}

/// Which titles to list.
#[derive(Debug, Clone, Default)]
pub struct TitleFilter {
    /// Titles whose product starts with this (case-insensitive).
    pub prefix: Option<String>,
    /// Titles of this category (case-insensitive); `-` for titles without one.
    pub category: Option<String>,
}

/// A version of a title and how many computers have it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct VersionCount {
    pub version: String,
    pub computers: usize,
}

/// One title with what rolls into it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TitleEntry {
    pub product: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Computers installing any of its packages.
    pub computers: usize,
    pub packages_total: usize,
    /// Its packages (software product CIs) by name: the first [`MAX_LISTED_PACKAGES`].
    pub packages: Vec<TitlePackage>,
    pub distinct_versions: usize,
    /// Newest first in the package's own order: the first [`MAX_LISTED_VERSIONS`].
    pub versions: Vec<VersionCount>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TitlePackage {
    pub id: String,
    pub name: String,
}

/// Titles by product name (case-insensitive), each once, the page after `after` (a
/// title's product as the previous page's last gave it); and how many titles pass.
pub fn titles(
    store: &dyn Store,
    filter: &TitleFilter,
    limit: usize,
    after: Option<&str>,
) -> Result<(Vec<TitleEntry>, usize), StoreError> {
    let titler = applied_titler(store)?;
    let facts = product_facts(store)?;
    let prefix = filter.prefix.as_deref().map(str::to_lowercase);
    let category = filter.category.as_deref().map(str::to_lowercase);
    // Title key (lowercased product) -> its packages with their titles.
    let mut grouped: BTreeMap<String, Vec<(String, String, Title)>> = BTreeMap::new();
    for (id, f) in facts {
        let t = titler.title(&f);
        let key = t.product.to_lowercase();
        if prefix
            .as_ref()
            .is_some_and(|p| !key.starts_with(p.as_str()))
        {
            continue;
        }
        let passes = match category.as_deref() {
            None => true,
            Some("-") => t.category.is_none(),
            Some(c) => t.category.as_deref().map(str::to_lowercase).as_deref() == Some(c),
        };
        if passes {
            grouped.entry(key).or_default().push((id, f.name, t));
        }
    }
    let total = grouped.len();
    let after = after.map(str::to_lowercase);
    let mut out = Vec::new();
    for (_, mut packages) in grouped
        .into_iter()
        .filter(|(k, _)| after.as_ref().is_none_or(|a| k > a))
        .take(limit)
    {
        packages.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
        out.push(entry(store, &packages)?);
    }
    Ok((out, total))
}

/// A title's computers and versions, from its packages' installs.
fn entry(
    store: &dyn Store,
    packages: &[(String, String, Title)],
) -> Result<TitleEntry, StoreError> {
    let mut computers = BTreeSet::new();
    let mut versions: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let mut scheme = None;
    let mut publishers: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, _, t) in packages {
        if let Some(p) = &t.publisher {
            *publishers.entry(p).or_default() += 1;
        }
        let installs = store.installs_of(id)?;
        let text = |v: &crate::model::Attributes, k: &str| {
            v.get(k).and_then(Value::as_str).map(str::to_string)
        };
        scheme = scheme.or_else(|| {
            installs
                .variants
                .iter()
                .find_map(|v| text(v, "source"))
                .map(|s| VersionScheme::for_source(&s))
        });
        for (computer, variant) in &installs.installs {
            computers.insert(*computer);
            let v = text(&installs.variants[*variant], "version").unwrap_or_default();
            versions.entry(v).or_default().insert(*computer);
        }
    }
    let scheme = scheme.unwrap_or(VersionScheme::Generic);
    let mut spread: Vec<VersionCount> = versions
        .into_iter()
        .map(|(version, on)| VersionCount {
            version,
            computers: on.len(),
        })
        .collect();
    spread.sort_by(|a, b| version::compare(scheme, &b.version, &a.version));
    let distinct_versions = spread.len();
    spread.truncate(MAX_LISTED_VERSIONS);
    // The rule's publisher when it set one; else the one most of the packages report.
    let publisher = publishers
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(p, _)| p.to_string());
    let first = &packages[0].2;
    Ok(TitleEntry {
        product: first.product.clone(),
        publisher,
        category: packages.iter().find_map(|p| p.2.category.clone()),
        computers: computers.len(),
        packages_total: packages.len(),
        packages: packages
            .iter()
            .take(MAX_LISTED_PACKAGES)
            .map(|(id, name, _)| TitlePackage {
                id: id.clone(),
                name: name.clone(),
            })
            .collect(),
        distinct_versions,
        versions: spread,
    })
}

/// A product whose title a replay changes.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TitleChange {
    pub id: String,
    pub name: String,
    pub before: Title,
    pub after: Title,
}

/// What replaying a rule set over the CMDB does.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ReplayReport {
    pub dry_run: bool,
    /// The applied rules' version after it (unchanged by a dry run).
    pub version: u64,
    pub products: usize,
    /// Products whose title, publisher or category it changes.
    pub changed: usize,
    /// Products no rule matches (titled by their own facts).
    pub unmatched: usize,
    pub titles_before: usize,
    pub titles_after: usize,
    /// How many products each rule decides, rule 1 first; a rule that decides none is
    /// shadowed by earlier ones or matches nothing in this CMDB.
    pub by_rule: Vec<usize>,
    /// The first [`MAX_LISTED_CHANGES`] changed products, by name.
    pub changes: Vec<TitleChange>,
}

/// Evaluates `rules` over every product against the applied rules, reporting progress
/// (done, total) after each [`REPLAY_BATCH`] products. Writes nothing.
pub fn replay(
    store: &dyn Store,
    rules: &Titler,
    rule_count: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ReplayReport, StoreError> {
    let applied = applied_titler(store)?;
    let facts: Vec<(String, ProductFacts)> = product_facts(store)?.into_iter().collect();
    let total = facts.len();
    let mut report = ReplayReport {
        dry_run: true,
        version: 0,
        products: total,
        changed: 0,
        unmatched: 0,
        titles_before: 0,
        titles_after: 0,
        by_rule: vec![0; rule_count],
        changes: Vec::new(),
    };
    let mut before_titles = BTreeSet::new();
    let mut after_titles = BTreeSet::new();
    for (done, batch) in facts.chunks(REPLAY_BATCH).enumerate() {
        for (id, f) in batch {
            let before = applied.title(f);
            let after = rules.title(f);
            before_titles.insert(before.product.to_lowercase());
            after_titles.insert(after.product.to_lowercase());
            match after.rule {
                Some(n) => {
                    if let Some(c) = report.by_rule.get_mut(n - 1) {
                        *c += 1;
                    }
                }
                None => report.unmatched += 1,
            }
            let differs = (&before.product, &before.publisher, &before.category)
                != (&after.product, &after.publisher, &after.category);
            if differs {
                report.changed += 1;
                report.changes.push(TitleChange {
                    id: id.clone(),
                    name: f.name.clone(),
                    before,
                    after,
                });
            }
        }
        progress((done * REPLAY_BATCH + batch.len()).min(total), total);
    }
    report
        .changes
        .sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    report.changes.truncate(MAX_LISTED_CHANGES);
    report.titles_before = before_titles.len();
    report.titles_after = after_titles.len();
    Ok(report)
}
