//! The appliance's services: the layer between ferryd's adapters (the
//! REST API, the web admin, the QUIC data plane, the mail sender) and the
//! store.
//!
//! ```text
//!   app (ferryd::app)        wiring only: builds everything, starts tasks
//!     │
//!   adapters                 REST, web admin, data sessions, mail sender:
//!     │                      they translate, they do not decide
//!   services (this crate)    jobs, deliveries, shares, users, settings,
//!     │                      live sessions, notices: each owns its rules
//!   domain (ferry-domain)    pure types and rules, the clock passed in
//!     │
//!   store (ferry-store)      the Store trait; SQLite today
//! ```
//!
//! Each layer uses only those below it; the compiler keeps it so between
//! crates, and `tests/layers` between the modules of a crate. Services ask
//! the rulebook ([`ferry_domain::rules`]) and apply what it decides; every
//! service returns its own error, which says what kind of failure it is
//! ([`Failure`]) and which stable code goes with it, so an adapter never
//! reads a message to decide anything.
//!
//! The modules, each using only those listed before it:
//! - [`clock`]: the time services read, replaceable in tests;
//! - [`failure`]: the kinds of failure adapters answer with;
//! - [`meters`]: what the appliance counts for its metrics;
//! - [`view`]: a job's files as people read them (sequences as one line);
//! - [`audit`]: the audit log, whose failures are errors someone sees;
//! - [`authority`]: who asks for an admin's act (an admin, or the operator
//!   at the appliance);
//! - [`settings`]: the site settings, published to listeners by a watch
//!   channel;
//! - [`certificates`]: the certificate every node serves, kept in the
//!   database;
//! - [`live`]: the sessions running now, their limits, stopping and pacing
//!   them;
//! - [`notifier`]: who is told what by email, through the outbox;
//! - [`shares`]: shares, grants, and paths beneath them;
//! - [`users`]: accounts, logins, keys, passwords and invitations;
//! - [`deliveries`]: making deliveries, files landing, expiry;
//! - [`jobs`]: listing, showing and controlling jobs;
//! - [`transfers`]: granting data sessions and settling how they ended;
//! - [`portal`]: deliveries fetched over HTTPS (a browser, a script), and
//!   what counts as received;
//! - [`uploads`]: a delivery's files uploaded from a browser, resumable;
//! - [`manifest`]: a delivery's manifest (path, size, BLAKE3 of each file);
//! - [`watches`]: watch folders and the deliveries they make;
//! - [`nodes`]: this ferryd as one of the appliance's nodes, and the
//!   others: heartbeats and draining;
//! - [`ports`]: what services ask of the running appliance;
//! - [`services`]: all of them together.

pub mod clock;
pub mod failure;
pub mod meters;
pub mod view;

pub mod audit;
pub mod authority;
pub mod certificates;
pub mod ports;
pub mod settings;

pub mod live;
pub mod notifier;

pub mod shares;
pub mod users;

pub mod deliveries;
pub mod jobs;
pub mod manifest;
pub mod portal;
pub mod transfers;
pub mod uploads;
pub mod watches;

pub mod nodes;

pub mod services;

#[cfg(test)]
mod testing;

pub use failure::{Failing, Failure};
pub use services::Services;
