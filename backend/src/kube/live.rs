//! What runs where, kept current without asking on the request path: the
//! Deployment watches of every namespace some app lives in, held for as
//! long as an app is there. A refresher outside this module says which
//! namespaces to hold ([`LiveDeployments::hold`]); pages read the watches'
//! stores ([`LiveDeployments::read`]) and never wait for a cluster.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::Deployment;
use tokio::sync::Notify;

use super::deployment::container_image;
use super::{ClusterClient, DeploymentWatch, KubeDriver};

/// A namespace of a cluster, by the cluster's id.
pub type NamespaceKey = (i64, String);

/// One Deployment as the watch last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveDeployment {
    /// The image of the app's container (`None`: no such container).
    pub image: Option<String>,
    /// `spec.replicas` (1 when unset, as Kubernetes defaults it).
    pub desired: i32,
    pub ready: i32,
    /// Replicas already on the newest pod template.
    pub updated: i32,
    /// The Deployment's revision annotation.
    pub revision: Option<String>,
}

/// What is known of one Deployment now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveRead {
    /// The watch has it.
    Found(LiveDeployment),
    /// The namespace was listed and the Deployment is not in it.
    Missing,
    /// Nothing is known yet, or the cluster cannot be read: why.
    Unknown(String),
}

/// A read with how fresh it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveStatus {
    pub read: LiveRead,
    /// Unix ms up to which the reading is known to be current: now while
    /// the watch is connected, else when it last heard from the cluster.
    pub as_of: Option<i64>,
    /// The watch's last failure since then, if any: the read may be stale.
    pub stale_because: Option<String>,
}

enum Held {
    Watching(Arc<DeploymentWatch>),
    /// The cluster's client could not be made (no credentials, refused).
    Unreadable(String),
}

/// The held watches, by namespace.
pub struct LiveDeployments {
    held: Mutex<HashMap<NamespaceKey, Held>>,
    /// Woken when a page asks for a namespace not held yet.
    wanted: Notify,
}

impl Default for LiveDeployments {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveDeployments {
    pub fn new() -> Self {
        Self {
            held: Mutex::new(HashMap::new()),
            wanted: Notify::new(),
        }
    }

    /// Holds a watch on each namespace given (or the reason its cluster
    /// cannot be read) and lets go of the others.
    pub fn hold(
        &self,
        driver: &KubeDriver,
        namespaces: Vec<(NamespaceKey, Result<ClusterClient, String>)>,
    ) {
        let mut next = HashMap::new();
        for ((cluster_id, namespace), client) in namespaces {
            let held = match client {
                Ok(client) => Held::Watching(driver.watch(&client, &namespace)),
                Err(why) => Held::Unreadable(why),
            };
            next.insert((cluster_id, namespace), held);
        }
        *self.held.lock().expect("live lock") = next;
    }

    /// Resolves when a page asked for a namespace that is not held.
    pub async fn wanted(&self) {
        self.wanted.notified().await;
    }

    /// Deployment `name` of `namespace` in cluster `cluster_id`, and the
    /// image of its `container`, as the held watch last saw it.
    pub fn read(
        &self,
        cluster_id: i64,
        namespace: &str,
        name: &str,
        container: &str,
    ) -> LiveStatus {
        let held = self.held.lock().expect("live lock");
        let unknown = |why: &str| LiveStatus {
            read: LiveRead::Unknown(why.to_string()),
            as_of: None,
            stale_because: None,
        };
        match held.get(&(cluster_id, namespace.to_string())) {
            None => {
                self.wanted.notify_one();
                unknown("not read yet")
            }
            Some(Held::Unreadable(why)) => unknown(why),
            Some(Held::Watching(watch)) => {
                let health = watch.health();
                let stale_because = match (&health.last_error, health.last_ok) {
                    (Some((at, why)), Some(ok)) if *at > ok => Some(why.clone()),
                    (Some((_, why)), None) => Some(why.clone()),
                    _ => None,
                };
                let read = match watch.get(name) {
                    Some(deployment) => LiveRead::Found(summarise(&deployment, container)),
                    None if health.listed => LiveRead::Missing,
                    None => LiveRead::Unknown(
                        stale_because
                            .clone()
                            .unwrap_or_else(|| "not read yet".to_string()),
                    ),
                };
                // A watch that has not failed since it last heard from the
                // cluster is connected: its reading is current now.
                let as_of = match (&stale_because, health.last_ok) {
                    (None, Some(_)) => Some(super::now_ms()),
                    (_, last) => last,
                };
                LiveStatus {
                    read,
                    as_of,
                    stale_because,
                }
            }
        }
    }
}

/// The parts of a Deployment a status row shows.
pub fn summarise(deployment: &Deployment, container: &str) -> LiveDeployment {
    let status = deployment.status.clone().unwrap_or_default();
    LiveDeployment {
        image: container_image(deployment, container).map(str::to_string),
        desired: deployment.spec.replicas.unwrap_or(1),
        ready: status.ready_replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        revision: super::deployment::revision(&deployment.metadata),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_not_held_is_unknown_and_asks_for_it() {
        let live = LiveDeployments::new();
        let status = live.read(1, "shop", "cart", "app");
        assert_eq!(status.read, LiveRead::Unknown("not read yet".into()));
        // The refresher is woken (the permit is stored).
        let woken = futures::FutureExt::now_or_never(live.wanted());
        assert!(woken.is_some(), "the refresher is asked for the namespace");
    }

    #[test]
    fn a_cluster_that_cannot_be_read_says_why() {
        let live = LiveDeployments::new();
        let driver = KubeDriver::new(crate::kube::KubeSettings::default());
        live.hold(
            &driver,
            vec![(
                (1, "shop".into()),
                Err("cluster prod has no kubeconfig".into()),
            )],
        );
        assert_eq!(
            live.read(1, "shop", "cart", "app").read,
            LiveRead::Unknown("cluster prod has no kubeconfig".into())
        );
    }

    #[test]
    fn a_summary_reads_replicas_and_the_containers_image() {
        let deployment: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cart", "annotations": {"deployment.kubernetes.io/revision": "4"}},
            "spec": {"replicas": 3, "selector": {}, "template": {"spec": {"containers": [
                {"name": "app", "image": "reg/cart:v2"}, {"name": "proxy", "image": "envoy"}
            ]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3}
        }))
        .unwrap();
        assert_eq!(
            summarise(&deployment, "app"),
            LiveDeployment {
                image: Some("reg/cart:v2".into()),
                desired: 3,
                ready: 2,
                updated: 3,
                revision: Some("4".into()),
            }
        );
        assert_eq!(summarise(&deployment, "nope").image, None);
    }
}
