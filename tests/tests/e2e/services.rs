//! Business services over the real binaries: made through the API and the census
//! command, a cycle refused, impact from a computer and a product version with its path,
//! roles.

use serde_json::{json, Value};

use crate::support::*;

#[test]
fn services_are_made_refuse_cycles_and_show_impact_with_the_path() {
    let c = Collector::start("services");
    let http = c.http();
    let cm = person_token(&c, "carl", "change_manager");
    let auditor = person_token(&c, "audrey", "auditor");
    let mut a = FakeAgent::enroll(&c, &c.token(1, "1h"));
    let mut s = machine(
        "db01",
        Some("SER-DB-1"),
        None,
        &format!("{:032x}", 801),
        &["52:54:00:dd:01:01"],
    );
    let r = a.send(&c, &mut s);
    assert_eq!(r.status, 200);
    let db01 = r.body["ci_id"].as_str().unwrap().to_string();
    let post = |tok: &str, body: Value| {
        let r = http
            .post(format!("{}/api/v1/services", c.url))
            .bearer_auth(tok)
            .json(&body)
            .send()
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<Value>().unwrap_or(Value::Null),
        )
    };
    let database = json!({"kind": "application", "name": "Orders DB", "criticality": 2,
        "runs_on": [{"type": "computer", "id": db01}]});
    assert_eq!(post(&auditor, database.clone()).0, 403);
    let (status, db) = post(&cm, database);
    assert_eq!(status, 201, "{db}");
    let (status, shop) = post(
        &cm,
        json!({"kind": "business", "name": "Shop", "criticality": 1, "owner": "sales",
            "depends_on": [db["id"]]}),
    );
    assert_eq!(status, 201, "{shop}");
    let (status, body) = post(
        &cm,
        json!({"kind": "business", "name": "Bad", "criticality": 9}),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("criticality"), "{body}");
    // The database may not depend on the shop that depends on it.
    let r = http
        .put(format!(
            "{}/api/v1/services/{}",
            c.url,
            db["id"].as_str().unwrap()
        ))
        .bearer_auth(&cm)
        .json(
            &json!({"kind": "application", "name": "Orders DB", "criticality": 2,
            "depends_on": [shop["id"]], "runs_on": [{"type": "computer", "id": db01}]}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    assert!(r.text().unwrap().contains("cycle"));

    let config = c.dir.join("client.json");
    census_login(&c, &config, &auditor);
    let (ok, out, err) = run_census(&config, &["services", "impact", "--ci", &db01], None);
    assert!(ok, "{err}");
    assert!(out.contains("Shop -> Orders DB"), "{out}");
    let (ok, out, err) = run_census(
        &config,
        &[
            "-o",
            "json",
            "services",
            "impact",
            "--product",
            "openssl",
            "--versions",
            "< 4",
        ],
        None,
    );
    assert!(ok, "{err}");
    let impact: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(impact["computers_total"], 1, "{impact}");
    assert_eq!(impact["services"][0]["name"], "Shop", "{impact}");
    assert_eq!(impact["services"][0]["criticality"], 1);
    let (ok, out, _) = run_census(&config, &["services", "list"], None);
    assert!(
        ok && out.contains("Orders DB") && out.contains("Shop"),
        "{out}"
    );
    let (ok, _, err) = run_census(
        &config,
        &["services", "delete", db["id"].as_str().unwrap()],
        None,
    );
    assert!(!ok && err.contains("403"), "an auditor reads only: {err}");
}
