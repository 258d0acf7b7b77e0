//! Freeze windows on the tree (migration 0022): stored, listed, removed
//! (each change audited in its transaction), the ones covering a target
//! read for the state machine inside its transaction, and the overrides a
//! hotfix order got. When a window is active is `domain::freeze`'s.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row};
use utoipa::ToSchema;

use super::audit::{self, AuditActor, Change, snapshot};
use super::error::{Error, Result};
use super::{Db, now_ms};
use crate::domain::freeze::{Occurrence, Schedule};
use crate::domain::tree::ancestor_chain;

/// One stretch of a window, Unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Stretch {
    pub start: i64,
    pub end: i64,
}

impl From<Occurrence> for Stretch {
    fn from(o: Occurrence) -> Self {
        Stretch {
            start: o.start,
            end: o.end,
        }
    }
}

/// A freeze window as stored and shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FreezeWindow {
    pub id: i64,
    /// The node it is set on; it covers the node's whole subtree.
    pub node_id: i64,
    pub node_path: String,
    /// Why: shown to whoever is refused.
    pub reason: String,
    /// A one-off window's start and end (Unix ms); absent for a recurring
    /// one.
    pub starts_at: Option<i64>,
    pub ends_at: Option<i64>,
    /// A recurring window: five-field cron expressions for its start and
    /// end, read in `time_zone` (IANA). It is active from the latest start
    /// until the next end after it (GitLab's freeze-period semantics).
    pub cron_start: Option<String>,
    pub cron_end: Option<String>,
    pub time_zone: Option<String>,
    /// The environment classes it freezes (`dev`, `test`, `staging`,
    /// `prod`); empty: all of them.
    pub environments: Vec<String>,
    pub created_by: String,
    pub created_at: i64,
    /// The stretch active now, if any.
    pub active: Option<Stretch>,
    /// The next stretch after the active one (or from now).
    pub next: Option<Stretch>,
}

impl FreezeWindow {
    /// When it freezes; `None` for a stored schedule that no longer reads
    /// (a time zone gone from the database).
    pub fn schedule(&self) -> Option<Schedule> {
        match (
            self.starts_at,
            self.ends_at,
            &self.cron_start,
            &self.cron_end,
            &self.time_zone,
        ) {
            (Some(starts_at), Some(ends_at), ..) => Some(Schedule::Once { starts_at, ends_at }),
            (_, _, Some(start), Some(end), Some(zone)) => {
                Schedule::recurring(start, end, zone).ok()
            }
            _ => None,
        }
    }

    /// Whether it freezes targets of environment class `environment`.
    pub fn freezes(&self, environment: &str) -> bool {
        self.environments.is_empty() || self.environments.iter().any(|e| e == environment)
    }

    /// Fills in `active` and `next` as of `now`.
    fn at(mut self, now: i64) -> Self {
        if let Some(schedule) = self.schedule() {
            let mut stretches = schedule.upcoming(now, i64::MAX, 2).into_iter();
            let first = stretches.next();
            match first {
                Some(o) if o.start <= now => {
                    self.active = Some(o.into());
                    self.next = stretches.next().map(Stretch::from);
                }
                other => self.next = other.map(Stretch::from),
            }
        }
        self
    }

    /// "\"Year-end freeze\" on /acme until 2027-01-04 08:00 Europe/Berlin".
    pub fn describe_until(&self, end: i64) -> String {
        let until = self
            .schedule()
            .map(|s| s.local(end))
            .unwrap_or_else(|| end.to_string());
        format!(
            "freeze window {} \"{}\" on {} (until {until})",
            self.id, self.reason, self.node_path
        )
    }
}

const COLUMNS: &str = "w.id, w.node_id, n.path AS node_path, w.reason, w.starts_at, w.ends_at, \
    w.cron_start, w.cron_end, w.time_zone, w.environments, w.created_by, w.created_at";
const FROM: &str = "freeze_windows w JOIN nodes n ON n.id = w.node_id";

fn from_row(row: &AnyRow) -> Result<FreezeWindow, sqlx::Error> {
    let environments: String = row.try_get("environments")?;
    Ok(FreezeWindow {
        id: row.try_get("id")?,
        node_id: row.try_get("node_id")?,
        node_path: row.try_get("node_path")?,
        reason: row.try_get("reason")?,
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
        cron_start: row.try_get("cron_start")?,
        cron_end: row.try_get("cron_end")?,
        time_zone: row.try_get("time_zone")?,
        environments: environments
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect(),
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        active: None,
        next: None,
    })
}

pub fn not_found(id: i64) -> Error {
    Error::NotFound(format!("freeze window {id} does not exist"))
}

/// A window to store, checked by the caller (`flows::freezes`).
pub struct NewWindow<'a> {
    pub node_id: i64,
    pub reason: &'a str,
    pub schedule: &'a Schedule,
    pub environments: &'a [String],
}

/// Stores `new`, audited as `who`'s.
pub async fn create(db: &Db, new: &NewWindow<'_>, who: &AuditActor) -> Result<FreezeWindow> {
    let now = now_ms();
    let (starts_at, ends_at, start, end, zone) = match new.schedule {
        Schedule::Once { starts_at, ends_at } => {
            (Some(*starts_at), Some(*ends_at), None, None, None)
        }
        Schedule::Recurring {
            start,
            end,
            zone_name,
            ..
        } => (
            None,
            None,
            Some(start.to_string()),
            Some(end.to_string()),
            Some(zone_name.clone()),
        ),
    };
    let mut tx = db.begin_write().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO freeze_windows (node_id, reason, starts_at, ends_at, cron_start, cron_end, time_zone, \
         environments, created_by_id, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
    )
    .bind(new.node_id)
    .bind(new.reason)
    .bind(starts_at)
    .bind(ends_at)
    .bind(start)
    .bind(end)
    .bind(zone)
    .bind(new.environments.join(","))
    .bind(who.account_id)
    .bind(&who.name)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM {FROM} WHERE w.id = $1"))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    let window = from_row(&row)?.at(now);
    audit::record(
        &mut tx,
        who,
        Change {
            action: "freeze_window.create",
            target_type: "freeze_window",
            target_id: Some(id),
            summary: format!(
                "freeze window \"{}\" on {} ({})",
                window.reason,
                window.node_path,
                new.schedule.describe()
            ),
            before: None,
            after: snapshot(&window),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(window)
}

/// Window `id`, as of now.
pub async fn get(pool: &AnyPool, id: i64) -> Result<FreezeWindow> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM {FROM} WHERE w.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(from_row(&row)?.at(now_ms()))
}

/// Removes window `id`, audited as `who`'s: the window as it was.
pub async fn delete(db: &Db, id: i64, who: &AuditActor) -> Result<FreezeWindow> {
    let mut tx = db.begin_write().await?;
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM {FROM} WHERE w.id = $1"))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| not_found(id))?;
    let window = from_row(&row)?.at(now_ms());
    sqlx::query("DELETE FROM freeze_overrides WHERE window_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM freeze_windows WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "freeze_window.delete",
            target_type: "freeze_window",
            target_id: Some(id),
            summary: format!(
                "freeze window \"{}\" on {} removed",
                window.reason, window.node_path
            ),
            before: snapshot(&window),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(window)
}

/// Every window, as of now, by node path: the caller keeps what the
/// reader may see.
pub async fn all(pool: &AnyPool) -> Result<Vec<FreezeWindow>> {
    let now = now_ms();
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM {FROM} ORDER BY n.path, w.id"
    ))
    .fetch_all(pool)
    .await?;
    rows.iter().map(|r| Ok(from_row(r)?.at(now))).collect()
}

/// The windows set on the node at `path` or above it (so covering it), as
/// of `now`, nearest node first.
pub async fn covering<'c, E>(db: E, path: &str, now: i64) -> Result<Vec<FreezeWindow>>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    covering_any(db, &[path], now).await
}

/// The windows covering any of `paths` (set on one of their nodes or
/// above), each once, as of `now`, nearest node first: one query for as
/// many paths as a caller has (an order's item and every stage's app).
pub async fn covering_any<'c, E>(db: E, paths: &[&str], now: i64) -> Result<Vec<FreezeWindow>>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    let mut nodes: Vec<String> = paths.iter().flat_map(|p| ancestor_chain(p)).collect();
    nodes.sort();
    nodes.dedup();
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (1..=nodes.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE n.path IN ({}) ORDER BY length(n.path) DESC, w.id",
        marks.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for node in nodes {
        query = query.bind(node);
    }
    let rows = query.fetch_all(db).await?;
    rows.iter().map(|r| Ok(from_row(r)?.at(now))).collect()
}

/// The window of `windows` (covering a target of class `environment`;
/// empty: every window already freezes it) active now that `overridden`
/// does not name, with the end of its stretch: the one ending last.
pub fn blocking<'a>(
    windows: &'a [FreezeWindow],
    environment: &str,
    overridden: &[i64],
) -> Option<(&'a FreezeWindow, i64)> {
    windows
        .iter()
        .filter(|w| {
            (environment.is_empty() || w.freezes(environment)) && !overridden.contains(&w.id)
        })
        .filter_map(|w| w.active.map(|a| (w, a.end)))
        .max_by_key(|(_, end)| *end)
}

/// The windows order `order_id` was let through (a hotfix's overrides).
pub async fn overrides_of<'c, E>(db: E, order_id: i64) -> Result<Vec<i64>>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    Ok(
        sqlx::query_scalar("SELECT window_id FROM freeze_overrides WHERE work_order_id = $1")
            .bind(order_id)
            .fetch_all(db)
            .await?,
    )
}
