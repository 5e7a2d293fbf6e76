//! Jobs: listing, showing and controlling them (pause, resume, abort,
//! retry, purge, priority, rate), with the rulebook deciding who may do
//! what. The REST API, the web admin, and through them the CLI and the
//! desktop app all come here, and every job shown carries the actions its
//! viewer may take, so no client guesses.

use std::net::IpAddr;
use std::sync::Arc;

use ferry_api::{JobDetail, JobInfo, JobList, TaskInfo};
use ferry_domain::rules::{self, Refusal};
use ferry_domain::{JobAction, JobId, JobKind, JobStatus, UserId};
use ferry_proto::rules::{glob_matcher, glob_matches};
use ferry_proto::{ErrorCode, Priority, Rate, SharePath};
use ferry_store::{Job, JobFilter, Store, StoreError, Task, User};

use crate::audit::{Actor, Audit};
use crate::clock::Clock;
use crate::deliveries::{Deliveries, DeliveriesError};
use crate::failing;
use crate::live::LiveSessions;
use crate::settings::Settings;

/// Why a job operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobsError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Deliveries(#[from] DeliveriesError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

failing!(JobsError {
    JobsError::Refused(r) => (r.failure(), r.code()),
    JobsError::Invalid(_) => (Invalid, INVALID_REQUEST),
    JobsError::Deliveries(e) => (e.failure(), e.code()),
    JobsError::Store(e) => (e.failure(), e.code()),
});

/// Whose jobs a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Side {
    /// Every job the caller may see.
    #[default]
    Any,
    /// Jobs the caller receives.
    Recipient,
    /// Jobs the caller sent.
    Sender,
}

/// Which jobs to list.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub finished: bool,
    pub all: bool,
    pub status: Option<JobStatus>,
    pub kind: Option<JobKind>,
    pub side: Side,
    /// Download jobs the caller's agent should run now (queued, running,
    /// or failed and due for a retry).
    pub runnable: bool,
    /// Only jobs that concern this person (an admin looking at someone,
    /// or an employee narrowing to a recipient).
    pub person: Option<UserId>,
    /// The last id of the previous page.
    pub before: Option<JobId>,
    pub limit: u32,
}

/// The jobs service.
#[derive(Clone)]
pub struct Jobs {
    store: Arc<dyn Store>,
    audit: Audit,
    clock: Arc<dyn Clock>,
    settings: Settings,
    live: Arc<LiveSessions>,
    deliveries: Deliveries,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").finish_non_exhaustive()
    }
}

impl Jobs {
    /// How many jobs are in each status (purged ones left out), every
    /// status listed: for the appliance's metrics, which only the daemon
    /// serves, to admins.
    pub async fn count_by_status(&self) -> Result<Vec<(JobStatus, i64)>, StoreError> {
        self.store.count_jobs_by_status().await
    }

    pub fn new(
        store: Arc<dyn Store>,
        audit: Audit,
        clock: Arc<dyn Clock>,
        settings: Settings,
        live: Arc<LiveSessions>,
        deliveries: Deliveries,
    ) -> Self {
        Jobs {
            store,
            audit,
            clock,
            settings,
            live,
            deliveries,
        }
    }

    /// The job, when `user` may see it.
    pub async fn visible(&self, user: &User, id: i64) -> Result<Job, JobsError> {
        let job = self.store.job(JobId(id)).await.map_err(|e| match e {
            StoreError::NotFound(_) => Refusal::NotFound(format!("there is no job {id}")).into(),
            other => JobsError::Store(other),
        })?;
        rules::see(&user.caller(), &job.facts())?;
        Ok(job)
    }

    /// A job as the API shows it to `viewer`.
    pub async fn info(&self, viewer: &User, job: &Job) -> Result<JobInfo, JobsError> {
        let delivery = match job.delivery_id {
            Some(d) => Some(self.store.delivery(d).await?),
            None => None,
        };
        let share = match job.share_id {
            Some(s) => Some(self.store.share(s).await?),
            None => None,
        };
        // A running put's or get's row is written every few seconds; its
        // session counts live, so every view shows the same, latest figure.
        let live = self
            .live
            .of_job(job.id)
            .first()
            .map(|s| s.handle.progress())
            .filter(|s| !job.kind.is_delivery() && s.files_total > 0);
        let (files_total, files_done, bytes_total, bytes_done) = match live {
            Some(s) => (
                s.files_total as i64,
                s.files_done as i64,
                s.bytes_total as i64,
                s.bytes_done() as i64,
            ),
            None => (
                job.files_total,
                job.files_done,
                job.bytes_total,
                job.bytes_done,
            ),
        };
        Ok(JobInfo {
            id: job.id.0,
            kind: job.kind,
            name: job.name.clone(),
            status: job.status,
            owner: job.owner_email.clone(),
            recipient: job.recipient_email.clone(),
            delivery: job.delivery_id.map(|d| d.0),
            delivery_name: delivery.as_ref().map(|d| d.name.clone()),
            share: share.map(|s| s.name),
            folder: job.folder.clone(),
            files_total,
            files_done,
            bytes_total,
            bytes_done,
            bytes_skipped: job.bytes_skipped,
            rate: job.rate,
            target_rate: job.target_rate,
            pace: self.live.pace_of(job.id).map(|p| p.to_string()),
            transport: self.live.transport_of(job.id),
            retries: job.retries,
            error: job.error.clone(),
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            next_retry_at: job.next_retry_at,
            expires_at: delivery.map(|d| d.expires_at),
            urgent: job.urgent,
            actions: rules::actions(&viewer.caller(), &job.facts()),
        })
    }

    /// A job with its files, and its files grouped into lines.
    pub async fn detail(&self, viewer: &User, id: i64) -> Result<JobDetail, JobsError> {
        let job = self.visible(viewer, id).await?;
        let tasks = self.store.tasks(job.id).await?;
        Ok(JobDetail {
            job: self.info(viewer, &job).await?,
            lines: crate::view::lines(&tasks),
            tasks: tasks.iter().map(task_info).collect(),
        })
    }

    /// A page of the jobs `user` may see, newest first.
    pub async fn list(&self, user: &User, q: &Listing) -> Result<JobList, JobsError> {
        let limit = if q.limit == 0 {
            100
        } else {
            q.limit.clamp(1, 1000)
        };
        let mut filter = JobFilter {
            visible_to: (!user.is_admin()).then_some(user.id),
            finished: q.finished,
            all: q.all || q.runnable,
            status: q.status,
            kind: q.kind,
            before: q.before,
            limit,
            ..Default::default()
        };
        match q.side {
            Side::Any => {}
            Side::Recipient => filter.recipient = Some(user.id),
            Side::Sender => filter.owner = Some(user.id),
        }
        if let Some(person) = q.person {
            if user.is_admin() {
                filter.visible_to = Some(person);
            } else {
                // An employee narrows their own jobs to one recipient.
                filter.recipient = Some(person);
            }
        }
        if q.runnable {
            filter.recipient = Some(user.id);
            filter.kind = Some(JobKind::Download);
            filter.limit = 1000;
        }
        let jobs = self.store.list_jobs(&filter).await?;
        let t = self.clock.now();
        let jobs: Vec<Job> = if q.runnable {
            jobs.into_iter()
                .filter(|j| rules::run(&user.caller(), &j.facts(), t).is_ok())
                .collect()
        } else {
            jobs
        };
        let more = !q.runnable && jobs.len() as u32 == filter.limit;
        let mut infos = Vec::with_capacity(jobs.len());
        for j in &jobs {
            infos.push(self.info(user, j).await?);
        }
        Ok(JobList {
            next_cursor: more.then(|| jobs.last().map(|j| j.id.0)).flatten(),
            jobs: infos,
        })
    }

    /// Pauses, resumes, aborts or retries a job; purges it with
    /// [`Jobs::purge`], re-caps it with [`Jobs::set_rate`] and moves its
    /// files with [`Jobs::reprioritise`].
    pub async fn act(
        &self,
        user: &User,
        from: IpAddr,
        id: i64,
        action: JobAction,
    ) -> Result<Job, JobsError> {
        match action {
            JobAction::Purge => return self.purge(user, from, id, false).await.map(|(j, _)| j),
            JobAction::Priority | JobAction::Rate | JobAction::Urgent => {
                return Err(JobsError::Invalid(format!(
                    "{action} takes a value: use the job's {action} form"
                )));
            }
            _ => {}
        }
        let job = self.visible(user, id).await?;
        let party = rules::act(&user.caller(), &job.facts(), action)?;
        let held_by = rules::hold_after(&job.facts(), action, party);
        let by = format!("{} ({party})", user.email);
        match action {
            JobAction::Pause => {
                self.store
                    .hold_job(job.id, JobStatus::Paused, held_by.unwrap_or(party), None)
                    .await?;
                self.live.stop_job(
                    job.id,
                    ErrorCode::Aborted,
                    &format!("job {id} was paused by {by}"),
                );
            }
            JobAction::Resume => {
                self.store
                    .set_job_status(job.id, JobStatus::Queued, None)
                    .await?;
            }
            JobAction::Abort => {
                let reason = format!("aborted by {by}");
                self.store
                    .hold_job(
                        job.id,
                        JobStatus::Aborted,
                        held_by.unwrap_or(party),
                        Some(&reason),
                    )
                    .await?;
                self.live.stop_job(
                    job.id,
                    ErrorCode::Aborted,
                    &format!("job {id} was {reason}"),
                );
            }
            JobAction::Retry => self.store.requeue_job(job.id).await?,
            JobAction::Purge | JobAction::Priority | JobAction::Rate | JobAction::Urgent => {}
        }
        self.audit
            .note(
                Actor::user(user.id, from)
                    .line(action.audit(), format!("job {}", job.id))
                    .detail(format!("as {party}")),
            )
            .await;
        if let Some(d) = job.delivery_id {
            self.deliveries.hub.bump(d);
        }
        Ok(self.store.job(job.id).await?)
    }

    /// Withdraws a job for good (aborting it first if it runs): it leaves
    /// listings and its recipient cannot resume it. With `delete_files`,
    /// what its delivery's upload wrote on the appliance goes too, unless
    /// another live job still uses it. Returns how many files went.
    pub async fn purge(
        &self,
        user: &User,
        from: IpAddr,
        id: i64,
        delete_files: bool,
    ) -> Result<(Job, usize), JobsError> {
        let job = self.visible(user, id).await?;
        let party = rules::act(&user.caller(), &job.facts(), JobAction::Purge)?;
        if !job.status.is_finished() {
            let held_by = rules::hold_after(&job.facts(), JobAction::Purge, party);
            self.store
                .hold_job(
                    job.id,
                    JobStatus::Aborted,
                    held_by.unwrap_or(party),
                    Some(&format!("purged by {}", user.email)),
                )
                .await?;
        }
        self.store.purge_job(job.id).await?;
        self.live.stop_job(
            job.id,
            ErrorCode::Aborted,
            &format!("job {id} was withdrawn by its sender"),
        );
        let removed = match (delete_files, job.delivery_id) {
            (true, Some(d)) => {
                let delivery = self.deliveries.get(d).await?;
                self.deliveries.delete_own_files(&delivery).await?
            }
            _ => 0,
        };
        self.audit
            .note(
                Actor::user(user.id, from)
                    .line(JobAction::Purge.audit(), format!("job {}", job.id))
                    .detail(format!("{removed} files removed")),
            )
            .await;
        if let Some(d) = job.delivery_id {
            self.deliveries.hub.bump(d);
        }
        Ok((self.store.job(job.id).await?, removed))
    }

    /// Sets or clears a job's own rate cap; its running sessions follow at
    /// once. Under a cap set by someone above them, a caller may only
    /// lower it.
    pub async fn set_rate(
        &self,
        user: &User,
        from: IpAddr,
        id: i64,
        rate: Option<&str>,
    ) -> Result<Job, JobsError> {
        let job = self.visible(user, id).await?;
        let rate: Option<Rate> = rate
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::parse)
            .transpose()
            .map_err(|e: ferry_proto::RateError| JobsError::Invalid(e.to_string()))?;
        let cap = rules::set_rate(&user.caller(), &job.facts(), rate.map(Rate::bits_per_sec))?;
        self.store.set_job_cap(job.id, cap).await?;
        let job = self.store.job(job.id).await?;
        let site = self.settings.pace();
        let cap_rate = cap.and_then(|c| Rate::from_bits_per_sec(c.bits_per_sec).ok());
        self.live.repace_job(job.id, cap_rate, site);
        self.audit
            .note(
                Actor::user(user.id, from)
                    .line(JobAction::Rate.audit(), format!("job {}", job.id))
                    .detail(match (cap_rate, site.target) {
                        (Some(r), Some(s)) if r > s => {
                            format!("{r} (the site's cap of {s} still applies)")
                        }
                        (Some(r), _) => r.to_string(),
                        (None, Some(s)) => format!("the site's cap of {s}"),
                        (None, None) => "no cap".to_owned(),
                    }),
            )
            .await;
        if let Some(d) = job.delivery_id {
            self.deliveries.hub.bump(d);
        }
        Ok(job)
    }

    /// Marks a job urgent or not (admins): the bandwidth schedule's cap
    /// does not slow an urgent job; its running sessions follow at once.
    pub async fn set_urgent(
        &self,
        user: &User,
        from: IpAddr,
        id: i64,
        urgent: bool,
    ) -> Result<Job, JobsError> {
        let job = self.visible(user, id).await?;
        rules::act(&user.caller(), &job.facts(), JobAction::Urgent)?;
        self.store.set_job_urgent(job.id, urgent).await?;
        self.live.set_urgent(job.id, urgent);
        self.audit
            .note(
                Actor::user(user.id, from)
                    .line(JobAction::Urgent.audit(), format!("job {}", job.id))
                    .detail(if urgent {
                        "urgent: the bandwidth schedule does not slow it"
                    } else {
                        "no longer urgent"
                    }),
            )
            .await;
        Ok(self.store.job(job.id).await?)
    }

    /// Sets the priority of a job's files that match `glob`; a running
    /// session takes the change at once. Returns the job and how many
    /// files moved.
    pub async fn reprioritise(
        &self,
        user: &User,
        from: IpAddr,
        id: i64,
        glob: &str,
        priority: &str,
    ) -> Result<(Job, usize), JobsError> {
        let job = self.visible(user, id).await?;
        rules::act(&user.caller(), &job.facts(), JobAction::Priority)?;
        let priority: Priority = priority
            .parse()
            .map_err(|e: ferry_proto::PriorityError| JobsError::Invalid(e.to_string()))?;
        let matcher = glob_matcher(glob).map_err(JobsError::Invalid)?;
        let tasks = self.store.tasks(job.id).await?;
        let paths: Vec<SharePath> = tasks
            .iter()
            .filter_map(|t| SharePath::parse(&t.path).ok())
            .filter(|p| glob_matches(&matcher, p))
            .collect();
        if paths.is_empty() {
            return Err(JobsError::Invalid(format!(
                "no file of job {id} matches {glob:?}"
            )));
        }
        let names: Vec<String> = paths.iter().map(|p| p.as_str().to_owned()).collect();
        self.store
            .set_task_priority(job.id, &names, priority.get())
            .await?;
        self.live.reprioritise(job.id, &paths, priority);
        self.audit
            .note(
                Actor::user(user.id, from)
                    .line(JobAction::Priority.audit(), format!("job {}", job.id))
                    .detail(format!(
                        "{} files matching {glob:?} to {priority}",
                        paths.len()
                    )),
            )
            .await;
        if let Some(d) = job.delivery_id {
            self.deliveries.hub.bump(d);
        }
        Ok((self.store.job(job.id).await?, paths.len()))
    }

    /// A job's files.
    pub async fn tasks(&self, job: JobId) -> Result<Vec<Task>, JobsError> {
        Ok(self.store.tasks(job).await?)
    }
}

pub fn task_info(t: &Task) -> TaskInfo {
    TaskInfo {
        id: t.id.0,
        path: t.path.clone(),
        size: t.size,
        priority: t.priority,
        status: t.status,
        bytes_done: t.bytes_done,
        digest: t.digest.clone(),
        finished_at: t.finished_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FROM, World};
    use ferry_domain::rules::Refusal;

    #[tokio::test]
    async fn a_recipient_cannot_undo_an_abort_nor_override_an_admin() {
        let w = World::new().await;
        let (_, down) = w.delivery(&[("a.mov", 10)]).await;
        let jobs = &w.s.jobs;
        // Hole 1: the sender aborts; the recipient's retry is refused.
        jobs.act(&w.sender, FROM, down, JobAction::Abort)
            .await
            .unwrap();
        let e = jobs
            .act(&w.recipient, FROM, down, JobAction::Retry)
            .await
            .unwrap_err();
        assert!(
            matches!(e, JobsError::Refused(Refusal::Forbidden(_))),
            "{e}"
        );
        let info = jobs.detail(&w.recipient, down).await.unwrap().job;
        assert_eq!(info.status, JobStatus::Aborted);
        assert!(info.actions.is_empty(), "{:?}", info.actions);
        // The sender sends it again.
        jobs.act(&w.sender, FROM, down, JobAction::Retry)
            .await
            .unwrap();
        // Hole 2: an admin pauses and caps; the recipient may neither resume
        // nor raise the cap, only lower it.
        jobs.act(&w.admin, FROM, down, JobAction::Pause)
            .await
            .unwrap();
        jobs.set_rate(&w.admin, FROM, down, Some("1M"))
            .await
            .unwrap();
        assert!(
            jobs.act(&w.recipient, FROM, down, JobAction::Resume)
                .await
                .is_err()
        );
        assert!(
            jobs.set_rate(&w.recipient, FROM, down, Some("100G"))
                .await
                .is_err()
        );
        assert!(jobs.set_rate(&w.recipient, FROM, down, None).await.is_err());
        let j = jobs
            .set_rate(&w.recipient, FROM, down, Some("500k"))
            .await
            .unwrap();
        assert_eq!(j.target_rate, Some(500_000));
        assert_eq!(j.status, JobStatus::Paused);
        // Every action is audited with the party it was taken as.
        let audit = w.store.list_events(20, None, Some("job")).await.unwrap();
        assert!(
            audit
                .iter()
                .any(|e| e.action == "job.pause" && e.detail == "as admin")
        );
    }

    #[tokio::test]
    async fn other_peoples_jobs_do_not_exist_and_listings_carry_the_callers_actions() {
        let w = World::new().await;
        let (up, down) = w.delivery(&[("a.mov", 10)]).await;
        let jobs = &w.s.jobs;
        for id in [up, down] {
            assert!(matches!(
                jobs.detail(&w.colleague, id).await,
                Err(JobsError::Refused(Refusal::NotFound(_)))
            ));
        }
        assert!(matches!(
            jobs.detail(&w.recipient, up).await,
            Err(JobsError::Refused(Refusal::NotFound(_)))
        ));
        let mine = jobs.list(&w.recipient, &Listing::default()).await.unwrap();
        assert_eq!(mine.jobs.len(), 1);
        assert!(mine.jobs[0].actions.contains(&JobAction::Pause));
        assert!(!mine.jobs[0].actions.contains(&JobAction::Abort));
        let theirs = jobs.list(&w.sender, &Listing::default()).await.unwrap();
        assert_eq!(theirs.jobs.len(), 2);
        assert!(
            theirs
                .jobs
                .iter()
                .all(|j| j.actions.contains(&JobAction::Abort))
        );
        // The agent's runnable list: queued downloads of the caller only.
        let runnable = Listing {
            runnable: true,
            ..Default::default()
        };
        assert_eq!(
            jobs.list(&w.recipient, &runnable).await.unwrap().jobs.len(),
            1
        );
        assert!(
            jobs.list(&w.sender, &runnable)
                .await
                .unwrap()
                .jobs
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_priority_change_needs_a_matching_file_and_a_visible_job() {
        let w = World::new().await;
        let (_, down) = w.delivery(&[("a.mov", 10), ("seq/f.0001.exr", 1)]).await;
        let jobs = &w.s.jobs;
        let (_, n) = jobs
            .reprioritise(&w.recipient, FROM, down, "*.mov", "high")
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert!(matches!(
            jobs.reprioritise(&w.recipient, FROM, down, "*.wav", "high")
                .await,
            Err(JobsError::Invalid(_))
        ));
        assert!(
            jobs.reprioritise(&w.colleague, FROM, down, "*.mov", "low")
                .await
                .is_err()
        );
    }
}
