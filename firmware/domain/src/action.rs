//! What people do to jobs, and what the audit log records.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::status::{JobStatus, UnknownValue};

word_enum!(
    /// What someone may do to a job. Buttons in the web admin and the
    /// desktop app, `ferry job …` and `POST /api/v1/jobs/{id}/…` all name
    /// these.
    JobAction, "job action" {
        Pause = "pause",
        Resume = "resume",
        Abort = "abort",
        /// Queue a failed or aborted job again, with its retries reset.
        Retry = "retry",
        /// Withdraw it for good: it leaves listings and cannot be resumed.
        Purge = "purge",
        /// Change the priority of some of its files.
        Priority = "priority",
        /// Cap its rate, or give it back the site's.
        Rate = "rate",
        /// Mark it urgent, or not: the bandwidth schedule does not slow an
        /// urgent job (admins only).
        Urgent = "urgent",
    }
);

impl JobStatus {
    /// What a job in this state allows, whoever asks: the one source for
    /// every button and every handler. [`crate::rules`] narrows it to what
    /// a given caller may do.
    pub fn allows(self) -> &'static [JobAction] {
        use JobAction::*;
        match self {
            JobStatus::Queued | JobStatus::Running => {
                &[Pause, Abort, Purge, Priority, Rate, Urgent]
            }
            JobStatus::Paused => &[Resume, Abort, Purge, Priority, Rate, Urgent],
            JobStatus::Failed => &[Retry, Abort, Purge, Priority, Rate, Urgent],
            // Only its client can run it again (the same command); from
            // here it may be given up.
            JobStatus::Interrupted => &[Abort, Purge],
            JobStatus::Aborted => &[Retry, Purge],
            JobStatus::Done => &[Purge],
        }
    }
}

word_enum!(
    /// Every kind of line in the audit log. The store keeps the word; the
    /// web admin filters on its first part (`job`, `login`, …).
    AuditAction, "audit action" {
        Login = "login",
        LoginFailed = "login.failed",
        LoginThrottled = "login.throttled",
        Logout = "logout",
        PasswordChange = "password.change",
        PasswordReset = "user.reset",
        UserAdd = "user.add",
        UserInvite = "user.invite",
        InvitationAccepted = "user.invitation.accepted",
        InvitationLink = "user.invitation.link",
        UserNotify = "user.notify",
        UserRole = "user.role",
        UserStatus = "user.status",
        KeyCreate = "apikey.create",
        KeyRevoke = "apikey.revoke",
        KeyRefused = "apikey.refused",
        ShareAdd = "share.add",
        ShareRemove = "share.remove",
        ShareGrant = "share.grant",
        ShareFolder = "share.mkdir",
        SettingsChange = "settings.change",
        SettingsCertificate = "settings.certificate",
        /// An ACME CA issued the appliance a certificate, now served.
        CertificateIssued = "certificate.issued",
        /// An ACME order failed; the old certificate stays.
        CertificateRefused = "certificate.refused",
        DeliveryCreate = "delivery.create",
        DeliveryExpire = "delivery.expire",
        SessionGrant = "session.grant",
        SessionRefused = "session.refused",
        /// A session ended because a newer one of the same job began.
        SessionSuperseded = "session.superseded",
        /// A session made no progress for too long and was closed.
        SessionStalled = "session.stalled",
        /// Sessions stopped because their caller lost a right (account
        /// disabled, grant or key revoked).
        SessionRevoked = "session.revoked",
        JobPause = "job.pause",
        JobResume = "job.resume",
        JobAbort = "job.abort",
        JobRetry = "job.retry",
        JobPurge = "job.purge",
        JobPriority = "job.priority",
        JobRate = "job.rate",
        JobUrgent = "job.urgent",
        JobDone = "job.done",
        JobStopped = "job.stopped",
        JobInterrupted = "job.interrupted",
        JobFailed = "job.failed",
        /// Queued jobs held because their recipient lost a right.
        JobHeld = "job.held",
        MailFailed = "mail.failed",
        MailRetry = "mail.retry",
        MailDiscard = "mail.discard",
        LeaseOpen = "lease.open",
        LeaseRenew = "lease.renew",
        LeaseRelease = "lease.release",
        /// A lease a previous run of ferryd left with portguard, given back.
        LeaseReclaim = "lease.reclaim",
        LeaseRenewFailed = "lease.renew_failed",
        WarningSourceNat = "warning.source_nat",
        /// An admin drained a node: it grants no new sessions.
        NodeDrain = "node.drain",
        /// A drained node takes sessions again.
        NodeResume = "node.resume",
        /// A node's record was forgotten.
        NodeForget = "node.forget",
        WatchAdd = "watch.add",
        WatchRemove = "watch.remove",
        /// A watch could not deliver what settled in its folder.
        WatchFailed = "watch.failed",
    }
);

impl JobAction {
    /// The audit line a successful action leaves.
    pub fn audit(self) -> AuditAction {
        match self {
            JobAction::Pause => AuditAction::JobPause,
            JobAction::Resume => AuditAction::JobResume,
            JobAction::Abort => AuditAction::JobAbort,
            JobAction::Retry => AuditAction::JobRetry,
            JobAction::Purge => AuditAction::JobPurge,
            JobAction::Priority => AuditAction::JobPriority,
            JobAction::Rate => AuditAction::JobRate,
            JobAction::Urgent => AuditAction::JobUrgent,
        }
    }
}

impl AuditAction {
    /// The family a line belongs to (`job`, `login`, `user`, …), which the
    /// audit page filters on.
    pub fn family(self) -> &'static str {
        let s = self.as_str();
        s.split_once('.').map_or(s, |(f, _)| f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_job_allows_only_what_makes_sense() {
        assert_eq!(JobStatus::Done.allows(), &[JobAction::Purge]);
        assert!(JobStatus::Aborted.allows().contains(&JobAction::Retry));
        assert!(!JobStatus::Aborted.allows().contains(&JobAction::Pause));
        assert!(!JobStatus::Running.allows().contains(&JobAction::Resume));
        assert!(JobStatus::Paused.allows().contains(&JobAction::Resume));
    }

    #[test]
    fn audit_words_are_unique_and_have_families() {
        let mut seen = std::collections::HashSet::new();
        for a in AuditAction::ALL {
            assert!(seen.insert(a.as_str()), "{a} twice");
        }
        assert_eq!(AuditAction::JobPause.family(), "job");
        assert_eq!(AuditAction::Logout.family(), "logout");
        assert_eq!(JobAction::Retry.audit(), AuditAction::JobRetry);
    }
}
