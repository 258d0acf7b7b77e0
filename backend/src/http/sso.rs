//! Single sign-on's two pages: leaving for the provider and coming back
//! (`auth::oidc` has the rules). The sign-in's secrets ride in a cookie
//! sealed with the server's key, bound to this browser, for ten minutes and
//! one use.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum_csrf::CsrfToken;
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;

use super::session::{render_login, safe_next, start_session};
use super::{Notice, PageRoutes, clear_cookie, set_cookie};
use crate::app::AppState;
use crate::auth::client::{SiteCookie, client_ip};
use crate::auth::oidc::{Pending, SIGN_IN_LIFETIME, oauth_error};
use crate::db::oidc::{self, Outcome};
use crate::domain::text::shown;
use crate::error::Error;

pub fn routes() -> PageRoutes {
    PageRoutes::new()
        .get("/auth/oidc/start", start)
        .get("/auth/oidc/callback", callback)
}

/// What the sealed cookie is bound to, so no other sealed value fits.
const SEAL_PURPOSE: &str = "oidc-sign-in";

#[derive(Deserialize)]
struct StartQuery {
    next: Option<String>,
}

/// The login page again, saying why single sign-on did not work.
fn refused_page(state: &AppState, csrf: CsrfToken, next: String, e: &Error) -> Response {
    let status = e.status_code();
    if status == 500 {
        // Logged, and answered without its details.
        return super::page_error(e);
    }
    render_login(
        state,
        csrf,
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        String::new(),
        next,
        Some(Notice::error(e.to_string())),
    )
}

/// Leaves for the provider with a new sign-in's secrets.
async fn start(
    State(state): State<AppState>,
    csrf: CsrfToken,
    Query(query): Query<StartQuery>,
) -> Response {
    let Some(sso) = &state.oidc else {
        return super::page_error(&Error::NotFound("single sign-on is not set up here".into()));
    };
    let next = safe_next(query.next.as_deref());
    let (url, pending) = match sso.begin(next.clone()).await {
        Ok(begun) => begun,
        Err(e) => return refused_page(&state, csrf, next, &e),
    };
    let sealed = serde_json::to_string(&pending)
        .map_err(|e| e.to_string())
        .and_then(|json| state.sealer.seal(&json, SEAL_PURPOSE));
    let sealed = match sealed {
        Ok(s) => s,
        Err(e) => return super::page_error(&Error::Internal(anyhow::anyhow!(e))),
    };
    let secure = state.config.secure_cookies();
    let mut response = Redirect::to(url.as_str()).into_response();
    // Sent back on the provider's top-level redirect (`SameSite=Lax`).
    let lifetime = time::Duration::seconds(SIGN_IN_LIFETIME.as_secs() as i64);
    set_cookie(
        &mut response,
        SiteCookie::Sso.name(secure),
        secure,
        sealed,
        Some(lifetime),
    );
    response
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Back from the provider: checks the sign-in is this browser's, has the
/// provider's token verified, and signs the person in. The cookie goes
/// whatever happens.
async fn callback(
    State(state): State<AppState>,
    csrf: CsrfToken,
    Query(query): Query<CallbackQuery>,
    parts: Parts,
) -> Response {
    let jar = CookieJar::from_headers(&parts.headers);
    let secure = state.config.secure_cookies();
    let mut response = finish(&state, csrf, &jar, &parts, query).await;
    if jar.get(SiteCookie::Sso.name(secure)).is_some() {
        clear_cookie(&mut response, SiteCookie::Sso, secure);
    }
    response
}

async fn finish(
    state: &AppState,
    csrf: CsrfToken,
    jar: &CookieJar,
    parts: &Parts,
    query: CallbackQuery,
) -> Response {
    let Some(sso) = &state.oidc else {
        return super::page_error(&Error::NotFound("single sign-on is not set up here".into()));
    };
    let secure = state.config.secure_cookies();
    let pending = jar
        .get(SiteCookie::Sso.name(secure))
        .and_then(|c| state.sealer.open(c.value(), SEAL_PURPOSE).ok())
        .and_then(|json| serde_json::from_str::<Pending>(json.expose()).ok());
    let again = |why: &str| {
        Error::BadRequest(format!(
            "This sign-in {why}; start again with the button below."
        ))
    };
    let Some(pending) = pending else {
        let e = again("was not started in this browser, or was already used");
        return refused_page(state, csrf, "/".into(), &e);
    };
    let next = safe_next(Some(&pending.next));
    if pending.expired() {
        let e = again("took longer than ten minutes");
        return refused_page(state, csrf, next, &e);
    }
    if !query.state.as_deref().is_some_and(|s| pending.is_state(s)) {
        tracing::warn!("single sign-on refused: the state is not this browser's sign-in's");
        let e = again("does not match the one this browser started");
        return refused_page(state, csrf, next, &e);
    }
    if let Some(error) = &query.error {
        let e = Error::Unauthorized(format!(
            "The sign-in provider did not sign you in ({}).",
            oauth_error(error, query.error_description.as_deref())
        ));
        return refused_page(state, csrf, next, &e);
    }
    let Some(code) = query.code.as_deref().filter(|c| !c.is_empty()) else {
        let e = again("came back without a code from the provider");
        return refused_page(state, csrf, next, &e);
    };
    let person = match sso.finish(&pending, code).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "single sign-on refused");
            return refused_page(state, csrf, next, &e);
        }
    };
    let ip = client_ip(parts, &state.config.trusted_proxies).to_string();
    let account = match oidc::sign_in(&state.db, &person, &ip).await {
        Ok(Outcome::Account(account)) => account,
        Ok(Outcome::Refused(why)) => {
            tracing::warn!(subject = %shown(&person.subject), reason = %why, "single sign-on refused");
            return refused_page(state, csrf, next, &Error::Forbidden(why));
        }
        Err(e) => return refused_page(state, csrf, next, &e.into()),
    };
    start_session(state, &account, parts, &next).await
}
