//! The web UI in a real headless Chromium, driven over W3C WebDriver (chromedriver): sign
//! in, find this machine (enrolled by the real agent), open its detail, accept a change
//! record, read the audit entry, prove a hostile host name renders as text, check phone
//! width and keyboard access, and save screenshots of the main pages.
//!
//! WebDriver is JSON over HTTP; the dozen commands used here are a page of code on the
//! reqwest client the tests already have, instead of a WebDriver crate's dependency tree.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::support::*;
use crate::ui::{hostile_machine, person_with_password};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    process: Child,
    url: String,
    http: reqwest::blocking::Client,
}

impl Driver {
    fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let process = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt-get install chromium chromium-driver; .ci/run does)");
        let d = Driver {
            process,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while d.http.get(format!("{}/status", d.url)).send().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    fn session(&self) -> Browser<'_> {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // The collector's private CA is not in Chromium's store; the test pins nothing
            // about TLS here (the API tests do).
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--window-size=1280,900", "--lang=en-US"]}
        }}});
        let r: Value = self
            .http
            .post(format!("{}/session", self.url))
            .json(&caps)
            .send()
            .expect("new session")
            .json()
            .expect("session JSON");
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_string();
        Browser {
            driver: self,
            base: format!("{}/session/{id}", self.url),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

struct Browser<'d> {
    driver: &'d Driver,
    base: String,
}

impl Browser<'_> {
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .driver
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req
            .send()
            .expect("webdriver")
            .json()
            .expect("webdriver JSON");
        v["value"].clone()
    }
    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let v = self.cmd(method, path, body);
        assert!(v.get("error").is_none(), "webdriver {method} {path}: {v}");
        v
    }
    fn go(&self, url: &str) {
        self.ok("POST", "/url", Some(json!({"url": url})));
    }
    fn current_url(&self) -> String {
        self.ok("GET", "/url", None).as_str().unwrap().to_string()
    }
    fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self.cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            );
            if let Some(id) = v[ELEMENT].as_str() {
                return id.to_string();
            }
            if Instant::now() >= deadline {
                let page = self.script("return location.href + '\\n' + document.body.innerText");
                panic!("no element {css}: {v}\non the page: {page}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.ok("POST", &format!("/element/{e}/clear"), Some(json!({})));
        self.ok(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        );
    }
    fn click(&self, css: &str) {
        self.on_element(css, "POST", "click", Some(json!({})));
    }
    /// Chooses a file in the file input `css`, as a person picking it would.
    fn upload(&self, css: &str, file: &Path) {
        let e = self.find(css);
        self.ok(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({"text": file.to_str().unwrap()})),
        );
    }
    fn text(&self, css: &str) -> String {
        self.on_element(css, "GET", "text", None)
            .as_str()
            .unwrap()
            .to_string()
    }
    /// A command on the element `css` finds, found again if the page replaced it in
    /// between (htmx swaps parts of the page: a CI run once read a stale element).
    fn on_element(&self, css: &str, method: &str, command: &str, body: Option<Value>) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let e = self.find(css);
            let v = self.cmd(method, &format!("/element/{e}/{command}"), body.clone());
            let stale = v["error"].as_str() == Some("stale element reference");
            if !stale || Instant::now() >= deadline {
                assert!(
                    v.get("error").is_none(),
                    "webdriver {method} {command} on {css}: {v}"
                );
                return v;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    fn script(&self, js: &str) -> Value {
        self.ok(
            "POST",
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
    }
    fn wait_for(&self, what: &str, mut f: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !f(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(150));
        }
    }
    fn screenshot(&self, dir: &Path, name: &str) {
        let b64 = self.ok("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
    fn resize(&self, width: u32, height: u32) {
        self.ok(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }
    fn no_alert(&self) -> bool {
        self.cmd("GET", "/alert/text", None)["error"] == "no such alert"
    }
    fn sign_in(&self, c: &Collector, name: &str) {
        self.go(&format!("{}/ui", c.url));
        self.wait_for("login page", |b| b.current_url().contains("/ui/login"));
        self.type_into("#name", name);
        self.type_into("#password", "correct horse battery staple");
        self.click("#sign-in");
        // Not just a URL ending in "/ui": the login page itself can be
        // `/ui/login?next=/ui` (regression: the second sign-in went on before the
        // login had happened, now and then).
        self.wait_for("dashboard", |b| {
            let url = b.current_url();
            url.ends_with("/ui") && !url.contains("/ui/login")
        });
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ = self.driver.http.delete(&self.base).send();
    }
}

fn screenshot_dir() -> PathBuf {
    let dir = bin("census-collector")
        .parent()
        .unwrap()
        .join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn browser_finds_this_machine_accepts_a_change_and_sees_the_audit_entry() {
    let c = Collector::start("ui-browser");
    person_with_password(&c, "carol", "change_manager");
    person_with_password(&c, "dora", "auditor");
    // This machine, enrolled and inventoried by the real agent.
    let state = temp_dir("ui-browser-agent");
    let agent = |args: &[&str]| {
        let out = Command::new(bin("census-agent"))
            .arg("--state-dir")
            .arg(&state)
            .args(args)
            .output()
            .expect("census-agent");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    agent(&[
        "enroll",
        "--server",
        &c.url,
        "--token",
        &c.token(1, "1h"),
        "--ca-fingerprint",
        &c.fingerprint(),
    ]);
    agent(&["once"]);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    // A hostile machine that then drifts, so there is a change record to review.
    let (mut hostile, mut snap) = hostile_machine(&c);
    snap.software.data_mut().unwrap()[0].version = "3.0.13-1~deb12u1".into();
    let r = hostile.send(&c, &mut snap);
    let record = r.body["change_record"]
        .as_str()
        .expect("a change record")
        .to_string();

    let shots = screenshot_dir();
    let driver = Driver::start();
    let b = driver.session();
    b.sign_in(&c, "carol");
    b.screenshot(&shots, "dashboard");

    // Keyboard: the first Tab stop is the skip link.
    b.ok(
        "POST",
        "/actions",
        Some(json!({"actions": [{"type": "key", "id": "kb", "actions": [
        {"type": "keyDown", "value": "\u{E004}"}, {"type": "keyUp", "value": "\u{E004}"}]}]})),
    );
    assert_eq!(b.script("return document.activeElement.className"), "skip");

    // Find this machine with the filter box (htmx swaps the results in place).
    b.go(&format!("{}/ui/computers", c.url));
    b.type_into("#filter", &format!("name = \"{hostname}\""));
    b.wait_for("the filtered list", |b| {
        b.script("return document.querySelector('#results .count') ? document.querySelector('#results .count').textContent : ''")
            .as_str()
            .unwrap_or("")
            .starts_with("1 matching")
    });
    assert!(
        b.current_url().contains("filter="),
        "htmx pushed the filter into the address"
    );
    b.screenshot(&shots, "computers");
    b.click("#results table a");
    b.wait_for("the detail page", |b| b.current_url().contains("/ui/cis/"));
    assert_eq!(b.text("#ci-name"), hostname);
    assert!(b.text("#h-history").contains("History"));
    b.screenshot(&shots, "computer-detail");

    // The hostile host name is text, and no script ran.
    b.go(&format!(
        "{}/ui/computers?filter={}",
        c.url, "name%20%5E%3D%20%22%3C%22"
    ));
    b.click("#results table a");
    b.wait_for("the hostile detail page", |b| {
        b.current_url().contains("/ui/cis/")
    });
    assert_eq!(b.text("#ci-name"), "<script>alert(1)</script>.example.com");
    assert!(b.no_alert(), "no script from agent data ran");
    assert_eq!(
        b.script("return document.querySelectorAll('main script').length"),
        0
    );

    // Compare the two versions side by side.
    b.click("form[action$='/compare'] button");
    b.wait_for("the comparison", |b| b.current_url().contains("/compare?"));
    assert!(b.text("#h-drift").contains("Configuration changes"));
    b.screenshot(&shots, "compare");

    // Accept the change record with a comment.
    b.go(&format!("{}/ui/changes", c.url));
    b.screenshot(&shots, "changes");
    b.go(&format!("{}/ui/changes/{record}", c.url));
    b.type_into("#comment", "planned openssl update, ticket CHG-42");
    b.screenshot(&shots, "change-record");
    b.click("#accept");
    b.wait_for("the accepted record", |b| {
        b.text("#record-state") == "accepted"
    });

    // The auditor sees the review in the audit log.
    b.click("header form.who button");
    b.wait_for("signed out", |b| b.current_url().contains("/ui/login"));
    b.sign_in(&c, "dora");
    b.go(&format!("{}/ui/audit", c.url));
    let audit = b.text("#audit");
    assert!(
        audit.contains("change_record.review")
            && audit.contains("carol")
            && audit.contains(&record),
        "{audit}"
    );
    b.screenshot(&shots, "audit");

    // Phone width: nothing wider than the screen outside the scrolling tables.
    b.resize(390, 844);
    b.go(&format!("{}/ui", c.url));
    let overflow = b.script("return document.documentElement.scrollWidth - window.innerWidth");
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "page overflows a phone by {overflow}px"
    );
    b.screenshot(&shots, "dashboard-phone");
    eprintln!("screenshots in {}", shots.display());
}

#[test]
fn browser_edits_the_register_and_hostile_values_stay_text() {
    let c = Collector::start("ui-register");
    person_with_password(&c, "alice", "asset_manager");
    person_with_password(&c, "dora", "auditor");
    let (_agent, _snap) = hostile_machine(&c);
    let driver = Driver::start();
    let b = driver.session();
    b.sign_in(&c, "alice");
    b.go(&format!("{}/ui/computers", c.url));
    b.click("#results table a");
    b.wait_for("the detail page", |b| b.current_url().contains("/ui/cis/"));
    let page = b.current_url();
    b.type_into("#reg-owner", "<img src=x onerror=alert(1)>");
    b.type_into("#reg-asset_tag", "AT-0042");
    b.script("document.querySelector('#reg-warranty_end').value = '2027-06-30'; return 0");
    b.script("document.querySelector('#reg-lifecycle_status').value = 'deployed'; return 0");
    b.type_into("#reg-comment", "received from ACME");
    b.screenshot(&screenshot_dir(), "register-edit");
    b.click("#register-save");
    b.wait_for("the saved register", |b| {
        b.script("return document.querySelector('#reg-asset_tag').value") == "AT-0042"
    });
    assert_eq!(b.current_url(), page);
    assert!(b.no_alert(), "no script from a register value ran");
    assert_eq!(
        b.script("return document.querySelector('#reg-owner').value"),
        "<img src=x onerror=alert(1)>"
    );
    assert_eq!(
        b.script("return document.querySelector('#reg-lifecycle_status').value"),
        "deployed"
    );
    let register = b.text("section[aria-labelledby='h-register']");
    assert!(register.contains("person alice"), "{register}");
    assert_eq!(
        b.script("return document.querySelectorAll('main img').length"),
        0
    );
    // A refused value comes back as a page naming the field; nothing is written.
    b.script("document.querySelector('#reg-purchase_cost').value = '1.234'; return 0");
    b.click("#register-save");
    b.wait_for("the refusal", |b| b.text("main").contains("purchase_cost"));
    // A serial discovery disagrees with waits as a reconciliation item, with a hostile
    // value shown as text; keeping it is a decision the page shows.
    b.go(&page);
    b.type_into("#reg-serial_number", "SER-<b>TYPO</b>");
    b.click("#register-save");
    b.wait_for("the reconciliation item", |b| {
        b.script("return document.querySelectorAll('#keep-serial_number').length") == 1
    });
    let items =
        b.text("section[aria-labelledby='h-register'] table[aria-labelledby='h-reconciliation']");
    assert!(
        items.contains("SER-<b>TYPO</b>") && items.contains("SER-UI-1"),
        "{items}"
    );
    b.screenshot(&screenshot_dir(), "register-reconciliation");
    b.click("#keep-serial_number");
    b.wait_for("the kept item", |b| {
        b.text("section[aria-labelledby='h-register']")
            .contains("kept by alice")
    });
    b.go(&format!("{}/ui/register/reconciliation", c.url));
    assert!(b.text("#reconciliation").contains("Nothing waits"));
    b.go(&format!("{}/ui/register/reconciliation?all=1", c.url));
    assert!(b.text("#reconciliation").contains("SER-<b>TYPO</b>"));
    assert_eq!(
        b.script("return document.querySelectorAll('main b').length"),
        0
    );
    // Hardware not discovered yet, recorded from the inventory page.
    b.go(&format!("{}/ui/computers", c.url));
    b.click("details.card summary");
    b.type_into("#rec-name", "spare <laptop>");
    b.type_into("#rec-serial", "SER-SPARE-7");
    b.type_into("#rec-tag", "AT-0099");
    b.click("#rec-save");
    b.wait_for("the new record", |b| b.text("#ci-name") == "spare <laptop>");
    assert_eq!(
        b.script("return document.querySelector('#reg-lifecycle_status').value"),
        "on_order"
    );
    // An auditor reads the register but gets no form.
    b.click("header form.who button");
    b.wait_for("signed out", |b| b.current_url().contains("/ui/login"));
    b.sign_in(&c, "dora");
    b.go(&page);
    let register = b.text("section[aria-labelledby='h-register']");
    assert!(register.contains("AT-0042"), "{register}");
    assert_eq!(
        b.script("return document.querySelectorAll('#register-form').length"),
        0
    );
}

#[test]
fn browser_records_a_licence_and_sees_its_consumption_and_the_dashboard_panel() {
    let c = Collector::start("ui-licences");
    person_with_password(&c, "alice", "asset_manager");
    let (_agent, _snap) = hostile_machine(&c);
    let driver = Driver::start();
    let b = driver.session();
    b.sign_in(&c, "alice");
    assert!(b
        .text("#expiring")
        .contains("Licences expiring within 30 days"));
    b.go(&format!("{}/ui/licences", c.url));
    b.type_into("#lic-name", "OpenSSL <b>support</b>");
    b.type_into("#lic-product", "openssl");
    b.type_into("#lic-versions", "< 3.0.12");
    b.type_into("#lic-seats", "0");
    let soon = (chrono::Utc::now().date_naive() + chrono::Duration::days(10))
        .format("%Y-%m-%d")
        .to_string();
    b.script(&format!(
        "document.querySelector('#lic-expires').value = '{soon}'; return 0"
    ));
    b.click("#lic-save");
    b.wait_for("the recorded licence", |b| {
        b.text("#licences").contains("OpenSSL <b>support</b>")
    });
    let row = b.text("#licences tbody tr");
    // The hostile machine has openssl 3.0.11: one install, no seat, so one over.
    assert!(row.contains("(in 10 days)"), "{row}");
    assert_eq!(
        b.script("return document.querySelector('#licences tbody tr strong').textContent"),
        "1"
    );
    assert_eq!(
        b.script("return document.querySelectorAll('main b').length"),
        0
    );
    b.screenshot(&screenshot_dir(), "licences");
    b.click("#licences tbody tr a");
    b.wait_for("the licence page", |b| {
        b.current_url().contains("/ui/licences/lic_")
    });
    assert_eq!(b.text("#licence-name"), "OpenSSL <b>support</b>");
    assert!(b
        .text("#licence-computers")
        .contains("<script>alert(1)</script>"));
    assert!(b.no_alert());
    b.go(&format!("{}/ui", c.url));
    let panel = b.text("#expiring");
    assert!(
        panel.contains("Licences expiring within 30 days\n1")
            || panel.contains("Licences expiring within 30 days 1"),
        "{panel}"
    );
}

#[test]
fn browser_defines_a_custom_field_then_imports_a_register_file() {
    let c = Collector::start("ui-register-import");
    person_with_password(&c, "root", "admin");
    hostile_machine(&c);
    let driver = Driver::start();
    let b = driver.session();
    b.sign_in(&c, "root");
    b.go(&format!("{}/ui/computers", c.url));
    b.click("#register-links a[href='/ui/register/settings']");
    b.wait_for("the settings page", |b| {
        b.current_url().ends_with("/ui/register/settings")
    });
    b.type_into("#cf-name", "u_rack");
    b.type_into("#cf-max-chars", "16");
    b.type_into("#cf-description", "Rack and unit");
    b.click("#cf-save");
    b.wait_for("the new field", |b| {
        b.text("#custom-fields").contains("u_rack")
    });
    b.screenshot(&screenshot_dir(), "register-settings");

    let file = c.dir.join("racks.csv");
    std::fs::write(
        &file,
        "serial,u_rack,owner\nSER-UI-1,R12-U07,<img src=x onerror=alert(3)>\nNOPE,,x\n",
    )
    .unwrap();
    b.go(&format!("{}/ui/register/import", c.url));
    b.upload("#imp-file", &file);
    b.click("#imp-submit");
    b.wait_for("the check's report", |b| {
        b.text("main").contains("checked, nothing written")
    });
    let report = b.text("#import-counts");
    assert!(
        report.contains("New records\n1") || report.contains("New records 1"),
        "{report}"
    );
    b.screenshot(&screenshot_dir(), "register-import-check");
    b.upload("#imp-file", &file);
    b.click("#imp-apply");
    b.click("#imp-submit");
    b.wait_for("the apply's report", |b| {
        b.text("#h-import-report").contains("applied")
    });
    assert!(b.no_alert());
    let found = c.json(&["ci", "list", "--class", "computer"]);
    let id = found
        .as_array()
        .unwrap()
        .iter()
        .find(|ci| ci["name"] != "NOPE")
        .and_then(|ci| ci["id"].as_str())
        .expect("the discovered machine");
    b.go(&format!("{}/ui/cis/{id}", c.url));
    assert_eq!(
        b.script("return document.querySelector('#reg-u_rack').value"),
        "R12-U07"
    );
    assert_eq!(
        b.script("return document.querySelector('#reg-owner').value"),
        "<img src=x onerror=alert(3)>"
    );
    assert!(b.no_alert());
}

#[test]
fn browser_makes_a_service_and_reads_the_cmdb_health() {
    let c = Collector::start("ui-services-health");
    person_with_password(&c, "carl", "change_manager");
    hostile_machine(&c);
    let id = c.json(&["ci", "list", "--class", "computer"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A machine that reports no serial: a completeness defect.
    let mut bare = FakeAgent::enroll(&c, &c.token(1, "1h"));
    let mut s = machine(
        "bare01",
        None,
        None,
        &"b".repeat(32),
        &["52:54:00:00:b0:01"],
    );
    assert_eq!(bare.send(&c, &mut s).status, 200);
    let _ = c.json(&["ci", "list", "--class", "computer"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let driver = Driver::start();
    let b = driver.session();
    b.sign_in(&c, "carl");
    b.go(&format!("{}/ui/services", c.url));
    b.type_into("#svc-name", "Web <shop>");
    b.script("document.querySelector('#svc-crit').value = '1'; return 0");
    b.type_into("#svc-runs", &format!("computer {id}"));
    b.click("#svc-save");
    b.wait_for("the service page", |b| {
        b.current_url().contains("/ui/services/bsv_")
    });
    assert_eq!(b.text("#service-name"), "Web <shop>");
    assert!(
        b.text("#service-computers").contains("<script>"),
        "the host, as text"
    );
    assert!(b.no_alert());
    b.screenshot(&screenshot_dir(), "service");
    b.go(&format!("{}/ui/cis/{id}", c.url));
    assert!(b.text("#ci-services").contains("Web <shop>"));
    b.go(&format!("{}/ui/health", c.url));
    let classes = b.text("#health-classes");
    assert!(classes.contains("computer"), "{classes}");
    b.click("#health-kinds a");
    b.wait_for("a kind's defects", |b| b.current_url().contains("kind="));
    assert!(
        b.text("#health-defects").contains("bare01"),
        "the defect's computer"
    );
    assert!(b.no_alert());
    b.screenshot(&screenshot_dir(), "health");
}

#[test]
fn browser_reads_a_200_node_dependency_map_and_a_baseline_report() {
    use census_shared::Section;
    let c = Collector::start("ui-map-baselines");
    person_with_password(&c, "carl", "change_manager");
    // One host with 199 peers in 199 external /24s (200 nodes), one of its processes
    // named to be an attack on the page.
    let mut a = FakeAgent::enroll(&c, &c.token(1, "1h"));
    let mut s = machine(
        "hub01",
        Some("SER-HUB-1"),
        None,
        &format!("{:032x}", 901),
        &["52:54:00:0b:00:01"],
    );
    s.listening_ports = sshd_listening();
    s.connections = Section::collected(
        (0..199u32)
            .map(|i| {
                outbound(
                    443,
                    &format!("198.{}.{}.7", 18 + i / 200, i % 200),
                    if i == 0 {
                        "<img src=x onerror=alert(1)>"
                    } else {
                        "/usr/bin/agent-of-things"
                    },
                )
            })
            .collect(),
    );
    let r = a.send(&c, &mut s);
    assert_eq!(r.status, 200, "{}", r.detail());
    let id = r.body["ci_id"].as_str().unwrap().to_string();
    let cm = person_token(&c, "cm2", "change_manager");
    let baseline: Value = c
        .http()
        .post(format!("{}/api/v1/baselines", c.url))
        .bearer_auth(&cm)
        .json(&json!({"name": "<b>hubs</b>", "applies_to": "name ^= hub",
            "rules": [{"rule": "package_absent", "package": "telnetd"},
                      {"rule": "listening_only_on", "ports": [443]}]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let baseline_id = baseline["id"].as_str().expect("made").to_string();

    let driver = Driver::start();
    let b = driver.session();
    b.resize(1400, 1000);
    b.sign_in(&c, "carl");
    b.go(&format!("{}/ui/cis/{id}", c.url));
    b.click("#ci-map");
    b.wait_for("the map", |b| b.current_url().contains("/ui/map?ci="));
    let circles = b.script("return document.querySelectorAll('#dependency-map circle').length");
    assert_eq!(circles, json!(200), "every node drawn");
    let inside = b.script(
        "const s = document.querySelector('#dependency-map').getBoundingClientRect(); \
         return [...document.querySelectorAll('#dependency-map circle')].every(c => { \
           const r = c.getBoundingClientRect(); \
           return r.left >= s.left && r.right <= s.right && r.top >= s.top && r.bottom <= s.bottom; })",
    );
    assert_eq!(inside, json!(true), "every node inside the drawing");
    assert!(
        b.text("#map-edges")
            .contains("<img src=x onerror=alert(1)>"),
        "process names are text"
    );
    assert!(b.no_alert());
    b.screenshot(&screenshot_dir(), "map-200");

    // An endpoint node leads to its row among the fleet's external endpoints.
    let href = b.script(
        "return document.querySelector('#dependency-map g.endpoint a').getAttribute('href')",
    );
    let href = href.as_str().expect("endpoint nodes are links").to_string();
    assert!(href.starts_with("/ui/map/endpoints#ep-198-"), "{href}");
    b.go(&format!("{}{href}", c.url));
    let rows = b.script("return document.querySelectorAll('#endpoints tbody tr').length");
    assert_eq!(rows, json!(199), "one row per /24");
    let anchor = href.split('#').nth(1).unwrap_or_default().to_string();
    let row = b.text(&format!("#{anchor}"));
    assert!(row.contains("hub01") && row.contains("tcp/443"), "{row}");
    assert!(b.no_alert());

    b.go(&format!("{}/ui/baselines", c.url));
    assert!(b.text("#baselines").contains("<b>hubs</b>"));
    b.go(&format!("{}/ui/baselines/{baseline_id}", c.url));
    let counts = b.text("#compliance-counts");
    assert!(
        counts.starts_with("1 hosts: 0 pass, 1 fail, 0 unknown"),
        "{counts}"
    );
    let hosts = b.text("#baseline-hosts");
    assert!(
        hosts.contains("hub01") && hosts.contains("also listens on 22"),
        "{hosts}"
    );
    assert!(b.no_alert());
    b.screenshot(&screenshot_dir(), "baseline");
}
