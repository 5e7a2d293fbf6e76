//! How a client reaches the appliance's data plane: which transports to
//! try, in which order, and how each one's connections are made.
//!
//! `auto` tries QUIC first; with no QUIC handshake within a few seconds it
//! falls back to TCP on the leased port, then to HTTPS on the control port
//! (through `HTTPS_PROXY` when one is set). What got through is remembered
//! per appliance for a while, so the next transfer starts there; once the
//! memory lapses, QUIC is tried first again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ferry_engine::handshake::Dial;
use ferry_engine::lanes::BoxedLane;
use ferry_engine::tcp;
use ferry_engine::tls::PinnedCert;
use ferry_engine::{ConnectError, EngineError};
use ferry_proto::Transport;
use ferry_proto::transport::UPGRADE_HTTPS;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

/// Which transports a transfer may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Choice {
    /// QUIC, then TCP, then HTTPS, starting from what worked last time.
    #[default]
    Auto,
    /// This one only.
    Only(Transport),
}

impl FromStr for Choice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(Choice::Auto);
        }
        s.parse::<Transport>()
            .map(Choice::Only)
            .map_err(|_| format!("unknown transport {s:?}: use auto, quic, tcp or https"))
    }
}

impl std::fmt::Display for Choice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Choice::Auto => f.write_str("auto"),
            Choice::Only(t) => t.fmt(f),
        }
    }
}

/// How long a fallback is remembered before QUIC is tried first again.
pub const REMEMBER: Duration = Duration::from_secs(600);
/// How long `auto` waits for a QUIC handshake before trying TCP.
pub const QUIC_PATIENCE: Duration = Duration::from_secs(3);
/// How long `auto` waits for a TCP or HTTPS connection before the next.
pub const LANE_PATIENCE: Duration = Duration::from_secs(4);

/// The order to try transports in, for `choice`, given what worked with
/// this appliance `age` ago (if anything is remembered).
pub fn order(
    choice: Choice,
    remembered: Option<(Transport, Duration)>,
    remember: Duration,
) -> Vec<Transport> {
    match choice {
        Choice::Only(t) => vec![t],
        Choice::Auto => {
            let start = remembered
                .filter(|(_, age)| *age < remember)
                .map_or(Transport::Quic, |(t, _)| t);
            Transport::ALL
                .into_iter()
                .skip_while(|t| *t != start)
                .collect()
        }
    }
}

/// What worked with each appliance, kept beside the credentials.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Memory {
    #[serde(default)]
    servers: BTreeMap<String, Worked>,
    /// For an appliance with several addresses (by its whole list), the
    /// one that answered when the one before it did not.
    #[serde(default)]
    addresses: BTreeMap<String, Answered>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Worked {
    transport: Transport,
    /// Seconds since the epoch.
    at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Answered {
    address: String,
    /// Seconds since the epoch.
    at: u64,
}

fn memory_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FERRY_TRANSPORTS_FILE") {
        return Some(PathBuf::from(p));
    }
    dirs::config_dir().map(|d| d.join("ferry").join("transports.toml"))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How long a fallback is remembered (`FERRY_TRANSPORT_MEMORY_SECS`
/// shortens it, for tests and for people who move between networks).
pub fn remember_for() -> Duration {
    std::env::var("FERRY_TRANSPORT_MEMORY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(REMEMBER, Duration::from_secs)
}

fn recall() -> Option<Memory> {
    let text = std::fs::read_to_string(memory_path()?).ok()?;
    toml::from_str(&text).ok()
}

/// Changes the memory with `change`, which says whether it changed
/// anything. Best effort: a client that cannot write its memory only
/// tries in the default order next time.
fn amend(change: impl FnOnce(&mut Memory) -> bool) {
    let Some(path) = memory_path() else { return };
    let mut memory = recall().unwrap_or_default();
    if !change(&mut memory) {
        return;
    }
    let written = toml::to_string(&memory)
        .map_err(std::io::Error::other)
        .and_then(|text| {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("toml.part");
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, &path)
        });
    if let Err(e) = written {
        log::debug!(
            "cannot remember how the appliance was reached in {}: {e}",
            path.display()
        );
    }
}

/// What worked last with `server`, and how long ago.
pub fn remembered(server: &str) -> Option<(Transport, Duration)> {
    let w = *recall()?.servers.get(server)?;
    Some((
        w.transport,
        Duration::from_secs(now_secs().saturating_sub(w.at)),
    ))
}

/// Records what worked with `server`. QUIC, the default, is not written
/// down: it only clears a fallback remembered before, so a client on a
/// network that passes UDP never writes the file.
pub fn remember(server: &str, transport: Transport) {
    amend(|memory| {
        if transport == Transport::Quic {
            return memory.servers.remove(server).is_some();
        }
        memory.servers.insert(
            server.to_owned(),
            Worked {
                transport,
                at: now_secs(),
            },
        );
        true
    });
}

/// The address of `servers` (a list) to start with: the one that last
/// answered when another did not, for [`remember_for`]; after that the
/// list's own order again, so a node that came back is used again.
pub fn first_address(servers: &str) -> Option<String> {
    let a = recall()?.addresses.remove(servers)?;
    let age = Duration::from_secs(now_secs().saturating_sub(a.at));
    (age < remember_for()).then_some(a.address)
}

/// Records that `address` of `servers` answered when the one before it
/// did not.
pub fn remember_address(servers: &str, address: &str) {
    amend(|memory| {
        memory.addresses.insert(
            servers.to_owned(),
            Answered {
                address: address.to_owned(),
                at: now_secs(),
            },
        );
        true
    });
}

/// Whether a failure to set up a session over one transport is worth
/// trying the next for: nothing came back over it (no QUIC handshake, no
/// TCP or HTTPS connection). An appliance that answered and refused (it is
/// busy, the token was wrong, the certificate is not the pinned one) would
/// answer the same over any transport: such failures are retried, or
/// final, as they are.
pub fn worth_another(e: &EngineError) -> bool {
    matches!(
        e,
        EngineError::Connect(ConnectError::Unreachable { .. } | ConnectError::Dial { .. })
    )
}

/// Whether the grant behind a failure that is [`worth_another`] may no
/// longer be used: its token went out with a QUIC first flight (0-RTT),
/// and the appliance may have taken it although nothing came back.
/// Otherwise no greeting was sent, and the next transport may use it.
pub fn token_may_be_spent(e: &EngineError) -> bool {
    matches!(
        e,
        EngineError::Connect(ConnectError::Unreachable { greeted: true, .. })
    )
}

/// Dials TCP lanes to a leased port.
pub fn tcp_dialer(addr: std::net::SocketAddr, pin: Arc<PinnedCert>, patience: Duration) -> Dial {
    Arc::new(move || {
        let pin = pin.clone();
        Box::pin(async move { tcp::dial(addr, &pin, patience).await })
    })
}

/// Dials HTTPS lanes to the control plane at `server` (`https://host:port`).
pub fn https_dialer(server: String, pin: Arc<PinnedCert>, patience: Duration) -> Dial {
    Arc::new(move || {
        let (server, pin) = (server.clone(), pin.clone());
        Box::pin(async move {
            tokio::time::timeout(patience, dial_https(&server, &pin))
                .await
                .map_err(|_| {
                    fail(
                        &server,
                        format!("no connection within {}s", patience.as_secs()),
                    )
                })?
        })
    })
}

fn fail(addr: &str, reason: String) -> EngineError {
    EngineError::Connect(ConnectError::Dial {
        transport: Transport::Https,
        addr: addr.to_owned(),
        reason,
    })
}

/// One HTTPS lane: TCP (through the proxy's `CONNECT` when the
/// environment names one for this server), TLS pinned to the appliance,
/// then an HTTP/1.1 upgrade to the lane protocol.
async fn dial_https(server: &str, pin: &Arc<PinnedCert>) -> Result<BoxedLane, EngineError> {
    let uri: hyper::Uri = server
        .parse()
        .map_err(|e| fail(server, format!("not a URL: {e}")))?;
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let tcp = match Matcher::from_env().intercept(&uri) {
        Some(proxy) => through_proxy(&uri, &proxy).await?,
        None => TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| fail(server, e.to_string()))?,
    };
    tcp::tune(&tcp);
    let tls = tcp::tls_over(tcp, pin, &[b"http/1.1"], Transport::Https, server).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| fail(server, format!("HTTP: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            log::debug!("an HTTPS lane's connection ended: {e}");
        }
    });
    let authority = uri
        .authority()
        .map_or_else(|| host.clone(), |a| a.to_string());
    let request = hyper::Request::get(format!(
        "{}{}/lanes",
        server.trim_end_matches('/'),
        ferry_api::PREFIX
    ))
    .header(hyper::header::HOST, authority)
    .header(hyper::header::CONNECTION, "upgrade")
    .header(hyper::header::UPGRADE, UPGRADE_HTTPS)
    .header(
        hyper::header::USER_AGENT,
        concat!("ferry/", env!("CARGO_PKG_VERSION")),
    )
    .body(http_body_util::Empty::<Bytes>::new())
    .map_err(|e| fail(server, format!("HTTP request: {e}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| fail(server, format!("HTTP: {e}")))?;
    if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        return Err(fail(
            server,
            format!(
                "the appliance answered {} instead of switching to the data lanes (an older appliance, or a proxy that does not pass upgrades)",
                response.status()
            ),
        ));
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(|e| fail(server, format!("HTTP upgrade: {e}")))?;
    Ok(Box::new(TokioIo::new(upgraded)))
}

/// A TCP connection to `uri`'s host through an HTTP proxy's `CONNECT`,
/// with the proxy's credentials when its URL carries them.
async fn through_proxy(
    uri: &hyper::Uri,
    proxy: &hyper_util::client::proxy::matcher::Intercept,
) -> Result<TcpStream, EngineError> {
    use tower::Service as _;
    let server = uri.to_string();
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let mut tunnel =
        hyper_util::client::legacy::connect::proxy::Tunnel::new(proxy.uri().clone(), connector);
    if let Some(auth) = proxy.basic_auth() {
        tunnel = tunnel.with_auth(auth.clone());
    }
    std::future::poll_fn(|cx| tunnel.poll_ready(cx))
        .await
        .map_err(|e| fail(&server, format!("HTTP proxy {}: {e}", proxy.uri())))?;
    let io = tunnel.call(uri.clone()).await.map_err(|e| {
        fail(
            &server,
            format!("HTTP proxy {} refused the tunnel: {e}", proxy.uri()),
        )
    })?;
    Ok(io.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_starts_from_what_worked_until_the_memory_lapses() {
        let all = vec![Transport::Quic, Transport::Tcp, Transport::Https];
        assert_eq!(order(Choice::Auto, None, REMEMBER), all);
        let tcp_lately = Some((Transport::Tcp, Duration::from_secs(60)));
        assert_eq!(
            order(Choice::Auto, tcp_lately, REMEMBER),
            vec![Transport::Tcp, Transport::Https]
        );
        let tcp_long_ago = Some((Transport::Tcp, REMEMBER + Duration::from_secs(1)));
        assert_eq!(order(Choice::Auto, tcp_long_ago, REMEMBER), all);
        assert_eq!(
            order(Choice::Only(Transport::Https), tcp_lately, REMEMBER),
            vec![Transport::Https]
        );
        assert_eq!("auto".parse(), Ok(Choice::Auto));
        assert_eq!("TCP".parse(), Ok(Choice::Only(Transport::Tcp)));
        assert!("carrier-pigeon".parse::<Choice>().is_err());
    }

    #[test]
    fn the_memory_reads_back_and_only_network_failures_fall_back() {
        let memory = Memory {
            servers: [(
                "https://a:8443".to_owned(),
                Worked {
                    transport: Transport::Https,
                    at: 5,
                },
            )]
            .into(),
            addresses: [(
                "https://a:8443,https://b:8443".to_owned(),
                Answered {
                    address: "https://b:8443".to_owned(),
                    at: 5,
                },
            )]
            .into(),
        };
        let text = toml::to_string(&memory).unwrap_or_default();
        let back: Memory = toml::from_str(&text).unwrap_or_default();
        assert_eq!(back.servers["https://a:8443"].transport, Transport::Https);
        assert_eq!(
            back.addresses["https://a:8443,https://b:8443"].address,
            "https://b:8443"
        );
        // A memory written before addresses were kept still reads.
        let old: Memory =
            toml::from_str("[servers.\"https://a:8443\"]\ntransport = \"tcp\"\nat = 5\n")
                .unwrap_or_default();
        assert_eq!(old.servers["https://a:8443"].transport, Transport::Tcp);
        assert!(!worth_another(&EngineError::Connect(
            ConnectError::Handshake {
                addr: "127.0.0.1:1".parse().unwrap_or_else(|_| unreachable!()),
                reason: "the server refused to accept a new connection".into(),
            }
        )));
        assert!(worth_another(&EngineError::Connect(ConnectError::Dial {
            transport: Transport::Tcp,
            addr: "x".into(),
            reason: "refused".into(),
        })));
        assert!(!worth_another(&EngineError::Connect(
            ConnectError::CertificateMismatch("no".into())
        )));
    }
}
