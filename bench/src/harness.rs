//! Shared by the load tools: the release collector as a child process on loopback, which
//! can be killed and started again on the same address and data directory.
// Each load tool is its own binary and uses a different part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

pub struct Collector {
    pub child: Option<std::process::Child>,
    pub dir: PathBuf,
    pub url: String,
    pub bin: PathBuf,
    listen: String,
    extra: Vec<String>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Collector {
    pub fn start(bin: &Path) -> Result<Collector> {
        Self::start_with(bin, &[])
    }

    pub fn start_with(bin: &Path, extra: &[&str]) -> Result<Collector> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "census-bench-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut c = Collector {
            child: None,
            dir,
            url: String::new(),
            bin: bin.to_path_buf(),
            listen: "127.0.0.1:0".into(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        c.launch()?;
        // Later starts reuse the address agents already know.
        c.listen = c
            .url
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .to_string();
        Ok(c)
    }

    fn launch(&mut self) -> Result<()> {
        let mut args: Vec<String> = vec![
            "--data-dir".into(),
            self.dir.to_str().context("path")?.into(),
            "serve".into(),
            "--listen".into(),
            self.listen.clone(),
            "--max-queue".into(),
            "4096".into(),
        ];
        args.extend(self.extra.iter().cloned());
        let mut child = Command::new(self.bin.join("census-collector"))
            .args(&args)
            // CENSUS_BENCH_LOG=FILE keeps the collector's info log (per-phase timings).
            .env(
                "CENSUS_LOG",
                if std::env::var_os("CENSUS_BENCH_LOG").is_some() {
                    "info"
                } else {
                    "warn"
                },
            )
            .stdout(Stdio::piped())
            .stderr(match std::env::var_os("CENSUS_BENCH_LOG") {
                Some(p) => Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)?,
                ),
                None => Stdio::null(),
            })
            .spawn()
            .context("start census-collector (build it with cargo build --release)")?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let mut url = None;
        for line in lines.by_ref() {
            let line = line?;
            if let Some(u) = line.strip_prefix("listening on ") {
                url = Some(u.to_string());
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        self.url = url.context("collector did not start")?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, as a crash or an outage would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.launch()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn cli(&self, args: &[&str]) -> Result<String> {
        // Where the store is (a database, an engine) goes with every admin command.
        let store: Vec<&String> = ["--store", "--engine"]
            .iter()
            .filter_map(|flag| self.extra.iter().position(|a| a == flag))
            .flat_map(|i| self.extra.iter().skip(i).take(2))
            .collect();
        let out = Command::new(self.bin.join("census-collector"))
            .arg("--data-dir")
            .arg(&self.dir)
            .args(store)
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!("{}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn status_kib(&self, field: &str) -> f64 {
        let Some(pid) = self.pid() else { return 0.0 };
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    }

    pub fn peak_rss_mib(&self) -> f64 {
        self.status_kib("VmHWM:") / 1024.0
    }

    /// CPU seconds (user + system) the collector process has used, from /proc (whose
    /// clock ticks are USER_HZ, 100 on Linux).
    pub fn cpu_seconds(&self) -> f64 {
        let Some(pid) = self.pid() else {
            return 0.0;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return 0.0;
        };
        // Fields after the parenthesised command name; utime and stime are the 14th and
        // 15th fields of the line.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / 100.0
    }

    pub fn rss_mib(&self) -> f64 {
        self.status_kib("VmRSS:") / 1024.0
    }

    /// Bytes under the data directory.
    pub fn disk_bytes(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(rd) = std::fs::read_dir(p) else {
                return 0;
            };
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.dir)
    }
}

/// An inventory encoded and signed as a v2 agent sends it: a delta against `base` (the
/// last acknowledged inventory and its seq) when there is one, else the whole snapshot.
pub struct SignedInventory {
    pub path: &'static str,
    pub body: Vec<u8>,
    pub signature: String,
    pub delta: bool,
}

/// Signs `s` (canonical order, its own agent id and seq) with `key`.
pub fn signed_inventory(
    key: &census_shared::AgentKeyPair,
    base: Option<(u64, &census_shared::Snapshot)>,
    s: &census_shared::Snapshot,
) -> Result<SignedInventory> {
    use census_shared::{envelope, protocol, wire};
    Ok(match base {
        Some((base_seq, base)) => {
            let body =
                wire::encode_delta(&census_shared::delta::Delta::between(base, base_seq, s))?;
            let signature = envelope::sign(
                key.signing_key(),
                &envelope::delta_fields(&s.agent_id, s.seq, &body),
            )?;
            SignedInventory {
                path: protocol::DELTAS_PATH,
                body,
                signature,
                delta: true,
            }
        }
        None => {
            let body = wire::encode_body(s)?;
            let signature = envelope::sign(
                key.signing_key(),
                &envelope::snapshot_fields(&s.agent_id, s.seq, &body),
            )?;
            SignedInventory {
                path: protocol::SNAPSHOTS_PATH,
                body,
                signature,
                delta: false,
            }
        }
    })
}
