//! Persistence: one set of portable queries for SQLite and PostgreSQL through
//! sqlx's `Any` driver, one module per aggregate. Transactions are opened
//! here; a multi-row change is always written in one of them.

pub mod accounts;
pub mod apps;
pub mod audit;
pub mod clusters;
pub mod jobs;
pub mod release_items;
pub mod sessions;
pub mod tokens;
pub mod tree;
pub mod work_orders;

use std::borrow::Cow;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
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

/// Migrations, embedded so the binary carries its schema. Both folders are
/// kept in step; a unit test checks that every file is listed here.
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../../../migrations/sqlite/0001_foundation.sql"),
    ),
    (
        2,
        "audit",
        include_str!("../../../migrations/sqlite/0002_audit.sql"),
    ),
    (
        3,
        "registry",
        include_str!("../../../migrations/sqlite/0003_registry.sql"),
    ),
    (
        4,
        "releases",
        include_str!("../../../migrations/sqlite/0004_releases.sql"),
    ),
    (
        5,
        "engine",
        include_str!("../../../migrations/sqlite/0005_engine.sql"),
    ),
    (
        6,
        "audit_keyed",
        include_str!("../../../migrations/sqlite/0006_audit_keyed.sql"),
    ),
    (
        7,
        "generic_jobs",
        include_str!("../../../migrations/sqlite/0007_generic_jobs.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../../../migrations/postgres/0001_foundation.sql"),
    ),
    (
        2,
        "audit",
        include_str!("../../../migrations/postgres/0002_audit.sql"),
    ),
    (
        3,
        "registry",
        include_str!("../../../migrations/postgres/0003_registry.sql"),
    ),
    (
        4,
        "releases",
        include_str!("../../../migrations/postgres/0004_releases.sql"),
    ),
    (
        5,
        "engine",
        include_str!("../../../migrations/postgres/0005_engine.sql"),
    ),
    (
        6,
        "audit_keyed",
        include_str!("../../../migrations/postgres/0006_audit_keyed.sql"),
    ),
    (
        7,
        "generic_jobs",
        include_str!("../../../migrations/postgres/0007_generic_jobs.sql"),
    ),
];

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
        let list = match self.kind {
            DbKind::Sqlite => SQLITE_MIGRATIONS,
            DbKind::Postgres => POSTGRES_MIGRATIONS,
        };
        let migrations: Vec<Migration> = list
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    Cow::Borrowed(*sql),
                    false,
                )
            })
            .collect();
        let migrator = Migrator {
            migrations: Cow::Owned(migrations),
            ..Migrator::DEFAULT
        };
        migrator
            .run(&self.pool)
            .await
            .context("applying database migrations")
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
    /// does it by itself). Run at start and hourly.
    pub async fn optimize(&self) {
        if self.kind == DbKind::Sqlite
            && let Err(e) = sqlx::query("PRAGMA optimize=0x10002")
                .execute(&self.pool)
                .await
        {
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

    fn files_in(dir: &str) -> Vec<String> {
        let path = format!("{}/../migrations/{dir}", env!("CARGO_MANIFEST_DIR"));
        let mut names: Vec<String> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn listed(list: &[(i64, &str, &str)]) -> Vec<String> {
        list.iter()
            .map(|(v, d, _)| format!("{v:04}_{d}.sql"))
            .collect()
    }

    #[test]
    fn every_migration_file_is_embedded_and_both_backends_are_in_step() {
        assert_eq!(files_in("sqlite"), listed(SQLITE_MIGRATIONS));
        assert_eq!(files_in("postgres"), listed(POSTGRES_MIGRATIONS));
    }
}
