//! The configuration view: a computer's configuration as facts keyed by (aspect, key),
//! built the same way from the stored state and from a reconciled snapshot, so the diff
//! between them is a plain keyed comparison. Lists the OS reports in any order (users,
//! ports, mounts, packages, NICs) become keyed facts, so order never shows up as change.
//!
//! A view borrows from the state it was built from: building one for a 2,000-package
//! machine must not copy 2,000 attribute maps (it runs on every changed snapshot).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::model::*;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FactKey<'a> {
    pub aspect: Aspect,
    pub key: Cow<'a, str>,
}

/// A fact's value: an attribute map, an install, or a JSON value, borrowed where possible.
#[derive(Debug, Clone)]
pub enum FactValue<'a> {
    Attrs(&'a Attributes),
    Install(&'a Install),
    Json(Cow<'a, Value>),
}

impl FactValue<'_> {
    pub fn to_value(&self) -> Value {
        match self {
            FactValue::Attrs(a) => {
                Value::Object(a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            }
            FactValue::Install(i) => Value::Object(i.attributes().into_iter().collect()),
            FactValue::Json(v) => v.clone().into_owned(),
        }
    }
}

impl PartialEq for FactValue<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            // The hot comparison: every package of a computer on every changed snapshot.
            // Packages of one variant share one allocation, so most compare by pointer.
            (FactValue::Install(a), FactValue::Install(b)) => {
                a.installed_at == b.installed_at
                    && (std::sync::Arc::ptr_eq(&a.package, &b.package)
                        || same_build(&a.package, &b.package))
            }
            (FactValue::Install(_), _) | (_, FactValue::Install(_)) => {
                self.to_value() == other.to_value()
            }
            (FactValue::Attrs(a), FactValue::Attrs(b)) => a == b,
            (FactValue::Json(a), FactValue::Json(b)) => a == b,
            (FactValue::Attrs(a), FactValue::Json(v))
            | (FactValue::Json(v), FactValue::Attrs(a)) => match v.as_ref() {
                Value::Object(m) => {
                    m.len() == a.len() && a.iter().all(|(k, x)| m.get(k) == Some(x))
                }
                _ => false,
            },
        }
    }
}

/// One package build: what decides it is its name, version, architecture, origin and
/// publisher. Its source package is the build's metadata, so a change in that alone is a
/// change in how an agent reports it (agents that began reporting dpkg's source version),
/// not in the machine.
fn same_build(a: &crate::model::Package, b: &crate::model::Package) -> bool {
    (&a.name, &a.version, &a.arch, &a.source, &a.publisher)
        == (&b.name, &b.version, &b.arch, &b.source, &b.publisher)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fact<'a> {
    pub subject: Cow<'a, str>,
    pub value: FactValue<'a>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigView<'a> {
    pub facts: BTreeMap<FactKey<'a>, Fact<'a>>,
}

/// Computer attributes that the view turns into keyed facts of their own, or that are
/// derived from other facts (the physical MAC set follows the NICs).
const EXPLODED: [&str; 9] = [
    "network.addresses",
    "users.local",
    "ports.listening",
    "filesystems.mounts",
    "network.physical_macs",
    "os.name",
    "os.version",
    "os.version_id",
    "os.build",
];

fn text(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str)
}

impl<'a> ConfigView<'a> {
    fn put(
        &mut self,
        aspect: Aspect,
        key: impl Into<Cow<'a, str>>,
        subject: impl Into<Cow<'a, str>>,
        value: FactValue<'a>,
    ) {
        self.facts.insert(
            FactKey {
                aspect,
                key: key.into(),
            },
            Fact {
                subject: subject.into(),
                value,
            },
        );
    }

    /// Builds the view from a computer's attributes, its live components and its installs.
    pub fn build(
        attributes: &'a Attributes,
        components: impl Iterator<Item = &'a Ci>,
        installs: impl Iterator<Item = &'a Install>,
    ) -> ConfigView<'a> {
        let mut v = ConfigView::default();
        for (k, val) in attributes {
            // The register is people's data: an edit of it is never drift.
            if !EXPLODED.contains(&k.as_str()) && !register::is_register_attribute(k) {
                v.put(
                    Aspect::Attribute,
                    k.as_str(),
                    k.as_str(),
                    FactValue::Json(Cow::Borrowed(val)),
                );
            }
        }
        let os: serde_json::Map<String, Value> = ["name", "version", "version_id", "build"]
            .into_iter()
            .filter_map(|f| Some((f.to_string(), attributes.get(&format!("os.{f}"))?.clone())))
            .collect();
        if !os.is_empty() {
            let subject = text(os.get("name"))
                .unwrap_or("operating system")
                .to_string();
            v.put(
                Aspect::Os,
                "os",
                subject,
                FactValue::Json(Cow::Owned(Value::Object(os))),
            );
        }
        let listed = |name: &str| -> &'a [Value] {
            attributes
                .get(name)
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[])
        };
        for u in listed("users.local") {
            let name = text(u.get("name")).unwrap_or_default();
            v.put(Aspect::User, name, name, FactValue::Json(Cow::Borrowed(u)));
        }
        for p in listed("ports.listening") {
            let proto = text(p.get("protocol")).unwrap_or_default();
            let addr = text(p.get("address")).unwrap_or_default();
            let port = p.get("port").and_then(Value::as_u64).unwrap_or_default();
            v.put(
                Aspect::Port,
                format!("{proto} {addr} {port}"),
                format!("{proto}/{port}"),
                FactValue::Json(Cow::Owned(
                    json!({"address": addr, "process": p.get("process")}),
                )),
            );
        }
        for m in listed("filesystems.mounts") {
            let mp = text(m.get("mount_point")).unwrap_or_default();
            v.put(Aspect::Mount, mp, mp, FactValue::Json(Cow::Borrowed(m)));
        }
        for c in components.filter(|c| c.status != CiStatus::Retired) {
            let a = |f: &str| text(c.attributes.get(f));
            let name = c.name.as_str();
            let (aspect, key, subject): (Aspect, Cow<'a, str>, &'a str) = match c.class {
                CiClass::Disk => (
                    Aspect::Disk,
                    a("serial")
                        .or(a("wwn"))
                        .or(a("device_name"))
                        .unwrap_or(&c.id)
                        .into(),
                    a("device_name").unwrap_or(name),
                ),
                CiClass::NetworkInterface => (
                    Aspect::Nic,
                    match (c.attributes.get("physical"), a("mac")) {
                        (Some(Value::Bool(true)), Some(mac)) => mac,
                        _ => a("name").unwrap_or(&c.id),
                    }
                    .into(),
                    a("name").unwrap_or(name),
                ),
                CiClass::IpAddress => (
                    Aspect::Ip,
                    a("address").unwrap_or(name).into(),
                    a("address").unwrap_or(name),
                ),
                CiClass::Service => (
                    Aspect::Service,
                    format!(
                        "{}/{}",
                        a("manager").unwrap_or_default(),
                        a("name").unwrap_or(name)
                    )
                    .into(),
                    a("name").unwrap_or(name),
                ),
                // Shared CIs are not a computer's components: an OS release, a product
                // and a subnet reach the view through the computer's attributes, its
                // installs and its addresses. A computer never owns a computer.
                CiClass::Computer
                | CiClass::OperatingSystem
                | CiClass::SoftwareProduct
                | CiClass::Subnet => continue,
            };
            v.put(aspect, key, subject, FactValue::Attrs(&c.attributes));
        }
        for i in installs {
            let subject = i.package.name.as_deref().unwrap_or(&i.product);
            v.put(
                Aspect::Software,
                format!("{}|{}", i.product, i.discriminator),
                subject,
                FactValue::Install(i),
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

    pub fn attribute(&self, name: &str) -> Option<Value> {
        self.facts
            .get(&FactKey {
                aspect: Aspect::Attribute,
                key: Cow::Borrowed(name),
            })
            .map(|f| f.value.to_value())
    }
}
