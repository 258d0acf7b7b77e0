//! Login and logout.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_csrf::CsrfToken;
use axum_extra::extract::cookie::{Cookie, SameSite};
use serde::Deserialize;

use super::{Layout, Notice, PageCtx, PageRoutes, page_error, redirect_with};
use crate::app::AppState;
use crate::auth::extract::{client_ip, session_cookie_name};
use crate::auth::{CsrfForm, NoFields, PageActor, password};
use crate::db::{accounts, sessions};
use crate::error::Error;

pub fn routes() -> PageRoutes {
    PageRoutes::new()
        .get("/", home)
        .get("/login", show_login)
        .post("/login", log_in)
        .post("/logout", log_out)
}

/// The start page is the service tree, for now.
async fn home(_ctx: PageCtx) -> Redirect {
    Redirect::to("/tree")
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    username: String,
    next: String,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Only local paths are followed after login, never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/tree".to_string(),
    }
}

fn render_login(
    csrf: CsrfToken,
    status: StatusCode,
    username: String,
    next: String,
    notice: Option<Notice>,
) -> Response {
    let page = LoginPage {
        layout: Layout {
            title: "Log in".into(),
            section: "login",
            user: None,
            csrf: csrf.authenticity_token().unwrap_or_default(),
            notice,
        },
        username,
        next,
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
    render_login(csrf, StatusCode::OK, String::new(), next, None)
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
    let ip = client_ip(&parts, state.config.trust_forwarded_for);
    if let Err(wait) = state.login_limiter.check(&username, ip) {
        let secs = wait.as_secs().max(1);
        let mut response = render_login(
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
                csrf,
                StatusCode::UNAUTHORIZED,
                username,
                next,
                Some(Notice::error(LOGIN_REFUSED)),
            );
        }
    };
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
    let cookie = Cookie::build((session_cookie_name(secure), token))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .build();
    let mut response = Redirect::to(&next).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// Ends the session on the server and clears the cookie.
async fn log_out(ctx: PageCtx, CsrfForm(_form): CsrfForm<NoFields>) -> Response {
    if let Err(e) = sessions::delete(&ctx.state.db.pool, ctx.actor.session_id).await {
        return page_error(&e);
    }
    let secure = ctx.state.config.secure_cookies();
    let clear = Cookie::build((session_cookie_name(secure), ""))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(time::Duration::ZERO)
        .build();
    let mut response = redirect_with("/login", Notice::success("You have logged out."));
    if let Ok(value) = HeaderValue::from_str(&clear.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}
