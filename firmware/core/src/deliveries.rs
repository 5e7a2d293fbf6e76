//! Deliveries: making them from a `ferry send` request, telling recipients'
//! sessions when a file has landed, and retiring them when they expire.
//!
//! A delivery's files live in one folder of one share. With an upload job,
//! the sender's client puts them there; without one (on-prem), they were
//! there already. Each recipient's download job takes a file as soon as it
//! has landed, highest priority first.
//!
//! What a delivery's upload committed is recorded (path, size, modification
//! time, BLAKE3), and purging or expiring a delivery deletes only that,
//! and only while the file there is still the one it wrote. A delivery
//! may not adopt a file that already lies in the share as its upload: such
//! a request is refused when the delivery is made (send it from the share
//! instead), so a declared-but-never-uploaded path can never lead to a
//! facility's own file being deleted.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ferry_api::{DeliveryCreated, DeliveryRequest, JobRef};
use ferry_domain::rules::{self, Refusal};
use ferry_domain::{AuditAction, DeliveryId, JobKind, TaskStatus};
use ferry_engine::EngineError;
use ferry_engine::share::{EntryKind, ShareRoot};
use ferry_proto::sequence::SequencePattern;
use ferry_proto::{ErrorCode, Priority, PriorityRules, SharePath};
use ferry_store::{
    Delivery, DeliveryPlan, JobFilter, NewDelivery, NewTask, Share, Store, StoreError, User,
    Watched,
};
use tokio::sync::watch;

use crate::audit::{Actor, Audit};
use crate::clock::Clock;
use crate::failing;
use crate::live::LiveSessions;
use crate::notifier::Notifier;
use crate::settings::Settings;
use crate::shares::{Shares, SharesError};

/// Why a delivery could not be made or retired.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveriesError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Shares(#[from] SharesError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    BadPath(String),
    #[error(
        "{0} already lies in the share: a delivery uploads new files only. Send files that are on the \
         appliance already as share=… sources, or choose another folder"
    )]
    WouldAdopt(String),
    #[error("{0}")]
    Missing(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

failing!(DeliveriesError {
    DeliveriesError::Refused(r) => (r.failure(), r.code()),
    DeliveriesError::Shares(e) => (e.failure(), e.code()),
    DeliveriesError::Invalid(_) => (Invalid, INVALID_REQUEST),
    DeliveriesError::BadPath(_) => (Invalid, INVALID_PATH),
    DeliveriesError::WouldAdopt(_) => (Conflict, CONFLICT),
    DeliveriesError::Missing(_) => (NotFound, NOT_FOUND),
    DeliveriesError::Store(e) => (e.failure(), e.code()),
});

fn invalid(m: impl Into<String>) -> DeliveriesError {
    DeliveriesError::Invalid(m.into())
}

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

/// The deliveries service.
#[derive(Clone)]
pub struct Deliveries {
    store: Arc<dyn Store>,
    audit: Audit,
    clock: Arc<dyn Clock>,
    settings: Settings,
    shares: Shares,
    notifier: Notifier,
    live: Arc<LiveSessions>,
    pub hub: Arc<Hub>,
}

impl std::fmt::Debug for Deliveries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliveries").finish_non_exhaustive()
    }
}

impl Deliveries {
    pub fn new(
        store: Arc<dyn Store>,
        audit: Audit,
        clock: Arc<dyn Clock>,
        settings: Settings,
        shares: Shares,
        notifier: Notifier,
        live: Arc<LiveSessions>,
    ) -> Self {
        Deliveries {
            store,
            audit,
            clock,
            settings,
            shares,
            notifier,
            live,
            hub: Arc::default(),
        }
    }

    pub async fn get(&self, id: DeliveryId) -> Result<Delivery, DeliveriesError> {
        Ok(self.store.delivery(id).await?)
    }

    /// Makes a delivery from a `ferry send` request: an upload job (unless
    /// the files already lie in a share) and one download job per
    /// recipient; new addresses become invited collaborators.
    pub async fn create(
        &self,
        sender: &User,
        from: IpAddr,
        req: DeliveryRequest,
    ) -> Result<DeliveryCreated, DeliveriesError> {
        self.make(sender, Actor::user(sender.id, from), req, None)
            .await
    }

    /// Makes a delivery of an entry a watch found settled, on behalf of
    /// the watch's sender. The entry is remembered with it, in the same
    /// transaction: a second try at the same entry is a conflict, and
    /// nothing of it is left.
    pub async fn create_watched(
        &self,
        sender: &User,
        req: DeliveryRequest,
        watched: Watched,
    ) -> Result<DeliveryCreated, DeliveriesError> {
        let who = Actor {
            user: Some(sender.id),
            from: None,
        };
        self.make(sender, who, req, Some(watched)).await
    }

    async fn make(
        &self,
        sender: &User,
        who: Actor,
        req: DeliveryRequest,
        watched: Option<Watched>,
    ) -> Result<DeliveryCreated, DeliveriesError> {
        let sending = if req.sources.is_empty() {
            rules::Sending::Uploads
        } else {
            rules::Sending::FromShares
        };
        rules::send(&sender.caller(), sending)?;
        if req.recipients.is_empty() {
            return Err(invalid("name at least one recipient (--to EMAIL)"));
        }
        let lifetime = self
            .settings
            .current()
            .delivery_lifetime(req.expires_in_secs)
            .map_err(|e| invalid(e.why))?;
        let rules = PriorityRules::parse(&req.priorities).map_err(|e| invalid(e.to_string()))?;
        let (share, folder, files, onprem) = match (req.files.is_empty(), req.sources.is_empty()) {
            (false, true) => {
                let dest = req.dest.as_deref().ok_or_else(|| {
                    invalid("uploaded files need a destination: --dest share=NAME/folder")
                })?;
                let (share, target) = self.shares.resolve(sender, dest, true).await?;
                self.shares
                    .check_target(&share, &target.path, ferry_api::SessionKind::Put)
                    .await?;
                let tasks = declared(&req)?;
                self.refuse_adoption(&share, &target.path, &tasks).await?;
                (share, target.path, tasks, false)
            }
            (true, false) => {
                let (share, folder, tasks) =
                    self.resolve_sources(sender, &req.sources, &rules).await?;
                (share, folder, tasks, true)
            }
            (false, false) => {
                return Err(invalid(
                    "send either local files (uploaded) or share=… files (already on the appliance), not both",
                ));
            }
            (true, true) => return Err(invalid("no files to send")),
        };
        if files.len() as u64 > ferry_proto::plan::limits::MAX_FILES {
            return Err(invalid("too many files in one delivery"));
        }
        let name = match req.name.as_deref().map(str::trim) {
            Some(n) if !n.is_empty() => clean_name(n)?,
            _ => default_name(&folder, self.clock.now()),
        };
        // Sending to a new address invites its owner: staff's to do.
        for r in &req.recipients {
            if self.store.user_by_email(r.trim()).await?.is_none() {
                rules::invite_by_sending(&sender.caller(), r.trim())?;
            }
        }
        let plan = DeliveryPlan {
            delivery: NewDelivery {
                name: name.clone(),
                sender: sender.id,
                share: share.id,
                folder: folder.as_str().to_owned(),
                onprem,
                notify_progress: req.notify_progress,
                expires_at: self.clock.now() + lifetime as i64,
            },
            upload: (!onprem).then(|| files.clone()),
            tasks: files,
            recipients: req.recipients.clone(),
            client_address: who.from.map(|a| a.to_string()),
            watched,
        };
        let made = self.store.make_delivery(&plan).await?;
        // The delivery exists from here on: what follows is told, not undone.
        self.audit
            .note(
                who.line(AuditAction::DeliveryCreate, format!("delivery {}", made.id))
                    .detail(format!("{name:?} to {}", req.recipients.join(", "))),
            )
            .await;
        for invited in &made.invited {
            self.audit
                .note(
                    who.line(AuditAction::UserInvite, invited.email.clone())
                        .detail(format!("recipient of delivery {}", made.id)),
                )
                .await;
            if let Err(e) = self.notifier.invite(invited, &sender.email).await {
                log::error!("cannot queue the invitation to {}: {e}", invited.email);
            }
        }
        let delivery = self.store.delivery(made.id).await?;
        let recipients: Vec<User> = made.downloads.iter().map(|(_, u)| u.clone()).collect();
        if let Err(e) = self.notifier.delivery_made(&delivery, &recipients).await {
            log::error!("cannot queue the notices of delivery {}: {e}", made.id);
        }
        let mut jobs = Vec::new();
        if let Some(upload) = made.upload {
            jobs.push(JobRef {
                id: upload.0,
                name: format!("{name}-upload"),
                kind: JobKind::Upload,
                recipient: None,
            });
        }
        for (job, user) in &made.downloads {
            jobs.push(JobRef {
                id: job.0,
                name: name.clone(),
                kind: JobKind::Download,
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

    /// Refuses a delivery whose declared uploads already lie in the share.
    async fn refuse_adoption(
        &self,
        share: &Share,
        folder: &SharePath,
        tasks: &[NewTask],
    ) -> Result<(), DeliveriesError> {
        let root = self.shares.root(share)?;
        let paths: Vec<SharePath> = tasks
            .iter()
            .filter_map(|t| SharePath::parse(&t.path).ok())
            .filter_map(|p| folder.join(&p).ok())
            .collect();
        let label = share.name.clone();
        let taken = tokio::task::spawn_blocking(move || {
            paths
                .into_iter()
                .find(|p| matches!(root.stat(p), Ok(e) if e.kind == EntryKind::File))
        })
        .await
        .map_err(|e| invalid(format!("checking the destination: {e}")))?;
        match taken {
            Some(p) => Err(DeliveriesError::WouldAdopt(format!(
                "share={label}/{}",
                p.as_str()
            ))),
            None => Ok(()),
        }
    }

    /// Resolves files already in a share (`share=NAME/path`, a folder, or
    /// a sequence such as `share=NAME/shot.%04d.exr[1001-1100]`) into the
    /// delivery's folder and tasks. Every path stays beneath the share.
    async fn resolve_sources(
        &self,
        sender: &User,
        sources: &[String],
        rules: &PriorityRules,
    ) -> Result<(Share, SharePath, Vec<NewTask>), DeliveriesError> {
        let mut share: Option<Share> = None;
        let mut paths = Vec::new();
        for source in sources {
            // Sequence notation may hold characters the path rules refuse
            // ('[', '%'), so the share part is read first.
            let (s, rest) = source
                .strip_prefix("share=")
                .and_then(|r| r.split_once('/'))
                .ok_or_else(|| {
                    DeliveriesError::BadPath(format!(
                        "{source:?}: name a file or folder inside a share (share=NAME/path)"
                    ))
                })?;
            let (found, _) = self
                .shares
                .resolve(sender, &format!("share={s}/"), false)
                .await?;
            if share.as_ref().is_some_and(|sh| sh.id != found.id) {
                return Err(invalid("all files of a delivery come from one share"));
            }
            share = Some(found);
            paths.push(rest.trim_end_matches('/').to_owned());
        }
        let share = share.ok_or_else(|| invalid("no files to send"))?;
        let root = self.shares.root(&share)?;
        let rules = rules.clone();
        let (folder, tasks) =
            tokio::task::spawn_blocking(move || walk_sources(&root, &paths, &rules))
                .await
                .map_err(|e| invalid(format!("walking the sources: {e}")))??;
        Ok((share, folder, tasks))
    }

    /// A file of `delivery`'s upload was committed: recorded, so that only
    /// what the upload wrote is ever deleted with the delivery.
    pub async fn committed(
        &self,
        delivery: &Delivery,
        path: &SharePath,
        size: u64,
        mtime_ns: i64,
        digest: &str,
    ) -> Result<(), DeliveriesError> {
        let folder = SharePath::parse_dir(&delivery.folder).map_err(|e| invalid(e.to_string()))?;
        let full = folder.join(path).map_err(|e| invalid(e.to_string()))?;
        self.store
            .record_commit(delivery.id, full.as_str(), size as i64, mtime_ns, digest)
            .await?;
        Ok(())
    }

    /// Deletes the files `delivery`'s upload wrote (and their part files)
    /// that no other live job uses and that are still what it wrote.
    /// Never touches an on-prem delivery's files: they are the facility's.
    pub async fn delete_own_files(&self, delivery: &Delivery) -> Result<usize, DeliveriesError> {
        if delivery.onprem {
            return Ok(0);
        }
        let share = self.store.share(delivery.share_id).await?;
        let root = self.shares.root(&share)?;
        let mut doomed = Vec::new();
        for c in self.store.commits(delivery.id).await? {
            let Ok(path) = SharePath::parse(&c.path) else {
                continue;
            };
            if self
                .store
                .live_users_of(delivery.share_id, &c.path, delivery.id)
                .await?
                > 0
            {
                continue;
            }
            doomed.push((path, c.size, c.mtime_ns));
        }
        let removed = tokio::task::spawn_blocking(move || remove_if_unchanged(&root, &doomed))
            .await
            .map_err(|e| invalid(format!("removing files: {e}")))?;
        Ok(removed)
    }

    /// Retires expired deliveries: their sessions stop, their unfinished
    /// jobs end, and files that were uploaded only for them go.
    pub async fn expire_due(&self) -> Result<usize, DeliveriesError> {
        let expired = self.store.expired_deliveries(self.clock.now()).await?;
        let n = expired.len();
        for delivery in expired {
            let jobs = self
                .store
                .list_jobs(&JobFilter {
                    delivery: Some(delivery.id),
                    all: true,
                    limit: 10_000,
                    ..Default::default()
                })
                .await?;
            let ids: HashSet<_> = jobs.iter().map(|j| j.id).collect();
            self.live.stop_where(
                |s| ids.contains(&s.job),
                ErrorCode::Aborted,
                "the delivery expired",
            );
            self.store.expire_delivery(delivery.id).await?;
            let removed = match self.delete_own_files(&delivery).await {
                Ok(n) => n,
                Err(e) => {
                    log::error!(
                        "removing the files of expired delivery {}: {e}",
                        delivery.id
                    );
                    0
                }
            };
            log::info!(
                "delivery {} {:?} expired: {} jobs ended, {removed} files removed",
                delivery.id,
                delivery.name,
                jobs.iter().filter(|j| !j.status.is_finished()).count()
            );
            self.audit
                .note(
                    Actor::appliance()
                        .line(
                            AuditAction::DeliveryExpire,
                            format!("delivery {}", delivery.id),
                        )
                        .detail(format!("{removed} files removed")),
                )
                .await;
            self.hub.bump(delivery.id);
        }
        Ok(n)
    }
}

/// The files a sender declares for upload, as tasks.
fn declared(req: &DeliveryRequest) -> Result<Vec<NewTask>, DeliveriesError> {
    let mut tasks = Vec::with_capacity(req.files.len());
    for f in &req.files {
        let path = SharePath::parse(&f.path)
            .map_err(|e| DeliveriesError::BadPath(format!("{}: {e}", f.path)))?;
        let priority =
            Priority::new(f.priority).map_err(|e| invalid(format!("{}: {e}", f.path)))?;
        tasks.push(NewTask {
            path: path.as_str().to_owned(),
            size: i64::try_from(f.size).map_err(|_| invalid("file too large"))?,
            mtime_ns: f.mtime_ns,
            priority: priority.get(),
        });
    }
    Ok(tasks)
}

/// Names people see in listings and as the recipient's folder: one line,
/// no path separators.
fn clean_name(name: &str) -> Result<String, DeliveriesError> {
    if name.len() > 200
        || name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
        || name == "."
        || name == ".."
    {
        return Err(invalid(
            "a delivery name is one line of at most 200 characters, without '/' or '\\'",
        ));
    }
    Ok(name.to_owned())
}

/// A name from the folder and the day, without spaces (it becomes the
/// recipient's folder).
fn default_name(folder: &SharePath, now: i64) -> String {
    let day = jiff::Timestamp::from_second(now)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default();
    match folder.file_name() {
        Some(f) => format!("{f}-{day}"),
        None => format!("delivery-{day}"),
    }
}

/// Classifies an engine error beneath the sources' share.
fn source_error(root: &ShareRoot, path: &SharePath, e: EngineError) -> DeliveriesError {
    let name = root.name_of(path);
    match e {
        EngineError::OutsideShare { .. } => SharesError::Outside(name).into(),
        EngineError::NotFound { .. } => DeliveriesError::Missing(format!("{name} does not exist")),
        other => invalid(format!("{name}: {other}")),
    }
}

/// The delivery's folder (the deepest folder holding every source) and
/// its tasks.
fn walk_sources(
    root: &ShareRoot,
    sources: &[String],
    rules: &PriorityRules,
) -> Result<(SharePath, Vec<NewTask>), DeliveriesError> {
    let mut found: Vec<(SharePath, u64, i64)> = Vec::new();
    let mut parents: Vec<SharePath> = Vec::new();
    for source in sources {
        if let Some(pattern) =
            SequencePattern::parse(source).map_err(|e| DeliveriesError::BadPath(e.to_string()))?
        {
            let (dir, _) = pattern.folder();
            let dir =
                SharePath::parse_dir(dir).map_err(|e| DeliveriesError::BadPath(e.to_string()))?;
            let entries = root.list(&dir).map_err(|e| source_error(root, &dir, e))?;
            let mut frames = 0;
            for entry in entries.iter().filter(|e| e.kind == EntryKind::File) {
                let full = dir
                    .child(&entry.name)
                    .map_err(|e| DeliveriesError::BadPath(e.to_string()))?;
                if pattern.frame_of(full.as_str()).is_some() {
                    found.push((full, entry.size, entry.mtime_ns));
                    frames += 1;
                }
            }
            if frames == 0 {
                return Err(DeliveriesError::Missing(format!(
                    "no frames of {}/{source}",
                    root.label()
                )));
            }
            parents.push(dir);
            continue;
        }
        let path = SharePath::parse(source)
            .map_err(|e| DeliveriesError::BadPath(format!("{source}: {e}")))?;
        parents.push(path.parent().unwrap_or_default());
        for f in root
            .files_beneath(&path)
            .map_err(|e| source_error(root, &path, e))?
        {
            found.push((f.path, f.size, f.mtime_ns));
        }
    }
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
        return Err(invalid("the sources hold no files"));
    }
    Ok((folder, tasks))
}

/// Removes each file (with its part and state files) that is still the
/// size and age it was committed with; returns how many files went.
fn remove_if_unchanged(root: &ShareRoot, files: &[(SharePath, i64, i64)]) -> usize {
    let mut removed = 0;
    for (path, size, mtime_ns) in files {
        match root.stat(path) {
            Ok(e)
                if e.kind == EntryKind::File
                    && e.size as i64 == *size
                    && e.mtime_ns == *mtime_ns =>
            {
                match root.remove_file(path) {
                    Ok(true) => removed += 1,
                    Ok(false) => {}
                    Err(e) => log::warn!("cannot remove {}: {e}", root.name_of(path)),
                }
            }
            Ok(_) => log::info!(
                "{} changed since its delivery wrote it; kept",
                root.name_of(path)
            ),
            Err(_) => {}
        }
        for working in [
            ferry_proto::path::PART_SUFFIX,
            ferry_proto::path::STATE_SUFFIX,
        ] {
            let name = format!("{}{working}", path.as_str());
            // A working file is named only here, never by a user: it
            // cannot pass the path checker, so it is removed by raw name.
            if let Err(e) = root.dir().remove_file(&name)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                log::warn!("cannot remove {}/{name}: {e}", root.label());
            }
        }
    }
    removed
}

/// Tasks of a delivery's download job that have landed on the appliance
/// and may be planned now: highest priority first, and never a file while
/// one of higher priority is still on its way up. `None` when the plan is
/// complete (the upload is over and nothing more will land).
pub fn ready_to_plan<'a>(
    tasks: &'a [ferry_store::Task],
    landed: &HashSet<String>,
    upload_over: bool,
    planned: &HashSet<String>,
) -> Option<Vec<&'a ferry_store::Task>> {
    let waiting: Vec<&ferry_store::Task> = tasks
        .iter()
        .filter(|t| t.status != TaskStatus::Excluded && !planned.contains(&t.path))
        .collect();
    let blocked_above = waiting
        .iter()
        .filter(|t| !landed.contains(&t.path))
        .map(|t| t.priority)
        .max();
    let ready: Vec<&ferry_store::Task> = waiting
        .iter()
        .copied()
        .filter(|t| landed.contains(&t.path) && blocked_above.is_none_or(|b| t.priority >= b))
        .collect();
    let nothing_more = waiting.iter().all(|t| !landed.contains(&t.path));
    if upload_over && ready.is_empty() && nothing_more {
        return None;
    }
    Some(ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FROM, World};
    use ferry_domain::{JobAction, JobId, TaskId};

    fn task(path: &str, priority: u16) -> ferry_store::Task {
        ferry_store::Task {
            id: TaskId(0),
            job_id: JobId(1),
            path: path.into(),
            size: 1,
            mtime_ns: 0,
            priority,
            status: TaskStatus::Queued,
            bytes_done: 0,
            digest: None,
            finished_at: None,
        }
    }

    fn set(paths: &[&str]) -> HashSet<String> {
        paths.iter().map(|p| (*p).to_owned()).collect()
    }

    #[test]
    fn proxies_go_first_and_nothing_overtakes_a_file_still_on_its_way() {
        let tasks = vec![
            task("a.mov", 999),
            task("f.1.exr", 500),
            task("f.2.exr", 500),
        ];
        // The movie has not landed: frames wait behind it.
        let r = ready_to_plan(&tasks, &set(&["f.1.exr"]), false, &set(&[])).unwrap();
        assert!(r.is_empty());
        let r = ready_to_plan(&tasks, &set(&["a.mov", "f.1.exr"]), false, &set(&[])).unwrap();
        let names: Vec<&str> = r.iter().map(|t| t.path.as_str()).collect();
        assert_eq!(names, ["a.mov", "f.1.exr"]);
        // Everything planned and the upload over: the plan ends.
        let all = set(&["a.mov", "f.1.exr", "f.2.exr"]);
        assert!(ready_to_plan(&tasks, &all, true, &all).is_none());
        // The upload ended without a file: the plan ends without it too.
        let got = set(&["a.mov", "f.1.exr"]);
        assert!(ready_to_plan(&tasks, &got, true, &got).is_none());
    }

    #[test]
    fn names_are_one_line_without_separators_and_defaults_have_no_spaces() {
        assert!(clean_name("review 2026-12-02").is_ok());
        assert!(clean_name("a/b").is_err());
        assert!(clean_name("..").is_err());
        assert!(clean_name("two\nlines").is_err());
        let n = default_name(
            &SharePath::parse("theproject/review").unwrap(),
            1_764_633_600,
        );
        assert_eq!(n, "review-2025-12-02");
        assert!(!n.contains(' '));
    }

    #[test]
    fn only_files_still_as_written_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mine.mov"), b"mine").unwrap();
        std::fs::write(dir.path().join("theirs.mov"), b"theirs, replaced").unwrap();
        std::fs::write(dir.path().join("mine.mov.ferry-state"), b"s").unwrap();
        let root = ShareRoot::open(dir.path(), "share=media").unwrap();
        let stat = |p: &str| root.stat(&SharePath::parse(p).unwrap()).unwrap();
        let mine = stat("mine.mov");
        let files = vec![
            (SharePath::parse("mine.mov").unwrap(), 4, mine.mtime_ns),
            // Committed as 6 bytes; 16 lie there now.
            (
                SharePath::parse("theirs.mov").unwrap(),
                6,
                stat("theirs.mov").mtime_ns,
            ),
            (SharePath::parse("gone.mov").unwrap(), 1, 0),
        ];
        assert_eq!(remove_if_unchanged(&root, &files), 1);
        assert!(!dir.path().join("mine.mov").exists());
        assert!(!dir.path().join("mine.mov.ferry-state").exists());
        assert!(dir.path().join("theirs.mov").exists());
    }

    #[tokio::test]
    async fn a_delivery_may_not_adopt_a_file_that_lies_in_the_share() {
        let w = World::new().await;
        std::fs::create_dir_all(w.media.join("master")).unwrap();
        std::fs::write(w.media.join("master/important.mov"), b"the original").unwrap();
        let e =
            w.s.deliveries
                .create(
                    &w.sender,
                    FROM,
                    ferry_api::DeliveryRequest {
                        recipients: vec![w.recipient.email.clone()],
                        dest: Some("share=media/master".into()),
                        files: vec![ferry_api::DeliveryFile {
                            path: "important.mov".into(),
                            size: 12,
                            mtime_ns: 0,
                            priority: 500,
                        }],
                        ..Default::default()
                    },
                )
                .await
                .unwrap_err();
        assert!(matches!(e, DeliveriesError::WouldAdopt(_)), "{e}");
        assert!(e.to_string().contains("share=media/master/important.mov"));
        assert!(
            w.s.jobs
                .list(&w.sender, &Default::default())
                .await
                .unwrap()
                .jobs
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_purge_deletes_only_what_its_upload_committed_and_is_still_as_written() {
        let w = World::new().await;
        let (up, down) = w
            .delivery(&[("a.mov", 4), ("b.mov", 4), ("c.mov", 4)])
            .await;
        let review = w.media.join("review");
        std::fs::create_dir_all(&review).unwrap();
        for f in ["a.mov", "b.mov", "c.mov"] {
            std::fs::write(review.join(f), b"data").unwrap();
        }
        let delivery =
            w.s.deliveries
                .get(
                    w.store
                        .job(ferry_domain::JobId(up))
                        .await
                        .unwrap()
                        .delivery_id
                        .unwrap(),
                )
                .await
                .unwrap();
        let root =
            w.s.shares
                .root(&w.store.share(delivery.share_id).await.unwrap())
                .unwrap();
        // a.mov and b.mov were committed by the upload; c.mov never was
        // (declared, then someone else put it there).
        for f in ["a.mov", "b.mov"] {
            let p = SharePath::parse(f).unwrap();
            let e = root
                .stat(&SharePath::parse(&format!("review/{f}")).unwrap())
                .unwrap();
            w.s.deliveries
                .committed(&delivery, &p, e.size, e.mtime_ns, "d")
                .await
                .unwrap();
        }
        // b.mov was replaced since.
        std::fs::write(review.join("b.mov"), b"someone else's").unwrap();
        w.s.jobs
            .act(&w.sender, FROM, down, JobAction::Abort)
            .await
            .unwrap();
        let (_, removed) = w.s.jobs.purge(&w.sender, FROM, up, true).await.unwrap();
        assert_eq!(removed, 1);
        assert!(!review.join("a.mov").exists());
        assert!(review.join("b.mov").exists());
        assert!(review.join("c.mov").exists());
    }

    #[tokio::test]
    async fn expiry_retires_a_delivery_and_its_own_files_only() {
        let w = World::new().await;
        std::fs::create_dir_all(w.media.join("takes")).unwrap();
        std::fs::write(w.media.join("takes/t1.mov"), b"facility's").unwrap();
        // On-prem: the files are the facility's, never deleted.
        let made =
            w.s.deliveries
                .create(
                    &w.sender,
                    FROM,
                    ferry_api::DeliveryRequest {
                        recipients: vec![w.recipient.email.clone()],
                        sources: vec!["share=media/takes".into()],
                        expires_in_secs: Some(60),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
        assert_eq!(made.jobs.len(), 1, "no upload job for files already there");
        assert_eq!(w.s.deliveries.expire_due().await.unwrap(), 0);
        w.clock.advance(61);
        assert_eq!(w.s.deliveries.expire_due().await.unwrap(), 1);
        assert!(w.media.join("takes/t1.mov").exists());
        let job = w.s.jobs.detail(&w.recipient, made.jobs[0].id).await;
        assert!(job.is_err() || job.unwrap().job.status.is_finished());
        let audit = w
            .store
            .list_events(5, None, Some("delivery.expire"))
            .await
            .unwrap();
        assert_eq!(audit.len(), 1);
    }

    #[tokio::test]
    async fn collaborators_do_not_send_and_lifetimes_are_bounded() {
        let w = World::new().await;
        let req = || ferry_api::DeliveryRequest {
            recipients: vec!["x@y.io".into()],
            sources: vec!["share=media/".into()],
            ..Default::default()
        };
        assert!(matches!(
            w.s.deliveries.create(&w.recipient, FROM, req()).await,
            Err(DeliveriesError::Refused(_))
        ));
        let mut long = req();
        long.expires_in_secs = Some(400 * 24 * 3600);
        assert!(matches!(
            w.s.deliveries.create(&w.sender, FROM, long).await,
            Err(DeliveriesError::Invalid(_))
        ));
        // A colleague without a grant is told of no share at all.
        let e =
            w.s.deliveries
                .create(&w.colleague, FROM, req())
                .await
                .unwrap_err();
        assert!(e.to_string().contains("there is no share named"), "{e}");
    }
}
