//! A throwaway PostgreSQL cluster for tests: `initdb` in a temporary directory (as the
//! unprivileged `postgres` user when the tests run as root, which initdb refuses), a free
//! loopback port and a Unix socket in that directory, stopped and removed when the test
//! process exits. Each test takes its own database in it, so tests run in parallel.
//!
//! Set `CENSUS_TEST_PG_BIN` to the directory of `initdb`/`pg_ctl` to choose a version;
//! otherwise `PATH`, then the newest `/usr/lib/postgresql/*/bin`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
    as_postgres: bool,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
/// What the exit hook stops: pg_ctl, the data directory, whether to switch user.
static STOP: Mutex<Vec<(PathBuf, PathBuf, bool)>> = Mutex::new(Vec::new());
static HOOKED: std::sync::Once = std::sync::Once::new();
static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

extern "C" fn stop_at_exit() {
    let held = STOP
        .lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default();
    for (bin, dir, as_postgres) in held {
        let _ = stop_server(&bin, &dir, as_postgres, "immediate");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// `pg_ctl stop -m mode` on the cluster in `dir`, waiting for it.
fn stop_server(bin: &Path, dir: &Path, as_postgres: bool, mode: &str) -> Result<(), String> {
    let mut c = pg_command(bin, "pg_ctl", as_postgres);
    c.arg("-D")
        .arg(dir.join("data"))
        .args(["-m", mode, "-w", "stop"]);
    run(c, &format!("pg_ctl stop -m {mode}"))
}

fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("CENSUS_TEST_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
                return Ok(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("PostgreSQL is not installed (apt-get install postgresql): {e}"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, p)| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, p)| p)
        .ok_or_else(|| "no initdb under /usr/lib/postgresql/*/bin".into())
}

fn pg_command(bin: &Path, tool: &str, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn run(mut c: Command, what: &str) -> Result<(), String> {
    let out = c.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `pg_ctl start` on the cluster in `dir`: loopback TCP on `port`, its Unix socket in `dir`.
fn start_server(bin: &Path, dir: &Path, port: u16, as_postgres: bool) -> Result<(), String> {
    let mut c = pg_command(bin, "pg_ctl", as_postgres);
    c.arg("-D")
        .arg(dir.join("data"))
        .arg("-l")
        .arg(dir.join("log"))
        .arg("-o")
        .arg(format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300",
            dir.display()
        ))
        .args(["-w", "-t", "60", "start"]);
    run(c, "pg_ctl start").map_err(|e| {
        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        format!("{e}\n{log}")
    })
}

/// A database name from any text: lower-case letters, digits and underscores, at most 60.
pub fn database_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(60)
        .collect()
}

impl Cluster {
    /// A cluster of this test's own (one it may stop and start), dropped at exit.
    pub fn start() -> Result<Cluster, String> {
        let bin = bin_dir()?;
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let dir = std::env::temp_dir().join(format!(
            "census-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        if as_postgres {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["postgres:postgres"]).arg(&dir);
                    c
                },
                "chown the cluster directory",
            )?;
        }
        let data = dir.join("data");
        let mut initdb = pg_command(&bin, "initdb", as_postgres);
        initdb.arg("-D").arg(&data).args([
            "-U",
            "census",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        run(initdb, "initdb")?;
        let port = free_port()?;
        if let Ok(mut s) = STOP.lock() {
            s.push((bin.clone(), dir.clone(), as_postgres));
        }
        HOOKED.call_once(|| unsafe {
            libc::atexit(stop_at_exit);
        });
        start_server(&bin, &dir, port, as_postgres)?;
        Ok(Cluster {
            dir,
            port,
            bin,
            as_postgres,
        })
    }

    /// The cluster this test process shares, started on first use.
    pub fn shared() -> &'static Cluster {
        match CLUSTER.get_or_init(Cluster::start) {
            Ok(c) => c,
            Err(e) => panic!("throwaway PostgreSQL cluster: {e}"),
        }
    }

    /// A connection string for a new, empty database `name` (dropped first if present).
    pub fn database(&self, name: &str) -> String {
        let name = database_name(name);
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            self.psql("postgres", &sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        self.url(&name)
    }

    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://census@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// Runs SQL through psql against `db`; answers its output.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let psql = if self.bin.join("psql").exists() {
            self.bin.join("psql")
        } else {
            PathBuf::from("psql")
        };
        let out = Command::new(psql)
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "census",
                "-p",
            ])
            .arg(self.port.to_string())
            .args(["-d", db, "-c", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Stops the server (fast: clients are disconnected) and waits.
    pub fn stop(&self) -> Result<(), String> {
        stop_server(&self.bin, &self.dir, self.as_postgres, "fast")
    }

    /// Stops the server as a crash would (`-m immediate`: no checkpoint, recovery from the
    /// WAL on the next start; what was only in its WAL buffers is gone).
    pub fn crash(&self) -> Result<(), String> {
        stop_server(&self.bin, &self.dir, self.as_postgres, "immediate")
    }

    /// Starts the server again on the same port.
    pub fn restart(&self) -> Result<(), String> {
        start_server(&self.bin, &self.dir, self.port, self.as_postgres)
    }
}
