//! What the appliance counts for its metrics, through the `metrics`
//! facade: every metric's name, labels and meaning live here, and the
//! places that count call these functions. The daemon installs the
//! Prometheus recorder and adds the gauges it reads at each scrape; with
//! no recorder installed (tests, `ferryd admin`) these cost nothing.

use std::time::Duration;

use ferry_domain::AuditAction;

pub const TRANSFER_BYTES: &str = "ferry_transfer_bytes_total";
pub const SESSIONS_ACTIVE: &str = "ferry_sessions_active";
pub const LEASES_ACTIVE: &str = "ferry_leases_active";
pub const JOBS: &str = "ferry_jobs";
pub const OUTBOX: &str = "ferry_outbox_messages";
pub const MAIL_FAILURES: &str = "ferry_mail_failures_total";
pub const SESSION_RATE: &str = "ferry_session_rate_bytes_per_second";
pub const SESSION_RTT: &str = "ferry_session_rtt_seconds";
pub const SESSION_LOSS: &str = "ferry_session_loss_ratio";
pub const HTTP_REQUESTS: &str = "ferry_http_requests_total";
pub const LOGIN_FAILURES: &str = "ferry_login_failures_total";
pub const AUDIT_EVENTS: &str = "ferry_audit_events_total";
pub const WATCH_PENDING: &str = "ferry_watch_pending_files";
pub const WATCH_DELIVERIES: &str = "ferry_watch_deliveries_total";
pub const SITE_CAP: &str = "ferry_site_cap_bytes_per_second";

/// Which way bytes went, seen from the appliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From a client to the appliance (put, upload).
    In,
    /// From the appliance to a client (get, download).
    Out,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// The transport label of bytes a browser moved (a download from the
/// deliveries page, a tus upload), beside `quic`, `tcp` and `https`.
pub const BROWSER: &str = "browser";

/// `n` payload bytes moved `direction` over `transport`.
pub fn bytes(direction: Direction, transport: &'static str, n: u64) {
    if n > 0 {
        metrics::counter!(TRANSFER_BYTES, "direction" => direction.as_str(), "transport" => transport)
            .increment(n);
    }
}

/// One second of a running session: its rate, its round trip and, on
/// QUIC, the share of packets lost.
pub fn session_pace(rate_bytes: f64, rtt: Duration, loss: Option<f64>) {
    metrics::histogram!(SESSION_RATE).record(rate_bytes);
    metrics::histogram!(SESSION_RTT).record(rtt.as_secs_f64());
    if let Some(loss) = loss {
        metrics::histogram!(SESSION_LOSS).record(loss);
    }
}

/// A message the mail server refused, for now or for good.
pub fn mail_failure(permanent: bool) {
    let kind = if permanent { "permanent" } else { "temporary" };
    metrics::counter!(MAIL_FAILURES, "kind" => kind).increment(1);
}

/// An HTTP request answered on the control port, by its route's template
/// (never the raw path, which would make a series of every job id).
pub fn http_request(route: String, status: u16) {
    metrics::counter!(HTTP_REQUESTS, "route" => route, "status" => status.to_string()).increment(1);
}

/// An audit line: counted by action, and a failed login on its own.
pub fn audited(action: AuditAction) {
    metrics::counter!(AUDIT_EVENTS, "action" => action.as_str()).increment(1);
    if action == AuditAction::LoginFailed {
        metrics::counter!(LOGIN_FAILURES).increment(1);
    }
}

/// Files a watch has seen that are not delivered yet.
pub fn watch_pending(folder: &str, files: usize) {
    metrics::gauge!(WATCH_PENDING, "watch" => folder.to_owned()).set(files as f64);
}

/// A watch made a delivery.
pub fn watch_delivered(folder: &str) {
    metrics::counter!(WATCH_DELIVERIES, "watch" => folder.to_owned()).increment(1);
}

/// The cap on all sessions together now (0: none), as the bandwidth
/// schedule or the site rate sets it; in bytes, Prometheus's base unit.
pub fn site_cap(bits_per_sec: Option<u64>) {
    metrics::gauge!(SITE_CAP).set(bits_per_sec.unwrap_or(0) as f64 / 8.0);
}

/// The help text of each metric, given once to the recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        TRANSFER_BYTES,
        Unit::Bytes,
        "Payload bytes moved, by direction (in: to the appliance) and transport (quic, tcp, https, browser)"
    );
    describe_gauge!(SESSIONS_ACTIVE, "Data sessions running now");
    describe_gauge!(
        LEASES_ACTIVE,
        "Data ports leased (open in the firewall) now"
    );
    describe_gauge!(JOBS, "Jobs by status, purged ones left out");
    describe_gauge!(
        OUTBOX,
        "Email in the outbox by state: waiting, sent, refused"
    );
    describe_counter!(
        MAIL_FAILURES,
        "Messages the mail server refused, temporarily or for good"
    );
    describe_histogram!(
        SESSION_RATE,
        "Each running session's rate in bytes per second, sampled every second"
    );
    describe_histogram!(
        SESSION_RTT,
        Unit::Seconds,
        "Each running session's round-trip time, sampled every second"
    );
    describe_histogram!(
        SESSION_LOSS,
        "Each running QUIC session's share of packets lost so far, sampled every second"
    );
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests on the control port, by route template and status"
    );
    describe_counter!(
        LOGIN_FAILURES,
        "Failed logins, over the API and the web admin"
    );
    describe_counter!(AUDIT_EVENTS, "Audit log lines, by action");
    describe_gauge!(
        WATCH_PENDING,
        "Files in a watch folder's new entries that are not delivered yet (settling or still written), by watch"
    );
    describe_counter!(WATCH_DELIVERIES, "Deliveries a watch folder made, by watch");
    describe_gauge!(
        SITE_CAP,
        Unit::Bytes,
        "The cap on all sessions together now in bytes per second, from the bandwidth schedule or the site rate; 0: none"
    );
}
