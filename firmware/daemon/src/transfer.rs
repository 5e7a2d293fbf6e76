//! Data sessions on the appliance: accepting QUIC connections on a leased
//! port, checking their token, and running the transfer they were granted
//! — a direct put or get, or a delivery's upload or download — with a job
//! row that tells everyone how it goes.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cap_std::fs::Dir;
use ferry_engine::congestion::PaceHandle;
use ferry_engine::control::Control;
use ferry_engine::files::{Origin, Sink, SourceFile, plan_share};
use ferry_engine::handshake::{Greeting, PaceRequest, accept_hello, refuse, welcome};
use ferry_engine::receive::{ClaimScope, Receiving, receive};
use ferry_engine::send::{PlanUpdate, Sending, send, send_stream};
use ferry_engine::transport::for_connection;
use ferry_engine::{EngineError, FileEvent, Outcome, Progress, StopSignal};
use ferry_proto::{ChunkLayout, ErrorCode, Pace, Priority, ProtoError, Rate, SharePath};
use ferry_store::{Delivery, Job, JobId, JobKind, JobStatus, NewEvent, NewJob, Share, TaskStatus};
use quinn::{Endpoint, Incoming};
use tokio::sync::mpsc;

use crate::app::{App, Live};
use crate::sessions::{SessionSpec, Target};

/// How long a new connection has to present its token.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Back-off before a failed delivery job is tried again, by failures so
/// far; after the last it stays failed until someone retries it.
const RETRY_AFTER: [u64; 5] = [30, 120, 600, 1800, 3600];

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
    // Each connection gets a pace of its own, so its rate can be set once
    // we know whose session it is, and changed while it runs.
    let pace = PaceHandle::new(app.site().pace);
    let config = for_connection(app.dataplane.server_config(), &app.tuning, &pace);
    let connected = match incoming.accept_with(config) {
        Ok(connecting) => connecting.await,
        Err(e) => Err(e),
    };
    let conn = match connected {
        Ok(c) => c,
        Err(e) => {
            log::info!(port = port; "QUIC handshake from {remote} failed: {e}");
            return;
        }
    };
    let Greeting {
        mut send,
        recv,
        token,
        request,
    } = match accept_hello(&conn, HELLO_TIMEOUT).await {
        Ok(x) => x,
        Err(e) => {
            log::info!(port = port; "session from {remote} did not greet properly: {e}");
            conn.close(
                ErrorCode::Protocol.close_code().into(),
                b"expected a session greeting",
            );
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
    let granted = session_pace(&app, &spec, request);
    pace.set(granted);
    app.tuning.size_windows(&conn, granted);
    if let Err(e) = welcome(&mut send, id, granted).await {
        log::info!(session_id = id; "session {id} lost before it started: {e}");
        return;
    }
    let session = Session {
        app: app.clone(),
        conn,
        id,
        spec,
        remote,
        pace,
        request,
    };
    session.run(Control::spawn(send, recv)).await;
}

fn session_pace(app: &App, spec: &SessionSpec, request: PaceRequest) -> Pace {
    let job = match &spec.target {
        Target::Upload { job, .. } | Target::Download { job, .. } => Some(job),
        Target::Put { .. } | Target::Get { .. } => None,
    };
    pace_for(app.site().pace, job, request)
}

/// A session's pace: the client's policy if it asked for one, else the
/// site's; the lowest of the site's cap, the job's and the client's.
pub fn pace_for(site: Pace, job: Option<&Job>, request: PaceRequest) -> Pace {
    let job_rate = job
        .and_then(|j| j.target_rate)
        .and_then(|bps| Rate::from_bits_per_sec(bps).ok());
    Pace {
        policy: request.policy.unwrap_or(site.policy),
        target: site.target,
    }
    .capped(job_rate)
    .capped(request.rate)
}

/// Applies a job's new rate to its running sessions at once: our side's
/// controller, the windows, and the client's controller (told by a `Pace`
/// frame, since on an upload the client sends).
pub fn repace(app: &App, job: &Job) {
    let site = app.site().pace;
    for live in app.live().values().filter(|l| l.job == job.id) {
        let pace = pace_for(site, Some(job), live.request);
        live.pace.set(pace);
        app.tuning.size_windows(&live.conn, pace);
        if let Some(tx) = live.frames.upgrade() {
            let _ = tx.send(ferry_proto::Frame::Pace(pace));
        }
        log::info!(job_id = job.id.0, session_id = live.session; "session {} now runs at {pace}", live.session);
    }
}

/// One redeemed session.
struct Session {
    app: Arc<App>,
    conn: quinn::Connection,
    id: u64,
    spec: Arc<SessionSpec>,
    remote: std::net::SocketAddr,
    pace: PaceHandle,
    request: PaceRequest,
}

/// What a finished session means for its job.
enum Ending {
    Done,
    /// The job's status was set by whoever stopped it (pause, abort).
    Stopped,
    /// Back to the queue: the network or the client went away.
    Requeue(String),
    /// A fault that will happen again; retried with back-off.
    Failed(String),
}

impl Session {
    async fn run(self, control: Control) {
        let progress = Arc::new(Progress::default());
        let stop = StopSignal::new();
        let (job, delivery_job) = match &self.spec.target {
            Target::Put { share, path } | Target::Get { share, path } => {
                let (kind, verb) = match self.spec.target {
                    Target::Put { .. } => (JobKind::Put, "put into"),
                    _ => (JobKind::Get, "get"),
                };
                let created = self.app.store.create_job(&NewJob {
                    kind,
                    name: format!("{verb} share={}/{}", share.name, path.as_str()),
                    owner: self.spec.user.id,
                    share: Some(share.id),
                    folder: path.as_str().to_owned(),
                    status: JobStatus::Running,
                    client_address: Some(self.remote.ip().to_string()),
                    delivery: None,
                    recipient: None,
                });
                match created {
                    Ok(j) => (j, false),
                    Err(e) => {
                        log::error!("cannot record the job of session {}: {e}", self.id);
                        self.conn
                            .close(ErrorCode::Internal.close_code().into(), b"internal error");
                        return;
                    }
                }
            }
            Target::Upload { job, .. } | Target::Download { job, .. } => {
                let _ = self
                    .app
                    .store
                    .set_job_status(job.id, JobStatus::Running, None);
                (job.id, true)
            }
        };
        log::info!(
            job_id = job.0, session_id = self.id;
            "session {} from {}: job {job} as {}", self.id, self.remote, self.spec.user.email
        );
        let (prio_tx, prio_rx) = mpsc::unbounded_channel();
        self.app.live().insert(
            self.id,
            Live {
                session: self.id,
                job,
                user: self.spec.user.id,
                client: self.remote,
                port: self.spec.lease.lease.port,
                progress: progress.clone(),
                stop: stop.clone(),
                started: Instant::now(),
                priorities: delivery_job.then_some(prio_tx),
                pace: self.pace.clone(),
                request: self.request,
                conn: self.conn.clone(),
                frames: control.frames(),
            },
        );
        let recorder = tokio::spawn(record_progress(
            self.app.clone(),
            job,
            progress.clone(),
            !delivery_job,
        ));
        let result = match &self.spec.target {
            Target::Put { share, path } => {
                self.put(control, share, path, progress.clone(), stop.clone())
                    .await
            }
            Target::Get { share, path } => {
                self.get(control, share, path, progress.clone(), stop.clone())
                    .await
            }
            Target::Upload {
                job,
                delivery,
                share,
            } => {
                self.upload(
                    control,
                    job,
                    delivery,
                    share,
                    progress.clone(),
                    stop.clone(),
                    prio_rx,
                )
                .await
            }
            Target::Download {
                job,
                delivery,
                share,
            } => {
                self.download(
                    control,
                    job,
                    delivery,
                    share,
                    progress.clone(),
                    stop.clone(),
                    prio_rx,
                )
                .await
            }
        };
        recorder.abort();
        self.app.live().remove(&self.id);
        let ending = self.ending(job, &result, &stop);
        self.finish(job, &progress, &result, ending, !delivery_job);
    }

    fn ending(
        &self,
        job: JobId,
        result: &Result<Outcome, EngineError>,
        stop: &StopSignal,
    ) -> Ending {
        match result {
            Ok(_) => match &self.spec.target {
                // A delivery job is done when every one of its files is.
                Target::Upload { .. } | Target::Download { .. } => {
                    let tasks = self.app.store.tasks(job).unwrap_or_default();
                    let missing = tasks
                        .iter()
                        .filter(|t| !matches!(t.status, TaskStatus::Done | TaskStatus::Excluded))
                        .count();
                    if missing == 0 {
                        Ending::Done
                    } else {
                        Ending::Failed(format!(
                            "{missing} files never reached the appliance (its upload ended without them)"
                        ))
                    }
                }
                _ => Ending::Done,
            },
            Err(_) if stop.is_stopped() => Ending::Stopped,
            Err(e @ EngineError::Stopped { .. }) => Ending::Requeue(e.to_string()),
            Err(e) if e.is_transient() => Ending::Requeue(e.to_string()),
            Err(EngineError::Proto(ProtoError::Peer {
                code: ErrorCode::Aborted,
                message,
            })) => Ending::Requeue(message.clone()),
            Err(e) => Ending::Failed(e.to_string()),
        }
    }

    fn finish(
        &self,
        job: JobId,
        progress: &Progress,
        result: &Result<Outcome, EngineError>,
        ending: Ending,
        direct: bool,
    ) {
        let app = &self.app;
        let s = progress.snapshot();
        if direct {
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
        }
        let retries = app.store.job(job).map(|j| j.retries).unwrap_or(0);
        let (action, detail) = match &ending {
            Ending::Done => {
                let _ = app.store.set_job_status(job, JobStatus::Done, None);
                crate::mail::job_done(app, job);
                (
                    "job.done",
                    format!(
                        "{} files, {} bytes sent, {} bytes already there",
                        s.files_done, s.bytes_transferred, s.bytes_skipped
                    ),
                )
            }
            Ending::Stopped => (
                "job.stopped",
                result
                    .as_ref()
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
            ),
            Ending::Requeue(e) if !direct => {
                let _ = app.store.set_job_status(job, JobStatus::Queued, Some(e));
                ("job.interrupted", e.clone())
            }
            Ending::Requeue(e) | Ending::Failed(e) => {
                if direct {
                    let _ = app.store.set_job_status(job, JobStatus::Failed, Some(e));
                } else {
                    let retry_at = RETRY_AFTER
                        .get(retries as usize)
                        .map(|secs| ferry_store::now() + *secs as i64);
                    let _ = app.store.fail_job(job, e, retry_at);
                    if retry_at.is_none() {
                        crate::mail::job_failed(app, job, e);
                    }
                }
                ("job.failed", e.clone())
            }
        };
        let _ = app.store.record_event(NewEvent {
            user: Some(self.spec.user.id),
            address: Some(self.remote.ip().to_string()),
            action,
            subject: format!("job {job}"),
            detail: detail.clone(),
        });
        if let Target::Upload { delivery, .. } | Target::Download { delivery, .. } =
            &self.spec.target
        {
            app.hub.bump(delivery.id);
        }
        match ending {
            Ending::Done => log::info!(job_id = job.0; "job {job} done: {detail}"),
            _ => log::warn!(job_id = job.0; "job {job} ended: {detail}"),
        }
    }

    fn share_root(share: &Share) -> Result<Dir, EngineError> {
        Dir::open_ambient_dir(&share.abs_path, cap_std::ambient_authority())
            .map_err(|e| EngineError::io(format!("share={}", share.name), e))
    }

    async fn put(
        &self,
        control: Control,
        share: &Share,
        path: &SharePath,
        progress: Arc<Progress>,
        stop: StopSignal,
    ) -> Result<Outcome, EngineError> {
        let sink = Sink::new(
            Self::share_root(share)?,
            path.clone(),
            format!("share={}", share.name),
        );
        let mut r = Receiving::new(sink);
        r.progress = progress;
        r.stop = stop;
        r.claims = Some(ClaimScope {
            claims: self.app.claims.clone(),
            session: self.id,
        });
        receive(&self.conn, control, r).await
    }

    async fn get(
        &self,
        control: Control,
        share: &Share,
        path: &SharePath,
        progress: Arc<Progress>,
        stop: StopSignal,
    ) -> Result<Outcome, EngineError> {
        let root = Arc::new(Self::share_root(share)?);
        let path = path.clone();
        let planned =
            tokio::task::spawn_blocking(move || plan_share(root, &path, &|_| Priority::DEFAULT))
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
                // The close carries the reason too, in case the frame is lost.
                ferry_engine::error::close_with(&self.conn, &e);
                return Err(e);
            }
        };
        send(
            &self.conn,
            control,
            files,
            self.sending(progress, stop, None),
        )
        .await
    }

    fn sending(
        &self,
        progress: Arc<Progress>,
        stop: StopSignal,
        events: Option<mpsc::UnboundedSender<FileEvent>>,
    ) -> Sending {
        let mut s =
            Sending::new(ChunkLayout::new(self.app.config.transfer.chunk_size).unwrap_or_default());
        s.progress = progress;
        s.stop = stop;
        s.events = events;
        // Keep as much in flight as the connection's window allows.
        s.opts.max_bytes_in_flight = self.app.tuning.window_for(self.pace.get(), self.conn.rtt());
        s
    }

    /// The sender's files into the delivery's folder. Only the files
    /// declared with the delivery are accepted; each one done is recorded
    /// and wakes the recipients' sessions.
    #[allow(clippy::too_many_arguments)]
    async fn upload(
        &self,
        control: Control,
        job: &Job,
        delivery: &Delivery,
        share: &Share,
        progress: Arc<Progress>,
        stop: StopSignal,
        priorities: mpsc::UnboundedReceiver<(SharePath, Priority)>,
    ) -> Result<Outcome, EngineError> {
        let folder = SharePath::parse_dir(&delivery.folder).map_err(|e| EngineError::Io {
            path: delivery.folder.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })?;
        let declared: HashSet<String> = self
            .app
            .store
            .tasks(job.id)
            .map_err(|e| EngineError::Connect(e.to_string()))?
            .into_iter()
            .filter(|t| t.status != TaskStatus::Excluded)
            .map(|t| t.path)
            .collect();
        let sink = Sink::new(
            Self::share_root(share)?,
            folder,
            format!("share={}", share.name),
        );
        let mut r = Receiving::new(sink);
        r.progress = progress;
        r.stop = stop;
        r.claims = Some(ClaimScope {
            claims: self.app.claims.clone(),
            session: self.id,
        });
        r.allowed = Some(Arc::new(move |p: &SharePath| declared.contains(p.as_str())));
        r.reprioritise = Some(priorities);
        let (tx, mut events) = mpsc::unbounded_channel();
        r.events = Some(tx);
        let (app, job_id, delivery_id) = (self.app.clone(), job.id, delivery.id);
        let recorder = tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                let (path, digest) = match ev {
                    FileEvent::Done { path, digest, .. } => (path, Some(digest.to_hex())),
                    FileEvent::Skipped { path, .. } => (path, None),
                };
                let _ = app
                    .store
                    .task_done(job_id, path.as_str(), digest.as_deref());
                // The file has landed: recipients may take it now.
                app.hub.bump(delivery_id);
            }
        });
        let result = receive(&self.conn, control, r).await;
        let _ = recorder.await;
        result
    }

    /// A delivery's files to one recipient, each as soon as it has landed,
    /// highest priority first.
    #[allow(clippy::too_many_arguments)]
    async fn download(
        &self,
        control: Control,
        job: &Job,
        delivery: &Delivery,
        share: &Share,
        progress: Arc<Progress>,
        stop: StopSignal,
        mut priorities: mpsc::UnboundedReceiver<(SharePath, Priority)>,
    ) -> Result<Outcome, EngineError> {
        let root = Arc::new(Self::share_root(share)?);
        let (updates, plan) = mpsc::unbounded_channel();
        let (tx, mut events) = mpsc::unbounded_channel();
        let feeder = tokio::spawn(feed(
            self.app.clone(),
            job.id,
            delivery.clone(),
            root,
            updates.clone(),
            stop.clone(),
        ));
        // Priority changes reach the running sender.
        let forwarder = tokio::spawn(async move {
            while let Some((path, priority)) = priorities.recv().await {
                if updates
                    .send(PlanUpdate::Priority { path, priority })
                    .is_err()
                {
                    return;
                }
            }
        });
        let (app, job_id) = (self.app.clone(), job.id);
        let recorder = tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                let (path, digest) = match ev {
                    FileEvent::Done { path, digest, .. } => (path, Some(digest.to_hex())),
                    FileEvent::Skipped { path, .. } => (path, None),
                };
                let _ = app
                    .store
                    .task_done(job_id, path.as_str(), digest.as_deref());
            }
        });
        let result = send_stream(
            &self.conn,
            control,
            plan,
            self.sending(progress, stop, Some(tx)),
        )
        .await;
        feeder.abort();
        forwarder.abort();
        let _ = recorder.await;
        result
    }
}

/// Feeds a download session's plan: files that have landed, highest
/// priority first, never a file while one of higher priority is still on
/// its way to the appliance; the plan ends once the upload is over and
/// every file is planned.
async fn feed(
    app: Arc<App>,
    job: JobId,
    delivery: Delivery,
    root: Arc<Dir>,
    updates: mpsc::UnboundedSender<PlanUpdate>,
    stop: StopSignal,
) {
    let mut changes = app.hub.subscribe(delivery.id);
    let Ok(folder) = SharePath::parse_dir(&delivery.folder) else {
        return;
    };
    let upload = app
        .store
        .list_jobs(&ferry_store::JobFilter {
            delivery: Some(delivery.id),
            kind: Some(JobKind::Upload),
            all: true,
            ..Default::default()
        })
        .ok()
        .and_then(|j| j.into_iter().next());
    let mut planned: HashSet<String> = HashSet::new();
    loop {
        changes.mark_unchanged();
        let tasks = app.store.tasks(job).unwrap_or_default();
        let (landed, upload_over): (HashSet<String>, bool) = match &upload {
            None => (tasks.iter().map(|t| t.path.clone()).collect(), true),
            Some(u) => {
                let status = app
                    .store
                    .job(u.id)
                    .map(|j| j.status)
                    .unwrap_or(JobStatus::Aborted);
                let done = app
                    .store
                    .tasks(u.id)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|t| t.status == TaskStatus::Done)
                    .map(|t| t.path)
                    .collect();
                (done, status.is_finished())
            }
        };
        let waiting: Vec<_> = tasks
            .iter()
            .filter(|t| t.status != TaskStatus::Excluded && !planned.contains(&t.path))
            .collect();
        let blocked_above = waiting
            .iter()
            .filter(|t| !landed.contains(&t.path))
            .map(|t| t.priority)
            .max();
        let ready: Vec<SourceFile> = waiting
            .iter()
            .filter(|t| landed.contains(&t.path) && blocked_above.is_none_or(|b| t.priority >= b))
            .filter_map(|t| {
                let rel = SharePath::parse(&t.path).ok()?;
                let in_share = folder.join(&rel).ok()?;
                Some(SourceFile {
                    path: rel,
                    origin: Origin::Share {
                        root: root.clone(),
                        path: in_share,
                    },
                    size: t.size as u64,
                    mtime_ns: t.mtime_ns,
                    priority: Priority::new(t.priority).unwrap_or_default(),
                })
            })
            .collect();
        if !ready.is_empty() {
            planned.extend(ready.iter().map(|f| f.path.as_str().to_owned()));
            if updates.send(PlanUpdate::Files(ready)).is_err() {
                return;
            }
        }
        let all_planned = waiting.iter().all(|t| planned.contains(&t.path));
        if upload_over && (all_planned || waiting.iter().all(|t| !landed.contains(&t.path))) {
            let _ = updates.send(PlanUpdate::End);
            return;
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            () = stop.stopped() => return,
            () = updates.closed() => return,
            // A change that slipped past (several processes write the
            // store) is picked up within a few seconds anyway.
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Writes progress into the job row once a second.
async fn record_progress(app: Arc<App>, job: JobId, progress: Arc<Progress>, totals: bool) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = (Instant::now(), 0u64);
    let mut totals_recorded = !totals;
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
        if totals {
            let _ = app.store.set_job_progress(
                job,
                s.files_done as i64,
                s.bytes_done() as i64,
                s.bytes_skipped as i64,
                rate,
            );
        } else {
            let _ = app.store.set_job_rate(job, rate, s.bytes_skipped as i64);
        }
    }
}
