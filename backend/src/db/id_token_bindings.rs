//! Bindings of GitLab CI ID-token claims to service accounts (migration
//! 0020): stored, listed, removed (each change audited in its
//! transaction), and the candidates for a token's project read with the
//! versions an API request needs. Which candidate wins is
//! `domain::id_token::choose`.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use utoipa::ToSchema;

use super::accounts::{self, Account, AccountKind};
use super::audit::{self, AuditActor, Change, snapshot};
use super::error::{Error, Result};
use super::{Db, Tx, now_ms};
use crate::domain::id_token::{Binding, ProjectPattern, RefType, check_ref_pattern};

/// A binding as stored and shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BindingInfo {
    pub id: i64,
    /// The service account a matching token acts as.
    pub service_account_id: i64,
    pub service_account: String,
    /// A full project path, or `group/*` for every project under the group
    /// (nested subgroups included); lowercased.
    pub project_path: String,
    /// `branch` or `tag`; `null` for either.
    pub ref_type: Option<String>,
    /// A glob over the `ref` claim (`*` matches anything, `/` included);
    /// `null` for every ref.
    #[serde(rename = "ref")]
    pub ref_pattern: Option<String>,
    /// Only tokens whose `ref_protected` claim is `"true"`.
    pub protected_only: bool,
    pub created_at: i64,
    pub created_by: Option<String>,
}

const COLUMNS: &str = "b.id, b.account_id AS service_account_id, a.name AS service_account, \
     b.project_path, b.ref_type, b.ref_pattern, b.protected_only, b.created_at, \
     c.name AS created_by";
const FROM: &str = "id_token_bindings b JOIN accounts a ON a.id = b.account_id \
     LEFT JOIN accounts c ON c.id = b.created_by";

fn from_row(row: &AnyRow) -> Result<BindingInfo, sqlx::Error> {
    Ok(BindingInfo {
        id: row.try_get("id")?,
        service_account_id: row.try_get("service_account_id")?,
        service_account: row.try_get("service_account")?,
        project_path: row.try_get("project_path")?,
        ref_type: row.try_get("ref_type")?,
        ref_pattern: row.try_get("ref_pattern")?,
        protected_only: row.try_get::<i64, _>("protected_only")? != 0,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
    })
}

/// What an admin asks for.
pub struct NewBinding<'a> {
    pub service_account_id: i64,
    pub project_path: &'a str,
    pub ref_type: Option<&'a str>,
    pub ref_pattern: Option<&'a str>,
    pub protected_only: bool,
}

/// Stores a binding after checking every field (422 naming it); the
/// account must be a service account.
pub async fn create(db: &Db, new: &NewBinding<'_>, who: &AuditActor) -> Result<BindingInfo> {
    let project = ProjectPattern::parse(new.project_path)
        .map_err(|m| Error::validation("project_path", m))?;
    let ref_type = new
        .ref_type
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(RefType::parse)
        .transpose()
        .map_err(|m| Error::validation("ref_type", m))?;
    let ref_pattern = new.ref_pattern.map(str::trim).filter(|s| !s.is_empty());
    if let Some(p) = ref_pattern {
        check_ref_pattern(p).map_err(|m| Error::validation("ref", m))?;
    }
    let account = accounts::get(&db.pool, new.service_account_id).await?;
    if account.is_none_or(|a| a.kind != AccountKind::ServiceAccount) {
        return Err(Error::validation(
            "service_account_id",
            format!("no service account with id {}", new.service_account_id),
        ));
    }
    let mut tx = db.begin_write().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO id_token_bindings \
         (account_id, project_path, ref_type, ref_pattern, protected_only, created_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(new.service_account_id)
    .bind(project.as_stored())
    .bind(ref_type.map(RefType::as_str))
    .bind(ref_pattern)
    .bind(i64::from(new.protected_only))
    .bind(now_ms())
    .bind(who.account_id)
    .fetch_one(&mut *tx)
    .await?;
    let info = get_in(&mut tx, id)
        .await?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("binding {id} vanished after insert")))?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "id_token_binding.create",
            target_type: "id_token_binding",
            target_id: Some(id),
            summary: format!(
                "bound GitLab CI ID tokens of {} to service account {}",
                describe(&info),
                info.service_account
            ),
            before: None,
            after: snapshot(&info),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(info)
}

/// What a binding asks for, in words: `acme/* branch release/* (protected)`.
pub fn describe(b: &BindingInfo) -> String {
    let mut out = b.project_path.clone();
    if let Some(t) = &b.ref_type {
        out.push(' ');
        out.push_str(t);
    }
    if let Some(r) = &b.ref_pattern {
        out.push(' ');
        out.push_str(r);
    }
    if b.protected_only {
        out.push_str(" (protected refs only)");
    }
    out
}

async fn get_in(tx: &mut Tx, id: i64) -> Result<Option<BindingInfo>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM {FROM} WHERE b.id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// Removes a binding; tokens matching only it are refused from the next
/// request on.
pub async fn delete(db: &Db, id: i64, who: &AuditActor) -> Result<BindingInfo> {
    let mut tx = db.begin_write().await?;
    let info = get_in(&mut tx, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no ID-token binding with id {id}")))?;
    sqlx::query("DELETE FROM id_token_bindings WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "id_token_binding.delete",
            target_type: "id_token_binding",
            target_id: Some(id),
            summary: format!(
                "removed the binding of GitLab CI ID tokens of {} to service account {}",
                describe(&info),
                info.service_account
            ),
            before: snapshot(&info),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(info)
}

/// The bindings of one service account, or of all, oldest first.
pub async fn list(pool: &AnyPool, account_id: Option<i64>) -> Result<Vec<BindingInfo>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE ($1 IS NULL OR b.account_id = $1) ORDER BY b.id"
    ))
    .bind(account_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// The bindings that could match a token of `project_path` (its own path
/// and `g/*` for each group above it), each with its account, and the
/// policy and board versions read in the same query (as
/// `db::tokens::authenticate` reads them). `None` when no binding names
/// the project or a group above it.
pub struct Candidates {
    pub bindings: Vec<(Binding, Account)>,
    pub policy_version: i64,
    pub board_version: i64,
}

pub async fn candidates(db: &Db, project_path: &str) -> Result<Option<Candidates>> {
    let patterns = ProjectPattern::candidates(project_path);
    let placeholders: Vec<String> = (1..=patterns.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT b.id AS binding_id, b.project_path, b.ref_type, b.ref_pattern, b.protected_only, \
         {accounts}, \
         (SELECT version FROM policy_state WHERE id = 1) AS policy_version, \
         (SELECT version FROM board_state WHERE id = 1) AS board_version \
         FROM id_token_bindings b JOIN accounts a ON a.id = b.account_id \
         WHERE b.project_path IN ({}) ORDER BY b.id",
        placeholders.join(", "),
        accounts = accounts::COLUMNS,
    );
    let mut query = sqlx::query(&sql);
    for p in &patterns {
        query = query.bind(p);
    }
    let rows = query.fetch_all(&db.pool).await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let policy_version = first.try_get("policy_version")?;
    let board_version = first.try_get("board_version")?;
    let mut bindings = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: i64 = row.try_get("binding_id")?;
        let project_path: String = row.try_get("project_path")?;
        let ref_type: Option<String> = row.try_get("ref_type")?;
        let rule = rule(
            id,
            &project_path,
            ref_type.as_deref(),
            row.try_get("ref_pattern")?,
            row.try_get::<i64, _>("protected_only")? != 0,
        )?;
        bindings.push((rule, accounts::from_row(row)?));
    }
    Ok(Some(Candidates {
        bindings,
        policy_version,
        board_version,
    }))
}

/// The rule `domain::id_token` matches with, from a stored row.
fn rule(
    id: i64,
    project_path: &str,
    ref_type: Option<&str>,
    ref_pattern: Option<String>,
    protected_only: bool,
) -> Result<Binding> {
    let unreadable = |m: String| {
        Error::Internal(anyhow::anyhow!(
            "stored ID-token binding {id} is unreadable: {m}"
        ))
    };
    Ok(Binding {
        id,
        project: ProjectPattern::parse(project_path).map_err(unreadable)?,
        ref_type: ref_type
            .map(RefType::parse)
            .transpose()
            .map_err(unreadable)?,
        ref_pattern,
        protected_only,
    })
}
