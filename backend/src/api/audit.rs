//! `GET /api/v1/audit`: the audit log for admins, newest first.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiQuery;
use super::extract::ApiActor;
use crate::app::AppState;
use crate::auth::Action;
use crate::db::audit::{self, AuditEntry, Filter};
use crate::error::{Error, ErrorBody, Result};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit_log))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only changes by this account name (`cli`, `system` for the command
    /// line and Rollway itself).
    actor: Option<String>,
    /// Only actions starting with this, e.g. `node.` or `token.revoke`.
    action: Option<String>,
    /// Only changes to this kind of thing, e.g. `node`, `account`, `token`.
    target_type: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<i64>,
    /// Rows per page, 1–500 (default 100).
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<i64>,
}

/// The audit log, newest first, in keyset pages.
#[utoipa::path(
    get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])),
    params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn list_audit_log(
    State(state): State<AppState>,
    ApiActor(actor, _, _): ApiActor,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>> {
    state.policy.require(&actor, Action::ManageAccounts, "/")?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(Error::validation(
            "limit",
            "limit must be between 1 and 500",
        ));
    }
    let filter = Filter {
        actor: query.actor.filter(|s| !s.is_empty()),
        action: query.action.filter(|s| !s.is_empty()),
        target_type: query.target_type.filter(|s| !s.is_empty()),
        before_id: query.cursor,
    };
    let (entries, more) = audit::list(&state.db.pool, &filter, limit).await?;
    let next_cursor = more.then(|| entries.last().map(|e| e.id)).flatten();
    Ok(Json(AuditPage {
        entries,
        next_cursor,
    }))
}
