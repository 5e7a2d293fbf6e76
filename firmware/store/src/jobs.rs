//! Jobs: one transfer of a set of files between two parties, with its
//! status and progress. (Tasks, one per file, hang off jobs.)

use crate::db::{Optional, Row, params};
use ferry_domain::rules::{JobFacts, RateCap};
use ferry_domain::{DeliveryId, JobId, JobKind, JobStatus, Party, ShareId, UserId};
use serde::Serialize;

use crate::{Database, Result, StoreError, now};

#[derive(Clone, Debug)]
pub struct NewJob {
    pub kind: JobKind,
    pub name: String,
    pub owner: UserId,
    pub share: Option<ShareId>,
    pub folder: String,
    pub status: JobStatus,
    pub client_address: Option<String>,
    pub delivery: Option<DeliveryId>,
    pub recipient: Option<UserId>,
    /// What names a direct put's or get's run on its client (see
    /// [`Database::resumable_job`]).
    pub resume_key: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Job {
    pub id: JobId,
    pub kind: JobKind,
    pub name: String,
    pub owner_id: UserId,
    pub owner_email: String,
    pub share_id: Option<ShareId>,
    pub folder: String,
    pub status: JobStatus,
    pub purged: bool,
    pub files_total: i64,
    pub files_done: i64,
    pub bytes_total: i64,
    pub bytes_done: i64,
    pub bytes_skipped: i64,
    pub rate: i64,
    pub retries: i64,
    pub error: Option<String>,
    pub client_address: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub delivery_id: Option<DeliveryId>,
    pub recipient_id: Option<UserId>,
    pub recipient_email: Option<String>,
    pub next_retry_at: Option<i64>,
    /// The job's own cap in bits per second; `None`: the site's.
    pub target_rate: Option<u64>,
    /// Who set the job's own cap.
    pub cap_set_by: Option<Party>,
    /// Who paused or aborted it, while it is paused or aborted.
    pub held_by: Option<Party>,
    /// How many times it was retried by hand.
    pub round: i64,
    /// Its delivery has expired.
    pub delivery_expired: bool,
    /// An admin marked it urgent: the bandwidth schedule does not slow it.
    pub urgent: bool,
}

impl Job {
    /// What the rulebook needs to know of this job.
    pub fn facts(&self) -> JobFacts {
        JobFacts {
            id: self.id,
            kind: self.kind,
            owner: self.owner_id,
            recipient: self.recipient_id,
            status: self.status,
            purged: self.purged,
            held_by: self.held_by,
            cap: self.cap(),
            next_retry_at: self.next_retry_at,
            expired: self.delivery_expired,
        }
    }

    /// The job's own cap and who set it.
    pub fn cap(&self) -> Option<RateCap> {
        self.target_rate.map(|bits_per_sec| RateCap {
            bits_per_sec,
            // A cap from before caps had owners counts as an admin's.
            set_by: self.cap_set_by.unwrap_or(Party::Admin),
        })
    }
}

const JOB_COLUMNS: &str = "j.id, j.kind, j.name, j.owner_id, u.email, j.share_id, j.folder, j.status, j.purged,
    j.files_total, j.files_done, j.bytes_total, j.bytes_done, j.bytes_skipped, j.rate, j.retries, j.error,
    j.client_address, j.created_at, j.started_at, j.finished_at, j.delivery_id, j.recipient_id, r.email,
    j.next_retry_at, j.target_rate, j.cap_set_by, j.held_by, j.round, coalesce(d.expired, 0), j.urgent";

const JOB_FROM: &str =
    "jobs j JOIN users u ON u.id = j.owner_id LEFT JOIN users r ON r.id = j.recipient_id
    LEFT JOIN deliveries d ON d.id = j.delivery_id";

fn party(v: Option<String>) -> Option<Party> {
    v.and_then(|p| p.parse().ok())
}

fn job_from_row(r: &Row) -> Result<Job> {
    let kind: String = r.get(1)?;
    let status: String = r.get(7)?;
    Ok(Job {
        id: JobId(r.get(0)?),
        kind: kind.parse().unwrap_or(JobKind::Put),
        name: r.get(2)?,
        owner_id: UserId(r.get(3)?),
        owner_email: r.get(4)?,
        share_id: r.get::<_, Option<i64>>(5)?.map(ShareId),
        folder: r.get(6)?,
        status: status.parse().unwrap_or(JobStatus::Failed),
        purged: r.get(8)?,
        files_total: r.get(9)?,
        files_done: r.get(10)?,
        bytes_total: r.get(11)?,
        bytes_done: r.get(12)?,
        bytes_skipped: r.get(13)?,
        rate: r.get(14)?,
        retries: r.get(15)?,
        error: r.get(16)?,
        client_address: r.get(17)?,
        created_at: r.get(18)?,
        started_at: r.get(19)?,
        finished_at: r.get(20)?,
        delivery_id: r.get::<_, Option<i64>>(21)?.map(DeliveryId),
        recipient_id: r.get::<_, Option<i64>>(22)?.map(UserId),
        recipient_email: r.get(23)?,
        next_retry_at: r.get(24)?,
        target_rate: r
            .get::<_, Option<i64>>(25)?
            .and_then(|v| u64::try_from(v).ok()),
        cap_set_by: party(r.get(26)?),
        held_by: party(r.get(27)?),
        round: r.get(28)?,
        delivery_expired: r.get(29)?,
        urgent: r.get(30)?,
    })
}

/// Which jobs to list.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    /// Only jobs this user owns or receives (admins pass `None`).
    pub visible_to: Option<UserId>,
    /// Only jobs this user receives.
    pub recipient: Option<UserId>,
    /// Only jobs of this delivery.
    pub delivery: Option<DeliveryId>,
    pub kind: Option<JobKind>,
    /// Only jobs owned by this user.
    pub owner: Option<UserId>,
    /// Finished jobs only (done, failed, aborted); otherwise unfinished only,
    /// unless `all` is set.
    pub finished: bool,
    pub all: bool,
    /// Only jobs with this status.
    pub status: Option<JobStatus>,
    /// Page: jobs with an id below this one.
    pub before: Option<JobId>,
    pub limit: u32,
}

/// A page of jobs walks the primary key down from the cursor and stops at
/// the page's size, so a page costs the same at any depth of a table of
/// 100,000 jobs (no sort of the whole table).
///
/// A filter left out is NULL; its cast gives PostgreSQL the parameter's
/// type, which `NULL IS NULL` alone does not.
fn list_jobs_sql(f: &JobFilter) -> String {
    let finished_clause = if f.all {
        ""
    } else if f.finished {
        "AND j.status IN ('done', 'failed', 'aborted')"
    } else {
        "AND j.status NOT IN ('done', 'failed', 'aborted')"
    };
    format!(
        "SELECT {JOB_COLUMNS} FROM {JOB_FROM}
         WHERE j.purged = 0 AND j.id < ?1 AND (CAST(?2 AS BIGINT) IS NULL OR j.owner_id = ?2)
           AND (CAST(?3 AS TEXT) IS NULL OR j.status = ?3) {finished_clause}
           AND (CAST(?5 AS BIGINT) IS NULL OR j.owner_id = ?5 OR j.recipient_id = ?5)
           AND (CAST(?6 AS BIGINT) IS NULL OR j.recipient_id = ?6)
           AND (CAST(?7 AS BIGINT) IS NULL OR j.delivery_id = ?7)
           AND (CAST(?8 AS TEXT) IS NULL OR j.kind = ?8)
         ORDER BY j.id DESC LIMIT ?4"
    )
}

impl Database {
    pub fn create_job(&self, job: &NewJob) -> Result<JobId> {
        let conn = self.conn()?;
        let started = (job.status == JobStatus::Running).then(now);
        let id: i64 = conn.query_row(
            "INSERT INTO jobs (kind, name, owner_id, share_id, folder, status, client_address, created_at, started_at,
                 delivery_id, recipient_id, resume_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING id",
            params![
                job.kind.as_str(),
                job.name,
                job.owner.0,
                job.share.map(|s| s.0),
                job.folder,
                job.status.as_str(),
                job.client_address,
                now(),
                started,
                job.delivery.map(|d| d.0),
                job.recipient.map(|r| r.0),
                job.resume_key,
            ],
            |r| r.get(0),
        )?;
        Ok(JobId(id))
    }

    /// The latest unfinished job of `owner` of this kind that a run with
    /// `key` opened: the job a rerun of the same command continues. Done,
    /// aborted, paused and purged jobs are never continued.
    pub fn resumable_job(&self, owner: UserId, kind: JobKind, key: &str) -> Result<Option<JobId>> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT id FROM jobs
                 WHERE owner_id = ?1 AND kind = ?2 AND resume_key = ?3 AND purged = 0
                   AND status IN ('queued', 'running', 'interrupted', 'failed')
                 ORDER BY id DESC LIMIT 1",
                params![owner.0, kind.as_str(), key],
                |r| r.get(0),
            )
            .optional()?
            .map(JobId))
    }

    /// A job runs again for a new session of its client, from `client`.
    pub fn reopen_job(&self, id: JobId, client: &str) -> Result<()> {
        let n = self.conn()?.execute(
            "UPDATE jobs SET status = 'running', error = NULL, client_address = ?2,
                 finished_at = NULL, next_retry_at = NULL, rate = 0
             WHERE id = ?1",
            params![id.0, client],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("job {id}")));
        }
        Ok(())
    }

    pub fn job(&self, id: JobId) -> Result<Job> {
        self.conn()?
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM {JOB_FROM} WHERE j.id = ?1"),
                params![id.0],
                job_from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("job {id}")))
    }

    /// Records the plan's totals once they are known.
    pub fn set_job_totals(&self, id: JobId, files: i64, bytes: i64) -> Result<()> {
        self.conn()?.execute(
            "UPDATE jobs SET files_total = ?1, bytes_total = ?2 WHERE id = ?3",
            params![files, bytes, id.0],
        )?;
        Ok(())
    }

    /// Records progress of a running job.
    pub fn set_job_progress(
        &self,
        id: JobId,
        files_done: i64,
        bytes_done: i64,
        bytes_skipped: i64,
        rate: i64,
    ) -> Result<()> {
        self.conn()?.execute(
            "UPDATE jobs SET files_done = ?1, bytes_done = ?2, bytes_skipped = ?3, rate = ?4 WHERE id = ?5",
            params![files_done, bytes_done, bytes_skipped, rate, id.0],
        )?;
        Ok(())
    }

    /// Records the current rate of a delivery job (whose done counts come
    /// from its tasks) and the bytes its session found already there.
    pub fn set_job_rate(&self, id: JobId, rate: i64, bytes_skipped: i64) -> Result<()> {
        self.conn()?.execute(
            "UPDATE jobs SET rate = ?1, bytes_skipped = CASE WHEN bytes_skipped > ?2 THEN bytes_skipped ELSE ?2 END WHERE id = ?3",
            params![rate, bytes_skipped, id.0],
        )?;
        Ok(())
    }

    /// Sets a job's own cap (bits per second, and who set it), or gives
    /// it back the site's with `None`.
    pub fn set_job_cap(&self, id: JobId, cap: Option<RateCap>) -> Result<()> {
        let bps = cap.map(|c| i64::try_from(c.bits_per_sec).unwrap_or(i64::MAX));
        let n = self.conn()?.execute(
            "UPDATE jobs SET target_rate = ?1, cap_set_by = ?2 WHERE id = ?3",
            params![bps, cap.map(|c| c.set_by.as_str()), id.0],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("job {id}")));
        }
        Ok(())
    }

    pub fn set_job_urgent(&self, id: JobId, urgent: bool) -> Result<()> {
        let n = self.conn()?.execute(
            "UPDATE jobs SET urgent = ?1 WHERE id = ?2",
            params![urgent, id.0],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("job {id}")));
        }
        Ok(())
    }

    /// How many jobs are in each status (purged ones left out), every
    /// status listed, for the appliance's metrics.
    pub fn count_jobs_by_status(&self) -> Result<Vec<(JobStatus, i64)>> {
        let conn = self.conn()?;
        let mut stmt =
            conn.prepare("SELECT status, count(*) FROM jobs WHERE purged = 0 GROUP BY status")?;
        let rows = stmt.query_map(params![], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        let mut counts: Vec<(JobStatus, i64)> = JobStatus::ALL.iter().map(|s| (*s, 0)).collect();
        for row in rows {
            let (status, n) = row;
            let status: JobStatus = status
                .parse()
                .map_err(|e| StoreError::Invalid(format!("a job's status: {e}")))?;
            if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == status) {
                slot.1 = n;
            }
        }
        Ok(counts)
    }

    /// Moves a job to `status`, stamping start and finish times. A job
    /// that leaves a hold (paused, aborted) is no longer held by anyone.
    pub fn set_job_status(&self, id: JobId, status: JobStatus, error: Option<&str>) -> Result<()> {
        let t = now();
        self.conn()?.execute(
            "UPDATE jobs SET status = ?1, error = ?2,
                started_at = CASE WHEN ?1 = 'running' AND started_at IS NULL THEN ?3 ELSE started_at END,
                finished_at = CASE WHEN ?1 IN ('done', 'failed', 'aborted') THEN CAST(?3 AS BIGINT) ELSE NULL END,
                rate = CASE WHEN ?1 = 'running' THEN rate ELSE 0 END,
                held_by = CASE WHEN ?1 IN ('paused', 'aborted') THEN held_by ELSE NULL END
             WHERE id = ?4",
            params![status.as_str(), error, t, id.0],
        )?;
        Ok(())
    }

    /// Pauses or aborts a job on behalf of `by`, who then holds it.
    pub fn hold_job(
        &self,
        id: JobId,
        status: JobStatus,
        by: Party,
        error: Option<&str>,
    ) -> Result<()> {
        if !matches!(status, JobStatus::Paused | JobStatus::Aborted) {
            return Err(StoreError::Invalid(format!(
                "a job is held paused or aborted, not {status}"
            )));
        }
        let n = self.conn()?.execute(
            "UPDATE jobs SET status = ?1, error = ?2, held_by = ?3, rate = 0,
                finished_at = CASE WHEN ?1 = 'aborted' THEN CAST(?4 AS BIGINT) ELSE NULL END
             WHERE id = ?5",
            params![status.as_str(), error, by.as_str(), now(), id.0],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("job {id}")));
        }
        Ok(())
    }

    pub fn list_jobs(&self, f: &JobFilter) -> Result<Vec<Job>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&list_jobs_sql(f))?;
        let limit = if f.limit == 0 { 100 } else { f.limit };
        let rows = stmt.query_map(
            params![
                f.before.map(|b| b.0).unwrap_or(i64::MAX),
                f.owner.map(|o| o.0),
                f.status.map(|s| s.as_str()),
                limit,
                f.visible_to.map(|u| u.0),
                f.recipient.map(|u| u.0),
                f.delivery.map(|d| d.0),
                f.kind.map(|k| k.as_str()),
            ],
            job_from_row,
        )?;
        Ok(rows)
    }

    /// Jobs left `running` by a daemon that stopped without finishing them:
    /// direct transfers are interrupted (their client's next run of the
    /// same command continues them); delivery jobs go back to the queue,
    /// for their client to resume.
    pub fn fail_interrupted_jobs(&self, node: &str, reason: &str) -> Result<usize> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        // Jobs from before jobs had nodes count as this node's.
        tx.execute(
            "UPDATE tasks SET status = 'queued' WHERE status = 'running' AND job_id IN
                 (SELECT id FROM jobs WHERE status = 'running' AND (node = ?1 OR node IS NULL))",
            params![node],
        )?;
        let direct = tx.execute(
            "UPDATE jobs SET status = 'interrupted', error = ?2, rate = 0
             WHERE status = 'running' AND kind IN ('put', 'get') AND (node = ?1 OR node IS NULL)",
            params![node, reason],
        )?;
        let delivery = tx.execute(
            "UPDATE jobs SET status = 'queued', error = ?2, rate = 0
             WHERE status = 'running' AND kind IN ('upload', 'download') AND (node = ?1 OR node IS NULL)",
            params![node, reason],
        )?;
        tx.commit()?;
        Ok(direct + delivery)
    }

    /// The node `node` carries the job's session now.
    pub fn carry_job(&self, id: JobId, node: &str) -> Result<()> {
        self.conn()?.execute(
            "UPDATE jobs SET node = ?2 WHERE id = ?1",
            params![id.0, node],
        )?;
        Ok(())
    }

    /// Records a failure that will be retried at `retry_at` (or not at all
    /// when `None`), counting it.
    pub fn fail_job(&self, id: JobId, error: &str, retry_at: Option<i64>) -> Result<()> {
        self.conn()?.execute(
            "UPDATE jobs SET status = 'failed', error = ?1, retries = retries + 1, next_retry_at = ?2,
                 finished_at = ?3, rate = 0
             WHERE id = ?4",
            params![error, retry_at, now(), id.0],
        )?;
        Ok(())
    }

    /// Hides a job from listings for good; its tasks stay (audit).
    pub fn purge_job(&self, id: JobId) -> Result<()> {
        self.conn()?
            .execute("UPDATE jobs SET purged = 1 WHERE id = ?1", params![id.0])?;
        Ok(())
    }

    /// Clears the retry counter and queues the job again (a new round:
    /// its failure, if it fails again, is announced again).
    pub fn requeue_job(&self, id: JobId) -> Result<()> {
        self.conn()?.execute(
            "UPDATE jobs SET status = 'queued', error = NULL, retries = 0, next_retry_at = NULL, finished_at = NULL,
                 held_by = NULL, round = round + 1
             WHERE id = ?1",
            params![id.0],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    #[test]
    fn a_deep_page_of_100_000_jobs_walks_the_key_without_sorting() {
        let s = Database::open_in_memory().unwrap();
        let u = s
            .create_user("a@b.io", "", Role::Employee, Some("password1"))
            .unwrap();
        {
            let conn = s.conn().unwrap();
            conn.execute_batch("BEGIN").unwrap();
            let mut insert = conn
                .prepare(
                    "INSERT INTO jobs (kind, name, owner_id, status, created_at)
                     VALUES ('put', 'job ' || ?1, ?2, CASE ?1 % 3 WHEN 0 THEN 'done' ELSE 'queued' END, 0)",
                )
                .unwrap();
            for i in 0..100_000i64 {
                insert.execute(crate::db::params![i, u.id.0]).unwrap();
            }
            drop(insert);
            conn.execute_batch("COMMIT; ANALYZE").unwrap();
        }
        // Every filter the web admin and the API use: none sorts the table.
        for f in [
            JobFilter::default(),
            JobFilter {
                finished: true,
                ..Default::default()
            },
            JobFilter {
                all: true,
                status: Some(JobStatus::Done),
                ..Default::default()
            },
            JobFilter {
                all: true,
                visible_to: Some(u.id),
                ..Default::default()
            },
        ] {
            let plan: Vec<String> = {
                let conn = s.conn().unwrap();
                let mut stmt = conn
                    .prepare(&format!("EXPLAIN QUERY PLAN {}", list_jobs_sql(&f)))
                    .unwrap();
                stmt.query_map(
                    crate::db::params![
                        50_000,
                        None::<i64>,
                        None::<String>,
                        50,
                        None::<i64>,
                        None::<i64>,
                        None::<i64>,
                        None::<String>
                    ],
                    |r| r.get::<_, String>(3),
                )
                .unwrap()
            };
            let plan = plan.join("; ");
            assert!(!plan.contains("TEMP B-TREE"), "{f:?} sorts: {plan}");
            assert!(
                plan.contains("j USING INTEGER PRIMARY KEY"),
                "{f:?}: {plan}"
            );
        }
        // And the deep page is the right one.
        let page = s
            .list_jobs(&JobFilter {
                all: true,
                before: Some(JobId(50_001)),
                limit: 50,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(page.len(), 50);
        assert_eq!(page[0].id, JobId(50_000));
        assert_eq!(page[49].id, JobId(49_951));
    }

    #[test]
    fn a_restarting_node_marks_only_its_own_running_jobs_as_cut() {
        for s in crate::testing::databases() {
            eprintln!("on {}", s.engine());
            let u = s
                .create_user("a@b.io", "", Role::Employee, Some("password1"))
                .unwrap();
            let job = |kind: JobKind| {
                s.create_job(&NewJob {
                    kind,
                    name: "a job".into(),
                    owner: u.id,
                    share: None,
                    folder: String::new(),
                    status: JobStatus::Running,
                    client_address: None,
                    delivery: None,
                    recipient: None,
                    resume_key: None,
                })
                .unwrap()
            };
            let (on_a, on_b, before_nodes) =
                (job(JobKind::Put), job(JobKind::Get), job(JobKind::Put));
            s.carry_job(on_a, "ferry-a").unwrap();
            s.carry_job(on_b, "ferry-b").unwrap();
            assert_eq!(s.fail_interrupted_jobs("ferry-a", "restarted").unwrap(), 2);
            let status = |id| s.job(id).unwrap().status;
            assert_eq!(status(on_a), JobStatus::Interrupted);
            assert_eq!(status(before_nodes), JobStatus::Interrupted);
            assert_eq!(status(on_b), JobStatus::Running, "ferry-b's job is its own");
        }
    }

    #[test]
    fn job_lifecycle_and_listing() {
        for s in crate::testing::databases() {
            eprintln!("on {}", s.engine());
            let u = s
                .create_user("a@b.io", "", Role::Employee, Some("password1"))
                .unwrap();
            let id = s
                .create_job(&NewJob {
                    kind: JobKind::Put,
                    name: "put a.mov".into(),
                    owner: u.id,
                    share: None,
                    folder: String::new(),
                    status: JobStatus::Running,
                    client_address: Some("127.0.0.1".into()),
                    delivery: None,
                    recipient: None,
                    resume_key: None,
                })
                .unwrap();
            s.set_job_totals(id, 2, 100).unwrap();
            s.set_job_progress(id, 1, 50, 10, 1000).unwrap();
            let j = s.job(id).unwrap();
            assert_eq!(
                (j.status, j.bytes_done, j.bytes_skipped),
                (JobStatus::Running, 50, 10)
            );
            assert!(j.started_at.is_some() && j.finished_at.is_none());
            assert_eq!(s.list_jobs(&JobFilter::default()).unwrap().len(), 1);
            s.set_job_status(id, JobStatus::Done, None).unwrap();
            assert!(s.list_jobs(&JobFilter::default()).unwrap().is_empty());
            let finished = s
                .list_jobs(&JobFilter {
                    finished: true,
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(finished.len(), 1);
            assert!(finished[0].finished_at.is_some());
            assert_eq!(finished[0].rate, 0);

            assert_eq!(j.target_rate, None);
            let cap = RateCap {
                bits_per_sec: 50_000_000,
                set_by: Party::Recipient,
            };
            s.set_job_cap(id, Some(cap)).unwrap();
            assert_eq!(s.job(id).unwrap().cap(), Some(cap));
            s.set_job_cap(id, None).unwrap();
            assert_eq!(s.job(id).unwrap().target_rate, None);
            assert!(matches!(
                s.set_job_cap(JobId(999), Some(cap)),
                Err(StoreError::NotFound(_))
            ));
            s.hold_job(id, JobStatus::Paused, Party::Admin, None)
                .unwrap();
            assert_eq!(s.job(id).unwrap().held_by, Some(Party::Admin));
            s.requeue_job(id).unwrap();
            let j = s.job(id).unwrap();
            assert_eq!((j.status, j.held_by, j.round), (JobStatus::Queued, None, 1));
        }
    }
}
