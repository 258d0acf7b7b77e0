//! Verification plans at work (issue 15): a stage's metric gates measured
//! by the real Prometheus scraping the simulated cluster, a bad tag failed
//! and rolled back by its gate, a good one passed after its soak time; a
//! Prometheus that cannot answer pausing the stage for a person; smoke
//! checks; an owner's sign-off; a restart in the middle of a gate.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::IntoResponse;
use reqwest::StatusCode;
use rollway::sim::Serving;
use serde_json::{Value, json};

use crate::canary::approve_step;
use crate::common::prometheus::Prometheus;
use crate::common::{Api, TestApp, USER_PASSWORD, eventually};
use crate::db_test;
use crate::engine::{Rollout, engine_start, order_state, stage, timeline_kinds, wait_stage};

/// The error ratio of the new pods of the stage's Deployment over the
/// last 5 s.
const ERROR_RATIO: &str = r#"sum(rate(http_requests_total{namespace="{{namespace}}",deployment="{{deployment}}",pod_template_hash="{{new_hash}}",code=~"5.."}[5s])) / sum(rate(http_requests_total{namespace="{{namespace}}",deployment="{{deployment}}",pod_template_hash="{{new_hash}}"}[5s]))"#;

/// Sets stage 1 (staging) of the item's verification plan to `plan`.
async fn verify_stage_1(r: &Rollout, plan: Value) -> (StatusCode, Value) {
    r.put_stage_1(None, Some(plan)).await
}

/// Points the staging cluster at the Prometheus at `url`.
async fn use_prometheus(r: &Rollout, url: &str) {
    let (s, v) = r
        .org
        .admin
        .put(
            &format!("/api/v1/clusters/{}/prometheus", r.staging_cluster),
            json!({"url": url}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// Stage 1 of order `id` once `check` holds for it (two minutes at most).
async fn stage_when(api: &Api, id: i64, check: impl Fn(&Value) -> bool) -> Value {
    let ok = eventually(Duration::from_secs(120), || async {
        check(&stage(api, id, 1).await)
    })
    .await;
    let now = stage(api, id, 1).await;
    assert!(ok, "stage 1 of #{id} never got there: {now:#}");
    now
}

/// The verdicts of stage 1's results of `check` (`gate` or `smoke`).
fn verdicts(stage: &Value, check: &str) -> Vec<String> {
    stage["verification"]["results"]
        .as_array()
        .map(|results| {
            results
                .iter()
                .filter(|r| r["check"] == check)
                .map(|r| r["verdict"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Page `path` as `user` sees it.
async fn page(app: &TestApp, user: &str, path: &str) -> String {
    let (s, html) = app.browser_as(user, USER_PASSWORD).await.get(path).await;
    assert_eq!(s, StatusCode::OK, "{path}: {html}");
    html
}

/// The message of the first `kind` event on order `id`'s timeline.
async fn event_message(api: &Api, id: i64, kind: &str) -> String {
    let (_, order) = api.get(&format!("/api/v1/work-orders/{id}")).await;
    order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} on #{id}: {order:#}"))["message"]
        .as_str()
        .unwrap()
        .to_string()
}

db_test!(
    a_bad_tag_fails_its_error_ratio_gate_and_rolls_back_and_a_good_one_passes_after_its_soak,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        let prometheus = Prometheus::start(r.sim.addr).await;
        // Gates need the cluster's Prometheus: refused on save without it.
        let gate = json!({"name": "error ratio", "query": ERROR_RATIO, "op": "<", "threshold": 0.05,
                          "interval_seconds": 5, "count": 3, "failure_limit": 1, "inconclusive_limit": 2});
        let (s, v) = verify_stage_1(&r, json!({"gates": [gate]})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("no Prometheus"),
            "{v}"
        );
        use_prometheus(&r, &prometheus.url).await;
        let (s, v) = verify_stage_1(&r, json!({"gates": [gate], "soak_seconds": 20})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["stages"][0]["verify"]["gates"][0]["count"], 3, "{v}");

        // v1.2.0 answers 20 % of its requests with 500.
        r.sim.sim.faults().serve(
            "checkout:v1.2.0",
            Serving {
                error_ratio: 0.2,
                latency: Duration::from_millis(5),
            },
        );
        let bad = r.approved_order("v1.2.0").await;
        r.deploy(bad, 1).await;
        let rolled_back = stage_when(&r.eric, bad, |s| s["status"] == "rolled_back").await;
        let gates = verdicts(&rolled_back, "gate");
        assert_eq!(
            gates.iter().filter(|v| *v == "fail").count(),
            2,
            "failure_limit + 1 failed measurements: {rolled_back:#}"
        );
        assert!(!gates.iter().any(|v| v == "pass"), "{rolled_back:#}");
        let kinds = timeline_kinds(&r.eric, bad).await;
        for kind in [
            "verification_started",
            "stage_failed",
            "rollback_started",
            "rolled_back",
        ] {
            assert!(kinds.contains(&kind.to_string()), "{kind}: {kinds:?}");
        }
        let failed = event_message(&r.eric, bad, "stage_failed").await;
        assert!(
            failed.contains("gate 1 (error ratio) failed: 2 of"),
            "{failed}"
        );
        assert_eq!(
            r.image("staging"),
            format!("{}:v1.0.0", crate::engine::IMAGE)
        );
        // The order page shows why: the chart and each measurement.
        let html = page(&app, "eric", &format!("/work-orders/{bad}")).await;
        assert!(
            html.contains("gate-chart") && html.contains(r#"data-verdict="fail""#),
            "{html}"
        );
        // Each measurement keeps the query it ran, filled in, and the page
        // links the last one to the cluster's Prometheus.
        let asked = rolled_back["verification"]["results"][0]["asked"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            asked.contains("namespace=\"staging\"") && !asked.contains("{{"),
            "{asked}"
        );
        let link = format!(
            "{}/graph?g0.expr={}",
            prometheus.url.trim_end_matches('/'),
            url::form_urlencoded::byte_serialize(asked.as_bytes()).collect::<String>()
        );
        assert!(
            html.contains(&link.replace('&', "&amp;")) || html.contains(&link),
            "{link} in:\n{html}"
        );

        // A good tag passes every measurement and succeeds once the soak
        // time is over.
        let good = r.approved_order("v1.3.0").await;
        r.deploy(good, 1).await;
        let done = stage_when(&r.eric, good, |s| {
            matches!(
                s["status"].as_str(),
                Some("succeeded" | "failed" | "rolled_back" | "paused")
            )
        })
        .await;
        assert_eq!(done["status"], "succeeded", "{done:#}");
        assert_eq!(
            verdicts(&done, "gate")
                .iter()
                .filter(|v| *v == "pass")
                .count(),
            3,
            "{done:#}"
        );
        let started = done["verification"]["started_at"].as_i64().unwrap();
        let finished = done["finished_at"].as_i64().unwrap();
        assert!(
            finished - started >= 20_000,
            "the soak time: {started} → {finished}"
        );
        assert!(
            done["message"].as_str().unwrap().contains("soaked 20 s"),
            "{done:#}"
        );
    }
);

db_test!(
    a_canary_whose_gate_fails_at_step_2_never_reaches_step_3_and_rolls_back,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create_with(&app, crate::engine::sim_config(), 4).await;
        r.sim.sim.install_kruise();
        let prometheus = Prometheus::start(r.sim.addr).await;
        use_prometheus(&r, &prometheus.url).await;
        let gate = json!({"name": "error ratio", "query": ERROR_RATIO, "op": "<", "threshold": 0.05,
                          "interval_seconds": 5, "count": 2, "failure_limit": 0, "inconclusive_limit": 2});
        let canary = json!({"steps": [{"replicas": 1}, {"replicas": 2, "pause_seconds": 1}, {"replicas": 3}]});
        let (s, v) = r
            .put_stage_1(Some(canary), Some(json!({"gates": [gate]})))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");

        let id = r.approved_order("v1.1.0").await;
        r.deploy(id, 1).await;
        // Step 1 is judged before it pauses for the owner.
        let paused = stage_when(&r.eric, id, |s| s["status"] == "paused").await;
        assert_eq!(paused["paused_step"], 1, "{paused:#}");
        assert!(
            paused["message"].as_str().unwrap().contains("gates passed"),
            "{paused:#}"
        );
        // The new version starts failing under more traffic.
        r.sim.sim.faults().serve(
            "checkout:v1.1.0",
            Serving {
                error_ratio: 0.2,
                latency: Duration::from_millis(5),
            },
        );
        let (s, v) = approve_step(&r.olivia, id, 1).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        wait_stage(&r.eric, id, 1, "rolled_back").await;
        let failed = event_message(&r.eric, id, "stage_failed").await;
        assert!(failed.starts_with("step 2 of 3"), "{failed}");
        let (_, order) = r.eric.get(&format!("/api/v1/work-orders/{id}")).await;
        assert!(
            !order["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["message"].as_str().unwrap_or("").contains("step 3 of 3")),
            "step 3 never came: {order:#}"
        );
        // Gates were measured at steps 1 and 2 only: one failure at step 2
        // (failure limit 0) was enough.
        let results = stage(&r.eric, id, 1).await["verification"]["results"].clone();
        let seen: Vec<(i64, String)> = results
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["step"].as_i64().unwrap(),
                    r["verdict"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let at = |step: i64, verdict: &str| {
            seen.iter()
                .filter(|(s, v)| *s == step && v == verdict)
                .count()
        };
        // (A first measurement may find no data yet: Prometheus scrapes
        // the new pod a moment after it starts.)
        assert!(
            at(1, "pass") >= 1 && at(1, "fail") == 0,
            "step 1 passed: {results:#}"
        );
        assert_eq!(
            seen.last(),
            Some(&(2, "fail".to_string())),
            "step 2 failed: {results:#}"
        );
        assert!(seen.iter().all(|(s, _)| *s <= 2), "{results:#}");
        let html = page(&app, "eric", &format!("/work-orders/{id}")).await;
        assert!(
            html.contains("step 1 · #1") && html.contains("step 2 · #1"),
            "{html}"
        );
        assert!(!html.contains("step 3 · #"), "{html}");
        assert_eq!(
            r.image("staging"),
            format!("{}:v1.0.0", crate::engine::IMAGE)
        );
    }
);

/// A stand-in for Prometheus: `error` answers its error envelope, `ok` the
/// value 1 for every query, `down` closes nothing but answers 503.
struct FakePrometheus {
    url: String,
    mode: Arc<Mutex<&'static str>>,
}

impl FakePrometheus {
    async fn start(mode: &'static str) -> FakePrometheus {
        let mode = Arc::new(Mutex::new(mode));
        let m = mode.clone();
        let app = axum::Router::new().route(
            "/api/v1/query",
            axum::routing::get(move || {
                let m = m.clone();
                async move {
                    let json = [("content-type", "application/json")];
                    match *m.lock().unwrap() {
                        "error" => (
                            StatusCode::UNPROCESSABLE_ENTITY,
                            json,
                            r#"{"status":"error","errorType":"execution","error":"query timed out in expression evaluation"}"#,
                        )
                            .into_response(),
                        _ => (
                            StatusCode::OK,
                            json,
                            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"p"},"value":[1733000000,"1"]}]}}"#,
                        )
                            .into_response(),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakePrometheus { url, mode }
    }

    fn answer(&self, mode: &'static str) {
        *self.mode.lock().unwrap() = mode;
    }
}

/// A gate of `count` measurements 5 s apart that passes on the stand-in's
/// `ok` (1 < 5).
fn gate(count: u32, inconclusive_limit: u32) -> Value {
    json!({"name": "up", "query": "up{namespace=\"{{namespace}}\"}", "op": "<", "threshold": 5,
           "interval_seconds": 5, "count": count, "failure_limit": 0,
           "inconclusive_limit": inconclusive_limit})
}

db_test!(
    a_gate_prometheus_cannot_answer_pauses_the_stage_for_an_owner_to_continue_or_roll_back,
    |backend| async move {
        let mut start = engine_start();
        start
            .args
            .extend(["--prometheus-timeout-seconds", "1"].map(String::from));
        let app = TestApp::start_with(backend, start).await;
        let r = Rollout::create(&app).await;
        let fake = FakePrometheus::start("error").await;
        use_prometheus(&r, &fake.url).await;
        let (s, v) = verify_stage_1(&r, json!({"gates": [gate(2, 1)]})).await;
        assert_eq!(s, StatusCode::OK, "{v}");

        let id = r.approved_order("v1.1.0").await;
        r.deploy(id, 1).await;
        // Two answers it cannot judge (limit 1): paused, never passed.
        let paused = stage_when(&r.eric, id, |s| s["status"] == "paused").await;
        assert_eq!(
            verdicts(&paused, "gate"),
            ["inconclusive", "inconclusive"],
            "{paused:#}"
        );
        let message = paused["message"].as_str().unwrap();
        assert!(
            message.contains("could not be judged") && message.contains("query timed out"),
            "Prometheus' own error is shown: {message}"
        );
        assert_eq!(order_state(&r.eric, id).await, "in_progress");
        let path = format!("/api/v1/work-orders/{id}/stages/1/continue");
        let (s, v) = r.eric.post(&path, json!({})).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "engineers do not decide: {v}");
        let (s, v) = approve_step(&r.olivia, id, 1).await;
        assert_eq!(s, StatusCode::CONFLICT, "not a canary step: {v}");

        // Prometheus is back: the owner continues, and the gate measures
        // twice more (the forgiven answers are not measurements).
        fake.answer("ok");
        let (s, v) = r.olivia.post(&path, json!({})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, v) = r.olivia.post(&path, json!({})).await;
        assert_eq!(s, StatusCode::CONFLICT, "once: {v}");
        let done = stage_when(&r.eric, id, |s| s["status"] == "succeeded").await;
        assert_eq!(
            verdicts(&done, "gate"),
            ["inconclusive", "inconclusive", "pass", "pass"],
            "{done:#}"
        );
        assert!(
            timeline_kinds(&r.eric, id)
                .await
                .contains(&"verification_went_on".to_string())
        );

        // Prometheus down this time: paused again, and the owner rolls the
        // stage back from the page.
        let (s, v) = r
            .eric
            .post(
                &format!("/api/v1/work-orders/{id}/close"),
                json!({"reason": "staging only"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        fake.answer("error");
        let again = r.approved_order("v1.2.0").await;
        r.deploy(again, 1).await;
        stage_when(&r.eric, again, |s| s["status"] == "paused").await;
        let html = page(&app, "olivia", &format!("/work-orders/{again}")).await;
        assert!(
            html.contains(r#"data-action="continue-verification""#),
            "{html}"
        );
        assert!(html.contains(r#"data-action="rollback""#), "{html}");
        let (s, v) = r
            .olivia
            .post(
                &format!("/api/v1/work-orders/{again}/stages/1/rollback"),
                json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        wait_stage(&r.eric, again, 1, "rolled_back").await;
        assert_eq!(
            r.image("staging"),
            format!("{}:v1.1.0", crate::engine::IMAGE)
        );
    }
);

/// A web server for smoke checks: `/ok` answers 200, `/fail` 500, `/hang`
/// never answers.
pub(crate) async fn smoke_target() -> String {
    let app = axum::Router::new()
        .route("/ok", axum::routing::get(|| async { "ok" }))
        .route(
            "/fail",
            axum::routing::get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "no") }),
        )
        .route(
            "/hang",
            axum::routing::get(std::future::pending::<&'static str>),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

db_test!(
    smoke_checks_fail_a_stage_on_a_wrong_status_or_a_hang,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        let target = smoke_target().await;
        for (version, path, says) in [
            ("v1.1.0", "fail", "500 in"),
            ("v1.2.0", "hang", "no answer within 1 s"),
        ] {
            let plan = json!({"smoke": [
                {"url": format!("{target}/ok")},
                {"url": format!("{target}/{path}"), "timeout_seconds": 1, "attempts": 2}
            ]});
            let (s, v) = verify_stage_1(&r, plan).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            let id = r.approved_order(version).await;
            r.deploy(id, 1).await;
            let done = stage_when(&r.eric, id, |s| s["status"] == "rolled_back").await;
            let results = done["verification"]["results"].as_array().unwrap();
            let attempts: Vec<(i64, &str)> = results
                .iter()
                .map(|a| (a["index"].as_i64().unwrap(), a["verdict"].as_str().unwrap()))
                .collect();
            assert_eq!(
                attempts,
                [(0, "pass"), (1, "fail"), (1, "fail")],
                "{done:#}"
            );
            assert!(
                results[2]["detail"].as_str().unwrap().contains(says),
                "{done:#}"
            );
            let failed = event_message(&r.eric, id, "stage_failed").await;
            assert!(failed.contains("smoke check 2 failed"), "{failed}");
        }
    }
);

db_test!(
    a_stage_waits_for_an_owners_sign_off_that_an_engineer_cannot_give,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        let (s, v) = verify_stage_1(&r, json!({"sign_off": true})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let id = r.approved_order("v1.1.0").await;
        let path = format!("/api/v1/work-orders/{id}/stages/1/sign-off");
        let (s, v) = r.olivia.post(&path, json!({})).await;
        assert_eq!(s, StatusCode::CONFLICT, "nothing runs yet: {v}");
        r.deploy(id, 1).await;
        stage_when(&r.eric, id, |s| s["verification"]["started_at"].is_i64()).await;
        let (s, v) = r.eric.post(&path, json!({})).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        // It waits: still verifying a while later.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(stage(&r.eric, id, 1).await["status"], "verifying");
        let html = page(&app, "olivia", &format!("/work-orders/{id}")).await;
        assert!(html.contains(r#"data-action="sign-off""#), "{html}");
        let html = page(&app, "eric", &format!("/work-orders/{id}")).await;
        assert!(!html.contains(r#"data-action="sign-off""#), "{html}");
        let (s, v) = r.olivia.post(&path, json!({})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let done = stage_when(&r.eric, id, |s| s["status"] == "succeeded").await;
        assert!(done["verification"]["signed_off_at"].is_i64(), "{done:#}");
        assert!(
            done["message"].as_str().unwrap().contains("signed off"),
            "{done:#}"
        );
        let kinds = timeline_kinds(&r.eric, id).await;
        assert!(kinds.contains(&"signed_off".to_string()), "{kinds:?}");
    }
);

db_test!(
    a_restart_in_the_middle_of_a_gate_resumes_it_without_counting_a_measurement_twice,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        let fake = FakePrometheus::start("ok").await;
        use_prometheus(&r, &fake.url).await;
        let (s, v) = verify_stage_1(&r, json!({"gates": [gate(3, 0)]})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let id = r.approved_order("v1.1.0").await;
        r.deploy(id, 1).await;
        let first = stage_when(&r.eric, id, |s| verdicts(s, "gate").len() == 1).await;
        let first_at = first["verification"]["results"][0]["at"].as_i64().unwrap();
        assert!(first["verification"]["started_at"].is_i64(), "{first:#}");

        // Killed mid-measurement: the next server takes the job over.
        let db = app.stop();
        let app = TestApp::start_on(db, engine_start());
        let eric = app.api(Some(&app.token_for("eric")));
        let done = stage_when(&eric, id, |s| s["status"] == "succeeded").await;
        let results = done["verification"]["results"].as_array().unwrap();
        let seqs: Vec<i64> = results.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, [1, 2, 3], "{done:#}");
        assert_eq!(
            results[0]["at"], first_at,
            "the first measurement is kept as taken"
        );
        let rows = app
            .db
            .query_text("SELECT CAST(COUNT(*) AS TEXT) FROM verify_results")
            .await;
        assert_eq!(rows.as_deref(), Some("3"));
    }
);

db_test!(
    a_measurement_without_a_value_leaves_the_next_one_recordable,
    |backend| async move {
        use rollway::db::jobs;
        use rollway::db::verify::{Check, NewResult, Of, record};
        use rollway::domain::verify::Verdict;

        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        let order = r.approved_order("v1.1.0").await;
        // A job of a kind no server runs, on the order's first stage: the
        // lease the results are fenced on.
        let db = crate::cli::open_db(&app.db).await;
        sqlx::query(
            "INSERT INTO jobs (kind, subject_kind, subject_id, work_order_id, stage_position, state, attempts, \
             run_at, created_at, updated_at) \
             SELECT 'regression', 'stage_run', s.id, s.work_order_id, s.position, 'queued', 0, 0, 0, 0 \
             FROM stage_runs s WHERE s.work_order_id = $1 AND s.position = 1",
        )
        .bind(order)
        .execute(&db.pool)
        .await
        .unwrap();
        let job = jobs::claim(&db, "test", &["regression"], 60_000, 1)
            .await
            .unwrap()
            .remove(0);
        // Inconclusive measurements (no value) first, enough for every
        // pooled connection to have written one, then measurements with a
        // value. (sqlx 0.8 sent a missing value as a `real`, and
        // PostgreSQL then refused every later value on that connection.)
        let stage_1 = Of::Stage {
            order_id: order,
            position: 1,
            step: 0,
        };
        let values: Vec<Option<f64>> = (1..=40)
            .map(|seq| (seq > 20).then_some(f64::from(seq) / 100.0))
            .collect();
        for (seq, value) in (1..).zip(values.iter().copied()) {
            let result = NewResult {
                of: stage_1,
                check: Check::Gate(0),
                seq,
                at: seq,
                verdict: if value.is_some() {
                    Verdict::Pass
                } else {
                    Verdict::Inconclusive
                },
                value,
                detail: "",
                asked: "up",
            };
            assert!(
                record(&db, &job.lease, &result).await.unwrap(),
                "measurement {seq}"
            );
        }
        let stored: Vec<Option<f64>> = rollway::db::verify::results(&db.pool, stage_1)
            .await
            .unwrap()
            .iter()
            .map(|r| r.value)
            .collect();
        assert_eq!(stored, values);
    }
);
