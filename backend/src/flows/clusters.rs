//! Cluster flows: a cluster's client from its stored credentials, a
//! stage's live Deployment, whether canary stages can run (their clusters
//! serve OpenKruise Rollout, their apps name where traffic goes), and
//! Kubernetes failures as the API reports them.

use k8s_openapi::api::apps::v1::Deployment;

use crate::app::AppState;
use crate::db::apps::{self, App};
use crate::db::clusters::{self, Cluster};
use crate::db::release_items::Stage;
use crate::db::work_orders::StageTarget;
use crate::domain::release_item::{StageSpec, Strategy};
use crate::engine::rollouts_not_served;
use crate::error::{Error, Result};
use crate::kube::deployment::{container_image, container_names};
use crate::kube::rollout::Routing;
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

/// Refuses (422) a plan with a stage its cluster cannot run: metric gates
/// on a cluster without a Prometheus (`stages[i].verify`), a canary stage
/// that shifts traffic on an app naming no Service and Ingress to route it
/// through, or whose app's cluster answers that it does not serve
/// OpenKruise Rollout (`stages`); the clusters of the item's canary stages
/// as stored (`saved`) are not asked about again. A cluster that cannot be
/// asked (one try, within [`LOOK_DEADLINE`]) does not stop the save: the
/// deploy asks again.
pub async fn check_stages(state: &AppState, stages: &[StageSpec], saved: &[Stage]) -> Result<()> {
    for (i, stage) in stages.iter().enumerate() {
        if stage.verify.as_ref().is_some_and(|v| !v.gates.is_empty())
            && let Ok(app) = apps::get(&state.db.pool, stage.app_id).await
            && clusters::get(&state.db.pool, app.cluster_id)
                .await
                .is_ok_and(|c| c.prometheus_url.is_none())
        {
            return Err(Error::validation(
                format!("stages[{i}].verify"),
                format!(
                    "stage {} ({}) has metric gates, but cluster {} has no Prometheus to ask: \
                     an admin sets its URL on the cluster's page first",
                    i + 1,
                    stage.name,
                    app.cluster
                ),
            ));
        }
        let Some(plan) = stage
            .canary
            .as_ref()
            .filter(|_| stage.strategy == Strategy::Canary)
        else {
            continue;
        };
        let Ok(app) = apps::get(&state.db.pool, stage.app_id).await else {
            continue;
        };
        let refused = |why: String| {
            Error::validation(
                "stages",
                format!("stage {} ({}) is a canary stage: {why}", i + 1, stage.name),
            )
        };
        Routing::of(
            plan,
            &app.name,
            app.service.as_deref(),
            app.ingress.as_deref(),
        )
        .map_err(refused)?;
        let saved = saved
            .iter()
            .any(|b| b.strategy == Strategy::Canary && b.app_id == stage.app_id);
        if saved {
            continue;
        }
        let asked = async {
            let client = cluster_client(state, app.cluster_id, &app.cluster).await?;
            client
                .trying_once()
                .serves_rollouts()
                .await
                .map_err(|e| kube_error(&app.cluster, e))
        };
        if let Ok(Ok(false)) = tokio::time::timeout(LOOK_DEADLINE, asked).await {
            return Err(refused(rollouts_not_served(&app.cluster)));
        }
    }
    Ok(())
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

/// How long a page waits for a cluster to say what a Deployment is (the
/// deploy confirmation, the check when an app is saved).
pub const LOOK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);

/// Deployment `namespace/name` of cluster `cluster_id` (named `cluster`),
/// asked with [`LOOK_DEADLINE`]: `Ok(None)` when it does not exist, `Err`
/// saying in words why it could not be read.
pub async fn look_at_deployment(
    state: &AppState,
    cluster_id: i64,
    cluster: &str,
    namespace: &str,
    name: &str,
) -> std::result::Result<Option<Deployment>, String> {
    let client = cluster_client(state, cluster_id, cluster)
        .await
        .map_err(|e| e.public_message())?;
    match tokio::time::timeout(LOOK_DEADLINE, client.deployment(namespace, name)).await {
        Err(_) => Err(format!("cluster {cluster} did not answer in time")),
        Ok(Err(e)) => Err(kube_error(cluster, e).public_message()),
        Ok(Ok(found)) => Ok(found),
    }
}

/// What is wrong with `app`'s Deployment as its cluster sees it now, if
/// anything. Saving an app does not wait for the Deployment to exist (it
/// may be created after); this is the warning the person saving it sees.
pub async fn app_warning(state: &AppState, app: &App) -> Option<String> {
    match look_at_deployment(
        state,
        app.cluster_id,
        &app.cluster,
        &app.namespace,
        &app.deployment,
    )
    .await
    {
        Err(why) => Some(format!("The Deployment could not be checked: {why}.")),
        Ok(None) => Some(format!(
            "Deployment {}/{} does not exist in cluster {}: deploys to this app fail until it does.",
            app.namespace, app.deployment, app.cluster
        )),
        Ok(Some(deployment)) if container_image(&deployment, &app.container).is_none() => {
            Some(format!(
                "Deployment {}/{} has no container {} (it has {}): deploys to this app fail until it does.",
                app.namespace,
                app.deployment,
                app.container,
                container_names(&deployment).join(", ")
            ))
        }
        Ok(Some(_)) => None,
    }
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

/// Runs `query` on the Prometheus of cluster `cluster_id`: its samples,
/// 409 when the cluster has none, 502 naming Prometheus' refusal or why it
/// did not answer.
pub async fn prometheus_query(
    state: &AppState,
    cluster_id: i64,
    query: &str,
) -> Result<Vec<crate::prometheus::Sample>> {
    let access = clusters::prometheus_access(&state.db.pool, &state.sealer, cluster_id)
        .await?
        .ok_or_else(|| {
            Error::Conflict("this cluster has no Prometheus: set its URL first".into())
        })?;
    state
        .prometheus
        .query(&access, query)
        .await
        .map_err(|e| Error::Upstream(e.to_string()))
}

/// Asks the cluster's Prometheus `1+1`: its answer (2), or why not.
pub async fn test_prometheus(state: &AppState, cluster_id: i64) -> Result<f64> {
    let samples = prometheus_query(state, cluster_id, "1+1").await?;
    match samples.as_slice() {
        [one] if one.value == 2.0 => Ok(one.value),
        _ => Err(Error::Upstream(format!(
            "Prometheus answered 1+1 with {:?}, not 2",
            samples.iter().map(|s| s.value).collect::<Vec<_>>()
        ))),
    }
}
