//! Session tokens: minted on the control plane, redeemed once on the data
//! plane.
//!
//! A token is 256 random bits, bound to the user, the transfer and the
//! client's address as seen on the control connection. It is void after a
//! short time unused, and after its first use. Only its hash is kept, and a
//! spent or expired token is remembered a while so the client is told
//! precisely why it was refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_proto::ErrorCode;
use ferry_store::{ApiKeyId, User};
use ferryd_core::transfers::Target;

use crate::dataplane::LeaseGuard;

/// What a session was granted for.
#[derive(Debug)]
pub struct SessionSpec {
    pub target: Target,
    pub user: User,
    /// The API key the grant was made with (revoking it stops the session).
    pub key: Option<ApiKeyId>,
    pub client_ip: IpAddr,
    pub lease: LeaseGuard,
    /// What names a put's or get's run on its client (a rerun continues
    /// the same job).
    pub resume_key: Option<String>,
}

#[derive(Debug)]
enum State {
    Fresh(Arc<SessionSpec>),
    Used,
    Expired,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    issued: Instant,
    state: State,
}

/// The registry of tokens.
#[derive(Debug)]
pub struct Sessions {
    ttl: Duration,
    /// How long a spent or expired token is remembered.
    memory: Duration,
    next_id: AtomicU64,
    tokens: Mutex<HashMap<[u8; 32], Entry>>,
}

fn hash(token: &[u8; 32]) -> [u8; 32] {
    *blake3::hash(token).as_bytes()
}

impl Sessions {
    pub fn new(ttl: Duration) -> Self {
        Sessions {
            ttl,
            memory: Duration::from_secs(600),
            // Start ids at the time, so they do not repeat across restarts.
            next_id: AtomicU64::new(ferry_store::now() as u64 * 1000),
            tokens: Mutex::default(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Mints a token for `spec`; returns the session id and the token.
    pub fn mint(&self, spec: SessionSpec) -> (u64, [u8; 32]) {
        let token: [u8; 32] = rand::random();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                hash(&token),
                Entry {
                    id,
                    issued: Instant::now(),
                    state: State::Fresh(Arc::new(spec)),
                },
            );
        (id, token)
    }

    /// Redeems a token presented from `from`. A token presented from
    /// another address stays valid for its rightful client.
    pub fn redeem(
        &self,
        token: &[u8; 32],
        from: IpAddr,
    ) -> Result<(u64, Arc<SessionSpec>), (ErrorCode, String)> {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = tokens.get_mut(&hash(token)) else {
            return Err((ErrorCode::BadToken, "unknown session token".into()));
        };
        if let State::Fresh(_) = entry.state
            && entry.issued.elapsed() > self.ttl
        {
            entry.state = State::Expired;
        }
        match &entry.state {
            State::Used => Err((
                ErrorCode::TokenReused,
                "this session token was already used; ask for a new session".into(),
            )),
            State::Expired => Err((
                ErrorCode::TokenExpired,
                format!(
                    "this session token expired unused after {}s; ask for a new session",
                    self.ttl.as_secs()
                ),
            )),
            State::Fresh(spec) if spec.client_ip != from => Err((
                ErrorCode::WrongAddress,
                format!(
                    "this session was granted to {}, but the data connection comes from {from}: \
                     the control and data connections leave your network through different addresses",
                    spec.client_ip
                ),
            )),
            State::Fresh(spec) => {
                let spec = spec.clone();
                let id = entry.id;
                entry.state = State::Used;
                Ok((id, spec))
            }
        }
    }

    /// Expires unused tokens (releasing their leases) and forgets old ones.
    /// Returns how many tokens expired now.
    pub fn sweep(&self) -> usize {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let mut expired = 0;
        for entry in tokens.values_mut() {
            if matches!(entry.state, State::Fresh(_)) && entry.issued.elapsed() > self.ttl {
                entry.state = State::Expired;
                expired += 1;
            }
        }
        let memory = self.memory;
        tokens.retain(|_, e| e.issued.elapsed() < memory);
        expired
    }
}
