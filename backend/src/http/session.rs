//! Login and logout.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_csrf::CsrfToken;
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use super::extract::{CsrfForm, NoFields, PageActor};
use super::{
    Layout, Notice, PageCtx, PageRoutes, clear_cookie, page_error, read_flash, redirect_with,
    set_cookie,
};
use crate::app::AppState;
use crate::auth::client::{SiteCookie, client_ip};
use crate::auth::password;
use crate::config::PasswordLogin;
use crate::db::accounts::{self, Account};
use crate::db::sessions;
use crate::error::Error;

pub fn routes() -> PageRoutes {
    PageRoutes::new()
        .get("/login", show_login)
        .post("/login", log_in)
        .post("/logout", log_out)
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    username: String,
    next: String,
    /// The single sign-on provider's name, when there is one.
    sso: Option<String>,
    /// Whether the password form is offered.
    password_form: bool,
    /// Whether only admins may use it.
    admins_only: bool,
    /// Whether the form shows open beside the sign-on button (after a
    /// password attempt).
    open_password: bool,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Only a path on this site is followed after login; anything else goes
/// to `/`. Browsers drop tabs and newlines from URLs and read `\\` as `/`,
/// so `/\t/evil.example` or `/\\evil.example` would leave the site: one
/// leading `/` (so no scheme), no `//`, no `\\`, no control or whitespace
/// characters, checked on the value and on it percent-decoded once more.
pub(super) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if is_local_path(n) => n.to_string(),
        _ => "/".to_string(),
    }
}

fn is_local_path(next: &str) -> bool {
    let plain = |p: &str| {
        p.starts_with('/')
            && !p.starts_with("//")
            && !p.contains('\\')
            && !p.chars().any(|c| c.is_control() || c.is_whitespace())
    };
    let decoded: String =
        url::form_urlencoded::parse(format!("n={}", next.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
    next.len() <= 2048 && plain(next) && plain(&decoded)
}

pub(super) fn render_login(
    state: &AppState,
    csrf: CsrfToken,
    status: StatusCode,
    username: String,
    next: String,
    notice: Option<Notice>,
) -> Response {
    let open_password = !username.is_empty();
    let page = LoginPage {
        layout: Layout {
            title: "Log in".into(),
            section: "login",
            user: None,
            csrf: csrf.authenticity_token().unwrap_or_default(),
            notice,
            demo: false,
        },
        username,
        next,
        sso: state.oidc.as_ref().map(|o| o.name().to_string()),
        password_form: state.config.password_login != PasswordLogin::Off,
        admins_only: state.config.password_login == PasswordLogin::Admins,
        open_password,
    };
    match page.render() {
        Ok(html) => (status, csrf, Html(html)).into_response(),
        Err(e) => page_error(&Error::Internal(e.into())),
    }
}

/// Shows the login form (or goes on when already signed in).
async fn show_login(
    State(state): State<AppState>,
    csrf: CsrfToken,
    Query(query): Query<NextQuery>,
    parts: Parts,
) -> Response {
    let next = safe_next(query.next.as_deref());
    if let Ok(Some(_)) = PageActor::from_parts(&parts, &state).await {
        return Redirect::to(&next).into_response();
    }
    // "You have logged out." and the like land here.
    let secure = state.config.secure_cookies();
    let flash = read_flash(&CookieJar::from_headers(&parts.headers), secure);
    let shown = flash.is_some();
    let mut response = render_login(&state, csrf, StatusCode::OK, String::new(), next, flash);
    if shown {
        clear_cookie(&mut response, SiteCookie::Flash, secure);
    }
    response
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

/// The same words for a wrong name, a wrong password and a disabled account.
const LOGIN_REFUSED: &str = "Wrong user name or password.";

/// Checks the password and starts a session.
async fn log_in(
    State(state): State<AppState>,
    csrf: CsrfToken,
    parts: Parts,
    CsrfForm(form): CsrfForm<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let username = form.username.trim().to_string();
    if state.config.password_login == PasswordLogin::Off {
        return password_refused(&state, csrf, String::new(), next, "Password login is off");
    }
    let ip = client_ip(&parts, &state.config.trusted_proxies);
    if let Err(wait) = state.login_limiter.check(&username, ip) {
        let secs = wait.as_secs().max(1);
        let mut response = render_login(
            &state,
            csrf,
            StatusCode::TOO_MANY_REQUESTS,
            username,
            next,
            Some(Notice::error(format!(
                "Too many login attempts. Try again in {secs} seconds."
            ))),
        );
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    }
    let found = match accounts::find_for_login(&state.db.pool, &username).await {
        Ok(found) => found,
        Err(e) => return page_error(&e),
    };
    // Verify against a dummy hash for unknown names so both cost the same.
    let (account, hash) = match found {
        Some((account, hash)) => (Some(account), hash),
        None => (None, password::dummy_hash().to_string()),
    };
    let password_ok = password::verify_blocking(form.password, hash).await;
    let account = match account {
        Some(a) if password_ok && !a.is_disabled() => a,
        _ => {
            tracing::info!(%ip, "login refused");
            return render_login(
                &state,
                csrf,
                StatusCode::UNAUTHORIZED,
                username,
                next,
                Some(Notice::error(LOGIN_REFUSED)),
            );
        }
    };
    if state.config.password_login == PasswordLogin::Admins && !account.is_admin {
        tracing::info!(account = %account.name, %ip, "password login refused: only admins may use one");
        return password_refused(
            &state,
            csrf,
            username,
            next,
            "Only administrators log in with a password here",
        );
    }
    start_session(&state, &account, &parts, &next).await
}

/// The login page refusing a password login (403), pointing at single
/// sign-on.
fn password_refused(
    state: &AppState,
    csrf: CsrfToken,
    username: String,
    next: String,
    why: &str,
) -> Response {
    let provider = state
        .oidc
        .as_ref()
        .map(|o| o.name())
        .unwrap_or("single sign-on");
    render_login(
        state,
        csrf,
        StatusCode::FORBIDDEN,
        username,
        next,
        Some(Notice::error(format!("{why}: sign in with {provider}."))),
    )
}

/// Starts a session for `account` and goes on to `next` (a checked local
/// path): the end of every way of logging in.
pub(super) async fn start_session(
    state: &AppState,
    account: &Account,
    parts: &Parts,
    next: &str,
) -> Response {
    let ip = client_ip(parts, &state.config.trusted_proxies);
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let idle_ms = i64::from(state.config.session_idle_hours) * 3600 * 1000;
    let token =
        match sessions::create(&state.db, account.id, idle_ms, &ip.to_string(), user_agent).await {
            Ok(t) => t,
            Err(e) => return page_error(&e),
        };
    tracing::info!(account = %account.name, %ip, "logged in");
    let secure = state.config.secure_cookies();
    let mut response = Redirect::to(next).into_response();
    set_cookie(
        &mut response,
        SiteCookie::Session.name(secure),
        secure,
        token,
        None,
    );
    response
}

/// Ends the session on the server and clears the cookie.
async fn log_out(ctx: PageCtx, CsrfForm(_form): CsrfForm<NoFields>) -> Response {
    if let Err(e) = sessions::delete(&ctx.state.db.pool, ctx.actor.session_id).await {
        return page_error(&e);
    }
    let secure = ctx.state.config.secure_cookies();
    let mut response = redirect_with("/login", Notice::success("You have logged out."));
    clear_cookie(&mut response, SiteCookie::Session, secure);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        for ok in [
            "/",
            "/tree",
            "/work-orders?state=approved&node=%2Facme",
            "/work-orders/7#timeline",
            "/x?u=https://a.example",
        ] {
            assert_eq!(safe_next(Some(ok)), ok, "{ok}");
        }
        // The classic open-redirect bypasses, as the query string decodes them.
        for bad in [
            "//evil.example",
            "///evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "/\r\nSet-Cookie: x=y",
            "/ /evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "\\/evil.example",
            "/\\/evil.example",
            "https://evil.example",
            "http:/evil.example",
            "javascript:alert(1)",
            "evil.example",
            "/%2F/evil.example",
            "/%2f%2fevil.example",
            "/%5Cevil.example",
            "/%09/evil.example",
            "/%0D%0ALocation:%20//evil.example",
            "/\u{0}",
            "/\u{2028}evil",
            "/\u{3000}/evil.example",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
