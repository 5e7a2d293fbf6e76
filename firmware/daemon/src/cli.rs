//! Command-line flags of `ferryd`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{FirewallMode, Overrides, PortRange};

#[derive(Debug, Parser)]
#[command(
    name = "ferryd",
    version,
    about = "The Ferry appliance: accelerated, encrypted delivery of review sessions"
)]
pub struct Cli {
    #[command(flatten)]
    pub run: RunArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    /// Configuration file (TOML); flags override it.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Data folder: database, certificate, state [default: ./ferry-data].
    #[arg(long, global = true)]
    pub data: Option<PathBuf>,
    /// The PostgreSQL database this node shares with the appliance's other
    /// nodes: postgres://USER@HOST:PORT/DB [default: SQLite in the data
    /// folder].
    #[arg(long, global = true, value_name = "URL")]
    pub database: Option<String>,
    /// The CA (PEM) that signed the PostgreSQL server's certificate, for a
    /// URL with sslmode=require [default: the system's CAs].
    #[arg(long, global = true, value_name = "FILE")]
    pub database_ca: Option<PathBuf>,
    /// Control plane and web admin address [default: 127.0.0.1:8443].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Name or address clients send UDP to (the edge router's public name).
    #[arg(long)]
    pub public_address: Option<String>,
    /// This ferryd's name among the appliance's nodes [default: the host's
    /// name].
    #[arg(long)]
    pub node_name: Option<String>,
    /// UDP ports for data sessions, FIRST-LAST [default: 45190-45210].
    #[arg(long, value_parser = parse_ports)]
    pub ports: Option<PortRange>,
    /// Per-session firewall [default: nft when portguard's socket exists].
    #[arg(long, value_enum)]
    pub firewall: Option<FirewallMode>,
    /// Socket of ferry-portguard [default: /run/ferry/portguard.sock].
    #[arg(long)]
    pub portguard: Option<PathBuf>,
    /// SMTP server for notifications: smtp://host:port (plain or
    /// STARTTLS with ?tls=required) or smtps://host:port (implicit TLS).
    #[arg(long)]
    pub smtp: Option<String>,
    /// From address of notifications.
    #[arg(long)]
    pub mail_from: Option<String>,
    /// Write the start-up banner (address, fingerprint, the first start's
    /// one-time password) to this file for a console to show.
    #[arg(long)]
    pub console: Option<PathBuf>,
    /// Also serve Prometheus metrics at http://ADDR/metrics, without TLS
    /// or a token: for a management network only.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
}

fn parse_ports(s: &str) -> Result<PortRange, String> {
    s.parse()
}

/// Roles as the command line writes them.
fn parse_role(s: &str) -> Result<ferry_domain::Role, String> {
    s.parse()
        .map_err(|e: ferry_domain::UnknownValue| e.to_string())
}

impl RunArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            data: self.data.clone(),
            database: self.database.clone(),
            database_ca: self.database_ca.clone(),
            listen: self.listen,
            public_address: self.public_address.clone(),
            node_name: self.node_name.clone(),
            ports: self.ports,
            firewall: self.firewall,
            portguard: self.portguard.clone(),
            smtp: self.smtp.clone(),
            mail_from: self.mail_from.clone(),
            console: self.console.clone(),
            metrics_listen: self.metrics_listen,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Administer the appliance's database directly (users, keys, shares).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// API keys.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// Root shares and shares.
    Share {
        #[command(subcommand)]
        command: ShareCommand,
    },
    /// The appliance's nodes: each ferryd on this database.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// The database itself.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Print the certificate's SHA-256 fingerprint (hex).
    Fingerprint,
    /// Print the audit log, newest first.
    Audit {
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Only actions starting with this, e.g. `lease.`
        #[arg(long)]
        action: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy this appliance's whole state (users, keys, shares, deliveries,
    /// jobs, the audit log, the outbox) into a new, empty database: the
    /// PostgreSQL its nodes will share. Stop ferryd first; the copy is one
    /// transaction, so a failed copy leaves the target empty.
    Copy {
        /// postgres://USER@HOST:PORT/DB (or a new SQLite file's path).
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes: name, health (up, draining, silent), sessions at the
    /// last heartbeat, seconds since it, address, version, and the tasks
    /// that run on one node at a time which it runs (or ran last).
    List,
    /// Drain a node: its running transfers finish, and it grants no new
    /// ones, so clients go to another address; it stays drained across
    /// restarts until `node resume`.
    Drain {
        /// The node's name, as `node list` shows it.
        name: String,
    },
    /// Let a drained node grant sessions again.
    Resume {
        /// The node's name.
        name: String,
    },
    /// Forget a node taken out of the appliance for good.
    Forget {
        /// The node's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user: with --password-stdin they are active; with --service
    /// they are a service account (API keys only, for automation);
    /// otherwise they are invited and choose a password through a link.
    Add {
        /// Their email address, which is also their login.
        email: String,
        /// admin (runs the appliance), employee (sends, sees their own
        /// deliveries and granted shares) or collaborator (receives).
        #[arg(long, value_parser = parse_role)]
        role: ferry_domain::Role,
        /// Their name, as people see it.
        #[arg(long, default_value = "")]
        name: String,
        /// Read the password from standard input (at least 12 characters,
        /// not a common one).
        #[arg(long)]
        password_stdin: bool,
        /// A service account: no password and no web login, only API keys
        /// (ferryd admin apikey create).
        #[arg(long, conflicts_with = "password_stdin")]
        service: bool,
    },
    /// List users: email, role, status, kind and name.
    List,
    /// Set a user's password, read from standard input; their web sessions
    /// and the keys their logins made end.
    Passwd {
        /// The user's email address.
        email: String,
    },
    /// Disable a user: their keys stop working, their transfers stop and
    /// their queued jobs are held.
    Disable {
        /// The user's email address.
        email: String,
    },
    /// Enable a disabled user.
    Enable {
        /// The user's email address.
        email: String,
    },
    /// Print a fresh invitation link for someone invited who has not chosen
    /// a password yet (when no email reaches them); earlier links stop
    /// working.
    InviteLink {
        /// The invited user's email address.
        email: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Create a key; prints only the key. Refused for an account that
    /// could not use it (disabled, or invited without a password yet).
    Create {
        /// The email address of the key's owner.
        email: String,
        /// What the key is for (the script or machine that uses it).
        #[arg(long, default_value = "created with ferryd admin")]
        name: String,
    },
    /// List a user's keys.
    List {
        /// The email address of the keys' owner.
        email: String,
    },
    /// Revoke a key by its id; transfers it started stop.
    Revoke {
        /// The email address of the key's owner.
        email: String,
        /// The key's id, as `apikey list` shows it.
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum ShareCommand {
    /// Add a root share (NAME PATH) or a share inside one (NAME --in ROOT --folder REL).
    Add {
        /// The share's name, as `share=NAME/…` writes it.
        name: String,
        /// Absolute folder of a root share.
        path: Option<PathBuf>,
        /// The root share a share lies in.
        #[arg(long = "in", requires = "folder", conflicts_with = "path")]
        root: Option<String>,
        /// The share's folder inside its root share (created if missing).
        #[arg(long, requires = "root")]
        folder: Option<String>,
    },
    /// List shares.
    List,
    /// Grant a user access to a share (both flags off revokes it; a right
    /// taken away takes effect at once).
    Grant {
        /// The share's name.
        name: String,
        /// The email address of the user (add them first with `user add`).
        email: String,
        /// They may receive files of the share (ferry get, deliveries from
        /// it).
        #[arg(long)]
        read: bool,
        /// They may send files into the share (ferry put, ferry send --dest).
        #[arg(long)]
        write: bool,
    },
    /// Remove a share's record (its files stay).
    Remove {
        /// The share's name.
        name: String,
    },
}
