//! CMDB health over the real binaries: the scores and defects through the API, the
//! census command and the web page, the settings only administrators change, and the
//! trend point the collector records itself.

use serde_json::{json, Value};

use crate::support::*;
use crate::ui::{hostile_machine, person_with_password};

#[test]
fn health_scores_defects_settings_and_trend_over_the_real_collector() {
    let c = Collector::start("health");
    let http = c.http();
    let auditor = person_token(&c, "audrey", "auditor");
    let admin = person_token(&c, "root", "admin");
    // Two machines that report one serial: an identity conflict and a duplicate.
    for (i, host) in ["dup01", "dup02"].iter().enumerate() {
        let mut a = FakeAgent::enroll(&c, &c.token(1, "1h"));
        let mut s = machine(
            host,
            Some("SER-SAME"),
            None,
            &format!("{:032x}", 700 + i),
            &[&format!("52:54:00:ee:00:0{i}")],
        );
        assert_eq!(a.send(&c, &mut s).status, 200);
    }
    hostile_machine(&c);
    let get = |path: &str, query: &[(&str, &str)]| -> (u16, Value) {
        let r = http
            .get(format!("{}{path}", c.url))
            .query(query)
            .bearer_auth(&auditor)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    };
    let (status, report) = get("/api/v1/health", &[]);
    assert_eq!(status, 200, "{report}");
    let computers = report["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == "computer")
        .unwrap()
        .clone();
    assert_eq!(computers["total"], 3, "{computers}");
    assert_eq!(computers["defects"]["open_conflict"], 1, "{computers}");
    assert_eq!(computers["defects"]["duplicate_serial"], 1, "{computers}");
    let (status, only) = get("/api/v1/health", &[("kind", "open_conflict")]);
    assert_eq!(status, 200);
    assert_eq!(only["defects_total"], 1, "{only}");
    let (status, bad) = get("/api/v1/health", &[("kind", "dusty")]);
    assert_eq!(status, 400, "{bad}");
    assert!(bad.to_string().contains("kind"), "{bad}");

    // Settings: administrators only, attribute paths checked with a hint.
    let put = |tok: &str, body: Value| {
        let r = http
            .put(format!("{}/api/v1/health/settings", c.url))
            .bearer_auth(tok)
            .json(&body)
            .send()
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<Value>().unwrap_or(Value::Null),
        )
    };
    let settings = json!({"required": [{"class": "computer",
        "attributes": ["os.hostname", "register.owner"]}], "silent_after_hours": 48});
    assert_eq!(put(&auditor, settings.clone()).0, 403);
    let (status, body) = put(
        &admin,
        json!({"required": [{"class": "computer", "attributes": ["os.hostnme"]}],
            "silent_after_hours": 48}),
    );
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string().contains("did you mean 'os.hostname'"),
        "{body}"
    );
    let (status, saved) = put(&admin, settings);
    assert_eq!(status, 200, "{saved}");
    let (_, report) = get("/api/v1/health", &[("kind", "missing_required")]);
    assert_eq!(
        report["defects_total"], 3,
        "nobody has an owner yet: {report}"
    );

    // The census command prints the scores and the defects of a kind.
    let config = c.dir.join("client.json");
    census_login(&c, &config, &auditor);
    let (ok, out, err) = run_census(
        &config,
        &["health", "show", "--kind", "duplicate_serial"],
        None,
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("computer") && out.contains("duplicate_serial"),
        "{out}"
    );

    // The collector recorded today's point when it started.
    let mut points = Value::Null;
    for _ in 0..50 {
        points = get("/api/v1/health/trend", &[]).1;
        if points["points"].as_array().is_some_and(|p| !p.is_empty()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        points["points"][0]["day"],
        chrono::Utc::now().date_naive().to_string(),
        "{points}"
    );

    // The page: hostile names stay text, the defects link to their CIs.
    let s = person_with_password(&c, "ann", "asset_manager");
    let r = c
        .http_no_redirect()
        .get(format!("{}/ui/health?kind=missing_required", c.url))
        .header("cookie", &s.cookie)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let page = r.text().unwrap();
    assert!(!page.contains("<script>alert"), "escaped");
    assert!(page.contains("missing register.owner"), "{page}");
    assert!(!page.contains("id=\"health-settings-form\""), "admins only");
    assert!(
        page.contains("aria-labelledby=\"health-trend-title\"") && page.contains("<circle"),
        "the trend's recorded point is drawn: {page}"
    );
}
