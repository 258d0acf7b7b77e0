//! The simulated OpenKruise Rollout: steps, pauses, both workload modes,
//! traffic routing, completion and rollback, driven pass by pass.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::controller::{Context, ControllerState, run_once};
use super::kinds::Kind;
use super::kruise::{self, CANARY_DEPLOYMENT, IN_PROGRESSING, STABLE_REVISION};
use super::kubelet;
use super::store::{Part, Store};

const READY: Duration = Duration::from_secs(5);

struct Harness {
    store: Store,
    state: ControllerState,
    now: Instant,
    /// Image substrings whose pods never become ready.
    never_ready: Vec<String>,
}

impl Harness {
    /// `prod/web` at `web:1`, 4 pods, rolled out; the Rollout definition
    /// installed.
    fn new() -> Harness {
        let mut store = Store::new();
        store
            .create(
                Kind::Namespace,
                "",
                json!({"metadata": {"name": "prod"}}),
                false,
            )
            .unwrap();
        kruise::install(&mut store);
        let mut h = Harness {
            store,
            state: ControllerState::default(),
            now: Instant::now(),
            never_ready: Vec::new(),
        };
        let d = json!({
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 4,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "app", "image": "web:1"}]}}
            }
        });
        h.store.create(Kind::Deployment, "prod", d, false).unwrap();
        h.settle();
        assert_eq!(h.images(), ["web:1"; 4]);
        h
    }

    fn rollout_kind(&self) -> Kind {
        kruise::rollout_kind(&self.store).expect("the definition is installed")
    }

    fn create_rollout(&mut self, canary: Value) {
        let rollout = json!({
            "apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout",
            "metadata": {"name": "web"},
            "spec": {
                "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "strategy": {"canary": canary},
            }
        });
        let kind = self.rollout_kind();
        self.store.create(kind, "prod", rollout, false).unwrap();
        self.run();
    }

    /// A client's write of the image (through the webhook).
    fn set_image(&mut self, image: &str) {
        let mut d = self.object(Kind::Deployment, "web");
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
        self.store
            .update(Kind::Deployment, "prod", "web", d, Part::Main, false)
            .unwrap();
        self.run();
    }

    /// Sets the Rollout's `spec.strategy.paused`.
    fn pause_rollout(&mut self, paused: bool) {
        let kind = self.rollout_kind();
        let mut r = self.object(kind, "web");
        r["spec"]["strategy"]["paused"] = json!(paused);
        self.store
            .update(kind, "prod", "web", r, Part::Main, false)
            .unwrap();
        self.run();
    }

    /// What `kubectl-kruise rollout approve` does: the status patch.
    fn approve(&mut self) {
        let kind = self.rollout_kind();
        let mut r = self.object(kind, "web");
        assert_eq!(
            r["status"]["canaryStatus"]["currentStepState"],
            "StepPaused"
        );
        r["status"]["canaryStatus"]["currentStepState"] = json!("StepReady");
        self.store
            .update(kind, "prod", "web", r, Part::Status, false)
            .unwrap();
        self.run();
    }

    fn object(&self, kind: Kind, name: &str) -> Value {
        self.store
            .get(kind, "prod", name)
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn status(&self) -> Value {
        self.object(self.rollout_kind(), "web")["status"].clone()
    }

    /// (step, state) of the canary.
    fn step(&self) -> (i64, String) {
        let c = &self.status()["canaryStatus"];
        (
            c["currentStepIndex"].as_i64().unwrap_or(0),
            c["currentStepState"].as_str().unwrap_or_default().into(),
        )
    }

    fn run(&mut self) {
        let ctx = Context {
            now: self.now,
            ready_delay: READY,
            never_ready: &self.never_ready,
        };
        run_once(&mut self.store, &mut self.state, &ctx);
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.run();
    }

    /// Lets pods become ready.
    fn settle(&mut self) {
        for _ in 0..4 {
            self.advance(READY);
        }
    }

    /// The images of the namespace's pods, sorted.
    fn images(&self) -> Vec<String> {
        let mut images: Vec<String> = self
            .store
            .list(Kind::Pod, Some("prod"))
            .into_iter()
            .map(|v| serde_json::from_value::<Pod>(v.clone()).unwrap())
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .flat_map(|p| kubelet::images(&p))
            .collect();
        images.sort();
        images
    }

    fn deployment(&self) -> Deployment {
        serde_json::from_value(self.object(Kind::Deployment, "web")).unwrap()
    }

    fn deployments(&self) -> Vec<String> {
        self.store
            .list(Kind::Deployment, Some("prod"))
            .into_iter()
            .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    }
}

fn paused(h: &Harness) -> bool {
    h.deployment().spec.paused == Some(true)
}

fn condition(status: &Value, type_: &str) -> (String, String) {
    let c = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition: {status}"));
    (
        c["status"].as_str().unwrap().into(),
        c["reason"].as_str().unwrap().into(),
    )
}

fn step(n: i64, state: &str) -> (i64, String) {
    (n, state.to_string())
}

#[test]
fn a_partition_canary_pauses_at_each_step_until_approved_then_completes() {
    let mut h = Harness::new();
    h.create_rollout(json!({"steps": [
        {"replicas": 1},
        {"replicas": "50%"},
        {"replicas": "100%", "pause": {"duration": 0}},
    ]}));
    assert_eq!(h.status()["phase"], "Healthy");

    h.set_image("web:2");
    let d = h.deployment();
    assert!(paused(&h), "the webhook pauses the Deployment");
    let annotations = d.metadata.annotations.unwrap();
    assert_eq!(annotations[IN_PROGRESSING], r#"{"rolloutName":"web"}"#);
    assert!(d.metadata.labels.unwrap().contains_key(STABLE_REVISION));
    assert_eq!(h.status()["phase"], "Progressing");
    assert_eq!(h.step(), step(1, "StepUpgrade"), "waits for the pod");

    h.settle();
    assert_eq!(h.step(), step(1, "StepPaused"));
    assert_eq!(h.images(), ["web:1", "web:1", "web:1", "web:2"]);
    let status = h.status();
    assert_eq!(status["canaryStatus"]["canaryReplicas"], 1);
    assert_eq!(status["canaryStatus"]["canaryReadyReplicas"], 1);
    assert_eq!(status["currentStepIndex"], 1);
    assert_eq!(status["currentStepState"], "StepPaused");
    assert_eq!(
        condition(&status, "Progressing"),
        ("True".into(), "InRolling".into())
    );
    // Without an approval, nothing moves.
    h.settle();
    assert_eq!(h.step(), step(1, "StepPaused"));

    h.approve();
    h.settle();
    assert_eq!(h.step(), step(2, "StepPaused"));
    assert_eq!(h.images(), ["web:1", "web:1", "web:2", "web:2"]);
    assert!(paused(&h));

    h.approve();
    h.settle();
    let status = h.status();
    assert_eq!(status["phase"], "Healthy", "{status}");
    assert_eq!(
        condition(&status, "Succeeded"),
        ("True".into(), "Completed".into())
    );
    assert_eq!(
        condition(&status, "Progressing"),
        ("False".into(), "Completed".into())
    );
    assert_eq!(h.images(), ["web:2"; 4]);
    let d = h.deployment();
    assert_eq!(d.spec.paused, None, "resumed");
    assert!(!d.metadata.annotations.unwrap().contains_key(IN_PROGRESSING));
    assert!(!d.metadata.labels.unwrap().contains_key(STABLE_REVISION));
}

/// A canary of `web:2` whose first step pauses for 60 s, waiting there.
fn at_a_timed_pause() -> Harness {
    let mut h = Harness::new();
    h.create_rollout(json!({"steps": [
        {"replicas": 1, "pause": {"duration": 60}},
        {"replicas": "100%", "pause": {"duration": 0}},
    ]}));
    h.set_image("web:2");
    h.settle();
    assert_eq!(h.step(), step(1, "StepPaused"));
    h
}

#[test]
fn a_timed_pause_moves_on_by_itself_after_its_duration() {
    let mut h = at_a_timed_pause();
    assert!(
        h.status()["message"]
            .as_str()
            .unwrap()
            .contains("wait duration(60 seconds)")
    );
    h.advance(Duration::from_secs(30));
    assert_eq!(h.step(), step(1, "StepPaused"), "not before its time");
    h.advance(Duration::from_secs(30));
    h.settle();
    assert_eq!(h.status()["phase"], "Healthy");
    assert_eq!(h.images(), ["web:2"; 4]);
}

#[test]
fn a_paused_rollout_takes_no_step_not_even_when_a_timed_pause_is_over() {
    let mut h = at_a_timed_pause();
    h.pause_rollout(true);
    h.advance(Duration::from_secs(120));
    h.settle();
    assert_eq!(
        h.step(),
        step(1, "StepPaused"),
        "its time is over, but paused"
    );
    let progressing = h.status()["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .cloned()
        .unwrap();
    assert_eq!(progressing["reason"], "Paused");
    h.pause_rollout(false);
    h.settle();
    assert_eq!(h.status()["phase"], "Healthy", "resumed: it goes on");
    assert_eq!(h.images(), ["web:2"; 4]);
}

#[test]
fn an_extra_canary_deployment_runs_the_new_pods_and_is_deleted_at_the_end() {
    let mut h = Harness::new();
    h.create_rollout(json!({
        "enableExtraWorkloadForCanary": true,
        "steps": [{"replicas": 1}, {"replicas": "100%", "pause": {"duration": 0}}],
    }));
    h.set_image("web:2");
    h.settle();
    assert_eq!(h.step(), step(1, "StepPaused"));
    let names = h.deployments();
    assert_eq!(names.len(), 2, "{names:?}");
    let canary = names.iter().find(|n| *n != "web").unwrap().clone();
    assert!(canary.starts_with("web-"), "{canary}");
    let c = h.object(Kind::Deployment, &canary);
    assert_eq!(c["metadata"]["labels"][CANARY_DEPLOYMENT], "web");
    assert_eq!(c["spec"]["replicas"], 1);
    // The stable Deployment keeps its four pods.
    assert_eq!(h.images(), ["web:1", "web:1", "web:1", "web:1", "web:2"]);

    h.approve();
    h.settle();
    assert_eq!(h.status()["phase"], "Healthy");
    assert_eq!(h.deployments(), ["web"], "the canary Deployment is gone");
    assert_eq!(h.images(), ["web:2"; 4]);
}

#[test]
fn nginx_routing_sends_the_header_then_the_weight_to_the_canary_service() {
    let mut h = Harness::new();
    h.store
        .create(
            Kind::Service,
            "prod",
            json!({"metadata": {"name": "web"},
                   "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
            false,
        )
        .unwrap();
    let rule = json!([{"host": "shop.example", "http": {"paths": [{"path": "/", "pathType": "Prefix",
        "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]);
    h.store
        .create(
            Kind::Ingress,
            "prod",
            json!({"metadata": {"name": "web"},
                   "spec": {"ingressClassName": "nginx", "rules": rule}}),
            false,
        )
        .unwrap();
    h.create_rollout(json!({
        "steps": [
            {"replicas": 1, "matches": [{"headers": [{"name": "x-canary", "value": "yes", "type": "Exact"}]}]},
            {"replicas": 2, "traffic": "20%"},
            {"replicas": "100%", "pause": {"duration": 0}},
        ],
        "trafficRoutings": [{"service": "web", "ingress": {"classType": "nginx", "name": "web"}}],
    }));
    h.set_image("web:2");
    h.settle();
    assert_eq!(h.step(), step(1, "StepPaused"));
    let revision = h.status()["canaryStatus"]["canaryRevision"].clone();
    let stable = h.status()["canaryStatus"]["stableRevision"].clone();
    let service = h.object(Kind::Service, "web-canary");
    assert_eq!(service["spec"]["selector"]["pod-template-hash"], revision);
    assert_eq!(service["spec"]["selector"]["app"], "web");
    let stable_service = h.object(Kind::Service, "web");
    assert_eq!(
        stable_service["spec"]["selector"]["pod-template-hash"],
        stable
    );
    let ingress = h.object(Kind::Ingress, "web-canary");
    let a = &ingress["metadata"]["annotations"];
    assert_eq!(a["nginx.ingress.kubernetes.io/canary"], "true");
    assert_eq!(
        a["nginx.ingress.kubernetes.io/canary-by-header"],
        "x-canary"
    );
    assert_eq!(
        a["nginx.ingress.kubernetes.io/canary-by-header-value"],
        "yes"
    );
    assert_eq!(a.get("nginx.ingress.kubernetes.io/canary-weight"), None);
    assert_eq!(
        ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
        "web-canary"
    );

    h.approve();
    h.settle();
    assert_eq!(h.step(), step(2, "StepPaused"));
    let a = h.object(Kind::Ingress, "web-canary")["metadata"]["annotations"].clone();
    assert_eq!(a["nginx.ingress.kubernetes.io/canary-weight"], "20");
    assert_eq!(a.get("nginx.ingress.kubernetes.io/canary-by-header"), None);

    h.approve();
    h.settle();
    assert_eq!(h.status()["phase"], "Healthy");
    assert_eq!(h.object(Kind::Ingress, "web-canary"), Value::Null);
    assert_eq!(h.object(Kind::Service, "web-canary"), Value::Null);
    assert_eq!(
        h.object(Kind::Service, "web")["spec"]["selector"],
        json!({"app": "web"}),
        "the stable Service selects every pod again"
    );
}

#[test]
fn restoring_the_template_mid_canary_rolls_back_directly() {
    for extra in [false, true] {
        let mut h = Harness::new();
        h.create_rollout(json!({
            "enableExtraWorkloadForCanary": extra,
            "steps": [{"replicas": 2}, {"replicas": "100%"}],
        }));
        h.set_image("web:2");
        h.settle();
        assert_eq!(h.step(), step(1, "StepPaused"));
        assert!(h.images().contains(&"web:2".to_string()));

        h.set_image("web:1");
        h.settle();
        let status = h.status();
        assert_eq!(status["phase"], "Healthy", "{status}");
        assert_eq!(
            condition(&status, "Succeeded"),
            ("False".into(), "Canceled".into())
        );
        assert_eq!(h.images(), ["web:1"; 4], "extra workload: {extra}");
        assert_eq!(h.deployments(), ["web"]);
        assert_eq!(h.deployment().spec.paused, None);
    }
}

#[test]
fn a_deployment_without_a_rollout_rolls_as_usual() {
    let mut h = Harness::new();
    h.set_image("web:2");
    assert!(!paused(&h));
    h.settle();
    assert_eq!(h.images(), ["web:2"; 4]);
}

/// The Deployment's `Progressing` condition reason.
fn progressing(h: &Harness) -> String {
    h.deployment()
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_.as_deref() == Some("Progressing"))
        .and_then(|c| c.reason)
        .unwrap_or_default()
}

#[test]
fn a_canary_stuck_before_its_first_pause_rolls_back_within_the_progress_deadline() {
    let mut h = Harness::new();
    let mut d = h.object(Kind::Deployment, "web");
    // Longer than a pod takes to start (5 s), shorter than the canary waits.
    d["spec"]["progressDeadlineSeconds"] = json!(8);
    h.store
        .update(Kind::Deployment, "prod", "web", d, Part::Main, false)
        .unwrap();
    h.settle();
    h.create_rollout(json!({"steps": [{"replicas": 1}, {"replicas": "100%"}]}));
    h.never_ready.push("web:2".into());
    h.set_image("web:2");
    // Paused by Kruise, the Deployment does not time out however long the
    // canary pod takes.
    for _ in 0..30 {
        h.advance(Duration::from_millis(500));
        assert_ne!(
            h.step(),
            step(1, "StepPaused"),
            "the canary pod is not ready"
        );
        assert_eq!(progressing(&h), "DeploymentPaused");
    }
    // Restored: Kruise rolls back directly, and the Deployment counts its
    // progress deadline from the resume, not from before the pause.
    h.set_image("web:1");
    for _ in 0..60 {
        h.advance(Duration::from_millis(250));
        assert_ne!(progressing(&h), "ProgressDeadlineExceeded");
    }
    assert_eq!(progressing(&h), "NewReplicaSetAvailable");
    assert_eq!(h.images(), ["web:1"; 4]);
}
