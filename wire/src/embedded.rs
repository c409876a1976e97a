//! A private PostgreSQL cluster, launched from the binaries installed on the machine.
//!
//! [`Cluster::start`] finds `initdb`, `pg_ctl` and `postgres` (on `PATH`, then under
//! `/usr/lib/postgresql/<version>/bin`, newest first), runs `initdb` once into the data directory,
//! and starts the server listening on a Unix socket (TCP only when asked). When the process runs
//! as root, the PostgreSQL programs run as the `postgres` user, which owns the data directory.
//!
//! [`Cluster::stop`] (also on drop) shuts the server down. With [`Options::stop_with_process`] a
//! small watchdog process also stops it (and removes a throwaway data directory) once this
//! process is gone, however it ends — that is what test binaries, which never drop statics, rely
//! on.
//!
//! This module is synchronous on purpose: it runs once at start-up, and a cluster shared by many
//! tests must not be tied to one test's async runtime.
//!
//! [`test_config`] gives each test a fresh database: on `DATABASE_URL` when that is set, else on
//! one embedded cluster per test process.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::config::Config;

/// Errors of the launcher.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// No PostgreSQL server binaries were found.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or under \
         /usr/lib/postgresql/*/bin; install them (e.g. `apt-get install postgresql`) or point \
         DATABASE_URL / PG_HOST at a running server"
    )]
    NotFound,
    /// A file-system step failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A PostgreSQL program failed.
    #[error("`{command}` failed: {output}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr/stdout (and the server log tail when the server did not start).
        output: String,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmbedError {
    let what = what.into();
    move |source| EmbedError::Io { what, source }
}

/// How to run the cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// Data directory (created and initialised when missing).
    pub data_dir: PathBuf,
    /// Also listen on 127.0.0.1 at this port.
    pub tcp_port: Option<u16>,
    /// Number in the socket name (`.s.PGSQL.<port>`).
    pub socket_port: u16,
    /// `fsync` and `synchronous_commit`: keep `true` except for throwaway test clusters.
    pub durable: bool,
    /// Start a watchdog that stops the server when this process exits.
    pub stop_with_process: bool,
    /// Delete the data directory when stopped (throwaway clusters).
    pub remove_on_stop: bool,
    /// `max_connections`.
    pub max_connections: u32,
    /// Extra `-c name=value` server settings.
    pub settings: Vec<(String, String)>,
    /// Serve TLS with this certificate and key (tests of the client's `sslmode`).
    pub tls: Option<ServerTls>,
}

/// A certificate (chain) and its private key, both PEM, for the server to offer TLS with.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The server's certificate, then any intermediates.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

impl Options {
    /// Durable defaults for a cluster in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Options {
        Options {
            data_dir: data_dir.into(),
            tcp_port: None,
            socket_port: 5432,
            durable: true,
            stop_with_process: false,
            remove_on_stop: false,
            max_connections: 200,
            settings: Vec::new(),
            tls: None,
        }
    }
}

/// A running cluster.
#[derive(Debug)]
pub struct Cluster {
    opts: Options,
    bin: PathBuf,
    socket_dir: PathBuf,
    /// OS user the programs run as (when we are root).
    run_as: Option<String>,
    running: bool,
}

/// The database superuser created by `initdb`.
pub const SUPERUSER: &str = "postgres";

impl Cluster {
    /// Initialises (first time) and starts the cluster; waits until it accepts connections.
    pub fn start(opts: Options) -> Result<Cluster, EmbedError> {
        let bin = find_binaries()?;
        let run_as = is_root().then(|| "postgres".to_owned());
        fs::create_dir_all(&opts.data_dir)
            .map_err(io_err(format!("create {}", opts.data_dir.display())))?;
        let data_dir =
            fs::canonicalize(&opts.data_dir).map_err(io_err("resolve data directory"))?;
        let opts = Options { data_dir, ..opts };
        if run_as.is_some() {
            chown_to_postgres(&opts.data_dir)?;
        }
        // Unix socket paths are limited to 107 bytes; fall back to a short directory.
        let socket_dir = if opts.data_dir.as_os_str().len() > 80 {
            let d = std::env::temp_dir().join(format!("queen-pg-{}", short_hash(&opts.data_dir)));
            fs::create_dir_all(&d).map_err(io_err("create socket directory"))?;
            if run_as.is_some() {
                chown_to_postgres(&d)?;
            }
            d
        } else {
            opts.data_dir.clone()
        };
        let mut cluster = Cluster {
            opts,
            bin,
            socket_dir,
            run_as,
            running: false,
        };
        if !cluster.opts.data_dir.join("PG_VERSION").exists() {
            cluster.initdb()?;
        }
        cluster.start_server()?;
        if cluster.opts.stop_with_process {
            cluster.spawn_watchdog()?;
        }
        Ok(cluster)
    }

    /// Connection settings for `dbname` as the superuser, over the Unix socket.
    pub fn config(&self, dbname: &str) -> Config {
        Config::unix(&self.socket_dir, self.opts.socket_port, SUPERUSER, dbname)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.opts.data_dir
    }

    /// Stops the server: `fast` rolls back open transactions and disconnects clients cleanly;
    /// `immediate` is a crash (recovery runs at the next start).
    pub fn stop_mode(&mut self, immediate: bool) -> Result<(), EmbedError> {
        if !self.running {
            return Ok(());
        }
        let mode = if immediate { "immediate" } else { "fast" };
        self.pg_ctl(&["stop", "-w", "-t", "60", "-m", mode])?;
        self.running = false;
        Ok(())
    }

    /// Stops the server cleanly.
    pub fn stop(&mut self) -> Result<(), EmbedError> {
        self.stop_mode(false)
    }

    /// Starts a stopped server again.
    pub fn restart(&mut self) -> Result<(), EmbedError> {
        self.start_server()
    }

    /// True while the server runs (as far as this handle knows).
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Writes `server.crt` and `server.key` into the data directory (their default place),
    /// owned by the server's user and readable by it alone, as PostgreSQL demands of a key.
    fn write_tls_files(&self, tls: &ServerTls) -> Result<(), EmbedError> {
        use std::os::unix::fs::PermissionsExt;
        for (name, pem) in [("server.crt", &tls.cert_pem), ("server.key", &tls.key_pem)] {
            let path = self.opts.data_dir.join(name);
            fs::write(&path, pem).map_err(io_err(format!("write {}", path.display())))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                .map_err(io_err(format!("chmod {}", path.display())))?;
        }
        if self.run_as.is_some() {
            chown_to_postgres(&self.opts.data_dir)?;
        }
        Ok(())
    }

    fn initdb(&self) -> Result<(), EmbedError> {
        let mut args: Vec<String> = vec![
            "-D".into(),
            path_str(&self.opts.data_dir),
            "-U".into(),
            SUPERUSER.into(),
            "--auth=trust".into(),
            "--encoding=UTF8".into(),
            "--locale=C".into(),
        ];
        if !self.opts.durable {
            args.push("--no-sync".into());
        }
        self.run("initdb", &args).map(drop)
    }

    fn start_server(&mut self) -> Result<(), EmbedError> {
        if self.pg_ctl(&["status"]).is_ok() {
            // Left running by an earlier process (e.g. one that was killed): adopt it.
            self.running = true;
            return Ok(());
        }
        let listen = match self.opts.tcp_port {
            Some(_) => "127.0.0.1",
            None => "",
        };
        let mut o = format!(
            "-k {} -p {} -c listen_addresses='{listen}' -c max_connections={}",
            path_str(&self.socket_dir),
            self.opts.tcp_port.unwrap_or(self.opts.socket_port),
            self.opts.max_connections,
        );
        if !self.opts.durable {
            o.push_str(" -c fsync=off -c full_page_writes=off");
        }
        for (k, v) in &self.opts.settings {
            o.push_str(&format!(" -c {k}={v}"));
        }
        if let Some(tls) = &self.opts.tls {
            self.write_tls_files(tls)?;
            o.push_str(" -c ssl=on");
        }
        if let Some(p) = self.opts.tcp_port {
            self.opts.socket_port = p;
        }
        let log = path_str(&self.opts.data_dir.join("server.log"));
        let r = self.pg_ctl(&["start", "-w", "-t", "60", "-l", &log, "-o", &o]);
        if let Err(EmbedError::Command { command, output }) = r {
            let tail = fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<_> = tail.lines().rev().take(15).collect();
            let tail: Vec<_> = tail.into_iter().rev().collect();
            return Err(EmbedError::Command {
                command,
                output: format!("{output}\nserver log:\n{}", tail.join("\n")),
            });
        }
        r?;
        self.running = true;
        Ok(())
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<String, EmbedError> {
        let mut a: Vec<String> = vec!["-D".into(), path_str(&self.opts.data_dir)];
        a.extend(args.iter().map(|s| s.to_string()));
        self.run("pg_ctl", &a)
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(user).arg("--").arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn run(&self, program: &str, args: &[String]) -> Result<String, EmbedError> {
        let mut cmd = self.command(program);
        cmd.args(args).stdin(Stdio::null());
        // Don't let pg_ctl's started server inherit our stdout (it would keep pipes open).
        let out = cmd.output().map_err(io_err(format!("run {program}")))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(EmbedError::Command {
                command: format!("{program} {}", args.join(" ")),
                output: text.trim().to_owned(),
            })
        }
    }

    fn spawn_watchdog(&self) -> Result<(), EmbedError> {
        let pg_ctl = self.bin.join("pg_ctl");
        let prefix = match &self.run_as {
            Some(u) => format!("runuser -u {u} -- "),
            None => String::new(),
        };
        let mut script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             {prefix}'{pg_ctl}' -D '{data}' -m immediate -w stop >/dev/null 2>&1",
            pid = std::process::id(),
            pg_ctl = pg_ctl.display(),
            data = self.opts.data_dir.display(),
        );
        if self.opts.remove_on_stop {
            script.push_str(&format!("; rm -rf '{}'", self.opts.data_dir.display()));
            if self.socket_dir != self.opts.data_dir {
                script.push_str(&format!(" '{}'", self.socket_dir.display()));
            }
        }
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io_err("spawn watchdog"))?;
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "stopping the embedded PostgreSQL failed");
        }
        if self.opts.remove_on_stop {
            let _ = fs::remove_dir_all(&self.opts.data_dir);
        }
    }
}

/// Finds the directory holding `initdb`, `pg_ctl` and `postgres`.
pub fn find_binaries() -> Result<PathBuf, EmbedError> {
    let has_all = |d: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|p| d.join(p).is_file())
    };
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(d) = std::env::split_paths(&path).find(|d| has_all(d)) {
            return Ok(d);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_all(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d).ok_or(EmbedError::NotFound)
}

fn is_root() -> bool {
    // The effective uid, without libc: /proc/self/status has "Uid: real effective ...".
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn chown_to_postgres(dir: &Path) -> Result<(), EmbedError> {
    let out = Command::new("chown")
        .arg("-R")
        .arg("postgres:")
        .arg(dir)
        .output()
        .map_err(io_err("run chown"))?;
    if !out.status.success() {
        return Err(EmbedError::Command {
            command: format!("chown -R postgres: {}", dir.display()),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    // initdb insists on 0700 (or 0750).
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err("chmod data directory"))?;
    // The postgres user must be able to reach the directory.
    let check = Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-w"])
        .arg(dir)
        .status()
        .map_err(io_err("run runuser"))?;
    if !check.success() {
        return Err(EmbedError::Command {
            command: format!("access check of {}", dir.display()),
            output: format!(
                "the postgres user cannot reach {}; choose a data directory outside private \
                 home folders (e.g. --data-dir /var/lib/queen)",
                dir.display()
            ),
        });
    }
    Ok(())
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn short_hash(p: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    p.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// A throwaway cluster of its own for a test that must control the server (restart it, rewrite
/// `pg_hba.conf`): fsync off, stopped and deleted when this process ends. `None` (after saying
/// so on stderr) when no PostgreSQL binaries are installed.
pub fn private_test_cluster(name: &str) -> Result<Option<Cluster>, EmbedError> {
    if let Err(e) = find_binaries() {
        eprintln!("SKIP {name}: {e}");
        return Ok(None);
    }
    let dir = std::env::temp_dir().join(format!("queen-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let mut opts = Options::new(dir);
    opts.durable = false;
    opts.stop_with_process = true;
    opts.remove_on_stop = true;
    Cluster::start(opts).map(Some)
}

/// The cluster shared by every test of this process.
static TEST_CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// Settings of the server tests run against: `DATABASE_URL` (or `PG_*`) when set, else a
/// throwaway embedded cluster started once per process.
pub fn test_server() -> Result<Config, crate::Error> {
    if let Some(c) = Config::from_env()? {
        return Ok(c);
    }
    let cluster = TEST_CLUSTER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!(
            "queen-test-{}-{}",
            std::process::id(),
            short_hash(&std::env::current_exe().unwrap_or_default())
        ));
        let _ = fs::remove_dir_all(&dir);
        let mut opts = Options::new(&dir);
        opts.durable = false;
        opts.stop_with_process = true;
        opts.remove_on_stop = true;
        let started = Instant::now();
        let r = Cluster::start(opts).map_err(|e| e.to_string());
        tracing::info!("test cluster started in {:?}", started.elapsed());
        r
    });
    match cluster {
        Ok(c) => Ok(c.config("postgres")),
        Err(e) => Err(crate::Error::Config(format!("embedded test cluster: {e}"))),
    }
}

/// Creates a fresh, uniquely named database for one test and returns its settings.
pub async fn test_config(name: &str) -> Result<Config, crate::Error> {
    use crate::client::Client;
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let server = test_server()?;
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    let db = format!(
        "queen_test_{clean}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let admin = crate::Connection::connect(&server).await?;
    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SWEPT.swap(true, Ordering::Relaxed) {
        drop_stale_test_databases(&admin).await;
    }
    admin
        .batch_execute(&format!("CREATE DATABASE {}", crate::quote_ident(&db)))
        .await?;
    Ok(server.with_dbname(&db))
}

/// Drops test databases left on a shared server by test processes that have exited (their pid
/// is part of the name). Best effort: a failure only leaves clutter.
async fn drop_stale_test_databases(admin: &crate::Connection) {
    use crate::client::Client;
    let Ok(rows) = admin
        .query_sql(
            "SELECT datname::text FROM pg_database WHERE datname LIKE 'queen\\_test\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let Ok(name) = row.get::<String>(0) else {
            continue;
        };
        let pid = name.rsplit('_').nth(1).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let sql = format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    crate::quote_ident(&name)
                );
                if let Err(e) = admin.batch_execute(&sql).await {
                    tracing::debug!(db = %name, error = %e, "could not drop a stale test database");
                }
            }
        }
    }
}

/// How long `pg_ctl` may take; exposed for tests that restart a cluster.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
