//! The real agent binary against the real collector: enroll with a pinned CA, deliver,
//! heartbeat, spool through an outage, tampered spool files, wrong pins.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::*;

/// Every section but listening ports: the tests running beside these ones open and close
/// loopback ports, which is real drift of this machine and would turn heartbeats into
/// snapshots at random. The ground-truth tests cover the ports probe.
pub const STABLE_SECTIONS: &[&str] = &[
    "system",
    "os",
    "cpus",
    "memory",
    "disks",
    "filesystems",
    "network",
    "software",
    "services",
    "users",
];

pub struct RealAgent {
    /// Holds the agent's directory (removed with the agent).
    _dir: TempDir,
    pub state: PathBuf,
    config: PathBuf,
    /// A dpkg database the agent reads instead of this machine's (`DPKG_ADMINDIR`).
    dpkg_admin_dir: Option<PathBuf>,
}

impl RealAgent {
    pub fn new(name: &str) -> RealAgent {
        let dir = temp_dir(&format!("agent-{name}"));
        let agent = RealAgent {
            state: dir.join("state"),
            config: dir.join("agent.toml"),
            dpkg_admin_dir: None,
            _dir: dir,
        };
        agent.set_sections(STABLE_SECTIONS);
        agent
    }

    /// Writes the config with these sections.
    pub fn set_sections(&self, sections: &[&str]) {
        let list: Vec<String> = sections.iter().map(|s| format!("\"{s}\"")).collect();
        let text = format!("schedule = \"0 */4 * * *\"\nsplay_seconds = 0\nrequest_timeout_seconds = 20\nsections = [{}]\n", list.join(", "));
        std::fs::write(&self.config, text).unwrap();
    }

    /// An agent that reads its packages from a copy of this machine's dpkg database, which
    /// the test then edits: upgrades, removals and installs without touching the machine.
    pub fn with_dpkg_copy(name: &str) -> RealAgent {
        let mut agent = RealAgent::new(name);
        let admin = agent.state.with_file_name("dpkg");
        std::fs::create_dir_all(&admin).unwrap();
        std::fs::copy("/var/lib/dpkg/status", admin.join("status")).unwrap();
        agent.dpkg_admin_dir = Some(admin);
        agent
    }

    /// The copied dpkg database's status file.
    pub fn dpkg_status(&self) -> PathBuf {
        self.dpkg_admin_dir
            .as_ref()
            .expect("an agent made with_dpkg_copy")
            .join("status")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin("census-agent"));
        cmd.arg("--state-dir")
            .arg(&self.state)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("CENSUS_LOG", "info");
        if let Some(admin) = &self.dpkg_admin_dir {
            cmd.env("DPKG_ADMINDIR", admin);
        }
        cmd.output().expect("run census-agent")
    }

    pub fn enroll(&self, c: &Collector) -> Output {
        self.run(&[
            "enroll",
            "--server",
            &c.url,
            "--token",
            &c.token(1, "1h"),
            "--ca-fingerprint",
            &c.fingerprint(),
        ])
    }

    pub fn spool_files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.state.join("spool"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn dpkg_installed() -> usize {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}\n"])
        .output()
        .expect("dpkg-query");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| *l == "installed")
        .count()
}

pub fn enrollment(state: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(state.join("enrollment.json")).unwrap()).unwrap()
}

#[test]
fn enroll_and_first_snapshot_build_this_machine_in_the_cmdb() {
    let c = Collector::start("spine");
    let agent = RealAgent::new("spine");
    let out = agent.enroll(&c);
    assert!(out.status.success(), "{}", text(&out));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(agent.state.join("agent.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "private key is 0600");
    }
    let out = agent.run(&["once"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("snapshot seq 1 delivered"),
        "{}",
        text(&out)
    );

    let id = enrollment(&agent.state)["agent_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ci = agent_row(&c, &id)["ci_id"].as_str().unwrap().to_string();
    let shown = c.json(&["ci", "show", &ci]);
    let counts = &shown["counts"];
    assert_eq!(
        counts["installs"].as_u64().unwrap() as usize,
        dpkg_installed(),
        "every installed package is an installs edge: {counts}"
    );
    assert_eq!(counts["runs"], 1, "{counts}");
    assert!(
        counts["has"].as_u64().unwrap() >= 2,
        "disks and NICs: {counts}"
    );
    let attrs = &shown["ci"]["attributes"];
    assert_eq!(
        attrs["os.hostname"].as_str().unwrap(),
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim()
    );
    assert_eq!(
        attrs["system.machine_id"].as_str().unwrap(),
        std::fs::read_to_string("/etc/machine-id").unwrap().trim()
    );
    let stats = c.json(&["stats"]);
    assert!(stats["cis"]["ip_address"].as_u64().unwrap() >= 1, "{stats}");
    assert!(
        stats["cis"]["network_interface"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert!(stats["cis"]["disk"].as_u64().unwrap() >= 1, "{stats}");

    // Nothing changed: a heartbeat, no new version.
    let out = agent.run(&["once"]);
    assert!(text(&out).contains("heartbeat accepted"), "{}", text(&out));
    assert_eq!(c.json(&["ci", "history", &ci]).as_array().unwrap().len(), 1);
    assert_eq!(agent_row(&c, &id)["last_seq"], 2);
    let status = text(&agent.run(&["status"]));
    assert!(status.contains("spool:         0 snapshot(s)"), "{status}");
    assert!(!status.contains("last success:  never"), "{status}");
}

#[test]
fn outage_spools_in_order_and_delivers_all_on_return() {
    let mut c = Collector::start("outage");
    let agent = RealAgent::new("outage");
    assert!(agent.enroll(&c).status.success());
    assert!(agent.run(&["once"]).status.success());
    c.stop();
    // Unchanged inventory during an outage is a failed heartbeat, nothing to spool.
    let out = agent.run(&["once"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "undelivered runs exit 3: {}",
        text(&out)
    );
    assert!(agent.spool_files().is_empty());
    // Changed inventory is spooled: three different configurations (seq 3, 4, 5).
    for sections in [
        &STABLE_SECTIONS[..9],
        &STABLE_SECTIONS[..8],
        &STABLE_SECTIONS[..9],
    ] {
        agent.set_sections(sections);
        let out = agent.run(&["once"]);
        assert_eq!(
            out.status.code(),
            Some(3),
            "undelivered runs exit 3: {}",
            text(&out)
        );
    }
    let spooled = agent.spool_files();
    assert_eq!(spooled.len(), 3, "{spooled:?}");
    c.start_again();
    agent.set_sections(STABLE_SECTIONS);
    let out = agent.run(&["once"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    let order: Vec<usize> = [
        "seq 3 delivered",
        "seq 4 delivered",
        "seq 5 delivered",
        "seq 6 delivered",
    ]
    .iter()
    .map(|s| t.find(s).unwrap_or_else(|| panic!("{s} missing in {t}")))
    .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "delivered in seq order: {t}"
    );
    assert!(agent.spool_files().is_empty());
    let id = enrollment(&agent.state)["agent_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        agent_row(&c, &id)["last_seq"],
        6,
        "none lost, none duplicated"
    );
}

#[test]
fn tampered_spool_file_is_refused_and_the_agent_moves_on() {
    let mut c = Collector::start("spool-tamper");
    let agent = RealAgent::new("spool-tamper");
    assert!(agent.enroll(&c).status.success());
    c.stop();
    assert_eq!(agent.run(&["once"]).status.code(), Some(3));
    assert_eq!(agent.run(&["once"]).status.code(), Some(3));
    let files = agent.spool_files();
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&files[0], bytes).unwrap();
    c.start_again();
    let out = agent.run(&["once"]);
    let t = text(&out);
    assert!(t.contains("seq 1 refused (401)"), "{t}");
    assert!(
        t.contains("collector refused a spooled inventory"),
        "logged: {t}"
    );
    // Seq 2 was a delta on seq 1, which the collector never accepted, and this run's seq 3
    // a delta on seq 2: the agent drops the chain and sends the inventory whole instead,
    // without a person.
    assert!(t.contains("seq 2 refused (409)"), "{t}");
    assert!(t.contains("went whole as seq 4"), "{t}");
    assert!(t.contains("snapshot seq 4 delivered"), "{t}");
    assert!(agent.spool_files().is_empty());
}

#[test]
fn wrong_ca_pin_refuses_to_send() {
    let c = Collector::start("pin");
    let agent = RealAgent::new("pin");
    let wrong = "00".repeat(32);
    let out = agent.run(&[
        "enroll",
        "--server",
        &c.url,
        "--token",
        &c.token(1, "1h"),
        "--ca-fingerprint",
        &wrong,
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("pinned CA fingerprint"),
        "{}",
        text(&out)
    );
    assert_eq!(
        c.json(&["agent", "list"]).as_array().unwrap().len(),
        0,
        "nothing reached the collector"
    );
    // An enrolled agent whose stored CA is replaced by another one refuses the server.
    assert!(agent.enroll(&c).status.success());
    let other = Collector::start("pin-other");
    let mut e = enrollment(&agent.state);
    e["ca_pem"] = Value::String(other.ca_pem());
    std::fs::write(
        agent.state.join("enrollment.json"),
        serde_json::to_vec(&e).unwrap(),
    )
    .unwrap();
    let out = agent.run(&["once"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).to_lowercase().contains("certificate"),
        "{}",
        text(&out)
    );
}

#[test]
fn enroll_errors_are_clear() {
    let c = Collector::start("enroll-errors");
    let agent = RealAgent::new("enroll-errors");
    let out = agent.run(&[
        "enroll",
        "--server",
        &c.url,
        "--token",
        "cet_wrong",
        "--ca-fingerprint",
        &c.fingerprint(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out)
            .contains("enrollment refused by the collector (401): enrollment token is not valid"),
        "{}",
        text(&out)
    );
    let out = agent.run(&[
        "enroll",
        "--server",
        "https://127.0.0.1:1",
        "--token",
        "x",
        "--ca-fingerprint",
        &c.fingerprint(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("cannot reach https://127.0.0.1:1"),
        "{}",
        text(&out)
    );
    let out = agent.run(&["once"]);
    assert!(text(&out).contains("not enrolled"), "{}", text(&out));
}

#[test]
fn daemon_delivers_its_spool_reloads_on_hup_and_stops_on_term() {
    let mut c = Collector::start("daemon");
    let agent = RealAgent::new("daemon");
    assert!(agent.enroll(&c).status.success());
    c.stop();
    assert_eq!(agent.run(&["once"]).status.code(), Some(3));
    assert_eq!(agent.spool_files().len(), 1);
    c.start_again();
    let mut child = Command::new(bin("census-agent"))
        .arg("--state-dir")
        .arg(&agent.state)
        .arg("--config")
        .arg(&agent.config)
        .args(["--log-format", "json", "run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !agent.spool_files().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        agent.spool_files().is_empty(),
        "the daemon delivers what waited in the spool at start"
    );
    // While the daemon runs, a second agent process on the same state would reuse seqs.
    let out = agent.run(&["once"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("another census-agent is using"),
        "{}",
        text(&out)
    );
    // SIGHUP with a broken config keeps the old one; the daemon stays up.
    std::fs::write(&agent.config, "schedule = \"every now and then\"\n").unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "a bad reload does not kill the daemon"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "SIGTERM stops the daemon promptly"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success());
    let mut logs = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut logs).unwrap();
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "inventory delivered"
                && l["fields"]["seq"] == 1
                && l["fields"]["kind"] == "snapshot"),
        "structured key=value logs: {logs}"
    );
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("reload failed"))),
        "{logs}"
    );
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "stopping"),
        "{logs}"
    );
}

#[test]
fn a_revoked_agent_exits_non_zero_and_says_so_in_its_status() {
    let c = Collector::start("revoked-agent");
    let agent = RealAgent::new("revoked-agent");
    assert!(agent.enroll(&c).status.success());
    let first = agent.run(&["once"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let id = enrollment(&agent.state)["agent_id"]
        .as_str()
        .unwrap()
        .to_string();
    c.cli(&["agent", "revoke", &id]);

    // Unchanged inventory: the heartbeat is refused, the inventory goes whole, and that is
    // refused too. The run fails with its own exit code, not 0 and not "retry later".
    let out = agent.run(&["once"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert!(t.contains("refused (403)"), "{t}");
    assert!(
        t.contains("the collector refuses this agent (403)"),
        "said on stderr: {t}"
    );
    let status: Value =
        serde_json::from_slice(&std::fs::read(agent.state.join("status.json")).unwrap()).unwrap();
    assert_eq!(status["refused"]["status"], 403, "{status}");
    assert_eq!(
        status["refused"]["problem"],
        census_shared::protocol::PROBLEM_AGENT_REVOKED
    );
    assert!(status["last_error"].as_str().unwrap().contains("revoked"));
    assert!(status["consecutive_failures"].as_u64().unwrap() >= 1);
    let shown = text(&agent.run(&["status"]));
    assert!(shown.contains("REFUSED:"), "{shown}");
    assert!(shown.contains("agent-revoked"), "{shown}");
    // Nothing waits in the spool for a collector that will never take it.
    assert!(agent.spool_files().is_empty());
}
