//! The error type the layers share. Each variant documents its HTTP status
//! as a plain number ([`Error::status_code`]); nothing here knows axum. The
//! edges render it: the API as SPEC's JSON error (`api/error.rs`, which
//! also holds the `StatusCode` mapping and `IntoResponse`), pages as an
//! error page or a notice (`http::page_error`, `http::Notice::from_error`).
//! Unexpected errors are logged in full and answered with a generic text:
//! database error text never reaches a client.

use std::borrow::Cow;

use serde::Serialize;
use utoipa::ToSchema;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: the request cannot be read (malformed JSON, bad query).
    #[error("{0}")]
    BadRequest(String),
    /// 401: no credentials, or credentials that are wrong, revoked or expired.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated but not allowed here (also a refused CSRF token).
    #[error("{0}")]
    Forbidden(String),
    /// 403: the target's environment takes work orders only (a fast-path
    /// deploy to staging or prod).
    #[error("{0}")]
    EnvironmentProtected(String),
    /// 404: the thing named does not exist (or may not be seen).
    #[error("{0}")]
    NotFound(String),
    /// 409: the request breaks a rule given the current state.
    #[error("{0}")]
    Conflict(String),
    /// 409: a freeze window covers the target; the message names it and
    /// when it ends.
    #[error("{0}")]
    Frozen(String),
    /// 409: the line is stopped on the target's node or above it; the
    /// message names the stop, who stopped it and why.
    #[error("{0}")]
    LineStopped(String),
    /// 413: the body is larger than the server reads.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: the body is not of the content type the route reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed input that fails validation (NUL or control
    /// characters included).
    #[error("{message}")]
    Validation {
        /// The input at fault: a body field (`title`, `stages[0].name`), a
        /// form field or a query parameter.
        field: Option<Cow<'static, str>>,
        message: String,
    },
    /// 429: too many attempts; try again later.
    #[error("{0}")]
    RateLimited(String),
    /// 502: GitLab or Kubernetes failed or did not answer in time.
    #[error("{0}")]
    Upstream(String),
    /// 500: anything unexpected. Logged in full, answered generically.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Body of every API error: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code, e.g. `not_found`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// The input field at fault, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Error {
    pub fn validation(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Error::Validation {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// The HTTP status this error answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            Error::BadRequest(_) => 400,
            Error::Unauthorized(_) => 401,
            Error::Forbidden(_) | Error::EnvironmentProtected(_) => 403,
            Error::NotFound(_) => 404,
            Error::Conflict(_) | Error::Frozen(_) | Error::LineStopped(_) => 409,
            Error::PayloadTooLarge(_) => 413,
            Error::UnsupportedMediaType(_) => 415,
            Error::Validation { .. } => 422,
            Error::RateLimited(_) => 429,
            Error::Upstream(_) => 502,
            Error::Internal(_) => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest(_) => "bad_request",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::EnvironmentProtected(_) => "environment_protected",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Frozen(_) => "frozen",
            Error::LineStopped(_) => "line_stopped",
            Error::PayloadTooLarge(_) => "payload_too_large",
            Error::UnsupportedMediaType(_) => "unsupported_media_type",
            Error::Validation { .. } => "validation_failed",
            Error::RateLimited(_) => "rate_limited",
            Error::Upstream(_) => "upstream_failed",
            Error::Internal(_) => "internal",
        }
    }

    /// The text a client may see.
    pub fn public_message(&self) -> String {
        match self {
            Error::Internal(_) => "internal error; the details are in the server log".into(),
            other => other.to_string(),
        }
    }

    /// Logs unexpected errors with their full chain. Called where a response
    /// is made so every 500 leaves a trace exactly once.
    pub fn log_if_internal(&self) {
        if let Error::Internal(err) = self {
            tracing::error!(error = format!("{err:#}"), "internal error");
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.public_message(),
                field: match self {
                    Error::Validation { field, .. } => field.as_deref().map(str::to_string),
                    _ => None,
                },
            },
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        Error::Internal(anyhow::Error::new(err).context("database"))
    }
}

/// An error as people are shown it, whichever layer it comes from: the
/// shell's own [`Error`] as it is, another layer's as the shell error it
/// becomes (`db::error::Error` implements this next to its `From`).
pub trait Shown {
    fn shown(&self) -> Cow<'_, Error>;
}

impl Shown for Error {
    fn shown(&self) -> Cow<'_, Error> {
        Cow::Borrowed(self)
    }
}

impl Clone for Error {
    /// A copy for showing: an internal error keeps its whole chain as text.
    fn clone(&self) -> Self {
        match self {
            Error::BadRequest(m) => Error::BadRequest(m.clone()),
            Error::Unauthorized(m) => Error::Unauthorized(m.clone()),
            Error::Forbidden(m) => Error::Forbidden(m.clone()),
            Error::EnvironmentProtected(m) => Error::EnvironmentProtected(m.clone()),
            Error::NotFound(m) => Error::NotFound(m.clone()),
            Error::Conflict(m) => Error::Conflict(m.clone()),
            Error::Frozen(m) => Error::Frozen(m.clone()),
            Error::LineStopped(m) => Error::LineStopped(m.clone()),
            Error::PayloadTooLarge(m) => Error::PayloadTooLarge(m.clone()),
            Error::UnsupportedMediaType(m) => Error::UnsupportedMediaType(m.clone()),
            Error::Validation { field, message } => Error::Validation {
                field: field.clone(),
                message: message.clone(),
            },
            Error::RateLimited(m) => Error::RateLimited(m.clone()),
            Error::Upstream(m) => Error::Upstream(m.clone()),
            Error::Internal(e) => Error::Internal(anyhow::anyhow!("{e:#}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_detail() {
        let err = Error::Internal(anyhow::anyhow!("password=hunter2 in connection string"));
        assert_eq!(err.status_code(), 500);
        assert!(!err.public_message().contains("hunter2"));
    }

    #[test]
    fn validation_errors_name_their_field() {
        let body = Error::validation("name", "too long").body();
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["error"]["code"], "validation_failed");
        assert_eq!(json["error"]["field"], "name");
        assert_eq!(json["error"]["message"], "too long");
    }
}
