//! Notification destinations: set on a node by its owners (or admins),
//! told of the events of work orders in the node's subtree; their
//! delivery logs read and a delivery sent again by the same people. The
//! checks come in the order a caller fixes them: who may (404 for what the
//! caller does not see, 403 for what it may not manage), what (422 naming
//! the field), then one transaction.

use crate::app::AppState;
use crate::auth::policy::Action;
use crate::db::accounts::Account;
use crate::db::audit::AuditActor;
use crate::db::notifications::{self, Delivery, Destination, NewDestination};
use crate::db::tree;
use crate::domain::notify::{self, DestinationKind};
use crate::domain::text::check_single_line;
use crate::domain::tree::path_covers;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// A destination as asked for.
pub struct DestinationRequest<'a> {
    pub name: &'a str,
    /// `slack` or `webhook`.
    pub kind: &'a str,
    pub url: &'a str,
    pub events: &'a [String],
}

/// Sets a destination on node `node_id` for `actor` (an owner there, or
/// an admin): it, and a webhook's signing secret (shown this once).
pub async fn create(
    state: &AppState,
    actor: &Account,
    who: &AuditActor,
    node_id: i64,
    asked: &DestinationRequest<'_>,
) -> Result<(Destination, Option<Secret<String>>)> {
    let node = state
        .policy
        .visible(actor, tree::get(&state.db.pool, node_id).await)?;
    state
        .policy
        .require(actor, Action::ManageNotifications, &node.path)?;
    let name = asked.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::validation(
            "name",
            "give it a name of at most 100 characters",
        ));
    }
    check_single_line("name", name).map_err(|m| Error::validation("name", m))?;
    let kind = DestinationKind::parse(asked.kind.trim())
        .ok_or_else(|| Error::validation("kind", "slack or webhook"))?;
    let url = notify::check_url(asked.url).map_err(|m| Error::validation("url", m))?;
    if !state.config.webhook_allow_local_network
        && let Some(why) = notify::refuse_local_host(&url)
    {
        return Err(Error::validation("url", why));
    }
    let mut events: Vec<String> = Vec::new();
    for e in asked.events {
        let e = e.trim();
        if !notify::is_event(e) {
            return Err(Error::validation(
                "events",
                format!(
                    "'{e}' is not an event; one of {}",
                    notify::EVENTS
                        .iter()
                        .map(|(n, ..)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if !events.iter().any(|x| x == e) {
            events.push(e.to_string());
        }
    }
    Ok(notifications::create(
        &state.db,
        &state.sealer,
        &NewDestination {
            node_id: node.id,
            name,
            kind,
            url: url.as_str(),
            events: &events,
        },
        who,
    )
    .await?)
}

/// Destination `id`, when `actor` may manage it (an owner of its node or
/// above, or an admin); 404 when the actor does not see its node.
pub async fn managed(state: &AppState, actor: &Account, id: i64) -> Result<Destination> {
    let destination = notifications::get(&state.db.pool, id).await?;
    let node = state
        .policy
        .visible(actor, tree::get(&state.db.pool, destination.node_id).await)
        .map_err(|_| Error::from(notifications::not_found(id)))?;
    state
        .policy
        .require(actor, Action::ManageNotifications, &node.path)?;
    Ok(destination)
}

/// The destinations covering node `node_id` (set on it or above it),
/// nearest first, for an actor who manages notifications there.
pub async fn of_node(state: &AppState, actor: &Account, node_id: i64) -> Result<Vec<Destination>> {
    let node = state
        .policy
        .visible(actor, tree::get(&state.db.pool, node_id).await)?;
    state
        .policy
        .require(actor, Action::ManageNotifications, &node.path)?;
    let mut covering: Vec<Destination> = notifications::all(&state.db.pool)
        .await?
        .into_iter()
        .filter(|d| path_covers(&node.path, &d.node_path))
        .collect();
    covering.sort_by_key(|d| std::cmp::Reverse(d.node_path.len()));
    Ok(covering)
}

/// Every destination `actor` manages, by node path.
pub async fn all_managed(state: &AppState, actor: &Account) -> Result<Vec<Destination>> {
    Ok(notifications::all(&state.db.pool)
        .await?
        .into_iter()
        .filter(|d| {
            state
                .policy
                .may(actor, Action::ManageNotifications, &d.node_path)
        })
        .collect())
}

/// Removes destination `id` (its deliveries with it).
pub async fn delete(
    state: &AppState,
    actor: &Account,
    who: &AuditActor,
    id: i64,
) -> Result<Destination> {
    managed(state, actor, id).await?;
    Ok(notifications::delete(&state.db, id, who).await?)
}

/// Lets destination `id`, disabled by a 410, receive again.
pub async fn enable(
    state: &AppState,
    actor: &Account,
    who: &AuditActor,
    id: i64,
) -> Result<Destination> {
    managed(state, actor, id).await?;
    Ok(notifications::enable(&state.db, id, who).await?)
}

/// The newest `limit` deliveries to destination `id`.
pub async fn deliveries(
    state: &AppState,
    actor: &Account,
    id: i64,
    limit: i64,
) -> Result<Vec<Delivery>> {
    managed(state, actor, id).await?;
    Ok(notifications::deliveries(&state.db.pool, id, limit).await?)
}

/// Sends delivery `id` again, from its first attempt, under the same
/// `webhook-id`.
pub async fn send_again(
    state: &AppState,
    actor: &Account,
    who: &AuditActor,
    id: i64,
) -> Result<Delivery> {
    let delivery = notifications::delivery(&state.db.pool, id).await?;
    managed(state, actor, delivery.destination_id)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => Error::NotFound(format!("delivery {id} does not exist")),
            other => other,
        })?;
    let delivery = notifications::send_again(&state.db, id, who).await?;
    state.engine.wake();
    Ok(delivery)
}
