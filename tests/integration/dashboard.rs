//! What runs where: the dashboard, the release item's "Running now" and
//! `GET /api/v1/release-items/{id}/status` read each stage from its
//! cluster's Deployment watch (not from Rollway's records), with the last
//! order that touched it and the order waiting for approval.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::api::{Api as KubeApi, Patch, PatchParams};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestApp, USER_PASSWORD, eventually};
use crate::db_test;
use crate::engine::{IMAGE, Rollout, engine_start, stage, wait_stage};

/// The item's status once `check` holds for it (the watch warms up on
/// the first read).
async fn status_when(r: &Rollout, check: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/api/v1/release-items/{}/status", r.item);
    let check = &check;
    let ok = eventually(Duration::from_secs(30), || {
        let api = r.eric.clone();
        let path = path.clone();
        async move { check(&api.get(&path).await.1) }
    })
    .await;
    let last = r.eric.get(&path).await.1;
    assert!(ok, "the status never got there: {last:#}");
    last
}

db_test!(
    the_dashboard_shows_what_each_cluster_runs_and_who_changed_it,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        // Before any order: what the clusters run, read from them.
        let v = status_when(&r, |v| {
            v["stages"].as_array().is_some_and(|s| {
                s.iter()
                    .all(|s| s["live"] == "running" && s["ready_replicas"] == 2)
            })
        })
        .await;
        let staging = &v["stages"][0];
        assert_eq!(staging["running"], "v1.0.0", "{v}");
        assert_eq!(staging["image"], format!("{IMAGE}:v1.0.0"));
        assert_eq!(staging["desired_replicas"], 2);
        assert_eq!(
            (staging["cluster"].as_str(), staging["environment"].as_str()),
            (Some("staging"), Some("staging"))
        );
        assert!(staging["last_order"].is_null() && v["waiting_for_approval"].is_null());
        assert!(staging["as_of"].as_i64().is_some(), "says how fresh it is");

        // An order waiting for approval shows on the item's row.
        let (_, order) = r
            .eric
            .post(
                "/api/v1/work-orders",
                json!({"release_item_id": r.item, "version": "v1.1.0", "title": "Ship"}),
            )
            .await;
        let id = order["id"].as_i64().unwrap();
        let (_, v) = r
            .eric
            .get(&format!("/api/v1/release-items/{}/status", r.item))
            .await;
        assert_eq!(v["waiting_for_approval"]["id"], id);
        let browser = app.browser_as("eric", USER_PASSWORD).await;
        let (s, html) = browser.get("/").await;
        assert_eq!(s, StatusCode::OK);
        assert!(html.contains(&format!("data-waiting=\"{id}\"")), "{html}");
        assert!(
            html.contains(r#"<code class="tag" data-live="running">v1.0.0</code>"#),
            "{html}"
        );
        assert!(html.contains("2/2 ready"), "{html}");

        // Deployed: the cluster runs the new tag, and the stage names its order.
        r.olivia
            .post(&format!("/api/v1/work-orders/{id}/approve"), json!({}))
            .await;
        r.eric
            .post(
                &format!("/api/v1/work-orders/{id}/stages/1/deploy"),
                json!({}),
            )
            .await;
        wait_stage(&r.eric, id, 1, "succeeded").await;
        let v = status_when(&r, |v| v["stages"][0]["running"] == "v1.1.0").await;
        assert_eq!(v["stages"][0]["last_order"]["id"], id);
        assert_eq!(v["stages"][0]["last_order"]["state"], "in_progress");
        assert_eq!(v["stages"][0]["last_order"]["stage_status"], "succeeded");
        assert_eq!(v["stages"][1]["running"], "v1.0.0", "prod untouched");
        assert!(v["stages"][1]["last_order"].is_null());
        assert!(v["waiting_for_approval"].is_null());
        assert_eq!(stage(&r.eric, id, 1).await["status"], "succeeded");

        // Changed behind Rollway's back: the dashboard follows the cluster.
        KubeApi::<Deployment>::namespaced(Client::new(r.sim.sim.router(), "default"), "prod")
            .patch(
                "checkout",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "app", "image": "nginx:1.27"}
                ]}}}})),
            )
            .await
            .unwrap();
        let v = status_when(&r, |v| v["stages"][1]["running"] == "nginx:1.27").await;
        assert_eq!(v["stages"][1]["image"], "nginx:1.27");
        let (_, html) = browser.get(&format!("/release-items/{}", r.item)).await;
        assert!(
            html.contains("id=\"running-now\"") && html.contains("nginx:1.27"),
            "{html}"
        );

        // Someone who may not see the item sees neither it nor its status.
        let otto = app.api(Some(&app.token_for("otto")));
        let (s, _) = otto
            .get(&format!("/api/v1/release-items/{}/status", r.item))
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let otto_page = app.browser_as("otto", USER_PASSWORD).await;
        let (_, html) = otto_page.get("/").await;
        assert!(
            !html.contains(&format!("data-item=\"{}\"", r.item)),
            "{html}"
        );
    }
);

db_test!(
    an_app_whose_deployment_does_not_exist_is_flagged,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        let (s, a) = r
            .org
            .admin
            .post(
                "/api/v1/apps",
                json!({"name": "ghost", "cluster_id": r.staging_cluster, "namespace": "staging",
                       "deployment": "ghost", "container": "app", "node_id": r.org.pay_api}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{a}");
        assert_eq!(
            a["warnings"],
            json!([
                "Deployment staging/ghost does not exist in cluster staging: deploys to this app fail until it does."
            ]),
            "saved, with a warning"
        );
        // A container the Deployment lacks is said too; a right app has no warning.
        let (s, wrong) = r
            .org
            .admin
            .patch(
                &format!("/api/v1/apps/{}", a["id"]),
                json!({"name": "ghost", "cluster_id": r.staging_cluster, "namespace": "staging",
                       "deployment": "checkout", "container": "nope", "node_id": r.org.pay_api}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{wrong}");
        assert!(
            wrong["warnings"][0]
                .as_str()
                .unwrap()
                .contains("has no container nope (it has app)"),
            "{wrong}"
        );
        let (_, right) = r
            .org
            .admin
            .patch(
                &format!("/api/v1/apps/{}", a["id"]),
                json!({"name": "ghost", "cluster_id": r.staging_cluster, "namespace": "staging",
                       "deployment": "ghost", "container": "app", "node_id": r.org.pay_api}),
            )
            .await;
        assert_eq!(
            right["warnings"].as_array().map(Vec::len),
            Some(1),
            "ghost again: {right}"
        );
        let (s, item) = r
            .org
            .admin
            .post(
                "/api/v1/release-items",
                json!({"node_id": r.org.pay, "name": "ghost", "gitlab_project": "acme/checkout",
                       "image_repository": IMAGE, "required_approvals": 1,
                       "stages": [{"name": "staging", "app_id": a["id"], "strategy": "rolling"}]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{item}");
        let path = format!("/api/v1/release-items/{}/status", item["id"]);
        let missing = eventually(Duration::from_secs(30), || {
            let api = r.eric.clone();
            let path = path.clone();
            async move { api.get(&path).await.1["stages"][0]["live"] == "missing" }
        })
        .await;
        assert!(missing, "{}", r.eric.get(&path).await.1);
        let browser = app.browser_as("eric", USER_PASSWORD).await;
        let (_, html) = browser.get("/").await;
        assert!(html.contains("Deployment missing"), "{html}");
    }
);

db_test!(
    the_dashboard_pages_and_filters_the_items,
    |backend| async move {
        let app = TestApp::start(backend).await;
        // One item ("checkout") comes with the release; fifty more.
        let r = crate::releases::Release::create(&app, false).await;
        for n in 0..50 {
            let (s, v) = r
                .org
                .admin
                .post(
                    "/api/v1/release-items",
                    crate::releases::item_body(
                        r.org.pay,
                        &format!("svc-{n:02}"),
                        r.staging_app,
                        r.prod_app,
                    ),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
        }
        let browser = app.browser_as("eric", USER_PASSWORD).await;
        let rows = |html: &str| html.matches("<tr data-item=").count();
        let (_, first) = browser.get("/").await;
        assert_eq!(rows(&first), 50, "fifty items a page");
        assert!(first.contains("Page 1 of 2") && first.contains(r#"rel="next""#));
        let (_, second) = browser.get("/?page=2").await;
        assert_eq!(rows(&second), 1);
        assert!(second.contains(">svc-49<"), "by node and name: {second}");
        let (_, filtered) = browser.get("/?q=SVC-4").await;
        assert_eq!(rows(&filtered), 10, "svc-40 … svc-49");
        let (_, by_node) = browser.get("/?q=acme/pay").await;
        assert_eq!(rows(&by_node), 50);
        let (s, none) = browser.get("/?q=nothing").await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            none.contains("No release item you can see starts with “nothing”"),
            "{none}"
        );
        let (s, _) = browser.get("/?page=99").await;
        assert_eq!(s, StatusCode::OK, "a page past the end shows the last");
    }
);

db_test!(
    the_dashboard_follows_every_change_it_shows,
    |backend| async move {
        // Pages are kept between requests while nothing they show changed:
        // each change below must show on the next request.
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        let browser = app.browser_as("eric", USER_PASSWORD).await;
        let page_when = |needle: String| {
            let browser = &browser;
            async move {
                let ok = eventually(Duration::from_secs(30), || async {
                    browser.get("/").await.1.contains(&needle)
                })
                .await;
                let html = browser.get("/").await.1;
                assert!(ok, "the dashboard never showed {needle:?}:\n{html}");
                html
            }
        };
        let html = page_when(r#"<code class="tag" data-live="running">v1.0.0</code>"#.into()).await;
        // The item's status API is kept the same way, and follows the same
        // changes.
        let status_path = format!("/api/v1/release-items/{}/status", r.item);
        let status = || async {
            let (s, v) = r.eric.get(&status_path).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            v
        };
        assert_eq!(status().await["stages"][0]["last_order"], Value::Null);
        // The running tag links to its page in GitLab.
        let tag_link = |base: &str| format!("<a href=\"{base}/acme/checkout/-/tags/v1.0.0\"");
        assert!(html.contains(&tag_link(&r.gitlab.url)), "{html}");
        // The same page again, unchanged.
        assert!(
            browser
                .get("/")
                .await
                .1
                .contains("No order has deployed here yet.")
        );

        let (s, v) = r
            .eric
            .post(
                "/api/v1/work-orders",
                crate::releases::order_body(r.item, "v1.1.0"),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(
            status().await["waiting_for_approval"]["id"],
            v["id"],
            "the order waiting for approval"
        );
        let (s, v) = r
            .eric
            .post(
                &format!("/api/v1/work-orders/{}/close", v["id"]),
                json!({"reason": "not this one"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(status().await["waiting_for_approval"], Value::Null);

        let id = crate::engine::approved_order(&r.eric, &r.olivia, r.item, "v1.1.0").await;
        let html = browser.get("/").await.1;
        assert!(
            !html.contains("data-waiting"),
            "approved, not waiting: {html}"
        );
        assert!(
            html.contains("No order has deployed here yet."),
            "nothing deployed yet: {html}"
        );
        r.deploy(id, 1).await;
        wait_stage(&r.eric, id, 1, "succeeded").await;
        let html = browser.get("/").await.1;
        assert!(
            html.contains(&format!("<a href=\"/work-orders/{id}\">#{id} v1.1.0</a>")),
            "the stage's last order: {html}"
        );
        let last = &status().await["stages"][0]["last_order"];
        assert_eq!(
            (&last["id"], &last["stage_status"]),
            (&json!(id), &json!("succeeded"))
        );

        // The item renamed, through the API.
        let (_, item) = r
            .eric
            .get(&format!("/api/v1/release-items/{}", r.item))
            .await;
        let stages: Vec<Value> = item["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| json!({"name": s["name"], "app_id": s["app_id"], "strategy": s["strategy"]}))
            .collect();
        let body = json!({
            "node_id": item["node_id"], "name": "checkout-renamed",
            "gitlab_project": item["gitlab_project"], "image_repository": item["image_repository"],
            "required_approvals": item["required_approvals"], "stages": stages
        });
        let (s, v) = r
            .olivia
            .put(&format!("/api/v1/release-items/{}", r.item), body)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(browser.get("/").await.1.contains(">checkout-renamed</a>"));

        // A cluster's environment changed by an admin.
        let (s, v) = r
            .org
            .admin
            .patch(
                &format!("/api/v1/clusters/{}", r.prod_cluster),
                json!({"environment": "test"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(browser.get("/").await.1.contains("on prod (test)"));
        let stages = status().await["stages"].clone();
        assert!(
            stages
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["environment"] == "test"),
            "{stages}"
        );

        // GitLab moved: the tag links follow.
        let moved = crate::fake_gitlab::FakeGitlab::start().await;
        moved.add_project(42, "acme/checkout", &["v1.0.0"]);
        let (s, v) = r
            .org
            .admin
            .put(
                "/api/v1/settings/gitlab",
                json!({"url": moved.url, "token": crate::fake_gitlab::TOKEN}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let html = browser.get("/").await.1;
        assert!(html.contains(&tag_link(&moved.url)), "{html}");
        // Admins may open a cluster: its name links to its page.
        let cluster_link = format!(
            "<a href=\"/admin/clusters/{}\">staging</a>",
            r.staging_cluster
        );
        assert!(!html.contains(&cluster_link), "not for engineers");
        let admin = app.browser_as("admin", crate::common::ADMIN_PASSWORD).await;
        assert!(admin.get("/").await.1.contains(&cluster_link));

        // Who may read the item is checked on every request, kept or not.
        let otto = app.api(Some(&app.token_for("otto")));
        let (s, _) = otto.get(&status_path).await;
        assert_eq!(
            s,
            StatusCode::NOT_FOUND,
            "kept, yet not for readers outside"
        );
    }
);
