//! Query performance on a generated CMDB: N computers x M packages ingested through the
//! real ingest path (signed, encoded snapshots into `Ingest::snapshot` on a sled store),
//! then the asset managers' questions timed in-process (no HTTP): the first run after
//! opening the store (cold) and p50/p99 over R more runs of computers with package X below
//! version V, one CI's detail and an as-of read; a CSV export of every computer (peak RSS
//! during the export).
//!
//! usage: query-bench [--computers N] [--packages M] [--runs R] [--dir PATH] [--keep]
//!                    [--cache-mb MB] [--only package|impact|detail|asof|csv|register|health|services|vulns|titles|map|compliance]
//!                    [--store URL]
//!                    [--chunk-bits BITS]

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use census_collector::ingest::Ingest;
use census_collector::model::*;
use census_collector::query::{self, filter, views, Query, Sort};
use census_collector::store::{Cmdb, Store};

mod inprocess;
use census_shared::{
    Connection, FlowDirection, IpAddress, NetworkInterface, Os, Section, Snapshot, Software, System,
};
use chrono::{DateTime, Utc};
use inprocess::{bench_token, enroll, ingest_batch, prepare, status_kib, Agent, Prepared, BATCH};

/// The collector's allocator: seeding runs the real ingest path in-process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A deterministic pseudo-random stream (no dependency, reproducible runs).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

const VERSIONS: [&str; 3] = ["1.9-1", "2.0-1", "2.1-1"];

fn snapshot(i: usize, packages: usize, rng: &mut Lcg, bump: bool) -> Snapshot {
    let mut s = Snapshot::empty("", 0, Utc::now());
    s.agent_version = "bench".into();
    s.system = Section::collected(System {
        vendor: Some("Dell Inc.".into()),
        model: Some("PowerEdge R650".into()),
        serial: Some(format!("SER{i:08}")),
        machine_id: Some(format!("{i:032x}")),
        ..Default::default()
    });
    s.os = Section::collected(Os {
        family: "linux".into(),
        name: Some("Debian GNU/Linux".into()),
        id: Some("debian".into()),
        version_id: Some(if i.is_multiple_of(4) { "11" } else { "12" }.into()),
        kernel_version: Some("6.1.0-18-amd64".into()),
        arch: "x86_64".into(),
        hostname: format!("host{i:05}"),
        ..Default::default()
    });
    s.network_interfaces = Section::collected(vec![NetworkInterface {
        name: "eth0".into(),
        mac: Some(format!(
            "52:54:{:02x}:{:02x}:{:02x}:{:02x}",
            (i >> 24) & 0xff,
            (i >> 16) & 0xff,
            (i >> 8) & 0xff,
            i & 0xff
        )),
        kind: "ethernet".into(),
        physical: true,
        addresses: vec![IpAddress {
            address: address(i),
            prefix: 16,
            family: "ipv4".into(),
            scope: Some("global".into()),
        }],
        ..Default::default()
    }]);
    // 70 % of the packages are common to every host, the rest drawn from a wider pool.
    let common = packages * 7 / 10;
    let mut sw: Vec<Software> = (0..common)
        .map(|p| {
            let mut v = VERSIONS[(rng.next() % 3) as usize].to_string();
            if bump && p == 10 {
                v = "2.2-1".into();
            }
            Software {
                name: format!("pkg-{p:05}"),
                version: v,
                arch: Some("amd64".into()),
                source: "dpkg".into(),
                install_date: Some(installed_at(i, p)),
                ..Default::default()
            }
        })
        .collect();
    let mut extra = std::collections::BTreeSet::new();
    while extra.len() < packages - common {
        extra.insert(common + (rng.next() as usize % (packages * 3)));
    }
    sw.extend(extra.into_iter().map(|p| Software {
        name: format!("pkg-{p:05}"),
        version: VERSIONS[(rng.next() % 3) as usize].into(),
        arch: Some("amd64".into()),
        source: "dpkg".into(),
        install_date: Some(installed_at(i, p)),
        ..Default::default()
    }));
    s.software = Section::collected(sw);
    s.connections = Section::collected(flows_of(i, computers_seeded()));
    s
}

fn address(i: usize) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)
}

/// How many computers the seeded fleet has (the flows name their peers by number).
static SEEDED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn computers_seeded() -> usize {
    SEEDED.load(std::sync::atomic::Ordering::Relaxed)
}

/// A three-tier fleet in groups of ten: computer 0 of a group is a database (5432), 1-4
/// application servers (8080) that each use their group's database and the next group's,
/// 5-9 web servers that each use two of their group's application servers; every host
/// also calls 443 on two external addresses. Both sides report each flow.
fn flows_of(i: usize, n: usize) -> Vec<Connection> {
    let groups = (n / 10).max(1);
    let g = i / 10;
    let now = Utc::now();
    let flow = |direction, port, peer: String, process: &str| Connection {
        direction,
        protocol: "tcp".into(),
        port,
        remote_address: peer,
        process: Some(process.into()),
        samples: 60,
        peak_connections: 4,
        first_seen: now - chrono::Duration::hours(1),
        last_seen: now,
    };
    let mut out = vec![
        flow(
            FlowDirection::Outbound,
            443,
            format!("203.0.{}.{}", g % 256, i % 7),
            "curl",
        ),
        flow(
            FlowDirection::Outbound,
            443,
            format!("198.51.100.{}", i % 50),
            "curl",
        ),
    ];
    let in_group = |k: usize| (g * 10 + k < n).then_some(g * 10 + k);
    match i % 10 {
        0 => {
            let prev = (g + groups - 1) % groups;
            for k in 1..=4 {
                for client in [in_group(k), (prev * 10 + k < n).then_some(prev * 10 + k)]
                    .into_iter()
                    .flatten()
                {
                    out.push(flow(
                        FlowDirection::Inbound,
                        5432,
                        address(client),
                        "postgres",
                    ));
                }
            }
        }
        app @ 1..=4 => {
            for db in [g * 10, ((g + 1) % groups) * 10] {
                if db < n {
                    out.push(flow(
                        FlowDirection::Outbound,
                        5432,
                        address(db),
                        "/usr/bin/orders",
                    ));
                }
            }
            for w in 5..=9 {
                if (1 + w % 4 == app || 1 + (w + 1) % 4 == app) && g * 10 + w < n {
                    out.push(flow(
                        FlowDirection::Inbound,
                        8080,
                        address(g * 10 + w),
                        "/usr/bin/orders",
                    ));
                }
            }
        }
        w => {
            for app in [1 + w % 4, 1 + (w + 1) % 4] {
                if let Some(a) = in_group(app) {
                    out.push(flow(FlowDirection::Outbound, 8080, address(a), "nginx"));
                }
            }
        }
    }
    out
}

/// A different install time on every computer, as the agents report them (dpkg's .list
/// files, rpm's INSTALLTIME): no two computers' edges for a package are byte-identical.
fn installed_at(computer: usize, package: usize) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(
        1_700_000_000 + (computer * 7919 + package * 104_729) as i64 % 31_536_000,
        0,
    )
    .unwrap_or_default()
}

fn percentiles(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

/// Runs `query` once cold (the first after opening the store: pages come from disk) and
/// then `runs` times, and prints the row: first, p50 and p99 of the later runs.
fn measure<T>(
    label: &str,
    runs: usize,
    mut query: impl FnMut() -> Result<T>,
    result: impl Fn(&T) -> String,
) -> Result<()> {
    let t = Instant::now();
    let mut last = query()?;
    let first = t.elapsed().as_secs_f64() * 1e3;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        last = query()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (p50, p99) = percentiles(times);
    println!(
        "| {label} | {runs} | {first:.1} | {p50:.1} | {p99:.1} | {} |",
        result(&last)
    );
    Ok(())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut computers, mut packages, mut runs) = (10_000usize, 1000usize, 50usize);
    let mut dir = std::env::temp_dir().join(format!("census-query-bench-{}", std::process::id()));
    let mut keep = false;
    let mut cache_mb: u64 = 256;
    let mut only: Option<String> = None;
    let mut pg: Option<String> = None;
    let mut chunk_bits: Option<u32> = None;
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--computers" => computers = value()?.parse()?,
            "--packages" => packages = value()?.parse()?,
            "--runs" => runs = value()?.parse()?,
            "--dir" => dir = value()?.into(),
            // Keep the seeded store, and reuse one that a previous --keep run left.
            "--keep" => keep = true,
            // The collector's --cache-mb: sled's page cache.
            "--cache-mb" => cache_mb = value()?.parse()?,
            // One section: package, impact, detail, asof, csv, vulns, titles, map, compliance.
            "--only" => only = Some(value()?),
            // A PostgreSQL database holding a seeded CMDB (`migrate-store` of a --keep
            // run's store); `--dir` still names the run's directory (its bench-t-mid).
            "--store" => pg = Some(value()?),
            // Seed a store whose postings hold 2^BITS computers a chunk (default: what a
            // new store gets), to compare posting layouts.
            "--chunk-bits" => chunk_bits = Some(value()?.parse()?),
            "--help" | "-h" => {
                println!(
                    "query-bench [--computers N] [--packages N] [--runs N] [--dir DIR] [--keep] \
                     [--cache-mb MB] [--only package|impact|detail|asof|csv|vulns|titles|map|compliance] \
                     [--store POSTGRES_URL] [--chunk-bits BITS]"
                );
                return Ok(());
            }
            other => anyhow::bail!("unknown flag {other} (--help lists them)"),
        }
    }
    let reuse =
        keep && (dir.join("conf").exists() || dir.join("census.redb").exists() || pg.is_some());
    if !reuse {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if let (Some(bits), false, None) = (chunk_bits, reuse, &pg) {
        // An empty store told its layout before its first posting is written.
        let layout = census_collector::store::codec::Postings::from_bits(bits)?;
        let store = Cmdb::open_with_cache(&dir, cache_mb * 1024 * 1024)?;
        store.backend().put(
            census_collector::store::backend::Space::Meta,
            census_collector::store::codec::POSTINGS_META_KEY,
            &layout.to_meta(),
        )?;
        store.backend().flush()?;
    }
    let store = Arc::new(match &pg {
        Some(url) => Cmdb::open_postgres(census_collector::store::pg_backend::PgOptions::new(
            url.clone(),
        ))?,
        None => Cmdb::open_with_cache(&dir, cache_mb * 1024 * 1024)?,
    });
    println!(
        "store: {}",
        match &pg {
            Some(url) => census_collector::store::pg_backend::redact(url),
            None => dir.display().to_string(),
        }
    );
    let t_mid = if reuse {
        let mid_file = std::fs::read_to_string(dir.join("bench-t-mid"))?;
        DateTime::parse_from_rfc3339(mid_file.trim())?.with_timezone(&Utc)
    } else {
        seed(&store, &dir, computers, packages)?
    };
    report(&store, &dir, runs, packages, t_mid, only.as_deref())?;
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

fn seed(
    store: &Arc<Cmdb>,
    dir: &std::path::Path,
    computers: usize,
    packages: usize,
) -> Result<DateTime<Utc>> {
    SEEDED.store(computers, std::sync::atomic::Ordering::Relaxed);
    bench_token(store)?;
    let ingest = Arc::new(Ingest::new(store.clone() as Arc<dyn Store>));

    // Seed: every computer once; then 10 % again with pkg-00010 upgraded (history). Bodies
    // are made and signed in batches before the clock runs (an agent's work, not the
    // collector's); enrollment is timed apart.
    let started = Instant::now();
    let t_enroll = Instant::now();
    let mut agents: Vec<(usize, Agent)> = Vec::with_capacity(computers);
    for i in 0..computers {
        agents.push((i, enroll(store, i)?));
    }
    let enroll_s = t_enroll.elapsed().as_secs_f64();
    let mut ingest_s = 0.0;
    let mut rng = Lcg(1);
    for batch in agents.chunks_mut(BATCH) {
        let work: Vec<Prepared> = batch
            .iter_mut()
            .map(|(i, a)| prepare(a, snapshot(*i, packages, &mut rng, false)))
            .collect::<Result<_>>()?;
        ingest_s += ingest_batch(&ingest, &work, 2)?;
        if let Some((i, _)) = batch.last() {
            eprintln!(
                "seeded {} ({:.0} s)",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let t_mid: DateTime<Utc> = Utc::now();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut rng = Lcg(99);
    let mut again: Vec<&mut (usize, Agent)> = agents
        .iter_mut()
        .filter(|(i, _)| i.is_multiple_of(10))
        .collect();
    for batch in again.chunks_mut(BATCH) {
        let work: Vec<Prepared> = batch
            .iter_mut()
            .map(|e| {
                let (i, a) = &mut **e;
                prepare(a, snapshot(*i, packages, &mut rng, true))
            })
            .collect::<Result<_>>()?;
        ingest_s += ingest_batch(&ingest, &work, 2)?;
    }
    store.flush()?;
    std::fs::write(dir.join("bench-t-mid"), t_mid.to_rfc3339())?;
    let seed_s = started.elapsed().as_secs_f64();
    let size_mb = store.size_on_disk()? as f64 / 1e6;
    println!(
        "CMDB: {computers} computers x {packages} packages; enrolled in {enroll_s:.0} s; {} snapshots ingested through Ingest::snapshot (2 threads) in {ingest_s:.0} s of ingest ({:.0}/s), {seed_s:.0} s in all with making the bodies; store {size_mb:.0} MB ({:.1} KB per computer)\n",
        computers + computers.div_ceil(10),
        (computers + computers.div_ceil(10)) as f64 / ingest_s,
        size_mb * 1e3 / computers as f64
    );
    Ok(t_mid)
}

fn report(
    store: &Arc<Cmdb>,
    dir: &std::path::Path,
    runs: usize,
    packages: usize,
    t_mid: DateTime<Utc>,
    only: Option<&str>,
) -> Result<()> {
    let _ = dir;
    // The sections run alone print their own tables.
    if !matches!(only, Some("vulns" | "titles" | "map" | "compliance")) {
        println!("| query | runs | first ms | p50 ms | p99 ms | result |");
        println!("|---|---:|---:|---:|---:|---|");
    }
    let wanted = |name: &str| only.is_none_or(|o| o == name);

    let now = Utc::now();
    let q = Query {
        class: CiClass::Computer,
        filter: filter::parse(r#"software.name = "pkg-00010" and software.version < "2.0-1""#)?,
        sort: Sort::parse("name").map_err(anyhow::Error::msg)?,
        limit: 100,
        after: None,
    };
    if wanted("package") {
        measure(
            "computers with pkg-00010 < 2.0-1 (first page of 100)",
            runs,
            || Ok(query::run(store.as_ref(), &q, now)?.total),
            |total| format!("{total} matches"),
        )?;
    }

    if wanted("impact") {
        // What `census software where pkg-00010 '<2.0-1'` asks: the API's default listing.
        let product = census_collector::reconcile::det_id(CiClass::SoftwareProduct, &["pkg-00010"]);
        let version = query::version_condition("<2.0-1")?;
        measure(
            "impact: computers installing pkg-00010 < 2.0-1 (1,000 listed)",
            runs,
            || views::impact(store.as_ref(), &product, 1, Some(&version), 1000)?.context("impact"),
            |v| format!("{} computers", v["computers_total"]),
        )?;
    }

    if only == Some("register") {
        return register(store, runs);
    }
    if only == Some("health") {
        return health(store, runs);
    }
    if only == Some("services") {
        return services(store, runs);
    }
    if only == Some("vulns") {
        return vulns(store, runs, packages);
    }
    if only == Some("titles") {
        return titles(store, runs);
    }
    if only == Some("map") {
        return map(store, runs);
    }
    if only == Some("compliance") {
        return compliance(store, runs);
    }
    let ids: Vec<String> = store
        .list_cis(Some(CiClass::Computer))?
        .into_iter()
        .map(|c| c.id)
        .collect();
    let mut pick = Lcg(7);
    if wanted("detail") {
        measure(
            "CI detail (relationships both ways, evidence)",
            runs,
            || {
                let id = &ids[pick.next() as usize % ids.len()];
                views::ci_detail(
                    store.as_ref(),
                    id,
                    None,
                    views::DEFAULT_LISTED_RELATIONSHIPS,
                )?
                .context("detail")
            },
            |d| {
                format!(
                    "{} edges out",
                    d["relationships_out_total"].as_u64().unwrap_or(0)
                )
            },
        )?;
    }

    if wanted("asof") {
        measure(
            "as-of read (version in force at a past time)",
            runs,
            || {
                let id = &ids[pick.next() as usize % ids.len()];
                store.as_of(id, t_mid)?.context("as-of found a version")
            },
            |v| format!("version {} with {} edges", v.version, v.relationships.len()),
        )?;
    }
    if !wanted("csv") {
        return Ok(());
    }

    // CSV export of every computer: constant memory means RSS does not grow with rows.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = status_kib("VmRSS:");
    let t = Instant::now();
    let mut rows = 0usize;
    let mut bytes = 0usize;
    let fields: Vec<String> = [
        "id",
        "name",
        "os.hostname",
        "os.version_id",
        "system.serial",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    store.scan_cis(CiClass::Computer, &mut |ci| {
        let row = query::select(&ci, &fields);
        let line: Vec<String> = fields
            .iter()
            .map(|f| census_collector::query_api::csv_cell(&row[f.as_str()]))
            .collect();
        bytes += line.join(",").len() + 2;
        rows += 1;
        true
    })?;
    let export_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss_peak = status_kib("VmHWM:");
    println!(
        "| CSV export of all computers (streamed scan) | 1 | {export_ms:.0} | — | — | {rows} rows, {} KB; RSS {} MiB before, peak {} MiB during |",
        bytes / 1000,
        rss_before / 1024,
        rss_peak / 1024
    );
    Ok(())
}

/// The asset register at this size (`--only register`, which writes to the store): a
/// register file with a row per computer and every field, checked (dry run) and applied
/// through the operation the import route calls, timed with the peak RSS of each; then
/// CI detail with the register filled in.
fn register(store: &Arc<Cmdb>, runs: usize) -> Result<()> {
    use census_collector::ops::register_csv::{import, ImportMode};
    use census_collector::ops::{Actor, Ops};
    let ops = Ops {
        store: store.clone() as Arc<dyn Store>,
        ingest: None,
    };
    let actor = Actor::new("bench");
    // Two custom fields, set by every row like the built-in ones.
    {
        use census_collector::model::register::{CustomField, FieldKind};
        let mut settings = census_collector::ops::register::settings(&ops)?;
        settings.custom_fields = vec![
            CustomField {
                class: CiClass::Computer,
                name: "u_rack".into(),
                description: "Rack and unit".into(),
                kind: FieldKind::Text { max_chars: 16 },
            },
            CustomField {
                class: CiClass::Computer,
                name: "u_tier".into(),
                description: String::new(),
                kind: FieldKind::Enum {
                    values: vec!["gold".into(), "silver".into(), "bronze".into()],
                },
            },
        ];
        census_collector::ops::register::put_settings(&ops, &actor, settings)?;
    }
    let mut file = String::from(
        "hostname,asset_tag,owner,assigned_user,location_site,location_building,location_room,department,cost_centre,supplier,order_number,invoice_number,purchase_date,purchase_cost,warranty_end,lifecycle_status,notes,u_rack,u_tier,serial_number\n",
    );
    let mut rows = 0usize;
    // A different owner every run, so a store kept from an earlier run is updated again.
    let run = Utc::now().timestamp();
    store.scan_cis(CiClass::Computer, &mut |ci| {
        let host = ci.attributes["os.hostname"].as_str().unwrap_or_default().to_string();
        file.push_str(&format!(
            "{host},AT-{rows:06},owner{}-{run},user{rows},Paris,HQ,R{},IT,CC-{},ACME,PO-{rows},INV-{rows},2024-03-{:02},{}.50,2027-03-{:02},deployed,\"bought with the {} batch, rack {}\",R{}-U{},{},{}\n",
            rows % 97,
            rows % 300,
            rows % 40,
            rows % 28 + 1,
            800 + rows % 700,
            rows % 28 + 1,
            rows / 1000,
            rows % 42,
            rows % 42,
            rows % 40,
            ["gold", "silver", "bronze"][rows % 3],
            // One computer in 100 gets a recorded serial discovery disagrees with.
            if rows.is_multiple_of(100) {
                format!("TYPO-{rows}-{run}")
            } else {
                String::new()
            }
        ));
        rows += 1;
        true
    })?;
    // What reading every computer once costs by itself (the import's index is one scan).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_kib("VmRSS:");
    let t = Instant::now();
    let mut scanned = 0usize;
    store.scan_cis(CiClass::Computer, &mut |_| {
        scanned += 1;
        true
    })?;
    println!(
        "scan of {scanned} computers alone: {:.0} ms, RSS {} MiB before, peak {} MiB",
        t.elapsed().as_secs_f64() * 1e3,
        before / 1024,
        status_kib("VmHWM:") / 1024
    );
    println!("\nregister file: {rows} rows, {} KB\n", file.len() / 1000);
    println!("| register step | ms | RSS before MiB | peak RSS MiB | result |");
    println!("|---|---:|---:|---:|---|");
    for (label, dry_run) in [
        ("import, dry run", true),
        ("import, apply (one transaction)", false),
    ] {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let before = status_kib("VmRSS:");
        let t = Instant::now();
        let report = import(
            &ops,
            &actor,
            "bench.csv",
            file.as_bytes(),
            ImportMode {
                dry_run,
                skip_problem_rows: false,
            },
        )
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if !dry_run {
            store.flush()?;
        }
        println!(
            "| {label} | {ms:.0} | {} | {} | {} updates, {} problems, applied {} |",
            before / 1024,
            status_kib("VmHWM:") / 1024,
            report.updates,
            report.problems_total,
            report.applied
        );
    }
    let mut ids = Vec::with_capacity(rows);
    store.scan_cis(CiClass::Computer, &mut |ci| {
        ids.push(ci.id);
        true
    })?;
    println!("\n| query | runs | first ms | p50 ms | p99 ms | result |");
    println!("|---|---:|---:|---:|---:|---|");
    let mut pick = Lcg(11);
    measure(
        "CI detail with the register filled in",
        runs,
        || {
            let id = &ids[pick.next() as usize % ids.len()];
            views::ci_detail(
                store.as_ref(),
                id,
                None,
                views::DEFAULT_LISTED_RELATIONSHIPS,
            )?
            .context("detail")
        },
        |d| {
            format!(
                "{} register fields",
                d["ci"]["attributes"]
                    .as_object()
                    .map(|a| a.keys().filter(|k| k.starts_with("register.")).count())
                    .unwrap_or(0)
            )
        },
    )?;
    // Licences over the same store: one product and a range, then a pattern of 100.
    use census_collector::ops::licences::{create, LicenceRequest};
    let licence = |name: &str, product: &str, versions: &str| LicenceRequest {
        name: name.into(),
        product: product.into(),
        versions: versions.into(),
        seats: 2000,
        expires: Some("2027-01-31".into()),
        cost: None,
        notes: None,
    };
    let one = create(&ops, &actor, licence("one product", "pkg-00010", "< 2.0-1"))?;
    let many = create(
        &ops,
        &actor,
        licence("100 products", "pkg-000*", ">= 2.0-1"),
    )?;
    for l in [one, many] {
        let label = format!(
            "licence consumption: {} ({} {})",
            l.name, l.product, l.versions
        );
        measure(
            &label,
            runs.min(50),
            || {
                Ok(census_collector::query::licences::usage(
                    store.as_ref(),
                    std::slice::from_ref(&l),
                    Utc::now(),
                    None,
                )?
                .0)
            },
            |u| format!("{} computers, {} over", u[0].installed_on, u[0].over),
        )?;
    }
    measure(
        "expiry report, 30 days (licences and every computer's warranty)",
        runs.min(20),
        || {
            Ok(census_collector::query::licences::expiring(
                store.as_ref(),
                30,
                Utc::now(),
            )?)
        },
        |e| {
            format!(
                "{} licences, {} warranties",
                e.licences.len(),
                e.warranties_total
            )
        },
    )?;
    measure(
        "reconciliation items across the CMDB (GET /api/v1/register/reconciliation)",
        runs.min(20),
        || {
            Ok(census_collector::ops::register::reconciliation(
                &ops, false,
            )?)
        },
        |l| format!("{} open items", l.total),
    )?;
    measure(
        "a CI's register (GET /api/v1/cis/{id}/register's operation)",
        runs,
        || {
            let id = &ids[pick.next() as usize % ids.len()];
            Ok(census_collector::ops::register::get(&ops, id)?)
        },
        |v| format!("{} fields", v.fields.len()),
    )?;
    Ok(())
}

/// Software titles at this size (`--only titles`): the titles page and the catalogue page
/// under the built-in rules, and a dry replay of a draft (every product titled twice).
fn titles(store: &Arc<Cmdb>, runs: usize) -> Result<()> {
    use census_collector::model::titles::{default_rules, SoftwareRule, Titler};
    use census_collector::query::titles::{self, TitleFilter};
    println!("| query | runs | first ms | p50 ms | p99 ms | result |");
    println!("|---|---:|---:|---:|---:|---|");
    measure(
        "software titles, first page of 100 (computers and versions per title)",
        runs,
        || {
            Ok(titles::titles(
                store.as_ref(),
                &TitleFilter::default(),
                100,
                None,
            )?)
        },
        |(page, total)| format!("{total} titles, first with {} computers", page[0].computers),
    )?;
    measure(
        "software catalogue, first page of 100 (with titles)",
        runs,
        || Ok(views::catalogue(store.as_ref(), None, 100, None)?),
        |(_, total)| format!("{total} products"),
    )?;
    // A draft that rolls the generated packages into ten titles, before the built-in rules.
    let mut rules = vec![SoftwareRule {
        name: Some(r"^pkg-\d*(\d)$".into()),
        set_product: Some("Generated ${1}".into()),
        set_category: Some("bench".into()),
        ..SoftwareRule::default()
    }];
    rules.extend(default_rules());
    let titler = Titler::compile(&rules).map_err(anyhow::Error::msg)?;
    measure(
        "title replay, dry (every product under the draft and the applied rules)",
        runs.min(20),
        || {
            Ok(titles::replay(
                store.as_ref(),
                &titler,
                rules.len(),
                &mut |_, _| {},
            )?)
        },
        |r| {
            format!(
                "{} products, {} change, {} titles after",
                r.products, r.changed, r.titles_after
            )
        },
    )?;
    Ok(())
}

/// CMDB health at this size (`--only health`): the whole report (every class scanned,
/// every defect counted), with its peak memory.
fn health(store: &Arc<Cmdb>, runs: usize) -> Result<()> {
    use census_collector::model::health::HealthSettings;
    use census_collector::query::health::{report, DefectFilter};
    let settings = HealthSettings::default();
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_kib("VmRSS:");
    println!("| query | runs | first ms | p50 ms | p99 ms | result |");
    println!("|---|---:|---:|---:|---:|---|");
    measure(
        "CMDB health: every class scored, every defect counted",
        runs.min(10),
        || {
            Ok(report(
                store.as_ref(),
                &settings,
                DefectFilter::default(),
                Utc::now(),
            )?)
        },
        |r| {
            let computers = r
                .classes
                .iter()
                .find(|c| c.class == CiClass::Computer)
                .map_or(0, |c| c.total);
            format!(
                "overall {}, {computers} computers, {} defects",
                r.overall, r.defects_total
            )
        },
    )?;
    println!(
        "\nRSS before {} MiB, peak {} MiB",
        before / 1024,
        status_kib("VmHWM:") / 1024
    );
    Ok(())
}

/// Impact through business services at this size (`--only services`, which writes to the
/// store): 150 application services (100 on a few computers each, 25 on a host filter, 25
/// on a /24 subnet) under 50 business services depending on 3 each; then the impact of a
/// product version (3,000 computers), of one computer, and a service's dependencies.
fn services(store: &Arc<Cmdb>, runs: usize) -> Result<()> {
    use census_collector::model::service::{RunsOn, ServiceKind};
    use census_collector::ops::services::{create, ServiceRequest};
    use census_collector::ops::{Actor, Ops};
    let ops = Ops {
        store: store.clone() as Arc<dyn Store>,
        ingest: None,
    };
    let actor = Actor::new("bench");
    let mut ids = Vec::new();
    store.scan_cis(CiClass::Computer, &mut |ci| {
        ids.push(ci.id);
        ids.len() < 300
    })?;
    let run = Utc::now().timestamp();
    let req = |name: String, kind, depends_on: Vec<String>, runs_on: Vec<RunsOn>| ServiceRequest {
        kind,
        name,
        owner: "bench".into(),
        criticality: 2,
        support_group: "ops".into(),
        description: String::new(),
        depends_on,
        runs_on,
        expected_version: None,
    };
    // A store kept from an earlier run keeps its services.
    let existing = store.list_services()?;
    if !existing.is_empty() {
        let business: Vec<_> = existing
            .into_iter()
            .filter(|s| s.kind == ServiceKind::Business)
            .collect();
        return measure_services(store, runs, &ids, &business);
    }
    let t = Instant::now();
    let mut apps = Vec::new();
    for i in 0..150usize {
        let runs_on = match i {
            0..100 => (0..3)
                .map(|k| RunsOn::Computer {
                    id: ids[(i * 3 + k) % ids.len()].clone(),
                })
                .collect(),
            100..125 => vec![RunsOn::Filter {
                filter: format!("os.hostname = host{:05}", i * 37),
            }],
            _ => vec![RunsOn::Subnet {
                cidr: format!("10.0.{}.0/24", i - 125),
            }],
        };
        let s = create(
            &ops,
            &actor,
            req(
                format!("app {i} {run}"),
                ServiceKind::Application,
                vec![],
                runs_on,
            ),
        )?;
        apps.push(s.id);
    }
    let mut business = Vec::new();
    for i in 0..50usize {
        let deps = (0..3)
            .map(|k| apps[(i * 3 + k) % apps.len()].clone())
            .collect();
        business.push(create(
            &ops,
            &actor,
            req(
                format!("business {i} {run}"),
                ServiceKind::Business,
                deps,
                vec![],
            ),
        )?);
    }
    println!(
        "made {} services in {:.0} ms (each checked for cycles against all)\n",
        store.list_services()?.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    measure_services(store, runs, &ids, &business)
}

fn measure_services(
    store: &Arc<Cmdb>,
    runs: usize,
    ids: &[String],
    business: &[census_collector::model::service::Service],
) -> Result<()> {
    use census_collector::query::services as svc;
    println!("| query | runs | first ms | p50 ms | p99 ms | result |");
    println!("|---|---:|---:|---:|---:|---|");
    measure(
        "(part) computers installing pkg-00010 < 2.0-1",
        runs,
        || {
            Ok(svc::computers_installing(
                store.as_ref(),
                "pkg-00010",
                "< 2.0-1",
                Utc::now(),
            )?)
        },
        |on| format!("{} computers", on.len()),
    )?;
    let on = svc::computers_installing(store.as_ref(), "pkg-00010", "< 2.0-1", Utc::now())?;
    let keys: Vec<&str> = on.keys().map(String::as_str).collect();
    measure(
        "(part) read those computers",
        runs,
        || Ok(store.get_cis(&keys)?.len()),
        |n| format!("{n} computers"),
    )?;
    measure(
        "impact: services on computers installing pkg-00010 < 2.0-1",
        runs,
        || {
            let on = svc::computers_installing(store.as_ref(), "pkg-00010", "< 2.0-1", Utc::now())?;
            Ok((on.len(), svc::impact_of(store.as_ref(), &on, Utc::now())?))
        },
        |(n, hit)| format!("{n} computers, {} services", hit.len()),
    )?;
    let first = ids[0].clone();
    let name = store.get_ci(&first)?.map(|c| c.name).unwrap_or_default();
    measure(
        "impact: services on one computer",
        runs,
        || {
            let on = [(first.clone(), name.clone())].into_iter().collect();
            Ok(svc::impact_of(store.as_ref(), &on, Utc::now())?)
        },
        |hit| format!("{} services", hit.len()),
    )?;
    let top = business[0].clone();
    measure(
        "dependencies of a business service (services and computers)",
        runs,
        || Ok(svc::dependencies(store.as_ref(), &top, Utc::now())?),
        |d| {
            format!(
                "{} services, {} computers",
                d.services.len(),
                d.computers_total
            )
        },
    )?;
    Ok(())
}

/// Vulnerability matching at this size (`--only vulns`, which writes to the store): a
/// generated OSV feed of 50,000 records, each about one of 5,000 package names (the
/// seeded fleet installs 3,000 of them) in Debian 11 and 12, fixed at one of the seeded
/// versions or later, one record in ten with an explicit version list, written as the
/// all.zip osv.dev publishes and imported; then the whole fleet matched, one host, and
/// one advisory; then the exposure tracker's pass over the fleet (the first one is the
/// baseline) and its re-match of one host after a drift that upgrades one package.
fn vulns(store: &Arc<Cmdb>, runs: usize, packages: usize) -> Result<()> {
    use census_collector::vulns::{exposure, import, tracker};
    use std::io::Write;
    let dir = std::env::temp_dir().join("census-bench-osv");
    std::fs::create_dir_all(&dir)?;
    let zip_path = dir.join("all.zip");
    let mut rng = Lcg(23);
    // Modified now: on a store that holds the feed already, every record is newer, so the
    // import updates all of them and the tracker passes over the fleet again.
    let modified = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let t = Instant::now();
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path)?);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for n in 0..50_000usize {
            let package = format!("pkg-{:05}", rng.next() % 5000);
            let fixed = ["1.9-1", "2.0-1", "2.1-1", "2.2-1"][(rng.next() % 4) as usize];
            let level = ["LOW", "MEDIUM", "HIGH", "CRITICAL"][(rng.next() % 4) as usize];
            let entry = |eco: &str| {
                if n % 10 == 0 {
                    serde_json::json!({
                        "package": {"ecosystem": eco, "name": package},
                        "versions": ["1.8-1", "1.9-1"]
                    })
                } else {
                    serde_json::json!({
                        "package": {"ecosystem": eco, "name": package},
                        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]
                    })
                }
            };
            let record = serde_json::json!({
                "id": format!("BENCH-{n:06}"),
                "modified": modified,
                "aliases": [format!("CVE-2026-{:05}", n)],
                "summary": format!("{package}: generated advisory {n}"),
                "database_specific": {"severity": level},
                "affected": [entry("Debian:11"), entry("Debian:12")]
            });
            zip.start_file(format!("BENCH-{n:06}.json"), options)?;
            zip.write_all(record.to_string().as_bytes())?;
        }
        zip.finish()?;
    }
    println!(
        "generated 50,000 records in {:.1} s: {} KB zipped\n",
        t.elapsed().as_secs_f64(),
        std::fs::metadata(&zip_path)?.len() / 1024
    );
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_kib("VmRSS:");
    let t = Instant::now();
    let report = import::import(store.as_ref(), &zip_path, &mut |_| {})?;
    let import_s = t.elapsed().as_secs_f64();
    println!("| step | s | RSS before MiB | peak RSS MiB | result |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| import all.zip (50,000 records) | {import_s:.1} | {} | {} | {} added, {} updated, {} unchanged, {} skipped, {:.0} records/s |",
        before / 1024,
        status_kib("VmHWM:") / 1024,
        report.added,
        report.updated,
        report.unchanged,
        report.skipped_total,
        report.records as f64 / import_s
    );
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_kib("VmRSS:");
    let t = Instant::now();
    let fleet = exposure::fleet_report(store.as_ref())?;
    println!(
        "| match the whole fleet | {:.1} | {} | {} | {} computers checked, {} exposed, {} (host, advisory) pairs, {} advisories hold |",
        t.elapsed().as_secs_f64(),
        before / 1024,
        status_kib("VmHWM:") / 1024,
        fleet.computers_checked,
        fleet.computers_exposed,
        fleet.exposures,
        fleet.advisories.len()
    );
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        store.scan_cis(CiClass::Computer, &mut |c| {
            ids.push(c.id);
            ids.len() < 1000
        })?;
        ids
    };
    println!("\n| query | runs | first ms | p50 ms | p99 ms | result |");
    println!("|---|---:|---:|---:|---:|---|");
    let mut pick = Lcg(5);
    measure(
        "one host's findings (the re-match after its drift)",
        runs,
        || {
            let id = &ids[pick.next() as usize % ids.len()];
            exposure::for_computer(store.as_ref(), id)?.context("host")
        },
        |h| format!("{} packages, {} findings", h.packages, h.findings.len()),
    )?;
    let top = fleet
        .advisories
        .first()
        .map(|a| a.id.clone())
        .unwrap_or_default();
    measure(
        "one advisory with its hosts and services",
        runs.min(20),
        || {
            exposure::for_advisory(
                store.as_ref(),
                &top,
                &exposure::HostPage {
                    limit: 100,
                    after: None,
                },
                Utc::now(),
            )?
            .context("advisory")
        },
        |a| format!("{} hosts", a.hosts_total),
    )?;

    // The exposure tracker: its pass over the fleet after the import, then new hosts
    // arriving and drifting one at a time, each drift re-matched on its own.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_kib("VmRSS:");
    let t = Instant::now();
    let pass = tracker::step(store.as_ref(), Utc::now())?;
    let pass_s = t.elapsed().as_secs_f64();
    let ledgers = store.space_stats_of("exposures")?;
    println!(
        "\n| tracker step | s | RSS before MiB | peak RSS MiB | result |\n|---|---:|---:|---:|---|"
    );
    println!(
        "| pass over the fleet after the import | {pass_s:.1} | {} | {} | {} computers, {} exposures opened, {} events; ledgers {:.0} MB ({:.1} KB per computer) |",
        before / 1024,
        status_kib("VmHWM:") / 1024,
        pass.passed,
        pass.opened,
        pass.events,
        ledgers.value_bytes as f64 / 1e6,
        ledgers.value_bytes as f64 / 1e3 / ledgers.records.max(1) as f64
    );
    let _ = bench_token(store);
    let ingest = Ingest::new(store.clone() as Arc<dyn Store>);
    let (mut arrivals, mut drifts) = (Vec::new(), Vec::new());
    let (mut opened, mut closed) = (0, 0);
    // New agents each run: a store kept from an earlier run already has its hosts.
    let base = 1_000_000 + store.computer_keys()?.len();
    for k in 0..runs.min(30) {
        let i = base + k;
        let mut agent = enroll(store, i)?;
        let first = prepare(&mut agent, snapshot(i, packages, &mut Lcg(k as u64), false))?;
        ingest_batch(&ingest, &[first], 1)?;
        let t = Instant::now();
        let r = tracker::step(store.as_ref(), Utc::now())?;
        arrivals.push(t.elapsed().as_secs_f64() * 1e3);
        opened = r.opened;
        let drift = prepare(&mut agent, snapshot(i, packages, &mut Lcg(k as u64), true))?;
        ingest_batch(&ingest, &[drift], 1)?;
        let t = Instant::now();
        let r = tracker::step(store.as_ref(), Utc::now())?;
        drifts.push(t.elapsed().as_secs_f64() * 1e3);
        closed = r.closed;
    }
    println!("\n| tracker step | runs | p50 ms | p99 ms | result |\n|---|---:|---:|---:|---|");
    let n = arrivals.len();
    let (p50, p99) = percentiles(arrivals);
    println!("| a new host's first inventory | {n} | {p50:.1} | {p99:.1} | {opened} exposures opened, one event |");
    let (p50, p99) = percentiles(drifts);
    println!("| one host's drift (pkg-00010 upgraded) | {n} | {p50:.1} | {p99:.1} | {closed} exposures closed, one event |");
    Ok(())
}

/// The dependency map at this size (`--only map`): the neighbourhood of a web server to
/// depth 2 (its application servers, their databases and other clients), and what depends
/// on a database.
fn map(store: &Arc<Cmdb>, runs: usize) -> Result<()> {
    use census_collector::query::map;
    println!("| query | runs | first ms | p50 ms | p99 ms | result |");
    println!("|---|---:|---:|---:|---:|---|");
    let computers: Vec<(String, String)> = store
        .list_cis(Some(CiClass::Computer))?
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect();
    let named = |suffix: usize| -> Vec<String> {
        computers
            .iter()
            .filter(|(_, n)| {
                n.trim_start_matches("host")
                    .parse::<usize>()
                    .is_ok_and(|i| i % 10 == suffix)
            })
            .map(|(id, _)| id.clone())
            .collect()
    };
    let webs = named(7);
    let dbs = named(0);
    let expiry = chrono::Duration::days(7);
    for (label, ids, depth, seed) in [
        ("map around a web server, depth 2", &webs, 2, 11),
        ("map around a database, depth 1", &dbs, 1, 12),
    ] {
        let mut pick = Lcg(seed);
        measure(
            label,
            runs,
            || {
                let id = &ids[(pick.next() as usize) % ids.len()];
                Ok(map::neighbourhood(
                    store.as_ref(),
                    std::slice::from_ref(id),
                    depth,
                    Utc::now(),
                    expiry,
                )?)
            },
            |m| format!("{} nodes, {} edges", m.nodes.len(), m.edges.len()),
        )?;
    }
    let mut pick = Lcg(13);
    measure(
        "what depends on a database (2 hops)",
        runs,
        || {
            let id = &dbs[(pick.next() as usize) % dbs.len()];
            Ok(map::dependents(store.as_ref(), id, 2, Utc::now(), expiry)?)
        },
        |d| format!("{} computers", d.len()),
    )?;
    measure(
        "the fleet's external endpoints (first 100 groups)",
        runs.min(10),
        || Ok(map::endpoints(store.as_ref(), Utc::now(), expiry, 100)?),
        |l| {
            format!(
                "{} groups, the first reached by {} computers",
                l.total,
                l.groups.first().map_or(0, |g| g.computers)
            )
        },
    )?;
    Ok(())
}

/// Compliance at this size (`--only compliance`): every computer against a baseline of 20
/// rules (package versions and absences over the generated packages, listening ports and
/// a service, which the generated inventories do not collect: unknown).
fn compliance(store: &Arc<Cmdb>, runs: usize) -> Result<()> {
    use census_collector::model::baseline::{Baseline, BaselineRule};
    use census_collector::query::compliance;
    println!("| query | runs | first ms | p50 ms | p99 ms | result |");
    println!("|---|---:|---:|---:|---:|---|");
    let mut rules: Vec<BaselineRule> = (0..12)
        .map(|p| BaselineRule::PackageInstalled {
            package: format!("pkg-{p:05}"),
            versions: ">= 1.1-1".into(),
        })
        .collect();
    rules.extend((0..6).map(|p| BaselineRule::PackageAbsent {
        package: format!("pkg-{:05}", 2990 + p),
    }));
    rules.push(BaselineRule::ListeningOnlyOn {
        ports: [22, 443].into_iter().collect(),
    });
    rules.push(BaselineRule::ServiceEnabled {
        service: "ssh.service".into(),
    });
    let now = Utc::now();
    let b = Baseline {
        id: "bln_bench".into(),
        name: "bench".into(),
        description: String::new(),
        applies_to: String::new(),
        rules,
        version: 1,
        created_at: now,
        updated_at: now,
        updated_by: "bench".into(),
        deleted: false,
    };
    measure(
        "compliance of every computer against 20 rules",
        runs,
        || {
            Ok(compliance::report(
                store.as_ref(),
                &b,
                Utc::now(),
                None,
                100,
            )?)
        },
        |r| {
            format!(
                "{} hosts: {} pass, {} fail, {} unknown",
                r.hosts_total, r.pass, r.fail, r.unknown
            )
        },
    )?;
    Ok(())
}
