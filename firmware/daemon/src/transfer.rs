//! Data sessions on the appliance: accepting QUIC connections on a leased
//! port, checking their token, and running the transfer they were granted,
//! with a job row that tells everyone how it goes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cap_std::fs::Dir;
use ferry_api::SessionKind;
use ferry_engine::control::Control;
use ferry_engine::files::{Sink, make_plan, plan_share};
use ferry_engine::handshake::{accept_hello, refuse, welcome};
use ferry_engine::receive::{ClaimScope, ReceiveOptions, receive};
use ferry_engine::send::{SendOptions, send};
use ferry_engine::{EngineError, Outcome, Progress, StopSignal};
use ferry_proto::{ChunkLayout, Priority};
use ferry_store::{JobId, JobKind, JobStatus, NewEvent, NewJob};
use quinn::{Endpoint, Incoming};

use crate::app::{App, Live};
use crate::sessions::SessionSpec;

/// How long a new connection has to present its token.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections on one data port until the port is closed.
pub async fn accept_loop(app: Arc<App>, endpoint: Endpoint, port: u16) {
    while let Some(incoming) = endpoint.accept().await {
        let remote = incoming.remote_address();
        // The firewall drops these before they reach us; without it (or if
        // it is misconfigured) the daemon drops them itself.
        if !app.dataplane.allows(remote.ip(), port) {
            log::warn!(port = port; "data packet from {remote}, which holds no lease on port {port}: dropped");
            incoming.ignore();
            continue;
        }
        tokio::spawn(handle(app.clone(), incoming, port));
    }
}

async fn handle(app: Arc<App>, incoming: Incoming, port: u16) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            log::info!(port = port; "QUIC handshake from {remote} failed: {e}");
            return;
        }
    };
    let (mut send, recv, token) = match accept_hello(&conn, HELLO_TIMEOUT).await {
        Ok(x) => x,
        Err(e) => {
            log::info!(port = port; "session from {remote} did not greet properly: {e}");
            conn.close(1u32.into(), b"expected a session greeting");
            return;
        }
    };
    let (id, spec) = match app.sessions.redeem(&token, remote.ip()) {
        Ok(x) => x,
        Err((code, message)) => {
            log::warn!(port = port; "session from {remote} refused: {message}");
            let _ = app.store.record_event(NewEvent {
                address: Some(remote.ip().to_string()),
                action: "session.refused",
                subject: format!("port {port}"),
                detail: message.clone(),
                ..Default::default()
            });
            refuse(&conn, &mut send, code, &message).await;
            return;
        }
    };
    if let Err(e) = welcome(&mut send, id).await {
        log::info!(session_id = id; "session {id} lost before it started: {e}");
        return;
    }
    run_session(&app, conn, Control::spawn(send, recv), id, &spec, remote).await;
}

/// Runs the granted transfer and keeps its job row up to date.
async fn run_session(
    app: &Arc<App>,
    conn: quinn::Connection,
    control: Control,
    id: u64,
    spec: &SessionSpec,
    remote: std::net::SocketAddr,
) {
    let (kind, verb) = match spec.kind {
        SessionKind::Put => (JobKind::Put, "put into"),
        SessionKind::Get => (JobKind::Get, "get"),
    };
    let target = format!("share={}/{}", spec.share.name, spec.path.as_str());
    let job = match app.store.create_job(&NewJob {
        kind,
        name: format!("{verb} {target}"),
        owner: spec.user.id,
        share: Some(spec.share.id),
        folder: spec.path.as_str().to_owned(),
        status: JobStatus::Running,
        client_address: Some(remote.ip().to_string()),
    }) {
        Ok(j) => j,
        Err(e) => {
            log::error!("cannot record the job of session {id}: {e}");
            conn.close(1u32.into(), b"internal error");
            return;
        }
    };
    log::info!(job_id = job.0, session_id = id; "session {id} from {remote}: {verb} {target} as {}", spec.user.email);
    let progress = Arc::new(Progress::default());
    let stop = StopSignal::new();
    app.live().insert(
        id,
        Live {
            session: id,
            job,
            user: spec.user.id,
            client: remote,
            port: spec.lease.lease.port,
            progress: progress.clone(),
            stop: stop.clone(),
            started: Instant::now(),
        },
    );
    let recorder = tokio::spawn(record_progress(app.clone(), job, progress.clone()));
    let result = match spec.kind {
        SessionKind::Put => {
            receive_put(app, &conn, control, id, spec, progress.clone(), stop).await
        }
        SessionKind::Get => send_get(app, &conn, control, spec, progress.clone(), stop).await,
    };
    recorder.abort();
    app.live().remove(&id);
    finish_job(app, job, &progress, &result, spec, remote);
}

async fn receive_put(
    app: &Arc<App>,
    conn: &quinn::Connection,
    control: Control,
    id: u64,
    spec: &SessionSpec,
    progress: Arc<Progress>,
    stop: StopSignal,
) -> Result<Outcome, EngineError> {
    let root = Dir::open_ambient_dir(&spec.share.abs_path, cap_std::ambient_authority())
        .map_err(|e| EngineError::io(format!("share={}", spec.share.name), e))?;
    let sink = Sink::new(
        root,
        spec.path.clone(),
        format!("share={}", spec.share.name),
    );
    receive(
        conn,
        control,
        sink,
        &ReceiveOptions::default(),
        progress,
        None,
        stop,
        Some(ClaimScope {
            claims: app.claims.clone(),
            session: id,
        }),
    )
    .await
}

async fn send_get(
    app: &Arc<App>,
    conn: &quinn::Connection,
    control: Control,
    spec: &SessionSpec,
    progress: Arc<Progress>,
    stop: StopSignal,
) -> Result<Outcome, EngineError> {
    let share_label = format!("share={}", spec.share.name);
    let root = Dir::open_ambient_dir(&spec.share.abs_path, cap_std::ambient_authority())
        .map_err(|e| EngineError::io(&share_label, e))?;
    let path = spec.path.clone();
    let planned = tokio::task::spawn_blocking(move || {
        plan_share(Arc::new(root), &path, &|_| Priority::DEFAULT)
    })
    .await
    .map_err(|e| EngineError::Connect(format!("planning task: {e}")))?;
    let files = match planned {
        Ok(f) => f,
        Err(e) => {
            control.send(ferry_proto::Frame::Error {
                code: e.code(),
                message: e.to_string(),
            });
            control.finish().await;
            conn.close(1u32.into(), b"plan refused");
            return Err(e);
        }
    };
    let (files, plan) = make_plan(files);
    let layout = ChunkLayout::new(app.config.transfer.chunk_size).unwrap_or_default();
    send(
        conn,
        control,
        files,
        plan,
        layout,
        &SendOptions::default(),
        progress,
        None,
        stop,
    )
    .await
}

/// Writes progress into the job row once a second.
async fn record_progress(app: Arc<App>, job: JobId, progress: Arc<Progress>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = (Instant::now(), 0u64);
    let mut totals_recorded = false;
    loop {
        tick.tick().await;
        let s = progress.snapshot();
        if !totals_recorded && s.files_total > 0 {
            let _ = app
                .store
                .set_job_totals(job, s.files_total as i64, s.bytes_total as i64);
            totals_recorded = true;
        }
        let elapsed = last.0.elapsed().as_secs_f64().max(0.001);
        let rate = (s.bytes_transferred.saturating_sub(last.1) as f64 / elapsed) as i64;
        last = (Instant::now(), s.bytes_transferred);
        let _ = app.store.set_job_progress(
            job,
            s.files_done as i64,
            s.bytes_done() as i64,
            s.bytes_skipped as i64,
            rate,
        );
    }
}

fn finish_job(
    app: &App,
    job: JobId,
    progress: &Progress,
    result: &Result<Outcome, EngineError>,
    spec: &SessionSpec,
    remote: std::net::SocketAddr,
) {
    let s = progress.snapshot();
    let _ = app
        .store
        .set_job_totals(job, s.files_total as i64, s.bytes_total as i64);
    let _ = app.store.set_job_progress(
        job,
        s.files_done as i64,
        s.bytes_done() as i64,
        s.bytes_skipped as i64,
        0,
    );
    let (status, error) = match result {
        Ok(_) => (JobStatus::Done, None),
        Err(e) => (JobStatus::Failed, Some(e.to_string())),
    };
    let _ = app.store.set_job_status(job, status, error.as_deref());
    let _ = app.store.record_event(NewEvent {
        user: Some(spec.user.id),
        address: Some(remote.ip().to_string()),
        action: if status == JobStatus::Done {
            "job.done"
        } else {
            "job.failed"
        },
        subject: format!("job {job}"),
        detail: match &error {
            None => format!(
                "{} files, {} bytes sent, {} bytes resumed",
                s.files_done, s.bytes_transferred, s.bytes_skipped
            ),
            Some(e) => e.clone(),
        },
    });
    match error {
        None => {
            log::info!(job_id = job.0; "job {job} done: {} files, {} bytes sent, {} resumed", s.files_done, s.bytes_transferred, s.bytes_skipped)
        }
        Some(e) => log::warn!(job_id = job.0; "job {job} failed: {e}"),
    }
}
