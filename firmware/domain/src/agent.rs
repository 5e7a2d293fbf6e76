//! The recipient's agent's decisions about one job, as pure functions:
//! what a job that is no longer offered means, and when a session of ours
//! outlives the appliance's idea of it. The agent (`ferry-client`) runs
//! them over what the appliance answers.

use std::time::Duration;

use crate::status::JobStatus;

/// What became of a job the agent was watching and that is no longer
/// offered to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vanished {
    /// The sender took it back: never resumed, said once.
    Withdrawn,
    /// Paused: it comes back when someone resumes it.
    Paused,
    /// Finished: nothing more to do.
    Finished,
    /// Still in play (queued again, failed and waiting for a retry).
    Waiting,
}

/// What a job's status means once the job is no longer offered.
pub fn vanished(status: JobStatus) -> Vanished {
    match status {
        JobStatus::Aborted => Vanished::Withdrawn,
        JobStatus::Paused => Vanished::Paused,
        JobStatus::Done => Vanished::Finished,
        JobStatus::Queued | JobStatus::Running | JobStatus::Interrupted | JobStatus::Failed => {
            Vanished::Waiting
        }
    }
}

/// Whether a running session of ours should stop because the appliance
/// should stop it: the job was aborted or paused there.
pub fn stop_ours(status: JobStatus) -> bool {
    matches!(status, JobStatus::Aborted | JobStatus::Paused)
}

/// Whether a session of ours is orphaned: the appliance has shown its job
/// as not running for `unseen` (it was restarted and forgot the session),
/// longer than a session takes to start (`grace`).
pub fn orphaned(status: JobStatus, unseen: Duration, grace: Duration) -> bool {
    status != JobStatus::Running && unseen >= grace
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vanished_job_is_read_by_its_status() {
        assert_eq!(vanished(JobStatus::Aborted), Vanished::Withdrawn);
        assert_eq!(vanished(JobStatus::Paused), Vanished::Paused);
        assert_eq!(vanished(JobStatus::Done), Vanished::Finished);
        assert_eq!(vanished(JobStatus::Failed), Vanished::Waiting);
        assert!(stop_ours(JobStatus::Paused) && !stop_ours(JobStatus::Queued));
        let grace = Duration::from_secs(15);
        assert!(orphaned(JobStatus::Queued, grace, grace));
        assert!(!orphaned(JobStatus::Running, grace * 2, grace));
        assert!(!orphaned(JobStatus::Failed, grace / 2, grace));
    }
}
