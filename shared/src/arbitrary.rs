//! Random snapshots for property tests (feature `proptest`): small value domains, so two
//! snapshots drawn independently share most of their entries and keys, as an inventory and
//! its successor do; duplicate keys (two versions of one package), failed sections and
//! volatile facts all occur.

use chrono::{TimeZone, Utc};
use proptest::prelude::*;

use crate::schema::*;

fn section<T: std::fmt::Debug + Clone + 'static>(
    data: impl Strategy<Value = T>,
) -> impl Strategy<Value = Section<T>> {
    prop_oneof![
        8 => data.prop_map(Section::collected),
        1 => Just(Section::failed("probe failed")),
    ]
}

pub fn software() -> impl Strategy<Value = Software> {
    (
        prop::sample::select(vec![
            "bash",
            "curl",
            "gpg-pubkey",
            "Libfoo",
            "libfoo",
            "zlib1g",
        ]),
        prop::sample::select(vec!["1.0", "1.1", "2.0~rc1", "10"]),
        prop::option::of(prop::sample::select(vec!["amd64", "i386"])),
        prop::sample::select(vec!["dpkg", "snap"]),
        prop::option::of(0u64..3),
        prop::option::of(0i64..3),
    )
        .prop_map(|(name, version, arch, source, size, date)| Software {
            name: name.into(),
            version: version.into(),
            arch: arch.map(str::to_string),
            source: source.into(),
            publisher: None,
            source_package: (name == "libfoo").then(|| "foo".to_string()),
            installed_size_bytes: size.map(|s| s * 1024),
            install_date: date.and_then(|d| {
                Utc.timestamp_opt(1_700_000_000 + d * 86_400, (d as u32) * 1_000)
                    .single()
            }),
        })
}

pub fn service() -> impl Strategy<Value = Service> {
    (
        prop::sample::select(vec!["cron", "ssh", "nginx", "docker"]),
        prop::sample::select(vec!["active", "inactive"]),
        prop::option::of(prop::sample::select(vec!["enabled", "disabled"])),
    )
        .prop_map(|(name, state, enabled)| Service {
            name: name.into(),
            manager: "systemd".into(),
            state: state.into(),
            enabled: enabled.map(str::to_string),
            description: Some(format!("{name} daemon")),
        })
}

pub fn user() -> impl Strategy<Value = User> {
    (
        prop::sample::select(vec!["root", "alice", "bob", "backup"]),
        0u32..3,
        any::<bool>(),
    )
        .prop_map(|(name, uid, login)| User {
            name: name.into(),
            uid: Some(uid),
            gid: Some(uid),
            full_name: None,
            home: Some(format!("/home/{name}")),
            shell: Some(
                if login {
                    "/bin/bash"
                } else {
                    "/usr/sbin/nologin"
                }
                .into(),
            ),
            login_shell: login,
        })
}

pub fn listening_port() -> impl Strategy<Value = ListeningPort> {
    (
        prop::sample::select(vec!["tcp", "udp"]),
        prop::sample::select(vec![22u16, 53, 80, 443]),
        prop::option::of(prop::sample::select(vec!["sshd", "nginx"])),
        prop::option::of(1u32..4),
    )
        .prop_map(|(protocol, port, process, pid)| ListeningPort {
            protocol: protocol.into(),
            address: "0.0.0.0".into(),
            port,
            process: process.map(str::to_string),
            pid,
            user: None,
        })
}

pub fn connection() -> impl Strategy<Value = Connection> {
    (
        prop::sample::select(vec![FlowDirection::Inbound, FlowDirection::Outbound]),
        prop::sample::select(vec![22u16, 443, 5432]),
        prop::sample::select(vec!["10.0.0.5", "10.0.0.6", "2001:db8::7"]),
        prop::option::of(prop::sample::select(vec!["sshd", "/usr/sbin/nginx"])),
        1u32..100,
    )
        .prop_map(|(direction, port, remote, process, samples)| Connection {
            direction,
            protocol: "tcp".into(),
            port,
            remote_address: remote.into(),
            process: process.map(str::to_string),
            samples,
            peak_connections: samples / 2 + 1,
            first_seen: Utc
                .timestamp_opt(1_750_000_000, 0)
                .single()
                .unwrap_or_default(),
            last_seen: Utc
                .timestamp_opt(1_750_000_000 + i64::from(samples), 0)
                .single()
                .unwrap_or_default(),
        })
}

pub fn filesystem() -> impl Strategy<Value = Filesystem> {
    (
        prop::sample::select(vec!["/", "/boot", "/home", "/srv"]),
        prop::sample::select(vec!["ext4", "xfs"]),
        prop::option::of(0u64..4),
    )
        .prop_map(|(mount, fs_type, free)| Filesystem {
            mount_point: mount.into(),
            device: format!("/dev/vda{}", mount.len()),
            fs_type: fs_type.into(),
            total_bytes: 1 << 30,
            free_bytes: free.map(|f| f << 20),
            read_only: false,
        })
}

pub fn disk() -> impl Strategy<Value = Disk> {
    (
        prop::sample::select(vec!["vda", "vdb", "loop0"]),
        prop::sample::select(vec![10u64, 20]),
    )
        .prop_map(|(name, gib)| Disk {
            name: name.into(),
            serial: (name != "loop0").then(|| format!("SN-{name}")),
            size_bytes: gib << 30,
            removable: false,
            transport: Some(if name == "loop0" { "loop" } else { "virtio" }.into()),
            ..Default::default()
        })
}

pub fn network_interface() -> impl Strategy<Value = NetworkInterface> {
    (
        prop::sample::select(vec!["eth0", "eth1", "lo"]),
        1u8..4,
        any::<bool>(),
    )
        .prop_map(|(name, host, up)| NetworkInterface {
            name: name.into(),
            mac: (name != "lo").then(|| format!("52:54:00:00:00:{:02x}", name.len())),
            physical: name != "lo",
            kind: if name == "lo" { "loopback" } else { "ether" }.into(),
            up,
            addresses: vec![IpAddress {
                address: if name == "lo" {
                    "127.0.0.1".into()
                } else {
                    format!("10.0.{}.{host}", name.len())
                },
                prefix: 24,
                family: "ipv4".into(),
                scope: Some(if name == "lo" { "host" } else { "global" }.into()),
            }],
            ..Default::default()
        })
}

pub fn os() -> impl Strategy<Value = Os> {
    (
        prop::sample::select(vec!["12", "13"]),
        prop::sample::select(vec!["6.1.0", "6.12.0"]),
        prop::option::of(0u64..1000),
    )
        .prop_map(|(version, kernel, uptime)| Os {
            family: "linux".into(),
            name: Some("Debian GNU/Linux".into()),
            id: Some("debian".into()),
            version_id: Some(version.into()),
            version: Some(version.into()),
            kernel: Some("Linux".into()),
            kernel_version: Some(kernel.into()),
            arch: "x86_64".into(),
            hostname: "host-1".into(),
            uptime_seconds: uptime,
            ..Default::default()
        })
}

pub fn memory() -> impl Strategy<Value = Memory> {
    (
        prop::sample::select(vec![4u64, 8]),
        prop::option::of(0u64..4),
    )
        .prop_map(|(total, avail)| Memory {
            total_bytes: total << 30,
            available_bytes: avail.map(|a| a << 28),
            swap_total_bytes: 0,
            swap_free_bytes: None,
        })
}

fn list<T: std::fmt::Debug + Clone + 'static>(
    entry: impl Strategy<Value = T>,
    most: usize,
) -> impl Strategy<Value = Vec<T>> {
    prop::collection::vec(entry, 0..most)
}

/// A snapshot of agent `agent-1` at `seq`, every section drawn from the domains above.
pub fn snapshot(seq: u64) -> impl Strategy<Value = Snapshot> {
    (
        (section(os()), section(memory()), section(list(disk(), 3))),
        (
            section(list(network_interface(), 3)),
            section(list(filesystem(), 4)),
            section(list(software(), 14)),
        ),
        (
            section(list(service(), 5)),
            section(list(user(), 5)),
            section(list(listening_port(), 5)),
            section(list(connection(), 4)),
        ),
        0i64..1000,
    )
        .prop_map(
            move |(
                (os, memory, disks),
                (nics, filesystems, software),
                (services, users, ports, connections),
                at,
            )| {
                let mut s = Snapshot::empty(
                    "agent-1",
                    seq,
                    Utc.timestamp_opt(1_750_000_000 + at, 0)
                        .single()
                        .unwrap_or_default(),
                );
                s.agent_version = "0.1.0".into();
                s.system = Section::collected(System {
                    serial: Some("SN-1".into()),
                    machine_id: Some("0123456789abcdef0123456789abcdef".into()),
                    ..Default::default()
                });
                s.os = os;
                s.memory = memory;
                s.disks = disks;
                s.network_interfaces = nics;
                s.filesystems = filesystems;
                s.software = software;
                s.services = services;
                s.users = users;
                s.listening_ports = ports;
                s.connections = connections;
                s
            },
        )
}
