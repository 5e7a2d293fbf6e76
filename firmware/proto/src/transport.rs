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

/// The transports a site allows (`[transfer] transports`): never none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<Transport>", into = "Vec<Transport>")]
pub struct Transports {
    quic: bool,
    tcp: bool,
    https: bool,
}

impl Default for Transports {
    fn default() -> Self {
        Transports {
            quic: true,
            tcp: true,
            https: true,
        }
    }
}

/// A site must allow at least one transport.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportsError {
    #[error("allow at least one transport (quic, tcp, https)")]
    None,
    #[error(transparent)]
    Unknown(#[from] UnknownTransport),
}

impl Transports {
    /// Exactly `list`.
    pub fn only(list: &[Transport]) -> Result<Self, TransportsError> {
        let t = Transports {
            quic: list.contains(&Transport::Quic),
            tcp: list.contains(&Transport::Tcp),
            https: list.contains(&Transport::Https),
        };
        if t.list().is_empty() {
            return Err(TransportsError::None);
        }
        Ok(t)
    }

    pub fn allows(self, t: Transport) -> bool {
        match t {
            Transport::Quic => self.quic,
            Transport::Tcp => self.tcp,
            Transport::Https => self.https,
        }
    }

    /// The allowed transports, fastest first.
    pub fn list(self) -> Vec<Transport> {
        Transport::ALL
            .into_iter()
            .filter(|t| self.allows(*t))
            .collect()
    }
}

impl TryFrom<Vec<Transport>> for Transports {
    type Error = TransportsError;

    fn try_from(v: Vec<Transport>) -> Result<Self, Self::Error> {
        Transports::only(&v)
    }
}

impl From<Transports> for Vec<Transport> {
    fn from(t: Transports) -> Self {
        t.list()
    }
}

impl fmt::Display for Transports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.list().into_iter().map(Transport::as_str).collect();
        f.write_str(&names.join(", "))
    }
}

/// `quic, tcp` (commas or spaces).
impl FromStr for Transports {
    type Err = TransportsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let list = s
            .split([',', ' '])
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Transport>, _>>()?;
        Transports::only(&list)
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

    #[test]
    fn a_site_allows_some_transports_never_none() {
        let t: Transports = "tcp, https".parse().unwrap_or_default();
        assert!(!t.allows(Transport::Quic) && t.allows(Transport::Tcp));
        assert_eq!(t.to_string(), "tcp, https");
        assert_eq!("".parse::<Transports>(), Err(TransportsError::None));
        assert!("quic, smoke".parse::<Transports>().is_err());
        assert_eq!(Transports::default().list(), Transport::ALL.to_vec());
        let back: Transports = serde_json::from_str(r#"["quic"]"#).unwrap_or_default();
        assert_eq!(back.list(), vec![Transport::Quic]);
        assert!(serde_json::from_str::<Transports>("[]").is_err());
    }
}
