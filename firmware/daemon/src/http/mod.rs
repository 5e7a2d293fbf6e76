//! The HTTPS control plane: TLS (rustls) in front of an axum router that
//! serves the REST API under `/api/v1`.
//!
//! The accept loop is ours rather than `axum::serve` so that the TLS
//! handshake and the request headers each have a deadline (a slow client
//! cannot hold a connection open for free) and the peer address reaches the
//! handlers.

mod api;
pub(crate) mod auth;
mod directory;
mod error;
pub mod jobs;
mod openapi;
mod settings;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::app::App;

pub use api::{check_target, resolve_target};
pub use error::ApiError;

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 1024;
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The whole router: the REST API under `/api/v1`, the web admin beside it.
pub fn router(app: Arc<App>) -> Router {
    let web = ferry_webadmin::router(Arc::new(crate::webadmin::ForWeb(app.clone())));
    let (api, doc) = utoipa_axum::router::OpenApiRouter::with_openapi(
        <openapi::ApiDoc as utoipa::OpenApi>::openapi(),
    )
    .merge(jobs::routes())
    .merge(directory::routes())
    .merge(settings::routes())
    .merge(api::routes())
    .split_for_parts();
    let mut doc = doc;
    utoipa::Modify::modify(&openapi::ErrorsEverywhere, &mut doc);
    let doc = Arc::new(doc);
    api.route(
        "/api/v1/openapi.json",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { axum::Json(doc.as_ref().clone()) }
        }),
    )
    .fallback(api::not_found)
    .with_state(app)
    .merge(web)
}

/// Serves HTTPS on `listener` until the task is aborted.
pub async fn serve(app: Arc<App>, listener: TcpListener) {
    let tls = match app.identity.server_config(&[b"h2", b"http/1.1"], false) {
        Ok(c) => TlsAcceptor::from(Arc::new(c)),
        Err(e) => {
            log::error!("cannot configure TLS for the control plane: {e}");
            return;
        }
    };
    let router = router(app.clone());
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
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
        let (tls, router) = (tls.clone(), router.clone());
        tokio::spawn(async move {
            let _permit = permit;
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
            serve_connection(stream, peer, router).await;
        });
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
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
        .await
    {
        log::debug!("connection with {peer} ended: {e}");
    }
}
