//! The audit log: who did what, when, from which address.

use crate::db::params;
use serde::Serialize;

use crate::{Database, Result, now};
use ferry_domain::{AuditAction, UserId};

/// An event to record.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub user: Option<UserId>,
    pub address: Option<String>,
    pub action: AuditAction,
    /// What it was done to (a share name, a job id, an email).
    pub subject: String,
    pub detail: String,
}

impl NewEvent {
    /// An event with no user or address (the appliance did it).
    pub fn new(action: AuditAction, subject: impl Into<String>) -> Self {
        NewEvent {
            user: None,
            address: None,
            action,
            subject: subject.into(),
            detail: String::new(),
        }
    }

    /// Done by `user`.
    pub fn by(mut self, user: UserId) -> Self {
        self.user = Some(user);
        self
    }

    /// From this address.
    pub fn from(mut self, address: impl ToString) -> Self {
        self.address = Some(address.to_string());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: i64,
    pub at: i64,
    pub user_id: Option<i64>,
    pub user_email: Option<String>,
    pub address: Option<String>,
    pub action: String,
    pub subject: String,
    pub detail: String,
}

impl Database {
    pub fn record_event(&self, e: &NewEvent) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO events (at, user_id, address, action, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![now(), e.user.map(|u| u.0), e.address, e.action.as_str(), e.subject, e.detail],
        )?;
        Ok(())
    }

    /// Newest first, `limit` events older than `before` (an event id).
    pub fn list_events(
        &self,
        limit: u32,
        before: Option<i64>,
        action_prefix: Option<&str>,
    ) -> Result<Vec<Event>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT e.id, e.at, e.user_id, u.email, e.address, e.action, e.subject, e.detail
             FROM events e LEFT JOIN users u ON u.id = e.user_id
             WHERE e.id < ?1 AND (CAST(?2 AS TEXT) IS NULL OR e.action LIKE ?2 || '%')
             ORDER BY e.id DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![before.unwrap_or(i64::MAX), action_prefix, limit],
            |r| {
                Ok(Event {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    user_id: r.get(2)?,
                    user_email: r.get(3)?,
                    address: r.get(4)?,
                    action: r.get(5)?,
                    subject: r.get(6)?,
                    detail: r.get(7)?,
                })
            },
        )?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_with_filter() {
        for s in crate::testing::databases() {
            eprintln!("on {}", s.engine());
            for action in [
                AuditAction::LeaseOpen,
                AuditAction::ShareAdd,
                AuditAction::LeaseRelease,
            ] {
                s.record_event(&NewEvent::new(action, "x")).unwrap();
            }
            let all = s.list_events(10, None, None).unwrap();
            assert_eq!(all.len(), 3);
            assert_eq!(all[0].action, "lease.release");
            let leases = s.list_events(10, None, Some("lease.")).unwrap();
            assert_eq!(leases.len(), 2);
            let older = s.list_events(10, Some(all[0].id), None).unwrap();
            assert_eq!(older.len(), 2);
        }
    }
}
