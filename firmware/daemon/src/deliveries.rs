//! Deliveries on the appliance: making them from a `ferry send` request,
//! telling recipients' sessions when a file has landed, and retiring
//! deliveries when they expire.
//!
//! A delivery's files live in one folder of one share. With an upload job,
//! the sender's client puts them there; without one (on-prem), they were
//! there already. Each recipient's download job takes a file as soon as it
//! has landed, highest priority first.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use cap_std::fs::Dir;
use ferry_api::{DeliveryCreated, DeliveryRequest, JobRef, codes};
use ferry_engine::files::is_working_file;
use ferry_proto::path::ShareRef;
use ferry_proto::sequence::SequencePattern;
use ferry_proto::{ErrorCode, PriorityRules, SharePath};
use ferry_store::{
    Delivery, DeliveryId, DeliveryPlan, NewDelivery, NewEvent, NewTask, Share, TaskStatus, User,
    now,
};
use tokio::sync::watch;

use crate::app::App;
use crate::http::{ApiError, check_target, resolve_target};

/// Wakes download sessions when something they wait for changes: a file
/// landed, the upload finished, a priority moved.
#[derive(Debug, Default)]
pub struct Hub {
    channels: Mutex<HashMap<DeliveryId, watch::Sender<u64>>>,
}

impl Hub {
    pub fn subscribe(&self, id: DeliveryId) -> watch::Receiver<u64> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        // Forget channels nobody listens to any more.
        channels.retain(|_, tx| tx.receiver_count() > 0);
        channels
            .entry(id)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    pub fn bump(&self, id: DeliveryId) {
        let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = channels.get(&id) {
            tx.send_modify(|n| *n += 1);
        }
    }
}

/// The longest a delivery may live.
const MAX_EXPIRY: Duration = Duration::from_secs(366 * 24 * 3600);

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, message)
}

/// Makes a delivery from a `ferry send` request.
pub async fn create(
    app: &Arc<App>,
    sender: &User,
    ip: IpAddr,
    req: DeliveryRequest,
) -> Result<DeliveryCreated, ApiError> {
    if req.recipients.is_empty() {
        return Err(bad(
            codes::INVALID_REQUEST,
            "name at least one recipient (--to EMAIL)",
        ));
    }
    if sender.role == ferry_store::Role::Collaborator {
        return Err(ApiError::forbidden(
            "collaborators receive deliveries; they cannot send them",
        ));
    }
    let expires_in = req
        .expires_in_secs
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(
            app.site().default_expiry_days * 24 * 3600,
        ));
    if expires_in.is_zero() || expires_in > MAX_EXPIRY {
        return Err(bad(
            codes::INVALID_REQUEST,
            "a delivery lives between one second and a year",
        ));
    }
    let rules = PriorityRules::parse(&req.priorities)
        .map_err(|e| bad(codes::INVALID_REQUEST, e.to_string()))?;
    let (share, folder, files, onprem) = match (req.files.is_empty(), req.sources.is_empty()) {
        (false, true) => {
            let dest = req.dest.as_deref().ok_or_else(|| {
                bad(
                    codes::INVALID_REQUEST,
                    "uploaded files need a destination: --dest share=NAME/folder",
                )
            })?;
            let (share, target) = resolve_target(app, sender, dest, true)?;
            {
                let (share, target) = (share.clone(), target.clone());
                tokio::task::spawn_blocking(move || {
                    check_target(&share, &target, ferry_api::SessionKind::Put)
                })
                .await
                .map_err(ApiError::internal)??;
            }
            let mut tasks = Vec::with_capacity(req.files.len());
            for f in &req.files {
                let path = SharePath::parse(&f.path)
                    .map_err(|e| bad(codes::INVALID_PATH, format!("{}: {e}", f.path)))?;
                let priority = ferry_proto::Priority::new(f.priority)
                    .map_err(|e| bad(codes::INVALID_REQUEST, format!("{}: {e}", f.path)))?;
                tasks.push(NewTask {
                    path: path.as_str().to_owned(),
                    size: i64::try_from(f.size)
                        .map_err(|_| bad(codes::INVALID_REQUEST, "file too large"))?,
                    mtime_ns: f.mtime_ns,
                    priority: priority.get(),
                });
            }
            (share, target.path, tasks, false)
        }
        (true, false) => {
            let (share, folder, tasks) = resolve_sources(app, sender, &req.sources, &rules).await?;
            (share, folder, tasks, true)
        }
        (false, false) => {
            return Err(bad(
                codes::INVALID_REQUEST,
                "send either local files (uploaded) or share=… files (already on the appliance), not both",
            ));
        }
        (true, true) => return Err(bad(codes::INVALID_REQUEST, "no files to send")),
    };
    if files.len() as u64 > ferry_proto::plan::limits::MAX_FILES {
        return Err(bad(
            codes::INVALID_REQUEST,
            "too many files in one delivery",
        ));
    }
    let name = match req.name.as_deref().map(str::trim) {
        Some(n) if !n.is_empty() => clean_name(n)?,
        _ => default_name(&folder),
    };
    let plan = DeliveryPlan {
        delivery: NewDelivery {
            name: name.clone(),
            sender: sender.id,
            share: share.id,
            folder: folder.as_str().to_owned(),
            onprem,
            notify_progress: req.notify_progress,
            expires_at: now() + expires_in.as_secs() as i64,
        },
        upload: (!onprem).then(|| files.clone()),
        tasks: files,
        recipients: req.recipients.clone(),
        client_address: Some(ip.to_string()),
    };
    let store = app.store.clone();
    let made = tokio::task::spawn_blocking(move || store.make_delivery(&plan))
        .await
        .map_err(ApiError::internal)??;
    let _ = app.store.record_event(NewEvent {
        user: Some(sender.id),
        address: Some(ip.to_string()),
        action: "delivery.create",
        subject: format!("delivery {}", made.id),
        detail: format!("{name:?} to {}", req.recipients.join(", ")),
    });
    for invited in &made.invited {
        let _ = app.store.record_event(NewEvent {
            user: Some(sender.id),
            address: Some(ip.to_string()),
            action: "user.invite",
            subject: invited.email.clone(),
            detail: format!("recipient of delivery {}", made.id),
        });
        if let Err(e) = crate::mail::invite(app, invited, &sender.email) {
            log::error!("cannot queue the invitation to {}: {e}", invited.email);
        }
    }
    if let Ok(delivery) = app.store.delivery(made.id) {
        let recipients: Vec<User> = made.downloads.iter().map(|(_, u)| u.clone()).collect();
        crate::mail::delivery_made(app, &delivery, &recipients);
    }
    let mut jobs = Vec::new();
    if let Some(upload) = made.upload {
        jobs.push(JobRef {
            id: upload.0,
            name: format!("{name}-upload"),
            kind: "upload".into(),
            recipient: None,
        });
    }
    for (job, user) in &made.downloads {
        jobs.push(JobRef {
            id: job.0,
            name: name.clone(),
            kind: "download".into(),
            recipient: Some(user.email.clone()),
        });
    }
    log::info!(
        "delivery {} {name:?} by {}: {} jobs",
        made.id,
        sender.email,
        jobs.len()
    );
    Ok(DeliveryCreated {
        delivery: made.id.0,
        jobs,
    })
}

/// Names people see in listings and as the recipient's folder: one line,
/// no path separators.
fn clean_name(name: &str) -> Result<String, ApiError> {
    if name.len() > 200
        || name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
        || name == "."
        || name == ".."
    {
        return Err(bad(
            codes::INVALID_REQUEST,
            "a delivery name is one line of at most 200 characters, without '/' or '\\'",
        ));
    }
    Ok(name.to_owned())
}

fn default_name(folder: &SharePath) -> String {
    let day = jiff::Timestamp::from_second(now())
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default();
    match folder.file_name() {
        Some(f) => format!("{f} {day}"),
        None => format!("delivery {day}"),
    }
}

/// Resolves files already in a share (`share=NAME/path`, a folder, or a
/// sequence such as `share=NAME/shot.%04d.exr[1001-1100]`) into the
/// delivery's folder and tasks. Every path stays beneath the share root.
async fn resolve_sources(
    app: &Arc<App>,
    sender: &User,
    sources: &[String],
    rules: &PriorityRules,
) -> Result<(Share, SharePath, Vec<NewTask>), ApiError> {
    let mut share: Option<Share> = None;
    let mut paths = Vec::new();
    for source in sources {
        if !ShareRef::is_share_ref(source) {
            return Err(bad(
                codes::INVALID_REQUEST,
                format!("{source:?} is not share=NAME/path"),
            ));
        }
        // Sequence notation may hold characters the path rules refuse
        // ('[', '%'), so the share part is read first.
        let (s, rest) = source
            .strip_prefix("share=")
            .and_then(|r| r.split_once('/'))
            .ok_or_else(|| {
                bad(
                    codes::INVALID_PATH,
                    format!("{source:?}: name a file or folder inside the share"),
                )
            })?;
        let (found, _) = resolve_target(app, sender, &format!("share={s}/"), false)?;
        if share.as_ref().is_some_and(|sh| sh.id != found.id) {
            return Err(bad(
                codes::INVALID_REQUEST,
                "all files of a delivery come from one share",
            ));
        }
        share = Some(found);
        paths.push(rest.trim_end_matches('/').to_owned());
    }
    let share = share.ok_or_else(|| bad(codes::INVALID_REQUEST, "no files to send"))?;
    let root = Dir::open_ambient_dir(&share.abs_path, cap_std::ambient_authority())
        .map_err(ApiError::internal)?;
    let rules = rules.clone();
    let label = share.name.clone();
    let (folder, tasks) =
        tokio::task::spawn_blocking(move || walk_sources(&root, &label, &paths, &rules))
            .await
            .map_err(ApiError::internal)??;
    Ok((share, folder, tasks))
}

fn io_error(label: &str, path: &str, e: std::io::Error) -> ApiError {
    if e.to_string().contains("outside of the filesystem") {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            codes::OUTSIDE_SHARE,
            format!("share={label}/{path} leads outside the share; refused"),
        );
    }
    if e.kind() == std::io::ErrorKind::NotFound {
        return ApiError::not_found(format!("share={label}/{path} does not exist"));
    }
    ApiError::internal(format!("share={label}/{path}: {e}"))
}

fn walk_sources(
    root: &Dir,
    label: &str,
    sources: &[String],
    rules: &PriorityRules,
) -> Result<(SharePath, Vec<NewTask>), ApiError> {
    // (path in share, size, mtime) of every file, and each source's parent.
    let mut found: Vec<(SharePath, u64, i64)> = Vec::new();
    let mut parents: Vec<SharePath> = Vec::new();
    for source in sources {
        if let Some(pattern) =
            SequencePattern::parse(source).map_err(|e| bad(codes::INVALID_PATH, e.to_string()))?
        {
            let (dir, _) = pattern.folder();
            let dir =
                SharePath::parse_dir(dir).map_err(|e| bad(codes::INVALID_PATH, e.to_string()))?;
            let rel = if dir.is_root() { "." } else { dir.as_str() };
            let mut frames = Vec::new();
            for entry in root
                .read_dir(rel)
                .map_err(|e| io_error(label, dir.as_str(), e))?
            {
                let entry = entry.map_err(|e| io_error(label, dir.as_str(), e))?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let full = dir
                    .child(&name)
                    .map_err(|e| bad(codes::INVALID_PATH, e.to_string()))?;
                if pattern.frame_of(full.as_str()).is_some() {
                    frames.push(full);
                }
            }
            if frames.is_empty() {
                return Err(ApiError::not_found(format!(
                    "no frames of share={label}/{source}"
                )));
            }
            for f in frames {
                let meta = stat(root, label, &f)?;
                found.push((f, meta.0, meta.1));
            }
            parents.push(dir);
            continue;
        }
        let path = SharePath::parse(source)
            .map_err(|e| bad(codes::INVALID_PATH, format!("{source}: {e}")))?;
        parents.push(path.parent().unwrap_or_default());
        walk(root, label, &path, &mut found)?;
    }
    // The delivery's folder: the deepest folder holding every source.
    let mut folder = parents.first().cloned().unwrap_or_default();
    for p in &parents {
        while !p.starts_with(&folder) {
            folder = folder.parent().unwrap_or_default();
        }
    }
    let mut seen = HashSet::new();
    let mut tasks = Vec::new();
    for (path, size, mtime_ns) in found {
        let rel = path.strip_prefix(&folder).unwrap_or(path.clone());
        if seen.insert(rel.clone()) {
            tasks.push(NewTask {
                priority: rules.of(&rel).get(),
                path: rel.as_str().to_owned(),
                size: size as i64,
                mtime_ns,
            });
        }
    }
    if tasks.is_empty() {
        return Err(bad(codes::INVALID_REQUEST, "the sources hold no files"));
    }
    Ok((folder, tasks))
}

fn stat(root: &Dir, label: &str, path: &SharePath) -> Result<(u64, i64), ApiError> {
    let file = root
        .open(path.as_str())
        .map_err(|e| io_error(label, path.as_str(), e))?;
    let meta = file
        .into_std()
        .metadata()
        .map_err(|e| io_error(label, path.as_str(), e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    Ok((meta.len(), mtime))
}

fn walk(
    root: &Dir,
    label: &str,
    path: &SharePath,
    out: &mut Vec<(SharePath, u64, i64)>,
) -> Result<(), ApiError> {
    let meta = root
        .metadata(path.as_str())
        .map_err(|e| io_error(label, path.as_str(), e))?;
    if meta.is_file() {
        let (size, mtime) = stat(root, label, path)?;
        out.push((path.clone(), size, mtime));
        return Ok(());
    }
    if !meta.is_dir() {
        return Ok(());
    }
    let mut names: Vec<String> = Vec::new();
    for entry in root
        .read_dir(path.as_str())
        .map_err(|e| io_error(label, path.as_str(), e))?
    {
        let entry = entry.map_err(|e| io_error(label, path.as_str(), e))?;
        if let Some(name) = entry.file_name().to_str()
            && !is_working_file(name)
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    for name in names {
        let child = path
            .child(&name)
            .map_err(|e| bad(codes::INVALID_PATH, e.to_string()))?;
        let link = root
            .symlink_metadata(child.as_str())
            .map(|m| m.is_symlink())
            .unwrap_or(false);
        let meta = root
            .metadata(child.as_str())
            .map_err(|e| io_error(label, child.as_str(), e))?;
        if meta.is_dir() && link {
            continue;
        }
        walk(root, label, &child, out)?;
    }
    Ok(())
}

/// Removes a delivery's files from the appliance when it was the one that
/// put them there (an upload) and no live job elsewhere still needs them.
/// Never touches files of an on-prem delivery: they are the facility's.
pub fn delete_intermediate_files(app: &App, delivery: &Delivery, tasks: &[String]) -> usize {
    if delivery.onprem {
        return 0;
    }
    let Ok(share) = app.store.share(delivery.share_id) else {
        return 0;
    };
    let Ok(root) = Dir::open_ambient_dir(&share.abs_path, cap_std::ambient_authority()) else {
        return 0;
    };
    let Ok(folder) = SharePath::parse_dir(&delivery.folder) else {
        return 0;
    };
    let mut removed = 0;
    for task in tasks {
        let Ok(rel) = SharePath::parse(task) else {
            continue;
        };
        let Ok(path) = folder.join(&rel) else {
            continue;
        };
        if app
            .store
            .live_users_of(delivery.share_id, path.as_str(), delivery.id)
            .unwrap_or(1)
            > 0
        {
            continue;
        }
        for name in [
            path.as_str().to_owned(),
            format!("{}{}", path.as_str(), ferry_proto::path::PART_SUFFIX),
            format!("{}{}", path.as_str(), ferry_proto::path::STATE_SUFFIX),
        ] {
            if root.remove_file(&name).is_ok() && name == path.as_str() {
                removed += 1;
            }
        }
    }
    removed
}

/// Retires expired deliveries: their sessions stop, their unfinished jobs
/// end, and files that were uploaded only for them go.
pub async fn janitor(app: Arc<App>) {
    let every = Duration::from_secs(app.config.deliveries.janitor_secs.max(1));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = app.shutdown.cancelled() => return,
        }
        crate::mail::reminders(&app);
        let expired = match app.store.expired_deliveries(now()) {
            Ok(e) => e,
            Err(e) => {
                log::warn!("looking for expired deliveries: {e}");
                continue;
            }
        };
        for delivery in expired {
            let jobs = app
                .store
                .list_jobs(&ferry_store::JobFilter {
                    delivery: Some(delivery.id),
                    all: true,
                    limit: 10_000,
                    ..Default::default()
                })
                .unwrap_or_default();
            let ids: HashSet<_> = jobs.iter().map(|j| j.id).collect();
            for live in app.live().values() {
                if ids.contains(&live.job) {
                    live.stop.stop(ErrorCode::Aborted, "the delivery expired");
                }
            }
            if let Err(e) = app.store.expire_delivery(delivery.id) {
                log::warn!("expiring delivery {}: {e}", delivery.id);
                continue;
            }
            let mut paths: Vec<String> = Vec::new();
            for job in &jobs {
                for task in app.store.tasks(job.id).unwrap_or_default() {
                    if task.status != TaskStatus::Excluded {
                        paths.push(task.path);
                    }
                }
            }
            paths.sort();
            paths.dedup();
            let removed = delete_intermediate_files(&app, &delivery, &paths);
            log::info!(
                "delivery {} {:?} expired: {} jobs ended, {removed} files removed",
                delivery.id,
                delivery.name,
                jobs.iter().filter(|j| !j.status.is_finished()).count()
            );
            let _ = app.store.record_event(NewEvent {
                action: "delivery.expire",
                subject: format!("delivery {}", delivery.id),
                detail: format!("{removed} files removed"),
                ..Default::default()
            });
            app.hub.bump(delivery.id);
        }
    }
}
