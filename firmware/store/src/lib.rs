//! Ferry's durable state, in one SQLite database.
//!
//! The database runs in WAL mode with foreign keys on; its schema moves
//! forward only, one numbered migration at a time, recorded in SQLite's
//! `user_version`. Every query lives in this crate behind a typed method, so
//! the daemon and the web admin never write SQL, and every value that comes
//! back is a typed row.
//!
//! Secrets never rest in clear: passwords are argon2id hashes and API keys
//! are stored as their BLAKE3 hash (a key is shown once, when created).

mod deliveries;
mod events;
mod invitations;
mod jobs;
mod keys;
mod outbox;
mod schema;
mod settings;
mod shares;
mod tasks;
mod users;
mod websessions;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

pub use deliveries::{Delivery, DeliveryId, DeliveryMade, DeliveryPlan, NewDelivery};
pub use events::{Event, NewEvent};
pub use invitations::Invitation;
pub use jobs::{Job, JobFilter, JobId, JobKind, JobStatus, NewJob};
pub use keys::{ApiKey, ApiKeyId, NewApiKey};
pub use outbox::{NewMail, OutboxCounts, OutboxMail};
pub use shares::{Access, Share, ShareId};
pub use tasks::{NewTask, Task, TaskId, TaskStatus};
pub use users::{Role, User, UserId, UserStatus};
pub use websessions::{NewWebSession, WebSession};

/// A failure of the store, in terms its callers can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "database schema version {found} is newer than this build knows ({known}); upgrade Ferry"
    )]
    FutureSchema { found: i64, known: i64 },
    #[error("password hashing failed: {0}")]
    PasswordHash(String),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Handle to the database. Cheap to share behind an `Arc`; calls are
/// serialised by a mutex, which suits SQLite's single writer.
pub struct Store {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its
    /// schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// A throwaway database, for tests.
    pub fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self> {
        // WAL lets readers run beside the writer; NORMAL sync is durable
        // across process crashes and loses at most the last commits on
        // power loss, which the transfer layer tolerates (it re-checks files).
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        schema::migrate(&mut conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    /// The schema version now in force.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// `PRAGMA integrity_check`: "ok" when the file is sound.
    pub fn integrity_check(&self) -> Result<String> {
        Ok(self
            .conn()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written
        // (statements are atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Maps a unique-constraint failure to `Conflict(what)`.
fn conflict(err: rusqlite::Error, what: impl FnOnce() -> String) -> StoreError {
    match &err {
        rusqlite::Error::SqliteFailure(e, _)
            if e.code == rusqlite::ErrorCode::ConstraintViolation
                && (e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY) =>
        {
            StoreError::Conflict(what())
        }
        _ => StoreError::Sqlite(err),
    }
}

/// 32 random bytes from the operating system's CSPRNG, hex-encoded.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
