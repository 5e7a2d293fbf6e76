//! The app's hands: a tokio runtime on threads of its own that talks to
//! the appliance through ferry-client — the library the `ferry` CLI is
//! built on, so nothing is implemented twice — and posts what happened back
//! to the window, which never blocks on the network.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_api::{JobDetail, JobInfo, RecipientList, ShareEntry, ShareInfo};
use ferry_client::agent::{Agent, AgentEvent, Until};
use ferry_client::deliver::{self, Manifest, SendRequest};
use ferry_client::transfer::Options;
use ferry_client::{Api, ClientError, Credentials};
use ferry_engine::stop::StopSignal;
use ferry_engine::tls::{Fingerprint, PinnedCert};

use crate::model::Action;
use crate::words::in_words;

/// What the window asks for.
#[derive(Debug, Clone)]
pub enum Command {
    /// Fetch the certificate of `server` before any secret is sent.
    FirstContact {
        server: String,
    },
    /// Sign in with a password or an API key against a confirmed
    /// certificate; the credentials are kept for the next start.
    SignIn {
        server: String,
        fingerprint: Fingerprint,
        email: String,
        secret: Secret,
    },
    LoadShares,
    /// Addresses that complete what is typed in a recipient field.
    Complete {
        typed: String,
    },
    Browse {
        share: String,
        folder: String,
    },
    MakeFolder {
        share: String,
        folder: String,
    },
    Transmit(SendRequest),
    RefreshJobs,
    LoadJob(i64),
    Act {
        job: i64,
        action: Action,
    },
    SetPriority {
        job: i64,
        glob: String,
        priority: String,
    },
    StartReceiving {
        into: PathBuf,
    },
    StopReceiving,
}

#[derive(Debug, Clone)]
pub enum Secret {
    Password(String),
    ApiKey(String),
}

/// What the window hears back.
#[derive(Debug, Clone)]
pub enum Update {
    /// The certificate the appliance presented, to be confirmed.
    Seen {
        server: String,
        fingerprint: Fingerprint,
    },
    SignedIn {
        email: String,
        server: String,
    },
    Shares(Vec<ShareInfo>),
    Users(Vec<String>),
    Listing {
        share: String,
        folder: String,
        entries: Vec<ShareEntry>,
    },
    /// A delivery was made; its jobs.
    Transmitted {
        jobs: Vec<i64>,
        missing: Vec<String>,
    },
    Jobs(Vec<JobInfo>),
    Job(Box<JobDetail>),
    /// A line for the Receive view.
    Incoming(String),
    /// Something to tell the person, in their words.
    Said(String),
    Failed(String),
}

/// The runtime and the signed-in client.
pub struct Worker {
    runtime: tokio::runtime::Runtime,
    updates: mpsc::Sender<Update>,
    /// Called after each update so the window repaints.
    wake: Arc<dyn Fn() + Send + Sync>,
    signed_in: SignedIn,
    uploads: Arc<AtomicUsize>,
    receiving: Option<StopSignal>,
    /// Where the sign-in is kept between starts.
    credentials: PathBuf,
}

impl Worker {
    /// A worker and the end the window reads updates from.
    pub fn start(
        wake: Arc<dyn Fn() + Send + Sync>,
        credentials: PathBuf,
    ) -> (Self, mpsc::Receiver<Update>) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ferry-desktop")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the app's runtime: {e}"));
        let (updates, rx) = mpsc::channel();
        (
            Worker {
                runtime,
                updates,
                wake,
                signed_in: Arc::default(),
                uploads: Arc::default(),
                receiving: None,
                credentials,
            },
            rx,
        )
    }

    /// Signs in with stored credentials (`ferry login`'s, or the app's own
    /// from an earlier start), and resumes the uploads this computer left
    /// unfinished. Returns false when there are none.
    pub fn resume_session(&self) -> bool {
        let Ok(creds) = Credentials::load_from(&self.credentials) else {
            return false;
        };
        let Ok(api) = Api::from_credentials(&creds) else {
            return false;
        };
        self.adopt(api, creds);
        true
    }

    /// Uploads running now: closing the window asks first.
    pub fn uploads_running(&self) -> usize {
        self.uploads.load(Ordering::Relaxed)
    }

    pub fn is_receiving(&self) -> bool {
        self.receiving.is_some()
    }

    fn post(&self) -> Poster {
        Poster {
            tx: self.updates.clone(),
            wake: self.wake.clone(),
        }
    }

    fn api(&self) -> Option<(Api, Credentials)> {
        self.signed_in
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn adopt(&self, api: Api, creds: Credentials) {
        adopt(
            &self.signed_in,
            &self.uploads,
            self.runtime.handle(),
            &self.post(),
            api,
            creds,
        );
    }

    /// Does what the window asked, in the background.
    pub fn run(&mut self, command: Command) {
        let post = self.post();
        match command {
            Command::FirstContact { server } => {
                self.runtime.spawn(async move {
                    let result = async {
                        let server = ferry_client::credentials::normalise_server(&server)?;
                        let probe = Api::new(&server, PinnedCert::first_contact(), None, None)?;
                        probe.health().await?;
                        let fingerprint = probe.seen_fingerprint().ok_or_else(|| {
                            ClientError::Invalid("the appliance presented no certificate".into())
                        })?;
                        Ok::<_, ClientError>(Update::Seen {
                            server,
                            fingerprint,
                        })
                    }
                    .await;
                    post.send(result.unwrap_or_else(|e| Update::Failed(in_words(&e, &server))));
                });
            }
            Command::SignIn {
                server,
                fingerprint,
                email,
                secret,
            } => {
                let (signed_in, uploads) = (self.signed_in.clone(), self.uploads.clone());
                let handle = self.runtime.handle().clone();
                let keep = self.credentials.clone();
                self.runtime.spawn(async move {
                    let result = async {
                        let (api_key, user) = match secret {
                            Secret::ApiKey(key) => {
                                (key, Some(email.clone()).filter(|e| !e.is_empty()))
                            }
                            Secret::Password(password) => {
                                let api =
                                    Api::new(&server, PinnedCert::new(fingerprint), None, None)?;
                                let host = std::env::var("HOSTNAME")
                                    .unwrap_or_else(|_| "this computer".into());
                                let resp = api
                                    .login(&email, &password, Some(format!("Ferry app on {host}")))
                                    .await?;
                                (resp.api_key, Some(resp.user.email))
                            }
                        };
                        let creds = Credentials {
                            server: server.clone(),
                            user,
                            api_key,
                            fingerprint,
                        };
                        let api = Api::from_credentials(&creds)?;
                        api.me().await?;
                        creds.save_to(keep)?;
                        Ok::<_, ClientError>((api, creds))
                    }
                    .await;
                    match result {
                        Ok((api, creds)) => adopt(&signed_in, &uploads, &handle, &post, api, creds),
                        Err(e) => post.send(Update::Failed(in_words(&e, &server))),
                    }
                });
            }
            other => {
                let Some((api, creds)) = self.api() else {
                    post.send(Update::Failed("Sign in first.".into()));
                    return;
                };
                self.run_signed_in(other, api, creds, post);
            }
        }
    }

    fn run_signed_in(&mut self, command: Command, api: Api, creds: Credentials, post: Poster) {
        let server = api.server().to_owned();
        let fail = move |e: ClientError| Update::Failed(in_words(&e, &server));
        match command {
            Command::FirstContact { .. } | Command::SignIn { .. } => {}
            Command::LoadShares => {
                self.runtime.spawn(async move {
                    post.send(api.shares().await.map_or_else(fail, Update::Shares));
                });
            }
            Command::Complete { typed } => {
                self.runtime.spawn(async move {
                    // Collaborators may not list people: they complete
                    // from what they typed before, so a refusal is quiet.
                    let path = format!("/recipients?q={}", utf8_percent(&typed));
                    if let Ok(list) = api.get::<RecipientList>(&path).await {
                        post.send(Update::Users(list.emails));
                    }
                });
            }
            Command::Browse { share, folder } => {
                self.runtime.spawn(async move {
                    let path = format!("/shares/{share}/files?path={}", utf8_percent(&folder));
                    post.send(api.get::<ferry_api::ShareListing>(&path).await.map_or_else(
                        fail,
                        |l| Update::Listing {
                            share,
                            folder,
                            entries: l.entries,
                        },
                    ));
                });
            }
            Command::MakeFolder { share, folder } => {
                self.runtime.spawn(async move {
                    let made: Result<serde_json::Value, _> = api
                        .post(
                            &format!("/shares/{share}/folders"),
                            &ferry_api::NewFolder {
                                path: folder.clone(),
                            },
                        )
                        .await;
                    post.send(match made {
                        Ok(_) => Update::Said(format!("Made the folder {folder} in {share}.")),
                        Err(e) => fail(e),
                    });
                });
            }
            Command::Transmit(request) => {
                let uploads = self.uploads.clone();
                uploads.fetch_add(1, Ordering::Relaxed);
                self.runtime.spawn(async move {
                    // The delivery exists (and its jobs show) as soon as
                    // the appliance has it; the upload follows.
                    let sent = deliver::send(&api, &creds, &request, &Options::default()).await;
                    uploads.fetch_sub(1, Ordering::Relaxed);
                    post.send(match sent {
                        Ok(s) => Update::Transmitted {
                            jobs: s.created.jobs.iter().map(|j| j.id).collect(),
                            missing: s.missing,
                        },
                        Err(e) => fail(e),
                    });
                });
            }
            Command::RefreshJobs => {
                self.runtime.spawn(async move {
                    post.send(
                        api.jobs("all=true&limit=200")
                            .await
                            .map_or_else(fail, |l| Update::Jobs(l.jobs)),
                    );
                });
            }
            Command::LoadJob(id) => {
                self.runtime.spawn(async move {
                    post.send(
                        api.job(id)
                            .await
                            .map_or_else(fail, |d| Update::Job(Box::new(d))),
                    );
                });
            }
            Command::Act { job, action } => {
                self.runtime.spawn(async move {
                    let done = match action {
                        Action::Purge => api.purge(job, false).await,
                        other => api.job_action(job, other.api_word()).await.map(|_| ()),
                    };
                    post.send(match done {
                        Ok(()) => Update::Said(format!("{} job {job}: done.", action.label())),
                        Err(e) => fail(e),
                    });
                    if let Ok(l) = api.jobs("all=true&limit=200").await {
                        post.send(Update::Jobs(l.jobs));
                    }
                });
            }
            Command::SetPriority {
                job,
                glob,
                priority,
            } => {
                self.runtime.spawn(async move {
                    post.send(match api.set_priority(job, &glob, &priority).await {
                        Ok(_) => Update::Said(format!("Job {job}: {glob} now {priority}.")),
                        Err(e) => fail(e),
                    });
                });
            }
            Command::StartReceiving { into } => {
                if self.receiving.is_some() {
                    return;
                }
                let stop = StopSignal::new();
                self.receiving = Some(stop.clone());
                let agent = Agent {
                    api,
                    into,
                    concurrency: 2,
                    poll: Duration::from_secs(2),
                    once: false,
                    stop,
                    pace: Default::default(),
                };
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let news = post.clone();
                self.runtime.spawn(async move {
                    while let Some(event) = rx.recv().await {
                        if let Some(line) = describe(&event) {
                            news.send(Update::Incoming(line));
                        }
                    }
                });
                self.runtime.spawn(async move {
                    if let Err(e) = agent.run(Until::Stopped, tx).await {
                        post.send(fail(e));
                    }
                });
            }
            Command::StopReceiving => {
                if let Some(stop) = self.receiving.take() {
                    stop.stop(
                        ferry_proto::ErrorCode::Aborted,
                        "receiving stopped in the app",
                    );
                }
            }
        }
    }
}

type SignedIn = Arc<Mutex<Option<(Api, Credentials)>>>;

/// Keeps the signed-in client and carries on the uploads this computer
/// started and did not finish.
fn adopt(
    signed_in: &SignedIn,
    uploads: &Arc<AtomicUsize>,
    runtime: &tokio::runtime::Handle,
    post: &Poster,
    api: Api,
    creds: Credentials,
) {
    post.send(Update::SignedIn {
        email: creds.user.clone().unwrap_or_default(),
        server: creds.server.clone(),
    });
    *signed_in.lock().unwrap_or_else(|e| e.into_inner()) = Some((api.clone(), creds));
    for manifest in Manifest::pending(api.server()) {
        let (api, post, uploads) = (api.clone(), post.clone(), uploads.clone());
        uploads.fetch_add(1, Ordering::Relaxed);
        runtime.spawn(async move {
            let job = manifest.job;
            match manifest.resume(&api, &Options::default()).await {
                Ok(_) => post.send(Update::Said(format!("The upload of job {job} finished."))),
                Err(e) => post.send(Update::Failed(in_words(&e, api.server()))),
            }
            uploads.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// The query-string form of a folder path.
fn utf8_percent(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A line for the Receive view, in words.
fn describe(e: &AgentEvent) -> Option<String> {
    Some(match e {
        AgentEvent::Started { job, into, .. } => format!(
            "Receiving “{}” from {} into {}",
            job.delivery_name.as_deref().unwrap_or(&job.name),
            job.owner,
            into.display()
        ),
        AgentEvent::Completed { job, .. } => format!("Job {job} received in full."),
        AgentEvent::Interrupted {
            job,
            error,
            retry_in,
        } => format!(
            "Job {job} was interrupted ({error}); trying again in {} s.",
            retry_in.as_secs()
        ),
        AgentEvent::Withdrawn { job, reason } => format!("Job {job} was withdrawn: {reason}"),
        AgentEvent::Unreachable { retry_in, .. } => format!(
            "The appliance cannot be reached; trying again in {} s.",
            retry_in.as_secs()
        ),
        AgentEvent::Paused { job } => format!("Job {job} was paused by the sender."),
        AgentEvent::UploadResumed { job } => format!("Resuming the upload of job {job}."),
        AgentEvent::UploadDone { job, .. } => format!("The upload of job {job} finished."),
        AgentEvent::File { .. } => return None,
    })
}

#[derive(Clone)]
struct Poster {
    tx: mpsc::Sender<Update>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl Poster {
    fn send(&self, u: Update) {
        // The window may be gone; nothing to tell then.
        let _ = self.tx.send(u);
        (self.wake)();
    }
}
