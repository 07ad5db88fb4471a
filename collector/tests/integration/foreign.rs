//! Importing other tools' inventories over the real store and ingest path, on the outputs
//! of Debian's `ocsinventory-agent --local` and `fusioninventory-inventory` on this
//! project's CI machine (tests/fixtures/foreign): a new machine, the same file again, a
//! changed one (a change record), a dry run, and precedence: a Census agent takes an
//! imported machine over and an import never overrides a Census agent.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use census_collector::foreign::ocs::{self, Format};
use census_collector::model::*;
use census_collector::ops::foreign::{import_files, ImportReport, Outcome};
use census_collector::ops::{Actor, OpError, Ops};
use census_collector::store::Store;
use chrono::Utc;

use crate::drift::rig;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/foreign")
        .join(name)
}

fn ops_on(r: &crate::drift::Rig) -> Ops {
    Ops {
        store: r.store.clone() as Arc<dyn Store>,
        ingest: None,
    }
}

/// Imports `paths` as an administrator would, without progress.
fn import(ops: &Ops, format: Format, paths: &[PathBuf], dry_run: bool) -> ImportReport {
    import_files(
        ops,
        &Actor::new("admin-cli:root"),
        format,
        paths,
        dry_run,
        &mut |_| {},
    )
    .unwrap()
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("census-foreign-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn ocs_inventories_import_as_computers_with_drift_between_imports() {
    let r = rig("foreign");
    let ops = ops_on(&r);
    let admin = Actor::new("admin-cli:root");
    let ocs_file = fixture("ocs-debian12.xml");
    let mut progress = 0;
    let first = import_files(
        &ops,
        &admin,
        Format::Ocs,
        std::slice::from_ref(&ocs_file),
        false,
        &mut |_| progress += 1,
    )
    .unwrap();
    assert_eq!(progress, 1);
    assert_eq!(
        (first.files, first.new, first.failed),
        (1, 1, 0),
        "{first:?}"
    );
    let outcome = &first.outcomes[0];
    assert_eq!(outcome.outcome, Outcome::New);
    assert_eq!(outcome.packages, 861);
    let ci_id = outcome.ci_id.clone().unwrap();
    let ci = r.store.get_ci(&ci_id).unwrap().unwrap();
    assert_eq!(ci.attributes["os.hostname"], "vm");
    assert_eq!(r.store.owned_state(&ci_id).unwrap().installs.len(), 861);
    // The import source that reports it: marked with its origin, no key to sign with.
    let source_id = census_collector::identify::owning_agent(&ci).unwrap();
    assert!(source_id.starts_with("imp_ocs_"), "{source_id}");
    let source = r.store.get_agent(&source_id).unwrap().unwrap();
    assert_eq!(source.token_id, "import:ocs");
    let audit = r.store.list_audit(0, 100).unwrap();
    assert!(audit.iter().any(|e| e.action == "import.inventories"));

    // The same file again: nothing changed.
    let again = import(&ops, Format::Ocs, std::slice::from_ref(&ocs_file), false);
    assert_eq!(again.outcomes[0].outcome, Outcome::Unchanged, "{again:?}");

    // The next inventory of the same device without one package: drift, on record.
    let dir = temp("next");
    let text = std::fs::read_to_string(&ocs_file).unwrap();
    let start = text.find("<NAME>bc</NAME>").unwrap();
    let open = text[..start].rfind("<SOFTWARES>").unwrap();
    let close = start + text[start..].find("</SOFTWARES>").unwrap() + "</SOFTWARES>".len();
    let next = dir.join("next.ocs");
    std::fs::write(&next, format!("{}{}", &text[..open], &text[close..])).unwrap();
    let changed = import(&ops, Format::Ocs, std::slice::from_ref(&dir), false);
    let o = &changed.outcomes[0];
    assert_eq!(
        (o.outcome.clone(), o.ci_id.as_deref()),
        (Outcome::Updated, Some(ci_id.as_str()))
    );
    let record = r
        .store
        .get_change_record(o.change_record.as_deref().expect("a change record"))
        .unwrap()
        .unwrap();
    assert!(
        record
            .items
            .iter()
            .any(|i| i.kind == ItemKind::SoftwareRemoved && i.subject.contains("bc")),
        "{record:?}"
    );

    // FusionInventory's inventory of the same machine, dry: identified by its MAC set,
    // nothing written.
    let before = r.store.list_agents().unwrap().len();
    let dry = import(
        &ops,
        Format::FusionInventory,
        &[fixture("fusioninventory-debian12.xml")],
        true,
    );
    let o = &dry.outcomes[0];
    assert_eq!(o.outcome, Outcome::WouldUpdate, "{dry:?}");
    assert_eq!(
        (o.ci_id.as_deref(), o.matched_by.as_deref()),
        (Some(ci_id.as_str()), Some("mac_set"))
    );
    assert_eq!(r.store.list_agents().unwrap().len(), before);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_census_agent_takes_an_imported_machine_over_and_imports_never_override_it() {
    let mut r = rig("foreign-precedence");
    let ops = ops_on(&r);
    let ocs_file = fixture("ocs-debian12.xml");
    let first = import(&ops, Format::Ocs, std::slice::from_ref(&ocs_file), false);
    let ci_id = first.outcomes[0].ci_id.clone().unwrap();
    let source_id =
        census_collector::identify::owning_agent(&r.store.get_ci(&ci_id).unwrap().unwrap())
            .unwrap();

    // The Census agent installed on that machine reports it (its own view of it).
    let bytes = std::fs::read(&ocs_file).unwrap();
    let mut snap = ocs::parse(&bytes, Format::Ocs).unwrap().snapshot;
    snap.agent_version = "1.0".into();
    r.send(snap, Utc::now());
    let ci = r.store.get_ci(&ci_id).unwrap().unwrap();
    assert_eq!(
        census_collector::identify::owning_agent(&ci).as_deref(),
        Some("agt_foreign-precedence"),
        "the agent took the imported computer over rather than making a second one"
    );
    assert_eq!(r.store.list_cis(Some(CiClass::Computer)).unwrap().len(), 1);
    let source = r.store.get_agent(&source_id).unwrap().unwrap();
    assert_eq!(
        source.superseded_by.as_deref(),
        Some("agt_foreign-precedence")
    );

    // Imports of that machine are skipped from now on, from any tool, and say why.
    for (format, file) in [
        (Format::Ocs, ocs_file.clone()),
        (
            Format::FusionInventory,
            fixture("fusioninventory-debian12.xml"),
        ),
    ] {
        let report = import(&ops, format, &[file], false);
        let o = &report.outcomes[0];
        assert_eq!(o.outcome, Outcome::Skipped, "{report:?}");
        assert!(
            o.reason
                .as_deref()
                .unwrap()
                .contains("Census agent agt_foreign-precedence"),
            "{o:?}"
        );
    }
    assert_eq!(r.store.list_cis(Some(CiClass::Computer)).unwrap().len(), 1);
}

#[test]
fn unreadable_files_are_listed_with_their_reason_and_nothing_is_stored() {
    let r = rig("foreign-bad");
    let ops = ops_on(&r);
    let admin = Actor::new("admin-cli:root");
    let dir = temp("bad");
    std::fs::write(dir.join("a-not-xml.ocs"), b"\x00\x01 not xml").unwrap();
    std::fs::write(
        dir.join("b-laughs.xml"),
        "<!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;\">]><REQUEST>&b;</REQUEST>",
    )
    .unwrap();
    std::fs::write(
        dir.join("c-prolog.xml"),
        "<REQUEST><DEVICEID>x</DEVICEID><QUERY>PROLOG</QUERY></REQUEST>",
    )
    .unwrap();
    let report = import(&ops, Format::Ocs, std::slice::from_ref(&dir), false);
    assert_eq!((report.files, report.failed), (3, 3), "{report:?}");
    let reasons: Vec<&str> = report
        .outcomes
        .iter()
        .map(|o| o.reason.as_deref().unwrap())
        .collect();
    assert!(reasons[0].contains("not well-formed XML"), "{reasons:?}");
    assert!(
        reasons[1].contains("document type declaration"),
        "{reasons:?}"
    );
    assert!(reasons[2].contains("not INVENTORY"), "{reasons:?}");
    assert!(r
        .store
        .list_cis(Some(CiClass::Computer))
        .unwrap()
        .is_empty());
    assert!(r
        .store
        .list_agents()
        .unwrap()
        .iter()
        .all(|a| !a.id.starts_with("imp_")));
    // A relative path is refused as a whole: the collector reads from its own directory.
    let e = import_files(
        &ops,
        &admin,
        Format::Ocs,
        &[PathBuf::from("x.ocs")],
        false,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(&e, OpError::Invalid { message, .. } if message.contains("not absolute")),
        "{e:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
