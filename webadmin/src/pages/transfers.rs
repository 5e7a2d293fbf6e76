//! Transfers: every job, newest first, with tabs for unfinished and
//! finished, filters by user and status, cursor paging (fast at any depth:
//! it walks the primary key), a job's files and sequences, and the actions
//! the rulebook gives the viewer on each job (the same the API, the CLI and
//! the desktop app offer).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use ferry_api::{JobAction, JobDetail, JobInfo, JobKind, JobLine, JobStatus};
use ferry_domain::JobId;
use ferryd_core::jobs::Listing;
use maud::{Markup, html};
use serde::Deserialize;

use super::{done, html, html_status};
use crate::auth::{Posted, Staff};
use crate::format::{ago, bytes, percent, rate, timestamp};
use crate::layout::{Notice, button, csrf, staff_page, url_escape};
use crate::{Refused, Web};

/// Jobs per page.
pub const PAGE: u32 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    tab: Option<String>,
    user: Option<String>,
    status: Option<String>,
    before: Option<i64>,
    ok: Option<String>,
}

impl ListQuery {
    fn finished(&self) -> bool {
        self.tab.as_deref() == Some("finished")
    }

    /// This page's address with another cursor.
    fn with_before(&self, before: Option<i64>) -> String {
        let mut q = vec![];
        if self.finished() {
            q.push("tab=finished".to_owned());
        }
        if let Some(u) = self.user.as_deref().filter(|u| !u.is_empty()) {
            q.push(format!("user={}", url_escape(u)));
        }
        if let Some(s) = self.status.as_deref().filter(|s| !s.is_empty()) {
            q.push(format!("status={}", url_escape(s)));
        }
        if let Some(b) = before {
            q.push(format!("before={b}"));
        }
        if q.is_empty() {
            "/transfers".to_owned()
        } else {
            format!("/transfers?{}", q.join("&"))
        }
    }
}

/// The page's filters as a listing for the jobs service.
async fn listing(web: &Web, q: &ListQuery) -> Result<Listing, Refused> {
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(
            s.parse::<JobStatus>()
                .map_err(|e| Refused::new(e.to_string()))?,
        ),
        None => None,
    };
    let person = match q.user.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
        Some(email) => Some(web.services.users.by_email(email).await?.id),
        None => None,
    };
    Ok(Listing {
        finished: q.finished(),
        all: !q.finished(),
        status,
        person,
        before: q.before.map(JobId),
        limit: PAGE,
        ..Default::default()
    })
}

pub async fn page(
    State(web): State<Arc<Web>>,
    staff: Staff,
    Query(q): Query<ListQuery>,
) -> Response {
    let notice = Notice::from_code(q.ok.as_deref());
    let listed = match listing(&web, &q).await {
        Ok(l) => web
            .services
            .jobs
            .list(&staff.user, &l)
            .await
            .map_err(Refused::from),
        Err(e) => Err(e),
    };
    match listed {
        Ok(list) => html(view(
            &staff,
            &q,
            &list.jobs,
            list.next_cursor,
            notice.as_ref(),
        )),
        Err(e) => html_status(
            StatusCode::BAD_REQUEST,
            view(&staff, &q, &[], None, Some(&Notice::Error(e.message))),
        ),
    }
}

fn view(
    staff: &Staff,
    q: &ListQuery,
    jobs: &[JobInfo],
    next: Option<i64>,
    notice: Option<&Notice>,
) -> Markup {
    let t = jiff::Timestamp::now().as_second();
    let back = q.with_before(q.before);
    staff_page(
        "Transfers",
        "/transfers",
        staff,
        notice,
        html! {
            nav.tabs {
                a href="/transfers" class=[(!q.finished()).then_some("active")] { "All" }
                a href="/transfers?tab=finished" class=[q.finished().then_some("active")] { "Finished" }
            }
            form.filters method="get" action="/transfers" {
                @if q.finished() { input type="hidden" name="tab" value="finished"; }
                label { "User" input type="search" name="user" value=(q.user.as_deref().unwrap_or("")) placeholder="email"; }
                label { "Status"
                    select name="status" {
                        option value="" { "any" }
                        @for s in JobStatus::ALL {
                            option value=(s) selected[q.status.as_deref() == Some(s.as_str())] { (s) }
                        }
                    }
                }
                button type="submit" { "Filter" }
            }
            @if jobs.is_empty() {
                p.empty {
                    @if q.finished() { "No finished jobs match. " } @else { "No unfinished jobs match. " }
                    "Jobs appear here when someone runs " code { "ferry send" } ", " code { "ferry put" } " or " code { "ferry get" } "."
                }
            } @else {
                table.jobs #jobs {
                    thead { tr {
                        th.num { "Job" } th { "Name" } th { "From → to" } th { "Status" } th { "Progress" } th.num { "Rate" } th { "Created" } th { "Actions" }
                    } }
                    tbody {
                        @for j in jobs { (row(staff, j, t, &back)) }
                    }
                }
            }
            nav.pager {
                @if q.before.is_some() { a href=(q.with_before(None)) { "« Newest" } }
                @if let Some(n) = next { a href=(q.with_before(Some(n))) { "Older »" } }
            }
        },
    )
}

fn row(staff: &Staff, j: &JobInfo, t: i64, back: &str) -> Markup {
    let pct = j.percent();
    let to = j.recipient.as_deref().map_or_else(
        || match (&j.share, j.kind) {
            (Some(s), JobKind::Get) => format!("share {s} → {}", j.owner),
            (Some(s), _) => format!("{} → share {s}", j.owner),
            (None, _) => j.owner.clone(),
        },
        |r| format!("{} → {r}", j.owner),
    );
    html! {
        tr data-job=(j.id) data-status=(j.status) {
            td.num { (j.id) }
            td {
                a href={"/transfers/" (j.id)} { (j.name) }
                " " span.kind { (j.kind) }
                br; span.hint { (j.files_done) " of " (j.files_total) " files" }
            }
            td { (to) }
            td {
                span class={"badge " (j.status)} { (j.status) }
                @if let Some(e) = &j.error { br; span.hint.error title=(e) { (e) } }
            }
            td.progress {
                progress max="100" value=(pct) {}
                " " span.hint { (bytes(j.bytes_done.max(0) as u64)) " of " (bytes(j.bytes_total.max(0) as u64)) " (" (pct) " %)" }
            }
            td.num { @if j.status == JobStatus::Running { (rate(j.rate.max(0) as u64)) } @else { "–" } }
            td title=(timestamp(j.created_at)) { (ago(j.created_at, t)) }
            td.actions { (actions(staff, j, back)) }
        }
    }
}

/// The buttons the rulebook gives this viewer on this job (`actions`,
/// computed by the jobs service): nothing is offered that would be
/// refused.
fn actions(staff: &Staff, j: &JobInfo, back: &str) -> Markup {
    let url = format!("/transfers/{}/action", j.id);
    let b = |action: JobAction, label: &str, class: &str| {
        button(
            staff,
            &url,
            label,
            class,
            &[("action", action.as_str()), ("back", back)],
        )
    };
    let may = |a: JobAction| j.actions.contains(&a);
    html! {
        @if may(JobAction::Resume) { (b(JobAction::Resume, "Resume", "")) }
        @if may(JobAction::Pause) { (b(JobAction::Pause, "Pause", "")) }
        @if may(JobAction::Abort) { (b(JobAction::Abort, "Abort", "danger")) }
        @if may(JobAction::Retry) { (b(JobAction::Retry, "Retry", "")) }
        @if may(JobAction::Purge) { (b(JobAction::Purge, "Purge", "danger")) }
        @if may(JobAction::Urgent) {
            (button(
                staff,
                &format!("/transfers/{}/urgent", j.id),
                if j.urgent { "Not urgent" } else { "Urgent" },
                "",
                &[("urgent", if j.urgent { "false" } else { "true" }), ("back", back)],
            ))
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct UrgentForm {
    urgent: bool,
    back: Option<String>,
}

/// Marks a job urgent (the bandwidth schedule does not slow it), or not.
pub async fn urgent(
    State(web): State<Arc<Web>>,
    Path(id): Path<i64>,
    posted: Posted<UrgentForm>,
) -> Response {
    let Posted { staff, form } = posted;
    let back = crate::layout::local_path(form.back.as_deref());
    match web
        .services
        .jobs
        .set_urgent(&staff.user, staff.from, id, form.urgent)
        .await
    {
        Ok(_) => done(&back, if form.urgent { "urgent" } else { "not-urgent" }),
        Err(e) => crate::layout::failure_page(&e),
    }
}

#[derive(Debug, Deserialize)]
pub struct ActionForm {
    action: JobAction,
    back: Option<String>,
}

pub async fn act(
    State(web): State<Arc<Web>>,
    Path(id): Path<i64>,
    posted: Posted<ActionForm>,
) -> Response {
    let Posted { staff, form } = posted;
    let back = crate::layout::local_path(form.back.as_deref());
    match web
        .services
        .jobs
        .act(&staff.user, staff.from, id, form.action)
        .await
    {
        Ok(_) => done(&back, form.action.as_str()),
        Err(e) => crate::layout::failure_page(&e),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct DetailQuery {
    ok: Option<String>,
}

pub async fn detail(
    State(web): State<Arc<Web>>,
    staff: Staff,
    Path(id): Path<i64>,
    Query(q): Query<DetailQuery>,
) -> Response {
    match web.services.jobs.detail(&staff.user, id).await {
        Ok(d) => html(detail_view(
            &staff,
            &d,
            Notice::from_code(q.ok.as_deref()).as_ref(),
        )),
        Err(e) => crate::layout::failure_page(&e),
    }
}

pub fn detail_view(staff: &Staff, d: &JobDetail, notice: Option<&Notice>) -> Markup {
    let j = &d.job;
    let t = jiff::Timestamp::now().as_second();
    let back = format!("/transfers/{}", j.id);
    staff_page(
        &format!("Job {}: {}", j.id, j.name),
        "/transfers",
        staff,
        notice,
        html! {
            dl.facts {
                dt { "Status" } dd { span class={"badge " (j.status)} { (j.status) } @if let Some(e) = &j.error { " " (e) } }
                dt { "Kind" } dd { (j.kind) }
                dt { "Sender" } dd { (j.owner) }
                @if let Some(r) = &j.recipient { dt { "Recipient" } dd { (r) } }
                @if let Some(s) = &j.share { dt { "Share" } dd { (s) " / " (j.folder) } }
                dt { "Progress" } dd {
                    (j.files_done) " of " (j.files_total) " files, "
                    (bytes(j.bytes_done.max(0) as u64)) " of " (bytes(j.bytes_total.max(0) as u64))
                }
                @if let Some(p) = &j.pace { dt { "Pace" } dd { (p) } }
                @if j.urgent { dt { "Urgent" } dd { "yes: the bandwidth schedule does not slow it" } }
                @if let Some(t) = &j.transport { dt { "Transport" } dd { (t) } }
                dt { "Created" } dd title=(timestamp(j.created_at)) { (ago(j.created_at, t)) }
                @if let Some(e) = j.expires_at { dt { "Expires" } dd title=(timestamp(e)) { (ago(e, t)) } }
            }
            div.actions { (actions(staff, j, &back)) }
            h2 { "Files and sequences" }
            @if d.lines.is_empty() {
                p.empty {
                    @if !j.kind.is_delivery() {
                        "A direct transfer (ferry put or ferry get) is tracked as a whole; deliveries list their files here."
                    } @else {
                        "No files yet: the sender's plan has not arrived."
                    }
                }
            } @else {
                table.files {
                    thead { tr { th { "Name" } th.num { "Files" } th.num { "Size" } th { "Progress" } th.num { "Priority" } th { "Status" } } }
                    tbody {
                        @for l in &d.lines { (line(l)) }
                    }
                }
            }
            @if j.actions.contains(&JobAction::Priority) {
                h2 { "Change priority" }
                form.inline-form method="post" action={"/transfers/" (j.id) "/priority"} {
                    (csrf(staff))
                    label { "Files matching" input type="text" name="glob" required placeholder="*.mp4 or shot010/*"; }
                    label { "Priority" input type="text" name="priority" required placeholder="high, low or 1–1000"; }
                    button type="submit" { "Set" }
                }
            }
        },
    )
}

pub(crate) fn line(l: &JobLine) -> Markup {
    let pct = percent(l.bytes_done.max(0) as u64, l.size.max(0) as u64);
    html! {
        tr {
            td {
                (l.name)
                @if !l.missing.is_empty() { br; span.hint.error { "missing frames: " (l.missing.join(", ")) } }
            }
            td.num { (l.files) }
            td.num { (bytes(l.size.max(0) as u64)) }
            td { progress max="100" value=(pct) {} " " span.hint { (pct) " %" } }
            td.num { (l.priority) }
            td { span class={"badge " (l.status)} { (l.status) } }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct PriorityForm {
    glob: String,
    priority: String,
}

pub async fn priority(
    State(web): State<Arc<Web>>,
    Path(id): Path<i64>,
    posted: Posted<PriorityForm>,
) -> Response {
    let Posted { staff, form } = posted;
    let jobs = &web.services.jobs;
    match jobs
        .reprioritise(&staff.user, staff.from, id, &form.glob, &form.priority)
        .await
    {
        Ok(_) => done(&format!("/transfers/{id}"), "priority"),
        Err(e) => match jobs.detail(&staff.user, id).await {
            Ok(d) => html_status(
                StatusCode::BAD_REQUEST,
                detail_view(&staff, &d, Some(&Notice::Error(e.to_string()))),
            ),
            Err(e) => crate::layout::failure_page(&e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::tests::staff;

    fn job(id: i64, status: JobStatus) -> JobInfo {
        let mut j: JobInfo = serde_json::from_value(serde_json::json!({
            "id": id, "kind": "download", "name": "review-<b>0412</b>", "status": status,
            "owner": "ann@example.com", "recipient": "director@example.com",
            "folder": "", "files_total": 3, "files_done": 1,
            "bytes_total": 3_000_000_000i64, "bytes_done": 1_000_000_000i64, "bytes_skipped": 0,
            "rate": 11_000_000, "retries": 0, "created_at": 0
        }))
        .unwrap();
        j.actions = status.allows().to_vec();
        j
    }

    #[test]
    fn a_page_of_jobs_shows_progress_actions_and_a_cursor() {
        let s = staff(true);
        let q = ListQuery::default();
        let out = view(
            &s,
            &q,
            &[job(12, JobStatus::Running), job(11, JobStatus::Failed)],
            Some(11),
            None,
        )
        .into_string();
        assert!(
            out.contains("review-&lt;b&gt;0412&lt;/b&gt;"),
            "names are escaped"
        );
        assert!(out.contains("ann@example.com → director@example.com"));
        assert!(out.contains("1.00 GB of 3.00 GB (33 %)"));
        assert!(out.contains("11.0 MB/s"));
        assert!(out.contains(r#"href="/transfers?before=11""#));
        // A running job pauses and aborts; a failed one retries.
        assert!(out.contains(r#"value="pause""#));
        assert!(out.contains(r#"value="retry""#));
        // Nothing the viewer may not do is offered.
        let mut bare = job(13, JobStatus::Running);
        bare.actions = vec![JobAction::Pause];
        let out = view(&s, &q, &[bare], None, None).into_string();
        assert!(out.contains(r#"value="pause""#));
        assert!(!out.contains(r#"value="abort""#));
        assert!(!out.contains(r#"value="purge""#));
        assert!(out.contains(&format!(r#"name="csrf" value="{}""#, s.csrf)));
    }

    #[test]
    fn filters_survive_paging() {
        let q = ListQuery {
            tab: Some("finished".into()),
            user: Some("a b@example.com".into()),
            status: Some("done".into()),
            ..Default::default()
        };
        assert_eq!(
            q.with_before(Some(40)),
            "/transfers?tab=finished&user=a%20b%40example.com&status=done&before=40"
        );
    }

    #[test]
    fn a_sequence_reads_as_one_line_with_its_gaps() {
        let s = staff(false);
        let d = JobDetail {
            job: job(3, JobStatus::Running),
            tasks: vec![],
            lines: vec![JobLine {
                kind: ferry_api::LineKind::Sequence,
                name: "shot010.####.exr [1001-1100]".into(),
                files: 98,
                missing: vec!["1050-1051".into()],
                size: 98_000_000,
                bytes_done: 49_000_000,
                priority: 500,
                status: ferry_api::TaskStatus::Running,
                finished_at: None,
            }],
        };
        let out = detail_view(&s, &d, None).into_string();
        assert!(out.contains("shot010.####.exr [1001-1100]"));
        assert!(out.contains("missing frames: 1050-1051"));
        assert!(out.contains(">98<"));
    }
}
