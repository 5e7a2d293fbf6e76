//! Sending from the browser (`/send`: staff, and collaborators who may
//! write to a share): drop files and folders,
//! name recipients, a destination and the delivery, set priorities (`.mov`
//! and `.mp4` start High), and Transmit. The delivery is made exactly as
//! `ferry send` makes one (the deliveries service), then each file goes up
//! with tus 1.0 under `/api/v1/uploads/` ([`tus`]), resumable across a
//! closed tab, a cut network or a restarted ferryd. Files already on the
//! appliance go to one more recipient without uploading again.
//!
//! The page's script (`send.js`) drives tus-js-client, installed from npm
//! when the crate is built and served from here, under the same CSP as
//! every page: nothing from elsewhere, no inline script.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_api::{DeliveryFile, DeliveryRequest};
use ferry_proto::Priority;
use maud::{Markup, html};
use serde::Deserialize;

use super::{html, html_status};
use crate::Web;
use crate::auth::{Member, Posted, Staff};
use crate::layout::{MemberTab, Notice, csrf, member_page, staff_page};
use crate::security::{same_origin, secret_eq};

pub mod tus;

/// The largest delivery plan the page may post: room for some 300,000
/// files' paths and facts.
pub const MAX_PLAN: usize = 64 << 20;

/// The header a page's script sends its session's CSRF token in (a
/// script's requests have no form to carry it).
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A signed-in person's script request: from our own pages (the browser
/// says so), with the session's CSRF token in [`CSRF_HEADER`].
pub struct Scripted(pub Member);

impl FromRequestParts<Arc<Web>> for Scripted {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Response> {
        let refuse = |why: String| (StatusCode::FORBIDDEN, why).into_response();
        same_origin(&parts.headers).map_err(|e| refuse(e.to_string()))?;
        let member = Member::from_request_parts(parts, web)
            .await
            .map_err(|_| (StatusCode::UNAUTHORIZED, "sign in first").into_response())?;
        let token = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !secret_eq(token, &member.csrf) {
            return Err(refuse(
                "the request's security token is missing or out of date; reload the page".into(),
            ));
        }
        Ok(Scripted(member))
    }
}

/// The shares `user` may upload into.
async fn writable(web: &Web, user: &ferry_store::User) -> Result<Vec<String>, Response> {
    match web.services.shares.visible(user).await {
        Ok(s) => Ok(s.into_iter().filter(|s| s.write).map(|s| s.name).collect()),
        Err(e) => Err(crate::layout::failure_page(&e)),
    }
}

/// `GET /send`: for staff, and for collaborators with a write grant on
/// some share (they upload; handing on files of a share is staff's).
pub async fn page(State(web): State<Arc<Web>>, member: Member) -> Response {
    match writable(&web, &member.user).await {
        Ok(shares) => html(view(&member, &shares, None)),
        Err(r) => r,
    }
}

pub fn view(member: &Member, shares: &[String], notice: Option<&Notice>) -> Markup {
    let body = html! {
        @if shares.is_empty() && !member.is_staff() {
            p.empty { "You may not upload into any share of this appliance. Ask the people who sent you deliveries for a share you may write to." }
        } @else {
            (upload_form(member, shares))
        }
        @if let Some(staff) = member.as_staff() {
            (share_form(&staff))
        }
    };
    match member.as_staff() {
        Some(staff) => staff_page("Send", "/send", &staff, notice, body),
        None => member_page("Send", MemberTab::Send, member, notice, body),
    }
}

/// The page's priority choices, `Label=value` separated by spaces, from
/// the protocol's own values: the script holds no numbers of its own.
fn priorities() -> String {
    [
        ("High", Priority::HIGH),
        ("Normal", Priority::DEFAULT),
        ("Low", Priority::LOW),
    ]
    .iter()
    .map(|(label, p)| format!("{label}={}", p.get()))
    .collect::<Vec<_>>()
    .join(" ")
}

fn upload_form(member: &Member, shares: &[String]) -> Markup {
    html! {
            div #send data-csrf=(member.csrf) data-high=(Priority::STARTS_HIGH.join(" "))
                data-priorities=(priorities()) {
                div #resume.notice hidden {}
                form #send-form.stack {
                    label { "Files"
                        input #files type="file" multiple; }
                    label { "Or a folder (with everything in it)"
                        input #folder type="file" webkitdirectory multiple; }
                    div #drop.drop { "…or drop files and folders here" }
                    table #chosen.files hidden {
                        thead { tr { th { "File" } th.num { "Size" } th { "Priority" } th { "Upload" } } }
                        tbody {}
                    }
                    label { "Recipients (emails, one per line or separated by commas)"
                        textarea #recipients name="recipients" rows="3" required placeholder="director@client.example" {} }
                    label { "Destination on the appliance"
                        input #dest type="text" required list="shares" placeholder="share=media/review-0412"; }
                    datalist #shares {
                        @for s in shares { option value={"share=" (s) "/"} {} }
                    }
                    label { "Name of the delivery"
                        input #name type="text" placeholder="review-0412"; }
                    button #transmit.primary type="submit" { "Transmit" }
                    p #status.hint role="status" {}
                }
            }
            script src="/static/tus.min.js" {}
            script src="/static/send.js" {}
    }
}

fn share_form(staff: &Staff) -> Markup {
    html! {
            h2 { "Send files already on the appliance" }
            p.hint { "To one more recipient, say: nothing is uploaded again." }
            form #send-share.stack method="post" action="/send/share" {
                (csrf(staff))
                label { "Files or folders on the appliance (one per line)"
                    textarea name="sources" rows="2" required placeholder="share=media/review-0412" {} }
                label { "Recipients"
                    textarea name="recipients" rows="2" required {} }
                label { "Name of the delivery" input type="text" name="name"; }
                button.primary type="submit" { "Send" }
            }
    }
}

/// What the page's script asks for to make a delivery of files it
/// uploads next.
#[derive(Debug, Deserialize)]
pub struct Upload {
    name: Option<String>,
    recipients: Vec<String>,
    dest: String,
    files: Vec<DeliveryFile>,
}

/// `POST /send/deliveries`: the delivery, as `ferry send` makes it; the
/// script then uploads each file to the upload job it names.
pub async fn make(
    State(web): State<Arc<Web>>,
    Scripted(member): Scripted,
    Json(req): Json<Upload>,
) -> Response {
    let made = web
        .services
        .deliveries
        .create(
            &member.user,
            member.from,
            DeliveryRequest {
                name: req.name,
                recipients: req.recipients,
                dest: Some(req.dest),
                files: req.files,
                ..Default::default()
            },
        )
        .await;
    match made {
        Ok(d) => (StatusCode::CREATED, Json(d)).into_response(),
        Err(e) => {
            let status = crate::layout::status_of(&e);
            (status, Json(serde_json::json!({"error": e.to_string()}))).into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ShareForm {
    sources: String,
    recipients: String,
    #[serde(default)]
    name: String,
}

fn lines(s: &str) -> Vec<String> {
    s.split([',', '\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `POST /send/share`: files already on the appliance, to recipients.
pub async fn from_share(State(web): State<Arc<Web>>, posted: Posted<ShareForm>) -> Response {
    let Posted { staff, form } = posted;
    let shares = match writable(&web, &staff.user).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let member = Member::from(staff.clone());
    let made = web
        .services
        .deliveries
        .create(
            &staff.user,
            staff.from,
            DeliveryRequest {
                name: Some(form.name).filter(|n| !n.trim().is_empty()),
                recipients: lines(&form.recipients),
                sources: lines(&form.sources),
                ..Default::default()
            },
        )
        .await;
    match made {
        Ok(d) => {
            let to: Vec<String> = d.jobs.iter().filter_map(|j| j.recipient.clone()).collect();
            html(view(
                &member,
                &shares,
                Some(&Notice::Done(format!(
                    "Delivery {} sent to {}: nothing was uploaded again.",
                    d.delivery,
                    to.join(", ")
                ))),
            ))
        }
        Err(e) => html_status(
            crate::layout::status_of(&e),
            view(&member, &shares, Some(&Notice::Error(e.to_string()))),
        ),
    }
}

pub async fn tus_script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!(concat!(env!("OUT_DIR"), "/tus.min.js")),
    )
}

pub async fn send_script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../../assets/send.js"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_and_sources_split_on_lines_and_commas() {
        assert_eq!(
            lines(" a@x.io, b@x.io\r\nc@x.io\n\n"),
            ["a@x.io", "b@x.io", "c@x.io"]
        );
    }

    #[test]
    fn the_page_loads_its_scripts_from_here_only() {
        let staff = crate::pages::tests::staff(false);
        let out = view(&Member::from(staff), &["media".into()], None).into_string();
        assert!(out.contains(r#"src="/static/tus.min.js""#));
        assert!(out.contains(r#"src="/static/send.js""#));
        assert!(!out.contains("<script>"), "no inline script");
        assert!(out.contains("share=media/"));
        assert!(out.contains(r#"data-csrf="c5rf""#));
    }
}
