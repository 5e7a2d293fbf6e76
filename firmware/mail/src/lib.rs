//! Ferry's email: what the messages say ([`compose`]) and how they are
//! sent ([`smtp`]). Queuing, retries and who gets what live in the daemon
//! and the store's outbox; this crate has no state.

pub mod compose;
pub mod smtp;

pub use compose::{Composed, DeliveryFacts, FileLine, Mail};
pub use smtp::{Mailer, SendError, SmtpConfig};
