//! The bandwidth schedule: which cap on all sessions together holds at a
//! given time of the week, and until when.
//!
//! A facility's link belongs to the dailies at night and to the office by
//! day, so the site's cap follows rules of days, a time span and a rate,
//! read in the appliance's time zone. The first rule that covers a moment
//! decides its cap (`none` lifts every cap for that span); outside every
//! rule, the site rate of the settings holds. A span whose end is earlier
//! than its start runs past midnight and belongs to the day it starts on.
//!
//! Everything here is a function of the local time passed in; the daemon
//! reads the clock and the time zone, and re-paces running sessions at
//! each boundary.

use std::fmt;
use std::str::FromStr;

use ferry_proto::Rate;

const DAY_SECS: u32 = 24 * 3600;
const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A moment of the week in the appliance's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// 0 is Monday.
    pub weekday: u8,
    /// Seconds since local midnight.
    pub secs: u32,
}

impl LocalTime {
    /// `secs` seconds later (wall-clock seconds of the local calendar).
    fn plus(self, secs: u64) -> LocalTime {
        let total = u64::from(self.secs) + secs;
        LocalTime {
            weekday: ((u64::from(self.weekday) + total / u64::from(DAY_SECS)) % 7) as u8,
            secs: (total % u64::from(DAY_SECS)) as u32,
        }
    }
}

/// One rule: on these days, from this time to that one, this cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Bit `d` set: the rule starts on weekday `d` (0 is Monday).
    days: u8,
    from: u32,
    to: u32,
    /// `None`: no cap at all while the rule holds.
    pub rate: Option<Rate>,
}

/// A rule that does not read, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule:?}: {why}")]
pub struct RuleError {
    pub rule: String,
    pub why: String,
}

impl Rule {
    /// A rule from its parts, as `[transfer] schedule` tables give them:
    /// days (`mon-fri`, `sat,sun`, `daily`), `HH:MM[:SS]` twice (`24:00` is
    /// the end of the day), and a rate or `none`.
    pub fn new(days: &str, from: &str, to: &str, rate: &str) -> Result<Rule, RuleError> {
        let whole = format!("{days} {from}-{to} {rate}");
        let err = |why: String| RuleError {
            rule: whole.clone(),
            why,
        };
        let days = parse_days(days).map_err(err)?;
        let from = parse_time(from).map_err(err)?;
        let to = parse_time(to).map_err(err)?;
        if from == to {
            return Err(err(
                "the span is empty: its start and end are the same".into()
            ));
        }
        if from == DAY_SECS {
            return Err(err("a span starts before 24:00".into()));
        }
        let rate = match rate.trim() {
            "none" | "unlimited" | "off" => None,
            r => Some(r.parse::<Rate>().map_err(|e| err(e.to_string()))?),
        };
        Ok(Rule {
            days,
            from,
            to,
            rate,
        })
    }

    /// Does it cover `t`?
    fn covers(&self, t: LocalTime) -> bool {
        let on = |d: u8| self.days & (1 << d) != 0;
        if self.from < self.to {
            on(t.weekday) && (self.from..self.to).contains(&t.secs)
        } else {
            // Past midnight: the evening of a day it starts on, or the
            // morning after one.
            (on(t.weekday) && t.secs >= self.from) || (on((t.weekday + 6) % 7) && t.secs < self.to)
        }
    }

    /// The days as written back (`mon-fri`, `sat,sun`, `daily`).
    pub fn days(&self) -> String {
        if self.days == 0x7f {
            return "daily".into();
        }
        // Runs of consecutive days, as ranges.
        let mut parts = Vec::new();
        let mut d = 0;
        while d < 7 {
            if self.days & (1 << d) == 0 {
                d += 1;
                continue;
            }
            let start = d;
            while d + 1 < 7 && self.days & (1 << (d + 1)) != 0 {
                d += 1;
            }
            parts.push(match d - start {
                0 => DAY_NAMES[start].to_owned(),
                1 => format!("{},{}", DAY_NAMES[start], DAY_NAMES[d]),
                _ => format!("{}-{}", DAY_NAMES[start], DAY_NAMES[d]),
            });
            d += 1;
        }
        parts.join(",")
    }

    pub fn from(&self) -> String {
        clock(self.from)
    }

    pub fn to(&self) -> String {
        clock(self.to)
    }

    /// The rate as written back: a rate, or `none`.
    pub fn rate_text(&self) -> String {
        self.rate
            .map_or_else(|| "none".to_owned(), |r| r.to_string())
    }
}

/// `mon-fri 09:00-19:00 200 Mbit/s`: one line of the Settings form.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}-{} {}",
            self.days(),
            self.from(),
            self.to(),
            self.rate_text()
        )
    }
}

impl FromStr for Rule {
    type Err = RuleError;
    fn from_str(line: &str) -> Result<Rule, RuleError> {
        let err = |why: &str| RuleError {
            rule: line.trim().to_owned(),
            why: why.to_owned(),
        };
        let mut words = line.split_whitespace();
        let days = words.next().ok_or_else(|| err("empty rule"))?;
        let span = words
            .next()
            .ok_or_else(|| err("write DAYS FROM-TO RATE, like mon-fri 09:00-19:00 200M"))?;
        let (from, to) = span
            .split_once('-')
            .ok_or_else(|| err("write the span as FROM-TO, like 09:00-19:00"))?;
        let rate: Vec<&str> = words.collect();
        if rate.is_empty() {
            return Err(err("give a rate (200M, 1G) or none"));
        }
        Rule::new(days, from, to, &rate.join(" "))
    }
}

fn clock(secs: u32) -> String {
    if secs.is_multiple_of(60) {
        format!("{:02}:{:02}", secs / 3600, secs / 60 % 60)
    } else {
        format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    }
}

fn parse_days(s: &str) -> Result<u8, String> {
    let day = |d: &str| {
        let d = d.trim().to_ascii_lowercase();
        DAY_NAMES
            .iter()
            .position(|n| d.starts_with(n) && n.len() <= d.len())
            .ok_or_else(|| format!("{d:?} is not a day (mon, tue, … sun)"))
    };
    let s = s.trim();
    if matches!(s, "daily" | "*" | "every day" | "all") {
        return Ok(0x7f);
    }
    let mut days = 0u8;
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                // mon-fri, or fri-mon across the weekend.
                let mut d = a;
                loop {
                    days |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days |= 1 << day(part)?,
        }
    }
    if days == 0 {
        return Err("name the days (mon-fri, sat,sun, daily)".into());
    }
    Ok(days)
}

fn parse_time(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let bad = || format!("{s:?} is not a time of day (HH:MM or HH:MM:SS)");
    let parts: Vec<&str> = s.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(bad());
    }
    let num = |p: &str, max: u32| {
        p.parse::<u32>()
            .ok()
            .filter(|n| *n <= max && p.len() == 2)
            .ok_or_else(bad)
    };
    let h = num(parts[0], 24)?;
    let m = num(parts[1], 59)?;
    let sec = parts.get(2).map_or(Ok(0), |p| num(p, 59))?;
    let t = h * 3600 + m * 60 + sec;
    if t > DAY_SECS {
        return Err(bad());
    }
    Ok(t)
}

/// The rules in force, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schedule {
    pub rules: Vec<Rule>,
}

/// What the schedule says about a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cap {
    /// The rule that holds (its index), or `None`: the site rate does.
    pub rule: Option<usize>,
    /// The cap that holds: the rule's, or `base`.
    pub rate: Option<Rate>,
    /// Seconds of local wall-clock time until another cap holds; `None`:
    /// it never changes.
    pub for_secs: Option<u64>,
}

impl Schedule {
    pub fn parse_lines(lines: &[String]) -> Result<Schedule, RuleError> {
        let rules = lines
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        Ok(Schedule { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The lines of the Settings form.
    pub fn lines(&self) -> Vec<String> {
        self.rules.iter().map(Rule::to_string).collect()
    }

    fn rule_at(&self, t: LocalTime) -> Option<usize> {
        self.rules.iter().position(|r| r.covers(t))
    }

    /// The cap at `now`, with `base` (the site rate) outside every rule,
    /// and how long it holds.
    pub fn cap_at(&self, now: LocalTime, base: Option<Rate>) -> Cap {
        let rule = self.rule_at(now);
        let rate = rule.map_or(base, |i| self.rules[i].rate);
        // The moments anything can change: every rule's start and end, on
        // each of the next eight days, as offsets from now.
        let mut edges: Vec<u64> = Vec::new();
        for r in &self.rules {
            for day in 0..8u64 {
                for at in [r.from, r.to % DAY_SECS] {
                    let offset = (day * u64::from(DAY_SECS) + u64::from(at))
                        .checked_sub(u64::from(now.secs));
                    if let Some(o) = offset.filter(|o| *o > 0) {
                        edges.push(o);
                    }
                }
            }
        }
        edges.sort_unstable();
        edges.dedup();
        let for_secs = edges.into_iter().find(|&o| {
            let then = self.rule_at(now.plus(o));
            then.map_or(base, |i| self.rules[i].rate) != rate || then != rule
        });
        Cap {
            rule,
            rate,
            for_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(weekday: u8, hh: u32, mm: u32) -> LocalTime {
        LocalTime {
            weekday,
            secs: hh * 3600 + mm * 60,
        }
    }

    fn rate(s: &str) -> Option<Rate> {
        Some(s.parse().unwrap())
    }

    fn office() -> Schedule {
        Schedule::parse_lines(&[
            "mon-fri 09:00-19:00 200M".to_owned(),
            "sat,sun 10:00-16:00 none".to_owned(),
        ])
        .unwrap()
    }

    #[test]
    fn rules_read_and_write_back() {
        let s = office();
        assert_eq!(
            s.lines(),
            ["mon-fri 09:00-19:00 200 Mbit/s", "sat,sun 10:00-16:00 none"]
        );
        assert_eq!(Schedule::parse_lines(&s.lines()).unwrap(), s);
        let night: Rule = "daily 19:00:30-07:00 1G".parse().unwrap();
        assert_eq!(night.to_string(), "daily 19:00:30-07:00 1 Gbit/s");
        let odd: Rule = "mon,wed,fri-sun 00:00-24:00 none".parse().unwrap();
        assert_eq!(odd.days(), "mon,wed,fri-sun");
    }

    #[test]
    fn a_bad_rule_says_why() {
        for (line, why) in [
            ("weekdays 09:00-19:00 1G", "not a day"),
            ("mon 9-19 1G", "not a time"),
            ("mon 09:00-25:00 1G", "not a time"),
            ("mon 09:00-09:00 1G", "empty"),
            ("mon 09:00-19:00", "give a rate"),
            ("mon 09:00-19:00 fast", "not"),
            ("mon 0900 1G", "FROM-TO"),
        ] {
            let e = line.parse::<Rule>().unwrap_err();
            assert!(e.to_string().contains(why), "{line}: {e}");
        }
    }

    #[test]
    fn the_first_rule_that_covers_a_moment_decides_and_says_until_when() {
        let s = office();
        let base = rate("1G");
        // Tuesday 10:00: the office's cap until 19:00.
        let c = s.cap_at(at(1, 10, 0), base);
        assert_eq!((c.rule, c.rate), (Some(0), rate("200M")));
        assert_eq!(c.for_secs, Some(9 * 3600));
        // Tuesday 19:00: the site rate until Wednesday 09:00.
        let c = s.cap_at(at(1, 19, 0), base);
        assert_eq!((c.rule, c.rate), (None, base));
        assert_eq!(c.for_secs, Some(14 * 3600));
        // Friday 20:00 to Saturday 10:00, when the weekend lifts the cap.
        let c = s.cap_at(at(4, 20, 0), base);
        assert_eq!(c.for_secs, Some(14 * 3600));
        let c = s.cap_at(at(5, 12, 0), base);
        assert_eq!((c.rule, c.rate), (Some(1), None));
        assert_eq!(c.for_secs, Some(4 * 3600));
    }

    #[test]
    fn a_span_past_midnight_belongs_to_the_day_it_starts() {
        let s = Schedule::parse_lines(&["fri 22:00-06:00 50M".to_owned()]).unwrap();
        assert_eq!(s.cap_at(at(4, 23, 0), None).rate, rate("50M"));
        assert_eq!(s.cap_at(at(5, 5, 59), None).rate, rate("50M"));
        assert_eq!(s.cap_at(at(5, 6, 0), None).rate, None);
        // Thursday night is not Friday's.
        assert_eq!(s.cap_at(at(4, 5, 0), None).rate, None);
        // Sunday to Monday wraps the week.
        let s = Schedule::parse_lines(&["sun 22:00-06:00 50M".to_owned()]).unwrap();
        assert_eq!(s.cap_at(at(0, 1, 0), None).rate, rate("50M"));
        assert_eq!(s.cap_at(at(6, 21, 0), None).for_secs, Some(3600));
    }

    #[test]
    fn adjacent_rules_with_the_same_cap_are_one_span_and_no_rules_never_change() {
        let s = Schedule::parse_lines(&[
            "daily 00:00-12:00 100M".to_owned(),
            "daily 12:00-24:00 100M".to_owned(),
        ])
        .unwrap();
        let c = s.cap_at(at(2, 11, 0), None);
        // The rule changes at noon, so the dashboard names the new one.
        assert_eq!(c.for_secs, Some(3600));
        let none = Schedule::default().cap_at(at(2, 11, 0), rate("1G"));
        assert_eq!(
            none,
            Cap {
                rule: None,
                rate: rate("1G"),
                for_secs: None
            }
        );
        // Seconds count, so a test can put a boundary a few seconds away.
        let s = Schedule::parse_lines(&["daily 11:00:20-11:05 10M".to_owned()]).unwrap();
        assert_eq!(s.cap_at(at(2, 11, 0), None).for_secs, Some(20));
    }
}
