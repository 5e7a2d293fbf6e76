//! Who is told what by email, and when. Every message is composed
//! (ferry-mail) and written to the outbox first; the mail sender (an
//! adapter) sends what is due. Users who opted out get nothing but
//! invitations.
//!
//! Each notice carries a dedupe key, so the same event queues one message
//! however many times it is reported: one "waiting" per recipient, one
//! "received" per job, one "failed" per round of a job (a job retried by
//! hand that fails for good again is a new round), each reminder once.

use std::sync::Arc;

use ferry_domain::rules::Refusal;
use ferry_domain::settings::SiteSettings;
use ferry_domain::{AuditAction, JobId, JobKind, JobStatus, Role};
use ferry_mail::{DeliveryFacts, FileLine, Mail};
use ferry_store::{
    Delivery, Job, JobFilter, NewMail, OutboxCounts, OutboxMail, Store, StoreError, UnsentMail,
    User,
};
use tokio::sync::{Notify, watch};

use crate::audit::{Actor, Audit, line};
use crate::authority::By;
use crate::clock::Clock;

/// How long an invitation link works.
pub const INVITATION_TTL_SECS: i64 = 7 * 24 * 3600;

/// Reminder bits kept on the delivery, so each goes once.
const AT_TWO_THIRDS: i64 = 1;
const THREE_DAYS_BEFORE: i64 = 2;
const HALF_DELIVERED: i64 = 4;

/// The notifier.
#[derive(Clone)]
pub struct Notifier {
    store: Arc<dyn Store>,
    audit: Audit,
    clock: Arc<dyn Clock>,
    site: watch::Receiver<SiteSettings>,
    /// The port people reach the web admin on, for links.
    control_port: u16,
    /// The host for links when no public address is set.
    fallback_host: String,
    /// Wakes the mail sender when a message is queued.
    queued: Arc<Notify>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

impl Notifier {
    pub fn new(
        store: Arc<dyn Store>,
        audit: Audit,
        clock: Arc<dyn Clock>,
        site: watch::Receiver<SiteSettings>,
        control_port: u16,
        fallback_host: String,
    ) -> Self {
        Notifier {
            store,
            audit,
            clock,
            site,
            control_port,
            fallback_host,
            queued: Arc::new(Notify::new()),
        }
    }

    /// Resolves when a message was queued (the mail sender waits on it).
    pub async fn queued(&self) {
        self.queued.notified().await
    }

    /// The host people reach the appliance at.
    pub fn host(&self) -> String {
        self.site
            .borrow()
            .public_address
            .clone()
            .unwrap_or_else(|| self.fallback_host.clone())
    }

    /// The web address people open.
    pub fn base_url(&self) -> String {
        let host = self.host();
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        format!("https://{host}:{}", self.control_port)
    }

    /// Writes a composed message to the outbox and wakes the sender;
    /// `None` when the same message (by key) is queued already.
    async fn enqueue(
        &self,
        to: &str,
        mail: &Mail,
        dedupe: Option<String>,
    ) -> Result<Option<i64>, StoreError> {
        let c = mail.compose();
        let id = self
            .store
            .enqueue_mail(
                &NewMail {
                    kind: c.kind.to_owned(),
                    to: to.to_owned(),
                    subject: c.subject,
                    text: c.text,
                    html: c.html,
                    dedupe,
                },
                &self.host(),
            )
            .await?;
        self.queued.notify_one();
        Ok(id)
    }

    /// Queues a notification, unless its reader opted out.
    async fn notify(&self, to: &User, mail: &Mail, dedupe: String) -> Result<(), StoreError> {
        if !to.notify {
            return Ok(());
        }
        self.enqueue(&to.email, mail, Some(dedupe)).await.map(drop)
    }

    /// A fresh single-use link for `user` to choose a password.
    pub async fn invitation_link(&self, user: &User) -> Result<String, StoreError> {
        let token = self
            .store
            .create_invitation(user.id, INVITATION_TTL_SECS)
            .await?;
        Ok(format!("{}/invite/{token}", self.base_url()))
    }

    /// Invites a user by email; returns the link, which an admin may also
    /// hand over another way when no mail goes out.
    pub async fn invite(&self, user: &User, inviter: &str) -> Result<String, StoreError> {
        let link = self.invitation_link(user).await?;
        let mail = Mail::Invitation {
            inviter: inviter.to_owned(),
            link: link.clone(),
            expires_at: self.clock.now() + INVITATION_TTL_SECS,
        };
        // Invitations go whatever the reader's notification setting.
        self.enqueue(&user.email, &mail, None).await?;
        Ok(link)
    }

    /// A message that proves the SMTP settings work.
    pub async fn test_mail(&self, to: &User) -> Result<(), StoreError> {
        let mail = Mail::Test {
            appliance: self.base_url(),
        };
        self.enqueue(&to.email, &mail, None).await.map(drop)
    }

    /// What a delivery's messages say about it.
    async fn facts(&self, delivery: &Delivery) -> Result<DeliveryFacts, StoreError> {
        let jobs = self
            .store
            .list_jobs(&JobFilter {
                delivery: Some(delivery.id),
                all: true,
                limit: 1000,
                ..Default::default()
            })
            .await?;
        let job = jobs
            .iter()
            .find(|j| j.kind == JobKind::Download)
            .or(jobs.first());
        let tasks = match job {
            Some(j) => self.store.tasks(j.id).await?,
            None => Vec::new(),
        };
        let files: Vec<FileLine> = crate::view::lines(&tasks)
            .into_iter()
            .map(|l| FileLine {
                name: if l.kind == ferry_api::LineKind::Sequence {
                    format!("{} ({} frames)", l.name, l.files)
                } else {
                    l.name
                },
                size: l.size.max(0) as u64,
            })
            .collect();
        Ok(DeliveryFacts {
            name: delivery.name.clone(),
            sender: delivery.sender_email.clone(),
            total: files.iter().map(|f| f.size).sum(),
            files,
            expires_at: delivery.expires_at,
        })
    }

    /// A delivery was made: each recipient learns it is waiting.
    pub async fn delivery_made(
        &self,
        delivery: &Delivery,
        recipients: &[User],
    ) -> Result<(), StoreError> {
        let d = self.facts(delivery).await?;
        let jobs = self
            .store
            .list_jobs(&JobFilter {
                delivery: Some(delivery.id),
                kind: Some(JobKind::Download),
                all: true,
                limit: 10_000,
                ..Default::default()
            })
            .await?;
        for r in recipients {
            // Straight to the recipient's own download in a browser.
            let link = match jobs.iter().find(|j| j.recipient_id == Some(r.id)) {
                Some(j) => format!("{}/deliveries/{}", self.base_url(), j.id),
                None => format!("{}/deliveries", self.base_url()),
            };
            self.notify(
                r,
                &Mail::DeliveryWaiting {
                    delivery: d.clone(),
                    link,
                },
                format!("waiting:{}:{}", delivery.id, r.id),
            )
            .await?;
        }
        Ok(())
    }

    /// A job is done: for a recipient's download, the sender learns it,
    /// once.
    pub async fn job_done(&self, job: JobId) -> Result<(), StoreError> {
        let job = self.store.job(job).await?;
        if job.kind != JobKind::Download {
            return Ok(());
        }
        let (Some(d), Some(recipient)) = (job.delivery_id, job.recipient_email.clone()) else {
            return Ok(());
        };
        let delivery = self.store.delivery(d).await?;
        let sender = self.store.user(job.owner_id).await?;
        let mail = Mail::DeliveryComplete {
            delivery: self.facts(&delivery).await?,
            recipient,
        };
        self.notify(&sender, &mail, format!("complete:{}", job.id))
            .await
    }

    /// A delivery job failed for good: its sender and the admins learn
    /// why, once per key.
    pub async fn job_failed(
        &self,
        job: JobId,
        error: &str,
        dedupe: &str,
    ) -> Result<(), StoreError> {
        let job = self.store.job(job).await?;
        let delivery = match job.delivery_id {
            Some(d) => Some(self.store.delivery(d).await?),
            None => None,
        };
        let mail = Mail::JobFailed {
            job: job.name.clone(),
            delivery: delivery.map(|d| d.name),
            recipient: job.recipient_email.clone(),
            error: error.to_owned(),
        };
        let mut to: Vec<User> = self
            .store
            .list_users()
            .await?
            .into_iter()
            .filter(|u| u.role == Role::Admin)
            .collect();
        let owner = self.store.user(job.owner_id).await?;
        if !to.iter().any(|u| u.id == owner.id) {
            to.push(owner);
        }
        for u in &to {
            self.notify(u, &mail, format!("{dedupe}:{}", u.id)).await?;
        }
        Ok(())
    }

    /// Reminders that fall due with time: expiry (at 2/3 of the lifetime
    /// and 3 days before the end) to recipients who have not finished,
    /// and progress at 50 % to a sender who asked for it.
    ///
    /// A delivery that lives 9 days or less gets only the 2/3 reminder:
    /// its "3 days before" would come first or at once, which reads as
    /// noise.
    pub async fn reminders(&self) -> Result<(), StoreError> {
        let t = self.clock.now();
        for d in self.store.live_deliveries().await? {
            let jobs: Vec<Job> = self
                .store
                .list_jobs(&JobFilter {
                    delivery: Some(d.id),
                    all: true,
                    kind: Some(JobKind::Download),
                    limit: 1000,
                    ..Default::default()
                })
                .await?;
            let lifetime = d.expires_at - d.created_at;
            let two_thirds = d.created_at + lifetime * 2 / 3;
            let three_days = d.expires_at - 3 * 24 * 3600;
            let mut due = vec![(AT_TWO_THIRDS, two_thirds)];
            if three_days > two_thirds {
                due.push((THREE_DAYS_BEFORE, three_days));
            }
            for (bit, at) in due {
                if t >= at && t < d.expires_at && self.store.mark_reminder(d.id, bit).await? {
                    let facts = self.facts(&d).await?;
                    // Only recipients who can still receive it.
                    let pending = |j: &&Job| {
                        !j.purged
                            && matches!(
                                j.status,
                                JobStatus::Queued
                                    | JobStatus::Running
                                    | JobStatus::Paused
                                    | JobStatus::Failed
                            )
                    };
                    for j in jobs.iter().filter(pending) {
                        let Some(r) = j.recipient_id else { continue };
                        let r = self.store.user(r).await?;
                        self.notify(
                            &r,
                            &Mail::Expiring {
                                delivery: facts.clone(),
                            },
                            format!("expiring:{}:{bit}:{}", d.id, r.id),
                        )
                        .await?;
                    }
                }
            }
            if d.notify_progress {
                let total: i64 = jobs.iter().map(|j| j.bytes_total).sum();
                let done: i64 = jobs.iter().map(|j| j.bytes_done).sum();
                if total > 0
                    && done * 2 >= total
                    && self.store.mark_reminder(d.id, HALF_DELIVERED).await?
                {
                    let sender = self.store.user(d.sender_id).await?;
                    let mail = Mail::Progress {
                        delivery: self.facts(&d).await?,
                        percent: (done * 100 / total) as u64,
                    };
                    self.notify(&sender, &mail, format!("progress:{}", d.id))
                        .await?;
                }
            }
        }
        Ok(())
    }

    // --- The outbox, for the mail sender and the admin pages ---

    /// Messages due now, oldest first.
    pub async fn due(&self, limit: u32) -> Result<Vec<OutboxMail>, StoreError> {
        self.store.due_mail(limit).await
    }

    /// When the next message falls due.
    pub async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        self.store.next_mail_at().await
    }

    /// Claims a message just before it is sent; false when another
    /// mailer has it.
    pub async fn claim(&self, m: &OutboxMail) -> Result<bool, StoreError> {
        self.store.claim_mail(m.id, m.attempts).await
    }

    pub async fn sent(&self, id: i64) -> Result<(), StoreError> {
        self.store.mail_sent(id).await
    }

    /// The server is down: this message and every other wait until `until`.
    pub async fn hold(&self, id: i64, error: &str, until: i64) -> Result<(), StoreError> {
        self.store.mail_retry(id, error, until).await?;
        self.store.mail_hold_all(until).await
    }

    /// Refused for good: marked failed and audited.
    pub async fn refused(&self, m: &OutboxMail, error: &str) -> Result<(), StoreError> {
        self.store.mail_failed(m.id, error).await?;
        self.audit
            .record(
                line(AuditAction::MailFailed, m.to.clone()).detail(format!("{}: {error}", m.kind)),
            )
            .await
    }

    pub async fn counts(&self) -> Result<OutboxCounts, StoreError> {
        self.store.outbox_counts().await
    }

    /// What waits in the outbox and what failed, newest first (admins):
    /// where an admin with no mail server finds what was never sent.
    pub async fn unsent(&self, by: By<'_>) -> Result<Vec<UnsentMail>, OutboxError> {
        by.admin("the outbox")?;
        Ok(self.store.unsent_mail(200).await?)
    }

    /// An unsent message is tried again now (admins).
    pub async fn send_again(&self, by: By<'_>, who: Actor, id: i64) -> Result<(), OutboxError> {
        by.admin("the outbox")?;
        let to = self.store.mail_again(id).await?;
        self.audit
            .record(
                who.line(AuditAction::MailRetry, to)
                    .detail(format!("message {id}")),
            )
            .await?;
        self.queued.notify_one();
        Ok(())
    }

    /// An unsent message is dropped (admins).
    pub async fn discard(&self, by: By<'_>, who: Actor, id: i64) -> Result<(), OutboxError> {
        by.admin("the outbox")?;
        let to = self.store.mail_discard(id).await?;
        self.audit
            .record(
                who.line(AuditAction::MailDiscard, to)
                    .detail(format!("message {id}")),
            )
            .await?;
        Ok(())
    }
}

/// Why an outbox action was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::failing!(OutboxError {
    OutboxError::Refused(r) => (r.failure(), r.code()),
    OutboxError::Store(e) => (e.failure(), e.code()),
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use ferry_store::SqlStore;

    fn notifier(store: Arc<dyn Store>) -> Notifier {
        let site = watch::channel(SiteSettings {
            public_address: Some("ferry.example.com".into()),
            default_expiry_days: 30,
            ..Default::default()
        })
        .1;
        Notifier::new(
            store.clone(),
            Audit::new(store),
            Arc::new(ManualClock::new(1_000_000)),
            site,
            443,
            "127.0.0.1".into(),
        )
    }

    #[tokio::test]
    async fn invitations_always_go_and_carry_a_working_link() {
        let store: Arc<dyn Store> = Arc::new(SqlStore::open_in_memory().unwrap());
        let n = notifier(store.clone());
        let ann = store
            .create_user("ann@example.com", "", Role::Collaborator, None)
            .await
            .unwrap();
        store.set_notify(ann.id, false).await.unwrap();
        let ann = store.user(ann.id).await.unwrap();
        let link = n.invite(&ann, "prod@example.com").await.unwrap();
        assert!(
            link.starts_with("https://ferry.example.com:443/invite/"),
            "{link}"
        );
        let token = link.rsplit('/').next().unwrap();
        let ferry_store::Invitation::Valid { user, .. } = store.invitation(token).await.unwrap()
        else {
            panic!("the link opens a valid invitation");
        };
        assert_eq!(user.id, ann.id);
        let due = n.due(10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert!(due[0].text.contains(&link));
        // Other notices respect the opt-out.
        n.test_mail(&ann).await.unwrap();
        assert_eq!(n.counts().await.unwrap().waiting, 2);
    }

    #[tokio::test]
    async fn the_same_failure_is_announced_once_per_round() {
        let store: Arc<dyn Store> = Arc::new(SqlStore::open_in_memory().unwrap());
        let n = notifier(store.clone());
        let admin = store
            .create_user("root@example.com", "", Role::Admin, Some("pw"))
            .await
            .unwrap();
        let owner = store
            .create_user("prod@example.com", "", Role::Employee, Some("pw"))
            .await
            .unwrap();
        let job = store
            .create_job(&ferry_store::NewJob {
                kind: JobKind::Put,
                name: "put".into(),
                owner: owner.id,
                share: None,
                folder: String::new(),
                status: JobStatus::Running,
                client_address: None,
                delivery: None,
                recipient: None,
                resume_key: None,
            })
            .await
            .unwrap();
        for _ in 0..20 {
            n.job_failed(job, "disk full", "job-failed/1/0")
                .await
                .unwrap();
        }
        let due = n.due(100).await.unwrap();
        assert_eq!(due.len(), 2, "one each to the admin and the owner");
        assert!(due.iter().any(|m| m.to == admin.email));
        n.job_failed(job, "disk full", "job-failed/1/1")
            .await
            .unwrap();
        assert_eq!(n.due(100).await.unwrap().len(), 4);
    }
}
