//! The sender and receiver state machines of one transfer session.
//!
//! A session moves a plan of files from a sender to a receiver over one
//! control stream (frames) and many chunk streams. These machines decide
//! everything protocol-level: what to announce, which chunks to send in what
//! order, what the receiver already holds, when a chunk is good, when a file
//! is complete and when the session is over. The driver (QUIC in
//! `ferry-engine`, a simulated network in the tests below) only moves bytes
//! and does file IO when an event asks for it.
//!
//! The handshake (`Hello`/`Welcome`) is not part of these machines: it
//! authenticates the connection before either role exists.

use std::collections::{HashSet, VecDeque};

use crate::bitmap::ChunkBitmap;
use crate::chunk::{ChunkHeader, ChunkRef};
use crate::digest::Digest;
use crate::frame::{ErrorCode, Frame, HaveState, MAX_FRAME_LEN};
use crate::path::SharePath;
use crate::plan::{ChunkLayout, FileId, PlanFile, Priority, limits};

/// A session-ending fault, from either our peer or our own checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// The peer ended the session with an error frame.
    #[error("{message}")]
    Peer { code: ErrorCode, message: String },
    /// The peer broke the protocol.
    #[error("protocol violation: {0}")]
    Violation(String),
    /// The plan asks for more than the limits allow.
    #[error("plan refused: {0}")]
    TooLarge(String),
    /// A completed file's digest differs between sender and receiver.
    #[error("digest mismatch on {path}: the file changed while it was sent or was corrupted")]
    DigestMismatch { path: SharePath },
}

impl ProtoError {
    /// The code to put in the `Error` frame that tells the peer.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtoError::Peer { code, .. } => *code,
            ProtoError::Violation(_) => ErrorCode::Protocol,
            ProtoError::TooLarge(_) => ErrorCode::TooLarge,
            ProtoError::DigestMismatch { .. } => ErrorCode::DigestMismatch,
        }
    }

    /// The frame that tells the peer about this fault.
    pub fn to_frame(&self) -> Frame {
        Frame::Error {
            code: self.code(),
            message: self.to_string(),
        }
    }

    fn violation(what: impl Into<String>) -> Self {
        ProtoError::Violation(what.into())
    }
}

fn peer_error(code: ErrorCode, message: String) -> ProtoError {
    ProtoError::Peer { code, message }
}

/// Plan batches stay well under the frame cap.
const PLAN_BATCH_BYTES: usize = MAX_FRAME_LEN / 2;

// ---------------------------------------------------------------- sender

/// What happened on the sending side, for progress and job bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderEvent {
    /// The receiver already holds `bytes` of the file, which will not
    /// travel; `whole` when it holds the file in place (no `Delivered` follows).
    Skipped {
        file: FileId,
        bytes: u64,
        whole: bool,
    },
    /// The receiver verified the file and moved it into place.
    Delivered { file: FileId, digest: Digest },
    /// The receiver claims to hold these chunks of the file; a sender that
    /// checks receipts must hash its own copy of them and report the
    /// digests with [`Sender::held_hashed`] before the file counts.
    HashHeld { file: FileId, chunks: Vec<u32> },
    /// Every file is delivered; `Bye` is queued.
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendState {
    AwaitingHave,
    Sending,
    /// The receiver claimed the whole file; our own digest of it is being
    /// made to check the claim.
    Verifying,
    Done,
}

#[derive(Debug)]
struct SendFile {
    plan: PlanFile,
    state: SendState,
    /// Digests of chunks sent in this session; `None` for chunks the
    /// receiver already held or not yet sent.
    sent: Vec<Option<Digest>>,
    /// True when the receiver held nothing, so every digest is ours and the
    /// file digest can be checked end to end.
    whole: bool,
    /// The receiver's `FileDone` digest, when it arrived before we heard
    /// that our last chunk streams finished (or before the chunks it held
    /// were hashed here).
    pending_done: Option<Digest>,
    /// The file's digest, when the sender knows it already (a delivery's
    /// file, verified as it was uploaded).
    known: Option<Digest>,
    /// The digest the receiver claimed for the whole file.
    claimed: Option<Digest>,
    /// Held chunks are being hashed here.
    hashing: bool,
}

/// The sending side of a session.
#[derive(Debug)]
pub struct Sender {
    layout: ChunkLayout,
    files: Vec<SendFile>,
    out: VecDeque<Frame>,
    events: VecDeque<SenderEvent>,
    scheduler: crate::schedule::Scheduler,
    in_flight: HashSet<ChunkRef>,
    /// Files not yet delivered, by priority: a file is started only when
    /// no file of higher priority is still on its way.
    undone: std::collections::BTreeMap<Priority, usize>,
    remaining: usize,
    plan_ended: bool,
    finished: bool,
    /// Receipts are checked: a file counts as delivered only when every
    /// byte was sent from here, or the receiver's digest of what it held
    /// matches ours. The appliance checks; a client trusts the appliance.
    verify: bool,
    /// Chunks the receiver asked for again while their stream was still
    /// in flight: sent again once that stream has finished.
    resend_after: HashSet<ChunkRef>,
}

impl Sender {
    /// Starts a session that will send `files`, all known now. Their ids
    /// must be 0, 1, 2… in order; the caller lists them highest priority
    /// first so that the receiver answers for those first.
    pub fn new(layout: ChunkLayout, files: Vec<PlanFile>) -> Result<Self, ProtoError> {
        let bytes = files.iter().map(|f| f.size).fold(0u64, u64::saturating_add);
        let mut sender = Self::start(layout, Some((files.len() as u64, bytes)))?;
        sender.add_files(files)?;
        sender.end_plan();
        Ok(sender)
    }

    /// Starts a session whose files are not all known yet (a delivery whose
    /// upload is still running): add them with [`Sender::add_files`] as they
    /// become available, and call [`Sender::end_plan`] after the last.
    pub fn open(layout: ChunkLayout) -> Self {
        Self::start(layout, None)
            .unwrap_or_else(|_| unreachable!("an open plan has no totals to refuse"))
    }

    fn start(layout: ChunkLayout, totals: Option<(u64, u64)>) -> Result<Self, ProtoError> {
        if let Some((files, _)) = totals
            && files > limits::MAX_FILES
        {
            return Err(ProtoError::TooLarge(format!(
                "{files} files in one session (at most {})",
                limits::MAX_FILES
            )));
        }
        let mut out = VecDeque::new();
        out.push_back(Frame::PlanStart {
            chunk_size: layout.chunk_size,
            files: totals.map(|t| t.0),
            bytes: totals.map(|t| t.1),
        });
        Ok(Sender {
            layout,
            files: Vec::new(),
            out,
            events: VecDeque::new(),
            scheduler: crate::schedule::Scheduler::new(),
            in_flight: HashSet::new(),
            undone: std::collections::BTreeMap::new(),
            remaining: 0,
            plan_ended: false,
            finished: false,
            verify: false,
            resend_after: HashSet::new(),
        })
    }

    /// Checks every receipt from now on: a receiver's claim to hold a file
    /// or some of its chunks counts only once its digest matches ours.
    pub fn verify_receipts(&mut self) {
        self.verify = true;
    }

    /// Tells the sender a file's digest (BLAKE3 over its chunk digests),
    /// so a receipt is checked without hashing the file here.
    pub fn know(&mut self, file: FileId, digest: Digest) {
        if let Some(f) = self.files.get_mut(file.0 as usize) {
            f.known = Some(digest);
        }
    }

    /// Our digests of chunks the receiver said it held (after a
    /// [`SenderEvent::HashHeld`]).
    pub fn held_hashed(
        &mut self,
        file: FileId,
        digests: Vec<(u32, Digest)>,
    ) -> Result<(), ProtoError> {
        let f = self
            .files
            .get_mut(file.0 as usize)
            .ok_or_else(|| ProtoError::violation(format!("hashed unknown file {file}")))?;
        for (i, d) in digests {
            if let Some(slot) = f.sent.get_mut(i as usize) {
                *slot = Some(d);
            }
        }
        f.hashing = false;
        if f.state == SendState::Verifying {
            let ours: Option<Vec<Digest>> = f.sent.iter().copied().collect();
            let claimed = f.claimed.take();
            return match (ours, claimed) {
                (Some(ours), Some(c)) if Digest::of_file(&ours) == c => {
                    self.accept_held_whole(file);
                    Ok(())
                }
                _ => Err(ProtoError::DigestMismatch {
                    path: f.plan.path.clone(),
                }),
            };
        }
        match f.pending_done {
            Some(done) if f.sent.iter().all(Option::is_some) => self.finish_file(file, done),
            _ => Ok(()),
        }
    }

    /// The receiver holds the whole file (checked when receipts are).
    fn accept_held_whole(&mut self, id: FileId) {
        let size = self.files[id.0 as usize].plan.size;
        self.mark_done(id);
        self.events.push_back(SenderEvent::Skipped {
            file: id,
            bytes: size,
            whole: true,
        });
        self.check_finished();
    }

    /// Adds files to the plan. Their ids continue from the files already
    /// planned.
    pub fn add_files(&mut self, files: Vec<PlanFile>) -> Result<(), ProtoError> {
        if self.plan_ended {
            return Err(ProtoError::violation("files added after the plan ended"));
        }
        if (self.files.len() + files.len()) as u64 > limits::MAX_FILES {
            return Err(ProtoError::TooLarge(format!(
                "more than {} files in one session",
                limits::MAX_FILES
            )));
        }
        let first = self.files.len();
        for (i, f) in files.into_iter().enumerate() {
            if f.id.0 as usize != first + i {
                return Err(ProtoError::violation(
                    "plan file ids must be 0, 1, 2… in order",
                ));
            }
            let chunks = self.layout.chunk_count(f.size);
            if chunks > limits::MAX_CHUNKS_PER_FILE {
                return Err(ProtoError::TooLarge(format!(
                    "{} is {} bytes, more than {} chunks of {}",
                    f.path,
                    f.size,
                    limits::MAX_CHUNKS_PER_FILE,
                    self.layout.chunk_size
                )));
            }
            *self.undone.entry(f.priority).or_default() += 1;
            self.files.push(SendFile {
                sent: vec![None; chunks as usize],
                plan: f,
                state: SendState::AwaitingHave,
                whole: false,
                pending_done: None,
                known: None,
                claimed: None,
                hashing: false,
            });
        }
        self.remaining += self.files.len() - first;
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        for f in &self.files[first..] {
            let cost = f.plan.path.as_str().len() + 32;
            if batch_bytes + cost > PLAN_BATCH_BYTES {
                self.out.push_back(Frame::PlanFiles {
                    files: std::mem::take(&mut batch),
                });
                batch_bytes = 0;
            }
            batch.push(f.plan.clone());
            batch_bytes += cost;
        }
        if !batch.is_empty() {
            self.out.push_back(Frame::PlanFiles { files: batch });
        }
        Ok(())
    }

    /// No more files will be added.
    pub fn end_plan(&mut self) {
        if !self.plan_ended {
            self.plan_ended = true;
            self.out.push_back(Frame::PlanEnd);
            self.check_finished();
        }
    }

    /// Files planned so far.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    pub fn layout(&self) -> ChunkLayout {
        self.layout
    }

    /// The planned file `id`.
    pub fn file(&self, id: FileId) -> Option<&PlanFile> {
        self.files.get(id.0 as usize).map(|f| &f.plan)
    }

    /// Length of a chunk, as planned.
    pub fn chunk_len(&self, chunk: ChunkRef) -> Option<u32> {
        let f = self.file(chunk.file)?;
        self.layout.chunk_len(f.size, chunk.index)
    }

    /// The next control frame to send.
    pub fn poll_frame(&mut self) -> Option<Frame> {
        self.out.pop_front()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<SenderEvent> {
        self.events.pop_front()
    }

    /// True once the plan is ended and every file is delivered.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Chunks queued but not yet handed out.
    pub fn queued_chunks(&self) -> usize {
        self.scheduler.len()
    }

    /// The next chunk to put on a stream, highest priority first. A file
    /// is not started while a file of higher priority is still on its way
    /// (not yet answered, sent or confirmed), so the proxies land before
    /// the frames even when the frames are small and quick.
    pub fn next_chunk(&mut self) -> Option<ChunkRef> {
        let next = self.scheduler.peek()?;
        let priority = self.files[next.file.0 as usize].plan.priority;
        let highest_undone = self.undone.keys().next_back().copied().unwrap_or(priority);
        if priority < highest_undone {
            return None;
        }
        let chunk = self.scheduler.pop()?;
        self.in_flight.insert(chunk);
        Some(chunk)
    }

    /// The chunk went out whole, with this digest of its bytes.
    pub fn chunk_sent(&mut self, chunk: ChunkRef, digest: Digest) -> Result<(), ProtoError> {
        if !self.in_flight.remove(&chunk) {
            return Ok(());
        }
        if self.resend_after.remove(&chunk) {
            // The receiver already asked for it again (its copy failed the
            // check) before we heard the stream finish: it goes again.
            let priority = self.files[chunk.file.0 as usize].plan.priority;
            self.scheduler.requeue(chunk, priority);
            return Ok(());
        }
        let Some(f) = self.files.get_mut(chunk.file.0 as usize) else {
            return Ok(());
        };
        if let Some(slot) = f.sent.get_mut(chunk.index as usize) {
            *slot = Some(digest);
        }
        match f.pending_done {
            Some(done) if f.sent.iter().all(Option::is_some) => self.finish_file(chunk.file, done),
            _ => Ok(()),
        }
    }

    /// The chunk's stream failed on our side: send it again later.
    pub fn chunk_failed(&mut self, chunk: ChunkRef) {
        self.resend_after.remove(&chunk);
        if self.in_flight.remove(&chunk) {
            let priority = self.files[chunk.file.0 as usize].plan.priority;
            self.scheduler.requeue(chunk, priority);
        }
    }

    /// Changes a file's priority for what is not yet sent, and tells the
    /// receiver.
    pub fn set_priority(&mut self, file: FileId, priority: Priority) {
        if self.reprioritise(file, priority) {
            self.out.push_back(Frame::Reprioritised { file, priority });
        }
    }

    fn reprioritise(&mut self, file: FileId, priority: Priority) -> bool {
        let Some(f) = self.files.get_mut(file.0 as usize) else {
            return false;
        };
        let old = f.plan.priority;
        if old == priority {
            return false;
        }
        f.plan.priority = priority;
        if f.state != SendState::Done {
            if let Some(n) = self.undone.get_mut(&old) {
                *n -= 1;
                if *n == 0 {
                    self.undone.remove(&old);
                }
            }
            *self.undone.entry(priority).or_default() += 1;
        }
        self.scheduler.set_priority(file, priority);
        true
    }

    fn mark_done(&mut self, file: FileId) {
        let f = &mut self.files[file.0 as usize];
        if f.state == SendState::Done {
            return;
        }
        f.state = SendState::Done;
        let p = f.plan.priority;
        if let Some(n) = self.undone.get_mut(&p) {
            *n -= 1;
            if *n == 0 {
                self.undone.remove(&p);
            }
        }
        self.remaining -= 1;
    }

    /// Handles one frame from the receiver.
    pub fn handle_frame(&mut self, frame: Frame) -> Result<(), ProtoError> {
        match frame {
            Frame::Have { files } => {
                for (id, state) in files {
                    self.handle_have(id, state)?;
                }
                Ok(())
            }
            Frame::Resend { file, index } => {
                let chunk = ChunkRef { file, index };
                let f = self.files.get_mut(file.0 as usize).ok_or_else(|| {
                    ProtoError::violation(format!("resend of unknown file {file}"))
                })?;
                let slot = f.sent.get_mut(index as usize).ok_or_else(|| {
                    ProtoError::violation("resend of a chunk past the file's end")
                })?;
                if f.state != SendState::Sending {
                    return Err(ProtoError::violation(
                        "resend of a chunk of a file not being sent",
                    ));
                }
                if slot.is_none() {
                    // A resend may overtake our notice that its stream
                    // finished: it goes again once the stream has.
                    if self.in_flight.contains(&chunk) {
                        self.resend_after.insert(chunk);
                        return Ok(());
                    }
                    return Err(ProtoError::violation("resend of a chunk that was not sent"));
                }
                *slot = None;
                self.scheduler.requeue(chunk, f.plan.priority);
                Ok(())
            }
            Frame::FileDone { file, digest } => {
                let in_flight = &self.in_flight;
                let f = self.files.get_mut(file.0 as usize).ok_or_else(|| {
                    ProtoError::violation(format!("done for unknown file {file}"))
                })?;
                if f.state != SendState::Sending || f.pending_done.is_some() {
                    return Err(ProtoError::violation(format!(
                        "done for {file} in state {:?}",
                        f.state
                    )));
                }
                let unreported = (0..f.sent.len() as u32).any(|index| {
                    f.sent[index as usize].is_none()
                        && in_flight.contains(&ChunkRef { file, index })
                });
                let checked = f.whole || (self.verify && f.known.is_none());
                if (checked && unreported) || f.hashing {
                    // Our own stream-finished notice, or our digests of
                    // the chunks it held, are still on their way.
                    f.pending_done = Some(digest);
                    return Ok(());
                }
                self.finish_file(file, digest)
            }
            // The receiver asks for another priority (a user changed it on
            // the receiving side).
            Frame::Reprioritised { file, priority } => {
                self.reprioritise(file, priority);
                Ok(())
            }
            Frame::Error { code, message } => Err(peer_error(code, message)),
            other => Err(ProtoError::violation(format!(
                "sender got an unexpected {}",
                frame_name(&other)
            ))),
        }
    }

    fn handle_have(&mut self, id: FileId, state: HaveState) -> Result<(), ProtoError> {
        let layout = self.layout;
        let f = self
            .files
            .get_mut(id.0 as usize)
            .ok_or_else(|| ProtoError::violation(format!("have for unknown file {id}")))?;
        if f.state != SendState::AwaitingHave {
            return Err(ProtoError::violation(format!("second have for {id}")));
        }
        let chunks = f.sent.len() as u32;
        match state {
            HaveState::Complete(claimed) => {
                if !self.verify {
                    self.accept_held_whole(id);
                    return Ok(());
                }
                match f.known {
                    Some(k) if k == claimed => self.accept_held_whole(id),
                    Some(_) => {
                        return Err(ProtoError::DigestMismatch {
                            path: f.plan.path.clone(),
                        });
                    }
                    None => {
                        // A claim is not a delivery: hash our copy first.
                        f.state = SendState::Verifying;
                        f.claimed = Some(claimed);
                        f.hashing = true;
                        self.events.push_back(SenderEvent::HashHeld {
                            file: id,
                            chunks: (0..chunks).collect(),
                        });
                    }
                }
            }
            HaveState::Nothing => {
                f.state = SendState::Sending;
                f.whole = true;
                self.scheduler.add(id, f.plan.priority, 0..chunks);
            }
            HaveState::Partial(bitmap) => {
                if bitmap.len() != chunks {
                    return Err(ProtoError::violation(format!(
                        "have for {id} covers {} chunks, the plan has {chunks}",
                        bitmap.len()
                    )));
                }
                f.state = SendState::Sending;
                f.whole = bitmap.count() == 0;
                let skipped: u64 = bitmap
                    .present()
                    .filter_map(|i| layout.chunk_len(f.plan.size, i))
                    .map(u64::from)
                    .sum();
                if skipped > 0 {
                    self.events.push_back(SenderEvent::Skipped {
                        file: id,
                        bytes: skipped,
                        whole: false,
                    });
                }
                if self.verify && f.known.is_none() && skipped > 0 {
                    f.hashing = true;
                    self.events.push_back(SenderEvent::HashHeld {
                        file: id,
                        chunks: bitmap.present().collect(),
                    });
                }
                self.scheduler.add(id, f.plan.priority, bitmap.missing());
            }
        }
        Ok(())
    }

    fn finish_file(&mut self, file: FileId, digest: Digest) -> Result<(), ProtoError> {
        let verify = self.verify;
        let f = &mut self.files[file.0 as usize];
        if verify && let Some(k) = f.known {
            if k != digest {
                return Err(ProtoError::DigestMismatch {
                    path: f.plan.path.clone(),
                });
            }
        } else if f.whole || verify {
            let ours: Option<Vec<Digest>> = f.sent.iter().copied().collect();
            match ours {
                Some(ours) if Digest::of_file(&ours) == digest => {}
                Some(_) => {
                    return Err(ProtoError::DigestMismatch {
                        path: f.plan.path.clone(),
                    });
                }
                None => {
                    return Err(ProtoError::violation(format!(
                        "{} reported done before all its chunks were sent",
                        f.plan.path
                    )));
                }
            }
        }
        f.pending_done = None;
        self.mark_done(file);
        self.scheduler.remove_file(file);
        self.events
            .push_back(SenderEvent::Delivered { file, digest });
        self.check_finished();
        Ok(())
    }

    fn check_finished(&mut self) {
        if self.plan_ended && self.remaining == 0 && !self.finished {
            self.finished = true;
            self.out.push_back(Frame::Bye);
            self.events.push_back(SenderEvent::Finished);
        }
    }
}

// -------------------------------------------------------------- receiver

/// What the receiver's driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiverEvent {
    /// The plan began, with its totals when the sender knows them: refuse
    /// now if they cannot fit.
    PlanStarted {
        files: Option<u64>,
        bytes: Option<u64>,
    },
    /// Files `first..first+count` were planned: look up what is held for
    /// each and answer with [`Receiver::set_local`].
    Planned { first: FileId, count: u32 },
    /// Every chunk of the file is verified: make it durable, move it into
    /// place, then call [`Receiver::committed`].
    FileComplete { file: FileId, digest: Digest },
    /// The sender said goodbye and every file is in place.
    Finished,
}

/// What the receiver found for a planned file before the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalState {
    Nothing,
    /// Chunks kept from an earlier session, with their digests.
    Partial {
        have: ChunkBitmap,
        digests: Vec<Digest>,
    },
    /// Already in place, with its digest (BLAKE3 over its chunk digests).
    Complete(Digest),
}

/// The receiver's answer to a chunk stream's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Write the chunk's bytes at this offset of the file's part file.
    Write { offset: u64 },
    /// The chunk is already held or being written: read and drop the bytes.
    Discard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecvState {
    AwaitingLocal,
    Receiving,
    Committing,
    Done,
}

#[derive(Debug)]
struct RecvFile {
    plan: PlanFile,
    state: RecvState,
    have: ChunkBitmap,
    digests: Vec<Digest>,
    writing: HashSet<u32>,
}

/// The receiving side of a session.
#[derive(Debug, Default)]
pub struct Receiver {
    layout: Option<ChunkLayout>,
    announced: Option<(Option<u64>, Option<u64>)>,
    planned_bytes: u64,
    /// The most bytes the destination can hold, when known.
    room: Option<u64>,
    paths: HashSet<SharePath>,
    files: Vec<RecvFile>,
    plan_ended: bool,
    bye: bool,
    done: usize,
    finished: bool,
    out: VecDeque<Frame>,
    /// Encoded size of the `Have` frame at the back of `out`, if one is there.
    have_bytes: usize,
    events: VecDeque<ReceiverEvent>,
}

impl Receiver {
    pub fn new() -> Self {
        Self::default()
    }

    /// The most bytes the destination can hold. A plan that announces or
    /// lists more is refused as too large as soon as it says so, before
    /// anything is kept for its files: a hostile sender cannot make the
    /// receiver hold bitmaps for a petabyte.
    pub fn set_room(&mut self, bytes: u64) {
        self.room = Some(bytes);
    }

    fn too_large_for_room(&self, bytes: u64) -> Result<(), ProtoError> {
        match self.room {
            Some(room) if bytes > room => Err(ProtoError::TooLarge(format!(
                "the transfer holds {bytes} bytes but the destination filesystem is only {room} bytes"
            ))),
            _ => Ok(()),
        }
    }

    pub fn layout(&self) -> Option<ChunkLayout> {
        self.layout
    }

    pub fn file(&self, id: FileId) -> Option<&PlanFile> {
        self.files.get(id.0 as usize).map(|f| &f.plan)
    }

    /// Number of files planned so far.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    pub fn poll_frame(&mut self) -> Option<Frame> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ReceiverEvent> {
        self.events.pop_front()
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// What is held of a file: for checkpoints of the resume state.
    pub fn resume_state(&self, id: FileId) -> Option<(&ChunkBitmap, &[Digest])> {
        self.files
            .get(id.0 as usize)
            .map(|f| (&f.have, f.digests.as_slice()))
    }

    /// Handles one frame from the sender.
    pub fn handle_frame(&mut self, frame: Frame) -> Result<(), ProtoError> {
        match frame {
            Frame::PlanStart {
                chunk_size,
                files,
                bytes,
            } => {
                if self.layout.is_some() {
                    return Err(ProtoError::violation("second plan in one session"));
                }
                let layout = ChunkLayout::new(chunk_size).ok_or_else(|| {
                    ProtoError::violation(format!("chunk size {chunk_size} is out of bounds"))
                })?;
                if files.unwrap_or(0) > limits::MAX_FILES {
                    return Err(ProtoError::TooLarge(format!(
                        "{} files in one session (at most {})",
                        files.unwrap_or(0),
                        limits::MAX_FILES
                    )));
                }
                self.too_large_for_room(bytes.unwrap_or(0))?;
                self.layout = Some(layout);
                self.announced = Some((files, bytes));
                self.events
                    .push_back(ReceiverEvent::PlanStarted { files, bytes });
                Ok(())
            }
            Frame::PlanFiles { files } => self.handle_plan_files(files),
            Frame::PlanEnd => {
                let (files, bytes) = self
                    .announced
                    .ok_or_else(|| ProtoError::violation("plan end before plan start"))?;
                let listed = (self.files.len() as u64, self.planned_bytes);
                if files.is_some_and(|f| f != listed.0) || bytes.is_some_and(|b| b != listed.1) {
                    return Err(ProtoError::violation(format!(
                        "plan announced {files:?} files / {bytes:?} bytes but listed {} / {}",
                        listed.0, listed.1
                    )));
                }
                self.plan_ended = true;
                self.check_finished();
                Ok(())
            }
            Frame::Reprioritised { file, priority } => {
                if let Some(f) = self.files.get_mut(file.0 as usize) {
                    f.plan.priority = priority;
                }
                Ok(())
            }
            Frame::Bye => {
                if !self.plan_ended || self.done != self.files.len() {
                    return Err(ProtoError::violation(
                        "sender said goodbye before every file was in place",
                    ));
                }
                self.bye = true;
                self.check_finished();
                Ok(())
            }
            Frame::Error { code, message } => Err(peer_error(code, message)),
            other => Err(ProtoError::violation(format!(
                "receiver got an unexpected {}",
                frame_name(&other)
            ))),
        }
    }

    fn handle_plan_files(&mut self, files: Vec<PlanFile>) -> Result<(), ProtoError> {
        let layout = self
            .layout
            .ok_or_else(|| ProtoError::violation("plan files before plan start"))?;
        let (announced_files, announced_bytes) = self.announced.unwrap_or_default();
        let announced_files = announced_files.unwrap_or(limits::MAX_FILES);
        let announced_bytes = announced_bytes.unwrap_or(u64::MAX);
        if self.plan_ended {
            return Err(ProtoError::violation("plan files after plan end"));
        }
        let first = FileId(self.files.len() as u32);
        let count = files.len() as u32;
        for f in files {
            if f.id.0 as usize != self.files.len() {
                return Err(ProtoError::violation(format!(
                    "plan file id {} out of order (expected {})",
                    f.id.0,
                    self.files.len()
                )));
            }
            if self.files.len() as u64 >= announced_files {
                return Err(ProtoError::violation("more files than the plan announced"));
            }
            if f.path.is_root() {
                return Err(ProtoError::violation("a planned file has an empty path"));
            }
            let chunks = layout.chunk_count(f.size);
            if chunks > limits::MAX_CHUNKS_PER_FILE {
                return Err(ProtoError::TooLarge(format!(
                    "{} claims {} bytes, more than {} chunks",
                    f.path,
                    f.size,
                    limits::MAX_CHUNKS_PER_FILE
                )));
            }
            self.planned_bytes = self.planned_bytes.saturating_add(f.size);
            self.too_large_for_room(self.planned_bytes)?;
            if self.planned_bytes > announced_bytes {
                return Err(ProtoError::violation(
                    "files add up to more bytes than announced",
                ));
            }
            if !self.paths.insert(f.path.clone()) {
                return Err(ProtoError::violation(format!(
                    "{} is planned twice",
                    f.path
                )));
            }
            self.files.push(RecvFile {
                have: ChunkBitmap::new(chunks as u32),
                digests: Vec::new(),
                writing: HashSet::new(),
                plan: f,
                state: RecvState::AwaitingLocal,
            });
        }
        if count > 0 {
            self.events
                .push_back(ReceiverEvent::Planned { first, count });
        }
        Ok(())
    }

    /// Reports what is held locally of a planned file, which becomes the
    /// `Have` answer.
    pub fn set_local(&mut self, id: FileId, local: LocalState) -> Result<(), ProtoError> {
        let f = self
            .files
            .get_mut(id.0 as usize)
            .ok_or_else(|| ProtoError::violation(format!("no planned file {id}")))?;
        if f.state != RecvState::AwaitingLocal {
            return Err(ProtoError::violation(format!(
                "local state of {id} set twice"
            )));
        }
        let chunks = f.have.len();
        let have = match local {
            LocalState::Complete(digest) => {
                f.state = RecvState::Done;
                self.done += 1;
                HaveState::Complete(digest)
            }
            LocalState::Partial { have, digests }
                if have.len() == chunks && digests.len() == chunks as usize && have.count() > 0 =>
            {
                f.have = have.clone();
                f.digests = digests;
                f.state = RecvState::Receiving;
                HaveState::Partial(have)
            }
            LocalState::Nothing | LocalState::Partial { .. } => {
                f.digests = vec![Digest::default(); chunks as usize];
                f.state = RecvState::Receiving;
                HaveState::Nothing
            }
        };
        self.push_have(id, have);
        self.check_file_complete(id);
        self.check_finished();
        Ok(())
    }

    /// Decides what to do with a chunk stream, from its header.
    pub fn admit_chunk(&mut self, header: &ChunkHeader) -> Result<Admission, ProtoError> {
        let layout = self
            .layout
            .ok_or_else(|| ProtoError::violation("chunk before plan"))?;
        let chunk = header.chunk;
        let f = self.files.get_mut(chunk.file.0 as usize).ok_or_else(|| {
            ProtoError::violation(format!("chunk for unknown file {}", chunk.file))
        })?;
        let expected = layout.chunk_len(f.plan.size, chunk.index).ok_or_else(|| {
            ProtoError::violation(format!(
                "chunk {} of {} is past the end of the file",
                chunk.index, f.plan.path
            ))
        })?;
        if header.len != expected {
            return Err(ProtoError::violation(format!(
                "chunk {} of {} has {} bytes, expected {expected}",
                chunk.index, f.plan.path, header.len
            )));
        }
        match f.state {
            RecvState::AwaitingLocal => Err(ProtoError::violation(format!(
                "chunk for {} before have",
                f.plan.path
            ))),
            RecvState::Receiving if !f.have.get(chunk.index) && f.writing.insert(chunk.index) => {
                Ok(Admission::Write {
                    offset: layout.offset(chunk.index),
                })
            }
            _ => Ok(Admission::Discard),
        }
    }

    /// The chunk's bytes were written; `computed` is the digest of what
    /// arrived, `claimed` the digest the sender put after it. Returns true
    /// when the chunk is good; otherwise a `Resend` is queued.
    pub fn chunk_written(&mut self, chunk: ChunkRef, computed: Digest, claimed: Digest) -> bool {
        let Some(f) = self.files.get_mut(chunk.file.0 as usize) else {
            return false;
        };
        if !f.writing.remove(&chunk.index) {
            return false;
        }
        if computed != claimed {
            self.out.push_back(Frame::resend(chunk));
            return false;
        }
        f.have.set(chunk.index);
        f.digests[chunk.index as usize] = computed;
        self.check_file_complete(chunk.file);
        true
    }

    /// The chunk's stream broke before its digest arrived; the data on disk
    /// for it is not trusted, and the sender will have to send it again.
    pub fn chunk_abandoned(&mut self, chunk: ChunkRef) {
        if let Some(f) = self.files.get_mut(chunk.file.0 as usize)
            && f.writing.remove(&chunk.index)
        {
            self.out.push_back(Frame::resend(chunk));
        }
    }

    /// The file is durable under its final name.
    pub fn committed(&mut self, id: FileId) {
        if let Some(f) = self.files.get_mut(id.0 as usize)
            && f.state == RecvState::Committing
        {
            f.state = RecvState::Done;
            self.done += 1;
            let digest = Digest::of_file(&f.digests);
            self.out.push_back(Frame::FileDone { file: id, digest });
            self.check_finished();
        }
    }

    /// Appends to the last `Have` frame while it stays small, so a plan of
    /// thousands of files is answered in a few frames, in plan order.
    fn push_have(&mut self, id: FileId, state: HaveState) {
        let cost = match &state {
            HaveState::Partial(b) => b.as_bytes().len() + 16,
            _ => 16,
        };
        if let Some(Frame::Have { files }) = self.out.back_mut()
            && self.have_bytes + cost <= PLAN_BATCH_BYTES
        {
            files.push((id, state));
            self.have_bytes += cost;
            return;
        }
        self.have_bytes = cost;
        self.out.push_back(Frame::Have {
            files: vec![(id, state)],
        });
    }

    fn check_file_complete(&mut self, id: FileId) {
        let f = &mut self.files[id.0 as usize];
        if f.state == RecvState::Receiving && f.have.is_complete() {
            f.state = RecvState::Committing;
            self.events.push_back(ReceiverEvent::FileComplete {
                file: id,
                digest: Digest::of_file(&f.digests),
            });
        }
    }

    fn check_finished(&mut self) {
        if self.bye && !self.finished {
            self.finished = true;
            self.events.push_back(ReceiverEvent::Finished);
        }
    }
}

fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::Hello { .. } => "Hello",
        Frame::Welcome { .. } => "Welcome",
        Frame::Pace(_) => "Pace",
        Frame::PlanStart { .. } => "PlanStart",
        Frame::PlanFiles { .. } => "PlanFiles",
        Frame::PlanEnd => "PlanEnd",
        Frame::Have { .. } => "Have",
        Frame::Resend { .. } => "Resend",
        Frame::FileDone { .. } => "FileDone",
        Frame::Reprioritised { .. } => "Reprioritised",
        Frame::Error { .. } => "Error",
        Frame::Bye => "Bye",
    }
}

#[cfg(test)]
mod tests;
