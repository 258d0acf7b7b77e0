//! GitLab CI ID tokens (the JWT of the `id_tokens:` keyword) as API
//! credentials: verified against the connected GitLab's signing keys and
//! mapped to a service account by the admins' bindings
//! (`db::id_token_bindings`, rules in `domain::id_token`).
//!
//! A token is accepted only when all of this holds, each failure a 401
//! with its reason: the header's `alg` is RS256 (never `none`, never HS256
//! "signed" with the public key — the algorithm is checked before any key
//! is looked at); its `kid` names a key of GitLab's JWKS; the signature
//! verifies; `iss` is the connected GitLab's URL; `aud` is Rollway's public
//! URL (`--public-url`; without one, ID tokens are refused); `exp`, `nbf`
//! and `iat` hold within [`LEEWAY_SECONDS`]; a binding matches; its service
//! account is enabled.
//!
//! GitLab's keys (`<gitlab>/oauth/discovery/keys`) are kept and fetched
//! again within the limits of [`crate::jwks`]; a failed fetch is a 502
//! naming GitLab. Tokens are never logged.

use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::db::Db;
use crate::db::accounts::Account;
use crate::db::id_token_bindings;
use crate::domain::id_token::{CiClaims, choose, is_protected};
use crate::domain::text::shown;
use crate::error::{Error, Result};
use crate::jwks::{self, KeyCache, KeyError};

/// Clock skew allowed on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECONDS: u64 = 30;

/// Whether a bearer credential looks like a JWT (three dot-separated
/// parts) rather than an `rwy_` token.
pub fn looks_like_jwt(presented: &str) -> bool {
    !presented.starts_with(crate::db::tokens::TOKEN_PREFIX) && presented.split('.').count() == 3
}

/// Who a verified, bound ID token acts as.
pub struct CiIdentity {
    pub account: Account,
    pub claims: CiClaims,
    /// The binding it matched.
    pub binding_id: i64,
    pub policy_version: i64,
    pub board_version: i64,
}

fn refused(why: impl std::fmt::Display) -> Error {
    Error::Unauthorized(format!("ID token refused: {why}"))
}

/// The claims read beyond those `jsonwebtoken` checks.
#[derive(Deserialize)]
struct RawClaims {
    iat: Option<f64>,
    project_path: Option<String>,
    #[serde(rename = "ref")]
    ref_name: Option<String>,
    ref_type: Option<String>,
    ref_protected: Option<Value>,
    job_id: Option<Value>,
    pipeline_id: Option<Value>,
}

/// A claim that GitLab sends as a string (a number is taken too).
fn id_text(v: Option<Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(shown(&s)),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The verifier of one server: the key cache and its fetch limits.
pub struct IdTokenVerifier {
    keys: KeyCache,
}

impl IdTokenVerifier {
    pub fn new(deadline: Duration) -> Self {
        IdTokenVerifier {
            keys: KeyCache::new(deadline),
        }
    }

    /// The service account a presented ID token acts as, or why not.
    pub async fn authenticate(
        &self,
        db: &Db,
        public_url: Option<&Url>,
        presented: &str,
    ) -> Result<CiIdentity> {
        let Some(public_url) = public_url else {
            return Err(Error::Unauthorized(
                "ID tokens are not accepted: Rollway has no public URL (--public-url) for their audience to name; use an rwy_ token".into(),
            ));
        };
        let gitlab = super::GitlabClient::settings(db)
            .await?
            .url
            .ok_or_else(|| {
                Error::Unauthorized(
                    "ID tokens are not accepted: no GitLab is connected (admin settings)".into(),
                )
            })?;
        let claims = self.verify(presented, &gitlab, public_url).await?;
        let Some(candidates) = id_token_bindings::candidates(db, &claims.project_path).await?
        else {
            return Err(no_binding(&claims));
        };
        let rules: Vec<_> = candidates.bindings.iter().map(|(b, _)| b.clone()).collect();
        let chosen = choose(&rules, &claims).ok_or_else(|| no_binding(&claims))?;
        let account = candidates
            .bindings
            .iter()
            .find(|(b, _)| b.id == chosen.id)
            .map(|(_, a)| a.clone())
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("the chosen binding vanished")))?;
        if account.is_disabled() {
            return Err(refused(format!(
                "service account {} (binding {}) is disabled",
                account.name, chosen.id
            )));
        }
        Ok(CiIdentity {
            account,
            binding_id: chosen.id,
            claims,
            policy_version: candidates.policy_version,
            board_version: candidates.board_version,
        })
    }

    /// The claims of a token signed by `issuer`'s key for `audience`.
    pub async fn verify(&self, token: &str, issuer: &str, audience: &Url) -> Result<CiClaims> {
        let (alg, kid) = header_of(token)?;
        if alg != "RS256" {
            return Err(refused(format!(
                "its algorithm is '{}'; only RS256 is accepted",
                shown(&alg)
            )));
        }
        let key = self.key(issuer, &kid).await?;
        let audience = audience.as_str();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience, audience.trim_end_matches('/')]);
        let data = jsonwebtoken::decode::<RawClaims>(token, &key, &validation).map_err(|e| {
            refused(match e.kind() {
                ErrorKind::ExpiredSignature => "it has expired (exp)".to_string(),
                ErrorKind::ImmatureSignature => "it is not valid yet (nbf)".to_string(),
                ErrorKind::InvalidIssuer => {
                    format!("its issuer (iss) is not the connected GitLab, {issuer}")
                }
                ErrorKind::InvalidAudience => format!(
                    "its audience (aud) is not this Rollway, {}",
                    audience.trim_end_matches('/')
                ),
                ErrorKind::InvalidSignature => {
                    format!(
                        "its signature does not verify with GitLab's key '{}'",
                        shown(&kid)
                    )
                }
                ErrorKind::MissingRequiredClaim(c) => format!("it has no '{c}' claim"),
                ErrorKind::InvalidAlgorithm => "its algorithm does not fit GitLab's key".into(),
                _ => "it cannot be read as a GitLab ID token".into(),
            })
        })?;
        let raw = data.claims;
        let now = jsonwebtoken::get_current_timestamp() as f64;
        if raw.iat.is_some_and(|iat| iat > now + LEEWAY_SECONDS as f64) {
            return Err(refused("it is not valid yet (issued in the future, iat)"));
        }
        let need = |v: Option<String>, claim: &str| {
            v.filter(|s| !s.is_empty())
                .ok_or_else(|| refused(format!("it has no '{claim}' claim")))
        };
        let ref_protected = match &raw.ref_protected {
            Some(Value::String(s)) => is_protected(Some(s)),
            _ => false,
        };
        Ok(CiClaims {
            project_path: need(raw.project_path, "project_path")?,
            ref_name: need(raw.ref_name, "ref")?,
            ref_type: need(raw.ref_type, "ref_type")?,
            ref_protected,
            job_id: id_text(raw.job_id),
            pipeline_id: id_text(raw.pipeline_id),
        })
    }

    /// GitLab's RS256 key `kid`.
    async fn key(&self, issuer: &str, kid: &str) -> Result<DecodingKey> {
        let url = format!("{issuer}/oauth/discovery/keys");
        self.keys
            .key(&url, Some(kid), Algorithm::RS256)
            .await
            .map_err(|e| match e {
                KeyError::Unknown => refused(format!(
                    "GitLab has no signing key '{}', even after asking it again",
                    shown(kid)
                )),
                KeyError::AskedTooOften => refused(format!(
                    "GitLab's keys hold no '{}', and they were fetched again too often lately to ask now",
                    shown(kid)
                )),
                KeyError::Unavailable(why) => keys_unavailable(&why),
            })
    }
}

fn keys_unavailable(why: &str) -> Error {
    Error::Upstream(format!(
        "GitLab's ID-token signing keys could not be fetched: {why}"
    ))
}

fn no_binding(claims: &CiClaims) -> Error {
    refused(format!(
        "no binding matches project {} on {} {} ({})",
        shown(&claims.project_path),
        shown(&claims.ref_type),
        shown(&claims.ref_name),
        if claims.ref_protected {
            "protected"
        } else {
            "not protected"
        }
    ))
}

/// The header's `alg` and `kid`, read before anything is trusted; RS256
/// tokens must name their key.
fn header_of(token: &str) -> Result<(String, String)> {
    let header = jwks::read_header(token).map_err(refused)?;
    match header.kid {
        Some(kid) => Ok((header.alg, kid)),
        None if header.alg != "RS256" => Ok((header.alg, String::new())),
        None => Err(refused("its header names no key (kid)")),
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn header(json: &str) -> String {
        format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(json))
    }

    #[test]
    fn the_algorithm_is_read_before_any_key() {
        assert_eq!(header_of(&header(r#"{"alg":"none"}"#)).unwrap().0, "none");
        assert_eq!(
            header_of(&header(r#"{"alg":"HS256","kid":"k"}"#)).unwrap(),
            ("HS256".to_string(), "k".to_string())
        );
        assert!(header_of(&header(r#"{"alg":"RS256"}"#)).is_err(), "no kid");
        assert!(header_of(&header(r#"{"kid":"k"}"#)).is_err(), "no alg");
        assert!(header_of("%%%.e30.sig").is_err());
        assert!(header_of(&header(r#"{"alg":"RS256","kid":"k","crit":["b64"]}"#)).is_err());
    }

    #[test]
    fn only_three_part_tokens_without_the_prefix_are_jwts() {
        assert!(looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt("rwy_a.b.c"));
        assert!(!looks_like_jwt("rwy_abc"));
        assert!(!looks_like_jwt("a.b"));
    }
}
