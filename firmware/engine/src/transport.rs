//! QUIC endpoint and transport settings shared by the appliance and the
//! client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use std::io;

use quinn::{
    ClientConfig, Endpoint, EndpointConfig, IdleTimeout, MtuDiscoveryConfig, ServerConfig,
    TransportConfig, VarInt,
};
use socket2::{Domain, Protocol, Socket, Type};

use crate::congestion::PaceHandle;
use crate::tls::{Identity, IdentityError, PinnedCert};
use ferry_proto::Pace;

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
    /// A connection silent this long is dead. 20 s: a client that died (a
    /// killed terminal, a closed laptop) has its job shown interrupted
    /// within half a minute, while three keep-alives may still be lost
    /// before a live one is given up. (A receiver's first keep-alive after
    /// the peer's last packet restarts the timer once, so the end comes at
    /// most a keep-alive interval later: 26 s.)
    pub idle_timeout: Duration,
    /// The largest UDP payload MTU discovery may try: Ethernet's 1472, or
    /// [`LOOPBACK_UDP_PAYLOAD`] (also the most any path may use) towards
    /// this machine itself.
    pub max_udp_payload: u16,
    /// Kernel send and receive buffer of the UDP socket, in bytes.
    pub socket_buffer: usize,
    /// The most a session's connection window may grow to, in bytes: the
    /// memory one session may hold in buffers.
    pub max_window: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            stream_window: 16 << 20,
            connection_window: 128 << 20,
            send_window: 128 << 20,
            max_uni_streams: 256,
            keep_alive: Duration::from_secs(6),
            idle_timeout: Duration::from_secs(20),
            max_udp_payload: 1472,
            socket_buffer: 4 << 20,
            max_window: 256 << 20,
        }
    }
}

/// The largest UDP payload towards a peer on this machine (loopback). quinn
/// hands the kernel up to ten datagrams per GSO send, and one send may carry
/// at most 65,507 bytes of UDP payload, so ten of these must fit: a larger
/// payload made every batched send fail (measured: 40 to 99 % of packets
/// lost at 8972 bytes). At 6500 bytes, a GiB is 165,000 packets instead of
/// 730,000, and each costs the same to encrypt, send and acknowledge.
pub const LOOPBACK_UDP_PAYLOAD: u16 = 6500;

/// The smallest connection window: enough for a few chunks at any rate.
pub const MIN_WINDOW: u64 = 16 << 20;
/// What a connection that has not said who it is may send us: its
/// greeting, and not much more. No unidirectional stream is granted
/// before `Hello`, so nothing else can be pushed.
const PRE_HELLO_WINDOW: u64 = 256 << 10;

/// Sessions whose tickets the data plane remembers for resumption (rustls's
/// own default): more than the sessions one appliance runs at once.
const RESUMABLE_SESSIONS: usize = 256;
/// Bandwidth-delay products a window holds. At 1 % loss a lost packet holds
/// up its stream for another round trip or two while the rest keep coming,
/// so one BDP is not enough: quinn's default 1.25 MB window halved the rate
/// of a 90 Mbit/s transfer at 100 ms.
const WINDOW_BDPS: f64 = 4.0;
/// The RTT assumed until one is measured, and the least one planned for.
const PLANNING_RTT: Duration = Duration::from_millis(50);

impl Tuning {
    /// The tuning of a connection to `peer`: towards this machine's own
    /// loopback, datagrams as large as [`LOOPBACK_UDP_PAYLOAD`]. Other
    /// paths discover their MTU up to `max_udp_payload`.
    pub fn for_peer(&self, peer: SocketAddr) -> Tuning {
        let mut t = self.clone();
        if peer.ip().to_canonical().is_loopback() {
            t.max_udp_payload = t.max_udp_payload.max(LOOPBACK_UDP_PAYLOAD);
        }
        t
    }

    /// The connection's receive and send window for a pace and RTT:
    /// several bandwidth-delay products of the target, within
    /// [`MIN_WINDOW`] and `max_window`. Without a target, `max_window`.
    pub fn window_for(&self, pace: Pace, rtt: Duration) -> u64 {
        let max = self.max_window.max(MIN_WINDOW);
        match pace.target {
            None => max,
            Some(rate) => {
                let bdp = rate.bytes_per_sec() as f64 * rtt.max(PLANNING_RTT).as_secs_f64();
                ((bdp * WINDOW_BDPS) as u64).clamp(MIN_WINDOW, max)
            }
        }
    }

    /// Sizes the windows of a connection whose pace and RTT are known.
    pub fn size_windows(&self, conn: &quinn::Connection, pace: Pace) -> u64 {
        self.size_windows_within(conn, pace, u64::MAX)
    }

    /// Like [`Tuning::size_windows`], but never past `cap` bytes (the
    /// session's share of the appliance's memory).
    pub fn size_windows_within(&self, conn: &quinn::Connection, pace: Pace, cap: u64) -> u64 {
        let window = self.window_for(pace, conn.rtt()).min(cap);
        conn.set_receive_window(VarInt::from_u64(window).unwrap_or(VarInt::MAX));
        conn.set_send_window(window);
        window
    }

    /// Opens a connection up once it has said who it is: its windows, and
    /// the chunk streams its peer may open.
    pub fn open_up(&self, conn: &quinn::Connection, pace: Pace, cap: u64) -> u64 {
        conn.set_max_concurrent_uni_streams(VarInt::from_u32(self.max_uni_streams));
        self.size_windows_within(conn, pace, cap)
    }

    /// Transport settings of one connection, whose congestion controller
    /// follows `pace`.
    pub fn transport_config(&self, pace: &PaceHandle) -> TransportConfig {
        let mut t = TransportConfig::default();
        t.congestion_controller_factory(pace.factory());
        t.stream_receive_window(VarInt::from_u64(self.stream_window).unwrap_or(VarInt::MAX))
            .receive_window(
                VarInt::from_u64(self.connection_window.min(self.max_window))
                    .unwrap_or(VarInt::MAX),
            )
            .send_window(self.send_window.min(self.max_window))
            .max_concurrent_uni_streams(VarInt::from_u32(self.max_uni_streams))
            .max_concurrent_bidi_streams(VarInt::from_u32(1))
            .keep_alive_interval(Some(self.keep_alive))
            .max_idle_timeout(IdleTimeout::try_from(self.idle_timeout).ok());
        // MTU discovery searches up to this bound. (A bound whose ten-packet
        // GSO batch passes 64 KiB fails every batched send: the probes
        // succeed one at a time, then the losses trip quinn's black-hole
        // detector and the path falls to 1200 bytes.)
        let mut mtu = MtuDiscoveryConfig::default();
        mtu.upper_bound(self.max_udp_payload.min(LOOPBACK_UDP_PAYLOAD));
        t.mtu_discovery_config(Some(mtu));
        t
    }
}

/// Server configuration for the data plane: TLS 1.3 with ALPN `ferry/1`,
/// and no connection migration, because a session is bound to the address
/// its lease and token were issued to. Each connection is accepted with
/// [`for_connection`], which gives it a pace of its own.
pub fn server_config(identity: &Identity, tuning: &Tuning) -> Result<ServerConfig, IdentityError> {
    let mut tls = identity.server_config(&[ferry_proto::ALPN], true)?;
    // Early data from a client resuming a session: its `Hello` arrives
    // with the handshake (QUIC allows only "none" or "unbounded" here).
    // Replay safety rests on the tickets being kept here and taken once
    // (rustls `take`s from its session storage, and refuses early data
    // with stateless tickets), so a replayed first flight is refused its
    // early data. The storage is set explicitly, and no ticketer is.
    tls.max_early_data_size = u32::MAX;
    tls.session_storage = rustls::server::ServerSessionMemoryCache::new(RESUMABLE_SESSIONS);
    let crypto = QuicServerConfig::try_from(tls)
        .map_err(|e| IdentityError::Generate(format!("QUIC TLS configuration: {e}")))?;
    let mut config = ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(
        tuning.transport_config(&PaceHandle::new(Pace::default())),
    ));
    config.migration(false);
    Ok(config)
}

/// The server configuration for one incoming connection: its congestion
/// controller follows `pace`, which the session sets once it knows who
/// connected and what they may do. Until then the connection is held
/// short: a small receive window and no unidirectional streams, so a peer
/// that never greets can push a few hundred KiB, not the session's window
/// ([`Tuning::open_up`] lifts this after `Hello`).
pub fn for_connection(
    base: &ServerConfig,
    tuning: &Tuning,
    pace: &PaceHandle,
) -> Arc<ServerConfig> {
    let mut config = base.clone();
    let mut transport = tuning.transport_config(pace);
    transport
        .receive_window(VarInt::from_u64(PRE_HELLO_WINDOW).unwrap_or(VarInt::MAX))
        .max_concurrent_uni_streams(VarInt::from_u32(0));
    config.transport_config(Arc::new(transport));
    Arc::new(config)
}

/// Client configuration pinned to the appliance's certificate, with a
/// congestion controller that follows `pace`.
pub fn client_config(pin: &Arc<PinnedCert>, tuning: &Tuning, pace: &PaceHandle) -> ClientConfig {
    let mut tls = pin.client_config(&[ferry_proto::ALPN], true);
    // A reconnecting client greets in its first flight (0-RTT): the
    // greeting is safe to replay, since the appliance takes each ticket
    // once and a token's session is bound to its lease.
    tls.enable_early_data = true;
    // TLS 1.3 with an initial cipher suite is all QUIC needs, and
    // PinnedCert::client_config always provides both.
    let crypto = QuicClientConfig::try_from(tls).unwrap_or_else(|_| unreachable!("TLS 1.3 config"));
    let mut config = ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(tuning.transport_config(pace)));
    config
}

/// Endpoint settings: datagrams as large as MTU discovery may use on any
/// path, loopback's included.
fn endpoint_config(tuning: &Tuning) -> EndpointConfig {
    let mut c = EndpointConfig::default();
    // Out-of-range values are refused by quinn; the default then stands.
    let _ = c.max_udp_payload_size(tuning.max_udp_payload.max(LOOPBACK_UDP_PAYLOAD));
    // No connection IDs in short headers: eight more bytes of each packet
    // carry file bytes. Every data connection is one client socket to one
    // port, and none migrates (the server refuses migration), so the
    // address pair alone finds its connection, as quinn does when IDs are
    // empty. The cost: a client that comes back from the very same
    // address and port while its old connection still lingers here is
    // taken for that connection until it ends; its next attempt, from a
    // new socket, gets through.
    c.cid_generator(|| Box::new(quinn_proto::RandomConnectionIdGenerator::new(0)));
    c
}

/// A UDP socket with large kernel buffers: at high rates the default
/// (about 200 KB) overflows between two reads, and every drop looks like
/// congestion to the sender.
fn bind_udp(addr: SocketAddr, tuning: &Tuning) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    set_buffers(&socket, tuning.socket_buffer);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn set_buffers(socket: &Socket, bytes: usize) {
    // With CAP_NET_ADMIN (the appliance's portguard does not lend it, but
    // a root test run has it) the kernel's cap can be passed; otherwise ask
    // for as much as net.core.[rw]mem_max allows.
    #[cfg(target_os = "linux")]
    {
        use nix::sys::socket::{setsockopt, sockopt};
        let forced = setsockopt(socket, sockopt::RcvBufForce, &bytes).is_ok()
            && setsockopt(socket, sockopt::SndBufForce, &bytes).is_ok();
        if forced {
            return;
        }
    }
    let _ = socket.set_recv_buffer_size(bytes);
    let _ = socket.set_send_buffer_size(bytes);
}

fn runtime() -> io::Result<Arc<dyn quinn::Runtime>> {
    quinn::default_runtime().ok_or_else(|| io::Error::other("QUIC needs a tokio runtime"))
}

/// The appliance's endpoint on one data port.
pub fn server_endpoint(
    addr: SocketAddr,
    config: ServerConfig,
    tuning: &Tuning,
) -> io::Result<Endpoint> {
    Endpoint::new(
        endpoint_config(tuning),
        Some(config),
        bind_udp(addr, tuning)?,
        runtime()?,
    )
}

/// What the kernel lends a UDP socket for batching packets, as quinn's
/// socket layer finds it: segments per send (GSO) and per receive (GRO).
/// One means each packet is a system call of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offload {
    pub gso_segments: usize,
    pub gro_segments: usize,
}

impl std::fmt::Display for Offload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on = |n: usize| {
            if n > 1 {
                format!("up to {n} packets a call")
            } else {
                "off".to_owned()
            }
        };
        write!(
            f,
            "GSO {}, GRO {}",
            on(self.gso_segments),
            on(self.gro_segments)
        )
    }
}

/// Asks the kernel what a UDP socket of `like`'s address family gets:
/// quinn sets the same options on the endpoints' own sockets.
pub fn udp_offload(like: SocketAddr) -> io::Result<Offload> {
    let any: SocketAddr = if like.is_ipv6() {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
    };
    let socket = std::net::UdpSocket::bind(any)?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    Ok(Offload {
        gso_segments: state.max_gso_segments(),
        gro_segments: state.gro_segments(),
    })
}

/// A client endpoint on an ephemeral port of the right address family.
pub fn client_endpoint(server: SocketAddr) -> io::Result<Endpoint> {
    let tuning = Tuning::default();
    let bind: SocketAddr = if server.is_ipv6() {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
    };
    Endpoint::new(
        endpoint_config(&tuning),
        None,
        bind_udp(bind, &tuning)?,
        runtime()?,
    )
}
