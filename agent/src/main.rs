//! `census-agent`: inventories this machine and pushes signed snapshots to a collector.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use census_agent::config::AgentConfig;
use census_agent::daemon::{self, Agent};
use census_agent::probe::{self, SectionName};
use census_agent::state::StateDir;
use census_agent::transport::{normalise_fingerprint, Trust};

#[derive(Parser)]
#[command(
    name = "census-agent",
    version,
    about = "Census endpoint agent: inventory, enroll, push signed snapshots"
)]
struct Cli {
    /// State directory (key, enrollment, seq, spool). Default: /var/lib/census-agent as root,
    /// $XDG_STATE_HOME/census-agent otherwise.
    #[arg(long, global = true, env = "CENSUS_AGENT_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Configuration file (TOML). Default: /etc/census-agent/agent.toml; missing means defaults.
    #[arg(
        long,
        global = true,
        env = "CENSUS_AGENT_CONFIG",
        default_value = "/etc/census-agent/agent.toml"
    )]
    config: PathBuf,
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Pretty,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Print this machine's inventory snapshot.
    Inventory {
        #[arg(long, value_enum, default_value = "pretty")]
        format: Format,
        /// Comma-separated sections (system, os, cpus, memory, disks, filesystems, network,
        /// software, services, users, ports); all when omitted.
        #[arg(long, value_delimiter = ',')]
        sections: Vec<SectionName>,
    },
    /// Enroll with a collector: makes the key pair and pins the collector's CA.
    Enroll {
        #[arg(long)]
        server: String,
        #[arg(long, env = "CENSUS_ENROLL_TOKEN")]
        token: String,
        /// SHA-256 fingerprint of the collector's CA certificate.
        #[arg(long, conflicts_with = "ca_cert", required_unless_present = "ca_cert")]
        ca_fingerprint: Option<String>,
        /// The collector's CA certificate (PEM).
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        /// Enroll again with a new key and agent id.
        #[arg(long)]
        force: bool,
    },
    /// Collect and push one snapshot now (or a heartbeat when nothing changed). Exits 3
    /// when it is spooled but not delivered yet, 4 when the collector refuses this agent
    /// (revoked, superseded, unknown).
    Once,
    /// Run in the foreground on the configured schedule (for systemd, launchd, services).
    Run,
    /// Show enrollment, last success, spool depth and next run.
    Status,
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// `once`: the inventory is spooled but the collector could not be reached (or asked to
/// wait); a later run delivers it.
const EXIT_NOT_YET_DELIVERED: u8 = 3;
/// `once`: the collector refuses this agent (revoked, superseded, unknown).
const EXIT_AGENT_REFUSED: u8 = 4;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Inventory { .. }) {
        init_logging(cli.log_format);
    }
    let state_dir = cli
        .state_dir
        .clone()
        .unwrap_or_else(daemon::default_state_dir);
    match run(cli, state_dir) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("census-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, state_dir: PathBuf) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Inventory { format, sections } => {
            let sections = if sections.is_empty() {
                SectionName::ALL.to_vec()
            } else {
                sections
            };
            let snapshot = probe::collect(&sections);
            let text = match format {
                Format::Json => serde_json::to_string(&snapshot)?,
                Format::Pretty => serde_json::to_string_pretty(&snapshot)?,
            };
            println!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Enroll {
            server,
            token,
            ca_fingerprint,
            ca_cert,
            force,
        } => {
            let trust = match (ca_fingerprint, ca_cert) {
                (Some(fp), _) => Trust::Fingerprint(normalise_fingerprint(&fp)?),
                (None, Some(path)) => Trust::CaPem(
                    std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
                ),
                (None, None) => anyhow::bail!("give --ca-fingerprint or --ca-cert"),
            };
            let config = AgentConfig::load(&cli.config)?;
            let state = StateDir::open(&state_dir)?;
            let e = runtime()?.block_on(daemon::enroll(
                &state,
                &server,
                &token,
                trust,
                force,
                Duration::from_secs(config.request_timeout_seconds),
            ))?;
            println!(
                "enrolled as {} with {} (state in {})",
                e.agent_id,
                e.server,
                state_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Once => {
            let config = AgentConfig::load(&cli.config)?;
            let agent = Agent::open(&state_dir, config)?;
            let report = runtime()?.block_on(agent.run_once());
            agent.record(&report)?;
            let report = report?;
            if report.heartbeat {
                println!("heartbeat accepted (inventory unchanged)");
            }
            for (seq, kind) in &report.delivered {
                println!("{} seq {seq} delivered", kind.as_str());
            }
            for (seq, status, detail) in &report.refused {
                println!("seq {seq} refused ({status}): {detail}");
            }
            for (seq, why) in &report.resent_full {
                println!(
                    "a delta could not be applied ({why}); the inventory went whole as seq {seq}"
                );
            }
            if let Some((_, reason)) = &report.retry {
                println!(
                    "not delivered yet: {reason}; {} snapshot(s) wait in the spool",
                    report.pending
                );
                return Ok(ExitCode::from(EXIT_NOT_YET_DELIVERED));
            }
            if let Some(refusal) = &report.standing_refusal {
                eprintln!("error: {refusal}");
                return Ok(ExitCode::from(EXIT_AGENT_REFUSED));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run => {
            runtime()?.block_on(daemon::run(state_dir, cli.config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status => {
            let config = AgentConfig::load(&cli.config)?;
            print!("{}", daemon::status_text(&state_dir, &config)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
