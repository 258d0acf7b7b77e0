//! Work order pages: filing (tags loaded from GitLab, htmx-enhanced), the
//! work order page with its decisions and timeline, the filtered list and
//! the approvals inbox.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::canary::{CanarySteps, canary_steps};
use super::extract::CsrfForm;
use super::verification::{VerifyCard, verify_cards};
use super::{Layout, Moment, Notice, PageCtx, PageRoutes, duration, page_status, redirect_with};
use crate::auth::Action;
use crate::db::accounts;
use crate::db::now_ms;
use crate::db::release_items::{self, ReleaseItem};
use crate::db::work_order_views::{Filter, MAX_SEARCH_LEN, StageRun, WorkOrder, WorkOrderDetail};
use crate::db::work_orders;
use crate::domain::tree::{ancestor_chain, normalize_path};
use crate::domain::work_order::{Command, StageStatus, State, decide};
use crate::error::{Error, Result};
use crate::flows;
use crate::flows::changes::StageFrom;
use crate::gitlab::Tag;
use crate::kube::live::{LiveRead, LiveStatus};

pub fn routes() -> PageRoutes {
    PageRoutes::new()
        .get("/work-orders", list_work_orders)
        .get("/work-orders/filter-options", filter_options)
        .post("/work-orders", file_work_order)
        .get("/work-orders/new", new_work_order)
        .get("/work-orders/new/versions", version_options)
        .get("/work-orders/{id}", show_work_order)
        .post("/work-orders/{id}/approve", approve_work_order)
        .post("/work-orders/{id}/reject", reject_work_order)
        .post("/work-orders/{id}/close", close_work_order)
        .get("/approvals", my_approvals)
}

/// A row of a work order list.
pub(super) struct WorkOrderRow {
    pub(super) order: WorkOrder,
    pub(super) created: Moment,
}

impl From<WorkOrder> for WorkOrderRow {
    fn from(order: WorkOrder) -> Self {
        Self {
            created: Moment::at(order.created_at),
            order,
        }
    }
}

#[derive(Template)]
#[template(path = "work_order_new.html")]
struct NewOrderPage {
    layout: Layout,
    items: Vec<ReleaseItem>,
    item: Option<ReleaseItem>,
    versions: std::result::Result<Vec<VersionChoice>, String>,
    /// The version picked so far (the version picker reads it).
    selected: String,
    form: OrderForm,
}

impl NewOrderPage {
    fn is_picked(&self, id: &i64) -> bool {
        self.form.item == Some(*id)
    }
}

#[derive(Deserialize, Default)]
struct OrderForm {
    #[serde(default)]
    item: Option<i64>,
    #[serde(default)]
    version: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    /// Filled in: file it as a hotfix, for this reason.
    #[serde(default)]
    hotfix_reason: String,
}

/// The items this person may file orders for.
async fn fileable_items(ctx: &PageCtx) -> Result<Vec<ReleaseItem>> {
    Ok(
        release_items::list(&ctx.state.db.pool, None, ctx.read_scope())
            .await?
            .into_iter()
            .filter(|i| ctx.may(Action::FileWorkOrder, &i.node_path))
            .collect(),
    )
}

/// A tag as the version picker offers it.
struct VersionChoice {
    name: String,
    /// The name, when it was tagged, its message's first line and the
    /// stages that run it now.
    label: String,
    /// Stages running it now.
    running: Vec<String>,
}

impl VersionChoice {
    fn of(tag: Tag, running: Vec<String>) -> Self {
        let mut label = tag.name.clone();
        let made = tag
            .created_at
            .as_deref()
            .or(tag.commit.as_ref().and_then(|c| c.created_at.as_deref()))
            .and_then(super::parse_rfc3339);
        if let Some(ms) = made {
            label.push_str(&format!(
                " · {} ({})",
                super::format_date(ms),
                super::ago(ms)
            ));
        }
        if let Some(first) = tag.message.as_deref().and_then(|m| m.lines().next()) {
            let first = first.trim();
            if !first.is_empty() {
                let short: String = first.chars().take(80).collect();
                label.push_str(" · ");
                label.push_str(&short);
                if short.len() < first.len() {
                    label.push('…');
                }
            }
        }
        if !running.is_empty() {
            label.push_str(&format!(" · running on {}", running.join(", ")));
        }
        VersionChoice {
            name: tag.name,
            label,
            running,
        }
    }
}

/// The item's tags, newest first, each marked with the stages that run it
/// now (read from the held watches).
async fn load_versions(
    ctx: &PageCtx,
    item: &ReleaseItem,
) -> std::result::Result<Vec<VersionChoice>, String> {
    let tags = ctx
        .state
        .gitlab
        .tags(&ctx.state.db, &ctx.state.sealer, &item.gitlab_project)
        .await
        .map_err(|e| e.public_message())?;
    let mut running: HashMap<String, Vec<String>> = HashMap::new();
    let live = flows::live::items_live(&ctx.state, vec![item.clone()])
        .await
        .map_err(|e| e.public_message())?;
    for stage in live.into_iter().flat_map(|i| i.stages) {
        if let Some(tag) = stage.running {
            running.entry(tag).or_default().push(stage.name);
        }
    }
    Ok(tags
        .into_iter()
        .map(|t| {
            let on = running.remove(&t.name).unwrap_or_default();
            VersionChoice::of(t, on)
        })
        .collect())
}

async fn render_new_order(
    ctx: &PageCtx,
    status: StatusCode,
    notice: Option<Notice>,
    form: OrderForm,
) -> Response {
    let result = async {
        let items = fileable_items(ctx).await?;
        let item = form
            .item
            .and_then(|id| items.iter().find(|i| i.id == id).cloned());
        let versions = match &item {
            Some(i) => load_versions(ctx, i).await,
            None => Ok(Vec::new()),
        };
        Ok::<_, Error>(NewOrderPage {
            layout: ctx.layout("New work order", "work-orders", notice),
            items,
            item,
            versions,
            selected: form.version.clone(),
            form,
        })
    }
    .await;
    match result {
        Ok(page) => ctx.render(status, &page),
        Err(e) => ctx.error_page(&e),
    }
}

/// Pick an item, see its stages, pick a version from GitLab.
async fn new_work_order(ctx: PageCtx, Query(form): Query<OrderForm>) -> Response {
    render_new_order(&ctx, StatusCode::OK, None, form).await
}

#[derive(Template)]
#[template(path = "version_options.html")]
struct VersionOptions {
    versions: std::result::Result<Vec<VersionChoice>, String>,
    selected: String,
}

/// The version picker alone (htmx swaps it in when the item changes).
async fn version_options(ctx: PageCtx, Query(form): Query<OrderForm>) -> Response {
    let items = match fileable_items(&ctx).await {
        Ok(i) => i,
        Err(e) => return ctx.error_page(&e),
    };
    let versions = match form
        .item
        .and_then(|id| items.into_iter().find(|i| i.id == id))
    {
        Some(item) => load_versions(&ctx, &item).await,
        None => Err("pick a release item first".into()),
    };
    match (VersionOptions {
        versions,
        selected: form.version,
    })
    .render()
    {
        Ok(html) => Html(html).into_response(),
        Err(e) => ctx.error_page(&Error::Internal(e.into())),
    }
}

/// Files the order; a second open order is refused with a link to it.
async fn file_work_order(ctx: PageCtx, CsrfForm(form): CsrfForm<OrderForm>) -> Response {
    let Some(item_id) = form.item else {
        let e = Error::validation("release_item_id", "pick a release item");
        return render_new_order(&ctx, page_status(&e), Some(Notice::from_error(&e)), form).await;
    };
    // A blank title becomes the item and version (the form says so).
    let title = match form.title.trim() {
        "" => match release_items::get(&ctx.state.db.pool, item_id).await {
            Ok(item) => format!("{} {}", item.name, form.version.trim()),
            Err(_) => String::new(),
        },
        given => given.to_string(),
    };
    let hotfix = form.hotfix_reason.trim();
    let asked = flows::OrderRequest {
        release_item_id: item_id,
        version: &form.version,
        title: &title,
        description: &form.description,
        hotfix_reason: (!hotfix.is_empty()).then_some(hotfix),
    };
    let result = flows::file_work_order(&ctx.state, &ctx.actor.account, &ctx.who(), &asked).await;
    match result {
        Ok(order) => redirect_with(
            &format!("/work-orders/{}", order.id),
            Notice::success(format!("Filed work order #{}.", order.id)),
        ),
        Err(e) => {
            let mut notice = Notice::from_error(&e);
            // The item was visible (the flow checked), and so is its order.
            if matches!(e, Error::Conflict(_))
                && let Ok(Some(o)) = work_orders::open_order_of(&ctx.state.db.pool, item_id).await
            {
                notice =
                    notice.with_link(format!("/work-orders/{}", o.id), format!("Open #{}", o.id));
            }
            render_new_order(&ctx, page_status(&e), Some(notice), form).await
        }
    }
}

/// What the viewer may do with an order, from the same state machine the
/// POST handlers go through.
struct OrderActions {
    approve: bool,
    reject: bool,
    close: bool,
    /// Stages the viewer may start now.
    deploy: Vec<i64>,
    /// Stages the viewer may roll back now.
    rollback: Vec<i64>,
    /// Stages whose whole replaced template the viewer (an owner) may
    /// restore now.
    restore_whole: Vec<i64>,
    /// Stages the viewer (an owner) may cancel now.
    cancel: Vec<i64>,
    /// A stage is rolling out: the page refreshes its live parts.
    live: bool,
    /// Some stage has touched its Deployment: there are pods to show.
    has_pods: bool,
    /// What comes after this order, for people who may file orders.
    next: Option<Next>,
}

/// The next step once an order failed or is over.
enum Next {
    /// A failed order still needs a decision: roll back or close. The item
    /// takes no new order until then.
    Decide,
    /// The order is over: file the item again, with this version (unless it
    /// shipped) or a newer one. (The page reads nothing more for it: should
    /// another order be open for the item, the form says so and links it.)
    FileAgain { same_version: bool },
}

impl OrderActions {
    fn may_deploy(&self, position: &i64) -> bool {
        self.deploy.contains(position)
    }
    fn may_rollback(&self, position: &i64) -> bool {
        self.rollback.contains(position)
    }
    fn may_restore_whole(&self, position: &i64) -> bool {
        self.restore_whole.contains(position)
    }
    fn may_cancel(&self, position: &i64) -> bool {
        self.cancel.contains(position)
    }
}

#[derive(Template)]
#[template(path = "work_order.html")]
struct OrderPage {
    layout: Layout,
    d: WorkOrderDetail,
    created: Moment,
    actions: OrderActions,
    times: HashMap<i64, Moment>,
    /// Stages rolling out now, by position: how far their Deployment is,
    /// from the held watch.
    progress: HashMap<i64, Progress>,
    /// What each stage runs now, or ran before this order deployed it.
    froms: Vec<StageFrom>,
    /// The steps of the canary stages.
    canaries: Vec<CanarySteps>,
    /// The verification of the stages that have a plan.
    verifications: Vec<VerifyCard>,
    /// Freeze windows holding the order's stages now or starting soon.
    freeze: Option<FreezeBanner>,
    /// Stops of the line holding the order's stages.
    stop: Option<StopBanner>,
}

/// What the order page says about stops of the line over the order.
struct StopBanner {
    stops: Vec<StopRow>,
    /// The stages held, by position.
    held: Vec<u32>,
}

use super::line_stops::StopRow;

impl StopBanner {
    /// The positions held, as a sentence says them: "2", "1 and 2",
    /// "1, 2 and 3".
    fn held_words(&self) -> String {
        let all: Vec<String> = self.held.iter().map(u32::to_string).collect();
        match all.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            _ => all.join(""),
        }
    }
}

/// The stop banner of open order `d`, for `ctx`'s reader: one query when
/// no stop is in force.
async fn stop_banner(ctx: &PageCtx, d: &WorkOrderDetail) -> Result<Option<StopBanner>> {
    if !d.order.state.is_open() {
        return Ok(None);
    }
    let mut conn = ctx
        .state
        .db
        .pool
        .acquire()
        .await
        .map_err(crate::db::error::Error::from)?;
    let over = work_orders::stops_over(&mut conn, &d.order).await?;
    if over.is_empty() {
        return Ok(None);
    }
    // The stages it keeps from starting or going on.
    let held = over
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| {
            d.stage_runs.iter().any(|s| {
                s.position == i64::from(*p)
                    && matches!(
                        s.status,
                        StageStatus::Pending | StageStatus::Deploying | StageStatus::Paused
                    )
            })
        })
        .collect();
    let mut stops: Vec<StopRow> = Vec::new();
    for (_, s) in over {
        if !stops.iter().any(|r| r.s.id == s.id) {
            stops.push(StopRow::of(ctx, s));
        }
    }
    Ok(Some(StopBanner { stops, held }))
}

/// What the order page says about freezes.
struct FreezeBanner {
    held: Vec<HeldRow>,
    /// The soonest freeze to start within a week: reason, node, from.
    coming: Option<ComingRow>,
    hotfix: bool,
    /// The reader may let this hotfix through (owns a frozen node, did
    /// not file it).
    can_override: bool,
    /// The nodes whose owners may let it through.
    owners_of: Vec<String>,
}

struct HeldRow {
    position: u32,
    stage: String,
    reason: String,
    node_path: String,
    until: String,
    ends: Moment,
}

struct ComingRow {
    reason: String,
    node_path: String,
    from: String,
    starts: Moment,
}

/// How far ahead the order page warns of a freeze.
const FREEZE_WARNING_MS: i64 = 7 * 86_400_000;

/// The freeze banner of open order `d`, for `ctx`'s reader.
async fn freeze_banner(ctx: &PageCtx, d: &WorkOrderDetail) -> Result<Option<FreezeBanner>> {
    if !d.order.state.is_open() {
        return Ok(None);
    }
    let now = crate::db::now_ms();
    let mut conn = ctx
        .state
        .db
        .pool
        .acquire()
        .await
        .map_err(crate::db::error::Error::from)?;
    let covered = work_orders::coverage(&mut conn, &d.order, now).await?;
    if covered.iter().all(|c| c.windows.is_empty()) {
        return Ok(None);
    }
    let held = work_orders::held_of(&mut conn, &d.order, covered.clone()).await?;
    let local = |w: &crate::db::freezes::FreezeWindow, at: i64| {
        super::freezes::local_time(w.schedule().as_ref(), at)
    };
    let coming = covered
        .iter()
        .flat_map(|c| c.windows.iter())
        .filter(|w| w.active.is_none())
        .filter_map(|w| Some((w, w.next?)))
        .filter(|(_, next)| next.start - now <= FREEZE_WARNING_MS)
        .min_by_key(|(_, next)| next.start)
        .map(|(w, next)| ComingRow {
            reason: w.reason.clone(),
            node_path: w.node_path.clone(),
            from: local(w, next.start),
            starts: Moment::at(next.start),
        });
    let hotfix = d.order.hotfix_reason.is_some();
    let mut owners_of: Vec<String> = held.iter().map(|h| h.window.node_path.clone()).collect();
    owners_of.dedup();
    let can_override = hotfix
        && d.order.creator_id != ctx.actor.account.id
        && owners_of.iter().any(|p| ctx.may(Action::ManageFreezes, p));
    let held = held
        .into_iter()
        .map(|h| HeldRow {
            until: local(&h.window, h.until),
            ends: Moment::at(h.until),
            position: h.position,
            stage: h.stage,
            reason: h.window.reason,
            node_path: h.window.node_path,
        })
        .collect::<Vec<_>>();
    if held.is_empty() && coming.is_none() {
        return Ok(None);
    }
    Ok(Some(FreezeBanner {
        held,
        coming,
        hotfix,
        can_override,
        owners_of,
    }))
}

/// How far a stage's rollout is, as its Deployment reports it.
struct Progress {
    updated: i32,
    ready: i32,
    desired: i32,
    /// The revision the stage replaced and the Deployment's revision now
    /// (the new one, once the controller made it).
    revision: Option<String>,
    /// Why the numbers may be stale (empty while the watch is connected).
    note: String,
}

impl Progress {
    fn of(live: &LiveStatus, stage: &StageRun) -> Option<Progress> {
        let note = match (&live.stale_because, live.as_of) {
            (Some(why), Some(at)) => format!(
                "as of {}; the cluster is unreachable: {why}",
                super::ago(at)
            ),
            (Some(why), None) => format!("the cluster is unreachable: {why}"),
            (None, _) => String::new(),
        };
        match &live.read {
            LiveRead::Found(d) => Some(Progress {
                updated: d.updated,
                ready: d.ready,
                desired: d.desired,
                revision: match (&stage.replaced_revision, &d.revision) {
                    (Some(old), Some(now)) if old != now => Some(format!("{old} → {now}")),
                    (Some(old), _) => Some(format!("{old} (the new one is not created yet)")),
                    (None, now) => now.clone(),
                },
                note,
            }),
            _ => None,
        }
    }
}

impl OrderPage {
    /// Whether a stop of the line holds stage `position` now.
    fn stopped(&self, position: &i64) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|b| b.held.iter().any(|p| i64::from(*p) == *position))
    }

    /// Whether a freeze window holds stage `position` now.
    fn held(&self, position: &i64) -> bool {
        self.freeze
            .as_ref()
            .is_some_and(|f| f.held.iter().any(|h| i64::from(h.position) == *position))
    }

    /// How long a stage took, or has been going.
    fn stage_time(&self, s: &StageRun) -> String {
        match (s.started_at, s.finished_at) {
            (Some(start), Some(end)) => format!("took {}", duration(end - start)),
            (Some(start), None) if s.status.is_mid_rollout() => {
                format!("for {}", duration(now_ms() - start))
            }
            _ => String::new(),
        }
    }

    /// How long the order has been open, or was.
    fn order_time(&self) -> String {
        let o = &self.d.order;
        if o.state.is_open() {
            format!("open for {}", duration(now_ms() - o.created_at))
        } else {
            format!("finished after {}", duration(o.updated_at - o.created_at))
        }
    }
}

async fn render_order(
    ctx: &PageCtx,
    id: i64,
    status: StatusCode,
    notice: Option<Notice>,
) -> Response {
    let result = async {
        // After a refused POST, the order as it is now (it may have been
        // changed since this request read its version: a conflict).
        let version = notice.is_none().then_some(ctx.actor.board_version);
        let d = flows::work_orders::detail(&ctx.state, &ctx.actor.account, version, id).await?;
        let may_close = ctx.may(Action::FileWorkOrder, &d.order.node_path);
        let facts = work_orders::facts_for(&d, &ctx.actor.account, may_close);
        let allowed = |c: Command| decide(d.order.state, &c, &facts).is_ok();
        // The stages on which `command` would be taken now.
        let stages_where = |command: fn(u32) -> Command| -> Vec<i64> {
            d.stage_runs
                .iter()
                .filter(|s| allowed(command(s.position as u32)))
                .map(|s| s.position)
                .collect()
        };
        let stop = stop_banner(ctx, &d).await?;
        let held = |stage: u32| stop.as_ref().is_some_and(|b| b.held.contains(&stage));
        let canaries = canary_steps(&d.stage_runs, &d.timeline, |stage, step| {
            !held(stage) && allowed(Command::ApproveStep { stage, step })
        });
        // The Prometheus of each cluster whose stage has a gate measured
        // (the query links): no lookup before a measurement.
        let mut prometheus: HashMap<i64, String> = HashMap::new();
        for run in &d.stage_runs {
            let measured = d.verify_results.iter().any(|r| {
                r.position == run.position && r.check_kind == "gate" && !r.asked.is_empty()
            });
            let cluster = run.location.cluster_id;
            if measured && !prometheus.contains_key(&cluster) {
                let found = crate::db::clusters::get(&ctx.state.db.pool, cluster).await;
                if let Some(url) = found.ok().and_then(|c| c.prometheus_url) {
                    prometheus.insert(cluster, url);
                }
            }
        }
        let verifications = verify_cards(
            &d.stage_runs,
            &d.verify_results,
            |cluster| prometheus.get(&cluster).cloned(),
            d.order.state.is_open(),
            |stage| allowed(Command::SignOff { stage }),
            |stage| allowed(Command::GoOn { stage }),
        );
        let actions = OrderActions {
            approve: allowed(Command::Approve {
                comment: String::new(),
            }),
            reject: allowed(Command::Reject {
                comment: "-".into(),
            }),
            close: allowed(Command::Close { reason: "-".into() }),
            deploy: stages_where(|stage| Command::Deploy { stage }),
            rollback: stages_where(|stage| Command::Rollback {
                stage,
                whole_template: false,
            }),
            restore_whole: stages_where(|stage| Command::Rollback {
                stage,
                whole_template: true,
            }),
            cancel: stages_where(|stage| Command::Cancel {
                stage,
                reason: "-".into(),
            }),
            live: facts.stage_mid_rollout(),
            has_pods: d
                .stage_runs
                .iter()
                .any(|s| s.status != StageStatus::Pending),
            next: match d.order.state {
                _ if !may_close => None,
                State::Failed => Some(Next::Decide),
                state if !state.is_open() => Some(Next::FileAgain {
                    same_version: state != State::Succeeded,
                }),
                _ => None,
            },
        };
        // Every stage's Deployment as the held watches see it: what each
        // runs now, and how far a rollout is.
        let live = flows::live::stages_live(&ctx.state, &d.stage_runs);
        let progress = d
            .stage_runs
            .iter()
            .filter(|s| s.status.is_mid_rollout())
            .filter_map(|s| Some((s.position, Progress::of(live.get(&s.app_id)?, s)?)))
            .collect();
        let froms = flows::changes::froms(&d, &live);
        let mut times = HashMap::new();
        for e in &d.timeline {
            times.insert(e.at, Moment::at(e.at));
        }
        for dec in &d.decisions {
            times.insert(dec.at, Moment::at(dec.at));
        }
        let freeze = freeze_banner(ctx, &d).await?;
        Ok::<_, Error>(OrderPage {
            freeze,
            stop,
            layout: ctx.layout(
                format!("#{} {}", d.order.id, d.order.title),
                "work-orders",
                notice,
            ),
            created: Moment::at(d.order.created_at),
            d,
            actions,
            times,
            progress,
            froms,
            canaries,
            verifications,
        })
    }
    .await;
    match result {
        Ok(page) => ctx.render(status, &page),
        Err(e) => ctx.error_page(&e),
    }
}

/// A work order: approvers and decisions, stages, timeline.
async fn show_work_order(ctx: PageCtx, Path(id): Path<i64>) -> Response {
    render_order(&ctx, id, StatusCode::OK, None).await
}

#[derive(Deserialize)]
struct DecisionForm {
    #[serde(default)]
    comment: String,
    #[serde(default)]
    reason: String,
}

pub(super) async fn decide_from_page(ctx: PageCtx, id: i64, command: Command) -> Response {
    match flows::drive_stage(
        &ctx.state,
        &ctx.actor.account,
        &ctx.who(),
        id,
        command.clone(),
    )
    .await
    {
        Ok(order) => redirect_with(
            &format!("/work-orders/{id}"),
            Notice::success(done_notice(&command, &order)),
        ),
        Err(e @ Error::NotFound(_)) => ctx.error_page(&e),
        Err(e) => render_order(&ctx, id, page_status(&e), Some(Notice::from_error(&e))).await,
    }
}

/// What a command from the page did, in one sentence that does not repeat
/// the order's state badge.
fn done_notice(command: &Command, order: &WorkOrder) -> String {
    match command {
        Command::Approve { .. } if order.state == State::Approved => {
            "Approved: the order may deploy now.".to_string()
        }
        Command::Approve { .. } => format!(
            "Your approval is recorded: {} of {} so far.",
            order.approvals, order.required_approvals
        ),
        Command::Reject { .. } => "Rejected.".to_string(),
        Command::Close { .. } => "Closed.".to_string(),
        Command::Deploy { stage } => format!("Deploy of stage {stage} started."),
        Command::Rollback {
            stage,
            whole_template: false,
        } => format!("Rollback of stage {stage} started."),
        Command::Rollback {
            stage,
            whole_template: true,
        } => format!("Rollback of stage {stage} to its whole replaced template started."),
        Command::Cancel { stage, .. } => {
            format!("Stage {stage} cancelled: roll it back or close the order.")
        }
        Command::Report { .. } => "Recorded.".to_string(),
        Command::ApproveStep { stage, step } => {
            format!("Step {step} of stage {stage} approved: the canary moves on.")
        }
        Command::SignOff { stage } => format!("Stage {stage} signed off."),
        Command::GoOn { stage } => format!("The verification of stage {stage} goes on."),
    }
}

/// Approves as the signed-in person.
async fn approve_work_order(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(f): CsrfForm<DecisionForm>,
) -> Response {
    decide_from_page(ctx, id, Command::Approve { comment: f.comment }).await
}

/// Rejects as the signed-in person.
async fn reject_work_order(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(f): CsrfForm<DecisionForm>,
) -> Response {
    // The page's reject form asks for a reason; a comment is one too.
    let comment = if f.reason.trim().is_empty() {
        f.comment
    } else {
        f.reason
    };
    decide_from_page(ctx, id, Command::Reject { comment }).await
}

/// Closes with a reason.
async fn close_work_order(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(f): CsrfForm<DecisionForm>,
) -> Response {
    decide_from_page(ctx, id, Command::Close { reason: f.reason }).await
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    item: String,
    #[serde(default)]
    node: String,
    #[serde(default)]
    creator: String,
    #[serde(default)]
    awaiting_me: Option<String>,
    #[serde(default)]
    before: Option<i64>,
    /// Search: version, item name or a word of the title starts with it.
    #[serde(default)]
    q: String,
}

#[derive(Template)]
#[template(path = "work_orders.html")]
struct ListPage {
    layout: Layout,
    heading: &'static str,
    action: &'static str,
    rows: Vec<WorkOrderRow>,
    query: ListQuery,
    states: [State; 9],
    older: Option<String>,
    inbox: bool,
    /// Why the filters cannot match anything, in the user's words.
    problem: Option<String>,
}

/// The type-ahead options of the list's item and node filters, fetched
/// when the person first focuses one (not with every list page: a reader
/// of a thousand items would carry them all on each page).
#[derive(Template)]
#[template(path = "filter_options.html")]
struct FilterOptions {
    options: Vec<String>,
}

#[derive(Deserialize)]
struct OptionsQuery {
    /// `items` or `nodes`.
    list: String,
}

/// Each visible item name once, or the nodes holding visible items and
/// the nodes above them.
async fn filter_options(ctx: PageCtx, Query(q): Query<OptionsQuery>) -> Response {
    let items = match release_items::refs(&ctx.state.db.pool, ctx.read_scope()).await {
        Ok(items) => items,
        Err(e) => return ctx.error_page(&e),
    };
    let mut options: Vec<String> = match q.list.as_str() {
        "items" => items.into_iter().map(|i| i.name).collect(),
        "nodes" => items
            .iter()
            .flat_map(|i| ancestor_chain(&i.node_path))
            .collect(),
        other => {
            return ctx.error_page(&Error::validation(
                "list",
                format!("'{other}' is neither items nor nodes"),
            ));
        }
    };
    options.sort();
    options.dedup();
    ctx.render(StatusCode::OK, &FilterOptions { options })
}

const PAGE_SIZE: i64 = 50;

async fn render_list(ctx: &PageCtx, mut query: ListQuery, inbox: bool) -> Response {
    if inbox {
        query.awaiting_me = Some("1".into());
    }
    let result = async {
        // The filters as typed, read leniently; what cannot match anything
        // says why instead of failing the page.
        let mut problem = None;
        let state = match query.state.as_str() {
            "" => None,
            s => match s.parse::<State>() {
                Ok(state) => Some(state),
                Err(_) => {
                    problem = Some(format!("there is no state “{s}”"));
                    None
                }
            },
        };
        let creator = match query.creator.trim() {
            "" => None,
            name => match accounts::find_by_name(&ctx.state.db.pool, name).await? {
                Some(account) => Some(account.id),
                None => {
                    problem = Some(format!("nobody is called “{name}”"));
                    None
                }
            },
        };
        // The item filter takes items whose name starts with what was typed.
        let typed_item = query.item.trim().to_lowercase();
        let item_ids: Vec<i64> = if typed_item.is_empty() {
            Vec::new()
        } else {
            release_items::refs(&ctx.state.db.pool, ctx.read_scope())
                .await?
                .into_iter()
                .filter(|i| i.name.to_lowercase().starts_with(&typed_item))
                .map(|i| i.id)
                .collect()
        };
        if !typed_item.is_empty() && item_ids.is_empty() {
            problem = Some(format!(
                "no release item you can see is called “{}…”",
                query.item.trim()
            ));
        }
        let node = match normalize_path(&query.node) {
            Ok(path) => path,
            Err(message) => {
                problem = Some(message);
                None
            }
        };
        if let Some(path) = &node {
            query.node = path.clone();
        }
        let search = query.q.trim().to_string();
        if search.chars().count() > MAX_SEARCH_LEN {
            problem = Some(format!("search for at most {MAX_SEARCH_LEN} characters"));
        }
        let filter = Filter {
            state,
            items: item_ids,
            node,
            creator,
            awaiting: match query.awaiting_me {
                Some(_) => Some((
                    ctx.actor.account.id,
                    ctx.state
                        .policy
                        .approver_nodes(&ctx.state.db, ctx.actor.account.id)
                        .await?,
                )),
                None => None,
            },
            before_id: query.before,
            search: Some(search).filter(|s| !s.is_empty()),
        };
        let page = match problem {
            Some(_) => Default::default(),
            None => {
                ctx.state
                    .orders
                    .list(
                        &ctx.state.db,
                        ctx.actor.board_version,
                        &filter,
                        ctx.read_scope(),
                        PAGE_SIZE,
                    )
                    .await?
            }
        };
        let (orders, more) = (&page.0, page.1);
        let older = match (more, orders.last()) {
            (true, Some(last)) => {
                let mut q = url::form_urlencoded::Serializer::new(String::new());
                for (name, value) in [
                    ("q", &query.q),
                    ("state", &query.state),
                    ("item", &query.item),
                    ("node", &query.node),
                    ("creator", &query.creator),
                ] {
                    if !value.trim().is_empty() {
                        q.append_pair(name, value);
                    }
                }
                if query.awaiting_me.is_some() {
                    q.append_pair("awaiting_me", "1");
                }
                q.append_pair("before", &last.id.to_string());
                Some(q.finish())
            }
            _ => None,
        };
        Ok::<_, Error>(ListPage {
            layout: ctx.layout(
                if inbox { "My approvals" } else { "Work orders" },
                if inbox { "approvals" } else { "work-orders" },
                None,
            ),
            heading: if inbox {
                "Waiting for my approval"
            } else {
                "Work orders"
            },
            action: if inbox { "/approvals" } else { "/work-orders" },
            rows: orders.iter().cloned().map(WorkOrderRow::from).collect(),
            states: State::ALL,
            query,
            older,
            inbox,
            problem,
        })
    }
    .await;
    match result {
        Ok(page) => ctx.render(StatusCode::OK, &page),
        Err(e) => ctx.error_page(&e),
    }
}

/// The work orders this person may view, filtered, newest first.
async fn list_work_orders(ctx: PageCtx, Query(query): Query<ListQuery>) -> Response {
    render_list(&ctx, query, false).await
}

/// The orders waiting for the signed-in person's approval.
async fn my_approvals(ctx: PageCtx, Query(query): Query<ListQuery>) -> Response {
    render_list(&ctx, query, true).await
}
