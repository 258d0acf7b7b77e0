//! Canary stages through OpenKruise Rollout on the simulated cluster (with
//! Kruise installed): the Kubernetes driver's part — whether a cluster
//! serves Rollouts, the Rollout a plan becomes, its pauses as Rollway reads
//! them, a step approved with exactly one status patch — and the stage end
//! to end through the API: paused at each step, approved by owners only,
//! timed pauses, pauses across restarts, rollbacks, the refusal of a
//! cluster without Kruise — and every kubectl seeing and approving a
//! paused canary as Rollway does.

use std::time::Duration;

use reqwest::StatusCode;
use rollway::domain::cluster::{ClusterAccess, ClusterCredentials};
use rollway::domain::release_item::{Canary, CanaryStep};
use rollway::kube::rollout::{self, RolloutView};
use rollway::kube::{ClusterClient, KubeDriver, KubeError, KubeSettings};
use rollway::secret::Secret;
use rollway::sim::{Kind, RunningSim, Sim};
use serde_json::{Value, json};

use crate::common::kubectl::{
    Binary, Kubectl, eventually as kube_eventually, every_kubectl, start as kubectl_sim,
};
use crate::common::{Api, TestApp, eventually};
use crate::db_test;
use crate::engine::{IMAGE, Rollout, engine_start, sim_config};

async fn sim_and_client() -> (RunningSim, ClusterClient) {
    let sim = Sim::start(sim_config(), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("start the simulated cluster");
    sim.sim
        .create_deployment("prod", "web", "app", "registry.example.com/web:1", 3, 600);
    let credentials = ClusterCredentials {
        id: 1,
        name: "prod".into(),
        access: ClusterAccess::Kubeconfig {
            yaml: Secret::new(sim.kubeconfig()),
            context: None,
        },
        fingerprint: "sim".into(),
    };
    let client = KubeDriver::new(KubeSettings::default())
        .client(&credentials)
        .await
        .expect("a client of the simulated cluster");
    (sim, client)
}

async fn rollout_when(client: &ClusterClient, check: impl Fn(&RolloutView) -> bool) -> RolloutView {
    let ok = eventually(Duration::from_secs(20), || async {
        client
            .rollout("prod", "web")
            .await
            .ok()
            .flatten()
            .is_some_and(|v| check(&v))
    })
    .await;
    let view = client.rollout("prod", "web").await.unwrap().unwrap();
    assert!(ok, "the Rollout never got there: {view:?}");
    view
}

fn step(replicas: Option<u32>, weight: Option<u32>, pause: Option<u32>) -> CanaryStep {
    CanaryStep {
        weight,
        replicas,
        pause_seconds: pause,
    }
}

#[tokio::test]
async fn the_driver_puts_a_rollout_follows_its_pause_and_approves_a_step_with_one_patch() {
    let (sim, client) = sim_and_client().await;
    assert!(
        !client.serves_rollouts().await.unwrap(),
        "no OpenKruise Rollout yet"
    );
    sim.sim.install_kruise();
    assert!(client.serves_rollouts().await.unwrap());
    assert_eq!(client.rollout("prod", "web").await.unwrap(), None);

    let plan = Canary {
        steps: vec![step(Some(1), None, None), step(None, Some(100), Some(0))],
        header_match: None,
    };
    let spec = rollout::spec("web", &plan, None);
    let created = client
        .put_rollout("prod", "web", &spec, None)
        .await
        .unwrap();
    assert!(created.managed_by_rollway);
    assert_eq!(created.workload, "web");
    let healthy = rollout_when(&client, |v| v.observed() && v.phase == "Healthy").await;
    // Writing the same spec again changes nothing; a stale read is refused.
    let again = client
        .put_rollout("prod", "web", &spec, Some(&healthy))
        .await
        .unwrap();
    assert_eq!(again.generation, healthy.generation);
    let stale = RolloutView {
        resource_version: "1".into(),
        ..healthy.clone()
    };
    assert!(matches!(
        client.put_rollout("prod", "web", &spec, Some(&stale)).await,
        Err(KubeError::Conflict(_))
    ));

    let ready = eventually(Duration::from_secs(20), || async {
        sim.sim
            .deployment("prod", "web")
            .and_then(|d| d.status)
            .and_then(|s| s.ready_replicas)
            == Some(3)
    })
    .await;
    assert!(ready, "the Deployment never came up");
    let d = client.deployment("prod", "web").await.unwrap().unwrap();
    client
        .patch_image(
            "prod",
            "web",
            "app",
            "registry.example.com/web:2",
            d.metadata.resource_version.as_deref().unwrap(),
        )
        .await
        .unwrap();
    let paused = rollout_when(&client, |v| v.paused_at(1)).await;
    assert_eq!(
        (paused.canary_replicas, paused.canary_ready_replicas),
        (1, 1)
    );
    assert_eq!(paused.progressing, "InRolling");

    // Two approvals of the same pause at once: one patch lands, the other
    // finds the Rollout changed.
    sim.sim.clear_requests();
    let (a, b) = tokio::join!(
        client.approve_step("prod", &paused),
        client.approve_step("prod", &paused)
    );
    let conflicts = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Err(KubeError::Conflict(_))))
        .count();
    assert_eq!(
        (a.is_ok() as u8 + b.is_ok() as u8, conflicts),
        (1, 1),
        "{a:?} {b:?}"
    );
    let patched = sim
        .sim
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "PATCH" && r.path.ends_with("/rollouts/web/status") && r.status == 200
        })
        .count();
    assert_eq!(patched, 1);

    let done = rollout_when(&client, |v| v.phase == "Healthy" && v.succeeded.is_some()).await;
    assert_eq!(done.succeeded, Some(true), "{done:?}");
    let d = sim.sim.deployment("prod", "web").unwrap();
    assert_eq!(d.spec.paused, None, "resumed");
}

/// Makes stage 1 (staging) of the fixture's item a canary of `canary`,
/// its traffic routed through the app's Service and Ingress.
pub async fn make_canary(r: &Rollout, canary: Value) {
    route_through(r).await;
    let (s, v) = put_canary(r, canary).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// Creates Service and Ingress `checkout` in the staging namespace of the
/// simulated cluster (once) and names them on the staging app: where a
/// canary's traffic goes through.
async fn route_through(r: &Rollout) {
    let http = reqwest::Client::new();
    let objects = [
        (
            "/api/v1/namespaces/staging/services",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "checkout"},
                   "spec": {"selector": {"app": "checkout"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
        ),
        (
            "/apis/networking.k8s.io/v1/namespaces/staging/ingresses",
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "checkout"},
                   "spec": {"ingressClassName": "nginx", "rules": [{"host": "checkout.example.com", "http": {"paths": [
                       {"path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": "checkout", "port": {"number": 80}}}}]}}]}}),
        ),
    ];
    for (path, object) in objects {
        let resp = http
            .post(format!("{}{path}", r.sim.url()))
            .json(&object)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        assert!(
            status.is_success() || status == StatusCode::CONFLICT,
            "{path}: {status}"
        );
    }
    set_routing(r, json!("checkout"), json!("checkout")).await;
}

/// Names `service` and `ingress` (JSON strings or null) on the staging
/// app.
async fn set_routing(r: &Rollout, service: Value, ingress: Value) {
    let (s, v) = patch_routing(r, service, ingress).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

async fn patch_routing(r: &Rollout, service: Value, ingress: Value) -> (StatusCode, Value) {
    let (_, item) = r
        .olivia
        .get(&format!("/api/v1/release-items/{}", r.item))
        .await;
    let id = item["stages"][0]["app_id"].as_i64().unwrap();
    let (_, a) = r.org.admin.get(&format!("/api/v1/apps/{id}")).await;
    let body = json!({
        "name": a["name"], "cluster_id": a["cluster_id"], "namespace": a["namespace"],
        "deployment": a["deployment"], "container": a["container"], "node_id": a["node_id"],
        "service": service, "ingress": ingress,
    });
    r.org.admin.patch(&format!("/api/v1/apps/{id}"), body).await
}

/// Every request but a read the simulated cluster received, as `METHOD
/// path`.
fn writes(r: &Rollout) -> Vec<String> {
    r.sim
        .sim
        .requests()
        .into_iter()
        .filter(|q| q.method != "GET")
        .map(|q| format!("{} {}", q.method, q.path))
        .collect()
}

/// The object `kind/name` in the staging namespace, or null.
fn staging_object(r: &Rollout, kind: Kind, name: &str) -> Value {
    r.sim
        .sim
        .get::<Value>(kind, "staging", name)
        .unwrap_or(Value::Null)
}

/// Asks to make stage 1 (staging) of the fixture's item a canary of
/// `canary`: the answer.
async fn put_canary(r: &Rollout, canary: Value) -> (StatusCode, Value) {
    r.put_stage_1(Some(canary), None).await
}

/// Stage 1 of order `id` once `check` holds for it.
pub async fn stage_when(api: &Api, id: i64, check: impl Fn(&Value) -> bool) -> Value {
    let ok = eventually(Duration::from_secs(30), || async {
        check(&crate::engine::stage(api, id, 1).await)
    })
    .await;
    let now = crate::engine::stage(api, id, 1).await;
    assert!(ok, "stage 1 of #{id} never got there: {now:#}");
    now
}

/// Approves step `step` of stage 1 of order `id` as `api`'s caller.
pub async fn approve_step(api: &Api, id: i64, step: u64) -> (StatusCode, Value) {
    api.post(
        &format!("/api/v1/work-orders/{id}/stages/1/approve-step"),
        json!({"step": step}),
    )
    .await
}

/// Rolls stage 1 of order `id` back and waits until it is rolled back.
async fn roll_back(r: &Rollout, id: i64) {
    let (s, v) = r
        .eric
        .post(
            &format!("/api/v1/work-orders/{id}/stages/1/rollback"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    stage_when(&r.eric, id, |s| s["status"] == "rolled_back").await;
}

/// Waits until Kruise removed the canary Ingress and Service.
async fn assert_canary_routing_gone(r: &Rollout) {
    let gone = eventually(Duration::from_secs(10), || async {
        staging_object(r, Kind::Ingress, "checkout-canary").is_null()
            && staging_object(r, Kind::Service, "checkout-canary").is_null()
    })
    .await;
    assert!(gone, "the canary Ingress and Service are removed");
}

/// The nginx annotation `key` of an Ingress (null when absent).
fn nginx(ingress: &Value, key: &str) -> Value {
    ingress["metadata"]["annotations"][format!("nginx.ingress.kubernetes.io/{key}")].clone()
}

pub fn paused_at(step: u64) -> impl Fn(&Value) -> bool {
    move |s| s["status"] == "paused" && s["paused_step"] == step
}

/// Successful status PATCHes of the staging Rollout.
pub fn status_patches(r: &Rollout) -> usize {
    r.sim
        .sim
        .requests()
        .into_iter()
        .filter(|q| {
            q.method == "PATCH"
                && q.path
                    .ends_with("/namespaces/staging/rollouts/checkout/status")
                && q.status == 200
        })
        .count()
}

db_test!(
    a_canary_stage_pauses_at_each_step_until_an_owner_approves_it,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create_with(&app, sim_config(), 4).await;
        r.sim.sim.install_kruise();
        make_canary(
            &r,
            json!({"steps": [{"replicas": 1}, {"weight": 50}, {"weight": 100, "pause_seconds": 0}]}),
        )
        .await;
        let id = r.approved_order("v1.1.0").await;
        r.deploy(id, 1).await;
        let stage = stage_when(&r.eric, id, paused_at(1)).await;
        let message = stage["message"].as_str().unwrap();
        assert!(
            message.starts_with("paused at step 1 of 3: 1 pod, 1 of 4 pods on the new version"),
            "{message}"
        );
        assert_eq!(
            r.image_patches("staging"),
            1,
            "one template change for the stage"
        );

        // Engineers may deploy, not approve a step.
        let (s, v) = approve_step(&r.eric, id, 1).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        // A step it is not paused at.
        let (s, v) = approve_step(&r.olivia, id, 2).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert_eq!(status_patches(&r), 0);

        // Twice at once (a double click): one approval, one patch.
        let (a, b) = tokio::join!(
            approve_step(&r.olivia, id, 1),
            approve_step(&r.olivia, id, 1)
        );
        let mut statuses = [a.0, b.0];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "{} {}",
            a.1,
            b.1
        );
        let stage = stage_when(&r.eric, id, paused_at(2)).await;
        assert!(
            stage["message"]
                .as_str()
                .unwrap()
                .contains("step 2 of 3: 50% traffic"),
            "{stage}"
        );
        assert_eq!(
            status_patches(&r),
            1,
            "exactly one status patch per approval"
        );

        let (s, v) = approve_step(&r.olivia, id, 2).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let stage = stage_when(&r.eric, id, |s| s["status"] == "succeeded").await;
        assert!(
            stage["message"]
                .as_str()
                .unwrap()
                .contains("after 3 canary steps"),
            "{stage}"
        );
        assert_eq!(status_patches(&r), 2);
        assert_eq!(r.image_patches("staging"), 1, "still one template change");
        assert_eq!(r.image("staging"), format!("{IMAGE}:v1.1.0"));
        let (_, order) = r.eric.get(&format!("/api/v1/work-orders/{id}")).await;
        let approvals: Vec<(&str, &str)> = order["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "step_approved")
            .map(|e| (e["actor"].as_str().unwrap(), e["message"].as_str().unwrap()))
            .collect();
        assert_eq!(approvals, [("olivia", "step 1"), ("olivia", "step 2")]);
    }
);

db_test!(a_timed_pause_goes_on_by_itself, |backend| async move {
    let app = TestApp::start_with(backend, engine_start()).await;
    let r = Rollout::create(&app).await;
    r.sim.sim.install_kruise();
    make_canary(
            &r,
            json!({"steps": [{"replicas": 1, "pause_seconds": 1}, {"weight": 100, "pause_seconds": 0}]}),
        )
        .await;
    let id = r.approved_order("v1.1.0").await;
    r.deploy(id, 1).await;
    stage_when(&r.eric, id, |s| s["status"] == "succeeded").await;
    assert_eq!(status_patches(&r), 0, "nobody approved anything");
    let (_, order) = r.eric.get(&format!("/api/v1/work-orders/{id}")).await;
    assert_eq!(order["state"], "in_progress", "stage 2 is still to deploy");
    let kinds: Vec<&str> = order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        // Verifying shows only when the engine looks while pods start.
        .filter(|k| k.starts_with("stage_") && *k != "stage_verifying")
        .collect();
    assert_eq!(
        kinds,
        [
            "stage_deploy_started",
            "stage_paused",
            "stage_resumed",
            "stage_succeeded"
        ],
        "it paused at step 1, then went on by itself"
    );
});

db_test!(
    a_cluster_without_openkruise_rollout_refuses_a_canary_stage_and_nothing_is_written,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        // Saving a canary stage for that cluster is refused.
        let (s, v) = put_canary(&r, json!({"steps": [{"replicas": 1}]})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(
            v["error"]["message"],
            "stage 1 (staging) is a canary stage: cluster staging does not serve \
             rollouts.kruise.io/v1beta1 — install OpenKruise Rollout"
        );
        // Saved while Kruise was there, deployed after it was removed.
        r.sim.sim.install_kruise();
        make_canary(&r, json!({"steps": [{"replicas": 1}]})).await;
        let removed = reqwest::Client::new()
            .delete(format!(
                "{}/apis/apiextensions.k8s.io/v1/customresourcedefinitions/rollouts.rollouts.kruise.io",
                r.sim.url()
            ))
            .send()
            .await
            .unwrap();
        assert!(removed.status().is_success(), "{}", removed.status());
        let id = r.approved_order("v1.1.0").await;
        r.sim.sim.clear_requests();
        let (s, v) = r
            .eric
            .post(
                &format!("/api/v1/work-orders/{id}/stages/1/deploy"),
                json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("does not serve rollouts.kruise.io/v1beta1")
                && message.contains("install OpenKruise Rollout"),
            "{message}"
        );
        let writes = writes(&r);
        assert!(writes.is_empty(), "nothing written: {writes:?}");
        assert_eq!(
            crate::engine::stage(&r.eric, id, 1).await["status"],
            "pending"
        );
        assert_eq!(crate::engine::order_state(&r.eric, id).await, "approved");
    }
);

db_test!(
    a_canary_rolls_back_natively_when_finished_and_directly_from_a_pause,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        r.sim.sim.install_kruise();
        make_canary(
            &r,
            json!({"steps": [{"replicas": 1, "pause_seconds": 0}, {"weight": 100, "pause_seconds": 0}]}),
        )
        .await;
        let id = r.approved_order("v1.1.0").await;
        r.deploy(id, 1).await;
        stage_when(&r.eric, id, |s| s["status"] == "succeeded").await;

        // After the canary: the rollback restores the image directly, not
        // as a new canary from step 1.
        roll_back(&r, id).await;
        assert_eq!(r.image("staging"), format!("{IMAGE}:v1.0.0"));
        let d = r.sim.sim.deployment("staging", "checkout").unwrap();
        assert_eq!(d.spec.paused, None, "no canary ran the rollback");

        // The next order's canary enables the Rollout again and pauses.
        make_canary(&r, json!({"steps": [{"replicas": 1}, {"weight": 100}]})).await;
        let next = r.approved_order("v1.2.0").await;
        r.deploy(next, 1).await;
        stage_when(&r.eric, next, paused_at(1)).await;
        // Rolled back at a pause: the canary's job stops, Kruise rolls
        // back directly and nothing canary-made is left.
        roll_back(&r, next).await;
        assert_eq!(r.image("staging"), format!("{IMAGE}:v1.0.0"));
        let d = r.sim.sim.deployment("staging", "checkout").unwrap();
        assert_eq!(d.spec.paused, None);
        let annotations = d.metadata.annotations.unwrap_or_default();
        assert!(
            !annotations
                .keys()
                .any(|k| k.starts_with("rollouts.kruise.io/")),
            "{annotations:?}"
        );
        let pods = r.sim.sim.pods("staging");
        assert!(
            pods.iter().all(|p| {
                p.spec.as_ref().unwrap().containers[0].image.as_deref()
                    == Some(&format!("{IMAGE}:v1.0.0"))
                    || p.metadata.deletion_timestamp.is_some()
            }),
            "every pod runs the old version again"
        );
    }
);

db_test!(
    a_header_step_sends_only_that_header_to_the_canary_and_a_rollback_leaves_nothing_canary_named,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create_with(&app, sim_config(), 4).await;
        r.sim.sim.install_kruise();
        make_canary(
            &r,
            json!({"header_match": {"name": "x-canary", "value": "yes"},
                   "steps": [{"weight": 25}, {"weight": 100}]}),
        )
        .await;
        let id = r.approved_order("v1.1.0").await;
        r.deploy(id, 1).await;
        let stage = stage_when(&r.eric, id, paused_at(1)).await;
        let message = stage["message"].as_str().unwrap();
        assert!(message.starts_with("paused at step 1 of 3"), "{message}");

        // Step 1: only requests with the header reach the canary, through
        // the canary Ingress and Service; no weight yet.
        let ingress = staging_object(&r, Kind::Ingress, "checkout-canary");
        assert_eq!(nginx(&ingress, "canary"), "true", "{ingress:#}");
        assert_eq!(
            nginx(&ingress, "canary-by-header"),
            "x-canary",
            "{ingress:#}"
        );
        assert_eq!(
            nginx(&ingress, "canary-by-header-value"),
            "yes",
            "{ingress:#}"
        );
        assert_eq!(nginx(&ingress, "canary-weight"), Value::Null, "{ingress:#}");
        assert_eq!(
            ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
            "checkout-canary",
            "{ingress:#}"
        );
        let canary_service = staging_object(&r, Kind::Service, "checkout-canary");
        assert!(
            canary_service["spec"]["selector"]["pod-template-hash"].is_string(),
            "the canary Service selects the new pods: {canary_service:#}"
        );

        // Step 2: a weight, no header.
        let (s, v) = approve_step(&r.olivia, id, 1).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        stage_when(&r.eric, id, paused_at(2)).await;
        let ingress = staging_object(&r, Kind::Ingress, "checkout-canary");
        assert_eq!(nginx(&ingress, "canary-weight"), "25", "{ingress:#}");
        assert_eq!(
            nginx(&ingress, "canary-by-header"),
            Value::Null,
            "{ingress:#}"
        );

        // Rolled back from step 2: the old template and nothing canary-named.
        roll_back(&r, id).await;
        assert_eq!(r.image("staging"), format!("{IMAGE}:v1.0.0"));
        assert_canary_routing_gone(&r).await;
        let names: Vec<String> = [Kind::Deployment, Kind::Service, Kind::Ingress]
            .into_iter()
            .flat_map(|kind| r.sim.sim.list::<Value>(kind, "staging"))
            .map(|o| {
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            ["checkout", "checkout", "checkout"],
            "one Deployment, Service and Ingress each, nothing canary-named"
        );
        let stable = staging_object(&r, Kind::Service, "checkout");
        assert_eq!(
            stable["spec"]["selector"],
            json!({"app": "checkout"}),
            "the stable Service selects every pod again"
        );
    }
);

db_test!(
    a_canary_that_shifts_traffic_needs_the_apps_service_and_ingress,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        r.sim.sim.install_kruise();
        // Half a routing is refused.
        let (s, v) = patch_routing(&r, json!("checkout"), Value::Null).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["error"]["field"], "ingress", "{v}");
        // Weights and headers need one; replica counts do not.
        for plan in [
            json!({"steps": [{"weight": 50}]}),
            json!({"steps": [{"replicas": 1}], "header_match": {"name": "x-canary", "value": "yes"}}),
        ] {
            let (s, v) = put_canary(&r, plan).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
            let message = v["error"]["message"].as_str().unwrap();
            assert!(
                message.starts_with("stage 1 (staging) is a canary stage: its steps shift traffic")
                    && message.contains("app checkout-staging names no Service and Ingress"),
                "{message}"
            );
        }
        let (s, v) = put_canary(&r, json!({"steps": [{"replicas": 1}]})).await;
        assert_eq!(s, StatusCode::OK, "{v}");

        // Named on the app but missing in the cluster: the deploy is
        // refused and nothing is written.
        set_routing(&r, json!("checkout"), json!("checkout")).await;
        let (s, v) = put_canary(&r, json!({"steps": [{"weight": 50}]})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let id = r.approved_order("v1.1.0").await;
        r.sim.sim.clear_requests();
        let (s, v) = r
            .eric
            .post(
                &format!("/api/v1/work-orders/{id}/stages/1/deploy"),
                json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert_eq!(
            v["error"]["message"],
            "stage 1: the canary routes traffic through Service checkout and Ingress checkout, \
             which do not exist in namespace staging of cluster staging; create them or fix app \
             checkout-staging"
        );
        let writes = writes(&r);
        assert!(writes.is_empty(), "nothing written: {writes:?}");
        assert_eq!(crate::engine::order_state(&r.eric, id).await, "approved");
    }
);

db_test!(
    a_canary_that_stops_progressing_fails_and_rolls_back_by_itself,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        r.sim.sim.install_kruise();
        // The canary's pods never become ready: Kruise never reaches the
        // pause, and the stage's overall deadline (twice the Deployment's
        // 3 s progress deadline) runs out.
        r.sim.sim.faults().never_ready(":v1.1.0");
        make_canary(&r, json!({"steps": [{"weight": 50}, {"weight": 100}]})).await;
        let id = r.approved_order("v1.1.0").await;
        r.deploy(id, 1).await;
        let stage = stage_when(&r.eric, id, |s| s["status"] == "rolled_back").await;
        assert_eq!(crate::engine::order_state(&r.eric, id).await, "rolled_back");
        let (_, order) = r.eric.get(&format!("/api/v1/work-orders/{id}")).await;
        let failure = order["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "stage_failed")
            .unwrap_or_else(|| panic!("the stage failed first: {stage}"));
        assert!(
            failure["message"]
                .as_str()
                .unwrap()
                .contains("made no progress for 6 s (step 1 of 2"),
            "{failure}"
        );
        assert_eq!(r.image("staging"), format!("{IMAGE}:v1.0.0"));
        assert_canary_routing_gone(&r).await;
        assert_eq!(status_patches(&r), 0, "nobody approved anything");
    }
);

db_test!(
    pauses_survive_a_restart_of_the_server,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        r.sim.sim.install_kruise();
        make_canary(
            &r,
            json!({"steps": [{"replicas": 1}, {"weight": 50, "pause_seconds": 3}, {"weight": 100, "pause_seconds": 0}]}),
        )
        .await;
        let id = r.approved_order("v1.1.0").await;
        r.deploy(id, 1).await;
        stage_when(&r.eric, id, paused_at(1)).await;

        // Killed while paused for an owner (no graceful shutdown): the
        // next server takes the job over when its lease runs out.
        let db = app.stop();
        let app = TestApp::start_on(db, engine_start());
        let olivia = app.api(Some(&app.token_for("olivia")));
        let eric = app.api(Some(&app.token_for("eric")));
        let (s, v) = approve_step(&olivia, id, 1).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        stage_when(&eric, id, paused_at(2)).await;

        // Killed again during a timed pause: it still goes on by itself.
        let db = app.stop();
        let app = TestApp::start_on(db, engine_start());
        let eric = app.api(Some(&app.token_for("eric")));
        stage_when(&eric, id, |s| s["status"] == "succeeded").await;
        assert_eq!(status_patches(&r), 1, "one approval, one patch");
        assert_eq!(r.image_patches("staging"), 1, "the template changed once");
        let attempts = app
            .db
            .query_text("SELECT CAST(attempts AS TEXT) FROM jobs WHERE kind = 'canary'")
            .await;
        assert_eq!(attempts.as_deref(), Some("3"), "claimed by each server");
    }
);

#[tokio::test]
async fn kubectl_sees_and_approves_a_paused_canary_as_rollway_does() {
    every_kubectl(sees_and_approves_a_paused_canary).await;
}

/// `kubectl get`, `-o json` and a merge patch of the status subresource
/// against the Rollout the driver wrote and reads.
async fn sees_and_approves_a_paused_canary(binary: Binary) {
    let running = kubectl_sim().await;
    running.sim.install_kruise();
    running.sim.create_deployment(
        "default",
        "web",
        "app",
        "registry.example.com/web:1",
        2,
        600,
    );
    let kubectl = Kubectl::with_binary(&running, &binary);
    let client = client_of(&running).await;
    let plan = Canary {
        steps: vec![step(Some(1), None, None), step(None, Some(100), None)],
        header_match: None,
    };
    client
        .put_rollout("default", "web", &rollout::spec("web", &plan, None), None)
        .await
        .unwrap();
    kube_eventually("web ready", || async {
        (running
            .sim
            .deployment("default", "web")
            .and_then(|d| d.status?.ready_replicas)
            == Some(2))
        .then_some(())
    })
    .await;
    kubectl
        .run(&[
            "set",
            "image",
            "deployment/web",
            "app=registry.example.com/web:2",
        ])
        .await;
    let paused = kube_eventually("paused at step 1", || async {
        client
            .rollout("default", "web")
            .await
            .ok()
            .flatten()
            .filter(|v| v.paused_at(1))
    })
    .await;

    // What kubectl lists and prints is what the driver read.
    let listed = kubectl.run(&["get", "rollouts.rollouts.kruise.io"]).await;
    let mut lines = listed.lines();
    assert!(
        lines.next().unwrap().split_whitespace().eq([
            "NAME",
            "STATUS",
            "CANARY_STEP",
            "CANARY_STATE",
            "MESSAGE",
            "AGE"
        ]),
        "{listed}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..4],
        ["web", "Progressing", "1", "StepPaused"],
        "{listed}"
    );
    let json: Value = serde_json::from_str(
        &kubectl
            .run(&["get", "rollouts.rollouts.kruise.io", "web", "-o", "json"])
            .await,
    )
    .unwrap();
    assert_eq!(
        json["metadata"]["resourceVersion"],
        paused.resource_version.as_str()
    );
    assert_eq!(
        json["status"]["canaryStatus"]["currentStepIndex"],
        paused.step
    );
    assert_eq!(
        json["status"]["canaryStatus"]["canaryReadyReplicas"],
        paused.canary_ready_replicas
    );
    assert_eq!(
        json["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "rollway"
    );

    // Approved with kubectl, as `kubectl-kruise rollout approve` does: the
    // driver sees the canary move on.
    let approve = r#"{"status":{"canaryStatus":{"currentStepState":"StepReady"}}}"#;
    kubectl
        .patch_rollout_status(&running, &binary, approve)
        .await;
    kube_eventually("paused at step 2", || async {
        client
            .rollout("default", "web")
            .await
            .ok()
            .flatten()
            .filter(|v| v.paused_at(2))
    })
    .await;
    // The driver's own approval of that view now finds it changed.
    assert!(matches!(
        client.approve_step("default", &paused).await,
        Err(KubeError::Conflict(_))
    ));
}

async fn client_of(running: &RunningSim) -> ClusterClient {
    let credentials = ClusterCredentials {
        id: 1,
        name: "sim".into(),
        access: ClusterAccess::Kubeconfig {
            yaml: Secret::new(running.kubeconfig()),
            context: None,
        },
        fingerprint: "sim".into(),
    };
    KubeDriver::new(KubeSettings::default())
        .client(&credentials)
        .await
        .expect("a client of the simulated cluster")
}
