//! Verification (issue 15), what it stands on: a real Prometheus scraping
//! the simulated cluster's synthetic pod metrics, whose error ratio and
//! latency follow each pod's image tag; and each cluster's Prometheus
//! setting (URL and write-only token), tested against the real one and a
//! stand-in answering errors, hangs and redirects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::IntoResponse;
use reqwest::StatusCode;
use rollway::sim::{Serving, Sim};
use serde_json::{Value, json};

use crate::common::prometheus::Prometheus;
use crate::common::{ADMIN_PASSWORD, Org, Start, TestApp, eventually};
use crate::db_test;
use crate::engine::sim_config;
use crate::registry::kubeconfig;

/// `query`'s value per Deployment, once every one of `deployments` has one.
async fn per_deployment(
    prometheus: &Prometheus,
    query: &str,
    deployments: &[&str],
) -> HashMap<String, f64> {
    let read = || async {
        prometheus
            .query(query)
            .await
            .into_iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(labels, v)| {
                (
                    labels["deployment"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    v,
                )
            })
            .collect::<HashMap<_, _>>()
    };
    let complete = eventually(Duration::from_secs(40), || async {
        let values = read().await;
        deployments.iter().all(|d| values.contains_key(*d))
    })
    .await;
    let values = read().await;
    assert!(complete, "{query}: {values:?}");
    values
}

#[tokio::test]
async fn a_real_prometheus_sees_each_tags_error_ratio_and_latency() {
    let sim = Sim::start(sim_config(), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("start the simulated cluster");
    for (name, tag) in [
        ("good", "v1"),
        ("bad", "v2-bad"),
        ("slow", "v2-slow"),
        ("set", "v3"),
    ] {
        sim.sim.create_deployment(
            "prod",
            name,
            "app",
            &format!("registry.example.com/web:{tag}"),
            2,
            600,
        );
    }
    // A profile set for an image wins over its tag.
    sim.sim.faults().serve(
        "web:v3",
        Serving {
            error_ratio: 0.5,
            latency: Duration::from_millis(200),
        },
    );
    let prometheus = Prometheus::start(sim.addr).await;
    let all = ["good", "bad", "slow", "set"];

    let errors = per_deployment(
        &prometheus,
        r#"sum by (deployment) (rate(http_requests_total{namespace="prod",code=~"5.."}[5s]))
           / sum by (deployment) (rate(http_requests_total{namespace="prod"}[5s]))"#,
        &all,
    )
    .await;
    assert_eq!(errors["good"], 0.0, "{errors:?}");
    assert!((errors["bad"] - 0.2).abs() < 0.05, "{errors:?}");
    assert_eq!(errors["slow"], 0.0, "{errors:?}");
    assert!((errors["set"] - 0.5).abs() < 0.05, "{errors:?}");

    let p99 = per_deployment(
        &prometheus,
        r#"histogram_quantile(0.99, sum by (deployment, le) (rate(http_request_duration_seconds_bucket{namespace="prod"}[5s])))"#,
        &all,
    )
    .await;
    assert!(p99["good"] <= 0.05, "{p99:?}");
    assert!(p99["slow"] > 0.5 && p99["slow"] <= 1.0, "{p99:?}");
    assert!(p99["set"] > 0.1 && p99["set"] <= 0.25, "{p99:?}");

    // Each series names its pod and pod-template hash: a gate can tell the
    // new pods from the old.
    let series = prometheus
        .query(r#"http_requests_total{deployment="bad",code="500"}"#)
        .await;
    assert_eq!(series.len(), 2, "{series:?}");
    for (labels, _) in &series {
        let pod = labels["pod"].as_str().unwrap();
        let hash = labels["pod_template_hash"].as_str().unwrap();
        assert!(pod.starts_with(&format!("bad-{hash}-")), "{labels}");
    }
}

/// A stand-in for Prometheus answering what a test sets: `ok` (the real
/// `1+1` answer), `error` (Prometheus' error envelope), `hang`, `redirect`
/// (off-site) or `html` (not the Prometheus API). It keeps the
/// Authorization header it was sent.
struct FakePrometheus {
    url: String,
    mode: Arc<Mutex<&'static str>>,
    authorization: Arc<Mutex<Option<String>>>,
}

impl FakePrometheus {
    async fn start() -> FakePrometheus {
        let mode = Arc::new(Mutex::new("ok"));
        let authorization = Arc::new(Mutex::new(None));
        let (m, a) = (mode.clone(), authorization.clone());
        let app = axum::Router::new().route(
            "/api/v1/query",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let (m, a) = (m.clone(), a.clone());
                async move {
                    *a.lock().unwrap() = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(String::from);
                    let mode = *m.lock().unwrap();
                    match mode {
                        "error" => (
                            StatusCode::BAD_REQUEST,
                            [("content-type", "application/json")],
                            r#"{"status":"error","errorType":"bad_data","error":"1:1: parse error: unexpected end of input"}"#.to_string(),
                        )
                            .into_response(),
                        "hang" => std::future::pending::<axum::response::Response>().await,
                        "redirect" => (
                            StatusCode::FOUND,
                            [("location", "http://example.com/api/v1/query")],
                            String::new(),
                        )
                            .into_response(),
                        "html" => (StatusCode::OK, "<html>login</html>".to_string()).into_response(),
                        _ => (
                            StatusCode::OK,
                            [("content-type", "application/json")],
                            r#"{"status":"success","data":{"resultType":"scalar","result":[1733000000,"2"]}}"#.to_string(),
                        )
                            .into_response(),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakePrometheus {
            url,
            mode,
            authorization,
        }
    }

    fn answer(&self, mode: &'static str) {
        *self.mode.lock().unwrap() = mode;
    }
}

db_test!(
    a_clusters_prometheus_is_set_tested_and_its_token_never_shown,
    |backend| async move {
        let mut start = Start::default();
        start
            .args
            .extend(["--prometheus-timeout-seconds", "1"].map(String::from));
        let app = TestApp::start_with(backend, start).await;
        let org = Org::create(&app).await;
        let admin = &org.admin;
        let (s, cluster) = admin
            .post(
                "/api/v1/clusters",
                json!({"name": "prod", "environment": "prod", "kubeconfig": kubeconfig()}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{cluster}");
        assert_eq!(cluster["prometheus_url"], Value::Null);
        let id = cluster["id"].as_i64().unwrap();
        let path = format!("/api/v1/clusters/{id}/prometheus");
        let test = format!("/api/v1/clusters/{id}/prometheus/test");

        // Nothing to test yet; a URL that reads files or carries
        // credentials is refused.
        let (s, v) = admin.post(&test, json!({})).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        for bad in [
            "file:///etc/passwd",
            "http://user:pw@prom:9090",
            "gopher://prom",
        ] {
            let (s, v) = admin.put(&path, json!({"url": bad})).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
            assert_eq!(v["error"]["field"], "url", "{v}");
        }

        // A real Prometheus answers 1+1.
        let sim = Sim::start(sim_config(), "127.0.0.1:0".parse().unwrap())
            .await
            .expect("start the simulated cluster");
        let real = Prometheus::start(sim.addr).await;
        let token = "prom-token-9f8e7d";
        let (s, v) = admin
            .put(
                &path,
                json!({"url": format!("{}/", real.url), "token": token}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(
            v["prometheus_url"],
            real.url.as_str(),
            "kept without the slash"
        );
        assert_eq!(v["has_prometheus_token"], true);
        let (s, v) = admin.post(&test, json!({})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["result"], 2.0);

        // What a Prometheus may answer instead, each a 502 saying why.
        let fake = FakePrometheus::start().await;
        let (s, v) = admin.put(&path, json!({"url": fake.url})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["has_prometheus_token"], true, "the token is kept");
        let (s, v) = admin.post(&test, json!({})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(
            fake.authorization.lock().unwrap().as_deref(),
            Some(format!("Bearer {token}").as_str()),
            "the token is sent as a bearer token"
        );
        for (mode, says) in [
            (
                "error",
                "refused the query (bad_data): 1:1: parse error: unexpected end of input",
            ),
            ("hang", "did not answer: no answer within 1 s"),
            ("redirect", "302 Found (a redirect, not followed)"),
            ("html", "200 OK, not the Prometheus API"),
        ] {
            fake.answer(mode);
            let (s, v) = admin.post(&test, json!({})).await;
            assert_eq!(s, StatusCode::BAD_GATEWAY, "{mode}: {v}");
            let message = v["error"]["message"].as_str().unwrap();
            assert!(
                message.starts_with("Prometheus of cluster prod ") && message.contains(says),
                "{mode}: {message}"
            );
        }

        // The token is nowhere to be read: not in answers, the audit log,
        // or the database in plain text.
        let (_, cluster) = admin.get(&format!("/api/v1/clusters/{id}")).await;
        let (_, audit) = admin.get("/api/v1/audit").await;
        let stored = app
            .db
            .query_text("SELECT prometheus_token_sealed FROM clusters")
            .await
            .unwrap();
        for text in [cluster.to_string(), audit.to_string(), stored] {
            assert!(!text.contains(token), "{text}");
        }
        let browser = app.browser_as("admin", ADMIN_PASSWORD).await;
        let (_, page) = browser.get(&format!("/admin/clusters/{id}")).await;
        assert!(page.contains("with a bearer token") && !page.contains(token));

        // Cleared token, then no Prometheus at all.
        let (s, v) = admin
            .put(&path, json!({"url": fake.url, "clear_token": true}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["has_prometheus_token"], false);
        let (s, v) = admin.delete(&path).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["prometheus_url"], Value::Null);
        let (s, _) = admin.post(&test, json!({})).await;
        assert_eq!(s, StatusCode::CONFLICT);

        // The page sets and tests it too.
        fake.answer("ok");
        let (s, _, _) = browser
            .submit(
                &format!("/admin/clusters/{id}/prometheus"),
                &[("url", fake.url.as_str()), ("token", "page-token")],
            )
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let (s, _, location) = browser
            .submit(&format!("/admin/clusters/{id}/prometheus/test"), &[])
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let (_, page) = browser.get(&location.unwrap()).await;
        assert!(
            page.contains("The Prometheus of prod answers: 1+1 = 2."),
            "{page}"
        );
        assert_eq!(
            fake.authorization.lock().unwrap().as_deref(),
            Some("Bearer page-token")
        );
    }
);
