//! census-fleetsim: plays a fleet of agents against the release collector on loopback.
//! Each simulated agent has its own key, enrollment, seq and a distinct generated inventory
//! (one of five OS releases, 300-2,500 packages, 1-3 NICs, 1-2 disks). Agents report on a
//! compressed schedule with splay: a full snapshot when their inventory drifted (installs,
//! upgrades, removals, IP moves, at `--drift` probability per report), else a heartbeat.
//! Like the real agent they keep an unacknowledged submission (same seq, same signature)
//! and retry it with full-jitter back-off, honouring Retry-After.
//!
//! `--outage-at S --outage-for D` kills the collector (SIGKILL) S seconds in and starts it
//! again D seconds later: the report gives the peak accepted rate after the return against
//! the steady rate before it. At the end every agent's last acknowledged seq is checked
//! against the collector's (nothing acknowledged was lost) and 409 refusals are counted.
//!
//! `--deltas` makes drifted agents speak protocol v2 as the real agent does: a delta against
//! their last acknowledged inventory, and the inventory whole after a 409 base mismatch, a
//! 422 or a 404. The report gives the collector's CPU per agent-hour in steady state (after
//! the first interval's discovery wave), from /proc.
//!
//! usage: census-fleetsim [--agents N] [--duration S] [--interval S] [--drift P]
//!        [--concurrency C] [--deltas] [--outage-at S --outage-for S] [--csv FILE]
//!        [--svg FILE] [--bin DIR] [--collector-arg ARG]...

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use census_shared::envelope;
use census_shared::protocol::{EnrollRequest, EnrollResponse, Heartbeat, IdentityFacts};
use census_shared::*;

#[path = "harness.rs"]
mod harness;
use harness::Collector;

struct Args {
    agents: usize,
    duration: f64,
    interval: f64,
    drift: f64,
    concurrency: usize,
    deltas: bool,
    outage_at: Option<f64>,
    outage_for: f64,
    csv: Option<PathBuf>,
    svg: Option<PathBuf>,
    bin: PathBuf,
    /// Passed to `census-collector serve` (e.g. `--pace-factor 0` for a control run).
    collector_args: Vec<String>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        agents: 500,
        duration: 60.0,
        interval: 10.0,
        drift: 0.02,
        concurrency: 32,
        deltas: false,
        outage_at: None,
        outage_for: 10.0,
        csv: None,
        svg: None,
        bin: PathBuf::from("target/release"),
        collector_args: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--agents" => a.agents = val()?.parse()?,
            "--duration" => a.duration = val()?.parse()?,
            "--interval" => a.interval = val()?.parse()?,
            "--drift" => a.drift = val()?.parse()?,
            "--concurrency" => a.concurrency = val()?.parse()?,
            "--deltas" => a.deltas = true,
            "--outage-at" => a.outage_at = Some(val()?.parse()?),
            "--outage-for" => a.outage_for = val()?.parse()?,
            "--csv" => a.csv = Some(PathBuf::from(val()?)),
            "--svg" => a.svg = Some(PathBuf::from(val()?)),
            "--bin" => a.bin = PathBuf::from(val()?),
            "--collector-arg" => a.collector_args.push(val()?),
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

/// A small, reproducible random stream per agent.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1_000_000.0 < p
    }
}

const RELEASES: [(&str, &str, &str, &str); 5] = [
    ("Debian GNU/Linux", "debian", "12", "dpkg"),
    ("Debian GNU/Linux", "debian", "11", "dpkg"),
    ("Ubuntu", "ubuntu", "22.04", "dpkg"),
    ("Ubuntu", "ubuntu", "24.04", "dpkg"),
    ("Red Hat Enterprise Linux", "rhel", "9.4", "rpm"),
];

fn inventory(i: usize, rng: &mut Rng) -> Snapshot {
    let (name, id, version, source) = RELEASES[i % RELEASES.len()];
    let mut s = Snapshot::empty("", 0, chrono::Utc::now());
    s.agent_version = "fleetsim".into();
    s.system = Section::collected(System {
        vendor: Some(["Dell Inc.", "HP", "Lenovo", "QEMU"][i % 4].into()),
        model: Some(format!("Model {}", i % 17)),
        serial: Some(format!("SIM{i:08}")),
        machine_id: Some(format!("{:032x}", i as u128 + 0xf1ee7)),
        ..Default::default()
    });
    s.os = Section::collected(Os {
        family: "linux".into(),
        name: Some(name.into()),
        id: Some(id.into()),
        version_id: Some(version.into()),
        kernel_version: Some(format!("6.1.0-{}-amd64", 10 + i % 9)),
        arch: "x86_64".into(),
        hostname: format!("sim{i:06}"),
        ..Default::default()
    });
    let nics = 1 + rng.below(3) as usize;
    s.network_interfaces = Section::collected(
        (0..nics)
            .map(|n| NetworkInterface {
                name: format!("eth{n}"),
                mac: Some(format!(
                    "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    n,
                    (i >> 24) & 0xff,
                    (i >> 16) & 0xff,
                    (i >> 8) & 0xff,
                    i & 0xff
                )),
                kind: "ethernet".into(),
                physical: true,
                addresses: vec![IpAddress {
                    address: format!("10.{}.{}.{}", n, (i >> 8) & 0xff, i & 0xff),
                    prefix: 16,
                    family: "ipv4".into(),
                    scope: Some("global".into()),
                }],
                ..Default::default()
            })
            .collect(),
    );
    s.disks = Section::collected(
        (0..1 + rng.below(2) as usize)
            .map(|d| Disk {
                name: format!("sd{}", (b'a' + d as u8) as char),
                serial: Some(format!("DSK{i:06}{d}")),
                size_bytes: 256_000_000_000 << d,
                ..Default::default()
            })
            .collect(),
    );
    let packages = 300 + rng.below(2200) as usize;
    s.software = Section::collected(
        (0..packages)
            .map(|p| Software {
                name: format!("{id}-pkg-{p:04}"),
                version: format!("{}.{}-{}", 1 + p % 5, rng.below(4), 1 + rng.below(3)),
                arch: Some("amd64".into()),
                source: source.into(),
                ..Default::default()
            })
            .collect(),
    );
    s
}

/// Installs, upgrades, removals and IP moves, like a real week on a machine.
fn drift(s: &mut Snapshot, rng: &mut Rng, round: u64) {
    match rng.below(4) {
        0 => {
            if let Some(sw) = s.software.data_mut() {
                sw.push(Software {
                    name: format!("added-{round}-{}", rng.below(1000)),
                    version: "1.0-1".into(),
                    arch: Some("amd64".into()),
                    source: sw.first().map(|p| p.source.clone()).unwrap_or_default(),
                    ..Default::default()
                });
            }
        }
        1 => {
            if let Some(sw) = s.software.data_mut() {
                if sw.len() > 1 {
                    let k = rng.below(sw.len() as u64) as usize;
                    sw.remove(k);
                }
            }
        }
        2 => {
            if let Some(sw) = s.software.data_mut() {
                let k = rng.below(sw.len().max(1) as u64) as usize;
                if let Some(p) = sw.get_mut(k) {
                    p.version = format!("{}.{round}", p.version);
                }
            }
        }
        _ => {
            if let Some(nics) = s.network_interfaces.data_mut() {
                if let Some(a) = nics.first_mut().and_then(|n| n.addresses.first_mut()) {
                    a.address = format!("10.99.{}.{}", rng.below(250), 1 + rng.below(250));
                }
            }
        }
    }
}

/// A submission kept until acknowledged: the same seq and signature on every retry.
#[derive(Clone)]
struct Pending {
    path: &'static str,
    seq: u64,
    sig: String,
    body: Vec<u8>,
    zstd: bool,
    full: bool,
    delta: bool,
    hash: String,
    /// The inventory this submission carries, the next base once acknowledged.
    inventory: Option<Arc<Snapshot>>,
}

struct SimAgent {
    key: AgentKeyPair,
    id: String,
    seq: u64,
    snap: Snapshot,
    acked_hash: Option<String>,
    acked_seq: u64,
    /// The last acknowledged inventory and its seq: the base of the next delta.
    base: Option<(u64, Arc<Snapshot>)>,
    pending: Option<Pending>,
    next_due: Instant,
    failures: u32,
    rng: Rng,
    round: u64,
}

#[derive(Default)]
struct Second {
    full: u64,
    deltas: u64,
    heartbeats: u64,
    refused: BTreeMap<u16, u64>,
    errors: u64,
    latencies_ms: Vec<f64>,
}

fn prepare(a: &mut SimAgent, drift_p: f64, deltas: bool) -> Result<Pending> {
    if let Some(p) = &a.pending {
        return Ok(p.clone());
    }
    if a.rng.chance(drift_p) {
        a.round += 1;
        drift(&mut a.snap, &mut a.rng, a.round);
    }
    let hash = a.snap.content_hash();
    a.seq += 1;
    let p = if a.acked_hash.as_deref() == Some(hash.as_str()) {
        let hb = Heartbeat {
            content_hash: hash.clone(),
            sent_at: chrono::Utc::now(),
        };
        let body = serde_json::to_vec(&hb)?;
        let sig = envelope::sign(
            a.key.signing_key(),
            &envelope::heartbeat_fields(&a.id, a.seq, &body),
        )?;
        Pending {
            path: "/api/v1/heartbeat",
            seq: a.seq,
            sig,
            body,
            zstd: false,
            full: false,
            delta: false,
            hash,
            inventory: None,
        }
    } else {
        let mut s = a.snap.clone();
        s.agent_id = a.id.clone();
        s.seq = a.seq;
        s.collected_at = chrono::Utc::now();
        s.canonicalize_order();
        let base = a
            .base
            .as_ref()
            .filter(|_| deltas)
            .map(|(seq, base)| (*seq, base.as_ref()));
        let signed = harness::signed_inventory(&a.key, base, &s)?;
        Pending {
            path: signed.path,
            seq: a.seq,
            sig: signed.signature,
            body: signed.body,
            zstd: true,
            full: true,
            delta: signed.delta,
            hash,
            inventory: Some(Arc::new(s)),
        }
    };
    a.pending = Some(p.clone());
    Ok(p)
}

/// One plotted line: name, colour, (second, value) points.
type Series<'a> = (&'a str, &'a str, &'a Vec<(f64, f64)>);

/// A small SVG line chart: one panel per series, time on x, the outage shaded.
fn svg_plot(
    title: &str,
    duration: f64,
    series: &[Series<'_>],
    outage: Option<(f64, f64)>,
) -> String {
    let (w, panel, left, top) = (900.0, 160.0, 70.0, 40.0);
    let h = top + panel * series.len() as f64 + 30.0;
    let x = |t: f64| left + (t / duration.max(1.0)) * (w - left - 20.0);
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{left}" y="20" font-size="14">{}</text>"#,
        title.replace('&', "&amp;").replace('<', "&lt;")
    );
    for (i, (name, colour, points)) in series.iter().enumerate() {
        let y0 = top + panel * i as f64;
        let max = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0);
        let y = |v: f64| y0 + panel - 20.0 - (v / max) * (panel - 40.0);
        if let Some((from, to)) = outage {
            out.push_str(&format!(
                r##"<rect x="{:.1}" y="{y0:.1}" width="{:.1}" height="{:.1}" fill="#eeeeee"/>"##,
                x(from),
                x(to) - x(from),
                panel - 20.0
            ));
        }
        out.push_str(&format!(
            r##"<line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#999"/><text x="5" y="{:.1}">{name}</text><text x="5" y="{:.1}">max {max:.0}</text>"##,
            y(0.0),
            w - 20.0,
            y(0.0),
            y0 + 15.0,
            y0 + 30.0
        ));
        let path: Vec<String> = points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        out.push_str(&format!(
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            path.join(" ")
        ));
    }
    out.push_str(&format!(
        r#"<text x="{left}" y="{:.1}">0 s</text><text x="{:.1}" y="{:.1}">{duration:.0} s</text></svg>"#,
        h - 8.0,
        w - 60.0,
        h - 8.0
    ));
    out
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = args()?;
    let extra: Vec<&str> = a.collector_args.iter().map(String::as_str).collect();
    let mut collector = Collector::start_with(&a.bin, &extra)?;
    let token = collector
        .cli(&[
            "--format",
            "json",
            "token",
            "create",
            "--uses",
            &a.agents.to_string(),
        ])?
        .split("\"token\": \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .context("token")?
        .to_string();
    let ca = std::fs::read(collector.dir.join("tls/ca.pem"))?;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(a.concurrency)
        .build()?;
    let url = collector.url.clone();

    eprintln!(
        "enrolling {} agents and generating inventories...",
        a.agents
    );
    let start = Instant::now();
    let mut agents = Vec::with_capacity(a.agents);
    for i in 0..a.agents {
        let key = AgentKeyPair::generate();
        let mut rng = Rng(0x9e3779b97f4a7c15 ^ (i as u64 + 1));
        let snap = inventory(i, &mut rng);
        let r = client
            .post(format!("{url}/api/v1/enroll"))
            .json(&EnrollRequest {
                token: token.clone(),
                public_key: key.public().to_text(),
                agent_version: "fleetsim".into(),
                facts: IdentityFacts {
                    hostname: format!("sim{i:06}"),
                    ..Default::default()
                },
            })
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "enroll: {}", r.status());
        let resp: EnrollResponse = r.json().await?;
        // Splay: the first reports spread over one interval.
        let splay = Duration::from_secs_f64(a.interval * (rng.below(1000) as f64 / 1000.0));
        agents.push(Arc::new(tokio::sync::Mutex::new(SimAgent {
            key,
            id: resp.agent_id,
            seq: 0,
            snap,
            acked_hash: None,
            acked_seq: 0,
            base: None,
            pending: None,
            next_due: Instant::now() + splay,
            failures: 0,
            rng,
            round: 0,
        })));
    }
    eprintln!(
        "ready in {:.1} s; simulating {} s",
        start.elapsed().as_secs_f64(),
        a.duration
    );

    let seconds: Arc<Mutex<BTreeMap<u64, Second>>> = Default::default();
    let busy = Arc::new(tokio::sync::Semaphore::new(a.concurrency));
    let t0 = Instant::now();
    let mut outage_state = 0; // 0 before, 1 down, 2 back
                              // (second, rss MiB, disk bytes, collector CPU seconds)
    let mut samples: Vec<(u64, f64, u64, f64)> = Vec::new();
    let mut last_sample = 0;
    while t0.elapsed().as_secs_f64() < a.duration {
        let now_s = t0.elapsed().as_secs_f64();
        if let Some(at) = a.outage_at {
            if outage_state == 0 && now_s >= at {
                eprintln!("outage: collector killed at {now_s:.0} s");
                collector.kill();
                outage_state = 1;
            } else if outage_state == 1 && now_s >= at + a.outage_for {
                collector.restart()?;
                eprintln!(
                    "outage: collector back at {:.0} s",
                    t0.elapsed().as_secs_f64()
                );
                outage_state = 2;
            }
        }
        let sec = now_s as u64;
        if sec != last_sample {
            samples.push((
                sec,
                collector.rss_mib(),
                collector.disk_bytes(),
                collector.cpu_seconds(),
            ));
            last_sample = sec;
        }
        let now = Instant::now();
        for agent in &agents {
            let Ok(mut g) = agent.clone().try_lock_owned() else {
                continue;
            };
            if g.next_due > now {
                continue;
            }
            let Ok(permit) = busy.clone().try_acquire_owned() else {
                break;
            };
            let (client, url, seconds, drift_p, interval, deltas) = (
                client.clone(),
                url.clone(),
                seconds.clone(),
                a.drift,
                a.interval,
                a.deltas,
            );
            tokio::spawn(async move {
                let _permit = permit;
                let p = match prepare(&mut g, drift_p, deltas) {
                    Ok(p) => p,
                    Err(_) => return,
                };
                let t = Instant::now();
                let mut req = client
                    .post(format!("{url}{}", p.path))
                    .header(envelope::HEADER_AGENT_ID, &g.id)
                    .header(envelope::HEADER_SEQ, p.seq.to_string())
                    .header(envelope::HEADER_SIGNATURE, &p.sig)
                    .body(p.body.clone());
                if p.zstd {
                    req = req.header("content-encoding", "zstd");
                }
                let result = req.send().await;
                let status = result.as_ref().ok().map(|r| r.status().as_u16());
                let retry_after = result
                    .as_ref()
                    .ok()
                    .and_then(|r| r.headers().get("retry-after"))
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<f64>().ok());
                // A delta refused for its base goes whole next; a 409 on a delta is either
                // that or "seq already stored" (an ack that was lost), told by the problem.
                let base_refused = match (result, p.delta, status) {
                    (Ok(r), true, Some(404 | 409 | 422)) => {
                        let body = r.text().await.unwrap_or_default();
                        status != Some(409)
                            || body.contains(census_shared::protocol::PROBLEM_DELTA_BASE_MISMATCH)
                    }
                    _ => false,
                };
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                let sec = t0.elapsed().as_secs();
                let mut backoff = None;
                {
                    let mut all = seconds.lock().unwrap_or_else(|e| e.into_inner());
                    let s = all.entry(sec).or_default();
                    match status {
                        Some(code) if base_refused => {
                            *s.refused.entry(code).or_default() += 1;
                            g.base = None;
                            g.pending = None;
                            g.failures = 0;
                            backoff = Some(0.0);
                        }
                        Some(code) if (200..300).contains(&code) || code == 409 => {
                            // 409: this seq is already stored (its ack was lost): delivered.
                            if code != 409 {
                                if p.full {
                                    s.full += 1;
                                }
                                if p.delta {
                                    s.deltas += 1;
                                }
                                if !p.full {
                                    s.heartbeats += 1;
                                }
                                s.latencies_ms.push(ms);
                            } else {
                                *s.refused.entry(409).or_default() += 1;
                            }
                            g.acked_hash = Some(p.hash.clone());
                            g.acked_seq = g.acked_seq.max(p.seq);
                            if let Some(inventory) = &p.inventory {
                                g.base = Some((p.seq, inventory.clone()));
                            }
                            g.pending = None;
                            g.failures = 0;
                        }
                        Some(code) => {
                            *s.refused.entry(code).or_default() += 1;
                            if code == 429 || code == 503 {
                                backoff = Some(retry_after.unwrap_or(5.0));
                            } else {
                                g.pending = None; // refused for good: not retried
                            }
                        }
                        None => {
                            s.errors += 1;
                            backoff = Some(0.0);
                        }
                    }
                }
                let wait = match backoff {
                    None => interval * (0.9 + 0.2 * (g.rng.below(1000) as f64 / 1000.0)),
                    Some(floor) => {
                        // The real agent's full-jitter back-off (base 5 s, cap 900 s against
                        // an hourly schedule), scaled to the compressed interval.
                        g.failures += 1;
                        let base = interval / 20.0;
                        let cap = (base * 2f64.powi(g.failures.min(10) as i32)).min(interval);
                        floor + cap * (g.rng.below(1000) as f64 / 1000.0)
                    }
                };
                g.next_due = Instant::now() + Duration::from_secs_f64(wait);
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let in-flight requests finish.
    let _ = busy.acquire_many(a.concurrency as u32).await;
    let all = std::mem::take(&mut *seconds.lock().unwrap_or_else(|e| e.into_inner()));

    // Nothing acknowledged is missing: every agent's acked seq is at or below the stored one.
    let listed: serde_json::Value =
        serde_json::from_str(&collector.cli(&["--format", "json", "agent", "list"])?)?;
    let stored: BTreeMap<String, u64> = listed
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|a| Some((a["id"].as_str()?.to_string(), a["last_seq"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    let mut lost = 0;
    for agent in &agents {
        let g = agent.lock().await;
        if stored.get(&g.id).copied().unwrap_or(0) < g.acked_seq {
            lost += 1;
        }
    }

    let mut latencies: Vec<f64> = all.values().flat_map(|s| s.latencies_ms.clone()).collect();
    let full: u64 = all.values().map(|s| s.full).sum();
    let hb: u64 = all.values().map(|s| s.heartbeats).sum();
    let errors: u64 = all.values().map(|s| s.errors).sum();
    let mut refused: BTreeMap<u16, u64> = BTreeMap::new();
    for s in all.values() {
        for (k, v) in &s.refused {
            *refused.entry(*k).or_default() += v;
        }
    }
    let accepted_at = |s: &Second| (s.full + s.heartbeats) as f64;
    println!(
        "fleet: {} agents, interval {} s, drift {:.1} %, {} s, concurrency {}",
        a.agents,
        a.interval,
        a.drift * 100.0,
        a.duration,
        a.concurrency
    );
    println!("| measure | value |\n|---|---:|");
    println!("| accepted full snapshots | {full} |");
    println!(
        "| of which deltas | {} |",
        all.values().map(|s| s.deltas).sum::<u64>()
    );
    println!("| accepted heartbeats | {hb} |");
    println!(
        "| accepted per second (mean) | {:.0} |",
        (full + hb) as f64 / a.duration
    );
    for (code, n) in &refused {
        println!("| refused {code} | {n} |");
    }
    println!("| connection errors (collector down) | {errors} |");
    println!(
        "| latency p50 / p99 / p999 ms | {:.1} / {:.1} / {:.1} |",
        pct(&mut latencies, 0.5),
        pct(&mut latencies, 0.99),
        pct(&mut latencies, 0.999)
    );
    let rss: Vec<f64> = samples.iter().map(|s| s.1).filter(|r| *r > 0.0).collect();
    if let (Some(first), Some(last)) = (rss.first(), rss.last()) {
        println!(
            "| collector RSS MiB first / last / max | {first:.0} / {last:.0} / {:.0} |",
            rss.iter().cloned().fold(0.0, f64::max)
        );
    }
    if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
        println!(
            "| data dir MB first / last | {:.0} / {:.0} |",
            first.2 as f64 / 1e6,
            last.2 as f64 / 1e6
        );
    }
    if let Some(at) = a.outage_at {
        let back = (at + a.outage_for) as u64;
        let steady: Vec<f64> = all
            .iter()
            .filter(|(s, _)| {
                **s >= (at as u64).saturating_sub(20).max(a.interval as u64) && **s < at as u64
            })
            .map(|(_, s)| accepted_at(s))
            .collect();
        let steady_mean = steady.iter().sum::<f64>() / steady.len().max(1) as f64;
        let peak = all
            .iter()
            .filter(|(s, _)| **s >= back && **s < back + 30)
            .map(|(_, s)| accepted_at(s))
            .fold(0.0, f64::max);
        println!("| steady accepted/s before the outage | {steady_mean:.0} |");
        println!("| peak accepted/s in the 30 s after return | {peak:.0} |");
        println!(
            "| reconnect peak ratio | {:.2} |",
            peak / steady_mean.max(1.0)
        );
    }
    // Steady state: from the end of the first interval (the discovery wave) to the end; a
    // restarted collector's counter starts again, so no figure with an outage.
    let steady: Vec<&(u64, f64, u64, f64)> = samples
        .iter()
        .filter(|s| s.0 as f64 >= a.interval)
        .collect();
    if let (None, Some(first), Some(last)) = (a.outage_at, steady.first(), steady.last()) {
        let window = (last.0 - first.0) as f64;
        let agent_hours = a.agents as f64 * window / a.interval;
        if agent_hours > 0.0 {
            println!(
                "| collector CPU per agent-hour, steady ({:.0}-{:.0} s) | {:.2} ms |",
                first.0,
                last.0,
                (last.3 - first.3) * 1000.0 / agent_hours
            );
        }
    }
    println!("| agents whose acknowledged seq is missing | {lost} |");
    if let Some(path) = &a.csv {
        let mut out = String::from(
            "second,full,heartbeats,refused,errors,p50_ms,p99_ms,rss_mib,disk_bytes\n",
        );
        let sample_at: BTreeMap<u64, (f64, u64)> =
            samples.iter().map(|(s, r, d, _)| (*s, (*r, *d))).collect();
        for (sec, s) in &all {
            let mut l = s.latencies_ms.clone();
            let (rss, disk) = sample_at.get(sec).copied().unwrap_or((0.0, 0));
            out.push_str(&format!(
                "{sec},{},{},{},{},{:.1},{:.1},{rss:.0},{disk}\n",
                s.full,
                s.heartbeats,
                s.refused.values().sum::<u64>(),
                s.errors,
                pct(&mut l, 0.5),
                pct(&mut l, 0.99)
            ));
        }
        std::fs::write(path, out)?;
        eprintln!("per-second series: {}", path.display());
    }
    if let Some(path) = &a.svg {
        let accepted: Vec<(f64, f64)> = all
            .iter()
            .map(|(sec, s)| (*sec as f64, accepted_at(s)))
            .collect();
        let p99: Vec<(f64, f64)> = all
            .iter()
            .map(|(sec, s)| {
                let mut l = s.latencies_ms.clone();
                (*sec as f64, pct(&mut l, 0.99))
            })
            .collect();
        let rss: Vec<(f64, f64)> = samples.iter().map(|(s, r, _, _)| (*s as f64, *r)).collect();
        std::fs::write(
            path,
            svg_plot(
                &format!(
                    "census-fleetsim: {} agents, interval {} s",
                    a.agents, a.interval
                ),
                a.duration,
                &[
                    ("accepted/s", "#1f77b4", &accepted),
                    ("p99 latency ms", "#d62728", &p99),
                    ("collector RSS MiB", "#2ca02c", &rss),
                ],
                a.outage_at.map(|at| (at, at + a.outage_for)),
            ),
        )?;
        eprintln!("plot: {}", path.display());
    }
    anyhow::ensure!(lost == 0, "{lost} agents lost an acknowledged submission");
    Ok(())
}
