//! Migration from OCS Inventory and FusionInventory with their real agents (Debian's
//! `ocsinventory-agent` and `fusioninventory-agent`, which .ci/run installs): each writes
//! this machine's inventory locally, `census-collector import` reads it, and the CMDB holds
//! this machine with the package count `dpkg-query` reports, its MACs and its OS. Then the
//! Census agent takes the imported machine over, and imports of it are skipped.

use std::collections::BTreeSet;
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
