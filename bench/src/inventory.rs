//! The inventory the load tools send: this machine's real one (from the release agent),
//! made into many machines by changing what identifies it, and drifted by upgrading five
//! packages per round.
// Each load tool is its own binary and uses a different part of this module.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use census_shared::Snapshot;

/// `census-agent inventory --format json` from the agent binary in `bin`.
pub fn this_machine(bin: &Path) -> Result<Snapshot> {
    let out = Command::new(bin.join("census-agent"))
        .args(["inventory", "--format", "json"])
        .output()
        .with_context(|| format!("running {}", bin.join("census-agent").display()))?;
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Machine `i` in drift round `round` (0: as first seen; each later round moves five
/// packages to a new version).
pub fn vary(base: &Snapshot, i: usize, round: usize) -> Snapshot {
    let mut s = base.clone();
    if let Some(sys) = s.system.data_mut() {
        sys.machine_id = Some(format!("{:032x}", i + 1));
        sys.serial = Some(format!("BENCH-{i:06}"));
        sys.uuid = None;
    }
    if let Some(os) = s.os.data_mut() {
        os.hostname = format!("bench-{i:06}");
        os.fqdn = Some(format!("bench-{i:06}.example.com"));
    }
    if let Some(nics) = s.network_interfaces.data_mut() {
        for (n, nic) in nics.iter_mut().enumerate() {
            if nic.mac.is_some() {
                nic.mac = Some(format!(
                    "52:54:{:02x}:{:02x}:{:02x}:{:02x}",
                    n,
                    (i >> 16) & 0xff,
                    (i >> 8) & 0xff,
                    i & 0xff
                ));
            }
        }
    }
    // Drift: five packages move to a new version each round.
    if let Some(sw) = s.software.data_mut() {
        let len = sw.len().max(1);
        for k in 0..5.min(len) {
            let idx = (i * 7 + k * 131) % len;
            if round > 0 {
                sw[idx].version = format!("{}+bench{round}", sw[idx].version);
            }
        }
    }
    s
}
