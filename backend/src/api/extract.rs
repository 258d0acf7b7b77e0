//! The API's caller: [`ApiActor`], from a bearer credential (`/api/v1`
//! accepts nothing else): an `rwy_` token, or a GitLab CI ID token (a JWT,
//! three dot-separated parts) bound to a service account
//! (`gitlab::id_tokens`).

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use crate::app::AppState;
use crate::auth::client::client_ip;
use crate::db::accounts::Account;
use crate::db::audit::AuditActor;
use crate::db::tokens;
use crate::error::Error;
use crate::gitlab::id_tokens::{CiIdentity, looks_like_jwt};

/// An API caller, from `Authorization: Bearer rwy_…` or `Bearer <GitLab CI
/// ID token>`, the same caller as the audit log records it (an ID token's
/// service account named with the project, ref and job it came from), and
/// the board version read with the credential (for cached reads,
/// `db::board::VersionedCache`).
#[derive(Clone)]
pub struct ApiActor(pub Account, pub AuditActor, pub i64);

impl FromRequestParts<AppState> for ApiActor {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| {
                Error::Unauthorized("an API token is required: Authorization: Bearer rwy_…".into())
            })?
            .to_str()
            .map_err(|_| Error::Unauthorized("the Authorization header is not text".into()))?;
        let presented = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                Error::Unauthorized("the Authorization header must be 'Bearer <token>'".into())
            })?;
        if looks_like_jwt(presented) {
            let CiIdentity {
                account,
                claims,
                policy_version,
                board_version,
                ..
            } = state
                .gitlab
                .id_tokens
                .authenticate(&state.db, state.config.public_url.as_ref(), presented)
                .await?;
            state.policy.refresh_to(&state.db, policy_version).await?;
            let mut who = AuditActor::of(&account, client_ip(parts, &state.config.trusted_proxies));
            who.name = format!("{} (GitLab CI {})", account.name, claims.describe());
            return Ok(ApiActor(account, who, board_version));
        }
        match tokens::authenticate(&state.db, presented).await? {
            Ok(tokens::TokenAccount {
                account,
                policy_version,
                board_version,
            }) => {
                state.policy.refresh_to(&state.db, policy_version).await?;
                let who = AuditActor::of(&account, client_ip(parts, &state.config.trusted_proxies));
                Ok(ApiActor(account, who, board_version))
            }
            Err(refusal) => Err(Error::Unauthorized(
                match refusal {
                    tokens::TokenRefusal::Unknown => "the API token is not valid",
                    tokens::TokenRefusal::Revoked => "the API token has been revoked",
                    tokens::TokenRefusal::Expired => "the API token has expired",
                    tokens::TokenRefusal::AccountDisabled => "the token's account is disabled",
                }
                .into(),
            )),
        }
    }
}
