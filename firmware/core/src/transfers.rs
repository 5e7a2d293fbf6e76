//! Data sessions, as far as the services see them: what a session request
//! may move (granting it), the job row that tells everyone how it goes
//! (beginning, files done, progress), and what its end means for its job
//! (settling it, with the domain's [`settle`] deciding).
//!
//! The data plane adapter runs the session itself; everything it records
//! or decides goes through here.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use ferry_api::{SessionKind, SessionRequest};
use ferry_domain::ending::{Ending, JobNow, Notice, settle};
use ferry_domain::rules::{self, Refusal};
use ferry_domain::{DeliveryId, JobId, JobKind, JobStatus, TaskStatus};
use ferry_engine::Snapshot;
use ferry_proto::SharePath;
use ferry_store::{Delivery, Job, JobFilter, NewJob, Share, Store, StoreError, Task, User};

use crate::audit::{Actor, Audit};
use crate::clock::Clock;
use crate::deliveries::{Deliveries, DeliveriesError};
use crate::failing;
use crate::notifier::Notifier;
use crate::shares::{Shares, SharesError};

/// Why a session may not be granted, or its bookkeeping failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransfersError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Shares(#[from] SharesError),
    #[error(transparent)]
    Deliveries(#[from] DeliveriesError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

failing!(TransfersError {
    TransfersError::Refused(Refusal::Conflict(_)) => (Conflict, JOB_NOT_RUNNABLE),
    TransfersError::Refused(r) => (r.failure(), r.code()),
    TransfersError::Shares(e) => (e.failure(), e.code()),
    TransfersError::Deliveries(e) => (e.failure(), e.code()),
    TransfersError::Invalid(_) => (Invalid, INVALID_REQUEST),
    TransfersError::Store(e) => (e.failure(), e.code()),
});

/// What a granted session moves.
#[derive(Debug, Clone)]
pub enum Target {
    /// Files from the client into a folder of a share.
    Put { share: Share, path: SharePath },
    /// A file or folder of a share to the client.
    Get { share: Share, path: SharePath },
    /// A delivery's files from its sender.
    Upload {
        job: Job,
        delivery: Delivery,
        share: Share,
    },
    /// A delivery's files to one recipient.
    Download {
        job: Job,
        delivery: Delivery,
        share: Share,
    },
}

impl Target {
    pub fn share(&self) -> &Share {
        match self {
            Target::Put { share, .. }
            | Target::Get { share, .. }
            | Target::Upload { share, .. }
            | Target::Download { share, .. } => share,
        }
    }

    pub fn kind(&self) -> JobKind {
        match self {
            Target::Put { .. } => JobKind::Put,
            Target::Get { .. } => JobKind::Get,
            Target::Upload { .. } => JobKind::Upload,
            Target::Download { .. } => JobKind::Download,
        }
    }

    /// The delivery, for a delivery's session.
    pub fn delivery(&self) -> Option<&Delivery> {
        match self {
            Target::Upload { delivery, .. } | Target::Download { delivery, .. } => Some(delivery),
            _ => None,
        }
    }

    /// What it moves, in words for the log and the audit.
    pub fn describe(&self) -> String {
        match self {
            Target::Put { share, path } => {
                format!("put into share={}/{}", share.name, path.as_str())
            }
            Target::Get { share, path } => format!("get share={}/{}", share.name, path.as_str()),
            Target::Upload { job, .. } => format!("upload job {}", job.id),
            Target::Download { job, .. } => format!("download job {}", job.id),
        }
    }
}

/// Where a delivery's download stands: its files, those that have landed
/// on the appliance, and whether its upload is over.
#[derive(Debug, Clone)]
pub struct Landing {
    pub tasks: Vec<Task>,
    pub landed: HashSet<String>,
    pub upload_over: bool,
}

/// The transfers service.
#[derive(Clone)]
pub struct Transfers {
    store: Arc<dyn Store>,
    audit: Audit,
    clock: Arc<dyn Clock>,
    shares: Shares,
    deliveries: Deliveries,
    notifier: Notifier,
    /// This node's name: the jobs whose sessions it carries are marked
    /// with it.
    node: String,
}

impl std::fmt::Debug for Transfers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfers").finish_non_exhaustive()
    }
}

impl Transfers {
    pub fn new(
        store: Arc<dyn Store>,
        audit: Audit,
        clock: Arc<dyn Clock>,
        shares: Shares,
        deliveries: Deliveries,
        notifier: Notifier,
        node: String,
    ) -> Self {
        Transfers {
            store,
            audit,
            clock,
            shares,
            deliveries,
            notifier,
            node,
        }
    }

    /// What a session request asks to move, checked against the caller's
    /// rights and the job's state.
    pub async fn target(
        &self,
        user: &User,
        req: &SessionRequest,
    ) -> Result<Target, TransfersError> {
        if let Some(key) = &req.resume_key
            && (key.is_empty() || key.len() > 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(TransfersError::Invalid(
                "resume_key is up to 64 hex digits".into(),
            ));
        }
        match req.kind {
            SessionKind::Put | SessionKind::Get => {
                let text = req.target.as_deref().ok_or_else(|| {
                    TransfersError::Invalid("put and get need a target: share=NAME/path".into())
                })?;
                let put = req.kind == SessionKind::Put;
                let (share, target) = self.shares.resolve(user, text, put).await?;
                self.shares
                    .check_target(&share, &target.path, req.kind)
                    .await?;
                Ok(if put {
                    Target::Put {
                        share,
                        path: target.path,
                    }
                } else {
                    Target::Get {
                        share,
                        path: target.path,
                    }
                })
            }
            SessionKind::Upload | SessionKind::Download => {
                let id = req.job.ok_or_else(|| {
                    TransfersError::Invalid("uploads and downloads name their job".into())
                })?;
                let job = self.store.job(JobId(id)).await.map_err(|e| match e {
                    StoreError::NotFound(_) => {
                        TransfersError::Refused(Refusal::NotFound(format!("there is no job {id}")))
                    }
                    other => other.into(),
                })?;
                let expected = if req.kind == SessionKind::Upload {
                    JobKind::Upload
                } else {
                    JobKind::Download
                };
                rules::see(&user.caller(), &job.facts())?;
                if job.kind != expected {
                    return Err(TransfersError::Invalid(format!(
                        "job {id} is a {} job",
                        job.kind
                    )));
                }
                rules::run(&user.caller(), &job.facts(), self.clock.now())?;
                let delivery_id = job.delivery_id.ok_or_else(|| {
                    TransfersError::Invalid(format!("job {id} is not part of a delivery"))
                })?;
                let delivery = self.store.delivery(delivery_id).await?;
                let share = self.store.share(delivery.share_id).await?;
                Ok(if req.kind == SessionKind::Upload {
                    Target::Upload {
                        job,
                        delivery,
                        share,
                    }
                } else {
                    Target::Download {
                        job,
                        delivery,
                        share,
                    }
                })
            }
        }
    }

    /// A granted session began: its job is running. A direct put or get
    /// continues the unfinished job its client's run (`resume_key`)
    /// opened before, else gets a job of its own now.
    pub async fn begin(
        &self,
        target: &Target,
        user: &User,
        client: IpAddr,
        resume_key: Option<&str>,
    ) -> Result<JobId, TransfersError> {
        let job = self.running(target, user, client, resume_key).await?;
        // The job is this node's until its session ends: a node that
        // restarts marks only its own jobs as cut, not another node's.
        self.store.carry_job(job, &self.node).await?;
        Ok(job)
    }

    async fn running(
        &self,
        target: &Target,
        user: &User,
        client: IpAddr,
        resume_key: Option<&str>,
    ) -> Result<JobId, TransfersError> {
        match target {
            Target::Put { share, path } | Target::Get { share, path } => {
                let kind = target.kind();
                if let Some(key) = resume_key
                    && let Some(job) = self.store.resumable_job(user.id, kind, key).await?
                {
                    self.store.reopen_job(job, &client.to_string()).await?;
                    return Ok(job);
                }
                Ok(self
                    .store
                    .create_job(&NewJob {
                        kind,
                        name: target.describe(),
                        owner: user.id,
                        share: Some(share.id),
                        folder: path.as_str().to_owned(),
                        status: JobStatus::Running,
                        client_address: Some(client.to_string()),
                        delivery: None,
                        recipient: None,
                        resume_key: resume_key.map(str::to_owned),
                    })
                    .await?)
            }
            Target::Upload { job, .. } | Target::Download { job, .. } => {
                self.store
                    .set_job_status(job.id, JobStatus::Running, None)
                    .await?;
                Ok(job.id)
            }
        }
    }

    /// A file of a delivery job is where it belongs. For an upload, what it
    /// committed is recorded, and the recipients' sessions learn it landed.
    pub async fn file_done(
        &self,
        target: &Target,
        job: JobId,
        path: &SharePath,
        committed: Option<(u64, i64, String)>,
    ) -> Result<(), TransfersError> {
        let digest = committed.as_ref().map(|(_, _, d)| d.as_str());
        self.store.task_done(job, path.as_str(), digest).await?;
        if let Target::Upload { delivery, .. } = target {
            if let Some((size, mtime_ns, digest)) = &committed {
                self.deliveries
                    .committed(delivery, path, *size, *mtime_ns, digest)
                    .await?;
            }
            self.deliveries.hub.bump(delivery.id);
        }
        Ok(())
    }

    /// Writes a session's progress into its job row.
    pub async fn progress(
        &self,
        job: JobId,
        direct: bool,
        s: &Snapshot,
        rate: i64,
    ) -> Result<(), TransfersError> {
        if direct {
            if s.files_total > 0 {
                self.store
                    .set_job_totals(job, s.files_total as i64, s.bytes_total as i64)
                    .await?;
            }
            self.store
                .set_job_progress(
                    job,
                    s.files_done as i64,
                    s.bytes_done() as i64,
                    s.bytes_skipped as i64,
                    rate,
                )
                .await?;
        } else {
            self.store
                .set_job_rate(job, rate, s.bytes_skipped as i64)
                .await?;
        }
        Ok(())
    }

    /// Whether every file of a delivery job is where it belongs (an
    /// upload's on the appliance, a download's with its recipient).
    pub async fn all_files_done(&self, job: JobId) -> Result<usize, TransfersError> {
        Ok(self
            .store
            .tasks(job)
            .await?
            .iter()
            .filter(|t| !matches!(t.status, TaskStatus::Done | TaskStatus::Excluded))
            .count())
    }

    /// A session ended: the job moves on as the domain decides, people are
    /// told, and the audit log says how it went.
    pub async fn settle(
        &self,
        job: JobId,
        ending: &Ending,
        target: &Target,
        who: Actor,
    ) -> Result<(), TransfersError> {
        let now = self.store.job(job).await?;
        let settled = settle(
            &JobNow {
                id: now.id,
                kind: now.kind,
                status: now.status,
                retries: u32::try_from(now.retries).unwrap_or(u32::MAX),
                round: u32::try_from(now.round).unwrap_or(u32::MAX),
            },
            ending,
            self.clock.now(),
        );
        match &settled.status {
            Some((JobStatus::Failed, error)) if settled.counted => {
                self.store
                    .fail_job(job, error.as_deref().unwrap_or(""), settled.retry_at)
                    .await?;
            }
            Some((status, error)) => {
                self.store
                    .set_job_status(job, *status, error.as_deref())
                    .await?;
            }
            None => {}
        }
        // The job has moved: telling people and the audit may fail without
        // undoing it, but not silently.
        match &settled.notice {
            Some(Notice::Done) => {
                if let Err(e) = self.notifier.job_done(job).await {
                    log::error!("cannot queue the notice that job {job} is done: {e}");
                }
            }
            Some(Notice::Failed { error, dedupe }) => {
                if let Err(e) = self.notifier.job_failed(job, error, dedupe).await {
                    log::error!("cannot queue the notice that job {job} failed: {e}");
                }
            }
            None => {}
        }
        self.audit
            .note(
                who.line(settled.audit, format!("job {job}"))
                    .detail(settled.detail.clone()),
            )
            .await;
        if let Some(d) = target.delivery() {
            self.deliveries.hub.bump(d.id);
        }
        match settled.status {
            Some((JobStatus::Done, _)) => log::info!(job_id = job.0; "job {job} done"),
            _ => log::warn!(job_id = job.0; "job {job} ended: {}", settled.detail),
        }
        Ok(())
    }

    /// Where a delivery's download stands, for its session's plan.
    pub async fn landing(
        &self,
        job: JobId,
        delivery: DeliveryId,
    ) -> Result<Landing, TransfersError> {
        let tasks = self.store.tasks(job).await?;
        let upload = self
            .store
            .list_jobs(&JobFilter {
                delivery: Some(delivery),
                kind: Some(JobKind::Upload),
                all: true,
                ..Default::default()
            })
            .await?
            .into_iter()
            .next();
        let (landed, upload_over) = match upload {
            // On-prem: every file was there from the start.
            None => (tasks.iter().map(|t| t.path.clone()).collect(), true),
            Some(u) => {
                let status = self.store.job(u.id).await?.status;
                let done = self
                    .store
                    .tasks(u.id)
                    .await?
                    .into_iter()
                    .filter(|t| t.status == TaskStatus::Done)
                    .map(|t| t.path)
                    .collect();
                (done, status.is_finished())
            }
        };
        Ok(Landing {
            tasks,
            landed,
            upload_over,
        })
    }

    /// The digests the appliance knows of a delivery's files: what its
    /// upload verified as it received them. A recipient's claim to hold a
    /// file is checked against these.
    pub async fn known_digests(
        &self,
        delivery: DeliveryId,
    ) -> Result<std::collections::HashMap<String, String>, TransfersError> {
        let upload = self
            .store
            .list_jobs(&JobFilter {
                delivery: Some(delivery),
                kind: Some(JobKind::Upload),
                all: true,
                ..Default::default()
            })
            .await?
            .into_iter()
            .next();
        let Some(u) = upload else {
            return Ok(Default::default());
        };
        Ok(self
            .store
            .tasks(u.id)
            .await?
            .into_iter()
            .filter_map(|t| Some((t.path, t.digest?)))
            .collect())
    }

    /// A job's own cap, in bits per second.
    pub async fn job_cap(&self, job: JobId) -> Result<Option<u64>, TransfersError> {
        Ok(self.store.job(job).await?.target_rate)
    }

    /// Is the job urgent (spared the bandwidth schedule's cap)?
    pub async fn urgent(&self, job: JobId) -> Result<bool, TransfersError> {
        Ok(self.store.job(job).await?.urgent)
    }

    /// Jobs left running by a daemon that stopped without finishing them
    /// are settled at the next start: direct ones failed, delivery ones
    /// queued again for their clients to resume.
    pub async fn after_restart(&self, reason: &str) -> Result<usize, TransfersError> {
        Ok(self.store.fail_interrupted_jobs(&self.node, reason).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FROM, World};

    fn download(job: i64) -> SessionRequest {
        SessionRequest {
            kind: SessionKind::Download,
            target: None,
            job: Some(job),
            resume_key: None,
        }
    }

    #[tokio::test]
    async fn only_the_recipient_runs_a_download_and_only_while_it_may_move() {
        let w = World::new().await;
        let (up, down) = w.delivery(&[("a.mov", 4)]).await;
        let t = &w.s.transfers;
        assert!(t.target(&w.recipient, &download(down)).await.is_ok());
        assert!(t.target(&w.sender, &download(down)).await.is_err());
        assert!(matches!(
            t.target(&w.colleague, &download(down)).await,
            Err(TransfersError::Refused(Refusal::NotFound(_)))
        ));
        let upload = SessionRequest {
            kind: SessionKind::Upload,
            target: None,
            job: Some(up),
            resume_key: None,
        };
        assert!(t.target(&w.sender, &upload).await.is_ok());
        // Done: no session may be opened for it any more.
        w.store
            .set_job_status(JobId(down), JobStatus::Done, None)
            .await
            .unwrap();
        let e = t.target(&w.recipient, &download(down)).await.unwrap_err();
        assert!(
            matches!(e, TransfersError::Refused(Refusal::Conflict(_))),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_failing_session_cannot_flip_a_done_job_nor_mail_twice() {
        let w = World::new().await;
        let (_, down) = w.delivery(&[("a.mov", 4)]).await;
        let t = &w.s.transfers;
        let target = t.target(&w.recipient, &download(down)).await.unwrap();
        let who = Actor::user(w.recipient.id, FROM);
        let job = JobId(down);
        // Five failures back off; the sixth is for good, and mailed once.
        for _ in 0..6 {
            w.store
                .set_job_status(job, JobStatus::Running, None)
                .await
                .unwrap();
            t.settle(job, &Ending::Failed("refused".into()), &target, who)
                .await
                .unwrap();
        }
        let j = w.store.job(job).await.unwrap();
        assert_eq!((j.status, j.next_retry_at), (JobStatus::Failed, None));
        let failed_mails =
            w.s.notifier
                .due(100)
                .await
                .unwrap()
                .into_iter()
                .filter(|m| m.kind == "job.failed")
                .count();
        assert_eq!(failed_mails, 2, "the sender and the admin, once each");
        // A session cannot be opened for it now, so no more mail comes.
        assert!(t.target(&w.recipient, &download(down)).await.is_err());
        // A done job stays done whatever a late session says.
        w.store
            .set_job_status(job, JobStatus::Done, None)
            .await
            .unwrap();
        t.settle(job, &Ending::Failed("forged".into()), &target, who)
            .await
            .unwrap();
        assert_eq!(w.store.job(job).await.unwrap().status, JobStatus::Done);
    }

    #[tokio::test]
    async fn what_has_landed_and_what_the_upload_verified() {
        let w = World::new().await;
        let (up, down) = w.delivery(&[("a.mov", 4), ("b.mov", 4)]).await;
        let t = &w.s.transfers;
        let target = t
            .target(
                &w.sender,
                &SessionRequest {
                    kind: SessionKind::Upload,
                    target: None,
                    job: Some(up),
                    resume_key: None,
                },
            )
            .await
            .unwrap();
        std::fs::create_dir_all(w.media.join("review")).unwrap();
        std::fs::write(w.media.join("review/a.mov"), b"data").unwrap();
        t.file_done(
            &target,
            JobId(up),
            &SharePath::parse("a.mov").unwrap(),
            Some((4, 0, "abcd".into())),
        )
        .await
        .unwrap();
        let delivery = target.delivery().unwrap().id;
        let landing = t.landing(JobId(down), delivery).await.unwrap();
        assert_eq!(landing.landed.len(), 1);
        assert!(!landing.upload_over);
        let known = t.known_digests(delivery).await.unwrap();
        assert_eq!(known.get("a.mov").map(String::as_str), Some("abcd"));
        assert_eq!(t.all_files_done(JobId(up)).await.unwrap(), 1);
    }
}
