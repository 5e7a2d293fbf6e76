//! Deliveries: a named set of files, sent by one user to recipients. A
//! delivery holds an upload job (sender → appliance; none when the files
//! already lie in a share) and one download job per recipient.

use crate::db::{Optional, Row, params};
use ferry_domain::{DeliveryId, JobId, ShareId, UserId};
use serde::Serialize;

use crate::{Database, Result, StoreError, now};

#[derive(Clone, Debug)]
pub struct NewDelivery {
    pub name: String,
    pub sender: UserId,
    pub share: ShareId,
    /// The folder inside the share where the files lie.
    pub folder: String,
    /// The files were already in the share: nothing is uploaded.
    pub onprem: bool,
    pub notify_progress: bool,
    pub expires_at: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    pub id: DeliveryId,
    pub name: String,
    pub sender_id: UserId,
    pub sender_email: String,
    pub share_id: ShareId,
    pub folder: String,
    pub onprem: bool,
    pub notify_progress: bool,
    pub created_at: i64,
    pub expires_at: i64,
    pub expired: bool,
}

const COLUMNS: &str =
    "d.id, d.name, d.sender_id, u.email, d.share_id, d.folder, d.onprem, d.notify_progress,
    d.created_at, d.expires_at, d.expired";

fn from_row(r: &Row) -> Result<Delivery> {
    Ok(Delivery {
        id: DeliveryId(r.get(0)?),
        name: r.get(1)?,
        sender_id: UserId(r.get(2)?),
        sender_email: r.get(3)?,
        share_id: ShareId(r.get(4)?),
        folder: r.get(5)?,
        onprem: r.get(6)?,
        notify_progress: r.get(7)?,
        created_at: r.get(8)?,
        expires_at: r.get(9)?,
        expired: r.get(10)?,
    })
}

impl Database {
    pub fn create_delivery(&self, d: &NewDelivery) -> Result<DeliveryId> {
        let conn = self.conn()?;
        let id: i64 = conn.query_row(
            "INSERT INTO deliveries (name, sender_id, share_id, folder, onprem, notify_progress, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
            params![d.name, d.sender.0, d.share.0, d.folder, d.onprem, d.notify_progress, now(), d.expires_at],
            |r| r.get(0),
        )?;
        Ok(DeliveryId(id))
    }

    pub fn delivery(&self, id: DeliveryId) -> Result<Delivery> {
        self.conn()?
            .query_row(
                &format!("SELECT {COLUMNS} FROM deliveries d JOIN users u ON u.id = d.sender_id WHERE d.id = ?1"),
                params![id.0],
                from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("delivery {id}")))
    }

    /// Deliveries past their expiry that have not been cleaned up yet.
    pub fn expired_deliveries(&self, at: i64) -> Result<Vec<Delivery>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM deliveries d JOIN users u ON u.id = d.sender_id
             WHERE d.expired = 0 AND d.expires_at <= ?1 ORDER BY d.id"
        ))?;
        let rows = stmt.query_map(params![at], from_row)?;
        Ok(rows)
    }

    /// Deliveries still live, for reminders.
    pub fn live_deliveries(&self) -> Result<Vec<Delivery>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM deliveries d JOIN users u ON u.id = d.sender_id
             WHERE d.expired = 0 ORDER BY d.id"
        ))?;
        let rows = stmt.query_map(params![], from_row)?;
        Ok(rows)
    }

    /// Records that reminder `bit` went out for a delivery; true the first
    /// time only, so each reminder is queued once.
    pub fn mark_reminder(&self, id: DeliveryId, bit: i64) -> Result<bool> {
        let n = self.conn()?.execute(
            "UPDATE deliveries SET reminders = reminders | ?2 WHERE id = ?1 AND reminders & ?2 = 0",
            params![id.0, bit],
        )?;
        Ok(n == 1)
    }

    /// Marks a delivery expired and ends its unfinished jobs.
    pub fn expire_delivery(&self, id: DeliveryId) -> Result<()> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE deliveries SET expired = 1 WHERE id = ?1",
            params![id.0],
        )?;
        tx.execute(
            "UPDATE jobs SET status = 'aborted', error = 'the delivery expired', finished_at = ?1, rate = 0
             WHERE delivery_id = ?2 AND status NOT IN ('done', 'aborted')",
            params![now(), id.0],
        )?;
        tx.commit()?;
        Ok(())
    }
}

/// Everything a new delivery consists of, made in one transaction.
#[derive(Clone, Debug)]
pub struct DeliveryPlan {
    pub delivery: NewDelivery,
    /// The files the sender uploads; `None` when they already lie in the
    /// share (no upload job then).
    pub upload: Option<Vec<crate::NewTask>>,
    /// The files each recipient receives.
    pub tasks: Vec<crate::NewTask>,
    /// Recipients' emails; an unknown one becomes an invited collaborator.
    pub recipients: Vec<String>,
    pub client_address: Option<String>,
    /// The watch entry this delivery is made of: remembered in the same
    /// transaction, so that it is delivered once whatever happens next.
    pub watched: Option<crate::Watched>,
}

/// What [`Database::make_delivery`] made.
#[derive(Clone, Debug)]
pub struct DeliveryMade {
    pub id: DeliveryId,
    pub upload: Option<crate::JobId>,
    pub downloads: Vec<(crate::JobId, crate::User)>,
    /// Recipients who were not users yet.
    pub invited: Vec<crate::User>,
}

impl Database {
    /// Makes a delivery with its jobs, tasks and new recipients, all or
    /// nothing.
    pub fn make_delivery(&self, plan: &DeliveryPlan) -> Result<DeliveryMade> {
        use crate::users::check_email;
        for email in &plan.recipients {
            check_email(email.trim())?;
        }
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let d = &plan.delivery;
        let t = now();
        let id: i64 = tx.query_row(
            "INSERT INTO deliveries (name, sender_id, share_id, folder, onprem, notify_progress, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
            params![d.name, d.sender.0, d.share.0, d.folder, d.onprem, d.notify_progress, t, d.expires_at],
            |r| r.get(0),
        )?;
        let id = DeliveryId(id);
        let add_job = |kind: &str,
                       name: &str,
                       recipient: Option<i64>,
                       tasks: &[crate::NewTask]|
         -> Result<JobId> {
            let id: i64 = tx.query_row(
            "INSERT INTO jobs (kind, name, owner_id, share_id, folder, status, client_address, created_at,
                     delivery_id, recipient_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?8, ?9) RETURNING id",
            params![kind, name, d.sender.0, d.share.0, d.folder, plan.client_address, t, id.0, recipient],
            |r| r.get(0),
        )?;
            let job = JobId(id);
            let mut stmt = tx.prepare(
                "INSERT INTO tasks (job_id, path, size, mtime_ns, priority, status) VALUES (?1, ?2, ?3, ?4, ?5, 'queued')",
            )?;
            for task in tasks {
                stmt.execute(params![
                    job.0,
                    task.path,
                    task.size,
                    task.mtime_ns,
                    task.priority
                ])
                .map_err(|e| {
                    crate::conflict(e, || format!("{} twice in the delivery", task.path))
                })?;
            }
            tx.execute(
                "UPDATE jobs SET files_total = ?1, bytes_total = ?2 WHERE id = ?3",
                params![
                    tasks.len() as i64,
                    tasks.iter().map(|t| t.size).sum::<i64>(),
                    job.0
                ],
            )?;
            Ok(job)
        };
        let upload = match &plan.upload {
            Some(files) => Some(add_job(
                "upload",
                &format!("{}-upload", d.name),
                None,
                files,
            )?),
            None => None,
        };
        let mut downloads = Vec::new();
        let mut invited = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for email in &plan.recipients {
            let email = email.trim();
            if !seen.insert(email.to_ascii_lowercase()) {
                continue;
            }
            let existing: Option<i64> = tx
                .query_row(
                    "SELECT id FROM users WHERE email = ?1",
                    params![email],
                    |r| r.get(0),
                )
                .optional()?;
            let user_id = match existing {
                Some(u) => u,
                None => {
                    let id: i64 = tx.query_row(
            "INSERT INTO users (email, name, role, status, created_at) VALUES (?1, '', 'collaborator', 'invited', ?2) RETURNING id",
            params![email, t],
            |r| r.get(0),
        )?;
                    id
                }
            };
            let job = add_job("download", &d.name, Some(user_id), &plan.tasks)?;
            downloads.push((job, user_id, existing.is_none()));
        }
        if let Some(w) = &plan.watched {
            tx.execute(
                "INSERT INTO watch_entries (watch_id, identity, path, delivery_id, seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![w.watch.0, w.identity, w.path, id.0, t],
            )
            .map_err(|e| crate::conflict(e, || format!("{} was delivered already", w.path)))?;
        }
        tx.commit()?;
        drop(conn);
        let mut made = Vec::new();
        for (job, user, new) in downloads {
            let user = self.user(UserId(user))?;
            if new {
                invited.push(user.clone());
            }
            made.push((job, user));
        }
        Ok(DeliveryMade {
            id,
            upload,
            downloads: made,
            invited,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JobFilter, NewTask, Role};

    fn task(path: &str, priority: u16) -> NewTask {
        NewTask {
            path: path.into(),
            size: 10,
            mtime_ns: 0,
            priority,
        }
    }

    #[test]
    fn a_delivery_is_made_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        for s in crate::testing::databases() {
            eprintln!("on {}", s.engine());
            let share = s.add_root_share("media", dir.path()).unwrap();
            let sender = s
                .create_user("prod@x.io", "", Role::Employee, Some("password1"))
                .unwrap();
            s.create_user("dir@x.io", "", Role::Collaborator, Some("password1"))
                .unwrap();
            let files = vec![task("a.mp4", 999), task("seq/f.0001.exr", 500)];
            let plan = DeliveryPlan {
                delivery: NewDelivery {
                    name: "review".into(),
                    sender: sender.id,
                    share: share.id,
                    folder: "review".into(),
                    onprem: false,
                    notify_progress: false,
                    expires_at: now() + 3600,
                },
                upload: Some(files.clone()),
                tasks: files,
                recipients: vec!["dir@x.io".into(), "new@x.io".into(), "DIR@x.io".into()],
                client_address: None,
                watched: None,
            };
            let made = s.make_delivery(&plan).unwrap();
            assert!(made.upload.is_some());
            assert_eq!(
                made.downloads.len(),
                2,
                "one job per recipient, duplicates merged"
            );
            assert_eq!(made.invited.len(), 1);
            assert_eq!(made.invited[0].status, crate::UserStatus::Invited);
            let upload = s.job(made.upload.unwrap()).unwrap();
            assert_eq!(upload.name, "review-upload");
            assert_eq!(upload.files_total, 2);
            let mine = s
                .list_jobs(&JobFilter {
                    recipient: Some(made.downloads[0].1.id),
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(mine.len(), 1);

            // A bad recipient leaves nothing behind.
            let mut bad = plan.clone();
            bad.recipients = vec!["ok@x.io".into(), "not an email".into()];
            assert!(s.make_delivery(&bad).is_err());
            assert!(s.user_by_email("ok@x.io").unwrap().is_none());
            // A duplicate file rolls the whole delivery back.
            let mut dup = plan.clone();
            dup.recipients = vec!["late@x.io".into()];
            dup.tasks = vec![task("a.mp4", 1), task("a.mp4", 2)];
            assert!(s.make_delivery(&dup).is_err());
            assert!(s.user_by_email("late@x.io").unwrap().is_none());
        }
    }
}
