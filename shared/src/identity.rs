//! Values that look like identity but identify nothing: firmware placeholders, all-zero
//! UUIDs, virtual adapters' fixed MACs. Agents drop them at the source; the collector checks
//! again because it never trusts an agent to have done so.

/// Serials, vendors and models that firmware ships unfilled (compared case-insensitively,
/// after trimming).
pub const PLACEHOLDER_STRINGS: &[&str] = &[
    "to be filled by o.e.m.",
    "to be filled by oem",
    "to be filled",
    "filled by o.e.m.",
    "o.e.m.",
    "oem",
    "default string",
    "system serial number",
    "system product name",
    "system manufacturer",
    "system version",
    "chassis serial number",
    "base board serial number",
    "serial number",
    "not specified",
    "not applicable",
    "not available",
    "none",
    "null",
    "n/a",
    "na",
    "invalid",
    "unknown",
    "empty",
    "no asset tag",
    "type1productconfigid",
    "123456789",
    "0123456789",
    "1234567890",
    "x.x",
];

/// System UUIDs known to be shared by many machines.
pub const PLACEHOLDER_UUIDS: &[&str] = &[
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "03000200-0400-0500-0006-000700080009",
    "12345678-1234-5678-90ab-cddeefaabbcc",
    "4c4c4544-0000-2010-8020-80c04f202020",
];

/// MACs that many machines share (virtual adapters with fixed addresses).
pub const PLACEHOLDER_MACS: &[&str] = &[
    "00:00:00:00:00:00",
    "ff:ff:ff:ff:ff:ff",
    "02:00:4c:4f:4f:50", // Microsoft loopback adapter
    "00:05:9a:3c:7a:00", // Cisco AnyConnect virtual adapter
    "00:50:56:c0:00:01", // VMware host-only adapter
    "00:50:56:c0:00:08", // VMware NAT adapter
    "0a:00:27:00:00:00", // VirtualBox host-only adapter
];

/// True when `value` cannot identify a machine: empty, a known placeholder, or one character
/// repeated ("0000000", "FFFFFFFF", "..........").
pub fn is_placeholder(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    if v.is_empty() {
        return true;
    }
    if PLACEHOLDER_STRINGS.contains(&v.as_str()) || PLACEHOLDER_UUIDS.contains(&v.as_str()) {
        return true;
    }
    let significant: Vec<char> = v.chars().filter(|c| *c != '-' && *c != ':').collect();
    match significant.first() {
        None => true,
        Some(first) => significant.iter().all(|c| c == first),
    }
}

/// Placeholder check for MACs: the fixed virtual-adapter list plus broadcast/multicast.
pub fn is_placeholder_mac(mac: &str) -> bool {
    let m = mac.trim().to_ascii_lowercase();
    if is_placeholder(&m) || PLACEHOLDER_MACS.contains(&m.as_str()) {
        return true;
    }
    // The least significant bit of the first octet marks a multicast address.
    match u8::from_str_radix(m.get(0..2).unwrap_or("zz"), 16) {
        Ok(first) => first & 1 == 1,
        Err(_) => true,
    }
}

/// The value, or None when it is a placeholder. Trims whitespace.
pub fn meaningful(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !is_placeholder(v))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        for v in [
            "To Be Filled By O.E.M.",
            " Default string ",
            "0",
            "00000000",
            "FFFFFFFF",
            "00000000-0000-0000-0000-000000000000",
            "03000200-0400-0500-0006-000700080009",
            "",
            "System Serial Number",
            "None",
        ] {
            assert!(is_placeholder(v), "{v:?} should be a placeholder");
        }
        for v in [
            "PF2ABCDE",
            "4C4C4544-0042-3510-8051-B4C04F4E4B32",
            "VMware-56 4d",
        ] {
            assert!(!is_placeholder(v), "{v:?} is real");
        }
    }

    #[test]
    fn placeholder_macs() {
        assert!(is_placeholder_mac("00:00:00:00:00:00"));
        assert!(is_placeholder_mac("02:00:4C:4F:4F:50"));
        assert!(is_placeholder_mac("01:00:5e:00:00:01"));
        assert!(!is_placeholder_mac("52:54:00:12:34:56"));
    }
}
