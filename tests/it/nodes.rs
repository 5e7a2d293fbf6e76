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
