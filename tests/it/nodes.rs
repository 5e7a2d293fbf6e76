//! Issue 24's nodes: a ferryd is a named node with a heartbeat, and an
//! admin drains it before maintenance (a drained node lets its running
//! transfers finish and grants no new ones, saying why, until it is
//! resumed); nodes in their own network namespaces share one PostgreSQL
//! and survive the loss of one of them; a single box moves onto
//! PostgreSQL with `ferryd admin store copy`.

use std::time::Duration;

use ferry_tests::{Appliance, Setup, blake3_file, heavy_io, write_random};

const MIB: u64 = 1 << 20;

/// A 100 MiB put into `media/in/`, capped at 40 Mbit/s so that it runs
/// for about 20 s; the file (written in `dir`, from `seed`) and the client.
fn slow_put(
    c: &ferry_tests::Client,
    dir: &std::path::Path,
    seed: u64,
) -> (std::path::PathBuf, std::process::Child) {
    let movie = dir.join("grade.mov");
    write_random(&movie, 100 * MIB, seed);
    let running = c.spawn(&[
        "put",
        movie.to_str().unwrap(),
        "share=media/in/",
        "--rate",
        "40M",
    ]);
    (movie, running)
}

#[test]
fn a_drained_node_finishes_what_it_carries_and_grants_nothing_new_until_resumed() {
    let _serial = heavy_io();
    let a = Appliance::start_with(&["--node-name", "ferry-a"]);
    let list = a.admin(&["node", "list"]);
    assert!(list.starts_with("ferry-a\tup\t0 sessions\t"), "{list}");

    let c = a.client(&a.media_user("ann@example.com"));
    let src = tempfile::tempdir().unwrap();
    // It runs across a heartbeat and the drain.
    let (movie, running) = slow_put(&c, src.path(), 31);
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

/// A node that carries all the sessions it takes sends a new client to
/// another node with room: the grant names the node that will carry the
/// data. (Two nodes on one SQLite and one share folder, on this host.)
#[test]
fn a_full_node_sends_a_new_transfer_to_a_node_with_room() {
    let _serial = heavy_io();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferryd.toml");
    std::fs::write(&config, "[limits]\nsessions_total = 1\n").unwrap();
    let config = config.to_str().unwrap();
    let a = Appliance::start_with(&["--node-name", "ferry-a", "--config", config]);
    let b = a.another_node("ferry-b", &["--config", config]);
    let c = a
        .client(&a.media_user("ann@example.com"))
        .with("FERRY_SERVER", &format!("{},{}", a.url, b.url));
    // It runs across a heartbeat and the second transfer.
    let (movie, running) = slow_put(&c, dir.path(), 33);
    ferry_tests::wait_for(
        "ferry-a's heartbeat to count its one session",
        Duration::from_secs(30),
        || {
            let list = a.admin(&["node", "list"]);
            list.contains("ferry-a\tup\t1 session\t") && list.contains("ferry-b\tup\t0 sessions\t")
        },
    );
    let notes = dir.path().join("notes.txt");
    write_random(&notes, 4096, 34);
    let run = c.run(&["put", notes.to_str().unwrap(), "share=media/in/"]);
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stderr.contains("ferry-a carries 1 transfers")
            && run.stderr.contains(&format!("moving to {}", b.url)),
        "{}",
        run.stderr
    );
    assert_eq!(
        blake3_file(&notes),
        blake3_file(&a.share.join("in/notes.txt"))
    );
    let done = ferry_tests::finish(running);
    assert!(done.ok, "{}", done.stderr);
    assert_eq!(
        blake3_file(&movie),
        blake3_file(&a.share.join("in/grade.mov"))
    );
}

/// Issue 24's cluster: two nodes, each in a network namespace of its own,
/// share one PostgreSQL (started by the test as its own user, in a third
/// namespace that routes between them and this host) and one share
/// folder. The clients and the SMTP server are on this host.
#[test]
#[ignore = "needs root: network namespaces, and PostgreSQL runs as the postgres user"]
fn two_nodes_in_two_namespaces_on_postgresql_share_the_work_and_one_takes_over_when_the_other_dies()
{
    use crate::mail::Smtp;
    use crate::webadmin::Browser;
    use ferry_tests::netns::{Net, run};

    let _serial = heavy_io();
    // host 10.91.0.1 --- core 10.91.0.2 (PostgreSQL) --- a 10.91.1.2
    //                                                \--- b 10.91.2.2
    let mut net = Net::new();
    net.add("core");
    net.add("a");
    net.add("b");
    let uplink = format!("fyc{}", std::process::id() % 100_000);
    run(&[
        "ip",
        "link",
        "add",
        &uplink,
        "type",
        "veth",
        "peer",
        "name",
        "up0",
        "netns",
        &net.name("core"),
    ]);
    run(&["ip", "addr", "add", "10.91.0.1/24", "dev", &uplink]);
    run(&["ip", "link", "set", &uplink, "up"]);
    net.exec("core", &["ip", "addr", "add", "10.91.0.2/24", "dev", "up0"]);
    net.exec("core", &["ip", "link", "set", "up0", "up"]);
    net.link("core", "to-a", "10.91.1.1/24", "a", "eth0", "10.91.1.2/24");
    net.link("core", "to-b", "10.91.2.1/24", "b", "eth0", "10.91.2.2/24");
    net.route("a", "10.91.1.1");
    net.route("b", "10.91.2.1");
    net.forward("core");
    // Removed with the uplink when the namespaces go.
    for nodes in ["10.91.1.0/24", "10.91.2.0/24"] {
        run(&["ip", "route", "add", nodes, "via", "10.91.0.2"]);
    }
    let postgres = ferry_store::testing::TempPostgres::start_in(
        &net.name("core"),
        "10.91.0.2",
        5432,
        "10.91.0.0/16",
    )
    .unwrap();
    let database = postgres.fresh_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut smtp = Smtp::reserve_on(dir.path(), "10.91.0.1".parse().unwrap());
    smtp.start();
    let url = smtp.url();
    // The janitor looks every second, so that a short delivery's reminder
    // and expiry fall inside the test.
    let config = dir.path().join("ferryd.toml");
    std::fs::write(&config, "[deliveries]\njanitor_secs = 1\n").unwrap();
    let mail: Vec<String> = [
        "--smtp",
        url.as_str(),
        "--mail-from",
        "ferry@studio.example",
        "--config",
        config.to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec();
    let mut a = Appliance::start_in(Setup {
        netns: Some(net.name("a")),
        listen: Some("10.91.1.2:8443".parse().unwrap()),
        database: Some(database),
        args: [
            vec!["--node-name".to_owned(), "ferry-a".to_owned()],
            mail.clone(),
        ]
        .concat(),
        ..Setup::default()
    });
    let b = a.another_node_in(
        "ferry-b",
        Setup {
            netns: Some(net.name("b")),
            listen: Some("10.91.2.2:8443".parse().unwrap()),
            args: mail,
            ..Setup::default()
        },
    );
    assert!(
        !a.data.join("ferry.db").exists(),
        "no SQLite beside PostgreSQL"
    );
    // One certificate for the cluster, kept in the database: ferry-b has a
    // data folder of its own, no key on disk, and the same pin, which
    // `ferryd admin --database URL fingerprint` prints from anywhere.
    assert_ne!(a.data, b.data);
    assert!(!b.data.join("tls/key.pem").exists());
    assert_eq!(b.admin(&["fingerprint"]).trim(), a.fingerprint);
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
    // The janitor (expiry and reminders) runs on one node too.
    ferry_tests::wait_for(
        "ferry-a to run the janitor",
        Duration::from_secs(30),
        || a.log().contains("node ferry-a now runs the janitor"),
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
    let editor = a.user("editor@client.example", "collaborator");
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

    // A short delivery to someone who never takes it: its expiry reminder
    // (due two thirds into its life) and its expiry come from the janitor,
    // which both nodes run but one holds at a time.
    a.user("producer@client.example", "collaborator");
    write_random(&a.share.join("proxy.mov"), MIB, 42);
    let run = sender.run(&[
        "send",
        "share=media/proxy.mov",
        "--to",
        "producer@client.example",
        "--name",
        "proxy",
        "--expires",
        "20s",
    ]);
    assert!(run.ok, "{}", run.stderr);
    // Its invitation and reminder, before a node dies: a reminder due in
    // the time a dead node's janitor waits for another to take it over
    // would find the delivery gone.
    smtp.wait_for(4, Duration::from_secs(60));

    // Both recipients' agents know both nodes; ferry-a dies while both
    // are downloading, and both finish through ferry-b.
    let servers = format!("{},{}", a.url, b.url);
    let pulls: Vec<_> = [&director, &editor]
        .into_iter()
        .map(|key| {
            let agent = a.client(key).with("FERRY_SERVER", &servers);
            ferry_tests::CutPull::start(&agent, &[])
        })
        .collect();
    a.kill();
    for pull in pulls {
        let run = pull.finish_resumed(&a.share.join("reel.mov"));
        assert!(
            run.stderr.contains(&format!("moving to {}", b.url)),
            "{}",
            run.stderr
        );
    }

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
    // Three invitations, the sender told of each recipient's completed
    // download, the short delivery's reminder and the new delivery's
    // message: seven, each once.
    let got = smtp.wait_for(7, Duration::from_secs(60));
    let mut seen: Vec<(String, String)> = got
        .iter()
        .map(|m| (m.rcpt().to_owned(), m.subject().to_owned()))
        .collect();
    let ids: std::collections::HashSet<&str> = got.iter().map(|m| m.header("message-id")).collect();
    assert_eq!(ids.len(), got.len(), "a message sent twice: {seen:?}");
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert_eq!(
        got.iter().filter(|m| m.rcpt() == "ann@example.com").count(),
        2,
        "{seen:?}"
    );
    let reminders: Vec<_> = got
        .iter()
        .filter(|m| m.subject().starts_with("proxy expires"))
        .collect();
    assert_eq!(reminders.len(), 1, "{seen:?}");
    assert_eq!(reminders[0].rcpt(), "producer@client.example");
    // The short delivery (the only one that expires here) expires once,
    // whichever node held the janitor.
    let expired = || {
        b.admin(&["audit", "--action", "delivery.expire"])
            .lines()
            .count()
    };
    ferry_tests::wait_for(
        "the short delivery to expire",
        Duration::from_secs(60),
        || expired() > 0,
    );
    assert_eq!(expired(), 1, "expired once");
    assert_eq!(smtp.messages().len(), 7, "nothing more was sent");
    assert!(
        b.admin(&["node", "list"]).contains("ferry-a\tsilent\t"),
        "ferry-a shows as silent"
    );
}

/// A node reaches PostgreSQL over TLS when its URL says `sslmode=require`,
/// checking the server's certificate against `--database-ca`; the
/// server here takes the node's role over TLS only.
#[test]
#[ignore = "needs root: the test's PostgreSQL runs as the postgres user"]
fn a_node_reaches_postgresql_over_tls() {
    let postgres = ferry_store::testing::TempPostgres::start_with_tls().unwrap();
    let url = format!(
        "{}?sslmode=require",
        postgres.fresh_database_for_ferry().unwrap()
    );
    let a = Appliance::start_in(Setup {
        database: Some(url),
        database_ca: Some(postgres.ca_file()),
        args: vec!["--node-name".into(), "ferry-a".into()],
        ..Setup::default()
    });
    // The server turns `ferry` away without TLS: that the node answers at
    // all shows it came over TLS.
    let c = a.client(&a.media_user("ann@example.com"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    write_random(&file, 4096, 35);
    let run = c.run(&["put", file.to_str().unwrap(), "share=media/in/"]);
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(
        blake3_file(&file),
        blake3_file(&a.share.join("in/notes.txt"))
    );
    assert!(a.admin(&["user", "list"]).contains("ann@example.com"));
}

/// `ferryd admin store copy` moves a used single box onto PostgreSQL: the
/// same users, shares and jobs, and its deliveries still arrive.
#[test]
#[ignore = "needs root: the test's PostgreSQL runs as the postgres user"]
fn store_copy_moves_a_used_appliance_to_postgresql() {
    let _serial = heavy_io();
    let mut a = Appliance::start();
    let c = a.client(&a.media_user("ann@example.com"));
    let director = a.user("director@client.example", "collaborator");
    let src = tempfile::tempdir().unwrap();
    write_random(&src.path().join("cut.mov"), 3 * MIB, 5);
    let put = c.run(&[
        "put",
        src.path().join("cut.mov").to_str().unwrap(),
        "share=media/in/",
    ]);
    assert!(put.ok, "{}", put.stderr);
    write_random(&a.share.join("reel.mov"), 4 * MIB, 6);
    let send = c.run(&[
        "send",
        "share=media/reel.mov",
        "--to",
        "director@client.example",
        "--name",
        "reel",
    ]);
    assert!(send.ok, "{}", send.stderr);
    let jobs = |a: &Appliance| {
        let run = a.client(&director).run(&["jobs", "--all", "--json"]);
        assert!(run.ok, "{}", run.stderr);
        let mine: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let run = c.run(&["jobs", "--all", "--json"]);
        assert!(run.ok, "{}", run.stderr);
        let theirs: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        // What a job is, not how fast it last went.
        let pick = |v: &serde_json::Value| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|j| {
                    ["id", "kind", "name", "status", "owner_email", "bytes_total"]
                        .map(|k| j[k].to_string())
                        .join(" ")
                })
                .collect::<Vec<_>>()
        };
        (pick(&mine), pick(&theirs))
    };
    let before = (
        a.admin(&["user", "list"]),
        a.admin(&["share", "list"]),
        jobs(&a),
    );
    assert_eq!(
        before.2.1.len(),
        2,
        "the put and the delivery's job: {:?}",
        before.2
    );
    a.kill();

    let database = ferry_store::testing::shared_postgres()
        .fresh_database()
        .unwrap();
    let copied = a.admin(&["store", "copy", "--to", &database]);
    assert!(copied.contains("users\t3\n"), "{copied}");
    assert!(copied.contains("jobs\t2\n"), "{copied}");
    // A second copy finds the target in use and changes nothing.
    let again = std::process::Command::new(ferry_tests::bin("ferryd"))
        .args(["admin", "--data"])
        .arg(&a.data)
        .args(["store", "copy", "--to", &database])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already holds an appliance"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    a.setup.database = Some(database);
    a.restart();
    let after = (
        a.admin(&["user", "list"]),
        a.admin(&["share", "list"]),
        jobs(&a),
    );
    assert_eq!(before, after);
    // The delivery made on SQLite arrives from PostgreSQL's appliance.
    let into = tempfile::tempdir().unwrap();
    let pull = a
        .client(&director)
        .run(&["pull", "--into", into.path().to_str().unwrap()]);
    assert!(pull.ok, "{}", pull.stderr);
    assert_eq!(
        blake3_file(&a.share.join("reel.mov")),
        blake3_file(&into.path().join("reel/reel.mov"))
    );
}
