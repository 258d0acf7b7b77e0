//! The audit log: every state change and every admin change, append-only.
//! Each row carries the hash of the previous row and the SHA-256 of its own
//! content chained to it, so editing, deleting or reordering rows breaks the
//! chain at the first row touched; [`verify`] finds it.
//!
//! Rows are appended inside the transaction of the change they describe.
//! The single-row `audit_head` is updated first, which serialises appends
//! on PostgreSQL (row lock) as `BEGIN IMMEDIATE` does on SQLite.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use utoipa::ToSchema;

use super::{Tx, now_ms};
use crate::error::Result;
use crate::secret::sha256_hex;

/// Who made a change and from where.
#[derive(Debug, Clone)]
pub struct AuditActor {
    pub account_id: Option<i64>,
    pub name: String,
    /// Source address; `local` for the command line.
    pub ip: String,
}

impl AuditActor {
    /// A signed-in account acting from `ip`.
    pub fn of(account: &crate::db::accounts::Account, ip: impl ToString) -> Self {
        Self {
            account_id: Some(account.id),
            name: account.name.clone(),
            ip: ip.to_string(),
        }
    }

    /// The command line, run by whoever has the database.
    pub fn cli() -> Self {
        Self {
            account_id: None,
            name: "cli".into(),
            ip: "local".into(),
        }
    }
    /// Rollway itself (first start, the engine).
    pub fn system() -> Self {
        Self {
            account_id: None,
            name: "system".into(),
            ip: "local".into(),
        }
    }
}

/// What changed.
pub struct Change<'a> {
    /// Dotted verb, e.g. `node.create`, `token.revoke`.
    pub action: &'a str,
    /// The kind of thing changed, e.g. `node`.
    pub target_type: &'a str,
    pub target_id: Option<i64>,
    /// One line for people.
    pub summary: String,
    /// JSON of the thing before the change, where it applies.
    pub before: Option<String>,
    /// JSON of the thing after the change, where it applies.
    pub after: Option<String>,
}

/// JSON of a value for `before`/`after`; never fails the change.
pub fn snapshot<T: Serialize>(value: &T) -> Option<String> {
    serde_json::to_string(value).ok()
}

/// One stored row.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor_id: Option<i64>,
    pub actor: String,
    pub source_ip: String,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<i64>,
    pub summary: String,
    pub before: Option<String>,
    pub after: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of a row: SHA-256 over the previous hash and every field, each
/// length-prefixed so no two different rows hash the same input.
fn row_hash(prev_hash: &str, e: &AuditEntry) -> String {
    let mut input = String::new();
    let mut field = |v: &str| {
        input.push_str(&v.len().to_string());
        input.push(':');
        input.push_str(v);
        input.push('|');
    };
    field(prev_hash);
    field(&e.id.to_string());
    field(&e.at.to_string());
    field(&e.actor_id.map(|v| v.to_string()).unwrap_or_default());
    field(&e.actor);
    field(&e.source_ip);
    field(&e.action);
    field(&e.target_type);
    field(&e.target_id.map(|v| v.to_string()).unwrap_or_default());
    field(&e.summary);
    field(e.before.as_deref().unwrap_or("\u{0}"));
    field(e.after.as_deref().unwrap_or("\u{0}"));
    sha256_hex(&input)
}

/// Appends a row for `change` by `actor` inside `tx`.
pub async fn record(tx: &mut Tx, actor: &AuditActor, change: Change<'_>) -> Result<()> {
    let head =
        sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, last_hash")
            .fetch_one(&mut **tx)
            .await?;
    let id: i64 = head.try_get("seq")?;
    let prev_hash: String = head.try_get("last_hash")?;
    let mut entry = AuditEntry {
        id,
        at: now_ms(),
        actor_id: actor.account_id,
        actor: actor.name.clone(),
        source_ip: actor.ip.clone(),
        action: change.action.to_string(),
        target_type: change.target_type.to_string(),
        target_id: change.target_id,
        summary: change.summary,
        before: change.before,
        after: change.after,
        prev_hash: prev_hash.clone(),
        hash: String::new(),
    };
    entry.hash = row_hash(&prev_hash, &entry);
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor_id, actor, source_ip, action, target_type, target_id, \
         summary, before_json, after_json, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(entry.id)
    .bind(entry.at)
    .bind(entry.actor_id)
    .bind(&entry.actor)
    .bind(&entry.source_ip)
    .bind(&entry.action)
    .bind(&entry.target_type)
    .bind(entry.target_id)
    .bind(&entry.summary)
    .bind(&entry.before)
    .bind(&entry.after)
    .bind(&entry.prev_hash)
    .bind(&entry.hash)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE audit_head SET last_hash = $1 WHERE id = 1")
        .bind(&entry.hash)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const COLUMNS: &str = "id, at, actor_id, actor, source_ip, action, target_type, target_id, summary, \
                       before_json, after_json, prev_hash, hash";

fn from_row(row: &AnyRow) -> Result<AuditEntry, sqlx::Error> {
    Ok(AuditEntry {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        actor_id: row.try_get("actor_id")?,
        actor: row.try_get("actor")?,
        source_ip: row.try_get("source_ip")?,
        action: row.try_get("action")?,
        target_type: row.try_get("target_type")?,
        target_id: row.try_get("target_id")?,
        summary: row.try_get("summary")?,
        before: row.try_get("before_json")?,
        after: row.try_get("after_json")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// Filters for browsing the log.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub actor: Option<String>,
    /// Matches actions starting with this, e.g. `node.` or `token.revoke`.
    pub action: Option<String>,
    pub target_type: Option<String>,
    /// Only rows with an id below this (keyset pagination, newest first).
    pub before_id: Option<i64>,
}

/// A page of rows, newest first, and whether more follow.
pub async fn list(pool: &AnyPool, filter: &Filter, limit: i64) -> Result<(Vec<AuditEntry>, bool)> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM audit_log \
         WHERE ($1 IS NULL OR actor = $1) \
           AND ($2 IS NULL OR action LIKE $2) \
           AND ($3 IS NULL OR target_type = $3) \
           AND ($4 IS NULL OR id < $4) \
         ORDER BY id DESC LIMIT $5"
    ))
    .bind(filter.actor.as_deref())
    .bind(
        filter
            .action
            .as_ref()
            .map(|a| format!("{}%", a.replace('%', ""))),
    )
    .bind(filter.target_type.as_deref())
    .bind(filter.before_id)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    let mut entries: Vec<AuditEntry> = rows.iter().map(from_row).collect::<Result<_, _>>()?;
    let more = entries.len() as i64 > limit;
    entries.truncate(limit as usize);
    Ok((entries, more))
}

/// The outcome of checking the chain.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every row checks out.
    Intact { rows: i64 },
    /// The first row that does not: its id and what is wrong.
    Broken { id: i64, reason: String },
}

/// Walks the whole log in order and checks every link and every hash.
pub async fn verify(pool: &AnyPool) -> Result<Verdict> {
    let mut prev_hash = String::new();
    let mut expected_id = 1_i64;
    let mut after_id = 0_i64;
    loop {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM audit_log WHERE id > $1 ORDER BY id LIMIT 1000"
        ))
        .bind(after_id)
        .fetch_all(pool)
        .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let entry = from_row(row)?;
            if entry.id != expected_id {
                return Ok(Verdict::Broken {
                    id: entry.id,
                    reason: format!("row {expected_id} is missing before it"),
                });
            }
            if entry.prev_hash != prev_hash {
                return Ok(Verdict::Broken {
                    id: entry.id,
                    reason: "its link to the previous row does not match".into(),
                });
            }
            if row_hash(&prev_hash, &entry) != entry.hash {
                return Ok(Verdict::Broken {
                    id: entry.id,
                    reason: "its content does not match its hash (edited)".into(),
                });
            }
            prev_hash = entry.hash;
            expected_id += 1;
            after_id = entry.id;
        }
    }
    let head: (i64, String) = {
        let row = sqlx::query("SELECT seq, last_hash FROM audit_head WHERE id = 1")
            .fetch_one(pool)
            .await?;
        (row.try_get("seq")?, row.try_get("last_hash")?)
    };
    if head.0 != expected_id - 1 || head.1 != prev_hash {
        return Ok(Verdict::Broken {
            id: expected_id,
            reason: format!("rows after {} were removed", expected_id - 1),
        });
    }
    Ok(Verdict::Intact {
        rows: expected_id - 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> AuditEntry {
        AuditEntry {
            id: 1,
            at: 5,
            actor_id: Some(1),
            actor: "admin".into(),
            source_ip: "127.0.0.1".into(),
            action: "node.create".into(),
            target_type: "node".into(),
            target_id: Some(3),
            summary: "created /a".into(),
            before: None,
            after: Some("{}".into()),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn any_field_change_changes_the_hash() {
        let base = row_hash("", &entry());
        let mut e = entry();
        e.summary = "created /b".into();
        assert_ne!(row_hash("", &e), base);
        let mut e = entry();
        e.before = Some(String::new());
        assert_ne!(row_hash("", &e), base, "empty and absent differ");
        assert_ne!(row_hash("x", &entry()), base, "the link counts");
        // Moving text between fields does not collide.
        let mut a = entry();
        a.actor = "ad".into();
        a.source_ip = "min127.0.0.1".into();
        assert_ne!(row_hash("", &a), base);
    }
}
