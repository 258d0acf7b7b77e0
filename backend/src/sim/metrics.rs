//! Synthetic application metrics of the simulated pods, in Prometheus'
//! text exposition format, for a real Prometheus to scrape
//! (`GET /sim/metrics`): per Ready pod, a request counter by status code
//! (`http_requests_total`) and a latency histogram
//! (`http_request_duration_seconds`), labelled with the pod's namespace,
//! Deployment, name and pod-template hash.
//!
//! A pod serves [`REQUEST_RATE`] requests a second from the moment it
//! became Ready. What share fails (5xx) and how long a request takes follow
//! its image: a profile set with [`Faults::serve`](super::Faults::serve)
//! for an image pattern, else its tag — one ending `-bad` answers 20 % of
//! its requests with 500, one ending `-slow` takes 800 ms — else every
//! request succeeds in 40 ms.

use std::fmt::Write;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::Sim;
use super::kinds::Kind;

/// Requests a Ready pod serves per second.
pub const REQUEST_RATE: f64 = 10.0;

/// The histogram's bucket bounds, in seconds.
const BUCKETS: [f64; 8] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// How a pod's requests go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Serving {
    /// The share of requests answered 500 (0–1).
    pub error_ratio: f64,
    /// How long each request takes.
    pub latency: Duration,
}

impl Serving {
    pub const HEALTHY: Serving = Serving {
        error_ratio: 0.0,
        latency: Duration::from_millis(40),
    };

    /// What an image's tag says: `-bad` fails 20 %, `-slow` takes 800 ms.
    pub fn of_tag(image: &str) -> Serving {
        let name = image.rsplit('/').next().unwrap_or(image);
        let tag = name.split_once(':').map_or("", |(_, tag)| tag);
        if tag.ends_with("-bad") {
            Serving {
                error_ratio: 0.2,
                ..Serving::HEALTHY
            }
        } else if tag.ends_with("-slow") {
            Serving {
                latency: Duration::from_millis(800),
                ..Serving::HEALTHY
            }
        } else {
            Serving::HEALTHY
        }
    }
}

/// One pod's series.
#[derive(Debug, Clone, PartialEq)]
struct PodSeries {
    namespace: String,
    deployment: String,
    pod: String,
    hash: String,
    /// Seconds it has been Ready.
    serving_for: f64,
    serving: Serving,
}

/// The pods that serve now, with how long and how.
fn serving_pods(sim: &Sim, now: Timestamp) -> Vec<PodSeries> {
    let world = sim.world();
    let profiles = sim.faults().serving_profiles();
    let mut out = Vec::new();
    for value in world.store.list(Kind::Pod, None) {
        let Ok(pod) = serde_json::from_value::<Pod>(value.clone()) else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(ready_since) = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0)
        else {
            continue;
        };
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let hash = labels.get("pod-template-hash").cloned().unwrap_or_default();
        // Pod → ReplicaSet → Deployment, through their owners.
        let owner = |refs: &Option<Vec<_>>, kind: &str| -> Option<String> {
            refs.iter()
                .flatten()
                .find(
                    |o: &&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference| {
                        o.kind == kind
                    },
                )
                .map(|o| o.name.clone())
        };
        let deployment = owner(&pod.metadata.owner_references, "ReplicaSet")
            .and_then(|rs| world.store.get(Kind::ReplicaSet, &namespace, &rs).cloned())
            .and_then(|rs| serde_json::from_value::<ReplicaSet>(rs).ok())
            .and_then(|rs| owner(&rs.metadata.owner_references, "Deployment"))
            .unwrap_or_default();
        let image = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let serving = profiles
            .iter()
            .find(|(pattern, _)| image.contains(pattern.as_str()))
            .map_or_else(|| Serving::of_tag(&image), |(_, s)| *s);
        out.push(PodSeries {
            namespace,
            deployment,
            pod: pod.metadata.name.clone().unwrap_or_default(),
            hash,
            serving_for: now.duration_since(ready_since).as_secs_f64().max(0.0),
            serving,
        });
    }
    out.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
    out
}

/// The exposition of `pods`.
fn render(pods: &[PodSeries]) -> String {
    let mut out = String::new();
    out.push_str("# HELP http_requests_total Requests the pod served, by status code.\n");
    out.push_str("# TYPE http_requests_total counter\n");
    for p in pods {
        let (ok, failed) = counts(p);
        let labels = labels(p);
        let _ = writeln!(out, "http_requests_total{{{labels},code=\"200\"}} {ok}");
        let _ = writeln!(out, "http_requests_total{{{labels},code=\"500\"}} {failed}");
    }
    out.push_str(
        "# HELP http_request_duration_seconds How long the pod took to answer a request.\n",
    );
    out.push_str("# TYPE http_request_duration_seconds histogram\n");
    for p in pods {
        let (ok, failed) = counts(p);
        let total = ok + failed;
        let labels = labels(p);
        let latency = p.serving.latency.as_secs_f64();
        for bound in BUCKETS {
            let within = if latency <= bound { total } else { 0 };
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {within}"
            );
        }
        let _ = writeln!(
            out,
            "http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {total}"
        );
        let _ = writeln!(
            out,
            "http_request_duration_seconds_sum{{{labels}}} {}",
            total as f64 * latency
        );
        let _ = writeln!(
            out,
            "http_request_duration_seconds_count{{{labels}}} {total}"
        );
    }
    out
}

fn labels(p: &PodSeries) -> String {
    format!(
        "namespace=\"{}\",deployment=\"{}\",pod=\"{}\",pod_template_hash=\"{}\"",
        p.namespace, p.deployment, p.pod, p.hash
    )
}

/// Requests answered 200 and 500 so far.
fn counts(p: &PodSeries) -> (u64, u64) {
    let total = (p.serving_for * REQUEST_RATE).floor() as u64;
    let failed = (total as f64 * p.serving.error_ratio.clamp(0.0, 1.0)).floor() as u64;
    (total - failed, failed)
}

/// `GET /sim/metrics`.
pub fn exposition(sim: &Sim) -> String {
    render(&serving_pods(sim, Timestamp::now()))
}

/// The gauges the simulated cluster answers instant queries for (see
/// [`instant_query`]).
pub const QUERY_METRICS: [&str; 2] = ["sim_error_ratio", "sim_latency_seconds"];

/// An instant query against the simulated pods, for clusters without a
/// Prometheus (`rollway demo`): the answer of Prometheus' query API
/// (`/api/v1/query`) for a selector of one of two gauges per group of Ready
/// pods of one pod-template hash — `sim_error_ratio` (the share of their
/// requests answered 500) and `sim_latency_seconds` (how long a request
/// takes) — with `=` matchers on `namespace`, `deployment` and
/// `pod_template_hash`, e.g.
/// `sim_error_ratio{namespace="prod",pod_template_hash="7d9f"}`. Anything
/// else is answered with Prometheus' error envelope: this is not PromQL.
pub fn instant_query(sim: &Sim, query: &str) -> (u16, serde_json::Value) {
    let refuse = |why: String| {
        (
            400,
            serde_json::json!({"status": "error", "errorType": "bad_data", "error": why}),
        )
    };
    let query = query.trim();
    let (name, matchers) = match query.split_once('{') {
        Some((name, rest)) => match rest.strip_suffix('}') {
            Some(m) => (name.trim(), m),
            None => return refuse(format!("1:{}: unclosed selector", query.len())),
        },
        None => (query, ""),
    };
    if !QUERY_METRICS.contains(&name) {
        return refuse(format!(
            "the simulated cluster answers selectors of {} only, not '{name}'",
            QUERY_METRICS.join(" and ")
        ));
    }
    let mut wanted: Vec<(String, String)> = Vec::new();
    for matcher in matchers.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let Some((label, value)) = matcher.split_once('=') else {
            return refuse(format!("'{matcher}' is not a label matcher"));
        };
        let value = value.trim();
        let (label, value) = (label.trim(), value.trim_matches('"'));
        if label.ends_with('!') || value.starts_with('~') {
            return refuse(format!("only = matchers are answered, not '{matcher}'"));
        }
        if !["namespace", "deployment", "pod_template_hash"].contains(&label) {
            return refuse(format!("unknown label '{label}'"));
        }
        wanted.push((label.to_string(), value.to_string()));
    }
    let mut groups: std::collections::BTreeMap<(String, String, String), Vec<Serving>> =
        std::collections::BTreeMap::new();
    for p in serving_pods(sim, Timestamp::now()) {
        let of = |label: &str| match label {
            "namespace" => &p.namespace,
            "deployment" => &p.deployment,
            _ => &p.hash,
        };
        if wanted.iter().all(|(l, v)| of(l) == v) {
            groups
                .entry((p.namespace.clone(), p.deployment.clone(), p.hash.clone()))
                .or_default()
                .push(p.serving);
        }
    }
    let now = Timestamp::now().as_millisecond() as f64 / 1000.0;
    let result: Vec<serde_json::Value> = groups
        .into_iter()
        .map(|((namespace, deployment, hash), pods)| {
            let n = pods.len() as f64;
            let value = if name == "sim_error_ratio" {
                pods.iter().map(|s| s.error_ratio).sum::<f64>() / n
            } else {
                pods.iter().map(|s| s.latency.as_secs_f64()).sum::<f64>() / n
            };
            serde_json::json!({
                "metric": {"__name__": name, "namespace": namespace, "deployment": deployment,
                           "pod_template_hash": hash},
                "value": [now, value.to_string()],
            })
        })
        .collect();
    (
        200,
        serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": result}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(serving: Serving, seconds: f64) -> PodSeries {
        PodSeries {
            namespace: "prod".into(),
            deployment: "web".into(),
            pod: "web-abc-1".into(),
            hash: "abc".into(),
            serving_for: seconds,
            serving,
        }
    }

    #[test]
    fn instant_queries_answer_selectors_of_the_two_gauges_and_refuse_the_rest() {
        let sim = Sim::new(crate::sim::SimConfig::default());
        let (status, answer) = instant_query(&sim, r#"sim_error_ratio{namespace="prod"}"#);
        assert_eq!((status, answer["status"].as_str()), (200, Some("success")));
        assert_eq!(
            answer["data"]["result"],
            serde_json::json!([]),
            "no pod serves"
        );
        for bad in [
            "rate(http_requests_total[1m])",
            r#"sim_error_ratio{namespace=~"p.*"}"#,
            r#"sim_error_ratio{pod="x"}"#,
            r#"sim_error_ratio{namespace="prod""#,
        ] {
            let (status, answer) = instant_query(&sim, bad);
            assert_eq!(
                (status, answer["status"].as_str()),
                (400, Some("error")),
                "{bad}"
            );
            assert_eq!(answer["errorType"], "bad_data");
        }
    }

    #[test]
    fn tags_choose_how_a_pod_serves() {
        assert_eq!(
            Serving::of_tag("registry:5000/acme/web:v2"),
            Serving::HEALTHY
        );
        assert_eq!(Serving::of_tag("acme/web:v2-bad").error_ratio, 0.2);
        assert_eq!(
            Serving::of_tag("acme/web:v2-slow").latency,
            Duration::from_millis(800)
        );
        assert_eq!(Serving::of_tag("registry:5000-bad/web"), Serving::HEALTHY);
    }

    #[test]
    fn a_bad_pod_answers_a_fifth_with_500_and_counters_grow_with_time() {
        let bad = Serving::of_tag("web:v2-bad");
        let text = render(&[series(bad, 10.0)]);
        let labels =
            "namespace=\"prod\",deployment=\"web\",pod=\"web-abc-1\",pod_template_hash=\"abc\"";
        assert!(
            text.contains(&format!(
                "http_requests_total{{{labels},code=\"200\"}} 80\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "http_requests_total{{{labels},code=\"500\"}} 20\n"
            )),
            "{text}"
        );
        assert!(text.contains(&format!(
            "http_request_duration_seconds_bucket{{{labels},le=\"0.025\"}} 0\n"
        )));
        assert!(text.contains(&format!(
            "http_request_duration_seconds_bucket{{{labels},le=\"0.05\"}} 100\n"
        )));
        assert!(text.contains(&format!(
            "http_request_duration_seconds_count{{{labels}}} 100\n"
        )));
        let later = render(&[series(bad, 20.0)]);
        assert!(later.contains(&format!(
            "http_requests_total{{{labels},code=\"500\"}} 40\n"
        )));
        // Every line is a comment or `name{labels} value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(series.ends_with('}'), "{line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
