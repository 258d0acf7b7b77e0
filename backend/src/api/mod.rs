//! The REST API under `/api/v1`: JSON in and out, bearer tokens only,
//! errors as SPEC's `{"error": {"code", "message"}}`. Every route is
//! registered through utoipa-axum, so the OpenAPI document lists exactly
//! the routes that exist.

mod accounts;
mod audit;
mod me;
mod nodes;
mod registry;
mod release_items;
mod settings;
mod work_orders;

use axum::extract::Query;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::{Json, extract::Path};
use serde::de::DeserializeOwned;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;
use crate::error::Error;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rollway API",
        description = "Release tickets, approvals and staged rollouts. Authenticate with `Authorization: Bearer rwy_…`.",
    ),
    modifiers(&BearerAuth),
    components(schemas(crate::error::ErrorBody))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("rwy_…")
                    .build(),
            ),
        );
    }
}

/// Every API route with its OpenAPI description.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(me::router())
        .merge(nodes::router())
        .merge(accounts::router())
        .merge(audit::router())
        .merge(registry::router())
        .merge(release_items::router())
        .merge(settings::router())
        .merge(work_orders::router())
}

/// A JSON body whose rejections answer in the API's error format:
/// 415 without a JSON content type, 400 for malformed JSON, 422 for JSON of
/// the wrong shape (unknown fields included).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(Error::UnsupportedMediaType(
                "send a JSON body with Content-Type: application/json".into(),
            )),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(Error::BadRequest(format!(
                "malformed JSON: {}",
                e.body_text()
            ))),
            Err(JsonRejection::JsonDataError(e)) => Err(Error::Validation {
                field: None,
                message: e.body_text(),
            }),
            Err(other) => Err(Error::BadRequest(other.body_text())),
        }
    }
}

/// Path parameters whose rejections answer in the API's error format.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(Error::BadRequest(
                format!("bad path parameter: {}", e.body_text()),
            )),
            Err(other) => Err(Error::BadRequest(other.body_text())),
        }
    }
}

/// Query parameters whose rejections answer in the API's error format.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|e| Error::BadRequest(format!("bad query parameter: {}", e.body_text())))
    }
}

/// An optional JSON body: an empty body reads as `T::default()`, anything
/// else must be JSON of the right shape (same errors as [`ApiJson`]).
pub struct ApiJsonOrEmpty<T>(pub T);

impl<S, T> FromRequest<S> for ApiJsonOrEmpty<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let (parts, body) = req.into_parts();
        let bytes =
            axum::body::Bytes::from_request(Request::from_parts(parts.clone(), body), state)
                .await
                .map_err(|e| Error::BadRequest(e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(ApiJsonOrEmpty(T::default()));
        }
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        ApiJson::<T>::from_request(req, state)
            .await
            .map(|ApiJson(v)| ApiJsonOrEmpty(v))
    }
}
