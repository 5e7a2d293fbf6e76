//! `ferry`: the command-line client. Thin: it parses flags, calls
//! `ferry-client`, and prints results (a progress bar on a terminal, JSON
//! for scripts, a one-line reason on failure).

mod progress;
mod show;

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use ferry_client::reach::Choice;
use ferry_client::signin;
use ferry_engine::handshake::PaceRequest;
use ferry_proto::{Policy, PriorityRules, Rate};
use std::time::Duration;

use ferry_api::JobInfo;
use ferry_client::agent::{Agent, AgentEvent, Until};
use ferry_client::deliver::{self, Manifest, SendRequest};
use ferry_client::hotfolder::{self, HotFolder};
use ferry_client::transfer::{self, Options, Report};
use ferry_client::{Api, ClientError, Credentials};
use ferry_engine::StopSignal;
use ferry_engine::tls::Fingerprint;

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Send review sessions to a Ferry appliance and receive deliveries",
    after_help = "Which to use:\n  put     files from here into a folder of a share (you keep control of the job)\n  get     a file or folder of a share to here\n  send    a delivery: uploaded once, then one job per recipient, who is told\n  agent   leave running on a recipient's computer: receives each delivery as it lands\n  pull    receive your waiting deliveries once, then stop (a script's agent)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How a transfer travels and shares the network, when the appliance
/// allows it.
#[derive(Debug, Clone, Default, clap::Args)]
struct PaceArgs {
    /// How the bytes travel: auto (QUIC, falling back to TCP then HTTPS
    /// when UDP does not get through), quic, tcp (TLS on the leased port)
    /// or https (the appliance's web port, through HTTPS_PROXY if set).
    #[arg(long, default_value = "auto")]
    transport: Choice,
    /// Congestion policy: fair (yield to other traffic), fixed (hold the
    /// rate), cubic or bbr. Default: the appliance's.
    #[arg(long)]
    policy: Option<Policy>,
    /// Cap this transfer at a rate in bits per second (50M, 1.5G); the
    /// appliance's own cap still applies.
    #[arg(long)]
    rate: Option<Rate>,
}

impl PaceArgs {
    fn request(&self) -> PaceRequest {
        PaceRequest {
            policy: self.policy,
            rate: self.rate,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Log in to an appliance and remember it (credentials are stored 0600).
    Login {
        /// https://HOST[:PORT] of the appliance; several, separated by
        /// commas, for a cluster's nodes or one appliance's uplinks.
        server: String,
        #[arg(long)]
        email: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
        /// The key fingerprint to expect (from the appliance's admin).
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
    /// Email notifications about your deliveries: on or off (invitations
    /// always come).
    Notify {
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// List the shares you may use.
    Shares {
        #[arg(long)]
        json: bool,
    },
    /// Add a share (admins): a root share over a folder on the appliance
    /// (--path), or a share made beneath a root share (--root, --folder).
    AddShare {
        name: String,
        /// An absolute folder on the appliance.
        #[arg(long, conflicts_with_all = ["root", "folder"], required_unless_present = "root")]
        path: Option<String>,
        /// The root share to make the folder in.
        #[arg(long, requires = "folder")]
        root: Option<String>,
        /// The folder, relative to the root share.
        #[arg(long, requires = "root")]
        folder: Option<String>,
    },
    /// The appliance at a glance (admins): firewall, ports, leases,
    /// warnings and, on the appliance image, the state of the system.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// The appliance's recent log lines (admins; the appliance image keeps
    /// them in the systemd journal).
    Log {
        /// Only the lines of this job.
        #[arg(long)]
        job: Option<i64>,
        /// Only the lines of this data session.
        #[arg(long)]
        session: Option<u64>,
        /// How many of the most recent lines.
        #[arg(long, default_value_t = 100)]
        lines: usize,
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
        /// GLOB=high|medium|low|N, N from 1 (lowest) to 1000 (highest);
        /// high is 999, low 1, unmatched files 500. The first matching
        /// rule wins.
        #[arg(long)]
        priority: Vec<String>,
        /// New sessions after a lost connection.
        #[arg(long, default_value_t = 3)]
        retries: u32,
        #[command(flatten)]
        pace: PaceArgs,
    },
    /// Send files to recipients: a delivery (uploaded once, then one job
    /// per recipient). Files already in a share (share=NAME/path) are sent
    /// from there without an upload.
    Send {
        /// Local files, folders and sequences (shot.%04d.exr[1001-1100],
        /// shot.####.exr), or share=NAME/path items.
        #[arg(required = true)]
        paths: Vec<String>,
        /// A recipient's email (repeat for more); new emails are invited.
        #[arg(long = "to", required = true)]
        to: Vec<String>,
        /// Where uploaded files go: share=NAME/folder
        #[arg(long)]
        dest: Option<String>,
        /// The delivery's name, shown in listings and as the recipients' folder.
        #[arg(long)]
        name: Option<String>,
        /// GLOB=high|medium|low|N, N from 1 (lowest) to 1000 (highest);
        /// high is 999, low 1, unmatched files 500. The first matching
        /// rule wins.
        #[arg(long)]
        priority: Vec<String>,
        /// How long the delivery lives, e.g. 30d, 12h, 90m, 45s.
        #[arg(long, value_parser = parse_duration)]
        expires: Option<u64>,
        /// Email me when half of it has arrived.
        #[arg(long)]
        notify_progress: bool,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 5)]
        retries: u32,
        #[command(flatten)]
        pace: PaceArgs,
    },
    /// Watch a local folder: each new folder (or file, with --mode file)
    /// that settles in it is uploaded to --dest and delivered, as `ferry
    /// send` would. Runs until stopped, and picks up where it left off:
    /// an unfinished upload resumes, nothing is delivered twice. What lies
    /// there when it is first watched is left alone unless --existing.
    Watch {
        /// The folder to watch.
        dir: PathBuf,
        /// A recipient's email (repeat for more).
        #[arg(long = "to", required = true)]
        to: Vec<String>,
        /// Where each entry's files go: share=NAME/folder
        #[arg(long)]
        dest: String,
        /// How long nothing in an entry may change before it is sent
        /// (30s, 2m); part and temporary files hold it back regardless.
        #[arg(long, value_parser = parse_duration, default_value = "30s")]
        settle: u64,
        /// GLOB=high|medium|low|N, as for send.
        #[arg(long)]
        priority: Vec<String>,
        /// `folder`: each new top-level folder is one delivery; `file`:
        /// each new file.
        #[arg(long, default_value = "folder")]
        mode: String,
        /// The deliveries' name: {folder} (or {file}) and {date} are
        /// filled in.
        #[arg(long, default_value = "{folder}")]
        name: String,
        /// Also deliver what is in the folder when it is first watched.
        #[arg(long)]
        existing: bool,
        /// Where what was sent is remembered [default: DIR/.ferry-watch.json].
        #[arg(long)]
        state: Option<PathBuf>,
        #[arg(long, default_value_t = 5)]
        retries: u32,
        #[command(flatten)]
        pace: PaceArgs,
    },
    /// List jobs (unfinished by default).
    Jobs {
        #[arg(long)]
        finished: bool,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show or control one job.
    Job {
        #[command(subcommand)]
        command: JobCommand,
    },
    /// Receive every delivery addressed to you into DIR/<delivery name>/,
    /// now and as they come; resume after any interruption.
    Agent {
        #[arg(long)]
        into: PathBuf,
        /// Deliveries received at once.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        /// Seconds between looks for new deliveries.
        #[arg(long, default_value_t = 3)]
        poll: u64,
        #[command(flatten)]
        pace: PaceArgs,
    },
    /// Receive your deliveries (or one job) and stop when done.
    Pull {
        /// Only this job.
        job: Option<i64>,
        #[arg(long)]
        into: PathBuf,
        /// One attempt per job; do not wait for uploads still running.
        #[arg(long)]
        once: bool,
        /// Deliveries received at once.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        /// Print one JSON object per job received (its id and its report)
        /// on standard output; the progress lines go to standard error.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        pace: PaceArgs,
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
        #[command(flatten)]
        pace: PaceArgs,
    },
    /// Check a received delivery's folder against its manifest
    /// (`.ferry-manifest.b3`, which the agent writes): names each file
    /// that is missing or differs.
    Verify {
        /// The delivery's folder.
        dir: PathBuf,
        /// Another manifest to check against (b3sum's format).
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Check what stands between this computer and the appliance: the
    /// control plane and its certificate, the round trip, the clock, and
    /// whether QUIC, TCP and HTTPS get through, with the ports to open.
    Doctor {
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum JobCommand {
    /// A job's files (sequences as one line), status and priorities.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Hold a job: its transfer stops, what arrived is kept, and resume
    /// continues it.
    Pause {
        /// The job's number (`ferry jobs` lists them).
        id: i64,
    },
    /// Resume a paused job (and this computer's part of an upload).
    Resume { id: i64 },
    /// Stop a job for good (its files stay).
    Abort { id: i64 },
    /// Queue a failed or aborted job again.
    Retry { id: i64 },
    /// Remove a job from listings and revoke it: the recipient cannot resume it.
    Purge {
        id: i64,
        /// Also delete the delivery's files on the appliance that no other
        /// live job uses.
        #[arg(long)]
        delete_files: bool,
    },
    /// Cap a job's rate (50M, 1.5G), or give it back the appliance's cap
    /// with `site`. A running transfer follows at once.
    Rate {
        id: i64,
        /// A rate in bits per second, or `site`.
        rate: String,
    },
    /// Mark a job urgent (admins): the bandwidth schedule does not slow
    /// it. `--off` makes it share the schedule's cap again.
    Urgent {
        id: i64,
        #[arg(long)]
        off: bool,
    },
    /// Change the priority of the files matching GLOB.
    Priority {
        id: i64,
        glob: String,
        /// high, low or 1-1000
        priority: String,
    },
}

/// `30d`, `12h`, `90m`, `45s` or plain seconds.
fn parse_duration(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?}: expected a duration such as 30d, 12h, 90m or 45s");
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).filter(|v| *v > 0).ok_or_else(bad)
}

fn main() {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,ferry_client::hotfolder=info"),
    )
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
            println!(
                "{} ({}) on {}; email notifications {}",
                me.email,
                me.role,
                creds.server,
                if me.notify { "on" } else { "off" }
            );
            Ok(())
        }
        Command::Notify { state } => {
            let creds = Credentials::load()?;
            let me = Api::from_credentials(&creds)?
                .set_notify(state == "on")
                .await?;
            eprintln!(
                "email notifications {} for {}",
                if me.notify { "on" } else { "off" },
                me.email
            );
            Ok(())
        }
        Command::AddShare {
            name,
            path,
            root,
            folder,
        } => {
            let api = Api::from_credentials(&Credentials::load()?)?;
            let share = api
                .add_share(&ferry_api::NewShare {
                    name,
                    path,
                    root,
                    folder,
                })
                .await?;
            match (&share.parent, &share.path) {
                (Some(root), Some(p)) => println!("share={} in {root} at {p}", share.name),
                (_, Some(p)) => println!("share={} (root share) at {p}", share.name),
                _ => println!("share={}", share.name),
            }
            Ok(())
        }
        Command::Status { json } => {
            let api = Api::from_credentials(&Credentials::load()?)?;
            let status = api.status().await?;
            if json {
                println!("{}", serde_json::to_string(&status)?);
                return Ok(());
            }
            println!("firewall: {}", status.firewall);
            println!("data ports: UDP {}", status.ports);
            for l in &status.leases {
                println!("  leased: {} to {}", l.port, l.address);
            }
            if let Some(system) = &status.system {
                println!("system: {}", system.state);
                for unit in &system.failed_units {
                    println!("  failed: {unit}");
                }
            }
            for w in &status.warnings {
                println!("warning: {w}");
            }
            Ok(())
        }
        Command::Log {
            job,
            session,
            lines,
            json,
        } => {
            let api = Api::from_credentials(&Credentials::load()?)?;
            let mut query = format!("lines={lines}");
            if let Some(j) = job {
                query.push_str(&format!("&job={j}"));
            }
            if let Some(s) = session {
                query.push_str(&format!("&session={s}"));
            }
            for line in api.journal(&query).await? {
                if json {
                    println!("{}", serde_json::to_string(&line)?);
                } else {
                    let when = jiff::Timestamp::from_microsecond(line.time_us as i64)
                        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_default();
                    println!("{when}  {}", line.message);
                }
            }
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
            pace,
        } => {
            let target = args.pop().ok_or_else(|| anyhow!("missing destination"))?;
            if !target.starts_with("share=") {
                bail!(
                    "the last argument must be the destination, share=NAME/folder/ (got {target:?})"
                );
            }
            let locals: Vec<PathBuf> = args.into_iter().map(PathBuf::from).collect();
            let api = Api::from_credentials(&Credentials::load()?)?;
            let (mut opts, bar) = options(retries, PriorityRules::parse(&priority)?, json);
            opts.pace = pace.request();
            opts.transport = pace.transport;
            let result = transfer::put(&api, &locals, &target, &opts).await;
            finish(result, bar, json)
        }
        Command::Send {
            paths,
            to,
            dest,
            name,
            priority,
            expires,
            notify_progress,
            json,
            retries,
            pace,
        } => {
            let creds = Credentials::load()?;
            let api = Api::from_credentials(&creds)?;
            let (mut opts, bar) = options(retries, PriorityRules::default(), json);
            opts.pace = pace.request();
            opts.transport = pace.transport;
            let req = SendRequest {
                paths,
                recipients: to,
                dest,
                name,
                priorities: priority,
                expires_in_secs: expires,
                notify_progress,
            };
            let sent = deliver::send(&api, &creds, &req, &opts).await;
            if let Some(b) = bar {
                b.finish();
            }
            let sent = sent?;
            for m in &sent.missing {
                eprintln!("ferry: warning: {m}");
            }
            if json {
                println!("{}", serde_json::to_string(&sent.created)?);
            } else {
                println!("delivery {} made:", sent.created.delivery);
                for j in &sent.created.jobs {
                    match &j.recipient {
                        Some(r) => println!("  job {}  {}  to {r}", j.id, j.kind),
                        None => println!("  job {}  {}  {}", j.id, j.kind, j.name),
                    }
                }
                if let Some(r) = sent.upload {
                    eprintln!("uploaded {}", summary(&r));
                }
            }
            Ok(())
        }
        Command::Watch {
            dir,
            to,
            dest,
            settle,
            priority,
            mode,
            name,
            existing,
            state,
            retries,
            pace,
        } => {
            let creds = Credentials::load()?;
            let api = Api::from_credentials(&creds)?;
            let (mut opts, _) = options(retries, PriorityRules::default(), true);
            opts.pace = pace.request();
            opts.transport = pace.transport;
            let hot = HotFolder {
                state: state.unwrap_or_else(|| HotFolder::default_state(&dir)),
                dir,
                recipients: to,
                dest,
                settle: std::time::Duration::from_secs(settle),
                priorities: priority,
                mode: mode.parse()?,
                name,
                existing,
            };
            eprintln!(
                "watching {}: what settles for {} s is delivered to {}",
                hot.dir.display(),
                settle,
                hot.recipients.join(", ")
            );
            hotfolder::run(&api, &creds, &hot, &opts).await?;
            Ok(())
        }
        Command::Jobs {
            finished,
            all,
            json,
        } => {
            let api = Api::from_credentials(&Credentials::load()?)?;
            let query = match (finished, all) {
                (_, true) => "all=true",
                (true, false) => "finished=true",
                _ => "",
            };
            let list = api.jobs(query).await?;
            if json {
                println!("{}", serde_json::to_string(&list.jobs)?);
            } else {
                show::jobs_table(&list.jobs);
            }
            Ok(())
        }
        Command::Job { command } => job(command).await,
        Command::Agent {
            into,
            concurrency,
            poll,
            pace,
        } => {
            let api = Api::from_credentials(&Credentials::load()?)?;
            let agent = Agent {
                api,
                into,
                concurrency: concurrency.max(1),
                poll: Duration::from_secs(poll.max(1)),
                once: false,
                stop: StopSignal::new(),
                pace: pace.request(),
                transport: pace.transport,
            };
            run_agent(agent, Until::Stopped, false).await.map(|_| ())
        }
        Command::Pull {
            job,
            into,
            once,
            concurrency,
            json,
            pace,
        } => {
            let api = Api::from_credentials(&Credentials::load()?)?;
            let agent = Agent {
                api,
                into,
                concurrency: concurrency.max(1),
                poll: Duration::from_secs(2),
                once,
                stop: StopSignal::new(),
                pace: pace.request(),
                transport: pace.transport,
            };
            let until = job.map_or(Until::Idle, Until::Job);
            let summary = run_agent(agent, until, json).await?;
            if let Some((id, e)) = summary.failed.first() {
                bail!("job {id} failed: {e}");
            }
            if let Some(id) = summary.withdrawn.first() {
                bail!("job {id} was withdrawn or aborted by its sender");
            }
            Ok(())
        }
        Command::Verify { dir, manifest } => {
            let manifest = manifest.unwrap_or_else(|| dir.join(ferry_client::manifest::FILE));
            let checked = ferry_client::manifest::verify(&dir, &manifest)?;
            for path in &checked.missing {
                println!("missing: {path}");
            }
            for path in &checked.differing {
                println!("differs: {path}");
            }
            if !checked.all_match() {
                bail!(
                    "{} of {} files do not match {}",
                    checked.missing.len() + checked.differing.len(),
                    checked.matching + checked.missing.len() + checked.differing.len(),
                    manifest.display()
                );
            }
            println!("{} files match {}", checked.matching, manifest.display());
            Ok(())
        }
        Command::Doctor { json } => {
            // Each of the appliance's addresses is checked on its own: one
            // node or uplink down is worth knowing before it matters.
            let creds = Credentials::load()?;
            let mut unusable = Vec::new();
            for address in ferry_client::credentials::addresses(&creds.server) {
                let one = Credentials {
                    server: address.to_owned(),
                    ..creds.clone()
                };
                let found = ferry_client::doctor::checkup(&Api::from_credentials(&one)?).await;
                if json {
                    println!("{}", serde_json::to_string(&found)?);
                } else {
                    print!("{}", found.words());
                }
                if !(found.control.ok && found.transports.iter().any(|t| t.ok)) {
                    unusable.push(address.to_owned());
                }
            }
            if !unusable.is_empty() {
                bail!(
                    "the appliance cannot be used from here at {} as things stand",
                    unusable.join(", ")
                );
            }
            Ok(())
        }
        Command::Get {
            source,
            dir,
            json,
            retries,
            pace,
        } => {
            let api = Api::from_credentials(&Credentials::load()?)?;
            let (mut opts, bar) = options(retries, PriorityRules::default(), json);
            opts.pace = pace.request();
            opts.transport = pace.transport;
            let result = transfer::get(&api, &source, &dir, &opts).await;
            finish(result, bar, json)
        }
    }
}

async fn job(command: JobCommand) -> Result<()> {
    let creds = Credentials::load()?;
    let api = Api::from_credentials(&creds)?;
    match command {
        JobCommand::Show { id, json } => {
            let d = api.job(id).await?;
            if json {
                println!("{}", serde_json::to_string(&d)?);
            } else {
                show::job_detail(&d);
            }
        }
        JobCommand::Pause { id } => report(api.job_action(id, "pause").await?),
        JobCommand::Resume { id } => {
            let job = api.job(id).await?.job;
            if job.status == ferry_api::JobStatus::Interrupted {
                bail!(
                    "job {id} ({}) was interrupted: run the same `ferry {}` command again, on the computer it ran on, and it continues from what arrived",
                    job.name,
                    job.kind
                );
            }
            if job.status == ferry_api::JobStatus::Paused {
                report(api.job_action(id, "resume").await?);
            }
            if job.kind == ferry_api::JobKind::Upload {
                match Manifest::load(api.server(), id)? {
                    Some(m) => {
                        let (opts, bar) = options(5, PriorityRules::default(), false);
                        let r = m.resume(&api, &opts).await;
                        if let Some(b) = bar {
                            b.finish();
                        }
                        let r = r?;
                        eprintln!(
                            "job {id}: upload complete, {} sent",
                            progress::bytes(r.bytes_transferred)
                        );
                    }
                    None if job.status != ferry_api::JobStatus::Done => {
                        bail!("job {id}'s files were sent from another computer: resume it there")
                    }
                    None => {}
                }
            }
        }
        JobCommand::Abort { id } => report(api.job_action(id, "abort").await?),
        JobCommand::Retry { id } => report(api.job_action(id, "retry").await?),
        JobCommand::Purge { id, delete_files } => {
            api.purge(id, delete_files).await?;
            eprintln!("job {id} purged");
        }
        JobCommand::Rate { id, rate } => {
            let rate = match rate.trim() {
                "site" | "none" | "" => None,
                r => Some(r.parse::<Rate>()?.to_string()),
            };
            let job = api.set_rate(id, rate.as_deref()).await?;
            match job
                .target_rate
                .and_then(|b| Rate::from_bits_per_sec(b).ok())
            {
                Some(r) => eprintln!("job {id} is capped at {r}"),
                None => eprintln!("job {id} follows the appliance's cap"),
            }
            if let Some(p) = job.pace {
                let over = job
                    .transport
                    .map(|t| format!(" over {t}"))
                    .unwrap_or_default();
                eprintln!("its session now runs {p}{over}");
            }
        }
        JobCommand::Urgent { id, off } => {
            let job = api.set_urgent(id, !off).await?;
            if job.urgent {
                eprintln!("job {id} is urgent: the bandwidth schedule does not slow it");
            } else {
                eprintln!("job {id} shares the bandwidth schedule's cap again");
            }
            if let Some(p) = job.pace {
                eprintln!("its session now runs {p}");
            }
        }
        JobCommand::Priority { id, glob, priority } => {
            let d = api.set_priority(id, &glob, &priority).await?;
            show::job_detail(&d);
        }
    }
    Ok(())
}

fn report(job: JobInfo) {
    eprintln!("job {} is {}", job.id, job.status);
}

/// Runs the agent with one line per event on stdout (on stderr when `json`
/// keeps stdout for one JSON object per job received), and bars on a
/// terminal; Ctrl-C stops it cleanly, resumable.
async fn run_agent(agent: Agent, until: Until, json: bool) -> Result<ferry_client::agent::Summary> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = agent.stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop.stop(ferry_proto::ErrorCode::Aborted, "stopped on this computer");
        }
    });
    let bars = std::io::stderr().is_terminal().then(progress::Bars::new);
    let printer = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if let (Some(b), AgentEvent::Started { job, progress, .. }) = (&bars, &event) {
                b.add(job.id, &job.name, progress.clone());
            }
            let line = show::agent_line(&event);
            match &bars {
                Some(b) => b.println(&line),
                None if json => eprintln!("{line}"),
                None => {
                    println!("{line}");
                    let _ = std::io::stdout().flush();
                }
            }
            if let (true, AgentEvent::Completed { job, report }) = (json, &event) {
                let received = serde_json::json!({ "job": job, "report": report });
                println!("{received}");
                let _ = std::io::stdout().flush();
            }
            if let (
                Some(b),
                AgentEvent::Completed { job, .. } | AgentEvent::Withdrawn { job, .. },
            ) = (&bars, &event)
            {
                b.remove(*job);
            }
        }
    });
    let summary = agent.run(until, tx).await;
    let _ = printer.await;
    Ok(summary?)
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
        eprintln!("{}", summary(&report));
    }
    Ok(())
}

/// A finished transfer in one line.
fn summary(r: &ferry_client::transfer::Report) -> String {
    let over = r
        .transport
        .map(|t| format!(" over {t}"))
        .unwrap_or_default();
    format!(
        "{} files, {} transferred{over}, {} already there, in {:.1}s",
        r.files,
        progress::bytes(r.bytes_transferred),
        progress::bytes(r.bytes_skipped),
        r.seconds
    )
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
    let expected: Option<Fingerprint> = fingerprint
        .or_else(|| std::env::var("FERRY_FINGERPRINT").ok())
        .map(|f| f.parse())
        .transpose()
        .context("--fingerprint")?;
    // First contact: learn (or check) the certificate before sending any
    // secret.
    let contact = signin::first_contact(&server, expected).await?;
    let (server, seen) = (contact.server.clone(), contact.fingerprint);
    for address in &contact.unreachable {
        eprintln!(
            "warning: {address} did not answer; it stays in the list, its certificate unchecked"
        );
    }
    if expected.is_none() {
        eprintln!(
            "The appliance at {server} presents a certificate whose key fingerprint (SHA-256) is"
        );
        eprintln!("  {seen}");
        eprintln!("  ({})", seen.colon_pairs());
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
    let key_name = format!("ferry login on {}", signin::this_computer());
    let signed = signin::sign_in(&contact, &email, &password, key_name).await?;
    if signed.must_change_password {
        let new = if new_password_stdin {
            stdin_lines.get(1).cloned().ok_or_else(|| {
                anyhow!("the password is one-time: give the new one on the next line of stdin")
            })?
        } else {
            eprintln!("This password is one-time: choose a new one (at least 8 characters).");
            rpassword::prompt_password("New password: ")?
        };
        signin::change_password(&signed.credentials, &password, &new).await?;
        eprintln!("password changed");
    }
    let path = signed.credentials.save()?;
    eprintln!(
        "logged in to {server} as {} ({}); credentials in {}",
        signed.credentials.user.as_deref().unwrap_or(&email),
        signed.role,
        path.display()
    );
    Ok(())
}
