//! Accounts: people who log in with a password and service accounts that
//! call the API with tokens. One table, one namespace of names, so a member
//! of a node is named the same way whatever its kind.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use utoipa::ToSchema;

use super::audit::{self, AuditActor, Change, snapshot};
use super::constraint::{Constraint, violated};
use super::error::{Error, Result};
use super::tree::Node;
use super::{Db, Tx, now_ms};
use crate::domain::text::{check_free_form, check_single_line};
use crate::domain::tree::Role;

/// Longest accepted account name.
pub const MAX_NAME_LEN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    User,
    ServiceAccount,
}

impl AccountKind {
    fn as_db(self) -> &'static str {
        match self {
            AccountKind::User => "user",
            AccountKind::ServiceAccount => "service",
        }
    }
}

/// An account as stored, without its password hash.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Account {
    pub id: i64,
    pub kind: AccountKind,
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub is_admin: bool,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds; `null` while the account is active.
    pub disabled_at: Option<i64>,
}

impl Account {
    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }
}

pub(crate) const COLUMNS: &str =
    "a.id, a.kind, a.name, a.display_name, a.description, a.is_admin, a.created_at, a.disabled_at";

pub(crate) fn from_row(row: &AnyRow) -> Result<Account, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    Ok(Account {
        id: row.try_get("id")?,
        kind: if kind == "service" {
            AccountKind::ServiceAccount
        } else {
            AccountKind::User
        },
        name: row.try_get("name")?,
        display_name: row.try_get("display_name")?,
        description: row.try_get("description")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
        created_at: row.try_get("created_at")?,
        disabled_at: row.try_get("disabled_at")?,
    })
}

/// Checks an account name: 1–64 of lowercase letters, digits, `-`, `_`, `.`,
/// starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::validation("name", "name must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::validation(
            "name",
            format!("name must be at most {MAX_NAME_LEN} characters"),
        ));
    }
    let ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !ok {
        return Err(Error::validation(
            "name",
            format!(
                "name '{name}' may hold only lowercase letters, digits, '-', '_' and '.', starting with a letter or digit"
            ),
        ));
    }
    Ok(())
}

/// What is needed to create an account.
pub struct NewAccount<'a> {
    pub kind: AccountKind,
    pub name: &'a str,
    pub display_name: &'a str,
    pub description: &'a str,
    pub password_hash: Option<&'a str>,
    pub is_admin: bool,
}

/// Inserts an account; a taken name is a 409.
pub async fn insert(tx: &mut Tx, new: &NewAccount<'_>, who: &AuditActor) -> Result<Account> {
    validate_name(new.name)?;
    if new.display_name.chars().count() > 200 {
        return Err(Error::validation(
            "display_name",
            "display name must be at most 200 characters",
        ));
    }
    if new.description.chars().count() > 1000 {
        return Err(Error::validation(
            "description",
            "description must be at most 1000 characters",
        ));
    }
    check_single_line("display name", new.display_name)
        .map_err(|m| Error::validation("display_name", m))?;
    check_free_form("description", new.description)
        .map_err(|m| Error::validation("description", m))?;
    let now = now_ms();
    let display_name = if new.display_name.trim().is_empty() {
        new.name
    } else {
        new.display_name.trim()
    };
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO accounts (kind, name, display_name, description, password_hash, is_admin, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
    )
    .bind(new.kind.as_db())
    .bind(new.name)
    .bind(display_name)
    .bind(new.description)
    .bind(new.password_hash)
    .bind(i64::from(new.is_admin))
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| {
        if violated(&e) == Some(Constraint::AccountName) {
            Error::Conflict(format!(
                "an account named '{}' already exists",
                new.name
            ))
        } else {
            e.into()
        }
    })?;
    if new.is_admin {
        super::tree::bump_policy_version(tx).await?;
    }
    let account = Account {
        id,
        kind: new.kind,
        name: new.name.to_string(),
        display_name: display_name.to_string(),
        description: new.description.to_string(),
        is_admin: new.is_admin,
        created_at: now,
        disabled_at: None,
    };
    audit::record(
        tx,
        who,
        Change {
            action: "account.create",
            target_type: "account",
            target_id: Some(id),
            summary: format!(
                "created {} {}{}",
                match new.kind {
                    AccountKind::User => "user",
                    AccountKind::ServiceAccount => "service account",
                },
                new.name,
                if new.is_admin { " (administrator)" } else { "" }
            ),
            before: None,
            after: snapshot(&account),
        },
    )
    .await?;
    Ok(account)
}

/// Creates a service account and, when `binding` names a node, its
/// membership there with that role, in one transaction with both audit
/// rows: a binding that fails leaves no account behind.
pub async fn create_service_account(
    db: &Db,
    name: &str,
    description: &str,
    binding: Option<(&Node, Role)>,
    who: &AuditActor,
) -> Result<Account> {
    let mut tx = db.begin_write().await?;
    let account = insert(
        &mut tx,
        &NewAccount {
            kind: AccountKind::ServiceAccount,
            name,
            display_name: "",
            description,
            password_hash: None,
            is_admin: false,
        },
        who,
    )
    .await?;
    if let Some((node, role)) = binding {
        super::tree::put_member_in(&mut tx, node, &account, role, who).await?;
    }
    tx.commit().await?;
    Ok(account)
}

pub async fn get(pool: &AnyPool, id: i64) -> Result<Option<Account>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM accounts a WHERE a.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// An account of the given kind by id, or a 404 naming the kind.
pub async fn get_of_kind(pool: &AnyPool, id: i64, kind: AccountKind) -> Result<Account> {
    get(pool, id)
        .await?
        .filter(|a| a.kind == kind)
        .ok_or_else(|| {
            Error::NotFound(match kind {
                AccountKind::User => format!("no user with id {id}"),
                AccountKind::ServiceAccount => format!("no service account with id {id}"),
            })
        })
}

pub async fn find_by_name(pool: &AnyPool, name: &str) -> Result<Option<Account>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM accounts a WHERE a.name = $1"
    ))
    .bind(name)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// The account and its password hash, for login.
pub async fn find_for_login(pool: &AnyPool, name: &str) -> Result<Option<(Account, String)>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS}, a.password_hash FROM accounts a \
         WHERE a.name = $1 AND a.kind = 'user' AND a.password_hash IS NOT NULL"
    ))
    .bind(name)
    .fetch_optional(pool)
    .await?;
    match row {
        None => Ok(None),
        Some(row) => Ok(Some((from_row(&row)?, row.try_get("password_hash")?))),
    }
}

/// Whether the account has a password (people who only sign in through
/// single sign-on have none).
pub async fn has_password(pool: &AnyPool, id: i64) -> Result<bool> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT id FROM accounts WHERE id = $1 AND password_hash IS NOT NULL")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(found.is_some())
}

/// Every account of a kind, by name.
pub async fn list(pool: &AnyPool, kind: AccountKind) -> Result<Vec<Account>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM accounts a WHERE a.kind = $1 ORDER BY a.name"
    ))
    .bind(kind.as_db())
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// Disables or re-enables an account. Disabling ends its sessions in the
/// same transaction, so it is logged out at once.
pub async fn set_disabled(db: &Db, id: i64, disabled: bool, who: &AuditActor) -> Result<()> {
    let mut tx = db.begin_write().await?;
    let now = now_ms();
    let before = get_in(&mut tx, id).await?;
    let changed =
        sqlx::query("UPDATE accounts SET disabled_at = $1, updated_at = $2 WHERE id = $3")
            .bind(disabled.then_some(now))
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    if changed == 0 {
        return Err(Error::NotFound(format!("no account with id {id}")));
    }
    if disabled {
        sqlx::query("DELETE FROM sessions WHERE account_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    // Who approves where counts enabled owners only: what is worked out
    // from the grants and cached per policy version changes with it.
    super::tree::bump_policy_version(&mut tx).await?;
    let after = get_in(&mut tx, id).await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: if disabled {
                "account.disable"
            } else {
                "account.enable"
            },
            target_type: "account",
            target_id: Some(id),
            summary: format!(
                "{} {}",
                if disabled { "disabled" } else { "enabled" },
                after.as_ref().map(|a| a.name.as_str()).unwrap_or("?")
            ),
            before: before.as_ref().and_then(snapshot),
            after: after.as_ref().and_then(snapshot),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn get_in(tx: &mut Tx, id: i64) -> Result<Option<Account>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM accounts a WHERE a.id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// Replaces a user's password hash and ends every session of the user.
pub async fn set_password_hash(
    db: &Db,
    id: i64,
    password_hash: &str,
    who: &AuditActor,
) -> Result<()> {
    let mut tx = db.begin_write().await?;
    let changed = sqlx::query(
        "UPDATE accounts SET password_hash = $1, updated_at = $2 WHERE id = $3 AND kind = 'user'",
    )
    .bind(password_hash)
    .bind(now_ms())
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if changed == 0 {
        return Err(Error::NotFound(format!("no user with id {id}")));
    }
    sqlx::query("DELETE FROM sessions WHERE account_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let name = get_in(&mut tx, id)
        .await?
        .map(|a| a.name)
        .unwrap_or_default();
    audit::record(
        &mut tx,
        who,
        Change {
            action: "account.set_password",
            target_type: "account",
            target_id: Some(id),
            summary: if who.account_id == Some(id) {
                format!("{name} changed their password")
            } else {
                format!("reset the password of {name}")
            },
            before: None,
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// How many accounts exist (zero on a fresh database).
pub async fn count(pool: &AnyPool) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM accounts")
        .fetch_one(pool)
        .await?)
}
