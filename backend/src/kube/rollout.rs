//! OpenKruise Rollout (`rollouts.kruise.io/v1beta1`) for canary stages:
//! whether a cluster serves it, the Rollout a stage's plan becomes, reading
//! one back as what Rollway needs of it ([`RolloutView`]), and approving a
//! paused step the way `kubectl-kruise rollout approve` does — a JSON merge
//! patch of `status.canaryStatus.currentStepState` to `StepReady` on the
//! status subresource, only while the Rollout is paused on that step (the
//! patch carries the resourceVersion it was read at, so two approvals of
//! one pause make one patch and a 409).

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Resource;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{ClusterClient, KubeError, Target};
use crate::domain::release_item::Canary;

pub const GROUP: &str = "rollouts.kruise.io";
pub const VERSION: &str = "v1beta1";
pub const API_VERSION: &str = "rollouts.kruise.io/v1beta1";
/// The label on Rollouts Rollway made (and may change).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "rollway");

/// Kruise's states of a canary step.
pub const STEP_PAUSED: &str = "StepPaused";
pub const STEP_READY: &str = "StepReady";
pub const COMPLETED: &str = "Completed";

pub(super) fn resource() -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: API_VERSION.into(),
        kind: "Rollout".into(),
        plural: "rollouts".into(),
    }
}

/// Where a canary's traffic goes through: the app's Service and (nginx)
/// Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    pub service: String,
    pub ingress: String,
}

impl Routing {
    /// Where `canary`'s traffic goes through: the app's `service` and
    /// `ingress`; `Ok(None)` for a plan of replica counts, which routes no
    /// traffic. A plan that routes traffic on an app without them is
    /// refused (the message says so).
    pub fn of(
        canary: &Canary,
        app: &str,
        service: Option<&str>,
        ingress: Option<&str>,
    ) -> Result<Option<Routing>, String> {
        if !canary.routes_traffic() {
            return Ok(None);
        }
        match (service, ingress) {
            (Some(service), Some(ingress)) => Ok(Some(Routing {
                service: service.to_string(),
                ingress: ingress.to_string(),
            })),
            _ => Err(format!(
                "its steps shift traffic (a weight or a header), but app {app} names no Service \
                 and Ingress to route it through: name them on the app, or use replica counts only"
            )),
        }
    }
}

/// The Rollout `spec` of a canary stage on Deployment `deployment`: its
/// steps (a header match first, as a step of its own with the first
/// step's pods, when the plan has one), each pausing for its seconds or
/// for an owner; nginx routing through `routing` when given.
pub fn spec(deployment: &str, canary: &Canary, routing: Option<&Routing>) -> Value {
    let mut steps = Vec::new();
    let first_replicas = canary.steps.first().map_or(json!(1), |s| match s.replicas {
        Some(r) => json!(r),
        None => json!(format!("{}%", s.weight.unwrap_or(1))),
    });
    if let Some(header) = &canary.header_match {
        steps.push(json!({
            "replicas": first_replicas,
            "matches": [{"headers": [{"name": header.name, "value": header.value, "type": "Exact"}]}],
            "pause": {},
        }));
    }
    for s in &canary.steps {
        let mut step = match (s.weight, s.replicas) {
            (Some(w), _) => json!({"traffic": format!("{w}%"), "replicas": format!("{w}%")}),
            (None, Some(r)) => json!({"replicas": r}),
            (None, None) => json!({}),
        };
        step["pause"] = match s.pause_seconds {
            Some(seconds) => json!({"duration": seconds}),
            None => json!({}),
        };
        steps.push(step);
    }
    let mut canary_spec = json!({"steps": steps});
    if let Some(r) = routing {
        canary_spec["trafficRoutings"] = json!([{
            "service": r.service,
            "ingress": {"classType": "nginx", "name": r.ingress},
            "gracePeriodSeconds": 0,
        }]);
    }
    json!({
        "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
        "strategy": {"canary": canary_spec},
        // A rollback after a finished canary disables the Rollout (see
        // `ClusterClient::disable_rollout`); the next canary enables it.
        "disabled": false,
    })
}

/// What Rollway reads of a Rollout.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RolloutView {
    pub name: String,
    pub resource_version: String,
    pub generation: i64,
    pub observed_generation: i64,
    pub managed_by_rollway: bool,
    /// The Deployment it controls.
    pub workload: String,
    pub spec: Value,
    pub phase: String,
    pub message: String,
    /// 1-based; 0 before the first step.
    pub step: u32,
    pub step_state: String,
    pub canary_revision: String,
    pub stable_revision: String,
    pub canary_replicas: i64,
    pub canary_ready_replicas: i64,
    /// The `Progressing` condition's reason (`InRolling`, `Finalising`,
    /// `Cancelling`, `Completed`, …).
    pub progressing: String,
    /// The `Succeeded` condition's status, once there is one.
    pub succeeded: Option<bool>,
    /// `spec.disabled`: Kruise leaves the workload alone.
    pub disabled: bool,
    /// `spec.strategy.paused`: Kruise takes no step.
    pub paused: bool,
}

impl RolloutView {
    pub fn of(object: &DynamicObject) -> RolloutView {
        let data = &object.data;
        let status = &data["status"];
        let canary = &status["canaryStatus"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let condition = |type_: &str| {
            status["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
                .cloned()
        };
        RolloutView {
            name: object.metadata.name.clone().unwrap_or_default(),
            resource_version: object.metadata.resource_version.clone().unwrap_or_default(),
            generation: object.metadata.generation.unwrap_or(0),
            observed_generation: status["observedGeneration"].as_i64().unwrap_or(0),
            managed_by_rollway: object
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MANAGED_BY.0))
                .is_some_and(|v| v == MANAGED_BY.1),
            workload: text(&data["spec"]["workloadRef"]["name"]),
            spec: data["spec"].clone(),
            phase: text(&status["phase"]),
            message: text(&status["message"]),
            step: canary["currentStepIndex"]
                .as_u64()
                .or_else(|| status["currentStepIndex"].as_u64())
                .unwrap_or(0) as u32,
            step_state: text(if canary.is_object() {
                &canary["currentStepState"]
            } else {
                &status["currentStepState"]
            }),
            canary_revision: text(&canary["canaryRevision"]),
            stable_revision: text(&canary["stableRevision"]),
            canary_replicas: canary["canaryReplicas"].as_i64().unwrap_or(0),
            canary_ready_replicas: canary["canaryReadyReplicas"].as_i64().unwrap_or(0),
            progressing: condition("Progressing")
                .map(|c| text(&c["reason"]))
                .unwrap_or_default(),
            succeeded: condition("Succeeded").map(|c| c["status"] == "True"),
            disabled: data["spec"]["disabled"] == true,
            paused: data["spec"]["strategy"]["paused"] == true,
        }
    }

    /// Kruise has read the current spec.
    pub fn observed(&self) -> bool {
        self.observed_generation >= self.generation
    }

    /// Paused on `step`, waiting for an approval or its time.
    pub fn paused_at(&self, step: u32) -> bool {
        self.phase == "Progressing" && self.step == step && self.step_state == STEP_PAUSED
    }
}

impl ClusterClient {
    /// Whether the cluster serves `rollouts.kruise.io/v1beta1` (OpenKruise
    /// Rollout is installed).
    pub async fn serves_rollouts(&self) -> Result<bool, KubeError> {
        let found = self
            .call(
                Target::new("get", "apiresources"),
                &format!(
                    "asking cluster {} whether it serves {API_VERSION}",
                    self.cluster
                ),
                || self.client.list_api_group_resources(API_VERSION),
            )
            .await;
        match found {
            Ok(list) => Ok(list.resources.iter().any(|r| r.name == "rollouts")),
            Err(KubeError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// What of `routing` is not in `namespace` ("Service web", "Ingress
    /// web"): empty when both are there. A cluster that does not let
    /// Rollway read them answers the error.
    pub async fn missing_routing(
        &self,
        namespace: &str,
        routing: &Routing,
    ) -> Result<Vec<String>, KubeError> {
        let mut missing = Vec::new();
        if !self
            .exists::<Service>("services", namespace, &routing.service)
            .await?
        {
            missing.push(format!("Service {}", routing.service));
        }
        if !self
            .exists::<Ingress>("ingresses", namespace, &routing.ingress)
            .await?
        {
            missing.push(format!("Ingress {}", routing.ingress));
        }
        Ok(missing)
    }

    /// Whether the `K` (`plural`) named `name` is in `namespace`.
    async fn exists<K>(
        &self,
        plural: &'static str,
        namespace: &str,
        name: &str,
    ) -> Result<bool, KubeError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        let found = self
            .call(
                Target::new("get", plural).within(namespace).named(name),
                &format!("reading {} {namespace}/{name}", K::kind(&())),
                || api.get_opt(name),
            )
            .await?;
        Ok(found.is_some())
    }

    fn rollouts(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &resource())
    }

    /// Rollout `namespace/name`, or `None` when it does not exist.
    pub async fn rollout(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<RolloutView>, KubeError> {
        let api = self.rollouts(namespace);
        let found = self
            .call(
                Target::new("get", "rollouts").within(namespace).named(name),
                &format!("reading Rollout {namespace}/{name}"),
                || api.get_opt(name),
            )
            .await?;
        Ok(found.as_ref().map(RolloutView::of))
    }

    /// Creates Rollout `namespace/name` with `spec` (labelled as Rollway's),
    /// or sets the spec of the one there (read at `existing`, a 409 when
    /// it changed since).
    pub async fn put_rollout(
        &self,
        namespace: &str,
        name: &str,
        spec: &Value,
        existing: Option<&RolloutView>,
    ) -> Result<RolloutView, KubeError> {
        let api = self.rollouts(namespace);
        let written = match existing {
            None => {
                let object: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": API_VERSION, "kind": "Rollout",
                    "metadata": {"name": name, "namespace": namespace,
                                 "labels": {MANAGED_BY.0: MANAGED_BY.1}},
                    "spec": spec,
                }))
                .map_err(|e| KubeError::Refused(format!("building Rollout {name}: {e}")))?;
                let params = PostParams::default();
                self.call(
                    Target::new("create", "rollouts")
                        .within(namespace)
                        .named(name),
                    &format!("creating Rollout {namespace}/{name}"),
                    || api.create(&params, &object),
                )
                .await?
            }
            Some(view) => {
                let patch = json!({
                    "metadata": {"resourceVersion": view.resource_version},
                    "spec": spec,
                });
                let params = PatchParams::default();
                let patch = Patch::Merge(&patch);
                self.call(
                    Target::new("patch", "rollouts")
                        .within(namespace)
                        .named(name),
                    &format!("updating Rollout {namespace}/{name}"),
                    || api.patch(name, &params, &patch),
                )
                .await?
            }
        };
        Ok(RolloutView::of(&written))
    }

    /// Disables the Rollout `view` read (its spec's `disabled`), so that a
    /// change of the Deployment's template rolls natively instead of as a
    /// new canary: what a rollback after a finished canary needs.
    pub async fn disable_rollout(
        &self,
        namespace: &str,
        view: &RolloutView,
    ) -> Result<RolloutView, KubeError> {
        self.put_rollout(
            namespace,
            &view.name,
            &json!({"disabled": true}),
            Some(view),
        )
        .await
    }

    /// Pauses or resumes the Rollout `view` read (its spec's
    /// `strategy.paused`): while paused, Kruise takes no step, a timed
    /// pause's end included.
    pub async fn set_rollout_paused(
        &self,
        namespace: &str,
        view: &RolloutView,
        paused: bool,
    ) -> Result<RolloutView, KubeError> {
        self.put_rollout(
            namespace,
            &view.name,
            &json!({"strategy": {"paused": paused}}),
            Some(view),
        )
        .await
    }

    /// Approves the step `view` is paused on: its state becomes
    /// `StepReady`, only if the Rollout is still as `view` read it (a 409
    /// otherwise).
    pub async fn approve_step(
        &self,
        namespace: &str,
        view: &RolloutView,
    ) -> Result<RolloutView, KubeError> {
        let api = self.rollouts(namespace);
        let patch = json!({
            "metadata": {"resourceVersion": view.resource_version},
            "status": {"canaryStatus": {"currentStepState": STEP_READY}},
        });
        let params = PatchParams::default();
        let patch = Patch::Merge(&patch);
        let name = view.name.as_str();
        let written = self
            .call(
                Target::new("patch", "rollouts/status")
                    .within(namespace)
                    .named(name),
                &format!("approving step {} of Rollout {namespace}/{name}", view.step),
                || api.patch_status(name, &params, &patch),
            )
            .await?;
        Ok(RolloutView::of(&written))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::release_item::{CanaryStep, HeaderMatch};

    fn step(weight: Option<u32>, replicas: Option<u32>, pause: Option<u32>) -> CanaryStep {
        CanaryStep {
            weight,
            replicas,
            pause_seconds: pause,
        }
    }

    #[test]
    fn a_plan_becomes_kruise_steps_with_its_pauses() {
        let canary = Canary {
            steps: vec![
                step(None, Some(1), None),
                step(Some(20), None, Some(300)),
                step(Some(100), None, Some(0)),
            ],
            header_match: None,
        };
        let spec = spec("web", &canary, None);
        assert_eq!(spec["workloadRef"]["name"], "web");
        assert_eq!(
            spec["strategy"]["canary"]["steps"],
            json!([
                {"replicas": 1, "pause": {}},
                {"traffic": "20%", "replicas": "20%", "pause": {"duration": 300}},
                {"traffic": "100%", "replicas": "100%", "pause": {"duration": 0}},
            ])
        );
        assert_eq!(spec["strategy"]["canary"].get("trafficRoutings"), None);
        assert_eq!(canary.step_count(), 3);
    }

    #[test]
    fn a_header_match_is_a_first_step_of_its_own_through_the_apps_ingress() {
        let canary = Canary {
            steps: vec![step(None, Some(2), None), step(Some(50), None, None)],
            header_match: Some(HeaderMatch {
                name: "x-canary".into(),
                value: "yes".into(),
            }),
        };
        let routing = Routing {
            service: "web".into(),
            ingress: "web-ing".into(),
        };
        let spec = spec("web", &canary, Some(&routing));
        let canary_spec = &spec["strategy"]["canary"];
        assert_eq!(
            canary_spec["steps"][0],
            json!({"replicas": 2, "pause": {},
                   "matches": [{"headers": [{"name": "x-canary", "value": "yes", "type": "Exact"}]}]})
        );
        assert_eq!(canary_spec["steps"][1]["replicas"], 2);
        assert_eq!(
            canary_spec["trafficRoutings"],
            json!([{"service": "web", "ingress": {"classType": "nginx", "name": "web-ing"},
                    "gracePeriodSeconds": 0}])
        );
        assert_eq!(canary.step_count(), 3);
    }

    #[test]
    fn a_rollout_is_read_as_its_step_and_conditions() {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": API_VERSION, "kind": "Rollout",
            "metadata": {"name": "web", "generation": 2, "resourceVersion": "41",
                         "labels": {"app.kubernetes.io/managed-by": "rollway"}},
            "spec": {"workloadRef": {"kind": "Deployment", "name": "web"}},
            "status": {
                "observedGeneration": 2, "phase": "Progressing", "message": "m",
                "canaryStatus": {"currentStepIndex": 2, "currentStepState": "StepPaused",
                                 "canaryRevision": "c", "stableRevision": "s",
                                 "canaryReplicas": 2, "canaryReadyReplicas": 1},
                "conditions": [{"type": "Progressing", "status": "True", "reason": "InRolling"}],
            }
        }))
        .unwrap();
        let view = RolloutView::of(&object);
        assert!(view.managed_by_rollway && view.observed());
        assert!(view.paused_at(2) && !view.paused_at(1));
        assert_eq!((view.canary_replicas, view.canary_ready_replicas), (2, 1));
        assert_eq!(view.progressing, "InRolling");
        assert_eq!(view.succeeded, None);
        assert_eq!(view.workload, "web");
    }
}
