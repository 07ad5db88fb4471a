//! Drift engine cost: two 2,000-package inventories that differ by 20 changes. Prints time
//! per operation and heap allocations (counted by a wrapping global allocator), one core.
//!
//! usage: drift-bench [--packages N] [--changes N] [--iters N]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use census_collector::drift::diff::diff;
use census_collector::drift::view::ConfigView;
use census_collector::reconcile;
use census_collector::store::OwnedState;
use census_shared::{Os, Section, Snapshot, Software};
use chrono::Utc;

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn inventory(packages: usize) -> Snapshot {
    let mut s = Snapshot::empty("agt_bench", 1, Utc::now());
    s.os = Section::collected(Os {
        family: "linux".into(),
        name: Some("Debian GNU/Linux".into()),
        version_id: Some("12".into()),
        kernel_version: Some("6.1.0-18-amd64".into()),
        arch: "x86_64".into(),
        hostname: "bench".into(),
        ..Default::default()
    });
    s.software = Section::collected(
        (0..packages)
            .map(|i| Software {
                name: format!("package-{i:05}"),
                version: format!("{}.{}.{}-{}+deb12u{}", i % 7, i % 13, i % 31, i % 5, i % 3),
                arch: Some(if i % 50 == 0 { "i386" } else { "amd64" }.into()),
                source: "dpkg".into(),
                publisher: Some("Debian Maintainers <debian@example.org>".into()),
                source_package: Some(format!("src-{}", i / 3)),
                ..Default::default()
            })
            .collect(),
    );
    s
}

fn measure<T>(name: &str, iters: u32, mut f: impl FnMut() -> T) {
    black_box(f());
    let (a0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    let started = Instant::now();
    for _ in 0..iters {
        black_box(f());
    }
    let per = started.elapsed().as_secs_f64() / iters as f64;
    let allocs = (ALLOCS.load(Ordering::Relaxed) - a0) / iters as u64;
    let kib = (BYTES.load(Ordering::Relaxed) - b0) / iters as u64 / 1024;
    println!("| {name} | {:.1} µs | {allocs} | {kib} KiB |", per * 1e6);
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut packages, mut changes, mut iters) = (2000usize, 20usize, 200u32);
    while let Some(a) = args.next() {
        let mut value = || -> anyhow::Result<usize> {
            Ok(args
                .next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))?
                .parse()?)
        };
        match a.as_str() {
            "--packages" => packages = value()?,
            "--changes" => changes = value()?,
            "--iters" => iters = value()? as u32,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let before = inventory(packages);
    let mut after = before.clone();
    if let Some(sw) = after.software.data_mut() {
        // A quarter each: upgrades, downgrades, removals (from the end), installs.
        let q = (changes / 4).max(1);
        for p in sw.iter_mut().take(q) {
            p.version = format!("99:{}", p.version);
        }
        for p in sw.iter_mut().skip(q).take(q) {
            p.version = format!("{}~old", p.version);
        }
        sw.truncate(sw.len().saturating_sub(q));
        for i in 0..changes.saturating_sub(3 * q) {
            sw.push(Software {
                name: format!("new-package-{i}"),
                version: "1.0-1".into(),
                arch: Some("amd64".into()),
                source: "dpkg".into(),
                ..Default::default()
            });
        }
    }
    let cid = "cmp_bench";
    let now = Utc::now();
    let (da, db) = (
        reconcile::desired(cid, &before, now),
        reconcile::desired(cid, &after, now),
    );
    fn view(d: &reconcile::Desired) -> ConfigView<'_> {
        ConfigView::build(&d.attributes, d.components.values(), d.installs.values())
    }
    let (va, vb) = (view(&da), view(&db));
    let items = diff(&va, &vb);
    println!(
        "drift: {packages} packages, {} items from {changes} changes, {iters} iterations, one core\n",
        items.len()
    );
    println!("| operation | time | allocations | allocated |");
    println!("|---|---|---|---|");
    measure("diff (two prebuilt views)", iters, || diff(&va, &vb));
    let d = reconcile::desired(cid, &after, now);
    measure("build one view from a desired state", iters, || {
        ConfigView::build(&d.attributes, d.components.values(), d.installs.values())
    });
    measure("desired state from a snapshot", iters, || {
        reconcile::desired(cid, &after, now)
    });
    // The whole reconcile step as ingest runs it: desired state, plan, both views, diff.
    let settings = census_collector::model::register::RegisterSettings::default();
    let first = reconcile::plan(
        cid,
        "agt",
        &OwnedState::default(),
        reconcile::desired(cid, &before, now),
        &settings,
        now,
    );
    let stored = OwnedState {
        computer: first.computer.clone(),
        components: first.ci_puts.clone(),
        relationships: first.relationship_puts.clone(),
        installs: first.install_puts.clone(),
    };
    measure(
        "desired + plan incl. drift diff (ingest path)",
        iters,
        || {
            reconcile::plan(
                cid,
                "agt",
                &stored,
                reconcile::desired(cid, &after, now),
                &settings,
                now,
            )
        },
    );
    let p = reconcile::plan(
        cid,
        "agt",
        &stored,
        reconcile::desired(cid, &after, now),
        &settings,
        now,
    );
    assert_eq!(
        p.items.len(),
        items.len(),
        "plan and bench agree on the items"
    );
    Ok(())
}
