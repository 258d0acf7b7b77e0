//! Driving stages from the work order page: Deploy, Roll back (this
//! stage's image, or for owners the whole replaced template) and Cancel go
//! through the same state machine call as every other decision on an order.

use axum::extract::Path;
use axum::response::Response;
use serde::Deserialize;

use super::extract::{CsrfForm, NoFields};
use super::work_orders::decide_from_page;
use super::{PageCtx, PageRoutes};
use crate::domain::work_order::Command;

pub fn routes() -> PageRoutes {
    PageRoutes::new()
        .post("/work-orders/{id}/stages/{n}/deploy", deploy_stage)
        .post("/work-orders/{id}/stages/{n}/rollback", rollback_stage)
        .post("/work-orders/{id}/stages/{n}/cancel", cancel_stage)
}

async fn deploy_stage(
    ctx: PageCtx,
    Path((id, stage)): Path<(i64, u32)>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> Response {
    decide_from_page(ctx, id, Command::Deploy { stage }).await
}

#[derive(Deserialize)]
struct RollbackForm {
    /// "whole": restore the whole replaced pod template (owners).
    #[serde(default)]
    restore: String,
}

async fn rollback_stage(
    ctx: PageCtx,
    Path((id, stage)): Path<(i64, u32)>,
    CsrfForm(form): CsrfForm<RollbackForm>,
) -> Response {
    let whole_template = form.restore == "whole";
    decide_from_page(
        ctx,
        id,
        Command::Rollback {
            stage,
            whole_template,
        },
    )
    .await
}

#[derive(Deserialize)]
struct CancelForm {
    #[serde(default)]
    reason: String,
}

async fn cancel_stage(
    ctx: PageCtx,
    Path((id, stage)): Path<(i64, u32)>,
    CsrfForm(form): CsrfForm<CancelForm>,
) -> Response {
    decide_from_page(
        ctx,
        id,
        Command::Cancel {
            stage,
            reason: form.reason,
        },
    )
    .await
}
