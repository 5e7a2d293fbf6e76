//! The REST API of the appliance's control plane (`/api/v1`), as types.
//!
//! The daemon serves these and the clients (CLI, desktop app, and through
//! the OpenAPI document, the Python package) send them. Field names are part
//! of the contract: add fields, do not rename them.

use serde::{Deserialize, Serialize};

/// Path prefix of every API route.
pub const PREFIX: &str = "/api/v1";

/// Header naming the user an API key is expected to belong to.
pub const USER_HEADER: &str = "x-ferry-user";

/// Every error response: `{"error": {"code": …, "message": …}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    /// Stable, machine-readable; see [`codes`].
    pub code: String,
    /// For people.
    pub message: String,
}

/// Stable error codes.
pub mod codes {
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const BAD_API_KEY: &str = "bad_api_key";
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
    pub const INTERNAL: &str = "internal";
}

/// `GET /api/v1/health`: public.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub product: String,
    pub version: String,
    /// SHA-256 of the appliance's certificate, hex.
    pub fingerprint: String,
}

/// `POST /api/v1/login`: trades a password for a new API key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// A name for the key, shown in the key list (e.g. the machine's name).
    #[serde(default)]
    pub key_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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
pub struct PasswordChange {
    pub current: String,
    pub new: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserInfo {
    pub id: i64,
    pub email: String,
    pub name: String,
    /// `admin`, `employee` or `collaborator`.
    pub role: String,
}

/// Which way a direct transfer goes, seen from the client.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    /// Client → appliance.
    Put,
    /// Appliance → client.
    Get,
}

/// `POST /api/v1/sessions`: asks for a data session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRequest {
    pub kind: SessionKind,
    /// `share=NAME/path`: the destination folder of a put, or the file or
    /// folder of a get.
    pub target: String,
}

/// Where and how to open the data session.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
}

/// One share as a user sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
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
pub struct Status {
    /// `nft` or `off`.
    pub firewall: String,
    /// The UDP range for data sessions.
    pub ports: String,
    /// Ports leased right now, to whom.
    pub leases: Vec<LeaseStatus>,
    /// UDP ports with a bound endpoint right now.
    pub bound_ports: Vec<u16>,
    /// Things an admin should fix, in words.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaseStatus {
    pub address: String,
    pub port: u16,
}
