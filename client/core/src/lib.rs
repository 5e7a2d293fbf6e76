//! The client side of Ferry, shared by the `ferry` CLI and the desktop app:
//!
//! - [`credentials`]: which appliance, which user, which key and which
//!   certificate fingerprint, from the environment or `ferry login`;
//! - [`api`]: the appliance's REST API over pinned HTTPS;
//! - [`transfer`]: put and get, with retries that resume;
//! - [`priority`]: `GLOB=high|low|N` rules;
//! - [`error`]: what went wrong, in words a user can act on.

pub mod api;
pub mod credentials;
pub mod error;
pub mod priority;
pub mod transfer;

pub use api::Api;
pub use credentials::Credentials;
pub use error::ClientError;
