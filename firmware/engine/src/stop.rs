//! Stopping a session from outside (pause, abort, purge, a newer session),
//! with the reason that the peer and the user will read.

use std::sync::{Arc, Mutex};

use ferry_proto::ErrorCode;
use tokio_util::sync::CancellationToken;

/// A cancellation token that carries why.
#[derive(Debug, Clone, Default)]
pub struct StopSignal {
    token: CancellationToken,
    reason: Arc<Mutex<Option<(ErrorCode, String)>>>,
}

impl StopSignal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the session to stop; the first reason given wins.
    pub fn stop(&self, code: ErrorCode, message: impl Into<String>) {
        let mut reason = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if reason.is_none() {
            *reason = Some((code, message.into()));
        }
        drop(reason);
        self.token.cancel();
    }

    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }

    pub async fn stopped(&self) {
        self.token.cancelled().await;
    }

    pub fn reason(&self) -> (ErrorCode, String) {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or((ErrorCode::Aborted, "the transfer was stopped".into()))
    }
}
