//! The helper's side of the socket.
//!
//! Only the configured uid (ferryd's) is served; anyone else is refused
//! and logged. Every request is bounded in size and decoded into the closed
//! [`Request`] enum, so nothing a client sends can become nft text. The
//! lease table and the kernel's sets change together under one lock.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;

use crate::leases::{Lease, LeaseTable, Opening};
use crate::nft::Nft;
use crate::protocol::{self, LeaseInfo, Request, Response, WireError};
use crate::{PortRange, ruleset};

#[derive(Debug, Clone)]
pub struct Config {
    pub socket: PathBuf,
    pub range: PortRange,
    /// The only uid whose requests are served.
    pub allow_uid: u32,
    /// Permissions of the socket file (0660 with ferryd's group on the
    /// appliance).
    pub socket_mode: u32,
    pub nft: Nft,
    /// Longest lease a single request may ask for.
    pub max_ttl: Duration,
}

struct State {
    table: LeaseTable,
    nft: Nft,
}

impl State {
    /// Applies what a change to the table needs in the kernel.
    async fn apply(&self, opening: Opening) -> Result<(), String> {
        let script = match opening {
            Opening::Open { ip, port, ttl } => ruleset::open(ip, port, ttl),
            Opening::Close { ip, port } => ruleset::close(ip, port),
        };
        let nft = self.nft.clone();
        tokio::task::spawn_blocking(move || nft.apply(&script))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

fn info(l: &Lease, now: Instant) -> LeaseInfo {
    LeaseInfo {
        id: l.id,
        ip: l.ip,
        port: l.port,
        expires_in_secs: l.expires.saturating_duration_since(now).as_secs() as u32,
    }
}

/// Runs the helper until `shutdown` completes; `ready` is called once the
/// table is installed and the socket listens.
pub async fn run(
    config: Config,
    ready: impl FnOnce(),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    // Reconcile: the table is rebuilt with empty sets, so nothing that was
    // open before this start stays open.
    let nft = config.nft.clone();
    let table_script = ruleset::table(config.range);
    tokio::task::spawn_blocking(move || nft.apply(&table_script))
        .await?
        .context("installing the inet ferry table")?;
    log::info!(
        "table inet ferry installed for UDP {}; no openings",
        config.range
    );

    if let Some(dir) = config.socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match std::fs::remove_file(&config.socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("removing a stale {}", config.socket.display()));
        }
    }
    let listener = UnixListener::bind(&config.socket)
        .with_context(|| format!("binding {}", config.socket.display()))?;
    std::fs::set_permissions(
        &config.socket,
        std::fs::Permissions::from_mode(config.socket_mode),
    )?;
    log::info!(
        "listening on {} for uid {}",
        config.socket.display(),
        config.allow_uid
    );
    ready();

    let state = Arc::new(Mutex::new(State {
        table: LeaseTable::new(config.range),
        nft: config.nft.clone(),
    }));
    let expiry = tokio::spawn(expire_loop(state.clone()));
    let config = Arc::new(config);
    let serve = async {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(stream, state.clone(), config.clone()));
                }
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    };
    tokio::select! {
        () = serve => {}
        () = shutdown => {}
    }
    expiry.abort();
    let _ = std::fs::remove_file(&config.socket);
    Ok(())
}

/// Drops leases nobody renewed. The kernel times their elements out by
/// itself; this keeps the table (and the ports it hands out) in step.
async fn expire_loop(state: Arc<Mutex<State>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let state = state.lock().await;
        let mut state = state;
        let gone = state.table.expire(Instant::now());
        for (lease, opening) in gone {
            log::info!(
                "lease {} of {} to port {} expired without renewal",
                lease.id,
                lease.ip,
                lease.port
            );
            if let Err(e) = state.apply(opening).await {
                log::warn!("closing {} . {}: {e}", lease.ip, lease.port);
            }
        }
    }
}

async fn serve_connection(mut stream: UnixStream, state: Arc<Mutex<State>>, config: Arc<Config>) {
    let cred = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials);
    let (uid, pid) = match cred {
        Ok(c) => (c.uid(), c.pid()),
        Err(e) => {
            log::warn!("refused a connection whose credentials cannot be read: {e}");
            return;
        }
    };
    if uid != config.allow_uid {
        log::warn!(
            "refused a request from uid {uid} (pid {pid}): only uid {} is served",
            config.allow_uid
        );
        let _ = protocol::write(
            &mut stream,
            &Response::Error(format!("uid {uid} may not use ferry-portguard")),
        )
        .await;
        return;
    }
    loop {
        let request: Request = match protocol::read(&mut stream).await {
            Ok(r) => r,
            Err(WireError::Closed) => return,
            Err(e) => {
                log::warn!("refused a request from pid {pid}: {e}");
                let _ = protocol::write(&mut stream, &Response::Error(e.to_string())).await;
                return;
            }
        };
        let response = handle(request, &state, &config).await;
        if protocol::write(&mut stream, &response).await.is_err() {
            return;
        }
    }
}

fn check_ip(ip: IpAddr) -> Result<(), String> {
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(format!("{ip} cannot hold a lease"));
    }
    Ok(())
}

async fn handle(request: Request, state: &Mutex<State>, config: &Config) -> Response {
    let now = Instant::now();
    let ttl_of = |secs: u32| -> Result<Duration, String> {
        let ttl = Duration::from_secs(u64::from(secs));
        if secs == 0 || ttl > config.max_ttl {
            return Err(format!(
                "a lease lasts 1 to {} seconds, not {secs}",
                config.max_ttl.as_secs()
            ));
        }
        Ok(ttl)
    };
    let mut state = state.lock().await;
    match request {
        Request::Lease {
            ip,
            ttl_secs,
            avoid,
        } => {
            let ttl = match ttl_of(ttl_secs).and_then(|t| check_ip(ip).map(|()| t)) {
                Ok(t) => t,
                Err(e) => return Response::Error(e),
            };
            if avoid.len() > config.range.len() {
                return Response::Error("too many ports to avoid".into());
            }
            let Some((lease, opening)) = state.table.acquire(ip, ttl, &avoid, now) else {
                return Response::Error(format!("no port of {} is free", config.range));
            };
            if let Err(e) = state.apply(opening).await {
                state.table.release(lease.id, now);
                return Response::Error(format!("opening {ip} . {}: {e}", lease.port));
            }
            log::info!(
                "lease {} opens port {} to {ip} for {}s",
                lease.id,
                lease.port,
                ttl.as_secs()
            );
            Response::Leased(info(&lease, now))
        }
        Request::Renew { lease, ttl_secs } => {
            let ttl = match ttl_of(ttl_secs) {
                Ok(t) => t,
                Err(e) => return Response::Error(e),
            };
            let Some((l, opening)) = state.table.renew(lease, ttl, now) else {
                return Response::Error(format!("no lease {lease} (expired or released)"));
            };
            if let Err(e) = state.apply(opening).await {
                return Response::Error(format!("renewing {} . {}: {e}", l.ip, l.port));
            }
            Response::Renewed(info(&l, now))
        }
        Request::Release { lease } => {
            let Some((l, opening)) = state.table.release(lease, now) else {
                return Response::Error(format!("no lease {lease} (expired or released)"));
            };
            if let Err(e) = state.apply(opening).await {
                return Response::Error(format!("closing {} . {}: {e}", l.ip, l.port));
            }
            log::info!("lease {} on port {} to {} released", l.id, l.port, l.ip);
            Response::Released
        }
        Request::List => {
            Response::Leases(state.table.active().iter().map(|l| info(l, now)).collect())
        }
    }
}
