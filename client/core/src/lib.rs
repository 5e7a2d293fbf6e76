//! The client side of Ferry, shared by the `ferry` CLI and the desktop app:
//!
//! - [`credentials`]: which appliance, which user, which key and which
//!   certificate fingerprint, from the environment or `ferry login`;
//! - [`api`]: the appliance's REST API over pinned HTTPS;
//! - [`transfer`]: put, get, upload and download sessions, with retries
//!   that resume;
//! - [`doctor`]: what stands between this computer and the appliance;
//! - [`deliver`]: `ferry send` and resumable uploads;
//! - [`hotfolder`]: `ferry watch`, a hot folder whose new entries are
//!   delivered once they settle;
//! - [`agent`]: receiving every delivery addressed to the user;
//! - [`manifest`]: a received delivery's manifest, kept and checked;
//! - [`reach`]: QUIC, TCP or HTTPS, which to try and how to connect;
//! - [`signin`]: first contact with an appliance and trading a password
//!   for a key;
//! - [`error`]: what went wrong, in words a user can act on.

pub mod agent;
pub mod api;
pub mod credentials;
pub mod deliver;
pub mod doctor;
pub mod error;
pub mod hotfolder;
pub mod manifest;
pub mod reach;
pub mod signin;
pub mod transfer;

pub use api::Api;
pub use credentials::Credentials;
pub use error::ClientError;
