//! The HTTPS control plane: TLS (rustls) in front of an axum router that
//! serves the REST API under `/api/v1` and the web admin beside it. The
//! handlers are an adapter: they read the request, ask a service, and
//! write what it answers.
//!
//! The accept loop is ours rather than `axum::serve` so that the TLS
//! handshake and each request head have a deadline (a slow client cannot
//! hold a connection open for free, while an idle keep-alive connection is
//! kept longer; see [`deadline`]) and the peer address reaches the
//! handlers, and so that one address cannot take every connection slot.

mod api;
pub mod auth;
mod deadline;
mod directory;
mod error;
mod jobs;
mod lanes;
mod openapi;
mod settings;
mod watches;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse as _, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use ferryd_core::Services;

use crate::transfer::DataSessions;

pub use error::ApiError;

/// What the REST handlers share.
#[derive(Debug)]
pub struct Api {
    pub services: Services,
    /// Data sessions: leases, tokens and the QUIC endpoints.
    pub data: Arc<DataSessions>,
    /// Each API key's request budget.
    pub keys: auth::KeyLimits,
    /// Whether ferryd logs to the systemd journal (and so can read it
    /// back for admins).
    pub journal: bool,
    /// The Prometheus metrics and their scrape token.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 1024;
/// Connections one address may hold at once. A slowloris from one host
/// fills its own share and is cut at the deadlines below; everyone else
/// keeps the rest. Generous, because a whole office may sit behind one NAT.
const MAX_CONNECTIONS_PER_ADDRESS: usize = 256;
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The whole router: the REST API under `/api/v1`, the web admin beside it.
pub fn router(state: Arc<Api>) -> Router {
    let web = ferry_webadmin::router(state.services.clone());
    let (routes, doc) = utoipa_axum::router::OpenApiRouter::with_openapi(
        <openapi::ApiDoc as utoipa::OpenApi>::openapi(),
    )
    .merge(jobs::routes())
    .merge(directory::routes())
    .merge(settings::routes())
    .merge(watches::routes())
    .merge(api::routes())
    .split_for_parts();
    let mut doc = doc;
    utoipa::Modify::modify(&openapi::ErrorsEverywhere, &mut doc);
    let doc = Arc::new(doc);
    routes
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .route("/metrics", axum::routing::get(metrics_page))
        .merge(lanes::routes())
        .merge(jobs::file_routes())
        .fallback(api::not_found)
        .with_state(state)
        .merge(web)
        // A handler that panics answers 500 like any internal error, and
        // the connection stays up: a client never sees it cut without an
        // answer.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(axum::middleware::from_fn(counted))
}

/// Counts each answer by its route's template and status, for the
/// metrics.
async fn counted(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await;
    ferryd_core::meters::http_request(route, response.status().as_u16());
    response
}

/// `GET /metrics`: the scrape token, or an admin's API key. The token is
/// looked at first, so a scrape never goes through the API keys' check.
async fn metrics_page(
    axum::extract::State(api): axum::extract::State<Arc<Api>>,
    request: axum::extract::Request,
) -> Response {
    let (mut parts, _) = request.into_parts();
    let bearer = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(|t| api.metrics.is_token(t)) {
        return crate::metrics::answer(&api.metrics, &api.services).await;
    }
    let caller =
        match <auth::Caller as axum::extract::FromRequestParts<Arc<Api>>>::from_request_parts(
            &mut parts, &api,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => return e.into_response(),
        };
    match ferry_domain::rules::admin(&caller.user.caller(), "the metrics") {
        Ok(()) => crate::metrics::answer(&api.metrics, &api.services).await,
        Err(refusal) => error::ApiError::from(refusal).into_response(),
    }
}

/// A handler that panicked answers 500 like any internal error, and the
/// connection stays up: a client never sees it cut without an answer.
fn panicked(panic: Box<dyn std::any::Any + Send>) -> axum::response::Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic");
    axum::response::IntoResponse::into_response(error::ApiError::internal(format!(
        "a request handler panicked: {what}"
    )))
}

/// Serves HTTPS on `listener` until the task is aborted.
pub async fn serve(
    api: Arc<Api>,
    identity: Arc<ferry_engine::tls::Identity>,
    listener: TcpListener,
) {
    // acme-tls/1 too: an ACME CA's TLS-ALPN-01 check comes to this port.
    let protocols: [&[u8]; 3] = [b"h2", b"http/1.1", ferry_engine::tls::ACME_TLS_ALPN];
    let tls = match identity.server_config(&protocols, false) {
        Ok(c) => TlsAcceptor::from(Arc::new(c)),
        Err(e) => {
            log::error!("cannot configure TLS for the control plane: {e}");
            return;
        }
    };
    let router = router(api.clone());
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let per_address = Arc::new(PerAddress::default());
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                log::warn!("control plane accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // BBR where the kernel has it: a browser's download of a delivery
        // is one TCP connection, which CUBIC starves on a long, lossy link
        // (tests/bench/browser: 1 % of the link against 86 % with BBR).
        ferry_engine::tcp::prefer_bbr(&tcp);
        // Nagle would hold the answer's last small segment until the
        // client acknowledged the first (the session tickets or HTTP/2
        // settings that go just before it): a whole round trip added to
        // every request on a fresh connection, a fifth of a `ferry put`'s
        // start on a long path.
        if let Err(e) = tcp.set_nodelay(true) {
            log::debug!("TCP_NODELAY on {peer}: {e}");
        }
        let Some(held) = per_address.enter(address_key(peer.ip())) else {
            log::debug!("{peer} holds {MAX_CONNECTIONS_PER_ADDRESS} connections already; closing");
            continue;
        };
        let (tls, router) = (tls.clone(), router.clone());
        tokio::spawn(async move {
            let _permit = (permit, held);
            let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    log::debug!("TLS handshake with {peer} failed: {e}");
                    return;
                }
                Err(_) => {
                    log::debug!("TLS handshake with {peer} timed out");
                    return;
                }
            };
            // The CA's check ends with the handshake (RFC 8737 §3).
            if stream.get_ref().1.alpn_protocol() == Some(ferry_engine::tls::ACME_TLS_ALPN) {
                log::debug!("answered an ACME TLS-ALPN-01 check from {peer}");
                return;
            }
            serve_connection(stream, peer, router).await;
        });
    }
}

/// The address a connection counts against: an IPv4 address (also when
/// mapped into IPv6), or an IPv6 host's /64, since one host holds a whole
/// /64 and could otherwise open 256 connections from each of its addresses.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

/// How many connections each peer address holds.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// One connection of an address; dropping it gives the place back.
struct AddressHeld {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<AddressHeld> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(ip).or_default();
        if *n >= MAX_CONNECTIONS_PER_ADDRESS {
            return None;
        }
        *n += 1;
        Some(AddressHeld {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for AddressHeld {
    fn drop(&mut self) {
        let mut counts = self.table.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

async fn serve_connection(
    stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    peer: SocketAddr,
    router: Router,
) {
    let service = router.map_request(move |req: hyper::Request<hyper::body::Incoming>| {
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // Each request head has deadline::HEAD to arrive (the wrapper's
    // deadline); hyper's own header timer, which also runs while a
    // keep-alive connection waits for its next request, is the idle time.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(deadline::IDLE);
    builder.http2().timer(TokioTimer::new());
    let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let stream = deadline::HeadDeadline::new(stream, deadline::HEAD, http2);
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
        .await
    {
        log::debug!("connection with {peer} ended: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_handler_that_panics_answers_500_in_our_error_shape() {
        use tower::ServiceExt;
        let app = Router::new()
            .route(
                "/boom",
                axum::routing::get(|| async {
                    if true {
                        panic!("index out of bounds");
                    }
                }),
            )
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked));
        let response = app
            .oneshot(
                axum::http::Request::get("/boom")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: ferry_api::ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(body.error.code, ferry_api::codes::INTERNAL);
    }

    #[test]
    fn an_ipv6_host_counts_as_its_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
