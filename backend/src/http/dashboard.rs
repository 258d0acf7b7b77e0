//! The start page: what runs where. One row per release item the reader
//! can see, one cell per stage with the tag its cluster runs, its pods, the
//! last order that touched it and the order waiting for approval — read
//! from the held Deployment watches, never from the cluster on the way.

use std::sync::Arc;

use askama::Template;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{Layout, Moment, PageCtx, PageRoutes};
use crate::db::board::BoardPage;
use crate::db::release_items;
use crate::error::Error;
use crate::flows::changes::tag_url;
use crate::flows::live::{self, ItemLive, StageLive};
use crate::gitlab::GitlabClient;
use crate::kube::live::{LiveRead, LiveStatus};

pub fn routes() -> PageRoutes {
    PageRoutes::new().get("/", dashboard)
}

/// What a held watch says of one Deployment, ready to show.
pub(super) struct Reading {
    /// The tag (or image) running, or what stands in for it.
    pub running: String,
    /// `ready/desired`, and whether every replica is on the new template
    /// and ready.
    pub pods: Option<(String, bool)>,
    /// The Deployment is not there.
    pub missing: bool,
    /// Why nothing is known.
    pub unknown: Option<String>,
    /// When the watch last heard from the cluster.
    pub age: Option<Moment>,
    /// The cluster cannot be read now: the reading may be stale.
    pub stale: Option<String>,
    /// `namespace/deployment`.
    pub location: String,
    /// GitLab's page of the running tag.
    pub href: Option<String>,
}

impl Reading {
    /// `running`: the image as the row shows it (a tag of the item's
    /// repository, or the whole image).
    pub fn of(live: &LiveStatus, running: Option<String>, location: String) -> Self {
        let (running, pods, missing, unknown) = match &live.read {
            LiveRead::Found(d) => (
                running.unwrap_or_else(|| "no such container".into()),
                Some((
                    format!("{}/{}", d.ready, d.desired),
                    d.ready == d.desired && d.updated == d.desired,
                )),
                false,
                None,
            ),
            LiveRead::Missing => ("—".into(), None, true, None),
            LiveRead::Unknown(why) => ("—".into(), None, false, Some(why.clone())),
        };
        Reading {
            age: live.as_of.map(Moment::at),
            stale: live.stale_because.clone(),
            running,
            pods,
            missing,
            unknown,
            location,
            href: None,
        }
    }

    /// What the watch says of `app`'s Deployment: the whole image it runs.
    pub fn of_app(live: &LiveStatus, app: &crate::db::apps::App) -> Self {
        let running = match &live.read {
            LiveRead::Found(d) => d.image.clone(),
            _ => None,
        };
        Reading::of(
            live,
            running,
            format!("{}/{}", app.namespace, app.deployment),
        )
    }
}

/// One stage's cell, ready to show.
pub(super) struct Cell {
    pub stage: StageLive,
    pub live: Reading,
}

impl Cell {
    /// `gitlab`: GitLab's address and the item's project, for a link to
    /// the running tag.
    pub fn of(stage: StageLive, gitlab: Option<(&str, &str)>) -> Self {
        let mut live = Reading::of(
            &stage.live,
            stage.running.clone(),
            format!("{}/{}", stage.namespace, stage.deployment),
        );
        live.href = match (gitlab, &stage.tag) {
            (Some((base, project)), Some(tag)) => tag_url(base, project, tag),
            _ => None,
        };
        Cell { stage, live }
    }
}

/// One item's row.
pub(super) struct Row {
    pub live: ItemLive,
    pub cells: Vec<Cell>,
}

impl Row {
    /// `gitlab_url`: GitLab's address, when it is set up.
    pub fn of(mut live: ItemLive, gitlab_url: Option<&str>) -> Self {
        let project = live.item.gitlab_project.clone();
        let cells = std::mem::take(&mut live.stages)
            .into_iter()
            .map(|s| Cell::of(s, gitlab_url.map(|base| (base, project.as_str()))))
            .collect();
        Row { live, cells }
    }
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    layout: Layout,
    rows: Vec<Row>,
    /// The most stages any row has: the table's columns.
    columns: usize,
    /// This page (1-based), and whether there are pages before and after.
    page: usize,
    pages: usize,
    /// What the item filter holds.
    q: String,
}

/// Items per page.
const PER_PAGE: usize = 50;

#[derive(Deserialize, Default)]
struct DashboardQuery {
    #[serde(default)]
    page: Option<usize>,
    /// Items whose name or node path starts with this.
    #[serde(default)]
    q: String,
}

/// What the reader's dashboard page `wanted` (filtered by `q`) shows from
/// the database, from the board cache when the board has not changed.
async fn board_page(ctx: &PageCtx, q: &str, wanted: usize) -> Result<Arc<BoardPage>, Error> {
    let version = ctx.actor.board_version;
    let key = format!("{}\u{0}{q}\u{0}{wanted}", ctx.read_scope().cache_key());
    ctx.state
        .board
        .get_or_load(version, key.as_str(), || read_board_page(ctx, q, wanted))
        .await
}

/// [`board_page`] read from the database.
async fn read_board_page(ctx: &PageCtx, q: &str, wanted: usize) -> Result<Arc<BoardPage>, Error> {
    let search = Some(q).filter(|q| !q.is_empty());
    // Pages by id first; only the page's items are read in full.
    let pool = &ctx.state.db.pool;
    let (mut ids, total) = release_items::page_ids(
        pool,
        ctx.read_scope(),
        search,
        (wanted - 1) * PER_PAGE,
        PER_PAGE,
    )
    .await?;
    let pages = total.div_ceil(PER_PAGE).max(1);
    let page = wanted.min(pages);
    if page != wanted {
        (ids, _) = release_items::page_ids(
            pool,
            ctx.read_scope(),
            search,
            (page - 1) * PER_PAGE,
            PER_PAGE,
        )
        .await?;
    }
    let shown = release_items::list_ids(pool, &ids).await?;
    Ok(Arc::new(BoardPage {
        page,
        pages,
        record: live::items_record(&ctx.state, shown).await?,
        gitlab_url: GitlabClient::settings(&ctx.state.db).await?.url,
    }))
}

async fn dashboard(ctx: PageCtx, Query(query): Query<DashboardQuery>) -> Response {
    let result = async {
        let q = query.q.trim().to_lowercase();
        let board = board_page(&ctx, &q, query.page.unwrap_or(1).max(1)).await?;
        let rows: Vec<Row> = live::compose(&ctx.state, &board.record)
            .into_iter()
            .map(|live| Row::of(live, board.gitlab_url.as_deref()))
            .collect();
        Ok::<_, Error>(DashboardPage {
            layout: ctx.layout("What runs where", "dashboard", None),
            columns: rows.iter().map(|r| r.cells.len()).max().unwrap_or(0),
            rows,
            page: board.page,
            pages: board.pages,
            q: query.q.trim().to_string(),
        })
    }
    .await;
    match result {
        Ok(page) => ctx.render(StatusCode::OK, &page),
        Err(e) => ctx.error_page(&e),
    }
}
