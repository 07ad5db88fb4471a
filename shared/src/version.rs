//! Package-version ordering with the semantics of the package's own source: dpkg's
//! (epochs, `~` before anything, Debian revisions) for dpkg, RPM's `rpmvercmp` for rpm, and
//! a generic segment-wise order (RPM's algorithm on the bare version) for everything else.
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
    Generic,
}

impl VersionScheme {
    /// The scheme of a software record's `source` ("dpkg", "rpm", "snap", ...).
    pub fn for_source(source: &str) -> Self {
        match source {
            "dpkg" => VersionScheme::Dpkg,
            "rpm" => VersionScheme::Rpm,
            _ => VersionScheme::Generic,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            VersionScheme::Dpkg => "dpkg",
            VersionScheme::Rpm => "rpm",
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
        VersionScheme::Generic => generic(a, b),
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
    fn generic_is_numeric_segment_wise() {
        assert_eq!(compare(Generic, "121.0", "120.0.1"), Greater);
        assert_eq!(compare(Generic, "1.10", "1.9"), Greater);
        assert_eq!(compare(Generic, "1.0~beta", "1.0"), Less);
        assert_eq!(compare(Dpkg, "not a version!", "also bad!"), Greater);
    }
}
