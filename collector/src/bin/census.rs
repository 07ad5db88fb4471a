//! `census`: the command-line client for people. Talks to the collector's HTTPS API with
//! a person's API token (from `census login`), prints tables, JSON or formula-safe CSV.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use census_collector::table::cell;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "census",
    version,
    about = "Query the Census CMDB, keep its asset register and review drift"
)]
struct Cli {
    /// Output format.
    #[arg(long, short, value_enum, default_value = "table", global = true)]
    output: Output,
    /// Client configuration (server, token, CA); default ~/.config/census/client.json.
    #[arg(long, env = "CENSUS_CLIENT_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
    Csv,
}

#[derive(Subcommand)]
enum Command {
    /// Log in with a password (read from stdin) or save an existing API token.
    Login {
        #[arg(long)]
        server: String,
        #[arg(long)]
        user: Option<String>,
        /// Use this API token instead of a password.
        #[arg(long, env = "CENSUS_TOKEN")]
        token: Option<String>,
        /// The collector's CA certificate (PEM), e.g. DATA_DIR/tls/ca.pem.
        #[arg(long)]
        ca: Option<PathBuf>,
    },
    /// Configuration items.
    Ci {
        #[command(subcommand)]
        command: CiCommand,
    },
    /// Installed software.
    Software {
        #[command(subcommand)]
        command: SoftwareCommand,
    },
    /// Change records.
    Changes {
        #[command(subcommand)]
        command: ChangesCommand,
    },
    /// CMDB health: completeness, correctness and compliance per class, and the defects.
    Health {
        #[command(subcommand)]
        command: Option<HealthCommand>,
    },
    /// Vulnerabilities: the fleet against the OSV advisories the collector holds.
    Vulns {
        #[command(subcommand)]
        command: VulnsCommand,
    },
    /// Business and application services, and what a change affects through them.
    Services {
        #[command(subcommand)]
        command: ServicesCommand,
    },
    /// Configuration baselines and who complies with them.
    Baselines {
        #[command(subcommand)]
        command: BaselinesCommand,
    },
    /// The dependency map: which computers talk to which, on what service.
    Map {
        #[command(subcommand)]
        command: MapCommand,
    },
    /// The asset register: what people record about computers.
    Register {
        #[command(subcommand)]
        command: RegisterCommand,
    },
    /// Software licences and their consumption.
    Licences {
        #[command(subcommand)]
        command: LicenceCommand,
    },
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum LicenceCommand {
    /// Every licence: seats, computers using it, over-deployment, unused seats, expiry.
    List,
    /// One licence and the computers using it.
    Show {
        id: String,
    },
    /// Record a licence.
    Add {
        #[arg(long)]
        name: String,
        /// A product name, or a pattern with `*`.
        #[arg(long)]
        product: String,
        /// Version conditions in the package's own order (">= 16.0, < 17").
        #[arg(long, default_value = "", allow_hyphen_values = true)]
        versions: String,
        #[arg(long)]
        seats: u32,
        /// Last valid day, YYYY-MM-DD.
        #[arg(long)]
        expires: Option<String>,
        #[arg(long)]
        cost: Option<f64>,
    },
    Delete {
        id: String,
    },
}

#[derive(Subcommand)]
enum ServicesCommand {
    /// Every service.
    List,
    /// One service as JSON.
    Show {
        id: String,
    },
    /// Make a service from a JSON file (kind, name, criticality, depends_on, runs_on, ...).
    Add {
        file: PathBuf,
    },
    /// Replace a service with a JSON file's.
    Set {
        id: String,
        file: PathBuf,
    },
    Delete {
        id: String,
    },
    /// The services affected by a computer, a product version, a subnet or a change record.
    Impact {
        #[arg(long, conflicts_with_all = ["product", "subnet", "change_record"])]
        ci: Option<String>,
        #[arg(long)]
        product: Option<String>,
        #[arg(long, requires = "product")]
        versions: Option<String>,
        #[arg(long)]
        subnet: Option<String>,
        #[arg(long)]
        change_record: Option<String>,
    },
    /// Everything a service depends on: services and computers.
    Dependencies {
        id: String,
    },
}

#[derive(Subcommand)]
enum BaselinesCommand {
    /// Every baseline.
    List,
    /// One baseline as JSON.
    Show {
        id: String,
    },
    /// State a baseline from a JSON file (name, applies_to, rules).
    Add {
        file: PathBuf,
    },
    /// Replace a baseline with a JSON file's.
    Set {
        id: String,
        file: PathBuf,
    },
    Delete {
        id: String,
    },
    /// Compliance now: counts per rule, then the hosts (failing first) with each verdict.
    Report {
        id: String,
        /// Only hosts of this verdict: pass, fail, unknown.
        #[arg(long)]
        verdict: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// The daily counts, oldest first.
    Trend {
        id: String,
    },
}

#[derive(Subcommand)]
enum MapCommand {
    /// The connections around a computer (client -> server), to a depth of 1 to 4 hops.
    Host {
        /// The computer's CI id.
        id: String,
        #[arg(long, default_value_t = 1)]
        depth: u32,
    },
    /// A service's map: the computers it runs on and their connections.
    Service {
        id: String,
        #[arg(long, default_value_t = 1)]
        depth: u32,
    },
    /// External endpoints the fleet talks to (peers no single computer holds: hosts without
    /// an agent, SaaS ranges, NAT pools), by subnet, those most computers reach first.
    Endpoints {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum VulnsCommand {
    /// Advisories that hold somewhere in the fleet, most severe first.
    List {
        /// Only advisories at least this severe: low, medium, high, critical.
        #[arg(long)]
        level: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One advisory: the hosts it holds on, and the services they run.
    Show { id: String },
    /// One computer's vulnerable packages.
    Host { id: String },
    /// A service's advisories: on the computers it and every service it depends on run on.
    Service { id: String },
}

#[derive(Subcommand)]
enum HealthCommand {
    /// Scores per class, and the defects (every one, or of a class or kind).
    Show {
        #[arg(long)]
        class: Option<String>,
        /// missing_required, open_conflict, duplicate_serial, duplicate_mac, orphan,
        /// relationship_to_retired, stale, silent_agent
        #[arg(long)]
        kind: Option<String>,
    },
    /// The daily scores, oldest first.
    Trend,
    /// The health settings as JSON; with --file, replace them with that file's (admins).
    Settings {
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RegisterCommand {
    /// A computer's register: each field, its value, and which source set it when.
    Show { id: String },
    /// Set register fields (`owner=ann`, `warranty_end=2027-06-30`); `--clear owner` empties one.
    Set {
        id: String,
        #[arg(value_name = "FIELD=VALUE")]
        values: Vec<String>,
        #[arg(long, value_name = "FIELD")]
        clear: Vec<String>,
        #[arg(long, short)]
        comment: Option<String>,
        /// Refuse unless the computer is still at this history version.
        #[arg(long)]
        expected_version: Option<u64>,
    },
    /// Record a computer that no agent has reported yet (ordered, in stock); the first
    /// agent reporting its serial becomes it.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        serial: Option<String>,
        #[arg(value_name = "FIELD=VALUE")]
        values: Vec<String>,
        #[arg(long, short)]
        comment: Option<String>,
    },
    /// Check a register CSV file (a dry run: nothing is written), or apply it.
    Import {
        file: PathBuf,
        /// Write it (every row or none).
        #[arg(long)]
        apply: bool,
        /// With --apply, write the rows without problems even when others have some.
        #[arg(long, requires = "apply")]
        skip_problem_rows: bool,
    },
    /// Print the register as CSV, in the layout `import` reads.
    Export {
        #[arg(long)]
        filter: Option<String>,
    },
    /// Warranties and licences that have expired or expire within DAYS.
    Expiring {
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// The register settings (status labels, source precedence, custom fields) as JSON;
    /// with --file, replace them with that file's (admins).
    Settings {
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// The register fields of computers, built in and custom, with their types.
    Fields,
    /// Reconciliation items: where discovery disagrees with a value people recorded.
    Reconciliation {
        /// List items people chose to keep too.
        #[arg(long)]
        all: bool,
    },
    /// Take the discovered value of FIELD (the field is discovery's again).
    Accept {
        id: String,
        field: String,
        #[arg(long, short)]
        comment: Option<String>,
    },
    /// Keep the recorded value of FIELD against what discovery reports.
    Keep {
        id: String,
        field: String,
        #[arg(long, short)]
        comment: Option<String>,
    },
}

#[derive(Subcommand)]
enum CiCommand {
    List {
        #[arg(long, default_value = "computer")]
        class: String,
        #[arg(long)]
        filter: Option<String>,
        #[arg(long)]
        sort: Option<String>,
        #[arg(long, default_value = "id,name,status,last_seen")]
        fields: String,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    Show {
        id: String,
        /// RFC 3339 time, date, or age (-7d, written as the README does: `--as-of -30d`).
        #[arg(long, allow_hyphen_values = true)]
        as_of: Option<String>,
    },
}

#[derive(Subcommand)]
enum SoftwareCommand {
    /// Computers with a package, optionally within a version condition ('<3.0.7').
    Where {
        name: String,
        condition: Option<String>,
    },
    /// The catalogue: products, their titles, install counts, versions.
    List {
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Software titles: packages rolled into products by the title rules.
    Titles {
        #[arg(long)]
        prefix: Option<String>,
        /// Only this category ('-' for titles without one).
        #[arg(long)]
        category: Option<String>,
    },
    /// The title rules as JSON; with FILE, replace the draft with the rules it holds (the
    /// printed document's `draft`, `{"rules": [...]}` or a bare list).
    Rules { file: Option<PathBuf> },
    /// What replaying the draft rules over the CMDB changes; --apply makes them the
    /// applied set.
    Replay {
        #[arg(long)]
        apply: bool,
    },
}

#[derive(Subcommand)]
enum ChangesCommand {
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        severity: Option<String>,
    },
    Show {
        id: String,
    },
    /// Accept or reject a record (or some of its items) with a comment.
    Review {
        id: String,
        #[arg(value_parser = ["accepted", "rejected"])]
        decision: String,
        #[arg(long, short)]
        comment: String,
        /// Item indexes (0-based) to decide; all when absent.
        #[arg(long, value_delimiter = ',')]
        items: Option<Vec<usize>>,
    },
}

#[derive(Serialize, Deserialize)]
struct ClientConfig {
    server: String,
    token: String,
    ca_pem: Option<String>,
}

fn config_path(cli: &Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = cli {
        return Ok(p.clone());
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .context("neither XDG_CONFIG_HOME nor HOME is set; pass --config")?;
    Ok(base.join("census").join("client.json"))
}

fn client(ca_pem: Option<&str>) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60));
    if let Some(pem) = ca_pem {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes())?);
    }
    Ok(b.build()?)
}

/// Sends a request with the saved token; a refusal becomes an error with its detail.
async fn send(cfg: &ClientConfig, what: String, req: reqwest::RequestBuilder) -> Result<Value> {
    let r = req
        .bearer_auth(&cfg.token)
        .send()
        .await
        .with_context(|| what.clone())?;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "{status}: {}",
            body["detail"]
                .as_str()
                .unwrap_or("the collector refused the request")
        );
    }
    Ok(body)
}

fn url(cfg: &ClientConfig, path: &str) -> String {
    format!("{}{path}", cfg.server.trim_end_matches('/'))
}

async fn post(cfg: &ClientConfig, path: &str, body: &Value) -> Result<Value> {
    let req = client(cfg.ca_pem.as_deref())?
        .post(url(cfg, path))
        .json(body);
    send(cfg, format!("POST {path}"), req).await
}

async fn put(cfg: &ClientConfig, path: &str, body: &Value) -> Result<Value> {
    let req = client(cfg.ca_pem.as_deref())?
        .put(url(cfg, path))
        .json(body);
    send(cfg, format!("PUT {path}"), req).await
}

async fn delete(cfg: &ClientConfig, path: &str) -> Result<Value> {
    let req = client(cfg.ca_pem.as_deref())?.delete(url(cfg, path));
    send(cfg, format!("DELETE {path}"), req).await
}

async fn call(cfg: &ClientConfig, path: &str, query: &[(&str, String)]) -> Result<Value> {
    let req = client(cfg.ca_pem.as_deref())?
        .get(url(cfg, path))
        .query(query);
    send(cfg, format!("GET {path}"), req).await
}

/// `FIELD=VALUE` arguments and `--clear FIELD` into a register edit's `set`.
fn register_set(values: &[String], clear: &[String]) -> Result<serde_json::Map<String, Value>> {
    let mut set = serde_json::Map::new();
    for v in values {
        let (field, value) = v
            .split_once('=')
            .with_context(|| format!("'{v}' is not FIELD=VALUE"))?;
        set.insert(field.trim().to_string(), Value::String(value.to_string()));
    }
    for field in clear {
        set.insert(field.trim().to_string(), Value::Null);
    }
    if set.is_empty() {
        bail!("give at least one FIELD=VALUE or --clear FIELD");
    }
    Ok(set)
}

/// A register view as table rows: field, value, source, by, at.
fn register_rows(view: &Value) -> Vec<Value> {
    rows_of(view, "fields")
        .iter()
        .map(|f| {
            serde_json::json!({
                "field": f["field"],
                "value": f["value"],
                "source": f["set_by"]["source"],
                "by": f["set_by"]["by"],
                "at": f["set_by"]["at"],
            })
        })
        .collect()
}

/// The `name`s of the list under `key`, joined by spaces, as one table cell.
fn names_of(v: &Value, key: &str) -> Value {
    Value::from(
        rows_of(v, key)
            .iter()
            .filter_map(|x| x["name"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

fn rows_of<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key].as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn print_rows(output: Output, rows: &[Value], columns: &[&str]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match output {
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(rows)?)?,
        Output::Csv => {
            writeln!(out, "{}", columns.join(","))?;
            for r in rows {
                let line: Vec<String> = columns
                    .iter()
                    .map(|c| census_collector::query_api::csv_cell(&r[*c]))
                    .collect();
                writeln!(out, "{}", line.join(","))?;
            }
        }
        Output::Table => {
            let refs: Vec<&Value> = rows.iter().collect();
            write!(out, "{}", census_collector::table::render(&refs, columns))?;
        }
    }
    Ok(())
}

/// A change item's old or new value in a table cell: a package's or an OS's version, a
/// scalar as it is, anything else as compact JSON cut to 60 characters.
fn brief(v: &Value) -> String {
    const MAX: usize = 60;
    let text = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Object(m) => match m.get("version").and_then(Value::as_str) {
            Some(version) => version.to_string(),
            None => v.to_string(),
        },
        other => other.to_string(),
    };
    if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// '<3.0.7' -> ("<", "3.0.7"); a bare version means '='.
fn split_condition(text: &str) -> (&str, &str) {
    for op in ["<=", ">=", "!=", "<", ">", "="] {
        if let Some(rest) = text.trim().strip_prefix(op) {
            return (op, rest.trim());
        }
    }
    ("=", text.trim())
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

async fn login(
    path: &std::path::Path,
    server: String,
    user: Option<String>,
    token: Option<String>,
    ca: Option<PathBuf>,
) -> Result<()> {
    let ca_pem = ca.map(std::fs::read_to_string).transpose()?;
    let token = match token {
        Some(t) => t,
        None => {
            let user = user.context("give --user NAME (password on stdin) or --token")?;
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let r = client(ca_pem.as_deref())?
                .post(format!("{}/api/v1/login", server.trim_end_matches('/')))
                .json(&serde_json::json!({"name": user, "password": password.trim_end_matches(['\n', '\r'])}))
                .send()
                .await?;
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                bail!(
                    "login refused: {}",
                    body["detail"].as_str().unwrap_or("unknown")
                );
            }
            body["token"].as_str().unwrap_or_default().to_string()
        }
    };
    let cfg = ClientConfig {
        server,
        token,
        ca_pem,
    };
    let me = call(&cfg, "/api/v1/me", &[]).await?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)?
        .write_all(serde_json::to_string_pretty(&cfg)?.as_bytes())?;
    println!(
        "logged in as {} ({}); saved to {}",
        cell(&me["name"]),
        cell(&me["role"]),
        path.display()
    );
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    let path = config_path(&cli.config)?;
    let load = || -> Result<ClientConfig> {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("read {} (run `census login` first)", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    };
    let output = cli.output;
    match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "census", &mut std::io::stdout());
        }
        Command::Login {
            server,
            user,
            token,
            ca,
        } => login(&path, server, user, token, ca).await?,
        Command::Ci {
            command:
                CiCommand::List {
                    class,
                    filter,
                    sort,
                    fields,
                    limit,
                },
        } => {
            let cfg = load()?;
            let mut q = vec![
                ("class", class),
                ("fields", fields.clone()),
                ("limit", limit.to_string()),
            ];
            if let Some(f) = filter {
                q.push(("filter", f));
            }
            if let Some(s) = sort {
                q.push(("sort", s));
            }
            let page = call(&cfg, "/api/v1/cis", &q).await?;
            let cols: Vec<&str> = fields.split(',').map(str::trim).collect();
            print_rows(output, rows_of(&page, "items"), &cols)?;
            if output == Output::Table {
                eprintln!(
                    "{} of {} shown",
                    rows_of(&page, "items").len(),
                    cell(&page["total"])
                );
            }
        }
        Command::Ci {
            command: CiCommand::Show { id, as_of },
        } => {
            let cfg = load()?;
            let q: Vec<(&str, String)> = as_of.map(|t| vec![("as_of", t)]).unwrap_or_default();
            let detail = call(&cfg, &format!("/api/v1/cis/{id}"), &q).await?;
            if output == Output::Table {
                let ci = &detail["ci"];
                println!(
                    "{} {} ({}) {}",
                    cell(&ci["class"]),
                    cell(&ci["name"]),
                    cell(&ci["id"]),
                    cell(&ci["status"])
                );
                if let Some(attrs) = ci["attributes"].as_object() {
                    for (k, v) in attrs {
                        let text: String = cell(v)
                            .chars()
                            .filter(|c| !c.is_control())
                            .take(100)
                            .collect();
                        println!("  {k:<28} {text}");
                    }
                }
                println!(
                    "relationships out: {}, in: {}",
                    cell(&detail["relationships_out_total"]),
                    cell(&detail["relationships_in_total"])
                );
            } else {
                println!("{}", serde_json::to_string_pretty(&detail)?);
            }
        }
        Command::Register { command } => register(output, &load()?, command).await?,
        Command::Services { command } => services(output, &load()?, command).await?,
        Command::Vulns { command } => vulns(output, &load()?, command).await?,
        Command::Map { command } => map(output, &load()?, command).await?,
        Command::Baselines { command } => baselines(output, &load()?, command).await?,
        Command::Health { command } => {
            let command = command.unwrap_or(HealthCommand::Show {
                class: None,
                kind: None,
            });
            health(output, &load()?, command).await?
        }
        Command::Licences { command } => licences(output, &load()?, command).await?,
        Command::Software { command } => software(output, &load()?, command).await?,
        Command::Changes {
            command: ChangesCommand::List { state, severity },
        } => {
            let cfg = load()?;
            let mut q = Vec::new();
            if let Some(s) = state {
                q.push(("state", s));
            }
            if let Some(s) = severity {
                q.push(("severity", s));
            }
            let list = call(&cfg, "/api/v1/change-records", &q).await?;
            let rows: Vec<Value> = rows_of(&list, "records")
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r["items"] = Value::from(r["items"].as_array().map(Vec::len).unwrap_or(0));
                    r
                })
                .collect();
            print_rows(
                output,
                &rows,
                &[
                    "id",
                    "ci_name",
                    "state",
                    "severity",
                    "authorization",
                    "detected_at",
                    "items",
                ],
            )?;
        }
        Command::Changes {
            command:
                ChangesCommand::Review {
                    id,
                    decision,
                    comment,
                    items,
                },
        } => {
            let cfg = load()?;
            let mut body = serde_json::json!({"decision": decision, "comment": comment});
            if let Some(items) = items {
                body["items"] = serde_json::json!(items);
            }
            let r = post(&cfg, &format!("/api/v1/change-records/{id}/review"), &body).await?;
            if output == Output::Table {
                println!("{} is now {}", cell(&r["id"]), cell(&r["state"]));
            } else {
                println!("{}", serde_json::to_string_pretty(&r)?);
            }
        }
        Command::Changes {
            command: ChangesCommand::Show { id },
        } => {
            let cfg = load()?;
            let r = call(&cfg, &format!("/api/v1/change-records/{id}"), &[]).await?;
            if output == Output::Table {
                println!(
                    "{} {} on {} ({}), {} {}",
                    cell(&r["id"]),
                    cell(&r["state"]),
                    cell(&r["ci_name"]),
                    cell(&r["ci_id"]),
                    cell(&r["severity"]),
                    cell(&r["authorization"])
                );
                let items: Vec<Value> = rows_of(&r, "items")
                    .iter()
                    .map(|i| {
                        let mut row = i.clone();
                        row["before"] = Value::from(brief(&i["old"]));
                        row["after"] = Value::from(brief(&i["new"]));
                        row
                    })
                    .collect();
                print_rows(
                    Output::Table,
                    &items,
                    &[
                        "kind",
                        "subject",
                        "before",
                        "after",
                        "severity",
                        "suppressed",
                        "planned_change",
                    ],
                )?;
            } else {
                println!("{}", serde_json::to_string_pretty(&r)?);
            }
        }
    }
    Ok(())
}

fn json_file(file: &std::path::Path) -> Result<Value> {
    let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))
}

async fn services(output: Output, cfg: &ClientConfig, command: ServicesCommand) -> Result<()> {
    let print = |v: &Value| -> Result<()> {
        println!("{}", serde_json::to_string_pretty(v)?);
        Ok(())
    };
    match command {
        ServicesCommand::List => {
            let list = call(cfg, "/api/v1/services", &[]).await?;
            if output == Output::Json {
                return print(&list);
            }
            print_rows(
                output,
                rows_of(&list, "services"),
                &[
                    "id",
                    "name",
                    "kind",
                    "criticality",
                    "owner",
                    "support_group",
                    "version",
                ],
            )?;
        }
        ServicesCommand::Show { id } => {
            print(&call(cfg, &format!("/api/v1/services/{id}"), &[]).await?)?
        }
        ServicesCommand::Add { file } => {
            print(&post(cfg, "/api/v1/services", &json_file(&file)?).await?)?
        }
        ServicesCommand::Set { id, file } => {
            let path = format!("/api/v1/services/{id}");
            print(&put(cfg, &path, &json_file(&file)?).await?)?
        }
        ServicesCommand::Delete { id } => {
            delete(cfg, &format!("/api/v1/services/{id}")).await?;
        }
        ServicesCommand::Impact {
            ci,
            product,
            versions,
            subnet,
            change_record,
        } => {
            let q: Vec<(&str, String)> = [
                ("ci", ci),
                ("product", product),
                ("versions", versions),
                ("subnet", subnet),
                ("change_record", change_record),
            ]
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
            let impact = call(cfg, "/api/v1/services/impact", &q).await?;
            if output == Output::Json {
                return print(&impact);
            }
            let rows: Vec<Value> = rows_of(&impact, "services")
                .iter()
                .map(|s| {
                    let path: Vec<&str> = s["path"]
                        .as_array()
                        .map(|p| p.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    serde_json::json!({
                        "criticality": s["criticality"],
                        "service": s["name"],
                        "path": path.join(" -> "),
                        "via": s["via"],
                    })
                })
                .collect();
            print_rows(output, &rows, &["criticality", "service", "path", "via"])?;
            eprintln!("{} computers", cell(&impact["computers_total"]));
        }
        ServicesCommand::Dependencies { id } => {
            let d = call(cfg, &format!("/api/v1/services/{id}/dependencies"), &[]).await?;
            if output == Output::Json {
                return print(&d);
            }
            print_rows(
                output,
                rows_of(&d, "services"),
                &["depth", "name", "criticality", "id"],
            )?;
            print_rows(output, rows_of(&d, "computers"), &["name", "id", "service"])?;
        }
    }
    Ok(())
}

async fn software(output: Output, cfg: &ClientConfig, command: SoftwareCommand) -> Result<()> {
    match command {
        SoftwareCommand::Where { name, condition } => {
            let mut filter = format!("software.name = {}", quoted(&name));
            if let Some(c) = condition {
                let (op, v) = split_condition(&c);
                filter.push_str(&format!(" and software.version {op} {}", quoted(v)));
            }
            let fields = "id,name,os.hostname,last_seen";
            let page = call(
                cfg,
                "/api/v1/cis",
                &[
                    ("filter", filter),
                    ("fields", fields.into()),
                    ("limit", "1000".into()),
                ],
            )
            .await?;
            let cols: Vec<&str> = fields.split(',').collect();
            print_rows(output, rows_of(&page, "items"), &cols)?;
        }
        SoftwareCommand::List { prefix } => {
            let q: Vec<(&str, String)> = prefix.map(|p| vec![("prefix", p)]).unwrap_or_default();
            let cat = call(cfg, "/api/v1/software", &q).await?;
            let rows: Vec<Value> = rows_of(&cat, "products")
                .iter()
                .map(|p| {
                    let mut p = p.clone();
                    p["newest"] = p["versions"][0]["version"].clone();
                    p
                })
                .collect();
            print_rows(
                output,
                &rows,
                &[
                    "name",
                    "title",
                    "publisher",
                    "category",
                    "installs",
                    "distinct_versions",
                    "newest",
                    "id",
                ],
            )?;
        }
        SoftwareCommand::Titles { prefix, category } => {
            let mut q = Vec::new();
            if let Some(p) = prefix {
                q.push(("prefix", p));
            }
            if let Some(c) = category {
                q.push(("category", c));
            }
            q.push(("limit", "1000".to_string()));
            let page = call(cfg, "/api/v1/software/titles", &q).await?;
            let rows: Vec<Value> = rows_of(&page, "titles")
                .iter()
                .map(|t| {
                    let mut t = t.clone();
                    t["newest"] = t["versions"][0]["version"].clone();
                    t["packages"] = names_of(&t, "packages");
                    t
                })
                .collect();
            print_rows(
                output,
                &rows,
                &[
                    "product",
                    "publisher",
                    "category",
                    "computers",
                    "distinct_versions",
                    "newest",
                    "packages",
                ],
            )?;
        }
        SoftwareCommand::Rules { file: None } => {
            let book = call(cfg, "/api/v1/software/rules", &[]).await?;
            println!("{}", serde_json::to_string_pretty(&book)?);
        }
        SoftwareCommand::Rules { file: Some(file) } => {
            let doc = json_file(&file)?;
            let rules = match &doc {
                Value::Array(_) => doc.clone(),
                Value::Object(o) if o.contains_key("draft") => o["draft"].clone(),
                Value::Object(o) if o.contains_key("rules") => o["rules"].clone(),
                _ => bail!(
                    "{}: expected a list of rules, {{\"rules\": [...]}} or the printed rules' document",
                    file.display()
                ),
            };
            let book = put(
                cfg,
                "/api/v1/software/rules",
                &serde_json::json!({ "rules": rules }),
            )
            .await?;
            println!(
                "draft saved: {} rules (the applied set is unchanged until `census software replay --apply`)",
                rows_of(&book, "draft").len()
            );
        }
        SoftwareCommand::Replay { apply } => {
            let path = format!("/api/v1/software/rules/replay?dry_run={}", !apply);
            let report = post(cfg, &path, &Value::Null).await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(());
            }
            println!(
                "{}: {} products, {} change title, {} match no rule; {} titles before, {} after (rules version {})",
                if apply { "applied" } else { "dry run" },
                report["products"],
                report["changed"],
                report["unmatched"],
                report["titles_before"],
                report["titles_after"],
                report["version"],
            );
            let rows: Vec<Value> = rows_of(&report, "changes")
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "package": c["name"],
                        "before": c["before"]["product"],
                        "after": c["after"]["product"],
                        "publisher": c["after"]["publisher"],
                        "category": c["after"]["category"],
                        "rule": c["after"]["rule"],
                    })
                })
                .collect();
            print_rows(
                output,
                &rows,
                &[
                    "package",
                    "before",
                    "after",
                    "publisher",
                    "category",
                    "rule",
                ],
            )?;
        }
    }
    Ok(())
}

/// Prints settings as JSON, or with `file` replaces them with that file's first.
async fn settings(cfg: &ClientConfig, path: &str, file: Option<PathBuf>) -> Result<()> {
    let settings = match file {
        None => call(cfg, path, &[]).await?,
        Some(file) => {
            let mut body = json_file(&file)?;
            // What was printed can be edited and sent back as it is.
            if let Some(o) = body.as_object_mut() {
                o.remove("updated_by");
                o.remove("updated_at");
            }
            put(cfg, path, &body).await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&settings)?);
    Ok(())
}

async fn baselines(output: Output, cfg: &ClientConfig, command: BaselinesCommand) -> Result<()> {
    let print = |v: &Value| -> Result<()> {
        println!("{}", serde_json::to_string_pretty(v)?);
        Ok(())
    };
    match command {
        BaselinesCommand::List => {
            let list = call(cfg, "/api/v1/baselines", &[]).await?;
            if output == Output::Json {
                return print(&list);
            }
            let rows: Vec<Value> = rows_of(&list, "baselines")
                .iter()
                .map(|b| {
                    serde_json::json!({
                        "id": b["id"], "name": b["name"], "applies_to": b["applies_to"],
                        "rules": b["rules"].as_array().map_or(0, Vec::len), "version": b["version"],
                    })
                })
                .collect();
            print_rows(
                output,
                &rows,
                &["id", "name", "applies_to", "rules", "version"],
            )?;
        }
        BaselinesCommand::Show { id } => {
            print(&call(cfg, &format!("/api/v1/baselines/{id}"), &[]).await?)?
        }
        BaselinesCommand::Add { file } => {
            print(&post(cfg, "/api/v1/baselines", &json_file(&file)?).await?)?
        }
        BaselinesCommand::Set { id, file } => {
            let path = format!("/api/v1/baselines/{id}");
            print(&put(cfg, &path, &json_file(&file)?).await?)?
        }
        BaselinesCommand::Delete { id } => {
            delete(cfg, &format!("/api/v1/baselines/{id}")).await?;
        }
        BaselinesCommand::Report { id, verdict, limit } => {
            let mut q = vec![("limit", limit.to_string())];
            if let Some(v) = verdict {
                q.push(("verdict", v));
            }
            let r = call(cfg, &format!("/api/v1/baselines/{id}/compliance"), &q).await?;
            if output == Output::Json {
                return print(&r);
            }
            print_rows(
                output,
                rows_of(&r, "rules"),
                &["rule", "pass", "fail", "unknown"],
            )?;
            let rules: Vec<String> = rows_of(&r, "rules")
                .iter()
                .map(|r| cell(&r["rule"]))
                .collect();
            let rows: Vec<Value> = rows_of(&r, "hosts")
                .iter()
                .map(|h| {
                    let failing: Vec<String> = h["findings"]
                        .as_array()
                        .map(|f| {
                            f.iter()
                                .zip(&rules)
                                .filter(|(f, _)| f["verdict"] != "pass")
                                .map(|(f, rule)| {
                                    format!(
                                        "{rule}: {} ({})",
                                        cell(&f["verdict"]),
                                        cell(&f["evidence"])
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    serde_json::json!({
                        "name": h["name"], "verdict": h["verdict"], "id": h["id"],
                        "not_passing": failing.join("; "),
                    })
                })
                .collect();
            print_rows(output, &rows, &["name", "verdict", "not_passing", "id"])?;
            eprintln!(
                "{}: {} hosts, {} pass, {} fail, {} unknown",
                cell(&r["baseline_name"]),
                cell(&r["hosts_total"]),
                cell(&r["pass"]),
                cell(&r["fail"]),
                cell(&r["unknown"])
            );
        }
        BaselinesCommand::Trend { id } => {
            let t = call(cfg, &format!("/api/v1/baselines/{id}/trend"), &[]).await?;
            if output == Output::Json {
                return print(&t);
            }
            print_rows(
                output,
                rows_of(&t, "points"),
                &["day", "hosts", "pass", "fail", "unknown"],
            )?;
        }
    }
    Ok(())
}

async fn map(output: Output, cfg: &ClientConfig, command: MapCommand) -> Result<()> {
    let map = match command {
        MapCommand::Endpoints { limit } => {
            let list = call(
                cfg,
                "/api/v1/map/endpoints",
                &[("limit", limit.to_string())],
            )
            .await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            // A list as one cell: each item, or each item's `field`.
            let join = |v: &Value, field: Option<&str>| {
                let items = v.as_array().map(Vec::as_slice).unwrap_or(&[]);
                let words: Vec<String> = items
                    .iter()
                    .map(|i| cell(field.map_or(i, |f| &i[f])))
                    .collect();
                Value::String(words.join(" "))
            };
            let rows: Vec<Value> = rows_of(&list, "groups")
                .iter()
                .map(|g| {
                    serde_json::json!({
                        "subnet": g["subnet"],
                        "addresses": join(&g["addresses"], Some("address")),
                        "serves": join(&g["ports_it_serves"], None),
                        "uses": join(&g["ports_it_uses"], None),
                        "computers": g["computers"],
                        "some_computers": join(&g["named"], Some("name")),
                        "last_seen": g["last_seen"],
                    })
                })
                .collect();
            print_rows(
                output,
                &rows,
                &[
                    "subnet",
                    "addresses",
                    "serves",
                    "uses",
                    "computers",
                    "some_computers",
                    "last_seen",
                ],
            )?;
            eprintln!("{} of {} endpoint groups", rows.len(), cell(&list["total"]));
            return Ok(());
        }
        MapCommand::Host { id, depth } => {
            call(
                cfg,
                "/api/v1/map",
                &[("ci", id), ("depth", depth.to_string())],
            )
            .await?
        }
        MapCommand::Service { id, depth } => {
            let path = format!("/api/v1/services/{id}/map");
            call(cfg, &path, &[("depth", depth.to_string())]).await?
        }
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&map)?);
        return Ok(());
    }
    let names: std::collections::HashMap<&str, &str> = rows_of(&map, "nodes")
        .iter()
        .filter_map(|n| Some((n["id"].as_str()?, n["name"].as_str()?)))
        .collect();
    let name = |v: &Value| {
        let id = v.as_str().unwrap_or_default();
        Value::String(names.get(id).copied().unwrap_or(id).to_string())
    };
    let rows: Vec<Value> = rows_of(&map, "edges")
        .iter()
        .filter(|e| e["kind"] == "connects_to")
        .map(|e| {
            serde_json::json!({
                "client": name(&e["from"]),
                "server": name(&e["to"]),
                "service": format!("{}/{}", cell(&e["protocol"]), cell(&e["port"])),
                "client_process": e["client_process"],
                "server_process": e["server_process"],
                "samples": e["samples"],
                "last_seen": e["last_seen"],
                "reported_by": e["reported_by"],
            })
        })
        .collect();
    print_rows(
        output,
        &rows,
        &[
            "client",
            "server",
            "service",
            "client_process",
            "server_process",
            "samples",
            "last_seen",
            "reported_by",
        ],
    )?;
    eprintln!(
        "{} nodes, {} connections{}",
        rows_of(&map, "nodes").len(),
        rows.len(),
        if map["truncated"] == true {
            " (truncated at 500 nodes)"
        } else {
            ""
        }
    );
    Ok(())
}

async fn vulns(output: Output, cfg: &ClientConfig, command: VulnsCommand) -> Result<()> {
    match command {
        VulnsCommand::List { level, limit } => {
            let mut q = vec![("limit", limit.to_string())];
            if let Some(l) = level {
                q.push(("level", l));
            }
            let report = call(cfg, "/api/v1/vulns", &q).await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(());
            }
            print_rows(
                output,
                rows_of(&report, "advisories"),
                &["id", "aliases", "level", "score", "hosts", "packages"],
            )?;
            eprintln!(
                "{} advisories held; {} of {} computers exposed ({} host-advisory pairs)",
                cell(&report["advisories_held"]),
                cell(&report["computers_exposed"]),
                cell(&report["computers_checked"]),
                cell(&report["exposures"])
            );
        }
        VulnsCommand::Show { id } => {
            let report = call(cfg, &format!("/api/v1/vulns/{id}"), &[]).await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(());
            }
            let a = &report["advisory"];
            println!(
                "{} {} ({}): {}",
                cell(&a["id"]),
                cell(&a["rating"]["level"]),
                cell(&a["aliases"]),
                cell(&a["summary"])
            );
            print_rows(
                output,
                rows_of(&report, "hosts"),
                &["id", "name", "package", "version", "fixed", "detected"],
            )?;
            print_rows(
                output,
                rows_of(&report, "services"),
                &["name", "criticality", "via"],
            )?;
            eprintln!("{} hosts", cell(&report["hosts_total"]));
        }
        VulnsCommand::Service { id } => {
            let report = call(cfg, &format!("/api/v1/services/{id}/vulns"), &[]).await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(());
            }
            let rows: Vec<Value> = rows_of(&report, "advisories")
                .iter()
                .map(|a| {
                    let mut a = a.clone();
                    a["named_hosts"] = names_of(&a, "named_hosts");
                    a
                })
                .collect();
            print_rows(
                output,
                &rows,
                &[
                    "id",
                    "level",
                    "hosts",
                    "packages",
                    "fixed",
                    "named_hosts",
                    "aliases",
                ],
            )?;
            eprintln!(
                "{}: {} of {} computers exposed to {} advisories",
                cell(&report["service_name"]),
                cell(&report["computers_exposed"]),
                cell(&report["computers_matched"]),
                cell(&report["advisories_total"])
            );
        }
        VulnsCommand::Host { id } => {
            let report = call(cfg, &format!("/api/v1/cis/{id}/vulns"), &[]).await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(());
            }
            print_rows(
                output,
                rows_of(&report, "findings"),
                &[
                    "advisory", "level", "package", "version", "fixed", "since", "detected",
                    "aliases",
                ],
            )?;
            if !rows_of(&report, "fixed").is_empty() {
                eprintln!("fixed:");
                print_rows(
                    output,
                    rows_of(&report, "fixed"),
                    &[
                        "advisory", "package", "how", "version", "detected", "closed",
                    ],
                )?;
            }
            eprintln!(
                "{} ({}): {} packages checked against {}",
                cell(&report["computer_name"]),
                cell(&report["computer_id"]),
                cell(&report["packages"]),
                cell(&report["ecosystem"])
            );
        }
    }
    Ok(())
}

async fn health(output: Output, cfg: &ClientConfig, command: HealthCommand) -> Result<()> {
    match command {
        HealthCommand::Show { class, kind } => {
            let mut q = Vec::new();
            if let Some(c) = class {
                q.push(("class", c));
            }
            if let Some(k) = kind {
                q.push(("kind", k));
            }
            let report = call(cfg, "/api/v1/health", &q).await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(());
            }
            let rows: Vec<Value> = rows_of(&report, "classes")
                .iter()
                .filter(|c| c["total"].as_u64().unwrap_or(0) > 0)
                .map(|c| {
                    let dim = |d: &str| {
                        rows_of(c, "dimensions")
                            .iter()
                            .find(|x| x["dimension"] == d)
                            .map(|x| x["score"].clone())
                            .unwrap_or(Value::Null)
                    };
                    serde_json::json!({
                        "class": c["class"],
                        "cis": c["total"],
                        "completeness": dim("completeness"),
                        "correctness": dim("correctness"),
                        "compliance": dim("compliance"),
                        "score": c["score"],
                    })
                })
                .collect();
            print_rows(
                output,
                &rows,
                &[
                    "class",
                    "cis",
                    "completeness",
                    "correctness",
                    "compliance",
                    "score",
                ],
            )?;
            print_rows(
                output,
                rows_of(&report, "defects"),
                &["kind", "class", "ci_id", "ci_name", "detail"],
            )?;
            eprintln!(
                "overall {}; {} defects listed",
                cell(&report["overall"]),
                cell(&report["defects_total"])
            );
        }
        HealthCommand::Trend => {
            let trend = call(cfg, "/api/v1/health/trend", &[]).await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&trend)?);
            } else {
                print_rows(output, rows_of(&trend, "points"), &["day", "overall"])?;
            }
        }
        HealthCommand::Settings { file } => settings(cfg, "/api/v1/health/settings", file).await?,
    }
    Ok(())
}

/// A decision on a reconciliation item; prints the register as it stands after it.
async fn resolve(
    output: Output,
    cfg: &ClientConfig,
    id: &str,
    field: &str,
    resolution: &str,
    comment: Option<String>,
) -> Result<()> {
    let path = format!("/api/v1/cis/{id}/register/reconciliation/{field}");
    let body = serde_json::json!({"resolution": resolution, "comment": comment});
    let view = post(cfg, &path, &body).await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print_rows(
            output,
            &register_rows(&view),
            &["field", "value", "source", "by", "at"],
        )?;
    }
    Ok(())
}

async fn register(output: Output, cfg: &ClientConfig, command: RegisterCommand) -> Result<()> {
    const COLUMNS: [&str; 5] = ["field", "value", "source", "by", "at"];
    let http = client(cfg.ca_pem.as_deref())?;
    match command {
        RegisterCommand::Show { id } => {
            let view = call(cfg, &format!("/api/v1/cis/{id}/register"), &[]).await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print_rows(output, &register_rows(&view), &COLUMNS)?;
            }
        }
        RegisterCommand::Set {
            id,
            values,
            clear,
            comment,
            expected_version,
        } => {
            let mut body = serde_json::json!({ "set": register_set(&values, &clear)? });
            if let Some(c) = comment {
                body["comment"] = Value::String(c);
            }
            if let Some(v) = expected_version {
                body["expected_version"] = Value::from(v);
            }
            let path = format!("/api/v1/cis/{id}/register");
            let req = http.patch(url(cfg, &path)).json(&body);
            let view = send(cfg, format!("PATCH {path}"), req).await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print_rows(output, &register_rows(&view), &COLUMNS)?;
                eprintln!(
                    "{} is at version {}",
                    cell(&view["ci_id"]),
                    cell(&view["version"])
                );
            }
        }
        RegisterCommand::Create {
            name,
            serial,
            values,
            comment,
        } => {
            let set = if values.is_empty() {
                serde_json::Map::new()
            } else {
                register_set(&values, &[])?
            };
            let body =
                serde_json::json!({"name": name, "serial": serial, "set": set, "comment": comment});
            let view = post(cfg, "/api/v1/register/records", &body).await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                println!("{}", cell(&view["ci_id"]));
            }
        }
        RegisterCommand::Import {
            file,
            apply,
            skip_problem_rows,
        } => {
            let bytes = std::fs::read(&file).with_context(|| format!("read {}", file.display()))?;
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "register.csv".into());
            let path = "/api/v1/register/import";
            let req = http
                .post(url(cfg, path))
                .query(&[
                    ("dry_run", (!apply).to_string()),
                    ("skip_problem_rows", skip_problem_rows.to_string()),
                    ("file_name", name),
                ])
                .header("content-type", "text/csv")
                .body(bytes);
            let report = send(cfg, format!("POST {path}"), req).await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_rows(
                    output,
                    rows_of(&report, "problems"),
                    &["line", "kind", "column", "message"],
                )?;
                eprintln!(
                    "{} rows: {} updates, {} unchanged, {} new records, {} unmatched, {} ambiguous, {} invalid, {} held; {}",
                    cell(&report["rows"]),
                    cell(&report["updates"]),
                    cell(&report["unchanged"]),
                    cell(&report["new"]),
                    cell(&report["unmatched"]),
                    cell(&report["ambiguous"]),
                    cell(&report["invalid"]),
                    cell(&report["held"]),
                    if report["applied"] == true {
                        "applied"
                    } else if apply {
                        "nothing written"
                    } else {
                        "dry run, nothing written (--apply writes it)"
                    }
                );
            }
            let problems = report["problems_total"].as_u64().unwrap_or(0);
            // Problems fail the command unless the person chose to write around them.
            if problems > 0 && !(skip_problem_rows && report["applied"] == true) {
                bail!("{problems} rows have problems");
            }
        }
        RegisterCommand::Settings { file } => {
            settings(cfg, "/api/v1/register/settings", file).await?
        }
        RegisterCommand::Fields => {
            let fields = call(cfg, "/api/v1/register/fields", &[]).await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&fields)?);
            } else {
                let rows: Vec<Value> = rows_of(&fields, "fields")
                    .iter()
                    .map(|f| {
                        serde_json::json!({
                            "field": f["name"],
                            "type": f["kind"]["type"],
                            "custom": f["custom"],
                            "description": f["description"],
                        })
                    })
                    .collect();
                print_rows(output, &rows, &["field", "type", "custom", "description"])?;
            }
        }
        RegisterCommand::Reconciliation { all } => {
            let list = call(
                cfg,
                "/api/v1/register/reconciliation",
                &[("include_kept", all.to_string())],
            )
            .await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let rows: Vec<Value> = rows_of(&list, "items")
                    .iter()
                    .map(|i| {
                        let d = &i["discrepancy"];
                        serde_json::json!({
                            "ci_id": i["ci_id"],
                            "name": i["ci_name"],
                            "field": i["field"],
                            "held": d["held"],
                            "held_by": d["holder"]["by"],
                            "discovered": d["discovered"],
                            "since": d["since"],
                            "state": if i["open"] == true { "open" } else { "kept" },
                        })
                    })
                    .collect();
                print_rows(
                    output,
                    &rows,
                    &[
                        "ci_id",
                        "name",
                        "field",
                        "held",
                        "held_by",
                        "discovered",
                        "since",
                        "state",
                    ],
                )?;
            }
        }
        RegisterCommand::Accept { id, field, comment } => {
            resolve(output, cfg, &id, &field, "accept", comment).await?
        }
        RegisterCommand::Keep { id, field, comment } => {
            resolve(output, cfg, &id, &field, "keep", comment).await?
        }
        RegisterCommand::Expiring { days } => {
            let report = call(
                cfg,
                "/api/v1/register/expiring",
                &[("days", days.to_string())],
            )
            .await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_rows(
                    output,
                    rows_of(&report, "warranties"),
                    &["name", "asset_tag", "owner", "warranty_end", "days", "id"],
                )?;
                print_rows(output, &licence_rows(&report["licences"]), &LICENCE_COLUMNS)?;
            }
        }
        RegisterCommand::Export { filter } => {
            let path = "/api/v1/register/export";
            let q: Vec<(&str, String)> = filter.map(|f| vec![("filter", f)]).unwrap_or_default();
            let r = http
                .get(url(cfg, path))
                .query(&q)
                .bearer_auth(&cfg.token)
                .send()
                .await
                .with_context(|| format!("GET {path}"))?;
            let status = r.status();
            if !status.is_success() {
                let body: Value = r.json().await.unwrap_or(Value::Null);
                bail!("{status}: {}", cell(&body["detail"]));
            }
            let text = r.bytes().await?;
            std::io::stdout().lock().write_all(&text)?;
        }
    }
    Ok(())
}

const LICENCE_COLUMNS: [&str; 8] = [
    "name",
    "product",
    "versions",
    "seats",
    "installed_on",
    "over",
    "expires_in_days",
    "id",
];

/// Licence uses as table rows (the licence's own fields lifted beside the counts).
fn licence_rows(list: &Value) -> Vec<Value> {
    list.as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|u| {
            let mut row = u.clone();
            for k in ["id", "name", "product", "versions", "seats"] {
                row[k] = u["licence"][k].clone();
            }
            row
        })
        .collect()
}

async fn licences(output: Output, cfg: &ClientConfig, command: LicenceCommand) -> Result<()> {
    match command {
        LicenceCommand::List => {
            let list = call(cfg, "/api/v1/licences", &[]).await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&list["licences"])?);
            } else {
                print_rows(output, &licence_rows(&list["licences"]), &LICENCE_COLUMNS)?;
            }
        }
        LicenceCommand::Show { id } => {
            let detail = call(cfg, &format!("/api/v1/licences/{id}"), &[]).await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&detail)?);
            } else {
                let rows = licence_rows(&Value::Array(vec![detail["use"].clone()]));
                print_rows(output, &rows, &LICENCE_COLUMNS)?;
                print_rows(output, rows_of(&detail, "computers"), &["name", "id"])?;
            }
        }
        LicenceCommand::Add {
            name,
            product,
            versions,
            seats,
            expires,
            cost,
        } => {
            let body = serde_json::json!({
                "name": name, "product": product, "versions": versions, "seats": seats,
                "expires": expires, "cost": cost,
            });
            let l = post(cfg, "/api/v1/licences", &body).await?;
            println!("{}", cell(&l["id"]));
        }
        LicenceCommand::Delete { id } => {
            delete(cfg, &format!("/api/v1/licences/{id}")).await?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("census: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("census: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_negative_age_is_a_value_not_a_flag() {
        let cli = Cli::try_parse_from(["census", "ci", "show", "cmp_1", "--as-of", "-30d"])
            .unwrap_or_else(|e| panic!("{e}"));
        match cli.command {
            Command::Ci {
                command: CiCommand::Show { as_of, .. },
            } => assert_eq!(as_of.as_deref(), Some("-30d")),
            _ => panic!("parsed as another command"),
        }
    }

    #[test]
    fn change_items_show_what_was_and_what_is() {
        use serde_json::json;
        assert_eq!(
            brief(&json!({"name": "openssl", "version": "3.0.11"})),
            "3.0.11"
        );
        assert_eq!(brief(&json!("6.1.0-18-amd64")), "6.1.0-18-amd64");
        assert_eq!(brief(&Value::Null), "");
        assert_eq!(
            brief(&json!({"address": "0.0.0.0", "process": "sshd"})),
            r#"{"address":"0.0.0.0","process":"sshd"}"#
        );
        assert_eq!(brief(&json!("x".repeat(100))).chars().count(), 60);
    }

    #[test]
    fn register_values_and_clears_make_one_edit() {
        let set = register_set(
            &["owner=ann".into(), "notes=a=b".into()],
            &["supplier".into()],
        )
        .unwrap();
        assert_eq!(set["owner"], "ann");
        assert_eq!(set["notes"], "a=b");
        assert_eq!(set["supplier"], Value::Null);
        assert!(register_set(&["owner".into()], &[]).is_err());
        assert!(register_set(&[], &[]).is_err());
    }

    #[test]
    fn conditions_and_quoting() {
        assert_eq!(split_condition("<3.0.7"), ("<", "3.0.7"));
        assert_eq!(split_condition(" <= 1:2.0 "), ("<=", "1:2.0"));
        assert_eq!(split_condition("3.0.7"), ("=", "3.0.7"));
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
