//! Faults the appliance must survive without corruption. (Issue 10's
//! suite grows here.)

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use ferry_tests::bin;

/// kill -9 of a process in the middle of bursts of job updates, 50 times:
/// after each, SQLite's integrity check passes and every job's counters
/// agree with its tasks (no update is half applied).
#[test]
fn the_database_survives_kill_9_during_job_updates() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ferry.db");
    // A fixed sequence of kill moments, spread over 5–80 ms.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..50 {
        let mut child = Command::new(bin("ferry-store-burst"))
            .arg(&db)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ferry-store-burst");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready", "round {round}");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // The moment of the kill is the fault being injected, not a wait
        // for a condition.
        std::thread::sleep(Duration::from_millis(5 + seed % 75));
        child.kill().unwrap();
        child.wait().unwrap();

        let conn = rusqlite::Connection::open(&db).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "round {round}");
        let disagree: i64 = conn
            .query_row(
                "SELECT count(*) FROM jobs j WHERE EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = j.id) AND (
                     j.files_total != (SELECT count(*) FROM tasks t WHERE t.job_id = j.id AND t.status != 'excluded')
                  OR j.files_done != (SELECT count(*) FROM tasks t WHERE t.job_id = j.id AND t.status = 'done')
                  OR j.bytes_done != (SELECT coalesce(sum(t.bytes_done), 0) FROM tasks t
                                      WHERE t.job_id = j.id AND t.status = 'done'))",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            disagree, 0,
            "round {round}: a job's counters disagree with its tasks"
        );
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    let jobs: i64 = conn
        .query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
        .unwrap();
    assert!(jobs >= 50, "each round committed work ({jobs} jobs)");
}
