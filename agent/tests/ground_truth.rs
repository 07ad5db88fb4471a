//! The agent's inventory of this machine against the machine's own tools.
//!
//! Each check runs the real `census-agent inventory` binary and compares with what dpkg,
//! iproute2, util-linux and systemd say. `.ci/run` installs those tools so none is skipped
//! in CI; run locally without one, the check says so and fails.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

fn inventory() -> &'static Value {
    static INV: OnceLock<Value> = OnceLock::new();
    INV.get_or_init(|| {
        let out = Command::new(env!("CARGO_BIN_EXE_census-agent"))
            .args(["inventory", "--format", "json"])
            .output()
            .expect("run census-agent");
        assert!(
            out.status.success(),
            "inventory failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("inventory is JSON")
    })
}

fn tool(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("{cmd} is needed for this ground-truth check ({e}); .ci/run installs it")
    });
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn data<'a>(section: &str) -> &'a Value {
    let s = &inventory()[section];
    assert_eq!(s["status"], "collected", "{section}: {s}");
    &s["data"]
}

#[test]
fn dpkg_package_count_matches_dpkg_query() {
    let sw = data("software").as_array().unwrap();
    let ours: BTreeSet<(String, String, String)> = sw
        .iter()
        .filter(|p| p["source"] == "dpkg")
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["arch"].as_str().unwrap_or("").to_string(),
                p["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let dpkg = tool(
        "dpkg-query",
        &[
            "-W",
            "-f=${db:Status-Abbrev}\t${Package}\t${Architecture}\t${Version}\n",
        ],
    );
    let mut installed = BTreeSet::new();
    let mut ii = 0;
    for line in dpkg.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        // Status-Abbrev: want, status, error flag. Status 'i' is installed whatever the want.
        if f[0].as_bytes().get(1) == Some(&b'i') {
            installed.insert((f[1].to_string(), f[2].to_string(), f[3].to_string()));
        }
        if f[0].starts_with("ii") {
            ii += 1;
        }
    }
    assert_eq!(ours, installed, "package set differs from dpkg-query");
    let held = installed.len() - ii;
    assert_eq!(
        ours.len(),
        ii + held,
        "count equals `dpkg-query ... | grep -c '^ii'` plus held packages ({held})"
    );
    assert!(
        sw.iter()
            .filter(|p| p["source"] == "dpkg")
            .all(|p| !p["install_date"].is_null()),
        "every dpkg package has its .list mtime"
    );
}

#[test]
fn dpkg_source_names_and_versions_match_dpkg_query() {
    let sw = data("software").as_array().unwrap();
    let ours: BTreeSet<(String, String, String, String)> = sw
        .iter()
        .filter(|p| p["source"] == "dpkg")
        .map(|p| {
            let name = p["name"].as_str().unwrap();
            let version = p["version"].as_str().unwrap();
            let (source, source_version) = match p["source_package"].as_str() {
                Some(s) => census_shared::schema::source_parts(s),
                None => (name, None),
            };
            (
                name.to_string(),
                p["arch"].as_str().unwrap_or("").to_string(),
                source.to_string(),
                source_version.unwrap_or(version).to_string(),
            )
        })
        .collect();
    let dpkg = tool(
        "dpkg-query",
        &[
            "-W",
            "-f=${db:Status-Abbrev}\t${Package}\t${Architecture}\t${source:Package}\t${source:Version}\n",
        ],
    );
    let theirs: BTreeSet<(String, String, String, String)> = dpkg
        .lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|f| f[0].as_bytes().get(1) == Some(&b'i'))
        .map(|f| (f[1].into(), f[2].into(), f[3].into(), f[4].into()))
        .collect();
    assert_eq!(ours, theirs, "source packages differ from dpkg-query's");
}

#[test]
fn macs_match_ip_link() {
    let mut theirs = BTreeSet::new();
    for line in tool("ip", &["-o", "link"]).lines() {
        let name = line
            .split(':')
            .nth(1)
            .unwrap()
            .trim()
            .split('@')
            .next()
            .unwrap()
            .to_string();
        if let Some(rest) = line.split("link/ether ").nth(1) {
            theirs.insert((name, rest.split_whitespace().next().unwrap().to_string()));
        }
    }
    let ours: BTreeSet<(String, String)> = data("network_interfaces")
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| {
            Some((
                n["name"].as_str()?.to_string(),
                n["mac"].as_str()?.to_string(),
            ))
        })
        .collect();
    assert_eq!(ours, theirs);
}

#[test]
fn addresses_match_ip_addr() {
    let mut theirs = BTreeSet::new();
    for line in tool("ip", &["-o", "addr"]).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (name, family, cidr) = (f[1], f[2], f[3]);
        let scope = f
            .iter()
            .position(|w| *w == "scope")
            .map(|i| f[i + 1])
            .unwrap_or("");
        theirs.insert((
            name.to_string(),
            if family == "inet" { "ipv4" } else { "ipv6" }.to_string(),
            cidr.to_string(),
            scope.to_string(),
        ));
    }
    let mut ours = BTreeSet::new();
    for nic in data("network_interfaces").as_array().unwrap() {
        for a in nic["addresses"].as_array().unwrap() {
            ours.insert((
                nic["name"].as_str().unwrap().to_string(),
                a["family"].as_str().unwrap().to_string(),
                format!("{}/{}", a["address"].as_str().unwrap(), a["prefix"]),
                a["scope"].as_str().unwrap().to_string(),
            ));
        }
    }
    assert_eq!(ours, theirs);
}

#[test]
fn default_route_matches_ip_route() {
    let route = tool("ip", &["-o", "-4", "route", "show", "default"]);
    let theirs: BTreeSet<String> = route
        .lines()
        .filter_map(|l| l.split(" dev ").nth(1))
        .map(|r| r.split_whitespace().next().unwrap().to_string())
        .collect();
    let ours: BTreeSet<String> = data("network_interfaces")
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| {
            n["default_route"] == true && n["gateway"].as_str().is_some_and(|g| g.contains('.'))
        })
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ours, theirs);
}

#[test]
fn block_devices_match_lsblk() {
    let theirs: BTreeSet<(String, u64)> = tool("lsblk", &["-dnb", "-o", "NAME,SIZE"])
        .lines()
        .map(|l| {
            let mut f = l.split_whitespace();
            (
                f.next().unwrap().to_string(),
                f.next().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let ours: BTreeSet<(String, u64)> = data("disks")
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_string(),
                d["size_bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ours, theirs);
}

#[test]
fn machine_id_matches() {
    let expected = std::fs::read_to_string("/etc/machine-id")
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(
        data("system")["machine_id"].as_str(),
        Some(expected.as_str())
    );
}

#[test]
fn virtualization_matches_systemd_detect_virt() {
    let none_is_null = |s: String| {
        let s = s.trim().to_string();
        if s == "none" || s.is_empty() {
            Value::Null
        } else {
            Value::String(s)
        }
    };
    let vm = none_is_null(tool("systemd-detect-virt", &["--vm"]));
    let ct = none_is_null(tool("systemd-detect-virt", &["--container"]));
    let system = data("system");
    assert_eq!(system["virtualization"], vm, "--vm");
    assert_eq!(system["container"], ct, "--container");
}

#[test]
fn os_and_hostname_match() {
    let os = data("os");
    assert_eq!(
        os["hostname"].as_str().unwrap(),
        tool("hostname", &[]).trim()
    );
    assert_eq!(
        os["fqdn"].as_str().unwrap(),
        tool("hostname", &["-f"]).trim()
    );
    assert_eq!(os["arch"].as_str().unwrap(), tool("uname", &["-m"]).trim());
    assert_eq!(
        os["kernel_version"].as_str().unwrap(),
        tool("uname", &["-r"]).trim()
    );
    let release = std::fs::read_to_string("/etc/os-release").unwrap();
    let id = release
        .lines()
        .find_map(|l| l.strip_prefix("ID="))
        .unwrap()
        .trim_matches('"');
    assert_eq!(os["id"].as_str(), Some(id));
}

#[test]
fn users_match_passwd() {
    let theirs: BTreeSet<String> = tool("getent", &["passwd"])
        .lines()
        .filter_map(|l| l.split(':').next())
        .map(str::to_string)
        .collect();
    let ours: BTreeSet<String> = data("users")
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        ours.is_subset(&theirs),
        "local users are a subset of getent (which adds NSS users)"
    );
    let local: BTreeSet<String> = std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(':').next())
        .map(str::to_string)
        .collect();
    assert_eq!(ours, local);
}

#[test]
fn listening_tcp_ports_match_ss() {
    let theirs: BTreeSet<u16> = tool("ss", &["-Hltn"])
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|a| a.rsplit(':').next()?.parse().ok())
        .collect();
    let ours: BTreeSet<u16> = data("listening_ports")
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["protocol"] == "tcp")
        .map(|p| p["port"].as_u64().unwrap() as u16)
        .collect();
    assert_eq!(ours, theirs);
}

#[test]
fn every_section_is_accounted_for_and_valid() {
    let inv = inventory();
    let bytes = serde_json::to_vec(inv).unwrap();
    let snap = census_shared::wire::decode_snapshot_json(&bytes)
        .expect("the agent's own output passes the collector's limits");
    for (name, status) in [
        ("system", &snap.system.status),
        ("os", &snap.os.status),
        ("software", &snap.software.status),
    ] {
        assert_eq!(*status, census_shared::SectionStatus::Collected, "{name}");
    }
}

#[test]
fn sections_flag_selects_and_rejects() {
    let out = Command::new(env!("CARGO_BIN_EXE_census-agent"))
        .args(["inventory", "--format", "json", "--sections", "os,users"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["os"]["status"], "collected");
    assert_eq!(v["software"]["status"], "unsupported");
    assert_eq!(v["software"]["reason"], "not requested");
    let bad = Command::new(env!("CARGO_BIN_EXE_census-agent"))
        .args(["inventory", "--sections", "os,bogus"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown section 'bogus'"));
}
