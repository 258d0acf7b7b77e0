//! Verification of fast-path deployments (issue 16): a deploy from CI to an
//! app whose release stage carries a verification plan runs that plan once
//! its rollout is available — smoke checks and metric gates measured by
//! the real Prometheus scraping the simulated cluster, on the lane's copy
//! when it deploys to a lane — and ends `succeeded` only when it passes:
//! a failing gate fails it, and a gate that cannot be judged fails it too
//! (no one is in the loop to let it go on).

use std::time::Duration;

use reqwest::StatusCode;
use rollway::sim::Serving;
use serde_json::{Value, json};

use crate::common::prometheus::Prometheus;
use crate::common::{TestApp, USER_PASSWORD};
use crate::db_test;
use crate::engine::{edit_stages, engine_start};
use crate::fast_path::{Fixture, IMAGE, finished};
use crate::verification::smoke_target;

/// The error ratio of the new pods of the deployed Deployment over the
/// last 5 s.
const ERROR_RATIO: &str = r#"sum(rate(http_requests_total{namespace="{{namespace}}",deployment="{{deployment}}",pod_template_hash="{{new_hash}}",code=~"5.."}[5s])) / sum(rate(http_requests_total{namespace="{{namespace}}",deployment="{{deployment}}",pod_template_hash="{{new_hash}}"}[5s]))"#;

/// Asks for `version` of checkout on its dev app (on `lane` when given):
/// the deployment's id.
async fn ask(f: &Fixture, version: &str, lane: Option<&str>) -> i64 {
    let mut body = json!({"image": format!("{IMAGE}:{version}")});
    if let Some(lane) = lane {
        body["lane"] = json!(lane);
    }
    let (s, created) =
        f.ci.post(&format!("/api/v1/apps/{}/deployments", f.checkout), body)
            .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{created}");
    created["id"].as_i64().unwrap()
}

/// Deploys `version` of checkout to its dev app: the deployment once it
/// ended.
async fn deploy(f: &Fixture, version: &str) -> Value {
    let id = ask(f, version, None).await;
    finished(&f.ci, id).await
}

/// The verdicts of a deployment's `check` (`gate` or `smoke`) results.
fn verdicts(deployment: &Value, check: &str) -> Vec<String> {
    deployment["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["check"] == check)
        .map(|r| r["verdict"].as_str().unwrap().to_string())
        .collect()
}

fn message(deployment: &Value) -> &str {
    deployment["message"].as_str().unwrap()
}

db_test!(
    a_fast_path_deploy_runs_its_apps_verification_and_fails_on_a_failing_or_unjudgeable_gate,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let f = Fixture::create(&app).await;
        let admin = &f.org.admin;
        let prometheus = Prometheus::start(f.sim.addr).await;
        let (_, checkout) = admin.get(&format!("/api/v1/apps/{}", f.checkout)).await;
        let dev = checkout["cluster_id"].as_i64().unwrap();
        let use_prometheus = |url: String| async move {
            let (s, v) = admin
                .put(
                    &format!("/api/v1/clusters/{dev}/prometheus"),
                    json!({ "url": url }),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
        };
        use_prometheus(prometheus.url.clone()).await;

        // Without a plan on the app's stages, nothing is verified.
        let plain = deploy(&f, "v1.0.1").await;
        assert_eq!(plain["status"], "succeeded", "{plain:#}");
        assert!(plain["verify"].is_null(), "{plain:#}");
        assert_eq!(plain["checks"], json!([]), "{plain:#}");

        // The item gets a dev stage on the app, with a plan: a smoke check,
        // an error-ratio gate, and a sign-off a deploy from CI cannot wait
        // for (left out).
        let smoke = smoke_target().await;
        let gate = json!({"name": "error ratio", "query": ERROR_RATIO, "op": "<", "threshold": 0.05,
                          "interval_seconds": 5, "count": 2, "failure_limit": 0, "inconclusive_limit": 2});
        let (s, v) = edit_stages(admin, f.item, |stages| {
            stages.insert(
                0,
                json!({"name": "dev", "app_id": f.checkout, "strategy": "rolling",
                       "verify": {"gates": [gate], "smoke": [{"url": format!("{smoke}/ok")}],
                                  "sign_off": true}}),
            );
        })
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");

        // A good image, on the app and on a lane at once: verified, then
        // succeeded.
        let (on_app, on_lane) = (
            ask(&f, "v1.1.0", None).await,
            ask(&f, "v1.1.0", Some("feature-x")).await,
        );
        let (good, lane) = tokio::join!(finished(&f.ci, on_app), finished(&f.ci, on_lane));
        assert_eq!(good["status"], "succeeded", "{good:#}");
        assert_eq!(
            good["verify"]["gates"][0]["name"], "error ratio",
            "{good:#}"
        );
        assert!(good["verify"].get("sign_off").is_none(), "{good:#}");
        assert_eq!(verdicts(&good, "smoke"), ["pass"], "{good:#}");
        assert!(
            verdicts(&good, "gate").contains(&"pass".to_string()),
            "{good:#}"
        );
        assert!(message(&good).contains("verified"), "{good:#}");
        assert!(message(&good).contains("error ratio < 0.05"), "{good:#}");
        let said: Vec<&str> = good["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message"].as_str().unwrap())
            .collect();
        assert!(
            said.iter()
                .any(|m| m.contains("verifying: 1 metric gate, 1 smoke check")),
            "{said:?}"
        );
        assert_eq!(
            f.image_of("dev", "checkout").unwrap(),
            format!("{IMAGE}:v1.1.0")
        );

        // The app's page says so.
        let (s, html) = app
            .browser_as("eric", USER_PASSWORD)
            .await
            .get(&format!("/apps/{}", f.checkout))
            .await;
        assert_eq!(s, StatusCode::OK);
        let row = format!(r#"data-deployment="{on_app}""#);
        let row = &html[html.find(&row).expect("the deployment's row")..];
        let row = &row[..row.find("</tr>").unwrap()];
        assert!(
            row.contains("Succeeded") && row.contains("verified"),
            "{row}"
        );

        // The lane is verified on its own copy: the query names it.
        assert_eq!(lane["status"], "succeeded", "{lane:#}");
        let asked = lane["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["check"] == "gate")
            .map(|r| r["asked"].as_str().unwrap().to_string())
            .unwrap_or_default();
        assert!(
            asked.contains(r#"deployment="checkout--feature-x""#),
            "{lane:#}"
        );

        // A bad image: 30 % of its requests fail; the gate fails it.
        f.sim.sim.faults().serve(
            "checkout:v1.2.0",
            Serving {
                error_ratio: 0.3,
                latency: Duration::from_millis(5),
            },
        );
        let bad = deploy(&f, "v1.2.0").await;
        assert_eq!(bad["status"], "failed", "{bad:#}");
        assert!(
            message(&bad).contains("gate 1 (error ratio) failed"),
            "{bad:#}"
        );
        assert_eq!(verdicts(&bad, "gate").last().unwrap(), "fail", "{bad:#}");

        // Prometheus down: the gate cannot be judged; the deploy fails
        // rather than pass unverified.
        drop(prometheus);
        let down = deploy(&f, "v1.3.0").await;
        assert_eq!(down["status"], "failed", "{down:#}");
        assert!(
            message(&down).contains("could not be judged 3 times"),
            "{down:#}"
        );
        assert!(message(&down).contains("unverified"), "{down:#}");
        assert_eq!(
            verdicts(&down, "gate"),
            ["inconclusive", "inconclusive", "inconclusive"],
            "{down:#}"
        );
    }
);
