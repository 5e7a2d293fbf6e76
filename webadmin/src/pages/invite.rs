//! The invitation page: public (the invited person has no password yet),
//! rate-limited per address. The link's token is single-use, stored
//! hashed, and expires; a used or expired link says so plainly.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use ferry_store::{Invitation, NewEvent};
use maud::{Markup, html};
use serde::Deserialize;

use super::html_status;
use crate::auth::{ClientIp, PublicForm};
use crate::format::duration;
use crate::layout::{Notice, bare};
use crate::{Appliance, Web};

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
            p { "Choose a password for " b { (email) } ". You then log in with the Ferry client to receive your deliveries." }
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

pub async fn form<A: Appliance>(
    State(web): State<Arc<Web<A>>>,
    ClientIp(from): ClientIp,
    Path(token): Path<String>,
) -> Response {
    if let Err(wait) = web.invitations.hit(from) {
        return too_many(wait);
    }
    match web.app.store().invitation(&token) {
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

pub async fn accept<A: Appliance>(
    State(web): State<Arc<Web<A>>>,
    Path(token): Path<String>,
    posted: PublicForm<PasswordForm>,
) -> Response {
    let PublicForm { form, from, .. } = posted;
    if let Err(wait) = web.invitations.hit(from) {
        return too_many(wait);
    }
    let user = match web.app.store().invitation(&token) {
        Ok(Invitation::Valid { user, .. }) => user,
        Ok(other) => return dead_link(&other),
        Err(e) => {
            return crate::layout::error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
        }
    };
    let problem = if form.password != form.again {
        Some("The two passwords differ.")
    } else if form.password.chars().count() < 12 {
        Some("A password needs at least 12 characters.")
    } else {
        None
    };
    if let Some(p) = problem {
        return html_status(
            StatusCode::BAD_REQUEST,
            form_view(&user.email, Some(&Notice::Error(p.into()))),
        );
    }
    let app = web.app.clone();
    let accepted =
        tokio::task::spawn_blocking(move || app.store().accept_invitation(&token, &form.password))
            .await
            .unwrap_or_else(|e| Err(ferry_store::StoreError::Invalid(e.to_string())));
    match accepted {
        Ok(user) => {
            let _ = web.app.store().record_event(NewEvent {
                user: Some(user.id),
                address: Some(from.to_string()),
                action: "user.invitation.accepted",
                subject: user.email.clone(),
                ..Default::default()
            });
            let server = web.app.base_url();
            html_status(
                StatusCode::OK,
                bare(
                    "Your password is set",
                    Some(&Notice::Done("Your password is set.".into())),
                    html! {
                        p { "Log in with the Ferry client, then leave it receiving your deliveries:" }
                        pre { code { "ferry login " (server) " --email " (user.email) "\nferry agent --into ~/Deliveries" } }
                        p.hint { "The client shows the appliance's certificate fingerprint the first time; the person who invited you can confirm it." }
                    },
                ),
            )
        }
        Err(e) => html_status(
            StatusCode::GONE,
            bare("Invitation", Some(&Notice::Error(e.to_string())), html! {}),
        ),
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
