//! Who is calling: API keys (`Authorization: Bearer fk_…`) and the
//! client's address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use ferry_api::{USER_HEADER, codes};
use ferry_store::User;

use super::ApiError;
use crate::app::App;

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
}

/// An authenticated caller who may still have to change a one-time
/// password (only the password route accepts this).
#[derive(Debug, Clone)]
pub struct PendingCaller {
    pub user: User,
}

async fn authenticate(parts: &Parts, app: &App) -> Result<User, ApiError> {
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
    let (user, key_id) = app.store.authenticate_api_key(key.trim())?.ok_or_else(|| {
        ApiError::unauthorized(
            codes::BAD_API_KEY,
            "the API key is not valid: it may be mistyped, revoked, or for another appliance",
        )
    })?;
    app.key_limits.check(key_id.0)?;
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
    Ok(user)
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let user = authenticate(parts, app).await?;
        if user.must_change_password {
            return Err(ApiError::forbidden(
                "change the one-time password first (POST /api/v1/me/password, or the web admin)",
            ))
            .map_err(|mut e| {
                e.code = codes::PASSWORD_CHANGE_REQUIRED;
                e
            });
        }
        Ok(Caller { user })
    }
}

impl FromRequestParts<Arc<App>> for PendingCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        Ok(PendingCaller {
            user: authenticate(parts, app).await?,
        })
    }
}

/// The client's address: the TCP peer, or for a configured trusted proxy,
/// the last address in `X-Forwarded-For` that is not itself a trusted proxy.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<Arc<App>> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .ok_or_else(|| ApiError::internal("request without peer address"))?;
        Ok(ClientAddr(client_ip(
            peer,
            &app.site().trusted_proxies,
            parts,
        )))
    }
}

fn client_ip(peer: IpAddr, trusted: &[IpAddr], parts: &Parts) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    forwarded
        .iter()
        .rev()
        .find(|a| !trusted.contains(a))
        .copied()
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(xff: &[&str]) -> Parts {
        let mut b = axum::http::Request::builder();
        for v in xff {
            b = b.header("x-forwarded-for", *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let client: IpAddr = "198.51.100.2".parse().unwrap();
        let p = parts(&["203.0.113.9, 198.51.100.2"]);
        assert_eq!(client_ip(proxy, &[proxy], &p), client);
        // From an untrusted peer the header is ignored.
        assert_eq!(client_ip(client, &[proxy], &p), client);
        let spoof: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(client_ip(spoof, &[proxy], &parts(&["1.2.3.4"])), spoof);
        // A chain of trusted proxies is skipped.
        let p = parts(&["198.51.100.2", "10.0.0.1"]);
        assert_eq!(client_ip(proxy, &[proxy], &p), client);
    }
}
