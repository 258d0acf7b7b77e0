//! Cluster flows: a cluster's client from its stored credentials, a
//! stage's live Deployment, and Kubernetes failures as the API reports them.

use k8s_openapi::api::apps::v1::Deployment;

use crate::app::AppState;
use crate::db::clusters::{self, Cluster};
use crate::db::work_orders::StageTarget;
use crate::error::{Error, Result};
use crate::kube::{ClusterClient, KubeError};

/// The client of cluster `id` (named `name` in errors): its credentials
/// opened by `db`, then handed to the driver.
pub async fn cluster_client(state: &AppState, id: i64, name: &str) -> Result<ClusterClient> {
    let credentials = clusters::credentials(&state.db.pool, &state.sealer, id).await?;
    state
        .kube
        .client(&credentials)
        .await
        .map_err(|e| kube_error(name, e))
}

/// A stage's cluster client and its live Deployment (`None` when the
/// Deployment does not exist).
pub async fn stage_deployment(
    state: &AppState,
    target: &StageTarget,
) -> Result<(ClusterClient, Option<Deployment>)> {
    let client = cluster_client(state, target.cluster_id, &target.cluster).await?;
    let deployment = client
        .deployment(&target.namespace, &target.deployment)
        .await
        .map_err(|e| kube_error(&target.cluster, e))?;
    Ok((client, deployment))
}

/// A Kubernetes failure as the API reports it: 502 naming the cluster.
pub fn kube_error(cluster: &str, e: KubeError) -> Error {
    Error::Upstream(format!("Kubernetes cluster {cluster}: {}", e.message()))
}

/// Asks cluster `cluster`'s API server its version with the stored
/// credentials (the "Test connection" action).
pub async fn test_connection(state: &AppState, cluster: &Cluster) -> Result<String> {
    cluster_client(state, cluster.id, &cluster.name)
        .await?
        .version()
        .await
        .map_err(|e| kube_error(&cluster.name, e))
}
