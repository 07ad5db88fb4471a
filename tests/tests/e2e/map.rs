//! The dependency map from real agents: two agents, each in its own network and UTS
//! namespace (so each is its own machine with its own address), joined by a bridge that
//! also carries the collector; a real server process in one and a real client process in
//! the other. Both agents report the connection; the collector joins it into one edge.
//!
//! The namespaces reach the bridge over veth links, which the CMDB leaves out on purpose
//! (container plumbing that comes and goes), so each machine's own address sits on an
//! interface of its own (a bridge without ports: this kernel has no dummy driver), as a
//! service address would be, and routes between them name it as the source.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::agent::{text, RealAgent};
use crate::support::*;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bridge with the collector's address, and namespaces hanging off it; all removed when
/// dropped.
struct Lab {
    bridge: String,
    prefix: String,
    namespaces: Vec<String>,
}

impl Lab {
    fn new() -> Lab {
        let tag = std::process::id() % 10_000;
        let lab = Lab {
            bridge: format!("cbr{tag}"),
            prefix: format!("10.203.{}", tag % 250),
            namespaces: Vec::new(),
        };
        let _ = Command::new("ip")
            .args(["link", "del", &lab.bridge])
            .output();
        ip(&["link", "add", &lab.bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}.1/24", lab.prefix),
            "dev",
            &lab.bridge,
        ]);
        ip(&["link", "set", &lab.bridge, "up"]);
        lab
    }

    fn collector_address(&self) -> String {
        format!("{}.1", self.prefix)
    }

    /// A namespace at `.{host}` of the lab's /24.
    fn namespace(&mut self, name: &str, host: u8) -> String {
        let tag = std::process::id() % 10_000;
        let ns = format!("census-{name}-{tag}");
        let outside = format!("cv{name}{tag}");
        let inside = format!("cv{name}{tag}i");
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", &inside,
        ]);
        ip(&["link", "set", &outside, "master", &self.bridge, "up"]);
        ip(&["link", "set", &inside, "netns", &ns]);
        let address = format!("{}.{host}/24", self.prefix);
        ip(&["-n", &ns, "addr", "add", &address, "dev", &inside]);
        ip(&["-n", &ns, "link", "set", &inside, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &ns, "link", "add", "svc0", "type", "bridge"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/32", self.service_address(host)),
            "dev",
            "svc0",
        ]);
        ip(&["-n", &ns, "link", "set", "svc0", "up"]);
        ns
    }

    /// The machine's own address at `.{host}`.
    fn service_address(&self, host: u8) -> String {
        format!("10.77.{}.{host}", std::process::id() % 250)
    }

    /// Routes from `ns` (at `.{from}`) to the machine at `.{to}`, from its own address.
    fn route(&self, ns: &str, from: u8, to: u8) {
        ip(&[
            "-n",
            ns,
            "route",
            "add",
            &format!("{}/32", self.service_address(to)),
            "via",
            &format!("{}.{to}", self.prefix),
            "src",
            &self.service_address(from),
        ]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

/// `program args` in namespace `ns` with its own host name.
fn in_namespace(ns: &str, hostname: &str, program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "unshare", "--uts", "sh", "-c"])
        .arg("hostname \"$0\" && exec \"$@\"")
        .arg(hostname)
        .arg(program)
        .args(args);
    cmd
}

fn agent_in(
    ns: &str,
    hostname: &str,
    agent: &RealAgent,
    config: &std::path::Path,
    args: &[&str],
) -> Output {
    let bin = bin("census-agent");
    let mut all = vec![
        "--state-dir",
        agent.state.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    in_namespace(ns, hostname, bin.to_str().unwrap(), &all)
        .env("CENSUS_LOG", "info")
        .output()
        .expect("run the agent")
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn two_agents_in_their_own_namespaces_map_a_real_connection_from_both_sides() {
    let mut lab = Lab::new();
    let web = lab.namespace("web", 2);
    let db = lab.namespace("db", 3);
    lab.route(&web, 2, 3);
    lab.route(&db, 3, 2);
    let db_address = lab.service_address(3);
    let c = Collector::start_on("map-netns", &lab.collector_address(), &[]);

    let dir = temp_dir("map-agents");
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        "schedule = \"0 */4 * * *\"\nsplay_seconds = 0\nrequest_timeout_seconds = 20\n\
         sections = [\"os\", \"network\", \"connections\"]\nconnections_interval_seconds = 0\n",
    )
    .unwrap();
    let web_agent = RealAgent::new("map-web");
    let db_agent = RealAgent::new("map-db");
    for (ns, host, agent) in [(&web, "web-a", &web_agent), (&db, "db-a", &db_agent)] {
        let token = c.token(1, "1h");
        let fingerprint = c.fingerprint();
        let out = agent_in(
            ns,
            host,
            agent,
            &config,
            &[
                "enroll",
                "--server",
                &c.url,
                "--token",
                &token,
                "--ca-fingerprint",
                &fingerprint,
            ],
        );
        assert!(out.status.success(), "enroll in {ns}: {}", text(&out));
    }

    // A real server process in one namespace, a real client process in the other.
    let server = Killed(
        in_namespace(
            &db,
            "db-a",
            "perl",
            &[
                "-MIO::Socket::INET",
                "-e",
                &format!(
                    "$s = IO::Socket::INET->new(LocalAddr => '{db_address}', LocalPort => 5432, Listen => 5, ReuseAddr => 1) or die $!; \
                     while (my $c = $s->accept) {{ push @held, $c }}"
                ),
            ],
        )
        .stdout(Stdio::null())
        .spawn()
        .expect("start the server"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let client = Killed(
        in_namespace(
            &web,
            "web-a",
            "perl",
            &[
                "-MIO::Socket::INET",
                "-e",
                &format!(
                    "$c = IO::Socket::INET->new(PeerAddr => '{db_address}', PeerPort => 5432) or die $!; sleep 300"
                ),
            ],
        )
        .stdout(Stdio::null())
        .spawn()
        .expect("start the client"),
    );
    std::thread::sleep(Duration::from_millis(500));

    // The database reports first, the web server after: resolution works in either order.
    for (ns, host, agent) in [(&db, "db-a", &db_agent), (&web, "web-a", &web_agent)] {
        let out = agent_in(ns, host, agent, &config, &["once"]);
        assert!(out.status.success(), "once in {ns}: {}", text(&out));
    }
    drop(client);
    drop(server);

    let admin = person_token(&c, "ann", "asset_manager");
    let http = c.http();
    let get = |path: &str| -> Value {
        let r = http
            .get(format!("{}{path}", c.url))
            .bearer_auth(&admin)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        r.json().unwrap()
    };
    let computers = c.json(&["ci", "list", "--class", "computer"]);
    let id_of = |name: &str| -> String {
        computers
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {computers}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (web_id, db_id) = (id_of("web-a"), id_of("db-a"));
    let map = get(&format!("/api/v1/map?ci={web_id}&depth=2"));
    let edges: Vec<&Value> = map["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["port"] == 5432)
        .collect();
    assert_eq!(edges.len(), 1, "{map}");
    let e = edges[0];
    assert_eq!(
        (e["from"].as_str(), e["to"].as_str()),
        (Some(web_id.as_str()), Some(db_id.as_str()))
    );
    assert_eq!(e["client_process"], "perl");
    assert_eq!(e["server_process"], "perl");
    assert_eq!(e["reported_by"], serde_json::json!(["client", "server"]));

    // What depends on the database: the web server.
    let impact = get(&format!("/api/v1/services/impact?ci={db_id}"));
    let dependents: Vec<&str> = impact["network_dependents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(dependents, ["web-a"]);

    // The edges as CSV, and the page.
    let csv = http
        .get(format!("{}/api/v1/map/edges?ci={db_id}", c.url))
        .bearer_auth(&admin)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        csv.lines()
            .any(|l| l.starts_with(&format!("{web_id},web-a,{db_id},db-a,tcp,5432,perl,perl,"))),
        "{csv}"
    );

    // The client is gone: the next inventory's flows differ, which is never drift, and the
    // edge stays on the map until it expires.
    let out = agent_in(&web, "web-a", &web_agent, &config, &["once"]);
    assert!(out.status.success(), "{}", text(&out));
    let records = get(&format!("/api/v1/change-records?ci={web_id}"));
    assert_eq!(records["total"], 0, "{records}");
    let map = get(&format!("/api/v1/map?ci={db_id}"));
    assert!(
        map["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["port"] == 5432),
        "{map}"
    );
}

#[test]
fn the_census_command_maps_a_host_lists_endpoints_and_keeps_baselines() {
    let c = Collector::start("map-cli");
    let mut a = FakeAgent::enroll(&c, &c.token(1, "1h"));
    let mut s = machine(
        "gw01",
        Some("SER-GW-1"),
        None,
        &format!("{:032x}", 77),
        &["52:54:00:0c:00:01"],
    );
    s.listening_ports = sshd_listening();
    s.connections = census_shared::Section::collected(vec![
        outbound(443, "203.0.113.7", "/usr/bin/updater"),
        outbound(443, "203.0.113.9", "curl"),
        outbound(53, "192.0.2.53", "/usr/sbin/unbound"),
    ]);
    let r = a.send(&c, &mut s);
    assert_eq!(r.status, 200, "{}", r.detail());
    let id = r.body["ci_id"].as_str().unwrap().to_string();

    let cm = person_token(&c, "carol", "change_manager");
    let config = c.dir.join("client.json");
    census_login(&c, &config, &cm);
    let census = |args: &[&str]| run_census(&config, args, None);

    let (ok, out, err) = census(&["map", "host", &id, "--depth", "2"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("gw01") && out.contains("203.0.113.0/24") && out.contains("tcp/443"),
        "{out}"
    );
    assert!(out.contains("/usr/bin/updater"), "{out}");
    let (ok, _, err) = census(&["map", "host", &id, "--depth", "9"]);
    assert!(!ok && err.contains("depth"), "{err}");

    let (ok, out, err) = census(&["-o", "csv", "map", "endpoints"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two groups: {out}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("203.0.113.0/24,203.0.113.7 203.0.113.9,tcp/443,")),
        "{out}"
    );
    assert!(err.contains("2 of 2 endpoint groups"), "{err}");
    let csv = c
        .http()
        .get(format!("{}/api/v1/map/endpoints/export", c.url))
        .bearer_auth(&cm)
        .send()
        .unwrap();
    assert_eq!(csv.status().as_u16(), 200);
    let csv = csv.text().unwrap();
    assert!(csv.starts_with("subnet,addresses,"), "{csv}");
    assert!(csv.contains("gw01"), "{csv}");
    let refused = c
        .http()
        .get(format!("{}/api/v1/map/endpoints?limit=0", c.url))
        .bearer_auth(&cm)
        .send()
        .unwrap();
    assert_eq!(refused.status().as_u16(), 422);

    // A baseline through its whole life.
    let file = c.dir.join("gateways.json");
    std::fs::write(
        &file,
        r#"{"name": "gateways", "applies_to": "name ^= gw",
            "rules": [{"rule": "package_absent", "package": "telnetd"},
                      {"rule": "listening_only_on", "ports": [443]}]}"#,
    )
    .unwrap();
    let (ok, out, err) = census(&["-o", "json", "baselines", "add", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    let made: Value = serde_json::from_str(&out).unwrap();
    let baseline = made["id"].as_str().unwrap().to_string();
    assert_eq!(made["version"], 1);
    let (ok, out, _) = census(&["baselines", "list"]);
    assert!(
        ok && out.contains("gateways") && out.contains(&baseline),
        "{out}"
    );
    let (ok, out, err) = census(&["baselines", "report", &baseline]);
    assert!(ok, "{err}");
    assert!(
        out.contains("gw01") && out.contains("also listens on 22"),
        "{out}"
    );
    assert!(err.contains("1 hosts, 0 pass, 1 fail, 0 unknown"), "{err}");
    let csv = c
        .http()
        .get(format!(
            "{}/api/v1/baselines/{baseline}/compliance/export",
            c.url
        ))
        .bearer_auth(&cm)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0], "host_id,host_name,host_verdict,rule,verdict,evidence",
        "{csv}"
    );
    assert_eq!(lines.len(), 3, "a row per host and rule: {csv}");
    assert!(
        lines[2]
            == format!("{id},gw01.example.com,fail,listening only on 443,fail,also listens on 22"),
        "{csv}"
    );
    // A stale version is refused; the current one lets the edit through.
    std::fs::write(
        &file,
        r#"{"name": "gateways", "applies_to": "name ^= gw", "expected_version": 7,
            "rules": [{"rule": "listening_only_on", "ports": [22, 443]}]}"#,
    )
    .unwrap();
    let (ok, _, err) = census(&["baselines", "set", &baseline, file.to_str().unwrap()]);
    assert!(
        !ok && err.contains("409") && err.contains("version 1"),
        "{err}"
    );
    std::fs::write(
        &file,
        r#"{"name": "gateways", "applies_to": "name ^= gw", "expected_version": 1,
            "rules": [{"rule": "listening_only_on", "ports": [22, 443]}]}"#,
    )
    .unwrap();
    let (ok, _, err) = census(&["baselines", "set", &baseline, file.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, _, err) = census(&["baselines", "report", &baseline]);
    assert!(ok && err.contains("1 pass, 0 fail"), "{err}");
    let (ok, _, err) = census(&["baselines", "trend", &baseline]);
    assert!(ok, "{err}");
    let (ok, _, err) = census(&["baselines", "delete", &baseline]);
    assert!(ok, "{err}");
    let (ok, _, err) = census(&["baselines", "show", &baseline]);
    assert!(!ok && err.contains("404"), "{err}");
}
