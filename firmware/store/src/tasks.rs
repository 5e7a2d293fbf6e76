//! Tasks: one file of a job, with its priority and progress. Tasks are
//! never deleted (they are the record of what was sent); a file taken out
//! of a job is `excluded`.

use crate::db::{Conn, Row, params};
use ferry_domain::{DeliveryId, JobId, ShareId, TaskId, TaskStatus};
use serde::Serialize;

use crate::{Database, Result, now};

/// A file to add to a job.
#[derive(Clone, Debug)]
pub struct NewTask {
    /// Relative to the job's folder.
    pub path: String,
    pub size: i64,
    pub mtime_ns: i64,
    pub priority: u16,
}

#[derive(Clone, Debug, Serialize)]
pub struct Task {
    pub id: TaskId,
    pub job_id: JobId,
    pub path: String,
    pub size: i64,
    pub mtime_ns: i64,
    pub priority: u16,
    pub status: TaskStatus,
    pub bytes_done: i64,
    pub digest: Option<String>,
    pub finished_at: Option<i64>,
}

fn from_row(r: &Row) -> Result<Task> {
    let status: String = r.get(7)?;
    Ok(Task {
        id: TaskId(r.get(0)?),
        job_id: JobId(r.get(1)?),
        path: r.get(2)?,
        size: r.get(3)?,
        mtime_ns: r.get(4)?,
        priority: r.get(5)?,
        bytes_done: r.get(6)?,
        status: status.parse().unwrap_or(TaskStatus::Failed),
        digest: r.get(8)?,
        finished_at: r.get(9)?,
    })
}

const COLUMNS: &str =
    "id, job_id, path, size, mtime_ns, priority, bytes_done, status, digest, finished_at";

impl Database {
    /// Adds files to a job (one transaction) and updates its totals.
    pub fn add_tasks(&self, job: JobId, tasks: &[NewTask]) -> Result<()> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare(
                "INSERT INTO tasks (job_id, path, size, mtime_ns, priority, status) VALUES (?1, ?2, ?3, ?4, ?5, 'queued')",
            )?;
            for t in tasks {
                stmt.execute(params![job.0, t.path, t.size, t.mtime_ns, t.priority])
                    .map_err(|e| crate::conflict(e, || format!("{} twice in job {job}", t.path)))?;
            }
        }
        tx.execute(
            "UPDATE jobs SET files_total = (SELECT count(*) FROM tasks WHERE job_id = ?1 AND status != 'excluded'),
                 bytes_total = (SELECT coalesce(sum(size), 0) FROM tasks WHERE job_id = ?1 AND status != 'excluded')
             WHERE id = ?1",
            params![job.0],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// A job's tasks, highest priority first, then by path.
    pub fn tasks(&self, job: JobId) -> Result<Vec<Task>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM tasks WHERE job_id = ?1 ORDER BY priority DESC, path"
        ))?;
        let rows = stmt.query_map(params![job.0], from_row)?;
        Ok(rows)
    }

    /// Records a file as delivered, and the job's progress with it.
    pub fn task_done(&self, job: JobId, path: &str, digest: Option<&str>) -> Result<()> {
        // One transaction: a crash between the two updates must not leave
        // the job's counters disagreeing with its tasks.
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE tasks SET status = 'done', bytes_done = size, digest = coalesce(?1, digest), finished_at = ?2
             WHERE job_id = ?3 AND path = ?4 AND status != 'excluded'",
            params![digest, now(), job.0, path],
        )?;
        Self::count_progress(&tx, job)?;
        tx.commit()?;
        Ok(())
    }

    /// The job's counters from its tasks: files delivered, and the bytes
    /// of every file that have reached the recipient (whole files, and the
    /// part of a file a browser has been served).
    fn count_progress(tx: &Conn<'_>, job: JobId) -> Result<()> {
        tx.execute(
            "UPDATE jobs SET files_done = (SELECT count(*) FROM tasks WHERE job_id = ?1 AND status = 'done'),
                 bytes_done = (SELECT coalesce(sum(bytes_done), 0) FROM tasks WHERE job_id = ?1 AND status != 'excluded')
             WHERE id = ?1",
            params![job.0],
        )?;
        Ok(())
    }

    pub fn task_progress(&self, job: JobId, path: &str, bytes_done: i64) -> Result<()> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE tasks SET bytes_done = CASE
                 WHEN ?1 > size THEN (CASE WHEN size > bytes_done THEN size ELSE bytes_done END)
                 WHEN ?1 > bytes_done THEN ?1 ELSE bytes_done END
             WHERE job_id = ?2 AND path = ?3 AND status NOT IN ('done', 'excluded')",
            params![bytes_done, job.0, path],
        )?;
        Self::count_progress(&tx, job)?;
        tx.commit()?;
        Ok(())
    }

    /// Sets the priority of the named tasks; returns how many changed.
    pub fn set_task_priority(&self, job: JobId, paths: &[String], priority: u16) -> Result<usize> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let mut n = 0;
        {
            let mut stmt =
                tx.prepare("UPDATE tasks SET priority = ?1 WHERE job_id = ?2 AND path = ?3")?;
            for p in paths {
                n += stmt.execute(params![priority, job.0, p])?;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// How many live jobs (not purged, not finished) outside `except`'s
    /// delivery use the file at `share_path` (folder and path joined).
    pub fn live_users_of(
        &self,
        share: ShareId,
        share_path: &str,
        except: DeliveryId,
    ) -> Result<i64> {
        self.conn()?.query_row(
            "SELECT count(*) FROM tasks t JOIN jobs j ON j.id = t.job_id
             WHERE j.share_id = ?1
               AND (CASE WHEN j.folder = '' THEN t.path ELSE j.folder || '/' || t.path END) = ?2
               AND coalesce(j.delivery_id, -1) != ?3
               AND j.purged = 0 AND j.status NOT IN ('done', 'aborted', 'failed')",
            params![share.0, share_path, except.0],
            |r| r.get(0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JobKind, JobStatus, NewJob, Role};

    #[test]
    fn tasks_track_a_jobs_progress() {
        for s in crate::testing::databases() {
            eprintln!("on {}", s.engine());
            let u = s
                .create_user("a@b.io", "", Role::Employee, Some("password1"))
                .unwrap();
            let job = s
                .create_job(&NewJob {
                    kind: JobKind::Download,
                    name: "review".into(),
                    owner: u.id,
                    share: None,
                    folder: String::new(),
                    status: JobStatus::Queued,
                    client_address: None,
                    delivery: None,
                    recipient: None,
                    resume_key: None,
                })
                .unwrap();
            let t = |path: &str, size, priority| NewTask {
                path: path.into(),
                size,
                mtime_ns: 0,
                priority,
            };
            s.add_tasks(job, &[t("a.mp4", 100, 999), t("seq/f.0001.exr", 10, 500)])
                .unwrap();
            assert!(
                s.add_tasks(job, &[t("a.mp4", 1, 1)]).is_err(),
                "a path once per job"
            );
            let j = s.job(job).unwrap();
            assert_eq!((j.files_total, j.bytes_total), (2, 110));
            let tasks = s.tasks(job).unwrap();
            assert_eq!(tasks[0].path, "a.mp4");
            // A browser served part of a file: the job counts it, never more
            // than the file, never less than before.
            s.task_progress(job, "a.mp4", 60).unwrap();
            s.task_progress(job, "a.mp4", 40).unwrap();
            assert_eq!(s.job(job).unwrap().bytes_done, 60);
            s.task_progress(job, "seq/f.0001.exr", 99).unwrap();
            assert_eq!(s.job(job).unwrap().bytes_done, 70);
            s.task_done(job, "a.mp4", Some("abc")).unwrap();
            let j = s.job(job).unwrap();
            assert_eq!((j.files_done, j.bytes_done), (1, 110));
            // A delivered file stays whole.
            s.task_progress(job, "a.mp4", 1).unwrap();
            assert_eq!(s.job(job).unwrap().bytes_done, 110);
            assert_eq!(
                s.set_task_priority(job, &["seq/f.0001.exr".into()], 1)
                    .unwrap(),
                1
            );
            assert_eq!(s.tasks(job).unwrap()[1].priority, 1);
        }
    }
}
