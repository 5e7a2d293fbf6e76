//! What a data session's end means for its job: its new status, whether it
//! is tried again and when, who is told, and what the audit log says. The
//! daemon's session adapter classifies how the session ended and applies
//! what this decides; the decision itself is here, with the clock passed
//! in, so every case is tested without a network.

use crate::action::AuditAction;
use crate::status::{JobId, JobKind, JobStatus};

/// Back-off before a failed delivery job is tried again, by failures so
/// far; after the last it stays failed until someone retries it.
pub const RETRY_AFTER: [i64; 5] = [30, 120, 600, 1800, 3600];

/// How a session ended, as far as its job is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Every file is where it should be.
    Done,
    /// Stopped on purpose (a pause, an abort, a purge, expiry, a revoked
    /// right, a newer session of the same job): whoever stopped it already
    /// set the job's status.
    Stopped(String),
    /// The network or the client went away: the job waits for its client.
    Interrupted(String),
    /// A fault that will happen again as it is (a full disk, a refused
    /// path, a protocol violation); retried with back-off.
    Failed(String),
}

/// The job as the store has it when its session ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobNow {
    pub id: JobId,
    pub kind: JobKind,
    pub status: JobStatus,
    /// Failures counted since it was last queued by hand.
    pub retries: u32,
    /// How many times someone retried it by hand: one failure notice per
    /// round.
    pub round: u32,
}

/// Someone to tell, by email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The job is done (a download: its sender learns it was received).
    Done,
    /// The job failed for good; its sender and the admins learn why. The
    /// key makes a second notice of the same failure a no-op.
    Failed { error: String, dedupe: String },
}

/// What follows a session's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The job's new status and error; `None` leaves the job as it is.
    pub status: Option<(JobStatus, Option<String>)>,
    /// When a failed job is tried again by itself.
    pub retry_at: Option<i64>,
    /// The failure counts against the job's retries.
    pub counted: bool,
    pub notice: Option<Notice>,
    pub audit: AuditAction,
    /// For the log and the audit line.
    pub detail: String,
}

/// Decides what follows a session's end.
///
/// A session only ever moves its job forward from where the job stands
/// now: a job that is already done stays done (a late, failing session of
/// it cannot flip it back, nor tell its sender twice), and a job someone
/// paused or aborted keeps that status.
pub fn settle(job: &JobNow, ending: &Ending, now: i64) -> Settled {
    let leave = |audit, detail: &str| Settled {
        status: None,
        retry_at: None,
        counted: false,
        notice: None,
        audit,
        detail: detail.to_owned(),
    };
    match job.status {
        JobStatus::Done => {
            return leave(AuditAction::JobStopped, "the job was already done");
        }
        JobStatus::Paused | JobStatus::Aborted => {
            return leave(
                AuditAction::JobStopped,
                &format!("the job is {}", job.status),
            );
        }
        _ => {}
    }
    let direct = !job.kind.is_delivery();
    match ending {
        Ending::Done => Settled {
            status: Some((JobStatus::Done, None)),
            retry_at: None,
            counted: false,
            notice: Some(Notice::Done),
            audit: AuditAction::JobDone,
            detail: String::new(),
        },
        Ending::Stopped(why) => leave(AuditAction::JobStopped, why),
        // A delivery job waits for its client to come back; a direct put
        // or get is its client's to run again.
        Ending::Interrupted(why) if !direct => Settled {
            status: Some((JobStatus::Queued, Some(why.clone()))),
            retry_at: None,
            counted: false,
            notice: None,
            audit: AuditAction::JobInterrupted,
            detail: why.clone(),
        },
        // A direct put or get: what arrived is kept, and its client's next
        // run of the same command continues the job.
        Ending::Interrupted(why) if direct => Settled {
            status: Some((JobStatus::Interrupted, Some(why.clone()))),
            retry_at: None,
            counted: false,
            notice: None,
            audit: AuditAction::JobInterrupted,
            detail: why.clone(),
        },
        Ending::Failed(why) if direct => Settled {
            status: Some((JobStatus::Failed, Some(why.clone()))),
            retry_at: None,
            counted: false,
            notice: None,
            audit: AuditAction::JobFailed,
            detail: why.clone(),
        },
        Ending::Interrupted(why) | Ending::Failed(why) => {
            let retry_at = RETRY_AFTER.get(job.retries as usize).map(|secs| now + secs);
            Settled {
                status: Some((JobStatus::Failed, Some(why.clone()))),
                retry_at,
                counted: true,
                notice: retry_at.is_none().then(|| Notice::Failed {
                    error: why.clone(),
                    dedupe: format!("job-failed/{}/{}", job.id, job.round),
                }),
                audit: AuditAction::JobFailed,
                detail: why.clone(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(kind: JobKind, status: JobStatus, retries: u32) -> JobNow {
        JobNow {
            id: JobId(7),
            kind,
            status,
            retries,
            round: 0,
        }
    }

    #[test]
    fn a_delivery_job_backs_off_then_fails_for_good_with_one_notice() {
        let now = 1000;
        let mut retries = 0;
        let mut notices = 0;
        loop {
            let s = settle(
                &job(JobKind::Download, JobStatus::Running, retries),
                &Ending::Failed("disk full".into()),
                now,
            );
            assert_eq!(
                s.status.as_ref().map(|(st, _)| *st),
                Some(JobStatus::Failed)
            );
            assert!(s.counted);
            if let Some(Notice::Failed { dedupe, .. }) = &s.notice {
                assert_eq!(dedupe, "job-failed/7/0");
                notices += 1;
            }
            match s.retry_at {
                Some(at) => assert_eq!(at - now, RETRY_AFTER[retries as usize]),
                None => break,
            }
            retries += 1;
        }
        assert_eq!((retries, notices), (5, 1));
    }

    #[test]
    fn a_done_job_stays_done_and_is_not_announced_twice() {
        for ending in [
            Ending::Done,
            Ending::Failed("forged".into()),
            Ending::Interrupted("lost".into()),
        ] {
            let s = settle(&job(JobKind::Download, JobStatus::Done, 5), &ending, 0);
            assert_eq!(s.status, None, "{ending:?}");
            assert_eq!(s.notice, None);
        }
    }

    #[test]
    fn a_stopped_or_held_job_keeps_the_status_its_stopper_gave() {
        let s = settle(
            &job(JobKind::Download, JobStatus::Paused, 0),
            &Ending::Failed("x".into()),
            0,
        );
        assert_eq!(s.status, None);
        let s = settle(
            &job(JobKind::Upload, JobStatus::Running, 0),
            &Ending::Stopped("superseded".into()),
            0,
        );
        assert_eq!((s.status, s.audit), (None, AuditAction::JobStopped));
    }

    #[test]
    fn an_interrupted_delivery_job_waits_and_a_direct_one_is_interrupted_not_failed() {
        let s = settle(
            &job(JobKind::Download, JobStatus::Running, 0),
            &Ending::Interrupted("lost".into()),
            0,
        );
        assert_eq!(s.status.map(|(st, _)| st), Some(JobStatus::Queued));
        assert!(!s.counted);
        let s = settle(
            &job(JobKind::Put, JobStatus::Running, 0),
            &Ending::Interrupted("lost".into()),
            0,
        );
        assert_eq!(s.status.map(|(st, _)| st), Some(JobStatus::Interrupted));
        assert_eq!(s.audit, AuditAction::JobInterrupted);
        assert!(!s.counted);
        assert_eq!(s.notice, None);
        // A fault of its own still fails it.
        let s = settle(
            &job(JobKind::Get, JobStatus::Running, 0),
            &Ending::Failed("disk full".into()),
            0,
        );
        assert_eq!(s.status.map(|(st, _)| st), Some(JobStatus::Failed));
        let s = settle(&job(JobKind::Get, JobStatus::Running, 0), &Ending::Done, 0);
        assert_eq!(s.notice, Some(Notice::Done));
    }
}
