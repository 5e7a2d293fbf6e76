//! ferry-portguard: the only part of Ferry with `CAP_NET_ADMIN`.
//!
//! ferryd runs unprivileged. When it grants a data session it asks
//! portguard, over a Unix socket, for a *lease*: one UDP port from the
//! configured range, opened in nftables for one client address, with a
//! timeout. ferryd renews the lease while the session lives and releases it
//! when the session ends. If ferryd or portguard dies, the kernel times the
//! openings out by itself: the firewall fails closed.
//!
//! - [`protocol`]: the closed set of requests (lease, renew, release, list)
//!   and their framing, bounded in size.
//! - [`ruleset`]: pure functions that write the nftables script; every value
//!   spliced in is a typed address or port, never free text.
//! - [`leases`]: port allocation and lease bookkeeping, with time passed in.
//! - [`nft`]: the thin layer that applies a script with `nft -f -`.
//! - [`server`]: the helper's socket loop with `SO_PEERCRED` checks.
//! - [`client`]: what ferryd links to talk to it.

pub mod client;
pub mod leases;
pub mod nft;
pub mod protocol;
pub mod ruleset;
pub mod server;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An inclusive UDP port range, `FIRST-LAST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn len(&self) -> usize {
        usize::from(self.last - self.first) + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    pub fn iter(&self) -> impl Iterator<Item = u16> {
        self.first..=self.last
    }
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("port range must be FIRST-LAST with 1024 <= FIRST <= LAST <= 65535, not {s:?}")
        };
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let first: u16 = a.trim().parse().map_err(|_| bad())?;
        let last: u16 = b.trim().parse().map_err(|_| bad())?;
        if first < 1024 || first > last {
            return Err(bad());
        }
        Ok(PortRange { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// The nftables table portguard owns. It never touches any other.
pub const TABLE: &str = "ferry";
/// Its sets of open (address, port) pairs.
pub const SET4: &str = "sessions4";
pub const SET6: &str = "sessions6";
