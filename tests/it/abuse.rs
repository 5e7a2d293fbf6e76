//! Protocol abuse through the real ports of a real ferryd: plans that claim
//! a petabyte or ten million files, chunks that are not the session's own,
//! stream floods, a data connection that never greets, and a slowloris on
//! the control port. Each is refused, the appliance keeps serving others,
//! and its memory stays bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_engine::EngineError;
use ferry_engine::congestion::PaceHandle;
use ferry_engine::handshake::Session;
use ferry_engine::tls::PinnedCert;
use ferry_engine::transport::{Tuning, client_config, client_endpoint};
use ferry_proto::frame::HaveState;
use ferry_proto::{
    ChunkHeader, ChunkRef, Digest, ErrorCode, FileId, Frame, PlanFile, Priority, SharePath,
};
use ferry_tests::{Appliance, record_scenario, rss_peak_and_fds};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::foundation::wire::{api, hello, open, token};

const MIB: u64 = 1 << 20;
/// The most ferryd's peak memory may grow under one abuse run. A plan of
/// 10^15 bytes kept in full would need gigabytes of bitmaps and digests.
const MEMORY_BOUND: u64 = 96 * MIB;

/// How the appliance ended the session: its error frame, or the code and
/// reason it closed the connection with, whichever comes first.
async fn refusal(s: &mut Session) -> (ErrorCode, String) {
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match s.recv.read_frame().await {
                Ok(Some(Frame::Error { code, message })) => return Some((code, message)),
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(EngineError::Connection(quinn::ConnectionError::ApplicationClosed(c))) => {
                    return ErrorCode::from_close_code(c.error_code.into_inner())
                        .map(|code| (code, String::from_utf8_lossy(&c.reason).into_owned()));
                }
                Err(e) => panic!("the session ended without an explanation: {e}"),
            }
        }
        None
    })
    .await
    .expect("the appliance answered the abuse within 20 s");
    ended.expect("the appliance explained why it ended the session")
}

/// ferryd's peak memory now, checked against its peak before the abuse:
/// (growth, peak), in bytes.
fn memory_bounded(pid: u32, before: u64) -> (u64, u64) {
    let (after, _) = rss_peak_and_fds(pid);
    let grew = after.saturating_sub(before);
    assert!(
        grew < MEMORY_BOUND,
        "ferryd's peak memory grew by {} MiB",
        grew / MIB
    );
    (grew, after)
}

fn plan_file(id: u32, path: &str, size: u64) -> PlanFile {
    PlanFile {
        id: FileId(id),
        path: SharePath::parse(path).unwrap(),
        size,
        mtime_ns: 0,
        priority: Priority::DEFAULT,
    }
}

async fn send_all(s: &mut Session, frames: &[Frame]) {
    for f in frames {
        // The appliance may hang up part-way; what it said is read after.
        if s.send.write_frame(f).await.is_err() {
            break;
        }
    }
}

/// Plans that claim more than any disk holds are refused as soon as they
/// say so, before the appliance keeps anything for their files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_claiming_a_petabyte_or_ten_million_files_are_refused() {
    let a = Appliance::start();
    let api = api(&a, &a.media_user("ann@example.com"));
    let pid = a.pid().unwrap();
    api.health().await.unwrap();
    let (rss_before, _) = rss_peak_and_fds(pid);
    const PETABYTE: u64 = 1_000_000_000_000_000;
    let small_chunks = 64 * 1024;
    // 10,000 files of 10^11 bytes: 10^15 in all, each within the per-file
    // chunk limit at 64 KiB chunks, announced as an open plan.
    let many_big: Vec<PlanFile> = (0..10_000)
        .map(|i| plan_file(i, &format!("big/{i:05}.exr"), PETABYTE / 10_000))
        .collect();
    let cases: Vec<(&str, Vec<Frame>, ErrorCode, &str)> = vec![
        (
            "ten million files announced",
            vec![Frame::PlanStart {
                chunk_size: small_chunks,
                files: Some(10_000_000),
                bytes: Some(10_000_000),
            }],
            ErrorCode::TooLarge,
            "10000000 files",
        ),
        (
            "a petabyte announced",
            vec![Frame::PlanStart {
                chunk_size: small_chunks,
                files: Some(1),
                bytes: Some(PETABYTE),
            }],
            ErrorCode::TooLarge,
            "destination filesystem is only",
        ),
        (
            "one file of a petabyte",
            vec![
                Frame::PlanStart {
                    chunk_size: small_chunks,
                    files: None,
                    bytes: None,
                },
                Frame::PlanFiles {
                    files: vec![plan_file(0, "huge.mov", PETABYTE)],
                },
            ],
            ErrorCode::TooLarge,
            "chunks",
        ),
        (
            "an open plan adding up to a petabyte",
            vec![
                Frame::PlanStart {
                    chunk_size: small_chunks,
                    files: None,
                    bytes: None,
                },
                Frame::PlanFiles { files: many_big },
            ],
            ErrorCode::TooLarge,
            "destination filesystem is only",
        ),
    ];
    for (what, frames, code, says) in cases {
        let (grant, addr) = open(&a, &api).await;
        let (_endpoint, mut s) = hello(&a, addr, token(&grant.token)).await.unwrap();
        send_all(&mut s, &frames).await;
        let (got, message) = refusal(&mut s).await;
        assert_eq!(got, code, "{what}: {message}");
        assert!(message.contains(says), "{what}: {message}");
    }
    let (grew, rss_after) = memory_bounded(pid, rss_before);
    api.health().await.unwrap();
    assert!(ferry_tests::list_files(&a.share).is_empty());
    record_scenario(
        "abuse-plans",
        serde_json::json!({
            "scenario": "hostile plans over a real QUIC session",
            "injected": "plans announcing 10^7 files, 10^15 bytes, one file of 10^15 bytes, and an open plan of 10,000 files adding up to 10^15 bytes",
            "checked": "each refused with TooLarge and a message saying why; nothing written; ferryd still serving",
            "faults_survived": 4,
            "bytes_compared": 0,
            "ferryd_peak_rss_growth_mib": (grew as f64 / MIB as f64 * 10.0).round() / 10.0,
            "ferryd_peak_rss_mib": (rss_after as f64 / MIB as f64 * 10.0).round() / 10.0,
        }),
    );
}

/// A raw uploading session of the test's own: it plans, waits for the
/// appliance's answer, and sends chunks when told to.
struct Upload {
    _endpoint: quinn::Endpoint,
    s: Session,
}

const CHUNK: u32 = 64 * 1024;

impl Upload {
    async fn plan(a: &Appliance, api: &ferry_client::Api, files: &[(&str, u64)]) -> Self {
        let (grant, addr) = open(a, api).await;
        let (endpoint, mut s) = hello(a, addr, token(&grant.token)).await.unwrap();
        let planned: Vec<PlanFile> = files
            .iter()
            .enumerate()
            .map(|(i, (p, n))| plan_file(i as u32, p, *n))
            .collect();
        send_all(
            &mut s,
            &[
                Frame::PlanStart {
                    chunk_size: CHUNK,
                    files: Some(files.len() as u64),
                    bytes: Some(files.iter().map(|f| f.1).sum()),
                },
                Frame::PlanFiles { files: planned },
                Frame::PlanEnd,
            ],
        )
        .await;
        let mut answered = 0;
        while answered < files.len() {
            match s.recv.read_frame().await.unwrap() {
                Some(Frame::Have { files }) => {
                    assert!(files.iter().all(|(_, h)| *h == HaveState::Nothing));
                    answered += files.len();
                }
                Some(_) => {}
                None => panic!("the appliance ended the session before answering the plan"),
            }
        }
        Upload {
            _endpoint: endpoint,
            s,
        }
    }

    /// One chunk stream: header, bytes, the BLAKE3 of the bytes.
    async fn chunk(&self, file: u32, index: u32, bytes: &[u8]) {
        let mut stream = self.s.link.quic().unwrap().open_uni().await.unwrap();
        let header = ChunkHeader {
            chunk: ChunkRef {
                file: FileId(file),
                index,
            },
            len: bytes.len() as u32,
        };
        // The appliance may stop the stream as soon as it reads the header.
        let _ = stream.write_all(&header.encode()).await;
        let _ = stream.write_all(bytes).await;
        let _ = stream.write_all(&Digest::from(blake3::hash(bytes)).0).await;
        let _ = stream.finish();
    }
}

/// File ids belong to their session: a chunk naming a file the session
/// did not plan — another session's — or a place past a file's end, or
/// with the wrong length, ends only the session that sent it. The session
/// writing the file finishes it intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_that_are_not_the_sessions_own_are_refused() {
    let a = Appliance::start();
    let api = api(&a, &a.media_user("ann@example.com"));
    let content: Vec<u8> = (0..2 * CHUNK).map(|i| (i % 251) as u8).collect();
    let (first, second) = content.split_at(CHUNK as usize);
    let owner = Upload::plan(&a, &api, &[("a.mov", content.len() as u64)]).await;
    owner.chunk(0, 0, first).await;

    // A session that planned nothing names file 0, the owner's id.
    let (grant, addr) = open(&a, &api).await;
    let (_e, mut s) = hello(&a, addr, token(&grant.token)).await.unwrap();
    send_all(
        &mut s,
        &[Frame::PlanStart {
            chunk_size: CHUNK,
            files: None,
            bytes: None,
        }],
    )
    .await;
    let stranger = Upload { _endpoint: _e, s };
    stranger.chunk(0, 1, second).await;
    let mut stranger = stranger;
    let (code, message) = refusal(&mut stranger.s).await;
    assert_eq!(code, ErrorCode::Protocol, "{message}");
    // The chunk's stream and the plan's frame race each other: either
    // way the stranger's session ends and the owner's file is untouched.
    assert!(
        message.contains("chunk for unknown file #0") || message.contains("chunk before plan"),
        "{message}"
    );

    let cases: [(&str, u32, u32, usize, &str); 3] = [
        (
            "a file it did not plan",
            1,
            0,
            CHUNK as usize,
            "unknown file #1",
        ),
        (
            "past the end of its file",
            0,
            7,
            CHUNK as usize,
            "past the end",
        ),
        ("the wrong length", 0, 0, 10, "expected 65536"),
    ];
    for (what, file, index, len, says) in cases {
        let mut abuser = Upload::plan(&a, &api, &[("b.mov", u64::from(CHUNK))]).await;
        abuser.chunk(file, index, &vec![0xee; len]).await;
        let (code, message) = refusal(&mut abuser.s).await;
        assert_eq!(code, ErrorCode::Protocol, "{what}: {message}");
        assert!(message.contains(says), "{what}: {message}");
    }

    // The owner finishes; its file is exactly what it sent.
    let mut owner = owner;
    owner.chunk(0, 1, second).await;
    loop {
        match owner.s.recv.read_frame().await.unwrap() {
            Some(Frame::FileDone {
                file: FileId(0), ..
            }) => break,
            Some(Frame::Error { message, .. }) => panic!("the owner's session failed: {message}"),
            Some(_) => {}
            None => panic!("the owner's session ended early"),
        }
    }
    owner.s.send.write_frame(&Frame::Bye).await.unwrap();
    let landed = a.share.join("in/a.mov");
    ferry_tests::wait_for(
        "a.mov under its final name",
        Duration::from_secs(20),
        || std::fs::read(&landed).is_ok_and(|b| b == content),
    );
    let files: Vec<String> = ferry_tests::list_files(&a.share)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(
        files,
        ["in/a.mov"],
        "only the owner's file, and no part file"
    );
    record_scenario(
        "abuse-chunks",
        serde_json::json!({
            "scenario": "chunks that are not the session's own",
            "injected": "chunk streams naming another session's file id (from a session without a plan and one with another file), past a file's end, and of the wrong length, while the owning session is mid-file",
            "checked": "each ends only the abusing session with a protocol error; the owning session's file lands byte-identical, with no other file or part file in the share",
            "faults_survived": 4,
            "bytes_compared": content.len(),
        }),
    );
}

/// A client that opens streams as fast as it can gets the 256 the
/// appliance grants and no more; a second control stream is never
/// granted; a connection that never greets is closed; others are served
/// meanwhile, and ferryd's memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_floods_and_silent_connections_are_held_to_their_limits() {
    let a = Appliance::start();
    let key = a.media_user("ann@example.com");
    let api = api(&a, &key);
    let pid = a.pid().unwrap();
    api.health().await.unwrap();
    let (rss_before, fds_before) = rss_peak_and_fds(pid);

    // A connection with a live lease that never says hello.
    let (_grant, addr) = open(&a, &api).await;
    let silent = tokio::spawn(silent_connection(a.fingerprint.clone(), addr));

    let flood = Upload::plan(&a, &api, &[("f.mov", u64::from(CHUNK))]).await;
    let limit = Tuning::default().max_uni_streams as usize;
    let mut opened = Vec::new();
    let flood_started = Instant::now();
    // Half a chunk header on each: the appliance waits for the rest.
    while let Ok(Ok(mut stream)) = tokio::time::timeout(
        Duration::from_secs(2),
        flood.s.link.quic().unwrap().open_uni(),
    )
    .await
    {
        stream
            .write_all(&[0x46, 0x52, 0x59, 0x43, 0, 0, 0, 0])
            .await
            .unwrap();
        opened.push(stream);
        assert!(opened.len() <= limit, "more streams than granted");
    }
    assert_eq!(opened.len(), limit, "the grant is used up, then no more");
    let second_control = tokio::time::timeout(
        Duration::from_secs(2),
        flood.s.link.quic().unwrap().open_bi(),
    )
    .await;
    assert!(
        second_control.is_err(),
        "a second control stream was granted"
    );

    // Others are served while the flood holds its streams.
    let other = a.client(&a.media_user("bob@example.com"));
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("other.mov");
    ferry_tests::write_random(&file, 4 * MIB, 7);
    let run = tokio::task::spawn_blocking(move || {
        other.run(&["put", file.to_str().unwrap(), "share=media/other/"])
    })
    .await
    .unwrap();
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(
        ferry_tests::blake3_file(&a.share.join("other/other.mov")),
        ferry_tests::blake3_file(&src.path().join("other.mov"))
    );

    // Garbage on every stream the flood holds ends its session at once.
    for s in &mut opened {
        let _ = s.write_all(&[0xff; 8]).await;
    }
    let mut flood = flood;
    let (code, message) = refusal(&mut flood.s).await;
    assert_eq!(code, ErrorCode::Protocol, "{message}");
    let flood_secs = flood_started.elapsed().as_secs_f64();

    let silent_secs = silent.await.unwrap();
    assert!(
        silent_secs < 20.0,
        "the silent connection was held {silent_secs:.1} s"
    );
    drop(opened);
    drop(flood);
    let (grew, rss_after) = memory_bounded(pid, rss_before);
    ferry_tests::wait_for(
        "ferryd's descriptors back near where they were",
        Duration::from_secs(30),
        || rss_peak_and_fds(pid).1 <= fds_before + 4,
    );
    record_scenario(
        "abuse-streams",
        serde_json::json!({
            "scenario": "stream floods and a data connection that never greets",
            "injected": "a session opening streams as fast as it can, each stalled half-way through a chunk header, then asking for a second control stream; a data connection that never says hello",
            "checked": "exactly the granted streams open and no second control stream; another user's 4 MiB put completes byte-identical meanwhile; garbage on the held streams ends the session with a protocol error; the silent connection is closed; descriptors return; memory bounded",
            "faults_survived": 3,
            "bytes_compared": 4 * MIB,
            "streams_granted": limit,
            "seconds_silent_connection_held": (silent_secs * 10.0).round() / 10.0,
            "seconds_flood_held": (flood_secs * 10.0).round() / 10.0,
            "ferryd_peak_rss_growth_mib": (grew as f64 / MIB as f64 * 10.0).round() / 10.0,
            "ferryd_peak_rss_mib": (rss_after as f64 / MIB as f64 * 10.0).round() / 10.0,
        }),
    );
}

/// Connects to the data port and says nothing; returns how long the
/// appliance took to close the connection.
async fn silent_connection(fingerprint: String, addr: SocketAddr) -> f64 {
    let endpoint = client_endpoint(addr).unwrap();
    let pin = PinnedCert::new(fingerprint.parse().unwrap());
    let config = client_config(
        &pin,
        &Tuning::default(),
        &PaceHandle::new(Default::default()),
    );
    let conn = endpoint
        .connect_with(config, addr, "ferry")
        .unwrap()
        .await
        .unwrap();
    let started = Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(60), conn.closed()).await;
    started.elapsed().as_secs_f64()
}

/// One slowloris connection: after its opening (half a TLS record, or a
/// whole handshake and half a request head) it trickles one byte a second.
/// Returns how long the appliance let it live — an error at any step means
/// the appliance cut it — or `None` if it was still alive after 60 s.
async fn slow_connection(
    from: std::net::IpAddr,
    to: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Option<f64> {
    let started = Instant::now();
    let cut = || Some(started.elapsed().as_secs_f64());
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    socket
        .bind(SocketAddr::new(from, 0))
        .expect("bind to the test's own loopback address");
    let Ok(tcp) = socket.connect(to).await else {
        return cut();
    };
    let mut stream: Box<dyn Trickle> = match tls {
        // A TLS record header announcing a ClientHello that never comes.
        None => {
            let mut tcp = tcp;
            if tcp
                .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
                .await
                .is_err()
            {
                return cut();
            }
            Box::new(tcp)
        }
        // A finished handshake, then a request head that never ends.
        Some(config) => {
            let name = rustls_pki_types::ServerName::try_from("ferry").unwrap();
            let Ok(mut tls) = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
            else {
                return cut();
            };
            if tls
                .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: ferry\r\n")
                .await
                .is_err()
            {
                return cut();
            }
            Box::new(tls)
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut buf = [0u8; 64];
    loop {
        tokio::select! {
            r = stream.read(&mut buf) => match r {
                Ok(0) | Err(_) => return cut(),
                Ok(_) => {}
            },
            _ = tick.tick() => {
                if stream.write_all(b"X").await.is_err() {
                    return cut();
                }
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            return None;
        }
    }
}

trait Trickle: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Trickle for T {}

/// Hundreds of connections that trickle a TLS handshake or a request head
/// one byte a second: one address holds at most 256 (the rest are closed
/// at once), every one is cut at the 10 s deadline, others are served
/// throughout, and ferryd's descriptors and memory come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_on_the_control_port_is_cut_off_while_others_are_served() {
    const HANDSHAKES: usize = 320;
    const HEADS: usize = 60;
    let a = Appliance::start();
    let api = api(&a, &a.media_user("ann@example.com"));
    let pid = a.pid().unwrap();
    api.health().await.unwrap();
    let (rss_before, fds_before) = rss_peak_and_fds(pid);
    let to = SocketAddr::new(a.ip, a.port());
    let (one, two) = (
        ferry_tests::unique_loopback(),
        ferry_tests::unique_loopback(),
    );
    let pin = PinnedCert::new(a.fingerprint.parse().unwrap());
    let tls = Arc::new(pin.client_config(&[b"http/1.1"], false));
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..HANDSHAKES {
        slow.spawn(slow_connection(one, to, None));
    }
    for _ in 0..HEADS {
        slow.spawn(slow_connection(two, to, Some(tls.clone())));
    }
    // Served meanwhile, within a few seconds each.
    let mut served = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), api.health())
            .await
            .expect("the API answered during the slowloris")
            .unwrap();
        served.push(t.elapsed().as_secs_f64());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut lived = Vec::new();
    while let Some(r) = slow.join_next().await {
        lived.push(
            r.unwrap()
                .expect("the appliance cut the connection within 60 s"),
        );
    }
    let cut_at_once = lived.iter().filter(|s| **s < 2.0).count();
    let longest = lived.iter().copied().fold(0.0, f64::max);
    assert!(
        cut_at_once >= HANDSHAKES - 256,
        "only {cut_at_once} connections over the per-address limit were cut at once"
    );
    assert!(longest < 15.0, "a slow connection lived {longest:.1} s");
    ferry_tests::wait_for(
        "ferryd's descriptors back near where they were",
        Duration::from_secs(30),
        || rss_peak_and_fds(pid).1 <= fds_before + 4,
    );
    let (grew, rss_after) = memory_bounded(pid, rss_before);
    api.health().await.unwrap();
    let slowest_served = served.iter().copied().fold(0.0, f64::max);
    record_scenario(
        "abuse-slowloris",
        serde_json::json!({
            "scenario": "a slowloris on the control port",
            "injected": format!("{HANDSHAKES} connections from one address trickling a TLS handshake and {HEADS} from another trickling an HTTP request head, one byte a second"),
            "checked": "connections over 256 per address closed at once; every slow connection cut by the 10 s deadlines; the API answered throughout; descriptors return; memory bounded",
            "faults_survived": HANDSHAKES + HEADS,
            "bytes_compared": 0,
            "connections_cut_at_once": cut_at_once,
            "seconds_longest_slow_connection_lived": (longest * 10.0).round() / 10.0,
            "seconds_slowest_api_answer_meanwhile": (slowest_served * 100.0).round() / 100.0,
            "ferryd_peak_rss_growth_mib": (grew as f64 / MIB as f64 * 10.0).round() / 10.0,
            "ferryd_peak_rss_mib": (rss_after as f64 / MIB as f64 * 10.0).round() / 10.0,
        }),
    );
}

/// Overlong UTF-8 (`C0 AE` for a dot) is not UTF-8: the API's JSON body,
/// its query and path, and a plan's file name over QUIC each refuse it
/// with a clear error instead of decoding it into `..`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_utf8_is_refused_by_the_api_and_the_data_port() {
    let a = Appliance::start();
    let key = a.media_user("ann@example.com");
    let api = api(&a, &key);
    let pin = PinnedCert::new(a.fingerprint.parse().unwrap());
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(pin.client_config(&[b"http/1.1"], false))
        .build()
        .unwrap();
    let auth = format!("Bearer {key}");

    let mut body = br#"{"kind":"put","target":"share=media/"#.to_vec();
    body.extend_from_slice(&[0xc0, 0xae, 0xc0, 0xae]);
    body.extend_from_slice(br#"/x"}"#);
    let resp = http
        .post(format!("{}/api/v1/sessions", a.url))
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let error: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_request", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("invalid unicode")),
        "{error}"
    );

    for url in [
        format!("{}/api/v1/shares/media/files?path=%C0%AE%C0%AE%2F", a.url),
        format!("{}/api/v1/shares/%C0%AE%C0%AE/files", a.url),
    ] {
        let resp = http
            .get(&url)
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let error: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(status, 400, "{url}: {error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| m.to_lowercase().contains("utf-8")),
            "{url}: {error}"
        );
    }

    // Over QUIC: a plan whose file name is `C0 AE C0 AE/x.mov`, made by
    // encoding a plan for `qqqq/x.mov` and replacing the four letters.
    let (grant, addr) = open(&a, &api).await;
    let (_endpoint, mut s) = hello(&a, addr, token(&grant.token)).await.unwrap();
    send_all(
        &mut s,
        &[Frame::PlanStart {
            chunk_size: CHUNK,
            files: Some(1),
            bytes: Some(10),
        }],
    )
    .await;
    let mut raw = ferry_proto::frame::encode(&Frame::PlanFiles {
        files: vec![plan_file(0, "qqqq/x.mov", 10)],
    })
    .unwrap();
    let at = raw.windows(4).position(|w| w == b"qqqq").unwrap();
    raw[at..at + 4].copy_from_slice(&[0xc0, 0xae, 0xc0, 0xae]);
    crate::quic_send(&mut s.send).write_all(&raw).await.unwrap();
    let (code, message) = refusal(&mut s).await;
    assert_eq!(code, ErrorCode::Protocol, "{message}");
    api.health().await.unwrap();
    assert!(ferry_tests::list_files(&a.share).is_empty());
    assert!(
        ferry_tests::list_files(a.share.parent().unwrap())
            .iter()
            .all(|p| !p.to_string_lossy().contains("x.mov"))
    );
}

/// Reads one HTTP/1.1 response whose body has a Content-Length; its status.
async fn read_response<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> u16 {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).await.expect("the response head");
        assert_eq!(n, 1, "the connection closed mid-head: {got:?}");
        got.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&got).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    head[9..12].parse().unwrap()
}

/// A keep-alive connection left idle for longer than the request-head
/// deadline (10 s) still answers its next request: only a head that has
/// begun is timed, so a client reusing an idle connection is never cut
/// (the Schemathesis flake under load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_outlives_the_head_deadline() {
    let a = Appliance::start();
    let pin = PinnedCert::new(a.fingerprint.parse().unwrap());
    let tls = Arc::new(pin.client_config(&[b"http/1.1"], false));
    let to: SocketAddr = format!("{}:{}", a.ip, a.port()).parse().unwrap();
    let tcp = tokio::net::TcpStream::connect(to).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("ferry").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .unwrap();
    let request = b"GET /api/v1/health HTTP/1.1\r\nHost: ferry\r\n\r\n";
    s.write_all(request).await.unwrap();
    assert_eq!(read_response(&mut s).await, 200);
    // Idle past the head deadline: the idle time is what is waited for.
    tokio::time::sleep(Duration::from_secs(13)).await;
    s.write_all(request).await.unwrap();
    assert_eq!(read_response(&mut s).await, 200);
}
