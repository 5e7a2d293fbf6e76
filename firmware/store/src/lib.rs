//! Ferry's durable state.
//!
//! The services of the daemon reach it only through the [`Store`] trait:
//! async, typed methods, one unit of work each (a delivery with all its
//! jobs and tasks is one call, one transaction). [`SqlStore`] implements it
//! over [`Database`], which holds the state in one of two engines. SQLite
//! is the embedded default: WAL mode with foreign keys on, its
//! schema moving forward only, one numbered migration at a time, recorded
//! in `user_version`. PostgreSQL is the engine several nodes share (a
//! pool of connections per node, the same schema in its own types, see
//! `postgres_schema`). Every query is written once for both (see `db`).
//! Calls run on tokio's blocking pool, never on an async worker thread,
//! because both block (on the disk, the network, argon2, and SQLite's
//! one writer). The trait assumes nothing engine-only: times are Unix
//! seconds, ids are integers, and what must be atomic is one method.
//!
//! Every query lives in this crate, so the daemon and the web admin never
//! write SQL, and every value that comes back is a typed row. Secrets
//! never rest in clear: passwords are argon2id hashes and API keys are
//! stored as their BLAKE3 hash (a key is shown once, when created).

mod certificate;
mod commits;
mod copy;
mod db;
mod deliveries;
mod events;
mod invitations;
mod jobs;
mod keys;
mod nodes;
mod outbox;
mod postgres_schema;
mod schema;
mod settings;
mod shares;
mod sql_store;
mod tasks;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod users;
mod watches;
mod websessions;

use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_proto::SharePath;
use rusqlite::Connection;

use db::{Conn, params};
pub use db::{DbError, Engine, Value};

pub use certificate::Certificate;
pub use commits::Commit;
pub use copy::Copied;
pub use deliveries::{Delivery, DeliveryMade, DeliveryPlan, NewDelivery};
pub use events::{Event, NewEvent};
pub use ferry_domain::rules::{Access, RateCap};
pub use ferry_domain::{
    AccountKind, AuditAction, DeliveryId, JobAction, JobId, JobKind, JobStatus, Party, Role,
    ShareId, TaskId, TaskStatus, UserId, UserStatus,
};
pub use invitations::Invitation;
pub use jobs::{Job, JobFilter, NewJob};
pub use keys::{ApiKey, ApiKeyId, KeyCheck, KeyOrigin, NewApiKey};
pub use nodes::{Heartbeat, Node};
pub use outbox::{NewMail, OutboxCounts, OutboxMail, UnsentMail};
pub use shares::Share;
pub use sql_store::SqlStore;
pub use tasks::{NewTask, Task};
pub use users::{User, check_email};
pub use watches::{NewWatch, Watch, WatchEntry, WatchId, WatchOrigin, Watched};
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
    /// A migration left the database inconsistent; it was rolled back.
    #[error("moving the database to schema version {version} failed: {why}")]
    Migration { version: i64, why: String },
    #[error("password hashing failed: {0}")]
    PasswordHash(String),
    /// The engine's own failure; its text already says which engine.
    #[error(transparent)]
    Database(#[from] DbError),
    /// The blocking task that ran the call died (a panic in it).
    #[error("the database call did not finish: {0}")]
    Lost(String),
    /// SQLite's file could not be made or made private.
    #[error("the database file {0}")]
    File(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything the daemon keeps, as typed, async calls. See the crate's
/// documentation for what an implementation must keep.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    // --- What uploads committed ---

    /// Records a file the upload of `delivery` committed (again, if it
    /// wrote the same path twice).
    async fn record_commit(
        &self,
        delivery: DeliveryId,
        path: &str,
        size: i64,
        mtime_ns: i64,
        digest: &str,
    ) -> Result<()>;

    /// Everything the upload of `delivery` committed, by path.
    async fn commits(&self, delivery: DeliveryId) -> Result<Vec<Commit>>;

    // --- Deliveries ---

    async fn create_delivery(&self, d: &NewDelivery) -> Result<DeliveryId>;

    async fn delivery(&self, id: DeliveryId) -> Result<Delivery>;

    /// Deliveries past their expiry that have not been cleaned up yet.
    async fn expired_deliveries(&self, at: i64) -> Result<Vec<Delivery>>;

    /// Deliveries still live, for reminders.
    async fn live_deliveries(&self) -> Result<Vec<Delivery>>;

    /// Records that reminder `bit` went out for a delivery; true the first
    /// time only, so each reminder is queued once.
    async fn mark_reminder(&self, id: DeliveryId, bit: i64) -> Result<bool>;

    /// Marks a delivery expired and ends its unfinished jobs.
    async fn expire_delivery(&self, id: DeliveryId) -> Result<()>;

    /// Makes a delivery with its jobs, tasks and new recipients, all or
    /// nothing.
    async fn make_delivery(&self, plan: &DeliveryPlan) -> Result<DeliveryMade>;

    // --- The audit log ---

    async fn record_event(&self, e: &NewEvent) -> Result<()>;

    /// Newest first, `limit` events older than `before` (an event id).
    async fn list_events(
        &self,
        limit: u32,
        before: Option<i64>,
        action_prefix: Option<&str>,
    ) -> Result<Vec<Event>>;

    // --- Invitations ---

    /// A new token for `user`, valid for `ttl_secs`. Earlier unused tokens
    /// of the user stop working: only the newest invitation counts.
    async fn create_invitation(&self, user: UserId, ttl_secs: i64) -> Result<String>;

    async fn invitation(&self, token: &str) -> Result<Invitation>;

    /// Spends a token: sets the user's password (activating an invited
    /// user) in the same transaction that marks the token used, so a token
    /// works exactly once.
    async fn accept_invitation(&self, token: &str, password: &str) -> Result<User>;

    // --- Jobs ---

    async fn create_job(&self, job: &NewJob) -> Result<JobId>;
    /// The latest unfinished job of `owner` of this kind that a client run
    /// named `key` opened (a rerun of the same command continues it).
    async fn resumable_job(&self, owner: UserId, kind: JobKind, key: &str)
    -> Result<Option<JobId>>;
    /// A job runs again for a new session of its client, from `client`.
    async fn reopen_job(&self, id: JobId, client: &str) -> Result<()>;

    async fn job(&self, id: JobId) -> Result<Job>;

    /// Records the plan's totals once they are known.
    async fn set_job_totals(&self, id: JobId, files: i64, bytes: i64) -> Result<()>;

    /// Records progress of a running job.
    async fn set_job_progress(
        &self,
        id: JobId,
        files_done: i64,
        bytes_done: i64,
        bytes_skipped: i64,
        rate: i64,
    ) -> Result<()>;

    /// Records the current rate of a delivery job (whose done counts come
    /// from its tasks) and the bytes its session found already there.
    async fn set_job_rate(&self, id: JobId, rate: i64, bytes_skipped: i64) -> Result<()>;

    /// Sets a job's own cap (bits per second, and who set it), or gives
    /// it back the site's with `None`.
    async fn set_job_cap(&self, id: JobId, cap: Option<RateCap>) -> Result<()>;

    /// Marks a job urgent (the bandwidth schedule does not slow it), or
    /// not.
    async fn set_job_urgent(&self, id: JobId, urgent: bool) -> Result<()>;

    /// Moves a job to `status`, stamping start and finish times. A job
    /// that leaves a hold (paused, aborted) is no longer held by anyone.
    async fn set_job_status(&self, id: JobId, status: JobStatus, error: Option<&str>)
    -> Result<()>;

    /// Pauses or aborts a job on behalf of `by`, who then holds it.
    async fn hold_job(
        &self,
        id: JobId,
        status: JobStatus,
        by: Party,
        error: Option<&str>,
    ) -> Result<()>;

    async fn list_jobs(&self, f: &JobFilter) -> Result<Vec<Job>>;

    /// How many jobs are in each status, purged ones left out; every
    /// status is listed.
    async fn count_jobs_by_status(&self) -> Result<Vec<(JobStatus, i64)>>;

    /// Jobs node `node` left `running` when it stopped without finishing
    /// them (other nodes' running jobs are theirs): direct transfers are
    /// marked interrupted (their client runs them again); delivery jobs go
    /// back to the queue, for their client to resume.
    async fn fail_interrupted_jobs(&self, node: &str, reason: &str) -> Result<usize>;

    /// Node `node` carries the job's session now.
    async fn carry_job(&self, id: JobId, node: &str) -> Result<()>;

    /// Records a failure that will be retried at `retry_at` (or not at all
    /// when `None`), counting it.
    async fn fail_job(&self, id: JobId, error: &str, retry_at: Option<i64>) -> Result<()>;

    /// Hides a job from listings for good; its tasks stay (audit).
    async fn purge_job(&self, id: JobId) -> Result<()>;

    /// Clears the retry counter and queues the job again (a new round:
    /// its failure, if it fails again, is announced again).
    async fn requeue_job(&self, id: JobId) -> Result<()>;

    // --- Tasks (a job's files) ---

    /// Adds files to a job (one transaction) and updates its totals.
    async fn add_tasks(&self, job: JobId, tasks: &[NewTask]) -> Result<()>;

    /// A job's tasks, highest priority first, then by path.
    async fn tasks(&self, job: JobId) -> Result<Vec<Task>>;

    /// Records a file as delivered, and the job's progress with it.
    async fn task_done(&self, job: JobId, path: &str, digest: Option<&str>) -> Result<()>;

    /// Records how many bytes of a file not yet delivered have reached its
    /// recipient (a browser download partly served), and the job's
    /// progress with it. A delivered file is left as it is.
    async fn task_progress(&self, job: JobId, path: &str, bytes_done: i64) -> Result<()>;

    /// Sets the priority of the named tasks; returns how many changed.
    async fn set_task_priority(&self, job: JobId, paths: &[String], priority: u16)
    -> Result<usize>;

    /// How many live jobs (not purged, not finished) outside `except`'s
    /// delivery use the file at `share_path` (folder and path joined).
    async fn live_users_of(
        &self,
        share: ShareId,
        share_path: &str,
        except: DeliveryId,
    ) -> Result<i64>;

    // --- API keys ---

    async fn create_api_key(
        &self,
        user: UserId,
        name: &str,
        origin: KeyOrigin,
    ) -> Result<NewApiKey>;

    /// What a presented key is, recording the use of a live one. Whether
    /// its account may use it (disabled, not yet active) is not decided
    /// here: the rulebook says, and the caller is told which.
    async fn check_api_key(&self, secret: &str) -> Result<KeyCheck>;

    async fn list_api_keys(&self, user: UserId) -> Result<Vec<ApiKey>>;

    /// Revokes a key of `user` (admins pass the key's owner).
    async fn revoke_api_key(&self, user: UserId, key: ApiKeyId) -> Result<()>;

    /// Revokes every live key `user`'s logins minted; returns how many.
    async fn revoke_login_keys(&self, user: UserId, except: Option<ApiKeyId>) -> Result<usize>;

    // --- Users ---

    /// Creates a user. With a password the user is active; without one the
    /// user is invited and sets it later.
    async fn create_user(
        &self,
        email: &str,
        name: &str,
        role: Role,
        password: Option<&str>,
    ) -> Result<User>;

    /// Creates a service account: active at once, with no password (it
    /// signs in only with API keys).
    async fn create_service_account(&self, email: &str, name: &str, role: Role) -> Result<User>;

    async fn user(&self, id: UserId) -> Result<User>;

    async fn user_by_email(&self, email: &str) -> Result<Option<User>>;

    async fn list_users(&self) -> Result<Vec<User>>;

    /// Checks a password. `None` for an unknown, disabled or password-less
    /// user as for a wrong password: the caller cannot tell which, nor can
    /// an attacker from the time it takes.
    async fn verify_password(&self, email: &str, password: &str) -> Result<Option<User>>;

    /// Sets a new password, activates an invited user and clears the
    /// must-change flag.
    async fn set_password(&self, id: UserId, password: &str) -> Result<()>;

    /// Marks a password as one-time: the user must change it at next login.
    async fn set_must_change_password(&self, id: UserId, must: bool) -> Result<()>;

    /// Email notifications on or off for a user (invitations always go).
    async fn set_notify(&self, id: UserId, notify: bool) -> Result<()>;

    async fn set_role(&self, id: UserId, role: Role) -> Result<()>;

    async fn set_status(&self, id: UserId, status: UserStatus) -> Result<()>;

    async fn set_user_name(&self, id: UserId, name: &str) -> Result<()>;

    async fn count_users(&self) -> Result<i64>;

    // --- Web admin sessions ---

    /// Starts a session for `user` that lasts at most `lifetime_secs`.
    async fn create_web_session(&self, user: UserId, lifetime_secs: i64) -> Result<NewWebSession>;

    /// The session behind a cookie, when it is known, neither expired nor
    /// idle for more than `idle_secs`, and its user is active. Using it
    /// renews the idle deadline.
    async fn web_session(&self, token: &str, idle_secs: i64) -> Result<Option<WebSession>>;

    /// Whether a session still holds (known, unexpired, user active),
    /// without renewing it: for a page that stays open, such as a live
    /// stream, which must not keep the session alive by itself.
    async fn web_session_alive(&self, token: &str, idle_secs: i64) -> Result<bool>;

    /// Logs a browser out.
    async fn end_web_session(&self, token: &str) -> Result<()>;

    /// Logs a user out everywhere (disabled, password reset).
    async fn end_web_sessions_of(&self, user: UserId) -> Result<usize>;

    /// Forgets expired sessions; returns how many.
    async fn sweep_web_sessions(&self, idle_secs: i64) -> Result<usize>;

    // --- Shares and grants ---

    /// Adds a root share over an absolute folder, which must exist.
    async fn add_root_share(&self, name: &str, path: &Path) -> Result<Share>;

    /// Adds a share as `folder` inside the root share `root`. The folder is
    /// created by the caller (which knows how to do it beneath the root).
    async fn add_share(&self, name: &str, root: &str, folder: &SharePath) -> Result<Share>;

    async fn share_by_name(&self, name: &str) -> Result<Option<Share>>;

    async fn share(&self, id: ShareId) -> Result<Share>;

    async fn list_shares(&self) -> Result<Vec<Share>>;

    /// Removes a share's record (never its files). A root share with shares
    /// inside cannot be removed.
    async fn remove_share(&self, name: &str) -> Result<()>;

    /// Grants (or changes) a user's access to a share. Granting neither read
    /// nor write removes the grant.
    async fn grant(&self, share: ShareId, user: UserId, access: Access) -> Result<()>;

    /// Who has been granted what on a share.
    async fn share_acl(&self, share: ShareId) -> Result<Vec<(UserId, String, Access)>>;

    /// A user's access to a share: everything for admins, otherwise the
    /// grants on the share and on its root share combined.
    async fn access(&self, user: &User, share: &Share) -> Result<Access>;

    // --- Settings ---

    async fn setting(&self, key: &str) -> Result<Option<String>>;

    async fn set_setting(&self, key: &str, value: &str) -> Result<()>;

    async fn clear_setting(&self, key: &str) -> Result<()>;

    async fn settings(&self) -> Result<Vec<(String, String)>>;

    // --- Watch folders ---

    async fn watches(&self) -> Result<Vec<Watch>>;

    async fn watch(&self, id: WatchId) -> Result<Watch>;

    /// Adds a watch; with `replace`, changes the one on the same folder
    /// instead of refusing (what it remembers stays).
    async fn put_watch(&self, w: &NewWatch, replace: bool) -> Result<Watch>;

    /// Removes a watch and what it remembers; its deliveries stay.
    async fn remove_watch(&self, id: WatchId) -> Result<()>;

    /// What a watch remembers: every entry it delivered or found there.
    async fn watch_entries(&self, id: WatchId) -> Result<Vec<WatchEntry>>;
    /// How many of a watch's entries became deliveries: counted in the
    /// database, since a file-mode watch may remember 100,000 entries.
    async fn watch_deliveries(&self, id: WatchId) -> Result<u64>;

    /// Remembers what lies in the folder as the watch begins (identity,
    /// name), delivering none of it; the watch is baselined from then on.
    async fn baseline_watch(&self, id: WatchId, entries: &[(String, String)]) -> Result<()>;

    /// A remembered entry was renamed.
    async fn rename_watch_entry(&self, id: WatchId, identity: &str, path: &str) -> Result<()>;

    // --- The appliance's nodes ---

    /// Records a node's heartbeat at `at` (Unix seconds), adding the node
    /// the first time; returns its record, drain included.
    async fn node_heartbeat(&self, beat: &Heartbeat, at: i64) -> Result<Node>;

    /// The node called `name`, if it ever ran.
    async fn node(&self, name: &str) -> Result<Option<Node>>;

    /// Every node that ever ran, by name.
    async fn nodes(&self) -> Result<Vec<Node>>;

    /// Drains a node (it grants no new sessions) or undoes it.
    async fn set_node_draining(&self, name: &str, draining: bool) -> Result<()>;

    /// Forgets a node's record.
    async fn forget_node(&self, name: &str) -> Result<()>;

    /// Takes `task` for `node` at `at`, or keeps it: true when `node`
    /// holds it now (see the nodes module for the rule).
    async fn hold_singleton(&self, task: &str, node: &str, at: i64) -> Result<bool>;

    /// Each task and the node that holds (or last held) it.
    async fn singletons(&self) -> Result<Vec<(String, String)>>;

    // --- The appliance's certificate ---

    /// The certificate and key every node serves, if one is kept.
    async fn certificate(&self) -> Result<Option<Certificate>>;

    /// Keeps `offered` unless one is kept already; returns the one kept.
    async fn offer_certificate(&self, offered: &Certificate) -> Result<Certificate>;

    /// Replaces the certificate and key.
    async fn replace_certificate(&self, new: &Certificate) -> Result<()>;

    /// Keeps a renewed chain for the key `key_pem`; false when another
    /// key is kept now.
    async fn renew_certificate(&self, key_pem: &str, chain_pem: &str) -> Result<bool>;

    // --- The mail outbox ---

    /// Queues a message; `None` when one with the same dedupe key exists.
    async fn enqueue_mail(&self, m: &NewMail, domain: &str) -> Result<Option<i64>>;

    /// Messages due now, oldest first.
    async fn due_mail(&self, limit: u32) -> Result<Vec<OutboxMail>>;

    /// Claims a message read with `attempts` attempts behind it, just
    /// before its SMTP transaction; false when another mailer claimed it
    /// first.
    async fn claim_mail(&self, id: i64, attempts: i64) -> Result<bool>;

    /// The SMTP server accepted it.
    async fn mail_sent(&self, id: i64) -> Result<()>;

    /// A temporary failure: try again at `retry_at`.
    async fn mail_retry(&self, id: i64, error: &str, retry_at: i64) -> Result<()>;

    /// The server is down: nothing unsent is tried before `until`.
    async fn mail_hold_all(&self, until: i64) -> Result<()>;

    /// A permanent failure (the server refused the recipient, say).
    async fn mail_failed(&self, id: i64, error: &str) -> Result<()>;

    /// When the next message falls due, if any is waiting.
    async fn next_mail_at(&self) -> Result<Option<i64>>;

    async fn outbox_counts(&self) -> Result<OutboxCounts>;

    /// Messages not sent, newest first: waiting ones and failed ones.
    async fn unsent_mail(&self, limit: u32) -> Result<Vec<UnsentMail>>;

    /// An unsent message is due again now; returns its recipient.
    async fn mail_again(&self, id: i64) -> Result<String>;

    /// An unsent message is dropped; returns its recipient.
    async fn mail_discard(&self, id: i64) -> Result<String>;

    // --- The database itself ---

    /// The schema version now in force.
    async fn schema_version(&self) -> Result<i64>;

    /// `PRAGMA integrity_check`: "ok" when the file is sound.
    async fn integrity_check(&self) -> Result<String>;
}

/// The blocking database behind [`SqlStore`]: one SQLite file, or a
/// pool of connections to a PostgreSQL server that several nodes share.
/// Tools and tests that run outside an async runtime may use it
/// directly; the daemon goes through [`Store`].
pub struct Database {
    engine: Backend,
}

enum Backend {
    /// SQLite has one writer: one connection, behind a lock.
    Sqlite(Mutex<Connection>),
    /// `None` only while the database is dropped (see its `Drop`).
    Postgres(Option<r2d2::Pool<db::PgManager>>),
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Backend::Postgres(pool) = &mut self.engine {
            // The driver closes each connection with a runtime of its
            // own, which cannot start on a thread that drives async tasks
            // (where a daemon's store is dropped): they close on a thread
            // of their own.
            if let Some(pool) = pool.take() {
                std::thread::scope(|s| {
                    s.spawn(move || drop(pool));
                });
            }
        }
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("engine", &self.engine())
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Opens (creating if needed) the SQLite database at `path` and brings
    /// its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        private_file(path)?;
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// A throwaway SQLite database, for tests.
    pub fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    /// Connects to the PostgreSQL database at `url`
    /// (`postgres://USER@HOST:PORT/DB`) and brings its schema up to date.
    /// Several nodes may do so at once: one migrates, the others wait.
    ///
    /// With `sslmode=require` in the URL the connection is TLS, and the
    /// server's certificate must chain to `ca` (a PEM file), or to the
    /// system's CAs when `ca` is `None`, and name the URL's host: what
    /// libpq calls `verify-full`. Without it, no TLS.
    pub fn connect(url: &str, ca: Option<&Path>) -> Result<Self> {
        let config: postgres::Config = url
            .parse()
            // Not the URL itself: it may hold a password.
            .map_err(|e| StoreError::Invalid(format!("the database URL: {e}")))?;
        let tls = match config.get_ssl_mode() {
            postgres::config::SslMode::Require => Some(postgres_tls(ca)?),
            _ => None,
        };
        let manager = db::PgManager { config, tls };
        let pool = r2d2::Pool::builder()
            .max_size(POSTGRES_CONNECTIONS)
            .min_idle(Some(2))
            // A check costs a round trip on every call; a connection the
            // server closed is found by the driver (`is_closed`) instead,
            // and the call that meets it fails and is not retried.
            .test_on_check_out(false)
            // A server that is down fails the start (and a call that finds
            // every connection busy) within 10 s, not the pool's 30.
            .connection_timeout(std::time::Duration::from_secs(10))
            .build(manager)
            .map_err(|e| DbError::Pool(e.to_string()))?;
        let db = Database {
            engine: Backend::Postgres(Some(pool)),
        };
        postgres_schema::migrate(&db.conn()?)?;
        Ok(db)
    }

    /// Opens the database `url` names: `postgres://…` (its server's
    /// certificate checked against `ca`, see [`Database::connect`]) or a
    /// SQLite file's path (`sqlite://PATH` or a plain path).
    pub fn open_url(url: &str, ca: Option<&Path>) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::connect(url, ca)
        } else {
            Self::open(Path::new(url.strip_prefix("sqlite://").unwrap_or(url)))
        }
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
        Ok(Database {
            engine: Backend::Sqlite(Mutex::new(conn)),
        })
    }

    /// Which engine holds the state.
    pub fn engine(&self) -> Engine {
        match self.engine {
            Backend::Sqlite(_) => Engine::Sqlite,
            Backend::Postgres(_) => Engine::Postgres,
        }
    }

    /// The schema version now in force.
    pub fn schema_version(&self) -> Result<i64> {
        let conn = self.conn()?;
        match conn.engine() {
            Engine::Sqlite => conn.query_row("PRAGMA user_version", params![], |r| r.get(0)),
            Engine::Postgres => postgres_schema::version(&conn),
        }
    }

    /// SQLite's `PRAGMA integrity_check`: "ok" when the file is sound.
    /// PostgreSQL checks its pages as it reads them and has no such
    /// pragma (`pg_amcheck` is its tool), so it is refused there.
    pub fn integrity_check(&self) -> Result<String> {
        let conn = self.conn()?;
        match conn.engine() {
            Engine::Sqlite => conn.query_row("PRAGMA integrity_check", params![], |r| r.get(0)),
            Engine::Postgres => Err(StoreError::Invalid(
                "PostgreSQL has no integrity check here: run pg_amcheck on its server".into(),
            )),
        }
    }

    /// A connection for one unit of work.
    pub(crate) fn conn(&self) -> Result<Conn<'_>> {
        match &self.engine {
            // A panic while holding the lock cannot leave SQLite
            // half-written (statements are atomic), so a poisoned lock is
            // still usable.
            Backend::Sqlite(c) => Ok(Conn::Sqlite(c.lock().unwrap_or_else(|e| e.into_inner()))),
            Backend::Postgres(pool) => {
                let pool = pool
                    .as_ref()
                    .ok_or_else(|| DbError::Pool("the pool is closed".into()))?;
                Ok(Conn::Postgres(Box::new(std::cell::RefCell::new(
                    pool.get().map_err(|e| DbError::Pool(e.to_string()))?,
                ))))
            }
        }
    }
}

/// Connections each PostgreSQL node keeps: enough for the API's
/// concurrent requests without holding the server's slots for nothing.
const POSTGRES_CONNECTIONS: u32 = 12;

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A duplicate key is `Conflict(what)`; anything else stays as it is.
fn conflict(err: StoreError, what: impl FnOnce() -> String) -> StoreError {
    match err {
        StoreError::Database(DbError::Duplicate(_)) => StoreError::Conflict(what()),
        e => e,
    }
}

/// 32 random bytes from the operating system's CSPRNG, hex-encoded.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The TLS a node speaks to PostgreSQL with: rustls (ring), trusting the
/// CA in `ca` or else the system's.
fn postgres_tls(ca: Option<&Path>) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls_pki_types::{CertificateDer, pem::PemObject as _};
    let mut roots = rustls::RootCertStore::empty();
    let invalid = |what: String| StoreError::Invalid(what);
    match ca {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect())
                .map_err(|e| invalid(format!("the database CA {}: {e}", path.display())))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(invalid(format!(
                    "the database CA {} holds no usable certificate",
                    path.display()
                )));
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| invalid(format!("TLS to the database: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Makes the database file readable by its owner only, before SQLite opens
/// it (SQLite gives its journal files the same mode): it holds password
/// hashes and the appliance's private key. A file that was readable by
/// others (made before the key moved into it) is tightened.
fn private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let failed = |e: std::io::Error| StoreError::File(format!("{}: {e}", path.display()));
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(failed)
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map(drop)
            .map_err(failed),
        Err(e) => Err(failed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_sqlite_file_is_private_to_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let new = dir.path().join("new.db");
        Database::open(&new).unwrap();
        assert_eq!(mode(&new), 0o600);
        // One an older version made readable by others is tightened.
        let old = dir.path().join("old.db");
        std::fs::write(&old, b"").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        Database::open(&old).unwrap();
        assert_eq!(mode(&old), 0o600);
    }

    /// A URL with `sslmode=require` reaches a server that takes its role
    /// over TLS only, and only when the server's certificate chains to the
    /// CA given.
    #[test]
    fn postgres_over_tls_checks_the_servers_certificate() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("not root: no PostgreSQL for this test");
            return;
        }
        let server = testing::TempPostgres::start_with_tls().unwrap();
        let url = server.fresh_database_for_ferry().unwrap();
        let ca = server.ca_file();

        let plain = Database::connect(&url, Some(&ca)).unwrap_err();
        assert!(plain.to_string().contains("no connection"), "{plain}");

        let tls = format!("{url}?sslmode=require");
        let db = Database::connect(&tls, Some(&ca)).unwrap();
        let over_tls: bool = db
            .conn()
            .unwrap()
            .query_row(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                params![],
                |r| r.get(0),
            )
            .unwrap();
        assert!(over_tls);
        db.set_setting("public_address", "ferry.example.com")
            .unwrap();
        drop(db);

        // A server whose certificate another CA signed is refused.
        let other = testing::TempPostgres::start_with_tls().unwrap();
        let refused = Database::connect(&tls, Some(&other.ca_file())).unwrap_err();
        assert!(refused.to_string().contains("certificate"), "{refused}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = Database::connect(&tls, Some(&empty)).unwrap_err();
        assert!(e.to_string().contains("no usable certificate"), "{e}");
    }
}
