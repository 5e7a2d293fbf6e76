//! The site settings an admin changes while the appliance runs: the public
//! address, trusted proxies, the site's pace, the default expiry and the
//! SMTP server.
//!
//! They start from the configuration file and flags (the baseline); what
//! an admin saves is kept in the store and wins from then on, so a restart
//! does not undo a change made in the web admin. Only what differs from
//! the baseline is kept, so a setting an admin never touched keeps
//! following ferryd.toml. Every change passes the one validator
//! ([`ferry_domain::settings`]) and reaches its listeners (the mailer, the
//! running sessions' pace) through a watch channel.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_domain::settings::{
    AcmeSettings, SettingsError, SettingsText, SiteSettings, SmtpSettings, parse,
};
use ferry_domain::{AuditAction, rules};
use ferry_proto::{Pace, Rate};
use ferry_store::{Store, StoreError};
use tokio::sync::watch;

use crate::audit::{Actor, Audit};
use crate::authority::By;
use crate::failing;

const PUBLIC_ADDRESS: &str = "site.public_address";
const TRUSTED_PROXIES: &str = "site.trusted_proxies";
const POLICY: &str = "site.policy";
const TARGET_RATE: &str = "site.target_rate";
const TRANSPORTS: &str = "site.transports";
const SITE_RATE: &str = "site.site_rate";
const DEFAULT_EXPIRY_DAYS: &str = "site.default_expiry_days";
const SMTP_URL: &str = "site.smtp_url";
const SMTP_USER: &str = "site.smtp_user";
const SMTP_PASSWORD_FILE: &str = "site.smtp_password_file";
const SMTP_FROM: &str = "site.smtp_from";
const ACME_NAME: &str = "site.acme_name";
const ACME_DIRECTORY: &str = "site.acme_directory";
const ACME_CONTACT: &str = "site.acme_contact";
/// The bandwidth schedule, one rule a line.
const SCHEDULE: &str = "site.schedule";

/// Why settings were refused or could not be kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsFailure {
    #[error(transparent)]
    Refused(#[from] rules::Refusal),
    #[error(transparent)]
    Invalid(#[from] SettingsError),
    /// A value stored earlier that no longer reads (edited by hand, or
    /// written by a newer version).
    #[error("setting {key} = {value:?} in the database is not valid: {why}")]
    Stored {
        key: &'static str,
        value: String,
        why: String,
    },
    /// A certificate and key that do not make an identity.
    #[error("the certificate was not installed: {0}")]
    Certificate(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

failing!(SettingsFailure {
    SettingsFailure::Certificate(_) => (Invalid, INVALID_REQUEST),
    SettingsFailure::Refused(r) => (r.failure(), r.code()),
    SettingsFailure::Invalid(_) => (Invalid, INVALID_REQUEST),
    SettingsFailure::Stored { .. } => (Internal, INTERNAL),
    SettingsFailure::Store(e) => (e.failure(), e.code()),
});

/// What the SMTP settings are checked against before they are kept: a
/// file the password may be read from.
#[derive(Debug, Clone)]
pub struct SecretDirs {
    /// Folders an admin may point the SMTP password file at from the web
    /// admin or the API. Anywhere else (the TLS key, the database) would
    /// let an admin mail a secret file to a server of their choosing as
    /// the "password".
    pub allowed: Vec<PathBuf>,
}

/// The settings service.
#[derive(Clone)]
pub struct Settings {
    store: Arc<dyn Store>,
    audit: Audit,
    baseline: SiteSettings,
    secrets: SecretDirs,
    tx: Arc<watch::Sender<SiteSettings>>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("current", &*self.tx.borrow())
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Loads the settings in force: `baseline` (the file and flags),
    /// overlaid with what admins saved.
    pub async fn load(
        store: Arc<dyn Store>,
        audit: Audit,
        baseline: SiteSettings,
        secrets: SecretDirs,
    ) -> Result<Self, SettingsFailure> {
        let current = overlay(&*store, &baseline).await?;
        Ok(Settings {
            store,
            audit,
            baseline,
            secrets,
            tx: Arc::new(watch::channel(current).0),
        })
    }

    /// The settings in force now.
    pub fn current(&self) -> SiteSettings {
        self.tx.borrow().clone()
    }

    /// Listeners learn of every change here.
    pub fn subscribe(&self) -> watch::Receiver<SiteSettings> {
        self.tx.subscribe()
    }

    /// The proxies whose `X-Forwarded-For` is believed now.
    pub fn trusted_proxies(&self) -> Vec<IpAddr> {
        self.tx.borrow().trusted_proxies.clone()
    }

    /// The site's pace now.
    pub fn pace(&self) -> Pace {
        self.tx.borrow().pace
    }

    /// An admin's change, as typed into the web admin or sent to the API.
    /// Everything is checked before anything is kept.
    pub async fn change(
        &self,
        by: By<'_>,
        who: Actor,
        text: &SettingsText,
    ) -> Result<SiteSettings, SettingsFailure> {
        by.admin("changing the settings")?;
        let new = parse(text)?;
        if let Some(smtp) = &new.smtp {
            self.check_smtp(smtp)?;
        }
        let old = self.current();
        save(&*self.store, &new, &self.baseline).await?;
        // The change is kept: it must be audited, and listeners told.
        self.audit
            .note(
                who.line(AuditAction::SettingsChange, "site")
                    .detail(describe_change(&old, &new)),
            )
            .await;
        self.tx.send_replace(new.clone());
        Ok(new)
    }

    /// Checks that the SMTP password file lies where it may, and that the
    /// settings make a mailer, before they are kept.
    fn check_smtp(&self, smtp: &SmtpSettings) -> Result<(), SettingsError> {
        let bad = |why: String| SettingsError {
            field: "SMTP password file",
            why,
        };
        if let Some(path) = &smtp.password_file {
            let from_file = self
                .baseline
                .smtp
                .as_ref()
                .and_then(|s| s.password_file.as_deref())
                == Some(path.as_path());
            if !from_file {
                check_secret_place(path, &self.secrets).map_err(bad)?;
            }
        }
        let config = smtp_config(smtp).map_err(|why| SettingsError {
            field: "SMTP password file",
            why,
        })?;
        ferry_mail::Mailer::new(&config).map_err(|e| SettingsError {
            field: "SMTP server",
            why: e.to_string(),
        })?;
        Ok(())
    }
}

/// The SMTP settings with the password read from its file.
pub fn smtp_config(s: &SmtpSettings) -> Result<ferry_mail::SmtpConfig, String> {
    let password = match &s.password_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        ),
        None => None,
    };
    Ok(ferry_mail::SmtpConfig {
        url: s.url.clone(),
        user: s.user.clone(),
        password,
        from: s.from.clone(),
    })
}

fn check_secret_place(path: &Path, dirs: &SecretDirs) -> Result<(), String> {
    let real = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let inside = dirs
        .allowed
        .iter()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .any(|d| real.starts_with(&d) && real != d);
    if inside {
        Ok(())
    } else {
        let allowed: Vec<String> = dirs
            .allowed
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        Err(format!(
            "it must lie in {} (it is {})",
            allowed.join(" or "),
            real.display()
        ))
    }
}

/// The baseline, overlaid with what admins saved.
async fn overlay(
    store: &dyn Store,
    baseline: &SiteSettings,
) -> Result<SiteSettings, SettingsFailure> {
    let mut site = baseline.clone();
    let bad = |key: &'static str, value: &str, why: String| SettingsFailure::Stored {
        key,
        value: value.to_owned(),
        why,
    };
    if let Some(v) = store.setting(PUBLIC_ADDRESS).await? {
        site.public_address = (!v.is_empty()).then_some(v);
    }
    if let Some(v) = store.setting(TRUSTED_PROXIES).await? {
        site.trusted_proxies = v
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse()
                    .map_err(|e: std::net::AddrParseError| bad(TRUSTED_PROXIES, &v, e.to_string()))
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(v) = store.setting(POLICY).await? {
        site.pace.policy = v
            .parse()
            .map_err(|e: ferry_proto::pace::PolicyError| bad(POLICY, &v, e.to_string()))?;
    }
    if let Some(v) = store.setting(TARGET_RATE).await? {
        site.pace.target = if v.is_empty() {
            None
        } else {
            Some(
                v.parse::<Rate>()
                    .map_err(|e| bad(TARGET_RATE, &v, e.to_string()))?,
            )
        };
    }
    if let Some(v) = store.setting(SITE_RATE).await? {
        site.site_rate = if v.is_empty() {
            None
        } else {
            Some(
                v.parse::<Rate>()
                    .map_err(|e| bad(SITE_RATE, &v, e.to_string()))?,
            )
        };
    }
    if let Some(v) = store.setting(TRANSPORTS).await? {
        site.transports = v
            .parse()
            .map_err(|e: ferry_proto::transport::TransportsError| {
                bad(TRANSPORTS, &v, e.to_string())
            })?;
    }
    if let Some(v) = store.setting(DEFAULT_EXPIRY_DAYS).await? {
        site.default_expiry_days = v
            .parse()
            .map_err(|e: std::num::ParseIntError| bad(DEFAULT_EXPIRY_DAYS, &v, e.to_string()))?;
    }
    if let Some(url) = store.setting(SMTP_URL).await? {
        site.smtp = if url.is_empty() {
            None
        } else {
            let opt = |v: Option<String>| v.filter(|v| !v.is_empty());
            Some(SmtpSettings {
                url,
                user: opt(store.setting(SMTP_USER).await?),
                password_file: opt(store.setting(SMTP_PASSWORD_FILE).await?).map(Into::into),
                from: store.setting(SMTP_FROM).await?.unwrap_or_default(),
            })
        };
    }
    if let Some(name) = store.setting(ACME_NAME).await? {
        site.acme = if name.is_empty() {
            None
        } else {
            Some(AcmeSettings {
                name,
                directory: store.setting(ACME_DIRECTORY).await?.unwrap_or_default(),
                contact: store.setting(ACME_CONTACT).await?.filter(|c| !c.is_empty()),
            })
        };
    }
    if let Some(v) = store.setting(SCHEDULE).await? {
        let lines: Vec<String> = v.lines().map(str::to_owned).collect();
        site.schedule = ferry_domain::bandwidth::Schedule::parse_lines(&lines)
            .map_err(|e| bad(SCHEDULE, &v, e.to_string()))?;
    }
    // What was kept by an older version may not hold today's rules.
    site.validate().map_err(|e| SettingsFailure::Stored {
        key: "site",
        value: e.field.to_owned(),
        why: e.why,
    })?;
    Ok(site)
}

/// Keeps what differs from `baseline`, and forgets what matches it.
async fn save(
    store: &dyn Store,
    site: &SiteSettings,
    baseline: &SiteSettings,
) -> Result<(), StoreError> {
    async fn keep(store: &dyn Store, key: &str, same: bool, value: &str) -> Result<(), StoreError> {
        if same {
            store.clear_setting(key).await
        } else {
            store.set_setting(key, value).await
        }
    }
    keep(
        store,
        PUBLIC_ADDRESS,
        site.public_address == baseline.public_address,
        site.public_address.as_deref().unwrap_or(""),
    )
    .await?;
    keep(
        store,
        SCHEDULE,
        site.schedule == baseline.schedule,
        &site.schedule.lines().join("\n"),
    )
    .await?;
    let proxies: Vec<String> = site
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    keep(
        store,
        TRUSTED_PROXIES,
        site.trusted_proxies == baseline.trusted_proxies,
        &proxies.join(","),
    )
    .await?;
    keep(
        store,
        POLICY,
        site.pace.policy == baseline.pace.policy,
        site.pace.policy.as_str(),
    )
    .await?;
    keep(
        store,
        TRANSPORTS,
        site.transports == baseline.transports,
        &site.transports.to_string(),
    )
    .await?;
    keep(
        store,
        TARGET_RATE,
        site.pace.target == baseline.pace.target,
        &site
            .pace
            .target
            .map(|r| r.bits_per_sec().to_string())
            .unwrap_or_default(),
    )
    .await?;
    keep(
        store,
        SITE_RATE,
        site.site_rate == baseline.site_rate,
        &site
            .site_rate
            .map(|r| r.bits_per_sec().to_string())
            .unwrap_or_default(),
    )
    .await?;
    keep(
        store,
        DEFAULT_EXPIRY_DAYS,
        site.default_expiry_days == baseline.default_expiry_days,
        &site.default_expiry_days.to_string(),
    )
    .await?;
    let same = site.smtp == baseline.smtp;
    let smtp = site.smtp.as_ref();
    keep(store, SMTP_URL, same, smtp.map_or("", |s| s.url.as_str())).await?;
    keep(
        store,
        SMTP_USER,
        same,
        smtp.and_then(|s| s.user.as_deref()).unwrap_or(""),
    )
    .await?;
    keep(
        store,
        SMTP_PASSWORD_FILE,
        same,
        &smtp
            .and_then(|s| s.password_file.as_ref())
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    )
    .await?;
    keep(store, SMTP_FROM, same, smtp.map_or("", |s| s.from.as_str())).await?;
    let same = site.acme == baseline.acme;
    let acme = site.acme.as_ref();
    keep(store, ACME_NAME, same, acme.map_or("", |a| a.name.as_str())).await?;
    keep(
        store,
        ACME_DIRECTORY,
        same,
        acme.map_or("", |a| a.directory.as_str()),
    )
    .await?;
    keep(
        store,
        ACME_CONTACT,
        same,
        acme.and_then(|a| a.contact.as_deref()).unwrap_or(""),
    )
    .await?;
    Ok(())
}

/// What changed, in words, for the audit log.
fn describe_change(old: &SiteSettings, new: &SiteSettings) -> String {
    let mut parts = Vec::new();
    if old.public_address != new.public_address {
        parts.push(format!(
            "public address {}",
            new.public_address.as_deref().unwrap_or("(none)")
        ));
    }
    if old.trusted_proxies != new.trusted_proxies {
        parts.push(format!("trusted proxies {:?}", new.trusted_proxies));
    }
    if old.pace != new.pace {
        parts.push(format!("pace {}", new.pace));
    }
    if old.site_rate != new.site_rate {
        parts.push(match new.site_rate {
            Some(r) => format!("site rate {r}"),
            None => "no site rate".to_owned(),
        });
    }
    if old.schedule != new.schedule {
        parts.push(if new.schedule.is_empty() {
            "no bandwidth schedule".to_owned()
        } else {
            format!("bandwidth schedule {}", new.schedule.lines().join("; "))
        });
    }
    if old.default_expiry_days != new.default_expiry_days {
        parts.push(format!("default expiry {} days", new.default_expiry_days));
    }
    if old.transports != new.transports {
        parts.push(format!("transports {}", new.transports));
    }
    if old.smtp != new.smtp {
        parts.push(match &new.smtp {
            Some(s) => format!(
                "SMTP {} as {}, user {}, password file {}",
                s.url,
                s.from,
                s.user.as_deref().unwrap_or("(none)"),
                s.password_file
                    .as_ref()
                    .map_or("(none)".into(), |p| p.display().to_string())
            ),
            None => "SMTP off".into(),
        });
    }
    if old.acme != new.acme {
        parts.push(match &new.acme {
            Some(a) => format!("ACME certificate for {} from {}", a.name, a.directory),
            None => "no ACME certificate".into(),
        });
    }
    if parts.is_empty() {
        "nothing changed".to_owned()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_domain::Role;
    use ferry_proto::Policy;
    use ferry_store::SqlStore;
    use ferry_store::User;

    fn baseline() -> SiteSettings {
        SiteSettings {
            public_address: Some("file.example".into()),
            trusted_proxies: vec![],
            pace: Pace {
                policy: Policy::Fair,
                target: Some("100M".parse().unwrap()),
            },
            site_rate: None,
            default_expiry_days: 30,
            smtp: None,
            transports: Default::default(),
            acme: None,
            schedule: Default::default(),
        }
    }

    async fn service(store: Arc<dyn Store>, baseline: SiteSettings) -> Settings {
        Settings::load(
            store.clone(),
            Audit::new(store),
            baseline,
            SecretDirs { allowed: vec![] },
        )
        .await
        .unwrap()
    }

    async fn admin(store: &dyn Store) -> User {
        store
            .create_user("root@x.io", "", Role::Admin, Some("pw"))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_saved_change_wins_over_the_file_survives_a_restart_and_is_announced() {
        let store: Arc<dyn Store> = Arc::new(SqlStore::open_in_memory().unwrap());
        let root = admin(&*store).await;
        let s = service(store.clone(), baseline()).await;
        let mut heard = s.subscribe();
        let mut text = s.current().to_text();
        text.public_address = String::new();
        text.trusted_proxies = vec!["10.0.0.5".into()];
        text.policy = "fixed".into();
        text.target_rate = "1G".into();
        text.default_expiry_days = "7".into();
        text.transports = "tcp https".into();
        text.site_rate = "300M".into();
        text.acme_name = "ferry.example.com".into();
        text.acme_directory = "https://ca.example/acme".into();
        text.schedule = vec!["mon-fri 09:00-19:00 200M".into(), "".into()];
        let who = Actor::user(root.id, "192.0.2.9".parse().unwrap());
        let new = s.change(By::User(&root), who, &text).await.unwrap();
        assert_eq!(new.transports.to_string(), "tcp, https");
        assert_eq!(new.site_rate, Some("300M".parse().unwrap()));
        assert_eq!(new.schedule.lines(), ["mon-fri 09:00-19:00 200 Mbit/s"]);
        assert_eq!(
            new.acme
                .as_ref()
                .map(|a| (a.name.as_str(), a.contact.is_none())),
            Some(("ferry.example.com", true))
        );
        assert!(heard.has_changed().unwrap());
        assert_eq!(*heard.borrow_and_update(), new);
        // A restart with the same file keeps the change.
        let again = service(store.clone(), baseline()).await;
        assert_eq!(again.current(), new);
        let audit = store.list_events(5, None, Some("settings")).await.unwrap();
        assert!(
            audit[0].detail.contains("pace fixed up to 1 Gbit/s")
                && audit[0].detail.contains("transports tcp, https")
                && audit[0].detail.contains("site rate 300 Mbit/s")
                && audit[0]
                    .detail
                    .contains("bandwidth schedule mon-fri 09:00-19:00 200 Mbit/s")
                && audit[0].detail.contains(
                    "ACME certificate for ferry.example.com from https://ca.example/acme"
                ),
            "{}",
            audit[0].detail
        );
    }

    #[tokio::test]
    async fn what_an_admin_left_alone_keeps_following_the_file() {
        let store: Arc<dyn Store> = Arc::new(SqlStore::open_in_memory().unwrap());
        let root = admin(&*store).await;
        let s = service(store.clone(), baseline()).await;
        let mut text = s.current().to_text();
        text.public_address = "edge.example".into();
        s.change(By::User(&root), Actor::appliance(), &text)
            .await
            .unwrap();
        assert_eq!(store.setting(TARGET_RATE).await.unwrap(), None);
        let mut later = baseline();
        later.pace.target = Some("200M".parse().unwrap());
        let loaded = service(store.clone(), later).await.current();
        assert_eq!(loaded.public_address.as_deref(), Some("edge.example"));
        assert_eq!(loaded.pace.target, Some("200M".parse().unwrap()));
    }

    #[tokio::test]
    async fn only_admins_change_and_bad_values_keep_nothing() {
        let store: Arc<dyn Store> = Arc::new(SqlStore::open_in_memory().unwrap());
        let root = admin(&*store).await;
        let emp = store
            .create_user("e@x.io", "", Role::Employee, Some("pw"))
            .await
            .unwrap();
        let s = service(store.clone(), baseline()).await;
        let mut text = s.current().to_text();
        text.default_expiry_days = "0".into();
        assert!(matches!(
            s.change(By::User(&emp), Actor::appliance(), &s.current().to_text())
                .await,
            Err(SettingsFailure::Refused(_))
        ));
        let e = s
            .change(By::User(&root), Actor::appliance(), &text)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("default expiry"), "{e}");
        assert!(store.settings().await.unwrap().is_empty());
        text.default_expiry_days = "30".into();
        text.smtp_url = "smtp://127.0.0.1:25".into();
        text.smtp_from = "ferry@x.io".into();
        text.smtp_password_file = "/etc/passwd".into();
        let e = s
            .change(By::User(&root), Actor::appliance(), &text)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("password file"), "{e}");
    }

    #[tokio::test]
    async fn a_bad_stored_setting_is_named() {
        let store: Arc<dyn Store> = Arc::new(SqlStore::open_in_memory().unwrap());
        store.set_setting(POLICY, "turbo").await.unwrap();
        let e = Settings::load(
            store.clone(),
            Audit::new(store),
            baseline(),
            SecretDirs { allowed: vec![] },
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("site.policy"), "{e}");
    }
}
