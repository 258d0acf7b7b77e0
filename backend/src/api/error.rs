//! The API edge of [`Error`]: its `StatusCode` and its answer, SPEC's JSON
//! error `{"error": {"code", "message", "field"?}}`. Unexpected errors are
//! logged here, where the answer is made, exactly once.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::error::Error;

impl Error {
    /// [`Error::status_code`] as axum's type.
    pub(super) fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.log_if_internal();
        (self.status(), Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_is_a_valid_status_code() {
        let all = [
            Error::BadRequest(String::new()),
            Error::Unauthorized(String::new()),
            Error::Forbidden(String::new()),
            Error::NotFound(String::new()),
            Error::Conflict(String::new()),
            Error::Frozen(String::new()),
            Error::LineStopped(String::new()),
            Error::EnvironmentProtected(String::new()),
            Error::PayloadTooLarge(String::new()),
            Error::UnsupportedMediaType(String::new()),
            Error::validation("f", "m"),
            Error::RateLimited(String::new()),
            Error::Upstream(String::new()),
            Error::Internal(anyhow::anyhow!("x")),
        ];
        for err in all {
            assert_eq!(err.status().as_u16(), err.status_code(), "{err:?}");
        }
    }

    #[tokio::test]
    async fn an_error_answers_its_status_with_the_json_body() {
        let response = Error::Conflict("taken".into()).into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["error"]["code"], "conflict");
        assert_eq!(json["error"]["message"], "taken");
    }
}
