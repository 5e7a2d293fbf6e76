//! Numbers and times as people read them: "1.4 GB", "11.2 MB/s",
//! "4 min", "3 min ago".

/// Bytes in decimal units, as file managers and transfer tools show them.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if v < 10.0 {
        format!("{v:.2} {}", UNITS[unit])
    } else if v < 100.0 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

/// A rate in bytes per second.
pub fn rate(bytes_per_sec: u64) -> String {
    if bytes_per_sec == 0 {
        return "–".to_owned();
    }
    format!("{}/s", bytes(bytes_per_sec))
}

/// A duration in the two largest units that matter.
pub fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86400 => {
            let (h, m) = (secs / 3600, secs % 3600 / 60);
            if m == 0 {
                format!("{h} h")
            } else {
                format!("{h} h {m} min")
            }
        }
        _ => {
            let (d, h) = (secs / 86400, secs % 86400 / 3600);
            if h == 0 {
                format!("{d} d")
            } else {
                format!("{d} d {h} h")
            }
        }
    }
}

/// Time left at the current rate, when there is a rate.
pub fn eta(done: u64, total: u64, bytes_per_sec: u64) -> String {
    if done >= total {
        return "–".to_owned();
    }
    if bytes_per_sec == 0 {
        return "–".to_owned();
    }
    duration((total - done).div_ceil(bytes_per_sec))
}

/// "just now", "3 min ago", "2 d ago"; "in 5 d" for the future.
pub fn ago(at: i64, now: i64) -> String {
    let d = now - at;
    if d.abs() < 10 {
        "just now".to_owned()
    } else if d > 0 {
        format!("{} ago", duration(d as u64))
    } else {
        format!("in {}", duration((-d) as u64))
    }
}

/// An absolute time, in UTC, for tooltips and the audit log.
pub fn timestamp(at: i64) -> String {
    jiff::Timestamp::from_second(at)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| at.to_string())
}

/// Percent done, 0–100: the one rule, `ferry_api::percent`, for the
/// byte counts the web admin holds.
pub fn percent(done: u64, total: u64) -> u64 {
    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    u64::from(ferry_api::percent(as_i64(done), as_i64(total), false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_a_file_manager() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_400_000_000), "1.40 GB");
        assert_eq!(bytes(12_345_678), "12.3 MB");
        assert_eq!(bytes(456_000_000_000), "456 GB");
        assert_eq!(rate(11_200_000), "11.2 MB/s");
        assert_eq!(rate(0), "–");
    }

    #[test]
    fn times_read_like_speech() {
        assert_eq!(duration(42), "42 s");
        assert_eq!(duration(240), "4 min");
        assert_eq!(duration(3 * 3600 + 120), "3 h 2 min");
        assert_eq!(duration(2 * 86400), "2 d");
        assert_eq!(ago(1000, 1005), "just now");
        assert_eq!(ago(1000, 1180), "3 min ago");
        assert_eq!(ago(1000 + 5 * 86400, 1000), "in 5 d");
        assert_eq!(eta(0, 100_000_000, 1_000_000), "1 min");
        assert_eq!(eta(5, 5, 0), "–");
        assert_eq!(timestamp(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(percent(1, 3), 33);
        assert_eq!(percent(0, 0), 0);
    }
}
