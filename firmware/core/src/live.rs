//! The data sessions running now: the registry every service asks to stop,
//! re-pace or re-prioritise a transfer, and the limits on how many one
//! caller may run.
//!
//! A session is admitted only within the limits: at most one per job (a
//! newer session of the same job supersedes the older one, which is
//! stopped, so a client that reconnects after a network change does not
//! race its own ghost), a budget per user and one for the whole
//! appliance. The data plane implements [`SessionHandle`] for each
//! session; nothing here knows QUIC.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use ferry_domain::{JobId, JobKind, ShareId, UserId};
use ferry_engine::Snapshot;
use ferry_engine::handshake::PaceRequest;
use ferry_proto::{ErrorCode, Pace, Priority, Rate, SharePath};
use ferry_store::ApiKeyId;

/// What a service may do to a running session.
pub trait SessionHandle: Send + Sync {
    /// Ends the session, telling its peer why.
    fn stop(&self, code: ErrorCode, message: &str);
    /// Changes its pace at both ends at once.
    fn repace(&self, pace: Pace);
    /// The pace it runs at now.
    fn pace(&self) -> Pace;
    /// Moves a file up or down the queue.
    fn reprioritise(&self, path: &SharePath, priority: Priority);
    fn progress(&self) -> Snapshot;
    /// The most memory its windows and read-ahead may hold now, in bytes
    /// of window (the session's share of the appliance's budget).
    fn share_memory(&self, window: u64);
}

/// A session running now.
#[derive(Clone)]
pub struct LiveSession {
    pub session: u64,
    pub job: JobId,
    pub kind: JobKind,
    pub user: UserId,
    /// The share it reads or writes.
    pub share: Option<ShareId>,
    /// The API key its grant was made with.
    pub key: Option<ApiKeyId>,
    pub client: SocketAddr,
    pub port: u16,
    /// How its bytes travel.
    pub transport: ferry_proto::Transport,
    pub started: Instant,
    /// What its client asked for (a policy, a cap of its own).
    pub asked: PaceRequest,
    /// Its own pace: the site's policy and the lowest of the site's, the
    /// job's and its client's caps. Its part of the site rate may hold it
    /// lower still (see [`fair_rates`]).
    pub own: Pace,
    /// Its job is urgent: a cap from the bandwidth schedule spares it.
    pub urgent: bool,
    pub handle: Arc<dyn SessionHandle>,
}

impl std::fmt::Debug for LiveSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSession")
            .field("session", &self.session)
            .field("job", &self.job)
            .field("user", &self.user)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// How many sessions may run, and the memory they share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sessions one user runs at once.
    pub per_user: usize,
    /// Sessions the appliance runs at once.
    pub total: usize,
    /// Bytes of flow-control windows and read-ahead all sessions together
    /// may hold: each session holds up to its window in buffers and as
    /// much again read ahead, so a session counts twice its window.
    pub memory: u64,
    /// No session's window is made smaller than this (below it a transfer
    /// crawls); when the memory cannot give every session this much, a new
    /// session waits.
    pub min_window: u64,
    /// No session's window is larger than this (`max_window_mib`).
    pub max_window: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_user: 128,
            total: 256,
            memory: 2 << 30,
            min_window: 4 << 20,
            max_window: 256 << 20,
        }
    }
}

/// The window each of `sessions` sessions gets when `memory` is shared
/// fairly (each counts twice its window), within the bounds; `None` when
/// even the smallest window does not fit.
pub fn fair_window(limits: &Limits, sessions: usize) -> Option<u64> {
    let n = sessions.max(1) as u64;
    let share = limits.memory / (2 * n);
    (share >= limits.min_window).then(|| share.min(limits.max_window))
}

/// How `total` is shared among sessions that each want at most
/// `wants[i]` (`None`: as much as they can get): max-min fairness, so each
/// gets an equal part, and what a session capped lower leaves over goes to
/// the others. No total: everyone keeps what they want.
pub fn fair_rates(total: Option<Rate>, wants: &[Option<Rate>]) -> Vec<Option<Rate>> {
    let Some(total) = total else {
        return wants.to_vec();
    };
    let mut left = total.bits_per_sec();
    let mut shares: Vec<Option<u64>> = vec![None; wants.len()];
    // The smallest wants are met first; each is then out of the sharing.
    let mut order: Vec<usize> = (0..wants.len()).collect();
    order.sort_by_key(|&i| wants[i].map_or(u64::MAX, Rate::bits_per_sec));
    for (k, &i) in order.iter().enumerate() {
        let equal = left / (wants.len() - k) as u64;
        let got = wants[i].map_or(equal, |w| w.bits_per_sec().min(equal));
        shares[i] = Some(got);
        left -= got;
    }
    shares
        .into_iter()
        .map(|s| s.and_then(|b| Rate::from_bits_per_sec(b.max(1)).ok()))
        .collect()
}

/// Why a session was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Crowded {
    #[error("you are running {0} transfers already, the most one account may; one must end first")]
    User(usize),
    #[error("the appliance is running {0} transfers, the most it takes at once; try again shortly")]
    Appliance(usize),
    /// The transfers running now hold all the memory the appliance gives
    /// transfers (per account, half of it).
    #[error("the appliance's transfer memory is spoken for by {0} transfers; try again shortly")]
    Memory(usize),
}

crate::failing!(Crowded {
    Crowded::User(_) => (TooMany { retry_after: 10 }, TOO_MANY_SESSIONS),
    Crowded::Appliance(_) => (TooMany { retry_after: 10 }, TOO_MANY_SESSIONS),
    Crowded::Memory(_) => (TooMany { retry_after: 10 }, TOO_MANY_SESSIONS),
});

/// The cap on all sessions together, and whether urgent jobs are spared
/// it (they are when it comes from the bandwidth schedule).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SiteCap {
    pub rate: Option<Rate>,
    pub spares_urgent: bool,
    /// The schedule's rule that sets it (`mon-fri 09:00-19:00 200 Mbit/s`);
    /// `None`: the site rate.
    pub rule: Option<String>,
    /// When another cap takes over (Unix seconds); `None`: never.
    pub until: Option<i64>,
}

impl SiteCap {
    /// The cap in words, for the log and the dashboard: its rate, where
    /// it comes from and until when (in the appliance's time zone).
    pub fn words(&self) -> String {
        let rate = self.rate.map_or_else(
            || "no cap on all transfers together".to_owned(),
            |r| format!("all transfers together capped at {r}"),
        );
        let source = match &self.rule {
            Some(rule) => format!(" (schedule: {rule}; urgent jobs are spared)"),
            None if self.rate.is_some() => " (the site rate)".to_owned(),
            None => String::new(),
        };
        let until = self
            .until
            .and_then(|u| jiff::Timestamp::from_second(u).ok())
            .map(|t| {
                let z = t.to_zoned_datetime(jiff::tz::TimeZone::system());
                format!(" until {}", z.strftime("%a %H:%M:%S %Z"))
            })
            .unwrap_or_default();
        format!("{rate}{source}{until}")
    }
}

/// The registry.
#[derive(Default)]
pub struct LiveSessions {
    limits: Limits,
    running: Mutex<HashMap<u64, LiveSession>>,
    /// The cap on all sessions together.
    site_cap: Mutex<SiteCap>,
}

impl LiveSessions {
    /// The most sessions this node takes at once.
    pub fn most_sessions(&self) -> usize {
        self.limits.total
    }

    /// How many sessions run now.
    pub fn count(&self) -> usize {
        self.running().len()
    }
}

impl std::fmt::Debug for LiveSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSessions")
            .field("limits", &self.limits)
            .field("running", &self.running().len())
            .finish()
    }
}

/// A session's pace: the client's policy if it asked for one, else the
/// site's; the lowest of the site's cap, the job's and the client's.
pub fn pace_for(site: Pace, job_cap: Option<Rate>, asked: PaceRequest) -> Pace {
    Pace {
        policy: asked.policy.unwrap_or(site.policy),
        target: site.target,
    }
    .capped(job_cap)
    .capped(asked.rate)
}

impl LiveSessions {
    pub fn new(limits: Limits) -> Self {
        LiveSessions {
            limits,
            running: Mutex::default(),
            site_cap: Mutex::default(),
        }
    }

    fn running(&self) -> MutexGuard<'_, HashMap<u64, LiveSession>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a session within the limits; an older session of the same
    /// job is stopped (superseded) and counted out first. Every session's
    /// share of the memory is made fair again, the new one's included.
    /// Returns the ids it superseded.
    pub fn admit(&self, s: LiveSession) -> Result<Vec<u64>, Crowded> {
        let older: Vec<LiveSession> = {
            let mut running = self.running();
            let older: Vec<u64> = running
                .values()
                .filter(|o| o.job == s.job)
                .map(|o| o.session)
                .collect();
            let older: Vec<LiveSession> =
                older.iter().filter_map(|id| running.remove(id)).collect();
            let mine = running.values().filter(|o| o.user == s.user).count();
            // One account may fill half the memory, so others always find
            // room; everyone together, all of it.
            let own_memory = Limits {
                memory: self.limits.memory / 2,
                ..self.limits
            };
            let refusal = if mine >= self.limits.per_user {
                Some(Crowded::User(mine))
            } else if running.len() >= self.limits.total {
                Some(Crowded::Appliance(running.len()))
            } else if fair_window(&self.limits, running.len() + 1).is_none()
                || fair_window(&own_memory, mine + 1).is_none()
            {
                Some(Crowded::Memory(running.len()))
            } else {
                None
            };
            if let Some(refusal) = refusal {
                // Nothing changes for a session that is refused.
                for o in older {
                    running.insert(o.session, o);
                }
                return Err(refusal);
            }
            running.insert(s.session, s.clone());
            older
        };
        self.reshare();
        self.share_rate();
        for o in &older {
            o.handle.stop(
                ErrorCode::Superseded,
                &format!("session {} of job {} took its place", s.session, s.job),
            );
        }
        Ok(older.iter().map(|o| o.session).collect())
    }

    /// The session ended; the others may grow into its share.
    pub fn leave(&self, session: u64) {
        self.running().remove(&session);
        self.reshare();
        self.share_rate();
    }

    /// Sets the cap on all sessions together and re-paces them at once.
    pub fn set_site_rate(&self, rate: Option<Rate>) {
        self.set_site_cap(SiteCap {
            rate,
            ..SiteCap::default()
        });
    }

    /// Sets the cap on all sessions together, and whether urgent jobs are
    /// spared it, and re-paces them at once.
    pub fn set_site_cap(&self, cap: SiteCap) {
        *self.site_cap.lock().unwrap_or_else(|e| e.into_inner()) = cap;
        self.share_rate();
    }

    /// The cap on all sessions together.
    pub fn site_rate(&self) -> Option<Rate> {
        self.site_cap().rate
    }

    pub fn site_cap(&self) -> SiteCap {
        self.site_cap
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A job was marked urgent or not: its sessions are re-paced.
    pub fn set_urgent(&self, job: JobId, urgent: bool) {
        for s in self.running().values_mut().filter(|s| s.job == job) {
            s.urgent = urgent;
        }
        self.share_rate();
    }

    /// Gives every session its pace: its own, held to its fair part of the
    /// site rate. Only a session whose pace changes is told. Urgent jobs
    /// spared by the cap keep their own pace and take no part of it.
    fn share_rate(&self) {
        let all = self.list();
        let cap = self.site_cap();
        let spared = |s: &LiveSession| cap.spares_urgent && s.urgent;
        let sharing: Vec<&LiveSession> = all.iter().filter(|s| !spared(s)).collect();
        let wants: Vec<Option<Rate>> = sharing.iter().map(|s| s.own.target).collect();
        let shares = fair_rates(cap.rate, &wants);
        let paces = sharing
            .iter()
            .zip(shares)
            .map(|(s, share)| (*s, s.own.capped(share)))
            .chain(all.iter().filter(|s| spared(s)).map(|s| (s, s.own)));
        for (s, pace) in paces {
            if s.handle.pace() != pace {
                s.handle.repace(pace);
            }
        }
    }

    /// Gives every session its fair share of the memory: the appliance's
    /// split among all sessions, and no more than half of it to the
    /// sessions of one account.
    fn reshare(&self) {
        let all = self.list();
        let per_user_memory = Limits {
            memory: self.limits.memory / 2,
            ..self.limits
        };
        for s in &all {
            let theirs = all.iter().filter(|o| o.user == s.user).count();
            let share = fair_window(&self.limits, all.len())
                .unwrap_or(self.limits.min_window)
                .min(fair_window(&per_user_memory, theirs).unwrap_or(self.limits.min_window));
            s.handle.share_memory(share);
        }
    }

    /// Every session, by id.
    pub fn list(&self) -> Vec<LiveSession> {
        let mut all: Vec<LiveSession> = self.running().values().cloned().collect();
        all.sort_by_key(|s| s.session);
        all
    }

    pub fn of_job(&self, job: JobId) -> Vec<LiveSession> {
        self.list().into_iter().filter(|s| s.job == job).collect()
    }

    /// How a job's running session travels, if it runs.
    pub fn transport_of(&self, job: JobId) -> Option<ferry_proto::Transport> {
        self.running()
            .values()
            .find(|s| s.job == job)
            .map(|s| s.transport)
    }

    /// The pace of a job's running session, if it runs.
    pub fn pace_of(&self, job: JobId) -> Option<Pace> {
        self.running()
            .values()
            .find(|s| s.job == job)
            .map(|s| s.handle.pace())
    }

    /// Stops the sessions `which` picks, telling their peers why; returns
    /// how many.
    pub fn stop_where(
        &self,
        which: impl Fn(&LiveSession) -> bool,
        code: ErrorCode,
        message: &str,
    ) -> usize {
        self.stop_jobs_where(which, code, message).len()
    }

    /// Stops the sessions `which` picks, telling their peers why; returns
    /// the jobs they ran (for a revocation to hold them).
    pub fn stop_jobs_where(
        &self,
        which: impl Fn(&LiveSession) -> bool,
        code: ErrorCode,
        message: &str,
    ) -> Vec<JobId> {
        let hit: Vec<LiveSession> = self
            .running()
            .values()
            .filter(|s| which(s))
            .cloned()
            .collect();
        for s in &hit {
            s.handle.stop(code, message);
        }
        hit.iter().map(|s| s.job).collect()
    }

    pub fn stop_job(&self, job: JobId, code: ErrorCode, message: &str) -> usize {
        self.stop_where(|s| s.job == job, code, message)
    }

    /// Applies a job's cap (and the site's pace) to its running sessions
    /// at once.
    pub fn repace_job(&self, job: JobId, cap: Option<Rate>, site: Pace) {
        for s in self.running().values_mut().filter(|s| s.job == job) {
            s.own = pace_for(site, cap, s.asked);
        }
        self.share_rate();
    }

    /// Sends a priority change to a job's running sessions.
    pub fn reprioritise(&self, job: JobId, paths: &[SharePath], priority: Priority) {
        for s in self.of_job(job) {
            for p in paths {
                s.handle.reprioritise(p, priority);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A session that records what was done to it.
    #[derive(Default)]
    pub(crate) struct Recorded {
        pub stopped: Mutex<Option<(ErrorCode, String)>>,
        pub paces: Mutex<Vec<Pace>>,
        pub moved: Mutex<Vec<(SharePath, Priority)>>,
        pub done: AtomicBool,
        pub memory: Mutex<Option<u64>>,
    }

    impl SessionHandle for Recorded {
        fn stop(&self, code: ErrorCode, message: &str) {
            *self.stopped.lock().unwrap() = Some((code, message.to_owned()));
        }
        fn repace(&self, pace: Pace) {
            self.paces.lock().unwrap().push(pace);
        }
        fn pace(&self) -> Pace {
            self.paces
                .lock()
                .unwrap()
                .last()
                .copied()
                .unwrap_or_default()
        }
        fn reprioritise(&self, path: &SharePath, priority: Priority) {
            self.moved.lock().unwrap().push((path.clone(), priority));
        }
        fn progress(&self) -> Snapshot {
            Snapshot::default()
        }
        fn share_memory(&self, window: u64) {
            *self.memory.lock().unwrap() = Some(window);
        }
    }

    pub(crate) fn session(id: u64, job: i64, user: i64, handle: Arc<Recorded>) -> LiveSession {
        LiveSession {
            session: id,
            job: JobId(job),
            kind: JobKind::Download,
            user: UserId(user),
            share: Some(ShareId(1)),
            key: None,
            client: "192.0.2.1:5000".parse().unwrap(),
            port: 45190,
            transport: ferry_proto::Transport::Quic,
            started: Instant::now(),
            asked: PaceRequest::default(),
            own: Pace::default(),
            urgent: false,
            handle,
        }
    }

    fn rate(r: &str) -> Rate {
        r.parse().unwrap()
    }

    #[test]
    fn the_site_rate_is_shared_equally_and_what_one_leaves_goes_to_the_others() {
        let none = fair_rates(None, &[None, Some(rate("10M"))]);
        assert_eq!(none, vec![None, Some(rate("10M"))]);
        let equal = fair_rates(Some(rate("300M")), &[None, None, None]);
        assert_eq!(equal, vec![Some(rate("100M")); 3]);
        // One is capped at 50M by its job: the other two share the rest.
        let left = fair_rates(Some(rate("300M")), &[None, Some(rate("50M")), None]);
        assert_eq!(
            left,
            vec![Some(rate("125M")), Some(rate("50M")), Some(rate("125M"))]
        );
        // Wants above the equal part are held to it.
        let held = fair_rates(Some(rate("100M")), &[Some(rate("1G")), Some(rate("80M"))]);
        assert_eq!(held, vec![Some(rate("50M")), Some(rate("50M"))]);
        assert!(fair_rates(Some(rate("1G")), &[]).is_empty());
    }

    #[test]
    fn sessions_are_repaced_as_they_come_and_go_under_a_site_rate() {
        let live = LiveSessions::new(Limits::default());
        live.set_site_rate(Some(rate("300M")));
        let (a, b) = (Arc::new(Recorded::default()), Arc::new(Recorded::default()));
        live.admit(session(1, 1, 1, a.clone())).unwrap();
        assert_eq!(a.pace().target, Some(rate("300M")));
        live.admit(session(2, 2, 2, b.clone())).unwrap();
        assert_eq!(a.pace().target, Some(rate("150M")));
        assert_eq!(b.pace().target, Some(rate("150M")));
        // A job capped below its part leaves the rest to the other.
        live.repace_job(JobId(2), Some(rate("100M")), Pace::default());
        assert_eq!(a.pace().target, Some(rate("200M")));
        assert_eq!(b.pace().target, Some(rate("100M")));
        live.leave(2);
        assert_eq!(a.pace().target, Some(rate("300M")));
        // No site rate: the session's own pace (none) again.
        let told = a.paces.lock().unwrap().len();
        live.set_site_rate(None);
        assert_eq!(a.pace().target, None);
        assert_eq!(a.paces.lock().unwrap().len(), told + 1);
    }

    #[test]
    fn a_scheduled_cap_spares_urgent_jobs_and_a_plain_site_rate_does_not() {
        let live = LiveSessions::new(Limits::default());
        let (a, b) = (Arc::new(Recorded::default()), Arc::new(Recorded::default()));
        live.admit(session(1, 1, 1, a.clone())).unwrap();
        live.admit(session(2, 2, 2, b.clone())).unwrap();
        live.set_urgent(JobId(2), true);
        live.set_site_cap(SiteCap {
            rate: Some(rate("100M")),
            spares_urgent: true,
            ..SiteCap::default()
        });
        // The urgent one runs at its own pace; the other has all the cap.
        assert_eq!(a.pace().target, Some(rate("100M")));
        assert_eq!(b.pace().target, None);
        // No longer urgent: it shares the cap again, at once.
        live.set_urgent(JobId(2), false);
        assert_eq!(a.pace().target, Some(rate("50M")));
        assert_eq!(b.pace().target, Some(rate("50M")));
        live.set_urgent(JobId(2), true);
        live.set_site_rate(Some(rate("100M")));
        assert_eq!(b.pace().target, Some(rate("50M")));
    }

    #[test]
    fn a_newer_session_of_a_job_supersedes_the_older() {
        let live = LiveSessions::new(Limits::default());
        let first = Arc::new(Recorded::default());
        live.admit(session(1, 7, 1, first.clone())).unwrap();
        let second = Arc::new(Recorded::default());
        assert_eq!(
            live.admit(session(2, 7, 1, second.clone())).unwrap(),
            vec![1]
        );
        let stopped = first.stopped.lock().unwrap().clone().unwrap();
        assert_eq!(stopped.0, ErrorCode::Superseded);
        assert!(second.stopped.lock().unwrap().is_none());
        assert_eq!(live.list().len(), 1);
    }

    #[test]
    fn memory_is_shared_fairly_and_one_account_takes_half_at_most() {
        let mib = 1 << 20;
        let limits = Limits {
            per_user: 100,
            total: 100,
            memory: 64 * mib,
            min_window: 4 * mib,
            max_window: 16 * mib,
        };
        assert_eq!(fair_window(&limits, 1), Some(16 * mib));
        assert_eq!(fair_window(&limits, 4), Some(8 * mib));
        assert_eq!(fair_window(&limits, 8), Some(4 * mib));
        assert_eq!(fair_window(&limits, 9), None);
        let live = LiveSessions::new(limits);
        let first = Arc::new(Recorded::default());
        live.admit(session(1, 1, 1, first.clone())).unwrap();
        assert_eq!(*first.memory.lock().unwrap(), Some(16 * mib));
        let mine: Vec<_> = (2..=4)
            .map(|i| {
                let h = Arc::new(Recorded::default());
                live.admit(session(i, i as i64, 1, h.clone())).unwrap();
                h
            })
            .collect();
        // Four sessions of one account: half the memory among them.
        assert_eq!(*first.memory.lock().unwrap(), Some(4 * mib));
        assert_eq!(
            live.admit(session(5, 5, 1, Arc::new(Recorded::default()))),
            Err(Crowded::Memory(4))
        );
        // Someone else still gets in, and their session is larger.
        let other = Arc::new(Recorded::default());
        live.admit(session(6, 6, 2, other.clone())).unwrap();
        assert_eq!(*other.memory.lock().unwrap(), Some(6_710_886));
        live.leave(1);
        assert!(mine.iter().all(|h| h.memory.lock().unwrap().is_some()));
    }

    #[test]
    fn one_user_and_the_appliance_each_have_a_budget() {
        let live = LiveSessions::new(Limits {
            per_user: 2,
            total: 3,
            ..Limits::default()
        });
        let h = || Arc::new(Recorded::default());
        live.admit(session(1, 1, 1, h())).unwrap();
        live.admit(session(2, 2, 1, h())).unwrap();
        assert_eq!(live.admit(session(3, 3, 1, h())), Err(Crowded::User(2)));
        live.admit(session(4, 4, 2, h())).unwrap();
        assert_eq!(
            live.admit(session(5, 5, 3, h())),
            Err(Crowded::Appliance(3))
        );
        live.leave(1);
        live.admit(session(7, 7, 3, h())).unwrap();
        // Superseding its own job's session is within the user's budget.
        live.admit(session(8, 2, 1, h())).unwrap();
        assert_eq!(live.list().len(), 3);
    }

    #[test]
    fn a_refused_session_changes_nothing_not_even_for_its_jobs_older_one() {
        let live = LiveSessions::new(Limits {
            per_user: 1,
            total: 10,
            ..Limits::default()
        });
        let theirs = Arc::new(Recorded::default());
        live.admit(session(1, 5, 2, theirs.clone())).unwrap();
        live.admit(session(2, 1, 1, Arc::new(Recorded::default())))
            .unwrap();
        // User 1 is at their limit: their session of job 5 is refused, and
        // user 2's session of it goes on.
        assert_eq!(
            live.admit(session(3, 5, 1, Arc::new(Recorded::default()))),
            Err(Crowded::User(1))
        );
        assert!(theirs.stopped.lock().unwrap().is_none());
        assert_eq!(live.of_job(JobId(5)).len(), 1);
    }

    #[test]
    fn stopping_repacing_and_moving_files_reach_the_sessions_of_a_job() {
        let live = LiveSessions::new(Limits::default());
        let a = Arc::new(Recorded::default());
        let b = Arc::new(Recorded::default());
        live.admit(session(1, 1, 1, a.clone())).unwrap();
        live.admit(session(2, 2, 1, b.clone())).unwrap();
        let site = Pace {
            policy: ferry_proto::Policy::Fair,
            target: Some("1G".parse().unwrap()),
        };
        live.repace_job(JobId(1), Some("100M".parse().unwrap()), site);
        assert_eq!(a.pace().target, Some("100M".parse().unwrap()));
        assert!(b.paces.lock().unwrap().is_empty());
        live.reprioritise(
            JobId(2),
            &[SharePath::parse("a.mov").unwrap()],
            Priority::HIGH,
        );
        assert_eq!(b.moved.lock().unwrap().len(), 1);
        assert_eq!(live.stop_job(JobId(2), ErrorCode::Aborted, "aborted"), 1);
        assert!(b.stopped.lock().unwrap().is_some());
        assert!(a.stopped.lock().unwrap().is_none());
        assert!(!a.done.load(Ordering::Relaxed));
    }

    #[test]
    fn a_sessions_pace_is_the_lowest_cap_with_the_clients_policy() {
        let site = Pace {
            policy: ferry_proto::Policy::Fair,
            target: Some("1G".parse().unwrap()),
        };
        let asked = PaceRequest {
            policy: Some(ferry_proto::Policy::Fixed),
            rate: Some("300M".parse().unwrap()),
        };
        let p = pace_for(site, Some("500M".parse().unwrap()), asked);
        assert_eq!(p.policy, ferry_proto::Policy::Fixed);
        assert_eq!(p.target, Some("300M".parse().unwrap()));
        let p = pace_for(site, Some("100M".parse().unwrap()), asked);
        assert_eq!(p.target, Some("100M".parse().unwrap()));
    }
}
