//! ferryd, the Ferry appliance daemon.
//!
//! - [`config`]: the TOML file, flags and defaults;
//! - [`app`]: shared state and the start-up sequence;
//! - [`http`]: the HTTPS control plane and REST API;
//! - [`sessions`]: single-use session tokens;
//! - [`dataplane`]: UDP ports that open only for a session, through
//!   ferry-portguard's firewall;
//! - [`nat`]: noticing an edge router that rewrites source addresses;
//! - [`transfer`]: running a data session and its job;
//! - [`deliveries`]: making deliveries, fan-out to recipients, expiry;
//! - [`identity`]: the appliance's certificate;
//! - [`mail`]: who is told what by email, through the outbox;
//! - [`shares`]: making root shares and shares beneath them;
//! - [`site`]: settings admins change at run time;
//! - [`webadmin`]: what the web admin (ferry-webadmin) asks of the appliance;
//! - [`service`]: systemd: the journal, readiness, the watchdog, the console
//!   banner;
//! - [`admin`]: the `ferryd admin` commands.

pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod dataplane;
pub mod deliveries;
pub mod http;
pub mod identity;
pub mod mail;
pub mod nat;
pub mod service;
pub mod sessions;
pub mod shares;
pub mod site;
pub mod transfer;
pub mod webadmin;
