//! Stopping the line: an owner of a node (or an admin) halts its subtree
//! at once — deploys and canary step approvals there are refused (409
//! `line_stopped`), the engine holds the work that would move a rollout on,
//! and rolling updates under way are paused or left to finish — until the
//! stop is lifted.

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
use crate::db::line_stops::LineStop;
use crate::error::{ErrorBody, Result};
use crate::flows::line_stops;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stop_line))
        .routes(routes!(list_stops))
        .routes(routes!(get_stop))
        .routes(routes!(lift_stop))
}

/// A stop of the line to make.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopLine {
    /// Why; shown to whoever it refuses. One line.
    #[schema(
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$",
        max_length = 200
    )]
    pub reason: String,
    /// Pause the rolling updates under way (`spec.paused`) and resume them
    /// when the stop is lifted; by default they are left to finish.
    #[serde(default)]
    pub pause_rollouts: bool,
}

/// Stops the line at a node (owners of the node, or admins): at once,
/// stages of release items and apps in its subtree neither start nor go
/// on to a next canary step (409 `line_stopped`), CI fast-path deploys
/// there are refused the same way, and the engine holds the work that
/// would move a rollout on; written to the timeline of every open work
/// order it covers and to the audit log. One stop per node at a time (409).
#[utoipa::path(
    post, path = "/api/v1/nodes/{id}/line-stops", tag = "line stops", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Node id")),
    request_body = StopLine,
    responses(
        (status = 201, body = LineStop), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)
    )
)]
async fn stop_line(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<StopLine>,
) -> Result<(StatusCode, Json<LineStop>)> {
    let stopped =
        line_stops::stop(&state, &actor, &who, id, &body.reason, body.pause_rollouts).await?;
    Ok((StatusCode::CREATED, Json(stopped.stop)))
}

/// The stops in force that the caller sees (set on a node it sees, or
/// above one), by node path.
#[utoipa::path(
    get, path = "/api/v1/line-stops", tag = "line stops", security(("bearer" = [])),
    responses((status = 200, body = [LineStop]))
)]
async fn list_stops(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
) -> Result<Json<Vec<LineStop>>> {
    Ok(Json(line_stops::active_visible(&state, &actor).await?))
}

/// A stop of the line, in force or lifted.
#[utoipa::path(
    get, path = "/api/v1/line-stops/{id}", tag = "line stops", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Stop id")),
    responses((status = 200, body = LineStop), (status = 404, body = ErrorBody))
)]
async fn get_stop(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<LineStop>> {
    Ok(Json(line_stops::visible(&state, &actor, id).await?))
}

/// Lifts a stop (owners of its node, or admins): held work goes on at
/// once, rolling updates it paused are resumed, and the time held does not
/// count against the stages' overall deadlines. 409 when it was lifted
/// already.
#[utoipa::path(
    post, path = "/api/v1/line-stops/{id}/lift", tag = "line stops", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Stop id")),
    responses(
        (status = 200, body = LineStop), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)
    )
)]
async fn lift_stop(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<LineStop>> {
    Ok(Json(line_stops::lift(&state, &actor, &who, id).await?))
}
