//! The WAN benchmark (`tests/bench/wan` runs it): Ferry under each
//! congestion policy against rsync over ssh with TCP CUBIC and TCP BBR, on
//! the same emulated link in the same run.
//!
//! Scenarios (100 Mbit/s, 1000-packet drop-tail queue):
//! - A: 100 ms RTT, no loss;
//! - B: 100 ms RTT, 1 % loss;
//! - C: 200 ms RTT, 2 % loss;
//! - D: B with a folder of small frames instead of one file;
//! - E: two Ferry transfers and one TCP flow (BBR, the kernel's default)
//!   sharing B's link;
//! - S: how a transfer starts, on B's link and on a clean 200 ms one: round
//!   trips to the first data byte, the time from that byte to 90 % of the
//!   link, and a 200 MB put end to end beside rsync over ssh (TCP BBR);
//! - F: many small files (`--small N` files of 64 KB) on B's link, in files
//!   per second beside rsync over ssh (TCP BBR).
//!
//! `Mbit/s` is file bytes over the whole run; `wire` is what the emulator
//! carried forward in the same window (IP packets, headers and
//! retransmissions included), and `steady` the same from 5 s in to the end,
//! after set-up and ramp.
//!
//! A transfer that finishes is measured end to end (file bytes over the
//! time the command took, session set-up included). One that cannot
//! finish within `--max-secs` (TCP CUBIC at 1 % loss moves about 2 Mbit/s)
//! is measured at its steady rate between two readings of what had
//! arrived, and marked `*`.

// A benchmark fails by panicking, like a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use ferry_tests::Client;
use ferry_tests::netns::can_run;
use ferry_tests::wan::{
    LinkReport, SCENARIO_A, SCENARIO_B, SETTLE, Shape, Sshd, Wan, bytes_under, fresh_dir,
    job_bytes, pull_one_at_a_time, rate, round_trips, wait_until,
};
use ferry_tests::write_random;

const MB: u64 = 1_000_000;

struct Args {
    scenarios: String,
    size_mb: u64,
    frames: u64,
    max_secs: u64,
    /// Files of 64 KB in scenario F.
    small: u64,
    work: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        scenarios: "ABCDESF".into(),
        size_mb: 1000,
        frames: 2000,
        max_secs: 120,
        small: 20_000,
        work: PathBuf::from("/var/tmp/ferry-bench-wan"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--scenarios" => a.scenarios = value().to_uppercase(),
            "--size-mb" => a.size_mb = value().parse().expect("--size-mb N"),
            "--frames" => a.frames = value().parse().expect("--frames N"),
            "--max-secs" => a.max_secs = value().parse().expect("--max-secs N"),
            "--small" => a.small = value().parse().expect("--small N"),
            "--work" => a.work = PathBuf::from(value()),
            "--quick" => {
                a.size_mb = 150;
                a.frames = 300;
                a.max_secs = 30;
                a.small = 2000;
            }
            other => panic!(
                "unknown flag {other}; use --scenarios ABCDESF --size-mb N --frames N --max-secs N --small N --work DIR --quick"
            ),
        }
    }
    a
}

/// One contender's result.
struct Measure {
    mbit: f64,
    /// Ran to the end (else `mbit` is a steady rate).
    finished: bool,
    /// Bytes sent again, as a share of bytes sent.
    retransmitted: Option<f64>,
    /// What the link carried in the first seconds (set-up and ramp)…
    start: LinkReport,
    /// …and from then to the end.
    link: LinkReport,
}

fn wire_mbit(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 * 8.0 / seconds.max(0.001) / 1e6
}

impl Measure {
    fn row(&self, name: &str, link_mbit: f64) -> String {
        let retx = self
            .retransmitted
            .map_or("-".to_owned(), |r| format!("{:.2} %", r * 100.0));
        // What crossed the bottleneck (IP packets, headers included) over
        // the whole run, and once set-up and ramp were over: the gap from
        // the file rate to these is framing, retransmission and set-up.
        let wire = wire_mbit(
            self.start.forward.delivered_bytes + self.link.forward.delivered_bytes,
            self.start.seconds + self.link.seconds,
        );
        let steady = wire_mbit(self.link.forward.delivered_bytes, self.link.seconds);
        format!(
            "  {name:<26} {:>7.1}{} {:>8.1} % {:>9.1} {:>9.1} {:>14} {:>12}",
            self.mbit,
            if self.finished { " " } else { "*" },
            self.mbit / link_mbit * 100.0,
            wire,
            steady,
            retx,
            self.start.forward.dropped + self.link.forward.dropped
        )
    }
}

fn ferry_put(
    wan: &mut Wan,
    client: &Client,
    policy: &str,
    transport: &str,
    src: &Path,
    dest: &str,
    max: Duration,
) -> Measure {
    wan.report();
    let started = Instant::now();
    let target = format!("share=media/{dest}/");
    let mut child = client.spawn(&[
        "put",
        src.to_str().unwrap(),
        &target,
        "--json",
        "--policy",
        policy,
        "--transport",
        transport,
    ]);
    std::thread::sleep(SETTLE);
    let start = wan.report();
    let first = (Instant::now(), job_bytes(client, dest).unwrap_or(0));
    let done = wait_until(&mut child, started + max);
    match done {
        Some(true) => {
            let run = ferry_tests::finish(child);
            let r = run.json();
            let bytes = r["bytes_total"].as_f64().unwrap();
            assert_eq!(r["transport"], transport, "{r}");
            // Lanes leave retransmission to the kernel's TCP.
            let udp = r["udp_bytes_sent"].as_f64().unwrap();
            Measure {
                mbit: bytes * 8.0 / r["seconds"].as_f64().unwrap() / 1e6,
                finished: true,
                retransmitted: (udp > 0.0).then(|| r["bytes_lost"].as_f64().unwrap() / udp),
                start,
                link: wan.report(),
            }
        }
        Some(false) => {
            let run = ferry_tests::finish(child);
            panic!(
                "ferry put --policy {policy} --transport {transport} failed: {}",
                run.stderr
            );
        }
        None => {
            let last = (Instant::now(), job_bytes(client, dest).unwrap_or(0));
            let _ = child.kill();
            let _ = child.wait();
            Measure {
                mbit: rate(first, last),
                finished: false,
                retransmitted: None,
                start,
                link: wan.report(),
            }
        }
    }
}

fn rsync(wan: &mut Wan, sshd: &Sshd, cc: &str, src: &Path, dest: &Path, max: Duration) -> Measure {
    wan.tcp_congestion(cc);
    let (out0, re0) = wan.tcp_segments();
    wan.report();
    let started = Instant::now();
    let mut child = sshd.rsync(src, dest);
    std::thread::sleep(SETTLE);
    let start = wan.report();
    let first = (Instant::now(), bytes_under(dest));
    let done = wait_until(&mut child, started + max);
    let (out1, re1) = wan.tcp_segments();
    let retransmitted = Some((re1 - re0) as f64 / (out1 - out0).max(1) as f64);
    match done {
        Some(true) => Measure {
            mbit: bytes_under(dest) as f64 * 8.0 / started.elapsed().as_secs_f64() / 1e6,
            finished: true,
            retransmitted,
            start,
            link: wan.report(),
        },
        Some(false) => {
            let run = ferry_tests::finish(child);
            panic!("rsync with TCP {cc} failed: {}", run.stderr);
        }
        None => {
            let last = (Instant::now(), bytes_under(dest));
            let _ = child.kill();
            let _ = child.wait();
            Measure {
                mbit: rate(first, last),
                finished: false,
                retransmitted,
                start,
                link: wan.report(),
            }
        }
    }
}

/// What a scenario's summary line needs.
struct Summary {
    ferry: f64,
    cubic: f64,
    bbr: f64,
    link: f64,
}

fn scenario(
    letter: char,
    title: &str,
    shape: Shape,
    src: &Path,
    a: &Args,
    policies: &[&str],
) -> Summary {
    println!("\n{letter}: {title}");
    println!(
        "  {:<26} {:>8} {:>10} {:>9} {:>9} {:>14} {:>12}",
        "", "Mbit/s", "of link", "wire", "steady", "retransmitted", "queue drops"
    );
    let mut wan = Wan::start(shape);
    let (app, client) = wan.appliance(&format!("[transfer]\ntarget_rate = \"{}M\"\n", shape.mbit));
    let sshd = Sshd::start(&wan);
    let max = Duration::from_secs(a.max_secs);
    let link = shape.mbit as f64;
    let mut ferry = 0.0;
    for (i, policy) in policies.iter().enumerate() {
        let m = ferry_put(
            &mut wan,
            &client,
            policy,
            "quic",
            src,
            &format!("{letter}{i}"),
            max,
        );
        println!("{}", m.row(&format!("ferry put, {policy}"), link));
        if *policy == "fair" {
            ferry = m.mbit;
        }
        // Make room on the disk for the next run.
        let _ = std::fs::remove_dir_all(app.share.join(format!("{letter}{i}")));
    }
    // The fallbacks for networks that drop UDP: TCP lanes on the leased
    // port and HTTPS lanes on the control port (BBR where the kernel has it).
    let mut lanes = [0.0; 2];
    for (i, transport) in ["tcp", "https"].iter().enumerate() {
        let dest = format!("{letter}{transport}");
        let m = ferry_put(&mut wan, &client, "fair", transport, src, &dest, max);
        println!("{}", m.row(&format!("ferry put, {transport}"), link));
        lanes[i] = m.mbit;
        let _ = std::fs::remove_dir_all(app.share.join(&dest));
    }
    let mut tcp = [0.0; 2];
    for (i, cc) in ["cubic", "bbr"].iter().enumerate() {
        let dest = fresh_dir(&a.work, "rsync-dest");
        let m = rsync(&mut wan, &sshd, cc, src, &dest, max);
        println!("{}", m.row(&format!("rsync over ssh, TCP {cc}"), link));
        tcp[i] = m.mbit;
        let _ = std::fs::remove_dir_all(&dest);
    }
    println!("  {:<26} {:>7.1}  {:>8.1} %", "link", link, 100.0);
    let s = Summary {
        ferry,
        cubic: tcp[0],
        bbr: tcp[1],
        link,
    };
    println!(
        "{letter}: ferry_vs_link={:.2} ferry_vs_tcp_cubic={:.1} ferry_vs_tcp_bbr={:.2} \
         tcp_vs_link={:.2} tcp_vs_tcp_bbr={:.2} https_vs_link={:.2}",
        s.ferry / s.link,
        s.ferry / s.cubic.max(0.001),
        s.ferry / s.bbr.max(0.001),
        lanes[0] / s.link,
        lanes[0] / s.bbr.max(0.001),
        lanes[1] / s.link,
    );
    s
}

/// The first data byte, over the path's RTT: the client's own report
/// (median of three puts of one small file).
fn round_trips_to_first_byte(client: &Client, shape: Shape, src: &Path, dest: &str) -> f64 {
    let mut rounds: Vec<f64> = (0..3)
        .map(|i| {
            let target = format!("share=media/{dest}{i}/");
            let r = client
                .run(&["put", src.to_str().unwrap(), &target, "--json"])
                .json();
            r["start"]["first_byte_secs"].as_f64().unwrap() / (shape.rtt_ms as f64 / 1e3)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[1]
}

/// A put of `src` with the emulator read every 100 ms: its end-to-end
/// Mbit/s, and the seconds from its first data byte until the link first
/// carried 90 % of its rate over half a second.
fn ramp(wan: &mut Wan, client: &Client, src: &Path, dest: &str) -> (f64, Option<f64>) {
    let target = format!("share=media/{dest}/");
    wan.report();
    let spawned = Instant::now();
    let mut child = client.spawn(&["put", src.to_str().unwrap(), &target, "--json"]);
    let mut samples = Vec::new();
    while wait_until(&mut child, Instant::now() + Duration::from_millis(100)).is_none() {
        let r = wan.report();
        samples.push((spawned.elapsed().as_secs_f64(), r.forward.delivered_bytes));
    }
    let run = ferry_tests::finish(child);
    assert!(run.ok, "ferry put failed: {}", run.stderr);
    let r = run.json();
    let mbit = r["bytes_total"].as_f64().unwrap() * 8.0 / r["seconds"].as_f64().unwrap() / 1e6;
    // What framing leaves for file bytes: of the UDP payload sent, less
    // what was sent again.
    let udp = r["udp_bytes_sent"].as_f64().unwrap() - r["bytes_lost"].as_f64().unwrap();
    println!(
        "  file bytes per UDP payload byte sent once: {:.4} ({} B datagrams)",
        r["bytes_total"].as_f64().unwrap() / udp,
        r["udp_payload"]
    );
    let first_byte = r["start"]["first_byte_secs"].as_f64().unwrap();
    let link = wan.shape.mbit as f64 * 1e6 / 8.0;
    let reached = samples.windows(5).find_map(|w| {
        let bytes: u64 = w.iter().map(|s| s.1).sum();
        let secs = w[4].0 - w[0].0 + 0.1;
        // The window's start: the end of the sample before its first.
        (bytes as f64 / secs >= 0.9 * link).then_some(w[0].0 - 0.1)
    });
    (mbit, reached.map(|t| (t - first_byte).max(0.0)))
}

/// Scenario S: how a transfer starts, on one link.
fn start(title: &str, shape: Shape, a: &Args, small: &Path, medium: &Path) {
    println!(
        "
S: {title}"
    );
    let mut wan = Wan::start(shape);
    // A target ten times the link: the bottleneck is the controller's to
    // find, as on a path nobody measured.
    let (app, client) = wan.appliance(&format!(
        "[transfer]\ntarget_rate = \"{}M\"\n",
        shape.mbit * 10
    ));
    let sshd = Sshd::start(&wan);
    let rounds = round_trips_to_first_byte(&client, shape, small, "S-start");
    println!("  round trips from `ferry put` to its first data byte: {rounds:.2}");
    // A recipient's agent, one process receiving job after job: the first
    // session's QUIC handshake is a full one, later ones resume (0-RTT).
    let rtt = shape.rtt_ms as f64 / 1e3;
    let pulled: Vec<f64> = pull_one_at_a_time(&wan, &app, &client, 5, 256 << 10)
        .iter()
        .map(|r| round_trips(&r["report"], rtt).2)
        .collect();
    let agent_first = pulled[0];
    let mut later = pulled[1..].to_vec();
    later.sort_by(f64::total_cmp);
    // The median: on a lossy link one lost handshake packet costs a job
    // a round trip or more.
    let agent_resumed = later[later.len() / 2];
    println!(
        "  round trips to a download's first data byte in the agent: first job {agent_first:.2}, later jobs {} (median {agent_resumed:.2})",
        pulled[1..]
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let (mbit, to_90) = ramp(&mut wan, &client, medium, "S-ramp");
    let _ = std::fs::remove_dir_all(app.share.join("S-ramp"));
    let link = shape.mbit as f64;
    println!(
        "  time from the first data byte to 90 % of the link: {}",
        to_90.map_or("never".to_owned(), |t| format!("{t:.2} s"))
    );
    let dest = fresh_dir(&a.work, "rsync-dest");
    let max = Duration::from_secs(a.max_secs);
    let tcp = rsync(&mut wan, &sshd, "bbr", medium, &dest, max);
    let _ = std::fs::remove_dir_all(&dest);
    println!(
        "  200 MB end to end: ferry put {mbit:.1} Mbit/s ({:.1} % of the link), rsync over ssh (TCP BBR) {:.1}{} Mbit/s",
        mbit / link * 100.0,
        tcp.mbit,
        if tcp.finished { "" } else { "*" }
    );
    println!(
        "S ({}ms, {} % loss): rounds_to_first_byte={rounds:.2} agent_rounds_first={agent_first:.2} agent_rounds_resumed={agent_resumed:.2} secs_to_90={} put_200mb_vs_link={:.2} put_200mb_vs_tcp_bbr={:.2}",
        shape.rtt_ms,
        shape.loss * 100.0,
        to_90.map_or("never".to_owned(), |t| format!("{t:.2}")),
        mbit / link,
        mbit / tcp.mbit.max(0.001)
    );
}

/// Scenario F: many small files on B's link, in files per second.
fn small_files(shape: Shape, a: &Args, folder: &Path) {
    println!(
        "
F: {} files of 64 KB on B's link",
        a.small
    );
    let mut wan = Wan::start(shape);
    let (app, client) = wan.appliance(&format!("[transfer]\ntarget_rate = \"{}M\"\n", shape.mbit));
    let sshd = Sshd::start(&wan);
    let max = Duration::from_secs(a.max_secs.max(300));
    let m = ferry_put(&mut wan, &client, "fair", "quic", folder, "F", max);
    let _ = std::fs::remove_dir_all(app.share.join("F"));
    let dest = fresh_dir(&a.work, "rsync-dest");
    let tcp = rsync(&mut wan, &sshd, "bbr", folder, &dest, max);
    let _ = std::fs::remove_dir_all(&dest);
    // Rates are of file bytes; every file is 64 KB.
    let per_sec = |mbit: f64| mbit * 1e6 / 8.0 / 65_536.0;
    println!(
        "  ferry put {:.0}{} files/s ({:.1} Mbit/s), rsync over ssh (TCP BBR) {:.0}{} files/s ({:.1} Mbit/s)",
        per_sec(m.mbit),
        if m.finished { "" } else { "*" },
        m.mbit,
        per_sec(tcp.mbit),
        if tcp.finished { "" } else { "*" },
        tcp.mbit
    );
    println!(
        "F: ferry_files_per_sec={:.0} rsync_files_per_sec={:.0} ferry_vs_rsync={:.2}",
        per_sec(m.mbit),
        per_sec(tcp.mbit),
        m.mbit / tcp.mbit.max(0.001)
    );
}

/// Scenario E: two Ferry transfers and a TCP flow start together on B's
/// link; each one's rate is read over the same window.
fn sharing(shape: Shape, src: &Path, a: &Args, policy: &str) {
    let mut wan = Wan::start(shape);
    let (_app, client) = wan.appliance(&format!("[transfer]\ntarget_rate = \"{}M\"\n", shape.mbit));
    let sshd = Sshd::start(&wan);
    wan.tcp_congestion("bbr");
    let dest = fresh_dir(&a.work, "rsync-dest");
    wan.report();
    let mut flows: Vec<Child> = ["e1", "e2"]
        .iter()
        .map(|d| {
            client.spawn(&[
                "put",
                src.to_str().unwrap(),
                &format!("share=media/{d}/"),
                "--json",
                "--policy",
                policy,
            ])
        })
        .collect();
    flows.push(sshd.rsync(src, &dest));
    std::thread::sleep(SETTLE * 2);
    let read = || {
        (
            Instant::now(),
            [
                job_bytes(&client, "e1").unwrap_or(0),
                job_bytes(&client, "e2").unwrap_or(0),
                bytes_under(&dest),
            ],
        )
    };
    let (t1, b1) = read();
    std::thread::sleep(Duration::from_secs(a.max_secs.min(40)));
    let (t2, b2) = read();
    for mut f in flows {
        let _ = f.kill();
        let _ = f.wait();
    }
    let link = wan.report();
    let secs = t2.duration_since(t1).as_secs_f64();
    let mbit: Vec<f64> = (0..3)
        .map(|i| b2[i].saturating_sub(b1[i]) as f64 * 8.0 / secs / 1e6)
        .collect();
    let ferry_total = mbit[0] + mbit[1];
    let split = mbit[0] / ferry_total.max(0.001);
    println!(
        "  {policy}: ferry {:.1} + {:.1} Mbit/s (split {:.0}/{:.0}), TCP BBR {:.1} Mbit/s ({:.0} % of the link), \
         {} queue drops",
        mbit[0],
        mbit[1],
        split * 100.0,
        (1.0 - split) * 100.0,
        mbit[2],
        mbit[2] / shape.mbit as f64 * 100.0,
        link.forward.dropped
    );
    println!(
        "E ({policy}): ferry_split={:.2} tcp_share={:.2}",
        split.min(1.0 - split) / split.max(1.0 - split).max(0.001),
        mbit[2] / shape.mbit as f64
    );
}

fn main() {
    assert!(
        can_run(),
        "the WAN benchmark needs root (network namespaces and TUN devices)"
    );
    let a = args();
    std::fs::create_dir_all(&a.work).expect("work dir");
    let big = a.work.join(format!("dailies-{}MB.mov", a.size_mb));
    if bytes_under(&big) != a.size_mb * MB {
        write_random(&big, a.size_mb * MB, 11);
    }
    let frames = a.work.join(format!("frames-{}", a.frames));
    if bytes_under(&frames) != a.frames * MB {
        let _ = std::fs::remove_dir_all(&frames);
        std::fs::create_dir_all(&frames).unwrap();
        for i in 0..a.frames {
            write_random(&frames.join(format!("shot010.{:04}.exr", 1001 + i)), MB, i);
        }
    }
    let small = a.work.join("notes-256KB.pdf");
    if bytes_under(&small) != 256 << 10 {
        write_random(&small, 256 << 10, 12);
    }
    let medium = a.work.join("proxy-200MB.mov");
    if bytes_under(&medium) != 200 * MB {
        write_random(&medium, 200 * MB, 13);
    }
    let b = SCENARIO_B;
    let policies = ["fair", "fixed", "cubic", "bbr"];
    println!(
        "WAN benchmark: {} MB file, {} × 1 MB frames; at most {} s per run (* marks a steady rate of a run \
         that could not finish in that time)",
        a.size_mb, a.frames, a.max_secs
    );
    let mut last_b = None;
    for s in a.scenarios.chars() {
        match s {
            'A' => {
                scenario(
                    'A',
                    "100 Mbit/s, 100 ms RTT, 0 % loss",
                    SCENARIO_A,
                    &big,
                    &a,
                    &policies,
                );
            }
            'B' => {
                let sum = scenario(
                    'B',
                    "100 Mbit/s, 100 ms RTT, 1 % loss",
                    b,
                    &big,
                    &a,
                    &policies,
                );
                last_b = Some(sum);
            }
            'C' => {
                let shape = Shape {
                    rtt_ms: 200,
                    loss: 0.02,
                    ..b
                };
                scenario(
                    'C',
                    "100 Mbit/s, 200 ms RTT, 2 % loss",
                    shape,
                    &big,
                    &a,
                    &policies,
                );
            }
            'D' => {
                let title = format!("B's link, {} × 1 MB frames", a.frames);
                scenario('D', &title, b, &frames, &a, &policies);
            }
            'E' => {
                println!("\nE: two Ferry transfers and one TCP flow (BBR) share B's link");
                sharing(b, &big, &a, "fair");
                sharing(b, &big, &a, "fixed");
            }
            'S' => {
                start(
                    "B's link: 100 Mbit/s, 100 ms RTT, 1 % loss",
                    b,
                    &a,
                    &small,
                    &medium,
                );
                let long = Shape {
                    rtt_ms: 200,
                    loss: 0.0,
                    ..b
                };
                start("100 Mbit/s, 200 ms RTT, no loss", long, &a, &small, &medium);
            }
            'F' => {
                let folder = a.work.join(format!("small-{}", a.small));
                if bytes_under(&folder) != a.small * 65_536 {
                    let _ = std::fs::remove_dir_all(&folder);
                    for i in 0..a.small {
                        // A hundred folders of a few hundred files, as a
                        // project's renders and sidecars are laid out.
                        let dir = folder.join(format!("shot{:03}", i % 100));
                        std::fs::create_dir_all(&dir).unwrap();
                        write_random(&dir.join(format!("tile.{i:05}.exr")), 65_536, i);
                    }
                }
                small_files(b, &a, &folder);
            }
            other => panic!("no scenario {other}"),
        }
    }
    if let Some(s) = last_b {
        println!(
            "B: ferry_vs_link={:.2} ferry_vs_tcp_cubic={:.1} ferry_vs_tcp_bbr={:.2}",
            s.ferry / s.link,
            s.ferry / s.cubic.max(0.001),
            s.ferry / s.bbr.max(0.001)
        );
    }
}
