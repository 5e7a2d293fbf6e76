//! Jobs that tell the truth about interrupted transfers: a put or get
//! whose client died shows as interrupted (never running) within half a
//! minute, and running the same command again continues that job, from
//! what arrived, instead of opening a second one.

use std::time::{Duration, Instant};

use ferry_tests::{Appliance, blake3_file, heavy_io, wait_for, write_random};
use serde_json::Value;

const MIB: u64 = 1 << 20;

/// The user's jobs of `kind`, all of them, as the API lists them.
fn jobs_of(c: &ferry_tests::Client, kind: &str) -> Vec<Value> {
    let run = c.run(&["jobs", "--all", "--json"]);
    assert!(run.ok, "{}", run.stderr);
    let all: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    all.into_iter().filter(|j| j["kind"] == kind).collect()
}

#[test]
fn a_killed_put_and_get_show_interrupted_and_their_reruns_continue_the_same_jobs() {
    let _serial = heavy_io();
    let a = Appliance::start();
    let c = a.client(&a.media_user("ann@example.com"));
    let src = tempfile::tempdir().unwrap();
    let down = tempfile::tempdir().unwrap();
    let up = src.path().join("big.mov");
    write_random(&up, 200 * MIB, 61);
    write_random(&a.share.join("out/plate.mov"), 200 * MIB, 62);
    let put_args = ["put", up.to_str().unwrap(), "share=media/in/", "--json"];
    let get_args = [
        "get",
        "share=media/out/plate.mov",
        down.path().to_str().unwrap(),
        "--json",
    ];
    // Capped, so that both are still running when their client dies.
    let capped = |args: &[&str]| {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend(["--rate".into(), "100M".into()]);
        v
    };
    let put_capped = capped(&put_args);
    let get_capped = capped(&get_args);
    let mut put = c.spawn(&put_capped.iter().map(String::as_str).collect::<Vec<_>>());
    let mut get = c.spawn(&get_capped.iter().map(String::as_str).collect::<Vec<_>>());
    // Both have checkpointed what they hold (each receiver's state file),
    // and both jobs show it.
    let states = [
        a.share.join("in/big.mov.ferry-state"),
        down.path().join("plate.mov.ferry-state"),
    ];
    wait_for(
        "both transfers to checkpoint",
        Duration::from_secs(30),
        || {
            states.iter().all(|s| s.exists())
                && ["put", "get"].iter().all(|k| {
                    jobs_of(&c, k).first().is_some_and(|j| {
                        j["status"] == "running" && j["bytes_done"].as_i64() > Some(0)
                    })
                })
        },
    );
    put.kill().unwrap();
    get.kill().unwrap();
    put.wait().unwrap();
    get.wait().unwrap();
    let killed = Instant::now();
    let (put_job, get_job) = (jobs_of(&c, "put"), jobs_of(&c, "get"));
    assert_eq!((put_job.len(), get_job.len()), (1, 1));
    let (put_id, get_id) = (put_job[0]["id"].clone(), get_job[0]["id"].clone());

    // Half a minute after their client died, neither shows running.
    let mut last = Vec::new();
    while killed.elapsed() < Duration::from_secs(30) {
        last = ["put", "get"]
            .iter()
            .map(|k| jobs_of(&c, k)[0]["status"].clone())
            .collect();
        if last.iter().all(|s| s == "interrupted") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        last.iter().all(|s| s == "interrupted"),
        "30 s after the client died, put and get show {last:?}:\n{}",
        a.log()
            .lines()
            .filter(|l| l.contains("job") || l.contains("session"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!(
        "interrupted {:.1} s after the client was killed",
        killed.elapsed().as_secs_f64()
    );
    for k in ["put", "get"] {
        let j = &jobs_of(&c, k)[0];
        assert!(
            j["actions"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a != "retry" && a != "pause"),
            "{j}"
        );
    }
    assert!(
        !a.share.join("in/big.mov").exists(),
        "no half file under the final name"
    );

    // The same commands again: the same jobs, continued from what arrived.
    for (args, kind, id) in [(&put_args, "put", &put_id), (&get_args, "get", &get_id)] {
        let rerun = c.run(args);
        assert!(rerun.ok, "{}", rerun.stderr);
        let summary: Value = serde_json::from_str(rerun.stdout.trim()).unwrap();
        assert!(
            summary["bytes_skipped"].as_u64().unwrap() > 0,
            "the rerun of the {kind} resent everything: {summary}"
        );
        let jobs = jobs_of(&c, kind);
        assert_eq!(
            jobs.len(),
            1,
            "a rerun opened a second {kind} job: {jobs:?}"
        );
        assert_eq!(&jobs[0]["id"], id);
        assert_eq!(jobs[0]["status"], "done", "{}", jobs[0]);
        assert_eq!(jobs[0]["bytes_done"], jobs[0]["bytes_total"], "{}", jobs[0]);
    }
    assert_eq!(blake3_file(&up), blake3_file(&a.share.join("in/big.mov")));
    assert_eq!(
        blake3_file(&a.share.join("out/plate.mov")),
        blake3_file(&down.path().join("plate.mov"))
    );

    // Another put into the same folder, of another file, is another job.
    let other = src.path().join("other.mov");
    write_random(&other, MIB, 63);
    let run = c.run(&["put", other.to_str().unwrap(), "share=media/in/"]);
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(jobs_of(&c, "put").len(), 2);
}
