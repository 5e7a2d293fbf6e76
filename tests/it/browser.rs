//! The web admin in a real browser: Debian's Chromium, headless, driven
//! through chromedriver (WebDriver) against a running ferryd. One walk
//! through an admin's day: a failed login, first-run set-up, shares, an
//! invitation, a transfer watched and aborted, and a forged cross-site
//! form. A screenshot of each page lands in
//! `target/tmp/webadmin-screenshots/`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use ferry_tests::{Appliance, write_random};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";

pub(crate) struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_chromedriver() -> (Driver, String) {
    start_chromedriver_at_home(None)
}

/// chromedriver, with `HOME` set for the Chromium it starts: Chromium on
/// Linux keeps its trusted certificates in `$HOME/.pki/nssdb`.
pub(crate) fn start_chromedriver_at_home(home: Option<&std::path::Path>) -> (Driver, String) {
    let port = free_port();
    let mut command = Command::new(CHROMEDRIVER);
    if let Some(home) = home {
        command.env("HOME", home);
    }
    let child = command
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (tests/run installs chromium-driver)");
    let driver = Driver(child);
    ferry_tests::wait_for("chromedriver to listen", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (driver, format!("http://127.0.0.1:{port}"))
}

async fn browser(driver: &str) -> Client {
    browser_saving_to(driver, None).await
}

/// A Chromium session; downloads land in `downloads` without asking.
async fn browser_saving_to(driver: &str, downloads: Option<&std::path::Path>) -> Client {
    let prefs = downloads.map_or(serde_json::json!({}), |d| {
        serde_json::json!({
            "download.default_directory": d,
            "download.prompt_for_download": false,
        })
    });
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "prefs": prefs,
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                // The appliance's certificate is self-signed; the tests pin it
                // elsewhere (webadmin.rs), the browser just has to get in.
                "--ignore-certificate-errors", "--window-size=1360,1000",
            ],
        }),
    );
    caps.insert("acceptInsecureCerts".into(), serde_json::Value::Bool(true));
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("a Chromium session")
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("webadmin-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// Polls `cond` until it holds.
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Reloads the Transfers page until a running job shows progress; its id.
async fn running_job_with_progress(c: &Client, base: &str, put: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if put.try_wait().unwrap().is_some() {
            let mut err = String::new();
            if let Some(mut e) = put.stderr.take() {
                use std::io::Read as _;
                let _ = e.read_to_string(&mut err);
            }
            panic!("the transfer ended before it was seen: {err}");
        }
        c.goto(&format!("{base}/transfers")).await.unwrap();
        if let Ok(row) = c
            .find(Locator::Css("#jobs tr[data-status='running']"))
            .await
        {
            let bar = row.find(Locator::Css("progress")).await.unwrap();
            let value = bar.attr("value").await.unwrap().unwrap_or_default();
            if value.parse::<u64>().unwrap_or(0) > 0 {
                return row.attr("data-job").await.unwrap().unwrap_or_default();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no running transfer with progress on the Transfers page"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn fill(c: &Client, form: &str, fields: &[(&str, &str)]) {
    let f = c.form(Locator::Css(form)).await.unwrap();
    for (name, value) in fields {
        f.set_by_name(name, value).await.unwrap();
    }
    mark_page(c).await;
    f.submit().await.unwrap();
    next_page(c, form).await;
}

/// Marks this document, so the next page is known when it has loaded.
async fn mark_page(c: &Client) {
    c.execute("window.ferryOld = true;", vec![]).await.unwrap();
}

/// Waits until a new document (not the marked one) has loaded.
async fn next_page(c: &Client, after: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let loaded = c
            .execute(
                "return window.ferryOld === undefined && document.readyState === 'complete';",
                vec![],
            )
            .await
            .is_ok_and(|v| v.as_bool() == Some(true));
        if loaded {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the page after {after} did not load"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Types `keys` into the element at `css` (for a file input: the paths).
async fn type_into(c: &Client, css: &str, keys: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .send_keys(keys)
        .await
        .unwrap();
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[test]
#[ignore = "needs Chromium and chromedriver; tests/run installs them"]
fn an_admin_works_through_the_web_admin_in_chromium() {
    let _serial = ferry_tests::heavy_io();
    in_chromium(walk());
}

async fn walk() {
    let app = Appliance::start();
    let one_time = app.first_password().expect("one-time password");
    let (_driver, url) = start_chromedriver();
    let c = browser(&url).await;
    let base = app.url.clone();

    // A failed login says so.
    c.goto(&format!("{base}/login")).await.unwrap();
    fill(
        &c,
        "form",
        &[
            ("email", "admin@localhost"),
            ("password", "not the password"),
        ],
    )
    .await;
    assert_eq!(text(&c, ".notice.error").await, "Wrong email or password.");
    shot(&c, "login-failed").await;

    // First run: the one-time password, then set-up.
    fill(
        &c,
        "form",
        &[("email", "admin@localhost"), ("password", &one_time)],
    )
    .await;
    assert!(c.current_url().await.unwrap().path().ends_with("/setup"));
    shot(&c, "setup").await;
    fill(
        &c,
        "form.stack",
        &[
            ("password", "a long admin password"),
            ("again", "a long admin password"),
            // Where clients reach it: here, its own loopback address.
            ("public_address", &app.ip.to_string()),
        ],
    )
    .await;
    assert_eq!(c.current_url().await.unwrap().path(), "/");
    assert!(text(&c, ".notice.done").await.contains("Welcome"));

    // A root share and a share inside it.
    let volume = app.dir.path().join("volume");
    std::fs::create_dir_all(volume.join("incoming")).unwrap();
    std::fs::write(volume.join("incoming/readme.txt"), b"hello").unwrap();
    c.goto(&format!("{base}/shares")).await.unwrap();
    fill(
        &c,
        "form#add-root",
        &[("name", "volume"), ("path", volume.to_str().unwrap())],
    )
    .await;
    assert_eq!(text(&c, ".notice.done").await, "Root share added.");
    assert!(text(&c, "table#roots").await.contains("volume"));
    fill(
        &c,
        "form#add-share",
        &[
            ("name", "theproject"),
            ("root", "volume"),
            ("folder", "projects/theproject"),
        ],
    )
    .await;
    assert_eq!(text(&c, ".notice.done").await, "Share added.");
    assert!(text(&c, "table#shares").await.contains("theproject"));
    assert!(
        volume.join("projects/theproject").is_dir(),
        "the folder was made on disk"
    );
    shot(&c, "shares").await;
    c.goto(&format!("{base}/shares/browse/volume?path=incoming"))
        .await
        .unwrap();
    assert!(text(&c, "table.files").await.contains("readme.txt"));
    shot(&c, "share-browse").await;

    // Invite someone; they appear in the list.
    c.goto(&format!("{base}/users")).await.unwrap();
    fill(
        &c,
        "form#invite",
        &[
            ("email", "director@example.com"),
            ("name", "The Director"),
            ("role", "collaborator"),
        ],
    )
    .await;
    assert_eq!(text(&c, ".notice.done").await, "User invited.");
    let row = text(&c, "#users tr[data-user='director@example.com']").await;
    assert!(row.contains("invited"), "{row}");
    shot(&c, "users").await;

    // A transfer: it appears on the Transfers page with progress, its
    // files show when it is expanded, and it is aborted.
    let key = app.media_user("ann@example.com");
    let src = app.dir.path().join("dailies.mov");
    write_random(&src, 400 << 20, 7);
    // A delivery to the invited director, uploaded at a modest rate so it
    // is still running when the admin looks.
    let mut put = app.client(&key).spawn(&[
        "send",
        src.to_str().unwrap(),
        "--to",
        "director@example.com",
        "--dest",
        "share=media/review",
        "--name",
        "dailies-0412",
        "--rate",
        "40M",
    ]);
    let job = running_job_with_progress(&c, &base, &mut put).await;
    shot(&c, "transfers-running").await;
    c.goto(&format!("{base}/")).await.unwrap();
    eventually("the dashboard's live row", Duration::from_secs(10), || {
        let c = &c;
        let job = &job;
        async move {
            c.find(Locator::Css(&format!("#live tr[data-job='{job}']")))
                .await
                .is_ok()
        }
    })
    .await;
    shot(&c, "dashboard").await;
    c.goto(&format!("{base}/transfers/{job}")).await.unwrap();
    assert!(text(&c, "table.files").await.contains("dailies.mov"));
    shot(&c, "transfer-detail").await;
    c.goto(&format!("{base}/transfers")).await.unwrap();
    let row = c
        .find(Locator::Css(&format!("#jobs tr[data-job='{job}']")))
        .await
        .unwrap();
    mark_page(&c).await;
    row.find(Locator::XPath(".//form[input[@value='abort']]/button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    next_page(&c, "Abort").await;
    assert_eq!(text(&c, ".notice.done").await, "Job aborted.");
    let status = c
        .find(Locator::Css(&format!("#jobs tr[data-job='{job}']")))
        .await
        .unwrap()
        .attr("data-status")
        .await
        .unwrap();
    assert_eq!(status.as_deref(), Some("aborted"));
    shot(&c, "transfers-aborted").await;
    let out = put.wait().unwrap();
    assert!(!out.success(), "the client learns its job was aborted");

    // The other pages render.
    for (path, name) in [("/settings", "settings"), ("/audit", "audit")] {
        c.goto(&format!("{base}{path}")).await.unwrap();
        assert!(c.find(Locator::Css("main h1")).await.is_ok());
        shot(&c, name).await;
    }
    assert!(text(&c, "table#audit").await.contains("job.abort"));

    // A form on another site that posts to the appliance is refused, and
    // nothing is made.
    let forged = format!(
        "data:text/html,<form method=post action='{base}/shares/root'>\
         <input name=name value=forged><input name=path value=/tmp></form>\
         <script>document.forms[0].submit()</script>"
    );
    c.goto(&forged).await.unwrap();
    eventually(
        "the refusal of the forged form",
        Duration::from_secs(10),
        || {
            let c = &c;
            async move { c.source().await.is_ok_and(|s| s.contains("another site")) }
        },
    )
    .await;
    shot(&c, "cross-site-refused").await;
    assert!(!app.admin(&["share", "list"]).contains("forged"));
    c.close().await.unwrap();
}

/// An invited collaborator in Chromium: the invitation from the real SMTP
/// server's mailbox, a password, the delivery, then one file and the
/// whole zip through the browser's own download manager into a download
/// folder, both the very bytes sent (the zip through `unzip -t` first).
#[test]
#[ignore = "needs Chromium and chromedriver; tests/run installs them"]
fn an_invited_collaborator_downloads_a_delivery_in_chromium() {
    let _serial = ferry_tests::heavy_io();
    in_chromium(collaborator());
}

async fn collaborator() {
    use crate::mail::{Smtp, find, mailing_appliance};
    let dir = tempfile::tempdir().unwrap();
    let mut smtp = Smtp::reserve(dir.path());
    smtp.start();
    let app = mailing_appliance(&smtp, "Ferry <ferry@example.com>", &[]);
    let ann = app.media_user("ann@example.com");
    let src = dir.path().join("review-0501");
    std::fs::create_dir_all(src.join("shot030")).unwrap();
    write_random(&src.join("shot030.mp4"), 6 << 20, 5);
    for f in 1..=12 {
        write_random(&src.join(format!("shot030/shot030.{f:04}.exr")), 200_000, f);
    }
    let send = app.client(&ann).run(&[
        "send",
        src.join("shot030.mp4").to_str().unwrap(),
        src.join("shot030").to_str().unwrap(),
        "--to",
        "editor@client.example",
        "--dest",
        "share=media/review-0501",
        "--name",
        "review-0501",
    ]);
    assert!(send.ok, "{}", send.stderr);
    let mails = smtp.wait_for(2, Duration::from_secs(60));
    let invitation = find(
        &mails,
        "editor@client.example",
        "ann@example.com invited you to Ferry",
    );
    assert_eq!(invitation.len(), 1, "{mails:#?}");
    let link = invitation[0].link("/invite/");

    let downloads = dir.path().join("Downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let (_driver, url) = start_chromedriver();
    let c = browser_saving_to(&url, Some(&downloads)).await;
    c.goto(&link).await.unwrap();
    shot(&c, "invitation").await;
    fill(
        &c,
        "form.stack",
        &[
            ("password", "an editor's own password"),
            ("again", "an editor's own password"),
        ],
    )
    .await;
    // Signed in, on the delivery.
    let here = c.current_url().await.unwrap();
    assert!(here.path().starts_with("/deliveries/"), "{here}");
    assert_eq!(text(&c, "h1").await, "review-0501");
    assert!(
        text(&c, "table.files")
            .await
            .contains("shot030/shot030.####.exr")
    );
    shot(&c, "delivery").await;

    // One file, through the download manager.
    let saved = |name: &str| {
        let p = downloads.join(name);
        // Chromium writes `.crdownload` and renames when done.
        (p.exists() && !downloads.join(format!("{name}.crdownload")).exists()).then_some(p)
    };
    c.find(Locator::Css("details summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Css("a[href$='/files/shot030.mp4']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let movie = loop {
        if let Some(p) = saved("shot030.mp4") {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the movie was not saved: {:?}",
            std::fs::read_dir(&downloads)
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    wait_for_size(&movie, 6 << 20).await;
    assert_eq!(
        ferry_tests::blake3_file(&movie),
        ferry_tests::blake3_file(&src.join("shot030.mp4"))
    );

    // Everything, as one zip.
    c.find(Locator::Css("a[href$='/all.zip']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let zip = loop {
        if let Some(p) = saved("review-0501.zip") {
            break p;
        }
        assert!(Instant::now() < deadline, "the zip was not saved");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let test = Command::new("unzip").arg("-t").arg(&zip).output().unwrap();
    assert!(
        test.status.success(),
        "{}",
        String::from_utf8_lossy(&test.stdout)
    );
    let out = dir.path().join("unzipped");
    let x = Command::new("unzip")
        .arg("-q")
        .arg(&zip)
        .arg("-d")
        .arg(&out)
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", String::from_utf8_lossy(&x.stderr));
    ferry_tests::assert_same_tree(&src, &out);

    // Every byte served: the page says it has all reached them.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        c.goto(here.as_str()).await.unwrap();
        if text(&c, "dl.facts").await.contains("100 %") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the delivery never showed as received"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    shot(&c, "delivery-received").await;
    c.close().await.unwrap();
}

/// Waits until a saved file has its whole size.
async fn wait_for_size(p: &std::path::Path, len: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) != len {
        assert!(
            Instant::now() < deadline,
            "{} never reached {len} bytes",
            p.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sending from the page in Chromium: an mp4 and a 200-frame folder to
/// two recipients, uploaded with tus; ferryd is restarted in the middle of
/// the movie's upload and the page carries on where it stopped. The
/// recipients' jobs appear, the files are the very bytes chosen, and one
/// recipient downloads the delivery as a zip.
#[test]
#[ignore = "needs Chromium and chromedriver; tests/run installs them"]
fn a_sender_transmits_from_the_page_through_a_restart_in_chromium() {
    let _serial = ferry_tests::heavy_io();
    let (app, dir) = in_chromium(sender());
    recipients_receive(&app, dir.path());
}

async fn sender() -> (Appliance, tempfile::TempDir) {
    let mut app = Appliance::start();
    app.media_user("ann@example.com");
    app.user("dir@client.example", "collaborator");
    app.user("ed@client.example", "collaborator");
    let dir = tempfile::tempdir().unwrap();
    let movie = dir.path().join("cut.mp4");
    write_random(&movie, 400 << 20, 31);
    let frames = dir.path().join("shot040");
    std::fs::create_dir_all(&frames).unwrap();
    for f in 1..=200 {
        write_random(&frames.join(format!("shot040.{f:04}.exr")), 20_000, f);
    }

    let (_driver, url) = start_chromedriver();
    let c = browser(&url).await;
    let base = app.url.clone();
    sign_in_as_ann(&c, &base).await;
    c.goto(&format!("{base}/send")).await.unwrap();
    type_into(&c, "#files", movie.to_str().unwrap()).await;
    type_into(&c, "#folder", frames.to_str().unwrap()).await;
    // The page lists what the pickers hand it once their change events
    // have run.
    eventually(
        "the movie and the 200 frames listed",
        Duration::from_secs(30),
        || async {
            c.find_all(Locator::Css("#chosen tbody tr"))
                .await
                .is_ok_and(|rows| rows.len() == 201)
        },
    )
    .await;
    let movie_row = c
        .find(Locator::Css("#chosen tr[data-path='cut.mp4'] select"))
        .await
        .unwrap();
    assert_eq!(
        movie_row.prop("value").await.unwrap().as_deref(),
        Some("999"),
        ".mp4 starts High"
    );
    let frame_row = c
        .find(Locator::Css(
            "#chosen tr[data-path='shot040/shot040.0001.exr'] select",
        ))
        .await
        .unwrap();
    assert_eq!(
        frame_row.prop("value").await.unwrap().as_deref(),
        Some("500")
    );
    type_into(&c, "#recipients", "dir@client.example, ed@client.example").await;
    type_into(&c, "#dest", "share=media/review-0700").await;
    type_into(&c, "#name", "review-0700").await;
    shot(&c, "send").await;
    transmit(&c).await;

    // The movie's part file grows: ferryd restarts under it.
    let part = app.share.join("review-0700/cut.mp4.ferry-part");
    wait_for_size_at_least(&part, 16 << 20).await;
    app.restart();
    let at_restart = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    page_finishes(&c).await;
    shot(&c, "sent").await;
    assert!(text(&c, "#status").await.contains("Transmitted"));
    assert!(
        at_restart < 400 << 20,
        "restarted mid-upload ({at_restart} bytes in)"
    );
    let landed = app.share.join("review-0700");
    assert_eq!(
        ferry_tests::blake3_file(&landed.join("cut.mp4")),
        ferry_tests::blake3_file(&movie)
    );
    ferry_tests::assert_same_tree(&frames, &landed.join("shot040"));
    assert!(!part.exists());
    // (Whether the page asked where to go on depends on timing: a restart
    // that falls between two pieces needs no question. The closed-tab
    // test below checks the resumption itself.)
    assert!(
        app.log().contains("uploaded from a browser"),
        "the appliance logged the browser's uploads"
    );
    c.close().await.unwrap();
    (app, dir)
}

/// A tab closed mid-upload: opening the page again, the sender is told the
/// delivery was interrupted; choosing the same file continues it in the
/// same delivery, from the byte the appliance had, not from zero.
#[test]
#[ignore = "needs Chromium and chromedriver; tests/run installs them"]
fn a_closed_tab_resumes_its_upload_when_the_page_is_opened_again() {
    let _serial = ferry_tests::heavy_io();
    in_chromium(closed_tab());
}

/// Runs a Chromium scenario on a runtime of its own. Callers hold the
/// heavy-IO turn: Chromium takes both cores for a moment, and
/// timing-sensitive neighbours (the WAN test) must not share them with it.
fn in_chromium<T>(scenario: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario)
}

async fn sign_in_as_ann(c: &Client, base: &str) {
    c.goto(&format!("{base}/login")).await.unwrap();
    fill(
        c,
        "form",
        &[
            ("email", "ann@example.com"),
            ("password", "harbour lights at dawn"),
        ],
    )
    .await;
}

async fn transmit(c: &Client) {
    c.find(Locator::Css("#transmit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Waits for the send page to say the delivery is transmitted.
async fn page_finishes(c: &Client) {
    eventually(
        "the page to finish the delivery",
        Duration::from_secs(180),
        || async {
            c.execute(
                "return document.getElementById('send').dataset.done === 'true';",
                vec![],
            )
            .await
            .is_ok_and(|v| v.as_bool() == Some(true))
        },
    )
    .await;
}

/// The send page with `movie` chosen and the form filled in.
async fn choose(c: &Client, base: &str, movie: &std::path::Path) {
    c.goto(&format!("{base}/send")).await.unwrap();
    type_into(c, "#files", movie.to_str().unwrap()).await;
    eventually("the movie listed", Duration::from_secs(30), || async {
        c.find_all(Locator::Css("#chosen tbody tr"))
            .await
            .is_ok_and(|rows| rows.len() == 1)
    })
    .await;
    type_into(c, "#recipients", "dir@client.example").await;
    type_into(c, "#dest", "share=media/dailies-0800").await;
    type_into(c, "#name", "dailies-0800").await;
}

async fn closed_tab() {
    let app = Appliance::start();
    app.media_user("ann@example.com");
    app.user("dir@client.example", "collaborator");
    let dir = tempfile::tempdir().unwrap();
    let movie = dir.path().join("dailies.mov");
    write_random(&movie, 300 << 20, 41);
    let (_driver, url) = start_chromedriver();
    let c = browser(&url).await;
    let base = app.url.clone();
    sign_in_as_ann(&c, &base).await;
    choose(&c, &base, &movie).await;
    transmit(&c).await;
    let part = app.share.join("dailies-0800/dailies.mov.ferry-part");
    wait_for_size_at_least(&part, 16 << 20).await;

    // The tab closes with its upload in flight; another tab of the same
    // browser (the same local storage) takes its place.
    let fresh = c.new_window(true).await.unwrap();
    c.close_window().await.unwrap();
    c.switch_to_window(fresh.handle).await.unwrap();
    let at_close = std::fs::metadata(&part).unwrap().len();
    assert!(
        at_close < 300 << 20,
        "closed mid-upload ({at_close} bytes in)"
    );

    choose(&c, &base, &movie).await;
    let note = text(&c, "#resume").await;
    assert!(
        note.contains("dailies-0800") && note.contains("was interrupted"),
        "the page remembers the delivery: {note}"
    );
    transmit(&c).await;
    page_finishes(&c).await;
    c.close().await.unwrap();

    assert_eq!(
        ferry_tests::blake3_file(&app.share.join("dailies-0800/dailies.mov")),
        ferry_tests::blake3_file(&movie)
    );
    // It went on from where the appliance stood, in the delivery made
    // before the tab closed.
    let log = app.log();
    let resumed_at: u64 = log
        .lines()
        .find_map(|l| l.split("dailies.mov of job ").nth(1))
        .and_then(|rest| rest.split("resumes at byte ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resumption in the log:\n{log}"));
    assert!(
        (8 << 20..=300 << 20).contains(&resumed_at),
        "resumed at byte {resumed_at}"
    );
    let made = app.admin(&["audit", "--action", "delivery.create"]);
    assert_eq!(made.matches("dailies-0800").count(), 1, "{made}");
}

async fn wait_for_size_at_least(p: &std::path::Path, len: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) < len {
        assert!(
            Instant::now() < deadline,
            "{} did not reach {len} bytes",
            p.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Both recipients have their job; one downloads it all as a zip.
fn recipients_receive(app: &Appliance, dir: &std::path::Path) {
    let landed = app.share.join("review-0700");
    for who in ["dir@client.example", "ed@client.example"] {
        let mut b = crate::webadmin::Browser::new(app);
        b.login(who, "harbour lights at dawn");
        let list = b.get("/deliveries");
        assert!(list.body.contains("review-0700"), "{who}: {}", list.body);
        if who == "dir@client.example" {
            let at = list.body.find("href=\"/deliveries/").unwrap() + 6;
            let delivery = &list.body[at..at + list.body[at..].find('"').unwrap()];
            let zip = dir.join("all.zip");
            let out = Command::new("curl")
                .args(["-sSfk", "-o"])
                .arg(&zip)
                .arg("-H")
                .arg(format!("Cookie: __Host-ferry={}", b.cookie()))
                .arg(format!("{}{delivery}/all.zip", app.url))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let x = Command::new("unzip")
                .arg("-q")
                .arg(&zip)
                .arg("-d")
                .arg(dir.join("received"))
                .output()
                .unwrap();
            assert!(x.status.success(), "{}", String::from_utf8_lossy(&x.stderr));
            ferry_tests::assert_same_tree(&landed, &dir.join("received"));
        }
    }
}
