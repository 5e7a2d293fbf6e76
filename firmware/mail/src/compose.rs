//! The messages Ferry sends, as plain text with an HTML alternative. Each
//! names what the reader needs: the delivery, its files and sizes, the
//! sender, and when it expires.
//!
//! Names come from users (delivery names, user names), so everything that
//! ends up in a header is made single-line here, and the HTML is escaped
//! by maud.

use maud::{DOCTYPE, Markup, html};

/// A file line in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLine {
    /// A file, or a sequence in frame notation with its count.
    pub name: String,
    pub size: u64,
}

/// What a delivery message says about the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFacts {
    pub name: String,
    pub sender: String,
    pub files: Vec<FileLine>,
    pub total: u64,
    /// Seconds since the epoch.
    pub expires_at: i64,
}

/// A message, before it is written out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mail {
    /// To a new user, with the link that sets their password.
    Invitation {
        inviter: String,
        link: String,
        expires_at: i64,
    },
    /// To a recipient: a delivery waits for them, at `link` in a browser.
    DeliveryWaiting {
        delivery: DeliveryFacts,
        link: String,
    },
    /// To the sender: one recipient has everything.
    DeliveryComplete {
        delivery: DeliveryFacts,
        recipient: String,
    },
    /// To the sender and admins: a job failed for good.
    JobFailed {
        job: String,
        delivery: Option<String>,
        recipient: Option<String>,
        error: String,
    },
    /// To recipients who have not finished: the delivery will go.
    Expiring { delivery: DeliveryFacts },
    /// To the sender: half of a large delivery has arrived.
    Progress {
        delivery: DeliveryFacts,
        percent: u64,
    },
    /// To an admin checking the SMTP settings.
    Test {
        /// The appliance's web address.
        appliance: String,
    },
}

/// A message written out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    pub kind: &'static str,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Makes a value safe for a header: one line, no control characters.
pub fn single_line(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    out.truncate(out.trim_end().len());
    out
}

fn size(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1000.0;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn date(at: i64) -> String {
    jiff::Timestamp::from_second(at)
        .map(|t| t.strftime("%A %-d %B %Y, %H:%M UTC").to_string())
        .unwrap_or_else(|_| at.to_string())
}

/// The same, after "Or ".
const RECEIVE_LOWER: &str = "receive it with the Ferry client, faster on long links: `ferry agent --into ~/Deliveries` \
     keeps receiving everything addressed to you, `ferry pull --into DIR` receives what is waiting now.";

const RECEIVE: &str = "Receive it with the Ferry client: `ferry agent --into ~/Deliveries` keeps \
     receiving everything addressed to you, `ferry pull --into DIR` receives what is waiting now.";

fn files_text(d: &DeliveryFacts) -> String {
    let mut s = String::new();
    for f in &d.files {
        s.push_str(&format!(
            "  - {} ({})\n",
            single_line(&f.name),
            size(f.size)
        ));
    }
    s.push_str(&format!("  {} in all\n", size(d.total)));
    s
}

fn files_html(d: &DeliveryFacts) -> Markup {
    html! {
        table cellpadding="4" {
            @for f in &d.files { tr { td { (f.name) } td align="right" { (size(f.size)) } } }
            tr { td { b { "In all" } } td align="right" { b { (size(d.total)) } } }
        }
    }
}

fn page(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html {
            head { meta charset="utf-8"; title { (title) } }
            body style="font-family: sans-serif; color: #1c2430" {
                (body)
                p style="color: #5d6b7c; font-size: 12px" { "Sent by Ferry, your facility's delivery appliance." }
            }
        }
    }
    .into_string()
}

impl Mail {
    pub fn compose(&self) -> Composed {
        match self {
            Mail::Invitation {
                inviter,
                link,
                expires_at,
            } => {
                let subject = single_line(&format!("{inviter} invited you to Ferry"));
                let text = format!(
                    "{inviter} invited you to Ferry, the appliance your collaborators use to deliver review \
                     sessions to you.\n\nChoose your password here (the link works once, until {}):\n\n  {link}\n\n\
                     Then download your deliveries in the browser, or receive them with the Ferry client.\n",
                    date(*expires_at)
                );
                let html = page(
                    &subject,
                    html! {
                        p { (inviter) " invited you to Ferry, the appliance your collaborators use to deliver review sessions to you." }
                        p { a href=(link) { "Choose your password" } " (the link works once, until " (date(*expires_at)) ")." }
                        p { "Then download your deliveries in the browser, or receive them with the Ferry client." }
                    },
                );
                Composed {
                    kind: "invitation",
                    subject,
                    text,
                    html,
                }
            }
            Mail::DeliveryWaiting { delivery: d, link } => {
                let subject = single_line(&format!("{} sent you {}", d.sender, d.name));
                let text = format!(
                    "{} sent you the delivery \"{}\":\n\n{}\nIt is available until {}.\n\n\
                     Download it in your browser:\n\n  {link}\n\nOr {RECEIVE_LOWER}\n",
                    single_line(&d.sender),
                    single_line(&d.name),
                    files_text(d),
                    date(d.expires_at)
                );
                let html = page(
                    &subject,
                    html! {
                        p { (d.sender) " sent you the delivery " b { (d.name) } ":" }
                        (files_html(d))
                        p { "It is available until " (date(d.expires_at)) "." }
                        p { a href=(link) { "Download it in your browser" } }
                        p { "Or " (RECEIVE_LOWER) }
                    },
                );
                Composed {
                    kind: "delivery.waiting",
                    subject,
                    text,
                    html,
                }
            }
            Mail::DeliveryComplete {
                delivery: d,
                recipient,
            } => {
                let subject = single_line(&format!("{recipient} received {}", d.name));
                let text = format!(
                    "{} has received everything in \"{}\":\n\n{}",
                    single_line(recipient),
                    single_line(&d.name),
                    files_text(d)
                );
                let html = page(
                    &subject,
                    html! {
                        p { (recipient) " has received everything in " b { (d.name) } ":" }
                        (files_html(d))
                    },
                );
                Composed {
                    kind: "delivery.complete",
                    subject,
                    text,
                    html,
                }
            }
            Mail::JobFailed {
                job,
                delivery,
                recipient,
                error,
            } => {
                let subject = single_line(&format!("Ferry job failed: {job}"));
                let about = match (delivery, recipient) {
                    (Some(d), Some(r)) => {
                        format!(" (delivery \"{}\" to {})", single_line(d), single_line(r))
                    }
                    (Some(d), None) => format!(" (delivery \"{}\")", single_line(d)),
                    _ => String::new(),
                };
                let text = format!(
                    "The job \"{}\"{about} failed and will not be retried by itself:\n\n  {}\n\n\
                     Retry it with `ferry job retry` or from the web admin's Transfers page.\n",
                    single_line(job),
                    single_line(error)
                );
                let html = page(
                    &subject,
                    html! {
                        p { "The job " b { (job) } (about) " failed and will not be retried by itself:" }
                        pre { (error) }
                        p { "Retry it with " code { "ferry job retry" } " or from the web admin's Transfers page." }
                    },
                );
                Composed {
                    kind: "job.failed",
                    subject,
                    text,
                    html,
                }
            }
            Mail::Expiring { delivery: d } => {
                let subject = single_line(&format!("{} expires {}", d.name, date(d.expires_at)));
                let text = format!(
                    "The delivery \"{}\" from {} is removed on {}, and you have not received all of it:\n\n{}\n{RECEIVE}\n",
                    single_line(&d.name),
                    single_line(&d.sender),
                    date(d.expires_at),
                    files_text(d)
                );
                let html = page(
                    &subject,
                    html! {
                        p { "The delivery " b { (d.name) } " from " (d.sender) " is removed on " (date(d.expires_at)) ", and you have not received all of it:" }
                        (files_html(d))
                        p { (RECEIVE) }
                    },
                );
                Composed {
                    kind: "delivery.expiring",
                    subject,
                    text,
                    html,
                }
            }
            Mail::Test { appliance } => {
                let text = format!(
                    "This is a test message from the Ferry appliance at {appliance}. If you read it, email works.\n"
                );
                Composed {
                    kind: "test",
                    subject: "Ferry test message".into(),
                    html: page("Ferry test message", html! { p { (text.trim()) } }),
                    text,
                }
            }
            Mail::Progress {
                delivery: d,
                percent,
            } => {
                let subject = single_line(&format!("{} is {percent} % delivered", d.name));
                let text = format!(
                    "{percent} % of \"{}\" ({}) has reached its recipients.\n",
                    single_line(&d.name),
                    size(d.total)
                );
                let html = page(
                    &subject,
                    html! { p { (percent) " % of " b { (d.name) } " (" (size(d.total)) ") has reached its recipients." } },
                );
                Composed {
                    kind: "delivery.progress",
                    subject,
                    text,
                    html,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(name: &str) -> DeliveryFacts {
        DeliveryFacts {
            name: name.into(),
            sender: "ann@example.com".into(),
            files: vec![
                FileLine {
                    name: "shot010.mp4".into(),
                    size: 120_000_000,
                },
                FileLine {
                    name: "shot010.####.exr [1001-1200] (200 frames)".into(),
                    size: 9_600_000_000,
                },
            ],
            total: 9_720_000_000,
            expires_at: 1_800_000_000,
        }
    }

    #[test]
    fn a_waiting_delivery_names_files_sizes_sender_and_expiry() {
        let c = Mail::DeliveryWaiting {
            delivery: facts("review-0412"),
            link: "https://ferry.example.com:8443/deliveries/12".into(),
        }
        .compose();
        assert_eq!(c.subject, "ann@example.com sent you review-0412");
        for part in [
            "shot010.mp4 (120.0 MB)",
            "(200 frames) (9.6 GB)",
            "9.7 GB in all",
            "2027",
            "ferry agent",
            "https://ferry.example.com:8443/deliveries/12",
        ] {
            assert!(c.text.contains(part), "{part} not in {}", c.text);
        }
        assert!(c.html.contains("<b>review-0412</b>"));
    }

    #[test]
    fn names_cannot_break_headers_or_markup() {
        let c = Mail::DeliveryWaiting {
            delivery: facts("evil\r\nBcc: victim@example.com\r\n<script>x</script>"),
            link: "https://ferry.example.com:8443/deliveries/12".into(),
        }
        .compose();
        assert!(!c.subject.contains('\r') && !c.subject.contains('\n'));
        assert!(!c.html.contains("<script>x"));
        assert!(c.html.contains("&lt;script&gt;"));
        assert_eq!(single_line("a\u{0}b\tc\n"), "a b c");
    }

    #[test]
    fn a_failed_job_names_the_job_the_delivery_the_recipient_and_the_error() {
        let c = Mail::JobFailed {
            job: "review-0412".into(),
            delivery: Some("review-0412".into()),
            recipient: Some("director@example.com".into()),
            error: "no space left on the recipient's disk\r\nBcc: x@example.com".into(),
        }
        .compose();
        assert_eq!(c.subject, "Ferry job failed: review-0412");
        assert!(c.text.contains("to director@example.com"));
        assert!(c.text.contains("no space left"));
        assert!(!c.text.contains("\r\nBcc"), "the error is one line");
        assert!(c.text.contains("ferry job retry"));
        assert!(c.html.contains("<pre>"));
    }

    #[test]
    fn an_invitation_carries_its_link_and_deadline() {
        let c = Mail::Invitation {
            inviter: "ann@example.com".into(),
            link: "https://ferry.example.com:8443/invite/abc".into(),
            expires_at: 1_800_000_000,
        }
        .compose();
        assert!(c.text.contains("https://ferry.example.com:8443/invite/abc"));
        assert!(
            c.html
                .contains(r#"href="https://ferry.example.com:8443/invite/abc""#)
        );
        assert!(c.text.contains("works once"));
    }
}
