//! Release items and work orders over the API: every lifecycle rule of
//! SPEC 1–3 and 8, on both databases.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Api, Org, TestApp, USER_PASSWORD};
use crate::db_test;
use crate::fake_gitlab::{FakeGitlab, Mode, TOKEN};

pub const PROJECT: &str = "acme/checkout";

/// An organisation with GitLab connected, two apps under /acme/pay and a
/// release item `checkout` there (staging rolling, prod canary). olivia
/// and owen own /acme/pay when `two_owners`; eric is engineer.
pub struct Release {
    pub org: Org,
    pub gitlab: FakeGitlab,
    pub item: i64,
    pub staging_app: i64,
    pub prod_app: i64,
    pub payroll_app: i64,
}

impl Release {
    pub async fn create(app: &TestApp, two_owners: bool) -> Release {
        let org = Org::create(app).await;
        let gitlab = FakeGitlab::start().await;
        let tags: Vec<String> = (0..130).rev().map(|i| format!("v1.{i}.0")).collect();
        let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
        gitlab.add_project(42, PROJECT, &tag_refs);
        let (s, v) = org
            .admin
            .put(
                "/api/v1/settings/gitlab",
                json!({"url": gitlab.url, "token": TOKEN}),
            )
            .await;
        assert_eq!((s, &v["connected"]), (StatusCode::OK, &json!(true)), "{v}");
        if two_owners {
            org.admin
                .post(
                    "/api/v1/users",
                    json!({"name": "owen", "password": USER_PASSWORD}),
                )
                .await;
            org.admin
                .post(
                    &format!("/api/v1/nodes/{}/members", org.pay),
                    json!({"account": "owen", "role": "owner"}),
                )
                .await;
        }
        let kubeconfig = crate::registry::kubeconfig();
        let (_, staging) = org
            .admin
            .post(
                "/api/v1/clusters",
                json!({"name": "staging", "environment": "staging", "kubeconfig": kubeconfig}),
            )
            .await;
        let (_, prod) = org
            .admin
            .post(
                "/api/v1/clusters",
                json!({"name": "prod", "environment": "prod", "kubeconfig": kubeconfig}),
            )
            .await;
        // Each app names its Service and Ingress: the item's canary stage
        // routes traffic.
        let app_in = |cluster: &Value, node: i64, name: &str| json!({"name": name, "cluster_id": cluster["id"], "namespace": "shop", "deployment": name, "container": "app", "service": name, "ingress": name, "node_id": node});
        let staging_app = org
            .admin
            .post("/api/v1/apps", app_in(&staging, org.pay_api, "checkout"))
            .await
            .1["id"]
            .as_i64()
            .unwrap();
        let prod_app = org
            .admin
            .post("/api/v1/apps", app_in(&prod, org.pay_api, "checkout"))
            .await
            .1["id"]
            .as_i64()
            .unwrap();
        let payroll_app = org
            .admin
            .post("/api/v1/apps", app_in(&prod, org.payroll, "payroll"))
            .await
            .1["id"]
            .as_i64()
            .unwrap();
        let (s, item) = org
            .admin
            .post(
                "/api/v1/release-items",
                item_body(org.pay, "checkout", staging_app, prod_app),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{item}");
        Release {
            item: item["id"].as_i64().unwrap(),
            org,
            gitlab,
            staging_app,
            prod_app,
            payroll_app,
        }
    }

    /// A second item on /acme/pay (each may have one open order).
    pub async fn another_item(&self, name: &str) -> i64 {
        let (s, item) = self
            .org
            .admin
            .post(
                "/api/v1/release-items",
                item_body(self.org.pay, name, self.staging_app, self.prod_app),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{item}");
        item["id"].as_i64().unwrap()
    }
}

pub fn item_body(node: i64, name: &str, staging_app: i64, prod_app: i64) -> Value {
    json!({
        "node_id": node, "name": name, "gitlab_project": PROJECT,
        "image_repository": "registry.example.com/acme/checkout", "required_approvals": 1,
        "stages": [
            {"name": "staging", "app_id": staging_app, "strategy": "rolling"},
            {"name": "prod", "app_id": prod_app, "strategy": "canary",
             "canary": {"steps": [{"weight": 10}, {"weight": 50, "pause_seconds": 60}, {"weight": 100}],
                        "header_match": {"name": "x-canary", "value": "1"}}}
        ]
    })
}

pub fn order_body(item: i64, version: &str) -> Value {
    json!({"release_item_id": item, "version": version, "title": format!("Ship {version}"), "description": "Fixes checkout"})
}

async fn count_orders(api: &Api) -> usize {
    api.get("/api/v1/work-orders?limit=200").await.1["items"]
        .as_array()
        .unwrap()
        .len()
}

db_test!(
    release_items_keep_their_stages_and_are_validated,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let r = Release::create(&app, false).await;
        let admin = &r.org.admin;
        let (_, item) = admin
            .get(&format!("/api/v1/release-items/{}", r.item))
            .await;
        assert_eq!(item["node_path"], "/acme/pay");
        assert_eq!(item["auto_rollback"], true);
        assert_eq!(item["stages"][0]["name"], "staging");
        assert_eq!(item["stages"][0]["environment"], "staging");
        assert_eq!(
            item["stages"][1]["canary"]["steps"][1],
            json!({"weight": 50, "pause_seconds": 60})
        );
        assert_eq!(
            item["stages"][1]["canary"]["header_match"]["name"],
            "x-canary"
        );
        let base = item_body(r.org.pay, "other", r.staging_app, r.prod_app);
        let bad = |path: &str, value: Value| {
            let mut b = base.clone();
            let mut target = &mut b;
            let parts: Vec<&str> = path.split('.').collect();
            for p in &parts[..parts.len() - 1] {
                target = match p.parse::<usize>() {
                    Ok(i) => &mut target[i],
                    Err(_) => &mut target[*p],
                };
            }
            target[parts[parts.len() - 1]] = value;
            b
        };
        let cases = [
            (
                bad("stages.0.app_id", json!(r.payroll_app)),
                "outside /acme/pay",
            ),
            (
                bad(
                    "stages.1.canary.steps",
                    json!([{"weight": 50}, {"weight": 20}]),
                ),
                "weights must increase",
            ),
            (
                bad("stages.1.canary.steps", json!([{"weight": 150}])),
                "between 1 and 100",
            ),
            (bad("stages.1.canary.steps", json!([])), "at least one step"),
            (bad("required_approvals", json!(2)), "only 1 approver"),
            (bad("stages", json!([])), "at least one stage"),
            (
                bad("image_repository", json!("registry/app:latest")),
                "without a tag",
            ),
            (bad("stages.0.app_id", json!(9999)), "does not exist"),
        ];
        for (body, expected) in cases {
            let (s, v) = admin.post("/api/v1/release-items", body.clone()).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{expected}: {v}");
            assert!(
                v["error"]["message"].as_str().unwrap().contains(expected),
                "{expected}: {v}"
            );
        }
        let (s, _) = admin
            .post("/api/v1/release-items", json!({"stages": "nope"}))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "malformed stages JSON");
        // Duplicate names on a node, and who may create items.
        assert_eq!(
            admin
                .post("/api/v1/release-items", bad("name", json!("checkout")))
                .await
                .0,
            StatusCode::CONFLICT
        );
        let eric = app.api(Some(&app.token_for("eric")));
        assert_eq!(
            eric.post("/api/v1/release-items", base.clone()).await.0,
            StatusCode::FORBIDDEN
        );
        let olivia = app.api(Some(&app.token_for("olivia")));
        let (s, v) = olivia.post("/api/v1/release-items", base.clone()).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        // Replacing stages works; the item cannot be deleted once it has orders.
        let mut changed = base.clone();
        changed["stages"] =
            json!([{"name": "only", "app_id": r.staging_app, "strategy": "rolling"}]);
        let (s, v) = olivia
            .put(&format!("/api/v1/release-items/{}", v["id"]), changed)
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["stages"].as_array().unwrap().len(), 1);
        let eric_files = eric
            .post("/api/v1/work-orders", order_body(r.item, "v1.129.0"))
            .await;
        assert_eq!(eric_files.0, StatusCode::CREATED, "{}", eric_files.1);
        let (s, v) = admin
            .delete(&format!("/api/v1/release-items/{}", r.item))
            .await;
        assert_eq!(s, StatusCode::CONFLICT);
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("1 work order")
        );
        // A node with items cannot be deleted either.
        let (s, v) = admin
            .delete(&format!("/api/v1/nodes/{}", r.org.pay_api))
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
    }
);

db_test!(
    stage_deadlines_and_the_zero_replica_setting_are_kept_and_bounded,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let r = Release::create(&app, false).await;
        let admin = &r.org.admin;
        let path = format!("/api/v1/release-items/{}", r.item);
        // Absent: the defaults.
        let (_, item) = admin.get(&path).await;
        assert_eq!(item["refuse_zero_replicas"], false, "{item}");
        assert_eq!(item["stages"][0]["deadline_minutes"], Value::Null);
        assert_eq!(item["stages"][1]["deadline_minutes"], Value::Null);
        // Set on replace, read back.
        let mut body = item_body(r.org.pay, "checkout", r.staging_app, r.prod_app);
        body["refuse_zero_replicas"] = json!(true);
        body["stages"][0]["deadline_minutes"] = json!(1440);
        body["stages"][1]["deadline_minutes"] = json!(45);
        let (s, v) = admin.put(&path, body.clone()).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (_, item) = admin.get(&path).await;
        assert_eq!(item["refuse_zero_replicas"], true, "{item}");
        assert_eq!(item["stages"][0]["deadline_minutes"], 1440);
        assert_eq!(item["stages"][1]["deadline_minutes"], 45);
        // Out of range: 422 naming the stage's field; nothing changes.
        for wrong in [json!(0), json!(1441), json!(-3)] {
            let mut b = body.clone();
            b["stages"][1]["deadline_minutes"] = wrong.clone();
            b["refuse_zero_replicas"] = json!(false);
            let (s, v) = admin.put(&path, b).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{wrong}: {v}");
            assert_eq!(
                v["error"]["field"], "stages[1].deadline_minutes",
                "{wrong}: {v}"
            );
            let message = v["error"]["message"].as_str().unwrap();
            assert!(
                message.contains("stage 2 (prod)") && message.contains("1 to 1440 minutes"),
                "{wrong}: {v}"
            );
        }
        let (s, v) = admin
            .put(&path, {
                let mut b = body.clone();
                b["stages"][0]["deadline_minutes"] = json!("soon");
                b
            })
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("deadline_minutes"),
            "{v}"
        );
        assert_eq!(
            admin.get(&path).await.1,
            item,
            "a refused change changes nothing"
        );
        // Created with the settings; refused on create the same way.
        let mut other = item_body(r.org.pay, "other", r.staging_app, r.prod_app);
        other["stages"][0]["deadline_minutes"] = json!(2000);
        let (s, v) = admin.post("/api/v1/release-items", other.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["error"]["field"], "stages[0].deadline_minutes", "{v}");
        let (_, listed) = admin
            .get(&format!("/api/v1/release-items?node_id={}", r.org.pay))
            .await;
        assert_eq!(listed.as_array().unwrap().len(), 1, "nothing was created");
        other["stages"][0]["deadline_minutes"] = json!(1);
        other["refuse_zero_replicas"] = json!(true);
        let (s, created) = admin.post("/api/v1/release-items", other).await;
        assert_eq!(s, StatusCode::CREATED, "{created}");
        assert_eq!(created["stages"][0]["deadline_minutes"], 1);
        assert_eq!(created["refuse_zero_replicas"], true);
        let (_, listed) = admin
            .get(&format!("/api/v1/release-items?node_id={}", r.org.pay))
            .await;
        let listed_other = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == "other")
            .unwrap();
        assert_eq!(listed_other, &created, "the list reads the same settings");
        // Back to the defaults: null and absent.
        body["stages"][0]["deadline_minutes"] = Value::Null;
        body["stages"][1]
            .as_object_mut()
            .unwrap()
            .remove("deadline_minutes");
        body.as_object_mut().unwrap().remove("refuse_zero_replicas");
        let (s, v) = admin.put(&path, body).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["refuse_zero_replicas"], false);
        assert_eq!(v["stages"][0]["deadline_minutes"], Value::Null);
        assert_eq!(v["stages"][1]["deadline_minutes"], Value::Null);
        assert_eq!(admin.get(&path).await.1, v);
    }
);

db_test!(
    versions_are_gitlab_tags_newest_first_across_every_page,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let r = Release::create(&app, false).await;
        let eric = app.api(Some(&app.token_for("eric")));
        let (s, tags) = eric
            .get(&format!("/api/v1/release-items/{}/versions", r.item))
            .await;
        assert_eq!(s, StatusCode::OK, "{tags}");
        let names: Vec<&str> = tags
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 130, "all pages followed");
        assert_eq!(names[0], "v1.129.0");
        assert_eq!(names[129], "v1.0.0");
        assert!(
            r.gitlab.requests().iter().any(|q| q.contains("page=2")),
            "{:?}",
            r.gitlab.requests()
        );
        for (mode, expected) in [
            (Mode::Status(500), "500"),
            (Mode::Status(404), "404"),
            (Mode::Status(401), "401"),
        ] {
            r.gitlab.set_mode(mode);
            let (s, v) = eric
                .get(&format!("/api/v1/release-items/{}/versions", r.item))
                .await;
            assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
            assert_eq!(v["error"]["code"], "upstream_failed");
            let message = v["error"]["message"].as_str().unwrap();
            assert!(
                message.contains("GitLab") && message.contains(expected),
                "{message}"
            );
        }
    }
);

db_test!(
    filing_checks_the_tag_the_rights_and_one_open_order_per_item,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let r = Release::create(&app, false).await;
        let eric = app.api(Some(&app.token_for("eric")));
        // Not a tag: refused, nothing created.
        let (s, v) = eric
            .post("/api/v1/work-orders", order_body(r.item, "v9.9.9"))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["error"]["field"], "version");
        assert!(v["error"]["message"].as_str().unwrap().contains(PROJECT));
        // GitLab down: 502, nothing created.
        r.gitlab.set_mode(Mode::Status(500));
        let (s, v) = eric
            .post("/api/v1/work-orders", order_body(r.item, "v1.5.0"))
            .await;
        assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
        r.gitlab.set_mode(Mode::Normal);
        assert_eq!(count_orders(&eric).await, 0);
        // Viewers and outsiders may not file; unknown items are refused.
        let vera = app.api(Some(&app.token_for("vera")));
        assert_eq!(
            vera.post("/api/v1/work-orders", order_body(r.item, "v1.5.0"))
                .await
                .0,
            StatusCode::FORBIDDEN
        );
        // otto may not even see the item: it is refused like a missing one.
        let otto = app.api(Some(&app.token_for("otto")));
        assert_eq!(
            otto.post("/api/v1/work-orders", order_body(r.item, "v1.5.0"))
                .await
                .0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let (s, v) = eric
            .post("/api/v1/work-orders", order_body(9999, "v1.5.0"))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["error"]["field"], "release_item_id");
        // Filed: waiting for approval, a pending run per stage, one timeline event.
        let (s, order) = eric
            .post("/api/v1/work-orders", order_body(r.item, "v1.5.0"))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{order}");
        assert_eq!(order["state"], "pending_approval");
        assert_eq!(order["image"], "registry.example.com/acme/checkout:v1.5.0");
        let id = order["id"].as_i64().unwrap();
        let (_, detail) = eric.get(&format!("/api/v1/work-orders/{id}")).await;
        assert_eq!(detail["stage_runs"].as_array().unwrap().len(), 2);
        assert!(
            detail["stage_runs"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["status"] == "pending")
        );
        assert_eq!(detail["timeline"].as_array().unwrap().len(), 1);
        assert_eq!(detail["timeline"][0]["kind"], "filed");
        assert_eq!(detail["timeline"][0]["actor"], "eric");
        assert_eq!(detail["approvers"], json!(["olivia"]));
        assert_eq!(detail["approvers_node"], "/acme/pay");
        // Rule 1: a second open order is refused, naming the first.
        let (s, v) = eric
            .post("/api/v1/work-orders", order_body(r.item, "v1.6.0"))
            .await;
        assert_eq!(s, StatusCode::CONFLICT);
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("#{id}")),
            "{v}"
        );
    }
);

db_test!(
    twenty_concurrent_filings_make_exactly_one_order,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let r = Release::create(&app, false).await;
        let eric = app.api(Some(&app.token_for("eric")));
        let attempts = (0..20).map(|i| {
            let eric = eric.clone();
            let body = order_body(r.item, &format!("v1.{i}.0"));
            tokio::spawn(async move { eric.post("/api/v1/work-orders", body).await })
        });
        let mut statuses = Vec::new();
        for a in attempts {
            statuses.push(a.await.unwrap().0);
        }
        let created = statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count();
        let conflicts = statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count();
        assert_eq!((created, conflicts), (1, 19), "{statuses:?}");
        assert_eq!(count_orders(&eric).await, 1);
    }
);

db_test!(
    only_effective_approvers_decide_and_never_on_their_own_order,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let r = Release::create(&app, true).await;
        let api = |name: &str| app.api(Some(&app.token_for(name)));
        let (olivia, owen, eric, otto, admin) = (
            api("olivia"),
            api("owen"),
            api("eric"),
            api("otto"),
            r.org.admin.clone(),
        );
        // Two approvals required; olivia files, so owen and … only owen remains.
        let mut body = item_body(r.org.pay, "checkout", r.staging_app, r.prod_app);
        body["required_approvals"] = json!(2);
        let (s, v) = olivia
            .put(&format!("/api/v1/release-items/{}", r.item), body)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, v) = olivia
            .post("/api/v1/work-orders", order_body(r.item, "v1.1.0"))
            .await;
        assert_eq!(
            s,
            StatusCode::CONFLICT,
            "not enough approvers once the creator is excluded: {v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("owners of /acme/pay"),
            "{v}"
        );
        // Filed by eric, it needs olivia and owen.
        let (_, order) = eric
            .post("/api/v1/work-orders", order_body(r.item, "v1.1.0"))
            .await;
        let id = order["id"].as_i64().unwrap();
        let approve = |api: &Api| {
            let api = api.clone();
            async move {
                api.post(
                    &format!("/api/v1/work-orders/{id}/approve"),
                    json!({"comment": "ok"}),
                )
                .await
            }
        };
        for (who, outsider) in [("eric", &eric), ("admin", &admin)] {
            let (s, v) = approve(outsider).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{who}: {v}");
        }
        // otto may not see the order: it answers like a missing one.
        let (s, v) = approve(&otto).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "otto: {v}");
        let (s, v) = approve(&olivia).await;
        assert_eq!(
            (s, v["state"].as_str()),
            (StatusCode::OK, Some("pending_approval")),
            "{v}"
        );
        assert_eq!(v["approvals"], 1);
        let (s, v) = approve(&olivia).await;
        assert_eq!(s, StatusCode::CONFLICT, "an approver counts once: {v}");
        let (s, v) = approve(&owen).await;
        assert_eq!(
            (s, v["state"].as_str()),
            (StatusCode::OK, Some("approved")),
            "{v}"
        );
        let (_, detail) = eric.get(&format!("/api/v1/work-orders/{id}")).await;
        let kinds: Vec<&str> = detail["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["filed", "approval_recorded", "approved"]);
        assert_eq!(detail["decisions"].as_array().unwrap().len(), 2);
        // Approving or rejecting an approved order is a conflict.
        assert_eq!(
            owen.post(
                &format!("/api/v1/work-orders/{id}/reject"),
                json!({"comment": "too late"})
            )
            .await
            .0,
            StatusCode::CONFLICT
        );
        // No body at all is fine for approve.
        let resp = reqwest::Client::new()
            .post(app.url(&format!("/api/v1/work-orders/{id}/approve")))
            .bearer_auth(app.token_for("owen"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CONFLICT);
    }
);

db_test!(
    one_rejection_ends_it_and_closing_frees_the_item,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let r = Release::create(&app, true).await;
        let api = |name: &str| app.api(Some(&app.token_for(name)));
        let (olivia, owen, eric, vera) = (api("olivia"), api("owen"), api("eric"), api("vera"));
        let (_, order) = eric
            .post("/api/v1/work-orders", order_body(r.item, "v1.2.0"))
            .await;
        let id = order["id"].as_i64().unwrap();
        // A rejection says why.
        for body in [json!({}), json!({"comment": " "})] {
            let (s, v) = olivia
                .post(&format!("/api/v1/work-orders/{id}/reject"), body)
                .await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        }
        assert_eq!(
            eric.get(&format!("/api/v1/work-orders/{id}")).await.1["state"],
            "pending_approval"
        );
        let (s, v) = olivia
            .post(
                &format!("/api/v1/work-orders/{id}/reject"),
                json!({"comment": "not now"}),
            )
            .await;
        assert_eq!(
            (s, v["state"].as_str()),
            (StatusCode::OK, Some("rejected")),
            "{v}"
        );
        assert_eq!(
            owen.post(&format!("/api/v1/work-orders/{id}/approve"), json!({}))
                .await
                .0,
            StatusCode::CONFLICT
        );
        let (s, _) = eric
            .post(
                &format!("/api/v1/work-orders/{id}/close"),
                json!({"reason": "x"}),
            )
            .await;
        assert_eq!(
            s,
            StatusCode::CONFLICT,
            "a rejected order is already terminal"
        );
        // Rejected is terminal, so a new order may be filed.
        let (s, order) = eric
            .post("/api/v1/work-orders", order_body(r.item, "v1.3.0"))
            .await;
        assert_eq!(s, StatusCode::CREATED);
        let id = order["id"].as_i64().unwrap();
        assert_eq!(
            vera.post(
                &format!("/api/v1/work-orders/{id}/close"),
                json!({"reason": "no"})
            )
            .await
            .0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            eric.post(
                &format!("/api/v1/work-orders/{id}/close"),
                json!({"reason": " "})
            )
            .await
            .0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            eric.post(&format!("/api/v1/work-orders/{id}/close"), json!({}))
                .await
                .0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let (s, v) = eric
            .post(
                &format!("/api/v1/work-orders/{id}/close"),
                json!({"reason": "superseded"}),
            )
            .await;
        assert_eq!(
            (s, v["state"].as_str()),
            (StatusCode::OK, Some("closed")),
            "{v}"
        );
        assert_eq!(
            olivia
                .post(&format!("/api/v1/work-orders/{id}/approve"), json!({}))
                .await
                .0,
            StatusCode::CONFLICT
        );
        let (_, detail) = eric.get(&format!("/api/v1/work-orders/{id}")).await;
        let last = detail["timeline"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(
            (last["kind"].as_str(), last["message"].as_str()),
            (Some("closed"), Some("superseded"))
        );
        assert_eq!(
            eric.post("/api/v1/work-orders", order_body(r.item, "v1.4.0"))
                .await
                .0,
            StatusCode::CREATED
        );
        assert_eq!(
            eric.get("/api/v1/work-orders/99999").await.0,
            StatusCode::NOT_FOUND
        );
    }
);

db_test!(
    the_list_filters_pages_and_shows_what_waits_for_me,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let r = Release::create(&app, false).await;
        let eric = app.api(Some(&app.token_for("eric")));
        let olivia = app.api(Some(&app.token_for("olivia")));
        let mut ids = Vec::new();
        for i in 0..5 {
            let item = r.another_item(&format!("svc{i}")).await;
            let (s, o) = eric
                .post("/api/v1/work-orders", order_body(item, "v1.0.0"))
                .await;
            assert_eq!(s, StatusCode::CREATED, "{o}");
            ids.push(o["id"].as_i64().unwrap());
        }
        olivia
            .post(
                &format!("/api/v1/work-orders/{}/approve", ids[0]),
                json!({}),
            )
            .await;
        olivia
            .post(
                &format!("/api/v1/work-orders/{}/reject", ids[1]),
                json!({"comment": "not now"}),
            )
            .await;
        let ids_of = |v: &Value| -> Vec<i64> {
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_i64().unwrap())
                .collect()
        };
        let (_, waiting) = olivia.get("/api/v1/work-orders?awaiting_me=true").await;
        assert_eq!(ids_of(&waiting), vec![ids[4], ids[3], ids[2]]);
        let (_, none) = eric.get("/api/v1/work-orders?awaiting_me=true").await;
        assert_eq!(ids_of(&none), Vec::<i64>::new());
        let (_, approved) = eric.get("/api/v1/work-orders?state=approved").await;
        assert_eq!(ids_of(&approved), vec![ids[0]]);
        let (_, by_creator) = eric.get("/api/v1/work-orders?creator=eric&limit=2").await;
        assert_eq!(ids_of(&by_creator), vec![ids[4], ids[3]]);
        let cursor = by_creator["next_cursor"].as_i64().unwrap();
        let (_, page2) = eric
            .get(&format!(
                "/api/v1/work-orders?creator=eric&limit=2&cursor={cursor}"
            ))
            .await;
        assert_eq!(ids_of(&page2), vec![ids[2], ids[1]]);
        let (_, by_node) = eric.get("/api/v1/work-orders?node=/acme/pay").await;
        assert_eq!(ids_of(&by_node).len(), 5);
        let (_, other_node) = eric.get("/api/v1/work-orders?node=/acme/payroll").await;
        assert_eq!(ids_of(&other_node), Vec::<i64>::new());
        // A path as people type it is read as the canonical one.
        let (_, typed) = eric.get("/api/v1/work-orders?node=Acme//pay/").await;
        assert_eq!(ids_of(&typed), ids_of(&by_node));
        let (s, v) = eric.get("/api/v1/work-orders?node=/acme/p%25").await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        // Search: the version, the item's name or a word of the title
        // starts with it, in any case; wildcards are plain characters.
        for (q, expected) in [
            ("svc3", vec![ids[3]]),
            ("SVC", ids.iter().rev().copied().collect()),
            ("fix", vec![]),
            ("ship", ids.iter().rev().copied().collect()),
            ("v1.0", ids.iter().rev().copied().collect()),
            ("1.0", vec![]),
            ("hip", vec![]),
            ("%25", vec![]),
            ("s_c", vec![]),
        ] {
            let (s, v) = eric.get(&format!("/api/v1/work-orders?q={q}")).await;
            assert_eq!((s, ids_of(&v)), (StatusCode::OK, expected), "q={q}");
        }
        let long = "x".repeat(101);
        let (s, _) = eric.get(&format!("/api/v1/work-orders?q={long}")).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

        // The page reads its filters leniently and says why nothing matches,
        // keeping the filters and the navigation.
        let page = app.browser_as("eric", USER_PASSWORD).await;
        let rows = |html: &str| -> Vec<i64> {
            ids.iter()
                .rev()
                .copied()
                .filter(|id| html.contains(&format!("data-order=\"{id}\"")))
                .collect()
        };
        for (path, expected) in [
            (
                "/work-orders?item=svc",
                ids.iter().rev().copied().collect::<Vec<_>>(),
            ),
            ("/work-orders?item=SVC1", vec![ids[1]]),
            (
                "/work-orders?node=acme/pay",
                ids.iter().rev().copied().collect(),
            ),
            ("/work-orders?q=svc2", vec![ids[2]]),
        ] {
            let (s, html) = page.get(path).await;
            assert_eq!((s, rows(&html)), (StatusCode::OK, expected), "{path}");
        }
        let (_, html) = page.get("/work-orders?node=acme/pay").await;
        assert!(
            html.contains(r#"name="node" value="/acme/pay""#),
            "the path is shown canonical"
        );
        // The pickers' options come when first focused, not with each page.
        assert!(html.contains(r#"hx-get="/work-orders/filter-options?list=nodes""#));
        let (_, nodes) = page.get("/work-orders/filter-options?list=nodes").await;
        assert!(
            nodes.contains(r#"<option value="/acme/pay">"#),
            "the node picker offers it: {nodes}"
        );
        let (_, items) = page.get("/work-orders/filter-options?list=items").await;
        assert!(
            items.contains(r#"<option value="svc0">"#),
            "the item picker offers it: {items}"
        );
        assert_eq!(
            page.get("/work-orders/filter-options?list=x").await.0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        for (path, why, kept) in [
            (
                "/work-orders?item=car&state=approved",
                "no release item you can see is called “car…”",
                r#"name="item" value="car""#,
            ),
            (
                "/work-orders?creator=nobody",
                "nobody is called “nobody”",
                r#"name="creator" value="nobody""#,
            ),
            (
                "/work-orders?state=open",
                "there is no state “open”",
                r#"name="state""#,
            ),
            (
                "/work-orders?node=%2Fa%25",
                "is not a node path",
                r#"name="node" value="/a%""#,
            ),
        ] {
            let (s, html) = page.get(path).await;
            assert_eq!(s, StatusCode::OK, "{path}: {html}");
            assert!(
                html.contains("No work orders match: ") && html.contains(why),
                "{path}: {html}"
            );
            assert!(html.contains(kept), "{path} keeps its filters: {html}");
            assert!(
                html.contains(r#"href="/approvals""#),
                "{path} keeps the navigation"
            );
            assert!(rows(&html).is_empty());
        }
        let (_, html) = page.get("/work-orders?item=car&state=approved").await;
        assert!(
            html.contains(r#"<option value="approved" selected>"#),
            "the state stays picked"
        );
        let (_, by_item) = eric
            .get(&format!("/api/v1/work-orders?item={}", r.item))
            .await;
        assert_eq!(ids_of(&by_item), Vec::<i64>::new());
        assert_eq!(
            eric.get("/api/v1/work-orders?state=open").await.0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            eric.get("/api/v1/work-orders?cursor=x").await.0,
            StatusCode::BAD_REQUEST
        );
    }
);

db_test!(
    the_one_open_index_names_exactly_the_open_states,
    |backend| async move {
        use rollway::db::work_orders::{ONE_OPEN_PER_ITEM, open_states_sql};
        use rollway::domain::work_order::State;
        let app = TestApp::start(backend).await;
        // The index as the migrated database holds it.
        let definition = match backend {
            crate::common::Backend::Sqlite => format!(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = '{ONE_OPEN_PER_ITEM}'"
            ),
            crate::common::Backend::Postgres => {
                format!("SELECT indexdef FROM pg_indexes WHERE indexname = '{ONE_OPEN_PER_ITEM}'")
            }
        };
        let definition = app
            .db
            .query_text(&definition)
            .await
            .expect("the one-open index exists");
        let predicate = definition.split_once("WHERE").expect("a partial index").1;
        // The quoted words of the predicate are the states it names.
        let mut named: Vec<&str> = predicate.split('\'').skip(1).step_by(2).collect();
        named.sort_unstable();
        let mut open: Vec<&str> = State::OPEN.iter().map(|s| s.as_str()).collect();
        open.sort_unstable();
        assert_eq!(named, open, "{definition}");
        assert!(predicate.contains("state"), "{definition}");
        // The SQL the filing check reads with spells the same states.
        let mut listed: Vec<String> = open_states_sql()
            .split(", ")
            .map(|s| s.trim_matches('\'').to_string())
            .collect();
        listed.sort_unstable();
        assert_eq!(listed, open);
    }
);

db_test!(
    answers_cached_by_one_replica_follow_changes_made_through_another,
    |backend| async move {
        // Replica B caches Olivia's inbox count and the approvers of the
        // order's node; every change made through replica A shows on B's
        // next page.
        let a = TestApp::start(backend).await;
        let r = Release::create(&a, false).await;
        let b = TestApp::start_on(a.db.shared(), crate::common::Start::default());
        let eric = a.browser_as("eric", USER_PASSWORD).await;
        let olivia_a = a.browser_as("olivia", USER_PASSWORD).await;
        let olivia_b = b.browser_as("olivia", USER_PASSWORD).await;
        let (_, html) = olivia_b.get("/approvals").await;
        assert!(!html.contains(" waiting\""), "nothing waits yet");
        let item = r.item.to_string();
        let (s, _, location) = eric
            .submit(
                "/work-orders",
                &[
                    ("item", item.as_str()),
                    ("version", "v1.42.0"),
                    ("title", "Ship 1.42"),
                    ("description", ""),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let order_page = location.unwrap();
        let (_, html) = olivia_b.get("/tree").await;
        assert!(
            html.contains("aria-label=\"1 waiting\""),
            "B counts the order filed through A"
        );
        let (_, html) = olivia_b.get(&order_page).await;
        assert!(html.contains("data-approver=\"olivia\""));
        assert!(!html.contains("data-approver=\"owen\""));
        let (s, _, _) = olivia_a
            .submit(&format!("{order_page}/approve"), &[("comment", "")])
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let (_, html) = olivia_b.get("/tree").await;
        assert!(
            !html.contains("aria-label=\"1 waiting\""),
            "B sees the approval made through A"
        );
        // A second owner, added through A, approves on B's page too.
        let (_, owen) = r
            .org
            .admin
            .post(
                "/api/v1/users",
                json!({"name": "owen", "password": USER_PASSWORD}),
            )
            .await;
        r.org
            .admin
            .post(
                &format!("/api/v1/nodes/{}/members", r.org.pay),
                json!({"account": "owen", "role": "owner"}),
            )
            .await;
        let (_, html) = olivia_b.get(&order_page).await;
        assert!(html.contains("data-approver=\"owen\""), "new owner shown");
        // Disabling him through A takes him off B's approvers.
        let (s, _) = r
            .org
            .admin
            .patch(
                &format!("/api/v1/users/{}", owen["user"]["id"]),
                json!({"disabled": true}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let (_, html) = olivia_b.get(&order_page).await;
        assert!(
            !html.contains("data-approver=\"owen\""),
            "a disabled owner approves nothing"
        );
        assert!(html.contains("data-approver=\"olivia\""));
    }
);

db_test!(
    orders_read_by_one_replica_follow_every_change_made_elsewhere,
    |backend| async move {
        // Replica B serves an order's page, the lists and the API from what
        // it read under one board version. Every change to what they show —
        // through replica A, or written by an engine straight to the
        // database — shows on B's next answer.
        let a = TestApp::start(backend).await;
        let r = Release::create(&a, false).await;
        let b = TestApp::start_on(a.db.shared(), crate::common::Start::default());
        let eric_a = a.api(Some(&a.token_for("eric")));
        let olivia_token = a.token_for("olivia");
        let olivia_a = a.api(Some(&olivia_token));
        let olivia_b = b.api(Some(&olivia_token));
        let olivia_page = b.browser_as("olivia", USER_PASSWORD).await;
        let (s, order) = eric_a
            .post(
                "/api/v1/work-orders",
                json!({"release_item_id": r.item, "version": "v1.42.0", "title": "Ship 1.42"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{order}");
        let id = order["id"].as_i64().unwrap();
        let path = format!("/api/v1/work-orders/{id}");
        let page = format!("/work-orders/{id}");
        let state_in_list = |list: &Value| {
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["id"] == id)
                .map(|o| o["state"].clone())
        };
        // B reads everything once (and keeps it).
        assert_eq!(olivia_b.get(&path).await.1["state"], "pending_approval");
        let (_, list) = olivia_b.get("/api/v1/work-orders").await;
        assert_eq!(state_in_list(&list), Some(json!("pending_approval")));
        let (_, inbox) = olivia_page.get("/approvals").await;
        assert!(inbox.contains(&format!("href=\"{page}\"")), "{inbox}");
        let (_, html) = olivia_page.get(&page).await;
        assert!(html.contains("0 of 1 approval") && html.contains("id=\"decision-form\""));

        // An approval through A.
        let (s, v) = olivia_a.post(&format!("{path}/approve"), json!({})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (_, d) = olivia_b.get(&path).await;
        assert_eq!(d["state"], "approved", "{d}");
        assert_eq!(d["decisions"].as_array().unwrap().len(), 1, "{d}");
        let (_, list) = olivia_b.get("/api/v1/work-orders").await;
        assert_eq!(state_in_list(&list), Some(json!("approved")));
        let (_, inbox) = olivia_page.get("/approvals").await;
        assert!(!inbox.contains(&format!("href=\"{page}\"")), "approved");
        let (_, html) = olivia_page.get(&page).await;
        assert!(
            html.contains("1 of 1 approval") && !html.contains("id=\"decision-form\""),
            "B's page shows the approval"
        );

        // What an engine writes: a stage's message, a timeline entry.
        let version = || async {
            a.db.query_text("SELECT CAST(version AS TEXT) FROM board_state WHERE id = 1")
                .await
                .unwrap()
        };
        a.db.execute(&format!(
            "UPDATE stage_runs SET message = 'halfway there' WHERE work_order_id = {id} AND position = 1"
        ))
        .await;
        let (_, d) = olivia_b.get(&path).await;
        assert_eq!(d["stage_runs"][0]["message"], "halfway there", "{d}");
        a.db.execute(&format!(
            "INSERT INTO timeline_events (work_order_id, at, actor, kind, message) \
             VALUES ({id}, 1, 'engine', 'note', 'a note from elsewhere')"
        ))
        .await;
        let (_, html) = olivia_page.get(&page).await;
        assert!(html.contains("a note from elsewhere"), "B's timeline");
        // The state machine's row lock changes nothing shown, and keeps
        // what B read; a stage's engine-only columns too.
        let before = version().await;
        a.db.execute(&format!(
            "UPDATE work_orders SET updated_at = updated_at WHERE id = {id}"
        ))
        .await;
        a.db.execute(&format!(
            "UPDATE stage_runs SET deadline_at = 12345 WHERE work_order_id = {id}"
        ))
        .await;
        assert_eq!(version().await, before);
        // A title changed in the database shows too.
        a.db.execute(&format!(
            "UPDATE work_orders SET title = 'Ship 1.42 now' WHERE id = {id}"
        ))
        .await;
        assert_ne!(version().await, before);
        let (_, list) = olivia_b.get("/api/v1/work-orders").await;
        assert_eq!(list["items"][0]["title"], "Ship 1.42 now", "{list}");
    }
);
