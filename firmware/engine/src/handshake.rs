//! Opening a data session: the client proves it holds a session token
//! minted on the control plane, before any plan or chunk flows. The same
//! greeting opens a session over QUIC and over TCP or HTTPS lanes.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_proto::{ErrorCode, Frame, PROTOCOL_VERSION, Pace, Policy, ProtoError, Rate, Transport};
use quinn::{Connection, Endpoint};

use crate::congestion::PaceHandle;
use crate::error::{ConnectError, EngineError};
use crate::lanes::{self, BoxedLane, Opening};
use crate::link::{ControlRecv, ControlSend, Link};
use crate::tls::{PinnedCert, find_mismatch};
use crate::transport::{Tuning, client_config};

/// What a client asks of its session's pace; the appliance has the last
/// word.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PaceRequest {
    pub policy: Option<Policy>,
    /// A cap of the client's own, such as its home link.
    pub rate: Option<Rate>,
}

/// An authenticated data connection, ready for a sender or receiver.
#[derive(Debug)]
pub struct Session {
    pub link: Link,
    pub send: ControlSend,
    pub recv: ControlRecv,
    pub id: u64,
    /// The session's pace, as the appliance set it; the control stream
    /// applies later changes here.
    pub pace: PaceHandle,
    /// The greeting rode the first flight (QUIC 0-RTT, with a ticket from
    /// an earlier session) and the appliance took it.
    pub early: bool,
}

impl Session {
    /// The connection and its control stream. `Pace` frames from the
    /// appliance set the session's pace and resize its windows.
    pub fn into_control(self, tuning: &Tuning) -> (Link, crate::control::Control) {
        let (pace, link, tuning) = (self.pace, self.link.clone(), tuning.clone());
        let link2 = link.clone();
        let control = crate::control::Control::spawn_paced(
            self.send,
            self.recv,
            Some(Box::new(move |p| {
                log::info!("the appliance set this session's pace to {p}");
                pace.set(p);
                link2.size_windows(&tuning, p, u64::MAX);
            })),
        );
        (link, control)
    }
}

/// What a client says first on a data connection.
#[derive(Debug, Clone)]
pub struct Introduction {
    pub token: [u8; 32],
    pub request: PaceRequest,
    /// A sender's first plan frames. They go out in the same flight as
    /// `Hello`, so the appliance answers `Welcome` and the first `Have`s
    /// together and chunks start a round trip sooner. The appliance reads
    /// them only once the token is good, and holds a connection that has
    /// not greeted to a small window, so a large plan simply waits for it.
    pub plan: Vec<Frame>,
}

/// Connects to the appliance's data port and presents the token.
/// `handshake_timeout` bounds the QUIC handshake: when UDP does not get
/// through, the error says so instead of hanging.
pub async fn connect(
    endpoint: &Endpoint,
    addr: SocketAddr,
    pin: &Arc<PinnedCert>,
    tuning: &Tuning,
    token: [u8; 32],
    handshake_timeout: Duration,
    request: PaceRequest,
) -> Result<Session, EngineError> {
    let intro = Introduction {
        token,
        request,
        plan: Vec::new(),
    };
    connect_with(endpoint, addr, pin, tuning, intro, handshake_timeout).await
}

/// [`connect`], saying `intro` first.
pub async fn connect_with(
    endpoint: &Endpoint,
    addr: SocketAddr,
    pin: &Arc<PinnedCert>,
    tuning: &Tuning,
    intro: Introduction,
    handshake_timeout: Duration,
) -> Result<Session, EngineError> {
    let Introduction {
        token,
        request,
        plan,
    } = intro;
    let pace = PaceHandle::new(Pace {
        policy: request.policy.unwrap_or_default(),
        target: request.rate,
    });
    let connecting = endpoint
        .connect_with(
            client_config(pin, &tuning.for_peer(addr), &pace),
            addr,
            "ferry",
        )
        .map_err(|e| ConnectError::Local {
            addr,
            reason: e.to_string(),
        })?;
    let mut greeting = vec![hello(token, request)];
    greeting.extend(plan);
    let (connection, send, recv, answer, early) = match connecting.into_0rtt() {
        // A ticket from an earlier session with this appliance: the
        // greeting rides the first flight, a round trip sooner.
        Ok((connection, accepted)) => {
            log::debug!("resuming with {addr}: greeting in the first flight");
            let greeted = match greet(&connection, &greeting, addr, handshake_timeout).await {
                // Answered. Whether the greeting really rode the first
                // flight is the server's word on early data: a greeting
                // opened after a refused 0-RTT handshake had already
                // completed goes as ordinary data and is answered too.
                Ok(greeted @ (_, _, Ok(_))) => (greeted, accepted.await),
                // No answer at all: as unreachable as a handshake that
                // never completes, except that the token went out.
                Err(EngineError::Connect(ConnectError::NoGreeting { .. })) => {
                    return Err(unreachable(addr, handshake_timeout, true));
                }
                // The appliance may refuse early data (it restarted and
                // lost the ticket, or the ticket was used). The handshake
                // then completes as usual and the greeting goes again.
                first => {
                    if accepted.await {
                        (first?, true)
                    } else {
                        log::debug!("{addr} refused the early greeting; greeting again");
                        let again = greet(&connection, &greeting, addr, handshake_timeout)
                            .await
                            .map_err(|e| match connection.close_reason() {
                                Some(reason) => handshake_failed(addr, reason),
                                None => e,
                            })?;
                        (again, false)
                    }
                }
            };
            let ((send, recv, answer), early) = greeted;
            (connection, send, recv, answer, early)
        }
        Err(connecting) => {
            let connection = match tokio::time::timeout(handshake_timeout, connecting).await {
                Err(_) => return Err(unreachable(addr, handshake_timeout, false)),
                Ok(Err(e)) => return Err(handshake_failed(addr, e)),
                Ok(Ok(c)) => c,
            };
            let (send, recv, answer) =
                greet(&connection, &greeting, addr, handshake_timeout).await?;
            (connection, send, recv, answer, false)
        }
    };
    let session = welcomed(answer, &pace)?;
    tuning.size_windows(&connection, pace.get());
    Ok(Session {
        link: Link::Quic(connection),
        send,
        recv,
        id: session,
        pace,
        early,
    })
}

fn unreachable(addr: SocketAddr, waited: Duration, greeted: bool) -> EngineError {
    ConnectError::Unreachable {
        addr,
        secs: waited.as_secs(),
        hint: Box::default(),
        greeted,
    }
    .into()
}

/// Why a QUIC handshake failed, as the user should hear it.
fn handshake_failed(addr: SocketAddr, e: quinn::ConnectionError) -> EngineError {
    if let Some(m) = find_mismatch(&e) {
        return ConnectError::CertificateMismatch(m.to_string()).into();
    }
    ConnectError::Handshake {
        addr,
        reason: e.to_string(),
    }
    .into()
}

/// Opens the control stream, says `greeting` and reads the answer.
async fn greet(
    connection: &Connection,
    greeting: &[Frame],
    addr: SocketAddr,
    timeout: Duration,
) -> Result<(ControlSend, ControlRecv, Result<Option<Frame>, EngineError>), EngineError> {
    let (send, recv) = connection.open_bi().await?;
    let (mut send, mut recv) = (ControlSend::Quic(send), ControlRecv::Quic(recv));
    for frame in greeting {
        send.write_frame(frame).await?;
    }
    let answer = tokio::time::timeout(timeout, recv.read_frame())
        .await
        .map_err(|_| ConnectError::NoGreeting {
            addr: addr.to_string(),
        })?;
    Ok((send, recv, answer))
}

fn hello(token: [u8; 32], request: PaceRequest) -> Frame {
    Frame::Hello {
        version: PROTOCOL_VERSION,
        token,
        policy: request.policy,
        rate: request.rate,
    }
}

/// Reads the appliance's answer to `Hello`: the session's id, with its
/// pace set on `pace`, or why it was refused.
fn welcomed(
    answer: Result<Option<Frame>, EngineError>,
    pace: &PaceHandle,
) -> Result<u64, EngineError> {
    match answer {
        Ok(Some(Frame::Welcome {
            session,
            pace: granted,
        })) => {
            pace.set(granted);
            Ok(session)
        }
        Ok(Some(Frame::Error { code, message })) => {
            Err(EngineError::Proto(ProtoError::Peer { code, message }))
        }
        Ok(Some(other)) => Err(EngineError::Proto(ProtoError::Violation(format!(
            "expected Welcome, got {other:?}"
        )))),
        Ok(None) => Err(ConnectError::GreetingClosed("without a word".into()).into()),
        Err(EngineError::Connection(quinn::ConnectionError::ApplicationClosed(close))) => Err(
            ConnectError::GreetingClosed(String::from_utf8_lossy(&close.reason).into_owned())
                .into(),
        ),
        Err(e) => Err(e),
    }
}

/// Opens one lane to the appliance (a TLS connection, or an upgraded
/// HTTPS one), ready for its opening byte.
pub type Dial = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<BoxedLane, EngineError>> + Send>> + Send + Sync,
>;

/// Opens a session over lanes: a control lane that greets with the token,
/// then up to `want` data lanes joined with the key the appliance gives.
/// `timeout` bounds the greeting and the lanes' joining.
pub async fn connect_lanes(
    dial: Dial,
    transport: Transport,
    addr: &str,
    token: [u8; 32],
    timeout: Duration,
    request: PaceRequest,
    want: usize,
) -> Result<Session, EngineError> {
    let pace = PaceHandle::new(Pace {
        policy: request.policy.unwrap_or_default(),
        target: request.rate,
    });
    let started = Instant::now();
    let first = tokio::time::timeout(timeout, dial())
        .await
        .map_err(|_| ConnectError::Dial {
            transport,
            addr: addr.to_owned(),
            reason: format!("no connection within {}s", timeout.as_secs()),
        })??;
    let rtt = started.elapsed();
    let (lanes, reader) =
        lanes::open_control(first, transport, &hello(token, request), rtt).await?;
    let (mut recv, send) = (ControlRecv::Lane(reader), ControlSend::Lane(lanes.clone()));
    let greeted = async {
        let session = welcomed(recv.read_frame().await, &pace)?;
        let ControlRecv::Lane(reader) = &mut recv else {
            unreachable!("a lane session's control stream is a lane")
        };
        let (key, max) = lanes::read_offer(reader).await?;
        Ok::<_, EngineError>((session, key, max))
    };
    let (session, key, max) =
        tokio::time::timeout(timeout, greeted)
            .await
            .map_err(|_| ConnectError::NoGreeting {
                addr: addr.to_owned(),
            })??;
    // The data lanes open side by side; the session goes on with those
    // that joined, and fails only if none did.
    let mut joining = tokio::task::JoinSet::new();
    for _ in 0..want.clamp(1, max.max(1)) {
        let (dial, lanes) = (dial.clone(), lanes.clone());
        joining.spawn(async move {
            let lane = dial().await?;
            lanes::join(&lanes, lane, session, &key).await
        });
    }
    let mut failure = None;
    let joined = tokio::time::timeout(timeout, async {
        while let Some(r) = joining.join_next().await {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failure = Some(e),
                Err(e) => failure = Some(EngineError::task("lane", e)),
            }
        }
    })
    .await;
    if joined.is_err() {
        log::debug!("{} of {want} data lanes joined in time", lanes.joined());
    }
    if lanes.joined() == 0 {
        // The token is spent by now: this is a lost session (tried again
        // with a new grant), not a path that never answered.
        let why = failure.map_or_else(|| "none in time".to_owned(), |e| e.to_string());
        let e = EngineError::Lost(format!("no data lane could join the session: {why}"));
        lanes.close(ErrorCode::Internal.close_code(), e.to_string().as_bytes());
        return Err(e);
    }
    log::debug!(
        "session {session} over {transport} with {} data lanes",
        lanes.joined()
    );
    Ok(Session {
        link: Link::Lanes(lanes),
        send,
        recv,
        id: session,
        pace,
        early: false,
    })
}

/// A client's greeting, as the appliance received it.
#[derive(Debug)]
pub struct Greeting {
    pub link: Link,
    pub send: ControlSend,
    pub recv: ControlRecv,
    pub token: [u8; 32],
    pub request: PaceRequest,
}

/// Reads a greeting's `Hello` into what it asks.
fn read_hello(frame: Option<Frame>) -> Result<([u8; 32], PaceRequest), EngineError> {
    match frame {
        Some(Frame::Hello {
            version,
            token,
            policy,
            rate,
        }) if version == PROTOCOL_VERSION => Ok((token, PaceRequest { policy, rate })),
        Some(Frame::Hello { version, .. }) => Err(EngineError::Proto(ProtoError::Peer {
            code: ErrorCode::Version,
            message: format!("client speaks protocol {version}, the appliance {PROTOCOL_VERSION}"),
        })),
        _ => Err(EngineError::Proto(ProtoError::Violation(
            "expected Hello first".into(),
        ))),
    }
}

/// Server side, over lanes: the greeting of a control lane
/// [`lanes::accept`] opened.
pub fn lane_greeting(opening: Opening) -> Result<Greeting, EngineError> {
    match opening {
        Opening::Control {
            lanes,
            reader,
            hello,
        } => {
            let (token, request) = read_hello(hello)?;
            Ok(Greeting {
                link: Link::Lanes(lanes.clone()),
                send: ControlSend::Lane(lanes),
                recv: ControlRecv::Lane(reader),
                token,
                request,
            })
        }
        Opening::Join { .. } => Err(EngineError::Proto(ProtoError::Violation(
            "a data lane is not a greeting".into(),
        ))),
    }
}

/// Server side: waits for the client's greeting on a new connection and
/// returns the token it presents. The caller checks the token and answers
/// with [`welcome`] or [`refuse`].
pub async fn accept_hello(
    connection: &Connection,
    timeout: Duration,
) -> Result<Greeting, EngineError> {
    let greet = async {
        let (send, recv) = connection.accept_bi().await?;
        let mut recv = ControlRecv::Quic(recv);
        let (token, request) = read_hello(recv.read_frame().await?)?;
        Ok(Greeting {
            link: Link::Quic(connection.clone()),
            send: ControlSend::Quic(send),
            recv,
            token,
            request,
        })
    };
    tokio::time::timeout(timeout, greet).await.map_err(|_| {
        EngineError::Proto(ProtoError::Violation(
            "no Hello within the time allowed".into(),
        ))
    })?
}

/// Accepts the session at `pace`, which the caller has set on the
/// connection's handle. Over lanes, the key its data lanes join with
/// follows.
pub async fn welcome(send: &mut ControlSend, session: u64, pace: Pace) -> Result<(), EngineError> {
    send.write_frame(&Frame::Welcome { session, pace }).await?;
    if let ControlSend::Lane(l) = send {
        lanes::offer_lanes(l).await?;
    }
    Ok(())
}

/// Refuses the session with a reason, then closes the connection once the
/// reason has had a chance to arrive.
pub async fn refuse(link: &Link, send: &mut ControlSend, code: ErrorCode, message: &str) {
    // The close below says it again, should this frame be lost.
    let _ = send
        .write_frame(&Frame::Error {
            code,
            message: message.to_owned(),
        })
        .await;
    send.finish().await;
    link.close(code.close_code(), message.as_bytes());
    link.closed().await;
}
