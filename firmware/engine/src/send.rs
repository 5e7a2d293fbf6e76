//! The sending side of a session: runs a `ferry_proto::Sender` over a QUIC
//! connection, one unidirectional stream per chunk, many in flight.

use std::sync::Arc;

use bytes::Bytes;
use ferry_proto::{
    ChunkHeader, ChunkLayout, ChunkRef, Digest, Frame, PlanFile, Sender, SenderEvent,
};
use quinn::Connection;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;

use crate::control::Control;
use crate::error::EngineError;
use crate::files::{SourceFile, read_piece};
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
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            max_streams: 128,
            max_bytes_in_flight: 64 << 20,
        }
    }
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

/// Sends `files` (with their `plan`, as made by `files::make_plan`).
#[allow(clippy::too_many_arguments)]
pub async fn send(
    conn: &Connection,
    mut control: Control,
    files: Vec<SourceFile>,
    plan: Vec<PlanFile>,
    layout: ChunkLayout,
    opts: &SendOptions,
    progress: Arc<Progress>,
    events: Option<UnboundedSender<FileEvent>>,
    stop: StopSignal,
) -> Result<Outcome, EngineError> {
    let total: u64 = plan.iter().map(|f| f.size).sum();
    progress
        .files_total
        .store(plan.len() as u64, std::sync::atomic::Ordering::Relaxed);
    progress
        .bytes_total
        .store(total, std::sync::atomic::Ordering::Relaxed);
    let mut proto = Sender::new(layout, plan)?;
    let files = Arc::new(files);
    let result = run(
        conn,
        &mut control,
        &mut proto,
        &files,
        opts,
        &progress,
        events.as_ref(),
        &stop,
    )
    .await;
    if let Err(e) = &result {
        tell_peer(&control, e);
    }
    control.finish().await;
    if result.is_ok() {
        // The receiver closes the connection once it has read Bye; waiting
        // for that makes sure Bye arrived before we go away.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), conn.closed()).await;
    }
    result.map(|()| Outcome::from_progress(&progress))
}

/// Sends the peer an error frame unless the error came from the peer or
/// the connection is gone.
pub(crate) fn tell_peer(control: &Control, e: &EngineError) {
    match e {
        EngineError::Proto(ferry_proto::ProtoError::Peer { .. }) | EngineError::Connection(_) => {}
        e => control.send(Frame::Error {
            code: e.code(),
            message: e.to_string(),
        }),
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    conn: &Connection,
    control: &mut Control,
    proto: &mut Sender,
    files: &Arc<Vec<SourceFile>>,
    opts: &SendOptions,
    progress: &Arc<Progress>,
    events: Option<&UnboundedSender<FileEvent>>,
    stop: &StopSignal,
) -> Result<(), EngineError> {
    let mut tasks: JoinSet<(ChunkRef, u32, Result<Digest, EngineError>)> = JoinSet::new();
    let mut bytes_in_flight = 0u64;
    let mut sequence = 0u32;
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
                        if let (Some(plan), Some(tx)) = (proto.file(file), events) {
                            let _ = tx.send(FileEvent::Skipped {
                                path: plan.path.clone(),
                                size: plan.size,
                            });
                        }
                    }
                }
                SenderEvent::Delivered { file, digest } => {
                    Progress::add(&progress.files_done, 1);
                    if let (Some(plan), Some(tx)) = (proto.file(file), events) {
                        let _ = tx.send(FileEvent::Done {
                            path: plan.path.clone(),
                            size: plan.size,
                            digest,
                        });
                    }
                }
                SenderEvent::Finished => {}
            }
        }
        if proto.is_finished() {
            return Ok(());
        }
        while tasks.len() < opts.max_streams && bytes_in_flight < opts.max_bytes_in_flight {
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
            let (conn, files, progress) = (conn.clone(), files.clone(), progress.clone());
            let offset = proto.layout().offset(chunk.index);
            tasks.spawn(async move {
                let r = send_chunk(&conn, &files, chunk, offset, len, priority, &progress).await;
                (chunk, len, r)
            });
        }
        tokio::select! {
            biased;
            () = stop.stopped() => {
                let (code, message) = stop.reason();
                return Err(EngineError::Stopped { code, message });
            }
            frame = control.recv() => match frame {
                Some(Ok(frame)) => proto.handle_frame(frame)?,
                Some(Err(e)) => return Err(e),
                None => return Err(EngineError::Connect("the receiver closed the session".into())),
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                let (chunk, len, result) = done.map_err(|e| EngineError::Connect(format!("chunk task failed: {e}")))?;
                bytes_in_flight -= u64::from(len);
                match result {
                    Ok(digest) => proto.chunk_sent(chunk, digest)?,
                    Err(EngineError::Connection(e)) => return Err(EngineError::Connection(e)),
                    Err(e @ (EngineError::SourceChanged { .. } | EngineError::Io { .. } | EngineError::NotFound { .. } | EngineError::OutsideShare { .. })) => return Err(e),
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
async fn send_chunk(
    conn: &Connection,
    files: &Arc<Vec<SourceFile>>,
    chunk: ChunkRef,
    offset: u64,
    len: u32,
    priority: i32,
    progress: &Progress,
) -> Result<Digest, EngineError> {
    let mut stream = conn.open_uni().await?;
    let _ = stream.set_priority(priority);
    let write = |e: quinn::WriteError| match e {
        quinn::WriteError::ConnectionLost(c) => EngineError::Connection(c),
        other => EngineError::Connect(format!("chunk stream: {other}")),
    };
    stream
        .write_all(&ChunkHeader { chunk, len }.encode())
        .await
        .map_err(write)?;
    let source = files[chunk.file.0 as usize].clone();
    let file = Arc::new(
        tokio::task::spawn_blocking({
            let source = source.clone();
            move || source.open()
        })
        .await
        .map_err(|e| EngineError::Connect(format!("reader task: {e}")))??,
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
        let (bytes, h) = job
            .await
            .map_err(|e| EngineError::Connect(format!("reader task: {e}")))??;
        hasher = h;
        let n = bytes.len() as u64;
        done += n;
        if done < u64::from(len) {
            let next = PIECE.min((u64::from(len) - done) as usize);
            pending = Some(read(offset + done, next, hasher.clone()));
        }
        stream.write_chunk(bytes).await.map_err(write)?;
        Progress::add(&progress.bytes_transferred, n);
    }
    let digest = Digest::from(hasher.finalize());
    stream.write_all(&digest.0).await.map_err(write)?;
    let _ = stream.finish();
    // The chunk counts as in flight until the receiver has all of it, so
    // the window bounds what is on the wire, not what is buffered here.
    match stream.stopped().await {
        Ok(None) => Ok(digest),
        Ok(Some(code)) => Err(EngineError::Connect(format!(
            "the receiver stopped chunk {} of file {} (code {code})",
            chunk.index, chunk.file
        ))),
        Err(quinn::StoppedError::ConnectionLost(c)) => Err(EngineError::Connection(c)),
        Err(e) => Err(EngineError::Connect(format!("chunk stream: {e}"))),
    }
}

/// QUIC sends higher-priority streams first and shares bandwidth among
/// equals. Chunks are ranked by their file's priority, then by the order they
/// were opened, so that chunks complete one after another (a receiver can
/// checkpoint and commit early) instead of all together at the end. The
/// order wraps every 2^20 chunks (8 TiB at the default size), which only
/// reorders a few chunks once.
fn stream_priority(priority: ferry_proto::Priority, sequence: u32) -> i32 {
    (i32::from(priority.get()) << 20) | (0xF_FFFF - (sequence & 0xF_FFFF)) as i32
}
