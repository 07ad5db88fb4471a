//! A fleet of OCS inventories made from the real `ocsinventory-agent --local` output of the
//! CI machine (336 KB, 861 packages): machine `i` is the template with its own DEVICEID,
//! host name, serial and MACs, so each identifies as a computer of its own.

pub const TEMPLATE: &str = include_str!("../../collector/tests/fixtures/foreign/ocs-debian12.xml");

/// Machine `i`'s inventory.
pub fn machine(i: usize) -> String {
    let mac = |last: u8| {
        format!(
            "02:{:02x}:{:02x}:{:02x}:{:02x}:{last:02x}",
            (i >> 24) & 0xff,
            (i >> 16) & 0xff,
            (i >> 8) & 0xff,
            i & 0xff
        )
    };
    TEMPLATE
        .replace(
            "<DEVICEID>vm-2026-12-02-16-17-05",
            &format!("<DEVICEID>host{i:05}-2026-12-02-16-17-05"),
        )
        .replace("<NAME>vm</NAME>", &format!("<NAME>host{i:05}</NAME>"))
        .replace("02:fc:00:00:00:01", &mac(1))
        .replace("2a:48:62:08:be:fd", &mac(2))
        .replace("e2:1a:23:c9:57:2e", &mac(3))
        .replace(
            "<BIOS>\n      <SSN></SSN>",
            &format!(
                "<BIOS>\n      <SMANUFACTURER>QEMU</SMANUFACTURER>\n      <SSN>BENCH{i:07}</SSN>"
            ),
        )
}
