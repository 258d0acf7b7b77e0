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
//! GitLab's keys (`<gitlab>/oauth/discovery/keys`) are kept in memory and
//! fetched again when they are older than [`KEYS_MAX_AGE`] or a token names
//! a `kid` they do not hold. Fetches are bounded so that tokens naming
//! random kids cannot make Rollway hammer GitLab: one fetch at a time; an
//! unknown kid is asked about at most once per [`UNKNOWN_KID_RETRY`]; all
//! refreshes for unknown kids together at most [`REFRESHES_PER_MINUTE`] a
//! minute (burst [`REFRESH_BURST`]); after a failed fetch none for
//! [`FAILURE_BACKOFF`]. A fetch has the GitLab deadline, follows no
//! redirect and reads at most [`MAX_KEY_SET`]; its failure is a 502 naming
//! GitLab. Tokens are never logged.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::db::Db;
use crate::db::accounts::Account;
use crate::db::id_token_bindings;
use crate::domain::id_token::{CiClaims, choose, is_protected};
use crate::error::{Error, Result};

/// Clock skew allowed on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECONDS: u64 = 30;
/// Keys older than this are fetched again before use.
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);
/// An unknown `kid` is asked about again only after this long.
pub const UNKNOWN_KID_RETRY: Duration = Duration::from_secs(60);
/// Refreshes for unknown kids, all kids together.
pub const REFRESHES_PER_MINUTE: u32 = 6;
pub const REFRESH_BURST: u32 = 3;
/// No fetch for this long after one failed.
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(5);
/// The largest key set read.
pub const MAX_KEY_SET: usize = 256 * 1024;
/// Unknown kids remembered at most (then forgotten all at once).
const MAX_UNKNOWN_KIDS: usize = 1024;
/// Longest `kid` looked up.
const MAX_KID_LEN: usize = 256;

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

/// A value from a token, cut short and made printable for a message.
fn shown(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if value.chars().count() > 64 {
        out.push('…');
    }
    out
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<Value>,
    kid: Option<Value>,
    crit: Option<Value>,
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

/// GitLab's signing keys, fetched and kept.
struct KeySet {
    /// The GitLab URL they came from.
    issuer: String,
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
    failed: Option<(Instant, String)>,
    /// Kids asked about and not found, with when.
    unknown: HashMap<String, Instant>,
}

impl KeySet {
    fn empty(issuer: &str) -> Self {
        KeySet {
            issuer: issuer.to_string(),
            keys: HashMap::new(),
            fetched_at: None,
            failed: None,
            unknown: HashMap::new(),
        }
    }

    fn fresh(&self) -> bool {
        self.fetched_at.is_some_and(|t| t.elapsed() < KEYS_MAX_AGE)
    }
}

/// The verifier of one server: the key cache and its fetch limits.
pub struct IdTokenVerifier {
    http: reqwest::Client,
    deadline: Duration,
    keys: RwLock<KeySet>,
    /// Held while fetching, so concurrent requests share one fetch.
    fetching: tokio::sync::Mutex<()>,
    refreshes: DefaultDirectRateLimiter,
}

impl IdTokenVerifier {
    pub fn new(deadline: Duration) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(deadline)
            .user_agent(concat!("rollway/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let per_minute = NonZeroU32::new(REFRESHES_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(REFRESH_BURST).unwrap_or(NonZeroU32::MIN);
        IdTokenVerifier {
            http,
            deadline,
            keys: RwLock::new(KeySet::empty("")),
            fetching: tokio::sync::Mutex::new(()),
            refreshes: RateLimiter::direct(Quota::per_minute(per_minute).allow_burst(burst)),
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

    /// GitLab's key `kid`, fetching the key set when it is missing, stale
    /// or lacks the kid, within the limits of the module docs.
    async fn key(&self, issuer: &str, kid: &str) -> Result<DecodingKey> {
        if let Some(key) = self.cached(issuer, kid, false) {
            return Ok(key);
        }
        let _one_fetch = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(key) = self.cached(issuer, kid, false) {
            return Ok(key);
        }
        let (fresh, known, asked_lately, failed) = {
            let mut set = self.keys.write().unwrap_or_else(|p| p.into_inner());
            if set.issuer != issuer {
                *set = KeySet::empty(issuer);
            }
            (
                set.fresh(),
                set.keys.contains_key(kid),
                set.unknown
                    .get(kid)
                    .is_some_and(|t| t.elapsed() < UNKNOWN_KID_RETRY),
                set.failed
                    .as_ref()
                    .filter(|(t, _)| t.elapsed() < FAILURE_BACKOFF)
                    .map(|(_, why)| why.clone()),
            )
        };
        let unknown_kid = || {
            refused(format!(
                "GitLab has no signing key '{}', even after asking it again",
                shown(kid)
            ))
        };
        if fresh && !known {
            // A refresh for an unknown kid: limited per kid and overall.
            if asked_lately {
                return Err(unknown_kid());
            }
            if self.refreshes.check().is_err() {
                return Err(refused(format!(
                    "GitLab's keys hold no '{}', and they were fetched again too often lately to ask now",
                    shown(kid)
                )));
            }
        }
        if let Some(why) = failed {
            return self
                .cached(issuer, kid, true)
                .ok_or_else(|| keys_unavailable(&why));
        }
        match self.fetch(issuer).await {
            Ok(keys) => {
                let mut set = self.keys.write().unwrap_or_else(|p| p.into_inner());
                set.keys = keys;
                set.fetched_at = Some(Instant::now());
                set.failed = None;
                if let Some(key) = set.keys.get(kid) {
                    return Ok(key.clone());
                }
                if set.unknown.len() >= MAX_UNKNOWN_KIDS {
                    set.unknown.clear();
                }
                set.unknown.insert(kid.to_string(), Instant::now());
                Err(unknown_kid())
            }
            Err(why) => {
                tracing::warn!(gitlab = %issuer, error = %why, "fetching GitLab's ID-token keys failed");
                {
                    let mut set = self.keys.write().unwrap_or_else(|p| p.into_inner());
                    set.failed = Some((Instant::now(), why.clone()));
                }
                // Stale keys still serve while GitLab is away.
                self.cached(issuer, kid, true)
                    .ok_or_else(|| keys_unavailable(&why))
            }
        }
    }

    /// The cached key `kid` of `issuer`: only from fresh keys unless
    /// `stale_ok`.
    fn cached(&self, issuer: &str, kid: &str, stale_ok: bool) -> Option<DecodingKey> {
        let set = self.keys.read().unwrap_or_else(|p| p.into_inner());
        (set.issuer == issuer && (stale_ok || set.fresh()))
            .then(|| set.keys.get(kid).cloned())
            .flatten()
    }

    /// GitLab's RS256 signing keys by kid; `Err` says what went wrong.
    async fn fetch(&self, issuer: &str) -> Result<HashMap<String, DecodingKey>, String> {
        let url = format!("{issuer}/oauth/discovery/keys");
        let read = async {
            let mut response = self
                .http
                .get(&url)
                .send()
                .await
                .map_err(|e| describe_http(&e))?;
            let status = response.status();
            if status.is_redirection() {
                return Err(format!("it answered {status} (a redirect, not followed)"));
            }
            if !status.is_success() {
                return Err(format!("it answered {status}"));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| describe_http(&e))? {
                if body.len() + chunk.len() > MAX_KEY_SET {
                    return Err(format!(
                        "its key set is larger than {} KiB",
                        MAX_KEY_SET >> 10
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        };
        let body = tokio::time::timeout(self.deadline, read)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "it did not answer within {} s",
                    self.deadline.as_secs_f64()
                ))
            })?;
        let set: JwkSet = serde_json::from_slice(&body)
            .map_err(|e| format!("its answer is not a JSON Web Key Set: {e}"))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = &jwk.common.key_id else {
                continue;
            };
            let rsa = matches!(jwk.algorithm, AlgorithmParameters::RSA(_));
            let for_rs256 = jwk
                .common
                .key_algorithm
                .is_none_or(|a| a == KeyAlgorithm::RS256);
            let for_signing = jwk
                .common
                .public_key_use
                .as_ref()
                .is_none_or(|u| *u == PublicKeyUse::Signature);
            if rsa
                && for_rs256
                && for_signing
                && let Ok(key) = DecodingKey::from_jwk(jwk)
            {
                keys.insert(kid.clone(), key);
            }
        }
        if keys.is_empty() {
            return Err("its key set holds no RS256 signing key".into());
        }
        Ok(keys)
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

/// An HTTP failure without the URL's details.
fn describe_http(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "it timed out".into()
    } else if e.is_connect() {
        "Rollway cannot connect to it".into()
    } else {
        "the request failed".into()
    }
}

/// The header's `alg` and `kid`, read before anything is trusted.
fn header_of(token: &str) -> Result<(String, String)> {
    let unreadable = || refused("its header cannot be read");
    let encoded = token.split('.').next().ok_or_else(unreadable)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .map_err(|_| unreadable())?;
    let header: RawHeader = serde_json::from_slice(&bytes).map_err(|_| unreadable())?;
    if header.crit.is_some() {
        // RFC 7515: extensions named critical must be understood; Rollway
        // understands none (GitLab sends none).
        return Err(refused("its header names critical extensions (crit)"));
    }
    let alg = match header.alg {
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => return Err(refused("its header names no algorithm (alg)")),
    };
    let kid = match header.kid {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_KID_LEN => s,
        Some(Value::String(s)) if s.len() > MAX_KID_LEN => {
            return Err(refused("its key id (kid) is too long"));
        }
        _ if alg != "RS256" => String::new(),
        _ => return Err(refused("its header names no key (kid)")),
    };
    Ok((alg, kid))
}

#[cfg(test)]
mod tests {
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
