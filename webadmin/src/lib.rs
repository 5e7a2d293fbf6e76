//! Ferry's web admin: server-rendered pages (maud) on the control port,
//! mounted by ferryd beside the REST API.
//!
//! It is an adapter over the appliance's services ([`ferryd_core`]): every
//! page asks a service, and every decision (who may see a job, which
//! buttons it offers, whether a setting holds) is the service's and its
//! rulebook's, the same the REST API asks. The pages never touch the store.
//!
//! Security lives in [`auth`] (cookie sessions, CSRF, the client's
//! address) and [`security`] (headers, cross-site checks). Views are plain
//! functions from data to [`maud::Markup`], unit-tested by rendering them
//! to strings.

pub mod auth;
pub mod fetch;
pub mod format;
pub mod layout;
pub mod pages;
pub mod security;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::{get, post};
use ferry_domain::throttle::AddressBudget;
use ferryd_core::{Failing, Services};

/// A transfer running now, for the dashboard and its live updates.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveTransfer {
    pub job: i64,
    pub name: String,
    /// `upload`, `download`, `put` or `get`.
    pub kind: String,
    pub user: String,
    pub client: String,
    pub port: u16,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Bytes per second, over the last seconds.
    pub rate: u64,
    /// The session's pace (policy and target), in words.
    pub pace: String,
    pub seconds: u64,
}

/// A data port open for one client.
#[derive(Debug, Clone)]
pub struct LeaseInfo {
    pub port: u16,
    pub client: std::net::IpAddr,
    pub user: String,
}

/// Why the appliance refused, in words for the page.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub message: String,
}

impl Refused {
    pub fn new(message: impl Into<String>) -> Self {
        Refused {
            message: message.into(),
        }
    }

    /// A service's error, in its own words.
    pub fn from_failing(e: &dyn Failing) -> Self {
        Refused::new(e.to_string())
    }
}

/// Each service error becomes a page's refusal by its own words.
macro_rules! refused_from {
    ($($ty:ty),* $(,)?) => {
        $(impl From<$ty> for Refused {
            fn from(e: $ty) -> Self {
                Refused::from_failing(&e)
            }
        })*
    };
}

refused_from!(
    ferry_store::StoreError,
    ferry_domain::rules::Refusal,
    ferryd_core::jobs::JobsError,
    ferryd_core::users::UsersError,
    ferryd_core::shares::SharesError,
    ferryd_core::deliveries::DeliveriesError,
    ferryd_core::settings::SettingsFailure,
    ferryd_core::portal::PortalError,
    ferryd_core::watches::WatchesError,
);

/// What the handlers share.
pub struct Web {
    pub services: Services,
    /// The public invitation page's budget per address.
    pub invitations: Mutex<AddressBudget>,
}

/// Requests per address per 15 minutes on the invitation page.
pub const INVITATION_PAGE_LIMIT: u32 = 30;

impl Web {
    pub fn new(services: Services) -> Arc<Self> {
        Arc::new(Web {
            services,
            invitations: Mutex::new(AddressBudget::new(INVITATION_PAGE_LIMIT)),
        })
    }
}

/// The web admin's routes, with their security headers.
pub fn router(services: Services) -> Router {
    use pages::*;
    let web = Web::new(services);
    Router::new()
        .route("/", get(dashboard::page))
        .route("/live", get(dashboard::live))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/setup", get(login::setup_form).post(login::setup))
        .route("/transfers", get(transfers::page))
        .route("/transfers/{id}", get(transfers::detail))
        .route("/transfers/{id}/action", post(transfers::act))
        .route("/transfers/{id}/priority", post(transfers::priority))
        .route("/transfers/{id}/urgent", post(transfers::urgent))
        .route("/shares", get(shares::page))
        .route("/shares/root", post(shares::add_root))
        .route("/shares/share", post(shares::add_share))
        .route("/shares/grant", post(shares::grant))
        .route("/shares/browse/{name}", get(shares::browse))
        .route("/users", get(users::page))
        .route("/users/invite", post(users::invite))
        .route("/users/{id}/role", post(users::role))
        .route("/users/{id}/status", post(users::status))
        .route("/users/{id}/reset", post(users::reset))
        .route("/users/{id}/keys", post(users::create_key))
        .route("/users/{id}/keys/{key}/revoke", post(users::revoke_key))
        .route("/settings", get(settings::page).post(settings::save))
        .route("/settings/certificate", post(settings::certificate))
        .route("/settings/test-mail", post(settings::test_mail))
        .route("/settings/watches", post(settings::add_watch))
        .route(
            "/settings/watches/{id}/remove",
            post(settings::remove_watch),
        )
        .route("/audit", get(audit::page))
        .route("/outbox", get(outbox::page))
        .route("/outbox/{id}/retry", post(outbox::retry))
        .route("/outbox/{id}/discard", post(outbox::discard))
        .route("/users/{id}/invite-link", post(users::invite_link))
        .route("/invite/{token}", get(invite::form).post(invite::accept))
        .route("/deliveries", get(deliveries::page))
        .route("/deliveries/{id}", get(deliveries::detail))
        .route("/deliveries/{id}/all.zip", get(deliveries::zip))
        .route("/deliveries/{id}/files/{*path}", get(deliveries::file))
        .route("/send", get(send::page))
        // A folder of many thousand frames is a large plan.
        .route(
            "/send/deliveries",
            post(send::make).layer(axum::extract::DefaultBodyLimit::max(send::MAX_PLAN)),
        )
        .route("/send/share", post(send::from_share))
        .route(
            "/api/v1/uploads",
            post(send::tus::create)
                .options(send::tus::options)
                .layer(axum::middleware::map_response(send::tus::versioned)),
        )
        .route(
            "/api/v1/uploads/{job}/{file}",
            axum::routing::head(send::tus::head)
                .patch(send::tus::patch)
                .delete(send::tus::delete)
                .options(send::tus::options)
                .layer(axum::middleware::map_response(send::tus::versioned)),
        )
        .route("/static/tus.min.js", get(send::tus_script))
        .route("/static/send.js", get(send::send_script))
        .route("/static/admin.css", get(layout::stylesheet))
        .route("/static/admin.js", get(layout::script))
        .layer(axum::middleware::from_fn(security::headers))
        .with_state(web)
}
