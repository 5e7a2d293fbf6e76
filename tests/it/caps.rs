//! Rate caps hold where the link is not the limit: on loopback, a
//! session's cap, a cap changed while it runs and the site rate shared by
//! several sessions, each measured from the bytes moved (the appliance's
//! count sampled from `GET /api/v1/status` where the appliance sends, the
//! client's summary where it sends), not from what was configured.

use std::collections::BTreeMap;
use std::process::Child;
use std::time::{Duration, Instant};

use ferry_tests::{Appliance, blake3_file, heavy_io, write_random};

const MB: u64 = 1_000_000;

/// One session's byte count over time: seconds since sampling began, and
/// bytes the appliance had counted.
type Samples = Vec<(f64, u64)>;

/// Samples every running session's byte count (by job) every 100 ms
/// until `done` says the transfers ended.
fn sample(a: &Appliance, admin: &str, mut done: impl FnMut() -> bool) -> BTreeMap<i64, Samples> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = crate::foundation::wire::api(a, admin);
    let start = Instant::now();
    let mut seen: BTreeMap<i64, Samples> = BTreeMap::new();
    while !done() {
        let status = rt.block_on(api.status()).expect("status");
        let t = start.elapsed().as_secs_f64();
        for s in status.sessions {
            seen.entry(s.job)
                .or_default()
                .push((t, s.bytes_transferred));
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the transfers did not end"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    seen
}

/// Mbit/s between the samples at or after `from` and at or before `to`
/// (seconds), counting from the first sample with bytes moved.
fn rate(s: &Samples, from: f64, to: f64) -> f64 {
    let inside: Vec<&(f64, u64)> = s
        .iter()
        .filter(|(t, b)| *b > 0 && *t >= from && *t <= to)
        .collect();
    let (first, last) = (inside.first().unwrap(), inside.last().unwrap());
    assert!(last.0 - first.0 >= 1.0, "too short a window: {s:?}");
    (last.1 - first.1) as f64 * 8.0 / (last.0 - first.0) / 1e6
}

/// Mbit/s over a whole session.
fn whole(s: &Samples) -> f64 {
    rate(s, 0.0, f64::MAX)
}

/// The one job sampled.
fn only(seen: &BTreeMap<i64, Samples>) -> &Samples {
    assert_eq!(seen.len(), 1, "one session expected: {seen:?}");
    seen.values().next().unwrap()
}

fn ended(child: &mut Child) -> bool {
    child.try_wait().unwrap().is_some()
}

fn succeeded(mut child: Child) {
    let status = child.wait().unwrap();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        e.read_to_string(&mut err).unwrap();
    }
    assert!(status.success(), "{err}");
}

#[test]
fn a_100_mbit_cap_holds_on_loopback_for_a_put_a_get_and_a_delivery() {
    let _serial = heavy_io();
    let a = Appliance::start();
    let admin = a.user("ops@example.com", "admin");
    let ann = a.client(&a.media_user("ann@example.com"));
    let bob = a.client(&a.user("bob@example.com", "collaborator"));
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("plate.mov");
    // 75 MB: six seconds at 100 Mbit/s.
    write_random(&file, 75 * MB, 41);
    let mut rates = Vec::new();

    // A put is measured where it is paced, at its sender (the client's
    // summary: bytes over the whole session, set-up included): the
    // appliance's receive count lags the sender by what is in flight, and
    // on a busy machine that lag changes enough to skew a short window.
    let put = ann.run(&[
        "put",
        file.to_str().unwrap(),
        "share=media/in/",
        "--rate",
        "100M",
        "--json",
    ]);
    assert!(put.ok, "{}", put.stderr);
    let summary: serde_json::Value = serde_json::from_str(put.stdout.trim()).unwrap();
    let put_rate = summary["bytes_transferred"].as_f64().unwrap() * 8.0
        / summary["seconds"].as_f64().unwrap()
        / 1e6;
    rates.push(("put", put_rate));
    assert_eq!(
        blake3_file(&file),
        blake3_file(&a.share.join("in/plate.mov"))
    );

    for transport in ["quic", "tcp"] {
        let down = tempfile::tempdir().unwrap();
        let mut get = ann.spawn(&[
            "get",
            "share=media/in/plate.mov",
            down.path().to_str().unwrap(),
            "--rate",
            "100M",
            "--transport",
            transport,
        ]);
        let r = whole(only(&sample(&a, &admin, || ended(&mut get))));
        rates.push((
            if transport == "quic" {
                "get"
            } else {
                "get over tcp"
            },
            r,
        ));
        succeeded(get);
        assert_eq!(
            blake3_file(&file),
            blake3_file(&down.path().join("plate.mov"))
        );
    }

    let sent = ann.run(&[
        "send",
        "share=media/in/plate.mov",
        "--to",
        "bob@example.com",
    ]);
    assert!(sent.ok, "{}", sent.stderr);
    let into = tempfile::tempdir().unwrap();
    let mut pull = bob.spawn(&[
        "pull",
        "--into",
        into.path().to_str().unwrap(),
        "--rate",
        "100M",
    ]);
    rates.push((
        "delivery",
        whole(only(&sample(&a, &admin, || ended(&mut pull)))),
    ));
    succeeded(pull);
    let received = ferry_tests::list_files(into.path());
    assert!(
        received.iter().any(|p| p.ends_with("plate.mov")),
        "{received:?}"
    );
    for (what, r) in &rates {
        println!("{what} under a 100M cap: {r:.1} Mbit/s");
        assert!((90.0..=105.0).contains(r), "{what}: {r:.1} Mbit/s");
    }
}

#[test]
fn a_cap_changed_mid_transfer_takes_effect_within_two_seconds() {
    let _serial = heavy_io();
    let conf = tempfile::tempdir().unwrap();
    let config = conf.path().join("ferryd.toml");
    std::fs::write(&config, "[transfer]\ntarget_rate = \"200M\"\n").unwrap();
    let a = Appliance::start_with(&["--config", config.to_str().unwrap()]);
    let admin = a.user("ops@example.com", "admin");
    let ann = a.client(&a.media_user("ann@example.com"));
    write_random(&a.share.join("plate.mov"), 75 * MB, 43);
    let down = tempfile::tempdir().unwrap();
    let mut get = ann.spawn(&[
        "get",
        "share=media/plate.mov",
        down.path().to_str().unwrap(),
    ]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = crate::foundation::wire::api(&a, &admin);
    let mut changed_at = None;
    let mut job = None;
    let start = Instant::now();
    let seen = sample(&a, &admin, || {
        // Two seconds in, the admin lowers the job's cap to 50M.
        if changed_at.is_none() && start.elapsed() >= Duration::from_secs(2) {
            let id = rt
                .block_on(api.status())
                .unwrap()
                .sessions
                .first()
                .expect("the get runs")
                .job;
            rt.block_on(api.set_rate(id, Some("50M"))).unwrap();
            changed_at = Some(start.elapsed().as_secs_f64());
            job = Some(id);
        }
        ended(&mut get)
    });
    succeeded(get);
    let (at, job) = (changed_at.unwrap(), job.unwrap());
    let s = &seen[&job];
    let before = rate(s, 0.0, at);
    let after = rate(s, at + 2.0, f64::MAX);
    println!("before the change: {before:.1} Mbit/s; from 2 s after it: {after:.1} Mbit/s");
    assert!((180.0..=210.0).contains(&before), "{before:.1} Mbit/s");
    assert!((45.0..=52.5).contains(&after), "{after:.1} Mbit/s");
}

#[test]
fn a_300_mbit_site_rate_is_shared_by_three_sessions() {
    let _serial = heavy_io();
    let conf = tempfile::tempdir().unwrap();
    let config = conf.path().join("ferryd.toml");
    std::fs::write(&config, "[transfer]\nsite_rate = \"300M\"\n").unwrap();
    let a = Appliance::start_with(&["--config", config.to_str().unwrap()]);
    let admin = a.user("ops@example.com", "admin");
    let mut gets = Vec::new();
    let mut folders = Vec::new();
    for (i, who) in ["ann", "bea", "cal"].iter().enumerate() {
        let c = a.client(&a.media_user(&format!("{who}@example.com")));
        let name = format!("{who}.mov");
        // 60 MB each: five seconds at a third of 300 Mbit/s.
        write_random(&a.share.join(&name), 60 * MB, 50 + i as u64);
        let down = tempfile::tempdir().unwrap();
        gets.push(c.spawn(&[
            "get",
            &format!("share=media/{name}"),
            down.path().to_str().unwrap(),
        ]));
        folders.push(down);
    }
    let seen = sample(&a, &admin, || gets.iter_mut().all(ended));
    for g in gets {
        succeeded(g);
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    // While all three run: from the last one's first bytes to the first
    // one's last.
    let from = seen
        .values()
        .map(|s| s.iter().find(|(_, b)| *b > 0).unwrap().0)
        .fold(0.0, f64::max);
    let to = seen
        .values()
        .map(|s| s.last().unwrap().0)
        .fold(f64::MAX, f64::min);
    let rates: Vec<f64> = seen.values().map(|s| rate(s, from, to)).collect();
    let sum: f64 = rates.iter().sum();
    println!("three sessions under a 300M site rate: {rates:.1?} Mbit/s, {sum:.1} together");
    for r in &rates {
        assert!((85.0..=115.0).contains(r), "{rates:?}");
    }
    assert!(sum <= 315.0, "{sum:.1} Mbit/s together");
}
