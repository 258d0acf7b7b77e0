//! Errors of the simulated API server, answered as Kubernetes `Status`
//! bodies (kind Status, status Failure, reason, code) with the matching HTTP
//! status, so kube-rs and kubectl parse them like the real thing.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::kinds::Kind;

/// One failed API call.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`, …
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, kind: Kind, name: &str, kind_field: &str) -> Self {
        self.details = Some(json!({ "name": name, "group": kind.group(), "kind": kind_field }));
        self
    }

    /// 404: `deployments.apps "web" not found`.
    pub fn not_found(kind: Kind, name: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", kind.qualified()),
        )
        .with_details(kind, name, kind.plural())
    }

    /// 409 AlreadyExists on create.
    pub fn already_exists(kind: Kind, name: &str) -> Self {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", kind.qualified()),
        )
        .with_details(kind, name, kind.plural())
    }

    /// 409 Conflict: a write based on a stale resourceVersion.
    pub fn conflict(kind: Kind, name: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                kind.qualified()
            ),
        )
        .with_details(kind, name, kind.plural())
    }

    /// 422 Invalid, one cause per `(field, message)`.
    pub fn invalid(kind: Kind, name: &str, causes: &[(String, String)]) -> Self {
        let text: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        let mut error = ApiError::new(
            422,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: {}",
                kind.qualified_kind(),
                text.join(", ")
            ),
        );
        let causes: Vec<Value> = causes
            .iter()
            .map(|(field, message)| {
                json!({ "reason": "FieldValueInvalid", "message": message, "field": field })
            })
            .collect();
        error.details = Some(json!({
            "name": name, "group": kind.group(), "kind": kind.kind(), "causes": causes
        }));
        error
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn not_found_path() -> Self {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format: {content_type}"),
        )
    }

    /// 415 with a message of its own (a format known, but not for this kind).
    pub fn unsupported(message: impl Into<String>) -> Self {
        ApiError::new(415, "UnsupportedMediaType", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, "InternalError", message)
    }

    /// 410 Expired: a watch from a resourceVersion no longer in history.
    pub fn expired(requested: u64, oldest: u64) -> Self {
        ApiError::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    /// The `Status` object this error is answered with.
    pub fn status_json(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, axum::Json(self.status_json())).into_response()
    }
}

/// The `Status` a successful delete answers with.
pub fn success_status(kind: Kind, name: &str, uid: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": { "name": name, "group": kind.group(), "kind": kind.plural(), "uid": uid },
    })
}
