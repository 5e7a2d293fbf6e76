//! Errors at the HTTP edge: one type that maps every failure to a status
//! and a stable code, with a message for people.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ferry_api::{ErrorBody, ErrorDetail, codes};
use ferry_store::StoreError;

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
}

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

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            StoreError::Conflict(what) => ApiError::new(
                StatusCode::CONFLICT,
                codes::CONFLICT,
                format!("{what} already exists"),
            ),
            StoreError::Invalid(msg) => ApiError::bad_request(codes::INVALID_REQUEST, msg),
            other => ApiError::internal(other),
        }
    }
}

/// Turns axum's body and query rejections into our JSON errors.
pub fn rejection(r: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(codes::INVALID_REQUEST, r.to_string())
}
