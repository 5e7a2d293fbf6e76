//! When a data session has stopped making progress and is closed, so that
//! its lease, its buffers and its descriptors go back.
//!
//! "A while" is [`STALL_AFTER`], 60 seconds without one more byte moved
//! while bytes are waiting to move. It is three times QUIC's idle timeout (20 s,
//! which keep-alives hold off for a peer that answers but does not read),
//! and far above what a healthy peer ever pauses: a slow satellite link
//! still moves bytes every second, and a disk flushing gigabytes stalls
//! for seconds, not a minute. A session with nothing to move (a delivery
//! waiting for its upload to land) is never stalled. A peer that is
//! closed this way resumes with a new session, from its checkpoints.

use std::time::Duration;

/// No progress for this long, with bytes waiting, ends a session.
pub const STALL_AFTER: Duration = Duration::from_secs(60);

/// Watches one session's progress; the clock is passed in.
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    moved: u64,
    since: Duration,
}

impl Watch {
    /// Starts watching at `now` (any monotonic clock), with nothing moved.
    pub fn new(now: Duration) -> Self {
        Watch {
            moved: 0,
            since: now,
        }
    }

    /// Notes the bytes moved so far and whether any wait to move; true
    /// when the session has stalled.
    pub fn observe(&mut self, now: Duration, moved: u64, waiting: bool) -> bool {
        if moved != self.moved || !waiting {
            self.moved = moved;
            self.since = now;
            return false;
        }
        now.saturating_sub(self.since) >= STALL_AFTER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn only_a_session_that_could_move_and_does_not_stalls() {
        let mut w = Watch::new(at(0));
        assert!(!w.observe(at(30), 0, true));
        assert!(w.observe(at(60), 0, true), "a minute with nothing moved");
        let mut w = Watch::new(at(0));
        assert!(!w.observe(at(59), 10, true));
        assert!(!w.observe(at(100), 10, true), "41 s since the last byte");
        assert!(w.observe(at(119), 10, true));
        // Waiting for files to land upstream is not a stall.
        let mut w = Watch::new(at(0));
        assert!(!w.observe(at(600), 0, false));
        assert!(!w.observe(at(650), 0, true));
    }
}
