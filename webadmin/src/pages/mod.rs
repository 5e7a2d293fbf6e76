//! One module per page: its handlers and its view. Views are functions of
//! plain data so tests can render them without a server.

pub mod audit;
pub mod dashboard;
pub mod deliveries;
pub mod invite;
pub mod login;
pub mod outbox;
pub mod send;
pub mod settings;
pub mod shares;
pub mod transfers;
pub mod users;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::Markup;

/// A rendered page.
pub fn html(markup: Markup) -> Response {
    Html(markup.into_string()).into_response()
}

/// A page shown with an error status (the form's problem is on it).
pub fn html_status(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

/// After a form: back to a page, with a confirmation by code.
pub fn done(path: &str, code: &str) -> Response {
    let sep = if path.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{path}{sep}ok={code}")).into_response()
}

#[cfg(test)]
pub(crate) mod tests {
    use ferry_store::{AccountKind, Role, User, UserId, UserStatus};

    use crate::auth::Staff;

    /// A logged-in admin or employee, for rendering views.
    pub fn staff(admin: bool) -> Staff {
        Staff {
            user: User {
                id: UserId(1),
                email: "admin@example.com".into(),
                name: String::new(),
                role: if admin { Role::Admin } else { Role::Employee },
                status: UserStatus::Active,
                must_change_password: false,
                notify: true,
                created_at: 0,
                kind: AccountKind::Person,
            },
            csrf: "c5rf".into(),
            from: std::net::IpAddr::from([127, 0, 0, 1]),
        }
    }

    #[test]
    fn every_page_has_the_navigation_and_a_logout_form() {
        let out = super::dashboard::view(&staff(true), &[], &[], &[], &[], "", None).into_string();
        for link in ["/transfers", "/shares", "/users", "/settings", "/audit"] {
            assert!(out.contains(&format!(r#"href="{link}""#)), "{link}");
        }
        assert!(out.contains(r#"action="/logout""#));
        assert!(!out.contains("<script>"), "no inline script");
        // Employees do not see the admin-only pages.
        let out = super::dashboard::view(&staff(false), &[], &[], &[], &[], "", None).into_string();
        assert!(!out.contains(r#"href="/users""#));
        assert!(!out.contains(r#"href="/audit""#));
    }
}
