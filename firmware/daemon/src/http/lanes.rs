//! HTTPS data lanes: `GET /api/v1/lanes` with `Upgrade: ferry-lanes/1`
//! hands the connection to the data plane, for clients whose network lets
//! only web traffic out (through an HTTP proxy's `CONNECT`, typically).
//!
//! Upgraded HTTP/1.1 connections rather than HTTP/2 streams: each lane is
//! then a TCP connection of its own, so one loss slows one lane and not
//! the session (HTTP/2 would put every stream behind one congestion window
//! and one head-of-line), a proxy tunnels each like any other, and the
//! lanes speak exactly what they speak on a leased TCP port. The session
//! still needs its token, bound to the address the control plane saw.
//!
//! Not in the OpenAPI document: it is a transport, not an operation.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_proto::transport::UPGRADE_HTTPS;
use hyper_util::rt::TokioIo;

use super::Api;
use super::auth::from_headers;
use super::error::ApiError;
use ferry_api::codes;

pub fn routes() -> axum::Router<Arc<Api>> {
    axum::Router::new().route("/api/v1/lanes", axum::routing::get(upgrade))
}

async fn upgrade(
    State(api): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
) -> Response {
    let asks = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(UPGRADE_HTTPS));
    if !asks {
        return ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            codes::INVALID_REQUEST,
            format!("this is the HTTPS data transport: upgrade to {UPGRADE_HTTPS}"),
        )
        .into_response();
    }
    let ip = from_headers(
        peer.ip(),
        &api.services.settings.trusted_proxies(),
        req.headers(),
    );
    let remote = SocketAddr::new(ip, peer.port());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let data = api.data.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                crate::transfer::https_lane(data, Box::new(TokioIo::new(upgraded)), remote).await;
            }
            Err(e) => log::info!("an HTTPS lane from {remote} failed to upgrade: {e}"),
        }
    });
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, HeaderValue::from_static("upgrade")),
            (header::UPGRADE, HeaderValue::from_static(UPGRADE_HTTPS)),
        ],
    )
        .into_response()
}
