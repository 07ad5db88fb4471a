//! Vulnerabilities over the real binaries, against ground truth: this machine's own agent
//! reports its packages, OSV records are built from what `dpkg-query` says of them, the
//! collector imports them offline (`census-collector vulns import`), and `census vulns`
//! and the API must find exactly the binaries of the affected source package.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::{json, Value};

use crate::agent::{text, RealAgent};
use crate::support::*;

/// `ID`, `VERSION_ID` of /etc/os-release.
fn os_release() -> (String, String) {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    (field("ID"), field("VERSION_ID"))
}

/// Installed packages as (binary, version, source, source version).
fn dpkg_sources() -> Vec<(String, String, String, String)> {
    let out = Command::new("dpkg-query")
        .args([
            "-W",
            "-f",
            "${db:Status-Abbrev}\t${Package}\t${Version}\t${source:Package}\t${source:Version}\n",
        ])
        .output()
        .expect("dpkg-query");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 5 && f[0].starts_with("ii")).then(|| {
                (
                    f[1].to_string(),
                    f[2].to_string(),
                    f[3].to_string(),
                    f[4].to_string(),
                )
            })
        })
        .collect()
}

fn record(id: &str, ecosystem: &str, package: &str, fixed: &str) -> Value {
    json!({
        "id": id,
        "modified": "2026-11-30T10:00:00Z",
        "aliases": [format!("CVE-2026-{}", 90000 + id.len())],
        "summary": format!("{package} fixed in {fixed}"),
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:N"}],
        "affected": [{
            "package": {"ecosystem": ecosystem, "name": package},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]
        }]
    })
}

#[test]
fn this_machine_is_matched_against_records_built_from_its_own_packages() {
    let (os, version_id) = os_release();
    if os != "debian" {
        eprintln!("skipped: the ground truth here is dpkg on Debian, this is {os}");
        return;
    }
    let ecosystem = format!(
        "Debian:{}",
        version_id.split('.').next().unwrap_or_default()
    );
    let packages = dpkg_sources();
    // A source package with a binary of another name and no binNMU (openssl -> libssl3 on
    // Debian 12): the case binary-name matching gets wrong.
    let (_, _, source, source_version) = packages
        .iter()
        .find(|(bin, v, src, sv)| src == "openssl" && bin != src && v == sv)
        .or_else(|| {
            packages
                .iter()
                .find(|(bin, v, src, sv)| bin != src && v == sv)
        })
        .cloned()
        .expect("a binary package built from a source of another name");
    let binaries: BTreeSet<String> = packages
        .iter()
        .filter(|(_, v, src, _)| *src == source && *v == source_version)
        .map(|(bin, ..)| bin.clone())
        .collect();
    let a_binary = binaries.iter().find(|b| **b != source).unwrap().clone();

    let c = Collector::start("vulns");
    let agent = RealAgent::new("vulns");
    assert!(agent.enroll(&c).status.success());
    let out = agent.run(&["once"]);
    assert!(out.status.success(), "{}", text(&out));

    let dir = temp_dir("osv");
    let above = format!("{source_version}+census1");
    for (id, package, fixed) in [
        ("DSA-9801-1", source.as_str(), source_version.as_str()),
        ("DSA-9802-1", source.as_str(), above.as_str()),
        ("DSA-9803-1", a_binary.as_str(), above.as_str()),
    ] {
        let mut r = record(id, &ecosystem, package, fixed);
        if id == "DSA-9803-1" {
            r["summary"] = json!("<script>alert(1)</script> in a summary");
        }
        std::fs::write(dir.join(format!("{id}.json")), r.to_string()).unwrap();
    }
    let imported = c.json(&["vulns", "import", dir.to_str().unwrap()]);
    assert_eq!(imported["added"], 3, "{imported}");
    assert_eq!(imported["skipped_total"], 0, "{imported}");

    let token = person_token(&c, "vera", "auditor");
    let config = temp_dir("census-vulns").join("census.toml");
    census_login(&c, &config, &token);
    let (ok, out, err) = run_census(&config, &["--output", "json", "ci", "list"], None);
    assert!(ok, "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    let ci = list["items"][0]["id"]
        .as_str()
        .or(list[0]["id"].as_str())
        .unwrap()
        .to_string();
    let (ok, out, err) = run_census(&config, &["--output", "json", "vulns", "host", &ci], None);
    assert!(ok, "{err}");
    let host: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(host["ecosystem"], ecosystem.as_str());
    assert_eq!(host["packages"].as_u64().unwrap() as usize, packages.len());
    let found: BTreeSet<(String, String)> = host["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["advisory"].as_str().unwrap().to_string(),
                f["package"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = binaries
        .iter()
        .map(|b| ("DSA-9802-1".to_string(), b.clone()))
        .collect();
    assert_eq!(
        found, want,
        "fixed above {source} {source_version}: every binary built from it; fixed at it, or keyed by the binary {a_binary}: nothing"
    );
    assert!(host["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["fixed"] == above.as_str()));
    let (ok, table, err) = run_census(&config, &["vulns", "list"], None);
    assert!(ok && table.contains("DSA-9802-1"), "{table} {err}");

    // A service running on this machine carries its advisories.
    let admin = person_token(&c, "sam", "admin");
    let made: Value = c
        .http()
        .post(format!("{}/api/v1/services", c.url))
        .bearer_auth(&admin)
        .json(&serde_json::json!({
            "kind": "application", "name": "Build host", "owner": "sam", "criticality": 2,
            "support_group": "ops", "runs_on": [{"type": "computer", "id": ci}]
        }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let service = made["id"].as_str().expect("a service").to_string();
    let (ok, table, err) = run_census(&config, &["vulns", "service", &service], None);
    assert!(ok, "{err}");
    assert!(table.contains("DSA-9802-1"), "{table}");
    assert!(
        err.contains("Build host: 1 of 1 computers exposed"),
        "{err}"
    );

    // The API: the fleet, one advisory, refusals, the CSV export for exporters only.
    let http = c.http();
    let get = |path: &str, tok: &str| {
        let r = http
            .get(format!("{}{path}", c.url))
            .bearer_auth(tok)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().unwrap())
    };
    let (s, body) = get("/api/v1/vulns", &token);
    assert_eq!(s, 200, "{body}");
    let fleet: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            fleet["advisories_held"].as_u64(),
            fleet["computers_exposed"].as_u64()
        ),
        (Some(3), Some(1))
    );
    assert_eq!(fleet["advisories"][0]["id"], "DSA-9802-1");
    assert_eq!(fleet["advisories"][0]["level"], "critical", "{fleet}");
    assert_eq!(
        fleet["advisories"][0]["score"], 9.1,
        "the vector's CVSS 3.1 base score"
    );
    let (s, body) = get("/api/v1/vulns/DSA-9802-1", &token);
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["hosts"][0]["id"],
        ci.as_str()
    );
    let (s, body) = get("/api/v1/vulns/DSA-0000-0", &token);
    assert_eq!(s, 404, "{body}");
    for (query, field) in [
        ("level=severe", "level"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
    ] {
        let (s, body) = get(&format!("/api/v1/vulns?{query}"), &token);
        assert_eq!(s, 400, "{query}: {body}");
        assert!(body.contains(field), "{body}");
    }
    let (s, body) = get(&format!("/api/v1/vulns?product={a_binary}"), &token);
    assert_eq!(s, 200);
    let by_product: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        by_product["advisories"][0]["id"], "DSA-9802-1",
        "{by_product}"
    );
    let (s, body) = get("/api/v1/vulns?product=no-such-package", &token);
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["advisories"],
        json!([])
    );
    let (s, body) = get(
        &format!("/api/v1/vulns?product={}", "x".repeat(201)),
        &token,
    );
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("product"), "{body}");
    let (s, _) = get("/api/v1/export/vulns", &token);
    assert_eq!(s, 403, "an auditor exports nothing");
    let exporter = person_token(&c, "asa", "asset_manager");
    let (s, csv) = get("/api/v1/export/vulns", &exporter);
    assert_eq!(s, 200);
    assert!(
        csv.starts_with("id,aliases,level,score,hosts,packages,summary\n"),
        "{csv}"
    );
    assert!(csv.contains("DSA-9802-1,"), "{csv}");

    // The pages: the fleet, the advisory with its host, the host's findings; hostile text
    // from a feed stays text.
    let ui = crate::ui::person_with_password(&c, "uma", "auditor");
    let page = |path: &str| {
        let r = c
            .http_no_redirect()
            .get(format!("{}{path}", c.url))
            .header("cookie", &ui.cookie)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let (s, fleet_page) = page("/ui/vulns");
    assert_eq!(s, 200);
    assert!(
        fleet_page.contains("href=\"/ui/vulns/DSA-9802-1\""),
        "{fleet_page}"
    );
    let (s, adv_page) = page("/ui/vulns/DSA-9802-1");
    assert_eq!(s, 200);
    assert!(
        adv_page.contains(&format!("href=\"/ui/cis/{ci}/vulns\"")),
        "{adv_page}"
    );
    let (s, product_page) = page(&format!("/ui/vulns?product={a_binary}"));
    assert_eq!(s, 200);
    assert!(product_page.contains("DSA-9802-1"), "{product_page}");
    let (_, software) = page(&format!("/ui/software?prefix={a_binary}"));
    assert!(
        software.contains(&format!("href=\"/ui/vulns?product={a_binary}\"")),
        "{software}"
    );
    let (s, host_page) = page(&format!("/ui/cis/{ci}/vulns"));
    assert_eq!(s, 200);
    assert!(
        host_page.contains(&a_binary) && host_page.contains("DSA-9802-1"),
        "{host_page}"
    );
    let (s, hostile) = page("/ui/vulns/DSA-9803-1");
    assert_eq!(s, 200);
    assert!(
        hostile.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            && !hostile.contains("<script>alert"),
        "{hostile}"
    );
    let (s, _) = page("/ui/vulns/DSA-0000-0");
    assert_eq!(s, 404);

    let admin = person_token(&c, "ada", "admin");
    let (_, audit) = get("/api/v1/audit?limit=1000", &admin);
    assert!(audit.contains("\"vulns.import\""), "{audit}");

    // The tracker: the first import was a baseline (dates, no event); the next import that
    // reaches this host reaches a webhook as one `vulnerability.exposed` event.
    let rx = crate::drift::receiver();
    let created = http
        .post(format!("{}/api/v1/webhooks", c.url))
        .bearer_auth(&admin)
        .json(&json!({"url": format!("http://127.0.0.1:{}/ok", rx.port)}))
        .send()
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let detected = wait_for("the baseline's detected dates", || {
        let (_, body) = get(&format!("/api/v1/cis/{ci}/vulns"), &token);
        let host: Value = serde_json::from_str(&body).ok()?;
        host["findings"][0]["detected"].as_str().map(str::to_string)
    });
    assert!(detected.starts_with("20"), "{detected}");
    let (_, host_page) = page(&format!("/ui/cis/{ci}/vulns"));
    assert!(host_page.contains("Detected"), "{host_page}");
    let next = temp_dir("osv-next");
    std::fs::write(
        next.join("DSA-9804-1.json"),
        record("DSA-9804-1", &ecosystem, &source, &above).to_string(),
    )
    .unwrap();
    let imported = c.json(&["vulns", "import", next.to_str().unwrap()]);
    assert_eq!(imported["added"], 1, "{imported}");
    let (headers, body) = wait_for("a vulnerability.exposed delivery", || {
        let seen = rx.seen.lock().unwrap();
        seen.iter()
            .find(|(_, h, _)| crate::drift::header(h, "x-census-event") == "vulnerability.exposed")
            .map(|(_, h, b)| (h.clone(), b.clone()))
    });
    assert!(crate::drift::header(&headers, "x-census-signature").starts_with("sha256="));
    let event: Value = serde_json::from_slice(&body).unwrap();
    let change = &event["exposure"];
    assert_eq!(
        (change["cause"].as_str(), change["advisory"].as_str()),
        (Some("import"), Some("DSA-9804-1")),
        "{event}"
    );
    let reached: BTreeSet<String> = change["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["computer_id"], ci.as_str());
            assert_eq!(p["fixed"], above.as_str());
            p["package"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(reached, binaries, "every binary of {source} on this host");
    assert!(
        !rx.seen
            .lock()
            .unwrap()
            .iter()
            .any(|(_, _, b)| { String::from_utf8_lossy(b).contains("DSA-9802-1") }),
        "the baseline raised nothing"
    );
}

/// Polls `f` every 100 ms for up to 20 s.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
