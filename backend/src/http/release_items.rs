//! Release item pages: the item with its stages editor and recent orders,
//! creating, saving and deleting items.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::dashboard::Row;
use super::extract::CsrfForm;
use super::work_orders::WorkOrderRow;
use super::{Layout, Notice, PageCtx, PageRoutes, page_status, redirect_with};
use crate::auth::Action;
use crate::db::apps::{self, App, AppFilter};
use crate::db::release_items::{self, ItemFields, ReleaseItem};
use crate::db::tree as tree_db;
use crate::db::work_order_views::Filter;
use crate::domain::release_item::{
    Canary, HeaderMatch, MAX_STAGES, StageSpec, Strategy, format_steps, parse_steps,
};
use crate::domain::tree::path_covers;
use crate::domain::verify::{VerifyPlan, format_gates, format_smoke, parse_gates, parse_smoke};
use crate::error::{Error, Result};
use crate::flows::changes::project_url;
use crate::flows::clusters::check_stages;
use crate::flows::live::items_live;
use crate::gitlab::GitlabClient;

pub fn routes() -> PageRoutes {
    PageRoutes::new()
        .get("/release-items", list_release_items)
        .get("/release-items/new", new_release_item)
        .post("/release-items", create_release_item)
        .get("/release-items/{id}", show_release_item)
        .post("/release-items/{id}", save_release_item)
        .post("/release-items/{id}/delete", delete_release_item)
}

/// One row of the stages editor.
#[derive(Default, Clone)]
struct StageRow {
    name: String,
    app_id: String,
    strategy: String,
    steps: String,
    header_name: String,
    header_value: String,
    /// Minutes, or empty for the default.
    deadline: String,
    /// Verification: gates one per line, smoke checks one per line, soak
    /// seconds, sign-off.
    gates: String,
    smoke: String,
    soak: String,
    sign_off: bool,
}

impl StageRow {
    /// The row asks for some verification.
    fn verifies(&self) -> bool {
        !self.gates.trim().is_empty()
            || !self.smoke.trim().is_empty()
            || !self.soak.trim().is_empty()
            || self.sign_off
    }
}

/// The item form as typed.
#[derive(Default)]
struct ItemForm {
    name: String,
    gitlab_project: String,
    image_repository: String,
    required_approvals: String,
    auto_rollback: bool,
    refuse_zero_replicas: bool,
    stages: Vec<StageRow>,
}

impl ItemForm {
    fn from_item(item: &ReleaseItem) -> Self {
        Self {
            name: item.name.clone(),
            gitlab_project: item.gitlab_project.clone(),
            image_repository: item.image_repository.clone(),
            required_approvals: item.required_approvals.to_string(),
            auto_rollback: item.auto_rollback,
            refuse_zero_replicas: item.refuse_zero_replicas,
            stages: item
                .stages
                .iter()
                .map(|s| StageRow {
                    name: s.name.clone(),
                    app_id: s.app_id.to_string(),
                    strategy: s.strategy.as_str().into(),
                    steps: s
                        .canary
                        .as_ref()
                        .map(|c| format_steps(&c.steps))
                        .unwrap_or_default(),
                    header_name: s
                        .canary
                        .as_ref()
                        .and_then(|c| c.header_match.as_ref())
                        .map(|h| h.name.clone())
                        .unwrap_or_default(),
                    header_value: s
                        .canary
                        .as_ref()
                        .and_then(|c| c.header_match.as_ref())
                        .map(|h| h.value.clone())
                        .unwrap_or_default(),
                    deadline: s
                        .deadline_minutes
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                    gates: s
                        .verify
                        .as_ref()
                        .map(|v| format_gates(&v.gates))
                        .unwrap_or_default(),
                    smoke: s
                        .verify
                        .as_ref()
                        .map(|v| format_smoke(&v.smoke))
                        .unwrap_or_default(),
                    soak: s
                        .verify
                        .as_ref()
                        .and_then(|v| v.soak_seconds)
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                    sign_off: s.verify.as_ref().is_some_and(|v| v.sign_off),
                })
                .collect(),
        }
    }

    fn from_map(map: &HashMap<String, String>) -> Self {
        let get = |k: &str| map.get(k).cloned().unwrap_or_default();
        let stages = (1..=MAX_STAGES)
            .map(|i| StageRow {
                name: get(&format!("stage_{i}_name")),
                app_id: get(&format!("stage_{i}_app")),
                strategy: get(&format!("stage_{i}_strategy")),
                steps: get(&format!("stage_{i}_steps")),
                header_name: get(&format!("stage_{i}_header_name")),
                header_value: get(&format!("stage_{i}_header_value")),
                deadline: get(&format!("stage_{i}_deadline")),
                gates: get(&format!("stage_{i}_gates")),
                smoke: get(&format!("stage_{i}_smoke")),
                soak: get(&format!("stage_{i}_soak")),
                sign_off: map.contains_key(&format!("stage_{i}_sign_off")),
            })
            .filter(|row| !row.name.trim().is_empty())
            .collect();
        Self {
            name: get("name"),
            gitlab_project: get("gitlab_project"),
            image_repository: get("image_repository"),
            required_approvals: get("required_approvals"),
            auto_rollback: map.contains_key("auto_rollback"),
            refuse_zero_replicas: map.contains_key("refuse_zero_replicas"),
            stages,
        }
    }

    /// The fields for the database, or the first problem found.
    fn to_fields(&self, node_id: i64) -> Result<ItemFields> {
        let required_approvals = self.required_approvals.trim().parse::<i64>().map_err(|_| {
            Error::validation(
                "required_approvals",
                "required approvals must be a whole number",
            )
        })?;
        let mut stages = Vec::new();
        for (i, row) in self.stages.iter().enumerate() {
            let n = i + 1;
            let app_id = row
                .app_id
                .parse::<i64>()
                .map_err(|_| Error::validation("stages", format!("stage {n}: pick an app")))?;
            let strategy = match row.strategy.as_str() {
                "canary" => Strategy::Canary,
                _ => Strategy::Rolling,
            };
            let canary = match strategy {
                Strategy::Rolling => None,
                Strategy::Canary => Some(Canary {
                    steps: parse_steps(&row.steps)
                        .map_err(|m| Error::validation("stages", format!("stage {n}: {m}")))?,
                    header_match: (!row.header_name.trim().is_empty()).then(|| HeaderMatch {
                        name: row.header_name.trim().to_string(),
                        value: row.header_value.trim().to_string(),
                    }),
                }),
            };
            let deadline = row.deadline.trim();
            let deadline_minutes = if deadline.is_empty() {
                None
            } else {
                Some(deadline.parse::<i64>().map_err(|_| {
                    Error::validation(
                        format!("stages[{i}].deadline_minutes"),
                        format!(
                            "stage {n}: the deadline '{deadline}' is not a whole number of minutes"
                        ),
                    )
                })?)
            };
            let in_stage = |m: String| {
                Error::validation(format!("stages[{i}].verify"), format!("stage {n}: {m}"))
            };
            let verify =
                if row.verifies() {
                    let soak = row.soak.trim();
                    Some(VerifyPlan {
                        gates: parse_gates(&row.gates).map_err(in_stage)?,
                        smoke: parse_smoke(&row.smoke).map_err(in_stage)?,
                        soak_seconds: if soak.is_empty() {
                            None
                        } else {
                            Some(soak.trim_end_matches('s').trim().parse::<u32>().map_err(
                                |_| {
                                    in_stage(format!(
                                        "the soak time '{soak}' is not a whole number of seconds"
                                    ))
                                },
                            )?)
                        },
                        sign_off: row.sign_off,
                    })
                } else {
                    None
                };
            stages.push(StageSpec {
                name: row.name.trim().to_string(),
                app_id,
                strategy,
                canary,
                deadline_minutes,
                verify,
            });
        }
        Ok(ItemFields {
            node_id,
            name: self.name.trim().to_string(),
            gitlab_project: self.gitlab_project.trim().to_string(),
            image_repository: self.image_repository.trim().to_string(),
            required_approvals,
            auto_rollback: self.auto_rollback,
            refuse_zero_replicas: self.refuse_zero_replicas,
            stages,
        })
    }

    /// Rows for the editor: what there is plus blank ones to add stages.
    fn editor_rows(&self) -> Vec<(usize, StageRow)> {
        let mut rows = self.stages.clone();
        let blanks = if rows.is_empty() { 2 } else { 1 };
        for _ in 0..blanks {
            if rows.len() < MAX_STAGES {
                rows.push(StageRow::default());
            }
        }
        rows.into_iter()
            .enumerate()
            .map(|(i, r)| (i + 1, r))
            .collect()
    }
}

/// Apps a stage on `node_path` may target: those at or below it.
async fn apps_below(ctx: &PageCtx, node_path: &str) -> Result<Vec<App>> {
    Ok(
        apps::list(&ctx.state.db.pool, &AppFilter::default(), ctx.read_scope())
            .await?
            .into_iter()
            .filter(|a| path_covers(&a.node_path, node_path))
            .collect(),
    )
}

#[derive(Template)]
#[template(path = "release_item_form.html")]
struct ItemFormPage {
    layout: Layout,
    node_id: i64,
    node_path: String,
    /// `None` for a new item.
    item: Option<ReleaseItem>,
    form: ItemForm,
    rows: Vec<(usize, StageRow)>,
    apps: Vec<App>,
    can_edit: bool,
    can_file: bool,
    recent: Vec<WorkOrderRow>,
    /// What each stage runs now.
    live: Option<Row>,
    /// The item's GitLab project page, when GitLab is set up.
    gitlab_url: Option<String>,
}

#[derive(Deserialize)]
struct NodeQuery {
    node: i64,
}

async fn render_item_page(
    ctx: &PageCtx,
    status: StatusCode,
    notice: Option<Notice>,
    node_id: i64,
    item: Option<ReleaseItem>,
    form: ItemForm,
) -> Response {
    let result = async {
        let node = ctx.visible(tree_db::get(&ctx.state.db.pool, node_id).await)?;
        let apps = apps_below(ctx, &node.path).await?;
        let recent = match &item {
            Some(i) => ctx
                .state
                .orders
                .list(
                    &ctx.state.db,
                    ctx.actor.board_version,
                    &Filter {
                        items: vec![i.id],
                        ..Filter::default()
                    },
                    ctx.read_scope(),
                    10,
                )
                .await?
                .0
                .iter()
                .cloned()
                .map(WorkOrderRow::from)
                .collect(),
            None => Vec::new(),
        };
        let gitlab_base = GitlabClient::settings(&ctx.state.db).await?.url;
        let live = match &item {
            Some(i) => items_live(&ctx.state, vec![i.clone()])
                .await?
                .into_iter()
                .next()
                .map(|live| Row::of(live, gitlab_base.as_deref())),
            None => None,
        };
        let gitlab_url = match (&item, &gitlab_base) {
            (Some(i), Some(base)) => project_url(base, &i.gitlab_project),
            _ => None,
        };
        let title = match &item {
            Some(i) => format!("Release item {}", i.name),
            None => "New release item".to_string(),
        };
        Ok::<_, Error>(ItemFormPage {
            layout: ctx.layout(title, "tree", notice),
            can_edit: ctx.may(Action::ManageReleaseItems, &node.path),
            can_file: ctx.may(Action::FileWorkOrder, &node.path),
            node_id,
            node_path: node.path,
            rows: form.editor_rows(),
            item,
            form,
            apps,
            recent,
            live,
            gitlab_url,
        })
    }
    .await;
    match result {
        Ok(page) => ctx.render(status, &page),
        Err(e) => ctx.error_page(&e),
    }
}

#[derive(Template)]
#[template(path = "release_items.html")]
struct ItemsPage {
    layout: Layout,
    items: Vec<ReleaseItem>,
}

/// Every release item the reader can see.
async fn list_release_items(ctx: PageCtx) -> Response {
    match release_items::list(&ctx.state.db.pool, None, ctx.read_scope()).await {
        Ok(items) => ctx.render(
            StatusCode::OK,
            &ItemsPage {
                layout: ctx.layout("Release items", "release-items", None),
                items,
            },
        ),
        Err(e) => ctx.error_page(&e),
    }
}

/// The form for a new release item on a node.
async fn new_release_item(ctx: PageCtx, Query(q): Query<NodeQuery>) -> Response {
    let form = ItemForm {
        required_approvals: "1".into(),
        auto_rollback: true,
        ..ItemForm::default()
    };
    match ctx.visible(tree_db::get(&ctx.state.db.pool, q.node).await) {
        Ok(node) if !ctx.may(Action::ManageReleaseItems, &node.path) => {
            ctx.error_page(&Error::Forbidden(format!(
                "You need to be an owner of {} to manage release items.",
                node.path
            )))
        }
        Ok(_) => render_item_page(&ctx, StatusCode::OK, None, q.node, None, form).await,
        Err(e) => ctx.error_page(&e),
    }
}

/// Creates a release item from the form.
async fn create_release_item(
    ctx: PageCtx,
    CsrfForm(map): CsrfForm<HashMap<String, String>>,
) -> Response {
    let form = ItemForm::from_map(&map);
    let node_id = match map.get("node_id").and_then(|n| n.parse::<i64>().ok()) {
        Some(n) => n,
        None => return ctx.error_page(&Error::BadRequest("node_id is missing".into())),
    };
    let result = async {
        let node = ctx.visible(tree_db::get(&ctx.state.db.pool, node_id).await)?;
        ctx.state
            .policy
            .require(&ctx.actor.account, Action::ManageReleaseItems, &node.path)?;
        let fields = form.to_fields(node_id)?;
        check_stages(&ctx.state, &fields.stages, &[]).await?;
        Ok::<_, Error>(release_items::create(&ctx.state.db, &fields, &ctx.who()).await?)
    }
    .await;
    match result {
        Ok(item) => redirect_with(
            &format!("/release-items/{}", item.id),
            Notice::success(format!("Created release item {}.", item.name)),
        ),
        Err(e @ (Error::NotFound(_) | Error::Forbidden(_))) => ctx.error_page(&e),
        Err(e) => {
            render_item_page(
                &ctx,
                page_status(&e),
                Some(Notice::from_error(&e)),
                node_id,
                None,
                form,
            )
            .await
        }
    }
}

/// A release item: its stages (editable by owners) and recent orders.
async fn show_release_item(ctx: PageCtx, Path(id): Path<i64>) -> Response {
    match ctx.visible(release_items::get(&ctx.state.db.pool, id).await) {
        Ok(item) => {
            let form = ItemForm::from_item(&item);
            render_item_page(&ctx, StatusCode::OK, None, item.node_id, Some(item), form).await
        }
        Err(e) => ctx.error_page(&e),
    }
}

/// Saves the item's fields and stages.
async fn save_release_item(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(map): CsrfForm<HashMap<String, String>>,
) -> Response {
    let item = match ctx.visible(release_items::get(&ctx.state.db.pool, id).await) {
        Ok(i) => i,
        Err(e) => return ctx.error_page(&e),
    };
    let form = ItemForm::from_map(&map);
    let result = async {
        ctx.state.policy.require(
            &ctx.actor.account,
            Action::ManageReleaseItems,
            &item.node_path,
        )?;
        let fields = form.to_fields(item.node_id)?;
        check_stages(&ctx.state, &fields.stages, &item.stages).await?;
        Ok::<_, Error>(release_items::update(&ctx.state.db, id, &fields, &ctx.who()).await?)
    }
    .await;
    match result {
        Ok(saved) => redirect_with(
            &format!("/release-items/{id}"),
            Notice::success(format!("Saved {}.", saved.name)),
        ),
        Err(e @ Error::Forbidden(_)) => ctx.error_page(&e),
        Err(e) => {
            render_item_page(
                &ctx,
                page_status(&e),
                Some(Notice::from_error(&e)),
                item.node_id,
                Some(item),
                form,
            )
            .await
        }
    }
}

/// Deletes an item that never had a work order.
async fn delete_release_item(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(_f): CsrfForm<super::extract::NoFields>,
) -> Response {
    let result = async {
        let item = ctx.visible(release_items::get(&ctx.state.db.pool, id).await)?;
        ctx.state.policy.require(
            &ctx.actor.account,
            Action::ManageReleaseItems,
            &item.node_path,
        )?;
        Ok::<_, Error>(release_items::delete(&ctx.state.db, id, &ctx.who()).await?)
    }
    .await;
    match result {
        Ok(item) => redirect_with(
            &format!("/tree/nodes/{}", item.node_id),
            Notice::success(format!("Deleted release item {}.", item.name)),
        ),
        Err(e @ (Error::NotFound(_) | Error::Forbidden(_))) => ctx.error_page(&e),
        Err(e) => match release_items::get(&ctx.state.db.pool, id).await {
            Ok(item) => {
                let form = ItemForm::from_item(&item);
                render_item_page(
                    &ctx,
                    page_status(&e),
                    Some(Notice::from_error(&e)),
                    item.node_id,
                    Some(item),
                    form,
                )
                .await
            }
            _ => ctx.error_page(&e),
        },
    }
}
