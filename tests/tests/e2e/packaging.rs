//! Service definitions for every platform, checked against the real binaries: every flag a
//! unit, plist, WinSW file or container entrypoint passes exists in that binary's `--help`;
//! XML files are well-formed; shell installers parse. (The Debian packages themselves are
//! installed and exercised by `packaging/test-deb.sh`.)

use std::path::Path;
use std::process::Command;

use crate::support::bin;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn help(binary: &str, args: &[&str]) -> String {
    let out = Command::new(bin(binary))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{binary} {args:?} --help");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every `--flag` in `line` is documented by `help`.
fn flags_exist(what: &str, line: &str, help: &str) {
    for flag in line
        .split(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == '[' || c == ']')
        .filter(|w| w.starts_with("--"))
    {
        let flag = flag.split('=').next().unwrap();
        assert!(
            help.contains(flag),
            "{what}: {flag} is not a flag of the binary"
        );
    }
}

fn well_formed_xml(rel: &str) -> String {
    let text = read(rel);
    let mut reader = quick_xml::Reader::from_str(&text);
    let mut depth = 0i32;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(_)) => depth += 1,
            Ok(quick_xml::events::Event::End(_)) => depth -= 1,
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("{rel} is not well-formed XML: {e}"),
        }
        assert!(depth >= 0, "{rel}: unbalanced");
    }
    assert_eq!(depth, 0, "{rel}: unclosed elements");
    text
}

#[test]
fn service_definitions_use_real_flags_and_parse() {
    let agent_run = help("census-agent", &["run"]);
    let agent_top = help("census-agent", &[]);
    let serve = help("census-collector", &["serve"]);
    let collector_top = help("census-collector", &[]);

    let unit = read("packaging/systemd/census-agent.service");
    let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert!(exec.contains("/usr/bin/census-agent run"), "{exec}");
    flags_exist("census-agent.service", exec, &agent_run);
    assert!(unit.contains("ReadWritePaths=/var/lib/census-agent"));
    assert!(unit.contains("NoNewPrivileges=yes") && unit.contains("ProtectSystem=strict"));
    assert!(
        agent_top.contains("CENSUS_AGENT_STATE_DIR"),
        "the unit's state dir variable exists"
    );

    let unit = read("packaging/systemd/census-collector.service");
    let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    flags_exist(
        "census-collector.service",
        exec,
        &format!("{collector_top}{serve}"),
    );
    let defaults = read("packaging/deb/census-collector.default");
    let args = defaults
        .lines()
        .find(|l| l.starts_with("CENSUS_SERVE_ARGS="))
        .unwrap();
    flags_exist("census-collector.default", args, &serve);

    let plist = well_formed_xml("packaging/macos/org.census.agent.plist");
    assert!(
        plist.contains("<string>/usr/local/bin/census-agent</string>\n    <string>run</string>")
    );
    assert!(plist.contains("CENSUS_AGENT_STATE_DIR"));
    flags_exist("org.census.agent.plist", "--config", &agent_run);

    let winsw = well_formed_xml("packaging/windows/census-agent.xml");
    let arguments = winsw.lines().find(|l| l.contains("<arguments>")).unwrap();
    assert!(arguments.contains("<arguments>run "), "{arguments}");
    flags_exist("census-agent.xml", arguments, &agent_run);
    assert!(winsw.contains(r#"<env name="CENSUS_AGENT_STATE_DIR""#));

    let containerfile = read("packaging/container/Containerfile");
    let entry = containerfile
        .lines()
        .find(|l| l.starts_with("ENTRYPOINT"))
        .unwrap();
    flags_exist("Containerfile", entry, &format!("{collector_top}{serve}"));
    assert!(containerfile.contains("USER census-collector"), "non-root");
    assert!(containerfile.contains("VOLUME /var/lib/census-collector"));

    for script in [
        "packaging/install-agent.sh",
        "packaging/macos/install-agent.sh",
        "packaging/build.sh",
        "packaging/test-deb.sh",
        "packaging/quickstart.sh",
    ] {
        let st = Command::new("sh")
            .arg("-n")
            .arg(repo().join(script))
            .status()
            .unwrap();
        assert!(st.success(), "{script} parses");
    }
    let ps1 = read("packaging/windows/install-agent.ps1");
    assert!(ps1.contains("enroll --server $Server --token $Token --ca-fingerprint $CaFingerprint"));
    flags_exist(
        "install-agent.ps1",
        "--server --token --ca-fingerprint",
        &help("census-agent", &["enroll"]),
    );
}
