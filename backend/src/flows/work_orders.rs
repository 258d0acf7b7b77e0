//! Work-order flows that span the policy, GitLab and the database: filing a
//! work order and deciding on one. Pages and the API both call these, so
//! the rules are checked the same way whichever door a request comes in by.

use super::clusters::stage_deployment;
use crate::app::AppState;
use crate::auth::Action;
use crate::db::accounts::Account;
use crate::db::audit::AuditActor;
use crate::db::release_items;
use crate::db::work_orders::{self, NewWorkOrder, Source, StageRecord, WorkOrder};
use crate::domain::work_order::{Command, decide};
use crate::error::{Error, Result};

use crate::kube::deployment;

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
    // An item the actor may not see is refused like a missing one.
    let item = match state.policy.visible(
        actor,
        release_items::get(&state.db.pool, release_item_id).await,
    ) {
        Ok(item) => item,
        Err(Error::NotFound(_)) => {
            return Err(Error::validation(
                "release_item_id",
                format!("release item {release_item_id} does not exist"),
            ));
        }
        Err(e) => return Err(e),
    };
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

/// Applies approve / reject / close through the state machine. An order
/// the actor may not see answers like a missing one.
pub async fn decide_on_work_order(
    state: &AppState,
    actor: &Account,
    who: &AuditActor,
    id: i64,
    command: Command,
) -> Result<WorkOrder> {
    state
        .policy
        .visible(actor, work_orders::get(&state.db.pool, id).await)?;
    let may_act = |path: &str| state.policy.may(actor, Action::FileWorkOrder, path);
    work_orders::apply(
        &state.db,
        id,
        &command,
        Source::Person {
            account: actor,
            may_act: &may_act,
        },
        &StageRecord::default(),
        who,
    )
    .await
}

/// Starts or rolls back stage `stage` of order `id` (rules 4 and 6). The
/// state machine is asked first, then the stage's cluster and Deployment
/// are checked (so an unreachable cluster or a missing Deployment is a
/// clear error and changes nothing), then the change and its job are
/// written in one transaction and this server's engine is woken.
pub async fn drive_stage(
    state: &AppState,
    actor: &Account,
    who: &AuditActor,
    id: i64,
    command: Command,
) -> Result<WorkOrder> {
    let stage = match &command {
        Command::Deploy { stage } | Command::Rollback { stage } => *stage,
        _ => return decide_on_work_order(state, actor, who, id, command).await,
    };
    let order = state
        .policy
        .visible(actor, work_orders::get(&state.db.pool, id).await)?;
    let may_act = state
        .policy
        .may(actor, Action::FileWorkOrder, &order.node_path);
    let facts = work_orders::facts_for(&state.db, &order, actor, may_act).await?;
    decide(order.state, &command, &facts).map_err(|r| work_orders::refusal(&command, r))?;
    if matches!(command, Command::Deploy { .. }) {
        preflight(state, id, stage).await?;
    }
    let order = decide_on_work_order(state, actor, who, id, command).await?;
    state.engine.wake();
    Ok(order)
}

/// Checks that stage `stage`'s cluster answers and its Deployment and
/// container exist.
async fn preflight(state: &AppState, id: i64, stage: u32) -> Result<()> {
    let target = work_orders::stage_target(&state.db.pool, id, i64::from(stage)).await?;
    if target.strategy == "canary" {
        return Err(Error::Conflict(format!(
            "stage {stage} is a canary stage; canary rollouts go through OpenKruise Rollout, which this \
             version of Rollway does not drive yet: make it a rolling stage to deploy it"
        )));
    }
    let (_, deployment) = stage_deployment(state, &target).await?;
    let deployment = deployment.ok_or_else(|| {
        Error::validation(
            "stage",
            format!(
                "Deployment {}/{} does not exist in cluster {}; fix app {} or create it",
                target.namespace, target.deployment, target.cluster, target.app
            ),
        )
    })?;
    if deployment::container_image(&deployment, &target.container).is_none() {
        return Err(Error::validation(
            "stage",
            format!(
                "Deployment {}/{} has no container {} (it has {}); fix app {}",
                target.namespace,
                target.deployment,
                target.container,
                deployment::container_names(&deployment).join(", "),
                target.app
            ),
        ));
    }
    Ok(())
}
