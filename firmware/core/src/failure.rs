//! What kind of failure an error is, for an adapter to answer with (an
//! HTTP status, a web page, an exit code), and the stable code that goes
//! with it. Every service error says both about itself, where it arises.

use ferry_api::codes;
use ferry_domain::rules::Refusal;
use ferry_store::StoreError;

/// The kinds of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The caller has not shown who they are, or the proof is not good.
    Unauthorized,
    /// The caller may not do this.
    Forbidden,
    /// There is no such thing (or the caller may not know it exists).
    NotFound,
    /// Not in its present state.
    Conflict,
    /// Withdrawn for good.
    Gone,
    /// The request itself is wrong.
    Invalid,
    /// Too much at once; try again after the given seconds.
    TooMany { retry_after: u64 },
    /// The appliance cannot do it now (no port free, a helper down).
    Unavailable,
    /// Our fault; the details are in the log.
    Internal,
}

impl Failure {
    /// The HTTP status this kind of failure answers with, the same on the
    /// REST API and in the web admin.
    pub fn http_status(self) -> u16 {
        match self {
            Failure::Unauthorized => 401,
            Failure::Forbidden => 403,
            Failure::NotFound => 404,
            Failure::Conflict => 409,
            Failure::Gone => 410,
            Failure::Invalid => 400,
            Failure::TooMany { .. } => 429,
            Failure::Unavailable => 503,
            Failure::Internal => 500,
        }
    }
}

/// An error that knows its kind and its stable code.
pub trait Failing: std::error::Error {
    fn failure(&self) -> Failure;
    fn code(&self) -> &'static str;
}

impl Failing for Refusal {
    fn failure(&self) -> Failure {
        match self {
            Refusal::NotFound(_) => Failure::NotFound,
            Refusal::Forbidden(_) => Failure::Forbidden,
            Refusal::Conflict(_) | Refusal::Aborted(_) | Refusal::Paused(_) => Failure::Conflict,
            Refusal::Withdrawn(_) => Failure::Gone,
            _ => Failure::Forbidden,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Refusal::NotFound(_) => codes::NOT_FOUND,
            Refusal::Forbidden(_) => codes::FORBIDDEN,
            Refusal::Conflict(_) => codes::CONFLICT,
            Refusal::Withdrawn(_) => codes::JOB_WITHDRAWN,
            Refusal::Aborted(_) => codes::JOB_ABORTED,
            Refusal::Paused(_) => codes::JOB_PAUSED,
            _ => codes::FORBIDDEN,
        }
    }
}

impl Failing for StoreError {
    fn failure(&self) -> Failure {
        match self {
            StoreError::NotFound(_) => Failure::NotFound,
            StoreError::Conflict(_) => Failure::Conflict,
            StoreError::Invalid(_) => Failure::Invalid,
            _ => Failure::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            StoreError::NotFound(_) => codes::NOT_FOUND,
            StoreError::Conflict(_) => codes::CONFLICT,
            StoreError::Invalid(_) => codes::INVALID_REQUEST,
            _ => codes::INTERNAL,
        }
    }
}

/// Implements [`Failing`] for a service error whose variants each carry
/// one of the failing errors above, or name their kind and code.
#[macro_export]
macro_rules! failing {
    ($ty:ty { $($pat:pat => ($failure:expr, $code:expr),)* }) => {
        impl $crate::failure::Failing for $ty {
            // The kind and the code are read off the same arms, so a
            // variant can never get one without the other.
            #[allow(unused_variables)]
            fn failure(&self) -> $crate::failure::Failure {
                #[allow(unused_imports)]
                use $crate::failure::Failure::*;
                match self {
                    $($pat => $failure,)*
                }
            }
            #[allow(unused_variables)]
            fn code(&self) -> &'static str {
                #[allow(unused_imports)]
                use ferry_api::codes::*;
                match self {
                    $($pat => $code,)*
                }
            }
        }
    };
}
