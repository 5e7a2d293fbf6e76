//! The client's address, the one the API, the web admin, login throttling,
//! the audit log and session tokens all use.

use std::net::IpAddr;

/// The address a request comes from: the TCP peer, unless the peer is a
/// trusted proxy, in which case the nearest address in `X-Forwarded-For`
/// that is not itself a trusted proxy. `forwarded` holds every
/// `X-Forwarded-For` header, in order.
///
/// Only the right end of the chain can be believed: each proxy appends
/// the address it saw, so everything left of the nearest untrusted entry
/// was written by the client and may be anything. Reading the leftmost
/// entry would let a client choose the address that throttling and the
/// audit log see.
pub fn client_address(peer: IpAddr, trusted: &[IpAddr], forwarded: &[&str]) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(&peer) {
        return peer;
    }
    let mut chain = forwarded.iter().flat_map(|h| h.split(',')).map(str::trim);
    let mut nearest = peer;
    // Walk from the right; stop at the first hop we cannot vouch for.
    let entries: Vec<&str> = chain.by_ref().collect();
    for entry in entries.iter().rev() {
        let Ok(ip) = entry.parse::<IpAddr>().map(|ip| ip.to_canonical()) else {
            // A garbled hop: what lies beyond it cannot be trusted either.
            return nearest;
        };
        nearest = ip;
        if !trusted.contains(&ip) {
            return ip;
        }
    }
    nearest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies_and_from_the_right() {
        let proxy = ip("10.0.0.1");
        let client = ip("198.51.100.2");
        // The client wrote 203.0.113.9 itself; the proxy appended 198.51.100.2.
        assert_eq!(
            client_address(proxy, &[proxy], &["203.0.113.9, 198.51.100.2"]),
            client
        );
        // From an untrusted peer the header is ignored.
        assert_eq!(client_address(client, &[proxy], &["203.0.113.9"]), client);
        // A chain of trusted proxies is skipped, across several headers.
        assert_eq!(
            client_address(
                proxy,
                &[proxy, ip("10.0.0.2")],
                &["198.51.100.2", "10.0.0.2"]
            ),
            client
        );
        // Nothing usable: the proxy itself.
        assert_eq!(client_address(proxy, &[proxy], &[]), proxy);
        assert_eq!(client_address(proxy, &[proxy], &["garbage"]), proxy);
        // A garbled hop stops the walk at the last good one.
        assert_eq!(
            client_address(proxy, &[proxy], &["1.2.3.4, junk, 10.0.0.1"]),
            proxy
        );
        // IPv4 mapped into IPv6 counts as IPv4.
        assert_eq!(
            client_address(ip("::ffff:10.0.0.1"), &[proxy], &["198.51.100.2"]),
            client
        );
    }
}
