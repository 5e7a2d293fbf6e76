//! Port leases: which client address may reach which UDP port, until when.
//!
//! Ports are shared when more sessions are live than the range has ports:
//! QUIC tells connections apart by connection ID, and the firewall keys on
//! (client address, port). Time is passed in, so the table is tested
//! without a clock.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::PortRange;

/// One client's right to reach one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: u64,
    pub ip: IpAddr,
    pub port: u16,
    pub expires: Instant,
}

/// What the firewall must do after a change to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// Open (or keep open) the pair until `ttl` from now.
    Open {
        ip: IpAddr,
        port: u16,
        ttl: Duration,
    },
    /// No lease holds the pair any more: close it.
    Close { ip: IpAddr, port: u16 },
}

/// Leases by id, allocating the least-used port first.
#[derive(Debug)]
pub struct LeaseTable {
    range: PortRange,
    next_id: u64,
    leases: BTreeMap<u64, Lease>,
}

impl LeaseTable {
    pub fn new(range: PortRange) -> Self {
        LeaseTable {
            range,
            next_id: 1,
            leases: BTreeMap::new(),
        }
    }

    pub fn range(&self) -> PortRange {
        self.range
    }

    fn on_port(&self, port: u16) -> usize {
        self.leases.values().filter(|l| l.port == port).count()
    }

    /// The opening a pair needs now: open until its latest lease ends, or
    /// closed when none is left.
    fn opening(&self, ip: IpAddr, port: u16, now: Instant) -> Opening {
        match self
            .leases
            .values()
            .filter(|l| l.ip == ip && l.port == port)
            .map(|l| l.expires)
            .max()
        {
            Some(until) => Opening::Open {
                ip,
                port,
                ttl: until.saturating_duration_since(now),
            },
            None => Opening::Close { ip, port },
        }
    }

    /// Leases the least-used port not in `avoid` to `ip` for `ttl`.
    pub fn acquire(
        &mut self,
        ip: IpAddr,
        ttl: Duration,
        avoid: &[u16],
        now: Instant,
    ) -> Option<(Lease, Opening)> {
        let port = self
            .range
            .iter()
            .filter(|p| !avoid.contains(p))
            .min_by_key(|p| (self.on_port(*p), *p))?;
        let lease = Lease {
            id: self.next_id,
            ip,
            port,
            expires: now + ttl,
        };
        self.next_id += 1;
        self.leases.insert(lease.id, lease);
        Some((lease, self.opening(ip, port, now)))
    }

    /// Extends a live lease to `ttl` from now.
    pub fn renew(&mut self, id: u64, ttl: Duration, now: Instant) -> Option<(Lease, Opening)> {
        let lease = self.leases.get_mut(&id)?;
        lease.expires = now + ttl;
        let lease = *lease;
        Some((lease, self.opening(lease.ip, lease.port, now)))
    }

    /// Ends a lease.
    pub fn release(&mut self, id: u64, now: Instant) -> Option<(Lease, Opening)> {
        let lease = self.leases.remove(&id)?;
        Some((lease, self.opening(lease.ip, lease.port, now)))
    }

    /// Drops leases whose time is up; returns them with what to close.
    pub fn expire(&mut self, now: Instant) -> Vec<(Lease, Opening)> {
        let gone: Vec<u64> = self
            .leases
            .values()
            .filter(|l| l.expires <= now)
            .map(|l| l.id)
            .collect();
        gone.into_iter()
            .filter_map(|id| self.release(id, now))
            .collect()
    }

    /// True when `ip` holds a live lease on `port`.
    pub fn allows(&self, ip: IpAddr, port: u16) -> bool {
        self.leases.values().any(|l| l.ip == ip && l.port == port)
    }

    pub fn get(&self, id: u64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    pub fn active(&self) -> Vec<Lease> {
        self.leases.values().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(30);

    #[test]
    fn shares_ports_when_sessions_outnumber_them() {
        let now = Instant::now();
        let mut t = LeaseTable::new("45190-45192".parse().unwrap());
        let ip: IpAddr = "198.51.100.2".parse().unwrap();
        let leases: Vec<Lease> = (0..7)
            .map(|_| t.acquire(ip, TTL, &[], now).unwrap().0)
            .collect();
        let mut counts = std::collections::HashMap::new();
        for l in &leases {
            *counts.entry(l.port).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 3);
        assert!(counts.values().all(|&c| (2..=3).contains(&c)));
        assert!(t.allows(ip, 45190));
        assert!(!t.allows("198.51.100.66".parse().unwrap(), 45190));
        for l in &leases {
            t.release(l.id, now);
        }
        assert!(t.active().is_empty());
        assert!(!t.allows(ip, 45190));
    }

    #[test]
    fn a_pair_stays_open_while_any_of_its_leases_lives() {
        let now = Instant::now();
        let mut t = LeaseTable::new("45190-45190".parse().unwrap());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let (a, open) = t.acquire(ip, TTL, &[], now).unwrap();
        assert_eq!(
            open,
            Opening::Open {
                ip,
                port: 45190,
                ttl: TTL
            }
        );
        let later = now + Duration::from_secs(10);
        let (b, _) = t.acquire(ip, TTL, &[], later).unwrap();
        assert_eq!(a.port, b.port);
        // Releasing the first keeps the pair open until the second ends.
        let (_, opening) = t.release(a.id, later).unwrap();
        assert_eq!(
            opening,
            Opening::Open {
                ip,
                port: 45190,
                ttl: TTL
            }
        );
        let (_, opening) = t.release(b.id, later).unwrap();
        assert_eq!(opening, Opening::Close { ip, port: 45190 });
    }

    #[test]
    fn leases_expire_unless_renewed() {
        let now = Instant::now();
        let mut t = LeaseTable::new("45190-45191".parse().unwrap());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let (a, _) = t.acquire(ip, TTL, &[], now).unwrap();
        let (b, _) = t.acquire(ip, TTL, &[], now).unwrap();
        assert!(t.renew(a.id, TTL, now + Duration::from_secs(20)).is_some());
        let gone = t.expire(now + Duration::from_secs(31));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].0.id, b.id);
        assert_eq!(gone[0].1, Opening::Close { ip, port: b.port });
        assert!(t.get(a.id).is_some());
        assert!(
            t.renew(b.id, TTL, now).is_none(),
            "an expired lease cannot be renewed"
        );
    }

    #[test]
    fn avoids_ports_it_is_told_to() {
        let now = Instant::now();
        let mut t = LeaseTable::new("45190-45191".parse().unwrap());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(t.acquire(ip, TTL, &[45190], now).unwrap().0.port, 45191);
        assert!(t.acquire(ip, TTL, &[45190, 45191], now).is_none());
    }
}
