//! Watch folders: entries written slowly into a watched folder become one
//! delivery each, only once they have settled, across restarts, rescans
//! and renames; and `ferry watch`, the sender's own hot folder.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use ferry_tests::{Appliance, assert_same_tree, wait_for, write_random};
use serde_json::{Value, json};

use crate::rules::Rest;

/// The deliveries made so far, as an admin sees them: id → name. Each
/// call waits a quarter second first, so that polling it stays within the
/// API key's request budget.
fn deliveries(rest: &Rest, admin: &str) -> BTreeSet<(i64, String)> {
    std::thread::sleep(Duration::from_millis(250));
    let jobs = rest.ok("GET", "/api/v1/jobs?all=true&limit=500", admin, None);
    jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| {
            Some((
                j["delivery"].as_i64()?,
                j["delivery_name"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// Appends `chunks` pieces of random bytes to `path`, one a second, and
/// says when it wrote the last.
fn write_slowly(path: &Path, chunks: u64, chunk: usize) -> Instant {
    let mut f = std::fs::File::create(path).unwrap();
    for i in 0..chunks {
        let mut piece = vec![0u8; chunk];
        let mut state = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for b in &mut piece {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        f.write_all(&piece).unwrap();
        f.flush().unwrap();
        if i + 1 < chunks {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    Instant::now()
}

/// The render farm's service account, which watches deliver from: it may
/// read the share and nothing more.
fn render_farm(app: &Appliance) {
    app.admin(&[
        "user",
        "add",
        "render@studio.example",
        "--service",
        "--role",
        "employee",
    ]);
    app.admin(&["share", "grant", "media", "render@studio.example", "--read"]);
}

#[test]
fn a_watch_fed_by_slow_writers_delivers_each_entry_once_after_it_settles_across_restarts() {
    const SETTLE: u64 = 8;
    let mut app = Appliance::start();
    // Made again after each restart: its pooled connection dies with ferryd.
    let mut rest = Rest::new(&app);
    let admin = app.user("admin@studio.example", "admin");
    let employee = app.media_user("ann@studio.example");
    render_farm(&app);
    let dir_key = app.user("dir@client.example", "collaborator");
    let outgoing = app.share.join("outgoing");
    // What lies there before the watch begins is not delivered.
    std::fs::create_dir_all(outgoing.join("last-week")).unwrap();
    write_random(&outgoing.join("last-week/old.mov"), 10_000, 1);

    let watch = json!({
        "folder": "share=media/outgoing",
        "sender": "render@studio.example",
        "to": ["dir@client.example"],
        "priorities": ["*.mp4=high"],
        "settle_secs": SETTLE,
        "name": "{folder} {date}",
    });
    // Only admins; a bad field is named; a missing folder is refused.
    let (status, body) = rest.call("POST", "/api/v1/watches", Some(&employee), Some(&watch));
    assert_eq!(status, 403, "{body}");
    let mut bad = watch.clone();
    bad["settle_secs"] = json!(0);
    let (status, body) = rest.call("POST", "/api/v1/watches", Some(&admin), Some(&bad));
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("settle_secs"), "{body}");
    let mut nowhere = watch.clone();
    nowhere["folder"] = json!("share=media/no-such-folder");
    let (status, body) = rest.call("POST", "/api/v1/watches", Some(&admin), Some(&nowhere));
    assert_eq!(status, 400, "{body}");
    let made = rest.ok("POST", "/api/v1/watches", &admin, Some(&watch));
    assert_eq!(made["origin"], "admin", "{made}");
    let (status, body) = rest.call("POST", "/api/v1/watches", Some(&admin), Some(&watch));
    assert_eq!(status, 409, "one watch per folder: {body}");
    wait_for("the watch to begin", Duration::from_secs(20), || {
        app.log()
            .contains("entries there already are not delivered")
    });

    // The render farm writes a review session over 20 seconds: a movie
    // growing by a piece a second, and a frame a second.
    let reel = outgoing.join("reel1");
    std::fs::create_dir_all(reel.join("shot010")).unwrap();
    let movie = {
        let reel = reel.clone();
        std::thread::spawn(move || write_slowly(&reel.join("cut.mp4"), 20, 256 << 10))
    };
    let frames = {
        let reel = reel.clone();
        std::thread::spawn(move || {
            for f in 1001..1021u64 {
                if f > 1001 {
                    std::thread::sleep(Duration::from_secs(1));
                }
                write_random(&reel.join(format!("shot010/shot010.{f}.exr")), 60_000, f);
            }
            Instant::now()
        })
    };
    // While it is written, nothing is delivered, and the watch counts what
    // waits; halfway through, ferryd restarts.
    let began = Instant::now();
    let mut saw_pending = false;
    let mut restarted = false;
    while !(movie.is_finished() && frames.is_finished()) {
        assert!(
            deliveries(&rest, &admin).is_empty(),
            "delivered while still written"
        );
        if !restarted && began.elapsed() > Duration::from_secs(10) {
            app.restart();
            rest = Rest::new(&app);
            restarted = true;
        }
        if !saw_pending {
            let (status, list) = rest.call("GET", "/api/v1/watches", Some(&admin), None);
            saw_pending = status == 200 && list[0]["pending_files"].as_u64().unwrap_or(0) > 0;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let last_write = movie.join().unwrap().max(frames.join().unwrap());
    assert!(restarted);
    assert!(saw_pending, "the watch never counted pending files");

    // One delivery, no sooner than the settle time after the last write.
    wait_for(
        "the settled entry's delivery",
        Duration::from_secs(SETTLE + 30),
        || !deliveries(&rest, &admin).is_empty(),
    );
    let quiet = last_write.elapsed();
    assert!(
        quiet >= Duration::from_secs(SETTLE),
        "delivered {quiet:?} after the last write, before the settle time"
    );
    let made = deliveries(&rest, &admin);
    assert_eq!(made.len(), 1, "{made:?}");
    let (id, name) = made.iter().next().unwrap().clone();
    let today = String::from_utf8(
        std::process::Command::new("date")
            .arg("+%F")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    assert_eq!(name, format!("reel1 {today}"));
    let (_, manifest) = rest.call(
        "GET",
        &format!("/api/v1/deliveries/{id}/manifest"),
        Some(&admin),
        None,
    );
    assert_eq!(
        manifest["files"].as_array().map(Vec::len),
        Some(21),
        "{manifest}"
    );
    let list = rest.ok("GET", "/api/v1/watches", &admin, None);
    assert_eq!(list[0]["delivered"], 1, "{list}");
    assert_eq!(list[0]["pending_files"], 0, "{list}");

    // The movie is sent first: the watch's priorities hold.
    let jobs = rest.ok("GET", "/api/v1/jobs?all=true", &admin, None);
    let job = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["delivery"] == id)
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let detail = rest.ok("GET", &format!("/api/v1/jobs/{job}"), &admin, None);
    let priority = |path: &str| {
        detail["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["path"] == path)
            .unwrap_or_else(|| panic!("{path} in {detail}"))["priority"]
            .as_u64()
            .unwrap()
    };
    assert!(priority("reel1/cut.mp4") > priority("reel1/shot010/shot010.1001.exr"));

    // The recipient receives it whole, in a folder named as it was.
    let into = tempfile::tempdir().unwrap();
    let pulled = app
        .client(&dir_key)
        .run(&["pull", "--into", into.path().to_str().unwrap()]);
    assert!(pulled.ok, "{}", pulled.stderr);
    assert_same_tree(&reel, &into.path().join(&name).join("reel1"));

    // A restart, rescans and a rename deliver nothing again.
    app.restart();
    let rest = Rest::new(&app);
    std::fs::rename(&reel, outgoing.join("reel1-final")).unwrap();
    wait_for("the rename to be noticed", Duration::from_secs(30), || {
        app.log().contains("\"reel1\" is now \"reel1-final\"")
    });
    std::thread::sleep(Duration::from_secs(SETTLE + 2));
    assert_eq!(deliveries(&rest, &admin).len(), 1);

    // A second entry gets its own delivery; removing the watch stops it.
    std::fs::create_dir(outgoing.join("reel2")).unwrap();
    write_random(&outgoing.join("reel2/cut.mp4"), 50_000, 9);
    wait_for("reel2's delivery", Duration::from_secs(SETTLE + 30), || {
        deliveries(&rest, &admin).len() == 2
    });
    let (status, body) = rest.call(
        "DELETE",
        &format!("/api/v1/watches/{}", list[0]["id"]),
        Some(&admin),
        None,
    );
    assert_eq!(status, 204, "{body}");
    std::fs::create_dir(outgoing.join("reel3")).unwrap();
    write_random(&outgoing.join("reel3/cut.mp4"), 50_000, 10);
    std::thread::sleep(Duration::from_secs(SETTLE + 2));
    let names: Vec<String> = deliveries(&rest, &admin)
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(
        names,
        [format!("reel1 {today}"), format!("reel2 {today}")],
        "last-week is never delivered, reel3 came after the watch went"
    );
    let audit = app.admin(&["audit", "--action", "watch"]);
    assert!(
        audit.contains("watch.add") && audit.contains("watch.remove"),
        "{audit}"
    );
}

#[test]
fn a_watch_in_ferryd_toml_runs_and_cannot_be_removed_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferryd.toml");
    let mut app = Appliance::start();
    let admin = app.user("admin@studio.example", "admin");
    app.user("dir@client.example", "collaborator");
    render_farm(&app);
    std::fs::create_dir_all(app.share.join("drop")).unwrap();
    std::fs::write(
        &config,
        "[deliveries]\nwatch_rescan_secs = 2\n\n[[watch]]\nfolder = \"share=media/drop\"\n\
         sender = \"render@studio.example\"\nto = [\"dir@client.example\"]\nsettle_secs = 2\n\
         mode = \"file\"\nname = \"drop {file}\"\n",
    )
    .unwrap();
    app.setup
        .args
        .extend(["--config".to_owned(), config.display().to_string()]);
    app.restart();
    let rest = Rest::new(&app);
    let list = rest.ok("GET", "/api/v1/watches", &admin, None);
    assert_eq!(list[0]["origin"], "config", "{list}");
    assert_eq!(list[0]["mode"], "file", "{list}");
    let (status, body) = rest.call(
        "DELETE",
        &format!("/api/v1/watches/{}", list[0]["id"]),
        Some(&admin),
        None,
    );
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("ferryd.toml"), "{body}");
    wait_for("the watch to begin", Duration::from_secs(20), || {
        app.log()
            .contains("entries there already are not delivered")
    });
    // Each file is a delivery; a part file waits for its final name.
    write_random(&app.share.join("drop/notes.pdf"), 5_000, 1);
    write_random(&app.share.join("drop/cut.mov.part"), 5_000, 2);
    wait_for("notes.pdf's delivery", Duration::from_secs(30), || {
        deliveries(&rest, &admin)
            .iter()
            .any(|(_, n)| n == "drop notes.pdf")
    });
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        deliveries(&rest, &admin).len(),
        1,
        "a part file is not delivered"
    );
    std::fs::rename(
        app.share.join("drop/cut.mov.part"),
        app.share.join("drop/cut.mov"),
    )
    .unwrap();
    wait_for("cut.mov's delivery", Duration::from_secs(30), || {
        deliveries(&rest, &admin).len() == 2
    });
}

#[test]
fn ferry_watch_delivers_a_folder_dropped_into_a_local_directory_and_resumes_after_a_restart() {
    let app = Appliance::start();
    let rest = Rest::new(&app);
    let admin = app.user("admin@studio.example", "admin");
    let ann = app.client(&app.media_user("ann@studio.example"));
    let dir_key = app.user("dir@client.example", "collaborator");
    let hot = tempfile::tempdir().unwrap();
    std::fs::create_dir(hot.path().join("old")).unwrap();
    write_random(&hot.path().join("old/notes.txt"), 1_000, 1);
    let args = [
        "watch",
        hot.path().to_str().unwrap(),
        "--to",
        "dir@client.example",
        "--dest",
        "share=media/hot",
        "--settle",
        "2s",
        "--priority",
        "*.mp4=high",
        "--name",
        "{folder} from ann",
        // Slow enough that the upload is cut in the middle.
        "--rate",
        "40M",
    ];
    let mut watching = ann.spawn(&args);
    let state = hot.path().join(".ferry-watch.json");
    wait_for("the hot folder to begin", Duration::from_secs(20), || {
        state.exists()
    });
    // A folder is dropped the usual way: written under a hidden name,
    // then renamed into place.
    let staging = hot.path().join(".reel1.incoming");
    std::fs::create_dir_all(staging.join("shot010")).unwrap();
    write_random(&staging.join("cut.mp4"), 120 << 20, 2);
    for f in 1001..=1005u64 {
        write_random(
            &staging.join(format!("shot010/shot010.{f}.exr")),
            100_000,
            f,
        );
    }
    std::fs::rename(&staging, hot.path().join("reel1")).unwrap();

    let upload = |rest: &Rest| -> Option<Value> {
        std::thread::sleep(Duration::from_millis(250));
        let jobs = rest.ok("GET", "/api/v1/jobs?all=true", &admin, None);
        jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["kind"] == "upload")
            .cloned()
    };
    // A delivery's upload counts files as they complete; the running
    // session's own count says how far into the movie it is.
    wait_for("a quarter of the upload", Duration::from_secs(60), || {
        std::thread::sleep(Duration::from_millis(250));
        let status = rest.ok("GET", "/api/v1/status", &admin, None);
        status["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["bytes_transferred"].as_u64().unwrap_or(0) > 30 << 20)
    });
    // The sender's computer restarts in the middle of the upload.
    let _ = watching.kill();
    let _ = watching.wait();
    let cut = upload(&rest).unwrap();
    assert_ne!(
        cut["status"], "done",
        "the upload ended before the restart: {cut}"
    );
    let mut watching = ann.spawn(&args);
    wait_for("the upload to finish", Duration::from_secs(120), || {
        upload(&rest).is_some_and(|j| j["status"] == "done")
    });
    let _ = watching.kill();
    let _ = watching.wait();
    let done = upload(&rest).unwrap();
    assert!(
        done["bytes_skipped"].as_u64().unwrap_or(0) > 0,
        "the upload started over: {done}"
    );
    let made = deliveries(&rest, &admin);
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made.iter().next().unwrap().1, "reel1 from ann");
    let into = tempfile::tempdir().unwrap();
    let pulled = app
        .client(&dir_key)
        .run(&["pull", "--into", into.path().to_str().unwrap()]);
    assert!(pulled.ok, "{}", pulled.stderr);
    assert_same_tree(
        &hot.path().join("reel1"),
        &into.path().join("reel1 from ann").join("reel1"),
    );
}
