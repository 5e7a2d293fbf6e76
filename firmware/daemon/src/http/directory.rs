//! People and folders over the API: listing and inviting users and adding
//! service accounts (admins), completing recipients' addresses (staff),
//! browsing a share's folders and making new ones.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use ferry_api::{Invitation, NewFolder, RecipientList, Role, ShareListing, UserInfo, UserList};
use ferry_store::User;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use ferryd_core::authority::By;

use super::Api;
use super::api::{ApiJson, ApiParts, ApiPath, ApiQuery, user_info};
use super::auth::Caller;
use super::error::ApiError;

pub fn routes() -> OpenApiRouter<Arc<Api>> {
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
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiParts(Query(page)): ApiQuery<Page>,
) -> Result<Json<UserList>, ApiError> {
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let mut all = api.services.users.list(By::User(&caller.user)).await?;
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
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiParts(Query(typed)): ApiQuery<Typed>,
) -> Result<Json<RecipientList>, ApiError> {
    let emails = api
        .services
        .users
        .recipients(&caller.user, &typed.q, COMPLETIONS)
        .await?;
    Ok(Json(RecipientList { emails }))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", summary = "Invite someone (an account and an email to set a password), or add a service account for automation (admins)", request_body = Invitation, responses((status = 201, body = UserInfo)))]
async fn invite(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiJson(req): ApiJson<Invitation>,
) -> Result<(StatusCode, Json<UserInfo>), ApiError> {
    let role = req.role.unwrap_or(Role::Collaborator);
    let users = &api.services.users;
    let user = if req.service {
        users
            .add_service_account(
                By::User(&caller.user),
                caller.actor(),
                &req.email,
                &req.name,
                role,
            )
            .await?
    } else {
        users
            .invite(
                By::User(&caller.user),
                caller.actor(),
                &req.email,
                &req.name,
                role,
            )
            .await?
            .0
    };
    Ok((StatusCode::CREATED, Json(user_info(&user))))
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

#[utoipa::path(get, path = "/api/v1/shares/{name}/files", tag = "shares", summary = "A folder of a share, a page of names at a time", params(("name" = String, Path, description = "Share name"), BrowseQuery), responses((status = 200, body = ShareListing)))]
async fn browse(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiParts(Path(name)): ApiPath<String>,
    ApiParts(Query(q)): ApiQuery<BrowseQuery>,
) -> Result<Json<ShareListing>, ApiError> {
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    Ok(Json(
        api.services
            .shares
            .browse(&caller.user, &name, &q.path, q.cursor.as_deref(), limit)
            .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/shares/{name}/folders", tag = "shares", summary = "Make a folder (and its parents) in a share", params(("name" = String, Path, description = "Share name")), request_body = NewFolder, responses((status = 201, description = "Made")))]
async fn mkdir(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiParts(Path(name)): ApiPath<String>,
    ApiJson(req): ApiJson<NewFolder>,
) -> Result<StatusCode, ApiError> {
    api.services
        .shares
        .make_folder(&caller.user, caller.actor(), &name, &req.path)
        .await?;
    Ok(StatusCode::CREATED)
}
