//! OCS agents reporting over the OCS protocol (`compat-bench`): the release collector with
//! `--compat-listen` on loopback TLS, C concurrent agents each sending, per machine, a
//! PROLOG and then its zlib-compressed inventory (bodies made before the clock runs: the
//! agent's work), as Debian's ocsinventory-agent does. Counts what was acknowledged
//! (`no_account_update`) and what the CMDB then holds: they must be equal.
//!
//!   compat-bench [--inventories 2000] [--agents 8] [--bin target/release]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "harness.rs"]
mod harness;
#[path = "ocs_fleet.rs"]
mod ocs_fleet;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const SECRET: &str = "a-long-shared-migration-secret";

fn zlib(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(bytes)?;
    Ok(z.finish()?)
}

fn unzlib(bytes: &[u8]) -> String {
    use std::io::Read;
    let mut out = String::new();
    let _ = flate2::read::ZlibDecoder::new(bytes).read_to_string(&mut out);
    out
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut inventories = 2000usize;
    let mut agents = 8usize;
    let mut bin = std::path::PathBuf::from("target/release");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().context("a value after the flag");
        match a.as_str() {
            "--inventories" => inventories = value()?.parse()?,
            "--agents" => agents = value()?.parse()?,
            "--bin" => bin = value()?.into(),
            other => bail!("unknown argument {other}"),
        }
    }
    let secret_file =
        std::env::temp_dir().join(format!("census-compat-bench-{}", std::process::id()));
    std::fs::write(&secret_file, SECRET)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let collector = harness::Collector::start_with(
        &bin,
        &[
            "--compat-listen",
            &listen,
            "--compat-secret-file",
            secret_file.to_str().context("path")?,
        ],
    )?;
    let url = format!("https://{listen}/ocsinventory");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(
            collector.dir.join("tls/ca.pem"),
        )?)?)
        .pool_max_idle_per_host(agents)
        .timeout(Duration::from_secs(120))
        .user_agent("OCS-NG_unified_unix_agent_v2.10.0")
        .build()?;
    let made = Instant::now();
    let bodies: Vec<(Vec<u8>, Vec<u8>)> = (0..inventories)
        .map(|i| {
            let prolog = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><REQUEST><DEVICEID>host{i:05}-2026-12-02-16-17-05</DEVICEID><QUERY>PROLOG</QUERY></REQUEST>"
            );
            Ok((zlib(prolog.as_bytes())?, zlib(ocs_fleet::machine(i).as_bytes())?))
        })
        .collect::<Result<_>>()?;
    println!(
        "{inventories} machines' PROLOG + INVENTORY ({} KB compressed each) made in {:.1} s; {agents} agents",
        bodies[0].1.len() / 1024,
        made.elapsed().as_secs_f64()
    );
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let cpu0 = collector.cpu_seconds();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..agents {
        let (client, url, bodies, next, acked, refused) = (
            client.clone(),
            url.clone(),
            bodies.clone(),
            next.clone(),
            acked.clone(),
            refused.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((prolog, inventory)) = bodies.get(i) else {
                    break;
                };
                let send = |body: &Vec<u8>| {
                    client
                        .post(&url)
                        .basic_auth("ocs", Some(SECRET))
                        .header("content-type", "application/x-compress")
                        .body(body.clone())
                        .send()
                };
                let ok = match send(prolog).await {
                    Ok(r) if r.status().is_success() => {
                        unzlib(&r.bytes().await.unwrap_or_default()).contains("SEND")
                    }
                    _ => false,
                };
                if !ok {
                    refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                match send(inventory).await {
                    Ok(r) if r.status().is_success() => {
                        let reply = unzlib(&r.bytes().await.unwrap_or_default());
                        if reply.contains("no_account_update") {
                            acked.fetch_add(1, Ordering::Relaxed);
                        } else {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(r) => {
                        eprintln!("inventory {i}: {}", r.status());
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("inventory {i}: {e}");
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = collector.cpu_seconds() - cpu0;
    let peak = collector.peak_rss_mib();
    let listed: serde_json::Value = serde_json::from_str(
        &collector.cli(&["--format", "json", "ci", "list", "--class", "computer"])?,
    )?;
    let stored = listed.as_array().map_or(0, Vec::len);
    println!("| agents | inventories | acknowledged | refused | stored | s | inventories/s | collector CPU s | peak RSS MiB |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {agents} | {inventories} | {} | {} | {stored} | {secs:.1} | {:.0} | {cpu:.1} | {peak:.0} |",
        acked.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        acked.load(Ordering::Relaxed) as f64 / secs,
    );
    let _ = std::fs::remove_file(&secret_file);
    if stored != acked.load(Ordering::Relaxed) {
        bail!(
            "acknowledged {} but stored {stored}",
            acked.load(Ordering::Relaxed)
        );
    }
    Ok(())
}
