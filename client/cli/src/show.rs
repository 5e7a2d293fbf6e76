//! How jobs and agent events read on a terminal.

use ferry_api::{JobDetail, JobInfo};
use ferry_client::agent::AgentEvent;
use ferry_engine::FileEvent;

pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

fn ibytes(n: i64) -> String {
    bytes(n.max(0) as u64)
}

/// A date and time (UTC) for a Unix second.
pub fn when(t: i64) -> String {
    jiff::Timestamp::from_second(t)
        .map(|t| t.strftime("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// Who a job is about: the recipient of a download, else its owner.
fn who(j: &JobInfo) -> &str {
    j.recipient.as_deref().unwrap_or(&j.owner)
}

/// Progress in bytes, as the web admin and the desktop app show it; the
/// count of finished files beside it.
fn progress(j: &JobInfo) -> String {
    format!(
        "{:>3}% · {}/{} files",
        j.percent(),
        j.files_done,
        j.files_total
    )
}

pub fn jobs_table(jobs: &[JobInfo]) {
    if jobs.is_empty() {
        println!("no jobs (finished ones are listed with --finished or --all)");
        return;
    }
    println!(
        "{:>6}  {:<8}  {:<8}  {:<28}  {:<26}  {:<20}  RATE",
        "ID", "KIND", "STATUS", "NAME", "WHO", "PROGRESS"
    );
    for j in jobs {
        let rate = if j.status == ferry_api::JobStatus::Running {
            let over = j
                .transport
                .map(|t| format!(" over {t}"))
                .unwrap_or_default();
            format!("{}/s{over}", ibytes(j.rate))
        } else {
            j.error.clone().unwrap_or_default()
        };
        println!(
            "{:>6}  {:<8}  {:<8}  {:<28}  {:<26}  {:<20}  {}",
            j.id,
            j.kind,
            j.status,
            truncate(&j.name, 28),
            truncate(who(j), 26),
            progress(j),
            rate
        );
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

pub fn job_detail(d: &JobDetail) {
    let j = &d.job;
    println!("job {}  {}  {}  {}", j.id, j.kind, j.status, j.name);
    let place = match (&j.share, j.folder.is_empty()) {
        (Some(s), false) => format!("share={s}/{}", j.folder),
        (Some(s), true) => format!("share={s}/"),
        _ => String::new(),
    };
    match &j.recipient {
        Some(r) => println!("  from {} to {r}, {place}", j.owner),
        None => println!("  by {}, {place}", j.owner),
    }
    println!(
        "  {} of {} files, {} of {}{}",
        j.files_done,
        j.files_total,
        ibytes(j.bytes_done),
        ibytes(j.bytes_total),
        j.expires_at
            .map(|e| format!(", expires {}", when(e)))
            .unwrap_or_default()
    );
    if let Some(e) = &j.error {
        println!("  last error: {e}");
    }
    println!();
    println!(
        "  {:>8}  {:<8}  {:>10}  {:<16}  FILE",
        "PRIORITY", "STATUS", "SIZE", "DONE AT"
    );
    for l in &d.lines {
        let mut name = l.name.clone();
        if l.kind == ferry_api::LineKind::Sequence {
            name.push_str(&format!(" ({} frames", l.files));
            if !l.missing.is_empty() {
                name.push_str(&format!(", missing {}", l.missing.join(", ")));
            }
            name.push(')');
        }
        println!(
            "  {:>8}  {:<8}  {:>10}  {:<16}  {}",
            l.priority,
            l.status,
            ibytes(l.size),
            l.finished_at.map(when).unwrap_or_default(),
            name
        );
    }
}

/// One line per agent event.
pub fn agent_line(e: &AgentEvent) -> String {
    match e {
        AgentEvent::Started { job, into, .. } => format!(
            "job {}: receiving {:?} ({} files, {}) from {} into {}",
            job.id,
            job.delivery_name.as_deref().unwrap_or(&job.name),
            job.files_total,
            ibytes(job.bytes_total),
            job.owner,
            into.display()
        ),
        AgentEvent::File { job, event } => match event {
            FileEvent::Done { path, size, .. } => {
                format!("job {job}: received {path} ({})", bytes(*size))
            }
            FileEvent::Skipped { path, size } => {
                format!("job {job}: {path} already here ({})", bytes(*size))
            }
        },
        AgentEvent::Completed { job, report } => format!(
            "job {job}: complete, {} files, {} received, {} already here, in {:.1}s",
            report.files,
            bytes(report.bytes_transferred),
            bytes(report.bytes_skipped),
            report.seconds
        ),
        AgentEvent::Interrupted {
            job,
            error,
            retry_in,
        } => {
            format!(
                "job {job}: interrupted ({error}); trying again in {}s",
                retry_in.as_secs()
            )
        }
        AgentEvent::Withdrawn { job, reason } => format!("job {job}: {reason}; not resuming it"),
        AgentEvent::Unreachable { error, retry_in } => {
            format!(
                "cannot reach the appliance ({error}); trying again in {}s",
                retry_in.as_secs()
            )
        }
        AgentEvent::Paused { job } => {
            format!("job {job}: paused by its sender; it goes on when they resume it")
        }
        AgentEvent::UploadResumed { job } => {
            format!("job {job}: resuming the upload of this computer's files")
        }
        AgentEvent::UploadDone { job, report } => format!(
            "job {job}: upload complete, {} files, {} sent",
            report.files,
            bytes(report.bytes_transferred)
        ),
    }
}
