//! The running appliance: state shared by the control plane, the data
//! plane and the background tasks, and the start-up sequence.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ferry_engine::claims::Claims;
use ferry_engine::tls::{Fingerprint, Identity};
use ferry_engine::transport::{Tuning, server_config};
use ferry_engine::{Progress, StopSignal};
use ferry_portguard::client::PortguardClient;
use ferry_portguard::leases::LeaseTable;
use ferry_proto::ErrorCode;
use ferry_store::{JobId, Role, Store, UserId};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, FirewallMode};
use crate::dataplane::{DataPlane, Firewall};
use crate::deliveries::Hub;
use crate::nat::SourceWatch;
use crate::sessions::Sessions;
use crate::site::Site;
use crate::{http, identity};

/// A transfer in progress, for the dashboard and for stopping it.
#[derive(Debug, Clone)]
pub struct Live {
    /// Priority changes for the session (download: the appliance sends;
    /// upload: the appliance asks the sender).
    pub priorities:
        Option<tokio::sync::mpsc::UnboundedSender<(ferry_proto::SharePath, ferry_proto::Priority)>>,
    pub session: u64,
    pub job: JobId,
    pub user: UserId,
    pub client: SocketAddr,
    pub port: u16,
    pub progress: Arc<Progress>,
    pub stop: StopSignal,
    pub started: Instant,
    /// The session's pace, what its client asked for, and the way to tell
    /// the client of a change.
    pub pace: ferry_engine::congestion::PaceHandle,
    pub request: ferry_engine::handshake::PaceRequest,
    pub conn: quinn::Connection,
    pub frames: tokio::sync::mpsc::WeakUnboundedSender<ferry_proto::Frame>,
}

/// Everything the daemon's tasks share.
pub struct App {
    pub config: Config,
    pub store: Arc<Store>,
    pub identity: Arc<Identity>,
    pub fingerprint: Fingerprint,
    pub sessions: Sessions,
    pub dataplane: Arc<DataPlane>,
    pub claims: Arc<Claims>,
    pub tuning: Tuning,
    pub sources: SourceWatch,
    pub hub: Hub,
    live: Mutex<HashMap<u64, Live>>,
    /// What admins change at run time; read through [`App::site`].
    site: std::sync::RwLock<Site>,
    /// A certificate installed from the web admin, in use after a restart.
    pending_certificate: Mutex<Option<String>>,
    /// Wakes the mail sender when a message is queued.
    pub mail_queued: tokio::sync::Notify,
    /// Where the control plane really listens (the configured port may
    /// be 0: any).
    pub control: SocketAddr,
    /// Whether our log lines go to the systemd journal (and so can be read
    /// back for admins).
    pub journal: bool,
    /// Each API key's request budget.
    pub key_limits: crate::http::auth::KeyLimits,
    pub shutdown: CancellationToken,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("listen", &self.config.listen)
            .finish_non_exhaustive()
    }
}

impl App {
    pub fn live(&self) -> MutexGuard<'_, HashMap<u64, Live>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The site settings in force now.
    pub fn site(&self) -> Site {
        self.site.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keeps new site settings and applies them: new sessions take them at
    /// once, and running ones are re-paced.
    pub fn set_site(&self, site: Site) -> ferry_store::Result<()> {
        site.save(&self.store, &Site::from_config(&self.config))?;
        *self.site.write().unwrap_or_else(|e| e.into_inner()) = site;
        // The mailer picks up new SMTP settings.
        self.mail_queued.notify_one();
        let jobs: Vec<JobId> = self.live().values().map(|l| l.job).collect();
        for job in jobs {
            if let Ok(job) = self.store.job(job) {
                crate::transfer::repace(self, &job);
            }
        }
        Ok(())
    }

    /// What an admin should fix, in words.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if !self.dataplane.firewall_on() {
            w.push(
                "the per-session firewall is off: while a session is open, any address can reach its UDP port \
                 (run ferry-portguard and --firewall nft)"
                    .to_owned(),
            );
        }
        if let Some(nat) = self.sources.warning() {
            w.push(nat);
        }
        if let Some(fp) = self
            .pending_certificate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            w.push(format!(
                "a new certificate (SHA-256 {fp}) is installed but not yet in use: restart ferryd; \
                 clients then log in again to accept its fingerprint"
            ));
        }
        w
    }

    /// Notes a certificate that waits for the next start.
    pub fn set_pending_certificate(&self, fingerprint: String) {
        *self
            .pending_certificate
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(fingerprint);
    }

    /// The address clients are told to send UDP to: the configured public
    /// address, else the host the client used to reach us, else our own.
    pub fn public_host(&self, host_header: Option<&str>) -> String {
        if let Some(p) = self.site().public_address {
            return p;
        }
        if let Some(h) = host_header.and_then(host_of) {
            return h;
        }
        self.config.listen.ip().to_string()
    }
}

/// The host part of a `Host` header (`name`, `name:port`, `[v6]:port`).
fn host_of(header: &str) -> Option<String> {
    let h = header.trim();
    if h.is_empty() {
        return None;
    }
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split_once(']').map(|(ip, _)| ip.to_owned());
    }
    Some(h.rsplit_once(':').map_or(h, |(host, _)| host).to_owned())
}

/// Name of the first administrator, made on first start.
pub const FIRST_ADMIN: &str = "admin@localhost";

/// Opens (creating if needed) the data folder and the database.
pub fn open_store(config: &Config) -> Result<Store> {
    create_private_dir(&config.data)?;
    Store::open(&config.data.join("ferry.db"))
        .with_context(|| format!("opening the database in {}", config.data.display()))
}

fn create_private_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating the data folder {}", dir.display()))?;
    }
    Ok(())
}

/// Certificate names: loopback, the listen address and the public address.
pub fn certificate_names(config: &Config) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let ip = config.listen.ip();
    if !ip.is_unspecified() && !ip.is_loopback() {
        names.push(ip.to_string());
    }
    if let Some(p) = &config.public_address {
        names.push(p.clone());
    }
    names
}

/// A one-time password people can read off a console: 4 groups of 5 from
/// an alphabet without look-alikes (about 100 bits).
pub fn one_time_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let groups: Vec<String> = (0..4)
        .map(|_| {
            (0..5)
                .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
                .collect()
        })
        .collect();
    groups.join("-")
}

/// Runs the appliance until SIGINT or SIGTERM; `journal` says whether
/// logging goes to the systemd journal.
pub async fn run(config: Config, journal: bool) -> Result<()> {
    let store = Arc::new(open_store(&config)?);
    let interrupted = store.fail_interrupted_jobs("the appliance restarted during the transfer")?;
    if interrupted > 0 {
        log::warn!("{interrupted} transfers were cut by a restart; clients resume them");
    }
    let identity = Arc::new(identity::load_or_create(
        &config.data,
        &certificate_names(&config),
    )?);
    let fingerprint = identity.fingerprint();
    let firewall = match config.firewall {
        FirewallMode::Off => {
            log::warn!(
                "FIREWALL OFF: any address can reach a leased data port while a session is open. \
                 Run ferry-portguard and use --firewall nft on an appliance."
            );
            Firewall::Off(Mutex::new(LeaseTable::new(config.ports)))
        }
        FirewallMode::Nft => {
            let pg = PortguardClient::new(&config.portguard);
            pg.list().await.map_err(|e| {
                anyhow::anyhow!(
                    "{e}. Start ferry-portguard (the privileged firewall helper), or run a development \
                     appliance with --firewall off"
                )
            })?;
            Firewall::Nft(pg)
        }
    };
    let tuning = Tuning {
        max_window: config.transfer.max_window_mib << 20,
        ..Tuning::default()
    };
    let quic = server_config(&identity, &tuning)?;
    let dataplane = DataPlane::new(
        config.listen.ip(),
        config.ports,
        quic,
        tuning.clone(),
        firewall,
        Duration::from_secs(config.transfer.lease_ttl_secs),
        store.clone(),
    );
    let reclaimed = dataplane.reclaim().await?;
    if reclaimed > 0 {
        log::info!("gave back {reclaimed} port leases left by the previous run");
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the control plane to {}", config.listen))?;
    let local = listener.local_addr()?;
    let site = Site::load(&config, &store)?;
    // Made only now that nothing above can fail, so a failed start never
    // leaves an admin whose password nobody saw.
    let first_password = first_admin(&config, &store)?;
    let key_limits = crate::http::auth::KeyLimits::new(config.api.requests_per_minute);
    let app = Arc::new(App {
        site: std::sync::RwLock::new(site),
        pending_certificate: Mutex::default(),
        mail_queued: tokio::sync::Notify::new(),
        control: local,
        journal,
        key_limits,
        sessions: Sessions::new(Duration::from_secs(config.transfer.token_ttl_secs)),
        config,
        store,
        identity,
        fingerprint,
        dataplane,
        claims: Claims::new(),
        tuning,
        sources: SourceWatch::default(),
        hub: Hub::default(),
        live: Mutex::default(),
        shutdown: CancellationToken::new(),
    });
    banner(&app, local, first_password.as_deref())?;
    tokio::spawn(sweeper(app.clone()));
    tokio::spawn(crate::service::watchdog(app.clone()));
    tokio::spawn(crate::deliveries::janitor(app.clone()));
    if let Some(smtp) = &app.site().smtp
        && let Err(e) = crate::mail::smtp_config(smtp)
    {
        // Not fatal: the web admin, which can fix it, must come up.
        log::error!("email is held back until the SMTP settings are fixed: {e:#}");
    }
    tokio::spawn(crate::mail::run(app.clone()));
    let server = tokio::spawn(http::serve(app.clone(), listener));
    crate::service::ready(&format!("serving on https://{local}/"));
    wait_for_signal().await;
    crate::service::stopping();
    log::info!("shutting down: stopping transfers so that they can resume");
    app.shutdown.cancel();
    let live: Vec<Live> = app.live().values().cloned().collect();
    for l in &live {
        l.stop.stop(
            ErrorCode::Internal,
            "the appliance is restarting; the transfer resumes when it is back",
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.live().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.abort();
    Ok(())
}

/// The first administrator's one-time password, when someone must be
/// shown one: on the very first start; and, on an appliance whose console
/// shows it (`console`), at every start until it has been changed, with a
/// new one each time, since the console file of an earlier start is gone
/// with its runtime folder and nobody may have read it.
fn first_admin(config: &Config, store: &Store) -> Result<Option<String>> {
    if store.count_users()? == 0 {
        let password = one_time_password();
        let admin =
            store.create_user(FIRST_ADMIN, "Administrator", Role::Admin, Some(&password))?;
        store.set_must_change_password(admin.id, true)?;
        return Ok(Some(password));
    }
    if config.console.is_some()
        && let Some(admin) = store.user_by_email(FIRST_ADMIN)?
        && admin.must_change_password
    {
        let password = one_time_password();
        store.set_password(admin.id, &password)?;
        store.set_must_change_password(admin.id, true)?;
        return Ok(Some(password));
    }
    Ok(None)
}

fn banner(app: &App, local: SocketAddr, first_password: Option<&str>) -> Result<()> {
    // These lines go to stdout, once: scripts read them. With a console
    // file (the appliance image), the one-time password goes only there, so
    // that it is shown once on the console and never kept in the journal.
    let mut first_password = first_password;
    if let Some(path) = &app.config.console {
        crate::service::write_console(
            path,
            &format!("https://{local}/"),
            &app.fingerprint.to_string(),
            first_password,
        )
        .with_context(|| format!("writing the console banner {}", path.display()))?;
        if first_password.take().is_some() {
            println!(
                "ferryd first start: the one-time password of {FIRST_ADMIN} is in {} for the console",
                path.display()
            );
        }
    }
    println!("ferryd listening on https://{local}/");
    println!("ferryd certificate SHA-256 {}", app.fingerprint);
    println!(
        "ferryd data sessions on UDP {} (firewall {})",
        app.config.ports,
        match app.config.firewall {
            FirewallMode::Nft => "nft",
            FirewallMode::Off => "OFF",
        }
    );
    if let Some(p) = first_password {
        println!("ferryd first start: log in as {FIRST_ADMIN} with the one-time password {p}");
        println!("ferryd (it must be changed at first login and is not shown again)");
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Expires unused session tokens, which gives their ports back.
async fn sweeper(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = app.shutdown.cancelled() => return,
        }
        let expired = app.sessions.sweep();
        if expired > 0 {
            log::info!("{expired} session tokens expired unused");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_forms() {
        assert_eq!(
            host_of("ferry.example.com:8443").as_deref(),
            Some("ferry.example.com")
        );
        assert_eq!(
            host_of("ferry.example.com").as_deref(),
            Some("ferry.example.com")
        );
        assert_eq!(host_of("[2001:db8::1]:443").as_deref(), Some("2001:db8::1"));
        assert_eq!(host_of(""), None);
    }

    #[test]
    fn one_time_passwords_are_readable_and_differ() {
        let a = one_time_password();
        assert_eq!(a.len(), 23);
        assert!(!a.contains(['0', 'o', '1', 'l', 'i']));
        assert_ne!(a, one_time_password());
    }
}
