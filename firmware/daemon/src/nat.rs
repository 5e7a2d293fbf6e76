//! Noticing an edge router that rewrites source addresses.
//!
//! The per-session firewall lets in only the address a client showed on
//! the control plane. If the edge router masquerades (SNAT) instead of only
//! forwarding (DNAT), every client shows up as the router's own inside
//! address, and that one address is then let in for everybody: the
//! protection is gone without anything failing. ferryd cannot see the
//! router, but it can see the symptom: several different users, all from
//! one private address.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferry_store::UserId;

/// How far back sessions are considered.
const WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Distinct users needed before a single address is suspicious.
const USERS: usize = 3;
/// Observations kept.
const KEEP: usize = 512;

#[derive(Debug, Default)]
pub struct SourceWatch {
    seen: Mutex<VecDeque<(Instant, UserId, IpAddr)>>,
}

/// Addresses that belong to a router's inside, not to a client on the
/// internet.
fn is_inside(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || v4.is_link_local() || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

impl SourceWatch {
    /// Records a session from `user` at `ip`; returns the warning when this
    /// observation is the one that makes it true.
    pub fn observe(&self, user: UserId, ip: IpAddr) -> Option<String> {
        let before = self.warning();
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            while seen
                .front()
                .is_some_and(|(t, _, _)| now.duration_since(*t) > WINDOW)
                || seen.len() >= KEEP
            {
                seen.pop_front();
            }
            seen.push_back((now, user, ip));
        }
        match (before, self.warning()) {
            (None, Some(w)) => Some(w),
            _ => None,
        }
    }

    /// The warning in force, if every recent client came from one inside
    /// address.
    pub fn warning(&self) -> Option<String> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let (_, _, first) = *seen.front()?;
        if !is_inside(first) || seen.iter().any(|(_, _, ip)| *ip != first) {
            return None;
        }
        let mut users: Vec<UserId> = seen.iter().map(|(_, u, _)| *u).collect();
        users.sort();
        users.dedup();
        (users.len() >= USERS).then(|| {
            format!(
                "every client reaches the appliance from {first}: the edge router seems to rewrite source \
                 addresses (SNAT or masquerade), so the per-session firewall lets that one address in for \
                 everybody. Make the router forward the ports without rewriting sources (DNAT only), or list a \
                 reverse proxy in trusted_proxies."
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_when_several_users_share_one_inside_address() {
        let w = SourceWatch::default();
        let gw: IpAddr = "172.20.0.1".parse().unwrap();
        assert!(w.observe(UserId(1), gw).is_none());
        assert!(w.observe(UserId(1), gw).is_none());
        assert!(w.observe(UserId(2), gw).is_none());
        let warning = w.observe(UserId(3), gw).expect("third user trips it");
        assert!(warning.contains("172.20.0.1"));
        assert!(w.observe(UserId(4), gw).is_none(), "said once");
        assert!(w.warning().is_some());
        // One client from elsewhere: the router does not rewrite everybody.
        w.observe(UserId(5), "198.51.100.2".parse().unwrap());
        assert!(w.warning().is_none());
    }

    #[test]
    fn public_addresses_and_loopback_do_not_warn() {
        let w = SourceWatch::default();
        let office: IpAddr = "198.51.100.7".parse().unwrap();
        for u in 1..10 {
            w.observe(UserId(u), office);
        }
        assert!(w.warning().is_none());
        let w = SourceWatch::default();
        for u in 1..10 {
            w.observe(UserId(u), "127.0.0.1".parse().unwrap());
        }
        assert!(w.warning().is_none());
    }
}
