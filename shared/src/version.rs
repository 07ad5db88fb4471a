//! Package-version ordering with the semantics of the package's own source: dpkg's
//! (epochs, `~` before anything, Debian revisions) for dpkg, RPM's `rpmvercmp` for rpm,
//! apk-tools' for apk (`_rc1` before the release, `_p1` after it, `-r2` revisions), and a
//! generic segment-wise order (RPM's algorithm on the bare version) for everything else.
//!
//! Drift ("upgraded" vs "downgraded") and the query language ("openssl below 3.0.7") both
//! order versions through [`compare`], so they can never disagree.

use std::cmp::Ordering;
use std::str::FromStr;

/// Which ordering a version string follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionScheme {
    Dpkg,
    Rpm,
    Apk,
    Generic,
}

impl VersionScheme {
    /// The scheme of a software record's `source` ("dpkg", "rpm", "snap", ...).
    pub fn for_source(source: &str) -> Self {
        match source {
            "dpkg" => VersionScheme::Dpkg,
            // pacman's vercmp is rpmvercmp over epoch:version-release.
            "rpm" | "pacman" => VersionScheme::Rpm,
            "apk" => VersionScheme::Apk,
            _ => VersionScheme::Generic,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            VersionScheme::Dpkg => "dpkg",
            VersionScheme::Rpm => "rpm",
            VersionScheme::Apk => "apk",
            VersionScheme::Generic => "generic",
        }
    }
}

/// Orders two version strings under `scheme`. Total: a string dpkg cannot parse falls back
/// to the generic order rather than failing, because agents report what the machine has.
pub fn compare(scheme: VersionScheme, a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    match scheme {
        VersionScheme::Dpkg => {
            match (
                debversion::Version::from_str(a),
                debversion::Version::from_str(b),
            ) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => generic(a, b),
            }
        }
        VersionScheme::Rpm => rpm_version::rpm_evr_compare(a, b),
        VersionScheme::Apk => match (ApkVersion::parse(a), ApkVersion::parse(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => generic(a, b),
        },
        VersionScheme::Generic => generic(a, b),
    }
}

/// An apk version as apk-tools orders it: dot-separated numbers, an optional letter,
/// `_suffix[N]` parts, and a `-rN` package revision.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ApkVersion {
    numbers: Vec<u64>,
    /// 0 for none, else the letter's code: `1.2 < 1.2a < 1.2b`.
    letter: u32,
    /// (rank, number) per suffix; the end of the list ranks as a release (see `END`).
    suffixes: Vec<(u8, u64)>,
    revision: u64,
}

/// Where "no more suffixes" ranks: after alpha, beta, pre, rc; before cvs, svn, git, hg, p.
const END: u8 = 4;

impl ApkVersion {
    fn parse(text: &str) -> Option<ApkVersion> {
        let (rest, revision) = match text.rsplit_once("-r") {
            Some((v, r)) if !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()) => {
                (v, r.parse().ok()?)
            }
            _ => (text, 0),
        };
        // A `~hash` commit part orders nothing apk users rely on: ignored.
        let rest = rest.split('~').next()?;
        let mut parts = rest.split('_');
        let core = parts.next()?;
        let (digits, letter) = match core.chars().last() {
            Some(c) if c.is_ascii_lowercase() => (&core[..core.len() - 1], c as u32),
            _ => (core, 0),
        };
        let numbers = digits
            .split('.')
            .map(|n| {
                (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| n.parse().ok())
                    .flatten()
            })
            .collect::<Option<Vec<u64>>>()?;
        let mut suffixes = Vec::new();
        for part in parts {
            let at = part
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(part.len());
            let rank = match &part[..at] {
                "alpha" => 0,
                "beta" => 1,
                "pre" => 2,
                "rc" => 3,
                "cvs" => 5,
                "svn" => 6,
                "git" => 7,
                "hg" => 8,
                "p" => 9,
                _ => return None,
            };
            let number = if at == part.len() {
                0
            } else {
                part[at..].parse().ok()?
            };
            suffixes.push((rank, number));
        }
        suffixes.push((END, 0));
        Some(ApkVersion {
            numbers,
            letter,
            suffixes,
            revision,
        })
    }
}

fn generic(a: &str, b: &str) -> Ordering {
    rpm_version::Evr::new("0", a, "").cmp(&rpm_version::Evr::new("0", b, ""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;
    use VersionScheme::*;

    #[test]
    fn dpkg_semantics() {
        for (a, b, want) in [
            ("3.0.11-1~deb12u2", "3.0.11-1", Less),
            ("3.0.11-1~deb12u2", "3.0.13-1~deb12u1", Less),
            ("1:1.0", "2.0", Greater),
            ("2:9.0.1378-2", "2:9.0.1378-2", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0+b1", "1.0", Greater),
            ("6.1.0-18", "6.1.0-9", Greater),
            ("0.9", "0.10", Less),
        ] {
            assert_eq!(compare(Dpkg, a, b), want, "{a} vs {b}");
            assert_eq!(compare(Dpkg, b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn rpm_semantics() {
        for (a, b, want) in [
            ("1:3.0.7-24.el9", "3.0.7-25.el9", Greater),
            ("3.0.7-24.el9", "3.0.7-25.el9", Less),
            ("5.1.8-6.el9", "5.1.8-6.el9", Equal),
            ("1.0~rc1-1", "1.0-1", Less),
            ("1.0^git1-1", "1.0-1", Greater),
            ("2.10-1", "2.9-1", Greater),
        ] {
            assert_eq!(compare(Rpm, a, b), want, "{a} vs {b}");
            assert_eq!(compare(Rpm, b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn apk_semantics() {
        for (a, b, want) in [
            ("1.36.1-r15", "1.36.1-r2", Greater),
            ("1.36.1-r0", "1.36.1", Equal),
            ("3.1.4_rc1-r0", "3.1.4-r0", Less),
            ("3.1.4_p1-r0", "3.1.4-r9", Greater),
            ("1.0_alpha2", "1.0_beta1", Less),
            ("1.2a", "1.2", Greater),
            ("1.2a", "1.2b", Less),
            ("1.2.1", "1.2", Greater),
            ("1.10", "1.9", Greater),
            ("2.0_git20230101", "2.0_p1", Less),
        ] {
            assert_eq!(compare(Apk, a, b), want, "{a} vs {b}");
            assert_eq!(compare(Apk, b, a), want.reverse(), "{b} vs {a}");
        }
        // What apk does not parse still orders, generically.
        assert_eq!(
            compare(Apk, "weird!", "weird!!"),
            compare(Generic, "weird!", "weird!!")
        );
    }

    #[test]
    fn generic_is_numeric_segment_wise() {
        assert_eq!(compare(Generic, "121.0", "120.0.1"), Greater);
        assert_eq!(compare(Generic, "1.10", "1.9"), Greater);
        assert_eq!(compare(Generic, "1.0~beta", "1.0"), Less);
        assert_eq!(compare(Dpkg, "not a version!", "also bad!"), Greater);
    }
}
