//! All the services, made together in the one order their dependencies
//! allow. The daemon's app builds this once and hands it to every adapter.

use crate::certificates::{CertificateError, Certificates};
use std::path::PathBuf;
use std::sync::Arc;

use ferry_domain::settings::SiteSettings;
use ferry_store::Store;

use crate::audit::{Actor, Audit};
use crate::authority::By;
use crate::clock::Clock;
use crate::deliveries::Deliveries;
use crate::jobs::Jobs;
use crate::live::{Limits, LiveSessions};
use crate::manifest::Manifests;
use crate::nodes::Nodes;
use crate::notifier::Notifier;
use crate::portal::Portal;
use crate::ports::Appliance;
use crate::settings::{SecretDirs, Settings, SettingsFailure};
use crate::shares::Shares;
use crate::transfers::Transfers;
use crate::uploads::Uploads;
use crate::users::Users;
use crate::watches::Watches;

/// What the services are made from, besides the store.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The settings from the file and flags, before what admins saved.
    pub baseline: SiteSettings,
    pub secrets: SecretDirs,
    /// The appliance's own folders, which no share may touch.
    pub own_folders: Vec<PathBuf>,
    pub limits: Limits,
    /// The port people reach the web admin on, for links in emails.
    pub control_port: u16,
    /// The host for links when no public address is set.
    pub fallback_host: String,
    /// This ferryd's node name, and the address its clients reach it at.
    pub node: (String, String),
}

/// Every service.
#[derive(Clone)]
pub struct Services {
    pub clock: Arc<dyn Clock>,
    pub audit: Audit,
    pub settings: Settings,
    pub certificates: Certificates,
    pub live: Arc<LiveSessions>,
    pub notifier: Notifier,
    pub shares: Shares,
    pub users: Users,
    pub deliveries: Deliveries,
    pub jobs: Jobs,
    pub transfers: Transfers,
    pub portal: Portal,
    pub manifests: Manifests,
    pub uploads: Uploads,
    pub watches: Watches,
    pub nodes: Nodes,
    /// The running appliance (its certificate, ports and firewall).
    pub appliance: Arc<dyn Appliance>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

impl Services {
    /// Makes every service over `store`.
    pub async fn start(
        store: Arc<dyn Store>,
        audit: Audit,
        clock: Arc<dyn Clock>,
        appliance: Arc<dyn Appliance>,
        setup: Setup,
    ) -> Result<Self, SettingsFailure> {
        let settings =
            Settings::load(store.clone(), audit.clone(), setup.baseline, setup.secrets).await?;
        let certificates = Certificates::new(store.clone());
        let live = Arc::new(LiveSessions::new(setup.limits));
        let notifier = Notifier::new(
            store.clone(),
            audit.clone(),
            clock.clone(),
            settings.subscribe(),
            setup.control_port,
            setup.fallback_host,
        );
        let shares = Shares::new(
            store.clone(),
            audit.clone(),
            live.clone(),
            setup.own_folders,
        );
        let users = Users::new(store.clone(), audit.clone(), notifier.clone(), live.clone());
        let deliveries = Deliveries::new(
            store.clone(),
            audit.clone(),
            clock.clone(),
            settings.clone(),
            shares.clone(),
            notifier.clone(),
            live.clone(),
        );
        let jobs = Jobs::new(
            store.clone(),
            audit.clone(),
            clock.clone(),
            settings.clone(),
            live.clone(),
            deliveries.clone(),
        );
        let transfers = Transfers::new(
            store.clone(),
            audit.clone(),
            clock.clone(),
            shares.clone(),
            deliveries.clone(),
            notifier.clone(),
            setup.node.0.clone(),
        );
        let portal = Portal::new(store.clone(), transfers.clone());
        let manifests = Manifests::new(store.clone(), transfers.clone());
        let uploads = Uploads::new(store.clone(), clock.clone(), transfers.clone());
        let watches = Watches::new(store.clone(), audit.clone(), deliveries.clone());
        let (name, address) = setup.node;
        let nodes = Nodes::new(store, audit.clone(), clock.clone(), name, address);
        Ok(Services {
            clock,
            audit,
            settings,
            certificates,
            live,
            notifier,
            shares,
            users,
            deliveries,
            jobs,
            transfers,
            portal,
            manifests,
            uploads,
            watches,
            nodes,
            appliance,
        })
    }

    /// Installs a certificate and key (PEM) for the next start (admins),
    /// audited with its fingerprint.
    pub async fn install_certificate(
        &self,
        by: By<'_>,
        who: Actor,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<String, SettingsFailure> {
        by.admin("installing a certificate")?;
        let pair = ferry_store::Certificate {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        };
        let fingerprint = self
            .certificates
            .install(&pair)
            .await
            .map_err(|e| match e {
                CertificateError::Store(e) => SettingsFailure::Store(e),
                other => SettingsFailure::Certificate(other.to_string()),
            })?;
        self.appliance.will_serve(&fingerprint);
        self.audit
            .record(
                who.line(
                    ferry_domain::AuditAction::SettingsCertificate,
                    "certificate",
                )
                .detail(format!(
                    "installed SHA-256 {fingerprint}; in use after a restart"
                )),
            )
            .await?;
        Ok(fingerprint)
    }

    /// What an admin should fix, in words: the appliance's own warnings,
    /// email that cannot go out, and audit lines that were lost.
    pub async fn warnings(&self) -> Vec<String> {
        let mut w = self.appliance.warnings();
        match self.notifier.counts().await {
            Ok(c) if self.settings.current().smtp.is_none() => w.push(format!(
                "email (SMTP) is not configured: invitations, delivery notices and failure alerts wait in the \
                 outbox ({} now); set an SMTP server in Settings, or hand invitation links over yourself",
                c.waiting
            )),
            Ok(c) if c.waiting > 20 => w.push(format!(
                "{} emails wait in the outbox: the SMTP server may be down (see the log)",
                c.waiting
            )),
            Ok(_) => {}
            Err(e) => w.push(format!("the outbox cannot be read: {e}")),
        }
        let lost = self.audit.failures();
        if lost > 0 {
            w.push(format!(
                "{lost} audit lines could not be written since ferryd started (the database refused them); \
                 the log has each one"
            ));
        }
        w
    }
}
