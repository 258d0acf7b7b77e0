//! Health, readiness, metrics, the OpenAPI document, first start.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};

use crate::common::{Backend, Start, TestApp};
use crate::db_test;

db_test!(health_and_readiness_answer, |backend| async move {
    let app = TestApp::start(backend).await;
    for path in ["/healthz", "/readyz"] {
        let resp = reqwest::get(app.url(path)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
});

#[tokio::test]
async fn metrics_count_requests_per_route_with_latency_histograms() {
    let app = TestApp::start(Backend::Sqlite).await;
    let token = app.admin_token();
    for _ in 0..3 {
        app.api(Some(&token)).get("/api/v1/nodes/1").await;
    }
    let text = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count_line = text
        .lines()
        .find(|l| {
            l.starts_with("rollway_http_requests_total")
                && l.contains("endpoint=\"/api/v1/nodes/{id}\"")
        })
        .unwrap_or_else(|| panic!("no per-route counter in:\n{text}"));
    assert!(count_line.ends_with(" 3"), "{count_line}");
    assert!(
        text.lines().any(
            |l| l.starts_with("rollway_http_requests_duration_seconds_bucket")
                && l.contains("/api/v1/nodes/{id}")
        ),
        "no latency histogram:\n{text}"
    );
}

/// Every API operation that exists, as `METHOD path`.
const API_ROUTES: &[&str] = &[
    "DELETE /api/v1/apps/{id}",
    "DELETE /api/v1/clusters/{id}",
    "DELETE /api/v1/nodes/{id}",
    "DELETE /api/v1/nodes/{id}/members/{account_id}",
    "DELETE /api/v1/release-items/{id}",
    "DELETE /api/v1/tokens/{id}",
    "GET /api/v1/apps",
    "GET /api/v1/apps/{id}",
    "GET /api/v1/audit",
    "GET /api/v1/clusters",
    "GET /api/v1/clusters/{id}",
    "GET /api/v1/me",
    "GET /api/v1/nodes",
    "GET /api/v1/nodes/{id}",
    "GET /api/v1/nodes/{id}/members",
    "GET /api/v1/release-items",
    "GET /api/v1/release-items/{id}",
    "GET /api/v1/release-items/{id}/versions",
    "GET /api/v1/service-accounts",
    "GET /api/v1/service-accounts/{id}",
    "GET /api/v1/service-accounts/{id}/tokens",
    "GET /api/v1/settings/gitlab",
    "GET /api/v1/users",
    "GET /api/v1/users/{id}",
    "GET /api/v1/work-orders",
    "GET /api/v1/work-orders/{id}",
    "PATCH /api/v1/apps/{id}",
    "PATCH /api/v1/clusters/{id}",
    "PATCH /api/v1/nodes/{id}",
    "PATCH /api/v1/service-accounts/{id}",
    "PATCH /api/v1/users/{id}",
    "POST /api/v1/apps",
    "POST /api/v1/clusters",
    "POST /api/v1/clusters/{id}/test",
    "POST /api/v1/nodes",
    "POST /api/v1/nodes/{id}/members",
    "POST /api/v1/release-items",
    "POST /api/v1/service-accounts",
    "POST /api/v1/service-accounts/{id}/tokens",
    "POST /api/v1/users",
    "POST /api/v1/users/{id}/reset-password",
    "POST /api/v1/work-orders",
    "POST /api/v1/work-orders/{id}/approve",
    "POST /api/v1/work-orders/{id}/close",
    "POST /api/v1/work-orders/{id}/reject",
    "POST /api/v1/work-orders/{id}/stages/{n}/deploy",
    "POST /api/v1/work-orders/{id}/stages/{n}/rollback",
    "PUT /api/v1/release-items/{id}",
    "PUT /api/v1/settings/gitlab",
];

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_that_exist() {
    let app = TestApp::start(Backend::Sqlite).await;
    let doc: serde_json::Value = reqwest::get(app.url("/api/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    let expected: BTreeSet<String> = API_ROUTES.iter().map(|s| s.to_string()).collect();
    assert_eq!(documented, expected);
    // And every documented route is served: without a token it answers
    // 401, never 404 or 405.
    let client = reqwest::Client::new();
    for route in API_ROUTES {
        let (method, path) = route.split_once(' ').unwrap();
        let path = path
            .replace("{id}", "1")
            .replace("{account_id}", "1")
            .replace("{n}", "1");
        let resp = client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                app.url(&path),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{route}");
    }
}

#[tokio::test]
async fn first_start_without_a_password_prints_a_generated_one_that_works() {
    let app = TestApp::start_with(
        Backend::Sqlite,
        Start {
            admin_password: None,
            ..Start::default()
        },
    )
    .await;
    let output = app.output();
    let password = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("password: "))
        .unwrap_or_else(|| panic!("no password printed:\n{output}"))
        .trim()
        .to_string();
    assert_eq!(password.len(), 24);
    assert_eq!(
        app.browser().login("admin", &password).await.0,
        StatusCode::SEE_OTHER
    );
    // A second start on the same database creates nobody and prints nothing.
    let db = app.stop();
    let again = TestApp::start_on(
        db,
        Start {
            admin_password: None,
            ..Start::default()
        },
    );
    assert!(!again.output().contains("password:"), "{}", again.output());
    assert_eq!(
        again.browser().login("admin", &password).await.0,
        StatusCode::SEE_OTHER
    );
}

db_test!(passwords_are_stored_as_argon2id, |backend| async move {
    let app = TestApp::start(backend).await;
    let hash = app
        .db
        .query_text("SELECT password_hash FROM accounts WHERE name = 'admin'")
        .await
        .unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(
        !app.output().contains(crate::common::ADMIN_PASSWORD),
        "the password reached the log"
    );
});

#[tokio::test]
async fn pages_and_assets_render() {
    let app = TestApp::start(Backend::Sqlite).await;
    let browser = app.browser_as("admin", crate::common::ADMIN_PASSWORD).await;
    for page in [
        "/tree",
        "/admin/users",
        "/admin/service-accounts",
        "/account",
    ] {
        let (s, html) = browser.get(page).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        assert!(html.contains("<main class=\"page\">"), "{page}");
    }
    for asset in [
        "/static/app.css",
        "/static/htmx.min.js",
        "/static/app.js",
        "/static/favicon.svg",
    ] {
        let resp = reqwest::get(app.url(asset)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{asset}");
    }
    let (s, html) = browser.get("/no/such/page").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(html.contains("Not found"));
}
