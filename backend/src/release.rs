//! Release flows that span the policy, GitLab and the database: filing a
//! work order and deciding on one. Pages and the API both call these, so
//! the rules are checked the same way whichever door a request comes in by.

use crate::app::AppState;
use crate::auth::Action;
use crate::db::accounts::Account;
use crate::db::audit::AuditActor;
use crate::db::release_items;
use crate::db::work_orders::{self, NewWorkOrder, WorkOrder};
use crate::domain::work_order::Command;
use crate::error::{Error, Result};

/// Files a work order: the actor must be engineer or owner on the item's
/// node, the item must have no open order (rule 1), enough approvers must
/// remain once the creator is excluded, and the version must be a tag of
/// the item's GitLab project (rule 2).
pub async fn file_work_order(
    state: &AppState,
    actor: &Account,
    who: &AuditActor,
    release_item_id: i64,
    version: &str,
    title: &str,
    description: &str,
) -> Result<WorkOrder> {
    let item = release_items::get(&state.db.pool, release_item_id)
        .await
        .map_err(|_| {
            Error::validation(
                "release_item_id",
                format!("release item {release_item_id} does not exist"),
            )
        })?;
    state
        .policy
        .require(actor, Action::FileWorkOrder, &item.node_path)?;
    let new = NewWorkOrder {
        item: &item,
        version: version.trim(),
        title,
        description,
    };
    work_orders::check_filing(&state.db, &new, actor).await?;
    let tags = state
        .gitlab
        .tags(&state.db, &state.sealer, &item.gitlab_project)
        .await?;
    if !tags.iter().any(|t| t.name == new.version) {
        return Err(Error::validation(
            "version",
            format!(
                "'{}' is not a tag of the GitLab project {}",
                new.version, item.gitlab_project
            ),
        ));
    }
    work_orders::file(&state.db, &new, actor, who).await
}

/// Applies approve / reject / close through the state machine.
pub async fn decide_on_work_order(
    state: &AppState,
    actor: &Account,
    who: &AuditActor,
    id: i64,
    command: Command,
) -> Result<WorkOrder> {
    work_orders::apply(
        &state.db,
        id,
        &command,
        actor,
        |path| state.policy.may(actor, Action::FileWorkOrder, path),
        who,
    )
    .await
}
