//! Ferry's cross-crate tests: real `ferryd` and `ferry` processes.

// A test fails by panicking; unwrap says where.
#![allow(clippy::unwrap_used)]

mod abuse;
mod api;
mod browser;
mod deliveries;
mod desktop;
mod faults;
mod foundation;
mod limits;
mod mail;
mod nat;
mod python;
mod rules;
mod wan;
mod webadmin;
