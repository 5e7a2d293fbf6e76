//! Forward-only schema migrations.
//!
//! Migration N takes the schema from version N-1 to N and runs in one
//! transaction with the version bump, so a crash leaves either the old or
//! the new schema. Never edit a migration that has shipped: add a new one.

use rusqlite::Connection;

use crate::{Result, StoreError};

const MIGRATIONS: &[&str] = &[
    // 1: users, keys, shares, settings, audit log, jobs and tasks.
    r#"
    CREATE TABLE users (
        id              INTEGER PRIMARY KEY,
        email           TEXT NOT NULL UNIQUE COLLATE NOCASE,
        name            TEXT NOT NULL DEFAULT '',
        role            TEXT NOT NULL CHECK (role IN ('admin', 'employee', 'collaborator')),
        status          TEXT NOT NULL CHECK (status IN ('invited', 'active', 'disabled')),
        password_hash   TEXT,
        must_change_password INTEGER NOT NULL DEFAULT 0,
        notify          INTEGER NOT NULL DEFAULT 1,
        created_at      INTEGER NOT NULL
    );

    CREATE TABLE api_keys (
        id              INTEGER PRIMARY KEY,
        user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name            TEXT NOT NULL,
        key_hash        BLOB NOT NULL UNIQUE,
        prefix          TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        last_used_at    INTEGER,
        revoked_at      INTEGER
    );
    CREATE INDEX api_keys_user ON api_keys(user_id);

    -- Root shares have no parent and an absolute path; shares are folders
    -- inside a root share (path relative to it). One namespace for both.
    CREATE TABLE shares (
        id              INTEGER PRIMARY KEY,
        name            TEXT NOT NULL UNIQUE,
        parent_id       INTEGER REFERENCES shares(id) ON DELETE RESTRICT,
        path            TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        CHECK ((parent_id IS NULL) = (substr(path, 1, 1) = '/'))
    );

    CREATE TABLE share_acl (
        share_id        INTEGER NOT NULL REFERENCES shares(id) ON DELETE CASCADE,
        user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        can_read        INTEGER NOT NULL,
        can_write       INTEGER NOT NULL,
        PRIMARY KEY (share_id, user_id)
    );

    CREATE TABLE settings (
        key             TEXT PRIMARY KEY,
        value           TEXT NOT NULL
    );

    CREATE TABLE events (
        id              INTEGER PRIMARY KEY,
        at              INTEGER NOT NULL,
        user_id         INTEGER REFERENCES users(id) ON DELETE SET NULL,
        address         TEXT,
        action          TEXT NOT NULL,
        subject         TEXT NOT NULL DEFAULT '',
        detail          TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX events_at ON events(at);

    CREATE TABLE jobs (
        id              INTEGER PRIMARY KEY,
        kind            TEXT NOT NULL CHECK (kind IN ('upload', 'download', 'put', 'get')),
        name            TEXT NOT NULL,
        owner_id        INTEGER NOT NULL REFERENCES users(id),
        share_id        INTEGER REFERENCES shares(id),
        folder          TEXT NOT NULL DEFAULT '',
        status          TEXT NOT NULL CHECK (status IN ('queued', 'running', 'paused', 'failed', 'aborted', 'done')),
        purged          INTEGER NOT NULL DEFAULT 0,
        files_total     INTEGER NOT NULL DEFAULT 0,
        files_done      INTEGER NOT NULL DEFAULT 0,
        bytes_total     INTEGER NOT NULL DEFAULT 0,
        bytes_done      INTEGER NOT NULL DEFAULT 0,
        bytes_skipped   INTEGER NOT NULL DEFAULT 0,
        rate            INTEGER NOT NULL DEFAULT 0,
        retries         INTEGER NOT NULL DEFAULT 0,
        error           TEXT,
        client_address  TEXT,
        created_at      INTEGER NOT NULL,
        started_at      INTEGER,
        finished_at     INTEGER
    );
    CREATE INDEX jobs_owner ON jobs(owner_id, id);
    CREATE INDEX jobs_status ON jobs(status, id);

    CREATE TABLE tasks (
        id              INTEGER PRIMARY KEY,
        job_id          INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        path            TEXT NOT NULL,
        size            INTEGER NOT NULL,
        priority        INTEGER NOT NULL DEFAULT 500 CHECK (priority BETWEEN 1 AND 1000),
        status          TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'excluded')),
        bytes_done      INTEGER NOT NULL DEFAULT 0,
        digest          TEXT,
        finished_at     INTEGER,
        UNIQUE (job_id, path)
    );
    "#,
    // 2: deliveries (a name, a sender, a folder in a share, an expiry),
    // with jobs tied to them and recipients on download jobs.
    r#"
    CREATE TABLE deliveries (
        id              INTEGER PRIMARY KEY,
        name            TEXT NOT NULL,
        sender_id       INTEGER NOT NULL REFERENCES users(id),
        share_id        INTEGER NOT NULL REFERENCES shares(id),
        folder          TEXT NOT NULL,
        onprem          INTEGER NOT NULL DEFAULT 0,
        notify_progress INTEGER NOT NULL DEFAULT 0,
        created_at      INTEGER NOT NULL,
        expires_at      INTEGER NOT NULL,
        expired         INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX deliveries_expiry ON deliveries(expired, expires_at);

    ALTER TABLE jobs ADD COLUMN delivery_id INTEGER REFERENCES deliveries(id);
    ALTER TABLE jobs ADD COLUMN recipient_id INTEGER REFERENCES users(id);
    ALTER TABLE jobs ADD COLUMN next_retry_at INTEGER;
    CREATE INDEX jobs_recipient ON jobs(recipient_id, id);
    CREATE INDEX jobs_delivery ON jobs(delivery_id);

    ALTER TABLE tasks ADD COLUMN mtime_ns INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX tasks_job ON tasks(job_id, status);
    "#,
    // 3: a job's own target rate in bits per second (NULL: the site's).
    r#"
    ALTER TABLE jobs ADD COLUMN target_rate INTEGER;
    "#,
    // 4: web admin sessions (a browser's login), by the hash of the cookie.
    r#"
    CREATE TABLE web_sessions (
        token_hash      BLOB PRIMARY KEY,
        user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf            TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        last_seen_at    INTEGER NOT NULL,
        expires_at      INTEGER NOT NULL
    );
    CREATE INDEX web_sessions_user ON web_sessions(user_id);
    "#,
    // 5: the mail outbox (every message is written here before it is
    // sent), invitation tokens, and which reminders a delivery has had.
    r#"
    CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY,
        kind            TEXT NOT NULL,
        recipient       TEXT NOT NULL,
        subject         TEXT NOT NULL,
        body_text       TEXT NOT NULL,
        body_html       TEXT NOT NULL,
        message_id      TEXT NOT NULL UNIQUE,
        dedupe          TEXT UNIQUE,
        created_at      INTEGER NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        sending_since   INTEGER,
        sent_at         INTEGER,
        failed_at       INTEGER,
        last_error      TEXT
    );
    CREATE INDEX outbox_due ON outbox(sent_at, failed_at, next_attempt_at);

    CREATE TABLE invitations (
        token_hash      BLOB PRIMARY KEY,
        user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at      INTEGER NOT NULL,
        expires_at      INTEGER NOT NULL,
        used_at         INTEGER
    );
    CREATE INDEX invitations_user ON invitations(user_id);

    ALTER TABLE deliveries ADD COLUMN reminders INTEGER NOT NULL DEFAULT 0;
    "#,
    // 6: the rulebook's facts (who holds a paused or aborted job, who set
    // its cap, how many times it was retried by hand), service accounts,
    // keys minted by logins, and what each delivery's upload committed.
    r#"
    ALTER TABLE jobs ADD COLUMN held_by TEXT CHECK (held_by IN ('recipient', 'sender', 'admin'));
    ALTER TABLE jobs ADD COLUMN cap_set_by TEXT CHECK (cap_set_by IN ('recipient', 'sender', 'admin'));
    ALTER TABLE jobs ADD COLUMN round INTEGER NOT NULL DEFAULT 0;
    -- Holds and caps from before they had owners bind everyone but admins.
    UPDATE jobs SET held_by = 'sender' WHERE status IN ('paused', 'aborted');
    UPDATE jobs SET cap_set_by = 'admin' WHERE target_rate IS NOT NULL;

    ALTER TABLE users ADD COLUMN kind TEXT NOT NULL DEFAULT 'person' CHECK (kind IN ('person', 'service'));

    ALTER TABLE api_keys ADD COLUMN origin TEXT NOT NULL DEFAULT 'made' CHECK (origin IN ('login', 'made'));
    UPDATE api_keys SET origin = 'login' WHERE name LIKE 'login from %';

    CREATE TABLE commits (
        delivery_id     INTEGER NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
        path            TEXT NOT NULL,
        size            INTEGER NOT NULL,
        mtime_ns        INTEGER NOT NULL,
        digest          TEXT NOT NULL,
        committed_at    INTEGER NOT NULL,
        PRIMARY KEY (delivery_id, path)
    );
    "#,
    // 7: a direct job whose client went away is `interrupted` (what arrived
    // is kept; the same command continues it), and a job remembers the key
    // its client's run gave, so that a rerun continues it. SQLite cannot
    // change a CHECK, so the table is rebuilt (foreign keys are off while
    // migrations run, and checked after).
    r#"
    CREATE TABLE jobs_new (
        id              INTEGER PRIMARY KEY,
        kind            TEXT NOT NULL CHECK (kind IN ('upload', 'download', 'put', 'get')),
        name            TEXT NOT NULL,
        owner_id        INTEGER NOT NULL REFERENCES users(id),
        share_id        INTEGER REFERENCES shares(id),
        folder          TEXT NOT NULL DEFAULT '',
        status          TEXT NOT NULL CHECK (status IN ('queued', 'running', 'paused', 'interrupted', 'failed', 'aborted', 'done')),
        purged          INTEGER NOT NULL DEFAULT 0,
        files_total     INTEGER NOT NULL DEFAULT 0,
        files_done      INTEGER NOT NULL DEFAULT 0,
        bytes_total     INTEGER NOT NULL DEFAULT 0,
        bytes_done      INTEGER NOT NULL DEFAULT 0,
        bytes_skipped   INTEGER NOT NULL DEFAULT 0,
        rate            INTEGER NOT NULL DEFAULT 0,
        retries         INTEGER NOT NULL DEFAULT 0,
        error           TEXT,
        client_address  TEXT,
        created_at      INTEGER NOT NULL,
        started_at      INTEGER,
        finished_at     INTEGER,
        delivery_id     INTEGER REFERENCES deliveries(id),
        recipient_id    INTEGER REFERENCES users(id),
        next_retry_at   INTEGER,
        target_rate     INTEGER,
        held_by         TEXT CHECK (held_by IN ('recipient', 'sender', 'admin')),
        cap_set_by      TEXT CHECK (cap_set_by IN ('recipient', 'sender', 'admin')),
        round           INTEGER NOT NULL DEFAULT 0,
        resume_key      TEXT
    );
    INSERT INTO jobs_new (id, kind, name, owner_id, share_id, folder, status, purged,
        files_total, files_done, bytes_total, bytes_done, bytes_skipped, rate, retries,
        error, client_address, created_at, started_at, finished_at, delivery_id,
        recipient_id, next_retry_at, target_rate, held_by, cap_set_by, round)
    SELECT id, kind, name, owner_id, share_id, folder, status, purged,
        files_total, files_done, bytes_total, bytes_done, bytes_skipped, rate, retries,
        error, client_address, created_at, started_at, finished_at, delivery_id,
        recipient_id, next_retry_at, target_rate, held_by, cap_set_by, round
    FROM jobs;
    DROP TABLE jobs;
    ALTER TABLE jobs_new RENAME TO jobs;
    CREATE INDEX jobs_owner ON jobs(owner_id, id);
    CREATE INDEX jobs_status ON jobs(status, id);
    CREATE INDEX jobs_recipient ON jobs(recipient_id, id);
    CREATE INDEX jobs_delivery ON jobs(delivery_id);
    CREATE INDEX jobs_resume ON jobs(owner_id, resume_key);
    "#,
    // 8: watch folders and what each delivered (by the entry's identity on
    // disk, so a rename makes no second delivery), and jobs an admin marked
    // urgent (the bandwidth schedule does not slow them).
    r#"
    CREATE TABLE watches (
        id INTEGER PRIMARY KEY,
        folder TEXT NOT NULL UNIQUE,
        sender TEXT NOT NULL,
        recipients TEXT NOT NULL,
        priorities TEXT NOT NULL,
        settle_secs INTEGER NOT NULL,
        mode TEXT NOT NULL CHECK (mode IN ('folder', 'file')),
        name TEXT NOT NULL,
        origin TEXT NOT NULL CHECK (origin IN ('config', 'admin')),
        baselined INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE watch_entries (
        watch_id INTEGER NOT NULL REFERENCES watches(id) ON DELETE CASCADE,
        identity TEXT NOT NULL,
        path TEXT NOT NULL,
        delivery_id INTEGER REFERENCES deliveries(id) ON DELETE SET NULL,
        seen_at INTEGER NOT NULL,
        PRIMARY KEY (watch_id, identity)
    );
    ALTER TABLE jobs ADD COLUMN urgent INTEGER NOT NULL DEFAULT 0;
    "#,
    // 9: the appliance's nodes: each ferryd serving this database, its
    // heartbeat, and whether an admin is draining it; and which node runs
    // each task that must run once (the mailer, the janitor), until when.
    r#"
    CREATE TABLE nodes (
        name TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        version TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        seen_at INTEGER NOT NULL,
        sessions INTEGER NOT NULL DEFAULT 0,
        draining INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE singletons (
        task TEXT PRIMARY KEY,
        node TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    );
    "#,
    // 10: the node that carries a running job's session, so that a node
    // that restarts marks only its own jobs as cut.
    r#"
    ALTER TABLE jobs ADD COLUMN node TEXT;
    "#,
    // 11: the appliance's certificate and key, in the state every node
    // shares, so that one pin fits every node.
    r#"
    CREATE TABLE certificate (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        cert_pem TEXT NOT NULL,
        key_pem TEXT NOT NULL
    );
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::FutureSchema {
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    if current == SCHEMA_VERSION {
        return Ok(());
    }
    // A migration that rebuilds a table drops the old one: with foreign
    // keys on, that would cascade into the rows that refer to it. They are
    // off while migrations run (a pragma a transaction cannot change), and
    // every reference is checked before they are on again.
    let enforced: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        let broken: i64 =
            tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })?;
        if broken > 0 {
            return Err(StoreError::Migration {
                version: i as i64 + 1,
                why: format!("{broken} rows refer to rows that are not there"),
            });
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    if enforced {
        conn.pragma_update(None, "foreign_keys", "ON")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_database_moves_forward_and_keeps_its_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO users (email, role, status, created_at) VALUES ('a@b.io', 'admin', 'active', 0)",
            [],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        // Running again changes nothing.
        migrate(&mut conn).unwrap();
    }

    #[test]
    fn a_newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(StoreError::FutureSchema { .. })
        ));
    }

    #[test]
    fn rebuilding_the_jobs_table_keeps_jobs_and_the_tasks_that_refer_to_them() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        for sql in &MIGRATIONS[..6] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 6).unwrap();
        conn.execute_batch(
            "INSERT INTO users (email, role, status, created_at) VALUES ('a@b.io', 'admin', 'active', 0);
             INSERT INTO jobs (kind, name, owner_id, status, created_at, target_rate, held_by)
                 VALUES ('put', 'a put', 1, 'paused', 5, 1000, 'admin');
             INSERT INTO tasks (job_id, path, size, status) VALUES (1, 'a.mov', 10, 'queued');",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let (status, rate, held): (String, i64, String) = conn
            .query_row(
                "SELECT status, target_rate, held_by FROM jobs WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            (status.as_str(), rate, held.as_str()),
            ("paused", 1000, "admin")
        );
        let tasks: i64 = conn
            .query_row("SELECT count(*) FROM tasks WHERE job_id = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(tasks, 1);
        // The new status is allowed, foreign keys are enforced again, and
        // deleting a job still takes its tasks with it.
        conn.execute("UPDATE jobs SET status = 'interrupted' WHERE id = 1", [])
            .unwrap();
        let on: bool = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert!(on);
        conn.execute("DELETE FROM jobs WHERE id = 1", []).unwrap();
        let tasks: i64 = conn
            .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tasks, 0);
    }
}
