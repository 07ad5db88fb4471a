//! Test support: start the real binaries, talk to them over real TLS on 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use census_shared::envelope;
use census_shared::protocol::{EnrollRequest, EnrollResponse, IdentityFacts};
use census_shared::*;
use chrono::Utc;
use serde_json::Value;

/// A built workspace binary next to this test executable (target/<profile>/).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo test --workspace` (which builds it)",
        path.display()
    );
    path
}

/// A fresh directory under the system's temp dir, removed when dropped (regression: the
/// agents' and backups' directories of every run were left in /tmp, six runs' worth).
pub fn temp_dir(name: &str) -> TempDir {
    let p = std::env::temp_dir().join(format!("census-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).expect("temp dir");
    TempDir(Some(p))
}

pub struct TempDir(Option<PathBuf>);

impl TempDir {
    /// The path, no longer removed on drop (its owner removes it).
    pub fn keep(mut self) -> PathBuf {
        self.0.take().unwrap_or_default()
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        self.0.as_deref().unwrap_or(std::path::Path::new(""))
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        self
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// The `agent list` row of one agent.
pub fn agent_row(c: &Collector, id: &str) -> Value {
    c.json(&["agent", "list"])
        .as_array()
        .expect("agent list")
        .iter()
        .find(|a| a["id"] == id)
        .cloned()
        .expect("agent listed")
}

pub struct Collector {
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub port: u16,
    pub url: String,
    extra: Vec<String>,
    /// The address it listens on (loopback unless a test needs another local one).
    host: String,
    /// Made by `attach`: dropping it leaves the collector and its directory alone.
    attached: bool,
}

impl Collector {
    pub fn start(name: &str) -> Collector {
        Self::start_with(name, &[])
    }

    /// A collector whose data directory is `dir` (e.g. on a small filesystem).
    pub fn start_in(dir: &Path, extra: &[&str]) -> Collector {
        let mut c = Collector {
            dir: dir.to_path_buf(),
            child: None,
            port: 0,
            url: String::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            host: "127.0.0.1".into(),
            attached: false,
        };
        c.launch();
        c
    }

    pub fn start_with(name: &str, extra: &[&str]) -> Collector {
        let mut c = Collector {
            dir: temp_dir(name).keep(),
            child: None,
            port: 0,
            url: String::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            host: "127.0.0.1".into(),
            attached: false,
        };
        c.launch();
        c
    }

    /// A collector listening on `host` (a local address other than loopback, which agents
    /// in another network namespace reach), named in its certificate.
    pub fn start_on(name: &str, host: &str, extra: &[&str]) -> Collector {
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        extra.extend(["--san".to_string(), host.to_string()]);
        let mut c = Collector {
            dir: temp_dir(name).keep(),
            child: None,
            port: 0,
            url: String::new(),
            extra,
            host: host.into(),
            attached: false,
        };
        c.launch();
        c
    }

    fn launch(&mut self) {
        let mut args = vec![
            "--data-dir".to_string(),
            self.dir.display().to_string(),
            "serve".into(),
            "--listen".into(),
            format!("{}:{}", self.host, self.port),
        ];
        args.extend(self.extra.clone());
        let mut child = Command::new(bin("census-collector"))
            .args(&args)
            .env("CENSUS_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start collector");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut url = None;
        while Instant::now() < deadline {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(u) = line.strip_prefix("listening on ") {
                        url = Some(u.trim().to_string());
                        break;
                    }
                }
                _ => break,
            }
        }
        // Keep draining stdout so the collector never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let url = url.expect("collector did not report its address");
        self.port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        self.url = url;
        self.child = Some(child);
    }

    /// A handle on a collector another handle started: talks HTTP, never stops it.
    pub fn attach(url: &str, dir: &Path, port: u16) -> Collector {
        Collector {
            dir: dir.to_path_buf(),
            child: None,
            port,
            url: url.to_string(),
            extra: Vec::new(),
            host: "127.0.0.1".into(),
            attached: true,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn start_again(&mut self) {
        assert!(self.child.is_none());
        self.launch();
    }

    /// `--store URL` when this collector serves a shared database (admin commands need it
    /// when no socket answers).
    pub fn store_args(&self) -> Vec<String> {
        self.extra
            .iter()
            .position(|a| a == "--store")
            .and_then(|i| self.extra.get(i..i + 2))
            .map(|a| a.to_vec())
            .unwrap_or_default()
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.join("tls/ca.pem")).expect("ca.pem")
    }

    pub fn fingerprint(&self) -> String {
        self.cli(&["fingerprint"]).trim().to_string()
    }

    /// Runs an admin command; panics with its stderr when it fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(bin("census-collector"))
            .arg("--data-dir")
            .arg(&self.dir)
            .args(self.store_args())
            .args(args)
            .output()
            .expect("run collector CLI");
        assert!(
            out.status.success(),
            "census-collector {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.cli(&all)).expect("JSON from the CLI")
    }

    /// Sets a person's password (the CLI reads it from stdin).
    pub fn set_password(&self, name: &str, password: &str) {
        use std::io::Write;
        let mut child = Command::new(bin("census-collector"))
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["user", "passwd", name])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("run collector CLI");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{password}\n").as_bytes())
            .expect("write password");
        assert!(child.wait().expect("wait").success());
    }

    /// An HTTPS client that does not follow redirects (to see the UI's 303s).
    pub fn http_no_redirect(&self) -> reqwest::blocking::Client {
        let ca = reqwest::Certificate::from_pem(self.ca_pem().as_bytes()).expect("CA");
        reqwest::blocking::Client::builder()
            .add_root_certificate(ca)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client")
    }

    /// Signs in through the web UI's login form; returns the session cookie's value.
    pub fn ui_login(&self, name: &str, password: &str) -> UiSession {
        let http = self.http_no_redirect();
        let page = http
            .get(format!("{}/ui/login", self.url))
            .send()
            .expect("login page");
        let login_cookie =
            cookie_value(page.headers(), "__Host-census_login").expect("login cookie");
        let r = http
            .post(format!("{}/ui/login", self.url))
            .header("cookie", format!("__Host-census_login={login_cookie}"))
            .form(&[
                ("name", name),
                ("password", password),
                ("csrf", login_cookie.as_str()),
                ("next", "/ui"),
            ])
            .send()
            .expect("login");
        assert_eq!(r.status().as_u16(), 303, "login as {name}");
        let session = cookie_value(r.headers(), "__Host-census_session").expect("session cookie");
        let cookie = format!("__Host-census_session={session}");
        let home = http
            .get(format!("{}/ui", self.url))
            .header("cookie", &cookie)
            .send()
            .expect("dashboard")
            .text()
            .expect("dashboard body");
        UiSession {
            cookie,
            csrf: hidden_csrf(&home).expect("csrf field on the dashboard"),
        }
    }

    pub fn token(&self, uses: u32, ttl: &str) -> String {
        self.json(&["token", "create", "--uses", &uses.to_string(), "--ttl", ttl])["token"]
            .as_str()
            .expect("token")
            .to_string()
    }

    /// A client trusting the collector's CA; it speaks HTTP/2 (through ALPN, which the
    /// collector offers first).
    pub fn http(&self) -> reqwest::blocking::Client {
        self.http_builder().build().expect("client")
    }

    /// The same, held to HTTP/1.1.
    pub fn http1(&self) -> reqwest::blocking::Client {
        self.http_builder().http1_only().build().expect("client")
    }

    fn http_builder(&self) -> reqwest::blocking::ClientBuilder {
        let ca = reqwest::Certificate::from_pem(self.ca_pem().as_bytes()).expect("CA");
        reqwest::blocking::Client::builder()
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(60))
    }

    /// Peak resident memory of the collector, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if self.attached {
            return;
        }
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An agent simulated in-process with the shared crate: its own key, id and seq.
pub struct FakeAgent {
    pub key: AgentKeyPair,
    pub id: String,
    pub seq: u64,
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn detail(&self) -> String {
        self.body["detail"].as_str().unwrap_or_default().to_string()
    }
}

fn reply(r: reqwest::blocking::Response) -> Reply {
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    Reply {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

impl FakeAgent {
    pub fn enroll(c: &Collector, token: &str) -> FakeAgent {
        let key = AgentKeyPair::generate();
        let req = EnrollRequest {
            token: token.into(),
            public_key: key.public().to_text(),
            agent_version: "test".into(),
            facts: IdentityFacts {
                hostname: "fake".into(),
                ..Default::default()
            },
        };
        let r = c
            .http()
            .post(format!("{}/api/v1/enroll", c.url))
            .json(&req)
            .send()
            .expect("enroll");
        assert_eq!(r.status().as_u16(), 201, "enroll: {:?}", r.text());
        let resp: EnrollResponse = r.json().expect("enroll response");
        FakeAgent {
            key,
            id: resp.agent_id,
            seq: 0,
        }
    }

    /// Encodes, signs and posts `snap` with the next seq.
    pub fn send(&mut self, c: &Collector, snap: &mut Snapshot) -> Reply {
        self.try_send(c, snap).expect("post snapshot")
    }

    /// Like `send`, but a connection failure (the collector is gone) is `None`.
    pub fn try_send(&mut self, c: &Collector, snap: &mut Snapshot) -> Option<Reply> {
        self.seq += 1;
        snap.agent_id = self.id.clone();
        snap.seq = self.seq;
        let body = census_shared::wire::encode_body(snap).expect("encode");
        let sig = envelope::sign(
            self.key.signing_key(),
            &envelope::snapshot_fields(&self.id, self.seq, &body),
        )
        .expect("sign");
        c.http()
            .post(format!("{}/api/v1/snapshots", c.url))
            .header(envelope::HEADER_AGENT_ID, &self.id)
            .header(envelope::HEADER_SEQ, self.seq.to_string())
            .header(envelope::HEADER_SIGNATURE, sig)
            .header("content-encoding", "zstd")
            .body(body)
            .send()
            .ok()
            .map(reply)
    }

    pub fn post_raw(
        &self,
        c: &Collector,
        seq: u64,
        body: Vec<u8>,
        encoding: Option<&str>,
    ) -> Reply {
        let sig = envelope::sign(
            self.key.signing_key(),
            &envelope::snapshot_fields(&self.id, seq, &body),
        )
        .expect("sign");
        self.post_signed(c, seq, body, encoding, &sig)
    }

    pub fn post_signed(
        &self,
        c: &Collector,
        seq: u64,
        body: Vec<u8>,
        encoding: Option<&str>,
        sig: &str,
    ) -> Reply {
        let mut req = c
            .http()
            .post(format!("{}/api/v1/snapshots", c.url))
            .header(envelope::HEADER_AGENT_ID, &self.id)
            .header(envelope::HEADER_SEQ, seq.to_string())
            .header(envelope::HEADER_SIGNATURE, sig)
            .body(body);
        if let Some(e) = encoding {
            req = req.header("content-encoding", e);
        }
        reply(req.send().expect("post snapshot"))
    }
}

/// Agent `i`'s machine in a load test named `tag` (its MACs start 52:54:00:`mac`), with a
/// configuration of its own for `seq` (the timezone), so every accepted snapshot is a
/// version and raises a change record.
pub fn machine_at(tag: &str, mac: &str, i: usize, seq: u64) -> Snapshot {
    let mut snap = machine(
        &format!("{tag}-{i}"),
        Some(&format!("{}-SN-{i}", tag.to_uppercase())),
        None,
        &format!("{tag}-mid-{i}"),
        &[&format!("52:54:00:{mac}:00:0{i}")],
    );
    if let Some(os) = snap.os.data_mut() {
        os.timezone = Some(format!("seq-{seq}"));
    }
    snap
}

/// The seqs of the change records each agent raised, by agent id.
pub fn change_seqs(
    c: &Collector,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<u64>> {
    let mut recorded: std::collections::BTreeMap<String, std::collections::BTreeSet<u64>> =
        Default::default();
    for ch in c.json(&["changes"]).as_array().expect("changes").iter() {
        recorded
            .entry(ch["agent_id"].as_str().unwrap_or_default().to_string())
            .or_default()
            .insert(ch["seq"].as_u64().unwrap_or(0));
    }
    recorded
}

/// The acknowledged seqs (each a changed configuration) with no change record, the first
/// excepted (a first inventory is discovery, not drift).
pub fn acked_without_change(
    acked: &std::collections::BTreeSet<u64>,
    recorded: Option<&std::collections::BTreeSet<u64>>,
) -> Vec<u64> {
    let first = acked.iter().next().copied();
    acked
        .iter()
        .filter(|s| Some(**s) != first && !recorded.is_some_and(|r| r.contains(s)))
        .copied()
        .collect()
}

/// sshd listening on every IPv4 address, port 22.
pub fn sshd_listening() -> Section<Vec<ListeningPort>> {
    Section::collected(vec![ListeningPort {
        protocol: "tcp".into(),
        address: "0.0.0.0".into(),
        port: 22,
        process: Some("sshd".into()),
        ..Default::default()
    }])
}

/// An outbound TCP flow to `remote:port` by `process`, sampled over the last five minutes.
pub fn outbound(port: u16, remote: &str, process: &str) -> Connection {
    let now = Utc::now();
    Connection {
        direction: FlowDirection::Outbound,
        protocol: "tcp".into(),
        port,
        remote_address: remote.into(),
        process: Some(process.into()),
        samples: 4,
        peak_connections: 1,
        first_seen: now - chrono::Duration::minutes(5),
        last_seen: now,
    }
}

/// A small but complete machine inventory.
pub fn machine(
    hostname: &str,
    serial: Option<&str>,
    uuid: Option<&str>,
    machine_id: &str,
    macs: &[&str],
) -> Snapshot {
    let mut s = Snapshot::empty("", 0, Utc::now());
    s.agent_version = "test".into();
    s.system = Section::collected(System {
        vendor: Some("Dell Inc.".into()),
        model: Some("PowerEdge R640".into()),
        serial: serial.map(str::to_string),
        uuid: uuid.map(str::to_string),
        machine_id: Some(machine_id.into()),
        ..Default::default()
    });
    s.os = Section::collected(Os {
        family: "linux".into(),
        name: Some("Debian GNU/Linux".into()),
        id: Some("debian".into()),
        version: Some("12 (bookworm)".into()),
        version_id: Some("12".into()),
        kernel_version: Some("6.1.0-18-amd64".into()),
        arch: "x86_64".into(),
        hostname: hostname.into(),
        fqdn: Some(format!("{hostname}.example.com")),
        timezone: Some("UTC".into()),
        ..Default::default()
    });
    s.network_interfaces = Section::collected(
        macs.iter()
            .enumerate()
            .map(|(i, m)| NetworkInterface {
                name: format!("eth{i}"),
                mac: Some(m.to_string()),
                physical: true,
                kind: "ether".into(),
                up: true,
                addresses: vec![IpAddress {
                    address: format!("10.20.{}.{}", i, 1 + (hostname.len() % 200)),
                    prefix: 24,
                    family: "ipv4".into(),
                    scope: Some("global".into()),
                }],
                ..Default::default()
            })
            .collect(),
    );
    s.disks = Section::collected(vec![Disk {
        name: "sda".into(),
        model: Some("PERC H730".into()),
        serial: Some(format!("DISK-{machine_id}")),
        size_bytes: 480_000_000_000,
        ..Default::default()
    }]);
    s.software = Section::collected(
        [
            ("openssl", "3.0.11-1~deb12u2"),
            ("libc6", "2.36-9+deb12u4"),
            ("nginx", "1.22.1-9"),
            ("curl", "7.88.1-10+deb12u5"),
        ]
        .iter()
        .map(|(n, v)| Software {
            name: n.to_string(),
            version: v.to_string(),
            arch: Some("amd64".into()),
            source: "dpkg".into(),
            ..Default::default()
        })
        .collect(),
    );
    s.users = Section::collected(vec![User {
        name: "root".into(),
        uid: Some(0),
        gid: Some(0),
        shell: Some("/bin/bash".into()),
        login_shell: true,
        ..Default::default()
    }]);
    s
}

/// A signed-in browser session: the Cookie header to send and the page's CSRF token.
#[derive(Debug, Clone)]
pub struct UiSession {
    pub cookie: String,
    pub csrf: String,
}

pub fn cookie_value(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.split(';')
                .next()?
                .trim()
                .strip_prefix(&format!("{name}="))
                .map(str::to_string)
        })
        .filter(|v| !v.is_empty())
}

pub fn hidden_csrf(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(html[at..].split('"').next()?.to_string())
}

/// Runs the `census` client with `config` and `args`, `stdin` written to it: (success,
/// stdout, stderr).
/// A new person `name` with `role`, and an API token of theirs valid for an hour.
pub fn person_token(c: &Collector, name: &str, role: &str) -> String {
    c.cli(&["user", "add", name, "--role", role]);
    c.json(&["user", "token", name, "--ttl", "1h"])["token"]
        .as_str()
        .expect("token")
        .to_string()
}

/// `census login` with `token` against this collector (trusting its CA), saved in `config`.
pub fn census_login(c: &Collector, config: &Path, token: &str) {
    let ca = c.dir.join("tls/ca.pem");
    let (ok, _, err) = run_census(
        config,
        &[
            "login",
            "--server",
            &c.url,
            "--token",
            token,
            "--ca",
            ca.to_str().unwrap(),
        ],
        None,
    );
    assert!(ok, "census login: {err}");
}

pub fn run_census(config: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(bin("census"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("census runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .expect("census reads its stdin");
    }
    let out = child.wait_with_output().expect("census ends");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
