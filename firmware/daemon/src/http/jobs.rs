//! Jobs over the API: list, show (files and sequences), and control
//! (pause, resume, abort, retry, purge, priority, rate).
//!
//! Who sees a job: its owner (the sender), its recipient, and admins. A
//! job someone may not see does not exist for them (404), so job ids say
//! nothing about other people's deliveries.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use ferry_api::{
    JobDetail, JobInfo, JobLine, JobList, PriorityChange, PurgeRequest, RateChange, TaskInfo, codes,
};
use ferry_proto::rules::{glob_matcher, glob_matches};
use ferry_proto::sequence::{Grouped, group};
use ferry_proto::{ErrorCode, Priority, Rate, SharePath};
use ferry_store::{
    Job, JobFilter, JobId, JobKind, JobStatus, NewEvent, Task, TaskStatus, User, now,
};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api::{ApiJson, ApiParts, ApiPath, ApiQuery};
use super::auth::{Caller, ClientAddr};
use super::error::ApiError;
use crate::app::App;

pub fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(priority))
        .routes(routes!(rate))
        .routes(routes!(purge))
        .routes(routes!(act))
}

/// The job, when `user` may see it; 404 otherwise (410 once purged).
pub fn visible_job(app: &App, user: &User, id: i64) -> Result<Job, ApiError> {
    let job = app
        .store
        .job(JobId(id))
        .map_err(|_| ApiError::not_found(format!("there is no job {id}")))?;
    if !job.visible_to(user) {
        return Err(ApiError::not_found(format!("there is no job {id}")));
    }
    if job.purged {
        return Err(ApiError::new(
            StatusCode::GONE,
            codes::JOB_WITHDRAWN,
            format!("job {id} was withdrawn by its sender (purged); it cannot be resumed"),
        ));
    }
    Ok(job)
}

/// A job as the API shows it.
pub fn job_info(app: &App, job: &Job) -> JobInfo {
    let delivery = job.delivery_id.and_then(|d| app.store.delivery(d).ok());
    let share = job.share_id.and_then(|s| app.store.share(s).ok());
    JobInfo {
        id: job.id.0,
        kind: job.kind.as_str().to_owned(),
        name: job.name.clone(),
        status: job.status.as_str().to_owned(),
        owner: job.owner_email.clone(),
        recipient: job.recipient_email.clone(),
        delivery: job.delivery_id.map(|d| d.0),
        delivery_name: delivery.as_ref().map(|d| d.name.clone()),
        share: share.map(|s| s.name),
        folder: job.folder.clone(),
        files_total: job.files_total,
        files_done: job.files_done,
        bytes_total: job.bytes_total,
        bytes_done: job.bytes_done,
        bytes_skipped: job.bytes_skipped,
        rate: job.rate,
        target_rate: job.target_rate,
        pace: app
            .live()
            .values()
            .find(|l| l.job == job.id)
            .map(|l| l.pace.get().to_string()),
        retries: job.retries,
        error: job.error.clone(),
        created_at: job.created_at,
        started_at: job.started_at,
        finished_at: job.finished_at,
        next_retry_at: job.next_retry_at,
        expires_at: delivery.map(|d| d.expires_at),
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Finished jobs only.
    finished: bool,
    /// Finished and unfinished.
    all: bool,
    status: Option<String>,
    kind: Option<String>,
    /// `recipient`: only jobs I receive; `sender`: only jobs I own.
    role: Option<String>,
    /// Download jobs an agent should run now (queued, running, or failed
    /// and due for a retry).
    runnable: bool,
    /// The last id of the previous page.
    cursor: Option<i64>,
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", summary = "Jobs the caller may see, newest first, a page at a time", params(ListQuery), responses((status = 200, body = JobList)))]
async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiParts(Query(q)): ApiQuery<ListQuery>,
) -> Result<Json<JobList>, ApiError> {
    let user = &caller.user;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let mut filter = JobFilter {
        visible_to: (!user.is_admin()).then_some(user.id),
        finished: q.finished,
        all: q.all || q.runnable,
        status: q.status.as_deref().map(str::parse).transpose().map_err(
            |e: ferry_store::StoreError| {
                ApiError::bad_request(codes::INVALID_REQUEST, e.to_string())
            },
        )?,
        kind: q.kind.as_deref().map(str::parse).transpose().map_err(
            |e: ferry_store::StoreError| {
                ApiError::bad_request(codes::INVALID_REQUEST, e.to_string())
            },
        )?,
        before: q.cursor.map(JobId),
        limit,
        ..Default::default()
    };
    match q.role.as_deref() {
        None => {}
        Some("recipient") => filter.recipient = Some(user.id),
        Some("sender") => filter.owner = Some(user.id),
        Some(other) => {
            return Err(ApiError::bad_request(
                codes::INVALID_REQUEST,
                format!("role is recipient or sender, not {other:?}"),
            ));
        }
    }
    if q.runnable {
        filter.recipient = Some(user.id);
        filter.kind = Some(JobKind::Download);
        filter.limit = 1000;
    }
    let jobs = app.store.list_jobs(&filter)?;
    let t = now();
    let jobs: Vec<Job> = if q.runnable {
        jobs.into_iter()
            .filter(|j| match j.status {
                JobStatus::Queued | JobStatus::Running => true,
                JobStatus::Failed => j.next_retry_at.is_some_and(|at| at <= t),
                _ => false,
            })
            .collect()
    } else {
        jobs
    };
    Ok(Json(job_list(
        &app,
        &jobs,
        !q.runnable && jobs.len() as u32 == limit,
    )))
}

/// A page of jobs as listed; `more` when a next page may follow (its
/// cursor is the last id).
pub(crate) fn job_list(app: &App, jobs: &[Job], more: bool) -> JobList {
    JobList {
        jobs: jobs.iter().map(|j| job_info(app, j)).collect(),
        next_cursor: more.then(|| jobs.last().map(|j| j.id.0)).flatten(),
    }
}

pub(crate) fn task_info(t: &Task) -> TaskInfo {
    TaskInfo {
        id: t.id.0,
        path: t.path.clone(),
        size: t.size,
        priority: t.priority,
        status: t.status.as_str().to_owned(),
        bytes_done: t.bytes_done,
        digest: t.digest.clone(),
        finished_at: t.finished_at,
    }
}

/// Orders statuses from least to most advanced, for a line's summary.
fn rank(s: TaskStatus) -> u8 {
    match s {
        TaskStatus::Failed => 0,
        TaskStatus::Queued => 1,
        TaskStatus::Running => 2,
        TaskStatus::Done => 3,
        TaskStatus::Excluded => 4,
    }
}

/// Groups a job's files into lines people read: each frame sequence as
/// one line with its count and gaps, other files one by one.
pub fn lines(tasks: &[Task]) -> Vec<JobLine> {
    let by_path: HashMap<&str, &Task> = tasks.iter().map(|t| (t.path.as_str(), t)).collect();
    let names: Vec<&str> = tasks.iter().map(|t| t.path.as_str()).collect();
    let mut out = Vec::new();
    for g in group(names.iter().copied()) {
        match g {
            Grouped::Single(name) => {
                let Some(t) = by_path.get(name.as_str()) else {
                    continue;
                };
                out.push(JobLine {
                    kind: "file".into(),
                    name,
                    files: 1,
                    missing: Vec::new(),
                    size: t.size,
                    bytes_done: t.bytes_done,
                    priority: t.priority,
                    status: t.status.as_str().into(),
                    finished_at: t.finished_at,
                });
            }
            Grouped::Sequence(seq) => {
                let members: Vec<&Task> = seq
                    .frames
                    .iter()
                    .filter_map(|f| {
                        let name =
                            format!("{}{:0w$}{}", seq.prefix, f, seq.suffix, w = seq.padding);
                        by_path.get(name.as_str()).copied()
                    })
                    .collect();
                let status = members
                    .iter()
                    .map(|t| t.status)
                    .min_by_key(|s| rank(*s))
                    .unwrap_or(TaskStatus::Queued);
                let finished_at = if status == TaskStatus::Done {
                    members.iter().filter_map(|t| t.finished_at).max()
                } else {
                    None
                };
                out.push(JobLine {
                    kind: "sequence".into(),
                    name: seq.notation(),
                    files: members.len() as u64,
                    missing: ferry_proto::sequence::range_texts(&seq.missing()),
                    size: members.iter().map(|t| t.size).sum(),
                    bytes_done: members.iter().map(|t| t.bytes_done).sum(),
                    priority: members.iter().map(|t| t.priority).max().unwrap_or(500),
                    status: status.as_str().into(),
                    finished_at,
                });
            }
        }
    }
    // Highest priority first, as they travel.
    out.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)));
    out
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", summary = "A job with its files (tasks) and lines (files and sequences)", params(("id" = i64, Path, description = "Job id")), responses((status = 200, body = JobDetail)))]
async fn show(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiParts(Path(id)): ApiPath<i64>,
) -> Result<Json<JobDetail>, ApiError> {
    let job = visible_job(&app, &caller.user, id)?;
    Ok(Json(job_detail(&app, &job)?))
}

/// A job with its files, and its files grouped into lines.
pub(crate) fn job_detail(app: &App, job: &Job) -> Result<JobDetail, ApiError> {
    let tasks = app.store.tasks(job.id)?;
    Ok(JobDetail {
        job: job_info(app, job),
        lines: lines(&tasks),
        tasks: tasks.iter().map(task_info).collect(),
    })
}

/// Who may do what to a job.
fn may_control(user: &User, job: &Job, recipient_may: bool) -> Result<(), ApiError> {
    if user.is_admin()
        || job.owner_id == user.id
        || (recipient_may && job.recipient_id == Some(user.id))
    {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "only the sender or an admin may do that to job {}",
            job.id
        )))
    }
}

/// Stops the job's running sessions with a reason.
fn stop_sessions(app: &App, job: JobId, code: ErrorCode, message: &str) -> usize {
    let live = app.live();
    let mut n = 0;
    for l in live.values().filter(|l| l.job == job) {
        l.stop.stop(code, message);
        n += 1;
    }
    n
}

fn audit(app: &App, user: &User, ip: std::net::IpAddr, action: &str, job: &Job, detail: String) {
    let _ = app.store.record_event(NewEvent {
        user: Some(user.id),
        address: Some(ip.to_string()),
        action,
        subject: format!("job {}", job.id),
        detail,
    });
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/{action}", tag = "jobs", summary = "Pause, resume, abort or retry a job", params(("id" = i64, Path, description = "Job id"), ("action" = String, Path, description = "pause, resume, abort or retry")), responses((status = 200, body = JobInfo)))]
async fn act(
    State(app): State<Arc<App>>,
    caller: Caller,
    ClientAddr(ip): ClientAddr,
    ApiParts(Path((id, action))): ApiPath<(i64, String)>,
) -> Result<Json<JobInfo>, ApiError> {
    let job = control(&app, &caller.user, ip, id, &action)?;
    Ok(Json(job_info(&app, &job)))
}

/// Pauses, resumes, aborts or retries a job for `user`, with the rules of
/// who may do what; the API and the web admin both come here.
pub(crate) fn control(
    app: &App,
    user: &User,
    ip: std::net::IpAddr,
    id: i64,
    action: &str,
) -> Result<Job, ApiError> {
    let job = visible_job(app, user, id)?;
    let conflict = |msg: String| ApiError::new(StatusCode::CONFLICT, codes::CONFLICT, msg);
    match action {
        "pause" => {
            may_control(user, &job, true)?;
            if job.status.is_finished() {
                return Err(conflict(format!(
                    "job {id} is {}; only unfinished jobs pause",
                    job.status
                )));
            }
            app.store.set_job_status(job.id, JobStatus::Paused, None)?;
            stop_sessions(
                app,
                job.id,
                ErrorCode::Aborted,
                &format!("job {id} was paused by {}", user.email),
            );
        }
        "resume" => {
            may_control(user, &job, true)?;
            if job.status != JobStatus::Paused {
                return Err(conflict(format!("job {id} is {}, not paused", job.status)));
            }
            app.store.set_job_status(job.id, JobStatus::Queued, None)?;
        }
        "abort" => {
            may_control(user, &job, false)?;
            if job.status == JobStatus::Done {
                return Err(conflict(format!("job {id} is already done")));
            }
            let reason = format!("aborted by {}", user.email);
            app.store
                .set_job_status(job.id, JobStatus::Aborted, Some(&reason))?;
            stop_sessions(
                app,
                job.id,
                ErrorCode::Aborted,
                &format!("job {id} was {reason}"),
            );
        }
        "retry" => {
            may_control(user, &job, true)?;
            if !matches!(job.status, JobStatus::Failed | JobStatus::Aborted) {
                return Err(conflict(format!(
                    "job {id} is {}; only failed or aborted jobs are retried",
                    job.status
                )));
            }
            app.store.requeue_job(job.id)?;
        }
        other => {
            return Err(ApiError::not_found(format!(
                "there is no job action {other:?}"
            )));
        }
    }
    audit(app, user, ip, &format!("job.{action}"), &job, String::new());
    if let Some(d) = job.delivery_id {
        app.hub.bump(d);
    }
    Ok(app.store.job(job.id)?)
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/purge", tag = "jobs", summary = "Withdraw a finished or aborted job for good", params(("id" = i64, Path, description = "Job id")), request_body = PurgeRequest, responses((status = 204, description = "Purged")))]
async fn purge(
    State(app): State<Arc<App>>,
    caller: Caller,
    ClientAddr(ip): ClientAddr,
    ApiParts(Path(id)): ApiPath<i64>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let req: PurgeRequest = if body.is_empty() {
        PurgeRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(super::error::rejection)?
    };
    purge_job(&app, &caller.user, ip, id, req.delete_files).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Purges a job (aborting it first if it runs): it leaves listings and its
/// recipient cannot resume it. With `delete_files`, a delivery's files on
/// the appliance go too.
pub(crate) async fn purge_job(
    app: &Arc<App>,
    user: &User,
    ip: std::net::IpAddr,
    id: i64,
    delete_files: bool,
) -> Result<usize, ApiError> {
    let job = visible_job(app, user, id)?;
    may_control(user, &job, false)?;
    if !job.status.is_finished() {
        app.store.set_job_status(
            job.id,
            JobStatus::Aborted,
            Some(&format!("purged by {}", user.email)),
        )?;
    }
    app.store.purge_job(job.id)?;
    stop_sessions(
        app,
        job.id,
        ErrorCode::Aborted,
        &format!("job {id} was withdrawn by its sender"),
    );
    let mut removed = 0;
    if delete_files && let Some(d) = job.delivery_id {
        let delivery = app.store.delivery(d)?;
        let paths: Vec<String> = app
            .store
            .tasks(job.id)?
            .into_iter()
            .map(|t| t.path)
            .collect();
        let app2 = app.clone();
        removed = tokio::task::spawn_blocking(move || {
            crate::deliveries::delete_intermediate_files(&app2, &delivery, &paths)
        })
        .await
        .map_err(ApiError::internal)?;
    }
    audit(
        app,
        user,
        ip,
        "job.purge",
        &job,
        format!("{removed} files removed"),
    );
    if let Some(d) = job.delivery_id {
        app.hub.bump(d);
    }
    Ok(removed)
}

/// Sets or clears a job's own rate cap; running sessions follow at once.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/rate", tag = "jobs", summary = "Cap a job's rate, or give it back the site's cap", params(("id" = i64, Path, description = "Job id")), request_body = RateChange, responses((status = 200, body = JobInfo)))]
async fn rate(
    State(app): State<Arc<App>>,
    caller: Caller,
    ClientAddr(ip): ClientAddr,
    ApiParts(Path(id)): ApiPath<i64>,
    ApiJson(req): ApiJson<RateChange>,
) -> Result<Json<JobInfo>, ApiError> {
    let user = &caller.user;
    let job = visible_job(&app, user, id)?;
    may_control(user, &job, true)?;
    let rate: Option<Rate> = req
        .rate
        .as_deref()
        .filter(|r| !r.trim().is_empty())
        .map(str::parse)
        .transpose()
        .map_err(|e: ferry_proto::RateError| {
            ApiError::bad_request(codes::INVALID_REQUEST, e.to_string())
        })?;
    app.store
        .set_job_target_rate(job.id, rate.map(Rate::bits_per_sec))?;
    let job = app.store.job(job.id)?;
    crate::transfer::repace(&app, &job);
    let site = app.site().pace.target;
    audit(
        &app,
        user,
        ip,
        "job.rate",
        &job,
        match (rate, site) {
            (Some(r), Some(s)) if r > s => format!("{r} (the site's cap of {s} still applies)"),
            (Some(r), _) => r.to_string(),
            (None, Some(s)) => format!("the site's cap of {s}"),
            (None, None) => "no cap".to_owned(),
        },
    );
    if let Some(d) = job.delivery_id {
        app.hub.bump(d);
    }
    Ok(Json(job_info(&app, &job)))
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/priority", tag = "jobs", summary = "Set the priority of a job's files matching a glob", params(("id" = i64, Path, description = "Job id")), request_body = PriorityChange, responses((status = 200, body = JobDetail)))]
async fn priority(
    State(app): State<Arc<App>>,
    caller: Caller,
    ClientAddr(ip): ClientAddr,
    ApiParts(Path(id)): ApiPath<i64>,
    ApiJson(req): ApiJson<PriorityChange>,
) -> Result<Json<JobDetail>, ApiError> {
    let (job, _) = reprioritise(&app, &caller.user, ip, id, &req.glob, &req.priority)?;
    Ok(Json(job_detail(&app, &job)?))
}

/// Sets the priority of a job's files that match `glob`; a running session
/// takes the change at once.
pub(crate) fn reprioritise(
    app: &App,
    user: &User,
    ip: std::net::IpAddr,
    id: i64,
    glob: &str,
    priority: &str,
) -> Result<(Job, usize), ApiError> {
    let job = visible_job(app, user, id)?;
    may_control(user, &job, true)?;
    let priority: Priority = priority.parse().map_err(|e: ferry_proto::PriorityError| {
        ApiError::bad_request(codes::INVALID_REQUEST, e.to_string())
    })?;
    let matcher =
        glob_matcher(glob).map_err(|e| ApiError::bad_request(codes::INVALID_REQUEST, e))?;
    let tasks = app.store.tasks(job.id)?;
    let paths: Vec<String> = tasks
        .iter()
        .filter(|t| SharePath::parse(&t.path).is_ok_and(|p| glob_matches(&matcher, &p)))
        .map(|t| t.path.clone())
        .collect();
    if paths.is_empty() {
        return Err(ApiError::bad_request(
            codes::INVALID_REQUEST,
            format!("no file of job {id} matches {glob:?}"),
        ));
    }
    app.store
        .set_task_priority(job.id, &paths, priority.get())?;
    // A running session takes the change at once.
    for live in app.live().values().filter(|l| l.job == job.id) {
        if let Some(tx) = &live.priorities {
            for p in &paths {
                if let Ok(path) = SharePath::parse(p) {
                    let _ = tx.send((path, priority));
                }
            }
        }
    }
    audit(
        app,
        user,
        ip,
        "job.priority",
        &job,
        format!("{} files matching {glob:?} to {priority}", paths.len()),
    );
    if let Some(d) = job.delivery_id {
        app.hub.bump(d);
    }
    Ok((app.store.job(job.id)?, paths.len()))
}
