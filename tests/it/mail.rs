//! Email through a real SMTP server on loopback (aiosmtpd from Debian,
//! delivering into a maildir): the right messages to the right people with
//! the right content, the invitation link, an SMTP outage with a restart of
//! ferryd in the middle, and header injection.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ferry_tests::{Appliance, finish, wait_for};
use reqwest::StatusCode;

use crate::webadmin::Browser;

/// aiosmtpd on a loopback port, storing what it accepts in a maildir.
pub(crate) struct Smtp {
    ip: std::net::IpAddr,
    port: u16,
    maildir: PathBuf,
    child: Option<Child>,
}

impl Smtp {
    pub(crate) fn reserve(dir: &Path) -> Self {
        Self::reserve_on(dir, std::net::Ipv4Addr::LOCALHOST.into())
    }

    /// On `ip` (an address of this host that appliances in network
    /// namespaces reach).
    pub(crate) fn reserve_on(dir: &Path, ip: std::net::IpAddr) -> Self {
        let port = TcpListener::bind((ip, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Smtp {
            ip,
            port,
            maildir: dir.join("maildir"),
            child: None,
        }
    }

    pub(crate) fn start(&mut self) {
        let child = Command::new("/usr/bin/python3")
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("{}:{}", self.ip, self.port),
            ])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&self.maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd (tests/run installs python3-aiosmtpd)");
        self.child = Some(child);
        let (ip, port) = (self.ip, self.port);
        wait_for("the SMTP server", Duration::from_secs(20), || {
            std::net::TcpStream::connect((ip, port)).is_ok()
        });
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("smtp://{}:{}", self.ip, self.port)
    }

    /// Every message received so far.
    pub(crate) fn messages(&self) -> Vec<Mail> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) else {
                continue;
            };
            for e in entries.flatten() {
                if let Ok(raw) = std::fs::read_to_string(e.path()) {
                    out.push(Mail::parse(&raw));
                }
            }
        }
        out
    }

    /// Waits until `n` messages have arrived.
    pub(crate) fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Mail> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            if std::time::Instant::now() > deadline {
                let seen: Vec<(&str, &str)> = got.iter().map(|m| (m.rcpt(), m.subject())).collect();
                panic!(
                    "timed out after {timeout:?} waiting for {n} messages; {} arrived: {seen:?}",
                    got.len()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// An appliance that mails through `smtp`, with `extra` flags.
pub(crate) fn mailing_appliance(smtp: &Smtp, from: &str, extra: &[&str]) -> Appliance {
    let url = smtp.url();
    let mut args = vec!["--smtp", url.as_str(), "--mail-from", from];
    args.extend_from_slice(extra);
    Appliance::start_with(&args)
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A received message, headers unfolded.
#[derive(Debug, Clone)]
pub(crate) struct Mail {
    headers: HashMap<String, Vec<String>>,
    pub(crate) raw: String,
}

/// Undoes quoted-printable (soft line breaks, `=XX`), which is how long
/// lines of a text part travel.
fn unquote(s: &str) -> String {
    let s = s.replace("=\n", "");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        if b[i] == b'='
            && let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Mail {
    fn parse(raw: &str) -> Self {
        let raw = unquote(&raw.replace("\r\n", "\n"));
        let head = raw
            .split("\n\n")
            .next()
            .unwrap_or("")
            .replace("\n ", " ")
            .replace("\n\t", " ");
        let mut headers: HashMap<String, Vec<String>> = HashMap::new();
        for line in head.lines() {
            if let Some((k, v)) = line.split_once(':') {
                headers
                    .entry(k.trim().to_lowercase())
                    .or_default()
                    .push(v.trim().to_owned());
            }
        }
        Mail { headers, raw }
    }

    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.first())
            .map_or("", String::as_str)
    }

    /// The envelope recipient, as the server saw it.
    pub(crate) fn rcpt(&self) -> &str {
        self.header("x-rcptto")
    }

    pub(crate) fn subject(&self) -> &str {
        self.header("subject")
    }

    /// The first link in the text part whose address contains `what`.
    pub(crate) fn link(&self, what: &str) -> String {
        self.raw
            .split_whitespace()
            .find(|w| w.starts_with("https://") && w.contains(what))
            .unwrap_or_else(|| panic!("no {what} link in {}", self.raw))
            .trim_end_matches(['.', ')'])
            .to_owned()
    }
}

pub(crate) fn find<'a>(mails: &'a [Mail], to: &str, subject: &str) -> Vec<&'a Mail> {
    mails
        .iter()
        .filter(|m| m.rcpt() == to && m.subject() == subject)
        .collect()
}

/// One sender, one known recipient, one invited: the messages the seed
/// workflow sends, their content, and the invitation link end to end.
#[test]
fn a_delivery_tells_each_person_what_they_need_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut smtp = Smtp::reserve(dir.path());
    smtp.start();
    let app = mailing_appliance(&smtp, "Ferry <ferry@example.com>", &[]);
    let ann = app.media_user("ann@example.com");
    let bob = app.user("bob@example.com", "collaborator");
    let src = app.dir.path().join("review");
    std::fs::create_dir_all(src.join("shot010")).unwrap();
    std::fs::write(src.join("shot010.mp4"), vec![7u8; 3_000_000]).unwrap();
    for f in 1001..=1010 {
        std::fs::write(
            src.join(format!("shot010/shot010.{f}.exr")),
            vec![1u8; 100_000],
        )
        .unwrap();
    }
    let send = app.client(&ann).run(&[
        "send",
        src.join("shot010.mp4").to_str().unwrap(),
        src.join("shot010").to_str().unwrap(),
        "--to",
        "bob@example.com",
        "--to",
        "new@example.com",
        "--dest",
        "share=media/review-0412",
        "--name",
        "review-0412",
    ]);
    assert!(send.ok, "{}", send.stderr);

    // Bob receives it; the sender hears that he did.
    let into = dir.path().join("bob");
    let pull = app
        .client(&bob)
        .run(&["pull", "--into", into.to_str().unwrap()]);
    assert!(pull.ok, "{}", pull.stderr);
    let mails = smtp.wait_for(4, Duration::from_secs(60));

    let waiting = "ann@example.com sent you review-0412";
    let bob_waiting = find(&mails, "bob@example.com", waiting);
    assert_eq!(bob_waiting.len(), 1, "{mails:#?}");
    let body = &bob_waiting[0].raw;
    for part in [
        "shot010.mp4 (3.0 MB)",
        "shot010.####.exr",
        "(10 frames)",
        "ferry agent",
        "available until",
    ] {
        assert!(body.contains(part), "{part} not in {body}");
    }
    assert!(
        body.contains("Content-Type: text/html"),
        "an HTML alternative"
    );
    assert!(bob_waiting[0].header("from").contains("ferry@example.com"));
    assert_eq!(find(&mails, "new@example.com", waiting).len(), 1);
    let complete = find(
        &mails,
        "ann@example.com",
        "bob@example.com received review-0412",
    );
    assert_eq!(complete.len(), 1, "{mails:#?}");
    let invitation = find(
        &mails,
        "new@example.com",
        "ann@example.com invited you to Ferry",
    );
    assert_eq!(invitation.len(), 1, "{mails:#?}");
    // Nothing else, and nothing twice.
    assert_eq!(mails.len(), 4, "{mails:#?}");

    // The invitation link sets a password, once.
    let link = invitation[0].link("/invite/");
    assert!(link.starts_with(&app.url), "{link}");
    let path = &link[app.url.len()..];
    let mut browser = Browser::new(&app);
    let page = browser.get(path);
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("new@example.com"));
    let page = browser.post(
        path,
        &[
            ("password", "a newcomer's password"),
            ("again", "a newcomer's password"),
        ],
    );
    // Signed in on the spot, and straight to the delivery.
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let to = page.headers["location"].to_str().unwrap();
    assert!(to.starts_with("/deliveries/"), "{to}");
    assert!(
        page.headers["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("__Host-ferry=")
    );
    let again = browser.get(path);
    assert_eq!(again.status, StatusCode::GONE);
    assert!(again.body.contains("used already"), "{}", again.body);

    // …after which the invited user logs in with the client.
    let bare = logged_in(
        &app,
        &dir.path().join("newcomer"),
        "new@example.com",
        "a newcomer's password",
    );
    let who = bare.run(&["whoami"]);
    assert!(
        who.stdout.contains("new@example.com (collaborator)"),
        "{}",
        who.stdout
    );

    // Opting out stops everything but invitations.
    let off = app.client(&bob).run(&["notify", "off"]);
    assert!(off.ok, "{}", off.stderr);
    let send = app.client(&ann).run(&[
        "send",
        src.join("shot010.mp4").to_str().unwrap(),
        "--to",
        "bob@example.com",
        "--dest",
        "share=media/again",
        "--name",
        "again",
    ]);
    assert!(send.ok, "{}", send.stderr);
    let audit = app.admin(&["audit", "--action", "user.notify"]);
    assert!(audit.contains("off"), "{audit}");
    let store = ferry_store::Database::open(&app.data.join("ferry.db")).unwrap();
    assert_eq!(
        store.outbox_counts().unwrap().waiting,
        0,
        "nothing was queued for bob"
    );
    assert!(
        find(
            &smtp.messages(),
            "bob@example.com",
            "ann@example.com sent you again"
        )
        .is_empty()
    );
}

/// The SMTP server is down while a delivery is made, and ferryd restarts
/// in the middle: once the server is back, every message arrives, once.
#[test]
fn mail_waits_out_an_smtp_outage_and_a_restart_and_arrives_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut smtp = Smtp::reserve(dir.path());
    let mut app = mailing_appliance(&smtp, "ferry@example.com", &[]);
    let ann = app.media_user("ann@example.com");
    app.user("bob@example.com", "collaborator");
    let file = app.dir.path().join("proxy.mp4");
    std::fs::write(&file, vec![3u8; 1_000_000]).unwrap();
    let send = app.client(&ann).run(&[
        "send",
        file.to_str().unwrap(),
        "--to",
        "bob@example.com",
        "--to",
        "carol@example.com",
        "--dest",
        "share=media/outage",
        "--name",
        "outage",
    ]);
    assert!(send.ok, "{}", send.stderr);
    let db = app.data.join("ferry.db");
    let waiting = || {
        ferry_store::Database::open(&db)
            .unwrap()
            .outbox_counts()
            .unwrap()
    };
    // Waiting, and tried at least once against the closed port.
    wait_for("a failed attempt", Duration::from_secs(30), || {
        app.log().contains("cannot send")
    });
    assert_eq!(
        waiting().waiting,
        3,
        "invitation for carol, waiting for bob and carol"
    );
    // The transfer does not wait for mail: bob's agent pulls the delivery
    // while the server is still down, and the sender's notice of it queues.
    let into = tempfile::tempdir().unwrap();
    let bob = app.client(app.admin(&["apikey", "create", "bob@example.com"]).trim());
    let agent = ferry_tests::Running::start(
        &bob,
        &[
            "agent",
            "--into",
            into.path().to_str().unwrap(),
            "--poll",
            "1",
        ],
    );
    agent.wait_line(": complete", Duration::from_secs(60));
    assert_eq!(
        ferry_tests::blake3_file(&file),
        ferry_tests::blake3_file(&into.path().join("outage/proxy.mp4"))
    );
    wait_for(
        "the sender's notice to queue",
        Duration::from_secs(30),
        || waiting().waiting == 4,
    );
    assert_eq!(
        smtp.messages().len(),
        0,
        "nothing reached the server while it was down"
    );
    app.restart();
    smtp.start();
    wait_for("the outbox to empty", Duration::from_secs(90), || {
        waiting().waiting == 0
    });
    let mails = smtp.messages();
    assert_eq!(mails.len(), 4, "{mails:#?}");
    assert_eq!(
        find(&mails, "ann@example.com", "bob@example.com received outage").len(),
        1
    );
    assert_eq!(
        find(&mails, "bob@example.com", "ann@example.com sent you outage").len(),
        1
    );
    assert_eq!(
        find(
            &mails,
            "carol@example.com",
            "ann@example.com sent you outage"
        )
        .len(),
        1
    );
    assert_eq!(
        find(
            &mails,
            "carol@example.com",
            "ann@example.com invited you to Ferry"
        )
        .len(),
        1
    );
    let ids: std::collections::HashSet<&str> =
        mails.iter().map(|m| m.header("message-id")).collect();
    assert_eq!(ids.len(), 4, "four distinct messages");
    ferry_tests::record_scenario(
        "smtp-down",
        serde_json::json!({
            "scenario": "the SMTP server down throughout a delivery",
            "injected": "no SMTP server while a delivery is sent and pulled by an agent; ferryd restarted with 4 messages waiting; then the server starts",
            "checked": "the transfer completes during the outage (BLAKE3 equal); nothing is lost or sent twice: 4 messages, 4 distinct Message-IDs",
            "faults_survived": 2,
            "bytes_compared": 1_000_000,
            "messages_delivered_late": 4,
        }),
    );
}

/// Names and addresses from users cannot add headers or recipients.
#[test]
fn header_injection_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut smtp = Smtp::reserve(dir.path());
    smtp.start();
    let app = mailing_appliance(&smtp, "ferry@example.com", &[]);
    let ann = app.media_user("ann@example.com");
    let file = app.dir.path().join("a.mp4");
    std::fs::write(&file, b"x").unwrap();
    let client = app.client(&ann);
    let evil_name = client.run(&[
        "send",
        file.to_str().unwrap(),
        "--to",
        "bob@example.com",
        "--dest",
        "share=media/x",
        "--name",
        "review\r\nBcc: victim@example.com",
    ]);
    assert!(!evil_name.ok);
    assert!(evil_name.stderr.contains("name"), "{}", evil_name.stderr);
    let evil_to = client.run(&[
        "send",
        file.to_str().unwrap(),
        "--to",
        "bob@example.com, victim@example.com",
        "--dest",
        "share=media/y",
    ]);
    assert!(!evil_to.ok);
    assert!(
        evil_to.stderr.contains("not a valid email address"),
        "{}",
        evil_to.stderr
    );
    let evil_header = client.run(&[
        "send",
        file.to_str().unwrap(),
        "--to",
        "bob@example.com\r\nBcc: victim@example.com",
        "--dest",
        "share=media/z",
    ]);
    assert!(!evil_header.ok);
    // Nothing was queued, so nothing reaches anyone.
    let store = ferry_store::Database::open(&app.data.join("ferry.db")).unwrap();
    assert_eq!(
        store.outbox_counts().unwrap(),
        ferry_store::OutboxCounts::default()
    );
    assert!(
        smtp.messages()
            .iter()
            .all(|m| !m.raw.contains("victim@example.com"))
    );
}

/// Reminders that come with time: the delivery is about to expire (to a
/// recipient who has not received it) and half of it has arrived (to a
/// sender who asked).
#[test]
fn reminders_of_expiry_and_progress_go_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut smtp = Smtp::reserve(dir.path());
    smtp.start();
    let config = dir.path().join("ferryd.toml");
    std::fs::write(&config, "[deliveries]\njanitor_secs = 1\n").unwrap();
    let app = mailing_appliance(
        &smtp,
        "ferry@example.com",
        &["--config", config.to_str().unwrap()],
    );
    let ann = app.media_user("ann@example.com");
    let bob = app.user("bob@example.com", "collaborator");
    app.user("cat@example.com", "collaborator");
    let file = app.dir.path().join("proxy.mp4");
    std::fs::write(&file, vec![5u8; 2_000_000]).unwrap();
    let send = app.client(&ann).run(&[
        "send",
        file.to_str().unwrap(),
        "--to",
        "bob@example.com",
        "--to",
        "cat@example.com",
        "--dest",
        "share=media/soon",
        "--name",
        "soon",
        "--expires",
        "20s",
        "--notify-progress",
    ]);
    assert!(send.ok, "{}", send.stderr);
    // Bob takes his copy; that is half of what the delivery sends.
    let pull = app
        .client(&bob)
        .run(&["pull", "--into", dir.path().join("bob").to_str().unwrap()]);
    assert!(pull.ok, "{}", pull.stderr);
    // waiting ×2, complete, progress, and the expiry reminder for cat only.
    let mails = smtp.wait_for(5, Duration::from_secs(60));
    let expiring: Vec<&Mail> = mails
        .iter()
        .filter(|m| m.subject().starts_with("soon expires"))
        .collect();
    assert_eq!(expiring.len(), 1, "{mails:#?}");
    assert_eq!(expiring[0].rcpt(), "cat@example.com");
    assert!(expiring[0].raw.contains("you have not received all of it"));
    let progress = find(&mails, "ann@example.com", "soon is 50 % delivered");
    assert_eq!(progress.len(), 1, "{mails:#?}");
    // The delivery expires; nothing more is sent about it.
    wait_for("the delivery to expire", Duration::from_secs(30), || {
        app.admin(&["audit", "--action", "delivery"])
            .contains("delivery.expire")
    });
    assert_eq!(smtp.messages().len(), 5, "{:#?}", smtp.messages());
}

/// An appliance without email keeps what it would send; an admin sets the
/// SMTP server in the web admin, and it all goes out, then a test message.
#[test]
fn smtp_set_in_the_web_admin_sends_what_waited() {
    let (app, mut admin) = crate::webadmin::appliance_with_admin();
    let dir = tempfile::tempdir().unwrap();
    let mut smtp = Smtp::reserve(dir.path());
    smtp.start();
    let csrf = admin.csrf("/users");
    let page = admin.post(
        "/users/invite",
        &[
            ("csrf", &csrf),
            ("email", "dana@example.com"),
            ("role", "employee"),
        ],
    );
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let dash = admin.get("/");
    assert!(
        dash.body.contains("email (SMTP) is not configured"),
        "{}",
        dash.body
    );

    // A From address is required, and a password file must exist.
    let settings = |url: &str, from: &str, password_file: &str| {
        vec![
            ("csrf".to_owned(), csrf.clone()),
            ("policy".into(), "fair".into()),
            ("default_expiry_days".into(), "30".into()),
            ("smtp_url".into(), url.to_owned()),
            ("smtp_from".into(), from.to_owned()),
            ("smtp_password_file".into(), password_file.to_owned()),
        ]
    };
    let post = |b: &mut Browser, form: Vec<(String, String)>| {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        b.post("/settings", &form)
    };
    let bad = post(&mut admin, settings(&smtp.url(), "", ""));
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("From address"), "{}", bad.body);
    let bad = post(
        &mut admin,
        settings(&smtp.url(), "ferry@example.com", "/nonexistent/password"),
    );
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("/nonexistent/password"), "{}", bad.body);
    // Nor may it be any file of the appliance's, such as its database
    // (which holds the TLS key): that would mail it to a server of the
    // admin's choosing.
    let key = app.data.join("ferry.db");
    let bad = post(
        &mut admin,
        settings(&smtp.url(), "ferry@example.com", key.to_str().unwrap()),
    );
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("must lie in"), "{}", bad.body);
    let ok = post(
        &mut admin,
        settings(&smtp.url(), "Ferry <ferry@example.com>", ""),
    );
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);

    let mails = smtp.wait_for(1, Duration::from_secs(30));
    assert_eq!(
        find(
            &mails,
            "dana@example.com",
            "admin@localhost invited you to Ferry"
        )
        .len(),
        1,
        "{mails:#?}"
    );
    let csrf = admin.csrf("/settings");
    let page = admin.post("/settings/test-mail", &[("csrf", &csrf)]);
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let mails = smtp.wait_for(2, Duration::from_secs(30));
    assert_eq!(
        find(&mails, "admin@localhost", "Ferry test message").len(),
        1,
        "{mails:#?}"
    );
}

/// The public invitation page: an expired or unknown link says so plainly,
/// and one address cannot try links without limit.
#[test]
fn the_invitation_page_explains_dead_links_and_limits_guessing() {
    let app = Appliance::start();
    let store = ferry_store::Database::open(&app.data.join("ferry.db")).unwrap();
    let user = store
        .create_user(
            "late@example.com",
            "",
            ferry_store::Role::Collaborator,
            None,
        )
        .unwrap();
    let expired = store.create_invitation(user.id, -1).unwrap();
    let mut b = Browser::new(&app);
    let page = b.get(&format!("/invite/{expired}"));
    assert_eq!(page.status, StatusCode::GONE);
    assert!(page.body.contains("has expired"), "{}", page.body);
    let page = b.post(
        &format!("/invite/{expired}"),
        &[
            ("password", "a long enough password"),
            ("again", "a long enough password"),
        ],
    );
    assert_eq!(page.status, StatusCode::GONE);
    assert!(
        store
            .verify_password("late@example.com", "a long enough password")
            .unwrap()
            .is_none()
    );
    let page = b.get("/invite/not-a-token");
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.body.contains("not a valid invitation link"));
    // 30 requests per address per 15 minutes, then a clear refusal.
    let mut last = StatusCode::OK;
    for _ in 0..40 {
        last = b.get("/invite/guess").status;
        if last == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        b.get(&format!("/invite/{expired}"))
            .body
            .contains("Too many requests")
    );
}

/// With no SMTP server, nothing is lost: the admin finds the invitation
/// waiting in the outbox, makes a fresh link on the Users page, and the
/// recipient who follows it sets a password and receives the delivery.
#[test]
fn without_smtp_an_invited_recipient_gets_in_through_a_copied_link_and_receives() {
    let app = Appliance::start();
    let ann = app.media_user("ann@example.com");
    app.user("ops@example.com", "admin");
    ferry_tests::write_random(&app.share.join("cut.mov"), 3 << 20, 71);
    let sent = app
        .client(&ann)
        .run(&["send", "share=media/cut.mov", "--to", "dir@client.example"]);
    assert!(sent.ok, "{}", sent.stderr);

    let mut admin = Browser::new(&app);
    admin.login("ops@example.com", "harbour lights at dawn");
    let outbox = admin.get("/outbox");
    assert_eq!(outbox.status, StatusCode::OK, "{}", outbox.body);
    for part in ["No SMTP server is set", "dir@client.example", "waiting"] {
        assert!(outbox.body.contains(part), "{part} not in {}", outbox.body);
    }
    let users = admin.get("/users");
    let at = users
        .body
        .find("/invite-link")
        .expect("an invitation link button for the invited recipient");
    let action = &users.body[users.body[..at].rfind("/users/").unwrap()..at + "/invite-link".len()];
    let csrf = admin.csrf("/users");
    let made = admin.post(action, &[("csrf", &csrf)]);
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    let start = made
        .body
        .find(r#"<code id="secret">"#)
        .expect("the link shown")
        + 18;
    let link = &made.body[start..start + made.body[start..].find("</code>").unwrap()];
    assert!(link.starts_with(&format!("{}/invite/", app.url)), "{link}");
    assert!(made.body.contains("data-copy=\"secret\""), "a Copy button");

    // The recipient follows the link someone handed over.
    let path = &link[app.url.len()..];
    let mut guest = Browser::new(&app);
    let page = guest.post(
        path,
        &[
            ("password", "a director's own password"),
            ("again", "a director's own password"),
        ],
    );
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert!(
        page.headers["location"]
            .to_str()
            .unwrap()
            .starts_with("/deliveries/"),
        "{:?}",
        page.headers
    );

    let home = tempfile::tempdir().unwrap();
    let client = logged_in(
        &app,
        home.path(),
        "dir@client.example",
        "a director's own password",
    );
    let into = tempfile::tempdir().unwrap();
    let mut agent = client.spawn(&["agent", "--into", into.path().to_str().unwrap()]);
    let received = || {
        ferry_tests::list_files(into.path())
            .into_iter()
            .find(|p| p.ends_with("cut.mov"))
    };
    wait_for(
        "the agent to receive the delivery",
        Duration::from_secs(60),
        || received().is_some(),
    );
    agent.kill().unwrap();
    agent.wait().unwrap();
    assert_eq!(
        ferry_tests::blake3_file(&app.share.join("cut.mov")),
        ferry_tests::blake3_file(&into.path().join(received().unwrap()))
    );
    // The invitation itself is still in the outbox, where the admin may
    // discard it now that it served its purpose.
    let outbox = admin.get("/outbox");
    let at = outbox.body.find("/discard").expect("a discard button");
    let action = &outbox.body[outbox.body[..at].rfind("/outbox/").unwrap()..at + "/discard".len()];
    let csrf = admin.csrf("/outbox");
    let gone = admin.post(action, &[("csrf", &csrf)]);
    assert_eq!(gone.status, StatusCode::SEE_OTHER, "{}", gone.body);
}

/// A client with a home of its own in `home`, logged in as `email` the way
/// a person does it (`ferry login … --password-stdin`).
fn logged_in(app: &Appliance, home: &Path, email: &str, password: &str) -> ferry_tests::Client {
    let client = ferry_tests::Client {
        env: vec![
            ("HOME".into(), home.display().to_string()),
            (
                "FERRY_CONFIG".into(),
                home.join("credentials.toml").display().to_string(),
            ),
        ],
        netns: None,
    };
    let mut login = client.command(&[
        "login",
        &app.url,
        "--email",
        email,
        "--fingerprint",
        &app.fingerprint,
        "--password-stdin",
    ]);
    login
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = login.spawn().unwrap();
    use std::io::Write as _;
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let run = finish(child);
    assert!(run.ok, "{}", run.stderr);
    client
}
