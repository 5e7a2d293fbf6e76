//! Network namespaces made and removed by the tests: the NAT topology of
//! DESIGN §9, a firewall helper inside it, and a way to run test code from
//! inside a namespace.
//!
//! ```text
//! [rcpt 192.168.77.2] --LAN-- [home: masquerade, WAN 198.51.100.2]
//!     --WAN (198.51.100.1 | 203.0.113.254)-- [edge 203.0.113.1: DNAT tcp 443, udp and tcp 45190-45210]
//!     --DMZ-- [appl 172.20.0.10]
//! plus [intr 198.51.100.66] on the WAN.
//! ```
//!
//! Every name carries a prefix of this test's own, so tests run side by
//! side; everything is removed on drop, processes inside first.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::wait_for;

/// True when this process may make namespaces (root).
pub fn can_run() -> bool {
    nix::unistd::geteuid().is_root() && Path::new("/usr/sbin/nft").exists()
}

/// A set of namespaces.
pub struct Net {
    prefix: String,
    names: Vec<String>,
}

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &[&str]) -> String {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Net {
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Net {
            prefix: format!("fy{}x{n}", std::process::id() % 100_000),
            names: Vec::new(),
        }
    }

    /// The full name of namespace `short`.
    pub fn name(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    /// Makes a namespace with loopback up.
    pub fn add(&mut self, short: &str) -> String {
        let name = self.name(short);
        run(&["ip", "netns", "add", &name]);
        self.names.push(name.clone());
        self.exec(short, &["ip", "link", "set", "lo", "up"]);
        name
    }

    /// Runs a command inside namespace `short`.
    pub fn exec(&self, short: &str, cmd: &[&str]) -> String {
        let name = self.name(short);
        let mut full = vec!["ip", "netns", "exec", name.as_str()];
        full.extend_from_slice(cmd);
        run(&full)
    }

    /// Like [`Net::exec`] but returns failure instead of panicking.
    pub fn try_exec(&self, short: &str, cmd: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name(short)])
            .args(cmd)
            .output()
            .expect("ip netns exec")
    }

    /// Applies an nft script inside namespace `short`.
    pub fn nft(&self, short: &str, script: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name(short), "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nft");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("nft");
        assert!(
            out.status.success(),
            "nft in {short}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A veth pair between two namespaces, each end addressed and up.
    pub fn link(&self, a: &str, a_if: &str, a_addr: &str, b: &str, b_if: &str, b_addr: &str) {
        run(&[
            "ip",
            "link",
            "add",
            a_if,
            "netns",
            &self.name(a),
            "type",
            "veth",
            "peer",
            "name",
            b_if,
            "netns",
            &self.name(b),
        ]);
        for (ns, ifname, addr) in [(a, a_if, a_addr), (b, b_if, b_addr)] {
            if !addr.is_empty() {
                self.exec(ns, &["ip", "addr", "add", addr, "dev", ifname]);
            }
            self.exec(ns, &["ip", "link", "set", ifname, "up"]);
        }
    }

    pub fn route(&self, ns: &str, via: &str) {
        self.exec(ns, &["ip", "route", "add", "default", "via", via]);
    }

    pub fn forward(&self, ns: &str) {
        self.exec(ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    }
}

impl Default for Net {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for name in self.names.iter().rev() {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// The NAT topology of DESIGN §9.
pub struct Topology {
    pub net: Net,
}

/// Public address of the edge router (what clients dial).
pub const EDGE: &str = "203.0.113.1";
/// The appliance in the DMZ.
pub const APPLIANCE: &str = "172.20.0.10";
/// The recipient's home router, as the internet sees it.
pub const HOME_WAN: &str = "198.51.100.2";
/// A stranger on the internet.
pub const INTRUDER: &str = "198.51.100.66";

impl Topology {
    /// Builds it. `edge_masquerades` makes the edge router also rewrite
    /// sources towards the DMZ (the misconfiguration ferryd warns about).
    pub fn build(edge_masquerades: bool) -> Self {
        let mut net = Net::new();
        for ns in ["rcpt", "home", "wan", "intr", "edge", "appl"] {
            net.add(ns);
        }
        net.link(
            "rcpt",
            "r-lan",
            "192.168.77.2/24",
            "home",
            "h-lan",
            "192.168.77.1/24",
        );
        // The WAN: a bridge for the home router and the intruder, routed to
        // the edge router's segment.
        net.exec("wan", &["ip", "link", "add", "br0", "type", "bridge"]);
        net.exec(
            "wan",
            &["ip", "addr", "add", "198.51.100.1/24", "dev", "br0"],
        );
        net.exec("wan", &["ip", "link", "set", "br0", "up"]);
        net.link("home", "h-wan", "198.51.100.2/24", "wan", "w-home", "");
        net.link("intr", "i-wan", "198.51.100.66/24", "wan", "w-intr", "");
        for port in ["w-home", "w-intr"] {
            net.exec("wan", &["ip", "link", "set", port, "master", "br0"]);
        }
        net.link(
            "edge",
            "e-wan",
            "203.0.113.1/24",
            "wan",
            "w-edge",
            "203.0.113.254/24",
        );
        net.link(
            "edge",
            "e-dmz",
            "172.20.0.1/24",
            "appl",
            "a-dmz",
            "172.20.0.10/24",
        );
        // A neighbour's table in the appliance, which portguard must leave
        // exactly as it is.
        net.nft(
            "appl",
            "table inet neighbour {\n chain input {\n  type filter hook input priority 0; policy accept;\n  \
             tcp dport 22 accept\n }\n}\n",
        );
        net.route("rcpt", "192.168.77.1");
        net.route("home", "198.51.100.1");
        net.route("intr", "198.51.100.1");
        net.route("edge", "203.0.113.254");
        net.route("appl", "172.20.0.1");
        for ns in ["home", "wan", "edge"] {
            net.forward(ns);
        }
        net.nft(
            "home",
            "table ip nat {\n chain post {\n  type nat hook postrouting priority 100;\n  oifname \"h-wan\" masquerade\n }\n}\n",
        );
        let snat = if edge_masquerades {
            "  oifname \"e-dmz\" masquerade\n"
        } else {
            ""
        };
        net.nft(
            "edge",
            &format!(
                "table ip nat {{\n chain pre {{\n  type nat hook prerouting priority -100;\n  \
                 iifname \"e-wan\" tcp dport 443 dnat to 172.20.0.10:443\n  \
                 iifname \"e-wan\" meta l4proto {{ udp, tcp }} th dport 45190-45210 dnat to 172.20.0.10\n }}\n \
                 chain post {{\n  type nat hook postrouting priority 100;\n{snat} }}\n}}\n"
            ),
        );
        Topology { net }
    }

    pub fn ns(&self, short: &str) -> String {
        self.net.name(short)
    }

    /// Shapes both directions of the WAN–edge link to `rate` (tc tbf).
    pub fn shape(&self, rate: &str) {
        self.net.exec(
            "wan",
            &[
                "tc", "qdisc", "add", "dev", "w-edge", "root", "tbf", "rate", rate, "burst",
                "64kb", "latency", "100ms",
            ],
        );
        self.net.exec(
            "edge",
            &[
                "tc", "qdisc", "add", "dev", "e-wan", "root", "tbf", "rate", rate, "burst", "64kb",
                "latency", "100ms",
            ],
        );
    }

    /// The elements of `inet ferry sessions4` in the appliance, as
    /// "address . port" strings.
    pub fn openings(&self) -> Vec<String> {
        let out = self.net.try_exec(
            "appl",
            &["nft", "-j", "list", "set", "inet", "ferry", "sessions4"],
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let mut found = Vec::new();
        for item in json["nftables"].as_array().into_iter().flatten() {
            for elem in item["set"]["elem"].as_array().into_iter().flatten() {
                // {"elem": {"val": {"concat": [ip, port]}, "timeout": …}} or a bare concat
                let concat = elem["elem"]["val"]["concat"]
                    .as_array()
                    .or(elem["concat"].as_array());
                if let Some(c) = concat {
                    found.push(format!("{} . {}", c[0].as_str().unwrap_or("?"), c[1]));
                }
            }
        }
        found
    }

    /// Packets dropped by the guard's last rule so far.
    pub fn dropped(&self) -> u64 {
        self.dropped_of("udp")
    }

    /// Packets of `proto` ("udp" or "tcp") dropped by the guard so far.
    pub fn dropped_of(&self, proto: &str) -> u64 {
        let out = self.net.exec(
            "appl",
            &["nft", "-j", "list", "chain", "inet", "ferry", "input"],
        );
        let json: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        for item in json["nftables"].as_array().into_iter().flatten() {
            let Some(expr) = item["rule"]["expr"].as_array() else {
                continue;
            };
            let of_proto = expr
                .iter()
                .any(|e| e["match"]["left"]["payload"]["protocol"] == proto);
            if of_proto
                && expr.iter().any(|e| e.get("drop").is_some())
                && let Some(c) = expr.iter().find_map(|e| e.get("counter"))
            {
                return c["packets"].as_u64().unwrap_or(0);
            }
        }
        0
    }

    /// UDP sockets bound in the appliance within the data range.
    pub fn bound_data_ports(&self) -> Vec<u16> {
        let out = self.net.exec("appl", &["ss", "-ulnH"]);
        out.lines()
            .filter_map(|l| l.split_whitespace().nth(3))
            .filter_map(|local| local.rsplit(':').next()?.parse::<u16>().ok())
            .filter(|p| (45190..=45210).contains(p))
            .collect()
    }
}

/// A ferry-portguard process inside a namespace.
pub struct Portguard {
    pub socket: PathBuf,
    netns: String,
    ports: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Portguard {
    pub fn start(netns: &str, dir: &Path, ports: &str) -> Self {
        let mut p = Portguard {
            socket: dir.join("portguard.sock"),
            netns: netns.to_owned(),
            ports: ports.to_owned(),
            log: dir.join("portguard.log"),
            child: None,
        };
        p.launch();
        p
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let _ = std::fs::remove_file(&self.socket);
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .arg(crate::bin("ferry-portguard"))
            .arg("--socket")
            .arg(&self.socket)
            .args([
                "--ports",
                &self.ports,
                "--allow-uid",
                "0",
                "--socket-mode",
                "666",
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn portguard");
        self.child = Some(child);
        let socket = self.socket.clone();
        wait_for("portguard's socket", Duration::from_secs(20), || {
            socket.exists()
        });
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Portguard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `f` on a thread that has entered namespace `name`: every socket it
/// makes lives there.
pub fn in_netns<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = PathBuf::from("/var/run/netns").join(name);
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("namespace thread")
}

/// The first line of a child's stdout that contains `needle`.
pub fn wait_line(child: &mut Child, needle: &str) -> Option<String> {
    let out = child.stdout.take()?;
    BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains(needle))
}

/// `ADDR:PORT` of the appliance inside the topology.
pub fn appliance_listen() -> SocketAddr {
    SocketAddr::new(APPLIANCE.parse().expect("ip"), 443)
}

/// A program running inside a namespace, killed when dropped.
pub struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` inside namespace `name`, its output discarded.
pub fn spawn_in(name: &str, cmd: &[&str]) -> Background {
    let child = Command::new("ip")
        .args(["netns", "exec", name])
        .args(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?} in {name}: {e}"));
    Background(child)
}
