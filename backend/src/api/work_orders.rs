//! Work orders: file, list with filters in keyset pages, read, decide.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiActor;
use super::idempotency::{self, IdempotencyKey};
use super::{ApiJson, ApiJsonOrEmpty, ApiPath, ApiQuery};
use crate::app::AppState;
use crate::db::work_order_views::{self as views, Filter, MAX_SEARCH_LEN};
use crate::db::{accounts, tree as tree_db};
use crate::domain::release_item::{Canary, Strategy};
use crate::domain::tree::normalize_path;
use crate::domain::verify::VerifyPlan;
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
        .routes(routes!(cancel_stage))
        .routes(routes!(approve_step))
        .routes(routes!(sign_off))
        .routes(routes!(go_on))
}

// A work order in the API (its doc would become the schema's description).
#[derive(Serialize, ToSchema)]
pub struct WorkOrder {
    pub id: i64,
    pub release_item_id: i64,
    /// The release item's name.
    pub release_item: String,
    pub node_id: i64,
    pub node_path: String,
    /// The GitLab tag released.
    pub version: String,
    /// `image_repository:version`.
    pub image: String,
    pub title: String,
    pub description: String,
    /// `pending_approval`, `approved`, `in_progress`, `succeeded`, `failed`,
    /// `rolled_back` (every stage that deployed was rolled back),
    /// `partially_rolled_back` (some stage still runs this version),
    /// `rejected` or `closed`.
    pub state: String,
    pub creator_id: i64,
    pub creator: String,
    pub required_approvals: i64,
    pub approvals: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// Filed as a hotfix, with this reason; null for a usual release.
    pub hotfix_reason: Option<String>,
}

impl From<views::WorkOrder> for WorkOrder {
    fn from(o: views::WorkOrder) -> Self {
        Self {
            id: o.id,
            release_item_id: o.release_item_id,
            release_item: o.release_item,
            node_id: o.node_id,
            node_path: o.node_path,
            version: o.version,
            image: o.image,
            title: o.title,
            description: o.description,
            state: o.state.as_str().to_string(),
            creator_id: o.creator_id,
            creator: o.creator,
            required_approvals: o.required_approvals,
            approvals: o.approvals,
            created_at: o.created_at,
            updated_at: o.updated_at,
            hotfix_reason: o.hotfix_reason,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Decision {
    pub account: String,
    /// `approved` or `rejected`.
    pub decision: String,
    pub comment: String,
    pub at: i64,
}

impl From<views::Decision> for Decision {
    fn from(d: views::Decision) -> Self {
        Self {
            account: d.account,
            decision: d.decision,
            comment: d.comment,
            at: d.at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct StageRun {
    pub position: i64,
    pub name: String,
    pub app_id: i64,
    pub app: String,
    pub cluster: String,
    pub strategy: Strategy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// `pending`, `deploying`, `verifying`, `paused`, `succeeded`, `failed`, `rolling_back`, `rolled_back`.
    pub status: String,
    pub replaced_image: Option<String>,
    pub replaced_revision: Option<String>,
    pub new_revision: Option<String>,
    /// The revision a rollback brought back.
    pub restored_revision: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub message: String,
    /// A canary stage's step it last paused at (1-based): the step it waits
    /// at while `paused`, the one it last went on from otherwise.
    pub paused_step: Option<u32>,
    /// What verifies the stage once its new version runs, as filed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyPlan>,
    /// Where its verification is; absent without a plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

/// Where a stage's verification is.
#[derive(Serialize, ToSchema)]
pub struct Verification {
    /// When it started (the rollout was available); null before. A canary
    /// stage's gates are measured at its steps before that.
    pub started_at: Option<i64>,
    /// When an owner signed the stage off.
    pub signed_off_at: Option<i64>,
    /// When a person last let it go on past an inconclusive gate.
    pub continued_at: Option<i64>,
    /// Every measurement of a gate and attempt of a smoke check, in the
    /// order taken.
    pub results: Vec<VerifyResult>,
}

/// One measurement of a gate or one attempt of a smoke check.
#[derive(Serialize, ToSchema)]
pub struct VerifyResult {
    /// `gate` or `smoke`.
    pub check: String,
    /// Which gate or smoke check of the plan (0-based).
    pub index: i64,
    /// The canary step it belongs to; 0 after the rollout.
    pub step: i64,
    /// The measurement or attempt (1-based).
    pub seq: i64,
    pub at: i64,
    /// `pass`, `fail` or `inconclusive`.
    pub verdict: String,
    /// A gate: the sample furthest on the wrong side of its threshold; a
    /// smoke check: the HTTP status.
    pub value: Option<f64>,
    /// What came back, in words.
    pub detail: String,
    /// What was asked: the gate's query or the smoke request's URL, with
    /// the stage's namespace, Deployment, container and pod-template
    /// hashes filled in.
    pub asked: String,
}

impl From<&views::VerifyResult> for VerifyResult {
    fn from(v: &views::VerifyResult) -> Self {
        Self {
            check: v.check_kind.clone(),
            index: v.check_index,
            step: v.step,
            seq: v.seq,
            at: v.at,
            verdict: v.verdict.clone(),
            value: v.value,
            detail: v.detail.clone(),
            asked: v.asked.clone(),
        }
    }
}

impl StageRun {
    fn of(r: views::StageRun, results: &[views::VerifyResult]) -> Self {
        let verification = r.verify.as_ref().map(|_| Verification {
            started_at: r.verify_started_at,
            signed_off_at: r.signed_off_at,
            continued_at: r.verify_continued_at,
            results: results
                .iter()
                .filter(|v| v.position == r.position)
                .map(Into::into)
                .collect(),
        });
        Self {
            verification,
            ..r.into()
        }
    }
}

impl From<views::StageRun> for StageRun {
    fn from(r: views::StageRun) -> Self {
        Self {
            position: r.position,
            name: r.name,
            app_id: r.app_id,
            app: r.app,
            cluster: r.cluster,
            strategy: r.strategy,
            canary: r.canary,
            status: r.status.as_str().to_string(),
            replaced_image: r.replaced_image,
            replaced_revision: r.replaced_revision,
            new_revision: r.new_revision,
            restored_revision: r.restored_revision,
            started_at: r.started_at,
            finished_at: r.finished_at,
            message: r.message,
            paused_step: r.paused_step,
            verify: r.verify,
            verification: None,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TimelineEvent {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    /// What happened, e.g. `filed`, `approval_recorded`, `approved`, `rejected`, `closed`.
    pub kind: String,
    pub message: String,
    pub stage_position: Option<i64>,
}

impl From<views::TimelineEvent> for TimelineEvent {
    fn from(e: views::TimelineEvent) -> Self {
        Self {
            id: e.id,
            at: e.at,
            actor: e.actor,
            kind: e.kind,
            message: e.message,
            stage_position: e.stage_position,
        }
    }
}

/// A work order with everything that happened to it.
#[derive(Serialize, ToSchema)]
pub struct WorkOrderDetail {
    #[serde(flatten)]
    pub order: WorkOrder,
    /// The node whose owners approve, and who they are (creator included).
    pub approvers_node: Option<String>,
    pub approvers: Vec<String>,
    pub decisions: Vec<Decision>,
    pub stage_runs: Vec<StageRun>,
    pub timeline: Vec<TimelineEvent>,
}

impl From<views::WorkOrderDetail> for WorkOrderDetail {
    fn from(d: views::WorkOrderDetail) -> Self {
        Self {
            order: d.order.into(),
            approvers_node: d.approvers_node,
            approvers: d.approvers,
            decisions: d.decisions.into_iter().map(Into::into).collect(),
            stage_runs: d
                .stage_runs
                .into_iter()
                .map(|r| StageRun::of(r, &d.verify_results))
                .collect(),
            timeline: d.timeline.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Deserialize, Serialize, ToSchema)]
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
    /// File it as a hotfix, for this reason (one line): it may deploy
    /// through a freeze window once an owner of the frozen node (or an
    /// admin) lets it (`POST /api/v1/work-orders/{id}/freeze-override`).
    #[serde(default)]
    #[schema(
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$",
        max_length = 200
    )]
    pub hotfix_reason: Option<String>,
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
pub struct RejectBody {
    /// Why: free text (tabs and line breaks, no other control
    /// characters), not blank.
    #[schema(
        pattern = r"^([^\u0000-\u0008\u000b-\u001f\u007f-\u009f]|\r\n)*$",
        min_length = 1,
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
    /// A tree node (id or path; `shop/cart` is read as `/shop/cart`):
    /// orders of items at or below it.
    node: Option<String>,
    /// The creator's account name.
    creator: Option<String>,
    /// Only orders waiting for the caller's approval.
    awaiting_me: Option<bool>,
    /// The `next_cursor` of the previous page.
    cursor: Option<i64>,
    /// Orders per page, 1–200 (default 50).
    limit: Option<i64>,
    /// Search: orders whose version, release item name or a word of whose
    /// title starts with this, ignoring case (at most 100 characters).
    q: Option<String>,
}

// The schema of a page of orders, as documented; `PageJson` writes it
// (its doc would become the schema's description).
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
    ApiActor(actor, _, board_version): ApiActor,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(Error::validation(
            "limit",
            "limit must be between 1 and 200",
        ));
    }
    let filter = resolve_filter(&state, &actor, q).await?;
    let scope = state.policy.read_scope(&state.db, &actor).await?;
    let page = state
        .orders
        .list(&state.db, board_version, &filter, &scope, limit)
        .await?;
    let (orders, more) = (&page.0, page.1);
    let next_cursor = more.then(|| orders.last().map(|o| o.id)).flatten();
    Ok(Json(PageJson {
        items: orders.iter().map(OrderJson).collect(),
        next_cursor,
    })
    .into_response())
}

/// A [`WorkOrderPage`] written from the cached page it borrows, without
/// copying its orders.
#[derive(Serialize)]
struct PageJson<'a> {
    items: Vec<OrderJson<'a>>,
    next_cursor: Option<i64>,
}

/// An order written as [`WorkOrder`] is, field for field (a test holds
/// the two to the same JSON), from the order it borrows.
struct OrderJson<'a>(&'a views::WorkOrder);

impl Serialize for OrderJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let o = self.0;
        let mut m = s.serialize_struct("WorkOrder", 17)?;
        m.serialize_field("id", &o.id)?;
        m.serialize_field("release_item_id", &o.release_item_id)?;
        m.serialize_field("release_item", &o.release_item)?;
        m.serialize_field("node_id", &o.node_id)?;
        m.serialize_field("node_path", &o.node_path)?;
        m.serialize_field("version", &o.version)?;
        m.serialize_field("image", &o.image)?;
        m.serialize_field("title", &o.title)?;
        m.serialize_field("description", &o.description)?;
        m.serialize_field("state", o.state.as_str())?;
        m.serialize_field("creator_id", &o.creator_id)?;
        m.serialize_field("creator", &o.creator)?;
        m.serialize_field("required_approvals", &o.required_approvals)?;
        m.serialize_field("approvals", &o.approvals)?;
        m.serialize_field("created_at", &o.created_at)?;
        m.serialize_field("updated_at", &o.updated_at)?;
        m.serialize_field("hotfix_reason", &o.hotfix_reason)?;
        m.end()
    }
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
        Some(raw) => match raw.parse::<i64>() {
            // A node the caller may not see is refused like a missing one.
            Ok(id) => match state
                .policy
                .visible(actor, tree_db::get(&state.db.pool, id).await)
            {
                Ok(node) => Some(node.path),
                Err(Error::NotFound(_)) => {
                    return Err(Error::validation("node", format!("no tree node {raw}")));
                }
                Err(e) => return Err(e),
            },
            Err(_) => normalize_path(raw).map_err(|m| Error::validation("node", m))?,
        },
    };
    let search = q.q.map(|q| q.trim().to_string()).filter(|q| !q.is_empty());
    if search
        .as_ref()
        .is_some_and(|q| q.chars().count() > MAX_SEARCH_LEN)
    {
        return Err(Error::validation(
            "q",
            format!("search for at most {MAX_SEARCH_LEN} characters"),
        ));
    }
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
        search,
    })
}

/// Files a work order (rules 1–3 checked; the version must be a GitLab tag).
#[utoipa::path(
    post, path = "/api/v1/work-orders", tag = "work orders", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = idempotency::DESCRIPTION)),
    request_body = FileWorkOrder,
    responses(
        (status = 201, body = WorkOrder), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, body = ErrorBody)
    )
)]
async fn file_work_order(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<FileWorkOrder>,
) -> Response {
    idempotency::once(
        &state.db,
        &actor,
        key,
        "POST /api/v1/work-orders",
        &body,
        async {
            let asked = flows::OrderRequest {
                release_item_id: body.release_item_id,
                version: &body.version,
                title: &body.title,
                description: &body.description,
                hotfix_reason: body.hotfix_reason.as_deref(),
            };
            let filed = flows::file_work_order(&state, &actor, &who, &asked).await;
            match filed {
                Ok(order) => (StatusCode::CREATED, Json(WorkOrder::from(order))).into_response(),
                Err(e) => e.into_response(),
            }
        },
    )
    .await
}

/// A work order with its approvers, decisions, stage runs and timeline.
#[utoipa::path(
    get, path = "/api/v1/work-orders/{id}", tag = "work orders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Work order id")),
    responses((status = 200, body = WorkOrderDetail), (status = 404, body = ErrorBody))
)]
async fn get_work_order(
    State(state): State<AppState>,
    ApiActor(actor, _, board_version): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<WorkOrderDetail>> {
    let detail = flows::work_orders::detail(&state, &actor, Some(board_version), id).await?;
    Ok(Json(detail.into()))
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
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<Comment>,
) -> Result<Json<WorkOrder>> {
    let comment = body.comment;
    let order =
        flows::decide_on_work_order(&state, &actor, &who, id, Command::Approve { comment }).await?;
    Ok(Json(order.into()))
}

/// Rejects as the token's account, with a reason; one rejection ends the
/// order.
#[utoipa::path(
    post, path = "/api/v1/work-orders/{id}/reject", tag = "work orders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Work order id")),
    request_body = RejectBody,
    responses((status = 200, body = WorkOrder), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn reject_work_order(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<RejectBody>,
) -> Result<Json<WorkOrder>> {
    let comment = body.comment;
    let order =
        flows::decide_on_work_order(&state, &actor, &who, id, Command::Reject { comment }).await?;
    Ok(Json(order.into()))
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
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<CloseBody>,
) -> Result<Json<WorkOrder>> {
    let order = flows::decide_on_work_order(
        &state,
        &actor,
        &who,
        id,
        Command::Close {
            reason: body.reason,
        },
    )
    .await?;
    Ok(Json(order.into()))
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
    ApiActor(actor, who, _): ApiActor,
    ApiPath((id, stage)): ApiPath<(i64, u32)>,
) -> Result<(StatusCode, Json<WorkOrder>)> {
    let order = flows::drive_stage(&state, &actor, &who, id, Command::Deploy { stage }).await?;
    Ok((StatusCode::ACCEPTED, Json(order.into())))
}

/// What a rollback restores.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// `false` (the default): restore only the image the stage replaced,
    /// refused with 409 listing the changes when anything else in the pod
    /// template changed since the deploy. `true` (owners only): restore the
    /// whole pod template the stage replaced, undoing those changes.
    #[serde(default)]
    pub whole_template: bool,
}

/// Rolls stage `n` back (allowed once the stage has deployed: succeeded or
/// failed). The rule: a rollback restores the image the stage replaced and
/// nothing else, and only while the rest of the pod template is as the
/// stage's deploy left it; a Deployment someone changed since (another
/// container's image, an environment variable), replaced (another uid) or
/// deployed again is refused up front with 409 saying what changed, and
/// the stage stays as it was. With `whole_template`, an owner restores the
/// whole replaced template anyway. The body may be empty. Answers 202; the
/// engine writes and watches the Deployment become available.
#[utoipa::path(
    post, path = "/api/v1/work-orders/{id}/stages/{n}/rollback", tag = "work orders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Work order id"), ("n" = u32, Path, description = "Stage position, from 1")),
    request_body(content = Option<RollbackBody>, description = "Optional; an empty body restores the image only"),
    responses((status = 202, body = WorkOrder), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 502, body = ErrorBody))
)]
async fn rollback_stage(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath((id, stage)): ApiPath<(i64, u32)>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<RollbackBody>,
) -> Result<(StatusCode, Json<WorkOrder>)> {
    let command = Command::Rollback {
        stage,
        whole_template: body.whole_template,
    };
    let order = flows::drive_stage(&state, &actor, &who, id, command).await?;
    Ok((StatusCode::ACCEPTED, Json(order.into())))
}

/// Cancels stage `n` while the engine works on it (deploying, verifying or
/// rolling back) — owners of the item's node and admins only. The engine
/// stops (on every server, within a third of its lease), the Deployment is
/// left as it is, and the stage fails with the reason and what the
/// Deployment showed at that moment; the order fails with it, so the stage
/// can then be rolled back or the order closed.
#[utoipa::path(
    post, path = "/api/v1/work-orders/{id}/stages/{n}/cancel", tag = "work orders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Work order id"), ("n" = u32, Path, description = "Stage position, from 1")),
    request_body = CloseBody,
    responses((status = 200, body = WorkOrder), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn cancel_stage(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath((id, stage)): ApiPath<(i64, u32)>,
    ApiJson(body): ApiJson<CloseBody>,
) -> Result<Json<WorkOrder>> {
    let command = Command::Cancel {
        stage,
        reason: body.reason,
    };
    let order = flows::drive_stage(&state, &actor, &who, id, command).await?;
    Ok(Json(order.into()))
}

/// Which canary step an approval is for.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepBody {
    /// The step the stage is paused at, as the approver saw it (1-based).
    #[schema(minimum = 1, maximum = 21)]
    pub step: u32,
}

/// Lets canary stage `n`, paused at `step`, go on to its next step (owners
/// of the item's node): the approval is recorded with the stage's change,
/// then the Rollout's status is patched as `kubectl-kruise rollout
/// approve` does, only while it is still paused at that step. A stage not
/// paused at `step` (the rollout moved on, or someone approved it first)
/// is a 409 and patches nothing.
#[utoipa::path(
    post, path = "/api/v1/work-orders/{id}/stages/{n}/approve-step", tag = "work orders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Work order id"), ("n" = u32, Path, description = "Stage position, from 1")),
    request_body = StepBody,
    responses((status = 200, body = WorkOrder), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn approve_step(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath((id, stage)): ApiPath<(i64, u32)>,
    ApiJson(body): ApiJson<StepBody>,
) -> Result<Json<WorkOrder>> {
    let command = Command::ApproveStep {
        stage,
        step: body.step,
    };
    let order = flows::drive_stage(&state, &actor, &who, id, command).await?;
    Ok(Json(order.into()))
}

/// An owner's "verified" on stage `n`, whose verification plan asks for
/// a sign-off (owners of the item's node and admins). Allowed once the
/// stage's verification runs (its rollout is available); the stage
/// succeeds when the rest of its plan has passed too.
#[utoipa::path(
    post, path = "/api/v1/work-orders/{id}/stages/{n}/sign-off", tag = "work orders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Work order id"), ("n" = u32, Path, description = "Stage position, from 1")),
    responses((status = 200, body = WorkOrder), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn sign_off(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath((id, stage)): ApiPath<(i64, u32)>,
) -> Result<Json<WorkOrder>> {
    let order = flows::drive_stage(&state, &actor, &who, id, Command::SignOff { stage }).await?;
    Ok(Json(order.into()))
}

/// Lets stage `n` go on with its verification after a gate could not be
/// judged past its inconclusive limit (the stage is `paused` for a
/// person's decision; owners of the item's node and admins). The gate
/// counts as passed by that person; the rest of the plan runs. The other
/// decision is a rollback (`…/rollback`).
#[utoipa::path(
    post, path = "/api/v1/work-orders/{id}/stages/{n}/continue", tag = "work orders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Work order id"), ("n" = u32, Path, description = "Stage position, from 1")),
    responses((status = 200, body = WorkOrder), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn go_on(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath((id, stage)): ApiPath<(i64, u32)>,
) -> Result<Json<WorkOrder>> {
    let order = flows::drive_stage(&state, &actor, &who, id, Command::GoOn { stage }).await?;
    Ok(Json(order.into()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::domain::work_order::StageStatus;

    fn properties(schemas: &Value, name: &str) -> BTreeSet<String> {
        let schema = &schemas[name];
        let mut keys: BTreeSet<String> = BTreeSet::new();
        let parts = match schema["allOf"].as_array() {
            Some(parts) => parts.clone(),
            None => vec![schema.clone()],
        };
        for part in parts {
            let part = match part["$ref"].as_str() {
                Some(r) => schemas[r.rsplit('/').next().unwrap()].clone(),
                None => part,
            };
            keys.extend(part["properties"].as_object().unwrap().keys().cloned());
        }
        keys
    }

    fn keys(value: &Value) -> BTreeSet<String> {
        value.as_object().unwrap().keys().cloned().collect()
    }

    fn detail() -> views::WorkOrderDetail {
        views::WorkOrderDetail {
            order: views::WorkOrder {
                id: 7,
                release_item_id: 3,
                release_item: "shop".into(),
                node_id: 2,
                node_path: "acme/shop".into(),
                version: "v1.2.0".into(),
                image: "registry/shop:v1.2.0".into(),
                title: "Release".into(),
                description: String::new(),
                state: OrderState::InProgress,
                creator_id: 4,
                creator: "erin".into(),
                required_approvals: 1,
                approvals: 1,
                created_at: 1,
                updated_at: 2,
                hotfix_reason: None,
            },
            approvers_node: Some("acme".into()),
            approvers: vec!["olga".into()],
            auto_rollback: true,
            decisions: vec![views::Decision {
                account: "olga".into(),
                decision: "approved".into(),
                comment: String::new(),
                at: 1,
            }],
            stage_runs: vec![views::StageRun {
                position: 1,
                name: "staging".into(),
                app_id: 5,
                app: "shop-web".into(),
                cluster: "staging".into(),
                location: crate::db::apps::Location {
                    cluster_id: 2,
                    namespace: "shop".into(),
                    deployment: "shop-web".into(),
                    container: "app".into(),
                },
                strategy: Strategy::Canary,
                canary: Some(Canary {
                    steps: Vec::new(),
                    header_match: None,
                }),
                status: StageStatus::RollingBack,
                replaced_image: Some("registry/shop:v1.1.0".into()),
                replaced_revision: Some("3".into()),
                new_revision: Some("4".into()),
                restored_revision: None,
                started_at: Some(1),
                finished_at: None,
                message: String::new(),
                rollback_from: Some(StageStatus::Succeeded),
                paused_step: None,
                verify: Some(VerifyPlan {
                    soak_seconds: Some(60),
                    ..VerifyPlan::default()
                }),
                verify_started_at: Some(2),
                signed_off_at: None,
                verify_continued_at: None,
            }],
            timeline: vec![views::TimelineEvent {
                id: 1,
                at: 1,
                actor: "erin".into(),
                kind: "filed".into(),
                message: "shop v1.2.0".into(),
                stage_position: None,
            }],
            verify_results: vec![views::VerifyResult {
                position: 1,
                step: 0,
                check_kind: "gate".into(),
                check_index: 0,
                seq: 1,
                at: 3,
                verdict: "pass".into(),
                value: Some(0.01),
                detail: "0.01 < 0.05".into(),
                asked: "sum(rate(errors[1m]))".into(),
            }],
        }
    }

    /// The API's JSON is what its OpenAPI schemas say: the same field names,
    /// statuses and strategies as the strings of SPEC.
    #[test]
    fn work_order_json_matches_its_schemas() {
        let (_, doc) = crate::api::router().split_for_parts();
        let doc = serde_json::to_value(&doc).unwrap();
        let schemas = &doc["components"]["schemas"];
        let json = serde_json::to_value(WorkOrderDetail::from(detail())).unwrap();
        assert_eq!(keys(&json), properties(schemas, "WorkOrderDetail"));
        assert_eq!(
            keys(&json["stage_runs"][0]),
            properties(schemas, "StageRun")
        );
        assert_eq!(keys(&json["decisions"][0]), properties(schemas, "Decision"));
        assert_eq!(
            keys(&json["timeline"][0]),
            properties(schemas, "TimelineEvent")
        );
        let order = serde_json::to_value(WorkOrder::from(detail().order)).unwrap();
        assert_eq!(keys(&order), properties(schemas, "WorkOrder"));
        let mut listed = detail().order;
        listed.hotfix_reason = Some("cards charged twice".into());
        assert_eq!(
            serde_json::to_value(OrderJson(&listed)).unwrap(),
            serde_json::to_value(WorkOrder::from(listed.clone())).unwrap(),
            "a listed order is written as the schema's WorkOrder"
        );
        let page = PageJson {
            items: vec![OrderJson(&listed)],
            next_cursor: Some(7),
        };
        assert_eq!(
            keys(&serde_json::to_value(&page).unwrap()),
            properties(schemas, "WorkOrderPage")
        );
        assert_eq!(json["state"], "in_progress");
        assert_eq!(json["stage_runs"][0]["status"], "rolling_back");
        assert_eq!(json["stage_runs"][0]["strategy"], "canary");
    }
}
