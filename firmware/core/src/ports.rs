//! What services ask of the running appliance: facts and acts that belong
//! to the daemon (its certificate, its data ports, its firewall), not to
//! the store. The daemon implements [`Appliance`]; services and the web
//! admin hold it as a trait object, so nothing here imports the daemon.

use std::net::{IpAddr, SocketAddr};

/// The appliance at a glance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplianceFacts {
    /// The pin: SHA-256 of the certificate's key, hex.
    pub fingerprint: String,
    /// The certificate served now, in words (issuer, names, expiry).
    pub certificate: String,
    /// Where the control plane listens.
    pub control: SocketAddr,
    /// The data port range, `FIRST-LAST`.
    pub ports: String,
    pub firewall_on: bool,
    pub version: &'static str,
}

/// A data port open for one client now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenPort {
    pub port: u16,
    pub client: IpAddr,
}

/// The running appliance.
pub trait Appliance: Send + Sync {
    fn facts(&self) -> ApplianceFacts;
    /// Data ports leased now.
    fn open_ports(&self) -> Vec<OpenPort>;
    /// UDP ports with a bound endpoint now.
    fn bound_ports(&self) -> Vec<u16>;
    /// What an admin should fix about the appliance itself (firewall off,
    /// a router rewriting sources, a certificate waiting for a restart).
    fn warnings(&self) -> Vec<String>;
    /// A certificate with this fingerprint is kept for the next start:
    /// say so among the warnings until then.
    fn will_serve(&self, fingerprint: &str);
}
