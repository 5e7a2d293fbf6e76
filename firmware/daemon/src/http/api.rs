//! REST handlers under `/api/v1`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use ferry_api::{
    Health, LeaseStatus, LoginRequest, LoginResponse, PasswordChange, SessionGrant, SessionRequest,
    SessionStatus, ShareInfo, Status, UserInfo, codes,
};
use ferry_domain::rules;
use ferry_store::User;
use ferryd_core::users::Through;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use ferryd_core::authority::By;

use super::Api;
use super::auth::{Caller, ClientAddr, PendingCaller};
use super::error::{ApiError, rejection};

pub fn routes() -> OpenApiRouter<Arc<Api>> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(login))
        .routes(routes!(me))
        .routes(routes!(change_password))
        .routes(routes!(set_notify))
        .routes(routes!(shares, add_share))
        .routes(routes!(journal))
        .routes(routes!(create_session))
        .routes(routes!(status))
        .routes(routes!(create_delivery))
        .routes(routes!(manifest))
        .routes(routes!(manifest_b3))
}

/// JSON bodies whose errors come back as our JSON errors.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| ApiJson(v))
            .map_err(rejection)
    }
}

/// Any request-part extractor (a query string, path parameters) whose
/// rejection comes back as our JSON error: `ApiParts<Query<T>>`.
pub struct ApiParts<E>(pub E);

/// Query strings with JSON errors.
pub type ApiQuery<T> = ApiParts<axum::extract::Query<T>>;
/// Path parameters with JSON errors.
pub type ApiPath<T> = ApiParts<axum::extract::Path<T>>;

impl<E, S> axum::extract::FromRequestParts<S> for ApiParts<E>
where
    E: axum::extract::FromRequestParts<S>,
    E::Rejection: std::fmt::Display,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        // serde_urlencoded decodes a query lossily: bytes that are not
        // UTF-8 (overlong dots such as %C0%AE among them) would become
        // U+FFFD, and two different names one. Refuse them instead, as
        // path parameters and JSON bodies are refused.
        if let Some(q) = parts.uri.query()
            && percent_encoding::percent_decode_str(q)
                .decode_utf8()
                .is_err()
        {
            return Err(rejection("the query string is not valid UTF-8"));
        }
        E::from_request_parts(parts, state)
            .await
            .map(ApiParts)
            .map_err(rejection)
    }
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such API route")
}

pub fn user_info(u: &User) -> UserInfo {
    UserInfo {
        id: u.id.0,
        email: u.email.clone(),
        name: u.name.clone(),
        role: u.role,
        notify: u.notify,
        kind: u.kind,
        status: u.status,
    }
}

#[utoipa::path(get, path = "/api/v1/health", tag = "appliance", summary = "Product, version and certificate fingerprint (no key needed)", security(()), responses((status = 200, body = Health)))]
async fn health(State(api): State<Arc<Api>>) -> Json<Health> {
    Json(Health {
        product: "ferry".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        fingerprint: api.services.appliance.facts().fingerprint,
        time: Some(api.services.clock.now()),
    })
}

#[utoipa::path(post, path = "/api/v1/login", tag = "account", summary = "Trade an email and password for a new API key", request_body = LoginRequest, security(()), responses((status = 200, body = LoginResponse)))]
async fn login(
    State(api): State<Arc<Api>>,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let (user, key) = api
        .services
        .users
        .api_login(&req.email, &req.password, ip, req.key_name.as_deref())
        .await?;
    Ok(Json(LoginResponse {
        api_key: key.secret,
        must_change_password: user.must_change_password,
        user: user_info(&user),
    }))
}

#[utoipa::path(get, path = "/api/v1/me", tag = "account", summary = "Who the key belongs to", responses((status = 200, body = UserInfo)))]
async fn me(caller: Caller) -> Json<UserInfo> {
    Json(user_info(&caller.user))
}

/// Email notifications on or off, for the caller.
#[utoipa::path(post, path = "/api/v1/me/notify", tag = "account", summary = "Email notifications on or off", request_body = ferry_api::NotifyChange, responses((status = 200, body = UserInfo)))]
async fn set_notify(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiJson(req): ApiJson<ferry_api::NotifyChange>,
) -> Result<Json<UserInfo>, ApiError> {
    let user = api
        .services
        .users
        .set_notify(&caller.user, caller.actor(), req.notify)
        .await?;
    Ok(Json(user_info(&user)))
}

#[utoipa::path(post, path = "/api/v1/me/password", tag = "account", summary = "Change the password (the one-time password first); other web sessions and login keys end", request_body = PasswordChange, responses((status = 204, description = "Changed")))]
async fn change_password(
    State(api): State<Arc<Api>>,
    PendingCaller(caller): PendingCaller,
    ApiJson(req): ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    api.services
        .users
        .change_password(
            &caller.user,
            Some(&req.current),
            &req.new,
            Through::Key(caller.key),
            caller.from,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/shares", tag = "shares", summary = "Shares the caller may read or write", responses((status = 200, body = Vec<ShareInfo>)))]
async fn shares(
    State(api): State<Arc<Api>>,
    caller: Caller,
) -> Result<Json<Vec<ShareInfo>>, ApiError> {
    Ok(Json(api.services.shares.visible(&caller.user).await?))
}

#[utoipa::path(post, path = "/api/v1/deliveries", tag = "deliveries", summary = "Make a delivery: an upload job and one download job per recipient", request_body = ferry_api::DeliveryRequest, responses((status = 201, body = ferry_api::DeliveryCreated)))]
async fn create_delivery(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiJson(req): ApiJson<ferry_api::DeliveryRequest>,
) -> Result<(StatusCode, Json<ferry_api::DeliveryCreated>), ApiError> {
    let created = api
        .services
        .deliveries
        .create(&caller.user, caller.from, req)
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/api/v1/deliveries/{id}/manifest", tag = "deliveries",
    summary = "Every file of a delivery with its size and BLAKE3 (its sender, its recipients, admins)",
    params(("id" = i64, Path, description = "The delivery")),
    responses((status = 200, body = ferry_api::Manifest)))]
async fn manifest(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiParts(axum::extract::Path(id)): ApiPath<i64>,
) -> Result<Json<ferry_api::Manifest>, ApiError> {
    Ok(Json(
        api.services.manifests.of(&caller.user.caller(), id).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/deliveries/{id}/manifest.b3", tag = "deliveries",
    summary = "The delivery's manifest in b3sum's format, for `b3sum -c` and `ferry verify`",
    params(("id" = i64, Path, description = "The delivery")),
    responses((status = 200, content_type = "text/plain", body = String)))]
async fn manifest_b3(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiParts(axum::extract::Path(id)): ApiPath<i64>,
) -> Result<([(axum::http::HeaderName, &'static str); 1], String), ApiError> {
    let m = api.services.manifests.of(&caller.user.caller(), id).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        ferryd_core::manifest::b3_text(&m),
    ))
}

#[utoipa::path(get, path = "/api/v1/status", tag = "appliance", summary = "The appliance at a glance (admins)", responses((status = 200, body = Status)))]
async fn status(State(api): State<Arc<Api>>, caller: Caller) -> Result<Json<Status>, ApiError> {
    rules::admin(&caller.user.caller(), "the appliance's status")?;
    let facts = api.services.appliance.facts();
    let mut leases: Vec<LeaseStatus> = api
        .services
        .appliance
        .open_ports()
        .into_iter()
        .map(|l| LeaseStatus {
            address: l.client.to_string(),
            port: l.port,
        })
        .collect();
    leases.sort_by(|a, b| (a.port, &a.address).cmp(&(b.port, &b.address)));
    Ok(Json(Status {
        firewall: if facts.firewall_on { "nft" } else { "off" }.into(),
        ports: facts.ports,
        leases,
        bound_ports: api.services.appliance.bound_ports(),
        sessions: {
            let mut s: Vec<SessionStatus> = api
                .services
                .live
                .list()
                .into_iter()
                .map(|l| SessionStatus {
                    session: l.session,
                    job: l.job.0,
                    client: l.client.to_string(),
                    transport: l.transport,
                    bytes_transferred: l.handle.progress().bytes_transferred,
                    target_bps: l.handle.pace().target.map(|r| r.bits_per_sec()),
                })
                .collect();
            s.sort_by_key(|x| x.session);
            s
        },
        warnings: api.services.warnings().await,
        bandwidth: Some({
            let cap = api.services.live.site_cap();
            ferry_api::BandwidthNow {
                cap_bps: cap.rate.map(|r| r.bits_per_sec()),
                words: cap.words(),
                rule: cap.rule,
                until: cap.until,
            }
        }),
        system: crate::service::system_state().await,
    }))
}

/// `POST /api/v1/shares` (admins): a root share over a folder on the
/// appliance, or a share made beneath a root share.
#[utoipa::path(post, path = "/api/v1/shares", tag = "shares", summary = "Add a root share or a share beneath one (admins)", request_body = ferry_api::NewShare, responses((status = 201, body = ShareInfo)))]
async fn add_share(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiJson(req): ApiJson<ferry_api::NewShare>,
) -> Result<(StatusCode, Json<ShareInfo>), ApiError> {
    let shares = &api.services.shares;
    let share = match (&req.path, &req.root, &req.folder) {
        (Some(path), None, None) => {
            shares
                .add_root(By::User(&caller.user), caller.actor(), &req.name, path)
                .await?
        }
        (None, Some(root), Some(folder)) => {
            shares
                .add_beneath(
                    By::User(&caller.user),
                    caller.actor(),
                    &req.name,
                    root,
                    folder,
                )
                .await?
        }
        _ => {
            return Err(ApiError::bad_request(
                codes::INVALID_REQUEST,
                "give either path (a root share) or root and folder (a share beneath it)",
            ));
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(ShareInfo {
            name: share.name.clone(),
            parent: share.parent_name.clone(),
            path: Some(share.abs_path.display().to_string()),
            read: true,
            write: true,
        }),
    ))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct JournalQuery {
    job: Option<i64>,
    session: Option<u64>,
    lines: Option<usize>,
}

/// `GET /api/v1/journal` (admins): ferryd's own recent journal lines,
/// optionally only those of one job or session.
#[utoipa::path(get, path = "/api/v1/journal", tag = "appliance", summary = "ferryd's recent journal lines (admins)", params(JournalQuery), responses((status = 200, body = Vec<ferry_api::JournalLine>)))]
async fn journal(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiParts(axum::extract::Query(q)): ApiQuery<JournalQuery>,
) -> Result<Json<Vec<ferry_api::JournalLine>>, ApiError> {
    use crate::service::{JournalError, JournalFilter};
    rules::admin(&caller.user.caller(), "the appliance's log")?;
    let filter = JournalFilter {
        job: q.job,
        session: q.session,
        lines: q.lines.unwrap_or(200).clamp(1, 5000),
    };
    let lines = crate::service::journal(api.journal, &filter)
        .await
        .map_err(|e| match e {
            // Not a fault of the appliance: there is no journal here (404).
            JournalError::NotInUse => ApiError::new(
                StatusCode::NOT_FOUND,
                codes::JOURNAL_UNAVAILABLE,
                e.to_string(),
            ),
            _ => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                codes::INTERNAL,
                e.to_string(),
            ),
        })?;
    Ok(Json(lines))
}

#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions", summary = "Lease a data port and a single-use token for one transfer", request_body = SessionRequest, responses((status = 200, body = SessionGrant)))]
async fn create_session(
    State(api): State<Arc<Api>>,
    caller: Caller,
    headers: HeaderMap,
    uri: axum::http::Uri,
    ApiJson(req): ApiJson<SessionRequest>,
) -> Result<Json<SessionGrant>, ApiError> {
    let target = api.services.transfers.target(&caller.user, &req).await?;
    // HTTP/1.1 names the host in Host; HTTP/2 in the :authority of the URI.
    let host_header = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let grant = api
        .data
        .grant(
            &caller.user,
            Some(caller.key),
            caller.from,
            target,
            req.resume_key.clone(),
            host_header,
        )
        .await?;
    Ok(Json(grant))
}
