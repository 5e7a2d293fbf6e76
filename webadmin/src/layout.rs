//! The frame every page shares: head, navigation, notices, and the static
//! stylesheet and script (served from here so the CSP can forbid inline
//! code).

use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::auth::{Member, Staff};

/// The navigation, in order: (path, label, admins only).
const NAV: &[(&str, &str, bool)] = &[
    ("/", "Dashboard", false),
    ("/deliveries", "My deliveries", false),
    ("/send", "Send", false),
    ("/transfers", "Transfers", false),
    ("/shares", "Shares", false),
    ("/users", "Users", true),
    ("/settings", "Settings", true),
    ("/outbox", "Outbox", true),
    ("/audit", "Audit log", true),
];

/// A message at the top of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Done(String),
    Error(String),
}

impl Notice {
    /// The confirmations a redirect may ask for by code (`?ok=…`), so a
    /// link cannot make the page say arbitrary things.
    pub fn from_code(code: Option<&str>) -> Option<Notice> {
        let text = match code? {
            "share-added" => "Share added.",
            "root-added" => "Root share added.",
            "granted" => "Access saved.",
            "invited" => "User invited.",
            "service-added" => "Service account added: make it an API key below.",
            "role" => "Role changed.",
            "status" => "User updated.",
            "revoked" => "API key revoked.",
            "saved" => "Settings saved; they apply to new sessions at once.",
            "pause" => "Job paused.",
            "resume" => "Job resumed.",
            "abort" => "Job aborted.",
            "retry" => "Job queued again.",
            "purge" => "Job purged.",
            "priority" => "Priorities changed.",
            "urgent" => "Job marked urgent: the bandwidth schedule does not slow it.",
            "not-urgent" => "Job no longer urgent: it shares the bandwidth schedule's cap.",
            "watch-added" => {
                "Watch folder added: what arrives in it from now on is delivered once it settles."
            }
            "watch-removed" => "Watch folder removed; its deliveries stay.",
            "welcome" => "Password changed. Welcome to Ferry.",
            "mail-again" => {
                "The message is due again: it goes out as soon as the SMTP server takes it."
            }
            "mail-discarded" => "Message discarded.",
            _ => return None,
        };
        Some(Notice::Done(text.to_owned()))
    }
}

/// A whole page for a logged-in staff member.
pub fn staff_page(
    title: &str,
    active: &str,
    staff: &Staff,
    notice: Option<&Notice>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    a.brand href="/" { "Ferry" }
                    nav {
                        @for (path, label, admin_only) in NAV {
                            @if !admin_only || staff.is_admin() {
                                a href=(path) class=[(*path == active).then_some("active")] { (label) }
                            }
                        }
                    }
                    div.me {
                        span.who title=(staff.user.role.as_str()) { (staff.user.email) }
                        a href="/setup" { "Password" }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(staff.csrf);
                            button.link type="submit" { "Log out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (notice_box(notice))
                    (body)
                }
            }
        }
    }
}

/// The tabs of a signed-in person's own pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberTab {
    Deliveries,
    Send,
}

/// A whole page of a signed-in person's own deliveries and sending
/// (collaborators see nothing else; staff find their way back to the
/// admin).
pub fn member_page(
    title: &str,
    tab: MemberTab,
    member: &Member,
    notice: Option<&Notice>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    a.brand href="/deliveries" { "Ferry" }
                    nav {
                        a href="/deliveries" class=[(tab == MemberTab::Deliveries).then_some("active")] { "Deliveries" }
                        a href="/send" class=[(tab == MemberTab::Send).then_some("active")] { "Send" }
                        @if member.is_staff() {
                            a href="/" { "Admin" }
                        }
                    }
                    div.me {
                        span.who title=(member.user.role.as_str()) { (member.user.email) }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(member.csrf);
                            button.link type="submit" { "Log out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (notice_box(notice))
                    (body)
                }
            }
        }
    }
}

/// A page for someone not logged in (login, errors).
pub fn bare(title: &str, notice: Option<&Notice>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare {
                main.narrow {
                    div.brand-big { "Ferry" }
                    h1 { (title) }
                    (notice_box(notice))
                    (body)
                }
            }
        }
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Ferry" }
            link rel="stylesheet" href="/static/admin.css";
            script src="/static/admin.js" defer {}
        }
    }
}

fn notice_box(notice: Option<&Notice>) -> Markup {
    html! {
        @match notice {
            Some(Notice::Done(m)) => div.notice.done role="status" { (m) },
            Some(Notice::Error(m)) => div.notice.error role="alert" { (m) },
            None => {},
        }
    }
}

/// A hidden CSRF field for a form.
pub fn csrf(staff: &Staff) -> Markup {
    html! { input type="hidden" name="csrf" value=(staff.csrf); }
}

/// A small form with one button that posts to `action`.
pub fn button(
    staff: &Staff,
    action: &str,
    label: &str,
    class: &str,
    fields: &[(&str, &str)],
) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf(staff))
            @for (name, value) in fields {
                input type="hidden" name=(name) value=(value);
            }
            button type="submit" class=(class) { (label) }
        }
    }
}

/// A page that says what went wrong, with its status.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = bare(
        title,
        Some(&Notice::Error(message.to_owned())),
        html! { p { a href="/" { "Back to the dashboard" } } },
    );
    (status, Html(body.into_string())).into_response()
}

/// The status a service's failure answers with, the same the REST API
/// gives it.
pub fn status_of(e: &dyn ferryd_core::Failing) -> StatusCode {
    StatusCode::from_u16(e.failure().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A service's refusal as a page, with the status the REST API gives the
/// same failure (a job the caller may not know of is a 404 here too).
pub fn failure_page(e: &dyn ferryd_core::Failing) -> Response {
    let status = status_of(e);
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        // The detail goes to the log, not to the page.
        log::error!("web admin: {e}");
        return error_page(
            status,
            "Something went wrong on the appliance; its log says what.",
        );
    }
    error_page(status, &e.to_string())
}

/// Percent-encodes a value for a query string.
pub fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A local path to go back to after a form, never another site.
pub fn local_path(next: Option<&str>) -> String {
    match next {
        // Browsers drop tabs and newlines and read a backslash as a slash,
        // so "/\t/evil" or "/\\evil" would leave the site.
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && !p.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            p.to_owned()
        }
        _ => "/".to_owned(),
    }
}

pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../assets/admin.css"),
    )
}

pub async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../assets/admin.js"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(
            local_path(Some("/transfers?tab=finished")),
            "/transfers?tab=finished"
        );
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(Some("/\\evil.example")), "/");
        assert_eq!(local_path(Some("/\t/evil.example")), "/");
        assert_eq!(local_path(Some("/\n/evil.example")), "/");
        assert_eq!(local_path(Some("/ /evil.example")), "/");
        assert_eq!(local_path(None), "/");
        assert_eq!(url_escape("/a b?c=d&e"), "/a%20b%3Fc%3Dd%26e");
    }

    #[test]
    fn notices_come_from_known_codes_only() {
        assert!(Notice::from_code(Some("saved")).is_some());
        assert_eq!(Notice::from_code(Some("<script>alert(1)</script>")), None);
    }
}
