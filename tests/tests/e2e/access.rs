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
        ["GET /healthz", "GET /readyz", "POST /api/v1/enroll"]
            .map(String::from)
            .into(),
        "the anonymous list is exactly the probes and enrollment"
    );
    assert_eq!(
        with_access("agent"),
        ["POST /api/v1/snapshots", "POST /api/v1/heartbeat"]
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
    assert!(checked >= 80, "checked {checked} route/role pairs");
    assert_eq!(call("GET", "/api/v1/not-a-route", None), 404);
}
