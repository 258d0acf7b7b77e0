//! A small OpenID Connect provider for the tests, signing with its own
//! keys (the fixtures in `tests/fixtures/id_tokens`: RSA key `a` as
//! `test-key-a`, P-256 key `ec` as `test-key-ec`). It serves discovery, its
//! JWKS, `/authorize` (which signs in whoever the test chose at once and
//! sends the browser back with a code) and `/token`, which checks what a
//! real provider checks — the client's Basic credentials, the code (once),
//! the redirect URI and the PKCE verifier against the S256 challenge — and
//! answers an ID token made as [`Forge`] says: good, or forged one way.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const CLIENT_ID: &str = "rollway-tests";
pub const CLIENT_SECRET: &str = "s3cret-of-the-client";

/// How the ID token of the next sign-ins is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    /// RS256 with key `a`, everything right.
    Good,
    /// ES256 with the P-256 key, everything right.
    GoodEs256,
    /// Signed with key `b` but naming key `a`.
    WrongKey,
    /// Another nonce than the sign-in's.
    WrongNonce,
    /// Expired an hour ago.
    Expired,
    /// For another client.
    WrongAudience,
    /// From another issuer.
    WrongIssuer,
    /// `alg: none`, no signature.
    AlgNone,
    /// HS256 "signed" with the public key as the shared secret.
    Hs256,
}

struct Code {
    redirect_uri: String,
    nonce: String,
    challenge: String,
    claims: Value,
}

struct Inner {
    issuer: String,
    /// The claims of whoever signs in next (beyond iss/aud/exp/iat/nonce).
    person: Value,
    forge: Forge,
    codes: HashMap<String, Code>,
    requests: Vec<String>,
    /// Show a sign-in page before sending the browser back.
    interactive: bool,
}

#[derive(Clone)]
pub struct FakeOidc {
    pub issuer: String,
    inner: Arc<Mutex<Inner>>,
}

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../tests/fixtures/id_tokens/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).expect("PEM body")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl FakeOidc {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let inner = Arc::new(Mutex::new(Inner {
            issuer: issuer.clone(),
            person: json!({"sub": "u-1", "preferred_username": "alice"}),
            forge: Forge::Good,
            codes: HashMap::new(),
            requests: Vec::new(),
            interactive: false,
        }));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { issuer, inner }
    }

    /// Who signs in next: `claims` such as `sub`, `preferred_username`,
    /// `name`, `groups`.
    pub fn sign_in_as(&self, claims: Value) {
        self.inner.lock().unwrap().person = claims;
    }

    /// Shows a sign-in page (for browsers) with a "Continue" link, rather
    /// than sending the browser back at once.
    pub fn interactive(&self) {
        self.inner.lock().unwrap().interactive = true;
    }

    pub fn forge(&self, forge: Forge) {
        self.inner.lock().unwrap().forge = forge;
    }

    pub fn requests(&self) -> Vec<String> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// The server flags that sign in through this provider.
    pub fn args(&self) -> Vec<String> {
        [
            "--oidc-issuer",
            &self.issuer,
            "--oidc-client-id",
            CLIENT_ID,
            "--oidc-client-secret",
            CLIENT_SECRET,
            "--oidc-name",
            "Acme SSO",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

fn log(inner: &Arc<Mutex<Inner>>, what: String) {
    inner.lock().unwrap().requests.push(what);
}

async fn discovery(State(inner): State<Arc<Mutex<Inner>>>) -> Json<Value> {
    log(&inner, "GET discovery".into());
    let issuer = inner.lock().unwrap().issuer.clone();
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    }))
}

async fn jwks(State(inner): State<Arc<Mutex<Inner>>>) -> Json<Value> {
    log(&inner, "GET jwks".into());
    let rsa: Value = serde_json::from_str(&fixture("key-a.jwk.json")).unwrap();
    let ec: Value = serde_json::from_str(&fixture("key-ec.jwk.json")).unwrap();
    Json(json!({ "keys": [rsa, ec] }))
}

/// Signs in the chosen person at once and sends the browser back.
async fn authorize(
    State(inner): State<Arc<Mutex<Inner>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    log(&inner, "GET authorize".into());
    let need = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
    let (Some(redirect_uri), Some(state), Some(nonce), Some(challenge)) = (
        need("redirect_uri"),
        need("state"),
        need("nonce"),
        need("code_challenge"),
    ) else {
        return (
            StatusCode::BAD_REQUEST,
            "missing redirect_uri, state, nonce or code_challenge",
        )
            .into_response();
    };
    let well_formed = q.get("response_type").map(String::as_str) == Some("code")
        && q.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && q.get("code_challenge_method").map(String::as_str) == Some("S256")
        && q.get("scope")
            .is_some_and(|s| s.split(' ').any(|s| s == "openid"));
    if !well_formed {
        return (
            StatusCode::BAD_REQUEST,
            "not an OpenID Connect code request with PKCE",
        )
            .into_response();
    }
    let mut inner = inner.lock().unwrap();
    if inner.interactive && !q.contains_key("approved") {
        let name = inner.person["preferred_username"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        let mut again = url::Url::parse(&format!("{}/authorize", inner.issuer)).unwrap();
        again
            .query_pairs_mut()
            .extend_pairs(q.iter())
            .append_pair("approved", "1");
        let page = format!(
            "<!doctype html><title>Acme SSO</title><body style=\"font-family:sans-serif;margin:4rem auto;max-width:24rem\">\
             <h1>Acme SSO</h1><p>Rollway asks who you are.</p>\
             <p><a id=\"continue\" href=\"{}\">Continue as {name}</a></p></body>",
            again.as_str().replace('&', "&amp;")
        );
        return axum::response::Html(page).into_response();
    }
    let code = format!("code-{}", rand::random::<u64>());
    let claims = inner.person.clone();
    inner.codes.insert(
        code.clone(),
        Code {
            redirect_uri: redirect_uri.clone(),
            nonce,
            challenge,
            claims,
        },
    );
    let mut back = url::Url::parse(&redirect_uri).unwrap();
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &state);
    Redirect::to(back.as_str()).into_response()
}

fn oauth_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
}

async fn token(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    log(&inner, "POST token".into());
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(basic.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "invalid_client" })),
        )
            .into_response();
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return oauth_error("unsupported_grant_type");
    }
    let (code, forge, issuer) = {
        let mut inner = inner.lock().unwrap();
        let code = form.get("code").and_then(|c| inner.codes.remove(c));
        (code, inner.forge, inner.issuer.clone())
    };
    let Some(code) = code else {
        return oauth_error("invalid_grant");
    };
    if form.get("redirect_uri") != Some(&code.redirect_uri) {
        return oauth_error("invalid_grant");
    }
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != code.challenge {
        return oauth_error("invalid_grant");
    }
    let now = now();
    let mut claims = json!({
        "iss": issuer, "aud": CLIENT_ID, "iat": now, "exp": now + 300, "nonce": code.nonce,
    });
    for (k, v) in code.claims.as_object().unwrap() {
        claims[k] = v.clone();
    }
    let id_token = forged(&claims, forge);
    Json(json!({
        "access_token": "an-access-token", "token_type": "Bearer", "expires_in": 300,
        "id_token": id_token,
    }))
    .into_response()
}

fn rsa_key(k: &str) -> EncodingKey {
    EncodingKey::from_rsa_der(&der(&fixture(&format!("key-{k}.pem"))))
}

/// The ID token for `claims`, made as `forge` says.
fn forged(claims: &Value, forge: Forge) -> String {
    let mut claims = claims.clone();
    let rs256 = |claims: &Value, k: &str| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("test-key-a".into());
        jsonwebtoken::encode(&header, claims, &rsa_key(k)).unwrap()
    };
    match forge {
        Forge::Good => rs256(&claims, "a"),
        Forge::GoodEs256 => {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some("test-key-ec".into());
            let key = EncodingKey::from_ec_der(&der(&fixture("key-ec.pem")));
            jsonwebtoken::encode(&header, &claims, &key).unwrap()
        }
        Forge::WrongKey => rs256(&claims, "b"),
        Forge::WrongNonce => {
            claims["nonce"] = json!("a-nonce-of-another-sign-in");
            rs256(&claims, "a")
        }
        Forge::Expired => {
            claims["iat"] = json!(now() - 7200);
            claims["exp"] = json!(now() - 3600);
            rs256(&claims, "a")
        }
        Forge::WrongAudience => {
            claims["aud"] = json!("another-client");
            rs256(&claims, "a")
        }
        Forge::WrongIssuer => {
            claims["iss"] = json!("https://evil.example");
            rs256(&claims, "a")
        }
        Forge::AlgNone => {
            let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"test-key-a"}"#);
            let body = URL_SAFE_NO_PAD.encode(claims.to_string());
            format!("{header}.{body}.")
        }
        Forge::Hs256 => {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some("test-key-a".into());
            let secret = fixture("key-a.jwk.json");
            jsonwebtoken::encode(
                &header,
                &claims,
                &EncodingKey::from_secret(secret.as_bytes()),
            )
            .unwrap()
        }
    }
}
