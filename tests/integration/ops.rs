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
    "DELETE /api/v1/apps/{id}/lanes/{lane}",
    "DELETE /api/v1/clusters/{id}",
    "DELETE /api/v1/clusters/{id}/prometheus",
    "DELETE /api/v1/freeze-windows/{id}",
    "DELETE /api/v1/id-token-bindings/{id}",
    "DELETE /api/v1/nodes/{id}",
    "DELETE /api/v1/nodes/{id}/members/{account_id}",
    "DELETE /api/v1/notification-destinations/{id}",
    "DELETE /api/v1/release-items/{id}",
    "DELETE /api/v1/tokens/{id}",
    "GET /api/v1/apps",
    "GET /api/v1/apps/{id}",
    "GET /api/v1/apps/{id}/deployments",
    "GET /api/v1/apps/{id}/lanes",
    "GET /api/v1/audit",
    "GET /api/v1/clusters",
    "GET /api/v1/clusters/{id}",
    "GET /api/v1/deployments/{id}",
    "GET /api/v1/freeze-windows",
    "GET /api/v1/freeze-windows/calendar",
    "GET /api/v1/freeze-windows/{id}",
    "GET /api/v1/id-token-bindings",
    "GET /api/v1/line-stops",
    "GET /api/v1/line-stops/{id}",
    "GET /api/v1/me",
    "GET /api/v1/nodes",
    "GET /api/v1/nodes/{id}",
    "GET /api/v1/nodes/{id}/freeze-windows",
    "GET /api/v1/nodes/{id}/members",
    "GET /api/v1/nodes/{id}/notification-destinations",
    "GET /api/v1/notification-destinations",
    "GET /api/v1/notification-destinations/{id}",
    "GET /api/v1/notification-destinations/{id}/deliveries",
    "GET /api/v1/release-items",
    "GET /api/v1/release-items/{id}",
    "GET /api/v1/release-items/{id}/status",
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
    "POST /api/v1/apps/{id}/deployments",
    "POST /api/v1/clusters",
    "POST /api/v1/clusters/{id}/prometheus/test",
    "POST /api/v1/clusters/{id}/test",
    "POST /api/v1/id-token-bindings",
    "POST /api/v1/line-stops/{id}/lift",
    "POST /api/v1/nodes",
    "POST /api/v1/nodes/{id}/freeze-windows",
    "POST /api/v1/nodes/{id}/line-stops",
    "POST /api/v1/nodes/{id}/members",
    "POST /api/v1/nodes/{id}/notification-destinations",
    "POST /api/v1/notification-deliveries/{id}/send-again",
    "POST /api/v1/notification-destinations/{id}/enable",
    "POST /api/v1/release-items",
    "POST /api/v1/service-accounts",
    "POST /api/v1/service-accounts/{id}/tokens",
    "POST /api/v1/users",
    "POST /api/v1/users/{id}/reset-password",
    "POST /api/v1/work-orders",
    "POST /api/v1/work-orders/{id}/approve",
    "POST /api/v1/work-orders/{id}/close",
    "POST /api/v1/work-orders/{id}/freeze-override",
    "POST /api/v1/work-orders/{id}/reject",
    "POST /api/v1/work-orders/{id}/stages/{n}/approve-step",
    "POST /api/v1/work-orders/{id}/stages/{n}/cancel",
    "POST /api/v1/work-orders/{id}/stages/{n}/continue",
    "POST /api/v1/work-orders/{id}/stages/{n}/deploy",
    "POST /api/v1/work-orders/{id}/stages/{n}/rollback",
    "POST /api/v1/work-orders/{id}/stages/{n}/sign-off",
    "PUT /api/v1/clusters/{id}/prometheus",
    "PUT /api/v1/release-items/{id}",
    "PUT /api/v1/settings/gitlab",
];

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_that_exist() {
    let app = TestApp::start(Backend::Sqlite).await;
    let answer = reqwest::get(app.url("/api/v1/openapi.json")).await.unwrap();
    assert_eq!(answer.headers()["content-type"], "application/json");
    let doc: serde_json::Value = answer.json().await.unwrap();
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
            .replace("{n}", "1")
            .replace("{lane}", "main");
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
        "/",
        "/tree",
        "/release-items",
        "/admin/users",
        "/admin/service-accounts",
        "/account",
    ] {
        let (s, html) = browser.get(page).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        assert!(html.contains(r#"<main class="page" id="main""#), "{page}");
        assert!(
            html.contains(r##"<a class="skip-link" href="#main">"##),
            "{page}"
        );
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

        let identity = |subject: &str, account: i64| {
            format!(
                "INSERT INTO oidc_identities (issuer, subject, account_id, created_at, last_sign_in_at) \
                 VALUES ('https://idp', '{subject}', {account}, 0, 0)"
            )
        };
        run(
            &db,
            &account.replace("900", "901").replace("'dup'", "'dup2'"),
        )
        .await
        .unwrap();
        run(&db, &identity("s1", 900)).await.unwrap();
        let err = run(&db, &identity("s1", 901)).await.unwrap_err();
        assert_eq!(violated(&err), Some(Constraint::OidcSubject), "{err}");
        let err = run(&db, &identity("s2", 900)).await.unwrap_err();
        assert_eq!(violated(&err), Some(Constraint::OidcAccount), "{err}");

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

/// A type's family, so `INTEGER` on SQLite and `bigint` on PostgreSQL
/// compare equal.
fn type_family(declared: &str) -> &'static str {
    let t = declared.to_ascii_lowercase();
    if t.contains("int") || t.contains("serial") {
        "integer"
    } else if t.contains("char") || t.contains("text") || t.contains("clob") {
        "text"
    } else if t.contains("bool") {
        "boolean"
    } else if t.contains("blob") || t.contains("bytea") {
        "bytes"
    } else if t.contains("real") || t.contains("double") || t.contains("float") {
        "float"
    } else {
        "other"
    }
}

/// A predicate or check in one spelling for both databases: lower case,
/// no casts, no parentheses, `x = ANY (ARRAY['a', 'b'])` read as
/// `x in 'a', 'b'`.
fn normalise_sql(expr: &str) -> String {
    let mut s = expr.to_ascii_lowercase();
    for cast in [
        "::character varying",
        "::text",
        "::bigint",
        "::integer",
        "[]",
    ] {
        s = s.replace(cast, "");
    }
    s = s
        .replace("= any array[", "in ")
        .replace("= any (array[", "in ")
        .replace(['(', ')', '[', ']'], " ");
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(" ,", ",")
}

/// The expressions of every `CHECK (…)` in a `CREATE TABLE` statement.
fn checks_in(create: &str) -> Vec<String> {
    let mut found = Vec::new();
    let upper = create.to_ascii_uppercase();
    let mut from = 0;
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    while let Some(at) = upper[from..].find("CHECK") {
        let start = from + at + "CHECK".len();
        // A name holding the word (`deployment_checks`) is no constraint.
        if word(upper[..from + at].chars().next_back()) || word(upper[start..].chars().next()) {
            from = start;
            continue;
        }
        let Some(open) = create[start..].find('(').map(|o| start + o) else {
            break;
        };
        let mut depth = 0;
        let mut end = open;
        for (i, c) in create[open..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        found.push(create[open + 1..end].to_string());
        from = end;
    }
    found
}

/// The schema of a migrated database as comparable lines: tables, columns
/// (name, type family, nullability), primary keys, indexes (columns,
/// uniqueness, partial predicate; the name when made by `CREATE INDEX`),
/// foreign keys and checks.
async fn schema_facts(db: &rollway::db::Db, backend: Backend) -> BTreeSet<String> {
    use sqlx::Row;
    let pool = &db.pool;
    let mut facts = BTreeSet::new();
    match backend {
        Backend::Sqlite => {
            let tables = sqlx::query(
                "SELECT name, sql FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            for table in tables {
                let name: String = table.get("name");
                let create: String = table.get("sql");
                facts.insert(format!("table {name}"));
                let mut pk: Vec<(i64, String)> = Vec::new();
                for col in sqlx::query(&format!("PRAGMA table_info('{name}')"))
                    .fetch_all(pool)
                    .await
                    .unwrap()
                {
                    let column: String = col.get("name");
                    let declared: String = col.get("type");
                    let key: i64 = col.get("pk");
                    let not_null = col.get::<i64, _>("notnull") != 0 || key > 0;
                    facts.insert(format!(
                        "column {name}.{column} {} {}",
                        type_family(&declared),
                        if not_null { "not null" } else { "null" }
                    ));
                    if key > 0 {
                        pk.push((key, column));
                    }
                }
                pk.sort();
                let pk: Vec<String> = pk.into_iter().map(|(_, c)| c).collect();
                facts.insert(format!("primary key {name}({})", pk.join(", ")));
                for index in sqlx::query(&format!("PRAGMA index_list('{name}')"))
                    .fetch_all(pool)
                    .await
                    .unwrap()
                {
                    let index_name: String = index.get("name");
                    let origin: String = index.get("origin");
                    if origin == "pk" {
                        continue;
                    }
                    let columns: Vec<String> =
                        sqlx::query(&format!("PRAGMA index_info('{index_name}')"))
                            .fetch_all(pool)
                            .await
                            .unwrap()
                            .iter()
                            .map(|c| c.get::<String, _>("name"))
                            .collect();
                    let predicate = if index.get::<i64, _>("partial") != 0 {
                        let sql: String =
                            sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = $1")
                                .bind(&index_name)
                                .fetch_one(pool)
                                .await
                                .unwrap();
                        let upper = sql.to_ascii_uppercase();
                        let at = upper.rfind(" WHERE ").map(|i| i + " WHERE ".len());
                        format!(" where {}", normalise_sql(&sql[at.unwrap_or(sql.len())..]))
                    } else {
                        String::new()
                    };
                    facts.insert(format!(
                        "index {}{name}({}){}{predicate}",
                        if origin == "c" {
                            format!("{index_name} on ")
                        } else {
                            String::new()
                        },
                        columns.join(", "),
                        if index.get::<i64, _>("unique") != 0 {
                            " unique"
                        } else {
                            ""
                        },
                    ));
                }
                let mut keys: std::collections::BTreeMap<
                    i64,
                    (String, Vec<String>, Vec<String>, String),
                > = Default::default();
                for fk in sqlx::query(&format!("PRAGMA foreign_key_list('{name}')"))
                    .fetch_all(pool)
                    .await
                    .unwrap()
                {
                    let entry = keys.entry(fk.get("id")).or_insert_with(|| {
                        (
                            fk.get("table"),
                            Vec::new(),
                            Vec::new(),
                            fk.get::<String, _>("on_delete").to_ascii_lowercase(),
                        )
                    });
                    entry.1.push(fk.get("from"));
                    entry
                        .2
                        .push(fk.get::<Option<String>, _>("to").unwrap_or_default());
                }
                for (target, from, to, on_delete) in keys.into_values() {
                    facts.insert(format!(
                        "foreign key {name}({}) -> {target}({}) on delete {on_delete}",
                        from.join(", "),
                        to.join(", ")
                    ));
                }
                for check in checks_in(&create) {
                    facts.insert(format!("check {name}: {}", normalise_sql(&check)));
                }
            }
        }
        Backend::Postgres => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = 'public' AND table_type = 'BASE TABLE' \
                 AND table_name <> '_sqlx_migrations'",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            for name in tables {
                facts.insert(format!("table {name}"));
                for col in sqlx::query(
                    "SELECT column_name::text AS name, data_type::text AS type, is_nullable::text AS nullable \
                     FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1",
                )
                .bind(&name)
                .fetch_all(pool)
                .await
                .unwrap()
                {
                    let column: String = col.get("name");
                    let declared: String = col.get("type");
                    let nullable: String = col.get("nullable");
                    facts.insert(format!(
                        "column {name}.{column} {} {}",
                        type_family(&declared),
                        if nullable == "NO" { "not null" } else { "null" }
                    ));
                }
                for index in sqlx::query(
                    "SELECT i.relname::text AS name, x.indisunique AS is_unique, x.indisprimary AS is_primary, \
                            COALESCE(pg_get_expr(x.indpred, x.indrelid), '')::text AS predicate, \
                            EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid) AS backs_constraint, \
                            array_to_string(ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(n, o) \
                              JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n ORDER BY k.o), ', ')::text AS cols \
                     FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid \
                     WHERE t.relname = $1 AND t.relnamespace = 'public'::regnamespace",
                )
                .bind(&name)
                .fetch_all(pool)
                .await
                .unwrap()
                {
                    let cols: String = index.get("cols");
                    if index.get::<bool, _>("is_primary") {
                        facts.insert(format!("primary key {name}({cols})"));
                        continue;
                    }
                    let predicate: String = index.get("predicate");
                    let predicate = if predicate.is_empty() {
                        String::new()
                    } else {
                        format!(" where {}", normalise_sql(&predicate))
                    };
                    let index_name: String = index.get("name");
                    facts.insert(format!(
                        "index {}{name}({cols}){}{predicate}",
                        if index.get::<bool, _>("backs_constraint") {
                            String::new()
                        } else {
                            format!("{index_name} on ")
                        },
                        if index.get::<bool, _>("is_unique") {
                            " unique"
                        } else {
                            ""
                        },
                    ));
                }
                for fk in sqlx::query(
                    "SELECT ft.relname::text AS target, c.confdeltype::text AS on_delete, \
                       array_to_string(ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o) \
                         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o), ', ')::text AS from_cols, \
                       array_to_string(ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, o) \
                         JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o), ', ')::text AS to_cols \
                     FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_class ft ON ft.oid = c.confrelid \
                     WHERE c.contype = 'f' AND t.relname = $1 AND t.relnamespace = 'public'::regnamespace",
                )
                .bind(&name)
                .fetch_all(pool)
                .await
                .unwrap()
                {
                    let on_delete = match fk.get::<String, _>("on_delete").as_str() {
                        "c" => "cascade",
                        "n" => "set null",
                        "d" => "set default",
                        "r" => "restrict",
                        _ => "no action",
                    };
                    facts.insert(format!(
                        "foreign key {name}({}) -> {}({}) on delete {on_delete}",
                        fk.get::<String, _>("from_cols"),
                        fk.get::<String, _>("target"),
                        fk.get::<String, _>("to_cols"),
                    ));
                }
                for check in sqlx::query_scalar::<_, String>(
                    "SELECT pg_get_constraintdef(c.oid)::text FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid \
                     WHERE c.contype = 'c' AND t.relname = $1 AND t.relnamespace = 'public'::regnamespace",
                )
                .bind(&name)
                .fetch_all(pool)
                .await
                .unwrap()
                {
                    let expr = check.trim_start_matches("CHECK");
                    facts.insert(format!("check {name}: {}", normalise_sql(expr)));
                }
            }
        }
    }
    facts
}

/// Both migration folders, applied to fresh databases, give the same
/// schema: tables, columns, keys, indexes and checks.
#[tokio::test]
async fn both_migration_folders_build_the_same_schema() {
    let sqlite = crate::common::TestDb::new(Backend::Sqlite).await;
    let postgres = crate::common::TestDb::new(Backend::Postgres).await;
    let on_sqlite = schema_facts(&crate::cli::open_db(&sqlite).await, Backend::Sqlite).await;
    let on_postgres = schema_facts(&crate::cli::open_db(&postgres).await, Backend::Postgres).await;
    assert!(
        on_sqlite.iter().any(|f| f.starts_with("index "))
            && on_sqlite.iter().any(|f| f.starts_with("check ")),
        "the schema was read: {on_sqlite:#?}"
    );
    let only_sqlite: Vec<&String> = on_sqlite.difference(&on_postgres).collect();
    let only_postgres: Vec<&String> = on_postgres.difference(&on_sqlite).collect();
    assert!(
        only_sqlite.is_empty() && only_postgres.is_empty(),
        "migrations/sqlite and migrations/postgres build different schemas\n\
         only in SQLite:\n  {}\nonly in PostgreSQL:\n  {}",
        only_sqlite
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  "),
        only_postgres
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  "),
    );
}

#[test]
fn both_spellings_of_a_predicate_normalise_alike() {
    assert_eq!(
        normalise_sql("(state = ANY (ARRAY['queued'::text, 'done'::text]))"),
        normalise_sql("state IN ('queued', 'done')")
    );
    assert_ne!(
        normalise_sql("state IN ('queued')"),
        normalise_sql("state IN ('done')")
    );
    assert_eq!(
        checks_in(
            "CREATE TABLE t_checks (a TEXT CHECK (a IN ('x', 'y')), checked INT, CHECK (checked = 1))"
        ),
        ["a IN ('x', 'y')", "checked = 1"]
    );
    assert_eq!(type_family("BIGINT"), type_family("INTEGER"));
}
