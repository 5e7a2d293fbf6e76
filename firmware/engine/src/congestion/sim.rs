//! A simulated path for [`DelayControl`]: senders paced like quinn's, a
//! bottleneck with a drop-tail queue, random loss, a one-way delay each
//! way, and optional constant-rate cross traffic. Time is simulated, so a
//! minute of transfer runs in a fraction of a second and every run is the
//! same.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use ferry_proto::{Pace, Policy, Rate};

use super::DelayControl;

const MTU: u16 = 1200;
const PACKET: u64 = MTU as u64;

struct Path {
    /// Bottleneck rate in bytes per second, and when it changes (if it does).
    rate: f64,
    rate_later: Option<(Duration, f64)>,
    one_way: Duration,
    queue_limit: usize,
    loss: f64,
    /// Cross traffic: bytes per second, from, until.
    cross: Option<(f64, Duration, Duration)>,
}

impl Path {
    fn new(mbit: f64, rtt_ms: u64, loss: f64) -> Self {
        Path {
            rate: mbit * 1e6 / 8.0,
            rate_later: None,
            one_way: Duration::from_millis(rtt_ms / 2),
            queue_limit: 1000,
            loss,
            cross: None,
        }
    }

    fn rate_at(&self, t: Duration) -> f64 {
        match self.rate_later {
            Some((from, r)) if t >= from => r,
            _ => self.rate,
        }
    }
}

struct Flow {
    ctl: DelayControl,
    in_flight: u64,
    next_send: Duration,
    srtt: Duration,
    /// Bytes delivered per 100 ms bin.
    delivered: Vec<u64>,
    /// Bytes put on the wire per 100 ms bin (sent, lost or not).
    sent: Vec<u64>,
}

#[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum Event {
    Ack { flow: usize, sent: Duration },
    Lost { flow: usize, sent: Duration },
    Cross,
}

struct Sim {
    start: Instant,
    path: Path,
    flows: Vec<Flow>,
    rng: u64,
    link_free: Duration,
    /// Departure times of packets in the bottleneck queue.
    queue: VecDeque<Duration>,
    events: BinaryHeap<Reverse<(Duration, u64, Event)>>,
    seq: u64,
    queue_drops: u64,
    /// Queue drops per 100 ms bin.
    drops: Vec<u64>,
    random_losses: u64,
    /// Queueing delay seen by arriving packets, per 100 ms bin (max).
    queue_delay: Vec<Duration>,
}

const BIN: Duration = Duration::from_millis(100);

fn bin(t: Duration) -> usize {
    (t.as_millis() / BIN.as_millis()) as usize
}

fn add(v: &mut Vec<u64>, i: usize, n: u64) {
    if v.len() <= i {
        v.resize(i + 1, 0);
    }
    v[i] += n;
}

impl Sim {
    fn new(path: Path, paces: &[Pace]) -> Self {
        let start = Instant::now();
        let flows = paces
            .iter()
            .map(|&p| Flow {
                ctl: DelayControl::new(p, MTU, start),
                in_flight: 0,
                next_send: Duration::ZERO,
                srtt: Duration::from_millis(333),
                delivered: Vec::new(),
                sent: Vec::new(),
            })
            .collect();
        let mut sim = Sim {
            start,
            path,
            flows,
            rng: 0x9E37_79B9_7F4A_7C15,
            link_free: Duration::ZERO,
            queue: VecDeque::new(),
            events: BinaryHeap::new(),
            seq: 0,
            queue_drops: 0,
            drops: Vec::new(),
            random_losses: 0,
            queue_delay: Vec::new(),
        };
        if let Some((_, from, _)) = sim.path.cross {
            sim.schedule(from, Event::Cross);
        }
        sim
    }

    fn random(&mut self) -> f64 {
        // xorshift64*: deterministic and good enough for loss draws.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn schedule(&mut self, at: Duration, e: Event) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, e)));
    }

    /// Offers a packet to the bottleneck at `t`; its delivery time, or
    /// `None` if the queue was full.
    fn enqueue(&mut self, t: Duration) -> Option<Duration> {
        while self.queue.front().is_some_and(|&d| d <= t) {
            self.queue.pop_front();
        }
        let delay = self.link_free.saturating_sub(t);
        let b = bin(t);
        if self.queue_delay.len() <= b {
            self.queue_delay.resize(b + 1, Duration::ZERO);
        }
        self.queue_delay[b] = self.queue_delay[b].max(delay);
        if self.queue.len() >= self.path.queue_limit {
            self.queue_drops += 1;
            add(&mut self.drops, b, 1);
            return None;
        }
        let serialise = Duration::from_secs_f64(PACKET as f64 / self.path.rate_at(t));
        let departs = self.link_free.max(t) + serialise;
        self.link_free = departs;
        self.queue.push_back(departs);
        Some(departs + self.path.one_way)
    }

    fn send(&mut self, f: usize, t: Duration) {
        let lost = self.random() < self.path.loss;
        let delivered = if lost {
            self.random_losses += 1;
            None
        } else {
            self.enqueue(t)
        };
        let flow = &mut self.flows[f];
        flow.in_flight += PACKET;
        add(&mut flow.sent, bin(t), PACKET);
        // quinn's pacer: 1.25 windows per smoothed RTT.
        let rate = 1.25 * flow.ctl.window() as f64 / flow.srtt.as_secs_f64();
        flow.next_send = t + Duration::from_secs_f64(PACKET as f64 / rate);
        match delivered {
            Some(at) => {
                add(&mut flow.delivered, bin(at), PACKET);
                let ack = at + self.path.one_way;
                self.schedule(ack, Event::Ack { flow: f, sent: t });
            }
            None => {
                // Declared lost about 9/8 of a round trip later, as quinn's
                // time threshold does.
                let rtt = 2 * self.path.one_way + self.link_free.saturating_sub(t);
                let srtt = self.flows[f].srtt;
                self.schedule(
                    t + rtt.max(srtt).mul_f64(9.0 / 8.0),
                    Event::Lost { flow: f, sent: t },
                );
            }
        }
    }

    fn run(&mut self, until: Duration) {
        loop {
            let next_event = self.events.peek().map(|Reverse((t, _, _))| *t);
            let next_send = self
                .flows
                .iter()
                .enumerate()
                .filter(|(_, f)| f.in_flight + PACKET <= f.ctl.window())
                .map(|(i, f)| (f.next_send, i))
                .min();
            let t = match (next_event, next_send) {
                (Some(e), Some((s, _))) => e.min(s),
                (Some(e), None) => e,
                (None, Some((s, _))) => s,
                (None, None) => return,
            };
            if t > until {
                return;
            }
            match (next_event, next_send) {
                (_, Some((s, i))) if s == t && next_event.is_none_or(|e| s <= e) => {
                    self.send(i, t);
                }
                _ => {
                    let Some(Reverse((t, _, e))) = self.events.pop() else {
                        return;
                    };
                    self.handle(t, e);
                }
            }
        }
    }

    fn handle(&mut self, t: Duration, e: Event) {
        let now = self.start + t;
        match e {
            Event::Ack { flow, sent } => {
                let f = &mut self.flows[flow];
                f.in_flight -= PACKET;
                let rtt = t - sent;
                f.srtt = f.srtt.mul_f64(7.0 / 8.0) + rtt.mul_f64(1.0 / 8.0);
                f.ctl.on_ack(now, self.start + sent, PACKET, false);
                f.next_send = f.next_send.max(t);
            }
            Event::Lost { flow, sent } => {
                let f = &mut self.flows[flow];
                f.in_flight -= PACKET;
                f.ctl.on_loss(now, self.start + sent, PACKET, false);
                f.next_send = f.next_send.max(t);
            }
            Event::Cross => {
                let Some((rate, _, until)) = self.path.cross else {
                    return;
                };
                self.enqueue(t);
                let next = t + Duration::from_secs_f64(PACKET as f64 / rate);
                if next < until {
                    self.schedule(next, Event::Cross);
                }
            }
        }
    }

    /// A flow's delivered rate in Mbit/s between two times.
    fn mbit(&self, flow: usize, from: Duration, to: Duration) -> f64 {
        let bytes: u64 = self.flows[flow]
            .delivered
            .iter()
            .enumerate()
            .filter(|(i, _)| *i >= bin(from) && *i < bin(to))
            .map(|(_, b)| b)
            .sum();
        bytes as f64 * 8.0 / (to - from).as_secs_f64() / 1e6
    }

    fn drops_between(&self, from: Duration, to: Duration) -> u64 {
        self.drops
            .iter()
            .enumerate()
            .filter(|(i, _)| *i >= bin(from) && *i < bin(to))
            .map(|(_, d)| d)
            .sum()
    }

    /// The largest queueing delay arriving packets met between two times.
    fn worst_queue(&self, from: Duration, to: Duration) -> Duration {
        self.queue_delay
            .iter()
            .enumerate()
            .filter(|(i, _)| *i >= bin(from) && *i < bin(to))
            .map(|(_, d)| *d)
            .max()
            .unwrap_or_default()
    }
}

fn pace(policy: Policy, mbit: u64) -> Pace {
    Pace {
        policy,
        target: Some(Rate::from_mbit(mbit).unwrap()),
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn holds_the_target_under_random_loss() {
    // Scenario B's path with the target just under the link, then C's.
    for (rtt, loss, policy) in [
        (100, 0.01, Policy::Fair),
        (100, 0.01, Policy::Fixed),
        (200, 0.02, Policy::Fair),
    ] {
        let mut sim = Sim::new(Path::new(100.0, rtt, loss), &[pace(policy, 90)]);
        sim.run(secs(30));
        let got = sim.mbit(0, secs(5), secs(30));
        // What arrives is the target less the random loss.
        assert!(
            got >= 90.0 * (1.0 - loss) * 0.97,
            "{policy} at {rtt} ms and {loss} loss: {got:.1} Mbit/s"
        );
        assert_eq!(sim.queue_drops, 0, "{policy}: the queue overflowed");
        assert!(sim.random_losses > 1000, "the path did lose packets");
    }
}

#[test]
fn fair_fills_the_link_with_a_small_queue_when_the_target_is_above_it() {
    let mut sim = Sim::new(Path::new(100.0, 100, 0.01), &[pace(Policy::Fair, 200)]);
    sim.run(secs(30));
    let got = sim.mbit(0, secs(5), secs(30));
    assert!(got >= 100.0 * 0.99 * 0.97, "{got:.1} Mbit/s");
    assert_eq!(sim.queue_drops, 0);
    let queue = sim.worst_queue(secs(10), secs(30));
    assert!(
        queue < Duration::from_millis(40),
        "standing queue {queue:?}"
    );
    // The start is quick: most of the link within two seconds.
    let early = sim.mbit(0, secs(1), secs(2));
    assert!(early > 70.0, "{early:.1} Mbit/s in the second second");
}

#[test]
fn fair_backs_off_when_queueing_delay_grows() {
    // 60 Mbit/s of traffic that does not back off joins at 10 s.
    let mut path = Path::new(100.0, 100, 0.0);
    path.cross = Some((60e6 / 8.0, secs(10), secs(40)));
    let mut sim = Sim::new(path, &[pace(Policy::Fair, 100)]);
    sim.run(secs(40));
    let before = sim.mbit(0, secs(5), secs(10));
    let during = sim.mbit(0, secs(20), secs(40));
    assert!(before > 90.0, "{before:.1} Mbit/s alone");
    assert!(
        during < 45.0,
        "{during:.1} Mbit/s beside 60 Mbit/s of others"
    );
    assert!(during > 25.0, "{during:.1} Mbit/s: it gave up too much");
    // The newcomer does not back off, so the queue overflows while fair
    // notices (a round trip or two); after that, it stays below the brim.
    assert_eq!(sim.drops_between(secs(0), secs(10)), 0);
    assert_eq!(
        sim.drops_between(secs(12), secs(40)),
        0,
        "fair kept the queue from overflowing"
    );
    let queue = sim.worst_queue(secs(20), secs(40));
    assert!(queue < Duration::from_millis(60), "queue {queue:?}");

    // The link itself slows down: fair follows it, and the queue stays short.
    let mut path = Path::new(100.0, 100, 0.0);
    path.rate_later = Some((secs(10), 50e6 / 8.0));
    let mut sim = Sim::new(path, &[pace(Policy::Fair, 100)]);
    sim.run(secs(30));
    let after = sim.mbit(0, secs(15), secs(30));
    assert!((45.0..=50.5).contains(&after), "{after:.1} Mbit/s on 50");
    let queue = sim.worst_queue(secs(15), secs(30));
    assert!(queue < Duration::from_millis(40), "queue {queue:?}");

    // Fixed, by contrast, holds its rate and the queue overflows.
    let mut path = Path::new(100.0, 100, 0.0);
    path.cross = Some((60e6 / 8.0, secs(10), secs(40)));
    let mut sim = Sim::new(path, &[pace(Policy::Fixed, 90)]);
    sim.run(secs(40));
    assert!(sim.queue_drops > 0, "fixed does not yield");
}

#[test]
fn never_exceeds_the_target() {
    // A gigabit path and a 100 Mbit/s target: what goes on the wire in any
    // second stays at the target.
    for policy in [Policy::Fair, Policy::Fixed] {
        for loss in [0.0, 0.01] {
            let mut sim = Sim::new(Path::new(1000.0, 20, loss), &[pace(policy, 100)]);
            sim.run(secs(20));
            let sent = &sim.flows[0].sent;
            for (i, w) in sent.windows(10).enumerate() {
                let mbit = w.iter().sum::<u64>() as f64 * 8.0 / 1e6;
                assert!(
                    mbit <= 100.0 * 1.02,
                    "{policy}, loss {loss}: {mbit:.1} Mbit/s in the second from {:.1} s",
                    i as f64 / 10.0
                );
            }
            let got = sim.mbit(0, secs(2), secs(20));
            assert!(got > 95.0 * (1.0 - loss), "{policy}: only {got:.1} Mbit/s");
        }
    }
}

#[test]
fn the_target_can_change_mid_transfer() {
    let mut sim = Sim::new(Path::new(1000.0, 50, 0.01), &[pace(Policy::Fair, 200)]);
    sim.run(secs(10));
    sim.flows[0].ctl.set_pace(pace(Policy::Fair, 50));
    sim.run(secs(20));
    let before = sim.mbit(0, secs(5), secs(10));
    let after = sim.mbit(0, secs(12), secs(20));
    assert!(before > 180.0, "{before:.1}");
    assert!((45.0..=51.0).contains(&after), "{after:.1}");
}

#[test]
fn heavy_persistent_loss_slows_it_down() {
    let run = |loss| {
        let mut sim = Sim::new(Path::new(100.0, 50, loss), &[pace(Policy::Fixed, 90)]);
        sim.run(secs(20));
        sim.mbit(0, secs(5), secs(20)) / (1.0 - loss)
    };
    let light = run(0.02);
    let heavy = run(0.30);
    assert!(light > 85.0, "{light:.1} Mbit/s sent at 2 % loss");
    assert!(heavy < light / 2.0, "{heavy:.1} Mbit/s sent at 30 % loss");
}

#[test]
fn two_fair_flows_share_the_link() {
    let mut sim = Sim::new(
        Path::new(100.0, 100, 0.01),
        &[pace(Policy::Fair, 100), pace(Policy::Fair, 100)],
    );
    sim.run(secs(60));
    let a = sim.mbit(0, secs(20), secs(60));
    let b = sim.mbit(1, secs(20), secs(60));
    let share = a / (a + b);
    assert!((0.4..=0.6).contains(&share), "{a:.1} and {b:.1} Mbit/s");
    assert!(a + b > 90.0, "together {:.1} Mbit/s", a + b);
    assert_eq!(sim.queue_drops, 0);
}

#[test]
fn the_minimum_rtt_is_refreshed_by_probing() {
    let mut sim = Sim::new(Path::new(100.0, 40, 0.0), &[pace(Policy::Fair, 200)]);
    sim.run(secs(5));
    let first = sim.flows[0].ctl.min_rtt().unwrap();
    assert!(first >= Duration::from_millis(40), "{first:?}");
    // The route gets longer; after a few probes the controller believes it
    // and keeps the link full instead of taking the extra delay for a queue.
    sim.path.one_way += Duration::from_millis(30);
    sim.run(secs(60));
    let later = sim.flows[0].ctl.min_rtt().unwrap();
    assert!(later >= Duration::from_millis(95), "{later:?}");
    let got = sim.mbit(0, secs(50), secs(60));
    assert!(got > 95.0, "{got:.1} Mbit/s after the route change");
}
