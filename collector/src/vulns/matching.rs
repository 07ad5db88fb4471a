//! Whether an installed package is affected: the host's ecosystem release from its
//! os-release, the package by the name advisories are keyed by (the source package for
//! Debian, Ubuntu and Alpine), and OSV's range events evaluated in the package's own
//! version order.

use std::cmp::Ordering;

use census_shared::version::{compare, VersionScheme};

use crate::model::vuln::{Affected, Event};

/// The OSV ecosystem of an OS release (os-release `ID`, `VERSION_ID`, `VERSION`), or None
/// where no distribution database applies (Windows, macOS, an unknown distribution).
pub fn ecosystem(os_id: &str, version_id: &str, version: &str) -> Option<String> {
    let numbers: Vec<&str> = version_id.split('.').collect();
    let major = numbers
        .first()
        .copied()
        .filter(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()))?;
    Some(match os_id {
        "debian" => format!("Debian:{major}"),
        "ubuntu" => {
            let minor = numbers.get(1)?;
            if version.contains("LTS") {
                format!("Ubuntu:{major}.{minor}:LTS")
            } else {
                format!("Ubuntu:{major}.{minor}")
            }
        }
        "alpine" => format!("Alpine:v{major}.{}", numbers.get(1)?),
        "rocky" => format!("Rocky Linux:{major}"),
        "almalinux" => format!("AlmaLinux:{major}"),
        _ => return None,
    })
}

/// The version order an ecosystem's advisories use.
pub fn scheme(ecosystem: &str) -> VersionScheme {
    let name = ecosystem.split(':').next().unwrap_or_default();
    match name {
        "Debian" | "Ubuntu" => VersionScheme::Dpkg,
        "Rocky Linux" | "AlmaLinux" | "Red Hat" | "openSUSE" | "SUSE" => VersionScheme::Rpm,
        "Alpine" | "Wolfi" | "Chainguard" => VersionScheme::Apk,
        _ => VersionScheme::Generic,
    }
}

/// The package name and version an install is matched under: the source package where the
/// agent reported one, at the source version where dpkg gave one (`lvm2 (2.03.16-2)` for
/// `dmsetup 2:1.02.185-2`: the binary's own epoch and numbering are not the advisory's),
/// else the package's version with a dpkg binNMU suffix (`+b1`: a rebuild, same source)
/// dropped, for agents that did not report the source version.
pub fn source_of<'a>(
    name: &'a str,
    source_package: Option<&'a str>,
    version: &'a str,
    scheme: VersionScheme,
) -> (&'a str, &'a str) {
    let (package, source_version) = match source_package.map(census_shared::schema::source_parts) {
        Some((source, v)) if !source.is_empty() => (source, v),
        _ => (name, None),
    };
    let version = match source_version {
        Some(v) => v,
        None if scheme == VersionScheme::Dpkg => strip_binnmu(version),
        None => version,
    };
    (package, version)
}

fn strip_binnmu(version: &str) -> &str {
    if let Some(at) = version.rfind("+b") {
        let tail = &version[at + 2..];
        if !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit()) {
            return &version[..at];
        }
    }
    version
}

/// Whether `version` is affected by this entry: listed in `versions`, or inside a range.
/// A range is evaluated as the OSV schema says: events in version order (`introduced: 0`
/// first), affected from an `introduced` up to a `fixed` or `limit` (excluded) or a
/// `last_affected` (included).
pub fn affects(entry: &Affected, scheme: VersionScheme, version: &str) -> bool {
    if entry
        .versions
        .iter()
        .any(|v| compare(scheme, v, version) == Ordering::Equal)
    {
        return true;
    }
    entry
        .ranges
        .iter()
        .any(|events| in_range(events, scheme, version))
}

fn in_range(events: &[Event], scheme: VersionScheme, version: &str) -> bool {
    fn at(e: &Event) -> &str {
        match e {
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
        }
    }
    let zero = |e: &Event| matches!(e, Event::Introduced(v) if v == "0");
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by(|a, b| match (zero(a), zero(b)) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => compare(scheme, at(a), at(b)),
    });
    let mut affected = false;
    for e in sorted {
        match e {
            Event::Introduced(v) => {
                if v == "0" || compare(scheme, version, v) != Ordering::Less {
                    affected = true;
                }
            }
            Event::Fixed(v) | Event::Limit(v) => {
                if compare(scheme, version, v) != Ordering::Less {
                    affected = false;
                }
            }
            Event::LastAffected(v) => {
                if compare(scheme, version, v) == Ordering::Greater {
                    affected = false;
                }
            }
        }
    }
    affected
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(events: Vec<Event>, versions: &[&str]) -> Affected {
        Affected {
            ecosystem: "Debian:12".into(),
            package: "openssl".into(),
            ranges: if events.is_empty() {
                vec![]
            } else {
                vec![events]
            },
            versions: versions.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn ecosystems_from_os_release() {
        assert_eq!(
            ecosystem("debian", "12", "12 (bookworm)").as_deref(),
            Some("Debian:12")
        );
        assert_eq!(
            ecosystem("ubuntu", "22.04", "22.04.3 LTS (Jammy Jellyfish)").as_deref(),
            Some("Ubuntu:22.04:LTS")
        );
        assert_eq!(
            ecosystem("ubuntu", "23.10", "23.10 (Mantic Minotaur)").as_deref(),
            Some("Ubuntu:23.10")
        );
        assert_eq!(
            ecosystem("alpine", "3.18.4", "").as_deref(),
            Some("Alpine:v3.18")
        );
        assert_eq!(
            ecosystem("rocky", "9.3", "9.3 (Blue Onyx)").as_deref(),
            Some("Rocky Linux:9")
        );
        assert_eq!(
            ecosystem("debian", "", "trixie/sid"),
            None,
            "testing has no release number"
        );
        assert_eq!(ecosystem("windows", "11", ""), None);
    }

    #[test]
    fn fixed_at_or_below_the_installed_version_does_not_match_and_above_does() {
        use Event::*;
        let d = VersionScheme::Dpkg;
        let fixed = |v: &str| entry(vec![Introduced("0".into()), Fixed(v.into())], &[]);
        let installed = "3.0.11-1~deb12u2";
        assert!(
            !affects(&fixed("3.0.11-1~deb12u2"), d, installed),
            "fixed in this very version"
        );
        assert!(!affects(&fixed("3.0.9-1"), d, installed), "fixed long ago");
        assert!(
            affects(&fixed("3.0.13-1~deb12u1"), d, installed),
            "fixed later"
        );
        // Tildes sort before anything: 3.0.11-1~deb12u2 is older than 3.0.11-1.
        assert!(affects(&fixed("3.0.11-1"), d, installed));
        // Epochs outrank everything after them.
        assert!(affects(&fixed("1:1.0-1"), d, "9.9-1"));
        assert!(!affects(&fixed("1:1.0-1"), d, "1:1.0-1"));
        // introduced later than the installed version: not yet affected.
        let later = entry(
            vec![Introduced("3.1.0-1".into()), Fixed("3.1.4-1".into())],
            &[],
        );
        assert!(!affects(&later, d, installed));
        assert!(affects(&later, d, "3.1.2-1"));
        // last_affected is included, limit excluded.
        let last = entry(
            vec![
                Introduced("0".into()),
                LastAffected("3.0.11-1~deb12u2".into()),
            ],
            &[],
        );
        assert!(affects(&last, d, installed));
        assert!(!affects(&last, d, "3.0.11-1"));
        let limit = entry(
            vec![Introduced("0".into()), Limit("3.0.11-1~deb12u2".into())],
            &[],
        );
        assert!(!affects(&limit, d, installed));
        // Two introduced/fixed pairs: a hole between them.
        let twice = entry(
            vec![
                Fixed("1.2-1".into()),
                Introduced("0".into()),
                Introduced("2.0-1".into()),
                Fixed("2.3-1".into()),
            ],
            &[],
        );
        assert!(affects(&twice, d, "1.1-1"));
        assert!(!affects(&twice, d, "1.5-1"));
        assert!(affects(&twice, d, "2.1-1"));
        assert!(!affects(&twice, d, "2.3-1"));
        // Listed versions, compared in the package's order (an epoch of 0 is no epoch).
        let listed = entry(vec![], &["2.3.9-1", "2.3.9-1+deb12u1"]);
        assert!(affects(&listed, d, "0:2.3.9-1+deb12u1"));
        assert!(!affects(&listed, d, "2.3.9-1+deb12u2"));
        // Only introduced: everything from there on.
        let open = entry(vec![Introduced("0".into())], &[]);
        assert!(affects(&open, d, installed));
    }

    #[test]
    fn alpine_release_candidates_come_before_the_release() {
        let entry = Affected {
            ecosystem: "Alpine:v3.18".into(),
            package: "busybox".into(),
            ranges: vec![vec![
                Event::Introduced("0".into()),
                Event::Fixed("1.36.1-r2".into()),
            ]],
            versions: vec![],
        };
        let apk = scheme("Alpine:v3.18");
        assert!(affects(&entry, apk, "1.36.1-r0"));
        assert!(
            affects(&entry, apk, "1.36.1_rc1-r5"),
            "an rc precedes its release"
        );
        assert!(
            !affects(&entry, apk, "1.36.1-r15"),
            "r15 is above r2, not below it as text"
        );
        assert!(!affects(&entry, apk, "1.36.1_p1-r0"));
    }

    #[test]
    fn binary_packages_match_under_their_source_and_binnmus_under_the_source_version() {
        let d = VersionScheme::Dpkg;
        assert_eq!(
            source_of("libssl3", Some("openssl"), "3.0.11-1~deb12u2", d),
            ("openssl", "3.0.11-1~deb12u2")
        );
        assert_eq!(
            source_of("bash", None, "5.2.15-2+b8", d),
            ("bash", "5.2.15-2")
        );
        assert_eq!(
            source_of("x", None, "1.0+bzr12", d),
            ("x", "1.0+bzr12"),
            "not a binNMU"
        );
        assert_eq!(
            source_of("bash", None, "5.2.15-2+b8", VersionScheme::Rpm),
            ("bash", "5.2.15-2+b8")
        );
        // The source version where dpkg gave one: the binary's epoch is not the source's.
        assert_eq!(
            source_of("dmsetup", Some("lvm2 (2.03.16-2)"), "2:1.02.185-2", d),
            ("lvm2", "2.03.16-2")
        );
        assert_eq!(
            source_of(
                "bsdutils",
                Some("util-linux (2.38.1-5+deb12u3)"),
                "1:2.38.1-5+deb12u3",
                d
            ),
            ("util-linux", "2.38.1-5+deb12u3")
        );
        assert_eq!(
            source_of("bash", Some("bash (5.2.15-2)"), "5.2.15-2+b8", d),
            ("bash", "5.2.15-2")
        );
    }
}
