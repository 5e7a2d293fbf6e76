//! People and folders over the API: listing and inviting users (admins),
//! completing recipients' addresses (staff), browsing a share's folders and
//! making new ones.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use cap_std::fs::Dir;
use ferry_api::{
    Invitation, NewFolder, RecipientList, ShareEntry, ShareListing, UserInfo, UserList, codes,
};
use ferry_store::{Role, Share, User, UserStatus};
use ferry_webadmin::Appliance as _;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api::{ApiJson, ApiParts, ApiPath, ApiQuery, resolve_target, share_root, user_info};
use super::auth::{Caller, ClientAddr};
use super::error::ApiError;
use crate::app::App;

pub fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(users, invite))
        .routes(routes!(recipients))
        .routes(routes!(browse))
        .routes(routes!(mkdir))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
struct Page {
    cursor: Option<i64>,
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users", summary = "People on the appliance, a page at a time (admins)", params(Page), responses((status = 200, body = UserList)))]
async fn users(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiParts(Query(page)): ApiQuery<Page>,
) -> Result<Json<UserList>, ApiError> {
    if !caller.user.is_admin() {
        return Err(ApiError::forbidden("the list of people is for admins"));
    }
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let mut all = app.store.list_users()?;
    all.sort_by_key(|u| u.id.0);
    let after = page.cursor.unwrap_or(i64::MIN);
    let rest: Vec<&User> = all.iter().filter(|u| u.id.0 > after).collect();
    let more = rest.len() > limit;
    let users: Vec<UserInfo> = rest.into_iter().take(limit).map(user_info).collect();
    Ok(Json(UserList {
        next_cursor: more.then(|| users.last().map(|u| u.id)).flatten(),
        users,
    }))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
struct Typed {
    /// What has been typed so far (at least two characters).
    q: String,
}

/// The most addresses one completion returns.
const COMPLETIONS: usize = 20;

#[utoipa::path(get, path = "/api/v1/recipients", tag = "users", summary = "Addresses that complete what a sender typed (admins and employees)", params(Typed), responses((status = 200, body = RecipientList)))]
async fn recipients(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiParts(Query(typed)): ApiQuery<Typed>,
) -> Result<Json<RecipientList>, ApiError> {
    // The facility's staff send to collaborators; collaborators do not get
    // to list who else works with the facility.
    if !matches!(caller.user.role, Role::Admin | Role::Employee) {
        return Err(ApiError::forbidden(
            "completing addresses is for the facility's staff",
        ));
    }
    let q = typed.q.trim().to_lowercase();
    if q.chars().count() < 2 {
        return Ok(Json(RecipientList { emails: Vec::new() }));
    }
    let mut emails: Vec<String> = app
        .store
        .list_users()?
        .into_iter()
        .filter(|u| u.id != caller.user.id && u.status != UserStatus::Disabled)
        .map(|u| u.email)
        .filter(|e| e.to_lowercase().contains(&q))
        .collect();
    emails.sort();
    emails.truncate(COMPLETIONS);
    Ok(Json(RecipientList { emails }))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", summary = "Invite someone: an account and an email to set a password (admins)", request_body = Invitation, responses((status = 201, body = UserInfo)))]
async fn invite(
    State(app): State<Arc<App>>,
    caller: Caller,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<Invitation>,
) -> Result<(StatusCode, Json<UserInfo>), ApiError> {
    if !caller.user.is_admin() {
        return Err(ApiError::forbidden("only admins invite people"));
    }
    let role: Role = req
        .role
        .as_deref()
        .unwrap_or("collaborator")
        .parse()
        .map_err(|e: ferry_store::StoreError| {
            ApiError::bad_request(codes::INVALID_REQUEST, e.to_string())
        })?;
    let user = invite_as(&app, &caller.user, ip, &req, role)?;
    Ok((StatusCode::CREATED, Json(user_info(&user))))
}

/// The web admin's invitation, so both make the account and send the mail
/// the same way.
fn invite_as(
    app: &Arc<App>,
    by: &User,
    ip: IpAddr,
    req: &Invitation,
    role: Role,
) -> Result<User, ApiError> {
    if app.store.user_by_email(req.email.trim())?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::CONFLICT,
            format!("{} already has an account", req.email.trim()),
        ));
    }
    crate::webadmin::ForWeb(app.clone())
        .invite(by, ip, req.email.trim(), req.name.trim(), role)
        .map_err(|e| ApiError::bad_request(codes::INVALID_REQUEST, e.message))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
struct BrowseQuery {
    path: String,
    /// The last name of the previous page.
    cursor: Option<String>,
    limit: Option<usize>,
}

/// The folder `path` of share `name` as the caller may read it.
fn folder(
    app: &App,
    user: &User,
    name: &str,
    path: &str,
    write: bool,
) -> Result<(Share, Dir, String), ApiError> {
    let path = path.trim().trim_matches('/');
    let (share, target) = resolve_target(app, user, &format!("share={name}/{path}"), write)?;
    let root = share_root(&share)?;
    let rel = if target.path.is_root() {
        ".".to_owned()
    } else {
        target.path.as_str().to_owned()
    };
    Ok((share, root, rel))
}

#[utoipa::path(get, path = "/api/v1/shares/{name}/files", tag = "shares", summary = "A folder of a share, a page of names at a time", params(("name" = String, Path, description = "Share name"), BrowseQuery), responses((status = 200, body = ShareListing)))]
async fn browse(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiParts(Path(name)): ApiPath<String>,
    ApiParts(Query(q)): ApiQuery<BrowseQuery>,
) -> Result<Json<ShareListing>, ApiError> {
    let (_, root, rel) = folder(&app, &caller.user, &name, &q.path, false)?;
    let dir = root.open_dir(&rel).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            ApiError::not_found(format!("there is no folder {} in {name}", q.path))
        }
        _ => ApiError::bad_request(codes::INVALID_PATH, format!("{} in {name}: {e}", q.path)),
    })?;
    let mut entries = Vec::new();
    for entry in dir.entries().map_err(ApiError::internal)? {
        let entry = entry.map_err(ApiError::internal)?;
        let Ok(file_name) = entry.file_name().into_string() else {
            continue; // not UTF-8: no share path can name it
        };
        // Parts of files still arriving are not shown.
        if file_name.ends_with(".ferry-part") || file_name.ends_with(".ferry-state") {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        entries.push(ShareEntry {
            kind: if meta.is_dir() { "folder" } else { "file" }.into(),
            size: if meta.is_dir() { 0 } else { meta.len() },
            mtime: meta
                .modified()
                .ok()
                .and_then(|t| t.into_std().duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64),
            name: file_name,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(after) = &q.cursor {
        entries.retain(|e| &e.name > after);
    }
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let more = entries.len() > limit;
    entries.truncate(limit);
    Ok(Json(ShareListing {
        next_cursor: more
            .then(|| entries.last().map(|e| e.name.clone()))
            .flatten(),
        entries,
    }))
}

#[utoipa::path(post, path = "/api/v1/shares/{name}/folders", tag = "shares", summary = "Make a folder (and its parents) in a share", params(("name" = String, Path, description = "Share name")), request_body = NewFolder, responses((status = 201, description = "Made")))]
async fn mkdir(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiParts(Path(name)): ApiPath<String>,
    ApiJson(req): ApiJson<NewFolder>,
) -> Result<StatusCode, ApiError> {
    let (_, root, rel) = folder(&app, &caller.user, &name, &req.path, true)?;
    if rel == "." {
        return Err(ApiError::bad_request(
            codes::INVALID_PATH,
            "name the folder to make",
        ));
    }
    root.create_dir_all(&rel).map_err(|e| {
        ApiError::bad_request(
            codes::INVALID_PATH,
            format!("cannot make {} in {name}: {e}", req.path),
        )
    })?;
    Ok(StatusCode::CREATED)
}
