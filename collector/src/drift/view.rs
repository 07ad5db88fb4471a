//! The configuration view: a computer's configuration as facts keyed by (aspect, key),
//! built the same way from the stored state and from a reconciled snapshot, so the diff
//! between them is a plain keyed comparison. Lists the OS reports in any order (users,
//! ports, mounts, packages, NICs) become keyed facts, so order never shows up as change.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::model::*;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FactKey {
    pub aspect: Aspect,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    pub subject: String,
    pub value: Value,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigView {
    pub facts: BTreeMap<FactKey, Fact>,
}

/// Computer attributes that the view turns into keyed facts of their own, or that are
/// derived from other facts (the physical MAC set follows the NICs).
const EXPLODED: [&str; 8] = [
    "users.local",
    "ports.listening",
    "filesystems.mounts",
    "network.physical_macs",
    "os.name",
    "os.version",
    "os.version_id",
    "os.build",
];

impl ConfigView {
    fn put(&mut self, aspect: Aspect, key: String, subject: String, value: Value) {
        self.facts
            .insert(FactKey { aspect, key }, Fact { subject, value });
    }

    /// Builds the view from a computer's attributes, its live components and its
    /// `installs` edges (product id, discriminator, edge attributes).
    pub fn build<'a>(
        attributes: &Attributes,
        components: impl Iterator<Item = &'a Ci>,
        installs: impl Iterator<Item = (&'a RelKey, &'a Attributes)>,
    ) -> ConfigView {
        let mut v = ConfigView::default();
        for (k, val) in attributes {
            if !EXPLODED.contains(&k.as_str()) {
                v.put(Aspect::Attribute, k.clone(), k.clone(), val.clone());
            }
        }
        let os: serde_json::Map<String, Value> = ["name", "version", "version_id", "build"]
            .into_iter()
            .filter_map(|f| Some((f.to_string(), attributes.get(&format!("os.{f}"))?.clone())))
            .collect();
        if !os.is_empty() {
            let subject = os
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("operating system")
                .to_string();
            v.put(Aspect::Os, "os".into(), subject, Value::Object(os));
        }
        let listed = |name: &str| -> &[Value] {
            attributes
                .get(name)
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[])
        };
        for u in listed("users.local") {
            let name = u["name"].as_str().unwrap_or_default().to_string();
            v.put(Aspect::User, name.clone(), name, u.clone());
        }
        for p in listed("ports.listening") {
            let proto = p["protocol"].as_str().unwrap_or_default();
            let addr = p["address"].as_str().unwrap_or_default();
            let port = p["port"].as_u64().unwrap_or_default();
            let key = format!("{proto} {addr} {port}");
            v.put(
                Aspect::Port,
                key,
                format!("{proto}/{port}"),
                json!({"address": addr, "process": p["process"]}),
            );
        }
        for m in listed("filesystems.mounts") {
            let mp = m["mount_point"].as_str().unwrap_or_default().to_string();
            v.put(Aspect::Mount, mp.clone(), mp, m.clone());
        }
        for c in components.filter(|c| c.status != CiStatus::Retired) {
            let a = |f: &str| c.attributes.get(f).and_then(Value::as_str);
            let (aspect, key, subject) = match c.class {
                CiClass::Disk => (
                    Aspect::Disk,
                    a("serial")
                        .or(a("wwn"))
                        .or(a("device_name"))
                        .unwrap_or(&c.id),
                    a("device_name").unwrap_or(&c.name),
                ),
                CiClass::NetworkInterface => (
                    Aspect::Nic,
                    match (c.attributes.get("physical"), a("mac")) {
                        (Some(Value::Bool(true)), Some(mac)) => mac,
                        _ => a("name").unwrap_or(&c.id),
                    },
                    a("name").unwrap_or(&c.name),
                ),
                CiClass::IpAddress => (
                    Aspect::Ip,
                    a("address").unwrap_or(&c.name),
                    a("address").unwrap_or(&c.name),
                ),
                CiClass::Service => {
                    let key = format!(
                        "{}/{}",
                        a("manager").unwrap_or_default(),
                        a("name").unwrap_or(&c.name)
                    );
                    v.put(
                        Aspect::Service,
                        key,
                        a("name").unwrap_or(&c.name).to_string(),
                        Value::Object(c.attributes.clone().into_iter().collect()),
                    );
                    continue;
                }
                _ => continue,
            };
            v.put(
                aspect,
                key.to_string(),
                subject.to_string(),
                Value::Object(c.attributes.clone().into_iter().collect()),
            );
        }
        for (k, attrs) in installs {
            if k.kind != RelKind::Installs {
                continue;
            }
            let subject = attrs
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(&k.to)
                .to_string();
            v.put(
                Aspect::Software,
                format!("{}|{}", k.to, k.discriminator),
                subject,
                Value::Object(attrs.clone().into_iter().collect()),
            );
        }
        v
    }

    /// The computer's routable addresses, for planned-change scopes by subnet.
    pub fn addresses(&self) -> Vec<std::net::IpAddr> {
        self.facts
            .iter()
            .filter(|(k, _)| k.aspect == Aspect::Ip)
            .filter_map(|(k, _)| k.key.parse().ok())
            .collect()
    }

    pub fn attribute(&self, name: &str) -> Option<&Value> {
        self.facts
            .get(&FactKey {
                aspect: Aspect::Attribute,
                key: name.to_string(),
            })
            .map(|f| &f.value)
    }
}
