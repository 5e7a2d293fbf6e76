//! Holds a sender to its session's target rate, on every transport and at
//! any round-trip time.
//!
//! The congestion controller caps a window (target × RTT), which paces
//! nothing where the RTT is tiny: on a LAN the smallest window is far
//! above a cap, and a transfer "capped" at 100 Mbit/s ran at 500. And the
//! TCP and HTTPS lanes have no controller of ours at all. So the sender
//! charges every slice of bytes it writes to one gate per session, and a
//! slice may go once the time its predecessors take at the target has
//! passed. Slices are small (about [`SLICE_TIME`] of the target), so the
//! rate holds over any stretch of a few tenths of a second, and a new
//! target takes effect within one slice.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::congestion::PaceHandle;

/// How long one slice lasts at the target: short enough that a window of
/// a second sees the rate, long enough that the timer's granularity (a
/// millisecond) is a small part of it.
pub const SLICE_TIME: Duration = Duration::from_millis(20);
/// The smallest slice, so that very low targets do not wake the sender
/// for a few bytes.
const MIN_SLICE: usize = 16 * 1024;
/// A sender that wakes this much after its turn (a busy machine, a timer's
/// tick) keeps its place, so the average holds; idle for longer, it
/// starts afresh and earns no burst.
pub const SLACK: Duration = Duration::from_millis(50);

/// When the next slice may go: the pure rule, with the clock passed in.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RateGate {
    next: Option<Instant>,
}

impl RateGate {
    /// When the next slice may go, if not yet (`None`: now).
    pub fn wait(&self, now: Instant) -> Option<Instant> {
        self.next.filter(|at| *at > now)
    }

    /// A slice of `len` bytes goes at `now` under a target of
    /// `bytes_per_sec` (`None`: no target and no spacing).
    pub fn charge(&mut self, now: Instant, bytes_per_sec: Option<u64>, len: usize) {
        let Some(rate) = bytes_per_sec.filter(|r| *r > 0) else {
            self.next = None;
            return;
        };
        let from = match self.next {
            // On time or a little late: keep the schedule.
            Some(at) if now <= at + SLACK => at,
            // Idle: no credit for the quiet spell.
            _ => now,
        };
        self.next = Some(from + Duration::from_secs_f64(len as f64 / rate as f64));
    }
}

/// How many bytes to write at a time under a target of `bytes_per_sec`.
pub fn slice_len(bytes_per_sec: u64) -> usize {
    let per_slice = bytes_per_sec as f64 * SLICE_TIME.as_secs_f64();
    (per_slice as usize).max(MIN_SLICE)
}

/// One session's gate, shared by all its chunk streams.
#[derive(Debug, Clone, Default)]
pub struct Pacer {
    pace: Option<PaceHandle>,
    gate: Arc<Mutex<RateGate>>,
}

impl Pacer {
    /// A pacer following `pace`, read again before each slice so that a
    /// repace takes effect at once; `None` paces nothing.
    pub fn new(pace: Option<PaceHandle>) -> Self {
        Pacer {
            pace,
            gate: Arc::default(),
        }
    }

    /// The target now, in bytes per second.
    pub fn target(&self) -> Option<u64> {
        self.pace
            .as_ref()
            .and_then(|p| p.get().target)
            .map(|r| r.bytes_per_sec())
    }

    /// Waits for the turn of `len` bytes and charges them.
    pub async fn admit(&self, len: usize) {
        loop {
            let at = {
                let mut gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let target = self.target();
                match gate.wait(now).filter(|_| target.is_some()) {
                    None => {
                        gate.charge(now, target, len);
                        return;
                    }
                    Some(at) => at,
                }
            };
            tokio::time::sleep_until(at).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn slices_are_spaced_at_the_target_and_idle_earns_no_credit() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut g = RateGate::default();
        assert_eq!(g.wait(t0), None);
        // 1 MB slices at 10 MB/s: one every 100 ms.
        g.charge(t0, Some(10_000_000), 1_000_000);
        assert_eq!(g.wait(t0), Some(t0 + 100 * MS));
        let t1 = t0 + 100 * MS;
        assert_eq!(g.wait(t1), None);
        g.charge(t1, Some(10_000_000), 1_000_000);
        assert_eq!(g.wait(t1), Some(t1 + 100 * MS));
        // A second idle: the next slice goes at once, and only one.
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(g.wait(t2), None);
        g.charge(t2, Some(10_000_000), 1_000_000);
        assert_eq!(g.wait(t2), Some(t2 + 100 * MS));
        // No target: no spacing.
        g.charge(t2, None, 1_000_000);
        assert_eq!(g.wait(t2), None);
    }

    #[test]
    fn a_late_wake_keeps_the_schedule_so_the_average_holds() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut g = RateGate::default();
        let mut now = t0;
        // Every wake is 3 ms late, as on a busy machine.
        for _ in 0..100 {
            g.charge(now, Some(1_000_000), 20_000);
            now = g.wait(now).unwrap() + 3 * MS;
        }
        // 100 slices of 20 ms: two seconds, not 2.3.
        let next = g.wait(now).unwrap_or(now);
        let took = next - t0;
        assert!(took >= Duration::from_millis(2000), "{took:?}");
        assert!(took <= Duration::from_millis(2003), "{took:?}");
    }

    #[test]
    fn slices_last_about_twenty_milliseconds_and_never_tiny() {
        // 100 Mbit/s: 12.5 MB/s, 250 kB a slice.
        assert_eq!(slice_len(12_500_000), 250_000);
        assert_eq!(slice_len(1_000), MIN_SLICE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pacer_holds_the_rate_and_follows_a_new_target() {
        use ferry_proto::{Pace, Policy, Rate};
        let pace = |bits: u64| Pace {
            policy: Policy::Fair,
            target: Rate::from_bits_per_sec(bits).ok(),
        };
        let handle = PaceHandle::new(pace(8_000_000));
        let pacer = Pacer::new(Some(handle.clone()));
        let start = Instant::now();
        // 1 MB/s: ten slices of 100 kB take a second (the first goes at once).
        for _ in 0..11 {
            pacer.admit(100_000).await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // Ten times the target: the next ten take a tenth of the time.
        handle.set(pace(80_000_000));
        let again = Instant::now();
        for _ in 0..10 {
            pacer.admit(100_000).await;
        }
        assert!(
            again.elapsed() <= Duration::from_millis(200),
            "{:?}",
            again.elapsed()
        );
    }
}
