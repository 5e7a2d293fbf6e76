//! Port leases: which client address may reach which UDP port, for how long.
//!
//! A lease is taken when a session is granted and given back when it ends.
//! Ports are shared when more sessions are live than the range has ports:
//! QUIC tells connections apart by connection ID, and the firewall keys on
//! (client address, port). This in-process table is the daemon's own view;
//! with `--firewall nft` the same leases are mirrored into nftables by
//! ferry-portguard.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::config::PortRange;

/// One client's right to reach one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: u64,
    pub ip: IpAddr,
    pub port: u16,
}

/// Leases by port, allocating the least-shared port first.
#[derive(Debug)]
pub struct LeaseTable {
    range: PortRange,
    next_id: u64,
    by_port: BTreeMap<u16, Vec<Lease>>,
}

impl LeaseTable {
    pub fn new(range: PortRange) -> Self {
        LeaseTable {
            range,
            next_id: 1,
            by_port: range.iter().map(|p| (p, Vec::new())).collect(),
        }
    }

    pub fn range(&self) -> PortRange {
        self.range
    }

    /// Leases the least-used port not in `avoid` to `ip`.
    pub fn acquire(&mut self, ip: IpAddr, avoid: &[u16]) -> Option<Lease> {
        let port = self
            .by_port
            .iter()
            .filter(|(p, _)| !avoid.contains(p))
            .min_by_key(|(p, leases)| (leases.len(), **p))
            .map(|(p, _)| *p)?;
        let lease = Lease {
            id: self.next_id,
            ip,
            port,
        };
        self.next_id += 1;
        self.by_port.entry(port).or_default().push(lease);
        Some(lease)
    }

    /// Gives a lease back; returns how many leases remain on its port.
    pub fn release(&mut self, lease: &Lease) -> usize {
        let leases = self.by_port.entry(lease.port).or_default();
        leases.retain(|l| l.id != lease.id);
        leases.len()
    }

    /// True when `ip` holds a lease on `port`.
    pub fn allows(&self, ip: IpAddr, port: u16) -> bool {
        self.by_port
            .get(&port)
            .is_some_and(|leases| leases.iter().any(|l| l.ip == ip))
    }

    pub fn active(&self) -> Vec<Lease> {
        self.by_port.values().flatten().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_ports_when_sessions_outnumber_them() {
        let mut t = LeaseTable::new("45190-45192".parse().unwrap());
        let ip: IpAddr = "198.51.100.2".parse().unwrap();
        let leases: Vec<Lease> = (0..7).map(|_| t.acquire(ip, &[]).unwrap()).collect();
        let mut counts = std::collections::HashMap::new();
        for l in &leases {
            *counts.entry(l.port).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 3);
        assert!(counts.values().all(|&c| (2..=3).contains(&c)));
        assert!(t.allows(ip, 45190));
        assert!(!t.allows("198.51.100.66".parse().unwrap(), 45190));
        for l in &leases {
            t.release(l);
        }
        assert!(t.active().is_empty());
        assert!(!t.allows(ip, 45190));
    }

    #[test]
    fn avoids_ports_it_is_told_to() {
        let mut t = LeaseTable::new("45190-45191".parse().unwrap());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(t.acquire(ip, &[45190]).unwrap().port, 45191);
        assert!(t.acquire(ip, &[45190, 45191]).is_none());
    }
}
