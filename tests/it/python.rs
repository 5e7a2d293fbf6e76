//! The Python client (`client/python`) against a real ferryd: its live
//! tests run with two recipients' agents pulling, and an API key whose
//! rate limit they go over.

use std::process::Command;
use std::time::Duration;

use ferry_tests::{Appliance, Running, bin, heavy_io};

const RATE_LIMIT: u32 = 300;

#[test]
fn the_python_client_delivers_manages_jobs_and_gets_clear_errors() {
    let _serial = heavy_io();
    let conf = tempfile::tempdir().unwrap();
    let config = conf.path().join("ferryd.toml");
    std::fs::write(
        &config,
        format!("[api]\nrequests_per_minute = {RATE_LIMIT}\n"),
    )
    .unwrap();
    let app = Appliance::start_with(&["--config", config.to_str().unwrap()]);
    let producer = app.user("producer@studio.example", "admin");
    let director = app.user("director@client.example", "collaborator");
    let editor = app.user("editor@client.example", "collaborator");
    app.user("idle@client.example", "collaborator");
    let limited = app.user("script@studio.example", "employee");

    let into_a = tempfile::tempdir().unwrap();
    let into_b = tempfile::tempdir().unwrap();
    let agents: Vec<Running> = [(&director, &into_a), (&editor, &into_b)]
        .into_iter()
        .map(|(key, into)| {
            Running::start(
                &app.client(key),
                &[
                    "agent",
                    "--into",
                    into.path().to_str().unwrap(),
                    "--poll",
                    "1",
                ],
            )
        })
        .collect();

    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../client/python");
    let out = Command::new("/usr/bin/python3")
        .args(["-m", "unittest", "-v", "tests/test_live.py"])
        .current_dir(&python)
        .env("FERRY_LIVE_TEST", "1")
        // A dead address first, as when one of a cluster's nodes is down:
        // the session and the `ferry` it runs move to the next.
        .env("FERRY_SERVER", format!("https://127.0.0.1:1,{}", app.url))
        .env("FERRY_USER", "producer@studio.example")
        .env("FERRY_API_KEY", &producer)
        .env("FERRY_FINGERPRINT", &app.fingerprint)
        .env("FERRY_BINARY", bin("ferry"))
        .env("FERRY_CONFIG", conf.path().join("client.toml"))
        .env(
            "FERRY_TEST_RECIPIENTS",
            "director@client.example,editor@client.example",
        )
        .env(
            "FERRY_TEST_INTO",
            format!("{},{}", into_a.path().display(), into_b.path().display()),
        )
        .env("FERRY_TEST_IDLE", "idle@client.example")
        .env("FERRY_TEST_MEDIA", &app.share)
        .env("FERRY_TEST_LIMITED_KEY", &limited)
        .env("FERRY_TEST_RATE_LIMIT", RATE_LIMIT.to_string())
        .output()
        .expect("run python3 (tests/run installs python3-requests)");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python client's live tests failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // unittest reports on stderr; every test ran (none skipped).
    assert!(report.contains("Ran 5 tests"), "{report}");
    assert!(!report.contains("skipped"), "{report}");
    // The recipients' agents saw the Python-made delivery complete.
    for agent in &agents {
        agent.wait_line(": complete", Duration::from_secs(30));
    }
}
