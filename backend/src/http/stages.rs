//! Driving stages from the work order page: Deploy and Roll back go through
//! the same state machine call as every other decision on an order.

use axum::extract::Path;
use axum::response::Response;

use super::extract::{CsrfForm, NoFields};
use super::work_orders::decide_from_page;
use super::{PageCtx, PageRoutes};
use crate::domain::work_order::Command;

pub fn routes() -> PageRoutes {
    PageRoutes::new()
        .post("/work-orders/{id}/stages/{n}/deploy", deploy_stage)
        .post("/work-orders/{id}/stages/{n}/rollback", rollback_stage)
}

async fn deploy_stage(
    ctx: PageCtx,
    Path((id, stage)): Path<(i64, u32)>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> Response {
    decide_from_page(ctx, id, Command::Deploy { stage }).await
}

async fn rollback_stage(
    ctx: PageCtx,
    Path((id, stage)): Path<(i64, u32)>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> Response {
    decide_from_page(ctx, id, Command::Rollback { stage }).await
}
