//! Instance settings: the GitLab connection (admins; the token is
//! write-only).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiJson;
use super::extract::ApiActor;
use crate::app::AppState;
use crate::auth::Action;
use crate::error::{ErrorBody, Result};
use crate::gitlab::{GitlabClient, GitlabSettings};
use crate::secret::Secret;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_gitlab_settings, put_gitlab_settings))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutGitlab {
    /// Base URL, e.g. `https://gitlab.example.com`.
    #[schema(pattern = r"^https?://[^\u0000-\u0020\u007f-\u009f]+$")]
    pub url: String,
    /// An access token with `read_api`; kept when absent. Never returned.
    #[schema(
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub token: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct GitlabStatus {
    #[serde(flatten)]
    pub settings: GitlabSettings,
    /// Whether Rollway could reach GitLab with these settings just now.
    pub connected: bool,
    /// What went wrong when not connected.
    pub message: Option<String>,
}

/// The GitLab connection (never the token).
#[utoipa::path(
    get, path = "/api/v1/settings/gitlab", tag = "settings", security(("bearer" = [])),
    responses((status = 200, body = GitlabSettings), (status = 403, body = ErrorBody))
)]
async fn get_gitlab_settings(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
) -> Result<Json<GitlabSettings>> {
    state.policy.require(&actor, Action::ManageRegistry, "/")?;
    Ok(Json(GitlabClient::settings(&state.db).await?))
}

/// Sets the GitLab connection and tests it.
#[utoipa::path(
    put, path = "/api/v1/settings/gitlab", tag = "settings", security(("bearer" = [])),
    request_body = PutGitlab,
    responses((status = 200, body = GitlabStatus), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn put_gitlab_settings(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiJson(body): ApiJson<PutGitlab>,
) -> Result<Json<GitlabStatus>> {
    state.policy.require(&actor, Action::ManageRegistry, "/")?;
    let token = body.token.map(Secret::new);
    let settings =
        GitlabClient::save_settings(&state.db, &state.sealer, &body.url, token.as_ref(), &who)
            .await?;
    let test = state.gitlab.test_connection(&state.db, &state.sealer).await;
    Ok(Json(GitlabStatus {
        settings,
        connected: test.is_ok(),
        message: test.err().map(|e| e.public_message()),
    }))
}
