//! Asset managers' queries over HTTPS against the real collector: the filter language with
//! package-version ordering, paging, a CI's detail, history, as-of and diff, the software
//! catalogue, impact traversal, and exports (formula-safe CSV, CycloneDX SBOM).

use serde_json::Value;

use crate::support::*;

fn token(c: &Collector, name: &str, role: &str) -> String {
    c.cli(&["user", "add", name, "--role", role]);
    c.json(&["user", "token", name, "--ttl", "1h"])["token"]
        .as_str()
        .unwrap()
        .to_string()
}

fn get(
    c: &Collector,
    http: &reqwest::blocking::Client,
    token: &str,
    path: &str,
    query: &[(&str, &str)],
) -> (u16, Value, String) {
    let r = http
        .get(format!("{}{path}", c.url))
        .query(query)
        .bearer_auth(token)
        .send()
        .expect("request");
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = r.text().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body, ctype)
}

fn set_openssl(snap: &mut census_shared::Snapshot, version: &str) {
    for p in snap.software.data_mut().unwrap().iter_mut() {
        if p.name == "openssl" {
            p.version = version.into();
        }
    }
}

#[test]
fn filters_paging_detail_history_catalogue_impact_and_exports() {
    let c = Collector::start("query");
    let http = c.http();
    let am = token(&c, "alice", "asset_manager");
    let aud = token(&c, "otto", "auditor");

    // Three hosts: openssl below, at, and above 3.0.12 (dpkg order, tilde included).
    let hosts = [
        ("web01", "3.0.11-1~deb12u2", "52:54:00:aa:00:01"),
        ("web02", "3.0.13-1~deb12u1", "52:54:00:aa:00:02"),
        (
            "=cmd|' /C calc'!A0",
            "3.0.12-1~deb12u1",
            "52:54:00:aa:00:03",
        ),
    ];
    let mut agents = Vec::new();
    for (i, (host, openssl, mac)) in hosts.iter().enumerate() {
        let mut a = FakeAgent::enroll(&c, &c.token(1, "1h"));
        let mut s = machine(
            host,
            Some(&format!("SER-Q{i}")),
            None,
            &format!("{i:032x}"),
            &[mac],
        );
        set_openssl(&mut s, openssl);
        assert_eq!(a.send(&c, &mut s).status, 200);
        agents.push((a, s));
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    let before_upgrade = chrono::Utc::now();
    std::thread::sleep(std::time::Duration::from_millis(50));
    // web01 upgrades openssl later: history, as-of and diff see both states.
    {
        let (a, s) = &mut agents[0];
        set_openssl(s, "3.0.11-1~deb12u3");
        assert_eq!(a.send(&c, s).status, 200);
    }

    let names = |body: &Value| -> Vec<String> {
        let mut v: Vec<String> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                i["attributes"]["os.hostname"]
                    .as_str()
                    .or(i["os.hostname"].as_str())
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        v.sort();
        v
    };
    let (s, body, _) = get(
        &c,
        &http,
        &am,
        "/api/v1/cis",
        &[(
            "filter",
            r#"software.name = "openssl" and software.version < "3.0.12-1""#,
        )],
    );
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        names(&body),
        vec!["=cmd|' /C calc'!A0", "web01"],
        "dpkg order: 3.0.12-1~deb12u1 sorts before 3.0.12-1"
    );
    let (_, body, _) = get(
        &c,
        &http,
        &am,
        "/api/v1/cis",
        &[(
            "filter",
            r#"software.name = "openssl" and software.version >= "3.0.12~""#,
        )],
    );
    assert_eq!(body["total"], 2);
    let (_, body, _) = get(
        &c,
        &http,
        &am,
        "/api/v1/cis",
        &[
            ("filter", "ip in 10.20.0.0/16 and os.hostname ^= web"),
            ("fields", "id,os.hostname"),
        ],
    );
    assert_eq!(names(&body), vec!["web01", "web02"]);
    assert_eq!(
        body["items"][0].as_object().unwrap().len(),
        2,
        "field selection"
    );

    // Errors name the parameter and the position.
    let (s, body, ctype) = get(
        &c,
        &http,
        &am,
        "/api/v1/cis",
        &[("filter", "os.hostname = ")],
    );
    assert_eq!((s, body["field"].as_str()), (400, Some("filter")));
    assert!(ctype.starts_with("application/problem+json"));
    assert!(
        body["detail"].as_str().unwrap().contains("position 14"),
        "{body}"
    );
    let (s, body, _) = get(&c, &http, &am, "/api/v1/cis", &[("class", "toaster")]);
    assert_eq!((s, body["field"].as_str()), (400, Some("class")));
    let (s, body, _) = get(&c, &http, &am, "/api/v1/cis", &[("cursor", "garbage")]);
    assert_eq!((s, body["field"].as_str()), (400, Some("cursor")));

    // Paging with stable cursors: every computer once, in order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = vec![("limit", "1"), ("sort", "-name")];
        if let Some(cur) = &cursor {
            q.push(("cursor", cur.as_str()));
        }
        let (_, page, _) = get(&c, &http, &am, "/api/v1/cis", &q);
        assert_eq!(page["total"], 3);
        for i in page["items"].as_array().unwrap() {
            seen.push(i["name"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "pages in order without repeats");
    assert_eq!(seen.len(), 3);

    // One CI: relationships both ways, evidence, history, as-of, diff.
    let (_, web01, _) = get(
        &c,
        &http,
        &am,
        "/api/v1/cis",
        &[("filter", "os.hostname = web01")],
    );
    let id = web01["items"][0]["id"].as_str().unwrap().to_string();
    let (s, detail, _) = get(&c, &http, &am, &format!("/api/v1/cis/{id}"), &[]);
    assert_eq!(s, 200, "{detail}");
    assert_eq!(detail["identification"]["rule"], "new");
    let openssl_now = detail["relationships_out"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["to_name"] == "openssl")
        .unwrap()["attributes"]["version"]
        .clone();
    assert_eq!(openssl_now, "3.0.11-1~deb12u3");
    let (_, hist, _) = get(&c, &http, &am, &format!("/api/v1/cis/{id}/history"), &[]);
    assert_eq!(hist["versions"].as_array().unwrap().len(), 2, "{hist}");
    let at = before_upgrade.to_rfc3339();
    let (_, then, _) = get(
        &c,
        &http,
        &am,
        &format!("/api/v1/cis/{id}"),
        &[("as_of", at.as_str())],
    );
    let openssl_then = then["relationships_out"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["to_name"] == "openssl")
        .unwrap()["attributes"]["version"]
        .clone();
    assert_eq!(openssl_then, "3.0.11-1~deb12u2");
    let (_, d, _) = get(
        &c,
        &http,
        &am,
        &format!("/api/v1/cis/{id}/diff"),
        &[("from", at.as_str())],
    );
    let items = d["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{d}");
    assert_eq!(
        (items[0]["kind"].as_str(), items[0]["subject"].as_str()),
        (Some("software_upgraded"), Some("openssl"))
    );
    let (s, _, _) = get(
        &c,
        &http,
        &am,
        &format!("/api/v1/cis/{id}"),
        &[("as_of", "1999-01-01")],
    );
    assert_eq!(s, 404);
    let (s, body, _) = get(
        &c,
        &http,
        &am,
        &format!("/api/v1/cis/{id}"),
        &[("as_of", "last tuesday")],
    );
    assert_eq!((s, body["field"].as_str()), (400, Some("as_of")));

    // Catalogue and impact.
    let (_, cat, _) = get(&c, &http, &am, "/api/v1/software", &[("prefix", "open")]);
    let openssl = &cat["products"][0];
    assert_eq!(
        (openssl["name"].as_str(), openssl["installs"].as_u64()),
        (Some("openssl"), Some(3))
    );
    assert_eq!(
        (openssl["title"].as_str(), openssl["category"].as_str()),
        (Some("OpenSSL"), Some("crypto-library"))
    );
    // Newest first in dpkg's order.
    assert_eq!(
        openssl["versions"][0]["version"], "3.0.13-1~deb12u1",
        "{openssl}"
    );
    assert_eq!(openssl["distinct_versions"], 3);
    let pid = openssl["id"].as_str().unwrap();
    let (_, imp, _) = get(
        &c,
        &http,
        &am,
        "/api/v1/impact",
        &[("from", pid), ("version", "<3.0.12-1")],
    );
    assert_eq!(imp["computers_total"], 2, "{imp}");
    let (_, imp, _) = get(
        &c,
        &http,
        &am,
        "/api/v1/impact",
        &[("from", &id), ("depth", "3")],
    );
    assert!(imp["nodes"].as_array().unwrap().len() >= 6, "{imp}");
    let subnet = imp["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["class"] == "subnet")
        .expect("depth 3 reaches the subnet")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, hosts, _) = get(&c, &http, &am, "/api/v1/impact", &[("from", &subnet)]);
    assert!(
        !hosts["computers"].as_array().unwrap().is_empty(),
        "{hosts}"
    );
    let (s, _, _) = get(
        &c,
        &http,
        &am,
        "/api/v1/impact",
        &[("from", &id), ("depth", "99")],
    );
    assert_eq!(s, 400);

    // Exports: asset managers only; CSV is formula-safe; SBOM is CycloneDX 1.5.
    let (s, _, _) = get(&c, &http, &aud, "/api/v1/export/cis", &[]);
    assert_eq!(s, 403);
    let (s, csv, ctype) = get(
        &c,
        &http,
        &am,
        "/api/v1/export/cis",
        &[("fields", "id,os.hostname,network.addresses")],
    );
    assert_eq!(s, 200);
    assert!(ctype.starts_with("text/csv"));
    let csv = csv.as_str().unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "id,os.hostname,network.addresses");
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(
        csv.contains(",'=cmd|' /C calc'!A0,"),
        "formula escaped: {csv}"
    );
    assert!(!csv.contains(",=cmd"), "{csv}");
    let (s, bom, ctype) = get(&c, &http, &am, &format!("/api/v1/cis/{id}/sbom"), &[]);
    assert_eq!(s, 200);
    assert!(ctype.starts_with("application/vnd.cyclonedx+json"));
    assert_eq!(
        (bom["bomFormat"].as_str(), bom["specVersion"].as_str()),
        (Some("CycloneDX"), Some("1.5"))
    );
    let comp = bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "openssl")
        .unwrap();
    assert_eq!(
        comp["purl"],
        "pkg:deb/debian/openssl@3.0.11-1~deb12u3?arch=amd64"
    );
    assert!(bom["serialNumber"]
        .as_str()
        .unwrap()
        .starts_with("urn:uuid:"));
}

#[test]
fn census_cli_logs_in_and_answers_the_asset_managers_questions() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let c = Collector::start("census-cli");
    c.cli(&["user", "add", "alice", "--role", "asset_manager"]);
    let mut p = Command::new(bin("census-collector"))
        .arg("--data-dir")
        .arg(&c.dir)
        .args(["user", "passwd", "alice"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    p.stdin
        .take()
        .unwrap()
        .write_all(b"a long enough password\n")
        .unwrap();
    assert!(p.wait().unwrap().success());
    let mut a = FakeAgent::enroll(&c, &c.token(1, "1h"));
    let mut s = machine(
        "cli01",
        Some("SER-CLI"),
        None,
        &format!("{:032x}", 77),
        &["52:54:00:cc:00:01"],
    );
    set_openssl(&mut s, "3.0.11-1~deb12u2");
    assert_eq!(a.send(&c, &mut s).status, 200);

    let config = c.dir.join("client.json");
    let census = |args: &[&str], stdin: Option<&str>| run_census(&config, args, stdin);
    let ca = c.dir.join("tls/ca.pem");
    let (ok, _, err) = census(
        &[
            "login",
            "--server",
            &c.url,
            "--user",
            "alice",
            "--ca",
            ca.to_str().unwrap(),
        ],
        Some("wrong password here\n"),
    );
    assert!(
        !ok && err.contains("invalid user name or password"),
        "{err}"
    );
    let (ok, out, err) = census(
        &[
            "login",
            "--server",
            &c.url,
            "--user",
            "alice",
            "--ca",
            ca.to_str().unwrap(),
        ],
        Some("a long enough password\n"),
    );
    assert!(ok, "{err}");
    assert!(out.contains("logged in as alice (asset_manager)"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let (ok, out, err) = census(&["software", "where", "openssl", "<3.0.12"], None);
    assert!(ok, "{err}");
    assert!(out.lines().next().unwrap().starts_with("ID"), "{out}");
    assert!(out.contains("cli01"), "{out}");
    let (_, out, _) = census(&["software", "where", "openssl", "<3.0.11"], None);
    assert!(!out.contains("cli01"), "below the installed version: {out}");

    // Titles: the built-in rules title openssl; a draft rule changes nothing until replayed.
    let (ok, out, err) = census(&["software", "titles", "--prefix", "open"], None);
    assert!(ok, "{err}");
    assert!(
        out.contains("OpenSSL") && out.contains("crypto-library"),
        "{out}"
    );
    let rules = c.dir.join("title-rules.json");
    std::fs::write(
        &rules,
        r#"[{"name": "^openssl$", "set_product": "OpenSSL (toolkit)", "set_category": "security"}]"#,
    )
    .unwrap();
    let (ok, out, err) = census(&["software", "rules", rules.to_str().unwrap()], None);
    assert!(ok, "{err}");
    assert!(out.contains("draft saved: 1 rules"), "{out}");
    let (ok, out, err) = census(&["software", "replay"], None);
    assert!(ok, "{err}");
    assert!(out.starts_with("dry run:"), "{out}");
    assert!(out.contains("OpenSSL (toolkit)"), "{out}");
    let (_, out, _) = census(&["software", "titles", "--prefix", "open"], None);
    assert!(
        !out.contains("OpenSSL (toolkit)"),
        "a dry run applies nothing: {out}"
    );
    let (ok, out, err) = census(&["software", "replay", "--apply"], None);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("applied:") && out.contains("rules version 1"),
        "{out}"
    );
    let (_, out, _) = census(&["software", "titles", "--category", "security"], None);
    assert!(out.contains("OpenSSL (toolkit)"), "{out}");
    let (ok, out, _) = census(&["software", "list", "--prefix", "openssl"], None);
    assert!(ok && out.contains("OpenSSL (toolkit)"), "{out}");
    // A bad rule is refused with the rule and field named.
    std::fs::write(&rules, r#"{"rules": [{"name": "(", "set_product": "x"}]}"#).unwrap();
    let (ok, _, err) = census(&["software", "rules", rules.to_str().unwrap()], None);
    assert!(
        !ok && err.contains("rules[0].name: not a valid pattern"),
        "{err}"
    );
    // The administrator's replay on the collector's host, with its progress in the log.
    let replay = c.json(&["software", "replay", "--dry-run"]);
    assert_eq!(
        (replay["dry_run"].as_bool(), replay["changed"].as_u64()),
        (Some(true), Some(0)),
        "{replay}"
    );
    let (ok, out, _) = census(
        &[
            "-o",
            "csv",
            "ci",
            "list",
            "--filter",
            "os.hostname = cli01",
            "--fields",
            "id,os.hostname",
        ],
        None,
    );
    assert!(ok);
    assert_eq!(out.lines().nth(1).unwrap().split(',').nth(1), Some("cli01"));
    let (ok, out, _) = census(&["-o", "json", "changes", "list", "--state", "open"], None);
    assert!(ok);
    assert!(serde_json::from_str::<Value>(&out).unwrap().is_array());
    let (ok, _, err) = census(&["ci", "list", "--filter", "os.hostname ="], None);
    assert!(!ok && err.contains("position"), "{err}");
    let (ok, out, _) = census(&["completions", "bash"], None);
    assert!(ok && out.contains("census"), "completions");

    // A change manager reviews drift from the command line (token login, second config).
    c.cli(&["user", "add", "carol", "--role", "change_manager"]);
    let cm_token = c.json(&["user", "token", "carol", "--ttl", "1h"])["token"]
        .as_str()
        .unwrap()
        .to_string();
    set_openssl(&mut s, "3.0.13-1~deb12u1");
    let record = a.send(&c, &mut s).body["change_record"]
        .as_str()
        .unwrap()
        .to_string();
    let cm_config = c.dir.join("cm.json");
    let run = |args: &[&str]| {
        let out = Command::new(bin("census"))
            .arg("--config")
            .arg(&cm_config)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = run(&[
        "login",
        "--server",
        &c.url,
        "--token",
        &cm_token,
        "--ca",
        ca.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = run(&[
        "changes",
        "review",
        &record,
        "accepted",
        "-c",
        "patch window",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("is now accepted"), "{out}");
    let (ok, _, err) = census(
        &["changes", "review", &record, "rejected", "-c", "no"],
        None,
    );
    assert!(
        !ok && err.contains("403"),
        "an asset manager may not review: {err}"
    );
}
