//! The service tree over the API and the pages: paths, validation,
//! deletion rules, members, and role scoping by path.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{ADMIN_PASSWORD, Org, TestApp, USER_PASSWORD};
use crate::db_test;

db_test!(nodes_get_materialised_paths, |backend| async move {
    let app = TestApp::start(backend).await;
    let org = Org::create(&app).await;
    let (s, v) = org
        .admin
        .get(&format!("/api/v1/nodes/{}", org.pay_api))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["path"], "/acme/pay/api");
    assert_eq!(v["parent_id"], org.pay);
    let (_, all) = org.admin.get("/api/v1/nodes").await;
    let paths: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["/acme", "/acme/pay", "/acme/pay/api", "/acme/payroll"]
    );
    let (s, v) = org
        .admin
        .patch(
            &format!("/api/v1/nodes/{}", org.pay),
            json!({"title": "Payments"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["title"], "Payments");
    assert_eq!(v["path"], "/acme/pay");
});

db_test!(
    bad_node_input_is_refused_and_changes_nothing,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let org = Org::create(&app).await;
        let long = "a".repeat(64);
        let cases = [
            (
                json!({"parent_id": org.acme, "name": "", "title": "x"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "name",
            ),
            (
                json!({"parent_id": org.acme, "name": long, "title": "x"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "name",
            ),
            (
                json!({"parent_id": org.acme, "name": "Not A Slug", "title": "x"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "name",
            ),
            (
                json!({"parent_id": org.acme, "name": "ok", "title": "  "}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "title",
            ),
            (
                json!({"parent_id": org.acme, "name": "ok", "title": "t".repeat(201)}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "title",
            ),
            (
                json!({"parent_id": 999999, "name": "ok", "title": "x"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "parent_id",
            ),
            (
                json!({"parent_id": org.acme, "name": "pay", "title": "Duplicate"}),
                StatusCode::CONFLICT,
                "",
            ),
        ];
        for (body, status, field) in cases {
            let (s, v) = org.admin.post("/api/v1/nodes", body.clone()).await;
            assert_eq!(s, status, "{body} → {v}");
            if !field.is_empty() {
                assert_eq!(v["error"]["field"], field, "{v}");
            }
        }
        let (_, v) = org
            .admin
            .post(
                "/api/v1/nodes",
                json!({"parent_id": org.acme, "name": "pay", "title": "x"}),
            )
            .await;
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("/acme/pay"),
            "{v}"
        );
        let (_, all) = org.admin.get("/api/v1/nodes").await;
        assert_eq!(all.as_array().unwrap().len(), 4, "nothing was created");
        // Unknown ids.
        assert_eq!(
            org.admin.get("/api/v1/nodes/999999").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            org.admin
                .patch("/api/v1/nodes/999999", json!({"title": "x"}))
                .await
                .0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            org.admin.delete("/api/v1/nodes/999999").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            org.admin.get("/api/v1/nodes/999999/members").await.0,
            StatusCode::NOT_FOUND
        );
    }
);

db_test!(
    a_node_with_children_cannot_be_deleted,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let org = Org::create(&app).await;
        let (s, v) = org
            .admin
            .delete(&format!("/api/v1/nodes/{}", org.pay))
            .await;
        assert_eq!(s, StatusCode::CONFLICT);
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("/acme/pay") && message.contains("api"),
            "{message}"
        );
        assert_eq!(
            org.admin.get(&format!("/api/v1/nodes/{}", org.pay)).await.0,
            StatusCode::OK
        );
        // A leaf goes, with its memberships; then its parent may go too.
        assert_eq!(
            org.admin
                .delete(&format!("/api/v1/nodes/{}", org.pay_api))
                .await
                .0,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            org.admin
                .get(&format!("/api/v1/nodes/{}", org.pay_api))
                .await
                .0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            org.admin
                .delete(&format!("/api/v1/nodes/{}", org.pay))
                .await
                .0,
            StatusCode::NO_CONTENT
        );
    }
);

db_test!(
    members_are_added_changed_and_removed,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let org = Org::create(&app).await;
        let path = format!("/api/v1/nodes/{}/members", org.pay_api);
        let (s, m) = org
            .admin
            .post(&path, json!({"account": "vera", "role": "engineer"}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{m}");
        assert_eq!(m["role"], "engineer");
        let (s, m) = org
            .admin
            .post(&path, json!({"account": "vera", "role": "owner"}))
            .await;
        assert_eq!(s, StatusCode::OK, "changing the role of a member: {m}");
        let (_, list) = org.admin.get(&path).await;
        assert_eq!(list.as_array().unwrap().len(), 1);
        assert_eq!(list[0]["account"], "vera");
        assert_eq!(list[0]["role"], "owner");
        // Bad members.
        let (s, v) = org
            .admin
            .post(&path, json!({"account": "nobody", "role": "owner"}))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(v["error"]["message"].as_str().unwrap().contains("nobody"));
        let (s, _) = org
            .admin
            .post(&path, json!({"account": "vera", "role": "admin"}))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        let account_id = list[0]["account_id"].as_i64().unwrap();
        assert_eq!(
            org.admin.delete(&format!("{path}/{account_id}")).await.0,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            org.admin.delete(&format!("{path}/{account_id}")).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(org.admin.get(&path).await.1, json!([]));
    }
);

db_test!(
    an_owner_of_a_b_governs_a_b_c_and_not_a_bc,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let org = Org::create(&app).await;
        // olivia owns /acme/pay.
        let olivia = app.api(Some(&app.token_for("olivia")));
        let (s, _) = olivia
            .patch(
                &format!("/api/v1/nodes/{}", org.pay_api),
                json!({"title": "API"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "/acme/pay covers /acme/pay/api");
        let (s, _) = olivia
            .patch(
                &format!("/api/v1/nodes/{}", org.pay),
                json!({"title": "Pay"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "/acme/pay covers itself");
        let (s, v) = olivia
            .patch(
                &format!("/api/v1/nodes/{}", org.payroll),
                json!({"title": "Payroll"}),
            )
            .await;
        // She may not even see /acme/payroll: it answers like a missing node.
        assert_eq!(
            s,
            StatusCode::NOT_FOUND,
            "/acme/pay must not cover /acme/payroll: {v}"
        );
        assert_eq!(v["error"]["code"], "not_found");
        let (s, _) = olivia
            .patch(
                &format!("/api/v1/nodes/{}", org.acme),
                json!({"title": "Acme"}),
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "a role does not reach up");
        // She may create below her node but not delete it (its parent decides).
        let (s, _) = olivia
            .post(
                "/api/v1/nodes",
                json!({"parent_id": org.pay, "name": "web", "title": "Web"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        let (s, _) = olivia.delete(&format!("/api/v1/nodes/{}", org.pay)).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        // Granting her a role is effective at once, revoking too.
        let (s, m) = org
            .admin
            .post(
                &format!("/api/v1/nodes/{}/members", org.payroll),
                json!({"account": "olivia", "role": "owner"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!(
            olivia
                .patch(
                    &format!("/api/v1/nodes/{}", org.payroll),
                    json!({"title": "Payroll"})
                )
                .await
                .0,
            StatusCode::OK
        );
        let account_id = m["account_id"].as_i64().unwrap();
        org.admin
            .delete(&format!(
                "/api/v1/nodes/{}/members/{account_id}",
                org.payroll
            ))
            .await;
        assert_eq!(
            olivia
                .patch(
                    &format!("/api/v1/nodes/{}", org.payroll),
                    json!({"title": "Payroll"})
                )
                .await
                .0,
            StatusCode::NOT_FOUND
        );
    }
);

db_test!(
    the_node_page_shows_inherited_approvers_and_hides_what_you_may_not_do,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let org = Org::create(&app).await;
        // The owner sees the member and child forms on a descendant, and the
        // approvers come from /acme/pay where olivia is owner.
        let olivia = app.browser_as("olivia", USER_PASSWORD).await;
        let (s, html) = olivia.get(&format!("/tree/nodes/{}", org.pay_api)).await;
        assert_eq!(s, StatusCode::OK);
        assert!(html.contains("id=\"add-member-form\""));
        assert!(html.contains("id=\"new-child-form\""));
        assert!(
            html.contains("id=\"delete-node-form\""),
            "owner of the parent may delete"
        );
        assert!(
            html.contains("<strong>olivia</strong>") && html.contains("/acme/pay</code>"),
            "approvers from /acme/pay"
        );
        // The engineer sees the page without any of those forms.
        let eric = app.browser_as("eric", USER_PASSWORD).await;
        let (_, html) = eric.get(&format!("/tree/nodes/{}", org.pay_api)).await;
        for form in [
            "add-member-form",
            "new-child-form",
            "delete-node-form",
            "edit-title-form",
        ] {
            assert!(!html.contains(form), "engineer must not see {form}");
        }
        assert!(
            html.contains("role-engineer"),
            "shows the engineer's inherited role"
        );
        // Admin sees admin navigation; others do not.
        let admin = app.browser_as("admin", ADMIN_PASSWORD).await;
        assert!(admin.get("/tree").await.1.contains("href=\"/admin/users\""));
        assert!(!eric.get("/tree").await.1.contains("href=\"/admin/users\""));
    }
);

db_test!(
    pages_create_nodes_and_members_and_report_errors_in_place,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let admin = app.browser_as("admin", ADMIN_PASSWORD).await;
        let (s, _, location) = admin
            .submit("/tree/nodes", &[("name", "acme"), ("title", "Acme")])
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let node_page = location.unwrap();
        let (_, html) = admin.get(&node_page).await;
        assert!(html.contains("Created /acme."), "flash shown once");
        let (_, html) = admin.get(&node_page).await;
        assert!(!html.contains("Created /acme."), "flash consumed");
        let id = node_page.rsplit('/').next().unwrap().to_string();
        // A bad child name re-renders the node page with the message and 422.
        let (s, html, _) = admin
            .submit(
                "/tree/nodes",
                &[
                    ("parent_id", id.as_str()),
                    ("name", "Bad Name"),
                    ("title", "x"),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            html.contains("notice-error") && html.contains("not a slug"),
            "{html}"
        );
        assert!(
            html.contains("value=\"Bad Name\""),
            "the form keeps what was typed"
        );
        // A duplicate is a 409 with the path named.
        admin
            .submit(
                "/tree/nodes",
                &[
                    ("parent_id", id.as_str()),
                    ("name", "pay"),
                    ("title", "Pay"),
                ],
            )
            .await;
        let (s, html, _) = admin
            .submit(
                "/tree/nodes",
                &[
                    ("parent_id", id.as_str()),
                    ("name", "pay"),
                    ("title", "Pay"),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT);
        assert!(html.contains("/acme/pay"));
        // Deleting a node with children names them.
        let (s, html, _) = admin.submit(&format!("/tree/nodes/{id}/delete"), &[]).await;
        assert_eq!(s, StatusCode::CONFLICT);
        assert!(html.contains("still has child nodes: pay"), "{html}");
        // Unknown member.
        let (s, html, _) = admin
            .submit(
                &format!("/tree/nodes/{id}/members"),
                &[("account", "ghost"), ("role", "owner")],
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(html.contains("ghost"));
        // Unknown node page.
        assert_eq!(
            admin.get("/tree/nodes/999999").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            admin.get("/tree/nodes/abc").await.0,
            StatusCode::BAD_REQUEST
        );
    }
);
