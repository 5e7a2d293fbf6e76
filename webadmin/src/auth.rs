//! Who is at the browser: cookie sessions (kept by the users service),
//! the extractors that require a staff member or an admin, form posts
//! checked against CSRF, and the browser's address. Login throttling is
//! the users service's, shared with the REST API's login.
//!
//! The cookie is `__Host-ferry`: HttpOnly (no script reads it), Secure,
//! SameSite=Strict (no other site's page sends it), Path=/ and no Domain
//! (the `__Host-` prefix makes the browser enforce both). Its value is a
//! random token whose hash names a row of `web_sessions`; logging in always
//! mints a new one, so a token planted before login is worthless after.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use ferry_store::User;
use ferryd_core::audit::Actor;
use ferryd_core::authority::By;
use ferryd_core::users::WEB_LIFETIME_SECS;
use serde::de::DeserializeOwned;

use crate::security::{CrossSite, same_origin, secret_eq};
use crate::{Web, layout};

pub const COOKIE: &str = "__Host-ferry";
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

    /// This staff member, for the audit lines services write.
    pub fn actor(&self) -> Actor {
        Actor::user(self.user.id, self.from)
    }

    /// This staff member, as the one asking for an admin's act.
    pub fn by(&self) -> By<'_> {
        By::User(&self.user)
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
        "{COOKIE}={token}; Path=/; Max-Age={WEB_LIFETIME_SECS}; HttpOnly; Secure; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` value that ends one.
pub fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static("__Host-ferry=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
}

/// The browser's address: the TCP peer, or, behind a trusted proxy, what
/// the one rule ([`ferry_domain::address::client_address`]) reads from
/// `X-Forwarded-For`, as the REST API does.
pub fn client_ip(parts: &Parts, trusted: &[IpAddr]) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let forwarded: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    ferry_domain::address::client_address(peer, trusted, &forwarded)
}

/// The browser's address, for pages without a login.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<Arc<Web>> for ClientIp {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Response> {
        Ok(ClientIp(client_ip(
            parts,
            &web.services.settings.trusted_proxies(),
        )))
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

/// Anyone signed in: staff, or a collaborator (who sees only their
/// deliveries).
#[derive(Debug, Clone)]
pub struct Member {
    pub user: User,
    pub csrf: String,
    pub from: IpAddr,
}

impl Member {
    /// This person, for the audit lines services write.
    pub fn actor(&self) -> Actor {
        Actor::user(self.user.id, self.from)
    }

    /// Whether they may open the staff pages.
    pub fn is_staff(&self) -> bool {
        ferry_domain::rules::web_admin(&self.user.account()).is_ok()
    }

    /// Them as staff, when they are.
    pub fn as_staff(&self) -> Option<Staff> {
        self.is_staff().then(|| Staff {
            user: self.user.clone(),
            csrf: self.csrf.clone(),
            from: self.from,
        })
    }
}

impl From<Staff> for Member {
    fn from(s: Staff) -> Self {
        Member {
            user: s.user,
            csrf: s.csrf,
            from: s.from,
        }
    }
}

impl FromRequestParts<Arc<Web>> for Member {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Response> {
        let Some(token) = session_token(&parts.headers) else {
            return Err(to_login(parts));
        };
        // The users service answers only for sessions whose account may
        // sign in now (enabled, a person).
        let session =
            web.services.users.web_session(&token).await.map_err(|e| {
                layout::error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
            })?;
        let Some(session) = session else {
            return Err(to_login(parts));
        };
        Ok(Member {
            from: client_ip(parts, &web.services.settings.trusted_proxies()),
            user: session.user,
            csrf: session.csrf,
        })
    }
}

impl FromRequestParts<Arc<Web>> for Staff {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Response> {
        let member = Member::from_request_parts(parts, web).await?;
        // Collaborators never see a staff page: a page they open sends them
        // to their deliveries; anything else is refused.
        if !member.is_staff() {
            return Err(if parts.method == axum::http::Method::GET {
                Redirect::to("/deliveries").into_response()
            } else {
                layout::error_page(StatusCode::FORBIDDEN, COLLABORATORS)
            });
        }
        // The one-time password must go before anything else happens.
        if member.user.must_change_password && parts.uri.path() != "/setup" {
            return Err(Redirect::to("/setup").into_response());
        }
        Ok(Staff {
            user: member.user,
            csrf: member.csrf,
            from: member.from,
        })
    }
}

pub const COLLABORATORS: &str = "The web admin is for the facility's staff. Collaborators receive their \
     deliveries on the Deliveries page, or with the Ferry client (ferry agent or the desktop app).";

/// An admin; anyone else gets a page that says why not.
#[derive(Debug, Clone)]
pub struct Admin(pub Staff);

impl FromRequestParts<Arc<Web>> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Response> {
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

impl<T: DeserializeOwned> FromRequest<Arc<Web>> for Posted<T> {
    type Rejection = Response;

    async fn from_request(request: Request, web: &Arc<Web>) -> Result<Self, Response> {
        let (staff, form) =
            checked_form::<Staff, T>(request, web, |s| (&s.csrf, &s.user.email)).await?;
        Ok(Posted { staff, form })
    }
}

/// A state-changing form from anyone signed in (collaborators too): the
/// same checks as [`Posted`].
#[derive(Debug)]
pub struct MemberPost<T> {
    pub member: Member,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<Arc<Web>> for MemberPost<T> {
    type Rejection = Response;

    async fn from_request(request: Request, web: &Arc<Web>) -> Result<Self, Response> {
        let (member, form) =
            checked_form::<Member, T>(request, web, |m| (&m.csrf, &m.user.email)).await?;
        Ok(MemberPost { member, form })
    }
}

/// The checks every state-changing form passes: the browser says it comes
/// from our own pages (checked before the session, so a forged post
/// learns nothing), someone is signed in as `W`, and the form carries the
/// session's CSRF token.
async fn checked_form<W, T>(
    request: Request,
    web: &Arc<Web>,
    token_of: impl Fn(&W) -> (&String, &String),
) -> Result<(W, T), Response>
where
    W: FromRequestParts<Arc<Web>, Rejection = Response>,
    T: DeserializeOwned,
{
    let (mut parts, body) = request.into_parts();
    let refuse = |why: CrossSite| layout::error_page(StatusCode::FORBIDDEN, &why.to_string());
    same_origin(&parts.headers).map_err(refuse)?;
    let who = W::from_request_parts(&mut parts, web).await?;
    let bytes = read_form(body).await?;
    let token: Token = decode_form(&bytes).map_err(bad_form)?;
    let (csrf, email) = token_of(&who);
    if !secret_eq(&token.csrf, csrf) {
        log::warn!("form without a valid CSRF token from {email}");
        return Err(refuse(CrossSite::Token));
    }
    let form = decode_form(&bytes).map_err(bad_form)?;
    Ok((who, form))
}

/// A state-changing form that only an admin may send: [`Posted`], then the
/// role.
#[derive(Debug)]
pub struct AdminPost<T> {
    pub staff: Staff,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<Arc<Web>> for AdminPost<T> {
    type Rejection = Response;

    async fn from_request(request: Request, web: &Arc<Web>) -> Result<Self, Response> {
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

impl<T: DeserializeOwned> FromRequest<Arc<Web>> for PublicForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, web: &Arc<Web>) -> Result<Self, Response> {
        let (parts, body) = request.into_parts();
        same_origin(&parts.headers)
            .map_err(|why| layout::error_page(StatusCode::FORBIDDEN, &why.to_string()))?;
        let from = client_ip(&parts, &web.services.settings.trusted_proxies());
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

#[cfg(test)]
mod tests {
    use super::*;

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
