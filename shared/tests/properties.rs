//! Property and contract tests for protocol v1.

use census_shared::envelope::{self, EnvelopeError};
use census_shared::limits::MAX_STRING_BYTES;
use census_shared::schema::*;
use census_shared::wire::{decode_body, decode_snapshot_json, encode_body, BodyEncoding};
use census_shared::AgentKeyPair;
use chrono::{TimeZone, Utc};
use proptest::prelude::*;

fn software_strategy() -> impl Strategy<Value = Software> {
    (
        "[a-z][a-z0-9.+-]{0,20}",
        "[0-9][0-9a-z.:~+-]{0,12}",
        prop::option::of("amd64|all|i386"),
    )
        .prop_map(|(name, version, arch)| Software {
            name,
            version,
            arch,
            source: "dpkg".into(),
            ..Default::default()
        })
}

fn snapshot_with(software: Vec<Software>, addresses: Vec<IpAddress>) -> Snapshot {
    let mut s = Snapshot::empty(
        "agent-1",
        3,
        Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
    );
    s.software = Section::collected(software);
    s.network_interfaces = Section::collected(vec![NetworkInterface {
        name: "eth0".into(),
        mac: Some("52:54:00:12:34:56".into()),
        physical: true,
        kind: "ether".into(),
        up: true,
        addresses,
        ..Default::default()
    }]);
    s.users = Section::collected(vec![
        User {
            name: "root".into(),
            uid: Some(0),
            login_shell: true,
            ..Default::default()
        },
        User {
            name: "daemon".into(),
            uid: Some(1),
            ..Default::default()
        },
    ]);
    s
}

fn address(i: u8) -> IpAddress {
    IpAddress {
        address: format!("10.0.0.{i}"),
        prefix: 24,
        family: "ipv4".into(),
        scope: Some("global".into()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sign_verify_round_trip(agent in "[a-z0-9-]{1,64}", seq in any::<u64>(), body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let key = AgentKeyPair::generate();
        let fields = envelope::snapshot_fields(&agent, seq, &body);
        let sig = envelope::sign(key.signing_key(), &fields).unwrap();
        prop_assert_eq!(envelope::verify(&key.public(), &fields, &sig), Ok(()));
    }

    #[test]
    fn any_flipped_body_byte_fails(body in prop::collection::vec(any::<u8>(), 1..1024), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let key = AgentKeyPair::generate();
        let sig = envelope::sign(key.signing_key(), &envelope::snapshot_fields("a", 1, &body)).unwrap();
        let mut tampered = body.clone();
        let i = pos.index(tampered.len());
        tampered[i] ^= 1 << bit;
        prop_assert_eq!(
            envelope::verify(&key.public(), &envelope::snapshot_fields("a", 1, &tampered), &sig),
            Err(EnvelopeError::BadSignature)
        );
    }

    #[test]
    fn any_flipped_signature_byte_fails(pos in 0usize..64, bit in 0u8..8) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = AgentKeyPair::generate();
        let fields = envelope::snapshot_fields("a", 1, b"body");
        let sig = envelope::sign(key.signing_key(), &fields).unwrap();
        let mut raw = b64.decode(&sig).unwrap();
        raw[pos] ^= 1 << bit;
        prop_assert!(envelope::verify(&key.public(), &fields, &b64.encode(raw)).is_err());
    }

    #[test]
    fn seq_and_agent_id_are_bound(seq in 0u64..u64::MAX) {
        let key = AgentKeyPair::generate();
        let sig = envelope::sign(key.signing_key(), &envelope::snapshot_fields("a", seq, b"x")).unwrap();
        prop_assert!(envelope::verify(&key.public(), &envelope::snapshot_fields("a", seq + 1, b"x"), &sig).is_err());
        prop_assert!(envelope::verify(&key.public(), &envelope::snapshot_fields("b", seq, b"x"), &sig).is_err());
        let hb = envelope::snapshot_fields("a", seq, b"x");
        let hb = envelope::SignedFields { domain: envelope::HEARTBEAT_DOMAIN, ..hb };
        prop_assert!(envelope::verify(&key.public(), &hb, &sig).is_err());
    }

    #[test]
    fn hash_is_stable_under_reordering(
        software in prop::collection::vec(software_strategy(), 0..40),
        seed in any::<u64>(),
    ) {
        let addresses: Vec<IpAddress> = (1..6).map(address).collect();
        let a = snapshot_with(software.clone(), addresses.clone());
        let mut shuffled_sw = software;
        let mut shuffled_ip = addresses;
        // Deterministic shuffle from the seed.
        let mut x = seed | 1;
        for i in (1..shuffled_sw.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled_sw.swap(i, (x % (i as u64 + 1)) as usize);
        }
        shuffled_ip.reverse();
        let mut b = snapshot_with(shuffled_sw, shuffled_ip);
        if let Some(users) = b.users.data_mut() { users.reverse(); }
        prop_assert_eq!(a.content_hash(), b.content_hash());
    }

    #[test]
    fn hash_changes_with_configuration(software in prop::collection::vec(software_strategy(), 1..20)) {
        let a = snapshot_with(software.clone(), vec![address(1)]);
        let mut changed = software;
        changed[0].version.push_str("+1");
        let b = snapshot_with(changed, vec![address(1)]);
        prop_assert_ne!(a.content_hash(), b.content_hash());
    }

    #[test]
    fn encode_decode_round_trip(software in prop::collection::vec(software_strategy(), 0..50)) {
        let s = snapshot_with(software, vec![address(7)]);
        let body = encode_body(&s).unwrap();
        prop_assert_eq!(decode_body(&body, BodyEncoding::Zstd).unwrap(), s);
    }
}

#[test]
fn volatile_facts_do_not_change_the_hash() {
    let mut a = snapshot_with(vec![], vec![address(1)]);
    a.os = Section::collected(Os {
        hostname: "h".into(),
        uptime_seconds: Some(5),
        ..Default::default()
    });
    a.memory = Section::collected(Memory {
        total_bytes: 8,
        available_bytes: Some(3),
        ..Default::default()
    });
    a.filesystems = Section::collected(vec![Filesystem {
        mount_point: "/".into(),
        free_bytes: Some(1),
        ..Default::default()
    }]);
    a.listening_ports = Section::collected(vec![ListeningPort {
        protocol: "tcp".into(),
        port: 22,
        pid: Some(100),
        ..Default::default()
    }]);
    let mut b = a.clone();
    b.seq = 99;
    b.collected_at = Utc::now();
    b.os.data_mut().unwrap().uptime_seconds = Some(500);
    b.os.data_mut().unwrap().boot_time = Some(Utc::now());
    b.memory.data_mut().unwrap().available_bytes = Some(7);
    b.filesystems.data_mut().unwrap()[0].free_bytes = Some(9);
    b.listening_ports.data_mut().unwrap()[0].pid = Some(4242);
    assert_eq!(a.content_hash(), b.content_hash());
    b.listening_ports.data_mut().unwrap()[0].port = 2222;
    assert_ne!(a.content_hash(), b.content_hash());
}

#[test]
fn failed_section_hashes_differently_from_empty() {
    let mut a = snapshot_with(vec![], vec![]);
    let mut b = a.clone();
    a.software = Section::collected(vec![]);
    b.software = Section::failed("dpkg status unreadable");
    assert_ne!(a.content_hash(), b.content_hash());
}

/// A fully populated snapshot, every optional string set, so every string leaf exists.
fn full_snapshot() -> Snapshot {
    let s = |v: &str| Some(v.to_string());
    let mut snap = snapshot_with(
        vec![Software {
            name: "openssl".into(),
            version: "3.0.11-1~deb12u2".into(),
            arch: s("amd64"),
            publisher: s("Debian"),
            source: "dpkg".into(),
            source_package: s("openssl"),
            installed_size_bytes: Some(1),
            install_date: Some(Utc::now()),
        }],
        vec![address(1)],
    );
    snap.agent_version = "0.1.0".into();
    snap.system = Section::collected(System {
        vendor: s("v"),
        model: s("m"),
        family: s("f"),
        serial: s("s"),
        uuid: s("u"),
        sku: s("k"),
        chassis_type: s("c"),
        board_vendor: s("bv"),
        board_model: s("bm"),
        board_serial: s("bs"),
        bios_vendor: s("x"),
        bios_version: s("y"),
        bios_date: s("z"),
        machine_id: s("mid"),
        virtualization: s("kvm"),
        container: s("docker"),
        restricted: vec!["serial".into()],
    });
    snap.os = Section::collected(Os {
        family: "linux".into(),
        name: s("Debian"),
        id: s("debian"),
        id_like: vec!["x".into()],
        version: s("12"),
        version_id: s("12"),
        codename: s("bookworm"),
        build: s("b"),
        kernel: s("Linux"),
        kernel_version: s("6.1"),
        arch: "x86_64".into(),
        hostname: "h".into(),
        fqdn: s("h.example"),
        timezone: s("UTC"),
        boot_time: None,
        uptime_seconds: None,
    });
    snap.cpus = Section::collected(vec![Cpu {
        vendor: s("v"),
        model: s("m"),
        flags_virtualization: s("vmx"),
        ..Default::default()
    }]);
    snap.disks = Section::collected(vec![Disk {
        name: "sda".into(),
        model: s("m"),
        vendor: s("v"),
        serial: s("s"),
        wwn: s("w"),
        transport: s("sata"),
        ..Default::default()
    }]);
    snap.filesystems = Section::collected(vec![Filesystem {
        mount_point: "/".into(),
        device: "/dev/sda1".into(),
        fs_type: "ext4".into(),
        ..Default::default()
    }]);
    if let Some(nics) = snap.network_interfaces.data_mut() {
        nics[0].driver = s("e1000");
        nics[0].gateway = s("10.0.0.1");
    }
    snap.services = Section::collected(vec![Service {
        name: "ssh".into(),
        manager: "systemd".into(),
        state: "active".into(),
        enabled: s("enabled"),
        description: s("d"),
    }]);
    snap.users = Section::collected(vec![User {
        name: "root".into(),
        full_name: s("r"),
        home: s("/root"),
        shell: s("/bin/bash"),
        ..Default::default()
    }]);
    snap.listening_ports = Section::collected(vec![ListeningPort {
        protocol: "tcp".into(),
        address: "0.0.0.0".into(),
        port: 22,
        process: s("sshd"),
        pid: None,
        user: s("root"),
    }]);
    snap.memory = Section::collected(Memory::default());
    snap
}

fn string_leaves(v: &serde_json::Value, path: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(_) => out.push(path),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                string_leaves(item, format!("{path}[{i}]"), out);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, item) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                string_leaves(item, p, out);
            }
        }
        _ => {}
    }
}

fn pointer_of(path: &str) -> String {
    let mut p = String::new();
    for part in path.split('.') {
        let (name, idx) = match part.find('[') {
            Some(i) => (&part[..i], Some(&part[i + 1..part.len() - 1])),
            None => (part, None),
        };
        p.push('/');
        p.push_str(name);
        if let Some(idx) = idx {
            p.push('/');
            p.push_str(idx);
        }
    }
    p
}

/// Every string anywhere in the schema is bounded, and the refusal names it. This pins the
/// `bounded_struct!` field lists against the schema: a field added without a bound fails.
#[test]
fn every_string_field_is_bounded_and_named() {
    let value = serde_json::to_value(full_snapshot()).unwrap();
    let mut leaves = Vec::new();
    string_leaves(&value, String::new(), &mut leaves);
    assert!(leaves.len() > 60, "only {} string leaves", leaves.len());
    let mut unchecked = Vec::new();
    for leaf in &leaves {
        if leaf == "collected_at" || leaf.ends_with("install_date") || leaf.ends_with(".status") {
            continue; // typed (dates, enums): not free strings.
        }
        let mut v = value.clone();
        *v.pointer_mut(&pointer_of(leaf)).unwrap() =
            serde_json::Value::String("x".repeat(MAX_STRING_BYTES + 1));
        match decode_snapshot_json(&serde_json::to_vec(&v).unwrap()) {
            Err(e) if e.field() == Some(leaf.as_str()) => {}
            other => unchecked.push(
                format!("{leaf}: {other:?}")
                    .chars()
                    .take(200)
                    .collect::<String>(),
            ),
        }
    }
    assert!(
        unchecked.is_empty(),
        "unbounded or misnamed: {unchecked:#?}"
    );
}

#[test]
fn over_long_list_is_refused_with_its_name() {
    let mut s = full_snapshot();
    s.cpus = Section::collected(vec![Cpu::default(); census_shared::limits::MAX_CPUS + 1]);
    let err = decode_snapshot_json(&serde_json::to_vec(&s).unwrap()).unwrap_err();
    assert_eq!(err.field(), Some("cpus.data"));
    assert!(
        err.to_string().contains("exceeds the limit of 1024"),
        "{err}"
    );
}

#[test]
fn section_shape_is_enforced() {
    let mut s = full_snapshot();
    s.software = Section {
        status: SectionStatus::Collected,
        reason: None,
        data: None,
    };
    let err = decode_snapshot_json(&serde_json::to_vec(&s).unwrap()).unwrap_err();
    assert_eq!(err.field(), Some("software"));
    let mut s = full_snapshot();
    s.users.status = SectionStatus::Failed;
    s.users.reason = Some("x".into());
    assert!(decode_snapshot_json(&serde_json::to_vec(&s).unwrap()).is_err());
}

#[test]
fn nul_in_string_is_refused() {
    let mut s = full_snapshot();
    s.agent_version = "a\0b".into();
    let err = decode_snapshot_json(&serde_json::to_vec(&s).unwrap()).unwrap_err();
    assert_eq!(err.field(), Some("agent_version"));
}

mod deltas {
    use census_shared::arbitrary;
    use census_shared::delta::Delta;
    use census_shared::wire::{decode_delta_body, encode_delta};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Applying the delta an agent computes to its base gives exactly the target: the
        /// same snapshot (volatile facts too) and the same content hash, after the wire.
        #[test]
        fn base_plus_delta_is_the_target(base in arbitrary::snapshot(5), target in arbitrary::snapshot(9)) {
            let (mut base, mut target) = (base, target);
            base.canonicalize_order();
            target.canonicalize_order();
            let delta = Delta::between(&base, 5, &target);
            let body = encode_delta(&delta).unwrap();
            let received = decode_delta_body(&body, census_shared::wire::BodyEncoding::Zstd).unwrap();
            prop_assert_eq!(&received, &delta);
            let rebuilt = received.apply(&base).unwrap();
            let base_uncollected: Vec<String> =
                base.uncollected_sections().into_iter().map(String::from).collect();
            prop_assert_eq!(
                received.uncollected_after(&base_uncollected),
                target.uncollected_sections()
            );
            prop_assert_eq!(rebuilt.content_hash(), target.content_hash());
            prop_assert_eq!(rebuilt, target);
        }

        /// The same delta against any other base is refused or lands on the declared hash:
        /// it never silently produces a different inventory.
        #[test]
        fn a_delta_on_the_wrong_base_never_yields_another_inventory(
            base in arbitrary::snapshot(5),
            other in arbitrary::snapshot(5),
            target in arbitrary::snapshot(9),
        ) {
            let (mut base, mut other, mut target) = (base, other, target);
            base.canonicalize_order();
            other.canonicalize_order();
            target.canonicalize_order();
            let delta = Delta::between(&base, 5, &target);
            if let Ok(rebuilt) = delta.apply(&other) {
                prop_assert_eq!(rebuilt.content_hash(), target.content_hash());
            }
        }
    }
}
