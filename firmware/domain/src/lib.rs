//! Ferry's domain: the typed states every layer shares and the rules that
//! decide what happens, as pure functions with the clock passed in.
//!
//! Nothing here does IO, reads a clock or holds a lock, so every rule is
//! tested as a value. The daemon's services ask these rules and apply what
//! they decide; the REST API's types and the clients use the same enums,
//! so a state or an action is never a string that could drift.
//!
//! - [`status`]: ids, and the states of jobs, tasks and accounts;
//! - [`action`]: job actions and audit actions;
//! - [`rules`]: the rulebook (who may do what, and why not);
//! - [`ending`]: what a session's end means for its job;
//! - [`agent`]: what a recipient's agent makes of a job's state;
//! - [`password`]: the one password policy;
//! - [`throttle`]: login throttling and per-address budgets;
//! - [`address`]: the client's address behind trusted proxies;
//! - [`settings`]: the site settings and their one validator;
//! - [`stall`]: when a session that makes no progress is closed;
//! - [`served`]: when a file downloaded over HTTPS counts as received;
//! - [`manifest`]: a delivery's manifest in b3sum's text format;
//! - [`watch`]: watch folders, when what lands in them is ready, and the
//!   names of their deliveries;
//! - [`bandwidth`]: the bandwidth schedule (which cap holds when);
//! - [`node`]: the appliance's nodes, their heartbeats and draining;
//! - [`email`]: the shape of an address.

#[macro_use]
pub mod status;
pub mod action;
pub mod address;
pub mod agent;
pub mod bandwidth;
pub mod email;
pub mod ending;
pub mod manifest;
pub mod node;
pub mod password;
pub mod rules;
pub mod served;
pub mod settings;
pub mod stall;
pub mod throttle;
pub mod watch;

pub use action::{AuditAction, JobAction};
pub use status::{
    AccountKind, DeliveryId, JobId, JobKind, JobStatus, Party, Role, ShareId, TaskId, TaskStatus,
    UnknownValue, UserId, UserStatus,
};
