//! Verification (issue 15), what it stands on: a real Prometheus scraping
//! the simulated cluster's synthetic pod metrics, whose error ratio and
//! latency follow each pod's image tag.

use std::collections::HashMap;
use std::time::Duration;

use rollway::sim::{Serving, Sim};

use crate::common::eventually;
use crate::common::prometheus::Prometheus;
use crate::engine::sim_config;

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
