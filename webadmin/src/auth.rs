//! Who is at the browser: cookie sessions, the extractors that require a
//! staff member or an admin, form posts checked against CSRF, and login
//! throttling.
//!
//! The cookie is `__Host-ferry`: HttpOnly (no script reads it), Secure,
//! SameSite=Strict (no other site's page sends it), Path=/ and no Domain
//! (the `__Host-` prefix makes the browser enforce both). Its value is a
//! random token whose hash names a row of `web_sessions`; logging in always
//! mints a new one, so a token planted before login is worthless after.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use ferry_store::{Role, User};
use serde::de::DeserializeOwned;

use crate::security::{CrossSite, same_origin, secret_eq};
use crate::{Appliance, Web, layout};

pub const COOKIE: &str = "__Host-ferry";
/// A session ends this long after login, used or not.
pub const LIFETIME_SECS: i64 = 12 * 3600;
/// …or after this long unused.
pub const IDLE_SECS: i64 = 3600;
/// Form bodies are small; anything bigger is refused unread.
const MAX_FORM: usize = 1 << 20;

/// The logged-in staff member behind a request.
#[derive(Debug, Clone)]
pub struct Staff {
    pub user: User,
    pub csrf: String,
    pub from: IpAddr,
}

impl Staff {
    pub fn is_admin(&self) -> bool {
        self.user.is_admin()
    }

    /// Records in the audit log what this staff member did, from where.
    pub fn audit(&self, store: &ferry_store::Store, action: &str, subject: &str, detail: String) {
        let _ = store.record_event(ferry_store::NewEvent {
            user: Some(self.user.id),
            address: Some(self.from.to_string()),
            action,
            subject: subject.to_owned(),
            detail,
        });
    }

    /// The refusal page for anyone but an admin, saying what is reserved.
    pub fn unless_admin(&self, reserved: &str) -> Option<Response> {
        (!self.is_admin()).then(|| layout::error_page(StatusCode::FORBIDDEN, reserved))
    }
}

/// The session token from the request's cookie, if any.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// The `Set-Cookie` value that starts a session.
pub fn session_cookie(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; Max-Age={LIFETIME_SECS}; HttpOnly; Secure; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` value that ends one.
pub fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static("__Host-ferry=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
}

/// The browser's address: the TCP peer, or what a trusted proxy says.
pub fn client_ip(parts: &Parts, trusted: &[IpAddr]) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    if !trusted.contains(&peer) {
        return peer;
    }
    parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|ip| ip.trim().parse().ok())
        .unwrap_or(peer)
}

/// The browser's address, for pages without a login.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<A: Appliance> FromRequestParts<Arc<Web<A>>> for ClientIp {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web<A>>) -> Result<Self, Response> {
        Ok(ClientIp(client_ip(parts, &web.app.site().trusted_proxies)))
    }
}

/// Where a page that needs a login sends the browser.
fn to_login(parts: &Parts) -> Response {
    let here = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let next = if here == "/" {
        String::new()
    } else {
        format!("?next={}", layout::url_escape(&here))
    };
    Redirect::to(&format!("/login{next}")).into_response()
}

impl<A: Appliance> FromRequestParts<Arc<Web<A>>> for Staff {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web<A>>) -> Result<Self, Response> {
        let Some(token) = session_token(&parts.headers) else {
            return Err(to_login(parts));
        };
        let session = web
            .app
            .store()
            .web_session(&token, IDLE_SECS)
            .map_err(|e| layout::error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?;
        let Some(session) = session else {
            return Err(to_login(parts));
        };
        if session.user.role == Role::Collaborator {
            return Err(layout::error_page(StatusCode::FORBIDDEN, COLLABORATORS));
        }
        // The one-time password must go before anything else happens.
        if session.user.must_change_password && parts.uri.path() != "/setup" {
            return Err(Redirect::to("/setup").into_response());
        }
        Ok(Staff {
            from: client_ip(parts, &web.app.site().trusted_proxies),
            user: session.user,
            csrf: session.csrf,
        })
    }
}

pub const COLLABORATORS: &str = "The web admin is for the facility's staff. Collaborators receive their \
     deliveries with the Ferry client (ferry agent or the desktop app).";

/// An admin; anyone else gets a page that says why not.
#[derive(Debug, Clone)]
pub struct Admin(pub Staff);

impl<A: Appliance> FromRequestParts<Arc<Web<A>>> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web<A>>) -> Result<Self, Response> {
        let staff = Staff::from_request_parts(parts, web).await?;
        if !staff.is_admin() {
            return Err(layout::error_page(
                StatusCode::FORBIDDEN,
                "Only admins may open this page. Ask an admin of this appliance.",
            ));
        }
        Ok(Admin(staff))
    }
}

#[derive(serde::Deserialize)]
struct Token {
    #[serde(default)]
    csrf: String,
}

/// A state-changing form from a logged-in staff member: the browser says
/// it comes from our own pages, and it carries the session's CSRF token.
#[derive(Debug)]
pub struct Posted<T> {
    pub staff: Staff,
    pub form: T,
}

impl<A: Appliance, T: DeserializeOwned> FromRequest<Arc<Web<A>>> for Posted<T> {
    type Rejection = Response;

    async fn from_request(request: Request, web: &Arc<Web<A>>) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let refuse = |why: CrossSite| layout::error_page(StatusCode::FORBIDDEN, &why.to_string());
        // Checked before the session, so a forged post learns nothing.
        same_origin(&parts.headers).map_err(refuse)?;
        let staff = Staff::from_request_parts(&mut parts, web).await?;
        let bytes = read_form(body).await?;
        let token: Token = decode_form(&bytes).map_err(bad_form)?;
        if !secret_eq(&token.csrf, &staff.csrf) {
            log::warn!(
                "form without a valid CSRF token from {} ({})",
                staff.user.email,
                staff.from
            );
            return Err(refuse(CrossSite::Token));
        }
        let form = decode_form(&bytes).map_err(bad_form)?;
        Ok(Posted { staff, form })
    }
}

/// A state-changing form that only an admin may send: [`Posted`], then the
/// role.
#[derive(Debug)]
pub struct AdminPost<T> {
    pub staff: Staff,
    pub form: T,
}

impl<A: Appliance, T: DeserializeOwned> FromRequest<Arc<Web<A>>> for AdminPost<T> {
    type Rejection = Response;

    async fn from_request(request: Request, web: &Arc<Web<A>>) -> Result<Self, Response> {
        let Posted { staff, form } = Posted::<T>::from_request(request, web).await?;
        if let Some(refusal) = staff.unless_admin("Only admins of this appliance may do that.") {
            return Err(refusal);
        }
        Ok(AdminPost { staff, form })
    }
}

/// A form posted before anyone is logged in (the login form itself):
/// only the cross-site check applies.
pub struct PublicForm<T> {
    pub form: T,
    pub from: IpAddr,
    pub headers: HeaderMap,
}

impl<A: Appliance, T: DeserializeOwned> FromRequest<Arc<Web<A>>> for PublicForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, web: &Arc<Web<A>>) -> Result<Self, Response> {
        let (parts, body) = request.into_parts();
        same_origin(&parts.headers)
            .map_err(|why| layout::error_page(StatusCode::FORBIDDEN, &why.to_string()))?;
        let from = client_ip(&parts, &web.app.site().trusted_proxies);
        let bytes = read_form(body).await?;
        Ok(PublicForm {
            form: decode_form(&bytes).map_err(bad_form)?,
            from,
            headers: parts.headers,
        })
    }
}

async fn read_form(body: axum::body::Body) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
        layout::error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the form is larger than 1 MiB",
        )
    })
}

/// Decodes an `application/x-www-form-urlencoded` body; the error says
/// which field is wrong.
fn decode_form<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, String> {
    serde_urlencoded::from_bytes(bytes).map_err(|e| format!("the form is incomplete: {e}"))
}

fn bad_form(message: String) -> Response {
    layout::error_page(StatusCode::BAD_REQUEST, &message)
}

/// Limits on failed logins, per account and per address, so that guessing
/// passwords is slow whether one account or many are tried.
#[derive(Debug)]
pub struct Throttle {
    accounts: Mutex<HashMap<String, Failures>>,
    addresses: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

/// Failures per account within [`WINDOW`] before it is locked for the rest.
pub const ACCOUNT_LIMIT: u32 = 5;
/// Failures per address within [`WINDOW`].
pub const ADDRESS_LIMIT: u32 = 20;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            accounts: Mutex::new(HashMap::new()),
            addresses: Mutex::new(HashMap::new()),
        }
    }
}

/// How long `key` must wait under `limit`, if at all.
fn waiting<K: std::hash::Hash + Eq>(
    map: &HashMap<K, Failures>,
    key: &K,
    limit: u32,
    now: Instant,
) -> Option<Duration> {
    let f = map.get(key)?;
    let until = f.since + WINDOW;
    (f.count >= limit && now < until).then(|| until - now)
}

fn locked_for<K: std::hash::Hash + Eq>(
    map: &Mutex<HashMap<K, Failures>>,
    key: &K,
    limit: u32,
    now: Instant,
) -> Option<Duration> {
    waiting(
        &map.lock().unwrap_or_else(|e| e.into_inner()),
        key,
        limit,
        now,
    )
}

fn count<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, Failures>>, key: K, now: Instant) {
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    bump(&mut map, key, now);
}

fn bump<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Failures>, key: K, now: Instant) {
    // Old entries go, so a flood of addresses cannot grow the map forever.
    if map.len() > 10_000 {
        map.retain(|_, f| now < f.since + WINDOW);
    }
    let f = map.entry(key).or_insert(Failures {
        count: 0,
        since: now,
    });
    if now >= f.since + WINDOW {
        *f = Failures {
            count: 0,
            since: now,
        };
    }
    f.count += 1;
}

impl Throttle {
    /// Takes one attempt from the budgets of `email` and `from`, or says how
    /// long to wait. Checking and counting happen under the same locks, so
    /// attempts sent in parallel cannot all slip through before any fails.
    pub fn attempt(&self, email: &str, from: IpAddr) -> Result<(), Duration> {
        self.attempt_at(email, from, Instant::now())
    }

    pub fn attempt_at(&self, email: &str, from: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = email.to_lowercase();
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        let account = waiting(&accounts, &key, ACCOUNT_LIMIT, now);
        let address = waiting(&addresses, &from, ADDRESS_LIMIT, now);
        if let Some(w) = account.max(address) {
            return Err(w);
        }
        bump(&mut accounts, key, now);
        bump(&mut addresses, from, now);
        Ok(())
    }

    /// The attempt was good: the account's count clears, and the address
    /// gets its attempt back (a good login must not use up an office's
    /// shared budget, nor reset a guesser's).
    pub fn succeeded_from(&self, email: &str, from: IpAddr) {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        accounts.remove(&email.to_lowercase());
        let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = addresses.get_mut(&from) {
            f.count = f.count.saturating_sub(1);
        }
    }

    /// How long `email` must wait before trying again from `from`, if at
    /// all (no attempt is taken).
    pub fn wait_at(&self, email: &str, from: IpAddr, now: Instant) -> Option<Duration> {
        let account = locked_for(&self.accounts, &email.to_lowercase(), ACCOUNT_LIMIT, now);
        let address = locked_for(&self.addresses, &from, ADDRESS_LIMIT, now);
        account.max(address)
    }
}

/// A per-address budget of requests for public pages (the invitation
/// page): `limit` requests per [`WINDOW`].
#[derive(Debug)]
pub struct RateLimit {
    hits: Mutex<HashMap<IpAddr, Failures>>,
    limit: u32,
}

impl RateLimit {
    pub fn new(limit: u32) -> Self {
        RateLimit {
            hits: Mutex::new(HashMap::new()),
            limit,
        }
    }

    /// Counts a request; how long to wait when over budget.
    pub fn hit(&self, from: IpAddr) -> Result<(), Duration> {
        self.hit_at(from, Instant::now())
    }

    pub fn hit_at(&self, from: IpAddr, now: Instant) -> Result<(), Duration> {
        if let Some(wait) = locked_for(&self.hits, &from, self.limit, now) {
            return Err(wait);
        }
        count(&self.hits, from, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn an_account_locks_after_five_failures_from_anywhere() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..ACCOUNT_LIMIT {
            assert_eq!(
                t.wait_at("ann@example.com", if i % 2 == 0 { A } else { B }, now),
                None
            );
            let _ = t.attempt_at("Ann@Example.com", if i % 2 == 0 { A } else { B }, now);
        }
        let wait = t.wait_at("ann@example.com", B, now).unwrap();
        assert!(wait > Duration::from_secs(14 * 60));
        // Other accounts from another address are not affected…
        assert_eq!(t.wait_at("bob@example.com", B, now), None);
        // …and the lock lifts when the window has passed.
        assert_eq!(t.wait_at("ann@example.com", A, now + WINDOW), None);
    }

    #[test]
    fn an_address_locks_after_twenty_failures_on_any_accounts() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..ADDRESS_LIMIT {
            let _ = t.attempt_at(&format!("user{i}@example.com"), A, now);
        }
        assert!(t.wait_at("new@example.com", A, now).is_some());
        assert_eq!(t.wait_at("new@example.com", B, now), None);
    }

    #[test]
    fn parallel_attempts_are_counted_before_they_are_checked() {
        let t = Throttle::default();
        let now = Instant::now();
        let admitted = (0..50)
            .filter(|_| t.attempt_at("ann@example.com", A, now).is_ok())
            .count();
        assert_eq!(admitted, ACCOUNT_LIMIT as usize);
        // A good password gives the address its attempt back.
        let t = Throttle::default();
        t.attempt_at("bob@example.com", B, now).unwrap();
        t.succeeded_from("bob@example.com", B);
        for i in 0..ADDRESS_LIMIT {
            t.attempt_at(&format!("u{i}@example.com"), B, now).unwrap();
        }
        assert!(t.attempt_at("x@example.com", B, now).is_err());
    }

    #[test]
    fn a_good_login_clears_the_account_but_not_the_address() {
        let t = Throttle::default();
        let now = Instant::now();
        for _ in 0..ACCOUNT_LIMIT - 1 {
            let _ = t.attempt_at("ann@example.com", A, now);
        }
        t.succeeded_from("ann@example.com", A);
        let _ = t.attempt_at("ann@example.com", A, now);
        assert_eq!(t.wait_at("ann@example.com", A, now), None);
    }

    #[test]
    fn a_public_page_allows_a_budget_per_address() {
        let r = RateLimit::new(3);
        let now = Instant::now();
        for _ in 0..3 {
            assert!(r.hit_at(A, now).is_ok());
        }
        assert!(r.hit_at(A, now).is_err());
        assert!(r.hit_at(B, now).is_ok());
        assert!(r.hit_at(A, now + WINDOW).is_ok());
    }

    #[test]
    fn the_session_cookie_is_locked_down() {
        let c = session_cookie("abc");
        let c = c.to_str().unwrap();
        for part in [
            "__Host-ferry=abc",
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/",
        ] {
            assert!(c.contains(part), "{c} lacks {part}");
        }
        assert!(!c.contains("Domain"));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("other=1; __Host-ferry=tok; x=y"),
        );
        assert_eq!(session_token(&h).as_deref(), Some("tok"));
    }
}
