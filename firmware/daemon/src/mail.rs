//! Email: who is told what, and when. Every message is composed
//! (ferry-mail) and written to the store's outbox first; one task sends
//! what is due and retries with back-off while the SMTP server is down, so
//! neither a restart nor an outage loses a message. Without an SMTP server
//! configured, messages wait in the outbox until one is.
//!
//! Users who opted out (`notify` off) get nothing but invitations.

use std::sync::Arc;
use std::time::Duration;

use ferry_mail::{Composed, DeliveryFacts, FileLine, Mail, Mailer, SmtpConfig};
use ferry_store::{
    Delivery, Job, JobFilter, JobId, JobKind, JobStatus, NewEvent, NewMail, Role, User, now,
};

use crate::app::App;
use crate::config::SmtpSettings;

/// How long an invitation link works.
pub const INVITATION_TTL_SECS: i64 = 7 * 24 * 3600;
/// Back-off after each failed attempt, capped at the last.
const RETRY_SECS: [i64; 8] = [5, 15, 30, 60, 120, 300, 900, 1800];

/// The SMTP settings with the password read from its file.
pub fn smtp_config(s: &SmtpSettings) -> anyhow::Result<SmtpConfig> {
    let password = match &s.password_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading smtp.password_file {}: {e}", path.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        ),
        None => None,
    };
    Ok(SmtpConfig {
        url: s.url.clone(),
        user: s.user.clone(),
        password,
        from: s.from.clone(),
    })
}

/// Checks SMTP settings without sending anything.
pub fn check(config: &SmtpConfig) -> Result<(), ferry_mail::smtp::ConfigError> {
    Mailer::new(config).map(|_| ())
}

/// Sends what the outbox holds, as it falls due, until shutdown. Follows
/// the site's SMTP settings as admins change them; without any, messages
/// wait.
pub async fn run(app: Arc<App>) {
    let mut current: Option<(SmtpSettings, Option<Mailer>)> = None;
    loop {
        let wanted = app.site().smtp;
        if wanted.as_ref() != current.as_ref().map(|(s, _)| s) {
            current = wanted.map(|s| {
                let mailer =
                    smtp_config(&s).and_then(|c| Mailer::new(&c).map_err(anyhow::Error::from));
                match mailer {
                    Ok(m) => {
                        log::info!("email goes out through {} as {}", s.url, s.from);
                        (s, Some(m))
                    }
                    Err(e) => {
                        log::error!("email is held back: the SMTP settings do not work: {e:#}");
                        (s, None)
                    }
                }
            });
            if current.is_none() {
                log::warn!(
                    "no SMTP server is configured ([smtp] url and from, --smtp and --mail-from, or the web \
                     admin's Settings): notifications wait in the outbox"
                );
            }
        }
        if let Some((_, Some(mailer))) = &current {
            send_due(&app, mailer).await;
        }
        // Sleep until the next message is due, or until one is queued.
        let wait = match app.store.next_mail_at() {
            Ok(Some(at)) => Duration::from_secs((at - now()).clamp(1, 60) as u64),
            _ => Duration::from_secs(60),
        };
        tokio::select! {
            () = app.mail_queued.notified() => {}
            () = tokio::time::sleep(wait) => {}
            () = app.shutdown.cancelled() => return,
        }
    }
}

async fn send_due(app: &App, mailer: &Mailer) {
    let Ok(due) = app.store.due_mail(100) else {
        return;
    };
    for m in due {
        if m.in_doubt {
            log::warn!(
                "message {} to {} was being sent when ferryd stopped; sending it again with the same Message-ID",
                m.message_id,
                m.to
            );
        }
        if app.store.mail_sending(m.id).is_err() {
            return;
        }
        match mailer
            .send(&m.to, &m.message_id, &m.subject, &m.text, &m.html)
            .await
        {
            Ok(()) => {
                // Marking it sent must not fail quietly: the message would
                // be sent again within a second.
                if !mark_sent(app, m.id).await {
                    log::error!(
                        "{} to {} went out but cannot be marked sent; the mailer stops so it is not sent \
                         again before ferryd restarts",
                        m.kind,
                        m.to
                    );
                    app.shutdown.cancelled().await;
                    return;
                }
                log::info!("sent {} to {}", m.kind, m.to);
            }
            Err(e) if e.is_temporary() => {
                let wait = RETRY_SECS[(m.attempts as usize).min(RETRY_SECS.len() - 1)];
                log::warn!(
                    "cannot send {} to {} yet ({e}); trying again in {wait} s",
                    m.kind,
                    m.to
                );
                let until = now() + wait;
                let _ = app.store.mail_retry(m.id, &e.to_string(), until);
                // The server is down: the rest wait as long.
                let _ = app.store.mail_hold_all(until);
                return;
            }
            Err(e) => {
                log::error!("{} to {} refused for good: {e}", m.kind, m.to);
                let _ = app.store.mail_failed(m.id, &e.to_string());
                let _ = app.store.record_event(NewEvent {
                    action: "mail.failed",
                    subject: m.to.clone(),
                    detail: format!("{}: {e}", m.kind),
                    ..Default::default()
                });
            }
        }
    }
}

/// Marks a message sent, trying for a while if the database is busy.
async fn mark_sent(app: &App, id: i64) -> bool {
    for _ in 0..20 {
        if app.store.mail_sent(id).is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

/// A message that proves the settings work.
pub fn test_mail(app: &App, to: &User) -> ferry_store::Result<()> {
    let mail = Mail::Test {
        appliance: base_url(app),
    };
    enqueue(app, &to.email, &mail.compose(), None)
}

/// Writes a composed message to the outbox and wakes the sender.
fn enqueue(app: &App, to: &str, c: &Composed, dedupe: Option<String>) -> ferry_store::Result<()> {
    let new = NewMail {
        kind: c.kind,
        to,
        subject: &c.subject,
        text: &c.text,
        html: &c.html,
        dedupe,
    };
    app.store.enqueue_mail(&new, &app.public_host(None))?;
    app.mail_queued.notify_one();
    Ok(())
}

/// Queues a notification, unless its reader opted out (invitations always
/// go).
fn queue(app: &App, to: &User, mail: &Mail, dedupe: Option<String>) {
    if !to.notify && !matches!(mail, Mail::Invitation { .. }) {
        return;
    }
    let c = mail.compose();
    if let Err(e) = enqueue(app, &to.email, &c, dedupe) {
        log::error!("cannot queue {} to {}: {e}", c.kind, to.email);
    }
}

/// The web address people open (the control port, where the public
/// address points).
pub fn base_url(app: &App) -> String {
    let host = app.public_host(None);
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    format!("https://{host}:{}", app.control.port())
}

/// Invites a new user: a single-use link to choose a password.
pub fn invite(app: &App, user: &User, inviter: &str) -> ferry_store::Result<()> {
    let token = app.store.create_invitation(user.id, INVITATION_TTL_SECS)?;
    let mail = Mail::Invitation {
        inviter: inviter.to_owned(),
        link: format!("{}/invite/{token}", base_url(app)),
        expires_at: now() + INVITATION_TTL_SECS,
    };
    // Not through `queue`: the caller must learn when it failed.
    enqueue(app, &user.email, &mail.compose(), None)
}

/// What a delivery's messages say about it: its files as recipients see
/// them (sequences as one line).
fn facts(app: &App, delivery: &Delivery) -> DeliveryFacts {
    let jobs = app
        .store
        .list_jobs(&JobFilter {
            delivery: Some(delivery.id),
            all: true,
            limit: 1000,
            ..Default::default()
        })
        .unwrap_or_default();
    let tasks = jobs
        .iter()
        .find(|j| j.kind == JobKind::Download)
        .or(jobs.first())
        .and_then(|j| app.store.tasks(j.id).ok())
        .unwrap_or_default();
    let files: Vec<FileLine> = crate::http::jobs::lines(&tasks)
        .into_iter()
        .map(|l| FileLine {
            name: if l.kind == "sequence" {
                format!("{} ({} frames)", l.name, l.files)
            } else {
                l.name
            },
            size: l.size.max(0) as u64,
        })
        .collect();
    DeliveryFacts {
        name: delivery.name.clone(),
        sender: delivery.sender_email.clone(),
        total: files.iter().map(|f| f.size).sum(),
        files,
        expires_at: delivery.expires_at,
    }
}

/// A delivery was made: each recipient learns it is waiting.
pub fn delivery_made(app: &App, delivery: &Delivery, recipients: &[User]) {
    let d = facts(app, delivery);
    for r in recipients {
        queue(
            app,
            r,
            &Mail::DeliveryWaiting {
                delivery: d.clone(),
            },
            Some(format!("waiting:{}:{}", delivery.id, r.id)),
        );
    }
}

/// A job finished: for a recipient's download, the sender learns it.
pub fn job_done(app: &App, job: JobId) {
    let Ok(job) = app.store.job(job) else { return };
    if job.kind != JobKind::Download {
        return;
    }
    let (Some(d), Some(recipient)) = (job.delivery_id, job.recipient_email.clone()) else {
        return;
    };
    let (Ok(delivery), Ok(sender)) = (app.store.delivery(d), app.store.user(job.owner_id)) else {
        return;
    };
    let mail = Mail::DeliveryComplete {
        delivery: facts(app, &delivery),
        recipient,
    };
    queue(app, &sender, &mail, Some(format!("complete:{}", job.id)));
}

/// A delivery job failed and will not retry by itself: its sender and the
/// admins learn it.
pub fn job_failed(app: &App, job: JobId, error: &str) {
    let Ok(job) = app.store.job(job) else { return };
    let delivery = job.delivery_id.and_then(|d| app.store.delivery(d).ok());
    let mail = Mail::JobFailed {
        job: job.name.clone(),
        delivery: delivery.map(|d| d.name),
        recipient: job.recipient_email.clone(),
        error: error.to_owned(),
    };
    let mut to: Vec<User> = app
        .store
        .list_users()
        .unwrap_or_default()
        .into_iter()
        .filter(|u| u.role == Role::Admin)
        .collect();
    if let Ok(owner) = app.store.user(job.owner_id)
        && !to.iter().any(|u| u.id == owner.id)
    {
        to.push(owner);
    }
    for u in &to {
        queue(
            app, u, &mail,
            // Called once per final failure; a job retried by hand may
            // fail for good again, and that deserves its own message.
            None,
        );
    }
}

/// Reminder bits kept on the delivery, so each goes once.
const AT_TWO_THIRDS: i64 = 1;
const THREE_DAYS_BEFORE: i64 = 2;
const HALF_DELIVERED: i64 = 4;

/// Reminders that fall due with time: expiry (at 2/3 of the lifetime and 3
/// days before the end) to recipients who have not finished, and progress
/// at 50 % to a sender who asked for it. Called by the janitor.
///
/// A delivery that lives 9 days or less gets only the 2/3 reminder: its
/// "3 days before" would come first or at once, which reads as noise.
pub fn reminders(app: &App) {
    let Ok(deliveries) = app.store.live_deliveries() else {
        return;
    };
    let t = now();
    for d in deliveries {
        let jobs: Vec<Job> = app
            .store
            .list_jobs(&JobFilter {
                delivery: Some(d.id),
                all: true,
                kind: Some(JobKind::Download),
                limit: 1000,
                ..Default::default()
            })
            .unwrap_or_default();
        let lifetime = d.expires_at - d.created_at;
        let two_thirds = d.created_at + lifetime * 2 / 3;
        let three_days = d.expires_at - 3 * 24 * 3600;
        let mut due = vec![(AT_TWO_THIRDS, two_thirds)];
        if three_days > two_thirds {
            due.push((THREE_DAYS_BEFORE, three_days));
        }
        for (bit, at) in due {
            if t >= at && t < d.expires_at && app.store.mark_reminder(d.id, bit).unwrap_or(false) {
                let facts = facts(app, &d);
                // Only recipients who can still receive it: not done, not
                // aborted, not withdrawn.
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
                    if let Some(r) = j.recipient_id.and_then(|r| app.store.user(r).ok()) {
                        queue(
                            app,
                            &r,
                            &Mail::Expiring {
                                delivery: facts.clone(),
                            },
                            Some(format!("expiring:{}:{bit}:{}", d.id, r.id)),
                        );
                    }
                }
            }
        }
        if d.notify_progress {
            let total: i64 = jobs.iter().map(|j| j.bytes_total).sum();
            let done: i64 = jobs.iter().map(|j| j.bytes_done).sum();
            if total > 0
                && done * 2 >= total
                && app
                    .store
                    .mark_reminder(d.id, HALF_DELIVERED)
                    .unwrap_or(false)
                && let Ok(sender) = app.store.user(d.sender_id)
            {
                let mail = Mail::Progress {
                    delivery: facts(app, &d),
                    percent: (done * 100 / total) as u64,
                };
                queue(app, &sender, &mail, Some(format!("progress:{}", d.id)));
            }
        }
    }
}
