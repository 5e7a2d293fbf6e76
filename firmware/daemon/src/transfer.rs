//! Data sessions on the appliance, the transport adapter: granting a
//! session (a leased port and a token), accepting QUIC connections and TCP
//! lanes on leased ports and HTTPS lanes on the control port, checking
//! their token, and running the transfer they were granted — a direct put
//! or get, or a delivery's upload or download. Whatever carries it, a
//! session is the same from its greeting on.
//!
//! Everything a session decides or records goes through the services:
//! what it may move ([`ferryd_core::transfers::Transfers::target`]), its
//! job row, the files it finishes, and what its end means for its job
//! (the domain's [`settle`](ferry_domain::ending::settle)). Here a
//! session's end is only classified into an [`Ending`], where it arises.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_api::SessionGrant;
use ferry_domain::ending::Ending;
use ferry_domain::{AuditAction, JobId};
use ferry_engine::congestion::PaceHandle;
use ferry_engine::control::Control;
use ferry_engine::files::{Origin, SourceFile, plan_share};
use ferry_engine::handshake::{
    Greeting, PaceRequest, accept_hello, lane_greeting, refuse, welcome,
};
use ferry_engine::lanes::{self, BoxedLane, Lanes, Opening};
use ferry_engine::link::Link;
use ferry_engine::receive::{ClaimScope, Receiving, receive};
use ferry_engine::send::{PlanUpdate, Sending, send, send_stream};
use ferry_engine::share::ShareRoot;
use ferry_engine::transport::{Tuning, for_connection};
use ferry_engine::{EngineError, FileEvent, Outcome, Progress, Snapshot, StopSignal};
use ferry_proto::{ChunkLayout, ErrorCode, Pace, Priority, ProtoError, Rate, SharePath, Transport};
use ferry_store::{ApiKeyId, User};
use ferryd_core::Services;
use ferryd_core::audit::Actor;
use ferryd_core::live::{LiveSession, SessionHandle, pace_for};
use ferryd_core::meters;
use ferryd_core::nodes::NodesError;
use ferryd_core::transfers::Target;
use quinn::{Endpoint, Incoming};
use tokio::sync::mpsc;

use crate::dataplane::{DataPlane, DataPlaneError};
use crate::nat::SourceWatch;
use crate::sessions::{SessionSpec, Sessions};

/// How long a new connection has to present its token.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections from one address that have not presented a token yet: a
/// client opens one per session, so a few are plenty.
const UNGREETED_PER_ADDRESS: usize = 8;
/// Connections from anyone that have not presented a token yet.
const UNGREETED_TOTAL: usize = 128;

/// Connections that have not said who they are, by address.
#[derive(Debug, Default)]
pub struct Ungreeted(std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>);

/// One ungreeted connection's place; given back when dropped.
struct Waiting<'a> {
    table: &'a Ungreeted,
    ip: IpAddr,
}

impl Ungreeted {
    /// A place for a new connection from `ip`, unless its address or
    /// everyone already holds as many as they may.
    fn enter(&self, ip: IpAddr) -> Option<Waiting<'_>> {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = t.values().sum();
        let mine = t.entry(ip).or_default();
        if *mine >= UNGREETED_PER_ADDRESS || total >= UNGREETED_TOTAL {
            return None;
        }
        *mine += 1;
        Some(Waiting { table: self, ip })
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut t = self.table.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = t.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                t.remove(&self.ip);
            }
        }
    }
}

/// Everything data sessions share.
#[derive(Debug)]
pub struct DataSessions {
    pub services: Services,
    pub plane: Arc<DataPlane>,
    pub tokens: Sessions,
    pub tuning: Tuning,
    /// Chunk size for files sent to the appliance.
    pub chunk_size: u32,
    /// Where the control plane listens (a grant's host when nothing better
    /// is known).
    pub listen: SocketAddr,
    /// The symptom of an edge router that rewrites sources.
    pub sources: Arc<SourceWatch>,
    /// One session per destination file.
    pub claims: Arc<ferry_engine::claims::Claims>,
    /// Connections that have not said who they are yet.
    pub ungreeted: Ungreeted,
    /// Sessions over lanes, which their data lanes join.
    pub lanes: LaneSessions,
    /// TLS for lanes on leased ports.
    pub tcp_tls: ferry_engine::tcp::Acceptor,
}

/// Sessions over TCP or HTTPS lanes, by id, for their data lanes to join:
/// a lane must bring the session's key, from the session's address.
#[derive(Debug, Default)]
pub struct LaneSessions(
    std::sync::Mutex<std::collections::HashMap<u64, (std::sync::Weak<Lanes>, IpAddr)>>,
);

impl LaneSessions {
    fn table(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, (std::sync::Weak<Lanes>, IpAddr)>>
    {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, session: u64, lanes: &Arc<Lanes>, ip: IpAddr) {
        let mut t = self.table();
        t.retain(|_, (l, _)| l.strong_count() > 0);
        t.insert(session, (Arc::downgrade(lanes), ip));
    }

    fn remove(&self, session: u64) {
        self.table().remove(&session);
    }

    /// The session a data lane from `ip` asks to join, if its key is right.
    fn find(&self, session: u64, ip: IpAddr, key: &lanes::LaneKey) -> Option<Arc<Lanes>> {
        let t = self.table();
        let (lanes, owner) = t.get(&session)?;
        let lanes = lanes.upgrade()?;
        (*owner == ip && lanes.key_matches(key)).then_some(lanes)
    }
}

/// Why a session could not be granted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    #[error(transparent)]
    Plane(#[from] DataPlaneError),
    /// This node is draining, or its record could not be read.
    #[error(transparent)]
    Node(#[from] NodesError),
}

impl ferryd_core::Failing for GrantError {
    fn failure(&self) -> ferryd_core::Failure {
        match self {
            GrantError::Plane(e) => e.failure(),
            GrantError::Node(e) => e.failure(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            GrantError::Plane(e) => e.code(),
            GrantError::Node(e) => e.code(),
        }
    }
}

impl DataSessions {
    /// The host clients are told to send data to: the configured public
    /// address, else the host the client used to reach us, else our own.
    pub fn public_host(&self, host_header: Option<&str>) -> String {
        if let Some(p) = self.services.settings.current().public_address {
            return p;
        }
        if let Some(h) = host_header.and_then(host_of) {
            return h;
        }
        self.listen.ip().to_string()
    }

    /// Grants a session: leases a port to the client's address, binds its
    /// endpoint if needed, and mints the single-use token.
    pub async fn grant(
        self: &Arc<Self>,
        user: &User,
        key: Option<ApiKeyId>,
        ip: IpAddr,
        target: Target,
        resume_key: Option<String>,
        host_header: Option<&str>,
    ) -> Result<SessionGrant, GrantError> {
        // Asked first: a draining node, or a full one while another has
        // room, leases nothing.
        let live = &self.services.live;
        self.services
            .nodes
            .check_granting(live.count(), live.most_sessions())
            .await?;
        if let Some(warning) = self.sources.observe(user.id, ip) {
            log::warn!("{warning}");
            self.services
                .audit
                .note(
                    Actor::appliance()
                        .line(AuditAction::WarningSourceNat, ip.to_string())
                        .detail(warning),
                )
                .await;
        }
        let lease = {
            let ds = self.clone();
            self.plane
                .open(ip, user.id, move |endpoint, tcp, port| {
                    tokio::spawn(accept_loop(ds.clone(), endpoint, port));
                    tokio::spawn(tcp_accept_loop(ds.clone(), tcp, port)).abort_handle()
                })
                .await?
        };
        let port = lease.lease.port;
        let what = target.describe();
        let (session, token) = self.tokens.mint(SessionSpec {
            target,
            user: user.clone(),
            key,
            client_ip: ip,
            lease,
            resume_key,
        });
        self.services
            .audit
            .note(
                Actor::user(user.id, ip)
                    .line(AuditAction::SessionGrant, format!("session {session}"))
                    .detail(format!("{what} on port {port}")),
            )
            .await;
        Ok(SessionGrant {
            session,
            host: self.public_host(host_header),
            port,
            ports: self.plane.range().to_string(),
            token: token.iter().map(|b| format!("{b:02x}")).collect(),
            expires_in: self.tokens.ttl().as_secs(),
            cert_sha256: self.services.appliance.facts().fingerprint,
            chunk_size: self.chunk_size,
            client_address: ip.to_string(),
            transports: self.services.settings.current().transports.list(),
        })
    }
}

/// The host part of a `Host` header (`name`, `name:port`, `[v6]:port`).
fn host_of(header: &str) -> Option<String> {
    let h = header.trim();
    if h.is_empty() {
        return None;
    }
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split_once(']').map(|(ip, _)| ip.to_owned());
    }
    Some(h.rsplit_once(':').map_or(h, |(host, _)| host).to_owned())
}

/// Accepts connections on one data port until the port is closed.
pub async fn accept_loop(ds: Arc<DataSessions>, endpoint: Endpoint, port: u16) {
    while let Some(incoming) = endpoint.accept().await {
        let remote = incoming.remote_address();
        // The firewall drops these before they reach us; without it (or if
        // it is misconfigured) the daemon drops them itself.
        if !ds.plane.allows(remote.ip(), port) {
            log::warn!(port = port; "data packet from {remote}, which holds no lease on port {port}: dropped");
            incoming.ignore();
            continue;
        }
        tokio::spawn(handle(ds.clone(), incoming, port));
    }
}

async fn handle(ds: Arc<DataSessions>, incoming: Incoming, port: u16) {
    let remote = incoming.remote_address();
    // Until it presents a token, a connection is held short: few of them
    // per address, and each with a small window and no streams to push.
    let Some(waiting) = ds.ungreeted.enter(remote.ip()) else {
        log::warn!(port = port; "{remote} holds too many connections that have not greeted; refused");
        incoming.refuse();
        return;
    };
    // Each connection gets a pace of its own, so its rate can be set once
    // we know whose session it is, and changed while it runs.
    let pace = PaceHandle::new(ds.services.settings.pace());
    let config = for_connection(ds.plane.server_config(), &ds.tuning.for_peer(remote), &pace);
    // The greeting is read as soon as it comes: a resuming client sends it
    // with its first flight (0-RTT), and `Welcome` goes back before the
    // handshake completes. Nothing is acted on before the token checks.
    // (quinn always converts an incoming connection, so the awaited
    // branch is there for the type, not for a case that happens.)
    let connected = match incoming.accept_with(config) {
        Ok(connecting) => match connecting.into_0rtt() {
            Ok((conn, _)) => Ok(conn),
            Err(connecting) => connecting.await,
        },
        Err(e) => Err(e),
    };
    let conn = match connected {
        Ok(conn) => conn,
        Err(e) => {
            log::info!(port = port; "QUIC handshake from {remote} failed: {e}");
            return;
        }
    };
    let greeting = match accept_hello(&conn, HELLO_TIMEOUT).await {
        Ok(x) => x,
        Err(e) => {
            // The handshake runs under the greeting now: it may be what
            // failed, and then there is nobody to tell.
            if let Some(reason) = conn.close_reason() {
                log::info!(port = port; "QUIC connection from {remote} failed before its greeting: {reason}");
                return;
            }
            log::info!(port = port; "session from {remote} did not greet properly: {e}");
            conn.close(
                ErrorCode::Protocol.close_code().into(),
                b"expected a session greeting",
            );
            return;
        }
    };
    drop(waiting);
    greeted(ds, greeting, remote, port, pace).await;
}

/// Accepts TCP lanes on one leased port until the port is closed.
pub async fn tcp_accept_loop(ds: Arc<DataSessions>, listener: tokio::net::TcpListener, port: u16) {
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                log::warn!(port = port; "accepting a TCP lane: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // As for QUIC: the firewall drops these first; without it the
        // daemon does.
        if !ds.plane.allows(remote.ip(), port) {
            log::warn!(port = port; "TCP connection from {remote}, which holds no lease on port {port}: dropped");
            continue;
        }
        let ds = ds.clone();
        tokio::spawn(async move {
            let Some(waiting) = ds.ungreeted.enter(remote.ip()) else {
                log::warn!(port = port; "{remote} holds too many connections that have not greeted; refused");
                return;
            };
            ferry_engine::tcp::tune(&tcp);
            let tls = match tokio::time::timeout(HELLO_TIMEOUT, ds.tcp_tls.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    log::info!(port = port; "TLS handshake from {remote} failed: {e}");
                    return;
                }
                Err(_) => {
                    log::info!(port = port; "TLS handshake from {remote} timed out");
                    return;
                }
            };
            lane_arrived(&ds, Box::new(tls), remote, port, Transport::Tcp, waiting).await;
        });
    }
}

/// An HTTPS lane, upgraded on the control port from `remote` (the client's
/// address by the control plane's one rule).
pub async fn https_lane(ds: Arc<DataSessions>, lane: BoxedLane, remote: SocketAddr) {
    let Some(waiting) = ds.ungreeted.enter(remote.ip()) else {
        log::warn!(
            "{remote} holds too many connections that have not greeted; an HTTPS lane refused"
        );
        return;
    };
    // HTTPS lanes come in on the control port; logs and audit lines name it.
    lane_arrived(
        &ds,
        lane,
        remote,
        ds.listen.port(),
        Transport::Https,
        waiting,
    )
    .await;
}

/// A new lane, TCP or HTTPS: a session's control lane greets, a data lane
/// joins its session.
async fn lane_arrived(
    ds: &Arc<DataSessions>,
    lane: BoxedLane,
    remote: SocketAddr,
    port: u16,
    transport: Transport,
    waiting: Waiting<'_>,
) {
    let opening = match tokio::time::timeout(HELLO_TIMEOUT, lanes::accept(lane, transport)).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            log::info!(port = port; "{transport} lane from {remote} did not open properly: {e}");
            return;
        }
        Err(_) => {
            log::info!(port = port; "{transport} lane from {remote} said nothing in time");
            return;
        }
    };
    drop(waiting);
    match opening {
        Opening::Join { session, key, lane } => {
            let found = ds.lanes.find(session, remote.ip(), &key);
            if found.is_none() {
                log::warn!(port = port; "a {transport} lane from {remote} asked to join session {session} without its key: refused");
                audit_refusal(
                    ds,
                    remote.ip(),
                    format!("session {session}"),
                    format!("a {transport} data lane without the session's key"),
                )
                .await;
            }
            lanes::answer_join(found.as_ref(), lane).await;
        }
        control => match lane_greeting(control) {
            Ok(greeting) => {
                let pace = PaceHandle::new(ds.services.settings.pace());
                greeted(ds.clone(), greeting, remote, port, pace).await;
            }
            Err(e) => {
                log::info!(port = port; "{transport} lane from {remote} did not greet properly: {e}")
            }
        },
    }
}

/// Audits a refused session or lane: from where, and why. The refusal
/// has happened; a line that cannot be written is logged and counted.
async fn audit_refusal(ds: &DataSessions, from: IpAddr, subject: String, detail: String) {
    ds.services
        .audit
        .note(
            Actor {
                user: None,
                from: Some(from),
            }
            .line(AuditAction::SessionRefused, subject)
            .detail(detail),
        )
        .await;
}

/// A session that has greeted, whatever carries it: its token is checked
/// (single use, bound to the address it was granted to), and it runs.
async fn greeted(
    ds: Arc<DataSessions>,
    greeting: Greeting,
    remote: SocketAddr,
    port: u16,
    pace: PaceHandle,
) {
    let Greeting {
        link,
        mut send,
        recv,
        token,
        request,
    } = greeting;
    let transport = link.transport();
    // A transport the site turned off is refused before the token is
    // spent: the client may still use it over another.
    if !ds.services.settings.current().transports.allows(transport) {
        let message = format!("this appliance does not carry data over {transport}");
        log::info!(port = port; "session from {remote} refused: {message}");
        refuse(&link, &mut send, ErrorCode::PathRefused, &message).await;
        return;
    }
    let (id, spec) = match ds.tokens.redeem(&token, remote.ip()) {
        Ok(x) => x,
        Err((code, message)) => {
            log::warn!(port = port; "{transport} session from {remote} refused: {message}");
            audit_refusal(
                &ds,
                remote.ip(),
                format!("port {port}"),
                format!("{message} (over {transport})"),
            )
            .await;
            refuse(&link, &mut send, code, &message).await;
            return;
        }
    };
    let job_cap = match &spec.target {
        Target::Upload { job, .. } | Target::Download { job, .. } => job.cap(),
        _ => None,
    }
    .and_then(|c| Rate::from_bits_per_sec(c.bits_per_sec).ok());
    let granted = pace_for(ds.services.settings.pace(), job_cap, request);
    pace.set(granted);
    // Its data lanes may join from now on, with the key `welcome` gives.
    if let Link::Lanes(l) = &link {
        ds.lanes.add(id, l, remote.ip());
    }
    // Its windows are sized, within its memory share, once it is admitted.
    if let Err(e) = welcome(&mut send, id, granted).await {
        log::info!(session_id = id; "session {id} lost before it started: {e}");
        ds.lanes.remove(id);
        return;
    }
    log::info!(session_id = id; "session {id} from {remote} over {transport}");
    let session = Session {
        ds: ds.clone(),
        conn: link,
        id,
        spec,
        remote,
        pace,
        request,
    };
    session.run(Control::spawn(send, recv)).await;
    ds.lanes.remove(id);
}

/// One redeemed session.
struct Session {
    ds: Arc<DataSessions>,
    conn: Link,
    id: u64,
    spec: Arc<SessionSpec>,
    remote: SocketAddr,
    pace: PaceHandle,
    request: PaceRequest,
}

/// What services may do to a running session.
struct Handle {
    stop: StopSignal,
    pace: PaceHandle,
    conn: Link,
    tuning: Tuning,
    frames: mpsc::WeakUnboundedSender<ferry_proto::Frame>,
    priorities: Option<mpsc::UnboundedSender<(SharePath, Priority)>>,
    progress: Arc<Progress>,
    /// The session's share of the appliance's memory, in bytes of window;
    /// also the cap on what its sender reads ahead.
    share: Arc<std::sync::atomic::AtomicU64>,
}

impl SessionHandle for Handle {
    fn stop(&self, code: ErrorCode, message: &str) {
        self.stop.stop(code, message);
    }

    fn repace(&self, pace: Pace) {
        self.pace.set(pace);
        self.conn.size_windows(
            &self.tuning,
            pace,
            self.share.load(std::sync::atomic::Ordering::Relaxed),
        );
        // The client's controller follows too (on an upload it sends).
        if let Some(tx) = self.frames.upgrade()
            && tx.send(ferry_proto::Frame::Pace(pace)).is_err()
        {
            log::debug!("the session ended before its new pace could be sent");
        }
    }

    fn pace(&self) -> Pace {
        self.pace.get()
    }

    fn reprioritise(&self, path: &SharePath, priority: Priority) {
        if let Some(tx) = &self.priorities
            && tx.send((path.clone(), priority)).is_err()
        {
            log::debug!("the session ended before {path} could be moved");
        }
    }

    fn progress(&self) -> Snapshot {
        self.progress.snapshot()
    }

    fn share_memory(&self, window: u64) {
        self.share
            .store(window, std::sync::atomic::Ordering::Relaxed);
        self.conn
            .size_windows(&self.tuning, self.pace.get(), window);
    }
}

impl Session {
    fn who(&self) -> Actor {
        Actor::user(self.spec.user.id, self.remote.ip())
    }

    async fn run(self, control: Control) {
        let services = &self.ds.services;
        let progress = Arc::new(Progress::default());
        let stop = StopSignal::new();
        let target = &self.spec.target;
        let job = match services
            .transfers
            .begin(
                target,
                &self.spec.user,
                self.remote.ip(),
                self.spec.resume_key.as_deref(),
            )
            .await
        {
            Ok(j) => j,
            Err(e) => {
                log::error!("cannot record the job of session {}: {e}", self.id);
                self.conn
                    .close(ErrorCode::Internal.close_code(), b"internal error");
                return;
            }
        };
        let delivery_job = target.delivery().is_some();
        log::info!(
            job_id = job.0, session_id = self.id;
            "session {} from {}: job {job} as {}", self.id, self.remote, self.spec.user.email
        );
        let (prio_tx, prio_rx) = mpsc::unbounded_channel();
        let share = Arc::new(std::sync::atomic::AtomicU64::new(
            ferry_engine::transport::MIN_WINDOW,
        ));
        let handle = Arc::new(Handle {
            stop: stop.clone(),
            pace: self.pace.clone(),
            conn: self.conn.clone(),
            tuning: self.ds.tuning.clone(),
            frames: control.frames(),
            priorities: delivery_job.then_some(prio_tx),
            progress: progress.clone(),
            share: share.clone(),
        });
        let urgent = match services.transfers.urgent(job).await {
            Ok(u) => u,
            Err(e) => {
                // Not knowing, it shares the site's cap like any job.
                log::error!(job_id = job.0; "cannot read whether job {job} is urgent: {e}");
                false
            }
        };
        let admitted = services.live.admit(LiveSession {
            session: self.id,
            job,
            kind: target.kind(),
            user: self.spec.user.id,
            share: Some(target.share().id),
            key: self.spec.key,
            client: self.remote,
            port: self.spec.lease.lease.port,
            transport: self.conn.transport(),
            started: Instant::now(),
            asked: self.request,
            own: self.pace.get(),
            urgent,
            handle,
        });
        if let Err(crowded) = admitted {
            log::warn!(job_id = job.0, session_id = self.id; "session {} refused: {crowded}", self.id);
            control.send(ferry_proto::Frame::Error {
                code: ErrorCode::Busy,
                message: crowded.to_string(),
            });
            control.finish().await;
            let ending = Ending::Interrupted(crowded.to_string());
            self.settle(job, &ending).await;
            return;
        }
        // An admin may have marked the job while it was being admitted,
        // before the registry held it: what the store says now wins.
        if let Ok(now) = services.transfers.urgent(job).await
            && now != urgent
        {
            services.live.set_urgent(job, now);
        }
        // Admitted: its peer may open streams now, within its share.
        self.conn.open_up(
            &self.ds.tuning,
            self.pace.get(),
            share.load(std::sync::atomic::Ordering::Relaxed),
        );
        let direction = match &self.spec.target {
            Target::Put { .. } | Target::Upload { .. } => meters::Direction::In,
            Target::Get { .. } | Target::Download { .. } => meters::Direction::Out,
        };
        let metered = Metered {
            link: self.conn.clone(),
            direction,
            counted: Arc::default(),
        };
        let recorder = tokio::spawn(record_progress(
            self.ds.clone(),
            job,
            progress.clone(),
            !delivery_job,
            metered.clone(),
        ));
        let watchdog = tokio::spawn(watch_for_stall(
            self.ds.clone(),
            self.id,
            job,
            progress.clone(),
            stop.clone(),
            self.who(),
        ));
        let memory = Some(share);
        let result = match target {
            Target::Put { share, path } => {
                self.put(control, share, path, progress.clone(), stop.clone())
                    .await
            }
            Target::Get { share, path } => {
                self.get(control, share, path, progress.clone(), stop.clone(), memory)
                    .await
            }
            Target::Upload {
                job: j,
                delivery,
                share,
            } => {
                self.upload(
                    control,
                    j.id,
                    delivery,
                    share,
                    progress.clone(),
                    stop.clone(),
                    prio_rx,
                )
                .await
            }
            Target::Download {
                job: j,
                delivery,
                share,
            } => {
                self.download(
                    control,
                    j.id,
                    delivery,
                    share,
                    progress.clone(),
                    stop.clone(),
                    prio_rx,
                    memory,
                )
                .await
            }
        };
        recorder.abort();
        watchdog.abort();
        metered.count(&progress.snapshot());
        services.live.leave(self.id);
        // The last progress, so a finished direct job shows its totals.
        if let Err(e) = services
            .transfers
            .progress(job, !delivery_job, &progress.snapshot(), 0)
            .await
        {
            log::error!(job_id = job.0; "cannot record the progress of job {job}: {e}");
        }
        let ending = self.ending(job, &result, &stop, &progress.snapshot()).await;
        self.settle(job, &ending).await;
    }

    async fn settle(&self, job: JobId, ending: &Ending) {
        if let Err(e) = self
            .ds
            .services
            .transfers
            .settle(job, ending, &self.spec.target, self.who())
            .await
        {
            log::error!(job_id = job.0; "cannot settle job {job} after its session: {e}");
        }
    }

    /// Classifies how the session ended, where it ended.
    async fn ending(
        &self,
        job: JobId,
        result: &Result<Outcome, EngineError>,
        stop: &StopSignal,
        moved: &ferry_engine::Snapshot,
    ) -> Ending {
        match result {
            Ok(_) if self.spec.target.delivery().is_some() => {
                // A delivery job is done when every one of its files is.
                match self.ds.services.transfers.all_files_done(job).await {
                    Ok(0) => Ending::Done,
                    Ok(missing) => Ending::Failed(format!(
                        "{missing} files never reached the appliance (its upload ended without them)"
                    )),
                    Err(e) => Ending::Interrupted(format!("cannot check the job's files: {e}")),
                }
            }
            Ok(_) => Ending::Done,
            // A stalled session is the network's or the peer's doing: the
            // job waits for its client as after any interruption.
            Err(_) if stop.is_stopped() && stop.reason().0 == ErrorCode::Stalled => {
                Ending::Interrupted(stop.reason().1)
            }
            Err(_) if stop.is_stopped() => Ending::Stopped(stop.reason().1),
            // A direct put or get whose every file arrived and was
            // confirmed is done, however the connection ended after that
            // (a client that exits on its last receipt, a network that
            // drops then).
            Err(e)
                if self.spec.target.delivery().is_none()
                    && moved.files_total > 0
                    && moved.files_done >= moved.files_total =>
            {
                log::info!(job_id = job.0; "job {job}: every file arrived before the session ended ({e})");
                Ending::Done
            }
            Err(e @ EngineError::Stopped { .. }) => Ending::Interrupted(e.to_string()),
            Err(e) if e.is_transient() => Ending::Interrupted(e.to_string()),
            Err(EngineError::Proto(ProtoError::Peer {
                code: ErrorCode::Aborted,
                message,
            })) => Ending::Interrupted(message.clone()),
            Err(e) => Ending::Failed(e.to_string()),
        }
    }

    fn root(&self, share: &ferry_store::Share) -> Result<ShareRoot, EngineError> {
        ShareRoot::open(&share.abs_path, format!("share={}", share.name))
    }

    fn claims(&self) -> ClaimScope {
        ClaimScope {
            claims: self.ds.claims.clone(),
            session: self.id,
        }
    }

    async fn put(
        &self,
        control: Control,
        share: &ferry_store::Share,
        path: &SharePath,
        progress: Arc<Progress>,
        stop: StopSignal,
    ) -> Result<Outcome, EngineError> {
        let sink = self.root(share)?.sink(path.clone())?;
        let mut r = Receiving::new(sink);
        r.progress = progress;
        r.stop = stop;
        r.claims = Some(self.claims());
        receive(&self.conn, control, r).await
    }

    async fn get(
        &self,
        control: Control,
        share: &ferry_store::Share,
        path: &SharePath,
        progress: Arc<Progress>,
        stop: StopSignal,
        memory: Option<Arc<std::sync::atomic::AtomicU64>>,
    ) -> Result<Outcome, EngineError> {
        let root = self.root(share)?;
        let path = path.clone();
        let planned =
            tokio::task::spawn_blocking(move || plan_share(&root, &path, &|_| Priority::DEFAULT))
                .await
                .map_err(|e| EngineError::task("planning", e))?;
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
            self.sending(progress, stop, None, memory),
        )
        .await
    }

    fn sending(
        &self,
        progress: Arc<Progress>,
        stop: StopSignal,
        events: Option<mpsc::UnboundedSender<FileEvent>>,
        memory: Option<Arc<std::sync::atomic::AtomicU64>>,
    ) -> Sending {
        let mut s = Sending::new(ChunkLayout::new(self.ds.chunk_size).unwrap_or_default());
        s.progress = progress;
        s.stop = stop;
        s.events = events;
        // Done means every byte went from here, or the recipient proved
        // what it held: a claimed receipt is not a delivery.
        s.verify_receipts = true;
        // Keep as much in flight as the connection's window allows, and no
        // more than the session's share of the memory.
        s.opts.max_bytes_in_flight = self.ds.tuning.window_for(self.pace.get(), self.conn.rtt());
        s.opts.max_streams = self.conn.chunk_streams(s.opts.max_streams);
        s.opts.limit = memory;
        // The job's and the site's cap hold at any RTT.
        s.pace = Some(self.pace.clone());
        s
    }

    /// The sender's files into the delivery's folder. Only the files
    /// declared with the delivery are accepted; each one done is recorded
    /// (with what was committed) and wakes the recipients' sessions.
    #[allow(clippy::too_many_arguments)]
    async fn upload(
        &self,
        control: Control,
        job: JobId,
        delivery: &ferry_store::Delivery,
        share: &ferry_store::Share,
        progress: Arc<Progress>,
        stop: StopSignal,
        priorities: mpsc::UnboundedReceiver<(SharePath, Priority)>,
    ) -> Result<Outcome, EngineError> {
        let folder = SharePath::parse_dir(&delivery.folder).map_err(|e| EngineError::Io {
            path: delivery.folder.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })?;
        let declared: HashSet<String> = self
            .ds
            .services
            .jobs
            .tasks(job)
            .await
            .map_err(|e| EngineError::task("declared files", e))?
            .into_iter()
            .filter(|t| t.status != ferry_domain::TaskStatus::Excluded)
            .map(|t| t.path)
            .collect();
        let sink = self.root(share)?.sink(folder)?;
        let mut r = Receiving::new(sink);
        r.progress = progress;
        r.stop = stop;
        r.claims = Some(self.claims());
        r.allowed = Some(Arc::new(move |p: &SharePath| declared.contains(p.as_str())));
        r.reprioritise = Some(priorities);
        let (tx, events) = mpsc::unbounded_channel();
        r.events = Some(tx);
        let recorder = tokio::spawn(record_files(
            self.ds.clone(),
            self.spec.clone(),
            job,
            events,
        ));
        let result = receive(&self.conn, control, r).await;
        if recorder.await.is_err() {
            log::error!(job_id = job.0; "the file recorder of job {job} died");
        }
        result
    }

    /// A delivery's files to one recipient, each as soon as it has landed,
    /// highest priority first.
    #[allow(clippy::too_many_arguments)]
    async fn download(
        &self,
        control: Control,
        job: JobId,
        delivery: &ferry_store::Delivery,
        share: &ferry_store::Share,
        progress: Arc<Progress>,
        stop: StopSignal,
        mut priorities: mpsc::UnboundedReceiver<(SharePath, Priority)>,
        memory: Option<Arc<std::sync::atomic::AtomicU64>>,
    ) -> Result<Outcome, EngineError> {
        let root = self.root(share)?;
        let (updates, plan) = mpsc::unbounded_channel();
        let (tx, events) = mpsc::unbounded_channel();
        let feeder = tokio::spawn(feed(
            self.ds.clone(),
            job,
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
        let recorder = tokio::spawn(record_files(
            self.ds.clone(),
            self.spec.clone(),
            job,
            events,
        ));
        let result = send_stream(
            &self.conn,
            control,
            plan,
            self.sending(progress, stop, Some(tx), memory),
        )
        .await;
        feeder.abort();
        forwarder.abort();
        if recorder.await.is_err() {
            log::error!(job_id = job.0; "the file recorder of job {job} died");
        }
        result
    }
}

/// Records each file a delivery session finishes, as it finishes.
async fn record_files(
    ds: Arc<DataSessions>,
    spec: Arc<SessionSpec>,
    job: JobId,
    mut events: mpsc::UnboundedReceiver<FileEvent>,
) {
    while let Some(ev) = events.recv().await {
        let (path, committed) = match ev {
            FileEvent::Done {
                path,
                size,
                mtime_ns,
                digest,
            } => (path, Some((size, mtime_ns, digest.to_hex()))),
            FileEvent::Skipped { path, .. } => (path, None),
        };
        if let Err(e) = ds
            .services
            .transfers
            .file_done(&spec.target, job, &path, committed)
            .await
        {
            log::error!(job_id = job.0; "cannot record {path} of job {job} as done: {e}");
        }
    }
}

/// Feeds a download session's plan: files that have landed, highest
/// priority first, never a file while one of higher priority is still on
/// its way to the appliance; the plan ends once the upload is over and
/// every file is planned.
async fn feed(
    ds: Arc<DataSessions>,
    job: JobId,
    delivery: ferry_store::Delivery,
    root: ShareRoot,
    updates: mpsc::UnboundedSender<PlanUpdate>,
    stop: StopSignal,
) {
    let services = &ds.services;
    let mut changes = services.deliveries.hub.subscribe(delivery.id);
    let Ok(folder) = SharePath::parse_dir(&delivery.folder) else {
        return;
    };
    let mut planned: HashSet<String> = HashSet::new();
    loop {
        changes.mark_unchanged();
        // What the upload verified as it received each file: a recipient's
        // claim to hold one is checked against it, without reading it here.
        let known = match services.transfers.known_digests(delivery.id).await {
            Ok(k) => k,
            Err(e) => {
                log::warn!(job_id = job.0; "cannot read the digests of job {job}'s files: {e}");
                Default::default()
            }
        };
        let landing = match services.transfers.landing(job, delivery.id).await {
            Ok(l) => l,
            Err(e) => {
                log::warn!(job_id = job.0; "cannot see what has landed for job {job}: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let ready_now = |planned: &HashSet<String>| {
            ferryd_core::deliveries::ready_to_plan(
                &landing.tasks,
                &landing.landed,
                landing.upload_over,
                planned,
            )
        };
        let end = || {
            if updates.send(PlanUpdate::End).is_err() {
                log::debug!("job {job}'s session ended before its plan did");
            }
        };
        let Some(ready) = ready_now(&planned) else {
            // Every file is planned, or the upload ended without the rest.
            end();
            return;
        };
        let batch: Vec<SourceFile> = ready
            .iter()
            .filter_map(|t| {
                let rel = SharePath::parse(&t.path).ok()?;
                let in_share = folder.join(&rel).ok()?;
                Some(SourceFile {
                    path: rel,
                    origin: Origin::Share {
                        root: root.dir().clone(),
                        path: in_share,
                    },
                    size: t.size as u64,
                    mtime_ns: t.mtime_ns,
                    priority: Priority::new(t.priority).unwrap_or_default(),
                    digest: known
                        .get(&t.path)
                        .and_then(|d| ferry_proto::Digest::from_hex(d)),
                })
            })
            .collect();
        if !batch.is_empty() {
            planned.extend(batch.iter().map(|f| f.path.as_str().to_owned()));
            if updates.send(PlanUpdate::Files(batch)).is_err() {
                return;
            }
            // That may have been the last of it. The recipient's session
            // cannot finish before its plan ends, so end it now rather
            // than at the next change (up to five seconds away).
            if ready_now(&planned).is_none() {
                end();
                return;
            }
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

/// Closes a session that has stopped making progress (see
/// [`ferry_domain::stall`]), giving its lease and memory back; its client
/// resumes with a new session.
async fn watch_for_stall(
    ds: Arc<DataSessions>,
    session: u64,
    job: JobId,
    progress: Arc<Progress>,
    stop: StopSignal,
    who: Actor,
) {
    let start = Instant::now();
    let mut watch = ferry_domain::stall::Watch::new(Duration::ZERO);
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let s = progress.snapshot();
        let waiting = s.bytes_done() < s.bytes_total || s.files_done < s.files_total;
        if watch.observe(start.elapsed(), s.bytes_transferred, waiting) {
            let why = format!(
                "session {session} moved nothing for {} s while {} bytes waited; closed to free its port and memory",
                ferry_domain::stall::STALL_AFTER.as_secs(),
                s.bytes_total.saturating_sub(s.bytes_done())
            );
            log::warn!(job_id = job.0, session_id = session; "{why}");
            ds.services
                .audit
                .note(
                    who.line(AuditAction::SessionStalled, format!("session {session}"))
                        .detail(why.clone()),
                )
                .await;
            stop.stop(ErrorCode::Stalled, why);
            return;
        }
    }
}

/// Writes progress into the job row once a second.
/// A session as the metrics see it: its bytes, counted once each, and
/// its path's round trip and losses.
#[derive(Clone)]
struct Metered {
    link: Link,
    direction: meters::Direction,
    /// Bytes counted so far.
    counted: Arc<std::sync::atomic::AtomicU64>,
}

impl Metered {
    /// Counts what moved since the last count.
    fn count(&self, s: &ferry_engine::Snapshot) {
        let before = self
            .counted
            .swap(s.bytes_transferred, std::sync::atomic::Ordering::Relaxed);
        meters::bytes(
            self.direction,
            self.link.transport().as_str(),
            s.bytes_transferred.saturating_sub(before),
        );
    }

    /// One second's sample of the session's pace.
    fn sample(&self, rate_bytes: f64) {
        let loss = self
            .link
            .losses()
            .filter(|(sent, _)| *sent > 0)
            .map(|(sent, lost)| lost as f64 / sent as f64);
        meters::session_pace(rate_bytes, self.link.rtt(), loss);
    }
}

async fn record_progress(
    ds: Arc<DataSessions>,
    job: JobId,
    progress: Arc<Progress>,
    direct: bool,
    metered: Metered,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = (Instant::now(), 0u64);
    loop {
        tick.tick().await;
        let s = progress.snapshot();
        let elapsed = last.0.elapsed().as_secs_f64().max(0.001);
        let rate = (s.bytes_transferred.saturating_sub(last.1) as f64 / elapsed) as i64;
        last = (Instant::now(), s.bytes_transferred);
        metered.count(&s);
        metered.sample(rate as f64);
        if let Err(e) = ds.services.transfers.progress(job, direct, &s, rate).await {
            log::warn!(job_id = job.0; "cannot record the progress of job {job}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_forms() {
        assert_eq!(
            host_of("ferry.example.com:8443").as_deref(),
            Some("ferry.example.com")
        );
        assert_eq!(
            host_of("ferry.example.com").as_deref(),
            Some("ferry.example.com")
        );
        assert_eq!(host_of("[2001:db8::1]:443").as_deref(), Some("2001:db8::1"));
        assert_eq!(host_of(""), None);
    }
}
