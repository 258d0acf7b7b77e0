//! Browser sessions. The cookie carries a random token; only its SHA-256 is
//! stored, so a database dump does not hand out sessions. Logging out or
//! disabling the account deletes the row, which ends the session at once.

use sqlx::{AnyPool, Row};

use super::accounts::{self, Account};
use super::error::Result;
use super::{Db, now_ms};
use crate::secret::{random_alphanumeric, sha256_hex};

/// How long a session lasts at most, whatever its activity.
const ABSOLUTE_LIFETIME_MS: i64 = 7 * 24 * 3600 * 1000;
/// `last_seen_at` is refreshed at most this often, to keep reads read-only.
const TOUCH_EVERY_MS: i64 = 60 * 1000;

/// A live session and whose it is.
pub struct SessionAccount {
    pub session_id: i64,
    pub account: Account,
    /// The policy version, read in the same query.
    pub policy_version: i64,
    /// The inbox version (`inbox_state`), read in the same query: it
    /// changes whenever any account's "waiting for my approval" may have.
    pub inbox_version: i64,
    /// The dashboard's version (`board_state`), read in the same query: it
    /// changes whenever anything the dashboard reads may have.
    pub board_version: i64,
}

/// Creates a session and returns the cookie token (shown only to the browser).
pub async fn create(
    db: &Db,
    account_id: i64,
    idle_ms: i64,
    ip: &str,
    user_agent: &str,
) -> Result<String> {
    let token = random_alphanumeric(43);
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    // Housekeeping: expired sessions of anyone go with each new login.
    sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO sessions (token_hash, account_id, created_at, last_seen_at, expires_at, ip, user_agent) \
         VALUES ($1, $2, $3, $3, $4, $5, $6)",
    )
    .bind(sha256_hex(&token))
    .bind(account_id)
    .bind(now)
    .bind(now + idle_ms.min(ABSOLUTE_LIFETIME_MS))
    .bind(ip)
    .bind(user_agent.chars().take(300).collect::<String>())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(token)
}

/// The account behind a session token, if the session is live and the
/// account enabled. Slides the idle expiry forward.
pub async fn authenticate(db: &Db, token: &str, idle_ms: i64) -> Result<Option<SessionAccount>> {
    let now = now_ms();
    let row = sqlx::query(&format!(
        "SELECT s.id AS session_id, s.created_at AS session_created_at, s.last_seen_at, \
         (SELECT version FROM policy_state WHERE id = 1) AS policy_version, \
         (SELECT version FROM inbox_state WHERE id = 1) AS inbox_version, \
         (SELECT version FROM board_state WHERE id = 1) AS board_version, {} \
         FROM sessions s JOIN accounts a ON a.id = s.account_id \
         WHERE s.token_hash = $1 AND s.expires_at > $2 AND a.disabled_at IS NULL",
        accounts::COLUMNS
    ))
    .bind(sha256_hex(token))
    .bind(now)
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let session_id: i64 = row.try_get("session_id")?;
    let created_at: i64 = row.try_get("session_created_at")?;
    let last_seen_at: i64 = row.try_get("last_seen_at")?;
    if now - last_seen_at > TOUCH_EVERY_MS {
        let expires = (now + idle_ms).min(created_at + ABSOLUTE_LIFETIME_MS);
        sqlx::query("UPDATE sessions SET last_seen_at = $1, expires_at = $2 WHERE id = $3")
            .bind(now)
            .bind(expires)
            .bind(session_id)
            .execute(&db.pool)
            .await?;
    }
    Ok(Some(SessionAccount {
        session_id,
        policy_version: row.try_get("policy_version")?,
        inbox_version: row.try_get("inbox_version")?,
        board_version: row.try_get("board_version")?,
        account: accounts::from_row(&row)?,
    }))
}

/// The account behind session `session_id` while the session is live and
/// the account enabled, without sliding its expiry: for re-checking a
/// long-lived answer (a followed log), which is not activity.
pub async fn live_account(pool: &AnyPool, session_id: i64) -> Result<Option<SessionAccount>> {
    let row = sqlx::query(&format!(
        "SELECT s.id AS session_id, (SELECT version FROM policy_state WHERE id = 1) AS policy_version, \
         (SELECT version FROM inbox_state WHERE id = 1) AS inbox_version, \
         (SELECT version FROM board_state WHERE id = 1) AS board_version, {} \
         FROM sessions s JOIN accounts a ON a.id = s.account_id \
         WHERE s.id = $1 AND s.expires_at > $2 AND a.disabled_at IS NULL",
        accounts::COLUMNS
    ))
    .bind(session_id)
    .bind(now_ms())
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(SessionAccount {
        session_id,
        policy_version: row.try_get("policy_version")?,
        inbox_version: row.try_get("inbox_version")?,
        board_version: row.try_get("board_version")?,
        account: accounts::from_row(&row)?,
    }))
}

/// Ends one session (logout).
pub async fn delete(pool: &AnyPool, session_id: i64) -> Result<()> {
    sqlx::query("DELETE FROM sessions WHERE id = $1")
        .bind(session_id)
        .execute(pool)
        .await?;
    Ok(())
}
