//! An app's page, for everyone who may see its node: what runs now, the
//! CI fast path's recent deployments and lanes next to the work-order
//! stages that deployed it; engineers and owners may remove a lane.

use askama::Template;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;

use super::dashboard::Reading;
use super::extract::{CsrfForm, NoFields};
use super::{Layout, Moment, Notice, PageCtx, PageRoutes, redirect_with};
use crate::auth::Action;
use crate::db::apps::{self, App};
use crate::db::deployments::{self, FastDeployment, Lane, StageOnApp};
use crate::domain::work_order::StageStatus;
use crate::error::{Error, Result};
use crate::flows;

pub fn routes() -> PageRoutes {
    PageRoutes::new()
        .get("/apps/{id}", show_app)
        .post("/apps/{id}/lanes/{lane}/delete", remove_lane)
}

/// How many of each history the page shows.
const SHOWN: i64 = 20;

#[derive(Template)]
#[template(path = "app.html")]
struct AppPage {
    layout: Layout,
    app: App,
    live: Reading,
    deployments: Vec<DeploymentRow>,
    lanes: Vec<LaneRow>,
    stages: Vec<StageRow>,
    may_deploy: bool,
    lane_ttl: String,
}

struct DeploymentRow {
    d: FastDeployment,
    at: Moment,
}

struct LaneRow {
    lane: Lane,
    created: Moment,
    deployed: Moment,
}

struct StageRow {
    s: StageOnApp,
    label: &'static str,
    at: Moment,
}

/// `seconds` as people say it: "3 days", "12 hours", "90 seconds".
fn duration_words(seconds: u32) -> String {
    let (n, unit) = match seconds {
        s if s % 86_400 == 0 => (s / 86_400, "day"),
        s if s % 3_600 == 0 => (s / 3_600, "hour"),
        s if s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

async fn show_app(ctx: PageCtx, Path(id): Path<i64>) -> Response {
    let result = async {
        let app = ctx.visible(apps::get(&ctx.state.db.pool, id).await)?;
        let pool = &ctx.state.db.pool;
        let mut live = flows::live::apps_live(&ctx.state, &[app.id]).await?;
        let live = match live.remove(&app.id) {
            Some(status) => Reading::of_app(&status, &app),
            None => return Err(apps::not_found(app.id).into()),
        };
        let deployments = deployments::list_for_app(pool, app.id, SHOWN)
            .await?
            .into_iter()
            .map(|d| DeploymentRow {
                at: Moment::at(d.finished_at.unwrap_or(d.created_at)),
                d,
            })
            .collect();
        let lanes = deployments::lanes_of(pool, app.id)
            .await?
            .into_iter()
            .map(|lane| LaneRow {
                created: Moment::at(lane.created_at),
                deployed: Moment::at(lane.deployed_at),
                lane,
            })
            .collect();
        let stages = deployments::recent_stages(pool, app.id, SHOWN)
            .await?
            .into_iter()
            .map(|s| StageRow {
                label: s
                    .status
                    .parse::<StageStatus>()
                    .map(StageStatus::label)
                    .unwrap_or("Unknown"),
                at: Moment::at(s.at),
                s,
            })
            .collect();
        Ok::<_, Error>(AppPage {
            layout: ctx.layout(&app.name, "tree", None),
            may_deploy: ctx.may(Action::FastDeploy, &app.node_path),
            lane_ttl: duration_words(ctx.state.config.lane_ttl_seconds),
            app,
            live,
            deployments,
            lanes,
            stages,
        })
    }
    .await;
    match result {
        Ok(page) => ctx.render(StatusCode::OK, &page),
        Err(e) => ctx.error_page(&e),
    }
}

/// Asks for a lane to be removed (the engine deletes its objects).
async fn remove_lane(
    ctx: PageCtx,
    Path((id, lane)): Path<(i64, String)>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> Response {
    let to = format!("/apps/{id}");
    let done: Result<Lane> =
        flows::fast_path::remove_lane(&ctx.state, &ctx.actor.account, &ctx.who(), id, &lane).await;
    match done {
        Ok(lane) => redirect_with(
            &to,
            Notice::success(format!(
                "Removing lane {}: its Deployment {}{} are being deleted.",
                lane.lane,
                lane.deployment,
                lane.service
                    .as_deref()
                    .map(|s| format!(" and Service {s}"))
                    .unwrap_or_default()
            )),
        ),
        Err(e @ (Error::NotFound(_) | Error::Forbidden(_))) => ctx.error_page(&e),
        Err(e) => redirect_with(&to, Notice::from_error(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ttl_reads_in_its_largest_whole_unit() {
        assert_eq!(duration_words(259_200), "3 days");
        assert_eq!(duration_words(86_400), "1 day");
        assert_eq!(duration_words(7_200), "2 hours");
        assert_eq!(duration_words(120), "2 minutes");
        assert_eq!(duration_words(2), "2 seconds");
        assert_eq!(duration_words(61), "61 seconds");
    }
}
