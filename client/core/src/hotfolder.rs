//! `ferry watch`: a hot folder on a sender's computer. Each new folder (or
//! file) that settles in it is uploaded and delivered, as `ferry send`
//! would, with the same rules of settling as the appliance's watch folders
//! ([`ferry_domain::watch`]) and the same reading of the folder
//! ([`ferry_engine::watchdir`]).
//!
//! What it sent is remembered in a state file (by default
//! `.ferry-watch.json` in the folder, which the watch itself ignores, as
//! it ignores every hidden name): each entry's identity on disk, its
//! delivery and its upload job. The delivery is written there as soon as
//! the appliance made it, before the upload begins, so a restart resumes an
//! unfinished upload instead of delivering the entry again; a rename makes
//! no new delivery either. What lay in the folder when it was first
//! watched is not sent unless asked (`--existing`).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_domain::watch::{self, Mode, Readiness, Settling};
use ferry_engine::watchdir::{Found, look};
use ferry_proto::PriorityRules;
use serde::{Deserialize, Serialize};

use crate::api::Api;
use crate::credentials::Credentials;
use crate::deliver::{self, Manifest, SendRequest};
use crate::error::ClientError;
use crate::transfer::{self, Options};

/// What `ferry watch` was asked.
#[derive(Debug, Clone)]
pub struct HotFolder {
    pub dir: PathBuf,
    pub recipients: Vec<String>,
    /// `share=NAME/dir`: where each entry's files go on the appliance.
    pub dest: String,
    pub settle: Duration,
    pub priorities: Vec<String>,
    pub mode: Mode,
    /// The deliveries' name: `{folder}`, `{file}` and `{date}` are filled.
    pub name: String,
    /// Deliver what lies in the folder when it is first watched, too.
    pub existing: bool,
    /// Where what was sent is remembered.
    pub state: PathBuf,
}

impl HotFolder {
    /// The state file's usual place: hidden, inside the folder.
    pub fn default_state(dir: &Path) -> PathBuf {
        dir.join(".ferry-watch.json")
    }

    fn check(&self) -> Result<(), ClientError> {
        if self.recipients.is_empty() {
            return Err(ClientError::Invalid(
                "name at least one recipient (--to EMAIL)".into(),
            ));
        }
        if !self.dest.starts_with("share=") {
            return Err(ClientError::Invalid(format!(
                "--dest {:?}: write share=NAME/folder",
                self.dest
            )));
        }
        PriorityRules::parse(&self.priorities).map_err(|e| ClientError::Invalid(e.to_string()))?;
        watch::check_pattern(&self.name).map_err(|e| ClientError::Invalid(e.to_string()))?;
        if !self.dir.is_dir() {
            return Err(ClientError::Invalid(format!(
                "{} is not a folder",
                self.dir.display()
            )));
        }
        Ok(())
    }
}

/// What the hot folder has sent, kept between runs.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// What lay there at the first start has been recorded.
    baselined: bool,
    /// By identity on disk.
    entries: BTreeMap<String, Sent>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sent {
    name: String,
    /// `None`: it was there before the folder was watched.
    delivery: Option<i64>,
    upload: Option<i64>,
    /// Its upload finished (or it had nothing to upload).
    done: bool,
}

impl State {
    fn load(path: &Path) -> Result<State, ClientError> {
        let bad = |why: String| ClientError::HotFolderState {
            path: path.display().to_string(),
            why,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| bad(format!("not a hot folder's state: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(bad(e.to_string())),
        }
    }

    /// Written whole to a new file, then renamed over the old one, so a
    /// crash never leaves half a state.
    fn save(&self, path: &Path) -> Result<(), ClientError> {
        let io = |e: std::io::Error| ClientError::HotFolderState {
            path: path.display().to_string(),
            why: e.to_string(),
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| ClientError::HotFolderState {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// How often the folder is looked at while nothing is settling.
const POLL: Duration = Duration::from_secs(2);
/// How long an entry whose delivery failed waits before it is tried again.
const RETRY: Duration = Duration::from_secs(60);

/// Watches until the process is stopped; returns only on an error that
/// another look would not mend (the state file cannot be written).
pub async fn run(
    api: &Api,
    creds: &Credentials,
    hot: &HotFolder,
    opts: &Options,
) -> Result<(), ClientError> {
    hot.check()?;
    let mut state = State::load(&hot.state)?;
    let mut tried: BTreeMap<String, Instant> = BTreeMap::new();
    resume_unfinished(api, creds, hot, &mut state, opts, &mut tried).await?;
    if !state.baselined {
        let found = look_at(hot, &HashSet::new()).await?;
        if !hot.existing {
            for f in &found {
                state.entries.insert(
                    f.identity.clone(),
                    Sent {
                        name: f.name.clone(),
                        delivery: None,
                        upload: None,
                        done: true,
                    },
                );
            }
            log::info!(
                "{} entries in {} are left as they are; new ones will be delivered",
                found.len(),
                hot.dir.display()
            );
        }
        state.baselined = true;
        state.save(&hot.state)?;
    }
    let began = Instant::now();
    let mut settling = Settling::new();
    let mut failed: BTreeMap<String, Instant> = BTreeMap::new();
    loop {
        let known: HashSet<String> = state.entries.keys().cloned().collect();
        let found = match look_at(hot, &known).await {
            Ok(f) => f,
            Err(e) => {
                log::warn!("{e}");
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        let now_ms = began.elapsed().as_millis() as i64;
        let mut next = POLL;
        let mut waiting = HashSet::new();
        for f in found {
            let Some(files) = f.files.clone() else {
                if let Some(s) = state.entries.get_mut(&f.identity)
                    && s.name != f.name
                {
                    log::info!("{:?} is now {:?}: not delivered again", s.name, f.name);
                    s.name = f.name.clone();
                    state.save(&hot.state)?;
                }
                continue;
            };
            waiting.insert(f.identity.clone());
            let settle_ms = hot.settle.as_millis() as i64;
            match settling.observe(&f.identity, files, settle_ms, now_ms) {
                Readiness::Ready => {}
                Readiness::Settling { ready_at_ms } => {
                    next = next.min(Duration::from_millis((ready_at_ms - now_ms).max(0) as u64));
                    continue;
                }
                Readiness::Empty | Readiness::Writing(_) => continue,
            }
            if failed
                .get(&f.identity)
                .is_some_and(|at| at.elapsed() < RETRY)
            {
                continue;
            }
            match deliver_entry(api, creds, hot, &f, &mut state, opts).await {
                Ok(()) => {
                    settling.forget(&f.identity);
                    failed.remove(&f.identity);
                }
                // The state could not be written: going on would deliver
                // again after a restart.
                Err(e @ ClientError::HotFolderState { .. }) => return Err(e),
                Err(e) => {
                    log::error!(
                        "{:?} could not be delivered: {e}; trying again in {} s",
                        f.name,
                        RETRY.as_secs()
                    );
                    failed.insert(f.identity.clone(), Instant::now());
                }
            }
        }
        settling.keep_only(&waiting);
        resume_unfinished(api, creds, hot, &mut state, opts, &mut tried).await?;
        tokio::time::sleep(next.max(Duration::from_millis(200))).await;
    }
}

async fn look_at(hot: &HotFolder, known: &HashSet<String>) -> Result<Vec<Found>, ClientError> {
    let (dir, mode, known) = (hot.dir.clone(), hot.mode, known.clone());
    tokio::task::spawn_blocking(move || look(&dir, mode, |id| known.contains(id)))
        .await
        .map_err(|e| ClientError::Invalid(format!("reading the folder: {e}")))?
        .map_err(|e| ClientError::Io {
            path: hot.dir.display().to_string(),
            source: e,
        })
}

/// Makes the entry's delivery, records it, and uploads its files.
async fn deliver_entry(
    api: &Api,
    creds: &Credentials,
    hot: &HotFolder,
    f: &Found,
    state: &mut State,
    opts: &Options,
) -> Result<(), ClientError> {
    let today = jiff::ZonedDateTime::now().date().to_string();
    let req = SendRequest {
        paths: vec![hot.dir.join(&f.name).display().to_string()],
        recipients: hot.recipients.clone(),
        dest: Some(hot.dest.clone()),
        name: Some(watch::delivery_name(&hot.name, &f.name, &today)),
        priorities: hot.priorities.clone(),
        ..SendRequest::default()
    };
    // Recorded as soon as the appliance made it.
    let recorded: Arc<Mutex<Option<Sent>>> = Arc::default();
    let record = |made: &ferry_api::DeliveryCreated| {
        let sent = Sent {
            name: f.name.clone(),
            delivery: Some(made.delivery),
            upload: made
                .jobs
                .iter()
                .find(|j| j.kind == ferry_api::JobKind::Upload)
                .map(|j| j.id),
            done: false,
        };
        let mut written = State::load(&hot.state)?;
        written.entries.insert(f.identity.clone(), sent.clone());
        written.baselined = true;
        written.save(&hot.state)?;
        *recorded.lock().unwrap_or_else(|e| e.into_inner()) = Some(sent);
        Ok(())
    };
    let result = deliver::send_then(api, creds, &req, opts, record).await;
    let sent = recorded.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(mut sent) = sent {
        sent.done = result.is_ok();
        if let Ok(s) = &result {
            log::info!(
                "{:?} settled and is delivery {} to {}",
                f.name,
                s.created.delivery,
                hot.recipients.join(", ")
            );
        }
        state.entries.insert(f.identity.clone(), sent);
        state.save(&hot.state)?;
    }
    result.map(|_| ())
}

/// Finishes uploads a previous run (or a failed try) left: from the
/// upload's manifest where it was kept; otherwise the job says whether it
/// finished, and if not, the entry's files are planned again. An upload
/// that failed waits [`RETRY`] before the next try; one whose job is gone
/// or was aborted is given up.
async fn resume_unfinished(
    api: &Api,
    creds: &Credentials,
    hot: &HotFolder,
    state: &mut State,
    opts: &Options,
    tried: &mut BTreeMap<String, Instant>,
) -> Result<(), ClientError> {
    let unfinished: Vec<(String, Sent)> = state
        .entries
        .iter()
        .filter(|(_, s)| !s.done)
        .map(|(k, s)| (k.clone(), s.clone()))
        .collect();
    for (identity, sent) in unfinished {
        let Some(job) = sent.upload else {
            continue;
        };
        if tried.get(&identity).is_some_and(|at| at.elapsed() < RETRY) {
            continue;
        }
        tried.insert(identity.clone(), Instant::now());
        let manifest = Manifest::load(&creds.server, job).unwrap_or_else(|e| {
            log::warn!(
                "the upload manifest of job {job} does not read ({e}); asking the appliance"
            );
            None
        });
        let outcome = match manifest {
            Some(m) => {
                log::info!("resuming the upload of {:?} (job {job})", sent.name);
                m.resume(api, opts).await.map(|_| ())
            }
            None => match api.job(job).await {
                Ok(d) if d.job.status == ferry_api::JobStatus::Done => Ok(()),
                Ok(d) if d.job.status == ferry_api::JobStatus::Aborted => {
                    log::warn!(
                        "the upload of {:?} (job {job}) was aborted on the appliance; it is left",
                        sent.name
                    );
                    Ok(())
                }
                Err(ClientError::Api { status: 404, .. }) => {
                    log::warn!(
                        "the upload of {:?} (job {job}) is gone from the appliance; it is left",
                        sent.name
                    );
                    Ok(())
                }
                Ok(_) => {
                    log::info!("uploading {:?} again (job {job})", sent.name);
                    let items = vec![hot.dir.join(&sent.name).display().to_string()];
                    let rules = PriorityRules::parse(&hot.priorities)
                        .map_err(|e| ClientError::Invalid(e.to_string()))?;
                    let (files, _) = tokio::task::spawn_blocking(move || {
                        deliver::plan_local_items(&items, &rules)
                    })
                    .await
                    .map_err(|e| ClientError::Invalid(format!("listing files: {e}")))??;
                    transfer::upload(api, job, files, opts).await.map(|_| ())
                }
                Err(e) => Err(e),
            },
        };
        match outcome {
            Ok(()) => {
                if let Some(s) = state.entries.get_mut(&identity) {
                    s.done = true;
                }
                tried.remove(&identity);
                state.save(&hot.state)?;
            }
            Err(e) => log::error!("the upload of {:?} is not finished: {e}", sent.name),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_is_written_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = HotFolder::default_state(dir.path());
        assert!(!State::load(&path).unwrap().baselined);
        let mut s = State {
            baselined: true,
            ..State::default()
        };
        s.entries.insert(
            "1:2:3".into(),
            Sent {
                name: "reel1".into(),
                delivery: Some(4),
                upload: Some(5),
                done: false,
            },
        );
        s.save(&path).unwrap();
        let back = State::load(&path).unwrap();
        assert!(back.baselined);
        assert_eq!(back.entries["1:2:3"].upload, Some(5));
        assert!(!path.with_extension("json.tmp").exists());
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(
            State::load(&path),
            Err(ClientError::HotFolderState { .. })
        ));
    }
}
