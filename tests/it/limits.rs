//! How much one caller may take, tried with a hostile client through the
//! real data ports of a real ferryd: many download sessions that ask for
//! data and then never read it, and connections that push before saying
//! who they are. ferryd's memory stays within its budget, another user's
//! transfer goes on, and stalled sessions are closed.

use std::time::{Duration, Instant};

use ferry_api::{SessionKind, SessionRequest};
use ferry_engine::congestion::PaceHandle;
use ferry_engine::tls::PinnedCert;
use ferry_engine::transport::{Tuning, client_config, client_endpoint};
use ferry_proto::frame::HaveState;
use ferry_proto::{ErrorCode, Frame};
use ferry_tests::{Appliance, record_scenario, rss_peak_and_fds, write_random};

use crate::foundation::wire::{api, hello, open, token};

const MIB: u64 = 1 << 20;
/// The file the stalled sessions ask for and another user fetches.
const SIZE: u64 = 128 * MIB;

/// A download of `target` that asks for every chunk and then reads none:
/// its connection stays alive (keep-alives) while the appliance's chunks
/// wait on flow control. `None` when the appliance refused the session.
async fn stalled_get(
    a: &Appliance,
    api: &ferry_client::Api,
    target: &str,
) -> Option<(quinn::Endpoint, ferry_engine::handshake::Session)> {
    let grant = api
        .create_session(&SessionRequest {
            kind: SessionKind::Get,
            target: Some(target.into()),
            job: None,
            resume_key: None,
        })
        .await
        .ok()?;
    let addr = format!("{}:{}", a.ip, grant.port).parse().unwrap();
    let (endpoint, mut s) = hello(a, addr, token(&grant.token)).await.ok()?;
    let files = read_plan(&mut s).await.ok()?;
    let have = Frame::Have {
        files: files.into_iter().map(|f| (f, HaveState::Nothing)).collect(),
    };
    s.send.write_frame(&have).await.ok()?;
    Some((endpoint, s))
}

/// The stalled-session attack of the review: a collaborator opened dozens
/// of downloads that never read, each pinning about 66 MiB in ferryd, until
/// it died. Now the sessions share a memory budget (here 256 MiB, one
/// account at most half), the sessions past it are refused, another user's
/// transfer completes at a fair rate, and a minute without progress closes
/// every stalled session.
#[test]
fn stalled_sessions_cannot_exhaust_the_appliance() {
    // Its gigabytes of reads would skew the other heavy tests' figures.
    let _serial = ferry_tests::heavy_io();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(stalled_sessions());
}

async fn stalled_sessions() {
    let conf = tempfile::tempdir().unwrap();
    let config = conf.path().join("ferryd.toml");
    std::fs::write(&config, "[limits]\nmemory_mib = 256\n").unwrap();
    let a = Appliance::start_with(&["--config", config.to_str().unwrap()]);
    let big = a.share.join("big");
    std::fs::create_dir_all(&big).unwrap();
    write_random(&big.join("plate.exr"), SIZE, 11);
    let attacker = api(&a, &a.media_user("mallory@client.example"));
    let other_key = a.media_user("ann@studio.example");
    let other = a.client(&other_key);
    let pid = a.pid().unwrap();
    attacker.health().await.unwrap();

    // Another user's get, unloaded: the baseline of this run.
    let fair = |label: &str| {
        let into = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let run = other.run(&[
            "get",
            "share=media/big/plate.exr",
            into.path().to_str().unwrap(),
        ]);
        assert!(run.ok, "{label}: {}", run.stderr);
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(
            ferry_tests::blake3_file(&into.path().join("plate.exr")),
            ferry_tests::blake3_file(&big.join("plate.exr"))
        );
        (SIZE * 8) as f64 / 1e6 / secs
    };
    let baseline = tokio::task::block_in_place(|| fair("unloaded"));
    let (rss_before, _) = rss_peak_and_fds(pid);

    const TRIED: usize = 40;
    let mut stalled = Vec::new();
    let mut refused = 0;
    for _ in 0..TRIED {
        match stalled_get(&a, &attacker, "share=media/big/plate.exr").await {
            Some(s) => stalled.push(s),
            None => refused += 1,
        }
    }
    // Let the admitted sessions fill what they may.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let loaded = tokio::task::block_in_place(|| fair("beside the stalled sessions"));
    let (rss_peak, _) = rss_peak_and_fds(pid);
    let grew = rss_peak.saturating_sub(rss_before);
    println!(
        "stalled sessions: {} admitted, {refused} refused of {TRIED}; ferryd's peak grew {} MiB; \
         another user's get: {loaded:.0} Mbit/s beside them, {baseline:.0} Mbit/s alone ({:.2}x)",
        stalled.len(),
        grew / MIB,
        loaded / baseline
    );
    assert!(refused > 0, "the budget admitted all {TRIED} sessions");
    assert!(!stalled.is_empty(), "no session was admitted at all");
    // The budget (256 MiB) plus what a running ferryd keeps besides.
    assert!(
        grew < 256 * MIB + 96 * MIB,
        "ferryd's peak grew by {} MiB",
        grew / MIB
    );
    assert!(
        loaded > baseline / 5.0,
        "another user's get ran at {loaded:.0} Mbit/s beside the stalled sessions, \
         {baseline:.0} Mbit/s alone"
    );

    // A minute without progress closes every stalled session, saying why.
    let started = Instant::now();
    for (_endpoint, s) in &stalled {
        let closed =
            tokio::time::timeout(Duration::from_secs(120), s.link.quic().unwrap().closed())
                .await
                .expect("a stalled session was closed within two minutes");
        match closed {
            quinn::ConnectionError::ApplicationClosed(c) => assert_eq!(
                ErrorCode::from_close_code(c.error_code.into_inner()),
                Some(ErrorCode::Stalled),
                "{}",
                String::from_utf8_lossy(&c.reason)
            ),
            other => panic!("closed otherwise: {other}"),
        }
    }
    let closed_after = started.elapsed().as_secs_f64();
    let audit = a.admin(&["audit", "--action", "session.stalled"]);
    assert_eq!(audit.lines().count(), stalled.len(), "{audit}");
    record_scenario(
        "limits-stalled-sessions",
        serde_json::json!({
            "scenario": "a collaborator's downloads that ask for data and never read it",
            "injected": format!("{TRIED} get sessions of a {} MiB file from one account, each sending Have and never accepting a stream", SIZE / MIB),
            "checked": "sessions past the memory budget refused; ferryd's peak memory within the budget; another user's get completes byte-identical at a fair rate; every stalled session closed with Stalled and audited",
            "faults_survived": TRIED,
            "bytes_compared": 2 * SIZE,
            "sessions_admitted": stalled.len(),
            "sessions_refused": refused,
            "ferryd_peak_rss_growth_mib": grew / MIB,
            "other_user_mbit_s_alone": baseline.round(),
            "other_user_mbit_s_beside": loaded.round(),
            "seconds_until_all_closed": closed_after.round(),
        }),
    );
}

/// Before `Hello` a connection could push 128 MiB, and a lease admitted
/// any number of them. Now an address holds at most 8 connections that
/// have not greeted, each may push 256 KiB, and none may open a stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_has_not_greeted_may_push_little() {
    let a = Appliance::start();
    let key = a.media_user("mallory@client.example");
    let api = api(&a, &key);
    let pid = a.pid().unwrap();
    api.health().await.unwrap();
    let (rss_before, _) = rss_peak_and_fds(pid);
    let (_grant, addr) = open(&a, &api).await;
    let pin = PinnedCert::new(a.fingerprint.parse().unwrap());
    let endpoint = client_endpoint(addr).unwrap();
    let mut connected = Vec::new();
    let mut refused = 0;
    for _ in 0..12 {
        let config = client_config(
            &pin,
            &Tuning::default(),
            &PaceHandle::new(Default::default()),
        );
        match endpoint.connect_with(config, addr, "ferry").unwrap().await {
            Ok(c) => connected.push(c),
            Err(_) => refused += 1,
        }
    }
    assert_eq!(connected.len(), 8, "{refused} refused");
    let mut pushed = Vec::new();
    for conn in &connected {
        // No stream but the control stream may be opened.
        assert!(
            tokio::time::timeout(Duration::from_millis(500), conn.open_uni())
                .await
                .is_err(),
            "a unidirectional stream was granted before Hello"
        );
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        let mut sent = 0u64;
        let block = vec![0x5a; 64 << 10];
        // Push until flow control holds us (or the appliance hangs up).
        while let Ok(Ok(())) =
            tokio::time::timeout(Duration::from_secs(1), send.write_all(&block)).await
        {
            sent += block.len() as u64;
            if sent > 64 * MIB {
                break;
            }
        }
        pushed.push(sent);
    }
    let most = *pushed.iter().max().unwrap();
    let (rss_after, _) = rss_peak_and_fds(pid);
    let grew = rss_after.saturating_sub(rss_before);
    println!(
        "before Hello: {} connections, {refused} refused; each pushed at most {} KiB; ferryd grew {} MiB",
        connected.len(),
        most >> 10,
        grew / MIB
    );
    assert!(
        most <= 512 << 10,
        "a connection pushed {most} bytes before Hello"
    );
    assert!(grew < 64 * MIB, "ferryd's peak grew by {} MiB", grew / MIB);
    // Their places come back when they go: a real client gets in.
    drop(connected);
    let other = a.client(&key);
    let src = tempfile::tempdir().unwrap();
    write_random(&src.path().join("after.mov"), 4 * MIB, 3);
    let run = tokio::task::block_in_place(|| {
        other.run(&[
            "put",
            src.path().join("after.mov").to_str().unwrap(),
            "share=media/after/",
        ])
    });
    assert!(run.ok, "{}", run.stderr);
    record_scenario(
        "limits-before-hello",
        serde_json::json!({
            "scenario": "connections that push data before saying who they are",
            "injected": "12 QUIC connections to one lease from one address, each writing as fast as flow control lets it on its control stream and trying a unidirectional stream, none sending Hello",
            "checked": "8 admitted and the rest refused; no unidirectional stream granted; each held to a small window; ferryd's memory bounded; a real client's put completes afterwards",
            "faults_survived": 12,
            "bytes_compared": 0,
            "connections_admitted": 8,
            "most_pushed_kib": most >> 10,
            "ferryd_peak_rss_growth_mib": grew / MIB,
        }),
    );
}

/// A sender's delivery of one file to a recipient, uploaded: (the
/// appliance, the recipient's key, the download job, the file).
struct Delivered {
    a: Appliance,
    recipient: String,
    job: i64,
    src: tempfile::TempDir,
}

fn delivered() -> Delivered {
    let a = Appliance::start();
    let sender = a.media_user("sender@studio.example");
    let recipient = a.user("recipient@client.example", "collaborator");
    let src = tempfile::tempdir().unwrap();
    write_random(&src.path().join("shot.mov"), 2 * MIB, 21);
    let sent = a
        .client(&sender)
        .run(&[
            "send",
            src.path().join("shot.mov").to_str().unwrap(),
            "--to",
            "recipient@client.example",
            "--dest",
            "share=media/review/",
            "--json",
        ])
        .json();
    let job = sent["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["kind"] == "download")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    Delivered {
        a,
        recipient,
        job,
        src,
    }
}

/// The recipient's download session of `job`, greeted, with its plan read.
async fn planned(
    a: &Appliance,
    key: &str,
    job: i64,
) -> Result<
    (
        quinn::Endpoint,
        ferry_engine::handshake::Session,
        Vec<ferry_proto::FileId>,
    ),
    String,
> {
    let api = api(a, key);
    let grant = api
        .create_session(&SessionRequest {
            kind: SessionKind::Download,
            target: None,
            job: Some(job),
            resume_key: None,
        })
        .await
        .map_err(|e| e.to_string())?;
    let addr = format!("{}:{}", a.ip, grant.port).parse().unwrap();
    let (endpoint, mut s) = hello(a, addr, token(&grant.token))
        .await
        .map_err(|e| e.to_string())?;
    let files = read_plan(&mut s).await?;
    Ok((endpoint, s, files))
}

/// The file ids of the plan the appliance sends, once it has ended it.
async fn read_plan(
    s: &mut ferry_engine::handshake::Session,
) -> Result<Vec<ferry_proto::FileId>, String> {
    let mut files = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.recv.read_frame()).await {
            Ok(Ok(Some(Frame::PlanFiles { files: f }))) => files.extend(f.iter().map(|f| f.id)),
            Ok(Ok(Some(Frame::PlanEnd))) => return Ok(files),
            Ok(Ok(Some(Frame::Error { code, message }))) => {
                return Err(format!("{code:?}: {message}"));
            }
            Ok(Ok(Some(_))) => {}
            other => return Err(format!("the plan did not come: {other:?}")),
        }
    }
}

/// How the appliance ended a session: its error frame's code, or its
/// close code.
async fn ended(s: &mut ferry_engine::handshake::Session) -> Option<ErrorCode> {
    let end = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match s.recv.read_frame().await {
                Ok(Some(Frame::Error { code, .. })) => return Some(code),
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(ferry_engine::EngineError::Connection(
                    quinn::ConnectionError::ApplicationClosed(c),
                )) => return ErrorCode::from_close_code(c.error_code.into_inner()),
                Err(_) => return None,
            }
        }
    });
    end.await
        .expect("the appliance ended the session within 20 s")
}

async fn job_status(a: &Appliance, key: &str, job: i64) -> ferry_api::JobStatus {
    api(a, key).job(job).await.unwrap().job.status
}

/// The job's status once the appliance has settled its last session (it
/// does so just after the session's connection closes).
async fn settled(a: &Appliance, key: &str, job: i64) -> ferry_api::JobStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = job_status(a, key, job).await;
        if status != ferry_api::JobStatus::Running {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "job {job} still running 10 s after its session ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Forged receipts: a recipient that claimed every file complete, with a
/// made-up digest, had its job marked done with nothing sent. Now the
/// claim is checked against the upload's digest and refused; the job is
/// not done until the bytes go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_receipts_do_not_finish_a_delivery() {
    let d = tokio::task::block_in_place(delivered);
    let (_endpoint, mut s, files) = planned(&d.a, &d.recipient, d.job).await.unwrap();
    assert_eq!(files.len(), 1);
    let forged = Frame::Have {
        files: files
            .iter()
            .map(|f| (*f, HaveState::Complete(ferry_proto::Digest([7; 32]))))
            .collect(),
    };
    s.send.write_frame(&forged).await.unwrap();
    let code = ended(&mut s).await;
    assert_eq!(code, Some(ErrorCode::DigestMismatch), "{code:?}");
    drop(s);
    let status = settled(&d.a, &d.recipient, d.job).await;
    assert_ne!(status, ferry_api::JobStatus::Done);
    // The refused claim counted as a failure of the job; the recipient
    // tries again, and this time the bytes go.
    assert_eq!(status, ferry_api::JobStatus::Failed);
    api(&d.a, &d.recipient)
        .job_action(d.job, "retry")
        .await
        .unwrap();
    let into = tempfile::tempdir().unwrap();
    let run = tokio::task::block_in_place(|| {
        d.a.client(&d.recipient)
            .run(&["pull", "--into", into.path().to_str().unwrap()])
    });
    assert!(run.ok, "{}", run.stderr);
    let got = ferry_tests::delivered_files(into.path());
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        ferry_tests::blake3_file(&into.path().join(&got[0])),
        ferry_tests::blake3_file(&d.src.path().join("shot.mov"))
    );
    let status = job_status(&d.a, &d.recipient, d.job).await;
    assert_eq!(status, ferry_api::JobStatus::Done);
}

/// The early Resend: a Resend that reaches the appliance before it has
/// noted the chunk as sent was taken as a protocol violation. Now it is
/// honoured and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_resend_is_honoured() {
    let d = tokio::task::block_in_place(delivered);
    let (_endpoint, mut s, files) = planned(&d.a, &d.recipient, d.job).await.unwrap();
    let first = files[0];
    // Have and a Resend of the first chunk back to back: the Resend
    // overtakes the chunk it names.
    s.send
        .write_frame(&Frame::Have {
            files: vec![(first, HaveState::Nothing)],
        })
        .await
        .unwrap();
    s.send
        .write_frame(&Frame::Resend {
            file: first,
            index: 0,
        })
        .await
        .unwrap();
    // Chunks come, and no error.
    let mut chunk =
        tokio::time::timeout(Duration::from_secs(10), s.link.quic().unwrap().accept_uni())
            .await
            .expect("a chunk within 10 s")
            .expect("a chunk stream");
    let mut head = [0u8; 4];
    chunk.read_exact(&mut head).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(3), s.recv.read_frame()).await {
        Err(_) => {}
        Ok(Ok(Some(Frame::Error { code, message }))) => {
            panic!("the early Resend ended the session: {code:?} {message}")
        }
        Ok(other) => assert!(
            !matches!(other, Ok(None) | Err(_)),
            "the session ended: {other:?}"
        ),
    }
    assert!(s.link.quic().unwrap().close_reason().is_none());
}

/// The mail storm: once a job had used up its retries, every session that
/// failed on purpose mailed "job failed" to every admin and the sender
/// again. Now a job failed for good takes no new session, and its failure
/// is mailed once to each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_is_mailed_once() {
    let d = tokio::task::block_in_place(delivered);
    // The job has used up its retries (as after five failures).
    {
        let db = rusqlite::Connection::open(d.a.data.join("ferry.db")).unwrap();
        db.busy_timeout(Duration::from_secs(10)).unwrap();
        db.execute("UPDATE jobs SET retries = 5 WHERE id = ?1", [d.job])
            .unwrap();
    }
    const TRIES: usize = 20;
    let (mut opened, mut refused) = (0, 0);
    for _ in 0..TRIES {
        match planned(&d.a, &d.recipient, d.job).await {
            Ok((_endpoint, mut s, _)) => {
                opened += 1;
                // Have for a file that is not in the plan: a violation.
                let bad = Frame::Have {
                    files: vec![(ferry_proto::FileId(9999), HaveState::Nothing)],
                };
                s.send.write_frame(&bad).await.unwrap();
                let code = ended(&mut s).await;
                assert_eq!(code, Some(ErrorCode::Protocol), "{code:?}");
                settled(&d.a, &d.recipient, d.job).await;
            }
            Err(e) => {
                assert!(
                    e.contains("job_not_runnable") || e.contains("failed"),
                    "{e}"
                );
                refused += 1;
            }
        }
    }
    println!("a failing job: {opened} sessions opened, {refused} refused of {TRIES}");
    assert_eq!(opened, 1, "a job failed for good took another session");
    let status = job_status(&d.a, &d.recipient, d.job).await;
    assert_eq!(status, ferry_api::JobStatus::Failed);
    // One mail to each admin (admin@localhost) and the sender, once.
    let mails: Vec<String> = {
        let db = rusqlite::Connection::open(d.a.data.join("ferry.db")).unwrap();
        db.busy_timeout(Duration::from_secs(10)).unwrap();
        let mut q = db
            .prepare("SELECT recipient FROM outbox WHERE dedupe LIKE 'job-failed/%'")
            .unwrap();
        q.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let mut sorted = mails.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["admin@localhost", "sender@studio.example"],
        "{mails:?}"
    );
}
