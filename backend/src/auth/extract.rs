//! Request extractors that establish who is asking.
//!
//! - [`PageActor`]: a browser session (cookie). Missing → redirect to login.
//! - [`ApiActor`]: a bearer token. `/api/v1` accepts nothing else.
//! - [`CsrfForm`]: a urlencoded form whose CSRF token was checked; every
//!   state-changing page route reads its body through it.

use std::net::{IpAddr, SocketAddr};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Form, FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_csrf::CsrfToken;
use axum_extra::extract::CookieJar;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::config::TrustedProxies;
use crate::db::accounts::Account;
use crate::db::audit::AuditActor;
use crate::db::{sessions, tokens};
use crate::error::Error;
use crate::http::page_error;

/// Name of the session cookie (`__Host-` prefixed when served over https).
pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-rollway_session"
    } else {
        "rollway_session"
    }
}

/// The client's address: the socket peer, or — behind trusted proxies —
/// the address the outermost trusted proxy saw.
pub fn client_ip(parts: &Parts, trusted: &TrustedProxies) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    if *trusted == TrustedProxies::None {
        return peer;
    }
    // Several X-Forwarded-For headers are one list, in order.
    let chain: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    forwarded_client(peer, &chain, trusted)
}

/// Picks the client out of an `X-Forwarded-For` chain. Each proxy appends
/// the address it received from, so only the entries the trusted proxies
/// appended — counted from the right — can be believed; everything to
/// their left was written by whoever sent the request. A malformed entry
/// where the client should be leaves the peer as the client.
pub fn forwarded_client(peer: IpAddr, chain: &[&str], trusted: &TrustedProxies) -> IpAddr {
    let parse = |entry: &str| -> Option<IpAddr> {
        entry
            .parse::<IpAddr>()
            .ok()
            .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
            .or_else(|| {
                entry
                    .trim_start_matches('[')
                    .split(']')
                    .next()
                    .and_then(|v| v.parse().ok())
            })
    };
    match trusted {
        TrustedProxies::None => peer,
        TrustedProxies::Hops(hops) => {
            // The peer is the last proxy; the entry `hops` from the right
            // was appended by the first one and is what it saw.
            if chain.is_empty() {
                return peer;
            }
            let at = chain.len().saturating_sub(*hops);
            parse(chain[at]).unwrap_or(peer)
        }
        TrustedProxies::Networks(networks) => {
            let is_proxy = |ip: &IpAddr| networks.iter().any(|n| n.contains(ip));
            if !is_proxy(&peer) {
                return peer;
            }
            let mut client = peer;
            for entry in chain.iter().rev() {
                match parse(entry) {
                    Some(ip) if is_proxy(&ip) => client = ip,
                    Some(ip) => return ip,
                    None => return client,
                }
            }
            client
        }
    }
}

/// A signed-in person, from the session cookie.
#[derive(Clone)]
pub struct PageActor {
    pub account: Account,
    pub session_id: i64,
    pub ip: IpAddr,
}

impl PageActor {
    /// This person, for the audit log.
    pub fn who(&self) -> AuditActor {
        AuditActor::of(&self.account, self.ip)
    }
}

impl PageActor {
    /// The session behind the request, if any. The policy is refreshed so
    /// the decisions that follow see the latest grants.
    pub async fn from_parts(parts: &Parts, state: &AppState) -> Result<Option<Self>, Error> {
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(cookie) = jar.get(session_cookie_name(state.config.secure_cookies())) else {
            return Ok(None);
        };
        let idle_ms = i64::from(state.config.session_idle_hours) * 3600 * 1000;
        let Some(found) = sessions::authenticate(&state.db, cookie.value(), idle_ms).await? else {
            return Ok(None);
        };
        state
            .policy
            .refresh_to(&state.db, found.policy_version)
            .await?;
        Ok(Some(Self {
            account: found.account,
            session_id: found.session_id,
            ip: client_ip(parts, &state.config.trusted_proxies),
        }))
    }
}

impl FromRequestParts<AppState> for PageActor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match Self::from_parts(parts, state).await {
            Ok(Some(actor)) => Ok(actor),
            Ok(None) => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let target = if parts.method == axum::http::Method::GET && next != "/" {
                    format!("/login?next={}", urlencode(next))
                } else {
                    "/login".to_string()
                };
                Err(Redirect::to(&target).into_response())
            }
            Err(err) => Err(page_error(&err)),
        }
    }
}

fn urlencode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// An API caller, from `Authorization: Bearer rwy_…`, and the same caller
/// as the audit log records it.
#[derive(Clone)]
pub struct ApiActor(pub Account, pub AuditActor);

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
        match tokens::authenticate(&state.db, presented).await? {
            Ok((account, policy_version)) => {
                state.policy.refresh_to(&state.db, policy_version).await?;
                let who = AuditActor::of(&account, client_ip(parts, &state.config.trusted_proxies));
                Ok(ApiActor(account, who))
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

/// A urlencoded form body whose `csrf_token` field matched the CSRF
/// cookie. A missing, foreign or forged token is refused with 403 before the
/// body is read any further or the handler runs; `T` never sees the token.
/// A NUL in any field is refused next with 422 naming the field, on every
/// form alike (PostgreSQL cannot store one); other control characters are
/// the fields' own rules (`domain::text`).
pub struct CsrfForm<T>(pub T);

/// A form with no fields but the CSRF token (for buttons).
#[derive(Debug, Deserialize)]
pub struct NoFields {}

impl<T> FromRequest<AppState> for CsrfForm<T>
where
    T: DeserializeOwned + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let token = CsrfToken::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(page_error(&Error::UnsupportedMediaType(
                "forms must be sent as application/x-www-form-urlencoded".into(),
            )));
        }
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|e| {
                page_error(&if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Error::PayloadTooLarge("the form is larger than the server reads".into())
                } else {
                    Error::BadRequest(e.body_text())
                })
            })?;
        let presented = url::form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "csrf_token")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if presented.is_empty() || token.verify(&presented).is_err() {
            return Err(page_error(&Error::Forbidden(
                "this form has expired or did not come from Rollway; reload the page and try again"
                    .into(),
            )));
        }
        if let Some((name, _)) = url::form_urlencoded::parse(&bytes)
            .find(|(name, value)| name.contains('\0') || value.contains('\0'))
        {
            let name = name.replace('\0', "\\0");
            return Err(page_error(&Error::validation(
                name.clone(),
                format!("the field '{name}' must not contain NUL characters"),
            )));
        }
        let req = Request::from_parts(parts, Body::from(bytes));
        match Form::<T>::from_request(req, state).await {
            Ok(Form(form)) => Ok(CsrfForm(form)),
            Err(rejection) => Err(page_error(&Error::Validation {
                field: None,
                message: format!("the form could not be read: {}", rejection.body_text()),
            })),
        }
    }
}

impl FromRef<AppState> for axum_csrf::CsrfConfig {
    fn from_ref(state: &AppState) -> Self {
        state.csrf.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_client_is_what_the_trusted_proxies_saw_never_what_it_wrote() {
        let peer = ip("10.0.0.2");
        let hops = |n| TrustedProxies::Hops(n);
        // One proxy: the rightmost entry is what it saw; a forged entry to
        // its left changes nothing.
        assert_eq!(
            forwarded_client(peer, &["203.0.113.9"], &hops(1)),
            ip("203.0.113.9")
        );
        assert_eq!(
            forwarded_client(peer, &["1.2.3.4", "203.0.113.9"], &hops(1)),
            ip("203.0.113.9")
        );
        assert_eq!(
            forwarded_client(peer, &["1.2.3.4", "203.0.113.9", "10.0.0.1"], &hops(2)),
            ip("203.0.113.9")
        );
        assert_eq!(forwarded_client(peer, &[], &hops(1)), peer);
        assert_eq!(forwarded_client(peer, &["garbage"], &hops(1)), peer);
        assert_eq!(
            forwarded_client(peer, &["[2001:db8::1]:443"], &hops(1)),
            ip("2001:db8::1")
        );
        assert_eq!(
            forwarded_client(peer, &["203.0.113.9:5555"], &hops(1)),
            ip("203.0.113.9")
        );
        // Networks: skip trusted proxies from the right; a peer that is not
        // a proxy is the client whatever it sends.
        let nets = TrustedProxies::parse("10.0.0.0/8").unwrap();
        assert_eq!(
            forwarded_client(peer, &["1.2.3.4", "203.0.113.9", "10.0.0.7"], &nets),
            ip("203.0.113.9")
        );
        assert_eq!(
            forwarded_client(ip("198.51.100.1"), &["1.2.3.4"], &nets),
            ip("198.51.100.1")
        );
        assert_eq!(
            forwarded_client(peer, &["10.0.0.9", "10.0.0.8"], &nets),
            ip("10.0.0.9")
        );
        assert_eq!(
            forwarded_client(peer, &["1.2.3.4", "bad", "10.0.0.8"], &nets),
            ip("10.0.0.8")
        );
        assert_eq!(
            forwarded_client(peer, &["1.2.3.4"], &TrustedProxies::None),
            peer
        );
    }
}
