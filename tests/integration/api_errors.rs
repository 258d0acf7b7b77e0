//! Bad requests get the right status and SPEC's JSON error, and change
//! nothing.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{ADMIN_PASSWORD, Org, TestApp};
use crate::db_test;
use crate::releases::{Release, order_body};

db_test!(
    malformed_bodies_get_json_errors_with_the_right_status,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let admin = app.api(Some(&app.admin_token()));
        let cases = [
            (
                Some("application/json"),
                "{not json",
                StatusCode::BAD_REQUEST,
                "bad_request",
            ),
            (
                Some("text/plain"),
                r#"{"name":"a","title":"A"}"#,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                None,
                r#"{"name":"a","title":"A"}"#,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                Some("application/json"),
                r#"{"name":"a"}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
            ),
            (
                Some("application/json"),
                r#"{"name":"a","title":"A","colour":"red"}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
            ),
            (
                Some("application/json"),
                r#"{"name":5,"title":"A"}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
            ),
        ];
        for (content_type, body, status, code) in cases {
            let (s, v) = admin
                .raw(Method::POST, "/api/v1/nodes", content_type, body)
                .await;
            assert_eq!(s, status, "{content_type:?} {body} → {v}");
            assert_eq!(v["error"]["code"], code, "{v}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
        // Past the 1 MiB limit: 413, in the API's format. On a connection
        // of its own: the server answers before reading the rest of the
        // body and closes it.
        let big = format!(
            r#"{{"name":"a","title":"{}"}}"#,
            "x".repeat((1 << 20) + 1024)
        );
        let resp = reqwest::Client::new()
            .post(app.url("/api/v1/nodes"))
            .bearer_auth(app.admin_token())
            .header("content-type", "application/json")
            .header("connection", "close")
            .body(big)
            .send()
            .await
            .expect("the server answers an oversized body");
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "payload_too_large", "{v}");
        let (_, nodes) = admin.get("/api/v1/nodes").await;
        assert_eq!(nodes, json!([]), "nothing was created");
        // Path parameters that are not ids, and unknown API paths.
        let (s, v) = admin.get("/api/v1/nodes/abc").await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"]["code"], "bad_request");
        let (s, v) = admin.get("/api/v1/no-such-thing").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(v["error"]["code"], "not_found");
    }
);

db_test!(
    users_and_service_accounts_validate_their_input,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let admin = app.api(Some(&app.admin_token()));
        let cases = [
            (
                json!({"name": "", "password": "long-enough-pw"}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({"name": "Bad Name", "password": "long-enough-pw"}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({"name": "x".repeat(65), "password": "long-enough-pw"}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({"name": "shorty", "password": "short"}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({"name": "admin", "password": "long-enough-pw"}),
                StatusCode::CONFLICT,
            ),
        ];
        for (body, status) in cases {
            let (s, v) = admin.post("/api/v1/users", body.clone()).await;
            assert_eq!(s, status, "{body} → {v}");
        }
        let (s, v) = admin.post("/api/v1/users", json!({"name": "gen"})).await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!(
            v["password"].as_str().unwrap().len(),
            24,
            "generated password returned once"
        );
        let (_, users) = admin.get("/api/v1/users").await;
        assert!(
            !serde_json::to_string(&users).unwrap().contains("argon2"),
            "no hashes in answers"
        );
        // Service accounts share the namespace with users.
        let (s, _) = admin
            .post("/api/v1/service-accounts", json!({"name": "gen"}))
            .await;
        assert_eq!(s, StatusCode::CONFLICT);
        let (s, v) = admin
            .post(
                "/api/v1/service-accounts",
                json!({"name": "bot", "node": "/nowhere"}),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(v["error"]["field"], "node");
        assert_eq!(
            admin.get("/api/v1/users/999999").await.0,
            StatusCode::NOT_FOUND
        );
        // The admin cannot lock themself out.
        let (_, me) = admin.get("/api/v1/me").await;
        let id = me["account"]["id"].as_i64().unwrap();
        assert_eq!(
            admin
                .patch(&format!("/api/v1/users/{id}"), json!({"disabled": true}))
                .await
                .0,
            StatusCode::CONFLICT
        );
    }
);

/// The number of rows of a table, to prove a refusal wrote nothing.
async fn rows(app: &TestApp, table: &str) -> String {
    app.db
        .query_text(&format!("SELECT CAST(COUNT(*) AS TEXT) FROM {table}"))
        .await
        .unwrap_or_default()
}

db_test!(
    nul_bytes_anywhere_in_an_api_request_get_422_and_change_nothing,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let r = Release::create(&app, false).await;
        let admin = &r.org.admin;
        let (s, order) = admin
            .post("/api/v1/work-orders", order_body(r.item, "v1.129.0"))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{order}");
        let order = order["id"].as_i64().unwrap();
        let pay = r.org.pay;
        let tables = [
            "nodes",
            "node_members",
            "accounts",
            "work_orders",
            "audit_log",
        ];
        let mut before = Vec::new();
        for t in tables {
            before.push(rows(&app, t).await);
        }
        let bodies = [
            (
                "/api/v1/nodes",
                json!({"parent_id": pay, "name": "x", "title": "X\u{0}"}),
                "title",
            ),
            (
                "/api/v1/users",
                json!({"name": "nul", "display_name": "N\u{0}l"}),
                "display_name",
            ),
            (
                "/api/v1/service-accounts",
                json!({"name": "bot", "description": "\u{0}"}),
                "description",
            ),
            (
                &format!("/api/v1/nodes/{pay}/members"),
                json!({"account": "eric\u{0}", "role": "owner"}),
                "account",
            ),
            (
                "/api/v1/work-orders",
                json!({"release_item_id": r.item, "version": "v1.1.0\u{0}", "title": "T"}),
                "version",
            ),
            (
                &format!("/api/v1/work-orders/{order}/reject"),
                json!({"comment": "no\u{0}"}),
                "comment",
            ),
            (
                &format!("/api/v1/work-orders/{order}/close"),
                json!({"reason": "\u{0}"}),
                "reason",
            ),
            (
                "/api/v1/release-items",
                json!({"node_id": pay, "name": "n", "gitlab_project": "a/b",
                "image_repository": "r/n", "stages": [{"name": "s\u{0}", "app_id": r.staging_app, "strategy": "rolling"}]}),
                "stages[0].name",
            ),
            (
                "/api/v1/nodes",
                json!({"name\u{0}": "x", "title": "X"}),
                "name\\0",
            ),
        ];
        for (path, body, field) in &bodies {
            let (s, v) = admin.post(path, body.clone()).await;
            assert_eq!(
                s,
                StatusCode::UNPROCESSABLE_ENTITY,
                "POST {path} {body} → {v}"
            );
            assert_eq!(v["error"]["code"], "validation_failed", "{v}");
            assert_eq!(v["error"]["field"], *field, "{v}");
            assert!(
                v["error"]["message"].as_str().unwrap().contains("NUL"),
                "{v}"
            );
        }
        let (s, v) = admin
            .patch(&format!("/api/v1/nodes/{pay}"), json!({"title": "\u{0}"}))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        // Query strings (list filters) and path parameters.
        for path in [
            "/api/v1/work-orders?creator=%00",
            "/api/v1/work-orders?node=%2Facme%00",
            "/api/v1/work-orders?state=%00",
            "/api/v1/audit?actor=ad%00min",
            "/api/v1/apps?cluster=%00",
            "/api/v1/apps?name=x&%00=1",
            "/api/v1/nodes/1%00",
            "/api/v1/release-items/%00/versions",
        ] {
            let (s, v) = admin.get(path).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "GET {path} → {v}");
            assert_eq!(v["error"]["code"], "validation_failed", "{v}");
            assert!(
                v["error"]["message"].as_str().unwrap().contains("NUL"),
                "{v}"
            );
        }
        let mut after = Vec::new();
        for t in tables {
            after.push(rows(&app, t).await);
        }
        assert_eq!(before, after, "rows of {tables:?}");
        let (_, node) = admin.get(&format!("/api/v1/nodes/{pay}")).await;
        assert_eq!(node["title"], "pay");
    }
);

db_test!(
    control_characters_are_refused_in_single_line_text_and_kept_to_tabs_and_line_breaks_in_free_text,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let r = Release::create(&app, false).await;
        let admin = &r.org.admin;
        let pay = r.org.pay;
        let (s, bot) = admin
            .post("/api/v1/service-accounts", json!({"name": "ci"}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{bot}");
        let tokens = format!("/api/v1/service-accounts/{}/tokens", bot["id"]);
        let refused = [
            ("/api/v1/nodes", json!({"parent_id": pay, "name": "x", "title": "two\nlines"}), "title"),
            ("/api/v1/nodes", json!({"parent_id": pay, "name": "x", "title": "bell\u{7}"}), "title"),
            ("/api/v1/users", json!({"name": "tab", "display_name": "T\tab"}), "display_name"),
            ("/api/v1/service-accounts", json!({"name": "esc", "description": "red \u{1b}[31m"}), "description"),
            ("/api/v1/service-accounts", json!({"name": "cr", "description": "lone\rreturn"}), "description"),
            ("/api/v1/work-orders", json!({"release_item_id": r.item, "version": "v1.1.0", "title": "a\u{85}b"}), "title"),
            ("/api/v1/work-orders", json!({"release_item_id": r.item, "version": "v1.1.0", "title": "t", "description": "\u{7f}"}), "description"),
            (tokens.as_str(), json!({"name": "ci\nlabel"}), "name"),
        ];
        for (path, body, field) in &refused {
            let (s, v) = admin.post(path, body.clone()).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "POST {path} {body} → {v}");
            assert_eq!(v["error"]["field"], *field, "{v}");
            assert!(v["error"]["message"].as_str().unwrap().contains("control characters"), "{v}");
        }
        let (s, v) = admin
            .put("/api/v1/settings/gitlab", json!({"url": "http://git\tlab.example"}))
            .await;
        assert_eq!((s, &v["error"]["field"]), (StatusCode::UNPROCESSABLE_ENTITY, &json!("url")), "{v}");
        // Query parameters are one line each.
        for path in ["/api/v1/work-orders?creator=a%07", "/api/v1/audit?action=node.%0A"] {
            let (s, v) = admin.get(path).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "GET {path} → {v}");
        }
        // Free text keeps tabs and line breaks, CR LF included.
        let (s, v) = admin
            .post(
                "/api/v1/service-accounts",
                json!({"name": "notes", "description": "line one\r\n\tline two\n"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["description"], "line one\r\n\tline two\n");
        let (s, v) = admin
            .post(
                "/api/v1/work-orders",
                json!({"release_item_id": r.item, "version": "v1.129.0", "title": "Ship ünïcödé",
                       "description": "why:\n\t- because"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
);

db_test!(
    pages_refuse_nul_bytes_in_forms_and_filters_with_an_error_naming_the_field,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let org = Org::create(&app).await;
        let nodes_before = rows(&app, "nodes").await;
        // The login form: no 500, no session.
        let browser = app.browser();
        let (s, html) = browser.login("admin\u{0}", ADMIN_PASSWORD).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
        assert!(html.contains("username"), "{html}");
        assert_eq!(
            browser.location_of("/tree").await.as_deref(),
            Some("/login?next=%2Ftree")
        );
        // Forms and filters of a signed-in admin.
        let admin = app.browser_as("admin", ADMIN_PASSWORD).await;
        let (s, html, _) = admin
            .submit(
                "/tree/nodes",
                &[
                    ("parent_id", &org.pay.to_string()),
                    ("name", "x"),
                    ("title", "X\u{0}"),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
        assert!(html.contains("title"), "{html}");
        let (s, html, _) = admin
            .submit(
                &format!("/tree/nodes/{}/members", org.pay),
                &[("account", "eric\u{0}"), ("role", "owner")],
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
        assert!(html.contains("account"), "{html}");
        for path in [
            "/work-orders?creator=%00",
            "/work-orders?node=%00",
            "/admin/audit?actor=%00",
            "/tree/nodes/1%00",
        ] {
            let (s, html) = admin.get(path).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "GET {path} → {html}");
            assert!(html.contains("NUL"), "{html}");
        }
        assert_eq!(rows(&app, "nodes").await, nodes_before);
    }
);

#[tokio::test]
async fn every_operation_documents_the_errors_its_inputs_can_cause() {
    let app = TestApp::start(crate::common::Backend::Sqlite).await;
    let doc: serde_json::Value = reqwest::get(app.url("/api/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let error_body = json!({"$ref": "#/components/schemas/ErrorBody"});
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let route = format!("{} {path}", method.to_uppercase());
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let reads = |place: &str| params.iter().any(|p| p["in"] == place);
            let mut expected = vec!["401"];
            if reads("path") || reads("query") || op.get("requestBody").is_some() {
                expected.extend(["400", "422"]);
            }
            if reads("path") {
                expected.push("404");
            }
            if op.get("requestBody").is_some() {
                expected.extend(["413", "415"]);
            }
            let responses = op["responses"].as_object().unwrap();
            for status in expected {
                assert!(
                    responses.contains_key(status),
                    "{route} does not document {status}"
                );
            }
            assert!(
                !responses.contains_key("500"),
                "{route} documents a 500 (a bug, never an answer)"
            );
            for (status, response) in responses {
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{route} {status} has no description"
                );
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"], error_body,
                        "{route} {status} is not an ErrorBody in application/json"
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 49, "only {checked} operations");
}
