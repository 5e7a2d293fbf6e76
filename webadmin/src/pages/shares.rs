//! Shares: root shares (folders on the appliance), shares inside them,
//! who may read and write each, and a browser of a share's files.
//! Admins manage them; employees see and browse the shares granted to them.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use ferry_api::EntryKind;
use ferry_domain::rules::Access;
use ferry_store::{Share, UserId};
use maud::{Markup, html};
use serde::Deserialize;

use super::{done, html, html_status};
use crate::auth::{AdminPost, Staff};
use crate::format::{ago, bytes, timestamp};
use crate::layout::{Notice, csrf, staff_page, url_escape};
use crate::{Refused, Web};

/// A share with who may use it, for the page.
#[derive(Debug, Clone)]
pub struct ShareRow {
    pub share: Share,
    pub acl: Vec<(UserId, String, Access)>,
}

/// The shares `staff` may see, with their grants for admins.
async fn rows(web: &Web, staff: &Staff) -> Result<Vec<ShareRow>, Refused> {
    let shares = &web.services.shares;
    let mut out = Vec::new();
    for info in shares.visible(&staff.user).await? {
        let Some(share) = shares.by_name(&info.name).await? else {
            continue;
        };
        let acl = if staff.is_admin() {
            shares.grants(staff.by(), share.id).await?
        } else {
            Vec::new()
        };
        out.push(ShareRow { share, acl });
    }
    Ok(out)
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    ok: Option<String>,
}

pub async fn page(
    State(web): State<Arc<Web>>,
    staff: Staff,
    Query(q): Query<PageQuery>,
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
    match rows(web, staff).await {
        Ok(r) => html_status(status, view(staff, &r, notice.as_ref())),
        Err(e) => crate::layout::error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.message),
    }
}

pub fn view(staff: &Staff, rows: &[ShareRow], notice: Option<&Notice>) -> Markup {
    let roots: Vec<&ShareRow> = rows.iter().filter(|r| r.share.is_root()).collect();
    let shares: Vec<&ShareRow> = rows.iter().filter(|r| !r.share.is_root()).collect();
    staff_page(
        "Shares",
        "/shares",
        staff,
        notice,
        html! {
            section {
                h2 { "Root shares" }
                p.hint { "A root share is a folder on the appliance, such as a media volume." }
                @if roots.is_empty() {
                    p.empty {
                        @if staff.is_admin() { "No root share yet. Add the folder where deliveries should live." }
                        @else { "No root share is granted to you. Ask an admin." }
                    }
                } @else {
                    table #roots {
                        thead { tr { th { "Name" } th { "Folder on the appliance" } th { "Access" } th {} } }
                        tbody {
                            @for r in &roots {
                                tr {
                                    td { (r.share.name) }
                                    td { code { (r.share.path) } }
                                    td { (acl(&r.acl, staff)) }
                                    td { a href={"/shares/browse/" (url_escape(&r.share.name))} { "Browse" } }
                                }
                            }
                        }
                    }
                }
                @if staff.is_admin() {
                    form.inline-form #add-root method="post" action="/shares/root" {
                        (csrf(staff))
                        label { "Name" input type="text" name="name" required placeholder="media"; }
                        label { "Absolute folder" input type="text" name="path" required placeholder="/srv/media"; }
                        button.primary type="submit" { "Add root share" }
                    }
                }
            }
            section {
                h2 { "Shares" }
                p.hint { "A share is a folder inside a root share, granted to people as a unit (one per project, say)." }
                @if shares.is_empty() {
                    p.empty {
                        @if staff.is_admin() { "No share yet. Make one inside a root share, then grant it to people." }
                        @else { "No share is granted to you." }
                    }
                } @else {
                    table #shares {
                        thead { tr { th { "Name" } th { "In" } th { "Folder" } th { "Access" } th {} } }
                        tbody {
                            @for r in &shares {
                                tr {
                                    td { (r.share.name) }
                                    td { (r.share.parent_name.as_deref().unwrap_or("")) }
                                    td { code { (r.share.path) } }
                                    td { (acl(&r.acl, staff)) }
                                    td { a href={"/shares/browse/" (url_escape(&r.share.name))} { "Browse" } }
                                }
                            }
                        }
                    }
                }
                @if staff.is_admin() && !roots.is_empty() {
                    form.inline-form #add-share method="post" action="/shares/share" {
                        (csrf(staff))
                        label { "Name" input type="text" name="name" required placeholder="theproject"; }
                        label { "In root share"
                            select name="root" { @for r in &roots { option value=(r.share.name) { (r.share.name) } } }
                        }
                        label { "Folder" input type="text" name="folder" required placeholder="projects/theproject"; }
                        button.primary type="submit" { "Add share" }
                    }
                }
            }
            @if staff.is_admin() && !rows.is_empty() {
                section {
                    h2 { "Grant access" }
                    form.inline-form #grant method="post" action="/shares/grant" {
                        (csrf(staff))
                        label { "Share"
                            select name="share" { @for r in rows { option value=(r.share.name) { (r.share.name) } } }
                        }
                        label { "User's email" input type="email" name="email" required; }
                        label.check { input type="checkbox" name="read" value="on" checked; " read" }
                        label.check { input type="checkbox" name="write" value="on"; " write" }
                        button type="submit" { "Save" }
                    }
                    p.hint { "Neither read nor write removes the grant. Admins may use every share." }
                }
            }
        },
    )
}

fn acl(acl: &[(UserId, String, Access)], staff: &Staff) -> Markup {
    html! {
        @if !staff.is_admin() {
            span.hint { "granted to you" }
        } @else if acl.is_empty() {
            span.hint { "admins only" }
        } @else {
            ul.acl {
                @for (_, email, a) in acl {
                    li { (email) " " span.hint {
                        @if a.read && a.write { "read, write" } @else if a.write { "write" } @else { "read" }
                    } }
                }
            }
        }
    }
}

/// After a change (audited by the service): back to the page, or the
/// page again with why not.
async fn finish(web: &Web, staff: &Staff, change: Result<&'static str, Refused>) -> Response {
    match change {
        Ok(code) => done("/shares", code),
        Err(e) => {
            render(
                web,
                staff,
                Some(Notice::Error(e.message)),
                StatusCode::BAD_REQUEST,
            )
            .await
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RootForm {
    name: String,
    path: String,
}

pub async fn add_root(State(web): State<Arc<Web>>, posted: AdminPost<RootForm>) -> Response {
    let AdminPost { staff, form } = posted;
    let result = web
        .services
        .shares
        .add_root(staff.by(), staff.actor(), &form.name, &form.path)
        .await;
    finish(
        &web,
        &staff,
        result.map(|_| "root-added").map_err(Refused::from),
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct ShareForm {
    name: String,
    root: String,
    folder: String,
}

pub async fn add_share(State(web): State<Arc<Web>>, posted: AdminPost<ShareForm>) -> Response {
    let AdminPost { staff, form } = posted;
    let result = web
        .services
        .shares
        .add_beneath(
            staff.by(),
            staff.actor(),
            &form.name,
            &form.root,
            &form.folder,
        )
        .await;
    finish(
        &web,
        &staff,
        result.map(|_| "share-added").map_err(Refused::from),
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct GrantForm {
    share: String,
    email: String,
    read: Option<String>,
    write: Option<String>,
}

pub async fn grant(State(web): State<Arc<Web>>, posted: AdminPost<GrantForm>) -> Response {
    let AdminPost { staff, form } = posted;
    let access = Access {
        read: form.read.is_some(),
        write: form.write.is_some(),
    };
    let result = web
        .services
        .shares
        .grant(staff.by(), staff.actor(), &form.share, &form.email, access)
        .await
        .map_err(|e| match e {
            ferryd_core::shares::SharesError::Store(ferry_store::StoreError::NotFound(_)) => {
                Refused::new(format!(
                    "there is no user {}; invite them first",
                    form.email.trim()
                ))
            }
            other => other.into(),
        });
    finish(&web, &staff, result.map(|()| "granted")).await
}

#[derive(Debug, Default, Deserialize)]
pub struct BrowseQuery {
    path: Option<String>,
}

/// One entry of a folder.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub dir: bool,
    pub size: u64,
    pub modified: Option<i64>,
}

/// Entries shown per folder; the rest are counted.
const BROWSE_LIMIT: usize = 2000;

pub async fn browse(
    State(web): State<Arc<Web>>,
    staff: Staff,
    Path(name): Path<String>,
    Query(q): Query<BrowseQuery>,
) -> Response {
    let sub = q.path.as_deref().unwrap_or("").trim_matches('/').to_owned();
    let shares = &web.services.shares;
    let listed = shares
        .browse(&staff.user, &name, &sub, None, BROWSE_LIMIT)
        .await
        .map_err(Refused::from);
    let share = match shares.by_name(&name).await {
        Ok(Some(s)) => s,
        _ => {
            return crate::layout::error_page(
                StatusCode::NOT_FOUND,
                &format!("there is no share named {name:?}"),
            );
        }
    };
    match listed {
        Ok(listing) => {
            let more = usize::from(listing.next_cursor.is_some());
            let mut entries: Vec<Entry> = listing
                .entries
                .into_iter()
                .map(|e| Entry {
                    dir: e.kind == EntryKind::Folder,
                    name: e.name,
                    size: e.size,
                    modified: e.mtime,
                })
                .collect();
            entries.sort_by(|a, b| b.dir.cmp(&a.dir).then(a.name.cmp(&b.name)));
            html(browse_view(&staff, &share, &sub, &entries, more))
        }
        Err(e) => crate::layout::error_page(StatusCode::NOT_FOUND, &e.message),
    }
}

pub fn browse_view(
    staff: &Staff,
    share: &Share,
    sub: &str,
    entries: &[Entry],
    more: usize,
) -> Markup {
    let t = jiff::Timestamp::now().as_second();
    let base = format!("/shares/browse/{}", url_escape(&share.name));
    let join = |name: &str| {
        if sub.is_empty() {
            name.to_owned()
        } else {
            format!("{sub}/{name}")
        }
    };
    // Each folder on the way down, with the path that opens it.
    let parts: Vec<&str> = sub.split('/').filter(|p| !p.is_empty()).collect();
    let crumbs: Vec<(String, &str)> = (0..parts.len())
        .map(|i| (parts[..=i].join("/"), parts[i]))
        .collect();
    staff_page(
        &format!("Share {}", share.name),
        "/shares",
        staff,
        None,
        html! {
            p.crumbs {
                a href=(base) { (share.name) }
                @for (path, part) in &crumbs {
                    " / " a href={(base) "?path=" (url_escape(path))} { (part) }
                }
            }
            @if entries.is_empty() {
                p.empty { "This folder is empty. Files arrive here with " code { "ferry put" } " or " code { "ferry send" } "." }
            } @else {
                table.files {
                    thead { tr { th { "Name" } th.num { "Size" } th { "Modified" } } }
                    tbody {
                        @for e in entries {
                            tr {
                                td {
                                    @if e.dir { a href={(base) "?path=" (url_escape(&join(&e.name)))} { (e.name) "/" } }
                                    @else { (e.name) }
                                }
                                td.num { @if !e.dir { (bytes(e.size)) } }
                                td { @if let Some(m) = e.modified { span title=(timestamp(m)) { (ago(m, t)) } } }
                            }
                        }
                    }
                }
                @if more > 0 { p.hint { "and more, not shown" } }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::tests::staff;

    fn share(name: &str, root: bool) -> Share {
        Share {
            id: ferry_store::ShareId(1),
            name: name.into(),
            parent: (!root).then_some(ferry_store::ShareId(9)),
            parent_name: (!root).then(|| "media".to_owned()),
            path: if root {
                "/srv/media".into()
            } else {
                "projects/x".into()
            },
            abs_path: "/srv/media".into(),
            created_at: 0,
        }
    }

    #[test]
    fn an_empty_appliance_says_to_add_a_root_share() {
        let out = view(&staff(true), &[], None).into_string();
        assert!(out.contains("No root share yet"));
        assert!(out.contains(r#"action="/shares/root""#));
        let out = view(&staff(false), &[], None).into_string();
        assert!(out.contains("No root share is granted to you"));
        assert!(
            !out.contains(r#"action="/shares/root""#),
            "employees cannot add shares"
        );
    }

    #[test]
    fn share_names_render_inert() {
        let rows = vec![
            ShareRow {
                share: share("media", true),
                acl: vec![],
            },
            ShareRow {
                share: share("<script>alert(1)</script>", false),
                acl: vec![(
                    UserId(2),
                    "<img src=x>@example.com".into(),
                    Access {
                        read: true,
                        write: false,
                    },
                )],
            },
        ];
        let out = view(&staff(true), &rows, None).into_string();
        assert!(!out.contains("<script>alert"));
        assert!(!out.contains("<img src=x>"));
        assert!(out.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(out.contains("/shares/browse/%3Cscript%3Ealert%281%29%3C/script%3E"));
    }

    #[test]
    fn browsing_shows_folders_first_with_breadcrumbs() {
        let entries = vec![
            Entry {
                name: "a.mov".into(),
                dir: false,
                size: 2_000_000,
                modified: None,
            },
            Entry {
                name: "shot010".into(),
                dir: true,
                size: 0,
                modified: None,
            },
        ];
        let out = browse_view(
            &staff(true),
            &share("media", true),
            "review/day1",
            &entries,
            3,
        )
        .into_string();
        assert!(out.contains(r#"href="/shares/browse/media?path=review/day1""#));
        assert!(out.contains(r#"href="/shares/browse/media?path=review/day1/shot010""#));
        assert!(out.contains("2.00 MB"));
        assert!(out.contains("and more, not shown"));
    }
}
