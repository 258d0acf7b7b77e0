//! Persistence: one set of portable queries for SQLite and PostgreSQL through
//! sqlx's `Any` driver, one module per aggregate. Transactions are opened
//! here; a multi-row change is always written in one of them.

pub mod accounts;
pub mod approvers;
pub mod apps;
pub mod audit;
pub mod board;
pub mod cache;
pub mod clusters;
pub mod constraint;
pub mod deployments;
pub mod error;
pub mod freezes;
pub mod id_token_bindings;
pub mod idempotency;
pub mod jobs;
pub mod line_stops;
pub mod notifications;
pub mod oidc;
pub mod release_items;
pub mod rollout_locks;
pub mod sessions;
pub mod tokens;
pub mod tree;
pub mod verify;
pub mod work_order_views;
pub mod work_orders;

use std::ops::{Deref, DerefMut};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyConnection, AnyPool, Executor, Transaction};

use crate::config::{DatabaseConfig, DbKind};
use crate::secret::AuditKey;

/// A transaction on either backend. A write transaction carries the audit
/// key, so that [`audit::record`], called inside the transactions of every
/// module, can seal the rows it appends without each caller passing the key
/// along. Derefs to the connection like sqlx's own transaction
/// (`.execute(&mut **tx)`).
pub struct Tx {
    inner: Transaction<'static, Any>,
    audit_key: Option<AuditKey>,
}

impl Tx {
    /// A transaction that only reads: appending an audit row in it fails.
    pub async fn begin_read(pool: &AnyPool) -> Result<Tx, sqlx::Error> {
        Ok(Tx {
            inner: pool.begin().await?,
            audit_key: None,
        })
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.inner.commit().await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.inner.rollback().await
    }

    /// The key audit rows appended in this transaction are sealed with.
    pub(crate) fn audit_key(&self) -> Option<&AuditKey> {
        self.audit_key.as_ref()
    }
}

impl Deref for Tx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.inner
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.inner
    }
}

/// Migrations, embedded so the binary carries its schema: every file in
/// each folder, picked up at build time (`build.rs` reruns the build when a
/// file is added). The two folders are kept in step by the schema twin test
/// (`tests/integration/ops.rs`), which applies both and compares the result.
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

/// The connection pool, which backend it talks to, and the key that seals
/// the audit rows written through it.
#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub kind: DbKind,
    audit_key: AuditKey,
}

/// Up to five names joined for a message, with `…` when there were more
/// (callers fetch six to know).
pub fn name_list(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    let more = if names.len() > 5 { ", …" } else { "" };
    format!("{}{more}", shown.join(", "))
}

/// Current time as unix milliseconds, the unit of every timestamp column.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl Db {
    /// Connects (creating a missing SQLite file) and prepares each new
    /// connection: WAL, a busy timeout and foreign keys on SQLite. Audit
    /// rows written through the handle are sealed with `audit_key`
    /// ([`crate::secret::SecretKey::audit_key`]).
    pub async fn connect(config: &DatabaseConfig, audit_key: AuditKey) -> anyhow::Result<Self> {
        install_default_drivers();
        let mut url = config.url.expose().clone();
        if config.kind == DbKind::Sqlite && !url.contains("mode=") {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("mode=rwc");
        }
        let options = AnyPoolOptions::new()
            .max_connections(match config.kind {
                DbKind::Sqlite => 8,
                DbKind::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(10));
        let options = if config.kind == DbKind::Sqlite {
            options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                         PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                    )
                    .await?;
                    Ok(())
                })
            })
        } else {
            options
        };
        let pool = options.connect(&url).await.with_context(|| {
            format!(
                "cannot open the {} database (check --database-url / ROLLWAY_DATABASE_URL)",
                match config.kind {
                    DbKind::Sqlite => "SQLite",
                    DbKind::Postgres => "PostgreSQL",
                }
            )
        })?;
        Ok(Self {
            pool,
            kind: config.kind,
            audit_key,
        })
    }

    /// The key that seals audit rows.
    pub(crate) fn audit_key(&self) -> &AuditKey {
        &self.audit_key
    }

    /// Applies every migration not yet applied.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        self.migrate_through(i64::MAX).await
    }

    /// Applies the migrations up to and including `version` not yet
    /// applied (upgrade tests start from an older schema).
    ///
    /// SQLite changes a constraint only by rebuilding the table, and a
    /// table others refer to can be dropped and rebuilt only with foreign
    /// keys off (SQLite's "other kinds of table schema changes"): its
    /// migrations run on one connection with foreign keys off, every
    /// reference is checked after, and that connection is closed rather
    /// than returned to the pool.
    pub async fn migrate_through(&self, version: i64) -> anyhow::Result<()> {
        let context = "applying database migrations";
        let all = match self.kind {
            DbKind::Sqlite => &SQLITE_MIGRATIONS,
            DbKind::Postgres => &POSTGRES_MIGRATIONS,
        };
        let migrator = Migrator {
            migrations: all
                .iter()
                .filter(|m| m.version <= version)
                .cloned()
                .collect(),
            ..Migrator::DEFAULT
        };
        if self.kind == DbKind::Postgres {
            return migrator.run(&self.pool).await.context(context);
        }
        let mut conn = self.pool.acquire().await.context(context)?.detach();
        conn.execute("PRAGMA foreign_keys = OFF").await?;
        migrator.run(&mut conn).await.context(context)?;
        let broken: Vec<(String, Option<i64>, String)> =
            sqlx::query_as("SELECT \"table\", rowid, parent FROM pragma_foreign_key_check")
                .fetch_all(&mut conn)
                .await?;
        if let Some((table, row, parent)) = broken.first() {
            anyhow::bail!(
                "{context}: {} row(s) refer to rows that do not exist (first: {table} row {row:?} → {parent})",
                broken.len()
            );
        }
        sqlx::Connection::close(conn).await?;
        Ok(())
    }

    /// Begins a transaction that will write. On SQLite it takes the write
    /// lock up front (`BEGIN IMMEDIATE`) so two writers queue on the busy
    /// timeout instead of failing when a read lock cannot be upgraded.
    pub async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        let inner = match self.kind {
            DbKind::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            DbKind::Postgres => self.pool.begin().await?,
        };
        Ok(Tx {
            inner,
            audit_key: Some(self.audit_key.clone()),
        })
    }

    /// Refreshes the query planner's statistics so filtered lists pick the
    /// right index (SQLite keeps none until asked; PostgreSQL's autovacuum
    /// does it by itself). Run at start and hourly, on a connection of its
    /// own that is closed after: counting every table's rows fills a page
    /// cache (2 MB) that a pooled connection would keep for its lifetime.
    pub async fn optimize(&self) {
        if self.kind != DbKind::Sqlite {
            return;
        }
        let run = async {
            let mut conn = self.pool.acquire().await?.detach();
            sqlx::query("PRAGMA optimize=0x10002")
                .execute(&mut conn)
                .await?;
            sqlx::Connection::close(conn).await
        };
        if let Err(e) = run.await {
            tracing::warn!(error = %e, "PRAGMA optimize failed");
        }
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_in(dir: &str) -> Vec<i64> {
        let path = format!("{}/../migrations/{dir}", env!("CARGO_MANIFEST_DIR"));
        let mut versions: Vec<i64> = std::fs::read_dir(path)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                name.split('_').next()?.parse().ok()
            })
            .collect();
        versions.sort();
        versions
    }

    #[test]
    fn every_migration_file_is_embedded() {
        for (dir, migrator) in [
            ("sqlite", &SQLITE_MIGRATIONS),
            ("postgres", &POSTGRES_MIGRATIONS),
        ] {
            let embedded: Vec<i64> = migrator.iter().map(|m| m.version).collect();
            assert_eq!(embedded, files_in(dir), "{dir}");
        }
    }
}
