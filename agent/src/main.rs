//! `census-agent`: inventories this machine and pushes signed snapshots to a collector.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use census_agent::probe::{self, SectionName};

#[derive(Parser)]
#[command(
    name = "census-agent",
    version,
    about = "Census endpoint agent: inventory, enroll, push signed snapshots"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Pretty,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Inventory { format, sections } => {
            let sections = if sections.is_empty() {
                SectionName::ALL.to_vec()
            } else {
                sections
            };
            let snapshot = probe::collect(&sections);
            let out = match format {
                Format::Json => serde_json::to_string(&snapshot),
                Format::Pretty => serde_json::to_string_pretty(&snapshot),
            };
            match out {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("census-agent: cannot print the inventory: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
