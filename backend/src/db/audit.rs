//! The audit log: every state change and every admin change, append-only.
//!
//! Each row carries the MAC of the previous row and its own MAC:
//! HMAC-SHA256, under a key derived from the secret key, over its content
//! and that link. Editing, deleting or reordering rows breaks the chain at
//! the first row touched, and whoever can write the database but does not
//! hold the key cannot rebuild it; [`verify`] finds the row. The database
//! itself refuses `UPDATE` and `DELETE` on the table (triggers, migration
//! 0006).
//!
//! The single-row `audit_head` names the newest row. Removing the newest
//! rows and moving the head back leaves a chain that checks out; against
//! that, an [`Anchor`] (the head as one line, printed by `rollway admin
//! audit-anchor` and logged by `serve` at start and hourly) kept where the
//! database's writers cannot change it: `verify-audit --anchor` fails when
//! the chain no longer reaches it.
//!
//! Rows are appended inside the transaction of the change they describe,
//! with the key that transaction carries ([`Tx`]). The head is updated
//! first, which serialises appends on PostgreSQL (row lock) as `BEGIN
//! IMMEDIATE` does on SQLite.
//!
//! Logs written before the key existed are chained with plain SHA-256 of
//! the same input; [`migrate`] (`rollway admin migrate-audit`) re-chains
//! them once, and until then appends are refused.

use std::fmt;
use std::str::FromStr;

use anyhow::anyhow;
use serde::Serialize;
use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Executor, Row};
use utoipa::ToSchema;

use super::error::Result;
use super::{Db, Tx, now_ms};
use crate::config::DbKind;
use crate::secret::{AuditKey, sha256_hex};

/// The scheme of a chain sealed with the audit key.
const SCHEME_KEYED: &str = "hmac-sha256-v1";

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
    /// Rollway itself (first start).
    pub fn system() -> Self {
        Self {
            account_id: None,
            name: "system".into(),
            ip: "local".into(),
        }
    }

    /// The engine, as the timeline names its entries.
    pub fn engine() -> Self {
        Self {
            account_id: None,
            name: "engine".into(),
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

/// What a row's MAC is computed over: the previous row's MAC and every
/// field, each length-prefixed so no two different rows give the same
/// input. The input always starts with a digit.
fn row_input(prev_hash: &str, e: &AuditEntry) -> String {
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
    input
}

/// How the rows of a chain are sealed.
#[derive(Clone, Copy)]
enum Seal<'a> {
    /// Plain SHA-256, as written before the key existed: anyone can
    /// recompute it, so it proves nothing against a database writer.
    Unkeyed,
    /// HMAC-SHA256 under the audit key.
    Keyed(&'a AuditKey),
}

impl Seal<'_> {
    /// The MAC (or, unkeyed, the hash) of `e` linked to `prev_hash`.
    fn of(self, prev_hash: &str, e: &AuditEntry) -> String {
        let input = row_input(prev_hash, e);
        match self {
            Seal::Unkeyed => sha256_hex(&input),
            Seal::Keyed(key) => key.mac_hex(input.as_bytes()),
        }
    }
}

/// The head row: the newest row's id and MAC, how the chain is sealed and
/// with which key.
struct Head {
    seq: i64,
    last_hash: String,
    scheme: String,
    key_id: String,
}

async fn read_head<'e, E: Executor<'e, Database = Any>>(executor: E) -> Result<Head> {
    let row = sqlx::query("SELECT seq, last_hash, scheme, key_id FROM audit_head WHERE id = 1")
        .fetch_one(executor)
        .await?;
    Ok(Head {
        seq: row.try_get("seq")?,
        last_hash: row.try_get("last_hash")?,
        scheme: row.try_get("scheme")?,
        key_id: row.try_get("key_id")?,
    })
}

/// Why rows cannot be appended with `key` to the chain `head` describes.
fn refusal_of(head: &Head, key: &AuditKey) -> Option<String> {
    if head.scheme != SCHEME_KEYED {
        Some(
            "the audit log is still chained with the unkeyed SHA-256 of earlier versions: \
             run `rollway admin migrate-audit` once (same database and secret key) to seal it \
             with the secret key"
                .into(),
        )
    } else if !head.key_id.is_empty() && head.key_id != key.id() {
        Some(
            "the audit log is sealed with another secret key than this one: use the \
             ROLLWAY_SECRET_KEY (or, for SQLite, the <database>.key file) of the server that \
             wrote it"
                .into(),
        )
    } else if head.key_id.is_empty() && head.seq > 0 {
        // Only an empty chain is without a key: someone changed the head.
        Some(
            "the audit log's head names no key although the log has rows (it was altered): \
             run `rollway admin verify-audit`"
                .into(),
        )
    } else {
        None
    }
}

/// Why this handle cannot append audit rows, if it cannot: the log awaits
/// `migrate-audit`, or it is sealed with another key. `serve` refuses to
/// start then.
pub async fn refusal(db: &Db) -> Result<Option<String>> {
    Ok(refusal_of(&read_head(&db.pool).await?, db.audit_key()))
}

/// Appends a row for `change` by `actor` inside `tx`, sealed with the key
/// `tx` carries.
pub async fn record(tx: &mut Tx, actor: &AuditActor, change: Change<'_>) -> Result<()> {
    let key = tx
        .audit_key()
        .ok_or_else(|| anyhow!("an audit row cannot be appended in a read-only transaction"))?
        .clone();
    let key_id = key.id();
    // Claims an empty keyed chain for this key on its first row; refuses a
    // chain that awaits migration or belongs to another key.
    let head = sqlx::query(
        "UPDATE audit_head SET seq = seq + 1, key_id = $2 \
         WHERE id = 1 AND scheme = $1 AND (key_id = $2 OR (key_id = '' AND seq = 0)) \
         RETURNING seq, last_hash",
    )
    .bind(SCHEME_KEYED)
    .bind(&key_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(head) = head else {
        let reason = refusal_of(&read_head(&mut **tx).await?, &key)
            .unwrap_or_else(|| "the audit head cannot be updated".into());
        return Err(anyhow!("cannot append to the audit log: {reason}").into());
    };
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
    entry.hash = Seal::Keyed(&key).of(&prev_hash, &entry);
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

/// The head of a chain as one line that can be kept outside the database:
/// `rollway-audit-anchor:v1:<row id>:<its MAC, 64 hex digits>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: i64,
    pub mac: String,
}

const ANCHOR_PREFIX: &str = "rollway-audit-anchor:v1:";

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ANCHOR_PREFIX}{}:{}", self.seq, self.mac)
    }
}

impl FromStr for Anchor {
    type Err = String;

    fn from_str(line: &str) -> Result<Self, String> {
        let expected = "expected rollway-audit-anchor:v1:<row id>:<64 hex digits>, as `rollway admin audit-anchor` prints it";
        let rest = line
            .trim()
            .strip_prefix(ANCHOR_PREFIX)
            .ok_or_else(|| format!("not an audit anchor ({expected})"))?;
        let (seq, mac) = rest
            .split_once(':')
            .ok_or_else(|| format!("the anchor lacks its MAC ({expected})"))?;
        let seq = seq
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0 && seq.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("the anchor's row id is not a positive number ({expected})"))?;
        if mac.len() != 64 || !mac.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!(
                "the anchor's MAC is not 64 lower-case hex digits ({expected})"
            ));
        }
        Ok(Anchor {
            seq,
            mac: mac.to_string(),
        })
    }
}

/// The outcome of checking the chain.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every row checks out (and reaches the anchor, if one was given).
    /// `head` is the newest row as an anchor; `None` for an empty log.
    Intact { rows: i64, head: Option<Anchor> },
    /// The first row that does not: its id and what is wrong.
    Broken { id: i64, reason: String },
    /// The log is still chained with the unkeyed SHA-256 of earlier
    /// versions; `old` is what checking it that way found.
    Unmigrated { old: Box<Verdict> },
    /// The head names another key than ours.
    OtherKey,
}

/// A read transaction on one snapshot, so the walk and the head it is
/// compared with agree while a server keeps appending.
async fn read_snapshot(db: &Db) -> Result<Tx> {
    let mut tx = Tx::begin_read(&db.pool).await?;
    if db.kind == DbKind::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
    }
    // SQLite (WAL) reads from one snapshot from a transaction's first read.
    Ok(tx)
}

/// The next rows after id `last`, in order, a thousand at a time: how the
/// verifier and the one-off re-chaining walk the whole log.
async fn page_after(conn: &mut AnyConnection, last: i64) -> Result<Vec<AuditEntry>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM audit_log WHERE id > $1 ORDER BY id LIMIT 1000"
    ))
    .bind(last)
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// Walks the whole log in order and checks every row's id, link and MAC
/// (or unkeyed hash), that the chain reaches `anchor` with the same MAC,
/// and that it ends where `head` says.
async fn walk(
    conn: &mut AnyConnection,
    seal: Seal<'_>,
    head: &Head,
    anchor: Option<&Anchor>,
) -> Result<Verdict> {
    let mut prev_hash = String::new();
    let mut last = 0_i64;
    loop {
        let entries = page_after(&mut *conn, last).await?;
        if entries.is_empty() {
            break;
        }
        for entry in entries {
            let broken = |reason: String| {
                Ok(Verdict::Broken {
                    id: entry.id,
                    reason,
                })
            };
            if entry.id != last + 1 {
                return broken(format!("row {} is missing before it", last + 1));
            }
            if entry.prev_hash != prev_hash {
                return broken("its link to the previous row does not match".into());
            }
            // Plain comparison: a verifier offers no timing oracle.
            if seal.of(&prev_hash, &entry) != entry.hash {
                return broken(match seal {
                    Seal::Keyed(_) => "its content does not match its MAC (edited, or sealed without the secret key)".into(),
                    Seal::Unkeyed => "its content does not match its hash (edited)".into(),
                });
            }
            if let Some(a) = anchor
                && a.seq == entry.id
                && a.mac != entry.hash
            {
                return broken(format!(
                    "it differs from the anchor (row {} has MAC {}, the anchor says {}): the log was rewritten, or the anchor is of another database",
                    a.seq, entry.hash, a.mac
                ));
            }
            prev_hash = entry.hash;
            last = entry.id;
        }
    }
    if let Some(a) = anchor
        && a.seq > last
    {
        return Ok(Verdict::Broken {
            id: last + 1,
            reason: format!(
                "the log ends at row {last} but the anchor names row {}: rows were removed",
                a.seq
            ),
        });
    }
    if head.seq > last {
        return Ok(Verdict::Broken {
            id: last + 1,
            reason: format!(
                "the log ends at row {last} but its head names row {}: rows were removed",
                head.seq
            ),
        });
    }
    if head.seq < last {
        return Ok(Verdict::Broken {
            id: head.seq + 1,
            reason: format!(
                "the head names row {} but the log goes on to row {last}: the head was moved back",
                head.seq
            ),
        });
    }
    if head.last_hash != prev_hash {
        return Ok(Verdict::Broken {
            id: last,
            reason: "the head's MAC does not match this row".into(),
        });
    }
    Ok(Verdict::Intact {
        rows: last,
        head: (last > 0).then_some(Anchor {
            seq: last,
            mac: prev_hash,
        }),
    })
}

/// Checks the whole chain with this handle's key, and that it reaches
/// `anchor` (an anchor taken earlier and kept outside the database).
pub async fn verify(db: &Db, anchor: Option<&Anchor>) -> Result<Verdict> {
    let mut tx = read_snapshot(db).await?;
    let head = read_head(&mut *tx).await?;
    let verdict = if head.scheme != SCHEME_KEYED {
        Verdict::Unmigrated {
            old: Box::new(walk(&mut tx, Seal::Unkeyed, &head, None).await?),
        }
    } else if !head.key_id.is_empty() && head.key_id != db.audit_key().id() {
        Verdict::OtherKey
    } else {
        walk(&mut tx, Seal::Keyed(db.audit_key()), &head, anchor).await?
    };
    tx.rollback().await?;
    Ok(verdict)
}

/// The newest row as an anchor, checked cheaply (the head names it, it
/// exists and its MAC is right): what `serve` logs.
async fn head_anchor(db: &Db) -> Result<Result<Option<Anchor>, String>> {
    let mut tx = read_snapshot(db).await?;
    let head = read_head(&mut *tx).await?;
    if let Some(problem) = refusal_of(&head, db.audit_key()) {
        return Ok(Err(problem));
    }
    if head.seq == 0 {
        return Ok(Ok(None));
    }
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM audit_log WHERE id = $1"))
        .bind(head.seq)
        .fetch_optional(&mut *tx)
        .await?;
    tx.rollback().await?;
    let Some(entry) = row.as_ref().map(from_row).transpose()? else {
        return Ok(Err(format!(
            "row {} named by the head is missing",
            head.seq
        )));
    };
    if entry.hash != head.last_hash
        || Seal::Keyed(db.audit_key()).of(&entry.prev_hash, &entry) != entry.hash
    {
        return Ok(Err(format!(
            "row {} does not match its MAC or the head",
            head.seq
        )));
    }
    Ok(Ok(Some(Anchor {
        seq: head.seq,
        mac: entry.hash,
    })))
}

/// Logs the head as an anchor line, so that a copy of it lives in the log
/// system (called by `serve` at start and hourly). A head that does not
/// match its row is logged as an error.
pub async fn log_anchor(db: &Db) {
    match head_anchor(db).await {
        Ok(Ok(Some(anchor))) => {
            tracing::info!(seq = anchor.seq, anchor = %anchor, "audit log head");
        }
        Ok(Ok(None)) => tracing::info!(seq = 0, "audit log head: the log is empty"),
        Ok(Err(problem)) => {
            tracing::error!(%problem, "audit log head: run `rollway admin verify-audit`");
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the audit log head"),
    }
}

/// What [`migrate`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Migration {
    /// The log was already sealed with the key; nothing changed.
    AlreadyKeyed,
    /// The old chain is broken at row `id`; nothing changed.
    Refused { id: i64, reason: String },
    /// `rows` old rows were re-chained (and one row recording it appended).
    Rechained { rows: i64 },
}

/// The statement that makes audit rows unchangeable, exactly as migration
/// 0006 creates it (a unit test checks), for [`migrate`] to recreate.
const NO_UPDATE_TRIGGER_SQLITE: &str =
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused');
END";
const NO_UPDATE_TRIGGER_POSTGRES: &str =
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()";

/// Re-chains a log written before the key existed, once: checks the old
/// unkeyed chain (refusing a broken one, so a forgery is never sealed),
/// rewrites every row's link and MAC with the key, marks the head keyed
/// and records that it did, all in one transaction.
pub async fn migrate(db: &Db) -> Result<Migration> {
    let mut tx = db.begin_write().await?;
    // The head's row lock keeps appends out until commit (PostgreSQL);
    // SQLite's BEGIN IMMEDIATE already holds the write lock.
    sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    let head = read_head(&mut *tx).await?;
    if head.scheme == SCHEME_KEYED {
        return Ok(Migration::AlreadyKeyed);
    }
    if let Verdict::Broken { id, reason } = walk(&mut tx, Seal::Unkeyed, &head, None).await? {
        return Ok(Migration::Refused { id, reason });
    }
    // The rows must change once. Rather than a bypass built into the
    // trigger (a flag any database writer could set as well), the trigger
    // is dropped and recreated inside this transaction: no other session
    // ever sees the table without it, and a failure rolls both back.
    let (drop_trigger, create_trigger) = match db.kind {
        DbKind::Sqlite => (
            "DROP TRIGGER IF EXISTS audit_log_no_update",
            NO_UPDATE_TRIGGER_SQLITE,
        ),
        DbKind::Postgres => (
            "DROP TRIGGER IF EXISTS audit_log_no_update ON audit_log",
            NO_UPDATE_TRIGGER_POSTGRES,
        ),
    };
    sqlx::query(drop_trigger).execute(&mut *tx).await?;
    let seal = Seal::Keyed(db.audit_key());
    let mut prev_hash = String::new();
    let mut last = 0_i64;
    loop {
        let entries = page_after(&mut tx, last).await?;
        if entries.is_empty() {
            break;
        }
        for entry in entries {
            let mac = seal.of(&prev_hash, &entry);
            sqlx::query("UPDATE audit_log SET prev_hash = $1, hash = $2 WHERE id = $3")
                .bind(&prev_hash)
                .bind(&mac)
                .bind(entry.id)
                .execute(&mut *tx)
                .await?;
            prev_hash = mac;
            last = entry.id;
        }
    }
    sqlx::query(create_trigger).execute(&mut *tx).await?;
    sqlx::query("UPDATE audit_head SET scheme = $1, key_id = $2, last_hash = $3 WHERE id = 1")
        .bind(SCHEME_KEYED)
        .bind(db.audit_key().id())
        .bind(&prev_hash)
        .execute(&mut *tx)
        .await?;
    record(
        &mut tx,
        &AuditActor::cli(),
        Change {
            action: "audit.migrate",
            target_type: "audit_log",
            target_id: None,
            summary: format!(
                "re-chained {last} rows with the secret key (HMAC-SHA256), replacing the unkeyed SHA-256 chain"
            ),
            before: None,
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Migration::Rechained { rows: last })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretKey;

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
    fn any_field_change_changes_the_mac() {
        let key = SecretKey::for_tests().audit_key();
        let seal = Seal::Keyed(&key);
        let base = seal.of("", &entry());
        type Edit = fn(&mut AuditEntry);
        let changes: Vec<(&str, Edit)> = vec![
            ("id", |e| e.id = 2),
            ("at", |e| e.at = 6),
            ("actor_id", |e| e.actor_id = None),
            ("actor", |e| e.actor = "root".into()),
            ("source_ip", |e| e.source_ip = "10.0.0.1".into()),
            ("action", |e| e.action = "node.delete".into()),
            ("target_type", |e| e.target_type = "app".into()),
            ("target_id", |e| e.target_id = Some(4)),
            ("summary", |e| e.summary = "created /b".into()),
            ("before: empty is not absent", |e| {
                e.before = Some(String::new())
            }),
            ("after", |e| e.after = None),
        ];
        for (what, change) in changes {
            let mut e = entry();
            change(&mut e);
            assert_ne!(seal.of("", &e), base, "{what}");
        }
        assert_ne!(seal.of("x", &entry()), base, "the link counts");
        // Moving text between fields does not collide.
        let mut a = entry();
        a.actor = "ad".into();
        a.source_ip = "min127.0.0.1".into();
        assert_ne!(seal.of("", &a), base);
        // The stored link and MAC are not part of the input.
        let mut e = entry();
        e.hash = "whatever".into();
        assert_eq!(seal.of("", &e), base);
    }

    #[test]
    fn the_mac_needs_the_key() {
        let key = SecretKey::for_tests().audit_key();
        let other = SecretKey::new(b"another key that is long enough, really").audit_key();
        let mac = Seal::Keyed(&key).of("", &entry());
        assert_eq!(mac, Seal::Keyed(&key).of("", &entry()), "deterministic");
        assert_ne!(mac, Seal::Keyed(&other).of("", &entry()));
        assert_ne!(mac, Seal::Unkeyed.of("", &entry()));
        assert_eq!(
            Seal::Unkeyed.of("", &entry()),
            sha256_hex(&row_input("", &entry())),
            "the scheme of earlier versions, for migrate-audit"
        );
    }

    #[test]
    fn appends_are_refused_on_an_unmigrated_chain_or_with_another_key() {
        let key = SecretKey::for_tests().audit_key();
        let head = |seq: i64, scheme: &str, key_id: &str| Head {
            seq,
            last_hash: String::new(),
            scheme: scheme.into(),
            key_id: key_id.into(),
        };
        assert_eq!(refusal_of(&head(3, SCHEME_KEYED, &key.id()), &key), None);
        assert_eq!(
            refusal_of(&head(0, SCHEME_KEYED, ""), &key),
            None,
            "an empty chain is claimed by its first row's key"
        );
        assert!(
            refusal_of(&head(3, "sha256", ""), &key)
                .unwrap()
                .contains("rollway admin migrate-audit")
        );
        assert!(
            refusal_of(&head(3, SCHEME_KEYED, "0123456789abcdef"), &key)
                .unwrap()
                .contains("another secret key")
        );
        assert!(
            refusal_of(&head(3, SCHEME_KEYED, ""), &key)
                .unwrap()
                .contains("altered")
        );
    }

    #[test]
    fn an_anchor_reads_back_as_printed_and_malformed_lines_are_refused() {
        let anchor = Anchor {
            seq: 42,
            mac: "ab".repeat(32),
        };
        let line = anchor.to_string();
        assert_eq!(
            line,
            format!("rollway-audit-anchor:v1:42:{}", "ab".repeat(32))
        );
        assert_eq!(line.parse::<Anchor>(), Ok(anchor.clone()));
        assert_eq!(format!("  {line}\n").parse::<Anchor>(), Ok(anchor));
        let mac = "ab".repeat(32);
        for bad in [
            String::new(),
            format!("rollway-audit-anchor:v2:42:{mac}"),
            format!("rollway-audit-anchor:v1:0:{mac}"),
            format!("rollway-audit-anchor:v1:-1:{mac}"),
            format!("rollway-audit-anchor:v1:+4:{mac}"),
            format!("rollway-audit-anchor:v1:x:{mac}"),
            "rollway-audit-anchor:v1:42".into(),
            format!("rollway-audit-anchor:v1:42:{}", &mac[1..]),
            format!("rollway-audit-anchor:v1:42:{}", mac.to_uppercase()),
            format!("rollway-audit-anchor:v1:42:{mac}:extra"),
        ] {
            let err = bad.parse::<Anchor>().unwrap_err();
            assert!(err.contains("rollway-audit-anchor:v1:"), "{bad}: {err}");
        }
    }

    #[test]
    fn migrate_audit_recreates_the_trigger_of_the_migration() {
        let sqlite = include_str!("../../../migrations/sqlite/0006_audit_keyed.sql");
        let postgres = include_str!("../../../migrations/postgres/0006_audit_keyed.sql");
        assert!(sqlite.contains(&format!("{NO_UPDATE_TRIGGER_SQLITE};")));
        assert!(postgres.contains(&format!("{NO_UPDATE_TRIGGER_POSTGRES};")));
        for migration in [sqlite, postgres] {
            assert!(migration.contains(&format!("'{SCHEME_KEYED}'")));
        }
    }
}
