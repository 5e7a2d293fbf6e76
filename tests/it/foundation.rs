//! Issue 2: the workspace's spine. Loopback end to end, resume after kills,
//! and bad input refused with nothing half-done.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use ferry_tests::relay::Relay;
use ferry_tests::{
    Appliance, assert_same_tree, blake3_file, finish, heavy_io, list_files, unique_loopback,
    write_random,
};

const MIB: u64 = 1 << 20;

#[test]
fn a_gib_and_a_frame_sequence_go_up_and_come_back_intact() {
    let _serial = heavy_io();
    let a = Appliance::start();
    let c = a.client(&a.media_user("ann@example.com"));
    let src = tempfile::tempdir().unwrap();
    let up = src.path().join("review");
    write_random(&up.join("shot010.mov"), 1024 * MIB, 1);
    for f in 1001..3001u64 {
        write_random(
            &up.join(format!("shot010/shot010.{f:04}.exr")),
            4096 + f * 7 % 60_000,
            f,
        );
    }
    let run = c.run(&["put", up.to_str().unwrap(), "share=media/", "--json"]);
    let j = run.json();
    assert_eq!(j["files"], 2001);
    assert_eq!(j["bytes_skipped"], 0);
    assert_eq!(j["bytes_transferred"], j["bytes_total"]);
    assert_same_tree(&up, &a.share.join("review"));

    let down = tempfile::tempdir().unwrap();
    let j = c
        .run(&[
            "get",
            "share=media/review",
            down.path().to_str().unwrap(),
            "--json",
        ])
        .json();
    assert_eq!(j["files"], 2001);
    assert_same_tree(&up, &down.path().join("review"));
    assert!(
        list_files(down.path())
            .iter()
            .all(|p| !p.to_string_lossy().contains(".ferry-")),
        "no working files left behind"
    );
}

/// An appliance reached through a paced relay, so a transfer lasts long
/// enough to be cut in the middle.
fn slow_appliance() -> (Appliance, Relay) {
    let relay_ip = unique_loopback();
    let a = Appliance::start_with(&[
        "--public-address",
        &relay_ip.to_string(),
        "--ports",
        "45190-45193",
    ]);
    let client_ip: IpAddr = "127.0.0.1".parse().unwrap();
    let relay = Relay::start(relay_ip, a.ip, client_ip, 45190..=45193, 40 * MIB);
    (a, relay)
}

fn wait_for_checkpoint(a: &Appliance, part_dir: &Path, name: &str) {
    let state = part_dir.join(format!("{name}.ferry-state"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !state.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no resume checkpoint of {name} after 60s; appliance log:\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_put_killed_mid_transfer_resumes_without_resending() {
    let _serial = heavy_io();
    let (a, _relay) = slow_appliance();
    let c = a.client(&a.media_user("ann@example.com"));
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("big.mov");
    write_random(&file, 200 * MIB, 7);
    let mut child = c.spawn(&["put", file.to_str().unwrap(), "share=media/in/", "--json"]);
    wait_for_checkpoint(&a, &a.share.join("in"), "big.mov");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the transfer was still running when killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !a.share.join("in/big.mov").exists(),
        "no half file under the final name"
    );
    assert!(a.share.join("in/big.mov.ferry-part").exists());

    let j = c
        .run(&["put", file.to_str().unwrap(), "share=media/in/", "--json"])
        .json();
    assert!(j["bytes_skipped"].as_u64().unwrap() > 0, "{j}");
    assert!(j["bytes_transferred"].as_u64().unwrap() < 200 * MIB);
    assert_eq!(blake3_file(&file), blake3_file(&a.share.join("in/big.mov")));
    assert!(!a.share.join("in/big.mov.ferry-part").exists());
    assert!(!a.share.join("in/big.mov.ferry-state").exists());
}

#[test]
fn a_put_cut_by_a_killed_daemon_resumes_after_restart() {
    let _serial = heavy_io();
    let (mut a, _relay) = slow_appliance();
    let c = a.client(&a.media_user("ann@example.com"));
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("big.mov");
    write_random(&file, 200 * MIB, 8);
    let mut child = c.spawn(&[
        "put",
        file.to_str().unwrap(),
        "share=media/in/",
        "--json",
        "--retries",
        "0",
    ]);
    wait_for_checkpoint(&a, &a.share.join("in"), "big.mov");
    a.kill();
    assert!(
        !a.share.join("in/big.mov").exists(),
        "no half file under the final name"
    );
    a.restart();
    // The old client would wait out its idle timeout; run again instead.
    child.kill().unwrap();
    child.wait().unwrap();
    let j = c
        .run(&["put", file.to_str().unwrap(), "share=media/in/", "--json"])
        .json();
    assert!(j["bytes_skipped"].as_u64().unwrap() > 0, "{j}");
    assert_eq!(blake3_file(&file), blake3_file(&a.share.join("in/big.mov")));
    // The job cut by the kill is recorded as failed, not left running.
    let jobs_db = a.data.join("ferry.db");
    assert!(jobs_db.exists());
}

#[test]
fn the_client_resumes_by_itself_across_a_graceful_restart() {
    let _serial = heavy_io();
    let (mut a, _relay) = slow_appliance();
    let c = a.client(&a.media_user("ann@example.com"));
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("big.mov");
    write_random(&file, 200 * MIB, 9);
    let child = c.spawn(&[
        "put",
        file.to_str().unwrap(),
        "share=media/in/",
        "--json",
        "--retries",
        "5",
    ]);
    wait_for_checkpoint(&a, &a.share.join("in"), "big.mov");
    a.terminate();
    a.restart();
    let run = finish(child);
    let j = run.json();
    assert!(j["bytes_skipped"].as_u64().unwrap() > 0, "{j}");
    assert_eq!(blake3_file(&file), blake3_file(&a.share.join("in/big.mov")));
}

#[test]
fn a_get_killed_mid_transfer_resumes_without_resending() {
    let _serial = heavy_io();
    let (a, _relay) = slow_appliance();
    let c = a.client(&a.media_user("ann@example.com"));
    write_random(&a.share.join("out/big.mov"), 200 * MIB, 10);
    let dl = tempfile::tempdir().unwrap();
    let mut child = c.spawn(&[
        "get",
        "share=media/out/big.mov",
        dl.path().to_str().unwrap(),
        "--json",
    ]);
    wait_for_checkpoint(&a, dl.path(), "big.mov");
    assert!(child.try_wait().unwrap().is_none());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dl.path().join("big.mov").exists());
    let j = c
        .run(&[
            "get",
            "share=media/out/big.mov",
            dl.path().to_str().unwrap(),
            "--json",
        ])
        .json();
    assert!(j["bytes_skipped"].as_u64().unwrap() > 0, "{j}");
    assert_eq!(
        blake3_file(&a.share.join("out/big.mov")),
        blake3_file(&dl.path().join("big.mov"))
    );
}

/// Everything beside the share, to prove nothing outside it was touched.
fn outside_snapshot(a: &Appliance) -> Vec<std::path::PathBuf> {
    list_files(a.dir.path())
        .into_iter()
        .filter(|p| {
            !p.starts_with("media")
                && !p.starts_with("data")
                && !p.starts_with("client-")
                && !p.ends_with("ferryd.log")
        })
        .collect()
}

#[test]
fn traversal_and_escapes_are_refused_and_touch_nothing() {
    let a = Appliance::start();
    let c = a.client(&a.media_user("ann@example.com"));
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("x.mov");
    write_random(&file, 1000, 1);
    // A folder outside the share, reachable through planted symlinks.
    let outside = a.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"secret").unwrap();
    std::os::unix::fs::symlink(&outside, a.share.join("escape")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), a.share.join("link")).unwrap();
    let before = outside_snapshot(&a);

    let cases: &[(&[&str], &str)] = &[
        (
            &["put", file.to_str().unwrap(), "share=media/../x/"],
            "'..'",
        ),
        (
            &["put", file.to_str().unwrap(), "share=media/a/../../x/"],
            "'..'",
        ),
        (
            &["put", file.to_str().unwrap(), "share=media//etc/"],
            "absolute",
        ),
        (
            &["put", file.to_str().unwrap(), "share=media/a\\..\\b/"],
            "backslash",
        ),
        (
            &["put", file.to_str().unwrap(), "share=media/C:/x/"],
            "drive letter",
        ),
        (
            &["put", file.to_str().unwrap(), "share=media/escape/"],
            "outside the share",
        ),
        (
            &["put", file.to_str().unwrap(), "share=media/escape/deeper/"],
            "outside the share",
        ),
        (
            &[
                "get",
                "share=media/../data/ferry.db",
                src.path().to_str().unwrap(),
            ],
            "'..'",
        ),
        (
            &[
                "get",
                "share=media/escape/secret",
                src.path().to_str().unwrap(),
            ],
            "outside the share",
        ),
        (
            &["get", "share=media/link", src.path().to_str().unwrap()],
            "outside the share",
        ),
    ];
    for (args, reason) in cases {
        let run = c.run(args);
        assert!(!run.ok, "{args:?} should fail");
        assert!(
            run.stderr.contains(reason),
            "{args:?}: expected {reason:?} in {:?}",
            run.stderr
        );
        assert_eq!(
            run.stderr.lines().count(),
            1,
            "one line of reason: {:?}",
            run.stderr
        );
    }
    // A folder that holds an escaping link is refused as a whole.
    let run = c.run(&["get", "share=media/", src.path().to_str().unwrap()]);
    assert!(
        !run.ok && run.stderr.contains("outside the share"),
        "{}",
        run.stderr
    );
    assert_eq!(
        outside_snapshot(&a),
        before,
        "nothing outside the share changed"
    );
    assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"secret");
    assert!(!src.path().join("secret").exists());
}

#[test]
fn unknown_shares_bad_keys_and_wrong_certificates_are_refused() {
    let a = Appliance::start();
    let key = a.media_user("ann@example.com");
    let c = a.client(&key);
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("x.mov");
    write_random(&file, 1000, 1);

    let run = c.run(&["put", file.to_str().unwrap(), "share=nope/"]);
    assert!(
        !run.ok && run.stderr.contains("no share named \"nope\""),
        "{}",
        run.stderr
    );

    let bad_key = format!("fk_{}", "0".repeat(64));
    let run =
        c.with("FERRY_API_KEY", &bad_key)
            .run(&["put", file.to_str().unwrap(), "share=media/"]);
    assert!(
        !run.ok && run.stderr.contains("API key is not valid"),
        "{}",
        run.stderr
    );

    let wrong = "ab".repeat(32);
    let run =
        c.with("FERRY_FINGERPRINT", &wrong)
            .run(&["put", file.to_str().unwrap(), "share=media/"]);
    assert!(
        !run.ok && run.stderr.contains("refusing to connect") && run.stderr.contains(&wrong),
        "{}",
        run.stderr
    );

    let run = c.with("FERRY_USER", "bob@example.com").run(&["shares"]);
    assert!(
        !run.ok && run.stderr.contains("another user"),
        "{}",
        run.stderr
    );

    // A user without access to the share is not told it exists.
    let other = a.client(&a.user("eve@example.com", "collaborator"));
    let run = other.run(&["get", "share=media/x.mov", src.path().to_str().unwrap()]);
    assert!(
        !run.ok && run.stderr.contains("no share named"),
        "{}",
        run.stderr
    );
    assert!(list_files(&a.share).is_empty(), "nothing was written");
}

pub(crate) mod wire {
    //! Bad input below the CLI: through the client library and the engine.
    //! The helpers serve tests/it/abuse.rs too.

    use std::time::Duration;

    use ferry_api::{SessionKind, SessionRequest};
    use ferry_client::{Api, Credentials};
    use ferry_engine::EngineError;
    use ferry_engine::handshake::connect;
    use ferry_engine::tls::PinnedCert;
    use ferry_engine::transport::{Tuning, client_endpoint};
    use ferry_proto::{ErrorCode, ProtoError};
    use ferry_tests::Appliance;

    pub(crate) fn api(a: &Appliance, key: &str) -> Api {
        Api::from_credentials(&Credentials {
            server: a.url.clone(),
            user: None,
            api_key: key.to_owned(),
            fingerprint: a.fingerprint.parse().unwrap(),
        })
        .unwrap()
    }

    pub(crate) fn token(hex: &str) -> [u8; 32] {
        let mut t = [0u8; 32];
        for (i, b) in t.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        t
    }

    pub(crate) async fn open(
        a: &Appliance,
        api: &Api,
    ) -> (ferry_api::SessionGrant, std::net::SocketAddr) {
        let grant = api
            .create_session(&SessionRequest {
                kind: SessionKind::Put,
                target: Some("share=media/in/".into()),
                job: None,
                resume_key: None,
            })
            .await
            .unwrap();
        let addr = format!("{}:{}", a.ip, grant.port).parse().unwrap();
        (grant, addr)
    }

    /// Greets the data port; the endpoint comes back too, because the
    /// connection lives only as long as it does.
    pub(crate) async fn hello(
        a: &Appliance,
        addr: std::net::SocketAddr,
        tok: [u8; 32],
    ) -> Result<(quinn::Endpoint, ferry_engine::handshake::Session), EngineError> {
        let endpoint = client_endpoint(addr).unwrap();
        let pin = PinnedCert::new(a.fingerprint.parse().unwrap());
        let s = connect(
            &endpoint,
            addr,
            &pin,
            &Tuning::default(),
            tok,
            Duration::from_secs(5),
            Default::default(),
        )
        .await?;
        Ok((endpoint, s))
    }

    fn peer_code(e: &EngineError) -> Option<ErrorCode> {
        match e {
            EngineError::Proto(ProtoError::Peer { code, .. }) => Some(*code),
            _ => None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reused_token_is_refused() {
        let a = Appliance::start();
        let api = api(&a, &a.media_user("ann@example.com"));
        let (grant, addr) = open(&a, &api).await;
        let _first = hello(&a, addr, token(&grant.token)).await.unwrap();
        let err = hello(&a, addr, token(&grant.token)).await.unwrap_err();
        assert_eq!(peer_code(&err), Some(ErrorCode::TokenReused), "{err}");
        assert!(err.to_string().contains("already used"), "{err}");
        let err = hello(&a, addr, [9; 32]).await.unwrap_err();
        assert_eq!(peer_code(&err), Some(ErrorCode::BadToken), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("ferryd.toml");
        std::fs::write(&config, "[transfer]\ntoken_ttl_secs = 1\n").unwrap();
        // One data port, held open by a live session, so the expired
        // token's greeting reaches the appliance.
        let a = Appliance::start_with(&[
            "--config",
            config.to_str().unwrap(),
            "--ports",
            "45190-45190",
        ]);
        let api = api(&a, &a.media_user("ann@example.com"));
        let (late, addr) = open(&a, &api).await;
        let (live, _) = open(&a, &api).await;
        let _keep = hello(&a, addr, token(&live.token)).await.unwrap();
        // Expiry is a matter of time passing: wait out the one-second life.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let err = hello(&a, addr, token(&late.token)).await.unwrap_err();
        assert_eq!(peer_code(&err), Some(ErrorCode::TokenExpired), "{err}");
        assert!(err.to_string().contains("expired unused"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nul_and_traversal_in_the_api_are_refused() {
        let a = Appliance::start();
        let api = api(&a, &a.media_user("ann@example.com"));
        for (target, code) in [
            ("share=media/a\u{0}b/", "invalid_path"),
            ("share=media/../../etc/", "invalid_path"),
            ("share=media/a\u{1b}b/", "invalid_path"),
            ("media/in/", "invalid_request"),
            ("share=../x/", "invalid_request"),
        ] {
            let err = api
                .create_session(&SessionRequest {
                    kind: SessionKind::Put,
                    target: Some(target.into()),
                    job: None,
                    resume_key: None,
                })
                .await
                .unwrap_err();
            assert_eq!(err.code(), Some(code), "{target:?}: {err}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_frame_over_the_cap_ends_the_session_and_nothing_else() {
        let a = Appliance::start();
        let api = api(&a, &a.media_user("ann@example.com"));
        let (grant, addr) = open(&a, &api).await;
        let (_endpoint, mut s) = hello(&a, addr, token(&grant.token)).await.unwrap();
        // A length prefix of 64 MiB, then a trickle of bytes.
        let huge = (64u32 << 20).to_be_bytes();
        crate::quic_send(&mut s.send)
            .write_all(&huge)
            .await
            .unwrap();
        let _ = crate::quic_send(&mut s.send).write_all(&[0u8; 1024]).await;
        // The appliance explains in an error frame, or in the reason it
        // closes the connection with, whichever arrives first.
        match s.recv.read_frame().await {
            Ok(Some(ferry_proto::Frame::Error { code, message })) => {
                assert_eq!(code, ErrorCode::Protocol);
                assert!(message.contains("exceeds"), "{message}");
            }
            Err(EngineError::Connection(quinn::ConnectionError::ApplicationClosed(close))) => {
                let reason = String::from_utf8_lossy(&close.reason);
                assert!(
                    reason.contains("exceeds the 1048576-byte limit"),
                    "{reason}"
                );
            }
            other => panic!("expected an explanation, got {other:?}"),
        }
        // The appliance is still there for others.
        api.health().await.unwrap();
        assert!(ferry_tests::list_files(&a.share).is_empty());
    }
}

#[test]
fn first_login_changes_the_one_time_password_and_remembers_the_appliance() {
    let a = Appliance::start();
    let otp = a
        .first_password()
        .expect("the first start prints a one-time password");
    let c = a.client("fk_00000000");
    // No credentials in the environment: only what `ferry login` stores.
    let bare = ferry_tests::Client {
        env: c
            .env
            .iter()
            .filter(|(k, _)| k == "FERRY_CONFIG" || k == "HOME")
            .cloned()
            .collect(),
        netns: None,
    };
    let run = bare.run(&["whoami"]);
    assert!(
        !run.ok && run.stderr.contains("not logged in"),
        "{}",
        run.stderr
    );

    // First contact without a fingerprint, and nobody at a terminal to confirm.
    let run = bare.run(&[
        "login",
        &a.url,
        "--email",
        "admin@localhost",
        "--password-stdin",
    ]);
    assert!(
        !run.ok && run.stderr.contains(&a.fingerprint),
        "{}",
        run.stderr
    );

    let run = log_in_once(&bare, &a, &otp);
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stderr.contains("password changed"), "{}", run.stderr);

    let run = bare.run(&["whoami"]);
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout.contains("admin@localhost (admin)"),
        "{}",
        run.stdout
    );
    let config = &bare
        .env
        .iter()
        .find(|(k, _)| k == "FERRY_CONFIG")
        .unwrap()
        .1;
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(config).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // The one-time password is spent.
    let mut again = bare.command(&[
        "login",
        &a.url,
        "--email",
        "admin@localhost",
        "--fingerprint",
        &a.fingerprint,
        "--password-stdin",
    ]);
    again
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = again.spawn().unwrap();
    use std::io::Write as _;
    writeln!(child.stdin.take().unwrap(), "{otp}").unwrap();
    let run = finish(child);
    assert!(
        !run.ok && run.stderr.contains("wrong email or password"),
        "{}",
        run.stderr
    );
}

/// More of the traversal corpus, through the client, the API and the QUIC
/// session: names are taken literally (no decoding, no normalisation), so
/// encoded dots and look-alikes stay inside the share; NUL, backslashes
/// (UNC) and over-long names are refused with a reason; a hard link
/// planted in the share is replaced, never written through; and a folder
/// swapped for a symlink to the outside, again and again during a put of
/// many files, never lets a byte out.
#[test]
fn literal_names_hard_links_and_swapped_folders_stay_inside_the_share() {
    let _serial = heavy_io();
    let a = Appliance::start();
    let c = a.client(&a.media_user("ann@example.com"));
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("x.mov");
    write_random(&file, 1000, 1);
    let outside = a.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"secret").unwrap();
    let before = outside_snapshot(&a);

    // Taken literally: these are names inside the share.
    for folder in [
        "%2e%2e",
        "%252e%252e",
        "\u{ff0e}\u{ff0e}",
        "..\u{2024}",
        "\u{2025}",
        "e\u{301}t\u{e9}",
    ] {
        let run = c.run(&[
            "put",
            file.to_str().unwrap(),
            &format!("share=media/{folder}/"),
        ]);
        assert!(run.ok, "{folder:?}: {}", run.stderr);
        assert!(
            a.share.join(folder).join("x.mov").is_file(),
            "{folder:?} is not a folder in the share"
        );
    }
    // Refused, with a reason.
    let long = "n".repeat(300);
    let refused: &[(&str, &str)] = &[
        ("share=media/\\\\server\\share\\x/", "backslash"),
        (&format!("share=media/{long}/"), "long"),
    ];
    for (dest, reason) in refused {
        let run = c.run(&["put", file.to_str().unwrap(), dest]);
        assert!(!run.ok, "{dest:?} should fail");
        assert!(
            run.stderr.to_lowercase().contains(reason),
            "{dest:?}: expected {reason:?} in {:?}",
            run.stderr
        );
    }

    // A hard link in the share to a file outside it: a put of that name
    // replaces the link; the outside file keeps its bytes.
    std::fs::create_dir_all(a.share.join("hl")).unwrap();
    std::fs::hard_link(outside.join("secret"), a.share.join("hl/x.mov")).unwrap();
    let run = c.run(&["put", file.to_str().unwrap(), "share=media/hl/"]);
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"secret");
    assert_eq!(blake3_file(&file), blake3_file(&a.share.join("hl/x.mov")));

    // A folder swapped for a symlink to the outside while a put of 300
    // files writes into it.
    let many = src.path().join("many");
    for i in 0..300u64 {
        write_random(&many.join(format!("f{i:03}.exr")), 64 * 1024, i);
    }
    let target = a.share.join("swap");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swaps = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let swapper = {
        let (target, outside) = (target.clone(), outside.clone());
        let (stop, swaps) = (stop.clone(), swaps.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::remove_dir_all(&target).or_else(|_| std::fs::remove_file(&target));
                let _ = std::os::unix::fs::symlink(&outside, &target);
                std::thread::yield_now();
                let _ = std::fs::remove_file(&target);
                let _ = std::fs::create_dir(&target);
                swaps.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    let count = || swaps.load(std::sync::atomic::Ordering::Relaxed);
    ferry_tests::wait_for("the folder swapping", Duration::from_secs(10), || {
        count() > 0
    });
    let swaps_before = count();
    let run = c.run(&[
        "put",
        many.to_str().unwrap(),
        "share=media/swap/",
        "--retries",
        "0",
    ]);
    // The swaps must have raced the put, not only come before or after
    // it (how many fit in depends on how soon the put gives up).
    let during = count() - swaps_before;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();
    assert!(during > 0, "the folder was not swapped while the put ran");
    // Whether the put failed or finished, nothing outside changed.
    let _ = run;
    assert_eq!(
        outside_snapshot(&a),
        before,
        "something outside the share changed"
    );
    assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"secret");
}

/// Logs in with a one-time password (changing it) and says whether that
/// worked.
fn first_login(a: &Appliance, password: &str) -> bool {
    let home = tempfile::tempdir().unwrap();
    let bare = ferry_tests::Client {
        env: vec![
            (
                "FERRY_CONFIG".into(),
                home.path().join("c.toml").display().to_string(),
            ),
            ("HOME".into(), home.path().display().to_string()),
        ],
        netns: None,
    };
    log_in_once(&bare, a, password).ok
}

/// `ferry login` as admin@localhost with a one-time password on stdin,
/// changing it to "a much better password".
fn log_in_once(bare: &ferry_tests::Client, a: &Appliance, password: &str) -> ferry_tests::Run {
    let mut login = bare.command(&[
        "login",
        &a.url,
        "--email",
        "admin@localhost",
        "--fingerprint",
        &a.fingerprint,
        "--password-stdin",
        "--new-password-stdin",
    ]);
    login
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = login.spawn().unwrap();
    use std::io::Write as _;
    writeln!(
        child.stdin.take().unwrap(),
        "{password}\na much better password"
    )
    .unwrap();
    finish(child)
}

/// An appliance whose console shows the first password (`--console`, the
/// image): the password goes to that file only, not to stdout or the log;
/// a restart before anyone logged in makes a new one (the old one stops
/// working), so a crash can never leave an admin nobody can log in as; once
/// changed, restarts show none.
#[test]
fn a_console_appliance_shows_a_fresh_one_time_password_until_it_is_changed() {
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console");
    let password_in = |path: &Path| -> Option<String> {
        std::fs::read_to_string(path)
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("password "))
            .map(str::to_owned)
    };
    let mut a = Appliance::start_with(&["--console", console.to_str().unwrap()]);
    let first = password_in(&console).expect("the console file holds the one-time password");
    assert!(!a.log().contains(&first), "the password reached the log");
    assert_ne!(
        a.first_password().as_deref(),
        Some(first.as_str()),
        "the password reached stdout"
    );

    a.restart();
    let second = password_in(&console).expect("a new one-time password after the restart");
    assert_ne!(first, second);
    assert!(
        !first_login(&a, &first),
        "the old one-time password still works"
    );
    assert!(
        first_login(&a, &second),
        "the new one-time password does not work"
    );

    a.restart();
    assert!(console.exists());
    assert_eq!(
        password_in(&console),
        None,
        "a password was shown after it had been changed"
    );
}
