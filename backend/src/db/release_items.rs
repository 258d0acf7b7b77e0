//! Release items and their stages, written together in one transaction.
//! The rows serialise as the audit log's before/after snapshots; the API
//! shapes its own JSON (`api::release_items`).

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::approvers::approvers_of;
use super::audit::{self, AuditActor, Change, snapshot};
use super::constraint::{Constraint, violated};
use super::error::{Error, Result};
use super::tree::Scope;
use super::{Db, Tx, now_ms};
use crate::domain::release_item::{Canary, PlanFacts, StageSpec, Strategy, validate_plan};
use crate::domain::tree::validate_name;
use crate::domain::verify::VerifyPlan;

/// A stage as stored, with what it targets.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub position: i64,
    pub name: String,
    pub app_id: i64,
    pub app: String,
    pub cluster: String,
    /// The cluster's id (pages link it; not in the audit snapshots).
    #[serde(skip)]
    pub cluster_id: i64,
    pub environment: String,
    pub strategy: Strategy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// Minutes the stage may run in all; `None`: twice the Deployment's
    /// progress deadline.
    pub deadline_minutes: Option<i64>,
    /// What verifies the stage once its new version runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyPlan>,
}

/// A release item with its stages (in the audit log's snapshots as
/// serialised here).
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseItem {
    pub id: i64,
    pub node_id: i64,
    pub node_path: String,
    pub name: String,
    /// GitLab project id or `group/path`.
    pub gitlab_project: String,
    /// `registry/group/app`; a version `v1.2.3` deploys `registry/group/app:v1.2.3`.
    pub image_repository: String,
    pub required_approvals: i64,
    /// Roll a stage back by itself when its rollout fails.
    pub auto_rollback: bool,
    /// Refuse to deploy a Deployment scaled to zero replicas; when false
    /// such a deploy succeeds with nothing to verify.
    pub refuse_zero_replicas: bool,
    pub stages: Vec<Stage>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The fields of an item, for create and replace.
#[derive(Debug, Clone)]
pub struct ItemFields {
    pub node_id: i64,
    pub name: String,
    pub gitlab_project: String,
    pub image_repository: String,
    pub required_approvals: i64,
    pub auto_rollback: bool,
    pub refuse_zero_replicas: bool,
    pub stages: Vec<StageSpec>,
}

const COLUMNS: &str = "r.id, r.node_id, n.path AS node_path, r.name, r.gitlab_project, r.image_repository, \
    r.required_approvals, r.auto_rollback, r.refuse_zero_replicas, r.created_at, r.updated_at";

fn item_from_row(row: &AnyRow) -> Result<ReleaseItem, sqlx::Error> {
    Ok(ReleaseItem {
        id: row.try_get("id")?,
        node_id: row.try_get("node_id")?,
        node_path: row.try_get("node_path")?,
        name: row.try_get("name")?,
        gitlab_project: row.try_get("gitlab_project")?,
        image_repository: row.try_get("image_repository")?,
        required_approvals: row.try_get("required_approvals")?,
        auto_rollback: row.try_get::<i64, _>("auto_rollback")? != 0,
        refuse_zero_replicas: row.try_get::<i64, _>("refuse_zero_replicas")? != 0,
        stages: Vec::new(),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn stage_from_row(row: &AnyRow) -> Result<Stage, sqlx::Error> {
    let strategy: String = row.try_get("strategy")?;
    let canary: Option<String> = row.try_get("canary_json")?;
    Ok(Stage {
        position: row.try_get("position")?,
        name: row.try_get("name")?,
        app_id: row.try_get("app_id")?,
        app: row.try_get("app")?,
        cluster: row.try_get("cluster")?,
        cluster_id: row.try_get("cluster_id")?,
        environment: row.try_get("environment")?,
        strategy: strategy
            .parse()
            .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
        canary: canary
            .map(|c| serde_json::from_str(&c))
            .transpose()
            .map_err(|e| sqlx::Error::Decode(e.into()))?,
        deadline_minutes: row.try_get("deadline_minutes")?,
        verify: verify_plan(row.try_get("verify_json")?)?,
    })
}

/// A stored verification plan (NULL: none).
pub fn verify_plan(json: Option<String>) -> Result<Option<VerifyPlan>, sqlx::Error> {
    json.map(|v| serde_json::from_str(&v))
        .transpose()
        .map_err(|e| sqlx::Error::Decode(e.into()))
}

/// A verification plan as stored: NULL when it asks for nothing.
pub fn verify_json(plan: Option<&VerifyPlan>) -> Option<String> {
    plan.filter(|p| !p.is_empty())
        .and_then(|p| serde_json::to_string(p).ok())
}

/// The columns of a [`Stage`] (from `release_stages s`, `apps p` and
/// `clusters c`), read by [`stage_from_row`].
const STAGE_COLUMNS: &str = "s.position, s.name, s.app_id, p.name AS app, c.name AS cluster, p.cluster_id, \
    c.environment, s.strategy, s.canary_json, s.deadline_minutes, s.verify_json";

async fn load_stages(
    executor: impl sqlx::Executor<'_, Database = sqlx::Any>,
    item_id: i64,
) -> Result<Vec<Stage>> {
    let rows = sqlx::query(&format!(
        "SELECT {STAGE_COLUMNS} FROM release_stages s JOIN apps p ON p.id = s.app_id \
         JOIN clusters c ON c.id = p.cluster_id WHERE s.release_item_id = $1 ORDER BY s.position"
    ))
    .bind(item_id)
    .fetch_all(executor)
    .await?;
    Ok(rows.iter().map(stage_from_row).collect::<Result<_, _>>()?)
}

fn validate_fields(fields: &ItemFields) -> Result<()> {
    validate_name(fields.name.trim()).map_err(|m| Error::validation("name", m))?;
    let project = fields.gitlab_project.trim();
    if project.is_empty()
        || project.len() > 255
        || project.contains(|c: char| c.is_whitespace() || c.is_control())
    {
        return Err(Error::validation(
            "gitlab_project",
            "give the GitLab project id or its path, e.g. group/app",
        ));
    }
    let repo = fields.image_repository.trim();
    let repo_ok = !repo.is_empty()
        && repo.len() <= 255
        && !repo.contains(char::is_whitespace)
        && !repo.contains('@')
        && !repo.rsplit('/').next().unwrap_or("").contains(':')
        && repo
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/:".contains(c));
    if !repo_ok {
        return Err(Error::validation(
            "image_repository",
            "give an image repository without a tag, e.g. registry.example.com/group/app",
        ));
    }
    Ok(())
}

/// Checks the plan against the tree: apps in the item's subtree, enough
/// approvers for the required approvals.
async fn check_plan(tx: &mut Tx, fields: &ItemFields) -> Result<String> {
    let node_path: Option<String> = sqlx::query_scalar("SELECT path FROM nodes WHERE id = $1")
        .bind(fields.node_id)
        .fetch_optional(&mut **tx)
        .await?;
    let node_path = node_path.ok_or_else(|| {
        Error::validation(
            "node_id",
            format!("tree node {} does not exist", fields.node_id),
        )
    })?;
    let mut app_paths = std::collections::HashMap::new();
    for stage in &fields.stages {
        let path: Option<String> = sqlx::query_scalar(
            "SELECT n.path FROM apps p JOIN nodes n ON n.id = p.node_id WHERE p.id = $1",
        )
        .bind(stage.app_id)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(p) = path {
            app_paths.insert(stage.app_id, p);
        }
    }
    let approvers = approvers_of(&mut **tx, &node_path)
        .await?
        .map(|(_, set)| set.len())
        .unwrap_or(0);
    let lookup = |id: i64| app_paths.get(&id).cloned();
    validate_plan(
        fields.required_approvals,
        &fields.stages,
        &PlanFacts {
            item_path: &node_path,
            app_paths: &lookup,
            approvers,
        },
    )
    .map_err(|e| Error::validation(e.field, e.message))?;
    Ok(node_path)
}

async fn write_stages(tx: &mut Tx, item_id: i64, stages: &[StageSpec]) -> Result<()> {
    sqlx::query("DELETE FROM release_stages WHERE release_item_id = $1")
        .bind(item_id)
        .execute(&mut **tx)
        .await?;
    for (i, stage) in stages.iter().enumerate() {
        sqlx::query(
            "INSERT INTO release_stages (release_item_id, position, name, app_id, strategy, canary_json, deadline_minutes, verify_json) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(item_id)
        .bind(i as i64 + 1)
        .bind(stage.name.trim())
        .bind(stage.app_id)
        .bind(stage.strategy.as_str())
        .bind(stage.canary.as_ref().and_then(|c| serde_json::to_string(c).ok()))
        .bind(stage.deadline_minutes)
        .bind(verify_json(stage.verify.as_ref()))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn get_in(tx: &mut Tx, id: i64) -> Result<ReleaseItem> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM release_items r JOIN nodes n ON n.id = r.node_id WHERE r.id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let mut item = row
        .as_ref()
        .map(item_from_row)
        .transpose()?
        .ok_or_else(|| not_found(id))?;
    item.stages = load_stages(&mut **tx, id).await?;
    Ok(item)
}

fn conflict(e: sqlx::Error, name: &str) -> Error {
    if violated(&e) == Some(Constraint::ReleaseItemName) {
        Error::Conflict(format!(
            "a release item named '{name}' already exists on that node"
        ))
    } else {
        e.into()
    }
}

pub async fn create(db: &Db, fields: &ItemFields, who: &AuditActor) -> Result<ReleaseItem> {
    validate_fields(fields)?;
    let mut tx = db.begin_write().await?;
    check_plan(&mut tx, fields).await?;
    let now = now_ms();
    let name = fields.name.trim();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO release_items (node_id, name, gitlab_project, image_repository, required_approvals, auto_rollback, \
         refuse_zero_replicas, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id",
    )
    .bind(fields.node_id)
    .bind(name)
    .bind(fields.gitlab_project.trim())
    .bind(fields.image_repository.trim())
    .bind(fields.required_approvals)
    .bind(i64::from(fields.auto_rollback))
    .bind(i64::from(fields.refuse_zero_replicas))
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| conflict(e, name))?;
    write_stages(&mut tx, id, &fields.stages).await?;
    let item = get_in(&mut tx, id).await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "release_item.create",
            target_type: "release_item",
            target_id: Some(id),
            summary: format!(
                "created release item {} on {} with {} stages",
                item.name,
                item.node_path,
                item.stages.len()
            ),
            before: None,
            after: snapshot(&item),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(item)
}

/// Replaces an item's fields and stages. Open work orders keep the stages
/// they were filed with.
pub async fn update(
    db: &Db,
    id: i64,
    fields: &ItemFields,
    who: &AuditActor,
) -> Result<ReleaseItem> {
    validate_fields(fields)?;
    let mut tx = db.begin_write().await?;
    let before = get_in(&mut tx, id).await?;
    if fields.node_id != before.node_id {
        return Err(Error::validation(
            "node_id",
            "a release item cannot move to another node",
        ));
    }
    check_plan(&mut tx, fields).await?;
    let name = fields.name.trim();
    sqlx::query(
        "UPDATE release_items SET name = $1, gitlab_project = $2, image_repository = $3, required_approvals = $4, \
         auto_rollback = $5, refuse_zero_replicas = $6, updated_at = $7 WHERE id = $8",
    )
    .bind(name)
    .bind(fields.gitlab_project.trim())
    .bind(fields.image_repository.trim())
    .bind(fields.required_approvals)
    .bind(i64::from(fields.auto_rollback))
    .bind(i64::from(fields.refuse_zero_replicas))
    .bind(now_ms())
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(|e| conflict(e, name))?;
    write_stages(&mut tx, id, &fields.stages).await?;
    let after = get_in(&mut tx, id).await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "release_item.update",
            target_type: "release_item",
            target_id: Some(id),
            summary: format!("changed release item {}", after.name),
            before: snapshot(&before),
            after: snapshot(&after),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// Deletes an item that has never had a work order.
pub async fn delete(db: &Db, id: i64, who: &AuditActor) -> Result<ReleaseItem> {
    let mut tx = db.begin_write().await?;
    let item = get_in(&mut tx, id).await?;
    let orders: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM work_orders WHERE release_item_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    if orders > 0 {
        return Err(Error::Conflict(format!(
            "release item {} has {orders} work order{}; it stays for their history",
            item.name,
            if orders == 1 { "" } else { "s" }
        )));
    }
    sqlx::query("DELETE FROM release_stages WHERE release_item_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM release_items WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "release_item.delete",
            target_type: "release_item",
            target_id: Some(id),
            summary: format!("deleted release item {} from {}", item.name, item.node_path),
            before: snapshot(&item),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(item)
}

/// What a missing item answers; an item the reader may not see answers the
/// same, so ids cannot be probed.
pub fn not_found(id: i64) -> Error {
    Error::NotFound(format!("no release item with id {id}"))
}

pub async fn get(pool: &AnyPool, id: i64) -> Result<ReleaseItem> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM release_items r JOIN nodes n ON n.id = r.node_id WHERE r.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let mut item = row
        .as_ref()
        .map(item_from_row)
        .transpose()?
        .ok_or_else(|| not_found(id))?;
    item.stages = load_stages(pool, id).await?;
    Ok(item)
}

/// Binds `node_id` and the scope's roots to a query built with
/// [`scoped`].
fn bind_scoped<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    node_id: Option<i64>,
    roots: Vec<String>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    query = query.bind(node_id);
    for root in roots {
        query = query.bind(root);
    }
    query
}

/// The item filter (`$1`, a node id or NULL) and the scope on `n.path`.
fn scoped(scope: &Scope) -> (String, Vec<String>) {
    match scope.predicate("n.path", 2) {
        Some((p, roots)) => (format!("($1 IS NULL OR r.node_id = $1) AND {p}"), roots),
        None => ("($1 IS NULL OR r.node_id = $1)".into(), Vec::new()),
    }
}

/// The items in `scope` on a node (or everywhere), by path and name, with
/// their stages (two queries, whatever the number of items).
pub async fn list(pool: &AnyPool, node_id: Option<i64>, scope: &Scope) -> Result<Vec<ReleaseItem>> {
    let (filter, roots) = scoped(scope);
    let sql = format!(
        "SELECT {COLUMNS} FROM release_items r JOIN nodes n ON n.id = r.node_id \
         WHERE {filter} ORDER BY n.path, r.name"
    );
    let rows = bind_scoped(sqlx::query(&sql), node_id, roots.clone())
        .fetch_all(pool)
        .await?;
    let mut items: Vec<ReleaseItem> = rows.iter().map(item_from_row).collect::<Result<_, _>>()?;
    let sql = format!(
        "SELECT s.release_item_id, {STAGE_COLUMNS} FROM release_stages s JOIN release_items r ON r.id = s.release_item_id \
         JOIN nodes n ON n.id = r.node_id JOIN apps p ON p.id = s.app_id JOIN clusters c ON c.id = p.cluster_id \
         WHERE {filter} ORDER BY s.release_item_id, s.position"
    );
    let stage_rows = bind_scoped(sqlx::query(&sql), node_id, roots)
        .fetch_all(pool)
        .await?;
    attach_stages(&mut items, &stage_rows)?;
    Ok(items)
}

/// Gives each item its stages from `stage_rows` (rows of any items, by
/// item and position).
fn attach_stages(items: &mut [ReleaseItem], stage_rows: &[sqlx::any::AnyRow]) -> Result<()> {
    let mut by_item: std::collections::HashMap<i64, Vec<Stage>> = std::collections::HashMap::new();
    for row in stage_rows {
        let item_id: i64 = row.try_get("release_item_id")?;
        by_item
            .entry(item_id)
            .or_default()
            .push(stage_from_row(row)?);
    }
    for item in items {
        item.stages = by_item.remove(&item.id).unwrap_or_default();
    }
    Ok(())
}

/// One page of the items in `scope` by path and name — those whose name
/// or node path starts with `search` when given — as ids, and how many
/// there are in all.
pub async fn page_ids(
    pool: &AnyPool,
    scope: &Scope,
    search: Option<&str>,
    offset: usize,
    limit: usize,
) -> Result<(Vec<i64>, usize)> {
    let (filter, roots) = scoped(scope);
    let mut binds: Vec<String> = roots;
    let search_sql = match search {
        Some(q) => {
            let first = binds.len() + 2;
            binds.push(super::work_order_views::like_prefix(q));
            binds.push(super::work_order_views::like_prefix(
                q.trim_start_matches('/'),
            ));
            format!(
                " AND (lower(r.name) LIKE ${first} ESCAPE '\\' OR n.path LIKE ${} ESCAPE '\\' \
                 OR n.path LIKE '/' || ${} ESCAPE '\\')",
                first,
                first + 1
            )
        }
        None => String::new(),
    };
    let from =
        format!("FROM release_items r JOIN nodes n ON n.id = r.node_id WHERE {filter}{search_sql}");
    let total: i64 = bind_scoped(
        sqlx::query(&format!("SELECT COUNT(*) AS n {from}")),
        None,
        binds.clone(),
    )
    .fetch_one(pool)
    .await?
    .try_get("n")?;
    let ids = bind_scoped(
        sqlx::query(&format!(
            "SELECT r.id {from} ORDER BY n.path, r.name LIMIT {limit} OFFSET {offset}"
        )),
        None,
        binds,
    )
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| r.try_get("id"))
    .collect::<Result<Vec<i64>, _>>()?;
    Ok((ids, total.max(0) as usize))
}

/// The items with ids `ids` (read from the database, written as integer
/// literals), by path and name, with their stages.
pub async fn list_ids(pool: &AnyPool, ids: &[i64]) -> Result<Vec<ReleaseItem>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    let ids = ids.join(", ");
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM release_items r JOIN nodes n ON n.id = r.node_id \
         WHERE r.id IN ({ids}) ORDER BY n.path, r.name"
    ))
    .fetch_all(pool)
    .await?;
    let mut items: Vec<ReleaseItem> = rows.iter().map(item_from_row).collect::<Result<_, _>>()?;
    let stage_rows = sqlx::query(&format!(
        "SELECT s.release_item_id, {STAGE_COLUMNS} FROM release_stages s \
         JOIN apps p ON p.id = s.app_id JOIN clusters c ON c.id = p.cluster_id \
         WHERE s.release_item_id IN ({ids}) ORDER BY s.release_item_id, s.position"
    ))
    .fetch_all(pool)
    .await?;
    attach_stages(&mut items, &stage_rows)?;
    Ok(items)
}

/// A release item's id, name and node, for pickers and filters.
#[derive(Debug, Clone)]
pub struct ItemRef {
    pub id: i64,
    pub name: String,
    pub node_path: String,
}

/// The id, name and node path of every item in `scope`, in one light
/// query.
pub async fn refs(pool: &AnyPool, scope: &Scope) -> Result<Vec<ItemRef>> {
    let (filter, roots) = match scope.predicate("n.path", 1) {
        Some((p, roots)) => (format!("WHERE {p}"), roots),
        None => (String::new(), Vec::new()),
    };
    let sql = format!(
        "SELECT r.id, r.name, n.path FROM release_items r JOIN nodes n ON n.id = r.node_id {filter} \
         ORDER BY r.name, n.path"
    );
    let mut query = sqlx::query(&sql);
    for root in roots {
        query = query.bind(root);
    }
    let rows = query.fetch_all(pool).await?;
    rows.iter()
        .map(|r| {
            Ok(ItemRef {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                node_path: r.try_get("path")?,
            })
        })
        .collect()
}
