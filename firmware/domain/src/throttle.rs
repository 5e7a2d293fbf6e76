//! Login throttling and per-address budgets, as plain data with the clock
//! passed in. The users service keeps one [`LoginThrottle`] for every way
//! in (the web admin's login form and `POST /api/v1/login`), so guessing
//! through one does not walk around the other.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures per account within [`WINDOW`] before it is locked for the rest.
pub const ACCOUNT_LIMIT: u32 = 5;
/// Failures per address within [`WINDOW`].
pub const ADDRESS_LIMIT: u32 = 20;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Entries kept before old ones are swept, so a flood of addresses cannot
/// grow the tables without bound.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Count {
    n: u32,
    since: Instant,
}

/// Counts within a window per key.
#[derive(Debug)]
struct Window<K> {
    counts: HashMap<K, Count>,
    limit: u32,
}

impl<K: Hash + Eq> Window<K> {
    fn new(limit: u32) -> Self {
        Window {
            counts: HashMap::new(),
            limit,
        }
    }

    /// How long `key` must wait, if at all.
    fn waiting(&self, key: &K, now: Instant) -> Option<Duration> {
        let c = self.counts.get(key)?;
        let until = c.since + WINDOW;
        (c.n >= self.limit && now < until).then(|| until - now)
    }

    fn bump(&mut self, key: K, now: Instant) {
        if self.counts.len() > SWEEP_ABOVE {
            self.counts.retain(|_, c| now < c.since + WINDOW);
        }
        let c = self.counts.entry(key).or_insert(Count { n: 0, since: now });
        if now >= c.since + WINDOW {
            *c = Count { n: 0, since: now };
        }
        c.n += 1;
    }
}

/// Limits on password attempts, per account and per address, so guessing
/// is slow whether one account or many are tried.
#[derive(Debug)]
pub struct LoginThrottle {
    accounts: Window<String>,
    addresses: Window<IpAddr>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            accounts: Window::new(ACCOUNT_LIMIT),
            addresses: Window::new(ADDRESS_LIMIT),
        }
    }
}

impl LoginThrottle {
    /// Takes one attempt from the budgets of `email` and `from`, or says
    /// how long to wait. Every attempt is counted before its password is
    /// checked, so attempts sent in parallel cannot all slip through
    /// before any of them fails.
    pub fn attempt(&mut self, email: &str, from: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = email.trim().to_lowercase();
        let wait = self
            .accounts
            .waiting(&key, now)
            .max(self.addresses.waiting(&from, now));
        if let Some(w) = wait {
            return Err(w);
        }
        self.accounts.bump(key, now);
        self.addresses.bump(from, now);
        Ok(())
    }

    /// The attempt was good: the account's count clears, and the address
    /// gets its attempt back (a good login must not use up an office's
    /// shared budget, nor reset a guesser's).
    pub fn succeeded(&mut self, email: &str, from: IpAddr) {
        self.accounts.counts.remove(&email.trim().to_lowercase());
        if let Some(c) = self.addresses.counts.get_mut(&from) {
            c.n = c.n.saturating_sub(1);
        }
    }

    /// How long `email` must wait before trying again from `from`, if at
    /// all; no attempt is taken.
    pub fn wait(&self, email: &str, from: IpAddr, now: Instant) -> Option<Duration> {
        let key = email.trim().to_lowercase();
        self.accounts
            .waiting(&key, now)
            .max(self.addresses.waiting(&from, now))
    }
}

/// A per-address budget of requests for public pages (the invitation
/// page): `limit` requests per [`WINDOW`].
#[derive(Debug)]
pub struct AddressBudget(Window<IpAddr>);

impl AddressBudget {
    pub fn new(limit: u32) -> Self {
        AddressBudget(Window::new(limit))
    }

    /// Counts a request; how long to wait when over budget.
    pub fn hit(&mut self, from: IpAddr, now: Instant) -> Result<(), Duration> {
        if let Some(wait) = self.0.waiting(&from, now) {
            return Err(wait);
        }
        self.0.bump(from, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn an_account_locks_after_five_failures_from_anywhere() {
        let mut t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..ACCOUNT_LIMIT {
            let from = if i % 2 == 0 { A } else { B };
            assert_eq!(t.wait("ann@example.com", from, now), None);
            assert!(t.attempt("Ann@Example.com", from, now).is_ok());
        }
        let wait = t.wait("ann@example.com", B, now).unwrap();
        assert!(wait > Duration::from_secs(14 * 60));
        assert_eq!(t.wait("bob@example.com", B, now), None);
        assert_eq!(t.wait("ann@example.com", A, now + WINDOW), None);
    }

    #[test]
    fn an_address_locks_after_twenty_failures_on_any_accounts() {
        let mut t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..ADDRESS_LIMIT {
            t.attempt(&format!("user{i}@example.com"), A, now).unwrap();
        }
        assert!(t.wait("new@example.com", A, now).is_some());
        assert_eq!(t.wait("new@example.com", B, now), None);
    }

    #[test]
    fn attempts_are_counted_before_they_are_checked_and_a_good_one_gives_back() {
        let mut t = LoginThrottle::default();
        let now = Instant::now();
        let admitted = (0..50)
            .filter(|_| t.attempt("ann@example.com", A, now).is_ok())
            .count();
        assert_eq!(admitted, ACCOUNT_LIMIT as usize);
        let mut t = LoginThrottle::default();
        t.attempt("bob@example.com", B, now).unwrap();
        t.succeeded("bob@example.com", B);
        for i in 0..ADDRESS_LIMIT {
            t.attempt(&format!("u{i}@example.com"), B, now).unwrap();
        }
        assert!(t.attempt("x@example.com", B, now).is_err());
    }

    #[test]
    fn a_public_page_allows_a_budget_per_address() {
        let mut r = AddressBudget::new(3);
        let now = Instant::now();
        for _ in 0..3 {
            assert!(r.hit(A, now).is_ok());
        }
        assert!(r.hit(A, now).is_err());
        assert!(r.hit(B, now).is_ok());
        assert!(r.hit(A, now + WINDOW).is_ok());
    }
}
