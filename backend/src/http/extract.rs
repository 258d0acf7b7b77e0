//! The page extractors:
//!
//! - [`PageActor`]: a browser session (cookie). Missing → redirect to login.
//! - [`CsrfForm`]: a urlencoded form whose CSRF token was checked; every
//!   state-changing page route reads its body through it.

use std::net::IpAddr;

use axum::body::{Body, Bytes};
use axum::extract::{Form, FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_csrf::CsrfToken;
use axum_extra::extract::CookieJar;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::page_error;
use crate::app::AppState;
use crate::auth::client::{SiteCookie, client_ip};
use crate::db::accounts::Account;
use crate::db::audit::AuditActor;
use crate::db::sessions;
use crate::error::Error;

/// A signed-in person, from the session cookie.
#[derive(Clone)]
pub struct PageActor {
    pub account: Account,
    pub session_id: i64,
    pub ip: IpAddr,
    /// The inbox version read with the session (`db::sessions`).
    pub inbox_version: i64,
    /// The dashboard's version, read with the session.
    pub board_version: i64,
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
        let Some(cookie) = jar.get(SiteCookie::Session.name(state.config.secure_cookies())) else {
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
            inbox_version: found.inbox_version,
            board_version: found.board_version,
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
