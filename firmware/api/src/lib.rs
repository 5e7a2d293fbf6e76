//! The REST API of the appliance's control plane (`/api/v1`), as types.
//!
//! The daemon serves these and the clients (CLI, desktop app, and through
//! the OpenAPI document, the Python package) send them. Field names are part
//! of the contract: add fields, do not rename them.

use serde::{Deserialize, Serialize};

/// The states and actions every side names the same way (they travel as
/// lowercase words).
pub use ferry_domain::{AccountKind, JobAction, JobKind, JobStatus, Role, TaskStatus, UserStatus};

/// Path prefix of every API route.
pub const PREFIX: &str = "/api/v1";

/// Header naming the user an API key is expected to belong to.
pub const USER_HEADER: &str = "x-ferry-user";

/// Every error response: `{"error": {"code": …, "message": …}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable, machine-readable; see [`codes`].
    pub code: String,
    /// For people.
    pub message: String,
}

/// Stable error codes.
pub mod codes {
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// The key is unknown here: mistyped, or for another appliance.
    pub const BAD_API_KEY: &str = "bad_api_key";
    /// The key was revoked.
    pub const KEY_REVOKED: &str = "key_revoked";
    /// The key's account is disabled.
    pub const ACCOUNT_DISABLED: &str = "account_disabled";
    /// The key's account was invited and has not chosen a password yet.
    pub const ACCOUNT_NOT_ACTIVE: &str = "account_not_active";
    /// A service account tried to sign in with a password.
    pub const SERVICE_ACCOUNT: &str = "service_account";
    /// A new password does not meet the policy.
    pub const WEAK_PASSWORD: &str = "weak_password";
    pub const BAD_CREDENTIALS: &str = "bad_credentials";
    pub const PASSWORD_CHANGE_REQUIRED: &str = "password_change_required";
    pub const FORBIDDEN: &str = "forbidden";
    pub const NOT_FOUND: &str = "not_found";
    pub const UNKNOWN_SHARE: &str = "unknown_share";
    pub const INVALID_PATH: &str = "invalid_path";
    pub const OUTSIDE_SHARE: &str = "outside_share";
    pub const INVALID_REQUEST: &str = "invalid_request";
    pub const CONFLICT: &str = "conflict";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const NO_PORTS: &str = "no_ports";
    pub const JOB_ABORTED: &str = "job_aborted";
    pub const JOB_PAUSED: &str = "job_paused";
    /// The job may not run now (done, or failed until someone retries it).
    pub const JOB_NOT_RUNNABLE: &str = "job_not_runnable";
    /// The caller already holds as many sessions or connections as one
    /// caller may.
    pub const TOO_MANY_SESSIONS: &str = "too_many_sessions";
    /// The job was purged or its delivery expired: it cannot be resumed.
    pub const JOB_WITHDRAWN: &str = "job_withdrawn";
    /// ferryd is not logging to the systemd journal on this host.
    pub const JOURNAL_UNAVAILABLE: &str = "journal_unavailable";
    /// The node the client reached is draining: it grants no new
    /// sessions. Another of the appliance's addresses may.
    pub const NODE_DRAINING: &str = "node_draining";
    /// The node the client reached carries all the sessions it takes,
    /// and another node has room: the client goes there.
    pub const NODE_BUSY: &str = "node_busy";
    pub const INTERNAL: &str = "internal";
}

/// `GET /api/v1/health`: public.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    pub product: String,
    pub version: String,
    /// SHA-256 of the appliance's certificate, hex.
    pub fingerprint: String,
    /// The appliance's clock, in seconds since the epoch (`ferry doctor`
    /// compares it with the client's).
    #[serde(default)]
    pub time: Option<i64>,
}

/// `POST /api/v1/login`: trades a password for a new API key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// A name for the key, shown in the key list (e.g. the machine's name).
    #[serde(default)]
    pub key_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginResponse {
    /// Shown once; store it.
    pub api_key: String,
    pub user: UserInfo,
    /// The password was one-time: change it (`POST /api/v1/me/password`)
    /// before anything else is allowed.
    pub must_change_password: bool,
}

/// `POST /api/v1/me/password`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasswordChange {
    pub current: String,
    pub new: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserInfo {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub role: Role,
    /// Whether email notifications reach this user (invitations always do).
    #[serde(default = "yes")]
    pub notify: bool,
    /// A person, or a service account (keys only).
    #[serde(default = "person")]
    pub kind: AccountKind,
    #[serde(default = "active")]
    pub status: UserStatus,
}

fn yes() -> bool {
    true
}

fn person() -> AccountKind {
    AccountKind::Person
}

fn active() -> UserStatus {
    UserStatus::Active
}

/// `POST /api/v1/me/notify`: email notifications on or off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotifyChange {
    pub notify: bool,
}

/// Which way a session goes, seen from the client.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    /// Client → appliance, into a share folder.
    Put,
    /// Appliance → client, from a share.
    Get,
    /// A delivery's upload job: the sender's files to the appliance.
    Upload,
    /// A delivery's download job: the appliance to a recipient.
    Download,
}

/// `POST /api/v1/sessions`: asks for a data session.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionRequest {
    pub kind: SessionKind,
    /// `share=NAME/path` for put and get: the destination folder of a put,
    /// or the file or folder of a get.
    #[serde(default)]
    pub target: Option<String>,
    /// The job, for upload and download.
    #[serde(default)]
    pub job: Option<i64>,
    /// For put and get: what names this run on the client (its kind, its
    /// appliance, its target and its local paths, hashed; up to 64 hex
    /// digits). A session whose key matches an unfinished job of the same
    /// user continues that job instead of opening another, so a rerun of
    /// an interrupted command is the same job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_key: Option<String>,
}

/// Where and how to open the data session.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionGrant {
    pub session: u64,
    /// Host to send UDP to (the appliance's public address).
    pub host: String,
    /// The UDP port leased to this client for this session.
    pub port: u16,
    /// The whole forwarded range, to name in "blocked port" errors.
    pub ports: String,
    /// Single-use, 256-bit, hex; void after `expires_in` seconds unused.
    pub token: String,
    pub expires_in: u64,
    /// SHA-256 of the certificate the data port presents, hex.
    pub cert_sha256: String,
    /// Chunk size for a put.
    pub chunk_size: u32,
    /// The client's address as the appliance saw it on HTTPS: the only
    /// address the data port lets in for this session.
    pub client_address: String,
    /// How the session's data may travel, fastest first: the site may
    /// have turned some transports off.
    #[serde(default = "all_transports")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub transports: Vec<ferry_proto::Transport>,
}

/// One share as a user sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShareInfo {
    pub name: String,
    /// The root share it lies in; `None` for a root share.
    pub parent: Option<String>,
    /// The folder on the appliance (admins only).
    pub path: Option<String>,
    pub read: bool,
    pub write: bool,
}

/// `GET /api/v1/status` (admins): the appliance at a glance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Status {
    /// `nft` or `off`.
    pub firewall: String,
    /// The UDP range for data sessions.
    pub ports: String,
    /// Ports leased right now, to whom.
    pub leases: Vec<LeaseStatus>,
    /// UDP ports with a bound endpoint right now.
    pub bound_ports: Vec<u16>,
    /// Data sessions running now, and how each travels.
    #[serde(default)]
    pub sessions: Vec<SessionStatus>,
    /// Things an admin should fix, in words.
    pub warnings: Vec<String>,
    /// The cap on all transfers together now, from the bandwidth schedule
    /// or the site rate.
    #[serde(default)]
    pub bandwidth: Option<BandwidthNow>,
    /// The host's service manager, when ferryd runs under systemd.
    #[serde(default)]
    pub system: Option<SystemState>,
}

/// Which cap on all transfers together holds now, and until when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BandwidthNow {
    /// Bits per second; absent: no cap.
    pub cap_bps: Option<u64>,
    /// The schedule's rule that sets it; absent: the site rate does.
    pub rule: Option<String>,
    /// When another cap takes over (Unix seconds); absent: never.
    pub until: Option<i64>,
    /// All of it in words.
    pub words: String,
}

/// What systemd says of the appliance as a whole.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SystemState {
    /// `systemctl is-system-running`: `running`, `degraded`, `starting`, …
    pub state: String,
    /// Units in the failed state.
    pub failed_units: Vec<String>,
}

/// One of ferryd's own lines from the systemd journal
/// (`GET /api/v1/journal`, admins).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JournalLine {
    /// Microseconds since the Unix epoch.
    pub time_us: u64,
    /// syslog priority: 3 error, 4 warning, 5 notice (info), 6 info (debug).
    pub priority: u8,
    pub message: String,
    #[serde(default)]
    pub job_id: Option<i64>,
    #[serde(default)]
    pub session_id: Option<u64>,
}

/// `GET /api/v1/users` (admins): a page of people, in the order they were
/// added.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserList {
    pub users: Vec<UserInfo>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<i64>,
}

/// `GET /api/v1/recipients?q=…` (the facility's staff): addresses that
/// complete what a sender types, for the desktop app's recipient field.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecipientList {
    pub emails: Vec<String>,
}

/// `POST /api/v1/users` (admins): invite someone by email.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Invitation {
    pub email: String,
    #[serde(default)]
    pub name: String,
    /// Collaborator when absent.
    #[serde(default)]
    pub role: Option<Role>,
    /// A service account for automation: active at once, keys only, no
    /// invitation.
    #[serde(default)]
    pub service: bool,
}

/// One file or folder of a share (`GET /api/v1/shares/{name}/files`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShareEntry {
    pub name: String,
    pub kind: EntryKind,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub mtime: Option<i64>,
}

/// What a share entry is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Folder,
}

/// A page of a folder's entries, by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShareListing {
    pub entries: Vec<ShareEntry>,
    /// Pass as `cursor` for the next page (the last name); absent on the last.
    pub next_cursor: Option<String>,
}

/// `POST /api/v1/shares/{name}/folders`: make a folder (and its parents).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewFolder {
    pub path: String,
}

/// `GET /api/v1/deliveries/{id}/manifest`: every file of a delivery with
/// its size and BLAKE3 (of its whole contents, as b3sum computes it).
/// `.../manifest.b3` gives the same in b3sum's text format.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Manifest {
    pub delivery: i64,
    pub name: String,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ManifestFile {
    /// Relative to the delivery's folder.
    pub path: String,
    pub size: u64,
    /// BLAKE3, 64 hex digits.
    pub blake3: String,
}

/// `GET`/`PUT /api/v1/settings` (admins): settings that take effect at once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Settings {
    /// The name or address clients send UDP to (the edge router's).
    pub public_address: Option<String>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// `fair`, `fixed`, `cubic` or `bbr`.
    pub policy: String,
    /// The site's cap on each transfer in bits per second (`100M`); none: no cap.
    pub target_rate: Option<String>,
    /// A cap on all transfers together (`300M`), shared fairly among them;
    /// none: no cap.
    #[serde(default)]
    pub site_rate: Option<String>,
    /// How long a delivery lives unless its sender says otherwise.
    pub default_expiry_days: u64,
    /// `smtp://host:port` (STARTTLS with `?tls=required`) or `smtps://…`;
    /// empty: no server, mail waits.
    pub smtp_url: String,
    pub smtp_user: String,
    /// A file on the appliance (under /etc/ferry or the data folder's
    /// secrets) holding the SMTP password.
    pub smtp_password_file: String,
    pub smtp_from: String,
    /// How data may travel: `quic, tcp, https` or fewer; empty: all.
    #[serde(default)]
    pub transports: String,
    /// The public DNS name to get a certificate for from an ACME CA
    /// (TLS-ALPN-01 on the HTTPS port); empty: no ACME.
    #[serde(default)]
    pub acme_name: String,
    /// The ACME CA's directory URL; empty: Let's Encrypt.
    #[serde(default)]
    pub acme_directory: String,
    /// An email address the CA may write to.
    #[serde(default)]
    pub acme_contact: String,
    /// The bandwidth schedule, one rule per entry, first match wins:
    /// `DAYS FROM-TO RATE` in the appliance's time zone, like
    /// `mon-fri 09:00-19:00 200M` or `sat,sun 00:00-24:00 none`. Outside
    /// every rule, `site_rate` holds.
    #[serde(default)]
    pub schedule: Vec<String>,
}

/// A watch folder: what settles in it is delivered without anyone at the
/// keyboard (`[[watch]]` in ferryd.toml, Settings → Watch folders,
/// `/api/v1/watches`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WatchRequest {
    /// `share=NAME/dir`.
    pub folder: String,
    /// The account its deliveries come from, typically a service account.
    pub sender: String,
    pub to: Vec<String>,
    /// `GLOB=high|normal|low|N`, as `ferry send --priority`.
    #[serde(default)]
    pub priorities: Vec<String>,
    /// How long nothing in an entry may change before it is delivered;
    /// absent: 30.
    #[serde(default)]
    pub settle_secs: Option<u64>,
    /// `folder` (each new top-level folder is one delivery) or `file`.
    #[serde(default)]
    pub mode: Option<String>,
    /// The deliveries' name: `{folder}` (or `{file}`) and `{date}` are
    /// filled in; absent: `{folder}`.
    #[serde(default)]
    pub name: Option<String>,
}

/// A watch folder as the appliance runs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WatchInfo {
    pub id: i64,
    pub folder: String,
    pub sender: String,
    pub to: Vec<String>,
    pub priorities: Vec<String>,
    pub settle_secs: u64,
    pub mode: ferry_domain::watch::Mode,
    pub name: String,
    pub origin: ferry_domain::watch::Origin,
    /// Deliveries it has made.
    pub delivered: u64,
    /// Files it has seen that are not delivered yet (still settling).
    pub pending_files: u64,
}

fn all_transports() -> Vec<ferry_proto::Transport> {
    ferry_proto::Transport::ALL.to_vec()
}

/// `POST /api/v1/shares` (admins): a root share (`path`, a folder on the
/// appliance) or a share (`root` and `folder`, made beneath a root share).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewShare {
    pub name: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub root: Option<String>,
    #[serde(default)]
    pub folder: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseStatus {
    pub address: String,
    pub port: u16,
}

/// A data session running now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionStatus {
    pub session: u64,
    pub job: i64,
    /// The client's address and port.
    pub client: String,
    /// `quic`, `tcp` or `https`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub transport: ferry_proto::Transport,
    /// Payload bytes it has moved so far (the appliance's count, live).
    #[serde(default)]
    pub bytes_transferred: u64,
    /// The cap it runs under now, in bits per second: the lowest of the
    /// site's, the job's, its client's and its part of the site rate.
    #[serde(default)]
    pub target_bps: Option<u64>,
}

/// A file a sender will upload, declared when the delivery is made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryFile {
    /// Relative to the delivery's folder, `/`-separated.
    pub path: String,
    pub size: u64,
    pub mtime_ns: i64,
    /// 1–1000.
    pub priority: u16,
}

/// `POST /api/v1/deliveries`: what `ferry send` asks for.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryRequest {
    /// Shown in listings; made from the date and folder when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// Emails; an unknown one becomes an invited collaborator.
    pub recipients: Vec<String>,
    /// `share=NAME/dir`: where uploaded files go on the appliance.
    #[serde(default)]
    pub dest: Option<String>,
    /// Files the sender uploads next (with an upload job).
    #[serde(default)]
    pub files: Vec<DeliveryFile>,
    /// Files already in a share (`share=NAME/path`): no upload.
    #[serde(default)]
    pub sources: Vec<String>,
    /// `GLOB=high|low|N` rules for files taken from a share.
    #[serde(default)]
    pub priorities: Vec<String>,
    /// Lifetime; the appliance's default (30 days) when absent.
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
    /// Email the sender at 50 %.
    #[serde(default)]
    pub notify_progress: bool,
}

/// `ferry send --json` prints this.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryCreated {
    pub delivery: i64,
    pub jobs: Vec<JobRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobRef {
    pub id: i64,
    pub name: String,
    pub kind: JobKind,
    /// The recipient of a download job.
    pub recipient: Option<String>,
}

/// A job as listed. Names follow DESIGN §5.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobInfo {
    pub id: i64,
    pub kind: JobKind,
    pub name: String,
    pub status: JobStatus,
    pub owner: String,
    pub recipient: Option<String>,
    pub delivery: Option<i64>,
    pub delivery_name: Option<String>,
    pub share: Option<String>,
    pub folder: String,
    pub files_total: i64,
    pub files_done: i64,
    pub bytes_total: i64,
    pub bytes_done: i64,
    pub bytes_skipped: i64,
    /// Bytes per second now (running jobs).
    pub rate: i64,
    /// The job's own cap in bits per second; absent: the site's.
    #[serde(default)]
    pub target_rate: Option<u64>,
    /// How a running job's session is paced, e.g. `fair up to 100 Mbit/s`.
    #[serde(default)]
    pub pace: Option<String>,
    /// How a running job's session travels: `quic`, `tcp` or `https`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub transport: Option<ferry_proto::Transport>,
    pub retries: i64,
    pub error: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub next_retry_at: Option<i64>,
    pub expires_at: Option<i64>,
    /// An admin marked it urgent: the bandwidth schedule does not slow it.
    #[serde(default)]
    pub urgent: bool,
    /// What the caller may do to this job now (the rulebook's answer):
    /// the buttons to show.
    #[serde(default)]
    pub actions: Vec<JobAction>,
}

impl JobInfo {
    /// How far the job is, 0–100, in bytes: the one measure the CLI, the
    /// web admin and the desktop app show. Bytes held already and resent
    /// bytes may count past the total; a done job is 100 even when it had
    /// nothing to move.
    pub fn percent(&self) -> u8 {
        percent(
            self.bytes_done,
            self.bytes_total,
            self.status == JobStatus::Done,
        )
    }
}

/// Percent done of `total` bytes, 0–100 (see [`JobInfo::percent`]).
pub fn percent(done: i64, total: i64, finished: bool) -> u8 {
    if total <= 0 {
        return if finished { 100 } else { 0 };
    }
    let done = done.clamp(0, total) as u128;
    (done * 100 / total as u128) as u8
}

/// `GET /api/v1/jobs`: a page of jobs, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobList {
    pub jobs: Vec<JobInfo>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskInfo {
    pub id: i64,
    pub path: String,
    pub size: i64,
    pub priority: u16,
    pub status: TaskStatus,
    pub bytes_done: i64,
    pub digest: Option<String>,
    pub finished_at: Option<i64>,
}

/// One line of a job as people read it: a file, or a frame sequence.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobLine {
    pub kind: LineKind,
    /// The path, or the sequence as `dir/name.####.exr[1001-1200]`.
    pub name: String,
    pub files: u64,
    /// Missing frames of a sequence, as `1004` or `1007-1008`.
    pub missing: Vec<String>,
    pub size: i64,
    pub bytes_done: i64,
    pub priority: u16,
    /// The least advanced status among the files.
    pub status: TaskStatus,
    pub finished_at: Option<i64>,
}

/// What a line of a job shows.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LineKind {
    File,
    /// A frame sequence, as one line.
    Sequence,
}

/// `GET /api/v1/jobs/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobDetail {
    pub job: JobInfo,
    pub tasks: Vec<TaskInfo>,
    pub lines: Vec<JobLine>,
}

/// `POST /api/v1/jobs/{id}/priority`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PriorityChange {
    /// Matched against each file's path and name.
    pub glob: String,
    /// `high`, `low` or 1–1000.
    pub priority: String,
}

/// `POST /api/v1/jobs/{id}/rate`: the job's own cap.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RateChange {
    /// Bits per second, as `50M`, `1.5G` or a number; absent or null gives
    /// the job back the site's cap.
    #[serde(default)]
    pub rate: Option<String>,
}

/// `POST /api/v1/jobs/{id}/urgent` (admins): the bandwidth schedule does
/// not slow an urgent job.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UrgentChange {
    pub urgent: bool,
}

/// `POST /api/v1/jobs/{id}/purge`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PurgeRequest {
    /// Also delete the delivery's files on the appliance that no other
    /// live job uses.
    #[serde(default)]
    pub delete_files: bool,
}
