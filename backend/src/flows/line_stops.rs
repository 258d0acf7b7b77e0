//! Stopping the line: an owner of a node (or an admin) halts its subtree
//! at once and lifts the stop again; whoever sees a node reads the stops
//! over it. The checks come in the order a caller fixes them: who may
//! (403), what (422 naming the field), then one transaction
//! (`db::line_stops`); the engine is then told, so the jobs it runs here
//! stop at once (other servers' at their next lease renewal).

use crate::app::AppState;
use crate::auth::policy::Action;
use crate::db::accounts::Account;
use crate::db::audit::AuditActor;
use crate::db::line_stops::{self, LineStop, Stopped};
use crate::db::tree;
use crate::domain::text::check_single_line;
use crate::domain::tree::path_covers;
use crate::error::{Error, Result};

use super::freezes::sees;

/// Stops the line at node `node_id` for `actor` (an owner there, or an
/// admin), for `reason`; `pause_rollouts` pauses the rolling updates under
/// way until the stop is lifted.
pub async fn stop(
    state: &AppState,
    actor: &Account,
    who: &AuditActor,
    node_id: i64,
    reason: &str,
    pause_rollouts: bool,
) -> Result<Stopped> {
    let node = state
        .policy
        .visible(actor, tree::get(&state.db.pool, node_id).await)?;
    state.policy.require(actor, Action::StopLine, &node.path)?;
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 {
        return Err(Error::validation(
            "reason",
            "say why, in one line of at most 200 characters",
        ));
    }
    check_single_line("reason", reason).map_err(|m| Error::validation("reason", m))?;
    let stopped = line_stops::stop(&state.db, node.id, reason, pause_rollouts, who).await?;
    state.engine.check_leases();
    state.engine.wake();
    Ok(stopped)
}

/// Lifts stop `id` for `actor` (an owner of its node, or an admin).
pub async fn lift(
    state: &AppState,
    actor: &Account,
    who: &AuditActor,
    id: i64,
) -> Result<LineStop> {
    let stop = visible(state, actor, id).await?;
    state
        .policy
        .require(actor, Action::StopLine, &stop.node_path)?;
    let lifted = line_stops::lift(&state.db, id, who).await?;
    state.engine.wake();
    Ok(lifted)
}

/// Stop `id`, when `actor` may see it (it is set on a node the actor sees,
/// or above one).
pub async fn visible(state: &AppState, actor: &Account, id: i64) -> Result<LineStop> {
    let stop = line_stops::get(&state.db.pool, id).await?;
    let scope = state.policy.read_scope(&state.db, actor).await?;
    if sees(&scope, &stop.node_path) {
        Ok(stop)
    } else {
        Err(line_stops::not_found(id).into())
    }
}

/// The stops in force `actor` sees, by node path.
pub async fn active_visible(state: &AppState, actor: &Account) -> Result<Vec<LineStop>> {
    let scope = state.policy.read_scope(&state.db, actor).await?;
    Ok(line_stops::active(&state.db.pool)
        .await?
        .into_iter()
        .filter(|s| sees(&scope, &s.node_path))
        .collect())
}

/// The stops in force over node `path` (set on it or above it), nearest
/// first; the caller has checked the reader sees the node.
pub async fn over(state: &AppState, path: &str) -> Result<Vec<LineStop>> {
    let mut stops: Vec<LineStop> = line_stops::active(&state.db.pool)
        .await?
        .into_iter()
        .filter(|s| path_covers(path, &s.node_path))
        .collect();
    stops.sort_by_key(|s| std::cmp::Reverse(s.node_path.len()));
    Ok(stops)
}
