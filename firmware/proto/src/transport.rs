//! The three ways a session's bytes may travel, and the names users and
//! the wire give them.
//!
//! The session itself (token, frames, chunks, resume) is the same on each:
//! only how its streams are carried differs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a session's bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// QUIC over UDP on the leased port: Ferry's own congestion control,
    /// no head-of-line blocking between chunks. The fastest on long lossy
    /// links.
    Quic,
    /// TLS 1.3 over several TCP connections to the leased port, for
    /// networks that drop UDP.
    Tcp,
    /// Upgraded HTTPS connections to the control port (443 on an
    /// appliance), through an HTTP proxy when one is set: for networks
    /// that let only web traffic out.
    Https,
}

impl Transport {
    /// Every transport, fastest first: the order `auto` tries them in.
    pub const ALL: [Transport; 3] = [Transport::Quic, Transport::Tcp, Transport::Https];

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Quic => "quic",
            Transport::Tcp => "tcp",
            Transport::Https => "https",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transport name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown transport {0:?}: use quic, tcp or https")]
pub struct UnknownTransport(pub String);

impl FromStr for Transport {
    type Err = UnknownTransport;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "quic" | "udp" => Ok(Transport::Quic),
            "tcp" => Ok(Transport::Tcp),
            "https" => Ok(Transport::Https),
            _ => Err(UnknownTransport(s.to_owned())),
        }
    }
}

/// ALPN of the TCP data plane (TLS 1.3 on a leased port).
pub const ALPN_TCP: &[u8] = b"ferry-tcp/1";

/// The `Upgrade` token of the HTTPS data plane.
pub const UPGRADE_HTTPS: &str = "ferry-lanes/1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for t in Transport::ALL {
            assert_eq!(t.as_str().parse::<Transport>(), Ok(t));
            assert_eq!(
                serde_json::to_string(&t).unwrap_or_default(),
                format!("\"{t}\"")
            );
        }
        assert_eq!("UDP".parse::<Transport>(), Ok(Transport::Quic));
        assert!("ftp".parse::<Transport>().is_err());
    }
}
