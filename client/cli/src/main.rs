//! `ferry`: the command-line client. Thin: it parses flags, calls
//! `ferry-client`, and prints results (a progress bar on a terminal, JSON
//! for scripts, a one-line reason on failure).

mod progress;

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use ferry_client::credentials::normalise_server;
use ferry_client::priority::PriorityRules;
use ferry_client::transfer::{self, Options, Report};
use ferry_client::{Api, ClientError, Credentials};
use ferry_engine::tls::{Fingerprint, PinnedCert};

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Send review sessions to a Ferry appliance and receive deliveries"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Log in to an appliance and remember it (credentials are stored 0600).
    Login {
        /// https://HOST[:PORT] of the appliance.
        server: String,
        #[arg(long)]
        email: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
        /// The certificate fingerprint to expect (from the appliance's admin).
        #[arg(long)]
        fingerprint: Option<String>,
        /// Trust the fingerprint shown without asking (first contact only).
        #[arg(long)]
        yes: bool,
        /// When the password is one-time, the new password (read from the
        /// line after the password on standard input with --password-stdin).
        #[arg(long)]
        new_password_stdin: bool,
    },
    /// Forget the stored credentials.
    Logout,
    /// Show who you are logged in as.
    Whoami,
    /// List the shares you may use.
    Shares {
        #[arg(long)]
        json: bool,
    },
    /// Upload files and folders into a folder of a share.
    Put {
        /// Local files and folders, then the destination: share=NAME/dir/
        #[arg(required = true, num_args = 2..)]
        args: Vec<String>,
        /// Print one JSON object when done.
        #[arg(long)]
        json: bool,
        /// GLOB=high|low|N; the first matching rule wins.
        #[arg(long)]
        priority: Vec<String>,
        /// New sessions after a lost connection.
        #[arg(long, default_value_t = 3)]
        retries: u32,
    },
    /// Download a file or a folder of a share into a local folder.
    Get {
        /// share=NAME/path
        source: String,
        /// Local folder (created if missing).
        dir: PathBuf,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 3)]
        retries: u32,
    },
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .format_target(false)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferry: cannot start: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli.command)) {
        // One line, the reason; the chain only where it adds something.
        eprintln!("ferry: {e:#}");
        std::process::exit(1);
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Login {
            server,
            email,
            password_stdin,
            fingerprint,
            yes,
            new_password_stdin,
        } => {
            login(
                server,
                email,
                password_stdin,
                fingerprint,
                yes,
                new_password_stdin,
            )
            .await
        }
        Command::Logout => {
            Credentials::remove()?;
            eprintln!("logged out");
            Ok(())
        }
        Command::Whoami => {
            let creds = Credentials::load()?;
            let me = Api::from_credentials(&creds)?.me().await?;
            println!("{} ({}) on {}", me.email, me.role, creds.server);
            Ok(())
        }
        Command::Shares { json } => {
            let api = Api::from_credentials(&Credentials::load()?)?;
            let shares = api.shares().await?;
            if json {
                println!("{}", serde_json::to_string(&shares)?);
            } else if shares.is_empty() {
                println!("no shares are open to you; ask the appliance's admin for access");
            } else {
                for s in shares {
                    let rights = match (s.read, s.write) {
                        (true, true) => "read/write",
                        (true, false) => "read",
                        _ => "write",
                    };
                    match s.parent {
                        Some(p) => println!("share={}\t{rights}\t(in {p})", s.name),
                        None => println!("share={}\t{rights}", s.name),
                    }
                }
            }
            Ok(())
        }
        Command::Put {
            mut args,
            json,
            priority,
            retries,
        } => {
            let target = args.pop().ok_or_else(|| anyhow!("missing destination"))?;
            if !target.starts_with("share=") {
                bail!(
                    "the last argument must be the destination, share=NAME/folder/ (got {target:?})"
                );
            }
            let locals: Vec<PathBuf> = args.into_iter().map(PathBuf::from).collect();
            let api = Api::from_credentials(&Credentials::load()?)?;
            let (opts, bar) = options(retries, PriorityRules::parse(&priority)?, json);
            let result = transfer::put(&api, &locals, &target, &opts).await;
            finish(result, bar, json)
        }
        Command::Get {
            source,
            dir,
            json,
            retries,
        } => {
            let api = Api::from_credentials(&Credentials::load()?)?;
            let (opts, bar) = options(retries, PriorityRules::default(), json);
            let result = transfer::get(&api, &source, &dir, &opts).await;
            finish(result, bar, json)
        }
    }
}

fn options(
    retries: u32,
    priorities: PriorityRules,
    json: bool,
) -> (Options, Option<progress::Bar>) {
    let bar = (!json && std::io::stderr().is_terminal()).then(progress::Bar::new);
    let on_attempt: Arc<dyn Fn(Arc<ferry_engine::Progress>) + Send + Sync> = match &bar {
        Some(b) => {
            let b = b.clone();
            Arc::new(move |p| b.watch(p))
        }
        None => Arc::new(|_| {}),
    };
    let opts = Options {
        retries,
        priorities,
        on_attempt,
        ..Options::default()
    };
    (opts, bar)
}

fn finish(
    result: Result<Report, ClientError>,
    bar: Option<progress::Bar>,
    json: bool,
) -> Result<()> {
    if let Some(b) = bar {
        b.finish();
    }
    let report = result?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        eprintln!(
            "{} files, {} sent, {} already there, in {:.1}s",
            report.files,
            progress::bytes(report.bytes_transferred),
            progress::bytes(report.bytes_skipped),
            report.seconds
        );
    }
    Ok(())
}

fn prompt(label: &str) -> Result<String> {
    eprint!("{label}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

async fn login(
    server: String,
    email: Option<String>,
    password_stdin: bool,
    fingerprint: Option<String>,
    yes: bool,
    new_password_stdin: bool,
) -> Result<()> {
    let server = normalise_server(&server)?;
    let expected: Option<Fingerprint> = fingerprint
        .or_else(|| std::env::var("FERRY_FINGERPRINT").ok())
        .map(|f| f.parse())
        .transpose()
        .context("--fingerprint")?;
    // First contact: learn (or check) the certificate before sending any
    // secret.
    let probe_pin = match expected {
        Some(fp) => PinnedCert::new(fp),
        None => PinnedCert::first_contact(),
    };
    let probe = Api::new(&server, probe_pin, None, None)?;
    probe.health().await?;
    let seen = probe
        .seen_fingerprint()
        .ok_or_else(|| anyhow!("the appliance presented no certificate"))?;
    if expected.is_none() {
        eprintln!("The appliance at {server} presents the certificate fingerprint (SHA-256)");
        eprintln!("  {seen}");
        eprintln!(
            "Check it against the one your admin gives you (web admin Settings, or `ferryd admin fingerprint`)."
        );
        if !yes {
            if !std::io::stdin().is_terminal() {
                bail!(
                    "not trusting an unconfirmed fingerprint: pass --fingerprint {seen} or --yes"
                );
            }
            let answer = prompt("Trust it? [y/N] ")?;
            if !answer.eq_ignore_ascii_case("y") && !answer.eq_ignore_ascii_case("yes") {
                bail!("not trusted; nothing was stored");
            }
        }
    }
    let email = match email {
        Some(e) => e,
        None => prompt("Email: ")?,
    };
    let mut stdin_lines = Vec::new();
    if password_stdin {
        for line in std::io::stdin().lock().lines() {
            stdin_lines.push(line?);
        }
    }
    let password = if password_stdin {
        stdin_lines
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("no password on standard input"))?
    } else {
        rpassword::prompt_password("Password: ")?
    };
    let api = Api::new(&server, PinnedCert::new(seen), None, None)?;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "this computer".into());
    let resp = api
        .login(&email, &password, Some(format!("ferry login on {host}")))
        .await?;
    let creds = Credentials {
        server: server.clone(),
        user: Some(resp.user.email.clone()),
        api_key: resp.api_key,
        fingerprint: seen,
    };
    if resp.must_change_password {
        let new = if new_password_stdin {
            stdin_lines.get(1).cloned().ok_or_else(|| {
                anyhow!("the password is one-time: give the new one on the next line of stdin")
            })?
        } else {
            eprintln!("This password is one-time: choose a new one (at least 8 characters).");
            rpassword::prompt_password("New password: ")?
        };
        Api::from_credentials(&creds)?
            .change_password(&password, &new)
            .await?;
        eprintln!("password changed");
    }
    let path = creds.save()?;
    eprintln!(
        "logged in to {server} as {} ({}); credentials in {}",
        resp.user.email,
        resp.user.role,
        path.display()
    );
    Ok(())
}
