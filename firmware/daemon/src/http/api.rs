//! REST handlers under `/api/v1`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use cap_std::fs::Dir;
use ferry_api::{
    Health, LeaseStatus, LoginRequest, LoginResponse, PasswordChange, SessionGrant, SessionKind,
    SessionRequest, ShareInfo, Status, UserInfo, codes,
};
use ferry_proto::path::{ShareRef, ShareRefError};
use ferry_store::{JobKind, JobStatus, NewEvent, Share, User};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Caller, ClientAddr, PendingCaller};
use super::error::{ApiError, rejection};
use crate::app::App;
use crate::sessions::{SessionSpec, Target};
use crate::transfer::accept_loop;

pub fn routes() -> OpenApiRouter<Arc<App>> {
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
        role: u.role.as_str().to_owned(),
        notify: u.notify,
    }
}

#[utoipa::path(get, path = "/api/v1/health", tag = "appliance", summary = "Product, version and certificate fingerprint (no key needed)", security(()), responses((status = 200, body = Health)))]
async fn health(State(app): State<Arc<App>>) -> Json<Health> {
    Json(Health {
        product: "ferry".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        fingerprint: app.fingerprint.to_string(),
    })
}

#[utoipa::path(post, path = "/api/v1/login", tag = "account", summary = "Trade an email and password for a new API key", request_body = LoginRequest, security(()), responses((status = 200, body = LoginResponse)))]
async fn login(
    State(app): State<Arc<App>>,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let store = app.store.clone();
    let (email, password) = (req.email.clone(), req.password.clone());
    // Argon2 takes tens of milliseconds of CPU: keep it off the reactor.
    let user = tokio::task::spawn_blocking(move || store.verify_password(&email, &password))
        .await
        .map_err(ApiError::internal)??;
    let Some(user) = user else {
        let _ = app.store.record_event(NewEvent {
            address: Some(ip.to_string()),
            action: "login.failed",
            subject: req.email.clone(),
            ..Default::default()
        });
        return Err(ApiError::unauthorized(
            codes::BAD_CREDENTIALS,
            "wrong email or password (or the account is not active)",
        ));
    };
    let name = req.key_name.unwrap_or_else(|| format!("login from {ip}"));
    let key = app.store.create_api_key(user.id, &name)?;
    let _ = app.store.record_event(NewEvent {
        user: Some(user.id),
        address: Some(ip.to_string()),
        action: "login",
        subject: user.email.clone(),
        detail: format!("API key {name:?}"),
    });
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
    State(app): State<Arc<App>>,
    caller: Caller,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<ferry_api::NotifyChange>,
) -> Result<Json<UserInfo>, ApiError> {
    app.store.set_notify(caller.user.id, req.notify)?;
    let _ = app.store.record_event(NewEvent {
        user: Some(caller.user.id),
        address: Some(ip.to_string()),
        action: "user.notify",
        subject: caller.user.email.clone(),
        detail: if req.notify { "on" } else { "off" }.into(),
    });
    Ok(Json(user_info(&app.store.user(caller.user.id)?)))
}

#[utoipa::path(post, path = "/api/v1/me/password", tag = "account", summary = "Change the password (the one-time password first)", request_body = PasswordChange, responses((status = 204, description = "Changed")))]
async fn change_password(
    State(app): State<Arc<App>>,
    caller: PendingCaller,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    if req.new == req.current {
        return Err(ApiError::bad_request(
            codes::INVALID_REQUEST,
            "the new password must differ from the current one",
        ));
    }
    let store = app.store.clone();
    let email = caller.user.email.clone();
    let ok = tokio::task::spawn_blocking(move || store.verify_password(&email, &req.current))
        .await
        .map_err(ApiError::internal)??;
    if ok.is_none() {
        return Err(ApiError::unauthorized(
            codes::BAD_CREDENTIALS,
            "the current password is wrong",
        ));
    }
    app.store.set_password(caller.user.id, &req.new)?;
    let _ = app.store.record_event(NewEvent {
        user: Some(caller.user.id),
        address: Some(ip.to_string()),
        action: "password.change",
        subject: caller.user.email.clone(),
        ..Default::default()
    });
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/shares", tag = "shares", summary = "Shares the caller may read or write", responses((status = 200, body = Vec<ShareInfo>)))]
async fn shares(
    State(app): State<Arc<App>>,
    caller: Caller,
) -> Result<Json<Vec<ShareInfo>>, ApiError> {
    let mut out = Vec::new();
    for share in app.store.list_shares()? {
        let access = app.store.access(&caller.user, &share)?;
        if access.read || access.write {
            out.push(ShareInfo {
                name: share.name.clone(),
                parent: share.parent_name.clone(),
                path: caller
                    .user
                    .is_admin()
                    .then(|| share.abs_path.display().to_string()),
                read: access.read,
                write: access.write,
            });
        }
    }
    Ok(Json(out))
}

#[utoipa::path(post, path = "/api/v1/deliveries", tag = "deliveries", summary = "Make a delivery: an upload job and one download job per recipient", request_body = ferry_api::DeliveryRequest, responses((status = 201, body = ferry_api::DeliveryCreated)))]
async fn create_delivery(
    State(app): State<Arc<App>>,
    caller: Caller,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<ferry_api::DeliveryRequest>,
) -> Result<(StatusCode, Json<ferry_api::DeliveryCreated>), ApiError> {
    let created = crate::deliveries::create(&app, &caller.user, ip, req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/api/v1/status", tag = "appliance", summary = "The appliance at a glance (admins)", responses((status = 200, body = Status)))]
async fn status(State(app): State<Arc<App>>, caller: Caller) -> Result<Json<Status>, ApiError> {
    if !caller.user.is_admin() {
        return Err(ApiError::forbidden("the appliance's status is for admins"));
    }
    let mut leases: Vec<LeaseStatus> = app
        .dataplane
        .leases()
        .into_iter()
        .map(|l| LeaseStatus {
            address: l.ip.to_string(),
            port: l.port,
        })
        .collect();
    leases.sort_by(|a, b| (a.port, &a.address).cmp(&(b.port, &b.address)));
    Ok(Json(Status {
        firewall: if app.dataplane.firewall_on() {
            "nft"
        } else {
            "off"
        }
        .into(),
        ports: app.dataplane.range().to_string(),
        leases,
        bound_ports: app.dataplane.bound_ports(),
        warnings: app.warnings(),
        system: crate::service::system_state().await,
    }))
}

/// `POST /api/v1/shares` (admins): a root share over a folder on the
/// appliance, or a share made beneath a root share.
#[utoipa::path(post, path = "/api/v1/shares", tag = "shares", summary = "Add a root share or a share beneath one (admins)", request_body = ferry_api::NewShare, responses((status = 201, body = ShareInfo)))]
async fn add_share(
    State(app): State<Arc<App>>,
    caller: Caller,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<ferry_api::NewShare>,
) -> Result<(StatusCode, Json<ShareInfo>), ApiError> {
    use crate::shares::{ShareError, add_beneath, add_root};
    if !caller.user.is_admin() {
        return Err(ApiError::forbidden("only admins add shares"));
    }
    let made = match (&req.path, &req.root, &req.folder) {
        (Some(path), None, None) => add_root(&app.store, &req.name, path, &[&app.config.data]),
        (None, Some(root), Some(folder)) => add_beneath(&app.store, &req.name, root, folder),
        _ => {
            return Err(ApiError::bad_request(
                codes::INVALID_REQUEST,
                "give either path (a root share) or root and folder (a share beneath it)",
            ));
        }
    };
    let share = made.map_err(|e| match e {
        ShareError::NoRoot(_) => ApiError::not_found(e.to_string()),
        ShareError::BadFolder { .. } => ApiError::bad_request(codes::INVALID_PATH, e.to_string()),
        ShareError::Store(e) => e.into(),
        _ => ApiError::bad_request(codes::INVALID_REQUEST, e.to_string()),
    })?;
    let _ = app.store.record_event(NewEvent {
        user: Some(caller.user.id),
        address: Some(ip.to_string()),
        action: "share.add",
        subject: share.name.clone(),
        detail: match &share.parent_name {
            Some(root) => format!("in {root} at {}", share.path),
            None => format!("root share at {}", share.abs_path.display()),
        },
    });
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
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiParts(axum::extract::Query(q)): ApiQuery<JournalQuery>,
) -> Result<Json<Vec<ferry_api::JournalLine>>, ApiError> {
    use crate::service::{JournalError, JournalFilter};
    if !caller.user.is_admin() {
        return Err(ApiError::forbidden("the appliance's log is for admins"));
    }
    let filter = JournalFilter {
        job: q.job,
        session: q.session,
        lines: q.lines.unwrap_or(200).clamp(1, 5000),
    };
    let lines = crate::service::journal(app.journal, &filter)
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

/// Resolves `share=NAME/path` to a share the caller may use that way.
pub fn resolve_target(
    app: &App,
    user: &User,
    target: &str,
    write: bool,
) -> Result<(Share, ShareRef), ApiError> {
    let target = ShareRef::parse(target).map_err(|e| match e {
        ShareRefError::Path(p) => ApiError::bad_request(codes::INVALID_PATH, p.to_string()),
        other => ApiError::bad_request(codes::INVALID_REQUEST, other.to_string()),
    })?;
    let share = app.store.share_by_name(&target.share)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            codes::UNKNOWN_SHARE,
            format!("there is no share named {:?}", target.share),
        )
    })?;
    let access = app.store.access(user, &share)?;
    if !(if write { access.write } else { access.read }) {
        // Someone without any access is not told the share exists.
        if !access.read && !access.write {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                codes::UNKNOWN_SHARE,
                format!("there is no share named {:?}", target.share),
            ));
        }
        return Err(ApiError::forbidden(format!(
            "you may not {} share {:?}",
            if write { "write to" } else { "read from" },
            share.name
        )));
    }
    Ok((share, target))
}

/// A share's folder as a capability: nothing beneath it can lead out.
pub fn share_root(share: &Share) -> Result<Dir, ApiError> {
    Dir::open_ambient_dir(&share.abs_path, cap_std::ambient_authority()).map_err(|e| {
        ApiError::internal(format!(
            "share {} at {}: {e}",
            share.name,
            share.abs_path.display()
        ))
    })
}

/// Checks a target beneath its share root without leaving it.
pub fn check_target(share: &Share, target: &ShareRef, kind: SessionKind) -> Result<(), ApiError> {
    let root = share_root(share)?;
    let rel = if target.path.is_root() {
        "."
    } else {
        target.path.as_str()
    };
    match root.metadata(rel) {
        Ok(meta) => {
            if kind == SessionKind::Put && !meta.is_dir() {
                return Err(ApiError::bad_request(
                    codes::INVALID_PATH,
                    format!("{target} exists and is not a folder"),
                ));
            }
            Ok(())
        }
        // A destination folder is made on the way; a source must exist.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match kind {
            SessionKind::Put | SessionKind::Upload => Ok(()),
            SessionKind::Get | SessionKind::Download => {
                Err(ApiError::not_found(format!("{target} does not exist")))
            }
        },
        Err(e) if e.to_string().contains("outside of the filesystem") => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            codes::OUTSIDE_SHARE,
            format!("{target} leads outside the share (through a symlink); refused"),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(ApiError::bad_request(
            codes::INVALID_PATH,
            format!("{target}: a file is in the way"),
        )),
        Err(e) => Err(ApiError::internal(format!("{target}: {e}"))),
    }
}

/// What a session request asks to move, checked against the caller's
/// rights.
async fn session_target(
    app: &Arc<App>,
    user: &User,
    req: &SessionRequest,
) -> Result<Target, ApiError> {
    match req.kind {
        SessionKind::Put | SessionKind::Get => {
            let text = req.target.as_deref().ok_or_else(|| {
                ApiError::bad_request(
                    codes::INVALID_REQUEST,
                    "put and get need a target: share=NAME/path",
                )
            })?;
            let (share, target) = resolve_target(app, user, text, req.kind == SessionKind::Put)?;
            {
                let (share, target, kind) = (share.clone(), target.clone(), req.kind);
                tokio::task::spawn_blocking(move || check_target(&share, &target, kind))
                    .await
                    .map_err(ApiError::internal)??;
            }
            Ok(match req.kind {
                SessionKind::Put => Target::Put {
                    share,
                    path: target.path,
                },
                _ => Target::Get {
                    share,
                    path: target.path,
                },
            })
        }
        SessionKind::Upload | SessionKind::Download => {
            let id = req.job.ok_or_else(|| {
                ApiError::bad_request(
                    codes::INVALID_REQUEST,
                    "uploads and downloads name their job",
                )
            })?;
            let job = crate::http::jobs::visible_job(app, user, id)?;
            let Some(delivery_id) = job.delivery_id else {
                return Err(ApiError::bad_request(
                    codes::INVALID_REQUEST,
                    format!("job {id} is not part of a delivery"),
                ));
            };
            let expected = if req.kind == SessionKind::Upload {
                JobKind::Upload
            } else {
                JobKind::Download
            };
            if job.kind != expected {
                return Err(ApiError::bad_request(
                    codes::INVALID_REQUEST,
                    format!("job {id} is a {} job", job.kind.as_str()),
                ));
            }
            // Only the sender uploads, and only the recipient downloads.
            let mine = match job.kind {
                JobKind::Upload => job.owner_id == user.id,
                _ => job.recipient_id == Some(user.id),
            };
            if !mine {
                return Err(ApiError::forbidden(format!("job {id} is not yours to run")));
            }
            match job.status {
                JobStatus::Aborted => {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        codes::JOB_ABORTED,
                        format!(
                            "job {id} was aborted{}",
                            job.error
                                .as_deref()
                                .map(|e| format!(": {e}"))
                                .unwrap_or_default()
                        ),
                    ));
                }
                JobStatus::Paused => {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        codes::JOB_PAUSED,
                        format!("job {id} is paused"),
                    ));
                }
                _ => {}
            }
            let delivery = app.store.delivery(delivery_id)?;
            if delivery.expired {
                return Err(ApiError::new(
                    StatusCode::GONE,
                    codes::JOB_WITHDRAWN,
                    format!("delivery {:?} has expired", delivery.name),
                ));
            }
            let share = app.store.share(delivery.share_id)?;
            Ok(match req.kind {
                SessionKind::Upload => Target::Upload {
                    job,
                    delivery,
                    share,
                },
                _ => Target::Download {
                    job,
                    delivery,
                    share,
                },
            })
        }
    }
}

#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions", summary = "Lease a data port and a single-use token for one transfer", request_body = SessionRequest, responses((status = 200, body = SessionGrant)))]
async fn create_session(
    State(app): State<Arc<App>>,
    caller: Caller,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    uri: axum::http::Uri,
    ApiJson(req): ApiJson<SessionRequest>,
) -> Result<Json<SessionGrant>, ApiError> {
    let target = session_target(&app, &caller.user, &req).await?;
    if let Some(warning) = app.sources.observe(caller.user.id, ip) {
        log::warn!("{warning}");
        let _ = app.store.record_event(NewEvent {
            address: Some(ip.to_string()),
            action: "warning.source_nat",
            subject: ip.to_string(),
            detail: warning,
            ..Default::default()
        });
    }
    let lease = {
        let app2 = app.clone();
        app.dataplane
            .open(ip, caller.user.id, move |endpoint, port| {
                tokio::spawn(accept_loop(app2.clone(), endpoint, port));
            })
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    codes::NO_PORTS,
                    e.to_string(),
                )
            })?
    };
    let port = lease.lease.port;
    let what = match &target {
        Target::Put { share, path } => format!("put into share={}/{}", share.name, path.as_str()),
        Target::Get { share, path } => format!("get share={}/{}", share.name, path.as_str()),
        Target::Upload { job, .. } => format!("upload job {}", job.id),
        Target::Download { job, .. } => format!("download job {}", job.id),
    };
    let (session, token) = app.sessions.mint(SessionSpec {
        target,
        user: caller.user.clone(),
        client_ip: ip,
        lease,
    });
    let _ = app.store.record_event(NewEvent {
        user: Some(caller.user.id),
        address: Some(ip.to_string()),
        action: "session.grant",
        subject: format!("session {session}"),
        detail: format!("{what} on port {port}"),
    });
    // HTTP/1.1 names the host in Host; HTTP/2 in the :authority of the URI.
    let host_header = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    Ok(Json(SessionGrant {
        session,
        host: app.public_host(host_header),
        port,
        ports: app.dataplane.range().to_string(),
        token: token.iter().map(|b| format!("{b:02x}")).collect(),
        expires_in: app.sessions.ttl().as_secs(),
        cert_sha256: app.fingerprint.to_string(),
        chunk_size: app.config.transfer.chunk_size,
        client_address: ip.to_string(),
    }))
}
