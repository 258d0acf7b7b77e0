//! API tokens. A token is `rwy_` followed by 40 random letters and digits;
//! the prefix lets secret scanners spot a leaked one. Only its SHA-256 is
//! stored; the token itself is shown once, when it is created.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use utoipa::ToSchema;

use super::accounts::{self, Account};
use super::audit::{self, AuditActor, Change, snapshot};
use super::error::{Error, Result};
use super::{Db, Tx, now_ms};
use crate::domain::text::check_single_line;
use crate::secret::{Secret, random_alphanumeric, sha256_hex};

/// What every token starts with.
pub const TOKEN_PREFIX: &str = "rwy_";
/// `last_used_at` is written at most this often per token.
const TOUCH_EVERY_MS: i64 = 60 * 1000;
/// Longest accepted expiry.
pub const MAX_EXPIRY_DAYS: u32 = 3650;

/// A token's metadata; never its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenInfo {
    pub id: i64,
    pub account_id: i64,
    pub account: String,
    pub name: String,
    /// The first characters of the token, to recognise it by.
    pub prefix: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl TokenInfo {
    /// `active`, `expired` or `revoked`.
    pub fn state(&self, now: i64) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        }
    }
}

const COLUMNS: &str = "t.id, t.account_id, a.name AS account, t.name, t.prefix, t.created_at, \
                       t.expires_at, t.last_used_at, t.revoked_at";

fn from_row(row: &AnyRow) -> Result<TokenInfo, sqlx::Error> {
    Ok(TokenInfo {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        account: row.try_get("account")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

/// Creates a token for an account; returns its metadata and the secret,
/// which the caller shows once.
pub async fn create(
    db: &Db,
    account_id: i64,
    name: &str,
    expires_in_days: Option<u32>,
    who: &AuditActor,
) -> Result<(TokenInfo, Secret<String>)> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::validation(
            "name",
            "token name must be 1 to 100 characters",
        ));
    }
    check_single_line("token name", name).map_err(|m| Error::validation("name", m))?;
    if let Some(days) = expires_in_days
        && !(1..=MAX_EXPIRY_DAYS).contains(&days)
    {
        return Err(Error::validation(
            "expires_in_days",
            format!("expiry must be between 1 and {MAX_EXPIRY_DAYS} days"),
        ));
    }
    let secret = format!("{TOKEN_PREFIX}{}", random_alphanumeric(40));
    let prefix: String = secret.chars().take(TOKEN_PREFIX.len() + 6).collect();
    let now = now_ms();
    let expires_at = expires_in_days.map(|d| now + i64::from(d) * 24 * 3600 * 1000);
    let mut tx = db.begin_write().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO api_tokens (account_id, name, prefix, token_hash, created_at, created_by, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(account_id)
    .bind(name)
    .bind(&prefix)
    .bind(sha256_hex(&secret))
    .bind(now)
    .bind(who.account_id)
    .bind(expires_at)
    .fetch_one(&mut *tx)
    .await?;
    let info = get_in(&mut tx, id)
        .await?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("token {id} vanished after insert")))?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "token.create",
            target_type: "token",
            target_id: Some(id),
            summary: format!(
                "created token '{}' ({}…) for {}",
                info.name, info.prefix, info.account
            ),
            before: None,
            after: snapshot(&info),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((info, Secret::new(secret)))
}

async fn get_in(tx: &mut Tx, id: i64) -> Result<Option<TokenInfo>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM api_tokens t JOIN accounts a ON a.id = t.account_id WHERE t.id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn get(pool: &AnyPool, id: i64) -> Result<Option<TokenInfo>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM api_tokens t JOIN accounts a ON a.id = t.account_id WHERE t.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// Tokens of one account, or of everyone, newest first.
pub async fn list(pool: &AnyPool, account_id: Option<i64>) -> Result<Vec<TokenInfo>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM api_tokens t JOIN accounts a ON a.id = t.account_id \
         WHERE ($1 IS NULL OR t.account_id = $1) ORDER BY t.id DESC"
    ))
    .bind(account_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// Revokes a token; it is refused from the next request on. Revoking a
/// revoked token changes nothing and records nothing.
pub async fn revoke(db: &Db, id: i64, who: &AuditActor) -> Result<TokenInfo> {
    let mut tx = db.begin_write().await?;
    let changed =
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    let info = get_in(&mut tx, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no token with id {id}")))?;
    if changed > 0 {
        audit::record(
            &mut tx,
            who,
            Change {
                action: "token.revoke",
                target_type: "token",
                target_id: Some(id),
                summary: format!(
                    "revoked token '{}' ({}…) of {}",
                    info.name, info.prefix, info.account
                ),
                before: None,
                after: snapshot(&info),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(info)
}

/// Why a presented token was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenRefusal {
    Unknown,
    Revoked,
    Expired,
    AccountDisabled,
}

/// The account behind a presented token, checking revocation, expiry and
/// the account's state on every call. Records the last use.
/// On success also the policy version, read in the same query.
/// A live token's account, with the versions read in the same query.
pub struct TokenAccount {
    pub account: Account,
    /// The policy version (`policy_state`).
    pub policy_version: i64,
    /// The board version (`board_state`): cached reads are current while
    /// it holds (`db::board::VersionedCache`).
    pub board_version: i64,
}

pub async fn authenticate(db: &Db, presented: &str) -> Result<Result<TokenAccount, TokenRefusal>> {
    if !presented.starts_with(TOKEN_PREFIX) {
        return Ok(Err(TokenRefusal::Unknown));
    }
    let row = sqlx::query(&format!(
        "SELECT t.id AS token_id, t.expires_at, t.revoked_at, t.last_used_at, \
         (SELECT version FROM policy_state WHERE id = 1) AS policy_version, \
         (SELECT version FROM board_state WHERE id = 1) AS board_version, {} \
         FROM api_tokens t JOIN accounts a ON a.id = t.account_id WHERE t.token_hash = $1",
        accounts::COLUMNS
    ))
    .bind(sha256_hex(presented))
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else {
        return Ok(Err(TokenRefusal::Unknown));
    };
    let now = now_ms();
    let expires_at: Option<i64> = row.try_get("expires_at")?;
    let revoked_at: Option<i64> = row.try_get("revoked_at")?;
    let account = accounts::from_row(&row)?;
    if revoked_at.is_some() {
        return Ok(Err(TokenRefusal::Revoked));
    }
    if expires_at.is_some_and(|e| e <= now) {
        return Ok(Err(TokenRefusal::Expired));
    }
    if account.is_disabled() {
        return Ok(Err(TokenRefusal::AccountDisabled));
    }
    let last_used_at: Option<i64> = row.try_get("last_used_at")?;
    if last_used_at.is_none_or(|t| now - t > TOUCH_EVERY_MS) {
        let token_id: i64 = row.try_get("token_id")?;
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(token_id)
            .execute(&db.pool)
            .await?;
    }
    Ok(Ok(TokenAccount {
        account,
        policy_version: row.try_get("policy_version")?,
        board_version: row.try_get("board_version")?,
    }))
}
