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
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    /// The source file changed between planning and sending.
    #[error("{path} changed while it was being sent; run the transfer again")]
    SourceChanged { path: String },
    #[error(transparent)]
    Proto(#[from] ProtoError),
    /// The QUIC connection could not be made.
    #[error("{0}")]
    Connect(String),
    #[error("connection lost: {0}")]
    Connection(quinn::ConnectionError),
    /// Stopped on purpose (pause, abort, a newer session).
    #[error("{message}")]
    Stopped { code: ErrorCode, message: String },
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
pub fn close_with(conn: &quinn::Connection, e: &EngineError) {
    let message = e.to_string();
    // A close reason must fit in a packet.
    let reason = &message.as_bytes()[..message.len().min(800)];
    conn.close(e.code().close_code().into(), reason);
}

impl EngineError {
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
        // that resolves outside the root) as PermissionDenied with this text.
        if err.kind() == io::ErrorKind::PermissionDenied
            && err.to_string().contains("outside of the filesystem")
        {
            return EngineError::OutsideShare { path };
        }
        if err.kind() == io::ErrorKind::NotFound {
            return EngineError::NotFound { path };
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
            | EngineError::Io { .. }
            | EngineError::SourceChanged { .. } => ErrorCode::Io,
            EngineError::Proto(e) => e.code(),
            EngineError::Connect(_) | EngineError::Connection(_) => ErrorCode::Internal,
            EngineError::Stopped { code, .. } => *code,
        }
    }

    /// True for faults that a new session may get past (the network, the
    /// peer going away), false for faults that will happen again.
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Connection(_) | EngineError::Connect(_) => true,
            EngineError::Proto(ProtoError::Peer { code, .. }) => {
                matches!(code, ErrorCode::Superseded | ErrorCode::Internal)
            }
            EngineError::Stopped { code, .. } => matches!(code, ErrorCode::Superseded),
            _ => false,
        }
    }
}
