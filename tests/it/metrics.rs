//! Prometheus metrics: a real Prometheus (Debian's, started here) scrapes
//! the appliance over plain HTTP (`--metrics-listen`) and over HTTPS with
//! the scrape token; `promtool check metrics` passes the text; on the
//! control port only admins' keys and the token may read it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ferry_tests::{Appliance, wait_for, write_random};
use serde_json::{Value, json};

use crate::browser::free_port;
use crate::rules::Rest;

const TOKEN: &str = "scrape-token-of-the-metrics-test";

/// GET with curl; (status, body).
fn curl(url: &str, bearer: Option<&str>) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-sk", "-w", "\n%{http_code}"]);
    if let Some(b) = bearer {
        c.args(["-H", &format!("Authorization: Bearer {b}")]);
    }
    let out = c.arg(url).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// The value of the sample `series` (name and labels exactly as
/// written) in Prometheus' text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The vector Prometheus answers to `query`.
fn query(port: u16, query: &str) -> Vec<Value> {
    let out = Command::new("curl")
        .args(["-sG", "--data-urlencode"])
        .arg(format!("query={query}"))
        .arg(format!("http://127.0.0.1:{port}/api/v1/query"))
        .output()
        .expect("curl");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn start_prometheus(dir: &Path, plain: u16, https: &str, token_file: &Path) -> (Prometheus, u16) {
    let port = free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n\
         \x20 - job_name: ferry-plain\n    static_configs:\n      - targets: ['127.0.0.1:{plain}']\n\
         \x20 - job_name: ferry-https\n    scheme: https\n\
         \x20   tls_config:\n      insecure_skip_verify: true\n\
         \x20   authorization:\n      credentials_file: {}\n\
         \x20   static_configs:\n      - targets: ['{https}']\n",
        token_file.display()
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus (tests/run installs it)");
    (Prometheus(child), port)
}

#[test]
fn prometheus_scrapes_the_appliance_and_only_admins_or_the_token_may_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let config = dir.path().join("ferryd.toml");
    std::fs::write(
        &config,
        format!(
            "[metrics]\ntoken_file = {:?}\n",
            token_file.display().to_string()
        ),
    )
    .unwrap();
    let plain = free_port();
    let app = Appliance::start_with(&[
        "--config",
        config.to_str().unwrap(),
        "--metrics-listen",
        &format!("127.0.0.1:{plain}"),
    ]);

    // Something to count: a put over QUIC, and a failed login.
    let ann = app.client(&app.media_user("ann@example.com"));
    let take = dir.path().join("take.mov");
    write_random(&take, 4 << 20, 5);
    let put = ann.run(&[
        "put",
        take.to_str().unwrap(),
        "share=media/",
        "--transport",
        "quic",
        "--json",
    ]);
    assert!(put.ok, "{}", put.stderr);
    let rest = Rest::new(&app);
    let (status, _) = rest.call(
        "POST",
        "/api/v1/login",
        None,
        Some(&json!({"email": "ann@example.com", "password": "not her password"})),
    );
    assert_eq!(status, 401);

    // On the control port: the token or an admin's key, nobody else.
    let url = format!("{}/metrics", app.url);
    let collaborator = app.user("dir@client.example", "collaborator");
    let employee = app.user("ed@example.com", "employee");
    let admin = app.user("boss@example.com", "admin");
    assert_eq!(curl(&url, None).0, 401);
    assert_eq!(curl(&url, Some(&collaborator)).0, 403);
    // Staff who send are not the appliance's operators either.
    assert_eq!(curl(&url, Some(&employee)).0, 403);
    assert_eq!(curl(&url, Some("not-the-token-at-all-0123456789")).0, 401);
    let (status, by_admin) = curl(&url, Some(&admin));
    assert_eq!(status, 200, "{by_admin}");
    // The put's job settles just after the client's last frame.
    let mut text = String::new();
    wait_for(
        "the put's job to settle in the metrics",
        Duration::from_secs(40),
        || {
            let (status, body) = curl(&url, Some(TOKEN));
            text = body;
            status == 200
                && sample(&text, r#"ferry_jobs{status="done"}"#) == Some(1.0)
                && sample(&text, "ferry_sessions_active") == Some(0.0)
                && sample(&text, "ferry_leases_active") == Some(0.0)
        },
    );

    // What it says, and that it is valid exposition text.
    let moved = sample(
        &text,
        r#"ferry_transfer_bytes_total{direction="in",transport="quic"}"#,
    );
    assert!(
        moved.is_some_and(|b| b >= (4 << 20) as f64),
        "{moved:?}\n{text}"
    );
    assert_eq!(
        sample(&text, "ferry_login_failures_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"ferry_jobs{status="done"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "ferry_sessions_active"), Some(0.0), "{text}");
    assert_eq!(sample(&text, "ferry_leases_active"), Some(0.0), "{text}");
    // No site rate and no bandwidth schedule: no cap.
    assert_eq!(
        sample(&text, "ferry_site_cap_bytes_per_second"),
        Some(0.0),
        "{text}"
    );
    assert!(
        sample(&text, r#"ferry_outbox_messages{state="waiting"}"#).is_some(),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"ferry_http_requests_total{route="/api/v1/login",status="401"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "ferry_session_rtt_seconds_count").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(text.contains("# HELP ferry_transfer_bytes_total"), "{text}");
    let (status, from_plain) = curl(&format!("http://127.0.0.1:{plain}/metrics"), None);
    assert_eq!(status, 200);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (tests/run installs prometheus)");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), from_plain.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // A real Prometheus scrapes both ways in.
    let https = app.url.trim_start_matches("https://").to_owned();
    let (_prometheus, port) = start_prometheus(dir.path(), plain, &https, &token_file);
    let log = || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    wait_for(
        "Prometheus to scrape both targets",
        Duration::from_secs(60),
        || {
            let up = query(port, "up");
            up.len() == 2 && up.iter().all(|s| s["value"][1] == "1")
        },
    );
    let bytes = query(
        port,
        r#"ferry_transfer_bytes_total{direction="in",transport="quic"}"#,
    );
    assert_eq!(bytes.len(), 2, "{bytes:?}\n{}", log());
    for s in &bytes {
        let v: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
        assert!(v >= (4 << 20) as f64, "{s}");
    }
}
