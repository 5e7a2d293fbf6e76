//! What the web admin (ferry-webadmin) asks of the running appliance: live
//! transfers and leases, job control with the API's rules, and site
//! settings. The pages themselves live in that crate.

use std::net::IpAddr;
use std::sync::Arc;

use ferry_api::{JobDetail, JobList};
use ferry_store::{JobFilter, JobId, NewEvent, Store, User};
use ferry_webadmin::{
    Appliance, ApplianceInfo, JobAction, JobQuery, LeaseInfo, LiveTransfer, Refused, SiteSettings,
};

use crate::app::App;
use crate::http::ApiError;
use crate::http::jobs::{control, job_detail, job_list, purge_job, reprioritise, visible_job};
use crate::site::Site;

fn refused(e: ApiError) -> Refused {
    Refused::new(e.message)
}

/// The appliance as the web admin sees it.
#[derive(Clone)]
pub struct ForWeb(pub Arc<App>);

impl Appliance for ForWeb {
    fn store(&self) -> &Store {
        &self.0.store
    }

    fn info(&self) -> ApplianceInfo {
        let app = &self.0;
        ApplianceInfo {
            fingerprint: app.fingerprint.to_string(),
            listen: app.config.listen.to_string(),
            ports: app.dataplane.range().to_string(),
            firewall_on: app.dataplane.firewall_on(),
            version: env!("CARGO_PKG_VERSION"),
            smtp: app.site().smtp.map(|s| format!("{} as {}", s.url, s.from)),
            outbox: app
                .store
                .outbox_counts()
                .map(|c| (c.waiting, c.sent, c.failed))
                .unwrap_or_default(),
        }
    }

    fn live(&self) -> Vec<LiveTransfer> {
        let app = &self.0;
        let live: Vec<crate::app::Live> = app.live().values().cloned().collect();
        let mut out: Vec<LiveTransfer> = live
            .iter()
            .filter_map(|l| {
                let job = app.store.job(l.job).ok()?;
                let user = app.store.user(l.user).ok()?;
                let p = l.progress.snapshot();
                Some(LiveTransfer {
                    job: job.id.0,
                    name: job.name,
                    kind: job.kind.as_str().to_owned(),
                    user: user.email,
                    client: l.client.to_string(),
                    port: l.port,
                    bytes_done: p.bytes_done(),
                    bytes_total: p.bytes_total,
                    rate: job.rate.max(0) as u64,
                    pace: l.pace.get().to_string(),
                    seconds: l.started.elapsed().as_secs(),
                })
            })
            .collect();
        out.sort_by_key(|t| t.job);
        out
    }

    fn leases(&self) -> Vec<LeaseInfo> {
        let app = &self.0;
        let live: Vec<crate::app::Live> = app.live().values().cloned().collect();
        let mut out: Vec<LeaseInfo> = app
            .dataplane
            .leases()
            .into_iter()
            .map(|l| LeaseInfo {
                port: l.port,
                client: l.ip,
                // A lease is taken before its connection arrives; until then
                // nobody is named.
                user: live
                    .iter()
                    .find(|s| s.port == l.port && s.client.ip() == l.ip)
                    .and_then(|s| app.store.user(s.user).ok())
                    .map_or_else(|| "(connecting)".to_owned(), |u| u.email),
            })
            .collect();
        out.sort_by_key(|l| (l.port, l.client));
        out
    }

    fn warnings(&self) -> Vec<String> {
        let mut w = self.0.warnings();
        let waiting = self.0.store.outbox_counts().map(|c| c.waiting).unwrap_or(0);
        if self.0.site().smtp.is_none() {
            w.push(format!(
                "email (SMTP) is not configured: invitations, delivery notices and failure alerts wait in the \
                 outbox ({waiting} now); set an SMTP server in Settings"
            ));
        } else if waiting > 20 {
            w.push(format!(
                "{waiting} emails wait in the outbox: the SMTP server may be down (see the log)"
            ));
        }
        w
    }

    fn jobs(&self, user: &User, q: &JobQuery) -> Result<JobList, Refused> {
        let app = &self.0;
        let store = &app.store;
        let mut filter = JobFilter {
            visible_to: (!user.is_admin()).then_some(user.id),
            finished: q.finished,
            all: !q.finished,
            status: q
                .status
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e: ferry_store::StoreError| Refused::new(e.to_string()))?,
            before: q.before.map(JobId),
            limit: q.limit.clamp(1, 500),
            ..Default::default()
        };
        if let Some(email) = q.user.as_deref() {
            let other = store
                .user_by_email(email.trim())?
                .ok_or_else(|| Refused::new(format!("there is no user {}", email.trim())))?;
            if user.is_admin() {
                filter.visible_to = Some(other.id);
            } else {
                // An employee narrows their own jobs to one recipient.
                filter.recipient = Some(other.id);
            }
        }
        let jobs = store.list_jobs(&filter)?;
        Ok(job_list(app, &jobs, jobs.len() as u32 == filter.limit))
    }

    fn job(&self, user: &User, id: i64) -> Result<JobDetail, Refused> {
        let app = &self.0;
        let job = visible_job(app, user, id).map_err(refused)?;
        job_detail(app, &job).map_err(refused)
    }

    async fn act(
        &self,
        user: &User,
        from: IpAddr,
        id: i64,
        action: JobAction,
    ) -> Result<(), Refused> {
        match action {
            JobAction::Purge => purge_job(&self.0, user, from, id, false)
                .await
                .map(|_| ())
                .map_err(refused),
            other => control(&self.0, user, from, id, other.as_str())
                .map(|_| ())
                .map_err(refused),
        }
    }

    fn reprioritise(
        &self,
        user: &User,
        from: IpAddr,
        id: i64,
        glob: &str,
        priority: &str,
    ) -> Result<usize, Refused> {
        reprioritise(&self.0, user, from, id, glob, priority)
            .map(|(_, n)| n)
            .map_err(refused)
    }

    fn install_certificate(
        &self,
        by: &User,
        from: IpAddr,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<String, Refused> {
        let app = &self.0;
        let identity =
            crate::identity::install(&app.config.data, cert_pem.as_bytes(), key_pem.as_bytes())
                .map_err(|e| Refused::new(format!("{e:#}")))?;
        let fingerprint = identity.fingerprint().to_string();
        app.set_pending_certificate(fingerprint.clone());
        let _ = app.store.record_event(NewEvent {
            user: Some(by.id),
            address: Some(from.to_string()),
            action: "settings.certificate",
            subject: "certificate".into(),
            detail: format!("installed SHA-256 {fingerprint}; in use after a restart"),
        });
        Ok(fingerprint)
    }

    fn add_root_share(&self, name: &str, path: &str) -> Result<ferry_store::Share, Refused> {
        crate::shares::add_root(&self.0.store, name, path, &[&self.0.config.data])
            .map_err(|e| Refused::new(e.to_string()))
    }

    fn add_share(
        &self,
        name: &str,
        root: &str,
        folder: &str,
    ) -> Result<ferry_store::Share, Refused> {
        crate::shares::add_beneath(&self.0.store, name, root, folder)
            .map_err(|e| Refused::new(e.to_string()))
    }

    fn invite(
        &self,
        by: &User,
        from: IpAddr,
        email: &str,
        name: &str,
        role: ferry_store::Role,
    ) -> Result<User, Refused> {
        let app = &self.0;
        // The link names the address people reach the appliance at; a
        // wildcard listen address would make it useless.
        if app.site().public_address.is_none() && app.control.ip().is_unspecified() {
            return Err(Refused::new(
                "Set the public address in Settings first: the invitation link must name it.",
            ));
        }
        let user = app.store.create_user(email, name, role, None)?;
        let _ = app.store.record_event(NewEvent {
            user: Some(by.id),
            address: Some(from.to_string()),
            action: "user.invite",
            subject: user.email.clone(),
            detail: role.as_str().to_owned(),
        });
        crate::mail::invite(app, &user, &by.email).map_err(|e| {
            Refused::new(format!(
                "{} was added, but the invitation could not be queued: {e}",
                user.email
            ))
        })?;
        Ok(user)
    }

    fn test_mail(&self, to: &User) -> Result<(), Refused> {
        crate::mail::test_mail(&self.0, to).map_err(Refused::from)
    }

    fn base_url(&self) -> String {
        crate::mail::base_url(&self.0)
    }

    fn site(&self) -> SiteSettings {
        self.0.site().to_web()
    }

    fn change_site(&self, by: &User, from: IpAddr, site: SiteSettings) -> Result<(), Refused> {
        let new = Site::from_web(&site, &self.0.config).map_err(Refused::new)?;
        let old = self.0.site();
        self.0.set_site(new.clone())?;
        let _ = self.0.store.record_event(NewEvent {
            user: Some(by.id),
            address: Some(from.to_string()),
            action: "settings.change",
            subject: "site".into(),
            detail: describe_change(&old, &new),
        });
        Ok(())
    }
}

/// What changed, in words, for the audit log.
fn describe_change(old: &Site, new: &Site) -> String {
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
    if old.default_expiry_days != new.default_expiry_days {
        parts.push(format!("default expiry {} days", new.default_expiry_days));
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
    if parts.is_empty() {
        "nothing changed".to_owned()
    } else {
        parts.join("; ")
    }
}
