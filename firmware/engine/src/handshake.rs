//! Opening a data session: the client proves it holds a session token
//! minted on the control plane, before any plan or chunk flows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_proto::{ErrorCode, Frame, PROTOCOL_VERSION, Pace, Policy, ProtoError, Rate};
use quinn::{Connection, Endpoint, RecvStream, SendStream};

use crate::congestion::PaceHandle;
use crate::control::{read_frame, write_frame};
use crate::error::{ConnectError, EngineError};
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
    pub connection: Connection,
    pub send: SendStream,
    pub recv: RecvStream,
    pub id: u64,
    /// The session's pace, as the appliance set it; the control stream
    /// applies later changes here.
    pub pace: PaceHandle,
}

impl Session {
    /// The connection and its control stream. `Pace` frames from the
    /// appliance set the session's pace and resize its windows.
    pub fn into_control(self, tuning: &Tuning) -> (Connection, crate::control::Control) {
        let (pace, conn, tuning) = (self.pace, self.connection.clone(), tuning.clone());
        let conn2 = conn.clone();
        let control = crate::control::Control::spawn_paced(
            self.send,
            self.recv,
            Some(Box::new(move |p| {
                log::info!("the appliance set this session's pace to {p}");
                pace.set(p);
                tuning.size_windows(&conn2, p);
            })),
        );
        (conn, control)
    }
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
    let pace = PaceHandle::new(Pace {
        policy: request.policy.unwrap_or_default(),
        target: request.rate,
    });
    let connecting = endpoint
        .connect_with(client_config(pin, tuning, &pace), addr, "ferry")
        .map_err(|e| ConnectError::Local {
            addr,
            reason: e.to_string(),
        })?;
    let connection = match tokio::time::timeout(handshake_timeout, connecting).await {
        Err(_) => {
            return Err(ConnectError::Unreachable {
                addr,
                secs: handshake_timeout.as_secs(),
                hint: String::new(),
            }
            .into());
        }
        Ok(Err(e)) => {
            if let Some(m) = find_mismatch(&e) {
                return Err(ConnectError::CertificateMismatch(m.to_string()).into());
            }
            return Err(ConnectError::Handshake {
                addr,
                reason: e.to_string(),
            }
            .into());
        }
        Ok(Ok(c)) => c,
    };
    let (mut send, mut recv) = connection.open_bi().await?;
    write_frame(
        &mut send,
        &Frame::Hello {
            version: PROTOCOL_VERSION,
            token,
            policy: request.policy,
            rate: request.rate,
        },
    )
    .await?;
    let answer = tokio::time::timeout(handshake_timeout, read_frame(&mut recv))
        .await
        .map_err(|_| ConnectError::NoGreeting { addr })?;
    match answer {
        Ok(Some(Frame::Welcome {
            session,
            pace: granted,
        })) => {
            pace.set(granted);
            tuning.size_windows(&connection, granted);
            Ok(Session {
                connection,
                send,
                recv,
                id: session,
                pace,
            })
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

/// A client's greeting, as the appliance received it.
#[derive(Debug)]
pub struct Greeting {
    pub send: SendStream,
    pub recv: RecvStream,
    pub token: [u8; 32],
    pub request: PaceRequest,
}

/// Server side: waits for the client's greeting on a new connection and
/// returns the token it presents. The caller checks the token and answers
/// with [`welcome`] or [`refuse`].
pub async fn accept_hello(
    connection: &Connection,
    timeout: Duration,
) -> Result<Greeting, EngineError> {
    let greet = async {
        let (send, mut recv) = connection.accept_bi().await?;
        match read_frame(&mut recv).await? {
            Some(Frame::Hello {
                version,
                token,
                policy,
                rate,
            }) if version == PROTOCOL_VERSION => Ok(Greeting {
                send,
                recv,
                token,
                request: PaceRequest { policy, rate },
            }),
            Some(Frame::Hello { version, .. }) => Err(EngineError::Proto(ProtoError::Peer {
                code: ErrorCode::Version,
                message: format!(
                    "client speaks protocol {version}, the appliance {PROTOCOL_VERSION}"
                ),
            })),
            _ => Err(EngineError::Proto(ProtoError::Violation(
                "expected Hello first".into(),
            ))),
        }
    };
    tokio::time::timeout(timeout, greet).await.map_err(|_| {
        EngineError::Proto(ProtoError::Violation(
            "no Hello within the time allowed".into(),
        ))
    })?
}

/// Accepts the session at `pace`, which the caller has set on the
/// connection's handle.
pub async fn welcome(send: &mut SendStream, session: u64, pace: Pace) -> Result<(), EngineError> {
    write_frame(send, &Frame::Welcome { session, pace }).await
}

/// Refuses the session with a reason, then closes the connection once the
/// reason has had a chance to arrive.
pub async fn refuse(
    connection: &Connection,
    send: &mut SendStream,
    code: ErrorCode,
    message: &str,
) {
    let _ = write_frame(
        send,
        &Frame::Error {
            code,
            message: message.to_owned(),
        },
    )
    .await;
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
    connection.close(code.close_code().into(), message.as_bytes());
}
