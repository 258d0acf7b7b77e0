//! The CI fast path: deploy an image straight to an app on a dev or test
//! cluster (or a lane of it), follow the deployment, list an app's
//! deployments and lanes, remove a lane.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiActor;
use super::idempotency::{self, IdempotencyKey};
use super::{ApiJson, ApiPath};
use crate::api::work_orders::VerifyResult;
use crate::app::AppState;
use crate::db::apps;
use crate::db::deployments::{self, DeploymentEvent, FastDeployment, Lane};
use crate::db::verify::{self as results, Of};
use crate::error::{ErrorBody, Result};
use crate::flows::fast_path::{self, DeployRequest};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_deployments, deploy))
        .routes(routes!(get_deployment))
        .routes(routes!(list_lanes))
        .routes(routes!(remove_lane))
}

/// What to deploy.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployBody {
    /// A container image reference with a tag or digest, e.g.
    /// `registry.example.com/shop/web:1.4.0-rc.1`; in the repository of
    /// the app's release items when it has any.
    pub image: String,
    /// A branch's slug (GitLab's `$CI_COMMIT_REF_SLUG`): deploy to the
    /// lane's copy of the app (`<deployment>--<lane>`, made on first use)
    /// instead of the app's own Deployment.
    #[serde(default)]
    pub lane: Option<String>,
}

/// A deployment with its history.
#[derive(Serialize, ToSchema)]
pub struct DeploymentDetail {
    #[serde(flatten)]
    pub deployment: FastDeployment,
    /// Each change of its status, oldest first.
    pub events: Vec<DeploymentEvent>,
    /// Each measurement of a gate and attempt of a smoke check of its
    /// verification, in the order taken.
    pub checks: Vec<VerifyResult>,
}

/// Deploys an image straight to an app on a `dev` or `test` cluster (the
/// CI fast path), or to one of its lanes. Answers at once with the
/// deployment, `pending`; follow it with `GET /api/v1/deployments/{id}`.
/// Staging and prod clusters answer 403 `environment_protected`: file a
/// work order there.
#[utoipa::path(
    post, path = "/api/v1/apps/{id}/deployments", tag = "deployments", security(("bearer" = [])),
    params(
        ("id" = i64, Path, description = "App id"),
        ("Idempotency-Key" = Option<String>, Header, description = idempotency::DESCRIPTION),
    ),
    request_body = DeployBody,
    responses(
        (status = 202, body = FastDeployment), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 502, body = ErrorBody)
    )
)]
async fn deploy(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<DeployBody>,
) -> Response {
    let scope = format!("POST /api/v1/apps/{id}/deployments");
    idempotency::once(&state.db, &actor, key, &scope, &body, async {
        let request = DeployRequest {
            app_id: id,
            image: &body.image,
            lane: body.lane.as_deref(),
        };
        match fast_path::deploy(&state, &actor, &who, &request).await {
            Ok(created) => (StatusCode::ACCEPTED, Json(created)).into_response(),
            Err(e) => e.into_response(),
        }
    })
    .await
}

/// An app's fast-path deployments, newest first (the last 50).
#[utoipa::path(
    get, path = "/api/v1/apps/{id}/deployments", tag = "deployments", security(("bearer" = [])),
    params(("id" = i64, Path, description = "App id")),
    responses((status = 200, body = [FastDeployment]))
)]
async fn list_deployments(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<FastDeployment>>> {
    let app = state
        .policy
        .visible(&actor, apps::get(&state.db.pool, id).await)?;
    Ok(Json(
        deployments::list_for_app(&state.db.pool, app.id, 50).await?,
    ))
}

/// A fast-path deployment: `pending`, `rolling_out` (its verification
/// included), `succeeded` or `failed`, with a message, its history and
/// what its verification measured.
#[utoipa::path(
    get, path = "/api/v1/deployments/{id}", tag = "deployments", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Deployment id")),
    responses((status = 200, body = DeploymentDetail))
)]
async fn get_deployment(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<DeploymentDetail>> {
    let deployment = state
        .policy
        .visible(&actor, deployments::get(&state.db.pool, id).await)?;
    let events = deployments::events(&state.db.pool, id).await?;
    // Only a deployment with a plan has measured anything.
    let checks = match deployment.verify {
        Some(_) => results::results(&state.db.pool, Of::Deployment(id))
            .await?
            .iter()
            .map(VerifyResult::from)
            .collect(),
        None => Vec::new(),
    };
    Ok(Json(DeploymentDetail {
        deployment,
        events,
        checks,
    }))
}

/// An app's lanes (branches' copies of it), by name.
#[utoipa::path(
    get, path = "/api/v1/apps/{id}/lanes", tag = "deployments", security(("bearer" = [])),
    params(("id" = i64, Path, description = "App id")),
    responses((status = 200, body = [Lane]))
)]
async fn list_lanes(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<Lane>>> {
    let app = state
        .policy
        .visible(&actor, apps::get(&state.db.pool, id).await)?;
    Ok(Json(deployments::lanes_of(&state.db.pool, app.id).await?))
}

/// Removes a lane: its Deployment and Service are deleted by the engine
/// right away (the lane answers `removing` until they are gone). Refused
/// (409) while a deployment to the lane is rolling out.
#[utoipa::path(
    delete, path = "/api/v1/apps/{id}/lanes/{lane}", tag = "deployments", security(("bearer" = [])),
    params(
        ("id" = i64, Path, description = "App id"),
        ("lane" = String, Path, description = "The lane's slug"),
    ),
    responses((status = 202, body = Lane), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody))
)]
async fn remove_lane(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath((id, lane)): ApiPath<(i64, String)>,
) -> Result<(StatusCode, Json<Lane>)> {
    let lane = fast_path::remove_lane(&state, &actor, &who, id, &lane).await?;
    Ok((StatusCode::ACCEPTED, Json(lane)))
}
