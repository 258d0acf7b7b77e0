//! OpenKruise Rollout (`rollouts.kruise.io/v1beta1`), as far as Rollway
//! uses it, following `openkruise/rollouts`: the workload webhook that
//! pauses a Deployment whose template changes under a Rollout, the Rollout
//! controller's canary steps (`StepUpgrade` → `StepTrafficRouting` →
//! `StepMetricsAnalysis` → `StepPaused` → `StepReady`, then the next step or
//! `Completed`), manual pauses (left by a status patch to `StepReady`, as
//! `kubectl-kruise rollout approve` does) and timed ones (`pause.duration`,
//! in the controller's time), both workload modes — partition style (the
//! Deployment stays paused; its `rollouts.kruise.io/deployment-strategy`
//! annotation's partition says how many pods run the new template, which
//! [`rollout_partition`] scales like Kruise's advanced Deployment
//! controller) and `enableExtraWorkloadForCanary` (a canary Deployment
//! `<name>-xxxxx` runs them) — nginx traffic routing (a canary Service and
//! Ingress with Kruise's annotations), finalising (canary objects removed,
//! the Deployment resumed and rolled natively) and the direct rollback of
//! a workload whose template goes back to the stable one.
//!
//! Kruise runs once installed ([`install`]: `rollway sim --kruise`, or a
//! test's `Sim::install_kruise`); a cluster that only has the definition
//! (applied by a client) serves Rollouts without acting on them.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::controller::{
    Context, ControllerState, get_typed, now_time, put, scaled_value, template_hash,
};
use super::crd;
use super::kinds::Kind;
use super::store::{Key, Part, Propagation, Store};

pub const GROUP: &str = "rollouts.kruise.io";
pub const VERSION: &str = "v1beta1";
pub const PLURAL: &str = "rollouts";
/// On a Deployment under a Rollout's control: `{"rolloutName": …}`.
pub const IN_PROGRESSING: &str = "rollouts.kruise.io/in-progressing";
/// On a partition-style Deployment: `{"rollingStyle": "Partition",
/// "partition": …}`.
pub const STRATEGY: &str = "rollouts.kruise.io/deployment-strategy";
/// Which BatchRelease controls the workload.
pub const CONTROL: &str = "batchrelease.rollouts.kruise.io/control-info";
/// On the Deployment: the pod-template-hash of the stable pods.
pub const STABLE_REVISION: &str = "rollouts.kruise.io/stable-revision";
/// On a canary Deployment: the name of the Deployment it is the canary of.
pub const CANARY_DEPLOYMENT: &str = "rollouts.kruise.io/canary-deployment";
const TEMPLATE_HASH: &str = "pod-template-hash";
const NGINX: &str = "nginx.ingress.kubernetes.io/";

/// Makes the cluster serve `rollouts.kruise.io` (v1alpha1 and v1beta1,
/// v1beta1 stored, a status subresource) as OpenKruise Rollout's chart
/// does.
pub fn install(store: &mut Store) {
    store.kruise = true;
    if rollout_kind(store).is_some() {
        return;
    }
    let definition: Value = serde_yaml::from_str(include_str!("kruise_rollouts_crd.yaml"))
        .expect("the Rollout definition parses");
    if let Err(e) = store.create(Kind::CustomResourceDefinition, "", definition, false) {
        tracing::warn!(error = %e, "the simulated Rollout definition was refused");
    }
}

/// The Rollout kind, while Kruise runs and its definition is installed.
pub fn rollout_kind(store: &Store) -> Option<Kind> {
    if !store.kruise {
        return None;
    }
    crd::resolve(store, GROUP, VERSION, PLURAL)
}

pub fn is_rollout(kind: Kind) -> bool {
    matches!(kind, Kind::Custom(c) if c.group() == GROUP && c.plural() == PLURAL)
}

// ------------------------------------------------------------------ spec

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RolloutSpec {
    workload_ref: WorkloadRef,
    strategy: Strategy,
    disabled: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WorkloadRef {
    kind: String,
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Strategy {
    canary: Option<Canary>,
    /// Kruise takes no step while it is set.
    paused: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Canary {
    steps: Vec<Step>,
    traffic_routings: Vec<TrafficRouting>,
    enable_extra_workload_for_canary: bool,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Step {
    replicas: Option<IntOrString>,
    traffic: Option<String>,
    matches: Vec<Match>,
    pause: Pause,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct Pause {
    duration: Option<u64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct Match {
    headers: Vec<HeaderMatch>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct HeaderMatch {
    name: String,
    value: String,
    #[serde(rename = "type")]
    type_: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TrafficRouting {
    service: String,
    ingress: Option<IngressRef>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct IngressRef {
    name: String,
}

impl Step {
    /// Pods of the new version this step wants: `replicas`, else the
    /// traffic share of the Deployment's pods (Kruise's default), rounded
    /// up, within 0..=total.
    fn canary_replicas(&self, total: i32) -> i32 {
        let wanted = match (&self.replicas, &self.traffic) {
            (Some(r), _) => scaled_value(Some(r), total, true),
            (None, Some(t)) => scaled_value(Some(&IntOrString::String(t.clone())), total, true),
            (None, None) => total,
        };
        wanted.clamp(0, total)
    }
}

// ----------------------------------------------------------------- webhook

fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// The Rollout (its kind and stored object) whose workload is Deployment
/// `name` in `namespace`.
fn rollout_of(store: &Store, namespace: &str, name: &str) -> Option<(Kind, Value)> {
    let kind = rollout_kind(store)?;
    store
        .list(kind, Some(namespace))
        .into_iter()
        .find(|r| {
            r.pointer("/spec/workloadRef/kind").and_then(Value::as_str) == Some("Deployment")
                && r.pointer("/spec/workloadRef/name").and_then(Value::as_str) == Some(name)
        })
        .map(|r| (kind, r.clone()))
}

/// The workload webhook, for a client's write of a Deployment: a template
/// change under an enabled Rollout pauses the Deployment and marks it in
/// progress (naming the stable pods' revision); while in progress, it
/// stays paused whatever the write says.
pub fn admit_deployment(store: &Store, existing: &Value, object: &mut Value) {
    let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let Some((_, rollout)) = rollout_of(store, namespace, name) else {
        return;
    };
    if rollout.pointer("/spec/disabled") == Some(&Value::Bool(true)) {
        return;
    }
    if annotation(existing, IN_PROGRESSING).is_some() {
        // Annotations the controller set are kept even when a client's
        // replacement leaves them out.
        for key in [IN_PROGRESSING, STRATEGY, CONTROL] {
            if let Some(v) = annotation(existing, key)
                && annotation(object, key).is_none()
            {
                object["metadata"]["annotations"][key] = v.into();
            }
        }
        object["spec"]["paused"] = true.into();
        return;
    }
    let replicas = object.pointer("/spec/replicas").and_then(Value::as_i64);
    if replicas == Some(0) || object.pointer("/spec/template") == existing.pointer("/spec/template")
    {
        return;
    }
    let uid = existing["metadata"]["uid"].as_str().unwrap_or_default();
    // The stable pods: those of the newest ReplicaSet with pods wanted.
    let stable = store
        .owned_by(uid, Kind::ReplicaSet)
        .into_iter()
        .filter_map(|rs| ReplicaSet::deserialize(rs).ok())
        .filter(|rs| rs.spec.replicas.unwrap_or(0) > 0)
        .max_by_key(super::controller::revision_of)
        .and_then(|rs| rs.metadata.labels?.get(TEMPLATE_HASH).cloned());
    let Some(stable) = stable else {
        return;
    };
    let rollout_name = rollout["metadata"]["name"].as_str().unwrap_or_default();
    if !object["metadata"]["labels"].is_object() {
        object["metadata"]["labels"] = json!({});
    }
    object["metadata"]["labels"][STABLE_REVISION] = stable.into();
    if !object["metadata"]["annotations"].is_object() {
        object["metadata"]["annotations"] = json!({});
    }
    object["metadata"]["annotations"][IN_PROGRESSING] =
        json!({"rolloutName": rollout_name}).to_string().into();
    object["spec"]["paused"] = true.into();
}

/// The partition a partition-style Deployment under a Rollout has: how
/// many of its pods run its template.
pub fn partition_of(d: &Deployment) -> Option<IntOrString> {
    let text = d.metadata.annotations.as_ref()?.get(STRATEGY)?;
    let strategy: Value = serde_json::from_str(text).ok()?;
    if strategy["rollingStyle"] != "Partition" {
        return None;
    }
    match &strategy["partition"] {
        Value::Number(n) => Some(IntOrString::Int(n.as_i64()? as i32)),
        Value::String(s) => Some(IntOrString::String(s.clone())),
        _ => Some(IntOrString::Int(0)),
    }
}

// -------------------------------------------------------------- controller

/// What the Rollout controller keeps besides the objects: when each
/// Rollout's current pause began (its step and revision with it).
#[derive(Default)]
pub struct KruiseState {
    pauses: HashMap<Key, (String, i64, Instant)>,
}

/// A Deployment changed: its Rollout (or, for a canary Deployment, the
/// Rollout of the Deployment it is the canary of) looks again.
pub fn workload_changed(store: &mut Store, key: &Key) {
    let Some(kind) = rollout_kind(store) else {
        return;
    };
    let canary_of = store
        .get(Kind::Deployment, &key.0, &key.1)
        .and_then(|d| d.pointer("/metadata/labels"))
        .and_then(|l| l.get(CANARY_DEPLOYMENT))
        .and_then(Value::as_str)
        .map(str::to_string);
    let workload = canary_of.as_deref().unwrap_or(&key.1);
    let keys: Vec<Key> = store
        .list(kind, Some(&key.0))
        .into_iter()
        .filter(|r| r.pointer("/spec/workloadRef/name").and_then(Value::as_str) == Some(workload))
        .filter_map(|r| Some((key.0.clone(), r["metadata"]["name"].as_str()?.to_string())))
        .collect();
    for k in keys {
        store.dirty.insert((kind, k));
    }
}

/// The steps' progress as kept in `status.canaryStatus`.
struct Progress {
    stable: String,
    canary: String,
    step: i64,
    state: String,
    replicas: i32,
    ready: i32,
    message: String,
    updated: Value,
}

impl Progress {
    fn read(status: &Value) -> Option<Progress> {
        let c = status.get("canaryStatus").filter(|c| c.is_object())?;
        let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
        Some(Progress {
            stable: text("stableRevision"),
            canary: text("canaryRevision"),
            step: c["currentStepIndex"].as_i64().unwrap_or(1),
            state: text("currentStepState"),
            replicas: c["canaryReplicas"].as_i64().unwrap_or(0) as i32,
            ready: c["canaryReadyReplicas"].as_i64().unwrap_or(0) as i32,
            message: text("message"),
            updated: c
                .get("lastUpdateTime")
                .cloned()
                .unwrap_or_else(|| json!(now_time())),
        })
    }

    fn to_json(&self, workload_generation: i64, steps: usize) -> Value {
        let next = if (self.step as usize) < steps {
            self.step + 1
        } else {
            -1
        };
        json!({
            "observedWorkloadGeneration": workload_generation,
            "stableRevision": self.stable,
            "canaryRevision": self.canary,
            "podTemplateHash": self.canary,
            "canaryReplicas": self.replicas,
            "canaryReadyReplicas": self.ready,
            "currentStepIndex": self.step,
            "nextStepIndex": next,
            "currentStepState": self.state,
            "finalisingStep": "",
            "message": self.message,
            "lastUpdateTime": self.updated,
        })
    }

    fn enter(&mut self, state: &str) {
        self.state = state.to_string();
        self.updated = json!(now_time());
    }
}

pub const STEP_UPGRADE: &str = "StepUpgrade";
pub const STEP_TRAFFIC_ROUTING: &str = "StepTrafficRouting";
pub const STEP_METRICS_ANALYSIS: &str = "StepMetricsAnalysis";
pub const STEP_PAUSED: &str = "StepPaused";
pub const STEP_READY: &str = "StepReady";
pub const COMPLETED: &str = "Completed";

/// Reconciles one Rollout.
pub fn sync_rollout(
    store: &mut Store,
    state: &mut ControllerState,
    ctx: &Context,
    kind: Kind,
    key: &Key,
) {
    if !store.kruise {
        return;
    }
    let Some(rollout) = store.get(kind, &key.0, &key.1).cloned() else {
        state.kruise.pauses.remove(key);
        return;
    };
    let spec = RolloutSpec::deserialize(&rollout["spec"]).unwrap_or_default();
    let canary = spec.strategy.canary.unwrap_or_default();
    let old_status = rollout.get("status").cloned().unwrap_or(json!({}));
    let mut status = old_status.clone();
    if !status.is_object() {
        status = json!({});
    }
    status["observedGeneration"] = rollout["metadata"]["generation"].clone();
    let workload_key: Key = (key.0.clone(), spec.workload_ref.name.clone());
    let workload = (spec.workload_ref.kind == "Deployment")
        .then(|| get_typed::<Deployment>(store, Kind::Deployment, &workload_key))
        .flatten();
    let in_progress = workload.as_ref().is_some_and(|d| {
        d.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(IN_PROGRESSING))
    });
    match workload {
        _ if spec.disabled => set_phase(&mut status, "Disabled", "Rollout is disabled"),
        None => set_phase(&mut status, "Initial", "the workload is not found"),
        // Finalising: the Deployment resumed, rolling natively.
        Some(d) if !in_progress && status["phase"] == "Progressing" => {
            if finalise(store, &canary, &d, &workload_key) {
                conclude(&mut status);
            }
        }
        Some(_) if !in_progress => {
            if status["phase"] != "Healthy" {
                set_phase(&mut status, "Healthy", "Rollout is healthy");
            }
        }
        Some(_) if spec.strategy.paused => {
            set_condition(
                &mut status,
                "Progressing",
                "False",
                "Paused",
                "Rollout has been paused, you can resume it by kube-cli",
            );
        }
        Some(d) => progress(
            store,
            state,
            ctx,
            (kind, key),
            &canary,
            &d,
            &workload_key,
            &mut status,
        ),
    }
    if status != old_status {
        let mut updated = rollout;
        updated["status"] = status;
        if let Err(e) = store.update(kind, &key.0, &key.1, updated, Part::All, false) {
            tracing::debug!(error = %e, "simulated Rollout status write failed");
        }
    }
}

fn set_phase(status: &mut Value, phase: &str, message: &str) {
    status["phase"] = phase.into();
    status["message"] = message.into();
}

/// Sets condition `type_`, keeping its times while it says the same.
fn set_condition(status: &mut Value, type_: &str, value: &str, reason: &str, message: &str) {
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let conditions = status["conditions"].as_array_mut().expect("an array");
    let now = json!(now_time());
    let existing = conditions.iter_mut().find(|c| c["type"] == type_);
    let (updated, transition) = match &existing {
        Some(c) if c["status"] == value && c["reason"] == reason && c["message"] == message => {
            return;
        }
        Some(c) if c["status"] == value => (now.clone(), c["lastTransitionTime"].clone()),
        _ => (now.clone(), now),
    };
    let fresh = json!({
        "type": type_, "status": value, "reason": reason, "message": message,
        "lastUpdateTime": updated, "lastTransitionTime": transition,
    });
    match existing {
        Some(c) => *c = fresh,
        None => conditions.push(fresh),
    }
}

/// Why the Rollout is finalising, from its Progressing condition.
fn cancelling(status: &Value) -> bool {
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Progressing" && c["reason"] == "Cancelling")
}

/// The Rollout is done: finalised after its last step, or cancelled by a
/// rollback.
fn conclude(status: &mut Value) {
    if cancelling(status) {
        set_condition(
            status,
            "Progressing",
            "False",
            "Completed",
            "Rollout progressing has been canceled",
        );
        set_condition(status, "Succeeded", "False", "Canceled", "");
        set_phase(status, "Healthy", "Rollout progressing has been canceled");
    } else {
        set_condition(
            status,
            "Progressing",
            "False",
            "Completed",
            "Rollout progressing has been completed",
        );
        set_condition(status, "Succeeded", "True", "Completed", "");
        set_phase(status, "Healthy", "Rollout progressing has been completed");
    }
}

#[allow(clippy::too_many_arguments)]
fn progress(
    store: &mut Store,
    state: &mut ControllerState,
    ctx: &Context,
    (kind, key): (Kind, &Key),
    canary: &Canary,
    d: &Deployment,
    workload_key: &Key,
    status: &mut Value,
) {
    let collision = d.status.as_ref().and_then(|s| s.collision_count);
    let revision = template_hash(&d.spec.template, collision);
    let stable = d
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(STABLE_REVISION))
        .cloned()
        .unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    let total = d.spec.replicas.unwrap_or(1);
    if revision == stable {
        // The template went back to the stable one: a rollback, done
        // directly by the native strategy.
        set_condition(
            status,
            "Progressing",
            "True",
            "Cancelling",
            "The workload has been rolled back and the rollout process will be canceled",
        );
        if finalise(store, canary, d, workload_key) {
            conclude(status);
        }
        return;
    }
    let mut p = match Progress::read(status) {
        // A new template while the steps run (a continuous release) starts
        // them again.
        Some(p) if p.canary == revision && status["phase"] == "Progressing" => p,
        _ => {
            state.kruise.pauses.remove(key);
            if let Some(c) = status.as_object_mut() {
                c.remove("conditions");
            }
            Progress {
                stable: stable.clone(),
                canary: revision.clone(),
                step: 1,
                state: STEP_UPGRADE.into(),
                replicas: 0,
                ready: 0,
                message: String::new(),
                updated: json!(now_time()),
            }
        }
    };
    status["phase"] = "Progressing".into();
    let steps = canary.steps.len().max(1);
    let mut finalised = false;
    // Each state moves on as far as the cluster allows now; a step waits
    // for its pods, a pause, or an approval.
    for _ in 0..(steps * 6 + 2) {
        let step = canary
            .steps
            .get((p.step as usize).saturating_sub(1))
            .cloned()
            .unwrap_or_default();
        match p.state.as_str() {
            STEP_UPGRADE => {
                let wanted = step.canary_replicas(total);
                p.replicas = wanted;
                p.ready = upgrade(store, canary, d, workload_key, &revision, wanted);
                p.message = format!(
                    "Rollout is in step({}/{steps}), and upgrade workload to new version",
                    p.step
                );
                if p.ready < wanted {
                    break;
                }
                p.enter(STEP_TRAFFIC_ROUTING);
            }
            STEP_TRAFFIC_ROUTING => {
                route(store, canary, &step, workload_key, &revision, &stable);
                p.enter(STEP_METRICS_ANALYSIS);
            }
            STEP_METRICS_ANALYSIS => p.enter(STEP_PAUSED),
            STEP_PAUSED => {
                let Some(seconds) = step.pause.duration else {
                    p.message = format!(
                        "Rollout is in step({}/{steps}), and you need manually confirm to enter the next step",
                        p.step
                    );
                    break;
                };
                let tag = format!("{}/{}", p.canary, p.step);
                let began = match state.kruise.pauses.get(key) {
                    Some((t, step, at)) if *t == tag && *step == p.step => *at,
                    _ => {
                        state
                            .kruise
                            .pauses
                            .insert(key.clone(), (tag, p.step, ctx.now));
                        ctx.now
                    }
                };
                let due = began + Duration::from_secs(seconds);
                if ctx.now < due {
                    p.message = format!(
                        "Rollout is in step({}/{steps}), and wait duration({seconds} seconds) to enter the next step",
                        p.step
                    );
                    state.wake_at(due, kind, key.clone());
                    break;
                }
                state.kruise.pauses.remove(key);
                p.enter(STEP_READY);
            }
            STEP_READY => {
                if (p.step as usize) < canary.steps.len() {
                    p.step += 1;
                    p.enter(STEP_UPGRADE);
                } else {
                    p.enter(COMPLETED);
                }
            }
            COMPLETED => {
                p.message = "Rollout has been completed and some closing work is being done".into();
                set_condition(
                    status,
                    "Progressing",
                    "True",
                    "Finalising",
                    "Rollout has been completed and some closing work is being done",
                );
                finalised = finalise(store, canary, d, workload_key);
                break;
            }
            // An unknown state (a client's patch): as Kruise, wait.
            _ => break,
        }
    }
    if p.state != COMPLETED {
        set_condition(
            status,
            "Progressing",
            "True",
            "InRolling",
            "Rollout is in Progressing",
        );
    }
    status["canaryStatus"] = p.to_json(generation, steps);
    status["currentStepIndex"] = p.step.into();
    status["currentStepState"] = p.state.clone().into();
    status["message"] = p.message.clone().into();
    if finalised {
        conclude(status);
    }
}

/// Runs `wanted` pods of the new template; answers how many are ready.
fn upgrade(
    store: &mut Store,
    canary: &Canary,
    d: &Deployment,
    workload_key: &Key,
    revision: &str,
    wanted: i32,
) -> i32 {
    if canary.enable_extra_workload_for_canary {
        let name = workload_key.1.as_str();
        let mut existing = canary_deployments(store, &workload_key.0, name);
        match existing.pop() {
            Some(mut c) => {
                if c.spec.replicas != Some(wanted) {
                    c.spec.replicas = Some(wanted);
                    let key = (
                        workload_key.0.clone(),
                        c.metadata.name.clone().unwrap_or_default(),
                    );
                    put(store, Kind::Deployment, &key, &c);
                }
                c.status.and_then(|s| s.ready_replicas).unwrap_or(0)
            }
            None => {
                let mut labels = d.metadata.labels.clone().unwrap_or_default();
                labels.remove(STABLE_REVISION);
                labels.insert(CANARY_DEPLOYMENT.into(), name.into());
                let mut spec = d.spec.clone();
                spec.paused = None;
                spec.replicas = Some(wanted);
                let object = json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"generateName": format!("{name}-"), "labels": labels},
                    "spec": spec,
                });
                if let Err(e) = store.create(Kind::Deployment, &workload_key.0, object, false) {
                    tracing::debug!(error = %e, "simulated canary Deployment refused");
                }
                0
            }
        }
    } else {
        let mut d = d.clone();
        let strategy =
            json!({"rollingStyle": "Partition", "partition": wanted, "paused": false}).to_string();
        let annotations = d.metadata.annotations.get_or_insert_with(BTreeMap::new);
        if annotations.get(STRATEGY) != Some(&strategy) {
            annotations.insert(STRATEGY.into(), strategy);
            annotations.insert(
                CONTROL.into(),
                json!({"kind": "BatchRelease", "name": workload_key.1}).to_string(),
            );
            put(store, Kind::Deployment, workload_key, &d);
            store.dirty.insert((Kind::Deployment, workload_key.clone()));
        }
        let uid = d.metadata.uid.clone().unwrap_or_default();
        store
            .owned_by(&uid, Kind::ReplicaSet)
            .into_iter()
            .filter_map(|rs| ReplicaSet::deserialize(rs).ok())
            .filter(|rs| {
                rs.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(TEMPLATE_HASH))
                    .is_some_and(|h| h == revision)
            })
            .filter_map(|rs| rs.status?.ready_replicas)
            .sum()
    }
}

fn canary_deployments(store: &Store, namespace: &str, name: &str) -> Vec<Deployment> {
    store
        .list(Kind::Deployment, Some(namespace))
        .into_iter()
        .filter(|d| {
            d.pointer("/metadata/labels")
                .and_then(|l| l.get(CANARY_DEPLOYMENT))
                .and_then(Value::as_str)
                == Some(name)
        })
        .filter_map(|d| Deployment::deserialize(d).ok())
        .collect()
}

/// nginx traffic routing for `step`: the stable Service selects the stable
/// pods, `<service>-canary` the new ones, and `<ingress>-canary` sends the
/// step's weight or header to it.
fn route(
    store: &mut Store,
    canary: &Canary,
    step: &Step,
    workload_key: &Key,
    revision: &str,
    stable: &str,
) {
    let namespace = workload_key.0.as_str();
    for routing in &canary.traffic_routings {
        let Some(service) = store
            .get(Kind::Service, namespace, &routing.service)
            .cloned()
        else {
            continue;
        };
        let canary_service = format!("{}-canary", routing.service);
        if store
            .get(Kind::Service, namespace, &canary_service)
            .is_none()
        {
            let mut selector = service["spec"]["selector"].clone();
            if !selector.is_object() {
                selector = json!({});
            }
            selector[TEMPLATE_HASH] = revision.into();
            let mut ports = service["spec"]["ports"].clone();
            if let Some(ports) = ports.as_array_mut() {
                for port in ports.iter_mut() {
                    if let Some(p) = port.as_object_mut() {
                        p.remove("nodePort");
                    }
                }
            }
            let object = json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": canary_service},
                "spec": {"selector": selector, "ports": ports},
            });
            let _ = store.create(Kind::Service, namespace, object, false);
        }
        if service
            .pointer(&format!("/spec/selector/{TEMPLATE_HASH}"))
            .is_none()
        {
            let mut stable_service = service.clone();
            stable_service["spec"]["selector"][TEMPLATE_HASH] = stable.into();
            let _ = store.update(
                Kind::Service,
                namespace,
                &routing.service,
                stable_service,
                Part::All,
                false,
            );
        }
        let Some(ingress_name) = routing.ingress.as_ref().map(|i| i.name.as_str()) else {
            continue;
        };
        let Some(ingress) = store.get(Kind::Ingress, namespace, ingress_name).cloned() else {
            continue;
        };
        let mut annotations = serde_json::Map::new();
        annotations.insert(format!("{NGINX}canary"), "true".into());
        if let Some(weight) = &step.traffic {
            annotations.insert(
                format!("{NGINX}canary-weight"),
                weight.trim_end_matches('%').into(),
            );
        }
        if let Some(header) = step.matches.iter().flat_map(|m| m.headers.first()).next() {
            annotations.insert(
                format!("{NGINX}canary-by-header"),
                header.name.clone().into(),
            );
            let key = if header.type_.as_deref() == Some("RegularExpression") {
                "canary-by-header-pattern"
            } else {
                "canary-by-header-value"
            };
            annotations.insert(format!("{NGINX}{key}"), header.value.clone().into());
        }
        let mut spec = ingress["spec"].clone();
        point_backends(&mut spec, &routing.service, &canary_service);
        let canary_ingress = format!("{ingress_name}-canary");
        let object = json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": canary_ingress, "annotations": annotations},
            "spec": spec,
        });
        match store
            .get(Kind::Ingress, namespace, &canary_ingress)
            .cloned()
        {
            None => {
                let _ = store.create(Kind::Ingress, namespace, object, false);
            }
            Some(mut existing) => {
                if existing["metadata"]["annotations"] != Value::Object(annotations.clone()) {
                    existing["metadata"]["annotations"] = Value::Object(annotations);
                    existing["spec"] = object["spec"].clone();
                    let _ = store.update(
                        Kind::Ingress,
                        namespace,
                        &canary_ingress,
                        existing,
                        Part::All,
                        false,
                    );
                }
            }
        }
    }
}

/// Points an Ingress spec's backends at Service `from` to Service `to`.
fn point_backends(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::Object(map) => {
            if let Some(service) = map.get_mut("service")
                && service["name"] == from
            {
                service["name"] = to.into();
            }
            for v in map.values_mut() {
                point_backends(v, from, to);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| point_backends(v, from, to)),
        _ => {}
    }
}

/// Finalising: traffic back to the stable Service and the canary objects
/// gone, the Deployment resumed under its own strategy; answers whether it
/// finished rolling (the Rollout is then done).
fn finalise(store: &mut Store, canary: &Canary, d: &Deployment, workload_key: &Key) -> bool {
    let namespace = workload_key.0.as_str();
    for routing in &canary.traffic_routings {
        if let Some(ingress) = &routing.ingress {
            let _ = store.delete(
                Kind::Ingress,
                namespace,
                &format!("{}-canary", ingress.name),
                Propagation::Cascade,
                false,
            );
        }
        if let Some(mut service) = store
            .get(Kind::Service, namespace, &routing.service)
            .cloned()
            && let Some(selector) = service["spec"]["selector"].as_object_mut()
            && selector.remove(TEMPLATE_HASH).is_some()
        {
            let _ = store.update(
                Kind::Service,
                namespace,
                &routing.service,
                service,
                Part::All,
                false,
            );
        }
        let _ = store.delete(
            Kind::Service,
            namespace,
            &format!("{}-canary", routing.service),
            Propagation::Cascade,
            false,
        );
    }
    for c in canary_deployments(store, namespace, &workload_key.1) {
        let _ = store.delete(
            Kind::Deployment,
            namespace,
            c.metadata.name.as_deref().unwrap_or_default(),
            Propagation::Cascade,
            false,
        );
    }
    let mut resumed = d.clone();
    if let Some(a) = resumed.metadata.annotations.as_mut() {
        for key in [IN_PROGRESSING, STRATEGY, CONTROL] {
            a.remove(key);
        }
    }
    if let Some(l) = resumed.metadata.labels.as_mut() {
        l.remove(STABLE_REVISION);
    }
    resumed.spec.paused = None;
    if resumed != *d {
        put(store, Kind::Deployment, workload_key, &resumed);
        return false;
    }
    let Some(s) = &d.status else {
        return false;
    };
    let replicas = d.spec.replicas.unwrap_or(1);
    s.observed_generation >= d.metadata.generation
        && s.updated_replicas.unwrap_or(0) == replicas
        && s.available_replicas.unwrap_or(0) == replicas
        && s.replicas.unwrap_or(0) == replicas
}
