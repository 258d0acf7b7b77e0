//! `Idempotency-Key` on the POSTs that start work (a fast-path deploy,
//! filing a work order): the same key with the same request answers what
//! the first one answered, without doing it again; with another request,
//! 422; while the first is still being answered, 409. Keys are per
//! account and kept 24 hours (`db::idempotency`). An answer of 5xx is not
//! kept: the key may be used again to try once more.

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::db::accounts::Account;
use crate::db::idempotency::{self, Taken};
use crate::error::Error;

/// The header's name.
pub const HEADER: &str = "Idempotency-Key";

/// The header a replayed answer carries.
pub const REPLAYED: &str = "Idempotent-Replayed";

/// What the header's OpenAPI parameter says.
pub const DESCRIPTION: &str = "Up to 255 visible ASCII characters, unique per request you mean (e.g. a UUID): a request sent again with the same key and body gets the first answer back (header `Idempotent-Replayed: true`) and does nothing twice; the same key with another body is refused (422), and while the first request is still being answered, 409. Kept 24 hours per account.";

/// The request's `Idempotency-Key`, checked, if it sent one.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let Some(value) = parts.headers.get(HEADER) else {
            return Ok(IdempotencyKey(None));
        };
        let key = value
            .to_str()
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                Error::validation(
                    HEADER,
                    "the Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID fits)",
                )
            })?;
        Ok(IdempotencyKey(Some(key.to_string())))
    }
}

/// Answers `work` once per key: without a key, `work`'s answer; with one,
/// the stored answer to the same request, or `work`'s, stored.
pub async fn once<B: Serialize>(
    db: &crate::db::Db,
    actor: &Account,
    key: IdempotencyKey,
    scope: &str,
    body: &B,
    work: impl Future<Output = Response>,
) -> Response {
    let Some(key) = key.0 else {
        return work.await;
    };
    let hash = hex::encode(Sha256::digest(serde_json::to_vec(body).unwrap_or_default()));
    let taken = match idempotency::take(db, actor.id, &key, scope, &hash).await {
        Ok(taken) => taken,
        Err(e) => return Error::from(e).into_response(),
    };
    match taken {
        Taken::Answered { status, body } => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(REPLAYED, HeaderValue::from_static("true"));
            response
        }
        Taken::Mismatch => Error::validation(
            HEADER,
            "this Idempotency-Key was used with another request (another path or body); \
             send a new key for a new request",
        )
        .into_response(),
        Taken::InFlight => Error::Conflict(
            "the first request with this Idempotency-Key is still being answered; \
             send it again in a moment to get its answer"
                .into(),
        )
        .into_response(),
        Taken::Fresh => {
            let response = work.await;
            let status = response.status();
            let (parts, body) = response.into_parts();
            let bytes = match axum::body::to_bytes(body, 1 << 20).await {
                Ok(bytes) => bytes,
                Err(e) => {
                    let _ = idempotency::give_up(db, actor.id, &key).await;
                    return Error::Internal(anyhow::anyhow!("reading an answer to keep: {e}"))
                        .into_response();
                }
            };
            let kept = if status.is_server_error() {
                idempotency::give_up(db, actor.id, &key).await
            } else {
                idempotency::store(
                    db,
                    actor.id,
                    &key,
                    status.as_u16(),
                    &String::from_utf8_lossy(&bytes),
                )
                .await
            };
            if let Err(e) = kept {
                tracing::warn!(error = %e, "could not keep an idempotent answer");
            }
            Response::from_parts(parts, Body::from(bytes))
        }
    }
}
