//! The data plane: QUIC endpoints and TCP listeners that exist only while a
//! lease needs them.
//!
//! No data port listens while the appliance is idle. Granting a session
//! leases a port to the client's address — from ferry-portguard, which
//! opens it in nftables (UDP and TCP) for that address only, or from an
//! in-process table when the firewall is off — and binds the QUIC endpoint
//! and the TCP listener on that port if they are not bound yet. The lease
//! is renewed while the session lives; when the last lease on a port goes,
//! the endpoint and the listener close and their sockets with them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ferry_domain::{AuditAction, UserId};
use ferry_engine::transport::{Tuning, server_endpoint};
use ferry_portguard::PortRange;
use ferry_portguard::client::PortguardClient;
use ferry_portguard::leases::LeaseTable;
use ferry_store::NewEvent;
use ferryd_core::audit::Audit;
use quinn::{Endpoint, ServerConfig};

/// Why no data port could be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataPlaneError {
    #[error("no port of {0} could be bound (UDP and TCP) on this appliance")]
    NoPort(PortRange),
    #[error("the firewall refused to open a port: {0}")]
    Firewall(String),
    #[error(
        "you hold {0} data ports already, the most one account may; finish or cancel a transfer first"
    )]
    UserLimit(usize),
    #[error("the appliance has {0} data ports open, the most it holds at once; try again shortly")]
    Full(usize),
}

ferryd_core::failing!(DataPlaneError {
    DataPlaneError::NoPort(_) => (Unavailable, NO_PORTS),
    DataPlaneError::Firewall(_) => (Unavailable, NO_PORTS),
    DataPlaneError::UserLimit(_) => (TooMany { retry_after: 10 }, TOO_MANY_SESSIONS),
    DataPlaneError::Full(_) => (TooMany { retry_after: 10 }, TOO_MANY_SESSIONS),
});

/// Who opens ports in the firewall.
pub enum Firewall {
    /// Nobody: leases are kept in-process only (development).
    Off(Mutex<LeaseTable>),
    /// ferry-portguard, in nftables.
    Nft(PortguardClient),
}

/// How leases are held: how long an opening lasts unrenewed, and how many
/// one user, and everyone, may hold at once.
#[derive(Debug, Clone, Copy)]
pub struct Leasing {
    pub ttl: Duration,
    pub per_user: usize,
    pub total: usize,
}

/// A port held for one client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: u64,
    pub ip: IpAddr,
    pub port: u16,
}

/// A lease and whose it is.
#[derive(Debug, Clone, Copy)]
struct Held {
    lease: Lease,
    user: Option<UserId>,
}

struct Inner {
    /// Live leases, the daemon's own view (checked again on every packet
    /// that opens a connection, whatever the firewall did).
    leases: HashMap<u64, Held>,
    endpoints: HashMap<u16, Endpoint>,
    /// The task accepting TCP lanes on each bound port.
    listeners: HashMap<u16, tokio::task::AbortHandle>,
}

/// The endpoints and leases of the appliance.
pub struct DataPlane {
    bind_ip: IpAddr,
    range: PortRange,
    config: ServerConfig,
    tuning: Tuning,
    firewall: Firewall,
    ttl: Duration,
    audit: Audit,
    /// Leases one user, and everyone, may hold at once.
    limits: (usize, usize),
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane")
            .field("bind_ip", &self.bind_ip)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// A live lease; dropping it gives the port back (and unbinds it when it
/// was the last).
pub struct LeaseGuard {
    plane: Arc<DataPlane>,
    pub lease: Lease,
    user: UserId,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for LeaseGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseGuard")
            .field("lease", &self.lease)
            .finish()
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        self.plane.release(self.lease, self.user);
    }
}

impl DataPlane {
    /// The QUIC server settings each connection starts from.
    pub fn server_config(&self) -> &ServerConfig {
        &self.config
    }

    pub fn new(
        bind_ip: IpAddr,
        range: PortRange,
        config: ServerConfig,
        tuning: Tuning,
        firewall: Firewall,
        leasing: Leasing,
        audit: Audit,
    ) -> Arc<Self> {
        Arc::new(DataPlane {
            bind_ip,
            range,
            config,
            tuning,
            firewall,
            ttl: leasing.ttl,
            audit,
            limits: (leasing.per_user, leasing.total),
            inner: Mutex::new(Inner {
                leases: HashMap::new(),
                endpoints: HashMap::new(),
                listeners: HashMap::new(),
            }),
        })
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn range(&self) -> PortRange {
        self.range
    }

    pub fn firewall_on(&self) -> bool {
        matches!(self.firewall, Firewall::Nft(_))
    }

    /// A lease's audit line: its opening and closing are facts already,
    /// so a line that cannot be written is logged and counted, not fatal.
    fn audit(&self, user: Option<UserId>, lease: Lease, action: AuditAction, detail: String) {
        self.audit.note_later(NewEvent {
            user,
            address: Some(lease.ip.to_string()),
            action,
            subject: format!("port {}", lease.port),
            detail,
        });
    }

    /// Gives back leases a previous run of the daemon left with portguard:
    /// nobody renews them any more.
    pub async fn reclaim(&self) -> Result<usize, DataPlaneError> {
        let Firewall::Nft(pg) = &self.firewall else {
            return Ok(0);
        };
        let stale = pg
            .list()
            .await
            .map_err(|e| DataPlaneError::Firewall(e.to_string()))?;
        for l in &stale {
            // Should a release fail, the opening times out within its TTL.
            if let Err(e) = pg.release(l.id).await {
                log::warn!(port = l.port; "giving back lease {} of a previous run: {e}", l.id);
            }
            self.audit(
                None,
                Lease {
                    id: l.id,
                    ip: l.ip,
                    port: l.port,
                },
                AuditAction::LeaseReclaim,
                "left by a previous run of ferryd".into(),
            );
        }
        Ok(stale.len())
    }

    async fn take_lease(&self, ip: IpAddr, avoid: &[u16]) -> Result<Lease, DataPlaneError> {
        match &self.firewall {
            Firewall::Off(table) => {
                let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
                let (l, _) = table
                    .acquire(ip, self.ttl, avoid, Instant::now())
                    .ok_or(DataPlaneError::NoPort(self.range))?;
                Ok(Lease {
                    id: l.id,
                    ip,
                    port: l.port,
                })
            }
            Firewall::Nft(pg) => {
                let l = pg
                    .lease(ip, self.ttl, avoid)
                    .await
                    .map_err(|e| DataPlaneError::Firewall(e.to_string()))?;
                Ok(Lease {
                    id: l.id,
                    ip: l.ip,
                    port: l.port,
                })
            }
        }
    }

    /// Leases a port to `ip` for `user`, binding its endpoint and TCP
    /// listener if needed. `on_bind` is called with each newly bound pair,
    /// to start accepting on them; it returns the TCP accept task, which
    /// is stopped when the port closes.
    pub async fn open(
        self: &Arc<Self>,
        ip: IpAddr,
        user: UserId,
        on_bind: impl Fn(Endpoint, tokio::net::TcpListener, u16) -> tokio::task::AbortHandle,
    ) -> Result<LeaseGuard, DataPlaneError> {
        {
            let inner = self.inner();
            let mine = inner
                .leases
                .values()
                .filter(|h| h.user == Some(user))
                .count();
            if mine >= self.limits.0 {
                return Err(DataPlaneError::UserLimit(mine));
            }
            if inner.leases.len() >= self.limits.1 {
                return Err(DataPlaneError::Full(inner.leases.len()));
            }
        }
        let mut unusable = Vec::new();
        loop {
            let lease = self.take_lease(ip, &unusable).await?;
            let bound = {
                let mut inner = self.inner();
                inner.leases.insert(
                    lease.id,
                    Held {
                        lease,
                        user: Some(user),
                    },
                );
                if let std::collections::hash_map::Entry::Vacant(e) =
                    inner.endpoints.entry(lease.port)
                {
                    let addr = SocketAddr::new(self.bind_ip, lease.port);
                    match server_endpoint(addr, self.config.clone(), &self.tuning)
                        .and_then(|endpoint| Ok((endpoint, bind_tcp(addr)?)))
                    {
                        Ok((endpoint, tcp)) => {
                            log::info!(port = lease.port; "data port {addr} bound (UDP and TCP)");
                            e.insert(endpoint.clone());
                            let accepting = on_bind(endpoint, tcp, lease.port);
                            inner.listeners.insert(lease.port, accepting);
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                } else {
                    Ok(())
                }
            };
            match bound {
                Ok(()) => {
                    self.audit(
                        Some(user),
                        lease,
                        AuditAction::LeaseOpen,
                        format!("lease {}", lease.id),
                    );
                    let renewer = self.spawn_renewer(lease, user);
                    return Ok(LeaseGuard {
                        plane: self.clone(),
                        lease,
                        user,
                        renewer,
                    });
                }
                Err(e) => {
                    log::warn!("cannot bind data port {}: {e}; trying another", lease.port);
                    self.inner().leases.remove(&lease.id);
                    self.give_back(lease);
                    unusable.push(lease.port);
                }
            }
        }
    }

    /// Keeps a portguard lease alive while its session lives. If the
    /// daemon dies, renewals stop and the opening times out by itself.
    fn spawn_renewer(
        self: &Arc<Self>,
        lease: Lease,
        user: UserId,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let Firewall::Nft(pg) = &self.firewall else {
            return None;
        };
        let (pg, plane) = (pg.clone(), Arc::downgrade(self));
        let every = (self.ttl / 3).max(Duration::from_secs(1));
        let ttl = self.ttl;
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let result = pg.renew(lease.id, ttl).await;
                let Some(plane) = plane.upgrade() else { return };
                match result {
                    Ok(_) => plane.audit(
                        Some(user),
                        lease,
                        AuditAction::LeaseRenew,
                        format!("lease {}", lease.id),
                    ),
                    Err(e) => {
                        log::warn!(port = lease.port; "renewing lease {} failed: {e}", lease.id);
                        plane.audit(
                            Some(user),
                            lease,
                            AuditAction::LeaseRenewFailed,
                            e.to_string(),
                        );
                    }
                }
            }
        }))
    }

    /// Gives a lease back to whoever keeps the firewall.
    fn give_back(&self, lease: Lease) {
        match &self.firewall {
            Firewall::Off(table) => {
                table
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .release(lease.id, Instant::now());
            }
            Firewall::Nft(pg) => {
                // Dropped from synchronous code: release in the background.
                // Should it fail, the opening times out within the TTL.
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    let pg = pg.clone();
                    handle.spawn(async move {
                        if let Err(e) = pg.release(lease.id).await {
                            log::warn!(port = lease.port; "releasing lease {}: {e}", lease.id);
                        }
                    });
                }
            }
        }
    }

    fn release(self: &Arc<Self>, lease: Lease, user: UserId) {
        let last = {
            let mut inner = self.inner();
            inner.leases.remove(&lease.id);
            !inner.leases.values().any(|h| h.lease.port == lease.port)
        };
        if last {
            // The session has just closed its connection. QUIC keeps a closed
            // connection answering for a few round trips, so that a peer whose
            // close packet was lost still learns why; the socket goes once
            // those are over (or after a few seconds at most).
            let plane = self.clone();
            let endpoint = self.inner().endpoints.get(&lease.port).cloned();
            match (tokio::runtime::Handle::try_current(), endpoint) {
                (Ok(handle), Some(endpoint)) => {
                    handle.spawn(async move {
                        let _ = tokio::time::timeout(Duration::from_secs(3), endpoint.wait_idle())
                            .await;
                        plane.close_if_unused(lease.port);
                    });
                }
                _ => self.close_if_unused(lease.port),
            }
        }
        self.give_back(lease);
        self.audit(
            Some(user),
            lease,
            AuditAction::LeaseRelease,
            format!("lease {}", lease.id),
        );
    }

    fn close_if_unused(&self, port: u16) {
        let mut inner = self.inner();
        if inner.leases.values().any(|h| h.lease.port == port) {
            return;
        }
        if let Some(endpoint) = inner.endpoints.remove(&port) {
            endpoint.close(0u32.into(), b"no session on this port");
            log::info!(port = port; "data port {port} closed");
        }
        // The accept task owns the listener: stopping it closes the socket.
        if let Some(accepting) = inner.listeners.remove(&port) {
            accepting.abort();
        }
    }

    /// True when `ip` may use `port` now.
    pub fn allows(&self, ip: IpAddr, port: u16) -> bool {
        self.inner()
            .leases
            .values()
            .any(|h| h.lease.ip == ip && h.lease.port == port)
    }

    pub fn leases(&self) -> Vec<Lease> {
        self.inner().leases.values().map(|h| h.lease).collect()
    }

    pub fn bound_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.inner().endpoints.keys().copied().collect();
        ports.sort_unstable();
        ports
    }
}

/// A TCP listener on a data port. `SO_REUSEADDR` lets a port be bound
/// again while connections of an earlier lease on it linger in TIME_WAIT.
fn bind_tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(64)
}
