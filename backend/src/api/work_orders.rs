//! Work orders: file, list with filters in keyset pages, read, decide.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiActor;
use super::{ApiJson, ApiJsonOrEmpty, ApiPath, ApiQuery};
use crate::app::AppState;
use crate::db::work_orders::{self, Filter, WorkOrder, WorkOrderDetail};
use crate::db::{accounts, tree as tree_db};
use crate::domain::work_order::{Command, State as OrderState};
use crate::error::{Error, ErrorBody, Result};
use crate::flows;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_work_orders, file_work_order))
        .routes(routes!(get_work_order))
        .routes(routes!(approve_work_order))
        .routes(routes!(reject_work_order))
        .routes(routes!(close_work_order))
        .routes(routes!(deploy_stage))
        .routes(routes!(rollback_stage))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileWorkOrder {
    pub release_item_id: i64,
    /// A tag of the item's GitLab project.
    #[schema(
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub version: String,
    /// One line, not blank.
    #[schema(
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$",
        max_length = 200
    )]
    pub title: String,
    /// Free text: tabs and line breaks, no other control characters.
    #[serde(default)]
    #[schema(
        pattern = r"^([^\u0000-\u0008\u000b-\u001f\u007f-\u009f]|\r\n)*$",
        max_length = 20000
    )]
    pub description: String,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Comment {
    /// Free text: tabs and line breaks, no other control characters.
    #[serde(default)]
    #[schema(
        pattern = r"^([^\u0000-\u0008\u000b-\u001f\u007f-\u009f]|\r\n)*$",
        max_length = 2000
    )]
    pub comment: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseBody {
    /// Free text (tabs and line breaks, no other control characters), not
    /// blank.
    #[schema(
        pattern = r"^([^\u0000-\u0008\u000b-\u001f\u007f-\u009f]|\r\n)*$",
        min_length = 1,
        max_length = 2000
    )]
    pub reason: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// A state, e.g. `pending_approval`.
    state: Option<String>,
    /// A release item id.
    item: Option<i64>,
    /// A tree node (id or path): orders of items at or below it.
    node: Option<String>,
    /// The creator's account name.
    creator: Option<String>,
    /// Only orders waiting for the caller's approval.
    awaiting_me: Option<bool>,
    /// The `next_cursor` of the previous page.
    cursor: Option<i64>,
    /// Orders per page, 1–200 (default 50).
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct WorkOrderPage {
    pub items: Vec<WorkOrder>,
    /// Pass as `cursor` for the next (older) page; absent on the last one.
    pub next_cursor: Option<i64>,
}

/// The work orders the caller may view, newest first, filtered, in keyset
/// pages.
#[utoipa::path(
    get, path = "/api/v1/work-orders", tag = "work orders", security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, body = WorkOrderPage), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn list_work_orders(
    State(state): State<AppState>,
    ApiActor(actor, _): ApiActor,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<WorkOrderPage>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(Error::validation(
            "limit",
            "limit must be between 1 and 200",
        ));
    }
    let filter = resolve_filter(&state, &actor, q).await?;
    let scope = state.policy.read_scope(&state.db, &actor).await?;
    let (items, more) = work_orders::list(&state.db, &filter, &scope, limit).await?;
    let next_cursor = more.then(|| items.last().map(|o| o.id)).flatten();
    Ok(Json(WorkOrderPage { items, next_cursor }))
}

async fn resolve_filter(
    state: &AppState,
    actor: &accounts::Account,
    q: ListQuery,
) -> Result<Filter> {
    let order_state = match q.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            s.parse::<OrderState>()
                .map_err(|m| Error::validation("state", m))?,
        ),
    };
    let node = match q.node.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(raw) => Some(match raw.parse::<i64>() {
            // A node the caller may not see is refused like a missing one.
            Ok(id) => match state
                .policy
                .visible(actor, tree_db::get(&state.db.pool, id).await)
            {
                Ok(node) => node.path,
                Err(Error::NotFound(_)) => {
                    return Err(Error::validation("node", format!("no tree node {raw}")));
                }
                Err(e) => return Err(e),
            },
            Err(_) => raw.trim_end_matches('/').to_string(),
        }),
    };
    let creator = match q.creator.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(name) => Some(
            accounts::find_by_name(&state.db.pool, name)
                .await?
                .ok_or_else(|| Error::validation("creator", format!("no account named '{name}'")))?
                .id,
        ),
    };
    Ok(Filter {
        state: order_state,
        items: q.item.into_iter().collect(),
        node,
        creator,
        awaiting: match q.awaiting_me.unwrap_or(false) {
            true => Some((
                actor.id,
                state.policy.approver_nodes(&state.db, actor.id).await?,
            )),
            false => None,
        },
        before_id: q.cursor,
    })
}

/// Files a work order (rules 1–3 checked; the version must be a GitLab tag).
#[utoipa::path(
    post, path = "/api/v1/work-orders", tag = "work orders", security(("bearer" = [])),
    request_body = FileWorkOrder,
    responses(
        (status = 201, body = WorkOrder), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, body = ErrorBody)
    )
)]
async fn file_work_order(
    State(state): State<AppState>,
    ApiActor(actor, who): ApiActor,
    ApiJson(body): ApiJson<FileWorkOrder>,
) -> Result<(StatusCode, Json<WorkOrder>)> {
    let order = flows::file_work_order(
        &state,
        &actor,
        &who,
        body.release_item_id,
        &body.version,
        &body.title,
        &body.description,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(order)))
}

/// A work order with its approvers, decisions, stage runs and timeline.
#[utoipa::path(
    get, path = "/api/v1/work-orders/{id}", tag = "work orders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Work order id")),
    responses((status = 200, body = WorkOrderDetail), (status = 404, body = ErrorBody))
)]
async fn get_work_order(
    State(state): State<AppState>,
    ApiActor(actor, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<WorkOrderDetail>> {
    Ok(Json(state.policy.visible(
        &actor,
        work_orders::detail(&state.db.pool, id).await,
    )?))
}

/// Approves as the token's account (an effective approver, not the creator).
#[utoipa::path(
    post, path = "/api/v1/work-orders/{id}/approve", tag = "work orders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Work order id")),
    request_body(content = Option<Comment>, content_type = "application/json", description = "Optional: an empty body is no comment"),
    responses((status = 200, body = WorkOrder), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
async fn approve_work_order(
    State(state): State<AppState>,
    ApiActor(actor, who): ApiActor,
    ApiPath(id): ApiPath<i64>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<Comment>,
) -> Result<Json<WorkOrder>> {
    let comment = body.comment;
    Ok(Json(
        flows::decide_on_work_order(&state, &actor, &who, id, Command::Approve { comment }).await?,
    ))
}

/// Rejects as the token's account; one rejection ends the order.
#[utoipa::path(
    post, path = "/api/v1/work-orders/{id}/reject", tag = "work orders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Work order id")),
    request_body(content = Option<Comment>, content_type = "application/json", description = "Optional: an empty body is no comment"),
    responses((status = 200, body = WorkOrder), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
async fn reject_work_order(
    State(state): State<AppState>,
    ApiActor(actor, who): ApiActor,
    ApiPath(id): ApiPath<i64>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<Comment>,
) -> Result<Json<WorkOrder>> {
    let comment = body.comment;
    Ok(Json(
        flows::decide_on_work_order(&state, &actor, &who, id, Command::Reject { comment }).await?,
    ))
}

/// Closes an open order with a reason (refused while a stage is rolling out).
#[utoipa::path(
    post, path = "/api/v1/work-orders/{id}/close", tag = "work orders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Work order id")),
    request_body = CloseBody,
    responses((status = 200, body = WorkOrder), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn close_work_order(
    State(state): State<AppState>,
    ApiActor(actor, who): ApiActor,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<CloseBody>,
) -> Result<Json<WorkOrder>> {
    Ok(Json(
        flows::decide_on_work_order(
            &state,
            &actor,
            &who,
            id,
            Command::Close {
                reason: body.reason,
            },
        )
        .await?,
    ))
}

/// Starts stage `n` (1-based): stage 1 of an approved order, or the next
/// stage once the one before it succeeded. The cluster and Deployment are
/// checked first; the engine then patches the image and watches the
/// rollout. Answers 202 with the order; follow the stage in `GET
/// /api/v1/work-orders/{id}`.
#[utoipa::path(
    post, path = "/api/v1/work-orders/{id}/stages/{n}/deploy", tag = "work orders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Work order id"), ("n" = u32, Path, description = "Stage position, from 1")),
    responses((status = 202, body = WorkOrder), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 502, body = ErrorBody))
)]
async fn deploy_stage(
    State(state): State<AppState>,
    ApiActor(actor, who): ApiActor,
    ApiPath((id, stage)): ApiPath<(i64, u32)>,
) -> Result<(StatusCode, Json<WorkOrder>)> {
    let order = flows::drive_stage(&state, &actor, &who, id, Command::Deploy { stage }).await?;
    Ok((StatusCode::ACCEPTED, Json(order)))
}

/// Rolls stage `n` back to the pod template it replaced (allowed once the
/// stage has deployed: succeeded or failed). Answers 202; the engine
/// writes the template back and watches it become available.
#[utoipa::path(
    post, path = "/api/v1/work-orders/{id}/stages/{n}/rollback", tag = "work orders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Work order id"), ("n" = u32, Path, description = "Stage position, from 1")),
    responses((status = 202, body = WorkOrder), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn rollback_stage(
    State(state): State<AppState>,
    ApiActor(actor, who): ApiActor,
    ApiPath((id, stage)): ApiPath<(i64, u32)>,
) -> Result<(StatusCode, Json<WorkOrder>)> {
    let order = flows::drive_stage(&state, &actor, &who, id, Command::Rollback { stage }).await?;
    Ok((StatusCode::ACCEPTED, Json(order)))
}
