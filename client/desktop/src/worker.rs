//! The app's hands: a tokio runtime on threads of its own that talks to
//! the appliance through ferry-client — the library the `ferry` CLI is
//! built on, so nothing is implemented twice — and posts what happened back
//! to the window, which never blocks on the network.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_api::{JobDetail, JobInfo, RecipientList, ShareEntry, ShareInfo};
use ferry_client::agent::{Agent, AgentEvent, Until};
use ferry_client::deliver::{self, Manifest, SendRequest};
use ferry_client::signin::{self, FirstContact};
use ferry_client::transfer::Options;
use ferry_client::{Api, ClientError, Credentials};
use ferry_engine::stop::StopSignal;
use ferry_engine::tls::Fingerprint;

use crate::words::in_words;
use ferry_api::JobAction as Action;

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
        contact: FirstContact,
        email: String,
        secret: Secret,
    },
    /// Replace a one-time password, then carry on signing in.
    ChangePassword {
        credentials: Box<Credentials>,
        current: Secret,
        new: String,
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
    /// Make a delivery (uploading local files); `from_form` tells the
    /// window whether its Send form can be cleared when it is made.
    Transmit {
        request: SendRequest,
        from_form: bool,
    },
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

/// A password or an API key. Its Debug form shows neither.
#[derive(Clone)]
pub enum Secret {
    Password(String),
    ApiKey(String),
}

impl Secret {
    pub fn reveal(&self) -> &str {
        match self {
            Secret::Password(s) | Secret::ApiKey(s) => s,
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Password(_) => "Password(…)",
            Secret::ApiKey(_) => "ApiKey(…)",
        })
    }
}

/// What the window hears back.
#[derive(Debug, Clone)]
pub enum Update {
    /// The certificate the appliance presented, to be confirmed.
    Seen {
        contact: FirstContact,
        pinned: Option<Fingerprint>,
    },
    /// The password was one-time: ask for a new one.
    NewPasswordNeeded {
        credentials: Box<Credentials>,
        current: Secret,
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
    /// A delivery was made (and its local files uploaded); its jobs.
    Transmitted {
        from_form: bool,
        jobs: Vec<i64>,
        missing: Vec<String>,
    },
    TransmitFailed {
        from_form: bool,
        why: String,
    },
    Jobs(Vec<JobInfo>),
    Job(Box<JobDetail>),
    /// A line for the Receive view.
    Incoming(String),
    /// The agent stopped (asked to, or on an error it cannot ride out).
    ReceivingEnded {
        start: u64,
        why: String,
    },
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
    /// A job listing is on its way.
    refreshing: Arc<AtomicBool>,
    /// The running agent, and which start of it this is.
    receiving: Option<(u64, StopSignal)>,
    starts: u64,
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
                refreshing: Arc::default(),
                receiving: None,
                starts: 0,
                credentials,
            },
            rx,
        )
    }

    /// Signs in with stored credentials (`ferry login`'s, or the app's own
    /// from an earlier start) once the appliance accepts them, and resumes
    /// the uploads this computer left unfinished. Returns false when there
    /// are none; a key the appliance refuses ends in `Update::Failed`, and
    /// the window stays at Login.
    pub fn resume_session(&self) -> bool {
        let Ok(creds) = Credentials::load_from(&self.credentials) else {
            return false;
        };
        let (keep, post) = (self.keeper(), self.post());
        self.runtime.spawn(async move {
            let server = creds.server.clone();
            if let Err(e) = keep.keep(creds, false).await {
                post.send(Update::Failed(in_words(&e, &server)));
            }
        });
        true
    }

    /// Forgets the sign-in (this computer's stored credentials included)
    /// and stops receiving.
    pub fn sign_out(&mut self) {
        if let Some((_, stop)) = self.receiving.take() {
            stop.stop(ferry_proto::ErrorCode::Aborted, "signed out");
        }
        *self.signed_in.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Err(e) = std::fs::remove_file(&self.credentials)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            self.post().send(Update::Failed(format!(
                "Could not forget the sign-in in {}: {e}",
                self.credentials.display()
            )));
        }
    }

    /// Uploads running now: closing the window asks first.
    pub fn uploads_running(&self) -> usize {
        self.uploads.load(Ordering::Relaxed)
    }

    pub fn is_receiving(&self) -> bool {
        self.receiving.is_some()
    }

    /// The agent of start `start` has ended: unless a newer one runs,
    /// Receive can be started again.
    pub fn receiving_ended(&mut self, start: u64) {
        if self.receiving.as_ref().is_some_and(|(n, _)| *n == start) {
            self.receiving = None;
        }
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

    fn keeper(&self) -> Keeper {
        Keeper {
            signed_in: self.signed_in.clone(),
            uploads: self.uploads.clone(),
            runtime: self.runtime.handle().clone(),
            post: self.post(),
            path: self.credentials.clone(),
        }
    }

    /// Does what the window asked, in the background.
    pub fn run(&mut self, command: Command) {
        let post = self.post();
        match command {
            Command::FirstContact { server } => {
                let stored = Credentials::load_from(&self.credentials).ok();
                self.runtime.spawn(async move {
                    post.send(match signin::first_contact(&server, None).await {
                        Ok(contact) => {
                            // What this computer trusted before for the
                            // same appliance, if anything.
                            let pinned = stored
                                .filter(|c| c.server == contact.server)
                                .map(|c| c.fingerprint);
                            Update::Seen { contact, pinned }
                        }
                        Err(e) => Update::Failed(in_words(&e, &server)),
                    });
                });
            }
            Command::SignIn {
                contact,
                email,
                secret,
            } => {
                let keep = self.keeper();
                self.runtime.spawn(async move {
                    let server = contact.server.clone();
                    let result = async {
                        let credentials = match secret {
                            Secret::ApiKey(key) => Credentials {
                                server: contact.server.clone(),
                                user: Some(email.clone()).filter(|e| !e.is_empty()),
                                api_key: key,
                                fingerprint: contact.fingerprint,
                            },
                            Secret::Password(password) => {
                                let key_name = format!("Ferry app on {}", signin::this_computer());
                                let signed =
                                    signin::sign_in(&contact, &email, &password, key_name).await?;
                                if signed.must_change_password {
                                    return Ok(Some(Update::NewPasswordNeeded {
                                        credentials: Box::new(signed.credentials),
                                        current: Secret::Password(password),
                                    }));
                                }
                                signed.credentials
                            }
                        };
                        keep.keep(credentials, true).await?;
                        Ok::<_, ClientError>(None)
                    }
                    .await;
                    match result {
                        Ok(Some(update)) => post.send(update),
                        Ok(None) => {}
                        Err(e) => post.send(Update::Failed(in_words(&e, &server))),
                    }
                });
            }
            Command::ChangePassword {
                credentials,
                current,
                new,
            } => {
                let keep = self.keeper();
                self.runtime.spawn(async move {
                    let server = credentials.server.clone();
                    let result = async {
                        signin::change_password(&credentials, current.reveal(), &new).await?;
                        keep.keep(*credentials, true).await
                    }
                    .await;
                    if let Err(e) = result {
                        post.send(Update::Failed(in_words(&e, &server)));
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
            Command::FirstContact { .. }
            | Command::SignIn { .. }
            | Command::ChangePassword { .. } => {}
            Command::LoadShares => {
                self.runtime.spawn(async move {
                    post.send(api.shares().await.map_or_else(fail, Update::Shares));
                });
            }
            Command::Complete { typed } => {
                self.runtime.spawn(async move {
                    // Completion is for the facility's staff; for anyone
                    // else the appliance refuses, and the field simply
                    // does not complete.
                    let path = format!("/recipients?q={}", component(&typed));
                    if let Ok(list) = api.get::<RecipientList>(&path).await {
                        post.send(Update::Users(list.emails));
                    }
                });
            }
            Command::Browse { share, folder } => {
                self.runtime.spawn(async move {
                    let path = format!(
                        "/shares/{}/files?path={}",
                        component(&share),
                        component(&folder)
                    );
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
                            &format!("/shares/{}/folders", component(&share)),
                            &ferry_api::NewFolder {
                                path: folder.clone(),
                            },
                        )
                        .await;
                    match made {
                        Ok(_) => {
                            post.send(Update::Said(format!(
                                "Made the folder {folder} in {share}."
                            )));
                            // The new folder is where the window now looks.
                            post.send(Update::Listing {
                                share,
                                folder,
                                entries: Vec::new(),
                            });
                        }
                        Err(e) => post.send(fail(e)),
                    }
                });
            }
            Command::Transmit { request, from_form } => {
                let uploads = self.uploads.clone();
                uploads.fetch_add(1, Ordering::Relaxed);
                self.runtime.spawn(async move {
                    // The delivery exists (and its jobs show) as soon as
                    // the appliance has it; the upload follows.
                    let sent = deliver::send(&api, &creds, &request, &Options::default()).await;
                    uploads.fetch_sub(1, Ordering::Relaxed);
                    post.send(match sent {
                        Ok(s) => Update::Transmitted {
                            from_form,
                            jobs: s.created.jobs.iter().map(|j| j.id).collect(),
                            missing: s.missing,
                        },
                        Err(e) => Update::TransmitFailed {
                            from_form,
                            why: in_words(&e, api.server()),
                        },
                    });
                });
            }
            Command::RefreshJobs => {
                // One listing at a time: on a slow link, refreshes must not
                // pile up or answer out of order.
                if self.refreshing.swap(true, Ordering::AcqRel) {
                    return;
                }
                let refreshing = self.refreshing.clone();
                self.runtime.spawn(async move {
                    let _done = Reset(refreshing);
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
                        other => api.job_action(job, other.as_str()).await.map(|_| ()),
                    };
                    post.send(match done {
                        Ok(()) => Update::Said(format!(
                            "{} job {job}: done.",
                            crate::model::label(action)
                        )),
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
                self.starts += 1;
                let start = self.starts;
                self.receiving = Some((start, stop.clone()));
                let api_server = api.server().to_owned();
                let agent = Agent {
                    api,
                    into,
                    concurrency: 2,
                    poll: Duration::from_secs(2),
                    once: false,
                    stop,
                    pace: Default::default(),
                    transport: Default::default(),
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
                let server = api_server;
                self.runtime.spawn(async move {
                    let why = match agent.run(Until::Stopped, tx).await {
                        Ok(_) => "Receiving stopped.".to_owned(),
                        Err(e) => in_words(&e, &server),
                    };
                    post.send(Update::ReceivingEnded { start, why });
                });
            }
            Command::StopReceiving => {
                if let Some((_, stop)) = self.receiving.take() {
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

/// What signing in needs to finish from a background task: checks the
/// key, keeps the credentials, and takes the signed-in client into use.
struct Keeper {
    signed_in: SignedIn,
    uploads: Arc<AtomicUsize>,
    runtime: tokio::runtime::Handle,
    post: Poster,
    path: PathBuf,
}

impl Keeper {
    /// Checks the key with the appliance, stores the credentials when
    /// `save` (not when they were read from the file or the environment),
    /// and takes the client into use.
    async fn keep(&self, credentials: Credentials, save: bool) -> Result<(), ClientError> {
        let api = Api::from_credentials(&credentials)?;
        api.me().await?;
        if save {
            credentials.save_to(self.path.clone())?;
        }
        self.adopt(api, credentials);
        Ok(())
    }

    /// Keeps the signed-in client and carries on the uploads this computer
    /// started and did not finish.
    fn adopt(&self, api: Api, creds: Credentials) {
        self.post.send(Update::SignedIn {
            email: creds.user.clone().unwrap_or_default(),
            server: creds.server.clone(),
        });
        *self.signed_in.lock().unwrap_or_else(|e| e.into_inner()) = Some((api.clone(), creds));
        for manifest in Manifest::pending(api.server()) {
            let (api, post, uploads) = (api.clone(), self.post.clone(), self.uploads.clone());
            uploads.fetch_add(1, Ordering::Relaxed);
            self.runtime.spawn(async move {
                let job = manifest.job;
                match manifest.resume(&api, &Options::default()).await {
                    Ok(_) => post.send(Update::Said(format!("The upload of job {job} finished."))),
                    Err(e) => post.send(Update::Failed(in_words(&e, api.server()))),
                }
                uploads.fetch_sub(1, Ordering::Relaxed);
            });
        }
    }
}

/// A name or path as one URL component (query value or path segment).
fn component(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
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

/// Clears a flag when dropped, however the task ends.
struct Reset(Arc<AtomicBool>);

impl Drop for Reset {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
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
