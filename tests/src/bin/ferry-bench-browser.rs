//! The browser benchmark's WAN part (`tests/bench/browser --wan` runs it):
//! a delivered file received as a browser receives it, over one HTTPS
//! connection (curl on the API's file route, the same code as the
//! deliveries page's download link), against Ferry's QUIC receive of the
//! same file, on scenarios A and B of the WAN benchmark, in the same run.
//!
//! The appliance, in the right namespace, sends; curl and `ferry get` run
//! in the left one. A browser's download goes at the pace of the server's
//! TCP congestion control: ferryd asks for BBR on its control port's
//! connections, so the HTTPS row is what a browser gets from the appliance
//! as it ships (before it did, with the kernel's CUBIC, this row was about
//! 1 % of the link on B). The QUIC side is `ferry get` of the file by its
//! sender: the recipient's
//! `ferry pull` receives the same way, but only once, as the delivery job
//! is done after its first full download.
//!
//! A transfer that finishes is measured end to end (file bytes over the
//! time the command took, TLS or session set-up included). One that cannot
//! finish within `--max-secs` (TCP CUBIC at 1 % loss moves about
//! 2 Mbit/s) is measured at its steady rate between two readings of what
//! had arrived, and marked `*`.

// A benchmark fails by panicking, like a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_tests::netns::can_run;
use ferry_tests::wan::{
    RIGHT_IP, SCENARIO_A, SCENARIO_B, SETTLE, Shape, Wan, bytes_under, fresh_dir, job_bytes, rate,
    wait_until,
};
use ferry_tests::{Client, blake3_file, write_random};

const MB: u64 = 1_000_000;
const FILE: &str = "dailies.mov";
const RECIPIENT: &str = "dir@client.example";

struct Args {
    scenarios: String,
    size_mb: u64,
    rounds: usize,
    max_secs: u64,
    work: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        scenarios: "AB".into(),
        size_mb: 300,
        rounds: 2,
        max_secs: 60,
        work: PathBuf::from("/var/tmp/ferry-bench-browser"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--scenarios" => a.scenarios = value().to_uppercase(),
            "--size-mb" => a.size_mb = value().parse().expect("--size-mb N"),
            "--rounds" => a.rounds = value().parse().expect("--rounds N"),
            "--max-secs" => a.max_secs = value().parse().expect("--max-secs N"),
            "--work" => a.work = PathBuf::from(value()),
            other => panic!(
                "unknown flag {other}; use --scenarios AB --size-mb N --rounds N --max-secs N --work DIR"
            ),
        }
    }
    assert!(a.rounds > 0, "--rounds is at least 1");
    a
}

/// One download's rate.
#[derive(Clone, Copy)]
struct Measure {
    mbyte: f64,
    /// Ran to the end (else `mbyte` is a steady rate).
    finished: bool,
}

impl Measure {
    fn row(&self, name: &str, link_mbit: f64) -> String {
        let mbit = self.mbyte * 8.0;
        format!(
            "  {name:<34} {:>7.1}{} {:>8.1} {:>8.1} %",
            self.mbyte,
            if self.finished { " " } else { "*" },
            mbit,
            mbit / link_mbit * 100.0
        )
    }

    /// The median of several rounds (of two, the lower, as
    /// tests/bench/loopback takes it), a steady rate if any round was.
    fn median(all: &[Measure]) -> Measure {
        let mut rates: Vec<f64> = all.iter().map(|m| m.mbyte).collect();
        rates.sort_by(f64::total_cmp);
        Measure {
            mbyte: rates[(rates.len() - 1) / 2],
            finished: all.iter().all(|m| m.finished),
        }
    }
}

/// Runs `child` (spawned at `started`) to its end or for `max`, reading
/// `arrived` once it has settled; checks a finished `out` against `want`.
fn measure(
    what: &str,
    started: Instant,
    mut child: Child,
    max: Duration,
    arrived: impl Fn() -> u64,
    out: &Path,
    want: blake3::Hash,
) -> Measure {
    let mut first = None;
    let mut done = wait_until(&mut child, started + SETTLE);
    if done.is_none() {
        first = Some((Instant::now(), arrived()));
        done = wait_until(&mut child, started + max);
    }
    match done {
        Some(true) => {
            let secs = started.elapsed().as_secs_f64();
            assert_eq!(blake3_file(out), want, "{what}: {} differs", out.display());
            Measure {
                mbyte: bytes_under(out) as f64 / secs / MB as f64,
                finished: true,
            }
        }
        Some(false) => panic!("{what} failed: {}", ferry_tests::finish(child).stderr),
        None => {
            let last = (Instant::now(), arrived());
            let _ = child.kill();
            let _ = child.wait();
            Measure {
                mbyte: rate(first.expect("read once settled"), last) / 8.0,
                finished: false,
            }
        }
    }
}

/// curl in the left namespace, with the recipient's key.
fn curl(wan: &Wan, key: &str, url: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &wan.left, "curl", "-sSk", "-H"])
        .arg(format!("Authorization: Bearer {key}"))
        .args(args)
        .arg(url);
    c
}

/// The recipient's download job of the one delivery.
fn download_job(recipient: &Client) -> i64 {
    let run = recipient.run(&["jobs", "--all", "--json"]);
    let jobs: serde_json::Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("ferry jobs ({e}): {}{}", run.stdout, run.stderr));
    jobs.as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["kind"] == "download"))
        .and_then(|j| j["id"].as_i64())
        .unwrap_or_else(|| panic!("no download job for {RECIPIENT}: {jobs}"))
}

fn scenario(letter: char, title: &str, shape: Shape, a: &Args) {
    let wan = Wan::start(shape);
    let (app, sender) = wan.appliance(&format!("[transfer]\ntarget_rate = \"{}M\"\n", shape.mbit));
    write_random(&app.share.join(FILE), a.size_mb * MB, 21);
    let want = blake3_file(&app.share.join(FILE));
    // An account first, or the delivery would invite them.
    let key = app.user(RECIPIENT, "collaborator");
    let sent = sender.run(&["send", &format!("share=media/{FILE}"), "--to", RECIPIENT]);
    assert!(sent.ok, "ferry send: {}", sent.stderr);
    let job = download_job(&app.client(&key).in_netns(&wan.left));
    let url = format!(
        "https://{RIGHT_IP}:{}/api/v1/jobs/{job}/files/{FILE}",
        app.port()
    );

    // One byte first: the route answers, and curl says what it negotiated.
    let probe = curl(
        &wan,
        &key,
        &url,
        &[
            "-o",
            "/dev/null",
            "-r",
            "0-0",
            "-w",
            "%{http_code} HTTP/%{http_version}",
        ],
    )
    .output()
    .expect("curl");
    let probe = String::from_utf8_lossy(&probe.stdout).into_owned();
    let http = probe
        .strip_prefix("206 ")
        .unwrap_or_else(|| panic!("the file route answered {probe:?} for {url}"))
        .to_owned();

    println!("\n{letter}: {title}; curl speaks {http}");
    println!(
        "  {:<34} {:>8} {:>8} {:>10}",
        "", "MB/s", "Mbit/s", "of link"
    );
    let link = shape.mbit as f64;
    let max = Duration::from_secs(a.max_secs);
    let out = fresh_dir(&a.work, "out");
    let (mut https, mut quic) = (Vec::new(), Vec::new());
    for round in 1..=a.rounds {
        println!("  round {round}");
        {
            let file = out.join(FILE);
            let started = Instant::now();
            let child = curl(&wan, &key, &url, &["--fail", "-o", file.to_str().unwrap()])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn curl");
            let m = measure(
                "curl",
                started,
                child,
                max,
                || bytes_under(&file),
                &file,
                want,
            );
            println!("{}", m.row("https (curl)", link));
            https.push(m);
            let _ = std::fs::remove_file(&file);
        }
        let dir = out.join("quic");
        let started = Instant::now();
        let child = sender.spawn(&[
            "get",
            &format!("share=media/{FILE}"),
            dir.to_str().unwrap(),
            "--transport",
            "quic",
            "--json",
        ]);
        // The receiver reserves the whole file up front, so its size on
        // disk says nothing; the appliance counts what it has sent.
        let arrived = || job_bytes(&sender, &format!("get share=media/{FILE}")).unwrap_or(0);
        let m = measure(
            "ferry get",
            started,
            child,
            max,
            arrived,
            &dir.join(FILE),
            want,
        );
        println!("{}", m.row("quic (ferry get)", link));
        quic.push(m);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&out);
    let (https, quic) = (Measure::median(&https), Measure::median(&quic));
    if a.rounds > 1 {
        println!("  median of {} rounds", a.rounds);
        println!("{}", https.row("https (curl)", link));
        println!("{}", quic.row("quic (ferry get)", link));
    }
    println!(
        "  {:<34} {:>7.1}  {:>8.1} {:>8.1} %",
        "link",
        link / 8.0,
        link,
        100.0
    );
    let of_link = |m: Measure| m.mbyte * 8.0 / link;
    println!(
        "{letter}: https_vs_link={:.2} quic_vs_link={:.2} https_vs_quic={:.2}",
        of_link(https),
        of_link(quic),
        https.mbyte / quic.mbyte,
    );
}

fn main() {
    assert!(
        can_run(),
        "the WAN benchmark needs root (network namespaces and TUN devices)"
    );
    let a = args();
    std::fs::create_dir_all(&a.work).expect("work dir");
    println!(
        "Browser benchmark, WAN: a {} MB delivered file received over one HTTPS connection and over QUIC, \
         {} round(s); at most {} s per run (* marks a steady rate of a run that could not finish in that time)",
        a.size_mb, a.rounds, a.max_secs
    );
    for s in a.scenarios.chars() {
        match s {
            'A' => scenario('A', "100 Mbit/s, 100 ms RTT, 0 % loss", SCENARIO_A, &a),
            'B' => scenario('B', "100 Mbit/s, 100 ms RTT, 1 % loss", SCENARIO_B, &a),
            other => panic!("no scenario {other}; this benchmark runs A and B"),
        }
    }
}
