//! The simulated kubelet of the one node, `sim-node-1`: it registers its
//! Node (Ready, with capacity, addresses and the cluster's version), binds
//! pods that name no node to it, and a pod starts running on the next
//! controller pass and becomes Ready after the configured delay — unless its
//! image matches a never-ready fault, in which case its readiness probe
//! keeps failing.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, HostIP, Pod,
    PodCondition, PodIP, PodSpec,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::controller::{Context, ControllerState, get_typed, now_time, put};
use super::discovery::SERVER_VERSION;
use super::events::{self, Occurrence, Source};
use super::kinds::Kind;
use super::store::{Key, Store, controller_owner, now_timestamp};

pub const NODE_NAME: &str = "sim-node-1";
pub const NODE_IP: &str = "10.0.0.10";
/// Where pod IPs come from (`Store::next_pod_ip`).
pub const POD_CIDR: &str = "10.244.0.0/16";
pub const CONTAINER_RUNTIME: &str = "containerd://2.0.5";
pub const OS_IMAGE: &str = "Rollway simulated node";

/// The Node this kubelet registers, as it posts it.
pub fn node_object() -> Value {
    let now = now_timestamp();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        })
    };
    let resources = json!({
        "cpu": "8",
        "memory": "32Gi",
        "pods": "110",
        "ephemeral-storage": "100Gi",
        "hugepages-2Mi": "0",
    });
    let machine = digest(NODE_NAME);
    json!({
        "metadata": {
            "name": NODE_NAME,
            "labels": {
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": NODE_NAME,
                "kubernetes.io/os": "linux",
                "node-role.kubernetes.io/control-plane": "",
            },
        },
        "spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": NODE_IP},
                {"type": "Hostname", "address": NODE_NAME},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": &machine[..32],
                "systemUUID": &machine[32..],
                "bootID": &digest(&now)[..32],
                "kernelVersion": "6.1.0-rollway-sim",
                "osImage": OS_IMAGE,
                "containerRuntimeVersion": CONTAINER_RUNTIME,
                "kubeletVersion": SERVER_VERSION,
                "kubeProxyVersion": SERVER_VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    })
}

/// Registers the node when it is not there (at start, or after someone
/// deleted it), as a kubelet does.
pub fn register_node(store: &mut Store) {
    if store.get(Kind::Node, "", NODE_NAME).is_none()
        && let Err(e) = store.create(Kind::Node, "", node_object(), false)
    {
        tracing::warn!(error = %e, "the simulated kubelet could not register its node");
    }
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The images of a pod's containers.
pub fn images(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter_map(|c| c.image.clone())
        .collect()
}

fn digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn pod_condition(
    type_: &str,
    ready: bool,
    reason: Option<String>,
    message: Option<String>,
) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: if ready { "True" } else { "False" }.into(),
        last_transition_time: Some(now_time()),
        reason,
        message,
        ..Default::default()
    }
}

/// Moves a pod along: Pending → Running (containers started, not ready) →
/// Ready once `ready_delay` has passed.
pub fn sync_pod(store: &mut Store, state: &mut ControllerState, ctx: &Context, key: &Key) {
    let Some(mut pod) = get_typed::<Pod>(store, Kind::Pod, key) else {
        state.pod_started.remove(key);
        state.pod_stopping.remove(key);
        return;
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        stop_pod(store, state, ctx, key, pod);
        return;
    }
    let Some(spec) = pod.spec.clone() else {
        return;
    };
    let before = pod.clone();
    if let Some(spec) = pod.spec.as_mut()
        && spec.node_name.is_none()
    {
        // The one node is where every pod is scheduled.
        spec.node_name = Some(NODE_NAME.into());
    }
    let started = match state.pod_started.get(key) {
        Some((known, at)) if *known == uid => *at,
        _ => {
            state
                .pod_started
                .insert(key.clone(), (uid.clone(), ctx.now));
            ctx.now
        }
    };
    let status = pod.status.get_or_insert_with(Default::default);
    if status.start_time.is_none() {
        let now = now_time();
        let pod_ip = store.next_pod_ip();
        status.phase = Some("Running".into());
        status.host_ip = Some(NODE_IP.into());
        status.host_ips = Some(vec![HostIP { ip: NODE_IP.into() }]);
        status.pod_ip = Some(pod_ip.clone());
        status.pod_ips = Some(vec![PodIP { ip: pod_ip }]);
        status.start_time = Some(now.clone());
        status.qos_class = Some(super::defaults::qos_class(&spec));
        let names: Vec<String> = spec.containers.iter().map(|c| c.name.clone()).collect();
        let unready = Some(format!(
            "containers with unready status: [{}]",
            names.join(" ")
        ));
        status.conditions = Some(vec![
            pod_condition("PodReadyToStartContainers", true, None, None),
            pod_condition("Initialized", true, None, None),
            pod_condition(
                "Ready",
                false,
                Some("ContainersNotReady".into()),
                unready.clone(),
            ),
            pod_condition(
                "ContainersReady",
                false,
                Some("ContainersNotReady".into()),
                unready,
            ),
            pod_condition("PodScheduled", true, None, None),
        ]);
        let container_status = |c: &k8s_openapi::api::core::v1::Container,
                                state: ContainerState| {
            let image = c.image.clone().unwrap_or_default();
            ContainerStatus {
                name: c.name.clone(),
                image: image.clone(),
                image_id: format!("{image}@sha256:{}", digest(&image)),
                container_id: Some(format!(
                    "containerd://{}",
                    digest(&format!("{uid}/{}", c.name))
                )),
                ready: false,
                started: Some(true),
                restart_count: 0,
                state: Some(state),
                ..Default::default()
            }
        };
        status.container_statuses = Some(
            spec.containers
                .iter()
                .map(|c| {
                    container_status(
                        c,
                        ContainerState {
                            running: Some(ContainerStateRunning {
                                started_at: Some(now.clone()),
                            }),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
        );
        if let Some(init) = spec.init_containers.as_ref().filter(|i| !i.is_empty()) {
            status.init_container_statuses = Some(
                init.iter()
                    .map(|c| {
                        let mut s = container_status(
                            c,
                            ContainerState {
                                terminated: Some(ContainerStateTerminated {
                                    exit_code: 0,
                                    reason: Some("Completed".into()),
                                    started_at: Some(now.clone()),
                                    finished_at: Some(now.clone()),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            },
                        );
                        s.started = Some(false);
                        s
                    })
                    .collect(),
            );
        }
    }
    let blocked = images(&pod)
        .iter()
        .any(|image| ctx.never_ready.iter().any(|p| image.contains(p.as_str())));
    if before
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .is_none()
    {
        record_start(store, &pod, &spec, blocked);
    }
    let due = started + ctx.ready_delay;
    if !is_ready(&pod) && !blocked {
        if ctx.now >= due {
            set_ready(&mut pod, true);
        } else {
            state.wake_at(due, Kind::Pod, key.clone());
        }
    }
    if pod != before {
        put(store, Kind::Pod, key, &pod);
    }
}

/// A pod being deleted: its containers are sent SIGTERM (`Killing`), it
/// stops being ready, and once they have stopped — `ready_delay` after,
/// or at the end of its grace period if that comes first (a second delete
/// may have shortened it) — the kubelet removes it.
fn stop_pod(store: &mut Store, state: &mut ControllerState, ctx: &Context, key: &Key, pod: Pod) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let told = match state.pod_stopping.get(key) {
        Some((known, at)) if *known == uid => *at,
        _ => {
            state.pod_stopping.insert(key.clone(), (uid, ctx.now));
            record_stop(store, &pod);
            let mut stopping = pod.clone();
            set_ready(&mut stopping, false);
            if stopping != pod {
                put(store, Kind::Pod, key, &stopping);
            }
            ctx.now
        }
    };
    // What is left of the grace period, by the wall clock.
    let left = pod
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_second() - k8s_openapi::jiff::Timestamp::now().as_second())
        .and_then(|s| u64::try_from(s.max(0)).ok())
        .map_or(std::time::Duration::ZERO, std::time::Duration::from_secs);
    let stopped_at = (told + ctx.ready_delay).min(ctx.now + left);
    if ctx.now >= stopped_at {
        state.pod_stopping.remove(key);
        state.pod_started.remove(key);
        let removed = store.delete(
            Kind::Pod,
            &key.0,
            &key.1,
            super::store::Propagation::Cascade,
            false,
        );
        // The Deployment above its ReplicaSet may be waiting for this pod
        // to be gone (Recreate).
        if let Some(deployment) = removed.ok().and_then(|p| grand_owner(store, &p)) {
            store.dirty.insert((Kind::Deployment, deployment));
        }
    } else {
        state.wake_at(stopped_at, Kind::Pod, key.clone());
    }
}

/// The Deployment whose ReplicaSet controls `pod` (as stored).
fn grand_owner(store: &Store, pod: &serde_json::Value) -> Option<Key> {
    let namespace = pod.pointer("/metadata/namespace")?.as_str()?.to_string();
    let (Kind::ReplicaSet, rs) = controller_owner(pod)? else {
        return None;
    };
    let rs = store.get(Kind::ReplicaSet, &namespace, &rs)?;
    let (Kind::Deployment, deployment) = controller_owner(rs)? else {
        return None;
    };
    Some((namespace, deployment))
}

/// The kubelet's `Killing` Event of each container of a pod being deleted.
fn record_stop(store: &mut Store, pod: &Pod) {
    let Ok(object) = serde_json::to_value(pod) else {
        return;
    };
    for container in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        events::record(
            store,
            Occurrence {
                object: &object,
                kind: Kind::Pod,
                warning: false,
                reason: "Killing",
                message: format!("Stopping container {}", container.name),
                source: Source::Kubelet,
                field_path: Some(format!("spec.containers{{{}}}", container.name)),
            },
        );
    }
}

/// The Events of a pod's start: scheduled to the node, then each
/// container's image present, created and started (and its readiness
/// probe failing, for an image held unready).
fn record_start(store: &mut Store, pod: &Pod, spec: &PodSpec, unready: bool) {
    let Ok(object) = serde_json::to_value(pod) else {
        return;
    };
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let occurrence = |source, reason, message: String, field_path: Option<String>| Occurrence {
        object: &object,
        kind: Kind::Pod,
        warning: false,
        reason,
        message,
        source,
        field_path,
    };
    events::record(
        store,
        occurrence(
            Source::Scheduler,
            "Scheduled",
            format!("Successfully assigned {namespace}/{name} to {NODE_NAME}"),
            None,
        ),
    );
    for container in &spec.containers {
        let path = Some(format!("spec.containers{{{}}}", container.name));
        let image = container.image.clone().unwrap_or_default();
        let steps = [
            (
                "Pulled",
                format!("Container image \"{image}\" already present on machine"),
            ),
            ("Created", format!("Created container: {}", container.name)),
            ("Started", format!("Started container {}", container.name)),
        ];
        for (reason, message) in steps {
            events::record(
                store,
                occurrence(Source::Kubelet, reason, message, path.clone()),
            );
        }
        if unready {
            let mut failing = occurrence(
                Source::Kubelet,
                "Unhealthy",
                "Readiness probe failed: HTTP probe failed with statuscode: 503".into(),
                path,
            );
            failing.warning = true;
            events::record(store, failing);
        }
    }
}

/// Turns a pod's containers and its Ready and ContainersReady conditions
/// ready, or not ready as its containers stop (`PodCompleted`); a
/// condition already so keeps its transition time.
fn set_ready(pod: &mut Pod, ready: bool) {
    let Some(status) = pod.status.as_mut() else {
        return;
    };
    for c in status.container_statuses.iter_mut().flatten() {
        c.ready = ready;
    }
    let (to, reason) = if ready {
        ("True", None)
    } else {
        ("False", Some("PodCompleted".to_string()))
    };
    for c in status.conditions.iter_mut().flatten() {
        if (c.type_ == "Ready" || c.type_ == "ContainersReady") && c.status != to {
            c.status = to.into();
            c.reason = reason.clone();
            c.message = None;
            c.last_transition_time = Some(now_time());
        }
    }
}
