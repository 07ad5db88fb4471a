//! Windows parsers (platform-neutral, tested here on fixtures) and their thin acquisition.
//!
//! Acquisition runs PowerShell and asks for JSON: the Uninstall registry keys (64-bit,
//! 32-bit WOW6432Node and per-user), Win32_ComputerSystemProduct and Win32_OperatingSystem.
//! PowerShell 5.1 and 7 serialise dates and enums differently; the parsers accept both.

use census_shared::identity::meaningful;
use census_shared::{Os, Service, Software, System};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use super::ProbeError;

/// The script whose output [`parse_uninstall_json`] reads.
pub const UNINSTALL_SCRIPT: &str = r#"$ErrorActionPreference='SilentlyContinue'; @('HKLM:\Software\Microsoft\Windows\CurrentVersion\Uninstall\*','HKLM:\Software\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall\*','HKCU:\Software\Microsoft\Windows\CurrentVersion\Uninstall\*') | ForEach-Object { Get-ItemProperty $_ } | Select-Object DisplayName,DisplayVersion,Publisher,InstallDate,EstimatedSize,SystemComponent,ParentKeyName,ReleaseType,PSPath | ConvertTo-Json -Compress"#;

/// ConvertTo-Json gives an object for one item and an array for several.
fn items(doc: &Value) -> Vec<&Value> {
    match doc {
        Value::Array(a) => a.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number(v: &Value, key: &str) -> Option<u64> {
    match v.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A PowerShell date: "/Date(1700000000000)/" (5.1) or ISO 8601 (7).
pub fn parse_ps_date(s: &str) -> Option<DateTime<Utc>> {
    if let Some(ms) = s.strip_prefix("/Date(").and_then(|r| r.strip_suffix(")/")) {
        let digits: String = ms
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '-')
            .collect();
        return DateTime::<Utc>::from_timestamp_millis(digits.parse().ok()?);
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Installed programs as Programs and Features lists them: entries with a DisplayName that
/// are not system components, updates or patches of another entry.
pub fn parse_uninstall_json(json: &str) -> Result<Vec<Software>, ProbeError> {
    let trimmed = json.trim();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let doc: Value = serde_json::from_str(trimmed)
        .map_err(|e| ProbeError::Parse(format!("uninstall registry JSON: {e}")))?;
    Ok(items(&doc)
        .into_iter()
        .filter_map(|e| {
            let name = text(e, "DisplayName")?;
            if number(e, "SystemComponent") == Some(1) || text(e, "ParentKeyName").is_some() {
                return None;
            }
            if let Some(rt) = text(e, "ReleaseType") {
                if ["Update", "Hotfix", "Security Update", "Service Pack"].contains(&rt.as_str()) {
                    return None;
                }
            }
            let path = text(e, "PSPath").unwrap_or_default();
            let arch = if path.contains("WOW6432Node") {
                "x86"
            } else {
                "x64"
            };
            let install_date = text(e, "InstallDate").and_then(|d| {
                NaiveDate::parse_from_str(&d, "%Y%m%d")
                    .ok()?
                    .and_hms_opt(0, 0, 0)
                    .map(|n| n.and_utc())
            });
            Some(Software {
                name,
                version: text(e, "DisplayVersion").unwrap_or_default(),
                arch: Some(arch.into()),
                publisher: text(e, "Publisher"),
                source: "windows-registry".into(),
                source_package: None,
                installed_size_bytes: number(e, "EstimatedSize").and_then(|k| k.checked_mul(1024)),
                install_date,
            })
        })
        .collect())
}

/// Identity from `Win32_ComputerSystemProduct` (IdentifyingNumber, Name, Vendor, UUID).
pub fn parse_computer_system_product(json: &str) -> Result<System, ProbeError> {
    let doc: Value = serde_json::from_str(json.trim())
        .map_err(|e| ProbeError::Parse(format!("Win32_ComputerSystemProduct: {e}")))?;
    let p = items(&doc)
        .into_iter()
        .next()
        .ok_or_else(|| ProbeError::Parse("Win32_ComputerSystemProduct: empty".into()))?;
    Ok(System {
        vendor: meaningful(text(p, "Vendor").as_deref()),
        model: meaningful(text(p, "Name").as_deref()),
        serial: meaningful(text(p, "IdentifyingNumber").as_deref()),
        uuid: meaningful(text(p, "UUID").as_deref()).map(|u| u.to_ascii_lowercase()),
        ..Default::default()
    })
}

/// OS facts from `Win32_OperatingSystem` (Caption, Version, BuildNumber, OSArchitecture,
/// CSName, LastBootUpTime).
pub fn parse_operating_system(json: &str) -> Result<Os, ProbeError> {
    let doc: Value = serde_json::from_str(json.trim())
        .map_err(|e| ProbeError::Parse(format!("Win32_OperatingSystem: {e}")))?;
    let o = items(&doc)
        .into_iter()
        .next()
        .ok_or_else(|| ProbeError::Parse("Win32_OperatingSystem: empty".into()))?;
    let arch = match text(o, "OSArchitecture").as_deref() {
        Some(a) if a.contains("ARM") => "aarch64",
        Some(a) if a.starts_with("64") => "x86_64",
        Some(a) if a.starts_with("32") => "x86",
        _ => "unknown",
    };
    let boot = o.get("LastBootUpTime").and_then(|v| match v {
        Value::String(s) => parse_ps_date(s),
        // PS 5.1 sometimes wraps CIM dates as {"value": "/Date(...)/", "DateTime": "..."}
        Value::Object(m) => m
            .get("value")
            .and_then(Value::as_str)
            .and_then(parse_ps_date),
        _ => None,
    });
    Ok(Os {
        family: "windows".into(),
        name: text(o, "Caption"),
        id: Some("windows".into()),
        version: text(o, "Version"),
        version_id: text(o, "Version"),
        build: text(o, "BuildNumber"),
        kernel: Some("NT".into()),
        kernel_version: text(o, "Version"),
        arch: arch.into(),
        hostname: text(o, "CSName").unwrap_or_default(),
        boot_time: boot,
        ..Default::default()
    })
}

/// Services from `Get-Service | Select Name,DisplayName,Status,StartType | ConvertTo-Json`.
pub fn parse_services(json: &str) -> Result<Vec<Service>, ProbeError> {
    let doc: Value = serde_json::from_str(json.trim())
        .map_err(|e| ProbeError::Parse(format!("Get-Service: {e}")))?;
    let status = |v: Option<&Value>| match v {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(1) => "stopped",
            Some(2) => "start-pending",
            Some(3) => "stop-pending",
            Some(4) => "running",
            Some(7) => "paused",
            _ => "unknown",
        }
        .to_string(),
        Some(Value::String(s)) => s.to_ascii_lowercase(),
        _ => "unknown".into(),
    };
    let start = |v: Option<&Value>| match v {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => Some("boot"),
            Some(1) => Some("system"),
            Some(2) => Some("auto"),
            Some(3) => Some("manual"),
            Some(4) => Some("disabled"),
            _ => None,
        }
        .map(str::to_string),
        Some(Value::String(s)) => Some(match s.as_str() {
            "Automatic" => "auto".to_string(),
            other => other.to_ascii_lowercase(),
        }),
        _ => None,
    };
    Ok(items(&doc)
        .into_iter()
        .filter_map(|s| {
            Some(Service {
                name: text(s, "Name")?,
                manager: "windows".into(),
                state: status(s.get("Status")),
                enabled: start(s.get("StartType")),
                description: text(s, "DisplayName"),
            })
        })
        .collect())
}

#[cfg(target_os = "windows")]
mod acquire {
    use super::*;
    use census_shared::{NetworkInterface, Section};
    use std::time::Duration;

    const T: Duration = Duration::from_secs(60);

    fn powershell(script: &str) -> Result<String, ProbeError> {
        Ok(super::super::run_command(
            "powershell.exe",
            &["-NoProfile", "-NonInteractive", "-Command", script],
            T,
        )?)
    }

    pub fn collect_system() -> Result<Section<System>, ProbeError> {
        let json = powershell("Get-CimInstance Win32_ComputerSystemProduct | Select-Object IdentifyingNumber,Name,Vendor,UUID | ConvertTo-Json -Compress")?;
        let mut system = parse_computer_system_product(&json)?;
        system.machine_id =
            powershell("(Get-ItemProperty 'HKLM:\\SOFTWARE\\Microsoft\\Cryptography').MachineGuid")
                .ok()
                .and_then(|g| meaningful(Some(g.trim())));
        Ok(Section::collected(system))
    }

    pub fn collect_os() -> Result<Section<Os>, ProbeError> {
        let json = powershell("Get-CimInstance Win32_OperatingSystem | Select-Object Caption,Version,BuildNumber,OSArchitecture,CSName,LastBootUpTime | ConvertTo-Json -Compress")?;
        Ok(Section::collected(parse_operating_system(&json)?))
    }

    pub fn collect_software() -> Result<Vec<Software>, ProbeError> {
        parse_uninstall_json(&powershell(UNINSTALL_SCRIPT)?)
    }

    pub fn collect_services() -> Result<Section<Vec<Service>>, ProbeError> {
        let json = powershell("Get-Service | Select-Object Name,DisplayName,Status,StartType | ConvertTo-Json -Compress")?;
        Ok(Section::collected(parse_services(&json)?))
    }

    pub fn collect_network() -> Result<Section<Vec<NetworkInterface>>, ProbeError> {
        Ok(Section::unsupported(
            "network interface probe not implemented on Windows",
        ))
    }
}

#[cfg(target_os = "windows")]
pub use acquire::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uninstall_keys() {
        let sw =
            parse_uninstall_json(include_str!("../../fixtures/windows-uninstall.json")).unwrap();
        let names: Vec<&str> = sw.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "Mozilla Firefox (x64 en-US)",
                "7-Zip 23.01",
                "Notepad++ (32-bit x86)"
            ]
        );
        assert_eq!(sw[0].install_date, None);
        assert_eq!(
            sw[1].install_date.unwrap().date_naive().to_string(),
            "2023-11-20"
        );
        assert_eq!(sw[1].installed_size_bytes, Some(5_789 * 1024));
        assert_eq!(sw[2].arch.as_deref(), Some("x86"));
    }

    #[test]
    fn single_object_is_one_item() {
        let sw =
            parse_uninstall_json(r#"{"DisplayName":"Only","DisplayVersion":"1","PSPath":"HKLM"}"#)
                .unwrap();
        assert_eq!(sw.len(), 1);
        assert!(parse_uninstall_json("").unwrap().is_empty());
        assert!(parse_uninstall_json("[{").is_err());
    }

    #[test]
    fn computer_system_product_and_os() {
        let s = parse_computer_system_product(r#"{"IdentifyingNumber":"5CG1234XYZ","Name":"HP EliteBook 840 G8 Notebook PC","Vendor":"HP","UUID":"4C4C4544-0042-3510-8051-B4C04F4E4B32"}"#).unwrap();
        assert_eq!(s.serial.as_deref(), Some("5CG1234XYZ"));
        assert_eq!(
            s.uuid.as_deref(),
            Some("4c4c4544-0042-3510-8051-b4c04f4e4b32")
        );
        let vm = parse_computer_system_product(r#"{"IdentifyingNumber":"To Be Filled By O.E.M.","Name":"System Product Name","Vendor":"System manufacturer","UUID":"03000200-0400-0500-0006-000700080009"}"#).unwrap();
        assert_eq!(
            (vm.serial, vm.model, vm.vendor, vm.uuid),
            (None, None, None, None)
        );
        let os =
            parse_operating_system(include_str!("../../fixtures/windows-os-ps51.json")).unwrap();
        assert_eq!(os.name.as_deref(), Some("Microsoft Windows 11 Pro"));
        assert_eq!(os.build.as_deref(), Some("22631"));
        assert_eq!(os.arch, "x86_64");
        assert_eq!(os.boot_time.unwrap().timestamp(), 1_700_000_000);
        let os7 = parse_operating_system(r#"{"Caption":"Microsoft Windows Server 2022 Standard","Version":"10.0.20348","BuildNumber":"20348","OSArchitecture":"64-bit","CSName":"SRV01","LastBootUpTime":"2023-11-14T22:13:20+00:00"}"#).unwrap();
        assert_eq!(os7.boot_time.unwrap().timestamp(), 1_700_000_000);
        assert_eq!(os7.hostname, "SRV01");
    }

    #[test]
    fn services_both_powershell_versions() {
        let s = parse_services(r#"[{"Name":"wuauserv","DisplayName":"Windows Update","Status":4,"StartType":3},{"Name":"Spooler","DisplayName":"Print Spooler","Status":"Stopped","StartType":"Automatic"}]"#).unwrap();
        assert_eq!(
            (s[0].state.as_str(), s[0].enabled.as_deref()),
            ("running", Some("manual"))
        );
        assert_eq!(
            (s[1].state.as_str(), s[1].enabled.as_deref()),
            ("stopped", Some("auto"))
        );
    }
}
