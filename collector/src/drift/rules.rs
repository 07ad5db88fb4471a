//! Rules as data: item patterns, noise rules, severity rules, planned-change scopes, and
//! their validation (a rule that can never match is refused with the field it names).

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::model::*;

/// `*` matches any run of characters, `?` one character; everything else literally.
/// Case-sensitive, like the package and attribute names it matches.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with one backtrack point: linear in practice, no recursion.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Where Linux's default ephemeral range (`net.ipv4.ip_local_port_range`) starts.
pub const EPHEMERAL_PORTS_FROM: u16 = 32768;

/// The port of a listening-port item (its key is "PROTOCOL ADDRESS PORT").
fn port_of(item: &ChangeItem) -> Option<u16> {
    if item.aspect != Aspect::Port {
        return None;
    }
    item.key.rsplit(' ').next()?.parse().ok()
}

impl ItemPattern {
    pub fn new(kind: &str, subject: &str) -> Self {
        ItemPattern {
            kind: kind.into(),
            subject: subject.into(),
            new: Default::default(),
            ports: None,
        }
    }

    pub fn matches(&self, item: &ChangeItem) -> bool {
        glob(&self.kind, item.kind.as_str())
            && glob(&self.subject, &item.subject)
            && self.ports.is_none_or(|range| {
                port_of(item).is_some_and(|port| (range.from..=range.to).contains(&port))
            })
            && self
                .new
                .iter()
                .all(|(k, v)| item.new.as_ref().and_then(|n| n.get(k)) == Some(v))
    }

    /// Refuses a pattern whose kind glob matches no item kind (a typo would silently
    /// match nothing). `field` names it in the error.
    pub fn validate(&self, field: &str) -> Result<(), String> {
        if let Some(r) = self.ports {
            if r.from > r.to {
                return Err(format!(
                    "{field}.ports: from ({}) is above to ({})",
                    r.from, r.to
                ));
            }
        }
        if self.kind.is_empty() || self.subject.is_empty() {
            return Err(format!(
                "{field}: kind and subject must not be empty (use \"*\")"
            ));
        }
        if self.kind.chars().count() > 200 || self.subject.chars().count() > 1000 {
            return Err(format!("{field}: pattern too long"));
        }
        if !ItemKind::ALL.iter().any(|k| glob(&self.kind, k.as_str())) {
            let kinds: Vec<&str> = ItemKind::ALL.iter().map(|k| k.as_str()).collect();
            return Err(format!(
                "{field}.kind: '{}' matches no item kind; kinds are {}",
                self.kind,
                kinds.join(", ")
            ));
        }
        Ok(())
    }
}

impl NoiseRule {
    /// A `computer` rule reaches all items of a computer's records; another class only the
    /// items about components of that class.
    pub fn applies_to(&self, item: &ChangeItem) -> bool {
        (self.class == CiClass::Computer || self.class == item.aspect.ci_class())
            && self.pattern.matches(item)
    }
}

impl SeverityRules {
    /// The first matching rule's severity. `service_criticality` is that of the most
    /// critical service the item's computer supports (None: it supports none).
    pub fn severity_of(&self, item: &ChangeItem, service_criticality: Option<u8>) -> Severity {
        self.rules
            .iter()
            .find(|r| {
                r.pattern.matches(item)
                    && r.service_criticality
                        .is_none_or(|at_most| service_criticality.is_some_and(|c| c <= at_most))
            })
            .map(|r| r.severity)
            .unwrap_or(self.default)
    }

    /// Whether any rule depends on the services a computer supports: only then does ingest
    /// work them out.
    pub fn uses_service_criticality(&self) -> bool {
        self.rules.iter().any(|r| r.service_criticality.is_some())
    }

    /// The shipped rules: kernel, OS, security-relevant packages, new listening ports and
    /// new login-capable users are high.
    pub fn defaults(now: DateTime<Utc>) -> Self {
        let rule = |kind: &str, subject: &str, severity| SeverityRule {
            pattern: ItemPattern::new(kind, subject),
            service_criticality: None,
            severity,
        };
        let mut rules = vec![
            rule("kernel_changed", "*", Severity::High),
            rule("os_*", "*", Severity::High),
        ];
        for pkg in [
            "openssl*",
            "libssl*",
            "openssh*",
            "sudo",
            "linux-image*",
            "kernel*",
            "libc6*",
            "glibc*",
            "systemd*",
            "polkit*",
            "policykit*",
            "pam*",
            "libpam*",
            "gnupg*",
            "ca-certificates*",
            "curl",
            "libcurl*",
            "tzdata",
        ] {
            rules.push(rule("software_*", pkg, Severity::High));
        }
        // A port in the kernel's ephemeral range is a client's or a short-lived process's,
        // not a service someone started: low. Every other new listening port is high.
        rules.push(SeverityRule {
            pattern: ItemPattern {
                ports: Some(PortRange {
                    from: EPHEMERAL_PORTS_FROM,
                    to: u16::MAX,
                }),
                ..ItemPattern::new("port_opened", "*")
            },
            service_criticality: None,
            severity: Severity::Low,
        });
        rules.push(rule("port_opened", "*", Severity::High));
        rules.push(SeverityRule {
            pattern: ItemPattern {
                kind: "user_added".into(),
                subject: "*".into(),
                new: [("login_shell".to_string(), json!(true))].into(),
                ports: None,
            },
            service_criticality: None,
            severity: Severity::High,
        });
        for (kind, severity) in [
            ("user_*", Severity::Medium),
            ("service_added", Severity::Medium),
            ("service_enabled", Severity::Medium),
            ("software_installed", Severity::Medium),
            ("software_removed", Severity::Medium),
            ("software_downgraded", Severity::Medium),
            ("disk_*", Severity::Medium),
            ("nic_added", Severity::Medium),
            ("nic_removed", Severity::Medium),
        ] {
            rules.push(rule(kind, "*", severity));
        }
        SeverityRules {
            rules,
            default: Severity::Low,
            updated_by: "census".into(),
            updated_at: now,
        }
    }
}

/// The noise rules a new store starts with: the Census agent's own version is not the
/// machine's configuration.
pub fn default_noise_rules(now: DateTime<Utc>) -> Vec<NoiseRule> {
    vec![NoiseRule {
        id: "noise_agent_version".into(),
        class: CiClass::Computer,
        pattern: ItemPattern::new("attribute_changed", "agent.version"),
        note: "the Census agent's own upgrades are not machine drift".into(),
        created_by: "census".into(),
        created_at: now,
    }]
}

/// An IPv4/IPv6 network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("'{text}' is not CIDR notation (address/prefix)"))?;
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{addr}' is not an IP address"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("'{prefix}' is not a prefix length 0..={max}"))?;
        Ok(Cidr { net, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// What a planned-change scope is checked against.
#[derive(Debug, Clone, Default)]
pub struct ScopeSubject {
    pub ci_id: String,
    pub hostnames: Vec<String>,
    pub addresses: Vec<IpAddr>,
    /// The criticality of the most critical service the computer supports, when any (and
    /// when a severity rule asks).
    pub service_criticality: Option<u8>,
}

impl PlanScope {
    pub fn validate(&self) -> Result<(), String> {
        if !self.all
            && self.ci_ids.is_empty()
            && self.subnets.is_empty()
            && self.hostnames.is_empty()
        {
            return Err("scope: give ci_ids, subnets, hostnames, or all: true".into());
        }
        for (i, s) in self.subnets.iter().enumerate() {
            Cidr::parse(s).map_err(|e| format!("scope.subnets[{i}]: {e}"))?;
        }
        Ok(())
    }

    pub fn covers(&self, who: &ScopeSubject) -> bool {
        self.all
            || self.ci_ids.contains(&who.ci_id)
            || self
                .subnets
                .iter()
                .any(|s| Cidr::parse(s).is_ok_and(|c| who.addresses.iter().any(|a| c.contains(*a))))
            || self
                .hostnames
                .iter()
                .any(|g| who.hostnames.iter().any(|h| glob(g, h)))
    }
}

impl PlannedChange {
    pub fn validate(&self) -> Result<(), String> {
        if self.title.trim().is_empty() || self.title.chars().count() > 500 {
            return Err("title: must be 1..=500 characters".into());
        }
        if self.window_end <= self.window_start {
            return Err("window_end: must be after window_start".into());
        }
        if self.allowed.is_empty() {
            return Err("allowed: list at least one item pattern".into());
        }
        for (i, p) in self.allowed.iter().enumerate() {
            p.validate(&format!("allowed[{i}]"))?;
        }
        self.scope.validate()
    }

    /// Open at `at` for `who`, and allowing `item`.
    pub fn authorizes(&self, at: DateTime<Utc>, who: &ScopeSubject, item: &ChangeItem) -> bool {
        self.state == PlannedState::Active
            && self.window_start <= at
            && at < self.window_end
            && self.scope.covers(who)
            && self.allowed.iter().any(|p| p.matches(item))
    }
}

/// The value a flap compares: what the thing is, not when it was (re)installed.
pub fn flap_identity(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "install_date")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {

    fn port_item(port: u16) -> ChangeItem {
        ChangeItem {
            kind: ItemKind::PortOpened,
            aspect: Aspect::Port,
            key: format!("tcp 0.0.0.0 {port}"),
            subject: format!("tcp/{port}"),
            old: None,
            new: Some(json!({"address": "0.0.0.0", "process": "x"})),
            severity: Severity::Low,
            suppressed: None,
            planned_change: None,
            review: None,
        }
    }

    #[test]
    fn a_criticality_rule_matches_only_computers_supporting_that_critical_a_service() {
        let mut rules = SeverityRules::defaults(Utc::now());
        rules.rules.insert(
            0,
            SeverityRule {
                pattern: ItemPattern::new("port_*", "*"),
                service_criticality: Some(2),
                severity: Severity::Medium,
            },
        );
        assert!(rules.uses_service_criticality());
        let ephemeral = port_item(40000);
        assert_eq!(
            rules.severity_of(&ephemeral, None),
            Severity::Low,
            "no service"
        );
        assert_eq!(
            rules.severity_of(&ephemeral, Some(3)),
            Severity::Low,
            "less critical"
        );
        assert_eq!(rules.severity_of(&ephemeral, Some(2)), Severity::Medium);
        assert_eq!(
            rules.severity_of(&ephemeral, Some(1)),
            Severity::Medium,
            "more critical"
        );
        assert!(!SeverityRules::defaults(Utc::now()).uses_service_criticality());
    }

    #[test]
    fn a_service_port_opening_is_high_and_an_ephemeral_one_low() {
        let rules = SeverityRules::defaults(Utc::now());
        for port in [22, 443, 4444, 8080, 32767] {
            assert_eq!(
                rules.severity_of(&port_item(port), None),
                Severity::High,
                "{port}"
            );
        }
        for port in [32768, 45678, 60999, 65535] {
            assert_eq!(
                rules.severity_of(&port_item(port), None),
                Severity::Low,
                "{port}"
            );
        }
        let backwards = ItemPattern {
            ports: Some(PortRange { from: 9000, to: 80 }),
            ..ItemPattern::new("port_opened", "*")
        };
        assert!(backwards.validate("rule").unwrap_err().contains("ports"));
    }

    use super::*;

    #[test]
    fn globs() {
        assert!(glob("openssl*", "openssl"));
        assert!(glob("openssl*", "openssl-dev"));
        assert!(!glob("openssl*", "libssl3"));
        assert!(glob("*ssl*", "libssl3"));
        assert!(glob("lib?", "libc"));
        assert!(!glob("lib?", "libc6"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
        // Pathological patterns stay fast (no exponential backtracking).
        let long = "a".repeat(5000);
        assert!(!glob("*a*a*a*a*a*a*a*b", &long));
    }

    #[test]
    fn cidr_containment() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8:1::5".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("10.0.0.0").is_err());
    }

    #[test]
    fn a_pattern_that_matches_no_kind_is_refused_by_name() {
        let e = ItemPattern::new("sofware_upgraded", "openssl")
            .validate("allowed[0]")
            .unwrap_err();
        assert!(e.starts_with("allowed[0].kind: 'sofware_upgraded'"), "{e}");
        ItemPattern::new("software_*", "openssl")
            .validate("x")
            .unwrap();
    }
}
