//! Congestion control: how fast the sending side of a session puts
//! datagrams on the wire.
//!
//! A session's [`Pace`] (policy and target rate, decided by the appliance)
//! lives in a [`PaceHandle`] that the connection's controller reads, so an
//! admin can change a running job's rate. [`PaceFactory`] plugs into quinn
//! and builds, per connection, a controller that follows the handle:
//!
//! - `fixed` and `fair` run [`DelayControl`], Ferry's controller for long,
//!   lossy paths where most loss is not congestion. It is sans-IO (time is
//!   passed in), and the tests below drive it through a simulated path.
//! - `cubic` and `bbr` run quinn's controllers, with the target as a cap.
//!
//! quinn paces a window over the smoothed RTT, so a window of
//! `rate × RTT` sends at `rate`: capping the rate is capping the window.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferry_proto::{Pace, Policy, Rate};
use quinn::congestion::{BbrConfig, Controller, ControllerFactory, ControllerMetrics, CubicConfig};
use quinn_proto::RttEstimator;

/// The pace of one connection, shared between the session (which sets it)
/// and the connection's congestion controller (which follows it).
#[derive(Debug, Clone)]
pub struct PaceHandle(Arc<AtomicU64>);

// Policy and target share one atomic word, so a reader never sees the
// policy of one update with the target of another: the low 2 bits are the
// policy, the rest the target in bits per second (0: no cap).
fn pack(pace: Pace) -> u64 {
    let policy = match pace.policy {
        Policy::Fixed => 0,
        Policy::Fair => 1,
        Policy::Cubic => 2,
        Policy::Bbr => 3,
    };
    let target = pace.target.map_or(0, Rate::bits_per_sec);
    (target.min(u64::MAX >> 2) << 2) | policy
}

fn unpack(word: u64) -> Pace {
    let policy = Policy::ALL[(word & 3) as usize];
    Pace {
        policy,
        target: Rate::from_bits_per_sec(word >> 2).ok(),
    }
}

impl PaceHandle {
    pub fn new(pace: Pace) -> Self {
        PaceHandle(Arc::new(AtomicU64::new(pack(pace))))
    }

    pub fn set(&self, pace: Pace) {
        self.0.store(pack(pace), Ordering::Relaxed);
    }

    pub fn get(&self) -> Pace {
        unpack(self.0.load(Ordering::Relaxed))
    }

    /// A factory whose controllers follow this handle.
    pub fn factory(&self) -> Arc<PaceFactory> {
        Arc::new(PaceFactory {
            handle: self.clone(),
        })
    }
}

/// Builds a [`Paced`] controller for each connection.
#[derive(Debug)]
pub struct PaceFactory {
    handle: PaceHandle,
}

impl ControllerFactory for PaceFactory {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(Paced::new(self.handle.clone(), now, current_mtu))
    }
}

/// quinn's controller interface over the policy the handle names.
struct Paced {
    handle: PaceHandle,
    pace: Pace,
    inner: Inner,
    mtu: u16,
    /// quinn's smoothed RTT at the last acknowledgement, for the cap on
    /// quinn's own controllers.
    srtt: Option<Duration>,
}

enum Inner {
    Delay(Box<DelayControl>),
    Quinn(Box<dyn Controller>),
}

impl Clone for Inner {
    fn clone(&self) -> Self {
        match self {
            Inner::Delay(d) => Inner::Delay(d.clone()),
            Inner::Quinn(c) => Inner::Quinn(c.clone_box()),
        }
    }
}

impl Paced {
    fn new(handle: PaceHandle, now: Instant, mtu: u16) -> Self {
        let pace = handle.get();
        Paced {
            inner: Self::inner_for(pace, now, mtu),
            handle,
            pace,
            mtu,
            srtt: None,
        }
    }

    fn inner_for(pace: Pace, now: Instant, mtu: u16) -> Inner {
        match pace.policy {
            Policy::Fixed | Policy::Fair => {
                Inner::Delay(Box::new(DelayControl::new(pace, mtu, now)))
            }
            Policy::Cubic => Inner::Quinn(Arc::new(CubicConfig::default()).build(now, mtu)),
            Policy::Bbr => Inner::Quinn(Arc::new(BbrConfig::default()).build(now, mtu)),
        }
    }

    /// Follows a change of pace: a new target applies at once; a change
    /// between Ferry's policies keeps what was learnt of the path, a change
    /// to or from quinn's starts that controller afresh.
    fn sync(&mut self, now: Instant) {
        let pace = self.handle.get();
        if pace == self.pace {
            return;
        }
        match (&mut self.inner, pace.policy) {
            (Inner::Delay(d), Policy::Fixed | Policy::Fair) => d.set_pace(pace),
            _ => self.inner = Self::inner_for(pace, now, self.mtu),
        }
        self.pace = pace;
    }
}

impl Controller for Paced {
    fn on_sent(&mut self, now: Instant, bytes: u64, last_packet_number: u64) {
        self.sync(now);
        if let Inner::Quinn(c) = &mut self.inner {
            c.on_sent(now, bytes, last_packet_number);
        }
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        self.sync(now);
        self.srtt = Some(rtt.get());
        match &mut self.inner {
            Inner::Delay(d) => d.on_ack(now, sent, bytes, app_limited),
            Inner::Quinn(c) => c.on_ack(now, sent, bytes, app_limited, rtt),
        }
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        if let Inner::Quinn(c) = &mut self.inner {
            c.on_end_acks(now, in_flight, app_limited, largest_packet_num_acked);
        }
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.sync(now);
        match &mut self.inner {
            Inner::Delay(d) => d.on_loss(now, sent, lost_bytes, is_persistent_congestion),
            Inner::Quinn(c) => {
                c.on_congestion_event(now, sent, is_persistent_congestion, lost_bytes)
            }
        }
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.mtu = new_mtu;
        match &mut self.inner {
            Inner::Delay(d) => d.set_mtu(new_mtu),
            Inner::Quinn(c) => c.on_mtu_update(new_mtu),
        }
    }

    fn window(&self) -> u64 {
        match &self.inner {
            Inner::Delay(d) => d.window(),
            Inner::Quinn(c) => {
                let w = c.window();
                match (self.pace.target, self.srtt) {
                    (Some(target), Some(srtt)) => {
                        let cap = (target.bytes_per_sec() as f64 * srtt.as_secs_f64()) as u64;
                        w.min(cap.max(2 * u64::from(self.mtu)))
                    }
                    _ => w,
                }
            }
        }
    }

    fn metrics(&self) -> ControllerMetrics {
        match &self.inner {
            Inner::Quinn(c) => c.metrics(),
            Inner::Delay(d) => {
                let mut m = ControllerMetrics::default();
                m.congestion_window = d.window();
                m.pacing_rate = d
                    .srtt()
                    .map(|srtt| (d.window() as f64 * 8.0 / srtt.as_secs_f64().max(1e-6)) as u64);
                m
            }
        }
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(Paced {
            handle: self.handle.clone(),
            pace: self.pace,
            inner: self.inner.clone(),
            mtu: self.mtu,
            srtt: self.srtt,
        })
    }

    fn initial_window(&self) -> u64 {
        match &self.inner {
            Inner::Delay(d) => d.initial_window(),
            Inner::Quinn(c) => c.initial_window(),
        }
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// Packets in the window before the first RTT sample.
const INITIAL_PACKETS: u64 = 32;
/// The window never shrinks below this many packets.
const MIN_PACKETS: u64 = 4;
/// The shortest interval between two window updates. One update per round
/// trip is the stable choice; on short paths this keeps updates from
/// chasing scheduling noise.
const MIN_ROUND: Duration = Duration::from_millis(10);
/// How fast `fair` moves towards its new window each round (FAST TCP's γ).
const GAMMA: f64 = 0.5;
/// The queueing delay `fair` aims to hold at its target rate: its share of
/// the bottleneck queue is `target × ALPHA_DELAY` (FAST TCP's α), within
/// the packet bounds below. Flows with equal targets keep equal shares of
/// the queue, and so get equal shares of the link.
const ALPHA_DELAY: Duration = Duration::from_millis(4);
const ALPHA_MIN_PACKETS: f64 = 16.0;
const ALPHA_MAX_PACKETS: f64 = 512.0;
/// In startup the window grows by this share of what is acknowledged:
/// ×1.5 per round trip, so the overshoot when the queue starts to build is
/// half a bandwidth-delay product, which a drop-tail queue can hold.
const STARTUP_GROWTH: f64 = 0.5;
/// Below this share of the target's bandwidth-delay product, startup
/// doubles its window each round trip instead: a path slower than half
/// the target is unusual (the admin sets the target from the link), and
/// doubling there overshoots by at most what the link itself carries.
const STARTUP_DOUBLING_SHARE: f64 = 0.5;
/// Startup begins at this share of the target's bandwidth-delay product
/// once the handshake has measured the RTT, rather than at a few packets.
const STARTUP_FIRST_SHARE: f64 = 0.25;
/// Startup ends when the recent RTT exceeds the minimum by this share of
/// it (or by `STARTUP_EXIT_MIN`, on short paths).
const STARTUP_EXIT_SHARE: f64 = 1.0 / 32.0;
const STARTUP_EXIT_MIN: Duration = Duration::from_millis(2);
/// RTT samples behind "the recent RTT" in startup.
const RECENT_SAMPLES: usize = 8;
/// A round losing more than this share of its packets is a heavy-loss
/// round; isolated random loss (a few percent) stays below it.
const HEAVY_LOSS: f64 = 0.10;
/// Heavy-loss rounds in a row before the window is cut: persistent, not a
/// burst.
const HEAVY_ROUNDS: u32 = 3;
/// The cut per further heavy-loss round, and the recovery per clean round.
const LOSS_CUT: f64 = 0.75;
const LOSS_RECOVERY: f64 = 1.0 / 16.0;
const LOSS_FLOOR: f64 = 1.0 / 64.0;
/// Rounds in a row without a queue before `fair` climbs multiplicatively.
const QUIET_ROUNDS: u32 = 5;
/// The climb per round after that.
const QUIET_GROWTH: f64 = 0.25;
/// The most packets startup's first window jumps to: a target far above
/// what the path carries must not become a first burst that floods it.
const STARTUP_FIRST_MAX_PACKETS: f64 = 256.0;
/// The minimum RTT expires unless confirmed within this window.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// A sample within this share above the minimum confirms it.
const MIN_RTT_CONFIRM: f64 = 1.0 / 16.0;
/// Probes in a row that must find a higher minimum before it is believed
/// (a route change), rather than someone else's standing queue.
const PROBES_TO_RAISE: u32 = 3;

/// Ferry's delay-based, rate-capped controller (policies `fixed` and
/// `fair`), after FAST TCP and FASP: it sets the window from the minimum
/// RTT against the current RTT and ignores random loss.
///
/// - `fixed` holds `target × RTT`: the target, whatever the queue.
/// - `fair` starts fast (×1.5 per round trip until the queue starts to
///   build), then each round moves its window towards
///   `base/rtt × window + α`, which keeps its share `α` of packets in the
///   bottleneck queue and gives way as other traffic fills it; never above
///   `target × RTT`.
/// - Both cut the window when loss is heavy (over 10 % of a round) for
///   three rounds in a row, and win it back as rounds come clean.
/// - Every 10 s without a sample near the minimum RTT, `fair` halves its
///   window for about a round trip so its own queue drains, and measures
///   the path again. A higher minimum is believed after three such probes.
#[derive(Debug, Clone)]
pub struct DelayControl {
    pace: Pace,
    mtu: u64,
    /// The policy's window, in bytes, before the loss factor.
    window: f64,
    loss_factor: f64,
    heavy_rounds: u32,
    phase: Phase,
    min_rtt: Option<Duration>,
    min_rtt_confirmed: Instant,
    higher_probes: u32,
    higher_min: Option<Duration>,
    srtt: Option<Duration>,
    recent: [Duration; RECENT_SAMPLES],
    recent_len: usize,
    recent_next: usize,
    /// Rounds in a row that saw no queue.
    quiet_rounds: u32,
    /// Startup has had its first RTT sample.
    started: bool,
    round: Round,
    /// Bytes per second acknowledged over the last full round.
    delivery_rate: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Startup,
    Steady,
    /// Draining our own queue to see the path's minimum RTT.
    Probe {
        started: Instant,
        until: Instant,
        min: Option<Duration>,
    },
}

/// What one round (about a round trip) saw.
#[derive(Debug, Clone, Copy)]
struct Round {
    started: Instant,
    ends: Instant,
    min_rtt: Option<Duration>,
    acked: u64,
    lost: u64,
    app_limited: bool,
}

impl Round {
    fn new(started: Instant, ends: Instant) -> Self {
        Round {
            started,
            ends,
            min_rtt: None,
            acked: 0,
            lost: 0,
            app_limited: false,
        }
    }
}

impl Round {
    /// Bytes per second acknowledged in this round so far.
    fn rate(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.started).as_secs_f64();
        if elapsed < MIN_ROUND.as_secs_f64() / 2.0 {
            return 0.0;
        }
        self.acked as f64 / elapsed
    }
}

impl DelayControl {
    pub fn new(pace: Pace, mtu: u16, now: Instant) -> Self {
        let mtu = u64::from(mtu);
        DelayControl {
            pace,
            mtu,
            window: (INITIAL_PACKETS * mtu) as f64,
            loss_factor: 1.0,
            heavy_rounds: 0,
            phase: Phase::Startup,
            min_rtt: None,
            min_rtt_confirmed: now,
            higher_probes: 0,
            higher_min: None,
            srtt: None,
            recent: [Duration::ZERO; RECENT_SAMPLES],
            recent_len: 0,
            recent_next: 0,
            quiet_rounds: 0,
            started: false,
            round: Round::new(now, now + MIN_ROUND),
            delivery_rate: 0.0,
        }
    }

    pub fn set_pace(&mut self, pace: Pace) {
        self.pace = pace;
    }

    pub fn set_mtu(&mut self, mtu: u16) {
        self.mtu = u64::from(mtu);
    }

    pub fn initial_window(&self) -> u64 {
        INITIAL_PACKETS * self.mtu
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// Bytes that may be in flight.
    pub fn window(&self) -> u64 {
        let mut w = self.window * self.loss_factor;
        if matches!(self.phase, Phase::Probe { .. }) {
            w /= 2.0;
        }
        (w as u64).max(MIN_PACKETS * self.mtu)
    }

    /// `fixed` needs a target to hold; without one it behaves as `fair`.
    fn fixed(&self) -> bool {
        self.pace.policy == Policy::Fixed && self.pace.target.is_some()
    }

    fn target(&self) -> Option<f64> {
        self.pace.target.map(|r| r.bytes_per_sec() as f64)
    }

    /// The window that sends at the target when its bytes stay in flight
    /// for `rtt`.
    fn cap(&self, rtt: Duration) -> f64 {
        self.target()
            .map_or(f64::INFINITY, |t| t * rtt.as_secs_f64())
    }

    fn alpha(&self) -> f64 {
        let mtu = self.mtu as f64;
        self.target()
            .map_or(ALPHA_MAX_PACKETS * mtu, |t| t * ALPHA_DELAY.as_secs_f64())
            .clamp(ALPHA_MIN_PACKETS * mtu, ALPHA_MAX_PACKETS * mtu)
    }

    /// A packet sent at `sent` was acknowledged.
    pub fn on_ack(&mut self, now: Instant, sent: Instant, bytes: u64, app_limited: bool) {
        let rtt = now.saturating_duration_since(sent);
        self.sample(now, rtt);
        self.round.min_rtt = Some(self.round.min_rtt.map_or(rtt, |m| m.min(rtt)));
        self.round.acked += bytes;
        self.round.app_limited |= app_limited;
        let srtt = self.srtt.unwrap_or(rtt);

        if self.fixed() {
            // Hold the target over the RTT as it is now, queue included.
            self.window = self.cap(srtt);
        } else {
            match &mut self.phase {
                Phase::Startup => {
                    let base = self.min_rtt.unwrap_or(rtt);
                    let target_bdp = self.cap(base);
                    if !self.started {
                        self.started = true;
                        if target_bdp.is_finite() {
                            let first = (target_bdp * STARTUP_FIRST_SHARE)
                                .min(STARTUP_FIRST_MAX_PACKETS * self.mtu as f64);
                            self.window = self.window.max(first);
                        }
                    }
                    if !app_limited {
                        let growth = if self.window < target_bdp * STARTUP_DOUBLING_SHARE {
                            1.0
                        } else {
                            STARTUP_GROWTH
                        };
                        self.window += bytes as f64 * growth;
                    }
                    let recent = self.recent_rtt();
                    let exit = (base.mul_f64(STARTUP_EXIT_SHARE)).max(STARTUP_EXIT_MIN);
                    if self.recent_len == RECENT_SAMPLES && recent > base + exit {
                        // The queue is building, and the RTT says so a
                        // round trip late, after the window grew on. Settle
                        // at what the path delivers.
                        let rate = self.delivery_rate.max(self.round.rate(now));
                        if rate > 0.0 {
                            self.window = self.window.min(rate * base.as_secs_f64());
                        }
                        self.phase = Phase::Steady;
                        self.quiet_rounds = 0;
                    }
                    let cap = self.cap(srtt);
                    if self.window >= cap {
                        // The target, not the path, is the limit.
                        self.window = cap;
                        self.phase = Phase::Steady;
                    }
                }
                Phase::Probe {
                    started,
                    until,
                    min,
                } => {
                    // Only packets sent after the window was halved see
                    // the drained queue.
                    if sent >= *started {
                        *min = Some(min.map_or(rtt, |m| m.min(rtt)));
                    }
                    if now >= *until {
                        let found = *min;
                        self.end_probe(now, found);
                    }
                }
                Phase::Steady => {}
            }
        }
        if now >= self.round.ends {
            self.end_round(now);
        }
    }

    /// Packets sent at `sent` were lost. `persistent`: everything sent
    /// over several round trips was lost (the path went away).
    pub fn on_loss(&mut self, now: Instant, _sent: Instant, bytes: u64, persistent: bool) {
        self.round.lost += bytes;
        if persistent {
            self.window = self.initial_window() as f64;
            self.loss_factor = 1.0;
            self.heavy_rounds = 0;
            self.phase = Phase::Startup;
            self.recent_len = 0;
            self.round = Round::new(now, now + self.round_length());
        }
    }

    fn sample(&mut self, now: Instant, rtt: Duration) {
        self.srtt = Some(match self.srtt {
            None => rtt,
            Some(s) => s.mul_f64(7.0 / 8.0) + rtt.mul_f64(1.0 / 8.0),
        });
        self.recent[self.recent_next] = rtt;
        self.recent_next = (self.recent_next + 1) % RECENT_SAMPLES;
        self.recent_len = (self.recent_len + 1).min(RECENT_SAMPLES);
        match self.min_rtt {
            Some(m) if rtt > m.mul_f64(1.0 + MIN_RTT_CONFIRM) => {}
            Some(m) if rtt >= m => self.min_rtt_confirmed = now,
            _ => {
                self.min_rtt = Some(rtt);
                self.min_rtt_confirmed = now;
                self.higher_probes = 0;
                self.higher_min = None;
            }
        }
    }

    fn recent_rtt(&self) -> Duration {
        self.recent[..self.recent_len]
            .iter()
            .copied()
            .min()
            .unwrap_or_default()
    }

    fn round_length(&self) -> Duration {
        self.srtt.unwrap_or(MIN_ROUND).max(MIN_ROUND)
    }

    fn end_round(&mut self, now: Instant) {
        let round = self.round;
        self.round = Round::new(now, now + self.round_length());
        self.delivery_rate = round.rate(now);
        let Some(rtt) = round.min_rtt else { return };

        let sent = round.acked + round.lost;
        let heavy =
            sent > 0 && round.lost as f64 > HEAVY_LOSS * sent as f64 && round.lost >= 8 * self.mtu;
        if heavy {
            self.heavy_rounds += 1;
            if self.heavy_rounds >= HEAVY_ROUNDS {
                self.loss_factor = (self.loss_factor * LOSS_CUT).max(LOSS_FLOOR);
            }
            if self.phase == Phase::Startup {
                self.phase = Phase::Steady;
            }
        } else {
            self.heavy_rounds = 0;
            self.loss_factor = (self.loss_factor + LOSS_RECOVERY).min(1.0);
        }

        if self.fixed() || self.phase != Phase::Steady {
            return;
        }
        let base = self.min_rtt.unwrap_or(rtt);
        let w = self.window;
        let target =
            (1.0 - GAMMA) * w + GAMMA * (base.as_secs_f64() / rtt.as_secs_f64() * w + self.alpha());
        let mut next = target.min(2.0 * w);
        if rtt.saturating_sub(base) < ALPHA_DELAY / 4 {
            self.quiet_rounds += 1;
        } else {
            self.quiet_rounds = 0;
        }
        if self.quiet_rounds >= QUIET_ROUNDS {
            // No queue at all, round after round: far below the path's
            // rate (a competitor left, startup ended early on a noisy
            // sample). Climb at startup's pace rather than by α a round.
            next = next.max(w * (1.0 + QUIET_GROWTH));
        }
        if round.app_limited && next > w {
            // Growth untested by real traffic would be a burst later.
            next = w;
        }
        // The cap uses the mean RTT of packets, acknowledgement delay
        // included: that is how long a window's bytes stay in flight.
        let cap = self.cap(self.srtt.unwrap_or(rtt).max(rtt));
        self.window = next.min(cap).max((MIN_PACKETS * self.mtu) as f64);

        log::trace!(
            "fair round: rtt {rtt:?} over {base:?}, window {} (x{:.2} for loss), acked {} lost {}{}",
            self.window as u64,
            self.loss_factor,
            round.acked,
            round.lost,
            if round.app_limited {
                ", app-limited"
            } else {
                ""
            }
        );
        if now.saturating_duration_since(self.min_rtt_confirmed) > MIN_RTT_WINDOW {
            let srtt = self.srtt.unwrap_or(rtt);
            self.phase = Phase::Probe {
                started: now,
                until: now + srtt.mul_f64(1.25) + Duration::from_millis(20),
                min: None,
            };
        }
    }

    fn end_probe(&mut self, now: Instant, found: Option<Duration>) {
        self.phase = Phase::Steady;
        // The drained queue says nothing about the restored window.
        self.quiet_rounds = 0;
        self.min_rtt_confirmed = now;
        let (Some(found), Some(min)) = (found, self.min_rtt) else {
            return;
        };
        if found <= min.mul_f64(1.0 + MIN_RTT_CONFIRM) {
            self.higher_probes = 0;
            self.higher_min = None;
            return;
        }
        // Higher than before: a longer route, or someone else's standing
        // queue. Believe it only when it lasts.
        self.higher_probes += 1;
        let higher = self.higher_min.map_or(found, |h| h.min(found));
        self.higher_min = Some(higher);
        if self.higher_probes >= PROBES_TO_RAISE {
            self.min_rtt = Some(higher);
            self.higher_probes = 0;
            self.higher_min = None;
        }
    }
}

#[cfg(test)]
mod sim;
