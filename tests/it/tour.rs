//! The README's five-minute tour, run as the README writes it, so that the
//! README cannot drift from the code.
//!
//! The commands are read from README.md's tour (its indented code lines)
//! and run with `sh` in a scratch folder whose `target/release` is this
//! build's binaries, as a reader at the repository's root would. The test
//! fills in what the README leaves to the reader: the address the
//! appliance printed (the README's `https://127.0.0.1:8443`), a scratch
//! folder for `/srv/media`, the files to send, the job number of
//! `ferry job rate 42`, and the answers a person types (the new password
//! chosen in the browser at step 1, confirming the fingerprint at
//! `ferry login`). Everything else runs verbatim, in order.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_tests::{blake3_file, list_files, unique_loopback, wait_for, write_random};
use reqwest::StatusCode;

use crate::webadmin::Browser;

const README_ADDRESS: &str = "https://127.0.0.1:8443";
const NEW_ADMIN_PASSWORD: &str = "the tour's own admin password";

/// The tour's commands, in order, continuation lines joined.
fn tour_commands() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let start = readme.find("## A five-minute tour").expect("the tour");
    let rest = &readme[start + 3..];
    let tour = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let mut commands = Vec::new();
    let mut pending = String::new();
    for line in tour.lines() {
        // Code inside the numbered steps is indented by seven spaces.
        let Some(code) = line.strip_prefix("       ") else {
            continue;
        };
        let code = code.trim();
        if code.is_empty() {
            continue;
        }
        match code.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(code);
                commands.push(std::mem::take(&mut pending));
            }
        }
    }
    commands
}

struct Tour {
    dir: PathBuf,
    url: String,
    fingerprint: String,
    one_time: String,
    ferryd: Child,
}

impl Drop for Tour {
    fn drop(&mut self) {
        let _ = self.ferryd.kill();
        let _ = self.ferryd.wait();
    }
}

/// Step 1: `ferryd` on its embedded defaults, in the scratch folder, on an
/// address of the test's own.
fn start(dir: &Path) -> Tour {
    let listen = format!("{}:0", unique_loopback());
    let mut ferryd = Command::new(dir.join("target/release/ferryd"))
        .args(["--listen", &listen])
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("ferryd.log")).unwrap())
        .spawn()
        .expect("ferryd");
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let out = ferryd.stdout.take().unwrap();
    let seen = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            seen.lock().unwrap().push(line);
        }
    });
    let field = |prefix: &str| {
        lines
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| l.strip_prefix(prefix).map(|v| v.trim().to_owned()))
    };
    wait_for("ferryd's banner", Duration::from_secs(30), || {
        field("ferryd first start: log in as admin@localhost with the one-time password ").is_some()
    });
    Tour {
        url: field("ferryd listening on ")
            .unwrap()
            .trim_end_matches('/')
            .to_owned(),
        fingerprint: field("ferryd key SHA-256 ").unwrap(),
        one_time: field(
            "ferryd first start: log in as admin@localhost with the one-time password ",
        )
        .unwrap(),
        dir: dir.to_owned(),
        ferryd,
    }
}

/// Runs one line of the tour with `sh` as a reader would, from the
/// scratch folder, with `home` as their home.
fn sh(dir: &Path, home: &Path, command: &str, stdin: &str) -> (bool, String, String) {
    let mut child = Command::new("sh")
        .args(["-c", command])
        .current_dir(dir)
        .env("HOME", home)
        .env_remove("FERRY_SERVER")
        .env_remove("FERRY_API_KEY")
        .env_remove("FERRY_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_readme_tour_runs_as_written() {
    let commands = tour_commands();
    assert!(commands.len() >= 10, "the tour's commands: {commands:#?}");
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    std::fs::create_dir_all(dir.join("target")).unwrap();
    let bins = ferry_tests::bin("ferryd").parent().unwrap().to_owned();
    std::os::unix::fs::symlink(&bins, dir.join("target/release")).unwrap();
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    // What the tour sends: a proxy and its frames.
    write_random(&dir.join("shot010.mp4"), 3 << 20, 81);
    for f in 1001..=1004 {
        write_random(&dir.join(format!("shot010/shot010.{f}.exr")), 1 << 20, f);
    }

    let tour = start(dir);
    // Step 1's browser part: log in with the one-time password and choose
    // one's own.
    let mut browser = Browser::at(&tour.url, &tour.fingerprint);
    browser.login("admin@localhost", &tour.one_time);
    let csrf = browser.csrf("/setup");
    let page = browser.post(
        "/setup",
        &[
            ("csrf", &csrf),
            ("password", NEW_ADMIN_PASSWORD),
            ("again", NEW_ADMIN_PASSWORD),
        ],
    );
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);

    let media = dir.join("srv/media");
    let mut ran = Vec::new();
    for command in &commands {
        let mut line = command
            .replace("/srv/media", media.to_str().unwrap())
            .replace(README_ADDRESS, &tour.url);
        let mut stdin = String::new();
        if line.contains("ferry login") {
            // The reader compares the fingerprint and types the password.
            line.push_str(&format!(
                " --fingerprint {} --password-stdin",
                tour.fingerprint
            ));
            stdin = format!("{NEW_ADMIN_PASSWORD}\n");
        }
        if line.contains("ferry agent") {
            receive_as_the_recipient(&tour, &line);
            ran.push(line);
            continue;
        }
        if line.contains("ferry job rate 42") {
            let (ok, out, err) = sh(dir, &home, "target/release/ferry jobs --json", "");
            assert!(ok, "{err}");
            let jobs: serde_json::Value = serde_json::from_str(&out).unwrap();
            let id = jobs
                .as_array()
                .unwrap()
                .iter()
                .find(|j| j["kind"] == "download")
                .expect("a delivery's job")["id"]
                .to_string();
            line = line.replace("job rate 42", &format!("job rate {id}"));
        }
        let (ok, out, err) = sh(dir, &home, &line, &stdin);
        assert!(ok, "the tour's `{line}` failed:\n{out}\n{err}");
        ran.push(line);
    }
    println!("ran the tour's {} commands:\n{}", ran.len(), ran.join("\n"));

    // What the steps promised: the put landed in the share, the get
    // brought it back.
    let landed = media.join("theproject/review-2020-10-07/shot010.mp4");
    assert_eq!(blake3_file(&dir.join("shot010.mp4")), blake3_file(&landed));
    let got = home.join("Downloads/review-2020-10-07/shot010.mp4");
    assert_eq!(blake3_file(&dir.join("shot010.mp4")), blake3_file(&got));
    for f in 1001..=1004 {
        let name = format!("shot010/shot010.{f}.exr");
        assert_eq!(
            blake3_file(&dir.join(&name)),
            blake3_file(&home.join("Downloads/review-2020-10-07").join(&name))
        );
    }
}

/// Step 6's agent, as the recipient runs it: with no mail server, the
/// README's way in (an invitation link from `ferryd admin user
/// invite-link`, a password, `ferry login`), then the agent as written.
fn receive_as_the_recipient(tour: &Tour, agent_line: &str) {
    let dir = &tour.dir;
    let home = dir.join("director");
    std::fs::create_dir_all(&home).unwrap();
    let (ok, link, err) = sh(
        dir,
        &home,
        "target/release/ferryd admin user invite-link director@example.com",
        "",
    );
    assert!(ok, "{err}");
    let link = link.trim();
    assert!(link.contains("/invite/"), "{link}");
    let path = &link[link.find("/invite/").unwrap()..];
    let mut guest = Browser::at(&tour.url, &tour.fingerprint);
    let page = guest.post(
        path,
        &[
            ("password", "the director's own password"),
            ("again", "the director's own password"),
        ],
    );
    // Set, signed in, and on to their deliveries in the browser.
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let (ok, _, err) = sh(
        dir,
        &home,
        &format!(
            "target/release/ferry login {} --email director@example.com --fingerprint {} --password-stdin",
            tour.url, tour.fingerprint
        ),
        "the director's own password\n",
    );
    assert!(ok, "{err}");
    let mut agent = Command::new("sh")
        .args(["-c", &format!("exec {agent_line}")])
        .current_dir(dir)
        .env("HOME", &home)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deliveries = home.join("Deliveries");
    let arrived = || {
        let files = list_files(&deliveries);
        files.iter().any(|p| p.ends_with("shot010.mp4"))
            && files
                .iter()
                .filter(|p| p.to_string_lossy().ends_with(".exr"))
                .count()
                == 4
    };
    wait_for(
        "the agent to receive the delivery",
        Duration::from_secs(60),
        arrived,
    );
    agent.kill().unwrap();
    agent.wait().unwrap();
    let mp4 = list_files(&deliveries)
        .into_iter()
        .find(|p| p.ends_with("shot010.mp4"))
        .unwrap();
    assert_eq!(
        blake3_file(&dir.join("shot010.mp4")),
        blake3_file(&deliveries.join(mp4))
    );
}
