//! Issue 4: review-session deliveries. A facility sends two shots (an mp4
//! proxy and a 200-frame EXR sequence each) to two collaborators, each
//! running `ferry agent`; proxies land first; everyone can watch, abort,
//! purge and send again.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_tests::relay::Relay;
use ferry_tests::{
    Appliance, Client, Running, assert_same_tree, heavy_io, unique_loopback, wait_for, write_random,
};

const MIB: u64 = 1 << 20;

/// Two shots, each an mp4 proxy and a sequence of 200 frames.
pub(crate) fn review_session(dir: &Path, mp4: u64, frame: u64) -> Vec<PathBuf> {
    let mut items = Vec::new();
    for (n, shot) in ["shot010", "shot020"].iter().enumerate() {
        let proxy = dir.join(format!("{shot}.mp4"));
        write_random(&proxy, mp4, 100 + n as u64);
        for f in 1001..1201u64 {
            write_random(
                &dir.join(shot).join(format!("{shot}.{f:04}.exr")),
                frame + f % 17,
                f * 31 + n as u64,
            );
        }
        items.push(proxy);
        items.push(dir.join(shot));
    }
    items
}

pub(crate) struct Cast {
    pub(crate) sender: Client,
    pub(crate) a: Client,
    pub(crate) b: Client,
}

pub(crate) fn cast(app: &Appliance) -> Cast {
    let sender = app.client(&app.media_user("producer@studio.example"));
    let a = app.client(&app.user("director@client.example", "collaborator"));
    let b = app.client(&app.user("editor@client.example", "collaborator"));
    Cast { sender, a, b }
}

pub(crate) fn send_json(c: &Client, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["send"];
    full.extend_from_slice(args);
    full.push("--json");
    c.run(&full).json()
}

pub(crate) fn job_of(created: &serde_json::Value, kind: &str, recipient: Option<&str>) -> i64 {
    created["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["kind"] == kind && recipient.is_none_or(|r| j["recipient"] == r))
        .and_then(|j| j["id"].as_i64())
        .unwrap_or_else(|| panic!("no {kind} job for {recipient:?} in {created}"))
}

/// The order files arrived at an agent, from its lines.
fn arrivals(agent: &Running, job: i64) -> Vec<String> {
    let prefix = format!("job {job}: received ");
    agent
        .lines()
        .iter()
        .filter_map(|l| {
            l.strip_prefix(&prefix)
                .map(|r| r.split(" (").next().unwrap_or("").to_owned())
        })
        .collect()
}

/// A delivery-sized appliance reached through a paced relay, so that the
/// upload takes a few seconds and fan-out can be seen overlapping it.
pub(crate) fn paced_appliance(rate: u64, extra: &[&str]) -> (Appliance, Relay) {
    let relay_ip = unique_loopback();
    let mut args = vec!["--public-address", "", "--ports", "45190-45199"];
    let ip = relay_ip.to_string();
    args[1] = &ip;
    args.extend_from_slice(extra);
    let a = Appliance::start_with(&args);
    let client_ip: IpAddr = "127.0.0.1".parse().unwrap();
    let relay = Relay::start(relay_ip, a.ip, client_ip, 45190..=45199, rate);
    (a, relay)
}

#[test]
fn the_seed_review_session_reaches_both_recipients_proxies_first() {
    let _serial = heavy_io();
    let (app, _relay) = paced_appliance(40 * MIB, &[]);
    let c = cast(&app);
    let src = tempfile::tempdir().unwrap();
    let items = review_session(src.path(), 16 * MIB, 400_000);
    let into_a = tempfile::tempdir().unwrap();
    let into_b = tempfile::tempdir().unwrap();
    let agent_a = Running::start(
        &c.a,
        &[
            "agent",
            "--into",
            into_a.path().to_str().unwrap(),
            "--poll",
            "1",
        ],
    );
    let agent_b = Running::start(
        &c.b,
        &[
            "agent",
            "--into",
            into_b.path().to_str().unwrap(),
            "--poll",
            "1",
        ],
    );

    let mut args: Vec<&str> = items.iter().map(|p| p.to_str().unwrap()).collect();
    args.extend_from_slice(&[
        "--to",
        "director@client.example",
        "--to",
        "editor@client.example",
        "--dest",
        "share=media/theproject/review-2020-10-07/",
        "--name",
        "theproject-review-20.10.07",
        "--priority",
        "*.mp4=high",
    ]);
    let created = send_json(&c.sender, &args);
    let upload = job_of(&created, "upload", None);
    let job_a = job_of(&created, "download", Some("director@client.example"));
    let job_b = job_of(&created, "download", Some("editor@client.example"));

    for (agent, job) in [(&agent_a, job_a), (&agent_b, job_b)] {
        agent.wait_line(&format!("job {job}: complete"), Duration::from_secs(120));
    }
    // Every byte at both recipients.
    for into in [into_a.path(), into_b.path()] {
        let got = into.join("theproject-review-20.10.07");
        assert_same_tree(src.path(), &got);
    }
    // At each recipient both proxies finished before any frame.
    for (agent, job) in [(&agent_a, job_a), (&agent_b, job_b)] {
        let order = arrivals(agent, job);
        assert_eq!(order.len(), 402, "{order:?}");
        assert!(
            order[..2].iter().all(|f| f.ends_with(".mp4")),
            "proxies first at job {job}: {:?}",
            &order[..4]
        );
    }
    // The upload job exists, named after the delivery, and is done.
    let jobs = c.sender.run(&["jobs", "--all", "--json"]).json();
    let up = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == upload)
        .unwrap()
        .clone();
    assert_eq!(up["name"], "theproject-review-20.10.07-upload");
    assert_eq!(up["status"], "done");
    // Fan-out overlapped the upload: a proxy was complete at a recipient
    // before the upload of the frames ended.
    let finished = up["finished_at"].as_i64().unwrap();
    use std::os::unix::fs::MetadataExt as _;
    let proxy = into_a.path().join("theproject-review-20.10.07/shot010.mp4");
    let landed = std::fs::metadata(&proxy).unwrap().ctime();
    assert!(
        landed < finished,
        "proxy landed at {landed}, upload finished at {finished}"
    );

    // A folder of frames reads as one line with its count.
    let shown =
        c.a.run(&["job", "show", &job_a.to_string(), "--json"])
            .json();
    let lines = shown["lines"].as_array().unwrap();
    let seq = lines
        .iter()
        .find(|l| l["kind"] == "sequence" && l["name"].as_str().unwrap().starts_with("shot010/"))
        .unwrap();
    assert_eq!(seq["files"], 200);
    assert_eq!(seq["name"], "shot010/shot010.####.exr[1001-1200]");
    assert_eq!(seq["status"], "done");
    assert!(
        lines[0]["name"].as_str().unwrap().ends_with(".mp4"),
        "proxies listed first"
    );
}

#[test]
fn an_aborted_then_purged_job_cannot_be_resumed() {
    let _serial = heavy_io();
    let (app, _relay) = paced_appliance(20 * MIB, &[]);
    let c = cast(&app);
    let src = tempfile::tempdir().unwrap();
    let movie = src.path().join("long.mov");
    write_random(&movie, 200 * MIB, 9);
    let created = send_json(
        &c.sender,
        &[
            movie.to_str().unwrap(),
            "--to",
            "director@client.example",
            "--dest",
            "share=media/in/",
        ],
    );
    let job = job_of(&created, "download", Some("director@client.example"));
    let into = tempfile::tempdir().unwrap();
    let agent = Running::start(
        &c.a,
        &[
            "agent",
            "--into",
            into.path().to_str().unwrap(),
            "--poll",
            "1",
        ],
    );
    agent.wait_line(&format!("job {job}: receiving"), Duration::from_secs(30));
    let part = into.path().join(format!(
        "{}/long.mov.ferry-part",
        created["jobs"][1]["name"].as_str().unwrap()
    ));
    wait_for("bytes at the recipient", Duration::from_secs(30), || {
        part.exists()
    });

    let run = c.sender.run(&["job", "abort", &job.to_string()]);
    assert!(run.ok, "{}", run.stderr);
    let said = agent.wait_line("aborted", Duration::from_secs(20));
    assert!(said.contains(&format!("job {job}")), "{said}");
    let run = c.sender.run(&["job", "purge", &job.to_string()]);
    assert!(run.ok, "{}", run.stderr);

    // The recipient cannot resume it, and is told why.
    let run = c.a.run(&[
        "pull",
        &job.to_string(),
        "--into",
        into.path().to_str().unwrap(),
    ]);
    assert!(!run.ok);
    assert!(run.stderr.contains("withdrawn"), "{}", run.stderr);
    // It is gone from listings (sender's and recipient's).
    for who in [&c.sender, &c.a] {
        let jobs = who.run(&["jobs", "--all", "--json"]).json();
        assert!(
            jobs.as_array().unwrap().iter().all(|j| j["id"] != job),
            "{jobs}"
        );
    }
    assert!(!into.path().join("long.mov").exists());
}

#[test]
fn sending_again_from_the_share_uploads_nothing_and_recipients_stay_apart() {
    let app = Appliance::start();
    let c = cast(&app);
    let src = tempfile::tempdir().unwrap();
    let items = review_session(src.path(), 2 * MIB, 20_000);
    let mut args: Vec<&str> = items.iter().map(|p| p.to_str().unwrap()).collect();
    args.extend_from_slice(&[
        "--to",
        "director@client.example",
        "--dest",
        "share=media/review/",
        "--priority",
        "*.mp4=high",
    ]);
    let first = send_json(&c.sender, &args);
    let job_a = job_of(&first, "download", Some("director@client.example"));
    let into = tempfile::tempdir().unwrap();
    let run = c.a.run(&["pull", "--into", into.path().to_str().unwrap()]);
    assert!(run.ok, "{}", run.stderr);

    // A third person, later, from the share: no upload job, nothing sent up.
    let again = send_json(
        &c.sender,
        &[
            "share=media/review/shot010.mp4",
            "share=media/review/shot010",
            "share=media/review/shot020.mp4",
            "share=media/review/shot020",
            "--to",
            "newcomer@elsewhere.example",
            "--name",
            "review-for-newcomer",
            "--priority",
            "*.mp4=high",
        ],
    );
    assert!(
        again["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["kind"] == "download"),
        "{again}"
    );
    let newcomer_job = job_of(&again, "download", Some("newcomer@elsewhere.example"));
    // The newcomer is an invited collaborator now.
    let users = app.admin(&["user", "list"]);
    assert!(
        users
            .lines()
            .any(|l| l.starts_with("newcomer@elsewhere.example\tcollaborator\tinvited")),
        "{users}"
    );
    let jobs = c.sender.run(&["jobs", "--all", "--json"]).json();
    let uploads = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["kind"] == "upload")
        .count();
    assert_eq!(uploads, 1, "only the first delivery uploaded");
    // Give the newcomer a way in, and let them pull it.
    app.admin_stdin(
        &["user", "passwd", "newcomer@elsewhere.example"],
        "harbour lights at dawn\n",
    );
    let newcomer = app.client(
        app.admin(&["apikey", "create", "newcomer@elsewhere.example"])
            .trim(),
    );
    let into_n = tempfile::tempdir().unwrap();
    let run = newcomer.run(&[
        "pull",
        &newcomer_job.to_string(),
        "--into",
        into_n.path().to_str().unwrap(),
    ]);
    assert!(run.ok, "{}", run.stderr);
    assert_same_tree(src.path(), &into_n.path().join("review-for-newcomer"));

    // Recipients stay apart: the newcomer cannot see, pull or abort the
    // director's job.
    let id = job_a.to_string();
    for args in [
        vec!["job", "show", &id],
        vec!["job", "abort", &id],
        vec!["job", "pause", &id],
    ] {
        let run = newcomer.run(&args);
        assert!(
            !run.ok && run.stderr.contains(&format!("no job {job_a}")),
            "{args:?}: {}",
            run.stderr
        );
    }
    let run = newcomer.run(&["pull", &id, "--into", into_n.path().to_str().unwrap()]);
    assert!(
        !run.ok && run.stderr.contains(&format!("no job {job_a}")),
        "{}",
        run.stderr
    );
    let theirs = newcomer.run(&["jobs", "--all", "--json"]).json();
    assert_eq!(theirs.as_array().unwrap().len(), 1, "{theirs}");
    // A recipient cannot abort even their own delivery; only its sender.
    let run = c.a.run(&["job", "abort", &id]);
    assert!(
        !run.ok && run.stderr.contains("only the sender"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_killed_agent_resumes_the_delivery_without_resending() {
    let _serial = heavy_io();
    let (app, _relay) = paced_appliance(30 * MIB, &[]);
    let c = cast(&app);
    let src = tempfile::tempdir().unwrap();
    let movie = src.path().join("dailies.mov");
    write_random(&movie, 150 * MIB, 3);
    let created = send_json(
        &c.sender,
        &[
            movie.to_str().unwrap(),
            "--to",
            "director@client.example",
            "--dest",
            "share=media/d/",
            "--name",
            "dailies",
        ],
    );
    let job = job_of(&created, "download", Some("director@client.example"));
    let into = tempfile::tempdir().unwrap();
    let mut agent = Running::start(
        &c.a,
        &[
            "agent",
            "--into",
            into.path().to_str().unwrap(),
            "--poll",
            "1",
        ],
    );
    let state = into.path().join("dailies/dailies.mov.ferry-state");
    wait_for(
        "the agent's first checkpoint",
        Duration::from_secs(60),
        || state.exists(),
    );
    agent.kill();
    assert!(!into.path().join("dailies/dailies.mov").exists());
    let agent = Running::start(
        &c.a,
        &[
            "agent",
            "--into",
            into.path().to_str().unwrap(),
            "--poll",
            "1",
        ],
    );
    let done = agent.wait_line(&format!("job {job}: complete"), Duration::from_secs(120));
    assert!(!done.contains(" 0 B already here"), "{done}");
    assert!(done.contains("already here"), "{done}");
    assert_same_tree(src.path(), &into.path().join("dailies"));
}

#[test]
fn priorities_sequences_with_gaps_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferryd.toml");
    std::fs::write(&config, "[deliveries]\njanitor_secs = 1\n").unwrap();
    let app = Appliance::start_with(&["--config", config.to_str().unwrap()]);
    let c = cast(&app);
    let src = tempfile::tempdir().unwrap();
    // A sequence with frames 1001-1010, 1004 and 1007-1008 missing.
    for f in (1001..=1010).filter(|f| ![1004, 1007, 1008].contains(f)) {
        write_random(&src.path().join(format!("plates/plate.{f}.exr")), 1000, f);
    }
    write_random(&src.path().join("notes.txt"), 10, 1);
    let pattern = src.path().join("plates/plate.%04d.exr[1001-1010]");
    let run = c.sender.run(&[
        "send",
        pattern.to_str().unwrap(),
        src.path().join("notes.txt").to_str().unwrap(),
        "--to",
        "director@client.example",
        "--dest",
        "share=media/plates/",
        "--expires",
        "4s",
        "--json",
    ]);
    let created = run.json();
    assert!(
        run.stderr.contains("1004, 1007-1008"),
        "names the missing frames: {}",
        run.stderr
    );
    let job = job_of(&created, "download", Some("director@client.example"));
    let shown = c
        .sender
        .run(&["job", "show", &job.to_string(), "--json"])
        .json();
    let seq = shown["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["kind"] == "sequence")
        .unwrap()
        .clone();
    assert_eq!(seq["files"], 7);
    assert_eq!(seq["missing"], serde_json::json!(["1004", "1007-1008"]));
    assert_eq!(seq["name"], "plates/plate.####.exr[1001-1010]");

    // Priority of a glob, by the sender.
    let changed = c
        .sender
        .run(&["job", "priority", &job.to_string(), "*.exr", "high"]);
    assert!(changed.ok, "{}", changed.stderr);
    let shown = c
        .sender
        .run(&["job", "show", &job.to_string(), "--json"])
        .json();
    for t in shown["tasks"].as_array().unwrap() {
        let expect = if t["path"].as_str().unwrap().ends_with(".exr") {
            999
        } else {
            500
        };
        assert_eq!(t["priority"], expect, "{t}");
    }
    let bad = c
        .sender
        .run(&["job", "priority", &job.to_string(), "*.nope", "high"]);
    assert!(!bad.ok && bad.stderr.contains("no file"), "{}", bad.stderr);

    // Past its expiry the delivery's uploaded files go and its jobs end.
    let landed = app.share.join("plates/plates/plate.1001.exr");
    assert!(landed.exists());
    wait_for("the expiry janitor", Duration::from_secs(20), || {
        !landed.exists()
    });
    let shown = c
        .sender
        .run(&["job", "show", &job.to_string(), "--json"])
        .json();
    assert_eq!(shown["job"]["status"], "aborted");
    assert_eq!(shown["job"]["error"], "the delivery expired");
    let into = tempfile::tempdir().unwrap();
    let run = c.a.run(&[
        "pull",
        &job.to_string(),
        "--into",
        into.path().to_str().unwrap(),
    ]);
    assert!(!run.ok);
}

#[test]
fn bad_delivery_requests_are_refused_whole() {
    let app = Appliance::start();
    let c = cast(&app);
    let src = tempfile::tempdir().unwrap();
    write_random(&src.path().join("a.mov"), 10, 1);
    let a = src.path().join("a.mov");
    let cases: &[(&[&str], &str)] = &[
        (
            &["send", a.to_str().unwrap(), "--to", "x@y.example"],
            "--dest",
        ),
        (
            &[
                "send",
                a.to_str().unwrap(),
                "--to",
                "not-an-email",
                "--dest",
                "share=media/x/",
            ],
            "not a valid email",
        ),
        (
            &[
                "send",
                a.to_str().unwrap(),
                "--to",
                "x@y.example",
                "--dest",
                "share=nope/x/",
            ],
            "no share named",
        ),
        (
            &[
                "send",
                a.to_str().unwrap(),
                "--to",
                "x@y.example",
                "--dest",
                "share=media/../x/",
            ],
            "'..'",
        ),
        (
            &[
                "send",
                a.to_str().unwrap(),
                "share=media/x",
                "--to",
                "x@y.example",
            ],
            "not both",
        ),
        (
            &["send", "share=media/nothing-here", "--to", "x@y.example"],
            "does not exist",
        ),
        (
            &[
                "send",
                a.to_str().unwrap(),
                "--to",
                "x@y.example",
                "--dest",
                "share=media/x/",
                "--priority",
                "*.mov",
            ],
            "GLOB=high",
        ),
    ];
    for (args, reason) in cases {
        let run = c.sender.run(args);
        assert!(!run.ok, "{args:?} should fail");
        assert!(
            run.stderr.contains(reason),
            "{args:?}: expected {reason:?} in {}",
            run.stderr
        );
    }
    // Collaborators receive; they do not send.
    let run = c.a.run(&["send", "share=media/x", "--to", "x@y.example"]);
    assert!(
        !run.ok && run.stderr.contains("collaborators receive"),
        "{}",
        run.stderr
    );
    // Nothing was half made: no jobs, no new users.
    let jobs = c.sender.run(&["jobs", "--all", "--json"]).json();
    assert!(jobs.as_array().unwrap().is_empty(), "{jobs}");
    assert!(!app.admin(&["user", "list"]).contains("x@y.example"));
}

/// Bytes ferryd has read from storage so far (`/proc/PID/io`).
fn storage_reads(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("read_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "needs root to drop the page cache; tests/run runs it"]
fn two_recipients_share_one_read_of_the_files() {
    assert!(nix::unistd::geteuid().is_root(), "needs root");
    let _serial = heavy_io();
    let app = Appliance::start();
    let c = cast(&app);
    write_random(&app.share.join("onprem/plate.mov"), 300 * MIB, 77);
    let created = send_json(
        &c.sender,
        &[
            "share=media/onprem/plate.mov",
            "--to",
            "director@client.example",
            "--to",
            "editor@client.example",
            "--name",
            "plate",
        ],
    );
    let job_a = job_of(&created, "download", Some("director@client.example"));
    let job_b = job_of(&created, "download", Some("editor@client.example"));
    // From cold: nothing of the file in memory.
    std::process::Command::new("sync").status().unwrap();
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    let pid = app.pid().unwrap();
    let before = storage_reads(pid);
    let (into_a, into_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Running::start(
        &c.a,
        &[
            "pull",
            &job_a.to_string(),
            "--into",
            into_a.path().to_str().unwrap(),
        ],
    );
    let mut b = Running::start(
        &c.b,
        &[
            "pull",
            &job_b.to_string(),
            "--into",
            into_b.path().to_str().unwrap(),
        ],
    );
    assert!(a.wait(Duration::from_secs(120)) && b.wait(Duration::from_secs(120)));
    let read = storage_reads(pid) - before;
    for into in [into_a.path(), into_b.path()] {
        assert_eq!(
            ferry_tests::blake3_file(&app.share.join("onprem/plate.mov")),
            ferry_tests::blake3_file(&into.join("plate/plate.mov"))
        );
    }
    // Read once for both (the second session finds it in the page cache),
    // not once per recipient.
    assert!(
        read < 300 * MIB * 3 / 2,
        "ferryd read {} MiB from storage for two recipients of a 300 MiB file",
        read / MIB
    );
    eprintln!(
        "storage reads for two recipients of 300 MiB: {} MiB",
        read / MIB
    );
}
