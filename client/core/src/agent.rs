//! The recipient's agent: finds the deliveries addressed to this user and
//! receives each into `DIR/<delivery name>/`, resuming after any
//! interruption, and picks up this computer's unfinished uploads too.
//! `ferry agent`, `ferry pull` and the desktop app all run it; they differ
//! only in when it stops and in how they show its events.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_api::{JobInfo, JobStatus, codes};
use ferry_domain::agent::{self, Vanished};
use ferry_engine::{FileEvent, Progress, StopSignal};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::api::Api;
use crate::deliver::Manifest;
use crate::error::ClientError;
use crate::transfer::{self, Options, Report};

/// When the agent stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Never: wait for new deliveries (`ferry agent`).
    Stopped,
    /// When nothing is left to receive (`ferry pull`).
    Idle,
    /// When this job is complete (`ferry pull JOB`).
    Job(i64),
}

/// The counters of a job's current attempt (replaced at each attempt).
pub type ProgressSlot = Arc<std::sync::Mutex<Option<Arc<Progress>>>>;

/// What the agent tells whoever shows it.
#[derive(Debug, Clone)]
pub enum AgentEvent {
    Started {
        job: Box<JobInfo>,
        into: PathBuf,
        progress: ProgressSlot,
    },
    File {
        job: i64,
        event: FileEvent,
    },
    Completed {
        job: i64,
        report: Report,
    },
    /// It will try again by itself.
    Interrupted {
        job: i64,
        error: String,
        retry_in: Duration,
    },
    /// The sender withdrew it (aborted, purged, expired): not resumed.
    Withdrawn {
        job: i64,
        reason: String,
    },
    /// The appliance could not be asked; the agent keeps trying.
    Unreachable {
        error: String,
        retry_in: Duration,
    },
    /// The sender paused it; it resumes when they resume it.
    Paused {
        job: i64,
    },
    UploadResumed {
        job: i64,
    },
    UploadDone {
        job: i64,
        report: Report,
    },
}

#[derive(Debug, Clone)]
pub struct Agent {
    pub api: Api,
    /// Deliveries land in `into/<delivery name>/`.
    pub into: PathBuf,
    /// Jobs received at once.
    pub concurrency: usize,
    /// How often to look for new deliveries.
    pub poll: Duration,
    /// One attempt per job, no waiting for uploads still running.
    pub once: bool,
    pub stop: StopSignal,
    /// The policy and cap asked for each download.
    pub pace: ferry_engine::handshake::PaceRequest,
    /// Which transports downloads may use.
    pub transport: crate::reach::Choice,
}

/// What became of the jobs the agent ran.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub completed: Vec<i64>,
    pub withdrawn: Vec<i64>,
    pub failed: Vec<(i64, String)>,
}

/// A folder name from a delivery name: one component, no surprises.
pub fn folder_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | ':') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim().trim_matches('.').to_owned();
    if cleaned.is_empty() {
        "delivery".into()
    } else {
        cleaned
    }
}

fn withdrawn(e: &ClientError) -> bool {
    matches!(
        e.code(),
        Some(codes::JOB_WITHDRAWN) | Some(codes::JOB_ABORTED)
    )
}

type Outcome = (i64, bool, Result<Report, ClientError>);

impl Agent {
    /// Runs until `until`, sending events to `events`.
    pub async fn run(
        &self,
        until: Until,
        events: mpsc::UnboundedSender<AgentEvent>,
    ) -> Result<Summary, ClientError> {
        let mut st = State::default();
        // Uploads this computer started and did not finish.
        if until == Until::Stopped || until == Until::Idle {
            for manifest in Manifest::pending(self.api.server()) {
                let job = manifest.job;
                match self.api.job(job).await {
                    Ok(d) if !matches!(d.job.status.as_str(), "done" | "aborted") => {
                        let _ = events.send(AgentEvent::UploadResumed { job });
                        let opts = self.options(job, &events, None);
                        let api = self.api.clone();
                        st.active.insert(job);
                        st.running
                            .spawn(async move { (job, true, manifest.resume(&api, &opts).await) });
                    }
                    Ok(_) | Err(_) => manifest.remove(),
                }
            }
        }
        let mut unreachable_for = 0u32;
        loop {
            if self.stop.is_stopped() {
                break;
            }
            log::debug!("looking for deliveries ({} running)", st.active.len());
            let candidates = match self.candidates(until).await {
                Ok(c) => {
                    unreachable_for = 0;
                    c
                }
                Err(e) if withdrawn(&e) => {
                    if let Until::Job(job) = until {
                        let _ = events.send(AgentEvent::Withdrawn {
                            job,
                            reason: e.to_string(),
                        });
                        st.summary.withdrawn.push(job);
                        break;
                    }
                    Vec::new()
                }
                Err(e) if e.is_transient() => {
                    unreachable_for += 1;
                    let wait = Duration::from_secs(2u64.pow(unreachable_for.min(5)));
                    let _ = events.send(AgentEvent::Unreachable {
                        error: e.to_string(),
                        retry_in: wait,
                    });
                    self.wait(wait, &mut st, &events).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let others = self.stop_withdrawn(&candidates, &mut st).await;
            Self::stop_orphaned(candidates.iter().chain(&others), &mut st);
            self.explain_vanished(&candidates, &mut st, &events).await;
            // Done? Decided before starting anything new, so a job that just
            // completed is not started again.
            let finished = match until {
                Until::Stopped => false,
                Until::Idle => {
                    st.active.is_empty() && st.started_any && (candidates.is_empty() || self.once)
                }
                Until::Job(id) => {
                    !st.active.contains(&id)
                        && (st.summary.completed.contains(&id)
                            || st.summary.withdrawn.contains(&id)
                            || (self.once && st.tried.contains_key(&id)))
                }
            };
            if finished || (until == Until::Idle && candidates.is_empty() && st.active.is_empty()) {
                break;
            }
            let now = Instant::now();
            for job in &candidates {
                if st.active.len() >= self.concurrency {
                    break;
                }
                if st.active.contains(&job.id)
                    || st.ignored.contains(&job.id)
                    || st.summary.completed.contains(&job.id)
                    || st.not_before.get(&job.id).is_some_and(|t| *t > now)
                    || (self.once && st.tried.contains_key(&job.id))
                {
                    continue;
                }
                let into = self.into.join(folder_name(
                    job.delivery_name.as_deref().unwrap_or(&job.name),
                ));
                let slot: ProgressSlot = Arc::default();
                let mut opts = self.options(job.id, &events, Some(slot.clone()));
                let job_stop = StopSignal::new();
                opts.stop = job_stop.clone();
                st.stops.insert(job.id, job_stop.clone());
                let global = self.stop.clone();
                *st.tried.entry(job.id).or_default() += 1;
                st.active.insert(job.id);
                st.started_any = true;
                st.watched.remove(&job.id);
                let _ = events.send(AgentEvent::Started {
                    job: Box::new(job.clone()),
                    into: into.clone(),
                    progress: slot,
                });
                let (api, id, delivery) = (self.api.clone(), job.id, job.delivery);
                st.running.spawn(async move {
                    let download = transfer::download(&api, id, &into, &opts);
                    tokio::pin!(download);
                    let result = tokio::select! {
                        r = &mut download => r,
                        () = global.stopped() => {
                            let (code, message) = global.reason();
                            job_stop.stop(code, message);
                            download.await
                        }
                    };
                    // What arrived, as the appliance delivered it: for
                    // `ferry verify` and `b3sum -c` later. The files are in
                    // place whether or not the manifest could be had.
                    if let (Ok(_), Some(delivery)) = (&result, delivery)
                        && let Err(e) = crate::manifest::keep(&api, delivery, &into).await
                    {
                        log::warn!("delivery {delivery}: no manifest kept beside the files: {e}");
                    }
                    (id, false, result)
                });
            }
            self.wait(self.poll, &mut st, &events).await;
        }
        st.running.abort_all();
        Ok(st.summary)
    }

    fn options(
        &self,
        job: i64,
        events: &mpsc::UnboundedSender<AgentEvent>,
        progress: Option<ProgressSlot>,
    ) -> Options {
        let (file_tx, mut file_rx) = mpsc::unbounded_channel();
        let forward = events.clone();
        tokio::spawn(async move {
            while let Some(event) = file_rx.recv().await {
                if forward.send(AgentEvent::File { job, event }).is_err() {
                    return;
                }
            }
        });
        let on_attempt: Arc<dyn Fn(Arc<Progress>) + Send + Sync> = match progress {
            Some(slot) => {
                Arc::new(move |p| *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(p))
            }
            None => Arc::new(|_| {}),
        };
        Options {
            // The agent does its own retrying, with the appliance's say.
            retries: 0,
            events: Some(file_tx),
            on_attempt,
            stop: self.stop.clone(),
            pace: self.pace,
            transport: self.transport,
            ..Options::default()
        }
    }

    async fn candidates(&self, until: Until) -> Result<Vec<JobInfo>, ClientError> {
        match until {
            Until::Job(id) => {
                let detail = self.api.job(id).await?;
                match detail.job.status.as_str() {
                    "aborted" => Err(ClientError::Api {
                        status: 409,
                        code: codes::JOB_ABORTED.into(),
                        message: format!("job {id} was aborted by its sender"),
                    }),
                    "paused" => Ok(Vec::new()),
                    _ => Ok(vec![detail.job]),
                }
            }
            _ => Ok(self.api.jobs("runnable=true").await?.jobs),
        }
    }

    /// Running jobs the appliance no longer offers (aborted, paused,
    /// withdrawn): their sessions are stopped from here. The appliance ends
    /// them too, but its close can be lost on a congested path, and the
    /// control plane's word should not wait for an idle timeout.
    /// Returns the other running jobs as the appliance shows them.
    async fn stop_withdrawn(&self, candidates: &[JobInfo], st: &mut State) -> Vec<JobInfo> {
        let mut others = Vec::new();
        let running: Vec<i64> = st
            .active
            .iter()
            .copied()
            .filter(|id| !candidates.iter().any(|j| j.id == *id))
            .collect();
        for job in running {
            let why = match self.api.job(job).await {
                Err(e) if withdrawn(&e) => e.to_string(),
                Ok(d) if agent::stop_ours(d.job.status) => {
                    format!("job {job} was {} on the appliance", d.job.status)
                }
                Ok(d) => {
                    others.push(d.job);
                    continue;
                }
                Err(_) => continue,
            };
            if let Some(stop) = st.stops.get(&job) {
                stop.stop(ferry_proto::ErrorCode::Aborted, why);
            }
        }
        others
    }

    /// Sessions the appliance no longer knows: it shows the job as queued
    /// or failed (not running) while a session of ours still waits on it,
    /// for longer than a session takes to start. That happens when the
    /// appliance was killed and restarted: the old session's packets meet
    /// a new endpoint whose resets do not match, so only the idle timeout
    /// would end it, and a pipelined download may sit waiting on a stream
    /// for the rest of the upload. Stopped here, the job starts again at
    /// once and resumes from its checkpoint.
    fn stop_orphaned<'a>(jobs: impl Iterator<Item = &'a JobInfo>, st: &mut State) {
        let now = Instant::now();
        for job in jobs {
            if !st.active.contains(&job.id) || job.status == JobStatus::Running {
                st.unseen.remove(&job.id);
                continue;
            }
            let since = *st.unseen.entry(job.id).or_insert(now);
            if agent::orphaned(job.status, now.duration_since(since), ORPHANED_AFTER)
                && let Some(stop) = st.stops.get(&job.id)
            {
                stop.stop(
                    ferry_proto::ErrorCode::Internal,
                    format!(
                        "the appliance shows job {} as {} while this session waits: starting it again",
                        job.id, job.status
                    ),
                );
                st.unseen.remove(&job.id);
            }
        }
    }

    /// A job that was interrupted and is no longer offered: say why once
    /// (aborted, withdrawn, paused), instead of going quiet.
    async fn explain_vanished(
        &self,
        candidates: &[JobInfo],
        st: &mut State,
        events: &mpsc::UnboundedSender<AgentEvent>,
    ) {
        let gone: Vec<i64> = st
            .watched
            .iter()
            .copied()
            .filter(|id| !candidates.iter().any(|j| j.id == *id) && !st.active.contains(id))
            .collect();
        for job in gone {
            match self.api.job(job).await {
                Err(e) if withdrawn(&e) => {
                    st.watched.remove(&job);
                    st.ignored.insert(job);
                    st.summary.withdrawn.push(job);
                    let _ = events.send(AgentEvent::Withdrawn {
                        job,
                        reason: e.to_string(),
                    });
                }
                Ok(d) if agent::vanished(d.job.status) == Vanished::Withdrawn => {
                    st.watched.remove(&job);
                    st.ignored.insert(job);
                    st.summary.withdrawn.push(job);
                    let _ = events.send(AgentEvent::Withdrawn {
                        job,
                        reason: format!(
                            "job {job} was aborted{}",
                            d.job.error.map(|e| format!(" ({e})")).unwrap_or_default()
                        ),
                    });
                }
                Ok(d) if agent::vanished(d.job.status) == Vanished::Paused => {
                    st.watched.remove(&job);
                    let _ = events.send(AgentEvent::Paused { job });
                }
                Ok(d) if agent::vanished(d.job.status) == Vanished::Finished => {
                    st.watched.remove(&job);
                }
                _ => {}
            }
        }
    }

    /// Waits `wait` (or less, when a job ends), handling what ends.
    async fn wait(
        &self,
        wait: Duration,
        st: &mut State,
        events: &mpsc::UnboundedSender<AgentEvent>,
    ) {
        let deadline = Instant::now() + wait;
        let done = tokio::select! {
            done = st.running.join_next(), if !st.running.is_empty() => done,
            _ = tokio::time::sleep_until(deadline) => return,
            () = self.stop.stopped() => return,
        };
        let Some(Ok((job, upload, result))) = done else {
            return;
        };
        st.active.remove(&job);
        st.stops.remove(&job);
        match result {
            Ok(report) if upload => {
                let _ = events.send(AgentEvent::UploadDone { job, report });
            }
            Ok(report) => {
                // What became of the job is how it ended: an attempt
                // that failed before this one no longer counts.
                st.summary.failed.retain(|(failed, _)| *failed != job);
                st.summary.completed.push(job);
                let _ = events.send(AgentEvent::Completed { job, report });
            }
            Err(e) if withdrawn(&e) => {
                st.ignored.insert(job);
                st.summary.withdrawn.push(job);
                let _ = events.send(AgentEvent::Withdrawn {
                    job,
                    reason: e.to_string(),
                });
            }
            Err(e) => {
                let attempts = st.tried.get(&job).copied().unwrap_or(1);
                let retry_in = Duration::from_secs(2u64.pow(attempts.min(6)));
                st.not_before.insert(job, Instant::now() + retry_in);
                // If the appliance stops offering it, the next look says why.
                st.watched.insert(job);
                if !e.is_transient() && !stopped_by_sender(&e) {
                    st.summary.failed.push((job, e.to_string()));
                }
                let _ = events.send(AgentEvent::Interrupted {
                    job,
                    error: e.to_string(),
                    retry_in,
                });
            }
        }
    }
}

/// The sender (or an admin) stopped the session: what comes next is for
/// the appliance to say.
fn stopped_by_sender(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Engine(
            ferry_engine::EngineError::Proto(ferry_proto::ProtoError::Peer {
                code: ferry_proto::ErrorCode::Aborted,
                ..
            }) | ferry_engine::EngineError::Stopped {
                code: ferry_proto::ErrorCode::Aborted,
                ..
            }
        )
    )
}

/// How long a job running here may go unseen as running on the appliance
/// before its session is taken for orphaned (longer than a session takes
/// to be granted and start).
const ORPHANED_AFTER: Duration = Duration::from_secs(15);

/// The agent's bookkeeping.
#[derive(Default)]
struct State {
    summary: Summary,
    running: JoinSet<Outcome>,
    active: HashSet<i64>,
    not_before: HashMap<i64, Instant>,
    tried: HashMap<i64, u32>,
    ignored: HashSet<i64>,
    /// Interrupted jobs to account for if they stop being offered.
    watched: HashSet<i64>,
    /// Each running job's own stop, so one can end without the others.
    stops: HashMap<i64, StopSignal>,
    /// Jobs running here that the appliance does not show as running,
    /// since when.
    unseen: HashMap<i64, Instant>,
    started_any: bool,
}
