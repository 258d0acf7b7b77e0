//! What a verification measured: one row per measurement of a metric gate
//! and per attempt of a smoke check, written by the job fenced on its
//! lease and at most once (the row's key is what is verified — a stage run
//! and its canary step, or a fast-path deployment — the check and the
//! measurement's number), so a job that resumes after a restart counts
//! nothing twice.

use sqlx::AnyPool;

use super::error::Result;
use super::jobs::{JobLease, check_lease};
use super::work_order_views::VerifyResult;
use super::{Db, Tx};
use crate::domain::verify::Verdict;

/// Which check of a plan a result is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Metric gate `n` (0-based).
    Gate(usize),
    /// Smoke check `n` (0-based).
    Smoke(usize),
}

impl Check {
    fn kind(self) -> &'static str {
        match self {
            Check::Gate(_) => "gate",
            Check::Smoke(_) => "smoke",
        }
    }

    fn index(self) -> i64 {
        match self {
            Check::Gate(i) | Check::Smoke(i) => i as i64,
        }
    }

    /// Whether `result` is one of this check's.
    pub fn owns(self, result: &VerifyResult) -> bool {
        result.check_kind == self.kind() && result.check_index == self.index()
    }
}

/// What is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Of {
    /// Stage `position` of work order `order_id` at canary step `step` (0:
    /// after the rollout).
    Stage {
        order_id: i64,
        position: i64,
        step: i64,
    },
    /// Fast-path deployment `id`.
    Deployment(i64),
}

impl Of {
    /// The same stage at canary step `step`; a deployment has no steps.
    pub fn at_step(self, step: i64) -> Of {
        match self {
            Of::Stage {
                order_id, position, ..
            } => Of::Stage {
                order_id,
                position,
                step,
            },
            other => other,
        }
    }
}

/// One result to record.
pub struct NewResult<'a> {
    pub of: Of,
    pub check: Check,
    /// The measurement or attempt (1-based).
    pub seq: i64,
    pub at: i64,
    pub verdict: Verdict,
    pub value: Option<f64>,
    pub detail: &'a str,
    /// The filled query or URL.
    pub asked: &'a str,
}

fn verdict_str(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Inconclusive => "inconclusive",
    }
}

/// Records `result` while `lease` holds; `false` when a result with its
/// number was recorded already (by this job before a restart), in which
/// case nothing is written.
pub async fn record(db: &Db, lease: &JobLease, result: &NewResult<'_>) -> Result<bool> {
    // A missing value is never bound as NULL: sqlx 0.8's Any driver sends
    // a NULL f64 to PostgreSQL as a `real`, and the statement it prepares
    // then refuses every later f64 on that connection ("incorrect binary
    // data format in bind parameter").
    let value = result.value.filter(|v| v.is_finite());
    let mut tx: Tx = db.begin_write().await?;
    check_lease(&mut tx, lease).await?;
    // What is verified comes first; the rest of the row follows it.
    let query = match result.of {
        Of::Stage {
            order_id,
            position,
            step,
        } => sqlx::query(
            "INSERT INTO verify_results (work_order_id, position, step, source, source_index, seq, at, verdict, value, detail, asked) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $12 THEN $9 END, $10, $11) \
             ON CONFLICT (work_order_id, position, step, source, source_index, seq) DO NOTHING",
        )
        .bind(order_id)
        .bind(position)
        .bind(step),
        Of::Deployment(id) => sqlx::query(
            "INSERT INTO deployment_checks (deployment_id, source, source_index, seq, at, verdict, value, detail, asked) \
             VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $10 THEN $7 END, $8, $9) \
             ON CONFLICT (deployment_id, source, source_index, seq) DO NOTHING",
        )
        .bind(id),
    };
    let inserted = query
        .bind(result.check.kind())
        .bind(result.check.index())
        .bind(result.seq)
        .bind(result.at)
        .bind(verdict_str(result.verdict))
        .bind(value.unwrap_or(0.0))
        .bind(result.detail)
        .bind(result.asked)
        .bind(value.is_some())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(inserted == 1)
}

/// The results of `of`, in the order taken.
pub async fn results(pool: &AnyPool, of: Of) -> Result<Vec<VerifyResult>> {
    type Row = (
        i64,
        String,
        i64,
        i64,
        i64,
        String,
        Option<f64>,
        String,
        String,
    );
    let (query, position) = match of {
        Of::Stage {
            order_id,
            position,
            step,
        } => (
            sqlx::query_as(
                "SELECT step, source, source_index, seq, at, verdict, value, detail, asked FROM verify_results \
                 WHERE work_order_id = $1 AND position = $2 AND step = $3 ORDER BY id",
            )
            .bind(order_id)
            .bind(position)
            .bind(step),
            position,
        ),
        Of::Deployment(id) => (
            sqlx::query_as(
                "SELECT CAST(0 AS BIGINT) AS step, source, source_index, seq, at, verdict, value, detail, asked \
                 FROM deployment_checks WHERE deployment_id = $1 ORDER BY id",
            )
            .bind(id),
            0,
        ),
    };
    let rows: Vec<Row> = query.fetch_all(pool).await?;
    Ok(rows
        .into_iter()
        .map(
            |(step, check_kind, check_index, seq, at, verdict, value, detail, asked)| {
                VerifyResult {
                    position,
                    step,
                    check_kind,
                    check_index,
                    seq,
                    at,
                    verdict,
                    value,
                    detail,
                    asked,
                }
            },
        )
        .collect())
}

/// `result`'s verdict.
pub fn verdict_of(result: &VerifyResult) -> Verdict {
    match result.verdict.as_str() {
        "pass" => Verdict::Pass,
        "fail" => Verdict::Fail,
        _ => Verdict::Inconclusive,
    }
}
