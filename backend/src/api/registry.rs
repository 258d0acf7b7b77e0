//! Clusters and apps. Clusters are shared infrastructure: only admins see
//! and change them. Apps hang on a tree node: whoever may view the node may
//! read them (CI looks apps up), only admins change them. Kubeconfigs are
//! write-only.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiActor;
use super::{ApiJson, ApiPath, ApiQuery};
use crate::app::AppState;
use crate::auth::Action;
use crate::db::apps::{self, App, AppFields, AppFilter};
use crate::db::clusters::{self, Cluster, ClusterUpdate, Connection, TokenChange};
use crate::domain::cluster::Environment;
use crate::error::{Error, ErrorBody, Result};
use crate::secret::Secret;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_clusters, create_cluster))
        .routes(routes!(get_cluster, update_cluster, delete_cluster))
        .routes(routes!(test_cluster))
        .routes(routes!(set_prometheus, remove_prometheus))
        .routes(routes!(test_prometheus))
        .routes(routes!(list_apps, create_app))
        .routes(routes!(get_app, update_app, delete_app))
}

fn parse_env(raw: &str) -> Result<Environment> {
    raw.parse()
        .map_err(|m: String| Error::validation("environment", m))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCluster {
    #[schema(pattern = r"^[a-z](-?[a-z0-9])*$", min_length = 1, max_length = 63)]
    pub name: String,
    /// `dev`, `test`, `staging` or `prod`.
    #[schema(pattern = r"^(dev|test|staging|prod)$")]
    pub environment: String,
    /// Kubeconfig YAML (write-only; never returned). Required unless
    /// `in_cluster` is true.
    pub kubeconfig: Option<String>,
    /// Context to use; the kubeconfig's current context when absent.
    pub context: Option<String>,
    /// Use the service account of the pod Rollway runs in.
    #[serde(default)]
    pub in_cluster: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCluster {
    /// `dev`, `test`, `staging` or `prod`.
    #[schema(pattern = r"^(dev|test|staging|prod)$")]
    pub environment: Option<String>,
    /// Replaces the stored kubeconfig (with `context`, when given).
    pub kubeconfig: Option<String>,
    pub context: Option<String>,
    /// Switch to in-cluster credentials.
    pub in_cluster: Option<bool>,
}

fn connection(
    kubeconfig: Option<String>,
    context: Option<String>,
    in_cluster: bool,
) -> Result<Option<Connection>> {
    match (kubeconfig, in_cluster) {
        (Some(_), true) => Err(Error::validation(
            "kubeconfig",
            "give a kubeconfig or in_cluster, not both",
        )),
        (Some(yaml), false) => Ok(Some(Connection::Kubeconfig {
            yaml: Secret::new(yaml),
            context: context.filter(|c| !c.is_empty()),
        })),
        (None, true) => Ok(Some(Connection::InCluster)),
        (None, false) => Ok(None),
    }
}

/// Every cluster (admins; credentials never included).
#[utoipa::path(
    get, path = "/api/v1/clusters", tag = "registry", security(("bearer" = [])),
    responses((status = 200, body = [Cluster]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody))
)]
async fn list_clusters(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
) -> Result<Json<Vec<Cluster>>> {
    state.policy.require(&actor, Action::ManageRegistry, "/")?;
    Ok(Json(clusters::list(&state.db.pool).await?))
}

/// Registers a cluster.
#[utoipa::path(
    post, path = "/api/v1/clusters", tag = "registry", security(("bearer" = [])),
    request_body = CreateCluster,
    responses((status = 201, body = Cluster), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn create_cluster(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiJson(body): ApiJson<CreateCluster>,
) -> Result<(StatusCode, Json<Cluster>)> {
    state.policy.require(&actor, Action::ManageRegistry, "/")?;
    let env = parse_env(&body.environment)?;
    let conn = connection(body.kubeconfig, body.context, body.in_cluster)?
        .ok_or_else(|| Error::validation("kubeconfig", "give a kubeconfig, or set in_cluster"))?;
    let cluster =
        clusters::create(&state.db, &state.sealer, body.name.trim(), env, &conn, &who).await?;
    Ok((StatusCode::CREATED, Json(cluster)))
}

/// One cluster (admins).
#[utoipa::path(
    get, path = "/api/v1/clusters/{id}", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Cluster id")),
    responses((status = 200, body = Cluster), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn get_cluster(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Cluster>> {
    state.policy.require(&actor, Action::ManageRegistry, "/")?;
    Ok(Json(clusters::get(&state.db.pool, id).await?))
}

/// What a connection test found.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ConnectionTest {
    pub cluster: String,
    /// The API server's version, e.g. `v1.31.0`.
    pub version: String,
}

/// Connects to the cluster with its stored credentials and asks the API
/// server its version: 200 when it answers, 502 naming the failure.
#[utoipa::path(
    post, path = "/api/v1/clusters/{id}/test", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Cluster id")),
    responses((status = 200, body = ConnectionTest), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 502, body = ErrorBody))
)]
async fn test_cluster(
    State(state): State<AppState>,
    ApiActor(actor, _who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ConnectionTest>> {
    state.policy.require(&actor, Action::ManageRegistry, "/")?;
    let cluster = clusters::get(&state.db.pool, id).await?;
    let version = crate::flows::test_connection(&state, &cluster).await?;
    Ok(Json(ConnectionTest {
        cluster: cluster.name,
        version,
    }))
}

/// A cluster's Prometheus, for verification gates.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusBody {
    /// Base URL, e.g. `http://prometheus.monitoring:9090` (http or https;
    /// no credentials, query or fragment).
    #[schema(min_length = 1, max_length = 2000, pattern = r"^https?://[^\s]*$")]
    pub url: String,
    /// A bearer token to send (write-only: never shown). Absent: the stored
    /// one is kept.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 4096)]
    pub token: Option<String>,
    /// Remove the stored token.
    #[serde(default)]
    pub clear_token: bool,
}

/// Sets the Prometheus verification gates query for this cluster.
#[utoipa::path(
    put, path = "/api/v1/clusters/{id}/prometheus", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Cluster id")),
    request_body = PrometheusBody,
    responses((status = 200, body = Cluster), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn set_prometheus(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<PrometheusBody>,
) -> Result<Json<Cluster>> {
    state.policy.require(&actor, Action::ManageRegistry, "/")?;
    let token = match (body.token, body.clear_token) {
        (Some(_), true) => {
            return Err(Error::validation(
                "token",
                "give a token or clear it, not both",
            ));
        }
        (Some(t), false) => TokenChange::Set(Secret::new(t)),
        (None, true) => TokenChange::Clear,
        (None, false) => TokenChange::Keep,
    };
    Ok(Json(
        clusters::set_prometheus(&state.db, &state.sealer, id, Some((&body.url, token)), &who)
            .await?,
    ))
}

/// Removes the cluster's Prometheus (its URL and token).
#[utoipa::path(
    delete, path = "/api/v1/clusters/{id}/prometheus", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Cluster id")),
    responses((status = 200, body = Cluster), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn remove_prometheus(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Cluster>> {
    state.policy.require(&actor, Action::ManageRegistry, "/")?;
    Ok(Json(
        clusters::set_prometheus(&state.db, &state.sealer, id, None, &who).await?,
    ))
}

/// What a Prometheus test found.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct PrometheusTest {
    pub cluster: String,
    /// Prometheus' answer to `1+1`.
    pub result: f64,
}

/// Asks the cluster's Prometheus `1+1` with the stored URL and token: 200
/// when it answers 2, 409 when the cluster has no Prometheus, 502 naming
/// Prometheus' error (`errorType`, `error`) or why it did not answer.
#[utoipa::path(
    post, path = "/api/v1/clusters/{id}/prometheus/test", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Cluster id")),
    responses((status = 200, body = PrometheusTest), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 502, body = ErrorBody))
)]
async fn test_prometheus(
    State(state): State<AppState>,
    ApiActor(actor, _who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<PrometheusTest>> {
    state.policy.require(&actor, Action::ManageRegistry, "/")?;
    let cluster = clusters::get(&state.db.pool, id).await?;
    let result = crate::flows::clusters::test_prometheus(&state, id).await?;
    Ok(Json(PrometheusTest {
        cluster: cluster.name,
        result,
    }))
}

/// Changes the environment or replaces the credentials.
#[utoipa::path(
    patch, path = "/api/v1/clusters/{id}", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Cluster id")),
    request_body = UpdateCluster,
    responses((status = 200, body = Cluster), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn update_cluster(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UpdateCluster>,
) -> Result<Json<Cluster>> {
    state.policy.require(&actor, Action::ManageRegistry, "/")?;
    clusters::get(&state.db.pool, id).await?;
    let update = ClusterUpdate {
        environment: body.environment.as_deref().map(parse_env).transpose()?,
        connection: connection(
            body.kubeconfig,
            body.context,
            body.in_cluster.unwrap_or(false),
        )?,
    };
    Ok(Json(
        clusters::update(&state.db, &state.sealer, id, update, &who).await?,
    ))
}

/// Removes a cluster that no app uses (409 naming the apps otherwise).
#[utoipa::path(
    delete, path = "/api/v1/clusters/{id}", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Cluster id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
async fn delete_cluster(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode> {
    state.policy.require(&actor, Action::ManageRegistry, "/")?;
    clusters::delete(&state.db, id, &who).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AppQuery {
    /// Cluster name.
    cluster: Option<String>,
    /// App name.
    name: Option<String>,
    /// Tree node id.
    node_id: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppBody {
    #[schema(pattern = r"^[a-z](-?[a-z0-9])*$", min_length = 1, max_length = 63)]
    pub name: String,
    pub cluster_id: i64,
    #[schema(
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        min_length = 1,
        max_length = 63
    )]
    pub namespace: String,
    #[schema(
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        min_length = 1,
        max_length = 63
    )]
    pub deployment: String,
    #[schema(
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        min_length = 1,
        max_length = 63
    )]
    pub container: String,
    /// The Service canary stages route requests through; give `ingress`
    /// too, or neither (then canaries shift pods, not traffic).
    #[serde(default)]
    #[schema(
        pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$",
        min_length = 1,
        max_length = 56
    )]
    pub service: Option<String>,
    /// The nginx Ingress in front of `service`.
    #[serde(default)]
    #[schema(
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        min_length = 1,
        max_length = 246
    )]
    pub ingress: Option<String>,
    pub node_id: i64,
}

/// A name given or not: blank is not given.
fn named(name: Option<String>) -> Option<String> {
    name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty())
}

impl From<AppBody> for AppFields {
    fn from(b: AppBody) -> Self {
        AppFields {
            name: b.name.trim().to_string(),
            cluster_id: b.cluster_id,
            namespace: b.namespace.trim().to_string(),
            deployment: b.deployment.trim().to_string(),
            container: b.container.trim().to_string(),
            service: named(b.service),
            ingress: named(b.ingress),
            node_id: b.node_id,
        }
    }
}

/// Looks up the apps the caller may view (all filters optional).
#[utoipa::path(
    get, path = "/api/v1/apps", tag = "registry", security(("bearer" = [])),
    params(AppQuery),
    responses((status = 200, body = [App]), (status = 401, body = ErrorBody))
)]
async fn list_apps(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
    ApiQuery(q): ApiQuery<AppQuery>,
) -> Result<Json<Vec<App>>> {
    let filter = AppFilter {
        cluster: q.cluster.filter(|s| !s.is_empty()),
        name: q.name.filter(|s| !s.is_empty()),
        node_id: q.node_id,
    };
    let scope = state.policy.read_scope(&state.db, &actor).await?;
    Ok(Json(apps::list(&state.db.pool, &filter, &scope).await?))
}

/// An app as saved, with what its cluster says about its Deployment.
#[derive(Serialize, ToSchema)]
pub struct SavedApp {
    #[serde(flatten)]
    pub app: App,
    /// What is wrong with the app's Deployment now (it does not exist, lacks
    /// the container, or could not be checked); saving is not refused for
    /// it. Empty when the Deployment is as the app says.
    pub warnings: Vec<String>,
}

async fn saved(state: &AppState, app: App) -> SavedApp {
    let warnings = crate::flows::clusters::app_warning(state, &app)
        .await
        .into_iter()
        .collect();
    SavedApp { app, warnings }
}

/// Registers an app; `warnings` says when its Deployment is not (yet) in
/// the cluster.
#[utoipa::path(
    post, path = "/api/v1/apps", tag = "registry", security(("bearer" = [])),
    request_body = AppBody,
    responses((status = 201, body = SavedApp), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn create_app(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiJson(body): ApiJson<AppBody>,
) -> Result<(StatusCode, Json<SavedApp>)> {
    state.policy.require(&actor, Action::ManageRegistry, "/")?;
    let app = apps::create(&state.db, &body.into(), &who).await?;
    Ok((StatusCode::CREATED, Json(saved(&state, app).await)))
}

/// One app.
#[utoipa::path(
    get, path = "/api/v1/apps/{id}", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path, description = "App id")),
    responses((status = 200, body = App), (status = 404, body = ErrorBody))
)]
async fn get_app(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<App>> {
    Ok(Json(
        state
            .policy
            .visible(&actor, apps::get(&state.db.pool, id).await)?,
    ))
}

/// Replaces an app's fields; `warnings` as when it is registered.
#[utoipa::path(
    patch, path = "/api/v1/apps/{id}", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path, description = "App id")),
    request_body = AppBody,
    responses((status = 200, body = SavedApp), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn update_app(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<AppBody>,
) -> Result<Json<SavedApp>> {
    state.policy.require(&actor, Action::ManageRegistry, "/")?;
    apps::get(&state.db.pool, id).await?;
    let app = apps::update(&state.db, id, &body.into(), &who).await?;
    Ok(Json(saved(&state, app).await))
}

/// Removes an app no release stage targets (409 naming the items otherwise).
#[utoipa::path(
    delete, path = "/api/v1/apps/{id}", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path, description = "App id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
async fn delete_app(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode> {
    state.policy.require(&actor, Action::ManageRegistry, "/")?;
    apps::delete(&state.db, id, &who).await?;
    Ok(StatusCode::NO_CONTENT)
}
