//! Engine end to end over real QUIC on loopback: a sender and a receiver
//! with real files, pinning, resume after a cut, and priorities.

// A test fails by panicking; unwrap says where.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_engine::congestion::PaceHandle;
use ferry_engine::control::Control;
use ferry_engine::files::{Sink, plan_local};
use ferry_engine::handshake::{PaceRequest, accept_hello, connect, welcome};
use ferry_engine::receive::{Receiving, receive};
use ferry_engine::send::{Sending, send};
use ferry_engine::tls::{Identity, PinnedCert};
use ferry_engine::transport::{Tuning, client_endpoint, for_connection, server_config};
use ferry_engine::{EngineError, Outcome, Progress, StopSignal};
use ferry_proto::{ChunkLayout, Frame, Pace, Policy, Priority, Rate, SharePath};

struct Server {
    addr: SocketAddr,
    fingerprint: ferry_engine::tls::Fingerprint,
    done: tokio::sync::mpsc::UnboundedReceiver<Result<Outcome, EngineError>>,
}

/// A receiving server that accepts sessions into `dest`, any token.
fn server(dest: PathBuf) -> Server {
    let (id, _, _) = Identity::self_signed(&["localhost".into()]).unwrap();
    server_as(&id, dest)
}

/// [`server`] with the identity `id`; like the appliance, it reads a
/// greeting that comes with the first flight.
fn server_as(id: &Identity, dest: PathBuf) -> Server {
    let fingerprint = id.fingerprint();
    let endpoint = quinn::Endpoint::server(
        server_config(id, &Tuning::default()).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let (tx, done) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut n = 0;
        while let Some(incoming) = endpoint.accept().await {
            n += 1;
            let (dest, tx) = (dest.clone(), tx.clone());
            tokio::spawn(async move {
                let Ok(connecting) = incoming.accept() else {
                    return;
                };
                let Ok((conn, _)) = connecting.into_0rtt() else {
                    return;
                };
                let Ok(g) = accept_hello(&conn, Duration::from_secs(5)).await else {
                    return;
                };
                let (mut s, r) = (g.send, g.recv);
                welcome(&mut s, n, Pace::default()).await.unwrap();
                let sink = Sink::local(&dest).unwrap();
                let r = receive(&g.link, Control::spawn(s, r), Receiving::new(sink)).await;
                let _ = tx.send(r);
            });
        }
    });
    Server {
        addr,
        fingerprint,
        done,
    }
}

async fn put(
    server: &Server,
    paths: &[PathBuf],
    stop: StopSignal,
    progress: Arc<Progress>,
) -> Result<Outcome, EngineError> {
    let pin = PinnedCert::new(server.fingerprint);
    put_with(server, &pin, paths, stop, progress)
        .await
        .map(|(outcome, _)| outcome)
}

/// [`put`] with a pin the caller keeps (and with it the appliance's
/// tickets); also says whether the greeting rode the first flight.
async fn put_with(
    server: &Server,
    pin: &Arc<PinnedCert>,
    paths: &[PathBuf],
    stop: StopSignal,
    progress: Arc<Progress>,
) -> Result<(Outcome, bool), EngineError> {
    let endpoint = client_endpoint(server.addr).unwrap();
    let session = connect(
        &endpoint,
        server.addr,
        pin,
        &Tuning::default(),
        [1; 32],
        Duration::from_secs(5),
        Default::default(),
    )
    .await?;
    let early = session.early;
    let prio = |p: &SharePath| {
        if p.as_str().ends_with(".mp4") {
            Priority::HIGH
        } else {
            Priority::DEFAULT
        }
    };
    let files = plan_local(paths, &prio)?;
    let mut sending = Sending::new(ChunkLayout::new(1 << 20).unwrap());
    sending.progress = progress;
    sending.stop = stop;
    let (conn, control) = session.into_control(&Tuning::default());
    let r = send(&conn, control, files, sending).await;
    endpoint.wait_idle().await;
    r.map(|outcome| (outcome, early))
}

fn write_random(path: &Path, len: usize, seed: u64) {
    let mut x = seed | 1;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

fn same_tree(a: &Path, b: &Path) {
    for entry in std::fs::read_dir(a).unwrap() {
        let entry = entry.unwrap();
        let other = b.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            same_tree(&entry.path(), &other);
        } else {
            assert_eq!(
                std::fs::read(entry.path()).unwrap(),
                std::fs::read(&other).unwrap_or_default(),
                "{}",
                other.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_folders_arrive_intact() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    write_random(&src.path().join("big.mov"), 5_000_000, 1);
    write_random(&src.path().join("proxy.mp4"), 300_000, 2);
    for i in 0..200 {
        write_random(
            &src.path().join(format!("seq/f.{i:04}.exr")),
            10_000 + i,
            3 + i as u64,
        );
    }
    std::fs::write(src.path().join("seq/empty"), b"").unwrap();
    let mut server = server(dst.path().to_path_buf());
    let paths = vec![
        src.path().join("big.mov"),
        src.path().join("proxy.mp4"),
        src.path().join("seq"),
    ];
    let out = put(&server, &paths, StopSignal::new(), Arc::default())
        .await
        .unwrap();
    assert_eq!(out.files, 203);
    assert_eq!(out.bytes_skipped, 0);
    assert_eq!(out.bytes_transferred, out.bytes_total);
    server.done.recv().await.unwrap().unwrap();
    same_tree(src.path(), dst.path());

    // Again: everything is in place, nothing travels.
    let out = put(&server, &paths, StopSignal::new(), Arc::default())
        .await
        .unwrap();
    assert_eq!(out.bytes_transferred, 0);
    assert_eq!(out.bytes_skipped, out.bytes_total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_transfer_resumes_without_resending() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    write_random(&src.path().join("big.mov"), 40_000_000, 9);
    let mut server = server(dst.path().to_path_buf());
    let paths = vec![src.path().join("big.mov")];
    let stop = StopSignal::new();
    let progress = Arc::new(Progress::default());
    let watcher = {
        let (stop, progress) = (stop.clone(), progress.clone());
        tokio::spawn(async move {
            while progress.snapshot().bytes_transferred < 15_000_000 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            stop.stop(ferry_proto::ErrorCode::Aborted, "test stop");
        })
    };
    let err = put(&server, &paths, stop, progress).await.unwrap_err();
    assert!(matches!(err, EngineError::Stopped { .. }), "{err}");
    watcher.await.unwrap();
    let r = server.done.recv().await.unwrap();
    assert!(r.is_err());
    assert!(
        !dst.path().join("big.mov").exists(),
        "no half file under the final name"
    );
    assert!(dst.path().join("big.mov.ferry-part").exists());

    let out = put(&server, &paths, StopSignal::new(), Arc::default())
        .await
        .unwrap();
    assert!(out.bytes_skipped > 0, "{out:?}");
    assert!(out.bytes_transferred < 40_000_000);
    server.done.recv().await.unwrap().unwrap();
    same_tree(src.path(), dst.path());
    assert!(!dst.path().join("big.mov.ferry-part").exists());
}

/// A client's second session with the same appliance resumes TLS and
/// greets in its first flight (0-RTT); an appliance that has lost the
/// ticket (restarted) refuses the early data, and the client greets again
/// once the handshake is done. Every file arrives whole each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_client_greets_in_its_first_flight() {
    let (id, _, _) = Identity::self_signed(&["localhost".into()]).unwrap();
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("reel.mov");
    write_random(&file, 300_000, 9);
    let pin = PinnedCert::new(id.fingerprint());
    let mut servers = [
        server_as(&id, tempfile::tempdir().unwrap().keep()),
        server_as(&id, tempfile::tempdir().unwrap().keep()),
    ];
    let mut early = Vec::new();
    for n in [0, 0, 1] {
        let server = &mut servers[n];
        let (_, e) = put_with(
            server,
            &pin,
            std::slice::from_ref(&file),
            StopSignal::new(),
            Arc::default(),
        )
        .await
        .unwrap();
        server.done.recv().await.unwrap().unwrap();
        early.push(e);
    }
    assert_eq!(
        early,
        [false, true, false],
        "no ticket yet; resumed; the ticket is unknown to a restarted appliance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_is_refused_with_both_fingerprints() {
    let dst = tempfile::tempdir().unwrap();
    let server = server(dst.path().to_path_buf());
    let endpoint = client_endpoint(server.addr).unwrap();
    let wrong = ferry_engine::tls::Fingerprint([7; 32]);
    let err = connect(
        &endpoint,
        server.addr,
        &PinnedCert::new(wrong),
        &Tuning::default(),
        [0; 32],
        Duration::from_secs(5),
        Default::default(),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&wrong.to_string()) && text.contains(&server.fingerprint.to_string()),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_port_says_so() {
    // Bind a UDP socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let endpoint = client_endpoint(addr).unwrap();
    let err = connect(
        &endpoint,
        addr,
        &PinnedCert::new(ferry_engine::tls::Fingerprint([0; 32])),
        &Tuning::default(),
        [0; 32],
        Duration::from_millis(700),
        Default::default(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("UDP port {}", addr.port())),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_appliance_decides_the_pace_and_can_change_it() {
    let (id, _, _) = Identity::self_signed(&["localhost".into()]).unwrap();
    let fingerprint = id.fingerprint();
    let tuning = Tuning::default();
    let base = server_config(&id, &tuning).unwrap();
    let endpoint = quinn::Endpoint::server(base.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let mbit = |n| Some(Rate::from_mbit(n).unwrap());
    let (asked_tx, mut asked) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        let incoming = endpoint.accept().await.unwrap();
        let handle = PaceHandle::new(Pace::default());
        let conn = incoming
            .accept_with(for_connection(&base, &tuning, &handle))
            .unwrap()
            .await
            .unwrap();
        let mut g = accept_hello(&conn, Duration::from_secs(5)).await.unwrap();
        asked_tx.send(g.request).unwrap();
        // The client asked for 80 Mbit/s; the site caps at 50.
        let granted = Pace {
            policy: Policy::Fixed,
            target: mbit(80),
        }
        .capped(mbit(50));
        handle.set(granted);
        welcome(&mut g.send, 7, granted).await.unwrap();
        let control = Control::spawn(g.send, g.recv);
        control.send(Frame::Pace(Pace {
            policy: Policy::Fair,
            target: mbit(20),
        }));
        // Hold the connection until the client has seen the change.
        conn.closed().await;
        (endpoint, handle.get())
    });
    let client = client_endpoint(addr).unwrap();
    let session = connect(
        &client,
        addr,
        &PinnedCert::new(fingerprint),
        &Tuning::default(),
        [3; 32],
        Duration::from_secs(5),
        PaceRequest {
            policy: Some(Policy::Fixed),
            rate: mbit(80),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        asked.recv().await.unwrap(),
        PaceRequest {
            policy: Some(Policy::Fixed),
            rate: mbit(80)
        }
    );
    assert_eq!(
        session.pace.get(),
        Pace {
            policy: Policy::Fixed,
            target: mbit(50)
        }
    );
    let handle = session.pace.clone();
    let (conn, _control) = session.into_control(&Tuning::default());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while handle.get().target != mbit(20) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new pace never came"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(handle.get().policy, Policy::Fair);
    conn.close(0, b"done");
    let (_endpoint, server_pace) = server.await.unwrap();
    assert_eq!(server_pace.target, mbit(50));
}
