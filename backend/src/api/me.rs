//! `GET /api/v1/me`: who the token belongs to and what it may do.

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiActor;
use crate::app::AppState;
use crate::auth::Action;
use crate::db::accounts::Account;
use crate::db::tree as tree_db;
use crate::error::Result;
use axum::extract::State;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_me))
}

/// A role the account holds directly on a node (it also covers the node's
/// descendants).
#[derive(Serialize, ToSchema)]
pub struct RoleGrant {
    pub node_id: i64,
    pub path: String,
    pub role: String,
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub account: Account,
    /// Whether the account may administer everything.
    pub admin: bool,
    pub roles: Vec<RoleGrant>,
}

/// The token's account and its roles.
#[utoipa::path(
    get, path = "/api/v1/me", tag = "me",
    security(("bearer" = [])),
    responses(
        (status = 200, body = Me),
        (status = 401, body = crate::error::ErrorBody),
    )
)]
async fn get_me(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
) -> Result<Json<Me>> {
    let roles = tree_db::memberships_of(&state.db.pool, actor.id)
        .await?
        .into_iter()
        .map(|(node, role)| RoleGrant {
            node_id: node.id,
            path: node.path,
            role: role.as_str().into(),
        })
        .collect();
    Ok(Json(Me {
        admin: state.policy.may(&actor, Action::ManageAccounts, "/"),
        account: actor,
        roles,
    }))
}
