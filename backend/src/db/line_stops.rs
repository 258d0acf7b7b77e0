//! Stops of the line (migration 0023): a node's subtree halted by an owner
//! or an admin until the stop is lifted. Stopping writes the stop, a
//! `line_stopped` event on every open work order it covers, and the audit
//! row, and takes the engine's running jobs that would move a rollout on
//! away from their workers (they are claimed again and held), all in one
//! transaction; lifting writes the lift, a `line_lifted` event on the same
//! orders, moves the overall deadlines of the stages it held on by as long
//! as it lasted, and runs the held jobs at once. Who may is
//! `flows::line_stops`'s; what a held job does is `engine::hold`'s.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row};
use utoipa::ToSchema;

use super::audit::{self, AuditActor, Change, snapshot};
use super::constraint::{Constraint, violated};
use super::error::{Error, Result};
use super::{Db, Tx, now_ms};
use crate::domain::tree::path_covers;
use crate::domain::work_order::State;

/// The job kinds a stop holds: the ones that move a rollout on. A
/// rollback, a verification (which only watches, and may roll a bad
/// stage back) and a lane's removal are never held.
pub const HELD_KINDS: [&str; 3] = ["deploy", "canary", "fast_deploy"];

/// A stop of the line, as stored and shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LineStop {
    pub id: i64,
    /// The node it is set on; it halts the node's whole subtree.
    pub node_id: i64,
    pub node_path: String,
    /// Why: shown to whoever is refused.
    pub reason: String,
    /// Rolling updates under way were paused (`spec.paused`) and are
    /// resumed when the stop is lifted; otherwise they were left to finish.
    pub pause_rollouts: bool,
    pub stopped_by: String,
    /// Unix ms.
    pub stopped_at: i64,
    /// Who lifted it and when (Unix ms); absent while it holds.
    pub lifted_by: Option<String>,
    pub lifted_at: Option<i64>,
}

impl LineStop {
    /// "the line is stopped at /acme/prod by alice: incident 42".
    pub fn describe(&self) -> String {
        format!(
            "the line is stopped at {} by {} (stop {}): {}",
            self.node_path, self.stopped_by, self.id, self.reason
        )
    }

    /// Whether it halts what lives at `path`.
    pub fn covers(&self, path: &str) -> bool {
        path_covers(path, &self.node_path)
    }
}

const COLUMNS: &str = "s.id, s.node_id, n.path AS node_path, s.reason, s.pause_rollouts, \
    s.stopped_by, s.stopped_at, s.lifted_by, s.lifted_at";
const FROM: &str = "line_stops s JOIN nodes n ON n.id = s.node_id";

fn from_row(row: &AnyRow) -> Result<LineStop, sqlx::Error> {
    Ok(LineStop {
        id: row.try_get("id")?,
        node_id: row.try_get("node_id")?,
        node_path: row.try_get("node_path")?,
        reason: row.try_get("reason")?,
        pause_rollouts: row.try_get::<i64, _>("pause_rollouts")? != 0,
        stopped_by: row.try_get("stopped_by")?,
        stopped_at: row.try_get("stopped_at")?,
        lifted_by: row.try_get("lifted_by")?,
        lifted_at: row.try_get("lifted_at")?,
    })
}

pub fn not_found(id: i64) -> Error {
    Error::NotFound(format!("stop {id} does not exist"))
}

async fn read<'c, E>(db: E, id: i64) -> Result<LineStop>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM {FROM} WHERE s.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(from_row(&row)?)
}

/// Stop `id`.
pub async fn get(pool: &AnyPool, id: i64) -> Result<LineStop> {
    read(pool, id).await
}

/// The stops not lifted, by node path.
pub async fn active<'c, E>(db: E) -> Result<Vec<LineStop>>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE s.lifted_at IS NULL ORDER BY n.path, s.id"
    ))
    .fetch_all(db)
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// The stop not lifted that halts any of `paths` (the nearest node's when
/// several do), if one does.
pub async fn covering<'c, E>(db: E, paths: &[&str]) -> Result<Option<LineStop>>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    Ok(active(db)
        .await?
        .into_iter()
        .filter(|s| paths.iter().any(|p| s.covers(p)))
        .max_by_key(|s| s.node_path.len()))
}

/// The open work orders a stop at `path` covers: their item's node, or the
/// node of an app one of their stages deploys, lies in its subtree.
async fn open_orders_under(tx: &mut Tx, path: &str) -> Result<Vec<i64>> {
    let open: Vec<String> = State::OPEN
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    let rows: Vec<(i64, String)> = sqlx::query_as(&format!(
        "SELECT w.id, n.path FROM work_orders w JOIN release_items i ON i.id = w.release_item_id \
         JOIN nodes n ON n.id = i.node_id WHERE w.state IN ({open}) \
         UNION SELECT w.id, an.path FROM work_orders w JOIN stage_runs r ON r.work_order_id = w.id \
         JOIN apps a ON a.id = r.app_id JOIN nodes an ON an.id = a.node_id WHERE w.state IN ({open})",
        open = open.join(", ")
    ))
    .fetch_all(&mut **tx)
    .await?;
    let mut ids: Vec<i64> = rows
        .into_iter()
        .filter(|(_, p)| path_covers(p, path))
        .map(|(id, _)| id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// The fast-path deployments still to roll out to apps under `path`.
async fn deployments_under(tx: &mut Tx, path: &str) -> Result<Vec<i64>> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT d.id, n.path FROM deployments d JOIN apps a ON a.id = d.app_id \
         JOIN nodes n ON n.id = a.node_id WHERE d.status IN ('pending', 'rolling_out')",
    )
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .filter(|(_, p)| path_covers(p, path))
        .map(|(id, _)| id)
        .collect())
}

async fn add_events(
    tx: &mut Tx,
    orders: &[i64],
    who: &AuditActor,
    kind: &str,
    message: &str,
) -> Result<()> {
    let now = now_ms();
    for id in orders {
        super::work_orders::add_event(tx, *id, who, kind, message, None).await?;
        sqlx::query("UPDATE work_orders SET updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Runs `sql(list)` for `ids` in statements of up to 500, `list` being
/// their placeholders (`$2, $3, …`) and `$1` bound to `value`: how many
/// rows they changed.
async fn update_for(
    tx: &mut Tx,
    ids: &[i64],
    value: i64,
    sql: impl Fn(&str) -> String,
) -> Result<u64> {
    let mut changed = 0;
    for chunk in ids.chunks(500) {
        let list = (2..2 + chunk.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = sql(&list);
        let mut query = sqlx::query(&sql).bind(value);
        for id in chunk {
            query = query.bind(*id);
        }
        changed += query.execute(&mut **tx).await?.rows_affected();
    }
    Ok(changed)
}

/// Takes the jobs of `HELD_KINDS` being worked on for `orders` and
/// `deployments` away from their workers (they stop at their next lease
/// renewal or write) to run again at once: claimed again, they are held.
/// How many.
async fn interrupt(tx: &mut Tx, orders: &[i64], deployments: &[i64], now: i64) -> Result<u64> {
    let kinds = HELD_KINDS
        .iter()
        .map(|k| format!("'{k}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut taken = 0;
    for (subject, ids) in [
        ("work_order_id", orders),
        ("subject_kind = 'deployment' AND subject_id", deployments),
    ] {
        taken += update_for(tx, ids, now, |list| {
            format!(
                "UPDATE jobs SET lease_owner = NULL, lease_until = NULL, run_at = $1, updated_at = $1 \
                 WHERE state = 'queued' AND lease_owner IS NOT NULL AND kind IN ({kinds}) AND {subject} IN ({list})"
            )
        })
        .await?;
    }
    Ok(taken)
}

/// What stopping the line did.
pub struct Stopped {
    pub stop: LineStop,
    /// Open work orders it covers (each got a timeline event).
    pub orders: usize,
    /// Jobs taken from their workers to be held.
    pub interrupted: u64,
}

/// Stops the line at node `node_id` for `reason`, as `who` (see the module
/// notes). A stop on the node not lifted yet is a conflict.
pub async fn stop(
    db: &Db,
    node_id: i64,
    reason: &str,
    pause_rollouts: bool,
    who: &AuditActor,
) -> Result<Stopped> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let id: i64 = match sqlx::query_scalar(
        "INSERT INTO line_stops (node_id, reason, pause_rollouts, stopped_by_id, stopped_by, stopped_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(node_id)
    .bind(reason)
    .bind(i64::from(pause_rollouts))
    .bind(who.account_id)
    .bind(&who.name)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    {
        Ok(id) => id,
        Err(e) if violated(&e) == Some(Constraint::OneStopPerNode) => {
            drop(tx);
            let held = active(&db.pool)
                .await?
                .into_iter()
                .find(|s| s.node_id == node_id);
            return Err(Error::Conflict(match held {
                Some(s) => format!("{} — lift it first", s.describe()),
                None => "the line is already stopped here".into(),
            }));
        }
        Err(e) => return Err(e.into()),
    };
    let stop = read(&mut *tx, id).await?;
    let orders = open_orders_under(&mut tx, &stop.node_path).await?;
    let deployments = deployments_under(&mut tx, &stop.node_path).await?;
    let what = if pause_rollouts {
        "deploys and canary steps are held; rolling updates under way are paused until it is lifted"
    } else {
        "deploys and canary steps are held until it is lifted; rolling updates under way finish"
    };
    add_events(
        &mut tx,
        &orders,
        who,
        "line_stopped",
        &format!(
            "at {} (stop {}): {}; {what}",
            stop.node_path, stop.id, stop.reason
        ),
    )
    .await?;
    let interrupted = interrupt(&mut tx, &orders, &deployments, now).await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "line.stop",
            target_type: "line_stop",
            target_id: Some(id),
            summary: format!(
                "stopped the line at {}: {} ({} open work order{})",
                stop.node_path,
                stop.reason,
                orders.len(),
                if orders.len() == 1 { "" } else { "s" }
            ),
            before: None,
            after: snapshot(&stop),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Stopped {
        stop,
        orders: orders.len(),
        interrupted,
    })
}

/// Lifts stop `id`, as `who` (see the module notes); a stop lifted already
/// is a conflict. The stop as lifted.
pub async fn lift(db: &Db, id: i64, who: &AuditActor) -> Result<LineStop> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let before = read(&mut *tx, id).await?;
    let lifted = sqlx::query(
        "UPDATE line_stops SET lifted_at = $1, lifted_by_id = $2, lifted_by = $3 \
         WHERE id = $4 AND lifted_at IS NULL",
    )
    .bind(now)
    .bind(who.account_id)
    .bind(&who.name)
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if lifted == 0 {
        return Err(Error::Conflict(format!(
            "stop {id} was lifted already{}",
            before
                .lifted_by
                .as_deref()
                .map(|b| format!(" by {b}"))
                .unwrap_or_default()
        )));
    }
    let stop = read(&mut *tx, id).await?;
    let orders = open_orders_under(&mut tx, &stop.node_path).await?;
    // The time held does not count against the stages' overall deadlines.
    let held_for = now - stop.stopped_at;
    update_for(&mut tx, &orders, held_for, |list| {
        format!(
            "UPDATE stage_runs SET deadline_at = deadline_at + $1 WHERE deadline_at IS NOT NULL \
             AND status IN ('deploying', 'verifying') AND work_order_id IN ({list})"
        )
    })
    .await?;
    let deployments = deployments_under(&mut tx, &stop.node_path).await?;
    update_for(&mut tx, &deployments, held_for, |list| {
        format!(
            "UPDATE deployments SET deadline_at = deadline_at + $1 WHERE deadline_at IS NOT NULL \
             AND id IN ({list})"
        )
    })
    .await?;
    sqlx::query(
        "UPDATE jobs SET run_at = $1, held_by = NULL, updated_at = $1 WHERE held_by = $2 AND state = 'queued'",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    add_events(
        &mut tx,
        &orders,
        who,
        "line_lifted",
        &format!(
            "at {} (stop {}: {}): held work goes on",
            stop.node_path, stop.id, stop.reason
        ),
    )
    .await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "line.lift",
            target_type: "line_stop",
            target_id: Some(id),
            summary: format!("lifted the stop of the line at {}", stop.node_path),
            before: snapshot(&before),
            after: snapshot(&stop),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(stop)
}

/// A rollout a line stop may pause mid-way.
#[derive(Debug, Clone, Copy)]
pub enum Paused {
    /// Stage `position` of order `order_id`.
    Stage { order_id: i64, position: i64 },
    /// Fast-path deployment `id`.
    Deployment { id: i64 },
}

/// Records, fenced on the job's lease, that stop `stop` paused `rollout`'s
/// Deployment (`Some`), or that it runs again (`None`).
pub async fn mark_paused(
    db: &Db,
    lease: &super::jobs::JobLease,
    rollout: Paused,
    stop: Option<i64>,
) -> Result<()> {
    let mut tx = db.begin_write().await?;
    super::jobs::check_lease(&mut tx, lease).await?;
    let query = match rollout {
        Paused::Stage { order_id, position } => sqlx::query(
            "UPDATE stage_runs SET paused_by_stop = $1 WHERE work_order_id = $2 AND position = $3",
        )
        .bind(stop)
        .bind(order_id)
        .bind(position),
        Paused::Deployment { id } => {
            sqlx::query("UPDATE deployments SET paused_by_stop = $1 WHERE id = $2")
                .bind(stop)
                .bind(id)
        }
    };
    query.execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}
