//! The daemon's configuration: a TOML file, overridden by flags, over
//! embedded defaults, so that `ferryd` with nothing at all runs a working
//! appliance on loopback.
//!
//! Unknown keys are errors (a typo must not silently mean "default").

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ferry_domain::settings::{AcmeSettings, LETS_ENCRYPT};
use serde::Deserialize;

/// Default data folder, relative to where ferryd starts.
pub const DEFAULT_DATA: &str = "./ferry-data";
/// Default control-plane address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
/// Default UDP range for data sessions.
pub const DEFAULT_PORTS: PortRange = PortRange {
    first: 45190,
    last: 45210,
};
/// Default place of portguard's socket.
pub const DEFAULT_PORTGUARD: &str = "/run/ferry/portguard.sock";

pub use ferry_portguard::PortRange;

/// Port ranges are written `FIRST-LAST` in the file.
fn port_range<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<PortRange>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| s.parse().map_err(serde::de::Error::custom))
        .transpose()
}

/// Whether the per-session firewall is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FirewallMode {
    /// nftables through ferry-portguard.
    Nft,
    /// No firewall: any address may reach a leased port (development only).
    Off,
}

/// The configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub public_address: Option<String>,
    /// This ferryd's name among the appliance's nodes.
    pub node_name: Option<String>,
    #[serde(default, deserialize_with = "port_range")]
    pub ports: Option<PortRange>,
    pub firewall: Option<FirewallMode>,
    pub portguard: Option<PathBuf>,
    #[serde(default)]
    pub trusted_proxies: Vec<IpAddr>,
    #[serde(default)]
    pub transfer: TransferConfig,
    #[serde(default)]
    pub deliveries: DeliveriesConfig,
    #[serde(default)]
    pub smtp: SmtpFileConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub store: StoreFileConfig,
    /// Watch folders: what settles in them is delivered.
    #[serde(default)]
    pub watch: Vec<WatchFileConfig>,
    /// Where to write the start-up banner for the appliance's console
    /// (address, fingerprint and the first start's one-time password,
    /// which then stays out of the log).
    pub console: Option<PathBuf>,
}

/// A `[[watch]]` table: a folder whose new entries become deliveries.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WatchFileConfig {
    /// `share=NAME/dir`.
    pub folder: String,
    /// The account its deliveries come from (typically a service account).
    pub sender: String,
    pub to: Vec<String>,
    #[serde(default)]
    pub priorities: Vec<String>,
    pub settle_secs: Option<u64>,
    /// `folder` (each new top-level folder is a delivery) or `file`.
    pub mode: Option<String>,
    /// The deliveries' name: `{folder}`, `{file}` and `{date}` are filled.
    pub name: Option<String>,
}

impl WatchFileConfig {
    pub fn text(&self) -> ferry_domain::watch::WatchText {
        ferry_domain::watch::WatchText {
            folder: self.folder.clone(),
            sender: self.sender.clone(),
            to: self.to.clone(),
            priorities: self.priorities.clone(),
            settle_secs: self.settle_secs.map(|s| s.to_string()).unwrap_or_default(),
            mode: self.mode.clone().unwrap_or_default(),
            name: self.name.clone().unwrap_or_default(),
        }
    }
}

/// A rule of `[transfer] schedule`: on these days, from this time to that
/// one (in the appliance's time zone), this cap on all sessions together.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRule {
    /// `mon-fri`, `sat,sun`, `daily`.
    pub days: String,
    /// `HH:MM` or `HH:MM:SS`.
    pub from: String,
    /// `HH:MM` (`24:00` is midnight at the day's end); earlier than `from`
    /// runs past midnight.
    pub to: String,
    /// `200M`, `1G`, or `none` (no cap while it holds).
    pub rate: String,
}

/// The `[store]` section: where the appliance's state lives.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFileConfig {
    /// `postgres://USER@HOST:PORT/DB`, which several nodes share; without
    /// it, SQLite in the data folder. `--database` overrides it.
    pub url: Option<String>,
    /// The CA (PEM) that signed the PostgreSQL server's certificate, when
    /// the URL asks for TLS (`sslmode=require`); without it, the system's
    /// CAs. `--database-ca` overrides it.
    pub ca: Option<PathBuf>,
}

/// The `[metrics]` section: who may scrape the Prometheus metrics.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Also serve them on this plain-HTTP address, with no token (a
    /// management network); `--metrics-listen` overrides it.
    pub listen: Option<SocketAddr>,
    /// A file holding a token that may read `/metrics` on the control
    /// port (`Authorization: Bearer TOKEN`), besides admins' API keys.
    pub token_file: Option<PathBuf>,
}

/// The `[tls]` section: where the certificate comes from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// `[tls.acme]`: a certificate from an ACME CA, renewed while the
    /// appliance runs. Settings in the web admin override it.
    pub acme: Option<AcmeFileConfig>,
    /// A CA certificate (PEM) trusted for the ACME directory's own HTTPS,
    /// for a private ACME CA; unset: the system's roots.
    pub acme_roots: Option<PathBuf>,
}

/// `[tls.acme]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeFileConfig {
    /// The public DNS name browsers use.
    pub name: String,
    /// The CA's directory; unset: Let's Encrypt.
    pub directory: Option<String>,
    /// An email address the CA may write to.
    pub contact: Option<String>,
}

/// The `[smtp]` section: where notifications go out.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpFileConfig {
    /// `smtp://host:port` (plain, or STARTTLS with `?tls=required`) or
    /// `smtps://host:port` (implicit TLS).
    pub url: Option<String>,
    pub user: Option<String>,
    /// A file holding the password (kept out of the configuration file).
    pub password_file: Option<PathBuf>,
    /// The From address, e.g. `Ferry <ferry@example.com>`.
    pub from: Option<String>,
}

/// SMTP settings in force; `None` in [`Config::smtp`] when no server is set.
pub use ferry_domain::settings::SmtpSettings;

/// The REST API's limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Requests one API key may make per minute (a burst of as many, then
    /// refilled evenly); over it the API answers 429 with `Retry-After`.
    pub requests_per_minute: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            requests_per_minute: 600,
        }
    }
}

/// How much one caller, and everyone together, may hold: sessions, the
/// data ports granted for them, and connections that have not said who
/// they are yet. One session per job is always the rule (a newer one takes
/// the older one's place).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Sessions one account runs at once.
    pub sessions_per_user: usize,
    /// Sessions the appliance runs at once.
    pub sessions_total: usize,
    /// Data ports one account holds at once (granted, connected or not).
    pub leases_per_user: usize,
    /// Data ports the appliance holds at once.
    pub leases_total: usize,
    /// Memory all sessions' flow-control windows and read-ahead may hold
    /// together, in MiB. It is shared fairly (one account at most half),
    /// so a caller who stalls sessions cannot take it from others.
    pub memory_mib: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            sessions_per_user: 128,
            sessions_total: 256,
            leases_per_user: 160,
            leases_total: 1024,
            memory_mib: 2048,
        }
    }
}

/// How long deliveries live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveriesConfig {
    /// Lifetime of a delivery unless its sender says otherwise.
    pub default_expiry_days: u64,
    /// How often expired deliveries are looked for, in seconds.
    pub janitor_secs: u64,
    /// How often each watch folder is read whether or not inotify said
    /// something changed (network filesystems send no events), in seconds.
    pub watch_rescan_secs: u64,
}

impl Default for DeliveriesConfig {
    fn default() -> Self {
        DeliveriesConfig {
            default_expiry_days: 30,
            janitor_secs: 60,
            watch_rescan_secs: 60,
        }
    }
}

/// Tuning of data sessions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransferConfig {
    /// Chunk size in bytes for files sent to the appliance.
    pub chunk_size: u32,
    /// Seconds a session token stays valid unused.
    pub token_ttl_secs: u64,
    /// Seconds a port opening lasts without renewal (renewed every third
    /// of it while the session lives); what is left open if ferryd dies.
    pub lease_ttl_secs: u64,
    /// Congestion policy of sessions whose client does not ask for one.
    pub policy: ferry_proto::Policy,
    /// The site's cap on every session (`100M`, `1G`), so that transfers
    /// do not flood the office link; a job's rate and the client's may
    /// only lower it. Unset: no cap.
    pub target_rate: Option<ferry_proto::Rate>,
    /// A cap on all sessions together (`300M`), which they share fairly:
    /// each gets an equal part, and what one capped lower leaves goes to
    /// the others. Unset: no cap.
    pub site_rate: Option<ferry_proto::Rate>,
    /// How data may travel (`["quic", "tcp", "https"]`, the default): a
    /// site whose policy forbids one turns it off here or in Settings.
    pub transports: ferry_proto::Transports,
    /// The most one session may hold in flow-control windows, in MiB.
    /// Windows are sized to several bandwidth-delay products of the
    /// session's target up to this.
    pub max_window_mib: u64,
    /// The bandwidth schedule: caps on all sessions together by time of
    /// week, first matching rule wins; outside them, `site_rate` holds.
    pub schedule: Vec<ScheduleRule>,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            chunk_size: ferry_proto::plan::limits::DEFAULT_CHUNK_SIZE,
            token_ttl_secs: 60,
            lease_ttl_secs: 30,
            policy: ferry_proto::Policy::Fair,
            target_rate: None,
            site_rate: None,
            transports: ferry_proto::Transports::default(),
            max_window_mib: 256,
            schedule: Vec::new(),
        }
    }
}

impl TransferConfig {
    /// The schedule's rules, read.
    pub fn schedule(
        &self,
    ) -> Result<ferry_domain::bandwidth::Schedule, ferry_domain::bandwidth::RuleError> {
        let rules = self
            .schedule
            .iter()
            .map(|r| ferry_domain::bandwidth::Rule::new(&r.days, &r.from, &r.to, &r.rate))
            .collect::<Result<_, _>>()?;
        Ok(ferry_domain::bandwidth::Schedule { rules })
    }

    /// The pace a session starts from, before its job and client narrow it.
    pub fn site_pace(&self) -> ferry_proto::Pace {
        ferry_proto::Pace {
            policy: self.policy,
            target: self.target_rate,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.display().to_string(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

/// The host's name, the default node name: the part before the first dot,
/// which is what admins call a machine ("ferry-a", not its FQDN).
fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .and_then(|h| h.split('.').next().map(str::to_owned))
        .filter(|h| ferry_domain::node::check_name(h).is_ok())
        .unwrap_or_else(|| "ferry".to_owned())
}

/// The settings in force: file, then flags, then defaults.
#[derive(Debug, Clone)]
pub struct Config {
    pub data: PathBuf,
    /// The PostgreSQL database the nodes share; `None`: SQLite in `data`.
    pub database: Option<String>,
    /// The CA its server's certificate must chain to (TLS).
    pub database_ca: Option<PathBuf>,
    pub listen: SocketAddr,
    pub public_address: Option<String>,
    /// This ferryd's name among the appliance's nodes (checked).
    pub node_name: String,
    pub ports: PortRange,
    pub firewall: FirewallMode,
    pub portguard: PathBuf,
    pub trusted_proxies: Vec<IpAddr>,
    pub transfer: TransferConfig,
    pub deliveries: DeliveriesConfig,
    pub smtp: Option<SmtpSettings>,
    pub console: Option<PathBuf>,
    pub api: ApiConfig,
    pub limits: LimitsConfig,
    pub tls: TlsConfig,
    pub metrics: MetricsConfig,
    /// The `[[watch]]` tables, checked.
    pub watches: Vec<ferry_domain::watch::WatchText>,
}

/// Values given on the command line; each overrides the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data: Option<PathBuf>,
    pub database: Option<String>,
    pub database_ca: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub public_address: Option<String>,
    pub node_name: Option<String>,
    pub ports: Option<PortRange>,
    pub firewall: Option<FirewallMode>,
    pub portguard: Option<PathBuf>,
    pub smtp: Option<String>,
    pub mail_from: Option<String>,
    pub console: Option<PathBuf>,
    pub metrics_listen: Option<SocketAddr>,
}

impl Config {
    /// The database this ferryd uses, as [`ferry_store::Database::open_url`]
    /// takes it (which alone tells the engines apart): the PostgreSQL
    /// database named, or SQLite's file in the data folder.
    pub fn database_url(&self) -> String {
        match &self.database {
            Some(url) => url.clone(),
            None => self.data.join("ferry.db").to_string_lossy().into_owned(),
        }
    }

    pub fn resolve(file: FileConfig, flags: Overrides) -> Result<Self, ConfigError> {
        let node_name = flags.node_name.or(file.node_name).unwrap_or_else(host_name);
        ferry_domain::node::check_name(&node_name).map_err(ConfigError::Invalid)?;
        let portguard = flags
            .portguard
            .or(file.portguard)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PORTGUARD));
        // nft is the default where portguard is running; a laptop without
        // it runs with the firewall off (and says so loudly).
        let firewall = flags
            .firewall
            .or(file.firewall)
            .unwrap_or(if portguard.exists() {
                FirewallMode::Nft
            } else {
                FirewallMode::Off
            });
        let listen = match flags.listen.or(file.listen) {
            Some(l) => l,
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|_| ConfigError::Invalid("bad built-in listen address".into()))?,
        };
        let transfer = file.transfer;
        if ferry_proto::ChunkLayout::new(transfer.chunk_size).is_none() {
            return Err(ConfigError::Invalid(format!(
                "transfer.chunk_size {} is outside {}..={}",
                transfer.chunk_size,
                ferry_proto::plan::limits::MIN_CHUNK_SIZE,
                ferry_proto::plan::limits::MAX_CHUNK_SIZE
            )));
        }
        if !(3..=600).contains(&transfer.lease_ttl_secs) {
            return Err(ConfigError::Invalid(
                "transfer.lease_ttl_secs must be 3-600".into(),
            ));
        }
        if !(16..=4096).contains(&transfer.max_window_mib) {
            return Err(ConfigError::Invalid(
                "transfer.max_window_mib must be 16-4096".into(),
            ));
        }
        if file.limits.memory_mib < 64 {
            return Err(ConfigError::Invalid(
                "limits.memory_mib must be at least 64".into(),
            ));
        }
        if file.api.requests_per_minute == 0 {
            return Err(ConfigError::Invalid(
                "api.requests_per_minute must be at least 1".into(),
            ));
        }
        if transfer.token_ttl_secs == 0 || transfer.token_ttl_secs > 3600 {
            return Err(ConfigError::Invalid(
                "transfer.token_ttl_secs must be 1-3600".into(),
            ));
        }
        if let Err(e) = transfer.schedule() {
            return Err(ConfigError::Invalid(format!("transfer.schedule: {e}")));
        }
        let mut watches = Vec::new();
        for (i, w) in file.watch.iter().enumerate() {
            let text = w.text();
            let spec = ferry_domain::watch::parse(&text).map_err(|e| {
                ConfigError::Invalid(format!("watch {} ({}): {e}", i + 1, w.folder))
            })?;
            if watches
                .iter()
                .any(|t: &ferry_domain::watch::WatchText| t.folder == spec.folder())
            {
                return Err(ConfigError::Invalid(format!(
                    "watch {}: {} is watched twice",
                    i + 1,
                    spec.folder()
                )));
            }
            watches.push(spec.to_text());
        }
        let smtp = match (
            flags.smtp.or(file.smtp.url),
            flags.mail_from.or(file.smtp.from),
        ) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(ConfigError::Invalid(
                    "an SMTP server needs a From address: smtp.from or --mail-from".into(),
                ));
            }
            (Some(url), Some(from)) => Some(SmtpSettings {
                url,
                user: file.smtp.user,
                password_file: file.smtp.password_file,
                from,
            }),
        };
        let config = Config {
            watches,
            smtp,
            console: flags.console.or(file.console),
            api: file.api,
            limits: file.limits,
            tls: file.tls,
            metrics: MetricsConfig {
                listen: flags.metrics_listen.or(file.metrics.listen),
                token_file: file.metrics.token_file,
            },
            data: flags
                .data
                .or(file.data)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA)),
            database: flags.database.or(file.store.url),
            database_ca: flags.database_ca.or(file.store.ca),
            listen,
            public_address: flags.public_address.or(file.public_address),
            node_name,
            ports: flags.ports.or(file.ports).unwrap_or(DEFAULT_PORTS),
            firewall,
            portguard,
            trusted_proxies: file.trusted_proxies,
            transfer,
            deliveries: file.deliveries,
        };
        // The file's site settings pass the same validator as an admin's
        // change in the web admin or the API.
        config
            .baseline()
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(config)
    }

    /// The site settings the file and flags give, before what admins saved.
    pub fn baseline(&self) -> ferry_domain::settings::SiteSettings {
        ferry_domain::settings::SiteSettings {
            public_address: self.public_address.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
            pace: self.transfer.site_pace(),
            site_rate: self.transfer.site_rate,
            default_expiry_days: self.deliveries.default_expiry_days,
            smtp: self.smtp.clone(),
            transports: self.transfer.transports,
            // Checked when the configuration was read.
            schedule: self.transfer.schedule().unwrap_or_default(),
            acme: self.tls.acme.as_ref().map(|a| AcmeSettings {
                name: a.name.to_ascii_lowercase(),
                directory: a
                    .directory
                    .clone()
                    .unwrap_or_else(|| LETS_ENCRYPT.to_owned()),
                contact: a.contact.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_reads() {
        let file = FileConfig::parse(include_str!("../examples/ferryd.toml")).unwrap();
        let c = Config::resolve(file, Overrides::default()).unwrap();
        let smtp = c.smtp.clone().unwrap();
        assert_eq!(smtp.from, "Ferry <ferry@example.com>");
        assert_eq!(smtp.url, "smtp://mail.example.com:587?tls=required");
        assert_eq!(
            c.baseline().schedule.lines(),
            ["mon-fri 09:00-19:00 200 Mbit/s", "daily 19:00-07:00 none"]
        );
        assert_eq!(c.watches.len(), 1);
        assert_eq!(c.watches[0].folder, "share=projects/outgoing/dailies");
        assert_eq!(c.watches[0].settle_secs, "30");
        assert_eq!(c.deliveries.watch_rescan_secs, 60);
        // A bad rule or watch is refused, named.
        let file = FileConfig::parse(
            "[transfer]\nschedule = [{ days = \"weekdays\", from = \"09:00\", to = \"19:00\", rate = \"1G\" }]\n",
        )
        .unwrap();
        let e = Config::resolve(file, Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("transfer.schedule"), "{e}");
        let watch = "[[watch]]\nfolder = \"share=p/out\"\nsender = \"r@x.io\"\nto = [\"a@x.io\"]\n";
        let twice = FileConfig::parse(&format!("{watch}{watch}")).unwrap();
        let e = Config::resolve(twice, Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("watched twice"), "{e}");
        let bad = FileConfig::parse(&watch.replace("r@x.io", "render")).unwrap();
        let e = Config::resolve(bad, Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("sender"), "{e}");
        // A server without a From address is refused.
        let file = FileConfig::parse("[smtp]\nurl = \"smtp://127.0.0.1:25\"\n").unwrap();
        let e = Config::resolve(file, Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("From address"), "{e}");
    }

    #[test]
    fn acme_reads_from_the_tls_table_and_passes_the_settings_validator() {
        let file = FileConfig::parse(
            "[tls]\nacme_roots = \"/etc/ferry/ca.pem\"\n[tls.acme]\nname = \"Ferry.Example.com\"\n",
        )
        .unwrap();
        let c = Config::resolve(file, Overrides::default()).unwrap();
        let acme = c.baseline().acme.unwrap();
        assert_eq!(acme.name, "ferry.example.com");
        assert_eq!(acme.directory, LETS_ENCRYPT);
        assert_eq!(c.tls.acme_roots, Some(PathBuf::from("/etc/ferry/ca.pem")));
        let file = FileConfig::parse("[tls.acme]\nname = \"192.0.2.1\"\n").unwrap();
        let e = Config::resolve(file, Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("ACME name"), "{e}");
        // The example file's table, uncommented, reads.
        let example = include_str!("../examples/ferryd.toml");
        let tls = &example[example.find("#[tls]").unwrap()..];
        let tls = &tls[..tls.find("\n\n").unwrap_or(tls.len())];
        let uncommented: String = tls
            .lines()
            .filter(|l| {
                l.starts_with("#[")
                    || l.starts_with("#a")
                    || l.starts_with("#n")
                    || l.starts_with("#c")
                    || l.starts_with("#d")
            })
            .map(|l| format!("{}\n", &l[1..]))
            .collect();
        let c = Config::resolve(
            FileConfig::parse(&uncommented).unwrap(),
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.baseline().acme.unwrap().contact.as_deref(),
            Some("ops@example.com")
        );
    }

    #[test]
    fn empty_config_runs_on_defaults() {
        let c = Config::resolve(
            FileConfig::parse("").unwrap(),
            Overrides {
                portguard: Some("/nonexistent/portguard.sock".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.data, PathBuf::from("./ferry-data"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(c.ports, DEFAULT_PORTS);
        assert_eq!(c.firewall, FirewallMode::Off);
    }

    #[test]
    fn flags_override_the_file() {
        let file = FileConfig::parse(
            r#"
            data = "/var/lib/ferry"
            listen = "0.0.0.0:443"
            ports = "45190-45192"
            firewall = "nft"
            trusted_proxies = ["10.0.0.1"]
            [transfer]
            chunk_size = 4194304
            policy = "fixed"
            target_rate = "250M"
            "#,
        )
        .unwrap();
        let c = Config::resolve(
            file,
            Overrides {
                ports: Some("50000-50010".parse().unwrap()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.data, PathBuf::from("/var/lib/ferry"));
        assert_eq!(c.ports.to_string(), "50000-50010");
        assert_eq!(c.ports.len(), 11);
        assert_eq!(c.firewall, FirewallMode::Nft);
        assert_eq!(c.transfer.chunk_size, 4 << 20);
        assert_eq!(c.transfer.policy, ferry_proto::Policy::Fixed);
        assert_eq!(
            c.transfer.target_rate.map(|r| r.bits_per_sec()),
            Some(250_000_000)
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(
            FileConfig::parse("listne = \"1.2.3.4:1\"")
                .unwrap_err()
                .contains("listne")
        );
        assert!(FileConfig::parse("ports = \"10-5\"").is_err());
        assert!(FileConfig::parse("ports = \"80-90\"").is_err());
        assert!(FileConfig::parse("[transfer]\nchunk = 1").is_err());
        let bad_rate = FileConfig::parse("[transfer]\ntarget_rate = \"12MB/s\"").unwrap_err();
        assert!(bad_rate.contains("bits per second"), "{bad_rate}");
        assert!(FileConfig::parse("[transfer]\npolicy = \"turbo\"").is_err());
        let bad_chunk = FileConfig::parse("[transfer]\nchunk_size = 10").unwrap();
        assert!(Config::resolve(bad_chunk, Overrides::default()).is_err());
    }

    #[test]
    fn shipped_examples_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                FileConfig::load(&path).unwrap();
                seen += 1;
            }
        }
        assert!(seen > 0);
    }
}
