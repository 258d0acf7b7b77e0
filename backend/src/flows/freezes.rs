//! Freeze windows: set and removed by owners of a node (or admins), read
//! by whoever sees what they cover, and a hotfix let through one by an
//! owner of the frozen node. The checks come in the order a caller fixes
//! them: who may (403), what (422 naming the field), then one transaction.

use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::auth::policy::Action;
use crate::db::accounts::Account;
use crate::db::audit::AuditActor;
use crate::db::freezes::{self, FreezeWindow, NewWindow};
use crate::db::tree::{self, Scope};
use crate::db::{now_ms, work_orders};
use crate::domain::freeze::{ENVIRONMENTS, Schedule};
use crate::domain::text::check_single_line;
use crate::domain::tree::path_covers;
use crate::error::{Error, Result};

/// A window as asked for: one-off (`starts_at`, `ends_at`, Unix ms) or
/// recurring (`cron_start`, `cron_end`, `time_zone`).
pub struct WindowRequest<'a> {
    pub reason: &'a str,
    pub starts_at: Option<i64>,
    pub ends_at: Option<i64>,
    pub cron_start: Option<&'a str>,
    pub cron_end: Option<&'a str>,
    pub time_zone: Option<&'a str>,
    pub environments: &'a [String],
}

/// The schedule `asked` describes, checked.
fn schedule_of(asked: &WindowRequest<'_>, now: i64) -> Result<Schedule> {
    let once = asked.starts_at.is_some() || asked.ends_at.is_some();
    let recurring =
        asked.cron_start.is_some() || asked.cron_end.is_some() || asked.time_zone.is_some();
    let schedule = match (once, recurring) {
        (true, true) => {
            return Err(Error::validation(
                "starts_at",
                "a window is one-off (starts_at, ends_at) or recurring (cron_start, cron_end, time_zone), not both",
            ));
        }
        (false, false) => {
            return Err(Error::validation(
                "starts_at",
                "give starts_at and ends_at (a one-off window), or cron_start, cron_end and time_zone (a recurring one)",
            ));
        }
        (true, false) => match (asked.starts_at, asked.ends_at) {
            (Some(starts_at), Some(ends_at)) => Schedule::Once { starts_at, ends_at },
            (None, _) => return Err(Error::validation("starts_at", "give the window's start")),
            (_, None) => return Err(Error::validation("ends_at", "give the window's end")),
        },
        (false, true) => {
            let start = asked.cron_start.ok_or_else(|| {
                Error::validation("cron_start", "give the cron expression it starts on")
            })?;
            let end = asked.cron_end.ok_or_else(|| {
                Error::validation("cron_end", "give the cron expression it ends on")
            })?;
            let zone = asked.time_zone.unwrap_or("UTC");
            crate::domain::freeze::zone(zone).map_err(|m| Error::validation("time_zone", m))?;
            start
                .parse::<crate::domain::freeze::Cron>()
                .map_err(|m| Error::validation("cron_start", m))?;
            end.parse::<crate::domain::freeze::Cron>()
                .map_err(|m| Error::validation("cron_end", m))?;
            Schedule::recurring(start, end, zone).map_err(|m| Error::validation("cron_start", m))?
        }
    };
    let field = if once { "ends_at" } else { "cron_start" };
    schedule
        .check(now)
        .map_err(|m| Error::validation(field, m))?;
    Ok(schedule)
}

/// Sets a window on node `node_id` for `actor` (an owner there, or an
/// admin).
pub async fn create(
    state: &AppState,
    actor: &Account,
    who: &AuditActor,
    node_id: i64,
    asked: &WindowRequest<'_>,
) -> Result<FreezeWindow> {
    let node = state
        .policy
        .visible(actor, tree::get(&state.db.pool, node_id).await)?;
    state
        .policy
        .require(actor, Action::ManageFreezes, &node.path)?;
    let reason = asked.reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 {
        return Err(Error::validation(
            "reason",
            "say why, in one line of at most 200 characters",
        ));
    }
    check_single_line("reason", reason).map_err(|m| Error::validation("reason", m))?;
    let mut environments: Vec<String> = Vec::new();
    for e in asked.environments {
        let e = e.trim();
        if !ENVIRONMENTS.contains(&e) {
            return Err(Error::validation(
                "environments",
                format!("'{e}' is not an environment class: dev, test, staging or prod"),
            ));
        }
        if !environments.iter().any(|x| x == e) {
            environments.push(e.to_string());
        }
    }
    let schedule = schedule_of(asked, now_ms())?;
    Ok(freezes::create(
        &state.db,
        &NewWindow {
            node_id: node.id,
            reason,
            schedule: &schedule,
            environments: &environments,
        },
        who,
    )
    .await?)
}

/// Removes window `id` for `actor` (an owner of its node, or an admin).
pub async fn delete(
    state: &AppState,
    actor: &Account,
    who: &AuditActor,
    id: i64,
) -> Result<FreezeWindow> {
    let window = visible(state, actor, id).await?;
    state
        .policy
        .require(actor, Action::ManageFreezes, &window.node_path)?;
    Ok(freezes::delete(&state.db, id, who).await?)
}

/// Window `id`, when `actor` may see it (it is set on a node the actor
/// sees, or above one).
pub async fn visible(state: &AppState, actor: &Account, id: i64) -> Result<FreezeWindow> {
    let window = freezes::get(&state.db.pool, id).await?;
    let scope = state.policy.read_scope(&state.db, actor).await?;
    if sees(&scope, &window.node_path) {
        Ok(window)
    } else {
        Err(freezes::not_found(id).into())
    }
}

/// Whether a reader with `scope` sees a window set on `path`: at, below
/// or above one of the reader's subtrees (a window above covers them).
pub(super) fn sees(scope: &Scope, path: &str) -> bool {
    match scope {
        Scope::All => true,
        Scope::Under(subtrees) => subtrees
            .roots
            .iter()
            .any(|root| path_covers(path, root) || path_covers(root, path)),
    }
}

/// The windows covering node `node_id` (set on it or above it), nearest
/// first, as of now.
pub async fn of_node(state: &AppState, actor: &Account, node_id: i64) -> Result<Vec<FreezeWindow>> {
    let node = state
        .policy
        .visible(actor, tree::get(&state.db.pool, node_id).await)?;
    Ok(freezes::covering(&state.db.pool, &node.path, now_ms()).await?)
}

/// Every window `actor` sees, by node path.
pub async fn all_visible(state: &AppState, actor: &Account) -> Result<Vec<FreezeWindow>> {
    let scope = state.policy.read_scope(&state.db, actor).await?;
    Ok(freezes::all(&state.db.pool)
        .await?
        .into_iter()
        .filter(|w| sees(&scope, &w.node_path))
        .collect())
}

/// Lets hotfix order `id` through the windows holding it that `actor`
/// owns (or all, for an admin).
pub async fn override_freeze(
    state: &AppState,
    actor: &Account,
    who: &AuditActor,
    id: i64,
    comment: &str,
) -> Result<Vec<FreezeWindow>> {
    state.policy.visible(
        actor,
        crate::db::work_order_views::get(&state.db.pool, id).await,
    )?;
    check_single_line("comment", comment.trim()).map_err(|m| Error::validation("comment", m))?;
    if comment.chars().count() > 2000 {
        return Err(Error::validation("comment", "at most 2000 characters"));
    }
    let may = |path: &str| state.policy.may(actor, Action::ManageFreezes, path);
    Ok(work_orders::override_freeze(&state.db, id, actor, &may, comment, who).await?)
}

/// One stretch of a window in the calendar.
#[derive(Serialize, ToSchema)]
pub struct CalendarEntry {
    pub window_id: i64,
    pub node_path: String,
    pub reason: String,
    /// Unix ms.
    pub start: i64,
    pub end: i64,
    /// It is on now.
    pub active: bool,
    /// The environment classes it freezes; all when empty.
    pub environments: Vec<String>,
}

/// The stretches of `windows` on at `now` or starting in the next `days`.
pub fn calendar_of(windows: &[FreezeWindow], now: i64, days: i64) -> Vec<CalendarEntry> {
    let until = now + days * 86_400_000;
    let mut entries: Vec<CalendarEntry> = windows
        .iter()
        .filter_map(|w| Some((w, w.schedule()?)))
        .flat_map(|(w, schedule)| {
            schedule
                .upcoming(now, until, 100)
                .into_iter()
                .map(move |o| CalendarEntry {
                    window_id: w.id,
                    node_path: w.node_path.clone(),
                    reason: w.reason.clone(),
                    start: o.start,
                    end: o.end,
                    active: o.start <= now,
                    environments: w.environments.clone(),
                })
        })
        .collect();
    entries.sort_by_key(|e| (e.start, e.window_id));
    entries.truncate(500);
    entries
}
