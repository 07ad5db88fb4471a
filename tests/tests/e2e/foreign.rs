//! Migration from OCS Inventory and FusionInventory with their real agents (Debian's
//! `ocsinventory-agent` and `fusioninventory-agent`, which .ci/run installs): each writes
//! this machine's inventory locally, `census-collector import` reads it, and the CMDB holds
//! this machine with the package count `dpkg-query` reports, its MACs and its OS. Then the
//! Census agent takes the imported machine over, and imports of it are skipped.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::agent::{text, RealAgent};
use crate::support::*;

fn dpkg_packages() -> usize {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}\n"])
        .output()
        .expect("dpkg-query");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.as_bytes().get(1) == Some(&b'i'))
        .count()
}

/// The MACs `ip -o link` shows for interfaces backed by a device (/sys/class/net/X/device).
fn physical_macs() -> BTreeSet<String> {
    let out = Command::new("ip")
        .args(["-o", "link"])
        .output()
        .expect("ip");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let name = l.split(':').nth(1)?.trim().split('@').next()?.to_string();
            let mac = l.split("link/ether ").nth(1)?.split_whitespace().next()?;
            std::path::Path::new(&format!("/sys/class/net/{name}/device"))
                .exists()
                .then(|| mac.to_string())
        })
        .collect()
}

/// `VERSION_ID` of /etc/os-release.
fn version_id() -> String {
    std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_ID="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default()
}

fn tool(name: &str) -> String {
    for dir in ["/usr/bin", "/usr/sbin"] {
        let p = format!("{dir}/{name}");
        if std::path::Path::new(&p).exists() {
            return p;
        }
    }
    panic!(
        "{name} is not installed: .ci/run installs ocsinventory-agent and fusioninventory-agent"
    );
}

#[test]
fn real_ocs_and_fusioninventory_agents_inventories_import_and_the_census_agent_takes_over() {
    let c = Collector::start("foreign");
    let dir = temp_dir("foreign-ocs");
    let ocs = Command::new(tool("ocsinventory-agent"))
        .arg(format!("--local={}", dir.display()))
        .output()
        .expect("ocsinventory-agent");
    assert!(ocs.status.success(), "{}", text(&ocs));
    let packages = dpkg_packages();
    let report = c.json(&["import", "--from", "ocs", dir.to_str().unwrap()]);
    assert_eq!(
        (report["files"].as_u64(), report["new"].as_u64()),
        (Some(1), Some(1)),
        "{report}"
    );
    let ci_id = report["outcomes"][0]["ci_id"].as_str().unwrap().to_string();
    assert_eq!(
        report["outcomes"][0]["packages"].as_u64(),
        Some(packages as u64)
    );

    let shown = c.json(&["ci", "show", &ci_id]);
    let ci = &shown["ci"];
    let hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    assert_eq!(ci["attributes"]["os.hostname"], hostname.trim(), "{shown}");
    assert_eq!(ci["attributes"]["os.name"], "Debian GNU/Linux", "{shown}");
    assert_eq!(ci["attributes"]["os.version_id"], version_id().as_str());
    let macs: BTreeSet<String> = ci["attributes"]["network.physical_macs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect();
    assert_eq!(
        macs,
        physical_macs(),
        "the device-backed MACs `ip -o link` shows"
    );

    // FusionInventory's inventory of the same machine: the same computer.
    let fi = Command::new(tool("fusioninventory-inventory"))
        .output()
        .expect("fusioninventory-inventory");
    assert!(fi.status.success(), "{}", text(&fi));
    let fi_dir = temp_dir("foreign-fi");
    let fi_file = fi_dir.join("inventory.xml");
    std::fs::write(&fi_file, &fi.stdout).unwrap();
    let report = c.json(&[
        "import",
        "--from",
        "fusioninventory",
        fi_file.to_str().unwrap(),
    ]);
    let o = &report["outcomes"][0];
    assert_eq!(
        (o["outcome"].as_str(), o["ci_id"].as_str()),
        (Some("updated"), Some(ci_id.as_str())),
        "{report}"
    );
    assert_eq!(o["packages"].as_u64(), Some(packages as u64));

    // The Census agent on this machine takes it over; imports of it are skipped after.
    let agent = RealAgent::new("foreign");
    assert!(agent.enroll(&c).status.success());
    let out = agent.run(&["once"]);
    assert!(out.status.success(), "{}", text(&out));
    let computers: Value = c.json(&["ci", "list", "--class", "computer"]);
    assert_eq!(computers.as_array().map(Vec::len), Some(1), "{computers}");
    assert_eq!(computers[0]["id"], ci_id.as_str());
    let report = c.json(&["import", "--from", "ocs", dir.to_str().unwrap()]);
    let o = &report["outcomes"][0];
    assert_eq!(o["outcome"], "skipped", "{report}");
    assert!(
        o["reason"].as_str().unwrap().contains("Census agent"),
        "{report}"
    );

    // A dry run writes nothing, and an unreadable file is listed with its reason.
    let bad_dir = temp_dir("foreign-bad");
    let bad = bad_dir.join("bad.xml");
    std::fs::write(
        &bad,
        "<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/shadow\">]><REQUEST>&x;</REQUEST>",
    )
    .unwrap();
    let report = c.json(&[
        "import",
        "--from",
        "ocs",
        "--dry-run",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(report["failed"].as_u64(), Some(1), "{report}");
    assert!(report["outcomes"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("document type declaration"));
}

fn zlib(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(bytes).unwrap();
    z.finish().unwrap()
}

fn unzlib(bytes: &[u8]) -> String {
    use std::io::Read;
    let mut out = String::new();
    flate2::read::ZlibDecoder::new(bytes)
        .read_to_string(&mut out)
        .unwrap();
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const SECRET: &str = "a-long-shared-migration-secret";

#[test]
fn real_agents_report_over_the_ocs_and_glpi_protocols_and_hostile_requests_store_nothing() {
    let dir = temp_dir("compat-conf");
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // Loopback is not on the allow-list: every request here needs the secret.
    let c = Collector::start_with(
        "compat",
        &[
            "--compat-listen",
            &listen,
            "--compat-secret-file",
            secret_file.to_str().unwrap(),
            "--compat-allow",
            "10.99.0.0/16",
        ],
    );
    let url = format!("https://127.0.0.1:{port}/ocsinventory");
    let ca = c.dir.join("tls/ca.pem");
    let computers = || -> usize {
        c.json(&["ci", "list", "--class", "computer"])
            .as_array()
            .map_or(0, Vec::len)
    };

    // The OCS agent, as a fleet would run it pointed at Census (its configured password
    // is base64, as the agent's own config file holds it).
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let ocs = Command::new(tool("ocsinventory-agent"))
        .args([
            "--nolocal",
            "--force",
            "--server",
            &url,
            "--ssl",
            "1",
            "--ca",
            ca.to_str().unwrap(),
            "--user",
            &b64("ocs"),
            "--password",
            &b64(SECRET),
            "--realm",
            "census",
        ])
        .output()
        .expect("ocsinventory-agent");
    assert!(ocs.status.success(), "{}", text(&ocs));
    assert!(!text(&ocs).contains("[error]"), "{}", text(&ocs));
    let listed = c.json(&["ci", "list", "--class", "computer"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let ci_id = listed[0]["id"].as_str().unwrap().to_string();
    let agents = c.json(&["agent", "list"]);
    assert!(
        agents
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"].as_str().is_some_and(|i| i.starts_with("imp_ocs_"))),
        "an import source, not a Census agent: {agents}"
    );

    // FusionInventory's agent: the same machine, the same computer.
    let fi = Command::new(tool("fusioninventory-agent"))
        .args([
            "--server",
            &url,
            "--ca-cert-file",
            ca.to_str().unwrap(),
            "--user",
            "ocs",
            "--password",
            SECRET,
            "--force",
            "--tasks",
            "inventory",
            "--logger",
            "stderr",
        ])
        .output()
        .expect("fusioninventory-agent");
    assert!(fi.status.success(), "{}", text(&fi));
    assert_eq!(computers(), 1);
    let shown = c.json(&["ci", "show", &ci_id]);
    assert_eq!(
        shown["ci"]["attributes"]["os.version_id"],
        version_id().as_str(),
        "{shown}"
    );

    // Hostile and unauthorised requests: a clear status each, nothing stored.
    let http = c.http();
    let post = |body: Vec<u8>, password: Option<&str>| {
        let mut req = http.post(&url).body(body);
        if let Some(p) = password {
            req = req.basic_auth("ocs", Some(p));
        }
        let r = req.send().unwrap();
        let status = r.status().as_u16();
        let auth = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        (status, auth, r.bytes().unwrap().to_vec())
    };
    let prolog = zlib(b"<REQUEST><DEVICEID>x-1</DEVICEID><QUERY>PROLOG</QUERY></REQUEST>");
    let (s, auth, _) = post(prolog.clone(), None);
    assert_eq!((s, auth.as_deref()), (401, Some("Basic realm=\"census\"")));
    assert_eq!(
        post(prolog.clone(), Some("wrong-secret-wrong-secret")).0,
        401
    );
    let (s, _, body) = post(prolog, Some(SECRET));
    assert_eq!(s, 200);
    assert!(unzlib(&body).contains("<RESPONSE>SEND</RESPONSE>"));
    let (s, _, body) = post(vec![b'x'; 9 * 1024 * 1024], Some(SECRET));
    assert_eq!(s, 413, "{}", String::from_utf8_lossy(&body));
    let bomb = zlib(&vec![b' '; 100 * 1024 * 1024]);
    assert!(bomb.len() < 1024 * 1024);
    let (s, _, body) = post(bomb, Some(SECRET));
    assert_eq!(s, 400);
    assert!(String::from_utf8_lossy(&body).contains("inflates past"));
    let laughs = zlib(
        b"<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]><REQUEST>&b;</REQUEST>",
    );
    let (s, _, body) = post(laughs, Some(SECRET));
    assert_eq!(s, 400);
    assert!(String::from_utf8_lossy(&body).contains("document type declaration"));
    let deep = zlib(
        format!(
            "<REQUEST>{}{}</REQUEST>",
            "<a>".repeat(5000),
            "</a>".repeat(5000)
        )
        .as_bytes(),
    );
    let (s, _, body) = post(deep, Some(SECRET));
    assert_eq!(s, 400);
    assert!(String::from_utf8_lossy(&body).contains("nest deeper"));
    let other = zlib(b"<REQUEST><DEVICEID>x-1</DEVICEID><QUERY>UPDATE</QUERY></REQUEST>");
    assert_eq!(post(other, Some(SECRET)).0, 400);
    let empty = zlib(b"<REQUEST><DEVICEID>x-2</DEVICEID><QUERY>INVENTORY</QUERY></REQUEST>");
    let (s, _, body) = post(empty, Some(SECRET));
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("no CONTENT"));
    assert_eq!(computers(), 1, "nothing refused was stored");

    // The GLPI agent's protocol on the same listener: a CONTACT, then its JSON inventory
    // (glpi-project/inventory_format's public sample), zlib as the agent sends it.
    let glpi_url = format!("https://127.0.0.1:{port}/front/inventory.php");
    let send = |body: Vec<u8>| {
        let r = http
            .post(&glpi_url)
            .basic_auth("glpi", Some(SECRET))
            .header("content-type", "application/x-compress-zlib")
            .body(body)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let kind = r.headers()["content-type"].to_str().unwrap().to_string();
        let json: Value = serde_json::from_str(&unzlib(&r.bytes().unwrap())).unwrap();
        (status, kind, json)
    };
    let (s, kind, json) = send(zlib(
        br#"{"action": "contact", "deviceid": "glpixps-2018-07-09-09-07-13", "name": "GLPI-Agent_v1.7", "installed-tasks": ["inventory"], "enabled-tasks": ["inventory"]}"#,
    ));
    assert_eq!((s, kind.as_str()), (200, "application/x-compress-zlib"));
    assert_eq!(json["status"], "ok");
    assert!(json["tasks"]["inventory"].is_object(), "{json}");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../collector/tests/fixtures/foreign/glpi-computer_1.json");
    let mut inventory: Value = serde_json::from_slice(&std::fs::read(sample).unwrap()).unwrap();
    inventory["action"] = "inventory".into();
    let (s, _, json) = send(zlib(inventory.to_string().as_bytes()));
    assert_eq!((s, json["status"].as_str()), (200, Some("ok")), "{json}");
    assert_eq!(computers(), 2);
    let listed = c.json(&["ci", "list", "--class", "computer"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "glpixps"),
        "{listed}"
    );
    let (s, _, json) = send(zlib(br#"{"action": "deploy"}"#));
    assert_eq!(s, 400);
    assert!(
        json["message"].as_str().unwrap().contains("not served"),
        "{json}"
    );
    let (s, _, json) = send(zlib(br#"{"action": "inventory", "deviceid": "x"}"#));
    assert_eq!(s, 400);
    assert!(
        json["message"].as_str().unwrap().contains("no CONTENT"),
        "{json}"
    );
    assert_eq!(computers(), 2);
}
