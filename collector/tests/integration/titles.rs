//! Software titles over the real store and ingest path: packages roll into titles by the
//! applied rules, versions order in the package's own scheme, a draft changes nothing until
//! its replay, and a bad rule is refused with nothing stored.

use std::sync::Arc;

use census_collector::model::titles::SoftwareRule;
use census_collector::ops::{software, Actor, OpError, Ops};
use census_collector::query::titles::{self, TitleFilter};
use census_collector::query::views;
use census_collector::store::Store;
use census_shared::Software;
use chrono::Utc;

use crate::drift::{machine, rig};
use crate::vulns::other_machine;

fn dpkg(name: &str, version: &str, source_package: Option<&str>, maintainer: &str) -> Software {
    Software {
        publisher: Some(maintainer.into()),
        ..crate::vulns::dpkg(name, version, source_package)
    }
}

const PG: &str = "Debian PostgreSQL Maintainers <team+postgresql@tracker.debian.org>";
const SSL: &str = "Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>";
const CURL: &str = "Debian Curl Maintainers <team+curl@tracker.debian.org>";

fn title_of<'a>(page: &'a [titles::TitleEntry], product: &str) -> &'a titles::TitleEntry {
    page.iter()
        .find(|t| t.product == product)
        .unwrap_or_else(|| panic!("no title {product} in {page:#?}"))
}

#[test]
fn packages_roll_into_titles_with_versions_in_the_packages_own_order() {
    let mut r = rig("titles");
    r.send(
        machine(vec![
            dpkg("postgresql-15", "15.10-0+deb12u1", None, PG),
            dpkg("openssl", "3.0.2-1", None, SSL),
            dpkg("libssl3", "3.0.11-1~deb12u2", Some("openssl"), SSL),
            dpkg("libcurl4", "7.88.1-10+deb12u5", Some("curl"), CURL),
        ]),
        Utc::now(),
    );
    r.switch_to_new_agent("agt_titles_2");
    r.send(
        other_machine(vec![
            dpkg("postgresql-15", "15.9-0+deb12u1", None, PG),
            dpkg("postgresql-16", "16.1-1", None, PG),
            dpkg("libssl3", "3.0.19-1~deb12u2", Some("openssl"), SSL),
            dpkg("openssl", "3.0.16-1~deb12u1", None, SSL),
        ]),
        Utc::now(),
    );
    let store = r.store.as_ref();
    let (page, total) = titles::titles(store, &TitleFilter::default(), 100, None).unwrap();
    assert_eq!(total, 3, "{page:#?}");

    let pg = title_of(&page, "PostgreSQL");
    assert_eq!(pg.computers, 2);
    assert_eq!(pg.category.as_deref(), Some("database"));
    assert_eq!(
        pg.packages
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["postgresql-15", "postgresql-16"]
    );
    // dpkg's order, newest first: 16.1 > 15.10 > 15.9 (as strings 15.9 sorts above 15.10).
    let versions: Vec<&str> = pg.versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(versions, ["16.1-1", "15.10-0+deb12u1", "15.9-0+deb12u1"]);

    let ssl = title_of(&page, "OpenSSL");
    assert_eq!(ssl.computers, 2);
    assert_eq!(ssl.publisher.as_deref(), Some("OpenSSL Project"));
    let versions: Vec<&str> = ssl.versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(
        versions,
        [
            "3.0.19-1~deb12u2",
            "3.0.16-1~deb12u1",
            "3.0.11-1~deb12u2",
            "3.0.2-1"
        ]
    );

    // No rule names libcurl4: its source package titles it, its maintainer publishes it.
    let curl = title_of(&page, "curl");
    assert_eq!(curl.publisher.as_deref(), Some("Debian Curl Maintainers"));
    assert_eq!(curl.category, None);

    // The filters: by category, and "-" for titles without one.
    let (db, _) = titles::titles(
        store,
        &TitleFilter {
            category: Some("DATABASE".into()),
            ..TitleFilter::default()
        },
        100,
        None,
    )
    .unwrap();
    assert_eq!(db.len(), 1);
    let (uncategorised, _) = titles::titles(
        store,
        &TitleFilter {
            category: Some("-".into()),
            ..TitleFilter::default()
        },
        100,
        None,
    )
    .unwrap();
    assert_eq!(uncategorised.len(), 1);
    assert_eq!(uncategorised[0].product, "curl");
    // Paging: one title a page, in name order, each once.
    let (first, _) = titles::titles(store, &TitleFilter::default(), 1, None).unwrap();
    let (second, _) =
        titles::titles(store, &TitleFilter::default(), 1, Some(&first[0].product)).unwrap();
    assert_eq!(first[0].product, "curl");
    assert_eq!(second[0].product, "OpenSSL");

    // The catalogue carries each package's title, and its versions newest first too.
    let (products, _) = views::catalogue(store, Some("openssl"), 10, None).unwrap();
    assert_eq!(products[0]["title"], "OpenSSL");
    assert_eq!(products[0]["category"], "crypto-library");
    assert_eq!(products[0]["versions"][0]["version"], "3.0.16-1~deb12u1");
    assert_eq!(products[0]["versions"][1]["version"], "3.0.2-1");
}

#[test]
fn a_draft_changes_no_title_until_it_is_replayed_and_a_bad_rule_is_refused() {
    let mut r = rig("titles-replay");
    r.send(
        machine(vec![
            dpkg("libcurl4", "7.88.1-10+deb12u5", Some("curl"), CURL),
            dpkg("curl", "7.88.1-10+deb12u5", None, CURL),
            dpkg("nginx", "1.22.1-9", None, "Debian Nginx Maintainers <x@y>"),
        ]),
        Utc::now(),
    );
    let ops = Ops {
        store: r.store.clone() as Arc<dyn Store>,
        ingest: None,
    };
    let alice = Actor::new("alice");
    let audit_before = r.store.audit_head().unwrap();

    // A bad pattern: refused, naming the rule and field; nothing stored.
    let bad = software::put_draft(
        &ops,
        &alice,
        vec![SoftwareRule {
            name: Some("lib(curl".into()),
            set_product: Some("cURL".into()),
            ..SoftwareRule::default()
        }],
    );
    match bad {
        Err(OpError::Invalid { field, message }) => {
            assert_eq!(field.as_deref(), Some("rules[0].name"), "{message}");
            assert!(message.contains("not a valid pattern"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(r.store.software_rules().unwrap(), None);
    assert_eq!(r.store.audit_head().unwrap(), audit_before);

    // A draft before the built-in rules: the applied set still titles.
    let mut rules = vec![SoftwareRule {
        name: Some("^(lib)?curl\\d*$".into()),
        set_product: Some("cURL".into()),
        set_publisher: Some("curl project".into()),
        set_category: Some("network-library".into()),
        ..SoftwareRule::default()
    }];
    rules.extend(census_collector::model::titles::default_rules());
    let book = software::put_draft(&ops, &alice, rules.clone()).unwrap();
    assert_eq!(book.version, 0);
    let page = |store: &dyn Store| {
        titles::titles(store, &TitleFilter::default(), 100, None)
            .unwrap()
            .0
    };
    assert!(page(r.store.as_ref()).iter().any(|t| t.product == "curl"));

    // The dry run: what would change, per rule, with progress; nothing applied.
    let mut progress = Vec::new();
    let dry = software::replay(&ops, &alice, true, &mut |done, total| {
        progress.push((done, total))
    })
    .unwrap();
    assert!(dry.dry_run);
    assert_eq!((dry.products, dry.changed), (3, 2), "{dry:#?}");
    assert_eq!(dry.by_rule[0], 2);
    assert_eq!(dry.unmatched, 0, "nginx is titled by a built-in rule");
    assert_eq!(dry.changes[0].name, "curl");
    assert_eq!(dry.changes[0].before.product, "curl");
    assert_eq!(dry.changes[0].after.product, "cURL");
    assert_eq!(progress.last(), Some(&(3, 3)));
    assert_eq!(software::rules(&ops).unwrap().version, 0);
    assert!(page(r.store.as_ref()).iter().any(|t| t.product == "curl"));

    // Applied: the titles change, the version counts it, the audit log records it.
    let applied = software::replay(&ops, &alice, false, &mut |_, _| {}).unwrap();
    assert_eq!(
        (applied.dry_run, applied.version, applied.changed),
        (false, 1, 2)
    );
    let titles_now = page(r.store.as_ref());
    let curl = title_of(&titles_now, "cURL");
    assert_eq!(curl.packages_total, 2);
    assert_eq!(curl.category.as_deref(), Some("network-library"));
    let book = software::rules(&ops).unwrap();
    assert_eq!((book.version, book.applied == rules), (1, true));
    let audit = r.store.list_audit(audit_before, 10).unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["software_rules.update", "software_rules.replay"]);

    // A replay of what is applied changes nothing.
    let again = software::replay(&ops, &alice, true, &mut |_, _| {}).unwrap();
    assert_eq!(again.changed, 0);
}

#[test]
fn software_rules_written_over_a_newer_book_are_refused_as_stale() {
    use census_collector::model::titles::SoftwareRuleBook;
    use census_collector::store::{AuditDraft, PeopleWrite, PeopleWriteError};
    let r = rig("titles-stale");
    let write = |expected: Option<SoftwareRuleBook>, book: SoftwareRuleBook| {
        r.store.commit_people(
            &PeopleWrite::PutSoftwareRules {
                expected: expected.map(Box::new),
                book: Box::new(book),
            },
            AuditDraft {
                actor: "t".into(),
                action: "software_rules.update".into(),
                target: "software_rules".into(),
                before: None,
                after: None,
                comment: None,
            },
            Utc::now(),
        )
    };
    let first = SoftwareRuleBook {
        version: 1,
        ..SoftwareRuleBook::default()
    };
    write(None, first.clone()).unwrap();
    // Another person read "never stored" before the first write landed.
    let lost = write(None, SoftwareRuleBook::default());
    assert!(matches!(lost, Err(PeopleWriteError::Stale(_))), "{lost:?}");
    assert_eq!(r.store.software_rules().unwrap(), Some(first.clone()));
    write(Some(first), SoftwareRuleBook::default()).unwrap();
}
