//! The route × role tables: every route the server serves — API and pages,
//! reads and writes — called as admin, owner, engineer, viewer, outsider
//! and anonymous, is let through or refused as its row says. The routes
//! come from the code (the API's OpenAPI document, the pages'
//! `rollway::http::routes()`), so a route added without a row fails
//! `every_route_has_a_row_in_the_route_tables`.
//!
//! The organisation (see `Org`): olivia owns /acme/pay, eric is engineer
//! and vera viewer there, otto owns the look-alike sibling /acme/payroll.
//! Reads are scoped like writes: otto may not see /acme/pay, so its
//! objects answer him exactly as missing ones would (404, or 422 for an id
//! named in a body), and lists leave them out.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{ADMIN_PASSWORD, Api, Browser, Org, TestApp, USER_PASSWORD};
use crate::db_test;
use crate::releases::{Release, item_body, order_body};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Who {
    Admin,
    Owner,
    Engineer,
    Viewer,
    Outsider,
    Anonymous,
}

const EVERYONE: [Who; 6] = [
    Who::Admin,
    Who::Owner,
    Who::Engineer,
    Who::Viewer,
    Who::Outsider,
    Who::Anonymous,
];
const ADMINS: &[Who] = &[Who::Admin];
const OWNERS: &[Who] = &[Who::Admin, Who::Owner];
/// Engineers and owners of the node, and admins.
const FILERS: &[Who] = &[Who::Admin, Who::Owner, Who::Engineer];
/// The effective approvers: owners of the nearest node with owners (admins
/// are not approvers by being admins).
const APPROVERS: &[Who] = &[Who::Owner];
/// Everyone with a role on /acme/pay, and admins.
const VIEWERS: &[Who] = &[Who::Admin, Who::Owner, Who::Engineer, Who::Viewer];
const SIGNED_IN: &[Who] = &[
    Who::Admin,
    Who::Owner,
    Who::Engineer,
    Who::Viewer,
    Who::Outsider,
];

pub(crate) fn user_of(who: Who) -> Option<(&'static str, &'static str)> {
    match who {
        Who::Admin => Some(("admin", ADMIN_PASSWORD)),
        Who::Owner => Some(("olivia", USER_PASSWORD)),
        Who::Engineer => Some(("eric", USER_PASSWORD)),
        Who::Viewer => Some(("vera", USER_PASSWORD)),
        Who::Outsider => Some(("otto", USER_PASSWORD)),
        Who::Anonymous => None,
    }
}

/// What the outsider gets where a row refuses him. He may not see
/// /acme/pay, so its objects answer him as missing ones do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hidden {
    /// Global things (accounts, registry, settings): 403, like everyone
    /// refused.
    Forbidden,
    /// An object on /acme/pay named in the path: 404.
    NotFound,
    /// An object on /acme/pay named in the body: 422, like a missing id.
    Invalid,
}

impl Hidden {
    fn status(self) -> StatusCode {
        match self {
            Hidden::Forbidden => StatusCode::FORBIDDEN,
            Hidden::NotFound => StatusCode::NOT_FOUND,
            Hidden::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

/// One row: a route (`METHOD /path`, with a note in parentheses when one
/// route has several rows), who is let through, what the outsider gets
/// when refused, and for lists, who finds the /acme/pay fixture in them.
/// Signed-in people refused who may see the object get 403; anonymous
/// callers 401 (API) or the login page (pages).
pub(crate) struct Row {
    pub(crate) route: &'static str,
    allowed: &'static [Who],
    hidden: Hidden,
    sees: Option<&'static [Who]>,
}

const fn row(route: &'static str, allowed: &'static [Who], hidden: Hidden) -> Row {
    Row {
        route,
        allowed,
        hidden,
        sees: None,
    }
}

/// A list everyone signed in may read; the fixture on /acme/pay is in it
/// for `sees` only.
const fn list(route: &'static str, sees: &'static [Who]) -> Row {
    Row {
        route,
        allowed: SIGNED_IN,
        hidden: Hidden::Forbidden,
        sees: Some(sees),
    }
}

use Hidden::{Forbidden, Invalid, NotFound};

/// Routes anyone may call, signed in or not, left out of the tables.
const PUBLIC: &[(&str, &str)] = &[
    ("GET /login", "the login form: everyone must reach it"),
    (
        "POST /login",
        "signing in, before anyone is known (tests/integration/auth.rs; CSRF below)",
    ),
    (
        "GET /auth/oidc/start",
        "leaving for the single sign-on provider, before anyone is known (tests/integration/sso.rs)",
    ),
    (
        "GET /auth/oidc/callback",
        "back from the provider, before anyone is known; only the browser that started it finishes it (tests/integration/sso.rs)",
    ),
    (
        "GET /static/{*path}",
        "stylesheets and scripts, the same for everyone",
    ),
    ("GET /healthz", "liveness probe: anyone gets 200"),
    ("GET /readyz", "readiness probe: anyone gets 200"),
    (
        "GET /metrics",
        "request counts for the scraper: anyone gets 200 (or only on --metrics-listen)",
    ),
    (
        "GET /api/v1/openapi.json",
        "the API's description: anyone gets 200",
    ),
];

/// The public routes that answer 200 to anyone with no setup: each
/// `PUBLIC` GET but the static files (whose paths are real files).
#[tokio::test]
async fn public_routes_answer_anyone() {
    let app = TestApp::start(crate::common::Backend::Sqlite).await;
    for (route, _) in PUBLIC {
        let Some(path) = route.strip_prefix("GET ") else {
            continue;
        };
        // Single sign-on's pages answer 404 without a provider; sso.rs
        // tests them with one.
        if path.contains('{') || path.starts_with("/auth/oidc/") {
            continue;
        }
        let resp = reqwest::get(app.url(path)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{route}");
    }
}

pub(crate) const API_ROUTES: &[Row] = &[
    row("POST /api/v1/nodes (child of /acme/pay)", OWNERS, Invalid),
    row("POST /api/v1/nodes (root)", ADMINS, Forbidden),
    row("PATCH /api/v1/nodes/{id}", OWNERS, NotFound),
    row("DELETE /api/v1/nodes/{id}", OWNERS, NotFound),
    row("POST /api/v1/nodes/{id}/members", OWNERS, NotFound),
    row(
        "DELETE /api/v1/nodes/{id}/members/{account_id}",
        OWNERS,
        NotFound,
    ),
    row("POST /api/v1/users", ADMINS, Forbidden),
    row("PATCH /api/v1/users/{id}", ADMINS, Forbidden),
    row("POST /api/v1/users/{id}/reset-password", ADMINS, Forbidden),
    row("POST /api/v1/service-accounts", ADMINS, Forbidden),
    row("PATCH /api/v1/service-accounts/{id}", ADMINS, Forbidden),
    row(
        "POST /api/v1/service-accounts/{id}/tokens",
        ADMINS,
        Forbidden,
    ),
    row("DELETE /api/v1/tokens/{id}", ADMINS, Forbidden),
    row("POST /api/v1/id-token-bindings", ADMINS, Forbidden),
    row("DELETE /api/v1/id-token-bindings/{id}", ADMINS, Forbidden),
    row("POST /api/v1/clusters", ADMINS, Forbidden),
    row("PATCH /api/v1/clusters/{id}", ADMINS, Forbidden),
    row("DELETE /api/v1/clusters/{id}", ADMINS, Forbidden),
    row("POST /api/v1/apps", ADMINS, Forbidden),
    row("PATCH /api/v1/apps/{id}", ADMINS, Forbidden),
    row("DELETE /api/v1/apps/{id}", ADMINS, Forbidden),
    row("PUT /api/v1/settings/gitlab", ADMINS, Forbidden),
    row("POST /api/v1/release-items", OWNERS, Invalid),
    row("PUT /api/v1/release-items/{id}", OWNERS, NotFound),
    row("DELETE /api/v1/release-items/{id}", OWNERS, NotFound),
    row("POST /api/v1/work-orders", FILERS, Invalid),
    row("POST /api/v1/work-orders/{id}/approve", APPROVERS, NotFound),
    row("POST /api/v1/work-orders/{id}/reject", APPROVERS, NotFound),
    row("POST /api/v1/work-orders/{id}/close", FILERS, NotFound),
    row(
        "POST /api/v1/work-orders/{id}/stages/{n}/deploy",
        FILERS,
        NotFound,
    ),
    row(
        "POST /api/v1/work-orders/{id}/stages/{n}/rollback",
        FILERS,
        NotFound,
    ),
    row(
        "POST /api/v1/work-orders/{id}/stages/{n}/cancel",
        OWNERS,
        NotFound,
    ),
    row(
        "POST /api/v1/work-orders/{id}/stages/{n}/approve-step",
        OWNERS,
        NotFound,
    ),
    row(
        "POST /api/v1/work-orders/{id}/stages/{n}/sign-off",
        OWNERS,
        NotFound,
    ),
    row(
        "POST /api/v1/work-orders/{id}/stages/{n}/continue",
        OWNERS,
        NotFound,
    ),
    row("POST /api/v1/apps/{id}/deployments", FILERS, NotFound),
    row("DELETE /api/v1/apps/{id}/lanes/{lane}", FILERS, NotFound),
    row("POST /api/v1/nodes/{id}/freeze-windows", OWNERS, NotFound),
    row("DELETE /api/v1/freeze-windows/{id}", OWNERS, NotFound),
    row(
        "POST /api/v1/work-orders/{id}/freeze-override",
        OWNERS,
        NotFound,
    ),
    row("POST /api/v1/nodes/{id}/line-stops", OWNERS, NotFound),
    row("POST /api/v1/line-stops/{id}/lift", OWNERS, NotFound),
    row(
        "POST /api/v1/nodes/{id}/notification-destinations",
        OWNERS,
        NotFound,
    ),
    row(
        "DELETE /api/v1/notification-destinations/{id}",
        OWNERS,
        NotFound,
    ),
    row(
        "POST /api/v1/notification-destinations/{id}/enable",
        OWNERS,
        NotFound,
    ),
    row(
        "POST /api/v1/notification-deliveries/{id}/send-again",
        OWNERS,
        NotFound,
    ),
    row("POST /api/v1/clusters/{id}/test", ADMINS, Forbidden),
    row("PUT /api/v1/clusters/{id}/prometheus", ADMINS, Forbidden),
    row("DELETE /api/v1/clusters/{id}/prometheus", ADMINS, Forbidden),
    row(
        "POST /api/v1/clusters/{id}/prometheus/test",
        ADMINS,
        Forbidden,
    ),
    // Reads.
    row("GET /api/v1/me", SIGNED_IN, Forbidden),
    list("GET /api/v1/nodes", VIEWERS),
    row("GET /api/v1/nodes/{id}", VIEWERS, NotFound),
    row("GET /api/v1/nodes/{id}/members", VIEWERS, NotFound),
    row("GET /api/v1/users", ADMINS, Forbidden),
    row("GET /api/v1/users/{id}", ADMINS, Forbidden),
    row("GET /api/v1/service-accounts", ADMINS, Forbidden),
    row("GET /api/v1/service-accounts/{id}", ADMINS, Forbidden),
    row(
        "GET /api/v1/service-accounts/{id}/tokens",
        ADMINS,
        Forbidden,
    ),
    row("GET /api/v1/id-token-bindings", ADMINS, Forbidden),
    row("GET /api/v1/audit", ADMINS, Forbidden),
    row("GET /api/v1/settings/gitlab", ADMINS, Forbidden),
    row("GET /api/v1/clusters", ADMINS, Forbidden),
    row("GET /api/v1/clusters/{id}", ADMINS, Forbidden),
    list("GET /api/v1/apps", VIEWERS),
    row("GET /api/v1/apps/{id}", VIEWERS, NotFound),
    row("GET /api/v1/apps/{id}/deployments", VIEWERS, NotFound),
    row("GET /api/v1/apps/{id}/lanes", VIEWERS, NotFound),
    row("GET /api/v1/deployments/{id}", VIEWERS, NotFound),
    row("GET /api/v1/nodes/{id}/freeze-windows", VIEWERS, NotFound),
    list("GET /api/v1/freeze-windows", VIEWERS),
    list("GET /api/v1/freeze-windows/calendar", VIEWERS),
    row("GET /api/v1/freeze-windows/{id}", VIEWERS, NotFound),
    list("GET /api/v1/line-stops", VIEWERS),
    row("GET /api/v1/line-stops/{id}", VIEWERS, NotFound),
    row(
        "GET /api/v1/nodes/{id}/notification-destinations",
        OWNERS,
        NotFound,
    ),
    list("GET /api/v1/notification-destinations", OWNERS),
    row(
        "GET /api/v1/notification-destinations/{id}",
        OWNERS,
        NotFound,
    ),
    row(
        "GET /api/v1/notification-destinations/{id}/deliveries",
        OWNERS,
        NotFound,
    ),
    list("GET /api/v1/release-items", VIEWERS),
    row("GET /api/v1/release-items/{id}", VIEWERS, NotFound),
    row("GET /api/v1/release-items/{id}/status", VIEWERS, NotFound),
    row("GET /api/v1/release-items/{id}/versions", VIEWERS, NotFound),
    list("GET /api/v1/work-orders", VIEWERS),
    list("GET /api/v1/work-orders (awaiting_me)", APPROVERS),
    row("GET /api/v1/work-orders/{id}", VIEWERS, NotFound),
];

pub(crate) const PAGE_ROUTES: &[Row] = &[
    row("POST /tree/nodes (child of /acme/pay)", OWNERS, NotFound),
    row("POST /tree/nodes (root)", ADMINS, Forbidden),
    row("POST /tree/nodes/{id}/title", OWNERS, NotFound),
    row("POST /tree/nodes/{id}/delete", OWNERS, NotFound),
    row("POST /tree/nodes/{id}/members", OWNERS, NotFound),
    row(
        "POST /tree/nodes/{id}/members/{account_id}/delete",
        OWNERS,
        NotFound,
    ),
    row("POST /admin/users", ADMINS, Forbidden),
    row("POST /admin/users/{id}/disable", ADMINS, Forbidden),
    row("POST /admin/users/{id}/enable", ADMINS, Forbidden),
    row("POST /admin/users/{id}/reset-password", ADMINS, Forbidden),
    row("POST /admin/service-accounts", ADMINS, Forbidden),
    row(
        "POST /admin/service-accounts/{id}/disable",
        ADMINS,
        Forbidden,
    ),
    row(
        "POST /admin/service-accounts/{id}/enable",
        ADMINS,
        Forbidden,
    ),
    row(
        "POST /admin/service-accounts/{id}/tokens",
        ADMINS,
        Forbidden,
    ),
    row("POST /admin/tokens/{id}/revoke", ADMINS, Forbidden),
    row(
        "POST /admin/service-accounts/{id}/id-token-bindings",
        ADMINS,
        Forbidden,
    ),
    row(
        "POST /admin/id-token-bindings/{id}/delete",
        ADMINS,
        Forbidden,
    ),
    row("POST /admin/clusters", ADMINS, Forbidden),
    row("POST /admin/clusters/{id}/update", ADMINS, Forbidden),
    row("POST /admin/clusters/{id}/delete", ADMINS, Forbidden),
    row("POST /admin/apps", ADMINS, Forbidden),
    row("POST /admin/apps/{id}/delete", ADMINS, Forbidden),
    row("POST /apps/{id}/lanes/{lane}/delete", FILERS, NotFound),
    row("POST /tree/nodes/{id}/freeze-windows", OWNERS, NotFound),
    row("POST /freeze-windows/{id}/delete", OWNERS, NotFound),
    row("POST /work-orders/{id}/freeze-override", OWNERS, NotFound),
    row("POST /tree/nodes/{id}/line-stops", OWNERS, NotFound),
    row("POST /line-stops/{id}/lift", OWNERS, NotFound),
    row(
        "POST /tree/nodes/{id}/notification-destinations",
        OWNERS,
        NotFound,
    ),
    row(
        "POST /notification-destinations/{id}/delete",
        OWNERS,
        NotFound,
    ),
    row(
        "POST /notification-destinations/{id}/enable",
        OWNERS,
        NotFound,
    ),
    row(
        "POST /notification-deliveries/{id}/send-again",
        OWNERS,
        NotFound,
    ),
    row("POST /admin/settings", ADMINS, Forbidden),
    row("POST /release-items", OWNERS, NotFound),
    row("POST /release-items/{id}", OWNERS, NotFound),
    row("POST /release-items/{id}/delete", OWNERS, NotFound),
    row("POST /work-orders", FILERS, Invalid),
    row("POST /work-orders/{id}/approve", APPROVERS, NotFound),
    row("POST /work-orders/{id}/reject", APPROVERS, NotFound),
    row("POST /work-orders/{id}/close", FILERS, NotFound),
    row("GET /work-orders/{id}/stages/{n}/deploy", FILERS, NotFound),
    row("POST /work-orders/{id}/stages/{n}/deploy", FILERS, NotFound),
    row(
        "POST /work-orders/{id}/stages/{n}/rollback",
        FILERS,
        NotFound,
    ),
    row("POST /work-orders/{id}/stages/{n}/cancel", OWNERS, NotFound),
    row(
        "POST /work-orders/{id}/stages/{n}/approve-step",
        OWNERS,
        NotFound,
    ),
    row(
        "POST /work-orders/{id}/stages/{n}/sign-off",
        OWNERS,
        NotFound,
    ),
    row(
        "POST /work-orders/{id}/stages/{n}/continue",
        OWNERS,
        NotFound,
    ),
    row("POST /admin/clusters/{id}/test", ADMINS, Forbidden),
    row("POST /admin/clusters/{id}/prometheus", ADMINS, Forbidden),
    row(
        "POST /admin/clusters/{id}/prometheus/test",
        ADMINS,
        Forbidden,
    ),
    row("POST /account/password", SIGNED_IN, Forbidden),
    row("POST /account/tokens", SIGNED_IN, Forbidden),
    // Only one's own token: the fixture's is a service account's.
    row("POST /account/tokens/{id}/revoke", &[], NotFound),
    row("POST /logout", SIGNED_IN, Forbidden),
    // Reads.
    row("GET /", SIGNED_IN, Forbidden),
    list("GET /tree", VIEWERS),
    row("GET /tree/nodes/{id}", VIEWERS, NotFound),
    row("GET /admin/users", ADMINS, Forbidden),
    row("GET /admin/service-accounts", ADMINS, Forbidden),
    row("GET /admin/service-accounts/{id}", ADMINS, Forbidden),
    row("GET /admin/clusters", ADMINS, Forbidden),
    row("GET /admin/clusters/{id}", ADMINS, Forbidden),
    row("GET /admin/apps", ADMINS, Forbidden),
    row("GET /apps/{id}", VIEWERS, NotFound),
    list("GET /freezes", VIEWERS),
    list("GET /notifications", OWNERS),
    row("GET /admin/audit", ADMINS, Forbidden),
    row("GET /admin/settings", ADMINS, Forbidden),
    row("GET /account", SIGNED_IN, Forbidden),
    list("GET /release-items", VIEWERS),
    row("GET /release-items/new", OWNERS, NotFound),
    row("GET /release-items/{id}", VIEWERS, NotFound),
    list("GET /work-orders", VIEWERS),
    list("GET /work-orders/filter-options", VIEWERS),
    list("GET /work-orders/new", FILERS),
    list("GET /work-orders/new/versions", FILERS),
    row("GET /work-orders/{id}", VIEWERS, NotFound),
    row("GET /work-orders/{id}/pods", VIEWERS, NotFound),
    row("GET /work-orders/{id}/changes", VIEWERS, NotFound),
    row(
        "GET /work-orders/{id}/stages/{n}/pods/{pod}/logs",
        VIEWERS,
        NotFound,
    ),
    row(
        "GET /work-orders/{id}/stages/{n}/pods/{pod}/logs/stream",
        VIEWERS,
        NotFound,
    ),
    list("GET /approvals", APPROVERS),
];

/// `METHOD /path` of a row, without its note.
fn route_of(row: &str) -> &str {
    row.split(" (").next().unwrap_or(row)
}

/// Every route the server serves, as `METHOD /path`, read from the code:
/// the API (its OpenAPI document's operations, every one registered through
/// utoipa-axum, and the document itself) from `rollway::api::routes()`, the
/// pages, health and metrics from `rollway::http`.
fn served_routes() -> BTreeSet<String> {
    let mut served = BTreeSet::new();
    for (method, path) in rollway::api::routes().listed {
        served.insert(format!("{method} {path}"));
    }
    for (method, path) in rollway::http::routes().listed() {
        served.insert(format!("{method} {path}"));
    }
    let handle = axum_prometheus::metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    for (method, path) in rollway::http::metrics_routes(handle).listed() {
        served.insert(format!("{method} {path}"));
    }
    served
}

#[test]
fn every_route_has_a_row_in_the_route_tables() {
    let served = served_routes();
    assert!(
        served.contains("GET /api/v1/work-orders") && served.contains("GET /tree"),
        "both doors are listed: {served:?}"
    );
    let mut covered: BTreeSet<String> = BTreeSet::new();
    for r in API_ROUTES {
        assert!(
            route_of(r.route).contains(" /api/"),
            "{} is in the API table",
            r.route
        );
        covered.insert(route_of(r.route).to_string());
    }
    for r in PAGE_ROUTES {
        assert!(
            !route_of(r.route).contains(" /api/"),
            "{} is in the page table",
            r.route
        );
        covered.insert(route_of(r.route).to_string());
    }
    for (route, _why) in PUBLIC {
        covered.insert(route.to_string());
    }
    let missing: Vec<&String> = served.difference(&covered).collect();
    let stale: Vec<&String> = covered.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "routes without a row in the route × role tables (add one to API_ROUTES or PAGE_ROUTES): {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "rows for routes the server does not serve: {stale:?}"
    );
}

/// Every state-changing page route (each POST row, with its note), for
/// tests that run over all of them with `page_call`'s fixtures.
pub(crate) fn state_changing_page_routes() -> Vec<&'static str> {
    PAGE_ROUTES
        .iter()
        .map(|r| r.route)
        .filter(|r| r.starts_with("POST "))
        .collect()
}

/// Routes whose callers, once the role check lets them in, meet the test
/// clusters (unreachable: 502) or a state rule (nothing deployed: 409):
/// for these, "allowed" means anything but 401, 403 and 404.
const PAST_THE_ROLE_CHECK: &[&str] = &[
    // The fixture's deploy to the lane is still in flight (its cluster is
    // unreachable): 409.
    "DELETE /api/v1/apps/{id}/lanes/{lane}",
    "POST /api/v1/work-orders/{id}/stages/{n}/deploy",
    "POST /api/v1/work-orders/{id}/stages/{n}/rollback",
    "POST /api/v1/work-orders/{id}/stages/{n}/cancel",
    "POST /api/v1/work-orders/{id}/stages/{n}/approve-step",
    "POST /api/v1/work-orders/{id}/stages/{n}/sign-off",
    "POST /api/v1/work-orders/{id}/stages/{n}/continue",
    "POST /api/v1/clusters/{id}/test",
    "POST /api/v1/clusters/{id}/prometheus/test",
    "GET /work-orders/{id}/stages/{n}/deploy",
    "POST /work-orders/{id}/stages/{n}/deploy",
    "POST /work-orders/{id}/stages/{n}/rollback",
    "POST /work-orders/{id}/stages/{n}/cancel",
    "POST /work-orders/{id}/stages/{n}/approve-step",
    "POST /work-orders/{id}/stages/{n}/sign-off",
    "POST /work-orders/{id}/stages/{n}/continue",
    "POST /admin/clusters/{id}/test",
    "POST /admin/clusters/{id}/prometheus/test",
    "GET /work-orders/{id}/stages/{n}/pods/{pod}/logs",
    "GET /work-orders/{id}/stages/{n}/pods/{pod}/logs/stream",
];

fn admitted(route: &str, status: StatusCode) -> bool {
    if PAST_THE_ROLE_CHECK.contains(&route) {
        ![
            StatusCode::UNAUTHORIZED,
            StatusCode::FORBIDDEN,
            StatusCode::NOT_FOUND,
        ]
        .contains(&status)
    } else {
        status.is_success() || status == StatusCode::SEE_OTHER
    }
}

/// Whether a signed-in caller's answer is what `row` says for `who`.
/// `body` is the answer's text, `marker` what marks the /acme/pay fixture
/// in a list.
fn as_listed(row: &Row, who: Who, status: StatusCode, body: &str, marker: Option<&str>) -> bool {
    if row.allowed.contains(&who) {
        let let_in = admitted(row.route, status)
            || (row.route == "POST /account/password"
                && status == StatusCode::UNPROCESSABLE_ENTITY);
        let sees_right = match (row.sees, marker) {
            (Some(sees), Some(marker)) => body.contains(marker) == sees.contains(&who),
            (None, _) => true,
            (Some(_), None) => panic!("{}: a list row needs a marker", row.route),
        };
        let_in && sees_right
    } else if who == Who::Outsider || OWN_ONLY.contains(&row.route) {
        status == row.hidden.status()
    } else {
        status == StatusCode::FORBIDDEN
    }
}

/// Routes on one's own things: anyone else's answers as a missing one.
const OWN_ONLY: &[&str] = &["POST /account/tokens/{id}/revoke"];

/// One API request to make.
struct ApiCall {
    method: Method,
    path: String,
    body: Option<Value>,
}

fn call(method: Method, path: String, body: Option<Value>) -> ApiCall {
    ApiCall { method, path, body }
}

/// A read of the API: the path, and for lists what marks the fixture on
/// /acme/pay in the answer.
fn api_read(route: &str, f: &Fixtures<'_>) -> (String, Option<String>) {
    let org = f.org;
    let (order, item) = (f.read_order, f.read_item);
    match route {
        "GET /api/v1/me" => ("/api/v1/me".into(), None),
        "GET /api/v1/nodes" => (
            "/api/v1/nodes".into(),
            Some("\"path\":\"/acme/pay\"".into()),
        ),
        "GET /api/v1/nodes/{id}" => (format!("/api/v1/nodes/{}", org.pay), None),
        "GET /api/v1/nodes/{id}/members" => (format!("/api/v1/nodes/{}/members", org.pay), None),
        "GET /api/v1/users" => ("/api/v1/users".into(), None),
        "GET /api/v1/users/{id}" => (format!("/api/v1/users/{}", f.read_user), None),
        "GET /api/v1/service-accounts" => ("/api/v1/service-accounts".into(), None),
        "GET /api/v1/service-accounts/{id}" => (
            format!("/api/v1/service-accounts/{}", f.read_service_account),
            None,
        ),
        "GET /api/v1/service-accounts/{id}/tokens" => (
            format!("/api/v1/service-accounts/{}/tokens", f.read_service_account),
            None,
        ),
        "GET /api/v1/id-token-bindings" => ("/api/v1/id-token-bindings".into(), None),
        "GET /api/v1/audit" => ("/api/v1/audit".into(), None),
        "GET /api/v1/settings/gitlab" => ("/api/v1/settings/gitlab".into(), None),
        "GET /api/v1/clusters" => ("/api/v1/clusters".into(), None),
        "GET /api/v1/clusters/{id}" => (format!("/api/v1/clusters/{}", f.read_cluster), None),
        "GET /api/v1/apps" => (
            "/api/v1/apps".into(),
            Some(format!("\"id\":{},", f.release.staging_app)),
        ),
        "GET /api/v1/apps/{id}" => (format!("/api/v1/apps/{}", f.release.staging_app), None),
        "GET /api/v1/apps/{id}/deployments" => (
            format!("/api/v1/apps/{}/deployments", f.release.staging_app),
            None,
        ),
        "GET /api/v1/apps/{id}/lanes" => (
            format!("/api/v1/apps/{}/lanes", f.release.staging_app),
            None,
        ),
        "GET /api/v1/deployments/{id}" => {
            (format!("/api/v1/deployments/{}", f.read_deployment), None)
        }
        "GET /api/v1/nodes/{id}/freeze-windows" => {
            (format!("/api/v1/nodes/{}/freeze-windows", org.pay), None)
        }
        "GET /api/v1/freeze-windows" => (
            "/api/v1/freeze-windows".into(),
            Some(format!("\"id\":{},", f.read_window)),
        ),
        "GET /api/v1/freeze-windows/calendar" => (
            "/api/v1/freeze-windows/calendar".into(),
            Some(format!("\"window_id\":{}}}", f.read_window)),
        ),
        "GET /api/v1/freeze-windows/{id}" => {
            (format!("/api/v1/freeze-windows/{}", f.read_window), None)
        }
        "GET /api/v1/line-stops" => (
            "/api/v1/line-stops".into(),
            Some(format!("\"id\":{},", f.read_stop)),
        ),
        "GET /api/v1/line-stops/{id}" => (format!("/api/v1/line-stops/{}", f.read_stop), None),
        "GET /api/v1/nodes/{id}/notification-destinations" => (
            format!("/api/v1/nodes/{}/notification-destinations", org.pay),
            None,
        ),
        "GET /api/v1/notification-destinations" => (
            "/api/v1/notification-destinations".into(),
            Some(format!("\"id\":{},", f.read_destination)),
        ),
        "GET /api/v1/notification-destinations/{id}" => (
            format!("/api/v1/notification-destinations/{}", f.read_destination),
            None,
        ),
        "GET /api/v1/notification-destinations/{id}/deliveries" => (
            format!(
                "/api/v1/notification-destinations/{}/deliveries",
                f.read_destination
            ),
            None,
        ),
        "GET /api/v1/release-items" => (
            "/api/v1/release-items".into(),
            Some(format!("\"id\":{item},")),
        ),
        "GET /api/v1/release-items/{id}" => (format!("/api/v1/release-items/{item}"), None),
        "GET /api/v1/release-items/{id}/status" => (
            format!("/api/v1/release-items/{item}/status"),
            Some(format!("\"release_item_id\":{item},")),
        ),
        "GET /api/v1/release-items/{id}/versions" => {
            (format!("/api/v1/release-items/{item}/versions"), None)
        }
        // Filtered to the fixture's item: the fixtures file more orders
        // than a page holds.
        "GET /api/v1/work-orders" => (
            format!("/api/v1/work-orders?item={item}"),
            Some(format!("\"id\":{order},")),
        ),
        "GET /api/v1/work-orders (awaiting_me)" => (
            "/api/v1/work-orders?awaiting_me=true".into(),
            Some(format!("\"id\":{order},")),
        ),
        "GET /api/v1/work-orders/{id}" => (format!("/api/v1/work-orders/{order}"), None),
        other => panic!("no fixture for {other}"),
    }
}

/// A page read: the path, and for lists what marks the fixture on
/// /acme/pay in the page.
fn page_read(route: &str, f: &Fixtures<'_>) -> (String, Option<String>) {
    let org = f.org;
    let (order, item) = (f.read_order, f.read_item);
    match route {
        "GET /" => ("/".into(), None),
        "GET /tree" => (
            "/tree".into(),
            Some(format!("href=\"/tree/nodes/{}\"", org.pay)),
        ),
        "GET /tree/nodes/{id}" => (format!("/tree/nodes/{}", org.pay), None),
        "GET /admin/users" => ("/admin/users".into(), None),
        "GET /admin/service-accounts" => ("/admin/service-accounts".into(), None),
        "GET /admin/service-accounts/{id}" => (
            format!("/admin/service-accounts/{}", f.read_service_account),
            None,
        ),
        "GET /admin/clusters" => ("/admin/clusters".into(), None),
        "GET /admin/clusters/{id}" => (format!("/admin/clusters/{}", f.read_cluster), None),
        "GET /admin/apps" => ("/admin/apps".into(), None),
        "GET /apps/{id}" => (format!("/apps/{}", f.release.staging_app), None),
        "GET /notifications" => (
            "/notifications".into(),
            Some(format!("data-destination=\"{}\"", f.read_destination)),
        ),
        "GET /freezes" => (
            "/freezes".into(),
            Some(format!("data-window=\"{}\"", f.read_window)),
        ),
        "GET /admin/audit" => ("/admin/audit".into(), None),
        "GET /admin/settings" => ("/admin/settings".into(), None),
        "GET /account" => ("/account".into(), None),
        "GET /release-items/new" => (format!("/release-items/new?node={}", org.pay), None),
        "GET /release-items/{id}" => (format!("/release-items/{item}"), None),
        "GET /work-orders/filter-options" => (
            "/work-orders/filter-options?list=items".into(),
            Some("<option value=\"checkout\">".into()),
        ),
        "GET /release-items" => (
            "/release-items".into(),
            Some(format!("data-item=\"{item}\"")),
        ),
        // From the fixture's order on: the fixtures file more orders than
        // a page holds.
        "GET /work-orders" => (
            format!("/work-orders?before={}", order + 1),
            Some(format!("href=\"/work-orders/{order}\"")),
        ),
        "GET /work-orders/new" => (
            "/work-orders/new".into(),
            Some(format!("<option value=\"{item}\"")),
        ),
        // The newest tag of the item's project: GitLab is asked only for
        // items the reader may file orders for.
        "GET /work-orders/new/versions" => (
            format!("/work-orders/new/versions?item={item}"),
            Some("v1.129.0".into()),
        ),
        "GET /work-orders/{id}" => (format!("/work-orders/{order}"), None),
        "GET /work-orders/{id}/pods" => (format!("/work-orders/{order}/pods"), None),
        "GET /work-orders/{id}/changes" => (format!("/work-orders/{order}/changes"), None),
        "GET /work-orders/{id}/stages/{n}/deploy" => {
            (format!("/work-orders/{order}/stages/1/deploy"), None)
        }
        "GET /work-orders/{id}/stages/{n}/pods/{pod}/logs" => (
            format!("/work-orders/{order}/stages/1/pods/checkout-1/logs"),
            None,
        ),
        "GET /work-orders/{id}/stages/{n}/pods/{pod}/logs/stream" => (
            format!("/work-orders/{order}/stages/1/pods/checkout-1/logs/stream"),
            None,
        ),
        "GET /approvals" => (
            "/approvals".into(),
            Some(format!("href=\"/work-orders/{order}\"")),
        ),
        other => panic!("no fixture for {other}"),
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);
fn unique(prefix: &str) -> String {
    format!("{prefix}{}", SEQ.fetch_add(1, Ordering::SeqCst))
}

/// Things for the requests to act on, made by the admin: fresh ones for
/// each state-changing request, shared ones for the reads.
pub(crate) struct Fixtures<'a> {
    org: &'a Org,
    release: &'a Release,
    release_tokens: Vec<(String, Api)>,
    /// An order eric filed on /acme/pay, waiting for olivia's approval.
    read_order: i64,
    /// A release item on /acme/pay with that order.
    read_item: i64,
    read_cluster: i64,
    read_user: i64,
    read_service_account: i64,
    /// A fast-path deployment to a dev app on /acme/pay.
    read_deployment: i64,
    /// A freeze window on /acme/pay, ten days from now.
    read_window: i64,
    /// A stop of the line on a leaf under /acme/pay (nothing deploys there).
    read_stop: i64,
    /// A notification destination on a leaf under /acme/pay.
    read_destination: i64,
    /// The server's database, to arrange what the API cannot.
    db_url: String,
}

impl<'a> Fixtures<'a> {
    pub(crate) async fn new(app: &TestApp, release: &'a Release) -> Fixtures<'a> {
        let mut f = Fixtures {
            org: &release.org,
            release,
            release_tokens: vec![
                ("eric".into(), app.api(Some(&app.token_for("eric")))),
                ("olivia".into(), app.api(Some(&app.token_for("olivia")))),
            ],
            read_order: 0,
            read_item: 0,
            read_cluster: 0,
            read_user: 0,
            read_service_account: 0,
            read_deployment: 0,
            read_window: 0,
            read_stop: 0,
            read_destination: 0,
            db_url: app.db.url.clone(),
        };
        f.read_order = f.order().await;
        let (_, order) = f
            .org
            .admin
            .get(&format!("/api/v1/work-orders/{}", f.read_order))
            .await;
        f.read_item = order["release_item_id"].as_i64().expect("item");
        f.read_cluster = f.cluster().await;
        f.read_user = f.user().await.0;
        f.read_service_account = f.service_account().await;
        f.read_deployment = f.fast_deployment(None).await.1;
        let day = 86_400_000;
        f.read_window = f.window(f.org.pay, 10 * day, 11 * day).await;
        f.read_stop = f.line_stop().await;
        f.read_destination = f.destination(f.leaf_under_pay().await).await;
        f
    }

    /// A webhook destination on node `node`, told of filed orders, at a
    /// host that does not exist: its id.
    async fn destination(&self, node: i64) -> i64 {
        let (s, v) = self
            .org
            .admin
            .post(
                &format!("/api/v1/nodes/{node}/notification-destinations"),
                json!({"name": unique("hook"), "kind": "webhook",
                       "url": "https://hooks.example.invalid/hook", "events": ["filed"]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }

    /// A delivery that failed, to a destination on a fresh leaf under
    /// /acme/pay (an order filed for an item there): its id.
    async fn failed_delivery(&self) -> i64 {
        let leaf = self.leaf_under_pay().await;
        let destination = self.destination(leaf).await;
        let item = self.item_of_leaf_app(leaf, leaf).await;
        let (s, v) = self
            .release_api("eric")
            .post("/api/v1/work-orders", order_body(item, "v1.0.0"))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let (_, log) = self
            .org
            .admin
            .get(&format!(
                "/api/v1/notification-destinations/{destination}/deliveries"
            ))
            .await;
        let id = log[0]["id"].as_i64().expect("a delivery");
        // Its attempts are over (the schedule takes hours here).
        self.sql(&format!(
            "UPDATE jobs SET state = 'done' WHERE subject_kind = 'delivery' AND subject_id = {id}"
        ))
        .await;
        self.sql(&format!(
            "UPDATE notification_deliveries SET status = 'failed' WHERE id = {id}"
        ))
        .await;
        id
    }

    async fn sql(&self, sql: &str) {
        sqlx::any::install_default_drivers();
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&self.db_url)
            .await
            .expect("connect to the test database");
        sqlx::query(sql).execute(&mut conn).await.expect(sql);
    }

    /// A stop of the line on a fresh leaf under /acme/pay: its id.
    async fn line_stop(&self) -> i64 {
        let leaf = self.leaf_under_pay().await;
        let (s, v) = self
            .org
            .admin
            .post(
                &format!("/api/v1/nodes/{leaf}/line-stops"),
                json!({"reason": "fixture stop"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }

    /// A freeze window on node `node` from `from` to `to` ms from now: its id.
    async fn window(&self, node: i64, from: i64, to: i64) -> i64 {
        let now = rollway::db::now_ms();
        let (s, v) = self
            .org
            .admin
            .post(
                &format!("/api/v1/nodes/{node}/freeze-windows"),
                json!({"reason": "fixture freeze", "starts_at": now + from, "ends_at": now + to}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }

    /// A hotfix order eric filed on /acme/pay for a fresh item whose one
    /// stage's app lives on a fresh leaf a freeze window holds now.
    async fn frozen_hotfix(&self) -> i64 {
        let leaf = self.leaf_under_pay().await;
        self.window(leaf, -60_000, 3_600_000).await;
        let item = self.item_of_leaf_app(self.org.pay, leaf).await;
        let mut body = order_body(item, "v1.0.0");
        body["hotfix_reason"] = json!("checkout charges twice");
        let (s, v) = self
            .release_api("eric")
            .post("/api/v1/work-orders", body)
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }

    /// A fresh item on node `node` whose one stage deploys a fresh app on
    /// node `leaf`: its id.
    async fn item_of_leaf_app(&self, node: i64, leaf: i64) -> i64 {
        let mut app = self.app_body(self.cluster().await);
        app["node_id"] = json!(leaf);
        let (s, app) = self.org.admin.post("/api/v1/apps", app).await;
        assert_eq!(s, StatusCode::CREATED, "{app}");
        let (s, item) = self
            .org
            .admin
            .post(
                "/api/v1/release-items",
                json!({"node_id": node, "name": unique("item"),
                       "gitlab_project": crate::releases::PROJECT,
                       "image_repository": "registry.example.com/acme/x", "required_approvals": 1,
                       "stages": [{"name": "only", "app_id": app["id"], "strategy": "rolling"}]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{item}");
        item["id"].as_i64().unwrap()
    }

    /// A fresh dev app on /acme/pay and an admin's fast-path deploy to it
    /// (to `lane`, if any): the app and the deployment.
    async fn fast_deployment(&self, lane: Option<&str>) -> (i64, i64) {
        let cluster = self.cluster().await;
        let app = self.app(cluster).await;
        let (s, v) = self
            .org
            .admin
            .post(
                &format!("/api/v1/apps/{app}/deployments"),
                json!({"image": "registry.example.com/acme/x:v1", "lane": lane}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        (app, v["id"].as_i64().unwrap())
    }

    async fn leaf_under_pay(&self) -> i64 {
        let (s, v) = self
            .org
            .admin
            .post(
                "/api/v1/nodes",
                json!({"parent_id": self.org.pay, "name": unique("leaf"), "title": "Leaf"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }
    async fn user(&self) -> (i64, String) {
        let name = unique("user");
        let (s, v) = self
            .org
            .admin
            .post(
                "/api/v1/users",
                json!({"name": name, "password": USER_PASSWORD}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        (v["user"]["id"].as_i64().unwrap(), name)
    }
    async fn disabled_user(&self) -> i64 {
        let (id, _) = self.user().await;
        self.org
            .admin
            .patch(&format!("/api/v1/users/{id}"), json!({"disabled": true}))
            .await;
        id
    }
    async fn service_account(&self) -> i64 {
        let (s, v) = self
            .org
            .admin
            .post("/api/v1/service-accounts", json!({"name": unique("bot")}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }
    async fn token(&self) -> i64 {
        let sa = self.service_account().await;
        let (s, v) = self
            .org
            .admin
            .post(
                &format!("/api/v1/service-accounts/{sa}/tokens"),
                json!({"name": "t"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }
    async fn id_token_binding(&self) -> i64 {
        let sa = self.service_account().await;
        let (s, v) = self
            .org
            .admin
            .post(
                "/api/v1/id-token-bindings",
                json!({"service_account_id": sa, "project_path": "acme/pay"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }
    fn cluster_body(&self) -> Value {
        json!({"name": unique("c"), "environment": "dev", "kubeconfig": crate::registry::kubeconfig()})
    }
    async fn cluster(&self) -> i64 {
        let (s, v) = self
            .org
            .admin
            .post("/api/v1/clusters", self.cluster_body())
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }
    fn app_body(&self, cluster: i64) -> Value {
        json!({"name": unique("a"), "cluster_id": cluster, "namespace": "ns", "deployment": unique("d"), "container": "c", "node_id": self.org.pay})
    }
    async fn app(&self, cluster: i64) -> i64 {
        let (s, v) = self
            .org
            .admin
            .post("/api/v1/apps", self.app_body(cluster))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }
    async fn item(&self) -> i64 {
        self.release.another_item(&unique("item")).await
    }
    /// A fresh item with an order eric filed, waiting for approval.
    async fn order(&self) -> i64 {
        let item = self.item().await;
        let eric = self.release_api("eric");
        let (s, v) = eric
            .post("/api/v1/work-orders", order_body(item, "v1.0.0"))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }
    /// A fresh item with an order eric filed and olivia approved.
    async fn approved_order(&self) -> i64 {
        let id = self.order().await;
        let (s, v) = self
            .release_api("olivia")
            .post(&format!("/api/v1/work-orders/{id}/approve"), json!({}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        id
    }
    /// The stages editor's fields for a fresh item on /acme/pay.
    fn item_form(&self, _unused: Option<i64>) -> Vec<(String, String)> {
        [
            ("node_id", self.org.pay.to_string()),
            ("name", unique("item")),
            ("gitlab_project", crate::releases::PROJECT.to_string()),
            (
                "image_repository",
                "registry.example.com/acme/x".to_string(),
            ),
            ("required_approvals", "1".to_string()),
            ("stage_1_name", "staging".to_string()),
            ("stage_1_app", self.release.staging_app.to_string()),
            ("stage_1_strategy", "rolling".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
    fn release_api(&self, name: &str) -> Api {
        self.release_tokens
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, api)| api.clone())
            .expect("token")
    }
    async fn member_of_pay_api(&self) -> i64 {
        let (_, name) = self.user().await;
        let (s, v) = self
            .org
            .admin
            .post(
                &format!("/api/v1/nodes/{}/members", self.org.pay_api),
                json!({"account": name, "role": "viewer"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["account_id"].as_i64().unwrap()
    }
}

/// A state-changing API request with fresh fixtures.
async fn api_write(route: &str, f: &Fixtures<'_>) -> ApiCall {
    let org = f.org;
    match route {
        "POST /api/v1/nodes (child of /acme/pay)" => call(
            Method::POST,
            "/api/v1/nodes".into(),
            Some(json!({"parent_id": org.pay, "name": unique("n"), "title": "N"})),
        ),
        "POST /api/v1/nodes (root)" => call(
            Method::POST,
            "/api/v1/nodes".into(),
            Some(json!({"name": unique("root"), "title": "R"})),
        ),
        "PATCH /api/v1/nodes/{id}" => call(
            Method::PATCH,
            format!("/api/v1/nodes/{}", org.pay_api),
            Some(json!({"title": "T"})),
        ),
        "DELETE /api/v1/nodes/{id}" => call(
            Method::DELETE,
            format!("/api/v1/nodes/{}", f.leaf_under_pay().await),
            None,
        ),
        "POST /api/v1/nodes/{id}/members" => {
            let (_, name) = f.user().await;
            call(
                Method::POST,
                format!("/api/v1/nodes/{}/members", org.pay_api),
                Some(json!({"account": name, "role": "viewer"})),
            )
        }
        "DELETE /api/v1/nodes/{id}/members/{account_id}" => {
            let account = f.member_of_pay_api().await;
            call(
                Method::DELETE,
                format!("/api/v1/nodes/{}/members/{account}", org.pay_api),
                None,
            )
        }
        "POST /api/v1/users" => call(
            Method::POST,
            "/api/v1/users".into(),
            Some(json!({"name": unique("u"), "password": USER_PASSWORD})),
        ),
        "PATCH /api/v1/users/{id}" => call(
            Method::PATCH,
            format!("/api/v1/users/{}", f.user().await.0),
            Some(json!({"disabled": true})),
        ),
        "POST /api/v1/users/{id}/reset-password" => call(
            Method::POST,
            format!("/api/v1/users/{}/reset-password", f.user().await.0),
            None,
        ),
        "POST /api/v1/service-accounts" => call(
            Method::POST,
            "/api/v1/service-accounts".into(),
            Some(json!({"name": unique("sa")})),
        ),
        "PATCH /api/v1/service-accounts/{id}" => call(
            Method::PATCH,
            format!("/api/v1/service-accounts/{}", f.service_account().await),
            Some(json!({"disabled": true})),
        ),
        "POST /api/v1/service-accounts/{id}/tokens" => call(
            Method::POST,
            format!(
                "/api/v1/service-accounts/{}/tokens",
                f.service_account().await
            ),
            Some(json!({"name": "t"})),
        ),
        "DELETE /api/v1/tokens/{id}" => call(
            Method::DELETE,
            format!("/api/v1/tokens/{}", f.token().await),
            None,
        ),
        "POST /api/v1/id-token-bindings" => call(
            Method::POST,
            "/api/v1/id-token-bindings".into(),
            Some(
                json!({"service_account_id": f.service_account().await, "project_path": "acme/*"}),
            ),
        ),
        "DELETE /api/v1/id-token-bindings/{id}" => call(
            Method::DELETE,
            format!("/api/v1/id-token-bindings/{}", f.id_token_binding().await),
            None,
        ),
        "POST /api/v1/clusters" => call(
            Method::POST,
            "/api/v1/clusters".into(),
            Some(f.cluster_body()),
        ),
        "PATCH /api/v1/clusters/{id}" => call(
            Method::PATCH,
            format!("/api/v1/clusters/{}", f.cluster().await),
            Some(json!({"environment": "test"})),
        ),
        "DELETE /api/v1/clusters/{id}" => call(
            Method::DELETE,
            format!("/api/v1/clusters/{}", f.cluster().await),
            None,
        ),
        "POST /api/v1/apps/{id}/deployments" => {
            let cluster = f.cluster().await;
            call(
                Method::POST,
                format!("/api/v1/apps/{}/deployments", f.app(cluster).await),
                Some(json!({"image": "registry.example.com/acme/x:v2"})),
            )
        }
        "POST /api/v1/nodes/{id}/freeze-windows" => {
            let now = rollway::db::now_ms();
            call(
                Method::POST,
                format!("/api/v1/nodes/{}/freeze-windows", f.org.pay),
                Some(
                    json!({"reason": "a freeze", "starts_at": now + 86_400_000 * 20,
                            "ends_at": now + 86_400_000 * 21}),
                ),
            )
        }
        "POST /api/v1/nodes/{id}/line-stops" => call(
            Method::POST,
            format!("/api/v1/nodes/{}/line-stops", f.leaf_under_pay().await),
            Some(json!({"reason": "an incident"})),
        ),
        "POST /api/v1/line-stops/{id}/lift" => call(
            Method::POST,
            format!("/api/v1/line-stops/{}/lift", f.line_stop().await),
            None,
        ),
        "POST /api/v1/nodes/{id}/notification-destinations" => call(
            Method::POST,
            format!(
                "/api/v1/nodes/{}/notification-destinations",
                f.leaf_under_pay().await
            ),
            Some(
                json!({"name": "a hook", "kind": "slack", "url": "https://hooks.example.invalid/x"}),
            ),
        ),
        "DELETE /api/v1/notification-destinations/{id}" => call(
            Method::DELETE,
            format!(
                "/api/v1/notification-destinations/{}",
                f.destination(f.leaf_under_pay().await).await
            ),
            None,
        ),
        "POST /api/v1/notification-destinations/{id}/enable" => call(
            Method::POST,
            format!(
                "/api/v1/notification-destinations/{}/enable",
                f.destination(f.leaf_under_pay().await).await
            ),
            None,
        ),
        "POST /api/v1/notification-deliveries/{id}/send-again" => call(
            Method::POST,
            format!(
                "/api/v1/notification-deliveries/{}/send-again",
                f.failed_delivery().await
            ),
            None,
        ),
        "DELETE /api/v1/freeze-windows/{id}" => {
            let day = 86_400_000;
            let id = f.window(f.org.pay, 30 * day, 31 * day).await;
            call(Method::DELETE, format!("/api/v1/freeze-windows/{id}"), None)
        }
        "POST /api/v1/work-orders/{id}/freeze-override" => {
            let id = f.frozen_hotfix().await;
            call(
                Method::POST,
                format!("/api/v1/work-orders/{id}/freeze-override"),
                Some(json!({"comment": "go"})),
            )
        }
        "DELETE /api/v1/apps/{id}/lanes/{lane}" => {
            let (app, _) = f.fast_deployment(Some("feature")).await;
            call(
                Method::DELETE,
                format!("/api/v1/apps/{app}/lanes/feature"),
                None,
            )
        }
        "POST /api/v1/apps" => {
            let cluster = f.cluster().await;
            call(
                Method::POST,
                "/api/v1/apps".into(),
                Some(f.app_body(cluster)),
            )
        }
        "PATCH /api/v1/apps/{id}" => {
            let cluster = f.cluster().await;
            let app = f.app(cluster).await;
            call(
                Method::PATCH,
                format!("/api/v1/apps/{app}"),
                Some(f.app_body(cluster)),
            )
        }
        "DELETE /api/v1/apps/{id}" => {
            let cluster = f.cluster().await;
            call(
                Method::DELETE,
                format!("/api/v1/apps/{}", f.app(cluster).await),
                None,
            )
        }
        "PUT /api/v1/settings/gitlab" => call(
            Method::PUT,
            "/api/v1/settings/gitlab".into(),
            Some(json!({"url": f.release.gitlab.url, "token": crate::fake_gitlab::TOKEN})),
        ),
        "POST /api/v1/release-items" => {
            let body = item_body(
                org.pay,
                &unique("item"),
                f.release.staging_app,
                f.release.prod_app,
            );
            call(Method::POST, "/api/v1/release-items".into(), Some(body))
        }
        "PUT /api/v1/release-items/{id}" => {
            let item = f.item().await;
            let body = item_body(
                org.pay,
                &unique("item"),
                f.release.staging_app,
                f.release.prod_app,
            );
            call(
                Method::PUT,
                format!("/api/v1/release-items/{item}"),
                Some(body),
            )
        }
        "DELETE /api/v1/release-items/{id}" => call(
            Method::DELETE,
            format!("/api/v1/release-items/{}", f.item().await),
            None,
        ),
        "POST /api/v1/work-orders" => call(
            Method::POST,
            "/api/v1/work-orders".into(),
            Some(order_body(f.item().await, "v1.0.0")),
        ),
        "POST /api/v1/work-orders/{id}/approve" => call(
            Method::POST,
            format!("/api/v1/work-orders/{}/approve", f.order().await),
            Some(json!({})),
        ),
        "POST /api/v1/work-orders/{id}/reject" => call(
            Method::POST,
            format!("/api/v1/work-orders/{}/reject", f.order().await),
            Some(json!({"comment": "not now"})),
        ),
        "POST /api/v1/work-orders/{id}/close" => call(
            Method::POST,
            format!("/api/v1/work-orders/{}/close", f.order().await),
            Some(json!({"reason": "test"})),
        ),
        "POST /api/v1/work-orders/{id}/stages/{n}/deploy" => call(
            Method::POST,
            format!(
                "/api/v1/work-orders/{}/stages/1/deploy",
                f.approved_order().await
            ),
            None,
        ),
        "POST /api/v1/work-orders/{id}/stages/{n}/rollback" => call(
            Method::POST,
            format!(
                "/api/v1/work-orders/{}/stages/1/rollback",
                f.approved_order().await
            ),
            None,
        ),
        "POST /api/v1/work-orders/{id}/stages/{n}/cancel" => call(
            Method::POST,
            format!(
                "/api/v1/work-orders/{}/stages/1/cancel",
                f.approved_order().await
            ),
            Some(json!({"reason": "test"})),
        ),
        "POST /api/v1/work-orders/{id}/stages/{n}/approve-step" => call(
            Method::POST,
            format!(
                "/api/v1/work-orders/{}/stages/1/approve-step",
                f.approved_order().await
            ),
            Some(json!({"step": 1})),
        ),
        "POST /api/v1/work-orders/{id}/stages/{n}/sign-off" => call(
            Method::POST,
            format!(
                "/api/v1/work-orders/{}/stages/1/sign-off",
                f.approved_order().await
            ),
            None,
        ),
        "POST /api/v1/work-orders/{id}/stages/{n}/continue" => call(
            Method::POST,
            format!(
                "/api/v1/work-orders/{}/stages/1/continue",
                f.approved_order().await
            ),
            None,
        ),
        "POST /api/v1/clusters/{id}/test" => call(
            Method::POST,
            format!("/api/v1/clusters/{}/test", f.cluster().await),
            None,
        ),
        "PUT /api/v1/clusters/{id}/prometheus" => call(
            Method::PUT,
            format!("/api/v1/clusters/{}/prometheus", f.cluster().await),
            Some(json!({"url": "http://127.0.0.1:9/prometheus", "token": "t"})),
        ),
        "DELETE /api/v1/clusters/{id}/prometheus" => call(
            Method::DELETE,
            format!("/api/v1/clusters/{}/prometheus", f.cluster().await),
            None,
        ),
        "POST /api/v1/clusters/{id}/prometheus/test" => call(
            Method::POST,
            format!("/api/v1/clusters/{}/prometheus/test", f.cluster().await),
            None,
        ),
        other => panic!("no fixture for {other}"),
    }
}

pub(crate) async fn page_call(
    route: &str,
    f: &Fixtures<'_>,
    who: Who,
) -> (String, Vec<(String, String)>) {
    let org = f.org;
    let kv = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    match route {
        "POST /tree/nodes (child of /acme/pay)" => (
            "/tree/nodes".into(),
            kv(&[
                ("parent_id", &org.pay.to_string()),
                ("name", &unique("n")),
                ("title", "N"),
            ]),
        ),
        "POST /tree/nodes (root)" => (
            "/tree/nodes".into(),
            kv(&[("name", &unique("root")), ("title", "R")]),
        ),
        "POST /tree/nodes/{id}/title" => (
            format!("/tree/nodes/{}/title", org.pay_api),
            kv(&[("title", "T")]),
        ),
        "POST /tree/nodes/{id}/delete" => (
            format!("/tree/nodes/{}/delete", f.leaf_under_pay().await),
            vec![],
        ),
        "POST /tree/nodes/{id}/members" => {
            let (_, name) = f.user().await;
            (
                format!("/tree/nodes/{}/members", org.pay_api),
                kv(&[("account", &name), ("role", "viewer")]),
            )
        }
        "POST /tree/nodes/{id}/members/{account_id}/delete" => {
            let account = f.member_of_pay_api().await;
            (
                format!("/tree/nodes/{}/members/{account}/delete", org.pay_api),
                vec![],
            )
        }
        "POST /admin/users" => (
            "/admin/users".into(),
            kv(&[("name", &unique("u")), ("password", USER_PASSWORD)]),
        ),
        "POST /admin/users/{id}/disable" => {
            (format!("/admin/users/{}/disable", f.user().await.0), vec![])
        }
        "POST /admin/users/{id}/enable" => (
            format!("/admin/users/{}/enable", f.disabled_user().await),
            vec![],
        ),
        "POST /admin/users/{id}/reset-password" => (
            format!("/admin/users/{}/reset-password", f.user().await.0),
            vec![],
        ),
        "POST /admin/service-accounts" => (
            "/admin/service-accounts".into(),
            kv(&[("name", &unique("sa"))]),
        ),
        "POST /admin/service-accounts/{id}/disable" => (
            format!(
                "/admin/service-accounts/{}/disable",
                f.service_account().await
            ),
            vec![],
        ),
        "POST /admin/service-accounts/{id}/enable" => (
            format!(
                "/admin/service-accounts/{}/enable",
                f.service_account().await
            ),
            vec![],
        ),
        "POST /admin/service-accounts/{id}/tokens" => (
            format!(
                "/admin/service-accounts/{}/tokens",
                f.service_account().await
            ),
            kv(&[("name", "t")]),
        ),
        "POST /admin/tokens/{id}/revoke" => {
            (format!("/admin/tokens/{}/revoke", f.token().await), vec![])
        }
        "POST /admin/service-accounts/{id}/id-token-bindings" => (
            format!(
                "/admin/service-accounts/{}/id-token-bindings",
                f.service_account().await
            ),
            kv(&[("project_path", "acme/pay"), ("ref", "main")]),
        ),
        "POST /admin/id-token-bindings/{id}/delete" => (
            format!(
                "/admin/id-token-bindings/{}/delete",
                f.id_token_binding().await
            ),
            vec![],
        ),
        "POST /account/tokens" => ("/account/tokens".into(), kv(&[("name", "laptop")])),
        "POST /account/tokens/{id}/revoke" => (
            format!("/account/tokens/{}/revoke", f.token().await),
            vec![],
        ),
        "POST /admin/clusters" => {
            let yaml = crate::registry::kubeconfig();
            (
                "/admin/clusters".into(),
                kv(&[
                    ("name", &unique("c")),
                    ("environment", "dev"),
                    ("kubeconfig", &yaml),
                ]),
            )
        }
        "POST /admin/clusters/{id}/update" => (
            format!("/admin/clusters/{}/update", f.cluster().await),
            kv(&[("environment", "test")]),
        ),
        "POST /admin/clusters/{id}/delete" => (
            format!("/admin/clusters/{}/delete", f.cluster().await),
            vec![],
        ),
        "POST /admin/apps" => {
            let cluster = f.cluster().await.to_string();
            (
                "/admin/apps".into(),
                kv(&[
                    ("name", &unique("a")),
                    ("cluster_id", &cluster),
                    ("namespace", "ns"),
                    ("deployment", &unique("d")),
                    ("container", "c"),
                    ("node", "/acme/pay"),
                ]),
            )
        }
        "POST /apps/{id}/lanes/{lane}/delete" => {
            let (app, _) = f.fast_deployment(Some("feature")).await;
            (format!("/apps/{app}/lanes/feature/delete"), vec![])
        }
        "POST /tree/nodes/{id}/freeze-windows" => (
            format!("/tree/nodes/{}/freeze-windows", f.org.pay),
            kv(&[
                ("reason", "a freeze"),
                ("kind", "recurring"),
                ("cron_start", "0 18 * * 5"),
                ("cron_end", "0 8 * * 1"),
                ("time_zone", "Europe/Berlin"),
                ("env_prod", "on"),
            ]),
        ),
        "POST /tree/nodes/{id}/line-stops" => (
            format!("/tree/nodes/{}/line-stops", f.leaf_under_pay().await),
            kv(&[("reason", "an incident"), ("pause_rollouts", "on")]),
        ),
        "POST /line-stops/{id}/lift" => {
            (format!("/line-stops/{}/lift", f.line_stop().await), vec![])
        }
        "POST /tree/nodes/{id}/notification-destinations" => (
            format!(
                "/tree/nodes/{}/notification-destinations",
                f.leaf_under_pay().await
            ),
            kv(&[
                ("name", "a hook"),
                ("kind", "webhook"),
                ("url", "https://hooks.example.invalid/x"),
                ("ev_filed", "on"),
            ]),
        ),
        "POST /notification-destinations/{id}/delete" => (
            format!(
                "/notification-destinations/{}/delete",
                f.destination(f.leaf_under_pay().await).await
            ),
            vec![],
        ),
        "POST /notification-destinations/{id}/enable" => (
            format!(
                "/notification-destinations/{}/enable",
                f.destination(f.leaf_under_pay().await).await
            ),
            vec![],
        ),
        "POST /notification-deliveries/{id}/send-again" => (
            format!(
                "/notification-deliveries/{}/send-again",
                f.failed_delivery().await
            ),
            vec![],
        ),
        "POST /freeze-windows/{id}/delete" => {
            let day = 86_400_000;
            let id = f.window(f.org.pay, 40 * day, 41 * day).await;
            (format!("/freeze-windows/{id}/delete"), vec![])
        }
        "POST /work-orders/{id}/freeze-override" => {
            let id = f.frozen_hotfix().await;
            (
                format!("/work-orders/{id}/freeze-override"),
                kv(&[("comment", "go")]),
            )
        }
        "POST /admin/apps/{id}/delete" => {
            let cluster = f.cluster().await;
            (
                format!("/admin/apps/{}/delete", f.app(cluster).await),
                vec![],
            )
        }
        "POST /admin/settings" => (
            "/admin/settings".into(),
            kv(&[
                ("url", &f.release.gitlab.url),
                ("token", crate::fake_gitlab::TOKEN),
            ]),
        ),
        "POST /release-items" => ("/release-items".into(), f.item_form(None)),
        "POST /release-items/{id}" => {
            let item = f.item().await;
            (format!("/release-items/{item}"), f.item_form(None))
        }
        "POST /release-items/{id}/delete" => {
            (format!("/release-items/{}/delete", f.item().await), vec![])
        }
        "POST /work-orders" => {
            let item = f.item().await.to_string();
            (
                "/work-orders".into(),
                kv(&[("item", &item), ("version", "v1.0.0"), ("title", "T")]),
            )
        }
        "POST /work-orders/{id}/approve" => {
            (format!("/work-orders/{}/approve", f.order().await), vec![])
        }
        "POST /work-orders/{id}/reject" => (
            format!("/work-orders/{}/reject", f.order().await),
            vec![("reason".to_string(), "not now".to_string())],
        ),
        "POST /work-orders/{id}/close" => (
            format!("/work-orders/{}/close", f.order().await),
            kv(&[("reason", "test")]),
        ),
        "POST /work-orders/{id}/stages/{n}/deploy" => (
            format!("/work-orders/{}/stages/1/deploy", f.approved_order().await),
            vec![],
        ),
        "POST /work-orders/{id}/stages/{n}/rollback" => (
            format!(
                "/work-orders/{}/stages/1/rollback",
                f.approved_order().await
            ),
            vec![],
        ),
        "POST /work-orders/{id}/stages/{n}/cancel" => (
            format!("/work-orders/{}/stages/1/cancel", f.approved_order().await),
            kv(&[("reason", "test")]),
        ),
        "POST /work-orders/{id}/stages/{n}/approve-step" => (
            format!(
                "/work-orders/{}/stages/1/approve-step",
                f.approved_order().await
            ),
            kv(&[("step", "1"), ("confirmed", "yes")]),
        ),
        "POST /work-orders/{id}/stages/{n}/sign-off" => (
            format!(
                "/work-orders/{}/stages/1/sign-off",
                f.approved_order().await
            ),
            kv(&[("confirmed", "yes")]),
        ),
        "POST /work-orders/{id}/stages/{n}/continue" => (
            format!(
                "/work-orders/{}/stages/1/continue",
                f.approved_order().await
            ),
            kv(&[("confirmed", "yes")]),
        ),
        "POST /admin/clusters/{id}/test" => (
            format!("/admin/clusters/{}/test", f.cluster().await),
            vec![],
        ),
        "POST /admin/clusters/{id}/prometheus" => (
            format!("/admin/clusters/{}/prometheus", f.cluster().await),
            kv(&[("url", "http://127.0.0.1:9/prometheus")]),
        ),
        "POST /admin/clusters/{id}/prometheus/test" => (
            format!("/admin/clusters/{}/prometheus/test", f.cluster().await),
            vec![],
        ),
        // A wrong current password is refused by validation (422), which
        // still shows the route itself admitted the person.
        "POST /account/password" => (
            "/account/password".into(),
            kv(&[
                ("current_password", "not-my-password"),
                ("new_password", "whatever-long-1"),
            ]),
        ),
        "POST /logout" => {
            let _ = who;
            ("/logout".into(), vec![])
        }
        other => panic!("no fixture for {other}"),
    }
}

db_test!(
    every_api_route_allows_exactly_the_listed_roles,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let release = Release::create(&app, true).await;
        let fixtures = Fixtures::new(&app, &release).await;
        let mut clients: Vec<(Who, Api)> = Vec::new();
        for who in EVERYONE {
            let api = match user_of(who) {
                Some((name, _)) => app.api(Some(&app.token_for(name))),
                None => app.api(None),
            };
            clients.push((who, api));
        }
        let mut failures = Vec::new();
        for row in API_ROUTES {
            for (who, api) in &clients {
                let (c, marker) = if row.route.starts_with("GET ") {
                    let (path, marker) = api_read(row.route, &fixtures);
                    (call(Method::GET, path, None), marker)
                } else {
                    (api_write(row.route, &fixtures).await, None)
                };
                let (status, body) = api.request(c.method.clone(), &c.path, c.body.clone()).await;
                let ok = match who {
                    Who::Anonymous => status == StatusCode::UNAUTHORIZED,
                    _ => {
                        as_listed(row, *who, status, &body.to_string(), marker.as_deref())
                            && (status != StatusCode::FORBIDDEN
                                || body["error"]["code"] == "forbidden")
                    }
                };
                if !ok {
                    failures.push(format!("{} as {who:?}: got {status} {body}", row.route));
                }
            }
        }
        assert!(
            failures.is_empty(),
            "route × role table broken:\n{}",
            failures.join("\n")
        );
    }
);

db_test!(
    every_page_route_allows_exactly_the_listed_roles,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let release = Release::create(&app, true).await;
        let fixtures = Fixtures::new(&app, &release).await;
        // One browser per person; logout and password changes (which end
        // the session they run in) get a fresh one each.
        let mut readers: Vec<(Who, Browser)> = Vec::new();
        for who in EVERYONE {
            let browser = match user_of(who) {
                Some((name, password)) => app.browser_as(name, password).await,
                None => app.browser(),
            };
            readers.push((who, browser));
        }
        let mut failures = Vec::new();
        for row in PAGE_ROUTES {
            for (who, reader) in &readers {
                let who = *who;
                let (status, body, location, marker) = if row.route.starts_with("GET ") {
                    let (path, marker) = page_read(row.route, &fixtures);
                    let resp = reader.client.get(app.url(&path)).send().await.expect("GET");
                    let status = resp.status();
                    let location = resp
                        .headers()
                        .get("location")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    // A followed log streams for as long as it is read:
                    // the status line is the answer.
                    let body = if row.route.ends_with("/stream") && status.is_success() {
                        String::new()
                    } else {
                        resp.text().await.unwrap_or_default()
                    };
                    (status, body, location, marker)
                } else {
                    // Logging out and changing one's password end the
                    // session: they get a browser of their own.
                    let fresh = if matches!(row.route, "POST /logout" | "POST /account/password") {
                        Some(match user_of(who) {
                            Some((name, password)) => app.browser_as(name, password).await,
                            None => app.browser(),
                        })
                    } else {
                        None
                    };
                    let browser = fresh.as_ref().unwrap_or(reader);
                    let (path, fields) = page_call(row.route, &fixtures, who).await;
                    let fields: Vec<(&str, &str)> = fields
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    let (status, body, location) = if who == Who::Anonymous {
                        // The anonymous browser has a CSRF cookie from the login page.
                        let token = browser.csrf("/login").await;
                        let mut all = vec![("csrf_token", token.as_str())];
                        all.extend_from_slice(&fields);
                        browser.post_raw(&path, &all).await
                    } else {
                        browser.submit(&path, &fields).await
                    };
                    (status, body, location, None)
                };
                let to_login = location.as_deref().is_some_and(|l| l.starts_with("/login"));
                let ok = match who {
                    Who::Anonymous => status == StatusCode::SEE_OTHER && to_login,
                    _ => as_listed(row, who, status, &body, marker.as_deref()),
                };
                if !ok {
                    failures.push(format!(
                        "{} as {who:?}: got {status} location {location:?}",
                        row.route
                    ));
                }
            }
        }
        assert!(
            failures.is_empty(),
            "route × role table broken:\n{}",
            failures.join("\n")
        );
    }
);

/// A fingerprint of everything a page form can change: rows of the audit
/// log (every change writes one), sessions, grants, and the newest change
/// of each table people edit.
async fn everything(app: &TestApp) -> String {
    let newest =
        |table: &str| format!("CAST(COALESCE((SELECT MAX(updated_at) FROM {table}), 0) AS TEXT)");
    let sql = format!(
        "SELECT CAST((SELECT COUNT(*) FROM audit_log) AS TEXT) || '/' || CAST((SELECT COUNT(*) FROM sessions) AS TEXT) \
         || '/' || CAST((SELECT version FROM policy_state WHERE id = 1) AS TEXT) \
         || '/' || CAST((SELECT COUNT(*) FROM api_tokens WHERE revoked_at IS NOT NULL) AS TEXT) \
         || '/' || CAST((SELECT COUNT(*) FROM work_orders) AS TEXT) || '/' || CAST((SELECT COUNT(*) FROM approvals) AS TEXT) \
         || '/' || {} || '/' || {} || '/' || {} || '/' || {} || '/' || {} || '/' || {} || '/' || {}",
        newest("accounts"),
        newest("nodes"),
        newest("clusters"),
        newest("apps"),
        newest("settings"),
        newest("release_items"),
        newest("work_orders"),
    );
    app.db.query_text(&sql).await.expect("a fingerprint")
}

db_test!(
    every_state_changing_page_route_refuses_a_missing_or_foreign_csrf_token,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let release = Release::create(&app, true).await;
        let fixtures = Fixtures::new(&app, &release).await;
        // A token that is valid, but for another browser.
        let stranger = app.browser();
        let foreign = stranger.csrf("/login").await;
        let mut routes = state_changing_page_routes();
        routes.push("POST /login");
        assert!(routes.len() > 30, "{routes:?}");
        let mut failures = Vec::new();
        for route in routes {
            // The admin may do everything: only the token stands in the way.
            let (browser, path, fields) = if route == "POST /login" {
                let browser = app.browser();
                browser.csrf("/login").await;
                let fields = [("username", "admin"), ("password", ADMIN_PASSWORD)]
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .to_vec();
                (browser, "/login".to_string(), fields)
            } else {
                let browser = app.browser_as("admin", ADMIN_PASSWORD).await;
                let (path, fields) = page_call(route, &fixtures, Who::Admin).await;
                (browser, path, fields)
            };
            let mut fields: Vec<(String, String)> = fields;
            if route == "POST /account/password" {
                // The right current password: only the token is missing.
                fields = vec![
                    ("current_password".into(), ADMIN_PASSWORD.into()),
                    ("new_password".into(), "a-new-admin-password-1".into()),
                ];
            }
            let before = everything(&app).await;
            for (what, token) in [
                ("no token", None),
                ("a foreign token", Some(foreign.as_str())),
            ] {
                let mut form: Vec<(&str, &str)> = Vec::new();
                if let Some(token) = token {
                    form.push(("csrf_token", token));
                }
                form.extend(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                let (status, _, _) = browser.post_raw(&path, &form).await;
                if status != StatusCode::FORBIDDEN {
                    failures.push(format!("{route} with {what}: got {status}"));
                }
            }
            let after = everything(&app).await;
            if before != after {
                failures.push(format!("{route}: something changed ({before} → {after})"));
            }
            if route != "POST /login" {
                let (status, _) = browser.get("/account").await;
                if status != StatusCode::OK {
                    failures.push(format!("{route}: the session ended ({status})"));
                }
            }
        }
        assert!(
            failures.is_empty(),
            "CSRF refusals broken:\n{}",
            failures.join("\n")
        );
        // The control: with its token, a form does change something.
        let admin = app.browser_as("admin", ADMIN_PASSWORD).await;
        let before = everything(&app).await;
        let (status, _, _) = admin
            .submit(
                "/admin/users",
                &[("name", "csrf-control"), ("password", USER_PASSWORD)],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_ne!(
            everything(&app).await,
            before,
            "the fingerprint sees changes"
        );
    }
);

db_test!(
    a_refusal_says_who_may_do_it_and_keeps_the_navigation,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let org = Org::create(&app).await;
        let eric = app.api(Some(&app.token_for("eric")));
        let (s, v) = eric
            .post("/api/v1/release-items", item_body(org.pay, "cart", 1, 2))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(
            v["error"]["message"],
            "You need to be an owner of /acme/pay to manage release items."
        );
        let page = app.browser_as("eric", USER_PASSWORD).await;
        for (path, status, says) in [
            (
                "/admin/users",
                StatusCode::FORBIDDEN,
                "You need to be an admin to manage accounts.",
            ),
            (
                "/no/such/page",
                StatusCode::NOT_FOUND,
                "nothing at /no/such/page",
            ),
        ] {
            let (s, html) = page.get(path).await;
            assert_eq!(s, status, "{path}: {html}");
            assert!(html.contains(says), "{path}: {html}");
            assert!(
                html.contains(r#"<nav class="mainnav""#) && html.contains(r#"href="/approvals""#),
                "{path} keeps the navigation: {html}"
            );
        }
        // Someone not signed in gets the bare page.
        let (s, html) = app.browser().get("/no/such/page").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert!(!html.contains(r#"href="/approvals""#), "{html}");
    }
);
