//! Sessions from the client: `put` and `get` (direct transfers), and the
//! two sides of a delivery, `upload` (the sender's files to the appliance)
//! and `download` (a recipient's files from it). Each asks the appliance for
//! a data session, moves the files over QUIC, and when the network or the
//! appliance drops out, asks for a new session and resumes where the
//! receiver left off.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_api::{SessionGrant, SessionKind, SessionRequest};
use ferry_engine::files::{Sink, SourceFile, plan_local};
use ferry_engine::handshake::{Introduction, PaceRequest, Session, connect_lanes, connect_with};
use ferry_engine::lanes::DEFAULT_LANES;
use ferry_engine::receive::{Receiving, receive};
use ferry_engine::send::{Planned, Sending, send_planned};
use ferry_engine::tls::Fingerprint;
use ferry_engine::transport::{Tuning, client_endpoint};
use ferry_engine::{ConnectError, EngineError, FileEvent, Link, Outcome, Progress, StopSignal};
use ferry_proto::{ChunkLayout, Frame, PriorityRules, Transport};
use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;

use crate::api::Api;
use crate::error::ClientError;
use crate::reach::{self, Choice};

/// What a transfer did, as `--json` prints it.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Report {
    pub files: u64,
    pub bytes_total: u64,
    /// Payload bytes that crossed the network, over every attempt.
    pub bytes_transferred: u64,
    /// Bytes the receiver already held, which resume did not resend.
    pub bytes_skipped: u64,
    pub seconds: f64,
    /// UDP payload bytes this side sent, over every attempt.
    pub udp_bytes_sent: u64,
    /// Of those, bytes in packets declared lost (and so sent again).
    pub bytes_lost: u64,
    /// The round-trip time at the end of the last attempt, in ms.
    pub rtt_ms: f64,
    /// The largest UDP payload the last attempt's path carried (QUIC's path
    /// MTU discovery), in bytes.
    pub udp_payload: Option<u16>,
    /// Packets per system call the kernel batched for this side's UDP
    /// socket, sending (GSO) and receiving (GRO); 1 is no batching.
    pub gso_segments: Option<usize>,
    pub gro_segments: Option<usize>,
    /// How the last attempt's bytes travelled.
    pub transport: Option<Transport>,
    /// How the transfer started, in seconds from its first request to the
    /// appliance, for the attempt that moved the first chunk byte.
    pub start: Start,
}

/// The three steps of a session's start, each in seconds from the first
/// request to the appliance. Round trips are these over the path's RTT.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Start {
    /// The appliance granted the session (its token and port lease).
    pub granted_secs: Option<f64>,
    /// The data connection was open and greeted.
    pub opened_secs: Option<f64>,
    /// The first chunk byte went out (a sender) or came in (a receiver).
    pub first_byte_secs: Option<f64>,
}

/// How hard to try, and who listens.
#[derive(Clone)]
pub struct Options {
    /// New sessions after a transient failure (a lost link, a restart).
    pub retries: u32,
    /// How long the QUIC handshake may take before the port is declared
    /// unreachable.
    pub handshake_timeout: Duration,
    pub priorities: PriorityRules,
    /// Called with the progress counters of each attempt.
    pub on_attempt: Arc<dyn Fn(Arc<Progress>) + Send + Sync>,
    /// Per-file news.
    pub events: Option<UnboundedSender<FileEvent>>,
    pub stop: StopSignal,
    /// The policy and cap this client asks for.
    pub pace: PaceRequest,
    /// Which transports the sessions may use.
    pub transport: Choice,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            retries: 3,
            handshake_timeout: Duration::from_secs(10),
            priorities: PriorityRules::default(),
            on_attempt: Arc::new(|_| {}),
            events: None,
            stop: StopSignal::new(),
            pace: PaceRequest::default(),
            transport: Choice::Auto,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

/// Lists local files and folders to send, with their priorities.
pub async fn plan(
    locals: &[PathBuf],
    priorities: &PriorityRules,
) -> Result<Vec<SourceFile>, ClientError> {
    let priorities = priorities.clone();
    let locals = locals.to_vec();
    Ok(
        tokio::task::spawn_blocking(move || plan_local(&locals, &|p| priorities.of(p)))
            .await
            .map_err(|e| ClientError::Invalid(format!("listing files: {e}")))??,
    )
}

/// Sends local files and folders into the folder `target`
/// (`share=NAME/dir/`).
pub async fn put(
    api: &Api,
    locals: &[PathBuf],
    target: &str,
    opts: &Options,
) -> Result<Report, ClientError> {
    let files = plan(locals, &opts.priorities).await?;
    let request = SessionRequest {
        kind: SessionKind::Put,
        target: Some(target.to_owned()),
        job: None,
        resume_key: Some(run_key(api, "put", target, locals)),
    };
    send_files(api, &request, files, opts).await
}

/// What names a put's or get's run: its kind, its appliance, its target
/// and its local paths (made absolute), hashed. The same command run again
/// (after a crash, a lost network, a killed terminal) gives the same key,
/// so the appliance continues its job instead of opening a second one.
pub fn run_key(api: &Api, kind: &str, target: &str, locals: &[PathBuf]) -> String {
    let mut h = blake3::Hasher::new();
    for part in [kind, api.server(), target] {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    for local in locals {
        let full = std::path::absolute(local).unwrap_or_else(|_| local.clone());
        h.update(full.as_os_str().as_encoded_bytes());
        h.update(&[0]);
    }
    h.finalize().to_hex()[..32].to_owned()
}

/// Uploads a delivery's files (as declared when it was made) for its
/// upload job.
pub async fn upload(
    api: &Api,
    job: i64,
    files: Vec<SourceFile>,
    opts: &Options,
) -> Result<Report, ClientError> {
    let request = SessionRequest {
        kind: SessionKind::Upload,
        target: None,
        job: Some(job),
        resume_key: None,
    };
    send_files(api, &request, files, opts).await
}

async fn send_files(
    api: &Api,
    request: &SessionRequest,
    files: Vec<SourceFile>,
    opts: &Options,
) -> Result<Report, ClientError> {
    // The plan is made once the grant fixes the chunk size; its first
    // frames ride the greeting when the session goes over QUIC.
    let make = |grant: &SessionGrant, budget: usize| {
        let layout = ChunkLayout::new(grant.chunk_size).unwrap_or_default();
        let mut planned = Planned::new(files.clone(), layout)?;
        let opening = planned.opening(budget);
        Ok((planned, opening))
    };
    attempts(
        api,
        request,
        opts,
        make,
        |session, grant, progress, planned| {
            let mut sending = Sending::new(ChunkLayout::new(grant.chunk_size).unwrap_or_default());
            sending.progress = progress;
            sending.events = opts.events.clone();
            sending.stop = opts.stop.clone();
            let tuning = Tuning::default();
            // Keep as much in flight as the connection's window allows.
            sending.opts.max_bytes_in_flight =
                tuning.window_for(session.pace.get(), session.link.rtt());
            sending.opts.max_streams = session.link.chunk_streams(sending.opts.max_streams);
            // The pace the appliance set (and later changes) holds at any RTT.
            sending.pace = Some(session.pace.clone());
            async move {
                let (conn, control) = session.into_control(&tuning);
                send_planned(&conn, control, planned, sending).await
            }
        },
    )
    .await
}

/// Fetches a file or folder (`share=NAME/path`) into `local_dir`.
pub async fn get(
    api: &Api,
    source: &str,
    local_dir: &Path,
    opts: &Options,
) -> Result<Report, ClientError> {
    let request = SessionRequest {
        kind: SessionKind::Get,
        target: Some(source.to_owned()),
        job: None,
        resume_key: Some(run_key(api, "get", source, &[local_dir.to_path_buf()])),
    };
    receive_into(api, &request, local_dir, opts).await
}

/// Receives a download job into `local_dir`. The session lasts until the
/// delivery's upload is complete and every file is here.
pub async fn download(
    api: &Api,
    job: i64,
    local_dir: &Path,
    opts: &Options,
) -> Result<Report, ClientError> {
    let request = SessionRequest {
        kind: SessionKind::Download,
        target: None,
        job: Some(job),
        resume_key: None,
    };
    receive_into(api, &request, local_dir, opts).await
}

async fn receive_into(
    api: &Api,
    request: &SessionRequest,
    local_dir: &Path,
    opts: &Options,
) -> Result<Report, ClientError> {
    let dir = local_dir.to_path_buf();
    let nothing = |_: &SessionGrant, _: usize| Ok(((), Vec::new()));
    attempts(
        api,
        request,
        opts,
        nothing,
        |session, _grant, progress, ()| {
            let dir = dir.clone();
            let (events, stop) = (opts.events.clone(), opts.stop.clone());
            async move {
                let mut receiving = Receiving::new(Sink::local(&dir)?);
                receiving.progress = progress;
                receiving.events = events;
                receiving.stop = stop;
                let (conn, control) = session.into_control(&Tuning::default());
                receive(&conn, control, receiving).await
            }
        },
    )
    .await
}

/// Runs sessions until one completes, a failure is final, or the retries
/// are spent.
async fn attempts<P, M, F, Fut>(
    api: &Api,
    request: &SessionRequest,
    opts: &Options,
    make: M,
    run: F,
) -> Result<Report, ClientError>
where
    M: Fn(&SessionGrant, usize) -> Result<(P, Vec<Frame>), EngineError>,
    F: Fn(Session, SessionGrant, Arc<Progress>, P) -> Fut,
    Fut: std::future::Future<Output = Result<Outcome, EngineError>>,
{
    let started = Instant::now();
    let mut transferred = 0u64;
    let mut attempt = 0u32;
    let mut net = Report::default();
    loop {
        let progress = Arc::new(Progress::default());
        (opts.on_attempt)(progress.clone());
        let mut steps = Steps::default();
        let work = Attempt {
            make: &make,
            run: &run,
            progress: progress.clone(),
        };
        let result = once(api, request, opts, work, &mut net, &mut steps).await;
        transferred += progress.snapshot().bytes_transferred;
        if net.start.first_byte_secs.is_none()
            && let Some(first_byte) = progress.first_byte()
        {
            let secs = |at: Option<Instant>| at.map(|t| t.duration_since(started).as_secs_f64());
            net.start = Start {
                granted_secs: secs(steps.granted),
                opened_secs: secs(steps.opened),
                first_byte_secs: secs(Some(first_byte)),
            };
        }
        match result {
            Ok(outcome) => {
                return Ok(Report {
                    files: outcome.files,
                    bytes_total: outcome.bytes_total,
                    bytes_transferred: transferred,
                    bytes_skipped: outcome.bytes_skipped,
                    seconds: started.elapsed().as_secs_f64(),
                    ..net
                });
            }
            Err(e) if e.is_transient() && attempt < opts.retries && !opts.stop.is_stopped() => {
                attempt += 1;
                let wait = Duration::from_secs(1 << attempt.min(5));
                log::warn!(
                    "{e}; trying again in {}s (attempt {} of {})",
                    wait.as_secs(),
                    attempt,
                    opts.retries
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    () = opts.stop.stopped() => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// When an attempt's session was granted and opened.
#[derive(Default)]
struct Steps {
    granted: Option<Instant>,
    opened: Option<Instant>,
}

/// One attempt's work: what its session carries, made from the grant
/// (`make`, given how many bytes of opening frames may ride the greeting),
/// and what runs over it.
struct Attempt<'a, M, F> {
    make: &'a M,
    run: &'a F,
    progress: Arc<Progress>,
}

/// Bytes of a sender's opening plan frames that go with its greeting:
/// about what QUIC's initial congestion window carries in one flight.
const OPENING_BUDGET: usize = 12 << 10;

async fn once<P, M, F, Fut>(
    api: &Api,
    request: &SessionRequest,
    opts: &Options,
    attempt: Attempt<'_, M, F>,
    net: &mut Report,
    steps: &mut Steps,
) -> Result<Outcome, ClientError>
where
    M: Fn(&SessionGrant, usize) -> Result<(P, Vec<Frame>), EngineError>,
    F: Fn(Session, SessionGrant, Arc<Progress>, P) -> Fut,
    Fut: std::future::Future<Output = Result<Outcome, EngineError>>,
{
    let order = reach::order(
        opts.transport,
        reach::remembered(api.address()),
        reach::remember_for(),
    );
    let mut tried = Vec::new();
    let mut held: Option<(SessionGrant, Instant)> = None;
    for (i, transport) in order.iter().copied().enumerate() {
        let last = i + 1 == order.len();
        // The grant of the transport before is used again while its token
        // is young (it was never presented: nothing got through), so that
        // a fallback does not lease a port per transport; else a new one.
        let (grant, granted_at) = match held.take() {
            Some((g, at)) if at.elapsed().as_secs() * 2 < g.expires_in => (g, at),
            _ => {
                log::debug!("asking for a {:?} session over {transport}", request.kind);
                let grant = api.create_session(request).await?;
                let at = Instant::now();
                steps.granted = Some(at);
                (grant, at)
            }
        };
        if !grant.transports.contains(&transport) {
            if last {
                return Err(ClientError::Invalid(format!(
                    "the appliance does not carry data over {transport} (it allows {})",
                    grant
                        .transports
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            log::info!("the appliance does not carry data over {transport}; trying the next");
            held = Some((grant, granted_at));
            continue;
        }
        // Only a QUIC greeting carries opening frames.
        let budget = if transport == Transport::Quic {
            OPENING_BUDGET
        } else {
            0
        };
        let (carried, opening) = (attempt.make)(&grant, budget)?;
        let opened = open(api, &grant, transport, opts, last, opening).await;
        let (session, endpoint) = match opened {
            Ok(x) => x,
            Err(ClientError::Engine(e)) if !last && reach::worth_another(&e) => {
                log::warn!(
                    "{transport} did not get through ({e}); trying {}",
                    order[i + 1]
                );
                tried.push(format!("{transport}: {e}"));
                if !reach::token_may_be_spent(&e) {
                    held = Some((grant, granted_at));
                }
                continue;
            }
            Err(e) => {
                if !tried.is_empty() {
                    log::warn!("also tried: {}", tried.join("; "));
                }
                return Err(e);
            }
        };
        steps.opened = Some(Instant::now());
        if opts.transport == Choice::Auto {
            reach::remember(api.address(), transport);
        }
        log::info!(
            "session {} over {transport} runs at {}",
            grant.session,
            session.pace.get()
        );
        net.transport = Some(transport);
        let link = session.link.clone();
        let result = (attempt.run)(session, grant, attempt.progress, carried).await;
        settle(&link, endpoint, net).await;
        return result.map_err(ClientError::from);
    }
    Err(ClientError::Invalid("no transport is allowed".into()))
}

/// Opens a session over `transport` with a token the appliance never
/// issued, to see whether the path gets through (`ferry doctor`): where it
/// does, the appliance reads the greeting and answers `BadToken`.
pub async fn probe(
    api: &Api,
    request: &SessionRequest,
    transport: Transport,
    opts: &Options,
) -> Result<(), ClientError> {
    let mut grant = api.create_session(request).await?;
    grant.token = "00".repeat(32);
    let (session, endpoint) = open(api, &grant, transport, opts, true, Vec::new()).await?;
    session.link.close(0, b"probe");
    settle(&session.link, endpoint, &mut Report::default()).await;
    Ok(())
}

/// Opens a session over `transport` with `grant`. `last`: no other
/// transport follows, so the full handshake time is allowed.
async fn open(
    api: &Api,
    grant: &SessionGrant,
    transport: Transport,
    opts: &Options,
    last: bool,
    opening: Vec<Frame>,
) -> Result<(Session, Option<quinn::Endpoint>), ClientError> {
    let token = parse_token(&grant.token)?;
    let fingerprint: Fingerprint = grant.cert_sha256.parse().map_err(|_| {
        ClientError::Invalid("the appliance sent a malformed certificate fingerprint".into())
    })?;
    // The data port must present the very certificate we pinned for HTTPS.
    let pin = api.pin().clone();
    if pin.seen().is_some_and(|seen| !seen.matches(&fingerprint)) {
        return Err(ClientError::Fingerprint(
            "the appliance announced a data-port certificate that differs from its HTTPS certificate".into(),
        ));
    }
    let patience = |quick: Duration| {
        if last { opts.handshake_timeout } else { quick }
    };
    match transport {
        Transport::Quic => {
            let addr = resolve(grant).await?;
            let endpoint = client_endpoint(addr).map_err(|e| ClientError::Io {
                path: "UDP socket".into(),
                source: e,
            })?;
            let intro = Introduction {
                token,
                request: opts.pace,
                plan: opening,
            };
            let patience = patience(reach::QUIC_PATIENCE);
            let session = connect_with(&endpoint, addr, &pin, &Tuning::default(), intro, patience)
                .await
                .map_err(|e| explain_connect(e, grant))?;
            Ok((session, Some(endpoint)))
        }
        Transport::Tcp | Transport::Https => {
            let patience = patience(reach::LANE_PATIENCE);
            let (dial, addr) = if transport == Transport::Tcp {
                let addr = resolve(grant).await?;
                (reach::tcp_dialer(addr, pin, patience), addr.to_string())
            } else {
                let server = api.address().to_owned();
                (reach::https_dialer(server.clone(), pin, patience), server)
            };
            let session = connect_lanes(
                dial,
                transport,
                &addr,
                token,
                opts.handshake_timeout,
                opts.pace,
                DEFAULT_LANES,
            )
            .await?;
            Ok((session, None))
        }
    }
}

/// After a session: its network figures, and time for our close to reach
/// the appliance before the connection goes away.
async fn settle(link: &Link, endpoint: Option<quinn::Endpoint>, net: &mut Report) {
    let (Some(conn), Some(endpoint)) = (link.quic(), endpoint) else {
        // Lanes: our close record goes out before the lanes shut.
        let _ = tokio::time::timeout(Duration::from_secs(3), link.closed()).await;
        return;
    };
    let stats = conn.stats();
    net.udp_bytes_sent += stats.udp_tx.bytes;
    net.bytes_lost += stats.path.lost_bytes;
    net.rtt_ms = stats.path.rtt.as_secs_f64() * 1e3;
    net.udp_payload = Some(stats.path.current_mtu);
    match ferry_engine::transport::udp_offload(conn.remote_address()) {
        Ok(o) => {
            (net.gso_segments, net.gro_segments) = (Some(o.gso_segments), Some(o.gro_segments))
        }
        Err(e) => log::debug!("could not ask the kernel about UDP offload: {e}"),
    }
    log::debug!(
        "path MTU {}, RTT {:?}, {} packets sent, {} lost, congestion events {}",
        stats.path.current_mtu,
        stats.path.rtt,
        stats.path.sent_packets,
        stats.path.lost_packets,
        stats.path.congestion_events
    );
    // When we closed the connection, let our close packet go out before
    // the endpoint goes away (the peer would otherwise wait for its idle
    // timeout). When the peer closed it there is nothing left to send, and
    // QUIC's draining period (three probe timeouts: most of a second on a
    // long path) is not worth waiting for.
    let peer_closed = matches!(
        conn.close_reason(),
        Some(
            quinn::ConnectionError::ApplicationClosed(_)
                | quinn::ConnectionError::ConnectionClosed(_)
        )
    );
    if !peer_closed {
        let grace = (stats.path.rtt * 2).clamp(Duration::from_millis(50), Duration::from_secs(3));
        let _ = tokio::time::timeout(grace, endpoint.wait_idle()).await;
    }
}

/// Adds what the user can do about an unreachable data port.
fn explain_connect(e: EngineError, grant: &SessionGrant) -> ClientError {
    match e {
        EngineError::Connect(ConnectError::Unreachable {
            addr,
            secs,
            greeted,
            ..
        }) => ClientError::Engine(EngineError::Connect(ConnectError::Unreachable {
            addr,
            secs,
            greeted,
            hint: format!(
                ". The appliance uses UDP ports {} on {}: ask the facility's IT to forward them to the \
                     appliance and to let them out of your network. The appliance saw this computer as {} over \
                     HTTPS and lets only that address in: a network that sends UDP out through another address \
                     is refused too",
                grant.ports, grant.host, grant.client_address
            )
            .into(),
        })),
        other => ClientError::Engine(other),
    }
}

async fn resolve(grant: &SessionGrant) -> Result<SocketAddr, ClientError> {
    let mut addrs = tokio::net::lookup_host((grant.host.as_str(), grant.port))
        .await
        .map_err(|e| ClientError::Unreachable {
            server: grant.host.clone(),
            detail: format!("cannot resolve the appliance's data address: {e}"),
        })?;
    addrs.next().ok_or_else(|| ClientError::Unreachable {
        server: grant.host.clone(),
        detail: "the appliance's data address resolves to nothing".into(),
    })
}

fn parse_token(hex: &str) -> Result<[u8; 32], ClientError> {
    let bad = || ClientError::Invalid("the appliance sent a malformed session token".into());
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
            .map_err(|_| bad())?;
    }
    Ok(out)
}
