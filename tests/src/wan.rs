//! An emulated WAN for the benchmarks and the WAN test: two namespaces,
//! `left` (the sender: a client) and `right` (the appliance), joined by
//! `ferry-wanem`, with an appliance, an sshd for the TCP baselines, and
//! ways to measure what got through.
//!
//! ```text
//! [left 10.77.0.1] --wan0-- ferry-wanem (delay, loss, rate, queue) --wan0-- [right 10.77.0.2]
//! ```

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::netns::{Net, run};
use crate::{Appliance, Client, Setup, bin};

/// Address of the left end (the client).
pub const LEFT_IP: &str = "10.77.0.1";
/// Address of the right end (the appliance).
pub const RIGHT_IP: &str = "10.77.0.2";

/// A link's shape, the same both ways.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub mbit: u64,
    pub rtt_ms: u64,
    /// Random loss, 0–1.
    pub loss: f64,
    /// Drop-tail queue, in packets.
    pub queue: usize,
}

/// Scenario B of the WAN benchmarks: 100 Mbit/s, 100 ms RTT, 1 % loss,
/// a 1000-packet drop-tail queue.
pub const SCENARIO_B: Shape = Shape {
    mbit: 100,
    rtt_ms: 100,
    loss: 0.01,
    queue: 1000,
};

/// Scenario A: B's link without loss.
pub const SCENARIO_A: Shape = Shape {
    loss: 0.0,
    ..SCENARIO_B
};

/// One direction's counters, as ferry-wanem reports them.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct Counters {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub delivered_packets: u64,
    pub delivered_bytes: u64,
    pub lost: u64,
    pub dropped: u64,
    pub max_queue: usize,
}

/// What the link did between two reports.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct LinkReport {
    pub seconds: f64,
    /// Left to right.
    pub forward: Counters,
    pub back: Counters,
}

/// The two namespaces and the emulator between them.
pub struct Wan {
    pub net: Net,
    pub left: String,
    pub right: String,
    pub shape: Shape,
    emulator: Child,
    reports: std::io::Lines<BufReader<ChildStdout>>,
}

impl Wan {
    pub fn start(shape: Shape) -> Self {
        let mut net = Net::new();
        let left = net.add("left");
        let right = net.add("right");
        let mut emulator = Command::new(bin("ferry-wanem"))
            .args(["--left", &left, "--right", &right])
            .args(["--left-ip", LEFT_IP, "--right-ip", RIGHT_IP])
            .args(["--rate", &format!("{}M", shape.mbit)])
            .args(["--delay", &format!("{}ms", shape.rtt_ms / 2)])
            .args(["--loss", &shape.loss.to_string()])
            .args(["--queue", &shape.queue.to_string()])
            .args(["--lifetime", "2h"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn ferry-wanem");
        let stdout = emulator.stdout.take().expect("stdout");
        let mut reports = BufReader::new(stdout).lines();
        assert_eq!(
            reports.next().and_then(Result::ok).as_deref(),
            Some("ready"),
            "ferry-wanem did not start"
        );
        // TCP gets windows big enough for the path, as a tuned server has.
        for ns in ["left", "right"] {
            net.exec(
                ns,
                &[
                    "sysctl",
                    "-qw",
                    "net.ipv4.tcp_rmem=4096 131072 67108864",
                    "net.ipv4.tcp_wmem=4096 65536 67108864",
                ],
            );
        }
        Wan {
            net,
            left,
            right,
            shape,
            emulator,
            reports,
        }
    }

    /// The counters since the last report.
    pub fn report(&mut self) -> LinkReport {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.emulator.id() as i32),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .expect("signal ferry-wanem");
        let line = self
            .reports
            .next()
            .and_then(Result::ok)
            .expect("a report from ferry-wanem");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// Sets the TCP congestion control of connections from the left (the
    /// TCP baselines' sender), on the route so no global setting changes.
    pub fn tcp_congestion(&self, name: &str) {
        self.congestion("left", name);
    }

    fn congestion(&self, side: &str, name: &str) {
        self.net.exec(
            side,
            &[
                "ip",
                "route",
                "replace",
                "10.77.0.0/24",
                "dev",
                "wan0",
                "congctl",
                "lock",
                name,
            ],
        );
    }

    /// TCP segments sent and sent again from the left so far.
    pub fn tcp_segments(&self) -> (u64, u64) {
        let out = self
            .net
            .exec("left", &["nstat", "-az", "TcpOutSegs", "TcpRetransSegs"]);
        let get = |key: &str| {
            out.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (get("TcpOutSegs"), get("TcpRetransSegs"))
    }

    /// An appliance in the right namespace with `config` (TOML) and a root
    /// share `media`, and an admin's client in the left one.
    pub fn appliance(&self, config: &str) -> (Appliance, Client) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ferryd.toml");
        std::fs::write(&path, config).expect("config");
        let app = Appliance::start_in(Setup {
            netns: Some(self.right.clone()),
            listen: Some(SocketAddr::new(RIGHT_IP.parse().expect("ip"), 8443)),
            args: vec!["--config".into(), path.display().to_string()],
            ..Setup::default()
        });
        // The config file is read at start; the folder may go.
        drop(dir);
        let key = app.user("bench@studio.example", "admin");
        app.admin(&[
            "share",
            "grant",
            "media",
            "bench@studio.example",
            "--read",
            "--write",
        ]);
        let client = app.client(&key).in_netns(&self.left);
        (app, client)
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.emulator.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.emulator.wait();
    }
}

/// An sshd in the right namespace, for rsync over ssh.
pub struct Sshd {
    dir: tempfile::TempDir,
    child: Child,
    ns: String,
}

impl Sshd {
    pub fn start(wan: &Wan) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for key in ["host", "client"] {
            run(&[
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                &d.join(key).display().to_string(),
            ]);
        }
        std::fs::copy(d.join("client.pub"), d.join("authorized_keys")).expect("keys");
        let config = format!(
            "ListenAddress {RIGHT_IP}:22\nHostKey {}\nAuthorizedKeysFile {}\nPermitRootLogin yes\n\
             PasswordAuthentication no\nUsePAM no\nStrictModes no\nPidFile {}\nSubsystem sftp internal-sftp\n",
            d.join("host").display(),
            d.join("authorized_keys").display(),
            d.join("sshd.pid").display()
        );
        std::fs::write(d.join("sshd_config"), config).expect("sshd_config");
        // Privilege separation wants this directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &wan.right,
                "/usr/sbin/sshd",
                "-D",
                "-e",
                "-f",
            ])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sshd");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let ready = lines.any(|l| l.is_ok_and(|l| l.contains("Server listening")));
        assert!(ready, "sshd did not start");
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Sshd {
            dir,
            child,
            ns: wan.left.clone(),
        }
    }

    /// `rsync` from the left to `dest` on the right, copying `src`, as a
    /// running child.
    pub fn rsync(&self, src: &Path, dest: &Path) -> Child {
        let ssh = format!(
            "ssh -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
             -c aes128-gcm@openssh.com",
            self.dir.path().join("client").display()
        );
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "rsync",
                "-a",
                "--inplace",
                "--whole-file",
                "-e",
            ])
            .arg(ssh)
            .arg(src)
            .arg(format!("root@{RIGHT_IP}:{}/", dest.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rsync")
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client report's start (granted, data connection open, first byte) in
/// round trips of `rtt` seconds.
pub fn round_trips(report: &serde_json::Value, rtt: f64) -> (f64, f64, f64) {
    let step = |name: &str| {
        report["start"][name]
            .as_f64()
            .unwrap_or_else(|| panic!("no {name}: {report}"))
            / rtt
    };
    (
        step("granted_secs"),
        step("opened_secs"),
        step("first_byte_secs"),
    )
}

/// Sends `jobs` deliveries, each a `len`-byte file put in the `media`
/// share, from `sender` to a new collaborator, who receives them one at a
/// time with `ferry pull --json` from the left namespace: one client
/// process, so later sessions can resume. Checks that each file arrived
/// whole and returns each job's report, in the order received.
pub fn pull_one_at_a_time(
    wan: &Wan,
    app: &Appliance,
    sender: &Client,
    jobs: u64,
    len: u64,
) -> Vec<serde_json::Value> {
    let key = app.user("director@client.example", "collaborator");
    let recipient = app.client(&key).in_netns(&wan.left);
    for n in 0..jobs {
        crate::write_random(&app.share.join(format!("reel{n}.mov")), len, 40 + n);
        let run = sender.run(&[
            "send",
            &format!("share=media/reel{n}.mov"),
            "--to",
            "director@client.example",
            "--name",
            &format!("reel{n}"),
        ]);
        assert!(run.ok, "{}", run.stderr);
    }
    let into = tempfile::tempdir().expect("tempdir");
    let run = recipient.run(&[
        "pull",
        "--into",
        into.path().to_str().expect("utf-8 path"),
        "--concurrency",
        "1",
        "--json",
    ]);
    assert!(run.ok, "{}", run.stderr);
    let received: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(received.len() as u64, jobs, "{}", run.stdout);
    for n in 0..jobs {
        assert_eq!(
            crate::blake3_file(&into.path().join(format!("reel{n}/reel{n}.mov"))),
            crate::blake3_file(&app.share.join(format!("reel{n}.mov"))),
            "reel{n} arrived intact"
        );
    }
    received
}

/// Bytes under `path` (a file or a folder's files).
pub fn bytes_under(path: &Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m.len(),
        Ok(m) if m.is_dir() => std::fs::read_dir(path)
            .map(|d| d.flatten().map(|e| bytes_under(&e.path())).sum::<u64>())
            .unwrap_or(0),
        _ => 0,
    }
}

/// The bytes a put job has received so far, by the appliance's count;
/// `None` until the job exists.
pub fn job_bytes(client: &Client, name_contains: &str) -> Option<u64> {
    let run = client.run(&["jobs", "--all", "--json"]);
    if !run.ok {
        return None;
    }
    let jobs: serde_json::Value = serde_json::from_str(run.stdout.trim()).ok()?;
    jobs.as_array()?
        .iter()
        .find(|j| {
            j["name"]
                .as_str()
                .is_some_and(|n| n.contains(name_contains))
        })
        .and_then(|j| j["bytes_done"].as_u64())
}

/// A folder of the test's own under `base`.
pub fn fresh_dir(base: &Path, name: &str) -> PathBuf {
    let d = base.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("dir");
    d
}

/// How long to let a transfer settle before measuring its steady rate.
pub const SETTLE: Duration = Duration::from_secs(5);

/// Waits for `child` until `deadline`: `Some(true)` when it exited
/// successfully, `None` while it still runs.
pub fn wait_until(child: &mut Child, deadline: Instant) -> Option<bool> {
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status.success());
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Mbit/s between two readings of (when, bytes arrived so far).
pub fn rate(first: (Instant, u64), last: (Instant, u64)) -> f64 {
    let secs = last.0.duration_since(first.0).as_secs_f64().max(0.001);
    last.1.saturating_sub(first.1) as f64 * 8.0 / secs / 1e6
}
