//! Issue 19: one session model over three transports. QUIC, TCP (TLS on
//! the leased port) and HTTPS (upgraded connections to the control port)
//! each carry a put and a get byte for byte; a transfer cut on one resumes
//! on another; a token is as single-use over lanes as over QUIC. The NAT
//! topology's cases (UDP dropped, a proxy the only way out) are in
//! `nat.rs`.

use std::time::Duration;

use ferry_engine::EngineError;
use ferry_engine::handshake::connect_lanes;
use ferry_engine::lanes::DEFAULT_LANES;
use ferry_engine::tls::PinnedCert;
use ferry_proto::{ErrorCode, ProtoError, Transport};
use ferry_tests::{Appliance, blake3_file, heavy_io, list_files, write_random};

use crate::foundation::wire::{api, open, token};

const MIB: u64 = 1 << 20;

#[test]
fn each_transport_carries_a_put_and_a_get_intact() {
    let _serial = heavy_io();
    let a = Appliance::start();
    let c = a.client(&a.media_user("ann@example.com"));
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("plate.mov");
    write_random(&file, 96 * MIB, 19);
    for (i, t) in ["quic", "tcp", "https"].into_iter().enumerate() {
        let dest = format!("share=media/{t}/");
        let j = c
            .run(&[
                "put",
                file.to_str().unwrap(),
                &dest,
                "--transport",
                t,
                "--json",
            ])
            .json();
        assert_eq!(j["transport"], t, "{j}");
        assert_eq!(j["bytes_transferred"], 96 * MIB, "{j}");
        assert_eq!(
            blake3_file(&file),
            blake3_file(&a.share.join(format!("{t}/plate.mov")))
        );
        let down = tempfile::tempdir().unwrap();
        let j = c
            .run(&[
                "get",
                &format!("share=media/{t}/plate.mov"),
                down.path().to_str().unwrap(),
                "--transport",
                t,
                "--json",
            ])
            .json();
        assert_eq!(j["transport"], t, "{j}");
        assert_eq!(
            blake3_file(&file),
            blake3_file(&down.path().join("plate.mov")),
            "get {i} over {t}"
        );
        assert!(
            list_files(down.path())
                .iter()
                .all(|p| !p.to_string_lossy().contains(".ferry-"))
        );
    }
    // The job list says how each session travelled.
    let jobs = c.run(&["jobs", "--json"]);
    assert!(jobs.ok, "{}", jobs.stderr);
}

#[test]
fn a_put_cut_over_quic_resumes_over_tcp_without_resending() {
    let _serial = heavy_io();
    let a = Appliance::start();
    let c = a.client(&a.media_user("ann@example.com"));
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("big.mov");
    write_random(&file, 200 * MIB, 23);
    // Capped so that the put lasts long enough to be cut.
    let mut child = c.spawn(&[
        "put",
        file.to_str().unwrap(),
        "share=media/in/",
        "--transport",
        "quic",
        "--rate",
        "200M",
        "--json",
    ]);
    let state = a.share.join("in/big.mov.ferry-state");
    ferry_tests::wait_for(
        "a checkpoint of the QUIC put",
        Duration::from_secs(30),
        || state.exists(),
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the put was still running when cut"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !a.share.join("in/big.mov").exists(),
        "no half file under the final name"
    );
    let j = c
        .run(&[
            "put",
            file.to_str().unwrap(),
            "share=media/in/",
            "--transport",
            "tcp",
            "--json",
        ])
        .json();
    assert_eq!(j["transport"], "tcp");
    let skipped = j["bytes_skipped"].as_u64().unwrap();
    assert!(skipped > 0, "{j}");
    assert!(
        j["bytes_transferred"].as_u64().unwrap() <= 200 * MIB - skipped,
        "{j}"
    );
    assert_eq!(blake3_file(&file), blake3_file(&a.share.join("in/big.mov")));
    assert!(!state.exists());
}

/// Opens a lane session by hand with `tok`, over `transport`.
async fn lanes_hello(
    a: &Appliance,
    transport: Transport,
    port: u16,
    tok: [u8; 32],
) -> Result<ferry_engine::handshake::Session, EngineError> {
    let pin = PinnedCert::new(a.fingerprint.parse().unwrap());
    let dial = match transport {
        Transport::Tcp => ferry_client::reach::tcp_dialer(
            format!("{}:{port}", a.ip).parse().unwrap(),
            pin,
            Duration::from_secs(5),
        ),
        _ => ferry_client::reach::https_dialer(a.url.clone(), pin, Duration::from_secs(5)),
    };
    connect_lanes(
        dial,
        transport,
        "the appliance",
        tok,
        Duration::from_secs(5),
        Default::default(),
        DEFAULT_LANES,
    )
    .await
}

fn peer_code(e: &EngineError) -> Option<ErrorCode> {
    match e {
        EngineError::Proto(ProtoError::Peer { code, .. }) => Some(*code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_and_foreign_tokens_are_refused_over_tcp_and_https() {
    let a = Appliance::start();
    let api = api(&a, &a.media_user("ann@example.com"));
    for transport in [Transport::Tcp, Transport::Https] {
        let (grant, _) = open(&a, &api).await;
        let first = lanes_hello(&a, transport, grant.port, token(&grant.token))
            .await
            .unwrap_or_else(|e| panic!("the first use over {transport}: {e}"));
        let again = lanes_hello(&a, transport, grant.port, token(&grant.token))
            .await
            .unwrap_err();
        assert_eq!(
            peer_code(&again),
            Some(ErrorCode::TokenReused),
            "{transport}: {again}"
        );
        let foreign = lanes_hello(&a, transport, grant.port, [9; 32])
            .await
            .unwrap_err();
        assert_eq!(
            peer_code(&foreign),
            Some(ErrorCode::BadToken),
            "{transport}: {foreign}"
        );
        drop(first);
    }
    // Nothing was written by the refused sessions.
    assert!(
        list_files(&a.share).is_empty(),
        "{:?}",
        list_files(&a.share)
    );
    let refused = a.admin(&["audit", "--action", "session.refused"]);
    assert!(
        refused.contains("over tcp") && refused.contains("over https"),
        "{refused}"
    );
}

#[test]
fn doctor_checks_each_transport_the_pin_the_clock_and_names_the_ports() {
    let a = Appliance::start();
    let c = a.client(&a.media_user("ann@example.com"));
    let run = c.run(&["doctor", "--json"]);
    let j = run.json();
    assert_eq!(j["control"]["ok"], true, "{j}");
    assert_eq!(j["certificate_pin"]["ok"], true, "{j}");
    assert!(j["rtt_ms"].as_f64().unwrap() > 0.0, "{j}");
    assert!(j["clock_offset_secs"].as_f64().unwrap().abs() < 5.0, "{j}");
    let transports: Vec<(&str, bool)> = j["transports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["transport"].as_str().unwrap(), t["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        transports,
        [("quic", true), ("tcp", true), ("https", true)],
        "{j}"
    );
    let ports = j["ports"].to_string();
    assert!(
        ports.contains("UDP and TCP ports") && ports.contains("TCP port"),
        "{ports}"
    );
    // In plain words too; probes start no transfer.
    let words = c.run(&["doctor"]);
    assert!(words.ok, "{}", words.stderr);
    assert!(
        words.stdout.contains("ok   quic: gets through"),
        "{}",
        words.stdout
    );
    assert!(words.stdout.contains("clock:"), "{}", words.stdout);
    let jobs = c.run(&["jobs", "--all"]);
    assert!(
        jobs.stdout.contains("no jobs"),
        "the probes made jobs: {}",
        jobs.stdout
    );
    // A client pinned to another certificate is told so.
    let mut wrong = c.clone();
    wrong.env.retain(|(k, _)| k != "FERRY_FINGERPRINT");
    wrong
        .env
        .push(("FERRY_FINGERPRINT".into(), "00".repeat(32)));
    let run = wrong.run(&["doctor", "--json"]);
    assert!(!run.ok);
    let j: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(j["certificate_pin"]["ok"], false, "{j}");
}

#[test]
fn a_site_that_turns_quic_off_is_reached_over_tcp_at_once() {
    let _serial = heavy_io();
    let a = Appliance::start();
    let admin = a.user("boss@example.com", "admin");
    let rest = crate::rules::Rest::new(&a);
    let (status, mut settings) = rest.call("GET", "/api/v1/settings", Some(&admin), None);
    assert_eq!(status, 200, "{settings}");
    settings["transports"] = "tcp, https".into();
    let (status, changed) = rest.call("PUT", "/api/v1/settings", Some(&admin), Some(&settings));
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["transports"], "tcp, https");
    settings["transports"] = "carrier pigeon".into();
    let (status, refused) = rest.call("PUT", "/api/v1/settings", Some(&admin), Some(&settings));
    assert_eq!(status, 400, "{refused}");

    let c = a.client(&a.media_user("ann@example.com"));
    write_random(&a.share.join("take.mov"), 48 * MIB, 31);
    let down = tempfile::tempdir().unwrap();
    // Capped, so that the running session can be seen from outside.
    let child = c.spawn(&[
        "get",
        "share=media/take.mov",
        down.path().to_str().unwrap(),
        "--rate",
        "80M",
        "--json",
    ]);
    let mut seen = None;
    ferry_tests::wait_for(
        "the running session in the status",
        Duration::from_secs(20),
        || {
            let (_, s) = rest.call("GET", "/api/v1/status", Some(&admin), None);
            seen = s["sessions"].as_array().and_then(|v| v.first()).cloned();
            seen.is_some()
        },
    );
    assert_eq!(seen.unwrap()["transport"], "tcp");
    let jobs = c.run(&["jobs"]);
    assert!(jobs.stdout.contains("over tcp"), "{}", jobs.stdout);
    let j = ferry_tests::finish(child).json();
    assert_eq!(j["transport"], "tcp", "{j}");
    // QUIC was not waited for: the grant said it is off.
    assert!(
        j["seconds"].as_f64().unwrap() < 3.0 + 48.0 * 8.0 / 80.0,
        "{j}"
    );
    assert_eq!(
        blake3_file(&a.share.join("take.mov")),
        blake3_file(&down.path().join("take.mov"))
    );
    // Asked for by name, QUIC is refused with a clear word.
    let run = c.run(&[
        "get",
        "share=media/take.mov",
        down.path().to_str().unwrap(),
        "--transport",
        "quic",
    ]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains("does not carry data over quic"),
        "{}",
        run.stderr
    );
}

/// Issue 24's clients: an appliance known by several addresses. `ferry
/// login` takes the list, checks that every address that answers presents
/// the pinned certificate, and keeps the list. A put then finds its way past
/// a dead address at the head of the list, and when the address it uses
/// goes dark mid-transfer (every packet to it dropped), its retry moves to
/// the next address and resumes: the file arrives whole, and what had
/// arrived was not sent again. The next process starts at the address that
/// answered. A recipient's agent, cut the same way mid-download, resumes
/// through the other address too.
#[test]
#[ignore = "needs root and network namespaces; tests/run runs it"]
fn clients_move_to_the_appliances_next_address_and_resume() {
    use ferry_tests::wan::{RIGHT_IP, Shape, Wan};
    use ferry_tests::{Client, Setup};

    assert!(
        ferry_tests::netns::can_run(),
        "needs root and network namespaces"
    );
    let _serial = heavy_io();
    let wan = Wan::start(Shape {
        mbit: 200,
        rtt_ms: 10,
        loss: 0.0,
        queue: 1000,
    });
    // One appliance, two uplinks: .2 and .3 on the right, and .9, which
    // no one answers (a node that is down).
    const SECOND_IP: &str = "10.77.0.3";
    wan.net.exec(
        "right",
        &[
            "ip",
            "addr",
            "add",
            &format!("{SECOND_IP}/24"),
            "dev",
            "wan0",
        ],
    );
    let a = Appliance::start_in(Setup {
        netns: Some(wan.right.clone()),
        listen: Some("0.0.0.0:8443".parse().unwrap()),
        url: Some(format!("https://{RIGHT_IP}:8443")),
        ..Setup::default()
    });
    a.media_user("ann@example.com");
    let servers =
        format!("https://10.77.0.9:8443,https://{RIGHT_IP}:8443,https://{SECOND_IP}:8443");

    let home = tempfile::tempdir().unwrap();
    let c = Client {
        env: vec![
            (
                "FERRY_CONFIG".into(),
                home.path().join("credentials.toml").display().to_string(),
            ),
            ("HOME".into(), home.path().display().to_string()),
        ],
        netns: Some(wan.left.clone()),
    };
    let mut login = c.command(&[
        "login",
        &servers,
        "--email",
        "ann@example.com",
        "--fingerprint",
        &a.fingerprint,
        "--password-stdin",
    ]);
    login
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = login.spawn().unwrap();
    use std::io::Write as _;
    writeln!(child.stdin.take().unwrap(), "harbour lights at dawn").unwrap();
    let run = ferry_tests::finish(child);
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stderr.contains("https://10.77.0.9:8443 did not answer"),
        "{}",
        run.stderr
    );
    let stored = std::fs::read_to_string(home.path().join("credentials.toml")).unwrap();
    assert!(stored.contains(&servers), "{stored}");

    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("reel.mov");
    write_random(&file, 64 * MIB, 24);
    // Capped so that the put lasts long enough to be cut.
    let mut put = c.spawn(&[
        "put",
        file.to_str().unwrap(),
        "share=media/in/",
        "--transport",
        "quic",
        "--rate",
        "40M",
        "--json",
    ]);
    let state = a.share.join("in/reel.mov.ferry-state");
    ferry_tests::wait_for("a checkpoint of the put", Duration::from_secs(60), || {
        state.exists()
    });
    assert!(
        put.try_wait().unwrap().is_none(),
        "the put was still running when cut"
    );
    // The uplink the put uses goes dark, both ways.
    uplink(&wan, RIGHT_IP, false);
    let run = ferry_tests::finish(put);
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stderr.contains("moving to https://10.77.0.3:8443"),
        "{}",
        run.stderr
    );
    let j = run.json();
    let skipped = j["bytes_skipped"].as_u64().unwrap();
    assert!(skipped > 0, "{j}");
    assert_eq!(
        blake3_file(&file),
        blake3_file(&a.share.join("in/reel.mov"))
    );
    assert!(!state.exists());

    // A new process starts where the last found an answer: no wait on
    // the dead addresses.
    let run = c.run(&["shares"]);
    assert!(run.ok, "{}", run.stderr);
    assert!(!run.stderr.contains("moving to"), "{}", run.stderr);

    // The recipient's agent: the uplink it uses goes dark mid-download
    // (the first is back by then); it resumes through the other.
    let director = a.user("director@client.example", "collaborator");
    let run = c.run(&[
        "send",
        "share=media/in/reel.mov",
        "--to",
        "director@client.example",
        "--name",
        "reel",
    ]);
    assert!(run.ok, "{}", run.stderr);
    uplink(&wan, RIGHT_IP, true);
    let agent = a.client(&director).in_netns(&wan.left).with(
        "FERRY_SERVER",
        &format!("https://{RIGHT_IP}:8443,https://{SECOND_IP}:8443"),
    );
    let pull = ferry_tests::CutPull::start(&agent, &["--transport", "quic"]);
    uplink(&wan, RIGHT_IP, false);
    let run = pull.finish_resumed(&file);
    assert!(
        run.stderr.contains("moving to https://10.77.0.3:8443"),
        "{}",
        run.stderr
    );
}

/// Takes the appliance's address `ip` down (every packet to or from it
/// dropped, as when an uplink or a node goes dark) or brings it back.
fn uplink(wan: &ferry_tests::wan::Wan, ip: &str, up: bool) {
    let table = format!("uplink_{}", ip.replace('.', "_"));
    if up {
        wan.net
            .exec("right", &["nft", &format!("delete table inet {table}")]);
        return;
    }
    for step in [
        format!("add table inet {table}"),
        format!("add chain inet {table} input {{ type filter hook input priority -10; }}"),
        format!("add rule inet {table} input ip daddr {ip} drop"),
        format!("add chain inet {table} output {{ type filter hook output priority -10; }}"),
        format!("add rule inet {table} output ip saddr {ip} drop"),
    ] {
        wan.net.exec("right", &["nft", &step]);
    }
}
