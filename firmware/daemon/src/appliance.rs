//! The running appliance as the services see it ([`Appliance`]): its
//! certificate, its data ports and firewall, and what an admin should fix
//! about them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ferry_engine::tls::Identity;
use ferryd_core::ports::{Appliance, ApplianceFacts, OpenPort};

use crate::dataplane::DataPlane;
use crate::nat::SourceWatch;

/// The daemon's facts.
pub struct Running {
    pub identity: Arc<Identity>,
    /// What the last ACME order came to.
    pub certificate: Arc<crate::acme::Status>,
    pub control: SocketAddr,
    pub plane: Arc<DataPlane>,
    pub data: PathBuf,
    /// The NAT symptom, shared with the data sessions.
    pub sources: Arc<SourceWatch>,
    /// A certificate installed from the web admin, in use after a restart.
    pending_certificate: Mutex<Option<String>>,
}

impl Running {
    pub fn new(
        identity: Arc<Identity>,
        certificate: Arc<crate::acme::Status>,
        control: SocketAddr,
        plane: Arc<DataPlane>,
        data: PathBuf,
        sources: Arc<SourceWatch>,
    ) -> Self {
        Running {
            identity,
            certificate,
            control,
            plane,
            data,
            sources,
            pending_certificate: Mutex::default(),
        }
    }
}

impl Appliance for Running {
    fn facts(&self) -> ApplianceFacts {
        ApplianceFacts {
            fingerprint: self.identity.fingerprint().to_string(),
            certificate: describe(&self.identity),
            control: self.control,
            ports: self.plane.range().to_string(),
            firewall_on: self.plane.firewall_on(),
            version: env!("CARGO_PKG_VERSION"),
        }
    }

    fn open_ports(&self) -> Vec<OpenPort> {
        self.plane
            .leases()
            .into_iter()
            .map(|l| OpenPort {
                port: l.port,
                client: l.ip,
            })
            .collect()
    }

    fn bound_ports(&self) -> Vec<u16> {
        self.plane.bound_ports()
    }

    fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if !self.plane.firewall_on() {
            w.push(
                "the per-session firewall is off: while a session is open, any address can reach its UDP port \
                 (run ferry-portguard and --firewall nft)"
                    .to_owned(),
            );
        }
        if let Some(acme) = self.certificate.failure() {
            w.push(acme);
        }
        if let Some(nat) = self.sources.warning() {
            w.push(nat);
        }
        if let Some(fp) = self
            .pending_certificate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            w.push(format!(
                "a new certificate (SHA-256 {fp}) is installed but not yet in use: restart ferryd; \
                 clients then log in again to accept its fingerprint"
            ));
        }
        w
    }

    fn will_serve(&self, fingerprint: &str) {
        *self
            .pending_certificate
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(fingerprint.to_owned());
    }
}

/// The certificate served now, in words: who issued it, for what, until
/// when.
fn describe(identity: &Identity) -> String {
    let chain = identity.chain();
    let Some(issued) = chain.first().and_then(|c| ferry_acme::Issued::read(c).ok()) else {
        return "unreadable".to_owned();
    };
    let until = jiff::Timestamp::try_from(issued.not_after).map_or_else(
        |_| "?".to_owned(),
        |t| t.strftime("%Y-%m-%d %H:%M UTC").to_string(),
    );
    let names = issued.names.join(", ");
    if issued.self_issued {
        format!("self-signed for {names}, until {until}")
    } else {
        format!("issued by a CA for {names}, until {until}")
    }
}
