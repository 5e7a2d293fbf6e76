//! Users (admins only): invite by email or add a service account for
//! automation, set the role, disable and enable, reset a password to a
//! one-time one, and manage API keys (a new key is shown once; keys list
//! with their last use and can be revoked). The users service decides and
//! audits each of these.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use ferry_domain::{AccountKind, Role, UserStatus};
use ferry_store::{ApiKey, ApiKeyId, User, UserId};
use maud::{Markup, html};
use serde::Deserialize;

use super::{done, html_status};
use crate::auth::{Admin, AdminPost, Staff};
use crate::format::{ago, timestamp};
use crate::layout::{Notice, button, csrf, staff_page};
use crate::{Refused, Web};

/// A user with their API keys.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub user: User,
    pub keys: Vec<ApiKey>,
}

/// A secret to show once, above the table.
#[derive(Debug, Clone)]
pub struct Secret {
    pub what: String,
    pub value: String,
}

async fn rows(web: &Web, staff: &Staff) -> Result<Vec<UserRow>, Refused> {
    let users = &web.services.users;
    let mut out = Vec::new();
    for user in users.list(staff.by()).await? {
        let keys = users.keys(staff.by(), user.id).await?;
        out.push(UserRow { user, keys });
    }
    Ok(out)
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub(crate) ok: Option<String>,
}

pub async fn page(
    State(web): State<Arc<Web>>,
    Admin(staff): Admin,
    Query(q): Query<PageQuery>,
) -> Response {
    render(
        &web,
        &staff,
        Notice::from_code(q.ok.as_deref()),
        None,
        StatusCode::OK,
    )
    .await
}

async fn render(
    web: &Web,
    staff: &Staff,
    notice: Option<Notice>,
    secret: Option<&Secret>,
    status: StatusCode,
) -> Response {
    match rows(web, staff).await {
        Ok(r) => html_status(status, view(staff, &r, notice.as_ref(), secret)),
        Err(e) => crate::layout::error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.message),
    }
}

const ROLES: [Role; 3] = [Role::Admin, Role::Employee, Role::Collaborator];

pub fn view(
    staff: &Staff,
    rows: &[UserRow],
    notice: Option<&Notice>,
    secret: Option<&Secret>,
) -> Markup {
    let t = jiff::Timestamp::now().as_second();
    staff_page(
        "Users",
        "/users",
        staff,
        notice,
        html! {
            @if let Some(s) = secret {
                div.notice.secret role="status" {
                    (s.what) br;
                    code #secret { (s.value) }
                    " " button type="button" data-copy="secret" hidden { "Copy" }
                    br; span.hint { "Copy it now: it is not shown again and Ferry keeps only its hash." }
                }
            }
            section {
                h2 { "Invite someone" }
                form.inline-form #invite method="post" action="/users/invite" {
                    (csrf(staff))
                    label { "Email" input type="email" name="email" required placeholder="director@example.com"; }
                    label { "Name" input type="text" name="name" placeholder="optional"; }
                    label { "Role"
                        select name="role" {
                            @for r in ROLES { option value=(r.as_str()) selected[r == Role::Collaborator] { (r.as_str()) } }
                        }
                    }
                    label.check { input type="checkbox" name="service" value="on"; " Service account" }
                    button.primary type="submit" { "Add" }
                }
                p.hint {
                    "Admins run the appliance; employees send deliveries and see their own; "
                    "collaborators receive deliveries with the Ferry client and cannot open these pages. "
                    "A service account is for automation (an ftrack action, a render farm): it has no password "
                    "and no web login, only API keys, and is active at once; everyone else gets an invitation."
                }
            }
            section {
                h2 { "People" }
                table #users {
                    thead { tr { th { "Email" } th { "Role" } th { "Status" } th { "Since" } th { "API keys" } th { "Actions" } } }
                    tbody {
                        @for r in rows { (row(staff, r, t)) }
                    }
                }
            }
        },
    )
}

fn row(staff: &Staff, r: &UserRow, t: i64) -> Markup {
    let u = &r.user;
    let id = u.id.0;
    let live_keys: Vec<&ApiKey> = r.keys.iter().filter(|k| k.revoked_at.is_none()).collect();
    html! {
        tr data-user=(u.email) {
            td { (u.email) @if !u.name.is_empty() { br; span.hint { (u.name) } } }
            td {
                form.inline method="post" action={"/users/" (id) "/role"} {
                    (csrf(staff))
                    select name="role" {
                        @for role in ROLES { option value=(role.as_str()) selected[role == u.role] { (role.as_str()) } }
                    }
                    button type="submit" { "Set" }
                }
            }
            td {
                span class={"badge " (u.status.as_str())} { (u.status.as_str()) }
                @if u.kind == AccountKind::Service { " " span.badge.service { "service" } }
            }
            td title=(timestamp(u.created_at)) { (ago(u.created_at, t)) }
            td {
                @if live_keys.is_empty() { span.hint { "none" } }
                ul.keys {
                    @for k in &live_keys {
                        li {
                            code { (k.prefix) "…" } " " (k.name) " "
                            span.hint { @match k.last_used_at { Some(at) => { "used " (ago(at, t)) }, None => "never used" } }
                            " " (button(staff, &format!("/users/{id}/keys/{}/revoke", k.id.0), "Revoke", "link danger", &[]))
                        }
                    }
                }
                form.inline method="post" action={"/users/" (id) "/keys"} {
                    (csrf(staff))
                    input type="text" name="name" placeholder="key name" required size="10";
                    button type="submit" { "New key" }
                }
            }
            td.actions {
                @if u.status == UserStatus::Disabled {
                    (button(staff, &format!("/users/{id}/status"), "Enable", "", &[("status", "active")]))
                } @else if u.id != staff.user.id {
                    (button(staff, &format!("/users/{id}/status"), "Disable", "danger", &[("status", "disabled")]))
                }
                @if u.kind == AccountKind::Person && u.status == UserStatus::Invited {
                    (button(staff, &format!("/users/{id}/invite-link"), "Invitation link", "", &[]))
                }
                @if u.kind == AccountKind::Person {
                    (button(staff, &format!("/users/{id}/reset"), "Reset password", "", &[]))
                }
            }
        }
    }
}

async fn target(web: &Web, id: i64) -> Result<User, Refused> {
    web.services
        .users
        .get(UserId(id))
        .await
        .map_err(|_| Refused::new(format!("there is no user {id}")))
}

/// Runs a change and answers with the page: a redirect when it worked, the
/// page with the error when not.
async fn finish(web: &Web, staff: &Staff, result: Result<&str, Refused>) -> Response {
    match result {
        Ok(code) => done("/users", code),
        Err(e) => {
            render(
                web,
                staff,
                Some(Notice::Error(e.message)),
                None,
                StatusCode::BAD_REQUEST,
            )
            .await
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct InviteForm {
    email: String,
    #[serde(default)]
    name: String,
    role: String,
    /// A service account instead of an invitation.
    service: Option<String>,
}

pub async fn invite(State(web): State<Arc<Web>>, posted: AdminPost<InviteForm>) -> Response {
    let AdminPost { staff, form } = posted;
    let result = async {
        let role: Role = form
            .role
            .parse()
            .map_err(|e: ferry_domain::UnknownValue| Refused::new(e.to_string()))?;
        let users = &web.services.users;
        if form.service.is_some() {
            users
                .add_service_account(staff.by(), staff.actor(), &form.email, &form.name, role)
                .await?;
            Ok("service-added")
        } else {
            users
                .invite(staff.by(), staff.actor(), &form.email, &form.name, role)
                .await?;
            Ok("invited")
        }
    }
    .await;
    finish(&web, &staff, result).await
}

#[derive(Debug, Deserialize)]
pub struct RoleForm {
    role: String,
}

pub async fn role(
    State(web): State<Arc<Web>>,
    Path(id): Path<i64>,
    posted: AdminPost<RoleForm>,
) -> Response {
    let AdminPost { staff, form } = posted;
    let result = async {
        let u = target(&web, id).await?;
        let role: Role = form
            .role
            .parse()
            .map_err(|e: ferry_domain::UnknownValue| Refused::new(e.to_string()))?;
        if u.id == staff.user.id {
            return Err(Refused::new(
                "You cannot change your own role; ask another admin.",
            ));
        }
        web.services
            .users
            .set_role(staff.by(), staff.actor(), u.id, role)
            .await?;
        Ok("role")
    }
    .await;
    finish(&web, &staff, result).await
}

#[derive(Debug, Deserialize)]
pub struct StatusForm {
    status: String,
}

pub async fn status(
    State(web): State<Arc<Web>>,
    Path(id): Path<i64>,
    posted: AdminPost<StatusForm>,
) -> Response {
    let AdminPost { staff, form } = posted;
    let result = async {
        let u = target(&web, id).await?;
        let status = match form.status.as_str() {
            "active" => UserStatus::Active,
            "disabled" => UserStatus::Disabled,
            other => {
                return Err(Refused::new(format!(
                    "a user is made active or disabled, not {other:?}"
                )));
            }
        };
        if u.id == staff.user.id {
            return Err(Refused::new("You cannot disable yourself."));
        }
        web.services
            .users
            .set_status(staff.by(), staff.actor(), u.id, status)
            .await?;
        Ok("status")
    }
    .await;
    finish(&web, &staff, result).await
}

#[derive(Debug, Deserialize)]
pub struct Empty {}

pub async fn reset(
    State(web): State<Arc<Web>>,
    Path(id): Path<i64>,
    posted: AdminPost<Empty>,
) -> Response {
    let staff = posted.staff;
    let reset = web
        .services
        .users
        .reset_password(staff.by(), staff.actor(), UserId(id))
        .await;
    match reset {
        Ok((u, password)) => {
            let secret = Secret {
                what: format!(
                    "One-time password for {}: they choose their own at the next login.",
                    u.email
                ),
                value: password,
            };
            render(&web, &staff, None, Some(&secret), StatusCode::OK).await
        }
        Err(e) => finish(&web, &staff, Err(e.into())).await,
    }
}

/// A fresh invitation link for someone invited, shown once to hand over
/// (by chat, by phone) when mail does not reach them; earlier links of
/// theirs stop working.
pub async fn invite_link(
    State(web): State<Arc<Web>>,
    Path(id): Path<i64>,
    posted: AdminPost<Empty>,
) -> Response {
    let staff = posted.staff;
    let result = async {
        let u = target(&web, id).await?;
        let link = web
            .services
            .users
            .invitation_link(staff.by(), staff.actor(), &u.email)
            .await?;
        Ok::<_, Refused>((u, link))
    }
    .await;
    match result {
        Ok((u, link)) => {
            let secret = Secret {
                what: format!(
                    "Invitation link for {}: hand it over yourself. It works once, for {} days; earlier links of theirs no longer work.",
                    u.email,
                    ferryd_core::notifier::INVITATION_TTL_SECS / 86_400
                ),
                value: link,
            };
            render(&web, &staff, None, Some(&secret), StatusCode::OK).await
        }
        Err(e) => finish(&web, &staff, Err(e)).await,
    }
}

#[derive(Debug, Deserialize)]
pub struct KeyForm {
    name: String,
}

pub async fn create_key(
    State(web): State<Arc<Web>>,
    Path(id): Path<i64>,
    posted: AdminPost<KeyForm>,
) -> Response {
    let AdminPost { staff, form } = posted;
    let result = async {
        let u = target(&web, id).await?;
        let (_, key) = web
            .services
            .users
            .create_key(staff.by(), staff.actor(), &u.email, &form.name)
            .await?;
        Ok::<_, Refused>(Secret {
            what: format!("API key {:?} for {}:", form.name.trim(), u.email),
            value: key.secret,
        })
    }
    .await;
    match result {
        Ok(secret) => render(&web, &staff, None, Some(&secret), StatusCode::OK).await,
        Err(e) => finish(&web, &staff, Err(e)).await,
    }
}

pub async fn revoke_key(
    State(web): State<Arc<Web>>,
    Path((id, key)): Path<(i64, i64)>,
    posted: AdminPost<Empty>,
) -> Response {
    let staff = posted.staff;
    let result = async {
        let u = target(&web, id).await?;
        web.services
            .users
            .revoke_key(staff.by(), staff.actor(), u.id, ApiKeyId(key))
            .await?;
        Ok("revoked")
    }
    .await;
    finish(&web, &staff, result).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::tests::staff;

    fn user(id: i64, email: &str, role: Role, status: UserStatus) -> User {
        User {
            id: UserId(id),
            email: email.into(),
            name: String::new(),
            role,
            status,
            must_change_password: false,
            notify: true,
            created_at: 0,
            kind: AccountKind::Person,
        }
    }

    #[test]
    fn users_show_roles_status_and_keys_without_secrets() {
        let s = staff(true);
        let rows = vec![
            UserRow {
                user: user(
                    2,
                    "<svg onload=x>@example.com",
                    Role::Collaborator,
                    UserStatus::Invited,
                ),
                keys: vec![],
            },
            UserRow {
                user: user(3, "bob@example.com", Role::Employee, UserStatus::Disabled),
                keys: vec![ApiKey {
                    id: ApiKeyId(4),
                    user_id: UserId(3),
                    name: "render farm".into(),
                    prefix: "fk_1234abcd".into(),
                    origin: ferry_store::KeyOrigin::Made,
                    created_at: 0,
                    last_used_at: None,
                    revoked_at: None,
                }],
            },
        ];
        let out = view(&s, &rows, None, None).into_string();
        assert!(!out.contains("<svg onload"));
        assert!(out.contains("invited"));
        assert!(out.contains("fk_1234abcd…"));
        assert!(out.contains("never used"));
        assert!(out.contains(r#"action="/users/3/keys/4/revoke""#));
        assert!(out.contains(">Enable<"), "a disabled user can be enabled");
        assert!(!out.contains(r#"id="secret""#));
        let secret = Secret {
            what: "API key".into(),
            value: "fk_secret".into(),
        };
        let out = view(&s, &rows, None, Some(&secret)).into_string();
        assert!(out.contains("fk_secret"));
    }
}
