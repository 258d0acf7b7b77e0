//! API tokens: shown once, stored as a hash, revocable, expiring.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::TestApp;
use crate::db_test;

async fn service_account_with_token(app: &TestApp) -> (i64, i64, String) {
    let admin = app.api(Some(&app.admin_token()));
    let (s, acme) = admin
        .post("/api/v1/nodes", json!({"name": "acme", "title": "Acme"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, sa) = admin
        .post("/api/v1/service-accounts", json!({"name": "ci-bot", "node": "/acme", "role": "engineer", "description": "GitLab CI"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sa}");
    let sa_id = sa["id"].as_i64().unwrap();
    let (s, tok) = admin
        .post(
            &format!("/api/v1/service-accounts/{sa_id}/tokens"),
            json!({"name": "gitlab", "expires_in_days": 30}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{tok}");
    let _ = acme;
    (
        sa_id,
        tok["id"].as_i64().unwrap(),
        tok["token"].as_str().unwrap().to_string(),
    )
}

db_test!(
    a_token_is_shown_once_prefixed_and_stored_only_as_a_hash,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let (sa_id, token_id, token) = service_account_with_token(&app).await;
        assert!(token.starts_with("rwy_") && token.len() == 44, "{token}");
        let (s, me) = app.api(Some(&token)).get("/api/v1/me").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(me["account"]["name"], "ci-bot");
        assert_eq!(me["account"]["kind"], "service_account");
        assert_eq!(me["admin"], false);
        assert_eq!(
            me["roles"],
            json!([{"node_id": me["roles"][0]["node_id"], "path": "/acme", "role": "engineer"}])
        );
        // Listing never shows the secret, only a prefix, and records the use.
        let admin = app.api(Some(&app.admin_token()));
        let (_, list) = admin
            .get(&format!("/api/v1/service-accounts/{sa_id}/tokens"))
            .await;
        let listed = serde_json::to_string(&list).unwrap();
        assert!(!listed.contains(&token), "listing leaked the token");
        assert_eq!(list[0]["id"], token_id);
        assert_eq!(list[0]["prefix"].as_str().unwrap(), &token[..10]);
        assert!(
            list[0]["last_used_at"].is_i64(),
            "last use recorded: {list}"
        );
        assert!(list[0]["expires_at"].is_i64());
        // The database holds a SHA-256, never the token.
        let stored = app
            .db
            .query_text(&format!(
                "SELECT token_hash FROM api_tokens WHERE id = {token_id}"
            ))
            .await
            .unwrap();
        assert_eq!(stored.len(), 64);
        assert_ne!(stored, token);
        // Nor the server output.
        assert!(!app.output().contains(&token), "the token reached the log");
    }
);

db_test!(a_revoked_token_is_refused_at_once, |backend| async move {
    let app = TestApp::start(backend).await;
    let (_, token_id, token) = service_account_with_token(&app).await;
    let api = app.api(Some(&token));
    assert_eq!(api.get("/api/v1/me").await.0, StatusCode::OK);
    let admin = app.api(Some(&app.admin_token()));
    let (s, v) = admin.delete(&format!("/api/v1/tokens/{token_id}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["revoked_at"].is_i64());
    let (s, v) = api.get("/api/v1/me").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["code"], "unauthorized");
    assert!(v["error"]["message"].as_str().unwrap().contains("revoked"));
});

db_test!(an_expired_token_is_refused, |backend| async move {
    let app = TestApp::start(backend).await;
    let (_, token_id, token) = service_account_with_token(&app).await;
    let api = app.api(Some(&token));
    assert_eq!(api.get("/api/v1/me").await.0, StatusCode::OK);
    app.db
        .execute(&format!(
            "UPDATE api_tokens SET expires_at = 1000 WHERE id = {token_id}"
        ))
        .await;
    let (s, v) = api.get("/api/v1/me").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("expired"),
        "{v}"
    );
});

db_test!(
    tokens_of_a_disabled_service_account_are_refused,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let (sa_id, _, token) = service_account_with_token(&app).await;
        let admin = app.api(Some(&app.admin_token()));
        let (s, _) = admin
            .patch(
                &format!("/api/v1/service-accounts/{sa_id}"),
                json!({"disabled": true}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            app.api(Some(&token)).get("/api/v1/me").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
);

db_test!(
    missing_and_malformed_tokens_get_401_with_a_json_error,
    |backend| async move {
        let app = TestApp::start(backend).await;
        for token in [None, Some("rwy_notarealtoken"), Some("garbage"), Some("")] {
            let (s, v) = app.api(token).get("/api/v1/me").await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{token:?}");
            assert_eq!(v["error"]["code"], "unauthorized", "{v}");
        }
        // A Basic header is not a bearer token.
        let resp = reqwest::Client::new()
            .get(app.url("/api/v1/me"))
            .header("authorization", "Basic YWRtaW46eA==")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        // A browser session does not open the API.
        let browser = app.browser_as("admin", crate::common::ADMIN_PASSWORD).await;
        assert_eq!(browser.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
    }
);

db_test!(token_expiry_and_names_are_validated, |backend| async move {
    let app = TestApp::start(backend).await;
    let (sa_id, _, _) = service_account_with_token(&app).await;
    let admin = app.api(Some(&app.admin_token()));
    for body in [
        json!({"name": "x", "expires_in_days": 0}),
        json!({"name": "", "expires_in_days": 1}),
        json!({"name": "x", "expires_in_days": 99999}),
    ] {
        let (s, v) = admin
            .post(
                &format!("/api/v1/service-accounts/{sa_id}/tokens"),
                body.clone(),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {v}");
    }
    let (s, _) = admin
        .post(
            "/api/v1/service-accounts/999999/tokens",
            json!({"name": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = admin.delete("/api/v1/tokens/999999").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
});

db_test!(
    a_person_makes_and_revokes_their_own_api_tokens,
    |backend| async move {
        let app = TestApp::start(backend).await;
        crate::common::Org::create(&app).await;
        let eric = app.browser_as("eric", crate::common::USER_PASSWORD).await;
        let (s, html, location) = eric
            .submit(
                "/account/tokens",
                &[("name", "laptop"), ("expires_in_days", "30")],
            )
            .await;
        // Post/redirect/get: reloading the page that shows the token does
        // not post the form again.
        assert_eq!(
            (s, location.as_deref()),
            (StatusCode::SEE_OTHER, Some("/account")),
            "{html}"
        );
        let (_, html) = eric.get("/account").await;
        let token = shown_secret(&html, "new-token").expect("the token, shown once");
        // It acts as eric, with eric's roles.
        let api = app.api(Some(&token));
        let (s, me) = api.get("/api/v1/me").await;
        assert_eq!(
            (s, me["account"]["name"].as_str()),
            (StatusCode::OK, Some("eric")),
            "{me}"
        );
        assert!(
            me["roles"].as_array().is_some_and(|r| !r.is_empty()),
            "with his roles: {me}"
        );
        let (_, page) = eric.get("/account").await;
        assert!(
            page.contains("laptop") && !page.contains(&token),
            "listed, never shown again"
        );
        assert_eq!(
            page.matches("data-token-id=\"").count(),
            1,
            "one token made"
        );
        let id: i64 = page
            .split("data-token-id=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|id| id.parse().ok())
            .expect("a token row");
        // Same rules as service-account tokens.
        let (s, _, _) = eric
            .submit(
                "/account/tokens",
                &[("name", "x"), ("expires_in_days", "0")],
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        // Nobody else revokes it from their account page.
        let olivia = app.browser_as("olivia", crate::common::USER_PASSWORD).await;
        let (s, _, _) = olivia
            .submit(&format!("/account/tokens/{id}/revoke"), &[])
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(api.get("/api/v1/me").await.0, StatusCode::OK);
        let (s, _, location) = eric
            .submit(&format!("/account/tokens/{id}/revoke"), &[])
            .await;
        assert_eq!(
            (s, location.as_deref()),
            (StatusCode::SEE_OTHER, Some("/account"))
        );
        assert_eq!(api.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
    }
);

/// The text of the element `<code class="secret" id="{id}">` on `html`.
fn shown_secret(html: &str, id: &str) -> Option<String> {
    html.split(&format!(r#"<code class="secret" id="{id}">"#))
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .map(str::to_string)
}

db_test!(
    secrets_made_in_the_pages_are_shown_once_after_a_redirect,
    |backend| async move {
        // Every form that makes a secret answers 303 (a reload does not
        // make a second one), and the page it leads to shows the secret
        // once: the next load of that page no longer does.
        let app = TestApp::start(backend).await;
        let api = app.api(Some(&app.admin_token()));
        let (s, acme) = api
            .post("/api/v1/nodes", json!({"name": "acme", "title": "Acme"}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{acme}");
        let node = acme["id"].as_i64().unwrap();
        let (s, sa) = api
            .post(
                "/api/v1/service-accounts",
                json!({"name": "ci-bot", "node": "/acme", "role": "engineer"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{sa}");
        let sa = sa["id"].as_i64().unwrap();
        let admin = app.browser_as("admin", crate::common::ADMIN_PASSWORD).await;
        // Posts `fields` to `form`, expects 303 to `to`, and returns the
        // secret `id` on the page there, checking a second load lacks it.
        let once = async |form: &str, fields: &[(&str, &str)], to: &str, page: &str, id: &str| {
            let (s, html, location) = admin.submit(form, fields).await;
            assert_eq!(
                (s, location.as_deref()),
                (StatusCode::SEE_OTHER, Some(to)),
                "{form}: {html}"
            );
            let (s, html) = admin.get(page).await;
            assert_eq!(s, StatusCode::OK, "{page}");
            let secret =
                shown_secret(&html, id).unwrap_or_else(|| panic!("{page} shows it: {html}"));
            let (_, again) = admin.get(page).await;
            assert_eq!(shown_secret(&again, id), None, "{page} shows it once");
            assert!(!again.contains(&secret), "{page}: not anywhere");
            secret
        };

        // A service account's token: it works, and only one was made.
        let page = format!("/admin/service-accounts/{sa}");
        let token = once(
            &format!("{page}/tokens"),
            &[("name", "gitlab")],
            &page,
            &page,
            "new-token",
        )
        .await;
        let (s, me) = app.api(Some(&token)).get("/api/v1/me").await;
        assert_eq!(
            (s, me["account"]["name"].as_str()),
            (StatusCode::OK, Some("ci-bot"))
        );
        let (_, html) = admin.get(&page).await;
        assert_eq!(
            html.matches("data-token-id=\"").count(),
            1,
            "one token made"
        );

        // A user's generated password, and a reset one.
        let password = once(
            "/admin/users",
            &[("name", "nadia"), ("display_name", "Nadia")],
            "/admin/users",
            "/admin/users",
            "one-time-password",
        )
        .await;
        assert_eq!(
            app.browser().login("nadia", &password).await.0,
            StatusCode::SEE_OTHER
        );
        let (_, users) = api.get("/api/v1/users").await;
        let nadia = users
            .as_array()
            .or_else(|| users["items"].as_array())
            .and_then(|all| all.iter().find(|u| u["name"] == "nadia"))
            .and_then(|u| u["id"].as_i64())
            .unwrap_or_else(|| panic!("nadia listed: {users}"));
        let reset = once(
            &format!("/admin/users/{nadia}/reset-password"),
            &[],
            "/admin/users",
            "/admin/users",
            "one-time-password",
        )
        .await;
        assert_ne!(reset, password);
        assert_eq!(
            app.browser().login("nadia", &password).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            app.browser().login("nadia", &reset).await.0,
            StatusCode::SEE_OTHER
        );

        // A webhook's signing secret, on the node page; one destination.
        let page = format!("/tree/nodes/{node}");
        let secret = once(
            &format!("{page}/notification-destinations"),
            &[
                ("name", "release bot"),
                ("kind", "webhook"),
                ("url", "https://hooks.example.invalid/rollway"),
            ],
            &format!("{page}#notifications"),
            &page,
            "new-secret",
        )
        .await;
        assert!(secret.starts_with("whsec_"), "{secret}");
        let (_, list) = api
            .get(&format!("/api/v1/nodes/{node}/notification-destinations"))
            .await;
        assert_eq!(
            list.as_array()
                .or_else(|| list["items"].as_array())
                .map(Vec::len),
            Some(1),
            "{list}"
        );
    }
);
