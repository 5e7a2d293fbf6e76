//! The mail outbox (admins only): messages not sent yet, because no SMTP
//! server is set or it is down, and messages the server refused. An admin
//! with no mail server sees here what never left, sends it again once the
//! server works, or discards it (and hands an invitation link over from
//! the Users page instead).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use ferry_store::UnsentMail;
use maud::{Markup, html};

use super::{done, html_status};
use crate::Web;
use crate::auth::{Admin, AdminPost, Staff};
use crate::format::{ago, timestamp};
use crate::layout::{Notice, button, staff_page};

pub async fn page(
    State(web): State<Arc<Web>>,
    Admin(staff): Admin,
    Query(q): Query<super::users::PageQuery>,
) -> Response {
    render(
        &web,
        &staff,
        Notice::from_code(q.ok.as_deref()),
        StatusCode::OK,
    )
    .await
}

async fn render(web: &Web, staff: &Staff, notice: Option<Notice>, status: StatusCode) -> Response {
    let smtp = web.services.settings.current().smtp.is_some();
    match web.services.notifier.unsent(staff.by()).await {
        Ok(mail) => html_status(status, view(staff, &mail, smtp, notice.as_ref())),
        Err(e) => crate::layout::error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

pub fn view(staff: &Staff, mail: &[UnsentMail], smtp: bool, notice: Option<&Notice>) -> Markup {
    let t = jiff::Timestamp::now().as_second();
    staff_page(
        "Outbox",
        "/outbox",
        staff,
        notice,
        html! {
            @if !smtp {
                p.notice {
                    "No SMTP server is set (Settings → Email), so messages wait here. "
                    "Invited people can still get in: on the Users page, "
                    strong { "Invitation link" } " makes a link to hand over yourself."
                }
            }
            @if mail.is_empty() {
                p.hint #outbox-empty { "Every message has been sent." }
            } @else {
                table #outbox {
                    thead { tr { th { "To" } th { "About" } th { "Queued" } th { "State" } th { "Actions" } } }
                    tbody {
                        @for m in mail {
                            tr data-mail=(m.id) {
                                td { (m.to) }
                                td { (m.subject) br; span.kind { (m.kind) } }
                                td title=(timestamp(m.created_at)) { (ago(m.created_at, t)) }
                                td {
                                    @match m.failed_at {
                                        Some(_) => { span.badge.failed { "failed" } }
                                        None => { span.badge.paused { "waiting" } }
                                    }
                                    " " span.hint { (m.attempts) " attempts" }
                                    @if let Some(e) = &m.last_error { br; span.hint { (e) } }
                                }
                                td.actions {
                                    (button(staff, &format!("/outbox/{}/retry", m.id), "Send again", "", &[]))
                                    (button(staff, &format!("/outbox/{}/discard", m.id), "Discard", "danger", &[]))
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

pub async fn retry(
    State(web): State<Arc<Web>>,
    Path(id): Path<i64>,
    posted: AdminPost<super::users::Empty>,
) -> Response {
    let staff = posted.staff;
    let done_now = web
        .services
        .notifier
        .send_again(staff.by(), staff.actor(), id)
        .await;
    answer(&web, &staff, done_now, "mail-again").await
}

pub async fn discard(
    State(web): State<Arc<Web>>,
    Path(id): Path<i64>,
    posted: AdminPost<super::users::Empty>,
) -> Response {
    let staff = posted.staff;
    let done_now = web
        .services
        .notifier
        .discard(staff.by(), staff.actor(), id)
        .await;
    answer(&web, &staff, done_now, "mail-discarded").await
}

/// Back to the outbox with a confirmation, or the page with the error.
async fn answer(
    web: &Web,
    staff: &Staff,
    result: Result<(), ferryd_core::notifier::OutboxError>,
    code: &str,
) -> Response {
    match result {
        Ok(()) => done("/outbox", code),
        Err(e) => {
            render(
                web,
                staff,
                Some(Notice::Error(e.to_string())),
                StatusCode::BAD_REQUEST,
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::tests::staff;

    #[test]
    fn waiting_and_failed_mail_show_with_their_actions() {
        let mail = [
            UnsentMail {
                id: 7,
                kind: "invitation".into(),
                to: "dir@client.example".into(),
                subject: "You are invited".into(),
                created_at: 0,
                attempts: 0,
                next_attempt_at: 0,
                failed_at: None,
                last_error: None,
            },
            UnsentMail {
                id: 8,
                kind: "delivery.waiting".into(),
                to: "<b>x</b>@client.example".into(),
                subject: "A delivery".into(),
                created_at: 0,
                attempts: 3,
                next_attempt_at: 0,
                failed_at: Some(5),
                last_error: Some("550 no such user".into()),
            },
        ];
        let out = view(&staff(true), &mail, false, None).into_string();
        assert!(out.contains("No SMTP server is set"));
        assert!(out.contains("/outbox/7/retry") && out.contains("/outbox/8/discard"));
        assert!(out.contains("waiting") && out.contains("550 no such user"));
        assert!(!out.contains("<b>x</b>"), "names render inert");
        let empty = view(&staff(true), &[], true, None).into_string();
        assert!(empty.contains("Every message has been sent.") && !empty.contains("No SMTP"));
    }
}
