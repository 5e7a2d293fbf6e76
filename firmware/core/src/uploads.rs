//! Resumable uploads from a browser (the tus 1.0 protocol's server side,
//! without its HTTP): the files of a delivery's upload job, each appended
//! to its part file in the share, `NAME.ferry-part`, exactly where a QUIC
//! upload writes it, and moved into place the same way once complete.
//!
//! An upload is named by its job and its file's path, so nothing about it
//! lives outside the store and the share: its offset is its part file's
//! length, which is only ever appended to and made durable before an
//! offset is acknowledged. A restarted ferryd, a closed tab or a cut
//! network resume where the part file ends.
//!
//! Each appended piece may carry a checksum (tus's checksum extension,
//! SHA-256), checked before the piece is acknowledged; a piece that does
//! not match is cut off again. Once every byte is there, the file's
//! BLAKE3 (the digest QUIC uploads record, over 8 MiB chunks) is computed
//! from the part before it moves into place, and recorded, so recipients'
//! claims and downloads check against it as for any other upload.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ferry_domain::ending::Ending;
use ferry_domain::rules::{self, Refusal};
use ferry_domain::{JobId, JobStatus, TaskStatus};
use ferry_engine::EngineError;
use ferry_engine::files::{PartFile, Sink};
use ferry_engine::share::ShareRoot;
use ferry_proto::{FileId, PlanFile, Priority, SharePath};
use ferry_store::{Delivery, Job, Share, Store, StoreError, Task, User};
use futures::{Stream, StreamExt as _};
use sha2::{Digest as _, Sha256};

use crate::audit::Actor;
use crate::clock::Clock;
use crate::failing;
use crate::portal::{Places, Slot};
use crate::transfers::{Target, Transfers, TransfersError};

/// Why an upload cannot go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The piece does not start where the upload stands (tus: 409).
    #[error("the upload of {path} stands at byte {at}, not {asked}")]
    Offset { path: String, at: u64, asked: u64 },
    /// More bytes than the file has.
    #[error("{path} has {size} bytes; the upload would go past them")]
    TooLong { path: String, size: u64 },
    /// The piece's checksum does not match its bytes (tus: 460).
    #[error("the piece of {0} did not match its checksum; it was not kept")]
    Checksum(String),
    /// Too many uploads at once for this person or address.
    #[error("{0} uploads at once already; try again when one has finished")]
    Busy(usize),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Transfers(#[from] TransfersError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

failing!(UploadError {
    UploadError::Refused(r) => (r.failure(), r.code()),
    UploadError::Offset { .. } => (Conflict, CONFLICT),
    UploadError::TooLong { .. } => (Invalid, INVALID_REQUEST),
    UploadError::Checksum(_) => (Invalid, INVALID_REQUEST),
    UploadError::Busy(_) => (TooMany { retry_after: 5 }, RATE_LIMITED),
    UploadError::Invalid(_) => (Invalid, INVALID_REQUEST),
    UploadError::Engine(EngineError::NoSpace { .. }) => (Unavailable, INTERNAL),
    UploadError::Engine(EngineError::OutsideShare { .. }) => (Forbidden, OUTSIDE_SHARE),
    UploadError::Engine(_) => (Internal, INTERNAL),
    UploadError::Transfers(e) => (e.failure(), e.code()),
    UploadError::Store(e) => (e.failure(), e.code()),
});

/// A checksum a piece came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    Sha256([u8; 32]),
}

/// One file of an upload job, opened to be appended to.
#[derive(Debug)]
pub struct Upload {
    job: Job,
    delivery: Delivery,
    share: Share,
    task: Task,
    user: User,
    who: Actor,
    /// Holds one of the person's and the address's upload places while
    /// the upload is open (a request's whole body).
    _slot: Slot,
}

impl Upload {
    pub fn job(&self) -> JobId {
        self.job.id
    }

    pub fn path(&self) -> &str {
        &self.task.path
    }

    /// The file's whole size.
    pub fn size(&self) -> u64 {
        u64::try_from(self.task.size).unwrap_or(0)
    }

    /// Whether the file is in place already.
    pub fn is_done(&self) -> bool {
        self.task.status == TaskStatus::Done
    }

    fn plan(&self) -> Result<PlanFile, UploadError> {
        Ok(PlanFile {
            id: FileId(0),
            path: SharePath::parse(&self.task.path)
                .map_err(|e| UploadError::Invalid(format!("{:?}: {e}", self.task.path)))?,
            size: self.size(),
            mtime_ns: self.task.mtime_ns,
            priority: Priority::new(self.task.priority).unwrap_or_default(),
        })
    }

    fn sink(&self) -> Result<Sink, UploadError> {
        let root = ShareRoot::open(&self.share.abs_path, format!("share={}", self.share.name))?;
        let folder = SharePath::parse_dir(&self.delivery.folder)
            .map_err(|e| UploadError::Invalid(format!("the delivery's folder: {e}")))?;
        Ok(root.sink(folder)?)
    }

    /// Its part file, made if it is not there.
    async fn part_file(&self) -> Result<PartFile, UploadError> {
        let (sink, plan) = (self.sink()?, self.plan()?);
        blocking(move || Ok(sink.open_part(&plan, false)?)).await
    }
}

/// Held while one request works on one file.
type FileLock = Arc<tokio::sync::Mutex<()>>;

/// A file's lock, held; the file's entry goes from the map with the last
/// holder, so the map holds only files being worked on.
struct Held {
    busy: Arc<Mutex<HashMap<(JobId, String), FileLock>>>,
    key: (JobId, String),
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if busy
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            busy.remove(&self.key);
        }
    }
}

/// The uploads service.
#[derive(Clone)]
pub struct Uploads {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    transfers: Transfers,
    places: Places,
    /// One append at a time per file: two tabs, or a retry racing the
    /// request it retries, must not interleave their bytes.
    busy: Arc<Mutex<HashMap<(JobId, String), FileLock>>>,
}

impl std::fmt::Debug for Uploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploads").finish_non_exhaustive()
    }
}

impl Uploads {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, transfers: Transfers) -> Self {
        Uploads {
            store,
            clock,
            transfers,
            places: Places::default(),
            busy: Arc::default(),
        }
    }

    /// File `path` of upload job `id`, when `user` may upload it now
    /// ([`rules::upload`]); anyone else is told nothing.
    pub async fn open(
        &self,
        user: &User,
        id: i64,
        path: &str,
        from: std::net::IpAddr,
    ) -> Result<Upload, UploadError> {
        let missing = || Refusal::NotFound(format!("there is no upload {id}/{path}"));
        let job = self.store.job(JobId(id)).await.map_err(|e| match e {
            StoreError::NotFound(_) => UploadError::Refused(missing()),
            other => other.into(),
        })?;
        rules::upload(&user.caller(), &job.facts(), self.clock.now())?;
        let task = self.task(job.id, path).await?.ok_or_else(missing)?;
        let delivery_id = job.delivery_id.ok_or_else(missing)?;
        let delivery = self.store.delivery(delivery_id).await?;
        let share = self.store.share(delivery.share_id).await?;
        let slot = self.places.take(user.id, from).map_err(UploadError::Busy)?;
        Ok(Upload {
            _slot: slot,
            job,
            delivery,
            share,
            task,
            user: user.clone(),
            who: Actor::user(user.id, from),
        })
    }

    async fn task(&self, job: JobId, path: &str) -> Result<Option<Task>, UploadError> {
        Ok(self
            .store
            .tasks(job)
            .await?
            .into_iter()
            .find(|t| t.path == path && t.status != TaskStatus::Excluded))
    }

    /// The file's one-at-a-time lock, held until the guard drops; the
    /// job and the task as they are once it is held (another request may
    /// have moved them while this one waited).
    async fn hold(&self, up: &mut Upload) -> Result<Held, UploadError> {
        let key = (up.job.id, up.task.path.clone());
        let lock = {
            let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
            busy.entry(key.clone()).or_default().clone()
        };
        let guard = lock.lock_owned().await;
        let held = Held {
            busy: self.busy.clone(),
            key,
            guard: Some(guard),
        };
        up.job = self.store.job(up.job.id).await?;
        rules::upload(&up.user.caller(), &up.job.facts(), self.clock.now())?;
        up.task = self
            .task(up.job.id, &up.task.path)
            .await?
            .ok_or_else(|| Refusal::NotFound(format!("there is no upload of {}", up.task.path)))?;
        Ok(held)
    }

    /// A new upload of the file begins (tus creation): a part left by an
    /// earlier attempt goes, since the file chosen now may differ; an empty
    /// file is complete at once (a tus client sends no bytes for it).
    pub async fn begin(&self, up: &mut Upload) -> Result<(), UploadError> {
        let _held = self.hold(up).await?;
        if up.is_done() {
            return Ok(());
        }
        let sink = up.sink()?;
        let path = up.plan()?.path;
        blocking(move || Ok(sink.remove_part(&path)?)).await?;
        if up.size() == 0 {
            self.start(up).await?;
            up.part_file().await?;
            self.complete(up).await?;
        }
        Ok(())
    }

    /// How many bytes of the file the appliance holds. A part that holds
    /// every byte but was not moved into place (a crash between the last
    /// piece and the move) is moved now, so the client's view that it is
    /// complete is true.
    pub async fn offset(&self, up: &mut Upload) -> Result<u64, UploadError> {
        let _held = self.hold(up).await?;
        if up.is_done() {
            return Ok(up.size());
        }
        let at = self.part_len(up).await?;
        if at == up.size() && at > 0 {
            self.complete(up).await?;
        } else if at > 0 {
            // A browser asks where to go on after a cut, a restart or a
            // closed tab: what it is told shows that nothing is sent twice.
            log::info!(job_id = up.job.id.0;
                "{} of job {}: the browser resumes at byte {at} of {}", up.task.path, up.job.id, up.size());
        }
        Ok(at)
    }

    async fn part_len(&self, up: &Upload) -> Result<u64, UploadError> {
        let part = up.part_file().await?;
        let path = up.task.path.clone();
        blocking(move || Ok(part.len().map_err(|e| EngineError::io(path, e))?)).await
    }

    /// The job runs while its files come in.
    async fn start(&self, up: &Upload) -> Result<(), UploadError> {
        if up.job.status != JobStatus::Running {
            self.store
                .set_job_status(up.job.id, JobStatus::Running, None)
                .await?;
        }
        Ok(())
    }

    /// Appends `body` at `offset`; the new offset, durable. With a
    /// checksum, the whole piece is checked before it counts, and cut off
    /// again when it does not match. Without one, whatever arrived before
    /// a cut counts (as tus says), so a network cut loses nothing.
    pub async fn append(
        &self,
        up: &mut Upload,
        offset: u64,
        checksum: Option<Checksum>,
        body: &mut (impl Stream<Item = Result<Bytes, io::Error>> + Unpin),
    ) -> Result<u64, UploadError> {
        let _held = self.hold(up).await?;
        if up.is_done() {
            return Err(UploadError::Offset {
                path: up.task.path.clone(),
                at: up.size(),
                asked: offset,
            });
        }
        let part = Arc::new(up.part_file().await?);
        let io = |e: io::Error| UploadError::Engine(EngineError::io(&up.task.path, e));
        let at = {
            let p = part.clone();
            blocking(move || Ok(p.len())).await?.map_err(io)?
        };
        if at != offset {
            return Err(UploadError::Offset {
                path: up.task.path.clone(),
                at,
                asked: offset,
            });
        }
        self.start(up).await?;
        let mut end = at;
        let mut sha = checksum.as_ref().map(|_| Sha256::new());
        let mut cut = None;
        while let Some(piece) = body.next().await {
            let piece = match piece {
                Ok(p) => p,
                Err(e) => {
                    cut = Some(e);
                    break;
                }
            };
            if end + piece.len() as u64 > up.size() {
                let p = part.clone();
                blocking(move || Ok(p.truncate(at))).await?.map_err(io)?;
                return Err(UploadError::TooLong {
                    path: up.task.path.clone(),
                    size: up.size(),
                });
            }
            if let Some(s) = sha.as_mut() {
                s.update(&piece);
            }
            let p = part.clone();
            let write_at = end;
            end += piece.len() as u64;
            blocking(move || Ok(p.write_at(&piece, write_at)))
                .await?
                .map_err(io)?;
        }
        let checked = match (checksum, sha) {
            (Some(Checksum::Sha256(want)), Some(s)) => {
                cut.is_none() && s.finalize().as_slice() == want.as_slice()
            }
            _ => true,
        };
        if !checked {
            let p = part.clone();
            blocking(move || Ok(p.truncate(at))).await?.map_err(io)?;
            return Err(UploadError::Checksum(up.task.path.clone()));
        }
        let p = part.clone();
        blocking(move || Ok(p.sync())).await?.map_err(io)?;
        crate::meters::bytes(
            crate::meters::Direction::In,
            crate::meters::BROWSER,
            end - offset,
        );
        if let Err(e) = self
            .store
            .task_progress(
                up.job.id,
                &up.task.path,
                i64::try_from(end).unwrap_or(i64::MAX),
            )
            .await
        {
            log::warn!(
                "cannot record the progress of {} in job {}: {e}",
                up.task.path,
                up.job.id
            );
        }
        if end == up.size() {
            drop(part);
            self.complete(up).await?;
        }
        Ok(end)
    }

    /// Every byte is there: its digest, into place, recorded; the job is
    /// done when every file is.
    async fn complete(&self, up: &Upload) -> Result<(), UploadError> {
        let sink = up.sink()?;
        let plan = up.plan()?;
        let digest = {
            let (sink, plan) = (sink.clone(), plan.clone());
            blocking(move || {
                let part = sink.open_part(&plan, false)?;
                let digest = part.digest(plan.size, &plan.path)?;
                sink.commit(&plan, Some(&part), digest)?;
                Ok(digest)
            })
            .await?
        };
        let target = Target::Upload {
            job: up.job.clone(),
            delivery: up.delivery.clone(),
            share: up.share.clone(),
        };
        self.transfers
            .file_done(
                &target,
                up.job.id,
                &plan.path,
                Some((plan.size, plan.mtime_ns, digest.to_hex())),
            )
            .await?;
        log::info!(job_id = up.job.id.0; "{} of job {} uploaded from a browser", up.task.path, up.job.id);
        if self.transfers.all_files_done(up.job.id).await? == 0 {
            self.transfers
                .settle(up.job.id, &Ending::Done, &target, up.who)
                .await?;
        }
        Ok(())
    }

    /// Gives an upload up (tus termination): its part file goes.
    pub async fn terminate(&self, up: &mut Upload) -> Result<(), UploadError> {
        let _held = self.hold(up).await?;
        if up.is_done() {
            return Ok(());
        }
        let sink = up.sink()?;
        let path = up.plan()?.path;
        blocking(move || Ok(sink.remove_part(&path)?)).await
    }
}

/// Runs file IO on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, UploadError> + Send + 'static,
) -> Result<T, UploadError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| UploadError::Engine(EngineError::io("upload", io::Error::other(e))))?
}
