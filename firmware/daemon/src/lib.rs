//! ferryd, the Ferry appliance daemon: adapters over the services of
//! [`ferryd_core`], and the wiring that runs them.
//!
//! ```text
//!   app                       wiring: builds everything, starts tasks
//!   ├─ http (REST)            adapters: translate, never decide
//!   ├─ ferry-webadmin         (its own crate, mounted by http)
//!   ├─ transfer (QUIC)
//!   ├─ mailer (SMTP)
//!   ├─ admin (ferryd admin)
//!   └─ appliance, dataplane, sessions, nat, acme, identity, service
//!        the appliance's own machinery: leases and endpoints, tokens,
//!        the certificate, systemd
//!   ferryd-core               services
//!   ferry-domain              types and rules
//!   ferry-store               the store
//! ```
//!
//! Modules may import only modules below them in this list, which
//! `tests/layers` checks:
//! - [`config`], [`cli`]: the TOML file, flags and defaults;
//! - [`identity`]: the appliance's certificate;
//! - [`service`]: systemd: the journal, readiness, the watchdog, the console
//!   banner;
//! - [`nat`]: noticing an edge router that rewrites source addresses;
//! - [`acme`]: ordering and renewing the certificate from an ACME CA;
//! - [`dataplane`]: UDP ports that open only for a session, through
//!   ferry-portguard's firewall;
//! - [`sessions`]: single-use session tokens;
//! - [`appliance`]: the running appliance as the services see it;
//! - [`transfer`]: granting and running data sessions (QUIC);
//! - [`bandwidth`]: the bandwidth schedule on the appliance's clock;
//! - [`mailer`]: sending the outbox over SMTP;
//! - [`watching`]: watch folders at work (inotify, rescans, settling);
//! - [`metrics`]: the Prometheus metrics and who may scrape them;
//! - [`http`]: the HTTPS control plane and REST API;
//! - [`app`]: the wiring of the running appliance;
//! - [`admin`]: the `ferryd admin` commands, wired like the appliance (with
//!   [`app`]'s helpers) but with the operator at the console as caller.

pub mod acme;
pub mod admin;
pub mod app;
pub mod appliance;
pub mod bandwidth;
pub mod cli;
pub mod config;
pub mod dataplane;
pub mod http;
pub mod identity;
pub mod mailer;
pub mod metrics;
pub mod nat;
pub mod service;
pub mod sessions;
pub mod transfer;
pub mod watching;
