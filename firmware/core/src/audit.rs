//! The audit log: who did what, when, from where.
//!
//! A write that fails is never dropped silently. [`Audit::record`] returns
//! the error, and a service that must not go on without its line (a
//! settings change, a key made) fails with it. Where the action has
//! already happened and cannot be undone (a session that ended, a lease
//! given back), [`Audit::note`] logs the failure as an error and counts
//! it; the dashboard and `GET /api/v1/status` show the count as a warning
//! until the appliance restarts.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ferry_domain::{AuditAction, UserId};
use ferry_store::{Event, NewEvent, Store, StoreError};

/// The audit log.
#[derive(Debug, Clone)]
pub struct Audit {
    store: Arc<dyn Store>,
    failed: Arc<AtomicU64>,
}

/// One line to write.
pub fn line(action: AuditAction, subject: impl Into<String>) -> NewEvent {
    NewEvent::new(action, subject)
}

impl Audit {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Audit {
            store,
            failed: Arc::default(),
        }
    }

    /// Writes a line; the caller decides what a failure means.
    pub async fn record(&self, e: NewEvent) -> Result<(), StoreError> {
        self.store
            .record_event(&e)
            .await
            .inspect(|()| crate::meters::audited(e.action))
            .inspect_err(|err| self.lost(&e, err))
    }

    /// Writes a line about something already done: a failure is logged as
    /// an error and counted for the dashboard, and the caller goes on.
    pub async fn note(&self, e: NewEvent) {
        match self.store.record_event(&e).await {
            Ok(()) => crate::meters::audited(e.action),
            Err(err) => self.lost(&e, &err),
        }
    }

    fn lost(&self, e: &NewEvent, err: &dyn std::fmt::Display) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        log::error!("audit line {} ({}) not written: {err}", e.action, e.subject);
    }

    /// [`Audit::note`] from code that cannot wait (a lease dropped).
    pub fn note_later(&self, e: NewEvent) {
        let audit = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move { audit.note(e).await });
            }
            Err(_) => self.lost(&e, &"no runtime to write it"),
        }
    }

    /// Audit lines that could not be written since the start.
    pub fn failures(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The newest lines, `limit` older than `before`, of one family or
    /// action (`job`, `login.failed`).
    pub async fn list(
        &self,
        limit: u32,
        before: Option<i64>,
        prefix: Option<&str>,
    ) -> Result<Vec<Event>, StoreError> {
        self.store.list_events(limit, before, prefix).await
    }
}

/// Who did it and from where, for a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub user: Option<UserId>,
    pub from: Option<IpAddr>,
}

impl Actor {
    pub fn user(user: UserId, from: IpAddr) -> Self {
        Actor {
            user: Some(user),
            from: Some(from),
        }
    }

    /// The appliance itself (the janitor, a session ending).
    pub fn appliance() -> Self {
        Actor {
            user: None,
            from: None,
        }
    }

    /// A line by this actor.
    pub fn line(&self, action: AuditAction, subject: impl Into<String>) -> NewEvent {
        NewEvent {
            user: self.user,
            address: self.from.map(|a| a.to_string()),
            action,
            subject: subject.into(),
            detail: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_store::SqlStore;

    #[tokio::test]
    async fn lines_are_written_and_listed_by_family() {
        let store: Arc<dyn Store> = Arc::new(SqlStore::open_in_memory().unwrap());
        let ann = store
            .create_user("ann@x.io", "", ferry_domain::Role::Employee, None)
            .await
            .unwrap();
        let audit = Audit::new(store);
        let who = Actor::user(ann.id, "192.0.2.1".parse().unwrap());
        audit
            .record(
                who.line(AuditAction::JobPause, "job 3")
                    .detail("by the sender"),
            )
            .await
            .unwrap();
        audit.note(line(AuditAction::LeaseOpen, "port 45190")).await;
        let jobs = audit.list(10, None, Some("job")).await.unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].action, "job.pause");
        assert_eq!(jobs[0].address.as_deref(), Some("192.0.2.1"));
        assert_eq!(audit.failures(), 0);
    }
}
