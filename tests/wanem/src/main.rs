//! `ferry-wanem`: a WAN between two network namespaces, in user space.
//!
//! This kernel has no netem, so the benchmarks and tests make their long,
//! lossy links with this relay instead. It puts a TUN device named `wan0`
//! in each namespace (the left one `10.77.0.1/24`, the right one
//! `10.77.0.2/24` unless told otherwise) and carries every IP packet
//! between them through a [`link::Direction`] per way: random loss, a
//! drop-tail queue, a bottleneck rate and a one-way delay. TCP and UDP
//! alike go through, so Ferry and its TCP baselines share one link.
//!
//! One thread does it all: it sleeps in `ppoll` until a device is readable,
//! a packet falls due or a signal comes, then reads every waiting packet
//! and writes every due one, so one wakeup serves a burst.
//!
//! It prints `ready` once both devices are up. `SIGUSR1` prints the
//! counters since the last report as one JSON line; `SIGTERM`, `SIGINT` or
//! the end of `--lifetime` prints the last report and exits, and the
//! devices vanish with it.

mod link;

use std::fs::File;
use std::io::Write as _;
use std::os::fd::AsFd as _;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::time::TimeSpec;
use serde::Serialize;
use tun_rs::{DeviceBuilder, SyncDevice};

use link::{Counters, Direction, Shape};

#[derive(Debug, Parser)]
#[command(
    name = "ferry-wanem",
    about = "Emulate a WAN link between two network namespaces"
)]
struct Cli {
    /// The namespace on the left (the sender, in Ferry's benchmarks).
    #[arg(long)]
    left: String,
    /// The namespace on the right.
    #[arg(long)]
    right: String,
    #[arg(long, default_value = "10.77.0.1")]
    left_ip: std::net::Ipv4Addr,
    #[arg(long, default_value = "10.77.0.2")]
    right_ip: std::net::Ipv4Addr,
    /// Bottleneck rate each way, in bits per second of IP packets (100M);
    /// 0 for none.
    #[arg(long, default_value = "0")]
    rate: String,
    /// The rate right to left, when it differs.
    #[arg(long)]
    rate_back: Option<String>,
    /// One-way delay each way (50ms makes a 100 ms round trip).
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    delay: Duration,
    #[arg(long, value_parser = humantime::parse_duration)]
    delay_back: Option<Duration>,
    /// Random loss each way: 0.01 or 1%.
    #[arg(long, default_value = "0", value_parser = parse_loss)]
    loss: f64,
    #[arg(long, value_parser = parse_loss)]
    loss_back: Option<f64>,
    /// Packets the bottleneck queue holds each way.
    #[arg(long, default_value_t = 1000)]
    queue: usize,
    /// MTU of the two devices.
    #[arg(long, default_value_t = 1500)]
    mtu: u16,
    /// Stop after this long whatever happens, so a crashed benchmark
    /// leaves nothing behind.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    lifetime: Duration,
    /// Seed of the loss draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn parse_loss(s: &str) -> Result<f64, String> {
    let (number, scale) = match s.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (s, 1.0),
    };
    let v: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a loss rate (0.01 or 1%)"))?;
    let v = v / scale;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{s:?}: a loss rate is between 0 and 100%"));
    }
    Ok(v)
}

fn parse_rate(s: &str) -> Result<Option<u64>> {
    if s.trim() == "0" {
        return Ok(None);
    }
    let rate: ferry_proto::Rate = s.parse()?;
    Ok(Some(rate.bits_per_sec()))
}

/// One report line.
#[derive(Debug, Serialize)]
struct Report {
    /// Seconds the counters cover.
    seconds: f64,
    /// Left to right.
    forward: Counters,
    /// Right to left.
    back: Counters,
}

/// Makes `wan0` in namespace `ns` (the TUN device is created in the
/// namespace of the thread that opens it), with `ip/24`, up.
fn device_in(ns: &str, addr: std::net::Ipv4Addr, mtu: u16) -> Result<SyncDevice> {
    let home = File::open("/proc/thread-self/ns/net").context("opening our own namespace")?;
    let target = File::open(format!("/run/netns/{ns}"))
        .with_context(|| format!("network namespace {ns} (make it with `ip netns add {ns}`)"))?;
    setns(target.as_fd(), CloneFlags::CLONE_NEWNET).with_context(|| format!("entering {ns}"))?;
    let made = DeviceBuilder::new().name("wan0").mtu(mtu).build_sync();
    setns(home.as_fd(), CloneFlags::CLONE_NEWNET).context("coming back to our namespace")?;
    let dev = made.with_context(|| format!("creating wan0 in {ns}"))?;
    dev.set_nonblocking(true)?;
    ip(&[
        "-n",
        ns,
        "addr",
        "add",
        &format!("{addr}/24"),
        "dev",
        "wan0",
    ])?;
    ip(&["-n", ns, "link", "set", "wan0", "up"])?;
    Ok(dev)
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Reads every packet waiting on `dev` into `dir`. An MTU-sized buffer is
/// enough: the devices carry no offloads, so the kernel segments first.
fn read_all(dev: &SyncDevice, dir: &mut Direction, mtu: usize) -> Result<()> {
    loop {
        let mut buf = dir.buffer();
        buf.resize(mtu + 64, 0);
        match dev.recv(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                dir.offer(Instant::now(), buf);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                dir.recycle(buf);
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => dir.recycle(buf),
            Err(e) => return Err(e).context("reading from a TUN device"),
        }
    }
}

/// Writes every packet of `dir` that is due now to `dev`.
fn write_due(dev: &SyncDevice, dir: &mut Direction) {
    let mut done = Vec::new();
    dir.due(Instant::now(), |p| {
        // A refused write (the namespace's stack is gone) loses the
        // packet, as a real link would.
        let _ = dev.send(&p);
        done.push(p);
    });
    for p in done {
        dir.recycle(p);
    }
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("ferry-wanem: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let forward_shape = Shape {
        rate: parse_rate(&cli.rate)?,
        delay: cli.delay,
        loss: cli.loss,
        queue: cli.queue.max(1),
    };
    let back_shape = Shape {
        rate: match &cli.rate_back {
            Some(r) => parse_rate(r)?,
            None => forward_shape.rate,
        },
        delay: cli.delay_back.unwrap_or(cli.delay),
        loss: cli.loss_back.unwrap_or(cli.loss),
        queue: cli.queue.max(1),
    };
    // Signals arrive through a descriptor, in the same poll as packets.
    let mut mask = SigSet::empty();
    for s in [Signal::SIGUSR1, Signal::SIGTERM, Signal::SIGINT] {
        mask.add(s);
    }
    mask.thread_block().context("blocking signals")?;
    let signals = SignalFd::new(&mask).context("signalfd")?;

    let left = device_in(&cli.left, cli.left_ip, cli.mtu)?;
    let right = device_in(&cli.right, cli.right_ip, cli.mtu)?;
    let mut forward = Direction::new(forward_shape, cli.seed);
    let mut back = Direction::new(back_shape, cli.seed.wrapping_add(1));
    let mtu = usize::from(cli.mtu);

    println!("ready");
    std::io::stdout().flush()?;
    let started = Instant::now();
    let mut since = started;
    let report = |forward: &mut Direction, back: &mut Direction, since: Instant| -> Result<()> {
        let r = Report {
            seconds: since.elapsed().as_secs_f64(),
            forward: forward.take_counters(),
            back: back.take_counters(),
        };
        println!("{}", serde_json::to_string(&r)?);
        std::io::stdout().flush()?;
        Ok(())
    };
    loop {
        let now = Instant::now();
        let deadline = started + cli.lifetime;
        if now >= deadline {
            return report(&mut forward, &mut back, since);
        }
        let next = [forward.next_due(), back.next_due(), Some(deadline)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(deadline);
        let wait = next.saturating_duration_since(now);
        let mut fds = [
            PollFd::new(left.as_fd(), PollFlags::POLLIN),
            PollFd::new(right.as_fd(), PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
        ];
        match ppoll(&mut fds, Some(TimeSpec::from_duration(wait)), None) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("ppoll"),
        }
        let ready = |fd: &PollFd| {
            fd.revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLIN))
        };
        let (left_ready, right_ready, signal_ready) =
            (ready(&fds[0]), ready(&fds[1]), ready(&fds[2]));
        if left_ready {
            read_all(&left, &mut forward, mtu)?;
        }
        if right_ready {
            read_all(&right, &mut back, mtu)?;
        }
        write_due(&right, &mut forward);
        write_due(&left, &mut back);
        if signal_ready && let Some(info) = signals.read_signal().context("reading a signal")? {
            let report_now = report(&mut forward, &mut back, since);
            since = Instant::now();
            if info.ssi_signo != Signal::SIGUSR1 as u32 {
                return report_now;
            }
            report_now?;
        }
    }
}
