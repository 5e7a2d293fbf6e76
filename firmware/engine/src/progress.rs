//! Live counters of a transfer, shared between the engine and whoever
//! shows or records progress (a terminal bar, a job row, the dashboard).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ferry_proto::{Digest, SharePath};

/// Counters updated by the engine as a session runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub files_total: AtomicU64,
    pub files_done: AtomicU64,
    pub bytes_total: AtomicU64,
    /// Payload bytes moved over the network in this session (chunks sent,
    /// or verified on the receiving side).
    pub bytes_transferred: AtomicU64,
    /// Bytes the receiver already held, which resume did not resend.
    pub bytes_skipped: AtomicU64,
    /// When the first chunk byte was handed to the connection (a sender)
    /// or came off it (a receiver): the end of the session's start.
    first_byte: OnceLock<Instant>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub files_total: u64,
    pub files_done: u64,
    pub bytes_total: u64,
    pub bytes_transferred: u64,
    pub bytes_skipped: u64,
}

impl Snapshot {
    /// Bytes accounted for: moved plus already held.
    pub fn bytes_done(&self) -> u64 {
        self.bytes_transferred + self.bytes_skipped
    }
}

impl Progress {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            files_total: self.files_total.load(Ordering::Relaxed),
            files_done: self.files_done.load(Ordering::Relaxed),
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            bytes_transferred: self.bytes_transferred.load(Ordering::Relaxed),
            bytes_skipped: self.bytes_skipped.load(Ordering::Relaxed),
        }
    }

    /// When the session's first chunk byte moved, if one has.
    pub fn first_byte(&self) -> Option<Instant> {
        self.first_byte.get().copied()
    }

    /// Notes that a chunk byte moved (only the first call counts).
    pub(crate) fn byte_moved(&self) {
        self.first_byte.get_or_init(Instant::now);
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Per-file news from a session, for job bookkeeping and event lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileEvent {
    /// The file is verified and in place at the receiver.
    Done {
        path: SharePath,
        size: u64,
        /// The modification time it was given (the source's).
        mtime_ns: i64,
        digest: Digest,
    },
    /// The receiver already had the whole file.
    Skipped { path: SharePath, size: u64 },
}
