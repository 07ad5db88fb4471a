//! macOS parsers (platform-neutral, tested here on fixtures) and their thin acquisition.
//!
//! Sources: `system_profiler -json SPHardwareDataType SPSoftwareDataType` for identity and
//! OS, `system_profiler -json SPApplicationsDataType` for applications, and
//! `pkgutil --pkg-info` for installer receipts (which record a real install time).

use census_shared::identity::meaningful;
use census_shared::{Os, Software, System};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::ProbeError;

fn first_item<'a>(doc: &'a Value, key: &str) -> Option<&'a Value> {
    doc.get(key)?.as_array()?.first()
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// System identity from SPHardwareDataType.
pub fn parse_hardware(json: &str) -> Result<System, ProbeError> {
    let doc: Value = serde_json::from_str(json)
        .map_err(|e| ProbeError::Parse(format!("system_profiler: {e}")))?;
    let hw = first_item(&doc, "SPHardwareDataType")
        .ok_or_else(|| ProbeError::Parse("system_profiler: no SPHardwareDataType".into()))?;
    let model_id = text(hw, "machine_model");
    Ok(System {
        vendor: Some("Apple Inc.".into()),
        model: model_id.clone().or_else(|| text(hw, "machine_name")),
        family: text(hw, "machine_name"),
        serial: meaningful(text(hw, "serial_number").as_deref()),
        uuid: meaningful(text(hw, "platform_UUID").as_deref()).map(|u| u.to_ascii_lowercase()),
        sku: text(hw, "model_number"),
        bios_version: text(hw, "boot_rom_version"),
        machine_id: meaningful(text(hw, "provisioning_UDID").as_deref()),
        chassis_type: text(hw, "machine_name").map(|n| {
            if n.contains("Book") {
                "Laptop".to_string()
            } else {
                "Desktop".to_string()
            }
        }),
        ..Default::default()
    })
}

/// OS facts from SPSoftwareDataType: "macOS 14.2.1 (23C71)", "Darwin 23.2.0".
pub fn parse_software_overview(json: &str) -> Result<Os, ProbeError> {
    let doc: Value = serde_json::from_str(json)
        .map_err(|e| ProbeError::Parse(format!("system_profiler: {e}")))?;
    let sw = first_item(&doc, "SPSoftwareDataType")
        .ok_or_else(|| ProbeError::Parse("system_profiler: no SPSoftwareDataType".into()))?;
    let os_version = text(sw, "os_version").unwrap_or_default();
    let (name_version, build) = match os_version.rsplit_once(" (") {
        Some((nv, b)) => (nv.to_string(), Some(b.trim_end_matches(')').to_string())),
        None => (os_version.clone(), None),
    };
    let (name, version) = match name_version.rsplit_once(' ') {
        Some((n, v)) => (n.to_string(), Some(v.to_string())),
        None => (name_version.clone(), None),
    };
    let kernel = text(sw, "kernel_version");
    let (kernel_name, kernel_version) = match kernel.as_deref().and_then(|k| k.split_once(' ')) {
        Some((n, v)) => (Some(n.to_string()), Some(v.to_string())),
        None => (kernel.clone(), None),
    };
    Ok(Os {
        family: "macos".into(),
        name: Some(name),
        id: Some("macos".into()),
        version_id: version.clone(),
        version,
        build,
        kernel: kernel_name,
        kernel_version,
        hostname: text(sw, "local_host_name").unwrap_or_default(),
        ..Default::default()
    })
}

/// Publisher from a code-signing chain: "Developer ID Application: Mozilla Corporation (43AQ936H96)".
fn publisher_from_signature(app: &Value) -> Option<String> {
    let first = app.get("signed_by")?.as_array()?.first()?.as_str()?;
    if first == "Software Signing" {
        return Some("Apple Inc.".into());
    }
    let name = first.split_once(": ").map(|(_, n)| n).unwrap_or(first);
    let name = match name.rfind(" (") {
        Some(i) if name.ends_with(')') => &name[..i],
        _ => name,
    };
    Some(name.to_string())
}

/// Applications from SPApplicationsDataType. The bundle's lastModified is not an install
/// date, so none is reported.
pub fn parse_applications(json: &str) -> Result<Vec<Software>, ProbeError> {
    let doc: Value = serde_json::from_str(json)
        .map_err(|e| ProbeError::Parse(format!("system_profiler: {e}")))?;
    let apps = doc
        .get("SPApplicationsDataType")
        .and_then(Value::as_array)
        .ok_or_else(|| ProbeError::Parse("system_profiler: no SPApplicationsDataType".into()))?;
    Ok(apps
        .iter()
        .filter_map(|app| {
            let name = text(app, "_name")?;
            let arch = text(app, "arch_kind").map(|a| match a.as_str() {
                "arch_arm_i64" => "universal".to_string(),
                "arch_arm" => "arm64".to_string(),
                "arch_i64" => "x86_64".to_string(),
                other => other.trim_start_matches("arch_").to_string(),
            });
            Some(Software {
                name,
                version: text(app, "version").unwrap_or_default(),
                arch,
                publisher: publisher_from_signature(app),
                source: "macos-app".into(),
                source_package: text(app, "path"),
                installed_size_bytes: None,
                install_date: None,
            })
        })
        .collect())
}

/// Parses one or more `pkgutil --pkg-info` outputs separated by blank lines.
pub fn parse_pkgutil_info(text: &str) -> Vec<Software> {
    text.split("\n\n")
        .filter_map(|block| {
            let get = |k: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(": ")))
                    .map(|v| v.trim().to_string())
            };
            let id = get("package-id")?;
            Some(Software {
                name: id,
                version: get("version").unwrap_or_default(),
                arch: None,
                publisher: None,
                source: "pkgutil".into(),
                source_package: None,
                installed_size_bytes: None,
                install_date: get("install-time")
                    .and_then(|t| t.parse::<i64>().ok())
                    .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0)),
            })
        })
        .collect()
}

#[cfg(target_os = "macos")]
mod acquire {
    use super::*;
    use census_shared::Section;
    use std::time::Duration;

    const T: Duration = Duration::from_secs(60);

    pub fn collect_system() -> Result<Section<System>, ProbeError> {
        let json =
            super::super::run_command("system_profiler", &["-json", "SPHardwareDataType"], T)?;
        Ok(Section::collected(parse_hardware(&json)?))
    }

    pub fn collect_os() -> Result<Section<Os>, ProbeError> {
        let json =
            super::super::run_command("system_profiler", &["-json", "SPSoftwareDataType"], T)?;
        let mut os = parse_software_overview(&json)?;
        os.arch = std::env::consts::ARCH.to_string();
        if let Ok(h) = hostname::get() {
            os.hostname = h.to_string_lossy().into_owned();
        }
        Ok(Section::collected(os))
    }

    pub fn collect_applications() -> Result<Vec<Software>, ProbeError> {
        let json = super::super::run_command(
            "system_profiler",
            &["-json", "SPApplicationsDataType"],
            Duration::from_secs(120),
        )?;
        parse_applications(&json)
    }

    pub fn collect_pkgutil() -> Result<Vec<Software>, ProbeError> {
        let ids = super::super::run_command("pkgutil", &["--pkgs"], T)?;
        let mut all = String::new();
        for id in ids.lines().filter(|l| !l.trim().is_empty()) {
            if let Ok(info) = super::super::run_command("pkgutil", &["--pkg-info", id.trim()], T) {
                all.push_str(&info);
                all.push_str("\n\n");
            }
        }
        Ok(parse_pkgutil_info(&all))
    }
}

#[cfg(target_os = "macos")]
pub use acquire::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_and_software_overview() {
        let json = include_str!("../../fixtures/macos-system_profiler.json");
        let s = parse_hardware(json).unwrap();
        assert_eq!(s.model.as_deref(), Some("MacBookPro18,3"));
        assert_eq!(s.serial.as_deref(), Some("C02XYZ12ABCD"));
        assert_eq!(
            s.uuid.as_deref(),
            Some("8e4c3b1a-1234-5678-9abc-def012345678")
        );
        assert_eq!(s.chassis_type.as_deref(), Some("Laptop"));
        let os = parse_software_overview(json).unwrap();
        assert_eq!(os.name.as_deref(), Some("macOS"));
        assert_eq!(os.version.as_deref(), Some("14.2.1"));
        assert_eq!(os.build.as_deref(), Some("23C71"));
        assert_eq!(os.kernel_version.as_deref(), Some("23.2.0"));
        assert_eq!(os.hostname, "Alices-MacBook-Pro");
    }

    #[test]
    fn applications() {
        let apps =
            parse_applications(include_str!("../../fixtures/macos-applications.json")).unwrap();
        assert_eq!(apps.len(), 3);
        assert_eq!(apps[0].publisher.as_deref(), Some("Apple Inc."));
        assert_eq!(apps[1].name, "Firefox");
        assert_eq!(apps[1].publisher.as_deref(), Some("Mozilla Corporation"));
        assert_eq!(apps[1].arch.as_deref(), Some("universal"));
        assert_eq!(
            apps[2].version, "",
            "apps without a version keep an empty one"
        );
    }

    #[test]
    fn pkgutil() {
        let p = parse_pkgutil_info("package-id: com.apple.pkg.XProtectPayloads_10_15.16U4395\nversion: 2195\nvolume: /\nlocation: /\ninstall-time: 1702389012\n\npackage-id: org.python.Python.PythonFramework-3.12\nversion: 3.12.1\nvolume: /\nlocation: \ninstall-time: 1703000000\n");
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].version, "3.12.1");
        assert_eq!(p[0].install_date.unwrap().timestamp(), 1_702_389_012);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_hardware("{").is_err());
        assert!(parse_applications("{}").is_err());
    }
}
