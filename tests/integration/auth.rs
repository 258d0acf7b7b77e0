//! Login, sessions, logout, CSRF and login rate limits.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{ADMIN_PASSWORD, Backend, Start, TestApp, USER_PASSWORD};
use crate::db_test;

db_test!(admin_logs_in_and_reaches_the_tree, |backend| async move {
    let app = TestApp::start(backend).await;
    let browser = app.browser();
    assert_eq!(
        browser.location_of("/tree").await.as_deref(),
        Some("/login?next=%2Ftree")
    );
    let (status, _) = browser.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, html) = browser.get("/tree").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Service tree"));
    assert!(html.contains("Log out"));
});

db_test!(
    wrong_user_and_wrong_password_get_the_same_message,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let (s1, wrong_password) = app.browser().login("admin", "not-the-password").await;
        let (s2, wrong_user) = app.browser().login("nobody", "not-the-password").await;
        assert_eq!(s1, StatusCode::UNAUTHORIZED);
        assert_eq!(s2, StatusCode::UNAUTHORIZED);
        let message = "Wrong user name or password.";
        assert!(wrong_password.contains(message));
        assert!(wrong_user.contains(message));
    }
);

db_test!(
    session_cookie_is_http_only_and_same_site_lax,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let browser = app.browser();
        let token = browser.csrf("/login").await;
        let resp = browser
            .client
            .post(app.url("/login"))
            .form(&[
                ("csrf_token", token.as_str()),
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        let cookie = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|c| c.starts_with("rollway_session="))
            .expect("session cookie");
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        assert!(cookie.contains("SameSite=Lax"), "{cookie}");
        assert!(
            !cookie.contains("Secure"),
            "plain http must not mark Secure: {cookie}"
        );
    }
);

#[tokio::test]
async fn https_public_url_makes_cookies_secure_with_host_prefix() {
    let app = TestApp::start_with(
        Backend::Sqlite,
        Start {
            args: vec!["--public-url".into(), "https://rollway.example.com".into()],
            ..Start::default()
        },
    )
    .await;
    let resp = reqwest::get(app.url("/login")).await.unwrap();
    let cookies: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let csrf = cookies
        .iter()
        .find(|c| c.contains("rollway_csrf"))
        .expect("csrf cookie");
    assert!(csrf.starts_with("__Host-rollway_csrf="), "{csrf}");
    assert!(csrf.contains("Secure"), "{csrf}");
    // The session cookie is set the same way; a login over plain http in
    // this test would not send it back, so check the name the server reads.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let html = client.get(app.url("/login")).send().await.unwrap();
    let csrf_cookie = html
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let token = crate::common::csrf_from(&html.text().await.unwrap()).unwrap();
    let resp = client
        .post(app.url("/login"))
        .header("cookie", csrf_cookie)
        .form(&[
            ("csrf_token", token.as_str()),
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let session = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.contains("rollway_session"))
        .expect("session cookie");
    assert!(session.starts_with("__Host-rollway_session="), "{session}");
    assert!(
        session.contains("Secure") && session.contains("HttpOnly"),
        "{session}"
    );
}

db_test!(
    logout_ends_the_session_on_the_server,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let other = app.browser_as("admin", ADMIN_PASSWORD).await;
        // A login whose cookies we hold by hand, as a thief holding a copy would.
        let (cookies, token) = raw_login(&app, "admin", ADMIN_PASSWORD).await;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let ok = client
            .get(app.url("/tree"))
            .header("cookie", &cookies)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        let out = client
            .post(app.url("/logout"))
            .header("cookie", &cookies)
            .form(&[("csrf_token", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(out.status(), StatusCode::SEE_OTHER);
        assert_eq!(out.headers().get("location").unwrap(), "/login");
        // The same cookie no longer works, even sent by hand.
        let after = client
            .get(app.url("/tree"))
            .header("cookie", &cookies)
            .send()
            .await
            .unwrap();
        assert_eq!(after.status(), StatusCode::SEE_OTHER);
        assert!(
            after
                .headers()
                .get("location")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("/login")
        );
        // Another session of the same user is untouched.
        assert_eq!(other.get("/tree").await.0, StatusCode::OK);
    }
);

/// Logs in with a bare client and returns the `Cookie` header value
/// (session and CSRF cookies) and a CSRF token for forms.
async fn raw_login(app: &TestApp, user: &str, password: &str) -> (String, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = client.get(app.url("/login")).send().await.unwrap();
    let first = |resp: &reqwest::Response, name: &str| {
        resp.headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
            .find(|c| c.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} cookie"))
    };
    let csrf_cookie = first(&page, "rollway_csrf=");
    let token = crate::common::csrf_from(&page.text().await.unwrap()).unwrap();
    let resp = client
        .post(app.url("/login"))
        .header("cookie", &csrf_cookie)
        .form(&[
            ("csrf_token", token.as_str()),
            ("username", user),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let session = first(&resp, "rollway_session=");
    (format!("{session}; {csrf_cookie}"), token)
}

db_test!(
    disabling_a_user_ends_their_sessions_at_once,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let admin = app.api(Some(&app.admin_token()));
        let (s, v) = admin
            .post(
                "/api/v1/users",
                json!({"name": "dora", "password": USER_PASSWORD}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let id = v["user"]["id"].as_i64().unwrap();
        let dora = app.browser_as("dora", USER_PASSWORD).await;
        assert_eq!(dora.get("/tree").await.0, StatusCode::OK);
        let (s, v) = admin
            .patch(&format!("/api/v1/users/{id}"), json!({"disabled": true}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(v["disabled_at"].is_i64());
        assert_eq!(
            dora.get("/tree").await.0,
            StatusCode::SEE_OTHER,
            "the session must be gone"
        );
        let (status, _) = app.browser().login("dora", USER_PASSWORD).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "a disabled user cannot log in"
        );
        // Re-enabled, she can log in again.
        admin
            .patch(&format!("/api/v1/users/{id}"), json!({"disabled": false}))
            .await;
        assert_eq!(
            app.browser().login("dora", USER_PASSWORD).await.0,
            StatusCode::SEE_OTHER
        );
    }
);

db_test!(
    forms_without_a_valid_csrf_token_are_refused_and_change_nothing,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let browser = app.browser_as("admin", ADMIN_PASSWORD).await;
        // No token at all.
        let (status, html, _) = browser
            .post_raw("/tree/nodes", &[("name", "nocsrf"), ("title", "No CSRF")])
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(html.contains("did not come from Rollway"), "{html}");
        // A token from another browser (another CSRF cookie).
        let other = app.browser();
        let foreign = other.csrf("/login").await;
        let (status, _, _) = browser
            .post_raw(
                "/tree/nodes",
                &[
                    ("csrf_token", foreign.as_str()),
                    ("name", "foreign"),
                    ("title", "Foreign"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // A forged token.
        let (status, _, _) = browser
            .post_raw(
                "/tree/nodes",
                &[
                    ("csrf_token", "AAAA"),
                    ("name", "forged"),
                    ("title", "Forged"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // Nothing was created.
        let (_, nodes) = app.api(Some(&app.admin_token())).get("/api/v1/nodes").await;
        assert_eq!(nodes, json!([]));
        // With the right token the same form works.
        let (status, _, location) = browser
            .submit(
                "/tree/nodes",
                &[("name", "withcsrf"), ("title", "With CSRF")],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(location.unwrap().starts_with("/tree/nodes/"));
        // The login form is protected too.
        let (status, _, _) = app
            .browser()
            .post_raw(
                "/login",
                &[("username", "admin"), ("password", ADMIN_PASSWORD)],
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
);

#[tokio::test]
async fn login_attempts_are_limited_per_user() {
    let app = TestApp::start_with(
        Backend::Sqlite,
        Start {
            args: vec![
                "--login-attempts-per-user".into(),
                "3".into(),
                "--login-attempts-per-ip".into(),
                "100".into(),
            ],
            ..Start::default()
        },
    )
    .await;
    for _ in 0..3 {
        assert_eq!(
            app.browser().login("admin", "wrong-password").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (status, html) = app.browser().login("admin", ADMIN_PASSWORD).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    assert!(html.contains("Too many login attempts"), "{html}");
    // Another user from the same address is not affected.
    let admin = app.api(Some(&app.admin_token()));
    admin
        .post(
            "/api/v1/users",
            json!({"name": "uma", "password": USER_PASSWORD}),
        )
        .await;
    assert_eq!(
        app.browser().login("uma", USER_PASSWORD).await.0,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn login_attempts_are_limited_per_address() {
    let app = TestApp::start_with(
        Backend::Sqlite,
        Start {
            args: vec![
                "--login-attempts-per-user".into(),
                "100".into(),
                "--login-attempts-per-ip".into(),
                "4".into(),
            ],
            ..Start::default()
        },
    )
    .await;
    for name in ["a1", "a2", "a3", "a4"] {
        assert_eq!(
            app.browser().login(name, "wrong-password").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (status, html) = app.browser().login("admin", ADMIN_PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(html.contains("Too many login attempts"));
}

/// The classic open-redirect payloads, as they arrive in a query string.
const REDIRECT_BYPASSES: &[&str] = &[
    "//evil.example.com/x",
    "/%09/evil.example.com",
    "/%0A/evil.example.com",
    "/%0D/evil.example.com",
    "/%0D%0ASet-Cookie:%20a=b",
    "/%5Cevil.example.com",
    "%5C%5Cevil.example.com",
    "/%5C/evil.example.com",
    "/%2F/evil.example.com",
    "/%252F%252Fevil.example.com",
    "https:%2F%2Fevil.example.com",
    "https://evil.example.com",
    "javascript:alert(1)",
    "/%20/evil.example.com",
    "evil.example.com",
];

db_test!(login_only_follows_local_next_paths, |backend| async move {
    let app = TestApp::start(backend).await;
    let login_with = |next: String| {
        let app = &app;
        async move {
            let browser = app.browser();
            let token = browser.csrf("/login").await;
            browser
                .post_raw(
                    "/login",
                    &[
                        ("csrf_token", token.as_str()),
                        ("username", "admin"),
                        ("password", ADMIN_PASSWORD),
                        ("next", next.as_str()),
                    ],
                )
                .await
        }
    };
    let signed_in = app.browser_as("admin", ADMIN_PASSWORD).await;
    for payload in REDIRECT_BYPASSES {
        // Already signed in: GET /login?next=… goes on at once.
        let resp = signed_in
            .client
            .get(app.url(&format!("/login?next={payload}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{payload}");
        assert_eq!(resp.headers()["location"], "/", "{payload}");
        // Signing in with it in the form (the form decodes it once).
        let decoded: String = url::form_urlencoded::parse(format!("n={payload}").as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned();
        let (status, _, location) = login_with(decoded).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{payload}");
        assert_eq!(location.as_deref(), Some("/"), "{payload}");
    }
    // A NUL is refused before anything else (422, no redirect at all).
    let resp = signed_in
        .client
        .get(app.url("/login?next=/%00//evil.example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(resp.headers().get("location").is_none());
    let (_, _, location) = login_with("/admin/users?x=1".into()).await;
    assert_eq!(location.as_deref(), Some("/admin/users?x=1"));
});

db_test!(
    changing_ones_password_ends_the_session_and_the_new_one_works,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let browser = app.browser_as("admin", ADMIN_PASSWORD).await;
        let (status, html, _) = browser
            .submit(
                "/account/password",
                &[
                    ("current_password", "wrong-one-123"),
                    ("new_password", "a-new-password-1"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(html.contains("current password is wrong"));
        let (status, _, location) = browser
            .submit(
                "/account/password",
                &[
                    ("current_password", ADMIN_PASSWORD),
                    ("new_password", "a-new-password-1"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(location.as_deref(), Some("/login"));
        assert_eq!(browser.get("/tree").await.0, StatusCode::SEE_OTHER);
        assert_eq!(
            app.browser().login("admin", ADMIN_PASSWORD).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            app.browser().login("admin", "a-new-password-1").await.0,
            StatusCode::SEE_OTHER
        );
    }
);

db_test!(
    password_changes_are_limited_like_logins,
    |backend| async move {
        let app = TestApp::start_with(
            backend,
            Start {
                args: vec!["--login-attempts-per-user".into(), "3".into()],
                ..Start::default()
            },
        )
        .await;
        let browser = app.browser_as("admin", ADMIN_PASSWORD).await;
        let attempt = |password: &'static str| {
            let browser = &browser;
            async move {
                browser
                    .submit(
                        "/account/password",
                        &[
                            ("current_password", password),
                            ("new_password", "a-new-password-1"),
                        ],
                    )
                    .await
            }
        };
        // The login used one of the three attempts a minute.
        for _ in 0..2 {
            assert_eq!(
                attempt("wrong-one-123").await.0,
                StatusCode::UNPROCESSABLE_ENTITY
            );
        }
        let (status, html, _) = attempt("wrong-one-123").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(html.contains("Too many password attempts"), "{html}");
        // Even the right password waits now: nothing changed.
        assert_eq!(
            attempt(ADMIN_PASSWORD).await.0,
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(browser.get("/account").await.0, StatusCode::OK);
    }
);

db_test!(
    a_client_cannot_choose_its_address_behind_a_trusted_proxy,
    |backend| async move {
        let app = TestApp::start_with(
            backend,
            Start {
                args: vec![
                    "--trusted-proxies".into(),
                    "1".into(),
                    "--login-attempts-per-ip".into(),
                    "3".into(),
                ],
                ..Start::default()
            },
        )
        .await;
        // The test client plays the proxy: it appends what it saw
        // (203.0.113.9) after whatever the client wrote.
        let login_via_proxy = |user: String, forged: String| {
            let app = &app;
            async move {
                let browser = app.browser();
                let token = browser.csrf("/login").await;
                browser
                    .client
                    .post(app.url("/login"))
                    .header("x-forwarded-for", format!("{forged}, 203.0.113.9"))
                    .form(&[
                        ("csrf_token", token.as_str()),
                        ("username", user.as_str()),
                        ("password", "wrong-password"),
                    ])
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        };
        for i in 0..3 {
            assert_eq!(
                login_via_proxy(format!("nobody{i}"), format!("198.51.100.{i}")).await,
                StatusCode::UNAUTHORIZED
            );
        }
        // A fresh forged entry does not buy a fresh budget.
        assert_eq!(
            login_via_proxy("nobody9".into(), "198.51.100.77".into()).await,
            StatusCode::TOO_MANY_REQUESTS
        );
        // The audit log records the address the proxy saw.
        let admin = app.api(Some(&app.admin_token()));
        let resp = reqwest::Client::new()
            .post(app.url("/api/v1/nodes"))
            .bearer_auth(app.admin_token())
            .header("x-forwarded-for", "6.6.6.6, 203.0.113.10")
            .json(&json!({"name": "acme", "title": "Acme"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let (_, audit) = admin.get("/api/v1/audit?action=node.create").await;
        assert_eq!(audit["entries"][0]["source_ip"], "203.0.113.10", "{audit}");
    }
);
