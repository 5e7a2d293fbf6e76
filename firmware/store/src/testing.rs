//! A real PostgreSQL for tests, and the engines a store test runs on.
//!
//! [`TempPostgres`] is Debian's PostgreSQL started for the test: `initdb`
//! and `pg_ctl` in a temporary folder, as the unprivileged `postgres`
//! user, on a free loopback port. It is stopped and its folder removed
//! when the test process ends, however it ends: a guard process holds
//! the read end of a pipe whose write end only this process has, and
//! cleans up when that pipe closes.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
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

/// A CA (`ca.pem` in `dir`) and the server's certificate and key from it
/// (`server.crt`, `server.key` in `data`, the postgres user's, the key
/// readable by it alone, as the server demands).
fn server_certificate(
    dir: &Path,
    data: &Path,
    uid: u32,
    gid: u32,
) -> Result<(), TempPostgresError> {
    use std::os::unix::fs::{PermissionsExt as _, chown};
    let failed = |e: rcgen::Error| TempPostgresError::Step {
        step: "the server's certificate",
        why: e.to_string(),
    };
    let ca_key = rcgen::KeyPair::generate().map_err(failed)?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "the test PostgreSQL's CA");
    let ca_cert = ca.self_signed(&ca_key).map_err(failed)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().map_err(failed)?;
    let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(failed)?
        .signed_by(&key, &issuer)
        .map_err(failed)?;
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).map_err(step("ca.pem"))?;
    for (name, pem, mode) in [
        ("server.crt", cert.pem(), 0o644),
        ("server.key", key.serialize_pem(), 0o600),
    ] {
        let path = data.join(name);
        std::fs::write(&path, pem).map_err(step("the server's certificate"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .and_then(|()| chown(&path, Some(uid), Some(gid)))
            .map_err(step("the server's certificate"))?;
    }
    Ok(())
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
        Self::start_on(None, "127.0.0.1", port, None, false)
    }

    /// Starts a new server on a free loopback port that speaks TLS with a
    /// certificate for `localhost` and `127.0.0.1` from a CA made here
    /// ([`TempPostgres::ca_file`]), and takes the role `ferry` over TLS
    /// only (the superuser may still come without, for set-up).
    pub fn start_with_tls() -> Result<Self, TempPostgresError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(step("a free port"))?
            .port();
        let server = Self::start_on(None, "127.0.0.1", port, None, true)?;
        server.sql("CREATE ROLE ferry LOGIN")?;
        Ok(server)
    }

    /// The CA that signed a TLS server's certificate (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A new, empty database owned by `ferry` on a TLS server; its URL, as
    /// `ferry`, without `sslmode`.
    pub fn fresh_database_for_ferry(&self) -> Result<String, TempPostgresError> {
        let url = self.fresh_database()?;
        let name = url.rsplit('/').next().unwrap_or_default();
        self.sql(&format!("ALTER DATABASE {name} OWNER TO ferry"))?;
        Ok(url.replacen("postgres://postgres@", "postgres://ferry@", 1))
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
        Self::start_on(Some(netns), listen, port, Some(clients), false)
    }

    fn start_on(
        netns: Option<&str>,
        listen: &str,
        port: u16,
        clients: Option<&str>,
        tls: bool,
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
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses={listen} -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
            dir.display()
        );
        if tls {
            server_certificate(&dir, &data, uid, gid)?;
            // The first line that matches decides: `ferry` without TLS is
            // turned away.
            let hba = data.join("pg_hba.conf");
            let rest = std::fs::read_to_string(&hba).map_err(step("pg_hba.conf"))?;
            std::fs::write(&hba, format!("hostnossl all ferry all reject\n{rest}"))
                .map_err(step("pg_hba.conf"))?;
            options.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
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
        out.push(Database::connect(&url, None).unwrap_or_else(|e| panic!("{url}: {e:?}")));
    } else {
        eprintln!("not root: this store test runs on SQLite only");
    }
    out
}
