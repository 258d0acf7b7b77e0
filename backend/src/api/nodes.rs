//! Service tree nodes and their members.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiActor;
use super::{ApiJson, ApiPath};
use crate::app::AppState;
use crate::auth::Action;
use crate::db::accounts::Account;
use crate::db::tree::{self as tree_db, Member, Node};
use crate::domain::tree::Role;
use crate::error::{Error, ErrorBody, Result};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_nodes, create_node))
        .routes(routes!(get_node, update_node, delete_node))
        .routes(routes!(list_members, add_member))
        .routes(routes!(remove_member))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNode {
    /// Parent node; a root node when absent (admins only).
    pub parent_id: Option<i64>,
    /// Slug: lowercase letters, digits and single dashes.
    #[schema(pattern = r"^[a-z](-?[a-z0-9])*$", min_length = 1, max_length = 63)]
    pub name: String,
    /// One line, not blank.
    #[schema(
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$",
        max_length = 200
    )]
    pub title: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateNode {
    /// One line, not blank.
    #[schema(
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$",
        max_length = 200
    )]
    pub title: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    /// User or service-account name.
    pub account: String,
    /// `owner`, `engineer` or `viewer`.
    #[schema(pattern = r"^(owner|engineer|viewer)$")]
    pub role: String,
}

/// The nodes the caller may view (every node, for admins), ordered by path:
/// the subtrees below the nodes where it holds a role.
#[utoipa::path(
    get, path = "/api/v1/nodes", tag = "tree", security(("bearer" = [])),
    responses((status = 200, body = [Node]), (status = 401, body = ErrorBody))
)]
async fn list_nodes(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
) -> Result<Json<Vec<Node>>> {
    let scope = state.policy.read_scope(&state.db, &actor).await?;
    Ok(Json(tree_db::list_all(&state.db.pool, &scope).await?))
}

/// Node `id` if `actor` may view it; the 404 of a missing node otherwise.
async fn visible_node(state: &AppState, actor: &Account, id: i64) -> Result<Node> {
    state
        .policy
        .visible(actor, tree_db::get(&state.db.pool, id).await)
}

/// Creates a node; its path is computed from the parent's.
#[utoipa::path(
    post, path = "/api/v1/nodes", tag = "tree", security(("bearer" = [])),
    request_body = CreateNode,
    responses(
        (status = 201, body = Node),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)
    )
)]
async fn create_node(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiJson(body): ApiJson<CreateNode>,
) -> Result<(StatusCode, Json<Node>)> {
    let parent_path = match body.parent_id {
        // A parent the caller may not see is refused like a missing one.
        Some(id) => match visible_node(&state, &actor, id).await {
            Ok(parent) => parent.path,
            Err(Error::NotFound(_)) => {
                return Err(Error::validation(
                    "parent_id",
                    format!("parent node {id} does not exist"),
                ));
            }
            Err(e) => return Err(e),
        },
        None => "/".to_string(),
    };
    state
        .policy
        .require(&actor, Action::CreateChildNode, &parent_path)?;
    let node = tree_db::create(
        &state.db,
        body.parent_id,
        body.name.trim(),
        &body.title,
        &who,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(node)))
}

/// One node.
#[utoipa::path(
    get, path = "/api/v1/nodes/{id}", tag = "tree", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Node id")),
    responses((status = 200, body = Node), (status = 404, body = ErrorBody))
)]
async fn get_node(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Node>> {
    Ok(Json(visible_node(&state, &actor, id).await?))
}

/// Changes a node's title (its name and path are fixed).
#[utoipa::path(
    patch, path = "/api/v1/nodes/{id}", tag = "tree", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Node id")),
    request_body = UpdateNode,
    responses((status = 200, body = Node), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn update_node(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UpdateNode>,
) -> Result<Json<Node>> {
    let node = visible_node(&state, &actor, id).await?;
    state.policy.require(&actor, Action::EditNode, &node.path)?;
    Ok(Json(
        tree_db::update_title(&state.db, id, &body.title, &who).await?,
    ))
}

/// Deletes a node that has nothing below it (409 naming what is left).
#[utoipa::path(
    delete, path = "/api/v1/nodes/{id}", tag = "tree", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Node id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
async fn delete_node(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode> {
    let node = visible_node(&state, &actor, id).await?;
    state
        .policy
        .require(&actor, Action::DeleteNode, node.parent_path())?;
    tree_db::delete(&state.db, id, &who).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The direct members of a node.
#[utoipa::path(
    get, path = "/api/v1/nodes/{id}/members", tag = "tree", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Node id")),
    responses((status = 200, body = [Member]), (status = 404, body = ErrorBody))
)]
async fn list_members(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<Member>>> {
    visible_node(&state, &actor, id).await?;
    Ok(Json(tree_db::members(&state.db.pool, id).await?))
}

/// Adds a member (201) or changes an existing member's role (200).
#[utoipa::path(
    post, path = "/api/v1/nodes/{id}/members", tag = "tree", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Node id")),
    request_body = AddMember,
    responses((status = 201, body = Member), (status = 200, body = Member), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn add_member(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<AddMember>,
) -> Result<(StatusCode, Json<Member>)> {
    let node = visible_node(&state, &actor, id).await?;
    state
        .policy
        .require(&actor, Action::ManageMembers, &node.path)?;
    let role: Role = body
        .role
        .parse()
        .map_err(|m: String| Error::validation("role", m))?;
    let (member, created) =
        tree_db::put_member(&state.db, id, body.account.trim(), role, &who).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(member)))
}

/// Removes a member.
#[utoipa::path(
    delete, path = "/api/v1/nodes/{id}/members/{account_id}", tag = "tree", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Node id"), ("account_id" = i64, Path, description = "Account id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn remove_member(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath((id, account_id)): ApiPath<(i64, i64)>,
) -> Result<StatusCode> {
    let node = visible_node(&state, &actor, id).await?;
    state
        .policy
        .require(&actor, Action::ManageMembers, &node.path)?;
    tree_db::remove_member(&state.db, id, account_id, &who).await?;
    Ok(StatusCode::NO_CONTENT)
}
