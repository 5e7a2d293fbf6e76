//! The data plane: QUIC endpoints that exist only while a lease needs them.
//!
//! No UDP port listens while the appliance is idle. Granting a session
//! leases a port to the client's address and binds the endpoint on that
//! port if it is not bound yet; when the last lease on a port goes, the
//! endpoint closes and the socket with it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use quinn::{Endpoint, ServerConfig};

use crate::config::PortRange;
use crate::leases::{Lease, LeaseTable};

/// Why no data port could be opened.
#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    #[error("no UDP port of {0} could be bound on this appliance")]
    NoPort(PortRange),
}

struct Inner {
    leases: LeaseTable,
    endpoints: HashMap<u16, Endpoint>,
}

/// The endpoints and leases of the appliance.
pub struct DataPlane {
    bind_ip: IpAddr,
    config: ServerConfig,
    tuning: ferry_engine::transport::Tuning,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane")
            .field("bind_ip", &self.bind_ip)
            .finish_non_exhaustive()
    }
}

/// A live lease; dropping it gives the port back (and unbinds it when it
/// was the last).
#[derive(Debug)]
pub struct LeaseGuard {
    plane: Arc<DataPlane>,
    pub lease: Lease,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.plane.release(&self.lease);
    }
}

impl DataPlane {
    pub fn new(
        bind_ip: IpAddr,
        range: PortRange,
        config: ServerConfig,
        tuning: ferry_engine::transport::Tuning,
    ) -> Arc<Self> {
        Arc::new(DataPlane {
            bind_ip,
            config,
            tuning,
            inner: Mutex::new(Inner {
                leases: LeaseTable::new(range),
                endpoints: HashMap::new(),
            }),
        })
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn range(&self) -> PortRange {
        self.inner().leases.range()
    }

    /// Leases a port to `ip`, binding its endpoint if needed. `on_bind` is
    /// called with each newly bound endpoint, to start accepting on it.
    pub fn open(
        self: &Arc<Self>,
        ip: IpAddr,
        on_bind: impl Fn(Endpoint, u16),
    ) -> Result<LeaseGuard, DataPlaneError> {
        let mut inner = self.inner();
        let mut unusable = Vec::new();
        loop {
            let Some(lease) = inner.leases.acquire(ip, &unusable) else {
                return Err(DataPlaneError::NoPort(inner.leases.range()));
            };
            if inner.endpoints.contains_key(&lease.port) {
                return Ok(LeaseGuard {
                    plane: self.clone(),
                    lease,
                });
            }
            let addr = SocketAddr::new(self.bind_ip, lease.port);
            match ferry_engine::transport::server_endpoint(addr, self.config.clone(), &self.tuning)
            {
                Ok(endpoint) => {
                    log::info!(port = lease.port; "data port {addr} bound");
                    inner.endpoints.insert(lease.port, endpoint.clone());
                    on_bind(endpoint, lease.port);
                    return Ok(LeaseGuard {
                        plane: self.clone(),
                        lease,
                    });
                }
                Err(e) => {
                    log::warn!("cannot bind data port {addr}: {e}; trying another");
                    inner.leases.release(&lease);
                    unusable.push(lease.port);
                }
            }
        }
    }

    fn release(&self, lease: &Lease) {
        let mut inner = self.inner();
        if inner.leases.release(lease) == 0
            && let Some(endpoint) = inner.endpoints.remove(&lease.port)
        {
            endpoint.close(0u32.into(), b"no session on this port");
            log::info!(port = lease.port; "data port {} closed", lease.port);
        }
    }

    /// True when `ip` may use `port` now.
    pub fn allows(&self, ip: IpAddr, port: u16) -> bool {
        self.inner().leases.allows(ip, port)
    }

    pub fn leases(&self) -> Vec<Lease> {
        self.inner().leases.active()
    }

    pub fn bound_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.inner().endpoints.keys().copied().collect();
        ports.sort_unstable();
        ports
    }
}
