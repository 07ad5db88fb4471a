//! Ingest benchmark: starts the release collector, enrolls N agents over loopback TLS, and
//! measures first (discovery) snapshots, changed snapshots and heartbeats: throughput,
//! p50/p99 latency, collector peak RSS. Bodies are encoded and signed before each timed
//! phase so the load generator spends its CPU on TLS and HTTP, not on zstd and Ed25519.
//!
//! usage: ingest-bench [--agents N] [--changed K] [--heartbeats M] [--concurrency C]
//!                     [--deltas] [--base inventory.json] [--bin DIR]
//!
//! `--deltas` sends the changed rounds as protocol-v2 deltas against each agent's previous
//! round, as a v2 agent does.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use census_shared::envelope;
use census_shared::protocol::{EnrollRequest, EnrollResponse, Heartbeat, IdentityFacts};
use census_shared::*;

#[path = "harness.rs"]
mod harness;
mod inventory;
use harness::Collector;
use inventory::vary;

struct Args {
    agents: usize,
    changed: usize,
    heartbeats: usize,
    concurrency: usize,
    deltas: bool,
    base: Option<PathBuf>,
    bin: PathBuf,
    /// Run on a throwaway PostgreSQL cluster (`--postgres`) instead of the embedded store.
    postgres: bool,
    /// An existing database instead of a throwaway cluster (`--store URL`).
    store: Option<String>,
    /// `--engine sled`: the embedded store on sled instead of redb.
    engine: Option<String>,
    /// Collectors sharing the database; agent `i` talks to collector `i % collectors`.
    collectors: usize,
}

fn args() -> Result<Args> {
    let mut a = Args {
        agents: 100,
        changed: 10,
        heartbeats: 50,
        concurrency: 16,
        deltas: false,
        base: None,
        bin: PathBuf::from("target/release"),
        postgres: false,
        store: None,
        engine: None,
        collectors: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().context(format!("{flag} needs a value"));
        match flag.as_str() {
            "--agents" => a.agents = val()?.parse()?,
            "--changed" => a.changed = val()?.parse()?,
            "--heartbeats" => a.heartbeats = val()?.parse()?,
            "--concurrency" => a.concurrency = val()?.parse()?,
            "--deltas" => a.deltas = true,
            "--base" => a.base = Some(PathBuf::from(val()?)),
            "--bin" => a.bin = PathBuf::from(val()?),
            "--postgres" => a.postgres = true,
            "--engine" => a.engine = Some(val()?),
            "--store" => {
                a.store = Some(val()?);
                a.postgres = true;
            }
            "--collectors" => a.collectors = val()?.parse::<usize>()?.max(1),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

struct Agent {
    /// The collector it talks to.
    to: usize,
    key: AgentKeyPair,
    id: String,
    seq: u64,
    /// The last inventory sent (canonical order) and its seq: the base of a delta.
    last: Option<(u64, Snapshot)>,
}

/// A signed request ready to send.
struct Prepared {
    /// Which collector the agent talks to.
    to: usize,
    path: &'static str,
    agent: String,
    seq: u64,
    sig: String,
    body: Vec<u8>,
    zstd: bool,
}

/// Agent `i`'s inventory for `round`, with its next seq, encoded and signed.
fn prepare_snapshot(
    agent: &mut Agent,
    base: &Snapshot,
    i: usize,
    round: usize,
    as_delta: bool,
) -> Result<Prepared> {
    agent.seq += 1;
    let mut s = vary(base, i, round);
    s.agent_id = agent.id.clone();
    s.seq = agent.seq;
    s.collected_at = chrono::Utc::now();
    s.canonicalize_order();
    let base = agent
        .last
        .as_ref()
        .filter(|_| as_delta)
        .map(|(seq, last)| (*seq, last));
    let signed = harness::signed_inventory(&agent.key, base, &s)?;
    let prepared = Prepared {
        to: agent.to,
        path: signed.path,
        agent: agent.id.clone(),
        seq: agent.seq,
        sig: signed.signature,
        body: signed.body,
        zstd: true,
    };
    agent.last = Some((agent.seq, s));
    Ok(prepared)
}

async fn run_phase(
    name: &str,
    client: &reqwest::Client,
    urls: &[String],
    work: Vec<Prepared>,
    concurrency: usize,
) -> Result<(f64, Vec<Duration>)> {
    let n = work.len();
    let queue = Arc::new(tokio::sync::Mutex::new(work));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (queue, client, urls) = (queue.clone(), client.clone(), urls.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failures = 0usize;
            loop {
                let Some(p) = queue.lock().await.pop() else {
                    break;
                };
                let t = Instant::now();
                let mut req = client
                    .post(format!("{}{}", urls[p.to], p.path))
                    .header(envelope::HEADER_AGENT_ID, &p.agent)
                    .header(envelope::HEADER_SEQ, p.seq.to_string())
                    .header(envelope::HEADER_SIGNATURE, &p.sig)
                    .body(p.body);
                if p.zstd {
                    req = req.header("content-encoding", "zstd");
                }
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed());
                    }
                    Ok(r) => {
                        failures += 1;
                        if failures < 3 {
                            eprintln!(
                                "refused {}: {}",
                                r.status(),
                                r.text().await.unwrap_or_default()
                            );
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        if failures < 3 {
                            eprintln!("error: {e}");
                        }
                    }
                }
            }
            (lat, failures)
        }));
    }
    let mut all = Vec::with_capacity(n);
    let mut failures = 0;
    for t in tasks {
        let (l, f) = t.await?;
        all.extend(l);
        failures += f;
    }
    let secs = started.elapsed().as_secs_f64();
    if failures > 0 {
        eprintln!("{name}: {failures} failed requests");
    }
    all.sort();
    Ok((all.len() as f64 / secs, all))
}

fn pct(v: &[Duration], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = args()?;
    let base: Snapshot = match &a.base {
        Some(p) => serde_json::from_slice(&std::fs::read(p)?)?,
        None => inventory::this_machine(&a.bin)?,
    };
    let packages = base.software.data().map(|s| s.len()).unwrap_or(0);
    // A throwaway PostgreSQL cluster (dropped at exit) when asked; else the embedded store.
    let mut extra: Vec<String> = Vec::new();
    if a.postgres {
        let url = match &a.store {
            Some(url) => url.clone(),
            None => census_e2e::pg::Cluster::shared().database("ingest_bench"),
        };
        extra = vec!["--store".into(), url];
    } else if let Some(engine) = &a.engine {
        extra = vec!["--engine".into(), engine.clone()];
    }
    let extra_refs: Vec<&str> = extra.iter().map(String::as_str).collect();
    let collectors: Vec<Collector> = (0..if a.postgres { a.collectors } else { 1 })
        .map(|_| Collector::start_with(&a.bin, &extra_refs))
        .collect::<Result<_>>()?;
    let urls: Vec<String> = collectors.iter().map(|c| c.url.clone()).collect();
    let collector = &collectors[0];
    let token_json: serde_json::Value = serde_json::from_str(&collector.cli(&[
        "--format",
        "json",
        "token",
        "create",
        "--uses",
        &a.agents.to_string(),
    ])?)?;
    let token = token_json["token"].as_str().context("token")?.to_string();
    let mut builder = reqwest::Client::builder();
    for c in &collectors {
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(
            c.dir.join("tls/ca.pem"),
        )?)?);
    }
    let client = builder
        .pool_max_idle_per_host(a.concurrency)
        .timeout(Duration::from_secs(120))
        .build()?;

    let mut agents = Vec::new();
    for i in 0..a.agents {
        let to = i % collectors.len();
        let key = AgentKeyPair::generate();
        let req = EnrollRequest {
            token: token.clone(),
            public_key: key.public().to_text(),
            agent_version: "bench".into(),
            facts: IdentityFacts {
                hostname: "bench".into(),
                ..Default::default()
            },
        };
        let r: EnrollResponse = client
            .post(format!("{}/api/v1/enroll", urls[to]))
            .json(&req)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        agents.push(Agent {
            to,
            key,
            id: r.agent_id,
            seq: 0,
            last: None,
        });
    }

    let mut rows = Vec::new();
    let mut body_bytes = 0usize;
    let mut changed_bytes: Vec<usize> = Vec::new();
    for round in 0..=a.changed {
        // Round 0 is discovery; later rounds each change five packages per agent.
        let mut work = Vec::new();
        for (i, agent) in agents.iter_mut().enumerate() {
            let prepared = prepare_snapshot(agent, &base, i, round, a.deltas)?;
            if round == 0 {
                body_bytes = prepared.body.len();
            } else {
                changed_bytes.push(prepared.body.len());
            }
            work.push(prepared);
        }
        let name = if round == 0 {
            "first snapshots (discovery)"
        } else {
            "changed snapshots"
        };
        let (rate, lat) = run_phase(name, &client, &urls, work, a.concurrency).await?;
        rows.push((
            name.to_string(),
            lat.len(),
            rate,
            pct(&lat, 0.5),
            pct(&lat, 0.99),
        ));
    }
    // The same content again as full snapshots (an agent restarted, or one that does not
    // send heartbeats): the collector's unchanged-configuration path.
    let mut work = Vec::new();
    for (i, agent) in agents.iter_mut().enumerate() {
        work.push(prepare_snapshot(agent, &base, i, a.changed, false)?);
    }
    let (rate, lat) = run_phase("unchanged", &client, &urls, work, a.concurrency).await?;
    let unchanged_row = (
        "unchanged full snapshots".to_string(),
        lat.len(),
        rate,
        pct(&lat, 0.5),
        pct(&lat, 0.99),
    );

    // Heartbeats: the content hash of each agent's last snapshot.
    // Interleaved by agent so one agent's consecutive seqs are far apart in the queue (each
    // agent's seqs must arrive in order); pop() takes from the end, hence the reverse.
    let hashes: Vec<String> = (0..agents.len())
        .map(|i| vary(&base, i, a.changed).content_hash())
        .collect();
    let mut work = Vec::new();
    for _ in 0..a.heartbeats {
        for (agent, hash) in agents.iter_mut().zip(&hashes) {
            agent.seq += 1;
            let body = serde_json::to_vec(&Heartbeat {
                content_hash: hash.clone(),
                sent_at: chrono::Utc::now(),
            })?;
            let sig = envelope::sign(
                agent.key.signing_key(),
                &envelope::heartbeat_fields(&agent.id, agent.seq, &body),
            )?;
            work.push(Prepared {
                to: agent.to,
                path: "/api/v1/heartbeat",
                agent: agent.id.clone(),
                seq: agent.seq,
                sig,
                body,
                zstd: false,
            });
        }
    }
    work.reverse();
    let (rate, lat) = run_phase("heartbeats", &client, &urls, work, a.concurrency).await?;
    rows.push((
        "heartbeats".into(),
        lat.len(),
        rate,
        pct(&lat, 0.5),
        pct(&lat, 0.99),
    ));

    // Merge the changed rounds into one row.
    let changed: Vec<_> = rows.iter().filter(|r| r.0 == "changed snapshots").collect();
    let total: usize = changed.iter().map(|r| r.1).sum();
    println!(
        "agents {} x {} packages ({} bytes zstd per snapshot), concurrency {}, store {}",
        a.agents,
        packages,
        body_bytes,
        a.concurrency,
        if a.postgres {
            format!("PostgreSQL, {} collector(s)", collectors.len())
        } else {
            format!("embedded ({})", a.engine.as_deref().unwrap_or("redb"))
        }
    );
    println!("| phase | requests | per second | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|");
    let first = &rows[0];
    println!(
        "| {} | {} | {:.0} | {:.1} | {:.1} |",
        first.0, first.1, first.2, first.3, first.4
    );
    if total > 0 {
        let rate = changed.iter().map(|r| r.2 * r.1 as f64).sum::<f64>() / total as f64;
        let p50 = changed.iter().map(|r| r.3).sum::<f64>() / changed.len() as f64;
        let p99 = changed.iter().map(|r| r.4).fold(0.0, f64::max);
        let what = if a.deltas { "deltas" } else { "snapshots" };
        changed_bytes.sort();
        let median = changed_bytes
            .get(changed_bytes.len() / 2)
            .copied()
            .unwrap_or(0);
        println!(
            "| changed {what} (5 upgrades each, {median} bytes) | {total} | {rate:.0} | {p50:.1} | {p99:.1} |"
        );
    }
    println!(
        "| {} | {} | {:.0} | {:.1} | {:.1} |",
        unchanged_row.0, unchanged_row.1, unchanged_row.2, unchanged_row.3, unchanged_row.4
    );
    let hb = rows.last().context("rows")?;
    println!(
        "| {} | {} | {:.0} | {:.1} | {:.1} |",
        hb.0, hb.1, hb.2, hb.3, hb.4
    );
    println!(
        "collector peak RSS: {:.0} MiB; store on disk: {}",
        collectors
            .iter()
            .map(|c| c.peak_rss_mib())
            .fold(0.0, f64::max),
        collector
            .cli(&["--format", "json", "stats"])
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .map(|v| v["store_bytes"].to_string())
            .unwrap_or_default()
    );
    Ok(())
}
