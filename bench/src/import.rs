//! Importing OCS inventories at fleet size, in process (`import-bench`): N machines made
//! from the real `ocsinventory-agent --local` output of the CI machine (861 packages; each
//! machine its own DEVICEID, host name, serial, UUID and MACs), parsed and imported through
//! `ops::foreign::import_bytes` (the same path as `census-collector import --from ocs`) on
//! T threads into a fresh store; the rate and the resident memory every 1,000.
//!
//!   import-bench [--inventories 10000] [--threads 2] [--dir /tmp/census-import-bench]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "inprocess.rs"]
mod inprocess;
#[path = "ocs_fleet.rs"]
mod ocs_fleet;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use census_collector::foreign::ocs::Format;
use census_collector::ingest::Ingest;
use census_collector::ops::foreign::{import_bytes, Outcome};
use census_collector::store::{Cmdb, Store};
use ocs_fleet::{machine, TEMPLATE};

fn main() -> Result<()> {
    let mut inventories = 10_000usize;
    let mut threads = 2usize;
    let mut dir = std::env::temp_dir().join("census-import-bench");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().context("a value after the flag");
        match a.as_str() {
            "--inventories" => inventories = value()?.parse()?,
            "--threads" => threads = value()?.parse()?,
            "--dir" => dir = value()?.into(),
            other => bail!("unknown argument {other}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let store: Arc<dyn Store> = Arc::new(Cmdb::open(&dir)?);
    let ingest = Ingest::new(store.clone());
    // The template parsed once, to check it still reads before the clock runs.
    let check = import_bytes(
        store.as_ref(),
        &ingest,
        Format::Ocs,
        "check",
        machine(0).as_bytes(),
        true,
    )?;
    if check.outcome != Outcome::WouldCreate {
        bail!("the template does not import: {check:?}");
    }
    println!(
        "{inventories} OCS inventories ({} KB each, {} packages), {threads} threads, store {}",
        TEMPLATE.len() / 1024,
        check.packages,
        dir.display()
    );
    println!("| imported | s | inventories/s (last 1,000) | inventories/s (all) | RSS MiB |");
    println!("|---:|---:|---:|---:|---:|");
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let started = Instant::now();
    let last = std::sync::Mutex::new((0usize, Instant::now()));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= inventories {
                    break;
                }
                let xml = machine(i);
                match import_bytes(
                    store.as_ref(),
                    &ingest,
                    Format::Ocs,
                    "bench",
                    xml.as_bytes(),
                    false,
                ) {
                    Ok(o) if o.outcome == Outcome::New => {}
                    Ok(o) => {
                        eprintln!("inventory {i}: {o:?}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("inventory {i}: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_multiple_of(1000) || n == inventories {
                    if let Ok(mut l) = last.lock() {
                        let now = Instant::now();
                        let recent = (n - l.0) as f64 / now.duration_since(l.1).as_secs_f64();
                        *l = (n, now);
                        let all = started.elapsed().as_secs_f64();
                        println!(
                            "| {n} | {all:.1} | {recent:.0} | {:.0} | {} |",
                            n as f64 / all,
                            inprocess::status_kib("VmRSS:") / 1024
                        );
                    }
                }
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    store.flush()?;
    let computers = store
        .list_cis(Some(census_collector::model::CiClass::Computer))?
        .len();
    println!(
        "\n{inventories} imported in {secs:.1} s: {:.0} inventories/s; {} failed; {computers} computers; peak RSS {} MiB; store {} MB ({:.1} KB per computer)",
        inventories as f64 / secs,
        failed.load(Ordering::Relaxed),
        inprocess::status_kib("VmHWM:") / 1024,
        store.size_on_disk()? / 1_000_000,
        store.size_on_disk()? as f64 / 1000.0 / computers.max(1) as f64
    );
    Ok(())
}
