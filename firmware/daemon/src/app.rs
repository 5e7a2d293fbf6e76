//! The running appliance, wired: the store, the services over it, the
//! adapters over them, and the background tasks. Nothing here decides
//! anything; settings changes reach their listeners through the settings'
//! watch channel.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ferry_domain::node::Singleton;
use ferry_engine::claims::Claims;
use ferry_engine::tls::{Fingerprint, Identity};
use ferry_engine::transport::{Tuning, server_config};
use ferry_portguard::client::PortguardClient;
use ferry_portguard::leases::LeaseTable;
use ferry_proto::{ErrorCode, Rate};
use ferry_store::{SqlStore, Store};
use ferryd_core::Services;
use ferryd_core::audit::Audit;
use ferryd_core::certificates::{Certificates, Followed};
use ferryd_core::clock::SystemClock;
use ferryd_core::live::Limits;
use ferryd_core::services::Setup;
use ferryd_core::settings::SecretDirs;
use tokio_util::sync::CancellationToken;

use crate::appliance::Running;
use crate::config::{Config, FirewallMode};
use crate::dataplane::{DataPlane, Firewall, Leasing};
use crate::http::{Api, auth::KeyLimits};
use crate::nat::SourceWatch;
use crate::sessions::Sessions;
use crate::transfer::DataSessions;
use crate::{http, identity};
use ferryd_core::ports::Appliance as _;

/// Name of the first administrator, made on first start.
pub const FIRST_ADMIN: &str = "admin@localhost";

/// Opens (creating if needed) the data folder and the database: the
/// PostgreSQL database the configuration names, or SQLite in the data
/// folder. Connecting blocks, so it runs on the blocking pool.
pub async fn open_store(config: &Config) -> Result<SqlStore> {
    create_private_dir(&config.data)?;
    let url = config.database_url();
    let what = format!("opening the database {}", redact(&url));
    let ca = config.database_ca.clone();
    let store =
        tokio::task::spawn_blocking(move || SqlStore::open_url(&url, ca.as_deref())).await?;
    store.with_context(|| what)
}

/// A database URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
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

/// Folders an admin may point the SMTP password file at from the web admin
/// or the API. A path from ferryd.toml is the operator's choice.
pub fn secret_dirs(config: &Config) -> SecretDirs {
    SecretDirs {
        allowed: vec!["/etc/ferry".into(), config.data.join("secrets")],
    }
}

/// Everything the services are made from, given the control address.
pub fn setup(config: &Config, control: SocketAddr) -> Setup {
    Setup {
        baseline: config.baseline(),
        secrets: secret_dirs(config),
        own_folders: vec![config.data.clone()],
        limits: Limits {
            per_user: config.limits.sessions_per_user,
            total: config.limits.sessions_total,
            memory: config.limits.memory_mib << 20,
            max_window: config.transfer.max_window_mib << 20,
            ..Limits::default()
        },
        control_port: control.port(),
        fallback_host: control.ip().to_string(),
        node: (
            config.node_name.clone(),
            config
                .public_address
                .clone()
                .unwrap_or_else(|| control.to_string()),
        ),
    }
}

/// Runs the appliance until SIGINT or SIGTERM; `journal` says whether
/// logging goes to the systemd journal.
pub async fn run(config: Config, journal: bool) -> Result<()> {
    let store: Arc<dyn Store> = Arc::new(open_store(&config).await?);
    let audit = Audit::new(store.clone());
    let certificates = Certificates::new(store.clone());
    let identity = Arc::new(
        identity::load_or_create(&certificates, &config.data, &certificate_names(&config)).await?,
    );
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
    let tcp_tls = ferry_engine::tcp::acceptor(&identity)?;
    let plane = DataPlane::new(
        config.listen.ip(),
        config.ports,
        quic,
        tuning.clone(),
        firewall,
        Leasing {
            ttl: Duration::from_secs(config.transfer.lease_ttl_secs),
            per_user: config.limits.leases_per_user,
            total: config.limits.leases_total,
        },
        audit.clone(),
    );
    let reclaimed = plane.reclaim().await?;
    if reclaimed > 0 {
        log::info!("gave back {reclaimed} port leases left by the previous run");
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the control plane to {}", config.listen))?;
    let control = listener.local_addr()?;
    let sources = Arc::new(SourceWatch::default());
    let certificate = Arc::new(crate::acme::Status::default());
    let appliance = Arc::new(Running::new(
        identity.clone(),
        certificate.clone(),
        control,
        plane.clone(),
        config.data.clone(),
        sources.clone(),
    ));
    let services = Services::start(
        store,
        audit,
        Arc::new(SystemClock),
        appliance.clone(),
        setup(&config, control),
    )
    .await?;
    let interrupted = services
        .transfers
        .after_restart("the appliance restarted during the transfer")
        .await?;
    if interrupted > 0 {
        log::warn!("{interrupted} transfers were cut by a restart; clients resume them");
    }
    services.watches.follow_config(&config.watches).await?;
    let me = services
        .nodes
        .beat(0)
        .await
        .context("recording this node in the database")?;
    if me.draining {
        log::warn!(
            "node {} is drained: it grants no new sessions until `ferryd admin node resume {}`",
            me.name,
            me.name
        );
    }
    if let Err(e) = crate::mailer::check(&services.settings.current()) {
        // Not fatal: the web admin, which can fix it, must come up.
        log::error!("email is held back until the SMTP settings are fixed: {e}");
    }
    // Made only now that nothing above can fail, so a failed start never
    // leaves an admin whose password nobody saw.
    let first_password = services
        .users
        .first_admin(FIRST_ADMIN, config.console.is_some())
        .await?;
    let shutdown = CancellationToken::new();
    let data = Arc::new(DataSessions {
        services: services.clone(),
        plane,
        tokens: Sessions::new(Duration::from_secs(config.transfer.token_ttl_secs)),
        tuning,
        chunk_size: config.transfer.chunk_size,
        listen: config.listen,
        sources,
        claims: Claims::new(),
        ungreeted: Default::default(),
        lanes: Default::default(),
        tcp_tls,
    });
    let metrics = Arc::new(crate::metrics::Metrics::install(
        config.metrics.token_file.as_deref(),
    )?);
    if let Some(addr) = config.metrics.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics listener to {addr}"))?;
        log::info!("metrics on http://{}/metrics", listener.local_addr()?);
        tokio::spawn(crate::metrics::serve_plain(
            metrics.clone(),
            services.clone(),
            listener,
        ));
    }
    let api = Arc::new(Api {
        services: services.clone(),
        data: data.clone(),
        keys: KeyLimits::new(config.api.requests_per_minute),
        journal,
        metrics,
    });
    banner(&config, control, &identity, first_password.as_deref())?;
    tokio::spawn(sweeper(data.clone(), shutdown.clone()));
    tokio::spawn(crate::service::watchdog(services.clone(), shutdown.clone()));
    tokio::spawn(janitor(
        services.clone(),
        Duration::from_secs(config.deliveries.janitor_secs.max(1)),
        shutdown.clone(),
    ));
    tokio::spawn(repace_on_change(services.clone(), shutdown.clone()));
    tokio::spawn(crate::watching::run(
        services.clone(),
        Duration::from_secs(config.deliveries.watch_rescan_secs.max(1)),
        shutdown.clone(),
    ));
    tokio::spawn(crate::mailer::run(services.clone(), shutdown.clone()));
    tokio::spawn(heartbeat(services.clone(), appliance, shutdown.clone()));
    tokio::spawn(crate::acme::run(
        services.clone(),
        crate::acme::Keeper {
            identity: identity.clone(),
            certificates,
            data: config.data.clone(),
            roots: config.tls.acme_roots.clone(),
            status: certificate,
        },
        shutdown.clone(),
    ));
    let server = tokio::spawn(http::serve(api, identity, listener));
    crate::service::ready(&format!("serving on https://{control}/"));
    wait_for_signal().await;
    crate::service::stopping();
    log::info!("shutting down: stopping transfers so that they can resume");
    shutdown.cancel();
    services.live.stop_where(
        |_| true,
        ErrorCode::Internal,
        "the appliance is restarting; the transfer resumes when it is back",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !services.live.list().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.abort();
    Ok(())
}

/// Writes this node's heartbeat every [`ferry_domain::node::HEARTBEAT`]
/// seconds, with the sessions it carries, and follows the certificate
/// kept in the database (a chain another node renewed, a pair an admin
/// installed on another node), until shutdown.
async fn heartbeat(services: Services, appliance: Arc<Running>, shutdown: CancellationToken) {
    let every = Duration::from_secs(ferry_domain::node::HEARTBEAT as u64);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        if let Err(e) = services.nodes.beat(services.live.count()).await {
            log::warn!(
                "node {}: heartbeat not recorded: {e}",
                services.nodes.name()
            );
        }
        match services.certificates.follow(&appliance.identity).await {
            Ok(Followed::Same) => {}
            Ok(Followed::Renewed) => log::info!("serving the chain another node renewed"),
            Ok(Followed::Waiting(fingerprint)) => appliance.will_serve(&fingerprint),
            Err(e) => log::warn!("the certificate kept in the database was not read: {e:#}"),
        }
    }
}

fn banner(
    config: &Config,
    control: SocketAddr,
    identity: &Identity,
    first_password: Option<&str>,
) -> Result<()> {
    let fingerprint = &identity.fingerprint().to_string();
    let certificate = identity
        .chain()
        .first()
        .map(|c| Fingerprint::of(c).colon_pairs())
        .unwrap_or_default();
    // These lines go to stdout, once: scripts read them. With a console
    // file (the appliance image), the one-time password goes only there, so
    // that it is shown once on the console and never kept in the journal.
    let mut first_password = first_password;
    if let Some(path) = &config.console {
        crate::service::write_console(
            path,
            &format!("https://{control}/"),
            fingerprint,
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
    // Batching is most of what a UDP byte costs in system calls; an
    // appliance without it carries far less per core (docs/THROUGHPUT.md).
    match ferry_engine::transport::udp_offload(control) {
        Ok(o) => log::info!("UDP offload on this kernel: {o}"),
        Err(e) => log::warn!("could not ask the kernel about UDP offload: {e}"),
    }
    println!("ferryd listening on https://{control}/");
    println!("ferryd node {}", config.node_name);
    println!("ferryd database {}", redact(&config.database_url()));
    println!("ferryd key SHA-256 {fingerprint}");
    println!("ferryd (the pin that `ferry login` shows; it outlives certificate renewals)");
    println!("ferryd certificate SHA-256 {certificate} (as a browser shows it)");
    println!(
        "ferryd data sessions on UDP {} (firewall {})",
        config.ports,
        match config.firewall {
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
            if let Err(e) = tokio::signal::ctrl_c().await {
                log::error!("cannot watch SIGINT either: {e}");
            }
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Expires unused session tokens, which gives their ports back.
async fn sweeper(data: Arc<DataSessions>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let expired = data.tokens.sweep();
        if expired > 0 {
            log::info!("{expired} session tokens expired unused");
        }
    }
}

/// Retires expired deliveries and sends reminders that fell due.
async fn janitor(services: Services, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        // One node does this; the others stand by to take over.
        if !services.nodes.hold(Singleton::Janitor).await {
            continue;
        }
        if let Err(e) = services.notifier.reminders().await {
            log::error!("sending reminders: {e}");
        }
        if let Err(e) = services.deliveries.expire_due().await {
            log::error!("retiring expired deliveries: {e}");
        }
    }
}

/// Re-paces running sessions when the site's pace changes, and holds all
/// sessions together to the cap the bandwidth schedule (or the site rate)
/// sets, re-pacing them at each of the schedule's boundaries.
async fn repace_on_change(services: Services, shutdown: CancellationToken) {
    let mut site = services.settings.subscribe();
    let mut pace = site.borrow_and_update().pace;
    loop {
        let cap = {
            let now = site.borrow();
            crate::bandwidth::cap_now(&now.schedule, now.site_rate, jiff::ZonedDateTime::now())
        };
        if cap != services.live.site_cap() {
            log::info!("bandwidth: {}", cap.words());
        }
        ferryd_core::meters::site_cap(cap.rate.map(Rate::bits_per_sec));
        // Wake at the next boundary, and at least each minute (a clock or
        // time-zone change moves boundaries).
        let wait = cap.until.map_or(Duration::from_secs(60), |u| {
            let ms = jiff::Timestamp::from_second(u)
                .map_or(0, |u| u.duration_since(jiff::Timestamp::now()).as_millis());
            Duration::from_millis(ms.clamp(0, 60_000) as u64)
        });
        services.live.set_site_cap(cap);
        tokio::select! {
            r = site.changed() => if r.is_err() { return },
            () = tokio::time::sleep(wait) => continue,
            () = shutdown.cancelled() => return,
        }
        let now = site.borrow_and_update().pace;
        if now == pace {
            continue;
        }
        pace = now;
        for s in services.live.list() {
            // The job's own cap still applies beneath the site's.
            let cap = match services.transfers.job_cap(s.job).await {
                Ok(cap) => cap.and_then(|bps| Rate::from_bits_per_sec(bps).ok()),
                Err(e) => {
                    log::error!("cannot read the cap of job {}: {e}", s.job);
                    continue;
                }
            };
            services.live.repace_job(s.job, cap, pace);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn a_database_url_is_shown_without_its_password() {
        assert_eq!(
            redact("postgres://ferry:s3cret@db.example:5432/ferry"),
            "postgres://ferry:***@db.example:5432/ferry"
        );
        assert_eq!(
            redact("postgres://ferry@db.example/ferry"),
            "postgres://ferry@db.example/ferry"
        );
        assert_eq!(redact("/var/lib/ferry/ferry.db"), "/var/lib/ferry/ferry.db");
    }
}
