//! The audit log: who changed what, from where, before and after, in a
//! hash chain that `rollway admin verify-audit` checks.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{ADMIN_PASSWORD, Org, TestApp, USER_PASSWORD};
use crate::db_test;

db_test!(
    admin_changes_are_recorded_with_actor_address_and_before_after,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let org = Org::create(&app).await;
        let (s, _) = org
            .admin
            .patch(
                &format!("/api/v1/nodes/{}", org.pay),
                json!({"title": "Payments"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, page) = org.admin.get("/api/v1/audit?action=node.update").await;
        assert_eq!(s, StatusCode::OK, "{page}");
        let entry = &page["entries"][0];
        assert_eq!(entry["actor"], "admin");
        assert_eq!(entry["source_ip"], "127.0.0.1");
        assert_eq!(entry["target_type"], "node");
        assert_eq!(entry["target_id"], org.pay);
        let before: serde_json::Value =
            serde_json::from_str(entry["before"].as_str().unwrap()).unwrap();
        let after: serde_json::Value =
            serde_json::from_str(entry["after"].as_str().unwrap()).unwrap();
        assert_eq!(
            (before["title"].as_str(), after["title"].as_str()),
            (Some("pay"), Some("Payments"))
        );
        // Every kind of change so far is there: accounts (first admin by
        // "system", users by admin), tokens by the command line, nodes, members.
        let (_, all) = org.admin.get("/api/v1/audit?limit=500").await;
        let actions: Vec<&str> = all["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        for action in [
            "account.create",
            "token.create",
            "node.create",
            "member.add",
            "node.update",
        ] {
            assert!(actions.contains(&action), "{action} missing in {actions:?}");
        }
        let first = all["entries"].as_array().unwrap().last().unwrap();
        assert_eq!(
            (first["id"].as_i64(), first["actor"].as_str()),
            (Some(1), Some("system"))
        );
        let token_row = all["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == "token.create")
            .unwrap();
        assert_eq!(token_row["actor"], "cli");
        // Secrets never reach the log.
        let (_, sa) = org
            .admin
            .post("/api/v1/service-accounts", json!({"name": "bot"}))
            .await;
        let (_, token) = org
            .admin
            .post(
                &format!("/api/v1/service-accounts/{}/tokens", sa["id"]),
                json!({"name": "ci"}),
            )
            .await;
        let secret = token["token"].as_str().unwrap();
        let (_, all) = org.admin.get("/api/v1/audit?limit=500").await;
        let text = serde_json::to_string(&all).unwrap();
        assert!(
            text.contains("token.create") && !text.contains(secret),
            "no token secrets"
        );
        assert!(
            !text.contains("argon2") && !text.contains(USER_PASSWORD),
            "no passwords or hashes"
        );
        // Keyset pages: small pages walk the whole log without overlap.
        let mut seen = Vec::new();
        let mut cursor: Option<i64> = None;
        loop {
            let path = match cursor {
                Some(c) => format!("/api/v1/audit?limit=3&cursor={c}"),
                None => "/api/v1/audit?limit=3".to_string(),
            };
            let (_, page) = org.admin.get(&path).await;
            seen.extend(
                page["entries"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["id"].as_i64().unwrap()),
            );
            match page["next_cursor"].as_i64() {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let mut sorted = seen.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        sorted.dedup();
        assert_eq!(seen, sorted, "newest first, no repeats");
        assert_eq!(*seen.last().unwrap(), 1);
        // Only admins read it; bad parameters are JSON errors.
        let olivia = app.api(Some(&app.token_for("olivia")));
        assert_eq!(olivia.get("/api/v1/audit").await.0, StatusCode::FORBIDDEN);
        assert_eq!(
            org.admin.get("/api/v1/audit?cursor=abc").await.0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            org.admin.get("/api/v1/audit?limit=0").await.0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
);

db_test!(
    page_actions_are_audited_and_the_audit_page_filters,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let _org = Org::create(&app).await;
        let olivia = app.browser_as("olivia", USER_PASSWORD).await;
        let (s, _, _) = olivia
            .submit(
                "/tree/nodes/2/members",
                &[("account", "vera"), ("role", "engineer")],
            )
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let admin = app.browser_as("admin", ADMIN_PASSWORD).await;
        let (s, html) = admin.get("/admin/audit?actor=olivia").await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            html.contains("member.update") && html.contains("vera is engineer on /acme/pay"),
            "{html}"
        );
        assert!(
            !html.contains("node.create"),
            "filtered to olivia's changes"
        );
        assert_eq!(olivia.get("/admin/audit").await.0, StatusCode::FORBIDDEN);
    }
);

db_test!(
    verify_audit_finds_the_first_tampered_row,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let _org = Org::create(&app).await;
        let out = app.cli(&["admin", "verify-audit"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("intact"));
        // Edit a row in place, as someone with database access might.
        app.db
            .execute("UPDATE audit_log SET summary = 'nothing to see' WHERE id = 4")
            .await;
        let out = app.cli(&["admin", "verify-audit"]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("row 4"), "{stderr}");
    }
);

db_test!(verify_audit_notices_removed_rows, |backend| async move {
    let app = TestApp::start(backend).await;
    let _org = Org::create(&app).await;
    app.db.execute("DELETE FROM audit_log WHERE id = 3").await;
    let out = app.cli(&["admin", "verify-audit"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("row 4"),
        "the row after the gap is named"
    );
    // Removing the newest rows is caught by the head.
    let app2 = TestApp::start(backend).await;
    let _org = Org::create(&app2).await;
    app2.db
        .execute("DELETE FROM audit_log WHERE id = (SELECT MAX(id) FROM audit_log)")
        .await;
    let out = app2.cli(&["admin", "verify-audit"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
});
