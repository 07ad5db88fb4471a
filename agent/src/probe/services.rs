//! Services with their runtime state and start-up policy (systemd on Linux).

use std::collections::BTreeMap;

use census_shared::{Section, Service};

use super::ProbeError;

/// Parses `systemctl list-units --type=service --all --no-legend --plain --no-pager` and
/// `systemctl list-unit-files --type=service --no-legend --no-pager`.
pub fn parse_systemctl(units: &str, unit_files: &str) -> Vec<Service> {
    let mut enabled: BTreeMap<&str, &str> = BTreeMap::new();
    for line in unit_files.lines() {
        let mut f = line.split_whitespace();
        if let (Some(unit), Some(state)) = (f.next(), f.next()) {
            enabled.insert(unit, state);
        }
    }
    let mut out: BTreeMap<String, Service> = BTreeMap::new();
    for line in units.lines() {
        // A failed unit is prefixed with a marker ("●" or "*") in some versions.
        let line = line.trim_start_matches(['●', '*', ' ']);
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 || !f[0].ends_with(".service") {
            continue;
        }
        if f[1] == "not-found" {
            continue; // referenced by a dependency but not installed
        }
        let description = f[4..].join(" ");
        out.insert(
            f[0].to_string(),
            Service {
                name: f[0].to_string(),
                manager: "systemd".into(),
                state: f[2].to_string(),
                enabled: enabled.get(f[0]).map(|s| s.to_string()),
                description: (!description.is_empty()).then_some(description),
            },
        );
    }
    // Installed but never loaded units (disabled, not running) only appear in unit files.
    for (unit, state) in enabled {
        if unit.contains('@') && unit.ends_with("@.service") {
            continue; // templates are not services until instantiated
        }
        out.entry(unit.to_string()).or_insert_with(|| Service {
            name: unit.to_string(),
            manager: "systemd".into(),
            state: "inactive".into(),
            enabled: Some(state.to_string()),
            description: None,
        });
    }
    out.into_values().collect()
}

#[cfg(target_os = "linux")]
pub fn collect() -> Result<Section<Vec<Service>>, ProbeError> {
    // sd_booted(): systemd is the running service manager.
    if !std::path::Path::new("/run/systemd/system").is_dir() {
        return Ok(Section::unsupported(
            "no service manager running (systemd is not PID 1)",
        ));
    }
    let timeout = std::time::Duration::from_secs(20);
    let units = super::run_command(
        "systemctl",
        &[
            "list-units",
            "--type=service",
            "--all",
            "--no-legend",
            "--plain",
            "--no-pager",
        ],
        timeout,
    )?;
    let files = super::run_command(
        "systemctl",
        &[
            "list-unit-files",
            "--type=service",
            "--no-legend",
            "--no-pager",
        ],
        timeout,
    )?;
    Ok(Section::collected(parse_systemctl(&units, &files)))
}

#[cfg(target_os = "macos")]
pub fn collect() -> Result<Section<Vec<Service>>, ProbeError> {
    Ok(Section::unsupported(
        "launchd service probe not implemented",
    ))
}

#[cfg(target_os = "windows")]
pub fn collect() -> Result<Section<Vec<Service>>, ProbeError> {
    super::windows::collect_services()
}

#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
pub fn collect() -> Result<Section<Vec<Service>>, ProbeError> {
    Ok(Section::unsupported("no service probe for this platform"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemctl_units_and_files() {
        let units = "ssh.service loaded active running OpenBSD Secure Shell server\n● nginx.service loaded failed failed A high performance web server\nfoo.service not-found inactive dead foo.service\ncron.service loaded active running Regular background program processing daemon\n";
        let files = "ssh.service enabled enabled\nnginx.service enabled enabled\ncron.service enabled enabled\nrsync.service disabled enabled\ngetty@.service enabled enabled\n";
        let s = parse_systemctl(units, files);
        let names: Vec<&str> = s.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "cron.service",
                "nginx.service",
                "rsync.service",
                "ssh.service"
            ]
        );
        assert_eq!(s[1].state, "failed");
        assert_eq!(s[2].state, "inactive");
        assert_eq!(s[2].enabled.as_deref(), Some("disabled"));
        assert_eq!(
            s[3].description.as_deref(),
            Some("OpenBSD Secure Shell server")
        );
    }
}
