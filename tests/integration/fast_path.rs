//! The CI fast path end to end: a service account deploys an image
//! straight to its node's app on a dev cluster through the engine and the
//! simulated cluster; a sibling's app and prod clusters are refused; bad
//! input changes nothing; `Idempotency-Key` answers a repeat with the
//! first answer and lets twenty concurrent repeats make one deployment;
//! lanes run side by side without touching the app's Deployment, and go
//! when asked or when idle past the TTL.

use std::time::Duration;

use reqwest::StatusCode;
use rollway::sim::{RunningSim, Sim};
use serde_json::{Value, json};

use crate::common::{Api, Org, Start, TestApp, USER_PASSWORD, eventually};
use crate::db_test;
use crate::engine::{engine_start, sim_config};
use crate::fake_gitlab::{FakeGitlab, TOKEN};
use crate::id_tokens::{AUDIENCE, claims, gitlab_token};

pub(crate) const IMAGE: &str = "registry.example.com/acme/checkout";

/// A simulated cluster registered as `dev` (namespace `dev`: Deployments
/// `checkout` with its Service, and `payroll`) and as `prod` (namespace
/// `prod`: `checkout`); apps `checkout-dev` and `checkout-prod` on
/// `/acme/pay/api`, `payroll-dev` on `/acme/payroll`; a release item of
/// checkout (so its images come from [`IMAGE`]); service account `ci-bot`,
/// engineer on `/acme/pay`, and its token.
pub(crate) struct Fixture {
    pub(crate) org: Org,
    pub(crate) ci: Api,
    /// `ci-bot`'s token.
    pub(crate) token: String,
    /// The service account `ci-bot`.
    pub(crate) ci_bot: i64,
    pub(crate) sim: RunningSim,
    pub(crate) checkout: i64,
    pub(crate) payroll: i64,
    pub(crate) prod: i64,
    pub(crate) item: i64,
}

async fn sim_post(sim: &RunningSim, path: &str, body: Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", sim.url()))
        .bearer_auth("rollway-sim-token")
        .json(&body)
        .send()
        .await
        .expect("the simulated cluster answers");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.text().await.unwrap_or_default()
    );
}

impl Fixture {
    pub(crate) async fn create(app: &TestApp) -> Fixture {
        let sim = Sim::start(sim_config(), "127.0.0.1:0".parse().unwrap())
            .await
            .expect("start the simulated cluster");
        sim.sim
            .create_deployment("dev", "checkout", "app", &format!("{IMAGE}:v1.0.0"), 2, 3);
        sim.sim.create_deployment(
            "dev",
            "payroll",
            "app",
            "registry.example.com/acme/payroll:v1",
            1,
            3,
        );
        sim.sim
            .create_deployment("prod", "checkout", "app", &format!("{IMAGE}:v1.0.0"), 2, 3);
        sim_post(
            &sim,
            "/api/v1/namespaces/dev/services",
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "checkout", "namespace": "dev"},
                   "spec": {"selector": {"app": "checkout"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
        )
        .await;
        let org = Org::create(app).await;
        let mut clusters = Vec::new();
        for name in ["dev", "prod"] {
            let (s, c) = org
                .admin
                .post(
                    "/api/v1/clusters",
                    json!({"name": name, "environment": name, "kubeconfig": sim.kubeconfig()}),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{c}");
            clusters.push(c["id"].as_i64().unwrap());
        }
        let mut apps = Vec::new();
        for (name, cluster, ns, deployment, node) in [
            ("checkout-dev", clusters[0], "dev", "checkout", org.pay_api),
            ("payroll-dev", clusters[0], "dev", "payroll", org.payroll),
            (
                "checkout-prod",
                clusters[1],
                "prod",
                "checkout",
                org.pay_api,
            ),
        ] {
            let (s, a) = org
                .admin
                .post(
                    "/api/v1/apps",
                    json!({"name": name, "cluster_id": cluster, "namespace": ns,
                           "deployment": deployment, "container": "app", "node_id": node}),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{a}");
            apps.push(a["id"].as_i64().unwrap());
        }
        let (s, item) = org
            .admin
            .post(
                "/api/v1/release-items",
                json!({"node_id": org.pay, "name": "checkout", "gitlab_project": "acme/checkout",
                       "image_repository": IMAGE, "required_approvals": 1,
                       "stages": [{"name": "prod", "app_id": apps[2], "strategy": "rolling"}]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{item}");
        let (s, sa) = org
            .admin
            .post(
                "/api/v1/service-accounts",
                json!({"name": "ci-bot", "node": "/acme/pay", "role": "engineer", "description": "GitLab CI"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{sa}");
        let (s, token) = org
            .admin
            .post(
                &format!("/api/v1/service-accounts/{}/tokens", sa["id"]),
                json!({"name": "gitlab"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{token}");
        let token = token["token"].as_str().unwrap().to_string();
        let ci = app.api(Some(&token));
        Fixture {
            org,
            ci,
            token,
            ci_bot: sa["id"].as_i64().unwrap(),
            sim,
            checkout: apps[0],
            payroll: apps[1],
            prod: apps[2],
            item: item["id"].as_i64().unwrap(),
        }
    }

    /// Waits until the checkout app has `count` lanes (the engine removed
    /// the others).
    pub(crate) async fn wait_for_lanes(&self, count: usize) {
        let reached = eventually(Duration::from_secs(30), || async {
            lanes_of(&self.ci, self.checkout).await.len() == count
        })
        .await;
        assert!(reached, "{:?}", lanes_of(&self.ci, self.checkout).await);
    }

    pub(crate) fn image_of(&self, ns: &str, name: &str) -> Option<String> {
        let d = self.sim.sim.deployment(ns, name)?;
        d.spec.template.spec?.containers[0].image.clone()
    }
}

/// Waits until deployment `id` ends; its last answer.
pub(crate) async fn finished(api: &Api, id: i64) -> Value {
    let last = std::sync::Arc::new(std::sync::Mutex::new(Value::Null));
    let ended = eventually(Duration::from_secs(120), || {
        let api = api.clone();
        let last = last.clone();
        async move {
            let (s, v) = api.get(&format!("/api/v1/deployments/{id}")).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            let done = matches!(v["status"].as_str(), Some("succeeded" | "failed"));
            *last.lock().unwrap() = v;
            done
        }
    })
    .await;
    let last = last.lock().unwrap().clone();
    assert!(ended, "deployment {id} did not end: {last}");
    last
}

async fn deployments_of(api: &Api, app: i64) -> Vec<Value> {
    let (s, v) = api.get(&format!("/api/v1/apps/{app}/deployments")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

db_test!(
    a_service_account_deploys_to_its_own_dev_app_but_not_a_siblings_nor_prod,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let f = Fixture::create(&app).await;

        // Found by cluster and name, as CI looks it up.
        let (s, found) = f.ci.get("/api/v1/apps?cluster=dev&name=checkout-dev").await;
        assert_eq!(s, StatusCode::OK, "{found}");
        assert_eq!(found[0]["id"], f.checkout, "{found}");

        // A sibling's app: 403, nothing recorded or written.
        let path = |app: i64| format!("/api/v1/apps/{app}/deployments");
        let (s, v) =
            f.ci.post(
                &path(f.payroll),
                json!({"image": "registry.example.com/acme/payroll:v2"}),
            )
            .await;
        // Reads are scoped like writes: the sibling's app is not there for it.
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
        // One who sees the app but has no engineer or owner role: 403.
        let vera = app.api(Some(&app.token_for("vera")));
        let (s, v) = vera
            .post(
                &path(f.checkout),
                json!({"image": format!("{IMAGE}:v1.1.0")}),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(v["error"]["code"], "forbidden", "{v}");
        assert!(deployments_of(&f.org.admin, f.payroll).await.is_empty());
        assert_eq!(
            f.image_of("dev", "payroll").as_deref(),
            Some("registry.example.com/acme/payroll:v1")
        );

        // Prod: 403 environment_protected, pointing at work orders.
        let (s, v) =
            f.ci.post(&path(f.prod), json!({"image": format!("{IMAGE}:v1.1.0")}))
                .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(v["error"]["code"], "environment_protected", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("work order"),
            "{v}"
        );
        assert!(deployments_of(&f.org.admin, f.prod).await.is_empty());

        // Bad input: a clear error naming the field, nothing recorded.
        for (body, field) in [
            (json!({"image": "Registry/ACME:1"}), "image"),
            (
                json!({"image": "registry.example.com/acme/checkout"}),
                "image",
            ),
            (
                json!({"image": "registry.example.com/other/app:v1"}),
                "image",
            ),
            (json!({"image": format!("{IMAGE}:v1 ")}), "image"),
            (
                json!({"image": format!("{IMAGE}:v1.1.0"), "lane": "Feature/X"}),
                "lane",
            ),
            (
                json!({"image": format!("{IMAGE}:v1.1.0"), "lane": "x".repeat(64)}),
                "lane",
            ),
        ] {
            let (s, v) = f.ci.post(&path(f.checkout), body.clone()).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
            assert_eq!(v["error"]["field"], field, "{body}: {v}");
        }
        let (s, v) =
            f.ci.post(
                &path(f.checkout),
                json!({"image": format!("{IMAGE}:v1"), "extra": 1}),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        let (s, _) =
            f.ci.post(&path(999_999), json!({"image": format!("{IMAGE}:v1.1.0")}))
                .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, v) = app
            .api(Some("rwy_not-a-real-token-at-all-000000000000"))
            .post(
                &path(f.checkout),
                json!({"image": format!("{IMAGE}:v1.1.0")}),
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
        assert!(deployments_of(&f.org.admin, f.checkout).await.is_empty());
        assert_eq!(
            f.image_of("dev", "checkout"),
            Some(format!("{IMAGE}:v1.0.0"))
        );

        // Its own app: 202 pending, then succeeded through the engine.
        let (s, v) =
            f.ci.post(
                &path(f.checkout),
                json!({"image": format!("{IMAGE}:v1.1.0")}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        assert_eq!(v["status"], "pending", "{v}");
        assert_eq!(v["deployment"], "checkout", "{v}");
        assert_eq!(v["created_by"], "ci-bot", "{v}");
        let id = v["id"].as_i64().unwrap();
        let done = finished(&f.ci, id).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert!(
            done["message"]
                .as_str()
                .unwrap()
                .contains("runs registry.example.com/acme/checkout:v1.1.0"),
            "{done}"
        );
        assert_eq!(done["replaced_image"], format!("{IMAGE}:v1.0.0"), "{done}");
        let statuses: Vec<&str> = done["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["pending", "rolling_out", "succeeded"], "{done}");
        assert_eq!(
            f.image_of("dev", "checkout"),
            Some(format!("{IMAGE}:v1.1.0"))
        );
        let listed = deployments_of(&f.ci, f.checkout).await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["id"], id);
        // Audited, by whom.
        let (s, audit) = f
            .org
            .admin
            .get("/api/v1/audit?action=deployment.create")
            .await;
        assert_eq!(s, StatusCode::OK, "{audit}");
        assert!(audit.to_string().contains("ci-bot"), "{audit}");

        // A deployment others may not see is not found for them.
        let otto = app.api(Some(&app.token_for("otto")));
        let (s, _) = otto.get(&format!("/api/v1/deployments/{id}")).await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        // A rollout that never becomes ready fails at its progress deadline,
        // with the reason.
        f.sim.sim.faults().never_ready(":v1.2.0-broken");
        let (s, v) =
            f.ci.post(
                &path(f.checkout),
                json!({"image": format!("{IMAGE}:v1.2.0-broken")}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        let done = finished(&f.ci, v["id"].as_i64().unwrap()).await;
        assert_eq!(done["status"], "failed", "{done}");
        assert!(
            done["message"]
                .as_str()
                .unwrap()
                .contains("progress deadline"),
            "{done}"
        );
    }
);

db_test!(
    an_idempotency_key_replays_the_first_answer_and_twenty_concurrent_repeats_make_one_deployment,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let f = Fixture::create(&app).await;
        let path = format!("/api/v1/apps/{}/deployments", f.checkout);
        let body = json!({"image": format!("{IMAGE}:v1.1.0")});
        let send = |key: &'static str, body: Value| {
            let ci = f.ci.clone();
            let path = path.clone();
            async move {
                let response = ci
                    .send_with(reqwest::Method::POST, &path, |r| {
                        r.header("Idempotency-Key", key).json(&body)
                    })
                    .await;
                let status = response.status();
                let replayed = response.headers().get("Idempotent-Replayed").is_some();
                let value: Value = response.json().await.unwrap_or(Value::Null);
                (status, replayed, value)
            }
        };

        let (s, replayed, first) = send("ci-run-1", body.clone()).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{first}");
        assert!(!replayed);
        let (s, replayed, again) = send("ci-run-1", body.clone()).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{again}");
        assert!(replayed);
        assert_eq!(again, first);
        // Same key, another body: 422, nothing new.
        let (s, _, v) = send("ci-run-1", json!({"image": format!("{IMAGE}:v1.2.0")})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["error"]["field"], "Idempotency-Key", "{v}");
        assert_eq!(deployments_of(&f.ci, f.checkout).await.len(), 1);
        // A key is the account's: another account's same key is its own.
        let (s, _, v) = send("bad key with spaces", body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        finished(&f.ci, first["id"].as_i64().unwrap()).await;

        // Twenty at once with one key: one deployment; every answer is it
        // (202) or "still in flight" (409).
        let body = json!({"image": format!("{IMAGE}:v1.3.0")});
        let answers =
            futures::future::join_all((0..20).map(|_| send("ci-run-2", body.clone()))).await;
        let mut ids = std::collections::BTreeSet::new();
        for (s, _, v) in &answers {
            match *s {
                StatusCode::ACCEPTED => {
                    ids.insert(v["id"].as_i64().unwrap());
                }
                StatusCode::CONFLICT => assert_eq!(v["error"]["code"], "conflict", "{v}"),
                other => panic!("{other}: {v}"),
            }
        }
        assert_eq!(ids.len(), 1, "{answers:?}");
        assert_eq!(deployments_of(&f.ci, f.checkout).await.len(), 2);
        // A failed request (4xx) is kept too: the same key answers the same.
        let (s1, _, v1) = send("ci-run-3", json!({"image": "nope"})).await;
        let (s2, replayed, v2) = send("ci-run-3", json!({"image": "nope"})).await;
        assert_eq!(
            (s1, s2),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                StatusCode::UNPROCESSABLE_ENTITY
            )
        );
        assert!(replayed);
        assert_eq!(v1, v2);
    }
);

pub(crate) async fn lanes_of(api: &Api, app: i64) -> Vec<Value> {
    let (s, v) = api.get(&format!("/api/v1/apps/{app}/lanes")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

db_test!(
    two_lanes_run_side_by_side_without_touching_the_apps_deployment_and_go_when_removed,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let f = Fixture::create(&app).await;
        let path = format!("/api/v1/apps/{}/deployments", f.checkout);
        let base_before = f.sim.sim.deployment("dev", "checkout").unwrap();
        let mut ids = Vec::new();
        for (lane, tag) in [("feat-a", "v1.1.0-a"), ("feat-b", "v1.1.0-b")] {
            let (s, v) =
                f.ci.post(
                    &path,
                    json!({"image": format!("{IMAGE}:{tag}"), "lane": lane}),
                )
                .await;
            assert_eq!(s, StatusCode::ACCEPTED, "{v}");
            assert_eq!(v["deployment"], format!("checkout--{lane}"), "{v}");
            ids.push(v["id"].as_i64().unwrap());
        }
        for id in &ids {
            let done = finished(&f.ci, *id).await;
            assert_eq!(done["status"], "succeeded", "{done}");
        }
        assert_eq!(
            f.image_of("dev", "checkout--feat-a"),
            Some(format!("{IMAGE}:v1.1.0-a"))
        );
        assert_eq!(
            f.image_of("dev", "checkout--feat-b"),
            Some(format!("{IMAGE}:v1.1.0-b"))
        );
        // The app's Deployment was never written.
        let base_after = f.sim.sim.deployment("dev", "checkout").unwrap();
        assert_eq!(
            base_after.metadata.resource_version,
            base_before.metadata.resource_version
        );
        // Each lane's pods carry its label; the app's Service selects none
        // of them, each lane's Service its own only.
        let pods = f.sim.sim.pods("dev");
        let labels_of = |lane: Option<&str>| -> Vec<std::collections::BTreeMap<String, String>> {
            pods.iter()
                .filter_map(|p| p.metadata.labels.clone())
                .filter(|l| l.get("rollway.io/lane").map(String::as_str) == lane)
                .collect()
        };
        assert!(!labels_of(Some("feat-a")).is_empty());
        assert!(!labels_of(Some("feat-b")).is_empty());
        let services: Vec<k8s_openapi::api::core::v1::Service> =
            f.sim.sim.list(rollway::sim::Kind::Service, "dev");
        let selector_of = |name: &str| {
            services
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(name))
                .and_then(|s| s.spec.as_ref()?.selector.clone())
                .unwrap_or_else(|| panic!("no Service {name}"))
        };
        let selects = |selector: &std::collections::BTreeMap<String, String>,
                       labels: &std::collections::BTreeMap<String, String>| {
            selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        };
        let base_selector = selector_of("checkout");
        let a_selector = selector_of("checkout--feat-a");
        for labels in labels_of(Some("feat-a")) {
            assert!(!selects(&base_selector, &labels), "{labels:?}");
            assert!(selects(&a_selector, &labels), "{labels:?}");
        }
        for labels in labels_of(Some("feat-b")).iter().chain(&labels_of(None)) {
            assert!(!selects(&a_selector, labels), "{labels:?}");
        }
        let lanes = lanes_of(&f.ci, f.checkout).await;
        let names: Vec<&str> = lanes.iter().map(|l| l["lane"].as_str().unwrap()).collect();
        assert_eq!(names, ["feat-a", "feat-b"]);
        assert_eq!(lanes[0]["service"], "checkout--feat-a");
        assert_eq!(lanes[0]["image"], format!("{IMAGE}:v1.1.0-a"));

        // The app's page shows the lanes with their images, and the
        // deployments next to the work-order stages.
        let eric = app.browser_as("eric", USER_PASSWORD).await;
        let (s, page) = eric.get(&format!("/apps/{}", f.checkout)).await;
        assert_eq!(s, StatusCode::OK);
        for shown in [
            "data-lane=\"feat-a\"",
            "data-lane=\"feat-b\"",
            "checkout--feat-a",
            &format!("{IMAGE}:v1.1.0-b"),
            &format!("data-deployment=\"{}\"", ids[0]),
            "Succeeded",
            "No work order has deployed this app yet.",
            "A lane nobody deploys to for 3 days is removed.",
        ] {
            assert!(page.contains(shown), "{shown} not on the page");
        }
        let otto = app.browser_as("otto", USER_PASSWORD).await;
        let (s, _) = otto.get(&format!("/apps/{}", f.checkout)).await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        // A second deploy to a lane updates it in place.
        let (s, v) =
            f.ci.post(
                &path,
                json!({"image": format!("{IMAGE}:v1.1.1-a"), "lane": "feat-a"}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        assert_eq!(
            finished(&f.ci, v["id"].as_i64().unwrap()).await["status"],
            "succeeded"
        );
        assert_eq!(
            f.image_of("dev", "checkout--feat-a"),
            Some(format!("{IMAGE}:v1.1.1-a"))
        );

        // A lane being deployed cannot be removed; a removed one goes, both
        // objects with it, and the other lane and the app stay.
        f.sim.sim.faults().never_ready(":v9-stuck");
        let (s, v) =
            f.ci.post(
                &path,
                json!({"image": format!("{IMAGE}:v9-stuck"), "lane": "feat-b"}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        let stuck = v["id"].as_i64().unwrap();
        let lane_path = |lane: &str| format!("/api/v1/apps/{}/lanes/{lane}", f.checkout);
        let (s, v) = f.ci.delete(&lane_path("feat-b")).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        finished(&f.ci, stuck).await;
        let (s, v) = f.ci.delete(&lane_path("nope")).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
        let (s, v) = f.ci.delete(&lane_path("Not_A_Slug")).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        // Viewers may look, not remove.
        let vera = app.api(Some(&app.token_for("vera")));
        let (s, v) = vera.delete(&lane_path("feat-a")).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        let (s, v) = f.ci.delete(&lane_path("feat-a")).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        assert_eq!(v["state"], "removing", "{v}");
        f.wait_for_lanes(1).await;
        assert!(f.sim.sim.deployment("dev", "checkout--feat-a").is_none());
        let services: Vec<k8s_openapi::api::core::v1::Service> =
            f.sim.sim.list(rollway::sim::Kind::Service, "dev");
        assert!(
            !services
                .iter()
                .any(|s| s.metadata.name.as_deref() == Some("checkout--feat-a"))
        );
        assert!(f.sim.sim.deployment("dev", "checkout--feat-b").is_some());
        assert_eq!(
            f.sim
                .sim
                .deployment("dev", "checkout")
                .unwrap()
                .metadata
                .resource_version,
            base_before.metadata.resource_version
        );
        // The app cannot be removed while it has lanes.
        let (s, v) = f
            .org
            .admin
            .delete(&format!("/api/v1/apps/{}", f.checkout))
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("feat-b"),
            "{v}"
        );

        // Removed from the page, by an engineer.
        let (s, _, to) = eric
            .submit(&format!("/apps/{}/lanes/feat-b/delete", f.checkout), &[])
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        assert_eq!(to, Some(format!("/apps/{}", f.checkout)));
        f.wait_for_lanes(0).await;
        assert!(f.sim.sim.deployment("dev", "checkout--feat-b").is_none());
    }
);

db_test!(
    a_lane_idle_past_its_ttl_is_removed_by_the_engine,
    |backend| async move {
        let mut start: Start = engine_start();
        start
            .args
            .extend(["--lane-ttl-seconds", "2"].map(String::from));
        let app = TestApp::start_with(backend, start).await;
        let f = Fixture::create(&app).await;
        let (s, v) =
            f.ci.post(
                &format!("/api/v1/apps/{}/deployments", f.checkout),
                json!({"image": format!("{IMAGE}:v1.1.0"), "lane": "short-lived"}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        assert_eq!(
            finished(&f.ci, v["id"].as_i64().unwrap()).await["status"],
            "succeeded"
        );
        f.wait_for_lanes(0).await;
        assert!(
            f.sim
                .sim
                .deployment("dev", "checkout--short-lived")
                .is_none()
        );
        assert!(f.sim.sim.deployment("dev", "checkout").is_some());
        let (s, audit) = f.org.admin.get("/api/v1/audit?action=lane.removed").await;
        assert_eq!(s, StatusCode::OK, "{audit}");
        assert!(audit.to_string().contains("short-lived"), "{audit}");
    }
);

db_test!(
    an_id_token_bound_to_the_project_deploys_to_its_nodes_dev_app_and_not_a_siblings,
    |backend| async move {
        let mut start = engine_start();
        start
            .args
            .extend(["--public-url".to_string(), AUDIENCE.to_string()]);
        let app = TestApp::start_with(backend, start).await;
        let f = Fixture::create(&app).await;
        let gitlab = FakeGitlab::start().await;
        gitlab.serve_signing_keys(&["a"]);
        let (s, v) = f
            .org
            .admin
            .put(
                "/api/v1/settings/gitlab",
                json!({"url": gitlab.url, "token": TOKEN}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, v) = f
            .org
            .admin
            .post(
                "/api/v1/id-token-bindings",
                json!({"service_account_id": f.ci_bot, "project_path": "acme/checkout",
                       "ref_type": "branch", "ref": "*"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let job = app.api(Some(&gitlab_token(&claims(
            &gitlab,
            "acme/checkout",
            "feature-x",
        ))));
        let path = |app: i64| format!("/api/v1/apps/{app}/deployments");

        // Its own node's app: 202, then succeeded, by the bound account.
        let (s, v) = job
            .post(
                &path(f.checkout),
                json!({"image": format!("{IMAGE}:v1.1.0"), "lane": "feature-x"}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        assert!(
            v["created_by"].as_str().unwrap().starts_with("ci-bot"),
            "{v}"
        );
        let done = finished(&job, v["id"].as_i64().unwrap()).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(
            f.image_of("dev", "checkout--feature-x"),
            Some(format!("{IMAGE}:v1.1.0"))
        );
        // A sibling's app is not there for it; prod is refused.
        let (s, v) = job
            .post(
                &path(f.payroll),
                json!({"image": "registry.example.com/acme/payroll:v2"}),
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
        let (s, v) = job
            .post(&path(f.prod), json!({"image": format!("{IMAGE}:v1.1.0")}))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(v["error"]["code"], "environment_protected", "{v}");
        // Another project's token matches no binding: 401, nothing made.
        let other = app.api(Some(&gitlab_token(&claims(
            &gitlab,
            "acme/payroll",
            "main",
        ))));
        let (s, v) = other
            .post(
                &path(f.checkout),
                json!({"image": format!("{IMAGE}:v1.2.0")}),
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
        assert_eq!(deployments_of(&f.org.admin, f.checkout).await.len(), 1);
        assert!(deployments_of(&f.org.admin, f.payroll).await.is_empty());
    }
);
