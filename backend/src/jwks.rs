//! A JSON Web Key Set fetched from one URL and kept: the signing keys of a
//! token issuer (GitLab for CI ID tokens, the OIDC provider for sign-in).
//!
//! Keys are kept in memory and fetched again when they are older than
//! [`KEYS_MAX_AGE`] or a token names a `kid` they do not hold. Fetches are
//! bounded so that tokens naming random kids cannot make Rollway hammer the
//! issuer: one fetch at a time; an unknown kid is asked about at most once
//! per [`UNKNOWN_KID_RETRY`]; all refreshes for unknown kids together at
//! most [`REFRESHES_PER_MINUTE`] a minute (burst [`REFRESH_BURST`]); after a
//! failed fetch none for [`FAILURE_BACKOFF`], stale keys serving meanwhile.
//! A fetch has the caller's deadline, follows no redirect and reads at
//! most [`MAX_KEY_SET`].
//!
//! Only keys for the algorithms Rollway verifies are kept: RSA keys for
//! RS256 and P-256 keys for ES256, each only when its `alg` (if any) names
//! that algorithm and its `use` (if any) is `sig`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

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

/// Why no key could be had.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyError {
    /// The issuer's keys hold none for this kid and algorithm, even after
    /// asking again.
    Unknown,
    /// Not held, and the key set was fetched again too often lately to ask.
    AskedTooOften,
    /// The key set could not be fetched; says why.
    Unavailable(String),
}

/// One usable key.
struct Entry {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// The keys of one URL, fetched and kept.
struct KeySet {
    url: String,
    keys: Vec<Entry>,
    fetched_at: Option<Instant>,
    failed: Option<(Instant, String)>,
    /// Kids asked about and not found, with when.
    unknown: HashMap<String, Instant>,
}

impl KeySet {
    fn empty(url: &str) -> Self {
        KeySet {
            url: url.to_string(),
            keys: Vec::new(),
            fetched_at: None,
            failed: None,
            unknown: HashMap::new(),
        }
    }

    fn fresh(&self) -> bool {
        self.fetched_at.is_some_and(|t| t.elapsed() < KEYS_MAX_AGE)
    }

    /// The key named `kid` for `alg`; without a kid, the only key for
    /// `alg` (a provider with one key may leave kids out).
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
        let mut fitting = self.keys.iter().filter(|e| e.alg == alg);
        match kid {
            Some(kid) => fitting
                .find(|e| e.kid.as_deref() == Some(kid))
                .map(|e| e.key.clone()),
            None => {
                let first = fitting.next()?;
                fitting.next().is_none().then(|| first.key.clone())
            }
        }
    }
}

/// The key cache of one issuer's key set URL (a new URL starts afresh).
pub struct KeyCache {
    http: reqwest::Client,
    deadline: Duration,
    keys: RwLock<KeySet>,
    /// Held while fetching, so concurrent requests share one fetch.
    fetching: tokio::sync::Mutex<()>,
    refreshes: DefaultDirectRateLimiter,
    fetches: std::sync::atomic::AtomicUsize,
}

impl KeyCache {
    pub fn new(deadline: Duration) -> Self {
        let http = client(deadline);
        let per_minute = NonZeroU32::new(REFRESHES_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(REFRESH_BURST).unwrap_or(NonZeroU32::MIN);
        KeyCache {
            http,
            deadline,
            keys: RwLock::new(KeySet::empty("")),
            fetching: tokio::sync::Mutex::new(()),
            refreshes: RateLimiter::direct(Quota::per_minute(per_minute).allow_burst(burst)),
            fetches: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// How many times the key set was fetched (for logs and tests).
    pub fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The key `kid` for `alg` from the set at `url`, fetching the set
    /// when it is missing, stale or lacks the kid, within the limits of the
    /// module docs.
    pub async fn key(
        &self,
        url: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, KeyError> {
        if let Some(key) = self.cached(url, kid, alg, false) {
            return Ok(key);
        }
        let _one_fetch = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(key) = self.cached(url, kid, alg, false) {
            return Ok(key);
        }
        let kid_name = kid.unwrap_or_default();
        let (fresh, asked_lately, failed) = {
            let mut set = self.keys.write().unwrap_or_else(|p| p.into_inner());
            if set.url != url {
                *set = KeySet::empty(url);
            }
            (
                set.fresh(),
                set.unknown
                    .get(kid_name)
                    .is_some_and(|t| t.elapsed() < UNKNOWN_KID_RETRY),
                set.failed
                    .as_ref()
                    .filter(|(t, _)| t.elapsed() < FAILURE_BACKOFF)
                    .map(|(_, why)| why.clone()),
            )
        };
        if fresh {
            // A refresh for a kid the fresh keys lack: limited per kid and
            // overall.
            if asked_lately {
                return Err(KeyError::Unknown);
            }
            if self.refreshes.check().is_err() {
                return Err(KeyError::AskedTooOften);
            }
        }
        if let Some(why) = failed {
            return self
                .cached(url, kid, alg, true)
                .ok_or(KeyError::Unavailable(why));
        }
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.fetch(url).await {
            Ok(keys) => {
                let mut set = self.keys.write().unwrap_or_else(|p| p.into_inner());
                set.keys = keys;
                set.fetched_at = Some(Instant::now());
                set.failed = None;
                if let Some(key) = set.find(kid, alg) {
                    return Ok(key);
                }
                if set.unknown.len() >= MAX_UNKNOWN_KIDS {
                    set.unknown.clear();
                }
                set.unknown.insert(kid_name.to_string(), Instant::now());
                Err(KeyError::Unknown)
            }
            Err(why) => {
                tracing::warn!(url = %url, error = %why, "fetching signing keys failed");
                {
                    let mut set = self.keys.write().unwrap_or_else(|p| p.into_inner());
                    set.failed = Some((Instant::now(), why.clone()));
                }
                // Stale keys still serve while the issuer is away.
                self.cached(url, kid, alg, true)
                    .ok_or(KeyError::Unavailable(why))
            }
        }
    }

    /// The cached key: only from fresh keys unless `stale_ok`.
    fn cached(
        &self,
        url: &str,
        kid: Option<&str>,
        alg: Algorithm,
        stale_ok: bool,
    ) -> Option<DecodingKey> {
        let set = self.keys.read().unwrap_or_else(|p| p.into_inner());
        (set.url == url && (stale_ok || set.fresh()))
            .then(|| set.find(kid, alg))
            .flatten()
    }

    /// The usable keys at `url`; `Err` says what went wrong.
    async fn fetch(&self, url: &str) -> Result<Vec<Entry>, String> {
        let body = get_limited(&self.http, url, self.deadline, MAX_KEY_SET).await?;
        let set: JwkSet = serde_json::from_slice(&body)
            .map_err(|e| format!("its answer is not a JSON Web Key Set: {e}"))?;
        let keys: Vec<Entry> = set.keys.iter().filter_map(usable).collect();
        if keys.is_empty() {
            return Err("its key set holds no RS256 or ES256 signing key".into());
        }
        Ok(keys)
    }
}

/// Longest `kid` looked up.
pub const MAX_KID_LEN: usize = 256;

/// A JWT's header, read before anything in the token is trusted.
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    pub alg: String,
    pub kid: Option<String>,
}

/// Reads a JWT's header; `Err` says what is wrong with it.
pub fn read_header(token: &str) -> Result<Header, &'static str> {
    use base64::Engine as _;
    #[derive(serde::Deserialize)]
    struct Raw {
        alg: Option<serde_json::Value>,
        kid: Option<serde_json::Value>,
        crit: Option<serde_json::Value>,
    }
    let unreadable = "its header cannot be read";
    let encoded = token.split('.').next().ok_or(unreadable)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .map_err(|_| unreadable)?;
    let raw: Raw = serde_json::from_slice(&bytes).map_err(|_| unreadable)?;
    if raw.crit.is_some() {
        // RFC 7515: extensions named critical must be understood; Rollway
        // understands none.
        return Err("its header names critical extensions (crit)");
    }
    let alg = match raw.alg {
        Some(serde_json::Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => return Err("its header names no algorithm (alg)"),
    };
    let kid = match raw.kid {
        Some(serde_json::Value::String(s)) if s.len() > MAX_KID_LEN => {
            return Err("its key id (kid) is too long");
        }
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    };
    Ok(Header { alg, kid })
}

/// A JWK as a key Rollway verifies with, or `None`.
fn usable(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Entry> {
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        _ => return None,
    };
    let named_fits = jwk.common.key_algorithm.is_none_or(|a| {
        matches!(
            (a, alg),
            (KeyAlgorithm::RS256, Algorithm::RS256) | (KeyAlgorithm::ES256, Algorithm::ES256)
        )
    });
    let for_signing = jwk
        .common
        .public_key_use
        .as_ref()
        .is_none_or(|u| *u == PublicKeyUse::Signature);
    if !(named_fits && for_signing) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Entry {
        kid: jwk.common.key_id.clone(),
        alg,
        key,
    })
}

/// An HTTP client for a token issuer: follows no redirect, connects
/// within `deadline`.
pub fn client(deadline: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(deadline)
        .user_agent(concat!("rollway/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// The body of a GET of `url`: no redirect followed, within `deadline`, at
/// most `limit` bytes; `Err` says what went wrong without the URL's
/// details.
pub async fn get_limited(
    http: &reqwest::Client,
    url: &str,
    deadline: Duration,
    limit: usize,
) -> Result<Vec<u8>, String> {
    let read = async {
        let response = http.get(url).send().await.map_err(|e| describe_http(&e))?;
        read_limited(response, limit).await
    };
    tokio::time::timeout(deadline, read)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "it did not answer within {} s",
                deadline.as_secs_f64()
            ))
        })
}

/// A response's body when its status is a success, at most `limit` bytes.
pub async fn read_limited(response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let status = response.status();
    if status.is_redirection() {
        return Err(format!("it answered {status} (a redirect, not followed)"));
    }
    if !status.is_success() {
        return Err(format!("it answered {status}"));
    }
    read_capped(response, limit).await
}

/// A response's body whatever its status, at most `limit` bytes.
pub async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe_http(&e))? {
        if body.len() + chunk.len() > limit {
            return Err(format!("its answer is larger than {} KiB", limit >> 10));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An HTTP failure without the URL's details.
pub fn describe_http(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "it timed out".into()
    } else if e.is_connect() {
        "Rollway cannot connect to it".into()
    } else {
        "the request failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwk(json: &str) -> jsonwebtoken::jwk::Jwk {
        serde_json::from_str(json).unwrap()
    }

    const EC: &str = r#"{"kty":"EC","crv":"P-256","kid":"e","x":"zZl3_QM2cZQZQXVN_YuHkgEcKNg25m_iB-lPPnRFlY4","y":"nolaEpm8WT8l_543LT_HnKGa9yfwVd0OOzGuYeZE00Y"}"#;

    #[test]
    fn only_signing_keys_of_the_verified_algorithms_are_kept() {
        let ec = usable(&jwk(EC)).expect("a P-256 key");
        assert_eq!(ec.alg, Algorithm::ES256);
        assert_eq!(ec.kid.as_deref(), Some("e"));
        let for_encryption = EC.replace(r#""kid""#, r#""use":"enc","kid""#);
        assert!(usable(&jwk(&for_encryption)).is_none());
        let named_other = EC.replace(r#""kid""#, r#""alg":"ES384","kid""#);
        assert!(usable(&jwk(&named_other)).is_none());
        let secret = r#"{"kty":"oct","k":"c2VjcmV0","kid":"h"}"#;
        assert!(
            usable(&jwk(secret)).is_none(),
            "a shared secret is never a key"
        );
    }

    #[test]
    fn without_a_kid_only_a_lone_key_of_the_algorithm_is_chosen() {
        let mut set = KeySet::empty("u");
        set.keys.push(usable(&jwk(EC)).unwrap());
        assert!(set.find(None, Algorithm::ES256).is_some());
        assert!(set.find(None, Algorithm::RS256).is_none());
        assert!(set.find(Some("e"), Algorithm::RS256).is_none());
        set.keys
            .push(usable(&jwk(&EC.replace(r#""e""#, r#""f""#))).unwrap());
        assert!(
            set.find(None, Algorithm::ES256).is_none(),
            "two to choose from"
        );
        assert!(set.find(Some("f"), Algorithm::ES256).is_some());
    }
}
