//! `ferry-portguard`: the privileged firewall helper (run as root or with
//! CAP_NET_ADMIN), and `ferry-portguard ctl` to look at it.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use ferry_portguard::PortRange;
use ferry_portguard::client::PortguardClient;
use ferry_portguard::nft::Nft;
use ferry_portguard::server::{self, Config};

#[derive(Debug, Parser)]
#[command(
    name = "ferry-portguard",
    version,
    about = "Opens Ferry's UDP ports per session in nftables"
)]
struct Cli {
    /// Unix socket ferryd talks to.
    #[arg(long, default_value = "/run/ferry/portguard.sock")]
    socket: PathBuf,
    /// UDP range to guard, FIRST-LAST.
    #[arg(long, default_value = "45190-45210", value_parser = parse_range)]
    ports: PortRange,
    /// The uid of ferryd, the only one served.
    #[arg(long, conflicts_with = "allow_user")]
    allow_uid: Option<u32>,
    /// The user ferryd runs as, the only one served (instead of --allow-uid).
    #[arg(long)]
    allow_user: Option<String>,
    /// Permissions of the socket file, octal.
    #[arg(long, default_value = "660", value_parser = parse_mode)]
    socket_mode: u32,
    /// The nft binary.
    #[arg(long, default_value = "nft")]
    nft: PathBuf,
    /// Longest lease one request may ask for, in seconds.
    #[arg(long, default_value_t = 600)]
    max_ttl: u64,
    #[command(subcommand)]
    command: Option<Ctl>,
}

#[derive(Debug, Subcommand)]
enum Ctl {
    /// Talk to a running portguard (as ferryd would).
    Ctl {
        #[command(subcommand)]
        request: CtlRequest,
    },
}

#[derive(Debug, Subcommand)]
enum CtlRequest {
    /// List live leases.
    List,
    /// Lease a port to an address.
    Lease {
        ip: IpAddr,
        #[arg(long, default_value_t = 30)]
        ttl: u64,
    },
    /// Release a lease.
    Release { id: u64 },
}

fn parse_range(s: &str) -> Result<PortRange, String> {
    s.parse()
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8).map_err(|_| format!("{s:?} is not an octal mode"))
}

fn main() {
    init_logging();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferry-portguard: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("ferry-portguard: {e:#}");
        std::process::exit(1);
    }
}

/// The journal when systemd started us, standard error otherwise.
fn init_logging() {
    if systemd_journal_logger::connected_to_journal()
        && let Ok(journal) = systemd_journal_logger::JournalLog::new()
        && journal.install().is_ok()
    {
        log::set_max_level(log::LevelFilter::Info);
        return;
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
}

async fn run(cli: Cli) -> Result<()> {
    if let Some(Ctl::Ctl { request }) = cli.command {
        let client = PortguardClient::new(&cli.socket);
        match request {
            CtlRequest::List => {
                for l in client.list().await? {
                    println!("{}\t{}\t{}\t{}s", l.id, l.ip, l.port, l.expires_in_secs);
                }
            }
            CtlRequest::Lease { ip, ttl } => {
                let l = client.lease(ip, Duration::from_secs(ttl), &[]).await?;
                println!("{}\t{}\t{}\t{}s", l.id, l.ip, l.port, l.expires_in_secs);
            }
            CtlRequest::Release { id } => client.release(id).await?,
        }
        return Ok(());
    }
    let allow_uid = match (cli.allow_uid, &cli.allow_user) {
        (Some(uid), _) => uid,
        (None, Some(name)) => match nix::unistd::User::from_name(name)? {
            Some(user) => user.uid.as_raw(),
            None => bail!("--allow-user {name}: there is no such user"),
        },
        (None, None) => {
            bail!("--allow-uid or --allow-user is required: ferryd's user, the only one served")
        }
    };
    let config = Config {
        socket: cli.socket,
        range: cli.ports,
        allow_uid,
        socket_mode: cli.socket_mode,
        nft: Nft { binary: cli.nft },
        max_ttl: Duration::from_secs(cli.max_ttl),
    };
    let shutdown = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    // Under systemd (Type=notify), ferryd is started once the socket is up.
    let ready = || {
        if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
            log::warn!("cannot tell systemd we are ready: {e}");
        }
    };
    server::run(config, ready, shutdown).await
}
