//! Ferry's web admin: server-rendered pages (maud) on the control port,
//! mounted by ferryd beside the REST API.
//!
//! The pages read the database (`ferry-store`) directly and ask the running
//! appliance, through the [`Appliance`] trait, for what only it knows (live
//! transfers, port leases, warnings) and for what must go through its rules
//! (job control, site settings). The daemon implements the trait; the pages
//! never reach into it otherwise, so this crate has no dependency on it.
//!
//! Security lives in [`auth`] (cookie sessions, CSRF, login throttling) and
//! [`security`] (headers, cross-site checks). Views are plain functions from
//! data to [`maud::Markup`], unit-tested by rendering them to strings.

pub mod auth;
pub mod format;
pub mod layout;
pub mod pages;
pub mod security;

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use ferry_api::{JobDetail, JobList};
use ferry_store::{Store, User};

pub use auth::Throttle;

/// A transfer running now, for the dashboard and its live updates.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveTransfer {
    pub job: i64,
    pub name: String,
    /// `upload`, `download`, `put` or `get`.
    pub kind: String,
    pub user: String,
    pub client: String,
    pub port: u16,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Bytes per second, over the last seconds.
    pub rate: u64,
    /// The session's pace (policy and target), in words.
    pub pace: String,
    pub seconds: u64,
}

/// A data port open for one client.
#[derive(Debug, Clone)]
pub struct LeaseInfo {
    pub port: u16,
    pub client: IpAddr,
    pub user: String,
}

/// What the appliance says about itself.
#[derive(Debug, Clone)]
pub struct ApplianceInfo {
    pub fingerprint: String,
    pub listen: String,
    pub ports: String,
    pub firewall_on: bool,
    pub version: &'static str,
    /// The SMTP server and From address, when email is configured.
    pub smtp: Option<String>,
    /// Messages waiting, sent and refused for good.
    pub outbox: (i64, i64, i64),
}

/// Settings an admin changes at run time. Each takes effect at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteSettings {
    /// The name or address clients send UDP to (the edge router's).
    pub public_address: Option<String>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// The appliance's congestion policy (`fair`, `fixed`, `cubic`, `bbr`).
    pub policy: String,
    /// The site's cap on each transfer (`100M`), if any.
    pub target_rate: Option<String>,
    /// How long a delivery lives unless its sender says otherwise.
    pub default_expiry_days: u64,
    /// Email: `smtp://host:port` (STARTTLS with `?tls=required`) or
    /// `smtps://host:port`; empty: no server, messages wait.
    pub smtp_url: String,
    pub smtp_user: String,
    /// A file on the appliance holding the SMTP password.
    pub smtp_password_file: String,
    pub smtp_from: String,
}

/// Job actions the Transfers page offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobAction {
    Pause,
    Resume,
    Abort,
    Retry,
    Purge,
}

impl JobAction {
    pub fn as_str(self) -> &'static str {
        match self {
            JobAction::Pause => "pause",
            JobAction::Resume => "resume",
            JobAction::Abort => "abort",
            JobAction::Retry => "retry",
            JobAction::Purge => "purge",
        }
    }
}

/// Which jobs a Transfers page shows.
#[derive(Debug, Clone, Default)]
pub struct JobQuery {
    pub finished: bool,
    /// Jobs this user sends or receives.
    pub user: Option<String>,
    pub status: Option<String>,
    /// The last id of the previous page.
    pub before: Option<i64>,
    pub limit: u32,
}

/// Why the appliance refused an action, in words for the page.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub message: String,
}

impl Refused {
    pub fn new(message: impl Into<String>) -> Self {
        Refused {
            message: message.into(),
        }
    }
}

impl From<ferry_store::StoreError> for Refused {
    fn from(e: ferry_store::StoreError) -> Self {
        Refused::new(e.to_string())
    }
}

/// What the web admin needs from the running appliance.
pub trait Appliance: Send + Sync + 'static {
    fn store(&self) -> &Store;
    fn info(&self) -> ApplianceInfo;
    fn live(&self) -> Vec<LiveTransfer>;
    fn leases(&self) -> Vec<LeaseInfo>;
    /// What an admin should fix, in words.
    fn warnings(&self) -> Vec<String>;
    /// Jobs `user` may see, newest first, as the API lists them.
    fn jobs(&self, user: &User, query: &JobQuery) -> Result<JobList, Refused>;
    /// One job with its files grouped into lines (sequences as one).
    fn job(&self, user: &User, id: i64) -> Result<JobDetail, Refused>;
    /// Pause, resume, abort, retry or purge, with the API's rules.
    fn act(
        &self,
        user: &User,
        from: IpAddr,
        id: i64,
        action: JobAction,
    ) -> impl Future<Output = Result<(), Refused>> + Send;
    /// Sets the priority (`high`, `low`, 1–1000) of a job's files matching
    /// a glob; returns how many changed.
    fn reprioritise(
        &self,
        user: &User,
        from: IpAddr,
        id: i64,
        glob: &str,
        priority: &str,
    ) -> Result<usize, Refused>;
    /// Installs a certificate and key (PEM) for the control and data
    /// planes, checked to belong together; returns the new SHA-256
    /// fingerprint. It takes effect at the next start of ferryd.
    fn install_certificate(
        &self,
        by: &User,
        from: IpAddr,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<String, Refused>;
    /// Makes an invited user and sends the invitation.
    fn invite(
        &self,
        by: &User,
        from: IpAddr,
        email: &str,
        name: &str,
        role: ferry_store::Role,
    ) -> Result<User, Refused>;
    /// The address the client logs in to (shown after an invitation).
    fn base_url(&self) -> String;
    /// Queues a test message to `to`.
    fn test_mail(&self, to: &User) -> Result<(), Refused>;
    /// Adds a root share over a folder that exists on the appliance.
    fn add_root_share(&self, name: &str, path: &str) -> Result<ferry_store::Share, Refused>;
    /// Adds a share: a folder made beneath a root share, never outside it.
    fn add_share(
        &self,
        name: &str,
        root: &str,
        folder: &str,
    ) -> Result<ferry_store::Share, Refused>;
    fn site(&self) -> SiteSettings;
    fn change_site(&self, by: &User, from: IpAddr, site: SiteSettings) -> Result<(), Refused>;
}

/// What the handlers share.
pub struct Web<A> {
    pub app: Arc<A>,
    pub throttle: Throttle,
    /// The public invitation page's budget per address.
    pub invitations: auth::RateLimit,
}

/// Requests per address per 15 minutes on the invitation page.
pub const INVITATION_PAGE_LIMIT: u32 = 30;

impl<A> Web<A> {
    pub fn new(app: Arc<A>) -> Arc<Self> {
        Arc::new(Web {
            app,
            throttle: Throttle::default(),
            invitations: auth::RateLimit::new(INVITATION_PAGE_LIMIT),
        })
    }
}

/// The web admin's routes, with their security headers.
pub fn router<A: Appliance>(app: Arc<A>) -> Router {
    use pages::*;
    let web = Web::new(app);
    Router::new()
        .route("/", get(dashboard::page::<A>))
        .route("/live", get(dashboard::live::<A>))
        .route("/login", get(login::form::<A>).post(login::submit::<A>))
        .route("/logout", post(login::logout::<A>))
        .route(
            "/setup",
            get(login::setup_form::<A>).post(login::setup::<A>),
        )
        .route("/transfers", get(transfers::page::<A>))
        .route("/transfers/{id}", get(transfers::detail::<A>))
        .route("/transfers/{id}/action", post(transfers::act::<A>))
        .route("/transfers/{id}/priority", post(transfers::priority::<A>))
        .route("/shares", get(shares::page::<A>))
        .route("/shares/root", post(shares::add_root::<A>))
        .route("/shares/share", post(shares::add_share::<A>))
        .route("/shares/grant", post(shares::grant::<A>))
        .route("/shares/browse/{name}", get(shares::browse::<A>))
        .route("/users", get(users::page::<A>))
        .route("/users/invite", post(users::invite::<A>))
        .route("/users/{id}/role", post(users::role::<A>))
        .route("/users/{id}/status", post(users::status::<A>))
        .route("/users/{id}/reset", post(users::reset::<A>))
        .route("/users/{id}/keys", post(users::create_key::<A>))
        .route(
            "/users/{id}/keys/{key}/revoke",
            post(users::revoke_key::<A>),
        )
        .route(
            "/settings",
            get(settings::page::<A>).post(settings::save::<A>),
        )
        .route("/settings/certificate", post(settings::certificate::<A>))
        .route("/settings/test-mail", post(settings::test_mail::<A>))
        .route("/audit", get(audit::page::<A>))
        .route(
            "/invite/{token}",
            get(invite::form::<A>).post(invite::accept::<A>),
        )
        .route("/static/admin.css", get(layout::stylesheet))
        .route("/static/admin.js", get(layout::script))
        .layer(axum::middleware::from_fn(security::headers))
        .with_state(web)
}
