//! Bindings of GitLab CI ID tokens to service accounts (admins only): a CI
//! job whose ID token matches a binding calls the API as its service
//! account (`gitlab::id_tokens`; the matching rules in `domain::id_token`).

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
use crate::db::id_token_bindings::{self, BindingInfo, NewBinding};
use crate::error::{ErrorBody, Result};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_id_token_bindings, create_id_token_binding))
        .routes(routes!(delete_id_token_binding))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBinding {
    /// The service account a matching token acts as.
    pub service_account_id: i64,
    /// A project's full path (`acme/pay`), or `group/*` for every project
    /// under the group, nested subgroups included. Case does not matter.
    #[schema(
        pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*/([A-Za-z0-9_][A-Za-z0-9_.-]*|\*)$",
        max_length = 255
    )]
    pub project_path: String,
    /// `branch` or `tag`; either when absent.
    pub ref_type: Option<RefTypeInput>,
    /// A glob over the `ref` claim (`main`, `release/*`; `*` matches any
    /// run of characters, `/` included); every ref when absent.
    #[serde(rename = "ref")]
    #[schema(
        pattern = r"^[^\s\u0000-\u001f\u007f-\u009f]+$",
        min_length = 1,
        max_length = 255
    )]
    pub ref_pattern: Option<String>,
    /// Only tokens whose `ref_protected` claim is `"true"`.
    #[serde(default)]
    pub protected_only: bool,
}

/// A ref type a binding may require.
#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum RefTypeInput {
    Branch,
    Tag,
}

impl RefTypeInput {
    fn as_str(self) -> &'static str {
        match self {
            RefTypeInput::Branch => "branch",
            RefTypeInput::Tag => "tag",
        }
    }
}

fn require_admin(state: &AppState, actor: &crate::db::accounts::Account) -> Result<()> {
    state.policy.require(actor, Action::ManageAccounts, "/")
}

/// Every binding of GitLab CI ID tokens to a service account.
#[utoipa::path(
    get, path = "/api/v1/id-token-bindings", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = [BindingInfo]), (status = 403, body = ErrorBody))
)]
async fn list_id_token_bindings(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
) -> Result<Json<Vec<BindingInfo>>> {
    require_admin(&state, &actor)?;
    Ok(Json(id_token_bindings::list(&state.db.pool, None).await?))
}

/// Binds GitLab CI ID tokens matching the claims to a service account.
#[utoipa::path(
    post, path = "/api/v1/id-token-bindings", tag = "accounts", security(("bearer" = [])),
    request_body = CreateBinding,
    responses((status = 201, body = BindingInfo), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn create_id_token_binding(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiJson(body): ApiJson<CreateBinding>,
) -> Result<(StatusCode, Json<BindingInfo>)> {
    require_admin(&state, &actor)?;
    let info = id_token_bindings::create(
        &state.db,
        &NewBinding {
            service_account_id: body.service_account_id,
            project_path: &body.project_path,
            ref_type: body.ref_type.map(RefTypeInput::as_str),
            ref_pattern: body.ref_pattern.as_deref(),
            protected_only: body.protected_only,
        },
        &who,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// Removes a binding; tokens matching only it are refused from now on.
#[utoipa::path(
    delete, path = "/api/v1/id-token-bindings/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Binding id")),
    responses((status = 200, body = BindingInfo), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn delete_id_token_binding(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<BindingInfo>> {
    require_admin(&state, &actor)?;
    Ok(Json(id_token_bindings::delete(&state.db, id, &who).await?))
}
