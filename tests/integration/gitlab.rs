//! The GitLab connection: settings with a write-only token, and failures
//! that surface as 502 naming GitLab.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{ADMIN_PASSWORD, Backend, Start, TestApp};
use crate::db_test;
use crate::fake_gitlab::{FakeGitlab, Mode, TOKEN};

db_test!(
    the_gitlab_token_is_write_only_and_sealed,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let gitlab = FakeGitlab::start().await;
        let admin = app.api(Some(&app.admin_token()));
        let (s, v) = admin
            .put(
                "/api/v1/settings/gitlab",
                json!({"url": gitlab.url, "token": TOKEN}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["connected"], true, "{v}");
        assert_eq!(v["token_set"], true);
        assert_eq!(v["updated_by"], "admin");
        let (_, got) = admin.get("/api/v1/settings/gitlab").await;
        let stored = app
            .db
            .query_text("SELECT value FROM settings WHERE key = 'gitlab.token'")
            .await
            .unwrap();
        assert!(stored.starts_with("v1:") && !stored.contains(TOKEN));
        let page = app
            .browser_as("admin", ADMIN_PASSWORD)
            .await
            .get("/admin/settings")
            .await
            .1;
        assert!(page.contains("Token set <time datetime="), "{page}");
        for text in [
            v.to_string(),
            got.to_string(),
            page,
            app.output(),
            admin.get("/api/v1/audit").await.1.to_string(),
        ] {
            assert!(!text.contains(TOKEN), "the GitLab token leaked");
        }
        // A wrong token is saved but reported as not connected.
        let (s, v) = admin
            .put(
                "/api/v1/settings/gitlab",
                json!({"url": gitlab.url, "token": "wrong"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["connected"], false);
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("GitLab answered 401"),
            "{v}"
        );
        // Bad URLs are refused.
        let (s, _) = admin
            .put(
                "/api/v1/settings/gitlab",
                json!({"url": "ftp://x", "token": "t"}),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        let olivia_like = app.api(None);
        assert_eq!(
            olivia_like.get("/api/v1/settings/gitlab").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
);

#[tokio::test]
async fn a_hanging_gitlab_fails_within_the_deadline() {
    let app = TestApp::start_with(
        Backend::Sqlite,
        Start {
            args: vec!["--gitlab-timeout-seconds".into(), "1".into()],
            ..Start::default()
        },
    )
    .await;
    let gitlab = FakeGitlab::start().await;
    gitlab.set_mode(Mode::Hang);
    let admin = app.api(Some(&app.admin_token()));
    let (s, v) = admin
        .put(
            "/api/v1/settings/gitlab",
            json!({"url": gitlab.url, "token": TOKEN}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["connected"], false);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("did not answer within 1 s"),
        "{v}"
    );
}
