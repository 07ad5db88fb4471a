//! `census-collector`: the server and its admin CLI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use census_collector::admin::{self, AdminRequest};
use census_collector::api;
use census_collector::http::AppState;
use census_collector::ingest::{GroupCommit, Ingest};
use census_collector::model::{CiClass, Role};
use census_collector::store::pg_backend::{self, PgOptions};
use census_collector::store::{Cmdb, Store};
use census_collector::{server, tls};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::Value;

/// Ingest allocates and frees many small, short-lived values (JSON trees, edges, sled
/// nodes); under glibc malloc 27 % of the collector's CPU went to the allocator itself
/// (malloc_consolidate, unlink_chunk). See bench/RESULTS.md, "Allocator".
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "census-collector",
    version,
    about = "Census collector: signed snapshot ingest into a CMDB"
)]
struct Cli {
    /// Data directory (store, TLS material, admin socket).
    #[arg(
        long,
        global = true,
        env = "CENSUS_DATA_DIR",
        default_value = "/var/lib/census-collector"
    )]
    data_dir: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
    /// Output format of admin commands.
    #[arg(long, global = true, value_enum, default_value = "table")]
    format: OutputFormat,
    #[command(subcommand)]
    command: Command,
}

/// Where the CMDB lives. Without `--store`, the embedded store in `--data-dir`.
#[derive(clap::Args, Clone, Default)]
struct StoreArgs {
    /// A PostgreSQL database that many collectors share, as
    /// postgres://USER@HOST:PORT/DB?sslmode=require (a password here is accepted but
    /// better given by --store-password-file or CENSUS_STORE_PASSWORD).
    #[arg(long, global = true, env = "CENSUS_STORE", value_name = "URL")]
    store: Option<String>,
    /// File whose first line is the database password.
    #[arg(
        long,
        global = true,
        env = "CENSUS_STORE_PASSWORD_FILE",
        value_name = "FILE"
    )]
    store_password_file: Option<PathBuf>,
    /// PEM file of the CA that signed the database server's certificate (default: the
    /// system's roots).
    #[arg(long, global = true, env = "CENSUS_STORE_CA", value_name = "FILE")]
    store_ca: Option<PathBuf>,
    /// Most database connections this process opens.
    #[arg(long, global = true, default_value_t = 16)]
    store_pool: usize,
    /// The embedded store's engine: redb (the default) or sled (kept, tested, and served
    /// for comparison; a sled store is otherwise migrated into redb when it opens).
    #[arg(long, global = true, value_enum, default_value = "redb")]
    engine: Engine,
}

#[derive(Clone, Copy, Default, ValueEnum, PartialEq, Eq)]
enum Engine {
    #[default]
    Redb,
    Sled,
}

impl StoreArgs {
    /// The PostgreSQL options, if `--store` names a database.
    fn postgres(&self) -> Result<Option<PgOptions>> {
        let Some(url) = &self.store else {
            return Ok(None);
        };
        if !pg_backend::is_postgres(url) {
            bail!("--store must be a postgres:// or postgresql:// URL (the embedded store is chosen by --data-dir), not {}", pg_backend::redact(url));
        }
        let mut options = PgOptions::new(url.clone());
        options.pool_size = self.store_pool.clamp(1, 1024);
        options.ca_file = self.store_ca.clone();
        if let Some(file) = &self.store_password_file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("read --store-password-file {}", file.display()))?;
            options.password = Some(text.lines().next().unwrap_or("").to_string());
        } else if let Ok(p) = std::env::var("CENSUS_STORE_PASSWORD") {
            options.password = Some(p);
        }
        Ok(Some(options))
    }

    /// Opens the CMDB: PostgreSQL when `--store` says so, else the embedded store.
    fn open(&self, data_dir: &Path, cache_bytes: u64) -> Result<Cmdb> {
        match self.postgres()? {
            Some(options) => {
                let shown = pg_backend::redact(&options.conninfo);
                let store = Cmdb::open_postgres(options)
                    .with_context(|| format!("open the store at {shown}"))?;
                tracing::info!(store = %shown, "store on PostgreSQL");
                Ok(store)
            }
            None => Ok(self.open_embedded(data_dir, cache_bytes)?),
        }
    }

    /// The embedded store in `data_dir`, on the chosen engine (a sled store opened as redb
    /// is migrated first).
    fn open_embedded(
        &self,
        data_dir: &Path,
        cache_bytes: u64,
    ) -> Result<Cmdb, census_collector::store::StoreError> {
        let dir = data_dir.join("store");
        match self.engine {
            Engine::Sled => Cmdb::open_sled(&dir, cache_bytes),
            Engine::Redb => Cmdb::open_with_cache(&dir, cache_bytes),
        }
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum OutputFormat {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
// Parsed once at startup; boxing the serve arguments would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Serve the agent API over HTTPS.
    Serve(ServeArgs),
    /// Print the private CA's SHA-256 fingerprint for `census-agent enroll --ca-fingerprint`.
    Fingerprint,
    /// Enrollment tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Enrolled agents.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// People and their roles.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Configuration items.
    Ci {
        #[command(subcommand)]
        command: CiCommand,
    },
    /// Identity conflicts: those waiting for a person, and how the others were resolved.
    Conflicts,
    /// Decide an identity conflict: two real machines, or a clone whose agent is revoked.
    /// The decision follows the id, as `census changes review ID accepted` takes its own.
    ResolveConflict {
        id: String,
        #[arg(value_enum, required_unless_present = "decision_flag")]
        decision: Option<admin::ConflictResolution>,
        /// The decision as a flag, as earlier releases took it.
        #[arg(
            long = "decision",
            id = "decision_flag",
            value_enum,
            conflicts_with = "decision",
            hide = true
        )]
        decision_flag: Option<admin::ConflictResolution>,
    },
    /// Change records raised by drift.
    Changes,
    /// Counts of CIs by class, agents, records and store size.
    Stats,
    /// Check the store: every reverse edge, CI summary and edge count against what it is
    /// derived from (reads everything while ingest waits; exits 1 when any disagree).
    Check,
    /// Vulnerability advisories (OSV).
    Vulns {
        #[command(subcommand)]
        command: VulnsCommand,
    },
    /// Import inventories other tools' agents wrote: `ocsinventory-agent --local` (.ocs
    /// XML), `fusioninventory-inventory` (XML) or the GLPI agent (JSON). Each device becomes an import source;
    /// a machine a Census agent reports is skipped. --dry-run identifies, writes nothing.
    Import {
        /// Which agent wrote them (`--format` is the output's, as for every command).
        #[arg(long, value_enum)]
        from: ImportFormat,
        #[arg(long)]
        dry_run: bool,
        /// Files, or directories of them.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Software title rules (publisher, product, category).
    Software {
        #[command(subcommand)]
        command: SoftwareCommand,
    },
    /// Every HTTP route and who may call it (JSON).
    Routes,
    /// Write a consistent backup of the store (online: ingest waits while it runs).
    Backup {
        #[arg(long)]
        to: PathBuf,
    },
    /// Copy the embedded store in --data-dir into an empty PostgreSQL database, then
    /// verify the copy (records per key space, CIs per class, the consistency check). Stop
    /// the collector first; afterwards start it with --store pointing at the database.
    MigrateStore {
        /// The target database, postgres://USER@HOST:PORT/DB (password: --store-password-file
        /// or CENSUS_STORE_PASSWORD).
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Restore a backup into this data directory, which must not hold a store yet.
    Restore {
        #[arg(long)]
        from: PathBuf,
    },
    /// The OpenAPI 3 document of the HTTP API.
    Openapi,
}

#[derive(clap::Args)]
struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Operator's certificate chain (PEM); with --tls-key. Without both, a private CA is
    /// made in the data directory on first start.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Extra DNS names or IPs for the generated server certificate.
    #[arg(long = "san")]
    sans: Vec<String>,
    /// Plain HTTP, for local development only; refused on non-loopback addresses.
    #[arg(long)]
    insecure_http: bool,
    /// Ingest work running at once (default: the number of CPUs; four times that on
    /// PostgreSQL, where an ingest waits on the network for its reads).
    #[arg(long)]
    workers: Option<usize>,
    /// Submissions admitted at once before answering 429.
    #[arg(long, default_value_t = 512)]
    max_queue: usize,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// A package (or service, port, ...) that disappears and returns within this window is
    /// marked as a flap instead of being raised again.
    #[arg(long, default_value = "24h")]
    flap_window: String,
    /// Keep every agent's last accepted snapshot body, byte for byte, as evidence (about
    /// 25 KB per computer; off by default).
    #[arg(long)]
    keep_bodies: bool,
    /// A network flow nobody reported for this many days leaves the dependency map.
    #[arg(long, default_value_t = census_collector::model::flows::DEFAULT_EXPIRY_DAYS, value_parser = clap::value_parser!(i64).range(1..=3650))]
    flow_expiry_days: i64,
    /// Delay before a failed webhook delivery is retried; doubles per attempt.
    #[arg(long, default_value = "30s")]
    webhook_retry_base: String,
    /// Admit at most this many times the steady submission rate (remembered across
    /// restarts in the data dir); the excess gets 429 with a spread Retry-After, so agents
    /// returning after an outage do not arrive at once. 0 switches pacing off.
    #[arg(long, default_value_t = 2.0)]
    pace_factor: f64,
    /// Paced submissions are told to retry uniformly within this many seconds.
    #[arg(long, default_value = "30s")]
    pace_spread: String,
    /// Attempts before a webhook delivery moves to the dead letters.
    #[arg(long, default_value_t = 10)]
    webhook_max_attempts: u32,
    /// A computer not seen for this long turns stale.
    #[arg(long, default_value = "7d")]
    stale_after: String,
    /// A computer not seen for this long is retired.
    #[arg(long, default_value = "30d")]
    retire_after: String,
    /// How often the stale/retired sweep runs.
    #[arg(long, default_value = "5m")]
    lifecycle_every: String,
    /// The store's page cache in MiB (bounds the collector's memory; more caches more).
    #[arg(long, default_value_t = 256)]
    cache_mb: u64,
    /// Also serve the OCS Inventory agent protocol here (POST /ocsinventory), for OCS and
    /// FusionInventory agents during a migration; TLS as the main listener. Off by default.
    #[arg(long)]
    compat_listen: Option<SocketAddr>,
    /// A file holding the shared secret those agents send as their HTTP Basic password.
    #[arg(long)]
    compat_secret_file: Option<PathBuf>,
    /// A network (CIDR) whose agents need no secret; repeatable.
    #[arg(long = "compat-allow")]
    compat_allow: Vec<String>,
}

#[derive(Subcommand)]
enum VulnsCommand {
    /// Import OSV records: a directory of ID.json files, one record, or an ecosystem's
    /// all.zip as osv.dev publishes them (offline; the running collector reads the path).
    Import { path: PathBuf },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ImportFormat {
    /// `ocsinventory-agent --local` (.ocs XML).
    Ocs,
    /// `fusioninventory-inventory` (XML).
    Fusioninventory,
    /// The GLPI agent's JSON (`glpi-inventory --json`).
    Glpi,
}

#[derive(Subcommand)]
enum SoftwareCommand {
    /// Replay the draft title rules over every software product, with progress: what they
    /// change, and unless --dry-run, make them the applied set.
    Replay {
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an enrollment token; the secret is shown once.
    Create {
        #[arg(long, default_value = "24h")]
        ttl: String,
        #[arg(long, default_value_t = 1)]
        uses: u32,
        #[arg(long)]
        note: Option<String>,
        /// The collector URL to print in the enroll command.
        #[arg(long)]
        server: Option<String>,
    },
    List,
    Revoke {
        id: String,
    },
}

#[derive(Subcommand)]
enum AgentCommand {
    List,
    Revoke { id: String },
}

#[derive(Subcommand)]
enum UserCommand {
    Add {
        name: String,
        #[arg(long)]
        role: Role,
    },
    List,
    /// Remove a person; their API tokens and sessions are revoked with them.
    Delete {
        name: String,
    },
    /// Set a person's password for login; read from stdin (one line).
    Passwd {
        name: String,
    },
    /// Create an API token for a person; the token is shown once.
    Token {
        name: String,
        #[arg(long, default_value = "90d")]
        ttl: String,
    },
    /// List people's API tokens (never their secrets).
    Tokens,
    /// Revoke a person's API token.
    RevokeToken {
        id: String,
    },
}

#[derive(Subcommand)]
enum CiCommand {
    List {
        #[arg(long)]
        class: Option<CiClass>,
    },
    Show {
        id: String,
        /// RFC 3339 time: the CI as it was then.
        #[arg(long)]
        as_of: Option<DateTime<Utc>>,
    },
    History {
        id: String,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CENSUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_format);
            serve(&cli.data_dir, &cli.store, args)
        }
        Command::Fingerprint => fingerprint(&cli.data_dir),
        Command::Restore { from } => restore(&cli.data_dir, &from),
        Command::MigrateStore { to } => migrate_store(&cli.data_dir, &cli.store, &to),
        Command::Openapi => census_collector::api::openapi_document()
            .to_pretty_json()
            .map(|text| println!("{text}"))
            .map_err(Into::into),
        Command::Routes => {
            let table =
                census_collector::api::route_table(census_collector::people::RouteTable::listing());
            match serde_json::to_string_pretty(&table.entries) {
                Ok(text) => {
                    println!("{text}");
                    Ok(())
                }
                Err(e) => Err(e.into()),
            }
        }
        other => admin_command(&cli.data_dir, &cli.store, cli.format, other),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("census-collector: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn restore(data_dir: &Path, from: &Path) -> Result<()> {
    let mut file = std::fs::File::open(from).with_context(|| format!("open {}", from.display()))?;
    std::fs::create_dir_all(data_dir)?;
    let summary = Cmdb::restore(&data_dir.join("store"), &mut file)?;
    println!(
        "restored {} records in {} trees into {} (copy the tls/ directory too if the CA should stay the same)",
        summary.records,
        summary.trees,
        data_dir.join("store").display()
    );
    Ok(())
}

fn migrate_store(data_dir: &Path, store_args: &StoreArgs, to: &str) -> Result<()> {
    let store_dir = data_dir.join("store");
    if !store_dir.exists() {
        bail!("no embedded store in {} to migrate", data_dir.display());
    }
    let source =
        match store_args.open_embedded(data_dir, census_collector::store::DEFAULT_CACHE_BYTES) {
            Err(census_collector::store::StoreError::Locked(_)) => bail!(
                "the collector is running on {}: stop it first, so the copy is complete",
                data_dir.display()
            ),
            other => other?,
        };
    let target_args = StoreArgs {
        store: Some(to.to_string()),
        ..store_args.clone()
    };
    let target = target_args.open(data_dir, census_collector::store::DEFAULT_CACHE_BYTES)?;
    let shown = pg_backend::redact(to);
    eprintln!("copying {} into {shown}", store_dir.display());
    let started = std::time::Instant::now();
    let mut last = std::time::Instant::now();
    let summary = source.copy_into(&target, &mut |space, n| {
        if last.elapsed() >= std::time::Duration::from_secs(2) || n == 0 {
            eprintln!("  {}: {n} records", space.name());
            last = std::time::Instant::now();
        }
    })?;
    for (space, n) in &summary.spaces {
        if *n > 0 {
            eprintln!("  {space}: {n} records copied and counted");
        }
    }
    if summary.problems_total > 0 {
        bail!(
            "copied {} records, but the target's consistency check found {} problems",
            summary.records,
            summary.problems_total
        );
    }
    println!(
        "migrated {} records in {:.1} s into {shown}; CIs per class equal ({}); check clean. Start the collector with --store {shown}",
        summary.records,
        started.elapsed().as_secs_f64(),
        summary
            .cis
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

fn fingerprint(data_dir: &Path) -> Result<()> {
    use rustls::pki_types::pem::PemObject;
    let path = data_dir.join(tls::CA_CERT_FILE);
    let der = rustls::pki_types::CertificateDer::from_pem_file(&path)
        .with_context(|| format!("read {} (has the collector been started?)", path.display()))?;
    println!("{}", tls::fingerprint(&der));
    Ok(())
}

fn serve(data_dir: &Path, store_args: &StoreArgs, args: ServeArgs) -> Result<()> {
    let ServeArgs {
        listen,
        tls_cert,
        tls_key,
        sans,
        insecure_http,
        workers,
        max_queue,
        log_format: _,
        flap_window,
        keep_bodies,
        flow_expiry_days,
        webhook_retry_base,
        webhook_max_attempts,
        pace_factor,
        pace_spread,
        stale_after,
        retire_after,
        lifecycle_every,
        cache_mb,
        compat_listen,
        compat_secret_file,
        compat_allow,
    } = args;
    let compat = match compat_listen {
        None => None,
        Some(addr) => {
            if insecure_http && !addr.ip().is_loopback() {
                bail!(
                    "--insecure-http is refused on {addr}: plain HTTP only on loopback addresses"
                );
            }
            let secret = match &compat_secret_file {
                Some(p) => Some(
                    std::fs::read_to_string(p)
                        .with_context(|| format!("--compat-secret-file {}", p.display()))?
                        .trim()
                        .to_string(),
                ),
                None => None,
            };
            let allow = compat_allow
                .iter()
                .map(|c| {
                    census_collector::drift::rules::Cidr::parse(c)
                        .map_err(|e| anyhow::anyhow!("--compat-allow: {e}"))
                })
                .collect::<Result<Vec<_>>>()?;
            let config = census_collector::compat_api::CompatConfig { secret, allow };
            config
                .check()
                .map_err(|e| anyhow::anyhow!("--compat-listen: {e}"))?;
            Some((addr, Arc::new(config)))
        }
    };
    let seconds = |flag: &str, v: &str| -> Result<i64> {
        admin::parse_duration(v).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
    };
    let lifecycle = census_collector::lifecycle::Lifecycle {
        stale_after: chrono::Duration::seconds(seconds("stale-after", &stale_after)?),
        retire_after: chrono::Duration::seconds(seconds("retire-after", &retire_after)?),
    };
    if lifecycle.retire_after <= lifecycle.stale_after {
        bail!("--retire-after must be longer than --stale-after");
    }
    let lifecycle_every =
        std::time::Duration::from_secs(seconds("lifecycle-every", &lifecycle_every)?.max(1) as u64);
    if !pace_factor.is_finite() || (pace_factor != 0.0 && pace_factor < 1.0) {
        bail!("--pace-factor must be 0 (off) or at least 1, not {pace_factor}");
    }
    let pace = census_collector::pace::PaceConfig {
        factor: pace_factor,
        spread_seconds: seconds("pace-spread", &pace_spread)?.max(1) as u64,
    };
    let flap_window = chrono::Duration::seconds(
        admin::parse_duration(&flap_window).map_err(|e| anyhow::anyhow!("--flap-window: {e}"))?,
    );
    let webhook_config = census_collector::webhooks::WebhookConfig {
        retry_base: std::time::Duration::from_secs(
            admin::parse_duration(&webhook_retry_base)
                .map_err(|e| anyhow::anyhow!("--webhook-retry-base: {e}"))?
                .max(1) as u64,
        ),
        max_attempts: webhook_max_attempts.max(1),
        ..Default::default()
    };
    if insecure_http && !listen.ip().is_loopback() {
        bail!("--insecure-http is refused on {listen}: plain HTTP only on loopback addresses");
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let store: Arc<dyn Store> =
        Arc::new(store_args.open(data_dir, cache_mb.max(16) * 1024 * 1024)?);
    census_collector::drift::seed_defaults(store.as_ref(), Utc::now())?;
    let mut ca_fingerprint = None;
    let tls_config = if insecure_http {
        tracing::warn!("serving plain HTTP on loopback: development only");
        None
    } else {
        if tls_cert.is_none() && tls_key.is_none() {
            let mut names = vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
                "::1".to_string(),
            ];
            if let Ok(h) = hostname_string() {
                names.push(h);
            }
            if !listen.ip().is_unspecified() && !names.contains(&listen.ip().to_string()) {
                names.push(listen.ip().to_string());
            }
            names.extend(sans);
            let fp = tls::ensure_private_ca(data_dir, &names)?;
            tracing::info!(ca_fingerprint = %fp, ca = %data_dir.join(tls::CA_CERT_FILE).display(), "private CA in use; agents pin this fingerprint");
            println!("CA fingerprint (sha256): {fp}");
            ca_fingerprint = Some(fp);
        }
        let (cert, key) = tls::server_files(data_dir, tls_cert, tls_key)?;
        Some(tls::server_config(&cert, &key)?)
    };
    let on_network_store = store_args.store.is_some();
    let workers = workers.unwrap_or_else(|| {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        // A read from the embedded store costs microseconds of CPU; from a database server
        // it is a round trip the slot would otherwise sit through idle.
        if on_network_store {
            cpus * 4
        } else {
            cpus
        }
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Threads beyond the CPU slots wait on the store's writer, not on a CPU. Four per
        // slot keeps the CPUs fed; 64 in all held more plans in memory and ran slower
        // (ingest-bench: 1,000-1,300 deltas/s and 260-290 MiB against 1,500-1,600 and 175).
        .max_blocking_threads(workers.max(2) * 4)
        .build()?;
    runtime.block_on(async move {
        let group = GroupCommit::start(store.clone());
        let ingest = Arc::new(
            Ingest::new(store.clone())
                .with_flap_window(flap_window)
                .with_keep_bodies(keep_bodies)
                .with_flow_expiry(chrono::Duration::days(flow_expiry_days)),
        );
        let leader = census_collector::leader::Leader::elect(
            store.clone(),
            census_collector::leader::ASK_EVERY,
        )
        .await;
        tokio::spawn(census_collector::lifecycle::run(
            store.clone(),
            lifecycle,
            lifecycle_every,
            leader.clone(),
        ));
        tokio::spawn(census_collector::telemetry::store_gauges(
            store.clone(),
            std::time::Duration::from_secs(30),
        ));
        tokio::spawn(census_collector::vulns::tracker::run(
            store.clone(),
            leader.clone(),
        ));
        tokio::spawn(census_collector::webhooks::run(
            store.clone(),
            ingest.clone(),
            webhook_config,
            leader,
        ));
        let pacer = Arc::new(census_collector::pace::Pacer::open(data_dir, pace, Utc::now()));
        tokio::spawn(census_collector::pace::run(
            pacer.clone(),
            std::time::Duration::from_secs(10),
        ));
        let state = Arc::new(AppState {
            store: store.clone(),
            ingest,
            group,
            heartbeats: census_collector::ingest::HeartbeatBatcher::start(store.clone())
                .context("start the heartbeat committer")?,
            workers: Arc::new(tokio::sync::Semaphore::new(workers)),
            admitted: Default::default(),
            max_admitted: max_queue.max(1),
            login_limiter: Default::default(),
            metrics: census_collector::telemetry::install(),
            ca_fingerprint,
            pacer: pacer.clone(),
        });
        #[cfg(unix)]
        {
            let listener = admin::bind_socket(&data_dir.join(admin::SOCKET_FILE))?;
            let ops = state.ops();
            tokio::spawn(async move {
                if let Err(e) = admin::serve_socket(listener, ops).await {
                    tracing::error!(error = %e, "admin socket stopped");
                }
            });
        }
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listen on {listen}"))?;
        let scheme = if tls_config.is_some() { "https" } else { "http" };
        tracing::info!(address = %listener.local_addr()?, scheme, workers, max_queue, "collector listening");
        println!("listening on {scheme}://{}", listener.local_addr()?);
        if let Some((addr, config)) = compat {
            let compat_listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listen on {addr} (--compat-listen)"))?;
            tracing::info!(address = %compat_listener.local_addr()?, scheme, "OCS-protocol listener for OCS and FusionInventory agents");
            println!("OCS protocol on {scheme}://{}/ocsinventory", compat_listener.local_addr()?);
            let app = census_collector::compat_api::router(state.clone(), config);
            let tls = tls_config.clone();
            tokio::spawn(async move {
                if let Err(e) = server::serve(compat_listener, tls, app, shutdown_signal()).await {
                    tracing::error!(error = %e, "OCS-protocol listener stopped");
                }
            });
        }
        server::serve(listener, tls_config, api::router(state), shutdown_signal()).await?;
        tracing::info!("shutting down: flushing the store");
        store.flush()?;
        if let Err(e) = pacer.remember(Utc::now()) {
            tracing::warn!(error = %e, "could not remember the ingest rate");
        }
        let _ = std::fs::remove_file(data_dir.join(admin::SOCKET_FILE));
        Ok(())
    })
}

fn hostname_string() -> Result<String> {
    let out = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))?;
    Ok(out.trim().to_string())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn run_admin(data_dir: &Path, store_args: &StoreArgs, req: AdminRequest) -> Result<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let store = loop {
        if let Some(resp) = admin::call_socket(data_dir, &req).map_err(anyhow::Error::msg)? {
            return match resp.error {
                None => Ok(resp.result),
                Some(e) => bail!(e),
            };
        }
        // A shared database: any node (or none) may be serving; open it here.
        if store_args.store.is_some() {
            break store_args.open(data_dir, census_collector::store::DEFAULT_CACHE_BYTES)?;
        }
        let store_dir = data_dir.join("store");
        if !store_dir.exists() {
            bail!("no store in {} (start `census-collector serve --data-dir {}` first, or pass --data-dir)", data_dir.display(), data_dir.display());
        }
        match store_args.open_embedded(data_dir, census_collector::store::DEFAULT_CACHE_BYTES) {
            Ok(s) => break s,
            // A collector holds the store but its socket is not up yet (starting, or
            // restarting after a crash): ask again shortly.
            Err(census_collector::store::StoreError::Locked(_))
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(e.into()),
        }
    };
    let ops = census_collector::ops::Ops {
        store: std::sync::Arc::new(store),
        ingest: None,
    };
    let result = admin::execute(&ops, req, &admin::cli_actor(), Utc::now())?;
    ops.store.flush()?;
    Ok(result)
}

fn admin_command(
    data_dir: &Path,
    store_args: &StoreArgs,
    format: OutputFormat,
    command: Command,
) -> Result<()> {
    let (req, columns): (AdminRequest, &[&str]) = match command {
        Command::Token {
            command:
                TokenCommand::Create {
                    ttl,
                    uses,
                    note,
                    server,
                },
        } => {
            let ttl_seconds = admin::parse_duration(&ttl).map_err(anyhow::Error::msg)?;
            let result = run_admin(
                data_dir,
                store_args,
                AdminRequest::TokenCreate {
                    ttl_seconds,
                    uses,
                    note,
                },
            )?;
            if format == OutputFormat::Json {
                println!("{}", serde_json::to_string_pretty(&result)?);
                return Ok(());
            }
            let token = result["token"].as_str().unwrap_or_default();
            println!(
                "token {} (id {}), {} use(s), expires {}",
                token,
                result["id"].as_str().unwrap_or_default(),
                uses,
                result["expires_at"].as_str().unwrap_or_default()
            );
            let fp = {
                use rustls::pki_types::pem::PemObject;
                rustls::pki_types::CertificateDer::from_pem_file(data_dir.join(tls::CA_CERT_FILE))
                    .ok()
                    .map(|d| tls::fingerprint(&d))
            };
            let server = server.unwrap_or_else(|| "https://COLLECTOR:8443".into());
            match fp {
                Some(fp) => println!("enroll with:\n  census-agent enroll --server {server} --token {token} --ca-fingerprint {fp}"),
                None => println!("enroll with:\n  census-agent enroll --server {server} --token {token}"),
            }
            return Ok(());
        }
        Command::Token {
            command: TokenCommand::List,
        } => (
            AdminRequest::TokenList,
            &["id", "state", "uses", "max_uses", "expires_at", "note"],
        ),
        Command::Token {
            command: TokenCommand::Revoke { id },
        } => (AdminRequest::TokenRevoke { id }, &["revoked"]),
        Command::Agent {
            command: AgentCommand::List,
        } => (
            AdminRequest::AgentList,
            &[
                "id",
                "hostname",
                "ci_id",
                "last_seq",
                "last_seen",
                "revoked_at",
            ],
        ),
        Command::Agent {
            command: AgentCommand::Revoke { id },
        } => (AdminRequest::AgentRevoke { id }, &["revoked"]),
        Command::User {
            command: UserCommand::Add { name, role },
        } => (
            AdminRequest::UserAdd { name, role },
            &["name", "role", "created_at"],
        ),
        Command::User {
            command: UserCommand::List,
        } => (AdminRequest::UserList, &["name", "role", "created_at"]),
        Command::User {
            command: UserCommand::Delete { name },
        } => (AdminRequest::UserDelete { name }, &["deleted"]),
        Command::User {
            command: UserCommand::Token { name, ttl },
        } => {
            let ttl_seconds = admin::parse_duration(&ttl).map_err(anyhow::Error::msg)?;
            let result = run_admin(
                data_dir,
                store_args,
                AdminRequest::UserToken { name, ttl_seconds },
            )?;
            if format == OutputFormat::Json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                println!(
                    "API token for {} ({}), id {}, expires {}:\n  {}\nIt is shown once. Use it as: Authorization: Bearer <token>",
                    result["user"].as_str().unwrap_or_default(),
                    result["role"].as_str().unwrap_or_default(),
                    result["id"].as_str().unwrap_or_default(),
                    result["expires_at"].as_str().unwrap_or_default(),
                    result["token"].as_str().unwrap_or_default(),
                );
            }
            return Ok(());
        }
        Command::User {
            command: UserCommand::Passwd { name },
        } => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\n', '\r']).to_string();
            (
                AdminRequest::UserPassword { name, password },
                &["user", "password"],
            )
        }
        Command::User {
            command: UserCommand::Tokens,
        } => (
            AdminRequest::UserTokenList,
            &[
                "id",
                "user",
                "created_at",
                "expires_at",
                "last_used_at",
                "revoked_at",
            ],
        ),
        Command::User {
            command: UserCommand::RevokeToken { id },
        } => (AdminRequest::UserTokenRevoke { id }, &["revoked"]),
        Command::Ci {
            command: CiCommand::List { class },
        } => (
            AdminRequest::CiList { class },
            &["id", "class", "name", "status", "version", "last_seen"],
        ),
        Command::Ci {
            command: CiCommand::Show { id, as_of },
        } => (AdminRequest::CiShow { id, as_of }, &[]),
        Command::Ci {
            command: CiCommand::History { id },
        } => (
            AdminRequest::CiHistory { id },
            &[
                "version",
                "valid_from",
                "status",
                "relationships",
                "change_record",
            ],
        ),
        Command::Conflicts => (
            AdminRequest::ConflictList,
            &[
                "id",
                "rule",
                "existing_ci",
                "existing_agent",
                "claiming_agent",
                "claiming_ci",
                "raised_at",
                "resolved_at",
                "resolution",
            ],
        ),
        Command::ResolveConflict {
            id,
            decision,
            decision_flag,
        } => (
            AdminRequest::ConflictResolve {
                id,
                resolution: decision
                    .or(decision_flag)
                    .context("give the decision: resolve-conflict ID DECISION")?,
            },
            &["resolved", "resolution"],
        ),
        Command::Changes => (
            AdminRequest::ChangeList,
            &[
                "id",
                "ci_name",
                "state",
                "severity",
                "authorization",
                "detected_at",
                "items",
            ],
        ),
        Command::Stats => (AdminRequest::Stats, &[]),
        Command::Check => (AdminRequest::Check, &[]),
        Command::Vulns {
            command: VulnsCommand::Import { path },
        } => {
            let path = std::path::absolute(&path)?;
            (
                AdminRequest::VulnsImport {
                    path: path.display().to_string(),
                },
                &[
                    "records",
                    "added",
                    "updated",
                    "unchanged",
                    "withdrawn",
                    "removed",
                    "skipped_total",
                    "seconds",
                ],
            )
        }
        Command::Import {
            from,
            dry_run,
            paths,
        } => {
            let paths = paths
                .iter()
                .map(|p| std::path::absolute(p).map(|p| p.display().to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            (
                AdminRequest::Import {
                    format: match from {
                        ImportFormat::Ocs => census_collector::foreign::ocs::Format::Ocs,
                        ImportFormat::Fusioninventory => {
                            census_collector::foreign::ocs::Format::FusionInventory
                        }
                        ImportFormat::Glpi => census_collector::foreign::ocs::Format::Glpi,
                    },
                    paths,
                    dry_run,
                },
                &[
                    "format",
                    "dry_run",
                    "files",
                    "new",
                    "updated",
                    "unchanged",
                    "skipped",
                    "failed",
                    "change_records",
                    "seconds",
                ],
            )
        }
        Command::Software {
            command: SoftwareCommand::Replay { dry_run },
        } => (
            AdminRequest::SoftwareReplay { dry_run },
            &[
                "dry_run",
                "version",
                "products",
                "changed",
                "unmatched",
                "titles_before",
                "titles_after",
                "seconds",
            ],
        ),
        Command::Backup { to } => {
            let to = std::path::absolute(&to)?;
            (
                AdminRequest::Backup {
                    to: to.display().to_string(),
                },
                &["to", "records", "bytes", "seconds"],
            )
        }
        Command::Serve(_)
        | Command::Fingerprint
        | Command::Routes
        | Command::Openapi
        | Command::Restore { .. }
        | Command::MigrateStore { .. } => unreachable_command(),
    };
    let show = matches!(req, AdminRequest::CiShow { .. });
    let import = matches!(req, AdminRequest::VulnsImport { .. });
    let replay = matches!(req, AdminRequest::SoftwareReplay { .. });
    let inventories = matches!(req, AdminRequest::Import { .. });
    let check = matches!(req, AdminRequest::Check);
    let result = run_admin(data_dir, store_args, req)?;
    if show && format == OutputFormat::Table {
        print_ci(&result);
    } else if format == OutputFormat::Json || columns.is_empty() {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print_table(&result, columns);
        if import {
            for s in result["skipped"].as_array().into_iter().flatten() {
                println!("skipped {}: {}", cell(&s["name"]), cell(&s["reason"]));
            }
        }
        if inventories {
            for o in result["outcomes"].as_array().into_iter().flatten() {
                println!(
                    "{}: {} {} {}{}",
                    cell(&o["file"]),
                    cell(&o["outcome"]),
                    cell(&o["hostname"]),
                    cell(&o["ci_id"]),
                    o["reason"]
                        .as_str()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                );
            }
        }
        if replay {
            for c in result["changes"].as_array().into_iter().flatten() {
                println!(
                    "{}: {} -> {}",
                    cell(&c["name"]),
                    cell(&c["before"]["product"]),
                    cell(&c["after"]["product"])
                );
            }
        }
    }
    if check && result["problems_total"].as_u64() != Some(0) {
        bail!(
            "the store is inconsistent: {} derived records disagree with their sources",
            result["problems_total"]
        );
    }
    Ok(())
}

/// A person's view of one CI: identity, attributes, relationship counts and a sample.
fn print_ci(result: &Value) {
    let ci = &result["ci"];
    println!(
        "{} {} ({})",
        cell(&ci["class"]),
        cell(&ci["name"]),
        cell(&ci["id"])
    );
    println!(
        "  status {}, version {}, first seen {}, last seen {}",
        cell(&ci["status"]),
        cell(&ci["version"]),
        cell(&ci["first_seen"]),
        cell(&ci["last_seen"])
    );
    if let Some(at) = result["as_of"].as_str() {
        println!("  as of {at}");
    }
    if let Some(ev) = result["identification"].as_object() {
        println!(
            "  identified by {} = {}",
            cell(&ev["rule"]),
            cell(&ev["value"])
        );
    }
    if let Some(attrs) = ci["attributes"].as_object() {
        println!("attributes:");
        for (k, v) in attrs {
            let text = cell(v);
            let short: String = text.chars().take(100).collect();
            println!(
                "  {k:<28} {short}{}",
                if text.chars().count() > 100 {
                    " …"
                } else {
                    ""
                }
            );
        }
    }
    println!(
        "relationships: {} (incoming: {})",
        cell(&result["counts"]),
        cell(&result["relationships_in"])
    );
    let rels = result["relationships_out"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for r in rels.iter().filter(|r| r["key"]["kind"] != "installs") {
        println!(
            "  {} {} ({})",
            cell(&r["key"]["kind"]),
            cell(&r["to_name"]),
            cell(&r["key"]["to"])
        );
    }
    let installs: Vec<&Value> = rels
        .iter()
        .filter(|r| r["key"]["kind"] == "installs")
        .collect();
    for r in installs.iter().take(10) {
        println!(
            "  installs {} {} [{}]",
            cell(&r["to_name"]),
            cell(&r["attributes"]["version"]),
            cell(&r["key"]["discriminator"])
        );
    }
    if installs.len() > 10 {
        println!(
            "  … {} more installs (--format json for all)",
            installs.len() - 10
        );
    }
}

fn unreachable_command() -> ! {
    eprintln!("census-collector: internal error: command dispatched twice");
    std::process::exit(2)
}

use census_collector::table::cell;

fn print_table(result: &Value, columns: &[&str]) {
    let rows: Vec<&Value> = match result {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    print!("{}", census_collector::table::render(&rows, columns));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_are_decided_as_change_records_are_reviewed() {
        let parse = |args: &[&str]| {
            let mut all = vec![
                "census-collector",
                "--data-dir",
                "/tmp/x",
                "resolve-conflict",
            ];
            all.extend_from_slice(args);
            Cli::try_parse_from(all)
        };
        for args in [
            &["idc_1", "kept-separate"][..],
            &["idc_1", "--decision", "claiming-agent-revoked"][..],
        ] {
            match parse(args)
                .unwrap_or_else(|e| panic!("{args:?}: {e}"))
                .command
            {
                Command::ResolveConflict {
                    decision,
                    decision_flag,
                    ..
                } => assert!(decision.or(decision_flag).is_some(), "{args:?}"),
                _ => panic!("{args:?} parsed as another command"),
            }
        }
        assert!(parse(&["idc_1"]).is_err(), "a decision is required");
    }
}
