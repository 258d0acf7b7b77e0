//! One rollout in flight per Deployment: the `rollout_locks` row of a
//! Deployment (cluster, namespace, name) names what drives it. A stage run
//! takes it in the transaction that starts its deploy or rollback and gives
//! it back in the one that ends it; the primary key makes a second taker
//! wait for the first transaction and then find the row, on one server or
//! several. Whatever app or release item points at the Deployment, the
//! lock is the Deployment's.

use sqlx::Row;

use super::Tx;
use super::error::{Error, Result};

/// What can hold a Deployment (the `holder_kind` of its row).
const STAGE_RUN: &str = "stage_run";
const DEPLOYMENT: &str = "deployment";

/// The Deployment (cluster, namespace, name) something drives.
pub(crate) struct Key {
    pub cluster_id: i64,
    pub cluster: String,
    pub namespace: String,
    pub deployment: String,
}

/// The Deployment stage `position` of order `order_id` drives, and the
/// stage run's id.
async fn stage_key(tx: &mut Tx, order_id: i64, position: i64) -> Result<(i64, Key)> {
    let row = sqlx::query(
        "SELECT s.id, a.cluster_id, c.name AS cluster, a.namespace, a.deployment \
         FROM stage_runs s JOIN apps a ON a.id = s.app_id JOIN clusters c ON c.id = a.cluster_id \
         WHERE s.work_order_id = $1 AND s.position = $2",
    )
    .bind(order_id)
    .bind(position)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| Error::NotFound(format!("work order {order_id} has no stage {position}")))?;
    Ok((
        row.try_get(0)?,
        Key {
            cluster_id: row.try_get("cluster_id")?,
            cluster: row.try_get("cluster")?,
            namespace: row.try_get("namespace")?,
            deployment: row.try_get("deployment")?,
        },
    ))
}

/// Takes the Deployment of stage `position` of order `order_id` for it
/// inside `tx`; a conflict naming the holder when something else has it.
pub(crate) async fn take(tx: &mut Tx, order_id: i64, position: i64, now: i64) -> Result<()> {
    let (stage_run_id, key) = stage_key(tx, order_id, position).await?;
    take_for(tx, STAGE_RUN, stage_run_id, &key, now).await
}

/// Takes `key` for fast-path deployment `id` inside `tx`; a conflict
/// naming the holder when something else has it.
pub(crate) async fn take_for_deployment(tx: &mut Tx, id: i64, key: &Key, now: i64) -> Result<()> {
    take_for(tx, DEPLOYMENT, id, key, now).await
}

/// Gives back what fast-path deployment `id` holds, inside `tx`.
pub(crate) async fn give_back_deployment(tx: &mut Tx, id: i64) -> Result<()> {
    sqlx::query("DELETE FROM rollout_locks WHERE holder_kind = $1 AND holder_id = $2")
        .bind(DEPLOYMENT)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn take_for(
    tx: &mut Tx,
    holder_kind: &str,
    holder_id: i64,
    key: &Key,
    now: i64,
) -> Result<()> {
    let taken = sqlx::query(
        "INSERT INTO rollout_locks (cluster_id, namespace, deployment, holder_kind, holder_id, acquired_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(key.cluster_id)
    .bind(&key.namespace)
    .bind(&key.deployment)
    .bind(holder_kind)
    .bind(holder_id)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if taken == 1 {
        return Ok(());
    }
    let holder = sqlx::query(
        "SELECT l.holder_kind, l.holder_id, s.work_order_id, s.position, s.status, w.title, d.image \
         FROM rollout_locks l \
         LEFT JOIN stage_runs s ON l.holder_kind = 'stage_run' AND s.id = l.holder_id \
         LEFT JOIN work_orders w ON w.id = s.work_order_id \
         LEFT JOIN deployments d ON l.holder_kind = 'deployment' AND d.id = l.holder_id \
         WHERE l.cluster_id = $1 AND l.namespace = $2 AND l.deployment = $3",
    )
    .bind(key.cluster_id)
    .bind(&key.namespace)
    .bind(&key.deployment)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(holder) = holder else {
        // Given back between the insert and the read: not ours to judge;
        // the person tries again.
        return Err(Error::Conflict(format!(
            "Deployment {}/{} in cluster {} was busy a moment ago; try again",
            key.namespace, key.deployment, key.cluster
        )));
    };
    let kind: String = holder.try_get("holder_kind")?;
    let held_by: i64 = holder.try_get("holder_id")?;
    if kind == holder_kind && held_by == holder_id {
        return Ok(());
    }
    let by = match holder.try_get::<Option<i64>, _>("work_order_id")? {
        Some(order) => format!(
            "work order #{order} \"{}\" (stage {}, {})",
            holder
                .try_get::<Option<String>, _>("title")?
                .unwrap_or_default(),
            holder
                .try_get::<Option<i64>, _>("position")?
                .unwrap_or_default(),
            holder
                .try_get::<Option<String>, _>("status")?
                .unwrap_or_default()
                .replace('_', " ")
        ),
        None if kind == DEPLOYMENT => format!(
            "fast-path deployment {held_by} of {}",
            holder
                .try_get::<Option<String>, _>("image")?
                .unwrap_or_default()
        ),
        None => format!("{kind} {held_by}"),
    };
    Err(Error::Conflict(format!(
        "Deployment {}/{} in cluster {} is being rolled out by {by}; one rollout at a time per \
         Deployment: wait until it ends, or cancel it",
        key.namespace, key.deployment, key.cluster
    )))
}

/// Gives back the Deployment stage `position` of order `order_id` holds,
/// inside `tx` (nothing when it holds none).
pub(crate) async fn give_back(tx: &mut Tx, order_id: i64, position: i64) -> Result<()> {
    sqlx::query(
        "DELETE FROM rollout_locks WHERE holder_kind = $1 AND holder_id = \
         (SELECT id FROM stage_runs WHERE work_order_id = $2 AND position = $3)",
    )
    .bind(STAGE_RUN)
    .bind(order_id)
    .bind(position)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
