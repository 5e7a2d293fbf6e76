//! Errors at the HTTP edge: every service error says what kind of failure
//! it is and which stable code goes with it ([`ferryd_core::Failing`]);
//! here that becomes a status and the JSON error shape. Nothing is decided
//! by reading a message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ferry_api::{ErrorBody, ErrorDetail, codes};
use ferryd_core::{Failing, Failure};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds to wait before trying again (a `Retry-After` header).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Over a rate limit: 429 with the wait in `Retry-After`.
    pub fn rate_limited(wait: std::time::Duration, message: impl Into<String>) -> Self {
        ApiError {
            retry_after: Some(wait.as_secs().max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, codes::RATE_LIMITED, message)
        }
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, codes::FORBIDDEN, message)
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, message)
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        // The detail goes to the log, not to the client.
        log::error!("internal error: {err}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            "internal error; the appliance's log has the details",
        )
    }

    /// A service's error, by its kind and code.
    pub fn from_failing(e: &dyn Failing) -> Self {
        let failure = e.failure();
        match failure {
            Failure::Internal => return Self::internal(e),
            Failure::TooMany { retry_after } => {
                return ApiError {
                    retry_after: Some(retry_after),
                    ..Self::new(StatusCode::TOO_MANY_REQUESTS, e.code(), e.to_string())
                };
            }
            _ => {}
        }
        let status = StatusCode::from_u16(failure.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self::new(status, e.code(), e.to_string())
    }
}

/// Each service error becomes an API error by what it says of itself.
macro_rules! from_failing {
    ($($ty:ty),* $(,)?) => {
        $(impl From<$ty> for ApiError {
            fn from(e: $ty) -> Self {
                ApiError::from_failing(&e)
            }
        })*
    };
}

from_failing!(
    ferry_store::StoreError,
    ferry_domain::rules::Refusal,
    ferryd_core::jobs::JobsError,
    ferryd_core::users::UsersError,
    ferryd_core::shares::SharesError,
    ferryd_core::deliveries::DeliveriesError,
    ferryd_core::transfers::TransfersError,
    ferryd_core::portal::PortalError,
    ferryd_core::manifest::ManifestError,
    ferryd_core::watches::WatchesError,
    ferryd_core::settings::SettingsFailure,
    ferryd_core::live::Crowded,
    crate::transfer::GrantError,
);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self.retry_after.map(|s| {
            [(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(s),
            )]
        });
        (
            self.status,
            retry_after,
            Json(ErrorBody {
                error: ErrorDetail {
                    code: self.code.to_owned(),
                    message: self.message,
                },
            }),
        )
            .into_response()
    }
}

/// Turns axum's body and query rejections into our JSON errors.
pub fn rejection(r: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(codes::INVALID_REQUEST, r.to_string())
}
