//! Logging in and out, and first-run set-up (the one-time password goes,
//! and the admin says where clients reach the appliance).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use ferry_domain::rules::AccountRefusal;
use ferryd_core::Failing as _;
use ferryd_core::users::{Through, UsersError};
use maud::{Markup, html};
use serde::Deserialize;

use super::{html, html_status};
use crate::auth::{COLLABORATORS, MemberPost, Posted, PublicForm, Staff};
use crate::format::duration;
use crate::layout::{Notice, bare, local_path, staff_page};
use crate::{Web, auth};

#[derive(Debug, Default, Deserialize)]
pub struct Next {
    next: Option<String>,
}

pub async fn form(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<Next>,
) -> Response {
    // Already logged in: straight on.
    if let Some(token) = auth::session_token(&headers)
        && let Ok(Some(_)) = web.services.users.web_session(&token).await
    {
        return Redirect::to(&local_path(q.next.as_deref())).into_response();
    }
    html(login_view(q.next.as_deref(), "", None))
}

pub fn login_view(next: Option<&str>, email: &str, notice: Option<&Notice>) -> Markup {
    bare(
        "Log in",
        notice,
        html! {
            form.stack method="post" action="/login" {
                input type="hidden" name="next" value=(local_path(next));
                label { "Email" input type="email" name="email" value=(email) required autofocus autocomplete="username"; }
                label { "Password" input type="password" name="password" required autocomplete="current-password"; }
                button.primary type="submit" { "Log in" }
            }
            p.hint { "Collaborators: log in to download your deliveries in the browser, or receive them with the Ferry app." }
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    next: Option<String>,
}

pub async fn submit(State(web): State<Arc<Web>>, posted: PublicForm<LoginForm>) -> Response {
    let PublicForm {
        form,
        from,
        headers,
    } = posted;
    let email = form.email.trim().to_owned();
    let users = &web.services.users;
    let refuse = |status, msg: String| {
        html_status(
            status,
            login_view(form.next.as_deref(), &email, Some(&Notice::Error(msg))),
        )
    };
    let (user, session) = match users.web_login(&email, &form.password, from).await {
        Ok(x) => x,
        Err(UsersError::Throttled(wait)) => {
            return refuse(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many failed logins for this account or from this address. Try again in {}.",
                    duration(wait.as_secs().max(1))
                ),
            );
        }
        Err(UsersError::BadCredentials) => {
            return refuse(StatusCode::UNAUTHORIZED, "Wrong email or password.".into());
        }
        Err(UsersError::Account(AccountRefusal::NotStaff(_))) => {
            return refuse(StatusCode::FORBIDDEN, COLLABORATORS.into());
        }
        Err(e) => {
            let status = if e.code() == ferry_api::codes::INTERNAL {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::FORBIDDEN
            };
            return refuse(status, e.to_string());
        }
    };
    // A fresh token on every login; an old one the browser held is ended.
    if let Some(old) = auth::session_token(&headers)
        && let Err(e) = users
            .logout(
                &old,
                ferryd_core::audit::Actor::user(user.id, from),
                &user.email,
            )
            .await
    {
        log::warn!("ending the session a browser held before logging in: {e}");
    }
    let to = if user.must_change_password {
        "/setup".to_owned()
    } else {
        local_path(form.next.as_deref())
    };
    let mut response = Redirect::to(&to).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, auth::session_cookie(&session.token));
    response
}

pub async fn logout(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    posted: MemberPost<Empty>,
) -> Response {
    if let Some(token) = auth::session_token(&headers)
        && let Err(e) = web
            .services
            .users
            .logout(&token, posted.member.actor(), &posted.member.user.email)
            .await
    {
        log::error!("logging {} out: {e}", posted.member.user.email);
    }
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, auth::cleared_cookie());
    response
}

/// A form with nothing but its CSRF token.
#[derive(Debug, Deserialize)]
pub struct Empty {}

pub async fn setup_form(State(web): State<Arc<Web>>, staff: Staff) -> Response {
    let public = web
        .services
        .settings
        .current()
        .public_address
        .unwrap_or_default();
    html(setup_view(&staff, &public, None))
}

pub fn setup_view(staff: &Staff, public_address: &str, notice: Option<&Notice>) -> Markup {
    let first = staff.user.must_change_password;
    staff_page(
        if first {
            "Welcome: set up this appliance"
        } else {
            "Change your password"
        },
        "",
        staff,
        notice,
        html! {
            @if first {
                p { "You logged in with a one-time password. Choose your own before anything else." }
            }
            form.stack method="post" action="/setup" {
                (crate::layout::csrf(staff))
                @if !first {
                    label { "Current password"
                        input type="password" name="current" required autocomplete="current-password"; }
                }
                label { "New password (at least 12 characters)"
                    input type="password" name="password" minlength="12" required autocomplete="new-password"; }
                label { "The same again"
                    input type="password" name="again" minlength="12" required autocomplete="new-password"; }
                @if staff.is_admin() {
                    label { "Public address: the name or IP clients use to reach this appliance through the edge router"
                        input type="text" name="public_address" value=(public_address) placeholder="ferry.example.com"; }
                }
                button.primary type="submit" { "Save" }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct SetupForm {
    /// Required unless the password is the one-time one.
    #[serde(default)]
    current: String,
    password: String,
    again: String,
    public_address: Option<String>,
}

pub async fn setup(State(web): State<Arc<Web>>, posted: Posted<SetupForm>) -> Response {
    let Posted { staff, form } = posted;
    let public = form.public_address.clone().unwrap_or_default();
    let fail = |msg: String| {
        html_status(
            StatusCode::BAD_REQUEST,
            setup_view(&staff, &public, Some(&Notice::Error(msg))),
        )
    };
    if form.password != form.again {
        return fail("The two passwords differ.".into());
    }
    let services = &web.services;
    if staff.is_admin()
        && let Some(p) = form.public_address.as_deref()
    {
        let mut text = services.settings.current().to_text();
        text.public_address = p.trim().to_owned();
        if let Err(e) = services
            .settings
            .change(staff.by(), staff.actor(), &text)
            .await
        {
            return fail(e.to_string());
        }
    }
    // Someone at an unattended browser must not be able to take the
    // account: changing a password asks for the current one, unless it is
    // the one-time one the login proved a moment ago.
    let current = (!staff.user.must_change_password).then_some(form.current.as_str());
    let session = match services
        .users
        .change_password(
            &staff.user,
            current,
            &form.password,
            Through::Web,
            staff.from,
        )
        .await
    {
        Ok(Some(s)) => s,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(UsersError::Throttled(wait)) => {
            return fail(format!(
                "Too many wrong passwords. Try again in {}.",
                duration(wait.as_secs().max(1))
            ));
        }
        Err(UsersError::WrongCurrentPassword) => {
            return fail("The current password is wrong.".into());
        }
        Err(e) => return fail(e.to_string()),
    };
    // Other browsers logged in with the old password are logged out, and
    // this one has a fresh session.
    let mut response = super::done("/", "welcome");
    response
        .headers_mut()
        .insert(header::SET_COOKIE, auth::session_cookie(&session.token));
    response
}
