//! Ferry's cross-crate tests: real `ferryd` and `ferry` processes.

// A test fails by panicking; unwrap says where.
#![allow(clippy::unwrap_used)]

mod abuse;
mod acme;
mod api;
mod browser;
mod caps;
mod deliveries;
mod desktop;
mod faults;
mod foundation;
mod jobs;
mod limits;
mod mail;
mod manifest;
mod metrics;
mod nat;
mod nodes;
mod portal;
mod python;
mod reach;
mod rules;
mod tour;
mod wan;
mod watch;
mod webadmin;

/// The QUIC control stream under a session opened over QUIC, for tests
/// that write raw bytes to it.
pub(crate) fn quic_send(s: &mut ferry_engine::link::ControlSend) -> &mut quinn::SendStream {
    match s {
        ferry_engine::link::ControlSend::Quic(q) => q,
        other => panic!("not a QUIC session: {other:?}"),
    }
}
