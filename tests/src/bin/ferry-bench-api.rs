//! The API latency benchmark (`tests/bench/api` runs it, issue 24): the
//! REST API's p50 and p99 with many concurrent sessions, on SQLite and on
//! PostgreSQL, in one run on this host.
//!
//! For each engine a fresh appliance starts (PostgreSQL: a server of the
//! benchmark's own, started as its own user, as the tests do). `SESSIONS`
//! API clients, each with its own key (ten users, keys spread over them),
//! then make `REQUESTS` calls each, all at once: in turn `GET /api/v1/me`,
//! `GET /api/v1/jobs` (the user's jobs: a few put jobs each) and `PUT`
//! of the user's notification setting (a write). Every call must succeed.
//! The per-key rate limit is raised for the run, so that it measures the
//! store and not the limiter.

// A benchmark fails by panicking, like a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use ferry_client::api::Api;
use ferry_engine::tls::{Fingerprint, PinnedCert};
use ferry_store::testing::TempPostgres;
use ferry_tests::{Appliance, Setup, write_random};

const USERS: usize = 10;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Figures {
    p50: Duration,
    p99: Duration,
    per_sec: f64,
}

fn run(engine: &str, database: Option<String>, sessions: usize, requests: usize) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferryd.toml");
    std::fs::write(&config, "[api]\nrequests_per_minute = 1000000\n").unwrap();
    let a = Appliance::start_in(Setup {
        database,
        args: vec!["--config".into(), config.display().to_string()],
        ..Setup::default()
    });
    let src = dir.path().join("take.mov");
    write_random(&src, 64 * 1024, 3);
    let mut keys = Vec::new();
    for u in 0..USERS {
        let email = format!("user{u}@studio.example");
        let key = a.media_user(&email);
        // A few jobs each, for the job list to read.
        for _ in 0..3 {
            let run = a
                .client(&key)
                .run(&["put", src.to_str().unwrap(), "share=media/in/"]);
            assert!(run.ok, "{}", run.stderr);
        }
        keys.push(key);
        for _ in 1..sessions.div_ceil(USERS) {
            keys.push(a.admin(&["apikey", "create", &email]).trim().to_owned());
        }
    }
    keys.truncate(sessions);
    let fingerprint: Fingerprint = a.fingerprint.parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut latencies, wall) = runtime.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| {
                let api = Api::new(&a.url, PinnedCert::new(fingerprint), Some(key), None).unwrap();
                tokio::spawn(async move {
                    let mut took = Vec::with_capacity(requests);
                    for n in 0..requests {
                        let t = Instant::now();
                        match n % 3 {
                            0 => {
                                api.me().await.unwrap();
                            }
                            1 => {
                                api.jobs("all=true").await.unwrap();
                            }
                            _ => {
                                api.set_notify((n + i) % 2 == 0).await.unwrap();
                            }
                        }
                        took.push(t.elapsed());
                    }
                    took
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        (all, start.elapsed())
    });
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let f = Figures {
        p50: at(0.50),
        p99: at(0.99),
        per_sec: latencies.len() as f64 / wall.as_secs_f64(),
    };
    println!(
        "{engine:<11} {sessions:>8} {:>8} {:>9.1} {:>9.1} {:>10.0}",
        latencies.len(),
        f.p50.as_secs_f64() * 1e3,
        f.p99.as_secs_f64() * 1e3,
        f.per_sec
    );
    f
}

fn main() {
    let sessions = env("SESSIONS", 100);
    let requests = env("REQUESTS", 30);
    let pg = TempPostgres::start().unwrap_or_else(|e| panic!("PostgreSQL: {e}"));
    println!(
        "{:<11} {:>8} {:>8} {:>9} {:>9} {:>10}",
        "engine", "sessions", "calls", "p50 ms", "p99 ms", "calls/s"
    );
    let sqlite = run("SQLite", None, sessions, requests);
    let postgres = run(
        "PostgreSQL",
        Some(pg.fresh_database().unwrap()),
        sessions,
        requests,
    );
    println!(
        "api: postgres_vs_sqlite p50={:.2} p99={:.2} calls_per_sec={:.2}",
        postgres.p50.as_secs_f64() / sqlite.p50.as_secs_f64(),
        postgres.p99.as_secs_f64() / sqlite.p99.as_secs_f64(),
        postgres.per_sec / sqlite.per_sec
    );
}
