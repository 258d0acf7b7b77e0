//! Stopping the line (issue 17): an owner halts /acme/pay while a canary
//! waits at a step and a rolling update to prod is under way. At once the
//! step may not be approved and new deploys (CI's fast path too) are
//! refused with 409 `line_stopped`; the engine holds both jobs and pauses
//! the rolling update (`spec.paused`) and the canary's Rollout
//! (`strategy.paused`, so that not even a timed step ends). Lifting the stop resumes the
//! Deployment and runs the held jobs: both stages finish. Both changes
//! are on the orders' timelines and in the audit log; pages show the stop
//! and who may lift it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::canary::{approve_step, make_canary, paused_at, stage_when, status_patches};
use crate::common::{TestApp, USER_PASSWORD, eventually};
use crate::db_test;
use crate::engine::{IMAGE, Rollout, approved_order, engine_start, timeline_kinds, wait_stage};

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

/// Whether prod's `checkout` has its rollout paused.
fn prod_paused(r: &Rollout) -> bool {
    r.sim
        .sim
        .deployment("prod", "checkout")
        .is_some_and(|d| d.spec.paused == Some(true))
}

/// Whether the canary's Rollout (staging's `checkout`) is paused.
fn canary_paused(r: &Rollout) -> bool {
    r.sim
        .sim
        .rollout("staging", "checkout")
        .is_some_and(|o| o["spec"]["strategy"]["paused"] == true)
}

/// Olivia stops the line at /acme/pay; the stop.
async fn stop_line(r: &Rollout, reason: &str, pause_rollouts: bool) -> Value {
    let (s, stop) = r
        .olivia
        .post(
            &format!("/api/v1/nodes/{}/line-stops", r.org.pay),
            json!({"reason": reason, "pause_rollouts": pause_rollouts}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{stop}");
    stop
}

/// Olivia lifts `stop`.
async fn lift(r: &Rollout, stop: &Value) {
    let (s, v) = r
        .olivia
        .post(
            &format!("/api/v1/line-stops/{}/lift", stop["id"]),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// Jobs held by a line stop now.
async fn held_jobs(app: &TestApp) -> i64 {
    app.db
        .query_text(
            "SELECT CAST(COUNT(*) AS TEXT) FROM jobs WHERE held_by IS NOT NULL AND state = 'queued'",
        )
        .await
        .and_then(|n| n.parse().ok())
        .unwrap_or_default()
}

db_test!(
    a_stopped_line_holds_a_paused_canary_and_a_rolling_update_until_it_is_lifted,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        r.sim.sim.install_kruise();
        make_canary(
            &r,
            json!({"steps": [{"replicas": 1}, {"weight": 100, "pause_seconds": 0}]}),
        )
        .await;
        // A second item ships prod alone, rolling.
        let (_, item) = r
            .eric
            .get(&format!("/api/v1/release-items/{}", r.item))
            .await;
        let (s, hotline) = r
            .org
            .admin
            .post(
                "/api/v1/release-items",
                json!({"node_id": r.org.pay, "name": "checkout-prod", "gitlab_project": "acme/checkout",
                       "image_repository": IMAGE, "required_approvals": 1,
                       "stages": [{"name": "prod", "app_id": item["stages"][1]["app_id"], "strategy": "rolling"}]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{hotline}");
        let dev_app = r.dev_app().await;

        // The canary waits for an owner at step 1.
        let canary = r.approved_order("v1.1.0").await;
        r.deploy(canary, 1).await;
        stage_when(&r.eric, canary, paused_at(1)).await;
        // The rolling update to prod is under way: its pods never get ready.
        r.sim.sim.faults().never_ready("v1.2.0");
        let rolling = approved_order(
            &r.eric,
            &r.olivia,
            hotline["id"].as_i64().unwrap(),
            "v1.2.0",
        )
        .await;
        r.deploy(rolling, 1).await;
        let under_way = eventually(Duration::from_secs(30), || async {
            r.image("prod").ends_with(":v1.2.0")
        })
        .await;
        assert!(under_way, "the rolling update began");
        assert_eq!(
            crate::engine::stage(&r.eric, rolling, 1).await["status"],
            "deploying"
        );

        assert!(!canary_paused(&r));

        // Only owners stop the line.
        let stops = format!("/api/v1/nodes/{}/line-stops", r.org.pay);
        let stop_body = json!({"reason": "Incident 42: checkout errors", "pause_rollouts": true});
        let (s, v) = r.eric.post(&stops, stop_body.clone()).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        let (s, v) = r.olivia.post(&stops, json!({"reason": " "})).await;
        assert_eq!(
            (s, v["error"]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("reason")),
            "{v}"
        );
        let (s, stop) = r.olivia.post(&stops, stop_body.clone()).await;
        assert_eq!(s, StatusCode::CREATED, "{stop}");
        assert_eq!(stop["node_path"], "/acme/pay");
        assert_eq!(stop["stopped_by"], "olivia");
        assert!(stop["lifted_at"].is_null(), "{stop}");
        let (s, v) = r.olivia.post(&stops, stop_body).await;
        assert_eq!(s, StatusCode::CONFLICT, "one stop per node: {v}");

        // At once: the step is not approved, nothing new deploys.
        let (s, v) = approve_step(&r.olivia, canary, 1).await;
        assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "line_stopped"), "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("Incident 42")
                && message.contains("/acme/pay")
                && message.contains("olivia"),
            "{message}"
        );
        let (s, v) = r
            .eric
            .post(
                &format!("/api/v1/apps/{dev_app}/deployments"),
                json!({"image": format!("{IMAGE}:v1.1.0")}),
            )
            .await;
        assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "line_stopped"), "{v}");
        // The engine holds both jobs and pauses the rolling update, and the
        // canary's Rollout: not even a timed step would end.
        let held = eventually(Duration::from_secs(30), || async {
            prod_paused(&r) && canary_paused(&r) && held_jobs(&app).await == 2
        })
        .await;
        assert!(
            held,
            "both jobs held, prod paused ({} held)",
            held_jobs(&app).await
        );
        assert_eq!(status_patches(&r), 0, "no step approved");
        for id in [canary, rolling] {
            assert!(
                timeline_kinds(&r.eric, id)
                    .await
                    .contains(&"line_stopped".to_string()),
                "#{id}"
            );
        }
        // Visible to whoever reads the subtree; lifted only by an owner.
        let vera = app.api(Some(&app.token_for("vera")));
        let (s, listed) = vera.get("/api/v1/line-stops").await;
        assert_eq!(s, StatusCode::OK, "{listed}");
        assert_eq!(listed[0]["id"], stop["id"], "{listed}");
        let otto = app.api(Some(&app.token_for("otto")));
        let (_, listed) = otto.get("/api/v1/line-stops").await;
        assert_eq!(listed, json!([]), "not seen from /acme/payroll");
        let lift = format!("/api/v1/line-stops/{}/lift", stop["id"]);
        let (s, v) = r.eric.post(&lift, json!({})).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");

        // The pages say so: the order's held stage, the node's lift button.
        let pages = app.browser_as("olivia", USER_PASSWORD).await;
        let (_, html) = pages.get(&format!("/work-orders/{canary}")).await;
        assert!(
            html.contains(r#"id="line-stop""#) && html.contains("Incident 42"),
            "{html}"
        );
        assert!(
            !html.contains(r#"name="step" value="1""#),
            "no approve button: {html}"
        );
        let (_, html) = pages.get(&format!("/tree/nodes/{}", r.org.pay_api)).await;
        assert!(html.contains(r#"data-action="lift-stop""#), "{html}");
        assert!(
            html.contains(r#"id="stop-line-form""#),
            "another stop below may be set"
        );
        let (_, html) = pages.get(&format!("/tree/nodes/{}", r.org.pay)).await;
        assert!(
            !html.contains(r#"id="stop-line-form""#),
            "stopped here already"
        );

        // Lifted: the Deployment resumes, the held jobs run.
        let (s, lifted) = r.olivia.post(&lift, json!({})).await;
        assert_eq!(s, StatusCode::OK, "{lifted}");
        assert_eq!(lifted["lifted_by"], "olivia");
        let (s, v) = r.olivia.post(&lift, json!({})).await;
        assert_eq!(s, StatusCode::CONFLICT, "lifted already: {v}");
        let resumed = eventually(Duration::from_secs(30), || async {
            !prod_paused(&r) && !canary_paused(&r)
        })
        .await;
        assert!(resumed, "prod rolls again, the canary may step on");
        r.sim.sim.faults().clear_never_ready();
        wait_stage(&r.eric, rolling, 1, "succeeded").await;
        let (s, v) = approve_step(&r.olivia, canary, 1).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        wait_stage(&r.eric, canary, 1, "succeeded").await;
        assert_eq!(held_jobs(&app).await, 0);
        for id in [canary, rolling] {
            assert!(
                timeline_kinds(&r.eric, id)
                    .await
                    .contains(&"line_lifted".to_string()),
                "#{id}"
            );
        }
        let (_, audit) = r.org.admin.get("/api/v1/audit?action=line.stop").await;
        assert!(audit.to_string().contains("Incident 42"), "{audit}");
        let (_, listed) = vera.get("/api/v1/line-stops").await;
        assert_eq!(listed, json!([]));
    }
);

#[tokio::test]
async fn a_canary_cancelled_during_a_stop_is_rolled_back_with_its_rollout_resumed() {
    let app = TestApp::start_with(crate::common::Backend::Sqlite, engine_start()).await;
    let r = Rollout::create(&app).await;
    r.sim.sim.install_kruise();
    make_canary(
        &r,
        json!({"steps": [{"replicas": 1}, {"weight": 100, "pause_seconds": 0}]}),
    )
    .await;
    let canary = r.approved_order("v1.1.0").await;
    r.deploy(canary, 1).await;
    stage_when(&r.eric, canary, paused_at(1)).await;
    let stop = stop_line(&r, "Incident 43", false).await;
    // Paused although the stop leaves rolling updates alone: a canary
    // takes no step during any stop.
    let paused = eventually(Duration::from_secs(30), || async { canary_paused(&r) }).await;
    assert!(paused, "the Rollout is paused");
    let (s, v) = r
        .olivia
        .post(
            &format!("/api/v1/work-orders/{canary}/stages/1/cancel"),
            json!({"reason": "the incident is this release"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    lift(&r, &stop).await;
    // The rollback resumes the Rollout it finds paused, then rolls back.
    let (s, v) = r
        .eric
        .post(
            &format!("/api/v1/work-orders/{canary}/stages/1/rollback"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    wait_stage(&r.eric, canary, 1, "rolled_back").await;
    assert!(!canary_paused(&r), "no pause is left behind");
    assert!(
        r.image("staging").ends_with(":v1.0.0"),
        "{}",
        r.image("staging")
    );
}

#[tokio::test]
async fn a_stop_that_pauses_rolling_updates_pauses_a_fast_path_deploy_under_way() {
    let app = TestApp::start_with(crate::common::Backend::Sqlite, engine_start()).await;
    let r = Rollout::create(&app).await;
    let dev_app = r.dev_app().await;
    let dev_paused = || {
        r.sim
            .sim
            .deployment("dev", "checkout")
            .is_some_and(|d| d.spec.paused == Some(true))
    };
    // CI's deploy is under way: its pods never get ready.
    r.sim.sim.faults().never_ready("v1.3.0");
    let (s, deploy) = r
        .eric
        .post(
            &format!("/api/v1/apps/{dev_app}/deployments"),
            json!({"image": format!("{IMAGE}:v1.3.0")}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{deploy}");
    let id = deploy["id"].as_i64().unwrap();
    let rolling = eventually(Duration::from_secs(30), || async {
        let (_, v) = r.eric.get(&format!("/api/v1/deployments/{id}")).await;
        v["status"] == "rolling_out"
    })
    .await;
    assert!(rolling, "the deploy began");
    assert!(!dev_paused());

    let stop = stop_line(&r, "Incident 44", true).await;
    let held = eventually(Duration::from_secs(30), || async {
        dev_paused() && held_jobs(&app).await == 1
    })
    .await;
    assert!(held, "the deploy's Deployment is paused and its job held");

    lift(&r, &stop).await;
    let resumed = eventually(Duration::from_secs(30), || async { !dev_paused() }).await;
    assert!(resumed, "resumed on lift");
    r.sim.sim.faults().clear_never_ready();
    let done = crate::fast_path::finished(&r.eric, id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(held_jobs(&app).await, 0);
}
