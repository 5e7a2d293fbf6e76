//! The TCP transport's sockets and TLS: TLS 1.3 on the leased port, with
//! the appliance's pinned certificate and ALPN `ferry-tcp/1`, and BBR as
//! the congestion control wherever the kernel offers it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_proto::Transport;
use ferry_proto::transport::ALPN_TCP;
use rustls_pki_types::ServerName;
use socket2::SockRef;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::error::{ConnectError, EngineError};
use crate::lanes::BoxedLane;
use crate::tls::{Identity, IdentityError, PinnedCert, find_mismatch};

/// Kernel buffers of a lane's socket: with eight lanes, 4 MiB each holds
/// several bandwidth-delay products of a fast long path.
const SOCKET_BUFFER: usize = 4 << 20;

/// Asks for BBR on a TCP socket. BBR keeps a lossy long path full where
/// CUBIC halves its rate at every loss; where the kernel has no BBR
/// (the module is not loaded and may not be), its default stays.
/// Returns the congestion control the socket ends up with.
pub fn prefer_bbr(socket: &TcpStream) -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::socket::{getsockopt, setsockopt, sockopt};
        use std::ffi::OsString;
        if let Err(e) = setsockopt(socket, sockopt::TcpCongestion, &OsString::from("bbr")) {
            log::debug!("BBR is not available here ({e}); the kernel's default stays");
        }
        getsockopt(socket, sockopt::TcpCongestion)
            .ok()
            .map(|c| c.to_string_lossy().into_owned())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        None
    }
}

/// Settings every lane socket gets: no Nagle delay (control frames are
/// small and urgent), large buffers, BBR where offered.
pub fn tune(socket: &TcpStream) {
    let _ = socket.set_nodelay(true);
    let s = SockRef::from(socket);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    prefer_bbr(socket);
}

/// The appliance's TLS for lanes on a leased port.
#[derive(Clone)]
pub struct Acceptor(TlsAcceptor);

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tcp::Acceptor")
    }
}

impl Acceptor {
    pub async fn accept(
        &self,
        tcp: TcpStream,
    ) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
        self.0.accept(tcp).await
    }
}

/// The appliance's TLS acceptor for lanes on a leased port.
pub fn acceptor(identity: &Identity) -> Result<Acceptor, IdentityError> {
    let config = identity.server_config(&[ALPN_TCP], true)?;
    Ok(Acceptor(TlsAcceptor::from(Arc::new(config))))
}

/// A client's TLS connector pinned to the appliance's certificate.
pub fn connector(pin: &Arc<PinnedCert>, alpn: &[&[u8]]) -> TlsConnector {
    TlsConnector::from(Arc::new(pin.client_config(alpn, true)))
}

/// The TLS handshake of a client lane over `tcp`, pinned.
pub async fn tls_over(
    tcp: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    pin: &Arc<PinnedCert>,
    alpn: &[&[u8]],
    transport: Transport,
    addr: &str,
) -> Result<
    tokio_rustls::client::TlsStream<
        impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    >,
    EngineError,
> {
    let name = ServerName::try_from("ferry").unwrap_or_else(|_| unreachable!("a valid DNS name"));
    connector(pin, alpn).connect(name, tcp).await.map_err(|e| {
        if let Some(m) = e.get_ref().and_then(|inner| find_mismatch(inner)) {
            return EngineError::Connect(ConnectError::CertificateMismatch(m.to_string()));
        }
        EngineError::Connect(ConnectError::Dial {
            transport,
            addr: addr.to_owned(),
            reason: format!("TLS handshake failed: {e}"),
        })
    })
}

/// Opens one TCP lane to a leased port.
pub async fn dial(
    addr: SocketAddr,
    pin: &Arc<PinnedCert>,
    timeout: Duration,
) -> Result<BoxedLane, EngineError> {
    let fail = |reason: String| {
        EngineError::Connect(ConnectError::Dial {
            transport: Transport::Tcp,
            addr: addr.to_string(),
            reason,
        })
    };
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => {
            return Err(fail(format!(
                "no answer within {}s: TCP port {} is not reachable from this network",
                timeout.as_secs(),
                addr.port()
            )));
        }
        Ok(Err(e)) => return Err(fail(e.to_string())),
        Ok(Ok(s)) => s,
    };
    tune(&tcp);
    let tls = tokio::time::timeout(
        timeout,
        tls_over(tcp, pin, &[ALPN_TCP], Transport::Tcp, &addr.to_string()),
    )
    .await
    .map_err(|_| fail("the TLS handshake did not finish in time".into()))??;
    Ok(Box::new(tls))
}
