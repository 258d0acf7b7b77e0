//! Release items with their stages inline, and their versions (GitLab tags).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiActor;
use super::{ApiJson, ApiPath, ApiQuery};
use crate::app::AppState;
use crate::auth::Action;
use crate::db::accounts::Account;
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

/// The release items the caller may view, by node path and name.
#[utoipa::path(
    get, path = "/api/v1/release-items", tag = "release items", security(("bearer" = [])),
    params(ItemQuery),
    responses((status = 200, body = [ReleaseItem]), (status = 401, body = ErrorBody))
)]
async fn list_release_items(
    State(state): State<AppState>,
    ApiActor(actor, _): ApiActor,
    ApiQuery(q): ApiQuery<ItemQuery>,
) -> Result<Json<Vec<ReleaseItem>>> {
    let scope = state.policy.read_scope(&state.db, &actor).await?;
    Ok(Json(
        release_items::list(&state.db.pool, q.node_id, &scope).await?,
    ))
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
async fn visible_item(state: &AppState, actor: &Account, id: i64) -> Result<ReleaseItem> {
    state
        .policy
        .visible(actor, release_items::get(&state.db.pool, id).await)
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
    let path = node_path(&state, &actor, body.node_id).await?;
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
    ApiActor(actor, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ReleaseItem>> {
    Ok(Json(visible_item(&state, &actor, id).await?))
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
    let item = visible_item(&state, &actor, id).await?;
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
    let item = visible_item(&state, &actor, id).await?;
    state
        .policy
        .require(&actor, Action::ManageReleaseItems, &item.node_path)?;
    release_items::delete(&state.db, id, &who).await?;
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
    ApiActor(actor, _): ApiActor,
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
