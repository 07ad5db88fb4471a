//! The collector's ingest contract over real TLS: every refusal has its status and message
//! and stores nothing; identification, history and as-of behave as DESIGN.md says.

use std::io::Read;
use std::time::Duration;

use census_shared::*;
use chrono::Utc;
use serde_json::Value;

use crate::support::*;

fn stats(c: &Collector) -> Value {
    c.json(&["stats"])
}

#[test]
fn tampered_byte_is_401_and_nothing_is_stored() {
    let c = Collector::start("tamper");
    let mut a = FakeAgent::enroll(&c, &c.token(1, "1h"));
    let mut snap = machine(
        "web1",
        Some("SN1"),
        None,
        "mid-tamper",
        &["52:54:00:aa:00:01"],
    );
    snap.agent_id = a.id.clone();
    snap.seq = 1;
    let body = wire::encode_body(&snap).unwrap();
    let sig = envelope::sign(
        a.key.signing_key(),
        &envelope::snapshot_fields(&a.id, 1, &body),
    )
    .unwrap();
    let before = stats(&c);
    for pos in [0, body.len() / 2, body.len() - 1] {
        let mut tampered = body.clone();
        tampered[pos] ^= 0x01;
        let r = a.post_signed(&c, 1, tampered, Some("zstd"), &sig);
        assert_eq!(r.status, 401, "{r:?}");
        assert!(r.detail().contains("signature does not verify"), "{r:?}");
    }
    // Another agent's key signing this agent's message: also a signature failure.
    let other = AgentKeyPair::generate();
    let foreign = envelope::sign(
        other.signing_key(),
        &envelope::snapshot_fields(&a.id, 1, &body),
    )
    .unwrap();
    assert_eq!(
        a.post_signed(&c, 1, body.clone(), Some("zstd"), &foreign)
            .status,
        401
    );
    assert_eq!(stats(&c), before, "refusals stored nothing");
    assert_eq!(agent_row(&c, &a.id)["last_seq"], 0);
    // The untampered body is then accepted with the same seq.
    assert_eq!(a.post_signed(&c, 1, body, Some("zstd"), &sig).status, 200);
    a.seq = 1;
}

#[test]
fn replay_and_lower_seq_are_409_also_after_restart() {
    let mut c = Collector::start("replay");
    let mut a = FakeAgent::enroll(&c, &c.token(1, "1h"));
    let mut snap = machine(
        "web2",
        Some("SN2"),
        None,
        "mid-replay",
        &["52:54:00:aa:00:02"],
    );
    assert_eq!(a.send(&c, &mut snap).status, 200);
    assert_eq!(a.send(&c, &mut snap).status, 200);
    let body = wire::encode_body(&snap).unwrap(); // seq 2 inside
    let replay = a.post_raw(&c, 2, body.clone(), Some("zstd"));
    assert_eq!(replay.status, 409, "{replay:?}");
    assert!(
        replay
            .detail()
            .contains("not above the last accepted seq 2"),
        "{replay:?}"
    );
    let mut lower = snap.clone();
    lower.seq = 1;
    assert_eq!(
        a.post_raw(&c, 1, wire::encode_body(&lower).unwrap(), Some("zstd"))
            .status,
        409
    );
    c.restart();
    assert_eq!(
        a.post_raw(&c, 2, body, Some("zstd")).status,
        409,
        "seq survives a restart"
    );
    assert_eq!(a.send(&c, &mut snap).status, 200);
}

#[test]
fn cross_agent_unknown_and_revoked() {
    let c = Collector::start("cross");
    let token = c.token(3, "1h");
    let mut a = FakeAgent::enroll(&c, &token);
    let b = FakeAgent::enroll(&c, &token);
    // A signs correctly but the body says it is B: 403.
    let mut snap = machine("web3", None, None, "mid-cross", &["52:54:00:aa:00:03"]);
    snap.agent_id = b.id.clone();
    snap.seq = 1;
    let r = a.post_raw(&c, 1, wire::encode_body(&snap).unwrap(), Some("zstd"));
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.detail().contains("claims agent"), "{r:?}");
    // Unknown agent id: 401.
    let ghost = FakeAgent {
        key: AgentKeyPair::generate(),
        id: "agt_doesnotexist".into(),
        seq: 0,
    };
    assert_eq!(ghost.post_raw(&c, 1, b"{}".to_vec(), None).status, 401);
    // Revoked: 403, and nothing stored.
    c.cli(&["agent", "revoke", &a.id]);
    let r = a.send(
        &c,
        &mut machine("web3", None, None, "mid-cross", &["52:54:00:aa:00:03"]),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.detail().contains("revoked"), "{r:?}");
    assert_eq!(stats(&c)["cis"]["computer"], 0);
}

#[test]
fn enrollment_tokens_expire_exhaust_and_revoke() {
    let c = Collector::start("tokens");
    let http = c.http();
    let enroll = |token: &str| {
        let key = AgentKeyPair::generate();
        let body = serde_json::json!({"token": token, "public_key": key.public().to_text(), "agent_version": "t", "facts": {"hostname": "h", "fqdn": null, "machine_id": null, "vendor": null, "serial": null, "system_uuid": null, "macs": [], "os": null}});
        let r = http
            .post(format!("{}/api/v1/enroll", c.url))
            .json(&body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let expired = c.token(5, "1s");
    std::thread::sleep(Duration::from_millis(1500));
    let (s, body) = enroll(&expired);
    assert_eq!(s, 401, "{body}");
    assert!(body.contains("expired"), "{body}");
    let once = c.token(1, "1h");
    assert_eq!(enroll(&once).0, 201);
    let (s, body) = enroll(&once);
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("used 1 of 1"), "{body}");
    let revoked = c.token(5, "1h");
    let id = c
        .json(&["token", "list"])
        .as_array()
        .unwrap()
        .last()
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.cli(&["token", "revoke", &id]);
    let (s, body) = enroll(&revoked);
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("revoked"), "{body}");
    assert_eq!(enroll("cet_nonsense").0, 401);
    let (s, body) = enroll("");
    assert_eq!(s, 401, "{body}");
    assert_eq!(
        c.json(&["agent", "list"]).as_array().unwrap().len(),
        1,
        "only the valid enrollment stored an agent"
    );
    // A bad public key names the field.
    let r = http.post(format!("{}/api/v1/enroll", c.url)).json(&serde_json::json!({"token": c.token(1, "1h"), "public_key": "ed25519:AAAA", "agent_version": "t", "facts": {"hostname": "h", "fqdn": null, "machine_id": null, "vendor": null, "serial": null, "system_uuid": null, "macs": [], "os": null}})).send().unwrap();
    assert_eq!(r.status().as_u16(), 422);
    assert!(r.text().unwrap().contains("public_key"));
}

struct Zeros(u64);

impl Read for Zeros {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.0) as usize;
        buf[..n].fill(b' ');
        self.0 -= n as u64;
        Ok(n)
    }
}

#[test]
fn hundred_megabyte_body_is_413_with_bounded_memory() {
    let c = Collector::start("huge");
    let a = FakeAgent::enroll(&c, &c.token(1, "1h"));
    let sig = envelope::sign(
        a.key.signing_key(),
        &envelope::snapshot_fields(&a.id, 1, b""),
    )
    .unwrap();
    // Declared length: refused before reading.
    let r = c
        .http()
        .post(format!("{}/api/v1/snapshots", c.url))
        .header(envelope::HEADER_AGENT_ID, &a.id)
        .header(envelope::HEADER_SEQ, "1")
        .header(envelope::HEADER_SIGNATURE, &sig)
        .body(reqwest::blocking::Body::sized(
            Zeros(100 * 1024 * 1024),
            100 * 1024 * 1024,
        ))
        .send();
    if let Ok(r) = r {
        assert_eq!(r.status().as_u16(), 413);
    }
    // Chunked, no length: the collector stops reading at the limit.
    let r = c
        .http()
        .post(format!("{}/api/v1/snapshots", c.url))
        .header(envelope::HEADER_AGENT_ID, &a.id)
        .header(envelope::HEADER_SEQ, "1")
        .header(envelope::HEADER_SIGNATURE, &sig)
        .body(reqwest::blocking::Body::new(Zeros(100 * 1024 * 1024)))
        .send();
    if let Ok(r) = r {
        assert_eq!(r.status().as_u16(), 413);
        assert!(r.text().unwrap().contains("exceeds the limit"));
    }
    let peak = c.peak_rss_kib();
    assert!(
        peak > 0 && peak < 120 * 1024,
        "collector peak RSS {peak} KiB after 2x100 MB bodies"
    );
    assert_eq!(agent_row(&c, &a.id)["last_seq"], 0);
}

#[test]
fn zip_bomb_is_413() {
    let c = Collector::start("bomb");
    let a = FakeAgent::enroll(&c, &c.token(1, "1h"));
    let bomb = zstd::bulk::compress(&vec![b' '; 100 * 1024 * 1024], 19).unwrap();
    assert!(bomb.len() < 64 * 1024, "bomb is {} bytes", bomb.len());
    let r = a.post_raw(&c, 1, bomb, Some("zstd"));
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.detail().contains("decompressed body exceeds"), "{r:?}");
    // The same bomb without a declared content size: refused by counting, not by the
    // frame header.
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
    e.include_contentsize(false).unwrap();
    std::io::Write::write_all(&mut e, &vec![b' '; 100 * 1024 * 1024]).unwrap();
    let streamed = e.finish().unwrap();
    assert!(
        streamed.len() < 64 * 1024,
        "bomb is {} bytes",
        streamed.len()
    );
    let r = a.post_raw(&c, 1, streamed, Some("zstd"));
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.detail().contains("decompressed body exceeds"), "{r:?}");
    let peak = c.peak_rss_kib();
    assert!(
        peak < 200 * 1024,
        "peak RSS {peak} KiB while refusing a zip bomb"
    );
    assert_eq!(agent_row(&c, &a.id)["last_seq"], 0);
}

#[test]
fn schema_violations_are_422_naming_the_field() {
    let c = Collector::start("schema");
    let a = FakeAgent::enroll(&c, &c.token(1, "1h"));
    let mut snap = machine("web4", None, None, "mid-schema", &["52:54:00:aa:00:04"]);
    snap.agent_id = a.id.clone();
    snap.seq = 1;
    let json = serde_json::to_string(&snap).unwrap();
    // Duplicate key.
    let dup = json.replacen("\"seq\":1", "\"seq\":1,\"seq\":1", 1);
    let r = a.post_raw(&c, 1, dup.into_bytes(), None);
    assert_eq!(r.status, 422, "{r:?}");
    assert!(r.detail().contains("duplicate field `seq`"), "{r:?}");
    // Over-long string deep inside.
    let mut v: Value = serde_json::from_str(&json).unwrap();
    v["software"]["data"][2]["name"] = Value::String("x".repeat(5000));
    let r = a.post_raw(&c, 1, serde_json::to_vec(&v).unwrap(), None);
    assert_eq!(r.status, 422);
    assert_eq!(r.body["field"], "software.data[2].name", "{r:?}");
    // Over-long array.
    let mut v: Value = serde_json::from_str(&json).unwrap();
    v["cpus"] = serde_json::json!({"status": "collected", "data": vec![serde_json::json!({"socket":0,"vendor":null,"model":null,"cores":1,"threads":1,"max_mhz":null,"flags_virtualization":null}); 1025]});
    let r = a.post_raw(&c, 1, serde_json::to_vec(&v).unwrap(), None);
    assert_eq!(r.status, 422);
    assert_eq!(r.body["field"], "cpus.data", "{r:?}");
    // Wrong type.
    let mut v: Value = serde_json::from_str(&json).unwrap();
    v["os"]["data"]["hostname"] = serde_json::json!(7);
    let r = a.post_raw(&c, 1, serde_json::to_vec(&v).unwrap(), None);
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (422, Some("os.data.hostname")),
        "{r:?}"
    );
    // Unknown encoding.
    assert_eq!(
        a.post_raw(&c, 1, json.clone().into_bytes(), Some("gzip"))
            .status,
        415
    );
    // Body seq differs from the signed seq.
    let r = a.post_raw(&c, 2, json.into_bytes(), None);
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (422, Some("seq")),
        "{r:?}"
    );
    assert_eq!(stats(&c)["cis"]["computer"], 0);
    assert_eq!(agent_row(&c, &a.id)["last_seq"], 0);
}

#[test]
fn cloned_vm_raises_one_conflict_and_no_merge() {
    let c = Collector::start("clone");
    let token = c.token(2, "1h");
    let mut a = FakeAgent::enroll(&c, &token);
    let mut b = FakeAgent::enroll(&c, &token);
    let uuid = "4c4c4544-0042-3510-8051-b4c04f4e4b32";
    let mut sa = machine(
        "tmpl-a",
        None,
        Some(uuid),
        "cloned-machine-id",
        &["00:50:56:01:00:01"],
    );
    let mut sb = machine(
        "tmpl-b",
        None,
        Some(uuid),
        "cloned-machine-id",
        &["00:50:56:01:00:02"],
    );
    for _ in 0..3 {
        assert_eq!(a.send(&c, &mut sa).status, 200);
        assert_eq!(b.send(&c, &mut sb).status, 200);
    }
    let conflicts = c.json(&["conflicts"]);
    assert_eq!(conflicts.as_array().unwrap().len(), 1, "{conflicts}");
    assert_eq!(conflicts[0]["rule"], "system_uuid");
    let ca = agent_row(&c, &a.id)["ci_id"].clone();
    let cb = agent_row(&c, &b.id)["ci_id"].clone();
    assert_ne!(ca, cb, "no merge");
    assert_eq!(stats(&c)["cis"]["computer"], 2);
    let name_a = c.json(&["ci", "show", ca.as_str().unwrap()])["ci"]["name"].clone();
    assert_eq!(name_a, "tmpl-a.example.com", "A's CI never took B's data");
}

#[test]
fn reimaged_machine_keeps_its_ci() {
    let c = Collector::start("reimage");
    let token = c.token(2, "1h");
    let mut before = FakeAgent::enroll(&c, &token);
    let mut s1 = machine(
        "db1",
        Some("7XK2M33"),
        Some("4c4c4544-0058-4b10-8032-b7c04f4d3333"),
        "old-machine-id",
        &["b8:2a:72:00:00:01"],
    );
    assert_eq!(before.send(&c, &mut s1).status, 200);
    let ci = agent_row(&c, &before.id)["ci_id"].clone();
    // Reinstalled: new agent key and id, new machine-id, same hardware.
    let mut after = FakeAgent::enroll(&c, &token);
    let mut s2 = machine(
        "db1",
        Some("7XK2M33"),
        Some("4c4c4544-0058-4b10-8032-b7c04f4d3333"),
        "new-machine-id",
        &["b8:2a:72:00:00:01"],
    );
    assert_eq!(after.send(&c, &mut s2).status, 200);
    let row = agent_row(&c, &after.id);
    assert_eq!(row["ci_id"], ci, "re-enrolled machine linked to its CI");
    assert_eq!(stats(&c)["cis"]["computer"], 1);
    let shown = c.json(&["ci", "show", ci.as_str().unwrap()]);
    assert_eq!(shown["identification"]["rule"], "serial", "{shown}");
    // The old agent comes back to life: a conflict for a person, no ping-pong, and the
    // agent is told it was superseded (it records that and stops retrying).
    let told = before.send(&c, &mut s1);
    assert_eq!(told.status, 403);
    assert_eq!(
        told.body["type"],
        census_shared::protocol::PROBLEM_AGENT_SUPERSEDED,
        "{}",
        told.body
    );
    assert!(
        told.body["detail"].as_str().unwrap().contains(&after.id),
        "names the successor: {}",
        told.body
    );
    assert_eq!(agent_row(&c, &before.id)["superseded_by"], after.id);
    assert_eq!(c.json(&["conflicts"]).as_array().unwrap().len(), 1);
    assert_eq!(after.send(&c, &mut s2).status, 200);
    assert_eq!(agent_row(&c, &after.id)["ci_id"], ci);
    // The superseded agent's heartbeats do not touch the CI its successor now reports.
    let last_seen = c.json(&["ci", "show", ci.as_str().unwrap()])["ci"]["last_seen"].clone();
    std::thread::sleep(Duration::from_millis(20));
    before.seq += 1;
    let hb = serde_json::to_vec(&census_shared::protocol::Heartbeat {
        content_hash: s1.content_hash(),
        sent_at: Utc::now(),
    })
    .unwrap();
    let sig = envelope::sign(
        before.key.signing_key(),
        &envelope::heartbeat_fields(&before.id, before.seq, &hb),
    )
    .unwrap();
    let r = c
        .http()
        .post(format!("{}/api/v1/heartbeat", c.url))
        .header(envelope::HEADER_AGENT_ID, &before.id)
        .header(envelope::HEADER_SEQ, before.seq.to_string())
        .header(envelope::HEADER_SIGNATURE, sig)
        .body(hb)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let problem: serde_json::Value = r.json().unwrap();
    assert_eq!(
        problem["type"],
        census_shared::protocol::PROBLEM_AGENT_SUPERSEDED
    );
    assert_eq!(
        c.json(&["ci", "show", ci.as_str().unwrap()])["ci"]["last_seen"],
        last_seen,
        "a superseded agent's heartbeat leaves the CI alone"
    );
    assert_eq!(
        agent_row(&c, &before.id)["last_seq"],
        before.seq - 1,
        "and, refused, stores nothing"
    );
}

#[test]
fn failed_section_keeps_its_data() {
    let c = Collector::start("failed");
    let mut a = FakeAgent::enroll(&c, &c.token(1, "1h"));
    let mut s = machine(
        "app1",
        Some("SNF"),
        None,
        "mid-failed",
        &["52:54:00:aa:00:05"],
    );
    assert_eq!(a.send(&c, &mut s).status, 200);
    let ci = agent_row(&c, &a.id)["ci_id"].as_str().unwrap().to_string();
    let counts = c.json(&["ci", "show", &ci])["counts"].clone();
    assert_eq!(counts["installs"], 4);
    s.software = Section::failed("dpkg: status database locked");
    s.disks = Section::unsupported("no probe");
    s.network_interfaces = Section::failed("permission denied");
    let r = a.send(&c, &mut s);
    assert_eq!(r.status, 200);
    assert!(
        r.body["change_record"].is_null(),
        "a failed section is not drift: {r:?}"
    );
    let shown = c.json(&["ci", "show", &ci]);
    assert_eq!(shown["counts"], counts, "{shown}");
    assert_eq!(stats(&c)["cis"]["disk"], 1);
}

#[test]
fn as_of_returns_the_older_version() {
    let c = Collector::start("asof");
    let mut a = FakeAgent::enroll(&c, &c.token(1, "1h"));
    let mut s = machine(
        "hist1",
        Some("SNH"),
        None,
        "mid-hist",
        &["52:54:00:aa:00:06"],
    );
    assert_eq!(a.send(&c, &mut s).status, 200);
    let ci = agent_row(&c, &a.id)["ci_id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(1100));
    let between = Utc::now();
    std::thread::sleep(Duration::from_millis(1100));
    if let Some(os) = s.os.data_mut() {
        os.kernel_version = Some("6.1.0-21-amd64".into());
    }
    if let Some(sw) = s.software.data_mut() {
        sw[0].version = "3.0.13-1~deb12u1".into();
    }
    let r = a.send(&c, &mut s);
    assert_eq!(r.status, 200);
    assert!(
        r.body["change_record"]
            .as_str()
            .is_some_and(|id| id.starts_with("chg_")),
        "{r:?}"
    );
    let now = c.json(&["ci", "show", &ci]);
    assert_eq!(
        now["ci"]["attributes"]["os.kernel_version"],
        "6.1.0-21-amd64"
    );
    let then = c.json(&["ci", "show", &ci, "--as-of", &between.to_rfc3339()]);
    assert_eq!(
        then["ci"]["attributes"]["os.kernel_version"], "6.1.0-18-amd64",
        "{then}"
    );
    let openssl_then = then["relationships_out"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["attributes"]["version"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.0.11"))
        })
        .cloned();
    assert!(
        openssl_then.is_some(),
        "the old openssl edge is in the old version"
    );
    let history = c.json(&["ci", "history", &ci]);
    assert_eq!(history.as_array().unwrap().len(), 2);
    // Unchanged configuration delivered again (volatile facts differ): no new version, no
    // change record, but the volatile facts are refreshed.
    if let Some(os) = s.os.data_mut() {
        os.uptime_seconds = Some(12_345);
    }
    let r = a.send(&c, &mut s);
    assert_eq!(r.status, 200);
    assert!(r.body["change_record"].is_null(), "{r:?}");
    assert_eq!(c.json(&["ci", "history", &ci]).as_array().unwrap().len(), 2);
    assert_eq!(
        c.json(&["ci", "show", &ci])["ci"]["volatile"]["os.uptime_seconds"],
        12_345
    );
    let changes = c.json(&["changes"]);
    assert_eq!(changes.as_array().unwrap().len(), 1, "{changes}");
}

#[test]
fn bad_envelope_headers_are_named() {
    let c = Collector::start("headers");
    let http = c.http();
    let r = http
        .post(format!("{}/api/v1/snapshots", c.url))
        .header("x-census-agent", "a")
        .header("x-census-seq", "abc")
        .header("x-census-signature", "x")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().unwrap().contains("x-census-seq"));
    let r = http
        .post(format!("{}/api/v1/snapshots", c.url))
        .header("x-census-agent", "a".repeat(200))
        .header("x-census-seq", "1")
        .header("x-census-signature", "x")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = http
        .get(format!("{}/api/v1/nothing", c.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(
        http.get(format!("{}/readyz", c.url))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}

#[test]
fn insecure_http_is_refused_off_loopback() {
    let out = std::process::Command::new(bin("census-collector"))
        .args([
            "--data-dir",
            temp_dir("insecure").to_str().unwrap(),
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--insecure-http",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only on loopback"));
}

#[test]
fn store_reopens_after_clean_stop_and_keeps_data() {
    let mut c = Collector::start("reopen");
    let mut a = FakeAgent::enroll(&c, &c.token(1, "1h"));
    assert_eq!(
        a.send(
            &c,
            &mut machine(
                "keep1",
                Some("SNK"),
                None,
                "mid-keep",
                &["52:54:00:aa:00:07"]
            )
        )
        .status,
        200
    );
    c.stop();
    // Offline admin commands open the store directly.
    assert_eq!(c.json(&["stats"])["cis"]["computer"], 1);
    c.start_again();
    assert_eq!(
        c.http()
            .get(format!("{}/readyz", c.url))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(c.json(&["stats"])["cis"]["computer"], 1);
}

#[test]
fn saturated_collector_answers_429_with_retry_after_and_loses_nothing() {
    let c = Collector::start_with("saturated", &["--max-queue", "2", "--workers", "1"]);
    let token = c.token(24, "1h");
    let agents: Vec<FakeAgent> = (0..24).map(|_| FakeAgent::enroll(&c, &token)).collect();
    let url = c.url.clone();
    let ca = c.ca_pem();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(agents.len()));
    let threads: Vec<_> = agents
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let (url, ca, barrier) = (url.clone(), ca.clone(), barrier.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder()
                    .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
                    .build()
                    .unwrap();
                let mut snap = machine(
                    &format!("sat-{i}"),
                    Some(&format!("SAT-{i}")),
                    None,
                    &format!("sat-mid-{i}"),
                    &[&format!("52:54:00:dd:00:{i:02x}")],
                );
                // Big enough that ingest takes a while and the submissions overlap.
                snap.software = Section::collected(
                    (0..3000)
                        .map(|n| Software {
                            name: format!("pkg-{n}"),
                            version: "1.0-1".into(),
                            source: "dpkg".into(),
                            ..Default::default()
                        })
                        .collect(),
                );
                snap.agent_id = a.id.clone();
                snap.seq = 1;
                let body = wire::encode_body(&snap).unwrap();
                let sig = envelope::sign(
                    a.key.signing_key(),
                    &envelope::snapshot_fields(&a.id, 1, &body),
                )
                .unwrap();
                barrier.wait();
                let r = http
                    .post(format!("{url}/api/v1/snapshots"))
                    .header(envelope::HEADER_AGENT_ID, &a.id)
                    .header(envelope::HEADER_SEQ, "1")
                    .header(envelope::HEADER_SIGNATURE, sig)
                    .header("content-encoding", "zstd")
                    .body(body)
                    .send()
                    .unwrap();
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string());
                (a.id.clone(), r.status().as_u16(), retry_after)
            })
        })
        .collect();
    let results: Vec<(String, u16, Option<String>)> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();
    let refused: Vec<_> = results.iter().filter(|r| r.1 == 429).collect();
    let accepted: Vec<_> = results.iter().filter(|r| r.1 == 200).collect();
    assert_eq!(
        refused.len() + accepted.len(),
        results.len(),
        "only 200 or 429: {results:?}"
    );
    assert!(
        !refused.is_empty(),
        "24 simultaneous submissions into a queue of 2 must be pushed back: {results:?}"
    );
    assert!(
        refused.iter().all(|r| r.2.as_deref() == Some("5")),
        "429 carries Retry-After"
    );
    let rows = c.json(&["agent", "list"]);
    for (id, status, _) in &results {
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id.as_str())
            .unwrap();
        let expected = if *status == 200 { 1 } else { 0 };
        assert_eq!(
            row["last_seq"], expected,
            "acked means stored; refused means nothing stored"
        );
    }
}

#[test]
fn operators_own_certificate_is_served() {
    // Any CA-signed pair works; borrow one made by another collector's private CA.
    let donor = Collector::start("donor");
    let cert = donor.dir.join("tls/server.pem");
    let key = donor.dir.join("tls/server.key");
    let own = Collector::start_with(
        "own-cert",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(
        !own.dir.join("tls/ca.pem").exists(),
        "no private CA made when the operator brings a certificate"
    );
    let ca = reqwest::Certificate::from_pem(donor.ca_pem().as_bytes()).unwrap();
    let http = reqwest::blocking::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    assert_eq!(
        http.get(format!("{}/healthz", own.url))
            .send()
            .unwrap()
            .text()
            .unwrap(),
        "ok"
    );
}

#[test]
fn returning_component_continues_its_history_instead_of_overwriting_version_1() {
    let c = Collector::start("comeback");
    let mut a = FakeAgent::enroll(&c, &c.token(1, "1h"));
    let two = machine(
        "nic1",
        Some("SNN"),
        None,
        "mid-nic",
        &["52:54:00:ee:00:01", "52:54:00:ee:00:02"],
    );
    let mut one = two.clone();
    if let Some(nics) = one.network_interfaces.data_mut() {
        nics.pop();
    }
    assert_eq!(a.send(&c, &mut two.clone()).status, 200);
    let ci = agent_row(&c, &a.id)["ci_id"].as_str().unwrap().to_string();
    let nic = c.json(&["ci", "show", &ci])["relationships_out"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["to_name"] == "eth1")
        .unwrap()["key"]["to"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(a.send(&c, &mut one).status, 200);
    assert_eq!(c.json(&["ci", "show", &nic])["ci"]["status"], "retired");
    assert_eq!(a.send(&c, &mut two.clone()).status, 200);
    let history = c.json(&["ci", "history", &nic]);
    let states: Vec<(u64, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            (1, "active".into()),
            (2, "retired".into()),
            (3, "active".into())
        ]
    );
}

/// A client for one HTTP version, trusting the collector's CA.
fn client_speaking(c: &Collector, version: reqwest::Version) -> reqwest::blocking::Client {
    if version == reqwest::Version::HTTP_11 {
        c.http1()
    } else {
        c.http()
    }
}

/// Posts `size` bytes with agent headers (or none) and returns what came back; a transport
/// error (broken pipe, reset stream) fails the test, naming the case.
fn post_refused(
    http: &reqwest::blocking::Client,
    url: &str,
    size: usize,
    with_headers: bool,
    case: &str,
) -> (reqwest::Version, u16, Option<String>) {
    let mut request = http.post(url).body(vec![b'x'; size]);
    if with_headers {
        request = request
            .header(envelope::HEADER_AGENT_ID, "agt_00000000000000000000")
            .header(envelope::HEADER_SEQ, "1")
            .header(envelope::HEADER_SIGNATURE, "AAAA");
    }
    let r = request
        .send()
        .unwrap_or_else(|e| panic!("{case}: the refusal did not arrive: {e:?}"));
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (r.version(), r.status().as_u16(), retry_after)
}

#[test]
fn refusals_before_the_body_is_read_reach_the_client_on_http1_and_http2() {
    let c = Collector::start_with("early-refusals", &["--max-queue", "1"]);
    for version in [reqwest::Version::HTTP_11, reqwest::Version::HTTP_2] {
        let http = client_speaking(&c, version);
        for size in [64 * 1024, 1024 * 1024, 10 * 1024 * 1024] {
            let case = |what: &str| format!("{what}, {size} bytes over {version:?}");
            // 401: no credentials, refused from the headers.
            let (v, status, _) = post_refused(
                &http,
                &format!("{}/api/v1/snapshots", c.url),
                size,
                false,
                &case("401"),
            );
            assert_eq!(v, version);
            assert_eq!(status, 401, "{}", case("401"));
            // 413: a heartbeat far over its 4 KiB limit, refused from Content-Length.
            let (_, status, _) = post_refused(
                &http,
                &format!("{}/api/v1/heartbeat", c.url),
                size,
                true,
                &case("413"),
            );
            assert_eq!(status, 413, "{}", case("413"));
        }
    }

    // 429: the only admission slot is held by a submission whose body never ends.
    let held = {
        let url = format!("{}/api/v1/snapshots", c.url);
        let http = client_speaking(&c, reqwest::Version::HTTP_11);
        std::thread::spawn(move || {
            struct Trickle;
            impl std::io::Read for Trickle {
                fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                    std::thread::sleep(Duration::from_secs(1));
                    buf[0] = b'x';
                    Ok(1)
                }
            }
            let _ = http
                .post(url)
                .header(envelope::HEADER_AGENT_ID, "agt_00000000000000000001")
                .header(envelope::HEADER_SEQ, "1")
                .header(envelope::HEADER_SIGNATURE, "AAAA")
                .body(reqwest::blocking::Body::sized(Trickle, 1 << 20))
                .send();
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    for version in [reqwest::Version::HTTP_11, reqwest::Version::HTTP_2] {
        let http = client_speaking(&c, version);
        for size in [64 * 1024, 1024 * 1024, 10 * 1024 * 1024] {
            let case = format!("429, {size} bytes over {version:?}");
            let (_, status, retry_after) = post_refused(
                &http,
                &format!("{}/api/v1/snapshots", c.url),
                size,
                true,
                &case,
            );
            assert_eq!(status, 429, "{case}");
            assert!(retry_after.is_some(), "{case}: Retry-After arrives too");
        }
    }
    drop(c);
    let _ = held.join();
}
