#![no_main]
//! Fuzz target: a protocol-v2 delta as the collector receives it (untrusted bytes): JSON
//! decoding with every limit, then applying it to a base snapshot (the agent's and the
//! property tests' path) and to a stored computer (`delta::view`, the collector's path),
//! then reconcile's reading of the result.
use std::sync::OnceLock;

use census_collector::model::{Ci, CiStatus};
use census_collector::store::OwnedState;
use census_shared::*;
use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;

fn base() -> &'static (Snapshot, OwnedState) {
    static BASE: OnceLock<(Snapshot, OwnedState)> = OnceLock::new();
    BASE.get_or_init(|| {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut s = Snapshot::empty("agt_fuzz", 1, at);
        s.software = Section::collected(
            ["bash", "curl", "gpg-pubkey", "gpg-pubkey", "zlib1g"]
                .iter()
                .enumerate()
                .map(|(i, name)| Software {
                    name: name.to_string(),
                    version: format!("1.{i}"),
                    arch: Some("amd64".into()),
                    source: "dpkg".into(),
                    ..Default::default()
                })
                .collect(),
        );
        s.users = Section::collected(vec![User {
            name: "root".into(),
            uid: Some(0),
            login_shell: true,
            ..Default::default()
        }]);
        s.services = Section::failed("not probed");
        s.canonicalize_order();
        let d = census_collector::reconcile::desired("cmp_fuzz", &s, at);
        let stored = OwnedState {
            computer: Some(Ci {
                id: "cmp_fuzz".into(),
                class: census_collector::model::CiClass::Computer,
                name: d.name.clone(),
                attributes: d.attributes.clone(),
                volatile: d.volatile.clone(),
                status: CiStatus::Active,
                first_seen: at,
                last_seen: at,
                sources: Vec::new(),
                version: 1,
                owner: None,
            }),
            components: d.components.values().cloned().collect(),
            relationships: Vec::new(),
            installs: d.installs.values().cloned().collect(),
        };
        (s, stored)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(delta) = wire::decode_delta_json(data) else {
        return;
    };
    let (snapshot, stored) = base();
    let _ = delta.apply(snapshot);
    let uncollected: Vec<String> = snapshot
        .uncollected_sections()
        .into_iter()
        .map(String::from)
        .collect();
    if let Ok(view) = census_collector::delta::view(stored, &delta, &uncollected) {
        let now = Utc::now();
        let mut want = census_collector::reconcile::desired("cmp_fuzz", &view.snapshot, now);
        want.install_scope = view.install_scope;
        let settings = census_collector::model::register::RegisterSettings::default();
        let _ = census_collector::reconcile::plan("cmp_fuzz", "agt_fuzz", stored, want, &settings, now);
    }
});
