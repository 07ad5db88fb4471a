//! Drift over the real ingest path: a signed, zstd-encoded snapshot goes through
//! `Ingest::snapshot` (verify, decode, identify, reconcile, drift, commit) on a sled store.

use std::sync::Arc;

use census_collector::drift::diff::{apply, diff};
use census_collector::drift::view::ConfigView;
use census_collector::ingest::{CpuSlot, Envelope, Ingest};
use census_collector::model::*;
use census_collector::reconcile;
use census_collector::store::*;
use census_shared::IpAddress;
use census_shared::{
    envelope, wire, AgentKeyPair, ListeningPort, NetworkInterface, Os, Section, Service, Snapshot,
    Software, System,
};
type AgentUser = census_shared::User;
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use serde_json::json;

pub(crate) struct Rig {
    pub(crate) ingest: Ingest,
    pub(crate) store: Arc<Cmdb>,
    key: AgentKeyPair,
    agent_id: String,
    seq: u64,
    dir: std::path::PathBuf,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn rig(name: &str) -> Rig {
    let dir = std::env::temp_dir().join(format!("census-drift-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(Cmdb::open(&dir).unwrap());
    rig_on(name, store, dir)
}

/// A rig over `store` (a PostgreSQL database, say); `dir` is removed when it drops.
pub(crate) fn rig_on(name: &str, store: Arc<Cmdb>, dir: std::path::PathBuf) -> Rig {
    let key = AgentKeyPair::generate();
    let agent_id = format!("agt_{name}");
    crate::enroll_agent(&store, &agent_id, &key);
    for rule in census_collector::drift::rules::default_noise_rules(Utc::now()) {
        store
            .commit_people(
                &PeopleWrite::PutNoiseRule(rule),
                draft("census", "seed"),
                Utc::now(),
            )
            .unwrap();
    }
    Rig {
        ingest: Ingest::new(store.clone()).with_flap_window(Duration::hours(1)),
        store,
        key,
        agent_id,
        seq: 0,
        dir,
    }
}

fn draft(actor: &str, action: &str) -> AuditDraft {
    AuditDraft {
        actor: actor.into(),
        action: action.into(),
        target: "t".into(),
        before: None,
        after: None,
        comment: None,
    }
}

fn pkg(name: &str, version: &str, source: &str) -> Software {
    Software {
        name: name.into(),
        version: version.into(),
        arch: Some("amd64".into()),
        source: source.into(),
        ..Default::default()
    }
}

pub(crate) fn machine(software: Vec<Software>) -> Snapshot {
    let mut s = Snapshot::empty("", 0, Utc::now());
    s.agent_version = "1.0".into();
    s.system = Section::collected(System {
        vendor: Some("Dell Inc.".into()),
        serial: Some("SER123".into()),
        machine_id: Some("0123456789abcdef0123456789abcdef".into()),
        ..Default::default()
    });
    s.os = Section::collected(Os {
        family: "linux".into(),
        name: Some("Debian GNU/Linux".into()),
        id: Some("debian".into()),
        version_id: Some("12".into()),
        kernel_version: Some("6.1.0-18-amd64".into()),
        arch: "x86_64".into(),
        hostname: "web01".into(),
        ..Default::default()
    });
    s.network_interfaces = Section::collected(vec![NetworkInterface {
        name: "eth0".into(),
        mac: Some("52:54:00:12:34:56".into()),
        kind: "ethernet".into(),
        physical: true,
        addresses: vec![IpAddress {
            address: "10.1.2.3".into(),
            prefix: 16,
            family: "ipv4".into(),
            scope: Some("global".into()),
        }],
        ..Default::default()
    }]);
    s.software = Section::collected(software);
    s.services = Section::collected(vec![Service {
        name: "ssh.service".into(),
        manager: "systemd".into(),
        state: "running".into(),
        enabled: Some("enabled".into()),
        description: None,
    }]);
    s.users = Section::collected(vec![AgentUser {
        name: "root".into(),
        uid: Some(0),
        shell: Some("/bin/bash".into()),
        login_shell: true,
        ..Default::default()
    }]);
    s.listening_ports = Section::collected(vec![ListeningPort {
        protocol: "tcp".into(),
        address: "0.0.0.0".into(),
        port: 22,
        process: Some("sshd".into()),
        ..Default::default()
    }]);
    s
}

pub(crate) fn base_software() -> Vec<Software> {
    vec![
        pkg("openssl", "3.0.11-1~deb12u2", "dpkg"),
        pkg("vim", "2:9.0.1378-2", "dpkg"),
        pkg("curl", "7.88.1-10+deb12u5", "dpkg"),
        pkg("nginx", "1:1.22.1-9", "dpkg"),
    ]
}

impl Rig {
    /// Sends from here on as a newly enrolled agent (another machine of the same store).
    pub(crate) fn switch_to_new_agent(&mut self, agent_id: &str) {
        self.key = AgentKeyPair::generate();
        self.agent_id = agent_id.to_string();
        self.seq = 0;
        crate::enroll_agent(&self.store, agent_id, &self.key);
    }

    /// Signs and ingests `snap` as the next seq at `at`; the change record it raised.
    pub(crate) fn send(&mut self, mut snap: Snapshot, at: DateTime<Utc>) -> Option<ChangeRecord> {
        self.seq += 1;
        snap.agent_id = self.agent_id.clone();
        snap.seq = self.seq;
        snap.collected_at = at;
        let body = wire::encode_body(&snap).unwrap();
        let signature = envelope::sign(
            self.key.signing_key(),
            &envelope::snapshot_fields(&self.agent_id, self.seq, &body),
        )
        .unwrap();
        let env = Envelope {
            agent_id: self.agent_id.clone(),
            seq: self.seq,
            signature,
        };
        let accepted = self
            .ingest
            .snapshot(&env, Some("zstd"), &body, at, CpuSlot::none())
            .expect("accepted");
        accepted
            .ack
            .change_record
            .map(|id| self.store.get_change_record(&id).unwrap().expect("stored"))
    }

    fn plan(&self, p: PlannedChange) {
        self.store
            .commit_people(
                &PeopleWrite::PutPlannedChange(p),
                draft("cm", "plan"),
                Utc::now(),
            )
            .unwrap();
        self.ingest.invalidate_rules();
    }
}

fn kinds(r: &ChangeRecord) -> Vec<(ItemKind, String)> {
    r.items
        .iter()
        .map(|i| (i.kind, i.subject.clone()))
        .collect()
}

pub(crate) fn with(mut sw: Vec<Software>, name: &str, version: &str) -> Vec<Software> {
    for p in sw.iter_mut().filter(|p| p.name == name) {
        p.version = version.into();
    }
    sw
}

#[test]
fn install_remove_upgrade_downgrade_with_real_version_strings() {
    let mut r = rig("kinds");
    let t0 = Utc::now();
    assert!(
        r.send(machine(base_software()), t0).is_none(),
        "first sight raises nothing"
    );

    // dpkg: ~ sorts before the release it precedes; an epoch beats any upstream version.
    let mut sw = with(base_software(), "openssl", "3.0.13-1~deb12u1");
    sw = with(sw, "vim", "2:9.0.1378-2~bpo1"); // lower: tilde
    sw = with(sw, "nginx", "1:1.22.1-9+deb12u1");
    sw.retain(|p| p.name != "curl");
    sw.push(pkg("htop", "3.2.2-2", "dpkg"));
    sw.push(pkg("bash", "1:3.0.7-24.el9", "rpm"));
    let rec = r
        .send(machine(sw.clone()), t0 + Duration::minutes(1))
        .expect("record");
    let k = kinds(&rec);
    for want in [
        (ItemKind::SoftwareUpgraded, "openssl"),
        (ItemKind::SoftwareDowngraded, "vim"),
        (ItemKind::SoftwareUpgraded, "nginx"),
        (ItemKind::SoftwareRemoved, "curl"),
        (ItemKind::SoftwareInstalled, "htop"),
        (ItemKind::SoftwareInstalled, "bash"),
    ] {
        assert!(
            k.contains(&(want.0, want.1.to_string())),
            "{want:?} in {k:?}"
        );
    }
    assert_eq!(k.len(), 6, "{k:?}");
    assert_eq!(rec.state, RecordState::Open);
    assert_eq!(rec.authorization, Authorization::Unauthorized);
    assert_eq!(
        rec.severity,
        Severity::High,
        "openssl and curl are security-relevant"
    );

    // rpm: an epoch upgrade that looks like a lower version.
    let sw2 = with(sw, "bash", "2:1.0-1.el9");
    let rec = r.send(machine(sw2), t0 + Duration::minutes(2)).unwrap();
    assert_eq!(
        kinds(&rec),
        vec![(ItemKind::SoftwareUpgraded, "bash".into())]
    );
}

/// Regression: agents that begin reporting dpkg's source version (`bash (5.2.15-2)`) would
/// have raised a change record for every such package of every host on their upgrade.
#[test]
fn an_agent_that_starts_reporting_source_versions_raises_no_drift() {
    let mut r = rig("source-version");
    let t0 = Utc::now();
    let mut sw = base_software();
    sw.push(pkg("bash", "5.2.15-2+b8", "dpkg"));
    assert!(r.send(machine(sw.clone()), t0).is_none());
    for p in sw.iter_mut().filter(|p| p.name == "bash") {
        p.source_package = Some("bash (5.2.15-2)".into());
    }
    assert!(
        r.send(machine(sw.clone()), t0 + Duration::minutes(1))
            .is_none(),
        "the same package build, reported with its source"
    );
    // The CMDB keeps what the agent now reports.
    let host = r.store.list_cis(Some(CiClass::Computer)).unwrap()[0]
        .id
        .clone();
    let installs = r.store.owned_state(&host).unwrap().installs;
    let bash = installs
        .iter()
        .find(|i| i.package.name.as_deref() == Some("bash"))
        .unwrap();
    assert_eq!(
        bash.package.source_package.as_deref(),
        Some("bash (5.2.15-2)")
    );
    // A new build still drifts.
    let sw = with(sw, "bash", "5.2.15-2+b9");
    let rec = r
        .send(machine(sw), t0 + Duration::minutes(2))
        .expect("record");
    assert_eq!(
        kinds(&rec),
        vec![(ItemKind::SoftwareUpgraded, "bash".into())]
    );
}

#[test]
fn configuration_kinds_beyond_software() {
    let mut r = rig("config");
    let t0 = Utc::now();
    r.send(machine(base_software()), t0);
    let mut s = machine(base_software());
    if let Some(os) = s.os.data_mut() {
        os.kernel_version = Some("6.1.0-21-amd64".into());
        os.version_id = Some("13".into());
    }
    if let Some(svcs) = s.services.data_mut() {
        svcs[0].enabled = Some("disabled".into());
        svcs.push(Service {
            name: "cups.service".into(),
            manager: "systemd".into(),
            state: "running".into(),
            enabled: Some("enabled".into()),
            description: None,
        });
    }
    if let Some(users) = s.users.data_mut() {
        users.push(AgentUser {
            name: "mallory".into(),
            uid: Some(1001),
            shell: Some("/bin/bash".into()),
            login_shell: true,
            ..Default::default()
        });
    }
    if let Some(ports) = s.listening_ports.data_mut() {
        ports.push(ListeningPort {
            protocol: "tcp".into(),
            address: "0.0.0.0".into(),
            port: 4444,
            process: Some("nc".into()),
            ..Default::default()
        });
    }
    if let Some(nics) = s.network_interfaces.data_mut() {
        nics[0].addresses[0].address = "10.1.9.9".into();
    }
    let rec = r.send(s, t0 + Duration::minutes(1)).unwrap();
    let k = kinds(&rec);
    for want in [
        (ItemKind::KernelChanged, "os.kernel_version"),
        (ItemKind::OsUpgraded, "Debian GNU/Linux"),
        (ItemKind::ServiceDisabled, "ssh.service"),
        (ItemKind::ServiceAdded, "cups.service"),
        (ItemKind::UserAdded, "mallory"),
        (ItemKind::PortOpened, "tcp/4444"),
        (ItemKind::IpAdded, "10.1.9.9"),
        (ItemKind::IpRemoved, "10.1.2.3"),
    ] {
        assert!(
            k.contains(&(want.0, want.1.to_string())),
            "{want:?} in {k:?}"
        );
    }
    let sev = |kind| rec.items.iter().find(|i| i.kind == kind).unwrap().severity;
    assert_eq!(sev(ItemKind::UserAdded), Severity::High, "login shell");
    assert_eq!(sev(ItemKind::PortOpened), Severity::High);
    assert_eq!(sev(ItemKind::ServiceDisabled), Severity::Low);
}

#[test]
fn redelivered_and_reordered_content_raises_nothing() {
    let mut r = rig("same");
    let t0 = Utc::now();
    r.send(machine(base_software()), t0);
    // Same content, new seq (a restart): nothing.
    assert!(r
        .send(machine(base_software()), t0 + Duration::minutes(1))
        .is_none());
    // Same content, lists reordered by the OS: nothing.
    let mut sw = base_software();
    sw.reverse();
    let mut s = machine(sw);
    s.agent_version = "2.0".into(); // the default noise rule ignores the agent's own version
    assert!(r.send(s, t0 + Duration::minutes(2)).is_none());
    assert!(r.store.list_change_records().unwrap().is_empty());
}

#[test]
fn failed_section_raises_nothing() {
    let mut r = rig("failed");
    let t0 = Utc::now();
    r.send(machine(base_software()), t0);
    let mut s = machine(vec![]);
    s.software = Section::failed("dpkg status unreadable");
    s.services = Section::unsupported("not on this platform");
    assert!(
        r.send(s, t0 + Duration::minutes(1)).is_none(),
        "never 'everything uninstalled'"
    );
}

#[test]
fn planned_change_inside_and_outside_its_window_and_partial_authorization() {
    let mut r = rig("planned");
    let t0 = Utc::now();
    r.send(machine(base_software()), t0);
    r.plan(PlannedChange {
        id: "pln_1".into(),
        title: "patch openssl".into(),
        scope: PlanScope {
            subnets: vec!["10.1.0.0/16".into()],
            ..Default::default()
        },
        allowed: vec![ItemPattern::new("software_upgraded", "openssl")],
        window_start: t0 + Duration::hours(1),
        window_end: t0 + Duration::hours(2),
        state: PlannedState::Active,
        tickets: vec![TicketRef {
            id: "CHG0012345".into(),
            url: Some("https://itsm.example/change/12345".into()),
        }],
        created_by: "cm".into(),
        created_at: t0,
        updated_at: t0,
    });
    // Before the window: unauthorized.
    let sw1 = with(base_software(), "openssl", "3.0.13-1~deb12u1");
    let rec = r
        .send(machine(sw1.clone()), t0 + Duration::minutes(30))
        .unwrap();
    assert_eq!(rec.authorization, Authorization::Unauthorized);
    assert!(rec.items[0].planned_change.is_none());
    assert!(rec.tickets.is_empty());
    // Inside the window, only the planned item: authorized and linked.
    let sw2 = with(sw1.clone(), "openssl", "3.0.14-1~deb12u1");
    let rec = r
        .send(machine(sw2.clone()), t0 + Duration::minutes(90))
        .unwrap();
    assert_eq!(rec.authorization, Authorization::Authorized);
    assert_eq!(rec.planned_changes, vec!["pln_1".to_string()]);
    assert_eq!(rec.items[0].planned_change.as_deref(), Some("pln_1"));
    assert_eq!(
        rec.tickets[0].id, "CHG0012345",
        "the planned change's ticket"
    );
    // Inside the window with an unplanned item too: unauthorized, item by item.
    let mut sw3 = with(sw2, "openssl", "3.0.15-1~deb12u1");
    sw3.push(pkg("netcat", "1.10-47", "dpkg"));
    let rec = r.send(machine(sw3), t0 + Duration::minutes(100)).unwrap();
    assert_eq!(rec.authorization, Authorization::Unauthorized);
    let planned: Vec<_> = rec
        .items
        .iter()
        .map(|i| (i.subject.as_str(), i.planned_change.is_some()))
        .collect();
    assert!(planned.contains(&("openssl", true)), "{planned:?}");
    assert!(planned.contains(&("netcat", false)), "{planned:?}");
    assert_eq!(rec.planned_changes, vec!["pln_1".to_string()]);
}

/// A change manager's noise rule for vim, written to the store.
fn put_vim_noise_rule(store: &Cmdb, at: chrono::DateTime<Utc>) {
    store
        .commit_people(
            &PeopleWrite::PutNoiseRule(NoiseRule {
                id: "noise_vim".into(),
                class: CiClass::SoftwareProduct,
                pattern: ItemPattern::new("software_*", "vim*"),
                note: "editors churn".into(),
                created_by: "cm".into(),
                created_at: at,
            }),
            draft("cm", "noise_rule.create"),
            at,
        )
        .unwrap();
}

/// Regression: drift rules were cached until this process's own edit dropped them, so a
/// noise rule created through another collector on the same database never applied here.
#[test]
fn a_noise_rule_written_by_another_collector_applies_once_the_cached_rules_age_out() {
    let mut r = rig("noise_elsewhere");
    r.ingest = Ingest::new(r.store.clone())
        .with_flap_window(Duration::hours(1))
        .with_rules_max_age(std::time::Duration::ZERO);
    let t0 = Utc::now();
    r.send(machine(base_software()), t0);
    // A drift first, so this collector has read (and cached) the rules.
    let sw = with(base_software(), "openssl", "3.0.13-1~deb12u1");
    assert!(r
        .send(machine(sw.clone()), t0 + Duration::minutes(1))
        .is_some());
    // Another collector's write: the store changes, this process is not told.
    put_vim_noise_rule(&r.store, t0);
    let sw = with(sw, "vim", "2:9.1.0-1");
    assert!(
        r.send(machine(sw), t0 + Duration::minutes(2)).is_none(),
        "the rule read again from the store suppresses the vim upgrade"
    );
}

#[test]
fn noise_rule_suppresses() {
    let mut r = rig("noise");
    let t0 = Utc::now();
    r.send(machine(base_software()), t0);
    put_vim_noise_rule(&r.store, t0);
    r.ingest.invalidate_rules();
    let sw = with(base_software(), "vim", "2:9.1.0-1");
    assert!(
        r.send(machine(sw.clone()), t0 + Duration::minutes(1))
            .is_none(),
        "all items suppressed: no record"
    );
    let sw = with(sw, "openssl", "3.0.13-1~deb12u1");
    let sw = with(sw, "vim", "2:9.1.1-1");
    let rec = r.send(machine(sw), t0 + Duration::minutes(2)).unwrap();
    let vim = rec.items.iter().find(|i| i.subject == "vim").unwrap();
    assert_eq!(vim.suppressed.as_deref(), Some("noise:noise_vim"));
    assert_eq!(
        rec.severity,
        Severity::High,
        "severity comes from counted items"
    );
}

#[test]
fn flap_within_window_is_marked_not_raised_twice() {
    let mut r = rig("flap");
    let t0 = Utc::now();
    r.send(machine(base_software()), t0);
    let mut gone = base_software();
    gone.retain(|p| p.name != "nginx");
    let rec = r
        .send(machine(gone.clone()), t0 + Duration::minutes(1))
        .unwrap();
    assert_eq!(
        kinds(&rec),
        vec![(ItemKind::SoftwareRemoved, "nginx".into())]
    );
    // Back within the window (1 h in this rig): marked, no new record.
    assert!(r
        .send(machine(base_software()), t0 + Duration::minutes(20))
        .is_none());
    // Gone and back again, outside the window: raised both times.
    r.send(machine(gone), t0 + Duration::minutes(30)).unwrap();
    let rec = r
        .send(machine(base_software()), t0 + Duration::hours(3))
        .unwrap();
    assert_eq!(
        kinds(&rec),
        vec![(ItemKind::SoftwareInstalled, "nginx".into())]
    );
    assert!(rec.items[0].suppressed.is_none());
}

#[test]
fn one_record_per_snapshot_feeds_the_changed_since_feed_in_order() {
    let mut r = rig("feed");
    let t0 = Utc::now();
    r.send(machine(base_software()), t0);
    let a = r
        .send(
            machine(with(base_software(), "vim", "2:9.1-1")),
            t0 + Duration::minutes(1),
        )
        .unwrap();
    let b = r
        .send(
            machine(with(base_software(), "vim", "2:9.2-1")),
            t0 + Duration::minutes(2),
        )
        .unwrap();
    assert_eq!(r.store.sequence_events(100).unwrap(), 2);
    let feed = r.store.feed_since(0, 100).unwrap();
    let ids: Vec<_> = feed
        .iter()
        .map(|e| (e.cursor, e.record.as_ref().unwrap().id.clone()))
        .collect();
    assert_eq!(ids, vec![(1, a.id), (2, b.id.clone())]);
    assert_eq!(r.store.feed_since(1, 100).unwrap().len(), 1);
    assert!(r.store.feed_since(2, 100).unwrap().is_empty());
    // The version the record made points back at it.
    let history = r.store.history(&b.ci_id).unwrap();
    assert_eq!(
        history.last().unwrap().change_record.as_deref(),
        Some(b.id.as_str())
    );
}

#[test]
fn audit_chain_links_every_entry() {
    let r = rig("audit");
    for i in 0..3 {
        r.store
            .commit_people(
                &PeopleWrite::PutNoiseRule(NoiseRule {
                    id: format!("n{i}"),
                    class: CiClass::Computer,
                    pattern: ItemPattern::new("attribute_changed", "x"),
                    note: String::new(),
                    created_by: "cm".into(),
                    created_at: Utc::now(),
                }),
                draft("cm", "noise_rule.create"),
                Utc::now(),
            )
            .unwrap();
    }
    let log = r.store.list_audit(0, 100).unwrap();
    assert_eq!(log.len(), 4, "seed + 3");
    let mut prev = String::new();
    for (i, e) in log.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
        assert_eq!(e.prev_hash, prev);
        assert_eq!(audit_hash(e).unwrap(), e.hash);
        prev = e.hash.clone();
    }
    // A tampered entry no longer hashes to itself.
    let mut forged = log[1].clone();
    forged.actor = "someone else".into();
    assert_ne!(audit_hash(&forged).unwrap(), forged.hash);
}

// --- the diff engine's algebra, on views built from random inventories ---

/// The view of a snapshot's desired state, with its values owned so it outlives the state.
fn view_of(s: &Snapshot) -> ConfigView<'static> {
    use census_collector::drift::view::{Fact, FactKey, FactValue};
    use std::borrow::Cow;
    let d = reconcile::desired("cmp_x", s, Utc::now());
    let v = ConfigView::build(&d.attributes, d.components.values(), d.installs.values());
    ConfigView {
        facts: v
            .facts
            .into_iter()
            .map(|(k, f)| {
                (
                    FactKey {
                        aspect: k.aspect,
                        key: Cow::Owned(k.key.into_owned()),
                    },
                    Fact {
                        subject: Cow::Owned(f.subject.into_owned()),
                        value: FactValue::Json(Cow::Owned(f.value.to_value())),
                    },
                )
            })
            .collect(),
    }
}

fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
    let names = prop::sample::select(vec![
        "openssl", "vim", "curl", "nginx", "bash", "zsh", "git", "libc6", "python3", "perl",
    ]);
    let software = prop::collection::vec(
        (
            names.clone(),
            "[0-9]{1,2}\\.[0-9]{1,2}(~rc[0-9])?-[0-9]",
            prop::sample::select(vec!["amd64", "i386"]),
            prop::sample::select(vec!["dpkg", "rpm", "snap"]),
        ),
        0..12,
    );
    let services = prop::collection::btree_map(
        names.clone(),
        prop::sample::select(vec!["enabled", "disabled", "static"]),
        0..5,
    );
    let users = prop::collection::btree_map(names.clone(), any::<bool>(), 0..4);
    let ports =
        prop::collection::btree_set((prop::sample::select(vec!["tcp", "udp"]), 1u16..100), 0..5);
    (software, services, users, ports, 0u8..4).prop_map(|(sw, svcs, users, ports, kernel)| {
        let mut s = machine(
            sw.into_iter()
                .map(|(n, v, a, src)| Software {
                    arch: Some(a.into()),
                    ..pkg(n, &v, src)
                })
                .collect(),
        );
        if let Some(os) = s.os.data_mut() {
            os.kernel_version = Some(format!("6.1.0-{kernel}"));
        }
        s.services = Section::collected(
            svcs.into_iter()
                .map(|(n, e)| Service {
                    name: n.into(),
                    manager: "systemd".into(),
                    state: "running".into(),
                    enabled: Some(e.into()),
                    description: None,
                })
                .collect(),
        );
        s.users = Section::collected(
            users
                .into_iter()
                .map(|(n, login)| AgentUser {
                    name: n.into(),
                    login_shell: login,
                    ..Default::default()
                })
                .collect(),
        );
        s.listening_ports = Section::collected(
            ports
                .into_iter()
                .map(|(p, port)| ListeningPort {
                    protocol: p.into(),
                    address: "0.0.0.0".into(),
                    port,
                    ..Default::default()
                })
                .collect(),
        );
        s
    })
}

fn permuted(mut s: Snapshot, seed: u64) -> Snapshot {
    fn shuffle<T>(v: &mut [T], mut seed: u64) {
        for i in (1..v.len()).rev() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            v.swap(i, (seed >> 33) as usize % (i + 1));
        }
    }
    if let Some(v) = s.software.data_mut() {
        shuffle(v, seed);
    }
    if let Some(v) = s.services.data_mut() {
        shuffle(v, seed ^ 1);
    }
    if let Some(v) = s.users.data_mut() {
        shuffle(v, seed ^ 2);
    }
    if let Some(v) = s.listening_ports.data_mut() {
        shuffle(v, seed ^ 3);
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn diff_applied_to_a_gives_b(a in arb_snapshot(), b in arb_snapshot()) {
        let (va, vb) = (view_of(&a), view_of(&b));
        let items = diff(&va, &vb);
        prop_assert_eq!(apply(&va, &items), vb.clone());
        prop_assert!(diff(&vb, &apply(&va, &items)).is_empty());
    }

    #[test]
    fn a_permuted_inventory_has_no_diff(a in arb_snapshot(), seed in any::<u64>()) {
        let items = diff(&view_of(&a), &view_of(&permuted(a.clone(), seed)));
        prop_assert!(items.is_empty(), "{:?}", items);
    }
}

#[test]
fn view_explodes_lists_into_keyed_facts() {
    let v = view_of(&machine(base_software()));
    let aspects: std::collections::BTreeSet<_> = v.facts.keys().map(|k| k.aspect).collect();
    for a in [
        Aspect::Attribute,
        Aspect::Os,
        Aspect::Software,
        Aspect::Nic,
        Aspect::Ip,
        Aspect::Service,
        Aspect::User,
        Aspect::Port,
    ] {
        assert!(aspects.contains(&a), "{a:?}");
    }
    assert_eq!(v.attribute("os.hostname"), Some(json!("web01")));
}

#[test]
fn stale_then_retired_without_drift_and_active_again_on_report() {
    use census_collector::lifecycle::{sweep, Lifecycle};
    let mut r = rig("lifecycle");
    let t0 = Utc::now();
    r.send(machine(base_software()), t0);
    let policy = Lifecycle {
        stale_after: Duration::days(7),
        retire_after: Duration::days(30),
    };
    let ci_id = r.store.list_cis(Some(CiClass::Computer)).unwrap()[0]
        .id
        .clone();
    assert_eq!(
        sweep(r.store.as_ref(), policy, t0 + Duration::days(1)).unwrap(),
        0
    );
    assert_eq!(
        sweep(r.store.as_ref(), policy, t0 + Duration::days(8)).unwrap(),
        1
    );
    assert_eq!(
        r.store.get_ci(&ci_id).unwrap().unwrap().status,
        CiStatus::Stale
    );
    assert_eq!(
        sweep(r.store.as_ref(), policy, t0 + Duration::days(31)).unwrap(),
        1
    );
    assert_eq!(
        r.store.get_ci(&ci_id).unwrap().unwrap().status,
        CiStatus::Retired
    );
    assert!(
        r.store.list_change_records().unwrap().is_empty(),
        "lifecycle is not drift"
    );
    let statuses: Vec<CiStatus> = r
        .store
        .history(&ci_id)
        .unwrap()
        .iter()
        .map(|v| v.ci.status)
        .collect();
    assert_eq!(
        statuses,
        vec![CiStatus::Active, CiStatus::Stale, CiStatus::Retired]
    );
    // It reports again: active, still no change record.
    assert!(r
        .send(machine(base_software()), t0 + Duration::days(32))
        .is_none());
    assert_eq!(
        r.store.get_ci(&ci_id).unwrap().unwrap().status,
        CiStatus::Active
    );
    assert_eq!(
        sweep(r.store.as_ref(), policy, t0 + Duration::days(32)).unwrap(),
        0
    );
}

/// A computer's configuration as the full-copy model kept it: what `as_of` must give back.
#[derive(Debug, Clone, PartialEq)]
struct Configuration {
    computer: (String, CiStatus, u64, Attributes),
    relationships: Vec<Relationship>,
    components: Vec<(String, CiClass, String, CiStatus, u64, Attributes)>,
}

fn configuration(
    computer: &Ci,
    relationships: &[Relationship],
    components: &[Ci],
) -> Configuration {
    let mut relationships: Vec<Relationship> = relationships
        .iter()
        .filter(|r| r.key.from == computer.id)
        .cloned()
        .collect();
    relationships.sort_by(|a, b| a.key.cmp(&b.key));
    let mut components: Vec<_> = components
        .iter()
        .filter(|c| c.status != CiStatus::Retired)
        .map(|c| {
            (
                c.id.clone(),
                c.class,
                c.name.clone(),
                c.status,
                c.version,
                c.attributes.clone(),
            )
        })
        .collect();
    components.sort_by(|a, b| a.0.cmp(&b.0));
    Configuration {
        computer: (
            computer.name.clone(),
            computer.status,
            computer.version,
            computer.attributes.clone(),
        ),
        relationships,
        components,
    }
}

/// One step of a random history: a snapshot, a second disk or not, and which section (if
/// any) failed to collect this time.
fn arb_history() -> impl Strategy<Value = Vec<(Snapshot, bool, u8)>> {
    prop::collection::vec((arb_snapshot(), any::<bool>(), 0u8..6), 1..7)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// History is kept as undo steps; reading it back must give exactly what a store that
    /// copied the whole computer at every version would give.
    #[test]
    fn as_of_equals_the_full_copy_model_at_every_time(history in arb_history()) {
        let mut r = rig("history-model");
        let t0 = Utc::now() - Duration::hours(1);
        let mut expected: Vec<(DateTime<Utc>, Configuration)> = Vec::new();
        for (i, (mut snap, second_disk, failed)) in history.into_iter().enumerate() {
            let at = t0 + Duration::minutes(i as i64);
            let mut disks = vec![census_shared::Disk {
                name: "sda".into(),
                serial: Some("S1".into()),
                size_bytes: 100,
                ..Default::default()
            }];
            if second_disk {
                disks.push(census_shared::Disk {
                    name: "sdb".into(),
                    serial: Some("S2".into()),
                    size_bytes: 200,
                    ..Default::default()
                });
            }
            snap.disks = Section::collected(disks);
            match failed {
                1 => snap.software = Section::failed("dpkg status unreadable"),
                2 => snap.services = Section::failed("systemctl timed out"),
                3 => snap.disks = Section::unsupported("no probe"),
                _ => {}
            }
            r.send(snap, at);
            let cid = r.store.get_agent(&r.agent_id).unwrap().unwrap().ci_id.unwrap();
            let now = r.store.owned_state(&cid).unwrap();
            let computer = now.computer.clone().unwrap();
            let mut edges = now.relationships.clone();
            edges.extend(now.installs.iter().map(|i| i.relationship(&cid)));
            expected.push((at, configuration(&computer, &edges, &now.components)));
        }
        let cid = r.store.get_agent(&r.agent_id).unwrap().unwrap().ci_id.unwrap();
        prop_assert!(r.store.as_of(&cid, t0 - Duration::seconds(1)).unwrap().is_none());
        for (at, want) in &expected {
            let when = *at + Duration::seconds(30);
            let v = r.store.as_of(&cid, when).unwrap().expect("a version at that time");
            let (_, components) = r.store.machine_as_of(&cid, when).unwrap().unwrap();
            let got = configuration(&v.ci, &v.relationships, &components);
            prop_assert_eq!(&got, want);
        }
        // One version per configuration the computer had, oldest first.
        let versions: Vec<u64> = r.store.history(&cid).unwrap().iter().map(|v| v.version).collect();
        let mut want: Vec<u64> = expected.iter().map(|(_, c)| c.computer.2).collect();
        want.dedup();
        prop_assert_eq!(versions, want);
    }
}

#[test]
fn catalogue_orders_versions_by_the_package_scheme_not_as_strings() {
    let mut rig = rig("catalogue-versions");
    let software: Vec<Software> = [
        ("3.0.11", "amd64"),
        ("3.0.16", "i386"),
        ("3.0.19", "arm64"),
        ("3.0.2", "armhf"),
    ]
    .into_iter()
    .map(|(version, arch)| Software {
        arch: Some(arch.into()),
        ..pkg("openssl", version, "dpkg")
    })
    .collect();
    rig.send(machine(software), Utc::now());
    let (products, _) =
        census_collector::query::views::catalogue(rig.store.as_ref(), Some("openssl"), 10, None)
            .unwrap();
    let versions: Vec<&str> = products[0]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    // Newest first, in dpkg's order (as text, 3.0.2 would sort above 3.0.19).
    assert_eq!(versions, ["3.0.19", "3.0.16", "3.0.11", "3.0.2"]);
}

#[test]
fn a_diff_between_versions_rates_items_as_the_change_record_does() {
    let mut rig = rig("diff-severity");
    let t0 = Utc::now() - Duration::minutes(10);
    rig.send(machine(base_software()), t0);
    let t1 = t0 + Duration::minutes(1);
    let record = rig
        .send(
            machine(with(base_software(), "openssl", "3.0.13-1~deb12u1")),
            t1,
        )
        .expect("record");
    let in_record = record
        .items
        .iter()
        .find(|i| i.subject == "openssl")
        .map(|i| i.severity);
    assert_eq!(in_record, Some(Severity::High));
    let items = census_collector::query::views::diff_between(
        rig.store.as_ref(),
        &record.ci_id,
        t0 + Duration::seconds(30),
        t1 + Duration::seconds(30),
    )
    .unwrap()
    .expect("both versions exist");
    let in_diff = items
        .iter()
        .find(|i| i.subject == "openssl")
        .map(|i| i.severity);
    assert_eq!(in_diff, in_record);
}

#[test]
fn a_port_that_opens_and_closes_again_is_raised_once_not_twice() {
    let mut rig = rig("port-flap");
    let t0 = Utc::now() - Duration::minutes(30);
    rig.send(machine(base_software()), t0);
    let with_port = |port: u16| {
        let mut s = machine(base_software());
        if let Some(ports) = s.listening_ports.data_mut() {
            ports.push(ListeningPort {
                protocol: "tcp".into(),
                address: "0.0.0.0".into(),
                port,
                process: Some("short-lived".into()),
                ..Default::default()
            });
        }
        s
    };
    // A short-lived process's port in the ephemeral range: raised once, low.
    let opened = rig
        .send(with_port(45678), t0 + Duration::minutes(1))
        .expect("the opening is raised");
    assert_eq!(
        kinds(&opened),
        [(ItemKind::PortOpened, "tcp/45678".to_string())]
    );
    assert_eq!(opened.severity, Severity::Low);
    // Gone again within the flap window: marked, not raised.
    assert!(
        rig.send(machine(base_software()), t0 + Duration::minutes(2))
            .is_none(),
        "the closing is a flap"
    );
    // A service port opened and kept is high, and closing it much later is a change.
    let service = rig
        .send(with_port(8443), t0 + Duration::minutes(3))
        .expect("raised");
    assert_eq!(service.severity, Severity::High);
    let closed = rig
        .send(
            machine(base_software()),
            t0 + Duration::minutes(3) + Duration::hours(2),
        )
        .expect("a close after the window is raised");
    assert_eq!(
        kinds(&closed),
        [(ItemKind::PortClosed, "tcp/8443".to_string())]
    );
}

/// The reporting views of PostgreSQL show what the real ingest path wrote: every CI with
/// its attributes (components owned by their computer, shared CIs), typed relationships
/// including installs, and each version of a computer with the change record behind it.
#[test]
fn reporting_views_show_cis_relationships_and_versions_from_real_snapshots() {
    let mut r = rig("report-cis");
    let t0 = Utc::now();
    r.send(machine(base_software()), t0);
    let upgraded = with(base_software(), "openssl", "3.0.13-1~deb12u1");
    let rec = r
        .send(machine(upgraded), t0 + Duration::minutes(1))
        .expect("a change record");
    let computer = rec.ci_id.clone();
    let cluster = census_e2e::pg::Cluster::shared();
    let url = cluster.database("pg_report_cis");
    let target = Cmdb::open_postgres(pg_backend::PgOptions::new(url)).unwrap();
    r.store.copy_into(&target, &mut |_, _| {}).unwrap();
    let q = |sql: &str| cluster.psql("pg_report_cis", sql).unwrap();
    assert_eq!(
        q(&format!(
            "SELECT attributes->>'system.serial' FROM census_report.computer_details WHERE id = '{computer}'"
        )),
        "SER123"
    );
    // The interface is a component of the computer, with its MAC as an attribute.
    assert_eq!(
        q("SELECT owner_id || ' ' || (attributes->>'mac') FROM census_report.cis WHERE class = 'network_interface'"),
        format!("{computer} 52:54:00:12:34:56")
    );
    // Shared CIs: one software product per package name.
    let packages = base_software().len();
    assert_eq!(
        q("SELECT count(*) FROM census_report.cis WHERE class = 'software_product'"),
        packages.to_string()
    );
    assert_eq!(
        q(&format!(
            "SELECT count(*) FROM census_report.relationships WHERE from_id = '{computer}' AND kind = 'installs'"
        )),
        packages.to_string()
    );
    assert_eq!(
        q("SELECT r.attributes->>'version' FROM census_report.relationships r JOIN census_report.cis p ON p.id = r.to_id WHERE r.kind = 'installs' AND p.name = 'openssl'"),
        "3.0.13-1~deb12u1"
    );
    let has = q(&format!(
        "SELECT count(*) FROM census_report.relationships WHERE from_id = '{computer}' AND kind = 'has'"
    ));
    assert_ne!(has, "0", "the computer has its interface");
    // Two versions: discovery, then the upgrade and its change record.
    assert_eq!(
        q(&format!(
            "SELECT string_agg(version || ':' || coalesce(change_record_id, '-'), ',' ORDER BY version) FROM census_report.computer_history WHERE computer_id = '{computer}'"
        )),
        format!("1:-,2:{}", rec.id)
    );
}

/// Every query of README.md's reporting section runs as written against a database that
/// the real ingest path filled (the role and grant statements too, with a throwaway role).
#[test]
fn the_readme_reporting_queries_run_as_written() {
    let mut r = rig("readme-sql");
    let t0 = Utc::now();
    r.send(machine(base_software()), t0);
    r.send(
        machine(with(base_software(), "openssl", "3.0.13-1~deb12u1")),
        t0 + Duration::minutes(1),
    );
    let cluster = census_e2e::pg::Cluster::shared();
    let url = cluster.database("pg_readme_sql");
    let target = Cmdb::open_postgres(pg_backend::PgOptions::new(url)).unwrap();
    r.store.copy_into(&target, &mut |_, _| {}).unwrap();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let block = readme
        .split("```sql\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README.md has a sql block");
    let statements: Vec<String> = block
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .split(';')
        .map(|s| s.trim().replace("'…'", "'readme-test'"))
        .filter(|s| !s.is_empty())
        .collect();
    assert!(statements.len() >= 8, "{statements:?}");
    for sql in &statements {
        // The role is cluster-wide: the shared cluster may have it from an earlier run.
        let sql = sql.replace("CREATE ROLE reports", "CREATE ROLE reports_readme_test");
        let sql = sql.replace("TO reports", "TO reports_readme_test");
        if let Err(e) = cluster.psql("pg_readme_sql", &sql) {
            assert!(
                sql.starts_with("CREATE ROLE") && e.contains("already exists"),
                "{sql}: {e}"
            );
        }
    }
    assert_eq!(
        cluster
            .psql(
                "pg_readme_sql",
                "SELECT serial FROM (SELECT attributes->>'system.serial' AS serial FROM census_report.computer_details) s"
            )
            .unwrap(),
        "SER123"
    );
}
