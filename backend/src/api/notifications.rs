//! Notification destinations: set on a node by its owners (or admins),
//! told of the events of work orders in the node's subtree — a Slack
//! incoming webhook, or a webhook signed the Standard Webhooks way (its
//! secret shown once, when it is set). Each event is delivered once per
//! destination by the engine, with retries; the delivery log says how each
//! went, and a delivery may be sent again.

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
use crate::db::notifications::{Delivery, Destination};
use crate::error::{Error, ErrorBody, Result};
use crate::flows::notifications::{self, DestinationRequest};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_node_destinations, create_destination))
        .routes(routes!(list_destinations))
        .routes(routes!(get_destination, delete_destination))
        .routes(routes!(enable_destination))
        .routes(routes!(list_deliveries))
        .routes(routes!(send_again))
}

/// A destination to set.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDestination {
    /// What people call it. One line.
    #[schema(
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$",
        max_length = 100
    )]
    pub name: String,
    /// `slack` (an incoming webhook: `{"text": …}`) or `webhook` (signed
    /// JSON).
    #[schema(pattern = "^(slack|webhook)$")]
    pub kind: String,
    /// Where to POST: an http or https URL without user or password.
    /// Stored sealed; shown back as its host only.
    #[schema(max_length = 2000)]
    pub url: String,
    /// The events to tell: `filed`, `approved`, `rejected`,
    /// `stage_started`, `stage_paused`, `stage_succeeded`, `stage_failed`,
    /// `stage_rolled_back`, `freeze_overridden`, `line_stopped`,
    /// `line_lifted`; all when empty.
    #[serde(default)]
    #[schema(max_items = 11)]
    pub events: Vec<String>,
}

/// A destination just set, with a webhook's signing secret.
#[derive(Serialize, ToSchema)]
pub struct CreatedDestination {
    #[serde(flatten)]
    pub destination: Destination,
    /// A webhook's signing secret (`whsec_…`): shown this once, never
    /// again. Absent for Slack.
    pub secret: Option<String>,
}

/// Destinations covering a node (set on it or above it), nearest first.
#[utoipa::path(
    get, path = "/api/v1/nodes/{id}/notification-destinations", tag = "notifications", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Node id")),
    responses((status = 200, body = [Destination]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn list_node_destinations(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<Destination>>> {
    Ok(Json(notifications::of_node(&state, &actor, id).await?))
}

/// Sets a notification destination on a node (owners of the node, or
/// admins): it is told of the events it asks for on every work order in
/// the node's subtree.
#[utoipa::path(
    post, path = "/api/v1/nodes/{id}/notification-destinations", tag = "notifications", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Node id")),
    request_body = CreateDestination,
    responses(
        (status = 201, body = CreatedDestination), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)
    )
)]
async fn create_destination(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<CreateDestination>,
) -> Result<(StatusCode, Json<CreatedDestination>)> {
    let asked = DestinationRequest {
        name: &body.name,
        kind: &body.kind,
        url: &body.url,
        events: &body.events,
    };
    let (destination, secret) = notifications::create(&state, &actor, &who, id, &asked).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedDestination {
            destination,
            secret: secret.map(|s| s.expose().clone()),
        }),
    ))
}

/// Every destination the caller manages, by node path.
#[utoipa::path(
    get, path = "/api/v1/notification-destinations", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = [Destination]))
)]
async fn list_destinations(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
) -> Result<Json<Vec<Destination>>> {
    Ok(Json(notifications::all_managed(&state, &actor).await?))
}

/// A notification destination.
#[utoipa::path(
    get, path = "/api/v1/notification-destinations/{id}", tag = "notifications", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Destination id")),
    responses((status = 200, body = Destination), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn get_destination(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Destination>> {
    Ok(Json(notifications::managed(&state, &actor, id).await?))
}

/// Removes a destination, its delivery log with it; what is still to be
/// sent to it is not sent.
#[utoipa::path(
    delete, path = "/api/v1/notification-destinations/{id}", tag = "notifications", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Destination id")),
    responses((status = 200, body = Destination), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn delete_destination(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Destination>> {
    Ok(Json(notifications::delete(&state, &actor, &who, id).await?))
}

/// Lets a destination that answered 410 Gone (and was disabled) receive
/// again, from the next event on.
#[utoipa::path(
    post, path = "/api/v1/notification-destinations/{id}/enable", tag = "notifications", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Destination id")),
    responses((status = 200, body = Destination), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn enable_destination(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Destination>> {
    Ok(Json(notifications::enable(&state, &actor, &who, id).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// How many, newest first (1–500, default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// A destination's delivery log, newest first: each event told, its
/// status, attempts and last error.
#[utoipa::path(
    get, path = "/api/v1/notification-destinations/{id}/deliveries", tag = "notifications", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Destination id"), DeliveriesQuery),
    responses(
        (status = 200, body = [Delivery]), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)
    )
)]
async fn list_deliveries(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> Result<Json<Vec<Delivery>>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(Error::validation("limit", "from 1 to 500"));
    }
    Ok(Json(
        notifications::deliveries(&state, &actor, id, limit).await?,
    ))
}

/// Sends a delivery again, from its first attempt, under the same
/// `webhook-id`; 409 while it is being sent.
#[utoipa::path(
    post, path = "/api/v1/notification-deliveries/{id}/send-again", tag = "notifications", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Delivery id")),
    responses(
        (status = 200, body = Delivery), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)
    )
)]
async fn send_again(
    State(state): State<AppState>,
    ApiActor(actor, who, _): ApiActor,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Delivery>> {
    Ok(Json(
        notifications::send_again(&state, &actor, &who, id).await?,
    ))
}
