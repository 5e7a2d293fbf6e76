//! The engine's error type: what went wrong with a transfer, in words a
//! user can act on, and the wire code that tells the peer.

use std::io;

use ferry_proto::{ErrorCode, ProtoError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A path resolved (through a symlink) to somewhere outside the share.
    #[error("{path}: refused, it leads outside the share")]
    OutsideShare { path: String },
    /// The destination filesystem is full.
    #[error("no space left on the destination for {path}")]
    NoSpace { path: String },
    /// A planned file that is not one of the job's files.
    #[error("{path} is not one of this job's files")]
    NotAllowed { path: String },
    #[error("{path}: not found")]
    NotFound { path: String },
    /// A file stands where a folder is needed.
    #[error("{path}: a file is in the way (a folder is needed)")]
    NotAFolder { path: String },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    /// The source file changed between planning and sending.
    #[error("{path} changed while it was being sent; run the transfer again")]
    SourceChanged { path: String },
    #[error(transparent)]
    Proto(#[from] ProtoError),
    /// The session could not be set up.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("connection lost: {0}")]
    Connection(quinn::ConnectionError),
    /// A TCP or HTTPS lane failed under the session.
    #[error("connection lost: {0}")]
    Lost(String),
    /// The peer ended the session's control stream without a word.
    #[error("{0}")]
    Closed(String),
    /// One of our own tasks died: a bug, or the runtime shutting down.
    /// Never transient: running the session again would meet it again.
    #[error("{what} task failed: {detail}")]
    Task { what: &'static str, detail: String },
    /// One chunk's stream failed without the connection failing; that
    /// chunk is sent again.
    #[error("chunk stream: {0}")]
    Stream(String),
    /// Stopped on purpose (pause, abort, a newer session).
    #[error("{message}")]
    Stopped { code: ErrorCode, message: String },
}

/// Why a session could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The local endpoint refused to start the connection.
    #[error("cannot connect to {addr}: {reason}")]
    Local {
        addr: std::net::SocketAddr,
        reason: String,
    },
    /// Nothing came back: the data port is not reachable from here.
    #[error(
        "no answer from {addr} over UDP within {secs}s: UDP port {port} is not reachable from this network \
         (a firewall or router between you and the appliance drops it){hint}",
        port = addr.port()
    )]
    Unreachable {
        addr: std::net::SocketAddr,
        secs: u64,
        /// What the user can do about it, when the caller knows. (Boxed:
        /// every engine error is as large as this variant.)
        hint: Box<str>,
        /// The greeting went out with the first flight (0-RTT): the
        /// appliance may have taken its token although no answer came
        /// back, so the grant must not be used again.
        greeted: bool,
    },
    /// The appliance presented a certificate other than the pinned one.
    #[error("{0}")]
    CertificateMismatch(String),
    /// The QUIC (TLS) handshake failed.
    #[error("QUIC handshake with {addr} failed: {reason}")]
    Handshake {
        addr: std::net::SocketAddr,
        reason: String,
    },
    /// A TCP or HTTPS connection could not be made (refused, timed out,
    /// or the proxy said no).
    #[error("cannot reach {addr} over {transport}: {reason}")]
    Dial {
        transport: ferry_proto::Transport,
        addr: String,
        reason: String,
    },
    /// The appliance did not answer the session greeting.
    #[error("{addr} did not answer the session greeting")]
    NoGreeting { addr: String },
    /// The appliance closed the connection during the greeting.
    #[error("the appliance closed the session: {0}")]
    GreetingClosed(String),
}

impl ConnectError {
    /// True when trying again later may succeed (the network), false when
    /// it will fail the same way (a certificate that is not the pinned one).
    pub fn is_transient(&self) -> bool {
        !matches!(self, ConnectError::CertificateMismatch(_))
    }
}

/// A connection the peer closed with an error's close code carries that
/// error (see `ErrorCode::close_code`); any other end is a lost connection.
impl From<quinn::ConnectionError> for EngineError {
    fn from(e: quinn::ConnectionError) -> Self {
        if let quinn::ConnectionError::ApplicationClosed(close) = &e
            && let Some(code) = ErrorCode::from_close_code(close.error_code.into_inner())
        {
            return EngineError::Proto(ProtoError::Peer {
                code,
                message: String::from_utf8_lossy(&close.reason).into_owned(),
            });
        }
        EngineError::Connection(e)
    }
}

/// Closes a connection so that the peer learns why, even when the error
/// frame that said it is lost with the connection.
pub fn close_with(link: &crate::Link, e: &EngineError) {
    link.close(e.code().close_code(), e.to_string().as_bytes());
}

impl EngineError {
    /// A task of ours that did not finish (it panicked or was cancelled).
    pub fn task(what: &'static str, e: impl std::fmt::Display) -> Self {
        EngineError::Task {
            what,
            detail: e.to_string(),
        }
    }

    /// Classifies an IO error on `path`: a full disk and an escape attempt
    /// get their own variants, because users and peers act on them.
    pub fn io(path: impl std::fmt::Display, err: io::Error) -> Self {
        let path = path.to_string();
        if err.raw_os_error() == Some(nix::libc::ENOSPC)
            || err.raw_os_error() == Some(nix::libc::EDQUOT)
        {
            return EngineError::NoSpace { path };
        }
        // cap-std reports an escape (openat2's EXDEV, or a symlink or `..`
        // that resolves outside the root) as PermissionDenied that it makes
        // itself, with no OS error number; the kernel's own EACCES always
        // carries one.
        if err.kind() == io::ErrorKind::PermissionDenied && err.raw_os_error().is_none() {
            return EngineError::OutsideShare { path };
        }
        match err.kind() {
            io::ErrorKind::NotFound => return EngineError::NotFound { path },
            io::ErrorKind::NotADirectory => return EngineError::NotAFolder { path },
            _ => {}
        }
        EngineError::Io { path, source: err }
    }

    /// The code that tells the peer why the session ends.
    pub fn code(&self) -> ErrorCode {
        match self {
            EngineError::OutsideShare { .. } | EngineError::NotAllowed { .. } => {
                ErrorCode::PathRefused
            }
            EngineError::NoSpace { .. } => ErrorCode::NoSpace,
            EngineError::NotFound { .. }
            | EngineError::NotAFolder { .. }
            | EngineError::Io { .. }
            | EngineError::SourceChanged { .. } => ErrorCode::Io,
            EngineError::Proto(e) => e.code(),
            EngineError::Connect(_)
            | EngineError::Connection(_)
            | EngineError::Lost(_)
            | EngineError::Closed(_)
            | EngineError::Task { .. }
            | EngineError::Stream(_) => ErrorCode::Internal,
            EngineError::Stopped { code, .. } => *code,
        }
    }

    /// True for faults that a new session may get past (the network, the
    /// peer going away), false for faults that will happen again.
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Connection(_) | EngineError::Lost(_) | EngineError::Closed(_) => true,
            EngineError::Connect(e) => e.is_transient(),
            EngineError::Proto(ProtoError::Peer { code, .. }) => matches!(
                code,
                ErrorCode::Superseded | ErrorCode::Internal | ErrorCode::Busy | ErrorCode::Stalled
            ),
            EngineError::Stopped { code, .. } => matches!(code, ErrorCode::Superseded),
            _ => false,
        }
    }
}
