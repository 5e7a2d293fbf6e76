//! The nftables script, written by pure functions.
//!
//! The table is replaced whole and atomically (`add table` makes sure it
//! exists so that `delete table` cannot fail, then it is defined anew in the
//! same transaction). Elements are changed in transactions of their own.
//! Only typed values reach the text: `IpAddr`, `u16` ports, whole seconds.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use crate::{PortRange, SET4, SET6, TABLE};

/// The packet mark on a leased session's datagrams. A host whose own input
/// chain drops by default (the appliance's baseline ruleset) accepts
/// `meta mark 0x0000f377`, so this table stays the one that decides which
/// transfer traffic comes in, and nothing is open when it is absent.
pub const LEASED_MARK: u32 = 0xf377;

/// The whole table, with empty sets: used at start (reconcile) and never
/// touching any other table.
pub fn table(range: PortRange) -> String {
    let ports = format!("{}-{}", range.first, range.last);
    format!(
        "add table inet {TABLE}\n\
         delete table inet {TABLE}\n\
         table inet {TABLE} {{\n\
         \tset {SET4} {{\n\
         \t\ttype ipv4_addr . inet_service\n\
         \t\tflags timeout\n\
         \t}}\n\
         \tset {SET6} {{\n\
         \t\ttype ipv6_addr . inet_service\n\
         \t\tflags timeout\n\
         \t}}\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority -10; policy accept;\n\
         \t\tudp dport {ports} ip saddr . udp dport @{SET4} counter meta mark set {LEASED_MARK:#010x} accept\n\
         \t\tudp dport {ports} ip6 saddr . udp dport @{SET6} counter meta mark set {LEASED_MARK:#010x} accept\n\
         \t\tudp dport {ports} counter drop\n\
         \t\ttcp dport {ports} ip saddr . tcp dport @{SET4} counter meta mark set {LEASED_MARK:#010x} accept\n\
         \t\ttcp dport {ports} ip6 saddr . tcp dport @{SET6} counter meta mark set {LEASED_MARK:#010x} accept\n\
         \t\ttcp dport {ports} counter drop\n\
         \t}}\n\
         }}\n"
    )
}

fn set_of(ip: &IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => SET4,
        IpAddr::V6(_) => SET6,
    }
}

fn secs(ttl: Duration) -> u64 {
    ttl.as_secs().max(1)
}

/// Opens (or re-opens with a fresh timeout) `ip`:`port`. Adding first
/// makes sure the element exists, so the delete cannot fail; the final add
/// carries the new timeout. One transaction: never a moment without it.
pub fn open(ip: IpAddr, port: u16, ttl: Duration) -> String {
    let set = set_of(&ip);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "add element inet {TABLE} {set} {{ {ip} . {port} timeout {}s }}",
        secs(ttl)
    );
    let _ = writeln!(s, "delete element inet {TABLE} {set} {{ {ip} . {port} }}");
    let _ = writeln!(
        s,
        "add element inet {TABLE} {set} {{ {ip} . {port} timeout {}s }}",
        secs(ttl)
    );
    s
}

/// Closes `ip`:`port` (whether or not it already timed out).
pub fn close(ip: IpAddr, port: u16) -> String {
    let set = set_of(&ip);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "add element inet {TABLE} {set} {{ {ip} . {port} timeout 1s }}"
    );
    let _ = writeln!(s, "delete element inet {TABLE} {set} {{ {ip} . {port} }}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden(name: &str, actual: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name);
        if std::env::var_os("FERRY_BLESS").is_some() {
            std::fs::write(&path, actual).unwrap();
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (FERRY_BLESS=1 writes it)", path.display()));
        assert_eq!(actual, expected, "{name} differs from its golden file");
    }

    #[test]
    fn the_table() {
        golden("table.nft", &table("45190-45210".parse().unwrap()));
    }

    #[test]
    fn opening_and_closing() {
        let v4: IpAddr = "198.51.100.2".parse().unwrap();
        let v6: IpAddr = "2001:db8::2".parse().unwrap();
        let mut s = open(v4, 45190, Duration::from_secs(30));
        s.push_str(&open(v6, 45191, Duration::from_millis(10)));
        s.push_str(&close(v4, 45190));
        golden("elements.nft", &s);
    }
}
