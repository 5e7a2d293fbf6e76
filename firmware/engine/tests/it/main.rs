//! Engine end to end over real QUIC on loopback: a sender and a receiver
//! with real files, pinning, resume after a cut, and priorities.

// A test fails by panicking; unwrap says where.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_engine::control::Control;
use ferry_engine::files::{Sink, plan_local};
use ferry_engine::handshake::{accept_hello, connect, welcome};
use ferry_engine::receive::{Receiving, receive};
use ferry_engine::send::{Sending, send};
use ferry_engine::tls::{Identity, PinnedCert};
use ferry_engine::transport::{Tuning, client_endpoint, server_config};
use ferry_engine::{EngineError, Outcome, Progress, StopSignal};
use ferry_proto::{ChunkLayout, Priority, SharePath};

struct Server {
    addr: SocketAddr,
    fingerprint: ferry_engine::tls::Fingerprint,
    done: tokio::sync::mpsc::UnboundedReceiver<Result<Outcome, EngineError>>,
}

/// A receiving server that accepts sessions into `dest`, any token.
fn server(dest: PathBuf) -> Server {
    let (id, _, _) = Identity::self_signed(&["localhost".into()]).unwrap();
    let fingerprint = id.fingerprint();
    let endpoint = quinn::Endpoint::server(
        server_config(&id, &Tuning::default()).unwrap(),
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
                let Ok(conn) = incoming.await else { return };
                let Ok((mut s, r, _token)) = accept_hello(&conn, Duration::from_secs(5)).await
                else {
                    return;
                };
                welcome(&mut s, n).await.unwrap();
                let sink = Sink::local(&dest).unwrap();
                let r = receive(&conn, Control::spawn(s, r), Receiving::new(sink)).await;
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
    let endpoint = client_endpoint(server.addr).unwrap();
    let pin = PinnedCert::new(server.fingerprint);
    let session = connect(
        &endpoint,
        server.addr,
        &pin,
        &Tuning::default(),
        [1; 32],
        Duration::from_secs(5),
    )
    .await?;
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
    let r = send(
        &session.connection,
        Control::spawn(session.send, session.recv),
        files,
        sending,
    )
    .await;
    endpoint.wait_idle().await;
    r
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
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("UDP port {}", addr.port())),
        "{err}"
    );
}
