//! The receiving side of a session: runs a `ferry_proto::Receiver` over a
//! session's [`Link`], writes verified chunks into part files beneath the
//! sink, checkpoints resume state every second, and commits complete files.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ferry_proto::session::{Admission, LocalState};
use ferry_proto::{Digest, FileId, Priority, Receiver, ReceiverEvent, SharePath};
use tokio::sync::OnceCell;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::JoinSet;

use crate::claims::{Claim, Claims};
use crate::control::Control;
use crate::error::EngineError;
use crate::files::{PartFile, Sink};
use crate::link::{ChunkEnd, ChunkIn, Link};
use crate::progress::{FileEvent, Progress};
use crate::send::{Outcome, tell_peer};
use crate::stop::StopSignal;

/// Bytes gathered from the network before one write to disk.
const WRITE_BATCH: usize = 1 << 20;

/// Write buffers are recycled: allocating a fresh megabyte for every batch
/// costs page faults that show up as a fifth of the receiver's CPU.
#[derive(Default)]
struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    const KEEP: usize = 64;

    fn take(&self) -> Vec<u8> {
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(WRITE_BATCH))
    }

    fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < Self::KEEP {
            free.push(buf);
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReceiveOptions {
    /// How often written chunks are made durable and recorded for resume.
    pub checkpoint_every: Duration,
    /// Files committed (fsync, rename) at once.
    pub commit_parallelism: usize,
    /// How long to wait for an older session to let go of a file.
    pub claim_wait: Duration,
}

impl Default for ReceiveOptions {
    fn default() -> Self {
        ReceiveOptions {
            checkpoint_every: Duration::from_secs(1),
            commit_parallelism: 8,
            claim_wait: Duration::from_secs(30),
        }
    }
}

type PartCell = Arc<OnceCell<Arc<PartFile>>>;

#[derive(Default)]
struct Core {
    proto: Receiver,
    buffers: Arc<BufferPool>,
    parts: HashMap<FileId, PartCell>,
    /// Files whose part file starts over (nothing usable was held).
    fresh: HashSet<FileId>,
    /// Files with chunks written since the last checkpoint.
    dirty: HashSet<FileId>,
}

type Shared = Arc<Mutex<Core>>;

fn lock(core: &Shared) -> MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where claims are registered, for a daemon receiving many sessions.
#[derive(Debug, Clone)]
pub struct ClaimScope {
    pub claims: Arc<Claims>,
    pub session: u64,
}

/// Everything a receiving session needs.
pub struct Receiving {
    pub sink: Sink,
    pub opts: ReceiveOptions,
    pub progress: Arc<Progress>,
    /// Per-file news (done, skipped), for job bookkeeping.
    pub events: Option<UnboundedSender<FileEvent>>,
    pub stop: StopSignal,
    pub claims: Option<ClaimScope>,
    /// When set, only files it accepts may be received (a delivery's
    /// declared files); any other path ends the session.
    pub allowed: Option<Allowed>,
    /// Priority changes to ask of the sender, by path.
    pub reprioritise: Option<UnboundedReceiver<(SharePath, Priority)>>,
}

/// Decides whether a planned path may be received.
pub type Allowed = Arc<dyn Fn(&SharePath) -> bool + Send + Sync>;

impl Receiving {
    pub fn new(sink: Sink) -> Self {
        Receiving {
            sink,
            opts: ReceiveOptions::default(),
            progress: Arc::default(),
            events: None,
            stop: StopSignal::new(),
            claims: None,
            allowed: None,
            reprioritise: None,
        }
    }
}

impl std::fmt::Debug for Receiving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiving")
            .field("sink", &self.sink)
            .finish_non_exhaustive()
    }
}

/// Receives a session's files.
pub async fn receive(
    conn: &Link,
    mut control: Control,
    mut r: Receiving,
) -> Result<Outcome, EngineError> {
    let core: Shared = Arc::default();
    let mut held: Vec<Claim> = Vec::new();
    let mut chunks = JoinSet::new();
    let mut checkpointing = None;
    let result = run(
        conn,
        &mut control,
        &mut r,
        &core,
        &mut held,
        &mut chunks,
        &mut checkpointing,
    )
    .await;
    // Whatever happened, keep what arrived: stop the chunk streams, let a
    // checkpoint under way finish (two must never write one state file),
    // then make the written chunks durable and record them.
    chunks.abort_all();
    while chunks.join_next().await.is_some() {}
    if let Some(h) = checkpointing {
        let _ = h.await;
    }
    if let Err(e) = checkpoint(&core, &r.sink).await {
        log::warn!("final checkpoint failed: {e}");
    }
    drop(held);
    if let Err(e) = &result {
        tell_peer(&control, e);
    }
    control.finish().await;
    match &result {
        Ok(()) => conn.close(0, b"done"),
        Err(e) => crate::error::close_with(conn, e),
    }
    result.map(|()| Outcome::from_progress(&r.progress))
}

async fn run(
    conn: &Link,
    control: &mut Control,
    r: &mut Receiving,
    core: &Shared,
    held: &mut Vec<Claim>,
    chunks: &mut JoinSet<Result<(), EngineError>>,
    checkpointing: &mut Option<tokio::task::JoinHandle<Result<(), EngineError>>>,
) -> Result<(), EngineError> {
    let mut reprioritise = r.reprioritise.take();
    let (sink, opts, progress, stop) = (&r.sink, &r.opts, &r.progress, &r.stop);
    if let Some((total, _)) = sink.capacity() {
        lock(core).proto.set_room(total);
    }
    let (events, claims, allowed) = (r.events.as_ref(), r.claims.as_ref(), r.allowed.as_ref());
    let mut commits: JoinSet<(FileId, Result<(), EngineError>)> = JoinSet::new();
    let mut to_commit: VecDeque<(FileId, Digest)> = VecDeque::new();
    let mut ticker = tokio::time::interval(opts.checkpoint_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut finished = false;
    let mut open_plan = false;
    loop {
        flush(core, control);
        let happened: Vec<ReceiverEvent> = {
            let mut c = lock(core);
            std::iter::from_fn(|| c.proto.poll_event()).collect()
        };
        for ev in happened {
            match ev {
                ReceiverEvent::PlanStarted { files, bytes } => {
                    open_plan = files.is_none();
                    progress
                        .files_total
                        .store(files.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
                    progress
                        .bytes_total
                        .store(bytes.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
                }
                ReceiverEvent::Planned { first, count } => {
                    if open_plan {
                        // An open plan has no totals up front: count as
                        // files are announced.
                        let c = lock(core);
                        let bytes: u64 = (first.0..first.0 + count)
                            .filter_map(|i| c.proto.file(FileId(i)).map(|f| f.size))
                            .sum();
                        Progress::add(&progress.files_total, u64::from(count));
                        Progress::add(&progress.bytes_total, bytes);
                    }
                    plan_files(
                        core, sink, first, count, opts, progress, events, stop, claims, held,
                        allowed,
                    )
                    .await?;
                }
                ReceiverEvent::FileComplete { file, digest } => to_commit.push_back((file, digest)),
                ReceiverEvent::Finished => finished = true,
            }
        }
        // Handling the events queued answers (a newly planned file's
        // `Have`): they go now, not when something next wakes this loop.
        flush(core, control);
        while commits.len() < opts.commit_parallelism {
            let Some((file, digest)) = to_commit.pop_front() else {
                break;
            };
            let (plan, part) = {
                let c = lock(core);
                let plan = c.proto.file(file).cloned();
                (
                    plan,
                    c.parts.get(&file).and_then(|cell| cell.get().cloned()),
                )
            };
            let Some(plan) = plan else { continue };
            let sink = sink.clone();
            commits.spawn(async move {
                let r = tokio::task::spawn_blocking(move || {
                    sink.commit(&plan, part.as_deref(), digest)
                })
                .await
                .unwrap_or_else(|e| Err(EngineError::task("commit", e)));
                (file, r)
            });
        }
        if finished && commits.is_empty() && to_commit.is_empty() {
            return Ok(());
        }
        tokio::select! {
            biased;
            () = stop.stopped() => {
                let (code, message) = stop.reason();
                return Err(EngineError::Stopped { code, message });
            }
            // Before the busy branches, so a steady stream of chunks cannot
            // starve the checkpoints that make resume possible.
            _ = ticker.tick() => {
                let busy = checkpointing.as_ref().is_some_and(|h| !h.is_finished());
                if !busy {
                    if let Some(h) = checkpointing.take() {
                        h.await.map_err(|e| EngineError::task("checkpoint", e))??;
                    }
                    let (core, sink) = (core.clone(), sink.clone());
                    *checkpointing = Some(tokio::spawn(async move { checkpoint(&core, &sink).await }));
                }
            }
            change = async { reprioritise.as_mut()?.recv().await }, if reprioritise.is_some() => match change {
                Some((path, priority)) => {
                    let c = lock(core);
                    let file = (0..c.proto.file_count() as u32)
                        .map(FileId)
                        .find(|id| c.proto.file(*id).is_some_and(|f| f.path == path));
                    if let Some(file) = file {
                        control.send(ferry_proto::Frame::Reprioritised { file, priority });
                    }
                }
                None => reprioritise = None,
            },
            Some(done) = commits.join_next(), if !commits.is_empty() => {
                let (file, r) = done.map_err(|e| EngineError::task("commit", e))?;
                r?;
                let mut c = lock(core);
                c.proto.committed(file);
                c.parts.remove(&file);
                c.dirty.remove(&file);
                Progress::add(&progress.files_done, 1);
                if let (Some(plan), Some(tx)) = (c.proto.file(file), events) {
                    let digest = c
                        .proto
                        .resume_state(file)
                        .map(|(_, d)| Digest::of_file(d))
                        .unwrap_or_default();
                    let _ = tx.send(FileEvent::Done {
                            path: plan.path.clone(),
                            size: plan.size,
                            mtime_ns: plan.mtime_ns,
                            digest,
                        });
                }
            }
            Some(done) = chunks.join_next(), if !chunks.is_empty() => {
                match done {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(e) if e.is_cancelled() => {}
                    Err(e) => return Err(EngineError::task("chunk", e)),
                }
            }
            frame = control.recv() => match frame {
                Some(Ok(frame)) => lock(core).proto.handle_frame(frame)?,
                Some(Err(e)) => return Err(e),
                None => return Err(EngineError::Closed("the sender closed the session".into())),
            },
            stream = conn.accept_chunk() => {
                let stream = stream?;
                let (core, sink, progress) = (core.clone(), sink.clone(), progress.clone());
                chunks.spawn(async move { receive_chunk(stream, core, sink, progress).await });
            }
        }
    }
}

/// Sends the frames the receiver's state machine has queued.
fn flush(core: &Shared, control: &Control) {
    let mut c = lock(core);
    while let Some(frame) = c.proto.poll_frame() {
        control.send(frame);
    }
}

/// Looks up what is held of newly planned files and answers the sender.
#[allow(clippy::too_many_arguments)]
async fn plan_files(
    core: &Shared,
    sink: &Sink,
    first: FileId,
    count: u32,
    opts: &ReceiveOptions,
    progress: &Progress,
    events: Option<&UnboundedSender<FileEvent>>,
    stop: &StopSignal,
    claims: Option<&ClaimScope>,
    held: &mut Vec<Claim>,
    allowed: Option<&Allowed>,
) -> Result<(), EngineError> {
    let (plans, layout) = {
        let c = lock(core);
        let plans: Vec<_> = (first.0..first.0 + count)
            .filter_map(|i| c.proto.file(FileId(i)).cloned())
            .collect();
        (plans, c.proto.layout().unwrap_or_default())
    };
    if let Some(allowed) = allowed
        && let Some(p) = plans.iter().find(|p| !allowed(&p.path))
    {
        return Err(EngineError::NotAllowed {
            path: p.path.to_string(),
        });
    }
    if let Some(scope) = claims {
        for plan in &plans {
            let key = sink.claim_key(&plan.path)?;
            let claim = scope
                .claims
                .claim(key, scope.session, stop, opts.claim_wait)
                .await
                .ok_or_else(|| EngineError::Stopped {
                    code: ferry_proto::ErrorCode::Superseded,
                    message: format!("{} is being received by another session", plan.path),
                })?;
            held.push(claim);
        }
    }
    let looked_up = {
        let (sink, plans) = (sink.clone(), plans.clone());
        tokio::task::spawn_blocking(move || {
            plans
                .iter()
                .map(|p| sink.local_state(p, layout))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| EngineError::task("lookup", e))??
    };
    let mut c = lock(core);
    for (plan, local) in plans.iter().zip(looked_up) {
        match &local {
            LocalState::Complete(_) => {
                Progress::add(&progress.bytes_skipped, plan.size);
                Progress::add(&progress.files_done, 1);
                if let Some(tx) = events {
                    let _ = tx.send(FileEvent::Skipped {
                        path: plan.path.clone(),
                        size: plan.size,
                    });
                }
            }
            LocalState::Partial { have, .. } => {
                let bytes: u64 = have
                    .present()
                    .filter_map(|i| layout.chunk_len(plan.size, i))
                    .map(u64::from)
                    .sum();
                Progress::add(&progress.bytes_skipped, bytes);
            }
            LocalState::Nothing => {
                c.fresh.insert(plan.id);
            }
        }
        c.proto.set_local(plan.id, local)?;
    }
    Ok(())
}

/// Receives one chunk stream: header, bytes (written as they come), digest.
async fn receive_chunk(
    mut stream: ChunkIn,
    core: Shared,
    sink: Sink,
    progress: Arc<Progress>,
) -> Result<(), EngineError> {
    let header = match stream.header().await {
        Ok(h) => h,
        // A stream reset before its header: nothing was started.
        Err(ChunkEnd::Abandoned) => return Ok(()),
        Err(ChunkEnd::Lost(e)) => return Err(e),
    };
    progress.byte_moved();
    let chunk = header.chunk;
    let (admission, plan, cell, fresh, pool) = {
        let mut c = lock(&core);
        let admission = c.proto.admit_chunk(&header)?;
        let plan = c.proto.file(chunk.file).cloned();
        let cell = c.parts.entry(chunk.file).or_default().clone();
        let fresh = c.fresh.contains(&chunk.file);
        (admission, plan, cell, fresh, c.buffers.clone())
    };
    let (Admission::Write { offset }, Some(plan)) = (admission, plan) else {
        // Already held or being written by another stream: drain and drop.
        stream.drain().await;
        return Ok(());
    };
    let result = async {
        let part = cell
            .get_or_try_init(|| async {
                let (sink, plan) = (sink.clone(), plan.clone());
                tokio::task::spawn_blocking(move || sink.open_part(&plan, fresh).map(Arc::new))
                    .await
                    .map_err(|e| EngineError::task("open", e))?
            })
            .await
            .map_err(StreamEnd::Fatal)?
            .clone();
        let mut hasher = blake3::Hasher::new();
        let mut remaining = header.len as usize;
        let mut at = offset;
        // Pieces arrive a packet at a time; gathering them into one buffer
        // lets BLAKE3 hash many blocks at once and the disk take big writes.
        let mut batch = pool.take();
        while remaining > 0 {
            let room = remaining.min(WRITE_BATCH.saturating_sub(batch.len()).max(1));
            match stream.read_into(&mut batch, room).await {
                Ok(n) => remaining -= n,
                Err(e) => {
                    pool.give(batch);
                    return Err(StreamEnd::from(e));
                }
            }
            if batch.len() >= WRITE_BATCH || remaining == 0 {
                let part = part.clone();
                let path = plan.path.clone();
                let n = batch.len() as u64;
                let written = tokio::task::spawn_blocking(move || {
                    let r = part
                        .write_at(&batch, at)
                        .map_err(|e| EngineError::io(path, e));
                    hasher.update(&batch);
                    (r, hasher, batch)
                })
                .await
                .map_err(|e| StreamEnd::Fatal(EngineError::task("write", e)))?;
                let (r, h, b) = written;
                hasher = h;
                batch = b;
                batch.clear();
                r.map_err(StreamEnd::Fatal)?;
                at += n;
            }
        }
        pool.give(batch);
        let mut claimed = [0u8; Digest::LEN];
        stream
            .read_exact(&mut claimed)
            .await
            .map_err(StreamEnd::from)?;
        Ok((Digest::from(hasher.finalize()), Digest(claimed)))
    }
    .await;
    let mut c = lock(&core);
    match result {
        Ok((computed, claimed)) => {
            if c.proto.chunk_written(chunk, computed, claimed) {
                c.dirty.insert(chunk.file);
                Progress::add(&progress.bytes_transferred, u64::from(header.len));
            } else {
                log::warn!(
                    "chunk {} of {} failed its digest; asking for it again",
                    chunk.index,
                    plan.path
                );
            }
            Ok(())
        }
        Err(StreamEnd::Abandoned) => {
            c.proto.chunk_abandoned(chunk);
            Ok(())
        }
        Err(StreamEnd::Lost(e) | StreamEnd::Fatal(e)) => {
            c.proto.chunk_abandoned(chunk);
            Err(e)
        }
    }
}

/// How a chunk stream ended early.
enum StreamEnd {
    /// The sender reset or cut the stream: it will be sent again.
    Abandoned,
    /// The connection is gone.
    Lost(EngineError),
    /// Our side failed (disk full, IO error): the session must end.
    Fatal(EngineError),
}

impl From<ChunkEnd> for StreamEnd {
    fn from(e: ChunkEnd) -> Self {
        match e {
            ChunkEnd::Abandoned => StreamEnd::Abandoned,
            ChunkEnd::Lost(e) => StreamEnd::Lost(e),
        }
    }
}

/// Makes written chunks durable and records them for resume.
async fn checkpoint(core: &Shared, sink: &Sink) -> Result<(), EngineError> {
    let work: Vec<_> = {
        let mut c = lock(core);
        let layout = c.proto.layout().unwrap_or_default();
        let dirty: Vec<FileId> = c.dirty.drain().collect();
        dirty
            .into_iter()
            .filter_map(|id| {
                let part = c.parts.get(&id)?.get()?.clone();
                let plan = c.proto.file(id)?.clone();
                let (have, digests) = c.proto.resume_state(id)?;
                // A complete file is about to be committed; recording it
                // would only cost fsyncs (thousands, for a frame sequence).
                if have.is_complete() {
                    return None;
                }
                Some((plan, part, have.clone(), digests.to_vec(), layout))
            })
            .collect()
    };
    if work.is_empty() {
        return Ok(());
    }
    let sink = sink.clone();
    tokio::task::spawn_blocking(move || {
        for (plan, part, have, digests, layout) in work {
            sink.checkpoint(&plan, layout, &part, &have, &digests)?;
        }
        Ok(())
    })
    .await
    .map_err(|e| EngineError::task("checkpoint", e))?
}
