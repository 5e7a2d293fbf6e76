//! One direction of an emulated WAN link, without IO: packets are offered
//! at a time, and come out when they are due.
//!
//! A packet meets, in order:
//! 1. random loss (independent, with the configured probability);
//! 2. a drop-tail queue of so many packets in front of the bottleneck;
//! 3. the bottleneck, which sends one packet after another at its rate;
//! 4. the one-way propagation delay.
//!
//! Time is passed in, so the model is tested without sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngExt as _, SeedableRng as _};
use serde::Serialize;

/// How one direction behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Bottleneck rate in bits per second, counting whole IP packets;
    /// `None`: no bottleneck.
    pub rate: Option<u64>,
    /// One-way propagation delay.
    pub delay: Duration,
    /// Probability that a packet is lost, 0–1.
    pub loss: f64,
    /// Packets the bottleneck queue holds (the one being sent included).
    pub queue: usize,
}

/// What a direction did since the counters were last taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub delivered_packets: u64,
    pub delivered_bytes: u64,
    /// Lost at random.
    pub lost: u64,
    /// Dropped because the queue was full.
    pub dropped: u64,
    /// The longest the queue got, in packets.
    pub max_queue: usize,
}

/// One direction of the link.
#[derive(Debug)]
pub struct Direction {
    shape: Shape,
    rng: SmallRng,
    /// Waiting for or being sent by the bottleneck, with the time each
    /// leaves it.
    queue: VecDeque<(Instant, Vec<u8>)>,
    /// On the wire, with the time each arrives.
    wire: VecDeque<(Instant, Vec<u8>)>,
    /// When the bottleneck is free to start the next packet.
    free_at: Option<Instant>,
    counters: Counters,
    /// Buffers of delivered packets, for reuse.
    spare: Vec<Vec<u8>>,
}

impl Direction {
    pub fn new(shape: Shape, seed: u64) -> Self {
        Direction {
            shape,
            rng: SmallRng::seed_from_u64(seed),
            queue: VecDeque::new(),
            wire: VecDeque::new(),
            free_at: None,
            counters: Counters::default(),
            spare: Vec::new(),
        }
    }

    /// An empty buffer for the next packet.
    pub fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// Gives a buffer back once its packet is written out.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.spare.len() < 4096 {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// A packet arrives at `now`.
    pub fn offer(&mut self, now: Instant, packet: Vec<u8>) {
        self.advance(now);
        self.counters.packets_in += 1;
        self.counters.bytes_in += packet.len() as u64;
        if self.shape.loss > 0.0 && self.rng.random_bool(self.shape.loss.min(1.0)) {
            self.counters.lost += 1;
            self.recycle(packet);
            return;
        }
        if self.queue.len() >= self.shape.queue {
            self.counters.dropped += 1;
            self.recycle(packet);
            return;
        }
        let leaves = match self.shape.rate {
            None => now,
            Some(bps) => {
                let start = self.free_at.map_or(now, |f| f.max(now));
                let serialise = Duration::from_nanos(
                    (packet.len() as u128 * 8 * 1_000_000_000 / u128::from(bps.max(1))) as u64,
                );
                start + serialise
            }
        };
        self.free_at = Some(leaves);
        self.queue.push_back((leaves, packet));
        self.counters.max_queue = self.counters.max_queue.max(self.queue.len());
    }

    /// Moves packets that have left the bottleneck by `now` onto the wire.
    fn advance(&mut self, now: Instant) {
        while self.queue.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((left, p)) = self.queue.pop_front() {
                self.wire.push_back((left + self.shape.delay, p));
            }
        }
    }

    /// Every packet due by `now`, in order.
    pub fn due(&mut self, now: Instant, mut out: impl FnMut(Vec<u8>)) {
        self.advance(now);
        while self.wire.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, p)) = self.wire.pop_front() {
                self.counters.delivered_packets += 1;
                self.counters.delivered_bytes += p.len() as u64;
                out(p);
            }
        }
    }

    /// When the next packet falls due, if any is in the link.
    pub fn next_due(&self) -> Option<Instant> {
        let wire = self.wire.front().map(|(t, _)| *t);
        let queue = self.queue.front().map(|(t, _)| *t + self.shape.delay);
        match (wire, queue) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The counters since the last call, which starts them afresh.
    pub fn take_counters(&mut self) -> Counters {
        let c = self.counters;
        self.counters = Counters {
            max_queue: self.queue.len(),
            ..Counters::default()
        };
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(mbit: u64, delay_ms: u64, loss: f64, queue: usize) -> Shape {
        Shape {
            rate: Some(mbit * 1_000_000),
            delay: Duration::from_millis(delay_ms),
            loss,
            queue,
        }
    }

    fn packet(n: usize) -> Vec<u8> {
        vec![0u8; n]
    }

    #[test]
    fn packets_arrive_after_serialisation_and_delay_in_order() {
        let t0 = Instant::now();
        let mut d = Direction::new(shape(100, 50, 0.0, 100), 1);
        // Three 1250-byte packets at once: 100 µs each on 100 Mbit/s.
        for i in 0..3u8 {
            let mut p = packet(1250);
            p[0] = i;
            d.offer(t0, p);
        }
        let mut got = Vec::new();
        d.due(t0 + Duration::from_micros(50_150), |p| got.push(p[0]));
        assert_eq!(got, vec![0]);
        assert_eq!(d.next_due(), Some(t0 + Duration::from_micros(50_200)));
        d.due(t0 + Duration::from_micros(50_300), |p| got.push(p[0]));
        assert_eq!(got, vec![0, 1, 2]);
        assert_eq!(d.next_due(), None);
    }

    #[test]
    fn a_full_queue_drops_the_newcomer() {
        let t0 = Instant::now();
        let mut d = Direction::new(shape(10, 10, 0.0, 5), 1);
        for _ in 0..8 {
            d.offer(t0, packet(1500));
        }
        let c = d.take_counters();
        assert_eq!((c.packets_in, c.dropped, c.max_queue), (8, 3, 5));
        // Once the bottleneck has sent some, there is room again.
        d.offer(t0 + Duration::from_millis(3), packet(1500));
        assert_eq!(d.take_counters().dropped, 0);
    }

    #[test]
    fn the_bottleneck_holds_its_rate() {
        let t0 = Instant::now();
        let mut d = Direction::new(shape(100, 20, 0.0, 100_000), 1);
        // Offer 1 s worth at twice the rate; what comes out in the first
        // second after the delay is the link's rate.
        for i in 0..16_667u64 {
            d.offer(t0 + Duration::from_micros(i * 60), packet(1500));
        }
        let mut bytes = 0u64;
        d.due(t0 + Duration::from_millis(1020), |p| {
            bytes += p.len() as u64
        });
        let mbit = bytes as f64 * 8.0 / 1e6;
        assert!((99.0..=100.5).contains(&mbit), "{mbit} Mbit in a second");
    }

    #[test]
    fn random_loss_is_close_to_its_probability() {
        let t0 = Instant::now();
        let mut d = Direction::new(
            Shape {
                rate: None,
                delay: Duration::ZERO,
                loss: 0.01,
                queue: 1000,
            },
            7,
        );
        for _ in 0..200_000 {
            d.offer(t0, packet(100));
            d.due(t0, |_| {});
        }
        let c = d.take_counters();
        let share = c.lost as f64 / c.packets_in as f64;
        assert!((0.009..=0.011).contains(&share), "{share}");
        assert_eq!(c.delivered_packets + c.lost, c.packets_in);
    }
}
