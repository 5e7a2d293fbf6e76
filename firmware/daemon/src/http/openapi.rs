//! The REST API's OpenAPI 3 document, served at `/api/v1/openapi.json`.
//!
//! It is generated from the handlers themselves (their `#[utoipa::path]`
//! attributes, registered with the routes by `utoipa_axum::routes!`) and
//! from the `ferry-api` types, so the document and the API cannot drift
//! apart: every API route is in the document, and the document names no
//! route that does not exist (the document's own route aside).

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ferry appliance API",
        description = "Deliveries, jobs, shares and people on a Ferry appliance. \
            Authenticate with `Authorization: Bearer <API key>` (POST /api/v1/login \
            makes one). Errors are JSON `{\"error\": {\"code\", \"message\"}}` with a \
            stable code. Each key has a request budget per minute; over it the API \
            answers 429 with `Retry-After`. Lists page with cursors: pass the \
            `next_cursor` of one page as `cursor` for the next."
    ),
    components(schemas(ferry_api::ErrorBody, ferry_api::ErrorDetail)),
    modifiers(&BearerKey),
    security(("api_key" = [])),
    tags(
        (name = "appliance", description = "Health, status and log"),
        (name = "account", description = "The caller's own account"),
        (name = "sessions", description = "Data sessions: a leased port and a token"),
        (name = "deliveries", description = "Review sessions sent to recipients"),
        (name = "jobs", description = "Uploads and downloads, their files, and their control"),
        (name = "shares", description = "Shares, their folders and files"),
        (name = "users", description = "People (admins)"),
        (name = "settings", description = "Site settings (admins)"),
    )
)]
pub struct ApiDoc;

/// Every operation may answer with the JSON error shape, whatever the
/// status: documented once here rather than on each handler. Applied to the
/// finished document (the routes join it after [`ApiDoc`]'s modifiers ran).
pub struct ErrorsEverywhere;

impl Modify for ErrorsEverywhere {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, ResponseBuilder, content::ContentBuilder, schema::Ref};
        let error = ResponseBuilder::new()
            .description("An error: a stable code and a message")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                op.responses
                    .responses
                    .entry("default".into())
                    .or_insert_with(|| RefOr::T(error.clone()));
            }
        }
    }
}

/// Declares the API key scheme every route but health and login uses.
struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("fk_…")
                    .description(Some(
                        "An API key from POST /api/v1/login or `ferryd admin apikey create`",
                    ))
                    .build(),
            ),
        );
    }
}
