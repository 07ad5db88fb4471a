//! The asset register over HTTPS against the real collector: edits by an asset manager
//! (refusals named), the CSV import's dry run and apply, hostile files (formula cells,
//! bad encodings, 100 MB), the export round trip, and the `census register` commands.

use serde_json::{json, Value};

use crate::support::*;

fn two_computers(c: &Collector) -> (String, String) {
    let mut ids = Vec::new();
    for (i, host) in ["reg01", "reg02"].iter().enumerate() {
        let mut a = FakeAgent::enroll(c, &c.token(1, "1h"));
        let mut s = machine(
            host,
            Some(&format!("SER-R{i}")),
            None,
            &format!("{:032x}", 900 + i),
            &[&format!("52:54:00:dd:00:0{i}")],
        );
        let r = a.send(c, &mut s);
        assert_eq!(r.status, 200, "{r:?}");
        ids.push(r.body["ci_id"].as_str().unwrap().to_string());
    }
    (ids[0].clone(), ids[1].clone())
}

/// A body of `n` bytes of one CSV cell repeated, never held in memory whole.
struct Repeated(u64);

impl std::io::Read for Repeated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.0 as usize);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = if i % 8 == 7 { b'\n' } else { b'a' };
        }
        self.0 -= n as u64;
        Ok(n)
    }
}

#[test]
fn an_asset_manager_edits_imports_and_exports_the_register() {
    let c = Collector::start("register");
    let http = c.http();
    let am = person_token(&c, "alice", "asset_manager");
    let (a, b) = two_computers(&c);

    // An edit: values normalised, who and when recorded, a new history version.
    let patch = |id: &str, body: Value| {
        let r = http
            .patch(format!("{}/api/v1/cis/{id}/register", c.url))
            .bearer_auth(&am)
            .json(&body)
            .send()
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<Value>().unwrap_or(Value::Null),
        )
    };
    let (status, view) = patch(
        &a,
        json!({"set": {"owner": "alice", "purchase_cost": "899.90", "location_site": "Lyon"}}),
    );
    assert_eq!(status, 200, "{view}");
    let field = |v: &Value, f: &str| {
        v["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["field"] == f)
            .unwrap()
            .clone()
    };
    assert_eq!(field(&view, "purchase_cost")["value"], json!(899.9));
    assert_eq!(field(&view, "owner")["set_by"]["by"], "alice");
    assert_eq!(field(&view, "owner")["set_by"]["source"], "person");
    let history: Value = http
        .get(format!("{}/api/v1/cis/{a}/history", c.url))
        .bearer_auth(&am)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{history}");
    let as_of = |at: &Value| -> Value {
        http.get(format!("{}/api/v1/cis/{a}", c.url))
            .query(&[("as_of", at.as_str().unwrap())])
            .bearer_auth(&am)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let before = as_of(&versions[0]["valid_from"]);
    assert!(
        before["ci"]["attributes"]["register.owner"].is_null(),
        "{before}"
    );
    let after = as_of(&versions[1]["valid_from"]);
    assert_eq!(
        after["ci"]["attributes"]["register.owner"], "alice",
        "{after}"
    );
    let (status, problem) = patch(&a, json!({"set": {"warranty_end": "30/06/2027"}}));
    assert_eq!(status, 422);
    assert_eq!(problem["field"], "set.warranty_end", "{problem}");
    let (status, problem) = patch(&a, json!({"set": {"colour": "red"}}));
    assert_eq!(status, 422);
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("unknown register field"));
    let (status, _) = patch(&a, json!({"set": {"owner": "x"}, "expected_version": 0}));
    assert_eq!(status, 409);
    let (status, problem) = patch(&b, json!({"set": {"asset_tag": "T-1"}}));
    assert_eq!(status, 200, "{problem}");
    let (status, problem) = patch(&a, json!({"set": {"asset_tag": "t-1"}}));
    assert_eq!(status, 409);
    assert!(
        problem["detail"].as_str().unwrap().contains(&b),
        "{problem}"
    );

    // Import: a dry run writes nothing and lists problems by line.
    let import = |query: &[(&str, &str)], ctype: &str, body: Vec<u8>| {
        let r = http
            .post(format!("{}/api/v1/register/import", c.url))
            .query(query)
            .bearer_auth(&am)
            .header("content-type", ctype)
            .body(body)
            .send()
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<Value>().unwrap_or(Value::Null),
        )
    };
    let file = format!(
        "ci_id;owner;notes;supplier\r\n{a};;\"=HYPERLINK(\"\"http://x\"\")\";ACME\r\n{b};'@carol;;\r\nnope;x;;\r\n"
    );
    let (status, report) = import(&[], "text/csv; charset=utf-8", file.clone().into_bytes());
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["applied"], false);
    assert_eq!(report["updates"], 2, "{report}");
    assert_eq!(report["problems"][0]["line"], 4, "{report}");
    assert_eq!(report["problems"][0]["kind"], "unmatched");
    let (_, view) = patch(&b, json!({"set": {"owner": "dave"}}));
    assert_eq!(field(&view, "owner")["value"], "dave");
    // An apply with a problem row writes nothing; skipping it writes the rest.
    let (status, report) = import(
        &[("dry_run", "false")],
        "text/csv",
        file.clone().into_bytes(),
    );
    assert_eq!((status, report["applied"].clone()), (200, json!(false)));
    let (status, report) = import(
        &[
            ("dry_run", "false"),
            ("skip_problem_rows", "true"),
            ("file_name", "q3.csv"),
        ],
        "text/csv",
        file.into_bytes(),
    );
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["applied"], true, "{report}");
    // b's owner was set by a person; the file ranks below and is refused for that row.
    assert_eq!(report["held"], 1, "{report}");
    let view: Value = http
        .get(format!("{}/api/v1/cis/{a}/register", c.url))
        .bearer_auth(&am)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(field(&view, "notes")["set_by"]["by"], "q3.csv");
    assert_eq!(field(&view, "owner")["set_by"]["by"], "alice");
    assert_eq!(field(&view, "notes")["value"], "=HYPERLINK(\"http://x\")");

    // Hostile files: wrong media type, not UTF-8, 100 MB.
    let (status, _) = import(&[], "application/json", b"{}".to_vec());
    assert_eq!(status, 415);
    let (status, problem) = import(&[], "text/csv", b"ci_id,owner\nx,\xff\xfe\n".to_vec());
    assert_eq!(status, 422);
    assert!(
        problem["detail"].as_str().unwrap().starts_with("line 2: "),
        "{problem}"
    );
    for sized in [true, false] {
        let body = if sized {
            reqwest::blocking::Body::sized(Repeated(100 * 1024 * 1024), 100 * 1024 * 1024)
        } else {
            reqwest::blocking::Body::new(Repeated(100 * 1024 * 1024))
        };
        let r = http
            .post(format!("{}/api/v1/register/import", c.url))
            .bearer_auth(&am)
            .header("content-type", "text/csv")
            .body(body)
            .send();
        if let Ok(r) = r {
            assert_eq!(r.status().as_u16(), 413);
            assert!(r.text().unwrap().contains("larger than 32 MiB"));
        }
    }
    let peak = c.peak_rss_kib();
    assert!(peak > 0 && peak < 160 * 1024, "peak RSS {peak} KiB");

    // Export: the import's layout, formula cells guarded, and it imports back unchanged.
    let r = http
        .get(format!("{}/api/v1/register/export", c.url))
        .bearer_auth(&am)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let csv = r.text().unwrap();
    assert!(
        csv.starts_with("ci_id,hostname,serial,asset_tag,owner,"),
        "{csv}"
    );
    assert!(csv.contains("\"'=HYPERLINK(\"\"http://x\"\")\""), "{csv}");
    assert!(
        csv.contains(",'@carol,") || !csv.contains("@carol"),
        "{csv}"
    );
    let (status, report) = import(&[("dry_run", "false")], "text/csv", csv.into_bytes());
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["updates"].clone(), report["problems_total"].clone()),
        (json!(0), json!(0)),
        "{report}"
    );
    let auditor = person_token(&c, "otto", "auditor");
    let audit: Value = http
        .get(format!("{}/api/v1/audit", c.url))
        .query(&[("limit", "1000")])
        .bearer_auth(&auditor)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let imports: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "register.import")
        .collect();
    assert_eq!(imports.len(), 1, "{audit}");
    assert_eq!(imports[0]["actor"], "alice");
    assert_eq!(imports[0]["after"]["file"], "q3.csv");
}

#[test]
fn the_census_command_shows_sets_imports_and_exports_the_register() {
    let c = Collector::start("register-cli");
    let am = person_token(&c, "alice", "asset_manager");
    let (a, _) = two_computers(&c);
    let config = c.dir.join("client.json");
    census_login(&c, &config, &am);
    let census = |args: &[&str], stdin: Option<&str>| run_census(&config, args, stdin);
    let (ok, out, err) = census(
        &[
            "register",
            "set",
            &a,
            "owner=alice",
            "warranty_end=2027-06-30",
            "-c",
            "new laptop",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("warranty_end") && out.contains("2027-06-30"),
        "{out}"
    );
    let (ok, _, err) = census(&["register", "set", &a, "warranty_end=soon"], None);
    assert!(!ok && err.contains("warranty_end"), "{err}");
    let (ok, out, _) = census(&["-o", "json", "register", "show", &a], None);
    assert!(ok);
    let view: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(view["ci_id"], a.as_str());

    // Hardware recorded before discovery becomes the machine that reports its serial.
    let (ok, out, err) = census(
        &[
            "register",
            "create",
            "--name",
            "spare laptop",
            "--serial",
            "SER-NEW-1",
            "lifecycle_status=in_stock",
            "asset_tag=AT-NEW",
        ],
        None,
    );
    assert!(ok, "{err}");
    let recorded = out.trim().to_string();
    assert!(recorded.starts_with("cmp_"), "{out}");
    let (ok, _, err) = census(
        &[
            "register",
            "create",
            "--name",
            "again",
            "--serial",
            "ser-new-1",
        ],
        None,
    );
    assert!(!ok && err.contains("409"), "{err}");
    let mut newcomer = FakeAgent::enroll(&c, &c.token(1, "1h"));
    let mut s = machine(
        "new01",
        Some("SER-NEW-1"),
        None,
        &format!("{:032x}", 4242),
        &["52:54:00:dd:00:42"],
    );
    let r = newcomer.send(&c, &mut s);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["ci_id"], recorded.as_str());
    assert!(
        r.body["change_record"].is_null(),
        "a first inventory raises nothing: {r:?}"
    );
    let (ok, out, _) = census(&["-o", "json", "register", "show", &recorded], None);
    assert!(ok);
    let view: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(view["ci_name"], "new01.example.com", "{view}");
    assert!(out.contains("AT-NEW"), "{out}");

    let file = c.dir.join("assets.csv");
    std::fs::write(
        &file,
        "hostname,asset_tag,supplier\nreg01,AT-1,ACME\nghost,,x\n",
    )
    .unwrap();
    let (ok, out, err) = census(&["register", "import", file.to_str().unwrap()], None);
    assert!(!ok, "a dry run with problems fails");
    assert!(
        out.contains("ghost") && err.contains("dry run"),
        "{out}\n{err}"
    );
    let (ok, _, err) = census(
        &[
            "register",
            "import",
            file.to_str().unwrap(),
            "--apply",
            "--skip-problem-rows",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(err.contains("applied"), "{err}");
    let (ok, id, err) = census(
        &[
            "licences",
            "add",
            "--name",
            "Support",
            "--product",
            "openssl",
            "--versions",
            "< 3.0.12",
            "--seats",
            "1",
            "--expires",
            "2020-01-31",
        ],
        None,
    );
    assert!(ok, "{err}");
    let (ok, out, err) = census(&["licences", "list"], None);
    assert!(ok, "{err}");
    assert!(out.contains("Support") && out.contains(id.trim()), "{out}");
    let (ok, out, err) = census(&["-o", "json", "licences", "show", id.trim()], None);
    assert!(ok, "{err}");
    let detail: Value = serde_json::from_str(&out).unwrap();
    // The three machines have openssl 3.0.11: three installs on one seat.
    assert_eq!(detail["use"]["installed_on"], 3, "{detail}");
    assert_eq!(detail["use"]["over"], 2, "{detail}");
    assert_eq!(detail["computers"].as_array().unwrap().len(), 3);
    let (ok, out, err) = census(&["register", "expiring", "--days", "30"], None);
    assert!(ok, "{err}");
    assert!(
        out.contains("Support"),
        "the expired licence is listed: {out}"
    );
    let (ok, _, err) = census(&["licences", "delete", id.trim()], None);
    assert!(ok, "{err}");
    let (ok, _, err) = census(&["licences", "delete", id.trim()], None);
    assert!(!ok && err.contains("404"), "{err}");
    let (ok, out, err) = census(
        &["register", "export", "--filter", "os.hostname = reg01"],
        None,
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[1].contains("AT-1") && lines[1].contains("ACME"),
        "{out}"
    );
}

/// Over the real binaries: an asset manager records a serial discovery disagrees with,
/// the item is listed, an auditor may not decide it, the census command keeps or takes
/// the discovered value.
#[test]
fn discovery_disagreeing_with_the_register_waits_for_a_person() {
    let c = Collector::start("register-reconcile");
    let http = c.http();
    let am = person_token(&c, "alice", "asset_manager");
    let auditor = person_token(&c, "audrey", "auditor");
    let (a, _) = two_computers(&c);
    let r = http
        .patch(format!("{}/api/v1/cis/{a}/register", c.url))
        .bearer_auth(&am)
        .json(&json!({"set": {"serial_number": "SER-TYPO"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let view: Value = r.json().unwrap();
    let item = &view["reconciliation"]["serial_number"];
    assert_eq!(item["discovered"], "SER-R0", "{view}");
    assert_eq!(item["held"], "SER-TYPO", "{view}");
    let list: Value = http
        .get(format!("{}/api/v1/register/reconciliation", c.url))
        .bearer_auth(&auditor)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["items"][0]["ci_id"], a.as_str());
    let decide = |token: &str, field: &str, body: Value| {
        let r = http
            .post(format!(
                "{}/api/v1/cis/{a}/register/reconciliation/{field}",
                c.url
            ))
            .bearer_auth(token)
            .json(&body)
            .send()
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<Value>().unwrap_or(Value::Null),
        )
    };
    let (status, _) = decide(&auditor, "serial_number", json!({"resolution": "accept"}));
    assert_eq!(status, 403);
    let (status, body) = decide(&am, "serial_number", json!({"resolution": "maybe"}));
    assert!(status == 400 || status == 422, "{status} {body}");
    assert!(body.to_string().contains("resolution"), "{body}");
    let (status, body) = decide(&am, "owner", json!({"resolution": "accept"}));
    assert_eq!(status, 404, "{body}");

    let config = c.dir.join("client.json");
    census_login(&c, &config, &am);
    let census = |args: &[&str]| run_census(&config, args, None);
    // Settings round-trip through a file: a custom field added, then offered.
    let admin = person_token(&c, "root", "admin");
    let admin_config = c.dir.join("admin.json");
    census_login(&c, &admin_config, &admin);
    let (ok, out, err) = run_census(&admin_config, &["register", "settings"], None);
    assert!(ok, "{err}");
    let mut settings: Value = serde_json::from_str(&out).unwrap();
    settings["custom_fields"] = json!([{"class": "computer", "name": "u_rack",
        "kind": {"type": "text", "max_chars": 16}}]);
    let file = c.dir.join("settings.json");
    std::fs::write(&file, settings.to_string()).unwrap();
    let (ok, _, err) = census(&["register", "settings", "--file", file.to_str().unwrap()]);
    assert!(
        !ok && err.contains("403"),
        "an asset manager may not: {err}"
    );
    let (ok, out, err) = run_census(
        &admin_config,
        &["register", "settings", "--file", file.to_str().unwrap()],
        None,
    );
    assert!(ok && out.contains("u_rack"), "{out}{err}");
    let (ok, out, err) = census(&["register", "fields"]);
    assert!(
        ok && out.contains("u_rack") && out.contains("serial_number"),
        "{out}{err}"
    );

    let (ok, out, err) = census(&["register", "reconciliation"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("SER-TYPO") && out.contains("SER-R0") && out.contains("open"),
        "{out}"
    );
    let (ok, _, err) = census(&["register", "keep", &a, "serial_number", "-c", "label"]);
    assert!(ok, "{err}");
    let (ok, out, _) = census(&["register", "reconciliation"]);
    assert!(
        ok && !out.contains("SER-TYPO"),
        "kept items are not open: {out}"
    );
    let (ok, out, _) = census(&["register", "reconciliation", "--all"]);
    assert!(ok && out.contains("kept"), "{out}");
    let (ok, _, err) = census(&["register", "keep", &a, "serial_number"]);
    assert!(!ok && err.contains("409"), "{err}");
    let (ok, _, err) = census(&["register", "accept", &a, "serial_number"]);
    assert!(ok, "{err}");
    let (ok, out, _) = census(&["-o", "json", "register", "show", &a]);
    assert!(ok);
    let view: Value = serde_json::from_str(&out).unwrap();
    let serial = view["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "serial_number")
        .unwrap();
    assert_eq!(serial["value"], "SER-R0", "{view}");
    assert_eq!(serial["set_by"]["source"], "agent", "{view}");
    assert!(view["reconciliation"].as_object().unwrap().is_empty());
}
