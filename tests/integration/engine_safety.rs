//! The engine never loses track of a rollout: one rollout in flight per
//! Deployment (also across two servers), a Deployment replaced under the
//! same name, the overall deadline, cancelling a stuck stage, the rule of
//! rollbacks over changes made by others, messages that keep the cause,
//! and a Deployment scaled to zero — on the simulated cluster, through
//! the REST API.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api as KubeApi, Client};
use reqwest::StatusCode;
use rollway::sim::Sim;
use serde_json::{Value, json};

use crate::common::{Api, TestApp, eventually};
use crate::db_test;
use crate::engine::{
    IMAGE, Rollout, approved_order, engine_start, image_patches, live_image, order_state, stage,
    wait_stage,
};

/// kube-rs on the simulated cluster, in process.
fn kube(sim: &Sim) -> KubeApi<Deployment> {
    KubeApi::namespaced(Client::new(sim.router(), "default"), "staging")
}

/// Makes `staging/checkout` a Deployment whose rollouts have a long
/// progress deadline (ten minutes), so only what a test does ends them.
pub async fn slow_deadline(sim: &Sim) {
    progress_deadline(sim, 600).await
}

/// Makes `staging/checkout` a new Deployment of progress deadline
/// `seconds` (its stages' overall deadline: twice that).
async fn progress_deadline(sim: &Sim, seconds: i32) {
    kube(sim)
        .delete("checkout", &DeleteParams::default())
        .await
        .expect("delete the Deployment");
    sim.create_deployment(
        "staging",
        "checkout",
        "app",
        &format!("{IMAGE}:v1.0.0"),
        2,
        seconds,
    );
}

async fn post(api: &Api, path: &str, body: Value) -> (StatusCode, Value) {
    api.post(path, body).await
}

/// Deploys stage 1 of order `id` as `api`; the answer.
async fn deploy(api: &Api, id: i64) -> (StatusCode, Value) {
    post(
        api,
        &format!("/api/v1/work-orders/{id}/stages/1/deploy"),
        json!({}),
    )
    .await
}

/// Waits until the engine has written stage 1 of `id` (its `version`)
/// to `staging/checkout` and is following the rollout.
async fn wait_rolling(r: &Rollout, id: i64, version: &str) {
    let rolling = eventually(Duration::from_secs(30), || async {
        matches!(
            stage(&r.eric, id, 1).await["status"].as_str(),
            Some("deploying" | "verifying")
        ) && r.image("staging") == format!("{IMAGE}:{version}")
    })
    .await;
    assert!(rolling, "stage 1 of #{id} never started rolling out");
}

/// A server and a cluster where stage 1 of an order for v1.1.0 is stuck:
/// written, its new pods never ready, its progress deadline ten minutes
/// away. The order's id.
async fn stuck(app: &TestApp) -> (Rollout, i64) {
    let r = Rollout::create(app).await;
    slow_deadline(&r.sim.sim).await;
    r.sim.sim.faults().never_ready(":v1.1.0");
    let id = r.approved_order("v1.1.0").await;
    let (s, v) = deploy(&r.eric, id).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    wait_rolling(&r, id, "v1.1.0").await;
    (r, id)
}

/// Replaces release item `r.item` with its own stages changed by `stage`
/// and `refuse_zero_replicas` as given.
async fn set_item(r: &Rollout, refuse_zero_replicas: bool, stage: impl Fn(usize, &mut Value)) {
    let path = format!("/api/v1/release-items/{}", r.item);
    let (_, item) = r.org.admin.get(&path).await;
    let stages: Vec<Value> = item["stages"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let mut st = json!({"name": st["name"], "app_id": st["app_id"], "strategy": "rolling"});
            stage(i, &mut st);
            st
        })
        .collect();
    let (s, v) = r
        .org
        .admin
        .put(
            &path,
            json!({"node_id": item["node_id"], "name": item["name"], "gitlab_project": item["gitlab_project"],
                   "image_repository": item["image_repository"], "required_approvals": 1,
                   "refuse_zero_replicas": refuse_zero_replicas, "stages": stages}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// A second release item whose one stage drives the same Deployment
/// (`staging/checkout`, the same app); its id.
async fn second_item_on_the_same_deployment(r: &Rollout) -> i64 {
    let (s, first) = r
        .org
        .admin
        .get(&format!("/api/v1/release-items/{}", r.item))
        .await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let app = first["stages"][0]["app_id"].clone();
    let (s, item) = r
        .org
        .admin
        .post(
            "/api/v1/release-items",
            json!({
                "node_id": r.org.pay, "name": "checkout-hotfix", "gitlab_project": "acme/checkout",
                "image_repository": IMAGE, "required_approvals": 1,
                "stages": [{"name": "staging", "app_id": app, "strategy": "rolling"}]
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{item}");
    item["id"].as_i64().unwrap()
}

db_test!(
    a_deployment_has_one_rollout_at_a_time,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        slow_deadline(&r.sim.sim).await;
        r.sim.sim.faults().never_ready(":v1.1.0");
        let other = second_item_on_the_same_deployment(&r).await;
        let first = r.approved_order("v1.1.0").await;
        let second = approved_order(&r.eric, &r.olivia, other, "v1.2.0").await;
        let (s, v) = deploy(&r.eric, first).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        wait_rolling(&r, first, "v1.1.0").await;
        let (s, v) = deploy(&r.eric, second).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("work order #{first}"))
                && message.contains("staging/checkout"),
            "{message}"
        );
        assert_eq!(stage(&r.eric, second, 1).await["status"], "pending");
        assert_eq!(order_state(&r.eric, second).await, "approved");
        assert_eq!(r.image("staging"), format!("{IMAGE}:v1.1.0"));
        // Once the holder's stage is over, the Deployment is free.
        let (s, v) = post(
            &r.olivia,
            &format!("/api/v1/work-orders/{first}/stages/1/cancel"),
            json!({"reason": "making room for the hotfix"}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        r.sim.sim.faults().clear_never_ready();
        let (s, v) = deploy(&r.eric, second).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        wait_stage(&r.eric, second, 1, "succeeded").await;
        assert_eq!(r.image("staging"), format!("{IMAGE}:v1.2.0"));
        // The stage that ended gave the Deployment back: a rollback of the
        // cancelled one is refused by the rule (a later deploy), not the lock.
        let (s, v) = post(
            &r.eric,
            &format!("/api/v1/work-orders/{first}/stages/1/rollback"),
            json!({}),
        )
        .await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not rolling back over a later change"),
            "{v}"
        );
    }
);

db_test!(
    two_servers_give_one_deployment_to_one_order,
    |backend| async move {
        let a = TestApp::start_with(backend, engine_start()).await;
        let b = TestApp::start_on(a.db.shared(), engine_start());
        let r = Rollout::create(&a).await;
        slow_deadline(&r.sim.sim).await;
        r.sim.sim.faults().never_ready(":v1.");
        let other = second_item_on_the_same_deployment(&r).await;
        let first = r.approved_order("v1.1.0").await;
        let second = approved_order(&r.eric, &r.olivia, other, "v1.2.0").await;
        let eric_b = b.api(Some(&b.token_for("eric")));
        // Both deploys at once, one through each server.
        let (one, two) = tokio::join!(deploy(&r.eric, first), deploy(&eric_b, second));
        let mut statuses = [one.0, two.0];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::ACCEPTED, StatusCode::CONFLICT],
            "{} / {}",
            one.1,
            two.1
        );
        let (winner, loser, version) = if one.0 == StatusCode::ACCEPTED {
            (first, second, "v1.1.0")
        } else {
            (second, first, "v1.2.0")
        };
        let refused = if one.0 == StatusCode::CONFLICT {
            &one.1
        } else {
            &two.1
        };
        assert!(
            refused["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("work order #{winner}")),
            "{refused}"
        );
        wait_rolling(&r, winner, version).await;
        assert_eq!(stage(&r.eric, loser, 1).await["status"], "pending");
        assert_eq!(
            image_patches(&r.sim.sim, "staging", "checkout"),
            1,
            "one image written, by the winner only"
        );
    }
);

db_test!(
    a_replaced_deployment_fails_the_stage_and_is_never_written,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let (r, id) = stuck(&app).await;
        // The cluster is reset while Rollway is down: same name, new uid.
        let db = app.stop();
        let before = r.sim.sim.deployment("staging", "checkout").unwrap();
        slow_deadline(&r.sim.sim).await;
        let after = r.sim.sim.deployment("staging", "checkout").unwrap();
        assert_ne!(before.metadata.uid, after.metadata.uid);
        r.sim.sim.clear_requests();
        let app = TestApp::start_on(db, engine_start());
        let eric = app.api(Some(&app.token_for("eric")));
        wait_stage(&eric, id, 1, "failed").await;
        let s1 = stage(&eric, id, 1).await;
        let message = s1["message"].as_str().unwrap();
        assert!(message.contains("replaced"), "{message}");
        assert_eq!(order_state(&eric, id).await, "failed");
        // Nothing was written to the new object, not even by the rollback.
        assert_eq!(image_patches(&r.sim.sim, "staging", "checkout"), 0);
        assert_eq!(r.image("staging"), format!("{IMAGE}:v1.0.0"));
        let (s, v) = post(
            &eric,
            &format!("/api/v1/work-orders/{id}/stages/1/rollback"),
            json!({}),
        )
        .await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("replaced"),
            "{v}"
        );
    }
);

db_test!(
    a_deployment_deleted_or_replaced_mid_rollout_is_noticed,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let (r, id) = stuck(&app).await;
        slow_deadline(&r.sim.sim).await;
        wait_stage(&r.eric, id, 1, "failed").await;
        let message = stage(&r.eric, id, 1).await["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            message.contains("was deleted during the rollout") || message.contains("replaced"),
            "{message}"
        );
        assert_eq!(r.image("staging"), format!("{IMAGE}:v1.0.0"));
    }
);

db_test!(
    a_stage_past_its_overall_deadline_fails_and_rolls_back,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        // A rollout that would wait ten minutes for its progress deadline;
        // the stage's own overall deadline, one minute, ends it first.
        let r = Rollout::create(&app).await;
        slow_deadline(&r.sim.sim).await;
        set_item(&r, false, |i, stage| {
            if i == 0 {
                stage["deadline_minutes"] = json!(1);
            }
        })
        .await;
        r.sim.sim.faults().never_ready(":v1.1.0");
        let id = r.approved_order("v1.1.0").await;
        let (s, v) = deploy(&r.eric, id).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        wait_rolling(&r, id, "v1.1.0").await;
        // The stage fails at its deadline and rolls back by itself.
        let rolled_back = eventually(Duration::from_secs(120), || async {
            stage(&r.eric, id, 1).await["status"] == "rolled_back"
        })
        .await;
        let (_, order) = r.eric.get(&format!("/api/v1/work-orders/{id}")).await;
        assert!(rolled_back, "{order:#}");
        let failed = order["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "stage_failed")
            .expect("a stage_failed event")["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            failed.starts_with(
                "staging/checkout did not finish within the stage's overall deadline (last seen: 1 of 2 new replicas updated)"
            ),
            "{failed}"
        );
        assert_eq!(order_state(&r.eric, id).await, "rolled_back");
        assert_eq!(r.image("staging"), format!("{IMAGE}:v1.0.0"));
    }
);

db_test!(
    an_owner_cancels_a_stuck_stage_then_it_can_be_rolled_back,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let (r, id) = stuck(&app).await;
        let cancel = format!("/api/v1/work-orders/{id}/stages/1/cancel");
        // Close and rollback wait for the stage; only an owner cancels it.
        let (s, _) = post(
            &r.eric,
            &format!("/api/v1/work-orders/{id}/close"),
            json!({"reason": "stuck"}),
        )
        .await;
        assert_eq!(s, StatusCode::CONFLICT);
        let (s, v) = post(&r.eric, &cancel, json!({"reason": "stuck"})).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        let (s, v) = post(&r.olivia, &cancel, json!({"reason": " "})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["error"]["field"], "reason");
        let (s, v) = post(
            &r.olivia,
            &cancel,
            json!({"reason": "pods never get ready"}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["state"], "failed", "{v}");
        let s1 = stage(&r.eric, id, 1).await;
        assert_eq!(s1["status"], "failed");
        let message = s1["message"].as_str().unwrap();
        assert!(
            message.starts_with("pods never get ready — staging/checkout when cancelled:")
                && message.contains("app runs"),
            "the reason and what the Deployment showed: {message}"
        );
        let (s, _) = post(&r.olivia, &cancel, json!({"reason": "again"})).await;
        assert_eq!(s, StatusCode::CONFLICT, "cancelled once");
        // The engine stopped: it writes nothing more and reports nothing.
        r.sim.sim.faults().clear_never_ready();
        let patches = image_patches(&r.sim.sim, "staging", "checkout");
        let (s, v) = post(
            &r.eric,
            &format!("/api/v1/work-orders/{id}/stages/1/rollback"),
            json!({}),
        )
        .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        wait_stage(&r.eric, id, 1, "rolled_back").await;
        assert_eq!(r.image("staging"), format!("{IMAGE}:v1.0.0"));
        assert_eq!(
            image_patches(&r.sim.sim, "staging", "checkout"),
            patches + 1
        );
        let (_, order) = r.eric.get(&format!("/api/v1/work-orders/{id}")).await;
        let kinds: Vec<&str> = order["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert!(kinds.contains(&"stage_cancelled"), "{kinds:?}");
        assert!(
            !kinds.contains(&"stage_succeeded") && !kinds.contains(&"stage_failed"),
            "the cancelled job reported nothing after the cancel: {kinds:?}"
        );
        assert_eq!(order_state(&r.eric, id).await, "rolled_back");
        let (s, v) = post(
            &r.eric,
            &format!("/api/v1/work-orders/{id}/close"),
            json!({"reason": "bad build"}),
        )
        .await;
        assert_eq!(s, StatusCode::CONFLICT, "nothing left to close: {v}");
    }
);

/// The template of `staging/checkout` with an env var and a sidecar that
/// someone added by hand.
async fn change_by_hand(sim: &Sim) {
    kube(sim)
        .patch(
            "checkout",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "env": [{"name": "FEATURE_X", "value": "on"}]},
                {"name": "proxy", "image": "envoyproxy/envoy:v1.30.0"}
            ]}}}})),
        )
        .await
        .expect("patch by hand");
}

db_test!(
    a_rollback_over_changes_by_others_is_refused_unless_an_owner_restores_all,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        let id = r.approved_order("v1.1.0").await;
        deploy(&r.eric, id).await;
        wait_stage(&r.eric, id, 1, "succeeded").await;
        change_by_hand(&r.sim.sim).await;
        let changed = r.sim.sim.deployment("staging", "checkout").unwrap();
        let patches = image_patches(&r.sim.sim, "staging", "checkout");
        let rollback = format!("/api/v1/work-orders/{id}/stages/1/rollback");
        let (s, v) = post(&r.eric, &rollback, json!({})).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("changed by someone else")
                && message.contains("spec.containers[app].env[FEATURE_X] added")
                && message.contains("spec.containers[proxy] added"),
            "{message}"
        );
        // Nothing written; the stage stays succeeded.
        let now = r.sim.sim.deployment("staging", "checkout").unwrap();
        assert_eq!(now.spec.template, changed.spec.template);
        assert_eq!(image_patches(&r.sim.sim, "staging", "checkout"), patches);
        assert_eq!(stage(&r.eric, id, 1).await["status"], "succeeded");
        assert_eq!(order_state(&r.eric, id).await, "in_progress");
        // Only an owner restores the whole template.
        let (s, v) = post(&r.eric, &rollback, json!({"whole_template": true})).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        let (s, v) = post(&r.olivia, &rollback, json!({"whole_template": true})).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        wait_stage(&r.eric, id, 1, "rolled_back").await;
        let restored = r.sim.sim.deployment("staging", "checkout").unwrap();
        let containers = &restored.spec.template.spec.as_ref().unwrap().containers;
        assert_eq!(containers.len(), 1, "the sidecar is gone again");
        assert_eq!(
            containers[0].image.as_deref(),
            Some(format!("{IMAGE}:v1.0.0").as_str())
        );
        assert!(containers[0].env.as_ref().is_none_or(|e| e.is_empty()));
        let message = stage(&r.eric, id, 1).await["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(message.contains("whole pod template"), "{message}");
    }
);

db_test!(
    a_renamed_container_is_named_and_the_failure_kept_when_the_rollback_is_refused,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let (r, id) = stuck(&app).await;
        // Someone renames the container mid-rollout (reading again when
        // the controller's status writes get in between, as kubectl would).
        let api = kube(&r.sim.sim);
        let mut attempts = 0;
        loop {
            let mut d = api.get("checkout").await.unwrap();
            d.spec.template.spec.as_mut().unwrap().containers[0].name = "main".into();
            d.metadata.managed_fields = None;
            match api.replace("checkout", &Default::default(), &d).await {
                Ok(_) => break,
                Err(kube::Error::Api(e)) if e.code == 409 && attempts < 20 => attempts += 1,
                Err(e) => panic!("rename the container: {e}"),
            }
        }
        wait_stage(&r.eric, id, 1, "failed").await;
        let message = stage(&r.eric, id, 1).await["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            message.starts_with(
                "staging/checkout was changed by someone else during the rollout (container app is gone"
            ),
            "the cause first: {message}"
        );
        assert!(
            message.contains("then the rollback was refused, nothing written"),
            "{message}"
        );
        let live = r.sim.sim.deployment("staging", "checkout").unwrap();
        assert_eq!(
            live.spec.template.spec.unwrap().containers[0].name,
            "main",
            "the rollback wrote nothing"
        );
    }
);

db_test!(
    a_deployment_scaled_to_zero_says_nothing_ran,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create_with(&app, crate::engine::sim_config(), 0).await;
        let id = r.approved_order("v1.1.0").await;
        let (s, v) = deploy(&r.eric, id).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        wait_stage(&r.eric, id, 1, "succeeded").await;
        let message = stage(&r.eric, id, 1).await["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            message.contains("scaled to zero — nothing to verify")
                && !message.contains("staging/checkout runs"),
            "{message}"
        );
        assert_eq!(
            live_image(&r.sim.sim, "staging", "checkout"),
            format!("{IMAGE}:v1.1.0")
        );
        // The release item may refuse such deploys instead.
        let (s, v) = post(
            &r.eric,
            &format!("/api/v1/work-orders/{id}/close"),
            json!({"reason": "nothing ran"}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        set_item(&r, true, |_, _| {}).await;
        let id = r.approved_order("v1.2.0").await;
        let (s, v) = deploy(&r.eric, id).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["error"]["field"], "stage");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("is scaled to zero replicas"),
            "{v}"
        );
        assert_eq!(stage(&r.eric, id, 1).await["status"], "pending");
        assert_eq!(
            live_image(&r.sim.sim, "staging", "checkout"),
            format!("{IMAGE}:v1.1.0")
        );
    }
);

db_test!(
    a_deployment_failing_before_the_deploy_is_reported_so_not_as_a_failed_rollback,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        // v1.0.0 itself never gets ready: the Deployment passes its
        // progress deadline before anyone deploys.
        r.sim.sim.faults().never_ready(":v1.");
        progress_deadline(&r.sim.sim, 2).await;
        let failing = eventually(Duration::from_secs(30), || async {
            let d = r.sim.sim.deployment("staging", "checkout").unwrap();
            rollway::kube::deployment::past_progress_deadline(&d)
        })
        .await;
        assert!(failing, "the Deployment never passed its progress deadline");
        let id = r.approved_order("v1.1.0").await;
        let (s, v) = deploy(&r.eric, id).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        // The new version fails too; the automatic rollback restores v1.0.0
        // and ends once the controller has taken it back.
        wait_stage(&r.eric, id, 1, "rolled_back").await;
        let message = stage(&r.eric, id, 1).await["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            message.contains("runs registry.example.com/acme/checkout:v1.0.0 again")
                && message
                    .contains("as before this stage deployed, it is past its progress deadline"),
            "{message}"
        );
        let (_, order) = r.eric.get(&format!("/api/v1/work-orders/{id}")).await;
        let deploying = order["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "deploying")
            .expect("a deploying event")["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            deploying.contains("its last rollout had already passed its progress deadline"),
            "{deploying}"
        );
        assert_eq!(r.image("staging"), format!("{IMAGE}:v1.0.0"));
    }
);
