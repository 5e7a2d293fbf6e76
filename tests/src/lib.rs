//! Test harness: starts real `ferryd` appliances and runs the real `ferry`
//! client against them, each appliance on its own loopback address so
//! tests run side by side. Helpers wait on conditions (a line printed, a
//! file present), never on fixed sleeps.

pub mod netns;
pub mod relay;
pub mod wan;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Where the binaries under test are: `FERRY_BIN_DIR`, else the workspace's
/// release build, else its debug build.
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("FERRY_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let release = target.join("release").join(name);
    if release.exists() {
        return release;
    }
    target.join("debug").join(name)
}

/// A loopback address of this test's own: 127.77.X.Y.
pub fn unique_loopback() -> IpAddr {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    IpAddr::V4(Ipv4Addr::new(
        127,
        77 + (pid % 100) as u8,
        (n / 250) as u8,
        (n % 250 + 1) as u8,
    ))
}

/// Serialises tests that move a lot of data through the disk: run side by
/// side on two cores, their writeback makes each other's fsyncs take
/// longer than a whole transfer, and timing-sensitive checks then measure
/// the neighbours instead of the code.
pub fn heavy_io() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits until `cond` holds, or panics with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// BLAKE3 of a file's contents.
pub fn blake3_file(path: &Path) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    h.update_reader(f)
        .unwrap_or_else(|e| panic!("hashing {}: {e}", path.display()));
    h.finalize()
}

/// Writes `len` pseudo-random bytes (seeded, so reruns reproduce).
pub fn write_random(path: &Path, len: u64, seed: u64) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("create parent");
    }
    let mut f =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create"));
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).expect("write");
        left -= n as u64;
    }
    f.flush().expect("flush");
}

/// Every regular file beneath `dir`, relative, sorted.
pub fn list_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap_or(&p).to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Records a reliability scenario's figures for `tests/reliability/REPORT.md`
/// (written by `tests/reliability/report` from these files after the suite).
pub fn record_scenario(name: &str, figures: serde_json::Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/reliability");
    std::fs::create_dir_all(&dir).expect("target/reliability");
    std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_string_pretty(&figures).expect("json"),
    )
    .expect("write the scenario's figures");
}

/// Total bytes of the files under `dir`.
pub fn tree_bytes(dir: &Path) -> u64 {
    list_files(dir)
        .iter()
        .map(|p| std::fs::metadata(dir.join(p)).map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// The name of the manifest the agent keeps in each received delivery.
pub const MANIFEST: &str = ".ferry-manifest.b3";

/// The files under `dir` that were delivered: [`list_files`] less the
/// manifests the agent keeps beside each delivery.
pub fn delivered_files(dir: &Path) -> Vec<PathBuf> {
    list_files(dir)
        .into_iter()
        .filter(|p| !p.ends_with(MANIFEST))
        .collect()
}

/// Asserts two trees hold the same files with the same BLAKE3. A received
/// delivery's manifest (`.ferry-manifest.b3` at the top of `dst`, which
/// the agent writes beside what arrived) is not one of its files.
pub fn assert_same_tree(src: &Path, dst: &Path) {
    let a = list_files(src);
    let b = if a.iter().any(|p| p.ends_with(MANIFEST)) {
        list_files(dst)
    } else {
        delivered_files(dst)
    };
    let missing: Vec<_> = a.iter().filter(|p| !b.contains(p)).take(10).collect();
    let extra: Vec<_> = b.iter().filter(|p| !a.contains(p)).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} and {} differ: missing {missing:?}, extra {extra:?}",
        src.display(),
        dst.display()
    );
    for rel in &a {
        assert_eq!(
            blake3_file(&src.join(rel)),
            blake3_file(&dst.join(rel)),
            "{} differs",
            rel.display()
        );
    }
}

/// A running appliance with its own data folder and a root share.
pub struct Appliance {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    /// The root share `media` lives here.
    pub share: PathBuf,
    pub ip: IpAddr,
    pub url: String,
    pub fingerprint: String,
    pub setup: Setup,
    child: Option<Child>,
    log: PathBuf,
    /// What ferryd printed on stdout.
    banner: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// Where and how an appliance runs.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// Run ferryd inside this network namespace.
    pub netns: Option<String>,
    /// Listen here (default: a fresh loopback address, any port).
    pub listen: Option<std::net::SocketAddr>,
    /// The URL clients use, when it differs from where ferryd listens
    /// (behind an edge router's DNAT).
    pub url: Option<String>,
    /// ferry-portguard's socket: the firewall is on when set.
    pub portguard: Option<PathBuf>,
    /// The PostgreSQL database (`--database`) instead of SQLite in the
    /// data folder; `ferryd admin` is given it too.
    pub database: Option<String>,
    /// The CA of that database's server certificate (`--database-ca`),
    /// for a URL with `sslmode=require`.
    pub database_ca: Option<PathBuf>,
    pub args: Vec<String>,
}

impl Appliance {
    /// Starts an appliance with a root share `media`.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_in(Setup {
            args: extra.iter().map(|s| s.to_string()).collect(),
            ..Setup::default()
        })
    }

    pub fn start_in(setup: Setup) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let share = dir.path().join("media");
        std::fs::create_dir_all(&share).expect("share dir");
        let mut a = Appliance {
            data,
            share,
            ip: setup.listen.map(|l| l.ip()).unwrap_or_else(unique_loopback),
            url: String::new(),
            fingerprint: String::new(),
            setup,
            child: None,
            log: dir.path().join("ferryd.log"),
            banner: Default::default(),
            dir,
        };
        a.admin(&["share", "add", "media", a.share.to_str().expect("utf8")]);
        a.fingerprint = a.admin(&["fingerprint"]).trim().to_owned();
        a.launch(0);
        a
    }

    /// Runs `ferryd admin --data DATA ARGS…` and returns its stdout.
    pub fn admin(&self, args: &[&str]) -> String {
        self.admin_stdin(args, "")
    }

    pub fn admin_stdin(&self, args: &[&str], stdin: &str) -> String {
        let mut child = Command::new(bin("ferryd"))
            .arg("admin")
            .arg("--data")
            .arg(&self.data)
            .args(self.database_args())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ferryd admin");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("ferryd admin");
        assert!(
            out.status.success(),
            "ferryd admin {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `--database URL` when the appliance runs on PostgreSQL.
    pub fn database_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(url) = &self.setup.database {
            args.extend(["--database".to_owned(), url.clone()]);
        }
        if let Some(ca) = &self.setup.database_ca {
            args.extend(["--database-ca".to_owned(), ca.display().to_string()]);
        }
        args
    }

    /// Adds a user with a password and returns an API key.
    pub fn user(&self, email: &str, role: &str) -> String {
        self.admin_stdin(
            &["user", "add", email, "--role", role, "--password-stdin"],
            "harbour lights at dawn\n",
        );
        self.admin(&["apikey", "create", email]).trim().to_owned()
    }

    /// Adds a user with read and write on `media`.
    pub fn media_user(&self, email: &str) -> String {
        let key = self.user(email, "employee");
        self.admin(&["share", "grant", "media", email, "--read", "--write"]);
        key
    }

    fn launch(&mut self, port: u16) {
        let port = self.setup.listen.map(|l| l.port()).unwrap_or(port);
        let listen = format!("{}:{}", self.ip, port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut command = match &self.setup.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("ferryd"));
                c
            }
            None => Command::new(bin("ferryd")),
        };
        command
            .arg("--data")
            .arg(&self.data)
            .args(self.database_args())
            .arg("--listen")
            .arg(&listen);
        match &self.setup.portguard {
            Some(socket) => command
                .args(["--firewall", "nft", "--portguard"])
                .arg(socket),
            None => command.args(["--firewall", "off"]),
        };
        let mut child = command
            .args(&self.setup.args)
            // FERRY_TEST_LOG raises the appliances' log level when a
            // failure needs their debug lines.
            .env(
                "RUST_LOG",
                std::env::var("FERRY_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn ferryd");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let banner = self.banner.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                banner
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(line.clone());
                if let Some(url) = line.strip_prefix("ferryd listening on ") {
                    let _ = tx.send(url.trim_end_matches('/').to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!(
                    "ferryd did not start; its log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )
            });
        self.url = self.setup.url.clone().unwrap_or(url);
        self.child = Some(child);
    }

    /// The port the control plane listens on.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in url")
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM: a clean shutdown.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }

    /// Starts again on the same address, data and ports.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port();
        self.launch(port);
    }

    /// ferryd's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// True while ferryd runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Another node of this appliance: a second ferryd on the same data
    /// folder (certificate, and the database unless it is PostgreSQL) and
    /// share, on its own loopback address, named `name`, with `extra`
    /// flags. The same host stands in for shared storage.
    pub fn another_node(&self, name: &str, extra: &[&str]) -> Appliance {
        self.another_node_in(
            name,
            Setup {
                args: extra.iter().map(|s| s.to_string()).collect(),
                ..Setup::default()
            },
        )
    }

    /// Another node set up as `setup` says (its namespace and address),
    /// on this appliance's share and database. On PostgreSQL it has a data
    /// folder of its own, as a node on another host would: what the nodes
    /// share (the certificate too) is in the database. On SQLite it shares
    /// this appliance's data folder, where the database is.
    pub fn another_node_in(&self, name: &str, mut setup: Setup) -> Appliance {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut args = vec!["--node-name".to_owned(), name.to_owned()];
        args.append(&mut setup.args);
        let data = match self.setup.database {
            Some(_) => dir.path().join("data"),
            None => self.data.clone(),
        };
        let mut b = Appliance {
            data,
            share: self.share.clone(),
            ip: setup.listen.map(|l| l.ip()).unwrap_or_else(unique_loopback),
            url: String::new(),
            fingerprint: self.fingerprint.clone(),
            setup: Setup {
                args,
                database: self.setup.database.clone(),
                database_ca: self.setup.database_ca.clone(),
                ..setup
            },
            child: None,
            log: dir.path().join("ferryd.log"),
            banner: Default::default(),
            dir,
        };
        b.launch(0);
        b
    }

    /// A client environment with this key.
    pub fn client(&self, key: &str) -> Client {
        let home = self.dir.path().join(format!("client-{}", &key[3..11]));
        std::fs::create_dir_all(&home).expect("client home");
        Client {
            env: vec![
                ("FERRY_SERVER".into(), self.url.clone()),
                ("FERRY_API_KEY".into(), key.to_owned()),
                ("FERRY_FINGERPRINT".into(), self.fingerprint.clone()),
                (
                    "FERRY_CONFIG".into(),
                    home.join("credentials.toml").display().to_string(),
                ),
                ("HOME".into(), home.display().to_string()),
            ],
            netns: None,
        }
    }

    /// The one-time admin password printed on first start, once it has
    /// been printed.
    pub fn first_password(&self) -> Option<String> {
        let find = || {
            let lines = self.banner.lock().unwrap_or_else(|e| e.into_inner());
            lines
                .iter()
                .find_map(|l| l.split("one-time password ").nth(1))
                .map(|p| p.trim().to_owned())
        };
        // The banner's lines arrive one by one after the address line.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(p) = find() {
                return Some(p);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `ferry` client with an environment.
#[derive(Clone)]
pub struct Client {
    pub env: Vec<(String, String)>,
    /// Run inside this network namespace.
    pub netns: Option<String>,
}

/// What a `ferry` run printed.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The `--json` summary.
    pub fn json(&self) -> serde_json::Value {
        assert!(self.ok, "ferry failed: {}", self.stderr);
        serde_json::from_str(self.stdout.lines().last().unwrap_or(""))
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

impl Client {
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("ferry"));
                c
            }
            None => Command::new(bin("ferry")),
        };
        c.args(args).env_remove("FERRY_USER");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let out: Output = self.command(args).output().expect("run ferry");
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ferry")
    }

    /// The same client, run from inside a network namespace.
    pub fn in_netns(&self, ns: &str) -> Client {
        Client {
            env: self.env.clone(),
            netns: Some(ns.to_owned()),
        }
    }

    pub fn with(&self, key: &str, value: &str) -> Client {
        let mut c = self.clone();
        c.env.retain(|(k, _)| k != key);
        c.env.push((key.to_owned(), value.to_owned()));
        c
    }
}

/// A recipient's `ferry pull` of the delivery named `reel` (one file,
/// `reel.mov`), capped at 40 Mbit/s so that it lasts long enough to be cut.
pub struct CutPull {
    child: Child,
    pub into: tempfile::TempDir,
}

impl CutPull {
    /// Starts the pull with `extra` flags and returns once the download
    /// has written a checkpoint (what a resume starts from).
    pub fn start(client: &Client, extra: &[&str]) -> Self {
        let into = tempfile::tempdir().expect("tempdir");
        let mut args = vec!["pull", "--into", into.path().to_str().expect("utf8")];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--rate", "40M", "--json"]);
        let child = client.spawn(&args);
        let checkpoint = into.path().join("reel/reel.mov.ferry-state");
        wait_for(
            "a checkpoint of the download",
            Duration::from_secs(60),
            || checkpoint.exists(),
        );
        CutPull { child, into }
    }

    /// Waits for the pull's end and checks it: it succeeded, the resumed
    /// download skipped what had arrived, and the file is `source`'s
    /// bytes. Returns what it printed.
    pub fn finish_resumed(self, source: &Path) -> Run {
        let run = finish(self.child);
        assert!(run.ok, "{}", run.stderr);
        let line: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("a JSON line");
        let skipped = line["report"]["bytes_skipped"]
            .as_u64()
            .expect("bytes_skipped");
        assert!(skipped > 0, "{line}");
        assert_eq!(
            blake3_file(source),
            blake3_file(&self.into.path().join("reel/reel.mov"))
        );
        run
    }
}

/// Collects a finished child's output.
pub fn finish(mut child: Child) -> Run {
    let status = child.wait().expect("wait");
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut stdout);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut stderr);
    }
    Run {
        ok: status.success(),
        stdout,
        stderr,
    }
}

/// A long-running `ferry` (an agent) whose output lines are collected as
/// they come.
pub struct Running {
    child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Running {
    pub fn start(client: &Client, args: &[&str]) -> Self {
        let mut child = client.spawn(args);
        let lines: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
        Running { child, lines }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits for a line containing `needle` and returns it.
    pub fn wait_line(&self, needle: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return l;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no line with {needle:?} after {timeout:?}; got:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process has ended (killed, or finished by itself).
    pub fn ended(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to end by itself; true when it succeeded.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still running after {timeout:?}; output:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A process's peak resident memory (VmHWM) in bytes and its open file
/// descriptors, from /proc.
pub fn rss_peak_and_fds(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (hwm_kib * 1024, fds)
}
