//! Drift over HTTPS with the real collector: change records raised by signed snapshots,
//! people's tokens and roles, review, the audit log, the changed-since feed, and webhooks
//! delivered to a receiver on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::support::*;

/// Adds a user with `role` and returns their API token.
fn person(c: &Collector, name: &str, role: &str) -> String {
    c.cli(&["user", "add", name, "--role", role]);
    c.json(&["user", "token", name, "--ttl", "1h"])["token"]
        .as_str()
        .expect("token")
        .to_string()
}

struct Api<'a> {
    c: &'a Collector,
    http: reqwest::blocking::Client,
}

impl<'a> Api<'a> {
    fn new(c: &'a Collector) -> Self {
        Api { c, http: c.http() }
    }
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.c.url);
        let mut req = self.http.request(method.parse().expect("method"), url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().expect("request");
        let status = r.status().as_u16();
        if status == 401 {
            assert!(
                r.headers().contains_key("www-authenticate"),
                "401 names the scheme"
            );
        }
        let text = r.text().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call("GET", path, Some(token), None)
    }
}

/// A baseline snapshot, then one with openssl upgraded and netcat installed.
fn drifted_record(c: &Collector, api: &Api, token: &str) -> Value {
    let mut agent = FakeAgent::enroll(c, &c.token(1, "1h"));
    let mut snap = machine(
        "drift01",
        Some("SER-D1"),
        None,
        "d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1",
        &["52:54:00:00:d1:01"],
    );
    assert_eq!(agent.send(c, &mut snap).status, 200);
    let sw = snap.software.data_mut().expect("software");
    sw[0].version = "3.0.13-1~deb12u1".into();
    sw.push(census_shared::Software {
        name: "netcat-openbsd".into(),
        version: "1.219-1".into(),
        arch: Some("amd64".into()),
        source: "dpkg".into(),
        ..Default::default()
    });
    let r = agent.send(c, &mut snap);
    assert_eq!(r.status, 200, "{:?}", r.body);
    let id = r.body["change_record"]
        .as_str()
        .expect("the ack names the record")
        .to_string();
    let (s, rec) = api.get(&format!("/api/v1/change-records/{id}"), token);
    assert_eq!(s, 200, "{rec}");
    rec
}

/// Polls `f` until it returns Some, for at most `secs`.
fn eventually<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {secs}s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn change_record_review_audit_feed_and_roles() {
    let c = Collector::start("drift-review");
    let api = Api::new(&c);
    let cm = person(&c, "carol", "change_manager");
    let am = person(&c, "alice", "asset_manager");
    let aud = person(&c, "otto", "auditor");
    let adm = person(&c, "root-admin", "admin");

    let rec = drifted_record(&c, &api, &am);
    let id = rec["id"].as_str().unwrap().to_string();
    let kinds: Vec<(&str, &str)> = rec["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["kind"].as_str().unwrap(), i["subject"].as_str().unwrap()))
        .collect();
    assert!(
        kinds.contains(&("software_upgraded", "openssl")),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("software_installed", "netcat-openbsd")),
        "{kinds:?}"
    );
    assert_eq!(rec["state"], "open");
    assert_eq!(rec["authorization"], "unauthorized");
    assert_eq!(rec["severity"], "high");

    // Who may see and review it.
    let (s, _) = api.call("GET", "/api/v1/change-records", None, None);
    assert_eq!(s, 401, "anonymous");
    let (s, body) = api.call(
        "GET",
        "/api/v1/change-records",
        Some("census_pat.pat_0000.nope"),
        None,
    );
    assert_eq!(
        (s, body["detail"].as_str().unwrap()),
        (401, "the API token is not valid")
    );
    let review = json!({"decision": "accepted", "comment": "patch Tuesday"});
    let path = format!("/api/v1/change-records/{id}/review");
    for (token, who) in [(&am, "asset_manager"), (&aud, "auditor"), (&adm, "admin")] {
        let (s, body) = api.call("POST", &path, Some(token), Some(review.clone()));
        assert_eq!(s, 403, "{who} may not review: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains("change_manager"),
            "{body}"
        );
    }
    // An agent's signed headers are not a person's credentials.
    let r = c
        .http()
        .get(format!("{}/api/v1/change-records", c.url))
        .header("x-census-agent", "agt_x")
        .header("x-census-seq", "9")
        .header("x-census-signature", "AAAA")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // Bad review bodies name the field; nothing changes.
    let (s, body) = api.call(
        "POST",
        &path,
        Some(&cm),
        Some(json!({"decision": "maybe", "comment": "x"})),
    );
    assert_eq!(
        (s, body["field"].as_str()),
        (422, Some("decision")),
        "{body}"
    );
    let (s, body) = api.call(
        "POST",
        &path,
        Some(&cm),
        Some(json!({"decision": "accepted", "comment": " "})),
    );
    assert_eq!(
        (s, body["field"].as_str()),
        (422, Some("comment")),
        "{body}"
    );
    let (s, body) = api.call(
        "POST",
        &path,
        Some(&cm),
        Some(json!({"decision": "accepted", "comment": "x", "items": [99]})),
    );
    assert_eq!((s, body["field"].as_str()), (422, Some("items")), "{body}");

    let (s, body) = api.call("POST", &path, Some(&cm), Some(review.clone()));
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["state"], "accepted");
    assert_eq!(body["review"]["by"], "carol");
    let (s, body) = api.call("POST", &path, Some(&cm), Some(review.clone()));
    assert_eq!(s, 409, "reviews are final: {body}");

    // The audit log: readable by auditors and admins, never writable.
    let (s, _) = api.get("/api/v1/audit", &am);
    assert_eq!(s, 403);
    let (s, log) = api.get("/api/v1/audit?limit=1000", &aud);
    assert_eq!(s, 200, "{log}");
    let entries = log["entries"].as_array().unwrap();
    let entry = entries
        .iter()
        .find(|e| e["action"] == "change_record.review")
        .expect("review audited");
    assert_eq!(entry["actor"], "carol");
    assert_eq!(entry["target"], id.as_str());
    assert_eq!(entry["before"]["state"], "open");
    assert_eq!(entry["after"]["state"], "accepted");
    assert_eq!(entry["comment"], "patch Tuesday");
    for e in entries.windows(2) {
        assert_eq!(e[1]["prev_hash"], e[0]["hash"], "entries are chained");
    }
    for method in ["PUT", "DELETE", "PATCH", "POST"] {
        for token in [&aud, &adm] {
            let (s, _) = api.call(method, "/api/v1/audit", Some(token), Some(json!({})));
            assert_eq!(s, 405, "{method} /api/v1/audit");
        }
    }

    // The changed-since feed: created, then reviewed, in order, resumable by cursor.
    let events = eventually(10, || {
        let (_, feed) = api.get("/api/v1/changes?since=0", &am);
        let ev = feed["events"].as_array().cloned().unwrap_or_default();
        (ev.len() >= 2).then_some(ev)
    });
    assert_eq!(events[0]["type"], "change_record.created");
    assert_eq!(events[1]["type"], "change_record.reviewed");
    assert_eq!(events[1]["record"]["state"], "accepted");
    let first = events[0]["cursor"].as_u64().unwrap();
    let (_, rest) = api.get(&format!("/api/v1/changes?since={first}"), &am);
    assert_eq!(rest["events"][0]["cursor"].as_u64().unwrap(), first + 1);
    let (s, body) = api.get("/api/v1/changes?since=minus-one", &am);
    assert_eq!(s, 400, "{body}");

    // Filtering the review queue.
    let (_, open) = api.get("/api/v1/change-records?state=open", &am);
    assert_eq!(open["total"], 0);
    let (_, accepted) = api.get("/api/v1/change-records?state=accepted&severity=high", &am);
    assert_eq!(accepted["total"], 1);
    let (s, body) = api.get("/api/v1/change-records?state=done", &am);
    assert_eq!((s, body["field"].as_str()), (400, Some("state")));
}

#[test]
fn rules_and_planned_changes_are_validated_and_audited() {
    let c = Collector::start("drift-rules");
    let api = Api::new(&c);
    let cm = person(&c, "carol", "change_manager");
    let am = person(&c, "alice", "asset_manager");
    let aud = person(&c, "otto", "auditor");

    // Shipped defaults are visible.
    let (_, sev) = api.get("/api/v1/severity-rules", &am);
    assert!(sev["rules"].as_array().unwrap().len() > 10);
    let (_, noise) = api.get("/api/v1/noise-rules", &am);
    assert_eq!(noise["noise_rules"][0]["id"], "noise_agent_version");

    let (s, body) = api.call("POST", "/api/v1/noise-rules", Some(&cm), Some(json!({"class": "software_product", "pattern": {"kind": "sofware_*", "subject": "vim"}})));
    assert_eq!(
        (s, body["field"].as_str()),
        (422, Some("pattern.kind")),
        "{body}"
    );
    let (s, _) = api.call("POST", "/api/v1/noise-rules", Some(&am), Some(json!({"class": "software_product", "pattern": {"kind": "software_*", "subject": "vim"}})));
    assert_eq!(s, 403);
    let (s, rule) = api.call("POST", "/api/v1/noise-rules", Some(&cm), Some(json!({"class": "software_product", "pattern": {"kind": "software_*", "subject": "vim*"}, "note": "editors"})));
    assert_eq!(s, 201, "{rule}");
    let (s, _) = api.call(
        "DELETE",
        &format!("/api/v1/noise-rules/{}", rule["id"].as_str().unwrap()),
        Some(&cm),
        None,
    );
    assert_eq!(s, 204);

    let plan = json!({
        "title": "openssl CVE-2024-0001",
        "scope": {"subnets": ["10.20.0.0/16"]},
        "allowed": [{"kind": "software_upgraded", "subject": "openssl"}],
        "window_start": "2026-01-01T00:00:00Z",
        "window_end": "2026-01-02T00:00:00Z"
    });
    let mut bad = plan.clone();
    bad["window_end"] = json!("2025-12-31T00:00:00Z");
    let (s, body) = api.call("POST", "/api/v1/planned-changes", Some(&cm), Some(bad));
    assert_eq!(
        (s, body["field"].as_str()),
        (422, Some("window_end")),
        "{body}"
    );
    let mut bad = plan.clone();
    bad["scope"] = json!({"subnets": ["10.20.0.0/99"]});
    let (s, body) = api.call("POST", "/api/v1/planned-changes", Some(&cm), Some(bad));
    assert_eq!(s, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("scope.subnets[0]"),
        "{body}"
    );
    let mut bad = plan.clone();
    bad["surprise"] = json!(1);
    let (s, _) = api.call("POST", "/api/v1/planned-changes", Some(&cm), Some(bad));
    assert_eq!(s, 422, "unknown fields are refused");
    let big = json!({"title": "x".repeat(300 * 1024)});
    let (s, _) = api.call("POST", "/api/v1/planned-changes", Some(&cm), Some(big));
    assert_eq!(s, 413);
    let (s, created) = api.call("POST", "/api/v1/planned-changes", Some(&cm), Some(plan));
    assert_eq!(s, 201, "{created}");
    let pid = created["id"].as_str().unwrap();
    let (s, cancelled) = api.call(
        "POST",
        &format!("/api/v1/planned-changes/{pid}/cancel"),
        Some(&cm),
        None,
    );
    assert_eq!((s, cancelled["state"].as_str()), (200, Some("cancelled")));

    let (_, log) = api.get("/api/v1/audit?limit=1000", &aud);
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "noise_rule.create",
        "noise_rule.delete",
        "planned_change.create",
        "planned_change.cancel",
        "user.create",
        "api_token.create",
    ] {
        assert!(actions.contains(&a), "{a} audited: {actions:?}");
    }
}

/// A webhook receiver on loopback: records each request; `/ok` answers 200, `/flaky` 500
/// once then 200, `/broken` always 500.
/// (path, headers, body) of each request received.
pub(crate) type Seen = Arc<Mutex<Vec<(String, Vec<(String, String)>, Vec<u8>)>>>;

pub(crate) struct Receiver {
    pub(crate) port: u16,
    pub(crate) seen: Seen,
}

pub(crate) fn receiver() -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Default::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut flaky_calls = 0;
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            let mut headers = Vec::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.trim_end().split_once(':') {
                    let (k, v) = (k.trim().to_lowercase(), v.trim().to_string());
                    if k == "content-length" {
                        len = v.parse().unwrap_or(0);
                    }
                    headers.push((k, v));
                }
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            let status = match path.as_str() {
                "/flaky" => {
                    flaky_calls += 1;
                    if flaky_calls == 1 {
                        "500 Internal Server Error"
                    } else {
                        "200 OK"
                    }
                }
                "/broken" => "500 Internal Server Error",
                "/ok" => "200 OK",
                _ => "404 Not Found",
            };
            log.lock().unwrap().push((path, headers, body));
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    Receiver { port, seen }
}

pub(crate) fn header<'a>(h: &'a [(String, String)], name: &str) -> &'a str {
    h.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

#[test]
fn webhook_gets_a_signed_event_retries_after_500_and_dead_letters() {
    let rx = receiver();
    let c = Collector::start_with(
        "drift-webhook",
        &["--webhook-retry-base", "1s", "--webhook-max-attempts", "2"],
    );
    let api = Api::new(&c);
    let adm = person(&c, "root-admin", "admin");
    let cm = person(&c, "carol", "change_manager");

    let (s, body) = api.call(
        "POST",
        "/api/v1/webhooks",
        Some(&cm),
        Some(json!({"url": "http://127.0.0.1:1/x"})),
    );
    assert_eq!(s, 403, "webhooks are an admin's: {body}");
    let (s, body) = api.call(
        "POST",
        "/api/v1/webhooks",
        Some(&adm),
        Some(json!({"url": "gopher://x"})),
    );
    assert_eq!((s, body["field"].as_str()), (422, Some("url")));
    let (s, flaky) = api.call(
        "POST",
        "/api/v1/webhooks",
        Some(&adm),
        Some(json!({"url": format!("http://127.0.0.1:{}/flaky", rx.port)})),
    );
    assert_eq!(s, 201, "{flaky}");
    let secret = flaky["secret"].as_str().unwrap().to_string();
    let (s, _) = api.call(
        "POST",
        "/api/v1/webhooks",
        Some(&adm),
        Some(json!({"url": format!("http://127.0.0.1:{}/broken", rx.port)})),
    );
    assert_eq!(s, 201);
    let (_, listed) = api.get("/api/v1/webhooks", &adm);
    assert!(
        !listed.to_string().contains(&secret),
        "the secret is shown once"
    );

    let rec = drifted_record(&c, &api, &cm);

    let flaky_calls = eventually(20, || {
        let seen = rx.seen.lock().unwrap();
        let calls: Vec<_> = seen
            .iter()
            .filter(|(p, _, _)| p == "/flaky")
            .cloned()
            .collect();
        (calls.len() >= 2).then_some(calls)
    });
    let (_, first_headers, _) = &flaky_calls[0];
    let (_, headers, body) = &flaky_calls[1];
    assert_eq!(
        header(first_headers, "x-census-delivery"),
        header(headers, "x-census-delivery"),
        "the retry is the same delivery"
    );
    assert_eq!(header(headers, "x-census-event"), "change_record.created");
    let ts = header(headers, "x-census-timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(body);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        header(headers, "x-census-signature"),
        want,
        "HMAC-SHA256 over timestamp.body"
    );
    let event: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(event["type"], "change_record.created");
    assert_eq!(event["record"]["id"], rec["id"]);
    assert!(
        event["services"].is_array(),
        "a change record's event lists the services it reaches (none here): {event}"
    );

    // The broken receiver's delivery ends in the dead letters after 2 attempts.
    let dead = eventually(20, || {
        let (_, d) = api.get("/api/v1/webhooks/deliveries", &adm);
        let dead = d["dead_letters"].as_array().cloned().unwrap_or_default();
        (!dead.is_empty()).then_some(dead)
    });
    assert_eq!(dead[0]["attempts"], 2);
    assert!(
        dead[0]["last_error"].as_str().unwrap().contains("500"),
        "{dead:?}"
    );
    let did = dead[0]["id"].as_str().unwrap();
    let (s, again) = api.call(
        "POST",
        &format!("/api/v1/webhooks/deliveries/{did}/retry"),
        Some(&adm),
        None,
    );
    assert_eq!((s, again["attempts"].as_u64()), (200, Some(0)));
    let broken_calls = || {
        rx.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == "/broken")
            .count()
    };
    eventually(20, || (broken_calls() >= 3).then_some(()));

    // A change manager links the record to its ITSM ticket: the next event carries it.
    let id = rec["id"].as_str().unwrap();
    let path = format!("/api/v1/change-records/{id}/tickets");
    let (s, body) = api.call(
        "PUT",
        &path,
        Some(&cm),
        Some(json!({"tickets": [{"id": "INC1", "url": "javascript:alert(1)"}]})),
    );
    assert_eq!(s, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("tickets[0].url"),
        "{body}"
    );
    let (s, body) = api.call("PUT", &path, Some(&adm), Some(json!({"tickets": []})));
    assert_eq!(s, 403, "linking tickets is a change manager's: {body}");
    let (s, linked) = api.call(
        "PUT",
        &path,
        Some(&cm),
        Some(json!({"tickets": [{"id": "CHG0012345", "url": "https://itsm.example/chg/12345"}]})),
    );
    assert_eq!(s, 200, "{linked}");
    assert_eq!(linked["tickets"][0]["id"], "CHG0012345");
    let (_, shown) = api.get(&format!("/api/v1/change-records/{id}"), &cm);
    assert_eq!(shown["tickets"], linked["tickets"]);
    let event = eventually(20, || {
        let seen = rx.seen.lock().unwrap();
        seen.iter()
            .filter(|(p, h, _)| {
                p == "/flaky" && header(h, "x-census-event") == "change_record.tickets_changed"
            })
            .map(|(_, _, body)| serde_json::from_slice::<Value>(body).unwrap())
            .next()
    });
    assert_eq!(
        event["record"]["tickets"][0]["url"],
        "https://itsm.example/chg/12345"
    );
    let (_, audit) = api.get("/api/v1/audit?limit=1000", &adm);
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "change_record.tickets" && e["target"] == id),
        "{audit}"
    );
}

/// The API's review (issue 26, point 5) found counts quietly clamped, a cursor past what
/// JSON clients hold accepted, and any media type read as JSON; the OpenAPI document now
/// states each limit and the server refuses what falls outside it, naming the parameter.
#[test]
fn out_of_range_parameters_and_non_json_bodies_are_refused_as_documented() {
    let c = Collector::start("api-limits");
    let api = Api::new(&c);
    let admin = person(&c, "ada", "admin");
    for (path, field) in [
        ("/api/v1/change-records?limit=0", "limit"),
        ("/api/v1/change-records?limit=1001", "limit"),
        ("/api/v1/change-records?state=pending", "state"),
        ("/api/v1/audit?since=9223372036854775808", "since"),
        ("/api/v1/audit?since=", "since"),
        ("/api/v1/changes?limit=5000", "limit"),
        ("/api/v1/cis?limit=0", "limit"),
        ("/api/v1/cis?class=laptop", "class"),
        ("/api/v1/software?limit=1001", "limit"),
        ("/api/v1/impact?from=x&depth=0", "depth"),
        ("/api/v1/impact?from=x&depth=5", "depth"),
        ("/api/v1/impact?from=x&limit=10001", "limit"),
        ("/api/v1/export/cis?sort=name", "sort"),
    ] {
        let (status, body) = api.get(path, &admin);
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["field"], field, "{path}: {body}");
        assert!(
            body["detail"].as_str().unwrap().starts_with(field),
            "{path}: {body}"
        );
    }
    // At the documented bounds they are taken.
    for path in [
        "/api/v1/change-records?limit=1000",
        "/api/v1/audit?since=9223372036854775807&limit=1",
        "/api/v1/cis?limit=1",
        "/api/v1/cis?limit=1000&class=software_product",
    ] {
        let (status, body) = api.get(path, &admin);
        assert_eq!(status, 200, "{path}: {body}");
    }

    let http = c.http();
    let form = http
        .post(format!("{}/api/v1/webhooks", c.url))
        .bearer_auth(&admin)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("url=https://example.com/hook")
        .send()
        .expect("request");
    assert_eq!(form.status().as_u16(), 415);
    let problem: Value = form.json().expect("problem");
    assert_eq!(problem["field"], "content-type", "{problem}");
    let (_, hooks) = api.get("/api/v1/webhooks", &admin);
    assert_eq!(hooks["webhooks"], json!([]), "nothing stored");
    let json_with_charset = http
        .post(format!("{}/api/v1/webhooks", c.url))
        .bearer_auth(&admin)
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"{"url": "https://example.com/hook"}"#)
        .send()
        .expect("request");
    assert_eq!(json_with_charset.status().as_u16(), 201);
}
