//! The release pages as people use them: defining an item with its stages,
//! filing with a tag from GitLab, approving, the inbox badge.

use reqwest::StatusCode;

use crate::common::{Browser, TestApp, USER_PASSWORD};
use crate::db_test;
use crate::fake_gitlab::Mode;
use crate::releases::Release;

/// The item editor's fields for the `checkout` item that every save in
/// these tests sends: its node, names, approvals and stage 1 (staging,
/// rolling).
fn checkout_fields(r: &Release) -> Vec<(&'static str, String)> {
    vec![
        ("node_id", r.org.pay.to_string()),
        ("name", "checkout".to_string()),
        ("gitlab_project", "acme/checkout".to_string()),
        (
            "image_repository",
            "registry.example.com/acme/checkout".to_string(),
        ),
        ("required_approvals", "1".to_string()),
        ("auto_rollback", "on".to_string()),
        ("stage_1_name", "staging".to_string()),
        ("stage_1_app", r.staging_app.to_string()),
        ("stage_1_strategy", "rolling".to_string()),
    ]
}

/// Saves the item editor at `page` with `fields`, as `browser` submits it.
async fn save(
    browser: &Browser,
    page: &str,
    fields: Vec<(&'static str, String)>,
) -> (StatusCode, String, Option<String>) {
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    browser.submit(page, &pairs).await
}

db_test!(
    an_owner_defines_a_release_item_in_the_stages_editor,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let r = Release::create(&app, false).await;
        let olivia = app.browser_as("olivia", USER_PASSWORD).await;
        let (s, html) = olivia
            .get(&format!("/release-items/new?node={}", r.org.pay))
            .await;
        assert_eq!(s, StatusCode::OK);
        assert!(html.contains("id=\"release-item-form\""));
        let staging = r.staging_app.to_string();
        let prod = r.prod_app.to_string();
        let node = r.org.pay.to_string();
        let mut fields = vec![
            ("node_id", node.as_str()),
            ("name", "web"),
            ("gitlab_project", "acme/checkout"),
            ("image_repository", "registry.example.com/acme/web"),
            ("required_approvals", "1"),
            ("auto_rollback", "on"),
            ("stage_1_name", "staging"),
            ("stage_1_app", staging.as_str()),
            ("stage_1_strategy", "rolling"),
            ("stage_2_name", "prod"),
            ("stage_2_app", prod.as_str()),
            ("stage_2_strategy", "canary"),
            ("stage_2_steps", "50%, 20%"),
        ];
        let (s, html, _) = olivia.submit("/release-items", &fields).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            html.contains("weights must increase") && html.contains("value=\"50%, 20%\""),
            "kept what was typed"
        );
        fields.pop();
        fields.push(("stage_2_steps", "10%, 50%:300s, 100%"));
        fields.push(("stage_2_header_name", "x-canary"));
        fields.push(("stage_2_header_value", "1"));
        let (s, _, location) = olivia.submit("/release-items", &fields).await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let (_, html) = olivia.get(&location.unwrap()).await;
        assert!(
            html.contains("10%") && html.contains("300 s") && html.contains("x-canary: 1"),
            "{html}"
        );
        let admin = &r.org.admin;
        let (_, items) = admin
            .get(&format!("/api/v1/release-items?node_id={}", r.org.pay))
            .await;
        let web = items
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == "web")
            .unwrap()
            .clone();
        assert_eq!(web["stages"][1]["canary"]["steps"][1]["pause_seconds"], 300);
        // An engineer sees the item but not the editor, and cannot post it.
        let eric = app.browser_as("eric", USER_PASSWORD).await;
        let (_, html) = eric.get(&format!("/release-items/{}", web["id"])).await;
        assert!(!html.contains("id=\"release-item-form\"") && html.contains("File a work order"));
        let (s, _, _) = eric
            .submit(&format!("/release-items/{}", web["id"]), &fields)
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        // The node page lists it.
        let (_, html) = eric.get(&format!("/tree/nodes/{}", r.org.pay)).await;
        assert!(html.contains(&format!("/release-items/{}", web["id"])));
    }
);

db_test!(
    the_stages_editor_keeps_deadlines_and_the_zero_replica_setting,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let r = Release::create(&app, false).await;
        let olivia = app.browser_as("olivia", USER_PASSWORD).await;
        let page = format!("/release-items/{}", r.item);
        let (_, html) = olivia.get(&page).await;
        assert!(
            html.contains("deadline twice the progress deadline")
                && html.contains("name=\"refuse_zero_replicas\" value=\"on\">")
                && !html.contains("id=\"refuses-zero-replicas\""),
            "the defaults: {html}"
        );
        let prod = r.prod_app.to_string();
        let fields = |deadline: &'static str, refuse: bool| {
            let mut f = checkout_fields(&r);
            f.extend([
                ("stage_2_name", "prod".to_string()),
                ("stage_2_app", prod.clone()),
                ("stage_2_strategy", "canary".to_string()),
                ("stage_2_steps", "10%, 50%:60s, 100%".to_string()),
                ("stage_2_deadline", deadline.to_string()),
            ]);
            if refuse {
                f.push(("refuse_zero_replicas", "on".to_string()));
            }
            f
        };
        let submit = |f: Vec<(&'static str, String)>| save(&olivia, &page, f);
        let (s, _, location) = submit(fields("45", true)).await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let (_, html) = olivia.get(&location.unwrap()).await;
        assert!(
            html.contains("name=\"stage_2_deadline\" value=\"45\"")
                && html.contains("deadline 45 min")
                && html.contains("name=\"refuse_zero_replicas\" value=\"on\" checked")
                && html.contains("id=\"refuses-zero-replicas\""),
            "saved and shown: {html}"
        );
        let read = || async {
            let (_, item) = r
                .org
                .admin
                .get(&format!("/api/v1/release-items/{}", r.item))
                .await;
            (
                item["stages"][1]["deadline_minutes"].clone(),
                item["refuse_zero_replicas"].clone(),
            )
        };
        assert_eq!(
            read().await,
            (serde_json::json!(45), serde_json::json!(true))
        );
        // Out of range or not a number: refused, what was typed is kept,
        // nothing changes.
        for (typed, expected) in [
            ("1441", "1 to 1440 minutes"),
            ("an hour", "not a whole number"),
        ] {
            let (s, html, _) = submit(fields(typed, false)).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{typed}");
            assert!(
                html.contains(expected)
                    && html.contains(&format!("name=\"stage_2_deadline\" value=\"{typed}\"")),
                "{typed}: {html}"
            );
            assert_eq!(
                read().await,
                (serde_json::json!(45), serde_json::json!(true)),
                "{typed}"
            );
        }
        // Emptied: back to the defaults.
        let (s, _, _) = submit(fields("", false)).await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        assert_eq!(
            read().await,
            (serde_json::Value::Null, serde_json::json!(false))
        );
        let (_, html) = olivia.get(&page).await;
        assert!(
            html.contains("deadline twice the progress deadline")
                && !html.contains("id=\"refuses-zero-replicas\""),
            "{html}"
        );
    }
);

db_test!(
    an_engineer_files_with_a_gitlab_tag_and_the_owner_approves,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let r = Release::create(&app, false).await;
        let eric = app.browser_as("eric", USER_PASSWORD).await;
        let olivia = app.browser_as("olivia", USER_PASSWORD).await;
        let (_, html) = eric.get(&format!("/work-orders/new?item={}", r.item)).await;
        assert!(
            html.contains("<option value=\"v1.129.0\"") && html.contains("v1.0.0"),
            "tags from GitLab"
        );
        assert!(
            html.contains("staging → checkout in staging"),
            "stages shown"
        );
        let (_, fragment) = eric
            .get(&format!("/work-orders/new/versions?item={}", r.item))
            .await;
        assert!(fragment.starts_with("<div id=\"version-picker\"") && fragment.contains("v1.42.0"));
        let item = r.item.to_string();
        let (s, html, _) = eric
            .submit(
                "/work-orders",
                &[
                    ("item", item.as_str()),
                    ("version", "v7.7.7"),
                    ("title", "Bad tag"),
                    ("description", ""),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(html.contains("is not a tag"));
        let (s, _, location) = eric
            .submit(
                "/work-orders",
                &[
                    ("item", item.as_str()),
                    ("version", "v1.42.0"),
                    // Left blank: the item and version.
                    ("title", " "),
                    ("description", "Faster checkout"),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let order_page = location.unwrap();
        let id = order_page.rsplit('/').next().unwrap().to_string();
        // A second one links to the open order.
        let (s, html, _) = eric
            .submit(
                "/work-orders",
                &[
                    ("item", item.as_str()),
                    ("version", "v1.43.0"),
                    ("title", "Again"),
                    ("description", ""),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT);
        assert!(
            html.contains(&format!("href=\"/work-orders/{id}\"")),
            "links the open order"
        );
        // The engineer sees no decision buttons; the owner does, and a badge.
        let (_, html) = eric.get(&order_page).await;
        assert!(
            html.contains(&format!("#{id} checkout v1.42.0 <span")),
            "default title: {html}"
        );
        assert!(!html.contains("id=\"decision-form\"") && html.contains("id=\"close-form\""));
        let (_, html) = olivia.get(&order_page).await;
        assert!(
            html.contains("id=\"decision-form\"")
                && html.contains(">Approve<")
                && html.contains(">Reject work order<")
        );
        // Rejecting asks why, in the form and behind it.
        assert!(
            html.contains(r#"<textarea name="reason" required"#),
            "{html}"
        );
        let (s, page, _) = olivia
            .submit(&format!("/work-orders/{id}/reject"), &[("reason", " ")])
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(page.contains("give a reason"), "{page}");
        assert!(html.contains("aria-label=\"1 waiting\""), "inbox badge");
        let (_, inbox) = olivia.get("/approvals").await;
        assert!(inbox.contains(&format!("data-order=\"{id}\"")));
        let (s, _, location) = olivia
            .submit(
                &format!("/work-orders/{id}/approve"),
                &[("comment", "ship it")],
            )
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        assert_eq!(location.as_deref(), Some(order_page.as_str()));
        let (_, html) = olivia.get(&order_page).await;
        assert!(html.contains(">Approved<") && html.contains("ship it"));
        assert!(html.contains("data-kind=\"filed\"") && html.contains("data-kind=\"approved\""));
        assert!(!html.contains("aria-label=\"1 waiting\""), "badge cleared");
        assert!(!html.contains("id=\"decision-form\""));
        // The engineer cannot approve by posting anyway.
        let (s, _, _) = eric
            .submit(&format!("/work-orders/{id}/reject"), &[("reason", "no")])
            .await;
        assert_eq!(s, StatusCode::CONFLICT);
        // The list shows it under its filters.
        let (_, list) = eric.get("/work-orders?state=approved").await;
        assert!(list.contains(&format!("data-order=\"{id}\"")));
        let (_, list) = eric.get("/work-orders?state=rejected").await;
        assert!(!list.contains(&format!("data-order=\"{id}\"")));
    }
);

db_test!(
    a_gitlab_outage_is_explained_on_the_new_work_order_page,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let r = Release::create(&app, false).await;
        r.gitlab.set_mode(Mode::Status(500));
        let eric = app.browser_as("eric", USER_PASSWORD).await;
        let (s, html) = eric.get(&format!("/work-orders/new?item={}", r.item)).await;
        assert_eq!(s, StatusCode::OK);
        assert!(html.contains("GitLab answered 500"), "{html}");
    }
);

db_test!(
    release_items_have_a_list_page_and_lists_link_their_nodes,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let r = Release::create(&app, false).await;
        let eric = app.browser_as("eric", USER_PASSWORD).await;
        let (s, html) = eric.get("/release-items").await;
        assert_eq!(s, StatusCode::OK, "a page, not a 405");
        assert!(
            html.contains(&format!(
                r#"<a href="/release-items/{}">checkout</a>"#,
                r.item
            )),
            "{html}"
        );
        assert!(
            html.contains(&format!(
                r#"<a href="/tree/nodes/{}"><code class="path">/acme/pay</code></a>"#,
                r.org.pay
            )),
            "{html}"
        );
        let otto = app.browser_as("otto", USER_PASSWORD).await;
        let (_, html) = otto.get("/release-items").await;
        assert!(
            !html.contains(&format!("data-item=\"{}\"", r.item)),
            "scoped: {html}"
        );
        let api = app.api(Some(&app.token_for("eric")));
        let (_, order) = api
            .post(
                "/api/v1/work-orders",
                crate::releases::order_body(r.item, "v1.1.0"),
            )
            .await;
        let (_, list) = eric.get("/work-orders").await;
        assert!(
            list.contains(&format!(
                r#"<a href="/tree/nodes/{}"><code class="path">/acme/pay</code></a>"#,
                r.org.pay
            )),
            "{list}"
        );
        let (_, page) = eric.get(&format!("/work-orders/{}", order["id"])).await;
        assert!(
            page.contains(&format!(r#"on <a href="/tree/nodes/{}">"#, r.org.pay)),
            "{page}"
        );
    }
);

db_test!(
    the_stages_editor_keeps_a_verification_plan_and_checks_it,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let r = Release::create(&app, false).await;
        let olivia = app.browser_as("olivia", USER_PASSWORD).await;
        let page = format!("/release-items/{}", r.item);
        let gate = r#"error ratio | sum(rate(x{code=~"500|503",pod_template_hash="{{new_hash}}"}[1m])) | < 0.05 | interval=10s count=3 failures=1 inconclusive=1"#;
        let fields = |gates: &str| {
            let mut f = checkout_fields(&r);
            f.extend([
                ("stage_1_gates", gates.to_string()),
                (
                    "stage_1_smoke",
                    "http://{{deployment}}.{{namespace}}.svc/healthz expect=204 timeout=2s"
                        .to_string(),
                ),
                ("stage_1_soak", "120".to_string()),
                ("stage_1_sign_off", "on".to_string()),
                ("stage_2_name", "prod".to_string()),
                ("stage_2_app", r.prod_app.to_string()),
                ("stage_2_strategy", "rolling".to_string()),
            ]);
            f
        };
        let submit = |f: Vec<(&'static str, String)>| save(&olivia, &page, f);
        let plan = || async {
            let (_, item) = r
                .org
                .admin
                .get(&format!("/api/v1/release-items/{}", r.item))
                .await;
            item["stages"][0]["verify"].clone()
        };
        // Gates on a cluster without a Prometheus: refused, nothing saved,
        // what was typed kept.
        let (s, html, _) = submit(fields(gate)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
        assert!(html.contains("has no Prometheus"), "{html}");
        assert!(html.contains("interval=10s count=3"), "kept: {html}");
        assert!(plan().await.is_null());
        // A line that is not a gate: refused naming it.
        let (s, html, _) = submit(fields("error ratio | q")).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
        assert!(html.contains("gate line 1"), "{html}");

        let (_, stage_app) = r
            .org
            .admin
            .get(&format!("/api/v1/apps/{}", r.staging_app))
            .await;
        let (s, v) = r
            .org
            .admin
            .put(
                &format!("/api/v1/clusters/{}/prometheus", stage_app["cluster_id"]),
                serde_json::json!({"url": "http://prometheus.monitoring:9090"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, _, location) = submit(fields(gate)).await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let saved = plan().await;
        assert_eq!(saved["gates"][0]["op"], "<", "{saved}");
        assert_eq!(saved["gates"][0]["interval_seconds"], 10, "{saved}");
        assert_eq!(
            saved["gates"][0]["query"],
            r#"sum(rate(x{code=~"500|503",pod_template_hash="{{new_hash}}"}[1m]))"#,
            "a `|` inside the query stays in it"
        );
        assert_eq!(saved["smoke"][0]["expect_status"], 204, "{saved}");
        assert_eq!(saved["soak_seconds"], 120, "{saved}");
        assert_eq!(saved["sign_off"], true, "{saved}");
        // The editor shows the plan as it is, and saving the page as shown
        // keeps it.
        let (_, html) = olivia.get(&location.unwrap()).await;
        assert!(
            html.contains("name=\"stage_1_soak\" value=\"120\"")
                && html.contains("name=\"stage_1_sign_off\" value=\"on\" checked")
                && html.contains("verified by gate <em>error ratio</em>"),
            "{html}"
        );
        let shown = |name: &str| -> String {
            let at = html
                .find(&format!("name=\"{name}\""))
                .unwrap_or_else(|| panic!("{name} on the page"));
            let start = at + html[at..].find('>').unwrap() + 1;
            let end = start + html[start..].find("</textarea>").unwrap();
            html[start..end]
                .replace("&quot;", "\"")
                .replace("&#34;", "\"")
                .replace("&#39;", "'")
                .replace("&#60;", "<")
                .replace("&#62;", ">")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&#x27;", "'")
                .replace("&amp;", "&")
                .replace("&#38;", "&")
        };
        let mut again = fields(&shown("stage_1_gates"));
        again.retain(|(k, _)| *k != "stage_1_smoke");
        again.push(("stage_1_smoke", shown("stage_1_smoke")));
        let (s, html, _) = submit(again).await;
        assert_eq!(s, StatusCode::SEE_OTHER, "{html}");
        assert_eq!(plan().await, saved, "saved as shown: unchanged");
        // Without the verification fields, the stage has no plan.
        let mut none = fields("");
        none.retain(|(k, _)| {
            !k.starts_with("stage_1_")
                || ["stage_1_name", "stage_1_app", "stage_1_strategy"].contains(k)
        });
        let (s, _, _) = submit(none).await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        assert!(plan().await.is_null());
    }
);
