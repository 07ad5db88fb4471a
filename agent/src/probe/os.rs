//! Operating system: /etc/os-release, kernel, architecture, hostname, FQDN, timezone, boot.

use std::collections::BTreeMap;

use census_shared::{Os, Section};

use super::ProbeError;

/// Parses os-release(5): `KEY=value` lines, values optionally quoted with shell escapes.
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        map.insert(key.to_string(), unquote(raw.trim()));
    }
    map
}

fn unquote(raw: &str) -> String {
    let quote = raw.chars().next().filter(|c| *c == '"' || *c == '\'');
    let Some(q) = quote else {
        return raw.to_string();
    };
    let inner = raw.strip_prefix(q).unwrap_or(raw);
    let inner = inner.strip_suffix(q).unwrap_or(inner);
    if q == '\'' {
        return inner.to_string();
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Fills an [`Os`] from os-release fields and the other facts.
pub fn os_from_release(release: &BTreeMap<String, String>, family: &str) -> Os {
    let get = |k: &str| release.get(k).filter(|v| !v.is_empty()).cloned();
    Os {
        family: family.to_string(),
        name: get("NAME"),
        id: get("ID"),
        id_like: get("ID_LIKE")
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
        version: get("VERSION"),
        version_id: get("VERSION_ID"),
        codename: get("VERSION_CODENAME"),
        build: get("BUILD_ID"),
        ..Default::default()
    }
}

/// The zone name from an /etc/localtime symlink target ("/usr/share/zoneinfo/Europe/Paris").
pub fn timezone_from_link(target: &str) -> Option<String> {
    target
        .split_once("zoneinfo/")
        .map(|(_, zone)| {
            zone.trim_start_matches("posix/")
                .trim_start_matches("right/")
                .to_string()
        })
        .filter(|z| !z.is_empty())
}

/// Boot time from /proc/stat's `btime` line.
pub fn parse_btime(stat: &str) -> Option<i64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(unix)]
fn uname() -> Option<(String, String, String)> {
    // SAFETY: uname fills a zeroed struct; the fields are NUL-terminated C strings.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return None;
        }
        let s = |f: &[libc::c_char]| {
            std::ffi::CStr::from_ptr(f.as_ptr())
                .to_string_lossy()
                .into_owned()
        };
        Some((s(&u.sysname), s(&u.release), s(&u.machine)))
    }
}

/// The canonical name of this host as `hostname -f` gives it (getaddrinfo AI_CANONNAME).
#[cfg(unix)]
pub fn fqdn(hostname: &str) -> Option<String> {
    use std::ffi::{CStr, CString};
    let host = CString::new(hostname).ok()?;
    // SAFETY: hints is zeroed then set; the result list is freed exactly once below.
    unsafe {
        let mut hints: libc::addrinfo = std::mem::zeroed();
        hints.ai_flags = libc::AI_CANONNAME;
        hints.ai_family = libc::AF_UNSPEC;
        let mut res: *mut libc::addrinfo = std::ptr::null_mut();
        if libc::getaddrinfo(host.as_ptr(), std::ptr::null(), &hints, &mut res) != 0
            || res.is_null()
        {
            return None;
        }
        let name = (*res).ai_canonname;
        let out = (!name.is_null()).then(|| CStr::from_ptr(name).to_string_lossy().into_owned());
        libc::freeaddrinfo(res);
        out.filter(|n| !n.is_empty())
    }
}

#[cfg(target_os = "linux")]
pub fn collect() -> Result<Section<Os>, ProbeError> {
    let release_text =
        super::read_text("/etc/os-release").or_else(|_| super::read_text("/usr/lib/os-release"))?;
    let mut os = os_from_release(&parse_os_release(&release_text), "linux");
    if let Some((sysname, release, machine)) = uname() {
        os.kernel = Some(sysname);
        os.kernel_version = Some(release);
        os.arch = machine;
    }
    os.hostname = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .map_err(|e| ProbeError::Parse(format!("hostname: {e}")))?;
    os.fqdn = fqdn(&os.hostname);
    os.timezone = std::env::var("TZ")
        .ok()
        .filter(|t| !t.is_empty())
        .map(|t| t.trim_start_matches(':').to_string())
        .or_else(|| {
            std::fs::read_link("/etc/localtime")
                .ok()
                .and_then(|t| timezone_from_link(&t.to_string_lossy()))
        })
        .or_else(|| super::read_attr("/etc/timezone"));
    let btime = super::read_text("/proc/stat")
        .ok()
        .and_then(|s| parse_btime(&s));
    os.boot_time = btime.and_then(|b| chrono::DateTime::from_timestamp(b, 0));
    os.uptime_seconds = super::read_attr("/proc/uptime")
        .and_then(|u| {
            u.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|v| v as u64);
    Ok(Section::collected(os))
}

#[cfg(target_os = "macos")]
pub fn collect() -> Result<Section<Os>, ProbeError> {
    super::macos::collect_os()
}

#[cfg(target_os = "windows")]
pub fn collect() -> Result<Section<Os>, ProbeError> {
    super::windows::collect_os()
}

#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
pub fn collect() -> Result<Section<Os>, ProbeError> {
    Ok(Section::unsupported("no OS probe for this platform"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_os_release() {
        let text = include_str!("../../fixtures/os-release-debian12");
        let os = os_from_release(&parse_os_release(text), "linux");
        assert_eq!(os.name.as_deref(), Some("Debian GNU/Linux"));
        assert_eq!(os.id.as_deref(), Some("debian"));
        assert_eq!(os.version.as_deref(), Some("12 (bookworm)"));
        assert_eq!(os.version_id.as_deref(), Some("12"));
        assert_eq!(os.codename.as_deref(), Some("bookworm"));
    }

    #[test]
    fn rhel_like_with_quotes_and_escapes() {
        let text = "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID='9.3'\nPRETTY_NAME=\"Say \\\"hi\\\"\"\n# comment\nBAD LINE\n";
        let r = parse_os_release(text);
        assert_eq!(r["PRETTY_NAME"], "Say \"hi\"");
        let os = os_from_release(&r, "linux");
        assert_eq!(os.id_like, vec!["rhel", "centos", "fedora"]);
        assert_eq!(os.version_id.as_deref(), Some("9.3"));
    }

    #[test]
    fn timezone_and_btime() {
        assert_eq!(
            timezone_from_link("/usr/share/zoneinfo/Europe/Paris").as_deref(),
            Some("Europe/Paris")
        );
        assert_eq!(
            timezone_from_link("../usr/share/zoneinfo/posix/Etc/UTC").as_deref(),
            Some("Etc/UTC")
        );
        assert_eq!(timezone_from_link("/etc/foo"), None);
        assert_eq!(
            parse_btime("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
    }
}
