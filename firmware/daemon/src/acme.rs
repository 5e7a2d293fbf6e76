//! Keeping the certificate browsers trust: the task that orders one from
//! the ACME CA named in the settings, and renews it while the appliance
//! runs.
//!
//! The rule of when is [`ferry_acme::renewal`]; the order itself is
//! [`ferry_acme::order`]. This task wakes when the certificate falls due
//! or the settings change, keeps what the CA issues in the database (the
//! key never changes, so every pin holds), and swaps it into the running
//! servers: HTTPS, QUIC and TCP all serve it from their next handshake,
//! without a restart. One node orders for the appliance (it holds the
//! [`Singleton::Certificate`] task); the others serve the chain it keeps
//! from their next heartbeat ([`ferryd_core::certificates::Certificates::follow`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ferry_acme::renewal::{Issued, Renewal, renewal, retry_in};
use ferry_domain::AuditAction;
use ferry_domain::node::{SILENT_AFTER, Singleton};
use ferry_domain::settings::AcmeSettings;
use ferry_engine::tls::Identity;
use ferryd_core::Services;
use ferryd_core::audit::Actor;
use tokio_util::sync::CancellationToken;

/// The longest the task sleeps without looking again, so that a clock
/// that jumps (a suspended VM) cannot make it miss a renewal.
const LOOK_AGAIN: Duration = Duration::from_secs(3600);

/// What the last order came to, for the dashboard.
#[derive(Debug, Default)]
pub struct Status {
    failure: Mutex<Option<String>>,
}

impl Status {
    /// Why the last order failed, while the failure stands.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, failure: Option<String>) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = failure;
    }
}

/// What the task needs besides the services.
pub struct Keeper {
    pub identity: Arc<Identity>,
    /// Where the issued chain is kept for the next start and the other
    /// nodes.
    pub certificates: ferryd_core::certificates::Certificates,
    pub data: PathBuf,
    /// A CA certificate trusted for the directory's HTTPS (`[tls]
    /// acme_roots`), for a private CA.
    pub roots: Option<PathBuf>,
    pub status: Arc<Status>,
}

/// Runs until `shutdown`.
pub async fn run(services: Services, keeper: Keeper, shutdown: CancellationToken) {
    let mut site = services.settings.subscribe();
    let mut failures = 0u32;
    let mut asked: Option<AcmeSettings> = None;
    loop {
        let acme = site.borrow_and_update().acme.clone();
        // The admin may have fixed what made orders fail: a new name or
        // CA starts again at once; any other change of settings does not.
        if acme != asked {
            failures = 0;
            asked = acme.clone();
        }
        let wait = match acme {
            None => {
                keeper.status.set(None);
                None
            }
            Some(acme) => Some(match due(&keeper.identity, &acme.name) {
                Renewal::At(at) => until(at),
                // One node orders for the appliance; the others serve what
                // it keeps from their next heartbeat, and look again then.
                Renewal::Now(_) if !services.nodes.hold(Singleton::Certificate).await => {
                    Duration::from_secs(SILENT_AFTER as u64)
                }
                Renewal::Now(why) => match order(&services, &keeper, &acme, why).await {
                    Ok(_) => {
                        failures = 0;
                        match due(&keeper.identity, &acme.name) {
                            Renewal::At(at) => until(at),
                            // Issued, yet not what the rule wants (another
                            // name?): do not hammer the CA over it.
                            Renewal::Now(_) => retry_in(1),
                        }
                    }
                    Err(_) => {
                        failures += 1;
                        retry_in(failures)
                    }
                },
            }),
        };
        let sleep = async {
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = site.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = sleep => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// How long to sleep before `at`, looking again at least hourly.
fn until(at: SystemTime) -> Duration {
    at.duration_since(SystemTime::now())
        .unwrap_or_default()
        .min(LOOK_AGAIN)
}

/// When the certificate served now must give way to one for `name`.
fn due(identity: &Identity, name: &str) -> Renewal {
    match identity.chain().first().map(Issued::read) {
        Some(Ok(issued)) => renewal(&issued, name, SystemTime::now()),
        // Unreadable: replace it, as one not issued for the name.
        _ => Renewal::Now(ferry_acme::Why::OtherName),
    }
}

/// Orders a certificate and puts it in service, returning its expiry; a
/// failure is logged, audited and shown on the dashboard.
async fn order(
    services: &Services,
    keeper: &Keeper,
    acme: &AcmeSettings,
    why: ferry_acme::Why,
) -> Result<String, String> {
    log::info!(
        "ordering a certificate for {} from {} ({why:?})",
        acme.name,
        acme.directory
    );
    let request = ferry_acme::Request {
        name: &acme.name,
        directory: &acme.directory,
        contact: acme.contact.as_deref(),
        roots: keeper.roots.as_deref(),
        key: keeper.identity.key(),
    };
    let account = ferry_acme::Account {
        file: crate::identity::acme_account(&keeper.data),
    };
    let outcome = match ferry_acme::obtain(&request, &account, keeper.identity.challenges()).await {
        Ok(chain) => install(keeper, &chain).await,
        Err(e) => Err(e.to_string()),
    };
    let line = match &outcome {
        Ok(until) => {
            log::info!("serving a certificate for {} until {until}", acme.name);
            keeper.status.set(None);
            Actor::appliance()
                .line(AuditAction::CertificateIssued, acme.name.clone())
                .detail(format!("from {}, valid until {until}", acme.directory))
        }
        Err(why) => {
            log::error!("no certificate for {}: {why}", acme.name);
            keeper.status.set(Some(format!(
                "no certificate from the ACME CA for {}: {why}",
                acme.name
            )));
            Actor::appliance()
                .line(AuditAction::CertificateRefused, acme.name.clone())
                .detail(why.clone())
        }
    };
    services.audit.note(line).await;
    outcome
}

/// Serves the issued chain from now on and keeps it for the next start;
/// returns its expiry in words.
async fn install(keeper: &Keeper, chain_pem: &str) -> Result<String, String> {
    // Swapped in first: `renew` checks the chain is for the appliance's
    // key, so a wrong chain is never written over the good one.
    keeper
        .identity
        .renew(chain_pem.as_bytes())
        .map_err(|e| format!("the CA's certificate is not usable: {e}"))?;
    // Served from now on whatever happens next; not keeping it for the
    // next start is logged, not a failed order.
    if let Err(e) = keeper
        .certificates
        .keep_chain(&keeper.identity, chain_pem)
        .await
    {
        log::error!("the CA's certificate is in use but not kept for the next start: {e:#}");
    }
    let until = keeper
        .identity
        .chain()
        .first()
        .and_then(|c| Issued::read(c).ok())
        .map(|i| {
            jiff::Timestamp::try_from(i.not_after).map_or_else(|_| "?".into(), |t| t.to_string())
        })
        .unwrap_or_default();
    Ok(until)
}
