//! Release items with their stages inline, and their versions (GitLab tags).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiPath, ApiQuery};
use crate::app::AppState;
use crate::auth::{Action, ApiActor};
use crate::db::release_items::{self, ItemFields, ReleaseItem};
use crate::db::tree as tree_db;
use crate::error::{Error, ErrorBody, Result};
use crate::gitlab::Tag;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_release_items, create_release_item))
        .routes(routes!(
            get_release_item,
            replace_release_item,
            delete_release_item
        ))
        .routes(routes!(list_versions))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ItemQuery {
    /// Only the items of this tree node.
    node_id: Option<i64>,
}

/// Release items, by node path and name.
#[utoipa::path(
    get, path = "/api/v1/release-items", tag = "release items", security(("bearer" = [])),
    params(ItemQuery),
    responses((status = 200, body = [ReleaseItem]), (status = 401, body = ErrorBody))
)]
async fn list_release_items(
    State(state): State<AppState>,
    _actor: ApiActor,
    ApiQuery(q): ApiQuery<ItemQuery>,
) -> Result<Json<Vec<ReleaseItem>>> {
    Ok(Json(release_items::list(&state.db.pool, q.node_id).await?))
}

async fn node_path(state: &AppState, node_id: i64) -> Result<String> {
    tree_db::get(&state.db.pool, node_id)
        .await
        .map(|n| n.path)
        .map_err(|_| Error::validation("node_id", format!("tree node {node_id} does not exist")))
}

/// Creates a release item (owners of its node).
#[utoipa::path(
    post, path = "/api/v1/release-items", tag = "release items", security(("bearer" = [])),
    request_body = ItemFields,
    responses((status = 201, body = ReleaseItem), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn create_release_item(
    State(state): State<AppState>,
    ApiActor(actor, who): ApiActor,
    ApiJson(body): ApiJson<ItemFields>,
) -> Result<(StatusCode, Json<ReleaseItem>)> {
    let path = node_path(&state, body.node_id).await?;
    state
        .policy
        .require(&actor, Action::ManageReleaseItems, &path)?;
    let item = release_items::create(&state.db, &body, &who).await?;
    Ok((StatusCode::CREATED, Json(item)))
}

/// One release item with its stages.
#[utoipa::path(
    get, path = "/api/v1/release-items/{id}", tag = "release items", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Release item id")),
    responses((status = 200, body = ReleaseItem), (status = 404, body = ErrorBody))
)]
async fn get_release_item(
    State(state): State<AppState>,
    _actor: ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ReleaseItem>> {
    Ok(Json(release_items::get(&state.db.pool, id).await?))
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
    ApiActor(actor, who): ApiActor,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ItemFields>,
) -> Result<Json<ReleaseItem>> {
    let item = release_items::get(&state.db.pool, id).await?;
    state
        .policy
        .require(&actor, Action::ManageReleaseItems, &item.node_path)?;
    Ok(Json(
        release_items::update(&state.db, id, &body, &who).await?,
    ))
}

/// Deletes a release item that never had a work order.
#[utoipa::path(
    delete, path = "/api/v1/release-items/{id}", tag = "release items", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Release item id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
async fn delete_release_item(
    State(state): State<AppState>,
    ApiActor(actor, who): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode> {
    let item = release_items::get(&state.db.pool, id).await?;
    state
        .policy
        .require(&actor, Action::ManageReleaseItems, &item.node_path)?;
    release_items::delete(&state.db, id, &who).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The versions that can be released: the project's GitLab tags, newest
/// first (every page followed).
#[utoipa::path(
    get, path = "/api/v1/release-items/{id}/versions", tag = "release items", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Release item id")),
    responses((status = 200, body = [Tag]), (status = 404, body = ErrorBody), (status = 502, body = ErrorBody))
)]
async fn list_versions(
    State(state): State<AppState>,
    _actor: ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<Tag>>> {
    let item = release_items::get(&state.db.pool, id).await?;
    Ok(Json(
        state
            .gitlab
            .tags(&state.db, &state.sealer, &item.gitlab_project)
            .await?,
    ))
}
