//! The diff engine: two configuration views in, typed change items out, and the inverse
//! (`apply`) so that `apply(a, diff(a, b)) == b` can be checked as a property.

use std::borrow::Cow;
use std::cmp::Ordering;

use census_shared::version::{self, VersionScheme};
use serde_json::Value;

use super::view::{ConfigView, Fact, FactKey, FactValue};
use crate::model::*;

/// Every difference between `before` and `after`, in key order. Severity starts low; rules
/// set it later.
pub fn diff(before: &ConfigView<'_>, after: &ConfigView<'_>) -> Vec<ChangeItem> {
    let mut items = Vec::new();
    let mut old = before.facts.iter().peekable();
    let mut new = after.facts.iter().peekable();
    loop {
        let step = match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((ko, _)), Some((kn, _))) => ko.cmp(kn),
        };
        match step {
            Ordering::Less => {
                if let Some((k, f)) = old.next() {
                    items.push(item(k, Some(f), None));
                }
            }
            Ordering::Greater => {
                if let Some((k, f)) = new.next() {
                    items.push(item(k, None, Some(f)));
                }
            }
            Ordering::Equal => {
                if let (Some((k, fo)), Some((_, fnew))) = (old.next(), new.next()) {
                    if fo.value != fnew.value {
                        items.push(item(k, Some(fo), Some(fnew)));
                    }
                }
            }
        }
    }
    items
}

/// Every difference between two sets of installs, in the key order [`diff`] gives them.
pub fn diff_installs<'a>(
    before: impl Iterator<Item = &'a Install>,
    after: impl Iterator<Item = &'a Install>,
) -> Vec<ChangeItem> {
    static NONE: Attributes = Attributes::new();
    diff(
        &ConfigView::build(&NONE, std::iter::empty(), before),
        &ConfigView::build(&NONE, std::iter::empty(), after),
    )
}

/// Applies items to a view: the inverse of [`diff`].
pub fn apply<'a>(view: &ConfigView<'a>, items: &'a [ChangeItem]) -> ConfigView<'a> {
    let mut out = view.clone();
    for i in items {
        let key = FactKey {
            aspect: i.aspect,
            key: Cow::Borrowed(i.key.as_str()),
        };
        match &i.new {
            Some(v) => {
                out.facts.insert(
                    key,
                    Fact {
                        subject: Cow::Borrowed(i.subject.as_str()),
                        value: FactValue::Json(Cow::Borrowed(v)),
                    },
                );
            }
            None => {
                out.facts.remove(&key);
            }
        }
    }
    out
}

fn item(k: &FactKey<'_>, old: Option<&Fact<'_>>, new: Option<&Fact<'_>>) -> ChangeItem {
    let subject = new
        .or(old)
        .map(|f| f.subject.to_string())
        .unwrap_or_default();
    let old = old.map(|f| f.value.to_value());
    let new = new.map(|f| f.value.to_value());
    ChangeItem {
        kind: kind_of(k, old.as_ref(), new.as_ref()),
        aspect: k.aspect,
        key: k.key.to_string(),
        subject,
        old,
        new,
        severity: Severity::Low,
        suppressed: None,
        planned_change: None,
        review: None,
    }
}

fn field<'a>(v: Option<&'a Value>, name: &str) -> Option<&'a str> {
    v.and_then(|v| v.get(name)).and_then(Value::as_str)
}

/// Orders the `version` fields of two values under the scheme of the package's source.
fn version_order(old: Option<&Value>, new: Option<&Value>, scheme: VersionScheme) -> Ordering {
    match (field(old, "version"), field(new, "version")) {
        (Some(a), Some(b)) => version::compare(scheme, a, b),
        _ => Ordering::Equal,
    }
}

fn kind_of(k: &FactKey<'_>, old: Option<&Value>, new: Option<&Value>) -> ItemKind {
    use ItemKind::*;
    let (added, removed) = (old.is_none(), new.is_none());
    let pick = |a: ItemKind, r: ItemKind, c: ItemKind| match (added, removed) {
        (true, _) => a,
        (_, true) => r,
        _ => c,
    };
    match k.aspect {
        Aspect::Attribute => match k.key.as_ref() {
            "os.kernel" | "os.kernel_version" => KernelChanged,
            _ => AttributeChanged,
        },
        Aspect::Os => {
            let ord = match (field(old, "version_id"), field(new, "version_id")) {
                (Some(a), Some(b)) => version::compare(VersionScheme::Generic, a, b),
                _ => Ordering::Equal,
            };
            let same_os = field(old, "name") == field(new, "name");
            match ord {
                Ordering::Less if same_os => OsUpgraded,
                Ordering::Greater if same_os => OsDowngraded,
                _ => OsChanged,
            }
        }
        Aspect::Software => {
            if added {
                return SoftwareInstalled;
            }
            if removed {
                return SoftwareRemoved;
            }
            let scheme = VersionScheme::for_source(
                field(new, "source").or(field(old, "source")).unwrap_or(""),
            );
            match version_order(old, new, scheme) {
                Ordering::Less => SoftwareUpgraded,
                Ordering::Greater => SoftwareDowngraded,
                Ordering::Equal => SoftwareChanged,
            }
        }
        Aspect::Disk => pick(DiskAdded, DiskRemoved, DiskChanged),
        Aspect::Nic => pick(NicAdded, NicRemoved, NicChanged),
        Aspect::Ip => {
            if !added && !removed && field(old, "interface") != field(new, "interface") {
                IpMoved
            } else {
                pick(IpAdded, IpRemoved, IpChanged)
            }
        }
        Aspect::Service => {
            if added || removed {
                return pick(ServiceAdded, ServiceRemoved, ServiceChanged);
            }
            let enabled = |v: Option<&Value>| {
                // systemd's and Windows' "starts at boot" states.
                matches!(
                    field(v, "enabled"),
                    Some("enabled" | "enabled-runtime" | "alias" | "auto")
                )
            };
            match (enabled(old), enabled(new)) {
                (false, true) => ServiceEnabled,
                (true, false) => ServiceDisabled,
                _ => ServiceChanged,
            }
        }
        Aspect::User => pick(UserAdded, UserRemoved, UserChanged),
        Aspect::Port => pick(PortOpened, PortClosed, PortChanged),
        Aspect::Mount => pick(MountAdded, MountRemoved, MountChanged),
    }
}
