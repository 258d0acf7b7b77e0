//! Single sign-on through an OpenID Connect provider: the
//! authorization-code flow with PKCE (S256), `state` and `nonce`.
//!
//! [`Oidc::begin`] makes a sign-in's secrets (state, nonce, code verifier)
//! and the provider URL to send the person to; the edge keeps them sealed
//! in a short-lived cookie of that browser ([`Pending`]), so that only the
//! browser that started a sign-in can finish it, on whichever replica.
//! [`Oidc::finish`] trades the code for tokens at the provider's token
//! endpoint (with the verifier and the client's credentials) and accepts
//! the ID token only when all of this holds, each failure refused with its
//! reason: its `alg` is RS256 or ES256 (never `none`, never HS256 "signed"
//! with a public key: the algorithm is checked before any key is looked
//! at); its key is in the provider's JWKS (`jwks_uri`, fetched within the
//! limits of [`crate::jwks`]); the signature verifies; `iss` is the
//! provider's issuer; `aud` holds the client id (and `azp`, when given or
//! when there are several audiences, is it); `exp`, `nbf` and `iat` hold
//! within [`LEEWAY_SECONDS`]; `nonce` is this sign-in's; `sub` and the
//! user-name claim are there.
//!
//! The provider's discovery document (`<issuer>/.well-known/openid-configuration`)
//! is read on the first sign-in and again after [`DISCOVERY_MAX_AGE`]; its
//! `issuer` must be the configured one, and its endpoints https (http only
//! on this machine). Nothing the provider sends is followed as a redirect
//! or read beyond [`MAX_ANSWER`]; tokens and codes are never logged.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use url::Url;

use crate::config::{OidcConfig, provider_url};
use crate::db::oidc::{Grant, Person};
use crate::domain::text::shown;
use crate::domain::tree::Role;
use crate::error::{Error, Result};
use crate::jwks::{self, KeyCache, KeyError};
use crate::secret::random_alphanumeric;

/// Clock skew allowed on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECONDS: u64 = 30;
/// How long a sign-in may take from leaving for the provider to coming back.
pub const SIGN_IN_LIFETIME: Duration = Duration::from_secs(600);
/// The discovery document is read again after this long.
pub const DISCOVERY_MAX_AGE: Duration = Duration::from_secs(3600);
/// No discovery for this long after one failed.
const DISCOVERY_BACKOFF: Duration = Duration::from_secs(5);
/// The largest answer read from the provider.
pub const MAX_ANSWER: usize = 256 * 1024;
/// Most groups read from a token.
const MAX_GROUPS: usize = 1000;

/// A sign-in under way, kept sealed in the browser that started it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    /// Where to go once signed in (a local path, checked by the edge).
    pub next: String,
    /// Unix seconds.
    pub started_at: u64,
}

impl Pending {
    /// Whether it is older than [`SIGN_IN_LIFETIME`].
    pub fn expired(&self) -> bool {
        now_seconds() > self.started_at.saturating_add(SIGN_IN_LIFETIME.as_secs())
    }

    /// Whether `state` (from the provider's redirect) is this sign-in's.
    pub fn is_state(&self, state: &str) -> bool {
        bool::from(self.state.as_bytes().ct_eq(state.as_bytes()))
    }
}

fn now_seconds() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// What the provider's discovery document says, checked.
#[derive(Debug, Clone)]
struct Discovery {
    issuer: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
    jwks_uri: String,
    /// Send the client secret in the form body rather than Basic auth.
    secret_in_body: bool,
}

#[derive(Deserialize)]
struct RawDiscovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
}

#[derive(Default)]
struct DiscoveryCache {
    got: Option<(Instant, Discovery)>,
    failed: Option<(Instant, String)>,
}

/// The single sign-on of one server: its settings and what it keeps of
/// the provider.
pub struct Oidc {
    config: OidcConfig,
    http: reqwest::Client,
    deadline: Duration,
    discovery: tokio::sync::Mutex<DiscoveryCache>,
    keys: KeyCache,
}

fn refused(why: impl std::fmt::Display) -> Error {
    Error::Unauthorized(format!("Single sign-on refused: {why}."))
}

fn provider_failed(what: &str, why: impl std::fmt::Display) -> Error {
    Error::Upstream(format!("The sign-in provider's {what} failed: {why}."))
}

impl Oidc {
    pub fn new(config: OidcConfig, deadline: Duration) -> Self {
        Oidc {
            config,
            http: jwks::client(deadline),
            deadline,
            discovery: tokio::sync::Mutex::new(DiscoveryCache::default()),
            keys: KeyCache::new(deadline),
        }
    }

    /// The provider's name, for the login button.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// A new sign-in: its secrets, and the provider URL to send the
    /// person to.
    pub async fn begin(&self, next: String) -> Result<(Url, Pending)> {
        let discovery = self.discovery().await?;
        let pending = Pending {
            state: random_alphanumeric(32),
            nonce: random_alphanumeric(32),
            verifier: random_alphanumeric(64),
            next,
            started_at: now_seconds(),
        };
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier.as_bytes()));
        let mut url = discovery.authorization_endpoint.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.config.redirect_uri)
            .append_pair("scope", &self.config.scopes.join(" "))
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok((url, pending))
    }

    /// Finishes a sign-in the provider sent back with `code`: the person
    /// its verified ID token names.
    pub async fn finish(&self, pending: &Pending, code: &str) -> Result<Person> {
        let discovery = self.discovery().await?;
        let id_token = self.exchange(&discovery, code, &pending.verifier).await?;
        let claims = self.verify(&discovery, &id_token, &pending.nonce).await?;
        self.person(&discovery.issuer, &claims)
    }

    /// The discovery document, read when missing or old.
    async fn discovery(&self) -> Result<Discovery> {
        let mut cache = self.discovery.lock().await;
        if let Some((at, d)) = &cache.got
            && at.elapsed() < DISCOVERY_MAX_AGE
        {
            return Ok(d.clone());
        }
        if let Some((at, why)) = &cache.failed
            && at.elapsed() < DISCOVERY_BACKOFF
        {
            return match &cache.got {
                Some((_, d)) => Ok(d.clone()),
                None => Err(provider_failed("discovery document", why)),
            };
        }
        match self.read_discovery().await {
            Ok(d) => {
                cache.got = Some((Instant::now(), d.clone()));
                cache.failed = None;
                Ok(d)
            }
            Err(why) => {
                tracing::warn!(issuer = %self.config.issuer, error = %why, "reading the sign-in provider's discovery document failed");
                cache.failed = Some((Instant::now(), why.clone()));
                match &cache.got {
                    // An old one still serves while the provider is away.
                    Some((_, d)) => Ok(d.clone()),
                    None => Err(provider_failed("discovery document", why)),
                }
            }
        }
    }

    async fn read_discovery(&self) -> std::result::Result<Discovery, String> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let body = jwks::get_limited(&self.http, &url, self.deadline, MAX_ANSWER).await?;
        let raw: RawDiscovery = serde_json::from_slice(&body)
            .map_err(|e| format!("it is not an OpenID Connect discovery document: {e}"))?;
        if raw.issuer.trim_end_matches('/') != self.config.issuer.trim_end_matches('/') {
            return Err(format!(
                "it names the issuer '{}', not the configured '{}'",
                shown(&raw.issuer),
                self.config.issuer
            ));
        }
        if raw
            .code_challenge_methods_supported
            .as_ref()
            .is_some_and(|m| !m.iter().any(|m| m == "S256"))
        {
            return Err("it does not support PKCE with S256".into());
        }
        let endpoint =
            |name: &str, raw: &str| provider_url(raw).map_err(|e| format!("its {name}: {e}"));
        let authorization_endpoint =
            endpoint("authorization_endpoint", &raw.authorization_endpoint)?;
        let token_endpoint = endpoint("token_endpoint", &raw.token_endpoint)?;
        let jwks_uri = endpoint("jwks_uri", &raw.jwks_uri)?.to_string();
        let methods = raw
            .token_endpoint_auth_methods_supported
            .unwrap_or_default();
        let secret_in_body = !methods.is_empty()
            && !methods.iter().any(|m| m == "client_secret_basic")
            && methods.iter().any(|m| m == "client_secret_post");
        Ok(Discovery {
            issuer: raw.issuer,
            authorization_endpoint,
            token_endpoint,
            jwks_uri,
            secret_in_body,
        })
    }

    /// Trades the code for the ID token at the token endpoint.
    async fn exchange(&self, d: &Discovery, code: &str, verifier: &str) -> Result<String> {
        let mut request = self
            .http
            .post(d.token_endpoint.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json");
        // Built in a block: the serializer is not Send, so it must not
        // live across an await.
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("redirect_uri", &self.config.redirect_uri)
                .append_pair("code_verifier", verifier)
                .append_pair("client_id", &self.config.client_id);
            if let Some(secret) = &self.config.client_secret {
                if d.secret_in_body {
                    form.append_pair("client_secret", secret.expose());
                } else {
                    // RFC 6749 2.3.1: both form-encoded, then Basic.
                    let enc = |v: &str| {
                        url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                    };
                    let pair = format!("{}:{}", enc(&self.config.client_id), enc(secret.expose()));
                    request =
                        request.header("authorization", format!("Basic {}", STANDARD.encode(pair)));
                }
            }
            form.finish()
        };
        let send = async {
            let response = request
                .body(body)
                .send()
                .await
                .map_err(|e| jwks::describe_http(&e))?;
            let status = response.status();
            let body = jwks::read_capped(response, MAX_ANSWER).await?;
            Ok::<_, String>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.deadline, send)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "it did not answer within {} s",
                    self.deadline.as_secs_f64()
                ))
            })
            .map_err(|why| provider_failed("token endpoint", why))?;
        #[derive(Deserialize)]
        struct Answer {
            id_token: Option<String>,
            error: Option<String>,
            error_description: Option<String>,
        }
        let answer: Option<Answer> = serde_json::from_slice(&body).ok();
        if status.is_client_error()
            && let Some(Answer {
                error: Some(error),
                error_description,
                ..
            }) = &answer
        {
            // invalid_grant and friends: the code was used, old or not
            // this client's.
            return Err(refused(format!(
                "the provider did not accept the sign-in ({})",
                oauth_error(error, error_description.as_deref())
            )));
        }
        if !status.is_success() {
            return Err(provider_failed(
                "token endpoint",
                format!("it answered {status}"),
            ));
        }
        answer
            .and_then(|a| a.id_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| provider_failed("token endpoint", "its answer holds no id_token"))
    }

    /// The claims of an ID token, verified as the module docs say.
    async fn verify(&self, d: &Discovery, token: &str, nonce: &str) -> Result<Map<String, Value>> {
        let header =
            jwks::read_header(token).map_err(|why| refused(format!("the ID token: {why}")))?;
        let alg = match header.alg.as_str() {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => {
                return Err(refused(format!(
                    "the ID token's algorithm is '{}'; only RS256 and ES256 are accepted",
                    shown(other)
                )));
            }
        };
        let kid = header.kid.as_deref();
        let key = self.keys.key(&d.jwks_uri, kid, alg).await.map_err(|e| match e {
            KeyError::Unknown => refused(format!(
                "the provider has no {} signing key '{}'",
                header.alg,
                shown(kid.unwrap_or("(none named)"))
            )),
            KeyError::AskedTooOften => refused(format!(
                "the provider's keys hold no '{}', and they were fetched again too often lately to ask now",
                shown(kid.unwrap_or("(none named)"))
            )),
            KeyError::Unavailable(why) => provider_failed("signing keys", why),
        })?;
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&d.issuer]);
        validation.set_audience(&[&self.config.client_id]);
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| {
                refused(match e.kind() {
                    ErrorKind::ExpiredSignature => "the ID token has expired (exp)".to_string(),
                    ErrorKind::ImmatureSignature => {
                        "the ID token is not valid yet (nbf)".to_string()
                    }
                    ErrorKind::InvalidIssuer => {
                        format!("the ID token's issuer (iss) is not {}", d.issuer)
                    }
                    ErrorKind::InvalidAudience => format!(
                        "the ID token's audience (aud) is not this client, {}",
                        self.config.client_id
                    ),
                    ErrorKind::InvalidSignature => {
                        "the ID token's signature does not verify with the provider's key"
                            .to_string()
                    }
                    ErrorKind::MissingRequiredClaim(c) => {
                        format!("the ID token has no '{c}' claim")
                    }
                    ErrorKind::InvalidAlgorithm => {
                        "the ID token's algorithm does not fit the provider's key".into()
                    }
                    _ => "the ID token cannot be read".into(),
                })
            })?;
        let claims = data.claims;
        let now = now_seconds() as f64;
        if claims
            .get("iat")
            .and_then(Value::as_f64)
            .is_some_and(|iat| iat > now + LEEWAY_SECONDS as f64)
        {
            return Err(refused("the ID token was issued in the future (iat)"));
        }
        let token_nonce = claims
            .get("nonce")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !bool::from(token_nonce.as_bytes().ct_eq(nonce.as_bytes())) {
            return Err(refused("the ID token's nonce is not this sign-in's"));
        }
        let several = claims
            .get("aud")
            .and_then(Value::as_array)
            .is_some_and(|a| a.len() > 1);
        match claims.get("azp").and_then(Value::as_str) {
            Some(azp) if azp != self.config.client_id => {
                return Err(refused(format!(
                    "the ID token was issued to another client (azp {})",
                    shown(azp)
                )));
            }
            None if several => {
                return Err(refused(
                    "the ID token names several audiences but no authorized party (azp)",
                ));
            }
            _ => {}
        }
        Ok(claims)
    }

    /// The person the verified claims name.
    fn person(&self, issuer: &str, claims: &Map<String, Value>) -> Result<Person> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 255)
            .ok_or_else(|| refused("the ID token has no usable subject (sub)"))?;
        let claim = &self.config.user_claim;
        let name = claims
            .get(claim)
            .and_then(Value::as_str)
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                refused(format!(
                    "the ID token has no '{claim}' claim to name the user by"
                ))
            })?;
        let display_name: String = claims
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(&name)
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        let groups = self
            .config
            .groups_claim
            .as_ref()
            .map(|c| groups_of(claims.get(c)))
            .unwrap_or_default();
        let grants = self
            .config
            .group_roles
            .iter()
            .filter(|g| groups.contains(&g.group))
            .filter_map(|g| {
                Role::ALL
                    .into_iter()
                    .find(|r| r.as_str() == g.role)
                    .map(|role| Grant {
                        group: g.group.clone(),
                        path: g.path.clone(),
                        role,
                    })
            })
            .collect();
        let admin = self
            .config
            .admin_group
            .as_ref()
            .map(|a| groups.iter().any(|g| g == a));
        Ok(Person {
            issuer: issuer.to_string(),
            subject: subject.to_string(),
            name,
            display_name: display_name.trim().to_string(),
            grants,
            admin,
        })
    }
}

/// An OAuth error a provider answered (`error`, `error_description`), as
/// a message quotes it.
pub fn oauth_error(error: &str, description: Option<&str>) -> String {
    match description {
        Some(d) => format!("{}: {}", shown(error), shown(d)),
        None => shown(error),
    }
}

/// A groups claim: a list of names, or one name.
fn groups_of(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .take(MAX_GROUPS)
            .map(str::to_string)
            .collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pending_sign_in_matches_only_its_state_and_ends() {
        let mut p = Pending {
            state: "abc".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            next: "/".into(),
            started_at: now_seconds(),
        };
        assert!(p.is_state("abc"));
        assert!(!p.is_state("abd") && !p.is_state("ab") && !p.is_state(""));
        assert!(!p.expired());
        p.started_at -= SIGN_IN_LIFETIME.as_secs() + 1;
        assert!(p.expired());
    }

    #[test]
    fn groups_are_a_list_or_one_name() {
        assert_eq!(groups_of(Some(&json!(["a", 1, "b"]))), ["a", "b"]);
        assert_eq!(groups_of(Some(&json!("a"))), ["a"]);
        assert!(groups_of(Some(&json!({"a": 1}))).is_empty());
        assert!(groups_of(None).is_empty());
    }
}
