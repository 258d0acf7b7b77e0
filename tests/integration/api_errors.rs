//! Bad requests get the right status and SPEC's JSON error, and change
//! nothing.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::TestApp;
use crate::db_test;

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
