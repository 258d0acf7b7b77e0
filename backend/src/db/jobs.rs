//! The engine's durable jobs. A job is queued in the same transaction as
//! the state change that asks for it; workers claim due jobs with a lease
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the single writer lock on
//! SQLite), renew it while they work, and a job whose lease ran out is
//! claimed again by whichever worker comes next.

use sqlx::Row;

use super::work_orders::JobLease;
use super::{Db, DbKind, Tx, now_ms};
use crate::domain::work_order::JobKind;
use crate::error::{Error, Result, is_unique_violation};

/// A claimed job.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub kind: JobKind,
    pub work_order_id: i64,
    pub stage_position: i64,
    /// Claims so far, this one included.
    pub attempts: i64,
    pub lease: JobLease,
}

/// Queues a job for stage `position` of order `work_order_id` inside the
/// caller's transaction.
pub(crate) async fn enqueue(
    tx: &mut Tx,
    kind: JobKind,
    work_order_id: i64,
    position: i64,
    now: i64,
) -> Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO jobs (kind, work_order_id, stage_position, state, attempts, run_at, created_at, updated_at) \
         VALUES ($1, $2, $3, 'queued', 0, $4, $4, $4) RETURNING id",
    )
    .bind(kind.as_str())
    .bind(work_order_id)
    .bind(position)
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::Conflict(format!("stage {position} is already being worked on"))
        } else {
            e.into()
        }
    })
}

/// Claims up to `limit` due jobs for `owner` with a lease of `lease_ms`.
pub async fn claim(db: &Db, owner: &str, lease_ms: i64, limit: i64) -> Result<Vec<Job>> {
    if limit <= 0 {
        return Ok(Vec::new());
    }
    let now = now_ms();
    let lock = match db.kind {
        DbKind::Sqlite => "",
        DbKind::Postgres => "FOR UPDATE SKIP LOCKED",
    };
    let sql = format!(
        "UPDATE jobs SET lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3 \
         WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND run_at <= $3 \
         AND (lease_until IS NULL OR lease_until < $3) ORDER BY run_at, id LIMIT $4 {lock}) \
         RETURNING id, kind, work_order_id, stage_position, attempts"
    );
    let mut tx = db.begin_write().await?;
    let rows = sqlx::query(&sql)
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            let kind: String = r.try_get("kind")?;
            Ok(Job {
                id: r.try_get("id")?,
                kind: kind
                    .parse()
                    .map_err(|e: String| Error::Internal(anyhow::anyhow!(e)))?,
                work_order_id: r.try_get("work_order_id")?,
                stage_position: r.try_get("stage_position")?,
                attempts: r.try_get("attempts")?,
                lease: JobLease {
                    job_id: r.try_get("id")?,
                    owner: owner.to_string(),
                },
            })
        })
        .collect()
}

/// Extends the leases `owner` holds on jobs `ids` (the ones it is working
/// on), in statements of up to 500; answers how many it still holds.
pub async fn renew(db: &Db, owner: &str, ids: &[i64], lease_ms: i64) -> Result<u64> {
    let mut held = 0;
    for chunk in ids.chunks(500) {
        let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
        let sql = format!(
            "UPDATE jobs SET lease_until = $1 WHERE lease_owner = $2 AND state = 'queued' AND id IN ({})",
            list.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(now_ms() + lease_ms).bind(owner);
        for id in chunk {
            query = query.bind(*id);
        }
        held += query.execute(&db.pool).await?.rows_affected();
    }
    Ok(held)
}

/// Gives the job back to run again at `run_at`, noting why.
pub async fn retry_at(db: &Db, lease: &JobLease, run_at: i64, error: &str) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET lease_owner = NULL, lease_until = NULL, run_at = $1, last_error = $2, updated_at = $3 \
         WHERE id = $4 AND lease_owner = $5 AND state = 'queued'",
    )
    .bind(run_at)
    .bind(error)
    .bind(now_ms())
    .bind(lease.job_id)
    .bind(&lease.owner)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Releases every lease `owner` holds (a server shutting down), so another
/// server takes the jobs over at once instead of waiting out the lease.
pub async fn release_all(db: &Db, owner: &str) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE jobs SET lease_owner = NULL, lease_until = NULL, updated_at = $1 \
         WHERE lease_owner = $2 AND state = 'queued'",
    )
    .bind(now_ms())
    .bind(owner)
    .execute(&db.pool)
    .await?
    .rows_affected())
}

/// Ends a job whose work no longer applies (the stage moved on).
pub async fn finish(db: &Db, lease: &JobLease, note: &str) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET state = 'done', lease_until = NULL, last_error = $1, updated_at = $2 \
         WHERE id = $3 AND lease_owner = $4",
    )
    .bind(note)
    .bind(now_ms())
    .bind(lease.job_id)
    .bind(&lease.owner)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Jobs still queued (for `/metrics`-style figures and tests).
pub async fn queued_count(db: &Db) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'queued'")
            .fetch_one(&db.pool)
            .await?,
    )
}
