//! The REST API under `/api/v1`: JSON in and out, bearer tokens only,
//! errors as SPEC's `{"error": {"code", "message"}}`. Every route is
//! registered through utoipa-axum, so the OpenAPI document lists exactly
//! the routes that exist.

mod accounts;
mod audit;
mod deployments;
mod error;
pub mod extract;
mod freezes;
mod id_token_bindings;
mod idempotency;
mod line_stops;
mod me;
mod nodes;
mod notifications;
mod registry;
mod release_items;
mod settings;
mod work_orders;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, RawPathParams, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::{Json, extract::Path};
use serde::de::DeserializeOwned;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;
use crate::domain::text::check_single_line;
use crate::error::Error;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rollway API",
        description = "Release tickets, approvals and staged rollouts. Authenticate with `Authorization: Bearer rwy_…`, or from GitLab CI with `Authorization: Bearer <ID token>` (the JWT of `id_tokens:` with `aud` set to Rollway's public URL, bound to a service account by an admin). Every error answers `{\"error\": {\"code\", \"message\"}}` (`application/json`); a 5xx other than 502 is a bug.",
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

/// Documents the errors every operation can answer because of what it
/// reads, so no `#[utoipa::path]` has to repeat them (and none can forget
/// one): 401 where a token is needed, and 502 there too (a GitLab CI ID
/// token needs GitLab's keys, which GitLab may fail to give); 400 and 422 where it reads path or
/// query parameters or a body; 404 where the path names something; 413 and
/// 415 where it reads a JSON body. The errors that depend on what a handler
/// does (403, 409, 502) stay on its own `#[utoipa::path]`. Every response
/// also gets a description (OpenAPI requires one).
struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                document_errors(operation);
            }
        }
    }
}

fn document_errors(operation: &mut Operation) {
    let reads = |place: ParameterIn| {
        operation.parameters.iter().flatten().any(|p| match p {
            RefOr::T(p) => p.parameter_in == place,
            RefOr::Ref(_) => false,
        })
    };
    let in_path = reads(ParameterIn::Path);
    let in_query = reads(ParameterIn::Query);
    let body = operation.request_body.is_some();
    let bearer = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let mut statuses = Vec::new();
    if bearer {
        statuses.extend(["401", "502"]);
    }
    if in_path || in_query || body {
        statuses.extend(["400", "422"]);
    }
    if in_path {
        statuses.push("404");
    }
    if body {
        statuses.extend(["413", "415"]);
    }
    let responses = &mut operation.responses.responses;
    for status in statuses {
        responses.entry(status.to_string()).or_insert_with(|| {
            RefOr::T(
                ResponseBuilder::new()
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        });
    }
    for (status, response) in responses.iter_mut() {
        if let RefOr::T(response) = response
            && response.description.is_empty()
        {
            response.description = describe_status(status).to_string();
        }
    }
}

/// What a status means in this API (SPEC's list).
fn describe_status(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created",
        "202" => {
            "Accepted: the engine carries on; follow the work order or deployment the answer names"
        }
        "204" => "Done; no content",
        "400" => {
            "The request cannot be read: malformed JSON, or a path or query parameter of the wrong type"
        }
        "401" => {
            "No API token, or one that is not valid, revoked or expired (or a GitLab CI ID token refused, with the reason)"
        }
        "403" => {
            "The token's account may not do this here (code `environment_protected`: a fast-path deploy to a staging or prod cluster)"
        }
        "404" => "Nothing with that id (or nothing the caller may see)",
        "409" => {
            "The request breaks a rule given the current state (code `frozen`: a freeze window covers the target; the message names it and when it ends; code `line_stopped`: the line is stopped on the target's node or above it, with who stopped it and why)"
        }
        "413" => "The body is larger than 1 MiB",
        "415" => "The body is not sent as application/json",
        "422" => {
            "Input that fails validation, e.g. a missing or unknown field, or a NUL or control character where text may not hold one; `field` names the input"
        }
        "502" => {
            "GitLab or a Kubernetes cluster failed or did not answer in time (also GitLab's ID-token keys, for a request with an ID token)"
        }
        _ => "See the error's message",
    }
}

/// Every API route with its OpenAPI description.
pub fn router() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(me::router())
        .merge(nodes::router())
        .merge(accounts::router())
        .merge(id_token_bindings::router())
        .merge(audit::router())
        .merge(deployments::router())
        .merge(freezes::router())
        .merge(line_stops::router())
        .merge(notifications::router())
        .merge(registry::router())
        .merge(release_items::router())
        .merge(settings::router())
        .merge(work_orders::router());
    // After the merges: the operations exist only now.
    ErrorResponses.modify(router.get_openapi_mut());
    router
}

/// Where the OpenAPI document is served.
pub const DOCUMENT_PATH: &str = "/api/v1/openapi.json";

/// The API as served: its operations and the OpenAPI document that lists
/// them, with every (method, path) registered, so the tests can hold each
/// route to a row of the route × role tables.
pub struct ApiRoutes {
    pub router: axum::Router<AppState>,
    pub listed: Vec<(axum::http::Method, String)>,
}

/// Every API route, the OpenAPI document's included.
pub fn routes() -> ApiRoutes {
    let (router, openapi) = router().split_for_parts();
    let mut listed = Vec::new();
    for (path, item) in &openapi.paths.paths {
        let methods = [
            (axum::http::Method::GET, item.get.is_some()),
            (axum::http::Method::PUT, item.put.is_some()),
            (axum::http::Method::POST, item.post.is_some()),
            (axum::http::Method::PATCH, item.patch.is_some()),
            (axum::http::Method::DELETE, item.delete.is_some()),
            (axum::http::Method::HEAD, item.head.is_some()),
            (axum::http::Method::OPTIONS, item.options.is_some()),
            (axum::http::Method::TRACE, item.trace.is_some()),
        ];
        for (method, present) in methods {
            if present {
                listed.push((method, path.clone()));
            }
        }
    }
    // Served as written once here: the document's structure is dropped,
    // and a request neither copies nor encodes it again.
    let document = Bytes::from(
        serde_json::to_vec(&openapi).expect("the OpenAPI document is plain JSON (string keys)"),
    );
    drop(openapi);
    let router = router.route(
        DOCUMENT_PATH,
        axum::routing::get(move || {
            let document = document.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    document,
                )
            }
        }),
    );
    listed.push((axum::http::Method::GET, DOCUMENT_PATH.to_string()));
    ApiRoutes { router, listed }
}

/// A JSON body whose rejections answer in the API's error format:
/// 415 without a JSON content type, 400 for malformed JSON, 413 past the
/// body limit, 422 for a NUL character anywhere in it (PostgreSQL cannot
/// store one), then 422 for JSON of the wrong shape (unknown fields
/// included).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|e| body_error(e.status(), e.body_text()))?;
        let req = Request::from_parts(parts, Body::from(bytes.clone()));
        let document = match Json::<serde_json::Value>::from_request(req, state).await {
            Ok(Json(document)) => document,
            Err(JsonRejection::MissingJsonContentType(_)) => {
                return Err(Error::UnsupportedMediaType(
                    "send a JSON body with Content-Type: application/json".into(),
                ));
            }
            Err(JsonRejection::JsonSyntaxError(e)) => {
                return Err(Error::BadRequest(format!(
                    "malformed JSON: {}",
                    e.body_text()
                )));
            }
            Err(other) => return Err(body_error(other.status(), other.body_text())),
        };
        // Every string, keys included, before the shape: a NUL is refused
        // the same way wherever it is.
        refuse_nul_in_json(&document, &mut String::new())?;
        match Json::<T>::from_bytes(&bytes) {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(e) => Err(Error::Validation {
                field: None,
                message: e.body_text(),
            }),
        }
    }
}

/// A body that could not be read: 413 past the size limit, else 400.
fn body_error(status: StatusCode, text: String) -> Error {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        Error::PayloadTooLarge(format!("the body is larger than the limit ({text})"))
    } else {
        Error::BadRequest(text)
    }
}

/// The first string in a JSON document holding a NUL, as a 422 naming
/// where it is (`title`, `stages[0].name`, or the body itself).
fn refuse_nul_in_json(value: &serde_json::Value, at: &mut String) -> Result<(), Error> {
    let nul = |at: &str| {
        let field = if at.is_empty() { "body" } else { at };
        Error::validation(
            field.to_string(),
            format!("{field} must not contain NUL characters"),
        )
    };
    match value {
        serde_json::Value::String(s) if s.contains('\0') => Err(nul(at)),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = at.len();
                at.push_str(&format!("[{i}]"));
                refuse_nul_in_json(item, at)?;
                at.truncate(len);
            }
            Ok(())
        }
        serde_json::Value::Object(fields) => {
            for (key, item) in fields {
                let len = at.len();
                if !at.is_empty() {
                    at.push('.');
                }
                at.push_str(&key.replace('\0', "\\0"));
                if key.contains('\0') {
                    return Err(nul(at));
                }
                refuse_nul_in_json(item, at)?;
                at.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Path parameters whose rejections answer in the API's error format: 422
/// for a control character (NUL included) in one, 400 for one of the
/// wrong type.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        if let Ok(params) = RawPathParams::from_request_parts(parts, state).await {
            for (name, value) in params.iter() {
                check_parameter("path parameter", name, value)?;
            }
        }
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(Error::BadRequest(
                format!("bad path parameter: {}", e.body_text()),
            )),
            Err(other) => Err(Error::BadRequest(other.body_text())),
        }
    }
}

/// Query parameters whose rejections answer in the API's error format: 422
/// for a control character (NUL included) in one — every query parameter
/// is a single line —, 400 for one of the wrong type.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        if let Some(query) = parts.uri.query() {
            for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
                check_parameter("query parameter", &name, &value)?;
            }
        }
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|e| Error::BadRequest(format!("bad query parameter: {}", e.body_text())))
    }
}

/// A path or query parameter is one line of text: no control characters,
/// in its name or its value.
fn check_parameter(kind: &str, name: &str, value: &str) -> Result<(), Error> {
    let shown = name.escape_debug().to_string();
    check_single_line(&format!("the {kind} name '{shown}'"), name)
        .and_then(|()| check_single_line(&format!("the {kind} '{shown}'"), value))
        .map_err(|message| Error::validation(shown.clone(), message))
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
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|e| body_error(e.status(), e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(ApiJsonOrEmpty(T::default()));
        }
        let req = Request::from_parts(parts, Body::from(bytes));
        ApiJson::<T>::from_request(req, state)
            .await
            .map(|ApiJson(v)| ApiJsonOrEmpty(v))
    }
}
