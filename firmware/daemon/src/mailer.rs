//! The mail sender: sends what the outbox holds, as it falls due, through
//! the site's SMTP server, following the settings as admins change them
//! (through their watch channel). A temporary failure (the server down)
//! holds every message back with growing waits; a permanent refusal marks
//! the message failed. Who gets what is the notifier's business; this only
//! sends.

use std::time::Duration;

use ferry_domain::node::{self, Singleton};
use ferry_domain::settings::{SiteSettings, SmtpSettings};
use ferry_mail::Mailer;
use ferryd_core::Services;
use ferryd_core::settings::smtp_config;
use tokio_util::sync::CancellationToken;

/// Back-off after each failed attempt, capped at the last.
const RETRY_SECS: [i64; 8] = [5, 15, 30, 60, 120, 300, 900, 1800];

/// Runs until `shutdown`.
pub async fn run(services: Services, shutdown: CancellationToken) {
    let mut settings = services.settings.subscribe();
    let mut current: Option<(SmtpSettings, Option<Mailer>)> = None;
    loop {
        let wanted = settings.borrow_and_update().smtp.clone();
        if wanted.as_ref() != current.as_ref().map(|(s, _)| s) {
            current = wanted.map(|s| {
                let mailer = smtp_config(&s)
                    .map_err(|e| e.to_string())
                    .and_then(|c| Mailer::new(&c).map_err(|e| e.to_string()));
                match mailer {
                    Ok(m) => {
                        log::info!("email goes out through {} as {}", s.url, s.from);
                        (s, Some(m))
                    }
                    Err(e) => {
                        log::error!("email is held back: the SMTP settings do not work: {e}");
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
        // One node sends the outbox; the others stand by to take over.
        let ours = services.nodes.hold(Singleton::Mailer).await;
        if ours
            && let Some((_, Some(mailer))) = &current
            && !send_due(&services, mailer, &shutdown).await
        {
            return;
        }
        // Sleep until the next message is due, one is queued here, or the
        // settings change; and at most a heartbeat, since another node may
        // queue a message or fall silent.
        let now = services.clock.now();
        let most = node::HEARTBEAT;
        let wait = match services.notifier.next_due().await {
            Ok(Some(at)) if ours => Duration::from_secs((at - now).clamp(1, most) as u64),
            Ok(_) => Duration::from_secs(most as u64),
            Err(e) => {
                log::error!("cannot read the outbox: {e}");
                Duration::from_secs(most as u64)
            }
        };
        tokio::select! {
            () = services.notifier.queued() => {}
            r = settings.changed() => if r.is_err() { return },
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Sends what is due; false when the mailer must stop.
async fn send_due(services: &Services, mailer: &Mailer, shutdown: &CancellationToken) -> bool {
    let n = &services.notifier;
    let due = match n.due(100).await {
        Ok(d) => d,
        Err(e) => {
            log::error!("cannot read the outbox: {e}");
            return true;
        }
    };
    for m in due {
        if m.in_doubt {
            log::warn!(
                "message {} to {} was being sent when ferryd stopped; sending it again with the same Message-ID",
                m.message_id,
                m.to
            );
        }
        match n.claim(&m).await {
            Ok(true) => {}
            Ok(false) => {
                log::info!("{} to {} is being sent by another mailer", m.kind, m.to);
                continue;
            }
            Err(e) => {
                log::error!("cannot mark {} to {} as sending: {e}", m.kind, m.to);
                return true;
            }
        }
        match mailer
            .send(&m.to, &m.message_id, &m.subject, &m.text, &m.html)
            .await
        {
            Ok(()) => {
                // Marking it sent must not fail quietly: the message would
                // be sent again within a second.
                if !mark_sent(services, m.id).await {
                    log::error!(
                        "{} to {} went out but cannot be marked sent; the mailer stops so it is not sent \
                         again before ferryd restarts",
                        m.kind,
                        m.to
                    );
                    shutdown.cancelled().await;
                    return false;
                }
                log::info!("sent {} to {}", m.kind, m.to);
            }
            Err(e) if e.is_temporary() => {
                ferryd_core::meters::mail_failure(false);
                let wait = RETRY_SECS[(m.attempts as usize).min(RETRY_SECS.len() - 1)];
                log::warn!(
                    "cannot send {} to {} yet ({e}); trying again in {wait} s",
                    m.kind,
                    m.to
                );
                // The server is down: the rest wait as long.
                if let Err(e) = n
                    .hold(m.id, &e.to_string(), services.clock.now() + wait)
                    .await
                {
                    log::error!("cannot hold the outbox back: {e}");
                }
                return true;
            }
            Err(e) => {
                ferryd_core::meters::mail_failure(true);
                log::error!("{} to {} refused for good: {e}", m.kind, m.to);
                if let Err(err) = n.refused(&m, &e.to_string()).await {
                    log::error!("cannot mark {} to {} as refused: {err}", m.kind, m.to);
                }
            }
        }
    }
    true
}

/// Marks a message sent, trying for a while if the database is busy.
async fn mark_sent(services: &Services, id: i64) -> bool {
    for _ in 0..20 {
        match services.notifier.sent(id).await {
            Ok(()) => return true,
            Err(e) => log::warn!("marking message {id} sent: {e}; trying again"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

/// What [`SiteSettings`] say of email, for the start-up check.
pub fn check(site: &SiteSettings) -> Result<(), String> {
    match &site.smtp {
        Some(s) => {
            smtp_config(s).and_then(|c| Mailer::new(&c).map(drop).map_err(|e| e.to_string()))
        }
        None => Ok(()),
    }
}
