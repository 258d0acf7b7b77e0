//! Idempotency keys: a POST sent again with the same `Idempotency-Key`
//! (per account) gets the first answer back instead of doing the work
//! twice. The key is taken before the work (a unique row, so of two
//! concurrent requests one takes it and the other finds it in flight), the
//! answer stored after; keys are kept 24 hours.

use sqlx::Row;

use super::constraint::{Constraint, violated};
use super::error::Result;
use super::{Db, now_ms};

/// How long an answer is kept.
pub const KEPT_MS: i64 = 24 * 3600 * 1000;

/// A request still in flight after this long is taken as abandoned (its
/// server went away) and the key may be taken again.
const ABANDONED_MS: i64 = 10 * 60 * 1000;

/// What taking a key found.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// The key is this request's: do the work, then [`store`] the answer.
    Fresh,
    /// The same request was answered: its status and JSON body.
    Answered { status: u16, body: String },
    /// The key was used with another request (method, path or body).
    Mismatch,
    /// The first request with the key is still being answered.
    InFlight,
}

/// Takes `key` for `account_id`'s request `scope` (method and path) with a
/// body hashing to `body_hash`.
pub async fn take(
    db: &Db,
    account_id: i64,
    key: &str,
    scope: &str,
    body_hash: &str,
) -> Result<Taken> {
    let now = now_ms();
    // An expired key, or one abandoned in flight, is free again.
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2 \
         AND (created_at < $3 OR (status IS NULL AND created_at < $4))",
    )
    .bind(account_id)
    .bind(key)
    .bind(now - KEPT_MS)
    .bind(now - ABANDONED_MS)
    .execute(&db.pool)
    .await?;
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (account_id, key, scope, body_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(account_id)
    .bind(key)
    .bind(scope)
    .bind(body_hash)
    .bind(now)
    .execute(&db.pool)
    .await;
    match inserted {
        Ok(_) => return Ok(Taken::Fresh),
        Err(e) if violated(&e) == Some(Constraint::IdempotencyKey) => {}
        Err(e) => return Err(e.into()),
    }
    let row = sqlx::query(
        "SELECT scope, body_hash, status, response FROM idempotency_keys \
         WHERE account_id = $1 AND key = $2",
    )
    .bind(account_id)
    .bind(key)
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else {
        // Given up between the insert and the read.
        return Ok(Taken::InFlight);
    };
    let same = row.try_get::<String, _>("scope")? == scope
        && row.try_get::<String, _>("body_hash")? == body_hash;
    if !same {
        return Ok(Taken::Mismatch);
    }
    match row.try_get::<Option<i64>, _>("status")? {
        Some(status) => Ok(Taken::Answered {
            status: u16::try_from(status).unwrap_or(500),
            body: row
                .try_get::<Option<String>, _>("response")?
                .unwrap_or_default(),
        }),
        None => Ok(Taken::InFlight),
    }
}

/// Stores the answer to the request that took `key`.
pub async fn store(db: &Db, account_id: i64, key: &str, status: u16, body: &str) -> Result<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET status = $1, response = $2 WHERE account_id = $3 AND key = $4",
    )
    .bind(i64::from(status))
    .bind(body)
    .bind(account_id)
    .bind(key)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Gives `key` up (the request failed in a way worth trying again).
pub async fn give_up(db: &Db, account_id: i64, key: &str) -> Result<()> {
    sqlx::query("DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2")
        .bind(account_id)
        .bind(key)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Forgets keys older than a day (housekeeping).
pub async fn expire(db: &Db) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(now_ms() - KEPT_MS)
            .execute(&db.pool)
            .await?
            .rows_affected(),
    )
}
