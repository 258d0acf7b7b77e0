//! Freeze windows: set on a node by its owners (or admins), covering its
//! subtree; listed per node, all at once with their coming stretches, and
//! removed. A hotfix work order is let through one by an owner of the
//! frozen node.

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
use crate::db::freezes::FreezeWindow;
use crate::db::now_ms;
use crate::error::{Error, ErrorBody, Result};
use crate::flows::freezes::{self, CalendarEntry, WindowRequest, calendar_of};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_node_windows, create_window))
        .routes(routes!(list_windows))
        .routes(routes!(calendar))
        .routes(routes!(get_window, delete_window))
        .routes(routes!(override_freeze))
}

/// A window to set: one-off (`starts_at` and `ends_at`) or recurring
/// (`cron_start`, `cron_end` and `time_zone`).
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWindow {
    /// Why; shown to whoever it refuses. One line.
    #[schema(
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$",
        max_length = 200
    )]
    pub reason: String,
    /// A one-off window's start, Unix ms.
    #[serde(default)]
    pub starts_at: Option<i64>,
    /// A one-off window's end, Unix ms; after its start and in the future,
    /// a year at most after the start.
    #[serde(default)]
    pub ends_at: Option<i64>,
    /// A recurring window's start: five cron fields (minute hour
    /// day-of-month month day-of-week), e.g. `0 18 * * 5`.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub cron_start: Option<String>,
    /// A recurring window's end, e.g. `0 8 * * 1`; the window is active
    /// from the latest start until the next end after it.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub cron_end: Option<String>,
    /// The IANA time zone the cron expressions are read in (default
    /// `UTC`), e.g. `Europe/Berlin`.
    #[serde(default)]
    #[schema(max_length = 64)]
    pub time_zone: Option<String>,
    /// Freeze only targets of these environment classes (`dev`, `test`,
    /// `staging`, `prod`); all when empty.
    #[serde(default)]
    #[schema(max_items = 4)]
    pub environments: Vec<String>,
}

/// Windows covering a node: set on it or above it, nearest first, each
/// with its active and next stretch.
#[utoipa::path(
    get, path = "/api/v1/nodes/{id}/freeze-windows", tag = "freezes", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Node id")),
    responses((status = 200, body = [FreezeWindow]), (status = 404, body = ErrorBody))
)]
async fn list_node_windows(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<FreezeWindow>>> {
    Ok(Json(freezes::of_node(&state, &actor, id).await?))
}

/// Sets a freeze window on a node (owners of the node, or admins): while
/// it is active, stages of release items and apps in its subtree do not
/// start (409 `frozen`), nor do CI fast-path deploys to them; a hotfix
/// work order goes through once an owner lets it.
#[utoipa::path(
    post, path = "/api/v1/nodes/{id}/freeze-windows", tag = "freezes", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Node id")),
    request_body = CreateWindow,
    responses(
        (status = 201, body = FreezeWindow), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)
    )
)]
async fn create_window(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<CreateWindow>,
) -> Result<(StatusCode, Json<FreezeWindow>)> {
    let asked = WindowRequest {
        reason: &body.reason,
        starts_at: body.starts_at,
        ends_at: body.ends_at,
        cron_start: body.cron_start.as_deref(),
        cron_end: body.cron_end.as_deref(),
        time_zone: body.time_zone.as_deref(),
        environments: &body.environments,
    };
    let window = freezes::create(&state, &actor, &who, id, &asked).await?;
    Ok((StatusCode::CREATED, Json(window)))
}

/// Every freeze window the caller sees (set on a node it sees, or above
/// one), by node path.
#[utoipa::path(
    get, path = "/api/v1/freeze-windows", tag = "freezes", security(("bearer" = [])),
    responses((status = 200, body = [FreezeWindow]))
)]
async fn list_windows(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
) -> Result<Json<Vec<FreezeWindow>>> {
    Ok(Json(freezes::all_visible(&state, &actor).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CalendarQuery {
    /// How many days ahead (1–366, default 30).
    #[param(minimum = 1, maximum = 366)]
    pub days: Option<i64>,
}

/// The stretches of the windows the caller sees that are on now or start
/// in the coming `days`, soonest first (at most 500).
#[utoipa::path(
    get, path = "/api/v1/freeze-windows/calendar", tag = "freezes", security(("bearer" = [])),
    params(CalendarQuery),
    responses((status = 200, body = [CalendarEntry]), (status = 422, body = ErrorBody))
)]
async fn calendar(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
    ApiQuery(q): ApiQuery<CalendarQuery>,
) -> Result<Json<Vec<CalendarEntry>>> {
    let days = q.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(Error::validation("days", "from 1 to 366 days"));
    }
    let windows = freezes::all_visible(&state, &actor).await?;
    Ok(Json(calendar_of(&windows, now_ms(), days)))
}

/// A freeze window.
#[utoipa::path(
    get, path = "/api/v1/freeze-windows/{id}", tag = "freezes", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Window id")),
    responses((status = 200, body = FreezeWindow), (status = 404, body = ErrorBody))
)]
async fn get_window(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<FreezeWindow>> {
    Ok(Json(freezes::visible(&state, &actor, id).await?))
}

/// Removes a freeze window (owners of its node, or admins): the window
/// as it was.
#[utoipa::path(
    delete, path = "/api/v1/freeze-windows/{id}", tag = "freezes", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Window id")),
    responses((status = 200, body = FreezeWindow), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn delete_window(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<FreezeWindow>> {
    Ok(Json(freezes::delete(&state, &actor, &who, id).await?))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct OverrideBody {
    /// Why it may go through (one line).
    #[serde(default)]
    #[schema(pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$", max_length = 2000)]
    pub comment: String,
}

/// Lets a hotfix work order through the freeze windows holding its stages
/// now, as an owner of their nodes (or an admin) other than who filed
/// it; written to its timeline. The windows let through.
#[utoipa::path(
    post, path = "/api/v1/work-orders/{id}/freeze-override", tag = "freezes", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Work order id")),
    request_body = OverrideBody,
    responses(
        (status = 200, body = [FreezeWindow]), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)
    )
)]
async fn override_freeze(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<OverrideBody>,
) -> Result<Json<Vec<FreezeWindow>>> {
    Ok(Json(
        freezes::override_freeze(&state, &actor, &who, id, &body.comment).await?,
    ))
}
