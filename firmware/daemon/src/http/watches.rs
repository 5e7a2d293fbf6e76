//! Watch folders over the API (admins): list, add and remove, through the
//! same service and validator as `[[watch]]` and Settings → Watch folders.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ferry_api::{WatchInfo, WatchRequest};
use ferry_domain::watch::WatchText;
use ferryd_core::authority::By;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Api;
use super::api::{ApiJson, ApiParts, ApiPath};
use super::auth::Caller;
use super::error::ApiError;

pub fn routes() -> OpenApiRouter<Arc<Api>> {
    OpenApiRouter::new()
        .routes(routes!(list, add))
        .routes(routes!(remove))
}

/// The request as the validator reads it: absent fields are the defaults.
pub fn text(r: WatchRequest) -> WatchText {
    WatchText {
        folder: r.folder,
        sender: r.sender,
        to: r.to,
        priorities: r.priorities,
        settle_secs: r.settle_secs.map(|s| s.to_string()).unwrap_or_default(),
        mode: r.mode.unwrap_or_default(),
        name: r.name.unwrap_or_default(),
    }
}

#[utoipa::path(get, path = "/api/v1/watches", tag = "settings",
    summary = "Watch folders, with what each delivered and what waits in it (admins)",
    responses((status = 200, body = Vec<WatchInfo>)))]
async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
) -> Result<Json<Vec<WatchInfo>>, ApiError> {
    Ok(Json(
        api.services.watches.list(By::User(&caller.user)).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/watches", tag = "settings",
    summary = "Watch a folder: each new entry that settles becomes a delivery (admins)",
    request_body = WatchRequest,
    responses((status = 201, body = WatchInfo)))]
async fn add(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiJson(req): ApiJson<WatchRequest>,
) -> Result<(StatusCode, Json<WatchInfo>), ApiError> {
    let made = api
        .services
        .watches
        .add(By::User(&caller.user), caller.actor(), &text(req))
        .await?;
    Ok((StatusCode::CREATED, Json(made)))
}

#[utoipa::path(delete, path = "/api/v1/watches/{id}", tag = "settings",
    summary = "Stop watching a folder; its deliveries stay (admins; not one set in ferryd.toml)",
    params(("id" = i64, Path, description = "The watch")),
    responses((status = 204, description = "Removed")))]
async fn remove(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiParts(Path(id)): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    api.services
        .watches
        .remove(By::User(&caller.user), caller.actor(), id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
