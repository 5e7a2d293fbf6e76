//! Issue 24's nodes, on one box: a ferryd is a named node with a
//! heartbeat, and an admin drains it before maintenance. A drained node
//! lets its running transfers finish and grants no new ones, saying why,
//! until it is resumed.

use std::time::Duration;

use ferry_tests::{Appliance, blake3_file, heavy_io, write_random};

const MIB: u64 = 1 << 20;

#[test]
fn a_drained_node_finishes_what_it_carries_and_grants_nothing_new_until_resumed() {
    let _serial = heavy_io();
    let a = Appliance::start_with(&["--node-name", "ferry-a"]);
    let list = a.admin(&["node", "list"]);
    assert!(list.starts_with("ferry-a\tup\t0 sessions\t"), "{list}");

    let c = a.client(&a.media_user("ann@example.com"));
    let src = tempfile::tempdir().unwrap();
    let movie = src.path().join("grade.mov");
    write_random(&movie, 100 * MIB, 31);
    // Capped so that it runs across a heartbeat and the drain.
    let running = c.spawn(&[
        "put",
        movie.to_str().unwrap(),
        "share=media/in/",
        "--rate",
        "40M",
        "--json",
    ]);
    ferry_tests::wait_for(
        "the heartbeat to count the running session",
        Duration::from_secs(30),
        || a.admin(&["node", "list"]).contains("\t1 session\t"),
    );
    let drained = a.admin(&["node", "drain", "ferry-a"]);
    assert!(drained.contains("node ferry-a is draining"), "{drained}");
    assert!(
        a.admin(&["node", "list"])
            .starts_with("ferry-a\tdraining\t"),
        "the list shows the drain"
    );

    let other = src.path().join("notes.txt");
    write_random(&other, 4096, 32);
    let refused = c.run(&[
        "put",
        other.to_str().unwrap(),
        "share=media/in/",
        "--retries",
        "0",
    ]);
    assert!(!refused.ok, "a draining node granted a session");
    assert!(
        refused.stderr.contains("node ferry-a is draining"),
        "{}",
        refused.stderr
    );

    let done = ferry_tests::finish(running);
    assert!(done.ok, "the running put was cut: {}", done.stderr);
    assert_eq!(
        blake3_file(&movie),
        blake3_file(&a.share.join("in/grade.mov"))
    );

    let resumed = a.admin(&["node", "resume", "ferry-a"]);
    assert!(resumed.contains("grants sessions again"), "{resumed}");
    let run = c.run(&["put", other.to_str().unwrap(), "share=media/in/"]);
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(
        blake3_file(&other),
        blake3_file(&a.share.join("in/notes.txt"))
    );

    // The web admin's dashboard shows the node to admins, and to no one
    // else.
    a.user("ops@example.com", "admin");
    let mut admin = crate::webadmin::Browser::new(&a);
    admin.login("ops@example.com", "harbour lights at dawn");
    let page = admin.get("/").body;
    let row = page
        .split(r#"<tr data-node="ferry-a">"#)
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_else(|| panic!("no row for ferry-a: {page}"));
    assert!(row.contains(r#"class="health up""#), "{row}");
    let mut employee = crate::webadmin::Browser::new(&a);
    employee.login("ann@example.com", "harbour lights at dawn");
    assert!(!employee.get("/").body.contains(r#"id="nodes""#));

    let audit = a.admin(&["audit", "--action", "node."]);
    assert!(
        audit.contains("node.drain\tferry-a") && audit.contains("node.resume\tferry-a"),
        "{audit}"
    );
}

/// Two nodes on one database and one share folder (SQLite on one host
/// stands in here for PostgreSQL and shared storage). The outbox is sent by
/// one node only, each message once, although both run a mailer; a web
/// session made on one node is good on the other. When the node that runs
/// the mailer is killed mid-delivery, the recipient's agent resumes through
/// the other node's address without fetching again what had arrived, and
/// the other node takes over the mailer within a heartbeat of the hold
/// running out.
#[test]
fn two_nodes_share_the_work_and_one_takes_over_when_the_other_dies() {
    use crate::mail::Smtp;
    use crate::webadmin::Browser;

    let _serial = heavy_io();
    let dir = tempfile::tempdir().unwrap();
    let mut smtp = Smtp::reserve(dir.path());
    smtp.start();
    let url = smtp.url();
    let mail = [
        "--smtp",
        url.as_str(),
        "--mail-from",
        "ferry@studio.example",
    ];
    let mut a = Appliance::start_with(&[&["--node-name", "ferry-a"][..], &mail].concat());
    let b = a.another_node("ferry-b", &mail);
    ferry_tests::wait_for("ferry-a to run the mailer", Duration::from_secs(30), || {
        a.log().contains("node ferry-a now runs the mailer")
    });
    let list = a.admin(&["node", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(
        lines[0].starts_with("ferry-a\tup\t") && lines[0].contains("mailer"),
        "{list}"
    );
    assert!(
        lines[1].starts_with("ferry-b\tup\t") && lines[1].ends_with("runs -"),
        "{list}"
    );

    // A web session made on one node is good on the other.
    a.user("ops@example.com", "admin");
    let mut on_a = Browser::new(&a);
    on_a.login("ops@example.com", "harbour lights at dawn");
    let mut on_b = Browser::at(&b.url, &b.fingerprint);
    on_b.cookie = on_a.cookie.clone();
    let page = on_b.get("/");
    assert!(
        page.status.is_success() && page.body.contains(r#"data-node="ferry-b""#),
        "{}: {}",
        page.status,
        page.body
    );

    // A delivery to two recipients: one message each, sent once.
    let sender = a.client(&a.media_user("ann@example.com"));
    let director = a.user("director@client.example", "collaborator");
    a.user("editor@client.example", "collaborator");
    write_random(&a.share.join("reel.mov"), 100 * MIB, 41);
    let run = sender.run(&[
        "send",
        "share=media/reel.mov",
        "--to",
        "director@client.example",
        "--to",
        "editor@client.example",
        "--name",
        "reel",
    ]);
    assert!(run.ok, "{}", run.stderr);
    let got = smtp.wait_for(2, Duration::from_secs(60));
    assert_eq!(got.len(), 2, "one message per recipient");
    assert!(!b.log().contains("now runs the mailer"), "ferry-b stood by");

    // The director's agent knows both nodes; ferry-a dies mid-download.
    let servers = format!("{},{}", a.url, b.url);
    let agent = a.client(&director).with("FERRY_SERVER", &servers);
    let pull = ferry_tests::CutPull::start(&agent, &[]);
    a.kill();
    let run = pull.finish_resumed(&a.share.join("reel.mov"));
    assert!(
        run.stderr.contains(&format!("moving to {}", b.url)),
        "{}",
        run.stderr
    );

    // ferry-b takes the mailer once ferry-a's hold runs out, and sends
    // what is queued from then on.
    ferry_tests::wait_for(
        "ferry-b to take over the mailer",
        Duration::from_secs(60),
        || b.log().contains("node ferry-b now runs the mailer"),
    );
    let run = sender.with("FERRY_SERVER", &b.url).run(&[
        "send",
        "share=media/reel.mov",
        "--to",
        "editor@client.example",
        "--name",
        "reel again",
    ]);
    assert!(run.ok, "{}", run.stderr);
    let got = smtp.wait_for(3, Duration::from_secs(60));
    assert_eq!(got.len(), 3, "one more message, sent once");
    assert!(
        b.admin(&["node", "list"]).contains("ferry-a\tsilent\t"),
        "ferry-a shows as silent"
    );
}
