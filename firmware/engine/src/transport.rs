//! QUIC endpoint and transport settings shared by the appliance and the
//! client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ClientConfig, Endpoint, IdleTimeout, ServerConfig, TransportConfig, VarInt};

use crate::tls::{Identity, IdentityError, PinnedCert};

/// Flow-control and liveness settings of a data connection.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Receive window of one stream, in bytes.
    pub stream_window: u64,
    /// Receive window of the whole connection, in bytes.
    pub connection_window: u64,
    /// Bytes a sender keeps unacknowledged across all streams.
    pub send_window: u64,
    /// Unidirectional streams a peer may have open at once: the bound on
    /// chunks in flight towards us.
    pub max_uni_streams: u32,
    /// Keep-alive interval: holds NAT mappings open through quiet moments.
    pub keep_alive: Duration,
    /// A connection silent this long is dead.
    pub idle_timeout: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            stream_window: 16 << 20,
            connection_window: 128 << 20,
            send_window: 128 << 20,
            max_uni_streams: 256,
            keep_alive: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

impl Tuning {
    pub fn transport_config(&self) -> TransportConfig {
        let mut t = TransportConfig::default();
        t.stream_receive_window(VarInt::from_u64(self.stream_window).unwrap_or(VarInt::MAX))
            .receive_window(VarInt::from_u64(self.connection_window).unwrap_or(VarInt::MAX))
            .send_window(self.send_window)
            .max_concurrent_uni_streams(VarInt::from_u32(self.max_uni_streams))
            .max_concurrent_bidi_streams(VarInt::from_u32(1))
            .keep_alive_interval(Some(self.keep_alive))
            .max_idle_timeout(IdleTimeout::try_from(self.idle_timeout).ok());
        t
    }
}

/// Server configuration for the data plane: TLS 1.3 with ALPN `ferry/1`,
/// and no connection migration, because a session is bound to the address
/// its lease and token were issued to.
pub fn server_config(identity: &Identity, tuning: &Tuning) -> Result<ServerConfig, IdentityError> {
    let tls = identity.server_config(&[ferry_proto::ALPN], true)?;
    let crypto = QuicServerConfig::try_from(tls)
        .map_err(|e| IdentityError::Generate(format!("QUIC TLS configuration: {e}")))?;
    let mut config = ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(tuning.transport_config()));
    config.migration(false);
    Ok(config)
}

/// Client configuration pinned to the appliance's certificate.
pub fn client_config(pin: &Arc<PinnedCert>, tuning: &Tuning) -> ClientConfig {
    let tls = pin.client_config(&[ferry_proto::ALPN], true);
    // TLS 1.3 with an initial cipher suite is all QUIC needs, and
    // PinnedCert::client_config always provides both.
    let crypto = QuicClientConfig::try_from(tls).unwrap_or_else(|_| unreachable!("TLS 1.3 config"));
    let mut config = ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(tuning.transport_config()));
    config
}

/// A client endpoint on an ephemeral port of the right address family.
pub fn client_endpoint(server: SocketAddr) -> std::io::Result<Endpoint> {
    let bind: SocketAddr = if server.is_ipv6() {
        "[::]:0".parse().unwrap_or_else(|_| unreachable!())
    } else {
        "0.0.0.0:0".parse().unwrap_or_else(|_| unreachable!())
    };
    Endpoint::client(bind)
}
