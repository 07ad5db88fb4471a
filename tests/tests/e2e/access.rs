//! Every registered route against anonymous, an agent's credentials and every role: the
//! table comes from the same builder that registers the routes (`census-collector
//! routes`), so a route cannot be added without being checked here.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::support::*;

const ROLES: [&str; 4] = ["admin", "change_manager", "asset_manager", "auditor"];

#[test]
fn every_route_for_every_role_and_anonymous() {
    let c = Collector::start("access");
    let table: Vec<Value> = serde_json::from_str(&c.cli(&["routes"])).expect("route table");
    assert!(table.len() > 20, "{table:?}");
    let tokens: Vec<(&str, String)> = ROLES
        .iter()
        .map(|r| {
            let name = format!("user-{r}");
            c.cli(&["user", "add", &name, "--role", r]);
            c.set_password(&name, "correct horse battery staple");
            let t = c.json(&["user", "token", &name, "--ttl", "1h"])["token"]
                .as_str()
                .unwrap()
                .to_string();
            (*r, t)
        })
        .collect();

    let with_access = |who: &str| -> BTreeSet<String> {
        table
            .iter()
            .filter(|r| r["access"].as_array().unwrap().iter().any(|a| a == who))
            .map(|r| {
                format!(
                    "{} {}",
                    r["method"].as_str().unwrap(),
                    r["path"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        with_access("anonymous"),
        [
            "GET /healthz",
            "GET /readyz",
            "POST /api/v1/enroll",
            "POST /api/v1/login",
            "GET /ui/login",
            "POST /ui/login",
            "GET /ui/assets/{file}"
        ]
        .map(String::from)
        .into(),
        "the anonymous list is exactly the probes, enrollment, password login and the login page"
    );
    let sessions: Vec<(&str, UiSession)> = ROLES
        .iter()
        .map(|r| {
            (
                *r,
                c.ui_login(&format!("user-{r}"), "correct horse battery staple"),
            )
        })
        .collect();
    let browser = c.http_no_redirect();
    let ui_call = |method: &str, path: &str, session: Option<&UiSession>, bearer: Option<&str>| {
        let mut req = browser.request(method.parse().unwrap(), format!("{}{path}", c.url));
        if let Some(s) = session {
            req = req
                .header("cookie", &s.cookie)
                .form(&[("csrf", s.csrf.as_str())]);
        }
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let r = req.send().expect("request");
        let to_login = r
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .is_some_and(|l| l.starts_with("/ui/login"));
        (r.status().as_u16(), to_login)
    };
    assert_eq!(
        with_access("agent"),
        [
            "POST /api/v1/snapshots",
            "POST /api/v1/heartbeat",
            "POST /api/v2/deltas"
        ]
        .map(String::from)
        .into()
    );

    let http = c.http();
    let call = |method: &str, path: &str, token: Option<&str>| -> u16 {
        let mut req = http
            .request(method.parse().unwrap(), format!("{}{path}", c.url))
            .json(&json!({}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().expect("request").status().as_u16()
    };
    let mut checked = 0;
    for route in &table {
        let method = route["method"].as_str().unwrap();
        let path = route["path"]
            .as_str()
            .unwrap()
            .replace("{id}", "does-not-exist");
        let access: Vec<&str> = route["access"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        if access == ["anonymous"] {
            continue;
        }
        if route["credential"] == "session" {
            if path == "/ui/logout" {
                continue; // would end the sessions this loop uses; see ui::logout_revokes_the_session
            }
            assert_eq!(
                ui_call(method, &path, None, None),
                (303, true),
                "anonymous {method} {path} goes to the login page"
            );
            assert_eq!(
                ui_call(method, &path, None, Some(&tokens[0].1)),
                (303, true),
                "an API token does not open UI route {method} {path}"
            );
            for (role, session) in &sessions {
                let (status, to_login) = ui_call(method, &path, Some(session), None);
                if access.contains(role) {
                    assert!(
                        status != 401 && status != 403 && !to_login,
                        "{role} may use {method} {path} but got {status}"
                    );
                } else {
                    assert_eq!(status, 403, "{role} must get 403 on {method} {path}");
                }
                checked += 1;
            }
            continue;
        }
        if access == ["agent"] {
            for (role, token) in &tokens {
                assert_eq!(
                    call(method, &path, Some(token)),
                    401,
                    "{role}'s API token must not work on agent route {method} {path}"
                );
            }
            continue;
        }
        assert_eq!(call(method, &path, None), 401, "anonymous {method} {path}");
        let with_cookie = http
            .request(method.parse().unwrap(), format!("{}{path}", c.url))
            .header("cookie", &sessions[0].1.cookie)
            .json(&json!({}))
            .send()
            .expect("request")
            .status()
            .as_u16();
        assert_eq!(
            with_cookie, 401,
            "a UI session cookie must not open API route {method} {path}"
        );
        assert_eq!(
            call(method, &path, Some("census_pat.pat_deadbeef.0000")),
            401,
            "forged token {method} {path}"
        );
        for (role, token) in &tokens {
            let status = call(method, &path, Some(token));
            if access.contains(role) {
                assert!(
                    status != 401 && status != 403,
                    "{role} may call {method} {path} but got {status}"
                );
            } else {
                assert_eq!(status, 403, "{role} must get 403 on {method} {path}");
            }
            checked += 1;
        }
    }
    eprintln!("access: {checked} route/role pairs checked");
    assert!(checked >= 160, "checked {checked} route/role pairs");
    assert_eq!(call("GET", "/api/v1/not-a-route", None), 404);
}

#[test]
fn password_login_is_generic_rate_limited_and_issues_a_working_token() {
    use std::io::Write;
    let c = Collector::start("login");
    c.cli(&["user", "add", "carol", "--role", "change_manager"]);
    let mut child = std::process::Command::new(bin("census-collector"))
        .arg("--data-dir")
        .arg(&c.dir)
        .args(["user", "passwd", "carol"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse battery staple\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let users = c.json(&["user", "list"]);
    assert!(
        !users.to_string().contains("argon2"),
        "listings never show the hash"
    );

    let http = c.http();
    let login = |name: &str, password: &str| {
        let r = http
            .post(format!("{}/api/v1/login", c.url))
            .json(&json!({"name": name, "password": password}))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        (status, r.json::<Value>().unwrap_or(Value::Null), retry)
    };
    let (s, wrong, _) = login("carol", "not the password");
    let (s2, unknown, _) = login("nobody", "not the password");
    assert_eq!((s, s2), (401, 401));
    assert_eq!(wrong["detail"], unknown["detail"], "one generic message");
    let (s, ok, _) = login("carol", "correct horse battery staple");
    assert_eq!(s, 200, "{ok}");
    let me: Value = http
        .get(format!("{}/api/v1/me", c.url))
        .bearer_auth(ok["token"].as_str().unwrap())
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str()),
        (Some("carol"), Some("change_manager"))
    );
    for _ in 0..5 {
        login("carol", "guessing");
    }
    let (s, _, retry) = login("carol", "correct horse battery staple");
    assert_eq!(
        s, 429,
        "locked after 5 failures, even with the right password"
    );
    assert!(retry.unwrap().parse::<u64>().unwrap() > 0);
}

#[test]
fn metrics_scrape_parses_as_prometheus_text_with_ingest_outcomes() {
    let c = Collector::start("metrics");
    c.cli(&["user", "add", "prom", "--role", "auditor"]);
    let token = c.json(&["user", "token", "prom", "--ttl", "1h"])["token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut a = FakeAgent::enroll(&c, &c.token(1, "1h"));
    let mut snap = machine(
        "metrics01",
        Some("SER-M1"),
        None,
        &format!("{:032x}", 5),
        &["52:54:00:ee:00:01"],
    );
    assert_eq!(a.send(&c, &mut snap).status, 200);
    assert_eq!(
        a.post_raw(&c, 1, b"{}".to_vec(), None).status,
        409,
        "replayed seq"
    );
    let http = c.http();
    assert_eq!(
        http.get(format!("{}/metrics", c.url))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    let text = http
        .get(format!("{}/metrics", c.url))
        .bearer_auth(&token)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let value = |name: &str, label: (&str, &str)| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && s.labels.get(label.0) == Some(label.1))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    assert_eq!(
        value("census_ingest_accepted_total", ("route", "snapshot")),
        1.0,
        "{text}"
    );
    assert_eq!(
        value("census_ingest_refused_total", ("reason", "seq_conflict")),
        1.0,
        "{text}"
    );
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric.starts_with("census_ingest_seconds")),
        "latency histogram: {text}"
    );
}

#[test]
fn a_deleted_user_loses_every_token_even_if_the_name_comes_back() {
    let c = Collector::start("user-delete");
    c.cli(&["user", "add", "ann", "--role", "admin"]);
    let token = c.json(&["user", "token", "ann", "--ttl", "1h"])["token"]
        .as_str()
        .unwrap()
        .to_string();
    let status = |t: &str| {
        c.http()
            .get(format!("{}/api/v1/audit", c.url))
            .bearer_auth(t)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status(&token), 200);
    let done = c.json(&["user", "delete", "ann"]);
    assert_eq!(done["deleted"], "ann");
    assert_eq!(status(&token), 401, "the token went with the person");
    let users = c.json(&["user", "list"]);
    assert!(users.as_array().unwrap().iter().all(|u| u["name"] != "ann"));
    // The same name again is a new person: the old token is still not theirs.
    c.cli(&["user", "add", "ann", "--role", "admin"]);
    assert_eq!(status(&token), 401);
    // The deletion is audited as the OS user who ran the CLI, never "unknown".
    let fresh = c.json(&["user", "token", "ann", "--ttl", "1h"])["token"]
        .as_str()
        .unwrap()
        .to_string();
    let audit: Value = c
        .http()
        .get(format!("{}/api/v1/audit", c.url))
        .bearer_auth(&fresh)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let entries = audit["entries"]
        .as_array()
        .or(audit.as_array())
        .unwrap()
        .clone();
    let deletion = entries
        .iter()
        .find(|e| e["action"] == "user.delete")
        .unwrap_or_else(|| panic!("user.delete audited: {audit}"));
    let actor = deletion["actor"].as_str().unwrap();
    assert!(actor.starts_with("admin-cli:"), "{actor}");
    assert_ne!(actor, "admin-cli:unknown");
}
