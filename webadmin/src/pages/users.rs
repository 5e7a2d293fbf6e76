//! Users (admins only): invite by email, set the role, disable and enable,
//! reset a password to a one-time one, and manage API keys (a new key is
//! shown once; keys list with their last use and can be revoked).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use ferry_store::{ApiKey, ApiKeyId, Role, User, UserId, UserStatus};
use maud::{Markup, html};
use serde::Deserialize;

use super::{done, html_status};
use crate::auth::{Admin, AdminPost, Staff};
use crate::format::{ago, timestamp};
use crate::layout::{Notice, button, csrf, staff_page};
use crate::{Appliance, Refused, Web};

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

fn rows(app: &impl Appliance) -> Result<Vec<UserRow>, Refused> {
    let store = app.store();
    store
        .list_users()?
        .into_iter()
        .map(|user| {
            let keys = store.list_api_keys(user.id)?;
            Ok(UserRow { user, keys })
        })
        .collect()
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    ok: Option<String>,
}

pub async fn page<A: Appliance>(
    State(web): State<Arc<Web<A>>>,
    Admin(staff): Admin,
    Query(q): Query<PageQuery>,
) -> Response {
    render(
        &*web.app,
        &staff,
        Notice::from_code(q.ok.as_deref()),
        None,
        StatusCode::OK,
    )
}

fn render(
    app: &impl Appliance,
    staff: &Staff,
    notice: Option<Notice>,
    secret: Option<&Secret>,
    status: StatusCode,
) -> Response {
    match rows(app) {
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
    let t = ferry_store::now();
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
                    button.primary type="submit" { "Invite" }
                }
                p.hint {
                    "Admins run the appliance; employees send deliveries and see their own; "
                    "collaborators receive deliveries with the Ferry client and cannot open these pages."
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
            td { span class={"badge " (u.status.as_str())} { (u.status.as_str()) } }
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
                (button(staff, &format!("/users/{id}/reset"), "Reset password", "", &[]))
            }
        }
    }
}

fn target(app: &impl Appliance, id: i64) -> Result<User, Refused> {
    app.store()
        .user(UserId(id))
        .map_err(|_| Refused::new(format!("there is no user {id}")))
}

/// Runs a change and answers with the page: a redirect when it worked, the
/// page with the error when not.
fn finish(app: &impl Appliance, staff: &Staff, result: Result<&str, Refused>) -> Response {
    match result {
        Ok(code) => done("/users", code),
        Err(e) => render(
            app,
            staff,
            Some(Notice::Error(e.message)),
            None,
            StatusCode::BAD_REQUEST,
        ),
    }
}

#[derive(Debug, Deserialize)]
pub struct InviteForm {
    email: String,
    #[serde(default)]
    name: String,
    role: String,
}

pub async fn invite<A: Appliance>(
    State(web): State<Arc<Web<A>>>,
    posted: AdminPost<InviteForm>,
) -> Response {
    let AdminPost { staff, form } = posted;
    let result = (|| {
        let role: Role = form.role.parse()?;
        web.app.invite(
            &staff.user,
            staff.from,
            form.email.trim(),
            form.name.trim(),
            role,
        )?;
        Ok("invited")
    })();
    finish(&*web.app, &staff, result)
}

#[derive(Debug, Deserialize)]
pub struct RoleForm {
    role: String,
}

pub async fn role<A: Appliance>(
    State(web): State<Arc<Web<A>>>,
    Path(id): Path<i64>,
    posted: AdminPost<RoleForm>,
) -> Response {
    let AdminPost { staff, form } = posted;
    let result = (|| {
        let u = target(&*web.app, id)?;
        let role: Role = form.role.parse()?;
        if u.id == staff.user.id && role != Role::Admin {
            return Err(Refused::new(
                "You cannot take away your own admin role; ask another admin.",
            ));
        }
        web.app.store().set_role(u.id, role)?;
        staff.audit(
            web.app.store(),
            "user.role",
            &u.email,
            role.as_str().to_owned(),
        );
        Ok("role")
    })();
    finish(&*web.app, &staff, result)
}

#[derive(Debug, Deserialize)]
pub struct StatusForm {
    status: String,
}

pub async fn status<A: Appliance>(
    State(web): State<Arc<Web<A>>>,
    Path(id): Path<i64>,
    posted: AdminPost<StatusForm>,
) -> Response {
    let AdminPost { staff, form } = posted;
    let result = (|| {
        let u = target(&*web.app, id)?;
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
        let store = web.app.store();
        store.set_status(u.id, status)?;
        if status == UserStatus::Disabled {
            // Logged out at once; API keys stop working with the account.
            store.end_web_sessions_of(u.id)?;
        }
        staff.audit(
            web.app.store(),
            "user.status",
            &u.email,
            status.as_str().to_owned(),
        );
        Ok("status")
    })();
    finish(&*web.app, &staff, result)
}

#[derive(Debug, Deserialize)]
pub struct Empty {}

pub async fn reset<A: Appliance>(
    State(web): State<Arc<Web<A>>>,
    Path(id): Path<i64>,
    posted: AdminPost<Empty>,
) -> Response {
    let staff = posted.staff;
    let u = match target(&*web.app, id) {
        Ok(u) => u,
        Err(e) => return finish(&*web.app, &staff, Err(e)),
    };
    let password = ferry_store::random_hex(9);
    let app = web.app.clone();
    let (uid, pw) = (u.id, password.clone());
    let set = tokio::task::spawn_blocking(move || {
        let store = app.store();
        store.set_password(uid, &pw)?;
        store.set_must_change_password(uid, true)?;
        store.end_web_sessions_of(uid)
    })
    .await
    .unwrap_or_else(|e| Err(ferry_store::StoreError::Invalid(e.to_string())));
    if let Err(e) = set {
        return finish(&*web.app, &staff, Err(e.into()));
    }
    staff.audit(
        web.app.store(),
        "user.reset",
        &u.email,
        "one-time password".into(),
    );
    let secret = Secret {
        what: format!(
            "One-time password for {}: they choose their own at the next login.",
            u.email
        ),
        value: password,
    };
    render(&*web.app, &staff, None, Some(&secret), StatusCode::OK)
}

#[derive(Debug, Deserialize)]
pub struct KeyForm {
    name: String,
}

pub async fn create_key<A: Appliance>(
    State(web): State<Arc<Web<A>>>,
    Path(id): Path<i64>,
    posted: AdminPost<KeyForm>,
) -> Response {
    let AdminPost { staff, form } = posted;
    let result = (|| {
        let u = target(&*web.app, id)?;
        let name = form.name.trim();
        if name.is_empty() {
            return Err(Refused::new(
                "Give the key a name (the script or machine that uses it).",
            ));
        }
        let key = web.app.store().create_api_key(u.id, name)?;
        staff.audit(web.app.store(), "apikey.create", &u.email, name.to_owned());
        Ok(Secret {
            what: format!("API key {name:?} for {}:", u.email),
            value: key.secret,
        })
    })();
    match result {
        Ok(secret) => render(&*web.app, &staff, None, Some(&secret), StatusCode::OK),
        Err(e) => finish(&*web.app, &staff, Err(e)),
    }
}

pub async fn revoke_key<A: Appliance>(
    State(web): State<Arc<Web<A>>>,
    Path((id, key)): Path<(i64, i64)>,
    posted: AdminPost<Empty>,
) -> Response {
    let staff = posted.staff;
    let result = (|| {
        let u = target(&*web.app, id)?;
        web.app.store().revoke_api_key(u.id, ApiKeyId(key))?;
        staff.audit(
            web.app.store(),
            "apikey.revoke",
            &u.email,
            format!("key {key}"),
        );
        Ok("revoked")
    })();
    finish(&*web.app, &staff, result)
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
