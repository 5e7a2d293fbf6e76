//! Deliveries in a browser (and to scripts over HTTPS): which files of a
//! download job its recipient may fetch, the bytes of one file or of the
//! whole delivery as a zip, for any range of them, and what counts as
//! received.
//!
//! A file counts as received once every byte of it has been served to its
//! recipient ([`ferry_domain::served`]), over however many ranges and
//! requests, through its own URL or inside the zip. The job then moves on
//! exactly as when the agent confirms a file: the file's task is done, and
//! when every task is, the job is settled done and the sender's "received"
//! email follows. Bytes count when the HTTP server asks for the next
//! buffer, that is once the previous one went to the connection, not when
//! they were read.
//!
//! Reading is one buffer at a time, on the blocking pool, so a download's
//! memory is one buffer whatever the size of the file or the zip.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::ops::Range;
use std::os::unix::fs::FileExt as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_domain::ending::Ending;
use ferry_domain::rules::{self, Refusal};
use ferry_domain::served::Coverage;
use ferry_domain::{JobId, ShareId, UserId};
use ferry_engine::EngineError;
use ferry_engine::share::ShareRoot;
use ferry_proto::SharePath;
use ferry_store::{Delivery, Job, Share, Store, StoreError, User};
use ferry_zip::{Crc, Layout, Member, Part, ZipError};
use futures::stream::{self, BoxStream, StreamExt as _};

use crate::audit::Actor;
use crate::failing;
use crate::transfers::{Target, Transfers, TransfersError};

/// One read from disk, and one buffer handed to the HTTP server.
const BUFFER: u64 = 256 * 1024;
/// Downloads (and pages of a delivery) open at once, per person and per
/// address: a browser opens up to six connections to a site, and a few
/// people may share an office's address.
pub const PER_PERSON: usize = 8;
pub const PER_ADDRESS: usize = 16;
/// How often a download's partial progress is written to its job.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Why a file or a delivery cannot be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PortalError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// One of the delivery's files that has not reached the appliance yet.
    #[error("{0} has not reached the appliance yet; it can be downloaded once it has")]
    NotLanded(String),
    /// The file on the appliance is no longer the one delivered.
    #[error("{0} changed on the appliance since it was delivered")]
    Changed(String),
    /// Too many downloads at once for this person or address.
    #[error("{0} downloads at once already; try again when one has finished")]
    Busy(usize),
    #[error(transparent)]
    Zip(#[from] ZipError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Transfers(#[from] TransfersError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

failing!(PortalError {
    PortalError::Refused(r) => (r.failure(), r.code()),
    PortalError::NotLanded(_) => (Conflict, CONFLICT),
    PortalError::Changed(_) => (Conflict, CONFLICT),
    PortalError::Busy(_) => (TooMany { retry_after: 5 }, RATE_LIMITED),
    PortalError::Zip(_) => (Invalid, INVALID_REQUEST),
    PortalError::Engine(EngineError::NotFound { .. }) => (NotFound, NOT_FOUND),
    PortalError::Engine(EngineError::OutsideShare { .. }) => (Forbidden, OUTSIDE_SHARE),
    PortalError::Engine(_) => (Internal, INTERNAL),
    PortalError::Transfers(e) => (e.failure(), e.code()),
    PortalError::Store(e) => (e.failure(), e.code()),
});

/// A file of a delivery that may be downloaded now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyFile {
    /// Relative to the delivery.
    pub path: String,
    pub size: u64,
    pub mtime_ns: i64,
    /// Its BLAKE3, as the upload verified it (none for a delivery of files
    /// already on the appliance).
    pub digest: Option<String>,
    /// Bytes from its start already served before (kept in its task).
    pub served: u64,
    /// Received already (its task is done).
    pub received: bool,
}

impl ReadyFile {
    /// A strong validator: the file's BLAKE3, else its size and time.
    pub fn etag(&self) -> String {
        match &self.digest {
            Some(d) => format!("\"b3-{d}\""),
            None => format!("\"st-{}-{}\"", self.size, self.mtime_ns),
        }
    }

    /// The name a browser saves it under: the last part of its path.
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// A recipient's download job, opened for fetching.
#[derive(Debug)]
pub struct Opened {
    pub job: Job,
    pub delivery: Delivery,
    share: Share,
    root: ShareRoot,
    folder: SharePath,
    /// The files that have reached the appliance, by path.
    pub files: Vec<ReadyFile>,
    /// How many of the job's files have not reached the appliance yet.
    pub waiting: usize,
    who: Actor,
    /// Holds one of the person's and the address's download places for
    /// as long as the delivery is open (a download's whole body).
    _slot: Slot,
}

impl Opened {
    /// The ready file at `path`, or why not.
    pub fn file(&self, path: &str) -> Result<usize, PortalError> {
        match self.files.binary_search_by(|f| f.path.as_str().cmp(path)) {
            Ok(i) => Ok(i),
            Err(_) if self.waiting > 0 => Err(PortalError::NotLanded(path.to_owned())),
            Err(_) => Err(PortalError::Refused(Refusal::NotFound(format!(
                "delivery {} has no file {path:?}",
                self.job.id
            )))),
        }
    }

    /// Whether every file of the delivery can be downloaded now.
    pub fn complete(&self) -> bool {
        self.waiting == 0
    }
}

/// The whole delivery as one zip, planned.
#[derive(Debug)]
pub struct ZipPlan {
    pub layout: Layout,
    /// For each member, the index of its file in [`Opened::files`] (none
    /// for a folder).
    files: Vec<Option<usize>>,
    pub etag: String,
}

/// Served bytes, per download job and file, and CRCs already computed.
#[derive(Debug, Default)]
struct Tallies {
    coverage: HashMap<(JobId, String), FileTally>,
    crcs: HashMap<(ShareId, String, u64, i64), u32>,
}

/// CRCs kept at most; past this the cache starts again (a zip whose CRCs
/// are gone reads its files once more for them).
const MAX_CRCS: usize = 200_000;

impl Tallies {
    fn remember(&mut self, key: (ShareId, String, u64, i64), crc: u32) {
        if self.crcs.len() >= MAX_CRCS {
            self.crcs.clear();
        }
        self.crcs.insert(key, crc);
    }
}

/// How many downloads (or uploads) each person and each address has
/// open, bounded by [`PER_PERSON`] and [`PER_ADDRESS`].
#[derive(Debug, Clone, Default)]
pub struct Places {
    open: Arc<Mutex<Open>>,
}

#[derive(Debug, Default)]
struct Open {
    people: HashMap<UserId, usize>,
    addresses: HashMap<IpAddr, usize>,
}

impl Places {
    /// One more for `user` at `from`, held until the slot drops; how many
    /// are open already when that is too many.
    pub fn take(&self, user: UserId, from: IpAddr) -> Result<Slot, usize> {
        let mut o = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let person = o.people.get(&user).copied().unwrap_or(0);
        let address = o.addresses.get(&from).copied().unwrap_or(0);
        if person >= PER_PERSON {
            return Err(person);
        }
        if address >= PER_ADDRESS {
            return Err(address);
        }
        *o.people.entry(user).or_default() += 1;
        *o.addresses.entry(from).or_default() += 1;
        Ok(Slot {
            open: self.open.clone(),
            user,
            from,
        })
    }
}

/// One open download's or upload's place in its person's and address's
/// count.
#[derive(Debug)]
pub struct Slot {
    open: Arc<Mutex<Open>>,
    user: UserId,
    from: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut o = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = o.people.get_mut(&self.user) {
            *n = n.saturating_sub(1);
        }
        o.people.retain(|_, n| *n > 0);
        if let Some(n) = o.addresses.get_mut(&self.from) {
            *n = n.saturating_sub(1);
        }
        o.addresses.retain(|_, n| *n > 0);
    }
}

#[derive(Debug, Default)]
struct FileTally {
    coverage: Coverage,
    written: Option<Instant>,
    received: bool,
}

/// The portal service.
#[derive(Clone)]
pub struct Portal {
    store: Arc<dyn Store>,
    transfers: Transfers,
    tallies: Arc<Mutex<Tallies>>,
    places: Places,
    /// Settling a job happens once, however many downloads finish together.
    settling: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Portal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Portal").finish_non_exhaustive()
    }
}

impl Portal {
    pub fn new(store: Arc<dyn Store>, transfers: Transfers) -> Self {
        Portal {
            store,
            transfers,
            tallies: Arc::default(),
            places: Places::default(),
            settling: Arc::default(),
        }
    }

    /// Download job `id`, when `user` is its recipient and it may be
    /// fetched ([`rules::fetch`]); anyone else learns nothing.
    pub async fn open(&self, user: &User, id: i64, from: IpAddr) -> Result<Opened, PortalError> {
        let job = self.store.job(JobId(id)).await.map_err(|e| match e {
            StoreError::NotFound(_) => {
                PortalError::Refused(Refusal::NotFound(format!("there is no delivery {id}")))
            }
            other => other.into(),
        })?;
        rules::fetch(&user.caller(), &job.facts())?;
        let slot = self.places.take(user.id, from).map_err(PortalError::Busy)?;
        let Some(delivery_id) = job.delivery_id else {
            return Err(Refusal::NotFound(format!("there is no delivery {id}")).into());
        };
        let delivery = self.store.delivery(delivery_id).await?;
        let share = self.store.share(delivery.share_id).await?;
        let root = ShareRoot::open(&share.abs_path, format!("share={}", share.name))?;
        let folder = SharePath::parse_dir(&delivery.folder).map_err(|e| {
            StoreError::Invalid(format!("delivery {} has a bad folder: {e}", delivery.id))
        })?;
        let landing = self.transfers.landing(job.id, delivery.id).await?;
        let known = self.transfers.known_digests(delivery.id).await?;
        let mut files: Vec<ReadyFile> = landing
            .tasks
            .iter()
            .filter(|t| t.status != ferry_domain::TaskStatus::Excluded)
            .filter(|t| landing.landed.contains(&t.path))
            .map(|t| ReadyFile {
                path: t.path.clone(),
                size: u64::try_from(t.size).unwrap_or(0),
                mtime_ns: t.mtime_ns,
                digest: known.get(&t.path).cloned().or_else(|| t.digest.clone()),
                served: u64::try_from(t.bytes_done).unwrap_or(0),
                received: t.status == ferry_domain::TaskStatus::Done,
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let waiting = landing
            .tasks
            .iter()
            .filter(|t| t.status != ferry_domain::TaskStatus::Excluded)
            .count()
            - files.len();
        Ok(Opened {
            job,
            delivery,
            share,
            root,
            folder,
            files,
            waiting,
            who: Actor::user(user.id, from),
            _slot: slot,
        })
    }

    /// Whether file `index` is still on the appliance as it was delivered:
    /// asked before a download's answer goes out, so a file that changed
    /// or went is a clear refusal, not a download cut short.
    pub async fn check(&self, opened: &Arc<Opened>, index: usize) -> Result<(), PortalError> {
        let opened = opened.clone();
        tokio::task::spawn_blocking(move || open_checked(&opened, index).map(drop))
            .await
            .map_err(|e| PortalError::Engine(EngineError::io("download", io::Error::other(e))))?
    }

    /// The bytes `range` of file `index` of an opened delivery.
    pub fn file_bytes(
        &self,
        opened: Arc<Opened>,
        index: usize,
        range: Range<u64>,
    ) -> BoxStream<'static, io::Result<Bytes>> {
        let portal = self.clone();
        let reader = FileReader::new(opened.clone(), index);
        stream::unfold(
            (reader, range.start, None::<Range<u64>>, false),
            move |(mut reader, at, served, asked)| {
                let portal = portal.clone();
                let opened = opened.clone();
                let end = range.end;
                async move {
                    // The previous buffer went to the connection.
                    if let Some(done) = served {
                        portal.served(&opened, index, done);
                    } else if !asked && end == 0 {
                        // An empty file is received once it is asked for.
                        portal.served(&opened, index, 0..0);
                    }
                    if at >= end {
                        return None;
                    }
                    let len = BUFFER.min(end - at);
                    match reader.read(at, len).await {
                        Ok(bytes) => {
                            Some((Ok(bytes), (reader, at + len, Some(at..at + len), true)))
                        }
                        Err(e) => Some((Err(e), (reader, end, None, true))),
                    }
                }
            },
        )
        .boxed()
    }

    /// The whole delivery as one zip: every ready file under its path,
    /// with its folders. Only once every file has reached the appliance,
    /// so that the zip's layout never changes under a resumed download.
    pub fn zip(&self, opened: &Opened) -> Result<ZipPlan, PortalError> {
        if !opened.complete() {
            return Err(PortalError::NotLanded(format!(
                "{} of the delivery's files",
                opened.waiting
            )));
        }
        let mut members = Vec::new();
        let mut files = Vec::new();
        let mut folders: std::collections::HashSet<String> = Default::default();
        let mut tag = blake3::Hasher::new();
        for (i, f) in opened.files.iter().enumerate() {
            let mtime = f.mtime_ns.div_euclid(1_000_000_000);
            // Each folder once, before the first file in it.
            let mut prefix = String::new();
            for part in f
                .path
                .split('/')
                .collect::<Vec<_>>()
                .split_last()
                .map_or(&[][..], |(_, d)| d)
            {
                prefix.push_str(part);
                prefix.push('/');
                if folders.insert(prefix.clone()) {
                    members.push(Member::folder(prefix.clone(), mtime));
                    files.push(None);
                }
            }
            members.push(Member::file(f.path.clone(), f.size, mtime));
            files.push(Some(i));
            tag.update(f.path.as_bytes());
            tag.update(&[0]);
            tag.update(f.etag().as_bytes());
            tag.update(&[0]);
        }
        let hex = tag.finalize().to_hex();
        Ok(ZipPlan {
            layout: Layout::plan(members)?,
            files,
            etag: format!("\"zip-{}\"", &hex[..32]),
        })
    }

    /// The bytes `range` of an opened delivery's zip.
    pub fn zip_bytes(
        &self,
        opened: Arc<Opened>,
        plan: Arc<ZipPlan>,
        range: Range<u64>,
    ) -> BoxStream<'static, io::Result<Bytes>> {
        let regions = plan.layout.regions(range);
        let portal = self.clone();
        // Each region becomes its buffers; a member's data is read in
        // buffers, with its CRC kept running when it is read from its start.
        let pieces = stream::iter(regions).flat_map(move |region| {
            let portal = portal.clone();
            let opened = opened.clone();
            let plan = plan.clone();
            match region.part {
                // Only a file has data; a folder's part is empty.
                Part::Data(m) => match plan.files[m] {
                    Some(index) => {
                        portal.zip_data(opened, index, region.skip..region.skip + region.len)
                    }
                    None => stream::empty().boxed(),
                },
                part => stream::once(async move {
                    let bytes = portal.zip_part(&opened, &plan, part).await?;
                    let from = region.skip as usize;
                    let to = from + region.len as usize;
                    // A member's header served whole: an empty file is
                    // received with it.
                    if let Part::Header(m) = part
                        && let Some(i) = plan.files[m]
                        && opened.files[i].size == 0
                        && to == bytes.len()
                    {
                        portal.served(&opened, i, 0..0);
                    }
                    Ok(Bytes::copy_from_slice(&bytes[from..to]))
                })
                .boxed(),
            }
        });
        pieces.boxed()
    }

    /// A member's data in the zip: the file's bytes, counted as served,
    /// with its CRC remembered when read whole.
    fn zip_data(
        &self,
        opened: Arc<Opened>,
        index: usize,
        range: Range<u64>,
    ) -> BoxStream<'static, io::Result<Bytes>> {
        let portal = self.clone();
        let reader = FileReader::new(opened.clone(), index);
        let crc = (range.start == 0).then(Crc::default);
        stream::unfold(
            (reader, range.start, None::<Range<u64>>, crc),
            move |(mut reader, at, served, mut crc)| {
                let portal = portal.clone();
                let opened = opened.clone();
                let end = range.end;
                async move {
                    if let Some(done) = served {
                        portal.served(&opened, index, done);
                    }
                    if at >= end {
                        let size = opened.files[index].size;
                        if let Some(crc) = crc.take()
                            && end == size
                        {
                            portal.remember_crc(&opened, index, crc.finish());
                        }
                        return None;
                    }
                    let len = BUFFER.min(end - at);
                    match reader.read(at, len).await {
                        Ok(bytes) => {
                            if let Some(c) = crc.as_mut() {
                                c.update(&bytes);
                            }
                            Some((Ok(bytes), (reader, at + len, Some(at..at + len), crc)))
                        }
                        Err(e) => Some((Err(e), (reader, end, None, None))),
                    }
                }
            },
        )
        .boxed()
    }

    /// A header, a descriptor or the central directory, whole.
    async fn zip_part(
        &self,
        opened: &Arc<Opened>,
        plan: &ZipPlan,
        part: Part,
    ) -> io::Result<Vec<u8>> {
        Ok(match part {
            Part::Header(m) => plan.layout.local_header(m),
            Part::Descriptor(m) => {
                let crc = match plan.files[m] {
                    Some(i) => self.crc(opened, i).await?,
                    None => 0,
                };
                plan.layout.descriptor(m, crc)
            }
            Part::Central => {
                let mut crcs = Vec::with_capacity(plan.files.len());
                for f in &plan.files {
                    crcs.push(match f {
                        Some(i) => self.crc(opened, *i).await?,
                        None => 0,
                    });
                }
                plan.layout.central(&crcs)
            }
            Part::Data(_) => Vec::new(),
        })
    }

    fn crc_key(opened: &Opened, index: usize) -> (ShareId, String, u64, i64) {
        let f = &opened.files[index];
        (
            opened.share.id,
            format!("{}/{}", opened.folder.as_str(), f.path),
            f.size,
            f.mtime_ns,
        )
    }

    fn remember_crc(&self, opened: &Opened, index: usize, crc: u32) {
        let key = Self::crc_key(opened, index);
        self.lock().remember(key, crc);
    }

    /// A file's CRC-32: remembered from reading it, else read now (a zip
    /// resumed past the file, or after a restart).
    async fn crc(&self, opened: &Arc<Opened>, index: usize) -> io::Result<u32> {
        let key = Self::crc_key(opened, index);
        if let Some(crc) = self.lock().crcs.get(&key) {
            return Ok(*crc);
        }
        let mut reader = FileReader::new(opened.clone(), index);
        let mut crc = Crc::default();
        let size = opened.files[index].size;
        let mut at = 0;
        while at < size {
            let len = (4 * BUFFER).min(size - at);
            crc.update(&reader.read(at, len).await?);
            at += len;
        }
        let crc = crc.finish();
        self.lock().remember(key, crc);
        Ok(crc)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tallies> {
        self.tallies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts `range` of file `index` as served to the job's recipient;
    /// writes the job's progress now and then, and settles the file (and
    /// the job) once every byte has been served.
    fn served(&self, opened: &Arc<Opened>, index: usize, range: Range<u64>) {
        crate::meters::bytes(
            crate::meters::Direction::Out,
            crate::meters::BROWSER,
            range.end.saturating_sub(range.start),
        );
        let file = &opened.files[index];
        let job = opened.job.id;
        let (write, received) = {
            let mut t = self.lock();
            // A file's first bytes served before a restart are kept in its
            // task (as a prefix); the rest of the tally lives here.
            let tally = t
                .coverage
                .entry((job, file.path.clone()))
                .or_insert_with(|| FileTally {
                    coverage: Coverage::from_prefix(file.served),
                    written: None,
                    received: file.received,
                });
            tally.coverage.add(range);
            let whole = tally.coverage.is_whole(file.size);
            let received = whole && !tally.received;
            tally.received |= whole;
            let due = tally.written.is_none_or(|w| w.elapsed() >= PROGRESS_EVERY);
            if due || received {
                tally.written = Some(Instant::now());
            }
            let write = (due && !whole).then(|| tally.coverage.prefix());
            (write, received)
        };
        if write.is_none() && !received {
            return;
        }
        let portal = self.clone();
        let opened = opened.clone();
        tokio::spawn(async move {
            let path = &opened.files[index].path;
            if let Some(bytes) = write
                && let Err(e) = portal
                    .store
                    .task_progress(job, path, i64::try_from(bytes).unwrap_or(i64::MAX))
                    .await
            {
                log::error!(job_id = job.0; "cannot record the progress of {path} in job {job}: {e}");
            }
            if received {
                let key = (job, path.clone());
                match portal.received(&opened, index).await {
                    // Recorded in the store: the tally's work is done.
                    Ok(()) => {
                        portal.lock().coverage.remove(&key);
                    }
                    // Tried again with the next bytes served.
                    Err(e) => {
                        log::error!(job_id = job.0; "cannot record {path} of job {job} as received: {e}");
                        if let Some(t) = portal.lock().coverage.get_mut(&key) {
                            t.received = false;
                        }
                    }
                }
            }
        });
    }

    /// Every byte of a file has been served: its task is done, and the job
    /// too once every file is.
    async fn received(&self, opened: &Opened, index: usize) -> Result<(), PortalError> {
        let file = &opened.files[index];
        let job = opened.job.id;
        let _one = self.settling.lock().await;
        let target = Target::Download {
            job: opened.job.clone(),
            delivery: opened.delivery.clone(),
            share: opened.share.clone(),
        };
        let path = SharePath::parse(&file.path).map_err(|e| {
            StoreError::Invalid(format!("job {job} has a bad path {:?}: {e}", file.path))
        })?;
        self.transfers.file_done(&target, job, &path, None).await?;
        log::info!(job_id = job.0; "{} of job {job} received over HTTPS", file.path);
        let now = self.store.job(job).await?;
        if now.status != ferry_domain::JobStatus::Done
            && self.transfers.all_files_done(job).await? == 0
        {
            self.transfers
                .settle(job, &Ending::Done, &target, opened.who)
                .await?;
        }
        Ok(())
    }
}

/// Reads one file of an opened delivery, checking once that it is still
/// the file delivered.
struct FileReader {
    opened: Arc<Opened>,
    index: usize,
    file: Option<Arc<std::fs::File>>,
}

impl FileReader {
    fn new(opened: Arc<Opened>, index: usize) -> Self {
        FileReader {
            opened,
            index,
            file: None,
        }
    }

    async fn read(&mut self, at: u64, len: u64) -> io::Result<Bytes> {
        let file = match &self.file {
            Some(f) => f.clone(),
            None => {
                let (opened, index) = (self.opened.clone(), self.index);
                let f = tokio::task::spawn_blocking(move || open_checked(&opened, index))
                    .await
                    .map_err(io::Error::other)?
                    .map_err(|e| io::Error::other(e.to_string()))?;
                self.file = Some(f.clone());
                f
            }
        };
        let len = usize::try_from(len).map_err(io::Error::other)?;
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0; len];
            file.read_exact_at(&mut buf, at)?;
            Ok(Bytes::from(buf))
        })
        .await
        .map_err(io::Error::other)?
    }
}

/// Opens file `index` of a delivery, checking it is still the file that
/// was delivered (blocking: a name may lead to a slow disk).
fn open_checked(opened: &Opened, index: usize) -> Result<Arc<std::fs::File>, PortalError> {
    let f = &opened.files[index];
    let path = SharePath::parse(&f.path)
        .and_then(|p| opened.folder.join(&p))
        .map_err(|e| StoreError::Invalid(format!("{:?}: {e}", f.path)))?;
    let (file, found) = opened.root.open_file(&path)?;
    if found.size != f.size || found.mtime_ns != f.mtime_ns {
        return Err(PortalError::Changed(f.path.clone()));
    }
    Ok(Arc::new(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_per_person_and_per_address_and_given_back() {
        let places = Places::default();
        let office = IpAddr::from([10, 0, 0, 1]);
        let held: Vec<Slot> = (0..PER_PERSON)
            .map(|_| places.take(UserId(1), office).unwrap())
            .collect();
        assert_eq!(places.take(UserId(1), office).unwrap_err(), PER_PERSON);
        // Others at the same address, up to the address's bound.
        let others: Vec<Slot> = (0..PER_ADDRESS - PER_PERSON)
            .map(|i| places.take(UserId(10 + i as i64), office).unwrap())
            .collect();
        assert_eq!(places.take(UserId(99), office).unwrap_err(), PER_ADDRESS);
        assert!(places.take(UserId(99), IpAddr::from([10, 0, 0, 2])).is_ok());
        drop(held);
        drop(others);
        assert!(places.take(UserId(1), office).is_ok());
        assert!(places.open.lock().unwrap().people.len() <= 1);
    }
}
