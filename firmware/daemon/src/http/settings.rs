//! Site settings over the API (admins): the same settings, checks and
//! audit as the web admin's Settings page.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use ferry_api::{Settings, codes};
use ferry_webadmin::{Appliance as _, SiteSettings};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api::ApiJson;
use super::auth::{Caller, ClientAddr};
use super::error::ApiError;
use crate::app::App;
use crate::webadmin::ForWeb;

pub fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(show, change))
}

fn to_api(s: SiteSettings) -> Settings {
    Settings {
        public_address: s.public_address,
        trusted_proxies: s.trusted_proxies.iter().map(ToString::to_string).collect(),
        policy: s.policy,
        target_rate: s.target_rate,
        default_expiry_days: s.default_expiry_days,
        smtp_url: s.smtp_url,
        smtp_user: s.smtp_user,
        smtp_password_file: s.smtp_password_file,
        smtp_from: s.smtp_from,
    }
}

fn admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.user.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden("settings are for admins"))
    }
}

#[utoipa::path(get, path = "/api/v1/settings", tag = "settings", summary = "The site settings (admins)",
    responses((status = 200, body = Settings)))]
async fn show(State(app): State<Arc<App>>, caller: Caller) -> Result<Json<Settings>, ApiError> {
    admin(&caller)?;
    Ok(Json(to_api(ForWeb(app).site())))
}

#[utoipa::path(put, path = "/api/v1/settings", tag = "settings",
    summary = "Replace the site settings (admins); they take effect at once",
    request_body = Settings,
    responses((status = 200, body = Settings)))]
async fn change(
    State(app): State<Arc<App>>,
    caller: Caller,
    ClientAddr(ip): ClientAddr,
    ApiJson(new): ApiJson<Settings>,
) -> Result<Json<Settings>, ApiError> {
    admin(&caller)?;
    let invalid = |m: String| ApiError::bad_request(codes::INVALID_REQUEST, m);
    let trusted_proxies = new
        .trusted_proxies
        .iter()
        .map(|p| {
            p.trim()
                .parse()
                .map_err(|_| invalid(format!("trusted proxy {p:?} is not an IP address")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let web = ForWeb(app);
    web.change_site(
        &caller.user,
        ip,
        SiteSettings {
            public_address: new.public_address.filter(|a| !a.trim().is_empty()),
            trusted_proxies,
            policy: new.policy,
            target_rate: new.target_rate.filter(|r| !r.trim().is_empty()),
            default_expiry_days: new.default_expiry_days,
            smtp_url: new.smtp_url,
            smtp_user: new.smtp_user,
            smtp_password_file: new.smtp_password_file,
            smtp_from: new.smtp_from,
        },
    )
    .map_err(|e| invalid(e.message))?;
    Ok(Json(to_api(web.site())))
}
