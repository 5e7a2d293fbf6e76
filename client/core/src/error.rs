//! Client errors, each with a message a producer or a script can act on.

use ferry_engine::EngineError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Not logged in and no credentials in the environment.
    #[error("{0}")]
    NotConfigured(String),
    /// The appliance answered with an error.
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The appliance could not be reached over HTTPS.
    #[error("cannot reach the appliance at {server}: {detail}")]
    Unreachable { server: String, detail: String },
    /// The certificate does not match the pinned fingerprint.
    #[error("{0}")]
    Fingerprint(String),
    /// Bad input from the user.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Engine(#[from] EngineError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A hot folder's record of what it sent could not be read or
    /// written: going on would deliver its entries again after a restart.
    #[error("the hot folder's state {path}: {why}")]
    HotFolderState { path: String, why: String },
}

impl ClientError {
    /// True when trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Engine(e) => e.is_transient(),
            ClientError::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// The API's stable error code, when the appliance gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}
