//! Logging in and out, and first-run set-up (the one-time password goes,
//! and the admin says where clients reach the appliance).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use ferry_store::{NewEvent, Role};
use maud::{Markup, html};
use serde::Deserialize;

use super::{html, html_status};
use crate::auth::{COLLABORATORS, IDLE_SECS, LIFETIME_SECS, Posted, PublicForm, Staff};
use crate::format::duration;
use crate::layout::{Notice, bare, local_path, staff_page};
use crate::{Appliance, Web, auth};

#[derive(Debug, Default, Deserialize)]
pub struct Next {
    next: Option<String>,
}

pub async fn form<A: Appliance>(
    State(web): State<Arc<Web<A>>>,
    headers: HeaderMap,
    Query(q): Query<Next>,
) -> Response {
    // Already logged in: straight on.
    if let Some(token) = auth::session_token(&headers)
        && let Ok(Some(_)) = web.app.store().web_session(&token, IDLE_SECS)
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
            p.hint { "Collaborators receive their deliveries with the Ferry client, not here." }
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    next: Option<String>,
}

pub async fn submit<A: Appliance>(
    State(web): State<Arc<Web<A>>>,
    posted: PublicForm<LoginForm>,
) -> Response {
    let PublicForm {
        form,
        from,
        headers,
    } = posted;
    let email = form.email.trim().to_owned();
    let store = web.app.store();
    if let Err(wait) = web.throttle.attempt(&email, from) {
        let _ = store.record_event(NewEvent {
            address: Some(from.to_string()),
            action: "login.throttled",
            subject: email.clone(),
            ..Default::default()
        });
        let msg = format!(
            "Too many failed logins for this account or from this address. Try again in {}.",
            duration(wait.as_secs().max(1))
        );
        return html_status(
            StatusCode::TOO_MANY_REQUESTS,
            login_view(form.next.as_deref(), &email, Some(&Notice::Error(msg))),
        );
    }
    // argon2 takes tens of milliseconds of CPU: off the async threads.
    let app = web.app.clone();
    let (e2, p2) = (email.clone(), form.password);
    let verified = tokio::task::spawn_blocking(move || app.store().verify_password(&e2, &p2))
        .await
        .unwrap_or_else(|e| Err(ferry_store::StoreError::Invalid(e.to_string())));
    let user = match verified {
        Ok(Some(u)) => u,
        Ok(None) => {
            let _ = store.record_event(NewEvent {
                address: Some(from.to_string()),
                action: "login.failed",
                subject: email.clone(),
                detail: "web admin".into(),
                ..Default::default()
            });
            return html_status(
                StatusCode::UNAUTHORIZED,
                login_view(
                    form.next.as_deref(),
                    &email,
                    Some(&Notice::Error("Wrong email or password.".into())),
                ),
            );
        }
        Err(e) => {
            return html_status(
                StatusCode::INTERNAL_SERVER_ERROR,
                login_view(
                    form.next.as_deref(),
                    &email,
                    Some(&Notice::Error(e.to_string())),
                ),
            );
        }
    };
    web.throttle.succeeded_from(&email, from);
    if user.role == Role::Collaborator {
        return html_status(
            StatusCode::FORBIDDEN,
            login_view(None, &email, Some(&Notice::Error(COLLABORATORS.into()))),
        );
    }
    // A fresh token on every login; an old one the browser held is ended.
    if let Some(old) = auth::session_token(&headers) {
        let _ = store.end_web_session(&old);
    }
    let session = match store.create_web_session(user.id, LIFETIME_SECS) {
        Ok(s) => s,
        Err(e) => {
            return html_status(
                StatusCode::INTERNAL_SERVER_ERROR,
                login_view(None, &email, Some(&Notice::Error(e.to_string()))),
            );
        }
    };
    let _ = store.record_event(NewEvent {
        user: Some(user.id),
        address: Some(from.to_string()),
        action: "login.ok",
        subject: user.email.clone(),
        detail: "web admin".into(),
    });
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

pub async fn logout<A: Appliance>(
    State(web): State<Arc<Web<A>>>,
    headers: HeaderMap,
    posted: Posted<Empty>,
) -> Response {
    if let Some(token) = auth::session_token(&headers) {
        let _ = web.app.store().end_web_session(&token);
    }
    let _ = web.app.store().record_event(NewEvent {
        user: Some(posted.staff.user.id),
        address: Some(posted.staff.from.to_string()),
        action: "logout",
        subject: posted.staff.user.email.clone(),
        ..Default::default()
    });
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, auth::cleared_cookie());
    response
}

/// A form with nothing but its CSRF token.
#[derive(Debug, Deserialize)]
pub struct Empty {}

pub async fn setup_form<A: Appliance>(State(web): State<Arc<Web<A>>>, staff: Staff) -> Response {
    let public = web.app.site().public_address.unwrap_or_default();
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

pub async fn setup<A: Appliance>(
    State(web): State<Arc<Web<A>>>,
    posted: Posted<SetupForm>,
) -> Response {
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
    if form.password.chars().count() < 12 {
        return fail("A password needs at least 12 characters.".into());
    }
    // Someone at an unattended browser must not be able to take the
    // account: changing a password asks for the current one (the first
    // run proved it at login a moment ago).
    if !staff.user.must_change_password {
        if let Err(wait) = web.throttle.attempt(&staff.user.email, staff.from) {
            return fail(format!(
                "Too many wrong passwords. Try again in {}.",
                duration(wait.as_secs().max(1))
            ));
        }
        let app = web.app.clone();
        let (email, current) = (staff.user.email.clone(), form.current.clone());
        let ok = tokio::task::spawn_blocking(move || app.store().verify_password(&email, &current))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
            .is_some();
        if !ok {
            return fail("The current password is wrong.".into());
        }
        web.throttle.succeeded_from(&staff.user.email, staff.from);
    }
    if staff.is_admin()
        && let Some(p) = form.public_address.as_deref()
    {
        let mut site = web.app.site();
        let p = p.trim();
        site.public_address = (!p.is_empty()).then(|| p.to_owned());
        if let Err(e) = web.app.change_site(&staff.user, staff.from, site) {
            return fail(e.message);
        }
    }
    let app = web.app.clone();
    let (id, pw) = (staff.user.id, form.password);
    let set = tokio::task::spawn_blocking(move || app.store().set_password(id, &pw))
        .await
        .unwrap_or_else(|e| Err(ferry_store::StoreError::Invalid(e.to_string())));
    if let Err(e) = set {
        return fail(e.to_string());
    }
    let store = web.app.store();
    // Other browsers logged in with the old password are logged out, and
    // this one gets a fresh session.
    let _ = store.end_web_sessions_of(staff.user.id);
    let _ = store.record_event(NewEvent {
        user: Some(staff.user.id),
        address: Some(staff.from.to_string()),
        action: "user.password",
        subject: staff.user.email.clone(),
        detail: "web admin".into(),
    });
    let Ok(session) = store.create_web_session(staff.user.id, LIFETIME_SECS) else {
        return Redirect::to("/login").into_response();
    };
    let mut response = super::done("/", "welcome");
    response
        .headers_mut()
        .insert(header::SET_COOKIE, auth::session_cookie(&session.token));
    response
}
