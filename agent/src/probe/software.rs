//! Installed software from every package manager present, each package tagged with its
//! source. Install dates come from the package manager's own data, never guessed.

#[cfg(target_os = "linux")]
use std::time::Duration;

use census_shared::{Section, Software};
use chrono::{DateTime, Utc};

use super::ProbeError;

#[cfg(target_os = "linux")]
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// One paragraph of a deb822-style file (`Key: value`, continuation lines start with space).
fn paragraphs(text: &str) -> impl Iterator<Item = Vec<(&str, &str)>> {
    text.split("\n\n").filter_map(|para| {
        let fields: Vec<(&str, &str)> = para
            .lines()
            .filter(|l| !l.starts_with(' ') && !l.starts_with('\t'))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        (!fields.is_empty()).then_some(fields)
    })
}

/// Parses /var/lib/dpkg/status; keeps packages whose status is `installed` (third word).
/// `install_date` is filled later from the `.list` files by [`dpkg_list_name`].
pub fn parse_dpkg_status(text: &str) -> Vec<Software> {
    let mut out = Vec::new();
    for fields in paragraphs(text) {
        let get = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .map(|(_, v)| *v)
        };
        let installed =
            get("Status").is_some_and(|s| s.split_whitespace().nth(2) == Some("installed"));
        let (Some(name), Some(version)) = (get("Package"), get("Version")) else {
            continue;
        };
        if !installed {
            continue;
        }
        let source_package = get("Source").and_then(|s| dpkg_source(s, name, version));
        out.push(Software {
            name: name.to_string(),
            version: version.to_string(),
            arch: get("Architecture").map(str::to_string),
            publisher: get("Maintainer").map(str::to_string),
            source: "dpkg".into(),
            source_package,
            installed_size_bytes: get("Installed-Size")
                .and_then(|v| v.parse::<u64>().ok())
                .and_then(|k| k.checked_mul(1024)),
            install_date: None,
        });
    }
    out
}

/// What of dpkg's `Source:` field a package keeps: the source name when it differs from
/// the package's, with the source version as dpkg writes it (`name (version)`) when that
/// differs from the package's version: vulnerability advisories are keyed by both.
fn dpkg_source(field: &str, name: &str, version: &str) -> Option<String> {
    let (source, source_version) = census_shared::schema::source_parts(field);
    let source_version = source_version.filter(|v| *v != version);
    match source_version {
        Some(v) => Some(format!("{source} ({v})")),
        None => (source != name && !source.is_empty()).then(|| source.to_string()),
    }
}

/// The name of the dpkg `.list` file for a package: multi-arch-same packages use
/// `name:arch.list`, the others `name.list`; callers try both.
pub fn dpkg_list_names(pkg: &Software) -> [String; 2] {
    let arch = pkg.arch.as_deref().unwrap_or("");
    [
        format!("{}:{arch}.list", pkg.name),
        format!("{}.list", pkg.name),
    ]
}

/// `rpm -qa --queryformat` used by the acquisition; the parser reads exactly these fields.
pub const RPM_QUERYFORMAT: &str =
    "%{NAME}\\t%{EPOCH}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\t%{VENDOR}\\t%{INSTALLTIME}\\t%{SIZE}\\t%{SOURCERPM}\\n";

pub fn parse_rpm_query(text: &str) -> Vec<Software> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 9 || f[0].is_empty() {
                return None;
            }
            let none = |v: &str| (!v.is_empty() && v != "(none)").then(|| v.to_string());
            let version = match none(f[1]) {
                Some(epoch) => format!("{epoch}:{}-{}", f[2], f[3]),
                None => format!("{}-{}", f[2], f[3]),
            };
            if f[0] == "gpg-pubkey" {
                return None; // imported signing keys are not software
            }
            let source_package = none(f[8]).map(|srpm| {
                // foo-1.2-3.el9.src.rpm -> foo
                let stem = srpm
                    .trim_end_matches(".src.rpm")
                    .trim_end_matches(".nosrc.rpm");
                let mut parts = stem.rsplitn(3, '-');
                parts.nth(2).unwrap_or(stem).to_string()
            });
            Some(Software {
                name: f[0].to_string(),
                version,
                arch: none(f[4]),
                publisher: none(f[5]),
                source: "rpm".into(),
                source_package: source_package.filter(|s| s != f[0]),
                installed_size_bytes: f[7].parse().ok(),
                install_date: f[6]
                    .parse::<i64>()
                    .ok()
                    .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0)),
            })
        })
        .collect()
}

/// Parses Alpine's /lib/apk/db/installed (one-letter keys). apk records no install time.
pub fn parse_apk_installed(text: &str) -> Vec<Software> {
    text.split("\n\n")
        .filter_map(|block| {
            let get = |k: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(':')))
                    .map(str::to_string)
            };
            let name = get("P")?;
            let origin = get("o");
            Some(Software {
                source_package: origin.filter(|o| *o != name),
                name,
                version: get("V")?,
                arch: get("A"),
                publisher: get("m"),
                source: "apk".into(),
                installed_size_bytes: get("I").and_then(|v| v.parse().ok()),
                install_date: None,
            })
        })
        .collect()
}

/// Parses one pacman `desc` file (`%KEY%` followed by value lines).
pub fn parse_pacman_desc(text: &str) -> Option<Software> {
    let mut current = "";
    let mut fields: Vec<(&str, &str)> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        if line.starts_with('%') && line.ends_with('%') && line.len() > 2 {
            current = &line[1..line.len() - 1];
        } else if !line.is_empty()
            && !current.is_empty()
            && !fields.iter().any(|(k, _)| *k == current)
        {
            fields.push((current, line));
        }
    }
    let get = |k: &str| {
        fields
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.to_string())
    };
    let name = get("NAME")?;
    Some(Software {
        source_package: get("BASE").filter(|b| *b != name),
        name,
        version: get("VERSION")?,
        arch: get("ARCH"),
        publisher: get("PACKAGER"),
        source: "pacman".into(),
        installed_size_bytes: get("SIZE").and_then(|v| v.parse().ok()),
        install_date: get("INSTALLDATE")
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0)),
    })
}

/// Parses `snap list --unicode=never --color=never`.
pub fn parse_snap_list(text: &str) -> Vec<Software> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let col = |name: &str| header.find(name);
    let (Some(v), Some(rev), Some(publ)) = (col("Version"), col("Rev"), col("Publisher")) else {
        return Vec::new();
    };
    let notes = col("Notes");
    lines
        .filter(|l| !l.trim().is_empty())
        .filter_map(|line| {
            let cell = |start: usize, end: Option<usize>| -> Option<String> {
                let end = end.unwrap_or(line.len()).min(line.len());
                line.get(start.min(end)..end)
                    .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
            };
            let name = cell(0, Some(v))?;
            let version = cell(v, Some(rev))?;
            if name.is_empty() || version.is_empty() {
                return None;
            }
            let publisher = cell(publ, notes)
                .map(|p| p.trim_end_matches('*').trim_end_matches('✓').to_string());
            Some(Software {
                name,
                version,
                arch: None,
                publisher: publisher.filter(|p| !p.is_empty() && p != "-"),
                source: "snap".into(),
                source_package: None,
                installed_size_bytes: None,
                install_date: None,
            })
        })
        .collect()
}

/// `flatpak list` columns used by the acquisition.
pub const FLATPAK_COLUMNS: &str = "--columns=application,version,branch,arch,origin";

/// Parses tab-separated `flatpak list --columns=application,version,branch,arch,origin`.
pub fn parse_flatpak_list(text: &str) -> Vec<Software> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').map(str::trim).collect();
            if f.len() < 5 || f[0].is_empty() || f[0] == "Application ID" {
                return None;
            }
            let version = if f[1].is_empty() { f[2] } else { f[1] };
            Some(Software {
                name: f[0].to_string(),
                version: version.to_string(),
                arch: Some(f[3].to_string()).filter(|a| !a.is_empty()),
                publisher: Some(f[4].to_string()).filter(|o| !o.is_empty()),
                source: "flatpak".into(),
                source_package: None,
                installed_size_bytes: None,
                install_date: None,
            })
        })
        .collect()
}

/// Which package managers produced data and which failed, so the section can say so.
#[derive(Default)]
struct Sources {
    packages: Vec<Software>,
    found: usize,
    errors: Vec<String>,
}

impl Sources {
    fn add(&mut self, result: Option<Result<Vec<Software>, ProbeError>>) {
        match result {
            None => {}
            Some(Ok(mut p)) => {
                self.found += 1;
                self.packages.append(&mut p);
            }
            Some(Err(e)) => {
                self.found += 1;
                self.errors.push(e.to_string());
            }
        }
    }
}

/// dpkg's database directory: `DPKG_ADMINDIR` as dpkg itself reads it (a chroot's or an
/// image's database), /var/lib/dpkg otherwise.
#[cfg(target_os = "linux")]
fn dpkg_admin_dir() -> std::path::PathBuf {
    std::env::var_os("DPKG_ADMINDIR")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("/var/lib/dpkg"))
}

#[cfg(target_os = "linux")]
fn dpkg() -> Option<Result<Vec<Software>, ProbeError>> {
    let admin = dpkg_admin_dir();
    let status = admin.join("status");
    if !status.exists() {
        return None;
    }
    Some(super::read_text(&status).map(|text| {
        let mut pkgs = parse_dpkg_status(&text);
        let info = admin.join("info");
        for p in &mut pkgs {
            p.install_date = dpkg_list_names(p).iter().find_map(|n| {
                let modified = std::fs::metadata(info.join(n))
                    .and_then(|m| m.modified())
                    .ok()?;
                Some(DateTime::<Utc>::from(modified))
            });
        }
        pkgs
    }))
}

#[cfg(target_os = "linux")]
fn tool_present(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

#[cfg(target_os = "linux")]
fn rpm() -> Option<Result<Vec<Software>, ProbeError>> {
    // rpm is installable on Debian without an rpm database; only a real database counts.
    let has_db = [
        "/var/lib/rpm/rpmdb.sqlite",
        "/var/lib/rpm/Packages",
        "/usr/lib/sysimage/rpm/rpmdb.sqlite",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists());
    if !has_db || !tool_present("rpm") {
        return None;
    }
    Some(
        super::run_command(
            "rpm",
            &["-qa", "--queryformat", RPM_QUERYFORMAT],
            COMMAND_TIMEOUT,
        )
        .map(|t| parse_rpm_query(&t))
        .map_err(Into::into),
    )
}

#[cfg(target_os = "linux")]
fn apk() -> Option<Result<Vec<Software>, ProbeError>> {
    let db = std::path::Path::new("/lib/apk/db/installed");
    db.exists()
        .then(|| super::read_text(db).map(|t| parse_apk_installed(&t)))
}

#[cfg(target_os = "linux")]
fn pacman() -> Option<Result<Vec<Software>, ProbeError>> {
    let dir = std::path::Path::new("/var/lib/pacman/local");
    let entries = std::fs::read_dir(dir).ok()?;
    let mut pkgs = Vec::new();
    for e in entries.flatten() {
        if let Ok(text) = std::fs::read_to_string(e.path().join("desc")) {
            pkgs.extend(parse_pacman_desc(&text));
        }
    }
    Some(Ok(pkgs))
}

#[cfg(target_os = "linux")]
fn snap() -> Option<Result<Vec<Software>, ProbeError>> {
    if !tool_present("snap") || !std::path::Path::new("/run/snapd.socket").exists() {
        return None;
    }
    Some(
        super::run_command(
            "snap",
            &["list", "--unicode=never", "--color=never"],
            COMMAND_TIMEOUT,
        )
        .map(|t| parse_snap_list(&t))
        .map_err(Into::into),
    )
}

#[cfg(target_os = "linux")]
fn flatpak() -> Option<Result<Vec<Software>, ProbeError>> {
    if !tool_present("flatpak") {
        return None;
    }
    Some(
        super::run_command("flatpak", &["list", FLATPAK_COLUMNS], COMMAND_TIMEOUT)
            .map(|t| parse_flatpak_list(&t))
            .map_err(Into::into),
    )
}

#[cfg(target_os = "linux")]
pub fn collect() -> Result<Section<Vec<Software>>, ProbeError> {
    let mut sources = Sources::default();
    for probe in [dpkg, rpm, apk, pacman, snap, flatpak] {
        sources.add(probe());
    }
    finish(sources)
}

/// A section is failed when every package manager present failed; a partial failure keeps
/// what worked but is still reported as failed so the collector never reads a missing
/// package manager's packages as uninstalled.
fn finish(sources: Sources) -> Result<Section<Vec<Software>>, ProbeError> {
    if sources.found == 0 {
        return Ok(Section::unsupported("no supported package manager found"));
    }
    if !sources.errors.is_empty() {
        return Ok(Section::failed(sources.errors.join("; ")));
    }
    Ok(Section::collected(sources.packages))
}

#[cfg(target_os = "macos")]
pub fn collect() -> Result<Section<Vec<Software>>, ProbeError> {
    let mut sources = Sources::default();
    sources.add(Some(super::macos::collect_applications()));
    sources.add(Some(super::macos::collect_pkgutil()));
    finish(sources)
}

#[cfg(target_os = "windows")]
pub fn collect() -> Result<Section<Vec<Software>>, ProbeError> {
    let mut sources = Sources::default();
    sources.add(Some(super::windows::collect_software()));
    finish(sources)
}

#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
pub fn collect() -> Result<Section<Vec<Software>>, ProbeError> {
    Ok(Section::unsupported("no software probe for this platform"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_keeps_installed_only() {
        let pkgs = parse_dpkg_status(include_str!("../../fixtures/dpkg-status"));
        let names: Vec<(&str, &str)> = pkgs
            .iter()
            .map(|p| (p.name.as_str(), p.arch.as_deref().unwrap()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("libc6", "amd64"),
                ("libc6", "i386"),
                ("openssl", "amd64"),
                ("vim", "amd64")
            ]
        );
        let ssl = &pkgs[2];
        assert_eq!(ssl.version, "3.0.11-1~deb12u2");
        assert_eq!(ssl.installed_size_bytes, Some(2291 * 1024));
        assert_eq!(ssl.source_package, None);
        assert_eq!(pkgs[0].source_package.as_deref(), Some("glibc"));
        assert_eq!(pkgs[3].version, "2:9.0.1378-2");
        assert_eq!(
            pkgs[3].source_package, None,
            "Source equal to the package is not repeated"
        );
        assert_eq!(dpkg_list_names(&pkgs[1])[0], "libc6:i386.list");
    }

    #[test]
    fn dpkg_source_keeps_the_source_version_where_it_differs() {
        // Read off this machine's /var/lib/dpkg/status (Debian 12).
        let status = "Package: bsdutils\nStatus: install ok installed\nVersion: 1:2.38.1-5+deb12u3\nSource: util-linux (2.38.1-5+deb12u3)\n\n\
Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b8\nSource: bash (5.2.15-2)\n\n\
Package: dmsetup\nStatus: install ok installed\nVersion: 2:1.02.185-2\nSource: lvm2 (2.03.16-2)\n\n\
Package: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u10\nSource: glibc\n\n\
Package: vim\nStatus: install ok installed\nVersion: 2:9.0.1378-2\nSource: vim (2:9.0.1378-2)\n";
        let sources: Vec<Option<String>> = parse_dpkg_status(status)
            .into_iter()
            .map(|p| p.source_package)
            .collect();
        assert_eq!(
            sources,
            [
                Some("util-linux (2.38.1-5+deb12u3)".to_string()),
                Some("bash (5.2.15-2)".into()),
                Some("lvm2 (2.03.16-2)".into()),
                Some("glibc".into()),
                None,
            ]
        );
    }

    #[test]
    fn installed_size_overflow_is_dropped_not_a_panic() {
        let pkgs = parse_dpkg_status("Package: big\nStatus: install ok installed\nVersion: 1\nInstalled-Size: 18446744073709551615\n");
        assert_eq!(pkgs[0].installed_size_bytes, None);
        let win = crate::probe::windows::parse_uninstall_json(
            r#"{"DisplayName":"Big","EstimatedSize":18446744073709551615,"PSPath":"HKLM"}"#,
        )
        .unwrap();
        assert_eq!(win[0].installed_size_bytes, None);
    }

    #[test]
    fn rpm_query_with_epoch_and_srpm() {
        let pkgs = parse_rpm_query(include_str!("../../fixtures/rpm-qa.txt"));
        assert_eq!(pkgs.len(), 3, "gpg-pubkey is dropped");
        assert_eq!(pkgs[0].name, "openssl-libs");
        assert_eq!(pkgs[0].version, "1:3.0.7-24.el9");
        assert_eq!(pkgs[0].source_package.as_deref(), Some("openssl"));
        assert_eq!(pkgs[0].install_date.unwrap().timestamp(), 1_700_000_000);
        assert_eq!(pkgs[1].version, "5.1.8-6.el9");
        assert_eq!(pkgs[1].source_package, None);
        assert_eq!(pkgs[2].arch.as_deref(), Some("noarch"));
    }

    #[test]
    fn apk_installed() {
        let text = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nS:383152\nI:622592\nT:the musl c library\no:musl\nm:Timo Teräs <timo.teras@iki.fi>\nt:1698306180\n\nC:Q1def=\nP:libcrypto3\nV:3.1.4-r1\nA:x86_64\nI:4157440\no:openssl\n\n";
        let pkgs = parse_apk_installed(text);
        assert_eq!(pkgs.len(), 2);
        assert_eq!(pkgs[0].source_package, None);
        assert_eq!(pkgs[1].source_package.as_deref(), Some("openssl"));
        assert_eq!(pkgs[1].installed_size_bytes, Some(4157440));
        assert!(pkgs.iter().all(|p| p.install_date.is_none()));
    }

    #[test]
    fn pacman_desc() {
        let p = parse_pacman_desc("%NAME%\nopenssl\n\n%VERSION%\n3.2.0-1\n\n%BASE%\nopenssl\n\n%ARCH%\nx86_64\n\n%INSTALLDATE%\n1701234567\n\n%PACKAGER%\nPierre Schmitz <pierre@archlinux.org>\n\n%SIZE%\n8234567\n\n%DEPENDS%\nglibc\nsh\n").unwrap();
        assert_eq!(p.name, "openssl");
        assert_eq!(p.version, "3.2.0-1");
        assert_eq!(p.install_date.unwrap().timestamp(), 1_701_234_567);
        assert_eq!(p.source_package, None);
        assert!(parse_pacman_desc("%VERSION%\n1\n").is_none());
    }

    #[test]
    fn snap_list() {
        let text = "Name      Version          Rev    Tracking       Publisher   Notes\ncore22    20231123         1033   latest/stable  canonical✓  base\nfirefox   120.0.1-1        3504   latest/stable  mozilla✓    -\nhello     2.10             42     latest/stable  someone     -\n";
        let p = parse_snap_list(text);
        assert_eq!(p.len(), 3);
        assert_eq!(p[1].name, "firefox");
        assert_eq!(p[1].version, "120.0.1-1");
        assert_eq!(p[1].publisher.as_deref(), Some("mozilla"));
        assert_eq!(p[2].publisher.as_deref(), Some("someone"));
    }

    #[test]
    fn flatpak_list() {
        let text = "org.mozilla.firefox\t121.0\tstable\tx86_64\tflathub\norg.gnome.Platform\t\t45\tx86_64\tflathub\n";
        let p = parse_flatpak_list(text);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].version, "121.0");
        assert_eq!(
            p[1].version, "45",
            "runtimes without a version fall back to the branch"
        );
    }

    #[test]
    fn partial_failure_is_reported_not_hidden() {
        let mut s = Sources::default();
        s.add(Some(Ok(vec![Software {
            name: "a".into(),
            ..Default::default()
        }])));
        s.add(Some(Err(ProbeError::Parse("rpm timed out".into()))));
        let section = finish(s).unwrap();
        assert_eq!(section.status, census_shared::SectionStatus::Failed);
        assert!(section.reason.unwrap().contains("rpm timed out"));
        assert_eq!(
            finish(Sources::default()).unwrap().status,
            census_shared::SectionStatus::Unsupported
        );
    }
}
