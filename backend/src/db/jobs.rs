//! The engine's durable jobs and their leases. A job names its kind (the
//! engine's registry knows which kinds it runs) and its subject (what it
//! works on). It is queued in the same transaction as the change that asks
//! for it; workers claim due jobs of the kinds they run with a lease
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the single writer lock on
//! SQLite), renew it while they work, and a job whose lease ran out is
//! claimed again by whichever worker comes next.
//!
//! Fencing lives here too: every write a job makes checks, inside its own
//! transaction, that the job's lease is still the writer's
//! ([`check_lease`]), so a worker that lost its lease cannot write over the
//! one that took the job over.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::constraint::{Constraint, violated};
use super::error::{Error, Result};
use super::{Db, DbKind, Tx, now_ms};

/// What a job works on. At most one job per subject is queued at a time
/// (index `jobs_one_queued_per_subject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// Stage `position` of work order `work_order_id` (its `stage_runs` row).
    StageRun { work_order_id: i64, position: i64 },
    /// A fast-path deployment (its `deployments` row).
    Deployment { id: i64 },
    /// A lane (its `lanes` row): removed once idle or asked to.
    Lane { id: i64 },
    /// A notification's delivery (its `notification_deliveries` row).
    Delivery { id: i64 },
}

impl Subject {
    /// The subject's type as `jobs.subject_kind` stores it.
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::StageRun { .. } => "stage_run",
            Subject::Deployment { .. } => "deployment",
            Subject::Lane { .. } => "lane",
            Subject::Delivery { .. } => "delivery",
        }
    }

    /// The work order the job belongs to, if any.
    pub fn work_order_id(&self) -> Option<i64> {
        match self {
            Subject::StageRun { work_order_id, .. } => Some(*work_order_id),
            Subject::Deployment { .. } | Subject::Lane { .. } | Subject::Delivery { .. } => None,
        }
    }

    /// The stage run, if the subject is one.
    pub fn stage(&self) -> Option<(i64, i64)> {
        match self {
            Subject::StageRun {
                work_order_id,
                position,
            } => Some((*work_order_id, *position)),
            Subject::Deployment { .. } | Subject::Lane { .. } | Subject::Delivery { .. } => None,
        }
    }

    fn from_row(row: &AnyRow) -> Result<Self> {
        let kind: String = row.try_get("subject_kind")?;
        match kind.as_str() {
            "stage_run" => Ok(Subject::StageRun {
                work_order_id: row
                    .try_get::<Option<i64>, _>("work_order_id")?
                    .unwrap_or_default(),
                position: row
                    .try_get::<Option<i64>, _>("stage_position")?
                    .unwrap_or_default(),
            }),
            "deployment" => Ok(Subject::Deployment {
                id: row.try_get("subject_id")?,
            }),
            "lane" => Ok(Subject::Lane {
                id: row.try_get("subject_id")?,
            }),
            "delivery" => Ok(Subject::Delivery {
                id: row.try_get("subject_id")?,
            }),
            other => Err(Error::Internal(anyhow::anyhow!(
                "job of subject type '{other}', which this version does not know"
            ))),
        }
    }
}

/// A job a worker holds: its writes are fenced on the lease, so a worker
/// that lost its lease cannot write over the one that took over.
#[derive(Debug, Clone)]
pub struct JobLease {
    pub job_id: i64,
    pub owner: String,
}

/// A claimed job.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    /// The kind's registered name (`jobs.kind`).
    pub kind: String,
    pub subject: Subject,
    /// Claims so far, this one included.
    pub attempts: i64,
    pub lease: JobLease,
}

/// Checks inside `tx` that `lease` still holds its job (and touches it):
/// [`Error::LeaseLost`] when another worker has it or it is done.
pub(crate) async fn check_lease(tx: &mut Tx, lease: &JobLease) -> Result<()> {
    let held = sqlx::query(
        "UPDATE jobs SET updated_at = $1 WHERE id = $2 AND lease_owner = $3 AND state = 'queued'",
    )
    .bind(now_ms())
    .bind(lease.job_id)
    .bind(&lease.owner)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if held == 0 {
        return Err(Error::LeaseLost {
            job_id: lease.job_id,
        });
    }
    Ok(())
}

/// Ends the job of `lease` inside `tx`, the transaction of the write that
/// closes its work (checked with [`check_lease`] before). The owner stays
/// on the row: who finished it.
pub(crate) async fn close(tx: &mut Tx, lease: &JobLease, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET state = 'done', lease_until = NULL, updated_at = $1 WHERE id = $2",
    )
    .bind(now)
    .bind(lease.job_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Ends the queued job of `subject` inside `tx` (its work was cancelled),
/// noting why. The worker running it loses its lease: its next renewal
/// or write finds the job done, and it stops.
pub(crate) async fn cancel(tx: &mut Tx, subject: Subject, note: &str, now: i64) -> Result<()> {
    match subject {
        Subject::StageRun {
            work_order_id,
            position,
        } => {
            sqlx::query(
                "UPDATE jobs SET state = 'done', lease_until = NULL, last_error = $1, updated_at = $2 \
                 WHERE subject_kind = 'stage_run' AND work_order_id = $3 AND stage_position = $4 AND state = 'queued'",
            )
            .bind(note)
            .bind(now)
            .bind(work_order_id)
            .bind(position)
            .execute(&mut **tx)
            .await?;
        }
        Subject::Deployment { id } | Subject::Lane { id } | Subject::Delivery { id } => {
            sqlx::query(
                "UPDATE jobs SET state = 'done', lease_until = NULL, last_error = $1, updated_at = $2 \
                 WHERE subject_kind = $3 AND subject_id = $4 AND state = 'queued'",
            )
            .bind(note)
            .bind(now)
            .bind(subject.kind())
            .bind(id)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// Queues job `kind` for `subject` inside the caller's transaction. A
/// subject with a queued job already is a conflict.
pub(crate) async fn enqueue(tx: &mut Tx, kind: &str, subject: Subject, now: i64) -> Result<i64> {
    let inserted = match subject {
        Subject::StageRun {
            work_order_id,
            position,
        } => {
            sqlx::query_scalar::<_, i64>(
                "INSERT INTO jobs (kind, subject_kind, subject_id, work_order_id, stage_position, state, attempts, \
                 run_at, created_at, updated_at) \
                 SELECT $1, $2, s.id, s.work_order_id, s.position, 'queued', 0, $3, $3, $3 \
                 FROM stage_runs s WHERE s.work_order_id = $4 AND s.position = $5 RETURNING id",
            )
            .bind(kind)
            .bind(subject.kind())
            .bind(now)
            .bind(work_order_id)
            .bind(position)
            .fetch_one(&mut **tx)
            .await
        }
        Subject::Deployment { id } | Subject::Lane { id } | Subject::Delivery { id } => {
            sqlx::query_scalar::<_, i64>(
                "INSERT INTO jobs (kind, subject_kind, subject_id, state, attempts, run_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, 'queued', 0, $4, $4, $4) RETURNING id",
            )
            .bind(kind)
            .bind(subject.kind())
            .bind(id)
            .bind(now)
            .fetch_one(&mut **tx)
            .await
        }
    };
    inserted.map_err(|e| {
        if violated(&e) == Some(Constraint::OneQueuedJobPerSubject) {
            match subject {
                Subject::StageRun { position, .. } => {
                    Error::Conflict(format!("stage {position} is already being worked on"))
                }
                Subject::Deployment { id } => {
                    Error::Conflict(format!("deployment {id} is already being worked on"))
                }
                Subject::Lane { id } => {
                    Error::Conflict(format!("lane {id} is already being worked on"))
                }
                Subject::Delivery { id } => {
                    Error::Conflict(format!("delivery {id} is already being sent"))
                }
            }
        } else {
            e.into()
        }
    })
}

/// Queues job `kind` for `subject` (a deployment or a lane) to run at
/// `run_at` inside the caller's transaction, unless one is queued for it
/// already.
pub(crate) async fn enqueue_once(
    tx: &mut Tx,
    kind: &str,
    subject: Subject,
    run_at: i64,
) -> Result<()> {
    let (Subject::Deployment { id } | Subject::Lane { id } | Subject::Delivery { id }) = subject
    else {
        return Err(Error::Internal(anyhow::anyhow!(
            "a {} job is queued with its stage change",
            subject.kind()
        )));
    };
    sqlx::query(
        "INSERT INTO jobs (kind, subject_kind, subject_id, state, attempts, run_at, created_at, updated_at) \
         VALUES ($1, $2, $3, 'queued', 0, $4, $5, $5) ON CONFLICT DO NOTHING",
    )
    .bind(kind)
    .bind(subject.kind())
    .bind(id)
    .bind(run_at)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Claims up to `limit` due jobs of the given `kinds` for `owner` with a
/// lease of `lease_ms`. Jobs of other kinds (a newer server's) are left for
/// a worker that runs them.
pub async fn claim(
    db: &Db,
    owner: &str,
    kinds: &[&str],
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<Job>> {
    if limit <= 0 || kinds.is_empty() {
        return Ok(Vec::new());
    }
    let now = now_ms();
    let lock = match db.kind {
        DbKind::Sqlite => "",
        DbKind::Postgres => "FOR UPDATE SKIP LOCKED",
    };
    let kind_list: Vec<String> = (0..kinds.len()).map(|i| format!("${}", i + 5)).collect();
    let sql = format!(
        "UPDATE jobs SET lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3 \
         WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND run_at <= $3 \
         AND (lease_until IS NULL OR lease_until < $3) AND kind IN ({}) ORDER BY run_at, id LIMIT $4 {lock}) \
         RETURNING id, kind, subject_kind, subject_id, work_order_id, stage_position, attempts",
        kind_list.join(", ")
    );
    let mut tx = db.begin_write().await?;
    let mut query = sqlx::query(&sql)
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .bind(limit);
    for kind in kinds {
        query = query.bind(*kind);
    }
    let rows = query.fetch_all(&mut *tx).await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            let id: i64 = r.try_get("id")?;
            Ok(Job {
                id,
                kind: r.try_get("kind")?,
                subject: Subject::from_row(r)?,
                attempts: r.try_get("attempts")?,
                lease: JobLease {
                    job_id: id,
                    owner: owner.to_string(),
                },
            })
        })
        .collect()
}

/// Extends the leases `owner` holds on jobs `ids` (the ones it is working
/// on), in statements of up to 500; answers how many it still holds.
pub async fn renew(db: &Db, owner: &str, ids: &[i64], lease_ms: i64) -> Result<Vec<i64>> {
    let mut held = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
        let sql = format!(
            "UPDATE jobs SET lease_until = $1 WHERE lease_owner = $2 AND state = 'queued' AND id IN ({}) RETURNING id",
            list.join(", ")
        );
        let mut query = sqlx::query_scalar::<_, i64>(&sql)
            .bind(now_ms() + lease_ms)
            .bind(owner);
        for id in chunk {
            query = query.bind(*id);
        }
        held.extend(query.fetch_all(&db.pool).await?);
    }
    Ok(held)
}

/// Gives the job back to run again at `run_at`, noting why.
pub async fn retry_at(db: &Db, lease: &JobLease, run_at: i64, error: &str) -> Result<()> {
    give_back(db, lease, run_at, error, "attempts", None).await
}

/// Gives the job back to run at `run_at` with its attempts counted afresh
/// (it waits for a time, it did not fail), noting what it waits for.
pub async fn later(db: &Db, lease: &JobLease, run_at: i64, note: &str) -> Result<()> {
    give_back(db, lease, run_at, note, "0", None).await
}

/// Gives the job back held by line stop `stop`: lifting the stop runs it
/// at once; until then it looks again at `run_at`.
pub async fn hold(db: &Db, lease: &JobLease, stop: i64, run_at: i64, note: &str) -> Result<()> {
    give_back(db, lease, run_at, note, "0", Some(stop)).await
}

/// Releases the job of `lease` to run at `run_at`, its attempts set to
/// `attempts` (SQL: kept, or counted afresh), held by a line stop or not.
async fn give_back(
    db: &Db,
    lease: &JobLease,
    run_at: i64,
    note: &str,
    attempts: &'static str,
    held_by: Option<i64>,
) -> Result<()> {
    sqlx::query(&format!(
        "UPDATE jobs SET lease_owner = NULL, lease_until = NULL, run_at = $1, attempts = {attempts}, \
         last_error = $2, updated_at = $3, held_by = $6 WHERE id = $4 AND lease_owner = $5 AND state = 'queued'"
    ))
    .bind(run_at)
    .bind(note)
    .bind(now_ms())
    .bind(lease.job_id)
    .bind(&lease.owner)
    .bind(held_by)
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

/// Ends a job still queued and held by `lease` (its work no longer
/// applies, or its kind's last write did not close it), keeping `note`. A
/// job already closed by that write is left as it is.
pub async fn finish(db: &Db, lease: &JobLease, note: &str) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET state = 'done', lease_until = NULL, last_error = $1, updated_at = $2 \
         WHERE id = $3 AND lease_owner = $4 AND state = 'queued'",
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
