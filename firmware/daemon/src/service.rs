//! How ferryd meets the host's service manager: logging to the systemd
//! journal (with each job's and session's id as fields, so that
//! `journalctl JOB_ID=…` tells a job's story), readiness and the watchdog
//! (`Type=notify`), the console banner the appliance image shows at first
//! boot, and what admins may read back of the journal and of systemd.
//!
//! Outside systemd all of this steps aside: logs go to standard error, the
//! notifications are no-ops and the journal reader says it has nothing.

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;

use std::time::Duration;

use ferry_api::{JournalLine, SystemState};
use thiserror::Error;

use ferryd_core::Services;
use tokio_util::sync::CancellationToken;

/// The identifier ferryd's journal entries carry (`SYSLOG_IDENTIFIER`).
const IDENTIFIER: &str = "ferryd";

/// Logs to the journal when systemd connected our output to it, to
/// standard error otherwise. Returns whether the journal is in use.
pub fn init_logging() -> bool {
    if systemd_journal_logger::connected_to_journal()
        && let Ok(journal) = systemd_journal_logger::JournalLog::new()
        && journal
            .with_syslog_identifier(IDENTIFIER.to_owned())
            .install()
            .is_ok()
    {
        log::set_max_level(log::LevelFilter::Info);
        return true;
    }
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,quinn=warn,rustls=warn"),
    )
    .init();
    false
}

/// Tells systemd the appliance is serving.
pub fn ready(status: &str) {
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

/// Tells systemd the appliance is stopping on purpose.
pub fn stopping() {
    notify(&[sd_notify::NotifyState::Stopping]);
}

fn notify(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(false, state) {
        log::warn!("cannot notify systemd: {e}");
    }
}

/// Pings systemd's watchdog, when the unit has one, at half its interval,
/// and only while the runtime and the database both answer: a daemon that
/// cannot reach its database is restarted rather than left hanging.
pub async fn watchdog(services: Services, shutdown: CancellationToken) {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let interval = Duration::from_micros(usec) / 2;
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let answered = tokio::time::timeout(interval, services.users.count()).await;
        match answered {
            Ok(Ok(_)) => notify(&[sd_notify::NotifyState::Watchdog]),
            Ok(Err(e)) => log::error!("watchdog: the database does not answer: {e}"),
            Err(_) => log::error!("watchdog: the database took longer than {interval:?}"),
        }
    }
}

/// Writes the banner the appliance's console unit shows: the address, the
/// certificate fingerprint and, on the first start only, the one-time
/// password. Mode 0600 and replaced whole, so a reader never sees half.
pub fn write_console(
    path: &Path,
    address: &str,
    fingerprint: &str,
    password: Option<&str>,
) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let partial = path.with_extension("partial");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)?;
    writeln!(f, "address {address}")?;
    writeln!(f, "fingerprint {fingerprint}")?;
    if let Some(p) = password {
        writeln!(f, "password {p}")?;
    }
    f.sync_all()?;
    std::fs::rename(&partial, path)
}

#[derive(Debug, Error)]
pub enum JournalError {
    #[error("ferryd is not logging to the systemd journal here (it logs to standard error)")]
    NotInUse,
    #[error("cannot run journalctl: {0}")]
    Run(std::io::Error),
    #[error("journalctl failed: {0}")]
    Failed(String),
}

/// Which of ferryd's journal lines to read.
#[derive(Debug, Clone, Default)]
pub struct JournalFilter {
    pub job: Option<i64>,
    pub session: Option<u64>,
    /// The most recent this many lines.
    pub lines: usize,
}

/// Reads ferryd's own recent lines from the journal, oldest first.
pub async fn journal(
    in_use: bool,
    filter: &JournalFilter,
) -> Result<Vec<JournalLine>, JournalError> {
    if !in_use {
        return Err(JournalError::NotInUse);
    }
    let mut cmd = tokio::process::Command::new("journalctl");
    cmd.args(["--no-pager", "--output=json", "--lines"])
        .arg(filter.lines.to_string());
    // Our own unit's entries, which journald stamps itself (any process
    // may claim a SYSLOG_IDENTIFIER); outside a unit, our identifier.
    match own_unit() {
        Some(unit) => cmd.arg(format!("_SYSTEMD_UNIT={unit}")),
        None => cmd.arg(format!("SYSLOG_IDENTIFIER={IDENTIFIER}")),
    };
    // The logger files `job_id = …` as JOB_ID; the match is typed, so no
    // caller text reaches journalctl's arguments.
    if let Some(job) = filter.job {
        cmd.arg(format!("JOB_ID={job}"));
    }
    if let Some(session) = filter.session {
        cmd.arg(format!("SESSION_ID={session}"));
    }
    let out = cmd
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(JournalError::Run)?;
    if !out.status.success() {
        return Err(JournalError::Failed(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(journal_line)
        .collect())
}

/// The systemd unit we run in (`ferryd.service`), from our cgroup.
fn own_unit() -> Option<String> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let unit = path.rsplit('/').next()?;
    unit.ends_with(".service").then(|| unit.to_owned())
}

/// One `journalctl -o json` entry; entries without a message are skipped.
fn journal_line(json: &str) -> Option<JournalLine> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let field = |name: &str| v.get(name).and_then(|f| f.as_str());
    Some(JournalLine {
        time_us: field("__REALTIME_TIMESTAMP")?.parse().ok()?,
        priority: field("PRIORITY").and_then(|p| p.parse().ok()).unwrap_or(6),
        message: field("MESSAGE")?.to_owned(),
        job_id: field("JOB_ID").and_then(|j| j.parse().ok()),
        session_id: field("SESSION_ID").and_then(|s| s.parse().ok()),
    })
}

/// What systemd says of the whole appliance; `None` off systemd.
pub async fn system_state() -> Option<SystemState> {
    if !Path::new("/run/systemd/system").is_dir() {
        return None;
    }
    // A stuck D-Bus must not hold the status request.
    let run = |args: &'static [&'static str]| async move {
        let out = tokio::process::Command::new("systemctl")
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(Duration::from_secs(5), out)
            .await
            .ok()?
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    // is-system-running exits non-zero unless the state is "running"; its
    // output is the answer either way.
    let state = run(&["is-system-running"]).await?.trim().to_owned();
    let failed = run(&[
        "list-units",
        "--state=failed",
        "--plain",
        "--no-legend",
        "--no-pager",
    ])
    .await
    .unwrap_or_default();
    Some(SystemState {
        state,
        failed_units: failed
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_entries_become_lines() {
        let line = journal_line(
            r#"{"__REALTIME_TIMESTAMP":"1764200000000000","PRIORITY":"5","MESSAGE":"job 7 done: 50 MiB","JOB_ID":"7","SESSION_ID":"12","SYSLOG_IDENTIFIER":"ferryd"}"#,
        )
        .unwrap();
        assert_eq!(
            line,
            JournalLine {
                time_us: 1_764_200_000_000_000,
                priority: 5,
                message: "job 7 done: 50 MiB".into(),
                job_id: Some(7),
                session_id: Some(12),
            }
        );
        // A binary message (journalctl gives an array of bytes) is skipped,
        // as is anything that is not JSON.
        assert_eq!(
            journal_line(r#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":[104,105]}"#),
            None
        );
        assert_eq!(journal_line("garbage"), None);
    }

    #[tokio::test]
    async fn the_journal_reader_says_when_there_is_no_journal() {
        let err = journal(false, &JournalFilter::default()).await.unwrap_err();
        assert!(matches!(err, JournalError::NotInUse), "{err}");
    }

    #[test]
    fn the_console_banner_is_private_and_whole() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console");
        write_console(&path, "https://0.0.0.0:443/", "ab:cd", Some("pass-word")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "address https://0.0.0.0:443/\nfingerprint ab:cd\npassword pass-word\n"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        write_console(&path, "https://0.0.0.0:443/", "ab:cd", None).unwrap();
        assert!(!std::fs::read_to_string(&path).unwrap().contains("password"));
        assert!(!path.with_extension("partial").exists());
    }
}
