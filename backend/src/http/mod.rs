//! Server-rendered pages (askama). Pages work without JavaScript; htmx only
//! enhances them. Every state-changing form goes through [`CsrfForm`];
//! buttons are shown from the same [`Policy::may`] call the POST handler
//! makes.
//!
//! [`CsrfForm`]: extract::CsrfForm
//! [`Policy::may`]: crate::auth::Policy::may

mod accounts;
mod apps;
pub mod extract;
pub use extract::{CsrfForm, NoFields, PageActor};
mod assets;
mod audit;
mod canary;
mod changes;
mod dashboard;
mod freezes;
mod health;
mod line_stops;
mod moments;
mod notifications;
mod once;
pub use health::metrics_routes;
pub use moments::{Moment, ago, duration, format_date, format_time, parse_rfc3339};
mod pods;
mod registry;
mod release_items;
mod session;
mod settings;
mod sso;
mod stages;
mod tree;
mod verification;
mod work_orders;

use askama::Template;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_csrf::CsrfToken;
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};

use crate::app::AppState;
use crate::auth::client::SiteCookie;
use crate::auth::{Action, OnNode};
use crate::error::{Error, Shown};

/// Every page route, listed as it is registered.
pub fn routes() -> PageRoutes {
    PageRoutes::new()
        .merge(session::routes())
        .merge(sso::routes())
        .merge(dashboard::routes())
        .merge(tree::routes())
        .merge(accounts::routes())
        .merge(assets::routes())
        .merge(audit::routes())
        .merge(registry::routes())
        .merge(apps::routes())
        .merge(freezes::routes())
        .merge(line_stops::routes())
        .merge(notifications::routes())
        .merge(settings::routes())
        .merge(release_items::routes())
        .merge(work_orders::routes())
        .merge(changes::routes())
        .merge(stages::routes())
        .merge(pods::routes())
        .merge(health::routes())
}

/// The pages' router.
pub fn router() -> Router<AppState> {
    routes().into_router()
}

/// Page routes as they are registered: the axum router, and the list of
/// (method, path) it serves, so the tests can hold every page route to a
/// row of the route × role tables (the API's routes are listed by its
/// OpenAPI document). Each `http` module builds its routes with it.
pub struct PageRoutes {
    router: Router<AppState>,
    listed: Vec<(Method, &'static str)>,
}

impl Default for PageRoutes {
    fn default() -> Self {
        Self::new()
    }
}

impl PageRoutes {
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            listed: Vec::new(),
        }
    }

    /// `GET path` (axum answers `HEAD` from it too).
    pub fn get<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::GET, path, axum::routing::get(handler))
    }

    /// `POST path`: state-changing routes, whose bodies go through
    /// `CsrfForm`.
    pub fn post<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::POST, path, axum::routing::post(handler))
    }

    fn add(
        mut self,
        method: Method,
        path: &'static str,
        route: axum::routing::MethodRouter<AppState>,
    ) -> Self {
        // axum merges the methods of one path registered twice.
        self.router = self.router.route(path, route);
        self.listed.push((method, path));
        self
    }

    pub fn merge(mut self, other: PageRoutes) -> Self {
        self.router = self.router.merge(other.router);
        self.listed.extend(other.listed);
        self
    }

    /// Every (method, path) registered, in registration order.
    pub fn listed(&self) -> &[(Method, &'static str)] {
        &self.listed
    }

    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}

/// A message shown at the top of the next page.
#[derive(Debug, Clone)]
pub struct Notice {
    /// `success`, `warning` (done, but look) or `error`.
    pub kind: &'static str,
    pub message: String,
    /// A link to follow up with: (href, text).
    pub link: Option<(String, String)>,
}

impl Notice {
    pub fn success(message: impl Into<String>) -> Self {
        Self {
            kind: "success",
            message: message.into(),
            link: None,
        }
    }
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            kind: "error",
            message: message.into(),
            link: None,
        }
    }
    pub fn warning(message: impl Into<String>) -> Self {
        Self {
            kind: "warning",
            message: message.into(),
            link: None,
        }
    }
    pub fn with_link(mut self, href: impl Into<String>, text: impl Into<String>) -> Self {
        self.link = Some((href.into(), text.into()));
        self
    }
    pub fn from_error(err: &impl Shown) -> Self {
        let err = err.shown();
        let err = err.as_ref();
        err.log_if_internal();
        Self::error(err.public_message())
    }
}

/// Sets cookie `name` of this site on `response`: HttpOnly, `Path=/`,
/// `SameSite=Lax`, and `Secure` when served over https (whose names carry
/// the `__Host-` prefix). `max_age`: how long it lasts (zero clears it);
/// `None` for the browser's session.
pub(crate) fn set_cookie(
    response: &mut Response,
    name: &'static str,
    secure: bool,
    value: String,
    max_age: Option<time::Duration>,
) {
    let mut cookie = Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .build();
    if let Some(age) = max_age {
        cookie.set_max_age(age);
    }
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// A notice waiting to be written as the flash cookie. Handlers that
/// redirect do not know how cookies are secured here; [`write_flash`] does.
#[derive(Clone)]
struct PendingFlash(Notice);

/// Turns a pending notice on a response into the flash cookie, with the
/// same `Secure`/`__Host-` treatment as the session cookie.
pub async fn write_flash(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut response: Response,
) -> Response {
    if let Some(PendingFlash(notice)) = response.extensions_mut().remove::<PendingFlash>() {
        let secure = state.config.secure_cookies();
        let name = SiteCookie::Flash.name(secure);
        set_cookie(&mut response, name, secure, encode_flash(&notice), None);
    }
    response
}

fn encode_flash(notice: &Notice) -> String {
    let raw = format!(
        "{}:{}",
        match notice.kind {
            "error" => 'e',
            "warning" => 'w',
            _ => 's',
        },
        notice.message
    );
    // Hex: no character a cookie layer may encode or decode on its way
    // (`+`, `%`, spaces), so the message comes back exactly.
    hex::encode(raw.as_bytes())
}

fn decode_flash(value: &str) -> Option<Notice> {
    let decoded = String::from_utf8(hex::decode(value).ok()?).ok()?;
    let (kind, message) = decoded.split_once(':')?;
    let message: String = message.chars().take(500).collect();
    match kind {
        "e" => Some(Notice::error(message)),
        "w" => Some(Notice::warning(message)),
        "s" => Some(Notice::success(message)),
        _ => None,
    }
}

/// The notice the previous request left, if any.
pub fn read_flash(jar: &CookieJar, secure: bool) -> Option<Notice> {
    jar.get(SiteCookie::Flash.name(secure))
        .and_then(|c| decode_flash(c.value()))
}

/// Expires `cookie` of this site on `response` (the flash once its notice
/// is shown, a secret once shown, a single sign-on once back).
pub(crate) fn clear_cookie(response: &mut Response, cookie: SiteCookie, secure: bool) {
    set_cookie(
        response,
        cookie.name(secure),
        secure,
        String::new(),
        Some(time::Duration::ZERO),
    );
}

/// 303 to `to`, carrying a notice for the page there (post/redirect/get).
pub fn redirect_with(to: &str, notice: Notice) -> Response {
    let mut response = Redirect::to(to).into_response();
    response.extensions_mut().insert(PendingFlash(notice));
    response
}

/// What the layout shows about the signed-in account.
pub struct NavUser {
    pub name: String,
    pub display_name: String,
    pub is_admin: bool,
    /// Work orders waiting for this person's approval.
    pub awaiting: i64,
}

/// The frame around every page.
pub struct Layout {
    pub title: String,
    pub section: &'static str,
    pub user: Option<NavUser>,
    pub csrf: String,
    pub notice: Option<Notice>,
    /// Served by `rollway demo`: its clusters are simulated.
    pub demo: bool,
}

impl Layout {
    /// The reader is an admin: admin pages may be linked.
    pub fn is_admin(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.is_admin)
    }
}

/// Everything a signed-in page handler needs: who, the CSRF token for its
/// forms, and the notice left by the previous request.
pub struct PageCtx {
    pub actor: PageActor,
    pub state: AppState,
    csrf: CsrfToken,
    flash: Option<Notice>,
    /// The sealed secret the previous request left for this page
    /// ([`once`]).
    once: Option<String>,
    awaiting: i64,
    scope: crate::db::tree::Scope,
}

impl FromRequestParts<AppState> for PageCtx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let actor = PageActor::from_request_parts(parts, state).await?;
        let csrf = CsrfToken::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let jar = CookieJar::from_headers(&parts.headers);
        let flash = read_flash(&jar, state.config.secure_cookies());
        let once = once::read(&jar, state.config.secure_cookies());
        let scope = state
            .policy
            .read_scope(&state.db, &actor.account)
            .await
            .map_err(|e| page_error(&e))?;
        let awaiting = state
            .policy
            .awaiting_count(&state.db, &actor.account, &scope, actor.inbox_version)
            .await
            .map_err(|e| page_error(&e))?;
        Ok(Self {
            actor,
            state: state.clone(),
            csrf,
            flash,
            once,
            awaiting,
            scope,
        })
    }
}

impl PageCtx {
    /// The signed-in person, for the audit log.
    pub fn who(&self) -> crate::db::audit::AuditActor {
        self.actor.who()
    }

    pub fn may(&self, action: Action, path: &str) -> bool {
        self.state.policy.may(&self.actor.account, action, path)
    }

    /// `found` if this person may view its node, else the 404 of a missing
    /// one ([`Policy::visible`](crate::auth::Policy::visible)).
    pub fn visible<T: OnNode, E: Into<Error>>(&self, found: Result<T, E>) -> Result<T, Error> {
        self.state.policy.visible(&self.actor.account, found)
    }

    /// What this person may read, for lists.
    pub fn read_scope(&self) -> &crate::db::tree::Scope {
        &self.scope
    }

    /// The layout for a page titled `title` in nav `section`; `notice`
    /// replaces the flash left by the previous request.
    pub fn layout(
        &self,
        title: impl Into<String>,
        section: &'static str,
        notice: Option<Notice>,
    ) -> Layout {
        let account = &self.actor.account;
        Layout {
            title: title.into(),
            section,
            user: Some(NavUser {
                name: account.name.clone(),
                display_name: account.display_name.clone(),
                is_admin: self.may(Action::ManageAccounts, "/"),
                awaiting: self.awaiting,
            }),
            csrf: self.csrf.authenticity_token().unwrap_or_default(),
            notice: notice.or_else(|| self.flash.clone()),
            demo: self.state.config.demo,
        }
    }

    /// The secret the form before handed to `page` (its path) to show
    /// once: the next render clears it.
    pub fn shown_once(&self, page: &str) -> Option<once::Shown> {
        once::open(self, self.once.as_deref()?, page)
    }

    /// Renders a page with `status`, refreshing the CSRF cookie and
    /// consuming the flash and any secret left to show once.
    pub fn render(&self, status: StatusCode, page: &impl Template) -> Response {
        let html = match page.render() {
            Ok(html) => html,
            Err(e) => {
                return page_error(&Error::Internal(
                    anyhow::Error::new(e).context("rendering a page"),
                ));
            }
        };
        let mut response = (status, self.csrf.clone(), Html(html)).into_response();
        let secure = self.state.config.secure_cookies();
        if self.flash.is_some() {
            clear_cookie(&mut response, SiteCookie::Flash, secure);
        }
        if self.once.is_some() {
            clear_cookie(&mut response, SiteCookie::Once, secure);
        }
        response
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    status: u16,
    heading: &'static str,
    message: String,
}

/// The status a page answers `err` with.
pub fn page_status(err: &impl Shown) -> StatusCode {
    let err = err.shown();
    StatusCode::from_u16(err.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A standalone error page for a failed request, for requests with no
/// signed-in person to show the navigation to.
pub fn page_error(err: &impl Shown) -> Response {
    let (status, page) = error_page(err, None);
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, page.message).into_response(),
    }
}

/// The error page for `err`, with `layout` (the navigation of a signed-in
/// person) or a bare one.
fn error_page(err: &impl Shown, layout: Option<Layout>) -> (StatusCode, ErrorPage) {
    let err = err.shown();
    let err = err.as_ref();
    err.log_if_internal();
    let status = page_status(err);
    let heading = match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
        s if s.is_server_error() => "Something went wrong",
        _ => "That did not work",
    };
    let layout = match layout {
        Some(layout) => Layout {
            title: heading.into(),
            notice: None,
            ..layout
        },
        None => Layout {
            title: heading.into(),
            section: "",
            user: None,
            csrf: String::new(),
            notice: None,
            demo: false,
        },
    };
    let page = ErrorPage {
        layout,
        status: status.as_u16(),
        heading,
        message: err.public_message(),
    };
    (status, page)
}

impl PageCtx {
    /// The error page for `err` with this person's navigation, so they can
    /// go on from it.
    pub fn error_page(&self, err: &impl Shown) -> Response {
        let (status, page) = error_page(err, Some(self.layout("", "", None)));
        self.render(status, &page)
    }
}

/// Unknown paths: JSON under `/api`, a page elsewhere (with the
/// navigation, for someone signed in).
pub async fn not_found(uri: axum::http::Uri, ctx: Result<PageCtx, Response>) -> Response {
    let err = Error::NotFound(format!("nothing at {}", uri.path()));
    match ctx {
        _ if uri.path().starts_with("/api/") => err.into_response(),
        Ok(ctx) => ctx.error_page(&err),
        Err(_) => page_error(&err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flash_survives_the_cookie_round_trip() {
        let n = Notice::error("Node 'a b' & <c> deleted; 100% of 1+1 %2B");
        let back = decode_flash(&encode_flash(&n)).unwrap();
        assert_eq!(back.kind, "error");
        assert_eq!(back.message, n.message);
        assert!(decode_flash("garbage").is_none());
        for kind in ["success", "warning", "error"] {
            let n = Notice {
                kind,
                ..Notice::success("done")
            };
            assert_eq!(decode_flash(&encode_flash(&n)).unwrap().kind, kind);
        }
    }
}
