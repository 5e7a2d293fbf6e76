//! Issue 3: the per-session firewall and NAT-aware sessions, on real
//! nftables in network namespaces (DESIGN §9). These need root; `tests/run`
//! runs them (`--include-ignored`).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use ferry_api::{SessionKind, SessionRequest};
use ferry_client::{Api, Credentials};
use ferry_tests::netns::{
    EDGE, HOME_WAN, INTRUDER, Net, Portguard, Topology, appliance_listen, can_run, in_netns,
};
use ferry_tests::{Appliance, Setup, blake3_file, finish, wait_for, write_random};

const MIB: u64 = 1 << 20;
const ROOT: &str = "needs root and nftables; tests/run runs it";

/// An appliance in the DMZ behind the edge router, its firewall on.
struct Site {
    topo: Topology,
    pg: Portguard,
    a: Appliance,
    _dir: tempfile::TempDir,
}

fn site(edge_masquerades: bool, ports: &str) -> Site {
    assert!(can_run(), "{ROOT}");
    let topo = Topology::build(edge_masquerades);
    let dir = tempfile::tempdir().unwrap();
    let pg = Portguard::start(&topo.ns("appl"), dir.path(), ports);
    let config = dir.path().join("ferryd.toml");
    std::fs::write(
        &config,
        "[transfer]\nlease_ttl_secs = 5\ntoken_ttl_secs = 5\n",
    )
    .unwrap();
    let a = Appliance::start_in(Setup {
        netns: Some(topo.ns("appl")),
        listen: Some(appliance_listen()),
        url: Some(format!("https://{EDGE}:443")),
        portguard: Some(pg.socket.clone()),
        database: None,
        database_ca: None,
        args: vec![
            "--public-address".into(),
            EDGE.into(),
            "--ports".into(),
            ports.into(),
            "--config".into(),
            config.display().to_string(),
        ],
    });
    Site {
        topo,
        pg,
        a,
        _dir: dir,
    }
}

fn api(s: &Site, key: &str) -> Api {
    Api::from_credentials(&Credentials {
        server: s.a.url.clone(),
        user: None,
        api_key: key.to_owned(),
        fingerprint: s.a.fingerprint.parse().unwrap(),
    })
    .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn neighbour(s: &Site) -> String {
    s.topo
        .net
        .exec("appl", &["nft", "list", "table", "inet", "neighbour"])
}

#[test]
#[ignore = "needs root and network namespaces; tests/run runs it"]
fn only_the_recipients_wan_address_reaches_only_its_port() {
    let s = site(false, "45190-45210");
    let neighbour_before = neighbour(&s);
    // Idle: nothing bound, nothing open.
    assert!(
        s.topo.bound_data_ports().is_empty(),
        "{:?}",
        s.topo.bound_data_ports()
    );
    assert!(s.topo.openings().is_empty());

    let key = s.a.media_user("director@example.com");
    let c = s.a.client(&key).in_netns(&s.topo.ns("rcpt"));
    write_random(&s.a.share.join("review/shot010.mov"), 60 * MIB, 3);
    s.topo.shape("100mbit");
    let dl = tempfile::tempdir().unwrap();
    let child = c.spawn(&[
        "get",
        "share=media/review/shot010.mov",
        dl.path().to_str().unwrap(),
        "--json",
    ]);

    // While it runs: exactly the recipient's WAN address, on its port.
    wait_for("an opening in sessions4", Duration::from_secs(30), || {
        !s.topo.openings().is_empty()
    });
    let open = s.topo.openings();
    assert_eq!(open.len(), 1, "{open:?}");
    let (addr, port) = open[0].split_once(" . ").unwrap();
    assert_eq!(addr, HOME_WAN);
    let port: u16 = port.parse().unwrap();
    assert!((45190..=45210).contains(&port));
    assert_eq!(s.topo.bound_data_ports(), vec![port]);

    // The intruder's packets to that very port are dropped by the kernel.
    let before = s.topo.dropped();
    for _ in 0..5 {
        s.topo.net.exec(
            "intr",
            &["bash", "-c", &format!("echo x > /dev/udp/{EDGE}/{port}")],
        );
    }
    wait_for(
        "the intruder's packets counted as dropped",
        Duration::from_secs(10),
        || s.topo.dropped() >= before + 5,
    );
    assert!(
        !s.a.log().contains(INTRUDER),
        "the appliance saw the intruder:\n{}",
        s.a.log()
    );

    let run = finish(child);
    let j = run.json();
    assert_eq!(j["files"], 1);
    assert_eq!(
        blake3_file(&s.a.share.join("review/shot010.mov")),
        blake3_file(&dl.path().join("shot010.mov"))
    );

    // A token stolen from the recipient is useless from another address.
    let grant = in_netns(&s.topo.ns("rcpt"), {
        let api = api(&s, &key);
        move || {
            runtime().block_on(api.create_session(&SessionRequest {
                kind: SessionKind::Put,
                target: Some("share=media/stolen/".into()),
                job: None,
                resume_key: None,
            }))
        }
    })
    .unwrap();
    assert_eq!(grant.client_address, HOME_WAN);
    let fingerprint = s.a.fingerprint.clone();
    let err = in_netns(&s.topo.ns("intr"), move || {
        runtime().block_on(async move {
            let addr = format!("{}:{}", grant.host, grant.port).parse().unwrap();
            let endpoint = ferry_engine::transport::client_endpoint(addr).unwrap();
            let mut token = [0u8; 32];
            for (i, b) in token.iter_mut().enumerate() {
                *b = u8::from_str_radix(&grant.token[2 * i..2 * i + 2], 16).unwrap();
            }
            ferry_engine::handshake::connect(
                &endpoint,
                addr,
                &ferry_engine::tls::PinnedCert::new(fingerprint.parse().unwrap()),
                &ferry_engine::transport::Tuning::default(),
                token,
                Duration::from_secs(3),
                Default::default(),
            )
            .await
            .map(|_| ())
        })
    })
    .unwrap_err();
    assert!(err.to_string().contains("not reachable"), "{err}");
    assert!(!s.a.log().contains(INTRUDER));

    // After the session (and the stolen token's expiry) everything closes.
    wait_for(
        "every opening closed and every port unbound",
        Duration::from_secs(20),
        || s.topo.openings().is_empty() && s.topo.bound_data_ports().is_empty(),
    );
    assert_eq!(
        neighbour(&s),
        neighbour_before,
        "portguard left other tables alone"
    );

    // Every lease, renewal and release is in the audit log, with who and
    // which address.
    let audit =
        s.a.admin(&["audit", "--limit", "1000", "--action", "lease."]);
    for action in ["lease.open", "lease.renew", "lease.release"] {
        let line = audit
            .lines()
            .find(|l| l.contains(&format!("\t{action}\t")))
            .unwrap_or_else(|| panic!("no {action} in the audit log:\n{audit}"));
        assert!(
            line.contains("director@example.com") && line.contains(HOME_WAN),
            "{line}"
        );
    }
}

#[test]
#[ignore = "needs root and network namespaces; tests/run runs it"]
fn openings_close_by_themselves_when_ferryd_or_portguard_dies() {
    let mut s = site(false, "45190-45210");
    let key = s.a.media_user("director@example.com");
    let c = s.a.client(&key).in_netns(&s.topo.ns("rcpt"));
    write_random(&s.a.share.join("big.mov"), 60 * MIB, 4);
    s.topo.shape("50mbit");
    let dl = tempfile::tempdir().unwrap();

    // ferryd killed mid-session: nobody renews, the kernel times it out.
    let mut child = c.spawn(&[
        "get",
        "share=media/big.mov",
        dl.path().to_str().unwrap(),
        "--retries",
        "0",
    ]);
    wait_for("an opening", Duration::from_secs(30), || {
        !s.topo.openings().is_empty()
    });
    s.a.kill();
    let killed = Instant::now();
    wait_for("the opening to time out", Duration::from_secs(15), || {
        s.topo.openings().is_empty()
    });
    assert!(
        killed.elapsed() <= Duration::from_secs(5 + 3),
        "closed after {:?}",
        killed.elapsed()
    );
    let _ = child.kill();
    let _ = child.wait();

    // portguard killed: the openings stay until they time out, and a new
    // portguard starts from an empty set at once.
    s.a.restart();
    let mut child = c.spawn(&[
        "get",
        "share=media/big.mov",
        dl.path().to_str().unwrap(),
        "--retries",
        "0",
    ]);
    wait_for("an opening", Duration::from_secs(30), || {
        !s.topo.openings().is_empty()
    });
    s.pg.kill();
    assert!(
        !s.topo.openings().is_empty(),
        "the kernel keeps them until their timeout"
    );
    s.pg.restart();
    wait_for("reconcile to an empty set", Duration::from_secs(3), || {
        s.topo.openings().is_empty()
    });
    let _ = child.kill();
    let _ = child.wait();

    // The appliance goes on with the new portguard.
    let j = c
        .run(&[
            "get",
            "share=media/big.mov",
            dl.path().to_str().unwrap(),
            "--json",
        ])
        .json();
    assert_eq!(j["files"], 1);
    assert_eq!(
        blake3_file(&s.a.share.join("big.mov")),
        blake3_file(&dl.path().join("big.mov"))
    );
}

#[test]
#[ignore = "needs root and network namespaces; tests/run runs it"]
fn more_sessions_than_ports_all_complete() {
    let s = site(false, "45190-45192");
    let key = s.a.media_user("director@example.com");
    let c = s.a.client(&key).in_netns(&s.topo.ns("rcpt"));
    for i in 0..25 {
        write_random(&s.a.share.join(format!("out/f{i:02}.exr")), 2 * MIB + i, i);
    }
    let dl = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..25)
        .map(|i| {
            let into = dl.path().join(format!("c{i:02}"));
            c.spawn(&[
                "get",
                &format!("share=media/out/f{i:02}.exr"),
                into.to_str().unwrap(),
                "--json",
            ])
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let run = finish(child);
        assert!(run.ok, "client {i}: {}", run.stderr);
        let name = format!("f{i:02}.exr");
        assert_eq!(
            blake3_file(&s.a.share.join("out").join(&name)),
            blake3_file(&dl.path().join(format!("c{i:02}")).join(&name))
        );
    }
    // Three ports served twenty-five sessions.
    let log = s.a.log();
    let ports: std::collections::BTreeSet<&str> = log
        .lines()
        .filter_map(|l| l.split("data port 172.20.0.10:").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert!(!ports.is_empty() && ports.len() <= 3, "{ports:?}");
}

#[test]
#[ignore = "needs root and network namespaces; tests/run runs it"]
fn udp_from_another_address_gets_a_clear_error_not_a_hang() {
    let s = site(false, "45190-45210");
    // The home router sends UDP out through a second address.
    s.topo.net.exec(
        "home",
        &["ip", "addr", "add", "198.51.100.3/24", "dev", "h-wan"],
    );
    // Inserted ahead of the masquerade rule, so UDP takes the other address.
    s.topo.net.nft(
        "home",
        "insert rule ip nat post oifname \"h-wan\" meta l4proto udp snat to 198.51.100.3\n",
    );
    let key = s.a.media_user("director@example.com");
    let c = s.a.client(&key).in_netns(&s.topo.ns("rcpt"));
    write_random(&s.a.share.join("x.mov"), MIB, 5);
    let dl = tempfile::tempdir().unwrap();
    let started = Instant::now();
    // QUIC only: with `auto`, TCP through the router's main address would
    // carry it (the NAT tests of issue 19 show that).
    let run = c.run(&[
        "get",
        "share=media/x.mov",
        dl.path().to_str().unwrap(),
        "--retries",
        "0",
        "--transport",
        "quic",
    ]);
    assert!(!run.ok);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(run.stderr.contains("not reachable"), "{}", run.stderr);
    assert!(
        run.stderr.contains(HOME_WAN),
        "names the address the appliance saw: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("45190-45210"),
        "names the ports: {}",
        run.stderr
    );
}

#[test]
#[ignore = "needs root and network namespaces; tests/run runs it"]
fn an_edge_router_that_rewrites_sources_is_noticed() {
    let s = site(true, "45190-45210");
    write_random(&s.a.share.join("x.mov"), 1000, 6);
    let dl = tempfile::tempdir().unwrap();
    for who in ["a@example.com", "b@example.com", "c@example.com"] {
        let c =
            s.a.client(&s.a.media_user(who))
                .in_netns(&s.topo.ns("rcpt"));
        let run = c.run(&["get", "share=media/x.mov", dl.path().to_str().unwrap()]);
        assert!(run.ok, "{}", run.stderr);
    }
    wait_for(
        "the warning in ferryd's log",
        Duration::from_secs(5),
        || s.a.log().contains("rewrite source"),
    );
    let admin = s.a.user("admin2@example.com", "admin");
    let status: ferry_api::Status = in_netns(&s.topo.ns("rcpt"), {
        let api = api(&s, &admin);
        move || runtime().block_on(api.get("/status"))
    })
    .unwrap();
    assert!(
        status
            .warnings
            .iter()
            .any(|w| w.contains("172.20.0.1") && w.contains("DNAT only")),
        "{:?}",
        status.warnings
    );
    assert_eq!(status.firewall, "nft");
}

#[test]
#[ignore = "needs root and network namespaces; tests/run runs it"]
fn portguard_refuses_strangers_and_garbage() {
    assert!(can_run(), "{ROOT}");
    let mut net = Net::new();
    net.add("appl");
    let dir = tempfile::tempdir().unwrap();
    // The stranger must be able to reach the socket to be refused by it.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let pg = Portguard::start(&net.name("appl"), dir.path(), "45190-45192");

    // Another uid is refused, and the refusal is logged.
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(ferry_tests::bin("ferry-portguard"))
        .arg("--socket")
        .arg(&pg.socket)
        .args(["ctl", "list"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("uid 65534 may not use"), "{stderr}");
    wait_for(
        "the refusal in portguard's log",
        Duration::from_secs(5),
        || pg.log().contains("refused a request from uid 65534"),
    );

    // Garbage and oversized requests get an error, and the helper lives on.
    for (bytes, expect) in [
        (vec![0u8, 0, 0, 3, 0xff, 0xff, 0xff], "malformed"),
        (vec![0xff, 0xff, 0xff, 0xff], "exceeds"),
        (vec![0, 0, 0, 1, 42], "malformed"),
    ] {
        let reply = raw_request(&pg.socket, &bytes);
        assert!(reply.contains(expect), "{reply}");
    }
    // An address that cannot hold a lease is refused as a value, not text.
    let out = std::process::Command::new(ferry_tests::bin("ferry-portguard"))
        .arg("--socket")
        .arg(&pg.socket)
        .args(["ctl", "lease", "0.0.0.0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = std::process::Command::new(ferry_tests::bin("ferry-portguard"))
        .arg("--socket")
        .arg(&pg.socket)
        .args(["ctl", "lease", "198.51.100.9", "--ttl", "60"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let set = net.exec(
        "appl",
        &["nft", "list", "set", "inet", "ferry", "sessions4"],
    );
    assert!(set.contains("198.51.100.9 . 45190"), "{set}");
}

/// Sends raw bytes to portguard and returns its error reply as text.
fn raw_request(socket: &Path, bytes: &[u8]) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream.write_all(bytes).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).unwrap();
    match ferry_portguard::protocol::decode::<ferry_portguard::protocol::Response>(&body).unwrap() {
        ferry_portguard::protocol::Response::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The WAN link cut for a minute in the middle of a delivery, then
/// restored: the recipient's agent notices, waits, and resumes by itself
/// from its checkpoint; the file is whole, no part file is left, and the
/// job is done.
#[test]
#[ignore = "needs root and network namespaces; tests/run runs it"]
fn a_link_cut_for_a_minute_mid_delivery_heals_by_itself() {
    let _serial = ferry_tests::heavy_io();
    let s = site(false, "45190-45199");
    // 80 Mbit/s, so that the minute falls in the middle of the transfer.
    s.topo.shape("80mbit");
    let rcpt = s.topo.ns("rcpt");
    let sender =
        s.a.client(&s.a.media_user("producer@studio.example"))
            .in_netns(&rcpt);
    let recipient =
        s.a.client(&s.a.user("director@client.example", "collaborator"))
            .in_netns(&rcpt);
    let reel = s.a.share.join("cut/reel.mov");
    write_random(&reel, 160 * MIB, 77);
    let sent = sender.run(&[
        "send",
        "share=media/cut/reel.mov",
        "--to",
        "director@client.example",
        "--name",
        "cut",
        "--json",
    ]);
    assert!(sent.ok, "{}", sent.stderr);
    let into = tempfile::tempdir().unwrap();
    let agent = ferry_tests::Running::start(
        &recipient,
        &[
            "agent",
            "--into",
            into.path().to_str().unwrap(),
            "--poll",
            "1",
        ],
    );
    let got = into.path().join("cut");
    wait_for(
        "the agent's first checkpoint",
        Duration::from_secs(60),
        || got.join("reel.mov.ferry-state").exists(),
    );
    let started = Instant::now();
    s.topo
        .net
        .exec("wan", &["ip", "link", "set", "w-edge", "down"]);
    // The minute without a link is the fault being injected.
    std::thread::sleep(Duration::from_secs(60));
    s.topo
        .net
        .exec("wan", &["ip", "link", "set", "w-edge", "up"]);
    let restored = Instant::now();
    let interrupted = agent
        .lines()
        .into_iter()
        .find(|l| l.contains("interrupted") || l.contains("cannot reach"))
        .unwrap_or_else(|| {
            panic!(
                "the agent never noticed the cut:\n{}",
                agent.lines().join("\n")
            )
        });
    let done = agent.wait_line(": complete", Duration::from_secs(240));
    assert!(!done.contains(" 0 B already here"), "{done}");
    assert_eq!(blake3_file(&reel), blake3_file(&got.join("reel.mov")));
    assert!(!got.join("reel.mov.ferry-part").exists());
    assert!(!got.join("reel.mov.ferry-state").exists());
    ferry_tests::record_scenario(
        "link-cut",
        serde_json::json!({
            "scenario": "the link cut for 60 s mid-delivery, then restored",
            "injected": "the WAN-edge veth set down for 60 s during a 160 MiB download shaped to 80 Mbit/s",
            "checked": format!("the agent noticed ('{interrupted}') and resumed by itself; BLAKE3 equal; no part or state file left"),
            "faults_survived": 1,
            "bytes_compared": 160 * MIB,
            "seconds_link_down": restored.duration_since(started).as_secs_f64(),
            "seconds_from_restore_to_done": restored.elapsed().as_secs_f64(),
            "resume": done,
        }),
    );
}

/// Issue 19: a recipient whose router drops every UDP datagram it would
/// forward (a hotel, a locked-down studio).
fn drop_udp_at_home(s: &Site) {
    s.topo.net.nft(
        "home",
        "table inet noudp {\n chain forwarding {\n  type filter hook forward priority 0; policy accept;\n  \
         meta l4proto udp counter drop\n }\n}\n",
    );
}

#[test]
#[ignore = "needs root and network namespaces; tests/run runs it"]
fn with_udp_dropped_a_delivery_arrives_over_tcp_and_quic_returns_later() {
    let _serial = ferry_tests::heavy_io();
    let s = site(false, "45190-45210");
    drop_udp_at_home(&s);
    s.topo.shape("200mbit");
    let rcpt = s.topo.ns("rcpt");
    let sender =
        s.a.client(&s.a.media_user("producer@studio.example"))
            .in_netns(&rcpt);
    let recipient =
        s.a.client(&s.a.user("director@client.example", "collaborator"))
            .in_netns(&rcpt);
    let reel = s.a.share.join("cut/reel.mov");
    write_random(&reel, 120 * MIB, 91);
    let sent = sender.run(&[
        "send",
        "share=media/cut/reel.mov",
        "--to",
        "director@client.example",
        "--name",
        "cut",
        "--json",
    ]);
    assert!(sent.ok, "{}", sent.stderr);
    let into = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let agent = ferry_tests::Running::start(
        &recipient,
        &[
            "agent",
            "--into",
            into.path().to_str().unwrap(),
            "--poll",
            "1",
        ],
    );
    let got = into.path().join("cut");
    wait_for(
        "the agent's first checkpoint",
        Duration::from_secs(60),
        || got.join("reel.mov.ferry-state").exists(),
    );
    let first_checkpoint = started.elapsed();
    // While it runs: every opening is the recipient's, and an intruder's
    // TCP connection to any of them is dropped by the ferry table. (The
    // QUIC attempt that UDP never reached may still hold its own opening
    // for a moment after TCP took over: two, both the recipient's.)
    let open = s.topo.openings();
    assert!(
        !open.is_empty()
            && open
                .iter()
                .all(|o| o.starts_with(&format!("{HOME_WAN} . "))),
        "{open:?}"
    );
    let before = s.topo.dropped_of("tcp");
    for opening in &open {
        let port = opening.split_once(" . ").unwrap().1;
        let knock = s.topo.net.try_exec(
            "intr",
            &[
                "timeout",
                "3",
                "bash",
                "-c",
                &format!("echo x > /dev/tcp/{EDGE}/{port}"),
            ],
        );
        assert!(
            !knock.status.success(),
            "the intruder connected to the leased TCP port {port}"
        );
    }
    assert!(
        s.topo.dropped_of("tcp") > before,
        "the intruder's SYNs were not counted as dropped"
    );
    let done = agent.wait_line(": complete", Duration::from_secs(120));
    assert_eq!(blake3_file(&reel), blake3_file(&got.join("reel.mov")));
    assert!(!got.join("reel.mov.ferry-part").exists());
    let log = s.a.log();
    assert!(
        log.contains("over tcp"),
        "the session did not run over TCP:\n{log}"
    );
    assert!(!log.contains("over quic"), "{log}");
    assert!(!log.contains(INTRUDER), "the appliance saw the intruder");
    drop(agent);
    // Nothing stays open: the TCP session's opening closes with it, the
    // unanswered QUIC attempt's when its lease lapses (30 s).
    wait_for("every opening to close", Duration::from_secs(60), || {
        s.topo.openings().is_empty()
    });

    // How much the fallback adds to a transfer's start: a small get, from
    // a client that has no memory of this appliance.
    let fresh =
        s.a.client(&s.a.media_user("editor@client.example"))
            .in_netns(&rcpt);
    write_random(&s.a.share.join("small.mov"), 2 * MIB, 92);
    let dl = tempfile::tempdir().unwrap();
    let j = fresh
        .run(&[
            "get",
            "share=media/small.mov",
            dl.path().to_str().unwrap(),
            "--json",
        ])
        .json();
    assert_eq!(j["transport"], "tcp", "{j}");
    let fallback_start = j["seconds"].as_f64().unwrap();
    assert!(fallback_start < 12.0, "the fallback took {fallback_start}s");
    // Remembered: the next get starts on TCP at once.
    let dl2 = tempfile::tempdir().unwrap();
    let j = fresh
        .run(&[
            "get",
            "share=media/small.mov",
            dl2.path().to_str().unwrap(),
            "--json",
        ])
        .json();
    assert_eq!(j["transport"], "tcp", "{j}");
    let remembered_start = j["seconds"].as_f64().unwrap();

    // The doctor says what gets through from here, and what does not.
    let doctor = fresh.run(&["doctor", "--json"]).json();
    let verdicts: Vec<(String, bool)> = doctor["transports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["transport"].as_str().unwrap().to_owned(),
                t["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("quic".into(), false),
            ("tcp".into(), true),
            ("https".into(), true)
        ],
        "{doctor}"
    );

    // UDP passes again; once the memory lapses (here at once), QUIC is
    // tried first again and wins.
    s.topo.net.nft("home", "delete table inet noudp\n");
    let mut later = fresh.clone();
    later
        .env
        .push(("FERRY_TRANSPORT_MEMORY_SECS".into(), "0".into()));
    let dl3 = tempfile::tempdir().unwrap();
    let j = later
        .run(&[
            "get",
            "share=media/small.mov",
            dl3.path().to_str().unwrap(),
            "--json",
        ])
        .json();
    assert_eq!(j["transport"], "quic", "{j}");
    ferry_tests::record_scenario(
        "udp-dropped",
        serde_json::json!({
            "scenario": "UDP dropped at the recipient's router; then allowed again",
            "injected": "nft forward drop of every UDP datagram in the recipient's router namespace",
            "checked": "a 120 MiB delivery reached the agent over TCP, BLAKE3 equal; an intruder's TCP connection to the leased port was dropped by the ferry table; with UDP back and the memory lapsed, a get used QUIC",
            "faults_survived": 1,
            "bytes_compared": 120 * MIB,
            "seconds_to_first_checkpoint": first_checkpoint.as_secs_f64(),
            "seconds_small_get_with_fallback": fallback_start,
            "seconds_small_get_remembered": remembered_start,
            "done": done,
        }),
    );
}

#[test]
#[ignore = "needs root and network namespaces; tests/run runs it"]
fn behind_a_proxy_that_allows_only_443_a_put_goes_over_https() {
    let s = site(false, "45190-45210");
    let dir = tempfile::tempdir().unwrap();
    // The recipient's network routes nothing out; its router runs a real
    // HTTP proxy that asks for credentials and tunnels only to port 443.
    let conf = dir.path().join("tinyproxy.conf");
    std::fs::write(
        &conf,
        "Port 8888\nListen 192.168.77.1\nAllow 192.168.77.0/24\nConnectPort 443\n\
         BasicAuth ferry s3cret\nMaxClients 64\nLogLevel Info\nTimeout 600\n",
    )
    .unwrap();
    s.topo.net.nft(
        "home",
        "table inet office {\n chain forwarding {\n  type filter hook forward priority 0; policy drop;\n }\n \
         chain outgoing {\n  type filter hook output priority 0; policy accept;\n  \
         oifname \"h-wan\" tcp dport != 443 drop\n  oifname \"h-wan\" meta l4proto != tcp drop\n }\n}\n",
    );
    let proxy = ferry_tests::netns::spawn_in(
        &s.topo.ns("home"),
        &["tinyproxy", "-d", "-c", conf.to_str().unwrap()],
    );
    wait_for("tinyproxy listening", Duration::from_secs(10), || {
        s.topo
            .net
            .try_exec("home", &["ss", "-ltn", "sport = :8888"])
            .stdout
            .windows(4)
            .any(|w| w == b"8888")
    });
    let mut c =
        s.a.client(&s.a.media_user("ann@example.com"))
            .in_netns(&s.topo.ns("rcpt"));
    c.env.push((
        "HTTPS_PROXY".into(),
        "http://ferry:s3cret@192.168.77.1:8888".into(),
    ));
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("plate.mov");
    write_random(&file, 24 * MIB, 93);
    let j = c
        .run(&["put", file.to_str().unwrap(), "share=media/in/", "--json"])
        .json();
    assert_eq!(j["transport"], "https", "{j}");
    assert_eq!(
        blake3_file(&file),
        blake3_file(&s.a.share.join("in/plate.mov"))
    );
    // Without the proxy's credentials nothing gets out.
    let mut wrong = c.clone();
    wrong.env.retain(|(k, _)| k != "HTTPS_PROXY");
    wrong
        .env
        .push(("HTTPS_PROXY".into(), "http://192.168.77.1:8888".into()));
    let run = wrong.run(&[
        "put",
        file.to_str().unwrap(),
        "share=media/other/",
        "--transport",
        "https",
        "--retries",
        "0",
    ]);
    assert!(!run.ok);
    assert!(!s.a.share.join("other/plate.mov").exists());
    drop(proxy);
}
