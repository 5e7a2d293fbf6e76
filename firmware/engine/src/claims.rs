//! Which session is receiving which file.
//!
//! Two sessions must never write the same part file. When a client dies
//! and comes back (a kill, a lost link), its old session may still be alive
//! on the appliance until the connection times out; the new session takes
//! the file over: the old one is stopped, checkpoints what it had, and
//! releases the file before the new one looks at it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_proto::ErrorCode;
use tokio::sync::Notify;

use crate::stop::StopSignal;

#[derive(Debug)]
struct Holder {
    session: u64,
    stop: StopSignal,
    released: Arc<Notify>,
}

/// The registry of files being received, shared by all sessions of a daemon.
#[derive(Debug, Default)]
pub struct Claims {
    held: Mutex<HashMap<String, Holder>>,
}

/// Holds a file for one session; dropping it releases the file.
#[derive(Debug)]
pub struct Claim {
    claims: Arc<Claims>,
    key: String,
    session: u64,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut held = self.claims.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.get(&self.key).map(|h| h.session) == Some(self.session)
            && let Some(h) = held.remove(&self.key)
        {
            h.released.notify_waiters();
        }
    }
}

impl Claims {
    pub fn new() -> Arc<Self> {
        Arc::new(Claims::default())
    }

    /// Claims `key` for `session`, stopping an older holder and waiting
    /// (up to `wait`) for it to let go.
    pub async fn claim(
        self: &Arc<Self>,
        key: String,
        session: u64,
        stop: &StopSignal,
        wait: Duration,
    ) -> Option<Claim> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let released = {
                let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                match held.get(&key) {
                    None => {
                        held.insert(
                            key.clone(),
                            Holder {
                                session,
                                stop: stop.clone(),
                                released: Arc::new(Notify::new()),
                            },
                        );
                        return Some(Claim {
                            claims: self.clone(),
                            key,
                            session,
                        });
                    }
                    Some(h) if h.session == session => return None,
                    Some(h) => {
                        h.stop.stop(
                            ErrorCode::Superseded,
                            "a newer session took over this transfer",
                        );
                        h.released.clone()
                    }
                }
            };
            let notified = released.notified();
            // Re-check after arming the notification, so a release between
            // the unlock and here is not missed.
            if !self
                .held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&key)
            {
                continue;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_newer_session_takes_over() {
        let claims = Claims::new();
        let old_stop = StopSignal::new();
        let old = claims
            .claim("f".into(), 1, &old_stop, Duration::from_secs(1))
            .await
            .unwrap();
        let new_stop = StopSignal::new();
        let c2 = claims.clone();
        let taker = tokio::spawn(async move {
            c2.claim("f".into(), 2, &new_stop, Duration::from_secs(5))
                .await
                .is_some()
        });
        old_stop.stopped().await;
        drop(old);
        assert!(taker.await.unwrap());
    }

    #[tokio::test]
    async fn a_holder_that_never_lets_go_times_out() {
        let claims = Claims::new();
        let stop = StopSignal::new();
        let _held = claims
            .claim("f".into(), 1, &stop, Duration::from_secs(1))
            .await
            .unwrap();
        let other = StopSignal::new();
        assert!(
            claims
                .claim("f".into(), 2, &other, Duration::from_millis(50))
                .await
                .is_none()
        );
    }
}
