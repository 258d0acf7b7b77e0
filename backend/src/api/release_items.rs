//! Release items with their stages inline, and their versions (GitLab tags).

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
use crate::db::accounts::Account;
use crate::db::release_items as items;
use crate::db::tree as tree_db;
use crate::domain::release_item::{Canary, StageSpec, Strategy};
use crate::domain::verify::VerifyPlan;
use crate::error::{Error, ErrorBody, Result};
use crate::flows::clusters::check_stages;
use crate::flows::live::{ItemLive, item_live};
use crate::gitlab::Tag;
use crate::kube::live::LiveRead;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_release_items, create_release_item))
        .routes(routes!(
            get_release_item,
            replace_release_item,
            delete_release_item
        ))
        .routes(routes!(list_versions))
        .routes(routes!(release_item_status))
}

/// What one stage runs now, as its cluster reports it.
#[derive(Serialize, ToSchema)]
pub struct StageStatus {
    pub position: i64,
    pub name: String,
    pub app_id: i64,
    pub app: String,
    pub cluster: String,
    pub environment: String,
    pub namespace: String,
    pub deployment: String,
    /// `running` (the Deployment is there), `missing` (the namespace was
    /// read and it is not) or `unknown` (not read yet, or the cluster
    /// cannot be read: see `unknown_reason`).
    pub live: String,
    /// The app container's image.
    pub image: Option<String>,
    /// The image's tag when it is of the item's repository, else the image.
    pub running: Option<String>,
    pub ready_replicas: Option<i32>,
    pub desired_replicas: Option<i32>,
    pub updated_replicas: Option<i32>,
    pub revision: Option<String>,
    pub unknown_reason: Option<String>,
    /// Unix ms up to which the reading is known to be current: the time of
    /// the answer while the watch is connected, else when the cluster last
    /// answered it.
    pub as_of: Option<i64>,
    /// The watch's failure since `as_of`: what is shown may be stale.
    pub stale_because: Option<String>,
    /// The last order that did something on this stage.
    pub last_order: Option<StageOrder>,
}

/// The last order that touched a stage.
#[derive(Serialize, ToSchema)]
pub struct StageOrder {
    pub id: i64,
    pub version: String,
    /// The order's state.
    pub state: String,
    /// How far this stage got in it.
    pub stage_status: String,
}

/// An order waiting for approval.
#[derive(Serialize, ToSchema)]
pub struct WaitingOrder {
    pub id: i64,
    pub version: String,
}

/// A release item's stages as their clusters report them.
#[derive(Serialize, ToSchema)]
pub struct ReleaseItemStatus {
    pub release_item_id: i64,
    pub stages: Vec<StageStatus>,
    pub waiting_for_approval: Option<WaitingOrder>,
}

impl From<ItemLive> for ReleaseItemStatus {
    fn from(live: ItemLive) -> Self {
        Self {
            release_item_id: live.item.id,
            waiting_for_approval: live.waiting.map(|w| WaitingOrder {
                id: w.order_id,
                version: w.version,
            }),
            stages: live
                .stages
                .into_iter()
                .map(|s| {
                    let found = match &s.live.read {
                        LiveRead::Found(d) => Some(d.clone()),
                        _ => None,
                    };
                    StageStatus {
                        position: s.position,
                        name: s.name,
                        app_id: s.app_id,
                        app: s.app,
                        cluster: s.cluster,
                        environment: s.environment,
                        namespace: s.namespace,
                        deployment: s.deployment,
                        live: match &s.live.read {
                            LiveRead::Found(_) => "running",
                            LiveRead::Missing => "missing",
                            LiveRead::Unknown(_) => "unknown",
                        }
                        .to_string(),
                        unknown_reason: match &s.live.read {
                            LiveRead::Unknown(why) => Some(why.clone()),
                            _ => None,
                        },
                        image: found.as_ref().and_then(|d| d.image.clone()),
                        running: s.running,
                        ready_replicas: found.as_ref().map(|d| d.ready),
                        desired_replicas: found.as_ref().map(|d| d.desired),
                        updated_replicas: found.as_ref().map(|d| d.updated),
                        revision: found.and_then(|d| d.revision),
                        as_of: s.live.as_of,
                        stale_because: s.live.stale_because,
                        last_order: s.last.map(|t| StageOrder {
                            id: t.order_id,
                            version: t.version,
                            state: t.state.as_str().to_string(),
                            stage_status: t.stage_status.as_str().to_string(),
                        }),
                    }
                })
                .collect(),
        }
    }
}

/// What each stage of a release item runs now (read from the cluster's
/// Deployment watch, with how fresh it is), the last order that touched
/// it, and the order waiting for approval.
#[utoipa::path(
    get, path = "/api/v1/release-items/{id}/status", tag = "release items", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Release item id")),
    responses((status = 200, body = ReleaseItemStatus), (status = 404, body = ErrorBody))
)]
async fn release_item_status(
    State(state): State<AppState>,
    ApiActor(actor, _, board_version): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ReleaseItemStatus>> {
    let live = item_live(&state, &actor, board_version, id).await?;
    Ok(Json(live.into()))
}

/// A stage as stored, with what it targets.
#[derive(Serialize, ToSchema)]
pub struct Stage {
    pub position: i64,
    pub name: String,
    pub app_id: i64,
    pub app: String,
    pub cluster: String,
    pub environment: String,
    pub strategy: Strategy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// Minutes the stage may run in all before it fails (1–1440); null:
    /// twice the Deployment's progress deadline (20 minutes for the
    /// Kubernetes default of 600 s).
    #[schema(minimum = 1, maximum = 1440)]
    pub deadline_minutes: Option<i64>,
    /// What verifies the stage once its new version runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyPlan>,
}

impl From<items::Stage> for Stage {
    fn from(s: items::Stage) -> Self {
        Self {
            position: s.position,
            name: s.name,
            app_id: s.app_id,
            app: s.app,
            cluster: s.cluster,
            environment: s.environment,
            strategy: s.strategy,
            canary: s.canary,
            deadline_minutes: s.deadline_minutes,
            verify: s.verify,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ReleaseItem {
    pub id: i64,
    pub node_id: i64,
    pub node_path: String,
    pub name: String,
    /// GitLab project id or `group/path`.
    pub gitlab_project: String,
    /// `registry/group/app`; a version `v1.2.3` deploys `registry/group/app:v1.2.3`.
    pub image_repository: String,
    pub required_approvals: i64,
    /// Roll a stage back by itself when its rollout fails.
    pub auto_rollback: bool,
    /// Refuse to deploy a Deployment scaled to zero replicas. When false
    /// such a deploy succeeds with "scaled to zero — nothing to verify".
    pub refuse_zero_replicas: bool,
    pub stages: Vec<Stage>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<items::ReleaseItem> for ReleaseItem {
    fn from(i: items::ReleaseItem) -> Self {
        Self {
            id: i.id,
            node_id: i.node_id,
            node_path: i.node_path,
            name: i.name,
            gitlab_project: i.gitlab_project,
            image_repository: i.image_repository,
            required_approvals: i.required_approvals,
            auto_rollback: i.auto_rollback,
            refuse_zero_replicas: i.refuse_zero_replicas,
            stages: i.stages.into_iter().map(Into::into).collect(),
            created_at: i.created_at,
            updated_at: i.updated_at,
        }
    }
}

/// The fields of an item, for create and replace.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemFields {
    pub node_id: i64,
    pub name: String,
    pub gitlab_project: String,
    pub image_repository: String,
    #[serde(default = "one")]
    pub required_approvals: i64,
    /// Roll a stage back by itself when its rollout fails (default true).
    #[serde(default = "yes")]
    pub auto_rollback: bool,
    /// Refuse to deploy a Deployment scaled to zero replicas (default
    /// false: such a deploy succeeds with nothing to verify).
    #[serde(default)]
    pub refuse_zero_replicas: bool,
    /// 1 to 20 stages, run in order.
    pub stages: Vec<StageSpec>,
}

fn one() -> i64 {
    1
}
fn yes() -> bool {
    true
}

impl From<ItemFields> for items::ItemFields {
    fn from(f: ItemFields) -> Self {
        Self {
            node_id: f.node_id,
            name: f.name,
            gitlab_project: f.gitlab_project,
            image_repository: f.image_repository,
            required_approvals: f.required_approvals,
            auto_rollback: f.auto_rollback,
            refuse_zero_replicas: f.refuse_zero_replicas,
            stages: f.stages,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ItemQuery {
    /// Only the items of this tree node.
    node_id: Option<i64>,
}

/// The release items the caller may view, by node path and name.
#[utoipa::path(
    get, path = "/api/v1/release-items", tag = "release items", security(("bearer" = [])),
    params(ItemQuery),
    responses((status = 200, body = [ReleaseItem]), (status = 401, body = ErrorBody))
)]
async fn list_release_items(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
    ApiQuery(q): ApiQuery<ItemQuery>,
) -> Result<Json<Vec<ReleaseItem>>> {
    let scope = state.policy.read_scope(&state.db, &actor).await?;
    let list = items::list(&state.db.pool, q.node_id, &scope).await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

/// The path of node `node_id` named in a body; a node the caller may not
/// see is refused like a missing one.
async fn node_path(state: &AppState, actor: &Account, node_id: i64) -> Result<String> {
    match state
        .policy
        .visible(actor, tree_db::get(&state.db.pool, node_id).await)
    {
        Ok(node) => Ok(node.path),
        Err(Error::NotFound(_)) => Err(Error::validation(
            "node_id",
            format!("tree node {node_id} does not exist"),
        )),
        Err(e) => Err(e),
    }
}

/// Item `id` if `actor` may view it; the 404 of a missing item otherwise.
async fn visible_item(state: &AppState, actor: &Account, id: i64) -> Result<items::ReleaseItem> {
    state
        .policy
        .visible(actor, items::get(&state.db.pool, id).await)
}

/// Creates a release item (owners of its node).
#[utoipa::path(
    post, path = "/api/v1/release-items", tag = "release items", security(("bearer" = [])),
    request_body = ItemFields,
    responses((status = 201, body = ReleaseItem), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn create_release_item(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiJson(body): ApiJson<ItemFields>,
) -> Result<(StatusCode, Json<ReleaseItem>)> {
    let path = node_path(&state, &actor, body.node_id).await?;
    state
        .policy
        .require(&actor, Action::ManageReleaseItems, &path)?;
    check_stages(&state, &body.stages, &[]).await?;
    let item = items::create(&state.db, &body.into(), &who).await?;
    Ok((StatusCode::CREATED, Json(item.into())))
}

/// One release item with its stages.
#[utoipa::path(
    get, path = "/api/v1/release-items/{id}", tag = "release items", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Release item id")),
    responses((status = 200, body = ReleaseItem), (status = 404, body = ErrorBody))
)]
async fn get_release_item(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ReleaseItem>> {
    Ok(Json(visible_item(&state, &actor, id).await?.into()))
}

/// Replaces a release item's fields and stages.
#[utoipa::path(
    put, path = "/api/v1/release-items/{id}", tag = "release items", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Release item id")),
    request_body = ItemFields,
    responses((status = 200, body = ReleaseItem), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn replace_release_item(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ItemFields>,
) -> Result<Json<ReleaseItem>> {
    let item = visible_item(&state, &actor, id).await?;
    state
        .policy
        .require(&actor, Action::ManageReleaseItems, &item.node_path)?;
    check_stages(&state, &body.stages, &item.stages).await?;
    let item = items::update(&state.db, id, &body.into(), &who).await?;
    Ok(Json(item.into()))
}

/// Deletes a release item that never had a work order.
#[utoipa::path(
    delete, path = "/api/v1/release-items/{id}", tag = "release items", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Release item id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
async fn delete_release_item(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode> {
    let item = visible_item(&state, &actor, id).await?;
    state
        .policy
        .require(&actor, Action::ManageReleaseItems, &item.node_path)?;
    items::delete(&state.db, id, &who).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The versions that can be released: the project's GitLab tags, newest
/// first (every page followed). GitLab is asked only for items the caller
/// may view.
#[utoipa::path(
    get, path = "/api/v1/release-items/{id}/versions", tag = "release items", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Release item id")),
    responses((status = 200, body = [Tag]), (status = 404, body = ErrorBody), (status = 502, body = ErrorBody))
)]
async fn list_versions(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<Tag>>> {
    let item = visible_item(&state, &actor, id).await?;
    Ok(Json(
        state
            .gitlab
            .tags(&state.db, &state.sealer, &item.gitlab_project)
            .await?,
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    fn keys(value: &Value) -> BTreeSet<String> {
        value.as_object().unwrap().keys().cloned().collect()
    }

    /// The API's JSON of an item is what its OpenAPI schemas say.
    #[test]
    fn release_item_json_matches_its_schemas() {
        let (_, doc) = crate::api::router().split_for_parts();
        let doc = serde_json::to_value(&doc).unwrap();
        let schemas = &doc["components"]["schemas"];
        let item = items::ReleaseItem {
            id: 1,
            node_id: 2,
            node_path: "acme/pay".into(),
            name: "checkout".into(),
            gitlab_project: "acme/checkout".into(),
            image_repository: "registry/checkout".into(),
            required_approvals: 1,
            auto_rollback: true,
            refuse_zero_replicas: false,
            stages: vec![items::Stage {
                position: 1,
                name: "prod".into(),
                app_id: 3,
                app: "checkout-web".into(),
                cluster: "prod".into(),
                cluster_id: 1,
                environment: "production".into(),
                strategy: Strategy::Canary,
                canary: Some(Canary {
                    steps: Vec::new(),
                    header_match: None,
                }),
                deadline_minutes: None,
                verify: Some(VerifyPlan {
                    sign_off: true,
                    ..VerifyPlan::default()
                }),
            }],
            created_at: 1,
            updated_at: 2,
        };
        let json = serde_json::to_value(ReleaseItem::from(item)).unwrap();
        let properties = |name: &str| keys(&schemas[name]["properties"]);
        assert_eq!(keys(&json), properties("ReleaseItem"));
        assert_eq!(keys(&json["stages"][0]), properties("Stage"));
        assert_eq!(json["stages"][0]["strategy"], "canary");
        assert_eq!(json["stages"][0]["deadline_minutes"], Value::Null);
        assert_eq!(json["refuse_zero_replicas"], false);
    }

    /// The stage deadline's bounds are in the documents people and fuzzers
    /// read, on what is sent and on what is answered.
    #[test]
    fn the_stage_deadline_is_documented_with_its_bounds() {
        let (_, doc) = crate::api::router().split_for_parts();
        let doc = serde_json::to_value(&doc).unwrap();
        let schemas = &doc["components"]["schemas"];
        for schema in ["StageSpec", "Stage"] {
            let deadline = &schemas[schema]["properties"]["deadline_minutes"];
            assert_eq!(deadline["minimum"], 1, "{schema}: {deadline}");
            assert_eq!(deadline["maximum"], 1440, "{schema}: {deadline}");
            assert!(
                deadline["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("progress deadline")),
                "{schema}: {deadline}"
            );
        }
        let fields = &schemas["ItemFields"]["properties"]["refuse_zero_replicas"];
        assert_eq!(fields["type"], "boolean", "{fields}");
        assert!(
            fields["description"]
                .as_str()
                .is_some_and(|d| d.contains("zero replicas")),
            "{fields}"
        );
    }
}
