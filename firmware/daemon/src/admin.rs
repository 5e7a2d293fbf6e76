//! `ferryd admin`: administration of the appliance from its own console,
//! for first set-up, scripts and recovery. It works whether or not the
//! daemon is running (SQLite in WAL mode takes both, and PostgreSQL any
//! number of nodes and consoles), and goes through the
//! same services, rules and password policy as the web admin and the API:
//! its caller is the operator ([`By::Operator`]), who holds every right.

use std::io::Read as _;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use ferry_domain::UserStatus;
use ferry_domain::rules::Access;
use ferry_engine::tls::Fingerprint;
use ferry_store::{ApiKeyId, Database, Store};
use ferryd_core::Services;
use ferryd_core::audit::{Actor, Audit};
use ferryd_core::authority::By;
use ferryd_core::certificates::Certificates;
use ferryd_core::clock::SystemClock;
use ferryd_core::ports::{Appliance, ApplianceFacts, OpenPort};

use crate::app::{certificate_names, open_store, setup};
use crate::cli::{
    AdminCommand, ApikeyCommand, NodeCommand, ShareCommand, StoreCommand, UserCommand,
};
use crate::config::{Config, FirewallMode};
use crate::identity;

/// The appliance as the console sees it: its configuration, no running
/// data plane.
struct AtRest {
    fingerprint: Fingerprint,
    config: Config,
}

impl Appliance for AtRest {
    fn facts(&self) -> ApplianceFacts {
        ApplianceFacts {
            fingerprint: self.fingerprint.to_string(),
            certificate: String::new(),
            control: self.config.listen,
            ports: self.config.ports.to_string(),
            firewall_on: self.config.firewall == FirewallMode::Nft,
            version: env!("CARGO_PKG_VERSION"),
        }
    }
    fn open_ports(&self) -> Vec<OpenPort> {
        Vec::new()
    }
    fn bound_ports(&self) -> Vec<u16> {
        Vec::new()
    }
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
    fn will_serve(&self, _: &str) {}
}

pub fn run(config: &Config, command: AdminCommand) -> Result<()> {
    if let AdminCommand::Store {
        command: StoreCommand::Copy { to },
    } = &command
    {
        return copy_store(config, to);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store: Arc<dyn Store> = Arc::new(open_store(config).await?);
        // The pin every node serves; asking for it on a new database
        // makes it, so that it can be handed out before the nodes start.
        let certificates = Certificates::new(store.clone());
        let id = identity::load_or_create(&certificates, &config.data, &certificate_names(config))
            .await?;
        if let AdminCommand::Fingerprint = command {
            println!("{}", id.fingerprint());
            return Ok(());
        }
        let appliance = Arc::new(AtRest {
            fingerprint: id.fingerprint(),
            config: config.clone(),
        });
        let services = Services::start(
            store.clone(),
            Audit::new(store),
            Arc::new(SystemClock),
            appliance,
            setup(config, config.listen),
        )
        .await?;
        command_on(&services, command).await
    })
}

async fn command_on(s: &Services, command: AdminCommand) -> Result<()> {
    match command {
        AdminCommand::User { command } => user(s, command).await,
        AdminCommand::Apikey { command } => apikey(s, command).await,
        AdminCommand::Share { command } => share(s, command).await,
        AdminCommand::Node { command } => node(s, command).await,
        AdminCommand::Fingerprint | AdminCommand::Store { .. } => Ok(()),
        AdminCommand::Audit { limit, action } => {
            for e in s.audit.list(limit, None, action.as_deref()).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    e.at,
                    e.user_email.as_deref().unwrap_or("-"),
                    e.address.as_deref().unwrap_or("-"),
                    e.action,
                    e.subject,
                    e.detail
                );
            }
            Ok(())
        }
    }
}

async fn node(s: &Services, command: NodeCommand) -> Result<()> {
    let me = Actor::appliance();
    match command {
        NodeCommand::List => {
            let now = s.clock.now();
            let holders = s.nodes.holders().await?;
            for v in s.nodes.list(By::Operator).await? {
                let n = v.node;
                let plural = if n.sessions == 1 { "" } else { "s" };
                let runs: Vec<&str> = holders
                    .iter()
                    .filter(|(_, node)| *node == n.name)
                    .map(|(task, _)| task.as_str())
                    .collect();
                println!(
                    "{}\t{}\t{} session{plural}\tseen {}s ago\t{}\t{}\truns {}",
                    n.name,
                    v.health,
                    n.sessions,
                    now - n.seen_at,
                    n.address,
                    n.version,
                    if runs.is_empty() {
                        "-".to_owned()
                    } else {
                        runs.join(",")
                    }
                );
            }
        }
        NodeCommand::Drain { name } => {
            s.nodes.set_draining(By::Operator, me, &name, true).await?;
            println!("node {name} is draining: it grants no new sessions");
        }
        NodeCommand::Resume { name } => {
            s.nodes.set_draining(By::Operator, me, &name, false).await?;
            println!("node {name} grants sessions again");
        }
        NodeCommand::Forget { name } => s.nodes.forget(By::Operator, me, &name).await?,
    }
    Ok(())
}

fn read_password() -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading the password from stdin")?;
    let p = s.trim_end_matches(['\n', '\r']).to_owned();
    if p.is_empty() {
        bail!("no password on standard input");
    }
    Ok(p)
}

async fn user(s: &Services, command: UserCommand) -> Result<()> {
    let me = Actor::appliance();
    match command {
        UserCommand::Add {
            email,
            role,
            name,
            password_stdin,
            service,
        } => {
            if service && password_stdin {
                bail!("a service account has no password: it signs in with API keys only");
            }
            let password = password_stdin.then(read_password).transpose()?;
            let u = s
                .users
                .add(&email, &name, role, password.as_deref(), service)
                .await?;
            eprintln!("added {} ({}, {}, {})", u.email, u.role, u.status, u.kind);
            if u.status == UserStatus::Invited {
                eprintln!(
                    "{} is invited: they choose a password through the link `ferryd admin user invite-link {}` prints",
                    u.email, u.email
                );
            }
        }
        UserCommand::List => {
            for u in s.users.list(By::Operator).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    u.email, u.role, u.status, u.kind, u.name
                );
            }
        }
        UserCommand::Passwd { email } => {
            s.users.set_password(&email, &read_password()?).await?;
            eprintln!("password of {email} set; their web sessions and login keys ended");
        }
        UserCommand::Disable { email } => {
            let u = s.users.by_email(&email).await?;
            s.users
                .set_status(By::Operator, me, u.id, UserStatus::Disabled)
                .await?;
            eprintln!("{email} disabled: their sessions stopped and their queued jobs are held");
        }
        UserCommand::Enable { email } => {
            let u = s.users.by_email(&email).await?;
            s.users
                .set_status(By::Operator, me, u.id, UserStatus::Active)
                .await?;
            eprintln!("{email} enabled");
        }
        UserCommand::InviteLink { email } => {
            let link = s.users.invitation_link(By::Operator, me, &email).await?;
            // Only the link on stdout, so scripts can capture it.
            println!("{link}");
            eprintln!("a new invitation link for {email} (earlier links of theirs stop working)");
        }
    }
    Ok(())
}

async fn apikey(s: &Services, command: ApikeyCommand) -> Result<()> {
    let me = Actor::appliance();
    match command {
        ApikeyCommand::Create { email, name } => {
            let (_, key) = s.users.create_key(By::Operator, me, &email, &name).await?;
            // Only the key on stdout, so scripts can capture it.
            println!("{}", key.secret);
        }
        ApikeyCommand::List { email } => {
            let u = s.users.by_email(&email).await?;
            for k in s.users.keys(By::Operator, u.id).await? {
                println!(
                    "{}\t{}…\t{}\t{}",
                    k.id.0,
                    k.prefix,
                    k.name,
                    if k.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
                );
            }
        }
        ApikeyCommand::Revoke { email, id } => {
            let u = s.users.by_email(&email).await?;
            s.users
                .revoke_key(By::Operator, me, u.id, ApiKeyId(id))
                .await?;
            eprintln!("key {id} revoked");
        }
    }
    Ok(())
}

async fn share(s: &Services, command: ShareCommand) -> Result<()> {
    let me = Actor::appliance();
    match command {
        ShareCommand::Add {
            name,
            path,
            root,
            folder,
        } => match (path, root, folder) {
            (Some(path), None, None) => {
                let path = if path.is_absolute() {
                    path
                } else {
                    std::env::current_dir()?.join(path)
                };
                let sh = s
                    .shares
                    .add_root(By::Operator, me, &name, &path.display().to_string())
                    .await?;
                eprintln!("root share {} at {}", sh.name, sh.abs_path.display());
            }
            (None, Some(root), Some(folder)) => {
                let sh = s
                    .shares
                    .add_beneath(By::Operator, me, &name, &root, &folder)
                    .await?;
                eprintln!("share {} at {}", sh.name, sh.abs_path.display());
            }
            _ => bail!(
                "give either NAME PATH (a root share) or NAME --in ROOT --folder REL (a share)"
            ),
        },
        ShareCommand::List => {
            for sh in s.shares.all(By::Operator).await? {
                println!(
                    "{}\t{}\t{}",
                    sh.name,
                    sh.parent_name.as_deref().unwrap_or("(root share)"),
                    sh.abs_path.display()
                );
            }
        }
        ShareCommand::Grant {
            name,
            email,
            read,
            write,
        } => {
            if s.shares.by_name(&name).await?.is_none() {
                return Err(anyhow!("there is no share {name:?}"));
            }
            s.shares
                .grant(By::Operator, me, &name, &email, Access { read, write })
                .await?;
            eprintln!("{email} on {name}: read={read} write={write}");
        }
        ShareCommand::Remove { name } => {
            s.shares.remove(By::Operator, me, &name).await?;
            eprintln!("share {name} removed (its files are untouched)");
        }
    }
    Ok(())
}

/// `ferryd admin store copy --to URL`: this appliance's database (the
/// one `--database` or the data folder names) into a new one.
fn copy_store(config: &Config, to: &str) -> Result<()> {
    let from = Database::open_url(&config.database_url(), config.database_ca.as_deref())
        .context("opening the database to copy")?;
    // The target is the cluster's database-to-be, behind the same CA.
    let target = Database::open_url(to, config.database_ca.as_deref())
        .with_context(|| format!("opening the target database {}", crate::app::redact(to)))?;
    let copied = from.copy_to(&target).context("copying")?;
    for (table, rows) in &copied.tables {
        println!("{table}\t{rows}");
    }
    println!(
        "copied into {}: start each node with --database {}",
        crate::app::redact(to),
        crate::app::redact(to)
    );
    Ok(())
}
