//! Faults the appliance must survive without corruption. (Issue 10's
//! suite grows here.)

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_tests::{
    Client, Running, assert_same_tree, bin, heavy_io, list_files, record_scenario, tree_bytes,
};

use crate::deliveries::{cast, paced_appliance, review_session};

const MIB: u64 = 1 << 20;

/// A small deterministic generator for the moments and targets of faults,
/// so that a failing run can be replayed.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The status of job `id` as its owner sees it.
fn job_status(c: &Client, id: i64) -> String {
    let run = c.run(&["job", "show", &id.to_string(), "--json"]);
    if !run.ok {
        return format!("unknown ({})", run.stderr.trim());
    }
    run.json()["job"]["status"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// 30 SIGKILLs at random moments, each of ferryd, the sender's client or
/// one of the two recipients' agents, during a delivery of two movies and
/// two 200-frame sequences to two recipients. Each killed process is
/// started again (ferryd on the same data; the sender with `ferry job
/// resume`; the agent as it was). In the end every byte at both
/// recipients and on the appliance matches the source (BLAKE3), no part
/// file is left under any name, and all three jobs say done.
#[test]
fn a_delivery_survives_thirty_random_kills() {
    let _serial = heavy_io();
    let long = std::env::var_os("FERRY_LONG").is_some();
    // Quick: 1.2 GiB; long: 4.7 GiB.
    let (movie, frame) = if long {
        (1200 * MIB, 6 * MIB)
    } else {
        (300 * MIB, 3 * MIB / 2)
    };
    let (mut app, _relay) = paced_appliance(80 * MIB, &[]);
    let c = cast(&app);
    let src = tempfile::tempdir().unwrap();
    let items = review_session(src.path(), movie, frame);
    let into = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let agent_args = |dir: &tempfile::TempDir| {
        vec![
            "agent".to_owned(),
            "--into".to_owned(),
            dir.path().display().to_string(),
            "--poll".to_owned(),
            "1".to_owned(),
        ]
    };
    let start_agent = |client: &Client, dir: &tempfile::TempDir| {
        let args = agent_args(dir);
        Running::start(client, &args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // Debug lines from the agents' sessions, shown if the scenario fails.
    let debug = "warn,quinn=debug,quinn_proto=debug,ferry_client=debug,ferry_engine=debug";
    let (ca, cb) = (c.a.with("RUST_LOG", debug), c.b.with("RUST_LOG", debug));
    let mut agents = [start_agent(&ca, &into[0]), start_agent(&cb, &into[1])];
    let mut send_args: Vec<&str> = vec!["send"];
    send_args.extend(items.iter().map(|p| p.to_str().unwrap()));
    send_args.extend_from_slice(&[
        "--to",
        "director@client.example",
        "--to",
        "editor@client.example",
        "--dest",
        "share=media/storm/",
        "--name",
        "storm",
        "--priority",
        "*.mp4=high",
        "--retries",
        "1000",
    ]);
    let started = Instant::now();
    let mut sender = Running::start(&c.sender, &send_args);

    // The delivery's three jobs, once the appliance has made them.
    let mut jobs: Vec<(i64, String)> = Vec::new();
    ferry_tests::wait_for("the delivery's jobs", Duration::from_secs(60), || {
        let run = c.sender.run(&["jobs", "--all", "--json"]);
        if run.ok
            && let Ok(serde_json::Value::Array(list)) = serde_json::from_str(&run.stdout)
        {
            jobs = list
                .iter()
                .filter(|j| j["name"].as_str().is_some_and(|n| n.starts_with("storm")))
                .map(|j| {
                    (
                        j["id"].as_i64().unwrap(),
                        j["kind"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
        }
        jobs.len() == 3
    });
    let upload = jobs.iter().find(|(_, k)| k == "upload").unwrap().0;

    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let mut kills = [0u32; 4]; // ferryd, sender, agent A, agent B
    for _ in 0..30 {
        // The moment of each kill is the injected fault, not a wait for
        // a condition: 0.3–1.2 s apart.
        std::thread::sleep(Duration::from_millis(300 + dice.next() % 900));
        let target = (dice.next() % 4) as usize;
        kills[target] += 1;
        match target {
            0 => app.restart(),
            1 => {
                sender.kill();
                sender = Running::start(&c.sender, &["job", "resume", &upload.to_string()]);
            }
            n => {
                let i = n - 2;
                agents[i].kill();
                agents[i] = start_agent(if i == 0 { &ca } else { &cb }, &into[i]);
            }
        }
    }
    let faults_done = started.elapsed();

    // Recovery: keep the sender going until the upload is done (a resume
    // that gave up during a restart is started again), then wait for both
    // downloads.
    let deadline = Instant::now() + Duration::from_secs(if long { 900 } else { 300 });
    loop {
        let statuses: Vec<String> = jobs
            .iter()
            .map(|(id, _)| job_status(&c.sender, *id))
            .collect();
        if statuses.iter().all(|s| s == "done") {
            break;
        }
        if Instant::now() >= deadline {
            let ended: Vec<bool> = agents.iter_mut().map(Running::ended).collect();
            let tail = |r: &Running| {
                let l = r.lines();
                l[l.len().saturating_sub(80)..].join("\n")
            };
            panic!(
                "not done in time: {jobs:?} are {statuses:?}; agents ended: {ended:?}\nagent A:\n{}\nagent B:\n{}\nsender:\n{}",
                tail(&agents[0]),
                tail(&agents[1]),
                tail(&sender)
            );
        }
        if sender.ended() && job_status(&c.sender, upload) != "done" {
            sender = Running::start(&c.sender, &["job", "resume", &upload.to_string()]);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let recovered = started.elapsed();

    // Every byte, everywhere; no part file under any name.
    let on_appliance = app.share.join("storm");
    assert_same_tree(src.path(), &on_appliance);
    for dir in &into {
        assert_same_tree(src.path(), &dir.path().join("storm"));
    }
    for dir in [on_appliance.as_path(), into[0].path(), into[1].path()] {
        let parts: Vec<_> = ferry_tests::delivered_files(dir)
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(".ferry-"))
            .collect();
        assert!(
            parts.is_empty(),
            "left behind in {}: {parts:?}",
            dir.display()
        );
    }
    let bytes = tree_bytes(src.path());
    record_scenario(
        "kill-storm",
        serde_json::json!({
            "scenario": "30 random SIGKILLs during a delivery to two recipients",
            "injected": format!(
                "SIGKILL of ferryd {} times (restarted), the sender {} times (ferry job resume), agent A {} and agent B {} times (restarted)",
                kills[0], kills[1], kills[2], kills[3]
            ),
            "checked": "BLAKE3 of every file on the appliance and at both recipients; no part file left; upload and both downloads done",
            "faults_survived": 30,
            "bytes_compared": bytes * 3,
            "delivery_bytes": bytes,
            "files": list_files(src.path()).len(),
            "seconds_under_fault": faults_done.as_secs_f64(),
            "seconds_to_all_done": recovered.as_secs_f64(),
        }),
    );
}

/// kill -9 of a process in the middle of bursts of job updates, 50 times:
/// after each, SQLite's integrity check passes and every job's counters
/// agree with its tasks (no update is half applied).
#[test]
fn the_database_survives_kill_9_during_job_updates() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ferry.db");
    // A fixed sequence of kill moments, spread over 5–80 ms.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..50 {
        let mut child = Command::new(bin("ferry-store-burst"))
            .arg(&db)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ferry-store-burst");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready", "round {round}");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // The moment of the kill is the fault being injected, not a wait
        // for a condition.
        std::thread::sleep(Duration::from_millis(5 + seed % 75));
        child.kill().unwrap();
        child.wait().unwrap();

        let conn = rusqlite::Connection::open(&db).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "round {round}");
        let disagree: i64 = conn
            .query_row(
                "SELECT count(*) FROM jobs j WHERE EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = j.id) AND (
                     j.files_total != (SELECT count(*) FROM tasks t WHERE t.job_id = j.id AND t.status != 'excluded')
                  OR j.files_done != (SELECT count(*) FROM tasks t WHERE t.job_id = j.id AND t.status = 'done')
                  OR j.bytes_done != (SELECT coalesce(sum(t.bytes_done), 0) FROM tasks t
                                      WHERE t.job_id = j.id AND t.status = 'done'))",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            disagree, 0,
            "round {round}: a job's counters disagree with its tasks"
        );
    }
    record_scenario(
        "sqlite-kill-9",
        serde_json::json!({
            "scenario": "kill -9 during bursts of job updates",
            "injected": "50 SIGKILLs of a process writing jobs and tasks through ferry-store, 5-80 ms into each burst",
            "checked": "PRAGMA integrity_check ok after each; every job's counters agree with its tasks",
            "faults_survived": 50,
            "bytes_compared": 0,
        }),
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let jobs: i64 = conn
        .query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
        .unwrap();
    assert!(jobs >= 50, "each round committed work ({jobs} jobs)");
}

/// A tmpfs of a given size mounted over a folder for the length of a test
/// (unmounted even when the test fails).
struct SmallDisk {
    at: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(at: &std::path::Path, mib: u64) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0755"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .expect("mount")
            .success();
        assert!(ok, "cannot mount a tmpfs on {}", at.display());
        SmallDisk { at: at.to_owned() }
    }

    /// Another program fills the disk to the last byte; returns its file.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write as _;
        let filler = self.at.join("filler.bin");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0x5au8; 1 << 20];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", filler.display()),
            }
        }
        // The last partial block too.
        let mut small = vec![0x5au8; 4096];
        while f.write(&small).is_ok_and(|n| n > 0) {
            small.truncate(small.len().max(2) / 2);
        }
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

fn part_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    list_files(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".ferry-part"))
        .collect()
}

/// The recipient's disk fills up during a delivery (another program takes
/// the last free byte after the first checkpoint): the job fails with a
/// clear "no space", at the agent and in the job's state on the appliance;
/// the part file stays and nothing appears under the final name. Once the
/// space is freed the agent resumes by itself, without fetching again what
/// it had checkpointed, and the file is whole.
#[test]
#[ignore = "needs root (mounts a small tmpfs); tests/run runs it"]
fn a_full_recipient_disk_fails_clearly_and_resumes_when_freed() {
    let _serial = heavy_io();
    let (app, _relay) = paced_appliance(16 * MIB, &[]);
    let c = cast(&app);
    let src = tempfile::tempdir().unwrap();
    let movie = src.path().join("grade.mov");
    ferry_tests::write_random(&movie, 96 * MIB, 11);
    let created = crate::deliveries::send_json(
        &c.sender,
        &[
            movie.to_str().unwrap(),
            "--to",
            "director@client.example",
            "--dest",
            "share=media/full/",
            "--name",
            "full",
        ],
    );
    let job = crate::deliveries::job_of(&created, "download", Some("director@client.example"));
    let home = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&home.path().join("deliveries"), 160);
    let started = Instant::now();
    let agent = Running::start(
        &c.a,
        &["agent", "--into", disk.at.to_str().unwrap(), "--poll", "1"],
    );
    let got = disk.at.join("full");
    ferry_tests::wait_for(
        "the agent's first checkpoint",
        Duration::from_secs(60),
        || got.join("grade.mov.ferry-state").exists(),
    );
    let filler = disk.fill();
    let said = |l: &String| l.starts_with(&format!("job {job}:")) && l.contains("no space");
    ferry_tests::wait_for(
        "the agent to say the disk is full",
        Duration::from_secs(120),
        || agent.lines().iter().any(said),
    );
    let said_line = agent.lines().into_iter().find(said).unwrap();
    let detail = c
        .sender
        .run(&["job", "show", &job.to_string(), "--json"])
        .json();
    let error = detail["job"]["error"].as_str().unwrap_or("").to_owned();
    assert!(
        error.contains("no space") && detail["job"]["status"] != "done",
        "the appliance's record of job {job}: {}",
        detail["job"]
    );
    assert!(
        !got.join("grade.mov").exists(),
        "a half file under its final name"
    );
    assert_eq!(
        part_files(&got).len(),
        1,
        "the part file is kept for the resume"
    );

    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    let done = agent.wait_line(&format!("job {job}: complete"), Duration::from_secs(180));
    assert!(!done.contains(" 0 B already here"), "{done}");
    assert_eq!(
        ferry_tests::blake3_file(&movie),
        ferry_tests::blake3_file(&got.join("grade.mov"))
    );
    assert!(part_files(&got).is_empty());
    record_scenario(
        "recipient-disk-full",
        serde_json::json!({
            "scenario": "the recipient's disk fills up during a delivery",
            "injected": "a 160 MiB tmpfs as the agent's folder; after the first checkpoint of a 96 MiB movie another program fills it; later that file is deleted",
            "checked": format!("agent and appliance say no space ('{error}'); part file kept, no final name; the agent resumes by itself; BLAKE3 equal"),
            "faults_survived": 1,
            "bytes_compared": 96 * MIB,
            "seconds_to_no_space": freed.duration_since(started).as_secs_f64(),
            "seconds_to_recover": freed.elapsed().as_secs_f64(),
            "agent_said": said_line,
            "resume": done,
        }),
    );
}

/// The appliance's storage fills up during an upload (another program
/// takes the last free byte after the first checkpoint): the put fails
/// with "no space" at the client and in the job's state, the part file
/// stays in the share and nothing appears under the final name; with the
/// space freed the same put resumes and sends only what was missing.
#[test]
#[ignore = "needs root (mounts a small tmpfs); tests/run runs it"]
fn a_full_appliance_disk_fails_clearly_and_resumes_when_freed() {
    let _serial = heavy_io();
    let (app, _relay) = paced_appliance(16 * MIB, &[]);
    let disk = SmallDisk::mount(&app.share, 160);
    let sender = app.client(&app.media_user("producer@studio.example"));
    let src = tempfile::tempdir().unwrap();
    let movie = src.path().join("plate.mov");
    ferry_tests::write_random(&movie, 96 * MIB, 12);
    let started = Instant::now();
    let put = sender.spawn(&[
        "put",
        movie.to_str().unwrap(),
        "share=media/in/",
        "--retries",
        "0",
        "--json",
    ]);
    let landed = disk.at.join("in");
    ferry_tests::wait_for(
        "the appliance's first checkpoint",
        Duration::from_secs(60),
        || landed.join("plate.mov.ferry-state").exists(),
    );
    let filler = disk.fill();
    let first = ferry_tests::finish(put);
    assert!(!first.ok, "the put succeeded on a full disk");
    assert!(
        first.stderr.contains("no space"),
        "not a clear error: {}",
        first.stderr
    );
    let jobs = sender.run(&["jobs", "--all", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&jobs.stdout).unwrap();
    let job = list
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["kind"] == "put")
        .cloned()
        .unwrap_or_else(|| panic!("no put job in {list}"));
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap_or("").to_owned();
    assert!(error.contains("no space"), "{job}");
    assert!(
        !landed.join("plate.mov").exists(),
        "a half file under its final name"
    );
    assert_eq!(
        part_files(&landed).len(),
        1,
        "the part file is kept for the resume"
    );

    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    let again = sender.run(&["put", movie.to_str().unwrap(), "share=media/in/", "--json"]);
    assert!(again.ok, "{}", again.stderr);
    let report = again.json();
    assert!(report["bytes_skipped"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(
        ferry_tests::blake3_file(&movie),
        ferry_tests::blake3_file(&landed.join("plate.mov"))
    );
    assert!(part_files(&landed).is_empty());
    record_scenario(
        "appliance-disk-full",
        serde_json::json!({
            "scenario": "the appliance's storage fills up during an upload",
            "injected": "a 160 MiB tmpfs as the root share; after the first checkpoint of a 96 MiB put another program fills it; later that file is deleted",
            "checked": format!("client and job say no space ('{error}'); part file kept, no final name; the same put resumes; BLAKE3 equal"),
            "faults_survived": 1,
            "bytes_compared": 96 * MIB,
            "bytes_skipped_on_resume": report["bytes_skipped"],
            "seconds_to_no_space": freed.duration_since(started).as_secs_f64(),
            "seconds_to_recover": freed.elapsed().as_secs_f64(),
        }),
    );
}

/// Load: 100 client processes at once, each with its own session, on the
/// appliance's 21 data ports (50 uploads, 50 downloads). All complete with
/// every byte right; ferryd's memory and descriptors stay bounded.
#[test]
fn a_hundred_sessions_at_once_on_twenty_one_ports() {
    let _serial = heavy_io();
    const CLIENTS: u64 = 100;
    const SIZE: u64 = 4 * MIB;
    let app = ferry_tests::Appliance::start_with(&["--ports", "45190-45210"]);
    let client = app.client(&app.media_user("producer@studio.example"));
    let src = tempfile::tempdir().unwrap();
    let dl = tempfile::tempdir().unwrap();
    for i in 0..CLIENTS {
        let f = if i % 2 == 0 {
            src.path().join(format!("up{i:03}.mov"))
        } else {
            app.share.join(format!("out/down{i:03}.mov"))
        };
        ferry_tests::write_random(&f, SIZE + i, 1000 + i);
    }
    let pid = app.pid().unwrap();
    let started = Instant::now();
    let children: Vec<_> = (0..CLIENTS)
        .map(|i| {
            if i % 2 == 0 {
                let f = src.path().join(format!("up{i:03}.mov"));
                client.spawn(&["put", f.to_str().unwrap(), "share=media/in/", "--json"])
            } else {
                let into = dl.path().join(format!("c{i:03}"));
                client.spawn(&[
                    "get",
                    &format!("share=media/out/down{i:03}.mov"),
                    into.to_str().unwrap(),
                    "--json",
                ])
            }
        })
        .collect();
    // Sample descriptors while the sessions run; the memory high-water
    // mark is the kernel's.
    let mut peak_fds = 0;
    let mut runs = Vec::new();
    for child in children {
        let mut child = child;
        while matches!(child.try_wait(), Ok(None)) {
            peak_fds = peak_fds.max(ferry_tests::rss_peak_and_fds(pid).1);
            std::thread::sleep(Duration::from_millis(50));
        }
        runs.push(ferry_tests::finish(child));
    }
    let elapsed = started.elapsed();
    for (i, run) in runs.iter().enumerate() {
        assert!(run.ok, "client {i}: {}", run.stderr);
    }
    for i in 0..CLIENTS {
        let (a, b) = if i % 2 == 0 {
            (
                src.path().join(format!("up{i:03}.mov")),
                app.share.join(format!("in/up{i:03}.mov")),
            )
        } else {
            (
                app.share.join(format!("out/down{i:03}.mov")),
                dl.path().join(format!("c{i:03}/down{i:03}.mov")),
            )
        };
        assert_eq!(
            ferry_tests::blake3_file(&a),
            ferry_tests::blake3_file(&b),
            "client {i}"
        );
    }
    let (peak_rss, fds_after) = ferry_tests::rss_peak_and_fds(pid);
    // Bounds: far above what was seen, far below what a leak per session
    // would reach.
    assert!(
        peak_rss < 1536 * MIB,
        "ferryd's peak RSS {} MiB",
        peak_rss / MIB
    );
    assert!(peak_fds < 600, "ferryd held {peak_fds} descriptors");
    ferry_tests::wait_for(
        "ferryd to give back its sessions' descriptors",
        Duration::from_secs(60),
        || ferry_tests::rss_peak_and_fds(pid).1 < 64,
    );
    record_scenario(
        "load-100-sessions",
        serde_json::json!({
            "scenario": "100 concurrent sessions from 100 client processes on 21 ports",
            "injected": "50 puts and 50 gets of 4 MiB each, all started at once",
            "checked": "every client succeeded; BLAKE3 of all 100 files; peak RSS and descriptors bounded; descriptors given back",
            "faults_survived": 0,
            "bytes_compared": CLIENTS * SIZE,
            "ferryd_peak_rss_mib": peak_rss as f64 / MIB as f64,
            "ferryd_peak_fds": peak_fds,
            "ferryd_fds_after": fds_after,
            "seconds_first_session_to_last_byte": elapsed.as_secs_f64(),
        }),
    );
}

/// The client's clock an hour ahead of the appliance's, then an hour
/// behind (libfaketime, from Debian's faketime): logging in, sessions,
/// tokens, a put, a get and a delivery pulled by an agent all work, since
/// tokens and leases are timed by the appliance alone and the certificate
/// is trusted by its fingerprint, not by dates.
#[test]
fn an_hour_of_clock_skew_either_way_breaks_nothing() {
    const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
    assert!(
        std::path::Path::new(FAKETIME).exists(),
        "{FAKETIME} is missing: apt-get install faketime (tests/run does)"
    );
    let _serial = heavy_io();
    let app = ferry_tests::Appliance::start();
    let sender = app.client(&app.media_user("producer@studio.example"));
    let recipient = app.client(&app.user("director@client.example", "collaborator"));
    let mut checked = Vec::new();
    for (n, skew) in ["+1h", "-1h"].into_iter().enumerate() {
        let skewed = |c: &Client| {
            c.with("LD_PRELOAD", FAKETIME)
                .with("FAKETIME", skew)
                .with("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        };
        let (s, r) = (skewed(&sender), skewed(&recipient));
        // The skew is really there.
        let date = Command::new("date")
            .arg("+%s")
            .env("LD_PRELOAD", FAKETIME)
            .env("FAKETIME", skew)
            .output()
            .unwrap();
        let faked: i64 = String::from_utf8_lossy(&date.stdout)
            .trim()
            .parse()
            .unwrap();
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(
            (faked - real).abs() > 3000,
            "faketime did not skew the clock ({skew})"
        );

        let src = tempfile::tempdir().unwrap();
        let movie = src.path().join(format!("skew{n}.mov"));
        ferry_tests::write_random(&movie, 8 * MIB, 20 + n as u64);
        let put = s.run(&[
            "put",
            movie.to_str().unwrap(),
            "share=media/skew/",
            "--json",
        ]);
        assert!(put.ok, "put with the client at {skew}: {}", put.stderr);
        let back = tempfile::tempdir().unwrap();
        let get = s.run(&[
            "get",
            &format!("share=media/skew/skew{n}.mov"),
            back.path().to_str().unwrap(),
            "--json",
        ]);
        assert!(get.ok, "get with the client at {skew}: {}", get.stderr);
        assert_eq!(
            ferry_tests::blake3_file(&movie),
            ferry_tests::blake3_file(&back.path().join(format!("skew{n}.mov")))
        );
        let created = crate::deliveries::send_json(
            &s,
            &[
                movie.to_str().unwrap(),
                "--to",
                "director@client.example",
                "--dest",
                "share=media/skewed/",
                "--name",
                &format!("skewed{n}"),
            ],
        );
        let job = crate::deliveries::job_of(&created, "download", Some("director@client.example"));
        let into = tempfile::tempdir().unwrap();
        let agent = Running::start(
            &r,
            &[
                "agent",
                "--into",
                into.path().to_str().unwrap(),
                "--poll",
                "1",
            ],
        );
        agent.wait_line(&format!("job {job}: complete"), Duration::from_secs(60));
        assert_eq!(
            ferry_tests::blake3_file(&movie),
            ferry_tests::blake3_file(&into.path().join(format!("skewed{n}/skew{n}.mov")))
        );
        checked.push(skew);
    }
    record_scenario(
        "clock-skew",
        serde_json::json!({
            "scenario": "client clock skewed from the appliance's",
            "injected": format!("libfaketime on every client process: {}", checked.join(" then ")),
            "checked": "put, get and an agent-pulled delivery each way; BLAKE3 equal",
            "faults_survived": checked.len(),
            "bytes_compared": 3 * 8 * MIB * checked.len() as u64,
        }),
    );
}

/// The appliance is killed mid-download and started again: `ferry pull`
/// resumes the job from its checkpoint and ends in success. (It used to
/// end in failure although the job completed: the attempt cut by the
/// restart stayed in its summary as failed.)
#[test]
fn a_pull_cut_by_an_appliance_restart_resumes_and_succeeds() {
    let _serial = heavy_io();
    let mut a = ferry_tests::Appliance::start();
    let sender = a.client(&a.media_user("ann@example.com"));
    let director = a.user("director@client.example", "collaborator");
    ferry_tests::write_random(&a.share.join("reel.mov"), 64 * MIB, 51);
    let run = sender.run(&[
        "send",
        "share=media/reel.mov",
        "--to",
        "director@client.example",
        "--name",
        "reel",
    ]);
    assert!(run.ok, "{}", run.stderr);
    let pull = ferry_tests::CutPull::start(&a.client(&director), &[]);
    a.restart();
    pull.finish_resumed(&a.share.join("reel.mov"));
}
