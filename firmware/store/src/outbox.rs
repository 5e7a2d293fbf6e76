//! The mail outbox: every message is written here before it is sent, so a
//! restart or an SMTP server that is down loses nothing.
//!
//! A message is due until it is marked sent (or failed for good). Just
//! before its SMTP transaction the mailer marks it `sending`; a message
//! still marked so at start-up was in flight when ferryd died, and is sent
//! again with the same Message-ID. That is the one place where delivery is
//! at-least-once rather than exactly-once: the SMTP server may have
//! accepted it a moment before the crash, and SMTP has no way to ask.
//! Receiving mail systems that deduplicate by Message-ID show it once.

use crate::db::{Optional, params};

use crate::{Database, Result, now, random_hex};

/// A message to queue.
#[derive(Debug, Clone)]
pub struct NewMail {
    /// What it is about (`invitation`, `delivery.waiting`, …).
    pub kind: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// Messages with the same key are queued once (the same reminder for
    /// the same delivery and recipient, say).
    pub dedupe: Option<String>,
}

/// A queued message.
#[derive(Debug, Clone)]
pub struct OutboxMail {
    pub id: i64,
    pub kind: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub message_id: String,
    pub attempts: i64,
    /// It was being sent when the daemon stopped.
    pub in_doubt: bool,
}

/// A message not sent (yet), as an admin sees it: waiting for its turn or
/// for the SMTP server, or failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsentMail {
    pub id: i64,
    pub kind: String,
    pub to: String,
    pub subject: String,
    pub created_at: i64,
    pub attempts: i64,
    /// When it is tried next (while waiting).
    pub next_attempt_at: i64,
    /// When it failed for good; `None` while it waits.
    pub failed_at: Option<i64>,
    pub last_error: Option<String>,
}

/// Counts, for the dashboard and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    pub waiting: i64,
    pub sent: i64,
    pub failed: i64,
}

impl Database {
    /// Queues a message; `None` when one with the same dedupe key exists.
    pub fn enqueue_mail(&self, m: &NewMail, domain: &str) -> Result<Option<i64>> {
        let message_id = format!("<{}.{}@{domain}>", now(), random_hex(12));
        let conn = self.conn()?;
        conn.query_row(
            "INSERT INTO outbox (kind, recipient, subject, body_text, body_html, message_id, dedupe,
                 created_at, next_attempt_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
             ON CONFLICT DO NOTHING RETURNING id",
            params![m.kind, m.to, m.subject, m.text, m.html, message_id, m.dedupe, now()],
            |r| r.get(0),
        )
        .optional()
    }

    /// Messages due now, oldest first.
    pub fn due_mail(&self, limit: u32) -> Result<Vec<OutboxMail>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT id, kind, recipient, subject, body_text, body_html, message_id, attempts, sending_since
             FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ?1
             ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now(), limit], |r| {
            Ok(OutboxMail {
                id: r.get(0)?,
                kind: r.get(1)?,
                to: r.get(2)?,
                subject: r.get(3)?,
                text: r.get(4)?,
                html: r.get(5)?,
                message_id: r.get(6)?,
                attempts: r.get(7)?,
                in_doubt: r.get::<_, Option<i64>>(8)?.is_some(),
            })
        })?;
        Ok(rows)
    }

    /// Claims a message read with `attempts` attempts behind it, just
    /// before its SMTP transaction: it is marked in flight and its count
    /// moves on. False when another mailer claimed it since (its count
    /// moved first): one statement, a compare-and-set, so on SQLite and on
    /// PostgreSQL alike two mailers never both send it.
    pub fn claim_mail(&self, id: i64, attempts: i64) -> Result<bool> {
        let n = self.conn()?.execute(
            "UPDATE outbox SET sending_since = ?2, attempts = attempts + 1
             WHERE id = ?1 AND attempts = ?3 AND sent_at IS NULL AND failed_at IS NULL",
            params![id, now(), attempts],
        )?;
        Ok(n == 1)
    }

    /// The SMTP server accepted it.
    pub fn mail_sent(&self, id: i64) -> Result<()> {
        self.conn()?.execute(
            "UPDATE outbox SET sent_at = ?2, sending_since = NULL, last_error = NULL WHERE id = ?1",
            params![id, now()],
        )?;
        Ok(())
    }

    /// A temporary failure: try again at `retry_at`.
    pub fn mail_retry(&self, id: i64, error: &str, retry_at: i64) -> Result<()> {
        self.conn()?.execute(
            "UPDATE outbox SET sending_since = NULL, last_error = ?2, next_attempt_at = ?3 WHERE id = ?1",
            params![id, error, retry_at],
        )?;
        Ok(())
    }

    /// The server is down: nothing unsent is tried before `until`.
    pub fn mail_hold_all(&self, until: i64) -> Result<()> {
        self.conn()?.execute(
            "UPDATE outbox SET next_attempt_at = CASE WHEN next_attempt_at > ?1 THEN next_attempt_at ELSE ?1 END
             WHERE sent_at IS NULL AND failed_at IS NULL",
            params![until],
        )?;
        Ok(())
    }

    /// A permanent failure (the server refused the recipient, say).
    pub fn mail_failed(&self, id: i64, error: &str) -> Result<()> {
        self.conn()?.execute(
            "UPDATE outbox SET sending_since = NULL, last_error = ?2, failed_at = ?3 WHERE id = ?1",
            params![id, error, now()],
        )?;
        Ok(())
    }

    /// When the next message falls due, if any is waiting.
    pub fn next_mail_at(&self) -> Result<Option<i64>> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT min(next_attempt_at) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL",
                params![],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// Messages not sent, newest first: waiting ones and failed ones.
    pub fn unsent_mail(&self, limit: u32) -> Result<Vec<UnsentMail>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT id, kind, recipient, subject, created_at, attempts, next_attempt_at, failed_at, last_error
             FROM outbox WHERE sent_at IS NULL ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit], |r| {
            Ok(UnsentMail {
                id: r.get(0)?,
                kind: r.get(1)?,
                to: r.get(2)?,
                subject: r.get(3)?,
                created_at: r.get(4)?,
                attempts: r.get(5)?,
                next_attempt_at: r.get(6)?,
                failed_at: r.get(7)?,
                last_error: r.get(8)?,
            })
        })?;
        Ok(rows)
    }

    /// An unsent message is due again now (a failed one too); its recipient
    /// for the audit line. Sent or unknown messages are not found.
    pub fn mail_again(&self, id: i64) -> Result<String> {
        let conn = self.conn()?;
        let to: Option<String> = conn
            .query_row(
                "UPDATE outbox SET failed_at = NULL, last_error = NULL, next_attempt_at = ?2
                 WHERE id = ?1 AND sent_at IS NULL AND sending_since IS NULL RETURNING recipient",
                params![id, now()],
                |r| r.get(0),
            )
            .optional()?;
        to.ok_or_else(|| crate::StoreError::NotFound(format!("unsent message {id}")))
    }

    /// An unsent message is dropped; its recipient for the audit line.
    pub fn mail_discard(&self, id: i64) -> Result<String> {
        let conn = self.conn()?;
        let to: Option<String> = conn
            .query_row(
                "DELETE FROM outbox WHERE id = ?1 AND sent_at IS NULL AND sending_since IS NULL
                 RETURNING recipient",
                params![id],
                |r| r.get(0),
            )
            .optional()?;
        to.ok_or_else(|| crate::StoreError::NotFound(format!("unsent message {id}")))
    }

    pub fn outbox_counts(&self) -> Result<OutboxCounts> {
        self.conn()?.query_row(
            "SELECT count(*) FILTER (WHERE sent_at IS NULL AND failed_at IS NULL),
                    count(*) FILTER (WHERE sent_at IS NOT NULL),
                    count(*) FILTER (WHERE failed_at IS NOT NULL)
             FROM outbox",
            params![],
            |r| {
                Ok(OutboxCounts {
                    waiting: r.get(0)?,
                    sent: r.get(1)?,
                    failed: r.get(2)?,
                })
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(dedupe: Option<&str>) -> NewMail {
        NewMail {
            kind: "delivery.waiting".into(),
            to: "ann@example.com".into(),
            subject: "s".into(),
            text: "t".into(),
            html: "<p>h</p>".into(),
            dedupe: dedupe.map(str::to_owned),
        }
    }

    #[test]
    fn a_message_waits_until_sent_and_is_queued_once_per_key() {
        for s in crate::testing::databases() {
            eprintln!("on {}", s.engine());
            let id = s
                .enqueue_mail(&mail(Some("waiting:1:ann")), "ferry.test")
                .unwrap()
                .unwrap();
            assert_eq!(
                s.enqueue_mail(&mail(Some("waiting:1:ann")), "ferry.test")
                    .unwrap(),
                None
            );
            assert!(s.enqueue_mail(&mail(None), "ferry.test").unwrap().is_some());
            let due = s.due_mail(10).unwrap();
            assert_eq!(due.len(), 2);
            assert!(due[0].message_id.ends_with("@ferry.test>"));
            // The server is down: it waits, and is not due before its time.
            assert!(s.claim_mail(id, due[0].attempts).unwrap());
            // A second mailer that read it before the claim finds it taken.
            assert!(!s.claim_mail(id, due[0].attempts).unwrap());
            s.mail_retry(id, "connection refused", now() + 60).unwrap();
            assert_eq!(s.due_mail(10).unwrap().len(), 1);
            assert_eq!(s.outbox_counts().unwrap().waiting, 2);
            // In flight when the daemon died: due again, marked in doubt, same id.
            let other = s.due_mail(10).unwrap()[0].clone();
            assert!(s.claim_mail(other.id, other.attempts).unwrap());
            let again = s.due_mail(10).unwrap();
            assert!(again[0].in_doubt);
            assert_eq!(again[0].message_id, other.message_id);
            s.mail_sent(other.id).unwrap();
            assert!(s.due_mail(10).unwrap().is_empty());
            assert_eq!(
                s.outbox_counts().unwrap(),
                OutboxCounts {
                    waiting: 1,
                    sent: 1,
                    failed: 0
                }
            );
            // An outage holds back everything unsent.
            let third = s.enqueue_mail(&mail(None), "ferry.test").unwrap().unwrap();
            s.mail_hold_all(now() + 300).unwrap();
            assert!(s.due_mail(10).unwrap().is_empty());
            assert!(s.next_mail_at().unwrap().unwrap() >= now() + 299);
            s.mail_failed(third, "550").unwrap();
            s.mail_failed(id, "550 no such user").unwrap();
            assert_eq!(s.next_mail_at().unwrap(), None);
        }
    }
}
