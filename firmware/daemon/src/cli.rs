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
    /// Control plane and web admin address [default: 127.0.0.1:8443].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Name or address clients send UDP to (the edge router's public name).
    #[arg(long)]
    pub public_address: Option<String>,
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
}

fn parse_ports(s: &str) -> Result<PortRange, String> {
    s.parse()
}

impl RunArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            data: self.data.clone(),
            listen: self.listen,
            public_address: self.public_address.clone(),
            ports: self.ports,
            firewall: self.firewall,
            portguard: self.portguard.clone(),
            smtp: self.smtp.clone(),
            mail_from: self.mail_from.clone(),
            console: self.console.clone(),
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
pub enum UserCommand {
    /// Add a user.
    Add {
        email: String,
        #[arg(long, value_parser = ["admin", "employee", "collaborator"])]
        role: String,
        #[arg(long, default_value = "")]
        name: String,
        /// Read the password from standard input (otherwise the user is
        /// invited and sets it later).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Set a user's password, read from standard input.
    Passwd { email: String },
    /// Disable a user (their keys stop working).
    Disable { email: String },
    /// Enable a disabled user.
    Enable { email: String },
}

#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Create a key; prints only the key.
    Create {
        email: String,
        #[arg(long, default_value = "created with ferryd admin")]
        name: String,
    },
    /// List a user's keys.
    List { email: String },
    /// Revoke a key by its id.
    Revoke { email: String, id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum ShareCommand {
    /// Add a root share (NAME PATH) or a share inside one (NAME --in ROOT --folder REL).
    Add {
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
    /// Grant a user access to a share.
    Grant {
        name: String,
        email: String,
        #[arg(long)]
        read: bool,
        #[arg(long)]
        write: bool,
    },
    /// Remove a share's record (its files stay).
    Remove { name: String },
}
