//! Users, service accounts and API tokens (admins only).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiActor;
use super::{ApiJson, ApiPath};
use crate::app::AppState;
use crate::auth::{Action, password};
use crate::db::accounts::{self, Account, AccountKind, NewAccount};
use crate::db::audit::AuditActor;
use crate::db::tokens::{self, TokenInfo};
use crate::db::tree as tree_db;
use crate::domain::tree::Role;
use crate::error::{Error, ErrorBody, Result};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user))
        .routes(routes!(reset_user_password))
        .routes(routes!(list_service_accounts, create_service_account))
        .routes(routes!(get_service_account, update_service_account))
        .routes(routes!(
            list_service_account_tokens,
            create_service_account_token
        ))
        .routes(routes!(revoke_token))
}

fn require_admin(state: &AppState, actor: &Account) -> Result<()> {
    state.policy.require(actor, Action::ManageAccounts, "/")
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(pattern = r"^[a-z0-9][a-z0-9._-]*$", min_length = 1, max_length = 64)]
    pub name: String,
    /// One line; the name when empty.
    #[serde(default)]
    #[schema(pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$", max_length = 200)]
    pub display_name: String,
    /// At least 12 characters; generated (and returned once) when absent.
    #[schema(min_length = 12, max_length = 1024)]
    pub password: Option<String>,
    #[serde(default)]
    pub is_admin: bool,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedUser {
    pub user: Account,
    /// The generated password, present only when none was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccount {
    /// Disable (ends sessions, refuses tokens at once) or re-enable.
    pub disabled: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct NewPassword {
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServiceAccount {
    #[schema(pattern = r"^[a-z0-9][a-z0-9._-]*$", min_length = 1, max_length = 64)]
    pub name: String,
    /// Free text: tabs and line breaks, no other control characters.
    #[serde(default)]
    #[schema(
        pattern = r"^([^\u0000-\u0008\u000b-\u001f\u007f-\u009f]|\r\n)*$",
        max_length = 1000
    )]
    pub description: String,
    /// Path of a node to bind the account to.
    pub node: Option<String>,
    /// Role on that node (default `engineer`).
    #[schema(pattern = r"^(owner|engineer|viewer)$")]
    pub role: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// A label to recognise the token by (one line).
    #[schema(
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$",
        max_length = 100
    )]
    pub name: String,
    /// Days until it expires; never when absent.
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    /// The token itself. Shown only in this answer; store it now.
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// Every user.
#[utoipa::path(
    get, path = "/api/v1/users", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = [Account]), (status = 403, body = ErrorBody))
)]
async fn list_users(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
) -> Result<Json<Vec<Account>>> {
    require_admin(&state, &actor)?;
    Ok(Json(
        accounts::list(&state.db.pool, AccountKind::User).await?,
    ))
}

/// Creates a user.
#[utoipa::path(
    post, path = "/api/v1/users", tag = "accounts", security(("bearer" = [])),
    request_body = CreateUser,
    responses((status = 201, body = CreatedUser), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn create_user(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiJson(body): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<CreatedUser>)> {
    require_admin(&state, &actor)?;
    accounts::validate_name(body.name.trim())?;
    let (password, generated) = match body.password {
        Some(p) => {
            password::validate(&p)?;
            (p, false)
        }
        None => (password::generate(), true),
    };
    let hash = password::hash_blocking(password.clone()).await?;
    let mut tx = state.db.begin_write().await?;
    let user = accounts::insert(
        &mut tx,
        &NewAccount {
            kind: AccountKind::User,
            name: body.name.trim(),
            display_name: &body.display_name,
            description: "",
            password_hash: Some(&hash),
            is_admin: body.is_admin,
        },
        &who,
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            user,
            password: generated.then_some(password),
        }),
    ))
}

/// One user.
#[utoipa::path(
    get, path = "/api/v1/users/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = Account), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn get_user(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Account>> {
    require_admin(&state, &actor)?;
    Ok(Json(
        accounts::get_of_kind(&state.db.pool, id, AccountKind::User).await?,
    ))
}

async fn update_account(
    state: &AppState,
    actor: &Account,
    who: &AuditActor,
    id: i64,
    kind: AccountKind,
    body: UpdateAccount,
) -> Result<Account> {
    require_admin(state, actor)?;
    accounts::get_of_kind(&state.db.pool, id, kind).await?;
    if let Some(disabled) = body.disabled {
        if disabled && id == actor.id {
            return Err(Error::Conflict(
                "you cannot disable your own account".into(),
            ));
        }
        accounts::set_disabled(&state.db, id, disabled, who).await?;
    }
    Ok(accounts::get_of_kind(&state.db.pool, id, kind).await?)
}

/// Disables or re-enables a user. Disabling ends their sessions at once.
#[utoipa::path(
    patch, path = "/api/v1/users/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    request_body = UpdateAccount,
    responses((status = 200, body = Account), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
async fn update_user(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UpdateAccount>,
) -> Result<Json<Account>> {
    Ok(Json(
        update_account(&state, &actor, &who, id, AccountKind::User, body).await?,
    ))
}

/// Sets a generated password (returned once) and ends the user's sessions.
#[utoipa::path(
    post, path = "/api/v1/users/{id}/reset-password", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = NewPassword), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn reset_user_password(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<NewPassword>> {
    require_admin(&state, &actor)?;
    accounts::get_of_kind(&state.db.pool, id, AccountKind::User).await?;
    let password = password::generate();
    let hash = password::hash_blocking(password.clone()).await?;
    accounts::set_password_hash(&state.db, id, &hash, &who).await?;
    Ok(Json(NewPassword { password }))
}

/// Every service account.
#[utoipa::path(
    get, path = "/api/v1/service-accounts", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = [Account]), (status = 403, body = ErrorBody))
)]
async fn list_service_accounts(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
) -> Result<Json<Vec<Account>>> {
    require_admin(&state, &actor)?;
    Ok(Json(
        accounts::list(&state.db.pool, AccountKind::ServiceAccount).await?,
    ))
}

/// Creates a service account, optionally bound to a node with a role.
#[utoipa::path(
    post, path = "/api/v1/service-accounts", tag = "accounts", security(("bearer" = [])),
    request_body = CreateServiceAccount,
    responses((status = 201, body = Account), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn create_service_account(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiJson(body): ApiJson<CreateServiceAccount>,
) -> Result<(StatusCode, Json<Account>)> {
    require_admin(&state, &actor)?;
    let node = match body
        .node
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(path) => Some(
            tree_db::find_by_path(&state.db.pool, path)
                .await?
                .ok_or_else(|| Error::validation("node", format!("no tree node at {path}")))?,
        ),
    };
    let role: Role = match body.role.as_deref() {
        None => Role::Engineer,
        Some(r) => r
            .parse()
            .map_err(|m: String| Error::validation("role", m))?,
    };
    let account = accounts::create_service_account(
        &state.db,
        body.name.trim(),
        &body.description,
        node.as_ref().map(|node| (node, role)),
        &who,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(account)))
}

/// One service account.
#[utoipa::path(
    get, path = "/api/v1/service-accounts/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Service account id")),
    responses((status = 200, body = Account), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn get_service_account(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Account>> {
    require_admin(&state, &actor)?;
    Ok(Json(
        accounts::get_of_kind(&state.db.pool, id, AccountKind::ServiceAccount).await?,
    ))
}

/// Disables (its tokens are refused at once) or re-enables a service account.
#[utoipa::path(
    patch, path = "/api/v1/service-accounts/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Service account id")),
    request_body = UpdateAccount,
    responses((status = 200, body = Account), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn update_service_account(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UpdateAccount>,
) -> Result<Json<Account>> {
    Ok(Json(
        update_account(&state, &actor, &who, id, AccountKind::ServiceAccount, body).await?,
    ))
}

/// The tokens of a service account (never their secrets).
#[utoipa::path(
    get, path = "/api/v1/service-accounts/{id}/tokens", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Service account id")),
    responses((status = 200, body = [TokenInfo]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn list_service_account_tokens(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<TokenInfo>>> {
    require_admin(&state, &actor)?;
    accounts::get_of_kind(&state.db.pool, id, AccountKind::ServiceAccount).await?;
    Ok(Json(tokens::list(&state.db.pool, Some(id)).await?))
}

/// Creates a token; the answer is the only time it is shown.
#[utoipa::path(
    post, path = "/api/v1/service-accounts/{id}/tokens", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Service account id")),
    request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn create_service_account_token(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>)> {
    require_admin(&state, &actor)?;
    accounts::get_of_kind(&state.db.pool, id, AccountKind::ServiceAccount).await?;
    let (info, secret) =
        tokens::create(&state.db, id, &body.name, body.expires_in_days, &who).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: secret.expose().clone(),
            info,
        }),
    ))
}

/// Revokes a token; requests with it get 401 from now on.
#[utoipa::path(
    delete, path = "/api/v1/tokens/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Token id")),
    responses((status = 200, body = TokenInfo), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn revoke_token(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<TokenInfo>> {
    require_admin(&state, &actor)?;
    Ok(Json(tokens::revoke(&state.db, id, &who).await?))
}
