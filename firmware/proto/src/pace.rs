//! Pace: how fast a transfer may go and how it yields to other traffic.
//!
//! A [`Pace`] is a congestion [`Policy`] and an optional target [`Rate`].
//! The appliance decides a session's pace from its site settings, the job's
//! own rate and what the client asked for, tells the client in `Welcome`,
//! and may change it mid-session with a `Pace` frame. The sending side's
//! congestion controller (in `ferry-engine`) applies it.
//!
//! Rates are in bits per second, as on every link and every transfer
//! product's settings page: `100M` is 100 Mbit/s.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How the sender shares the path with other traffic.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Hold the target rate whatever else is on the path (a dedicated
    /// link). Only heavy, persistent loss slows it.
    Fixed,
    /// Go up to the target rate, but back off when queueing delay shows the
    /// path is shared; random loss is not taken as congestion.
    #[default]
    Fair,
    /// quinn's CUBIC, capped at the target (for comparison).
    Cubic,
    /// quinn's BBR, capped at the target (for comparison).
    Bbr,
}

impl Policy {
    pub const ALL: [Policy; 4] = [Policy::Fixed, Policy::Fair, Policy::Cubic, Policy::Bbr];

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Fixed => "fixed",
            Policy::Fair => "fair",
            Policy::Cubic => "cubic",
            Policy::Bbr => "bbr",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown congestion policy {0:?}: use fixed, fair, cubic or bbr")]
pub struct PolicyError(pub String);

impl FromStr for Policy {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Policy::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| PolicyError(s.to_owned()))
    }
}

/// A transfer rate in bits per second.
///
/// Written as a number with an optional `k`, `M`, `G` or `T` (decimal, as
/// link rates are) and an optional `bit/s` or `bps`: `100M`, `1.5G`,
/// `800 kbit/s`. It serializes as its number of bits per second and reads
/// either that number or the written form, so it fits TOML, JSON and the
/// wire alike.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub struct Rate(u64);

impl Rate {
    /// The slowest rate Ferry accepts: below it a review session would not
    /// arrive at all, so a smaller figure is surely a typo.
    pub const MIN: Rate = Rate(64_000);

    pub fn from_bits_per_sec(bps: u64) -> Result<Self, RateError> {
        if bps < Self::MIN.0 {
            return Err(RateError::TooSlow(bps));
        }
        Ok(Rate(bps))
    }

    pub fn from_mbit(mbit: u64) -> Result<Self, RateError> {
        Self::from_bits_per_sec(mbit.saturating_mul(1_000_000))
    }

    pub fn bits_per_sec(self) -> u64 {
        self.0
    }

    pub fn bytes_per_sec(self) -> u64 {
        self.0 / 8
    }

    /// The lower of two optional caps (`None` is no cap).
    pub fn min_cap(a: Option<Rate>, b: Option<Rate>) -> Option<Rate> {
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A rate that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("cannot read {0:?} as a rate: write it in bits per second, like 100M or 1.5G")]
    Syntax(String),
    #[error(
        "{0:?} is in bytes; rates are in bits per second (100M is 100 Mbit/s, about 12.5 MB/s)"
    )]
    Bytes(String),
    #[error("a rate of {0} bit/s is below the minimum of 64 kbit/s")]
    TooSlow(u64),
}

impl FromStr for Rate {
    type Err = RateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let unit = unit.trim();
        let number: f64 = number
            .parse()
            .map_err(|_| RateError::Syntax(s.to_owned()))?;
        let (scale, rest) = match unit.chars().next() {
            Some('k' | 'K') => (1e3, &unit[1..]),
            Some('m' | 'M') => (1e6, &unit[1..]),
            Some('g' | 'G') => (1e9, &unit[1..]),
            Some('t' | 'T') => (1e12, &unit[1..]),
            _ => (1.0, unit),
        };
        let rest = rest.trim();
        if rest == "B" || rest.starts_with("B/") || rest.eq_ignore_ascii_case("bytes/s") {
            return Err(RateError::Bytes(s.to_owned()));
        }
        if !(rest.is_empty()
            || rest.eq_ignore_ascii_case("bit/s")
            || rest.eq_ignore_ascii_case("bps")
            || rest.eq_ignore_ascii_case("b/s")
            || rest.eq_ignore_ascii_case("bit"))
        {
            return Err(RateError::Syntax(s.to_owned()));
        }
        let bps = number * scale;
        if !bps.is_finite() || bps > u64::MAX as f64 {
            return Err(RateError::Syntax(s.to_owned()));
        }
        Rate::from_bits_per_sec(bps.round() as u64)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [
            (1e12, "Tbit/s"),
            (1e9, "Gbit/s"),
            (1e6, "Mbit/s"),
            (1e3, "kbit/s"),
        ];
        let bps = self.0 as f64;
        for (scale, name) in units {
            if bps >= scale {
                let v = bps / scale;
                return if (v - v.round()).abs() < 0.05 {
                    write!(f, "{} {name}", v.round())
                } else {
                    write!(f, "{v:.1} {name}")
                };
            }
        }
        write!(f, "{} bit/s", self.0)
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Rate;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a rate in bits per second, like 100000000 or \"100M\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Rate, E> {
                Rate::from_bits_per_sec(v).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Rate, E> {
                let v = u64::try_from(v).map_err(|_| E::custom(RateError::TooSlow(0)))?;
                self.visit_u64(v)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Rate, E> {
                v.parse().map_err(E::custom)
            }
        }
        // Self-describing formats (TOML, JSON) say which it is; postcard
        // only ever carries the number.
        if d.is_human_readable() {
            d.deserialize_any(Visitor)
        } else {
            d.deserialize_u64(Visitor)
        }
    }
}

/// The policy and target rate of one session.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Pace {
    pub policy: Policy,
    /// `None`: no cap; the policy alone decides.
    pub target: Option<Rate>,
}

impl Pace {
    /// This pace with its target lowered to `cap` if that is lower.
    pub fn capped(self, cap: Option<Rate>) -> Pace {
        Pace {
            policy: self.policy,
            target: Rate::min_cap(self.target, cap),
        }
    }
}

impl fmt::Display for Pace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.target {
            Some(rate) => write!(f, "{} up to {rate}", self.policy),
            None => write!(f, "{}, no rate cap", self.policy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_link_rates() {
        let r = |s: &str| s.parse::<Rate>().map(Rate::bits_per_sec);
        assert_eq!(r("100M"), Ok(100_000_000));
        assert_eq!(r("1.5G"), Ok(1_500_000_000));
        assert_eq!(r("800 kbit/s"), Ok(800_000));
        assert_eq!(r("100 Mbit/s"), Ok(100_000_000));
        assert_eq!(r("10mbps"), Ok(10_000_000));
        assert_eq!(r("250000000"), Ok(250_000_000));
        assert!(matches!(r("12MB/s"), Err(RateError::Bytes(_))));
        assert!(matches!(r("fast"), Err(RateError::Syntax(_))));
        assert!(matches!(r("100 furlongs"), Err(RateError::Syntax(_))));
        assert!(matches!(r("10k"), Err(RateError::TooSlow(10_000))));
        assert!(matches!(r(""), Err(RateError::Syntax(_))));
    }

    #[test]
    fn rates_print_in_the_largest_whole_unit() {
        let p = |s: &str| s.parse::<Rate>().unwrap().to_string();
        assert_eq!(p("100M"), "100 Mbit/s");
        assert_eq!(p("1.5G"), "1.5 Gbit/s");
        assert_eq!(p("64k"), "64 kbit/s");
        assert_eq!(p("2500M"), "2.5 Gbit/s");
    }

    #[test]
    fn rates_read_from_numbers_or_words_and_travel_as_numbers() {
        #[derive(Deserialize, Serialize, PartialEq, Debug)]
        struct C {
            target: Rate,
        }
        let c: C = serde_json::from_str(r#"{"target":"100M"}"#).unwrap();
        assert_eq!(c.target.bits_per_sec(), 100_000_000);
        let c: C = serde_json::from_str(r#"{"target":5000000}"#).unwrap();
        assert_eq!(c.target.bits_per_sec(), 5_000_000);
        assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"target":5000000}"#);
        let err = serde_json::from_str::<C>(r#"{"target":"3MB/s"}"#).unwrap_err();
        assert!(err.to_string().contains("bits per second"), "{err}");
        let wire = postcard::to_allocvec(&Pace {
            policy: Policy::Fixed,
            target: Some(c.target),
        })
        .unwrap();
        let back: Pace = postcard::from_bytes(&wire).unwrap();
        assert_eq!(back.target, Some(c.target));
        assert_eq!(back.policy, Policy::Fixed);
    }

    #[test]
    fn policies_parse_case_insensitively() {
        assert_eq!("FAIR".parse::<Policy>(), Ok(Policy::Fair));
        assert_eq!(" bbr ".parse::<Policy>(), Ok(Policy::Bbr));
        assert!("reno".parse::<Policy>().is_err());
    }

    #[test]
    fn caps_take_the_lower() {
        let m = |n| Some(Rate::from_mbit(n).unwrap());
        let p = Pace {
            policy: Policy::Fair,
            target: m(100),
        };
        assert_eq!(p.capped(m(50)).target, m(50));
        assert_eq!(p.capped(None).target, m(100));
        assert_eq!(Pace::default().capped(m(20)).target, m(20));
    }
}
