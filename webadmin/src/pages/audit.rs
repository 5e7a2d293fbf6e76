//! The audit log (admins only): who did what, when, from where; newest
//! first, filtered by kind of action, paged by cursor.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use ferry_store::Event;
use maud::{Markup, html};
use serde::Deserialize;

use super::html;
use crate::Web;
use crate::auth::{Admin, Staff};
use crate::format::{ago, timestamp};
use crate::layout::{staff_page, url_escape};

const PAGE: u32 = 100;

/// The action families a filter offers.
const KINDS: [&str; 10] = [
    "login", "password", "user", "apikey", "share", "job", "session", "lease", "settings",
    "delivery",
];

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    action: Option<String>,
    before: Option<i64>,
}

pub async fn page(
    State(web): State<Arc<Web>>,
    Admin(staff): Admin,
    Query(q): Query<AuditQuery>,
) -> Response {
    let action = q.action.as_deref().filter(|a| !a.is_empty());
    match web.services.audit.list(PAGE, q.before, action).await {
        Ok(events) => html(view(&staff, &events, action, q.before.is_some())),
        Err(e) => crate::layout::error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

pub fn view(staff: &Staff, events: &[Event], action: Option<&str>, paged: bool) -> Markup {
    let t = jiff::Timestamp::now().as_second();
    let filter = action
        .map(|a| format!("action={}&", url_escape(a)))
        .unwrap_or_default();
    staff_page(
        "Audit log",
        "/audit",
        staff,
        None,
        html! {
            form.filters method="get" action="/audit" {
                label { "Kind"
                    select name="action" {
                        option value="" { "everything" }
                        @for k in KINDS { option value=(k) selected[action == Some(k)] { (k) } }
                    }
                }
                button type="submit" { "Filter" }
            }
            @if events.is_empty() {
                p.empty { "Nothing recorded yet." }
            } @else {
                table #audit {
                    thead { tr { th { "When" } th { "Who" } th { "From" } th { "Action" } th { "Subject" } th { "Detail" } } }
                    tbody {
                        @for e in events {
                            tr {
                                td title=(timestamp(e.at)) { (ago(e.at, t)) }
                                td { (e.user_email.as_deref().unwrap_or("–")) }
                                td { (e.address.as_deref().unwrap_or("–")) }
                                td { code { (e.action) } }
                                td { (e.subject) }
                                td { (e.detail) }
                            }
                        }
                    }
                }
            }
            nav.pager {
                @if paged { a href={"/audit?" (filter)} { "« Newest" } }
                @if events.len() as u32 == PAGE {
                    @if let Some(last) = events.last() {
                        a href={"/audit?" (filter) "before=" (last.id)} { "Older »" }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::tests::staff;

    #[test]
    fn events_render_inert_and_page_on() {
        let events: Vec<Event> = (0..PAGE as i64)
            .map(|i| Event {
                id: 1000 - i,
                at: 0,
                user_id: None,
                user_email: None,
                address: Some("192.0.2.1".into()),
                action: "login.failed".into(),
                subject: "<script>x</script>".into(),
                detail: String::new(),
            })
            .collect();
        let out = view(&staff(true), &events, Some("login"), false).into_string();
        assert!(!out.contains("<script>x"));
        assert!(out.contains("/audit?action=login&amp;before=901"));
    }
}
