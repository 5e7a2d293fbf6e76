//! The desktop app against a real ferryd on loopback: its window driven
//! headless through AccessKit with egui_kittest — controls found by their
//! labels, clicked and typed into as a person would — and the same app in a
//! real window under Xvfb, photographed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ferry_desktop::{FerryApp, Tab};
use ferry_tests::{Appliance, write_random};

/// Steps the window until `cond` holds: the app's network work runs on
/// its own threads, so frames are drawn while it answers.
fn until(
    h: &mut Harness<'_, FerryApp>,
    what: &str,
    mut cond: impl FnMut(&Harness<'_, FerryApp>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        h.step();
        if cond(h) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; the window last said {:?}",
            h.state().said()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Clicks the field labelled `label` and types `text` into it.
fn type_into(h: &mut Harness<'_, FerryApp>, label: &str, text: &str) {
    h.get_by_label(label).click();
    h.step();
    h.get_by_label(label).type_text(text);
    h.step();
}

fn has_label(h: &Harness<'_, FerryApp>, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

fn app(credentials: &Path) -> Harness<'static, FerryApp> {
    Harness::builder()
        .with_size(egui::vec2(1000.0, 900.0))
        .build_state(
            |ctx, app: &mut FerryApp| app.show(ctx),
            FerryApp::new(Arc::new(|| {}), credentials.to_path_buf()),
        )
}

/// The review session a coordinator drops in: a proxy movie and five
/// frames with one missing.
fn session(dir: &Path) -> Vec<PathBuf> {
    let mut paths = vec![dir.join("review_v3.mov")];
    write_random(&paths[0], 3 << 20, 1);
    for f in [1001u64, 1002, 1004, 1005, 1006] {
        let p = dir.join(format!("sh010.{f}.exr"));
        write_random(&p, 256 << 10, f);
        paths.push(p);
    }
    paths
}

/// Login with the certificate confirmed, drop a review session, two
/// recipients, priorities, Transmit; both recipients' jobs show in
/// Transfers, one is aborted from the list, the other is not.
#[test]
fn the_desktop_app_transmits_to_two_recipients_and_aborts_one() {
    let a = Appliance::start();
    a.media_user("coordinator@studio.example");
    a.user("director@client.example", "collaborator");
    a.user("editor@client.example", "collaborator");
    let home = tempfile::tempdir().unwrap();
    let mut h = app(&home.path().join("credentials.toml"));
    h.step();

    // Login: the server, then the certificate shown for confirmation
    // before the password leaves this computer.
    type_into(&mut h, "Server", a.url.trim_start_matches("https://"));
    type_into(&mut h, "Email", "coordinator@studio.example");
    type_into(&mut h, "Password", "harbour lights at dawn");
    h.get_by_label("Connect").click();
    until(&mut h, "the certificate to confirm", |h| {
        has_label(h, "Trust and sign in")
    });
    assert!(has_label(&h, &a.fingerprint), "the fingerprint is shown");
    h.get_by_label("Trust and sign in").click();
    until(&mut h, "the signed-in window", |h| {
        has_label(h, "Transfers")
    });
    assert!(home.path().join("credentials.toml").is_file());

    // Drop the session onto the window.
    let src = tempfile::tempdir().unwrap();
    for p in session(src.path()) {
        h.input_mut().dropped_files.push(egui::DroppedFile {
            path: Some(p),
            ..Default::default()
        });
    }
    h.step();
    h.step();
    assert!(has_label(&h, "review_v3.mov"));
    assert!(has_label(&h, "sh010.####.exr"));
    assert!(has_label(&h, "frames 1001-1006 (5 frames"));
    assert!(has_label(&h, "missing 1003"));

    // Two recipients: one from completion, one typed.
    type_into(&mut h, "Recipient email", "director");
    until(&mut h, "a completion from known users", |h| {
        h.query_by_label("director@client.example").is_some()
    });
    h.get_by_label("director@client.example").click();
    h.step();
    type_into(&mut h, "Recipient email", "editor@client.example");
    h.get_by_label("Add recipient").click();
    h.step();
    assert_eq!(
        h.state().form_recipients(),
        ["director@client.example", "editor@client.example"]
    );

    // The movie starts high; the frames go low.
    assert_eq!(h.state().priority_of("review_v3.mov"), Some("High"));
    h.get_by_label("Priority of sh010.####.exr").click();
    h.step();
    h.get_by_label("Low").click();
    h.step();
    assert_eq!(h.state().priority_of("sh010.####.exr"), Some("Low"));

    // Into a folder of the share the app picked (the one writable share).
    type_into(&mut h, "Folder", "review-27");
    type_into(&mut h, "Job name", " for the director");

    h.get_by_label("Transmit").click();
    h.step();
    assert_eq!(h.state().tab, Tab::Transfers);
    until(&mut h, "both recipients' jobs in Transfers", |h| {
        has_label(h, "to director@client.example") && has_label(h, "to editor@client.example")
    });

    // Abort the editor's job from its context menu.
    let editor = h.state().job_of("editor@client.example").unwrap();
    let director = h.state().job_of("director@client.example").unwrap();
    h.get_by_label_contains(&format!("#{editor} "))
        .click_secondary();
    // A menu is measured in its first frame and shown in the next.
    until(&mut h, "the job's context menu", |h| {
        h.query_by_label("Abort")
            .is_some_and(|n| n.rect().width() > 0.0)
    });
    h.step();
    h.get_by_label("Abort").click();

    until(&mut h, "the editor's job aborted", |h| {
        h.state().status_of(editor) == Some(ferry_api::JobStatus::Aborted)
    });
    assert_ne!(
        h.state().status_of(director),
        Some(ferry_api::JobStatus::Aborted)
    );

    // Expanding a job shows its lines: the movie and the sequence.
    h.get_by_label_contains(&format!("#{director} ")).click();
    until(&mut h, "the director's job lines", |h| {
        has_label(h, "review_v3.mov") && has_label(h, "sh010.####.exr")
    });
    // The upload landed intact in the chosen folder.
    until(&mut h, "the upload to finish", |h| {
        h.state().uploads_running() == 0
    });
    let landed = a.share.join("review-27/review_v3.mov");
    assert_eq!(
        ferry_tests::blake3_file(&landed),
        ferry_tests::blake3_file(&src.path().join("review_v3.mov"))
    );
}

/// An X server of the test's own, gone when dropped.
struct Xvfb {
    child: std::process::Child,
    display: String,
}

impl Xvfb {
    fn start() -> Self {
        // Xvfb picks a free display itself and names it on stdout.
        let mut child = std::process::Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
                // Without it Xvfb resets whenever its last client leaves,
                // and a client connecting during the reset (the app, just
                // after the readiness probe below) fails to open the
                // display.
                "-noreset",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("Xvfb (Debian's xvfb)");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let n: u32 = line.trim().parse().expect("Xvfb names its display");
        let x = Xvfb {
            child,
            display: format!(":{n}"),
        };
        // Named is not yet serving: wait until a client can connect (an
        // app started sooner fails with XOpenDisplayFailed).
        ferry_tests::wait_for("Xvfb to accept clients", Duration::from_secs(20), || {
            x.command("xdotool")
                .arg("getdisplaygeometry")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        x
    }

    fn command(&self, program: &str) -> std::process::Command {
        let mut c = std::process::Command::new(program);
        c.env("DISPLAY", &self.display)
            .env_remove("WAYLAND_DISPLAY")
            .env("LIBGL_ALWAYS_SOFTWARE", "1");
        c
    }

    /// The first window named `name`, once it is mapped.
    fn window(&self, name: &str) -> String {
        let mut id = String::new();
        ferry_tests::wait_for(
            &format!("the {name} window"),
            Duration::from_secs(60),
            || {
                let out = self
                    .command("xdotool")
                    .args(["search", "--onlyvisible", "--name", name])
                    .output()
                    .unwrap();
                id = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                !id.is_empty()
            },
        );
        id
    }

    /// The window once it shows more than a blank and two grabs in a row
    /// agree (software GL takes a few frames to settle).
    fn settled(&self, window: &str) -> Vec<u8> {
        let mut last = Vec::new();
        let mut shot = Vec::new();
        ferry_tests::wait_for("the window to settle", Duration::from_secs(60), || {
            shot = self.grab(window);
            let settled = colours(&shot) > 20 && shot == last;
            last = shot.clone();
            settled
        });
        shot
    }

    /// A window as a binary PPM (xwd, then netpbm's xwdtopnm).
    fn grab(&self, window: &str) -> Vec<u8> {
        let xwd = self
            .command("xwd")
            .args(["-id", window, "-silent"])
            .output()
            .unwrap();
        assert!(xwd.status.success(), "xwd failed");
        // Through a file: xwdtopnm writes while it reads, and a pipe both
        // ways would need a thread to keep from filling up.
        let dump = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(dump.path(), &xwd.stdout).unwrap();
        let out = std::process::Command::new("xwdtopnm")
            .stdin(std::fs::File::open(dump.path()).unwrap())
            .stderr(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "xwdtopnm failed");
        out.stdout
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Distinct colours in a binary PPM: a blank or black window has one or two.
fn colours(ppm: &[u8]) -> usize {
    // Header: P6, width, height, maxval, each followed by whitespace.
    let mut fields = 0;
    let mut at = 0;
    while fields < 4 {
        while ppm[at].is_ascii_whitespace() {
            at += 1;
        }
        while !ppm[at].is_ascii_whitespace() {
            at += 1;
        }
        fields += 1;
    }
    let pixels = &ppm[at + 1..];
    let set: std::collections::HashSet<&[u8]> = pixels.chunks_exact(3).collect();
    set.len()
}

fn save_png(ppm: &[u8], name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("desktop-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.png"));
    let mut png = std::process::Command::new("pnmtopng")
        .stdin(std::process::Stdio::piped())
        .stdout(std::fs::File::create(&path).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    png.stdin.take().unwrap().write_all(ppm).unwrap();
    assert!(png.wait().unwrap().success(), "pnmtopng failed");
    path
}

/// The real app in a real window (Xvfb, Mesa's software GL): opened with a
/// review session to send and signed in from stored credentials, it draws
/// the Send view, and after a click on its tab the Transfers view with a
/// delivery waiting for its recipient. Both are photographed into the test output
/// (target/tmp/desktop-screenshots/).
#[test]
fn the_real_window_under_xvfb_shows_send_and_transfers() {
    let a = Appliance::start();
    let key = a.media_user("coordinator@studio.example");
    let sender = a.client(&key);
    a.user("director@client.example", "collaborator");
    let src = tempfile::tempdir().unwrap();
    let files = session(src.path());
    // A delivery already on its way, for the Transfers view.
    let run = sender.run(&[
        "send",
        files[0].to_str().unwrap(),
        "--to",
        "director@client.example",
        "--dest",
        "share=media/dailies/",
        "--name",
        "Dailies 27 Nov",
    ]);
    assert!(run.ok, "{}", run.stderr);

    let x = Xvfb::start();
    let config = tempfile::tempdir().unwrap();
    let mut app = x.command(ferry_tests::bin("ferry-desktop").to_str().unwrap());
    app.args(files.iter().map(|p| p.as_os_str()))
        .env("FERRY_CONFIG", config.path().join("credentials.toml"))
        // A dead address first, as when one of a cluster's nodes is down:
        // the app moves to the next.
        .env("FERRY_SERVER", format!("https://127.0.0.1:1,{}", a.url))
        .env("FERRY_API_KEY", &key)
        .env("FERRY_FINGERPRINT", &a.fingerprint)
        .env("FERRY_USER", "coordinator@studio.example")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = app.spawn().unwrap();
    let window = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| x.window("Ferry")))
    {
        Ok(w) => w,
        Err(e) => {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{:?}; the app said: {}",
                e.downcast_ref::<String>(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    // The app names its view in the title once it has signed in and drawn
    // it (the sign-in form has no such title); the photograph is taken
    // when the window shows more than a blank and two grabs agree, so it
    // is the view the title names, not a frame on the way to it.
    assert_eq!(x.window("Ferry - Send"), window, "the Send view is shown");
    let send = x.settled(&window);
    let send_png = save_png(&send, "send");
    // There is no window manager to give keyboard focus, so the pointer
    // clicks the tab: the second of the bar, right of the name.
    let status = x
        .command("xdotool")
        .args(["mousemove", "--window", &window, "146", "12", "click", "1"])
        .status()
        .unwrap();
    assert!(status.success(), "xdotool");
    // The title names the view: the click reached the Transfers tab.
    assert_eq!(x.window("Ferry - Transfers"), window);
    let transfers = x.settled(&window);
    assert_ne!(
        transfers, send,
        "the Transfers view looks like the Send view"
    );
    let transfers_png = save_png(&transfers, "transfers");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the app exited while being photographed"
    );
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    eprintln!(
        "screenshots: {} and {}",
        send_png.display(),
        transfers_png.display()
    );
}

/// A director receives in the app: Receive runs the agent, which saves the
/// delivery into the chosen folder. Then, from Shares, a file already on
/// the appliance goes to an editor with nothing uploaded again.
#[test]
fn the_desktop_app_receives_and_sends_from_a_share() {
    let a = Appliance::start();
    let coordinator = a.client(&a.media_user("coordinator@studio.example"));
    let director_key = a.media_user("director@client.example");
    a.user("editor@client.example", "collaborator");
    let src = tempfile::tempdir().unwrap();
    let files = session(src.path());
    let mut args = vec!["send"];
    args.extend(files.iter().map(|p| p.to_str().unwrap()));
    args.extend([
        "--to",
        "director@client.example",
        "--dest",
        "share=media/review/",
        "--name",
        "Review 27",
    ]);
    let run = coordinator.run(&args);
    assert!(run.ok, "{}", run.stderr);

    // Signed in from stored credentials, as after `ferry login`.
    let home = tempfile::tempdir().unwrap();
    let credentials = home.path().join("credentials.toml");
    ferry_client::Credentials {
        server: a.url.clone(),
        user: Some("director@client.example".into()),
        api_key: director_key,
        fingerprint: a.fingerprint.parse().unwrap(),
    }
    .save_to(credentials.clone())
    .unwrap();
    let mut h = app(&credentials);
    until(&mut h, "the signed-in window", |h| has_label(h, "Receive"));

    h.get_by_label("Receive").click();
    h.step();
    let into = tempfile::tempdir().unwrap();
    h.get_by_label("Save into").focus();
    h.step();
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.get_by_label("Save into")
        .type_text(into.path().to_str().unwrap());
    h.step();
    h.get_by_label("Start receiving").click();
    until(&mut h, "the delivery received", |h| {
        has_label(h, "received in full")
    });
    assert!(has_label(
        &h,
        "Receiving “Review 27” from coordinator@studio.example"
    ));
    ferry_tests::assert_same_tree(src.path(), &into.path().join("Review 27"));

    // From the share, to someone else: a delivery without an upload.
    h.get_by_label("Shares").click();
    until(&mut h, "the share's folders", |h| {
        h.query_by_label("📁 review").is_some()
    });
    h.get_by_label("📁 review").click();
    until(&mut h, "the folder's files", |h| {
        h.query_by_label("review_v3.mov").is_some()
    });
    h.get_by_label("review_v3.mov").click();
    type_into(&mut h, "Recipient email", "editor@client.example");
    h.get_by_label("Add recipient").click();
    h.step();
    h.get_by_label("Send from the share").click();
    until(&mut h, "the editor's job", |h| {
        h.state().job_of("editor@client.example").is_some()
    });
    let jobs = h.state().jobs();
    let editor = jobs
        .iter()
        .find(|j| j.recipient.as_deref() == Some("editor@client.example"))
        .unwrap();
    assert_eq!(editor.files_total, 1);
    assert!(
        !jobs
            .iter()
            .any(|j| j.kind == ferry_api::JobKind::Upload && j.delivery == editor.delivery),
        "nothing is uploaded again"
    );
}

/// The recipient field's completion: the facility's staff get matching
/// addresses (not their own, not disabled accounts); collaborators are
/// refused, so they cannot list who works with the facility.
#[test]
fn recipient_completion_is_for_staff_and_leaves_out_disabled_accounts() {
    let a = Appliance::start();
    let staff = a.media_user("coordinator@studio.example");
    a.user("director@client.example", "collaborator");
    a.user("gone@client.example", "collaborator");
    a.admin(&["user", "disable", "gone@client.example"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let api = |key: &str| {
        ferry_client::Api::from_credentials(&ferry_client::Credentials {
            server: a.url.clone(),
            user: None,
            api_key: key.to_owned(),
            fingerprint: a.fingerprint.parse().unwrap(),
        })
        .unwrap()
    };
    let list: ferry_api::RecipientList = rt
        .block_on(api(&staff).get("/recipients?q=example"))
        .unwrap();
    assert_eq!(list.emails, ["director@client.example"]);
    let list: ferry_api::RecipientList = rt.block_on(api(&staff).get("/recipients?q=d")).unwrap();
    assert!(list.emails.is_empty(), "one letter completes nothing");
    let collaborator = a.user("editor@client.example", "collaborator");
    let refused = rt
        .block_on(api(&collaborator).get::<ferry_api::RecipientList>("/recipients?q=studio"))
        .unwrap_err();
    assert_eq!(refused.code(), Some("forbidden"), "{refused}");
}
