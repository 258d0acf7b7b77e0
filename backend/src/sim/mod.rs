//! A simulated Kubernetes cluster: an HTTP server speaking enough of the
//! real Kubernetes API (discovery, get/list/watch/create/replace/patch/
//! delete with real `Status` errors) that kube-rs clients and `kubectl`
//! work against it, with in-memory state, a Deployment/ReplicaSet
//! controller and a kubelet that run on a tick, synthetic pod logs, fault
//! injection and a request log for tests. `rollway sim` serves it alone;
//! tests use it in-process with `kube::Client::new(sim.router(), "default")`
//! or over TCP with [`Sim::start`] and [`RunningSim::kubeconfig`].
//!
//! Timing, for tests:
//! - a pod runs from the controller pass after its creation and is Ready
//!   `ready_delay` later (never, while a [`Faults::never_ready`] pattern
//!   matches one of its images); with `ready_delay: Duration::ZERO` and a
//!   short `tick`, a rollout finishes within one pass;
//! - a rollout that makes no progress (no more updated, ready or available
//!   pods, no fewer old ones) for `progressDeadlineSeconds` of real time
//!   gets `Progressing=False/ProgressDeadlineExceeded`, within one tick of
//!   the deadline; condition times are whole seconds, as in Kubernetes;
//! - [`Sim::step`] runs a controller pass at once.
//!
//! | module | owns |
//! |---|---|
//! | `kinds` | the served resources: group, names, scope, subresources |
//! | `store` | objects, resourceVersion, event history, owner index, GC, watch queues |
//! | `defaults` | decoding, defaulting, validation of objects |
//! | `selector` | label and field selectors |
//! | `patch` | merge, strategic merge, JSON patch, apply |
//! | `managed_fields` | field ownership (`managedFields`), apply conflicts and pruning |
//! | `options` | write options: dryRun, fieldManager, force, fieldValidation |
//! | `api`, `discovery`, `watch`, `logs`, `table` | the HTTP surface |
//! | `openapi` | OpenAPI v2 (JSON, protobuf) and v3 documents, Kubernetes' schemas |
//! | `controller`, `kubelet` | Deployments, ReplicaSets, pods over time |
//! | `events` | the Events they record (`kubectl get events`, `describe`) |
//! | `endpoints` | Endpoints and EndpointSlices of Services |
//! | `kruise` | OpenKruise Rollout: its definition, webhook and controller |
//! | `core_kinds` | ConfigMaps, Secrets, ServiceAccounts; each namespace's defaults |
//! | `cluster_kinds` | PersistentVolumeClaims (bound at once), ClusterRoles and ClusterRoleBindings (stored, not enforced), PodDisruptionBudgets and their status |
//! | `crd` | CustomResourceDefinitions and the resources they define |
//! | `protobuf` | Kubernetes' protobuf bodies (what kubectl 1.32+ creates with), as JSON |
//! | `access` | SelfSubjectAccessReview / RulesReview (`kubectl auth can-i`) |
//! | `kinds_table` | `kubectl get` columns of the kinds besides workloads |
//! | `faults` | fault injection and the request log |
//! | `status` | `Status` error bodies |

mod access;
mod api;
mod cluster_kinds;
#[cfg(test)]
mod cluster_kinds_tests;
mod controller;
mod core_kinds;
mod crd;
mod defaults;
mod discovery;
mod endpoints;
mod events;
mod faults;
mod gitlab;
mod kinds;
mod kinds_table;
#[cfg(test)]
mod kinds_tests;
mod kruise;
#[cfg(test)]
mod kruise_tests;
mod kubelet;
mod logs;
mod managed_fields;
mod metrics;
mod openapi;
mod options;
mod patch;
mod protobuf;
mod selector;
mod status;
mod store;
mod table;
#[cfg(test)]
mod tests;
mod watch;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, ReplicaSet};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::{oneshot, watch as channel};
use tokio::task::{AbortHandle, JoinHandle};

pub use faults::{Faults, REQUEST_LOG_LIMIT, RequestRecord};
pub use gitlab::{DemoGitlab, DemoProject};
pub use kinds::Kind;
pub use metrics::{REQUEST_RATE, Serving};
pub use status::ApiError;
pub use store::HISTORY_LIMIT;

use controller::ControllerState;
use faults::RequestLog;
use store::Store;

/// How the simulated cluster behaves over time.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// How often the controller looks at objects that need work.
    pub tick: Duration,
    /// How long a started pod takes to become Ready.
    pub ready_delay: Duration,
    /// Simulated time between two synthetic log lines of a container.
    pub log_interval: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            tick: Duration::from_millis(100),
            ready_delay: Duration::from_secs(1),
            log_interval: Duration::from_secs(2),
        }
    }
}

/// A handle on one simulated cluster; clones share it.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<Inner>,
}

struct Inner {
    config: SimConfig,
    world: Mutex<World>,
    /// Bumped on shutdown: every stream ends.
    stop: channel::Sender<u64>,
    faults: Faults,
    requests: RequestLog,
    controller: Mutex<Option<AbortHandle>>,
}

/// Everything behind the one lock: the objects and the controller's memory.
pub(crate) struct World {
    pub store: Store,
    pub controller: ControllerState,
}

impl Sim {
    /// A new, empty cluster (with the `default` namespace). The controller
    /// task starts now when called inside a tokio runtime, else with the
    /// first request or `router()`.
    pub fn new(config: SimConfig) -> Sim {
        let mut store = Store::new();
        let _ = store.create(
            Kind::Namespace,
            "",
            json!({"metadata": {"name": "default"}}),
            false,
        );
        let sim = Sim {
            inner: Arc::new(Inner {
                config,
                world: Mutex::new(World {
                    store,
                    controller: ControllerState::default(),
                }),
                stop: channel::channel(0).0,
                faults: Faults::new(),
                requests: RequestLog::default(),
                controller: Mutex::new(None),
            }),
        };
        sim.ensure_controller();
        sim
    }

    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    /// The Kubernetes API; `kube::Client::new(sim.router(), "default")`
    /// talks to it without a socket.
    pub fn router(&self) -> axum::Router {
        self.ensure_controller();
        api::router(self.clone())
    }

    /// Binds `listen` (port 0 picks one) and serves the API there, with the
    /// controller running.
    pub async fn start(config: SimConfig, listen: SocketAddr) -> anyhow::Result<RunningSim> {
        let sim = Sim::new(config);
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let router = sim.router();
        let server = tokio::spawn(async move {
            let shutdown = async {
                let _ = stop_rx.await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(error = %e, "simulated cluster server stopped");
            }
        });
        Ok(RunningSim {
            sim,
            addr,
            server: Some(server),
            stop: Some(stop_tx),
        })
    }

    /// A kubeconfig for this cluster at `server_url`: cluster, user and
    /// context all named `rollway-sim`, a static token (any token, or none,
    /// is accepted), namespace `default`.
    pub fn kubeconfig(&self, server_url: &str) -> String {
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: rollway-sim
  cluster:
    server: {server_url}
users:
- name: rollway-sim
  user:
    token: rollway-sim-token
contexts:
- name: rollway-sim
  context:
    cluster: rollway-sim
    user: rollway-sim
    namespace: default
current-context: rollway-sim
preferences: {{}}
"
        )
    }

    /// Creates a namespace (nothing happens if it exists).
    pub fn create_namespace(&self, name: &str) {
        let _ = self.world().store.create(
            Kind::Namespace,
            "",
            json!({"metadata": {"name": name}}),
            false,
        );
    }

    /// Seeds a Deployment `name` (labels and selector `app=<name>`) with one
    /// container, creating the namespace if missing; the controller brings
    /// it up over the next ticks. A Deployment that already exists is
    /// answered unchanged.
    pub fn create_deployment(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        image: &str,
        replicas: i32,
        progress_deadline_seconds: i32,
    ) -> Deployment {
        self.create_namespace(namespace);
        let labels = [("app".to_string(), name.to_string())]
            .into_iter()
            .collect();
        let deployment = Deployment {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                labels: Some(labels),
                ..Default::default()
            },
            spec: DeploymentSpec {
                replicas: Some(replicas),
                progress_deadline_seconds: Some(progress_deadline_seconds),
                selector: LabelSelector {
                    match_labels: Some([("app".to_string(), name.to_string())].into()),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".to_string(), name.to_string())].into()),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: container.into(),
                            image: Some(image.into()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            },
            status: None,
        };
        let value = serde_json::to_value(&deployment).unwrap_or_default();
        let mut world = self.world();
        let stored = match world
            .store
            .create(Kind::Deployment, namespace, value, false)
        {
            Ok(stored) => (*stored).clone(),
            Err(e) => {
                tracing::warn!(error = %e, "create_deployment: keeping the existing deployment");
                world
                    .store
                    .get(Kind::Deployment, namespace, name)
                    .cloned()
                    .unwrap_or_default()
            }
        };
        serde_json::from_value(stored).unwrap_or(deployment)
    }

    /// The Deployment as stored now.
    pub fn deployment(&self, namespace: &str, name: &str) -> Option<Deployment> {
        self.get(Kind::Deployment, namespace, name)
    }

    /// The pods of a namespace, by name.
    pub fn pods(&self, namespace: &str) -> Vec<Pod> {
        self.list(Kind::Pod, namespace)
    }

    /// The ReplicaSets of a namespace, by name.
    pub fn replica_sets(&self, namespace: &str) -> Vec<ReplicaSet> {
        self.list(Kind::ReplicaSet, namespace)
    }

    /// OpenKruise Rollout `namespace/name` as stored (when Kruise is
    /// installed).
    pub fn rollout(&self, namespace: &str, name: &str) -> Option<serde_json::Value> {
        let world = self.world();
        let kind = kruise::rollout_kind(&world.store)?;
        world.store.get(kind, namespace, name).cloned()
    }

    /// Any stored object, decoded as `K` (`namespace` is ignored for
    /// cluster-scoped kinds).
    pub fn get<K: DeserializeOwned>(&self, kind: Kind, namespace: &str, name: &str) -> Option<K> {
        let value = self.world().store.get(kind, namespace, name).cloned()?;
        serde_json::from_value(value).ok()
    }

    /// Every object of `kind` in `namespace`, decoded as `K`.
    pub fn list<K: DeserializeOwned>(&self, kind: Kind, namespace: &str) -> Vec<K> {
        let values: Vec<serde_json::Value> = self
            .world()
            .store
            .list(kind, Some(namespace))
            .into_iter()
            .cloned()
            .collect();
        values
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect()
    }

    /// Every request received so far (the newest last).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.requests.all()
    }

    pub fn clear_requests(&self) {
        self.inner.requests.clear();
    }

    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// Serves OpenKruise Rollout (`rollouts.kruise.io`): its definition,
    /// workload webhook and controller.
    pub fn install_kruise(&self) {
        kruise::install(&mut self.world().store);
    }

    /// Runs one controller pass now, on the caller's thread (tests that
    /// want to step time themselves; the background task keeps running).
    pub fn step(&self) {
        self.run_controller_pass();
    }

    /// Keeps at most `limit` events for resuming watches; older
    /// resourceVersions answer 410 Gone (default 20,000).
    pub fn set_history_limit(&self, limit: usize) {
        self.world().store.set_history_limit(limit);
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.world().store.resource_version()
    }

    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.inner
            .world
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn stops(&self) -> channel::Receiver<u64> {
        self.inner.stop.subscribe()
    }

    fn run_controller_pass(&self) {
        let never_ready = self.inner.faults.never_ready_patterns();
        let changed = self.inner.faults.take_never_ready_change();
        let mut world = self.world();
        let World { store, controller } = &mut *world;
        if changed {
            let pods: Vec<(Kind, store::Key)> = store
                .list(Kind::Pod, None)
                .iter()
                .map(|p| {
                    let ns = p["metadata"]["namespace"].as_str().unwrap_or_default();
                    let name = p["metadata"]["name"].as_str().unwrap_or_default();
                    (Kind::Pod, (ns.to_string(), name.to_string()))
                })
                .collect();
            store.dirty.extend(pods);
        }
        let ctx = controller::Context {
            now: tokio::time::Instant::now(),
            ready_delay: self.inner.config.ready_delay,
            never_ready: &never_ready,
        };
        controller::fire_timers(store, controller, ctx.now);
        drop(world);
        // Work in slices, letting go of the lock in between, so API requests
        // are not held up behind a busy pass.
        let mut done = 0;
        while done < PASS_LIMIT {
            let mut world = self.world();
            let World { store, controller } = &mut *world;
            if store.dirty.is_empty() {
                break;
            }
            done += controller::work(store, controller, &ctx, SLICE);
            drop(world);
            std::thread::yield_now();
        }
    }

    /// Starts the controller task if it is not running and a runtime is
    /// at hand.
    pub(crate) fn ensure_controller(&self) {
        let mut slot = self
            .inner
            .controller
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let tick = self.inner.config.tick.max(Duration::from_millis(1));
        *slot = Some(runtime.spawn(run_controller(weak, tick)).abort_handle());
    }

    fn stop_controller(&self) {
        if let Some(handle) = self
            .inner
            .controller
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            handle.abort();
        }
    }
}

/// Objects the controller reconciles per hold of the lock.
const SLICE: usize = 4;

/// Objects reconciled per pass at most; the rest wait for the next tick.
const PASS_LIMIT: usize = 100_000;

async fn run_controller(inner: Weak<Inner>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        Sim { inner }.run_controller_pass();
    }
}

/// A simulated cluster served on a socket. Dropping it stops the server,
/// its streams and the controller.
pub struct RunningSim {
    pub sim: Sim,
    pub addr: SocketAddr,
    server: Option<JoinHandle<()>>,
    stop: Option<oneshot::Sender<()>>,
}

impl RunningSim {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig pointing at [`RunningSim::url`].
    pub fn kubeconfig(&self) -> String {
        self.sim.kubeconfig(&self.url())
    }

    /// Stops serving: open watches and log streams end, the server drains,
    /// the controller stops.
    pub async fn shutdown(mut self) {
        self.sim.inner.stop.send_modify(|g| *g += 1);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut server)
                .await
                .is_err()
        {
            tracing::warn!("simulated cluster did not drain within 5 s");
            server.abort();
        }
        self.sim.stop_controller();
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.sim.inner.stop.send_modify(|g| *g += 1);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
        self.sim.stop_controller();
    }
}
