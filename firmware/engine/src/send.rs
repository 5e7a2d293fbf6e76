//! The sending side of a session: runs a `ferry_proto::Sender` over a
//! session's [`Link`], one chunk stream per chunk, many in flight.
//!
//! A plan is either known whole ([`send`]) or grows while the session runs
//! ([`send_stream`]): a delivery's download starts on the files that have
//! landed on the appliance and takes the others as their upload finishes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use ferry_proto::{
    ChunkHeader, ChunkLayout, ChunkRef, Digest, FileId, Frame, Priority, Sender, SenderEvent,
    SharePath,
};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::JoinSet;

use crate::congestion::PaceHandle;
use crate::control::Control;
use crate::error::EngineError;
use crate::files::{SourceFile, plan_batch, read_piece};
use crate::link::{ChunkOut, Link};
use crate::pacer::{Pacer, slice_len};
use crate::progress::{FileEvent, Progress};
use crate::stop::StopSignal;

/// Bytes read from a file and written to a stream at a time.
const PIECE: usize = 1 << 20;

/// How much a sender keeps in flight.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// Chunk streams open at once (small files travel many at a time).
    pub max_streams: usize,
    /// Chunk bytes in flight at once (large chunks are bounded by this).
    pub max_bytes_in_flight: u64,
    /// A cap on bytes in flight that its owner may change while the
    /// session runs (the appliance shares its memory among sessions).
    pub limit: Option<Arc<AtomicU64>>,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            max_streams: 128,
            max_bytes_in_flight: 64 << 20,
            limit: None,
        }
    }
}

impl SendOptions {
    /// Bytes that may be in flight now.
    fn in_flight_cap(&self) -> u64 {
        match &self.limit {
            Some(l) => self.max_bytes_in_flight.min(l.load(Ordering::Relaxed)),
            None => self.max_bytes_in_flight,
        }
    }
}

/// Everything a sending session needs besides its files.
#[derive(Debug, Clone)]
pub struct Sending {
    pub layout: ChunkLayout,
    pub opts: SendOptions,
    pub progress: Arc<Progress>,
    /// Per-file news (delivered, skipped), for job bookkeeping.
    pub events: Option<UnboundedSender<FileEvent>>,
    pub stop: StopSignal,
    /// Check every receipt: a file counts only when every byte was sent
    /// from here or the receiver's digest of what it held matches ours.
    /// The appliance checks its recipients; a client trusts its appliance.
    pub verify_receipts: bool,
    /// The session's pace: bytes go out no faster than its target rate
    /// (see [`crate::pacer`]), read again before each slice so that a
    /// repace takes effect at once.
    pub pace: Option<PaceHandle>,
}

impl Sending {
    pub fn new(layout: ChunkLayout) -> Self {
        Sending {
            layout,
            opts: SendOptions::default(),
            progress: Arc::default(),
            events: None,
            stop: StopSignal::new(),
            verify_receipts: false,
            pace: None,
        }
    }
}

/// A change to an open plan.
#[derive(Debug)]
pub enum PlanUpdate {
    /// More files to send.
    Files(Vec<SourceFile>),
    /// A file's new priority.
    Priority { path: SharePath, priority: Priority },
    /// No more files will come.
    End,
}

/// What a finished session did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    pub files: u64,
    pub bytes_total: u64,
    pub bytes_transferred: u64,
    pub bytes_skipped: u64,
}

impl Outcome {
    pub(crate) fn from_progress(p: &Progress) -> Self {
        let s = p.snapshot();
        Outcome {
            files: s.files_total,
            bytes_total: s.bytes_total,
            bytes_transferred: s.bytes_transferred,
            bytes_skipped: s.bytes_skipped,
        }
    }
}

/// Sends `files`, all known now.
pub async fn send(
    conn: &Link,
    control: Control,
    files: Vec<SourceFile>,
    s: Sending,
) -> Result<Outcome, EngineError> {
    send_planned(conn, control, Planned::new(files, s.layout)?, s).await
}

/// A sender's whole plan, made before its session opens so that the plan's
/// first frames can travel with the greeting
/// ([`crate::handshake::Introduction`]).
#[derive(Debug)]
pub struct Planned {
    proto: Sender,
    files: Vec<SourceFile>,
}

impl Planned {
    pub fn new(files: Vec<SourceFile>, layout: ChunkLayout) -> Result<Self, EngineError> {
        let (files, plan) = plan_batch(files, 0);
        let mut proto = Sender::new(layout, plan)?;
        know_digests(&mut proto, &files, 0);
        Ok(Planned { proto, files })
    }

    /// Takes the plan's opening frames, about `budget` encoded bytes of
    /// them: what fits in the first flight. The rest follows as usual.
    pub fn opening(&mut self, budget: usize) -> Vec<Frame> {
        let mut frames = Vec::new();
        let mut used = 0;
        while used < budget {
            let Some(frame) = self.proto.poll_frame() else {
                break;
            };
            used += ferry_proto::frame::encode(&frame).map_or(budget, |b| b.len());
            frames.push(frame);
        }
        frames
    }
}

/// Sends a plan made beforehand, whose opening frames may already be out.
pub async fn send_planned(
    conn: &Link,
    control: Control,
    planned: Planned,
    s: Sending,
) -> Result<Outcome, EngineError> {
    let Planned { proto, files } = planned;
    let (count, total) = (
        proto.file_count() as u64,
        files.iter().map(|f| f.size).sum(),
    );
    s.progress.files_total.store(count, Ordering::Relaxed);
    s.progress.bytes_total.store(total, Ordering::Relaxed);
    drive(conn, control, proto, files, None, s).await
}

/// Sends files as they arrive on `updates`, until [`PlanUpdate::End`].
pub async fn send_stream(
    conn: &Link,
    control: Control,
    updates: UnboundedReceiver<PlanUpdate>,
    s: Sending,
) -> Result<Outcome, EngineError> {
    let proto = Sender::open(s.layout);
    drive(conn, control, proto, Vec::new(), Some(updates), s).await
}

/// Tells the protocol the digests known of files numbered from `first`.
fn know_digests(proto: &mut Sender, files: &[SourceFile], first: u32) {
    for (i, f) in files.iter().enumerate() {
        if let Some(d) = f.digest {
            proto.know(FileId(first + i as u32), d);
        }
    }
}

async fn drive(
    conn: &Link,
    mut control: Control,
    mut proto: Sender,
    files: Vec<SourceFile>,
    updates: Option<UnboundedReceiver<PlanUpdate>>,
    s: Sending,
) -> Result<Outcome, EngineError> {
    if s.verify_receipts {
        proto.verify_receipts();
    }
    let result = run(conn, &mut control, &mut proto, files, updates, &s).await;
    if let Err(e) = &result {
        tell_peer(&control, e);
    }
    control.finish().await;
    if let Err(e) = &result {
        crate::error::close_with(conn, e);
    }
    if result.is_ok() {
        // The receiver closes the connection once it has read Bye; waiting
        // for that makes sure Bye arrived before we go away.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), conn.closed()).await;
    }
    result.map(|()| Outcome::from_progress(&s.progress))
}

/// Sends the peer an error frame unless the error came from the peer or
/// the connection is gone.
pub(crate) fn tell_peer(control: &Control, e: &EngineError) {
    match e {
        EngineError::Proto(ferry_proto::ProtoError::Peer { .. })
        | EngineError::Connection(_)
        | EngineError::Lost(_) => {}
        e => control.send(Frame::Error {
            code: e.code(),
            message: e.to_string(),
        }),
    }
}

/// Applies a change to an open plan.
fn apply_update(
    proto: &mut Sender,
    files: &mut Vec<SourceFile>,
    update: PlanUpdate,
    progress: &Progress,
) -> Result<(), EngineError> {
    match update {
        PlanUpdate::Files(batch) => {
            let first = files.len() as u32;
            let (batch, plan) = plan_batch(batch, first);
            Progress::add(&progress.files_total, plan.len() as u64);
            Progress::add(&progress.bytes_total, plan.iter().map(|f| f.size).sum());
            proto.add_files(plan)?;
            know_digests(proto, &batch, first);
            files.extend(batch);
        }
        PlanUpdate::Priority { path, priority } => {
            if let Some(i) = files.iter().position(|f| f.path == path) {
                proto.set_priority(FileId(i as u32), priority);
            }
        }
        PlanUpdate::End => proto.end_plan(),
    }
    Ok(())
}

/// One file's chunks, by index, with our digest of each.
type ChunkDigests = Vec<(u32, Digest)>;

async fn run(
    conn: &Link,
    control: &mut Control,
    proto: &mut Sender,
    mut files: Vec<SourceFile>,
    mut updates: Option<UnboundedReceiver<PlanUpdate>>,
    s: &Sending,
) -> Result<(), EngineError> {
    let progress = &s.progress;
    let mut tasks: JoinSet<(ChunkRef, u32, Result<Digest, EngineError>)> = JoinSet::new();
    // Our digests of chunks receivers claim to hold, being made.
    let mut hashing: JoinSet<(FileId, Result<ChunkDigests, EngineError>)> = JoinSet::new();
    let mut bytes_in_flight = 0u64;
    let mut sequence = 0u32;
    let pacer = Pacer::new(s.pace.clone());
    loop {
        while let Some(frame) = proto.poll_frame() {
            control.send(frame);
        }
        while let Some(ev) = proto.poll_event() {
            match ev {
                SenderEvent::Skipped { file, bytes, whole } => {
                    Progress::add(&progress.bytes_skipped, bytes);
                    if whole {
                        Progress::add(&progress.files_done, 1);
                        if let (Some(plan), Some(tx)) = (proto.file(file), &s.events) {
                            let _ = tx.send(FileEvent::Skipped {
                                path: plan.path.clone(),
                                size: plan.size,
                            });
                        }
                    }
                }
                SenderEvent::Delivered { file, digest } => {
                    Progress::add(&progress.files_done, 1);
                    if let (Some(plan), Some(tx)) = (proto.file(file), &s.events) {
                        let _ = tx.send(FileEvent::Done {
                            path: plan.path.clone(),
                            size: plan.size,
                            mtime_ns: plan.mtime_ns,
                            digest,
                        });
                    }
                }
                SenderEvent::HashHeld { file, chunks } => {
                    let source = files[file.0 as usize].clone();
                    let layout = s.layout;
                    hashing.spawn(async move {
                        let r = tokio::task::spawn_blocking(move || {
                            source.chunk_digests(layout, &chunks)
                        })
                        .await
                        .unwrap_or_else(|e| Err(EngineError::task("hashing", e)));
                        (file, r)
                    });
                }
                SenderEvent::Finished => {}
            }
        }
        if proto.is_finished() {
            return Ok(());
        }
        while tasks.len() < s.opts.max_streams && bytes_in_flight < s.opts.in_flight_cap() {
            let Some(chunk) = proto.next_chunk() else {
                break;
            };
            let len = proto.chunk_len(chunk).unwrap_or(0);
            let priority = stream_priority(
                proto
                    .file(chunk.file)
                    .map(|f| f.priority)
                    .unwrap_or_default(),
                sequence,
            );
            sequence = sequence.wrapping_add(1);
            bytes_in_flight += u64::from(len);
            let (conn, source, progress, pacer) = (
                conn.clone(),
                files[chunk.file.0 as usize].clone(),
                progress.clone(),
                pacer.clone(),
            );
            let offset = proto.layout().offset(chunk.index);
            tasks.spawn(async move {
                let to = Outgoing {
                    conn: &conn,
                    pacer: &pacer,
                    progress: &progress,
                };
                let r = send_chunk(to, source, chunk, offset, len, priority).await;
                (chunk, len, r)
            });
        }
        tokio::select! {
            biased;
            () = s.stop.stopped() => {
                let (code, message) = s.stop.reason();
                return Err(EngineError::Stopped { code, message });
            }
            frame = control.recv() => match frame {
                Some(Ok(frame)) => proto.handle_frame(frame)?,
                Some(Err(e)) => return Err(e),
                None => return Err(EngineError::Closed("the receiver closed the session".into())),
            },
            update = async { updates.as_mut()?.recv().await }, if updates.is_some() => match update {
                Some(update) => apply_update(proto, &mut files, update, progress)?,
                // Whoever fed the plan went away without ending it.
                None => {
                    updates = None;
                    proto.end_plan();
                }
            },
            Some(hashed) = hashing.join_next(), if !hashing.is_empty() => {
                let (file, digests) = hashed.map_err(|e| EngineError::task("hashing", e))?;
                proto.held_hashed(file, digests?)?;
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                let (chunk, len, result) = done.map_err(|e| EngineError::task("chunk", e))?;
                bytes_in_flight -= u64::from(len);
                match result {
                    Ok(digest) => proto.chunk_sent(chunk, digest)?,
                    Err(
                        e @ (EngineError::Connection(_)
                        | EngineError::Lost(_)
                        | EngineError::Proto(_)),
                    ) => return Err(e),
                    Err(
                        e @ (EngineError::SourceChanged { .. }
                        | EngineError::Io { .. }
                        | EngineError::NotFound { .. }
                        | EngineError::NotAFolder { .. }
                        | EngineError::OutsideShare { .. }
                        | EngineError::Task { .. }),
                    ) => return Err(e),
                    // Only this chunk's stream failed: it goes again.
                    Err(e) => {
                        log::debug!("chunk {chunk:?} failed, sending again: {e}");
                        proto.chunk_failed(chunk);
                    }
                }
            }
        }
    }
}

/// Puts one chunk on its own stream: header, bytes, BLAKE3 digest.
/// Where a chunk's bytes go, and what they are counted against.
#[derive(Clone, Copy)]
struct Outgoing<'a> {
    conn: &'a Link,
    pacer: &'a Pacer,
    progress: &'a Progress,
}

async fn send_chunk(
    to: Outgoing<'_>,
    source: SourceFile,
    chunk: ChunkRef,
    offset: u64,
    len: u32,
    priority: i32,
) -> Result<Digest, EngineError> {
    let mut stream = to.conn.open_chunk(priority).await?;
    stream
        .write_all(&ChunkHeader { chunk, len }.encode())
        .await?;
    let file = Arc::new(
        tokio::task::spawn_blocking({
            let source = source.clone();
            move || source.open()
        })
        .await
        .map_err(|e| EngineError::task("reader", e))??,
    );
    let mut hasher = blake3::Hasher::new();
    let mut done = 0u64;
    // Read the next piece while the current one is being written.
    let read = |at: u64, n: usize, mut hasher: blake3::Hasher| {
        let file = file.clone();
        let path = source.path.clone();
        tokio::task::spawn_blocking(move || {
            let bytes = read_piece(&file, at, n, &path)?;
            hasher.update(&bytes);
            Ok::<(Bytes, blake3::Hasher), EngineError>((bytes, hasher))
        })
    };
    let first = PIECE.min(len as usize);
    let mut pending = Some(read(offset, first, hasher.clone()));
    while let Some(job) = pending.take() {
        let (bytes, h) = job.await.map_err(|e| EngineError::task("reader", e))??;
        hasher = h;
        let n = bytes.len() as u64;
        done += n;
        if done < u64::from(len) {
            let next = PIECE.min((u64::from(len) - done) as usize);
            pending = Some(read(offset + done, next, hasher.clone()));
        }
        write_paced(&mut stream, bytes, to).await?;
    }
    let digest = Digest::from(hasher.finalize());
    stream.write_all(&digest.0).await?;
    stream.finish().await.map_err(|e| match e {
        EngineError::Stream(why) => EngineError::Stream(format!(
            "chunk {} of file {}: {why}",
            chunk.index, chunk.file
        )),
        e => e,
    })?;
    Ok(digest)
}

/// Writes a piece in slices, each in its turn at the session's target.
async fn write_paced(
    stream: &mut ChunkOut,
    mut bytes: Bytes,
    to: Outgoing<'_>,
) -> Result<(), EngineError> {
    while !bytes.is_empty() {
        let n = match to.pacer.target() {
            Some(rate) => slice_len(rate).min(bytes.len()),
            None => bytes.len(),
        };
        let slice = bytes.split_to(n);
        to.pacer.admit(n).await;
        to.progress.byte_moved();
        stream.write(slice).await?;
        Progress::add(&to.progress.bytes_transferred, n as u64);
    }
    Ok(())
}

/// QUIC sends higher-priority streams first (lanes take chunks in the order
/// they are opened, which is already by priority) and shares bandwidth among
/// equals. Chunks are ranked by their file's priority, then by the order they
/// were opened, so that chunks complete one after another (a receiver can
/// checkpoint and commit early) instead of all together at the end. The
/// order wraps every 2^20 chunks (8 TiB at the default size), which only
/// reorders a few chunks once.
fn stream_priority(priority: Priority, sequence: u32) -> i32 {
    (i32::from(priority.get()) << 20) | (0xF_FFFF - (sequence & 0xF_FFFF)) as i32
}
