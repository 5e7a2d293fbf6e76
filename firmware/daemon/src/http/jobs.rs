//! Jobs over the API: list, show (files and sequences), and control
//! (pause, resume, abort, retry, purge, priority, rate, urgent). The jobs service
//! and its rulebook decide; these handlers translate.
//!
//! A job someone may not see does not exist for them (404), so job ids
//! say nothing about other people's deliveries.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use ferry_api::{
    JobAction, JobDetail, JobInfo, JobKind, JobList, JobStatus, PriorityChange, PurgeRequest,
    RateChange, UrgentChange,
};
use ferry_domain::JobId;
use ferryd_core::jobs::{Listing, Side};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Api;
use super::api::{ApiJson, ApiParts, ApiPath, ApiQuery};
use super::auth::Caller;
use super::error::ApiError;

pub fn routes() -> OpenApiRouter<Arc<Api>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(priority))
        .routes(routes!(rate))
        .routes(routes!(urgent))
        .routes(routes!(purge))
        .routes(routes!(act))
}

/// `GET /api/v1/jobs/{id}/files/{*path}`: one file of a download job, for
/// its recipient's scripts, with `Range`, `If-Range` and `ETag` exactly as
/// the browser's deliveries page answers (they share
/// [`ferry_webadmin::fetch`]), and counted as received the same way.
///
/// A plain route, not in the OpenAPI document: its path ends in a
/// wildcard (the file's path, slashes and all) and its body is the file.
pub fn file_routes() -> axum::Router<Arc<Api>> {
    axum::Router::new().route("/api/v1/jobs/{id}/files/{*path}", axum::routing::get(file))
}

async fn file(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiParts(Path((id, path))): ApiPath<(i64, String)>,
    method: axum::http::Method,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    let portal = &api.services.portal;
    match portal.open(&caller.user, id, caller.from).await {
        Ok(opened) => ferry_webadmin::fetch::file(portal, opened, &path, &method, &headers).await,
        Err(e) => axum::response::IntoResponse::into_response(ApiError::from(e)),
    }
}

/// `recipient`: only jobs I receive; `sender`: only jobs I own.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum Role {
    Recipient,
    Sender,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Finished jobs only.
    finished: bool,
    /// Finished and unfinished.
    all: bool,
    status: Option<JobStatus>,
    kind: Option<JobKind>,
    role: Option<Role>,
    /// Download jobs an agent should run now (queued, running, or failed
    /// and due for a retry).
    runnable: bool,
    /// The last id of the previous page.
    cursor: Option<i64>,
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", summary = "Jobs the caller may see, newest first, a page at a time", params(ListQuery), responses((status = 200, body = JobList)))]
async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiParts(Query(q)): ApiQuery<ListQuery>,
) -> Result<Json<JobList>, ApiError> {
    let listing = Listing {
        finished: q.finished,
        all: q.all,
        status: q.status,
        kind: q.kind,
        side: match q.role {
            None => Side::Any,
            Some(Role::Recipient) => Side::Recipient,
            Some(Role::Sender) => Side::Sender,
        },
        runnable: q.runnable,
        person: None,
        before: q.cursor.map(JobId),
        limit: q.limit.unwrap_or(100),
    };
    Ok(Json(api.services.jobs.list(&caller.user, &listing).await?))
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", summary = "A job with its files (tasks) and lines (files and sequences), and what the caller may do to it", params(("id" = i64, Path, description = "Job id")), responses((status = 200, body = JobDetail)))]
async fn show(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiParts(Path(id)): ApiPath<i64>,
) -> Result<Json<JobDetail>, ApiError> {
    Ok(Json(api.services.jobs.detail(&caller.user, id).await?))
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/{action}", tag = "jobs", summary = "Pause, resume, abort or retry a job", params(("id" = i64, Path, description = "Job id"), ("action" = String, Path, description = "pause, resume, abort or retry")), responses((status = 200, body = JobInfo)))]
async fn act(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiParts(Path((id, action))): ApiPath<(i64, String)>,
) -> Result<Json<JobInfo>, ApiError> {
    let action: JobAction = match action.parse() {
        Ok(a @ (JobAction::Pause | JobAction::Resume | JobAction::Abort | JobAction::Retry)) => a,
        _ => {
            return Err(ApiError::not_found(format!(
                "there is no job action {action:?} (pause, resume, abort or retry)"
            )));
        }
    };
    let jobs = &api.services.jobs;
    let job = jobs.act(&caller.user, caller.from, id, action).await?;
    Ok(Json(jobs.info(&caller.user, &job).await?))
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/purge", tag = "jobs", summary = "Withdraw a job for good; with delete_files, what its delivery's upload wrote goes too", params(("id" = i64, Path, description = "Job id")), request_body = PurgeRequest, responses((status = 204, description = "Purged")))]
async fn purge(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiParts(Path(id)): ApiPath<i64>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let req: PurgeRequest = if body.is_empty() {
        PurgeRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(super::error::rejection)?
    };
    api.services
        .jobs
        .purge(&caller.user, caller.from, id, req.delete_files)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets or clears a job's own rate cap; running sessions follow at once.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/rate", tag = "jobs", summary = "Cap a job's rate, or give it back the site's cap (under a cap set above you, only lower)", params(("id" = i64, Path, description = "Job id")), request_body = RateChange, responses((status = 200, body = JobInfo)))]
async fn rate(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiParts(Path(id)): ApiPath<i64>,
    ApiJson(req): ApiJson<RateChange>,
) -> Result<Json<JobInfo>, ApiError> {
    let jobs = &api.services.jobs;
    let job = jobs
        .set_rate(&caller.user, caller.from, id, req.rate.as_deref())
        .await?;
    Ok(Json(jobs.info(&caller.user, &job).await?))
}

/// Marks a job urgent or not (admins); the bandwidth schedule's cap then
/// spares it, at once.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/urgent", tag = "jobs", summary = "Mark a job urgent, so the bandwidth schedule does not slow it, or not (admins)", params(("id" = i64, Path, description = "Job id")), request_body = UrgentChange, responses((status = 200, body = JobInfo)))]
async fn urgent(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiParts(Path(id)): ApiPath<i64>,
    ApiJson(req): ApiJson<UrgentChange>,
) -> Result<Json<JobInfo>, ApiError> {
    let jobs = &api.services.jobs;
    let job = jobs
        .set_urgent(&caller.user, caller.from, id, req.urgent)
        .await?;
    Ok(Json(jobs.info(&caller.user, &job).await?))
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/priority", tag = "jobs", summary = "Set the priority of a job's files matching a glob", params(("id" = i64, Path, description = "Job id")), request_body = PriorityChange, responses((status = 200, body = JobDetail)))]
async fn priority(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiParts(Path(id)): ApiPath<i64>,
    ApiJson(req): ApiJson<PriorityChange>,
) -> Result<Json<JobDetail>, ApiError> {
    let jobs = &api.services.jobs;
    jobs.reprioritise(&caller.user, caller.from, id, &req.glob, &req.priority)
        .await?;
    Ok(Json(jobs.detail(&caller.user, id).await?))
}
