//! Health, readiness, metrics, the OpenAPI document, first start.

use std::collections::BTreeSet;
use std::time::Duration;

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

#[tokio::test]
async fn unmatched_paths_share_one_metrics_label() {
    let app = TestApp::start(Backend::Sqlite).await;
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("rollway_http_") && !l.starts_with('#'))
            .count()
    };
    // Warm up the label sets a 404 makes, then count.
    reqwest::get(app.url("/warm-up/0")).await.unwrap();
    let before = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for i in 0..200 {
        let resp = reqwest::get(app.url(&format!("/random-{i}/x{i}?q={i}")))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
    let after = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !after.contains("random-"),
        "a requested path became a label"
    );
    assert!(after.contains("endpoint=\"unmatched\""), "{after}");
    assert_eq!(
        series(&before),
        series(&after),
        "new series for unmatched paths"
    );
}

#[tokio::test]
async fn metrics_can_be_served_on_their_own_address() {
    let app = TestApp::start_with(
        Backend::Sqlite,
        Start {
            args: vec!["--metrics-listen".into(), "127.0.0.1:0".into()],
            ..Start::default()
        },
    )
    .await;
    let resp = reqwest::get(app.url("/metrics")).await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::NOT_FOUND,
        "still on the main listener"
    );
    let output = app.output();
    let url = output
        .lines()
        .find_map(|l| l.strip_prefix("Rollway metrics on "))
        .unwrap_or_else(|| panic!("no metrics address printed:\n{output}"))
        .trim()
        .to_string();
    reqwest::get(app.url("/healthz")).await.unwrap();
    let counted = crate::common::eventually(Duration::from_secs(10), || {
        let url = url.clone();
        async move {
            let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
            text.contains("rollway_http_requests_total{") && text.contains("/healthz")
        }
    })
    .await;
    assert!(counted, "the separate listener serves no request counts");
}

/// The headers every answer carries, and `no-store` on anything per person.
fn assert_security_headers(what: &str, headers: &reqwest::header::HeaderMap, https: bool) {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert!(
        get("content-security-policy").contains("frame-ancestors 'none'"),
        "{what}"
    );
    assert_eq!(get("referrer-policy"), "same-origin", "{what}");
    assert_eq!(get("cache-control"), "no-store", "{what}");
    assert_eq!(
        get("strict-transport-security").starts_with("max-age="),
        https,
        "{what}: HSTS only when the public URL is https"
    );
}

#[tokio::test]
async fn pages_api_answers_and_errors_carry_the_security_headers() {
    let app = TestApp::start(Backend::Sqlite).await;
    let browser = app.browser_as("admin", crate::common::ADMIN_PASSWORD).await;
    let token = app.admin_token();
    let client = reqwest::Client::new();
    let page = browser.client.get(app.url("/tree")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_security_headers("a page", page.headers(), false);
    let api = client
        .get(app.url("/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::OK);
    assert_security_headers("an API answer", api.headers(), false);
    let error = client.get(app.url("/api/v1/me")).send().await.unwrap();
    assert_eq!(error.status(), StatusCode::UNAUTHORIZED);
    assert_security_headers("an API error", error.headers(), false);
    let missing = browser
        .client
        .get(app.url("/no/such/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_security_headers("an error page", missing.headers(), false);
    // A new token is shown once and never cached.
    let (_, sa) = app
        .api(Some(&token))
        .post(
            "/api/v1/service-accounts",
            serde_json::json!({"name": "ci-bot"}),
        )
        .await;
    let created = client
        .post(app.url(&format!("/api/v1/service-accounts/{}/tokens", sa["id"])))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_security_headers("a new token", created.headers(), false);
    // Static assets may be cached.
    let css = client.get(app.url("/static/app.css")).send().await.unwrap();
    assert!(
        css.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
}

/// The value of cookie `name` among a response's `Set-Cookie` headers.
fn set_cookie<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn over_https_every_cookie_is_secure_and_host_bound_and_hsts_is_sent() {
    let app = TestApp::start_with(
        Backend::Sqlite,
        Start {
            args: vec!["--public-url".into(), "https://rollway.example.com".into()],
            ..Start::default()
        },
    )
    .await;
    // Cookies by hand: a cookie store would not send Secure cookies over
    // the test's plain http.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login_page = client.get(app.url("/login")).send().await.unwrap();
    assert_security_headers("the login page", login_page.headers(), true);
    let csrf_cookie =
        cookie_pair(set_cookie(&login_page, "__Host-rollway_csrf").expect("csrf cookie"));
    let html = login_page.text().await.unwrap();
    let token = crate::common::csrf_from(&html).unwrap();
    let login = client
        .post(app.url("/login"))
        .header("cookie", &csrf_cookie)
        .form(&[
            ("csrf_token", token.as_str()),
            ("username", "admin"),
            ("password", crate::common::ADMIN_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let session = set_cookie(&login, "__Host-rollway_session").expect("session cookie");
    assert!(
        session.contains("Secure") && session.contains("HttpOnly"),
        "{session}"
    );
    let cookies = format!("{csrf_cookie}; {}", cookie_pair(session));
    let account = client
        .get(app.url("/account"))
        .header("cookie", &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(account.status(), StatusCode::OK);
    let token = crate::common::csrf_from(&account.text().await.unwrap()).unwrap();
    // Logging out leaves a notice for the next page: the flash cookie.
    let logout = client
        .post(app.url("/logout"))
        .header("cookie", &cookies)
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    assert_security_headers("a redirect", logout.headers(), true);
    let flash = set_cookie(&logout, "__Host-rollway_flash")
        .unwrap_or_else(|| panic!("no __Host- flash cookie: {:?}", logout.headers()));
    assert!(
        flash.contains("Secure") && flash.contains("HttpOnly") && flash.contains("Path=/"),
        "{flash}"
    );
    assert!(set_cookie(&logout, "rollway_flash").is_none());
    // The next page shows it and clears it the same way.
    let next = client
        .get(app.url("/login"))
        .header("cookie", format!("{csrf_cookie}; {}", cookie_pair(flash)))
        .send()
        .await
        .unwrap();
    let cleared = set_cookie(&next, "__Host-rollway_flash").map(str::to_string);
    let html = next.text().await.unwrap();
    assert!(html.contains("You have logged out."), "{html}");
    let cleared = cleared.expect("the flash is cleared");
    assert!(
        cleared.contains("Max-Age=0") && cleared.contains("Secure"),
        "{cleared}"
    );
}

/// The unique index on `table` covering exactly `columns`, as (name,
/// columns) pairs read from the catalog.
async fn unique_indexes(
    db: &rollway::db::Db,
    backend: Backend,
    table: &str,
) -> Vec<(String, Vec<String>)> {
    use sqlx::Row;
    let mut found = Vec::new();
    match backend {
        Backend::Postgres => {
            let rows = sqlx::query(
                "SELECT i.relname::text AS name, \
                        array_to_string(ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(n, o) \
                          JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n ORDER BY k.o), ',')::text AS cols \
                 FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid \
                 WHERE x.indisunique AND t.relname = $1 AND t.relnamespace = 'public'::regnamespace",
            )
            .bind(table)
            .fetch_all(&db.pool)
            .await
            .unwrap();
            for row in rows {
                let cols: String = row.get("cols");
                found.push((row.get("name"), cols.split(',').map(String::from).collect()));
            }
        }
        Backend::Sqlite => {
            let rows = sqlx::query(&format!("PRAGMA index_list('{table}')"))
                .fetch_all(&db.pool)
                .await
                .unwrap();
            for row in rows {
                if row.get::<i64, _>("unique") == 0 {
                    continue;
                }
                let name: String = row.get("name");
                let cols = sqlx::query(&format!("PRAGMA index_info('{name}')"))
                    .fetch_all(&db.pool)
                    .await
                    .unwrap()
                    .iter()
                    .map(|c| c.get::<String, _>("name"))
                    .collect();
                found.push((name, cols));
            }
        }
    }
    found
}

db_test!(
    every_named_constraint_exists_and_its_violation_is_named,
    |backend| async move {
        use rollway::db::constraint::{CONSTRAINTS, Constraint, violated};
        let test_db = crate::common::TestDb::new(backend).await;
        let db = crate::cli::open_db(&test_db).await;
        // The table of constraints matches both schemas: on PostgreSQL by
        // name and columns, on SQLite (which names only its own indexes)
        // by columns.
        for (_, name, table, columns) in CONSTRAINTS {
            let indexes = unique_indexes(&db, backend, table).await;
            let hit = indexes.iter().any(|(index, cols)| {
                cols == columns && (backend == Backend::Sqlite || index == name)
            });
            assert!(hit, "{name} on {table} {columns:?}: found {indexes:?}");
        }

        // Real violations are read back as the constraint they broke.
        async fn run(db: &rollway::db::Db, sql: &str) -> Result<(), sqlx::Error> {
            sqlx::query(sql).execute(&db.pool).await.map(|_| ())
        }
        let account = "INSERT INTO accounts (id, kind, name, display_name, created_at, updated_at) \
                       VALUES (900, 'user', 'dup', 'Dup', 0, 0)";
        run(&db, account).await.unwrap();
        let again = "INSERT INTO accounts (kind, name, display_name, created_at, updated_at) \
                     VALUES ('user', 'dup', 'Dup', 0, 0)";
        let err = run(&db, again).await.unwrap_err();
        assert_eq!(violated(&err), Some(Constraint::AccountName), "{err}");

        let node = "INSERT INTO nodes (id, name, title, path, created_at, updated_at) \
                    VALUES (900, 'n', 'N', '/n', 0, 0)";
        run(&db, node).await.unwrap();
        let err = run(
            &db,
            "INSERT INTO nodes (name, title, path, created_at, updated_at) VALUES ('n', 'N', '/n', 0, 0)",
        )
        .await
        .unwrap_err();
        assert_eq!(violated(&err), Some(Constraint::NodePath), "{err}");

        let member = "INSERT INTO node_members (node_id, account_id, role, created_at) \
                      VALUES (900, 900, 'viewer', 0)";
        run(&db, member).await.unwrap();
        let err = run(&db, member).await.unwrap_err();
        assert_eq!(violated(&err), Some(Constraint::NodeMember), "{err}");

        let cluster = "INSERT INTO clusters (id, name, environment, created_at, updated_at) \
                       VALUES (900, 'c', 'dev', 0, 0)";
        run(&db, cluster).await.unwrap();
        let err = run(&db, cluster.replace("900,", "901,").as_str())
            .await
            .unwrap_err();
        assert_eq!(violated(&err), Some(Constraint::ClusterName), "{err}");

        let app = |id: i64, name: &str, deployment: &str| {
            format!(
                "INSERT INTO apps (id, name, cluster_id, namespace, deployment, container, node_id, created_at, updated_at) \
                 VALUES ({id}, '{name}', 900, 'ns', '{deployment}', 'app', 900, 0, 0)"
            )
        };
        run(&db, &app(900, "a", "web")).await.unwrap();
        let err = run(&db, &app(901, "a", "other")).await.unwrap_err();
        assert_eq!(violated(&err), Some(Constraint::AppName), "{err}");
        let err = run(&db, &app(902, "b", "web")).await.unwrap_err();
        assert_eq!(violated(&err), Some(Constraint::AppWorkload), "{err}");

        // Other failures name no constraint.
        let err = run(
            &db,
            "INSERT INTO node_members (node_id, account_id, role, created_at) VALUES (12345, 900, 'viewer', 0)",
        )
        .await
        .unwrap_err();
        assert_eq!(violated(&err), None, "{err}");
    }
);
