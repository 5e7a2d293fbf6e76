//! Who is calling: API keys (`Authorization: Bearer fk_…`), checked by the
//! users service, and the client's address, read by the one function for
//! it ([`ferry_domain::address::client_address`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use ferry_api::{USER_HEADER, codes};
use ferry_store::{ApiKeyId, User};
use ferryd_core::audit::Actor;

use super::Api;
use super::ApiError;

/// Each API key's budget of requests (`[api] requests_per_minute`): a
/// burst of that many, refilled evenly over the minute. One pipeline
/// script in a loop cannot starve the appliance or other people's keys.
pub struct KeyLimits {
    limiter: governor::DefaultKeyedRateLimiter<i64>,
    per_minute: u32,
}

impl KeyLimits {
    pub fn new(per_minute: u32) -> Self {
        let n = std::num::NonZeroU32::new(per_minute.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        KeyLimits {
            limiter: governor::RateLimiter::keyed(governor::Quota::per_minute(n)),
            per_minute,
        }
    }

    /// Counts a request with key `id`; the error says how long to wait.
    pub fn check(&self, id: i64) -> Result<(), ApiError> {
        use governor::clock::{Clock as _, DefaultClock};
        self.limiter.check_key(&id).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::rate_limited(
                wait,
                format!(
                    "this API key made more than {} requests in a minute; try again in {} s",
                    self.per_minute,
                    wait.as_secs().max(1)
                ),
            )
        })?;
        // Keys that went quiet are forgotten now and then.
        if self.limiter.len() > 10_000 {
            self.limiter.retain_recent();
        }
        Ok(())
    }
}

impl std::fmt::Debug for KeyLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLimits")
            .field("per_minute", &self.per_minute)
            .finish_non_exhaustive()
    }
}

/// An authenticated caller whose account is in good standing.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    /// The key it came with.
    pub key: ApiKeyId,
    pub from: IpAddr,
}

impl Caller {
    /// The caller, for audit lines.
    pub fn actor(&self) -> Actor {
        Actor::user(self.user.id, self.from)
    }
}

/// An authenticated caller who may still have to change a one-time
/// password (only the password route accepts this).
#[derive(Debug, Clone)]
pub struct PendingCaller(pub Caller);

async fn authenticate(parts: &Parts, api: &Api) -> Result<Caller, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::unauthorized(
                codes::UNAUTHORIZED,
                "log in first: send 'Authorization: Bearer <API key>'",
            )
        })?;
    let key = header.strip_prefix("Bearer ").ok_or_else(|| {
        ApiError::unauthorized(
            codes::UNAUTHORIZED,
            "expected 'Authorization: Bearer <API key>'",
        )
    })?;
    let (user, key_id) = api.services.users.authenticate(key.trim()).await?;
    api.keys.check(key_id.0)?;
    if let Some(expected) = parts.headers.get(USER_HEADER).and_then(|v| v.to_str().ok())
        && !expected.trim().eq_ignore_ascii_case(&user.email)
    {
        return Err(ApiError::unauthorized(
            codes::BAD_API_KEY,
            format!(
                "this API key belongs to another user than {}",
                expected.trim()
            ),
        ));
    }
    Ok(Caller {
        user,
        key: key_id,
        from: client_address(parts, api)?,
    })
}

impl FromRequestParts<Arc<Api>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, ApiError> {
        let caller = authenticate(parts, api).await?;
        if caller.user.must_change_password {
            let mut e = ApiError::forbidden(
                "change the one-time password first (POST /api/v1/me/password, or the web admin)",
            );
            e.code = codes::PASSWORD_CHANGE_REQUIRED;
            return Err(e);
        }
        Ok(caller)
    }
}

impl FromRequestParts<Arc<Api>> for PendingCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, ApiError> {
        Ok(PendingCaller(authenticate(parts, api).await?))
    }
}

/// The client's address, for requests without a key (the login).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<Arc<Api>> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, ApiError> {
        Ok(ClientAddr(client_address(parts, api)?))
    }
}

fn client_address(parts: &Parts, api: &Api) -> Result<IpAddr, ApiError> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .ok_or_else(|| ApiError::internal("request without peer address"))?;
    Ok(from_headers(
        peer,
        &api.services.settings.trusted_proxies(),
        &parts.headers,
    ))
}

/// The client's address from the peer and the `X-Forwarded-For` headers,
/// by the one rule (the web admin reads it the same way).
pub fn from_headers(peer: IpAddr, trusted: &[IpAddr], headers: &axum::http::HeaderMap) -> IpAddr {
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    ferry_domain::address::client_address(peer, trusted, &forwarded)
}
