//! Stops of the line in the pages: the node page shows the stops over the
//! node and lets its owners stop the line there (the banner rows are built
//! here, for the work order page too); lifting goes back where it was
//! asked from.

use axum::extract::Path;
use axum::response::Response;
use serde::Deserialize;

use super::extract::CsrfForm;
use super::{Moment, Notice, PageCtx, PageRoutes, redirect_with};
use crate::auth::Action;
use crate::db::line_stops::LineStop;
use crate::error::Error;
use crate::flows::line_stops;

pub fn routes() -> PageRoutes {
    PageRoutes::new()
        .post("/tree/nodes/{id}/line-stops", stop_line)
        .post("/line-stops/{id}/lift", lift_stop)
}

/// A stop as a banner row shows it.
pub(super) struct StopRow {
    pub s: LineStop,
    pub since: Moment,
    /// The reader may lift it.
    pub can_lift: bool,
}

impl StopRow {
    pub fn of(ctx: &PageCtx, s: LineStop) -> Self {
        StopRow {
            since: Moment::at(s.stopped_at),
            can_lift: ctx.may(Action::StopLine, &s.node_path),
            s,
        }
    }
}

#[derive(Deserialize)]
struct StopForm {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    pause_rollouts: Option<String>,
}

/// Stops the line at node `id` from the node page.
async fn stop_line(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(form): CsrfForm<StopForm>,
) -> Response {
    let to = format!("/tree/nodes/{id}");
    let done = line_stops::stop(
        &ctx.state,
        &ctx.actor.account,
        &ctx.who(),
        id,
        &form.reason,
        form.pause_rollouts.is_some(),
    )
    .await;
    match done {
        Ok(stopped) => redirect_with(
            &to,
            Notice::success(format!(
                "Stopped the line at {}: {} open work order{} held.",
                stopped.stop.node_path,
                stopped.orders,
                if stopped.orders == 1 { "" } else { "s" }
            )),
        ),
        Err(e @ (Error::NotFound(_) | Error::Forbidden(_))) => ctx.error_page(&e),
        Err(e) => redirect_with(&to, Notice::from_error(&e)),
    }
}

#[derive(Deserialize)]
struct LiftForm {
    /// Where the button was: a work order's page, the calendar, or the
    /// node's page.
    #[serde(default)]
    back: String,
}

/// Lifts stop `id`; back to the page it was lifted from (a local path
/// only), else the node's.
async fn lift_stop(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(form): CsrfForm<LiftForm>,
) -> Response {
    let back = |stop_node: i64| {
        let order_page = form
            .back
            .strip_prefix("/work-orders/")
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()));
        if order_page || form.back == "/freezes" {
            form.back.clone()
        } else {
            format!("/tree/nodes/{stop_node}")
        }
    };
    match line_stops::lift(&ctx.state, &ctx.actor.account, &ctx.who(), id).await {
        Ok(stop) => redirect_with(
            &back(stop.node_id),
            Notice::success(format!(
                "Lifted the stop at {}: held work goes on.",
                stop.node_path
            )),
        ),
        Err(e @ (Error::NotFound(_) | Error::Forbidden(_))) => ctx.error_page(&e),
        Err(e) => match line_stops::visible(&ctx.state, &ctx.actor.account, id).await {
            Ok(stop) => redirect_with(&back(stop.node_id), Notice::from_error(&e)),
            Err(_) => ctx.error_page(&e),
        },
    }
}
