//! The bandwidth schedule on the appliance's clock: which cap holds now, in
//! the appliance's time zone, and when the next one takes over. The rules
//! themselves are the domain's ([`ferry_domain::bandwidth`]).

use ferry_domain::bandwidth::{LocalTime, Schedule};
use ferry_proto::Rate;
use ferryd_core::live::SiteCap;

/// The cap at `now` (a moment in the appliance's time zone), with `base`
/// (the site rate) outside every rule.
pub fn cap_now(schedule: &Schedule, base: Option<Rate>, now: jiff::ZonedDateTime) -> SiteCap {
    let local = LocalTime {
        weekday: now.weekday().to_monday_zero_offset() as u8,
        secs: now.hour() as u32 * 3600 + now.minute() as u32 * 60 + now.second() as u32,
    };
    let cap = schedule.cap_at(local, base);
    // The boundary is a wall-clock time: counted on the civil clock from
    // the whole second now, then placed in the time zone (across a
    // daylight-saving change, the zone's usual choice).
    let until = cap.for_secs.and_then(|secs| {
        let whole = now.datetime().with().subsec_nanosecond(0).build().ok()?;
        let then = whole
            .checked_add(jiff::SignedDuration::from_secs(secs as i64))
            .ok()?;
        then.to_zoned_datetime(now.time_zone().clone())
            .ok()
            .map(|z| z.timestamp().as_second())
    });
    SiteCap {
        rate: cap.rate,
        spares_urgent: cap.rule.is_some(),
        rule: cap.rule.map(|i| schedule.rules[i].to_string()),
        until,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zoned(s: &str) -> jiff::ZonedDateTime {
        s.parse().unwrap()
    }

    #[test]
    fn the_cap_now_and_its_end_are_read_in_the_time_zone() {
        let s = Schedule::parse_lines(&["mon-fri 09:00-19:00 200M".to_owned()]).unwrap();
        // Tuesday 1 December 2026, 10:00:30.5 in Paris.
        let now = zoned("2026-12-01T10:00:30.5+01:00[Europe/Paris]");
        let cap = cap_now(&s, None, now);
        assert_eq!(cap.rate, Some("200M".parse().unwrap()));
        assert!(cap.spares_urgent);
        assert_eq!(cap.rule.as_deref(), Some("mon-fri 09:00-19:00 200 Mbit/s"));
        let end = zoned("2026-12-01T19:00:00+01:00[Europe/Paris]");
        assert_eq!(cap.until, Some(end.timestamp().as_second()));
        assert!(cap.words().contains("200 Mbit/s"));
        // After hours, the site rate, and no urgency to spare.
        let night = cap_now(
            &s,
            Some("1G".parse().unwrap()),
            zoned("2026-12-01T20:00:00+01:00[Europe/Paris]"),
        );
        assert_eq!(night.rate, Some("1G".parse().unwrap()));
        assert!(!night.spares_urgent);
        assert!(night.words().contains("the site rate"));
    }

    #[test]
    fn a_boundary_across_a_daylight_saving_change_is_at_its_wall_clock_time() {
        let s = Schedule::parse_lines(&["daily 09:00-19:00 200M".to_owned()]).unwrap();
        // Saturday 28 March 2026, 20:00 in Paris; clocks go forward that
        // night, so 09:00 on Sunday is 13 hours away on the wall clock and
        // 12 real hours.
        let now = zoned("2026-03-28T20:00:00+01:00[Europe/Paris]");
        let cap = cap_now(&s, None, now.clone());
        let nine = zoned("2026-03-29T09:00:00+02:00[Europe/Paris]");
        assert_eq!(cap.until, Some(nine.timestamp().as_second()));
        assert_eq!(
            nine.timestamp().as_second() - now.timestamp().as_second(),
            12 * 3600
        );
    }
}
