//! Software titles: the publisher, product and category a package is known by, decided by
//! an ordered rule set kept as data (first match wins). Many packages roll into one title
//! (`postgresql-15` and `postgresql-16` are both PostgreSQL; `libssl3` and `openssl` are
//! OpenSSL), and a title's versions are its installs' versions in the package's own order.
//!
//! People edit a draft; a replay evaluates the draft over every product in the CMDB (a
//! preview when dry) and makes it the applied set. Reads always title with the applied set,
//! so an edit never changes a report until it is replayed.
//!
//! Architecture Invariant: pure. No store, no clock: [`Titler::title`] of the same facts
//! under the same rules is always the same title.

use chrono::{DateTime, Utc};
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

/// Most rules a rule set holds.
pub const MAX_RULES: usize = 1000;
/// Longest pattern of a rule.
pub const MAX_PATTERN_CHARS: usize = 500;
/// Longest publisher, product or category a rule writes (after its captures expand).
pub const MAX_VALUE_CHARS: usize = 200;
/// Compiled size a single pattern may reach: a pathological one is refused, not run.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// One rule: every pattern it has must match (case-insensitive regular expressions, found
/// anywhere unless anchored with `^` and `$`); the first rule that matches a product decides
/// its title. What a rule does not set falls back to the product's own facts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SoftwareRule {
    /// Matched against the package name. `set_*` values expand its captures: `$1`, `${v}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Matched against the publisher the agent reported (dpkg's Maintainer, the registry's
    /// Publisher, ...); a product without one never matches a rule that has this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    /// Matched against where the package came from: dpkg, rpm, apk, pacman, snap, flatpak,
    /// windows-registry, macos-app, pkgutil.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Matched against the source package (dpkg `Source:`, the rpm's SRPM name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_package: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_publisher: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_category: Option<String>,
}

/// The rule sets: the draft people edit and the one the CMDB is titled with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SoftwareRuleBook {
    pub draft: Vec<SoftwareRule>,
    pub applied: Vec<SoftwareRule>,
    /// Counts replays that applied a draft; 0 while the built-in rules were never replaced.
    pub version: u64,
    #[serde(default)]
    pub draft_updated_by: Option<String>,
    #[serde(default)]
    pub draft_updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub applied_by: Option<String>,
    #[serde(default)]
    pub applied_at: Option<DateTime<Utc>>,
}

impl Default for SoftwareRuleBook {
    fn default() -> Self {
        SoftwareRuleBook {
            draft: default_rules(),
            applied: default_rules(),
            version: 0,
            draft_updated_by: None,
            draft_updated_at: None,
            applied_by: None,
            applied_at: None,
        }
    }
}

/// What a product is known by before any rule: its name and what its packages say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductFacts {
    pub name: String,
    pub publisher: Option<String>,
    pub source: Option<String>,
    pub source_package: Option<String>,
}

/// What a product is known by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
pub struct Title {
    pub product: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The rule that decided it (1 for the first); none when no rule matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
}

struct CompiledRule {
    name: Option<Regex>,
    publisher: Option<Regex>,
    source: Option<Regex>,
    source_package: Option<Regex>,
    set_publisher: Option<String>,
    set_product: Option<String>,
    set_category: Option<String>,
}

/// A rule set ready to title products.
pub struct Titler {
    rules: Vec<CompiledRule>,
}

fn pattern(field: &str, p: &Option<String>) -> Result<Option<Regex>, String> {
    let Some(p) = p else {
        return Ok(None);
    };
    if p.trim().is_empty() {
        return Err(format!(
            "{field}: an empty pattern matches everything; leave it out instead"
        ));
    }
    if p.chars().count() > MAX_PATTERN_CHARS {
        return Err(format!(
            "{field}: longer than {MAX_PATTERN_CHARS} characters"
        ));
    }
    RegexBuilder::new(p)
        .case_insensitive(true)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map(Some)
        .map_err(|e| format!("{field}: not a valid pattern: {e}"))
}

fn value(field: &str, v: &Option<String>) -> Result<Option<String>, String> {
    let Some(v) = v else {
        return Ok(None);
    };
    if v.trim().is_empty() {
        return Err(format!(
            "{field}: empty; leave it out to keep the product's own"
        ));
    }
    if v.chars().count() > MAX_VALUE_CHARS {
        return Err(format!("{field}: longer than {MAX_VALUE_CHARS} characters"));
    }
    if v.chars().any(char::is_control) {
        return Err(format!("{field}: holds a control character"));
    }
    Ok(Some(v.clone()))
}

impl Titler {
    /// Compiles a rule set; the message names the rule (`rules[0]` for the first, as in the
    /// JSON people send) and its field.
    pub fn compile(rules: &[SoftwareRule]) -> Result<Titler, String> {
        if rules.len() > MAX_RULES {
            return Err(format!("rules: {} rules, at most {MAX_RULES}", rules.len()));
        }
        let mut compiled = Vec::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            let at = |f: &str| format!("rules[{i}].{f}");
            let c = CompiledRule {
                name: pattern(&at("name"), &r.name)?,
                publisher: pattern(&at("publisher"), &r.publisher)?,
                source: pattern(&at("source"), &r.source)?,
                source_package: pattern(&at("source_package"), &r.source_package)?,
                set_publisher: value(&at("set_publisher"), &r.set_publisher)?,
                set_product: value(&at("set_product"), &r.set_product)?,
                set_category: value(&at("set_category"), &r.set_category)?,
            };
            if c.name.is_none()
                && c.publisher.is_none()
                && c.source.is_none()
                && c.source_package.is_none()
            {
                return Err(format!(
                    "{}: matches nothing of its own (give name, publisher, source or source_package)",
                    at("name")
                ));
            }
            if c.set_publisher.is_none() && c.set_product.is_none() && c.set_category.is_none() {
                return Err(format!(
                    "{}: sets nothing (give set_publisher, set_product or set_category)",
                    at("set_product")
                ));
            }
            compiled.push(c);
        }
        Ok(Titler { rules: compiled })
    }

    pub fn title(&self, facts: &ProductFacts) -> Title {
        for (i, r) in self.rules.iter().enumerate() {
            let captures = match &r.name {
                Some(re) => match re.captures(&facts.name) {
                    Some(c) => Some(c),
                    None => continue,
                },
                None => None,
            };
            let holds = |re: &Option<Regex>, v: &Option<String>| match (re, v) {
                (None, _) => true,
                (Some(re), Some(v)) => re.is_match(v),
                (Some(_), None) => false,
            };
            if !holds(&r.publisher, &facts.publisher)
                || !holds(&r.source, &facts.source)
                || !holds(&r.source_package, &facts.source_package)
            {
                continue;
            }
            let expand = |template: &Option<String>| {
                let template = template.as_deref()?;
                let mut out = String::new();
                match &captures {
                    Some(c) => c.expand(template, &mut out),
                    None => out.push_str(template),
                }
                Some(bounded(out.trim())).filter(|s| !s.is_empty())
            };
            return Title {
                product: expand(&r.set_product).unwrap_or_else(|| own_product(facts)),
                publisher: expand(&r.set_publisher).or_else(|| own_publisher(facts)),
                category: expand(&r.set_category),
                rule: Some(i + 1),
            };
        }
        Title {
            product: own_product(facts),
            publisher: own_publisher(facts),
            category: None,
            rule: None,
        }
    }
}

fn bounded(s: &str) -> String {
    s.chars().take(MAX_VALUE_CHARS).collect()
}

/// Without a rule a package is known by its source package where it has one, which rolls a
/// library's binary packages into what the distribution ships (`libssl3` -> `openssl`).
fn own_product(facts: &ProductFacts) -> String {
    facts
        .source_package
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(&facts.name)
        .to_string()
}

/// The reported publisher without its mail address: dpkg's Maintainer is
/// `Name <address>`, and the address is not who publishes the software.
pub fn own_publisher(facts: &ProductFacts) -> Option<String> {
    let p = facts.publisher.as_deref()?;
    let name = match p.find('<') {
        Some(at) if p.trim_end().ends_with('>') => &p[..at],
        _ => p,
    };
    Some(bounded(name.trim())).filter(|s| !s.is_empty())
}

/// The rules a CMDB starts with: the titles most fleets hold, across the package formats
/// of Linux, the Windows registry and macOS bundles. People replace them as they see fit.
pub fn default_rules() -> Vec<SoftwareRule> {
    let rule = |name: &str, publisher: &str, product: &str, category: &str| SoftwareRule {
        name: Some(name.to_string()),
        set_publisher: Some(publisher.to_string()).filter(|s| !s.is_empty()),
        set_product: Some(product.to_string()).filter(|s| !s.is_empty()),
        set_category: Some(category.to_string()).filter(|s| !s.is_empty()),
        ..SoftwareRule::default()
    };
    vec![
        rule(
            r"^linux-(image|modules|headers)-",
            "Linux kernel organization",
            "Linux kernel",
            "operating-system",
        ),
        rule(
            r"^(mozilla )?firefox(-esr)?( \(.*\))?(\.app)?$",
            "Mozilla",
            "Mozilla Firefox",
            "browser",
        ),
        rule(
            r"^(mozilla )?thunderbird( \(.*\))?(\.app)?$",
            "Mozilla",
            "Mozilla Thunderbird",
            "mail-client",
        ),
        rule(
            r"^(google-chrome-(stable|beta|unstable)|google chrome(\.app)?)$",
            "Google",
            "Google Chrome",
            "browser",
        ),
        rule(
            r"^chromium(-browser)?(\.app)?$",
            "The Chromium Project",
            "Chromium",
            "browser",
        ),
        rule(
            r"^microsoft edge(\.app)?$|^microsoft-edge-",
            "Microsoft",
            "Microsoft Edge",
            "browser",
        ),
        rule(
            r"^(openssl|libssl\d[\d.]*(t64)?|libssl-dev|openssl-libs)$",
            "OpenSSL Project",
            "OpenSSL",
            "crypto-library",
        ),
        rule(
            r"^openssh(-server|-client|-sftp-server|-clients)?$",
            "OpenBSD Project",
            "OpenSSH",
            "remote-access",
        ),
        rule(
            r"^postgresql(-\d+|\d+-server|-server)?$",
            "PostgreSQL Global Development Group",
            "PostgreSQL",
            "database",
        ),
        rule(
            r"^(mariadb-server(-core)?(-\d+(\.\d+)?)?|mariadb)$",
            "MariaDB Foundation",
            "MariaDB",
            "database",
        ),
        rule(
            r"^mysql-(community-)?server(-core)?(-\d+(\.\d+)?)?$",
            "Oracle",
            "MySQL",
            "database",
        ),
        rule(r"^redis(-server)?$", "Redis", "Redis", "database"),
        rule(
            r"^nginx(-core|-full|-light|-extras)?$",
            "F5 NGINX",
            "nginx",
            "web-server",
        ),
        rule(
            r"^(apache2(-bin)?|httpd)$",
            "Apache Software Foundation",
            "Apache HTTP Server",
            "web-server",
        ),
        rule(
            r"^python(3(\.\d+)?)(-minimal)?$",
            "Python Software Foundation",
            "Python",
            "runtime",
        ),
        rule(
            r"^(openjdk-\d+-(jre|jdk)(-headless)?|java-\d+(\.\d+)*-openjdk(-headless|-devel)?)$",
            "OpenJDK",
            "OpenJDK",
            "runtime",
        ),
        rule(r"^nodejs$", "OpenJS Foundation", "Node.js", "runtime"),
        rule(
            r"^(docker\.io|docker-ce|moby-engine)$",
            "Docker",
            "Docker Engine",
            "container-runtime",
        ),
        rule(
            r"^containerd(\.io)?$",
            "CNCF",
            "containerd",
            "container-runtime",
        ),
        rule(r"^(sudo)$", "Todd C. Miller", "sudo", "system-tool"),
        rule(
            r"^microsoft visual c\+\+ \d{4}(-\d{4})? .*redistributable",
            "Microsoft",
            "Microsoft Visual C++ Redistributable",
            "runtime",
        ),
        rule(
            r"^microsoft (office|365)\b",
            "Microsoft",
            "Microsoft Office",
            "office",
        ),
        rule(r"^7-zip\b", "Igor Pavlov", "7-Zip", "utility"),
        rule(
            r"^(vlc|vlc media player(\.app)?)$",
            "VideoLAN",
            "VLC media player",
            "media",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(name: &str) -> ProductFacts {
        ProductFacts {
            name: name.into(),
            ..ProductFacts::default()
        }
    }

    fn titler() -> Titler {
        Titler::compile(&default_rules()).unwrap()
    }

    #[test]
    fn versioned_package_names_roll_into_one_title() {
        let t = titler();
        for n in ["postgresql-15", "postgresql-16", "postgresql15-server"] {
            assert_eq!(t.title(&facts(n)).product, "PostgreSQL", "{n}");
        }
        for n in [
            "linux-image-6.1.0-13-amd64",
            "linux-image-6.1.0-18-amd64",
            "linux-headers-6.1.0-18-common",
        ] {
            assert_eq!(t.title(&facts(n)).product, "Linux kernel", "{n}");
        }
        for n in ["openssl", "libssl3", "libssl3t64", "libssl1.1"] {
            let title = t.title(&facts(n));
            assert_eq!(title.product, "OpenSSL", "{n}");
            assert_eq!(title.category.as_deref(), Some("crypto-library"));
        }
        // The names Windows and macOS report.
        assert_eq!(
            t.title(&facts("Mozilla Firefox (x64 en-US)")).product,
            "Mozilla Firefox"
        );
        assert_eq!(t.title(&facts("Firefox.app")).product, "Mozilla Firefox");
        assert_eq!(
            t.title(&facts(
                "Microsoft Visual C++ 2015-2022 Redistributable (x64) - 14.36.32532"
            ))
            .product,
            "Microsoft Visual C++ Redistributable"
        );
    }

    #[test]
    fn without_a_rule_the_source_package_and_the_maintainers_name_stand() {
        let t = titler();
        let title = t.title(&ProductFacts {
            name: "libcurl4".into(),
            publisher: Some("Debian Curl Maintainers <team+curl@tracker.debian.org>".into()),
            source: Some("dpkg".into()),
            source_package: Some("curl".into()),
        });
        assert_eq!(
            title,
            Title {
                product: "curl".into(),
                publisher: Some("Debian Curl Maintainers".into()),
                category: None,
                rule: None,
            }
        );
        assert_eq!(t.title(&facts("zsh")).product, "zsh");
        // A publisher that is only an address keeps it: there is nothing else.
        assert_eq!(
            own_publisher(&ProductFacts {
                publisher: Some("<root@localhost>".into()),
                ..facts("x")
            }),
            None
        );
    }

    #[test]
    fn the_first_matching_rule_wins_and_captures_expand() {
        let rules = vec![
            SoftwareRule {
                name: Some(r"^python(?<v>3\.\d+)$".into()),
                set_product: Some("Python ${v}".into()),
                ..SoftwareRule::default()
            },
            SoftwareRule {
                name: Some("^python".into()),
                set_product: Some("Python (other)".into()),
                set_category: Some("runtime".into()),
                ..SoftwareRule::default()
            },
        ];
        let t = Titler::compile(&rules).unwrap();
        let title = t.title(&facts("python3.11"));
        assert_eq!(title.product, "Python 3.11");
        assert_eq!(title.rule, Some(1));
        assert_eq!(title.category, None);
        let title = t.title(&facts("Python3-venv"));
        assert_eq!(title.product, "Python (other)");
        assert_eq!(title.rule, Some(2));
    }

    #[test]
    fn every_pattern_of_a_rule_must_match() {
        let rules = vec![SoftwareRule {
            name: Some("^acme".into()),
            publisher: Some("^ACME Corp".into()),
            source: Some("^windows-registry$".into()),
            set_publisher: Some("ACME".into()),
            ..SoftwareRule::default()
        }];
        let t = Titler::compile(&rules).unwrap();
        let mut f = ProductFacts {
            name: "Acme Agent 4.2".into(),
            publisher: Some("acme corp.".into()),
            source: Some("windows-registry".into()),
            source_package: None,
        };
        assert_eq!(t.title(&f).publisher.as_deref(), Some("ACME"));
        assert_eq!(t.title(&f).product, "Acme Agent 4.2");
        f.source = Some("dpkg".into());
        assert_eq!(t.title(&f).rule, None);
        f.source = Some("windows-registry".into());
        f.publisher = None;
        assert_eq!(
            t.title(&f).rule,
            None,
            "no publisher never matches a publisher pattern"
        );
    }

    #[test]
    fn bad_rules_are_refused_naming_the_rule_and_field() {
        let refuse = |r: SoftwareRule| Titler::compile(&[r]).err().unwrap_or_default();
        assert!(refuse(SoftwareRule {
            name: Some("(".into()),
            set_product: Some("x".into()),
            ..SoftwareRule::default()
        })
        .starts_with("rules[0].name: not a valid pattern"));
        assert!(refuse(SoftwareRule {
            set_product: Some("x".into()),
            ..SoftwareRule::default()
        })
        .contains("matches nothing of its own"));
        assert!(refuse(SoftwareRule {
            name: Some("x".into()),
            ..SoftwareRule::default()
        })
        .contains("sets nothing"));
        assert!(refuse(SoftwareRule {
            name: Some("x".repeat(MAX_PATTERN_CHARS + 1)),
            set_product: Some("x".into()),
            ..SoftwareRule::default()
        })
        .contains("longer than"));
        assert!(refuse(SoftwareRule {
            name: Some("x".into()),
            set_product: Some("a\u{1b}[31m".into()),
            ..SoftwareRule::default()
        })
        .contains("rules[0].set_product: holds a control character"));
        // A pattern whose automaton would be huge is refused, not run.
        assert!(refuse(SoftwareRule {
            name: Some(r"\w{1000}\w{1000}\w{1000}".into()),
            set_product: Some("x".into()),
            ..SoftwareRule::default()
        })
        .contains("not a valid pattern"));
        let many = vec![
            SoftwareRule {
                name: Some("x".into()),
                set_product: Some("x".into()),
                ..SoftwareRule::default()
            };
            MAX_RULES + 1
        ];
        assert!(Titler::compile(&many).is_err());
    }

    #[test]
    fn expanded_values_are_bounded() {
        let rules = vec![SoftwareRule {
            name: Some("^(.*)$".into()),
            set_product: Some("$1$1$1".into()),
            ..SoftwareRule::default()
        }];
        let t = Titler::compile(&rules).unwrap();
        let long = "y".repeat(150);
        assert_eq!(
            t.title(&facts(&long)).product.chars().count(),
            MAX_VALUE_CHARS
        );
    }
}
