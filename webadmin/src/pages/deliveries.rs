//! A signed-in person's own deliveries, in the browser: what they receive
//! (and, for staff, what they sent), each delivery's files and sequences,
//! and its downloads: one file, or everything as one zip, both resumable.
//!
//! Who may fetch what is the portal service's and its rule's
//! ([`ferry_domain::rules::fetch`]): only a delivery's recipient, and
//! anyone else is told there is no such delivery (404). The bytes are
//! served through [`crate::fetch`], which answers `Range` and `If-Range`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use ferry_api::{JobDetail, JobInfo};
use ferry_domain::{JobKind, JobStatus};
use ferryd_core::jobs::{Listing, Side};
use ferryd_core::portal::Opened;
use maud::{Markup, html};

use super::html;
use super::transfers::line;
use crate::auth::Member;
use crate::format::{ago, bytes, timestamp};
use crate::layout::{MemberTab, failure_page, member_page, url_escape};
use crate::{Refused, Web};

/// A delivery above this size gets the hint that the Ferry app is faster.
const APP_HINT_BYTES: i64 = 2_000_000_000;

async fn listing(web: &Web, member: &Member, side: Side) -> Result<Vec<JobInfo>, Refused> {
    let q = Listing {
        all: true,
        kind: Some(JobKind::Download),
        side,
        limit: 200,
        ..Default::default()
    };
    Ok(web.services.jobs.list(&member.user, &q).await?.jobs)
}

pub async fn page(State(web): State<Arc<Web>>, member: Member) -> Response {
    let received = match listing(&web, &member, Side::Recipient).await {
        Ok(l) => l,
        Err(e) => return crate::layout::error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.message),
    };
    let sent = if member.is_staff() {
        match listing(&web, &member, Side::Sender).await {
            Ok(l) => l,
            Err(e) => {
                return crate::layout::error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.message);
            }
        }
    } else {
        Vec::new()
    };
    html(list_view(&member, &received, &sent))
}

pub fn list_view(member: &Member, received: &[JobInfo], sent: &[JobInfo]) -> Markup {
    let t = jiff::Timestamp::now().as_second();
    member_page(
        "Your deliveries",
        MemberTab::Deliveries,
        member,
        None,
        html! {
            @if received.is_empty() {
                p.empty { "Nothing has been sent to you yet. When it is, an email tells you and it appears here." }
            } @else {
                table.jobs {
                    thead { tr { th { "Delivery" } th { "From" } th.num { "Files" } th.num { "Size" } th { "Expires" } th { "Received" } } }
                    tbody {
                        @for j in received {
                            tr {
                                td { a href={"/deliveries/" (j.id)} { (j.delivery_name.as_deref().unwrap_or(&j.name)) } }
                                td { (j.owner) }
                                td.num { (j.files_total) }
                                td.num { (bytes(j.bytes_total.max(0) as u64)) }
                                td { @if let Some(e) = j.expires_at { span title=(timestamp(e)) { (ago(e, t)) } } }
                                td { (progress(j)) }
                            }
                        }
                    }
                }
            }
            @if member.is_staff() {
                h2 { "Sent by you" }
                @if sent.is_empty() {
                    p.empty { "You have sent no deliveries." }
                } @else {
                    table.jobs {
                        thead { tr { th { "Delivery" } th { "To" } th.num { "Files" } th.num { "Size" } th { "Expires" } th { "Received" } } }
                        tbody {
                            @for j in sent {
                                tr {
                                    td { a href={"/transfers/" (j.id)} { (j.delivery_name.as_deref().unwrap_or(&j.name)) } }
                                    td { (j.recipient.as_deref().unwrap_or("")) }
                                    td.num { (j.files_total) }
                                    td.num { (bytes(j.bytes_total.max(0) as u64)) }
                                    td { @if let Some(e) = j.expires_at { span title=(timestamp(e)) { (ago(e, t)) } } }
                                    td { (progress(j)) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn progress(j: &JobInfo) -> Markup {
    let pct = j.percent();
    html! {
        progress max="100" value=(pct) {} " " span.hint { (pct) " %" }
        " " span class={"badge " (j.status)} { (j.status) }
    }
}

/// The delivery a download job is, for its recipient.
async fn opened(web: &Web, member: &Member, id: i64) -> Result<Opened, Response> {
    web.services
        .portal
        .open(&member.user, id, member.from)
        .await
        .map_err(|e| failure_page(&e))
}

pub async fn detail(State(web): State<Arc<Web>>, member: Member, Path(id): Path<i64>) -> Response {
    let opened = match opened(&web, &member, id).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let detail = match web.services.jobs.detail(&member.user, id).await {
        Ok(d) => d,
        Err(e) => return failure_page(&e),
    };
    html(detail_view(&member, &detail, &opened))
}

pub fn detail_view(member: &Member, d: &JobDetail, opened: &Opened) -> Markup {
    let j = &d.job;
    let t = jiff::Timestamp::now().as_second();
    let base = format!("/deliveries/{}", j.id);
    let total: u64 = opened.files.iter().map(|f| f.size).sum();
    member_page(
        j.delivery_name.as_deref().unwrap_or(&j.name),
        MemberTab::Deliveries,
        member,
        None,
        html! {
            dl.facts {
                dt { "From" } dd { (j.owner) }
                dt { "Files" } dd { (j.files_total) " files, " (bytes(j.bytes_total.max(0) as u64)) }
                dt { "Received" } dd { (progress(j)) }
                @if let Some(e) = j.expires_at { dt { "Expires" } dd title=(timestamp(e)) { (ago(e, t)) } }
            }
            div.actions {
                @if opened.complete() && !opened.files.is_empty() {
                    a.button.primary href={(base) "/all.zip"} download { "Download all (zip, " (bytes(total)) ")" }
                } @else if !opened.complete() {
                    p.hint { (opened.waiting) " files are still on their way to the appliance. Each file can be downloaded as soon as it arrives; the whole delivery as a zip once all have." }
                }
            }
            @if j.bytes_total >= APP_HINT_BYTES {
                p.hint {
                    "This delivery is large. The browser downloads over one connection, which a long or lossy link slows down; "
                    "the Ferry desktop app (or " code { "ferry agent" } ") receives it over accelerated transfers, resumes by itself and checks every file. "
                    "Ask the sender for it."
                }
            }
            h2 { "Files and sequences" }
            table.files {
                thead { tr { th { "Name" } th.num { "Files" } th.num { "Size" } th { "Progress" } th.num { "Priority" } th { "Status" } } }
                tbody { @for l in &d.lines { (line(l)) } }
            }
            details {
                summary { "Download single files (" (opened.files.len()) ")" }
                ul.files {
                    @for f in &opened.files {
                        li { a href={(base) "/files/" (url_escape(&f.path))} download { (f.path) } " " span.hint { (bytes(f.size)) } }
                    }
                }
            }
            @if j.status == JobStatus::Done {
                p.hint { "Every file has reached you. You may download them again until the delivery expires." }
            }
        },
    )
}

/// `GET /deliveries/{id}/files/{*path}`: one file, resumable.
pub async fn file(
    State(web): State<Arc<Web>>,
    member: Member,
    Path((id, path)): Path<(i64, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let opened = match opened(&web, &member, id).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    crate::fetch::file(&web.services.portal, opened, &path, &method, &headers).await
}

/// `GET /deliveries/{id}/all.zip`: the whole delivery, resumable.
pub async fn zip(
    State(web): State<Arc<Web>>,
    member: Member,
    Path(id): Path<i64>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let opened = match opened(&web, &member, id).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    crate::fetch::zip(&web.services.portal, opened, &method, &headers)
}
