//! Faults real fleets bring: a full disk (the data directory on a small tmpfs), clients that
//! send slowly or never finish, floods of bad signatures, and agents whose clocks are wrong.
//! Everything on loopback, bounded in time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use census_shared::Section;

use crate::support::*;

/// A tmpfs of `mib` MiB mounted at a fresh directory; unmounted on drop. None when this
/// machine does not let us mount (not root, or no mount permission in the container).
struct SmallDisk(TempDir);

impl SmallDisk {
    fn mount(name: &str, mib: u32) -> Option<SmallDisk> {
        let dir = temp_dir(name);
        std::fs::create_dir_all(&dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&dir)
            .status()
            .ok()?
            .success();
        ok.then_some(SmallDisk(dir))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fill(dir: &std::path::Path, leave_kib: u64) -> std::path::PathBuf {
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if f.write_all(&chunk).is_err() {
            break;
        }
        let st = nix_statvfs(dir);
        if st <= leave_kib * 1024 {
            break;
        }
    }
    let _ = f.sync_all();
    filler
}

/// Free bytes on the filesystem holding `dir`.
fn nix_statvfs(dir: &std::path::Path) -> u64 {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut s) != 0 {
            return 0;
        }
        s.f_bavail as u64 * s.f_frsize as u64
    }
}

#[test]
fn disk_full_answers_503_acks_nothing_unstored_and_recovers() {
    let Some(disk) = SmallDisk::mount("faults-disk", 64) else {
        eprintln!("disk-full test skipped: cannot mount a tmpfs here");
        return;
    };
    let data = disk.0.join("collector");
    let mut c = Collector::start_in(&data, &[]);
    let token = c.token(1, "1h");
    let mut a = FakeAgent::enroll(&c, &token);
    let mut snap = machine(
        "diskfull",
        Some("SER-DF"),
        None,
        &format!("{:032x}", 31),
        &["52:54:00:df:00:01"],
    );
    assert_eq!(a.send(&c, &mut snap).status, 200);
    let filler = fill(&disk.0, 0);
    let mut statuses = Vec::new();
    let mut acked_while_full = Vec::new();
    for n in 0..20 {
        if let Some(os) = snap.os.data_mut() {
            os.timezone = Some(format!("full-{n}"));
        }
        // The collector may stop itself mid-loop (fail-stop after a failed flush).
        let Some(r) = a.try_send(&c, &mut snap) else {
            break;
        };
        if r.status == 200 {
            acked_while_full.push(a.seq);
        }
        statuses.push(r.status);
    }
    assert!(
        !statuses.is_empty() && statuses.contains(&503),
        "a full disk answers 503 before anything else: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 503 || *s == 200),
        "{statuses:?}"
    );
    std::fs::remove_file(&filler).unwrap();
    // A failed flush stops the collector (fail-stop, exit 75) rather than run on a store
    // it cannot trust; its supervisor restarts it. Do what systemd's Restart= does.
    let exited = c.child.as_mut().and_then(|ch| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(status)) = ch.try_wait() {
                break Some(status.code());
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    eprintln!("collector after disk full: exited with {exited:?}");
    if exited.is_some() {
        assert_eq!(exited, Some(Some(75)), "fail-stop status");
        c.child = None;
        c.start_again();
    }
    if let Some(os) = snap.os.data_mut() {
        os.timezone = Some("recovered".into());
    }
    let r = a.send(&c, &mut snap);
    assert_eq!(
        r.status, 200,
        "ingest recovers when space returns: {:?}",
        r.body
    );
    // Every seq acknowledged while the disk was full is durably there after a restart.
    c.restart();
    let row = agent_row(&c, &a.id);
    if let Some(max) = acked_while_full.iter().max() {
        assert!(
            row["last_seq"].as_u64().unwrap() >= *max,
            "acked {max}, stored {}",
            row["last_seq"]
        );
    }
    drop(c);
}

#[test]
fn slow_and_unfinished_clients_are_cut_off_and_bad_signatures_are_cheap() {
    let c = Collector::start("faults-slow");
    let addr = format!("127.0.0.1:{}", c.port);
    // Slowloris: a client that starts and never finishes. The server hangs up within its
    // handshake timeout (10 s) instead of holding the connection.
    let started = Instant::now();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&[0x16, 0x03, 0x01]).unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap_or(0);
    let took = started.elapsed();
    assert_eq!(n, 0, "the server closed the connection");
    assert!(took < Duration::from_secs(15), "cut off after {took:?}");

    // Many slow connections at once do not stop an honest agent.
    let hogs: Vec<TcpStream> = (0..200)
        .filter_map(|_| {
            let mut s = TcpStream::connect(&addr).ok()?;
            s.write_all(&[0x16, 0x03, 0x01]).ok()?;
            Some(s)
        })
        .collect();
    assert!(
        hogs.len() > 150,
        "opened {} stalled connections",
        hogs.len()
    );
    let mut a = FakeAgent::enroll(&c, &c.token(1, "1h"));
    let mut snap = machine(
        "honest",
        Some("SER-H"),
        None,
        &format!("{:032x}", 41),
        &["52:54:00:aa:bb:01"],
    );
    let t = Instant::now();
    assert_eq!(
        a.send(&c, &mut snap).status,
        200,
        "an honest agent still gets through"
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    drop(hogs);

    // A flood of bad signatures: each refused with 401, cheaply.
    let http = c.http();
    let body = census_shared::wire::encode_body(&snap).unwrap();
    let n = 300;
    let t = Instant::now();
    for i in 0..n {
        let r = http
            .post(format!("{}/api/v1/snapshots", c.url))
            .header("x-census-agent", &a.id)
            .header("x-census-seq", (1000 + i).to_string())
            .header("x-census-signature", "A".repeat(86) + "==")
            .header("content-encoding", "zstd")
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
    }
    let per = t.elapsed() / n;
    eprintln!("bad-signature refusal: {per:?} per request over loopback HTTP (client included)");
    assert!(per < Duration::from_millis(50), "{per:?}");
    // Nothing stored: the agent's seq did not move.
    assert_eq!(agent_row(&c, &a.id)["last_seq"], 1);
}

#[test]
fn clock_skew_is_recorded_and_ordering_stays_by_seq() {
    let c = Collector::start("faults-skew");
    let token = c.token(2, "1h");
    let mut ahead = FakeAgent::enroll(&c, &token);
    let mut behind = FakeAgent::enroll(&c, &token);
    let mut s1 = machine(
        "ahead",
        Some("SER-A"),
        None,
        &format!("{:032x}", 51),
        &["52:54:00:5e:00:01"],
    );
    s1.collected_at = chrono::Utc::now() + chrono::Duration::days(3 * 365);
    assert_eq!(ahead.send(&c, &mut s1).status, 200);
    let mut s2 = machine(
        "behind",
        Some("SER-B"),
        None,
        &format!("{:032x}", 52),
        &["52:54:00:5e:00:02"],
    );
    s2.collected_at = chrono::Utc::now() - chrono::Duration::days(5 * 365);
    assert_eq!(behind.send(&c, &mut s2).status, 200);
    // A later snapshot with an earlier clock is still the newer one: seq orders, not time.
    s2.collected_at -= chrono::Duration::days(1);
    s2.services = Section::collected(vec![]);
    assert_eq!(behind.send(&c, &mut s2).status, 200);
    let skew = |id: &str| agent_row(&c, id)["clock_skew_seconds"].as_i64().unwrap();
    assert!(
        skew(&ahead.id) > 3 * 365 * 86_400 - 3600,
        "{}",
        skew(&ahead.id)
    );
    assert!(skew(&behind.id) < -5 * 365 * 86_400, "{}", skew(&behind.id));
    assert_eq!(agent_row(&c, &behind.id)["last_seq"], 2);
}

#[test]
fn a_restarted_collector_paces_the_returning_backlog_with_a_spread_retry_after() {
    let dir = temp_dir("pace");
    // What the collector remembered before it went down: one submission per second.
    std::fs::write(
        dir.join("pace.json"),
        format!(
            "{{\"steady_per_second\":1.0,\"at\":\"{}\"}}",
            chrono::Utc::now().to_rfc3339()
        ),
    )
    .unwrap();
    let c = Collector::start_in(&dir, &["--pace-spread", "4s"]);
    let n = 12;
    let mut agents: Vec<FakeAgent> = (0..n)
        .map(|_| FakeAgent::enroll(&c, &c.token(1, "1h")))
        .collect();
    let mut snaps: Vec<census_shared::Snapshot> = (0..n)
        .map(|i| {
            machine(
                &format!("pace{i}"),
                Some(&format!("SER-PACE-{i}")),
                None,
                &format!("{:032x}", i + 1),
                &[&format!("52:54:00:10:00:{i:02x}")],
            )
        })
        .collect();
    // The whole backlog at once, as agents do when a collector comes back.
    let mut waiting = Vec::new();
    for i in 0..n {
        let r = agents[i].send(&c, &mut snaps[i]);
        match r.status {
            200 => {}
            429 => {
                let detail = r.detail();
                assert!(detail.contains("pacing"), "{detail}");
                let secs: u64 = detail
                    .rsplit("retry in ")
                    .next()
                    .and_then(|t| t.split(' ').next())
                    .and_then(|t| t.parse().ok())
                    .unwrap_or_else(|| panic!("Retry-After in {detail}"));
                assert!((1..=4).contains(&secs), "{secs}");
                assert_eq!(
                    agent_row(&c, &agents[i].id)["last_seq"],
                    0,
                    "a paced submission stores nothing"
                );
                waiting.push((i, Instant::now() + Duration::from_secs(secs)));
            }
            other => panic!("unexpected {other}: {:?}", r.body),
        }
    }
    let accepted = n - waiting.len();
    assert!(
        accepted <= 6 && waiting.len() >= 6,
        "at 2 x 1/s only a few pass at once: {accepted} accepted"
    );
    // Each refused agent comes back when told and is accepted (the backlog drains).
    let deadline = Instant::now() + Duration::from_secs(90);
    while let Some((i, at)) = waiting.first().copied() {
        assert!(Instant::now() < deadline, "backlog did not drain");
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        waiting.remove(0);
        let r = agents[i].send(&c, &mut snaps[i]);
        match r.status {
            200 => {}
            429 => waiting.push((i, Instant::now() + Duration::from_secs(2))),
            other => panic!("unexpected {other}: {:?}", r.body),
        }
        waiting.sort_by_key(|w| w.1);
    }
    for a in &agents {
        assert!(agent_row(&c, &a.id)["last_seq"].as_u64().unwrap() >= 1);
    }
    // Recovery over (a spread without refusals): steady operation is not paced.
    std::thread::sleep(Duration::from_secs(5));
    for i in 0..n {
        assert_eq!(agents[i].send(&c, &mut snaps[i]).status, 200);
    }
}

/// A TLS connection to the collector that sends a signed-looking snapshot request whose
/// body never finishes: headers promise `declared` bytes, `sent` arrive, then nothing.
fn stalled_body(c: &Collector, agent: &str, declared: usize, sent: usize) -> impl Read + Write {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(c.ca_pem().as_bytes()) {
        roots.add(cert.expect("CA pem")).expect("CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("tls");
    let tcp = TcpStream::connect(("127.0.0.1", c.port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let head = format!(
        "POST /api/v1/snapshots HTTP/1.1\r\nHost: localhost\r\nx-census-agent: {agent}\r\n\
         x-census-seq: 2\r\nx-census-signature: {}==\r\ncontent-encoding: zstd\r\n\
         content-length: {declared}\r\n\r\n",
        "A".repeat(86)
    );
    tls.write_all(head.as_bytes()).expect("headers");
    tls.write_all(&vec![0u8; sent]).expect("part of the body");
    tls.flush().expect("flush");
    tls
}

#[test]
fn slow_bodies_are_cut_off_at_the_body_deadline_without_holding_workers() {
    let c = Collector::start("faults-slow-body");
    let mut a = FakeAgent::enroll(&c, &c.token(1, "1h"));
    let mut snap = machine(
        "patient",
        Some("SER-P"),
        None,
        &format!("{:032x}", 42),
        &["52:54:00:aa:bb:02"],
    );
    assert_eq!(a.send(&c, &mut snap).status, 200);
    // Twenty connections each start a 100 KB body, send 1 KB and stall.
    let started = Instant::now();
    let mut stalled: Vec<_> = (0..20)
        .map(|_| stalled_body(&c, &a.id, 100_000, 1_000))
        .collect();
    // Meanwhile an honest snapshot goes through at once: stalled bodies hold no worker.
    let t = Instant::now();
    assert_eq!(
        a.send(&c, &mut snap).status,
        200,
        "honest agent not starved"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // Each stalled request is answered at the body deadline (30 s), not held open.
    for s in stalled.iter_mut() {
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains("body not received") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
        assert!(text.contains("body not received within 30s"), "{text}");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(29) && took < Duration::from_secs(45),
        "answered after {took:?}"
    );
    // Nothing stored: the agent's seq is the honest one's.
    assert_eq!(agent_row(&c, &a.id)["last_seq"], 2);
}
