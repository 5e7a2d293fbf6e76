//! Site settings over the API (admins): the same service, validator and
//! audit as the web admin's Settings page.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use ferry_api::Settings;
use ferry_domain::rules;
use ferry_domain::settings::{SettingsText, SiteSettings};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use ferryd_core::authority::By;

use super::Api;
use super::api::ApiJson;
use super::auth::Caller;
use super::error::ApiError;

pub fn routes() -> OpenApiRouter<Arc<Api>> {
    OpenApiRouter::new().routes(routes!(show, change))
}

fn to_api(s: &SiteSettings) -> Settings {
    let t = s.to_text();
    Settings {
        public_address: s.public_address.clone(),
        trusted_proxies: t.trusted_proxies,
        policy: t.policy,
        target_rate: s.pace.target.map(|r| r.to_string()),
        site_rate: s.site_rate.map(|r| r.to_string()),
        default_expiry_days: s.default_expiry_days,
        smtp_url: t.smtp_url,
        smtp_user: t.smtp_user,
        smtp_password_file: t.smtp_password_file,
        smtp_from: t.smtp_from,
        transports: t.transports,
        acme_name: t.acme_name,
        acme_directory: t.acme_directory,
        acme_contact: t.acme_contact,
        schedule: t.schedule,
    }
}

#[utoipa::path(get, path = "/api/v1/settings", tag = "settings", summary = "The site settings (admins)",
    responses((status = 200, body = Settings)))]
async fn show(State(api): State<Arc<Api>>, caller: Caller) -> Result<Json<Settings>, ApiError> {
    rules::admin(&caller.user.caller(), "the settings")?;
    Ok(Json(to_api(&api.services.settings.current())))
}

#[utoipa::path(put, path = "/api/v1/settings", tag = "settings",
    summary = "Replace the site settings (admins); they take effect at once",
    request_body = Settings,
    responses((status = 200, body = Settings)))]
async fn change(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiJson(new): ApiJson<Settings>,
) -> Result<Json<Settings>, ApiError> {
    let text = SettingsText {
        public_address: new.public_address.unwrap_or_default(),
        trusted_proxies: new.trusted_proxies,
        policy: new.policy,
        target_rate: new.target_rate.unwrap_or_default(),
        site_rate: new.site_rate.unwrap_or_default(),
        default_expiry_days: new.default_expiry_days.to_string(),
        smtp_url: new.smtp_url,
        smtp_user: new.smtp_user,
        smtp_password_file: new.smtp_password_file,
        smtp_from: new.smtp_from,
        transports: new.transports,
        acme_name: new.acme_name,
        acme_directory: new.acme_directory,
        acme_contact: new.acme_contact,
        schedule: new.schedule,
    };
    let site = api
        .services
        .settings
        .change(By::User(&caller.user), caller.actor(), &text)
        .await?;
    Ok(Json(to_api(&site)))
}
