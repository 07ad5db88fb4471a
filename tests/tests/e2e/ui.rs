//! The web UI over HTTPS at the HTTP level: hostile agent values render as text, security
//! headers, CSRF on every form (nothing stored without it), sessions that end for real,
//! and the admin flows audited under the signed-in person. The browser test is
//! `ui_browser.rs`.

use serde_json::Value;

use crate::support::*;

const PASSWORD: &str = "correct horse battery staple";
const HOSTILE_HOST: &str = "<script>alert(1)</script>";
const HOSTILE_PACKAGE: &str = "pkg\"quote'<img src=x onerror=alert(2)>";

pub fn person_with_password(c: &Collector, name: &str, role: &str) -> UiSession {
    c.cli(&["user", "add", name, "--role", role]);
    c.set_password(name, PASSWORD);
    c.ui_login(name, PASSWORD)
}

/// Enrolls a fake agent whose machine has a hostile host name and package name.
pub fn hostile_machine(c: &Collector) -> (FakeAgent, census_shared::Snapshot) {
    let mut agent = FakeAgent::enroll(c, &c.token(1, "1h"));
    let mut snap = machine(
        HOSTILE_HOST,
        Some("SER-UI-1"),
        None,
        "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
        &["52:54:00:00:a1:01"],
    );
    snap.software
        .data_mut()
        .expect("software")
        .push(census_shared::Software {
            name: HOSTILE_PACKAGE.into(),
            version: "1.0-1".into(),
            arch: Some("amd64".into()),
            source: "dpkg".into(),
            ..Default::default()
        });
    let r = agent.send(c, &mut snap);
    assert_eq!(r.status, 200, "{:?}", r.body);
    (agent, snap)
}

fn get(c: &Collector, s: &UiSession, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = c
        .http_no_redirect()
        .get(format!("{}{path}", c.url))
        .header("cookie", &s.cookie)
        .send()
        .expect("GET");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().expect("body"))
}

fn post(c: &Collector, s: &UiSession, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let r = c
        .http_no_redirect()
        .post(format!("{}{path}", c.url))
        .header("cookie", &s.cookie)
        .form(form)
        .send()
        .expect("POST");
    (r.status().as_u16(), r.text().expect("body"))
}

fn computer_id(c: &Collector) -> String {
    c.json(&["ci", "list", "--class", "computer"])[0]["id"]
        .as_str()
        .expect("a computer")
        .to_string()
}

#[test]
fn hostile_agent_values_render_as_text_under_a_strict_csp() {
    let c = Collector::start("ui-escape");
    let s = person_with_password(&c, "ann", "asset_manager");
    hostile_machine(&c);
    let id = computer_id(&c);
    for path in [
        "/ui".to_string(),
        "/ui/computers".into(),
        format!("/ui/cis/{id}"),
        "/ui/software?prefix=pkg".into(),
        "/ui/software/titles?prefix=pkg".into(),
        "/ui/changes?state=".into(),
    ] {
        let (status, headers, body) = get(&c, &s, &path);
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            !body.contains("<script>alert"),
            "{path} renders a hostile host name as markup"
        );
        assert!(
            !body.contains("<img src=x"),
            "{path} renders a hostile package name as markup"
        );
        let csp = headers["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(directive), "{path}: CSP {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["cache-control"], "no-store");
    }
    // The dashboard's operating-system row links to exactly those computers.
    let (_, _, dash) = get(&c, &s, "/ui");
    let at = dash
        .find("href=\"/ui/computers?filter=os.name")
        .expect("an OS link")
        + "href=\"".len();
    let href = dash[at..].split('"').next().unwrap();
    let (status, _, list) = get(&c, &s, href);
    assert_eq!(status, 200, "{href}");
    assert!(list.contains("1 matching"), "{href}: {list}");
    let (_, _, detail) = get(&c, &s, &format!("/ui/cis/{id}"));
    assert!(
        detail.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "the host name is shown, escaped"
    );
    for path in ["/ui/software?prefix=pkg", "/ui/software/titles?prefix=pkg"] {
        let (_, _, software) = get(&c, &s, path);
        assert!(
            software.contains("pkg&#34;quote&#39;&#60;img src=x onerror=alert(2)&#62;"),
            "{path}: {software}"
        );
    }
    // The filter link for a package with quotes is built with the language's escapes.
    let (status, _, found) = get(
        &c,
        &s,
        &format!(
            "/ui/computers?filter={}",
            url(&format!(
                "software.name = \"{}\"",
                HOSTILE_PACKAGE.replace('"', "\\\"")
            ))
        ),
    );
    assert_eq!(status, 200);
    assert!(found.contains("1 matching"), "{found}");
    // A filter error names its position and is refused with 400, escaped too.
    let (status, _, bad) = get(
        &c,
        &s,
        &format!("/ui/computers?filter={}", url("name = <script>")),
    );
    assert_eq!(status, 400);
    assert!(
        bad.contains("filter:") && !bad.contains("<script>"),
        "{bad}"
    );
}

fn url(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn forms_without_the_session_csrf_token_store_nothing() {
    let c = Collector::start("ui-csrf");
    let admin = person_with_password(&c, "root", "admin");
    let other = person_with_password(&c, "ops", "admin");
    let tokens_before = c.json(&["token", "list"]).as_array().unwrap().len();
    let form = [("ttl_hours", "1"), ("uses", "1"), ("note", "csrf")];
    let (status, body) = post(&c, &admin, "/ui/admin/tokens", &form);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("security token"), "{body}");
    let mut with_other = form.to_vec();
    with_other.push(("csrf", other.csrf.as_str()));
    let (status, _) = post(&c, &admin, "/ui/admin/tokens", &with_other);
    assert_eq!(
        status, 403,
        "another session's CSRF token does not fit this session"
    );
    // A browser marks a cross-site form; refused even with the right token.
    let mut good = form.to_vec();
    good.push(("csrf", admin.csrf.as_str()));
    let r = c
        .http_no_redirect()
        .post(format!("{}/ui/admin/tokens", c.url))
        .header("cookie", &admin.cookie)
        .header("sec-fetch-site", "cross-site")
        .form(&good)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(
        c.json(&["token", "list"]).as_array().unwrap().len(),
        tokens_before,
        "no refused form stored a token"
    );
    // Oversized forms are refused before they are read whole.
    let big = "x".repeat(70 * 1024);
    let (status, _) = post(
        &c,
        &admin,
        "/ui/admin/tokens",
        &[("note", big.as_str()), ("csrf", admin.csrf.as_str())],
    );
    assert_eq!(status, 413);

    let (status, page) = post(&c, &admin, "/ui/admin/tokens", &good);
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("census-agent enroll --server https://127.0.0.1:"),
        "{page}"
    );
    assert!(
        page.contains(&format!("--ca-fingerprint {}", c.fingerprint())),
        "{page}"
    );
    let tokens: Value = c.json(&["token", "list"]);
    assert_eq!(tokens.as_array().unwrap().len(), tokens_before + 1);
    let audit = c
        .http()
        .get(format!("{}/api/v1/audit", c.url))
        .bearer_auth(
            c.json(&["user", "token", "root", "--ttl", "1h"])["token"]
                .as_str()
                .unwrap(),
        )
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    assert!(
        audit.to_string().contains("\"actor\":\"root\"")
            && audit.to_string().contains("enrollment_token.create"),
        "the UI's token creation is audited under the person: {audit}"
    );
}

#[test]
fn logout_revokes_the_session_and_the_login_form_is_generic() {
    let c = Collector::start("ui-logout");
    let s = person_with_password(&c, "bob", "auditor");
    assert_eq!(get(&c, &s, "/ui/audit").0, 200);
    let (status, _) = post(&c, &s, "/ui/logout", &[("csrf", s.csrf.as_str())]);
    assert_eq!(status, 303);
    let r = c
        .http_no_redirect()
        .get(format!("{}/ui/audit", c.url))
        .header("cookie", &s.cookie)
        .send()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        303,
        "the old cookie no longer works after logout"
    );
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/ui/login?next=%2Fui%2Faudit")
            || r.headers()["location"]
                .to_str()
                .unwrap()
                .starts_with("/ui/login?next=/ui/audit")
    );

    let http = c.http_no_redirect();
    let page = http.get(format!("{}/ui/login", c.url)).send().unwrap();
    let login = cookie_value(page.headers(), "__Host-census_login").unwrap();
    let attempt = |name: &str, password: &str, csrf: &str| {
        let r = http
            .post(format!("{}/ui/login", c.url))
            .header("cookie", format!("__Host-census_login={login}"))
            .form(&[
                ("name", name),
                ("password", password),
                ("csrf", csrf),
                ("next", "https://evil.example/"),
            ])
            .send()
            .unwrap();
        (r.status().as_u16(), r.headers().clone(), r.text().unwrap())
    };
    let (s1, _, wrong) = attempt("bob", "wrong password here", &login);
    let (s2, _, unknown) = attempt("nobody", "wrong password here", &login);
    assert_eq!((s1, s2), (401, 401));
    assert!(
        wrong.contains("invalid user name or password")
            && unknown.contains("invalid user name or password")
    );
    assert_eq!(
        attempt("bob", PASSWORD, "not-the-cookie").0,
        403,
        "login CSRF"
    );
    let (status, headers, _) = attempt("bob", PASSWORD, &login);
    assert_eq!(status, 303);
    assert_eq!(
        headers["location"], "/ui",
        "never redirects off-site after login"
    );
    let set = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("__Host-census_session="))
        .unwrap();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(flag), "{set}");
    }
}

#[test]
fn admin_resolves_an_identity_conflict_from_the_ui_and_revokes_the_clone() {
    let c = Collector::start("ui-conflict");
    let admin = person_with_password(&c, "root", "admin");
    let viewer = person_with_password(&c, "ann", "asset_manager");
    let uuid = "4c4c4544-0042-3510-8051-b4c04f4e4b99";
    let snap = |host: &str, mac: &str| machine(host, None, Some(uuid), "cloned-machine-id", &[mac]);
    let mut first = FakeAgent::enroll(&c, &c.token(1, "1h"));
    assert_eq!(
        first
            .send(&c, &mut snap("tmpl-a", "00:50:56:01:00:01"))
            .status,
        200
    );
    let mut clone = FakeAgent::enroll(&c, &c.token(1, "1h"));
    assert_eq!(
        clone
            .send(&c, &mut snap("tmpl-b", "00:50:56:01:00:02"))
            .status,
        200
    );
    let conflicts = c.json(&["conflicts"]);
    let id = conflicts[0]["id"].as_str().expect("a conflict").to_string();
    let (_, _, page) = get(&c, &viewer, "/ui/conflicts");
    assert!(
        page.contains(uuid) && page.contains("system_uuid"),
        "the evidence is shown: {page}"
    );
    assert!(
        !page.contains("claiming_agent_revoked"),
        "only an admin sees the actions"
    );
    let path = format!("/ui/conflicts/{id}/resolve");
    assert_eq!(
        post(
            &c,
            &viewer,
            &path,
            &[
                ("decision", "kept_separate"),
                ("csrf", viewer.csrf.as_str())
            ]
        )
        .0,
        403
    );
    assert_eq!(
        post(
            &c,
            &admin,
            &path,
            &[("decision", "merge"), ("csrf", admin.csrf.as_str())]
        )
        .0,
        422
    );
    assert_eq!(
        post(
            &c,
            &admin,
            &path,
            &[
                ("decision", "claiming_agent_revoked"),
                ("csrf", admin.csrf.as_str())
            ]
        )
        .0,
        303
    );
    assert_eq!(
        post(
            &c,
            &admin,
            &path,
            &[("decision", "kept_separate"), ("csrf", admin.csrf.as_str())]
        )
        .0,
        409,
        "decided once"
    );
    let resolved = c.json(&["conflicts"]);
    assert_eq!(resolved[0]["resolution"], "claiming_agent_revoked");
    let agent = agent_row(&c, &clone.id);
    assert!(
        !agent["revoked_at"].is_null(),
        "the clone's agent is revoked in the same write"
    );
    assert_eq!(
        clone
            .send(&c, &mut snap("tmpl-b", "00:50:56:01:00:02"))
            .status,
        403,
        "a revoked clone is refused"
    );
}

/// A multipart body of the register import form: `file` then the other fields.
fn import_form(boundary: &str, file: &[u8], fields: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"assets.csv\"\r\nContent-Type: text/csv\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(b"\r\n");
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// An upload over the UI: the CSRF token in the query string is checked by the session
/// layer before the body is read; a check writes nothing, an apply writes every row;
/// hostile values stay text; a file that cannot be read, or one too large, is refused.
#[test]
fn the_register_import_page_checks_then_applies_an_uploaded_file() {
    let c = Collector::start("ui-import");
    let s = person_with_password(&c, "ann", "asset_manager");
    hostile_machine(&c);
    let id = computer_id(&c);
    let (status, _, page) = get(&c, &s, "/ui/register/import");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(&format!("action=\"/ui/register/import?csrf={}\"", s.csrf)),
        "{page}"
    );
    let boundary = "census-test-boundary";
    let send = |query: &str, body: Vec<u8>| {
        let r = c
            .http_no_redirect()
            .post(format!("{}/ui/register/import{query}", c.url))
            .header("cookie", &s.cookie)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .expect("POST");
        (r.status().as_u16(), r.text().expect("body"))
    };
    let file = b"serial,owner,notes\nSER-UI-1,<b>ann</b>,=HYPERLINK(1)\n";
    let with_csrf = format!("?csrf={}", s.csrf);
    for query in ["", "?csrf=0000"] {
        let (status, body) = send(query, import_form(boundary, file, &[("mode", "apply")]));
        assert_eq!(status, 403, "{body}");
    }
    let (status, body) = send(
        &with_csrf,
        import_form(boundary, file, &[("mode", "check")]),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("checked, nothing written"), "{body}");
    assert!(!body.contains("<b>ann</b>"));
    let (_, _, detail) = get(&c, &s, &format!("/ui/cis/{id}"));
    assert!(!detail.contains("&#60;b&#62;ann"), "a check wrote nothing");
    let (status, body) = send(
        &with_csrf,
        import_form(boundary, file, &[("mode", "apply")]),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("applied"), "{body}");
    let (_, _, detail) = get(&c, &s, &format!("/ui/cis/{id}"));
    assert!(detail.contains("&#60;b&#62;ann&#60;/b&#62;"), "{detail}");
    // A file that is not a register file: nothing is written, the page says why.
    let (status, body) = send(
        &with_csrf,
        import_form(boundary, b"ci_id,owner\nx,\xff\xfe\n", &[("mode", "apply")]),
    );
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("cannot be read") && body.contains("line 2"),
        "{body}"
    );
    // A field the form does not have, and a body past the limit.
    let (status, body) = send(
        &with_csrf,
        import_form(boundary, file, &[("mode", "apply"), ("dry_run", "false")]),
    );
    assert_eq!(status, 422, "{body}");
    let mut huge = import_form(boundary, &vec![b'a'; 33 * 1024 * 1024], &[]);
    huge.truncate(huge.len() - 4);
    let (status, body) = send(&with_csrf, huge);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("larger than 32 MiB"), "{body}");
    // The export a person downloads from the page imports back.
    let (status, headers, csv) = get(&c, &s, "/ui/register/export");
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(csv.contains("'=HYPERLINK(1)"), "{csv}");
}

/// The settings page: an administrator adds a custom field (which the CI page then
/// offers), a bad definition is refused with its reason, other roles only read.
#[test]
fn an_admin_defines_custom_fields_and_statuses_on_the_settings_page() {
    let c = Collector::start("ui-settings");
    let admin = person_with_password(&c, "root", "admin");
    let am = person_with_password(&c, "ann", "asset_manager");
    hostile_machine(&c);
    let id = computer_id(&c);
    // One change of the settings page's forms, as `who`, with its CSRF token.
    let change = |who: &UiSession, fields: &[(&str, &str)]| {
        let mut form = vec![("csrf", who.csrf.as_str())];
        form.extend_from_slice(fields);
        post(&c, who, "/ui/register/settings", &form)
    };
    let lost = [
        ("action", "add_status"),
        ("name", "lost"),
        ("kind", "retired"),
    ];
    assert_eq!(change(&am, &lost).0, 403);
    let (_, _, page) = get(&c, &am, "/ui/register/settings");
    assert!(
        !page.contains("id=\"custom-form\""),
        "read only for an asset manager"
    );
    let (status, body) = change(
        &admin,
        &[
            ("action", "add_custom"),
            ("name", "u_rack"),
            ("type", "text"),
            ("max_chars", "16"),
            ("description", "Rack <and> unit"),
        ],
    );
    assert_eq!(status, 303, "{body}");
    let (status, body) = change(
        &admin,
        &[
            ("action", "add_custom"),
            ("name", "rack"),
            ("type", "enum"),
            ("values", "a, b"),
        ],
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("u_ then"), "{body}");
    assert_eq!(change(&admin, &lost).0, 303);
    let (_, _, page) = get(&c, &admin, "/ui/register/settings");
    assert!(page.contains("<code>u_rack</code>") && page.contains("Rack &#60;and&#62; unit"));
    assert!(page.contains("<code>lost</code>"), "{page}");
    let (_, _, detail) = get(&c, &am, &format!("/ui/cis/{id}"));
    assert!(detail.contains("id=\"reg-u_rack\""), "{detail}");
    assert!(detail.contains("<option value=\"lost\""), "{detail}");
    let (status, body) = post(
        &c,
        &am,
        &format!("/ui/cis/{id}/register"),
        &[
            ("csrf", &am.csrf),
            ("f_u_rack", "R1-U2"),
            ("was_u_rack", ""),
        ],
    );
    assert_eq!(status, 303, "{body}");
    let (_, _, detail) = get(&c, &am, &format!("/ui/cis/{id}"));
    assert!(detail.contains("value=\"R1-U2\""), "{detail}");
}

/// Services in the web UI: made from the form, shown with what they run on; the computer's
/// page and its change record list the services a change reaches; a cycle is refused.
#[test]
fn services_are_made_in_the_ui_and_shown_where_a_change_lands() {
    let c = Collector::start("ui-services");
    let cm = person_with_password(&c, "carl", "change_manager");
    let auditor = person_with_password(&c, "dora", "auditor");
    let (mut agent, mut snap) = hostile_machine(&c);
    let id = computer_id(&c);
    let runs_on = format!("computer {id}");
    let (status, body) = post(
        &c,
        &auditor,
        "/ui/services",
        &[
            ("csrf", &auditor.csrf),
            ("name", "x"),
            ("kind", "business"),
            ("criticality", "1"),
        ],
    );
    assert_eq!(status, 403, "{body}");
    let make = |name: &str, kind: &str, depends_on: Option<&str>, runs_on: &str| {
        let mut form = vec![
            ("csrf", cm.csrf.as_str()),
            ("name", name),
            ("kind", kind),
            ("criticality", "2"),
            ("owner", "ops <team>"),
            ("runs_on", runs_on),
        ];
        if let Some(d) = depends_on {
            form.push(("depends_on", d));
        }
        let r = c
            .http_no_redirect()
            .post(format!("{}/ui/services", c.url))
            .header("cookie", &cm.cookie)
            .form(&form)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, location, r.text().unwrap())
    };
    let (status, db_page, body) = make("Orders DB", "application", None, &runs_on);
    assert_eq!(status, 303, "{body}");
    let db_id = db_page.rsplit('/').next().unwrap().to_string();
    let (status, shop_page, body) = make("Shop", "business", Some(&db_id), "");
    assert_eq!(status, 303, "{body}");
    let (status, _, body) = make("Bad", "business", None, "rack 12");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("runs_on line 1"), "{body}");

    let (status, _, page) = get(&c, &auditor, &db_page);
    assert_eq!(status, 200);
    assert!(
        page.contains("ops &#60;team&#62;") && !page.contains("<script>alert"),
        "{page}"
    );
    assert!(page.contains("id=\"service-computers\""), "{page}");
    assert!(
        !page.contains("id=\"service-edit\""),
        "read only for an auditor"
    );
    let (_, _, detail) = get(&c, &auditor, &format!("/ui/cis/{id}"));
    assert!(detail.contains("Shop → Orders DB"), "{detail}");

    // A drift on the computer: its change record lists the services it reaches.
    snap.software
        .data_mut()
        .unwrap()
        .retain(|p| p.name != "openssl");
    let r = agent.send(&c, &mut snap);
    let record = r.body["change_record"]
        .as_str()
        .expect("a change record")
        .to_string();
    let (_, _, change) = get(&c, &auditor, &format!("/ui/changes/{record}"));
    assert!(
        change.contains("id=\"change-services\"") && change.contains("Shop"),
        "{change}"
    );
    assert!(
        !change.contains("id=\"save-tickets\""),
        "an auditor links no tickets"
    );

    // A change manager links ITSM tickets; a hostile number stays text, a non-web address
    // is refused naming the line's entry.
    let tickets_path = format!("/ui/changes/{record}/tickets");
    let (status, body) = post(
        &c,
        &auditor,
        &tickets_path,
        &[("csrf", &auditor.csrf), ("tickets", "CHG1")],
    );
    assert_eq!(status, 403, "{body}");
    let (status, body) = post(
        &c,
        &cm,
        &tickets_path,
        &[("csrf", &cm.csrf), ("tickets", "CHG1 javascript:alert(1)")],
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("tickets[0].url"), "{body}");
    let (status, body) = post(
        &c,
        &cm,
        &tickets_path,
        &[
            ("csrf", &cm.csrf),
            (
                "tickets",
                "CHG0012345 https://itsm.example/chg/12345\n<script>alert(1)</script>",
            ),
        ],
    );
    assert!(status == 303 || status == 200, "{status} {body}");
    let (_, _, change) = get(&c, &cm, &format!("/ui/changes/{record}"));
    assert!(
        change.contains(
            "<a href=\"https://itsm.example/chg/12345\" rel=\"noreferrer\">CHG0012345</a>"
        ),
        "{change}"
    );
    assert!(
        change.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            && !change.contains("<script>alert"),
        "{change}"
    );

    // The database may not depend on the shop that depends on it.
    let shop_id = shop_page.rsplit('/').next().unwrap();
    let (status, body) = post(
        &c,
        &cm,
        &db_page,
        &[
            ("csrf", &cm.csrf),
            ("name", "Orders DB"),
            ("kind", "application"),
            ("criticality", "2"),
            ("depends_on", shop_id),
            ("runs_on", &runs_on),
            ("expected_version", "1"),
        ],
    );
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("cycle"), "{body}");
    let (status, _) = post(
        &c,
        &cm,
        &format!("{shop_page}/delete"),
        &[("csrf", &cm.csrf)],
    );
    assert_eq!(status, 303);
    let (status, _, _) = get(&c, &auditor, &shop_page);
    assert_eq!(status, 404);
}
