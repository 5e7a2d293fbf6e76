//! The rulebook: may this caller do this to that job, share, account or
//! setting, and if not, why. The REST API, the web admin, the data plane
//! and (through the actions each job lists) the desktop app and the CLI all
//! ask here; no handler derives a rule of its own.
//!
//! Jobs follow three principles:
//! - only the people a job concerns see it (its owner, its recipient,
//!   admins); to anyone else it does not exist;
//! - what a job's state allows ([`JobStatus::allows`]) is the same for
//!   everyone, and a caller may do at most that;
//! - a hold (pause, abort) or a rate cap belongs to the party who set it:
//!   only that party or one above it ([`Party`]: admin, sender, recipient)
//!   lifts it. A recipient may pause their download and resume their own
//!   pause, may never undo an abort, and may only lower a cap someone else
//!   set.

use crate::action::JobAction;
use crate::status::{AccountKind, JobId, JobKind, JobStatus, Party, Role, UserId, UserStatus};

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user: UserId,
    pub role: Role,
}

/// A job's own cap, in bits per second, and who set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateCap {
    pub bits_per_sec: u64,
    pub set_by: Party,
}

/// What the rulebook needs to know of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFacts {
    pub id: JobId,
    pub kind: JobKind,
    pub owner: UserId,
    pub recipient: Option<UserId>,
    pub status: JobStatus,
    pub purged: bool,
    /// Who paused or aborted it (while it is paused or aborted).
    pub held_by: Option<Party>,
    pub cap: Option<RateCap>,
    /// When a failed job is tried again by itself; `None` once its retries
    /// are used up.
    pub next_retry_at: Option<i64>,
    /// Its delivery has expired (nothing of it may run any more).
    pub expired: bool,
}

/// Why not. Each maps to one HTTP status at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The caller may not know the thing exists (404).
    #[error("{0}")]
    NotFound(String),
    /// The caller may see it, but not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// Not in its present state (409).
    #[error("{0}")]
    Conflict(String),
    /// Purged or expired: it cannot be resumed (410).
    #[error("{0}")]
    Withdrawn(String),
    /// The job was aborted: a client stops trying (409, `job_aborted`).
    #[error("{0}")]
    Aborted(String),
    /// The job is paused: a client waits (409, `job_paused`).
    #[error("{0}")]
    Paused(String),
}

/// The standing `caller` has on `job`, if any: admins above the owner
/// above the recipient.
fn party(caller: &Caller, job: &JobFacts) -> Option<Party> {
    if caller.role == Role::Admin {
        Some(Party::Admin)
    } else if job.owner == caller.user {
        Some(Party::Sender)
    } else if job.recipient == Some(caller.user) {
        Some(Party::Recipient)
    } else {
        None
    }
}

/// May `caller` see `job` at all? Answers with their standing on it.
pub fn see(caller: &Caller, job: &JobFacts) -> Result<Party, Refusal> {
    let Some(party) = party(caller, job) else {
        return Err(Refusal::NotFound(format!("there is no job {}", job.id)));
    };
    if job.purged {
        return Err(Refusal::Withdrawn(format!(
            "job {} was withdrawn by its sender (purged); it cannot be resumed",
            job.id
        )));
    }
    Ok(party)
}

/// May `caller` do `action` to `job`? Answers with the standing they act
/// in, which the store keeps with a hold or a cap.
pub fn act(caller: &Caller, job: &JobFacts, action: JobAction) -> Result<Party, Refusal> {
    let party = see(caller, job)?;
    let no = |why: String| Err(Refusal::Forbidden(why));
    // What a party may never do comes first, whatever the state: a
    // recipient is told they may not abort, not that the job is done.
    match (action, party) {
        (JobAction::Abort | JobAction::Purge, Party::Recipient) => {
            return no(format!(
                "only the sender or an admin may {action} job {}",
                job.id
            ));
        }
        (JobAction::Urgent, Party::Sender | Party::Recipient) => {
            return no(format!(
                "only an admin may mark job {} urgent (the bandwidth schedule then does not slow it)",
                job.id
            ));
        }
        (JobAction::Retry, Party::Recipient) if job.status == JobStatus::Aborted => {
            return no(format!(
                "job {} was aborted by {}; only they can send it again",
                job.id,
                holder(job.held_by)
            ));
        }
        _ => {}
    }
    if !job.status.allows().contains(&action) {
        return Err(Refusal::Conflict(format!(
            "job {} is {}; it allows {}",
            job.id,
            job.status,
            words(job.status.allows())
        )));
    }
    let held_above = job.held_by.is_some_and(|h| !party.outranks_or_equals(h));
    match action {
        JobAction::Resume | JobAction::Retry if held_above => no(format!(
            "job {} was {} by {}; only they can undo it",
            job.id,
            if job.status == JobStatus::Paused {
                "paused"
            } else {
                "aborted"
            },
            holder(job.held_by)
        )),
        _ => Ok(party),
    }
}

fn holder(p: Option<Party>) -> &'static str {
    match p {
        Some(Party::Admin) => "an admin",
        Some(Party::Sender) => "the sender",
        Some(Party::Recipient) => "the recipient",
        None => "someone else",
    }
}

fn words(actions: &[JobAction]) -> String {
    let w: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
    w.join(", ")
}

/// What `caller` may do to `job` now: the buttons to show.
pub fn actions(caller: &Caller, job: &JobFacts) -> Vec<JobAction> {
    JobAction::ALL
        .iter()
        .copied()
        .filter(|a| act(caller, job, *a).is_ok())
        .collect()
}

/// Who holds the job once `party` has done `action` to it: a pause or an
/// abort belongs to the strongest party involved, so that aborting a job an
/// admin paused cannot be used to resume it; lifting a hold clears it.
pub fn hold_after(job: &JobFacts, action: JobAction, party: Party) -> Option<Party> {
    match action {
        JobAction::Pause | JobAction::Abort | JobAction::Purge => Some(match job.held_by {
            Some(h) if h.outranks_or_equals(party) => h,
            _ => party,
        }),
        JobAction::Resume | JobAction::Retry => None,
        JobAction::Priority | JobAction::Rate | JobAction::Urgent => job.held_by,
    }
}

/// The cap `job` keeps when `caller` asks for `new` (`None`: no cap of
/// the job's own). A party may set any cap over one it set itself or one
/// set below it; under a cap set above it, it may only go lower, and the
/// cap still belongs to the party above (so it cannot later raise it).
pub fn set_rate(
    caller: &Caller,
    job: &JobFacts,
    new: Option<u64>,
) -> Result<Option<RateCap>, Refusal> {
    let party = act(caller, job, JobAction::Rate)?;
    match job.cap {
        Some(cap) if !party.outranks_or_equals(cap.set_by) => match new {
            Some(bps) if bps <= cap.bits_per_sec => Ok(Some(RateCap {
                bits_per_sec: bps,
                set_by: cap.set_by,
            })),
            _ => Err(Refusal::Forbidden(format!(
                "{} capped job {} at {}; you may only lower it",
                holder(Some(cap.set_by)),
                job.id,
                ferry_proto::Rate::from_bits_per_sec(cap.bits_per_sec)
                    .map_or_else(|_| format!("{} bit/s", cap.bits_per_sec), |r| r.to_string())
            ))),
        },
        _ => Ok(new.map(|bps| RateCap {
            bits_per_sec: bps,
            set_by: party,
        })),
    }
}

/// May `caller` open a data session that runs `job` now? Only the sender
/// uploads and only the recipient downloads, and only a job that is
/// queued, running, or failed and due for its next try: a paused, aborted,
/// finished or withdrawn job does not move.
pub fn run(caller: &Caller, job: &JobFacts, now: i64) -> Result<(), Refusal> {
    see(caller, job)?;
    let mine = match job.kind {
        JobKind::Upload | JobKind::Put | JobKind::Get => job.owner == caller.user,
        JobKind::Download => job.recipient == Some(caller.user),
    };
    if !mine {
        return Err(Refusal::Forbidden(format!(
            "job {} is not yours to run",
            job.id
        )));
    }
    if job.expired {
        return Err(Refusal::Withdrawn(format!(
            "the delivery of job {} has expired",
            job.id
        )));
    }
    match job.status {
        // An interrupted job is its client's to continue.
        JobStatus::Queued | JobStatus::Running | JobStatus::Interrupted => Ok(()),
        JobStatus::Failed => match job.next_retry_at {
            Some(at) if at <= now => Ok(()),
            Some(at) => Err(Refusal::Conflict(format!(
                "job {} failed; it is tried again by itself in {} s",
                job.id,
                at - now
            ))),
            None => Err(Refusal::Conflict(format!(
                "job {} failed for good; it runs again only once someone retries it",
                job.id
            ))),
        },
        JobStatus::Paused => Err(Refusal::Paused(format!("job {} is paused", job.id))),
        JobStatus::Aborted => Err(Refusal::Aborted(format!("job {} was aborted", job.id))),
        JobStatus::Done => Err(Refusal::Conflict(format!(
            "job {} is done; nothing is left to move",
            job.id
        ))),
    }
}

/// May `caller` download `job`'s files over HTTPS (the browser's
/// deliveries page, or the API for scripts)? Only its recipient, and no
/// one else learns it exists, admins included: what a recipient was served
/// counts as received, so no one may take it in their place. A finished
/// job's files may be fetched again while its delivery lives.
pub fn fetch(caller: &Caller, job: &JobFacts) -> Result<(), Refusal> {
    if job.kind != JobKind::Download || job.recipient != Some(caller.user) {
        return Err(Refusal::NotFound(format!(
            "there is no delivery {}",
            job.id
        )));
    }
    see(caller, job)?;
    if job.expired {
        return Err(Refusal::Withdrawn(format!(
            "the delivery of job {} has expired",
            job.id
        )));
    }
    match job.status {
        JobStatus::Paused => Err(Refusal::Paused(format!(
            "the sender paused delivery {}; it resumes when they let it",
            job.id
        ))),
        JobStatus::Aborted => Err(Refusal::Aborted(format!(
            "the sender withdrew delivery {}",
            job.id
        ))),
        _ => Ok(()),
    }
}

/// May `caller` invite `email` by sending it a delivery (a new address
/// becomes an invited account)? Staff only: a collaborator who may upload
/// sends to people who already have an account here.
pub fn invite_by_sending(caller: &Caller, email: &str) -> Result<(), Refusal> {
    if caller.role.is_staff() {
        Ok(())
    } else {
        Err(Refusal::Forbidden(format!(
            "{email} has no account on this appliance; collaborators send only to people who have one \
             (ask the facility to invite them)"
        )))
    }
}

/// May `caller` upload the files of upload job `job` (from a browser), or
/// ask where an upload stands? Its sender, while the job may run; once it
/// is done its sender may still ask (every file is in place). Nobody else
/// learns it exists.
pub fn upload(caller: &Caller, job: &JobFacts, now: i64) -> Result<(), Refusal> {
    if job.kind != JobKind::Upload || job.owner != caller.user {
        return Err(Refusal::NotFound(format!("there is no upload {}", job.id)));
    }
    if job.status == JobStatus::Done && !job.purged {
        return Ok(());
    }
    run(caller, job, now)
}

/// Rights on a share, from its grants (admins hold both on every share).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Access {
    pub read: bool,
    pub write: bool,
}

/// May someone with `access` read (or, with `write`, write) share `name`?
/// Someone with no grant at all is not told the share exists.
pub fn use_share(access: Access, name: &str, write: bool) -> Result<(), Refusal> {
    if !access.read && !access.write {
        return Err(Refusal::NotFound(format!(
            "there is no share named {name:?}"
        )));
    }
    let ok = if write { access.write } else { access.read };
    if ok {
        Ok(())
    } else {
        Err(Refusal::Forbidden(format!(
            "you may not {} share {name:?}",
            if write { "write to" } else { "read from" }
        )))
    }
}

/// Things only admins do: users, shares, settings, the appliance's status,
/// log and audit trail.
pub fn admin(caller: &Caller, what: &str) -> Result<(), Refusal> {
    if caller.role == Role::Admin {
        Ok(())
    } else {
        Err(Refusal::Forbidden(format!("{what} is for admins")))
    }
}

/// What a delivery is made of: files its sender uploads, or files
/// already in a share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sending {
    Uploads,
    FromShares,
}

/// May `caller` send a delivery of this kind? The facility's staff send
/// anything. A collaborator sends only what they upload, and only into a
/// share they may write to (checked where the destination is resolved,
/// which refuses anyone without the grant): handing on files of the
/// facility's shares is staff's.
pub fn send(caller: &Caller, sending: Sending) -> Result<(), Refusal> {
    if caller.role.is_staff() || sending == Sending::Uploads {
        Ok(())
    } else {
        Err(Refusal::Forbidden(
            "collaborators receive deliveries; they may send only files they upload into a share they may write to"
                .into(),
        ))
    }
}

/// May `caller` look up other people's addresses (recipient completion)?
/// Staff only: a collaborator must not learn who else works with the
/// facility.
pub fn look_up_people(caller: &Caller) -> Result<(), Refusal> {
    if caller.role.is_staff() {
        Ok(())
    } else {
        Err(Refusal::Forbidden(
            "looking up people is for the facility's staff".into(),
        ))
    }
}

/// What the rules need of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account<'a> {
    pub email: &'a str,
    pub role: Role,
    pub status: UserStatus,
    pub kind: AccountKind,
}

/// Why an account may not sign in, or a key not be used or made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccountRefusal {
    #[error("the account {0} is disabled")]
    Disabled(String),
    #[error(
        "the account {0} is not active yet: it was invited and has not chosen a password (make automation \
         a service account instead: ferryd admin user add EMAIL --service)"
    )]
    NotActive(String),
    #[error("{0} is a service account: it signs in only with API keys, never with a password")]
    ServiceAccount(String),
    #[error(
        "the web admin is for the facility's staff; {0} receives deliveries with the Ferry client"
    )]
    NotStaff(String),
}

/// May this account sign in with a password (web or `ferry login`)?
pub fn password_sign_in(a: &Account<'_>) -> Result<(), AccountRefusal> {
    if a.kind == AccountKind::Service {
        return Err(AccountRefusal::ServiceAccount(a.email.to_owned()));
    }
    key_use(a)
}

/// May this account use an API key it holds?
pub fn key_use(a: &Account<'_>) -> Result<(), AccountRefusal> {
    match a.status {
        UserStatus::Disabled => Err(AccountRefusal::Disabled(a.email.to_owned())),
        UserStatus::Invited if a.kind == AccountKind::Person => {
            Err(AccountRefusal::NotActive(a.email.to_owned()))
        }
        _ => Ok(()),
    }
}

/// May a key be made for this account? Only when it could be used: a key
/// for a disabled or not-yet-active account is refused when it is made,
/// not later when it fails.
pub fn key_mint(a: &Account<'_>) -> Result<(), AccountRefusal> {
    key_use(a)
}

/// May this account sign in to the web pages at all? Any person with a
/// password: collaborators land on their deliveries, staff on the admin.
pub fn web_sign_in(a: &Account<'_>) -> Result<(), AccountRefusal> {
    password_sign_in(a)
}

/// May this account open the web admin's (staff) pages?
pub fn web_admin(a: &Account<'_>) -> Result<(), AccountRefusal> {
    password_sign_in(a)?;
    if a.role.is_staff() {
        Ok(())
    } else {
        Err(AccountRefusal::NotStaff(a.email.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: Caller = Caller {
        user: UserId(1),
        role: Role::Admin,
    };
    const SENDER: Caller = Caller {
        user: UserId(2),
        role: Role::Employee,
    };
    const RECIPIENT: Caller = Caller {
        user: UserId(3),
        role: Role::Collaborator,
    };
    const STRANGER: Caller = Caller {
        user: UserId(4),
        role: Role::Collaborator,
    };
    const COLLEAGUE: Caller = Caller {
        user: UserId(5),
        role: Role::Employee,
    };

    fn download(status: JobStatus) -> JobFacts {
        JobFacts {
            id: JobId(9),
            kind: JobKind::Download,
            owner: SENDER.user,
            recipient: Some(RECIPIENT.user),
            status,
            purged: false,
            held_by: None,
            cap: None,
            next_retry_at: None,
            expired: false,
        }
    }

    /// Plays `action` by `who` and applies what the store would keep.
    fn play(job: &mut JobFacts, who: &Caller, action: JobAction) -> Result<(), Refusal> {
        let party = act(who, job, action)?;
        job.held_by = hold_after(job, action, party);
        job.status = match action {
            JobAction::Pause => JobStatus::Paused,
            JobAction::Resume | JobAction::Retry => JobStatus::Queued,
            JobAction::Abort => JobStatus::Aborted,
            _ => job.status,
        };
        Ok(())
    }

    #[test]
    fn strangers_and_colleagues_do_not_see_other_peoples_jobs() {
        let job = download(JobStatus::Queued);
        for who in [STRANGER, COLLEAGUE] {
            assert!(matches!(see(&who, &job), Err(Refusal::NotFound(_))));
            assert!(matches!(
                act(&who, &job, JobAction::Abort),
                Err(Refusal::NotFound(_))
            ));
            assert!(actions(&who, &job).is_empty());
        }
        assert_eq!(see(&ADMIN, &job), Ok(Party::Admin));
        assert_eq!(see(&RECIPIENT, &job), Ok(Party::Recipient));
    }

    #[test]
    fn only_an_admin_marks_a_job_urgent_and_only_while_it_can_still_run() {
        let job = download(JobStatus::Running);
        assert_eq!(act(&ADMIN, &job, JobAction::Urgent), Ok(Party::Admin));
        for who in [SENDER, RECIPIENT] {
            let refused = act(&who, &job, JobAction::Urgent);
            assert!(
                matches!(refused, Err(Refusal::Forbidden(ref m)) if m.contains("only an admin"))
            );
            assert!(!actions(&who, &job).contains(&JobAction::Urgent));
        }
        assert!(actions(&ADMIN, &job).contains(&JobAction::Urgent));
        assert!(matches!(
            act(&ADMIN, &download(JobStatus::Done), JobAction::Urgent),
            Err(Refusal::Conflict(_))
        ));
    }

    #[test]
    fn only_the_recipient_fetches_a_delivery_and_others_learn_nothing() {
        let job = download(JobStatus::Queued);
        assert_eq!(fetch(&RECIPIENT, &job), Ok(()));
        // Admins and the sender may see the job, but not take its files in
        // the recipient's place; nobody else learns it exists.
        for who in [ADMIN, SENDER, STRANGER, COLLEAGUE] {
            assert!(matches!(fetch(&who, &job), Err(Refusal::NotFound(_))));
        }
        // Not an upload, even one's own.
        let mut upload = download(JobStatus::Queued);
        upload.kind = JobKind::Upload;
        upload.recipient = None;
        assert!(matches!(fetch(&SENDER, &upload), Err(Refusal::NotFound(_))));
        // Done: fetched again while it lives; not once expired, withdrawn,
        // paused or aborted.
        assert_eq!(fetch(&RECIPIENT, &download(JobStatus::Done)), Ok(()));
        let mut expired = download(JobStatus::Done);
        expired.expired = true;
        assert!(matches!(
            fetch(&RECIPIENT, &expired),
            Err(Refusal::Withdrawn(_))
        ));
        let mut purged = download(JobStatus::Queued);
        purged.purged = true;
        assert!(matches!(
            fetch(&RECIPIENT, &purged),
            Err(Refusal::Withdrawn(_))
        ));
        assert!(matches!(
            fetch(&RECIPIENT, &download(JobStatus::Paused)),
            Err(Refusal::Paused(_))
        ));
        assert!(matches!(
            fetch(&RECIPIENT, &download(JobStatus::Aborted)),
            Err(Refusal::Aborted(_))
        ));
    }

    #[test]
    fn only_the_sender_uploads_and_asks_after_a_finished_upload() {
        let mut up = download(JobStatus::Queued);
        up.kind = JobKind::Upload;
        up.recipient = None;
        assert_eq!(upload(&SENDER, &up, 0), Ok(()));
        for who in [ADMIN, RECIPIENT, STRANGER, COLLEAGUE] {
            assert!(matches!(upload(&who, &up, 0), Err(Refusal::NotFound(_))));
        }
        up.status = JobStatus::Done;
        assert_eq!(upload(&SENDER, &up, 0), Ok(()));
        up.status = JobStatus::Aborted;
        assert!(matches!(upload(&SENDER, &up, 0), Err(Refusal::Aborted(_))));
        assert!(matches!(
            upload(&SENDER, &download(JobStatus::Queued), 0),
            Err(Refusal::NotFound(_))
        ));
    }

    #[test]
    fn a_recipient_cannot_undo_the_senders_abort() {
        // Hole 1 of the review: abort by the sender, retry by the recipient.
        let mut job = download(JobStatus::Running);
        play(&mut job, &SENDER, JobAction::Abort).unwrap();
        assert_eq!(job.held_by, Some(Party::Sender));
        assert!(matches!(
            play(&mut job, &RECIPIENT, JobAction::Retry),
            Err(Refusal::Forbidden(_))
        ));
        assert!(!actions(&RECIPIENT, &job).contains(&JobAction::Retry));
        // The sender may send it again.
        play(&mut job, &SENDER, JobAction::Retry).unwrap();
        assert_eq!((job.status, job.held_by), (JobStatus::Queued, None));
    }

    #[test]
    fn a_recipient_cannot_resume_an_admins_pause_nor_raise_an_admins_cap() {
        // Hole 2: an admin pauses and caps at 1M; the recipient resumes
        // and asks for 100G.
        let mut job = download(JobStatus::Queued);
        play(&mut job, &ADMIN, JobAction::Pause).unwrap();
        job.cap = set_rate(&ADMIN, &job, Some(1_000_000)).unwrap();
        assert!(matches!(
            play(&mut job, &RECIPIENT, JobAction::Resume),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            play(&mut job, &SENDER, JobAction::Resume),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            set_rate(&RECIPIENT, &job, Some(100_000_000_000)),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            set_rate(&RECIPIENT, &job, None),
            Err(Refusal::Forbidden(_))
        ));
        // Lowering is fine, and the cap stays the admin's: the recipient
        // cannot raise it back above the admin's later either.
        let lowered = set_rate(&RECIPIENT, &job, Some(500_000)).unwrap().unwrap();
        assert_eq!(lowered.set_by, Party::Admin);
        job.cap = Some(lowered);
        assert!(set_rate(&RECIPIENT, &job, Some(400_000)).is_ok());
        assert!(set_rate(&RECIPIENT, &job, Some(800_000)).is_err());
        play(&mut job, &ADMIN, JobAction::Resume).unwrap();
        assert_eq!(job.status, JobStatus::Queued);
    }

    #[test]
    fn a_recipient_pauses_and_resumes_their_own_pause() {
        let mut job = download(JobStatus::Running);
        play(&mut job, &RECIPIENT, JobAction::Pause).unwrap();
        assert_eq!(job.held_by, Some(Party::Recipient));
        assert!(actions(&RECIPIENT, &job).contains(&JobAction::Resume));
        play(&mut job, &RECIPIENT, JobAction::Resume).unwrap();
        // A cap of their own they may raise and clear.
        job.cap = set_rate(&RECIPIENT, &job, Some(1_000_000)).unwrap();
        assert_eq!(set_rate(&RECIPIENT, &job, None), Ok(None));
    }

    #[test]
    fn aborting_an_admins_pause_keeps_the_admins_hold() {
        let mut job = download(JobStatus::Running);
        play(&mut job, &ADMIN, JobAction::Pause).unwrap();
        play(&mut job, &SENDER, JobAction::Abort).unwrap();
        assert_eq!(job.held_by, Some(Party::Admin));
        assert!(play(&mut job, &SENDER, JobAction::Retry).is_err());
    }

    #[test]
    fn recipients_never_abort_or_purge_and_states_limit_everyone() {
        let job = download(JobStatus::Running);
        for a in [JobAction::Abort, JobAction::Purge] {
            assert!(matches!(
                act(&RECIPIENT, &job, a),
                Err(Refusal::Forbidden(_))
            ));
        }
        let done = download(JobStatus::Done);
        assert!(matches!(
            act(&ADMIN, &done, JobAction::Pause),
            Err(Refusal::Conflict(_))
        ));
        assert_eq!(actions(&SENDER, &done), vec![JobAction::Purge]);
        assert!(actions(&RECIPIENT, &done).is_empty());
        let failed = download(JobStatus::Failed);
        assert!(actions(&RECIPIENT, &failed).contains(&JobAction::Retry));
    }

    #[test]
    fn only_the_right_party_runs_a_job_and_only_when_it_may_move() {
        let now = 1_000;
        let job = download(JobStatus::Queued);
        assert!(run(&RECIPIENT, &job, now).is_ok());
        assert!(matches!(
            run(&SENDER, &job, now),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            run(&STRANGER, &job, now),
            Err(Refusal::NotFound(_))
        ));
        let mut failed = download(JobStatus::Failed);
        assert!(matches!(
            run(&RECIPIENT, &failed, now),
            Err(Refusal::Conflict(_))
        ));
        failed.next_retry_at = Some(now + 30);
        assert!(run(&RECIPIENT, &failed, now).is_err());
        failed.next_retry_at = Some(now);
        assert!(run(&RECIPIENT, &failed, now).is_ok());
        assert!(matches!(
            run(&RECIPIENT, &download(JobStatus::Done), now),
            Err(Refusal::Conflict(_))
        ));
        assert!(matches!(
            run(&RECIPIENT, &download(JobStatus::Aborted), now),
            Err(Refusal::Aborted(_))
        ));
        assert!(matches!(
            run(&RECIPIENT, &download(JobStatus::Paused), now),
            Err(Refusal::Paused(_))
        ));
        let mut expired = download(JobStatus::Queued);
        expired.expired = true;
        assert!(matches!(
            run(&RECIPIENT, &expired, now),
            Err(Refusal::Withdrawn(_))
        ));
        let mut purged = download(JobStatus::Queued);
        purged.purged = true;
        assert!(matches!(
            run(&RECIPIENT, &purged, now),
            Err(Refusal::Withdrawn(_))
        ));
    }

    #[test]
    fn shares_hide_themselves_from_people_without_a_grant() {
        let none = Access::default();
        assert!(matches!(
            use_share(none, "p", false),
            Err(Refusal::NotFound(_))
        ));
        let read = Access {
            read: true,
            write: false,
        };
        assert!(use_share(read, "p", false).is_ok());
        assert!(matches!(
            use_share(read, "p", true),
            Err(Refusal::Forbidden(_))
        ));
    }

    #[test]
    fn accounts_sign_in_and_use_keys_by_kind_and_status() {
        let person = Account {
            email: "ann@x.io",
            role: Role::Employee,
            status: UserStatus::Active,
            kind: AccountKind::Person,
        };
        assert!(password_sign_in(&person).is_ok());
        assert!(web_admin(&person).is_ok());
        let invited = Account {
            status: UserStatus::Invited,
            ..person.clone()
        };
        assert!(matches!(
            key_mint(&invited),
            Err(AccountRefusal::NotActive(_))
        ));
        let service = Account {
            kind: AccountKind::Service,
            ..person.clone()
        };
        assert!(key_mint(&service).is_ok());
        assert!(matches!(
            password_sign_in(&service),
            Err(AccountRefusal::ServiceAccount(_))
        ));
        assert!(web_admin(&service).is_err());
        let disabled = Account {
            status: UserStatus::Disabled,
            ..service
        };
        assert!(matches!(
            key_use(&disabled),
            Err(AccountRefusal::Disabled(_))
        ));
        let collaborator = Account {
            role: Role::Collaborator,
            ..person
        };
        assert!(matches!(
            web_admin(&collaborator),
            Err(AccountRefusal::NotStaff(_))
        ));
        let collaborator = Caller {
            user: UserId(1),
            role: Role::Collaborator,
        };
        assert!(send(&collaborator, Sending::FromShares).is_err());
        assert_eq!(send(&collaborator, Sending::Uploads), Ok(()));
        assert_eq!(send(&SENDER, Sending::FromShares), Ok(()));
        assert!(invite_by_sending(&collaborator, "new@x.io").is_err());
        assert_eq!(invite_by_sending(&SENDER, "new@x.io"), Ok(()));
    }
}
