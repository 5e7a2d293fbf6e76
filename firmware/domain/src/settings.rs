//! Site settings: what admins change while the appliance runs, and the one
//! validator the web admin's form, the REST API and the configuration
//! file all pass through. Whatever the source, a value that would break
//! something later (an expiry of zero days, a huge one that overflows,
//! an address with a path in it) is refused here with the field named.

use std::net::IpAddr;
use std::path::PathBuf;

use ferry_proto::{Pace, Policy, Rate, Transports};

/// The longest a delivery may live, in days.
pub const MAX_EXPIRY_DAYS: u64 = 366;
/// Seconds in a day.
const DAY: u64 = 24 * 3600;
/// Let's Encrypt's production directory: the ACME CA unless an admin
/// names another.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// The settings in force.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SiteSettings {
    /// The name or address clients send data to (the edge router's).
    pub public_address: Option<String>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// The site's congestion policy and its cap on each session.
    pub pace: Pace,
    /// A cap on all sessions together, which they share fairly.
    pub site_rate: Option<Rate>,
    /// How long a delivery lives unless its sender says otherwise.
    pub default_expiry_days: u64,
    /// Where email goes out; `None`: messages wait in the outbox.
    pub smtp: Option<SmtpSettings>,
    /// How data may travel: a site may turn QUIC, TCP or HTTPS off.
    pub transports: Transports,
    /// A certificate from an ACME CA; `None`: the certificate in the
    /// data folder (self-signed, or one an admin installed).
    pub acme: Option<AcmeSettings>,
    /// The bandwidth schedule: caps on all sessions together by time of
    /// week; outside its rules, `site_rate` holds.
    pub schedule: crate::bandwidth::Schedule,
}

/// Where the appliance gets a certificate browsers trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The public DNS name browsers use; the CA checks it reaches the
    /// appliance.
    pub name: String,
    /// The CA's directory URL.
    pub directory: String,
    /// An email address the CA may write to.
    pub contact: Option<String>,
}

/// An SMTP server to send through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    /// `smtp://host:port` (STARTTLS with `?tls=required`) or `smtps://…`.
    pub url: String,
    pub user: Option<String>,
    /// A file on the appliance holding the password.
    pub password_file: Option<PathBuf>,
    pub from: String,
}

/// Settings as people type them (the web form, the API's JSON): text,
/// where an empty field means "none".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SettingsText {
    pub public_address: String,
    pub trusted_proxies: Vec<String>,
    pub policy: String,
    pub target_rate: String,
    /// The cap on all sessions together; empty: none.
    pub site_rate: String,
    pub default_expiry_days: String,
    pub smtp_url: String,
    pub smtp_user: String,
    pub smtp_password_file: String,
    pub smtp_from: String,
    /// `quic, tcp, https`; empty: all of them.
    pub transports: String,
    /// The public name to get an ACME certificate for; empty: no ACME.
    pub acme_name: String,
    /// The ACME CA's directory; empty: Let's Encrypt.
    pub acme_directory: String,
    pub acme_contact: String,
    /// The bandwidth schedule, one rule a line (`mon-fri 09:00-19:00 200M`).
    pub schedule: Vec<String>,
}

/// A field that does not hold, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct SettingsError {
    pub field: &'static str,
    pub why: String,
}

fn bad(field: &'static str, why: impl Into<String>) -> SettingsError {
    SettingsError {
        field,
        why: why.into(),
    }
}

/// Reads typed settings from text, checking every field.
pub fn parse(t: &SettingsText) -> Result<SiteSettings, SettingsError> {
    let public_address = Some(t.public_address.trim().to_owned()).filter(|a| !a.is_empty());
    let trusted_proxies = t
        .trusted_proxies
        .iter()
        .flat_map(|p| p.split([',', ' ']))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<IpAddr>()
                .map_err(|_| bad("trusted proxies", format!("{p:?} is not an IP address")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let policy: Policy = t
        .policy
        .parse()
        .map_err(|e: ferry_proto::pace::PolicyError| bad("policy", e.to_string()))?;
    let target = match t.target_rate.trim() {
        "" => None,
        r => Some(
            r.parse::<Rate>()
                .map_err(|e| bad("target rate", e.to_string()))?,
        ),
    };
    let site_rate = match t.site_rate.trim() {
        "" => None,
        r => Some(
            r.parse::<Rate>()
                .map_err(|e| bad("site rate", e.to_string()))?,
        ),
    };
    let days = t.default_expiry_days.trim();
    let default_expiry_days = days.parse::<u64>().map_err(|_| {
        bad(
            "default expiry",
            format!("{days:?} is not a number of days from 1 to {MAX_EXPIRY_DAYS}"),
        )
    })?;
    let smtp = if t.smtp_url.trim().is_empty() {
        None
    } else {
        Some(SmtpSettings {
            url: t.smtp_url.trim().to_owned(),
            user: Some(t.smtp_user.trim().to_owned()).filter(|u| !u.is_empty()),
            password_file: Some(t.smtp_password_file.trim())
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            from: t.smtp_from.trim().to_owned(),
        })
    };
    let transports = if t.transports.trim().is_empty() {
        Transports::default()
    } else {
        t.transports
            .parse()
            .map_err(|e: ferry_proto::transport::TransportsError| {
                bad("transports", e.to_string())
            })?
    };
    let acme = match t.acme_name.trim() {
        "" => None,
        name => Some(AcmeSettings {
            name: name.to_ascii_lowercase(),
            directory: Some(t.acme_directory.trim())
                .filter(|d| !d.is_empty())
                .unwrap_or(LETS_ENCRYPT)
                .to_owned(),
            contact: Some(t.acme_contact.trim().to_owned()).filter(|c| !c.is_empty()),
        }),
    };
    let schedule = crate::bandwidth::Schedule::parse_lines(&t.schedule)
        .map_err(|e| bad("schedule", e.to_string()))?;
    let s = SiteSettings {
        public_address,
        trusted_proxies,
        pace: Pace { policy, target },
        site_rate,
        default_expiry_days,
        smtp,
        transports,
        acme,
        schedule,
    };
    s.validate()?;
    Ok(s)
}

impl SiteSettings {
    /// Checks every field, whatever the settings came from.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(a) = &self.public_address {
            check_host(a).map_err(|why| bad("public address", why))?;
        }
        if !(1..=MAX_EXPIRY_DAYS).contains(&self.default_expiry_days) {
            return Err(bad(
                "default expiry",
                format!(
                    "{} days is not from 1 to {MAX_EXPIRY_DAYS}",
                    self.default_expiry_days
                ),
            ));
        }
        if let Some(s) = &self.smtp {
            let rest = s
                .url
                .strip_prefix("smtp://")
                .or_else(|| s.url.strip_prefix("smtps://"))
                .ok_or_else(|| bad("SMTP server", "write smtp://host:port or smtps://host:port"))?;
            let host = rest.split(['/', '?']).next().unwrap_or("");
            let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
            if host.is_empty() || host.chars().any(char::is_whitespace) {
                return Err(bad("SMTP server", format!("{:?} names no host", s.url)));
            }
            if s.from.is_empty() {
                return Err(bad("SMTP From", "an SMTP server needs a From address"));
            }
            // `Name <address>` or a bare address.
            let address = s
                .from
                .rsplit_once('<')
                .and_then(|(_, rest)| rest.strip_suffix('>'))
                .unwrap_or(&s.from);
            crate::email::check(address.trim()).map_err(|e| bad("SMTP From", e.to_string()))?;
        }
        if let Some(a) = &self.acme {
            a.validate()?;
        }
        Ok(())
    }

    /// The settings as text, for a form or the API.
    pub fn to_text(&self) -> SettingsText {
        let smtp = self.smtp.as_ref();
        SettingsText {
            public_address: self.public_address.clone().unwrap_or_default(),
            trusted_proxies: self
                .trusted_proxies
                .iter()
                .map(ToString::to_string)
                .collect(),
            policy: self.pace.policy.to_string(),
            target_rate: self.pace.target.map(|r| r.to_string()).unwrap_or_default(),
            site_rate: self.site_rate.map(|r| r.to_string()).unwrap_or_default(),
            default_expiry_days: self.default_expiry_days.to_string(),
            smtp_url: smtp.map(|s| s.url.clone()).unwrap_or_default(),
            smtp_user: smtp.and_then(|s| s.user.clone()).unwrap_or_default(),
            smtp_password_file: smtp
                .and_then(|s| s.password_file.as_ref())
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            smtp_from: smtp.map(|s| s.from.clone()).unwrap_or_default(),
            transports: self.transports.to_string(),
            acme_name: self
                .acme
                .as_ref()
                .map(|a| a.name.clone())
                .unwrap_or_default(),
            acme_directory: self
                .acme
                .as_ref()
                .map(|a| a.directory.clone())
                .unwrap_or_default(),
            acme_contact: self
                .acme
                .as_ref()
                .and_then(|a| a.contact.clone())
                .unwrap_or_default(),
            schedule: self.schedule.lines(),
        }
    }

    /// How long a new delivery lives, in seconds: what its sender asked
    /// for, else the site's default; between a second and a year.
    pub fn delivery_lifetime(&self, asked_secs: Option<u64>) -> Result<u64, SettingsError> {
        let secs = asked_secs.unwrap_or(self.default_expiry_days.saturating_mul(DAY));
        if secs == 0 || secs > MAX_EXPIRY_DAYS * DAY {
            return Err(bad(
                "expiry",
                format!("a delivery lives between one second and {MAX_EXPIRY_DAYS} days"),
            ));
        }
        Ok(secs)
    }
}

/// A host name or an IP address, without scheme, port, path or spaces.
impl AcmeSettings {
    /// A CA issues for a DNS name only, and talks ACME over HTTPS.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let name = &self.name;
        if name.parse::<IpAddr>().is_ok() || !name.contains('.') {
            return Err(bad(
                "ACME name",
                format!("{name:?} is not a public DNS name (such as ferry.example.com)"),
            ));
        }
        check_host(name).map_err(|why| bad("ACME name", why))?;
        let rest = self.directory.strip_prefix("https://").ok_or_else(|| {
            bad(
                "ACME directory",
                format!("{:?} is not an https:// URL", self.directory),
            )
        })?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        if host.is_empty() || host.chars().any(char::is_whitespace) {
            return Err(bad(
                "ACME directory",
                format!("{:?} names no host", self.directory),
            ));
        }
        if let Some(c) = &self.contact {
            crate::email::check(c).map_err(|e| bad("ACME contact", e.to_string()))?;
        }
        Ok(())
    }
}

fn check_host(a: &str) -> Result<(), String> {
    if a.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let ok = a.len() <= 253
        && a.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{a:?} is not a host name or IP address"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> SettingsText {
        SettingsText {
            public_address: "ferry.example.com".into(),
            trusted_proxies: vec!["10.0.0.1, 10.0.0.2".into()],
            policy: "fair".into(),
            target_rate: "100M".into(),
            default_expiry_days: "30".into(),
            ..Default::default()
        }
    }

    #[test]
    fn settings_round_trip_through_text() {
        let s = parse(&text()).unwrap();
        assert_eq!(s.trusted_proxies.len(), 2);
        assert_eq!(parse(&s.to_text()).unwrap(), s);
    }

    #[test]
    fn values_that_would_break_deliveries_are_refused_with_the_field_named() {
        for (days, ok) in [
            ("0", false),
            ("1", true),
            ("366", true),
            ("367", false),
            ("99999999999999999999", false),
            ("x", false),
        ] {
            let t = SettingsText {
                default_expiry_days: days.into(),
                ..text()
            };
            let r = parse(&t);
            assert_eq!(r.is_ok(), ok, "{days}: {r:?}");
            if let Err(e) = r {
                assert_eq!(e.field, "default expiry");
            }
        }
        for addr in ["https://x.example", "x.example/path", "a b", "-x.example"] {
            let t = SettingsText {
                public_address: addr.into(),
                ..text()
            };
            assert_eq!(parse(&t).unwrap_err().field, "public address", "{addr}");
        }
        let t = SettingsText {
            smtp_url: "smtp://mail.example:25".into(),
            ..text()
        };
        assert_eq!(parse(&t).unwrap_err().field, "SMTP From");
        let t = SettingsText {
            smtp_url: "http://mail.example".into(),
            smtp_from: "f@example.com".into(),
            ..text()
        };
        assert_eq!(parse(&t).unwrap_err().field, "SMTP server");
        let t = SettingsText {
            smtp_url: "smtps://mail.example:465".into(),
            smtp_from: "Ferry <ferry@example.com>".into(),
            ..text()
        };
        assert!(parse(&t).is_ok());
    }

    #[test]
    fn acme_needs_a_dns_name_and_an_https_directory() {
        let acme = |name: &str, directory: &str, contact: &str| SettingsText {
            acme_name: name.into(),
            acme_directory: directory.into(),
            acme_contact: contact.into(),
            ..text()
        };
        let s = parse(&acme("Ferry.Example.com", "", "ops@example.com")).unwrap();
        let a = s.acme.clone().unwrap();
        assert_eq!(a.name, "ferry.example.com");
        assert_eq!(a.directory, LETS_ENCRYPT);
        assert_eq!(a.contact.as_deref(), Some("ops@example.com"));
        assert_eq!(parse(&s.to_text()).unwrap(), s);
        assert_eq!(parse(&acme("", "https://x", "")).unwrap().acme, None);
        for (t, field) in [
            (acme("10.0.0.1", "", ""), "ACME name"),
            (acme("localhost", "", ""), "ACME name"),
            (acme("a b.example", "", ""), "ACME name"),
            (
                acme("f.example", "http://ca.example/dir", ""),
                "ACME directory",
            ),
            (acme("f.example", "https:///dir", ""), "ACME directory"),
            (acme("f.example", "", "not an address"), "ACME contact"),
        ] {
            assert_eq!(parse(&t).unwrap_err().field, field, "{t:?}");
        }
    }

    #[test]
    fn a_delivery_lives_between_a_second_and_a_year() {
        let s = parse(&text()).unwrap();
        assert_eq!(s.delivery_lifetime(None), Ok(30 * DAY));
        assert!(s.delivery_lifetime(Some(0)).is_err());
        assert!(s.delivery_lifetime(Some(400 * DAY)).is_err());
        assert_eq!(s.delivery_lifetime(Some(60)), Ok(60));
    }
}
