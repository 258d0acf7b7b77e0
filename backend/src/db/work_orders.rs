//! Work orders: the shell around the state machine in
//! `domain::work_order` (the write path). Each change loads the facts, asks
//! [`decide`], and writes the new state, the approval (if any), the timeline
//! event and the audit row in one transaction. Filing inserts the order;
//! rule 1 (one open order per item) is held by the partial unique index
//! [`ONE_OPEN_PER_ITEM`], whose state list is [`open_states_sql`]. The read
//! models and lists are in `db::work_order_views`, the approver look-ups in
//! `db::approvers`; the filing checks and the refusal's HTTP meaning in
//! `flows::work_orders`.

use sqlx::{AnyPool, Row};

use super::accounts::Account;
use super::approvers::approvers_of;
use super::audit::{self, AuditActor, Change};
use super::constraint::{Constraint, violated};
use super::error::{Error, Result};
use super::freezes;
use super::jobs::{self, JobLease, Subject, check_lease};
use super::release_items::ReleaseItem;
use super::rollout_locks;
use super::work_order_views::{COLUMNS, FROM, WorkOrder, WorkOrderDetail, from_row, not_found};
use super::{Db, Tx, now_ms};
use crate::domain::release_item::Canary;
use crate::domain::tree::path_covers;
use crate::domain::verify::VerifyPlan;
use crate::domain::work_order::{
    Command, Facts, Outcome, StageChange, StageFacts, StageStatus, State, VerifyMark, decide,
    refusal,
};

/// The partial unique index on `work_orders (release_item_id)` that keeps
/// rule 1 under races: one order per item in an open state
/// ([`State::OPEN`], spelt by [`open_states_sql`]).
pub const ONE_OPEN_PER_ITEM: &str = "work_orders_one_open_per_item";

/// The open states as an SQL list, `'pending_approval', 'approved', …`:
/// the one spelling of [`State::OPEN`] in SQL. The index's predicate in the
/// migrations names the same states (tested).
pub fn open_states_sql() -> String {
    State::OPEN
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn get_in(tx: &mut Tx, id: i64) -> Result<WorkOrder> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM {FROM} WHERE w.id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref()
        .map(from_row)
        .transpose()?
        .ok_or_else(|| not_found(id))
}

/// An item's open order (rule 1): its id and title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOrder {
    pub id: i64,
    pub title: String,
}

/// The open order of item `item_id`, if it has one.
pub async fn open_order_of(pool: &AnyPool, item_id: i64) -> Result<Option<OpenOrder>> {
    let row = sqlx::query(&format!(
        "SELECT id, title FROM work_orders WHERE release_item_id = $1 AND state IN ({})",
        open_states_sql()
    ))
    .bind(item_id)
    .fetch_optional(pool)
    .await?;
    Ok(row
        .map(|r| -> Result<OpenOrder, sqlx::Error> {
            Ok(OpenOrder {
                id: r.try_get("id")?,
                title: r.try_get("title")?,
            })
        })
        .transpose()?)
}

pub(crate) async fn add_event(
    tx: &mut Tx,
    work_order_id: i64,
    who: &AuditActor,
    kind: &str,
    message: &str,
    stage_position: Option<i64>,
) -> Result<()> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO timeline_events (work_order_id, at, actor_id, actor, kind, message, stage_position) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(work_order_id)
    .bind(now_ms())
    .bind(who.account_id)
    .bind(&who.name)
    .bind(kind)
    .bind(message)
    .bind(stage_position)
    .fetch_one(&mut **tx)
    .await?;
    // The notifications it makes, in its own transaction (the outbox).
    super::notifications::fan_out(tx, id, work_order_id, kind).await
}

/// What someone asks to file (checked by `flows::work_orders` first).
pub struct NewWorkOrder<'a> {
    pub item: &'a ReleaseItem,
    pub version: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    /// Filed as a hotfix, for this reason.
    pub hotfix_reason: Option<&'a str>,
}

/// What filing did.
#[derive(Debug)]
pub enum Filing {
    Filed(Box<WorkOrder>),
    /// The item has an open order already: [`ONE_OPEN_PER_ITEM`] refused
    /// the insert (an order filed meanwhile).
    AlreadyOpen,
}

/// Files a work order (checked, and the version checked against GitLab):
/// the order, one pending stage run per stage and the first timeline
/// event. The database's partial unique index makes rule 1 hold under
/// races: a second open order answers [`Filing::AlreadyOpen`].
pub async fn file(
    db: &Db,
    new: &NewWorkOrder<'_>,
    creator: &Account,
    who: &AuditActor,
) -> Result<Filing> {
    let item = new.item;
    let image = format!("{}:{}", item.image_repository, new.version.trim());
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let inserted = sqlx::query_scalar::<_, i64>(
        "INSERT INTO work_orders (release_item_id, node_id, version, image, title, description, state, creator_id, \
         required_approvals, created_at, updated_at, hotfix_reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11) RETURNING id",
    )
    .bind(item.id)
    .bind(item.node_id)
    .bind(new.version.trim())
    .bind(&image)
    .bind(new.title.trim())
    .bind(new.description)
    .bind(State::PendingApproval.as_str())
    .bind(creator.id)
    .bind(item.required_approvals)
    .bind(now)
    .bind(new.hotfix_reason)
    .fetch_one(&mut *tx)
    .await;
    let id = match inserted {
        Ok(id) => id,
        Err(e) if violated(&e) == Some(Constraint::OneOpenOrderPerItem) => {
            return Ok(Filing::AlreadyOpen);
        }
        Err(e) => return Err(e.into()),
    };
    for stage in &item.stages {
        sqlx::query(
            "INSERT INTO stage_runs (work_order_id, position, name, app_id, strategy, canary_json, status, deadline_minutes, \
             verify_json) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8)",
        )
        .bind(id)
        .bind(stage.position)
        .bind(&stage.name)
        .bind(stage.app_id)
        .bind(stage.strategy.as_str())
        .bind(stage.canary.as_ref().and_then(|c| serde_json::to_string(c).ok()))
        .bind(stage.deadline_minutes)
        .bind(super::release_items::verify_json(stage.verify.as_ref()))
        .execute(&mut *tx)
        .await?;
    }
    add_event(
        &mut tx,
        id,
        who,
        "filed",
        &match new.hotfix_reason {
            Some(reason) => format!("{} {} as a hotfix: {reason}", item.name, new.version.trim()),
            None => format!("{} {}", item.name, new.version.trim()),
        },
        None,
    )
    .await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "work_order.file",
            target_type: "work_order",
            target_id: Some(id),
            summary: format!(
                "filed #{id} {} {} \"{}\"",
                item.name,
                new.version.trim(),
                new.title.trim()
            ),
            before: None,
            after: None,
        },
    )
    .await?;
    let order = get_in(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Filing::Filed(Box::new(order)))
}

/// Where a stage run deploys to, and where it stands: what the deploy
/// preflight, the pod pages and the engine's stage jobs read.
#[derive(Debug, Clone)]
pub struct StageTarget {
    /// `rolling` or `canary`.
    pub strategy: String,
    pub app: String,
    pub cluster_id: i64,
    pub cluster: String,
    /// The cluster's environment: `dev`, `test`, `staging` or `prod`.
    pub environment: String,
    pub namespace: String,
    pub deployment: String,
    pub container: String,
    /// The app's Service and Ingress a canary routes traffic through.
    pub service: Option<String>,
    pub ingress: Option<String>,
    /// The image the order releases (`image_repository:version`).
    pub image: String,
    pub status: StageStatus,
    /// What the stage's deploy replaced (recorded before its first write).
    pub replaced_image: Option<String>,
    pub replaced_revision: Option<String>,
    /// The replaced pod template, as JSON.
    pub replaced_template: Option<String>,
    /// The uid of the Deployment the deploy wrote to: another uid is
    /// another object (the Deployment was replaced).
    pub deployment_uid: Option<String>,
    /// The Deployment was past its progress deadline before the deploy.
    pub replaced_failing: bool,
    /// When the running deploy or rollback must be over (Unix ms).
    pub deadline_at: Option<i64>,
    /// While rolling back: the status the rollback started from.
    pub rollback_from: Option<StageStatus>,
    /// The rollback restores the whole replaced template (an owner asked).
    pub rollback_whole_template: bool,
    /// The stage's last message (for a rollback after a failure: the cause).
    pub message: String,
    /// The stage's overall deadline as set when the order was filed; `None`
    /// for twice the Deployment's progress deadline.
    pub deadline_minutes: Option<i64>,
    /// The release item refuses to deploy a Deployment scaled to zero.
    pub refuse_zero_replicas: bool,
    /// A canary stage's plan, as it was when the order was filed.
    pub canary: Option<Canary>,
    /// The canary step the stage last paused at (1-based).
    pub paused_step: Option<u32>,
    /// The stage's verification plan, as it was when the order was filed.
    pub verify: Option<VerifyPlan>,
    /// When its verification started (Unix ms).
    pub verify_started_at: Option<i64>,
    /// When an owner signed it off (Unix ms).
    pub signed_off_at: Option<i64>,
    /// When a person last let its verification go on past an inconclusive
    /// gate (Unix ms).
    pub verify_continued_at: Option<i64>,
    /// The line stop that paused the stage's Deployment mid-rollout, to be
    /// resumed once it is lifted.
    pub paused_by_stop: Option<i64>,
    /// The node paths of the release item and of the app the stage deploys:
    /// a line stop on either halts it.
    pub item_path: String,
    pub app_path: String,
}

/// The app, cluster and Deployment of stage `position` of order `id`.
pub async fn stage_target(pool: &AnyPool, id: i64, position: i64) -> Result<StageTarget> {
    let row = sqlx::query(
        "SELECT s.strategy, p.name AS app, p.cluster_id, c.name AS cluster, c.environment, p.namespace, p.deployment, p.container, \
         p.service, p.ingress, w.image, s.status, s.replaced_image, s.replaced_revision, s.replaced_template, \
         s.deployment_uid, s.replaced_failing, s.deadline_at, s.rollback_from, s.rollback_whole_template, s.message, \
         s.deadline_minutes, i.refuse_zero_replicas, s.canary_json, s.paused_step, s.verify_json, \
         s.verify_started_at, s.signed_off_at, s.verify_continued_at, s.paused_by_stop, \
         ni.path AS item_path, np.path AS app_path \
         FROM stage_runs s JOIN work_orders w ON w.id = s.work_order_id \
         JOIN release_items i ON i.id = w.release_item_id JOIN nodes ni ON ni.id = i.node_id \
         JOIN apps p ON p.id = s.app_id JOIN clusters c ON c.id = p.cluster_id \
         JOIN nodes np ON np.id = p.node_id \
         WHERE s.work_order_id = $1 AND s.position = $2",
    )
    .bind(id)
    .bind(position)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| Error::NotFound(format!("work order {id} has no stage {position}")))?;
    let status: String = row.try_get("status")?;
    Ok(StageTarget {
        strategy: row.try_get("strategy")?,
        app: row.try_get("app")?,
        cluster_id: row.try_get("cluster_id")?,
        cluster: row.try_get("cluster")?,
        environment: row.try_get("environment")?,
        namespace: row.try_get("namespace")?,
        deployment: row.try_get("deployment")?,
        container: row.try_get("container")?,
        service: row.try_get("service")?,
        ingress: row.try_get("ingress")?,
        image: row.try_get("image")?,
        status: status
            .parse()
            .map_err(|e: String| Error::Internal(anyhow::anyhow!(e)))?,
        replaced_image: row.try_get("replaced_image")?,
        replaced_revision: row.try_get("replaced_revision")?,
        replaced_template: row.try_get("replaced_template")?,
        deployment_uid: row.try_get("deployment_uid")?,
        replaced_failing: row.try_get::<i64, _>("replaced_failing")? != 0,
        deadline_at: row.try_get("deadline_at")?,
        rollback_from: parse_status(row.try_get("rollback_from")?)?,
        rollback_whole_template: row.try_get::<i64, _>("rollback_whole_template")? != 0,
        message: row.try_get("message")?,
        deadline_minutes: row.try_get("deadline_minutes")?,
        refuse_zero_replicas: row.try_get::<i64, _>("refuse_zero_replicas")? != 0,
        canary: row
            .try_get::<Option<String>, _>("canary_json")?
            .map(|json| serde_json::from_str(&json))
            .transpose()
            .map_err(|e| Error::Internal(anyhow::anyhow!("a stored canary plan: {e}")))?,
        paused_step: row
            .try_get::<Option<i64>, _>("paused_step")?
            .map(|s| s as u32),
        verify: super::release_items::verify_plan(row.try_get("verify_json")?)?,
        verify_started_at: row.try_get("verify_started_at")?,
        signed_off_at: row.try_get("signed_off_at")?,
        verify_continued_at: row.try_get("verify_continued_at")?,
        paused_by_stop: row.try_get("paused_by_stop")?,
        item_path: row.try_get("item_path")?,
        app_path: row.try_get("app_path")?,
    })
}

/// A stage status read from the database, if any.
fn parse_status(status: Option<String>) -> Result<Option<StageStatus>> {
    status
        .map(|s| s.parse())
        .transpose()
        .map_err(|e: String| Error::Internal(anyhow::anyhow!(e)))
}

/// The stage runs of order `id` as the state machine sees them.
async fn stage_facts(tx: &mut Tx, id: i64) -> Result<Vec<StageFacts>> {
    let rows = sqlx::query(
        "SELECT status, replaced_image, rollback_from, strategy, paused_step, verify_json, verify_started_at, \
         signed_off_at FROM stage_runs WHERE work_order_id = $1 ORDER BY position",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await?;
    let internal = |e: String| Error::Internal(anyhow::anyhow!(e));
    rows.iter()
        .map(|row| {
            let status: StageStatus = row
                .try_get::<String, _>("status")?
                .parse()
                .map_err(internal)?;
            let plan = super::release_items::verify_plan(row.try_get("verify_json")?)?;
            Ok(StageFacts {
                rollback_from: parse_status(row.try_get("rollback_from")?)?,
                strategy: row
                    .try_get::<String, _>("strategy")?
                    .parse()
                    .map_err(internal)?,
                paused_step: row
                    .try_get::<Option<i64>, _>("paused_step")?
                    .map(|s| s as u32),
                ..StageFacts::new(
                    status,
                    row.try_get::<Option<String>, _>("replaced_image")?
                        .is_some(),
                )
                .verifying(
                    plan.as_ref(),
                    row.try_get::<Option<i64>, _>("verify_started_at")?
                        .is_some(),
                    row.try_get::<Option<i64>, _>("signed_off_at")?.is_some(),
                )
            })
        })
        .collect()
}

/// The facts the state machine needs about `actor` (none for the engine)
/// and `order`, read inside `tx` after the order's row is locked.
/// `may_act` says whether the policy lets the actor close, deploy and roll
/// back orders on the order's node.
async fn facts(
    tx: &mut Tx,
    order: &WorkOrder,
    actor: Option<&Account>,
    may_act: bool,
) -> Result<Facts> {
    let stages = stage_facts(tx, order.id).await?;
    let auto_rollback =
        sqlx::query_scalar::<_, i64>("SELECT auto_rollback FROM release_items WHERE id = $1")
            .bind(order.release_item_id)
            .fetch_one(&mut **tx)
            .await?
            != 0;
    let actor = match actor {
        Some(actor) => {
            let approvers = approvers_of(&mut **tx, &order.node_path).await?;
            let approved_by_actor: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM approvals WHERE work_order_id = $1 AND account_id = $2 AND decision = 'approved'",
            )
            .bind(order.id)
            .bind(actor.id)
            .fetch_optional(&mut **tx)
            .await?;
            Some(ActorFacts {
                account: actor,
                is_approver: approvers.is_some_and(|(_, set)| set.contains(&actor.name)),
                already_approved: approved_by_actor.is_some(),
            })
        }
        None => None,
    };
    Ok(assemble(order, stages, auto_rollback, actor, may_act))
}

/// A pending stage a freeze window holds.
#[derive(Debug, Clone)]
pub struct Held {
    pub position: u32,
    pub stage: String,
    pub window: freezes::FreezeWindow,
    /// When the window's stretch ends (Unix ms).
    pub until: i64,
}

/// A pending stage and the freeze windows covering it.
#[derive(Debug, Clone)]
pub struct Coverage {
    pub position: u32,
    pub stage: String,
    /// The windows set on the item's node or the stage app's node, or
    /// above either, that freeze the app's environment class, as of the
    /// time asked for.
    pub windows: Vec<freezes::FreezeWindow>,
}

/// Order `order`'s pending stages with the windows covering them at `now`.
pub async fn coverage(
    conn: &mut sqlx::AnyConnection,
    order: &WorkOrder,
    now: i64,
) -> Result<Vec<Coverage>> {
    let pending: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT s.position, s.name, n.path, c.environment FROM stage_runs s \
         JOIN apps a ON a.id = s.app_id JOIN nodes n ON n.id = a.node_id \
         JOIN clusters c ON c.id = a.cluster_id \
         WHERE s.work_order_id = $1 AND s.status = 'pending' ORDER BY s.position",
    )
    .bind(order.id)
    .fetch_all(&mut *conn)
    .await?;
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let mut paths: Vec<&str> = vec![&order.node_path];
    paths.extend(pending.iter().map(|(_, _, app_path, _)| app_path.as_str()));
    let all = freezes::covering_any(&mut *conn, &paths, now).await?;
    let covers = |path: &str| -> Vec<freezes::FreezeWindow> {
        all.iter()
            .filter(|w| path_covers(path, &w.node_path))
            .cloned()
            .collect()
    };
    let on_item = covers(&order.node_path);
    let mut out = Vec::new();
    for (position, stage, app_path, environment) in pending {
        let mut windows = on_item.clone();
        for w in covers(&app_path) {
            if !windows.iter().any(|x| x.id == w.id) {
                windows.push(w);
            }
        }
        windows.retain(|w| w.freezes(&environment));
        out.push(Coverage {
            position: position as u32,
            stage,
            windows,
        });
    }
    Ok(out)
}

/// Order `order`'s pending stages a freeze window holds at `now` (see
/// [`coverage`]), save the windows a hotfix order was let through.
pub async fn held_stages(
    conn: &mut sqlx::AnyConnection,
    order: &WorkOrder,
    now: i64,
) -> Result<Vec<Held>> {
    let covered = coverage(&mut *conn, order, now).await?;
    held_of(conn, order, covered).await
}

/// The stages of `covered` (order `order`'s [`coverage`]) a freeze window
/// holds, save the windows a hotfix order was let through.
pub async fn held_of(
    conn: &mut sqlx::AnyConnection,
    order: &WorkOrder,
    covered: Vec<Coverage>,
) -> Result<Vec<Held>> {
    if covered.iter().all(|c| c.windows.is_empty()) {
        return Ok(Vec::new());
    }
    let overridden = match order.hotfix_reason {
        Some(_) => freezes::overrides_of(&mut *conn, order.id).await?,
        None => Vec::new(),
    };
    Ok(covered
        .into_iter()
        .filter_map(|c| {
            let (window, until) = freezes::blocking(&c.windows, "", &overridden)?;
            Some(Held {
                position: c.position,
                stage: c.stage,
                window: window.clone(),
                until,
            })
        })
        .collect())
}

/// Why each of order `order`'s held stages may not start (see
/// [`held_stages`]), by position.
pub async fn frozen_stages(
    conn: &mut sqlx::AnyConnection,
    order: &WorkOrder,
    now: i64,
) -> Result<std::collections::BTreeMap<u32, String>> {
    Ok(held_stages(conn, order, now)
        .await?
        .into_iter()
        .map(|h| {
            let way = if order.hotfix_reason.is_some() {
                format!(
                    "an owner of {} (or an admin) lets this hotfix through it",
                    h.window.node_path
                )
            } else {
                format!(
                    "file the release as a hotfix and have an owner of {} (or an admin) let it through",
                    h.window.node_path
                )
            };
            (
                h.position,
                format!(
                    "stage {} ({}) is frozen by {}; deploy it after the freeze, or {way}",
                    h.position,
                    h.stage,
                    h.window.describe_until(h.until),
                ),
            )
        })
        .collect())
}

/// Order `order`'s stages a line stop halts now, each with the stop (the
/// nearest node's when several do), by position. One query when no stop
/// is in force.
pub async fn stops_over(
    conn: &mut sqlx::AnyConnection,
    order: &WorkOrder,
) -> Result<Vec<(u32, super::line_stops::LineStop)>> {
    let stops = super::line_stops::active(&mut *conn).await?;
    if stops.is_empty() {
        return Ok(Vec::new());
    }
    let stages: Vec<(i64, String)> = sqlx::query_as(
        "SELECT s.position, n.path FROM stage_runs s JOIN apps a ON a.id = s.app_id \
         JOIN nodes n ON n.id = a.node_id WHERE s.work_order_id = $1 ORDER BY s.position",
    )
    .bind(order.id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(stages
        .into_iter()
        .filter_map(|(position, app_path)| {
            let stop = stops
                .iter()
                .filter(|s| s.covers(&order.node_path) || s.covers(&app_path))
                .max_by_key(|s| s.node_path.len())?;
            Some((position as u32, stop.clone()))
        })
        .collect())
}

/// Why each of order `order`'s stages a line stop halts may neither start
/// nor go on to a next step (see [`stops_over`]), by position.
pub async fn stopped_stages(
    conn: &mut sqlx::AnyConnection,
    order: &WorkOrder,
) -> Result<std::collections::BTreeMap<u32, String>> {
    Ok(stops_over(conn, order)
        .await?
        .into_iter()
        .map(|(position, stop)| {
            (
                position,
                format!(
                    "stage {position} is held: {}; it goes on once an owner lifts the stop",
                    stop.describe()
                ),
            )
        })
        .collect())
}

/// A 403 for a freeze override.
fn not_allowed(reason: String) -> Error {
    Error::Refused(crate::domain::work_order::Refused {
        input: "comment",
        refusal: crate::domain::work_order::Refusal {
            kind: crate::domain::work_order::RefusalKind::NotAllowed,
            reason,
        },
    })
}

/// Lets hotfix order `id` through the windows holding its stages now that
/// `may_override` allows (the actor owns their node, or is an admin): an
/// override row per window, the timeline event and the audit row, in one
/// transaction. The windows let through; refused when the order is no
/// hotfix, is the actor's own, or nothing the actor may lift holds it.
pub async fn override_freeze(
    db: &Db,
    id: i64,
    actor: &Account,
    may_override: &(dyn Fn(&str) -> bool + Sync),
    comment: &str,
    who: &AuditActor,
) -> Result<Vec<freezes::FreezeWindow>> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    lock(&mut tx, id).await?;
    let order = get_in(&mut tx, id).await?;
    let Some(reason) = order.hotfix_reason.clone() else {
        return Err(Error::Conflict(format!(
            "work order #{id} is not a hotfix: only a hotfix may deploy through a freeze"
        )));
    };
    if !order.state.is_open() {
        return Err(Error::Conflict(format!(
            "work order #{id} is {}; nothing more deploys",
            order.state.label().to_lowercase()
        )));
    }
    if order.creator_id == actor.id {
        return Err(not_allowed(
            "you filed this hotfix: someone else lets it through a freeze".into(),
        ));
    }
    let held = held_stages(&mut tx, &order, now).await?;
    if held.is_empty() {
        return Err(Error::Conflict(format!(
            "no freeze window holds work order #{id} now"
        )));
    }
    let mut lifted: Vec<freezes::FreezeWindow> = Vec::new();
    for h in &held {
        if may_override(&h.window.node_path) && !lifted.iter().any(|w| w.id == h.window.id) {
            lifted.push(h.window.clone());
        }
    }
    if lifted.is_empty() {
        let nodes: Vec<&str> = held.iter().map(|h| h.window.node_path.as_str()).collect();
        return Err(not_allowed(format!(
            "only an owner of {} (or an admin) may let this hotfix through its freeze",
            nodes.join(" or ")
        )));
    }
    for w in &lifted {
        sqlx::query(
            "INSERT INTO freeze_overrides (work_order_id, window_id, account_id, at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (work_order_id, window_id) DO NOTHING",
        )
        .bind(id)
        .bind(w.id)
        .bind(actor.id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    let names: Vec<String> = lifted
        .iter()
        .map(|w| format!("\"{}\" on {}", w.reason, w.node_path))
        .collect();
    let comment = comment.trim();
    let message = format!(
        "let hotfix ({reason}) through freeze {}{}",
        names.join(", "),
        if comment.is_empty() {
            String::new()
        } else {
            format!(": {comment}")
        }
    );
    add_event(&mut tx, id, who, "freeze_overridden", &message, None).await?;
    sqlx::query("UPDATE work_orders SET updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "work_order.freeze_override",
            target_type: "work_order",
            target_id: Some(id),
            summary: format!("#{id}: {message}"),
            before: None,
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(lifted)
}

/// What the state machine needs to know about the person sending a
/// command.
struct ActorFacts<'a> {
    account: &'a Account,
    /// An effective approver of the order's node.
    is_approver: bool,
    /// Approved this order already.
    already_approved: bool,
}

/// [`Facts`] from what was read, in a transaction or for a page alike.
fn assemble(
    order: &WorkOrder,
    stages: Vec<StageFacts>,
    auto_rollback: bool,
    actor: Option<ActorFacts<'_>>,
    may_act: bool,
) -> Facts {
    let mut facts = Facts {
        approvals: order.approvals as u32,
        required_approvals: order.required_approvals as u32,
        actor_may_close: may_act,
        actor_may_deploy: may_act,
        stages,
        auto_rollback,
        ..Facts::default()
    };
    if let Some(actor) = actor {
        facts.actor_is_creator = order.creator_id == actor.account.id;
        facts.actor_is_approver = actor.is_approver;
        facts.actor_is_owner = actor.is_approver || actor.account.is_admin;
        facts.actor_already_approved = actor.already_approved;
    }
    facts
}

/// The facts for showing buttons, from what the order's page already read
/// (its approvers filled in): no query, no lock; the POST decides again.
pub fn facts_for(d: &WorkOrderDetail, actor: &Account, may_act: bool) -> Facts {
    let stages = d
        .stage_runs
        .iter()
        .map(|s| StageFacts {
            rollback_from: s.rollback_from,
            strategy: s.strategy,
            paused_step: s.paused_step,
            ..StageFacts::new(s.status, s.replaced_image.is_some()).verifying(
                s.verify.as_ref(),
                s.verify_started_at.is_some(),
                s.signed_off_at.is_some(),
            )
        })
        .collect();
    let actor = ActorFacts {
        account: actor,
        is_approver: d.approvers.contains(&actor.name),
        already_approved: d
            .decisions
            .iter()
            .any(|x| x.account == actor.name && x.decision == "approved"),
    };
    assemble(&d.order, stages, d.auto_rollback, Some(actor), may_act)
}

/// Takes order `id`'s row lock inside `tx` (an UPDATE is portable where
/// FOR UPDATE is not), so concurrent changes of one order queue up.
async fn lock(tx: &mut Tx, id: i64) -> Result<()> {
    let locked = sqlx::query("UPDATE work_orders SET updated_at = updated_at WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if locked == 0 {
        return Err(Error::NotFound(format!("no work order with id {id}")));
    }
    Ok(())
}

/// Who sends a command: a person (with what the policy lets them do on
/// the order's node), or the engine holding the lease of a job.
pub enum Source<'a> {
    Person {
        account: &'a Account,
        may_act: &'a (dyn Fn(&str) -> bool + Send + Sync),
    },
    Engine {
        job: &'a JobLease,
    },
}

/// What the engine (or the flow that starts a stage) learnt from
/// Kubernetes along with a command.
#[derive(Debug, Clone, Default)]
pub struct StageRecord {
    pub new_revision: Option<String>,
    pub restored_revision: Option<String>,
    /// How long a deploy or rollback this command starts may run (its
    /// overall deadline); [`DEFAULT_DEADLINE_MS`] when not known.
    pub deadline_ms: Option<i64>,
}

/// The overall deadline of a deploy or rollback started without one: twice
/// Kubernetes' default progress deadline of 600 s.
pub const DEFAULT_DEADLINE_MS: i64 = 2 * 600 * 1000;

/// Applies `command` to order `id` through the state machine and writes
/// the new state, the stage run, the approval, the queued job, the
/// timeline events and (for people) the audit row in one transaction.
pub async fn apply(
    db: &Db,
    id: i64,
    command: &Command,
    source: Source<'_>,
    record: &StageRecord,
    who: &AuditActor,
) -> Result<WorkOrder> {
    let mut tx = db.begin_write().await?;
    lock(&mut tx, id).await?;
    let order = get_in(&mut tx, id).await?;
    let (actor, may_act) = match &source {
        Source::Person { account, may_act } => (Some(*account), may_act(&order.node_path)),
        Source::Engine { job } => {
            check_lease(&mut tx, job).await?;
            (None, false)
        }
    };
    let mut facts = facts(&mut tx, &order, actor, may_act).await?;
    if matches!(command, Command::Deploy { .. }) {
        facts.frozen = frozen_stages(&mut tx, &order, now_ms()).await?;
    }
    if matches!(
        command,
        Command::Deploy { .. } | Command::ApproveStep { .. }
    ) {
        facts.stopped = stopped_stages(&mut tx, &order).await?;
    }
    let transition = decide(order.state, command, &facts).map_err(|r| refusal(command, r))?;
    let now = now_ms();
    if transition.to != transition.from {
        sqlx::query(
            "UPDATE work_orders SET state = $1, updated_at = $2 WHERE id = $3 AND state = $4",
        )
        .bind(transition.to.as_str())
        .bind(now)
        .bind(id)
        .bind(transition.from.as_str())
        .execute(&mut *tx)
        .await?;
    } else {
        sqlx::query("UPDATE work_orders SET updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    let decision = match command {
        Command::Approve { .. } => Some("approved"),
        Command::Reject { .. } => Some("rejected"),
        _ => None,
    };
    if let (Some(decision), Some(actor)) = (decision, actor) {
        sqlx::query(
            "INSERT INTO approvals (work_order_id, account_id, decision, comment, at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(actor.id)
        .bind(decision)
        .bind(&transition.note)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if violated(&e) == Some(Constraint::Approval) {
                Error::Conflict("you have already decided on this work order".into())
            } else {
                e.into()
            }
        })?;
    }
    let stage_position = transition.stage.map(|c| i64::from(c.position));
    if let Some(change) = transition.stage {
        let whole_template = matches!(
            command,
            Command::Rollback {
                whole_template: true,
                ..
            }
        );
        write_stage(
            &mut tx,
            id,
            change,
            &transition.note,
            record,
            whole_template,
            now,
        )
        .await?;
        let position = i64::from(change.position);
        match (change.from.is_mid_rollout(), change.to.is_mid_rollout()) {
            (false, true) => rollout_locks::take(&mut tx, id, position, now).await?,
            (true, false) => rollout_locks::give_back(&mut tx, id, position).await?,
            _ => {}
        }
        if transition.cancels_job {
            let subject = Subject::StageRun {
                work_order_id: id,
                position,
            };
            jobs::cancel(&mut tx, subject, "cancelled", now).await?;
        }
    }
    if let Source::Engine { job } = &source
        && !matches!(
            command,
            Command::Report {
                outcome: Outcome::Verifying | Outcome::Paused { .. } | Outcome::Resumed { .. },
                ..
            }
        )
    {
        // The job's work is over with this report.
        jobs::close(&mut tx, job, now).await?;
    }
    if let (Some(kind), Some(position)) = (transition.job, stage_position) {
        let subject = Subject::StageRun {
            work_order_id: id,
            position,
        };
        jobs::enqueue(&mut tx, kind.as_str(), subject, now).await?;
    }
    add_event(
        &mut tx,
        id,
        who,
        transition.event,
        &transition.note,
        stage_position,
    )
    .await?;
    if let Some((event, message)) = &transition.then {
        let position = if *event == "succeeded" {
            None
        } else {
            stage_position
        };
        add_event(&mut tx, id, who, event, message, position).await?;
    }
    if actor.is_some() {
        audit::record(
            &mut tx,
            who,
            Change {
                action: match command {
                    Command::Approve { .. } => "work_order.approve",
                    Command::Reject { .. } => "work_order.reject",
                    Command::Close { .. } => "work_order.close",
                    Command::Deploy { .. } => "work_order.deploy",
                    Command::Rollback { .. } => "work_order.rollback",
                    Command::Cancel { .. } => "work_order.cancel_stage",
                    Command::Report { .. } => "work_order.report",
                    Command::ApproveStep { .. } => "work_order.approve_step",
                    Command::SignOff { .. } => "work_order.sign_off",
                    Command::GoOn { .. } => "work_order.go_on",
                },
                target_type: "work_order",
                target_id: Some(id),
                summary: match transition.stage {
                    Some(c) => format!("#{id} stage {}: {} → {}", c.position, c.from, c.to),
                    None => format!("#{id}: {} → {}", transition.from, transition.to),
                },
                before: None,
                after: None,
            },
        )
        .await?;
    }
    let order = get_in(&mut tx, id).await?;
    tx.commit().await?;
    Ok(order)
}

/// What a deploy is about to replace.
pub struct Replaced<'a> {
    pub image: &'a str,
    pub revision: Option<&'a str>,
    /// The pod template, as JSON.
    pub template: &'a str,
    /// The Deployment's uid: the object the stage drives from now on.
    pub uid: Option<&'a str>,
    /// It was past its progress deadline already.
    pub failing: bool,
}

/// Records what a deploy is about to replace (before the engine writes to
/// Kubernetes), with a timeline entry, fenced on the job's lease.
pub async fn record_replaced(
    db: &Db,
    lease: &JobLease,
    id: i64,
    position: i64,
    replaced: &Replaced<'_>,
    message: &str,
) -> Result<()> {
    let mut tx = db.begin_write().await?;
    check_lease(&mut tx, lease).await?;
    let updated = sqlx::query(
        "UPDATE stage_runs SET replaced_image = $1, replaced_revision = $2, replaced_template = $3, \
         deployment_uid = $4, replaced_failing = $5 \
         WHERE work_order_id = $6 AND position = $7 AND replaced_image IS NULL",
    )
    .bind(replaced.image)
    .bind(replaced.revision)
    .bind(replaced.template)
    .bind(replaced.uid)
    .bind(i64::from(replaced.failing))
    .bind(id)
    .bind(position)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 1 {
        add_event(
            &mut tx,
            id,
            &AuditActor::engine(),
            "deploying",
            message,
            Some(position),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Writes a stage run's new status with the times and what the engine
/// learnt.
async fn write_stage(
    tx: &mut Tx,
    id: i64,
    change: StageChange,
    note: &str,
    record: &StageRecord,
    whole_template: bool,
    now: i64,
) -> Result<()> {
    let finished = matches!(
        change.to,
        StageStatus::Succeeded | StageStatus::Failed | StageStatus::RolledBack
    );
    // A deploy or rollback starting gets its overall deadline; a rollback
    // remembers where it started and what it restores.
    let starts = matches!(change.to, StageStatus::Deploying | StageStatus::RollingBack)
        && change.from != change.to;
    let deadline_at =
        starts.then(|| now + record.deadline_ms.unwrap_or(DEFAULT_DEADLINE_MS).max(0));
    let rolls_back = change.to == StageStatus::RollingBack;
    // Where a refused rollback leaves the stage: as it was, or failed when
    // the rollback follows a failure.
    let rollback_from = if change.from == StageStatus::Succeeded {
        StageStatus::Succeeded
    } else {
        StageStatus::Failed
    };
    let updated = sqlx::query(
        "UPDATE stage_runs SET status = $1, message = CASE WHEN $2 = '' THEN message ELSE $2 END, \
         started_at = CASE WHEN $3 = 1 THEN $4 ELSE started_at END, \
         finished_at = CASE WHEN $5 = 1 THEN $4 ELSE NULL END, \
         new_revision = COALESCE($6, new_revision), restored_revision = COALESCE($7, restored_revision), \
         deadline_at = CASE WHEN $11 = 1 THEN $12 ELSE deadline_at END, \
         rollback_from = CASE WHEN $13 = 1 THEN $15 ELSE rollback_from END, \
         rollback_whole_template = CASE WHEN $13 = 1 THEN $14 ELSE rollback_whole_template END, \
         paused_step = COALESCE($16, paused_step), \
         verify_started_at = CASE WHEN $17 = 'started' THEN $4 ELSE verify_started_at END, \
         signed_off_at = CASE WHEN $17 = 'signed_off' THEN $4 ELSE signed_off_at END, \
         verify_continued_at = CASE WHEN $17 = 'went_on' THEN $4 ELSE verify_continued_at END \
         WHERE work_order_id = $8 AND position = $9 AND status = $10",
    )
    .bind(change.to.as_str())
    .bind(note)
    // Started once: a canary going on after a pause keeps its start.
    .bind(i64::from(
        change.to == StageStatus::Deploying && change.from == StageStatus::Pending,
    ))
    .bind(now)
    .bind(i64::from(finished))
    .bind(record.new_revision.as_deref())
    .bind(record.restored_revision.as_deref())
    .bind(id)
    .bind(i64::from(change.position))
    .bind(change.from.as_str())
    .bind(i64::from(starts))
    .bind(deadline_at)
    .bind(i64::from(rolls_back))
    .bind(i64::from(whole_template))
    .bind(rollback_from.as_str())
    .bind(change.paused_step.map(i64::from))
    .bind(match change.verification {
        None => "",
        Some(VerifyMark::Started) => "started",
        Some(VerifyMark::SignedOff) => "signed_off",
        Some(VerifyMark::WentOn) => "went_on",
    })
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if updated != 1 {
        return Err(Error::Conflict(format!(
            "stage {} changed meanwhile; reload and try again",
            change.position
        )));
    }
    Ok(())
}
