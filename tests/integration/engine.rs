//! The deploy engine end to end: the real server drives rolling stages on
//! the simulated cluster (`rollway::sim`) over HTTP — happy path, failure
//! with automatic rollback, manual rollback, a restart mid-rollout, two
//! servers on one database, a cluster that answers 500, hangs and drops
//! watches, jobs queued before the jobs table became generic, and the log
//! spans that let one rollout be followed.

use std::time::Duration;

use reqwest::StatusCode;
use rollway::secret::SecretKey;
use rollway::sim::{RunningSim, Sim, SimConfig};
use serde_json::{Value, json};

use crate::common::{
    Api, Backend, Org, SECRET_KEY, Start, TestApp, TestDb, USER_PASSWORD, eventually,
};
use crate::db_test;
use crate::fake_gitlab::{FakeGitlab, TOKEN};

pub const IMAGE: &str = "registry.example.com/acme/checkout";

/// Server flags for engine tests: short leases and call deadlines, so a
/// takeover or a hung request costs seconds, not minutes.
pub fn engine_start() -> Start {
    let mut start = Start::default();
    start
        .args
        .extend(["--engine-lease-seconds", "2", "--kube-timeout-seconds", "2"].map(String::from));
    start
}

/// A simulated cluster registered twice (clusters `staging` and `prod`,
/// namespaces `staging` and `prod`), Deployments `checkout` in both running
/// `checkout:v1.0.0`, and a release item with two rolling stages.
pub struct Rollout {
    pub org: Org,
    pub eric: Api,
    pub olivia: Api,
    pub sim: RunningSim,
    pub gitlab: FakeGitlab,
    pub item: i64,
    pub staging_cluster: i64,
    pub prod_cluster: i64,
}

pub fn sim_config() -> SimConfig {
    SimConfig {
        tick: Duration::from_millis(20),
        ready_delay: Duration::from_millis(150),
        ..SimConfig::default()
    }
}

impl Rollout {
    pub async fn create(app: &TestApp) -> Rollout {
        Self::create_with(app, sim_config(), 2).await
    }

    pub async fn create_with(app: &TestApp, config: SimConfig, replicas: i32) -> Rollout {
        let sim = Sim::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("start the simulated cluster");
        for ns in ["staging", "prod"] {
            sim.sim.create_deployment(
                ns,
                "checkout",
                "app",
                &format!("{IMAGE}:v1.0.0"),
                replicas,
                3,
            );
        }
        let org = Org::create(app).await;
        let gitlab = FakeGitlab::start().await;
        gitlab.add_project(
            42,
            "acme/checkout",
            &["v1.5.0", "v1.4.0", "v1.3.0", "v1.2.0", "v1.1.0", "v1.0.0"],
        );
        let (s, v) = org
            .admin
            .put(
                "/api/v1/settings/gitlab",
                json!({"url": gitlab.url, "token": TOKEN}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let mut clusters = Vec::new();
        for name in ["staging", "prod"] {
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
        for (cluster, ns) in clusters.iter().zip(["staging", "prod"]) {
            let (s, a) = org
                .admin
                .post(
                    "/api/v1/apps",
                    json!({"name": format!("checkout-{ns}"), "cluster_id": cluster, "namespace": ns,
                           "deployment": "checkout", "container": "app", "node_id": org.pay_api}),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{a}");
            apps.push(a["id"].as_i64().unwrap());
        }
        let (s, item) = org
            .admin
            .post(
                "/api/v1/release-items",
                json!({
                    "node_id": org.pay, "name": "checkout", "gitlab_project": "acme/checkout",
                    "image_repository": IMAGE, "required_approvals": 1,
                    "stages": [
                        {"name": "staging", "app_id": apps[0], "strategy": "rolling"},
                        {"name": "prod", "app_id": apps[1], "strategy": "rolling"}
                    ]
                }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{item}");
        let eric = app.api(Some(&app.token_for("eric")));
        let olivia = app.api(Some(&app.token_for("olivia")));
        Rollout {
            org,
            eric,
            olivia,
            sim,
            gitlab,
            item: item["id"].as_i64().unwrap(),
            staging_cluster: clusters[0],
            prod_cluster: clusters[1],
        }
    }

    /// Files an order for `version` as eric and approves it as olivia.
    pub async fn approved_order(&self, version: &str) -> i64 {
        approved_order(&self.eric, &self.olivia, self.item, version).await
    }

    /// Starts stage `stage` of order `id` as eric (202 expected).
    pub async fn deploy(&self, id: i64, stage: u32) {
        let (s, v) = self
            .eric
            .post(
                &format!("/api/v1/work-orders/{id}/stages/{stage}/deploy"),
                json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    }

    /// Replaces stage 1 (staging) of the item, as olivia: a canary stage
    /// of plan `canary` when given, verified by `verify` when given; the
    /// other stages as they are.
    pub async fn put_stage_1(
        &self,
        canary: Option<Value>,
        verify: Option<Value>,
    ) -> (StatusCode, Value) {
        edit_stages(&self.olivia, self.item, |stages| {
            if let Some(canary) = canary {
                stages[0]["strategy"] = json!("canary");
                stages[0]["canary"] = canary;
            }
            if let Some(verify) = verify {
                stages[0]["verify"] = verify;
            }
        })
        .await
    }

    /// A dev copy of checkout (namespace `dev` of cluster `dev`) as app
    /// `checkout-dev` on /acme/pay/api, for CI's fast path: its id.
    pub async fn dev_app(&self) -> i64 {
        self.sim
            .sim
            .create_deployment("dev", "checkout", "app", &format!("{IMAGE}:v1.0.0"), 1, 3);
        let (s, dev) = self
            .org
            .admin
            .post(
                "/api/v1/clusters",
                json!({"name": "dev", "environment": "dev", "kubeconfig": self.sim.kubeconfig()}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{dev}");
        let (s, app) = self
            .org
            .admin
            .post(
                "/api/v1/apps",
                json!({"name": "checkout-dev", "cluster_id": dev["id"], "namespace": "dev",
                       "deployment": "checkout", "container": "app", "node_id": self.org.pay_api}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{app}");
        app["id"].as_i64().unwrap()
    }

    /// Image PATCHes of Deployment `ns/checkout` the cluster received.
    pub fn image_patches(&self, ns: &str) -> usize {
        image_patches(&self.sim.sim, ns, "checkout")
    }

    pub fn image(&self, ns: &str) -> String {
        live_image(&self.sim.sim, ns, "checkout")
    }
}

/// Puts release item `item` back as `api` with its stages as `edit`
/// leaves them (each read back as its name, app and strategy).
pub async fn edit_stages(
    api: &Api,
    item: i64,
    edit: impl FnOnce(&mut Vec<Value>),
) -> (StatusCode, Value) {
    let path = format!("/api/v1/release-items/{item}");
    let (_, item) = api.get(&path).await;
    let mut stages: Vec<Value> = item["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!({"name": s["name"], "app_id": s["app_id"], "strategy": s["strategy"]}))
        .collect();
    edit(&mut stages);
    let body = json!({
        "node_id": item["node_id"], "name": item["name"],
        "gitlab_project": item["gitlab_project"], "image_repository": item["image_repository"],
        "required_approvals": item["required_approvals"], "stages": stages
    });
    api.put(&path, body).await
}

/// Files an order for `version` of `item` (201 expected): its id.
pub async fn file_order(eric: &Api, item: i64, version: &str) -> i64 {
    let (s, order) = eric
        .post(
            "/api/v1/work-orders",
            json!({"release_item_id": item, "version": version, "title": format!("Ship {version}")}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{order}");
    order["id"].as_i64().unwrap()
}

pub async fn approved_order(eric: &Api, olivia: &Api, item: i64, version: &str) -> i64 {
    let id = file_order(eric, item, version).await;
    let (s, v) = olivia
        .post(&format!("/api/v1/work-orders/{id}/approve"), json!({}))
        .await;
    assert_eq!(
        (s, v["state"].as_str()),
        (StatusCode::OK, Some("approved")),
        "{v}"
    );
    id
}

/// PATCH requests that set an image on Deployment `ns/name` and that the
/// cluster applied (answered 200).
pub fn image_patches(sim: &Sim, ns: &str, name: &str) -> usize {
    image_patch_requests(sim, ns, name)
        .iter()
        .filter(|status| **status == 200)
        .count()
}

/// The answers to every image PATCH of `ns/name` (refused ones included).
pub fn image_patch_requests(sim: &Sim, ns: &str, name: &str) -> Vec<u16> {
    sim.requests()
        .iter()
        .filter(|r| {
            r.method == "PATCH"
                && r.path == format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}")
                && r.body.contains("\"image\"")
        })
        .map(|r| r.status)
        .collect()
}

pub fn live_image(sim: &Sim, ns: &str, name: &str) -> String {
    let d = sim.deployment(ns, name).expect("deployment");
    d.spec.template.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap()
}

/// The stage run `n` (1-based) of an order as the API shows it.
pub async fn stage(api: &Api, id: i64, n: usize) -> Value {
    let (s, order) = api.get(&format!("/api/v1/work-orders/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{order}");
    order["stage_runs"][n - 1].clone()
}

/// Waits until stage `n` reaches `status`; panics with the order when it
/// does not within a minute.
pub async fn wait_stage(api: &Api, id: i64, n: usize, status: &str) {
    let reached = eventually(Duration::from_secs(60), || async {
        stage(api, id, n).await["status"] == status
    })
    .await;
    if !reached {
        let (_, order) = api.get(&format!("/api/v1/work-orders/{id}")).await;
        panic!("stage {n} of #{id} did not become {status}: {order:#}");
    }
}

pub async fn order_state(api: &Api, id: i64) -> String {
    let (_, order) = api.get(&format!("/api/v1/work-orders/{id}")).await;
    order["state"].as_str().unwrap_or_default().to_string()
}

pub async fn timeline_kinds(api: &Api, id: i64) -> Vec<String> {
    let (_, order) = api.get(&format!("/api/v1/work-orders/{id}")).await;
    order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

db_test!(
    stages_deploy_in_order_with_one_patch_each,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        let id = r.approved_order("v1.1.0").await;
        let deploy = |n: u32| {
            let eric = r.eric.clone();
            async move {
                eric.post(
                    &format!("/api/v1/work-orders/{id}/stages/{n}/deploy"),
                    json!({}),
                )
                .await
            }
        };
        // Stage 2 cannot start before stage 1 succeeded.
        let (s, v) = deploy(2).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("stage 1"),
            "{v}"
        );
        // Viewers cannot deploy.
        let vera = app.api(Some(&app.token_for("vera")));
        let (s, _) = vera
            .post(
                &format!("/api/v1/work-orders/{id}/stages/1/deploy"),
                json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);

        let (s, v) = deploy(1).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        assert_eq!(v["state"], "in_progress");
        // Deploying twice is refused while it runs and after.
        let (s, _) = deploy(1).await;
        assert_eq!(s, StatusCode::CONFLICT);
        wait_stage(&r.eric, id, 1, "succeeded").await;
        let s1 = stage(&r.eric, id, 1).await;
        assert_eq!(s1["replaced_image"], format!("{IMAGE}:v1.0.0"));
        assert_eq!(s1["replaced_revision"], "1");
        assert_eq!(s1["new_revision"], "2");
        assert!(s1["finished_at"].as_i64().is_some());
        assert_eq!(r.image("staging"), format!("{IMAGE}:v1.1.0"));
        assert_eq!(
            r.image("prod"),
            format!("{IMAGE}:v1.0.0"),
            "stage 2 untouched"
        );
        assert_eq!(order_state(&r.eric, id).await, "in_progress");
        let (s, _) = deploy(1).await;
        assert_eq!(s, StatusCode::CONFLICT);

        let (s, v) = deploy(2).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        wait_stage(&r.eric, id, 2, "succeeded").await;
        assert_eq!(order_state(&r.eric, id).await, "succeeded");
        assert_eq!(r.image("prod"), format!("{IMAGE}:v1.1.0"));
        assert_eq!(r.image_patches("staging"), 1, "{:#?}", r.sim.sim.requests());
        assert_eq!(r.image_patches("prod"), 1);
        let kinds = timeline_kinds(&r.eric, id).await;
        for kind in [
            "stage_deploy_started",
            "deploying",
            "stage_succeeded",
            "succeeded",
        ] {
            assert!(kinds.contains(&kind.to_string()), "{kind} in {kinds:?}");
        }
        // The rollout was followed on a watch, not by polling.
        assert!(
            r.sim
                .sim
                .requests()
                .iter()
                .any(|q| q.query.contains("watch=true") || q.query.contains("watch=1")),
            "no watch request"
        );
    }
);

db_test!(
    a_stuck_rollout_fails_and_rolls_back_by_itself,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        r.sim.sim.faults().never_ready(":v1.2.0");
        let id = r.approved_order("v1.2.0").await;
        r.deploy(id, 1).await;
        wait_stage(&r.eric, id, 1, "rolled_back").await;
        assert_eq!(
            order_state(&r.eric, id).await,
            "rolled_back",
            "nothing of the order runs any more"
        );
        assert_eq!(r.image("staging"), format!("{IMAGE}:v1.0.0"));
        let live = r.sim.sim.deployment("staging", "checkout").unwrap();
        let status = live.status.unwrap();
        assert_eq!(status.available_replicas, Some(2), "old pods serve again");
        let kinds = timeline_kinds(&r.eric, id).await;
        let at = |k: &str| {
            kinds
                .iter()
                .position(|x| x == k)
                .unwrap_or_else(|| panic!("{k} in {kinds:?}"))
        };
        assert!(at("stage_failed") < at("rollback_started"));
        assert!(at("rollback_started") < at("rolled_back"));
        let s1 = stage(&r.eric, id, 1).await;
        assert_eq!(s1["restored_revision"], "1");
        assert!(s1["message"].as_str().unwrap().contains("v1.0.0"), "{s1}");
        // Nothing is left to roll back, and stage 2 may not start.
        let (s, _) = r
            .eric
            .post(
                &format!("/api/v1/work-orders/{id}/stages/1/rollback"),
                json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT);
        let (s, _) = r
            .eric
            .post(
                &format!("/api/v1/work-orders/{id}/stages/2/deploy"),
                json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT);
        // The order is over: nothing to close, and the item takes a new one.
        let (s, v) = r
            .eric
            .post(
                &format!("/api/v1/work-orders/{id}/close"),
                json!({"reason": "bad build"}),
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        r.approved_order("v1.3.0").await;
    }
);

db_test!(
    a_finished_order_rolled_back_stage_by_stage_says_what_still_runs,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        let id = r.approved_order("v1.1.0").await;
        let post = |path: String| {
            let api = r.eric.clone();
            async move { api.post(&path, json!({})).await }
        };
        for n in [1, 2] {
            let (s, v) = post(format!("/api/v1/work-orders/{id}/stages/{n}/deploy")).await;
            assert_eq!(s, StatusCode::ACCEPTED, "{v}");
            wait_stage(&r.eric, id, n, "succeeded").await;
        }
        assert_eq!(order_state(&r.eric, id).await, "succeeded");
        let browser = app.browser_as("eric", USER_PASSWORD).await;

        // Without JavaScript a rollback button first gets a confirmation
        // page that says what comes back, and changes nothing.
        let (s, html, _) = browser
            .submit(&format!("/work-orders/{id}/stages/2/rollback"), &[])
            .await;
        assert_eq!(s, StatusCode::OK, "{html}");
        assert!(html.contains("Roll stage 2 (prod) back?"), "{html}");
        assert!(html.contains(r#"name="confirmed" value="yes""#), "{html}");
        assert!(
            html.contains(&format!("{IMAGE}:v1.0.0")),
            "what comes back: {html}"
        );
        assert_eq!(stage(&r.eric, id, 2).await["status"], "succeeded");
        // Prod goes back; staging still runs v1.1.0.
        let (s, v) = post(format!("/api/v1/work-orders/{id}/stages/2/rollback")).await;
        assert_eq!(
            (s, v["state"].as_str()),
            (StatusCode::ACCEPTED, Some("succeeded")),
            "{v}"
        );
        wait_stage(&r.eric, id, 2, "rolled_back").await;
        assert_eq!(order_state(&r.eric, id).await, "partially_rolled_back");
        assert_eq!(r.image("prod"), format!("{IMAGE}:v1.0.0"));
        assert_eq!(r.image("staging"), format!("{IMAGE}:v1.1.0"));
        let (_, list) = r
            .eric
            .get("/api/v1/work-orders?state=partially_rolled_back")
            .await;
        let ids: Vec<i64> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, [id], "the state filters the list");
        let (_, page) = browser.get(&format!("/work-orders/{id}")).await;
        assert!(page.contains(">Partially rolled back</span>"), "{page}");

        // Staging goes back too: nothing of the order runs.
        let (s, _) = post(format!("/api/v1/work-orders/{id}/stages/1/rollback")).await;
        assert_eq!(s, StatusCode::ACCEPTED);
        wait_stage(&r.eric, id, 1, "rolled_back").await;
        assert_eq!(order_state(&r.eric, id).await, "rolled_back");
        let (_, page) = browser.get(&format!("/work-orders/{id}")).await;
        assert!(page.contains(">Rolled back</span>"), "{page}");
        assert!(
            !page.contains(">Succeeded</span>"),
            "the order no longer says succeeded"
        );
        // It offers to file the item again, with this version or a newer one.
        assert!(
            page.contains(&format!(
                "href=\"/work-orders/new?item={}&amp;version=v1.1.0\"",
                r.item
            )),
            "{page}"
        );
        assert!(
            page.contains(&format!("href=\"/work-orders/new?item={}\"", r.item)),
            "{page}"
        );
        let (s, _) = post(format!("/api/v1/work-orders/{id}/stages/2/deploy")).await;
        assert_eq!(
            s,
            StatusCode::CONFLICT,
            "a finished order deploys nothing more"
        );
    }
);

db_test!(
    a_manual_rollback_restores_the_replaced_template,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        let id = r.approved_order("v1.3.0").await;
        let (s, _) = r
            .eric
            .post(
                &format!("/api/v1/work-orders/{id}/stages/2/rollback"),
                json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "a stage that never deployed");
        r.eric
            .post(
                &format!("/api/v1/work-orders/{id}/stages/1/deploy"),
                json!({}),
            )
            .await;
        wait_stage(&r.eric, id, 1, "succeeded").await;
        let before = r.sim.sim.deployment("staging", "checkout").unwrap();
        let replaced_template = {
            let mut t = before.spec.template.clone();
            t.spec.as_mut().unwrap().containers[0].image = Some(format!("{IMAGE}:v1.0.0"));
            t
        };
        let vera = app.api(Some(&app.token_for("vera")));
        let (s, _) = vera
            .post(
                &format!("/api/v1/work-orders/{id}/stages/1/rollback"),
                json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, v) = r
            .eric
            .post(
                &format!("/api/v1/work-orders/{id}/stages/1/rollback"),
                json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        wait_stage(&r.eric, id, 1, "rolled_back").await;
        let after = r.sim.sim.deployment("staging", "checkout").unwrap();
        assert_eq!(after.spec.template, replaced_template);
        assert_eq!(
            after.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"],
            "3",
            "the old ReplicaSet comes back as revision 3, as kubectl rollout undo does"
        );
        assert_eq!(
            order_state(&r.eric, id).await,
            "rolled_back",
            "stage 2 never ran and never will"
        );
        let s1 = stage(&r.eric, id, 1).await;
        assert_eq!(s1["restored_revision"], "1");
        let (s, _) = r
            .eric
            .post(
                &format!("/api/v1/work-orders/{id}/stages/1/rollback"),
                json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "rolled back once");
        assert_eq!(
            r.image_patches("staging"),
            2,
            "the deploy and the rollback each set the image, nothing else"
        );
        // kubectl reads the cluster the way Rollway recorded it.
        let image = kubectl(
            &r.sim,
            &[
                "-n",
                "staging",
                "get",
                "deploy",
                "checkout",
                "-o",
                "jsonpath={.spec.template.spec.containers[0].image}",
            ],
        )
        .await;
        assert_eq!(image, format!("{IMAGE}:v1.0.0"));
        let history = kubectl(
            &r.sim,
            &["-n", "staging", "rollout", "history", "deploy/checkout"],
        )
        .await;
        let revisions: Vec<&str> = history
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
            .collect();
        assert_eq!(revisions, ["2", "3"], "{history}");
        kubectl(
            &r.sim,
            &[
                "-n",
                "staging",
                "rollout",
                "status",
                "deploy/checkout",
                "--timeout=30s",
            ],
        )
        .await;
    }
);

/// Runs the real kubectl against the simulated cluster; its stdout.
async fn kubectl(sim: &RunningSim, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kubeconfig");
    std::fs::write(&config, sim.kubeconfig()).unwrap();
    let mut command = std::process::Command::new("kubectl");
    command
        .arg("--kubeconfig")
        .arg(&config)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .args(args)
        .env("HOME", dir.path());
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("kubectl (./scripts/test installs Debian's kubernetes-client)");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

db_test!(
    a_restart_mid_rollout_resumes_without_patching_again,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let config = SimConfig {
            ready_delay: Duration::from_millis(1500),
            ..sim_config()
        };
        let r = Rollout::create_with(&app, config, 3).await;
        let id = r.approved_order("v1.4.0").await;
        let (s, _) = r
            .eric
            .post(
                &format!("/api/v1/work-orders/{id}/stages/1/deploy"),
                json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        assert!(
            eventually(Duration::from_secs(20), || async {
                r.image_patches("staging") == 1
            })
            .await,
            "the first server patched"
        );
        assert_eq!(stage(&r.eric, id, 1).await["status"], "deploying");
        // Killed (no graceful shutdown): its lease has to run out.
        let db = app.stop();
        let app = TestApp::start_on(db, engine_start());
        let eric = app.api(Some(&app.token_for("eric")));
        wait_stage(&eric, id, 1, "succeeded").await;
        assert_eq!(r.image_patches("staging"), 1, "{:#?}", r.sim.sim.requests());
        assert_eq!(r.image("staging"), format!("{IMAGE}:v1.4.0"));
        // The job was claimed again by the new server.
        let attempts = app
            .db
            .query_text("SELECT CAST(attempts AS TEXT) FROM jobs WHERE kind = 'deploy'")
            .await;
        assert_eq!(attempts.as_deref(), Some("2"));
    }
);

db_test!(
    errors_500_hangs_and_dropped_watches_do_not_stop_a_rollout,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let config = SimConfig {
            ready_delay: Duration::from_millis(600),
            ..sim_config()
        };
        let r = Rollout::create_with(&app, config, 3).await;
        let id = r.approved_order("v1.5.0").await;
        let faults = r.sim.sim.faults();
        faults.fail_next(2, Some("PATCH"), "/namespaces/staging/deployments/checkout");
        faults.hang_next(1, Some("GET"), "/namespaces/staging/deployments");
        faults.conflict_next(1, Some("PATCH"), "/namespaces/staging/deployments/checkout");
        r.deploy(id, 1).await;
        assert!(
            eventually(Duration::from_secs(30), || async {
                r.image("staging") == format!("{IMAGE}:v1.5.0")
            })
            .await
        );
        faults.drop_watches();
        wait_stage(&r.eric, id, 1, "succeeded").await;
        let live = r.sim.sim.deployment("staging", "checkout").unwrap();
        assert_eq!(
            live.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"],
            "2",
            "one template change, however many tries"
        );
        assert_eq!(live.status.unwrap().available_replicas, Some(3));
        // The faults were met: two 500s and a 409 before the one PATCH
        // that landed, and a GET that hung until the call deadline.
        assert_eq!(
            image_patch_requests(&r.sim.sim, "staging", "checkout"),
            [500, 500, 409, 200]
        );
        assert_eq!(r.image_patches("staging"), 1);
        assert!(
            r.sim
                .sim
                .requests()
                .iter()
                .filter(|q| q.method == "GET" && q.path.contains("/namespaces/staging/deployments"))
                .count()
                >= 2
        );
    }
);

db_test!(bad_requests_change_nothing, |backend| async move {
    let app = TestApp::start_with(backend, engine_start()).await;
    let r = Rollout::create(&app).await;
    let order_url = |id: i64| format!("/api/v1/work-orders/{id}");
    // Not approved yet.
    let (_, order) = r
        .eric
        .post(
            "/api/v1/work-orders",
            json!({"release_item_id": r.item, "version": "v1.1.0", "title": "early"}),
        )
        .await;
    let id = order["id"].as_i64().unwrap();
    let (s, _) = r
        .eric
        .post(&format!("{}/stages/1/deploy", order_url(id)), json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, v) = r
        .eric
        .post(&format!("{}/stages/9/deploy", order_url(id)), json!({}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, _) = r
        .eric
        .post(&format!("{}/stages/x/deploy", order_url(id)), json!({}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = r
        .eric
        .post("/api/v1/work-orders/999999/stages/1/deploy", json!({}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    r.olivia
        .post(&format!("/api/v1/work-orders/{id}/approve"), json!({}))
        .await;

    // The Deployment is missing: 422 naming it, nothing written.
    let gone = reqwest::Client::new()
        .delete(format!(
            "{}/apis/apps/v1/namespaces/staging/deployments/checkout",
            r.sim.url()
        ))
        .send()
        .await
        .unwrap();
    assert!(gone.status().is_success());
    let (s, v) = r
        .eric
        .post(&format!("{}/stages/1/deploy", order_url(id)), json!({}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("staging/checkout"),
        "{v}"
    );
    assert_eq!(stage(&r.eric, id, 1).await["status"], "pending");
    assert_eq!(order_state(&r.eric, id).await, "approved");

    // The cluster cannot be reached: 502 naming it, nothing written.
    let (s, v) = r
        .org
        .admin
        .patch(
            &format!("/api/v1/clusters/{}", r.staging_cluster),
            json!({"kubeconfig": crate::registry::kubeconfig()}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = r
        .eric
        .post(&format!("{}/stages/1/deploy", order_url(id)), json!({}))
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("staging"),
        "{v}"
    );
    assert_eq!(stage(&r.eric, id, 1).await["status"], "pending");
    let jobs = app
        .db
        .query_text("SELECT CAST(COUNT(*) AS TEXT) FROM jobs")
        .await;
    assert_eq!(jobs.as_deref(), Some("0"));
    let kinds = timeline_kinds(&r.eric, id).await;
    assert!(!kinds.iter().any(|k| k.starts_with("stage_")), "{kinds:?}");

    // A kubeconfig that parses as YAML but cannot make a client: 502.
    let broken = crate::registry::kubeconfig().replace(
        "    server: http://127.0.0.1:1\n",
        "    server: http://127.0.0.1:1\n    certificate-authority-data: '%%% not base64 %%%'\n",
    );
    let (s, v) = r
        .org
        .admin
        .patch(
            &format!("/api/v1/clusters/{}", r.staging_cluster),
            json!({"kubeconfig": broken}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = r
        .eric
        .post(&format!("{}/stages/1/deploy", order_url(id)), json!({}))
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("kubeconfig"),
        "{v}"
    );

    // Back to the simulated cluster: a container the Deployment lacks.
    r.sim.sim.create_deployment(
        "staging",
        "checkout",
        "app",
        &format!("{IMAGE}:v1.0.0"),
        1,
        3,
    );
    r.org
        .admin
        .patch(
            &format!("/api/v1/clusters/{}", r.staging_cluster),
            json!({"kubeconfig": r.sim.kubeconfig()}),
        )
        .await;
    let (_, item) = r
        .eric
        .get(&format!("/api/v1/release-items/{}", r.item))
        .await;
    let app_id = item["stages"][0]["app_id"].as_i64().unwrap();
    let (_, a) = r.org.admin.get(&format!("/api/v1/apps/{app_id}")).await;
    let fields = json!({"name": a["name"], "cluster_id": a["cluster_id"], "namespace": a["namespace"],
        "deployment": a["deployment"], "container": "sidecar", "node_id": a["node_id"]});
    let (s, v) = r
        .org
        .admin
        .patch(&format!("/api/v1/apps/{app_id}"), fields)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = r
        .eric
        .post(&format!("{}/stages/1/deploy", order_url(id)), json!({}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no container sidecar"),
        "{v}"
    );
    assert_eq!(stage(&r.eric, id, 1).await["status"], "pending");
    assert_eq!(r.image_patches("staging"), 0);
});

db_test!(
    a_paused_deployment_is_refused_before_anything_is_written,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        let (_, order) = r
            .eric
            .post(
                "/api/v1/work-orders",
                json!({"release_item_id": r.item, "version": "v1.1.0", "title": "paused"}),
            )
            .await;
        let id = order["id"].as_i64().unwrap();
        r.olivia
            .post(&format!("/api/v1/work-orders/{id}/approve"), json!({}))
            .await;
        let pause = |paused: bool| {
            let url = format!(
                "{}/apis/apps/v1/namespaces/staging/deployments/checkout",
                r.sim.url()
            );
            async move {
                let answer = reqwest::Client::new()
                    .patch(url)
                    .header("content-type", "application/merge-patch+json")
                    .body(json!({"spec": {"paused": paused}}).to_string())
                    .send()
                    .await
                    .unwrap();
                assert!(answer.status().is_success(), "{}", answer.status());
            }
        };
        // `kubectl rollout pause`: the deploy is refused with 422 naming the
        // Deployment and how to resume it; nothing is written anywhere.
        pause(true).await;
        let deploy = format!("/api/v1/work-orders/{id}/stages/1/deploy");
        let (s, v) = r.eric.post(&deploy, json!({})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("staging/checkout"), "{v}");
        assert!(message.contains("paused"), "{v}");
        assert!(message.contains("kubectl rollout resume"), "{v}");
        assert_eq!(v["error"]["field"], "stage");
        assert_eq!(stage(&r.eric, id, 1).await["status"], "pending");
        assert_eq!(order_state(&r.eric, id).await, "approved");
        assert_eq!(r.image_patches("staging"), 0);
        let jobs = app
            .db
            .query_text("SELECT CAST(COUNT(*) AS TEXT) FROM jobs")
            .await;
        assert_eq!(jobs.as_deref(), Some("0"));
        // Resumed, the same deploy goes through.
        pause(false).await;
        let (s, v) = r.eric.post(&deploy, json!({})).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    }
);

db_test!(pods_and_logs_of_a_stage, |backend| async move {
    let app = TestApp::start_with(backend, engine_start()).await;
    let r = Rollout::create(&app).await;
    let id = r.approved_order("v1.1.0").await;
    r.eric
        .post(
            &format!("/api/v1/work-orders/{id}/stages/1/deploy"),
            json!({}),
        )
        .await;
    wait_stage(&r.eric, id, 1, "succeeded").await;
    let browser = app.browser_as("eric", USER_PASSWORD).await;
    let (s, html) = browser.get(&format!("/work-orders/{id}/pods")).await;
    assert_eq!(s, StatusCode::OK);
    let new_pods: Vec<String> = r
        .sim
        .sim
        .pods("staging")
        .into_iter()
        .filter(|p| {
            p.spec.as_ref().unwrap().containers[0].image.as_deref()
                == Some(&format!("{IMAGE}:v1.1.0"))
        })
        .map(|p| p.metadata.name.unwrap())
        .collect();
    assert_eq!(new_pods.len(), 2);
    for pod in &new_pods {
        assert!(html.contains(pod), "{pod} listed");
    }
    assert!(
        html.contains("new version") && html.contains("old version"),
        "{html}"
    );
    let logs = format!("/work-orders/{id}/stages/1/pods/{}/logs", new_pods[0]);
    let (s, html) = browser.get(&format!("{logs}?tail=5")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("v1.1.0"), "the log names the image");
    let (s, _) = browser.get(&format!("{logs}?container=nope")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = browser.get(&format!("{logs}?tail=0")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // Following: server-sent events carry log lines.
    let mut resp = browser
        .client
        .get(app.url(&format!("{logs}/stream")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut seen = String::new();
    while !seen.contains("data:") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .expect("a log line within 10 s")
            .unwrap()
            .expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(resp);
    // A pod of the namespace outside the Deployment's selector: 404.
    let stranger = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "stranger", "namespace": "staging", "labels": {"app": "other"}},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]}});
    let made = reqwest::Client::new()
        .post(format!("{}/api/v1/namespaces/staging/pods", r.sim.url()))
        .json(&stranger)
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success(), "{}", made.status());
    for path in [
        format!("/work-orders/{id}/stages/1/pods/stranger/logs"),
        format!("/work-orders/{id}/stages/1/pods/stranger/logs/stream"),
        format!("/work-orders/{id}/stages/1/pods/missing/logs"),
    ] {
        let (s, _) = browser.get(&path).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    // People who may not see the node see nothing.
    let otto = app.browser_as("otto", USER_PASSWORD).await;
    let (s, _) = otto.get(&format!("/work-orders/{id}/pods")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = otto.get(&logs).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
});

db_test!(connection_tests_name_the_outcome, |backend| async move {
    let app = TestApp::start_with(backend, engine_start()).await;
    let r = Rollout::create(&app).await;
    let (s, v) = r
        .org
        .admin
        .post(
            &format!("/api/v1/clusters/{}/test", r.prod_cluster),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["version"].as_str().unwrap().starts_with('v'), "{v}");
    let (s, _) = r
        .eric
        .post(
            &format!("/api/v1/clusters/{}/test", r.prod_cluster),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    r.org
        .admin
        .patch(
            &format!("/api/v1/clusters/{}", r.prod_cluster),
            json!({"kubeconfig": crate::registry::kubeconfig()}),
        )
        .await;
    let (s, v) = r
        .org
        .admin
        .post(
            &format!("/api/v1/clusters/{}/test", r.prod_cluster),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("prod"),
        "{v}"
    );
});

/// Two servers share one PostgreSQL database and drive 20 orders (one
/// item each): every stage is patched exactly once.
#[tokio::test]
async fn two_servers_drive_each_stage_once() {
    let a = TestApp::start_with(Backend::Postgres, engine_start()).await;
    let b = TestApp::start_on(a.db.shared(), engine_start());
    let sim = Sim::start(sim_config(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let org = Org::create(&a).await;
    let gitlab = FakeGitlab::start().await;
    gitlab.add_project(42, "acme/checkout", &["v2.0.0", "v1.0.0"]);
    org.admin
        .put(
            "/api/v1/settings/gitlab",
            json!({"url": gitlab.url, "token": TOKEN}),
        )
        .await;
    let (_, cluster) = org
        .admin
        .post(
            "/api/v1/clusters",
            json!({"name": "dev", "environment": "dev", "kubeconfig": sim.kubeconfig()}),
        )
        .await;
    let eric_a = a.api(Some(&a.token_for("eric")));
    let eric_b = b.api(Some(&b.token_for("eric")));
    let olivia = a.api(Some(&a.token_for("olivia")));
    let _ = USER_PASSWORD;
    let mut orders = Vec::new();
    for i in 0..20 {
        let name = format!("svc{i}");
        sim.sim
            .create_deployment("team", &name, "app", &format!("{IMAGE}:v1.0.0"), 1, 30);
        let (s, app) = org
            .admin
            .post(
                "/api/v1/apps",
                json!({"name": name, "cluster_id": cluster["id"], "namespace": "team",
                       "deployment": name, "container": "app", "node_id": org.pay_api}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{app}");
        let (s, item) = org
            .admin
            .post(
                "/api/v1/release-items",
                json!({"node_id": org.pay, "name": name, "gitlab_project": "acme/checkout",
                       "image_repository": IMAGE,
                       "stages": [{"name": "dev", "app_id": app["id"], "strategy": "rolling"}]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{item}");
        let id = approved_order(&eric_a, &olivia, item["id"].as_i64().unwrap(), "v2.0.0").await;
        orders.push((name, id));
    }
    for (i, (_, id)) in orders.iter().enumerate() {
        let via = if i % 2 == 0 { &eric_a } else { &eric_b };
        let (s, v) = via
            .post(
                &format!("/api/v1/work-orders/{id}/stages/1/deploy"),
                json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    }
    for (_, id) in &orders {
        wait_stage(&eric_a, *id, 1, "succeeded").await;
    }
    for (name, _) in &orders {
        assert_eq!(image_patches(&sim.sim, "team", name), 1, "{name}");
        assert_eq!(
            live_image(&sim.sim, "team", name),
            format!("{IMAGE}:v2.0.0")
        );
    }
    // Both servers took part.
    let owners =
        a.db.query_text("SELECT CAST(COUNT(DISTINCT lease_owner) AS TEXT) FROM jobs")
            .await;
    assert_eq!(owners.as_deref(), Some("2"));
    drop(b);
}

/// A rollout longer than the lease stays with the server that claimed it
/// (the lease is renewed), even with another server polling for work.
#[tokio::test]
async fn a_long_rollout_keeps_its_lease() {
    let a = TestApp::start_with(Backend::Postgres, engine_start()).await;
    let config = SimConfig {
        ready_delay: Duration::from_millis(1500),
        ..sim_config()
    };
    let r = Rollout::create_with(&a, config, 3).await;
    let b = TestApp::start_on(a.db.shared(), engine_start());
    let id = r.approved_order("v1.2.0").await;
    let started = std::time::Instant::now();
    let (s, _) = r
        .eric
        .post(
            &format!("/api/v1/work-orders/{id}/stages/1/deploy"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    wait_stage(&r.eric, id, 1, "succeeded").await;
    assert!(
        started.elapsed() > Duration::from_secs(4),
        "the rollout outlasted the 2 s lease"
    );
    let attempts =
        a.db.query_text("SELECT CAST(attempts AS TEXT) FROM jobs WHERE kind = 'deploy'")
            .await;
    assert_eq!(attempts.as_deref(), Some("1"), "claimed once");
    assert_eq!(r.image_patches("staging"), 1);
    drop(b);
}

/// Applies the migrations up to `last` (from the folders on disk, the
/// files the server embeds) to a fresh database: the schema an older
/// version of Rollway left.
async fn migrate_up_to(db: &TestDb, last: i64) {
    sqlx::any::install_default_drivers();
    let folder = match db.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let dir = format!("{}/../migrations/{folder}", env!("CARGO_MANIFEST_DIR"));
    let mut migrator = sqlx::migrate::Migrator::new(std::path::Path::new(&dir))
        .await
        .expect("read the migrations");
    let older: Vec<_> = migrator
        .migrations
        .iter()
        .filter(|m| m.version <= last)
        .cloned()
        .collect();
    assert_eq!(older.len() as i64, last, "migrations 1..={last} on disk");
    migrator.migrations = older.into();
    let url = match db.backend {
        Backend::Sqlite => format!("{}?mode=rwc", db.url),
        Backend::Postgres => db.url.clone(),
    };
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("connect to the test database");
    migrator.run(&mut conn).await.expect("migrate");
}

db_test!(
    jobs_queued_and_running_before_generic_jobs_are_finished_by_the_engine,
    |backend| async move {
        // A database as version 0006 left it, with two deploys in flight:
        // one queued, one claimed by a server that is gone (its lease runs
        // out two seconds from now).
        let db = TestDb::new(backend).await;
        migrate_up_to(&db, 6).await;
        let sim = Sim::start(sim_config(), "127.0.0.1:0".parse().unwrap())
            .await
            .expect("start the simulated cluster");
        let sealer = SecretKey::new(SECRET_KEY.as_bytes()).sealer();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        db.execute(
            "INSERT INTO accounts (id, kind, name, display_name, is_admin, created_at, updated_at) \
             VALUES (1, 'user', 'admin', 'Administrator', 1, 0, 0)",
        )
        .await;
        db.execute(
            "INSERT INTO nodes (id, parent_id, name, title, path, created_at, updated_at) \
             VALUES (1, NULL, 'acme', 'Acme', '/acme', 0, 0)",
        )
        .await;
        for (id, ns, lease) in [
            (1, "staging", "NULL, NULL, 0".to_string()),
            (
                2,
                "prod",
                format!("'a-server-before-the-upgrade', {}, 1", now + 2000),
            ),
        ] {
            sim.sim
                .create_deployment(ns, "checkout", "app", &format!("{IMAGE}:v1.0.0"), 2, 3);
            let sealed = sealer
                .seal(&sim.kubeconfig(), &format!("cluster:{id}"))
                .unwrap();
            for sql in [
                format!(
                    "INSERT INTO clusters (id, name, environment, in_cluster, kubeconfig_sealed, created_at, updated_at) \
                     VALUES ({id}, '{ns}', '{ns}', 0, '{sealed}', 0, 0)"
                ),
                format!(
                    "INSERT INTO apps (id, name, cluster_id, namespace, deployment, container, node_id, created_at, updated_at) \
                     VALUES ({id}, 'checkout', {id}, '{ns}', 'checkout', 'app', 1, 0, 0)"
                ),
                format!(
                    "INSERT INTO release_items (id, node_id, name, gitlab_project, image_repository, required_approvals, \
                     auto_rollback, created_at, updated_at) VALUES ({id}, 1, 'checkout-{ns}', 'acme/checkout', '{IMAGE}', 1, 1, 0, 0)"
                ),
                format!(
                    "INSERT INTO release_stages (id, release_item_id, position, name, app_id, strategy) \
                     VALUES ({id}, {id}, 1, '{ns}', {id}, 'rolling')"
                ),
                format!(
                    "INSERT INTO work_orders (id, release_item_id, node_id, version, image, title, state, creator_id, \
                     required_approvals, created_at, updated_at) \
                     VALUES ({id}, {id}, 1, 'v1.1.0', '{IMAGE}:v1.1.0', 'Ship v1.1.0', 'in_progress', 1, 1, 0, 0)"
                ),
                format!(
                    "INSERT INTO stage_runs (id, work_order_id, position, name, app_id, strategy, status, started_at) \
                     VALUES ({id}, {id}, 1, '{ns}', {id}, 'rolling', 'deploying', 0)"
                ),
                // The job the way 0005's engine queued it.
                format!(
                    "INSERT INTO jobs (kind, work_order_id, stage_position, state, lease_owner, lease_until, attempts, \
                     run_at, created_at, updated_at) VALUES ('deploy', {id}, 1, 'queued', {lease}, 0, 0, 0)"
                ),
            ] {
                db.execute(&sql).await;
            }
        }

        // Today's server migrates the database and finishes both jobs.
        let app = TestApp::start_on(db, engine_start());
        // A job of a kind this version does not run waits for one that does.
        app.db
            .execute(
                "INSERT INTO jobs (kind, subject_kind, subject_id, state, run_at, created_at, updated_at) \
                 VALUES ('digest', 'notification', 42, 'queued', 0, 0, 0)",
            )
            .await;
        let admin = app.api(Some(&app.admin_token()));
        for (id, ns) in [(1, "staging"), (2, "prod")] {
            wait_stage(&admin, id, 1, "succeeded").await;
            assert_eq!(order_state(&admin, id).await, "succeeded");
            let s1 = stage(&admin, id, 1).await;
            assert_eq!(s1["replaced_image"], format!("{IMAGE}:v1.0.0"));
            assert_eq!(
                live_image(&sim.sim, ns, "checkout"),
                format!("{IMAGE}:v1.1.0")
            );
            assert_eq!(image_patches(&sim.sim, ns, "checkout"), 1, "{ns}");
            let job = app
                .db
                .query_text(&format!(
                    "SELECT state || ' ' || kind || ' ' || subject_kind || ' ' || CAST(attempts AS TEXT) \
                     FROM jobs WHERE work_order_id = {id}"
                ))
                .await;
            // The running one was claimed again once its lease ran out.
            let attempts = if id == 1 { 1 } else { 2 };
            assert_eq!(job, Some(format!("done deploy stage_run {attempts}")));
        }
        let unknown = app
            .db
            .query_text(
                "SELECT state || ' ' || CAST(attempts AS TEXT) || ' ' || COALESCE(lease_owner, 'unclaimed') \
                 FROM jobs WHERE kind = 'digest'",
            )
            .await;
        assert_eq!(unknown.as_deref(), Some("queued 0 unclaimed"));
        // One queued job per subject still holds after the rebuild (of a
        // kind no server here runs, so nothing claims it meanwhile).
        let url = app.db.url.clone();
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap();
        let mut inserted = Vec::new();
        for _ in 0..2 {
            let insert = sqlx::query(
                "INSERT INTO jobs (kind, subject_kind, subject_id, work_order_id, stage_position, state, run_at, \
                 created_at, updated_at) VALUES ('verify', 'stage_run', 1, 1, 1, 'queued', 0, 0, 0)",
            )
            .execute(&mut conn)
            .await;
            inserted.push(insert.is_ok());
        }
        assert_eq!(inserted, [true, false]);
        let queued = app
            .db
            .query_text(
                "SELECT CAST(COUNT(*) AS TEXT) FROM jobs WHERE state = 'queued' AND subject_kind = 'stage_run'",
            )
            .await;
        assert_eq!(queued.as_deref(), Some("1"));
    }
);

db_test!(
    one_rollout_can_be_followed_in_the_log,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let config = SimConfig {
            ready_delay: Duration::from_millis(300),
            ..sim_config()
        };
        let r = Rollout::create_with(&app, config, 2).await;
        let id = r.approved_order("v1.1.0").await;
        // The first image PATCH fails, so the driver retries it in its span.
        r.sim
            .sim
            .faults()
            .fail_next(1, Some("PATCH"), "/namespaces/staging/deployments/checkout");
        r.deploy(id, 1).await;
        wait_stage(&r.eric, id, 1, "succeeded").await;
        let job_span = format!("kind=deploy work_order={id} stage=1");
        let log = without_colours(&app.output());
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(&job_span)).collect();
        assert!(
            lines.iter().any(|l| l.contains("job started")),
            "a line naming the job, its order and stage:\n{log}"
        );
        assert!(lines.iter().any(|l| l.contains("job done")), "{log}");
        // The Kubernetes call's span sits inside the job's.
        assert!(
            lines.iter().any(|l| l.contains("retrying Kubernetes call")
                && l.contains("cluster=staging")
                && l.contains("verb=\"patch\"")
                && l.contains("namespace=\"staging\"")
                && l.contains("name=\"checkout\"")),
            "{log}"
        );
    }
);

/// Log text without its terminal colour codes.
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
