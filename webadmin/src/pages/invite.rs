//! The invitation page: public (the invited person has no password yet),
//! rate-limited per address. The link's token is single-use, stored
//! hashed, and expires; a used or expired link says so plainly.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use ferry_store::Invitation;
use ferryd_core::users::UsersError;
use maud::{Markup, html};
use serde::Deserialize;

use super::html_status;
use crate::Web;
use crate::auth::{ClientIp, PublicForm};
use crate::format::duration;
use crate::layout::{Notice, bare};

fn too_many(wait: std::time::Duration) -> Response {
    html_status(
        StatusCode::TOO_MANY_REQUESTS,
        bare(
            "Too many requests",
            Some(&Notice::Error(format!(
                "Too many requests from your address. Try again in {}.",
                duration(wait.as_secs().max(1))
            ))),
            html! {},
        ),
    )
}

/// What a link that does not open the form says.
fn dead_link(state: &Invitation) -> Response {
    let (status, message) = match state {
        Invitation::Used => (
            StatusCode::GONE,
            "This invitation link was used already. Log in with the password you chose, \
             or ask the person who invited you for a new invitation.",
        ),
        Invitation::Expired => (
            StatusCode::GONE,
            "This invitation link has expired. Ask the person who invited you to send a new one.",
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "This is not a valid invitation link. Check that you opened the whole link from the email.",
        ),
    };
    html_status(
        status,
        bare("Invitation", Some(&Notice::Error(message.into())), html! {}),
    )
}

pub fn form_view(email: &str, notice: Option<&Notice>) -> Markup {
    bare(
        "Welcome to Ferry",
        notice,
        html! {
            p { "Choose a password for " b { (email) } ". You then download your deliveries here in the browser, or receive them with the Ferry app." }
            form.stack method="post" {
                label { "Password (at least 12 characters)"
                    input type="password" name="password" minlength="12" required autocomplete="new-password"; }
                label { "The same again"
                    input type="password" name="again" minlength="12" required autocomplete="new-password"; }
                button.primary type="submit" { "Set my password" }
            }
        },
    )
}

/// Counts a request of `from` against the page's budget; how long to wait
/// when it is spent.
fn hit(web: &Web, from: std::net::IpAddr) -> Result<(), std::time::Duration> {
    web.invitations
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .hit(from, std::time::Instant::now())
}

pub async fn form(
    State(web): State<Arc<Web>>,
    ClientIp(from): ClientIp,
    Path(token): Path<String>,
) -> Response {
    if let Err(wait) = hit(&web, from) {
        return too_many(wait);
    }
    match web.services.users.invitation(&token).await {
        Ok(Invitation::Valid { user, .. }) => {
            html_status(StatusCode::OK, form_view(&user.email, None))
        }
        Ok(other) => dead_link(&other),
        Err(e) => crate::layout::error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    password: String,
    again: String,
}

pub async fn accept(
    State(web): State<Arc<Web>>,
    Path(token): Path<String>,
    posted: PublicForm<PasswordForm>,
) -> Response {
    let PublicForm { form, from, .. } = posted;
    if let Err(wait) = hit(&web, from) {
        return too_many(wait);
    }
    let users = &web.services.users;
    let user = match users.invitation(&token).await {
        Ok(Invitation::Valid { user, .. }) => user,
        Ok(other) => return dead_link(&other),
        Err(e) => {
            return crate::layout::error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
        }
    };
    if form.password != form.again {
        return html_status(
            StatusCode::BAD_REQUEST,
            form_view(
                &user.email,
                Some(&Notice::Error("The two passwords differ.".into())),
            ),
        );
    }
    match users.accept_invitation(&token, &form.password, from).await {
        Ok(user) => signed_in(&web, &user, from).await,
        // The policy's words, on the same form, to try again.
        Err(UsersError::WeakPassword(e)) => html_status(
            StatusCode::BAD_REQUEST,
            form_view(
                &user.email,
                Some(&Notice::Error(capitalised(&e.to_string()))),
            ),
        ),
        Err(e) => html_status(
            StatusCode::GONE,
            bare("Invitation", Some(&Notice::Error(e.to_string())), html! {}),
        ),
    }
}

/// The password is set: the new account is signed in on the spot and
/// lands on its newest delivery (or its list of deliveries).
async fn signed_in(web: &Web, user: &ferry_store::User, from: std::net::IpAddr) -> Response {
    let session = match web.services.users.web_session_for(user, from).await {
        Ok(s) => s,
        Err(e) => {
            log::error!("signing {} in after their invitation: {e}", user.email);
            let server = web.services.notifier.base_url();
            return html_status(
                StatusCode::OK,
                bare(
                    "Your password is set",
                    Some(&Notice::Done("Your password is set.".into())),
                    html! {
                        p { a href="/login" { "Log in" } " to download your deliveries in the browser, or receive them with the Ferry client:" }
                        pre { code { "ferry login " (server) " --email " (user.email) "\nferry agent --into ~/Deliveries" } }
                    },
                ),
            );
        }
    };
    let newest = web
        .services
        .jobs
        .list(
            user,
            &ferryd_core::jobs::Listing {
                all: true,
                kind: Some(ferry_domain::JobKind::Download),
                side: ferryd_core::jobs::Side::Recipient,
                limit: 1,
                ..Default::default()
            },
        )
        .await
        .ok()
        .and_then(|l| l.jobs.first().map(|j| j.id));
    let to = newest.map_or("/deliveries".to_owned(), |id| format!("/deliveries/{id}"));
    let mut response = axum::response::Redirect::to(&to).into_response();
    response.headers_mut().insert(
        axum::http::header::SET_COOKIE,
        crate::auth::session_cookie(&session.token),
    );
    response
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect::<String>() + ".",
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_names_the_invited_address_inertly() {
        let out = form_view("<b>x</b>@example.com", None).into_string();
        assert!(out.contains("&lt;b&gt;x&lt;/b&gt;@example.com"));
        assert!(out.contains(r#"name="again""#));
    }
}
