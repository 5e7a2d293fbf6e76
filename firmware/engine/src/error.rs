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
    /// A plan that could never fit.
    #[error("{0}")]
    TooLarge(String),
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
    Connection(#[from] quinn::ConnectionError),
    /// Stopped on purpose (pause, abort, a newer session).
    #[error("{message}")]
    Stopped { code: ErrorCode, message: String },
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
            EngineError::OutsideShare { .. } => ErrorCode::PathRefused,
            EngineError::NoSpace { .. } => ErrorCode::NoSpace,
            EngineError::TooLarge(_) => ErrorCode::TooLarge,
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
