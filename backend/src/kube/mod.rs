//! The Kubernetes driver: one client per cluster built from the
//! credentials it is handed (`db::clusters::credentials` opens them; the
//! driver runs no query), cached and rebuilt when they change; calls with
//! a deadline and retries with backoff on 5xx answers and timeouts, each in
//! a `kube` tracing span naming cluster, verb, resource, namespace and
//! name; one shared Deployment watch per cluster namespace that rollouts
//! wait on; and the reading of a Deployment's status the way `kubectl
//! rollout status` reads it.

pub mod deployment;
pub mod lane;
pub mod live;
pub mod pods;
pub mod rollout;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tracing::Instrument;

use crate::domain::cluster::{ClusterAccess, ClusterCredentials, refuse_external_credentials};

/// Why a Kubernetes call failed, sorted by what the caller does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeError {
    /// Worth trying again: 5xx, 429, a timeout, no connection.
    Transient(String),
    /// The object is not there (404).
    NotFound(String),
    /// Someone changed the object since it was read (409).
    Conflict(String),
    /// The cluster refused the request or cannot be used (4xx, bad kubeconfig).
    Refused(String),
}

impl KubeError {
    pub fn message(&self) -> &str {
        match self {
            KubeError::Transient(m)
            | KubeError::NotFound(m)
            | KubeError::Conflict(m)
            | KubeError::Refused(m) => m,
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, KubeError::Transient(_))
    }
}

impl std::fmt::Display for KubeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

fn classify(what: &str, e: kube::Error) -> KubeError {
    match e {
        kube::Error::Api(status) => {
            let message = if status.message.is_empty() {
                format!(
                    "{what}: Kubernetes answered {} {}",
                    status.code, status.reason
                )
            } else {
                format!("{what}: {}", status.message)
            };
            match status.code {
                404 => KubeError::NotFound(message),
                409 => KubeError::Conflict(message),
                429 | 500..=599 => KubeError::Transient(message),
                _ => KubeError::Refused(message),
            }
        }
        kube::Error::Auth(e) => KubeError::Refused(format!("{what}: cannot authenticate: {e}")),
        other => KubeError::Transient(format!("{what}: {other}")),
    }
}

/// How long calls may take and how often they are tried.
#[derive(Debug, Clone, Copy)]
pub struct KubeSettings {
    /// Deadline of one call (watches excepted).
    pub call_timeout: Duration,
    /// Tries of a call that keeps failing transiently.
    pub attempts: u32,
    /// First pause between tries (doubled each time).
    pub backoff: Duration,
}

impl Default for KubeSettings {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(10),
            attempts: 4,
            backoff: Duration::from_millis(200),
        }
    }
}

/// A cluster's client and what it was built from.
#[derive(Clone)]
pub struct ClusterClient {
    pub cluster_id: i64,
    /// The cluster's name, for spans and messages.
    pub cluster: String,
    pub client: kube::Client,
    fingerprint: String,
    settings: KubeSettings,
}

type WatchKey = (i64, String, String);

/// Shared watches of one kind of object, by cluster and namespace.
type Watches<K> = Mutex<HashMap<WatchKey, Weak<NamespaceWatch<K>>>>;

/// The clients of every cluster in use and their shared watches.
pub struct KubeDriver {
    settings: KubeSettings,
    clients: Mutex<HashMap<i64, ClusterClient>>,
    watches: Watches<Deployment>,
    rollout_watches: Watches<DynamicObject>,
}

impl KubeDriver {
    pub fn new(settings: KubeSettings) -> Self {
        Self {
            settings,
            clients: Mutex::new(HashMap::new()),
            watches: Mutex::new(HashMap::new()),
            rollout_watches: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> KubeSettings {
        self.settings
    }

    /// The client of the cluster `credentials` open, rebuilt when they
    /// changed since the cached one was made.
    pub async fn client(
        &self,
        credentials: &ClusterCredentials,
    ) -> Result<ClusterClient, KubeError> {
        let ClusterCredentials {
            id,
            name,
            access,
            fingerprint,
        } = credentials;
        let id = *id;
        if let Some(cached) = self.clients.lock().expect("clients lock").get(&id)
            && cached.fingerprint == *fingerprint
        {
            return Ok(cached.clone());
        }
        let mut config = match access {
            ClusterAccess::InCluster => kube::Config::incluster().map_err(|e| {
                KubeError::Refused(format!(
                    "cluster {name} is set to in-cluster, but Rollway is not running in a cluster: {e}"
                ))
            })?,
            ClusterAccess::Missing => {
                return Err(KubeError::Refused(format!(
                    "cluster {name} has no kubeconfig; set one on its page"
                )));
            }
            ClusterAccess::Unreadable => {
                return Err(KubeError::Refused(format!(
                    "the kubeconfig of cluster {name} cannot be decrypted (was the secret key changed?)"
                )));
            }
            ClusterAccess::Kubeconfig { yaml, context } => {
                // Checked again here, not only when stored: a kubeconfig that
                // reached the table some other way must never run a command or
                // read a file, so it is refused before kube-rs sees it.
                serde_yaml::from_str::<serde_yaml::Value>(yaml.expose())
                    .map_err(|_| "it is not valid YAML".to_string())
                    .and_then(|doc| refuse_external_credentials(&doc))
                    .map_err(|why| {
                        KubeError::Refused(format!(
                            "the kubeconfig of cluster {name} is refused: {why}"
                        ))
                    })?;
                let kubeconfig = Kubeconfig::from_yaml(yaml.expose()).map_err(|e| {
                    KubeError::Refused(format!(
                        "the kubeconfig of cluster {name} is not usable: {e}"
                    ))
                })?;
                let options = KubeConfigOptions {
                    context: context.clone(),
                    ..KubeConfigOptions::default()
                };
                kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| {
                        KubeError::Refused(format!(
                            "the kubeconfig of cluster {name} is not usable: {e}"
                        ))
                    })?
            }
        };
        config.connect_timeout = Some(self.settings.call_timeout);
        // Watches stay open for minutes; other calls carry their own deadline.
        config.read_timeout = None;
        let client = kube::Client::try_from(config).map_err(|e| {
            KubeError::Refused(format!("cannot make a client for cluster {name}: {e}"))
        })?;
        let built = ClusterClient {
            cluster_id: id,
            cluster: name.clone(),
            client,
            fingerprint: fingerprint.clone(),
            settings: self.settings,
        };
        self.clients
            .lock()
            .expect("clients lock")
            .insert(id, built.clone());
        Ok(built)
    }

    /// The shared watch of Deployments in `namespace` of the client's
    /// cluster; it runs while someone holds it.
    pub fn watch(&self, cluster: &ClusterClient, namespace: &str) -> Arc<DeploymentWatch> {
        let api = Api::namespaced(cluster.client.clone(), namespace);
        shared_watch(&self.watches, cluster, namespace, "deployments", api, ())
    }

    /// The shared watch of OpenKruise Rollouts in `namespace` of the
    /// client's cluster; it runs while someone holds it.
    pub fn rollout_watch(
        &self,
        cluster: &ClusterClient,
        namespace: &str,
    ) -> Arc<NamespaceWatch<DynamicObject>> {
        let resource = rollout::resource();
        let api = Api::namespaced_with(cluster.client.clone(), namespace, &resource);
        shared_watch(
            &self.rollout_watches,
            cluster,
            namespace,
            "rollouts",
            api,
            resource,
        )
    }
}

/// The watch of `resource` in `namespace` kept in `watches`, started when
/// nobody holds one.
fn shared_watch<K>(
    watches: &Watches<K>,
    cluster: &ClusterClient,
    namespace: &str,
    resource: &'static str,
    api: Api<K>,
    dyntype: K::DynamicType,
) -> Arc<NamespaceWatch<K>>
where
    K: Watched,
{
    let key = (
        cluster.cluster_id,
        cluster.fingerprint.clone(),
        namespace.to_string(),
    );
    let mut watches = watches.lock().expect("watches lock");
    if let Some(existing) = watches.get(&key).and_then(Weak::upgrade) {
        return existing;
    }
    watches.retain(|_, w| w.strong_count() > 0);
    // Shared by every rollout in the namespace, so no job's span is its parent.
    let span = tracing::info_span!(
        parent: None,
        "kube",
        cluster = %cluster.cluster,
        verb = "watch",
        resource,
        namespace,
    );
    let started = Arc::new(NamespaceWatch::start(api, dyntype, namespace, span));
    watches.insert(key, Arc::downgrade(&started));
    started
}

/// What a [`NamespaceWatch`] can hold.
pub trait Watched:
    kube::Resource<DynamicType: Clone + Eq + std::hash::Hash + Send + Sync>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Watched for K where
    K: kube::Resource<DynamicType: Clone + Eq + std::hash::Hash + Send + Sync>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// The Deployments of a namespace as its watch last saw them.
pub type DeploymentWatch = NamespaceWatch<Deployment>;

/// A namespace's objects of one kind as the watch last saw them, and a
/// counter that moves on every change.
pub struct NamespaceWatch<K: Watched> {
    namespace: String,
    dyntype: K::DynamicType,
    store: Store<K>,
    changes: watch::Receiver<u64>,
    health: Arc<Mutex<WatchHealth>>,
    task: tokio::task::JoinHandle<()>,
}

/// When a watch last heard from its cluster, and its last failure.
#[derive(Debug, Clone, Default)]
pub struct WatchHealth {
    /// Unix ms of the last event or (re)list; `None` before the first.
    pub last_ok: Option<i64>,
    /// The namespace was listed in full at least once: a Deployment the
    /// store lacks does not exist.
    pub listed: bool,
    /// Unix ms and message of the last failure (the watch retries).
    pub last_error: Option<(i64, String)>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl<K: Watched> NamespaceWatch<K> {
    fn start(api: Api<K>, dyntype: K::DynamicType, namespace: &str, span: tracing::Span) -> Self {
        let writer = reflector::store::Writer::new(dyntype.clone());
        let store = writer.as_reader();
        let (tx, changes) = watch::channel(0u64);
        let health = Arc::new(Mutex::new(WatchHealth::default()));
        let seen = health.clone();
        let task = tokio::spawn(
            async move {
                // The server ends each watch after 50 s; the watcher resumes from
                // the last resourceVersion (relisting on 410 Gone) and backs off
                // while the cluster is unreachable.
                let config = watcher::Config::default().timeout(50);
                let mut stream = std::pin::pin!(reflector::reflector(
                    writer,
                    watcher(api, config).default_backoff()
                ));
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(event) => {
                            let mut health = seen.lock().expect("watch health");
                            health.last_ok = Some(now_ms());
                            health.listed |= matches!(event, watcher::Event::InitDone);
                            drop(health);
                            tx.send_modify(|n| *n += 1)
                        }
                        Err(e) => {
                            seen.lock().expect("watch health").last_error =
                                Some((now_ms(), e.to_string()));
                            tracing::debug!(error = %e, "watch interrupted")
                        }
                    }
                }
            }
            .instrument(span),
        );
        Self {
            namespace: namespace.to_string(),
            dyntype,
            store,
            changes,
            health,
            task,
        }
    }

    /// When the watch last heard from the cluster, and its last failure.
    pub fn health(&self) -> WatchHealth {
        self.health.lock().expect("watch health").clone()
    }

    /// The object as last seen by the watch.
    pub fn get(&self, name: &str) -> Option<Arc<K>> {
        self.store
            .get(&ObjectRef::new_with(name, self.dyntype.clone()).within(&self.namespace))
    }

    /// A receiver that wakes on every change seen.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }
}

impl<K: Watched> Drop for NamespaceWatch<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a call does to which object: the fields of its tracing span.
#[derive(Clone, Copy)]
struct Target<'a> {
    verb: &'static str,
    resource: &'static str,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
}

impl<'a> Target<'a> {
    fn new(verb: &'static str, resource: &'static str) -> Self {
        Self {
            verb,
            resource,
            namespace: None,
            name: None,
        }
    }

    fn within(self, namespace: &'a str) -> Self {
        Self {
            namespace: Some(namespace),
            ..self
        }
    }

    fn named(self, name: &'a str) -> Self {
        Self {
            name: Some(name),
            ..self
        }
    }
}

impl ClusterClient {
    /// This client trying each call once: for a question a page asks on
    /// the way (a failure is an answer there, not worth waiting for).
    pub fn trying_once(&self) -> ClusterClient {
        let mut once = self.clone();
        once.settings.attempts = 1;
        once
    }

    /// The span of one call, so its retries and failures (and what the
    /// server logs meanwhile) can be told apart in the log.
    fn span(&self, target: Target<'_>) -> tracing::Span {
        tracing::info_span!(
            "kube",
            cluster = %self.cluster,
            verb = target.verb,
            resource = target.resource,
            namespace = target.namespace,
            name = target.name,
        )
    }

    /// Runs `call` with the deadline, retrying transient failures with
    /// exponential backoff, in the span of `target`.
    ///
    /// The request's future is boxed: kube-rs's request and its timeout
    /// take about 2 KB, and inline they would be part of every job that
    /// ever awaits a Kubernetes call, for the job's whole life — a
    /// thousand rollouts in flight would each carry them while they wait
    /// on the watch. Boxed, they take memory only while the call runs.
    async fn call<T, F, Fut>(
        &self,
        target: Target<'_>,
        what: &str,
        mut call: F,
    ) -> Result<T, KubeError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        Box::pin(
            async move {
                let mut pause = self.settings.backoff;
                let mut attempt = 1;
                loop {
                    let error = match tokio::time::timeout(self.settings.call_timeout, call()).await
                    {
                        Ok(Ok(value)) => return Ok(value),
                        Ok(Err(e)) => classify(what, e),
                        Err(_) => KubeError::Transient(format!(
                            "{what}: no answer within {} s",
                            self.settings.call_timeout.as_secs_f32()
                        )),
                    };
                    if !error.is_transient() || attempt >= self.settings.attempts {
                        return Err(error);
                    }
                    tracing::info!(error = %error, attempt, "retrying Kubernetes call");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    attempt += 1;
                }
            }
            .instrument(self.span(target)),
        )
        .await
    }

    /// The API server's version, e.g. `v1.31.0`.
    pub async fn version(&self) -> Result<String, KubeError> {
        let info = self
            .call(
                Target::new("get", "version"),
                "asking the API server its version",
                || self.client.apiserver_version(),
            )
            .await?;
        Ok(info.git_version)
    }

    /// Deployment `namespace/name`, or `None` when it does not exist.
    pub async fn deployment(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Deployment>, KubeError> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        self.call(
            Target::new("get", "deployments")
                .within(namespace)
                .named(name),
            &format!("reading Deployment {namespace}/{name}"),
            || api.get_opt(name),
        )
        .await
    }

    /// Sets the image of `container`, only if the Deployment still has the
    /// `resource_version` it was read at (a 409 otherwise).
    pub async fn patch_image(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        image: &str,
        resource_version: &str,
    ) -> Result<Deployment, KubeError> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": resource_version },
            "spec": { "template": { "spec": { "containers": [ { "name": container, "image": image } ] } } }
        });
        let params = PatchParams::default();
        let patch = Patch::Strategic(&patch);
        self.call(
            Target::new("patch", "deployments")
                .within(namespace)
                .named(name),
            &format!("updating the image of {namespace}/{name}"),
            || api.patch(name, &params, &patch),
        )
        .await
    }

    /// Pauses the Deployment's rollout (`spec.paused`) or resumes it, only
    /// if it still has the `resource_version` it was read at (a 409
    /// otherwise).
    pub async fn set_paused(
        &self,
        namespace: &str,
        name: &str,
        paused: bool,
        resource_version: &str,
    ) -> Result<Deployment, KubeError> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": resource_version },
            "spec": { "paused": paused }
        });
        let params = PatchParams::default();
        let patch = Patch::Merge(&patch);
        self.call(
            Target::new("patch", "deployments")
                .within(namespace)
                .named(name),
            &format!(
                "{} the rollout of {namespace}/{name}",
                if paused { "pausing" } else { "resuming" }
            ),
            || api.patch(name, &params, &patch),
        )
        .await
    }

    /// Writes `deployment` back whole (a 409 when it changed since read).
    pub async fn replace_deployment(
        &self,
        deployment: &Deployment,
    ) -> Result<Deployment, KubeError> {
        let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
        let name = deployment.metadata.name.clone().unwrap_or_default();
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &namespace);
        let params = PostParams::default();
        self.call(
            Target::new("replace", "deployments")
                .within(&namespace)
                .named(&name),
            &format!("writing Deployment {namespace}/{name}"),
            || api.replace(&name, &params, deployment),
        )
        .await
    }

    /// The ReplicaSets a Deployment owns.
    pub async fn replica_sets_of(
        &self,
        deployment: &Deployment,
    ) -> Result<Vec<ReplicaSet>, KubeError> {
        let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &namespace);
        let params = ListParams::default().labels(&deployment::selector_string(deployment));
        let list = self
            .call(
                Target::new("list", "replicasets").within(&namespace),
                &format!("listing the ReplicaSets in {namespace}"),
                || api.list(&params),
            )
            .await?;
        let uid = deployment.metadata.uid.clone();
        Ok(list
            .items
            .into_iter()
            .filter(|rs| {
                rs.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.kind == "Deployment" && Some(&o.uid) == uid.as_ref())
            })
            .collect())
    }

    /// Pods in `namespace` matching `labels` (a label selector string).
    pub async fn pods(&self, namespace: &str, labels: &str) -> Result<Vec<Pod>, KubeError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = ListParams::default().labels(labels);
        Ok(self
            .call(
                Target::new("list", "pods").within(namespace),
                &format!("listing pods in {namespace}"),
                || api.list(&params),
            )
            .await?
            .items)
    }

    /// Pod `namespace/name`, or `None`.
    pub async fn pod(&self, namespace: &str, name: &str) -> Result<Option<Pod>, KubeError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        self.call(
            Target::new("get", "pods").within(namespace).named(name),
            &format!("reading pod {namespace}/{name}"),
            || api.get_opt(name),
        )
        .await
    }

    /// The last `tail` lines of a container's log.
    pub async fn logs(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        tail: i64,
    ) -> Result<String, KubeError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = LogParams {
            container: Some(container.to_string()),
            tail_lines: Some(tail),
            ..LogParams::default()
        };
        self.call(
            Target::new("logs", "pods").within(namespace).named(pod),
            &format!("reading the log of {namespace}/{pod}"),
            || api.logs(pod, &params),
        )
        .await
    }

    /// A container's log as it is written, from the last `tail` lines on.
    pub async fn follow_logs(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        tail: i64,
    ) -> Result<impl futures::io::AsyncBufRead + use<>, KubeError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = LogParams {
            container: Some(container.to_string()),
            tail_lines: Some(tail),
            follow: true,
            ..LogParams::default()
        };
        let span = self.span(Target::new("follow", "pods").within(namespace).named(pod));
        let opened = tokio::time::timeout(self.settings.call_timeout, api.log_stream(pod, &params))
            .instrument(span)
            .await;
        match opened {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(classify(
                &format!("following the log of {namespace}/{pod}"),
                e,
            )),
            Err(_) => Err(KubeError::Transient(format!(
                "following the log of {namespace}/{pod}: no answer"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: http://127.0.0.1:6443\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: u\ncurrent-context: sim\nusers:\n- name: u\n  user:\n    token: secret-token\n";

    fn credentials(access: ClusterAccess, fingerprint: &str) -> ClusterCredentials {
        ClusterCredentials {
            id: 7,
            name: "prod".into(),
            access,
            fingerprint: fingerprint.into(),
        }
    }

    fn kubeconfig(yaml: &str) -> ClusterAccess {
        ClusterAccess::Kubeconfig {
            yaml: Secret::new(yaml.to_string()),
            context: None,
        }
    }

    #[tokio::test]
    async fn a_client_is_built_from_the_credentials_handed_over_and_kept_while_they_stay() {
        let driver = KubeDriver::new(KubeSettings::default());
        let first = driver
            .client(&credentials(kubeconfig(KUBECONFIG), "a"))
            .await
            .unwrap();
        assert_eq!((first.cluster_id, first.cluster.as_str()), (7, "prod"));
        // Same fingerprint: the cached client, whatever else is handed.
        let cached = driver
            .client(&credentials(ClusterAccess::Missing, "a"))
            .await
            .unwrap();
        assert_eq!(cached.fingerprint, "a");
        // A new fingerprint is a new connection, checked again.
        let err = driver
            .client(&credentials(ClusterAccess::Missing, "b"))
            .await
            .err()
            .unwrap();
        assert_eq!(
            err,
            KubeError::Refused("cluster prod has no kubeconfig; set one on its page".into())
        );
    }

    #[tokio::test]
    async fn unusable_credentials_are_refused_by_name() {
        let driver = KubeDriver::new(KubeSettings::default());
        let err = driver
            .client(&credentials(ClusterAccess::Unreadable, "u"))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&err, KubeError::Refused(m) if m.contains("prod") && m.contains("cannot be decrypted")),
            "{err}"
        );
        // A kubeconfig that would run a command is refused before kube-rs
        // reads it, however it reached the driver.
        let exec = KUBECONFIG.replace(
            "    token: secret-token\n",
            "    exec: {command: /bin/sh, apiVersion: client.authentication.k8s.io/v1}\n",
        );
        let err = driver
            .client(&credentials(kubeconfig(&exec), "e"))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&err, KubeError::Refused(m) if m.contains("is refused")),
            "{err}"
        );
    }
}
