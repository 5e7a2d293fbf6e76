//! The dashboard: transfers running now (kept live by server-sent events),
//! the aggregate throughput, the port leases in use, the appliance's nodes
//! and what an admin should fix.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use ferry_domain::node::{self, Health};
use ferry_domain::rules;
use ferry_store::User;
use futures::Stream;
use maud::{Markup, html};
use serde::Deserialize;

use super::html;
use crate::auth::Staff;
use crate::format::{bytes, duration, eta, percent, rate};
use crate::layout::{Notice, staff_page};
use crate::{LeaseInfo, LiveTransfer, Web};

#[derive(Debug, Default, Deserialize)]
pub struct Ok {
    ok: Option<String>,
}

/// The transfers `user` may watch: those whose job the rulebook lets them
/// see (all of them for admins).
async fn visible(web: &Web, user: &User) -> Vec<LiveTransfer> {
    let services = &web.services;
    let mut out = Vec::new();
    for l in services.live.list() {
        let Ok(job) = services.jobs.visible(user, l.job.0).await else {
            continue;
        };
        let who = match services.users.get(l.user).await {
            Ok(u) => u.email,
            Err(_) => continue,
        };
        let p = l.handle.progress();
        out.push(LiveTransfer {
            job: job.id.0,
            name: job.name,
            kind: job.kind.to_string(),
            user: who,
            client: l.client.to_string(),
            port: l.port,
            bytes_done: p.bytes_done(),
            bytes_total: p.bytes_total,
            rate: job.rate.max(0) as u64,
            pace: format!("{} over {}", l.handle.pace(), l.transport),
            seconds: l.started.elapsed().as_secs(),
        });
    }
    out.sort_by_key(|t| t.job);
    out
}

/// The data ports open now, and who holds each (admins).
async fn leases(web: &Web) -> Vec<LeaseInfo> {
    let services = &web.services;
    let live = services.live.list();
    let mut out = Vec::new();
    for l in services.appliance.open_ports() {
        // A lease is taken before its connection arrives; until then
        // nobody is named.
        let holder = live
            .iter()
            .find(|s| s.port == l.port && s.client.ip() == l.client)
            .map(|s| s.user);
        let user = match holder {
            Some(u) => services
                .users
                .get(u)
                .await
                .map_or_else(|_| "(unknown)".to_owned(), |u| u.email),
            None => "(connecting)".to_owned(),
        };
        out.push(LeaseInfo {
            port: l.port,
            client: l.client,
            user,
        });
    }
    out.sort_by_key(|l| (l.port, l.client));
    out
}

/// A node as the dashboard shows it.
#[derive(Debug, Clone)]
pub struct NodeRow {
    pub name: String,
    pub health: Health,
    /// The node that served this page.
    pub this: bool,
    pub sessions: i64,
    /// Seconds since its last heartbeat.
    pub seen_ago: i64,
    pub address: String,
    pub version: String,
}

/// The appliance's nodes (admins); a store that cannot answer shows none,
/// and the warnings say why.
async fn nodes(web: &Web, staff: &Staff) -> Vec<NodeRow> {
    let now = web.services.clock.now();
    match web.services.nodes.list(staff.by()).await {
        Ok(all) => all
            .into_iter()
            .map(|v| NodeRow {
                seen_ago: now - v.node.seen_at,
                name: v.node.name,
                health: v.health,
                this: v.this,
                sessions: v.node.sessions,
                address: v.node.address,
                version: v.node.version,
            })
            .collect(),
        Err(e) => {
            log::warn!("the dashboard could not list the nodes: {e}");
            Vec::new()
        }
    }
}

pub async fn page(State(web): State<Arc<Web>>, staff: Staff, Query(q): Query<Ok>) -> Response {
    let live = visible(&web, &staff.user).await;
    let (leases, warnings, nodes) = if rules::admin(&staff.user.caller(), "leases").is_ok() {
        (
            leases(&web).await,
            web.services.warnings().await,
            nodes(&web, &staff).await,
        )
    } else {
        (Vec::new(), Vec::new(), Vec::new())
    };
    let bandwidth = web.services.live.site_cap().words();
    html(view(
        &staff,
        &live,
        &leases,
        &nodes,
        &warnings,
        &bandwidth,
        Notice::from_code(q.ok.as_deref()).as_ref(),
    ))
}

pub fn view(
    staff: &Staff,
    live: &[LiveTransfer],
    leases: &[LeaseInfo],
    nodes: &[NodeRow],
    warnings: &[String],
    bandwidth: &str,
    notice: Option<&Notice>,
) -> Markup {
    let total: u64 = live.iter().map(|t| t.rate).sum();
    staff_page(
        "Dashboard",
        "/",
        staff,
        notice,
        html! {
            @for w in warnings {
                div.notice.warning role="alert" { (w) }
            }
            section.cards {
                div.card {
                    div.label { "Throughput" }
                    div.big #throughput { (rate(total)) }
                }
                div.card {
                    div.label { "Transfers running" }
                    div.big #running { (live.len()) }
                }
                @if staff.is_admin() {
                    div.card {
                        div.label { "Port leases" }
                        div.big #lease-count { (leases.len()) }
                    }
                }
            }
            p.hint #bandwidth { "Bandwidth: " (bandwidth) "." }
            section {
                h2 { "Live transfers" }
                table.live #live data-live="/live" {
                    thead { tr {
                        th { "Job" } th { "Who" } th { "Progress" } th.num { "Rate" } th.num { "ETA" } th { "Pace" }
                    } }
                    tbody {
                        @for t in live { (live_row(t)) }
                    }
                }
                p.empty #live-empty hidden[!live.is_empty()] {
                    "Nothing is moving right now. Transfers show here as they run; "
                    a href="/transfers" { "Transfers" } " lists every job."
                }
            }
            @if staff.is_admin() {
                section {
                    h2 { "Port leases" }
                    // Both follow along live (the page's script).
                    p.empty #leases-empty hidden[!leases.is_empty()] {
                        "No data port is open. A port opens for one client when its session starts and closes when it ends."
                    }
                    table #leases hidden[leases.is_empty()] {
                        thead { tr { th.num { "Data port (UDP and TCP)" } th { "Client address" } th { "User" } } }
                        tbody {
                            @for l in leases {
                                tr { td.num { (l.port) } td { (l.client) } td { (l.user) } }
                            }
                        }
                    }
                }
                section {
                    h2 { "Nodes" }
                    p.hint {
                        "Each ferryd serving this appliance's database. Sessions are counted at each heartbeat (every "
                        (node::HEARTBEAT) " s); a node silent for " (node::SILENT_AFTER) " s is taken for down. "
                        "Drain one before maintenance with " code { "ferryd admin node drain NAME" } "."
                    }
                    table #nodes {
                        thead { tr {
                            th { "Node" } th { "Health" } th.num { "Sessions" } th.num { "Last seen" } th { "Address" } th { "Version" }
                        } }
                        tbody {
                            @for n in nodes {
                                tr data-node=(n.name) {
                                    td { (n.name) @if n.this { " " span.hint { "(this page's)" } } }
                                    td { span class={"health " (n.health)} { (n.health) } }
                                    td.num { (n.sessions) }
                                    td.num { (duration(n.seen_ago.max(0) as u64)) " ago" }
                                    td { (n.address) }
                                    td { (n.version) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// One live transfer as a table row (the script renders the same shape).
pub fn live_row(t: &LiveTransfer) -> Markup {
    let pct = percent(t.bytes_done, t.bytes_total);
    html! {
        tr data-job=(t.job) {
            td { a href={"/transfers/" (t.job)} { (t.name) } " " span.kind { (t.kind) } }
            td { (t.user) br; span.hint { (t.client) } }
            td {
                progress max="100" value=(pct) {}
                " " span.hint { (bytes(t.bytes_done)) " of " (bytes(t.bytes_total)) " (" (pct) " %)" }
            }
            td.num { (rate(t.rate)) }
            td.num { (eta(t.bytes_done, t.bytes_total, t.rate)) }
            td { span.hint { (t.pace) ", " (duration(t.seconds)) } }
        }
    }
}

/// Server-sent events: the live transfers once a second, as JSON the
/// page's script renders. The stream ends when the session does (logout,
/// expiry, the user disabled).
pub async fn live(
    State(web): State<Arc<Web>>,
    headers: axum::http::HeaderMap,
    staff: Staff,
) -> impl IntoResponse {
    let token = crate::auth::session_token(&headers).unwrap_or_default();
    Sse::new(updates(web, staff.user, token)).keep_alive(KeepAlive::default())
}

fn updates(
    web: Arc<Web>,
    user: User,
    token: String,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(
        (web, user, token, true),
        |(web, user, token, first)| async move {
            if !first {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            // A live page must not keep its session alive by itself, and
            // a store that cannot answer ends the stream too.
            let alive = web
                .services
                .users
                .web_session_alive(&token)
                .await
                .is_ok_and(|a| a);
            if !alive {
                return None;
            }
            let live = visible(&web, &user).await;
            let total: u64 = live.iter().map(|t| t.rate).sum();
            let rows: Vec<serde_json::Value> = live
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "job": t.job,
                        "name": t.name,
                        "kind": t.kind,
                        "user": t.user,
                        "client": t.client,
                        "bytes_done": t.bytes_done,
                        "bytes_total": t.bytes_total,
                        "done": bytes(t.bytes_done),
                        "total": bytes(t.bytes_total),
                        "percent": percent(t.bytes_done, t.bytes_total),
                        "rate": rate(t.rate),
                        "eta": eta(t.bytes_done, t.bytes_total, t.rate),
                        "pace": format!("{}, {}", t.pace, duration(t.seconds)),
                    })
                })
                .collect();
            let mut data = serde_json::json!({ "throughput": rate(total), "transfers": rows });
            // Admins see the port leases, which come and go with sessions.
            if rules::admin(&user.caller(), "leases").is_ok() {
                data["leases"] = leases(&web)
                    .await
                    .iter()
                    .map(|l| serde_json::json!({ "port": l.port, "client": l.client.to_string(), "user": l.user }))
                    .collect();
            }
            let event = Event::default().event("transfers").data(data.to_string());
            Some((Ok(event), (web, user, token, false)))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::tests::staff;

    #[test]
    fn an_idle_appliance_says_what_happens_next() {
        let s = staff(true);
        let out = view(
            &s,
            &[],
            &[],
            &[],
            &[],
            "no cap on all transfers together",
            None,
        )
        .into_string();
        assert!(out.contains("Nothing is moving right now"));
        assert!(out.contains("No data port is open"));
    }

    #[test]
    fn a_transfer_shows_progress_rate_and_eta_and_names_are_escaped() {
        let s = staff(true);
        let t = LiveTransfer {
            job: 7,
            name: "<script>alert(1)</script>".into(),
            kind: "download".into(),
            user: "ann@example.com".into(),
            client: "192.0.2.7:5000".into(),
            port: 45190,
            bytes_done: 250_000_000,
            bytes_total: 1_000_000_000,
            rate: 12_500_000,
            pace: "fair to 100 Mbit/s".into(),
            seconds: 20,
        };
        let warnings = vec!["the per-session firewall is off".to_owned()];
        let silent = NodeRow {
            name: "ferry-b".into(),
            health: Health::Silent,
            this: false,
            sessions: 3,
            seen_ago: 95,
            address: "ferry-b.example:8443".into(),
            version: "0.1.0".into(),
        };
        let out = view(
            &s,
            &[t],
            &[],
            &[silent],
            &warnings,
            "all transfers together capped at 200 Mbit/s (schedule: mon-fri 09:00-19:00 200 Mbit/s; urgent jobs are spared) until Tue 19:00:00 CET",
            None,
        )
        .into_string();
        assert!(out.contains("capped at 200 Mbit/s"));
        assert!(out.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!out.contains("<script>alert"));
        assert!(out.contains("12.5 MB/s"));
        assert!(out.contains("1 min"), "ETA of 750 MB at 12.5 MB/s");
        assert!(out.contains("25 %"));
        assert!(out.contains("the per-session firewall is off"));
        assert!(out.contains(r#"<span class="health silent">silent</span>"#));
        assert!(out.contains("1 min ago"), "last seen 95 s ago");
    }
}
