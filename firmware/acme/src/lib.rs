//! The appliance's certificate from an ACME CA (RFC 8555), so that a
//! recipient's browser trusts the appliance without a warning.
//!
//! - [`renewal`]: when the certificate in use must be replaced, a pure
//!   function of the certificate, the name and the clock;
//! - [`order`]: one order, from the account to the issued chain, proving
//!   control of the name with TLS-ALPN-01 (RFC 8737) on the appliance's
//!   own HTTPS port.
//!
//! The certificate is requested for the appliance's existing key, so the
//! key pin that clients hold ([`ferry_engine::tls::Fingerprint::of_key`])
//! stays true across every renewal. The daemon decides when to call
//! [`order::obtain`] and installs what it returns.

pub mod order;
pub mod renewal;

pub use order::{Account, AcmeError, Request, obtain};
pub use renewal::{Issued, Renewal, Why};

/// Let's Encrypt's production directory, the default CA.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
