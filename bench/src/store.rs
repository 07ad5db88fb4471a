//! What a fleet costs the store: N computers with this machine's real inventory, ingested
//! in-process through the real path (`Ingest::snapshot`: signed zstd bodies, verification,
//! identification, reconciliation, drift, one transaction each), then D drift rounds of
//! five package upgrades per computer. Prints ingest rates, bytes on disk per computer,
//! the live bytes of every key space, and the history bytes one drift writes.
//!
//! usage: store-bench [--computers N] [--drifts D] [--threads T] [--dir PATH] [--keep]
//!                    [--base inventory.json] [--bin DIR] [--cache-mb MB] [--engine sled|redb]

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use census_collector::ingest::Ingest;
use census_collector::store::{Cmdb, Store};
use census_shared::Snapshot;

mod inprocess;
mod inventory;
use inprocess::{bench_token, enroll, ingest_batch, prepare, status_kib, Agent, Prepared, BATCH};

/// The collector's allocator: this is the collector's ingest path, in-process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn du(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += std::os::unix::fs::MetadataExt::blocks(&m) * 512,
                Err(_) => {}
            }
        }
    }
    total
}

/// One phase: every computer's next snapshot (made by `snap(i)`) through the ingest path
/// on `threads` threads; the rate over the timed part only.
fn phase(
    agents: &mut [Agent],
    threads: usize,
    ingest: &Ingest,
    snap: impl Fn(usize) -> Snapshot + Sync,
) -> Result<f64> {
    let mut timed = std::time::Duration::ZERO;
    for (b, batch) in agents.chunks_mut(BATCH).enumerate() {
        let work: Vec<Prepared> = batch
            .iter_mut()
            .enumerate()
            .map(|(k, a)| prepare(a, snap(b * BATCH + k)))
            .collect::<Result<_>>()?;
        timed += std::time::Duration::from_secs_f64(ingest_batch(ingest, &work, threads)?);
    }
    Ok(agents.len() as f64 / timed.as_secs_f64())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut computers, mut drifts, mut threads) = (1000usize, 10usize, 2usize);
    let mut dir = std::env::temp_dir().join(format!("census-store-bench-{}", std::process::id()));
    let mut keep = false;
    let mut base: Option<PathBuf> = None;
    let mut bin = PathBuf::from("target/release");
    let mut cache_mb: u64 = 256;
    let mut engine = String::from("redb");
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--computers" => computers = value()?.parse()?,
            "--drifts" => drifts = value()?.parse()?,
            "--threads" => threads = value()?.parse()?,
            "--dir" => dir = value()?.into(),
            "--keep" => keep = true,
            "--base" => base = Some(value()?.into()),
            "--bin" => bin = value()?.into(),
            "--cache-mb" => cache_mb = value()?.parse()?,
            "--engine" => engine = value()?,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let base: Snapshot = match base {
        Some(p) => serde_json::from_slice(&std::fs::read(p)?)?,
        None => inventory::this_machine(&bin)?,
    };
    let packages = base.software.data().map(Vec::len).unwrap_or(0);
    let _ = std::fs::remove_dir_all(&dir);
    // PostgreSQL: a throwaway cluster (dropped at exit), a database of its own.
    let postgres = (engine == "postgres").then(|| {
        let cluster = census_e2e::pg::Cluster::shared();
        (cluster, cluster.database("store_bench"))
    });
    let full_vacuum = std::env::var_os("CENSUS_BENCH_VACUUM_FULL").is_some();
    let store = Arc::new(match engine.as_str() {
        "sled" => Cmdb::open_with_cache(&dir, cache_mb * 1024 * 1024)?,
        "redb" => Cmdb::open_redb(&dir, cache_mb * 1024 * 1024)?,
        "postgres" => Cmdb::open_postgres(census_collector::store::pg_backend::PgOptions::new(
            postgres
                .as_ref()
                .map(|(_, url)| url.clone())
                .unwrap_or_default(),
        ))?,
        other => anyhow::bail!("--engine {other}: sled, redb or postgres"),
    });
    bench_token(&store)?;
    let mut agents = Vec::with_capacity(computers);
    for i in 0..computers {
        agents.push(enroll(&store, i)?);
    }
    let ingest = Ingest::new(store.clone() as Arc<dyn Store>);
    // The collector's group commit: flush again as soon as the last flush returns, so
    // every commit is made durable within one flush, as before an ack.
    let flushing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flusher = inprocess::group_flusher(store.clone(), flushing.clone());
    println!(
        "{computers} computers x {packages} packages, {drifts} drifts of 5 upgrades, {threads} threads, in-process, {engine}"
    );
    println!("| phase | snapshots | per second |");
    println!("|---|---:|---:|");
    let rate = phase(&mut agents, threads, &ingest, |i| {
        inventory::vary(&base, i, 0)
    })?;
    println!("| first inventories | {computers} | {rate:.0} |");
    // The collector's sequencer numbers queued feed events every second.
    store.sequence_events(usize::MAX)?;
    store.flush()?;
    let after_first = store.size_on_disk()?;
    let steps_after_first = step_bytes(&store)?;
    for round in 1..=drifts {
        let rate = phase(&mut agents, threads, &ingest, |i| {
            inventory::vary(&base, i, round)
        })?;
        println!("| drift round {round} (5 upgrades each) | {computers} | {rate:.0} |");
        store.sequence_events(usize::MAX)?;
        if let Some((cluster, _)) = &postgres {
            // A fleet's drift round is a day; autovacuum passes every minute. Its pass
            // between rounds (not a rewrite: old row versions become reusable space).
            cluster
                .psql("store_bench", "VACUUM")
                .map_err(anyhow::Error::msg)?;
        }
    }
    flushing.store(false, std::sync::atomic::Ordering::Relaxed);
    let flushes = flusher
        .join()
        .map_err(|_| anyhow::anyhow!("the flusher panicked"))??;
    store.flush()?;
    let steps_after = step_bytes(&store)?;
    let on_disk = store.size_on_disk()?;
    let du_bytes = du(&dir);
    println!();
    println!(
        "store after first inventories: {:.1} MB ({:.1} KB per computer)",
        after_first as f64 / 1e6,
        after_first as f64 / computers as f64 / 1e3
    );
    println!(
        "store after {drifts} drifts: {:.1} MB on disk by sled's count, {:.1} MB by du: {:.1} KB per computer",
        on_disk as f64 / 1e6,
        du_bytes as f64 / 1e6,
        du_bytes.max(on_disk) as f64 / computers as f64 / 1e3
    );
    if drifts > 0 {
        println!(
            "history written per drift (one step, 5 upgrades): {:.0} bytes",
            (steps_after - steps_after_first) as f64 / (computers * drifts) as f64
        );
    }
    println!(
        "peak RSS: {} MiB; {flushes} group flushes",
        status_kib("VmHWM:") / 1024
    );
    if let Some((cluster, _)) = &postgres {
        // What autovacuum does between drift rounds (a fleet's round is a day, its naptime
        // a minute): old row versions become free space, reused by later writes.
        vacuum_and_measure(cluster, &store, computers, "VACUUM")?;
        if full_vacuum {
            // The floor: every table rewritten without its free space.
            vacuum_and_measure(cluster, &store, computers, "VACUUM FULL")?;
        }
    }
    println!();
    println!("| key space | records | key bytes | value bytes | per computer |");
    println!("|---|---:|---:|---:|---:|");
    let mut live = 0;
    for s in store.space_stats()? {
        if s.records == 0 {
            continue;
        }
        let bytes = s.key_bytes + s.value_bytes;
        live += bytes;
        println!(
            "| {} | {} | {} | {} | {:.0} |",
            s.space,
            s.records,
            s.key_bytes,
            s.value_bytes,
            bytes as f64 / computers as f64
        );
    }
    println!(
        "| all (live keys and values) | | | {live} | {:.0} |",
        live as f64 / computers as f64
    );
    drop(ingest);
    drop(store);
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// Runs `vacuum` on the bench's database and prints the size it leaves, in all and per table.
fn vacuum_and_measure(
    cluster: &census_e2e::pg::Cluster,
    store: &Cmdb,
    computers: usize,
    vacuum: &str,
) -> Result<()> {
    cluster
        .psql("store_bench", vacuum)
        .map_err(anyhow::Error::msg)?;
    let bytes = store.size_on_disk()?;
    println!(
        "PostgreSQL after {vacuum}: {:.1} MB = {:.1} KB per computer (pg_total_relation_size over the census schema)",
        bytes as f64 / 1e6,
        bytes as f64 / computers as f64 / 1e3
    );
    println!("tables over 1 MB: {}", big_tables(cluster)?);
    Ok(())
}

/// The census schema's tables over 1 MB, biggest first, with their total size.
fn big_tables(cluster: &census_e2e::pg::Cluster) -> Result<String> {
    cluster
        .psql(
            "store_bench",
            "SELECT string_agg(relname || ' ' || pg_total_relation_size(c.oid) / 1024 || ' KB', ', ' \
             ORDER BY pg_total_relation_size(c.oid) DESC) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'census' AND c.relkind = 'r' AND pg_total_relation_size(c.oid) > 1048576",
        )
        .map_err(anyhow::Error::msg)
}

fn step_bytes(store: &Cmdb) -> Result<u64> {
    Ok(store
        .space_stats()?
        .into_iter()
        .filter(|s| s.space == census_collector::store::backend::Space::Steps.name())
        .map(|s| s.key_bytes + s.value_bytes)
        .sum())
}
