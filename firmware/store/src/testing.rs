//! A real PostgreSQL for tests, and the engines a store test runs on.
//!
//! [`TempPostgres`] is Debian's PostgreSQL started for the test: `initdb`
//! and `pg_ctl` in a temporary folder, as the unprivileged `postgres`
//! user, on a free loopback port. It is stopped and its folder removed
//! when the test process ends, however it ends: a guard process holds
//! the read end of a pipe whose write end only this process has, and
//! cleans up when that pipe closes.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::Database;

/// A PostgreSQL server of the test's own.
pub struct TempPostgres {
    host: String,
    port: u16,
    dir: PathBuf,
    /// Closing it (dropping this) stops the server and removes `dir`.
    guard: Option<(Child, ChildStdin)>,
}

impl std::fmt::Debug for TempPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempPostgres")
            .field("port", &self.port)
            .field("dir", &self.dir)
            .finish()
    }
}

/// Why a test PostgreSQL could not start.
#[derive(Debug, thiserror::Error)]
pub enum TempPostgresError {
    #[error(
        "PostgreSQL is not installed (no initdb under /usr/lib/postgresql): apt install postgresql"
    )]
    NotInstalled,
    #[error("running PostgreSQL as its own user needs root")]
    NotRoot,
    #[error("{step}: {why}")]
    Step { step: &'static str, why: String },
}

fn step(step: &'static str) -> impl FnOnce(std::io::Error) -> TempPostgresError {
    move |e| TempPostgresError::Step {
        step,
        why: e.to_string(),
    }
}

/// The newest PostgreSQL's programs.
fn bin_dir() -> Result<PathBuf, TempPostgresError> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| TempPostgresError::NotInstalled)?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .ok_or(TempPostgresError::NotInstalled)
}

fn run(cmd: &mut Command, what: &'static str) -> Result<(), TempPostgresError> {
    let out = cmd.output().map_err(step(what))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(TempPostgresError::Step {
            step: what,
            why: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

impl TempPostgres {
    /// Starts a new server on a free loopback port. Needs root (the
    /// server runs as `postgres`).
    pub fn start() -> Result<Self, TempPostgresError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(step("a free port"))?
            .port();
        Self::start_on(None, "127.0.0.1", port, None)
    }

    /// Starts a new server inside network namespace `netns`, listening on
    /// `listen:port` and trusting connections from `clients` (a CIDR
    /// network) besides loopback.
    pub fn start_in(
        netns: &str,
        listen: &str,
        port: u16,
        clients: &str,
    ) -> Result<Self, TempPostgresError> {
        Self::start_on(Some(netns), listen, port, Some(clients))
    }

    fn start_on(
        netns: Option<&str>,
        listen: &str,
        port: u16,
        clients: Option<&str>,
    ) -> Result<Self, TempPostgresError> {
        let bin = bin_dir()?;
        if !nix::unistd::geteuid().is_root() {
            return Err(TempPostgresError::NotRoot);
        }
        let user = nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .ok_or(TempPostgresError::NotInstalled)?;
        let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
        let dir = tempfile::Builder::new()
            .prefix("ferry-postgres-")
            .tempdir()
            .map_err(step("a temporary folder"))?
            .keep();
        let data = dir.join("data");
        nix::unistd::chown(&dir, Some(user.uid), Some(user.gid)).map_err(|e| {
            TempPostgresError::Step {
                step: "chown the folder to postgres",
                why: e.to_string(),
            }
        })?;
        // The guard first, before initdb: if anything below fails (the
        // pipe's write end is then dropped), it still cleans up.
        let mut guard = Command::new("sh")
            .args([
                "-c",
                "cat >/dev/null; \"$0\" -D \"$1\" -m immediate stop >/dev/null 2>&1; rm -rf \"$2\"",
            ])
            .arg(bin.join("pg_ctl"))
            .arg(&data)
            .arg(&dir)
            .uid(uid)
            .gid(gid)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(step("the cleanup guard"))?;
        let pipe = guard.stdin.take().ok_or(TempPostgresError::Step {
            step: "the cleanup guard",
            why: "no pipe".into(),
        })?;
        let as_postgres = |program: &str| {
            let mut c = Command::new(bin.join(program));
            c.uid(uid).gid(gid).current_dir(&dir);
            c
        };
        run(
            as_postgres("initdb").arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]),
            "initdb",
        )?;
        if let Some(net) = clients {
            use std::io::Write as _;
            std::fs::OpenOptions::new()
                .append(true)
                .open(data.join("pg_hba.conf"))
                .and_then(|mut f| writeln!(f, "host all all {net} trust"))
                .map_err(step("pg_hba.conf"))?;
        }
        // Durability is not what these tests check; fsync off saves
        // seconds on this disk.
        let options = format!(
            "-p {port} -k {} -c listen_addresses={listen} -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
            dir.display()
        );
        let server = TempPostgres {
            host: listen.to_owned(),
            port,
            dir: dir.clone(),
            guard: Some((guard, pipe)),
        };
        let mut start = match netns {
            // Entering a namespace needs root; the server still runs as
            // its own user.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "runuser", "-u", "postgres", "--"])
                    .arg(bin.join("pg_ctl"))
                    .current_dir(&dir);
                c
            }
            None => as_postgres("pg_ctl"),
        };
        run(
            start
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.join("server.log"))
                .args(["-w", "-t", "60", "-o", &options, "start"]),
            "pg_ctl start",
        )?;
        Ok(server)
    }

    /// The server's `postgres` database, as its superuser.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    fn url_of(&self, db: &str) -> String {
        format!("postgres://postgres@{}:{}/{db}", self.host, self.port)
    }

    /// A new, empty database on this server; its URL.
    pub fn fresh_database(&self) -> Result<String, TempPostgresError> {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "ferry_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        self.sql(&format!("CREATE DATABASE {name}"))?;
        Ok(self.url_of(&name))
    }

    /// Runs SQL as the superuser, on the `postgres` database.
    pub fn sql(&self, sql: &str) -> Result<(), TempPostgresError> {
        let url = self.url();
        // The driver's blocking client runs a runtime of its own, which
        // may not start on a thread that is already in one.
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
                client.batch_execute(sql)
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
        .map_err(|e| TempPostgresError::Step {
            step: "SQL as the superuser",
            why: e.to_string(),
        })
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        if let Some((mut guard, pipe)) = self.guard.take() {
            drop(pipe);
            // The guard stops the server and removes the folder; waiting
            // for it means a test that drops the server finds it gone.
            if let Err(e) = guard.wait() {
                eprintln!("the test PostgreSQL's guard: {e}");
            }
        }
    }
}

/// The server the tests of this process share, started on first use.
pub fn shared_postgres() -> &'static TempPostgres {
    static SERVER: std::sync::OnceLock<TempPostgres> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| TempPostgres::start().unwrap_or_else(|e| panic!("PostgreSQL: {e}")))
}

/// The engines a store test runs on: SQLite in memory, and a fresh
/// database on the shared PostgreSQL when this process may start one
/// (as root; `./tests/run` runs as root and installs PostgreSQL).
pub fn databases() -> Vec<Database> {
    let mut out = vec![Database::open_in_memory().expect("SQLite in memory")];
    if nix::unistd::geteuid().is_root() {
        let url = shared_postgres()
            .fresh_database()
            .unwrap_or_else(|e| panic!("a PostgreSQL database: {e}"));
        out.push(Database::connect(&url).unwrap_or_else(|e| panic!("{url}: {e:?}")));
    } else {
        eprintln!("not root: this store test runs on SQLite only");
    }
    out
}
