//! Site settings an admin changes while the appliance runs (the web
//! admin's Settings page): the public address, trusted proxies, the site's
//! pace and the default expiry of deliveries.
//!
//! They start from the configuration file and flags; what an admin saves
//! is kept in the database and wins over the file from then on (it is the
//! later decision), so a restart does not undo a change made in the web
//! admin. Clearing a field in the web admin stores "none", not "the file's
//! value".

use std::net::IpAddr;

use ferry_proto::{Pace, Policy, Rate};
use ferry_store::Store;

use crate::config::{Config, SmtpSettings};

const PUBLIC_ADDRESS: &str = "site.public_address";
const TRUSTED_PROXIES: &str = "site.trusted_proxies";
const POLICY: &str = "site.policy";
const TARGET_RATE: &str = "site.target_rate";
const DEFAULT_EXPIRY_DAYS: &str = "site.default_expiry_days";
const SMTP_URL: &str = "site.smtp_url";
const SMTP_USER: &str = "site.smtp_user";
const SMTP_PASSWORD_FILE: &str = "site.smtp_password_file";
const SMTP_FROM: &str = "site.smtp_from";

/// The settings in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub public_address: Option<String>,
    pub trusted_proxies: Vec<IpAddr>,
    pub pace: Pace,
    pub default_expiry_days: u64,
    /// Where email goes out; `None`: messages wait in the outbox.
    pub smtp: Option<SmtpSettings>,
}

/// A stored setting that no longer reads (edited by hand, or from a
/// newer version).
#[derive(Debug, thiserror::Error)]
#[error("setting {key} = {value:?} in the database is not valid: {why}")]
pub struct BadSetting {
    key: &'static str,
    value: String,
    why: String,
}

impl Site {
    pub fn from_config(config: &Config) -> Site {
        Site {
            public_address: config.public_address.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            pace: config.transfer.site_pace(),
            default_expiry_days: config.deliveries.default_expiry_days,
            smtp: config.smtp.clone(),
        }
    }

    /// The configuration, overlaid with what admins saved.
    pub fn load(config: &Config, store: &Store) -> anyhow::Result<Site> {
        let mut site = Site::from_config(config);
        let bad = |key: &'static str, value: &str, why: String| BadSetting {
            key,
            value: value.to_owned(),
            why,
        };
        if let Some(v) = store.setting(PUBLIC_ADDRESS)? {
            site.public_address = (!v.is_empty()).then_some(v);
        }
        if let Some(v) = store.setting(TRUSTED_PROXIES)? {
            site.trusted_proxies = v
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse().map_err(|e: std::net::AddrParseError| {
                        bad(TRUSTED_PROXIES, &v, e.to_string())
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = store.setting(POLICY)? {
            site.pace.policy = v
                .parse()
                .map_err(|e: ferry_proto::pace::PolicyError| bad(POLICY, &v, e.to_string()))?;
        }
        if let Some(v) = store.setting(TARGET_RATE)? {
            site.pace.target = if v.is_empty() {
                None
            } else {
                Some(
                    v.parse()
                        .map_err(|e: ferry_proto::RateError| bad(TARGET_RATE, &v, e.to_string()))?,
                )
            };
        }
        if let Some(v) = store.setting(DEFAULT_EXPIRY_DAYS)? {
            site.default_expiry_days = v.parse().map_err(|e: std::num::ParseIntError| {
                bad(DEFAULT_EXPIRY_DAYS, &v, e.to_string())
            })?;
        }
        if let Some(url) = store.setting(SMTP_URL)? {
            site.smtp = if url.is_empty() {
                None
            } else {
                let opt = |v: Option<String>| v.filter(|v| !v.is_empty());
                Some(SmtpSettings {
                    url,
                    user: opt(store.setting(SMTP_USER)?),
                    password_file: opt(store.setting(SMTP_PASSWORD_FILE)?).map(Into::into),
                    from: store.setting(SMTP_FROM)?.unwrap_or_default(),
                })
            };
        }
        Ok(site)
    }

    /// Keeps in the database what differs from `baseline` (the file and
    /// flags), and forgets what matches it, so that a setting an admin
    /// never touched keeps following ferryd.toml.
    pub fn save(&self, store: &Store, baseline: &Site) -> ferry_store::Result<()> {
        let keep = |key: &str, same: bool, value: &str| {
            if same {
                store.clear_setting(key)
            } else {
                store.set_setting(key, value)
            }
        };
        keep(
            PUBLIC_ADDRESS,
            self.public_address == baseline.public_address,
            self.public_address.as_deref().unwrap_or(""),
        )?;
        let proxies: Vec<String> = self
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        keep(
            TRUSTED_PROXIES,
            self.trusted_proxies == baseline.trusted_proxies,
            &proxies.join(","),
        )?;
        keep(
            POLICY,
            self.pace.policy == baseline.pace.policy,
            &self.pace.policy.to_string(),
        )?;
        keep(
            TARGET_RATE,
            self.pace.target == baseline.pace.target,
            &self
                .pace
                .target
                .map(|r| r.bits_per_sec().to_string())
                .unwrap_or_default(),
        )?;
        keep(
            DEFAULT_EXPIRY_DAYS,
            self.default_expiry_days == baseline.default_expiry_days,
            &self.default_expiry_days.to_string(),
        )?;
        let same = self.smtp == baseline.smtp;
        let smtp = self.smtp.as_ref();
        keep(SMTP_URL, same, smtp.map_or("", |s| s.url.as_str()))?;
        keep(
            SMTP_USER,
            same,
            smtp.and_then(|s| s.user.as_deref()).unwrap_or(""),
        )?;
        keep(
            SMTP_PASSWORD_FILE,
            same,
            &smtp
                .and_then(|s| s.password_file.as_ref())
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        )?;
        keep(SMTP_FROM, same, smtp.map_or("", |s| s.from.as_str()))?;
        Ok(())
    }

    /// The web admin's view of these settings.
    pub fn to_web(&self) -> ferry_webadmin::SiteSettings {
        ferry_webadmin::SiteSettings {
            public_address: self.public_address.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
            policy: self.pace.policy.to_string(),
            target_rate: self.pace.target.map(|r| r.to_string()),
            default_expiry_days: self.default_expiry_days,
            smtp_url: self
                .smtp
                .as_ref()
                .map(|s| s.url.clone())
                .unwrap_or_default(),
            smtp_user: self
                .smtp
                .as_ref()
                .and_then(|s| s.user.clone())
                .unwrap_or_default(),
            smtp_password_file: self
                .smtp
                .as_ref()
                .and_then(|s| s.password_file.as_ref())
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            smtp_from: self
                .smtp
                .as_ref()
                .map(|s| s.from.clone())
                .unwrap_or_default(),
        }
    }

    /// Settings from the web admin's form (already checked there; checked
    /// again here because this is the boundary that keeps them).
    pub fn from_web(s: &ferry_webadmin::SiteSettings, config: &Config) -> Result<Site, String> {
        let policy: Policy = s
            .policy
            .parse()
            .map_err(|e: ferry_proto::pace::PolicyError| e.to_string())?;
        let target: Option<Rate> = s
            .target_rate
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: ferry_proto::RateError| e.to_string())?;
        let smtp = if s.smtp_url.trim().is_empty() {
            None
        } else {
            let settings = SmtpSettings {
                url: s.smtp_url.trim().to_owned(),
                user: Some(s.smtp_user.trim().to_owned()).filter(|u| !u.is_empty()),
                password_file: Some(s.smtp_password_file.trim())
                    .filter(|p| !p.is_empty())
                    .map(Into::into),
                from: s.smtp_from.trim().to_owned(),
            };
            if settings.from.is_empty() {
                return Err("an SMTP server needs a From address".into());
            }
            if let Some(p) = &settings.password_file {
                check_password_file(p, config)?;
            }
            // Reading the password file and parsing URL and From here
            // names a mistake now rather than at the first message.
            let config = crate::mail::smtp_config(&settings).map_err(|e| e.to_string())?;
            crate::mail::check(&config).map_err(|e| e.to_string())?;
            Some(settings)
        };
        Ok(Site {
            public_address: s.public_address.clone(),
            trusted_proxies: s.trusted_proxies.clone(),
            pace: Pace { policy, target },
            default_expiry_days: s.default_expiry_days,
            smtp,
        })
    }
}

/// Folders an admin may point the SMTP password file at from the web
/// admin. Anywhere else (the TLS key, the database) would let an admin
/// mail a secret file to a server of their choosing as the "password".
/// A path from ferryd.toml is the operator's choice and is not limited.
pub fn password_dirs(config: &Config) -> [std::path::PathBuf; 2] {
    ["/etc/ferry".into(), config.data.join("secrets")]
}

fn check_password_file(path: &std::path::Path, config: &Config) -> Result<(), String> {
    let from_file = config
        .smtp
        .as_ref()
        .and_then(|s| s.password_file.as_deref())
        == Some(path);
    if from_file {
        return Ok(());
    }
    let dirs = password_dirs(config);
    let real = std::fs::canonicalize(path)
        .map_err(|e| format!("SMTP password file {}: {e}", path.display()))?;
    let inside = dirs
        .iter()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .any(|d| real.starts_with(&d) && real != d);
    if inside {
        Ok(())
    } else {
        Err(format!(
            "the SMTP password file must lie in {} or {} (it is {})",
            dirs[0].display(),
            dirs[1].display(),
            real.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FileConfig, Overrides};

    #[test]
    fn saved_settings_win_over_the_file_and_survive_a_restart() {
        let file = FileConfig::parse(
            "public_address = \"file.example\"\n[transfer]\ntarget_rate = \"100M\"\n",
        )
        .unwrap();
        let config = Config::resolve(file, Overrides::default()).unwrap();
        let store = Store::open_in_memory().unwrap();
        let first = Site::load(&config, &store).unwrap();
        assert_eq!(first.public_address.as_deref(), Some("file.example"));
        let changed = Site {
            public_address: None,
            trusted_proxies: vec!["10.0.0.5".parse().unwrap()],
            pace: Pace {
                policy: Policy::Fixed,
                target: Some("1G".parse().unwrap()),
            },
            default_expiry_days: 7,
            smtp: None,
        };
        changed.save(&store, &first).unwrap();
        assert_eq!(Site::load(&config, &store).unwrap(), changed);
        let web = changed.to_web();
        assert_eq!(Site::from_web(&web, &config).unwrap(), changed);
    }

    #[test]
    fn settings_an_admin_left_alone_keep_following_the_file() {
        let file = FileConfig::parse(
            "public_address = \"file.example\"\n[transfer]\ntarget_rate = \"100M\"\n",
        )
        .unwrap();
        let config = Config::resolve(file, Overrides::default()).unwrap();
        let store = Store::open_in_memory().unwrap();
        let baseline = Site::from_config(&config);
        // The first-run page changes only the public address.
        let mut site = baseline.clone();
        site.public_address = Some("edge.example".into());
        site.save(&store, &baseline).unwrap();
        assert_eq!(store.setting(TARGET_RATE).unwrap(), None);
        assert_eq!(store.setting(SMTP_URL).unwrap(), None);
        // Later the file gets a new rate and an SMTP server: both apply.
        let file = FileConfig::parse(
            "public_address = \"file.example\"\n[transfer]\ntarget_rate = \"200M\"\n[smtp]\nurl = \"smtp://127.0.0.1:25\"\nfrom = \"f@example.com\"\n",
        )
        .unwrap();
        let config = Config::resolve(file, Overrides::default()).unwrap();
        let loaded = Site::load(&config, &store).unwrap();
        assert_eq!(loaded.public_address.as_deref(), Some("edge.example"));
        assert_eq!(loaded.pace.target, Some("200M".parse().unwrap()));
        assert!(loaded.smtp.is_some());
    }

    #[test]
    fn a_bad_stored_setting_is_named() {
        let config = Config::resolve(FileConfig::default(), Overrides::default()).unwrap();
        let store = Store::open_in_memory().unwrap();
        store.set_setting(POLICY, "turbo").unwrap();
        let err = Site::load(&config, &store).unwrap_err().to_string();
        assert!(err.contains("site.policy"), "{err}");
    }
}
