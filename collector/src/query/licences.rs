//! Licence consumption and the expiry report: what was bought against what is installed.
//!
//! A licence is consumed once per computer (not retired) that installs a product its
//! pattern matches at a version its range covers, compared in the package's own order.
//! The installs come from the store's per-product postings (`Store::installs_of`): each
//! distinct variant is tested once, not each install.

use std::collections::BTreeSet;

use census_shared::version::VersionScheme;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::model::licence::{self, Licence, VersionRange};
use crate::model::register;
use crate::model::*;
use crate::store::{Store, StoreError};

/// A licence with what it covers and how many computers use it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LicenceUse {
    pub licence: Licence,
    /// The products its pattern matches (at most [`MAX_LISTED`]).
    pub products: Vec<String>,
    /// Computers (not retired) installing a covered product at a covered version.
    pub installed_on: usize,
    /// Installs beyond the seats (0 when within them).
    pub over: usize,
    /// Seats nobody uses.
    pub unused: usize,
    /// Days until it expires (negative: expired that many days ago).
    pub expires_in_days: Option<i64>,
}

/// A computer using a licence.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ComputerRef {
    pub id: String,
    pub name: String,
}

pub const MAX_LISTED: usize = 1000;

/// Days from `today` to a `YYYY-MM-DD` date (negative: it is past); `None` when the text
/// is not such a date.
pub fn days_until(date: &str, today: NaiveDate) -> Option<i64> {
    let d = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    Some((d - today).num_days())
}

/// Every licence's use; with `computers_of`, the computers of that licence too (sorted by
/// name, at most [`MAX_LISTED`]).
pub fn usage(
    store: &dyn Store,
    licences: &[Licence],
    now: DateTime<Utc>,
    computers_of: Option<&str>,
) -> Result<(Vec<LicenceUse>, Vec<ComputerRef>), StoreError> {
    let ranges: Vec<VersionRange> = licences
        .iter()
        .map(|l| VersionRange::parse(&l.versions).unwrap_or_default())
        .collect();
    // One pass over the products for every licence's pattern.
    let mut matched: Vec<Vec<Ci>> = vec![Vec::new(); licences.len()];
    store.scan_cis(CiClass::SoftwareProduct, &mut |p| {
        for (i, l) in licences.iter().enumerate() {
            if licence::product_matches(&l.product, &p.name) {
                matched[i].push(p.clone());
            }
        }
        true
    })?;
    let today = now.date_naive();
    let mut out = Vec::with_capacity(licences.len());
    let mut listed = Vec::new();
    for ((l, range), products) in licences.iter().zip(&ranges).zip(matched) {
        let ids: Vec<&str> = products.iter().map(|p| p.id.as_str()).collect();
        let keys: Vec<u64> = installing(store, &ids, range)?.into_iter().collect();
        let summaries = store.computer_summaries(&keys)?;
        let mut using: Vec<ComputerRef> = summaries
            .into_iter()
            .flatten()
            .filter(|s| s.status != CiStatus::Retired)
            .map(|s| ComputerRef {
                id: s.id.to_string(),
                name: s.name.to_string(),
            })
            .collect();
        let installed_on = using.len();
        if computers_of == Some(l.id.as_str()) {
            using.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
            using.truncate(MAX_LISTED);
            listed = using;
        }
        let seats = l.seats as usize;
        out.push(LicenceUse {
            licence: l.clone(),
            products: products
                .iter()
                .take(MAX_LISTED)
                .map(|p| p.name.clone())
                .collect(),
            installed_on,
            over: installed_on.saturating_sub(seats),
            unused: seats.saturating_sub(installed_on),
            expires_in_days: l.expires.as_deref().and_then(|e| days_until(e, today)),
        });
    }
    Ok((out, listed))
}

/// The computers (by record number) installing one of `products` at a version `range`
/// covers, each distinct variant tested once.
pub fn installing(
    store: &dyn Store,
    products: &[&str],
    range: &VersionRange,
) -> Result<BTreeSet<u64>, StoreError> {
    let mut keys: BTreeSet<u64> = BTreeSet::new();
    for p in products {
        let installs = store.installs_of(p)?;
        let covered: Vec<bool> = installs
            .variants
            .iter()
            .map(|v| {
                let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
                range.contains(VersionScheme::for_source(text("source")), text("version"))
            })
            .collect();
        keys.extend(
            installs
                .installs
                .iter()
                .filter(|(_, variant)| covered.get(*variant).copied().unwrap_or(false))
                .map(|(key, _)| *key),
        );
    }
    Ok(keys)
}

/// A computer whose warranty ends within the report's window.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct WarrantyEnd {
    pub id: String,
    pub name: String,
    pub warranty_end: String,
    /// Negative: ended that many days ago.
    pub days: i64,
    pub owner: Option<String>,
    pub asset_tag: Option<String>,
}

/// What expires within `days` (or has expired already): licences and warranties, soonest
/// first. Retired computers are left out.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Expiring {
    pub days: u32,
    pub licences: Vec<LicenceUse>,
    pub warranties: Vec<WarrantyEnd>,
    /// Warranties found, over all (at most [`MAX_LISTED`] listed).
    pub warranties_total: usize,
}

pub fn expiring(store: &dyn Store, days: u32, now: DateTime<Utc>) -> Result<Expiring, StoreError> {
    let today = now.date_naive();
    let within = |d: Option<i64>| d.is_some_and(|d| d <= i64::from(days));
    let all = store.list_licences()?;
    let soon: Vec<Licence> = all
        .into_iter()
        .filter(|l| within(l.expires.as_deref().and_then(|e| days_until(e, today))))
        .collect();
    let (mut licences, _) = usage(store, &soon, now, None)?;
    licences.sort_by_key(|u| u.expires_in_days);
    let mut warranties = Vec::new();
    let attribute = |ci: &Ci, f: &str| {
        ci.attributes
            .get(&register::attribute(f))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    store.scan_cis(CiClass::Computer, &mut |ci| {
        if ci.status == CiStatus::Retired {
            return true;
        }
        if let Some(end) = attribute(&ci, "warranty_end") {
            let d = days_until(&end, today);
            if within(d) {
                warranties.push(WarrantyEnd {
                    id: ci.id.clone(),
                    name: ci.name.clone(),
                    days: d.unwrap_or_default(),
                    warranty_end: end,
                    owner: attribute(&ci, "owner"),
                    asset_tag: attribute(&ci, "asset_tag"),
                });
            }
        }
        true
    })?;
    warranties.sort_by(|a, b| a.days.cmp(&b.days).then(a.name.cmp(&b.name)));
    let warranties_total = warranties.len();
    warranties.truncate(MAX_LISTED);
    Ok(Expiring {
        days,
        licences,
        warranties,
        warranties_total,
    })
}
